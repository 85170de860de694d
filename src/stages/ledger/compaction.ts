import type { Key } from "lmdb";
import { assert } from "../../domain/assert.ts";
import {
  type Allocation,
  allocationExpired,
  compactEntries,
  emptyHistory,
  type LedgerEntry,
  type RetentionLimits,
  type SkuHistory,
} from "../../domain/ledger/index.ts";
import type { Op, PartitionStore } from "../../store/index.ts";

// Retention of a ledger partition's history (docs/operations.md, "Retention of history"). `history`
// (sku → SkuHistory) keeps each SKU's positions as of the last entry removed, so the ledger check still
// proves positions = snapshot + fold of the remaining entries. Entries past ledger.entriesRetentionMs and
// allocations of finished lines past ledger.allocationsRetentionMs (and the return window) are removed a
// bounded number of records per pass, in the transaction of a batch or a tick: never a long pause.

export const compactionTables = ["history"] as const;

export type CompactionLimits = RetentionLimits & {
  /** The shortest time between two passes (ledger.compactionIntervalMs). */
  compactionIntervalMs: number;
  /** Records one pass reads in each of `entries` and `allocations` (ledger.compactionRecordsMax). */
  compactionRecordsMax: number;
};

export type CompactionPass = {
  ops: Op[];
  entriesRemoved: number;
  allocationsRemoved: number;
  /** Records read (SKU keys, snapshots, entries, allocations): at most 4 × compactionRecordsMax. */
  recordsRead: number;
  /** Whether this pass reached the end of each table (the next pass starts again from the first record). */
  skusWrapped: boolean;
  allocationsWrapped: boolean;
};

/** The largest version a SKU may reach (a range end past every entry of one SKU). */
const versionMax = Number.MAX_SAFE_INTEGER;

/**
 * Walks a ledger partition's SKUs and allocations from where its last pass stopped (cursors in memory: a
 * restart starts again from the first, which costs one sweep's reads and removes nothing twice). Reads
 * committed state only: its ops go first in the transaction, so a batch that writes the same allocation in
 * that transaction wins (a put after the delete).
 */
export class LedgerCompactor {
  /** The SKU the next pass starts at (inclusive); null: the first. */
  private skuNext: string | null = null;
  /** The allocation key the next pass starts at (inclusive); null: the first. */
  private allocationNext: Key | null = null;
  private lastPassMs = Number.NEGATIVE_INFINITY;
  entriesRemovedTotal = 0;
  allocationsRemovedTotal = 0;

  constructor(
    private readonly store: PartitionStore,
    private readonly limits: Readonly<CompactionLimits>,
  ) {
    assert(limits.compactionRecordsMax >= 1, "a compaction pass reads at least one record");
    assert(limits.entriesRetentionMs >= 0 && limits.allocationsRetentionMs >= 0, "retentions are ≥ 0");
  }

  /** A pass when compactionIntervalMs has passed since the last one (its ops), else nothing. */
  step(nowMs: number): Op[] {
    if (nowMs - this.lastPassMs < this.limits.compactionIntervalMs) return [];
    this.lastPassMs = nowMs;
    return this.pass(nowMs).ops;
  }

  /** One bounded pass at `nowMs` (the stage's clock): what to delete and the snapshots that change. */
  pass(nowMs: number): CompactionPass {
    const histories = new Map<string, SkuHistory>();
    const history = (sku: string) =>
      histories.get(sku) ?? this.store.get<SkuHistory>("history", sku) ?? emptyHistory(sku);
    const ops: Op[] = [];
    const entries = this.compactEntries(nowMs, history, histories, ops);
    const allocations = this.compactAllocations(nowMs, history, histories, ops);
    for (const h of histories.values()) ops.push({ op: "put", table: "history", key: h.sku, value: h });
    this.entriesRemovedTotal += entries.removed;
    this.allocationsRemovedTotal += allocations.removed;
    return {
      ops,
      entriesRemoved: entries.removed,
      allocationsRemoved: allocations.removed,
      recordsRead: entries.read + allocations.read,
      skusWrapped: entries.wrapped,
      allocationsWrapped: allocations.wrapped,
    };
  }

  /** Old entries of the SKUs from the cursor on, folded into their snapshots, within the pass's budget. */
  private compactEntries(
    nowMs: number,
    history: (sku: string) => SkuHistory,
    histories: Map<string, SkuHistory>,
    ops: Op[],
  ) {
    let budget = this.limits.compactionRecordsMax;
    let removed = 0;
    let read = 0;
    let wrapped = true;
    const skus = this.store.keys("skus", this.skuNext === null ? {} : { start: this.skuNext });
    for (const key of skus) {
      if (budget <= 0) {
        this.skuNext = key as string; // resume here
        wrapped = false;
        break;
      }
      const sku = key as string;
      const before = history(sku);
      const range = this.store.rangeValues<LedgerEntry>("entries", {
        start: [sku, before.version + 1],
        end: [sku, versionMax],
        limit: budget + 1,
      });
      const { history: after, removed: versions } = compactEntries(before, range, nowMs, this.limits, budget);
      // Read: the SKU's key, its snapshot, the entries removed and the first one kept. A SKU costs the
      // entries it lost, or 1 when it lost none: ≤ 3 reads per unit of budget, and every pass progresses.
      read += versions.length + 3;
      budget -= Math.max(1, versions.length);
      if (versions.length === 0) continue;
      for (const version of versions) ops.push({ op: "delete", table: "entries", key: [sku, version] });
      histories.set(sku, after);
      removed += versions.length;
      if (budget <= 0) {
        this.skuNext = sku; // this SKU may have more: resume at it
        wrapped = false;
        break;
      }
    }
    if (wrapped) this.skuNext = null;
    return { removed, read, wrapped };
  }

  /** Allocations of finished lines past retention, from the cursor on, within the pass's budget. */
  private compactAllocations(
    nowMs: number,
    history: (sku: string) => SkuHistory,
    histories: Map<string, SkuHistory>,
    ops: Op[],
  ) {
    let budget = this.limits.compactionRecordsMax;
    let removed = 0;
    let read = 0;
    let wrapped = true;
    const rows = this.store.rangeLazy<Allocation>(
      "allocations",
      this.allocationNext === null ? {} : { start: this.allocationNext },
    );
    for (const { key, value: a } of rows) {
      if (budget <= 0) {
        this.allocationNext = key;
        wrapped = false;
        break;
      }
      read++;
      budget--;
      if (!allocationExpired(a, nowMs, this.limits)) continue;
      // Finished: nothing reserved, so the line has no row in the reservation index to remove.
      assert(a.reserved === 0, "an allocation removed by retention reserves nothing");
      ops.push({ op: "delete", table: "allocations", key });
      const h = history(a.sku);
      histories.set(a.sku, { ...h, allocationsRemoved: h.allocationsRemoved + 1 });
      removed++;
    }
    if (wrapped) this.allocationNext = null;
    return { removed, read, wrapped };
  }
}
