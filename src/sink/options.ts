import { parseArgs } from "node:util";
import { isLogLevel, type LogLevel } from "../log/index.ts";
import { type NatsSecurity, type SecurityNames, securityRelationError } from "../stream/connection.ts";
import { encodeToken, streamNames } from "../stream/subjects.ts";

// The reference sink's settings: flags, or SLUICE_SINK_* environment variables (a flag wins). Every wait and
// retry has a bound with its unit in its name; `parseSinkOptions` checks how they relate.

export type SinkSource = { kind: "stock"; channel: string } | { kind: "erp" };

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
};

export const sinkDefaults = {
  natsUrl: "nats://127.0.0.1:4222",
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
  --help                        this text`;

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
    source: source.value,
    url,
    headers: headers.value,
    consumerName,
    ...numbers.value,
    metricsHost: pick("metrics-host", "METRICS_HOST") ?? sinkDefaults.metricsHost,
    logLevel,
  };
  const relation = securityRelationError(sinkSecurity(options), sinkSecurityNames) ?? checkRelations(options);
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
  help: { type: "boolean" },
} as const;

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

type NumberField = Exclude<
  keyof SinkOptions,
  | "natsUrl"
  | "natsToken"
  | "natsUser"
  | "natsPassword"
  | "natsTlsCaFile"
  | "natsTlsCertFile"
  | "natsTlsKeyFile"
  | "natsNkeySeedFile"
  | "natsCredsFile"
  | "source"
  | "url"
  | "headers"
  | "consumerName"
  | "metricsHost"
  | "logLevel"
>;

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
