import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { documentId, type ErpBatch, type ErpDocument } from "../../src/domain/erp/index.ts";
import type { Order } from "../../src/domain/orders/index.ts";
import type { OrderLine } from "../../src/domain/orders/types.ts";
import { orderKey, subjects } from "../../src/stream/subjects.ts";
import { getJson, waitFor } from "../helpers/index.ts";
import { Lifecycle, skusAcrossPartitions } from "../helpers/lifecycle.ts";

// Kits over a real nats-server and LMDB (docs/kits.md): a kit line reserves its components, which live in
// different ledger partitions, all or none; shipping and cancelling move the components; the ERP sees them;
// the catalog changes live with the rule set.

const line = (o: Order, id = "1") => o.lines.find((l) => l.lineId === id) as OrderLine;
const settledLine = (o: Order) => o.lines.every((l) => l.state !== "received");
const decoder = new TextDecoder();

describe("kits over a real nats-server and LMDB", () => {
  let h: Lifecycle;
  // Components in two different ledger partitions (of 4).
  const [a, b] = skusAcrossPartitions("KA", 2) as [string, string];
  const [c, d] = skusAcrossPartitions("KC", 2) as [string, string];
  const rules = {
    routing: { loadWeight: 0, stockWeight: 0 },
    warehouses: [{ id: "w1" }, { id: "w2" }],
    channels: [{ id: "*" }],
    kits: [
      {
        sku: "KIT-1",
        components: [
          { sku: a, qty: 2 },
          { sku: b, qty: 1 },
        ],
      },
      {
        sku: "KIT-2",
        components: [
          { sku: c, qty: 1 },
          { sku: d, qty: 1 },
        ],
      },
    ],
  };

  beforeAll(async () => {
    h = await Lifecycle.start("kits", [{ id: "*" }], { erp: { windowMs: 500 } }, [
      { id: "w1" },
      { id: "w2" },
    ]);
  });

  afterAll(async () => {
    await h?.dispose();
  });

  test("a rule change adds kits live: a kit SKU ordered before it is a plain line, after it a kit line", async () => {
    await h.order("shop", "K-before", [{ lineId: "1", sku: "KIT-1", qty: 1 }]);
    const before = await h.waitOrder("shop", "K-before", settledLine, "settled");
    expect(line(before).kit).toBeUndefined();
    expect(line(before).state).toBe("rejected");
    const res = await fetch(`${h.base}/v1/rules`, {
      method: "PUT",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(rules),
    });
    expect(res.status).toBe(200);
    const { version } = (await res.json()) as { version: string };
    await waitFor(
      async () => (await getJson(`${h.base}/v1/rules`)).body.inForce === version,
      "kits in force",
    );
  });

  test("a kit whose components live in two ledger partitions is allocated at one warehouse", async () => {
    await h.receive(a, "w1", 4);
    await h.receive(b, "w1", 2);
    await h.waitPosition(a, "w1", { onHand: 4 });
    await h.waitPosition(b, "w1", { onHand: 2 });
    await h.order("shop", "K-1", [{ lineId: "1", sku: "KIT-1", qty: 2, price: 30 }]);
    const o = await h.waitOrder("shop", "K-1", (x) => x.status === "allocated", "allocated");
    expect(line(o)).toMatchObject({ state: "released", warehouse: "w1" });
    expect(line(o).kit?.parts.map((p) => [p.sku, p.lineId, p.answer])).toEqual([
      [a, "1#1", "reserved"],
      [b, "1#2", "reserved"],
    ]);
    expect(await h.position(a, "w1")).toMatchObject({ onHand: 4, reserved: 4 });
    expect(await h.position(b, "w1")).toMatchObject({ onHand: 2, reserved: 2 });
    const f = await waitFor(
      () => h.fulfilmentsOf("shop", "K-1").find((x) => x.type === "fulfil"),
      "fulfilment request",
    );
    expect(f.lines).toMatchObject([
      {
        lineId: "1",
        sku: "KIT-1",
        qty: 2,
        components: [
          { sku: a, qty: 4 },
          { sku: b, qty: 2 },
        ],
      },
    ]);
  });

  test("one component short: nothing stays reserved (the other is compensated) and the line is rejected", async () => {
    await h.receive(c, "w1", 5);
    await h.waitPosition(c, "w1", { onHand: 5 });
    await h.order("shop", "K-2", [{ lineId: "1", sku: "KIT-2", qty: 1 }]);
    const o = await h.waitOrder("shop", "K-2", settledLine, "settled");
    expect(line(o)).toMatchObject({ state: "rejected", refusal: "insufficient_available" });
    await h.quiesce();
    expect(await h.position(c, "w1")).toMatchObject({ onHand: 5, reserved: 0 });
    expect(await h.position(d, "w1")).toMatchObject({ reserved: 0 });
    // c was reserved at w1 by the first try and released by its compensation, once.
    const entries = await h.entries(c);
    expect(entries.filter((e) => e.type === "reserved").length).toBe(1);
    expect(entries.filter((e) => e.cause === "kit_compensate").map((e) => [e.type, e.warehouse])).toEqual([
      ["released", "w1"],
    ]);
  });

  test("shipping whole kits ships components; cancelling releases the rest; the ERP lists components", async () => {
    await h.shipped("w1", "shop", "K-1", "KS-1", [{ lineId: "1", qty: 1 }]);
    await h.waitPosition(a, "w1", { onHand: 2, reserved: 2 });
    await h.waitPosition(b, "w1", { onHand: 1, reserved: 1 });
    await h.cancel("shop", "K-1");
    await h.waitPosition(a, "w1", { onHand: 2, reserved: 0 });
    await h.waitPosition(b, "w1", { onHand: 1, reserved: 0 });
    const o = await h.waitOrder("shop", "K-1", (x) => x.status === "shipped", "shipped, rest cancelled");
    expect(line(o)).toMatchObject({ state: "shipped", shippedQty: 1 });
    const key = orderKey("shop", "K-1");
    const docs = (): ErpDocument[] =>
      h.out.messages
        .filter((m) => m.subject === subjects.outErp)
        .map((m) => JSON.parse(decoder.decode(m.data)) as ErpBatch)
        .flatMap((batch) => batch.documents);
    await waitFor(
      () => docs().some((x) => x.kind === "cancellation" && x.orderKey === key),
      "ERP shipment and cancellation documents",
      15_000,
    );
    const kit = (qty: number) => ({ lineId: "1", sku: "KIT-1", qty, price: 30 });
    expect(docs().find((x) => x.id === documentId.shipment(key, "KS-1"))?.lines).toEqual([
      { lineId: "1#1", sku: a, qty: 2, price: 0, kit: kit(1) },
      { lineId: "1#2", sku: b, qty: 1, price: 0, kit: kit(1) },
    ]);
    expect(docs().find((x) => x.kind === "cancellation" && x.orderKey === key)?.lines).toEqual([
      { lineId: "1#1", sku: a, qty: 2, price: 0, kit: kit(1) },
      { lineId: "1#2", sku: b, qty: 1, price: 0, kit: kit(1) },
    ]);
    // The ledger batches carry the component movements (shipped), never the kit SKU.
    await waitFor(
      () =>
        h.out.messages
          .filter((m) => m.subject === subjects.outErp)
          .map((m) => JSON.parse(decoder.decode(m.data)) as ErpBatch)
          .some((batch) => batch.movements.some((m) => m.sku === a && m.type === "shipped")),
      "ERP movement of a shipped component",
      15_000,
    );
    const movements = h.out.messages
      .filter((m) => m.subject === subjects.outErp)
      .flatMap((m) => (JSON.parse(decoder.decode(m.data)) as ErpBatch).movements);
    expect(movements.some((m) => m.sku.startsWith("KIT-"))).toBe(false);
    await h.expectLedgerConsistent();
  });
});

describe("kit ATS on a synced channel", () => {
  let h: Lifecycle;
  const [a, b] = skusAcrossPartitions("KS", 2) as [string, string];
  type AtsItem = { sku: string; ats: number; version: number };
  const kitItems = () => h.out.items<AtsItem>(subjects.outStock("A")).filter((i) => i.sku === "KIT-S");

  beforeAll(async () => {
    const channels = [{ id: "*" }, { id: "A", warehouses: ["w1"] }] as Parameters<typeof Lifecycle.start>[1];
    h = await Lifecycle.start("kits-ats", channels, { sync: { flushWindowMs: 50 } }, [{ id: "w1" }]);
  });

  afterAll(async () => {
    await h?.dispose();
  });

  test("min over the components of ⌊ATS / units per kit⌋, offered when a component changes, versions rising", async () => {
    const { rules } = (await getJson(`${h.base}/v1/rules`)).body as { rules: Record<string, unknown> };
    const withKit = {
      ...rules,
      kits: [
        {
          sku: "KIT-S",
          components: [
            { sku: a, qty: 2 },
            { sku: b, qty: 1 },
          ],
        },
      ],
    };
    const res = await fetch(`${h.base}/v1/rules`, {
      method: "PUT",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(withKit),
    });
    expect(res.status).toBe(200);
    await h.receive(a, "w1", 7); // ⌊7 / 2⌋ = 3
    await h.receive(b, "w1", 5); // 5: the kit is 3
    await waitFor(() => kitItems().at(-1)?.ats === 3, "KIT-S shows 3 on channel A");
    await h.receive(a, "w1", 4); // ⌊11 / 2⌋ = 5, b 5: the kit is 5
    await waitFor(() => kitItems().at(-1)?.ats === 5, "KIT-S shows 5 after more of a");
    const versions = kitItems().map((i) => i.version);
    expect([...versions].sort((x, y) => x - y)).toEqual(versions);
    // GET /v1/stock/<kit>/ats computes the same from the components.
    const ats = await getJson(`${h.base}/v1/stock/KIT-S/ats`);
    expect(ats.status).toBe(200);
    expect(ats.body).toMatchObject({ sku: "KIT-S", kit: true, channels: { A: { ats: 5 } } });
    expect(ats.body.version).toBe(kitItems().at(-1)?.version);
  }, 30_000);
});
