import { assert } from "../../domain/assert.ts";
import type { Position, SkuState, WarehouseLoad } from "../../domain/ledger/index.ts";
import { type IdRecord, keyOfId, ownEntries } from "../../domain/own.ts";
import type { PartitionStore } from "../../store/index.ts";
import { pack, unpack } from "../../stream/codec.ts";
import { skuPartition, subjects } from "../../stream/subjects.ts";

// The position feed: how an order partition routes against a ledger partition that lives in another process.
// After each commit a ledger partition publishes, on core NATS, the positions of the SKUs the commit changed
// (with their versions) and, at most every routing.loadRefreshMs, its warehouse loads; every
// routing.feedFullMs it publishes every SKU again, a bounded step at a time, so a view that joined late or
// lost a message converges. Core NATS, not JetStream: the feed is a hint. A lost message only leaves a view
// staler (until the SKU changes again or the next full pass), and staleness never oversells: routing sends
// ranked candidates and the ledger, the SKU's single writer, reserves only where the stock is.

/** Where ledger partition `p` publishes its feed. */
export const positionFeedSubject = subjects.positionFeed;
/** Every ledger partition's feed: what a routing view subscribes to. */
export const positionFeedAll = subjects.positionFeedAll;
const subjectPrefix = "sluice.view.position.";

/**
 * What a feed message is split to, whatever streams.messageBytesMax allows: a receiver decodes a message in
 * one synchronous step on the thread that also applies its order partitions. Measured here (2 shared cores,
 * noisy): ~0.6–1 µs per SKU of 2 warehouses to decode, so 64 KiB (~1,500 such SKUs) ≈ 1–2 ms. A SKU whose
 * state alone exceeds it (hundreds of warehouses with long ids) goes alone, up to streams.messageBytesMax.
 */
export const positionFeedMessageBytesTarget = 64 * 1024;

/** The wire schema's version: a receiver drops a message of another version (counted as malformed). */
const wireVersion = 1;

// Wire form (msgpack): { v: 1, p: partition, seq, skus: WireSku[], loads?: WireLoad[] }. Tuples, not maps:
// a SKU at two warehouses packs in ~35 bytes, and records keyed by ids never cross the wire as map keys.
/** [warehouse, onHand, reserved, damaged, qualityControl, safetyStock] */
type WirePosition = [string, number, number, number, number, number];
/** [sku, version, positions] */
type WireSku = [string, number, WirePosition[]];
/** [warehouse, reserved, shippedDay, shippedUnits] */
type WireLoad = [string, number, number, number];
type WireMessage = { v: number; p: number; seq: number; skus: WireSku[]; loads?: WireLoad[] };

/** One SKU's positions as the feed carries them; `version` is SkuState.version (strictly increasing). */
export type FeedSku = { sku: string; version: number; positions: IdRecord<Position> };

/**
 * One decoded feed message. `loads`, when present, is the partition's whole load table (rows of zero load
 * left out) as of `seq`, its last applied stream sequence: it replaces what a view held for the partition.
 */
export type FeedUpdate = { partition: number; seq: number; skus: FeedSku[]; loads: WarehouseLoad[] | null };

// ---- encoding -----------------------------------------------------------------------------------------
//
// Messages are split by an upper bound of each item's msgpack size, so nothing is packed twice: a string of
// n UTF-16 units takes at most 5 + 3n bytes, a number at most 9, an array header at most 5. The message's
// own fields ({v, p, seq, skus, loads}: a map header, five keys ≤ 6 B each, three numbers, two array
// headers) take at most 1 + 5 × 6 + 3 × 9 + 2 × 5 = 68 bytes.

const numberBytesMax = 9;
const arrayHeaderBytesMax = 5;
const messageOverheadBytesMax = 68;
const stringBytesMax = (s: string) => 5 + 3 * s.length;

/** A SKU's wire tuple and the upper bound of its packed size, in one walk over its positions. */
function wireSku(s: SkuState): { tuple: WireSku; bytesMax: number } {
  const positions: WirePosition[] = [];
  let bytesMax = 2 * arrayHeaderBytesMax + stringBytesMax(s.sku) + numberBytesMax;
  for (const [w, p] of ownEntries(s.positions)) {
    positions.push([w, p.onHand, p.reserved, p.damaged, p.qualityControl, p.safetyStock]);
    bytesMax += arrayHeaderBytesMax + stringBytesMax(w) + 5 * numberBytesMax;
  }
  return { tuple: [s.sku, s.version, positions], bytesMax };
}

const loadBytesMax = (l: WarehouseLoad) =>
  arrayHeaderBytesMax + stringBytesMax(l.warehouse) + 3 * numberBytesMax;

const wireLoad = (l: WarehouseLoad): WireLoad => [l.warehouse, l.reserved, l.shippedDay, l.shippedUnits];

/** What one publication became: its messages, SKUs too large for any message, load rows left out. */
export type Encoded = { messages: Uint8Array[]; skusTooLarge: number; loadsLeftOut: number };

/**
 * One publication of partition `partition` as of `seq`: the SKUs' positions, and (when not null) the load
 * table in the first message, split into messages of at most `bytesTarget`. A load table that does not fit
 * one such message keeps its largest rows. A SKU whose state alone may exceed `bytesTarget` goes in a message
 * of its own if that fits `bytesMax`; else it is left out (counted): views keep their older state of it or
 * route it blind.
 */
export function encodeFeed(
  partition: number,
  seq: number,
  skus: readonly SkuState[],
  loads: readonly WarehouseLoad[] | null,
  bytesTarget: number,
  bytesMax: number = bytesTarget,
): Encoded {
  const budget = bytesTarget - messageOverheadBytesMax;
  assert(budget > 0, "a feed message has room for its own fields");
  assert(bytesMax >= bytesTarget, "the hard bound of a feed message is at least its target");
  const out: Encoded = { messages: [], skusTooLarge: 0, loadsLeftOut: 0 };
  const empty = (): WireMessage => ({ v: wireVersion, p: partition, seq, skus: [] });
  let current = empty();
  let bytes = 0;
  if (loads !== null) {
    const fit = fitLoads(loads, budget);
    out.loadsLeftOut = fit.leftOut;
    current.loads = fit.rows.map(wireLoad);
    bytes = fit.rows.reduce((n, l) => n + loadBytesMax(l), 0);
  }
  const flush = () => {
    const data = pack(current);
    assert(data.length <= bytesTarget, "a feed message stays under its bound");
    out.messages.push(data);
    current = empty();
    bytes = 0;
  };
  for (const s of skus) {
    const { tuple, bytesMax: size } = wireSku(s);
    if (size > budget) {
      const alone = pack({ ...empty(), skus: [tuple] });
      if (alone.length <= bytesMax) out.messages.push(alone);
      else out.skusTooLarge++;
      continue;
    }
    if (bytes + size > budget) flush();
    current.skus.push(tuple);
    bytes += size;
  }
  if (current.skus.length > 0 || current.loads !== undefined) flush();
  return out;
}

/**
 * The rows of a load table that fit `budget`, largest first when they do not all fit, and how many did not.
 * Rows with nothing reserved and nothing shipped add nothing to a load: never sent, never counted as left out.
 */
function fitLoads(
  loads: readonly WarehouseLoad[],
  budget: number,
): { rows: WarehouseLoad[]; leftOut: number } {
  const rows = loads.filter((l) => l.reserved > 0 || l.shippedUnits > 0);
  const nonZero = rows.length;
  let bytes = rows.reduce((n, l) => n + loadBytesMax(l), 0);
  if (bytes > budget) {
    rows.sort((a, b) => b.reserved + b.shippedUnits - (a.reserved + a.shippedUnits));
    while (bytes > budget) bytes -= loadBytesMax(rows.pop() as WarehouseLoad);
  }
  return { rows, leftOut: nonZero - rows.length };
}

// ---- decoding -----------------------------------------------------------------------------------------

export type Decoded = { ok: true; update: FeedUpdate } | { ok: false; detail: string };

class Malformed extends Error {
  override name = "Malformed";
}

const count = (v: unknown): number => {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0)
    throw new Malformed("not a whole number ≥ 0");
  return v;
};

const id = (v: unknown): string => {
  if (typeof v !== "string" || v.length === 0) throw new Malformed("not a non-empty string");
  return v;
};

const list = (v: unknown): unknown[] => {
  if (!Array.isArray(v)) throw new Malformed("not an array");
  return v;
};

function tuple(v: unknown, length: number): unknown[] {
  const t = list(v);
  if (t.length !== length) throw new Malformed(`not a tuple of ${length}`);
  return t;
}

function feedSku(v: unknown, partition: number, partitionCount: number): FeedSku {
  const [sku, version, positions] = tuple(v, 3);
  const s = id(sku);
  // A SKU outside the partition would shadow the state its own partition publishes.
  if (skuPartition(s, partitionCount) !== partition) throw new Malformed(`SKU of another partition`);
  // Assigned under keyOfId (never the key "__proto__", so never its setter): idRecord's defineProperty per
  // warehouse costs several times more, on the receiver's hot path.
  const record: IdRecord<Position> = {};
  for (const w of list(positions)) {
    const [warehouse, onHand, reserved, damaged, qualityControl, safetyStock] = tuple(w, 6);
    record[keyOfId(id(warehouse))] = {
      onHand: count(onHand),
      reserved: count(reserved),
      damaged: count(damaged),
      qualityControl: count(qualityControl),
      safetyStock: count(safetyStock),
    };
  }
  return { sku: s, version: count(version), positions: record };
}

function feedLoad(v: unknown): WarehouseLoad {
  const [warehouse, reserved, shippedDay, shippedUnits] = tuple(v, 4);
  return {
    warehouse: id(warehouse),
    reserved: count(reserved),
    shippedDay: count(shippedDay),
    shippedUnits: count(shippedUnits),
  };
}

/**
 * A feed message, checked whole: any malformed part drops the message (it comes from a ledger partition, so
 * a bad one is a bug or a stranger on the subject, never something to apply in part). Never throws.
 */
export function decodeFeed(subject: string, data: Uint8Array, partitionCount: number): Decoded {
  try {
    const token = subject.startsWith(subjectPrefix) ? subject.slice(subjectPrefix.length) : "";
    const partition = /^\d{1,9}$/.test(token) ? Number(token) : -1;
    if (partition < 0 || partition >= partitionCount)
      throw new Malformed(`subject ${subject} names no partition`);
    const body = unpack(data) as Partial<WireMessage> | null;
    if (typeof body !== "object" || body === null || Array.isArray(body)) throw new Malformed("not a map");
    if (body.v !== wireVersion) throw new Malformed(`schema version ${String(body.v)}, not ${wireVersion}`);
    if (body.p !== partition) throw new Malformed("partition differs from the subject's");
    const seq = count(body.seq);
    const skus = list(body.skus).map((s) => feedSku(s, partition, partitionCount));
    const loads = body.loads === undefined ? null : list(body.loads).map(feedLoad);
    return { ok: true, update: { partition, seq, skus, loads } };
  } catch (error) {
    return { ok: false, detail: (error as Error).message };
  }
}

// ---- publishing ---------------------------------------------------------------------------------------

/** Publishes one core-NATS message (nc.publish): fire and forget. */
export type FeedPublish = (subject: string, data: Uint8Array) => void;

export type PositionFeedLimits = {
  /** min(streams.messageBytesMax, positionFeedMessageBytesTarget): what messages are split to. */
  messageBytesTarget: number;
  /** streams.messageBytesMax: a SKU too large for the target goes alone up to this. */
  messageBytesMax: number;
  /** routing.loadRefreshMs: loads go out at most this often. */
  loadRefreshMs: number;
  /** routing.feedFullMs: a full pass starts this long after the previous one started (or when it ends). */
  fullMs: number;
  /** routing.feedFullSkusPerTickMax: SKUs one step of a full pass reads and publishes. */
  fullSkusPerStepMax: number;
  /**
   * sync.tickMs: steps of a full pass are at least this far apart, busy or idle. A step per batch would, under
   * load, read and publish the whole catalog in a burst (a step ≈ 1–2 ms for 1000 SKUs, a batch every few ms).
   */
  stepMs: number;
};

/** What a partition's feed sent and could not send, for metrics. */
export type PositionFeedStats = {
  messages: number;
  skus: number;
  /** Publishes that threw (connection closed or draining): what they carried goes out with the next pass. */
  publishFailed: number;
  skusTooLarge: number;
  loadsLeftOut: number;
  passes: number;
};

/**
 * One ledger partition's position feed. The applier stages what a batch changed; once the runner says the
 * batch is durable (`committed`), the SKUs go out, with the loads when due, and a step of the full pass when
 * one is due. An idle partition commits nothing, so `tick` (every sync.tickMs while no input flows) moves the
 * loads and the full pass on too. Everything read here is committed state; nothing here throws into the
 * partition (a failed publish is counted).
 *
 * The full pass's cost, wherever it runs: at most fullSkusPerStepMax SKUs read and encoded per stepMs
 * (defaults: 1000 per 50 ms ≈ 20,000 SKUs/s, ≈ 3% of a core), so a partition of N SKUs passes in
 * N / 20,000 s; a pass starts fullMs after the previous one started, or when it ends if it took longer.
 */
export class PositionFeed {
  private staged: readonly SkuState[] = [];
  /** Loads changed since they last went out (true at start: a view learns them from the first step). */
  private loadsDirty = true;
  private loadsSentAtMs = Number.NEGATIVE_INFINITY;
  /** The full pass: the last SKU it published ("" before the first), null while none runs. */
  private passCursor: string | null = null;
  private passStartedAtMs = Number.NEGATIVE_INFINITY;
  private stepAtMs = Number.NEGATIVE_INFINITY;
  readonly stats: PositionFeedStats = {
    messages: 0,
    skus: 0,
    publishFailed: 0,
    skusTooLarge: 0,
    loadsLeftOut: 0,
    passes: 0,
  };
  private readonly subject: string;

  constructor(
    private readonly partition: number,
    private readonly store: PartitionStore,
    private readonly limits: PositionFeedLimits,
    private readonly publish: FeedPublish,
  ) {
    assert(limits.fullSkusPerStepMax >= 1, "a full-pass step publishes at least one SKU");
    this.subject = positionFeedSubject(partition);
  }

  /**
   * The SKUs a batch changed, and whether it moved any warehouse load: sent once the batch is committed. A
   * batch whose commit failed never reaches `committed`; the next batch's stage replaces what it staged.
   */
  stage(skus: readonly SkuState[], loadsChanged: boolean): void {
    this.staged = skus;
    if (loadsChanged) this.loadsDirty = true;
  }

  /** After a durable commit: the staged SKUs (with the loads when due), then what is due by time. */
  committed(nowMs: number): void {
    const skus = this.staged;
    this.staged = [];
    const loads = this.loadsDue(nowMs);
    if (skus.length > 0 || loads !== null) this.send(skus, loads);
    this.passStep(nowMs);
  }

  /** While no input flows: the loads when due, and a step of the full pass. */
  tick(nowMs: number): void {
    const loads = this.loadsDue(nowMs);
    if (loads !== null) this.send([], loads);
    this.passStep(nowMs);
  }

  private loadsDue(nowMs: number): WarehouseLoad[] | null {
    if (!this.loadsDirty || nowMs - this.loadsSentAtMs < this.limits.loadRefreshMs) return null;
    this.loadsDirty = false;
    this.loadsSentAtMs = nowMs;
    return [...this.store.rangeValues<WarehouseLoad>("load", {})];
  }

  /** One bounded step of the full pass: starts one every fullMs (its loads go out again with it). */
  private passStep(nowMs: number): void {
    if (nowMs - this.stepAtMs < this.limits.stepMs) return;
    if (this.passCursor === null) {
      if (nowMs - this.passStartedAtMs < this.limits.fullMs) return;
      this.passCursor = "";
      this.passStartedAtMs = nowMs;
      this.loadsDirty = true;
      this.loadsSentAtMs = Number.NEGATIVE_INFINITY;
      this.stats.passes++;
    }
    this.stepAtMs = nowMs;
    const cursor = this.passCursor;
    const n = this.limits.fullSkusPerStepMax;
    // The range starts at the cursor itself (LMDB ranges are inclusive): one more, and the cursor dropped.
    const rows = this.store
      .range<SkuState>("skus", { start: cursor, limit: n + 1 })
      .filter((r) => r.key !== cursor)
      .slice(0, n);
    const loads = this.loadsDue(nowMs);
    if (rows.length > 0 || loads !== null)
      this.send(
        rows.map((r) => r.value),
        loads,
      );
    const last = rows.at(-1);
    this.passCursor = rows.length < n || last === undefined ? null : (last.key as string);
  }

  private send(skus: readonly SkuState[], loads: WarehouseLoad[] | null): void {
    const seq = this.store.streamSeqLastApplied();
    const { messageBytesTarget, messageBytesMax } = this.limits;
    const encoded = encodeFeed(this.partition, seq, skus, loads, messageBytesTarget, messageBytesMax);
    this.stats.skusTooLarge += encoded.skusTooLarge;
    this.stats.loadsLeftOut += encoded.loadsLeftOut;
    for (const data of encoded.messages) {
      try {
        this.publish(this.subject, data);
        this.stats.messages++;
      } catch {
        // A hint: the next change or the next full pass carries it again.
        this.stats.publishFailed++;
      }
    }
    this.stats.skus += skus.length - encoded.skusTooLarge;
  }
}
