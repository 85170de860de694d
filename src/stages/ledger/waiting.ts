import { assert } from "../../domain/assert.ts";
import {
  type LedgerChanges,
  type WaitingHead,
  type WaitingLine,
  waitingKey,
} from "../../domain/ledger/index.ts";
import type { Op, PartitionStore } from "../../store/index.ts";

// The waiting lists of a ledger partition (src/domain/ledger/waiting.ts): `waiting` ([sku, −priority,
// arrival] → WaitingLine, a SKU's rows in fill order) and `waitingHeads` (sku → WaitingHead). Written in the
// batch's transaction from the ledger's changes, so export/import, snapshots and the changelog carry them
// like every other table. Partitions written before they existed start with empty lists.

export const waitingTables = ["waiting", "waitingHeads"] as const;

/** The rows and heads a batch writes (LedgerApplier.finish). Deletes first: a key reused ends written. */
export function waitingOps(
  changes: Pick<LedgerChanges, "waitingPut" | "waitingDeleted" | "waitingHeads">,
): Op[] {
  const ops: Op[] = [];
  for (const key of changes.waitingDeleted) ops.push({ op: "delete", table: "waiting", key });
  for (const w of changes.waitingPut) {
    assert(w.qty > 0, "a waiting line asks for units");
    ops.push({ op: "put", table: "waiting", key: waitingKey(w), value: w });
  }
  for (const [sku, head] of changes.waitingHeads) {
    ops.push(
      head === null
        ? { op: "delete", table: "waitingHeads", key: sku }
        : { op: "put", table: "waitingHeads", key: sku, value: head },
    );
  }
  return ops;
}

/** Ids hold no control character (parseId): [sku + NUL] is just past the SKU's rows. */
const rangeOf = (sku: string) => ({ start: [sku], end: [`${sku}\u0000`] });

/** A SKU's committed waiting lines, in fill order (bounded by ledger.waitingLinesPerSkuMax). */
export function waitingOf(store: PartitionStore, sku: string): Iterable<WaitingLine> {
  return store.rangeValues<WaitingLine>("waiting", rangeOf(sku));
}

/** One page of a SKU's waiting lines in fill order, from place `offset` (0: the next to be filled). */
export function waitingPage(
  store: PartitionStore,
  sku: string,
  offset: number,
  limit: number,
): WaitingLine[] {
  return store.range<WaitingLine>("waiting", { ...rangeOf(sku), offset, limit }).map((r) => r.value);
}

export function waitingHeadOf(store: PartitionStore, sku: string): WaitingHead | undefined {
  return store.get<WaitingHead>("waitingHeads", sku);
}

/** Lines waiting in the whole partition (the gauge's value at start): one read per SKU with a list. */
export function waitingLinesIn(store: PartitionStore): number {
  let n = 0;
  for (const head of store.rangeValues<WaitingHead>("waitingHeads", {})) {
    // The table's shared msgpack structures record is no head (a key of its own type).
    if (typeof head === "object" && head !== null && typeof head.count === "number") n += head.count;
  }
  return n;
}
