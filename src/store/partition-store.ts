import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { type Database, open, type RootDatabase } from "lmdb";
import { assert } from "../domain/assert.ts";
import type { LedgerEntry, SkuState } from "../domain/ledger/index.ts";

/**
 * One partition's durable state: its own LMDB environment (a directory), so a partition can be exported,
 * imported or moved to another process whole. Layout (docs/architecture.md):
 *   meta     string → value     streamSeqLastApplied, partition, partitionCount, layoutVersion
 *   skus     sku → SkuState     positions and per-SKU version (the fold of entries)
 *   entries  [sku, version] → LedgerEntry
 *   outbox   [seq, index] → OutboxItem   outputs committed with their cause, published after commit
 */
export const layoutVersion = 1;

export type OutboxItem = {
  subject: string;
  /** Deterministic Nats-Msg-Id: a re-publish after a crash is de-duplicated by JetStream. */
  msgId: string;
  /** Header lines in order; a key may repeat. */
  headers: Array<[string, string]>;
  data: Uint8Array;
};
export type OutboxKey = [number, number];

export type BatchWrite = {
  skus: SkuState[];
  entries: LedgerEntry[];
  outbox: OutboxItem[];
  /** The stream sequence of the batch's last message; written in the same transaction as its effects. */
  streamSeqLastApplied: number;
};

export type PartitionIdentity = { stage: string; partition: number; partitionCount: number };

export class PartitionStore {
  private constructor(
    readonly dir: string,
    private readonly root: RootDatabase,
    private readonly meta: Database<unknown, string>,
    private readonly skus: Database<SkuState, string>,
    private readonly entries: Database<LedgerEntry, [string, number]>,
    private readonly outbox: Database<OutboxItem, OutboxKey>,
  ) {}

  /**
   * Durability is decided here, deliberately: overlappingSync off and sync on, so a commit's promise resolves
   * only once the transaction is on disk. The commit is the point after which an input may be acked.
   */
  static open(dir: string, identity: PartitionIdentity, mapBytesMax: number): PartitionStore {
    mkdirSync(dir, { recursive: true });
    const root = open({
      path: dir,
      maxDbs: 8,
      mapSize: mapBytesMax,
      overlappingSync: false,
      noSync: false,
      noMetaSync: false,
      eventTurnBatching: true,
      compression: false,
    });
    const store = new PartitionStore(
      dir,
      root,
      root.openDB<unknown, string>({ name: "meta", encoding: "msgpack" }),
      root.openDB<SkuState, string>({ name: "skus", encoding: "msgpack" }),
      root.openDB<LedgerEntry, [string, number]>({ name: "entries", encoding: "msgpack" }),
      root.openDB<OutboxItem, OutboxKey>({ name: "outbox", encoding: "msgpack" }),
    );
    store.checkIdentity(identity);
    return store;
  }

  private checkIdentity(identity: PartitionIdentity): void {
    const stored = this.meta.get("identity") as PartitionIdentity | undefined;
    if (stored === undefined) {
      this.meta.putSync("identity", identity);
      this.meta.putSync("layoutVersion", layoutVersion);
      return;
    }
    if (stored.stage !== identity.stage || stored.partition !== identity.partition) {
      throw new Error(
        `${this.dir} holds ${stored.stage} partition ${stored.partition}, not ${identity.stage} partition ${identity.partition}; check data.dir`,
      );
    }
    if (stored.partitionCount !== identity.partitionCount) {
      throw new Error(
        `${this.dir} was written with streams.partitionCount = ${stored.partitionCount}, config says ${identity.partitionCount}; the count is fixed once streams exist (docs/operations.md, "Changing the partition count")`,
      );
    }
    const layout = this.meta.get("layoutVersion");
    assert(layout === layoutVersion, `store layout ${String(layout)} must be ${layoutVersion}`);
  }

  streamSeqLastApplied(): number {
    const v = this.meta.get("streamSeqLastApplied");
    return typeof v === "number" ? v : 0;
  }

  loadSkus(): SkuState[] {
    return Array.from(this.skus.getRange(), ({ value }) => value);
  }

  getSku(sku: string): SkuState | undefined {
    return this.skus.get(sku);
  }

  /** A SKU's ledger entries after `afterVersion`, oldest first, at most `limit`. */
  entriesOf(sku: string, afterVersion: number, limit: number): LedgerEntry[] {
    return Array.from(
      this.entries.getRange({ start: [sku, afterVersion + 1], end: [sku, Number.MAX_SAFE_INTEGER], limit }),
      ({ value }) => value,
    );
  }

  /** Every entry of the partition, SKU by SKU: what `sluice ledger check` folds. */
  allEntries(): Iterable<LedgerEntry> {
    return this.entries.getRange().map(({ value }) => value);
  }

  pendingOutbox(): Array<{ key: OutboxKey; item: OutboxItem }> {
    return Array.from(this.outbox.getRange(), ({ key, value }) => ({ key, item: value }));
  }

  /**
   * One transaction: effects, outbox and the last applied sequence together (invariant 3). Resolves once on disk.
   * Assertions check what is written right before it is written.
   */
  async commit(write: BatchWrite): Promise<OutboxKey[]> {
    const before = this.streamSeqLastApplied();
    assert(write.streamSeqLastApplied > before, "the applied sequence only moves forward");
    const keys: OutboxKey[] = write.outbox.map((_, i) => [write.streamSeqLastApplied, i]);
    const committed = await this.root.batch(() => {
      for (const s of write.skus) this.skus.put(s.sku, s);
      for (const e of write.entries) this.entries.put([e.sku, e.version], e);
      for (let i = 0; i < write.outbox.length; i++)
        this.outbox.put(keys[i] as OutboxKey, write.outbox[i] as OutboxItem);
      this.meta.put("streamSeqLastApplied", write.streamSeqLastApplied);
    });
    assert(committed === true, "the batch transaction commits");
    return keys;
  }

  /** Forget published outbox items. Not awaited by the hot path: a crash before it only re-publishes (deduped). */
  outboxDone(keys: readonly OutboxKey[]): Promise<boolean> {
    return this.root.batch(() => {
      for (const k of keys) this.outbox.remove(k);
    });
  }

  async close(): Promise<void> {
    await this.root.close();
  }
}

export function partitionDir(dataDir: string, stage: string, partition: number): string {
  return join(dataDir, "partitions", `${stage}-${partition}`);
}
