import { mkdirSync, statfsSync, statSync } from "node:fs";
import { join } from "node:path";
import { type Database, type Key, open, type RangeOptions, type RootDatabase } from "lmdb";
import { type CommitRecord, recordParts } from "../cluster/changelog.ts";
import { assert } from "../domain/assert.ts";

/**
 * One partition's durable state: its own LMDB environment (a directory), so a partition can be exported,
 * imported or moved to another process whole, and its single writer never waits on another's.
 * Tables are named by the stage (ledger: skus, entries, allocations; order: orders, pending, timers);
 * every partition also has:
 *   meta     identity, layoutVersion, streamSeqLastApplied, outboxSeq
 *   outbox   [outboxSeq] → OutboxItem   outputs committed with their cause, published after the commit
 */
export const layoutVersion = 6;

/**
 * Layouts whose step to the next only added tables (a fresh table is empty): a stage with nothing to derive
 * passes no upgrade for them. 4 → 5 (routing, sync, ERP), 5 → 6 (the ledger's reservation index and history
 * snapshots: the ledger derives its index, src/stages/ledger/upgrade.ts; the order stage has nothing to do).
 */
const tablesOnlyLayouts: ReadonlySet<number> = new Set([4, 5]);

export type OutboxItem = {
  subject: string;
  /** Deterministic Nats-Msg-Id: a re-publish after a crash is de-duplicated by JetStream. Empty: assigned. */
  msgId: string;
  /** Header lines in order; a key may repeat. */
  headers: Array<[string, string]>;
  data: Uint8Array;
};

export type Op =
  | { op: "put"; table: string; key: Key; value: unknown }
  | { op: "delete"; table: string; key: Key };

export type BatchWrite = {
  ops: Op[];
  outbox: OutboxItem[];
  /** The stream sequence of the batch's last message, or null for a batch with no input (a timer batch). */
  streamSeqLastApplied: number | null;
  /** That message's stream timestamp in ms (with a sequence). */
  streamSeqLastAppliedAtMs?: number;
  /** Router message names applied in this batch (see routedIdHeader), remembered in a bounded window. */
  routed?: Array<[number, number, number]>;
  /**
   * The partition's other input streams (an order partition's SLUICE_ANSWER): the last sequence applied from
   * each, with its stream timestamp, committed with the effects like the main stream's.
   */
  inputs?: Array<{ stream: string; seq: number; atMs: number }>;
};

/** A partition's applied position: the main stream's last applied sequence (and its time), the others'. */
export type AppliedSeqs = {
  streamSeqLastApplied: number;
  streamSeqLastAppliedAtMs?: number;
  inputs: Array<{ stream: string; seq: number }>;
};

export type PartitionIdentity = { stage: string; partition: number; partitionCount: number };

export type StoreOptions = {
  mapBytesMax: number;
  /** Router message names remembered (see routedIdHeader); 0 keeps none. */
  routedCountMax?: number;
  tables: readonly string[];
  /** Inspection by another process while Sluice runs (LMDB readers never block its writer). */
  readOnly?: boolean;
  /**
   * Upgrades of the stage's own tables, by the layout they start from: run once, in one transaction, when
   * a partition written by an older version is opened for writing (the stage knows its tables; the store
   * does not).
   */
  upgrades?: Record<number, (store: PartitionStore) => void>;
};

export class PartitionStore {
  private readonly tables = new Map<string, Database<unknown, Key>>();
  private readonly meta: Database<unknown, string>;
  private readonly outbox: Database<OutboxItem, number>;
  private readonly routed: Database<number, [number, number, number]>;
  private closed = false;
  /** The changelog (cluster mode, src/cluster/changelog.ts): each commit's write goes first in its outbox. */
  private log: { partBytesMax: number } | null = null;
  /** Outbox keys confirmed published since the last logged commit: the next record carries them. */
  private doneSinceLog: number[] = [];

  private constructor(
    readonly dir: string,
    readonly identity: PartitionIdentity,
    private readonly root: RootDatabase,
    tableNames: readonly string[],
    private readonly routedCountMax: number,
  ) {
    this.meta = root.openDB<unknown, string>({ name: "meta", encoding: "msgpack" });
    this.routed = root.openDB<number, [number, number, number]>({ name: "routed", encoding: "msgpack" });
    this.outbox = root.openDB<OutboxItem, number>({
      name: "outbox",
      encoding: "msgpack",
      keyEncoding: "uint32",
    });
    // Shared structures: msgpackr stores each record shape once per table instead of its keys in every
    // value, which makes order and SKU records smaller and cheaper to encode and decode.
    for (const name of tableNames) {
      this.tables.set(
        name,
        root.openDB<unknown, Key>({
          name,
          encoding: "msgpack",
          sharedStructuresKey: Symbol.for("structures"),
        }),
      );
    }
  }

  /**
   * Durability is decided here, deliberately: overlappingSync off and sync on, so a commit's promise resolves
   * only once the transaction is on disk. The commit is the point after which an input may be acked.
   */
  static open(dir: string, identity: PartitionIdentity, options: StoreOptions): PartitionStore {
    mkdirSync(dir, { recursive: true });
    const root = open({
      path: dir,
      maxDbs: options.tables.length + 5,
      mapSize: options.mapBytesMax,
      overlappingSync: false,
      noSync: false,
      noMetaSync: false,
      // Off: every write here is an explicit batch. On, lmdb-js wraps each event turn in a transaction of its
      // own whose promise nobody holds: a failed commit (a full disk) would reject it unhandled and end the
      // process that has just handled the failure (src/sluice.ts waits for room instead).
      eventTurnBatching: false,
      compression: false,
      readOnly: options.readOnly === true,
    });
    const store = new PartitionStore(dir, identity, root, options.tables, options.routedCountMax ?? 0);
    if (options.readOnly === true && store.meta.get("identity") === undefined) {
      throw new Error(`${dir} holds no Sluice partition`);
    }
    store.checkIdentity(options);
    return store;
  }

  private checkIdentity(options: StoreOptions): void {
    const identity = this.identity;
    const stored = this.meta.get("identity") as PartitionIdentity | undefined;
    if (stored === undefined) {
      this.meta.putSync("identity", identity);
      this.meta.putSync("layoutVersion", layoutVersion);
      // Names this store's outputs: a wiped and recreated partition never reuses a message id in the window.
      this.meta.putSync("storeId", crypto.randomUUID().slice(0, 8));
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
    let layout = this.meta.get("layoutVersion");
    while (typeof layout === "number" && layout < layoutVersion && options.readOnly !== true) {
      const upgrade = options.upgrades?.[layout];
      if (upgrade === undefined && !tablesOnlyLayouts.has(layout)) break;
      const from = layout;
      // A stage that derives a new table from existing data says how; otherwise the new tables start empty.
      this.root.transactionSync(() => {
        upgrade?.(this);
        this.meta.put("layoutVersion", from + 1);
      });
      layout = from + 1;
    }
    if (layout !== layoutVersion) {
      throw new Error(
        `${this.dir} has store layout ${String(layout)}, this version reads layout ${layoutVersion}; export with the version that wrote it and import (docs/operations.md)`,
      );
    }
  }

  /** A write inside an upgrade's transaction (see StoreOptions.upgrades); nowhere else. */
  upgradePut(table: string, key: Key, value: unknown): void {
    this.table(table).put(key, value);
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  /** Names this store's outputs (assigned when the partition was created; export/import keeps it). */
  storeId(): string {
    return this.meta.get("storeId") as string;
  }

  /** The last applied sequence of the main stream, or of another input stream when named (0: none yet). */
  streamSeqLastApplied(stream?: string): number {
    const v = this.meta.get(stream === undefined ? "streamSeqLastApplied" : `streamSeqLastApplied:${stream}`);
    return typeof v === "number" ? v : 0;
  }

  /**
   * The stream timestamp (ms) of the last applied message, committed with its sequence: at start the runner
   * reads that message from the stream and compares, so a stream deleted and created again is detected.
   */
  streamSeqLastAppliedAtMs(stream?: string): number | undefined {
    return this.meta.get(
      stream === undefined ? "streamSeqLastAppliedAtMs" : `streamSeqLastAppliedAtMs:${stream}`,
    ) as number | undefined;
  }

  /** The other input streams this partition applied from, with their last applied sequences. */
  inputStreams(): Array<{ stream: string; seq: number }> {
    const out: Array<{ stream: string; seq: number }> = [];
    const prefix = "streamSeqLastApplied:";
    for (const key of this.meta.getKeys({ start: prefix, end: `${prefix}\uffff` })) {
      const stream = (key as string).slice(prefix.length);
      out.push({ stream, seq: this.streamSeqLastApplied(stream) });
    }
    return out;
  }

  get<T>(table: string, key: Key): T | undefined {
    return this.table(table).get(key) as T | undefined;
  }

  range<T>(table: string, options: RangeOptions = {}): Array<{ key: Key; value: T }> {
    return Array.from(this.table(table).getRange(options), ({ key, value }) => ({ key, value: value as T }));
  }

  /** A range read lazily, keys with values: memory stays bounded however long the range (scans, checks). */
  rangeLazy<T>(table: string, options: RangeOptions = {}): Iterable<{ key: Key; value: T }> {
    return this.table(table)
      .getRange(options)
      .map(({ key, value }) => ({ key, value: value as T }));
  }

  /** Keys of a range, read lazily (values are not decoded). */
  keys(table: string, options: RangeOptions = {}): Iterable<Key> {
    return this.table(table).getKeys(options);
  }

  /** Whether the stage declared this table (a store opened with an older stage's table list may lack one). */
  hasTable(name: string): boolean {
    return this.tables.has(name);
  }

  rangeValues<T>(table: string, options: RangeOptions = {}): Iterable<T> {
    return this.table(table)
      .getRange(options)
      .map(({ value }) => value as T);
  }

  /** The device of the partition's directory (read once: an open environment's directory stays on its disk). */
  private device: number | undefined;

  /**
   * What the partition uses of its LMDB map and what its disk has left: the map's used pages × page size (LMDB
   * never shrinks a map file, so this is the high-water mark) against store.mapBytesMax, and the data
   * directory's file system (free to this process, and total).
   */
  space(): {
    mapUsedBytes: number;
    mapBytesMax: number;
    diskFreeBytes?: number;
    diskSizeBytes?: number;
  } | null {
    if (this.closed) return null;
    const stats = this.root.getStats() as { pageSize: number; lastPageNumber: number; mapSize: number };
    const map = { mapUsedBytes: (stats.lastPageNumber + 1) * stats.pageSize, mapBytesMax: stats.mapSize };
    try {
      this.device ??= statSync(this.dir).dev;
      return { ...map, ...diskSpace(this.device, this.dir, Date.now()) };
    } catch {
      // The directory went away under an open environment (removed by hand): the map figures still hold.
      return map;
    }
  }

  /** Entries in a table (LMDB keeps the count: no scan). */
  count(table: string): number {
    const db = table === "outbox" ? this.outbox : table === "routed" ? this.routed : this.table(table);
    return (db.getStats() as { entryCount: number }).entryCount;
  }

  /** Whether a router message of this name was applied (within the last `routedCountMax` names). */
  isRouted(id: [number, number, number]): boolean {
    return this.routed.doesExist(id);
  }

  pendingOutbox(): Array<{ key: number; item: OutboxItem }> {
    return Array.from(this.outbox.getRange(), ({ key, value }) => ({ key, item: value }));
  }

  /**
   * One transaction: effects, outbox and the last applied sequence together (invariant 3). Resolves once on
   * disk, with the outbox items as committed (message ids assigned) and their keys.
   */
  async commit(write: BatchWrite): Promise<{ keys: number[]; items: OutboxItem[] }> {
    const before = this.streamSeqLastApplied();
    if (write.streamSeqLastApplied !== null) {
      assert(write.streamSeqLastApplied > before, "the applied sequence only moves forward");
    }
    for (const input of write.inputs ?? []) {
      assert(
        input.seq > this.streamSeqLastApplied(input.stream),
        "an input stream's applied sequence only moves forward",
      );
    }
    const outboxSeqBefore = (this.meta.get("outboxSeq") as number | undefined) ?? 0;
    const commitSeq = this.commitSeq() + 1;
    const storeId = this.meta.get("storeId") as string;
    const { keys, items, done } = this.outboxOf(write, storeId, commitSeq, outboxSeqBefore);
    const outboxSeq = outboxSeqBefore + items.length;
    assert(outboxSeq < 0xffffffff, "outbox sequence fits its uint32 key");
    // lmdb-js does not roll back a batch whose callback throws: a key LMDB refuses would commit half the
    // batch. Every key is checked before anything is written (inputs are validated well inside this).
    for (const op of write.ops) assert(keyBytes(op.key) <= keyBytesMax, "every key fits LMDB's key size");
    const committed = await this.write(() => {
      this.writeOps(write.ops);
      for (let i = 0; i < items.length; i++) this.outbox.put(keys[i] as number, items[i] as OutboxItem);
      if (write.streamSeqLastApplied !== null) {
        this.meta.put("streamSeqLastApplied", write.streamSeqLastApplied);
      }
      if (write.streamSeqLastAppliedAtMs !== undefined) {
        this.meta.put("streamSeqLastAppliedAtMs", write.streamSeqLastAppliedAtMs);
      }
      for (const input of write.inputs ?? []) {
        this.meta.put(`streamSeqLastApplied:${input.stream}`, input.seq);
        this.meta.put(`streamSeqLastAppliedAtMs:${input.stream}`, input.atMs);
      }
      if (items.length > 0) this.meta.put("outboxSeq", outboxSeq);
      this.meta.put("commitSeq", commitSeq);
      for (const id of write.routed ?? []) this.routed.put(id, 1);
      if ((write.routed?.length ?? 0) > 0) this.trimRouted();
    });
    assert(committed === true, "the batch transaction commits");
    if (done !== null) this.doneSinceLog.splice(0, done);
    return { keys, items };
  }

  /**
   * The commit's outbox items with their keys and message ids. With the changelog on, the commit's record
   * goes first (its parts, then the items), and ids name the commit (`<stage>-<p>:<storeId>:c<commit>.<i>`):
   * the record must carry the ids, and its own size decides how many keys its parts take.
   */
  private outboxOf(
    write: BatchWrite,
    storeId: string,
    commitSeq: number,
    outboxSeqBefore: number,
  ): { keys: number[]; items: OutboxItem[]; done: number | null } {
    const { stage, partition } = this.identity;
    const named = write.outbox.map((item, i) => {
      if (item.msgId !== "") return item;
      const msgId =
        this.log === null
          ? `${stage}-${partition}:${storeId}:${outboxSeqBefore + i + 1}`
          : `${stage}-${partition}:${storeId}:c${commitSeq}.${i}`;
      return { ...item, msgId };
    });
    let items = named;
    let done: number | null = null;
    if (this.log !== null) {
      const record: CommitRecord = {
        kind: "commit",
        storeId,
        commitSeq,
        outboxSeqBefore,
        ops: write.ops,
        items: named,
        meta: this.metaOf(write, commitSeq),
        routed: write.routed ?? [],
        done: this.doneSinceLog.slice(),
      };
      done = record.done.length;
      const parts = recordParts(record, stage, partition, this.log.partBytesMax);
      items = [...parts, ...named];
    }
    const keys = items.map((_, i) => outboxSeqBefore + i + 1);
    return { keys, items, done };
  }

  /** The meta values a commit writes besides outboxSeq, as a log record carries them. */
  private metaOf(write: BatchWrite, commitSeq: number): Array<[string, unknown]> {
    const meta: Array<[string, unknown]> = [["commitSeq", commitSeq]];
    if (write.streamSeqLastApplied !== null) meta.push(["streamSeqLastApplied", write.streamSeqLastApplied]);
    if (write.streamSeqLastAppliedAtMs !== undefined)
      meta.push(["streamSeqLastAppliedAtMs", write.streamSeqLastAppliedAtMs]);
    for (const input of write.inputs ?? []) {
      meta.push([`streamSeqLastApplied:${input.stream}`, input.seq]);
      meta.push([`streamSeqLastAppliedAtMs:${input.stream}`, input.atMs]);
    }
    return meta;
  }

  /** Commits written so far (0: none): the position in the changelog's lineage. */
  commitSeq(): number {
    const v = this.meta.get("commitSeq");
    return typeof v === "number" ? v : 0;
  }

  /**
   * Turns the changelog on (cluster mode): from the next commit on, each commit's record is its first outbox
   * item(s), split into parts of at most `partBytesMax` bytes.
   */
  enableLog(partBytesMax: number, lastSeq: number): void {
    this.log = { partBytesMax };
    this.logChain = { lastSeq };
  }

  /**
   * The changelog's last sequence this copy's writer appended (its takeover marker, then each record part):
   * the publisher sends it as the subject's expected last sequence, so a fenced-off writer's record is refused.
   */
  logChain: { lastSeq: number } | null = null;

  /**
   * A commit another copy of this partition logged, written here exactly (cluster restore): its effects, its
   * outbox items under the keys they had there (the record's own parts are not kept: they are in the log),
   * its meta values and router names; the keys the writer had published by then are forgotten.
   */
  async applyLogged(r: CommitRecord, parts: number): Promise<void> {
    assert(r.commitSeq === this.commitSeq() + 1, "a logged commit follows the last one applied");
    for (const op of r.ops) assert(keyBytes(op.key) <= keyBytesMax, "every key fits LMDB's key size");
    const committed = await this.write(() => {
      this.writeOps(r.ops);
      for (let i = 0; i < r.items.length; i++)
        this.outbox.put(r.outboxSeqBefore + parts + i + 1, r.items[i] as OutboxItem);
      for (const k of r.done) this.outbox.remove(k);
      for (const [key, value] of r.meta) this.meta.put(key, value);
      this.meta.put("outboxSeq", r.outboxSeqBefore + parts + r.items.length);
      for (const id of r.routed) this.routed.put(id, 1);
      if (r.routed.length > 0) this.trimRouted();
    });
    assert(committed === true, "the logged commit's transaction commits");
  }

  /** A write's operations on the stage's tables, inside the caller's transaction. */
  private writeOps(ops: readonly Op[]): void {
    for (const op of ops) {
      const table = this.table(op.table);
      if (op.op === "put") table.put(op.key, op.value);
      else table.remove(op.key);
    }
  }

  /** Keeps the newest `routedCountMax` router names: the window in which a late copy is recognised. */
  private trimRouted(): void {
    const excess = this.count("routed") - this.routedCountMax;
    if (excess <= 0) return;
    for (const key of this.routed.getKeys({ limit: Math.min(excess, 10_000) })) this.routed.remove(key);
  }

  /** Forget published outbox items. Not awaited by the hot path: a crash before it only re-publishes (deduped). */
  outboxDone(keys: readonly number[]): Promise<boolean> {
    if (this.log !== null) for (const k of keys) this.doneSinceLog.push(k);
    return this.write(() => {
      for (const k of keys) this.outbox.remove(k);
    });
  }

  /** One write transaction; a failed commit becomes a StoreWriteError that says whether space ran out. */
  private async write(writes: () => void): Promise<boolean> {
    try {
      return await this.root.batch(writes);
    } catch (error) {
      throw await storeWriteError(this.dir, error as Error);
    }
  }

  /** Every record of the partition, table by table: a partition's state, whole, to move or inspect. */
  *export(): Generator<{ table: string; key: Key; value: unknown }> {
    for (const { key, value } of this.meta.getRange()) yield { table: "meta", key, value };
    for (const { key, value } of this.outbox.getRange()) yield { table: "outbox", key, value };
    for (const { key, value } of this.routed.getRange()) yield { table: "routed", key, value };
    for (const [name, db] of this.tables)
      for (const { key, value } of db.getRange()) yield { table: name, key, value };
  }

  /**
   * export() at one commit, for a snapshot taken while the writer commits. export() reads each table in a
   * read transaction of its own, so a batch committed between two tables would be half in. Here one LMDB read
   * transaction (lmdb-js `useReadTransaction()`, passed as `{ transaction }` to every range) covers the
   * count, the applied sequences and every record: a batch is wholly in or wholly out. The records may be
   * read across awaits; call `done()` after, always: while it is open LMDB cannot reuse the pages the writer
   * frees, so the file grows.
   */
  snapshot(): {
    recordCount: number;
    applied: AppliedSeqs;
    records: Generator<{ table: string; key: Key; value: unknown }>;
    done: () => void;
  } {
    const transaction = this.root.useReadTransaction();
    const dbs = [
      ["meta", this.meta],
      ["outbox", this.outbox],
      ["routed", this.routed],
      ...this.tables,
    ] as Array<[string, Database<unknown, Key>]>;
    // getCount sets `onlyCount` on the options it is given: each read gets its own object.
    const recordCount = dbs.reduce((n, [, db]) => n + db.getCount({ transaction }), 0);
    const applied: AppliedSeqs = { streamSeqLastApplied: 0, inputs: [] };
    const prefix = "streamSeqLastApplied:";
    // The range holds streamSeqLastApplied, …AtMs and both per other stream (`:<stream>`).
    const range = { start: "streamSeqLastApplied", end: "streamSeqLastApplied\uffff", transaction };
    for (const { key, value } of this.meta.getRange(range)) {
      if (key === "streamSeqLastApplied") applied.streamSeqLastApplied = value as number;
      else if (key === "streamSeqLastAppliedAtMs") applied.streamSeqLastAppliedAtMs = value as number;
      else if (key.startsWith(prefix))
        applied.inputs.push({ stream: key.slice(prefix.length), seq: value as number });
    }
    const records = (function* () {
      for (const [table, db] of dbs)
        for (const { key, value } of db.getRange({ transaction })) yield { table, key, value };
    })();
    const done = () => {
      records.return(undefined); // closes the cursor of a reader that stopped early
      transaction.done();
    };
    return { recordCount, applied, records, done };
  }

  /** Loads an export into this (empty) partition, in one transaction. The identity must match. */
  async import(records: Iterable<{ table: string; key: Key; value: unknown }>): Promise<number> {
    assert(this.streamSeqLastApplied() === 0, "import goes into an empty partition");
    let count = 0;
    await this.root.batch(() => {
      for (const r of records) {
        if (r.table === "meta" && r.key === "identity") {
          const id = r.value as PartitionIdentity;
          assert(
            id.stage === this.identity.stage &&
              id.partition === this.identity.partition &&
              id.partitionCount === this.identity.partitionCount,
            "an export is imported into the same stage, partition and partition count",
          );
        }
        // This store keeps its own id: outputs committed after the import never reuse an id the exporting
        // store gave (a restore of an older export within the dedupe window would drop them as duplicates).
        if (r.table === "meta" && r.key === "storeId") continue;
        const db =
          r.table === "meta"
            ? this.meta
            : r.table === "outbox"
              ? this.outbox
              : r.table === "routed"
                ? this.routed
                : this.table(r.table);
        (db as Database<unknown, Key>).put(r.key, r.value);
        count++;
      }
    });
    return count;
  }

  private table(name: string): Database<unknown, Key> {
    const t = this.tables.get(name);
    assert(t !== undefined, `table ${name} is declared by the stage`);
    return t;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.root.close();
  }
}

/**
 * How long one statfs of a file system answers for every partition on it. Each partition samples its space
 * every consumer.lagPollMs (5 s by default); its 2 × P partitions, usually on one disk, would each call
 * statfs. With this the process calls it at most once a second per disk, whatever P, and a sample is at most
 * 1 s staler than its own statfs would be (a gauge, scraped every 15 s or so). A constant here, not a config
 * key: the store is opened without the config (src/stages/definition.ts passes only its own options).
 */
const diskSpaceFreshMs = 1000;

/** The last statfs per device: `[atMs, answer]`; one entry per disk the partitions are on. */
const diskSpaceByDevice = new Map<number, [number, { diskFreeBytes: number; diskSizeBytes: number }]>();

/** The free (to this process) and total bytes of the file system on `device`, read again when stale. */
function diskSpace(
  device: number,
  dir: string,
  nowMs: number,
): { diskFreeBytes: number; diskSizeBytes: number } {
  const known = diskSpaceByDevice.get(device);
  if (known !== undefined && nowMs - known[0] < diskSpaceFreshMs) return known[1];
  const fs = statfsSync(dir);
  const space = { diskFreeBytes: fs.bavail * fs.bsize, diskSizeBytes: fs.blocks * fs.bsize };
  diskSpaceByDevice.set(device, [nowMs, space]);
  return space;
}

/** LMDB's largest key (lmdb-js default build). */
const keyBytesMax = 1978;

/** An upper bound of a key's ordered-binary size: strings' UTF-8 bytes, 9 per number, 1 per separator. */
function keyBytes(key: Key): number {
  if (typeof key === "string") return Buffer.byteLength(key, "utf8") + 1;
  if (typeof key === "number") return 9;
  if (Array.isArray(key)) return key.reduce((n: number, k) => n + keyBytes(k as Key) + 1, 0);
  return 64;
}

export function partitionDir(dataDir: string, stage: string, partition: number): string {
  return join(dataDir, "partitions", `${stage}-${partition}`);
}

/**
 * A commit LMDB refused. `full` when the data disk (or the LMDB map) had no room: not a bug and not lost
 * data. LMDB aborts the transaction whole and the environment stays usable, so the partition can wait for
 * room and start again from its last commit (src/sluice.ts) instead of the process exiting.
 */
export class StoreWriteError extends Error {
  override name = "StoreWriteError";
  constructor(
    message: string,
    readonly full: boolean,
    override readonly cause: unknown,
  ) {
    super(message);
  }
}

/** ENOSPC, EDQUOT, EIO (what a full tmpfs or a failing disk answers) and MDB_MAP_FULL. */
const fullCodes: ReadonlyMap<number, string> = new Map([
  [28, "ENOSPC: no space left on device"],
  [122, "EDQUOT: disk quota exceeded"],
  [5, "EIO: input/output error (a full tmpfs answers this too)"],
  [-30792, "MDB_MAP_FULL: store.mapBytesMax reached"],
]);

async function storeWriteError(dir: string, error: Error): Promise<StoreWriteError> {
  // lmdb-js rejects with "Commit failed" and keeps the system's error in a rejected `commitError` promise.
  const inner = (error as Error & { commitError?: Promise<unknown> }).commitError;
  const cause =
    inner === undefined
      ? error
      : ((await inner.then(
          () => error,
          (e: unknown) => e,
        )) as Error);
  const code = (cause as { code?: unknown }).code;
  const why = typeof code === "number" ? fullCodes.get(code) : undefined;
  if (why === undefined)
    return new StoreWriteError(`${dir}: LMDB commit failed: ${cause.message}`, false, cause);
  return new StoreWriteError(
    `${dir}: LMDB commit failed, ${why}; free space on the data disk (or raise store.mapBytesMax): the partition waits and resumes by itself`,
    true,
    cause,
  );
}
