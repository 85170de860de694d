import { describe, expect, test } from "bun:test";
import { kitAtsOf, kitVersionOf } from "../../src/domain/channels/kits.ts";
import { parseChannelSync } from "../../src/domain/channels/rules.ts";
import { kitOf, type Network, parseNetwork } from "../../src/domain/network/index.ts";
import type { OrderLine } from "../../src/domain/orders/index.ts";
import { KitsAts } from "../../src/stages/kits-ats.ts";
import { orderKey, skuPartition } from "../../src/stream/subjects.ts";
import { buildNetwork } from "./model/network.ts";
import { orderPartition, Sim } from "./model/sim.ts";

// Kits (docs/kits.md): the catalog's validation, kit ATS, and the reservation protocol in the simulation
// (the lifecycle model checks it over random runs with faults: test/unit/lifecycle-model.test.ts).

const base = { warehouses: [{ id: "w1" }, { id: "w2" }], channels: [{ id: "*" }] };
const parse = (kits: unknown) => parseNetwork({ ...base, kits }, "v1");
const detail = (kits: unknown) => {
  const p = parse(kits);
  return p.ok ? "ok" : p.detail;
};

describe("the kit catalog", () => {
  test("a kit maps its SKU to components × units; ids like __proto__ are ordinary", () => {
    const p = parse([
      {
        sku: "KIT-1",
        components: [
          { sku: "A", qty: 2 },
          { sku: "B", qty: 1 },
        ],
      },
      { sku: "__proto__", components: [{ sku: "constructor", qty: 3 }] },
    ]);
    expect(p.ok).toBe(true);
    if (!p.ok) return;
    expect(kitOf(p.value, "KIT-1")?.components).toEqual([
      { sku: "A", qty: 2 },
      { sku: "B", qty: 1 },
    ]);
    expect(kitOf(p.value, "__proto__")?.components).toEqual([{ sku: "constructor", qty: 3 }]);
    expect(kitOf(p.value, "constructor")).toBeUndefined();
    expect(kitOf(p.value, "toString")).toBeUndefined();
  });

  test("a rule set without kits carries no kits key", () => {
    const p = parseNetwork(base, "v1");
    expect(p.ok && "kits" in p.value).toBe(false);
  });

  test("invalid kits are refused with the field and the fix", () => {
    expect(detail({})).toContain("kits must be a list");
    expect(detail([{ sku: "K", components: [] }])).toContain("components must list 1 to 16");
    expect(detail([{ sku: "K", components: [{ sku: "A", qty: 0 }] }])).toContain(
      "qty must be a whole number",
    );
    expect(detail([{ sku: "K", components: [{ sku: "A", qty: 1.5 }] }])).toContain(
      "qty must be a whole number",
    );
    expect(detail([{ sku: "K", components: [{ sku: "A", qty: 10_001 }] }])).toContain("[1, 10000]");
    expect(detail([{ sku: "K", components: [{ sku: "K", qty: 1 }] }])).toContain("is the kit itself");
    expect(
      detail([
        {
          sku: "K",
          components: [
            { sku: "A", qty: 1 },
            { sku: "A", qty: 2 },
          ],
        },
      ]),
    ).toContain("listed twice");
    expect(
      detail([
        { sku: "K", components: [{ sku: "A", qty: 1 }] },
        { sku: "K", components: [{ sku: "B", qty: 1 }] },
      ]),
    ).toContain("listed twice");
    // No kit inside a kit, whichever is listed first.
    expect(
      detail([
        { sku: "OUTER", components: [{ sku: "INNER", qty: 1 }] },
        { sku: "INNER", components: [{ sku: "A", qty: 1 }] },
      ]),
    ).toContain("is a kit");
    expect(detail([{ sku: "K", components: [{ sku: "A", qty: 1 }], price: 3 }])).toContain(
      "kits[0].price is not a kit setting",
    );
    expect(detail([{ sku: "K", components: [{ sku: "A", qty: 1, x: 1 }] }])).toContain(
      "not a component setting",
    );
    expect(detail([{ sku: "bad\u0001", components: [{ sku: "A", qty: 1 }] }])).not.toBe("ok");
    const many = Array.from({ length: 17 }, (_, i) => ({ sku: `C${i}`, qty: 1 }));
    expect(detail([{ sku: "K", components: many }])).toContain("1 to 16");
  });
});

describe("kit ATS", () => {
  const rule = parseChannelSync({ id: "web" }, "channels[0]", ["w1", "w2"], 256);
  if (!rule.ok) throw new Error(rule.detail);
  const kit = {
    sku: "K",
    components: [
      { sku: "A", qty: 2 },
      { sku: "B", qty: 1 },
    ],
  };
  const pos = (onHand: number, reserved = 0) => ({
    onHand,
    reserved,
    damaged: 0,
    qualityControl: 0,
    safetyStock: 0,
  });

  test("is the minimum over components of floor(component ATS / units per kit)", () => {
    const a = { positions: { w1: pos(5), w2: pos(2) }, version: 4 };
    const b = { positions: { w1: pos(6, 1) }, version: 9 };
    expect(kitAtsOf(kit, [a, b], rule.value, ["w1", "w2"])).toBe(3); // min(⌊7/2⌋, 5)
    expect(kitAtsOf(kit, [a, { positions: { w1: pos(2) }, version: 1 }], rule.value, ["w1", "w2"])).toBe(2);
    expect(kitAtsOf(kit, [a, undefined], rule.value, ["w1", "w2"])).toBe(0); // B never stocked
    expect(kitVersionOf([a, b])).toBe(13);
    expect(kitVersionOf([a, undefined])).toBe(4);
  });

  test("the module offers each kit's ATS per channel at a version that only rises", () => {
    const network = parseNetwork(
      {
        warehouses: [{ id: "w1" }],
        channels: [{ id: "web" }, { id: "shop", sharePercent: 50 }],
        kits: [kit],
      },
      "v1",
    );
    if (!network.ok) throw new Error(network.detail);
    const stock = new Map([
      ["A", { positions: { w1: pos(8) }, version: 2 }],
      ["B", { positions: { w1: pos(3) }, version: 5 }],
    ]);
    const view = {
      stock: (sku: string) => stock.get(sku)?.positions,
      version: (sku: string) => stock.get(sku)?.version,
    };
    const P = 4;
    const kits = new KitsAts(() => network.value, view, P);
    const owner = skuPartition("K", P);
    expect(kits.kitsOf(owner).map((k) => k.sku)).toEqual(["K"]);
    expect(kits.due((owner + 1) % P, 0)).toEqual([]);
    const first = kits.due(owner, 10);
    expect(first).toEqual([
      { channel: "web", item: { sku: "K", ats: 3, version: 7, atMs: 10 } },
      { channel: "shop", item: { sku: "K", ats: 1, version: 7, atMs: 10 } }, // min(⌊4/2⌋, ⌊1/1⌋)
    ]);
    expect(kits.due(owner, 20)).toEqual([]); // nothing changed
    stock.set("A", { positions: { w1: pos(2) }, version: 3 });
    expect(kits.due(owner, 30).map((o) => [o.channel, o.item.ats, o.item.version])).toEqual([
      ["web", 1, 8],
      ["shop", 0, 8],
    ]);
    kits.forget("K");
    expect(kits.due(owner, 40)).toHaveLength(2);
    // A component not known here yet (a feed that has not sent it): the kit waits.
    const blind = new KitsAts(() => network.value, { ...view, known: (s: string) => s !== "B" }, P);
    expect(blind.due(owner, 0)).toEqual([]);
  });
});

// ---- the reservation protocol, end to end in the simulation (both stages, P partitions) -----------------

const limits = { historyCountMax: 50, pendingCancelsPerOrderMax: 4, timersPerTickMax: 100 };

function simOf(backorder: boolean): Sim {
  const network: Network = buildNetwork({
    warehouseCount: 2,
    backorder,
    split: "allow_partial",
    maxShipments: 0,
    slaAction: "cancel",
  });
  return new Sim({ partitions: 2, network, limits });
}

function create(sim: Sim, orderId: string, lines: Array<[string, number]>): string {
  const key = orderKey("web", orderId);
  sim.orderInput({
    kind: "order",
    key,
    input: {
      channel: "web",
      orderId,
      lines: lines.map(([sku, qty], i) => ({ lineId: String(i + 1), sku, qty, price: 10 })),
      shipTo: { region: null, zip: null, lat: null, lon: null },
      shipByMs: null,
      priority: 0,
      split: {},
    },
  });
  return key;
}

function lineOf(sim: Sim, key: string, lineId: string): OrderLine {
  for (const p of sim.orderParts) {
    const line = p.store.orders.get(key)?.lines.find((l) => l.lineId === lineId);
    if (line !== undefined) return line;
  }
  throw new Error(`no line ${key}/${lineId}`);
}

function reserved(sim: Sim, sku: string, warehouse: string): number {
  for (const l of sim.ledgers) {
    const p = l.store.skus.get(sku)?.positions[warehouse];
    if (p !== undefined) return p.reserved;
  }
  return 0;
}

describe("a kit line reserves every component or none (K = 2 × A + 1 × B)", () => {
  test("A and B live in different ledger partitions here", () => {
    expect(skuPartition("A", 2)).not.toBe(skuPartition("B", 2));
  });

  test("every component reserved at one warehouse: the kit line is allocated and released there", () => {
    const sim = simOf(false);
    sim.stock("A", { type: "received", warehouse: "w1", qty: 4, ref: null });
    sim.stock("B", { type: "received", warehouse: "w1", qty: 2, ref: null });
    const key = create(sim, "o1", [["K", 2]]);
    sim.drain();
    expect(lineOf(sim, key, "1")).toMatchObject({ state: "released", warehouse: "w1" });
    expect(reserved(sim, "A", "w1")).toBe(4);
    expect(reserved(sim, "B", "w1")).toBe(2);
    const fulfil = sim.outputs.find((o) => (o as { out: string }).out === "fulfil") as {
      lines: Array<{ components?: unknown }>;
    };
    expect(fulfil.lines[0]?.components).toEqual([
      { sku: "A", qty: 4 },
      { sku: "B", qty: 2 },
    ]);
  });

  test("one component short where routing saw it: the other is compensated once, the next warehouse has both", () => {
    const sim = simOf(false);
    sim.stock("A", { type: "received", warehouse: "w1", qty: 8, ref: null });
    sim.stock("B", { type: "received", warehouse: "w1", qty: 4, ref: null });
    sim.stock("A", { type: "received", warehouse: "w2", qty: 4, ref: null });
    sim.stock("B", { type: "received", warehouse: "w2", qty: 2, ref: null });
    sim.drain();
    // A at w1 drops before the reservation reaches A's partition; routing still reads 8 there (4 kits).
    sim.stock("A", { type: "adjust", warehouse: "w1", qty: -7, ref: null });
    const key = create(sim, "o1", [["K", 2]]); // needs A 4, B 2
    sim.deliver(sim.P + orderPartition(key, sim.P), 1); // routed on the stale view: w1 first
    expect(lineOf(sim, key, "1").kit?.candidates[0]).toBe("w1");
    sim.drain();
    expect(lineOf(sim, key, "1")).toMatchObject({ state: "released", warehouse: "w2" });
    expect([reserved(sim, "A", "w1"), reserved(sim, "B", "w1")]).toEqual([0, 0]);
    expect([reserved(sim, "A", "w2"), reserved(sim, "B", "w2")]).toEqual([4, 2]);
    const entriesB = sim.ledgers[skuPartition("B", 2)]?.store.entriesOf("B") ?? [];
    expect(entriesB.filter((e) => e.cause === "kit_compensate").map((e) => [e.warehouse, e.delta])).toEqual([
      ["w1", { reserved: -2 }],
    ]);
  });

  test("short everywhere: nothing stays reserved and the line is backordered (or rejected)", () => {
    for (const backorder of [true, false]) {
      const sim = simOf(backorder);
      sim.stock("A", { type: "received", warehouse: "w1", qty: 10, ref: null });
      sim.stock("B", { type: "received", warehouse: "w2", qty: 10, ref: null });
      const key = create(sim, "o1", [["K", 1]]);
      sim.drain();
      const line = lineOf(sim, key, "1");
      expect(line.state).toBe(backorder ? "backordered" : "rejected");
      expect(line.refusal).toBe("insufficient_available");
      for (const w of ["w1", "w2"]) for (const sku of ["A", "B"]) expect(reserved(sim, sku, w)).toBe(0);
      // Both warehouses were tried, and each try's reservation that succeeded was released once.
      expect(line.kit?.tried).toBe(2);
    }
  });

  test("shipping whole kits ships their components; a cancel releases the rest", () => {
    const sim = simOf(false);
    sim.stock("A", { type: "received", warehouse: "w1", qty: 6, ref: null });
    sim.stock("B", { type: "received", warehouse: "w1", qty: 3, ref: null });
    const key = create(sim, "o1", [["K", 3]]);
    sim.drain();
    sim.orderInput({
      kind: "shipped",
      key,
      input: {
        channel: "web",
        orderId: "o1",
        warehouse: "w1",
        shipmentId: "s1",
        lines: [{ lineId: "1", qty: 1 }],
      },
    });
    sim.drain();
    expect(lineOf(sim, key, "1")).toMatchObject({ state: "released", shippedQty: 1 });
    expect([reserved(sim, "A", "w1"), reserved(sim, "B", "w1")]).toEqual([4, 2]);
    sim.orderInput({
      kind: "cancel",
      key,
      input: { channel: "web", orderId: "o1", lineIds: null, cause: "customer" },
    });
    sim.drain();
    expect(lineOf(sim, key, "1")).toMatchObject({ state: "shipped", shippedQty: 1 });
    expect([reserved(sim, "A", "w1"), reserved(sim, "B", "w1")]).toEqual([0, 0]);
    const onHand = (sku: string) =>
      sim.ledgers[skuPartition(sku, 2)]?.store.skus.get(sku)?.positions.w1?.onHand;
    expect([onHand("A"), onHand("B")]).toEqual([4, 2]);
  });

  test("an order whose line id is a component id of its kit line is refused", () => {
    const sim = simOf(false);
    const key = create(sim, "o1", [
      ["K", 1],
      ["A", 1],
    ]);
    // Line ids are "1" and "2": no clash. Now "1#1" as a line id next to kit line "1".
    sim.drain();
    expect(lineOf(sim, key, "1").kit?.parts.map((p) => p.lineId)).toEqual(["1#1", "1#2"]);
    const key2 = orderKey("web", "o2");
    sim.orderInput({
      kind: "order",
      key: key2,
      input: {
        channel: "web",
        orderId: "o2",
        lines: [
          { lineId: "1", sku: "K", qty: 1, price: 1 },
          { lineId: "1#2", sku: "A", qty: 1, price: 1 },
        ],
        shipTo: { region: null, zip: null, lat: null, lon: null },
        shipByMs: null,
        priority: 0,
        split: {},
      },
    });
    sim.drain();
    expect(sim.orderParts.some((p) => p.store.orders.has(key2))).toBe(false);
  });
});
