import { createReadStream, existsSync } from "node:fs";
import { mkdir, open, rename, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { JetStreamClient } from "@nats-io/jetstream";
import { type ObjectInfo, type ObjectResult, type ObjectStore, Objm, StorageType } from "@nats-io/obj";
import { decodeIter, Packr } from "msgpackr";
import type { Config } from "../config/index.ts";
import { assert } from "../domain/assert.ts";
import { stageDefinitions } from "../stages/definition.ts";
import { type AppliedSeqs, layoutVersion, PartitionStore, partitionDir } from "../store/partition-store.ts";
import { type Stage, stages } from "../stream/subjects.ts";

/**
 * Partition snapshots in a NATS Object Store, so a partition survives the loss of its node: the owner writes
 * one on a cadence (cluster.snapshotMs), a new owner restores the latest and replays its streams from the
 * sequences it covers. One object per partition, `<stage>-<index>`, replaced by each write.
 *
 * The body is the partition export format (src/store/admin.ts): msgpack `{ format, version, records }`, so a
 * snapshot downloaded with `nats object get` imports with `sluice partition import`. It is written with the
 * records array's length up front and each record packed on its own, which lets it be written and read a
 * chunk at a time. What a snapshot covers (identity, applied sequences, commit sequence, writer, time,
 * count, sha256 of the body) is in the object's metadata, read without downloading the body.
 *
 * Memory per snapshot is bounded by chunks, not by the partition: the body goes through a local file next
 * to the partition (disk: one body), written fileChunkBytes at a time, and is restored importBatchCountMax
 * records per transaction. The file also keeps the LMDB read transaction short: it is open while the body is
 * written to local disk, not while it travels to NATS. One exception: nats.js's object get does not wait for
 * its reader, so while a body downloads, a disk slower than the network holds the difference in memory (at
 * worst the body).
 */

export const snapshotBucket = "SLUICE_SNAPSHOTS";

const format = "sluice-partition";
/** The export format's version (src/store/admin.ts writes and reads the same shape). */
const formatVersion = 1;

/** 1 MiB per file write: a few writes per MiB of state, and a snapshot's buffers stay at about this. */
const fileChunkBytes = 1024 * 1024;

/** Records per import transaction on restore: 10,000 × a few hundred bytes ≈ a few MiB decoded at once. */
const importBatchCountMax = 10_000;

/** Result codes of a snapshot that is refused: none of them is retried, each needs a person or a new snapshot. */
export type SnapshotRefusal =
  | "snapshot_is_not_sluice"
  | "snapshot_format_version_unknown"
  | "snapshot_holds_another_partition"
  | "snapshot_partition_count_differs"
  | "snapshot_layout_is_newer"
  | "snapshot_checksum_does_not_match"
  | "snapshot_body_does_not_match_its_metadata";

export class SnapshotRefusedError extends Error {
  override name = "SnapshotRefusedError";
  constructor(
    message: string,
    readonly reason: SnapshotRefusal,
  ) {
    super(message);
  }
}

/** What a snapshot covers, kept in its object's metadata. */
export type SnapshotInfo = {
  stage: Stage;
  index: number;
  partitionCount: number;
  /** The store layout of the records (an older one is upgraded when the restored partition is opened). */
  layoutVersion: number;
  /** The applied position the records are at: replay each stream from the sequence after. */
  applied: AppliedSeqs;
  /** Commits the records hold (meta commitSeq, 0: none): the changelog continues from the next. */
  commitSeq: number;
  /** The id of the store the records are from: the writer lineage whose changelog records follow them. */
  storeId: string;
  /** The changelog sequence a new owner reads from after restoring (the writer read it before the records). */
  logSeqFrom: number;
  /** The node that wrote it (node.name). */
  writer: string;
  writtenAtMs: number;
  recordCount: number;
  bodyBytes: number;
  /** Hex sha256 of the body, checked on restore before anything local changes. */
  sha256: string;
  /** The Object Store revision of the object (its metadata message's stream sequence). */
  revision: number;
};

export const snapshotName = (stage: Stage, index: number): string => `${stage}-${index}`;

/**
 * The snapshots bucket, created if missing. A put writes the new object's chunks before it purges the old
 * ones, so `bytesMax` must hold every partition's snapshot plus, for each put in flight, the largest one
 * again. A put past it is refused (the bucket discards new) and the partition's previous snapshot stays.
 * An existing bucket keeps its settings.
 */
export function openSnapshotBucket(
  js: JetStreamClient,
  c: Config,
  options: { bytesMax: number },
): Promise<ObjectStore> {
  return new Objm(js).create(snapshotBucket, {
    description: "Sluice partition snapshots: the latest per partition (src/cluster/snapshots.ts)",
    replicas: c.streams.replicas,
    max_bytes: options.bytesMax,
    storage: StorageType.File,
  });
}

/** Snapshots being written in this process, by partition directory: one at a time each (one body file). */
const writing = new Map<string, Promise<SnapshotInfo>>();

/**
 * Writes `store`'s state at one commit as its partition's snapshot, replacing the previous one. The store
 * may be the writer's own, open and committing: the records are read in one read transaction.
 *
 * One snapshot per partition is written at a time (they share the body file). A second one asked for
 * meanwhile (a handoff meeting the periodic snapshot) waits for it, at most `waitMsMax`: when the one in
 * flight holds the commit the store was at when this was asked (the partition's last commit, for a handoff
 * whose host has stopped), it is this snapshot too and is returned; otherwise this one is written after it.
 */
export async function writeSnapshot(
  os: ObjectStore,
  store: PartitionStore,
  meta: { writer: string; writtenAtMs: number; logSeqFrom: number },
  limits: { waitMsMax: number },
): Promise<SnapshotInfo> {
  const commitSeqNeeded = store.commitSeq();
  const deadlineMs = Date.now() + limits.waitMsMax;
  // The check and the set below have no await between them: two callers that waited never both write.
  for (let inFlight = writing.get(store.dir); inFlight !== undefined; inFlight = writing.get(store.dir)) {
    const joined = await joinable(store, inFlight, commitSeqNeeded, deadlineMs);
    if (joined !== null) return joined;
  }
  const put = putSnapshot(os, store, meta);
  writing.set(store.dir, put);
  try {
    return await put;
  } finally {
    writing.delete(store.dir);
  }
}

/**
 * The snapshot in flight once it is written, when it holds commit `commitSeqNeeded` or later; null when the
 * caller must write its own (it is older, or it failed). Throws when it is not written by `deadlineMs`.
 */
async function joinable(
  store: PartitionStore,
  inFlight: Promise<SnapshotInfo>,
  commitSeqNeeded: number,
  deadlineMs: number,
): Promise<SnapshotInfo | null> {
  const done = await settledBefore(inFlight, deadlineMs);
  if (done === null) {
    const { stage, partition } = store.identity;
    throw new Error(
      `a snapshot of ${stage} partition ${partition} was still being written after this one waited its limit (cluster.handoffSnapshotWaitMsMax); the next snapshot period writes one, or raise the limit if snapshots take that long`,
    );
  }
  if (!("info" in done)) return null;
  const covers = done.info.storeId === store.storeId() && done.info.commitSeq >= commitSeqNeeded;
  return covers ? done.info : null;
}

/** How `p` settled, or null when it had not by `deadlineMs`. */
async function settledBefore<T>(
  p: Promise<T>,
  deadlineMs: number,
): Promise<{ info: T } | { error: unknown } | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), Math.max(0, deadlineMs - Date.now()));
  });
  try {
    return await Promise.race([
      p.then(
        (info) => ({ info }),
        (error: unknown) => ({ error }),
      ),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The body into the partition's body file, then into the Object Store under the partition's name. */
async function putSnapshot(
  os: ObjectStore,
  store: PartitionStore,
  meta: { writer: string; writtenAtMs: number; logSeqFrom: number },
): Promise<SnapshotInfo> {
  const { stage, partition, partitionCount } = store.identity;
  const file = `${store.dir}.snapshot`;
  try {
    const body = await writeBody(store, file);
    const info: SnapshotInfo = {
      stage: stage as Stage,
      index: partition,
      partitionCount,
      ...body,
      ...meta,
      revision: 0,
    };
    const put = await os.put(
      { name: snapshotName(info.stage, info.index), metadata: metadataOf(info) },
      Bun.file(file).stream(),
    );
    return { ...info, revision: put.revision };
  } finally {
    await rm(file, { force: true });
  }
}

type Body = Pick<
  SnapshotInfo,
  "layoutVersion" | "applied" | "commitSeq" | "storeId" | "recordCount" | "bodyBytes" | "sha256"
>;

const packr = new Packr({ useRecords: false });

/** The body into `file`, hashed on the way, fileChunkBytes per write; the read transaction ends with it. */
async function writeBody(store: PartitionStore, file: string): Promise<Body> {
  const snapshot = store.snapshot();
  const out = await open(file, "w");
  const hasher = new Bun.CryptoHasher("sha256");
  let bodyBytes = 0;
  let parts: Uint8Array[] = [bodyHead(snapshot.recordCount)];
  let partsBytes = 0;
  const flush = async () => {
    const chunk = Buffer.concat(parts);
    parts = [];
    partsBytes = 0;
    hasher.update(chunk);
    bodyBytes += chunk.length;
    await out.write(chunk);
  };
  try {
    let count = 0;
    let layout: unknown;
    let commitSeq: unknown = 0;
    let storeId: unknown;
    for (const record of snapshot.records) {
      if (record.table === "meta" && record.key === "layoutVersion") layout = record.value;
      if (record.table === "meta" && record.key === "commitSeq") commitSeq = record.value;
      if (record.table === "meta" && record.key === "storeId") storeId = record.value;
      const packed = packr.pack(record);
      parts.push(packed);
      partsBytes += packed.length;
      count++;
      if (partsBytes >= fileChunkBytes) await flush();
    }
    await flush();
    assert(count === snapshot.recordCount, "a snapshot holds the records counted in its read transaction");
    assert(typeof layout === "number", "a partition's meta holds its layout version");
    assert(typeof commitSeq === "number", "a partition's commit sequence is a number");
    assert(typeof storeId === "string", "a partition's meta holds its store id");
    const sha256 = hasher.digest("hex");
    return {
      layoutVersion: layout,
      applied: snapshot.applied,
      commitSeq,
      storeId,
      recordCount: count,
      bodyBytes,
      sha256,
    };
  } finally {
    snapshot.done();
    await out.close();
  }
}

/**
 * The bytes before the first record: a 3-entry map whose last value is an array32 of `recordCount`. Fixed
 * length, so a reader checks it whole and reads the records after it as a sequence of msgpack values.
 */
function bodyHead(recordCount: number): Uint8Array {
  const count = Buffer.alloc(5);
  count[0] = 0xdd; // array32
  count.writeUInt32BE(recordCount, 1);
  const map3 = Uint8Array.of(0x83);
  const fields = ["format", format, "version", formatVersion, "records"].map((v) => packr.pack(v));
  return Buffer.concat([map3, ...fields, count]);
}

const bodyHeadBytes = bodyHead(0).length;

/** The snapshot's metadata, or null when the partition has none. Downloads nothing. */
export async function readSnapshotInfo(
  os: ObjectStore,
  stage: Stage,
  index: number,
): Promise<SnapshotInfo | null> {
  const info = await os.info(snapshotName(stage, index));
  if (info === null || info.deleted) return null;
  return infoOf(info);
}

/**
 * Replaces the local partition with its latest snapshot and returns what it covers: `applied`, the
 * sequences to replay each stream after, and `commitSeq` (null: no snapshot; the partition replays its
 * streams from the start). The partition must not be open. Nothing local changes until the body passed its
 * checksum and was imported whole into a directory of its own.
 */
export async function restoreSnapshot(
  os: ObjectStore,
  c: Config,
  stage: Stage,
  index: number,
): Promise<SnapshotInfo | null> {
  const result = await os.get(snapshotName(stage, index));
  if (result === null) return null;
  let info: SnapshotInfo;
  try {
    info = infoOf(result.info);
    checkFits(info, c, stage, index);
  } catch (error) {
    await result.data.cancel();
    throw error;
  }
  const dir = partitionDir(c.data.dir, stage, index);
  const download = `${dir}.snapshot-download`;
  // No dot: lmdb-js opens a path with an extension as a single-file environment, not a directory.
  const staging = `${dir}-restoring`;
  try {
    await mkdir(dirname(dir), { recursive: true }); // a new owner's data.dir may hold no partition yet
    await downloadBody(result, download, info);
    await rm(staging, { recursive: true, force: true }); // a restore that stopped half-way
    await importBody(c, info, download, staging);
    await swapIn(staging, dir);
    return info;
  } finally {
    await rm(download, { force: true });
    await rm(staging, { recursive: true, force: true });
  }
}

/** The snapshot restores into this node's config, or is refused with the fix. */
function checkFits(info: SnapshotInfo, c: Config, stage: Stage, index: number): void {
  const name = `snapshot ${snapshotName(stage, index)} in ${snapshotBucket}`;
  if (info.stage !== stage || info.index !== index) {
    throw new SnapshotRefusedError(
      `${name} holds ${info.stage} partition ${info.index}; delete it (nats object del ${snapshotBucket} ${snapshotName(stage, index)}) so the next snapshot replaces it`,
      "snapshot_holds_another_partition",
    );
  }
  if (info.partitionCount !== c.streams.partitionCount) {
    throw new SnapshotRefusedError(
      `${name} was written with streams.partitionCount = ${info.partitionCount}, config says ${c.streams.partitionCount}; the count is fixed once streams exist (docs/operations.md, "Changing the partition count"): set it back, or delete the snapshots of the old count (nats object del ${snapshotBucket} ${snapshotName(stage, index)}) so the partition replays its stream`,
      "snapshot_partition_count_differs",
    );
  }
  if (info.layoutVersion > layoutVersion) {
    throw new SnapshotRefusedError(
      `${name} has store layout ${info.layoutVersion}, this version reads layout ${layoutVersion}; run the version that wrote it (or a newer one) on this node`,
      "snapshot_layout_is_newer",
    );
  }
}

/** The body into `file`; refused unless its size and sha256 are the metadata's. */
async function downloadBody(result: ObjectResult, file: string, info: SnapshotInfo): Promise<void> {
  const out = await open(file, "w");
  const hasher = new Bun.CryptoHasher("sha256");
  let bytes = 0;
  try {
    for await (const chunk of result.data) {
      hasher.update(chunk);
      bytes += chunk.length;
      await out.write(chunk);
    }
    // nats.js resolves `error` with undefined, not the typed null, once the stream ended well.
    const error = await result.error;
    if (error) throw error;
  } finally {
    await out.close();
  }
  const sha256 = hasher.digest("hex");
  if (bytes !== info.bodyBytes || sha256 !== info.sha256) {
    throw new SnapshotRefusedError(
      `snapshot ${snapshotName(info.stage, info.index)} in ${snapshotBucket} is corrupt: ${bytes} bytes with sha256 ${sha256}, its metadata says ${info.bodyBytes} bytes with sha256 ${info.sha256}; nothing local was changed. Write a new snapshot from a node that holds the partition, or delete this one (nats object del ${snapshotBucket} ${snapshotName(info.stage, info.index)}) so the partition replays its stream`,
      "snapshot_checksum_does_not_match",
    );
  }
}

type Rec = { table: string; key: never; value: unknown };

/**
 * The body's records into a new store at `staging`, importBatchCountMax per transaction. The meta records
 * (identity, applied sequences) go in last, in a transaction of their own: import() takes an empty
 * partition, one whose applied sequence is still 0.
 */
async function importBody(c: Config, info: SnapshotInfo, file: string, staging: string): Promise<void> {
  const def = stageDefinitions[info.stage];
  const store = PartitionStore.open(
    staging,
    { stage: info.stage, partition: info.index, partitionCount: info.partitionCount },
    { mapBytesMax: c.store.mapBytesMax, tables: def.tables, routedCountMax: c.store.routedCountMax },
  );
  try {
    const tables = new Set(["meta", "outbox", "routed", ...def.tables]);
    const meta: Rec[] = [];
    let batch: Rec[] = [];
    let count = 0;
    for await (const value of bodyRecords(file, info)) {
      const record = recordOf(value, tables, info);
      count++;
      if (record.table === "meta") meta.push(record);
      else batch.push(record);
      if (batch.length < importBatchCountMax) continue;
      await store.import(batch);
      batch = [];
    }
    if (count !== info.recordCount) mismatch(info, `${count} records, its metadata says ${info.recordCount}`);
    checkMeta(meta, info);
    await store.import(batch);
    await store.import(meta);
  } finally {
    await store.close();
  }
}

/** The records of a body file, decoded a chunk at a time after its fixed head. */
async function* bodyRecords(file: string, info: SnapshotInfo): AsyncGenerator<unknown> {
  const input = await open(file, "r");
  const head = Buffer.alloc(bodyHeadBytes);
  try {
    await input.read(head, 0, bodyHeadBytes, 0);
  } finally {
    await input.close();
  }
  const expected = bodyHead(info.recordCount);
  if (!head.equals(expected)) mismatch(info, "its body does not start as a Sluice partition export does");
  const chunks = createReadStream(file, { start: bodyHeadBytes, highWaterMark: fileChunkBytes });
  try {
    yield* decodeIter(chunks, { useRecords: false, mapsAsObjects: true });
  } finally {
    chunks.destroy();
  }
}

function recordOf(value: unknown, tables: ReadonlySet<string>, info: SnapshotInfo): Rec {
  const r = value as Partial<Rec> | null;
  if (typeof r !== "object" || r === null || typeof r.table !== "string" || !("key" in r)) {
    mismatch(info, "a record is not { table, key, value }");
  }
  if (!tables.has(r.table as string))
    mismatch(info, `a record names table ${r.table}, not one of the stage's`);
  return r as Rec;
}

/** The meta records say what the metadata says: the same partition and the same applied sequences. */
function checkMeta(meta: readonly Rec[], info: SnapshotInfo): void {
  const get = (key: string) => meta.find((r) => r.key === key)?.value;
  const identity = get("identity") as { stage?: unknown; partition?: unknown; partitionCount?: unknown };
  if (
    identity?.stage !== info.stage ||
    identity.partition !== info.index ||
    identity.partitionCount !== info.partitionCount
  ) {
    mismatch(info, `its records are of ${String(identity?.stage)} partition ${String(identity?.partition)}`);
  }
  const seq = get("streamSeqLastApplied") ?? 0;
  if (seq !== info.applied.streamSeqLastApplied) {
    mismatch(
      info,
      `its records are at sequence ${String(seq)}, its metadata says ${info.applied.streamSeqLastApplied}`,
    );
  }
  if ((get("commitSeq") ?? 0) !== info.commitSeq) {
    mismatch(
      info,
      `its records hold commit ${String(get("commitSeq"))}, its metadata says ${info.commitSeq}`,
    );
  }
  if (get("storeId") !== info.storeId) {
    mismatch(info, `its records are from store ${String(get("storeId"))}, its metadata says ${info.storeId}`);
  }
  for (const input of info.applied.inputs) {
    if (get(`streamSeqLastApplied:${input.stream}`) !== input.seq) {
      mismatch(info, `its records are not at ${input.stream} sequence ${input.seq}`);
    }
  }
}

function mismatch(info: SnapshotInfo, what: string): never {
  throw new SnapshotRefusedError(
    `snapshot ${snapshotName(info.stage, info.index)} in ${snapshotBucket} does not match its metadata: ${what}; nothing local was changed. Write a new snapshot from a node that holds the partition, or delete this one (nats object del ${snapshotBucket} ${snapshotName(info.stage, info.index)})`,
    "snapshot_body_does_not_match_its_metadata",
  );
}

/**
 * Puts the restored environment in place. With no partition there (a new owner), the staging directory is
 * renamed to it. Over an old partition, the data file is renamed over the old one: either way one rename,
 * so a crash leaves the old state or the new, whole, never none. The old lock file goes: it is the old
 * environment's reader table, and LMDB makes a new one when the partition is next opened.
 */
async function swapIn(staging: string, dir: string): Promise<void> {
  const data = join(dir, "data.mdb");
  if (existsSync(data)) {
    await rename(join(staging, "data.mdb"), data);
    await rm(join(dir, "lock.mdb"), { force: true });
    await syncDir(dir);
    return;
  }
  await rm(dir, { recursive: true, force: true });
  await rename(staging, dir);
  await syncDir(dirname(dir));
}

/** A rename is durable once its directory is synced. */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function metadataOf(info: SnapshotInfo): Record<string, string> {
  const m: Record<string, string> = {
    format,
    version: String(formatVersion),
    stage: info.stage,
    index: String(info.index),
    partitionCount: String(info.partitionCount),
    layoutVersion: String(info.layoutVersion),
    streamSeqLastApplied: String(info.applied.streamSeqLastApplied),
    commitSeq: String(info.commitSeq),
    storeId: info.storeId,
    logSeqFrom: String(info.logSeqFrom),
    inputs: JSON.stringify(info.applied.inputs),
    writer: info.writer,
    writtenAtMs: String(info.writtenAtMs),
    recordCount: String(info.recordCount),
    bodyBytes: String(info.bodyBytes),
    sha256: info.sha256,
  };
  const atMs = info.applied.streamSeqLastAppliedAtMs;
  if (atMs !== undefined) m.streamSeqLastAppliedAtMs = String(atMs);
  return m;
}

/** The metadata, checked field by field: an object someone else put under the name is refused here. */
function infoOf(object: ObjectInfo): SnapshotInfo {
  const m = object.metadata ?? {};
  const refuse = (what: string, reason: SnapshotRefusal = "snapshot_is_not_sluice"): never => {
    throw new SnapshotRefusedError(
      `object ${object.name} in ${snapshotBucket} is not a Sluice snapshot this version reads (${what}); delete it (nats object del ${snapshotBucket} ${object.name}) so the next snapshot replaces it`,
      reason,
    );
  };
  if (m.format !== format) refuse(`metadata format is ${String(m.format)}`);
  if (m.version !== String(formatVersion)) {
    refuse(
      `format version ${String(m.version)}, this version reads ${formatVersion}`,
      "snapshot_format_version_unknown",
    );
  }
  const count = (key: string): number => {
    const n = Number(m[key] ?? "x");
    if (!Number.isSafeInteger(n) || n < 0) refuse(`metadata ${key} is ${String(m[key])}`);
    return n;
  };
  const stage = m.stage as Stage;
  if (!stages.includes(stage)) refuse(`metadata stage is ${String(m.stage)}`);
  const inputs = inputsOf(m.inputs);
  if (inputs === null) refuse(`metadata inputs is ${String(m.inputs)}`);
  if (!/^[0-9a-f]{64}$/.test(m.sha256 ?? "")) refuse(`metadata sha256 is ${String(m.sha256)}`);
  if (!m.storeId) refuse("metadata has no storeId");
  const applied: AppliedSeqs = { streamSeqLastApplied: count("streamSeqLastApplied"), inputs: inputs ?? [] };
  if (m.streamSeqLastAppliedAtMs !== undefined)
    applied.streamSeqLastAppliedAtMs = count("streamSeqLastAppliedAtMs");
  return {
    stage,
    index: count("index"),
    partitionCount: count("partitionCount"),
    layoutVersion: count("layoutVersion"),
    applied,
    commitSeq: count("commitSeq"),
    storeId: m.storeId ?? "",
    logSeqFrom: count("logSeqFrom"),
    writer: m.writer ?? "",
    writtenAtMs: count("writtenAtMs"),
    recordCount: count("recordCount"),
    bodyBytes: count("bodyBytes"),
    sha256: m.sha256 as string,
    revision: object.revision,
  };
}

function inputsOf(json: string | undefined): AppliedSeqs["inputs"] | null {
  try {
    const v = JSON.parse(json ?? "") as unknown;
    const ok =
      Array.isArray(v) &&
      v.every((i) => typeof i?.stream === "string" && Number.isSafeInteger(i?.seq) && i.seq >= 0);
    return ok ? (v as AppliedSeqs["inputs"]) : null;
  } catch {
    return null;
  }
}
