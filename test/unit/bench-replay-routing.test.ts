// Replays that route: the network and stock derived from a trace (warehouse per origin, stock sums,
// customers' points), the stock file, and the routing tally the report counts from Sluice's outputs. Tiny
// synthetic traces written here; the Olist sample is never needed.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { brazilStateCentroids, stateCentroid } from "../../bench/harness/br-states.ts";
import { Observer } from "../../bench/harness/observe.ts";
import { type BenchOptions, OptionsError, parseOptions } from "../../bench/harness/options.ts";
import {
  benchNetworkFile,
  deriveNetwork,
  NetworkError,
  networkSummary,
  parseStockCsv,
  resolveNetwork,
  stockCsv,
  unitsWithHeadroom,
  writeNetwork,
} from "../../bench/harness/replay-network.ts";
import { networkLine, routingReport, routingTables } from "../../bench/harness/report-json.ts";
import { distanceBucketsKm, RoutingTally } from "../../bench/harness/routing-tally.ts";
import { loadTrace, type TraceLine, type TraceOrder } from "../../bench/harness/trace.ts";
import { type LoadPlan, orderIdOf, orderPayload, Workload } from "../../bench/harness/workload.ts";
import { loadNetworkFile } from "../../src/config/network.ts";
import { distanceKm } from "../../src/domain/routing/geo.ts";

const dir = mkdtempSync(join(tmpdir(), "sluice-bench-replay-routing-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function options(argv: string[]): BenchOptions {
  const parsed = parseOptions(argv);
  if (parsed.help) throw new Error("unexpected --help");
  return parsed.options;
}

const line = (sku: string, qty: number, origin?: string): TraceLine =>
  origin === undefined ? { sku, qty, price: 1 } : { sku, qty, price: 1, origin };
const order = (i: number, lines: TraceLine[], region: string | null = null): TraceOrder => ({
  tMs: 1_500_000_000_000 + i * 1000,
  id: `t${i}`,
  lines,
  region,
  zip: null,
  lat: null,
  lon: null,
});

describe("derived network and stock", () => {
  // SP sells A (3 units over two orders) and B; RJ sells B and C; one line names no origin.
  const orders = [
    order(0, [line("A", 2, "SP"), line("C", 1, "RJ")]),
    order(1, [line("A", 1, "SP")]),
    order(2, [line("B", 1, "SP"), line("B2", 5, "RJ")]),
    order(3, [line("C", 3, "RJ")]),
    order(4, [line("D", 2, "SP"), line("E", 1)]),
  ];

  test("one warehouse per origin, busiest first, at its state's centroid, serving every channel", () => {
    const d = deriveNetwork({ orders }, 1, []);
    expect(d.origins).toEqual([
      { warehouse: "RJ", lines: 3, units: 9 },
      { warehouse: "SP", lines: 4, units: 6 },
    ]);
    expect(d.ruleSet.warehouses.map((w) => [w.id, w.region, w.lat, w.lon, w.channels])).toEqual([
      ["RJ", "RJ", -22.3, -42.7, ["*"]],
      ["SP", "SP", -22.2, -48.7, ["*"]],
    ]);
    expect(d.ruleSet.routing.distanceKmMax).toBe(4000);
    expect(d.ruleSet.warehouses.every((w) => w.capacityPerDay === 1_000_000_000)).toBe(true);
  });

  test("stock per (warehouse, SKU) sums the units sold there × headroom, rounded up; lines without origin go to the busiest", () => {
    const exact = deriveNetwork({ orders }, 1, []);
    expect(exact.stock).toEqual([
      { warehouse: "RJ", sku: "B2", qty: 5 },
      { warehouse: "RJ", sku: "C", qty: 4 },
      { warehouse: "RJ", sku: "E", qty: 1 },
      { warehouse: "SP", sku: "A", qty: 3 },
      { warehouse: "SP", sku: "B", qty: 1 },
      { warehouse: "SP", sku: "D", qty: 2 },
    ]);
    expect([exact.linesWithoutOrigin, exact.unitsWithoutOrigin]).toEqual([1, 1]);
    // every unit the trace sold is stocked, split as it was sold
    const units = (rows: { qty: number }[]) => rows.reduce((n, r) => n + r.qty, 0);
    const sold = orders.flatMap((o) => o.lines).reduce((n, l) => n + l.qty, 0);
    expect(units(exact.stock)).toBe(sold);
    const more = deriveNetwork({ orders }, 1.5, []);
    expect(more.stock.find((r) => r.warehouse === "SP" && r.sku === "A")?.qty).toBe(5); // ceil(4.5)
    expect(more.stock.find((r) => r.warehouse === "RJ" && r.sku === "E")?.qty).toBe(2); // ceil(1.5)
    const less = deriveNetwork({ orders }, 0.5, []);
    expect(less.stock.find((r) => r.warehouse === "SP" && r.sku === "B")?.qty).toBe(1); // at least 1
    expect(unitsWithHeadroom(3, 1.1)).toBe(4); // 3.3000000000000003 is not 5
    expect(unitsWithHeadroom(10, 1.2)).toBe(12);
  });

  test("origins that are not states have no point; origins that are no subject token, or none at all, are refused", () => {
    const d = deriveNetwork({ orders: [order(0, [line("A", 1, "dc-north")])] }, 1, []);
    expect(d.ruleSet.warehouses[0]).toMatchObject({ id: "dc-north", region: "dc-north" });
    expect(d.ruleSet.warehouses[0]?.lat).toBeUndefined();
    expect(() => deriveNetwork({ orders: [order(0, [line("A", 1, "a.b")])] }, 1, [])).toThrow(NetworkError);
    expect(() => deriveNetwork({ orders: [order(0, [line("A", 1)])] }, 1, [])).toThrow(/names no origin/);
    const many = Array.from({ length: 257 }, (_, i) => order(i, [line("A", 1, `o${i}`)]));
    expect(() => deriveNetwork({ orders: many }, 1, [])).toThrow(/at most 256 warehouses/);
    expect(() => deriveNetwork({ orders }, 0, [])).toThrow(/headroom/);
  });

  test("every state has a centroid inside Brazil's bounding box", () => {
    expect(Object.keys(brazilStateCentroids).length).toBe(27);
    for (const p of Object.values(brazilStateCentroids)) {
      expect(p.lat).toBeGreaterThan(-34);
      expect(p.lat).toBeLessThan(5.5);
      expect(p.lon).toBeGreaterThan(-74);
      expect(p.lon).toBeLessThan(-34.5);
    }
    expect(stateCentroid("sp")).toEqual({ lat: -22.2, lon: -48.7 });
    expect(stateCentroid("XX")).toBeNull();
    expect(stateCentroid("constructor")).toBeNull();
  });
});

describe("traces that carry origins and ship-to points", () => {
  const olist = join(dir, "olist");
  mkdirSync(olist);
  writeFileSync(
    join(olist, "orders.csv"),
    [
      "order_id,customer_id,order_status,order_purchase_timestamp",
      "o1,c1,delivered,2017-10-02 10:00:00",
      "o2,c2,delivered,2017-10-02 10:00:10",
      "o3,c3,delivered,2017-10-02 10:00:20",
    ].join("\n"),
  );
  writeFileSync(
    join(olist, "order_items.csv"),
    [
      "order_id,order_item_id,product_id,seller_id,shipping_limit_date,price,freight_value",
      "o1,1,p1,s-sp,2017-10-06 10:00:00,10,1",
      "o1,2,p1,s-sp,2017-10-06 10:00:00,10,1",
      "o1,3,p2,s-rj,2017-10-06 10:00:00,5,1",
      "o2,1,p2,s-rj,2017-10-06 10:00:00,5,1",
      "o3,1,p3,s-gone,2017-10-06 10:00:00,7,1",
      "o3,2,p1,s-sp,2017-10-06 10:00:00,10,1",
    ].join("\n"),
  );
  writeFileSync(
    join(olist, "customers.csv"),
    [
      "customer_id,customer_unique_id,customer_zip_code_prefix,customer_city,customer_state",
      "c1,u1,1001,sao paulo,SP",
      "c2,u2,20040,rio de janeiro,RJ",
      "c3,u3,,nowhere,ZZ",
    ].join("\n"),
  );
  writeFileSync(
    join(olist, "olist_sellers_dataset.csv"),
    "seller_id,seller_zip_code_prefix,seller_city,seller_state\ns-sp,13023,campinas,SP\ns-rj,20000,rio,RJ\n",
  );

  test("Olist: lines carry the seller's state; customers their state, zip padded to 5 digits, the centroid", () => {
    const t = loadTrace(olist, "auto");
    expect(t.orders[0]?.lines).toEqual([
      { sku: "p1", qty: 2, price: 10, origin: "SP" },
      { sku: "p2", qty: 1, price: 5, origin: "RJ" },
    ]);
    // p3's seller is not in the table: no origin
    expect(t.orders[2]?.lines).toEqual([
      { sku: "p3", qty: 1, price: 7 },
      { sku: "p1", qty: 1, price: 10, origin: "SP" },
    ]);
    expect(t.orders.map((o) => [o.region, o.zip, o.lat, o.lon])).toEqual([
      ["SP", "01001", -22.2, -48.7],
      ["RJ", "20040", -22.3, -42.7],
      ["ZZ", null, null, null],
    ]);
  });

  test("by default a replay derives its network when the trace names origins; the payload carries the ship-to point", () => {
    const o = options(["--scenario", "replay", "--trace", olist]);
    const trace = loadTrace(olist, "auto");
    const rn = resolveNetwork(o, trace);
    expect(rn.source).toBe("derived");
    expect(rn.sites.map((s) => s.id)).toEqual(["SP", "RJ"]);
    expect(rn.stockSource).toBe("derived");
    expect(rn.headroom).toBe(1.5);
    // p3's seller is unknown: its unit is stocked at the busiest warehouse, SP
    expect(rn.stock).toEqual([
      { warehouse: "SP", sku: "p1", qty: 5 },
      { warehouse: "SP", sku: "p3", qty: 2 },
      { warehouse: "RJ", sku: "p2", qty: 3 },
    ]);
    const plan = {
      phases: [],
      arrivals: "uniform",
      seed: 1,
      skus: 1,
      zipf: 0,
      lines: "single",
      hot: null,
      trace: { path: olist, format: "olist-csv", speedup: 1 },
    } as unknown as LoadPlan;
    const first = new Workload(plan, trace).next();
    expect(JSON.parse(orderPayload(first as NonNullable<typeof first>)).shipTo).toEqual({
      region: "SP",
      zip: "01001",
      lat: -22.2,
      lon: -48.7,
    });
    // the channels of the bench's network come along (its synced "shop")
    expect(rn.derived?.ruleSet.channels.length).toBeGreaterThan(0);
  });

  test("NDJSON: line origins and a shipTo object; a trace without origins keeps the bench's network", () => {
    const path = join(dir, "t.ndjson");
    writeFileSync(
      path,
      [
        '{"t":1000,"lines":[{"sku":"X","origin":"w-east"}],"shipTo":{"region":"E","zip":"123","lat":1.5,"lon":2.5}}',
        '{"t":2000,"lines":[{"sku":"Y","qty":2}],"region":"W"}',
      ].join("\n"),
    );
    const t = loadTrace(path, "auto");
    expect(t.orders.map((o) => [o.region, o.zip, o.lat, o.lon])).toEqual([
      ["E", "123", 1.5, 2.5],
      ["W", null, null, null],
    ]);
    expect(t.orders[0]?.lines[0]?.origin).toBe("w-east");
    const bad = join(dir, "bad.ndjson");
    writeFileSync(bad, '{"t":1,"lines":[{"sku":"X"}],"shipTo":{"lat":91,"lon":0}}\n');
    expect(() => loadTrace(bad, "auto")).toThrow(/shipTo.lat/);
    writeFileSync(bad, '{"t":1,"lines":[{"sku":"X"}],"shipTo":{"lat":1}}\n');
    expect(() => loadTrace(bad, "auto")).toThrow(/both lat and lon/);
    const plain = join(dir, "plain.ndjson");
    writeFileSync(plain, '{"t":1,"lines":[{"sku":"X"}]}\n');
    const o = options(["--scenario", "replay", "--trace", plain]);
    const rn = resolveNetwork(o, loadTrace(plain, "auto"));
    expect([rn.source, rn.stock, rn.firstWarehouse, rn.file]).toEqual([
      "bench",
      null,
      "w1",
      benchNetworkFile,
    ]);
    const derive = options(["--scenario", "replay", "--trace", plain, "--network", "derive"]);
    expect(() => resolveNetwork(derive, loadTrace(plain, "auto"))).toThrow(/names no origin/);
  });

  test("written next to the reports, the network and stock replay the same again with --network and --stock-file", () => {
    const trace = loadTrace(olist, "auto");
    const rn = resolveNetwork(options(["--scenario", "replay", "--trace", olist]), trace);
    const out = join(dir, "out");
    mkdirSync(out);
    const written = writeNetwork(rn, out);
    expect(written).toEqual({ networkFile: join(out, "network.json"), stockFile: join(out, "stock.csv") });
    // Sluice's own loader takes the file
    const loaded = loadNetworkFile(written.networkFile).network;
    expect(loaded.warehouses.map((w) => [w.id, w.lat, w.lon])).toEqual([
      ["SP", -22.2, -48.7],
      ["RJ", -22.3, -42.7],
    ]);
    const again = resolveNetwork(
      options([
        "--scenario",
        "replay",
        "--trace",
        olist,
        "--network",
        written.networkFile,
        "--stock-file",
        written.stockFile as string,
      ]),
      trace,
    );
    expect([again.source, again.stockSource, again.headroom]).toEqual(["file", "file", null]);
    expect(again.stock).toEqual(rn.stock);
    expect(again.sites).toEqual(rn.sites);
    const summary = networkSummary(rn, written);
    expect(summary).toMatchObject({ warehouses: 2, warehousesWithPoint: 2, stockRows: 3, stockUnits: 10 });
    expect(networkLine(summary)).toContain("derived from the trace's origins");
    // a given file with per-SKU stock: --stock at its first enabled warehouse
    const perSku = resolveNetwork(
      options(["--scenario", "replay", "--trace", olist, "--network", written.networkFile]),
      trace,
    );
    expect([perSku.stock, perSku.firstWarehouse, perSku.stockSource]).toEqual([null, "SP", "per-sku"]);
  });

  test("a bad --network file is refused before anything starts", () => {
    const bad = join(dir, "bad-network.toml");
    writeFileSync(bad, '[[warehouses]]\nid = "w1"\nlat = 123\n');
    const o = options(["--scenario", "replay", "--trace", olist, "--network", bad]);
    expect(() => resolveNetwork(o, loadTrace(olist, "auto"))).toThrow(/--network .*lat must be in/);
  });
});

describe("stock files", () => {
  const ids = new Set(["SP", "RJ"]);

  test("round trip, quoting included", () => {
    const rows = [
      { warehouse: "SP", sku: "p,1", qty: 3 },
      { warehouse: "RJ", sku: 'p"2', qty: 0 },
    ];
    const text = stockCsv(rows);
    expect(text.split("\n")[0]).toBe("warehouse,sku,qty");
    expect(parseStockCsv(text, "f", ids)).toEqual(rows);
  });

  test("refused with the line and the fix", () => {
    expect(() => parseStockCsv("sku,qty\nA,1\n", "f", ids)).toThrow(/columns warehouse,sku,qty/);
    expect(() => parseStockCsv("warehouse,sku,qty\nMG,A,1\n", "f", ids)).toThrow(
      /f:2: warehouse "MG" is not in the network/,
    );
    expect(() => parseStockCsv("warehouse,sku,qty\nSP,A,1.5\n", "f", ids)).toThrow(/qty must be a whole/);
    expect(() => parseStockCsv("warehouse,sku,qty\nSP,A,-1\n", "f", ids)).toThrow(/qty must be a whole/);
    expect(() => parseStockCsv("warehouse,sku,qty\nSP,,1\n", "f", ids)).toThrow(/sku must be non-empty/);
    expect(() => parseStockCsv("warehouse,sku,qty\nSP,A,1\nSP,A,2\n", "f", ids)).toThrow(
      /f:3: SP,A is listed twice/,
    );
  });
});

describe("options", () => {
  test("--network, --stock-file, --stock-headroom: replay only, headroom in range", () => {
    const o = options(["--scenario", "replay", "--trace", "x.ndjson"]);
    expect([o.network, o.stockFile, o.stockHeadroom]).toEqual([null, null, 1.5]);
    const given = options([
      "--scenario",
      "replay",
      "--trace",
      "x",
      "--network",
      "derive",
      "--stock-file",
      "s.csv",
      "--stock-headroom",
      "2",
    ]);
    expect([given.network, given.stockFile, given.stockHeadroom]).toEqual(["derive", "s.csv", 2]);
    expect(() => options(["--scenario", "steady", "--network", "n.toml"])).toThrow(OptionsError);
    expect(() => options(["--scenario", "steady", "--stock-file", "s.csv"])).toThrow(
      /is for --scenario replay/,
    );
    expect(() => options(["--scenario", "replay", "--trace", "x", "--stock-headroom", "0"])).toThrow(
      /--stock-headroom must be in/,
    );
  });
});

describe("the routing tally", () => {
  const sites = [
    { id: "SP", lat: -22.2, lon: -48.7 },
    { id: "RJ", lat: -22.3, lon: -42.7 },
    { id: "nowhere", lat: null, lon: null },
  ];
  const l = (state: string, warehouse: string | null, refusal: string | null = null, shippedQty = 0) => ({
    sku: "A",
    qty: 1,
    state,
    warehouse,
    refusal,
    shippedQty,
  });

  test("shipments per order and refusals follow each order's newest status, not the sum of them", () => {
    const t = new RoutingTally(sites);
    t.onStatus(0, [l("received", null), l("received", null)]);
    t.onStatus(1, [l("released", "SP"), l("released", "RJ")]);
    t.onStatus(2, [l("released", "SP"), l("allocated", "SP")]);
    t.onStatus(3, [l("rejected", null, "insufficient_available")]);
    t.onStatus(4, [l("released", "SP"), l("backordered", null, "insufficient_available")]);
    let f = t.figures();
    expect(f.orders).toBe(5);
    expect(f.shipmentsPerOrder).toEqual({ "0": 2, "1": 2, "2": 1 });
    expect([f.ordersPlaced, f.ordersSplit, f.splitShare, f.shipmentsPerOrderMean]).toEqual([
      3, 1, 0.3333, 1.333,
    ]);
    expect(f.refusals).toEqual({
      lines: 2,
      orders: 2,
      byReason: { insufficient_available: 2 },
      ordersUntracked: 0,
    });
    // order 0 is routed (split), order 4's backorder is filled, order 1 ships one line and cancels the other
    t.onStatus(0, [l("released", "SP"), l("released", "RJ")]);
    t.onStatus(4, [l("released", "SP"), l("released", "RJ")]);
    t.onStatus(1, [l("shipped", "SP", null, 1), l("cancelled", "RJ")]);
    t.onStatus(3, [l("rejected", null, "insufficient_available")]);
    f = t.figures();
    expect(f.orders).toBe(5);
    expect(f.shipmentsPerOrder).toEqual({ "0": 1, "1": 2, "2": 2 });
    expect(Object.values(f.shipmentsPerOrder).reduce((a, b) => a + b, 0)).toBe(f.orders);
    expect(f.refusals).toMatchObject({ lines: 1, orders: 1, byReason: { insufficient_available: 1 } });
    // a mix of reasons counts each line once, under its reason
    t.onStatus(5, [l("rejected", null, "ship_complete"), l("rejected", null, "no_candidate_warehouse")]);
    t.onStatus(6, [l("rejected", null, "ship_complete"), l("rejected", null, "ship_complete")]);
    expect(t.figures().refusals.byReason).toEqual({
      ship_complete: 3,
      insufficient_available: 1,
      no_candidate_warehouse: 1,
    });
  });

  test("fulfilment requests: distance from the decision, else computed from the points, else unknown", () => {
    const t = new RoutingTally(sites);
    const routing = (distanceKm: number | null) => ({
      rules: "kv-1",
      score: 1,
      reason: "best_score",
      distanceKm,
    });
    const rjCustomer = { region: "RJ", zip: null, lat: -22.3, lon: -42.7 };
    t.onFulfil({
      type: "fulfil",
      warehouse: "SP",
      shipTo: rjCustomer,
      lines: [
        { sku: "A", qty: 2, routing: routing(612.3) },
        { sku: "B", qty: 1, routing: routing(612.3) },
      ],
    });
    t.onFulfil({
      type: "fulfil",
      warehouse: "RJ",
      shipTo: rjCustomer,
      lines: [{ sku: "C", qty: 1, routing: routing(null) }],
    });
    t.onFulfil({ type: "fulfil", warehouse: "SP", shipTo: rjCustomer, lines: [{ sku: "D", qty: 1 }] });
    t.onFulfil({ type: "fulfil", warehouse: "nowhere", shipTo: rjCustomer, lines: [{ sku: "E", qty: 4 }] });
    t.onFulfil({ type: "fulfil", warehouse: "SP", shipTo: { region: "RJ" }, lines: [{ sku: "F", qty: 1 }] });
    t.onFulfil({ type: "cancel", warehouse: "SP", lines: [{ sku: "A", qty: 2 }] });
    const f = t.figures();
    expect(f.fulfil).toEqual({
      requests: 5,
      lines: 6,
      units: 10,
      byWarehouse: {
        SP: { requests: 3, lines: 4, units: 5 },
        RJ: { requests: 1, lines: 1, units: 1 },
        nowhere: { requests: 1, lines: 1, units: 4 },
      },
    });
    const computed = distanceKm(-22.3, -42.7, -22.2, -48.7);
    expect([f.distance.fromDecision, f.distance.computed, f.distance.unknown]).toEqual([1, 2, 2]);
    expect(f.distance.kmMean).toBeCloseTo((612.3 + 0 + computed) / 3, 1);
    expect(f.distance.kmPerUnitMean).toBeCloseTo((612.3 * 3 + 0 + computed) / 5, 1);
    expect(f.distance.kmMax).toBe(Math.round(computed * 10) / 10);
    expect(f.distance.buckets.map((b) => b.requests)).toEqual([1, 0, 0, 2, 0, 0]);
    expect(f.distance.buckets.length).toBe(distanceBucketsKm.length);
    expect(f.distance.buckets[0]?.label).toBe("0–1 km");
    expect(f.distance.buckets[5]?.label).toBe("≥ 2000 km");
  });

  test("the observer feeds it the newest status of each order of the run, and every fulfil item", () => {
    const start = 1_800_000_000_000;
    const phases = [{ name: "replay", startS: 0, endS: 10, ratePerSecond: 1 }];
    const obs = new Observer("shop", "r1", phases, start, new Set(["allocated", "rejected"]), sites);
    const enc = new TextEncoder();
    const key = (n: number) => `shop.${orderIdOf("r1", n, n * 1000, n * 1000)}`;
    const status = (n: number, version: number, lines: unknown[]) =>
      obs.onMessage(
        "sluice.out.order.shop",
        enc.encode(
          JSON.stringify({
            items: [{ orderKey: key(n), version, status: "x", event: "x", atMs: start, lines }],
          }),
        ),
        start + 5,
      );
    status(0, 2, [l("released", "SP"), l("released", "RJ")]);
    status(0, 1, [l("received", null), l("received", null)]); // older: dropped
    status(1, 1, [l("rejected", null, "insufficient_available")]);
    obs.onMessage(
      "sluice.out.order.shop",
      enc.encode(
        JSON.stringify({ items: [{ orderKey: "shop.other-run", version: 9, lines: [l("released", "SP")] }] }),
      ),
      start + 5,
    );
    obs.onMessage(
      "sluice.out.fulfil.SP",
      enc.encode(
        JSON.stringify({
          items: [
            {
              type: "fulfil",
              orderKey: key(0),
              warehouse: "SP",
              shipTo: { lat: -22.2, lon: -48.7 },
              lines: [{ qty: 1 }],
            },
          ],
        }),
      ),
      start + 6,
    );
    const f = obs.routing.figures();
    expect([f.orders, f.ordersSplit, f.refusals.lines, f.fulfil.requests, f.distance.computed]).toEqual([
      2, 1, 1, 1, 1,
    ]);
    const report = routingReport(f, null);
    expect(report.note).toContain("1 of 1 placed orders split across warehouses (100 %)");
    expect(report.note).toContain("1 lines refused (insufficient_available 1)");
    expect(routingTables(report)[0]?.rows).toEqual([
      ["0", "1"],
      ["2", "1"],
    ]);
  });
});

describe("the bench's own network", () => {
  test("non-replay scenarios keep network.toml with --stock at w1", () => {
    const rn = resolveNetwork(options(["--scenario", "steady"]), null);
    expect([rn.source, rn.stock, rn.firstWarehouse, rn.stockSource]).toEqual([
      "bench",
      null,
      "w1",
      "per-sku",
    ]);
    expect(rn.sites.map((s) => s.id)).toEqual(["w1", "w2", "w3"]);
    expect(readFileSync(benchNetworkFile, "utf8")).toContain("[[warehouses]]");
    const out = join(dir, "bench-out");
    mkdirSync(out);
    expect(writeNetwork(rn, out)).toEqual({ networkFile: benchNetworkFile, stockFile: null });
  });
});
