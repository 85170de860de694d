import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Rng } from "../../bench/harness/prng.ts";
import type { LineRequest, LineResult } from "../../src/domain/ledger/index.ts";
import { parseNetwork } from "../../src/domain/network/index.ts";
import { Instrumentation } from "../../src/instrumentation/index.ts";
import { Envelopes, openEnvelope } from "../../src/stages/envelopes.ts";
import { OrderApplier, orderTables } from "../../src/stages/order/applier.ts";
import { type OutboxItem, PartitionStore } from "../../src/store/index.ts";
import { appliedPosition, appliedSeqs, type InboundMessage } from "../../src/stream/partition-runner.ts";
import { streamNames, subjects } from "../../src/stream/subjects.ts";
import { testConfig } from "../helpers/index.ts";

// The order partition's intake gate (answers first) over real LMDB: reservations sent and not answered close
// it at orders.inFlightLinesMax; answers open it again; an answer that never comes stops counting after
// orders.answerWaitMsMax. The runner takes at most intakeRoom() new intake messages per batch.

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const network = (() => {
  const parsed = parseNetwork({ warehouses: [{ id: "w1" }], channels: [{ id: "*" }] }, "t-1");
  if (!parsed.ok) throw new Error(parsed.detail);
  return parsed.value;
})();

function setup(inFlightLinesMax: number, answerWaitMsMax: number) {
  const dir = mkdtempSync(join(tmpdir(), "sluice-gate-"));
  dirs.push(dir);
  const config = testConfig("nats://127.0.0.1:1", dir, {
    streams: { partitionCount: 1 },
    orders: { inFlightLinesMax, answerWaitMsMax },
  });
  const store = PartitionStore.open(
    dir,
    { stage: "order", partition: 0, partitionCount: 1 },
    { mapBytesMax: 64 * 1024 * 1024, tables: orderTables },
  );
  let nowMs = 1_900_000_000_000;
  const clock = { now: () => nowMs, advance: (ms: number) => (nowMs += ms) };
  const applier = new OrderApplier(
    0,
    config,
    store,
    () => network,
    new Instrumentation(),
    undefined,
    clock.now,
  );
  const seqs = new Map<string, number>();
  const message = (stream: string, subject: string, data: Uint8Array): InboundMessage => {
    const seq = (seqs.get(stream) ?? 0) + 1;
    seqs.set(stream, seq);
    return { stream, seq, subject, data, headers: undefined, atMs: clock.now() };
  };
  /** Applies and commits one batch, as the runner does; returns the reservation requests it sent. */
  const batch = async (
    messages: InboundMessage[],
  ): Promise<Array<Extract<LineRequest, { kind: "reserve" }>>> => {
    const position = appliedPosition(store, messages);
    const write = applier.apply(messages);
    await store.commit({ ...write, ...appliedSeqs(streamNames.order, messages) });
    expect(appliedPosition(store, [])).toBe(position);
    return reservesIn(write.outbox);
  };
  const order = (id: string, lines: number) =>
    message(
      streamNames.order,
      subjects.orderPartitioned(0, "order", "web", id),
      new TextEncoder().encode(
        JSON.stringify({
          lines: Array.from({ length: lines }, (_, i) => ({
            lineId: `${i + 1}`,
            sku: `S-${i}`,
            qty: 1,
            price: 1,
          })),
        }),
      ),
    );
  const answers = (requests: Array<Extract<LineRequest, { kind: "reserve" }>>) => {
    const envelopes = new Envelopes(10_000, 1024 * 1024);
    for (const r of requests) {
      const result: LineResult = {
        kind: "reserved",
        ref: r.ref,
        sku: r.sku,
        attempt: r.attempt,
        warehouse: "w1",
        qty: r.qty,
      };
      envelopes.add(subjects.orderResults(0, 0), result);
    }
    return envelopes.drain().map((e) => message(streamNames.answer, e.subject, e.data));
  };
  return { store, applier, clock, batch, order, answers };
}

function reservesIn(outbox: readonly OutboxItem[]): Array<Extract<LineRequest, { kind: "reserve" }>> {
  const out: Array<Extract<LineRequest, { kind: "reserve" }>> = [];
  for (const item of outbox) {
    if (!item.subject.startsWith("sluice.ledger.")) continue;
    const opened = openEnvelope<LineRequest>(item.data, "cmd", () => null);
    if (!opened.ok) throw new Error(opened.detail);
    for (const { item: r } of opened.items) if (r.kind === "reserve") out.push(r);
  }
  return out;
}

test("reservations close the gate at the limit; answers open it; the answer stream's sequence is committed", async () => {
  const g = setup(5, 10_000);
  expect(g.applier.intakeRoom(g.clock.now())).toBe(5);
  const sent = await g.batch([g.order("o1", 2), g.order("o2", 2)]);
  expect(sent).toHaveLength(4);
  expect(g.applier.inFlightLines).toBe(4);
  expect(g.applier.intakeRoom(g.clock.now())).toBe(1);
  // One message may carry several lines: the count passes the limit by at most one order's lines.
  await g.batch([g.order("o3", 3)]);
  expect(g.applier.intakeRoom(g.clock.now())).toBe(0);
  await g.batch(g.answers(sent));
  expect(g.applier.inFlightLines).toBe(3);
  expect(g.applier.intakeRoom(g.clock.now())).toBe(2);
  expect(g.store.streamSeqLastApplied()).toBe(3);
  expect(g.store.streamSeqLastApplied(streamNames.answer)).toBe(1);
  expect(g.store.inputStreams()).toEqual([{ stream: streamNames.answer, seq: 1 }]);
  await g.store.close();
});

test("an answer that never comes stops holding the gate after orders.answerWaitMsMax", async () => {
  const g = setup(2, 1_000);
  await g.batch([g.order("o1", 2)]);
  expect(g.applier.intakeRoom(g.clock.now())).toBe(0);
  g.clock.advance(999);
  expect(g.applier.intakeRoom(g.clock.now())).toBe(0);
  g.clock.advance(2);
  expect(g.applier.intakeRoom(g.clock.now())).toBe(2);
  expect(g.applier.inFlightLines).toBe(0);
  await g.store.close();
});

test("generated traffic: the gate's count is exactly the reservations sent and not answered (or expired)", async () => {
  const rng = new Rng(20261203);
  const g = setup(1_000_000, 5_000);
  const open = new Map<string, { r: Extract<LineRequest, { kind: "reserve" }>; sentAtMs: number }>();
  let next = 0;
  for (let round = 0; round < 200; round++) {
    const orders = Array.from({ length: rng.int(4) }, () => g.order(`g${next++}`, 1 + rng.int(3)));
    const pending = [...open.values()];
    const answered = pending.filter(() => rng.chance(0.4)).map((p) => p.r);
    for (const r of answered) open.delete(`${r.ref.orderKey}/${r.ref.lineId}/${r.attempt}`);
    const sent = await g.batch([...g.answers(answered), ...orders]);
    for (const r of sent)
      open.set(`${r.ref.orderKey}/${r.ref.lineId}/${r.attempt}`, { r, sentAtMs: g.clock.now() });
    g.clock.advance(rng.int(200));
    for (const [key, p] of open) if (p.sentAtMs <= g.clock.now() - 5_000) open.delete(key);
    g.applier.intakeRoom(g.clock.now());
    expect(g.applier.inFlightLines).toBe(open.size);
  }
  await g.store.close();
});
