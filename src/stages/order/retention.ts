import type { Config } from "../../config/index.ts";
import {
  finalAtOf,
  isFinal,
  type Order,
  type PendingCancel,
  type RetentionIndex,
  type RetentionLimits,
  type RetentionOp,
  type RetentionRow,
} from "../../domain/orders/index.ts";
import type { Op, PartitionStore } from "../../store/index.ts";

/**
 * Retention's tables in an order partition (docs/architecture.md, "Retention"):
 *   finals          [finalAtMs, orderKey] → 1     final orders, not compacted yet
 *   tombstones      orderKey → OrderTombstone     what is left of a compacted order
 *   tombstoneTimes  [finalAtMs, orderKey] → 1     tombstones, by their order's final time
 *   pendingTimes    [atMs, orderKey] → 1          cancels waiting for their order, by the oldest one's time
 *   retention       "backfill" → BackfillState    indexing orders written before retention existed
 * New tables start empty (no layout change): the backfill indexes what an older version left.
 */
export const indexTables: Record<RetentionIndex, string> = {
  finals: "finals",
  tombstones: "tombstoneTimes",
  pending: "pendingTimes",
};
export const retentionTables = [
  "finals",
  "tombstones",
  "tombstoneTimes",
  "pendingTimes",
  "retention",
] as const;

export const retentionLimits = (config: Config): RetentionLimits => ({
  finalRetentionMs: config.orders.finalRetentionMs,
  tombstoneRetentionMs: config.orders.tombstoneRetentionMs,
  pendingCancelAgeMsMax: config.orders.pendingCancelAgeMsMax,
  perTickMax: config.orders.retentionPerTickMax,
});

const horizonMs = (limits: RetentionLimits, index: RetentionIndex): number =>
  index === "finals"
    ? limits.finalRetentionMs
    : index === "tombstones"
      ? limits.tombstoneRetentionMs
      : limits.pendingCancelAgeMsMax;

/** Committed rows of an index at or before `cutoffMs`, earliest first (LMDB orders [atMs, key] keys). */
export function committedRows(
  store: PartitionStore,
  index: RetentionIndex,
  cutoffMs: number,
  limit: number,
): RetentionRow[] {
  return store
    .range<number>(indexTables[index], { start: [0], end: [cutoffMs, "\uffff"], limit })
    .map(({ key }) => {
      const [atMs, orderKey] = key as [number, string];
      return { atMs, key: orderKey };
    });
}

/** When the earliest committed row of any index passes its horizon (stream time), or null: none. */
export function retentionDueMs(store: PartitionStore, limits: RetentionLimits): number | null {
  let due: number | null = null;
  for (const index of ["finals", "tombstones", "pending"] as const) {
    const first = committedRows(store, index, Number.MAX_SAFE_INTEGER, 1)[0];
    if (first === undefined) continue;
    const at = first.atMs + horizonMs(limits, index);
    if (due === null || at < due) due = at;
  }
  return due;
}

/** A retention index row as a store write. */
export function retentionWrite(r: RetentionOp): Op {
  const key = [r.atMs, r.key];
  return r.op === "put"
    ? { op: "put", table: indexTables[r.index], key, value: 1 }
    : { op: "delete", table: indexTables[r.index], key };
}

/** Where the backfill is: the last order and pending key it indexed (null: none yet), and whether it ended. */
type BackfillState = { ordersAfter: string | null; pendingAfter: string | null; done: boolean };

/**
 * Orders and waiting cancels written before retention existed have no index row: the backfill writes them,
 * `countMax` records per tick (in key order, resuming where it stopped), in the tick's own commit. A final
 * order is indexed at `finalAtOf` (its last event when its final time was not recorded: it stays at least
 * as long as it would have). Idempotent: a row it writes for a record indexed already is the same row.
 * On a partition created by this version it finds the tables empty (or indexed) and ends at once.
 */
export class RetentionBackfill {
  private state: BackfillState;

  constructor(
    private readonly store: PartitionStore,
    private readonly countMax: number,
  ) {
    this.state = store.get<BackfillState>("retention", "backfill") ?? {
      ordersAfter: null,
      pendingAfter: null,
      done: false,
    };
  }

  get done(): boolean {
    return this.state.done;
  }

  /** The writes of the next page, with the new position; none once done. */
  step(): Op[] {
    if (this.state.done) return [];
    const ops: Op[] = [];
    const orders = this.page<Order>("orders", this.state.ordersAfter);
    for (const { key, value } of orders.rows) {
      if (isFinal(value))
        ops.push(retentionWrite({ index: "finals", op: "put", atMs: finalAtOf(value), key }));
    }
    const pending = this.page<PendingCancel[]>("pending", this.state.pendingAfter);
    for (const { key, value } of pending.rows) {
      if (value.length === 0) continue;
      const atMs = Math.min(...value.map((c) => c.atMs));
      ops.push(retentionWrite({ index: "pending", op: "put", atMs, key }));
    }
    this.state = {
      ordersAfter: orders.last ?? this.state.ordersAfter,
      pendingAfter: pending.last ?? this.state.pendingAfter,
      done: orders.ended && pending.ended,
    };
    ops.push({ op: "put", table: "retention", key: "backfill", value: this.state });
    return ops;
  }

  private page<T>(table: string, after: string | null) {
    const rows = this.store
      .range<T>(
        table,
        after === null ? { limit: this.countMax + 1 } : { start: after, limit: this.countMax + 1 },
      )
      .filter(({ key }) => key !== after)
      .slice(0, this.countMax) as Array<{ key: string; value: T }>;
    return { rows, last: rows.at(-1)?.key ?? null, ended: rows.length < this.countMax };
  }
}
