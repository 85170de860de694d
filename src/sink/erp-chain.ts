/**
 * What the sink sees of the ERP chains (docs/sync-and-erp.md, "Gap and duplicate detection"), so a gap is
 * visible where the ERP is fed, not only in the ERP: per (stage, partition), batches of one store run batchNo
 * 1, 2, 3… with each prevSeqTo the previous seqTo; a new store (a recreated, imported or taken-over partition)
 * starts batchNo 1 whose prevSeqTo is the last seqTo of the chain before it. State is in memory: the first
 * batch of a partition after the sink starts is `first_seen`.
 */
export type ErpChainOutcome = "first_seen" | "next" | "new_chain" | "repeat" | "gap";

export type ErpChainLink = {
  stage: string;
  partition: number;
  storeId: string;
  batchNo: number;
  seqTo: number;
  prevSeqTo: number;
  part?: number;
};

/** Reads a batch's chain fields from its JSON, or null when the message is not an ERP batch. */
export function erpChainLink(data: Uint8Array): ErpChainLink | null {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder().decode(data));
  } catch {
    return null;
  }
  const b = v as Partial<ErpChainLink> | null;
  if (b === null || typeof b !== "object") return null;
  const numbers = [b.partition, b.batchNo, b.seqTo, b.prevSeqTo];
  if (typeof b.stage !== "string" || typeof b.storeId !== "string") return null;
  if (!numbers.every((n) => typeof n === "number" && Number.isSafeInteger(n))) return null;
  return b as ErpChainLink;
}

export class ErpChainWatch {
  private readonly last = new Map<string, { storeId: string; batchNo: number; seqTo: number }>();

  /** Judges a delivered batch against the chain so far and moves the chain on (not for a repeat). */
  observe(b: ErpChainLink): ErpChainOutcome | null {
    if ((b.part ?? 1) !== 1) return null; // a batch's later parts repeat its fields
    const key = `${b.stage}-${b.partition}`;
    const had = this.last.get(key);
    const outcome = judge(had, b);
    if (outcome !== "repeat") this.last.set(key, { storeId: b.storeId, batchNo: b.batchNo, seqTo: b.seqTo });
    return outcome;
  }
}

function judge(had: { storeId: string; batchNo: number; seqTo: number } | undefined, b: ErpChainLink) {
  if (had === undefined) return "first_seen";
  if (b.storeId === had.storeId) {
    if (b.batchNo <= had.batchNo) return "repeat";
    return b.batchNo === had.batchNo + 1 && b.prevSeqTo === had.seqTo ? "next" : "gap";
  }
  return b.batchNo === 1 && b.prevSeqTo === had.seqTo ? "new_chain" : "gap";
}
