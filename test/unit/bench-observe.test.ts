import { describe, expect, test } from "bun:test";
import { Observer, StockDeltaMatcher } from "../../bench/harness/observe.ts";
import type { Phase } from "../../bench/harness/options.ts";
import { fromMetrics, parsePrometheus } from "../../bench/harness/sample.ts";
import { orderIdOf } from "../../bench/harness/workload.ts";

const start = 1_800_000_000_000;
const phases: Phase[] = [
  { name: "baseline", startS: 0, endS: 10, ratePerSecond: 10 },
  { name: "burst", startS: 10, endS: 20, ratePerSecond: 100 },
];
const finals = new Set(["allocated", "rejected", "cancelled"]);
const enc = new TextEncoder();

function observer(): Observer {
  return new Observer("shop", "run1", phases, start, finals);
}

const key = (n: number, intendedMs: number, lateMs = 0) =>
  `shop.${orderIdOf("run1", n, intendedMs * 1000, (intendedMs + lateMs) * 1000)}`;

function status(
  k: string,
  version: number,
  state: string,
  status: string,
  event: string,
  atMs: number,
  sku = "A",
) {
  return { orderKey: k, version, status, event, atMs, lines: [{ lineId: "1", sku, qty: 1, state }] };
}

function send(o: Observer, subject: string, items: unknown[], arrivalMs: number) {
  o.onMessage(subject, enc.encode(JSON.stringify({ items })), arrivalMs);
}

describe("StockDeltaMatcher", () => {
  test("a delta covers the pending lines sent at or before its atMs, oldest first", () => {
    const m = new StockDeltaMatcher();
    expect(m.addLine("A", 100, 100)).toBeNull();
    expect(m.addLine("A", 150, 160)).toBeNull();
    expect(m.addLine("A", 200, 200)).toBeNull();
    expect(m.addLine("B", 100, 100)).toBeNull();
    expect(m.onDelta("A", 170, 300)).toEqual([200, 150]);
    expect(m.pendingCount()).toBe(2);
    expect(m.onDelta("A", 180, 310)).toEqual([]);
    expect(m.onDelta("A", 250, 320)).toEqual([120]);
    expect(m.onDelta("C", 999, 999)).toEqual([]);
    expect(m.pendingCount()).toBe(1);
  });

  test("a line first seen after the delta that covered it takes that delta's arrival", () => {
    const m = new StockDeltaMatcher();
    m.onDelta("A", 500, 600);
    m.onDelta("A", 700, 650);
    expect(m.addLine("A", 400, 450)).toBe(200); // covered by the first (atMs 500 ≥ sent 450): 600 − 400
    expect(m.addLine("A", 600, 690)).toBe(50); // only the second covers it
    expect(m.addLine("A", 800, 800)).toBeNull(); // nothing yet
  });

  test("a line sent late is matched by its actual send time, timed from its intended one", () => {
    const m = new StockDeltaMatcher();
    m.addLine("A", 100, 400); // meant at 100, sent at 400
    expect(m.onDelta("A", 300, 350)).toEqual([]); // could not include it
    expect(m.onDelta("A", 450, 500)).toEqual([400]);
  });
});

describe("Observer", () => {
  test("allocated and fulfil latencies from the intended time, per phase; hops; final states", () => {
    const o = observer();
    const k0 = key(0, 1000);
    const k1 = key(1, 12_000, 5);
    send(
      o,
      "sluice.out.order.shop",
      [status(k0, 1, "received", "pending", "created", start + 1002)],
      start + 1010,
    );
    send(
      o,
      "sluice.out.order.shop",
      [status(k1, 1, "received", "pending", "created", start + 12_006)],
      start + 12_020,
    );
    send(
      o,
      "sluice.out.order.shop",
      [
        status(k0, 2, "released", "allocated", "allocated", start + 1030),
        status(k1, 2, "rejected", "rejected", "refused", start + 12_040),
      ],
      start + 12_050,
    );
    send(
      o,
      "sluice.out.fulfil.w1",
      [{ type: "fulfil", orderKey: k0, warehouse: "w1", lines: [{ lineId: "1", sku: "A", qty: 1 }] }],
      start + 12_051,
    );
    // a duplicate and another run's order change nothing
    send(o, "sluice.out.fulfil.w1", [{ type: "fulfil", orderKey: k0 }], start + 12_060);
    send(
      o,
      "sluice.out.order.shop",
      [status("shop.bother-0-0-0", 1, "released", "allocated", "x", 0)],
      start + 12_061,
    );
    o.finish(start + 13_000);

    expect(o.completed).toBe(2);
    expect(o.fulfilled).toBe(1);
    expect(o.finalCount).toBe(2);
    expect(o.statusOf(0)).toBe("allocated");
    expect(o.statusOf(1)).toBe("rejected");
    expect(o.statusOf(2)).toBeNull();
    const allocated = o.summaries("allocated");
    expect(allocated.overall.count).toBe(2);
    expect(allocated.phases.baseline?.count).toBe(1);
    expect(allocated.phases.baseline?.maxMs).toBe(11_050); // 12,050 − 1,000
    expect(allocated.phases.burst?.maxMs).toBe(50); // 12,050 − 12,000
    expect(o.summaries("fulfil").overall.maxMs).toBe(11_051);
    // hops of order 1: stored 6 ms after intended, created seen 14 ms later, answer stored 20 ms later, applied 10 ms
    const hop = (k: "accept" | "orderStage" | "ledgerStage" | "answer") =>
      o.hopSummaries(k).phases.burst?.maxMs;
    expect([hop("accept"), hop("orderStage"), hop("ledgerStage"), hop("answer")]).toEqual([6, 14, 20, 10]);
    expect(o.lastCompletionMs).toEqual([start + 12_050, start + 12_050]);
    // the timeline: one row per second of arrival, completions where they arrived
    expect(o.rows.map((r) => r.s)).toEqual(Array.from({ length: 14 }, (_, i) => i));
    expect(o.rows[12]?.completed).toBe(2);
    expect(o.rows[12]?.latencyMs.allocated.count).toBe(2);
    expect(o.rows[5]?.completed).toBe(0);
  });

  test("a status that goes back from final to open is counted once", () => {
    const o = new Observer("shop", "run1", phases, start, new Set(["shipped"]));
    const k = key(0, 0);
    send(o, "sluice.out.order.shop", [status(k, 2, "released", "allocated", "allocated", start)], start + 5);
    expect(o.finalCount).toBe(0);
    send(o, "sluice.out.order.shop", [status(k, 3, "shipped", "shipped", "shipped", start)], start + 6);
    send(o, "sluice.out.order.shop", [status(k, 3, "shipped", "shipped", "shipped", start)], start + 7);
    expect(o.finalCount).toBe(1);
    expect(o.openKeys.size).toBe(0);
    send(o, "sluice.out.order.shop", [status(k, 1, "received", "pending", "created", start)], start + 8); // stale
    expect(o.statusOf(0)).toBe("shipped");
    expect(o.finalCount).toBe(1);
  });

  test("backorders: seen backordered, then allocated: one fill with the time between; a BO- line waits for no stock delta", () => {
    const o = observer();
    const k = key(0, 0);
    send(
      o,
      "sluice.out.order.shop",
      [status(k, 1, "received", "pending", "created", start, "BO-1")],
      start + 5,
    );
    send(
      o,
      "sluice.out.order.shop",
      [status(k, 2, "backordered", "backordered", "x", start, "BO-1")],
      start + 10,
    );
    send(
      o,
      "sluice.out.order.shop",
      [status(k, 2, "backordered", "backordered", "x", start, "BO-1")],
      start + 11,
    );
    expect(o.backorders.waited).toBe(1);
    expect(o.backorders.filled).toBe(0);
    send(
      o,
      "sluice.out.order.shop",
      [status(k, 3, "allocated", "allocated", "x", start, "BO-1")],
      start + 1210,
    );
    send(o, "sluice.out.order.shop", [status(k, 4, "shipped", "shipped", "x", start, "BO-1")], start + 2000);
    expect(o.backorders.filled).toBe(1);
    expect(o.backorders.fill.summary().count).toBe(1);
    expect(o.backorders.fill.summary().maxMs).toBeCloseTo(1200, -1);
    expect(o.linesSeen).toBe(0);
    // An order never backordered is no fill.
    const k2 = key(1, 0);
    send(o, "sluice.out.order.shop", [status(k2, 2, "allocated", "allocated", "x", start)], start + 20);
    expect(o.backorders.filled).toBe(1);
  });

  test("stock deltas: per-line latency, last value per (channel, SKU) by version", () => {
    const o = observer();
    const k = key(0, 1000);
    send(
      o,
      "sluice.out.order.shop",
      [status(k, 1, "received", "pending", "created", start + 1001, "SKU-9")],
      start + 1005,
    );
    send(
      o,
      "sluice.out.stock.shop",
      [{ sku: "SKU-9", ats: 7, version: 3, atMs: start + 1020 }],
      start + 1040,
    );
    send(o, "sluice.out.stock.shop", [{ sku: "SKU-9", ats: 9, version: 2, atMs: start + 900 }], start + 1041);
    send(o, "sluice.out.stock.shop", [{ sku: "SKU-9", ats: "bad" }], start + 1042);
    expect(o.summaries("stockDelta").overall.maxMs).toBe(40);
    expect(o.stock.get("shop\u0000SKU-9")).toEqual({
      ats: 7,
      version: 3,
      atMs: start + 1020,
      channel: "shop",
    });
    expect(o.stockDeltaItems).toBe(2);
    expect(o.linesMatched).toBe(1);
  });

  test("a message that is not JSON is counted, not fatal", () => {
    const o = observer();
    o.onMessage("sluice.out.order.shop", enc.encode("{nope"), start);
    expect(o.undecodable).toBe(1);
  });

  test("order numbers far beyond the initial arrays grow them", () => {
    const o = observer();
    send(
      o,
      "sluice.out.order.shop",
      [status(key(200_000, 5), 1, "released", "allocated", "allocated", start)],
      start + 10,
    );
    expect(o.statusOf(200_000)).toBe("allocated");
    expect(o.ordersSeen).toBe(200_001);
  });
});

describe("Prometheus scrape", () => {
  const text = `# HELP sluice_partition_lag_messages lag
# TYPE sluice_partition_lag_messages gauge
sluice_partition_lag_messages{node="sluice",stage="order",partition="0"} 5
sluice_partition_lag_messages{node="sluice",stage="order",partition="1"} 7
sluice_partition_lag_messages{node="sluice",stage="ledger",partition="0"} 2
sluice_apply_duration_seconds_sum{node="sluice",stage="order"} 1.5
sluice_commit_duration_seconds_sum{node="sluice",stage="ledger"} 0.25
sluice_batch_size_messages_count{node="sluice",stage="order"} 10
sluice_batch_size_messages_sum{node="sluice",stage="order"} 200
sluice_dead_letters_total{node="sluice",stage="order",reason="bad_subject"} 3
sluice_outbox_depth_items{node="sluice",stage="order",partition="0"} 4
process_resident_memory_bytes{node="sluice"} 123456
weird line without value
`;

  test("lines, labels and values", () => {
    const lines = parsePrometheus(text);
    expect(lines.find((l) => l.name === "process_resident_memory_bytes")?.value).toBe(123456);
    expect(lines[0]?.labels).toEqual({ node: "sluice", stage: "order", partition: "0" });
  });

  test("the bench's figures", () => {
    const m = fromMetrics(parsePrometheus(text));
    expect(m.lag).toEqual({ order: 12, ledger: 2 });
    expect(m.stages.order.applySeconds).toBe(1.5);
    expect(m.stages.ledger.commitSeconds).toBe(0.25);
    expect(m.stages.order.batches).toBe(10);
    expect(m.stages.order.batchMessages).toBe(200);
    expect(m.deadLetters).toBe(3);
    expect(m.deadLettersByReason).toEqual({ bad_subject: 3 });
    expect(m.outboxDepth).toBe(4);
  });
});
