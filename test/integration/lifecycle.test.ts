import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Order } from "../../src/domain/orders/index.ts";
import type { FulfilmentItem, OrderLine } from "../../src/domain/orders/types.ts";
import { orderKey, orderPartition, skuPartition, subjects } from "../../src/stream/subjects.ts";
import { getJson, httpBase, waitFor } from "../helpers/index.ts";
import {
  expectIncreasing,
  Lifecycle,
  type Line,
  settled,
  skuIn,
  skusAcrossPartitions,
} from "../helpers/lifecycle.ts";

// Every order-lifecycle path over a real nats-server and real LMDB: inputs are published as a channel or a
// WMS would, outputs are read from SLUICE_OUT / SLUICE_DLQ, state from the HTTP API.

const P = 4;
const line = (o: Order, id: string) => o.lines.find((l) => l.lineId === id) as OrderLine;
const byId = <T extends { lineId: string }>(lines: T[]): T[] =>
  [...lines].sort((a, b) => (a.lineId < b.lineId ? -1 : a.lineId > b.lineId ? 1 : 0));
const released = (o: Order) => o.lines.every((l) => l.state === "released");

/** Stock for fresh SKUs, then waits until every receipt is applied. */
async function receive(h: Lifecycle, list: Array<[string, string, number]>) {
  for (const [sku, warehouse, qty] of list) await h.receive(sku, warehouse, qty);
  for (const [sku, warehouse, qty] of list) await h.waitPosition(sku, warehouse, { onHand: qty });
}

/** Fulfilment items of every (order, warehouse) carry strictly increasing versions, so a WMS can drop stale ones. */
function expectFulfilVersionsIncrease(items: FulfilmentItem[]) {
  const byKey = new Map<string, number[]>();
  for (const f of items) {
    const k = `${f.orderKey} @ ${f.warehouse}`;
    byKey.set(k, [...(byKey.get(k) ?? []), f.version]);
  }
  for (const [k, versions] of byKey) expectIncreasing(versions, `fulfilment items of ${k}`);
}

describe("order lifecycle over a real nats-server and LMDB", () => {
  let h: Lifecycle;

  beforeAll(async () => {
    h = await Lifecycle.start("lifecycle", [
      { id: "*" },
      { id: "complete", split: "ship_complete" },
      { id: "complete-bo", split: "ship_complete", backorder: true },
      { id: "single", maxShipments: 1 },
    ]);
  });

  afterAll(async () => {
    await h?.dispose();
  });

  test("a multi-line order over several ledger partitions is allocated and released to its warehouses", async () => {
    const [a, b, c] = skusAcrossPartitions("ML", 3) as [string, string, string];
    expect(new Set([a, b, c].map((s) => skuPartition(s, P))).size).toBe(3);
    await receive(h, [
      [a, "w1", 10],
      [b, "w2", 10],
      [c, "w1", 5],
      [c, "w3", 5],
    ]);
    await h.order("shop", "ML-1", [
      { lineId: "1", sku: a, qty: 2 },
      { lineId: "2", sku: b, qty: 3 },
      { lineId: "3", sku: c, qty: 1 },
    ]);
    const o = await h.waitOrder("shop", "ML-1", (x) => x.status === "allocated", "allocated");
    expect(o.lines.map((l) => [l.lineId, l.state, l.warehouse])).toEqual([
      ["1", "released", "w1"],
      ["2", "released", "w2"],
      ["3", "released", "w1"],
    ]);
    expect(await h.position(a, "w1")).toMatchObject({ onHand: 10, reserved: 2, available: 8 });
    expect(await h.position(b, "w2")).toMatchObject({ onHand: 10, reserved: 3, available: 7 });
    expect(await h.position(c, "w1")).toMatchObject({ onHand: 5, reserved: 1, available: 4 });
    expect(await h.position(c, "w3")).toMatchObject({ onHand: 5, reserved: 0, available: 5 });
    // Each SKU lives in its own partition's store, and only there.
    for (const sku of [a, b, c]) {
      expect((await h.getStock(sku)).partition).toBe(skuPartition(sku, P));
      for (let p = 0; p < P; p++) {
        expect(h.sluice.ledger[p]?.store.get("skus", sku) !== undefined).toBe(p === skuPartition(sku, P));
      }
    }

    const w1 = await waitFor(
      () => (h.fulfilments("w1", "ML-1").length > 0 ? h.fulfilments("w1", "ML-1") : null),
      "w1 fulfilment",
    );
    const w2 = await waitFor(
      () => (h.fulfilments("w2", "ML-1").length > 0 ? h.fulfilments("w2", "ML-1") : null),
      "w2 fulfilment",
    );
    expect(w1).toHaveLength(1);
    expect(w1[0]).toMatchObject({
      type: "fulfil",
      orderKey: orderKey("shop", "ML-1"),
      channel: "shop",
      orderId: "ML-1",
      warehouse: "w1",
      shipByMs: o.shipByMs,
    });
    // Each line carries the summary of its routing decision: the rule-set version, the reason, the shipments.
    const routing = { rules: "kv-1", reason: "best_score", shipments: 2 };
    expect(byId(w1[0]?.lines ?? [])).toMatchObject([
      { lineId: "1", sku: a, qty: 2, routing },
      { lineId: "3", sku: c, qty: 1, routing },
    ]);
    expect(w2).toHaveLength(1);
    expect(w2[0]?.lines).toMatchObject([{ lineId: "2", sku: b, qty: 3, routing }]);

    const statuses = await waitFor(() => {
      const s = h.statuses("shop", "ML-1");
      return s.at(-1)?.status === "allocated" ? s : null;
    }, "the allocated status on sluice.out.order.shop");
    expect(statuses[0]).toMatchObject({ event: "created", status: "pending", version: 1 });
    expectIncreasing(
      statuses.map((s) => s.version),
      "statuses of ML-1",
    );
    expect(statuses.at(-1)?.version).toBe(o.version);
    expect(statuses.at(-1)?.lines.map((l) => l.state)).toEqual(["released", "released", "released"]);
    await h.quiesce();
    expect(h.fulfilments("w3", "ML-1")).toEqual([]);
    await h.expectLedgerConsistent();
  });

  test("ship complete: a line that cannot be reserved releases every reserved line; rejected or backordered", async () => {
    const [x, y] = skusAcrossPartitions("SC", 2) as [string, string];
    await receive(h, [
      [x, "w1", 10],
      [y, "w2", 1],
    ]);
    const lines: Line[] = [
      { lineId: "1", sku: x, qty: 2 },
      { lineId: "2", sku: y, qty: 3 },
    ];
    await h.order("complete", "SC-1", lines);
    const rejected = await h.waitOrder("complete", "SC-1", settled, "settled");
    expect(rejected.status).toBe("rejected");
    expect(rejected.lines.map((l) => [l.state, l.warehouse, l.refusal])).toEqual([
      ["rejected", null, "ship_complete"],
      ["rejected", null, "insufficient_available"],
    ]);
    await h.waitPosition(x, "w1", { onHand: 10, reserved: 0, available: 10 });
    expect((await h.entries(x)).map((e) => [e.type, e.delta, e.ref])).toEqual([
      ["received", { onHand: 10 }, null],
      ["reserved", { reserved: 2 }, `${orderKey("complete", "SC-1")}/1`],
      ["released", { reserved: -2 }, `${orderKey("complete", "SC-1")}/1`],
    ]);

    await h.order("complete-bo", "SC-2", lines);
    const backordered = await h.waitOrder("complete-bo", "SC-2", settled, "settled");
    expect(backordered.status).toBe("backordered");
    expect(backordered.lines.map((l) => [l.state, l.warehouse, l.refusal])).toEqual([
      ["backordered", null, "ship_complete"],
      ["backordered", null, "insufficient_available"],
    ]);
    await h.waitPosition(x, "w1", { reserved: 0, available: 10 });

    // Control: every line reservable ⇒ the order is allocated whole.
    await h.order("complete", "SC-3", [
      { lineId: "1", sku: x, qty: 2 },
      { lineId: "2", sku: y, qty: 1 },
    ]);
    const whole = await h.waitOrder("complete", "SC-3", settled, "settled");
    expect(whole.status).toBe("allocated");
    expect(whole.lines.map((l) => [l.state, l.warehouse])).toEqual([
      ["released", "w1"],
      ["released", "w2"],
    ]);
    await h.quiesce();
    expect(h.fulfilmentsOf("complete", "SC-1")).toEqual([]);
    expect(h.fulfilmentsOf("complete-bo", "SC-2")).toEqual([]);
    expect(await h.position(x, "w1")).toMatchObject({ onHand: 10, reserved: 2 });
    expect(await h.position(y, "w2")).toMatchObject({ onHand: 1, reserved: 1, available: 0 });
    await h.expectLedgerConsistent();
  });

  test("max shipments 1 keeps one warehouse (channel rule and order override)", async () => {
    const [m1, m2, m3] = skusAcrossPartitions("MS", 3) as [string, string, string];
    await receive(h, [
      [m1, "w1", 5],
      [m2, "w2", 5],
      [m3, "w1", 5],
    ]);
    const lines: Line[] = [
      { lineId: "1", sku: m1, qty: 1 },
      { lineId: "2", sku: m2, qty: 1 },
      { lineId: "3", sku: m3, qty: 1 },
    ];
    await h.order("single", "MS-1", lines);
    const o = await h.waitOrder("single", "MS-1", settled, "settled");
    expect(o.status).toBe("partially_allocated");
    expect(o.lines.map((l) => [l.state, l.warehouse, l.refusal])).toEqual([
      ["released", "w1", null],
      ["rejected", null, "max_shipments"],
      ["released", "w1", null],
    ]);
    await h.waitPosition(m2, "w2", { reserved: 0, available: 5 });
    expect(new Set(o.lines.filter((l) => l.state === "released").map((l) => l.warehouse))).toEqual(
      new Set(["w1"]),
    );

    await h.order("shop", "MS-2", lines, { split: { maxShipments: 1, backorder: true } });
    const bo = await h.waitOrder("shop", "MS-2", settled, "settled");
    expect(bo.status).toBe("partially_allocated");
    expect(bo.lines.map((l) => [l.state, l.warehouse])).toEqual([
      ["released", "w1"],
      ["backordered", null],
      ["released", "w1"],
    ]);
    await h.quiesce();
    expect(await h.position(m2, "w2")).toMatchObject({ reserved: 0, available: 5 });
    expect(await h.position(m1, "w1")).toMatchObject({ reserved: 2 });
    for (const id of ["MS-1", "MS-2"]) {
      const channel = id === "MS-1" ? "single" : "shop";
      const sent = h.fulfilmentsOf(channel, id);
      expect(sent.map((f) => [f.type, f.warehouse, byId(f.lines).map((l) => l.lineId)])).toEqual([
        ["fulfil", "w1", ["1", "3"]],
      ]);
    }
    await h.expectLedgerConsistent();
  });

  test("max shipments 1 still holds after a warehouse rejects a line", async () => {
    const [m1, m3] = skusAcrossPartitions("MR", 2) as [string, string];
    await receive(h, [
      [m1, "w1", 5],
      [m1, "w2", 5],
      [m3, "w1", 5],
    ]);
    await h.order("single", "MR-1", [
      { lineId: "1", sku: m1, qty: 1 },
      { lineId: "2", sku: m3, qty: 1 },
    ]);
    await h.waitOrder("single", "MR-1", (o) => o.status === "allocated", "allocated at w1");
    await h.rejected("w1", "single", "MR-1", ["1"]);
    await h.waitOrder(
      "single",
      "MR-1",
      (o) => line(o, "1").excluded.includes("w1"),
      "w1's rejection applied",
    );
    await h.quiesce();
    const o = (await h.getOrder("single", "MR-1")) as Order;
    // Whatever Sluice does with the rejected line (cancel it, or move the whole order), the order must not
    // end up shipping from two warehouses.
    const live = o.lines.filter((l) => l.state === "released" || l.state === "allocated");
    expect(new Set(live.map((l) => l.warehouse)).size).toBeLessThanOrEqual(1);
    await h.expectLedgerConsistent();
  });

  test("ship complete still holds after a warehouse rejects a line that cannot be re-routed", async () => {
    const [a, b] = skusAcrossPartitions("SR", 2) as [string, string];
    await receive(h, [
      [a, "w1", 5],
      [b, "w1", 5],
    ]);
    await h.order("complete", "SR-1", [
      { lineId: "1", sku: a, qty: 1 },
      { lineId: "2", sku: b, qty: 1 },
    ]);
    await h.waitOrder("complete", "SR-1", (o) => o.status === "allocated", "allocated at w1");
    // w1 cannot pick line 2 and no other warehouse has b: the order cannot ship complete any more.
    await h.rejected("w1", "complete", "SR-1", ["2"]);
    await h.waitOrder(
      "complete",
      "SR-1",
      (o) => line(o, "2").state !== "received" && line(o, "2").state !== "released",
      "line 2 settled",
    );
    await h.quiesce();
    const o = (await h.getOrder("complete", "SR-1")) as Order;
    expect(line(o, "2").state).toBe("cancelled");
    // All lines or none: line 1 must not ship alone; its stock is released and w1 is told to stop.
    expect(o.lines.filter((l) => l.state === "released" || l.state === "allocated")).toEqual([]);
    expect(await h.position(a, "w1")).toMatchObject({ reserved: 0, available: 5 });
    expect(
      h
        .fulfilmentsOf("complete", "SR-1")
        .some((f) => f.type === "cancel" && f.lines.some((l) => l.lineId === "1")),
    ).toBe(true);
    await h.expectLedgerConsistent();
  });

  test("customer cancel of a whole order before shipment releases stock and tells the warehouses", async () => {
    const [k1, k2] = skusAcrossPartitions("CX", 2) as [string, string];
    await receive(h, [
      [k1, "w1", 10],
      [k2, "w2", 10],
    ]);
    await h.order("shop", "CX-1", [
      { lineId: "1", sku: k1, qty: 2 },
      { lineId: "2", sku: k2, qty: 3 },
    ]);
    await h.waitOrder("shop", "CX-1", released, "released");
    await h.waitPosition(k2, "w2", { reserved: 3 });
    await h.cancel("shop", "CX-1");
    const o = await h.waitOrder("shop", "CX-1", (x) => x.status === "cancelled", "cancelled");
    expect(o.lines.map((l) => [l.state, l.cancelCause])).toEqual([
      ["cancelled", "customer"],
      ["cancelled", "customer"],
    ]);
    await h.waitPosition(k1, "w1", { onHand: 10, reserved: 0, available: 10 });
    await h.waitPosition(k2, "w2", { onHand: 10, reserved: 0, available: 10 });
    // Each ledger entry says why: the reservation came from the order, its release from the customer's cancel.
    const entries = await getJson(`${httpBase(h.sluice)}/v1/stock/${k1}/entries`);
    expect(entries.body.entries.map((e: { type: string; cause: string }) => [e.type, e.cause])).toEqual([
      ["received", "received"],
      ["reserved", "order"],
      ["released", "cancel:customer"],
    ]);
    const sent = await waitFor(() => {
      const f = h.fulfilmentsOf("shop", "CX-1");
      return f.filter((x) => x.type === "cancel").length === 2 ? f : null;
    }, "two fulfilment cancels");
    // A request carries the routing summary of each line; a cancel names the lines only.
    const plain = (lines: Array<{ lineId: string; sku: string; qty: number }>) =>
      lines.map(({ lineId, sku, qty }) => ({ lineId, sku, qty }));
    expect(sent.filter((f) => f.warehouse === "w1").map((f) => [f.type, plain(f.lines)])).toEqual([
      ["fulfil", [{ lineId: "1", sku: k1, qty: 2 }]],
      ["cancel", [{ lineId: "1", sku: k1, qty: 2 }]],
    ]);
    expect(sent.filter((f) => f.warehouse === "w2").map((f) => [f.type, plain(f.lines)])).toEqual([
      ["fulfil", [{ lineId: "2", sku: k2, qty: 3 }]],
      ["cancel", [{ lineId: "2", sku: k2, qty: 3 }]],
    ]);
    expect(
      sent.filter((f) => f.type === "cancel").every((f) => f.lines.every((l) => !("routing" in l))),
    ).toBe(true);
    const last = await waitFor(() => {
      const s = h.statuses("shop", "CX-1").at(-1);
      return s?.status === "cancelled" ? s : null;
    }, "the cancelled status");
    expect(last.event).toBe("cancelled");
    expectIncreasing(
      h.statuses("shop", "CX-1").map((s) => s.version),
      "statuses of CX-1",
    );
    await h.expectLedgerConsistent();
  });

  test("customer cancel of some lines before shipment", async () => {
    const [k1, k2] = skusAcrossPartitions("CL", 2) as [string, string];
    await receive(h, [
      [k1, "w1", 10],
      [k2, "w1", 10],
    ]);
    await h.order("shop", "CX-2", [
      { lineId: "1", sku: k1, qty: 1 },
      { lineId: "2", sku: k1, qty: 2 },
      { lineId: "3", sku: k2, qty: 1 },
    ]);
    await h.waitOrder("shop", "CX-2", released, "released");
    await h.waitPosition(k1, "w1", { reserved: 3 });
    await h.cancel("shop", "CX-2", ["2"]);
    const o = await h.waitOrder(
      "shop",
      "CX-2",
      (x) => line(x, "2").state === "cancelled",
      "line 2 cancelled",
    );
    expect(o.status).toBe("allocated");
    expect(o.lines.map((l) => [l.lineId, l.state, l.cancelCause])).toEqual([
      ["1", "released", null],
      ["2", "cancelled", "customer"],
      ["3", "released", null],
    ]);
    await h.waitPosition(k1, "w1", { reserved: 1, available: 9 });
    expect(await h.position(k2, "w1")).toMatchObject({ reserved: 1 });
    const cancels = await waitFor(() => {
      const c = h.fulfilmentsOf("shop", "CX-2").filter((f) => f.type === "cancel");
      return c.length > 0 ? c : null;
    }, "the fulfilment cancel");
    expect(cancels.map((f) => [f.warehouse, f.lines])).toEqual([["w1", [{ lineId: "2", sku: k1, qty: 2 }]]]);
    await h.expectLedgerConsistent();
  });

  test("a cancel after shipment is refused with status event cancel_refused", async () => {
    const [k1, k2] = skusAcrossPartitions("CR", 2) as [string, string];
    await receive(h, [
      [k1, "w1", 10],
      [k2, "w1", 10],
    ]);
    await h.order("shop", "CX-3", [{ lineId: "1", sku: k1, qty: 1 }]);
    await h.waitOrder("shop", "CX-3", released, "released");
    await h.shipped("w1", "shop", "CX-3", "CX-3-s1", [{ lineId: "1", qty: 1 }]);
    const shipped = await h.waitOrder("shop", "CX-3", (x) => x.status === "shipped", "shipped");
    await h.waitPosition(k1, "w1", { onHand: 9, reserved: 0 });
    await h.cancel("shop", "CX-3");
    const refusedStatus = await waitFor(
      () => h.statuses("shop", "CX-3").find((s) => s.event === "cancel_refused") ?? null,
      "cancel_refused on sluice.out.order.shop",
    );
    expect(refusedStatus.status).toBe("shipped");
    expect(refusedStatus.version).toBeGreaterThan(shipped.version);
    expect(refusedStatus.lines[0]).toMatchObject({ state: "shipped", shippedQty: 1, cancelCause: null });
    await h.quiesce();
    expect(await h.position(k1, "w1")).toMatchObject({ onHand: 9, reserved: 0 });
    expect(h.fulfilmentsOf("shop", "CX-3").map((f) => f.type)).toEqual(["fulfil"]);

    // A cancel naming only the shipped line of a partly shipped order is refused; the other line stays.
    await h.order("shop", "CX-4", [
      { lineId: "1", sku: k1, qty: 1 },
      { lineId: "2", sku: k2, qty: 1 },
    ]);
    await h.waitOrder("shop", "CX-4", released, "released");
    await h.shipped("w1", "shop", "CX-4", "CX-4-s1", [{ lineId: "1", qty: 1 }]);
    await h.waitOrder("shop", "CX-4", (x) => x.status === "partially_shipped", "partially shipped");
    await h.cancel("shop", "CX-4", ["1"]);
    await waitFor(
      () => h.statuses("shop", "CX-4").find((s) => s.event === "cancel_refused") ?? null,
      "cancel_refused for CX-4",
    );
    const o = (await h.getOrder("shop", "CX-4")) as Order;
    expect(o.lines.map((l) => [l.state, l.shippedQty, l.cancelCause])).toEqual([
      ["shipped", 1, null],
      ["released", 0, null],
    ]);
    expect(await h.position(k2, "w1")).toMatchObject({ reserved: 1 });
    await h.expectLedgerConsistent();
  });

  test("a cancel that arrives before its order is kept and applied when the order arrives", async () => {
    const [k1, k2] = skusAcrossPartitions("CB", 2) as [string, string];
    await receive(h, [
      [k1, "w1", 10],
      [k2, "w1", 10],
    ]);
    await h.cancel("shop", "CX-5");
    await h.cancel("shop", "CX-6", ["2"]);
    await h.quiesce();
    expect(await h.getOrder("shop", "CX-5")).toBeNull();
    expect(
      h.deadLetters().filter((d) => d.sourceSubject.includes("CX-5") || d.sourceSubject.includes("CX-6")),
    ).toEqual([]);

    await h.order("shop", "CX-5", [{ lineId: "1", sku: k1, qty: 1 }]);
    await h.order("shop", "CX-6", [
      { lineId: "1", sku: k1, qty: 1 },
      { lineId: "2", sku: k2, qty: 1 },
    ]);
    const whole = await h.waitOrder("shop", "CX-5", settled, "settled");
    expect(whole.status).toBe("cancelled");
    expect(whole.lines.map((l) => [l.state, l.cancelCause])).toEqual([["cancelled", "customer"]]);
    const part = await h.waitOrder("shop", "CX-6", settled, "settled");
    expect(part.lines.map((l) => [l.state, l.cancelCause])).toEqual([
      ["released", null],
      ["cancelled", "customer"],
    ]);
    await h.quiesce();
    // The cancelled lines never touched the ledger: only CX-6/1 reserved.
    expect(await h.position(k1, "w1")).toMatchObject({ reserved: 1 });
    expect(await h.position(k2, "w1")).toMatchObject({ reserved: 0 });
    expect((await h.entries(k2)).map((e) => e.type)).toEqual(["received"]);
    expect(h.fulfilmentsOf("shop", "CX-5")).toEqual([]);
    expect(h.fulfilmentsOf("shop", "CX-6").map((f) => f.lines.map((l) => l.lineId))).toEqual([["1"]]);
    // The pending cancel is consumed: it is not applied again.
    expect(
      h.sluice.orders[orderPartition(orderKey("shop", "CX-5"), P)]?.store.get(
        "pending",
        orderKey("shop", "CX-5"),
      ),
    ).toBeUndefined();
    await h.expectLedgerConsistent();
  });

  test("a cancel right behind its order (line still waiting for the ledger) ends cancelled with stock released", async () => {
    const k = skuIn("CW", 1);
    await receive(h, [[k, "w1", 10]]);
    await h.order("shop", "CX-7", [{ lineId: "1", sku: k, qty: 4 }]);
    await h.cancel("shop", "CX-7");
    const o = await h.waitOrder("shop", "CX-7", (x) => x.status === "cancelled", "cancelled");
    expect(line(o, "1")).toMatchObject({ state: "cancelled", cancelCause: "customer", cancelPending: null });
    await h.waitPosition(k, "w1", { onHand: 10, reserved: 0, available: 10 });
    await h.quiesce();
    // A warehouse told to fulfil a line is told to cancel it afterwards.
    const sent = h.fulfilmentsOf("shop", "CX-7");
    expect(sent.filter((f) => f.type === "fulfil").length).toBe(
      sent.filter((f) => f.type === "cancel").length,
    );
    await h.expectLedgerConsistent();
  });

  test("WMS shipped, partial then full: onHand and reserved go down; a duplicate shipment changes nothing", async () => {
    const [s1, s2] = skusAcrossPartitions("SH", 2) as [string, string];
    await receive(h, [
      [s1, "w1", 10],
      [s2, "w1", 5],
    ]);
    await h.order("shop", "SH-1", [
      { lineId: "1", sku: s1, qty: 5 },
      { lineId: "2", sku: s2, qty: 1 },
    ]);
    await h.waitOrder("shop", "SH-1", released, "released");
    await h.waitPosition(s1, "w1", { reserved: 5 });

    await h.shipped("w1", "shop", "SH-1", "shp-1", [{ lineId: "1", qty: 2 }]);
    let o = await h.waitOrder("shop", "SH-1", (x) => line(x, "1").shippedQty === 2, "2 shipped");
    expect(o.status).toBe("partially_shipped");
    expect(line(o, "1").state).toBe("released");
    await h.waitPosition(s1, "w1", { onHand: 8, reserved: 3, available: 5 });

    await h.shipped("w1", "shop", "SH-1", "shp-2", [{ lineId: "1", qty: 3 }]);
    o = await h.waitOrder("shop", "SH-1", (x) => line(x, "1").shippedQty === 5, "5 shipped");
    expect(o.status).toBe("partially_shipped");
    expect(line(o, "1").state).toBe("shipped");
    await h.waitPosition(s1, "w1", { onHand: 5, reserved: 0, available: 5 });
    const versionBefore = o.version;

    // The WMS retries shp-2 (a new message, same shipment id), then ships line 2.
    await h.shipped("w1", "shop", "SH-1", "shp-2", [{ lineId: "1", qty: 3 }]);
    await h.shipped("w1", "shop", "SH-1", "shp-3", [{ lineId: "2", qty: 1 }]);
    o = await h.waitOrder("shop", "SH-1", (x) => x.status === "shipped", "shipped");
    expect(o.version).toBe(versionBefore + 1);
    expect(o.shipmentIds).toEqual(["shp-1", "shp-2", "shp-3"]);
    expect(o.lines.map((l) => [l.state, l.shippedQty])).toEqual([
      ["shipped", 5],
      ["shipped", 1],
    ]);
    await h.waitPosition(s2, "w1", { onHand: 4, reserved: 0 });
    await h.quiesce();
    const ref = `${orderKey("shop", "SH-1")}/1`;
    expect((await h.entries(s1)).map((e) => [e.type, e.delta, e.ref])).toEqual([
      ["received", { onHand: 10 }, null],
      ["reserved", { reserved: 5 }, ref],
      ["shipped", { onHand: -2, reserved: -2 }, ref],
      ["shipped", { onHand: -3, reserved: -3 }, ref],
    ]);
    expect(h.deadLetters().filter((d) => d.body.includes('"SH-1"'))).toEqual([]);
    const statuses = h.statuses("shop", "SH-1");
    expect(statuses.map((s) => s.status).filter((s) => s.endsWith("shipped"))).toEqual([
      "partially_shipped",
      "partially_shipped",
      "shipped",
    ]);
    expectIncreasing(
      statuses.map((s) => s.version),
      "statuses of SH-1",
    );
    await h.expectLedgerConsistent();
  });

  test("WMS shipped that does not fit the order is dead-lettered; a cancel after a partial shipment releases the rest", async () => {
    const s = skuIn("SP", 2);
    await receive(h, [[s, "w1", 10]]);
    await h.order("shop", "SH-2", [{ lineId: "1", sku: s, qty: 4 }]);
    await h.waitOrder("shop", "SH-2", released, "released");
    await h.shipped("w2", "shop", "SH-2", "bad-wh", [{ lineId: "1", qty: 1 }]);
    await h.shipped("w1", "shop", "SH-2", "too-many", [{ lineId: "1", qty: 5 }]);
    const wrongWarehouse = await h.waitDeadLetter(
      "invalid_transition",
      (d) => d.body.includes("bad-wh"),
      "wrong warehouse",
    );
    expect(wrongWarehouse.detail).toContain("not released to w2");
    expect(wrongWarehouse.sourceSubject).toBe(
      subjects.orderWms(orderPartition(orderKey("shop", "SH-2"), P), "w2", "shipped"),
    );
    const tooMany = await h.waitDeadLetter(
      "invalid_transition",
      (d) => d.body.includes("too-many"),
      "over-shipment",
    );
    expect(tooMany.detail).toContain("only 4 are open");

    await h.shipped("w1", "shop", "SH-2", "ok-1", [{ lineId: "1", qty: 1 }]);
    await h.waitPosition(s, "w1", { onHand: 9, reserved: 3 });
    await h.cancel("shop", "SH-2");
    const o = await h.waitOrder(
      "shop",
      "SH-2",
      (x) => !x.lines.some((l) => l.state === "released"),
      "rest cancelled",
    );
    expect(o.status).toBe("shipped");
    expect(line(o, "1")).toMatchObject({ state: "shipped", shippedQty: 1, cancelCause: "customer" });
    await h.waitPosition(s, "w1", { onHand: 9, reserved: 0, available: 9 });
    const cancel = await waitFor(
      () => h.fulfilmentsOf("shop", "SH-2").find((f) => f.type === "cancel") ?? null,
      "the fulfilment cancel of the rest",
    );
    expect(cancel.lines).toEqual([{ lineId: "1", sku: s, qty: 3 }]);
    await h.expectLedgerConsistent();
  });

  test("WMS rejected: re-routed to the next warehouse with stock, never one that rejected; then cancelled", async () => {
    const r = skuIn("RJ", 0);
    await receive(h, [
      [r, "w1", 2],
      [r, "w2", 2],
      [r, "w3", 2],
    ]);
    await h.order("shop", "RJ-1", [{ lineId: "1", sku: r, qty: 2 }]);
    await h.waitOrder("shop", "RJ-1", (o) => line(o, "1").warehouse === "w1" && released(o), "at w1");

    await h.rejected("w1", "shop", "RJ-1", ["1"]);
    let o = await h.waitOrder(
      "shop",
      "RJ-1",
      (x) => line(x, "1").warehouse === "w2" && released(x),
      "re-routed to w2",
    );
    expect(line(o, "1").excluded).toEqual(["w1"]);
    await h.waitPosition(r, "w1", { onHand: 2, reserved: 0, available: 2 });
    await h.waitPosition(r, "w2", { onHand: 2, reserved: 2, available: 0 });
    await waitFor(() => h.fulfilments("w2", "RJ-1").some((f) => f.type === "fulfil"), "fulfilment at w2");

    // w1 has stock again, but it rejected the line: the next one is w3.
    await h.rejected("w2", "shop", "RJ-1", ["1"]);
    o = await h.waitOrder(
      "shop",
      "RJ-1",
      (x) => line(x, "1").warehouse === "w3" && released(x),
      "re-routed to w3",
    );
    expect(line(o, "1").excluded).toEqual(["w1", "w2"]);
    await h.waitPosition(r, "w2", { reserved: 0 });
    await h.waitPosition(r, "w3", { reserved: 2 });

    await h.rejected("w3", "shop", "RJ-1", ["1"]);
    o = await h.waitOrder("shop", "RJ-1", (x) => x.status === "cancelled", "cancelled: nowhere left");
    expect(line(o, "1")).toMatchObject({ state: "cancelled", cancelCause: "warehouse", warehouse: null });
    await h.waitPosition(r, "w3", { onHand: 2, reserved: 0 });
    expect(await h.position(r, "w1")).toMatchObject({ onHand: 2, reserved: 0 });
    await h.quiesce();
    const fulfilled = h.fulfilmentsOf("shop", "RJ-1").filter((f) => f.type === "fulfil");
    expect(fulfilled.map((f) => f.warehouse)).toEqual(["w1", "w2", "w3"]);
    expectIncreasing(
      h.statuses("shop", "RJ-1").map((s) => s.version),
      "statuses of RJ-1",
    );
    await h.expectLedgerConsistent();
  });

  test("a re-routed line is live: its status carries no cancel cause", async () => {
    const r = skuIn("RL", 3);
    await receive(h, [
      [r, "w1", 2],
      [r, "w2", 2],
    ]);
    await h.order("shop", "RL-1", [{ lineId: "1", sku: r, qty: 1 }]);
    await h.waitOrder("shop", "RL-1", released, "released at w1");
    await h.rejected("w1", "shop", "RL-1", ["1"]);
    const o = await h.waitOrder(
      "shop",
      "RL-1",
      (x) => line(x, "1").warehouse === "w2" && released(x),
      "at w2",
    );
    const last = await waitFor(() => {
      const s = h.statuses("shop", "RL-1").at(-1);
      return s?.version === o.version ? s : null;
    }, "the status of the re-routed order");
    expect(last.status).toBe("allocated");
    expect(last.lines[0]).toMatchObject({ state: "released", warehouse: "w2" });
    // A channel reading cancelCause on a live line would take it for cancelled.
    expect(last.lines[0]?.cancelCause).toBeNull();
    expect(line(o, "1").cancelCause).toBeNull();
  });

  test("WMS rejected with stockMissing corrects the rejecting warehouse's onHand; no other stock ⇒ line cancelled", async () => {
    const [rm, ro] = skusAcrossPartitions("RM", 2) as [string, string];
    await receive(h, [
      [rm, "w1", 5],
      [rm, "w2", 5],
      [ro, "w1", 5],
    ]);
    await h.order("shop", "RJ-2", [{ lineId: "1", sku: rm, qty: 2 }]);
    await h.order("shop", "RJ-3", [{ lineId: "1", sku: ro, qty: 2 }]);
    await h.waitOrder("shop", "RJ-2", released, "released");
    await h.waitOrder("shop", "RJ-3", released, "released");

    await h.rejected("w1", "shop", "RJ-2", ["1"], true);
    const moved = await h.waitOrder(
      "shop",
      "RJ-2",
      (x) => line(x, "1").warehouse === "w2" && released(x),
      "at w2",
    );
    expect(line(moved, "1").excluded).toEqual(["w1"]);
    await h.waitPosition(rm, "w1", { onHand: 3, reserved: 0, available: 3 });
    await h.waitPosition(rm, "w2", { onHand: 5, reserved: 2 });
    expect((await h.entries(rm)).filter((e) => e.warehouse === "w1").map((e) => [e.type, e.delta])).toEqual([
      ["received", { onHand: 5 }],
      ["reserved", { reserved: 2 }],
      ["released", { reserved: -2 }],
      ["missing", { onHand: -2 }],
    ]);

    await h.rejected("w1", "shop", "RJ-3", ["1"]);
    const cancelled = await h.waitOrder("shop", "RJ-3", (x) => x.status === "cancelled", "cancelled");
    expect(line(cancelled, "1")).toMatchObject({
      state: "cancelled",
      cancelCause: "warehouse",
      refusal: "insufficient_available",
    });
    await h.waitPosition(ro, "w1", { onHand: 5, reserved: 0, available: 5 });

    // A rejection from a warehouse the line is not at is refused, untouched.
    await h.rejected("w3", "shop", "RJ-2", ["1"]);
    const dl = await h.waitDeadLetter(
      "invalid_transition",
      (d) => d.body.includes('"RJ-2"'),
      "rejection from w3",
    );
    expect(dl.detail).toContain("only an unshipped line released to w3");
    expect(JSON.parse(dl.body)).toEqual({
      channel: "shop",
      orderId: "RJ-2",
      lines: ["1"],
      stockMissing: false,
      reason: "cannot pick",
    });
    await h.expectLedgerConsistent();
  });

  test("returns: each disposition lands in the right bucket; returning more than shipped is dead-lettered", async () => {
    const [t1, t2] = skusAcrossPartitions("RT", 2) as [string, string];
    await receive(h, [
      [t1, "w1", 10],
      [t2, "w1", 10],
    ]);
    await h.order("shop", "RT-1", [
      { lineId: "1", sku: t1, qty: 4 },
      { lineId: "2", sku: t2, qty: 3 },
    ]);
    await h.waitOrder("shop", "RT-1", released, "released");
    await h.shipped("w1", "shop", "RT-1", "rt-s1", [
      { lineId: "1", qty: 4 },
      { lineId: "2", qty: 3 },
    ]);
    await h.waitOrder("shop", "RT-1", (o) => o.status === "shipped", "shipped");
    await h.waitPosition(t1, "w1", { onHand: 6, reserved: 0 });
    await h.waitPosition(t2, "w1", { onHand: 7, reserved: 0 });

    // Sellable, to another named warehouse.
    await h.returned("shop", "RT-1", "r1", [
      { lineId: "1", qty: 1, disposition: "sellable", warehouse: "w2" },
    ]);
    await h.waitPosition(t1, "w2", { onHand: 1, available: 1 });
    // Damaged and quality control, in one return over two lines, to the warehouse that shipped.
    await h.returned("shop", "RT-1", "r2", [
      { lineId: "1", qty: 1, disposition: "damaged" },
      { lineId: "2", qty: 2, disposition: "quality_control" },
    ]);
    await h.waitPosition(t1, "w1", { onHand: 7, damaged: 1, available: 6 });
    await h.waitPosition(t2, "w1", { onHand: 9, qualityControl: 2, available: 7 });
    // Sellable back where it shipped from.
    await h.returned("shop", "RT-1", "r3", [{ lineId: "1", qty: 1, disposition: "sellable" }]);
    await h.waitPosition(t1, "w1", { onHand: 8, damaged: 1, available: 7 });
    let o = await h.waitOrder("shop", "RT-1", (x) => line(x, "1").returnedQty === 3, "3 returned");
    expect(line(o, "2").returnedQty).toBe(2);

    // 1 of line 1 is still out: returning 2 is refused, untouched; the same return id again changes nothing.
    await h.returned("shop", "RT-1", "r4", [{ lineId: "1", qty: 2, disposition: "sellable" }]);
    const dl = await h.waitDeadLetter("invalid_transition", (d) => d.body.includes('"r4"'), "over-return");
    expect(dl.detail).toContain("only 1 shipped and not yet returned");
    expect(dl.sourceSubject).toBe(
      `sluice.answer.${orderPartition(orderKey("shop", "RT-1"), P)}.return.shop.RT-1`,
    );
    await h.returned("shop", "RT-1", "r1", [
      { lineId: "1", qty: 1, disposition: "sellable", warehouse: "w2" },
    ]);
    await h.returned("shop", "RT-1", "r5", [{ lineId: "2", qty: 1, disposition: "sellable" }]);
    o = await h.waitOrder("shop", "RT-1", (x) => line(x, "2").returnedQty === 3, "line 2 all returned");
    expect(line(o, "1").returnedQty).toBe(3);
    expect(o.returnIds).toEqual(["r1", "r2", "r3", "r5"]);
    await h.quiesce();
    expect(await h.position(t1, "w2")).toMatchObject({ onHand: 1, available: 1 });
    expect(await h.position(t2, "w1")).toMatchObject({ onHand: 10, qualityControl: 2, available: 8 });
    expect(
      (await h.entries(t1)).filter((e) => e.type === "returned").map((e) => [e.warehouse, e.delta]),
    ).toEqual([
      ["w2", { onHand: 1 }],
      ["w1", { onHand: 1, damaged: 1 }],
      ["w1", { onHand: 1 }],
    ]);

    // A line that never shipped cannot be returned.
    await h.order("shop", "RT-2", [{ lineId: "1", sku: t1, qty: 1 }]);
    await h.waitOrder("shop", "RT-2", released, "released");
    await h.returned("shop", "RT-2", "r-none", [{ lineId: "1", qty: 1, disposition: "sellable" }]);
    await h.waitDeadLetter(
      "invalid_transition",
      (d) => d.body.includes("r-none"),
      "return of an unshipped line",
    );
    await h.expectLedgerConsistent();
  });

  test("events about unknown orders and unknown lines are dead-lettered with their reason", async () => {
    const u = skuIn("UK", 3);
    await receive(h, [[u, "w1", 10]]);
    const key = orderKey("shop", "NOPE-1");
    await h.shipped("w1", "shop", "NOPE-1", "n-s1", [{ lineId: "1", qty: 1 }]);
    await h.rejected("w1", "shop", "NOPE-1", ["1"]);
    await h.returned("shop", "NOPE-1", "n-r1", [{ lineId: "1", qty: 1, disposition: "sellable" }]);
    const unknownOrder = await waitFor(() => {
      const d = h
        .deadLetters("unknown_order")
        .filter((x) => x.body.includes("NOPE-1") || x.sourceSubject.includes("NOPE-1"));
      return d.length === 3 ? d : null;
    }, "three unknown_order dead letters");
    const p = orderPartition(key, P);
    expect(unknownOrder.map((d) => d.sourceSubject).sort()).toEqual(
      [
        subjects.orderWms(p, "w1", "shipped"),
        subjects.orderWms(p, "w1", "rejected"),
        subjects.orderPartitioned(p, "return", "shop", "NOPE-1"),
      ].sort(),
    );
    expect(unknownOrder.every((d) => d.reason === "unknown_order")).toBe(true);
    expect(JSON.parse(unknownOrder.find((d) => d.body.includes("n-s1"))?.body ?? "")).toEqual({
      channel: "shop",
      orderId: "NOPE-1",
      shipmentId: "n-s1",
      lines: [{ lineId: "1", qty: 1 }],
    });

    await h.order("shop", "UL-1", [{ lineId: "1", sku: u, qty: 1 }]);
    const before = await h.waitOrder("shop", "UL-1", released, "released");
    await h.shipped("w1", "shop", "UL-1", "ul-s1", [{ lineId: "9", qty: 1 }]);
    await h.rejected("w1", "shop", "UL-1", ["9"]);
    await h.returned("shop", "UL-1", "ul-r1", [{ lineId: "9", qty: 1, disposition: "sellable" }]);
    await h.cancel("shop", "UL-1", ["9"]);
    const unknownLine = await waitFor(() => {
      const d = h
        .deadLetters("unknown_line")
        .filter((x) => x.sourceSubject.includes("UL-1") || x.body.includes("UL-1"));
      return d.length === 4 ? d : null;
    }, "four unknown_line dead letters");
    expect(unknownLine.every((d) => d.detail.includes('no line "9"'))).toBe(true);
    await h.quiesce();
    const after = (await h.getOrder("shop", "UL-1")) as Order;
    expect(after.version).toBe(before.version);
    expect(line(after, "1")).toMatchObject({ state: "released", shippedQty: 0 });
    expect(await h.position(u, "w1")).toMatchObject({ onHand: 10, reserved: 1 });
    await h.expectLedgerConsistent();
  });

  test("an order created twice (same key, redelivered or re-sent) is one order", async () => {
    const u = skuIn("ID", 0);
    await receive(h, [[u, "w1", 10]]);
    const id = "ID 1.a*b"; // not a subject token: travels ~encoded
    const lines: Line[] = [{ lineId: "1", sku: u, qty: 3 }];
    const first = await h.order("shop", id, lines, {}, "id-1");
    const again = await h.order("shop", id, lines, {}, "id-1");
    expect(again.duplicate).toBe(true);
    expect(again.seq).toBe(first.seq);
    const o = await h.waitOrder("shop", id, settled, "settled");
    // A channel re-sends the same order with a new message id (and even other content).
    await h.order("shop", id, [{ lineId: "1", sku: u, qty: 5 }], {}, "id-2");
    await h.quiesce();
    const after = (await h.getOrder("shop", id)) as Order;
    expect(after.version).toBe(o.version);
    expect(after.lines).toEqual(o.lines);
    expect(await h.position(u, "w1")).toMatchObject({ onHand: 10, reserved: 3 });
    expect((await h.entries(u)).map((e) => e.type)).toEqual(["received", "reserved"]);
    expect(h.statuses("shop", id).filter((s) => s.event === "created")).toHaveLength(1);
    expect(h.fulfilmentsOf("shop", id)).toHaveLength(1);
    await h.expectLedgerConsistent();
  });

  test("WMS received/counted events and a bulk import go through the router to each SKU's partition", async () => {
    const skus = skusAcrossPartitions("WR", 4);
    await h.producer.publishJson(subjects.wmsPublic("w2", "received"), {
      items: skus.map((sku, i) => ({ sku, qty: 10 + i, ref: "asn-1" })),
    });
    for (const [i, sku] of skus.entries()) await h.waitPosition(sku, "w2", { onHand: 10 + i });
    await h.producer.publishJson(subjects.wmsPublic("w2", "counted"), {
      items: [
        { sku: skus[0], onHand: 7 },
        { sku: skus[3], onHand: 20 },
      ],
    });
    await h.waitPosition(skus[0] as string, "w2", { onHand: 7 });
    await h.waitPosition(skus[3] as string, "w2", { onHand: 20 });
    expect((await h.entries(skus[0] as string)).map((e) => [e.type, e.delta, e.ref])).toEqual([
      ["received", { onHand: 10 }, "asn-1"],
      ["counted", { onHand: -3 }, null],
    ]);

    const n = 400;
    const imported = Array.from({ length: n }, (_, i) => `IMP-${i}`);
    await h.producer.publishJson(subjects.importPublic("onboarding-1"), {
      items: imported.map((sku, i) => ({ sku, type: "received", warehouse: "w3", qty: (i % 7) + 1 })),
    });
    await h.producer.publishJson(subjects.importPublic("onboarding-2"), {
      items: imported
        .filter((_, i) => i % 2 === 0)
        .map((sku) => ({ sku, type: "safety_stock", warehouse: "w3", qty: 1 })),
    });
    const perPartition = new Array(P).fill(0);
    await waitFor(
      () =>
        imported.every((sku, i) => {
          const s = h.sluice.ledger[skuPartition(sku, P)]?.store.get<{
            positions: Record<string, { safetyStock: number }>;
          }>("skus", sku);
          return s !== undefined && s.positions.w3?.safetyStock === (i % 2 === 0 ? 1 : 0);
        }),
      "every imported SKU in its partition",
    );
    for (const [i, sku] of imported.entries()) {
      const p = skuPartition(sku, P);
      perPartition[p]++;
      for (let q = 0; q < P; q++) {
        const s = h.sluice.ledger[q]?.store.get<{ positions: Record<string, { onHand: number }> }>(
          "skus",
          sku,
        );
        if (q === p) expect(s?.positions.w3?.onHand).toBe((i % 7) + 1);
        else expect(s).toBeUndefined();
      }
    }
    expect(perPartition.every((c) => c > 50)).toBe(true);
    const sample = await h.getStock("IMP-123");
    expect(sample).toMatchObject({ sku: "IMP-123", partition: skuPartition("IMP-123", P) });
    expect(sample.positions.w3).toMatchObject({ onHand: (123 % 7) + 1, safetyStock: 0 });
    await h.quiesce();
    expect(
      h
        .deadLetters()
        .filter(
          (d) =>
            d.sourceSubject.startsWith("sluice.in.") ||
            d.sourceSubject.includes(".items.") ||
            d.sourceSubject.includes(".stock.IMP-"),
        ),
    ).toEqual([]);
    await h.expectLedgerConsistent();
  });

  test("a count below reservations takes the reservation from a line, which re-routes (stock_lost)", async () => {
    const c = skuIn("CNT", 1);
    await receive(h, [
      [c, "w1", 10],
      [c, "w2", 10],
    ]);
    await h.order("shop", "CL-1", [{ lineId: "1", sku: c, qty: 4 }]);
    await h.order("shop", "CL-2", [{ lineId: "1", sku: c, qty: 4 }]);
    await h.waitOrder("shop", "CL-1", released, "released");
    await h.waitOrder("shop", "CL-2", released, "released");
    await h.waitPosition(c, "w1", { reserved: 8 });

    await h.producer.publishJson(subjects.wmsPublic("w1", "counted"), { items: [{ sku: c, onHand: 5 }] });
    await h.waitPosition(c, "w2", { reserved: 4 });
    await h.waitPosition(c, "w1", { onHand: 5, reserved: 4, available: 1 });
    // The ledger's reservation at w2 shows before the order stage applies its answer: wait for the order.
    const orders = await waitFor(async () => {
      const both = [(await h.getOrder("shop", "CL-1")) as Order, (await h.getOrder("shop", "CL-2")) as Order];
      return both.some((o) => line(o, "1").warehouse === "w2" && line(o, "1").state === "released")
        ? both
        : null;
    }, "one line re-routed to w2 and released");
    const lost = orders.filter((o) => line(o, "1").warehouse === "w2");
    const kept = orders.filter((o) => line(o, "1").warehouse === "w1");
    expect(lost).toHaveLength(1);
    expect(kept).toHaveLength(1);
    const moved = lost[0] as Order;
    expect(line(moved, "1")).toMatchObject({ state: "released", excluded: ["w1"] });
    expect(moved.history.some((e) => e.event === "stock_lost")).toBe(true);
    await waitFor(
      () =>
        h
          .statuses("shop", moved.orderId)
          .some((s) => s.event === "stock_lost" || s.lines[0]?.warehouse === "w2"),
      "the re-route on sluice.out.order.shop",
    );
    const sent = await waitFor(() => {
      const f = h.fulfilmentsOf("shop", moved.orderId);
      return f.length === 3 ? f : null;
    }, "fulfil w1, cancel w1, fulfil w2");
    expect(sent.map((f) => [f.type, f.warehouse])).toEqual([
      ["fulfil", "w1"],
      ["cancel", "w1"],
      ["fulfil", "w2"],
    ]);
    await h.expectLedgerConsistent();
  });

  test("a fulfilment cancel carries a higher version than the fulfilment request it cancels", async () => {
    const k = skuIn("FV", 2);
    await receive(h, [[k, "w1", 10]]);
    await h.order("shop", "FV-1", [{ lineId: "1", sku: k, qty: 1 }]);
    await h.waitOrder("shop", "FV-1", released, "released");
    await h.cancel("shop", "FV-1");
    const sent = await waitFor(() => {
      const f = h.fulfilmentsOf("shop", "FV-1");
      return f.length === 2 ? f : null;
    }, "fulfil then cancel at w1");
    expect(sent.map((f) => [f.type, f.warehouse])).toEqual([
      ["fulfil", "w1"],
      ["cancel", "w1"],
    ]);
    // A WMS that drops an item whose version it has already seen for this order must not drop the cancel.
    expect(sent[1]?.version).toBeGreaterThan(sent[0]?.version as number);
  });

  test("an override keeps reservations in flight; hold and unhold move available", async () => {
    const [ov, hd] = skusAcrossPartitions("OV", 2) as [string, string];
    await receive(h, [
      [ov, "w1", 10],
      [hd, "w1", 10],
    ]);
    await h.order("shop", "OV-1", [{ lineId: "1", sku: ov, qty: 3 }]);
    const before = await h.waitOrder("shop", "OV-1", released, "released");
    await h.waitPosition(ov, "w1", { reserved: 3 });
    await h.stock(ov, { type: "override", warehouse: "w1", available: 5 });
    await h.waitPosition(ov, "w1", { onHand: 8, reserved: 3, available: 5 });
    await h.stock(ov, { type: "override", warehouse: "w1", available: 0 });
    await h.waitPosition(ov, "w1", { onHand: 3, reserved: 3, available: 0 });
    await h.order("shop", "OV-2", [{ lineId: "1", sku: ov, qty: 1 }]);
    const refused = await h.waitOrder("shop", "OV-2", settled, "settled");
    expect(refused.lines[0]).toMatchObject({ state: "rejected", refusal: "insufficient_available" });
    expect((await h.getOrder("shop", "OV-1"))?.version).toBe(before.version);
    await h.shipped("w1", "shop", "OV-1", "ov-s1", [{ lineId: "1", qty: 3 }]);
    await h.waitPosition(ov, "w1", { onHand: 0, reserved: 0, available: 0 });

    await h.stock(hd, { type: "hold", warehouse: "w1", qty: 3, bucket: "damaged" });
    await h.stock(hd, { type: "hold", warehouse: "w1", qty: 2, bucket: "quality_control" });
    await h.waitPosition(hd, "w1", { onHand: 10, damaged: 3, qualityControl: 2, available: 5 });
    await h.stock(hd, { type: "hold", warehouse: "w1", qty: 6, bucket: "damaged" });
    const dl = await h.waitDeadLetter(
      "refused",
      (d) => d.sourceSubject.endsWith(`.stock.${hd}`),
      "hold over available",
    );
    expect(dl.detail).toContain("hold_exceeds_available");
    await h.stock(hd, { type: "unhold", warehouse: "w1", qty: 1, bucket: "damaged" });
    await h.stock(hd, { type: "unhold", warehouse: "w1", qty: 2, bucket: "damaged", to: "scrap" });
    await h.stock(hd, { type: "safety_stock", warehouse: "w1", qty: 1 });
    await h.waitPosition(hd, "w1", {
      onHand: 8,
      damaged: 0,
      qualityControl: 2,
      safetyStock: 1,
      available: 5,
    });
    // Held-back stock is not sold.
    await h.order("shop", "HD-1", [{ lineId: "1", sku: hd, qty: 6 }]);
    expect((await h.waitOrder("shop", "HD-1", settled, "settled")).status).toBe("rejected");
    await h.order("shop", "HD-2", [{ lineId: "1", sku: hd, qty: 5 }]);
    expect((await h.waitOrder("shop", "HD-2", settled, "settled")).status).toBe("allocated");
    await h.waitPosition(hd, "w1", { reserved: 5, available: 0 });
    await h.stock(hd, { type: "unhold", warehouse: "w1", qty: 2, bucket: "quality_control" });
    await h.waitPosition(hd, "w1", { onHand: 8, qualityControl: 0, reserved: 5, available: 2 });
    await h.expectLedgerConsistent();
  });

  test("across the whole run: per-order versions only go up, outputs match the stores, nothing fatal", async () => {
    await h.quiesce();
    const statusVersions = new Map<string, number[]>();
    const fulfilments: FulfilmentItem[] = [];
    for (const m of h.out.messages) {
      const items = (
        JSON.parse(new TextDecoder().decode(m.data)) as { items: Array<Record<string, unknown>> }
      ).items;
      if (m.subject.startsWith("sluice.out.order.")) {
        for (const s of items) {
          const k = s.orderKey as string;
          statusVersions.set(k, [...(statusVersions.get(k) ?? []), s.version as number]);
        }
      } else if (m.subject.startsWith("sluice.out.fulfil.")) fulfilments.push(...(items as FulfilmentItem[]));
    }
    expect(statusVersions.size).toBeGreaterThan(20);
    for (const [k, versions] of statusVersions) {
      expectIncreasing(versions, `statuses of ${k}`);
      const stored = h.sluice.orders[orderPartition(k, P)]?.store.get<Order>("orders", k);
      expect(stored?.version).toBe(versions.at(-1));
    }
    await h.expectLedgerConsistent();
    expectFulfilVersionsIncrease(fulfilments);
  });
});

describe("SLA deadlines across a restart", () => {
  let h: Lifecycle;

  beforeAll(async () => {
    h = await Lifecycle.start("sla", [
      { id: "*" },
      { id: "sla", slaShipWithinMs: 2000, slaAction: "cancel" },
      { id: "sla-rr", slaAction: "reroute", slaRerouteGraceMs: 60_000 },
    ]);
  });

  afterAll(async () => {
    await h?.dispose();
  });

  test("a deadline set before a restart fires after it: unshipped lines cancelled, or re-routed", async () => {
    const [s1, s2] = skusAcrossPartitions("SLA", 2) as [string, string];
    await receive(h, [
      [s1, "w1", 10],
      [s2, "w1", 5],
      [s2, "w2", 5],
    ]);
    // Default ship-by of the "sla" channel: 2 s after the order. A re-route channel with an explicit shipBy.
    await h.order("sla", "SLA-1", [
      { lineId: "1", sku: s1, qty: 1 },
      { lineId: "2", sku: s1, qty: 2 },
    ]);
    await h.order("sla-rr", "SLA-2", [{ lineId: "1", sku: s2, qty: 2 }], {
      shipBy: new Date(Date.now() + 2000).toISOString(),
    });
    const a = await h.waitOrder("sla", "SLA-1", released, "released");
    await h.waitOrder("sla-rr", "SLA-2", (o) => released(o) && line(o, "1").warehouse === "w1", "at w1");
    await h.shipped("w1", "sla", "SLA-1", "sla-s1", [{ lineId: "1", qty: 1 }]);
    await h.waitOrder("sla", "SLA-1", (o) => o.status === "partially_shipped", "line 1 shipped");
    expect(a.shipByMs - a.createdAtMs).toBe(2000);
    expect(Date.now()).toBeLessThan(a.shipByMs); // the deadline is still ahead when Sluice stops

    await h.sluice.stop();
    const restartedAt = Date.now();
    await h.startSluice();

    const cancelled = await h.waitOrder(
      "sla",
      "SLA-1",
      (o) => line(o, "2").state === "cancelled",
      "SLA cancel",
      10_000,
    );
    expect(cancelled.lines.map((l) => [l.state, l.shippedQty, l.cancelCause])).toEqual([
      ["shipped", 1, null],
      ["cancelled", 0, "sla"],
    ]);
    expect(cancelled.status).toBe("shipped");
    const fired = cancelled.history.find((e) => e.event === "sla_cancelled");
    expect(fired?.atMs).toBeGreaterThanOrEqual(Math.max(restartedAt, a.shipByMs));
    await h.waitPosition(s1, "w1", { onHand: 9, reserved: 0, available: 9 });
    const cancel = await waitFor(
      () => h.fulfilmentsOf("sla", "SLA-1").find((f) => f.type === "cancel") ?? null,
      "the SLA fulfilment cancel",
    );
    expect(cancel).toMatchObject({ warehouse: "w1", lines: [{ lineId: "2", sku: s1, qty: 2 }] });
    expect(
      await waitFor(
        () => h.statuses("sla", "SLA-1").find((s) => s.event === "sla_cancelled") ?? null,
        "sla_cancelled",
      ),
    ).toMatchObject({ status: "shipped" });

    const rerouted = await h.waitOrder(
      "sla-rr",
      "SLA-2",
      (o) => line(o, "1").warehouse === "w2" && released(o),
      "SLA re-route to w2",
      10_000,
    );
    expect(rerouted.slaRerouted).toBe(true);
    expect(line(rerouted, "1").excluded).toEqual(["w1"]);
    expect(rerouted.history.find((e) => e.event === "sla_rerouted")?.atMs).toBeGreaterThanOrEqual(
      restartedAt,
    );
    // The next deadline is the grace period after the re-route.
    expect(rerouted.shipByMs).toBeGreaterThan(Date.now() + 30_000);
    await h.waitPosition(s2, "w1", { reserved: 0, available: 5 });
    await h.waitPosition(s2, "w2", { reserved: 2, available: 3 });
    const sent = await waitFor(() => {
      const f = h.fulfilmentsOf("sla-rr", "SLA-2");
      return f.length === 3 ? f : null;
    }, "fulfil w1, cancel w1, fulfil w2");
    expect(sent.map((f) => [f.type, f.warehouse])).toEqual([
      ["fulfil", "w1"],
      ["cancel", "w1"],
      ["fulfil", "w2"],
    ]);
    await h.expectLedgerConsistent();
  });

  test("the SLA's fulfilment cancels carry higher versions than the requests they cancel", async () => {
    await h.quiesce();
    const sent = [...h.fulfilmentsOf("sla", "SLA-1"), ...h.fulfilmentsOf("sla-rr", "SLA-2")];
    expect(sent.filter((f) => f.type === "cancel")).toHaveLength(2);
    expectFulfilVersionsIncrease(sent);
  });
});
