import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import type { JsMsg } from "@nats-io/jetstream";
import type { Order, OrderLine } from "../../src/domain/orders/index.ts";
import { Instrumentation } from "../../src/instrumentation/index.ts";
import { OrderApplier, orderTables } from "../../src/stages/order/applier.ts";
import { LedgerReadView } from "../../src/stages/order/routing-view.ts";
import { PartitionStore } from "../../src/store/index.ts";
import { appliedSeqs, type InboundMessage, toInbound } from "../../src/stream/partition-runner.ts";
import { orderKey, orderPartition, streamNames, subjects } from "../../src/stream/subjects.ts";
import { tempDir, waitFor } from "../helpers/index.ts";
import { Lifecycle, skuIn } from "../helpers/lifecycle.ts";

// SLA deadlines fire in stream time: a deadline fires once the partition has applied everything stamped
// before it, never by the process clock ahead of a backlog. Real nats-server, real LMDB, a real Sluice.

const line = (o: Order, id: string) => o.lines.find((l) => l.lineId === id) as OrderLine;
const released = (o: Order) => o.lines.every((l) => l.state === "released");

let h: Lifecycle;

/** An order id of channel "web" (served by the "*" rules) whose order lands in order partition `p`. */
function orderIdIn(p: number, prefix: string): string {
  for (let n = 0; ; n++)
    if (orderPartition(orderKey("web", `${prefix}-${n}`), h.P) === p) return `${prefix}-${n}`;
}

beforeAll(async () => {
  h = await Lifecycle.start(
    "stream-time",
    [
      { id: "*" },
      { id: "sla", slaShipWithinMs: 3000, slaAction: "cancel" },
      { id: "sla-rr", slaShipWithinMs: 3000, slaAction: "reroute", slaRerouteGraceMs: 60_000 },
    ],
    // A tick far shorter than the router's backlog takes: the old process-clock tick fired first.
    { orders: { timerTickMs: 20 } },
  );
});

afterAll(async () => {
  await h?.dispose();
});

async function receive(list: Array<[string, string, number]>) {
  for (const [sku, warehouse, qty] of list) await h.receive(sku, warehouse, qty);
  for (const [sku, warehouse, qty] of list) await h.waitPosition(sku, warehouse, { onHand: qty });
}

/** Every message one of the order partition's streams holds, in order, up to `lastSeq`. */
async function streamOf(stream: string, filter: string, lastSeq: number): Promise<JsMsg[]> {
  if (lastSeq === 0) return [];
  const consumer = await h.producer.js.consumers.get(stream, { filter_subjects: filter });
  const out: JsMsg[] = [];
  const messages = await consumer.consume();
  const reading = (async () => {
    for await (const m of messages) {
      out.push(m);
      if (m.seq >= lastSeq) break;
    }
  })();
  await waitFor(() => out.at(-1)?.seq === lastSeq, `${stream} ${filter} read to ${lastSeq}`);
  messages.stop();
  await reading;
  return out;
}

/**
 * What a replay reads: the partition's intake and answer streams merged in stream time (answers first on a
 * tie). Live, without a backlog, the partition applied them in that order; under a backlog it takes answers
 * ahead of older intake, and its state follows the order it applied (committed with both sequences).
 */
async function partitionStream(p: number, intakeSeq: number, answerSeq: number): Promise<InboundMessage[]> {
  const answers = (
    await streamOf(streamNames.answer, subjects.inputPartitionFilter("answer", p), answerSeq)
  ).map((m) => toInbound(streamNames.answer, m));
  const intake = (
    await streamOf(streamNames.order, subjects.inputPartitionFilter("order", p), intakeSeq)
  ).map((m) => toInbound(streamNames.order, m));
  const merged: InboundMessage[] = [];
  let a = 0;
  let i = 0;
  while (a < answers.length || i < intake.length) {
    const next = answers[a];
    const other = intake[i];
    if (next !== undefined && (other === undefined || next.atMs <= other.atMs)) {
      merged.push(next);
      a++;
    } else {
      merged.push(other as InboundMessage);
      i++;
    }
  }
  return merged;
}

/** The stream applied again into a fresh store, `batchCount` messages per transaction: the orders it ends with. */
async function replay(p: number, messages: InboundMessage[], batchCount: number): Promise<Order[]> {
  const c = h.config;
  const dir = tempDir(`replay-${p}`);
  const store = PartitionStore.open(
    dir,
    { stage: "order", partition: p, partitionCount: c.streams.partitionCount },
    { mapBytesMax: 64 * 1024 * 1024, tables: orderTables, routedCountMax: c.store.routedCountMax },
  );
  try {
    const network = h.sluice.network;
    if (network === null) throw new Error("no rule set");
    // Stock is ample everywhere and routing weighs neither stock nor load: routing picks as it did live.
    const routing = new LedgerReadView(
      () => h.sluice.ledger.map((l) => l.store),
      c.streams.partitionCount,
      c.routing.loadRefreshMs,
    );
    const applier = new OrderApplier(p, c, store, () => network, new Instrumentation(), routing);
    for (let i = 0; i < messages.length; i += batchCount) {
      const batch = messages.slice(i, i + batchCount);
      const write = applier.apply(batch);
      await store.commit({ ...write, ...appliedSeqs(streamNames.order, batch) });
    }
    return [...store.rangeValues<Order>("orders")];
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** An order's state without what depends on batch boundaries (versions) or on live stock (scores). */
const stateOf = (o: Order) => ({
  ...o,
  version: 0,
  lines: o.lines.map((l) => ({ ...l, decision: null })),
});

describe("SLA deadlines in stream time", () => {
  test("a shipment waiting in the stream when its ship-by passed wins: shipped, not cancelled or re-routed", async () => {
    const s1 = skuIn("ST-A", 1);
    const s2 = skuIn("ST-B", 2);
    await receive([
      [s1, "w1", 10],
      [s2, "w1", 10],
      [s2, "w2", 10],
    ]);
    await h.order("sla", "ST-1", [{ lineId: "1", sku: s1, qty: 3 }]);
    await h.order("sla-rr", "ST-2", [{ lineId: "1", sku: s2, qty: 2 }]);
    const a = await h.waitOrder("sla", "ST-1", released, "released");
    const b = await h.waitOrder("sla-rr", "ST-2", released, "released");
    expect(line(b, "1").warehouse).toBe("w1");
    expect(Date.now()).toBeLessThan(a.shipByMs); // both shipped in time, as the stream will show

    await h.sluice.stop();
    // As after an outage: the router has a backlog, and the shipments wait behind it in the stream.
    for (let i = 0; i < 300; i++) await h.producer.publishJson(`sluice.in.nothing.${i}`, {});
    await h.shipped("w1", "sla", "ST-1", "st-s1", [{ lineId: "1", qty: 3 }]);
    await h.shipped("w1", "sla-rr", "ST-2", "st-s2", [{ lineId: "1", qty: 2 }]);
    expect(Date.now()).toBeLessThan(Math.min(a.shipByMs, b.shipByMs)); // the shipments are stamped in time
    const deadline = Math.max(a.shipByMs, b.shipByMs);
    await Bun.sleep(Math.max(0, deadline - Date.now()) + 300); // both ship-by times pass while it is down
    // Inputs stamped after the deadlines wait in the order partitions' own streams, ahead of the shipments
    // the router will copy there: their stamps must not fire the deadlines either.
    const late: Array<[string, number]> = [
      ["ST-late-a", orderPartition(orderKey("sla", "ST-1"), h.P)],
      ["ST-late-b", orderPartition(orderKey("sla-rr", "ST-2"), h.P)],
    ];
    for (const [prefix, p] of late) {
      await h.order("web", orderIdIn(p, prefix), [{ lineId: "1", sku: s1, qty: 1 }]);
    }
    await h.startSluice();

    const one = await h.waitOrder("sla", "ST-1", (o) => line(o, "1").state !== "released", "settled");
    expect(one.status).toBe("shipped");
    expect(one.lines.map((l) => [l.state, l.shippedQty, l.cancelCause])).toEqual([["shipped", 3, null]]);
    const two = await h.waitOrder("sla-rr", "ST-2", (o) => line(o, "1").state !== "released", "settled");
    expect(two.status).toBe("shipped");
    expect(two.slaRerouted).toBe(false);
    expect(two.lines.map((l) => [l.state, l.warehouse, l.shippedQty])).toEqual([["shipped", "w1", 2]]);
    // Stock left the warehouse once, where it was reserved: no phantom stock, no second reservation.
    await h.waitPosition(s1, "w1", { onHand: 7, reserved: 2, available: 5 }); // the two late orders hold 2
    await h.waitPosition(s2, "w1", { onHand: 8, reserved: 0, available: 8 });
    await h.waitPosition(s2, "w2", { onHand: 10, reserved: 0, available: 10 });
    await h.quiesce();
    for (const o of [one, two]) {
      expect(o.history.map((e) => e.event)).not.toContain("sla_cancelled");
      expect(o.history.map((e) => e.event)).not.toContain("sla_rerouted");
    }
    expect(h.fulfilmentsOf("sla", "ST-1").map((f) => f.type)).toEqual(["fulfil"]);
    expect(h.fulfilmentsOf("sla-rr", "ST-2").map((f) => f.type)).toEqual(["fulfil"]);
    expect(h.deadLetters().filter((d) => d.body.includes('"ST-'))).toEqual([]);
    await h.expectLedgerConsistent();
  }, 20_000);

  test("a deadline that passes while nothing flows fires through a clock message, only while one is due", async () => {
    const s1 = skuIn("ST-C", 3);
    await receive([[s1, "w1", 10]]);
    await h.order("sla", "ST-3", [{ lineId: "1", sku: s1, qty: 4 }]);
    // Already past its ship-by when it arrives: due at once, cancelled by the next stream time.
    await h.order("*", "ST-4", [{ lineId: "1", sku: s1, qty: 1 }], {
      shipBy: new Date(Date.now() - 60_000).toISOString(),
    });
    const three = await h.waitOrder("sla", "ST-3", (o) => o.status === "cancelled", "SLA cancel", 10_000);
    expect(line(three, "1").cancelCause).toBe("sla");
    const fired = three.history.find((e) => e.event === "sla_cancelled");
    expect(fired?.atMs).toBeGreaterThanOrEqual(three.shipByMs);
    const four = await h.waitOrder("*", "ST-4", (o) => o.status === "cancelled", "SLA cancel", 10_000);
    expect(line(four, "1").cancelCause).toBe("sla");
    await h.waitPosition(s1, "w1", { onHand: 10, reserved: 0, available: 10 });

    // The clock message is in the partition's own stream; with nothing due, no more are published.
    const p = orderPartition(orderKey("sla", "ST-3"), h.P);
    const jsm = await h.producer.jsm();
    const clockMessages = async () =>
      (await jsm.streams.info(streamNames.answer, { subjects_filter: "sluice.answer.*.clock" })).state
        .subjects ?? {};
    expect((await clockMessages())[subjects.orderClock(p)]).toBeGreaterThanOrEqual(1);
    await h.quiesce();
    const before = await clockMessages();
    await Bun.sleep(500); // 25 ticks of 20 ms
    expect(await clockMessages()).toEqual(before);

    // A clock message from anyone, with any body, is harmless: stream time moves on, nothing else.
    await h.producer.js.publish(subjects.orderClock(p), "not a clock");
    await h.quiesce();
    expect(h.deadLetters().filter((d) => d.sourceSubject.endsWith(".clock"))).toEqual([]);
    expect(h.fatal).toEqual([]);
  }, 20_000);

  test("the order stream replayed into a fresh data dir gives the same order states, whatever the batches", async () => {
    const s2 = skuIn("ST-D", 0);
    await receive([
      [s2, "w1", 50],
      [s2, "w2", 50],
    ]);
    // Re-routed by its deadline, then shipped from the new warehouse; one shipped in time; one cancelled.
    await h.order("sla-rr", "ST-5", [{ lineId: "1", sku: s2, qty: 2 }]);
    await h.order("sla", "ST-6", [{ lineId: "1", sku: s2, qty: 1 }]);
    await h.order("sla", "ST-7", [{ lineId: "1", sku: s2, qty: 1 }]);
    await h.waitOrder("sla", "ST-6", released, "released");
    await h.shipped("w1", "sla", "ST-6", "st-s6", [{ lineId: "1", qty: 1 }]);
    const rerouted = await h.waitOrder(
      "sla-rr",
      "ST-5",
      (o) => o.slaRerouted && released(o),
      "re-routed",
      10_000,
    );
    expect(line(rerouted, "1").warehouse).toBe("w2");
    await h.shipped("w2", "sla-rr", "ST-5", "st-s5", [{ lineId: "1", qty: 2 }]);
    await h.waitOrder("sla-rr", "ST-5", (o) => o.status === "shipped", "shipped from w2");
    await h.waitOrder("sla", "ST-7", (o) => o.status === "cancelled", "SLA cancel", 10_000);
    await h.quiesce();

    let compared = 0;
    for (const { index: p, store } of h.sluice.orders) {
      const live = [...store.rangeValues<Order>("orders")].map(stateOf);
      const messages = await partitionStream(
        p,
        store.streamSeqLastApplied(),
        store.streamSeqLastApplied(streamNames.answer),
      );
      for (const batchCount of [1, 7, 500]) {
        expect((await replay(p, messages, batchCount)).map(stateOf)).toEqual(live);
      }
      compared += live.length;
    }
    expect(compared).toBeGreaterThanOrEqual(7);
  }, 30_000);
});
