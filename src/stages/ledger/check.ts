import { available, foldEntries, type LedgerEntry, type SkuState } from "../../domain/ledger/index.ts";
import { own, ownEntries, ownIds } from "../../domain/own.ts";
import type { PartitionStore } from "../../store/index.ts";

export type LedgerMismatch = {
  sku: string;
  warehouse: string;
  field: string;
  stored: number;
  folded: number;
};

export type LedgerCheck = {
  partition: number;
  skus: number;
  entries: number;
  mismatches: LedgerMismatch[];
  /** Invariant 1 broken in stored state: must always be empty. */
  oversold: Array<{ sku: string; warehouse: string; available: number }>;
  /** Invariant 4: versions of a SKU's entries are 1..version without a gap. */
  versionGaps: string[];
};

/**
 * Rebuilds every position of a partition from its ledger entries and compares with the stored positions
 * (invariant 5), on one consistent read snapshot. What `sluice ledger check` and GET /v1/ledger/check run.
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
    mismatches: [],
    oversold: [],
    versionGaps: [],
  };
  let current: string | null = null;
  let batch: LedgerEntry[] = [];
  const flush = () => {
    if (current === null) return;
    compare(store.get<SkuState>("skus", current), current, batch, result, mismatchesMax);
  };
  for (const e of store.rangeValues<LedgerEntry>("entries")) {
    result.entries++;
    if (e.sku !== current) {
      flush();
      current = e.sku;
      batch = [];
    }
    batch.push(e);
  }
  flush();
  for (const s of store.rangeValues<SkuState>("skus")) {
    result.skus++;
    for (const [warehouse, p] of ownEntries(s.positions)) {
      if (available(p) < 0) result.oversold.push({ sku: s.sku, warehouse, available: available(p) });
    }
  }
  return result;
}

function compare(
  state: SkuState | undefined,
  sku: string,
  entries: LedgerEntry[],
  out: LedgerCheck,
  max: number,
) {
  const versions = entries.map((e) => e.version);
  if (state === undefined || versions.some((v, i) => v !== i + 1) || versions.length !== state.version) {
    out.versionGaps.push(sku);
  }
  const folded = foldEntries(entries);
  const warehouses = new Set([...ownIds(state?.positions), ...folded.keys()]);
  for (const warehouse of warehouses) {
    const stored = own(state?.positions, warehouse);
    const f = folded.get(warehouse);
    for (const field of ["onHand", "reserved", "damaged", "qualityControl", "safetyStock"] as const) {
      const a = stored?.[field] ?? 0;
      const b = f?.[field] ?? 0;
      if (a !== b && out.mismatches.length < max)
        out.mismatches.push({ sku, warehouse, field, stored: a, folded: b });
    }
  }
}

export function isConsistent(c: LedgerCheck): boolean {
  return c.mismatches.length === 0 && c.oversold.length === 0 && c.versionGaps.length === 0;
}
