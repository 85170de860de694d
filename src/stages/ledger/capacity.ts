import { assert } from "../../domain/assert.ts";
import {
  type CapacityDay,
  type CapacityShort,
  type ChunkRule,
  capacityDayOf,
  capacityFree,
  capacityKey,
  dayMs,
  type LedgerChanges,
  lowWaterUnits,
} from "../../domain/ledger/index.ts";
import type { Network } from "../../domain/network/index.ts";
import type { Op, PartitionStore } from "../../store/index.ts";
import type { CapacityPool, ClaimOutcome, KvPoolLimits } from "./capacity-pool.ts";

// The stage's side of warehouse capacity (docs/capacity.md): each ledger partition keeps, per warehouse and
// UTC day, the capacity it holds in its LMDB table `capacity` ([day, warehouse] → CapacityDay), written in the
// batch's transaction like every other table (so export/import, snapshots and the changelog carry it), and
// claims more from the shared pool (KV) off the apply path: when its free capacity falls below a low-water
// mark, and at once when a line was refused for want of it. A claim lands in KV first; the chunk is handed to
// the ledger at the start of the next batch or tick and committed with it.

export const capacityTables = ["capacity"] as const;

/**
 * The capacity limits: the integer ones are config keys (`capacity.*` in src/config/schema.ts, which override
 * these in src/stages/definition.ts); chunkUnitsMin and the two fractions are fixed here. Each says why.
 */
export const capacityDefaults = Object.freeze({
  /** The smallest chunk (units): 1 lets the last unit of a day be claimed. */
  chunkUnitsMin: 1,
  /**
   * A chunk is this fraction of an even share of what the pool has left (remaining / P). 0.5: a partition
   * with all the demand claims about log2 steps to drain the pool; at most about half the remainder sits
   * unused in partitions that do not need it, and it shrinks as the pool drains.
   */
  chunkShareFraction: 0.5,
  /** Claim the next chunk when free capacity falls below this fraction of capacityPerDay / P (units, ≥ min). */
  lowWaterShareFraction: 0.25,
  /** Claims one partition has in flight at once (one per warehouse and day at most). */
  claimsInFlightMax: 8,
  /** Longest wait for one KV request of a claim (ms); a claim takes at most a few of them. */
  claimTimeoutMs: 2000,
  /** Failed KV requests (timeouts, no responders) tried again within one claim. */
  claimRetriesMax: 3,
  /** Compare-and-set refusals tried again within one claim: each means another partition's claim landed. */
  claimCasRetriesMax: 64,
  /** First wait between two failed requests of a claim (ms), doubled each time. */
  claimRetryBackoffMs: 100,
  /** After a failed claim, no claim for that warehouse and day for this long (ms): a down server is not hammered. */
  claimFailedPauseMs: 1000,
  /** The first chunk of tomorrow is claimed this long before UTC midnight (ms), so a new day starts with some. */
  dayAheadMs: 10 * 60_000,
  /** Rows of days older than yesterday are deleted from the `capacity` table, at most this many per tick. */
  rowsDeletedPerTickMax: 1000,
});

export type CapacityLimits = { readonly [K in keyof typeof capacityDefaults]: number };

/** The pool's request limits out of the capacity limits. */
export const poolLimits = (l: CapacityLimits): KvPoolLimits => ({
  claimTimeoutMs: l.claimTimeoutMs,
  claimRetriesMax: l.claimRetriesMax,
  claimCasRetriesMax: l.claimCasRetriesMax,
  claimRetryBackoffMs: l.claimRetryBackoffMs,
});

/** What a partition did with capacity since it started: the figures tests measure and metrics export. */
export type CapacityStats = {
  claims: { granted: number; full: number; reconciled: number; failed: number };
  /** Units of new chunks. */
  unitsGranted: number;
  /** Units found claimed in KV by this partition and never committed (a crash, a stop): taken back. */
  unitsAdopted: number;
  /**
   * Line × warehouse refusals for want of held capacity while the pool was not known to be full: the line
   * took its next candidate (or was refused) though the warehouse had capacity left somewhere, in the pool
   * or in another partition (transient: a claim was in flight or not yet made).
   */
  shortTransient: number;
  /** The same once this partition found the day's pool full: the warehouse is full for it. */
  shortPoolFull: number;
};

/** A claim's story, for instrumentation (src/stages/definition.ts emits capacity_claimed and capacity_short). */
export type CapacityEvent =
  | { type: "claimed"; partition: number; warehouse: string; outcome: ClaimOutcome["outcome"]; units: number }
  | { type: "short"; partition: number; warehouse: string; poolFull: boolean; lines: number };

const rowKey = (day: number, warehouse: string) => `${day}\u0000${warehouse}`;

/** capacityPerDay by warehouse id, once per rule set. */
const capacityMaps = new WeakMap<Network, Map<string, number>>();
export function capacityPerDayOf(network: Network, warehouse: string): number | undefined {
  let m = capacityMaps.get(network);
  if (m === undefined) {
    m = new Map(network.warehouses.map((w) => [w.id, w.capacityPerDay]));
    capacityMaps.set(network, m);
  }
  return m.get(warehouse);
}

export class CapacityClaimer {
  readonly stats: CapacityStats = {
    claims: { granted: 0, full: 0, reconciled: 0, failed: 0 },
    unitsGranted: 0,
    unitsAdopted: 0,
    shortTransient: 0,
    shortPoolFull: 0,
  };
  /** Held and used per row as the last batch left them (committed or about to be): read from the store once. */
  private readonly rows = new Map<string, CapacityDay>();
  /** Chunks claimed in KV, not yet handed to the ledger. */
  private granted: Array<{ warehouse: string; day: number; units: number }> = [];
  /** Claims in flight by row key; each promise settles once the claim landed (granted, full or failed). */
  private readonly inFlight = new Map<string, Promise<void>>();
  /** capacityPerDay at which the day's pool was found full: claims resume only if it rises. */
  private readonly poolFull = new Map<string, number>();
  private readonly pausedUntilMs = new Map<string, number>();
  private readonly rule: ChunkRule;
  private dayCleaned = -1;
  /**
   * Warehouses whose pool key is read once at start (today's), so capacity claimed in KV and never committed
   * by an earlier run of this partition is adopted even when no claim is due.
   */
  private readonly reconcile = new Set<string>();

  constructor(
    private readonly partition: number,
    private readonly partitionCount: number,
    private readonly pool: CapacityPool,
    private readonly network: () => Network,
    private readonly store: PartitionStore,
    private readonly limits: CapacityLimits = capacityDefaults,
    private readonly clock: () => number = Date.now,
    private readonly onEvent: (e: CapacityEvent) => void = () => undefined,
  ) {
    assert(limits.chunkUnitsMin >= 1, "capacity chunkUnitsMin ≥ 1");
    assert(limits.claimsInFlightMax >= 1, "capacity claimsInFlightMax ≥ 1");
    assert(limits.chunkShareFraction > 0 && limits.chunkShareFraction <= 1, "chunkShareFraction in (0, 1]");
    this.rule = limits;
  }

  /** Whether the ledger enforces a warehouse's capacity: every warehouse of the rule set in force. */
  limited = (warehouse: string): boolean => capacityPerDayOf(this.network(), warehouse) !== undefined;

  /** The chunks that landed since the last call: the applier grants them to the ledger, in this batch. */
  takeGranted(): Array<{ warehouse: string; day: number; units: number }> {
    const out = this.granted;
    this.granted = [];
    return out;
  }

  private row(day: number, warehouse: string): CapacityDay {
    const key = rowKey(day, warehouse);
    let r = this.rows.get(key);
    if (r === undefined) {
      r = this.store.get<CapacityDay>("capacity", capacityKey({ day, warehouse })) ?? {
        day,
        warehouse,
        held: 0,
        used: 0,
      };
      this.rows.set(key, r);
    }
    return r;
  }

  /** Free capacity of a row, counting chunks landed and not yet in a batch. */
  free(day: number, warehouse: string): number {
    return capacityFree(this.row(day, warehouse)) + this.pending(day, warehouse);
  }

  /** After a batch (or tick) was applied: the rows it changed, and claims for what ran short. */
  afterBatch(changes: Pick<LedgerChanges, "capacity" | "capacityShort">): void {
    for (const c of changes.capacity) this.rows.set(rowKey(c.day, c.warehouse), c);
    for (const s of changes.capacityShort) this.onShort(s);
    for (const c of changes.capacity) this.ensure(c.warehouse, c.day, 0);
  }

  private onShort(s: CapacityShort): void {
    const cap = capacityPerDayOf(this.network(), s.warehouse);
    const full = cap !== undefined && (this.poolFull.get(rowKey(s.day, s.warehouse)) ?? -1) >= cap;
    if (full) this.stats.shortPoolFull += s.lines;
    else this.stats.shortTransient += s.lines;
    this.onEvent({
      type: "short",
      partition: this.partition,
      warehouse: s.warehouse,
      poolFull: full,
      lines: s.lines,
    });
    // At once: the next line for this warehouse should fit.
    this.ensure(s.warehouse, s.day, s.units);
  }

  /**
   * Every sync tick: each warehouse of the rule set is topped up for today, and for tomorrow in the last
   * dayAheadMs of today. Returns deletes of rows of days before yesterday (bounded per tick).
   */
  tick(nowMs: number): Op[] {
    this.topUp(nowMs);
    return this.cleanup(capacityDayOf(nowMs));
  }

  /** Claims for every warehouse of the rule set that is below its low-water mark (today, and tomorrow late). */
  topUp(nowMs: number): void {
    const today = capacityDayOf(nowMs);
    const ahead = nowMs + this.limits.dayAheadMs >= (today + 1) * dayMs;
    for (const w of this.network().warehouses) {
      this.ensure(w.id, today, 0);
      if (ahead) this.ensure(w.id, today + 1, 0);
    }
    for (const w of this.reconcile) this.ensure(w, today, 0, true);
  }

  /** At start: every warehouse of the rule set is reconciled with the pool for today (see `reconcile`). */
  start(nowMs: number): void {
    for (const w of this.network().warehouses) this.reconcile.add(w.id);
    this.topUp(nowMs);
  }

  private cleanup(today: number): Op[] {
    if (this.dayCleaned === today) return [];
    const ops: Op[] = [];
    const old = this.store.range<CapacityDay>("capacity", {
      end: [today - 1],
      limit: this.limits.rowsDeletedPerTickMax,
    });
    for (const { key } of old) ops.push({ op: "delete", table: "capacity", key });
    if (old.length < this.limits.rowsDeletedPerTickMax) this.dayCleaned = today;
    for (const [k, r] of this.rows) if (r.day < today - 1) this.rows.delete(k);
    for (const m of [this.poolFull, this.pausedUntilMs])
      for (const k of m.keys()) if (Number(k.split("\u0000")[0]) < today - 1) m.delete(k);
    return ops;
  }

  /** Claims a chunk for (warehouse, day) if this partition's free capacity there is below what it needs. */
  ensure(warehouse: string, day: number, wantUnits: number, reconcileOnly = false): void {
    const capacityPerDay = capacityPerDayOf(this.network(), warehouse);
    if (capacityPerDay === undefined) {
      this.reconcile.delete(warehouse);
      return;
    }
    const nowMs = this.clock();
    const today = capacityDayOf(nowMs);
    if (day < today || day > today + 1) return; // a replay of an old day, or a clock far off: nothing to claim
    const key = rowKey(day, warehouse);
    if (this.inFlight.has(key) || this.inFlight.size >= this.limits.claimsInFlightMax) return;
    if ((this.pausedUntilMs.get(key) ?? 0) > nowMs) return;
    if (reconcileOnly) this.reconcile.delete(warehouse);
    else {
      if ((this.poolFull.get(key) ?? -1) >= capacityPerDay) return;
      const low = lowWaterUnits(capacityPerDay, this.partitionCount, this.rule);
      if (this.free(day, warehouse) >= Math.max(low, wantUnits)) return;
    }
    // What this partition holds for the key, committed or landed: no grant for the key can land meanwhile
    // (one claim in flight per key), so the pool's answer less this is exactly what to grant.
    const heldUnits = this.row(day, warehouse).held + this.pending(day, warehouse);
    const claim = this.pool
      .claim({
        warehouse,
        day,
        capacityPerDay,
        partition: this.partition,
        partitionCount: this.partitionCount,
        wantUnits,
        heldUnits,
        reconcileOnly,
        rule: this.rule,
      })
      .catch((error: Error): ClaimOutcome => ({ outcome: "failed", error }))
      .then((o) => this.landed(warehouse, day, capacityPerDay, o))
      .finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, claim);
  }

  /**
   * The claims in flight (started here if due) for warehouses of the rule set this partition holds nothing of
   * today (at start, on a new day or warehouse, or a chunk used up before the next landed): a batch that waits for them reserves
   * with what they bring instead of turning its lines away while the pool has room. Each claim is bounded
   * (claimTimeoutMs, claimRetriesMax) and settles whatever its outcome. Null: nothing to wait for.
   */
  awaitEmpty(): Promise<void> | null {
    const today = capacityDayOf(this.clock());
    // A warehouse new to the rule set (or a partition that never claimed) has no claim until a tick tops it up:
    // started here, so the batch waits for it rather than refusing lines the pool has room for.
    for (const w of this.network().warehouses) if (this.free(today, w.id) === 0) this.ensure(w.id, today, 0);
    if (this.inFlight.size === 0) return null;
    const waits: Promise<void>[] = [];
    for (const [key, claim] of this.inFlight) {
      const [day, warehouse] = key.split("\u0000") as [string, string];
      if (Number(day) === today && this.free(today, warehouse) === 0) waits.push(claim);
    }
    return waits.length === 0 ? null : Promise.all(waits).then(() => undefined);
  }

  private pending(day: number, warehouse: string): number {
    let units = 0;
    for (const g of this.granted) if (g.day === day && g.warehouse === warehouse) units += g.units;
    return units;
  }

  private landed(warehouse: string, day: number, capacityPerDay: number, o: ClaimOutcome): void {
    const key = rowKey(day, warehouse);
    this.stats.claims[o.outcome]++;
    const units = o.outcome === "failed" ? 0 : o.grantUnits;
    this.onEvent({ type: "claimed", partition: this.partition, warehouse, outcome: o.outcome, units });
    if (o.outcome === "failed") {
      this.pausedUntilMs.set(key, this.clock() + this.limits.claimFailedPauseMs);
      return;
    }
    assert(o.grantUnits >= 0, "the pool never counts less for a partition than it holds");
    this.stats.unitsAdopted += o.adoptedUnits;
    this.stats.unitsGranted += o.grantUnits - o.adoptedUnits;
    if (o.grantUnits > 0) this.granted.push({ warehouse, day, units: o.grantUnits });
    if (o.outcome === "full" || o.claimed >= capacityPerDay) this.poolFull.set(key, capacityPerDay);
  }

  /** Claims in flight now (a gauge; also lets tests wait for quiet). */
  get claimsInFlight(): number {
    return this.inFlight.size;
  }
}
