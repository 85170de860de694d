import { heapStats } from "bun:jsc";
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { Packr, Unpackr } from "msgpackr";
import type { SkuState } from "../../src/domain/ledger/index.ts";
import type { Order, OrderLine } from "../../src/domain/orders/index.ts";
import { BoundedCache, orderBytes, skuStateBytes } from "../../src/stages/cache.ts";

// The partition caches (src/stages/cache.ts): bounded by count and by estimated bytes (ledger.cacheBytesMax,
// orders.cacheBytesMax), with size estimates from a value's shape.

describe("BoundedCache", () => {
  test("keeps at most countMax entries, evicting the oldest set first", () => {
    const c = new BoundedCache<string, number>(2);
    c.set("a", 1);
    c.set("b", 2);
    c.set("a", 3); // set again: the newest
    c.set("c", 4);
    expect([c.get("a"), c.get("b"), c.get("c")]).toEqual([3, undefined, 4]);
    expect(c.size).toBe(2);
  });

  test("a read does not reorder: eviction is by last write (or load)", () => {
    const c = new BoundedCache<string, number>(2);
    c.set("a", 1);
    c.set("b", 2);
    expect(c.get("a")).toBe(1);
    c.set("c", 3);
    expect(c.get("a")).toBeUndefined();
    expect(c.get("b")).toBe(2);
  });

  test("getOr loads a missing value once and keeps it; a value that is absent is not cached", () => {
    const c = new BoundedCache<string, number>(10);
    let loads = 0;
    expect(c.getOr("a", () => ++loads)).toBe(1);
    expect(c.getOr("a", () => ++loads)).toBe(1);
    expect(c.getOr("b", () => undefined)).toBeUndefined();
    expect([loads, c.size]).toEqual([1, 1]);
  });

  test("bytes: evicts the oldest until the estimated total fits bytesMax", () => {
    const c = new BoundedCache<string, string>(100, 10, (v) => v.length);
    c.set("a", "xxxx");
    c.set("b", "xxxx");
    expect(c.bytes).toBe(8);
    c.set("c", "xxxx");
    expect([c.get("a"), c.get("b"), c.get("c"), c.bytes]).toEqual([undefined, "xxxx", "xxxx", 8]);
    c.delete("b");
    expect(c.bytes).toBe(4);
  });

  test("a value larger than bytesMax is not kept, and the older value under its key is dropped", () => {
    const c = new BoundedCache<string, string>(100, 10, (v) => v.length);
    c.set("a", "xx");
    c.set("b", "xx");
    c.set("a", "x".repeat(11));
    expect([c.get("a"), c.get("b"), c.bytes, c.size]).toEqual([undefined, "xx", 2, 1]);
  });

  test("0 keeps nothing (count or bytes)", () => {
    for (const c of [new BoundedCache<string, number>(0), new BoundedCache<string, number>(9, 0, () => 1)]) {
      c.set("a", 1);
      expect([c.get("a"), c.size, c.bytes]).toEqual([undefined, 0, 0]);
    }
  });

  test("generated: both bounds always hold, the total is the sum of what is kept, the last set stays", () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant("set" as const), key: fc.nat(30), size: fc.nat(400) }),
      fc.record({ kind: fc.constant("delete" as const), key: fc.nat(30) }),
    );
    fc.assert(
      fc.property(fc.nat(20), fc.nat(1500), fc.array(op, { maxLength: 300 }), (countMax, bytesMax, ops) => {
        const c = new BoundedCache<number, number>(countMax, bytesMax, (size) => size);
        const model = new Map<number, number>();
        for (const o of ops) {
          if (o.kind === "delete") {
            c.delete(o.key);
            model.delete(o.key);
            continue;
          }
          c.set(o.key, o.size);
          model.delete(o.key);
          if (countMax > 0 && o.size <= bytesMax) {
            model.set(o.key, o.size);
            expect(c.get(o.key)).toBe(o.size);
          } else expect(c.get(o.key)).toBeUndefined();
          // The model evicts the oldest set first, like the cache.
          let total = [...model.values()].reduce((a, b) => a + b, 0);
          for (const [k, v] of model) {
            if (model.size <= countMax && total <= bytesMax) break;
            model.delete(k);
            total -= v;
          }
          expect(c.size).toBeLessThanOrEqual(countMax);
          expect(c.bytes).toBeLessThanOrEqual(bytesMax);
        }
        let sum = 0;
        for (const [k, v] of model) {
          expect(c.get(k)).toBe(v);
          sum += v;
        }
        expect([c.size, c.bytes]).toEqual([model.size, sum]);
      }),
      { numRuns: 300 },
    );
  });
});

const line = (i: number, sku = `SKU-${i}`): OrderLine => ({
  lineId: String(i),
  sku,
  qty: 1,
  price: 19.9,
  state: "released",
  attempt: 1,
  warehouse: "w1",
  shippedQty: 0,
  shippedAt: {},
  returnedQty: 0,
  excluded: [],
  cancelCause: null,
  rerouteCause: null,
  refusal: null,
  cancelPending: null,
  decision: {
    rules: "file-9552603b524d",
    atMs: 1_900_000_000_010,
    chosen: "w1",
    score: 2,
    reason: "best_score",
    shipments: 1,
    candidates: [
      {
        warehouse: "w1",
        score: 2,
        distanceKm: null,
        proximity: 1,
        stock: 1,
        load: 1,
        carrier: 0,
        carrierId: null,
      },
    ],
    filtered: [
      { warehouse: "w2", reason: "no_stock" },
      { warehouse: "w3", reason: "no_stock" },
    ],
  },
});

const order = (orderId: string, lines: OrderLine[], history: Order["history"]): Order => ({
  key: `shop.${orderId}`,
  channel: "shop",
  orderId,
  version: 3,
  status: "allocated",
  createdAtMs: 1_900_000_000_010,
  shipByMs: 1_900_172_800_010,
  priority: 0,
  split: { mode: "allow_partial", maxShipments: 0, backorder: false },
  shipTo: { region: "SP", zip: null, lat: null, lon: null },
  lines,
  shipmentIds: [],
  returnIds: [],
  slaRerouted: false,
  policyApplied: true,
  history,
});

const sku = (id: string, warehouses: string[], channels: string[]): SkuState => ({
  sku: id,
  version: 2,
  positions: Object.fromEntries(
    warehouses.map((w) => [w, { onHand: 10, reserved: 1, damaged: 0, qualityControl: 0, safetyStock: 0 }]),
  ),
  ats: Object.fromEntries(channels.map((c) => [c, 9])),
});

describe("size estimates", () => {
  const id = fc.string({ minLength: 1, maxLength: 40 });

  test("generated: an order's estimate grows with every line, history event and longer id", () => {
    fc.assert(
      fc.property(
        id,
        fc.array(id, { minLength: 1, maxLength: 20 }),
        fc.array(fc.record({ event: id, detail: fc.option(id, { nil: undefined }) }), { maxLength: 30 }),
        (orderId, skus, events) => {
          const history = events.map((e, i) =>
            e.detail === undefined
              ? { atMs: i, event: e.event }
              : { atMs: i, event: e.event, detail: e.detail },
          );
          const lines = skus.map((s, i) => line(i, s));
          const base = orderBytes(order(orderId, lines, history));
          expect(orderBytes(order(orderId, [...lines, line(99)], history))).toBeGreaterThan(base);
          expect(orderBytes(order(orderId, lines, [...history, { atMs: 0, event: "x" }]))).toBeGreaterThan(
            base,
          );
          expect(orderBytes(order(`${orderId}x`, lines, history))).toBeGreaterThan(base);
          const shipped = lines.map((l, i) =>
            i === 0 ? { ...l, shippedAt: { w1: 1 }, excluded: ["w2"] } : l,
          );
          expect(orderBytes(order(orderId, shipped, history))).toBeGreaterThan(base);
        },
      ),
      { numRuns: 200 },
    );
  });

  test("generated: a SKU state's estimate grows with warehouses and synced channels", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(id, { maxLength: 10 }),
        fc.uniqueArray(id, { maxLength: 10 }),
        (warehouses, channels) => {
          const base = skuStateBytes(sku("A", warehouses, channels));
          expect(skuStateBytes(sku("A", [...warehouses, "\u0000w"], channels))).toBeGreaterThan(base);
          expect(skuStateBytes(sku("A", warehouses, [...channels, "\u0000c"]))).toBeGreaterThan(base);
          expect(skuStateBytes(sku("AB", warehouses, channels))).toBeGreaterThan(base);
        },
      ),
    );
  });

  test("generated orders in a byte-bounded cache: the estimated total stays under the budget", () => {
    const budget = 256 * 1024;
    const c = new BoundedCache<string, Order>(1_000_000, budget, orderBytes);
    fc.assert(
      fc.property(fc.nat(10_000), fc.integer({ min: 1, max: 30 }), fc.nat(50), (n, lines, events) => {
        const o = order(
          `o-${n}`,
          Array.from({ length: lines }, (_, i) => line(i)),
          Array.from({ length: events }, (_, i) => ({ atMs: i, event: "shipped", detail: `s-${i}` })),
        );
        c.set(o.key, o);
        expect(c.bytes).toBeLessThanOrEqual(budget);
        expect(c.get(o.key)).toBe(o);
      }),
      { numRuns: 2000 },
    );
    expect(c.size).toBeGreaterThan(1);
  });

  // The estimate is meant to stand for the heap the decoded values take: a 1 GiB budget is set in these
  // bytes. Decoded as LMDB decodes them (msgpack records), measured with a full collection before and after.
  test("estimates are within ±35% of the heap that decoded orders and SKU states take", () => {
    const structures: unknown[] = [];
    const packr = new Packr({ structures, useRecords: true } as never);
    const cases: Array<[string, (i: number) => unknown, number, (v: never) => number]> = [
      [
        "order, 1 line",
        (i) => order(`o-${i}`, [line(1)], [{ atMs: 1, event: "created" }]),
        20_000,
        orderBytes,
      ],
      [
        "order, 20 lines, 60 events",
        (i) =>
          order(
            `o-${i}`,
            Array.from({ length: 20 }, (_, k) => line(k)),
            Array.from({ length: 60 }, (_, k) => ({ atMs: k, event: "shipped", detail: `shipment-${k}` })),
          ),
        1_000,
        orderBytes,
      ],
      ["SKU state", (i) => sku(`SKU-${i}`, ["w1", "w2"], ["shop"]), 20_000, skuStateBytes],
    ];
    for (const [what, make, n, estimate] of cases) {
      const encoded = Array.from({ length: n }, (_, i) => packr.pack(make(i)));
      const unpackr = new Unpackr({ structures, useRecords: true } as never);
      Bun.gc(true);
      const before = heapStats().heapSize;
      const decoded = encoded.map((b) => unpackr.unpack(b));
      Bun.gc(true);
      const perEntry = (heapStats().heapSize - before) / n;
      const ratio = estimate(decoded[0] as never) / perEntry;
      expect({ what, ok: ratio > 0.65 && ratio < 1.35 }).toEqual({ what, ok: true });
    }
  });
});
