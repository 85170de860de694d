import { assert } from "../assert.ts";
import type { EntryType, LedgerEntry, ReturnDisposition } from "../ledger/types.ts";
import type { ErpBatch, ErpDocument, ErpMovement, MovementType } from "./types.ts";

// ERP compaction for one stage partition: pure, synchronous, clock-free. Ledger entries that move on-hand stock
// are netted per SKU × warehouse × movement type; order documents are appended as they come. A window closes
// on time or on size (two named conditions); `close` turns it into an ErpBatch with a deterministic id. The
// whole accumulator is plain data (`exportState`): the stage writes it in the same LMDB transaction as the
// batch's effects, so a crash neither loses a movement nor counts one twice.

export type ErpLimits = {
  /** A window with something in it closes this long after it opened (ERP freshness). */
  windowMs: number;
  /** Distinct SKU × warehouse × type keys in one batch: bounds the message (~150 B of JSON each). */
  movementKeysMax: number;
  /** Documents in one batch: bounds the message (a document carries its lines). */
  documentsMax: number;
};

export type ErpSource = { stage: string; partition: number; storeId: string };

export type ErpCompactorState = {
  batchNoLast: number;
  seqToLast: number;
  openedAtMs: number | null;
  /** The last close left movements or documents over the bounds: they are due at once. */
  carried: boolean;
  /** Keys still open, in any order; qty may be 0 until the window closes. */
  movements: ErpMovement[];
  documents: ErpDocument[];
};

/**
 * Which entry types finance sees. A Record over every EntryType: adding a type to the ledger fails to compile
 * here until someone decides. Everything that changes onHand goes; commitments and holds (reserved, released,
 * held, unheld, safety_stock) change no on-hand quantity and never go.
 */
const financeType: Record<EntryType, boolean> = {
  received: true,
  shipped: true,
  returned: true,
  counted: true,
  override: true,
  adjusted: true,
  missing: true,
  scrapped: true,
  reserved: false,
  released: false,
  held: false,
  unheld: false,
  safety_stock: false,
};

const dispositions: readonly ReturnDisposition[] = ["sellable", "damaged", "quality_control"];

/** The movement an entry is for finance, or null: not a finance type, or on hand did not move (a count of holds). */
export function movementTypeOf(e: LedgerEntry): MovementType | null {
  if (!Object.hasOwn(financeType, e.type) || !financeType[e.type]) return null;
  if (e.delta.onHand === undefined || e.delta.onHand === 0) return null;
  if (e.type !== "returned") return e.type as MovementType;
  const disposition = e.cause.startsWith("return:") ? e.cause.slice("return:".length) : "";
  assert(
    dispositions.includes(disposition as ReturnDisposition),
    "a returned entry's cause is return:<disposition>",
  );
  return `returned:${disposition as ReturnDisposition}`;
}

const keyOf = (sku: string, warehouse: string, type: string) => `${sku}\u0000${warehouse}\u0000${type}`;

export class ErpCompactor {
  private batchNoLast = 0;
  private seqToLast = 0;
  private openedAtMs: number | null = null;
  private carried = false;
  private readonly movements = new Map<string, ErpMovement>();
  private documents: ErpDocument[] = [];
  private readonly documentIds = new Set<string>();

  constructor(
    readonly source: ErpSource,
    private readonly limits: ErpLimits,
    state?: ErpCompactorState,
  ) {
    assert(source.stage.length > 0, "an ERP source names its stage");
    assert(Number.isSafeInteger(source.partition) && source.partition >= 0, "partition is a whole number");
    assert(/^[A-Za-z0-9]+$/.test(source.storeId), "storeId is alphanumeric (it is part of batch ids)");
    assert(Number.isSafeInteger(limits.windowMs) && limits.windowMs >= 0, "windowMs ≥ 0");
    assert(
      Number.isSafeInteger(limits.movementKeysMax) && limits.movementKeysMax >= 1,
      "movementKeysMax ≥ 1",
    );
    assert(Number.isSafeInteger(limits.documentsMax) && limits.documentsMax >= 1, "documentsMax ≥ 1");
    if (state !== undefined) this.importState(state);
  }

  /** Nets one ledger entry in; returns whether it counted (a finance movement). */
  addEntry(e: LedgerEntry): boolean {
    const type = movementTypeOf(e);
    if (type === null) return false;
    const qty = e.delta.onHand as number;
    assert(Number.isSafeInteger(qty), "an on-hand delta is a whole number");
    const key = keyOf(e.sku, e.warehouse, type);
    const m = this.movements.get(key);
    if (m === undefined) {
      this.movements.set(key, {
        sku: e.sku,
        warehouse: e.warehouse,
        type,
        qty,
        entries: 1,
        versionTo: e.version,
      });
    } else {
      m.qty += qty;
      m.entries++;
      m.versionTo = Math.max(m.versionTo, e.version);
    }
    this.openedAtMs ??= e.atMs;
    return true;
  }

  addEntries(entries: Iterable<LedgerEntry>): number {
    let counted = 0;
    for (const e of entries) if (this.addEntry(e)) counted++;
    return counted;
  }

  /** Appends an order document; a copy of one already in the window changes nothing (returns false). */
  addDocument(doc: ErpDocument): boolean {
    assertDocument(doc);
    if (this.documentIds.has(doc.id)) return false;
    this.documents.push(doc);
    this.documentIds.add(doc.id);
    this.openedAtMs ??= doc.atMs;
    return true;
  }

  /** Nothing to send: no movement (or only keys that net to 0) and no document. */
  isEmpty(): boolean {
    if (this.documents.length > 0) return false;
    for (const m of this.movements.values()) if (m.qty !== 0) return false;
    return true;
  }

  timeoutReached(nowMs: number): boolean {
    return this.openedAtMs !== null && nowMs - this.openedAtMs >= this.limits.windowMs;
  }

  thresholdReached(): boolean {
    return (
      this.movements.size >= this.limits.movementKeysMax || this.documents.length >= this.limits.documentsMax
    );
  }

  /** Close when either condition holds (KafkaJS's commit policy: timeoutReached || thresholdReached). */
  shouldClose(nowMs: number): boolean {
    return (
      this.openedAtMs !== null && (this.carried || this.timeoutReached(nowMs) || this.thresholdReached())
    );
  }

  /**
   * Closes the window at `seqTo` (the stream sequence last applied) into the next batch, or returns null when
   * everything netted to 0 (no batch number is used, and the next batch's prevSeqTo stays the last batch's
   * seqTo, so the ERP's chain has no false gap). A batch holds at most movementKeysMax movements and
   * documentsMax documents; what is left is carried to the next batch, which is due at once: call `close`
   * while `shouldClose` says so.
   */
  close(seqTo: number, nowMs: number): ErpBatch | null {
    assert(Number.isSafeInteger(seqTo) && seqTo >= this.seqToLast, "seqTo never goes back");
    const openedAtMs = this.openedAtMs ?? nowMs;
    const movements = this.takeMovements();
    const documents = this.takeDocuments();
    this.carried = this.movements.size > 0 || this.documents.length > 0;
    this.openedAtMs = this.carried ? openedAtMs : null;
    if (movements.length === 0 && documents.length === 0) return null;
    const batchNo = this.batchNoLast + 1;
    const { stage, partition, storeId } = this.source;
    const batch: ErpBatch = {
      id: `erp-${stage}-${partition}-${storeId}-${batchNo}`,
      stage,
      partition,
      storeId,
      batchNo,
      seqFrom: this.seqToLast + 1,
      seqTo,
      prevSeqTo: this.seqToLast,
      openedAtMs,
      closedAtMs: nowMs,
      movements,
      documents,
    };
    this.batchNoLast = batchNo;
    this.seqToLast = seqTo;
    return batch;
  }

  private takeMovements(): ErpMovement[] {
    const keys = [...this.movements.keys()].sort(compareStrings);
    const out: ErpMovement[] = [];
    for (const key of keys) {
      const m = this.movements.get(key) as ErpMovement;
      if (m.qty === 0) {
        this.movements.delete(key);
        continue;
      }
      if (out.length >= this.limits.movementKeysMax) continue;
      out.push({ ...m });
      this.movements.delete(key);
    }
    return out;
  }

  private takeDocuments(): ErpDocument[] {
    const out = this.documents.splice(0, this.limits.documentsMax);
    for (const d of out) this.documentIds.delete(d.id);
    return out;
  }

  // ---- state ---------------------------------------------------------------------------------------

  exportState(): ErpCompactorState {
    return {
      batchNoLast: this.batchNoLast,
      seqToLast: this.seqToLast,
      openedAtMs: this.openedAtMs,
      carried: this.carried,
      movements: [...this.movements.values()].map((m) => ({ ...m })),
      documents: [...this.documents],
    };
  }

  private importState(s: ErpCompactorState): void {
    assert(Number.isSafeInteger(s.batchNoLast) && s.batchNoLast >= 0, "batchNoLast is a whole number ≥ 0");
    assert(Number.isSafeInteger(s.seqToLast) && s.seqToLast >= 0, "seqToLast is a whole number ≥ 0");
    this.batchNoLast = s.batchNoLast;
    this.seqToLast = s.seqToLast;
    for (const m of s.movements) {
      const key = keyOf(m.sku, m.warehouse, m.type);
      assert(!this.movements.has(key), "each movement key appears once in an exported state");
      assert(
        Number.isSafeInteger(m.qty) && Number.isSafeInteger(m.entries),
        "movement figures are whole numbers",
      );
      this.movements.set(key, { ...m });
    }
    for (const d of s.documents)
      assert(this.addDocument(d), "each document id appears once in an exported state");
    this.openedAtMs = s.openedAtMs;
    this.carried = s.carried === true;
    assert(
      this.openedAtMs !== null || (s.movements.length === 0 && s.documents.length === 0),
      "an open window has a start",
    );
  }
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function assertDocument(doc: ErpDocument): void {
  assert(doc.id.length > 0, "an ERP document has an id");
  assert(doc.orderKey.length > 0, "an ERP document names its order");
  assert(Number.isFinite(doc.atMs), "an ERP document has a time");
  assert(doc.lines.length > 0, "an ERP document has lines");
  for (const l of doc.lines) {
    assert(l.sku.length > 0 && l.lineId.length > 0, "an ERP line names its SKU and line");
    assert(Number.isSafeInteger(l.qty) && l.qty > 0, "an ERP line quantity is a whole number > 0");
    assert(Number.isFinite(l.price) && l.price >= 0, "an ERP line price is a number ≥ 0");
  }
}
