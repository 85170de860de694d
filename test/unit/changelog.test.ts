import { afterAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import {
  type CommitRecord,
  decodeEntry,
  LogGapError,
  LogReader,
  logHeader,
  markerItem,
  recordParts,
} from "../../src/cluster/changelog.ts";
import type { BatchWrite, OutboxItem } from "../../src/store/index.ts";
import { PartitionStore } from "../../src/store/partition-store.ts";
import { tempDir } from "../helpers/index.ts";

// The changelog against real LMDB: a copy folded from a writer's log records equals the writer, whatever the
// writes (generated), the part size (records split over several messages) and the outbox confirmations.

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const identity = { stage: "ledger", partition: 2, partitionCount: 4 };
function openStore(): PartitionStore {
  const dir = tempDir("changelog");
  dirs.push(dir);
  return PartitionStore.open(join(dir, "p"), identity, {
    mapBytesMax: 64 * 1024 * 1024,
    tables: ["skus", "entries"],
    routedCountMax: 5,
  });
}

const key = fc.oneof(
  fc.string({ minLength: 1, maxLength: 12 }),
  fc.tuple(fc.string({ minLength: 1, maxLength: 6 }), fc.nat(1000)),
);
const value = fc.record({
  n: fc.integer(),
  s: fc.string({ maxLength: 40 }),
  list: fc.array(fc.nat(), { maxLength: 5 }),
  bytes: fc.uint8Array({ maxLength: 64 }),
});
const op = fc.oneof(
  fc.record({ op: fc.constant("put" as const), table: fc.constantFrom("skus", "entries"), key, value }),
  fc.record({ op: fc.constant("delete" as const), table: fc.constantFrom("skus", "entries"), key }),
);
const item = fc.record({
  subject: fc.constantFrom("sluice.out.stock.web", "sluice.answer.1.result.2"),
  msgId: fc.constant(""),
  headers: fc.constant([["Content-Type", "application/msgpack"]] as Array<[string, string]>),
  data: fc.uint8Array({ maxLength: 300 }),
});
const batch = fc.record({
  ops: fc.array(op, { maxLength: 12 }),
  outbox: fc.array(item, { maxLength: 4 }),
  hasInput: fc.boolean(),
  routed: fc.array(fc.tuple(fc.nat(), fc.nat(), fc.nat(3)), { maxLength: 3 }),
  confirm: fc.nat(5),
});

/** A store's state as comparable data: every table, the outbox without log parts, meta without its id. */
function stateOf(store: PartitionStore): unknown[] {
  return [...store.export()].filter(
    (r) =>
      !(r.table === "meta" && r.key === "storeId") &&
      !(r.table === "outbox" && (r.value as OutboxItem).subject.startsWith("sluice.log.")),
  );
}

const headerOf = (i: OutboxItem) => i.headers.find(([k]) => k === logHeader)?.[1];

describe("changelog", () => {
  test("a copy folded from the log equals the writer (generated writes, parts, confirmations)", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(batch, { minLength: 1, maxLength: 12 }),
        fc.constantFrom(64, 512, 1 << 20),
        async (batches, partBytesMax) => {
          const writer = openStore();
          const copy = openStore();
          writer.enableLog(partBytesMax, 0);
          const reader = new LogReader(copy, null);
          const log: OutboxItem[] = [];
          let seq = 0;
          let streamSeq = 0;
          for (const b of batches) {
            if (b.hasInput) streamSeq += 1 + (b.confirm % 3);
            const write: BatchWrite = {
              ops: b.ops,
              outbox: b.outbox,
              streamSeqLastApplied: b.hasInput ? streamSeq : null,
              routed: b.routed,
            };
            const { keys, items } = await writer.commit(write);
            log.push(...items.filter((i) => i.subject.startsWith("sluice.log.")));
            // The publisher confirms some of what is pending, oldest first.
            await writer.outboxDone(keys.slice(0, b.confirm));
          }
          for (const m of log) await reader.read(++seq, headerOf(m), m.data);
          // Confirmations after the last commit are not logged yet: the copy still holds those items.
          const confirmedLate = new Set(
            (writer as unknown as { doneSinceLog: number[] }).doneSinceLog.map(String),
          );
          const w = stateOf(writer);
          const c = stateOf(copy).filter(
            (r) =>
              !(
                (r as { table: string }).table === "outbox" &&
                confirmedLate.has(String((r as { key: number }).key))
              ),
          );
          expect(c).toEqual(w);
          expect(copy.commitSeq()).toBe(batches.length);
          expect(reader.applied).toBe(batches.length);
          await writer.close();
          await copy.close();
        },
      ),
      { numRuns: 25 },
    );
  });

  test("a takeover marker fences the old writer: its later records are ignored", async () => {
    const old = openStore();
    const next = openStore();
    const copy = openStore();
    old.enableLog(1 << 20, 0);
    next.enableLog(1 << 20, 0);
    const logOf = async (s: PartitionStore, w: BatchWrite) =>
      (await s.commit(w)).items.filter((i) => i.subject.startsWith("sluice.log."));
    const put = (k: string, n: number): BatchWrite => ({
      ops: [{ op: "put", table: "skus", key: k, value: { n } }],
      outbox: [],
      streamSeqLastApplied: null,
    });
    const log: OutboxItem[] = [];
    log.push(...(await logOf(old, put("a", 1))));
    // The new owner took over from commit 1: it holds what the log held, then writes its marker.
    const r1 = new LogReader(next, null);
    let seq = 0;
    for (const m of log) await r1.read(++seq, headerOf(m), m.data);
    log.push(
      markerItem(
        { kind: "takeover", storeId: next.storeId(), commitSeq: 1, node: "n2", atMs: 0 },
        "ledger",
        2,
      ),
    );
    // The old owner, paused past its lease, commits once more; the new owner commits too.
    log.push(...(await logOf(old, put("a", 99))));
    log.push(...(await logOf(next, put("a", 2))));
    const reader = new LogReader(copy, null);
    seq = 0;
    for (const m of log) await reader.read(++seq, headerOf(m), m.data);
    expect(copy.get<{ n: number }>("skus", "a")?.n).toBe(2);
    expect(reader.ignored).toBe(1);
    expect(reader.writer).toBe(next.storeId());
  });

  test("a gap in the log stops the reader with a clear error", async () => {
    const writer = openStore();
    const copy = openStore();
    writer.enableLog(1 << 20, 0);
    const parts: OutboxItem[] = [];
    for (let i = 0; i < 3; i++) {
      const { items } = await writer.commit({
        ops: [{ op: "put", table: "skus", key: `k${i}`, value: i }],
        outbox: [],
        streamSeqLastApplied: null,
      });
      parts.push(...items);
    }
    const reader = new LogReader(copy, null);
    await reader.read(1, headerOf(parts[0] as OutboxItem), (parts[0] as OutboxItem).data);
    const third = parts[2] as OutboxItem;
    await expect(reader.read(3, headerOf(third), third.data)).rejects.toBeInstanceOf(LogGapError);
  });

  test("a record splits into parts under the size bound and decodes whole", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 5000 }), fc.integer({ min: 16, max: 2000 }), (bytes, max) => {
        const record: CommitRecord = {
          kind: "commit",
          storeId: "abcd1234",
          commitSeq: 7,
          outboxSeqBefore: 3,
          ops: [{ op: "put", table: "skus", key: "x", value: { bytes } }],
          items: [],
          meta: [["commitSeq", 7]],
          routed: [],
          done: [1, 2],
        };
        const parts = recordParts(record, "ledger", 2, max);
        for (const p of parts) expect(p.data.length).toBeLessThanOrEqual(max);
        const whole = Buffer.concat(parts.map((p) => p.data));
        expect(decodeEntry(whole)).toEqual(record);
        expect(new Set(parts.map((p) => p.msgId)).size).toBe(parts.length);
      }),
      { numRuns: 100 },
    );
  });
});
