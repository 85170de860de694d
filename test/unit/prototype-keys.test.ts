import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { open } from "lmdb";
import { Packr } from "msgpackr";
import { loadConfig } from "../../src/config/index.ts";
import {
  atsOf,
  channelSyncDefaults,
  marketplaceHeldOf,
  parseChannelSync,
} from "../../src/domain/channels/index.ts";
import {
  type Allocation,
  checkLineRequest,
  Ledger,
  type LedgerView,
  type LineRequest,
  type Position,
  parseStockCommand,
  type SkuState,
  type StockCommand,
  stockCommandTypes,
  type WarehouseLoad,
} from "../../src/domain/ledger/index.ts";
import { minStockOf, type Network, parseNetwork } from "../../src/domain/network/index.ts";
import { type Order, Orders, type OrderView } from "../../src/domain/orders/index.ts";
import {
  hasOwnId,
  idOfKey,
  idRecord,
  keyOfId,
  own,
  ownEntries,
  ownIds,
  protoIdKey,
  withOwn,
} from "../../src/domain/own.ts";
import { route } from "../../src/domain/routing/index.ts";
import { StockSync } from "../../src/domain/sync/index.ts";
import { pack, unpack } from "../../src/stream/codec.ts";
import { protoNames as protoNamesOfJs } from "../helpers/hostile.ts";

// Ids from outside (warehouse, channel, SKU) key plain records that cross msgpack and JSON. Every name an
// object inherits, and "__proto__" (which msgpackr renames), must work like any other id: here each one is
// driven through the ledger, ATS, routing, rule sets and orders and compared with the same run on "w1".

/** JavaScript's own property names (the hostile-input generators' list), and "__proto_", msgpackr's rename. */
const protoNames: string[] = [...protoNamesOfJs, "__proto_"];

const limits = { quantityMax: 1_000_000, idBytesMax: 64, linesPerOrderMax: 10, itemsPerMessageMax: 10 };

/** A JSON object with `id` as an own key, as JSON.parse gives it (a literal `{ __proto__: … }` would not). */
const keyed = <V>(id: string, value: V): Record<string, V> => JSON.parse(JSON.stringify({ [id]: value }));

describe("own.ts: records keyed by any id", () => {
  test("the dictionary holds the names that matter", () => {
    for (const n of ["constructor", "__proto__", "toString", "hasOwnProperty", "valueOf", "__defineGetter__"])
      expect(protoNames).toContain(n);
    expect(protoNames.length).toBeGreaterThan(50);
  });

  test("an empty record holds no id, whatever the id", () => {
    for (const id of protoNames) {
      expect(own({}, id)).toBeUndefined();
      expect(hasOwnId({}, id)).toBe(false);
    }
  });

  test("set, read, list: every id is an ordinary key and the prototype never changes", () => {
    for (const id of protoNames) {
      const rec = withOwn(withOwn({}, "w1", 1), id, 2);
      expect(Object.getPrototypeOf(rec)).toBe(Object.prototype);
      expect(own(rec, id)).toBe(2);
      expect(own(rec, "w1")).toBe(id === "w1" ? 2 : 1);
      expect(ownIds(rec).sort()).toEqual(["w1", id].sort());
      expect(ownEntries(idRecord([[id, 3]]))).toEqual([[id, 3]]);
      expect(idOfKey(keyOfId(id))).toBe(id);
    }
  });

  test("msgpackr renames a map key __proto__ to __proto_ (why records keep that id under another key)", () => {
    const raw = {};
    Object.defineProperty(raw, "__proto__", { value: 1, enumerable: true });
    const decoded = unpack(pack(raw)) as Record<string, unknown>;
    expect(Object.keys(decoded)).toEqual(["__proto_"]);
    // Our own key survives, and cannot be an id: parseId refuses control characters.
    expect(Object.keys(unpack(pack({ [protoIdKey]: 1 })) as object)).toEqual([protoIdKey]);
  });

  test("property: records round-trip through msgpack (both unpackers) and JSON with every id intact", () => {
    const records = new Packr({ useRecords: true, mapsAsObjects: true });
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.oneof(fc.constantFrom(...protoNames), fc.string({ minLength: 1 })), {
          maxLength: 8,
        }),
        (ids) => {
          const expected = ids.map((id, i): [string, number] => [id, i]);
          const rec = idRecord(expected);
          const viaMsgpack = unpack(pack(rec)) as Record<string, number>;
          const viaRecords = records.unpack(records.pack(rec)) as Record<string, number>;
          const viaJson = JSON.parse(JSON.stringify(rec)) as Record<string, number>;
          for (const back of [viaMsgpack, viaRecords, viaJson]) {
            expect(ownEntries(back).sort()).toEqual(expected.sort());
            for (const [id, i] of expected) expect(own(back, id)).toBe(i);
          }
        },
      ),
    );
  });

  test("LMDB with the store's encoding (msgpack, shared structures) keeps every id", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sluice-proto-"));
    try {
      const root = open({ path: dir, maxDbs: 2 });
      const db = root.openDB<unknown, string>({
        name: "skus",
        encoding: "msgpack",
        sharedStructuresKey: Symbol.for("structures"),
      });
      const states = protoNames.map((id) => ({
        sku: id,
        version: 1,
        positions: idRecord([
          [id, { onHand: 5, reserved: 0, damaged: 0, qualityControl: 0, safetyStock: 0 }],
          ["w1", { onHand: 1, reserved: 0, damaged: 0, qualityControl: 0, safetyStock: 0 }],
        ]),
        ats: idRecord([[id, 7]]),
      }));
      await root.transaction(() => {
        for (const s of states) db.put(`k:${s.sku}`, s);
      });
      for (const id of protoNames) {
        const back = db.get(`k:${id}`) as SkuState;
        expect(back.sku).toBe(id);
        expect(own(back.positions, id)?.onHand).toBe(id === "w1" ? 1 : 5);
        expect(ownIds(back.positions).sort()).toEqual([...new Set([id, "w1"])].sort());
        expect(own(back.ats, id)).toBe(7);
      }
      await root.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("stock commands: a type is one of the listed ones, never an inherited name", () => {
  test("every inherited name is refused as a type, naming the types", () => {
    for (const type of protoNames) {
      if ((stockCommandTypes as string[]).includes(type)) continue;
      const parsed = parseStockCommand({ type, warehouse: "w1", qty: 5 }, limits);
      expect(parsed.ok).toBe(false);
      if (!parsed.ok) expect(parsed.detail).toMatch(/^type must be one of received, counted/);
    }
  });

  test("every inherited name is a valid warehouse id", () => {
    for (const warehouse of protoNames) {
      const parsed = parseStockCommand(keyedCommand(warehouse), limits);
      expect(parsed).toEqual({ ok: true, value: { type: "received", warehouse, qty: 5, ref: null } });
    }
  });

  test("a return names its warehouse with an id (it becomes a position key)", () => {
    const ret = (warehouse: unknown) => ({
      kind: "return",
      ref: { orderKey: "o", lineId: "1" },
      sku: "A",
      eventId: "r1",
      qty: 1,
      disposition: "sellable",
      warehouse,
      attempt: 1,
    });
    expect(checkLineRequest(ret("constructor"), limits)).toBeNull();
    expect(checkLineRequest(ret("w\u0000"), limits)).toMatch(/return needs/);
    expect(checkLineRequest(ret("x".repeat(65)), limits)).toMatch(/return needs/);
  });
});

function keyedCommand(warehouse: string) {
  return JSON.parse(JSON.stringify({ type: "received", warehouse, qty: 5 }));
}

// ---- the ledger, driven the same way on a dictionary id and on "w1" -------------------------------

type Op =
  | { kind: "stock"; command: StockCommand }
  | { kind: "line"; request: LineRequest }
  | { kind: "commit"; codec: "msgpack" | "json" };

/** A committed store behind the ledger: every record goes through a codec, like LMDB and partition export. */
class CodecView implements LedgerView {
  skus = new Map<string, string | Uint8Array>();
  allocations = new Map<string, string | Uint8Array>();
  loads = new Map<string, string | Uint8Array>();
  private decode = <T>(v: string | Uint8Array | undefined): T | undefined =>
    v === undefined ? undefined : ((typeof v === "string" ? JSON.parse(v) : unpack(v)) as T);
  getSku = (sku: string) => this.decode<SkuState>(this.skus.get(sku));
  getAllocation = (sku: string, orderKey: string, lineId: string) =>
    this.decode<Allocation>(this.allocations.get(`${sku}\u0000${orderKey}\u0000${lineId}`));
  allocationsOf = (sku: string) =>
    [...this.allocations.entries()]
      .filter(([k]) => k.startsWith(`${sku}\u0000`))
      .map(([, v]) => this.decode<Allocation>(v) as Allocation);
  getLoad = (w: string) => this.decode<WarehouseLoad>(this.loads.get(w));
  commit(ledger: Ledger, codec: "msgpack" | "json") {
    const enc = (v: unknown) => (codec === "json" ? JSON.stringify(v) : pack(v));
    const changes = ledger.takeChanges();
    for (const s of changes.skus) this.skus.set(s.sku, enc(s));
    for (const a of changes.allocations)
      this.allocations.set(`${a.sku}\u0000${a.orderKey}\u0000${a.lineId}`, enc(a));
    for (const l of changes.loads) this.loads.set(l.warehouse, enc(l));
    ledger.evict();
    return changes;
  }
}

/** Records keyed by ids: their keys are ids too; every other object's keys are field names. */
const idKeyedFields = new Set(["positions", "ats", "shippedAt", "minStock", "marketplaceHeld"]);

/** Replaces the dictionary id by a placeholder everywhere it is an id (values, and keys of id records). */
function normalize(v: unknown, ids: ReadonlyMap<string, string>, idKeyed = false): unknown {
  if (typeof v === "string") return ids.get(v) ?? v;
  if (Array.isArray(v)) return v.map((x) => normalize(x, ids));
  if (typeof v === "object" && v !== null) {
    const entries = idKeyed ? ownEntries(v as Record<string, unknown>) : Object.entries(v);
    return entries
      .map(([k, x]) => {
        const key = idKeyed ? (ids.get(k) ?? k) : k;
        return [key, normalize(x, ids, !idKeyed && idKeyedFields.has(k))] as const;
      })
      .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }
  return v;
}

const syncRule = { ...channelSyncDefaults, warehouses: ["*"] };

/** Applies `ops` with warehouse W and SKU S; returns everything observable, with W and S written as such. */
function runLedger(ops: readonly Op[], warehouse: string, sku: string): unknown[] {
  const view = new CodecView();
  const ledger = new Ledger(view);
  const trace: unknown[] = [];
  const at = (i: number) => ({ seq: i + 1, atMs: 1_000 * (i + 1) });
  const subst = (w: string) => (w === "W" ? warehouse : w);
  for (const [i, op] of ops.entries()) {
    if (op.kind === "stock") {
      trace.push(ledger.applyStock(sku, { ...op.command, warehouse: subst(op.command.warehouse) }, at(i)));
    } else if (op.kind === "line") {
      const r = op.request;
      const request =
        r.kind === "reserve"
          ? { ...r, sku, candidates: r.candidates.map(subst) }
          : r.kind === "return"
            ? { ...r, sku, warehouse: subst(r.warehouse) }
            : { ...r, sku };
      trace.push(ledger.applyLine(request as LineRequest, at(i)));
    } else {
      const changes = view.commit(ledger, op.codec);
      const state = view.getSku(sku);
      trace.push(changes, state ?? null);
      if (state !== undefined) {
        trace.push(atsOf(state.positions, sku, syncRule, [warehouse, "w2"]));
        trace.push(atsOf(state.positions, sku, { ...syncRule, warehouses: [warehouse] }, [warehouse, "w2"]));
      }
    }
  }
  trace.push(view.commit(ledger, "msgpack"), view.getSku(sku) ?? null);
  return normalize(
    trace,
    new Map([
      [warehouse, "W"],
      [sku, "S"],
    ]),
  ) as unknown[];
}

const warehouseArb = fc.constantFrom("W", "w2");
const qtyArb = fc.integer({ min: 1, max: 30 });
const lineArb = fc.constantFrom("1", "2", "3");
const refOf = (lineId: string) => ({ orderKey: "shop.o", lineId });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("stock" as const), command: stockCommandArb() }),
  fc.record({ kind: fc.constant("line" as const), request: lineRequestArb() }),
  fc.record({
    kind: fc.constant("commit" as const),
    codec: fc.constantFrom("msgpack" as const, "json" as const),
  }),
);

function stockCommandArb(): fc.Arbitrary<StockCommand> {
  const ref = fc.constant(null);
  return fc.oneof(
    fc.record({ type: fc.constant("received" as const), warehouse: warehouseArb, qty: qtyArb, ref }),
    fc.record({ type: fc.constant("counted" as const), warehouse: warehouseArb, onHand: qtyArb, ref }),
    fc.record({ type: fc.constant("override" as const), warehouse: warehouseArb, available: qtyArb, ref }),
    fc.record({
      type: fc.constant("adjust" as const),
      warehouse: warehouseArb,
      qty: fc.integer({ min: -30, max: 30 }).filter((q) => q !== 0),
      ref,
    }),
    fc.record({
      type: fc.constant("hold" as const),
      warehouse: warehouseArb,
      qty: qtyArb,
      bucket: fc.constantFrom("damaged" as const, "quality_control" as const),
      ref,
    }),
    fc.record({
      type: fc.constant("unhold" as const),
      warehouse: warehouseArb,
      qty: qtyArb,
      bucket: fc.constantFrom("damaged" as const, "quality_control" as const),
      to: fc.constantFrom("available" as const, "scrap" as const),
      ref,
    }),
    fc.record({ type: fc.constant("safety_stock" as const), warehouse: warehouseArb, qty: qtyArb, ref }),
  );
}

function lineRequestArb(): fc.Arbitrary<LineRequest> {
  return fc.oneof(
    fc.record({
      kind: fc.constant("reserve" as const),
      ref: lineArb.map(refOf),
      sku: fc.constant("S"),
      qty: qtyArb,
      candidates: fc.constantFrom<string[]>(["W"], ["W", "w2"], ["w2", "W"]),
      attempt: fc.integer({ min: 1, max: 2 }),
    }),
    fc.record({
      kind: fc.constant("release" as const),
      ref: lineArb.map(refOf),
      sku: fc.constant("S"),
      attempt: fc.integer({ min: 1, max: 2 }),
    }),
    fc.record({
      kind: fc.constant("ship" as const),
      ref: lineArb.map(refOf),
      sku: fc.constant("S"),
      qty: qtyArb,
      attempt: fc.integer({ min: 1, max: 2 }),
      eventId: fc.constantFrom("s1", "s2"),
    }),
    fc.record({
      kind: fc.constant("reject" as const),
      ref: lineArb.map(refOf),
      sku: fc.constant("S"),
      stockMissing: fc.boolean(),
      attempt: fc.integer({ min: 1, max: 2 }),
    }),
    fc.record({
      kind: fc.constant("return" as const),
      ref: lineArb.map(refOf),
      sku: fc.constant("S"),
      eventId: fc.constantFrom("r1", "r2"),
      qty: qtyArb,
      disposition: fc.constantFrom("sellable" as const, "damaged" as const, "quality_control" as const),
      warehouse: warehouseArb,
      attempt: fc.integer({ min: 1, max: 2 }),
    }),
  );
}

describe("the ledger treats every id like w1", () => {
  test("the command from the issue: received at warehouse 'constructor' is applied", () => {
    const ledger = new Ledger();
    const result = ledger.applyStock(
      "A",
      { type: "received", warehouse: "constructor", qty: 5, ref: null },
      { seq: 1, atMs: 1 },
    );
    expect(result).toEqual({ ok: true, sku: "A", version: 1 });
    expect(own(ledger.get("A")?.positions, "constructor")?.onHand).toBe(5);
    expect(ownIds(ledger.get("A")?.positions)).toEqual(["constructor"]);
  });

  test("property: any sequence of commands, requests and commits (msgpack or JSON) at a dictionary id and SKU matches the same at w1 / S", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...protoNames),
        fc.constantFrom(...protoNames),
        fc.array(opArb, { minLength: 1, maxLength: 40 }),
        (warehouse, sku, ops) => {
          // One name for both stands for one placeholder: compare with a run that uses one name too.
          const reference = runLedger(ops, "w1", warehouse === sku ? "w1" : "S");
          expect(runLedger(ops, warehouse, sku)).toEqual(reference);
        },
      ),
      { numRuns: 300 },
    );
  });

  test("every dictionary id, one fixed sequence that touches each kind of change", () => {
    const ops: Op[] = [
      { kind: "stock", command: { type: "received", warehouse: "W", qty: 20, ref: null } },
      { kind: "stock", command: { type: "hold", warehouse: "W", qty: 2, bucket: "damaged", ref: null } },
      { kind: "stock", command: { type: "safety_stock", warehouse: "W", qty: 1, ref: null } },
      { kind: "commit", codec: "msgpack" },
      {
        kind: "line",
        request: { kind: "reserve", ref: refOf("1"), sku: "S", qty: 5, candidates: ["w2", "W"], attempt: 1 },
      },
      { kind: "commit", codec: "json" },
      {
        kind: "line",
        request: { kind: "ship", ref: refOf("1"), sku: "S", qty: 5, attempt: 1, eventId: "s1" },
      },
      { kind: "commit", codec: "msgpack" },
      {
        kind: "line",
        request: {
          kind: "return",
          ref: refOf("1"),
          sku: "S",
          eventId: "r1",
          qty: 2,
          disposition: "damaged",
          warehouse: "W",
          attempt: 1,
        },
      },
      {
        kind: "stock",
        command: { type: "unhold", warehouse: "W", qty: 3, bucket: "damaged", to: "scrap", ref: null },
      },
      { kind: "stock", command: { type: "counted", warehouse: "W", onHand: 4, ref: null } },
      { kind: "stock", command: { type: "override", warehouse: "W", available: 9, ref: null } },
      { kind: "stock", command: { type: "adjust", warehouse: "W", qty: -3, ref: null } },
      { kind: "commit", codec: "msgpack" },
    ];
    const reference = runLedger(ops, "w1", "w1");
    for (const id of protoNames) expect(runLedger(ops, id, id)).toEqual(reference);
  });
});

// ---- rule sets, ATS, routing, orders -----------------------------------------------------------------

function networkOf(warehouse: string, sku: string, channel: string): Network {
  const parsed = parseNetwork(
    JSON.parse(
      JSON.stringify({
        warehouses: [
          {
            id: warehouse,
            channels: [channel],
            minStock: { [sku]: 2 },
            carriers: [{ id: warehouse, cutoff: "23:59", transitDays: 1 }],
          },
          { id: "w2", channels: ["*"], lat: 10, lon: 10 },
        ],
        channels: [{ id: channel, warehouses: [warehouse], marketplaceHeld: { [sku]: 3 } }, { id: "*" }],
      }),
    ),
    "v1",
  );
  if (!parsed.ok) throw new Error(parsed.detail);
  return parsed.value;
}

describe("rule sets, ATS and routing take any id", () => {
  test("a rule set whose warehouse, channel, SKU and carrier ids are dictionary names works like w1", () => {
    const reference = networkOf("w1", "w1", "w1");
    for (const id of protoNames) {
      const n = networkOf(id, id, id);
      const w = n.warehouses[0];
      expect(w?.id).toBe(id);
      expect(minStockOf(w as (typeof n.warehouses)[0], id)).toBe(2);
      const channel = n.channels[0];
      expect(channel?.id).toBe(id);
      expect(marketplaceHeldOf((channel as (typeof n.channels)[0]).sync, id)).toBe(3);
      expect(normalize(n, new Map([[id, "X"]]))).toEqual(normalize(reference, new Map([["w1", "X"]])));
    }
  });

  test("an id that is not listed reads the default, never an inherited member", () => {
    const n = networkOf("w1", "S", "shop");
    const w = n.warehouses[0] as (typeof n.warehouses)[0];
    const sync = (n.channels[0] as (typeof n.channels)[0]).sync;
    for (const id of protoNames) {
      if (id === "S") continue;
      expect(minStockOf(w, id)).toBe(0);
      expect(marketplaceHeldOf(sync, id)).toBe(0);
    }
  });

  test("marketplaceHeld keyed by every dictionary name, parsed from JSON", () => {
    for (const id of protoNames) {
      const parsed = parseChannelSync({ marketplaceHeld: keyed(id, 4) }, "channels[0]");
      expect(parsed.ok && marketplaceHeldOf(parsed.value, id)).toBe(4);
      expect(parsed.ok && marketplaceHeldOf(parsed.value, "other")).toBe(0);
    }
  });

  test("ATS and routing over positions at dictionary warehouses match w1", () => {
    const pos = (onHand: number): Position => ({
      onHand,
      reserved: 1,
      damaged: 0,
      qualityControl: 0,
      safetyStock: 0,
    });
    const decide = (warehouse: string, sku: string, channel: string) => {
      const network = networkOf(warehouse, sku, channel);
      const positions = unpack(
        pack(
          idRecord([
            [warehouse, pos(12)],
            ["w2", pos(3)],
          ]),
        ),
      ) as Record<string, Position>;
      const ats = atsOf(positions, sku, (network.channels[0] as (typeof network.channels)[0]).sync, [
        warehouse,
        "w2",
      ]);
      const result = route(
        {
          channel,
          shipTo: { region: null, lat: 0, lon: 0 },
          shipByMs: Date.UTC(2030, 0, 5),
          split: { mode: "allow_partial", maxShipments: 0 },
          lines: [{ lineId: "1", sku, qty: 4, excluded: [] }],
          used: new Set(),
        },
        network,
        { stock: () => positions, load: () => 0, nowMs: Date.UTC(2030, 0, 1, 12) },
      );
      return normalize(
        { ats, result },
        new Map([
          [warehouse, "W"],
          [sku, "S"],
          [channel, "C"],
        ]),
      );
    };
    const reference = decide("w1", "w1", "w1");
    // ATS: W feeds (11 available) less 3 held by the marketplace; routing: W is the only candidate for C.
    expect(normalize(reference, new Map())).toContainEqual(["ats", 8]);
    for (const id of protoNames) expect(decide(id, id, id)).toEqual(reference);
  });

  test("stock-sync counters keyed by a channel '__proto__' list it as a property", () => {
    const s = new StockSync({ flushWindowMs: 0, pendingCountMax: 10 }, () => ({
      requestsPerSecond: 1,
      itemsPerRequestMax: 1,
      burstRequestsMax: 1,
    }));
    for (const channel of protoNames) s.offer(channel, { sku: "A", ats: 1, version: 1, atMs: 0 }, 0, true);
    const counters = s.counters();
    expect(Object.getPrototypeOf(counters)).toBe(Object.prototype);
    expect(Object.keys(counters).sort()).toEqual([...protoNames].sort());
  });
});

class MemOrders implements OrderView {
  orders = new Map<string, Uint8Array>();
  getOrder = (key: string) => {
    const v = this.orders.get(key);
    return v === undefined ? undefined : (unpack(v) as Order);
  };
  getPendingCancels = () => [];
  dueTimers = () => [];
}

describe("orders: shippedAt per warehouse takes any id", () => {
  const orderLimits = { historyCountMax: 50, pendingCancelsPerOrderMax: 4, timersPerTickMax: 100 };
  /** Ship 2 then 1 unit of a line from W, then return 2 without naming a warehouse: back to W. */
  function lifecycle(warehouse: string) {
    const network = networkOf(warehouse, "S", "shop");
    const view = new MemOrders();
    const stock = idRecord([
      [warehouse, { onHand: 10, reserved: 0, damaged: 0, qualityControl: 0, safetyStock: 0 }],
    ]);
    const orders = new Orders(view, () => network, orderLimits, { stock: () => stock, load: () => 0 });
    const commit = () => {
      const changes = orders.takeChanges();
      for (const o of changes.orders) view.orders.set(o.key, pack(o));
      return changes;
    };
    const at = (seq: number) => ({ seq, atMs: Date.UTC(2030, 0, 1, 12) + seq });
    const shipTo = { region: null, zip: null, lat: null, lon: null };
    const lines = [{ lineId: "1", sku: "S", qty: 3, price: 5 }];
    const out: unknown[] = [];
    out.push(
      orders.create(
        "shop.o1",
        { channel: "shop", orderId: "o1", lines, shipTo, shipByMs: null, priority: 0, split: {} },
        at(1),
      ),
    );
    out.push(commit().effects.ledger);
    out.push(
      orders.ledgerResult(
        {
          kind: "reserved",
          ref: { orderKey: "shop.o1", lineId: "1" },
          sku: "S",
          attempt: 1,
          warehouse,
          qty: 3,
        },
        at(2),
      ),
    );
    commit();
    for (const [n, qty] of [
      [1, 2],
      [2, 1],
    ] as const) {
      out.push(
        orders.shipped(
          "shop.o1",
          { channel: "shop", orderId: "o1", warehouse, shipmentId: `s${n}`, lines: [{ lineId: "1", qty }] },
          at(2 + n),
        ),
      );
      out.push(commit().effects.ledger);
    }
    out.push(
      orders.returned(
        "shop.o1",
        {
          channel: "shop",
          orderId: "o1",
          returnId: "r1",
          lines: [{ lineId: "1", qty: 2, disposition: "sellable", warehouse: null }],
        },
        at(5),
      ),
    );
    const last = commit();
    out.push(last.effects.ledger);
    const line = view.getOrder("shop.o1")?.lines[0];
    out.push(ownEntries(line?.shippedAt));
    return normalize(out, new Map([[warehouse, "W"]]));
  }

  test("ship twice and return from every dictionary warehouse like from w1", () => {
    const reference = lifecycle("w1");
    expect(normalize(reference, new Map())).toContainEqual([["W", 3]]);
    for (const id of protoNames) expect(lifecycle(id)).toEqual(reference);
  });
});

describe("config: a section named like an inherited member is unknown", () => {
  test("[toString], [constructor], [__proto__] are refused as unknown sections", () => {
    const dir = mkdtempSync(join(tmpdir(), "sluice-proto-config-"));
    try {
      for (const section of ["toString", "constructor", "__proto__", "hasOwnProperty"]) {
        const file = join(dir, "sluice.toml");
        writeFileSync(file, `["${section}"]\nx = 1\n`);
        expect(() => loadConfig({ env: {}, file })).toThrow(`unknown section [${section}]`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
