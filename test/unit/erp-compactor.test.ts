import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  documentId,
  type ErpBatch,
  ErpCompactor,
  type ErpDocument,
  type ErpLimits,
  financeEntryTypes,
  movementTypeOf,
  nonFinanceEntryTypes,
} from "../../src/domain/erp/index.ts";
import type { EntryType, LedgerEntry, Position } from "../../src/domain/ledger/index.ts";

const limits: ErpLimits = { windowMs: 1000, movementKeysMax: 100, documentsMax: 10 };
const source = { stage: "ledger", partition: 3, storeId: "70193c8b" };

let version = 0;
function entry(
  type: EntryType,
  delta: Partial<Position>,
  more: { sku?: string; warehouse?: string; cause?: string; atMs?: number; seq?: number } = {},
): LedgerEntry {
  return {
    sku: more.sku ?? "A",
    version: ++version,
    warehouse: more.warehouse ?? "w1",
    type,
    delta,
    ref: null,
    cause: more.cause ?? type,
    seq: more.seq ?? version,
    atMs: more.atMs ?? 0,
  };
}

function shipment(n: number, atMs = 0): ErpDocument {
  return {
    kind: "shipment",
    id: documentId.shipment("shop.1001", `s${n}`),
    orderKey: "shop.1001",
    channel: "shop",
    orderId: "1001",
    warehouse: "w1",
    shipmentId: `s${n}`,
    lines: [{ lineId: "1", sku: "A", qty: 2, price: 9.9 }],
    atMs,
  };
}

describe("what goes to the ERP", () => {
  test("finance types go by their net on-hand change; commitments and holds never do", () => {
    expect(movementTypeOf(entry("received", { onHand: 5 }))).toBe("received");
    expect(movementTypeOf(entry("shipped", { onHand: -1, reserved: -1 }))).toBe("shipped");
    expect(movementTypeOf(entry("scrapped", { onHand: -1, damaged: -1 }))).toBe("scrapped");
    expect(movementTypeOf(entry("missing", { onHand: -2 }))).toBe("missing");
    expect(movementTypeOf(entry("override", { onHand: 3 }))).toBe("override");
    expect(movementTypeOf(entry("adjusted", { onHand: -3 }))).toBe("adjusted");
    expect(movementTypeOf(entry("counted", { onHand: -3 }))).toBe("counted");
    // A count that only took back held units moved no on-hand stock.
    expect(movementTypeOf(entry("counted", { damaged: -1 }))).toBeNull();
    for (const t of nonFinanceEntryTypes) {
      const delta = t === "reserved" || t === "released" ? { reserved: 1 } : { damaged: 1 };
      expect(movementTypeOf(entry(t, delta))).toBeNull();
    }
    expect([...financeEntryTypes, ...nonFinanceEntryTypes].sort()).toHaveLength(13);
  });

  test("returns are split by disposition, read from the cause", () => {
    expect(movementTypeOf(entry("returned", { onHand: 1 }, { cause: "return:sellable" }))).toBe(
      "returned:sellable",
    );
    expect(movementTypeOf(entry("returned", { onHand: 1, damaged: 1 }, { cause: "return:damaged" }))).toBe(
      "returned:damaged",
    );
    expect(() => movementTypeOf(entry("returned", { onHand: 1 }, { cause: "order" }))).toThrow(
      /returned entry's cause is return:<disposition>/,
    );
    expect(() => movementTypeOf(entry("returned", { onHand: 1 }, { cause: "return:lost" }))).toThrow(
      /return:/,
    );
  });
});

describe("a window and its batch", () => {
  test("nets per SKU × warehouse × type, drops keys that net to 0, sorts deterministically", () => {
    const c = new ErpCompactor(source, limits);
    c.addEntries([
      entry("received", { onHand: 10 }, { sku: "B", atMs: 5 }),
      entry("reserved", { reserved: 4 }, { sku: "B" }),
      entry("shipped", { onHand: -4, reserved: -4 }, { sku: "B" }),
      entry("received", { onHand: 5 }, { sku: "B" }),
      entry("received", { onHand: 1 }, { sku: "A", warehouse: "w2" }),
      entry("adjusted", { onHand: 2 }, { sku: "A" }),
      entry("adjusted", { onHand: -2 }, { sku: "A" }),
      entry("returned", { onHand: 1 }, { sku: "A", cause: "return:quality_control" }),
    ]);
    expect(c.shouldClose(900)).toBe(false);
    expect(c.timeoutReached(1005)).toBe(true);
    const batch = c.close(42, 1005) as ErpBatch;
    expect(batch.movements.map((m) => [m.sku, m.warehouse, m.type, m.qty, m.entries])).toEqual([
      ["A", "w1", "returned:quality_control", 1, 1],
      ["A", "w2", "received", 1, 1],
      ["B", "w1", "received", 15, 2],
      ["B", "w1", "shipped", -4, 1],
    ]);
    expect(batch).toMatchObject({
      id: "erp-ledger-3-70193c8b-1",
      stage: "ledger",
      partition: 3,
      batchNo: 1,
      seqFrom: 1,
      seqTo: 42,
      prevSeqTo: 0,
      openedAtMs: 5,
      closedAtMs: 1005,
      documents: [],
    });
    expect(c.isEmpty()).toBe(true);
    expect(c.shouldClose(99_999)).toBe(false);
  });

  test("batches chain: batchNo +1, seqFrom = prevSeqTo + 1, prevSeqTo = the last seqTo", () => {
    const c = new ErpCompactor(source, limits);
    c.addEntry(entry("received", { onHand: 1 }));
    const a = c.close(10, 0) as ErpBatch;
    c.addDocument(shipment(1));
    const b = c.close(25, 1) as ErpBatch;
    c.addDocument(shipment(2));
    const tick = c.close(25, 2) as ErpBatch; // a timer's effects, no new input
    expect([a, b, tick].map((x) => [x.batchNo, x.seqFrom, x.seqTo, x.prevSeqTo])).toEqual([
      [1, 1, 10, 0],
      [2, 11, 25, 10],
      [3, 26, 25, 25],
    ]);
    expect(() => c.close(24, 3)).toThrow(/seqTo never goes back/);
  });

  test("a window that netted to nothing yields no batch and uses no number", () => {
    const c = new ErpCompactor(source, limits);
    c.addEntry(entry("adjusted", { onHand: 3 }));
    c.addEntry(entry("adjusted", { onHand: -3 }));
    expect(c.isEmpty()).toBe(true);
    expect(c.shouldClose(5000)).toBe(true); // the key still takes room until the window closes
    expect(c.close(7, 5000)).toBeNull();
    expect(c.shouldClose(99_999)).toBe(false);
    c.addEntry(entry("received", { onHand: 1 }));
    // The chain goes from batch to batch: the empty close moved nothing the ERP would see.
    expect(c.close(9, 6000)).toMatchObject({ batchNo: 1, seqFrom: 1, seqTo: 9, prevSeqTo: 0 });
  });

  test("reservations alone open no window", () => {
    const c = new ErpCompactor(source, limits);
    expect(c.addEntry(entry("reserved", { reserved: 1 }))).toBe(false);
    expect(c.addEntries([entry("held", { damaged: 1 }), entry("safety_stock", { safetyStock: 2 })])).toBe(0);
    expect(c.shouldClose(10_000)).toBe(false);
  });

  test("closes on count: movementKeysMax or documentsMax, the rest carried to the next batch at once", () => {
    const c = new ErpCompactor(source, { windowMs: 60_000, movementKeysMax: 3, documentsMax: 2 });
    for (const sku of ["E", "D", "C", "B", "A"])
      c.addEntry(entry("received", { onHand: 1 }, { sku, atMs: 100 }));
    for (let i = 1; i <= 3; i++) c.addDocument(shipment(i, 100));
    expect(c.thresholdReached()).toBe(true);
    expect(c.shouldClose(100)).toBe(true);
    const batches: ErpBatch[] = [];
    while (c.shouldClose(100)) batches.push(c.close(50, 100) as ErpBatch);
    expect(batches.map((b) => b.movements.map((m) => m.sku))).toEqual([
      ["A", "B", "C"],
      ["D", "E"],
    ]);
    expect(batches.map((b) => b.documents.map((d) => d.id))).toEqual([
      ["shipment:shop.1001:s1", "shipment:shop.1001:s2"],
      ["shipment:shop.1001:s3"],
    ]);
    expect(c.isEmpty()).toBe(true);
  });

  test("documents keep their order; a copy of one in the window is ignored", () => {
    const c = new ErpCompactor({ stage: "order", partition: 0, storeId: "abc" }, limits);
    const ret: ErpDocument = {
      kind: "return",
      id: documentId.return("shop.1001", "r1"),
      orderKey: "shop.1001",
      channel: "shop",
      orderId: "1001",
      returnId: "r1",
      warehouse: "w1",
      lines: [{ lineId: "1", sku: "A", qty: 1, price: 9.9, disposition: "damaged" }],
      atMs: 3,
    };
    const cancel: ErpDocument = {
      kind: "cancellation",
      id: documentId.cancellation("shop.1002", 4),
      orderKey: "shop.1002",
      channel: "shop",
      orderId: "1002",
      cause: "customer",
      lines: [{ lineId: "1", sku: "B", qty: 3, price: 5 }],
      atMs: 4,
    };
    expect(c.addDocument(shipment(1, 2))).toBe(true);
    expect(c.addDocument(ret)).toBe(true);
    expect(c.addDocument(shipment(1, 2))).toBe(false);
    expect(c.addDocument(cancel)).toBe(true);
    const b = c.close(3, 1002) as ErpBatch;
    expect(b.id).toBe("erp-order-0-abc-1");
    expect(b.documents.map((d) => d.id)).toEqual([
      "shipment:shop.1001:s1",
      "return:shop.1001:r1",
      "cancel:shop.1002:4",
    ]);
    expect(b.openedAtMs).toBe(2);
  });

  test("invalid documents, sources and limits are refused (assertions)", () => {
    const c = new ErpCompactor(source, limits);
    const bad = (patch: Record<string, unknown>) => ({ ...shipment(1), ...patch }) as ErpDocument;
    expect(() => c.addDocument(bad({ id: "" }))).toThrow(/has an id/);
    expect(() => c.addDocument(bad({ orderKey: "" }))).toThrow(/names its order/);
    expect(() => c.addDocument(bad({ lines: [] }))).toThrow(/has lines/);
    expect(() => c.addDocument(bad({ atMs: Number.NaN }))).toThrow(/has a time/);
    const line = { lineId: "1", sku: "A", qty: 1, price: 1 };
    expect(() => c.addDocument(bad({ lines: [{ ...line, qty: 0 }] }))).toThrow(
      /quantity is a whole number > 0/,
    );
    expect(() => c.addDocument(bad({ lines: [{ ...line, qty: 1.5 }] }))).toThrow(/quantity/);
    expect(() => c.addDocument(bad({ lines: [{ ...line, price: -1 }] }))).toThrow(/price is a number ≥ 0/);
    expect(() => c.addDocument(bad({ lines: [{ ...line, price: Number.POSITIVE_INFINITY }] }))).toThrow(
      /price/,
    );
    expect(() => c.addDocument(bad({ lines: [{ ...line, sku: "" }] }))).toThrow(/names its SKU/);
    expect(() => c.addEntry(entry("received", { onHand: 0.5 }))).toThrow(/on-hand delta is a whole number/);
    expect(() => new ErpCompactor({ ...source, storeId: "a-b" }, limits)).toThrow(/storeId is alphanumeric/);
    expect(() => new ErpCompactor({ ...source, stage: "" }, limits)).toThrow(/names its stage/);
    expect(() => new ErpCompactor({ ...source, partition: -1 }, limits)).toThrow(/partition/);
    expect(() => new ErpCompactor(source, { ...limits, movementKeysMax: 0 })).toThrow(/movementKeysMax/);
    expect(() => new ErpCompactor(source, { ...limits, documentsMax: 0 })).toThrow(/documentsMax/);
    expect(() => new ErpCompactor(source, { ...limits, windowMs: -1 })).toThrow(/windowMs/);
  });

  test("state is plain data; a compactor rebuilt from it closes the same batches", () => {
    const a = new ErpCompactor(source, limits);
    a.addEntries([entry("received", { onHand: 4 }, { atMs: 7 }), entry("missing", { onHand: -1 })]);
    a.close(3, 10);
    a.addEntries([
      entry("received", { onHand: 2 }, { atMs: 20 }),
      entry("scrapped", { onHand: -1, damaged: -1 }),
    ]);
    a.addDocument(shipment(1, 21));
    const state = JSON.parse(JSON.stringify(a.exportState()));
    const b = new ErpCompactor(source, limits, state);
    expect(b.exportState()).toEqual(a.exportState());
    expect(b.close(9, 2000)).toEqual(a.close(9, 2000));
    const broken = { ...state, movements: [state.movements[0], state.movements[0]] };
    expect(() => new ErpCompactor(source, limits, broken)).toThrow(/each movement key appears once/);
    const dupDocs = { ...state, documents: [state.documents[0], state.documents[0]] };
    expect(() => new ErpCompactor(source, limits, dupDocs)).toThrow(/each document id appears once/);
    expect(() => new ErpCompactor(source, limits, { ...state, openedAtMs: null })).toThrow(
      /open window has a start/,
    );
    expect(() => new ErpCompactor(source, limits, { ...state, batchNoLast: -1 })).toThrow(/batchNoLast/);
  });
});

describe("ERP completeness (property)", () => {
  const entryTypes: EntryType[] = [...financeEntryTypes, ...nonFinanceEntryTypes];
  const step = fc.oneof(
    {
      weight: 8,
      arbitrary: fc.record({
        kind: fc.constant("entry" as const),
        type: fc.constantFrom(...entryTypes),
        sku: fc.constantFrom("A", "B", "C"),
        warehouse: fc.constantFrom("w1", "w2"),
        onHand: fc.integer({ min: -5, max: 5 }),
        disposition: fc.constantFrom("sellable", "damaged", "quality_control"),
        dtMs: fc.integer({ min: 0, max: 400 }),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant("doc" as const), dtMs: fc.integer({ min: 0, max: 400 }) }),
    },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("restart" as const) }) },
  );

  test("the net of all batches equals the net of all finance entries; reservations never appear; ids are deterministic", () => {
    fc.assert(
      fc.property(
        fc.array(step, { maxLength: 200 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 3 }),
        fc.boolean(),
        (steps, movementKeysMax, documentsMax, restartBetweenCloses) => {
          const l = { windowMs: 500, movementKeysMax, documentsMax };
          const run = () => replay(steps, l, restartBetweenCloses);
          const first = run();
          expect(run()).toEqual(first); // deterministic: same inputs, same batches and ids
          const expected = new Map<string, number>();
          for (const e of first.entries) {
            const type = movementTypeOf(e);
            if (type === null) continue;
            const k = `${e.sku}|${e.warehouse}|${type}`;
            expected.set(k, (expected.get(k) ?? 0) + (e.delta.onHand ?? 0));
          }
          const got = new Map<string, number>();
          for (const b of first.batches) {
            expect(b.movements.length).toBeLessThanOrEqual(movementKeysMax);
            expect(b.documents.length).toBeLessThanOrEqual(documentsMax);
            for (const m of b.movements) {
              expect(m.qty).not.toBe(0);
              expect(nonFinanceEntryTypes as readonly string[]).not.toContain(m.type);
              const k = `${m.sku}|${m.warehouse}|${m.type}`;
              got.set(k, (got.get(k) ?? 0) + m.qty);
            }
          }
          for (const [k, v] of expected) expect(got.get(k) ?? 0).toBe(v);
          for (const [k, v] of got) expect(expected.get(k) ?? 0).toBe(v);
          expect(first.batches.flatMap((b) => b.documents).length).toBe(first.documents);
          first.batches.forEach((b, i) => {
            expect(b.batchNo).toBe(i + 1);
            expect(b.id).toBe(`erp-ledger-3-70193c8b-${i + 1}`);
            expect(b.prevSeqTo).toBe(i === 0 ? 0 : (first.batches[i - 1] as ErpBatch).seqTo);
            expect(b.seqFrom).toBe(b.prevSeqTo + 1);
          });
        },
      ),
      { numRuns: 300 },
    );
  });
});

type Step =
  | {
      kind: "entry";
      type: EntryType;
      sku: string;
      warehouse: string;
      onHand: number;
      disposition: string;
      dtMs: number;
    }
  | { kind: "doc"; dtMs: number }
  | { kind: "restart" };

/** Feeds the steps as a stage would: close when due after each input, restart from the exported state, drain. */
function replay(steps: Step[], l: ErpLimits, restartBetweenCloses: boolean) {
  let c = new ErpCompactor(source, l);
  const batches: ErpBatch[] = [];
  const entries: LedgerEntry[] = [];
  let t = 0;
  let seq = 0;
  let documents = 0;
  const closeDue = () => {
    while (c.shouldClose(t)) {
      const b = c.close(seq, t);
      if (b !== null) batches.push(b);
      if (restartBetweenCloses) c = new ErpCompactor(source, l, structuredClone(c.exportState()));
    }
  };
  for (const s of steps) {
    if (s.kind === "restart") {
      c = new ErpCompactor(source, l, structuredClone(c.exportState()));
      continue;
    }
    t += s.dtMs;
    seq++;
    if (s.kind === "doc") {
      documents++;
      c.addDocument({ ...shipment(seq, t) });
    } else {
      const delta = s.onHand === 0 ? { reserved: 1 } : { onHand: s.onHand };
      const e: LedgerEntry = {
        sku: s.sku,
        version: seq,
        warehouse: s.warehouse,
        type: s.type,
        delta,
        ref: null,
        cause: s.type === "returned" ? `return:${s.disposition}` : s.type,
        seq,
        atMs: t,
      };
      entries.push(e);
      c.addEntry(e);
    }
    closeDue();
  }
  t += l.windowMs;
  closeDue();
  expect(c.isEmpty()).toBe(true);
  return { batches, entries, documents };
}
