import {
  DeliverPolicy,
  DiscardPolicy,
  type JetStreamClient,
  type JetStreamManager,
  RetentionPolicy,
  StorageType,
} from "@nats-io/jetstream";
import { headers } from "@nats-io/transport-node";
import { assert } from "../domain/assert.ts";
import type { PartitionStore } from "../store/index.ts";
import {
  decodeEntry,
  LogReader,
  logHeader,
  logStreamName,
  logSubject,
  logSubjectAll,
  markerItem,
  type TakeoverMarker,
} from "./changelog.ts";

const msToNs = (ms: number) => ms * 1_000_000;

export type LogStreamOptions = {
  bytesMax: number;
  replicas: number;
  duplicateWindowMs: number;
  messageBytesMax: number;
};

/**
 * SLUICE_LOG: the partitions' changelogs. Limits retention, nothing ages out: an owner purges its partition's
 * subject up to its latest snapshot (what a new owner would read from). Full means back-pressure (discard new:
 * commits keep their log records in the outbox and wait), never a record lost.
 */
export async function ensureLogStream(jsm: JetStreamManager, o: LogStreamOptions): Promise<void> {
  const config = {
    name: logStreamName,
    subjects: [logSubjectAll],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.New,
    max_bytes: o.bytesMax,
    max_msg_size: o.messageBytesMax + 4096,
    duplicate_window: msToNs(o.duplicateWindowMs),
    num_replicas: o.replicas,
  };
  try {
    const info = await jsm.streams.info(logStreamName);
    if (info.config.max_bytes !== o.bytesMax || info.config.num_replicas !== o.replicas) {
      await jsm.streams.update(logStreamName, { ...info.config, ...config });
    }
  } catch (error) {
    if (!/not found/i.test((error as Error).message)) throw error;
    await jsm.streams.add(config);
  }
}

/** The last message on a partition's log subject: its sequence and the writer it names, or null (no log). */
export async function logHead(
  jsm: JetStreamManager,
  stage: string,
  partition: number,
): Promise<{ seq: number; writer: string } | null> {
  const m = await jsm.streams.getMessage(logStreamName, { last_by_subj: logSubject(stage, partition) });
  if (m === null) return null;
  const header = m.header.get(logHeader);
  const writer =
    header === "takeover" ? (decodeEntry(m.data) as TakeoverMarker).storeId : header.split(":")[0];
  assert(writer !== undefined && writer !== "", "a log message names its writer");
  return { seq: m.seq, writer };
}

/**
 * Reads a partition's log from `fromSeq` through `untilSeq` (its last message when the caller looked) into
 * `reader`, with an ordered consumer and bounded fetches. A stale owner's appends after it change nothing
 * (the marker that follows is refused and the caller reads on).
 */
export async function readLog(
  js: JetStreamClient,
  stage: string,
  partition: number,
  range: { fromSeq: number; untilSeq: number },
  reader: LogReader,
  o: { fetchCountMax: number; fetchWaitMs: number; deadlineMs: number },
): Promise<void> {
  if (range.untilSeq < range.fromSeq) return;
  const consumer = await js.consumers.get(logStreamName, {
    filter_subjects: logSubject(stage, partition),
    ...(range.fromSeq <= 1
      ? { deliver_policy: DeliverPolicy.All }
      : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: range.fromSeq }),
  });
  try {
    while (reader.lastSeq < range.untilSeq) {
      if (Date.now() > o.deadlineMs)
        throw new Error(`reading ${logSubject(stage, partition)} took longer than allowed`);
      const batch = await consumer.fetch({ max_messages: o.fetchCountMax, expires: o.fetchWaitMs });
      for await (const m of batch) {
        await reader.read(m.seq, m.headers?.get(logHeader), m.data);
        if (m.seq >= range.untilSeq || m.info.pending === 0) break;
      }
      // Purged meanwhile (below fromSeq) or nothing more: the reader has what there is.
      if (reader.lastSeq < range.untilSeq && (await consumer.info(true)).num_pending === 0) return;
    }
  } finally {
    await consumer.delete().catch(() => undefined);
  }
}

/**
 * Appends the takeover marker right after the last message the new owner read (JetStream checks the
 * subject's last sequence). Refused when something landed meanwhile (a fenced-off owner's late record): the
 * caller reads on and tries again. Returns the marker's sequence, or null when refused.
 */
export async function appendMarker(
  js: JetStreamClient,
  stage: string,
  partition: number,
  marker: TakeoverMarker,
  lastSeq: number,
): Promise<number | null> {
  const item = markerItem(marker, stage, partition);
  try {
    const ack = await js.publish(item.subject, item.data, {
      msgID: item.msgId,
      expect: { lastSubjectSequence: lastSeq },
      headers: headersOf(item.headers),
    });
    return ack.seq;
  } catch (error) {
    if (/wrong last sequence/i.test((error as Error).message)) return null;
    throw error;
  }
}

function headersOf(lines: Array<[string, string]>) {
  const h = headers();
  for (const [k, v] of lines) h.append(k, v);
  return h;
}

export type Takeover = {
  store: PartitionStore;
  /** How the copy was made: kept (this node's copy heads the log), restored (snapshot + log) or fresh (log). */
  how: "kept" | "restored" | "fresh";
  applied: number;
  ignored: number;
  markerSeq: number | null;
};

/** What a takeover needs from the node: opening, wiping and restoring the partition's local copy. */
export interface TakeoverPort {
  js: JetStreamClient;
  jsm: JetStreamManager;
  node: string;
  /** The local copy, opened for writing, or null when there is none. */
  openLocal(): PartitionStore | null;
  /** Removes the local copy (closed). */
  wipeLocal(): Promise<void>;
  /**
   * Restores the latest snapshot as the local copy: the writer lineage it holds and the log sequence to read
   * from; null when there is no snapshot (the local copy is then empty).
   */
  restore(): Promise<{ writer: string; logSeqFrom: number } | null>;
  openFresh(): PartitionStore;
  logPartBytesMax: number;
  read: { fetchCountMax: number; fetchWaitMs: number; deadlineMs: number };
  markerAttemptsMax: number;
}

/**
 * Makes this node's copy of a partition current before it runs here (the lease is held): keeps the local copy
 * when it wrote the log's last record (or no log exists: a node moving from one-process mode); otherwise the
 * latest snapshot, then the log after it, then a takeover marker that fences every earlier writer.
 */
export async function takeOver(stage: string, partition: number, port: TakeoverPort): Promise<Takeover> {
  const head = await logHead(port.jsm, stage, partition);
  const local = port.openLocal();
  if (local !== null && (head === null || head.writer === local.storeId())) {
    local.enableLog(port.logPartBytesMax, head?.seq ?? 0);
    return { store: local, how: "kept", applied: 0, ignored: 0, markerSeq: null };
  }
  if (local !== null) {
    await local.close();
    await port.wipeLocal();
  }
  const restored = await port.restore();
  const store = port.openFresh();
  try {
    const reader = new LogReader(store, restored?.writer ?? null);
    let from = restored?.logSeqFrom ?? 1;
    let until = head?.seq ?? 0;
    for (let attempt = 1; ; attempt++) {
      await readLog(port.js, stage, partition, { fromSeq: from, untilSeq: until }, reader, port.read);
      const marker: TakeoverMarker = {
        kind: "takeover",
        storeId: store.storeId(),
        commitSeq: store.commitSeq(),
        node: port.node,
        atMs: Date.now(),
      };
      const seq = await appendMarker(port.js, stage, partition, marker, Math.max(reader.lastSeq, until));
      if (seq !== null) {
        store.enableLog(port.logPartBytesMax, seq);
        const how = restored !== null ? "restored" : "fresh";
        return { store, how, applied: reader.applied, ignored: reader.ignored, markerSeq: seq };
      }
      if (attempt >= port.markerAttemptsMax)
        throw new Error(
          `${logSubject(stage, partition)} kept growing while taking over (${attempt} attempts): another node still writes it`,
        );
      from = Math.max(from, reader.lastSeq + 1);
      until = (await logHead(port.jsm, stage, partition))?.seq ?? 0;
    }
  } catch (error) {
    await store.close();
    throw error;
  }
}

/** A snapshot's position for readers: written before the snapshot's read, every later record is after it. */
export async function logSeqBeforeSnapshot(
  jsm: JetStreamManager,
  stage: string,
  partition: number,
): Promise<number> {
  return (await logHead(jsm, stage, partition))?.seq ?? 0;
}

/** Forgets a partition's log before `seq` (what its latest snapshot covers): the log stays bounded. */
export async function purgeLogBefore(
  jsm: JetStreamManager,
  stage: string,
  partition: number,
  seq: number,
): Promise<number> {
  if (seq <= 1) return 0;
  const r = await jsm.streams.purge(logStreamName, { filter: logSubject(stage, partition), seq });
  return r.purged;
}
