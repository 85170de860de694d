import type { Config } from "../config/index.ts";
import {
  type ErpBatch,
  ErpCompactor,
  type ErpCompactorState,
  type ErpDocument,
} from "../domain/erp/index.ts";
import type { LedgerEntry } from "../domain/ledger/index.ts";
import type { Instrumentation } from "../instrumentation/index.ts";
import type { Op, OutboxItem, PartitionStore } from "../store/index.ts";
import { contentTypes } from "../stream/codec.ts";
import { subjects } from "../stream/subjects.ts";

/** The table a stage partition keeps its open ERP window in: "state" → ErpCompactorState. */
export const erpTable = "erp";

/**
 * A stage partition's ERP window (ledger movements, or order documents): fed by each batch, closed by time
 * or count, each batch committed to the outbox with the window's new state in the same transaction.
 */
export class ErpWindow {
  private readonly compactor: ErpCompactor;
  private dirty = false;
  private readonly storeId: string;

  constructor(
    private readonly stage: "ledger" | "order",
    partition: number,
    private readonly config: Config,
    store: PartitionStore,
    private readonly events: Instrumentation,
  ) {
    const storeId = store.storeId();
    const saved = store.get<ErpCompactorState & { storeId?: string }>(erpTable, "state");
    // An imported partition gets a store id of its own: its ERP chain starts again at batch 1 (the ERP sees a
    // new chain, not a gap), carrying the open window and the last sequence it covered.
    const state = saved === undefined || saved.storeId === storeId ? saved : { ...saved, batchNoLast: 0 };
    this.storeId = storeId;
    this.compactor = new ErpCompactor(
      { stage, partition, storeId },
      {
        windowMs: config.erp.windowMs,
        movementKeysMax: config.erp.movementKeysMax,
        documentsMax: config.erp.documentsMax,
      },
      state,
    );
  }

  addEntries(entries: Iterable<LedgerEntry>): void {
    if (this.compactor.addEntries(entries) > 0) this.dirty = true;
  }

  addDocuments(documents: Iterable<ErpDocument>): void {
    for (const d of documents) if (this.compactor.addDocument(d)) this.dirty = true;
  }

  /** Whether a tick has something to write: a window to close, or state not yet written. */
  due(nowMs: number): boolean {
    return this.dirty || this.compactor.shouldClose(nowMs);
  }

  /** Closes what is due (`seqTo`: the last applied stream sequence) and writes the window's state. */
  emit(nowMs: number, seqTo: number, ops: Op[], outbox: OutboxItem[]): void {
    while (this.compactor.shouldClose(nowMs)) {
      const batch = this.compactor.close(seqTo, nowMs);
      this.dirty = true;
      if (batch === null) continue;
      outbox.push(...erpMessages(batch, this.config.streams.messageBytesMax));
      this.events.emit("erp_batch", {
        stage: this.stage,
        movements: batch.movements.length,
        documents: batch.documents.length,
      });
    }
    if (!this.dirty) return;
    ops.push({
      op: "put",
      table: erpTable,
      key: "state",
      value: { ...this.compactor.exportState(), storeId: this.storeId },
    });
    this.dirty = false;
  }
}

/**
 * An ERP batch as one JSON message whose Nats-Msg-Id is the batch id. A batch too big for one message
 * (very many long documents) goes in parts, `<id>/<part>`, each carrying `part` and `parts`.
 */
export function erpMessages(batch: ErpBatch, bytesMax: number): OutboxItem[] {
  const encode = (b: unknown) => new TextEncoder().encode(JSON.stringify(b));
  const whole = encode(batch);
  const headers: Array<[string, string]> = [["Content-Type", contentTypes.json]];
  if (whole.length <= bytesMax) return [{ subject: subjects.outErp, msgId: batch.id, headers, data: whole }];
  const parts: ErpBatch[] = [];
  // Each part also carries `,"part":N,"parts":N`: counted before any item, so no part outgrows bytesMax.
  const partFieldsBytes = ',"part":4294967295,"parts":4294967295'.length;
  const empty = () => encode({ ...batch, movements: [], documents: [] }).length + partFieldsBytes;
  let current: ErpBatch = { ...batch, movements: [], documents: [] };
  let size = empty();
  const push = (kind: "movements" | "documents", item: unknown) => {
    const bytes = encode(item).length + 1;
    if (size + bytes > bytesMax && (current.movements.length > 0 || current.documents.length > 0)) {
      parts.push(current);
      current = { ...batch, movements: [], documents: [] };
      size = empty();
    }
    (current[kind] as unknown[]).push(item);
    size += bytes;
  };
  for (const m of batch.movements) push("movements", m);
  for (const d of batch.documents) push("documents", d);
  parts.push(current);
  return parts.map((p, i) => ({
    subject: subjects.outErp,
    msgId: `${batch.id}/${i + 1}`,
    headers,
    data: encode({ ...p, part: i + 1, parts: parts.length }),
  }));
}
