import { assert } from "../assert.ts";
import { type IdRecord, own, ownEntries, withOwn } from "../own.ts";
import { type Allocation, emptyPosition, type LedgerEntry, type Position, positionFields } from "./types.ts";

// Retention of a SKU's history: which ledger entries and allocations may be removed, and the snapshot that
// keeps the ledger checkable once they are. Pure and synchronous: time is an input (the stage's clock).
// The stage walks its tables a bounded number of records per pass (src/stages/ledger/compaction.ts).

/** The limits retention works with (config `ledger.*`; src/config/schema.ts says why each has its value). */
export type RetentionLimits = {
  /** A ledger entry older than this (by its `atMs`) is folded into its SKU's snapshot and removed. */
  entriesRetentionMs: number;
  /** A finished line's allocation is kept this long after its last change (the late-duplicate horizon). */
  allocationsRetentionMs: number;
  /** A shipped line may be returned this long after its last change: its allocation is kept at least as long. */
  returnWindowMs: number;
};

/**
 * What a SKU's removed history leaves behind: its positions as of `version`, the last entry folded into it.
 * Invariant 5 with retention: positions = `positions` + the fold of the remaining entries, which run
 * `version + 1` … the SKU's version without a gap. A SKU with nothing removed has no snapshot (version 0).
 */
export type SkuHistory = {
  sku: string;
  /** Entries 1 … version were folded here and removed; the first remaining entry is version + 1. */
  version: number;
  /** Per warehouse id (an IdRecord, read and written only through src/domain/own.ts). */
  positions: IdRecord<Position>;
  /** `atMs` of the last entry folded (0: none yet). */
  atMs: number;
  /** Entries removed so far. */
  entriesRemoved: number;
  /** Allocations of finished lines removed so far: a return for a line absent after this is refused. */
  allocationsRemoved: number;
};

export function emptyHistory(sku: string): SkuHistory {
  return { sku, version: 0, positions: {}, atMs: 0, entriesRemoved: 0, allocationsRemoved: 0 };
}

/** Whether an entry is past retention at `nowMs`. */
export function entryExpired(e: LedgerEntry, nowMs: number, limits: RetentionLimits): boolean {
  return e.atMs <= nowMs - limits.entriesRetentionMs;
}

/** When a line last changed (allocations written before retention existed: when it was reserved). */
export function allocationChangedAtMs(a: Allocation): number {
  return a.changedAtMs ?? a.reservedAtMs;
}

/**
 * Whether nothing more can happen to a line's stock: nothing reserved, and either nothing is still out at the
 * customer (never shipped: released, refused, lost at a count, rejected; or every shipped unit returned), or
 * its return window has passed. A re-route of a finished line is a new attempt and needs no history.
 */
export function allocationFinished(a: Allocation, nowMs: number, limits: RetentionLimits): boolean {
  if (a.reserved > 0) return false;
  if (a.waiting !== undefined) return false; // a backorder waiting for stock is not finished

  if (a.returned >= a.shipped) return true;
  return allocationChangedAtMs(a) <= nowMs - limits.returnWindowMs;
}

/**
 * Whether a line's allocation may be removed at `nowMs`: finished, and unchanged for allocationsRetentionMs.
 * The allocation is also the exactly-once guard of the line (its attempt, shipment and return ids): past
 * this horizon a late copy of a request about it finds no allocation (docs/operations.md, "Retention of
 * history", says what then happens to each kind).
 */
export function allocationExpired(a: Allocation, nowMs: number, limits: RetentionLimits): boolean {
  return (
    allocationFinished(a, nowMs, limits) && allocationChangedAtMs(a) <= nowMs - limits.allocationsRetentionMs
  );
}

/** Folds one entry into a snapshot: the entry must be the next of the SKU (invariant 4). */
export function foldIntoHistory(h: SkuHistory, e: LedgerEntry): SkuHistory {
  assert(e.sku === h.sku, "a snapshot folds entries of its own SKU");
  assert(e.version === h.version + 1, "entries are folded into a snapshot in version order, without a gap");
  const before = own(h.positions, e.warehouse) ?? emptyPosition();
  const next: Position = { ...before };
  for (const field of positionFields) next[field] += e.delta[field] ?? 0;
  return {
    ...h,
    version: e.version,
    positions: withOwn(h.positions, e.warehouse, next),
    atMs: e.atMs,
    entriesRemoved: h.entriesRemoved + 1,
  };
}

/**
 * The entries of one SKU that may be removed now: the leading run of `entries` (ascending, starting right
 * after the snapshot) that is past retention, at most `budget` of them. Stops at the first entry within
 * retention, so a SKU's remaining entries are always a contiguous tail (versions without a gap).
 */
export function compactEntries(
  history: SkuHistory,
  entries: Iterable<LedgerEntry>,
  nowMs: number,
  limits: RetentionLimits,
  budget: number,
): { history: SkuHistory; removed: number[] } {
  let h = history;
  const removed: number[] = [];
  if (budget <= 0) return { history: h, removed };
  for (const e of entries) {
    if (!entryExpired(e, nowMs, limits)) break;
    h = foldIntoHistory(h, e);
    removed.push(e.version);
    if (removed.length >= budget) break;
  }
  return { history: h, removed };
}

/**
 * A running position per warehouse: a snapshot plus entries folded one at a time, so a check holds one
 * position per warehouse of the SKU (at most the network's warehouses), never the SKU's history.
 */
export class PositionFold {
  private readonly byWarehouse = new Map<string, Position>();
  /** The version of the last entry folded (the snapshot's version before any). */
  version: number;
  /** Entries folded that did not follow the previous version (invariant 4 broken). */
  gaps = 0;
  entries = 0;

  constructor(
    readonly sku: string,
    history: SkuHistory | undefined,
  ) {
    this.version = history?.version ?? 0;
    for (const [warehouse, p] of ownEntries(history?.positions)) this.byWarehouse.set(warehouse, { ...p });
  }

  add(e: LedgerEntry): void {
    if (e.version !== this.version + 1) this.gaps++;
    this.version = e.version;
    this.entries++;
    const p = this.byWarehouse.get(e.warehouse) ?? emptyPosition();
    for (const field of positionFields) p[field] += e.delta[field] ?? 0;
    this.byWarehouse.set(e.warehouse, p);
  }

  positions(): ReadonlyMap<string, Position> {
    return this.byWarehouse;
  }
}
