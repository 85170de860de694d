import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { emptyPosition, type LineRequest, type Position } from "../../src/domain/ledger/index.ts";
import { type Network, parseNetwork, type Warehouse } from "../../src/domain/network/index.ts";
import { type Order, Orders, type OrderView, type RoutingView } from "../../src/domain/orders/index.ts";
import {
  type LineRoute,
  nextCutoffMs,
  type RouteContext,
  type RouteLine,
  type RouteOrder,
  route,
} from "../../src/domain/routing/index.ts";

// Blind routing: a view fed from ledger partitions in other processes may not know a SKU (RouteContext.known
// false). Unknown is not "none": every warehouse passing the other filters is a candidate, ranked without the
// stock component, and the ledger decides. A view that knows routes exactly as before
// (test/unit/routing.test.ts runs unchanged).

const hourMs = 3_600_000;
const dayMs = 24 * hourMs;
const t0 = Date.UTC(2025, 2, 10, 12);

function net(raw: Record<string, unknown>): Network {
  const parsed = parseNetwork(raw, "blind-v1");
  if (!parsed.ok) throw new Error(parsed.detail);
  return parsed.value;
}

const saoPaulo = { lat: -23.55, lon: -46.63 };
const rio = { lat: -22.91, lon: -43.17 };
const far = { lat: -3.1, lon: -60.02 };

const order = (lines: RouteLine[], more: Partial<RouteOrder> = {}): RouteOrder => ({
  channel: "web",
  shipTo: { region: null, ...saoPaulo },
  shipByMs: t0 + 3 * dayMs,
  split: { mode: "allow_partial", maxShipments: 0 },
  lines,
  used: new Set(),
  ...more,
});

const line = (lineId: string, sku: string, qty: number, excluded: string[] = []): RouteLine => ({
  lineId,
  sku,
  qty,
  excluded,
});

/** A view that knows only the SKUs of `stock`; the others are unknown. */
function partialView(stock: Record<string, Record<string, Position>>, load: Record<string, number> = {}) {
  return {
    stock: (sku: string) => stock[sku],
    known: (sku: string) => sku in stock,
    load: (w: string) => load[w] ?? 0,
    nowMs: t0,
  } satisfies RouteContext;
}

const pos = (onHand: number): Position => ({ ...emptyPosition(), onHand });

describe("a SKU the view does not know", () => {
  const rawNetwork = {
    warehouses: [
      { id: "near", ...saoPaulo, capacityPerDay: 100, minStock: { U: 3 } },
      { id: "mid", ...rio, capacityPerDay: 100 },
      { id: "far", ...far, capacityPerDay: 100 },
      { id: "full", ...saoPaulo, capacityPerDay: 10 },
      { id: "off", ...saoPaulo, enabled: false },
    ],
  };
  const network = net(rawNetwork);

  test("every warehouse passing the other filters is a candidate, by score without stock", () => {
    const r = route(order([line("1", "U", 2)]), network, partialView({}, { full: 10 }));
    const l = r.lines[0] as LineRoute;
    expect(l.decision.stockUnknown).toBe(true);
    expect(l.decision.chosen).toBe("near");
    expect(l.decision.reason).toBe("best_score");
    expect(l.candidates).toEqual(["near", "mid", "far"]);
    // The ledger still keeps each warehouse's minimum stock: it is sent with the candidates.
    expect(l.keep).toEqual([3, 0, 0]);
    expect(l.decision.candidates.map((c) => c.stock)).toEqual([0, 0, 0]);
    expect(l.decision.filtered).toEqual([
      { warehouse: "off", reason: "disabled" },
      { warehouse: "full", reason: "capacity_full" },
    ]);
  });

  test("the filters that do not depend on stock still apply: rejected before, capacity for the line", () => {
    const r = route(order([line("1", "U", 60, ["near"])]), network, partialView({}, { mid: 50 }));
    const l = r.lines[0] as LineRoute;
    expect(l.candidates).toEqual(["far"]);
    expect(l.decision.filtered).toContainEqual({ warehouse: "full", reason: "capacity_full" });
    expect(l.decision.filtered).toContainEqual({ warehouse: "near", reason: "rejected_before" });
    expect(l.decision.filtered).toContainEqual({ warehouse: "mid", reason: "capacity_full" });
  });

  test("a known SKU in the same order is routed on its stock; only the unknown line is blind", () => {
    const view = partialView({ K: { far: pos(5) } });
    const costly = net({ ...rawNetwork, routing: { splitCost: 5 } });
    const r = route(order([line("1", "K", 2), line("2", "U", 1)]), costly, view);
    const [known, blind] = r.lines as [LineRoute, LineRoute];
    expect(known.decision.stockUnknown).toBeUndefined();
    expect(known.decision.chosen).toBe("far");
    expect(known.decision.filtered).toContainEqual({ warehouse: "near", reason: "no_stock" });
    expect(blind.decision.stockUnknown).toBe(true);
    expect(blind.decision.filtered.some((f) => f.reason === "no_stock")).toBe(false);
    // One shipment is cheaper than two (splitCost 5): the blind line goes where the known one must.
    expect(blind.decision.chosen).toBe("far");
    expect(r.shipments).toBe(1);
  });

  test("known and empty is not unknown: no stock, no choice, as before", () => {
    const r = route(order([line("1", "K", 1)]), network, partialView({ K: {} }));
    const l = r.lines[0] as LineRoute;
    expect(l.decision.stockUnknown).toBeUndefined();
    expect(l.decision.chosen).toBeNull();
    expect(l.decision.reason).toBe("no_stock");
  });
});

// ---- properties -----------------------------------------------------------------------------------------

const skus = ["A", "B", "C"] as const;
const hhmm = fc
  .tuple(fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 59 }))
  .map(([h, m]) => `${String(h).padStart(2, "0")}:${String(m).padStart(2, "0")}`);

type Case = { network: Network; order: RouteOrder; ctx: RouteContext; load: Record<string, number> };

const caseArb: fc.Arbitrary<Case> = fc.integer({ min: 1, max: 12 }).chain((n) => {
  const ids = Array.from({ length: n }, (_, i) => `w${i}`);
  const id = fc.constantFrom(...ids);
  const position = fc.record({
    onHand: fc.integer({ min: 0, max: 30 }),
    reserved: fc.integer({ min: 0, max: 5 }),
    damaged: fc.constant(0),
    qualityControl: fc.constant(0),
    safetyStock: fc.integer({ min: 0, max: 2 }),
  });
  return fc
    .record({
      warehouses: fc.array(
        fc.record({
          enabled: fc.oneof(
            { weight: 4, arbitrary: fc.constant(true) },
            { weight: 1, arbitrary: fc.constant(false) },
          ),
          channels: fc.oneof(fc.constant(["*"]), fc.subarray(["web", "pos", "*"])),
          capacityPerDay: fc.integer({ min: 0, max: 80 }),
          lat: fc.double({ min: -60, max: 60, noNaN: true }),
          lon: fc.double({ min: -180, max: 180, noNaN: true }),
          carriers: fc.array(fc.record({ cutoff: hhmm, transitDays: fc.integer({ min: 0, max: 5 }) }), {
            maxLength: 2,
          }),
          minStockDefault: fc.integer({ min: 0, max: 4 }),
        }),
        { minLength: n, maxLength: n },
      ),
      stock: fc.record({ A: fc.dictionary(id, position), B: fc.dictionary(id, position) }),
      unknown: fc.subarray([...skus], { minLength: 1 }),
      load: fc.dictionary(id, fc.integer({ min: 0, max: 60 })),
      channel: fc.constantFrom("web", "pos"),
      shipByAfterMs: fc.integer({ min: 0, max: 3 * dayMs }),
      maxShipments: fc.integer({ min: 0, max: 2 }),
      used: fc.oneof(fc.constant([]), fc.subarray(ids, { maxLength: Math.min(2, n) })),
      lines: fc.array(
        fc.record({
          sku: fc.constantFrom(...skus),
          qty: fc.integer({ min: 1, max: 15 }),
          excluded: fc.oneof(fc.constant([]), fc.subarray(ids, { maxLength: Math.min(2, n) })),
        }),
        { minLength: 1, maxLength: 4 },
      ),
    })
    .map((g): Case => {
      const network = net({
        warehouses: g.warehouses.map((w, i) => ({
          ...w,
          id: ids[i],
          carriers: w.carriers.map((c, k) => ({ id: `c${k}`, ...c })),
        })),
      });
      const stock: Record<string, Record<string, Position>> = {};
      for (const sku of skus) if (!g.unknown.includes(sku)) stock[sku] = g.stock[sku as "A"] ?? {};
      return {
        network,
        order: order(
          g.lines.map((l, i) => ({ lineId: `l${i}`, ...l })),
          {
            channel: g.channel,
            shipByMs: t0 + g.shipByAfterMs,
            split: { mode: "allow_partial", maxShipments: g.maxShipments },
            used: new Set(g.used),
          },
        ),
        ctx: { ...partialView(stock, g.load), known: (sku) => sku in stock },
        load: g.load,
      };
    });
});

/** Reference reading of every filter that does not depend on stock, for one line at one warehouse. */
function passesOtherFilters(w: Warehouse, l: RouteLine, c: Case): boolean {
  const load = c.load[w.id] ?? 0;
  if (!w.enabled || (!w.channels.includes(c.order.channel) && !w.channels.includes("*"))) return false;
  if (load >= w.capacityPerDay || l.qty > w.capacityPerDay - load) return false;
  if (w.carriers.length > 0) {
    const meets = w.carriers.some(
      (k) => nextCutoffMs(t0, k.cutoffMinute, w.utcOffsetMinutes) <= c.order.shipByMs,
    );
    if (!meets) return false;
  }
  if (l.excluded.includes(w.id)) return false;
  const max = c.order.split.maxShipments;
  return !(max > 0 && c.order.used.size >= max && !c.order.used.has(w.id));
}

describe("blind routing: properties", () => {
  test("never an empty candidate list while a warehouse passes the other filters", () => {
    let blindLines = 0;
    fc.assert(
      fc.property(caseArb, (c) => {
        const r = route(c.order, c.network, c.ctx);
        for (const [i, l] of r.lines.entries()) {
          const ln = c.order.lines[i] as RouteLine;
          const unknown = c.ctx.known?.(ln.sku) === false;
          expect(l.decision.stockUnknown === true).toBe(unknown);
          if (!unknown) continue;
          blindLines++;
          const open = c.network.warehouses.filter((w) => passesOtherFilters(w, ln, c)).map((w) => w.id);
          expect(l.decision.filtered.some((f) => f.reason === "no_stock" || f.reason === "min_stock")).toBe(
            false,
          );
          // Every such warehouse is a candidate, and nothing else is.
          expect([...l.candidates].sort()).toEqual([...open].sort());
          if (open.length > 0 && c.order.lines.length === 1) expect(l.decision.chosen).not.toBeNull();
          if (l.decision.chosen !== null) expect(open).toContain(l.decision.chosen);
        }
      }),
      { numRuns: 500 },
    );
    expect(blindLines).toBeGreaterThan(100);
  });

  test("a view that says it knows routes exactly as one that says nothing", () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        const silent: RouteContext = { stock: c.ctx.stock, load: c.ctx.load, nowMs: c.ctx.nowMs };
        const knowing: RouteContext = { ...silent, known: () => true };
        expect(route(c.order, c.network, knowing)).toEqual(route(c.order, c.network, silent));
      }),
      { numRuns: 300 },
    );
  });
});

// ---- through the order stage's core -------------------------------------------------------------------

class MemView implements OrderView {
  orders = new Map<string, Order>();
  getOrder = (key: string) => structuredClone(this.orders.get(key));
  getPendingCancels = () => [];
  dueTimers = () => [];
}

test("the order stage sends a blind line to the ledger with every candidate and keeps stockUnknown", () => {
  const network = net({
    warehouses: [
      { id: "w1", ...saoPaulo },
      { id: "w2", ...rio },
    ],
    channels: [{ id: "*" }],
  });
  const limits = { historyCountMax: 50, pendingCancelsPerOrderMax: 4, timersPerTickMax: 100 };
  const routing: RoutingView = { stock: () => undefined, known: () => false, load: () => 0 };
  const orders = new Orders(new MemView(), () => network, limits, routing);
  const shipTo = { region: null, zip: null, ...saoPaulo };
  const input = {
    channel: "shop",
    orderId: "o1",
    lines: [{ lineId: "1", sku: "REMOTE", qty: 1, price: 5 }],
    shipTo,
    shipByMs: null,
    priority: 0,
    split: {},
  };
  expect(orders.create("shop.o1", input, { seq: 1, atMs: t0 }).ok).toBe(true);
  const changes = orders.takeChanges();
  const reserve = changes.effects.ledger[0] as Extract<LineRequest, { kind: "reserve" }>;
  expect(reserve.candidates).toEqual(["w1", "w2"]);
  const decision = changes.orders[0]?.lines[0]?.decision;
  expect(decision).toMatchObject({ chosen: "w1", reason: "best_score", stockUnknown: true });
});
