import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Order } from "../../src/domain/orders/index.ts";
import type { FulfilmentItem } from "../../src/domain/orders/types.ts";
import { orderKey, orderPartition, skuPartition, subjects } from "../../src/stream/subjects.ts";
import { getJson } from "../helpers/index.ts";
import { Lifecycle, type PositionView } from "../helpers/lifecycle.ts";

// One SKU, 1,000 units over three warehouses, 20,000 single-line orders of one unit published as fast as the
// real server takes them (windows of 500 awaited acks), spread over every order partition and all aimed at
// the one ledger partition that owns the SKU. No oversell at any observed instant, exactly 1,000 reserved.

const P = 4;
const sku = "HOT-1";
const stock: Record<string, number> = { w1: 400, w2: 350, w3: 250 };
const orders = 20_000;
const window = 500;

let h: Lifecycle;

beforeAll(async () => {
  h = await Lifecycle.start("hot", [{ id: "*" }]);
});

afterAll(async () => {
  await h?.dispose();
});

test("20,000 orders compete for 1,000 units: exactly 1,000 reserved, never negative, every order settled", async () => {
  for (const [w, qty] of Object.entries(stock)) await h.receive(sku, w, qty);
  for (const [w, qty] of Object.entries(stock)) await h.waitPosition(sku, w, { onHand: qty });

  // Watch the position from outside while the orders land: every observation must be a legal position.
  const observations: Array<Record<string, PositionView>> = [];
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      const r = await getJson(`${h.base}/v1/stock/${sku}`);
      if (r.status === 200) observations.push(r.body.positions);
      await Bun.sleep(2);
    }
  })();

  const started = performance.now();
  let acks: Array<Promise<unknown>> = [];
  for (let i = 0; i < orders; i++) {
    acks.push(h.order("hot", `H-${i}`, [{ lineId: "1", sku, qty: 1, price: 1 }]));
    if (acks.length === window) {
      await Promise.all(acks);
      acks = [];
    }
  }
  await Promise.all(acks);
  const published = performance.now() - started;
  await h.quiesce(45_000);
  const settledMs = performance.now() - started;
  watching = false;
  await watcher;

  // Every observation during the run: nothing negative, nothing oversold.
  expect(observations.length).toBeGreaterThan(10);
  const changing = new Set(observations.map((o) => JSON.stringify(o))).size;
  // The watcher saw the position move (at least before and after). How many states lie between depends on
  // how the ledger batches: with routing's batch accounting it may reserve all 1,000 units in one commit.
  expect(changing).toBeGreaterThanOrEqual(2);
  for (const positions of observations) {
    for (const p of Object.values(positions)) {
      expect(p.available).toBeGreaterThanOrEqual(0);
      expect(p.reserved).toBeGreaterThanOrEqual(0);
      expect(p.reserved).toBeLessThanOrEqual(p.onHand - p.damaged - p.qualityControl - p.safetyStock);
    }
  }

  // The end state: every unit reserved once, one ledger entry per reservation.
  const end = await h.getStock(sku);
  expect(end.partition).toBe(skuPartition(sku, P));
  for (const [w, qty] of Object.entries(stock)) {
    expect(end.positions[w]).toMatchObject({ onHand: qty, reserved: qty, available: 0 });
  }
  expect(end.version).toBe(3 + 1000);

  // Every order settled: 1,000 allocated and released, 19,000 rejected; spread over every order partition.
  const counts = { allocated: 0, rejected: 0, other: 0 };
  const byWarehouse: Record<string, number> = {};
  const perPartition = new Array(P).fill(0);
  for (let p = 0; p < P; p++) {
    for (const o of h.sluice.orders[p]?.store.rangeValues<Order>("orders") ?? []) {
      if (o.channel !== "hot") continue;
      perPartition[p]++;
      expect(orderPartition(orderKey(o.channel, o.orderId), P)).toBe(p);
      const l = o.lines[0];
      if (o.status === "allocated" && l?.state === "released") {
        counts.allocated++;
        byWarehouse[l.warehouse as string] = (byWarehouse[l.warehouse as string] ?? 0) + 1;
      } else if (o.status === "rejected" && l?.state === "rejected" && l.refusal === "insufficient_available")
        counts.rejected++;
      else counts.other++;
    }
  }
  expect(counts).toEqual({ allocated: 1000, rejected: orders - 1000, other: 0 });
  expect(byWarehouse).toEqual(stock);
  expect(perPartition.every((n) => n > orders / P / 2)).toBe(true);

  // Warehouses were asked to fulfil exactly the allocated lines, each once.
  const fulfil: FulfilmentItem[] = Object.keys(stock).flatMap((w) =>
    h.out.items<FulfilmentItem>(subjects.outFulfil(w)).filter((f) => f.channel === "hot"),
  );
  expect(fulfil.every((f) => f.type === "fulfil" && f.lines.length === 1)).toBe(true);
  expect(new Set(fulfil.map((f) => f.orderId)).size).toBe(1000);
  expect(fulfil).toHaveLength(1000);

  expect(h.deadLetters()).toEqual([]);
  await h.expectLedgerConsistent();
  console.log(
    `hot SKU: ${orders} orders published in ${Math.round(published)} ms, settled after ${Math.round(settledMs)} ms; ${observations.length} observations`,
  );
  expect(settledMs).toBeLessThan(50_000);
}, 60_000);
