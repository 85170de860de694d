// A replay that routes, through a real Sluice: a tiny Olist-style trace written here (sellers in SP, RJ and
// MG; every fourth order buys from two of them), the network and stock derived from it, the routing figures
// counted from Sluice's outputs; then the same network again from the files the run wrote, with one SKU's
// stock taken away, so its lines are refused and counted by reason.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runBench } from "../../bench/harness/main.ts";
import type { BenchReport } from "../../bench/harness/report-json.ts";

const dir = mkdtempSync(join(tmpdir(), "sluice-bench-replay-routing-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const states = ["SP", "RJ", "MG"] as const;
const ordersCount = 40;
/** Orders with two lines from two sellers' states: a warehouse each, so each ships from two. */
const twoStateOrders = ordersCount / 4;

/** 40 orders over 40 s of trace time; SKU p-<state>-<k> is sold only by the seller in <state>. */
function writeTrace(path: string): void {
  mkdirSync(path);
  const orders = ["order_id,customer_id,order_status,order_purchase_timestamp"];
  const items = ["order_id,order_item_id,product_id,seller_id,shipping_limit_date,price,freight_value"];
  const customers = ["customer_id,customer_unique_id,customer_zip_code_prefix,customer_city,customer_state"];
  const customerStates = ["SP", "RJ", "MG", "BA", "RS"];
  for (let i = 0; i < ordersCount; i++) {
    orders.push(`o${i},c${i},delivered,2017-10-02 10:00:${String(i).padStart(2, "0")}`);
    customers.push(`c${i},u${i},${1000 + i},x,${customerStates[i % customerStates.length]}`);
    const lines = i % 4 === 0 ? 2 : 1;
    for (let j = 0; j < lines; j++) {
      const state = states[(i + j) % 3] as string;
      items.push(`o${i},${j + 1},p-${state}-${(i * 7 + j) % 5},s-${state},2017-10-06 10:00:00,9.9,1`);
    }
  }
  writeFileSync(join(path, "orders.csv"), `${orders.join("\n")}\n`);
  writeFileSync(join(path, "order_items.csv"), `${items.join("\n")}\n`);
  writeFileSync(join(path, "customers.csv"), `${customers.join("\n")}\n`);
  writeFileSync(
    join(path, "olist_sellers_dataset.csv"),
    `seller_id,seller_zip_code_prefix,seller_city,seller_state\n${states.map((s) => `s-${s},1000,c,${s}\n`).join("")}`,
  );
}

function report(out: string): BenchReport {
  return JSON.parse(readFileSync(join(out, "report.json"), "utf8")) as BenchReport;
}

/** The routing figures agree with each other and with the load. */
function expectConsistent(r: BenchReport): NonNullable<BenchReport["routing"]> {
  const routing = r.routing as NonNullable<BenchReport["routing"]>;
  expect(routing).toBeDefined();
  expect(routing.orders).toBe(r.load.accepted);
  const byCount = Object.entries(routing.shipmentsPerOrder).map(([k, c]) => [Number(k), c] as const);
  expect(byCount.reduce((n, [, c]) => n + c, 0)).toBe(routing.orders);
  expect(byCount.filter(([k]) => k >= 2).reduce((n, [, c]) => n + c, 0)).toBe(routing.ordersSplit);
  expect(byCount.filter(([k]) => k >= 1).reduce((n, [, c]) => n + c, 0)).toBe(routing.ordersPlaced);
  // nothing is re-routed in a replay: one fulfilment request per (order, warehouse) it ships from
  expect(routing.fulfil.requests).toBe(byCount.reduce((n, [k, c]) => n + k * c, 0));
  const warehouses = Object.values(routing.fulfil.byWarehouse);
  expect(warehouses.reduce((n, w) => n + w.requests, 0)).toBe(routing.fulfil.requests);
  expect(warehouses.reduce((n, w) => n + w.units, 0)).toBe(routing.fulfil.units);
  const d = routing.distance;
  expect(d.fromDecision + d.computed + d.unknown).toBe(routing.fulfil.requests);
  expect(d.unknown).toBe(0); // every warehouse and every customer has a point
  expect(d.buckets.reduce((n, b) => n + b.requests, 0)).toBe(routing.fulfil.requests);
  expect(d.kmMax).toBeLessThan(4000);
  return routing;
}

describe("bench replay with routing", () => {
  test("a derived network splits orders; its files replay it again, and refusals are counted by reason", async () => {
    const trace = join(dir, "trace");
    writeTrace(trace);
    const common = [
      "--scenario",
      "replay",
      "--trace",
      trace,
      "--fit-s",
      "2",
      "--raw-messages",
      "0",
      "--quiet",
    ];

    const first = join(dir, "derived");
    expect(await runBench([...common, "--out", first])).toBe(0);
    for (const f of ["report.json", "report.md", "report.html", "network.json", "stock.csv"])
      expect(existsSync(join(first, f))).toBe(true);
    const r = report(first);
    expect(r.audit.passed).toBe(true);
    expect(r.load.accepted).toBe(ordersCount);
    const routing = expectConsistent(r);
    expect(routing.network).toMatchObject({ source: "derived", warehouses: 3, warehousesWithPoint: 3 });
    expect(routing.network?.stockHeadroom).toBe(1.5);
    expect(routing.ordersSplit).toBe(twoStateOrders);
    expect(routing.shipmentsPerOrder).toEqual({ "1": ordersCount - twoStateOrders, "2": twoStateOrders });
    expect(routing.shipmentsPerOrderMean).toBe(1.25);
    expect(routing.refusals.lines).toBe(0);
    expect(Object.keys(routing.fulfil.byWarehouse).sort()).toEqual(["MG", "RJ", "SP"]);
    expect(routing.distance.kmMean).toBeGreaterThan(0);
    expect(readFileSync(join(first, "report.md"), "utf8")).toContain("## Routing");
    expect(readFileSync(join(first, "report.html"), "utf8")).toContain("<h2>Routing</h2>");

    // The same network from the files written, and one SKU out of stock everywhere.
    const gone = "p-SP-0";
    const stock = readFileSync(join(first, "stock.csv"), "utf8")
      .split("\n")
      .filter((row) => !row.includes(`,${gone},`))
      .join("\n");
    const stockFile = join(dir, "stock-less.csv");
    writeFileSync(stockFile, stock);
    const second = join(dir, "again");
    expect(
      await runBench([
        ...common,
        "--network",
        join(first, "network.json"),
        "--stock-file",
        stockFile,
        "--out",
        second,
      ]),
    ).toBe(0);
    const again = expectConsistent(report(second));
    expect(again.network).toMatchObject({ source: "file", stockSource: "file", warehouses: 3 });
    const goneLines = readFileSync(join(trace, "order_items.csv"), "utf8")
      .split("\n")
      .filter((row) => row.includes(`,${gone},`)).length;
    expect(goneLines).toBeGreaterThan(0);
    expect(again.refusals.lines).toBe(goneLines);
    expect(Object.values(again.refusals.byReason).reduce((a, b) => a + b, 0)).toBe(goneLines);
    expect(again.ordersPlaced).toBeLessThan(ordersCount);
  }, 90_000);
});
