import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  available,
  Ledger,
  type LineRequest,
  type LineResult,
  type StockCommand,
} from "../../src/domain/ledger/index.ts";
import { LedgerModel } from "./model/ledger-model.ts";
import { MemLedgerStore } from "./model/stores.ts";

// Backorders filled when stock arrives, in the pure ledger: waiting lines against the reference model
// (test/unit/model/ledger-model.ts) over random sequences, committed batch by batch, and minimal examples.

const seed = Number(process.env.SLUICE_MODEL_SEED ?? Date.now() % 2 ** 31);
const at = (seq: number) => ({ seq, atMs: 1000 * seq });

const reserve = (
  orderKey: string,
  qty: number,
  candidates: string[],
  priority: number | null,
  attempt = 1,
): LineRequest => ({
  kind: "reserve",
  ref: { orderKey, lineId: "1" },
  sku: "A",
  qty,
  candidates,
  attempt,
  ...(priority === null ? {} : { wait: { priority } }),
});
const release = (orderKey: string, attempt = 1): LineRequest => ({
  kind: "release",
  ref: { orderKey, lineId: "1" },
  sku: "A",
  attempt,
});
const received = (warehouse: string, qty: number): StockCommand => ({
  type: "received",
  warehouse,
  qty,
  ref: null,
});

/** A ledger over a Map store, committing after each call (as a batch of one). */
function harness(waitingLinesPerSkuMax = 1000) {
  const store = new MemLedgerStore();
  let seq = 0;
  let ledger = new Ledger(store, { waitingLinesPerSkuMax });
  const commit = (): LineResult[] => {
    const changes = ledger.takeChanges();
    store.commit(changes, seq);
    ledger.evict();
    return changes.results;
  };
  return {
    store,
    line: (r: LineRequest) => {
      ledger.applyLine(r, at(++seq));
      return commit();
    },
    stock: (c: StockCommand) => {
      ledger.applyStock("A", c, at(++seq));
      return commit();
    },
    restart: () => {
      ledger = new Ledger(store, { waitingLinesPerSkuMax });
    },
  };
}

const filled = (rs: LineResult[]) =>
  rs.filter((r) => r.kind === "reserved" && r.filled === true).map((r) => r.ref.orderKey);

describe("waiting lines (examples)", () => {
  test("priority first, then arrival; a line too large is passed over, not in the way", () => {
    const h = harness();
    h.line(reserve("low", 2, ["w1"], 0));
    h.line(reserve("big", 9, ["w1"], 5));
    h.line(reserve("high", 2, ["w1"], 5));
    h.line(reserve("low2", 2, ["w1"], 0));
    expect(h.store.waitingOf("A").map((w) => w.orderKey)).toEqual(["big", "high", "low", "low2"]);
    expect(filled(h.stock(received("w1", 5)))).toEqual(["high", "low"]);
    expect(h.store.waitingOf("A").map((w) => w.orderKey)).toEqual(["big", "low2"]);
    expect(filled(h.stock(received("w1", 8)))).toEqual(["big"]);
    expect(available(h.store.getSku("A")?.positions.w1 as never)).toBe(0);
  });

  test("filled whole at the first candidate that has it, keeping what routing asked to keep", () => {
    const h = harness();
    h.line({ ...reserve("o", 3, ["w1", "w2"], 0), keep: [2, 0] } as LineRequest);
    expect(filled(h.stock(received("w1", 4)))).toEqual([]); // 4 − 3 < 2 kept at w1
    const rs = h.stock(received("w2", 3));
    expect(rs).toEqual([
      {
        ref: { orderKey: "o", lineId: "1" },
        sku: "A",
        attempt: 1,
        kind: "reserved",
        warehouse: "w2",
        qty: 3,
        filled: true,
      },
    ]);
    expect(h.store.getAllocation("A", "o", "1")).toMatchObject({ warehouse: "w2", reserved: 3, refusal: "" });
  });

  test("a release removes a waiting line; a release of another line fills the next", () => {
    const h = harness();
    h.stock(received("w1", 2));
    h.line(reserve("a", 2, ["w1"], null));
    h.line(reserve("b", 2, ["w1"], 0));
    h.line(reserve("c", 2, ["w1"], 0));
    h.line(release("b"));
    expect(h.store.waitingOf("A").map((w) => w.orderKey)).toEqual(["c"]);
    expect(filled(h.line(release("a")))).toEqual(["c"]);
    expect(h.store.heads.size).toBe(0);
  });

  test("a new attempt replaces the line's entry; a request that may not wait never waits", () => {
    const h = harness();
    h.line(reserve("a", 2, ["w1"], 0));
    h.line(reserve("a", 2, ["w1"], null, 2));
    h.line(reserve("n", 1, ["w1"], null));
    expect(h.store.waitingOf("A")).toEqual([]);
    expect(filled(h.stock(received("w1", 5)))).toEqual([]);
  });

  test("the list is bounded: one more line is refused waiting_list_full and does not wait", () => {
    const h = harness(1);
    h.line(reserve("a", 1, ["w1"], 0));
    const rs = h.line(reserve("b", 1, ["w1"], 9));
    expect(rs[0]).toMatchObject({ kind: "refused", code: "waiting_list_full" });
    expect(h.store.waitingOf("A").map((w) => w.orderKey)).toEqual(["a"]);
    // The same request again is answered the same way, and still does not wait.
    expect(h.line(reserve("b", 1, ["w1"], 9))[0]).toMatchObject({ code: "waiting_list_full" });
    expect(filled(h.stock(received("w1", 5)))).toEqual(["a"]);
  });

  test("a duplicate reserve of a filled line is answered reserved and reserves nothing more", () => {
    const h = harness();
    h.line(reserve("a", 2, ["w1"], 0));
    h.stock(received("w1", 5));
    const again = h.line(reserve("a", 2, ["w1"], 0));
    expect(again[0]).toMatchObject({ kind: "reserved", warehouse: "w1", qty: 2 });
    expect(h.store.getSku("A")?.positions.w1?.reserved).toBe(2);
  });
});

// ---- against the reference model --------------------------------------------------------------------------

const opArb = fc.oneof(
  fc.record({
    t: fc.constant("reserve" as const),
    order: fc.integer({ min: 0, max: 5 }),
    attempt: fc.integer({ min: 1, max: 2 }),
    qty: fc.integer({ min: 1, max: 6 }),
    candidates: fc.subarray(["w1", "w2", "w3"], { minLength: 0 }),
    keep: fc.integer({ min: 0, max: 2 }),
    priority: fc.option(fc.integer({ min: -2, max: 2 }), { nil: null }),
  }),
  fc.record({
    t: fc.constant("release" as const),
    order: fc.integer({ min: 0, max: 5 }),
    attempt: fc.integer({ min: 1, max: 2 }),
  }),
  fc.record({
    t: fc.constant("stock" as const),
    w: fc.constantFrom("w1", "w2", "w3"),
    type: fc.constantFrom("received", "counted", "adjust", "override", "hold", "unhold"),
    qty: fc.integer({ min: 1, max: 8 }),
  }),
  fc.record({ t: fc.constant("restart" as const) }),
);

function stockOf(o: { w: string; type: string; qty: number }): StockCommand {
  switch (o.type) {
    case "counted":
      return { type: "counted", warehouse: o.w, onHand: o.qty, ref: null };
    case "adjust":
      return { type: "adjust", warehouse: o.w, qty: -o.qty, ref: null };
    case "override":
      return { type: "override", warehouse: o.w, available: o.qty, ref: null };
    case "hold":
      return { type: "hold", warehouse: o.w, qty: o.qty, bucket: "damaged", ref: null };
    case "unhold":
      return { type: "unhold", warehouse: o.w, qty: o.qty, bucket: "damaged", to: "available", ref: null };
    default:
      return received(o.w, o.qty);
  }
}

describe(`waiting lines against the reference model (seed ${seed})`, () => {
  test("3,000 random sequences, batches of 1–4 commands, duplicates: same answers, list and stock", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(opArb, fc.integer({ min: 1, max: 4 }), fc.boolean()), { maxLength: 40 }),
        fc.integer({ min: 1, max: 3 }),
        (ops, max) => {
          const store = new MemLedgerStore();
          const model = new LedgerModel("same", max);
          let ledger = new Ledger(store, { waitingLinesPerSkuMax: max });
          let seq = 0;
          let batch = 0;
          const flush = () => {
            const changes = ledger.takeChanges();
            expect(changes.results).toEqual(model.takeResults());
            store.commit(changes, seq);
            ledger.evict();
            batch = 0;
          };
          for (const [o, size, dup] of ops) {
            if (o.t === "restart") {
              // A fresh ledger over what is committed: waiting lines are read back from the store.
              flush();
              ledger = new Ledger(store, { waitingLinesPerSkuMax: max });
              continue;
            }
            const input = at(++seq);
            const copies = dup ? 2 : 1;
            for (let i = 0; i < copies; i++) {
              if (o.t === "stock") {
                const c = stockOf(o);
                const r = ledger.applyStock("A", c, input);
                const m = model.stock("A", c, input.atMs);
                expect(r.ok).toBe(m.ok);
              } else {
                const r: LineRequest =
                  o.t === "reserve"
                    ? ({
                        ...reserve(`o${o.order}`, o.qty, o.candidates, o.priority, o.attempt),
                        keep: o.candidates.map(() => o.keep),
                      } as LineRequest)
                    : release(`o${o.order}`, o.attempt);
                ledger.applyLine(r, input);
                model.line(r, input.atMs);
              }
            }
            if (++batch >= size) flush();
            // Invariants after every commit: no oversell, bound, no waiting line fits what is available.
            const list = store.waitingOf("A");
            expect(list.length).toBeLessThanOrEqual(max);
            for (const p of Object.values(store.getSku("A")?.positions ?? {}))
              expect(available(p)).toBeGreaterThanOrEqual(0);
            for (const w of list) {
              const fits = w.candidates.some((c, k) => {
                const p = store.getSku("A")?.positions[c];
                return p !== undefined && available(p) - w.qty >= (w.keep?.[k] ?? 0);
              });
              expect(fits).toBe(false);
            }
          }
          flush();
          const modelList = [...(model.waiting.get("A") ?? [])]
            .sort((a, b) => b.priority - a.priority || a.arrival - b.arrival)
            .map((w) => [w.orderKey, w.attempt, w.qty]);
          expect(store.waitingOf("A").map((w) => [w.orderKey, w.attempt, w.qty])).toEqual(modelList);
          for (const w of ["w1", "w2", "w3"])
            expect(store.getSku("A")?.positions[w] ?? model.position("A", w)).toEqual(model.position("A", w));
        },
      ),
      { numRuns: 3000, seed },
    );
  });
});
