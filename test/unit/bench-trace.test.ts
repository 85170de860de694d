import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { csvRecords, csvRows, loadTrace, speedupFor, TraceError } from "../../bench/harness/trace.ts";
import { type LoadPlan, Workload } from "../../bench/harness/workload.ts";

// Tiny inline fixtures in the two documented formats; the real Olist sample is never needed here.
const dir = mkdtempSync(join(tmpdir(), "sluice-bench-trace-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const olist = join(dir, "olist");
mkdirSync(olist);
writeFileSync(
  join(olist, "orders.csv"),
  [
    "order_id,customer_id,order_status,order_purchase_timestamp,order_approved_at",
    "o2,c2,delivered,2017-10-02 10:00:10,",
    "o1,c1,delivered,2017-10-02 10:00:00,",
    "o3,c3,canceled,2017-10-02 10:00:40,",
    "o4,c1,unavailable,2017-10-02 10:00:20,",
  ].join("\n"),
);
writeFileSync(
  join(olist, "order_items.csv"),
  [
    "order_id,order_item_id,product_id,seller_id,shipping_limit_date,price,freight_value",
    "o1,1,p1,s1,2017-10-06 10:00:00,10.5,1",
    "o1,2,p1,s1,2017-10-06 10:00:00,10.5,1",
    "o1,3,p2,s1,2017-10-06 10:00:00,3,1",
    "o2,1,p2,s2,2017-10-06 10:00:00,3,1",
    "o3,1,p3,s2,2017-10-06 10:00:00,99,1",
  ].join("\r\n"),
);
writeFileSync(
  join(olist, "customers.csv"),
  "customer_id,customer_unique_id,customer_zip_code_prefix,customer_city,customer_state\nc1,u1,1001,sao paulo,SP\nc2,u2,2002,rio,RJ\n",
);

const ndjson = join(dir, "trace.ndjson");
writeFileSync(
  ndjson,
  [
    '{"t":"2024-11-11T00:00:01Z","id":"a","lines":[{"sku":"X","qty":2,"price":5},{"sku":"Y"}],"region":"SP"}',
    "",
    '{"t":1731283200000,"lines":[{"sku":"X"}]}',
    '{"t":1731283202000,"lines":[]}',
  ].join("\n"),
);

describe("traces", () => {
  test("Olist directory: orders sorted by purchase time, units merged per product, regions from customers", () => {
    const t = loadTrace(olist, "auto");
    expect(t.format).toBe("olist-csv");
    expect(t.orders.map((o) => o.id)).toEqual(["o1", "o2", "o3"]);
    expect(t.skipped).toBe(1); // o4 has no items
    expect(t.orders[0]?.lines).toEqual([
      { sku: "p1", qty: 2, price: 10.5 },
      { sku: "p2", qty: 1, price: 3 },
    ]);
    expect(t.orders.map((o) => o.region)).toEqual(["SP", "RJ", null]);
    expect(t.spanMs).toBe(40_000);
  });

  test("NDJSON: ISO or epoch times, defaults for qty and price, empty orders skipped", () => {
    const t = loadTrace(ndjson, "auto");
    expect(t.format).toBe("ndjson");
    expect(t.orders.length).toBe(2);
    expect(t.skipped).toBe(1);
    expect(t.orders[0]?.lines).toEqual([{ sku: "X", qty: 1, price: 0 }]);
    expect(t.orders[1]?.lines).toEqual([
      { sku: "X", qty: 2, price: 5 },
      { sku: "Y", qty: 1, price: 0 },
    ]);
    expect(t.spanMs).toBe(1000);
  });

  test("time compression: a given speedup, or one that fits the span into --fit-s", () => {
    const t = loadTrace(olist, "olist-csv");
    expect(speedupFor(t, 4, 60)).toBe(4);
    expect(speedupFor(t, null, 20)).toBe(2); // 40 s of trace in 20 s
  });

  test("the replay workload publishes the trace's orders at compressed times", () => {
    const t = loadTrace(olist, "olist-csv");
    const plan = {
      seed: 1,
      skus: 1,
      zipf: 1,
      lines: "single",
      phases: [],
      arrivals: "uniform",
      hot: null,
      trace: { path: olist, format: "olist-csv", speedup: 10 },
    } as unknown as LoadPlan;
    const w = new Workload(plan, t);
    const got = [w.next(), w.next(), w.next(), w.next()];
    expect(got.map((o) => o?.intendedUs ?? null)).toEqual([0, 1_000_000, 4_000_000, null]);
    expect(got[1]?.region).toBe("RJ");
    expect(got[2]?.region).toBe("SP"); // unknown customer: the default region
  });

  test("bad traces are refused with the place and the fix", () => {
    const bad = (name: string, text: string) => {
      const p = join(dir, name);
      writeFileSync(p, text);
      return p;
    };
    expect(() => loadTrace(join(dir, "none.ndjson"), "auto")).toThrow(/does not exist/);
    expect(() => loadTrace(bad("a.ndjson", "{nope"), "auto")).toThrow(/a.ndjson:1: not JSON/);
    expect(() => loadTrace(bad("b.ndjson", '{"t":"yesterday","lines":[]}'), "auto")).toThrow(/"t" must be/);
    expect(() => loadTrace(bad("c.ndjson", '{"t":1,"lines":[{"sku":"A","qty":0}]}'), "auto")).toThrow(
      /qty must be/,
    );
    expect(() => loadTrace(bad("d.ndjson", '{"t":1,"lines":[{"qty":1}]}'), "auto")).toThrow(/sku must be/);
    expect(() => loadTrace(bad("e.ndjson", '{"t":1,"lines":[]}'), "auto")).toThrow(/no order with lines/);
    const empty = join(dir, "empty");
    mkdirSync(empty);
    expect(() => loadTrace(empty, "auto")).toThrow(TraceError);
  });
});

describe("CSV", () => {
  test("quoted fields, doubled quotes, commas and newlines inside quotes, CRLF", () => {
    expect(csvRows('a,b\r\n"x, y","he said ""hi"""\n"multi\nline",3')).toEqual([
      ["a", "b"],
      ["x, y", 'he said "hi"'],
      ["multi\nline", "3"],
    ]);
    expect(csvRecords("h1,h2\n1,2\n\n3\n")).toEqual([
      { h1: "1", h2: "2" },
      { h1: "3", h2: "" },
    ]);
  });
});
