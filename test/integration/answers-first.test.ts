import { afterAll, beforeAll, expect, test } from "bun:test";
import type { OrderStatusItem } from "../../src/domain/orders/index.ts";
import { streamNames, subjects } from "../../src/stream/subjects.ts";
import { waitFor } from "../helpers/index.ts";
import { Lifecycle, skuIn } from "../helpers/lifecycle.ts";

// Answers first: an order partition reads its answer stream (ledger answers, cancels, WMS events, clocks)
// before its intake, and takes new orders only while it awaits fewer than orders.inFlightLinesMax
// reservations. A backlog of new orders therefore waits in JetStream, and orders complete all through it
// instead of after it.

const inFlightLinesMax = 8;
const backlog = 400;
let h: Lifecycle;

beforeAll(async () => {
  h = await Lifecycle.start("answers-first", [{ id: "shop" }], {
    orders: { inFlightLinesMax },
  });
});
afterAll(async () => {
  await h?.dispose();
});

test("a backlog of new orders waits in JetStream while answers complete orders all through it", async () => {
  const skus = [0, 1, 2, 3].map((p) => skuIn("AF", p));
  for (const sku of skus) await h.receive(sku, "w1", 10_000);
  for (const sku of skus) await h.waitPosition(sku, "w1", { onHand: 10_000 });

  // The backlog: published while Sluice is down, so it is all waiting when the partitions start.
  await h.sluice.stop();
  for (let i = 0; i < backlog; i++) {
    await h.order("shop", `AF-${i}`, [{ lineId: "1", sku: skus[i % skus.length] as string, qty: 1 }]);
  }
  const jsm = await h.producer.jsm();
  expect((await jsm.streams.info(streamNames.order)).state.messages).toBeGreaterThanOrEqual(backlog);

  await h.startSluice();
  let inFlightMax = 0;
  h.sluice.events.on("batch_committed", (e) => {
    if (e.stage === "order") inFlightMax = Math.max(inFlightMax, e.inFlight);
  });
  const statuses = () => h.out.items<OrderStatusItem>(subjects.outOrder("shop"));
  await waitFor(
    () =>
      new Set(
        statuses()
          .filter((s) => s.status === "allocated")
          .map((s) => s.orderId),
      ).size === backlog,
    `all ${backlog} orders allocated`,
    30_000,
  );
  // In the order the outputs were published: orders were allocated long before the backlog was taken in.
  const seen = statuses();
  const firstAllocated = seen.findIndex((s) => s.status === "allocated");
  const createdBefore = new Set(
    seen
      .slice(0, firstAllocated)
      .filter((s) => s.event === "created")
      .map((s) => s.orderId),
  );
  expect(firstAllocated).toBeGreaterThan(-1);
  expect(createdBefore.size).toBeLessThanOrEqual(h.P * inFlightLinesMax);
  // Single-line orders: the partition never awaited more than the limit.
  expect(inFlightMax).toBeLessThanOrEqual(inFlightLinesMax);
  for (const sku of skus) {
    const p = await h.position(sku, "w1");
    expect(p.reserved).toBe(backlog / skus.length);
  }
  await h.expectLedgerConsistent();
  expect(h.fatal).toEqual([]);
}, 60_000);
