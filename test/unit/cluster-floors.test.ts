import { describe, expect, test } from "bun:test";
import type { JetStreamManager } from "@nats-io/jetstream";
import fc from "fast-check";
import { allPartitions, type PartitionId, partitionKey } from "../../src/cluster/assignment.ts";
import {
  appliedFloorsOf,
  type Floor,
  logFloorOf,
  readFloors,
  retentionNode,
} from "../../src/cluster/floors.ts";
import { loadConfig } from "../../src/config/index.ts";
import { Retention } from "../../src/stream/retention.ts";
import { streamNames } from "../../src/stream/subjects.ts";
import { testLog } from "../helpers/index.ts";

// Retention's floors in cluster mode (src/cluster/floors.ts): one node, the first live one by name, reads
// every partition's snapshot position, a bounded number at a time; the purge points it gives never pass
// what any partition's latest snapshot covers, and a node without floors purges nothing.

const P = 4;
const partitions = allPartitions(P);

const floor = (seq: number, answer: number, logSeqFrom: number): Floor => ({
  applied: { streamSeqLastApplied: seq, inputs: [{ stream: streamNames.answer, seq: answer }] },
  logSeqFrom,
});

describe("retentionNode", () => {
  test("the first live node by name, whatever order the heartbeats come in; none without nodes", () => {
    expect(retentionNode(["node-c", "node-a", "node-b"])).toBe("node-a");
    expect(retentionNode(["node-b"])).toBe("node-b");
    expect(retentionNode([])).toBeNull();
    fc.assert(
      fc.property(fc.uniqueArray(fc.string({ minLength: 1, maxLength: 8 }), { minLength: 1 }), (names) => {
        const first = retentionNode(names);
        expect(first).toBe(retentionNode([...names].reverse()));
        expect(names.every((n) => (first as string) <= n)).toBe(true);
      }),
    );
  });
});

describe("readFloors", () => {
  test("reads each partition once, never more than inFlightMax at a time", async () => {
    for (const inFlightMax of [1, 3, 8, 100]) {
      let inFlight = 0;
      let inFlightSeen = 0;
      const reads: string[] = [];
      const floors = await readFloors(
        partitions,
        async (p: PartitionId) => {
          reads.push(partitionKey(p));
          inFlightSeen = Math.max(inFlightSeen, ++inFlight);
          await Bun.sleep(1);
          inFlight--;
          return p.index === 2 ? null : floor(10 + p.index, 5, 100 + p.index);
        },
        inFlightMax,
      );
      expect(reads.sort()).toEqual(partitions.map(partitionKey).sort());
      expect(inFlightSeen).toBe(Math.min(inFlightMax, partitions.length));
      expect(floors.size).toBe(2 * P);
      expect(floors.get("ledger.2")).toBeNull();
      expect(floors.get("order.1")?.logSeqFrom).toBe(101);
    }
  });

  test("a bound below one is refused", async () => {
    await expect(readFloors(partitions, async () => null, 0)).rejects.toThrow(/bounded/);
  });
});

describe("floors", () => {
  test("without floors (not the retention node) nothing may go", () => {
    const applied = appliedFloorsOf(new Map(), P);
    expect(new Set(applied.map((a) => a.input))).toEqual(new Set(["ledger", "order", "answer"]));
    expect(applied.every((a) => a.streamSeqLastApplied() === 0)).toBe(true);
    expect(logFloorOf(new Map())).toBe(1);
  });

  test("a purge point never passes any partition's snapshot; a partition without one holds everything", () => {
    const snapshot = fc.option(
      fc.record({
        seq: fc.nat(10_000),
        answer: fc.nat(10_000),
        logSeqFrom: fc.integer({ min: 1, max: 10_000 }),
      }),
      { nil: null },
    );
    fc.assert(
      fc.property(fc.array(snapshot, { minLength: 2 * P, maxLength: 2 * P }), (snaps) => {
        const floors = new Map(
          partitions.map((p, i) => {
            const s = snaps[i] ?? null;
            return [partitionKey(p), s === null ? null : floor(s.seq, s.answer, s.logSeqFrom)] as const;
          }),
        );
        const logFloor = logFloorOf(floors);
        const applied = appliedFloorsOf(floors, P);
        for (const [i, p] of partitions.entries()) {
          const s = snaps[i] ?? null;
          // SLUICE_LOG below logFloor goes: every partition's snapshot reads from its logSeqFrom on, and the
          // record before it (the partition's last when it was taken) stays.
          expect(logFloor).toBeLessThanOrEqual(Math.max(1, (s?.logSeqFrom ?? 1) - 1));
          const mine = applied.filter((a) => a.index === p.index);
          const main = mine.find((a) => a.input === p.stage)?.streamSeqLastApplied();
          expect(main).toBe(s?.seq ?? 0);
          if (p.stage === "order")
            expect(mine.find((a) => a.input === "answer")?.streamSeqLastApplied()).toBe(s?.answer ?? 0);
        }
        if (snaps.every((s) => s !== null))
          expect(logFloor).toBe(Math.max(1, Math.min(...snaps.map((s) => s.logSeqFrom)) - 1));
        expect(logFloor).toBeGreaterThanOrEqual(1);
      }),
    );
  });
});

/** A JetStream manager that answers stream and consumer infos and records purges. */
function fakeJsm(lastSeq: number) {
  const purges: Array<{ stream: string; seq: number }> = [];
  const jsm = {
    streams: {
      info: async () => ({ state: { last_seq: lastSeq, bytes: 1000 }, config: { max_bytes: 1_000_000 } }),
      purge: async (stream: string, o: { seq: number }) => {
        purges.push({ stream, seq: o.seq });
        return { purged: 1 };
      },
    },
    consumers: {
      info: async () => ({ num_pending: 3, num_ack_pending: 0, ack_floor: { stream_seq: 0 } }),
    },
  };
  return { jsm: jsm as unknown as JetStreamManager, purges };
}

describe("retention with cluster floors", () => {
  const config = loadConfig({
    env: {},
    file: "config/sluice.toml",
    overrides: { streams: { partitionCount: P, appliedHistoryMs: 0 } },
  });

  test("a node without floors sends no purge; the retention node purges to the lowest snapshot", async () => {
    let floors = new Map<string, Floor | null>();
    const cluster = { refresh: async () => undefined, logFloor: () => logFloorOf(floors) };
    const { jsm, purges } = fakeJsm(500);
    const retention = new Retention(
      jsm,
      config,
      () => appliedFloorsOf(floors, P),
      testLog,
      () => 0,
      () => undefined,
      cluster,
    );
    await retention.runOnce();
    expect(purges).toEqual([]);

    floors = new Map(
      partitions.map((p) => [partitionKey(p), floor(100 + p.index, 50 + p.index, 200 + p.index)]),
    );
    await retention.runOnce();
    expect(purges).toEqual([
      { stream: streamNames.ledger, seq: 101 },
      { stream: streamNames.order, seq: 101 },
      { stream: streamNames.answer, seq: 51 },
      { stream: "SLUICE_LOG", seq: 199 }, // ledger.0's last record before its snapshot stays
    ]);
  });
});
