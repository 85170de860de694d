import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseNetwork } from "../../src/domain/network/index.ts";
import type { Order, OrderTombstone, PendingCancel } from "../../src/domain/orders/index.ts";
import { Instrumentation } from "../../src/instrumentation/index.ts";
import { OrderApplier, orderTables } from "../../src/stages/order/applier.ts";
import { PartitionStore } from "../../src/store/index.ts";
import { subjects } from "../../src/stream/subjects.ts";
import { testConfig } from "../helpers/index.ts";

// Retention in the order applier over real LMDB: a partition written before retention existed is indexed by
// the backfill (process-clock ticks, bounded pages), then compacted at clock messages (stream time).

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const day = 86_400_000;
const t0 = 1_900_000_000_000;
const network = (() => {
  const parsed = parseNetwork({ warehouses: [{ id: "w1" }], channels: [{ id: "*" }] }, "t-1");
  if (!parsed.ok) throw new Error(parsed.detail);
  return parsed.value;
})();

/** An order as an older version wrote it: no finalAtMs. */
function legacyOrder(orderId: string, state: "cancelled" | "released", lastEventAtMs: number): Order {
  return {
    key: `web.${orderId}`,
    channel: "web",
    orderId,
    version: 3,
    status: state === "cancelled" ? "cancelled" : "allocated",
    createdAtMs: t0,
    shipByMs: t0 + 400 * day,
    priority: 0,
    split: { mode: "allow_partial", maxShipments: 0, backorder: false },
    shipTo: { region: null, zip: null, lat: null, lon: null },
    lines: [
      {
        lineId: "1",
        sku: "A",
        qty: 1,
        price: 1,
        state,
        attempt: 1,
        warehouse: state === "released" ? "w1" : null,
        shippedQty: 0,
        shippedAt: {},
        returnedQty: 0,
        excluded: [],
        cancelCause: state === "cancelled" ? "customer" : null,
        rerouteCause: null,
        refusal: null,
        cancelPending: null,
        decision: null,
      },
    ],
    shipmentIds: [],
    returnIds: [],
    slaRerouted: false,
    policyApplied: true,
    history: [{ atMs: lastEventAtMs, event: "cancelled" }],
  };
}

test("an older partition is backfilled page by page, then compacted and expired at clock messages", async () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-retention-"));
  dirs.push(dir);
  const config = testConfig("nats://127.0.0.1:1", dir, {
    orders: {
      finalRetentionMs: 10 * day,
      tombstoneRetentionMs: 20 * day,
      pendingCancelAgeMsMax: 2 * day,
      retentionPerTickMax: 2,
    },
  });
  const store = PartitionStore.open(
    dir,
    { stage: "order", partition: 0, partitionCount: config.streams.partitionCount },
    { mapBytesMax: 64 * 1024 * 1024, tables: orderTables },
  );
  try {
    const ghost: PendingCancel[] = [{ key: "web.ghost", lineIds: null, cause: "customer", atMs: t0 + 5 }];
    await store.commit({
      ops: [
        { op: "put", table: "orders", key: "web.a", value: legacyOrder("a", "cancelled", t0 + 1) },
        { op: "put", table: "orders", key: "web.b", value: legacyOrder("b", "cancelled", t0 + 2) },
        { op: "put", table: "orders", key: "web.c", value: legacyOrder("c", "released", t0 + 3) },
        { op: "put", table: "timers", key: [t0 + 400 * day, "web.c"], value: 1 },
        { op: "put", table: "pending", key: "web.ghost", value: ghost },
      ],
      outbox: [],
      streamSeqLastApplied: 10,
      streamSeqLastAppliedAtMs: t0 + 5,
    });
    const applier = new OrderApplier(0, config, store, () => network, new Instrumentation());
    expect(applier.timerDueMs()).toBe(t0 + 400 * day); // c's SLA deadline: nothing else is indexed yet
    const commitTick = async () => {
      const write = applier.tick(Date.now());
      if (write !== null) await store.commit({ ...write, streamSeqLastApplied: null });
      return write;
    };
    // Two records per page: orders a, b; then c and the end (pending ghost on the first page).
    expect(await commitTick()).not.toBeNull();
    expect(store.range("finals").map((r) => r.key)).toEqual([
      [t0 + 1, "web.a"],
      [t0 + 2, "web.b"],
    ]);
    expect(store.range("pendingTimes").map((r) => r.key)).toEqual([[t0 + 5, "web.ghost"]]);
    await commitTick();
    expect(store.range("finals")).toHaveLength(2); // c is not final
    expect(store.get<{ done: boolean }>("retention", "backfill")?.done).toBe(true);
    expect(await commitTick()).toBeNull(); // done: a tick writes nothing

    // The runner's clock: the earliest horizon, the waiting cancel's.
    expect(applier.timerDueMs()).toBe(t0 + 5 + 2 * day);
    const clock = async (atMs: number, seq: number) => {
      const m = { stream: "SLUICE_ORDER", seq, subject: subjects.orderClock(0), data: new Uint8Array(0) };
      const write = applier.apply([{ ...m, headers: undefined, atMs }]);
      await store.commit({ ...write, streamSeqLastApplied: seq, streamSeqLastAppliedAtMs: atMs });
    };
    await clock(t0 + 5 + 2 * day, 11);
    expect(store.range("pending")).toEqual([]);
    expect(applier.timerDueMs()).toBe(t0 + 1 + 10 * day);
    await clock(t0 + 2 + 10 * day, 12);
    expect(store.range("orders").map((r) => r.key)).toEqual(["web.c"]);
    expect(store.get<OrderTombstone>("tombstones", "web.a")).toMatchObject({
      status: "cancelled",
      version: 3,
      finalAtMs: t0 + 1,
      compactedAtMs: t0 + 2 + 10 * day,
    });
    expect(applier.orders.get("web.a")).toBeUndefined(); // the applier's cache forgot it too
    expect(applier.orders.tombstoneOf("web.b")?.finalAtMs).toBe(t0 + 2);
    expect(applier.timerDueMs()).toBe(t0 + 1 + 20 * day);
    await clock(t0 + 2 + 20 * day, 13);
    expect(store.range("tombstones")).toEqual([]);
    expect(store.range("tombstoneTimes")).toEqual([]);
    expect(applier.timerDueMs()).toBe(t0 + 400 * day);
  } finally {
    await store.close();
  }
});
