import {
  type Allocation,
  available,
  type LedgerEntry,
  PositionFold,
  positionFields,
  type ReservationKey,
  type SkuHistory,
  type SkuState,
} from "../../domain/ledger/index.ts";
import { own, ownEntries, ownIds } from "../../domain/own.ts";
import type { PartitionStore } from "../../store/index.ts";

export type LedgerMismatch = {
  sku: string;
  warehouse: string;
  field: string;
  stored: number;
  folded: number;
};

/**
 * A position whose reserved units differ from the sum of its rows in the reservation index, or with rows
 * that do not match their allocation (`rowsWrong`).
 */
export type ReservationMismatch = {
  sku: string;
  warehouse: string;
  reserved: number;
  indexed: number;
  rowsWrong: number;
};

export type LedgerCheck = {
  partition: number;
  skus: number;
  /** Entries read (those retention has not removed). */
  entries: number;
  /** Entries retention removed, folded into the SKUs' snapshots (the `history` table). */
  entriesCompacted: number;
  mismatches: LedgerMismatch[];
  /** Invariant 1 broken in stored state: must always be empty. */
  oversold: Array<{ sku: string; warehouse: string; available: number }>;
  /** Invariant 4: versions of a SKU's remaining entries run snapshot version + 1 … version without a gap. */
  versionGaps: string[];
  /** Reserved units that the reservation index (what counts read) does not account for: must be empty. */
  reservationMismatches: ReservationMismatch[];
};

/**
 * Rebuilds every position of a partition from its snapshot and its remaining ledger entries and compares
 * with the stored positions (invariant 5), on one consistent read snapshot. What `sluice ledger check` and
 * GET /v1/ledger/check run. Streamed: entries are folded as they are read into one running position per
 * warehouse of the SKU in hand, so memory is bounded by the network's warehouses, never by a SKU's history
 * (reports are capped at `mismatchesMax` each).
 */
export function checkLedgerPartition(
  store: PartitionStore,
  partition: number,
  mismatchesMax = 100,
): LedgerCheck {
  const result: LedgerCheck = {
    partition,
    skus: 0,
    entries: 0,
    entriesCompacted: 0,
    mismatches: [],
    oversold: [],
    versionGaps: [],
    reservationMismatches: [],
  };
  const historyOf = (sku: string) =>
    store.hasTable("history") ? store.get<SkuHistory>("history", sku) : undefined;
  let fold = null as PositionFold | null;
  const flush = () => {
    if (fold !== null) compare(store.get<SkuState>("skus", fold.sku), fold, result, mismatchesMax);
  };
  // SKUs with remaining entries: each folded from its snapshot as its entries stream past.
  for (const e of store.rangeValues<LedgerEntry>("entries")) {
    result.entries++;
    if (e.sku !== fold?.sku) {
      flush();
      fold = new PositionFold(e.sku, historyOf(e.sku));
    }
    fold.add(e);
  }
  flush();
  for (const s of store.rangeValues<SkuState>("skus")) {
    result.skus++;
    const history = historyOf(s.sku);
    result.entriesCompacted += history?.entriesRemoved ?? 0;
    // A SKU whose every entry retention removed: its positions are its snapshot's.
    if (!hasEntriesAfter(store, s.sku, history?.version ?? 0))
      compare(s, new PositionFold(s.sku, history), result, mismatchesMax);
    for (const [warehouse, p] of ownEntries(s.positions)) {
      if (available(p) < 0) result.oversold.push({ sku: s.sku, warehouse, available: available(p) });
    }
    if (store.hasTable("reservations")) checkReservations(store, s, result, mismatchesMax);
  }
  return result;
}

function hasEntriesAfter(store: PartitionStore, sku: string, version: number): boolean {
  for (const _ of store.keys("entries", { start: [sku, version + 1], end: [sku, Number.MAX_SAFE_INTEGER] }))
    return true;
  return false;
}

function compare(state: SkuState | undefined, fold: PositionFold, out: LedgerCheck, max: number) {
  if (state === undefined || fold.gaps > 0 || fold.version !== state.version) {
    if (out.versionGaps.length < max) out.versionGaps.push(fold.sku);
  }
  const folded = fold.positions();
  const warehouses = new Set([...ownIds(state?.positions), ...folded.keys()]);
  for (const warehouse of warehouses) {
    const stored = own(state?.positions, warehouse);
    const f = folded.get(warehouse);
    for (const field of positionFields) {
      const a = stored?.[field] ?? 0;
      const b = f?.[field] ?? 0;
      if (a !== b && out.mismatches.length < max)
        out.mismatches.push({ sku: fold.sku, warehouse, field, stored: a, folded: b });
    }
  }
}

/**
 * Each position's reserved units equal its rows in the reservation index, and each row its allocation's
 * units. Streams the SKU's rows (open reservations only) with one running sum per warehouse.
 */
function checkReservations(store: PartitionStore, s: SkuState, out: LedgerCheck, max: number) {
  const indexed = new Map<string, number>();
  const rowsWrong = new Map<string, number>();
  for (const { key, value } of store.rangeLazy<number>("reservations", {
    start: [s.sku],
    end: [`${s.sku}\u0000`],
  })) {
    const [, warehouse, reservedAtMs, orderKey, lineId] = key as ReservationKey;
    indexed.set(warehouse, (indexed.get(warehouse) ?? 0) + value);
    const a = store.get<Allocation>("allocations", [s.sku, orderKey, lineId]);
    if (a?.reserved !== value || a.warehouse !== warehouse || a.reservedAtMs !== reservedAtMs)
      rowsWrong.set(warehouse, (rowsWrong.get(warehouse) ?? 0) + 1);
  }
  const warehouses = new Set([...ownIds(s.positions), ...indexed.keys()]);
  for (const warehouse of warehouses) {
    const reserved = own(s.positions, warehouse)?.reserved ?? 0;
    const sum = indexed.get(warehouse) ?? 0;
    const wrong = rowsWrong.get(warehouse) ?? 0;
    if ((reserved !== sum || wrong > 0) && out.reservationMismatches.length < max)
      out.reservationMismatches.push({ sku: s.sku, warehouse, reserved, indexed: sum, rowsWrong: wrong });
  }
}

export function isConsistent(c: LedgerCheck): boolean {
  return (
    c.mismatches.length === 0 &&
    c.oversold.length === 0 &&
    c.versionGaps.length === 0 &&
    c.reservationMismatches.length === 0
  );
}
