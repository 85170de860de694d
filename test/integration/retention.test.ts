import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { orderKey, orderPartition } from "../../src/stream/subjects.ts";
import { getJson, waitFor } from "../helpers/index.ts";
import { Lifecycle } from "../helpers/lifecycle.ts";

// Retention over a real nats-server and LMDB, with tiny horizons: final orders become tombstones and then
// disappear, the same order message within the tombstone horizon is not a new order, late inputs are refused
// with a dead letter that says why, cancels for orders that never come expire; the tables shrink.

const finalRetentionMs = 1500;
const tombstoneRetentionMs = 7000;
// Long enough for the waiting cancel to be seen before it expires on a loaded 2-core box.
const pendingCancelAgeMsMax = 5000;

describe("retention: final orders, tombstones and waiting cancels", () => {
  let h: Lifecycle;

  beforeAll(async () => {
    h = await Lifecycle.start("retention", [{ id: "*" }], {
      orders: { finalRetentionMs, tombstoneRetentionMs, pendingCancelAgeMsMax, timerTickMs: 100 },
    });
  });

  afterAll(async () => {
    await h?.dispose();
  });

  /** Rows of an order-stage table over every partition (a range: LMDB's count includes msgpack's shared structures). */
  const rows = (table: string) => h.sluice.orders.reduce((n, p) => n + p.store.range(table).length, 0);

  test("a shipped and a cancelled order are compacted, then forgotten; a waiting cancel expires", async () => {
    await h.receive("RET-1", "w1", 10);
    await h.waitPosition("RET-1", "w1", { onHand: 10 });
    await h.order("shop", "R-1", [{ lineId: "1", sku: "RET-1", qty: 2 }]);
    await h.order("shop", "R-2", [{ lineId: "1", sku: "RET-1", qty: 1 }]);
    await h.waitOrder("shop", "R-1", (o) => o.status === "allocated", "released");
    await h.waitOrder("shop", "R-2", (o) => o.status === "allocated", "released");
    await h.shipped("w1", "shop", "R-1", "S-1", [{ lineId: "1", qty: 2 }]);
    await h.cancel("shop", "R-2");
    await h.cancel("shop", "GHOST"); // its order never comes
    const shipped = await h.waitOrder("shop", "R-1", (o) => o.status === "shipped", "shipped", 5000);
    expect(typeof shipped.finalAtMs).toBe("number");
    await h.waitOrder("shop", "R-2", (o) => o.status === "cancelled", "cancelled", 5000);
    expect(rows("orders")).toBe(2);
    // GHOST's cancel may sit in another partition than: wait for it to be applied.
    await waitFor(() => rows("pending") === 1, "the cancel for GHOST waiting", 5000);

    // Past finalRetentionMs: both are tombstones, shown as such; the waiting cancel is gone.
    // biome-ignore lint/suspicious/noExplicitAny: API response read by path.
    const compacted = async (orderId: string): Promise<any> =>
      waitFor(
        async () => {
          const r = await getJson(`${h.base}/v1/orders/shop/${orderId}`);
          return r.status === 200 && r.body.compacted === true ? r.body : null;
        },
        `order shop/${orderId} compacted`,
        10_000,
      );
    const r1 = await compacted("R-1");
    expect(r1).toMatchObject({
      key: orderKey("shop", "R-1"),
      channel: "shop",
      orderId: "R-1",
      status: "shipped",
      finalAtMs: shipped.finalAtMs as number,
      compacted: true,
      partition: orderPartition(orderKey("shop", "R-1"), h.P),
    });
    expect(r1.compactedAtMs).toBeGreaterThanOrEqual(r1.finalAtMs + finalRetentionMs);
    expect(r1.lines).toBeUndefined();
    expect(await compacted("R-2")).toMatchObject({ status: "cancelled" });
    await waitFor(() => rows("pending") === 0, "the waiting cancel to expire", 10_000);
    expect(rows("orders")).toBe(0);
    expect(rows("tombstones")).toBe(2);
    expect(rows("finals")).toBe(0);
    expect(rows("pendingTimes")).toBe(0);

    // Within the tombstone horizon: the same order message again is not a new order (nothing published),
    // late inputs are dead letters that say the order was compacted.
    const statusesBefore = h.statuses("shop", "R-1").length;
    await h.order("shop", "R-1", [{ lineId: "1", sku: "RET-1", qty: 2 }], {}, "R-1-again");
    await h.cancel("shop", "R-1");
    await h.returned("shop", "R-1", "RMA-1", [{ lineId: "1", qty: 1, disposition: "sellable" }]);
    await h.shipped("w1", "shop", "R-1", "S-1", [{ lineId: "1", qty: 2 }]);
    for (const what of ["a cancel", "return RMA-1", "shipment S-1"]) {
      const dl = await h.waitDeadLetter(
        "invalid_transition",
        (d) => d.detail.includes("order shop/R-1 was final (shipped)") && d.detail.includes(what),
        `${what} for the compacted R-1`,
      );
      expect(dl.detail).toContain("has been compacted (orders.finalRetentionMs passed)");
    }
    await h.quiesce();
    expect(h.statuses("shop", "R-1")).toHaveLength(statusesBefore);
    expect((await getJson(`${h.base}/v1/orders/shop/R-1`)).body.compacted).toBe(true);
    expect(rows("orders")).toBe(0);
    expect(rows("pending")).toBe(0); // the cancel did not wait for a "new" R-1
    expect(await h.position("RET-1", "w1")).toMatchObject({ onHand: 8, reserved: 0 }); // the return moved nothing
    const metrics = await (await fetch(`${h.base}/metrics`)).text();
    expect(metrics).toMatch(/sluice_order_outcomes_total\{[^}]*duplicate_order_compacted[^}]*\} 1/);
    expect(metrics).toMatch(/sluice_order_outcomes_total\{[^}]*retention[^}]*compacted[^}]*\} 2/);
    expect(metrics).toMatch(/sluice_order_outcomes_total\{[^}]*pending_cancel_expired[^}]*\} 1/);

    // Past tombstoneRetentionMs: nothing of them is left.
    await waitFor(
      async () => (await getJson(`${h.base}/v1/orders/shop/R-1`)).status === 404,
      "the tombstone of R-1 to go",
      15_000,
    );
    await waitFor(() => rows("tombstones") === 0, "every tombstone to go", 5000);
    expect(rows("tombstoneTimes")).toBe(0);
    expect(h.fatal).toEqual([]);
  }, 60_000);
});
