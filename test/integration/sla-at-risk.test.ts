import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { AtRiskRow, Order, OrderStatusItem } from "../../src/domain/orders/index.ts";
import { orderKey, orderPartition } from "../../src/stream/subjects.ts";
import { getJson, waitFor } from "../helpers/index.ts";
import { Lifecycle, skusAcrossPartitions } from "../helpers/lifecycle.ts";

// Marketplace SLA at risk (issue #14): an open order close to its ship-by is marked once by a durable timer,
// its fulfilment requests carry atRisk, and it is counted (sluice_orders_at_risk) and listed
// (GET /v1/orders?atRisk=true) until it ships; the count survives a restart.

let h: Lifecycle;

beforeAll(async () => {
  h = await Lifecycle.start("sla-at-risk", [
    { id: "*" },
    // At risk 1.5 s after the order (ship-by 3 s, window 1.5 s); the SLA cancels at 3 s.
    { id: "mkt", slaShipWithinMs: 3000, slaAtRiskMs: 1500, slaAction: "cancel" },
    // The default window (a quarter of 2 days): an order given a near ship-by is at risk on arrival.
    { id: "near" },
  ]);
});

afterAll(async () => {
  await h?.dispose();
});

type Listing = {
  orders: Array<AtRiskRow & { partition: number }>;
  next: number | null;
  partitionsListed: number[];
  partitionsNotLocal: unknown[];
};

const list = async (query = "") => {
  const r = await getJson(`${h.base}/v1/orders?atRisk=true${query}`);
  expect(r.status).toBe(200);
  return r.body as Listing;
};

/** sluice_orders_at_risk summed by channel and warehouse, as Prometheus would. */
async function gauge(): Promise<Map<string, number>> {
  const text = await (await fetch(`${h.base}/metrics`)).text();
  const out = new Map<string, number>();
  for (const [, labels, value] of text.matchAll(/^sluice_orders_at_risk\{([^}]*)\} (\S+)$/gm)) {
    const l = Object.fromEntries(
      [...(labels ?? "").matchAll(/(\w+)="([^"]*)"/g)].map(([, k, v]) => [k, v]),
    ) as Record<string, string>;
    const k = `${l.channel}/${l.warehouse}`;
    out.set(k, (out.get(k) ?? 0) + Number(value));
  }
  return out;
}

const released = (o: Order | null) => o?.lines.every((l) => l.state === "released") === true;

describe("orders at risk of missing their ship-by", () => {
  test("marked once at its at-risk point: requests again with atRisk, counted, listed; shipping clears it", async () => {
    const [s1, s2] = skusAcrossPartitions("RISK", 2) as [string, string];
    await h.receive(s1, "w1", 10);
    await h.receive(s2, "w2", 10);
    await h.order("mkt", "R-1", [{ lineId: "1", sku: s1, qty: 2 }], { priority: 5 });
    const first = await h.waitOrder("mkt", "R-1", released, "released");
    expect(first.atRiskDueMs).toBe(first.shipByMs - 1500);
    expect((await list()).orders.map((o) => o.orderId)).not.toContain("R-1"); // not yet

    const marked = await h.waitOrder("mkt", "R-1", (o) => o.atRisk != null, "at risk", 10_000);
    const event = marked.history.find((e) => e.event === "at_risk");
    expect(event?.atMs).toBeGreaterThanOrEqual(first.shipByMs - 1500);
    expect(event?.atMs).toBeLessThan(first.shipByMs);
    expect(marked.atRiskDueMs).toBeNull();
    // The warehouse is asked again, flagged, with the order's priority and deadline to sort by.
    const requests = await waitFor(() => {
      const f = h.fulfilmentsOf("mkt", "R-1");
      return f.length === 2 ? f : null;
    }, "the at-risk request");
    expect(requests.map((f) => [f.type, f.warehouse, f.atRisk, f.priority])).toEqual([
      ["fulfil", "w1", false, 5],
      ["fulfil", "w1", true, 5],
    ]);
    expect(requests[1]?.version).toBeGreaterThan(requests[0]?.version ?? 0);
    expect(requests[1]?.lines).toMatchObject([{ lineId: "1", sku: s1, qty: 2 }]);
    const status = await waitFor(
      () => h.statuses("mkt", "R-1").find((s: OrderStatusItem) => s.event === "at_risk") ?? null,
      "the at_risk status",
    );
    expect(status.atRisk).toBe(true);

    // Counted and listed, with filters.
    await waitFor(async () => ((await gauge()).get("mkt/w1") === 1 ? true : null), "gauge mkt/w1 = 1");
    const listed = await list();
    const row = listed.orders.find((o) => o.orderId === "R-1");
    expect(row).toMatchObject({
      channel: "mkt",
      rulesChannel: "mkt",
      shipByMs: first.shipByMs,
      warehouses: ["w1"],
      priority: 5,
      partition: orderPartition(orderKey("mkt", "R-1"), h.P),
    });
    expect(listed.partitionsListed).toEqual([0, 1, 2, 3]);
    expect(listed.partitionsNotLocal).toEqual([]);
    expect((await list("&warehouse=w1")).orders.map((o) => o.orderId)).toContain("R-1");
    expect((await list("&warehouse=w2")).orders.map((o) => o.orderId)).not.toContain("R-1");
    expect((await list("&channel=near")).orders.map((o) => o.orderId)).not.toContain("R-1");

    // An order with a near ship-by under the default window: at risk on arrival, its first request flagged.
    await h.order("near", "R-2", [{ lineId: "1", sku: s2, qty: 1 }], {
      shipBy: new Date(Date.now() + 60 * 60_000).toISOString(),
    });
    const near = await h.waitOrder("near", "R-2", released, "released");
    expect(near.atRisk).not.toBeNull();
    const nearRequests = await waitFor(() => {
      const f = h.fulfilmentsOf("near", "R-2");
      return f.length > 0 ? f : null;
    }, "R-2's request");
    expect(nearRequests.map((f) => [f.type, f.warehouse, f.atRisk])).toEqual([["fulfil", "w2", true]]);
    await waitFor(async () => ((await gauge()).get("near/w2") === 1 ? true : null), "gauge near/w2 = 1");
    // Most urgent first; paged.
    const both = (await list()).orders.filter((o) => o.orderId === "R-1" || o.orderId === "R-2");
    expect(both.map((o) => o.orderId)).toEqual(["R-1", "R-2"]);
    const page = await list("&limit=1");
    expect(page.orders).toHaveLength(1);
    expect(page.next).toBe(1);
    expect((await getJson(`${h.base}/v1/orders?atRisk=true&limit=0`)).status).toBe(400);
    expect((await getJson(`${h.base}/v1/orders`)).status).toBe(400);

    // Shipping clears it: no longer counted or listed, and never marked again.
    await h.shipped("w1", "mkt", "R-1", "r1-s1", [{ lineId: "1", qty: 2 }]);
    const shipped = await h.waitOrder("mkt", "R-1", (o) => o.status === "shipped", "shipped");
    expect(shipped.atRisk).toBeNull();
    await waitFor(async () => (!(await gauge()).has("mkt/w1") ? true : null), "gauge mkt/w1 gone");
    expect((await list()).orders.map((o) => o.orderId)).not.toContain("R-1");
    await Bun.sleep(1600); // past the ship-by: nothing fires for a shipped order
    const after = await h.getOrder("mkt", "R-1");
    expect(after?.history.filter((e) => e.event === "at_risk")).toHaveLength(1);
    expect(after?.history.map((e) => e.event)).not.toContain("sla_cancelled");
  }, 30_000);

  test("a restart keeps the count; a timer set before it fires after it, once", async () => {
    const [s3] = skusAcrossPartitions("RISK-R", 1) as [string];
    await h.receive(s3, "w3", 10);
    await h.order("mkt", "R-3", [{ lineId: "1", sku: s3, qty: 1 }]);
    const a = await h.waitOrder("mkt", "R-3", released, "released");
    expect(a.atRisk).toBeNull();
    const before = await gauge();
    expect(before.get("near/w2")).toBe(1); // R-2, from the first test

    await h.sluice.stop();
    await Bun.sleep(Math.max(0, (a.atRiskDueMs as number) - Date.now()) + 100); // its at-risk point passes while down
    await h.startSluice();

    // Counted from the stores at start, before anything is applied: R-2 still at risk.
    expect((await gauge()).get("near/w2")).toBe(1);
    const marked = await h.waitOrder("mkt", "R-3", (o) => o.atRisk != null, "at risk after restart", 10_000);
    expect(marked.history.filter((e) => e.event === "at_risk")).toHaveLength(1);
    await waitFor(async () => ((await gauge()).get("mkt/w3") === 1 ? true : null), "gauge mkt/w3 = 1");
    // The SLA acts at the deadline: cancelled, and no longer at risk.
    const cancelled = await h.waitOrder("mkt", "R-3", (o) => o.status === "cancelled", "SLA cancel", 10_000);
    expect(cancelled.atRisk).toBeNull();
    await waitFor(async () => (!(await gauge()).has("mkt/w3") ? true : null), "gauge mkt/w3 gone");
    const sent = h.fulfilmentsOf("mkt", "R-3").map((f) => [f.type, f.atRisk]);
    expect(sent).toEqual([
      ["fulfil", false],
      ["fulfil", true],
      ["cancel", false],
    ]);
    // Restarted once more: the count is the same (R-2 only).
    await h.restart();
    const counted = await gauge();
    expect(counted.get("near/w2")).toBe(1);
    expect(counted.has("mkt/w3")).toBe(false);
    expect(h.fatal).toEqual([]);
  }, 30_000);

  test("offset is bounded by orders.atRiskOffsetMax: past it 400 naming the key and the filters", async () => {
    const max = 10_000; // the default
    const atMax = await list(`&offset=${max}`);
    expect(atMax.orders).toEqual([]);
    expect(atMax.next).toBeNull();
    for (const offset of [max + 1, Number.MAX_SAFE_INTEGER]) {
      const r = await getJson(`${h.base}/v1/orders?atRisk=true&offset=${offset}&channel=mkt`);
      expect(r.status).toBe(400);
      const body = r.body as { error: string; fix: string };
      expect(body.error).toBe("bad_offset");
      expect(body.fix).toContain("orders.atRiskOffsetMax");
      expect(body.fix).toMatch(/channel=.*warehouse=/);
    }
    expect((await getJson(`${h.base}/v1/orders?atRisk=true&offset=-1`)).status).toBe(400);
  }, 30_000);
});
