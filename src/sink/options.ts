import { parseArgs } from "node:util";
import { isLogLevel, type LogLevel } from "../log/index.ts";
import { type NatsSecurity, type SecurityNames, securityRelationError } from "../stream/connection.ts";
import { encodeToken, streamNames } from "../stream/subjects.ts";
import { lazadaSpec } from "./marketplaces/lazada.ts";
import { shopeeSpec } from "./marketplaces/shopee.ts";
import { shopifySpec } from "./marketplaces/shopify.ts";
import type { ProfileName } from "./marketplaces/types.ts";

// The reference sink's settings: flags, or SLUICE_SINK_* environment variables (a flag wins). Every wait and
// retry has a bound with its unit in its name; `parseSinkOptions` checks how they relate.

export type SinkSource = { kind: "stock"; channel: string } | { kind: "erp" };

/** generic: POST each message as it is; the others speak a marketplace's API (src/sink/marketplaces/). */
export const sinkProfiles = ["generic", "lazada", "shopify", "shopee"] as const;
export type SinkProfile = "generic" | ProfileName;

/** Each marketplace profile's documented batch limits. */
export const profileSpecs = { lazada: lazadaSpec, shopify: shopifySpec, shopee: shopeeSpec } as const;

export type SinkOptions = {
  natsUrl: string;
  natsToken: string;
  natsUser: string;
  natsPassword: string;
  /** TLS and file-based credentials (paths; docs/security.md); empty: unset. */
  natsTlsCaFile: string;
  natsTlsCertFile: string;
  natsTlsKeyFile: string;
  natsNkeySeedFile: string;
  natsCredsFile: string;
  /**
   * Its inboxes are `<prefix>.<consumer>`: replies and pulled messages arrive there, so its NATS user needs only
   * `<prefix>.<consumer>.>`. On Sluice's embedded server the reader's prefix is `_INBOX_READER`.
   */
  natsInboxPrefix: string;
  source: SinkSource;
  /** Where each message is POSTed as JSON. */
  url: string;
  /** Extra request headers (e.g. Authorization), from repeated `--header 'Name: value'`. */
  headers: Array<[string, string]>;
  /** The sink's own durable consumer on SLUICE_OUT. */
  consumerName: string;
  /** Requests per second to the endpoint (retries included); may be fractional. */
  requestsPerSecond: number;
  /** Requests allowed at once after a quiet spell (the token bucket's depth). */
  burstRequestsMax: number;
  /** Tries of one message before it is dead-lettered (a 4xx other than 408/425/429 is not retried). */
  attemptsMax: number;
  backoffMsMin: number;
  backoffMsMax: number;
  requestTimeoutMs: number;
  /** Redelivery of an unacked message; the sink signals progress while it retries, so only a dead sink hits it. */
  ackWaitMs: number;
  metricsPort: number | null;
  metricsHost: string;
  stopTimeoutMs: number;
  logLevel: LogLevel;
  profile: SinkProfile;
  /** The mapping table (JSON) of a marketplace profile; empty for generic. */
  mappingFile: string;
  /** Items per marketplace request; null: the profile's default (Lazada 20, Shopify 100, Shopee 50 models). */
  batchItemsMax: number | null;
  /** Messages coalesced into one marketplace batch: the consumer's max_ack_pending (generic: always 1). */
  batchMessagesMax: number;
  throttleRetriesMax: number;
  throttleWaitMsMax: number;
  conflictRetriesMax: number;
  /** Marketplace ids (not secret): Lazada's app key, Shopee's partner and shop ids; empty: unset. */
  appKey: string;
  partnerId: string;
  shopId: string;
  /** Marketplace secrets: from the environment, or a file path (never a flag's value); empty: unset. */
  appSecret: string;
  appSecretFile: string;
  accessToken: string;
  accessTokenFile: string;
  partnerKey: string;
  partnerKeyFile: string;
};

export const sinkDefaults = {
  natsUrl: "nats://127.0.0.1:4222",
  natsInboxPrefix: "_INBOX",
  // The consumer's name (≤ 64) and a nats.js inbox's own tokens (~45) follow it; servers take subjects far longer.
  natsInboxPrefixCharsMax: 128,
  requestsPerSecond: 10,
  burstRequestsMax: 1,
  attemptsMax: 10,
  backoffMsMin: 200,
  // 30 s: ten attempts with doubling from 200 ms span about 1.5 min before a message is dead-lettered.
  backoffMsMax: 30_000,
  requestTimeoutMs: 10_000,
  ackWaitMs: 60_000,
  metricsHost: "127.0.0.1",
  stopTimeoutMs: 10_000,
  logLevel: "info" as LogLevel,
  // 100 envelopes of ≤ 50 items (the channel default) ⇒ ≤ 5,000 items coalesced per batch.
  batchMessagesMax: 100,
  // Shopify's full 1,000-point bucket refills in 20 s at 50 points/s; Lazada's bans last seconds.
  throttleWaitMsMax: 60_000,
  // 20 throttled tries of one request, each up to a minute: a marketplace that throttles longer is down.
  throttleRetriesMax: 20,
  // A SKU selling several times a second conflicts a few times in a row at most.
  conflictRetriesMax: 5,
};

export const sinkUsage = `sluice sink: delivers sluice.out.stock.<channel> or sluice.out.erp to an HTTP endpoint

Usage:
  bun src/sink/main.ts --source stock:<channel>|erp --url http://host/path [options]

Options (environment variable in brackets; a flag wins):
  --source stock:<channel>|erp  what to deliver                                  [SLUICE_SINK_SOURCE]
  --url URL                     POST target (http or https)                      [SLUICE_SINK_URL]
  --nats URL[,URL]              NATS servers (${sinkDefaults.natsUrl})            [SLUICE_SINK_NATS_URL]
                                token / user / password only from the environment:
                                [SLUICE_SINK_NATS_TOKEN] [SLUICE_SINK_NATS_USER] [SLUICE_SINK_NATS_PASSWORD]
  --nats-tls-ca FILE            PEM CA of the servers' certificates (TLS)        [SLUICE_SINK_NATS_TLS_CA_FILE]
  --nats-tls-cert FILE          PEM client certificate (with --nats-tls-key)     [SLUICE_SINK_NATS_TLS_CERT_FILE]
  --nats-tls-key FILE           its PEM private key                              [SLUICE_SINK_NATS_TLS_KEY_FILE]
  --nats-nkey-seed FILE         file holding an NKey user seed (SU…)             [SLUICE_SINK_NATS_NKEY_SEED_FILE]
  --nats-creds FILE             .creds file: user JWT and seed (operator mode)   [SLUICE_SINK_NATS_CREDS_FILE]
                                one way to authenticate: token, user, NKey seed or creds (docs/security.md)
  --nats-inbox-prefix PREFIX    inboxes are PREFIX.<consumer> (${sinkDefaults.natsInboxPrefix})           [SLUICE_SINK_NATS_INBOX_PREFIX]
                                as the reader of Sluice's embedded server: _INBOX_READER
  --consumer NAME               durable consumer (sink-stock-<channel> | sink-erp) [SLUICE_SINK_CONSUMER]
  --header 'Name: value'        extra request header, repeatable                  [SLUICE_SINK_HEADERS, ';'-separated]
  --rps N                       requests per second, retries included (${sinkDefaults.requestsPerSecond})      [SLUICE_SINK_RPS]
  --burst N                     requests at once after a quiet spell (${sinkDefaults.burstRequestsMax})         [SLUICE_SINK_BURST]
  --attempts N                  tries per message before the dead letter (${sinkDefaults.attemptsMax})  [SLUICE_SINK_ATTEMPTS]
  --backoff-ms-min MS           first retry pause (${sinkDefaults.backoffMsMin})                   [SLUICE_SINK_BACKOFF_MS_MIN]
  --backoff-ms-max MS           longest retry pause (${sinkDefaults.backoffMsMax})               [SLUICE_SINK_BACKOFF_MS_MAX]
  --timeout-ms MS               one request's time limit (${sinkDefaults.requestTimeoutMs})          [SLUICE_SINK_TIMEOUT_MS]
  --ack-wait-ms MS              consumer ack_wait (${sinkDefaults.ackWaitMs})                     [SLUICE_SINK_ACK_WAIT_MS]
  --metrics-port PORT           serve Prometheus /metrics (off; 0 picks a port)  [SLUICE_SINK_METRICS_PORT]
  --metrics-host HOST           (${sinkDefaults.metricsHost})                            [SLUICE_SINK_METRICS_HOST]
  --stop-timeout-ms MS          graceful stop budget (${sinkDefaults.stopTimeoutMs})              [SLUICE_SINK_STOP_TIMEOUT_MS]
  --log-level LEVEL             debug|info|warn|error (info)                     [SLUICE_SINK_LOG_LEVEL]
  --help                        this text

Marketplace profiles (stock:<channel> only; docs/sync-and-erp.md, "Marketplace profiles"):
  --profile generic|lazada|shopify|shopee  generic POSTs each message (generic)   [SLUICE_SINK_PROFILE]
                                lazada/shopee: --url is the API host (the path is appended);
                                shopify: --url is https://<shop>.myshopify.com/admin/api/<version>/graphql.json
  --mapping FILE                the mapping table: Sluice SKU/warehouse → marketplace ids [SLUICE_SINK_MAPPING_FILE]
  --batch-items-max N           items per request (lazada 20 ≤ 50, shopify 100 ≤ 250, shopee 50 models ≤ 50)
                                                                                 [SLUICE_SINK_BATCH_ITEMS_MAX]
  --batch-messages-max N        messages coalesced per batch (${sinkDefaults.batchMessagesMax})          [SLUICE_SINK_BATCH_MESSAGES_MAX]
  --throttle-retries-max N      throttled tries of one request (${sinkDefaults.throttleRetriesMax})           [SLUICE_SINK_THROTTLE_RETRIES_MAX]
  --throttle-wait-ms-max MS     longest wait for one throttle (${sinkDefaults.throttleWaitMsMax})       [SLUICE_SINK_THROTTLE_WAIT_MS_MAX]
  --conflict-retries-max N      compare-and-set conflicts in a row, shopify (${sinkDefaults.conflictRetriesMax}) [SLUICE_SINK_CONFLICT_RETRIES_MAX]
  --app-key KEY                 lazada app key                                   [SLUICE_SINK_APP_KEY]
  --partner-id ID / --shop-id ID  shopee partner and shop ids                    [SLUICE_SINK_PARTNER_ID] [SLUICE_SINK_SHOP_ID]
  secrets, from the environment or a file (re-read when it changes), never a flag's value:
  --app-secret-file FILE        lazada app secret                                [SLUICE_SINK_APP_SECRET(_FILE)]
  --access-token-file FILE      lazada, shopify, shopee access token             [SLUICE_SINK_ACCESS_TOKEN(_FILE)]
  --partner-key-file FILE       shopee partner key                               [SLUICE_SINK_PARTNER_KEY(_FILE)]`;

export type ParsedOptions = { ok: true; value: SinkOptions } | { ok: false; detail: string };

const fail = (detail: string): ParsedOptions => ({ ok: false, detail });

export const outStockSubject = (channel: string) => `sluice.out.stock.${encodeToken(channel)}`;
export const outErpSubject = "sluice.out.erp";
export const outStream = streamNames.out;

export function filterSubjectOf(source: SinkSource): string {
  return source.kind === "erp" ? outErpSubject : outStockSubject(source.channel);
}

function defaultConsumerName(source: SinkSource): string {
  if (source.kind === "erp") return "sink-erp";
  // Durable names allow no '.', '*', '>' or spaces: the encoded token has none of them except '~'.
  return `sink-stock-${encodeToken(source.channel).replace("~", "_")}`;
}

type Flags = Record<string, string | string[] | boolean | undefined>;

/** Flags and environment → options, or why not (a message that says the fix). */
export function parseSinkOptions(argv: string[], env: Record<string, string | undefined>): ParsedOptions {
  let flags: Flags;
  try {
    flags = parseArgs({ args: argv, options: flagSpec, allowPositionals: false, strict: true }).values;
  } catch (error) {
    return fail((error as Error).message);
  }
  const pick = (flag: string, name: string): string | undefined => {
    const v = flags[flag];
    return typeof v === "string" ? v : env[`SLUICE_SINK_${name}`];
  };
  const source = parseSource(pick("source", "SOURCE"));
  if (!source.ok) return source;
  const url = pick("url", "URL");
  if (url === undefined || !/^https?:\/\/[^\s]+$/.test(url)) {
    return fail("--url must be an http(s) URL, e.g. --url http://127.0.0.1:9000/stock");
  }
  const headers = parseHeaders(flags.header, env.SLUICE_SINK_HEADERS);
  if (!headers.ok) return headers;
  const numbers = parseNumbers(pick);
  if (!numbers.ok) return numbers;
  const logLevel = pick("log-level", "LOG_LEVEL") ?? sinkDefaults.logLevel;
  if (!isLogLevel(logLevel)) return fail("--log-level must be debug, info, warn or error");
  const consumerName = pick("consumer", "CONSUMER") ?? defaultConsumerName(source.value);
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(consumerName)) {
    return fail("--consumer must be 1–64 letters, digits, '_' or '-'");
  }
  const natsInboxPrefix = pick("nats-inbox-prefix", "NATS_INBOX_PREFIX") ?? sinkDefaults.natsInboxPrefix;
  if (!isInboxPrefix(natsInboxPrefix)) {
    return fail(
      `--nats-inbox-prefix must be a subject prefix of at most ${sinkDefaults.natsInboxPrefixCharsMax} characters: dot-separated tokens without spaces or wildcards ('*', '>'), e.g. _INBOX or _INBOX_READER`,
    );
  }
  const profile = pick("profile", "PROFILE") ?? "generic";
  if (!(sinkProfiles as readonly string[]).includes(profile))
    return fail(`--profile must be one of ${sinkProfiles.join(", ")}`);
  const options: SinkOptions = {
    natsUrl: pick("nats", "NATS_URL") ?? sinkDefaults.natsUrl,
    natsToken: env.SLUICE_SINK_NATS_TOKEN ?? "",
    natsUser: env.SLUICE_SINK_NATS_USER ?? "",
    natsPassword: env.SLUICE_SINK_NATS_PASSWORD ?? "",
    natsTlsCaFile: pick("nats-tls-ca", "NATS_TLS_CA_FILE") ?? "",
    natsTlsCertFile: pick("nats-tls-cert", "NATS_TLS_CERT_FILE") ?? "",
    natsTlsKeyFile: pick("nats-tls-key", "NATS_TLS_KEY_FILE") ?? "",
    natsNkeySeedFile: pick("nats-nkey-seed", "NATS_NKEY_SEED_FILE") ?? "",
    natsCredsFile: pick("nats-creds", "NATS_CREDS_FILE") ?? "",
    natsInboxPrefix,
    source: source.value,
    url,
    headers: headers.value,
    consumerName,
    ...numbers.value,
    metricsHost: pick("metrics-host", "METRICS_HOST") ?? sinkDefaults.metricsHost,
    logLevel,
    profile: profile as SinkProfile,
    mappingFile: pick("mapping", "MAPPING_FILE") ?? "",
    appKey: pick("app-key", "APP_KEY") ?? "",
    partnerId: pick("partner-id", "PARTNER_ID") ?? "",
    shopId: pick("shop-id", "SHOP_ID") ?? "",
    appSecret: env.SLUICE_SINK_APP_SECRET ?? "",
    appSecretFile: pick("app-secret-file", "APP_SECRET_FILE") ?? "",
    accessToken: env.SLUICE_SINK_ACCESS_TOKEN ?? "",
    accessTokenFile: pick("access-token-file", "ACCESS_TOKEN_FILE") ?? "",
    partnerKey: env.SLUICE_SINK_PARTNER_KEY ?? "",
    partnerKeyFile: pick("partner-key-file", "PARTNER_KEY_FILE") ?? "",
  };
  const relation =
    securityRelationError(sinkSecurity(options), sinkSecurityNames) ??
    checkRelations(options) ??
    checkProfile(options);
  return relation === null ? { ok: true, value: options } : fail(relation);
}

const flagSpec = {
  source: { type: "string" },
  url: { type: "string" },
  nats: { type: "string" },
  "nats-tls-ca": { type: "string" },
  "nats-tls-cert": { type: "string" },
  "nats-tls-key": { type: "string" },
  "nats-nkey-seed": { type: "string" },
  "nats-creds": { type: "string" },
  "nats-inbox-prefix": { type: "string" },
  consumer: { type: "string" },
  header: { type: "string", multiple: true },
  rps: { type: "string" },
  burst: { type: "string" },
  attempts: { type: "string" },
  "backoff-ms-min": { type: "string" },
  "backoff-ms-max": { type: "string" },
  "timeout-ms": { type: "string" },
  "ack-wait-ms": { type: "string" },
  "metrics-port": { type: "string" },
  "metrics-host": { type: "string" },
  "stop-timeout-ms": { type: "string" },
  "log-level": { type: "string" },
  profile: { type: "string" },
  mapping: { type: "string" },
  "batch-items-max": { type: "string" },
  "batch-messages-max": { type: "string" },
  "throttle-retries-max": { type: "string" },
  "throttle-wait-ms-max": { type: "string" },
  "conflict-retries-max": { type: "string" },
  "app-key": { type: "string" },
  "partner-id": { type: "string" },
  "shop-id": { type: "string" },
  "app-secret-file": { type: "string" },
  "access-token-file": { type: "string" },
  "partner-key-file": { type: "string" },
  help: { type: "boolean" },
} as const;

/**
 * Dot-separated tokens of printable ASCII, none empty, with no '*' or '>' anywhere (the server reads them as
 * wildcards only as whole tokens, but a prefix holding one is a mistake either way).
 */
function isInboxPrefix(v: string): boolean {
  if (v.length > sinkDefaults.natsInboxPrefixCharsMax) return false;
  return v.split(".").every((token) => /^[!-~]+$/.test(token) && !/[*>]/.test(token));
}

function parseSource(v: string | undefined): { ok: true; value: SinkSource } | { ok: false; detail: string } {
  if (v === "erp") return { ok: true, value: { kind: "erp" } };
  if (v?.startsWith("stock:") && v.length > "stock:".length) {
    return { ok: true, value: { kind: "stock", channel: v.slice("stock:".length) } };
  }
  return { ok: false, detail: "--source must be stock:<channel> (e.g. stock:shopify) or erp" };
}

function parseHeaders(
  flag: Flags[string],
  env: string | undefined,
): { ok: true; value: Array<[string, string]> } | { ok: false; detail: string } {
  const raw = Array.isArray(flag) ? flag : (env?.split(";").filter((h) => h.trim() !== "") ?? []);
  const out: Array<[string, string]> = [];
  for (const h of raw) {
    const m = /^\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)\s*:\s*(.*?)\s*$/.exec(h);
    if (m === null) return { ok: false, detail: `--header ${JSON.stringify(h)} must read 'Name: value'` };
    const name = (m[1] as string).toLowerCase();
    if (name === "idempotency-key" || name === "content-type") {
      return { ok: false, detail: `--header ${m[1]} is set by the sink itself; leave it out` };
    }
    out.push([m[1] as string, m[2] as string]);
  }
  return { ok: true, value: out };
}

type NumberField =
  | "requestsPerSecond"
  | "burstRequestsMax"
  | "attemptsMax"
  | "backoffMsMin"
  | "backoffMsMax"
  | "requestTimeoutMs"
  | "ackWaitMs"
  | "metricsPort"
  | "stopTimeoutMs"
  | "batchItemsMax"
  | "batchMessagesMax"
  | "throttleRetriesMax"
  | "throttleWaitMsMax"
  | "conflictRetriesMax";

/** flag, env name, field, smallest, largest, whole number?, default (null: off) */
const numberSpecs: Array<[string, string, NumberField, number, number, boolean, number | null]> = [
  ["rps", "RPS", "requestsPerSecond", 0.001, 100_000, false, sinkDefaults.requestsPerSecond],
  ["burst", "BURST", "burstRequestsMax", 1, 100_000, true, sinkDefaults.burstRequestsMax],
  ["attempts", "ATTEMPTS", "attemptsMax", 1, 1000, true, sinkDefaults.attemptsMax],
  ["backoff-ms-min", "BACKOFF_MS_MIN", "backoffMsMin", 1, 3_600_000, true, sinkDefaults.backoffMsMin],
  ["backoff-ms-max", "BACKOFF_MS_MAX", "backoffMsMax", 1, 3_600_000, true, sinkDefaults.backoffMsMax],
  ["timeout-ms", "TIMEOUT_MS", "requestTimeoutMs", 10, 600_000, true, sinkDefaults.requestTimeoutMs],
  ["ack-wait-ms", "ACK_WAIT_MS", "ackWaitMs", 1000, 3_600_000, true, sinkDefaults.ackWaitMs],
  ["metrics-port", "METRICS_PORT", "metricsPort", 0, 65535, true, null],
  ["stop-timeout-ms", "STOP_TIMEOUT_MS", "stopTimeoutMs", 100, 600_000, true, sinkDefaults.stopTimeoutMs],
  ["batch-items-max", "BATCH_ITEMS_MAX", "batchItemsMax", 1, 250, true, null],
  [
    "batch-messages-max",
    "BATCH_MESSAGES_MAX",
    "batchMessagesMax",
    1,
    10_000,
    true,
    sinkDefaults.batchMessagesMax,
  ],
  [
    "throttle-retries-max",
    "THROTTLE_RETRIES_MAX",
    "throttleRetriesMax",
    1,
    1000,
    true,
    sinkDefaults.throttleRetriesMax,
  ],
  [
    "throttle-wait-ms-max",
    "THROTTLE_WAIT_MS_MAX",
    "throttleWaitMsMax",
    1,
    3_600_000,
    true,
    sinkDefaults.throttleWaitMsMax,
  ],
  [
    "conflict-retries-max",
    "CONFLICT_RETRIES_MAX",
    "conflictRetriesMax",
    0,
    100,
    true,
    sinkDefaults.conflictRetriesMax,
  ],
];

function parseNumbers(
  pick: (flag: string, name: string) => string | undefined,
): { ok: true; value: Pick<SinkOptions, NumberField> } | { ok: false; detail: string } {
  const out: Record<string, number | null> = {};
  for (const [flag, name, field, min, max, whole, def] of numberSpecs) {
    const raw = pick(flag, name);
    if (raw === undefined) {
      out[field] = def;
      continue;
    }
    const v = Number(raw);
    if (raw.trim() === "" || !Number.isFinite(v) || (whole && !Number.isInteger(v)) || v < min || v > max) {
      return {
        ok: false,
        detail: `--${flag} must be ${whole ? "a whole number" : "a number"} from ${min} to ${max}`,
      };
    }
    out[field] = v;
  }
  return { ok: true, value: out as Pick<SinkOptions, NumberField> };
}

/** The sink's NATS security settings, in the shape src/stream/connection.ts checks and applies. */
export function sinkSecurity(o: SinkOptions): NatsSecurity {
  return {
    token: o.natsToken,
    user: o.natsUser,
    password: o.natsPassword,
    tlsCaFile: o.natsTlsCaFile,
    tlsCertFile: o.natsTlsCertFile,
    tlsKeyFile: o.natsTlsKeyFile,
    nkeySeedFile: o.natsNkeySeedFile,
    credsFile: o.natsCredsFile,
  };
}

/** How the sink's errors name each setting: the flag, or the variable for those only the environment sets. */
export const sinkSecurityNames: SecurityNames = {
  token: "SLUICE_SINK_NATS_TOKEN",
  user: "SLUICE_SINK_NATS_USER",
  password: "SLUICE_SINK_NATS_PASSWORD",
  tlsCaFile: "--nats-tls-ca",
  tlsCertFile: "--nats-tls-cert",
  tlsKeyFile: "--nats-tls-key",
  nkeySeedFile: "--nats-nkey-seed",
  credsFile: "--nats-creds",
};

/** How the limits relate; null when they agree. */
export function checkRelations(o: SinkOptions): string | null {
  if (o.backoffMsMin > o.backoffMsMax) return "--backoff-ms-min must not exceed --backoff-ms-max";
  // The sink tells the server it is still working before each request and during each pause (at half of
  // ack_wait at most), so one request must fit in ack_wait with room to spare.
  if (o.requestTimeoutMs * 2 > o.ackWaitMs) return "--timeout-ms must be at most half of --ack-wait-ms";
  return null;
}

/** What a marketplace profile needs, and what only one makes sense with; null when they agree. */
export function checkProfile(o: SinkOptions): string | null {
  const marketplaceOnly = o.mappingFile !== "" || o.batchItemsMax !== null;
  if (o.profile === "generic")
    return marketplaceOnly ? "--mapping and --batch-items-max are for a marketplace --profile" : null;
  if (o.source.kind !== "stock") return `--profile ${o.profile} delivers stock: use --source stock:<channel>`;
  if (o.mappingFile === "") return `--profile ${o.profile} needs --mapping FILE, the SKU mapping table`;
  const spec = profileSpecs[o.profile];
  if (o.batchItemsMax !== null && o.batchItemsMax > spec.batchItemsMax)
    return `--batch-items-max must be at most ${spec.batchItemsMax} for ${o.profile} (its API's limit)`;
  const needs: Record<ProfileName, Array<[string, string] | "appKey" | "partnerId" | "shopId">> = {
    lazada: ["appKey", ["appSecret", "APP_SECRET"], ["accessToken", "ACCESS_TOKEN"]],
    shopify: [["accessToken", "ACCESS_TOKEN"]],
    shopee: ["partnerId", "shopId", ["partnerKey", "PARTNER_KEY"], ["accessToken", "ACCESS_TOKEN"]],
  };
  for (const need of needs[o.profile]) {
    const problem = typeof need === "string" ? missingId(o, need) : secretProblem(o, need[0], need[1]);
    if (problem !== null) return `--profile ${o.profile}: ${problem}`;
  }
  return null;
}

function missingId(o: SinkOptions, field: "appKey" | "partnerId" | "shopId"): string | null {
  const flag = { appKey: "--app-key", partnerId: "--partner-id", shopId: "--shop-id" }[field];
  if (o[field] === "") return `give ${flag}`;
  if (field !== "appKey" && !/^\d+$/.test(o[field])) return `${flag} must be Shopee's numeric id`;
  return null;
}

/** A secret comes from exactly one place: SLUICE_SINK_<NAME> or its file. */
function secretProblem(o: SinkOptions, field: string, name: string): string | null {
  const record = o as unknown as Record<string, string>;
  const flag = `--${name.toLowerCase().replace(/_/g, "-")}-file`;
  const [value, file] = [record[field] ?? "", record[`${field}File`] ?? ""];
  if (value === "" && file === "") return `set SLUICE_SINK_${name} or give ${flag} FILE`;
  if (value !== "" && file !== "") return `set SLUICE_SINK_${name} or give ${flag}, not both`;
  return null;
}
