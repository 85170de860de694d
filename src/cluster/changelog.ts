import { Packr, Unpackr } from "msgpackr";
import { assert } from "../domain/assert.ts";
import type { Op, OutboxItem } from "../store/index.ts";

/**
 * The changelog: every commit of a partition, as the exact write it made, on `sluice.log.<stage>.<p>` in the
 * stream SLUICE_LOG (Kafka Streams' changelog topics, on JetStream). A new owner restores the partition's
 * latest snapshot and applies the log after it: the same state, the same pending outputs with the same
 * message ids, whatever the batching, the clocks or the routing view were when the batches first ran. Inputs
 * are not executed again for anything the log holds; only what the old owner committed and never logged is
 * executed again (its outputs never left: a batch's log record is its first outbox item, published first).
 *
 * Lineage: each record names the store that wrote it (`storeId`, drawn when a store is created or restored)
 * and its commit number. A new owner appends a takeover marker (`storeId`, from `commitSeq`) before its first
 * commit, with JetStream's expected-last-subject-sequence, so the marker sits after everything it read; from
 * a marker on, readers apply only the marked writer's records. A late record of a fenced-off owner is ignored.
 */
export const logStreamName = "SLUICE_LOG";
export const logSubjectAll = "sluice.log.>";
export const logSubject = (stage: string, partition: number) => `sluice.log.${stage}.${partition}`;
/** `<storeId>:<commitSeq>:<part>:<parts>` on each part of a commit record; `takeover` on a marker. */
export const logHeader = "Sluice-Log";

export type CommitRecord = {
  kind: "commit";
  storeId: string;
  commitSeq: number;
  /** The store's outbox sequence before this commit: the record's parts take the next keys, its items follow. */
  outboxSeqBefore: number;
  ops: Op[];
  /** The commit's outbox items as committed (message ids assigned), the log parts excluded. */
  items: OutboxItem[];
  /** Meta values the commit wrote (applied sequences, their times, outboxSeq, commitSeq). */
  meta: Array<[string, unknown]>;
  routed: Array<[number, number, number]>;
  /** Outbox keys confirmed published since the previous record: a reader forgets them too. */
  done: number[];
};

export type TakeoverMarker = {
  kind: "takeover";
  storeId: string;
  /** The commit the new writer continues from: its first record is commitSeq + 1. */
  commitSeq: number;
  node: string;
  atMs: number;
};

export type LogEntry = CommitRecord | TakeoverMarker;

const packr = new Packr({ useRecords: false, int64AsType: "number", moreTypes: false });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: "number" });

export function encodeEntry(entry: LogEntry): Uint8Array {
  return packr.pack(entry);
}

export function decodeEntry(data: Uint8Array): LogEntry {
  const v = unpackr.unpack(data) as LogEntry;
  assert(v !== null && typeof v === "object", "a log entry is an object");
  assert(v.kind === "commit" || v.kind === "takeover", "a log entry is a commit or a takeover");
  return v;
}

/**
 * A commit record as outbox items: parts of at most `partBytesMax` bytes (a record may carry a large batch),
 * each with a message id of its own, so a part published again is dropped by JetStream's duplicate window.
 */
export function recordParts(
  record: CommitRecord,
  stage: string,
  partition: number,
  partBytesMax: number,
): OutboxItem[] {
  assert(partBytesMax > 0, "a log part holds at least a byte");
  const body = encodeEntry(record);
  const parts = Math.max(1, Math.ceil(body.length / partBytesMax));
  const out: OutboxItem[] = [];
  for (let i = 0; i < parts; i++) {
    out.push({
      subject: logSubject(stage, partition),
      msgId: `log:${stage}-${partition}:${record.storeId}:${record.commitSeq}:${i}`,
      headers: [[logHeader, `${record.storeId}:${record.commitSeq}:${i}:${parts}`]],
      data: body.subarray(i * partBytesMax, Math.min(body.length, (i + 1) * partBytesMax)),
    });
  }
  return out;
}

export function markerItem(marker: TakeoverMarker, stage: string, partition: number): OutboxItem {
  return {
    subject: logSubject(stage, partition),
    msgId: `log:${stage}-${partition}:${marker.storeId}:takeover`,
    headers: [[logHeader, "takeover"]],
    data: encodeEntry(marker),
  };
}

/** What the reader needs of a store: its position in the lineage and a way to apply a record. */
export interface LogTarget {
  commitSeq(): number;
  applyLogged(record: CommitRecord, parts: number): Promise<unknown>;
}

export class LogGapError extends Error {
  override name = "LogGapError";
}

/**
 * Folds log messages (in stream order) into a store: assembles parts, follows takeover markers, applies the
 * current writer's next record, skips what the store already holds and anything from a writer that is not
 * current. `writer` starts as the store's own lineage (the snapshot's store id), or null: the first record
 * names it.
 */
export class LogReader {
  private parts: Uint8Array[] = [];
  private partsOf = "";
  /** Stream sequence of the last message read: the next marker expects it as the subject's last. */
  lastSeq = 0;
  applied = 0;
  ignored = 0;

  constructor(
    private readonly target: LogTarget,
    public writer: string | null,
  ) {}

  async read(seq: number, header: string | undefined, data: Uint8Array): Promise<void> {
    this.lastSeq = seq;
    if (header === "takeover") return this.takeover(decodeEntry(data) as TakeoverMarker);
    const [storeId = "", commit = "", part = "", of = ""] = (header ?? "").split(":");
    const key = `${storeId}:${commit}`;
    if (Number(part) === 0) {
      this.parts = [];
      this.partsOf = key;
    }
    // A part without its first (purged before it, or a stale writer's parts interleaved) is not a record.
    if (this.partsOf !== key) return;
    this.parts.push(data);
    if (this.parts.length < Number(of)) return;
    const body = this.parts.length === 1 ? (this.parts[0] as Uint8Array) : Buffer.concat(this.parts);
    const parts = this.parts.length;
    this.parts = [];
    this.partsOf = "";
    await this.commit(decodeEntry(body) as CommitRecord, parts);
  }

  private takeover(m: TakeoverMarker): void {
    const at = this.target.commitSeq();
    if (m.commitSeq > at) {
      throw new LogGapError(
        `the log says writer ${m.storeId} continued from commit ${m.commitSeq}, this copy holds ${at}: records are missing (the log was purged past the last snapshot)`,
      );
    }
    if (m.commitSeq < at && this.writer !== m.storeId) {
      // This copy holds commits past where the new writer started: a branch that lost. Only a snapshot
      // taken by a fenced-off owner can do that; the caller restores again without it.
      throw new LogGapError(
        `this copy holds commit ${at}, past the commit ${m.commitSeq} writer ${m.storeId} took over from: it comes from a fenced-off owner`,
      );
    }
    this.writer = m.storeId;
  }

  private async commit(r: CommitRecord, parts: number): Promise<void> {
    if (this.writer === null) this.writer = r.storeId;
    const at = this.target.commitSeq();
    if (r.storeId !== this.writer || r.commitSeq <= at) {
      this.ignored++;
      return;
    }
    if (r.commitSeq !== at + 1) {
      throw new LogGapError(
        `the log jumps from commit ${at} to ${r.commitSeq} of writer ${r.storeId}: records are missing`,
      );
    }
    await this.target.applyLogged(r, parts);
    this.applied++;
  }
}
