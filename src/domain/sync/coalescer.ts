import { assert } from "../assert.ts";
import { TokenBucket, type TokenBucketState } from "./token-bucket.ts";

// The stock publisher of one ledger partition, for `sluice.out.stock.<channel>`: pure and clock-free.
// The ledger stage offers each new ATS per (channel, SKU); StockSync keeps only the newest one and says what
// may be sent now, within each channel's flush window and rate budget. Nothing is dropped: a value waits
// until the budget allows, and a newer value replaces it while it waits; a value refused because the queue is
// full leaves its pair marked (`refusedPairs`) until the caller offers it again, and the mark is state like the
// waiting values (`takeChanges`, `exportState`), so it survives a restart.

/** One SKU's ATS on a channel; `version` is the SKU's ledger version (invariant 4: consumers drop stale ones). */
export type AtsItem = { sku: string; ats: number; version: number; atMs: number };

/** One push request: one `sluice.out.stock.<channel>` message, `{"items":[…]}`. */
export type StockRequest = { channel: string; items: AtsItem[] };

/**
 * A channel's budget in this partition. With P partitions each takes requestsPerSecond / P of the channel's
 * budget (it may be fractional); burstRequestsMax is the bucket depth: requests allowed at once after a quiet
 * spell (≥ 1). Over any T seconds a partition sends at most burstRequestsMax + requestsPerSecond × T requests.
 */
export type ChannelBudget = {
  requestsPerSecond: number;
  itemsPerRequestMax: number;
  burstRequestsMax: number;
};

export type StockSyncLimits = {
  /** A value waits at most this long after its first offer before it is due (urgent ones do not wait). */
  flushWindowMs: number;
  /** (channel, SKU) pairs waiting at once; a new pair beyond it is refused (see `offer`). */
  pendingCountMax: number;
};

export type OfferResult = "queued" | "coalesced" | "stale" | "refused_full";

/** Per channel, since the process started (metrics; not part of the exported state). */
export type ChannelCounters = {
  offered: number;
  /** Offers that replaced a waiting value (the saving coalescing makes). */
  coalesced: number;
  /** Offers older than the waiting value, ignored. */
  stale: number;
  /** New pairs refused because pendingCountMax was reached. */
  refusedFull: number;
  /** Items taken for sending, and the requests that carried them. */
  published: number;
  requests: number;
  /** Time due values waited for the rate budget (measured between take calls). */
  throttledMs: number;
};

type Pending = { item: AtsItem; firstOfferMs: number };

type Lane = {
  /** Urgent values, in the order they became urgent. */
  urgent: Map<string, Pending>;
  /** The others, in first-offer order: firstOfferMs never decreases along the map (see `clockMs`). */
  waiting: Map<string, Pending>;
  bucket: TokenBucket;
  counters: ChannelCounters;
  throttledSinceMs: number | null;
};

export type PendingState = AtsItem & { firstOfferMs: number };

/**
 * A (channel, SKU) pair whose newest value was refused because pendingCountMax pairs were waiting: the caller
 * recomputes its value and offers it again when there is room. No value is kept (the caller's is newer by
 * then); at most one mark per pair, so marks are bounded by SKUs × channels, like the pairs themselves.
 */
export type RefusedPair = { channel: string; sku: string };

/** A waiting pair as a row of a table (LMDB): what `takeChanges` hands out and `stateFromRows` reads back. */
export type PendingRow = PendingState & { channel: string; urgent: boolean };

/** What changed since the last call, for a store that writes it in the batch's transaction. */
export type StockSyncChanges = {
  clockMs: number;
  /** Pairs whose waiting value changed: the row to write, or null when the pair was taken (delete the row). */
  pending: Array<{ channel: string; sku: string; row: PendingRow | null }>;
  /** Every channel's bucket (a few per network): write them all. */
  buckets: Array<{ channel: string; bucket: TokenBucketState }>;
  /** Pairs whose refused mark changed: set (write a row) or cleared (delete it). Net of the interval. */
  refused: Array<RefusedPair & { refused: boolean }>;
};
export type StockSyncState = {
  clockMs: number;
  channels: Array<{
    channel: string;
    bucket: TokenBucketState;
    throttledSinceMs: number | null;
    urgent: PendingState[];
    waiting: PendingState[];
  }>;
  /** Marked pairs, oldest refusal first. */
  refused: RefusedPair[];
};

const zeroCounters = (): ChannelCounters => ({
  offered: 0,
  coalesced: 0,
  stale: 0,
  refusedFull: 0,
  published: 0,
  requests: 0,
  throttledMs: 0,
});

export class StockSync {
  private readonly lanes = new Map<string, Lane>();
  private pending = 0;
  /** Pairs changed since the last takeChanges, keyed channel NUL sku (ids hold no control characters). */
  private readonly dirty = new Map<string, [string, string]>();
  /** Refused pairs to offer again, oldest refusal first; never a pair that is waiting. Keyed like `dirty`. */
  private readonly refused = new Map<string, RefusedPair>();
  /** Pairs whose mark changed since the last takeChanges, with whether they were marked then. */
  private readonly refusedDirty = new Map<string, RefusedPair & { before: boolean }>();
  /** The highest time seen: first offers are stamped no earlier, so each `waiting` map stays in time order. */
  private clockMs = 0;

  constructor(
    private readonly limits: StockSyncLimits,
    private readonly budgetOf: (channel: string) => ChannelBudget,
  ) {
    assert(Number.isSafeInteger(limits.flushWindowMs) && limits.flushWindowMs >= 0, "flushWindowMs ≥ 0");
    assert(
      Number.isSafeInteger(limits.pendingCountMax) && limits.pendingCountMax >= 1,
      "pendingCountMax ≥ 1",
    );
  }

  /** Values waiting in one channel's lane. */
  pendingIn(channel: string): number {
    const lane = this.lanes.get(channel);
    return lane === undefined ? 0 : lane.urgent.size + lane.waiting.size;
  }

  /** Whether a value of (channel, SKU) waits to go out (the channel is behind by design, not drifted). */
  isWaiting(channel: string, sku: string): boolean {
    const lane = this.lanes.get(channel);
    return lane !== undefined && (lane.urgent.has(sku) || lane.waiting.has(sku));
  }

  get pendingCount(): number {
    return this.pending;
  }

  /** Pairs marked refused, waiting to be offered again. */
  get refusedCount(): number {
    return this.refused.size;
  }

  /** The `limit` oldest refused pairs (a page: the caller offers them again, or forgets those it cannot). */
  refusedPairs(limit: number): RefusedPair[] {
    const out: RefusedPair[] = [];
    for (const pair of this.refused.values()) {
      if (out.length >= limit) break;
      out.push({ ...pair });
    }
    return out;
  }

  /**
   * Clears a pair's refused mark without an offer: its channel or SKU is gone, or the value the channel was
   * last offered is the current one again (nothing left to send).
   */
  forgetRefused(channel: string, sku: string): void {
    this.setRefused(channel, sku, false);
  }

  /** Whether takeChanges has something to hand out besides the buckets. */
  hasChanges(): boolean {
    return this.dirty.size > 0 || this.refusedDirty.size > 0;
  }

  /**
   * Offers the newest ATS of (channel, SKU). A waiting value of the pair is replaced when this one's version
   * is the same or newer (the same version: the channel's rules changed, not the stock) and keeps its place
   * in line; an older one is ignored. StockSync does not remember what it already sent (that would grow with
   * the catalogue): the caller's versions per SKU never go back (they are the ledger's per-SKU versions), and
   * a consumer drops a stale version anyway (invariant 4).
   *
   * `urgent` (see `isUrgent`) makes the pair skip the flush window; it stays urgent until sent. A new pair
   * beyond pendingCountMax is refused ("refused_full"), never dropped silently: the pair is marked
   * (`refusedPairs`) until an offer of it is queued or the caller forgets it; the caller offers it again when
   * there is room (ATS is recomputed from the ledger, so nothing is lost).
   */
  offer(channel: string, item: AtsItem, nowMs: number, urgent = false): OfferResult {
    assertItem(channel, item);
    this.clockMs = Math.max(this.clockMs, nowMs);
    const lane = this.lane(channel);
    lane.counters.offered++;
    const existing = lane.urgent.get(item.sku) ?? lane.waiting.get(item.sku);
    if (existing === undefined) return this.queue(channel, lane, item, urgent);
    assert(!this.refused.has(pairKey(channel, item.sku)), "a waiting pair is not marked refused");
    const result = this.replace(lane, existing, item, urgent);
    if (result === "coalesced") this.markDirty(channel, item.sku);
    return result;
  }

  private queue(channel: string, lane: Lane, item: AtsItem, urgent: boolean): OfferResult {
    if (this.pending >= this.limits.pendingCountMax) {
      lane.counters.refusedFull++;
      this.setRefused(channel, item.sku, true);
      return "refused_full";
    }
    (urgent ? lane.urgent : lane.waiting).set(item.sku, { item, firstOfferMs: this.clockMs });
    this.pending++;
    this.markDirty(channel, item.sku);
    this.setRefused(channel, item.sku, false);
    return "queued";
  }

  /** A pair refused again keeps its place in line (Map.set of a present key does not move it). */
  private setRefused(channel: string, sku: string, on: boolean): void {
    const key = pairKey(channel, sku);
    const before = this.refused.has(key);
    if (before === on) return;
    if (!this.refusedDirty.has(key)) this.refusedDirty.set(key, { channel, sku, before });
    if (on) this.refused.set(key, { channel, sku });
    else this.refused.delete(key);
  }

  private replace(lane: Lane, existing: Pending, item: AtsItem, urgent: boolean): OfferResult {
    if (item.version < existing.item.version) {
      lane.counters.stale++;
      return "stale";
    }
    existing.item = item;
    lane.counters.coalesced++;
    if (urgent && lane.waiting.delete(item.sku)) lane.urgent.set(item.sku, existing);
    return "coalesced";
  }

  /**
   * What may be sent at `nowMs`: per channel, requests of up to itemsPerRequestMax items while its bucket has
   * tokens and something is due (urgent, or waiting since flushWindowMs). Urgent values first, then the
   * longest waiting. A request that goes anyway is filled with values not yet due (oldest first): they ride
   * free, the budget counts requests. Channels in id order, so the result is deterministic.
   */
  take(nowMs: number): StockRequest[] {
    this.clockMs = Math.max(this.clockMs, nowMs);
    const out: StockRequest[] = [];
    for (const channel of [...this.lanes.keys()].sort()) {
      const lane = this.lanes.get(channel) as Lane;
      const budget = this.syncBudget(channel, lane);
      while (this.hasDue(lane) && lane.bucket.tryTake(nowMs)) {
        const items = this.fill(channel, lane, budget.itemsPerRequestMax);
        lane.counters.requests++;
        lane.counters.published += items.length;
        out.push({ channel, items });
      }
      this.trackThrottle(lane, nowMs);
    }
    return out;
  }

  private fill(channel: string, lane: Lane, itemsMax: number): AtsItem[] {
    const items: AtsItem[] = [];
    for (const queue of [lane.urgent, lane.waiting]) {
      for (const [sku, p] of queue) {
        if (items.length >= itemsMax) return items;
        items.push(p.item);
        queue.delete(sku);
        this.pending--;
        this.markDirty(channel, sku);
      }
    }
    return items;
  }

  private hasDue(lane: Lane): boolean {
    return lane.urgent.size > 0 || this.dueAtMs(lane) <= this.clockMs;
  }

  /** When the longest-waiting value is due (its first offer + the window), or +∞ when none waits. */
  private dueAtMs(lane: Lane): number {
    if (lane.urgent.size > 0) return Number.NEGATIVE_INFINITY;
    const first = lane.waiting.values().next();
    return first.done ? Number.POSITIVE_INFINITY : first.value.firstOfferMs + this.limits.flushWindowMs;
  }

  /** Counted at every take, so the counter is current while a channel stays throttled. */
  private trackThrottle(lane: Lane, nowMs: number): void {
    if (lane.throttledSinceMs !== null)
      lane.counters.throttledMs += Math.max(0, nowMs - lane.throttledSinceMs);
    lane.throttledSinceMs = this.hasDue(lane) ? nowMs : null;
  }

  /**
   * When `take` should run next: `nowMs` if something can go now, else the earliest time something is due and
   * its channel has a token; null when nothing waits.
   */
  nextDueMs(nowMs: number): number | null {
    let next: number | null = null;
    for (const [channel, lane] of this.lanes) {
      if (lane.urgent.size + lane.waiting.size === 0) continue;
      this.syncBudget(channel, lane);
      const due = Math.max(nowMs, this.dueAtMs(lane), nowMs + lane.bucket.msUntilToken(nowMs));
      next = next === null ? due : Math.min(next, due);
    }
    return next;
  }

  counters(): Record<string, ChannelCounters> {
    // Keyed by channel ids for display: Object.fromEntries defines each (a channel "__proto__" included).
    return Object.fromEntries([...this.lanes].map(([channel, lane]) => [channel, { ...lane.counters }]));
  }

  private lane(channel: string): Lane {
    const existing = this.lanes.get(channel);
    if (existing !== undefined) return existing;
    const budget = checkedBudget(this.budgetOf(channel));
    const lane: Lane = {
      urgent: new Map(),
      waiting: new Map(),
      bucket: new TokenBucket(budget.requestsPerSecond, budget.burstRequestsMax),
      counters: zeroCounters(),
      throttledSinceMs: null,
    };
    this.lanes.set(channel, lane);
    return lane;
  }

  /** Budgets can change at run time (the network's rules): the bucket follows, its tokens kept. */
  private syncBudget(channel: string, lane: Lane): ChannelBudget {
    const budget = checkedBudget(this.budgetOf(channel));
    lane.bucket.setRate(budget.requestsPerSecond, budget.burstRequestsMax);
    return budget;
  }

  // ---- state: plain data, so a partition's publisher moves with the partition --------------------------

  private markDirty(channel: string, sku: string): void {
    this.dirty.set(pairKey(channel, sku), [channel, sku]);
  }

  /**
   * The pairs changed since the last call (offered, replaced or taken), every bucket and the refused marks
   * that changed: what a store writes in the transaction that commits the offers (a ledger batch) or the taken
   * requests (their outbox items), so the waiting values and the refused pairs survive a crash.
   * `stateFromRows` rebuilds a state from the stored rows.
   */
  takeChanges(): StockSyncChanges {
    const pending: StockSyncChanges["pending"] = [];
    for (const [channel, sku] of this.dirty.values()) {
      const lane = this.lanes.get(channel) as Lane;
      const urgent = lane.urgent.get(sku);
      const p = urgent ?? lane.waiting.get(sku);
      const row =
        p === undefined
          ? null
          : { ...p.item, firstOfferMs: p.firstOfferMs, channel, urgent: urgent !== undefined };
      pending.push({ channel, sku, row });
    }
    this.dirty.clear();
    const buckets = [...this.lanes].map(([channel, lane]) => ({
      channel,
      bucket: lane.bucket.exportState(),
    }));
    const refused: StockSyncChanges["refused"] = [];
    for (const [key, { channel, sku, before }] of this.refusedDirty) {
      const now = this.refused.has(key);
      if (now !== before) refused.push({ channel, sku, refused: now });
    }
    this.refusedDirty.clear();
    return { clockMs: this.clockMs, pending, buckets, refused };
  }

  exportState(): StockSyncState {
    const channels: StockSyncState["channels"] = [];
    for (const [channel, lane] of this.lanes) {
      const dump = (q: Map<string, Pending>) =>
        [...q.values()].map((p) => ({ ...p.item, firstOfferMs: p.firstOfferMs }));
      channels.push({
        channel,
        bucket: lane.bucket.exportState(),
        throttledSinceMs: lane.throttledSinceMs,
        urgent: dump(lane.urgent),
        waiting: dump(lane.waiting),
      });
    }
    return { clockMs: this.clockMs, channels, refused: [...this.refused.values()].map((p) => ({ ...p })) };
  }

  /** Loads an exported state into an empty StockSync (a partition starting, or moving to this process). */
  importState(state: StockSyncState): void {
    assert(this.lanes.size === 0, "importState needs an empty StockSync");
    assert(Number.isFinite(state.clockMs), "exported clockMs is a number");
    this.clockMs = state.clockMs;
    for (const c of state.channels) {
      assert(!this.lanes.has(c.channel), "each channel appears once in an exported state");
      const budget = checkedBudget(this.budgetOf(c.channel));
      const lane = this.lane(c.channel);
      lane.bucket = new TokenBucket(
        budget.requestsPerSecond,
        budget.burstRequestsMax,
        clampTokens(c.bucket, budget),
      );
      lane.throttledSinceMs = c.throttledSinceMs;
      for (const [list, queue] of [
        [c.urgent, lane.urgent],
        [c.waiting, lane.waiting],
      ] as const) {
        for (const p of list) this.importPending(c.channel, queue, p);
      }
    }
    for (const { channel, sku } of state.refused) this.importRefused(channel, sku);
  }

  private importRefused(channel: string, sku: string): void {
    assert(channel.length > 0, "a refused pair's channel id is not empty");
    assert(sku.length > 0, "a refused pair's sku id is not empty");
    const key = pairKey(channel, sku);
    assert(!this.refused.has(key), "a (channel, SKU) pair is refused once");
    const lane = this.lanes.get(channel);
    assert(
      lane === undefined || (!lane.urgent.has(sku) && !lane.waiting.has(sku)),
      "a refused pair is not waiting",
    );
    this.refused.set(key, { channel, sku });
  }

  private importPending(channel: string, queue: Map<string, Pending>, p: PendingState): void {
    const item: AtsItem = { sku: p.sku, ats: p.ats, version: p.version, atMs: p.atMs };
    assertItem(channel, item);
    const lane = this.lanes.get(channel) as Lane;
    assert(!lane.urgent.has(p.sku) && !lane.waiting.has(p.sku), "a (channel, SKU) pair waits once");
    assert(p.firstOfferMs <= this.clockMs, "a first offer is not after the exported clock");
    queue.set(p.sku, { item, firstOfferMs: p.firstOfferMs });
    this.pending++;
  }
}

const pairKey = (channel: string, sku: string) => `${channel}\u0000${sku}`;

function clampTokens(s: TokenBucketState, budget: ChannelBudget): TokenBucketState {
  return { tokens: Math.min(Math.max(0, s.tokens), budget.burstRequestsMax), refilledAtMs: s.refilledAtMs };
}

function checkedBudget(b: ChannelBudget): ChannelBudget {
  assert(Number.isFinite(b.requestsPerSecond) && b.requestsPerSecond > 0, "requestsPerSecond is positive");
  assert(Number.isSafeInteger(b.itemsPerRequestMax) && b.itemsPerRequestMax >= 1, "itemsPerRequestMax ≥ 1");
  assert(Number.isFinite(b.burstRequestsMax) && b.burstRequestsMax >= 1, "burstRequestsMax ≥ 1");
  return b;
}

function assertItem(channel: string, item: AtsItem): void {
  assert(channel.length > 0, "channel id is not empty");
  assert(item.sku.length > 0, "sku id is not empty");
  assert(Number.isSafeInteger(item.ats) && item.ats >= 0, "ATS is a whole number ≥ 0");
  assert(Number.isSafeInteger(item.version) && item.version >= 0, "version is a whole number ≥ 0");
  assert(Number.isFinite(item.atMs), "atMs is a number");
}

/**
 * A state from stored rows (any order): each channel's values in line by first offer (then SKU), urgent ones
 * apart; refused pairs in the order given (a store's key order: their refusal order is not kept). Ties within one millisecond may come back in another order than they had: harmless, nothing waits
 * longer than its window because of it.
 */
export function stateFromRows(
  clockMs: number,
  rows: readonly PendingRow[],
  buckets: ReadonlyArray<{ channel: string; bucket: TokenBucketState }>,
  refused: readonly RefusedPair[] = [],
): StockSyncState {
  const channels = new Map<string, StockSyncState["channels"][number]>();
  const entry = (channel: string) => {
    let c = channels.get(channel);
    if (c === undefined) {
      c = {
        channel,
        bucket: { tokens: 0, refilledAtMs: clockMs },
        throttledSinceMs: null,
        urgent: [],
        waiting: [],
      };
      channels.set(channel, c);
    }
    return c;
  };
  for (const b of buckets) entry(b.channel).bucket = b.bucket;
  for (const { channel, urgent, ...p } of rows)
    (urgent ? entry(channel).urgent : entry(channel).waiting).push(p);
  const inLine = (a: PendingState, b: PendingState) =>
    a.firstOfferMs - b.firstOfferMs || (a.sku < b.sku ? -1 : a.sku > b.sku ? 1 : 0);
  for (const c of channels.values()) {
    c.urgent.sort(inLine);
    c.waiting.sort(inLine);
  }
  return {
    clockMs,
    channels: [...channels.values()],
    refused: refused.map(({ channel, sku }) => ({ channel, sku })),
  };
}
