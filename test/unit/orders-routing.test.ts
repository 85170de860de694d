import { expect, test } from "bun:test";
import type { LineRequest } from "../../src/domain/ledger/index.ts";
import { parseNetwork } from "../../src/domain/network/index.ts";
import { type Order, Orders, type OrderView } from "../../src/domain/orders/index.ts";

// The order stage's use of routing, on the pure core: the SLA re-route routes with the new deadline, and
// orders written before routing existed (no `decision` on their lines) are handled, not crashed on.

const hourMs = 3_600_000;
const network = (() => {
  const parsed = parseNetwork(
    {
      warehouses: ["w1", "w2"].map((id) => ({
        id,
        // Cut-off 16:00 UTC, next-day delivery: a deadline before the next cut-off filters the warehouse.
        carriers: [{ id: "express", cutoff: "16:00", transitDays: 1 }],
      })),
      channels: [
        { id: "*", slaAction: "reroute", slaShipWithinMs: 2 * hourMs, slaRerouteGraceMs: 48 * hourMs },
      ],
    },
    "t-1",
  );
  if (!parsed.ok) throw new Error(parsed.detail);
  return parsed.value;
})();

class MemView implements OrderView {
  orders = new Map<string, Order>();
  timers: Array<{ dueMs: number; key: string }> = [];
  getOrder = (key: string) => structuredClone(this.orders.get(key));
  getPendingCancels = () => [];
  dueTimers = (nowMs: number) => this.timers.filter((t) => t.dueMs <= nowMs);
}

const limits = { historyCountMax: 50, pendingCancelsPerOrderMax: 4, timersPerTickMax: 100 };
const stock = { onHand: 10, reserved: 0, damaged: 0, qualityControl: 0, safetyStock: 0 };
const routing = { stock: () => ({ w1: stock, w2: stock }), load: () => 0 };

function commit(view: MemView, orders: Orders) {
  const changes = orders.takeChanges();
  for (const o of changes.orders) view.orders.set(o.key, structuredClone(o));
  for (const t of changes.timers) {
    if (t.op === "put") view.timers.push({ dueMs: t.dueMs, key: t.key });
    else view.timers = view.timers.filter((x) => !(x.dueMs === t.dueMs && x.key === t.key));
  }
  return changes;
}

/** A one-line order for SKU A on channel shop, at t0. */
function create(orders: Orders, orderId: string) {
  const shipTo = { region: null, zip: null, lat: null, lon: null };
  const lines = [{ lineId: "1", sku: "A", qty: 1, price: 5 }];
  const input = { channel: "shop", orderId, lines, shipTo, shipByMs: null, priority: 0, split: {} };
  expect(orders.create(`shop.${orderId}`, input, { seq: 1, atMs: t0 })).toEqual({
    ok: true,
    event: "created",
  });
}

// 2026-11-11 15:00 UTC: today's 16:00 cut-off is still ahead.
const t0 = Date.UTC(2026, 10, 11, 15, 0, 0);

test("an SLA re-route routes with the new deadline: carriers whose cut-off the old one missed stay candidates", () => {
  const view = new MemView();
  const orders = new Orders(view, () => network, limits, routing);
  create(orders, "o1");
  const first = commit(view, orders).effects.ledger[0] as Extract<LineRequest, { kind: "reserve" }>;
  expect(first.candidates).toEqual(["w1", "w2"]);
  orders.ledgerResult(
    {
      kind: "reserved",
      ref: { orderKey: "shop.o1", lineId: "1" },
      sku: "A",
      attempt: 1,
      warehouse: "w1",
      qty: 1,
    },
    { seq: 2, atMs: t0 + 1000 },
  );
  commit(view, orders);
  // The 17:00 deadline passes; tomorrow's 16:00 cut-off is after it, but before the new one (+48 h).
  orders.fireDueTimers(t0 + 2 * hourMs);
  const changes = commit(view, orders);
  const reserve = changes.effects.ledger.find((r) => r.kind === "reserve") as Extract<
    LineRequest,
    { kind: "reserve" }
  >;
  expect(reserve.candidates).toEqual(["w2"]);
  const line = changes.orders[0]?.lines[0];
  expect(line?.state).toBe("received");
  expect(line?.decision?.filtered).toContainEqual({ warehouse: "w1", reason: "rejected_before" });
  expect(line?.decision?.filtered.some((f) => f.reason === "cutoff_missed")).toBe(false);
});

test("an order written before routing (no decision on its lines) takes its ledger answer and is released", () => {
  const view = new MemView();
  const orders = new Orders(view, () => network, limits, routing);
  create(orders, "o2");
  commit(view, orders);
  const stored = view.orders.get("shop.o2") as Order;
  for (const l of stored.lines) delete (l as { decision?: unknown }).decision;
  const outcome = orders.ledgerResult(
    {
      kind: "reserved",
      ref: { orderKey: "shop.o2", lineId: "1" },
      sku: "A",
      attempt: 1,
      warehouse: "w1",
      qty: 1,
    },
    { seq: 2, atMs: t0 + 1000 },
  );
  expect(outcome).toEqual({ ok: true, event: "reserved" });
  const changes = commit(view, orders);
  expect(changes.orders[0]?.status).toBe("allocated");
  expect(changes.effects.fulfilment[0]?.lines).toEqual([{ lineId: "1", sku: "A", qty: 1 }]);
});
