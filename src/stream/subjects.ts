// Subjects are Sluice's public API (docs/subjects.md). This module is the one place that spells them.
//
// Producers publish to the public inbound form, `sluice.in.stock.<sku>`. The server's subject mapping
// (written by Sluice for its embedded server; docs/operations.md gives the block for your own servers)
// rewrites it to the partitioned form `sluice.ledger.<p>.stock.<sku>` that the stage's stream holds,
// with p = fnv1a32(token) mod P, the server's own `{{partition(P,1)}}`. A producer that cannot rely on
// the mapping publishes to the partitioned form itself, computing p with `partitionOf` (same rule).

/** Characters kept as they are in a subject token; anything else makes the id encoded. */
const plainToken = /^[A-Za-z0-9_\-:@+,=]+$/;
/** Encoded tokens start with this; it is not in the plain set, so the rule is reversible. */
const encodedMark = "~";

export class SubjectError extends Error {
  override name = "SubjectError";
}

/**
 * Id → subject token. Ids made of letters, digits and `_ - : @ + , =` stand as they are; any other id
 * (dots, spaces, `*`, `>`, `~`, non-ASCII...) becomes `~` + base64url(UTF-8 bytes), no padding.
 */
export function encodeToken(id: string): string {
  if (id.length === 0) throw new SubjectError("an id must not be empty");
  if (plainToken.test(id)) return id;
  return encodedMark + Buffer.from(id, "utf8").toString("base64url");
}

/** Subject token → id; the inverse of encodeToken. Throws SubjectError on a malformed token. */
export function decodeToken(token: string): string {
  if (token.length === 0) throw new SubjectError("empty subject token");
  if (!token.startsWith(encodedMark)) {
    if (!plainToken.test(token))
      throw new SubjectError(`token ${JSON.stringify(token)} is neither plain nor ~encoded`);
    return token;
  }
  const body = token.slice(1);
  if (!/^[A-Za-z0-9_-]+$/.test(body))
    throw new SubjectError(`token ${JSON.stringify(token)} is not base64url`);
  const id = Buffer.from(body, "base64url").toString("utf8");
  // Canonical form only: one id has exactly one token, so partitioning and dedupe agree.
  if (encodeToken(id) !== token) throw new SubjectError(`token ${JSON.stringify(token)} is not canonical`);
  return id;
}

const fnvOffsetBasis = 0x811c9dc5;
const fnvPrime = 0x01000193;
/** `.` joins an order key's two tokens; encoded tokens never contain it, and the server hashes them joined. */
const dot = 0x2e;

/**
 * FNV-1a, 32 bits, over the text's UTF-8 bytes: the hash nats-server's `{{partition(P,…)}}` uses. Encoded
 * tokens are ASCII (character = byte), so the hot path hashes characters without allocating; `skipDots`
 * hashes an order key (`<channel>.<orderId>`) as its tokens joined, as the server does.
 */
export function fnv1a32(text: string, skipDots = false): number {
  let hash = fnvOffsetBasis;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x80) return fnvBytes(Buffer.from(skipDots ? text.split(".").join("") : text, "utf8"));
    if (skipDots && c === dot) continue;
    hash = Math.imul(hash ^ c, fnvPrime);
  }
  return hash >>> 0;
}

function fnvBytes(bytes: Uint8Array): number {
  let hash = fnvOffsetBasis;
  for (let i = 0; i < bytes.length; i++) hash = Math.imul(hash ^ (bytes[i] as number), fnvPrime);
  return hash >>> 0;
}

/** The partition of an (already encoded) token; for several tokens the server hashes them concatenated. */
export function partitionOfTokens(tokens: readonly string[], partitionCount: number): number {
  return fnv1a32(tokens.join("")) % partitionCount;
}

/** The partition of one encoded token (a SKU's), or of an order key (`<channel>.<orderId>`, both encoded). */
export function tokenPartition(token: string, partitionCount: number): number {
  return fnv1a32(token, true) % partitionCount;
}

/** The partition that owns a SKU. */
export function skuPartition(sku: string, partitionCount: number): number {
  return tokenPartition(encodeToken(sku), partitionCount);
}

export const stages = ["ledger", "order"] as const;
export type Stage = (typeof stages)[number];

/**
 * The streams a stage partition reads, each as `sluice.<input>.<p>.>`, first first. An order partition reads
 * its answers (SLUICE_ANSWER: the ledger's answers, cancels, returns, WMS events about orders, clocks) before
 * its intake (SLUICE_ORDER: new orders), so work about orders that exist never waits behind new orders; the
 * intake is gated (see PartitionApplier.intakeRoom). The last is the stage's main stream.
 */
export const stageInputs = { ledger: ["ledger"], order: ["answer", "order"] } as const satisfies Record<
  Stage,
  readonly string[]
>;
export type Input = "ledger" | "order" | "answer";
export const inputs: readonly Input[] = ["ledger", "order", "answer"];

/** Public inbound kinds keyed by order (channel + order id): partitioned to the order stage by the mapping. */
export const orderKinds = ["order", "cancel", "return"] as const;
export type OrderKind = (typeof orderKinds)[number];

/**
 * Which of an order partition's streams takes a public order kind: new orders go to its intake; cancels and
 * returns are about orders that exist, so they go with the answers (never behind new orders, and in one
 * stream with the clocks that fire deadlines and retention).
 */
export const orderKindInput = (kind: OrderKind): Input => (kind === "order" ? "order" : "answer");

/** The order key: channel and order id tokens joined by "." (encoded tokens never contain one). */
export const orderKey = (channel: string, orderId: string) =>
  `${encodeToken(channel)}.${encodeToken(orderId)}`;

/** The partition that owns an order (its key's two tokens, hashed as the server's partition(P,1,2)). */
export function orderPartition(key: string, partitionCount: number): number {
  return tokenPartition(key, partitionCount);
}

export const subjects = {
  stockPublic: (sku: string) => `sluice.in.stock.${encodeToken(sku)}`,
  stockPartitioned: (partition: number, sku: string) =>
    `sluice.ledger.${partition}.stock.${encodeToken(sku)}`,
  orderPublic: (kind: OrderKind, channel: string, orderId: string) =>
    `sluice.in.${kind}.${encodeToken(channel)}.${encodeToken(orderId)}`,
  orderPartitioned: (partition: number, kind: OrderKind, channel: string, orderId: string) =>
    `sluice.${orderKindInput(kind)}.${partition}.${kind}.${encodeToken(channel)}.${encodeToken(orderId)}`,
  wmsPublic: (warehouse: string, event: string) => `sluice.in.wms.${encodeToken(warehouse)}.${event}`,
  importPublic: (importId: string) => `sluice.in.import.${encodeToken(importId)}`,
  /** What a channel says it shows (reconciliation): `{snapshotId, full, part, parts, items: [{sku, qty}]}`. */
  channelStockPublic: (channel: string) => `sluice.in.channel.${encodeToken(channel)}.stock`,
  /** Router → ledger stage: the share of one channel report that a ledger partition owns. */
  ledgerReconcile: (ledgerPartition: number, channel: string) =>
    `sluice.ledger.${ledgerPartition}.reconcile.${encodeToken(channel)}`,
  /** Order stage → ledger stage: line requests of one order partition's batch. */
  ledgerCommands: (ledgerPartition: number, orderPartition: number) =>
    `sluice.ledger.${ledgerPartition}.cmd.${orderPartition}`,
  /** Router → ledger stage: stock items of one bulk or WMS message that belong to this partition. */
  ledgerItems: (ledgerPartition: number, source: string) =>
    `sluice.ledger.${ledgerPartition}.items.${source}`,
  /** Ledger stage → order stage (its answer stream): answers to line requests. */
  orderResults: (orderPartition: number, ledgerPartition: number) =>
    `sluice.answer.${orderPartition}.result.${ledgerPartition}`,
  /** Router → order stage (its answer stream): a WMS event about an order, untouched. */
  orderWms: (orderPartition: number, warehouse: string, event: string) =>
    `sluice.answer.${orderPartition}.wms.${encodeToken(warehouse)}.${event}`,
  /**
   * A clock message: no body, applied after everything before it in the order partition's stream; its stream
   * timestamp moves the partition's stream time on, so SLA deadlines fire while no input flows.
   */
  orderClock: (orderPartition: number) => `sluice.answer.${orderPartition}.clock`,
  outOrder: (channel: string) => `sluice.out.order.${encodeToken(channel)}`,
  outFulfil: (warehouse: string) => `sluice.out.fulfil.${encodeToken(warehouse)}`,
  /** ATS changes of one channel: `{"items":[{sku, ats, version, atMs}]}`, coalesced, within its rate budget. */
  outStock: (channel: string) => `sluice.out.stock.${encodeToken(channel)}`,
  /** What reconciling a channel's report found and healed, per ledger partition and report part. */
  outReconcile: (channel: string) => `sluice.out.reconcile.${encodeToken(channel)}`,
  /** Compacted ERP batches (ledger movements, order documents). */
  outErp: "sluice.out.erp",
  outAll: "sluice.out.>",
  /** The compacted current-stock view: the last message per (channel, SKU) is kept (a late joiner reads it). */
  stockView: (channel: string, sku: string) =>
    `sluice.view.stock.${encodeToken(channel)}.${encodeToken(sku)}`,
  stockViewAll: "sluice.view.stock.>",
  /** A ledger partition's position feed (core NATS, a hint for routing elsewhere: src/stages/ledger/position-feed.ts). */
  positionFeed: (ledgerPartition: number) => `sluice.view.position.${ledgerPartition}`,
  positionFeedAll: "sluice.view.position.>",
  inputPartitionFilter: (input: Input, partition: number) => `sluice.${input}.${partition}.>`,
  dlq: (reason: string) => `sluice.dlq.${reason}`,
  dlqAll: "sluice.dlq.>",
  /** Anything under sluice.in that no mapping claimed: WMS events, imports, bad subjects, unmapped servers. */
  inboundAll: "sluice.in.>",
} as const;

export const streamNames = {
  ledger: "SLUICE_LEDGER",
  order: "SLUICE_ORDER",
  answer: "SLUICE_ANSWER",
  dlq: "SLUICE_DLQ",
  unrouted: "SLUICE_UNROUTED",
  out: "SLUICE_OUT",
  stockView: "SLUICE_STOCK_VIEW",
} as const;

/**
 * The KV bucket of the warehouse capacity pool (docs/capacity.md): one key per warehouse and UTC day, whose
 * value is the units all ledger partitions claimed of that day's capacityPerDay. Sluice's alone to write.
 */
export const capacityBucketDefault = "SLUICE_CAPACITY";

/**
 * The router names each message it publishes `<source timestamp ms>:<source seq>:<n>` (a recreated
 * SLUICE_UNROUTED restarts its sequences, never its clock); stage partitions keep the names they applied
 * (a bounded window), so a copy published again after JetStream's duplicate window is still applied once.
 * The name is honoured only on subjects only the router publishes (routerKinds).
 */
export const routedIdHeader = "Sluice-Routed-Id";

/**
 * Partitioned subject kinds only the router publishes: public copies, stock item envelopes, WMS events,
 * channel reports' shares.
 */
export const routerKinds: ReadonlySet<string> = new Set(["routed", "items", "wms", "reconcile"]);

/** `<ms>:<seq>:<n>` → [ms, seq, n], or null when absent or malformed. */
export function parseRoutedId(value: string | undefined): [number, number, number] | null {
  if (value === undefined) return null;
  const m = /^(\d{1,15}):(\d{1,15}):(\d{1,9})$/.exec(value);
  return m === null ? null : [Number(m[1]), Number(m[2]), Number(m[3])];
}

/** A router copy of a public message: `sluice.<stage>.<p>.routed.<kind>.…` (the mappings never make one). */
export function routedSubject(partitioned: string): string {
  const t = partitioned.split(".");
  return [...t.slice(0, 3), "routed", ...t.slice(3)].join(".");
}

export const consumerName = (stage: Stage, partition: number) => `${stage}-${partition}`;
/** The stage that reads an input stream. */
export const inputStage = (input: Input): Stage => (input === "answer" ? "order" : input);
/** A partition's durable consumer on one of its input streams: named after the partition (`order-3`). */
export const inputConsumerName = (input: Input, partition: number) =>
  consumerName(inputStage(input), partition);
export const unroutedConsumerName = "unrouted";

/** Server-side mappings that partition the public inbound subjects (nats-server `mappings` block). */
export function subjectMappings(partitionCount: number): Record<string, string> {
  const out: Record<string, string> = {
    "sluice.in.stock.*": `sluice.ledger.{{partition(${partitionCount},1)}}.stock.{{wildcard(1)}}`,
  };
  for (const kind of orderKinds) {
    out[`sluice.in.${kind}.*.*`] =
      `sluice.${orderKindInput(kind)}.{{partition(${partitionCount},1,2)}}.${kind}.{{wildcard(1)}}.{{wildcard(2)}}`;
  }
  return out;
}

export type RoutedSubject = { stage: Stage; partition: number; kind: string; key: string };

/**
 * Public inbound subject → where it belongs (what the server mapping does, for the unrouted fallback).
 * Returns a reason code when the subject is not a valid inbound subject.
 */
export function routePublic(
  subject: string,
  partitionCount: number,
): { ok: true; route: RoutedSubject; target: string } | { ok: false; reason: string; detail: string } {
  const tokens = subject.split(".");
  if (tokens[0] !== "sluice" || tokens[1] !== "in") {
    return { ok: false, reason: "bad_subject", detail: `${subject} is not under sluice.in` };
  }
  if (tokens[2] === "stock" && tokens.length === 4) {
    const token = tokens[3] as string;
    try {
      const key = decodeToken(token);
      const partition = partitionOfTokens([token], partitionCount);
      return {
        ok: true,
        route: { stage: "ledger", partition, kind: "stock", key },
        target: `sluice.ledger.${partition}.stock.${token}`,
      };
    } catch (error) {
      return { ok: false, reason: "bad_subject", detail: (error as Error).message };
    }
  }
  const kind = tokens[2] as OrderKind;
  if (orderKinds.includes(kind) && tokens.length === 5) {
    const [channelToken, orderIdToken] = [tokens[3] as string, tokens[4] as string];
    try {
      decodeToken(channelToken);
      decodeToken(orderIdToken);
    } catch (error) {
      return { ok: false, reason: "bad_subject", detail: (error as Error).message };
    }
    const partition = partitionOfTokens([channelToken, orderIdToken], partitionCount);
    return {
      ok: true,
      route: { stage: "order", partition, kind, key: `${channelToken}.${orderIdToken}` },
      target: `sluice.${orderKindInput(kind)}.${partition}.${kind}.${channelToken}.${orderIdToken}`,
    };
  }
  return {
    ok: false,
    reason: "bad_subject",
    detail: `${subject} is not a Sluice inbound subject; expected sluice.in.stock.<sku>, sluice.in.{order,cancel,return}.<channel>.<orderId>, sluice.in.wms.<warehouse>.<event>, sluice.in.import.<id> or sluice.in.channel.<channel>.stock (ids with dots, spaces, * or > are ~base64url-encoded, see docs/subjects.md)`,
  };
}

/** Partitioned subject of a stage → its parts; null when it is not of that form. */
export function parsePartitioned(
  subject: string,
): { stage: string; partition: number; kind: string; tokens: string[] } | null {
  const tokens = subject.split(".");
  if (tokens.length < 5 || tokens[0] !== "sluice") return null;
  const partition = Number(tokens[2]);
  if (!Number.isInteger(partition) || partition < 0) return null;
  // A router copy reads as the public message it copies.
  const rest = tokens[3] === "routed" ? tokens.slice(4) : tokens.slice(3);
  if (rest.length < 2) return null;
  return { stage: tokens[1] as string, partition, kind: rest[0] as string, tokens: rest.slice(1) };
}
