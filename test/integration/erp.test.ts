import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  documentId,
  type ErpBatch,
  type ErpDocument,
  financeEntryTypes,
  nonFinanceEntryTypes,
} from "../../src/domain/erp/index.ts";
import type { LedgerEntry } from "../../src/domain/ledger/index.ts";
import type { Order } from "../../src/domain/orders/index.ts";
import { orderKey, subjects } from "../../src/stream/subjects.ts";
import { waitFor } from "../helpers/index.ts";
import { Lifecycle, settled, type TappedMessage } from "../helpers/lifecycle.ts";

// What the ERP receives on sluice.out.erp over a real nats-server and LMDB: ledger batches whose movements net
// to the on-hand changes (commitments never appear), order-stage batches with shipment, return and
// cancellation documents, one gap-free chain per (stage, partition, storeId), deterministic ids.

const decoder = new TextDecoder();
const released = (o: Order) => o.lines.every((l) => l.state === "released");
const erpWindowMs = 1000;

type Received = { message: TappedMessage; batch: ErpBatch };

const erpMessages = (h: Lifecycle): Received[] =>
  h.out.messages
    .filter((m) => m.subject === subjects.outErp)
    .map((message) => ({ message, batch: JSON.parse(decoder.decode(message.data)) as ErpBatch }));

const batches = (h: Lifecycle, stage?: string): ErpBatch[] =>
  erpMessages(h)
    .map((r) => r.batch)
    .filter((b) => stage === undefined || b.stage === stage);

/** Net signed quantity per "sku@warehouse", keys that net to 0 left out. */
function net(rows: Iterable<{ sku: string; warehouse: string; qty: number }>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of rows) out[`${r.sku}@${r.warehouse}`] = (out[`${r.sku}@${r.warehouse}`] ?? 0) + r.qty;
  for (const k of Object.keys(out)) if (out[k] === 0) delete out[k];
  return out;
}

const isFinance = (e: LedgerEntry) => (financeEntryTypes as readonly string[]).includes(e.type);

describe("ERP batches over a real nats-server and LMDB", () => {
  let h: Lifecycle;
  const skus = {
    received: "ERP-R",
    shipped: "ERP-S",
    cancelled: "ERP-X",
    counted: "ERP-C",
    adjusted: "ERP-A",
    missing: "ERP-M",
  };
  const all = Object.values(skus);

  beforeAll(async () => {
    h = await Lifecycle.start("erp", [{ id: "*" }], { erp: { windowMs: erpWindowMs } });

    // Receipts.
    const receipts: Array<[string, string, number]> = [
      [skus.received, "w1", 10],
      [skus.received, "w2", 4],
      [skus.shipped, "w1", 20],
      [skus.cancelled, "w1", 5],
      [skus.counted, "w1", 10],
      [skus.adjusted, "w1", 10],
      [skus.missing, "w1", 5],
    ];
    for (const [s, w, q] of receipts) await h.receive(s, w, q);
    for (const [s, w, q] of receipts) await h.waitPosition(s, w, { onHand: q });

    // Two shipments of one order, then a damaged return.
    await h.order("shop", "E-1", [
      { lineId: "1", sku: skus.shipped, qty: 3, price: 19.9 },
      { lineId: "2", sku: skus.received, qty: 2, price: 5.5 },
    ]);
    await h.waitOrder("shop", "E-1", released, "released");
    await h.shipped("w1", "shop", "E-1", "S-1", [{ lineId: "1", qty: 2 }]);
    await h.shipped("w1", "shop", "E-1", "S-2", [
      { lineId: "1", qty: 1 },
      { lineId: "2", qty: 2 },
    ]);
    await h.waitOrder("shop", "E-1", (o) => o.status === "shipped", "shipped");
    await h.returned("shop", "E-1", "RET-1", [{ lineId: "1", qty: 1, disposition: "damaged" }]);
    await h.waitPosition(skus.shipped, "w1", { onHand: 18, damaged: 1 });

    // Reserved and cancelled: commitments only, nothing for finance.
    await h.order("shop", "E-2", [{ lineId: "1", sku: skus.cancelled, qty: 3, price: 7 }]);
    await h.waitOrder("shop", "E-2", released, "released");
    await h.cancel("shop", "E-2");
    await h.waitOrder("shop", "E-2", (o) => o.status === "cancelled", "cancelled");

    // A count, an adjustment, a hold and a scrap.
    await h.stock(skus.counted, { type: "counted", warehouse: "w1", onHand: 8 });
    await h.stock(skus.adjusted, { type: "adjust", warehouse: "w1", qty: -2 });
    await h.stock(skus.adjusted, { type: "hold", warehouse: "w1", qty: 3, bucket: "damaged" });
    await h.stock(skus.adjusted, { type: "unhold", warehouse: "w1", qty: 2, bucket: "damaged", to: "scrap" });
    await h.waitPosition(skus.counted, "w1", { onHand: 8 });
    await h.waitPosition(skus.adjusted, "w1", { onHand: 6, damaged: 1 });

    // The warehouse cannot pick: stock missing, no other warehouse has it, the line is cancelled.
    await h.order("shop", "E-3", [{ lineId: "1", sku: skus.missing, qty: 2, price: 3.25 }]);
    await h.waitOrder("shop", "E-3", released, "released");
    await h.rejected("w1", "shop", "E-3", ["1"], true);
    await h.waitOrder("shop", "E-3", settled, "settled");
    await h.waitPosition(skus.missing, "w1", { onHand: 3, reserved: 0 });
    await h.quiesce();
  }, 30_000);

  afterAll(async () => {
    await h?.dispose();
  });

  /** Per "sku@warehouse": the on hand the ledger shows now (everything started at 0). */
  async function onHandNow(): Promise<Record<string, number>> {
    const rows: Array<{ sku: string; warehouse: string; qty: number }> = [];
    for (const s of all) {
      const stock = await h.getStock(s);
      for (const [w, p] of Object.entries(stock.positions as Record<string, { onHand: number }>))
        rows.push({ sku: s, warehouse: w, qty: p.onHand });
    }
    return net(rows);
  }

  test("ledger batches' movements net to the on-hand change of every SKU and warehouse", async () => {
    const expected = await onHandNow();
    // Windows close erpWindowMs after their first movement: wait until every one has.
    await waitFor(
      () => Bun.deepEquals(net(batches(h, "ledger").flatMap((b) => b.movements)), expected),
      "ERP movements to add up to the ledger's on hand",
      erpWindowMs * 10,
    );
    expect(net(batches(h, "ledger").flatMap((b) => b.movements))).toEqual(expected);
    // The same from the finance entries of each SKU's history.
    const entries = (await Promise.all(all.map((s) => h.entries(s)))).flat() as LedgerEntry[];
    expect(
      net(
        entries
          .filter(isFinance)
          .map((e) => ({ sku: e.sku, warehouse: e.warehouse, qty: e.delta.onHand ?? 0 })),
      ),
    ).toEqual(expected);
    expect(expected).toMatchObject({
      "ERP-R@w1": 8,
      "ERP-R@w2": 4,
      "ERP-S@w1": 18,
      "ERP-X@w1": 5,
      "ERP-C@w1": 8,
      "ERP-A@w1": 6,
      "ERP-M@w1": 3,
    });
  });

  test("each movement type is a finance type; reservations, releases and holds never appear", async () => {
    const movements = batches(h, "ledger").flatMap((b) => b.movements);
    const types = new Set(movements.map((m) => m.type));
    for (const t of types) {
      expect((nonFinanceEntryTypes as readonly string[]).includes(t.split(":")[0] as string)).toBe(false);
    }
    const of = (sku: string) =>
      net(
        movements
          .filter((m) => m.sku === sku)
          .map((m) => ({ sku: m.type, warehouse: m.warehouse, qty: m.qty })),
      );
    // Reserved 3 and cancelled: only the receipt.
    expect(of(skus.cancelled)).toEqual({ "received@w1": 5 });
    expect(of(skus.shipped)).toEqual({ "received@w1": 20, "shipped@w1": -3, "returned:damaged@w1": 1 });
    expect(of(skus.received)).toEqual({ "received@w1": 10, "received@w2": 4, "shipped@w1": -2 });
    expect(of(skus.counted)).toEqual({ "received@w1": 10, "counted@w1": -2 });
    // The hold moved no on hand; its scrap did.
    expect(of(skus.adjusted)).toEqual({ "received@w1": 10, "adjusted@w1": -2, "scrapped@w1": -2 });
    expect(of(skus.missing)).toEqual({ "received@w1": 5, "missing@w1": -2 });
    for (const m of movements) {
      expect(m.qty).not.toBe(0);
      expect(m.entries).toBeGreaterThanOrEqual(1);
    }
  });

  test("batch ids are deterministic and are the Nats-Msg-Id; each (stage, partition, store) chain has no gap", async () => {
    const received = erpMessages(h);
    expect(received.length).toBeGreaterThan(0);
    const ids = new Set<string>();
    const chains = new Map<string, ErpBatch[]>();
    for (const { message, batch } of received) {
      expect(message.headers["Content-Type"]).toBe("application/json");
      expect(batch.id).toBe(`erp-${batch.stage}-${batch.partition}-${batch.storeId}-${batch.batchNo}`);
      expect(message.headers["Nats-Msg-Id"]).toBe(batch.id);
      expect(ids.has(batch.id)).toBe(false);
      ids.add(batch.id);
      expect(batch.partition).toBeLessThan(h.P);
      expect(batch.closedAtMs).toBeGreaterThanOrEqual(batch.openedAtMs);
      expect(batch.movements.length + batch.documents.length).toBeGreaterThan(0);
      const key = `${batch.stage}/${batch.partition}/${batch.storeId}`;
      chains.set(key, [...(chains.get(key) ?? []), batch]);
    }
    for (const [key, chain] of chains) {
      chain.forEach((b, i) => {
        const previous = chain[i - 1];
        expect({ key, batchNo: b.batchNo }).toEqual({ key, batchNo: i + 1 });
        expect(b.prevSeqTo).toBe(previous?.seqTo ?? 0);
        expect(b.seqFrom).toBe(b.prevSeqTo + 1);
        expect(b.seqTo).toBeGreaterThanOrEqual(b.prevSeqTo);
      });
    }
    // Movements are sorted by sku, warehouse, type within a batch.
    for (const b of batches(h, "ledger")) {
      const keys = b.movements.map((m) => `${m.sku}\u0000${m.warehouse}\u0000${m.type}`);
      expect(keys).toEqual([...keys].sort());
    }
  });

  test("order-stage batches carry a shipment document per WMS shipment with the line prices, returns and cancellations", async () => {
    const key1 = orderKey("shop", "E-1");
    const docs = (): ErpDocument[] => batches(h, "order").flatMap((b) => b.documents);
    await waitFor(
      () => docs().some((d) => d.id === documentId.shipment(key1, "S-2")),
      "order-stage ERP documents",
      15_000,
    );
    const byId = new Map(docs().map((d) => [d.id, d]));
    expect(byId.size).toBe(docs().length); // a document is sent once
    expect(byId.get(documentId.shipment(key1, "S-1"))).toMatchObject({
      kind: "shipment",
      orderKey: key1,
      channel: "shop",
      orderId: "E-1",
      warehouse: "w1",
      shipmentId: "S-1",
      lines: [{ lineId: "1", sku: skus.shipped, qty: 2, price: 19.9 }],
    });
    expect(byId.get(documentId.shipment(key1, "S-2"))).toMatchObject({
      kind: "shipment",
      shipmentId: "S-2",
      lines: [
        { lineId: "1", sku: skus.shipped, qty: 1, price: 19.9 },
        { lineId: "2", sku: skus.received, qty: 2, price: 5.5 },
      ],
    });
    // Every WMS shipment has its document (nothing else is a shipment).
    expect(
      docs()
        .filter((d) => d.kind === "shipment")
        .map((d) => d.id)
        .sort(),
    ).toEqual([documentId.shipment(key1, "S-1"), documentId.shipment(key1, "S-2")]);
    await waitFor(
      () =>
        docs().some((d) => d.kind === "return") &&
        docs().filter((d) => d.kind === "cancellation").length >= 2,
      "return and cancellation documents",
      5_000,
    );
    expect(
      byId.get(documentId.return(key1, "RET-1")) ?? docs().find((d) => d.kind === "return"),
    ).toMatchObject({
      kind: "return",
      id: documentId.return(key1, "RET-1"),
      orderKey: key1,
      returnId: "RET-1",
      warehouse: "w1",
      lines: [{ lineId: "1", sku: skus.shipped, qty: 1, price: 19.9, disposition: "damaged" }],
    });
    const cancellations = docs().filter((d) => d.kind === "cancellation");
    expect(cancellations.find((d) => d.orderKey === orderKey("shop", "E-2"))).toMatchObject({
      cause: "customer",
      lines: [{ lineId: "1", sku: skus.cancelled, qty: 3, price: 7 }],
    });
    expect(cancellations.find((d) => d.orderKey === orderKey("shop", "E-3"))).toMatchObject({
      cause: "warehouse",
      lines: [{ lineId: "1", sku: skus.missing, qty: 2, price: 3.25 }],
    });
    // Order-stage batches carry documents only; ledger batches carry movements only.
    for (const b of batches(h, "order")) expect(b.movements).toEqual([]);
    for (const b of batches(h, "ledger")) expect(b.documents).toEqual([]);
  }, 30_000);

  test("after a restart the chain goes on: same store, next batch number, prevSeqTo = the last seqTo", async () => {
    await waitFor(
      () => batches(h, "ledger").some((b) => b.movements.some((m) => m.sku === skus.received)),
      "a ledger batch for ERP-R",
    );
    const partitionOf = batches(h, "ledger").find((b) => b.movements.some((m) => m.sku === skus.received))
      ?.partition as number;
    const chain = () => batches(h, "ledger").filter((b) => b.partition === partitionOf);
    const last = chain().at(-1) as ErpBatch;
    await h.restart();
    await h.receive(skus.received, "w3", 1);
    const next = await waitFor(() => chain().find((b) => b.batchNo > last.batchNo), "the next batch", 10_000);
    expect(next).toMatchObject({
      id: `erp-ledger-${partitionOf}-${last.storeId}-${last.batchNo + 1}`,
      storeId: last.storeId,
      batchNo: last.batchNo + 1,
      prevSeqTo: last.seqTo,
      seqFrom: last.seqTo + 1,
    });
    expect(next.movements).toEqual([
      expect.objectContaining({ sku: skus.received, warehouse: "w3", type: "received", qty: 1, entries: 1 }),
    ]);
    // Nothing sent twice across the restart.
    const ids = erpMessages(h).map((r) => r.batch.id);
    expect(new Set(ids).size).toBe(ids.length);
    await h.quiesce();
    await h.expectLedgerConsistent();
  }, 30_000);
});
