import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { AtsItem } from "../../src/domain/sync/index.ts";
import { subjects } from "../../src/stream/subjects.ts";
import { getJson, waitFor } from "../helpers/index.ts";
import { type ChannelRules, Lifecycle } from "../helpers/lifecycle.ts";

// Backorders filled when stock arrives, over a real nats-server and LMDB: a line refused for want of stock
// waits in its SKU's waiting list (ledger partition), and the receipt, count, return or release that makes
// stock available allocates it, priority first, before the stock is offered to channels.

/** A backordering channel whose stock is synced from every warehouse. */
type SyncChannel = ChannelRules & { warehouses?: string[] };

const waitingMax = 2;

// biome-ignore lint/suspicious/noExplicitAny: API response read by path.
async function waiting(h: Lifecycle, sku: string, query = ""): Promise<any> {
  const r = await getJson(`${h.base}/v1/stock/${encodeURIComponent(sku)}/waiting${query}`);
  expect(r.status).toBe(200);
  return r.body;
}

const lineOf = async (h: Lifecycle, orderId: string) => (await h.getOrder("shop", orderId))?.lines[0];

describe("backorders filled when stock arrives", () => {
  let h: Lifecycle;

  beforeAll(async () => {
    const channels: SyncChannel[] = [{ id: "shop", backorder: true, warehouses: ["*"] }];
    h = await Lifecycle.start("backorders", channels, {
      ledger: { waitingLinesPerSkuMax: waitingMax },
      sync: { flushWindowMs: 100 },
    });
  });

  afterAll(async () => {
    await h?.dispose();
  });

  test("a backordered line waits, then a receipt allocates and releases it", async () => {
    const sku = "BO-1";
    await h.receive(sku, "w1", 1);
    await h.order("shop", "bo-1", [{ lineId: "1", sku, qty: 3 }]);
    await h.waitOrder("shop", "bo-1", (o) => o.status === "backordered", "backordered");
    const before = await waiting(h, sku);
    expect(before.count).toBe(1);
    expect(before.next).toBeNull();
    expect(before.lines).toEqual([
      expect.objectContaining({ place: 0, lineId: "1", attempt: 1, qty: 3, priority: 0 }),
    ]);
    expect(before.lines[0].candidates).toContain("w1");

    const metric = async (name: string) => {
      const text = await (await fetch(`${h.base}/metrics`)).text();
      return text
        .split("\n")
        .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
        .reduce((sum, l) => sum + Number(l.split(" ").pop()), 0);
    };
    await waitFor(
      async () => (await metric("sluice_backorder_waiting_lines")) === 1,
      "1 waiting line counted",
    );
    const filledBefore = await metric("sluice_backorder_filled_total");

    await h.receive(sku, "w2", 5);
    const o = await h.waitOrder("shop", "bo-1", (x) => x.lines[0]?.state === "released", "released");
    await waitFor(async () => (await metric("sluice_backorder_waiting_lines")) === 0, "none waiting counted");
    expect(await metric("sluice_backorder_filled_total")).toBe(filledBefore + 1);
    expect(o.status).toBe("allocated");
    expect(o.lines[0]?.warehouse).toBe("w2");
    expect(o.history.map((e) => e.event)).toContain("backorder_filled");
    await h.waitPosition(sku, "w2", { onHand: 5, reserved: 3, available: 2 });
    expect((await waiting(h, sku)).count).toBe(0);
    // The channel was told: backordered, then allocated; a fulfilment request went to w2.
    await waitFor(
      () => h.statuses("shop", "bo-1").some((s) => s.status === "allocated"),
      "status allocated on sluice.out.order.shop",
    );
    const statuses = h.statuses("shop", "bo-1").map((s) => s.status);
    expect(statuses.indexOf("backordered")).toBeLessThan(statuses.indexOf("allocated"));
    await waitFor(() => h.fulfilments("w2", "bo-1").length === 1, "fulfilment request to w2");
  });

  test("stock for one of two waiting orders goes to the higher priority, whatever arrived first", async () => {
    const sku = "BO-2";
    await h.order("shop", "bo-2a", [{ lineId: "1", sku, qty: 4 }], { priority: 0 });
    await h.waitOrder("shop", "bo-2a", (o) => o.status === "backordered", "a backordered");
    await h.order("shop", "bo-2b", [{ lineId: "1", sku, qty: 4 }], { priority: 5 });
    await h.waitOrder("shop", "bo-2b", (o) => o.status === "backordered", "b backordered");
    const list = await waiting(h, sku);
    expect(list.lines.map((l: { orderKey: string }) => l.orderKey)).toEqual(["shop.bo-2b", "shop.bo-2a"]);
    // Paged: one line a page, the next page from place 1.
    const first = await waiting(h, sku, "?limit=1");
    expect(first.lines).toHaveLength(1);
    expect(first.next).toBe(1);
    expect((await waiting(h, sku, "?offset=1&limit=1")).lines[0].orderKey).toBe("shop.bo-2a");

    await h.receive(sku, "w1", 4);
    await h.waitOrder("shop", "bo-2b", (o) => o.lines[0]?.state === "released", "b released");
    await h.quiesce();
    expect((await lineOf(h, "bo-2a"))?.state).toBe("backordered");
    expect((await waiting(h, sku)).lines.map((l: { orderKey: string }) => l.orderKey)).toEqual([
      "shop.bo-2a",
    ]);
    // More stock: the other one now.
    await h.receive(sku, "w1", 4);
    await h.waitOrder("shop", "bo-2a", (o) => o.lines[0]?.state === "released", "a released");
    await h.waitPosition(sku, "w1", { onHand: 8, reserved: 8, available: 0 });
  });

  test("a cancel takes a waiting line out; stock that arrives later stays available", async () => {
    const sku = "BO-3";
    await h.order("shop", "bo-3", [{ lineId: "1", sku, qty: 2 }]);
    await h.waitOrder("shop", "bo-3", (o) => o.status === "backordered", "backordered");
    expect((await waiting(h, sku)).count).toBe(1);
    await h.cancel("shop", "bo-3");
    await h.waitOrder("shop", "bo-3", (o) => o.status === "cancelled", "cancelled");
    await waitFor(async () => (await waiting(h, sku)).count === 0, "waiting list empty");
    await h.receive(sku, "w1", 5);
    await h.waitPosition(sku, "w1", { onHand: 5, reserved: 0, available: 5 });
    expect((await h.getOrder("shop", "bo-3"))?.status).toBe("cancelled");
  });

  test("a full waiting list backorders a line without waiting, saying so", async () => {
    const sku = "BO-4";
    for (const id of ["bo-4a", "bo-4b"]) {
      await h.order("shop", id, [{ lineId: "1", sku, qty: 1 }]);
      await h.waitOrder("shop", id, (o) => o.status === "backordered", `${id} backordered`);
    }
    await h.order("shop", "bo-4c", [{ lineId: "1", sku, qty: 1 }]);
    const c = await h.waitOrder("shop", "bo-4c", (o) => o.status === "backordered", "c backordered");
    expect(c.lines[0]?.refusal).toBe("waiting_list_full");
    expect((await waiting(h, sku)).count).toBe(waitingMax);
    await h.receive(sku, "w1", 3);
    await h.waitOrder("shop", "bo-4b", (o) => o.lines[0]?.state === "released", "b released");
    await h.waitOrder("shop", "bo-4a", (o) => o.lines[0]?.state === "released", "a released");
    await h.quiesce();
    expect((await lineOf(h, "bo-4c"))?.state).toBe("backordered");
    await h.waitPosition(sku, "w1", { onHand: 3, reserved: 2, available: 1 });
  });

  test("the channel's stock after a receipt already accounts for the fill", async () => {
    const sku = "BO-5";
    await h.order("shop", "bo-5", [{ lineId: "1", sku, qty: 4 }]);
    await h.waitOrder("shop", "bo-5", (o) => o.status === "backordered", "backordered");
    await h.receive(sku, "w3", 10);
    const items = () => h.out.items<AtsItem>(subjects.outStock("shop")).filter((i) => i.sku === sku);
    await waitFor(() => items().some((i) => i.ats === 6), "ATS 6 on sluice.out.stock.shop");
    await h.waitOrder("shop", "bo-5", (o) => o.lines[0]?.state === "released", "released");
    await h.quiesce();
    // Never the raw receipt: the fill was in the same commit as the receipt.
    expect(items().map((i) => i.ats)).not.toContain(10);
    expect(items().at(-1)?.ats).toBe(6);
    await h.expectLedgerConsistent();
  });

  test("bad paging is refused with the fix", async () => {
    const r = await getJson(`${h.base}/v1/stock/BO-1/waiting?limit=0`);
    expect(r.status).toBe(400);
    expect(r.body.error).toBe("bad_limit");
  });
});
