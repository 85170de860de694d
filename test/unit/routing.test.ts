import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { available, emptyPosition, type Position } from "../../src/domain/ledger/types.ts";
import { minStockOf, type Network, parseNetwork, type Warehouse } from "../../src/domain/network/index.ts";
import {
  distanceKm,
  type LineRoute,
  nextCutoffMs,
  type RouteContext,
  type RouteLine,
  type RouteOrder,
  type RouteResult,
  route,
} from "../../src/domain/routing/index.ts";

// Hand-worked examples first (every expected score is computed in a comment), then properties over random
// networks and orders. Default weights unless a test says otherwise: distance 1, stock 0.5, load 0.5,
// carrier 0.5, splitCost 1, distanceKmMax 2000, transitDaysMax 7.

const saoPaulo = { lat: -23.55, lon: -46.63 };
const rio = { lat: -22.91, lon: -43.17 };
const beloHorizonte = { lat: -19.92, lon: -43.94 };

const hourMs = 3_600_000;
const dayMs = 24 * hourMs;
/** Monday 2025-03-10 00:00 UTC (21:00 on Sunday in São Paulo, UTC−3). */
const t0 = Date.UTC(2025, 2, 10);

const pos = (onHand: number, more: Partial<Position> = {}): Position => ({
  ...emptyPosition(),
  onHand,
  ...more,
});

function net(raw: Record<string, unknown>, version = "rules-v1"): Network {
  const parsed = parseNetwork(raw, version);
  if (!parsed.ok) throw new Error(parsed.detail);
  return parsed.value;
}

/** A raw warehouse as the TOML would give it: serves every channel, no carriers, ample capacity. */
const wh = (id: string, at: { lat: number; lon: number }, more: Record<string, unknown> = {}) => ({
  id,
  lat: at.lat,
  lon: at.lon,
  region: "SE",
  capacityPerDay: 1000,
  channels: ["*"],
  enabled: true,
  ...more,
});

type Stock = Record<string, Record<string, number | Position>>;

function ctxOf(stock: Stock, load: Record<string, number> = {}, nowMs = t0 + 12 * hourMs): RouteContext {
  const positions: Record<string, Record<string, Position>> = {};
  for (const [sku, byWarehouse] of Object.entries(stock)) {
    positions[sku] = Object.fromEntries(
      Object.entries(byWarehouse).map(([w, p]) => [w, typeof p === "number" ? pos(p) : p]),
    );
  }
  return { stock: (sku) => positions[sku], load: (w) => load[w] ?? 0, nowMs };
}

const line = (lineId: string, sku: string, qty: number, excluded: string[] = []): RouteLine => ({
  lineId,
  sku,
  qty,
  excluded,
});

function orderOf(lines: RouteLine[], more: Partial<RouteOrder> = {}): RouteOrder {
  return {
    channel: "web",
    shipTo: { region: "SE", ...saoPaulo },
    shipByMs: t0 + 3 * dayMs,
    split: { mode: "allow_partial", maxShipments: 0 },
    lines,
    used: new Set(),
    ...more,
  };
}

function only(r: RouteResult): LineRoute {
  expect(r.lines).toHaveLength(1);
  return r.lines[0] as LineRoute;
}

const reasonOf = (l: LineRoute, warehouse: string) =>
  l.decision.filtered.filter((f) => f.warehouse === warehouse).map((f) => f.reason);

// São Paulo → Rio: 1 − 360.62 / 2000 = 0.819688; São Paulo → Belo Horizonte: 1 − 489.98 / 2000 = 0.755008.
const proximityRio = 1 - distanceKm(saoPaulo.lat, saoPaulo.lon, rio.lat, rio.lon) / 2000;
const proximityBh = 1 - distanceKm(saoPaulo.lat, saoPaulo.lon, beloHorizonte.lat, beloHorizonte.lon) / 2000;

describe("geo", () => {
  test("distanceKm matches known great-circle distances within 1 %", () => {
    // Published straight-line distances: São Paulo–Rio ≈ 361 km, São Paulo–BH ≈ 490 km, Rio–BH ≈ 340 km.
    const within = (km: number, known: number) => expect(Math.abs(km - known) / known).toBeLessThan(0.01);
    within(distanceKm(saoPaulo.lat, saoPaulo.lon, rio.lat, rio.lon), 361);
    within(distanceKm(saoPaulo.lat, saoPaulo.lon, beloHorizonte.lat, beloHorizonte.lon), 490);
    within(distanceKm(rio.lat, rio.lon, beloHorizonte.lat, beloHorizonte.lon), 340);
    expect(distanceKm(rio.lat, rio.lon, rio.lat, rio.lon)).toBe(0);
    // Symmetric; antipodes are half the circumference: π × 6371.0088 ≈ 20015.1 km.
    expect(distanceKm(rio.lat, rio.lon, saoPaulo.lat, saoPaulo.lon)).toBeCloseTo(
      distanceKm(saoPaulo.lat, saoPaulo.lon, rio.lat, rio.lon),
      9,
    );
    expect(distanceKm(0, 0, 0, 180)).toBeCloseTo(20015.1, 0);
  });

  test("nextCutoffMs: today's cut-off until it passes, then tomorrow's, in warehouse local time", () => {
    const at = (h: number, m = 0) => t0 + h * hourMs + m * 60_000;
    const four = 16 * 60; // "16:00"
    // UTC warehouse: at 12:00 the 16:00 cut-off is still today; at 17:00 it is tomorrow's.
    expect(nextCutoffMs(at(12), four, 0)).toBe(at(16));
    expect(nextCutoffMs(at(17), four, 0)).toBe(at(24 + 16));
    // Exactly at the cut-off the parcel still makes it.
    expect(nextCutoffMs(at(16), four, 0)).toBe(at(16));
    expect(nextCutoffMs(at(16) + 1, four, 0)).toBe(at(24 + 16));
    // São Paulo (UTC−3): 16:00 local is 19:00 UTC, so at 17:00 UTC (14:00 local) it is still today.
    expect(nextCutoffMs(at(17), four, -180)).toBe(at(19));
    // At 01:00 UTC on the 11th it is 22:00 on the 10th in São Paulo: next is 16:00 local on the 11th.
    expect(nextCutoffMs(at(25), four, -180)).toBe(at(24 + 19));
    // Tokyo (UTC+9), cut-off 10:00 local = 01:00 UTC. At 00:30 UTC (09:30 local) it is today's;
    // at 20:00 UTC (05:00 local on the 11th) it is 10:00 local on the 11th = 01:00 UTC on the 11th.
    expect(nextCutoffMs(at(0, 30), 10 * 60, 540)).toBe(at(1));
    expect(nextCutoffMs(at(20), 10 * 60, 540)).toBe(at(25));
  });

  test("nextCutoffMs: within a day from now, and on the cut-off minute in local time", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 365 * dayMs }),
        fc.integer({ min: 0, max: 24 * 60 - 1 }),
        fc.integer({ min: -840, max: 840 }),
        (offsetMs, cutoffMinute, utcOffsetMinutes) => {
          const now = t0 + offsetMs;
          const next = nextCutoffMs(now, cutoffMinute, utcOffsetMinutes);
          expect(next).toBeGreaterThanOrEqual(now);
          expect(next).toBeLessThan(now + dayMs);
          const local = next + utcOffsetMinutes * 60_000;
          expect((((local % dayMs) + dayMs) % dayMs) / 60_000).toBe(cutoffMinute);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe("route: scoring and filters, hand-worked", () => {
  test("a nearer warehouse wins at equal stock; the decision shows every component", () => {
    const network = net({ warehouses: [wh("bh", beloHorizonte), wh("rio", rio)] });
    const r = route(orderOf([line("l1", "A", 10)]), network, ctxOf({ A: { rio: 100, bh: 100 } }));
    const l = only(r);
    // Both keep 90 after the line → stock 90/90 = 1; load 0 → 1; no carriers → 0.
    // rio: 1 × 0.819688 + 0.5 × 1 + 0.5 × 1 + 0.5 × 0 = 1.819688 → 1.82
    // bh:  1 × 0.755008 + 0.5 + 0.5 + 0              = 1.755008 → 1.755
    expect(l.lineId).toBe("l1");
    expect(l.candidates).toEqual(["rio", "bh"]);
    expect(l.keep).toEqual([0, 0]);
    expect(r.shipments).toBe(1);
    const d = l.decision;
    expect(d).toMatchObject({
      rules: "rules-v1",
      atMs: t0 + 12 * hourMs,
      chosen: "rio",
      reason: "best_score",
      shipments: 1,
      score: 1.82,
      filtered: [],
    });
    expect(d.candidates).toEqual([
      {
        warehouse: "rio",
        score: 1.82,
        distanceKm: 360.6,
        proximity: 0.82,
        stock: 1,
        load: 1,
        carrier: 0,
        carrierId: null,
      },
      {
        warehouse: "bh",
        score: 1.755,
        distanceKm: 490,
        proximity: 0.755,
        stock: 1,
        load: 1,
        carrier: 0,
        carrierId: null,
      },
    ]);
    expect(proximityRio).toBeCloseTo(0.819688, 5);
    expect(proximityBh).toBeCloseTo(0.755008, 5);
  });

  test("distance is capped at distanceKmMax; without coordinates the region decides", () => {
    // distanceKmMax 400: rio 1 − 360.62/400 = 0.0984; bh at 490 km ≥ 400 → 0.
    const capped = net({
      warehouses: [wh("rio", rio), wh("bh", beloHorizonte)],
      routing: { distanceKmMax: 400 },
    });
    const d = only(route(orderOf([line("l1", "A", 1)]), capped, ctxOf({ A: { rio: 9, bh: 9 } }))).decision;
    expect(d.candidates.map((c) => [c.warehouse, c.proximity])).toEqual([
      ["rio", 0.098],
      ["bh", 0],
    ]);
    // No ship-to coordinates: same region 1, another region 0.25, a warehouse with no region 0.5.
    const regional = net({
      warehouses: [
        { id: "north", region: "N", channels: ["*"] },
        { id: "south", region: "S", channels: ["*"] },
        { id: "nowhere", channels: ["*"] },
      ],
    });
    const o = orderOf([line("l1", "A", 1)], { shipTo: { region: "S", lat: null, lon: null } });
    const rd = only(route(o, regional, ctxOf({ A: { north: 5, south: 5, nowhere: 5 } }))).decision;
    expect(rd.chosen).toBe("south");
    expect(Object.fromEntries(rd.candidates.map((c) => [c.warehouse, [c.distanceKm, c.proximity]]))).toEqual({
      north: [null, 0.25],
      south: [null, 1],
      nowhere: [null, 0.5],
    });
  });

  test("a full warehouse is skipped (capacity_full); so is one the line would overfill", () => {
    const network = net({
      warehouses: [wh("rio", rio, { capacityPerDay: 100 }), wh("bh", beloHorizonte, { capacityPerDay: 100 })],
    });
    const stock = { A: { rio: 100, bh: 100 } };
    // Load 100 of 100: rio is full before any line is looked at.
    const full = only(route(orderOf([line("l1", "A", 10)]), network, ctxOf(stock, { rio: 100 })));
    expect(full.decision.chosen).toBe("bh");
    expect(full.decision.reason).toBe("best_score");
    expect(full.candidates).toEqual(["bh"]);
    expect(reasonOf(full, "rio")).toEqual(["capacity_full"]);
    expect(full.decision.candidates.map((c) => c.warehouse)).toEqual(["bh"]);
    // Load 95 + 10 > 100: rio cannot take this line.
    const over = only(route(orderOf([line("l1", "A", 10)]), network, ctxOf(stock, { rio: 95 })));
    expect(over.decision.chosen).toBe("bh");
    // Load 90 + 10 = 100 fits exactly. Load component 1 − 90/100 = 0.1:
    // rio 0.819688 + 0.5 × 1 + 0.5 × 0.1 = 1.369688 < bh 1.755008, so bh still wins on load…
    const exact = only(route(orderOf([line("l1", "A", 10)]), network, ctxOf(stock, { rio: 90 })));
    expect(exact.decision.chosen).toBe("bh");
    expect(exact.decision.candidates.map((c) => [c.warehouse, c.load, c.score])).toEqual([
      ["bh", 1, 1.755],
      ["rio", 0.1, 1.37],
    ]);
    // …and with loadWeight 0 it is rio's: load + qty = capacity is not over capacity.
    const noLoad = net({
      warehouses: [wh("rio", rio, { capacityPerDay: 100 }), wh("bh", beloHorizonte, { capacityPerDay: 100 })],
      routing: { loadWeight: 0 },
    });
    expect(
      only(route(orderOf([line("l1", "A", 10)]), noLoad, ctxOf(stock, { rio: 90 }))).decision.chosen,
    ).toBe("rio");
    // capacityPerDay 0 is always full.
    const closed = net({ warehouses: [wh("rio", rio, { capacityPerDay: 0 })] });
    const c = only(route(orderOf([line("l1", "A", 1)]), closed, ctxOf(stock)));
    expect(c.decision).toMatchObject({ chosen: null, reason: "no_candidate" });
    expect(c.candidates).toEqual([]);
    expect(reasonOf(c, "rio")).toEqual(["capacity_full"]);
  });

  test("two lines together may not overfill a warehouse's capacity", () => {
    // rio has 15 units of capacity left: one line of 10 fits, not two. loadWeight 0 so that rio's load does
    // not decide: rio 0.819688 + 0.5 × 1 = 1.319688 > bh 0.755008 + 0.5 = 1.255008 for either line.
    const network = net({
      warehouses: [wh("rio", rio, { capacityPerDay: 100 }), wh("bh", beloHorizonte)],
      routing: { splitCost: 0, loadWeight: 0 },
    });
    const r = route(
      orderOf([line("l1", "A", 10), line("l2", "B", 10)]),
      network,
      ctxOf({ A: { rio: 50, bh: 50 }, B: { rio: 50, bh: 50 } }, { rio: 85 }),
    );
    // Both lines have two options: l1 first takes rio, then l2 no longer fits there.
    expect(r.lines.map((l) => l.decision.chosen)).toEqual(["rio", "bh"]);
    expect(r.shipments).toBe(2);
  });

  describe("carriers and cut-offs", () => {
    // rio hands over to one carrier at 16:00 São Paulo time (UTC−3) = 19:00 UTC, 2 days in transit.
    const rioCarrier = wh("rio", rio, {
      utcOffsetMinutes: -180,
      carriers: [{ id: "correios", cutoff: "16:00", transitDays: 2 }],
    });
    const network = net({ warehouses: [rioCarrier, wh("bh", beloHorizonte)] });
    const stock = { A: { rio: 100, bh: 100 } };
    // Ship by tomorrow 12:00 UTC (09:00 local): before tomorrow's cut-off (19:00 UTC).
    const o = orderOf([line("l1", "A", 5)], { shipByMs: t0 + dayMs + 12 * hourMs });

    test("a missed cut-off is skipped (cutoff_missed)", () => {
      // 20:00 UTC = 17:00 local: today's cut-off has passed, tomorrow's is after the ship-by.
      const l = only(route(o, network, ctxOf(stock, {}, t0 + 20 * hourMs)));
      expect(l.decision).toMatchObject({ chosen: "bh", reason: "best_score" });
      expect(l.candidates).toEqual(["bh"]);
      expect(reasonOf(l, "rio")).toEqual(["cutoff_missed"]);
      // bh has no carriers: no cut-off filter, carrier component 0.
      expect(l.decision.candidates[0]).toMatchObject({ warehouse: "bh", carrier: 0, carrierId: null });
    });

    test("before the cut-off the carrier scores 1 − transit / transitDaysMax", () => {
      // 18:00 UTC = 15:00 local. rio: 0.819688 + 0.5 + 0.5 + 0.5 × (1 − 2/7 = 0.714286) = 2.176831.
      const l = only(route(o, network, ctxOf(stock, {}, t0 + 18 * hourMs)));
      expect(l.decision.chosen).toBe("rio");
      expect(l.decision.candidates[0]).toMatchObject({
        warehouse: "rio",
        carrier: 0.714,
        carrierId: "correios",
        score: 2.177,
      });
      expect(l.decision.filtered).toEqual([]);
    });

    test("utcOffsetMinutes shifts the cut-off", () => {
      // At 17:00 UTC a 16:00 cut-off has passed in UTC, not in São Paulo (14:00 local).
      const at = t0 + 17 * hourMs;
      const utc = net({ warehouses: [{ ...rioCarrier, utcOffsetMinutes: 0 }, wh("bh", beloHorizonte)] });
      expect(reasonOf(only(route(o, utc, ctxOf(stock, {}, at))), "rio")).toEqual(["cutoff_missed"]);
      expect(only(route(o, network, ctxOf(stock, {}, at))).decision.chosen).toBe("rio");
      // A ship-by exactly at the next cut-off still meets it: tomorrow 19:00 UTC, asked at 20:00 UTC.
      const late = { ...o, shipByMs: t0 + dayMs + 19 * hourMs };
      expect(only(route(late, network, ctxOf(stock, {}, t0 + 20 * hourMs))).decision.chosen).toBe("rio");
    });

    test("the fastest carrier that still meets the deadline counts; fewer transit days score higher", () => {
      // Two warehouses at the same place, same stock: only the carrier differs.
      const twins = net({
        warehouses: [
          wh("slow", rio, { carriers: [{ id: "truck", cutoff: "23:00", transitDays: 5 }] }),
          wh("fast", rio, {
            carriers: [
              { id: "air", cutoff: "12:00", transitDays: 1 },
              { id: "road", cutoff: "23:00", transitDays: 3 },
              { id: "boat", cutoff: "23:00", transitDays: 30 },
            ],
          }),
        ],
      });
      const s = { A: { slow: 50, fast: 50 } };
      // 10:00 UTC: air's 12:00 cut-off is ahead → fast 1 − 1/7 = 0.857143; slow 1 − 5/7 = 0.285714.
      const morning = only(route(o, twins, ctxOf(s, {}, t0 + 10 * hourMs))).decision;
      expect(morning.chosen).toBe("fast");
      expect(morning.candidates.map((c) => [c.warehouse, c.carrierId, c.carrier])).toEqual([
        ["fast", "air", 0.857],
        ["slow", "truck", 0.286],
      ]);
      // 13:00 UTC: air's next cut-off is tomorrow 12:00 ≤ ship-by tomorrow 12:00, so it still meets it.
      const afternoon = only(route(o, twins, ctxOf(s, {}, t0 + 13 * hourMs))).decision;
      expect(afternoon.candidates[0]).toMatchObject({ warehouse: "fast", carrierId: "air" });
      // Ship-by today 23:30: air is out (tomorrow 12:00); road (3 days) → 1 − 3/7 = 0.571429.
      const tight = { ...o, shipByMs: t0 + 23.5 * hourMs };
      const d = only(route(tight, twins, ctxOf(s, {}, t0 + 13 * hourMs))).decision;
      expect(d.candidates.map((c) => [c.warehouse, c.carrierId, c.carrier])).toEqual([
        ["fast", "road", 0.571],
        ["slow", "truck", 0.286],
      ]);
      // transitDays ≥ transitDaysMax scores 0 (not negative).
      const boatOnly = net({
        warehouses: [wh("b", rio, { carriers: [{ id: "boat", cutoff: "23:00", transitDays: 30 }] })],
      });
      const b = only(route(o, boatOnly, ctxOf({ A: { b: 5 } }, {}, t0))).decision;
      expect(b.candidates[0]).toMatchObject({ carrier: 0, carrierId: "boat" });
    });
  });

  describe("split cost", () => {
    // rio (nearest) has only SKU A; bh (farther) has A and B. Every option keeps 90 of 100 → stock 1, load 1.
    // l1 (A): rio 1.819688, bh 1.755008; l2 (B): bh 1.755008. Splitting gains 1.819688 − 1.755008 = 0.06468.
    const stock = { A: { rio: 100, bh: 100 }, B: { bh: 100 } };
    const twoLines = orderOf([line("l1", "A", 10), line("l2", "B", 10)]);
    const withSplitCost = (splitCost: number) =>
      route(
        twoLines,
        net({ warehouses: [wh("rio", rio), wh("bh", beloHorizonte)], routing: { splitCost } }),
        ctxOf(stock),
      );

    test("fewest shipments beats nearest when splitting is costly", () => {
      for (const splitCost of [1, 0.08]) {
        const r = withSplitCost(splitCost);
        expect(r.shipments).toBe(1);
        const [l1, l2] = r.lines as [LineRoute, LineRoute];
        expect(l1.decision).toMatchObject({
          chosen: "bh",
          reason: "fewer_shipments",
          shipments: 1,
          score: 1.755,
        });
        // The line's own best is still listed first among the scored candidates.
        expect(l1.decision.candidates.map((c) => c.warehouse)).toEqual(["rio", "bh"]);
        expect(l1.candidates).toEqual(["bh", "rio"]);
        expect(l2.decision).toMatchObject({ chosen: "bh", reason: "best_score", shipments: 1 });
      }
    });

    test("with a cheap split each line goes to its best warehouse", () => {
      for (const splitCost of [0, 0.05]) {
        const r = withSplitCost(splitCost);
        expect(r.shipments).toBe(2);
        expect(r.lines.map((l) => [l.decision.chosen, l.decision.reason, l.decision.shipments])).toEqual([
          ["rio", "best_score", 2],
          ["bh", "best_score", 2],
        ]);
      }
    });

    test("a warehouse the order already ships from costs no extra shipment", () => {
      // Re-routing l1 alone with rio already used: rio is free of split cost, bh is not (1.755 − 1 < 1.82).
      const r = route(
        orderOf([line("l1", "A", 10)], { used: new Set(["rio"]) }),
        net({ warehouses: [wh("rio", rio), wh("bh", beloHorizonte)], routing: { splitCost: 1 } }),
        ctxOf(stock),
      );
      expect(only(r).decision.chosen).toBe("rio");
      expect(r.shipments).toBe(1);
      // Used bh and a huge split cost: l1 stays with bh although rio scores higher.
      const r2 = route(
        orderOf([line("l1", "A", 10)], { used: new Set(["bh"]) }),
        net({ warehouses: [wh("rio", rio), wh("bh", beloHorizonte)], routing: { splitCost: 1000 } }),
        ctxOf(stock),
      );
      expect(only(r2).decision).toMatchObject({ chosen: "bh", reason: "fewer_shipments", shipments: 1 });
    });
  });

  describe("min stock", () => {
    // rio has 12 of A; a line of 10 leaves 2. stockWeight 0 so that balance does not decide:
    // rio 0.819688 + 0.5 = 1.319688 > bh 0.755008 + 0.5 = 1.255008 whenever rio is allowed.
    const stock = { A: { rio: 12, bh: 50 } };
    const routing = { stockWeight: 0 };

    test("minStockDefault filters a warehouse the allocation would leave below it (min_stock)", () => {
      const network = net({
        warehouses: [wh("rio", rio, { minStockDefault: 5 }), wh("bh", beloHorizonte)],
        routing,
      });
      const l = only(route(orderOf([line("l1", "A", 10)]), network, ctxOf(stock)));
      expect(l.decision.chosen).toBe("bh");
      expect(reasonOf(l, "rio")).toEqual(["min_stock"]);
      // rio stays a fallback in the ledger's list (the view may be stale), after bh, with what it must keep.
      expect(l.candidates).toEqual(["bh", "rio"]);
      expect(l.keep).toEqual([0, 5]);
      expect(l.decision.candidates.map((c) => c.warehouse)).toEqual(["bh"]);
      // 12 − 7 = 5 ≥ 5: a line of 7 fits.
      expect(only(route(orderOf([line("l1", "A", 7)]), network, ctxOf(stock))).decision.chosen).toBe("rio");
    });

    test("a per-SKU minStock overrides the default, both ways", () => {
      const lenient = net({
        warehouses: [wh("rio", rio, { minStockDefault: 5, minStock: { A: 0 } }), wh("bh", beloHorizonte)],
        routing,
      });
      const l = only(route(orderOf([line("l1", "A", 10)]), lenient, ctxOf(stock)));
      expect(l.decision.chosen).toBe("rio");
      expect(l.keep).toEqual([0, 0]);
      const strict = net({
        warehouses: [wh("rio", rio, { minStock: { A: 3 } }), wh("bh", beloHorizonte, { minStockDefault: 1 })],
        routing,
      });
      const s = only(route(orderOf([line("l1", "A", 10)]), strict, ctxOf(stock)));
      expect(s.decision.chosen).toBe("bh");
      expect(s.candidates).toEqual(["bh", "rio"]);
      expect(s.keep).toEqual([1, 3]);
      expect(reasonOf(s, "rio")).toEqual(["min_stock"]);
    });

    test("too little stock is no_stock; unavailable units (reserved, held, safety) do not count", () => {
      const network = net({ warehouses: [wh("rio", rio), wh("bh", beloHorizonte)] });
      // rio: 30 on hand − 10 reserved − 5 damaged − 4 QC − 3 safety = 8 available < 10.
      const held = pos(30, { reserved: 10, damaged: 5, qualityControl: 4, safetyStock: 3 });
      expect(available(held)).toBe(8);
      const l = only(route(orderOf([line("l1", "A", 10)]), network, ctxOf({ A: { rio: held, bh: 50 } })));
      expect(l.decision.chosen).toBe("bh");
      expect(reasonOf(l, "rio")).toEqual(["no_stock"]);
      // No warehouse has it: no choice, reason no_stock, both still offered to the ledger.
      const none = only(route(orderOf([line("l1", "Z", 1)]), network, ctxOf({})));
      expect(none.decision).toMatchObject({ chosen: null, reason: "no_stock", score: 0, candidates: [] });
      expect(none.candidates).toEqual(["rio", "bh"]);
      expect(none.keep).toEqual([0, 0]);
    });
  });

  describe("warehouses never chosen", () => {
    test("disabled, not serving the channel, and rejected before: not chosen, not candidates", () => {
      const network = net({
        warehouses: [
          wh("off", saoPaulo, { enabled: false }),
          wh("b2b", saoPaulo, { channels: ["b2b"] }),
          wh("rejected", saoPaulo, { channels: ["web"] }),
          wh("rio", rio, { channels: ["web", "b2b"] }),
          wh("bh", beloHorizonte),
        ],
      });
      const all = { off: 100, b2b: 100, rejected: 100, rio: 100, bh: 100 };
      const l = only(route(orderOf([line("l1", "A", 1, ["rejected"])]), network, ctxOf({ A: all })));
      expect(l.decision.chosen).toBe("rio");
      expect(l.candidates).toEqual(["rio", "bh"]);
      expect(l.decision.candidates.map((c) => c.warehouse)).toEqual(["rio", "bh"]);
      expect(l.decision.filtered).toEqual([
        { warehouse: "off", reason: "disabled" },
        { warehouse: "b2b", reason: "not_serving_channel" },
        { warehouse: "rejected", reason: "rejected_before" },
      ]);
      // Nothing left: no candidate at all.
      const none = only(
        route(orderOf([line("l1", "A", 1, ["rio", "bh", "rejected"])]), network, ctxOf({ A: all })),
      );
      expect(none.decision).toMatchObject({ chosen: null, reason: "no_candidate" });
      expect(none.candidates).toEqual([]);
    });

    test("max shipments reached: a re-routed line is only offered the warehouses already used", () => {
      const network = net({ warehouses: [wh("rio", rio), wh("bh", beloHorizonte), wh("sp", saoPaulo)] });
      const o = orderOf([line("l2", "A", 5)], {
        split: { mode: "allow_partial", maxShipments: 1 },
        used: new Set(["bh"]),
      });
      const r = route(o, network, ctxOf({ A: { rio: 100, bh: 100, sp: 100 } }));
      const l = only(r);
      expect(l.decision).toMatchObject({ chosen: "bh", shipments: 1 });
      expect(l.candidates).toEqual(["bh"]);
      expect(l.keep).toEqual([0]);
      expect(reasonOf(l, "rio")).toEqual(["max_shipments"]);
      expect(reasonOf(l, "sp")).toEqual(["max_shipments"]);
      expect(r.shipments).toBe(1);
      // If the used warehouse has no stock the line gets no choice rather than a third shipment.
      const dry = only(route(o, network, ctxOf({ A: { rio: 100, bh: 0, sp: 100 } })));
      expect(dry.decision.chosen).toBeNull();
      expect(dry.candidates).toEqual(["bh"]);
    });

    test("max shipments not yet reached: a first routing is bounded in its choices, not its fallbacks", () => {
      // Three lines, each SKU only at its own warehouse, maxShipments 2: two lines are placed, one is not.
      const network = net({
        warehouses: [wh("rio", rio), wh("bh", beloHorizonte), wh("sp", saoPaulo)],
        routing: { splitCost: 0 },
      });
      const r = route(
        orderOf([line("l1", "A", 1), line("l2", "B", 1), line("l3", "C", 1)], {
          split: { mode: "allow_partial", maxShipments: 2 },
        }),
        network,
        ctxOf({ A: { rio: 5 }, B: { bh: 5 }, C: { sp: 5 } }),
      );
      // Each line has one option; lines in order: l1 → rio, l2 → bh, then the order is at its maximum.
      expect(r.lines.map((l) => l.decision.chosen)).toEqual(["rio", "bh", null]);
      expect(r.shipments).toBe(2);
      // The ledger may still try every warehouse (the order stage applies max shipments afterwards).
      for (const l of r.lines) expect(l.candidates).toHaveLength(3);
    });
  });

  describe("stock health", () => {
    test("at equal distance the warehouse left with more stock scores higher", () => {
      // Both at the ship-to point: proximity 1. Line of 10: w1 keeps 20, w2 keeps 90 (the most) →
      // stock w1 = 20/90 = 0.222222, w2 = 1. w1: 1 + 0.5 × 0.222222 + 0.5 = 1.611111; w2: 1 + 0.5 + 0.5 = 2.
      const network = net({ warehouses: [wh("w1", saoPaulo), wh("w2", saoPaulo)] });
      const d = only(
        route(orderOf([line("l1", "A", 10)]), network, ctxOf({ A: { w1: 30, w2: 100 } })),
      ).decision;
      expect(d.chosen).toBe("w2");
      expect(d.candidates.map((c) => [c.warehouse, c.distanceKm, c.stock, c.score])).toEqual([
        ["w2", 0, 1, 2],
        ["w1", 0, 0.222, 1.611],
      ]);
      // Both left with nothing: neither is healthier (stock 1 each), the first listed wins the tie.
      const empty = only(route(orderOf([line("l1", "A", 10)]), network, ctxOf({ A: { w1: 10, w2: 10 } })));
      expect(empty.decision.candidates.map((c) => c.stock)).toEqual([1, 1]);
      expect(empty.decision.chosen).toBe("w1");
    });

    test("the same SKU on two lines never double-counts stock", () => {
      // w1 (nearer) has 15 of A: room for one line of 10, not two. w2 has 100. stockWeight 0 so that
      // balance does not decide: w1 0.819688 + 0.5 = 1.319688 > w2 0.755008 + 0.5 = 1.255008.
      const network = net({
        warehouses: [wh("w1", rio), wh("w2", beloHorizonte)],
        routing: { splitCost: 0, stockWeight: 0 },
      });
      const r = route(
        orderOf([line("l1", "A", 10), line("l2", "A", 10)]),
        network,
        ctxOf({ A: { w1: 15, w2: 100 } }),
      );
      expect(r.lines.map((l) => l.decision.chosen)).toEqual(["w1", "w2"]);
      expect(r.shipments).toBe(2);
      // Only w1: one line is placed, the other is not.
      const alone = net({ warehouses: [wh("w1", rio)] });
      const r2 = route(orderOf([line("l1", "A", 10), line("l2", "A", 10)]), alone, ctxOf({ A: { w1: 15 } }));
      expect(r2.lines.map((l) => l.decision.chosen)).toEqual(["w1", null]);
      expect(r2.lines[1]?.decision.reason).toBe("no_stock");
      // Min stock counts the order's total: 25 − 20 = 5 ≥ 5 fits both, 24 − 20 = 4 < 5 does not.
      const kept = net({ warehouses: [wh("w1", rio, { minStockDefault: 5 })] });
      const both = (n: number) =>
        route(orderOf([line("l1", "A", 10), line("l2", "A", 10)]), kept, ctxOf({ A: { w1: n } })).lines.map(
          (l) => l.decision.chosen,
        );
      expect(both(25)).toEqual(["w1", "w1"]);
      expect(both(24)).toEqual(["w1", null]);
    });
  });

  test("the split mode does not change the routing (ship complete is applied by the order stage)", () => {
    const network = net({ warehouses: [wh("rio", rio), wh("bh", beloHorizonte)], routing: { splitCost: 0 } });
    const lines = [line("l1", "A", 10), line("l2", "B", 10)];
    const stock = ctxOf({ A: { rio: 100, bh: 100 }, B: { bh: 100 } });
    const partial = route(orderOf(lines), network, stock);
    const complete = route(
      orderOf(lines, { split: { mode: "ship_complete", maxShipments: 0 } }),
      network,
      stock,
    );
    expect(complete).toEqual(partial);
  });
});

// Gaps found while writing these tests (each was a `test.failing` until the router was fixed).
describe("gaps found and fixed", () => {
  test("a warehouse the line would overfill is reported as such, not as 'fewer_shipments'", () => {
    // One line, one shipment either way. rio scores higher (loadWeight 0: 1.319688 vs bh 1.255008) but has
    // 5 units of capacity left for a line of 10. Was: chosen bh with reason "fewer_shipments", rio absent
    // from `filtered`, rio first in decision.candidates and still a fallback in `candidates` for the ledger.
    const network = net({
      warehouses: [wh("rio", rio, { capacityPerDay: 100 }), wh("bh", beloHorizonte, { capacityPerDay: 100 })],
      routing: { loadWeight: 0 },
    });
    const l = only(
      route(orderOf([line("l1", "A", 10)]), network, ctxOf({ A: { rio: 100, bh: 100 } }, { rio: 95 })),
    );
    expect(l.decision.chosen).toBe("bh");
    expect(l.decision.reason).toBe("best_score");
    expect(reasonOf(l, "rio")).toEqual(["capacity_full"]);
    expect(l.candidates).toEqual(["bh"]);
  });

  test("a warehouse filtered for max_shipments is not also listed among the decision's candidates", () => {
    // Re-route with maxShipments 1 and bh already used: filtered says rio is max_shipments, yet before the fix
    // decision.candidates lists rio (first, 1.82) and the reason is "fewer_shipments".
    const network = net({ warehouses: [wh("rio", rio), wh("bh", beloHorizonte)] });
    const o = orderOf([line("l2", "A", 5)], {
      split: { mode: "allow_partial", maxShipments: 1 },
      used: new Set(["bh"]),
    });
    const d = only(route(o, network, ctxOf({ A: { rio: 100, bh: 100 } }))).decision;
    expect(d.filtered).toEqual([{ warehouse: "rio", reason: "max_shipments" }]);
    expect(d.candidates.map((c) => c.warehouse)).toEqual(["bh"]);
  });

  test("fewest shipments when no single warehouse has every line (greedy is not optimal)", () => {
    // sp (proximity 1) has P; rio (0.82) has P and Q; bh1, bh2 (0.755) have Q and R, R. splitCost 1000.
    // Two shipments suffice: l1 → rio, l2 → rio or bh1, l3 → bh1 — or l1, l2 → rio and l3 → bh1.
    // Greedy (every line has two options, so line order): l1 → sp (best), l2 → rio (new either way, higher
    // score than bh1), l3 → bh1 (new either way): three shipments; no single site exists to fall back to.
    const network = net({
      warehouses: [wh("sp", saoPaulo), wh("rio", rio), wh("bh1", beloHorizonte), wh("bh2", beloHorizonte)],
      routing: { splitCost: 1000 },
    });
    const r = route(
      orderOf([line("l1", "P", 1), line("l2", "Q", 1), line("l3", "R", 1)]),
      network,
      ctxOf({ P: { sp: 9, rio: 9 }, Q: { rio: 9, bh1: 9 }, R: { bh1: 9, bh2: 9 } }),
    );
    expect(r.lines.every((l) => l.decision.chosen !== null)).toBe(true);
    expect(r.shipments).toBe(2);
  });
});

describe("parseNetwork refuses bad rule sets with a clear message", () => {
  const refuses = (raw: unknown, detail: string | RegExp) => {
    const parsed = parseNetwork(raw, "v");
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.detail).toMatch(detail);
  };
  const carrier = (cutoff: unknown) => ({
    warehouses: [wh("rio", rio, { carriers: [{ id: "c", cutoff, transitDays: 1 }] })],
  });

  test("cut-offs must be HH:MM in 24 h", () => {
    for (const bad of ["25:00", "24:00", "9:00", "12:60", "noon", 1600, null]) {
      refuses(carrier(bad), 'warehouses[0].carriers[0].cutoff must be a time "HH:MM"');
    }
    const ok = parseNetwork(carrier("23:59"), "v");
    expect(ok.ok && ok.value.warehouses[0]?.carriers[0]?.cutoffMinute).toBe(23 * 60 + 59);
  });

  test("carriers must be a list of well-formed tables", () => {
    refuses(
      { warehouses: [wh("rio", rio, { carriers: { id: "c" } })] },
      "warehouses[0].carriers must be a list",
    );
    refuses(
      { warehouses: [wh("rio", rio, { carriers: ["c"] })] },
      "warehouses[0].carriers[0] must be a table",
    );
    refuses(
      { warehouses: [wh("rio", rio, { carriers: [{ id: "c", cutoff: "10:00", transitDays: -1 }] })] },
      "warehouses[0].carriers[0].transitDays must be a whole number of days in [0, 365]",
    );
  });

  test("weights must be in [0, 1000]; scales whole and ≥ 1; unknown routing keys are named", () => {
    refuses({ routing: { distanceWeight: -0.1 } }, "routing.distanceWeight must be a number in [0, 1000]");
    refuses({ routing: { splitCost: 1001 } }, "routing.splitCost must be a number in [0, 1000]");
    refuses({ routing: { stockWeight: "1" } }, "routing.stockWeight must be a number");
    refuses({ routing: { distanceKmMax: 0 } }, "routing.distanceKmMax must be a whole number in [1, 100000]");
    refuses({ routing: { transitDaysMax: 1.5 } }, "routing.transitDaysMax must be a whole number");
    refuses(
      { routing: { speedWeight: 1 } },
      /^routing\.speedWeight is not a routing setting; known: distanceWeight/,
    );
    refuses({ routing: [] }, "routing must be a table");
  });

  test("warehouses: unique ids, coordinates in range, min stock whole and ≥ 0", () => {
    refuses(
      { warehouses: [wh("rio", rio), wh("rio", beloHorizonte)] },
      'warehouses[1].id "rio" is listed twice',
    );
    refuses({ warehouses: [wh("x", { lat: 91, lon: 0 })] }, "warehouses[0].lat must be in [-90, 90]");
    refuses({ warehouses: [wh("x", { lat: 0, lon: -180.5 })] }, "warehouses[0].lon must be in [-180, 180]");
    refuses(
      { warehouses: [wh("x", rio, { minStock: { A: -1 } })] },
      'warehouses[0].minStock."A" must be a whole',
    );
    refuses({ warehouses: [wh("x", rio, { minStockDefault: -1 })] }, "warehouses[0].minStockDefault must be");
    refuses({ warehouses: [wh("x", rio, { minStock: [1] })] }, "warehouses[0].minStock must be a table");
    refuses({ warehouses: [wh("x", rio, { utcOffsetMinutes: 900 })] }, "warehouses[0].utcOffsetMinutes");
    refuses({ warehouses: [wh("x", rio, { capacityPerDay: -1 })] }, "warehouses[0].capacityPerDay");
    refuses({ warehouses: [wh("", rio)] }, "warehouses[0].id must be a non-empty string");
    refuses({ warehouses: {} }, "warehouses and channels must be arrays");
    refuses("nope", "network must be a table");
  });

  test("defaults fill what the rule set leaves out", () => {
    const n = net({ warehouses: [{ id: "w" }] }, "rev-7");
    expect(n.version).toBe("rev-7");
    expect(n.routing).toEqual({
      distanceWeight: 1,
      stockWeight: 0.5,
      loadWeight: 0.5,
      carrierWeight: 0.5,
      splitCost: 1,
      distanceKmMax: 2000,
      transitDaysMax: 7,
      decisionCandidatesMax: 5,
    });
    expect(n.warehouses[0]).toEqual({
      id: "w",
      enabled: true,
      region: "",
      lat: null,
      lon: null,
      capacityPerDay: 1_000_000,
      channels: ["*"],
      carriers: [],
      utcOffsetMinutes: 0,
      minStockDefault: 0,
      minStock: {},
    });
  });
});

// ---------------------------------------------------------------------------------------------------------
// Properties over random networks (1–20 warehouses) and orders (1–5 lines), checked against a reference
// reading of the rules that shares nothing with the router but nextCutoffMs (tested above).

const channelIds = ["web", "b2b", "pos"] as const;
const skus = ["A", "B", "C"] as const;
const hhmm = fc
  .tuple(fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 59 }))
  .map(([h, m]) => `${String(h).padStart(2, "0")}:${String(m).padStart(2, "0")}`);

const rawWarehouse = fc.record({
  // Mostly enabled, so that most orders have something to route to.
  enabled: fc.oneof(
    { weight: 4, arbitrary: fc.constant(true) },
    { weight: 1, arbitrary: fc.constant(false) },
  ),
  channels: fc.oneof(
    { weight: 1, arbitrary: fc.constant(["*"]) },
    { weight: 2, arbitrary: fc.subarray(["web", "b2b", "pos", "*"]) },
  ),
  // Against loads of 0–70 and orders of up to 5 × 12 units: some full, some tight, most roomy.
  capacityPerDay: fc.integer({ min: 0, max: 200 }),
  at: fc.option(
    fc.record({
      lat: fc.double({ min: -60, max: 60, noNaN: true }),
      lon: fc.double({ min: -180, max: 180, noNaN: true }),
    }),
  ),
  region: fc.constantFrom("N", "S", ""),
  carriers: fc.array(fc.record({ cutoff: hhmm, transitDays: fc.integer({ min: 0, max: 10 }) }), {
    maxLength: 3,
  }),
  utcOffsetMinutes: fc.integer({ min: -840, max: 840 }),
  minStockDefault: fc.integer({ min: 0, max: 3 }),
  minStock: fc.dictionary(fc.constantFrom(...skus), fc.integer({ min: 0, max: 6 })),
});

const weight = fc.integer({ min: 0, max: 20 }).map((n) => n / 4); // 0 … 5 in quarters

const rawRouting = fc.record({
  distanceWeight: weight,
  stockWeight: weight,
  loadWeight: weight,
  carrierWeight: weight,
  splitCost: fc.constantFrom(0, 0.25, 1, 1000),
  distanceKmMax: fc.integer({ min: 1, max: 20_000 }),
  transitDaysMax: fc.integer({ min: 1, max: 10 }),
  decisionCandidatesMax: fc.integer({ min: 1, max: 6 }),
});

const position = fc.record({
  onHand: fc.integer({ min: 0, max: 60 }),
  reserved: fc.integer({ min: 0, max: 10 }),
  damaged: fc.integer({ min: 0, max: 2 }),
  qualityControl: fc.integer({ min: 0, max: 2 }),
  safetyStock: fc.integer({ min: 0, max: 2 }),
});

type Case = {
  network: Network;
  order: RouteOrder;
  ctx: RouteContext;
  stock: Record<string, Record<string, Position>>;
  load: Record<string, number>;
};

function caseArb(routing: fc.Arbitrary<Record<string, number>> = rawRouting): fc.Arbitrary<Case> {
  return fc.integer({ min: 1, max: 20 }).chain((n) => {
    const ids = Array.from({ length: n }, (_, i) => `w${i}`);
    const id = fc.constantFrom(...ids);
    return fc
      .record({
        warehouses: fc.array(rawWarehouse, { minLength: n, maxLength: n }),
        routing,
        stock: fc.record({
          A: fc.dictionary(id, position),
          B: fc.dictionary(id, position),
          C: fc.dictionary(id, position),
        }),
        load: fc.dictionary(id, fc.integer({ min: 0, max: 70 })),
        nowOffsetMs: fc.integer({ min: 0, max: dayMs - 1 }),
        shipByAfterMs: fc.integer({ min: 0, max: 3 * dayMs }),
        channel: fc.constantFrom(...channelIds),
        shipTo: fc.record({
          region: fc.option(fc.constantFrom("N", "S")),
          at: fc.option(
            fc.record({
              lat: fc.double({ min: -60, max: 60, noNaN: true }),
              lon: fc.double({ min: -180, max: 180, noNaN: true }),
            }),
          ),
        }),
        mode: fc.constantFrom("allow_partial" as const, "ship_complete" as const),
        maxShipments: fc.integer({ min: 0, max: 3 }),
        lines: fc.array(
          fc.record({
            sku: fc.constantFrom(...skus),
            qty: fc.integer({ min: 1, max: 12 }),
            excluded: fc.oneof(
              { weight: 2, arbitrary: fc.constant([]) },
              { weight: 1, arbitrary: fc.subarray(ids, { maxLength: Math.min(3, n) }) },
            ),
          }),
          { minLength: 1, maxLength: 5 },
        ),
        used: fc.oneof(
          { weight: 2, arbitrary: fc.constant([]) },
          { weight: 1, arbitrary: fc.subarray(ids, { maxLength: Math.min(3, n) }) },
        ),
      })
      .map((g): Case => {
        const network = net({
          warehouses: g.warehouses.map((w, i) => ({
            id: ids[i],
            enabled: w.enabled,
            channels: w.channels,
            capacityPerDay: w.capacityPerDay,
            ...(w.at === null ? {} : { lat: w.at.lat, lon: w.at.lon }),
            region: w.region,
            carriers: w.carriers.map((c, k) => ({ id: `c${k}`, ...c })),
            utcOffsetMinutes: w.utcOffsetMinutes,
            minStockDefault: w.minStockDefault,
            minStock: w.minStock,
          })),
          routing: g.routing,
        });
        const nowMs = t0 + g.nowOffsetMs;
        const stock: Record<string, Record<string, Position>> = g.stock;
        const order: RouteOrder = {
          channel: g.channel,
          shipTo: { region: g.shipTo.region, lat: g.shipTo.at?.lat ?? null, lon: g.shipTo.at?.lon ?? null },
          shipByMs: nowMs + g.shipByAfterMs,
          split: { mode: g.mode, maxShipments: g.maxShipments },
          lines: g.lines.map((l, i) => ({ lineId: `l${i}`, ...l })),
          used: new Set(g.used),
        };
        const ctx: RouteContext = { stock: (sku) => stock[sku], load: (w) => g.load[w] ?? 0, nowMs };
        return { network, order, ctx, stock, load: g.load };
      });
  });
}

/** Reference reading of the order-level filters: could `w` ship anything of this order at all? */
function orderLevelOk(w: Warehouse, c: Case): boolean {
  if (!w.enabled) return false;
  if (!w.channels.includes(c.order.channel) && !w.channels.includes("*")) return false;
  if ((c.load[w.id] ?? 0) >= w.capacityPerDay) return false;
  if (w.carriers.length === 0) return true;
  return w.carriers.some(
    (k) => nextCutoffMs(c.ctx.nowMs, k.cutoffMinute, w.utcOffsetMinutes) <= c.order.shipByMs,
  );
}

const freeAt = (c: Case, sku: string, w: string) => {
  const p = c.stock[sku]?.[w];
  return p === undefined ? 0 : Math.max(0, available(p));
};

const byId = (n: Network) => new Map(n.warehouses.map((w) => [w.id, w]));

/** Lines placed at each warehouse, and units per SKU there. */
function placed(c: Case, r: RouteResult) {
  const units = new Map<string, number>();
  const skuUnits = new Map<string, number>();
  for (const [i, l] of r.lines.entries()) {
    const w = l.decision.chosen;
    if (w === null) continue;
    const ln = c.order.lines[i] as RouteLine;
    units.set(w, (units.get(w) ?? 0) + ln.qty);
    const k = `${ln.sku}/${w}`;
    skuUnits.set(k, (skuUnits.get(k) ?? 0) + ln.qty);
  }
  return { units, skuUnits };
}

/** Warehouses that could take every line of the order alone, honouring max shipments (the single-site plan). */
function singleSites(c: Case): Warehouse[] {
  const { order, network } = c;
  const total = order.lines.reduce((n, l) => n + l.qty, 0);
  return network.warehouses.filter((w) => {
    if (!orderLevelOk(w, c)) return false;
    if (order.lines.some((l) => l.excluded.includes(w.id))) return false;
    if (total > w.capacityPerDay - (c.load[w.id] ?? 0)) return false;
    for (const sku of skus) {
      const need = order.lines.filter((l) => l.sku === sku).reduce((n, l) => n + l.qty, 0);
      if (need > 0 && freeAt(c, sku, w.id) - need < minStockOf(w, sku)) return false;
    }
    const size = new Set([...order.used, w.id]).size;
    return order.split.maxShipments === 0 || size <= Math.max(order.split.maxShipments, order.used.size);
  });
}

const runs = { numRuns: 400 };

describe("route: properties", () => {
  test("a chosen warehouse is enabled, serves the channel, passes the filters and keeps its min stock", () => {
    fc.assert(
      fc.property(caseArb(), (c) => {
        const r = route(c.order, c.network, c.ctx);
        const ws = byId(c.network);
        expect(r.lines.map((l) => l.lineId)).toEqual(c.order.lines.map((l) => l.lineId));
        for (const [i, l] of r.lines.entries()) {
          const ln = c.order.lines[i] as RouteLine;
          const chosen = l.decision.chosen;
          if (chosen === null) continue;
          const w = ws.get(chosen) as Warehouse;
          expect(orderLevelOk(w, c)).toBe(true);
          expect(ln.excluded).not.toContain(chosen);
          expect(l.candidates[0]).toBe(chosen);
        }
        const { units, skuUnits } = placed(c, r);
        for (const [w, n] of units) {
          expect(n).toBeLessThanOrEqual((ws.get(w) as Warehouse).capacityPerDay - (c.load[w] ?? 0));
        }
        for (const [k, n] of skuUnits) {
          const [sku, w] = k.split("/") as [string, string];
          // Never more than the available stock, and never below the min stock.
          expect(n).toBeLessThanOrEqual(freeAt(c, sku, w));
          expect(freeAt(c, sku, w) - n).toBeGreaterThanOrEqual(minStockOf(ws.get(w) as Warehouse, sku));
        }
      }),
      runs,
    );
  });

  test("candidates: only warehouses that passed the order filters, no duplicates, keep aligned", () => {
    fc.assert(
      fc.property(caseArb(), (c) => {
        const r = route(c.order, c.network, c.ctx);
        const ws = byId(c.network);
        for (const [i, l] of r.lines.entries()) {
          const ln = c.order.lines[i] as RouteLine;
          expect(new Set(l.candidates).size).toBe(l.candidates.length);
          expect(l.keep).toHaveLength(l.candidates.length);
          for (const [k, id] of l.candidates.entries()) {
            const w = ws.get(id) as Warehouse;
            expect(orderLevelOk(w, c)).toBe(true);
            expect(ln.excluded).not.toContain(id);
            expect(l.keep[k]).toBe(minStockOf(w, ln.sku));
          }
          const d = l.decision;
          expect(d.rules).toBe(c.network.version);
          expect(d.atMs).toBe(c.ctx.nowMs);
          expect(d.shipments).toBe(r.shipments);
          expect(d.candidates.length).toBeLessThanOrEqual(c.network.routing.decisionCandidatesMax);
          expect(d.chosen === null).toBe(d.reason === "no_stock" || d.reason === "no_candidate");
          expect(d.reason === "no_candidate").toBe(l.candidates.length === 0);
          const rr = c.network.routing;
          for (const s of d.candidates) {
            for (const v of [s.proximity, s.stock, s.load, s.carrier]) {
              expect(v).toBeGreaterThanOrEqual(0);
              expect(v).toBeLessThanOrEqual(1);
            }
            // Score = weighted sum of the (rounded to 0.001) components.
            const sum =
              rr.distanceWeight * s.proximity +
              rr.stockWeight * s.stock +
              rr.loadWeight * s.load +
              rr.carrierWeight * s.carrier;
            const slack =
              0.0006 * (1 + rr.distanceWeight + rr.stockWeight + rr.loadWeight + rr.carrierWeight);
            expect(Math.abs(s.score - sum)).toBeLessThanOrEqual(slack);
            expect(ln.excluded).not.toContain(s.warehouse);
            expect(orderLevelOk(ws.get(s.warehouse) as Warehouse, c)).toBe(true);
          }
          for (let k = 1; k < d.candidates.length; k++) {
            expect((d.candidates[k - 1]?.score ?? 0) + 1e-9).toBeGreaterThanOrEqual(
              d.candidates[k]?.score ?? 0,
            );
          }
        }
      }),
      runs,
    );
  });

  test("split policy: shipments = used ∪ chosen; max shipments bound the choice, and the offer once reached", () => {
    fc.assert(
      fc.property(caseArb(), (c) => {
        const r = route(c.order, c.network, c.ctx);
        const chosen = r.lines.map((l) => l.decision.chosen).filter((w): w is string => w !== null);
        const all = new Set([...c.order.used, ...chosen]);
        expect(r.shipments).toBe(all.size);
        const max = c.order.split.maxShipments;
        if (max === 0) return;
        expect(all.size).toBeLessThanOrEqual(Math.max(max, c.order.used.size));
        if (c.order.used.size >= max) {
          for (const l of r.lines) {
            for (const w of l.candidates) expect(c.order.used.has(w)).toBe(true);
          }
        }
      }),
      runs,
    );
  });

  test("a very costly split: when one warehouse can take the whole order, no extra shipment is added", () => {
    // Weights ≤ 5 give a line ≤ 20 points, an order of ≤ 5 lines ≤ 100: far below splitCost 1000.
    const costly = rawRouting.map((r) => ({ ...r, splitCost: 1000 }));
    fc.assert(
      fc.property(caseArb(costly), (c) => {
        const sites = singleSites(c);
        fc.pre(sites.length > 0);
        const r = route(c.order, c.network, c.ctx);
        expect(r.lines.every((l) => l.decision.chosen !== null)).toBe(true);
        // Fewest shipments: no more than the best single-site plan (the used warehouses plus that one).
        const fewest = Math.min(...sites.map((w) => new Set([...c.order.used, w.id]).size));
        expect(r.shipments).toBeLessThanOrEqual(fewest);
        if (c.order.used.size === 0) expect(r.shipments).toBe(1);
      }),
      { numRuns: 400 },
    );
  });

  test("a one-line order takes the best-scoring feasible warehouse, less the split cost of a new one", () => {
    // Every feasible warehouse's score is listed in the decision.
    const listAll = rawRouting.map((r) => ({ ...r, decisionCandidatesMax: 100 }));
    fc.assert(
      fc.property(caseArb(listAll), (c) => {
        const o = { ...c.order, lines: c.order.lines.slice(0, 1) };
        const cc = { ...c, order: o };
        const sites = singleSites(cc);
        const l = only(route(o, c.network, c.ctx));
        expect(l.decision.chosen === null).toBe(sites.length === 0);
        if (l.decision.chosen === null) return;
        // The decision's scores are rounded: compare with a 0.001 slack.
        const scores = new Map(l.decision.candidates.map((s) => [s.warehouse, s.score]));
        const value = (w: string) =>
          (scores.get(w) ?? Number.NEGATIVE_INFINITY) -
          (o.used.size > 0 && !o.used.has(w) ? c.network.routing.splitCost : 0);
        for (const w of sites) expect(value(l.decision.chosen)).toBeGreaterThanOrEqual(value(w.id) - 0.001);
      }),
      runs,
    );
  });
});
