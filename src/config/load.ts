import { existsSync, readFileSync } from "node:fs";
import { parsePins } from "../cluster/assignment.ts";
import { networkLimits } from "../domain/network/index.ts";
import { type OutputBounds, type OutputKind, worstCaseOutputs } from "../domain/orders/commands.ts";
import { isLoopbackHost, parseTokens, tokensFormat } from "../http/auth.ts";
import { envelopeOverheadBytes } from "../stages/envelopes.ts";
import { pack } from "../stream/codec.ts";
import { type Config, type FieldSpec, schema } from "./schema.ts";

export class ConfigError extends Error {
  override name = "ConfigError";
}

export const envPrefix = "SLUICE_";
/**
 * Environment variables that are not settings: SLUICE_CONFIG chooses the file; SLUICE_HTTP_TOKEN is the token
 * the CLI sends to a running Sluice (src/cli.ts), so an operator's shell may export it next to `sluice start`.
 */
const envReserved = new Set(["SLUICE_CONFIG", "SLUICE_HTTP_TOKEN"]);

/** `partitionCount` → `PARTITION_COUNT`; the env name of a key is SLUICE_<SECTION>_<KEY>. */
export function envName(section: string, key: string): string {
  return `${envPrefix}${section.toUpperCase()}_${key.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase()}`;
}

type Source = { origin: string; value: unknown };

export type LoadOptions = {
  /** Path of a TOML file; missing is fine only for the default path. */
  file?: string;
  env?: Record<string, string | undefined>;
  /** Overrides applied last (tests, CLI flags): `{ streams: { partitionCount: 2 } }`. */
  overrides?: Record<string, Record<string, unknown>>;
};

export const defaultConfigFile = "config/sluice.toml";

export function loadConfig(options: LoadOptions = {}): Config {
  const env = options.env ?? process.env;
  const file = options.file ?? env.SLUICE_CONFIG ?? defaultConfigFile;
  const sources = new Map<string, Source>();

  if (existsSync(file)) {
    let parsed: unknown;
    try {
      parsed = Bun.TOML.parse(readFileSync(file, "utf8"));
    } catch (error) {
      throw new ConfigError(`config file ${file} is not valid TOML: ${(error as Error).message}`);
    }
    collect(parsed, `file ${file}`, sources);
  } else if (options.file !== undefined || env.SLUICE_CONFIG !== undefined) {
    throw new ConfigError(`config file ${file} does not exist; pass an existing path or unset SLUICE_CONFIG`);
  }

  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(envPrefix) || envReserved.has(name) || value === undefined) continue;
    const target = envIndex.get(name);
    if (target === undefined) {
      throw new ConfigError(`environment variable ${name} is not a Sluice setting${suggest(name, envIndex)}`);
    }
    sources.set(target, { origin: `env ${name}`, value });
  }
  if (options.overrides) collect(options.overrides, "overrides", sources);

  const config: Record<string, Record<string, unknown>> = {};
  for (const [section, fields] of Object.entries(schema)) {
    const out: Record<string, unknown> = {};
    for (const [key, spec] of Object.entries(fields as Record<string, FieldSpec>)) {
      const path = `${section}.${key}`;
      const source = sources.get(path);
      out[key] = source === undefined ? spec.default : coerce(path, spec, source);
    }
    config[section] = out;
  }
  const typed = config as Config;
  assertRelations(typed);
  return typed;
}

const keyIndex = new Map<string, string>();
const envIndex = new Map<string, string>();
for (const [section, fields] of Object.entries(schema)) {
  for (const key of Object.keys(fields)) {
    keyIndex.set(`${section}.${key}`, `${section}.${key}`);
    envIndex.set(envName(section, key), `${section}.${key}`);
  }
}

function collect(parsed: unknown, origin: string, sources: Map<string, Source>): void {
  if (!isRecord(parsed)) throw new ConfigError(`${origin}: expected a table of sections`);
  for (const [section, fields] of Object.entries(parsed)) {
    // Own keys only: a section "constructor" or "toString" is not one because every object inherits it.
    if (!Object.hasOwn(schema, section)) {
      throw new ConfigError(`${origin}: unknown section [${section}]${suggest(section, sectionIndex)}`);
    }
    if (!isRecord(fields)) throw new ConfigError(`${origin}: [${section}] must be a table of keys`);
    for (const [key, value] of Object.entries(fields)) {
      const path = `${section}.${key}`;
      if (!keyIndex.has(path))
        throw new ConfigError(`${origin}: unknown key ${path}${suggest(path, keyIndex)}`);
      sources.set(path, { origin, value });
    }
  }
}

const sectionIndex = new Map(Object.keys(schema).map((s) => [s, s]));

function coerce(path: string, spec: FieldSpec, source: Source): unknown {
  const { origin, value } = source;
  const fail = (fix: string) =>
    new ConfigError(`${path} = ${JSON.stringify(value)} (from ${origin}) is invalid: ${fix}`);
  switch (spec.kind) {
    case "int": {
      const n = typeof value === "string" && value.trim() !== "" ? Number(value) : value;
      if (typeof n !== "number" || !Number.isSafeInteger(n) || n < spec.min || n > spec.max) {
        throw fail(`set a whole number from ${spec.min} to ${spec.max} (default ${spec.default})`);
      }
      return n;
    }
    case "bool": {
      if (typeof value === "boolean") return value;
      if (value === "true" || value === "1") return true;
      if (value === "false" || value === "0") return false;
      throw fail("set true or false");
    }
    case "enum": {
      if (typeof value !== "string" || !spec.values.includes(value)) {
        throw fail(`set one of ${spec.values.join(", ")}`);
      }
      return value;
    }
    case "string": {
      if (typeof value !== "string") throw fail("set a string (quote it in TOML)");
      if (spec.pattern && !spec.pattern.test(value)) throw fail(spec.hint ?? `match ${spec.pattern}`);
      return value;
    }
  }
}

/** Why `cluster.partitions` cannot be used with this partition count, or null. */
function pinsError(c: Config): string | null {
  try {
    parsePins(c.cluster.partitions, c.streams.partitionCount);
    return null;
  } catch (error) {
    return (error as Error).message;
  }
}

/**
 * The stage streams (ledger, order; answers), the unrouted, dead-letter and output streams, and in cluster mode
 * the changelog and the snapshots: what JetStream reserves.
 */
const streamBytesMax = (c: Config) =>
  2 * c.streams.inboundBytesMax +
  c.streams.unroutedBytesMax +
  c.streams.answerBytesMax +
  c.streams.dlqBytesMax +
  c.streams.outBytesMax +
  c.streams.stockViewBytesMax +
  (c.cluster.enabled ? c.cluster.logBytesMax + c.cluster.snapshotBytesMax : 0);

/** The bounds of every output: the input limits, and the rule set's (its ids are bounded at 256 bytes). */
export const outputBounds = (c: Config): OutputBounds => ({
  idBytesMax: c.ledger.idBytesMax,
  textBytesMax: c.orders.textBytesMax,
  linesPerOrderMax: c.orders.linesPerOrderMax,
  quantityMax: c.ledger.quantityMax,
  networkIdBytesMax: schema.ledger.idBytesMax.max,
  warehousesMax: networkLimits.warehousesMax,
  kitComponentsMax: networkLimits.kitComponentsMax,
});

const largestByBounds = new Map<string, { kind: OutputKind; bytes: number }>();

/**
 * The largest output item these limits allow, encoded as the stages encode it, with its envelope: built from
 * the worst-case items of src/domain/orders/commands.ts (about 5 ms for 200 lines; remembered per bounds).
 */
export function largestOutputItem(c: Config): { kind: OutputKind; bytes: number } {
  const bounds = outputBounds(c);
  const key = JSON.stringify(bounds);
  const known = largestByBounds.get(key);
  if (known !== undefined) return known;
  let largest: { kind: OutputKind; bytes: number } = { kind: "order status item", bytes: 0 };
  for (const o of worstCaseOutputs(bounds)) {
    const encoded = o.codec === "json" ? Buffer.byteLength(JSON.stringify(o.item)) : pack(o.item).length;
    // An ERP part is a whole message (src/stages/erp-window.ts); every other item travels in an envelope.
    const bytes = encoded + (o.kind === "ERP batch part" ? 0 : envelopeOverheadBytes);
    if (bytes > largest.bytes) largest = { kind: o.kind, bytes };
  }
  largestByBounds.set(key, largest);
  return largest;
}

/** Why `http.tokens` is unusable, or null; never any part of a secret (parseTokens). */
function tokensError(c: Config): string | null {
  const parsed = parseTokens(c.http.tokens);
  return parsed.ok ? null : parsed.detail;
}

const hasTokens = (c: Config) => c.http.tokens.trim() !== "";

/** The NATS authentication keys set, by name: at most one may be. */
const natsAuthKeys = (c: Config) =>
  (["token", "user", "nkeySeedFile", "credsFile"] as const)
    .filter((k) => c.nats[k] !== "")
    .map((k) => `nats.${k}`);

/** The NATS keys set that only an external server can honour. */
const natsExternalOnly = (c: Config) =>
  (
    [
      "token",
      "user",
      "password",
      "tlsCaFile",
      "tlsCertFile",
      "tlsKeyFile",
      "nkeySeedFile",
      "credsFile",
    ] as const
  )
    .filter((k) => c.nats[k] !== "")
    .map((k) => `nats.${k}`);

/**
 * How the limits must relate, as data: `rule` is what docs/configuration.md prints (generated), `holds`
 * the check, `fix` the start-up error. A broken relation stops start-up, as a broken invariant would.
 */
export const relations: ReadonlyArray<{
  rule: string;
  holds: (c: Config) => boolean;
  fix: (c: Config) => string;
}> = [
  {
    rule: "`cluster.leaseRenewMs` × 3 ≤ `cluster.leaseMs`: an owner may miss two renewals (a slow request, a NATS blip) before its lease runs out.",
    holds: (c) => 3 * c.cluster.leaseRenewMs <= c.cluster.leaseMs,
    fix: (c) =>
      `cluster.leaseRenewMs (${c.cluster.leaseRenewMs}) must be at most cluster.leaseMs / 3 (${Math.floor(c.cluster.leaseMs / 3)}): lower leaseRenewMs or raise leaseMs`,
  },
  {
    rule: "With `cluster.enabled`: `cluster.snapshotMs` + 2 × `cluster.leaseMs` ≤ `streams.duplicateWindowMs`: a new owner publishes again the outputs its snapshot and changelog show as not confirmed yet, which must still be inside JetStream's duplicate window.",
    holds: (c) =>
      !c.cluster.enabled || c.cluster.snapshotMs + 2 * c.cluster.leaseMs <= c.streams.duplicateWindowMs,
    fix: (c) =>
      `cluster.snapshotMs (${c.cluster.snapshotMs}) + 2 × cluster.leaseMs (${c.cluster.leaseMs}) must not exceed streams.duplicateWindowMs (${c.streams.duplicateWindowMs}): a new owner publishes again what was not confirmed and those copies must be recognised as duplicates; snapshot more often or widen the window`,
  },
  {
    rule: "With `cluster.enabled`: `cluster.takeoverLogReadMsMax` > `nats.requestTimeoutMs`: one fetch of the changelog may wait that long, and a takeover must have time for the snapshot's restore and more than one fetch.",
    holds: (c) => !c.cluster.enabled || c.cluster.takeoverLogReadMsMax > c.nats.requestTimeoutMs,
    fix: (c) =>
      `cluster.takeoverLogReadMsMax (${c.cluster.takeoverLogReadMsMax}) must exceed nats.requestTimeoutMs (${c.nats.requestTimeoutMs}): a single changelog fetch may wait that long, so no takeover could finish; raise takeoverLogReadMsMax or lower requestTimeoutMs`,
  },
  {
    rule: "`cluster.partitions` names partitions that exist (indexes below `streams.partitionCount`).",
    holds: (c) => pinsError(c) === null,
    fix: (c) => pinsError(c) ?? "",
  },
  {
    rule: "With `cluster.enabled`: `node.workerCount` ≤ 0 (−1 means none): a cluster scales by nodes, one process per core or more, each with its own partitions.",
    holds: (c) => !c.cluster.enabled || c.node.workerCount <= 0,
    fix: (c) =>
      `node.workerCount is ${c.node.workerCount} but cluster.enabled is on: run more nodes instead of worker threads (set node.workerCount to 0 or -1)`,
  },
  {
    rule: "`consumer.pendingMessagesMax` ≥ 2 × `consumer.batchCountMax`: otherwise a full batch stalls the pull (design.md §7).",
    holds: (c) => c.consumer.pendingMessagesMax >= 2 * c.consumer.batchCountMax,
    fix: (c) =>
      `consumer.pendingMessagesMax (${c.consumer.pendingMessagesMax}) must be at least 2 × consumer.batchCountMax (${c.consumer.batchCountMax}): otherwise a full batch stalls the pull (design.md §7); raise pendingMessagesMax or lower batchCountMax`,
  },
  {
    rule: "`shutdown.timeoutMs` > `nats.requestTimeoutMs`: the last batch must have time to be acked.",
    holds: (c) => c.shutdown.timeoutMs > c.nats.requestTimeoutMs,
    fix: (c) =>
      `shutdown.timeoutMs (${c.shutdown.timeoutMs}) must exceed nats.requestTimeoutMs (${c.nats.requestTimeoutMs}) so the last batch can be acked`,
  },
  {
    rule: "`consumer.ackWaitMs` > `nats.requestTimeoutMs`: a batch waiting on a publish ack must not be redelivered meanwhile.",
    holds: (c) => c.consumer.ackWaitMs > c.nats.requestTimeoutMs,
    fix: (c) =>
      `consumer.ackWaitMs (${c.consumer.ackWaitMs}) must exceed nats.requestTimeoutMs (${c.nats.requestTimeoutMs}): a batch whose commit waits on a publish ack must not be redelivered meanwhile`,
  },
  {
    rule: "`streams.headerBytesMax` ≥ 3 × `ledger.idBytesMax` + 512: a router copy's headers (the public subject, up to two encoded ids, and its name) fit the room stage streams keep above `streams.messageBytesMax` for them.",
    holds: (c) => c.streams.headerBytesMax >= 3 * c.ledger.idBytesMax + 512,
    fix: (c) =>
      `streams.headerBytesMax (${c.streams.headerBytesMax}) must be at least 3 × ledger.idBytesMax (${c.ledger.idBytesMax}) + 512 = ${3 * c.ledger.idBytesMax + 512}: a router copy of a message at streams.messageBytesMax adds its public subject (two ids, base64url-encoded) in a header, and the stage streams take only messageBytesMax + headerBytesMax; raise headerBytesMax or lower idBytesMax`,
  },
  {
    rule: "`ledger.quantityMax` ≤ `ledger.positionUnitsMax`: a count or receipt that one command may give must fit a position.",
    holds: (c) => c.ledger.quantityMax <= c.ledger.positionUnitsMax,
    fix: (c) =>
      `ledger.quantityMax (${c.ledger.quantityMax}) must not exceed ledger.positionUnitsMax (${c.ledger.positionUnitsMax}): a count of quantityMax units could never be applied; lower quantityMax or raise positionUnitsMax`,
  },
  {
    rule: "`streams.messageBytesMax` ≤ `streams.inboundBytesMax`.",
    holds: (c) => c.streams.messageBytesMax <= c.streams.inboundBytesMax,
    fix: () => "streams.messageBytesMax must not exceed streams.inboundBytesMax",
  },
  {
    rule: "Embedded server only: 2 × `streams.inboundBytesMax` + `streams.unroutedBytesMax` + `streams.answerBytesMax` + `streams.dlqBytesMax` + `streams.outBytesMax` + `streams.stockViewBytesMax` (+ `cluster.logBytesMax` + `cluster.snapshotBytesMax` with `cluster.enabled`) ≤ `nats.embeddedStoreBytesMax` (JetStream reserves each stream's cap).",
    holds: (c) => c.nats.url !== "" || streamBytesMax(c) <= c.nats.embeddedStoreBytesMax,
    fix: (c) =>
      `the streams may hold ${streamBytesMax(c)} bytes (2 × inboundBytesMax + unroutedBytesMax + answerBytesMax + dlqBytesMax + outBytesMax + stockViewBytesMax, plus cluster.logBytesMax + cluster.snapshotBytesMax in cluster mode) but nats.embeddedStoreBytesMax is ${c.nats.embeddedStoreBytesMax}; JetStream reserves each stream's cap, so raise the store or lower the stream caps`,
  },
  {
    rule: "`nats.embeddedStopTimeoutMs` < `shutdown.timeoutMs`: the embedded server is stopped inside the stop budget.",
    holds: (c) => c.nats.embeddedStopTimeoutMs < c.shutdown.timeoutMs,
    fix: (c) =>
      `nats.embeddedStopTimeoutMs (${c.nats.embeddedStopTimeoutMs}) must be below shutdown.timeoutMs (${c.shutdown.timeoutMs}): the server is stopped inside the stop budget`,
  },
  {
    rule: "`ledger.commandIdsCountMax` ≥ `ledger.itemsPerMessageMax`: the command ids of one import or WMS stock message are all remembered.",
    holds: (c) => c.ledger.commandIdsCountMax >= c.ledger.itemsPerMessageMax,
    fix: (c) =>
      `ledger.commandIdsCountMax (${c.ledger.commandIdsCountMax}) must be at least ledger.itemsPerMessageMax (${c.ledger.itemsPerMessageMax}): otherwise one message's item ids push each other out and a retry of it applies some items twice; raise commandIdsCountMax or lower itemsPerMessageMax`,
  },
  {
    rule: "`ledger.allocationsRetentionMs` ≥ `streams.duplicateWindowMs`: a line's allocation, its exactly-once guard, outlives the window in which JetStream drops a copy of a request about it.",
    holds: (c) => c.ledger.allocationsRetentionMs >= c.streams.duplicateWindowMs,
    fix: (c) =>
      `ledger.allocationsRetentionMs (${c.ledger.allocationsRetentionMs}) must be at least streams.duplicateWindowMs (${c.streams.duplicateWindowMs}): a copy of a line request that JetStream no longer drops must still find the line's allocation; raise allocationsRetentionMs`,
  },
  {
    rule: "`store.lockStaleMs` ≥ 3 × `store.lockRefreshMs`: a live owner's lease never looks stale.",
    holds: (c) => c.store.lockStaleMs >= 3 * c.store.lockRefreshMs,
    fix: (c) =>
      `store.lockStaleMs (${c.store.lockStaleMs}) must be at least 3 × store.lockRefreshMs (${c.store.lockRefreshMs}) so a live owner's lock never looks stale`,
  },
  {
    rule: "The largest output item, built from `orders.linesPerOrderMax` lines with ids at `ledger.idBytesMax`, text at `orders.textBytesMax`, quantities at `ledger.quantityMax` and rule-set ids at their 256-byte maximum, plain lines or kit lines (an order takes at most `orders.linesPerOrderMax` ledger lines, a kit line one per component, so it lists at most that many components, each with its rule-set SKU and, in ERP documents, its parent kit), and encoded as the stages encode it (JSON or msgpack, plus the 16-byte envelope), is ≤ `streams.messageBytesMax`: every output fits one message (with the defaults the largest is a fulfilment item of 1-component kit lines, about 460 KiB; docs/subjects.md lists the bounds).",
    holds: (c) => largestOutputItem(c).bytes <= c.streams.messageBytesMax,
    fix: (c) => {
      const { kind, bytes } = largestOutputItem(c);
      return `the largest ${kind} Sluice may have to publish (orders.linesPerOrderMax ${c.orders.linesPerOrderMax} lines, ledger.idBytesMax ${c.ledger.idBytesMax}, orders.textBytesMax ${c.orders.textBytesMax}) takes ${bytes} bytes but streams.messageBytesMax is ${c.streams.messageBytesMax}: lower orders.linesPerOrderMax, ledger.idBytesMax or orders.textBytesMax, or raise streams.messageBytesMax (and the server's max_payload)`;
    },
  },
  {
    rule: "`routing.whatIfOrdersMax` ≤ `routing.whatIfScanMessagesMax`: a what-if can read the orders it is asked for.",
    holds: (c) => c.routing.whatIfOrdersMax <= c.routing.whatIfScanMessagesMax,
    fix: (c) =>
      `routing.whatIfOrdersMax (${c.routing.whatIfOrdersMax}) must not exceed routing.whatIfScanMessagesMax (${c.routing.whatIfScanMessagesMax}): orders share the stream with other inputs, so the scan must be at least as long`,
  },
  {
    rule: "`sync.resyncSkusPerTickMax` < `sync.pendingCountMax`: a resync page always fits the stock queue.",
    holds: (c) => c.sync.resyncSkusPerTickMax < c.sync.pendingCountMax,
    fix: (c) =>
      `sync.resyncSkusPerTickMax (${c.sync.resyncSkusPerTickMax}) must be below sync.pendingCountMax (${c.sync.pendingCountMax}): a resync page would never find room`,
  },
  {
    rule: "Embedded server only: `streams.replicas` = 1 (a single node).",
    holds: (c) => c.nats.url !== "" || c.streams.replicas === 1,
    fix: (c) =>
      `streams.replicas = ${c.streams.replicas} needs a cluster: the embedded server is a single node; set nats.url or replicas = 1`,
  },
  // NATS security (docs/security.md); the files themselves are checked when Sluice connects.
  {
    rule: "At most one of `nats.token`, `nats.user` (with `nats.password`), `nats.nkeySeedFile` and `nats.credsFile`: one way to authenticate.",
    holds: (c) => natsAuthKeys(c).length <= 1,
    fix: (c) =>
      `${natsAuthKeys(c).join(" and ")} are ${natsAuthKeys(c).length === 2 ? "both" : "all"} set: set one way to authenticate (a token, a user and password, an NKey seed file or a creds file) and leave the others empty`,
  },
  {
    rule: "`nats.tlsCertFile` and `nats.tlsKeyFile` are set together (a client certificate and its key).",
    holds: (c) => (c.nats.tlsCertFile === "") === (c.nats.tlsKeyFile === ""),
    fix: (c) =>
      c.nats.tlsKeyFile === ""
        ? "nats.tlsCertFile is set without nats.tlsKeyFile: a client certificate needs its private key; set both or neither"
        : "nats.tlsKeyFile is set without nats.tlsCertFile: set the client certificate too, or neither",
  },
  {
    rule: "Embedded server only: no `nats.token`, `nats.user`, `nats.password`, `nats.tlsCaFile`, `nats.tlsCertFile`, `nats.tlsKeyFile`, `nats.nkeySeedFile` or `nats.credsFile`: the embedded server listens on loopback without TLS, and Sluice connects to it with the NKey seed it made for itself (docs/security.md, the embedded server).",
    holds: (c) => c.nats.url !== "" || natsExternalOnly(c).length === 0,
    fix: (c) =>
      `${natsExternalOnly(c).join(", ")} set but nats.url is empty: the embedded server has no TLS and its own NKey users, with seeds Sluice makes in <data.dir>/nats/auth (docs/security.md, the embedded server); set nats.url to a server configured for these keys, or leave them empty`,
  },
  {
    rule: "`orders.tombstoneRetentionMs` ≥ `orders.finalRetentionMs`: a final order becomes a tombstone before its key is forgotten (both count from its final time).",
    holds: (c) => c.orders.tombstoneRetentionMs >= c.orders.finalRetentionMs,
    fix: (c) =>
      `orders.tombstoneRetentionMs (${c.orders.tombstoneRetentionMs}) must be at least orders.finalRetentionMs (${c.orders.finalRetentionMs}): both count from when an order became final, and an order must be a tombstone before its key is forgotten; raise tombstoneRetentionMs or lower finalRetentionMs`,
  },
  {
    rule: "`ledger.returnWindowMs` ≥ `orders.finalRetentionMs`: the ledger keeps a shipped line's allocation at least as long as the order stage takes returns for it (an order's final time is at or after its lines' last shipment). A line shipped long before the rest of its order can still outlive the ledger's window: docs/operations.md, Retention of history.",
    holds: (c) => c.ledger.returnWindowMs >= c.orders.finalRetentionMs,
    fix: (c) =>
      `ledger.returnWindowMs (${c.ledger.returnWindowMs}) must be at least orders.finalRetentionMs (${c.orders.finalRetentionMs}): a return the order stage accepts must find its line in the ledger; raise returnWindowMs or lower finalRetentionMs`,
  },
  {
    rule: "`store.diskFullFirstRetryMs` ≤ `store.diskFullRetryMsMax`: the pauses of a partition waiting for disk room double from the first to the longest.",
    holds: (c) => c.store.diskFullFirstRetryMs <= c.store.diskFullRetryMsMax,
    fix: (c) =>
      `store.diskFullFirstRetryMs (${c.store.diskFullFirstRetryMs}) must be at most store.diskFullRetryMsMax (${c.store.diskFullRetryMsMax})`,
  },
  // The HTTP port's security (docs/operations.md, "Security model").
  {
    rule: `\`http.tokens\` is empty or holds ${tokensFormat}: names and secrets unique, each secret 16 to 256 characters of a bearer token (letters, digits, \`-._~+/\`, then \`=\` padding).`,
    holds: (c) => tokensError(c) === null,
    fix: (c) =>
      `http.tokens is invalid: ${tokensError(c)}. Set ${tokensFormat}, e.g. SLUICE_HTTP_TOKENS="ops:admin:$(openssl rand -hex 32)"`,
  },
  {
    rule: "`http.host` other than loopback (127.0.0.0/8, `::1`, `localhost`) needs `http.tokens`: an open port reachable from other machines would let anyone change the rule set.",
    holds: (c) => isLoopbackHost(c.http.host) || hasTokens(c),
    fix: (c) =>
      `http.host is ${JSON.stringify(c.http.host)}, reachable from other machines, but http.tokens is empty: anyone who reaches the port could change the rule set. Set http.tokens (e.g. SLUICE_HTTP_TOKENS="ops:admin:$(openssl rand -hex 32)"; docs/http.md, Authentication) or bind to loopback (http.host = "127.0.0.1")`,
  },
  {
    rule: "`http.probesTokenRequired` and `http.metricsTokenRequired` need `http.tokens`: without tokens nothing is checked.",
    holds: (c) => hasTokens(c) || (!c.http.probesTokenRequired && !c.http.metricsTokenRequired),
    fix: (c) =>
      `http.${c.http.probesTokenRequired ? "probesTokenRequired" : "metricsTokenRequired"} is on but http.tokens is empty, so no token could be checked: set http.tokens or turn it off`,
  },
];

export function assertRelations(c: Config): void {
  for (const r of relations) if (!r.holds(c)) throw new ConfigError(r.fix(c));
}

/** Masks secrets: what `sluice config print` shows. */
export function printable(c: Config): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const [section, fields] of Object.entries(schema)) {
    const values = (c as unknown as Record<string, Record<string, unknown>>)[section] ?? {};
    out[section] = {};
    for (const [key, spec] of Object.entries(fields as Record<string, FieldSpec>)) {
      const v = values[key];
      (out[section] as Record<string, unknown>)[key] =
        spec.secret && v !== "" ? maskSecret(key, String(v)) : v;
    }
  }
  return out;
}

function maskSecret(key: string, value: string): string {
  // A URL is only secret for the credentials it may carry: show host and port, hide user:password.
  if (key === "url") return value.replace(/\/\/[^@/]*@/g, "//***@");
  return "***";
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function suggest(input: string, index: Map<string, string>): string {
  let best = "";
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of index.keys()) {
    const d = distance(input.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      bestDistance = d;
      best = candidate;
    }
  }
  return bestDistance <= Math.max(2, Math.floor(input.length / 3)) ? `; did you mean ${best}?` : "";
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const current = row[j] as number;
      row[j] = Math.min(current + 1, (row[j - 1] as number) + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = current;
    }
  }
  return row[b.length] as number;
}
