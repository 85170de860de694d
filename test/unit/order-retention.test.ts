import { describe, expect, test } from "bun:test";
import type { InputRef } from "../../src/domain/ledger/ledger.ts";
import {
  type OrderChanges,
  type OrderOutcome,
  Orders,
  type RetentionLimits,
} from "../../src/domain/orders/index.ts";
import { buildNetwork } from "./model/network.ts";
import { MemOrderStore } from "./model/stores.ts";

// Retention on the pure core (docs: subjects.md "Delivery guarantees", architecture.md "Retention"): a final
// order becomes a tombstone after finalRetentionMs, the tombstone goes after tombstoneRetentionMs, cancels
// waiting for an order that never comes go after pendingCancelAgeMsMax; every late input has an outcome.

const day = 86_400_000;
const retention: RetentionLimits = {
  finalRetentionMs: 10 * day,
  tombstoneRetentionMs: 30 * day,
  pendingCancelAgeMsMax: 2 * day,
  perTickMax: 100,
};
const network = buildNetwork({
  warehouseCount: 2,
  backorder: false,
  split: "allow_partial",
  maxShipments: 0,
  slaAction: "cancel",
});
const shipTo = { region: null, zip: null, lat: null, lon: null };
const t0 = 1_900_000_000_000;
const key = (id: string) => `web.${id}`;

/** One order partition over a Map store: batches are committed as the applier commits them. */
class Partition {
  readonly store = new MemOrderStore();
  readonly orders: Orders;
  private seq = 0;

  constructor(limits: Partial<RetentionLimits> = {}) {
    this.orders = new Orders(
      this.store,
      () => network,
      {
        historyCountMax: 50,
        pendingCancelsPerOrderMax: 4,
        timersPerTickMax: 100,
        retention: { ...retention, ...limits },
      },
      { stock: () => undefined, load: () => 0 },
    );
  }

  at(atMs: number): InputRef {
    return { seq: ++this.seq, atMs };
  }

  commit(): OrderChanges {
    const changes = this.orders.takeChanges();
    this.store.commit(changes, this.seq);
    return changes;
  }

  create(id: string, atMs: number, lines = ["1"]): OrderOutcome {
    return this.orders.create(
      key(id),
      {
        channel: "web",
        orderId: id,
        lines: lines.map((lineId) => ({ lineId, sku: "A", qty: 2, price: 3 })),
        shipTo,
        shipByMs: atMs + 365 * day, // no SLA deadline in these tests
        priority: 0,
        split: {},
      },
      this.at(atMs),
    );
  }

  cancel(id: string, atMs: number, lineIds: string[] | null = null): OrderOutcome {
    const input = { channel: "web", orderId: id, lineIds, cause: "customer" as const };
    return this.orders.cancel(key(id), input, this.at(atMs));
  }

  /** Reserved at w1 by the ledger, then released (no line waits): a released order. */
  reserve(id: string, atMs: number, lineId = "1"): void {
    const ref = { orderKey: key(id), lineId };
    this.orders.ledgerResult(
      { kind: "reserved", ref, sku: "A", attempt: 1, warehouse: "w1", qty: 2 },
      this.at(atMs),
    );
  }

  ship(id: string, shipmentId: string, atMs: number, lineId = "1", qty = 2): OrderOutcome {
    const input = { channel: "web", orderId: id, warehouse: "w1", shipmentId, lines: [{ lineId, qty }] };
    return this.orders.shipped(key(id), input, this.at(atMs));
  }

  reject(id: string, atMs: number): OrderOutcome {
    const input = {
      channel: "web",
      orderId: id,
      warehouse: "w1",
      lineIds: ["1"],
      stockMissing: false,
      reason: null,
    };
    return this.orders.rejected(key(id), input, this.at(atMs));
  }

  return(id: string, returnId: string, atMs: number, qty = 1): OrderOutcome {
    const input = {
      channel: "web",
      orderId: id,
      returnId,
      lines: [{ lineId: "1", qty, disposition: "sellable" as const, warehouse: null }],
    };
    return this.orders.returned(key(id), input, this.at(atMs));
  }

  /** A shipped order: created at `atMs`, reserved, released and shipped whole at `atMs + 1`. */
  shipped(id: string, atMs: number): void {
    expect(this.create(id, atMs)).toMatchObject({ ok: true });
    this.reserve(id, atMs);
    expect(this.ship(id, `s-${id}`, atMs + 1)).toEqual({ ok: true, event: "shipped" });
    this.commit();
  }

  /** A clock message at stream time `nowMs`, in a batch of its own. */
  clock(nowMs: number): { handled: number; changes: OrderChanges } {
    const handled = this.orders.compact(nowMs);
    return { handled, changes: this.commit() };
  }
}

const counted = (c: OrderChanges, label: string) =>
  c.counts.find((x) => x.name === "retention" && x.label === label)?.count ?? 0;

describe("final orders: full record, tombstone, forgotten", () => {
  test("a shipped order becomes a tombstone after finalRetentionMs and is forgotten after tombstoneRetentionMs", () => {
    const p = new Partition();
    p.shipped("o1", t0);
    const order = p.store.orders.get(key("o1"));
    expect(order).toMatchObject({ status: "shipped", finalAtMs: t0 + 1 });
    expect([...p.store.retention.finals.values()]).toEqual([{ atMs: t0 + 1, key: key("o1") }]);

    // One ms before the horizon: nothing.
    expect(p.clock(t0 + 1 + 10 * day - 1).handled).toBe(0);
    expect(p.store.orders.has(key("o1"))).toBe(true);

    const { changes } = p.clock(t0 + 1 + 10 * day);
    expect(counted(changes, "compacted")).toBe(1);
    expect(changes.effects.statuses).toEqual([]); // compaction publishes nothing
    expect(p.store.orders.has(key("o1"))).toBe(false);
    expect(p.store.tombstones.get(key("o1"))).toEqual({
      channel: "web",
      orderId: "o1",
      status: "shipped",
      version: order?.version as number,
      createdAtMs: t0,
      finalAtMs: t0 + 1,
      compactedAtMs: t0 + 1 + 10 * day,
    });
    expect(p.store.retention.finals.size).toBe(0);
    expect([...p.store.retention.tombstones.values()]).toEqual([{ atMs: t0 + 1, key: key("o1") }]);

    expect(p.clock(t0 + 1 + 30 * day - 1).handled).toBe(0);
    const gone = p.clock(t0 + 1 + 30 * day).changes;
    expect(counted(gone, "tombstone_removed")).toBe(1);
    expect(p.store.tombstones.size).toBe(0);
    expect(p.store.retention.tombstones.size).toBe(0);
  });

  test("every late input for a tombstone is recognised: ignored or refused, never a new order or a pending cancel", () => {
    const p = new Partition();
    p.shipped("o1", t0);
    p.clock(t0 + 11 * day);
    const at = t0 + 12 * day;
    expect(p.create("o1", at)).toEqual({ ok: true, event: "duplicate_order_compacted" });
    const refused = [
      ["a cancel", p.cancel("o1", at)],
      ["shipment s-late", p.ship("o1", "s-late", at)],
      ["shipment s-o1", p.ship("o1", "s-o1", at)], // a WMS retry of the shipment it had: refused as well
      ["a rejection by w1", p.reject("o1", at)],
      ["return r1", p.return("o1", "r1", at)],
    ] as const;
    for (const [what, outcome] of refused) {
      expect(outcome.ok).toBe(false);
      if (outcome.ok) continue;
      expect(outcome.reason).toBe("invalid_transition");
      expect(outcome.detail).toContain("order web/o1 was final (shipped) at");
      expect(outcome.detail).toContain("has been compacted (orders.finalRetentionMs passed)");
      expect(outcome.detail).toContain(`${what} for it changes nothing`);
    }
    p.reserve("o1", at); // a ledger answer for it: stale, ignored
    const changes = p.commit();
    expect(changes.orders).toEqual([]);
    expect(changes.pendingCancels).toEqual([]);
    expect(changes.effects).toEqual({ ledger: [], statuses: [], fulfilment: [], erp: [] });
    expect(p.store.orders.has(key("o1"))).toBe(false);
    expect(p.store.pending.size).toBe(0);
  });

  test("past the tombstone horizon the key is unknown: an order is new, a cancel waits, a shipment is unknown_order", () => {
    const p = new Partition();
    p.shipped("o1", t0);
    p.clock(t0 + 11 * day);
    p.clock(t0 + 31 * day);
    expect(p.ship("o1", "s-late", t0 + 32 * day)).toMatchObject({ ok: false, reason: "unknown_order" });
    expect(p.return("o1", "r1", t0 + 32 * day)).toMatchObject({ ok: false, reason: "unknown_order" });
    expect(p.cancel("o1", t0 + 32 * day)).toEqual({ ok: true, event: "cancel_pending" });
    p.commit();
    expect(p.create("o1", t0 + 33 * day)).toEqual({ ok: true, event: "created" });
    p.commit();
    expect(p.store.orders.get(key("o1"))?.status).toBe("cancelled");
  });

  test("a return within the window is applied and does not move the final time; one after it is refused", () => {
    const p = new Partition();
    p.shipped("o1", t0);
    expect(p.return("o1", "r1", t0 + 9 * day)).toEqual({ ok: true, event: "returned" });
    p.commit();
    expect(p.store.orders.get(key("o1"))).toMatchObject({ finalAtMs: t0 + 1, lines: [{ returnedQty: 1 }] });
    p.clock(t0 + 1 + 10 * day);
    expect(p.return("o1", "r2", t0 + 10 * day + 2)).toMatchObject({
      ok: false,
      reason: "invalid_transition",
    });
  });

  test("cancelled and rejected orders are final too; an order with an open line never is", () => {
    const p = new Partition();
    p.create("c1", t0);
    p.reserve("c1", t0);
    expect(p.cancel("c1", t0 + 5)).toEqual({ ok: true, event: "cancelled" });
    p.create("r1", t0);
    p.orders.ledgerResult(
      {
        kind: "refused",
        ref: { orderKey: key("r1"), lineId: "1" },
        sku: "A",
        attempt: 1,
        code: "insufficient_available",
        available: 0,
      },
      p.at(t0 + 7),
    );
    p.create("open", t0, ["1", "2"]);
    p.reserve("open", t0, "1");
    p.reserve("open", t0, "2");
    p.ship("open", "s1", t0 + 1, "1"); // line 2 is still released, not shipped
    p.commit();
    expect(p.store.orders.get(key("c1"))).toMatchObject({ status: "cancelled", finalAtMs: t0 + 5 });
    expect(p.store.orders.get(key("r1"))).toMatchObject({ status: "rejected", finalAtMs: t0 + 7 });
    expect(p.store.orders.get(key("open"))).toMatchObject({ status: "partially_shipped" });
    expect(p.store.orders.get(key("open"))?.finalAtMs).toBeUndefined();
    const { changes } = p.clock(t0 + 20 * day);
    expect(counted(changes, "compacted")).toBe(2);
    expect(p.store.tombstones.get(key("c1"))?.status).toBe("cancelled");
    expect(p.store.tombstones.get(key("r1"))?.status).toBe("rejected");
    expect(p.store.orders.get(key("open"))?.status).toBe("partially_shipped");
  });

  test("a clock handles at most perTickMax rows of an index, earliest first; the rest at the next clock", () => {
    const p = new Partition({ perTickMax: 2 });
    for (let i = 0; i < 5; i++) p.shipped(`o${i}`, t0 + i * 10);
    expect(p.clock(t0 + 20 * day).handled).toBe(2);
    expect([...p.store.tombstones.keys()].sort()).toEqual([key("o0"), key("o1")]);
    expect(p.clock(t0 + 20 * day).handled).toBe(2);
    expect(p.clock(t0 + 20 * day).handled).toBe(1);
    expect(p.store.orders.size).toBe(0);
    expect(p.store.tombstones.size).toBe(5);
  });

  test("within one batch: an order final and compacted, then its duplicate, the same as over many batches", () => {
    const run = (commitBetween: boolean) => {
      const p = new Partition({ finalRetentionMs: 5, tombstoneRetentionMs: 5 });
      const step = () => {
        if (commitBetween) p.commit();
      };
      p.cancel("o1", t0); // waits; the order then arrives with every line cancelled: final at once
      step();
      expect(p.create("o1", t0 + 1)).toEqual({ ok: true, event: "created" });
      step();
      p.orders.compact(t0 + 6);
      step();
      const dup = p.create("o1", t0 + 7);
      step();
      p.commit();
      return { dup, store: p.store };
    };
    const oneBatch = run(false);
    const many = run(true);
    // Equal horizons: compacted and forgotten by the same clock, so the same message again is a new order.
    expect(oneBatch.dup).toEqual({ ok: true, event: "created" });
    expect(many.dup).toEqual(oneBatch.dup);
    expect(many.store.orders.get(key("o1"))).toEqual(oneBatch.store.orders.get(key("o1")));
    expect(oneBatch.store.tombstones.size).toBe(0);
    expect(oneBatch.store.pending.size).toBe(0);
    expect(oneBatch.store.retention.pending.size).toBe(0);
  });

  test("an order changed earlier in the clock's batch publishes that change before it is compacted", () => {
    const p = new Partition({ finalRetentionMs: 100 });
    p.shipped("o1", t0);
    expect(p.return("o1", "r1", t0 + 50)).toEqual({ ok: true, event: "returned" });
    p.orders.compact(t0 + 101);
    const changes = p.commit();
    expect(changes.effects.statuses).toMatchObject([{ orderId: "o1", event: "returned", status: "shipped" }]);
    expect(changes.effects.ledger).toMatchObject([{ kind: "return", eventId: "r1" }]);
    expect(changes.orders).toEqual([]);
    expect(changes.ordersDeleted).toEqual([key("o1")]);
    expect(p.store.tombstones.get(key("o1"))?.version).toBe(changes.effects.statuses[0]?.version as number);
  });

  test("an order written before final times were recorded is indexed at its last event", async () => {
    const { finalAtOf } = await import("../../src/domain/orders/index.ts");
    const p = new Partition();
    p.shipped("o1", t0);
    const legacy = { ...(p.store.orders.get(key("o1")) as NonNullable<ReturnType<typeof p.store.getOrder>>) };
    delete legacy.finalAtMs;
    expect(finalAtOf(legacy)).toBe(legacy.history.at(-1)?.atMs as number);
    expect(finalAtOf({ ...legacy, history: [] })).toBe(t0);
  });
});

describe("cancels waiting for an order that never comes", () => {
  test("expire after pendingCancelAgeMsMax, each by its own time, counted; a later order is not cancelled", () => {
    const p = new Partition();
    expect(p.cancel("ghost", t0, ["1"])).toEqual({ ok: true, event: "cancel_pending" });
    p.commit();
    expect(p.cancel("ghost", t0 + day, ["2"])).toEqual({ ok: true, event: "cancel_pending" });
    p.commit();
    expect([...p.store.retention.pending.values()]).toEqual([{ atMs: t0, key: key("ghost") }]);

    expect(p.clock(t0 + 2 * day - 1).handled).toBe(0);
    const first = p.clock(t0 + 2 * day).changes;
    expect(counted(first, "pending_cancel_expired")).toBe(1);
    expect(p.store.pending.get(key("ghost"))?.map((c) => c.lineIds)).toEqual([["2"]]);
    expect([...p.store.retention.pending.values()]).toEqual([{ atMs: t0 + day, key: key("ghost") }]);

    const second = p.clock(t0 + 3 * day).changes;
    expect(counted(second, "pending_cancel_expired")).toBe(1);
    expect(p.store.pending.size).toBe(0);
    expect(p.store.retention.pending.size).toBe(0);

    expect(p.create("ghost", t0 + 4 * day, ["1", "2"])).toEqual({ ok: true, event: "created" });
    p.commit();
    expect(p.store.orders.get(key("ghost"))?.lines.map((l) => l.state)).toEqual(["received", "received"]);
  });

  test("a cancel whose order arrives in time is applied and its index row goes with it", () => {
    const p = new Partition();
    p.cancel("o1", t0);
    p.commit();
    p.create("o1", t0 + day);
    p.commit();
    expect(p.store.orders.get(key("o1"))?.status).toBe("cancelled");
    expect(p.store.retention.pending.size).toBe(0);
    // The order is final (all lines cancelled), so it is indexed for compaction instead.
    expect([...p.store.retention.finals.values()]).toEqual([{ atMs: t0 + day, key: key("o1") }]);
  });

  test("the per-clock limit bounds expiries too", () => {
    const p = new Partition({ perTickMax: 3 });
    for (let i = 0; i < 7; i++) p.cancel(`g${i}`, t0 + i);
    p.commit();
    expect(p.clock(t0 + 10 * day).handled).toBe(3);
    expect(p.store.pending.size).toBe(4);
    p.clock(t0 + 10 * day);
    p.clock(t0 + 10 * day);
    expect(p.store.pending.size).toBe(0);
  });
});

describe("without retention limits", () => {
  test("nothing is indexed, nothing is compacted (in-memory views of other tests)", () => {
    const store = new MemOrderStore();
    const orders = new Orders(store, () => network, {
      historyCountMax: 50,
      pendingCancelsPerOrderMax: 4,
      timersPerTickMax: 100,
    });
    orders.cancel(
      key("o1"),
      { channel: "web", orderId: "o1", lineIds: null, cause: "customer" },
      {
        seq: 1,
        atMs: t0,
      },
    );
    const changes = orders.takeChanges();
    expect(changes.retention).toEqual([]);
    expect(orders.compact(t0 + 1000 * day)).toBe(0);
  });
});
