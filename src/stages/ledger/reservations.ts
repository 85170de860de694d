import { assert } from "../../domain/assert.ts";
import {
  type Allocation,
  type LedgerChanges,
  type ReservationKey,
  reservationKey,
} from "../../domain/ledger/index.ts";
import type { Op, PartitionStore } from "../../store/index.ts";

// The reservation index: `reservations` ([sku, warehouse, reservedAtMs, orderKey, lineId] → units reserved),
// one row per allocation with reserved > 0, written in the batch's transaction from the ledger's changes. A
// count reads a SKU's open reservations at one warehouse from it, newest first, as far as its shortfall
// takes: never the SKU's allocation history, which grows with every line it ever had.

export const reservationTables = ["reservations"] as const;

/** The index rows of a batch: written with its allocations (LedgerApplier.finish). */
export function reservationOps(
  changes: Pick<LedgerChanges, "reservationsOpened" | "reservationsClosed">,
): Op[] {
  const ops: Op[] = [];
  // Deletes first: a row closed and opened again under the same key in one batch ends written.
  for (const key of changes.reservationsClosed) ops.push({ op: "delete", table: "reservations", key });
  for (const r of changes.reservationsOpened) {
    assert(r.reserved > 0, "an index row is an open reservation");
    ops.push({ op: "put", table: "reservations", key: r.key, value: r.reserved });
  }
  return ops;
}

/**
 * A SKU's committed open reservations at one warehouse, newest first, read lazily: each row is one index
 * key and one allocation lookup. Every row is checked against its allocation as it is read (a broken index
 * would make a count take the wrong reservations).
 */
export function* openReservationsOf(
  store: PartitionStore,
  sku: string,
  warehouse: string,
): Generator<Allocation> {
  // Ids hold no control character (parseId): [sku, warehouse + NUL] is just past the warehouse's rows.
  const rows = store.rangeLazy<number>("reservations", {
    start: [sku, `${warehouse}\u0000`],
    end: [sku, warehouse],
    reverse: true,
  });
  for (const { key, value } of rows) {
    const [, , reservedAtMs, orderKey, lineId] = key as ReservationKey;
    const a = store.get<Allocation>("allocations", [sku, orderKey, lineId]);
    assert(a !== undefined, "a reservation index row has its allocation");
    assert(a.warehouse === warehouse, "a reservation index row names its allocation's warehouse");
    assert(a.reservedAtMs === reservedAtMs, "a reservation index row has its allocation's time");
    assert(a.reserved === value, "a reservation index row holds its allocation's units");
    yield a;
  }
}

/**
 * Layout 5 → 6: the `reservations` index is derived from the allocations a partition already holds (one scan,
 * once, in the upgrade's transaction). `history` (snapshots), `commandIds` and `commandIdsByAge` start empty:
 * nothing was compacted and no command id was remembered before.
 */
export function upgradeLedgerFrom5(store: PartitionStore): void {
  for (const a of store.rangeValues<Allocation>("allocations", {})) {
    if (a.reserved > 0) store.upgradePut("reservations", reservationKey(a), a.reserved);
  }
}
