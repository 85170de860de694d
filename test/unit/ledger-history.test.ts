import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import {
  type Allocation,
  allocationExpired,
  allocationFinished,
  compactEntries,
  emptyHistory,
  foldEntries,
  foldIntoHistory,
  type InputRef,
  Ledger,
  type LedgerEntry,
  type LedgerView,
  type LineRequest,
  type Position,
  type RetentionLimits,
  type SkuHistory,
  type SkuState,
} from "../../src/domain/ledger/index.ts";
import { ledgerTables, ledgerView } from "../../src/stages/ledger/applier.ts";
import { checkLedgerPartition, isConsistent } from "../../src/stages/ledger/check.ts";
import {
  type CompactionLimits,
  compactionTables,
  LedgerCompactor,
} from "../../src/stages/ledger/compaction.ts";
import { reservationOps, reservationTables } from "../../src/stages/ledger/reservations.ts";
import { type Op, PartitionStore } from "../../src/store/index.ts";

// Retention of ledger history (docs/operations.md, "Retention of history"): a count reads only the open
// reservations it takes, compaction removes a bounded number of records per pass, and the ledger check still
// proves positions = snapshot + the fold of the remaining entries.

const base = mkdtempSync(join(process.platform === "linux" ? "/dev/shm" : "/tmp", "sluice-history-"));
afterAll(() => rmSync(base, { recursive: true, force: true }));
let storeNo = 0;

// The stage's tables (the index and history tables once ledgerTables lists them, as the applier does).
const tables = [...new Set<string>([...ledgerTables, ...reservationTables, ...compactionTables])];

function openStore(): PartitionStore {
  return PartitionStore.open(
    join(base, `p${storeNo++}`),
    { stage: "ledger", partition: 0, partitionCount: 1 },
    { mapBytesMax: 1024 * 1024 * 1024, tables },
  );
}

/** What LedgerApplier.finish writes for the ledger's changes (src/stages/ledger/applier.ts). */
function ledgerOps(ledger: Ledger): Op[] {
  const c = ledger.takeChanges();
  const ops: Op[] = [];
  for (const s of c.skus) ops.push({ op: "put", table: "skus", key: s.sku, value: s });
  for (const e of c.entries) ops.push({ op: "put", table: "entries", key: [e.sku, e.version], value: e });
  for (const a of c.allocations)
    ops.push({ op: "put", table: "allocations", key: [a.sku, a.orderKey, a.lineId], value: a });
  for (const key of c.allocationsDeleted) ops.push({ op: "delete", table: "allocations", key });
  for (const l of c.loads) ops.push({ op: "put", table: "load", key: l.warehouse, value: l });
  ops.push(...reservationOps(c));
  ledger.evict();
  return ops;
}

let seq = 0;
async function commit(store: PartitionStore, ledger: Ledger, before: Op[] = []): Promise<void> {
  // Compaction's ops go first, as in finish(): a batch that writes the same record wins.
  await store.commit({ ops: [...before, ...ledgerOps(ledger)], outbox: [], streamSeqLastApplied: ++seq });
}

/** Counts the view's reads: the work of a count, measured in records, not time. */
function countingView(inner: LedgerView) {
  const calls = { getSku: 0, getAllocation: 0, openReservations: 0, reservationsRead: 0, allocationsOf: 0 };
  const view: LedgerView = {
    getSku: (sku) => {
      calls.getSku++;
      return inner.getSku(sku);
    },
    getAllocation: (sku, o, l) => {
      calls.getAllocation++;
      return inner.getAllocation(sku, o, l);
    },
    getLoad: (w) => inner.getLoad(w),
    openReservations: function* (sku, w) {
      calls.openReservations++;
      for (const a of inner.openReservations?.(sku, w) ?? []) {
        calls.reservationsRead++;
        yield a;
      }
    },
    historyOf: (sku) => inner.historyOf?.(sku),
  };
  if (inner.allocationsOf !== undefined) {
    const all = inner.allocationsOf.bind(inner);
    view.allocationsOf = (sku) => {
      calls.allocationsOf++;
      return all(sku);
    };
  }
  return { view, calls };
}

const at = (atMs: number): InputRef => ({ seq: atMs, atMs });
const reserve = (
  sku: string,
  orderKey: string,
  qty: number,
  attempt = 1,
  candidates = ["w1"],
): LineRequest => ({
  kind: "reserve",
  ref: { orderKey, lineId: "1" },
  sku,
  qty,
  candidates,
  attempt,
});
const ship = (sku: string, orderKey: string, qty: number, eventId: string, attempt = 1): LineRequest => ({
  kind: "ship",
  ref: { orderKey, lineId: "1" },
  sku,
  qty,
  attempt,
  eventId,
});
const ret = (sku: string, orderKey: string, qty: number, eventId: string, attempt = 1): LineRequest => ({
  kind: "return",
  ref: { orderKey, lineId: "1" },
  sku,
  qty,
  eventId,
  disposition: "sellable",
  warehouse: "w1",
  attempt,
});
const release = (sku: string, orderKey: string, attempt = 1): LineRequest => ({
  kind: "release",
  ref: { orderKey, lineId: "1" },
  sku,
  attempt,
});

/** Records in a table (LMDB's entry count also holds the table's shared msgpack structures: not used). */
const rows = (store: PartitionStore, table: string) => [...store.keys(table)].length;

function expectConsistent(store: PartitionStore) {
  const check = checkLedgerPartition(store, 0);
  expect(check.mismatches).toEqual([]);
  expect(check.versionGaps).toEqual([]);
  expect(check.reservationMismatches).toEqual([]);
  expect(check.oversold).toEqual([]);
  expect(isConsistent(check)).toBe(true);
  return check;
}

describe("a count reads only the open reservations it takes", () => {
  test("3,000 finished orders, then a count: 3 index rows read, no history", async () => {
    const store = openStore();
    const ledger = new Ledger(ledgerView(store));
    ledger.applyStock("HOT", { type: "received", warehouse: "w1", qty: 10_000, ref: null }, at(1));
    for (let i = 0; i < 3000; i++) {
      ledger.applyLine(reserve("HOT", `shop.f${i}`, 1), at(10 + i));
      // Every third is cancelled, the others shipped: finished lines of both kinds.
      if (i % 3 === 0) ledger.applyLine(release("HOT", `shop.f${i}`), at(10 + i));
      else ledger.applyLine(ship("HOT", `shop.f${i}`, 1, `s-${i}`), at(10 + i));
      if (i % 500 === 499) await commit(store, ledger);
    }
    for (let i = 0; i < 20; i++) ledger.applyLine(reserve("HOT", `shop.open${i}`, 1), at(5000 + i));
    await commit(store, ledger);
    expect(rows(store, "allocations")).toBe(3020);
    expect(rows(store, "reservations")).toBe(20);

    const { view, calls } = countingView(ledgerView(store));
    const counting = new Ledger(view);
    // 2,000 shipped: 8,000 on hand, 20 reserved. On hand found 3 short of what is reserved: the 3 newest reservations are lost.
    counting.applyStock("HOT", { type: "counted", warehouse: "w1", onHand: 17, ref: "cc-1" }, at(6000));
    const changes = counting.takeChanges();
    expect(changes.results.map((r) => r.ref.orderKey)).toEqual(["shop.open19", "shop.open18", "shop.open17"]);
    expect(calls.openReservations).toBe(1);
    expect(calls.reservationsRead).toBe(3);
    expect(calls.allocationsOf).toBe(0);
    // One base read per allocation the count changes: bounded by what is lost, not by the 3,000 lines.
    expect(calls.getAllocation).toBeLessThanOrEqual(3);
    expect(changes.reservationsClosed.map((k) => k[3])).toEqual([
      "shop.open19",
      "shop.open18",
      "shop.open17",
    ]);
    const state = changes.skus[0] as SkuState;
    expect(state.positions.w1).toMatchObject({ onHand: 17, reserved: 17 });
    await store.close();
  });

  test("the batch's own changes replace the index's: new reservations count, released ones do not", async () => {
    const store = openStore();
    const ledger = new Ledger(ledgerView(store));
    ledger.applyStock("K", { type: "received", warehouse: "w1", qty: 100, ref: null }, at(1));
    for (let i = 0; i < 5; i++) ledger.applyLine(reserve("K", `shop.o${i}`, 2), at(10 + i));
    await commit(store, ledger);
    // In one batch: o4 (the newest committed) released, o9 reserved later than all, then a count 4 short.
    ledger.applyLine(release("K", "shop.o4"), at(20));
    ledger.applyLine(reserve("K", "shop.o9", 1), at(21));
    ledger.applyLine(reserve("K", "shop.o3", 2, 2), at(22)); // o3 re-reserved by a new attempt: now the newest
    // reserved: o0..o3 (8) + o9 (1) = 9; on hand 5 → 4 short: o3 (2, newest), o9 (1), o2 (2) lost.
    ledger.applyStock("K", { type: "counted", warehouse: "w1", onHand: 5, ref: null }, at(23));
    const lost = ledger
      .takeChanges()
      .results.filter((r) => r.kind === "lost")
      .map((r) => r.ref.orderKey);
    expect(lost).toEqual(["shop.o3", "shop.o9", "shop.o2"]);
    await store.close();
  });

  test("the index follows every change in the batch's transaction (a ledger without one scans)", async () => {
    const store = openStore();
    const ledger = new Ledger(ledgerView(store));
    ledger.applyStock("K", { type: "received", warehouse: "w1", qty: 10, ref: null }, at(1));
    ledger.applyLine(reserve("K", "shop.a", 3), at(2));
    ledger.applyLine(reserve("K", "shop.b", 3), at(3));
    await commit(store, ledger);
    ledger.applyLine(ship("K", "shop.a", 1, "s1"), at(4)); // partly shipped: still open, 2 units
    ledger.applyLine(release("K", "shop.b"), at(5));
    await commit(store, ledger);
    expect(store.range<number>("reservations").map((r) => [r.key, r.value])).toEqual([
      [["K", "w1", 2, "shop.a", "1"], 2],
    ]);
    expectConsistent(store);
    await store.close();
  });
});

const limits: RetentionLimits = { entriesRetentionMs: 100, allocationsRetentionMs: 50, returnWindowMs: 200 };

function allocation(a: Partial<Allocation>): Allocation {
  return {
    sku: "K",
    orderKey: "shop.o",
    lineId: "1",
    attempt: 1,
    warehouse: "w1",
    reserved: 0,
    shipped: 0,
    returned: 0,
    reservedAtMs: 0,
    changedAtMs: 0,
    eventIds: [],
    refusal: "",
    ...a,
  };
}

describe("retention rules (pure)", () => {
  test("a line is finished when nothing is reserved and nothing is out at the customer, or its return window passed", () => {
    expect(allocationFinished(allocation({ reserved: 1 }), 10_000, limits)).toBe(false);
    expect(allocationFinished(allocation({}), 0, limits)).toBe(true); // released or refused
    expect(allocationFinished(allocation({ shipped: 2, returned: 2 }), 0, limits)).toBe(true);
    expect(allocationFinished(allocation({ shipped: 2, returned: 1 }), 199, limits)).toBe(false);
    expect(allocationFinished(allocation({ shipped: 2, returned: 1 }), 200, limits)).toBe(true);
  });

  test("an allocation is removed only once finished and unchanged for allocationsRetentionMs", () => {
    expect(allocationExpired(allocation({ changedAtMs: 100 }), 149, limits)).toBe(false);
    expect(allocationExpired(allocation({ changedAtMs: 100 }), 150, limits)).toBe(true);
    expect(allocationExpired(allocation({ reserved: 1, changedAtMs: 0 }), 1e9, limits)).toBe(false);
    // Shipped, not returned: kept for the return window (longer than allocationsRetentionMs here).
    expect(allocationExpired(allocation({ shipped: 1, changedAtMs: 100 }), 250, limits)).toBe(false);
    expect(allocationExpired(allocation({ shipped: 1, changedAtMs: 100 }), 300, limits)).toBe(true);
    // Written before retention existed: its reservation time stands in.
    const { changedAtMs: _, ...old } = allocation({ reservedAtMs: 100 });
    expect(allocationExpired(old as Allocation, 149, limits)).toBe(false);
    expect(allocationExpired(old as Allocation, 150, limits)).toBe(true);
  });

  const entry = (version: number, atMs: number, onHand: number): LedgerEntry => ({
    sku: "K",
    version,
    warehouse: "w1",
    type: "received",
    delta: { onHand },
    ref: null,
    cause: "received",
    seq: version,
    atMs,
  });

  test("entries are removed oldest first, up to the first within retention, at most the budget", () => {
    const entries = [entry(1, 0, 5), entry(2, 10, 3), entry(3, 500, 1), entry(4, 20, 1)];
    const all = compactEntries(emptyHistory("K"), entries, 200, limits, 100);
    // Version 4 is old too, but after one within retention: the remaining entries stay a gap-free tail.
    expect(all.removed).toEqual([1, 2]);
    expect(all.history).toMatchObject({
      version: 2,
      atMs: 10,
      entriesRemoved: 2,
      positions: { w1: { onHand: 8 } },
    });
    const one = compactEntries(emptyHistory("K"), entries, 200, limits, 1);
    expect(one.removed).toEqual([1]);
    expect(compactEntries(emptyHistory("K"), entries, 200, limits, 0).removed).toEqual([]);
  });

  test("a snapshot folds only the next version of its own SKU", () => {
    expect(() => foldIntoHistory(emptyHistory("K"), entry(2, 0, 1))).toThrow();
    expect(() => foldIntoHistory(emptyHistory("X"), entry(1, 0, 1))).toThrow();
  });
});

const compaction: CompactionLimits = {
  entriesRetentionMs: 100,
  allocationsRetentionMs: 100,
  returnWindowMs: 300,
  compactionIntervalMs: 1,
  compactionRecordsMax: 50,
};

describe("compaction of a partition", () => {
  test("bounded passes remove old entries and finished allocations; the check and the entries still agree", async () => {
    const store = openStore();
    const ledger = new Ledger(ledgerView(store));
    ledger.applyStock("K", { type: "received", warehouse: "w1", qty: 1000, ref: null }, at(1));
    for (let i = 0; i < 300; i++) {
      ledger.applyLine(reserve("K", `shop.o${i}`, 1), at(2 + i));
      if (i % 2 === 0) ledger.applyLine(ship("K", `shop.o${i}`, 1, `s${i}`), at(2 + i));
      else ledger.applyLine(release("K", `shop.o${i}`), at(2 + i));
    }
    ledger.applyLine(reserve("K", "shop.open", 5), at(400));
    await commit(store, ledger);
    const entriesBefore = rows(store, "entries");
    const compactor = new LedgerCompactor(store, compaction);
    const now = 420; // entries before 320 and allocations changed before 320 (released; shipped ones wait till 120+300)
    let passes = 0;
    for (;;) {
      const pass = compactor.pass(now);
      expect(pass.recordsRead).toBeLessThanOrEqual(4 * compaction.compactionRecordsMax);
      expect(pass.entriesRemoved).toBeLessThanOrEqual(compaction.compactionRecordsMax);
      expect(pass.allocationsRemoved).toBeLessThanOrEqual(compaction.compactionRecordsMax);
      await store.commit({ ops: pass.ops, outbox: [], streamSeqLastApplied: null });
      expectConsistent(store);
      passes++;
      if (pass.entriesRemoved === 0 && pass.allocationsRemoved === 0 && pass.skusWrapped) break;
      expect(passes).toBeLessThan(100);
    }
    expect(passes).toBeGreaterThan(5); // never one long pass
    const history = store.get<SkuHistory>("history", "K") as SkuHistory;
    const remaining = store.range<LedgerEntry>("entries").map((r) => r.value);
    expect(remaining.every((e) => e.atMs > now - compaction.entriesRetentionMs)).toBe(true);
    expect(history.version + remaining.length).toBe((store.get<SkuState>("skus", "K") as SkuState).version);
    expect(history.entriesRemoved).toBe(entriesBefore - remaining.length);
    // The 150 released lines went; of the 150 shipped ones, those changed at ≤ 120 (return window 300
    // passed: o0, o2 … o118, 60 lines) went too, the other 90 wait for it; the open one stays.
    expect(rows(store, "allocations")).toBe(91);
    expect(history.allocationsRemoved).toBe(210);

    // Past the return window the shipped lines go too; a late return is refused, a late ship changes nothing.
    for (let i = 0; i < 20; i++) {
      const pass = compactor.pass(1000);
      await store.commit({ ops: pass.ops, outbox: [], streamSeqLastApplied: null });
    }
    expect(rows(store, "allocations")).toBe(1);
    expect(rows(store, "entries")).toBe(0);
    expectConsistent(store);
    const late = new Ledger(ledgerView(store));
    expect(late.applyLine(ret("K", "shop.o0", 1, "r-late"), at(1001))).toBe("line_history_compacted");
    expect(late.applyLine(ship("K", "shop.o0", 1, "s0"), at(1001))).toBeNull();
    expect(late.applyLine(release("K", "shop.o1"), at(1001))).toBeNull();
    expect(late.takeChanges().entries).toEqual([]);
    // A new attempt of a compacted line reserves afresh.
    late.applyLine(reserve("K", "shop.o1", 2, 2), at(1002));
    expect(late.takeChanges().results).toMatchObject([{ kind: "reserved", qty: 2, attempt: 2 }]);
    await store.close();
  });

  test("the check finds a snapshot or an index that does not match", async () => {
    const store = openStore();
    const ledger = new Ledger(ledgerView(store));
    ledger.applyStock("K", { type: "received", warehouse: "w1", qty: 10, ref: null }, at(1));
    ledger.applyLine(reserve("K", "shop.a", 3), at(2));
    await commit(store, ledger);
    const pass = new LedgerCompactor(store, compaction).pass(1000);
    await store.commit({ ops: pass.ops, outbox: [], streamSeqLastApplied: null });
    expect(expectConsistent(store).entriesCompacted).toBe(2);
    const h = store.get<SkuHistory>("history", "K") as SkuHistory;
    const w1 = h.positions.w1 as Position;
    await store.commit({
      ops: [
        { op: "put", table: "history", key: "K", value: { ...h, positions: { w1: { ...w1, onHand: 9 } } } },
        { op: "delete", table: "reservations", key: ["K", "w1", 2, "shop.a", "1"] },
      ],
      outbox: [],
      streamSeqLastApplied: null,
    });
    const check = checkLedgerPartition(store, 0);
    expect(check.mismatches).toEqual([{ sku: "K", warehouse: "w1", field: "onHand", stored: 10, folded: 9 }]);
    expect(check.reservationMismatches).toEqual([
      { sku: "K", warehouse: "w1", reserved: 3, indexed: 0, rowsWrong: 0 },
    ]);
    expect(isConsistent(check)).toBe(false);
    await store.close();
  });

  test("at most one pass per compactionIntervalMs", async () => {
    const store = openStore();
    const compactor = new LedgerCompactor(store, { ...compaction, compactionIntervalMs: 1000 });
    const ledger = new Ledger(ledgerView(store));
    ledger.applyStock("K", { type: "received", warehouse: "w1", qty: 1, ref: null }, at(1));
    await commit(store, ledger);
    expect(compactor.step(5000).length).toBeGreaterThan(0);
    expect(compactor.step(5999)).toEqual([]);
    await store.close();
  });
});

// ---- positions = snapshot + remaining entries, after random compactions ---------------------------------

type Step =
  | { kind: "received"; sku: string; w: string; qty: number }
  | { kind: "counted"; sku: string; w: string; onHand: number }
  | { kind: "reserve"; sku: string; line: number; qty: number; w: string }
  | { kind: "ship"; sku: string; line: number; qty: number }
  | { kind: "return"; sku: string; line: number; qty: number }
  | { kind: "release"; sku: string; line: number }
  | { kind: "commit" }
  /** A compaction pass, `waitMs` after the step before. */
  | { kind: "compact"; waitMs: number };

const skuArb = fc.constantFrom("A", "B");
const wArb = fc.constantFrom("w1", "w2");
const lineArb = fc.integer({ min: 0, max: 5 });
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    kind: fc.constant("received" as const),
    sku: skuArb,
    w: wArb,
    qty: fc.integer({ min: 1, max: 9 }),
  }),
  fc.record({
    kind: fc.constant("counted" as const),
    sku: skuArb,
    w: wArb,
    onHand: fc.integer({ min: 0, max: 12 }),
  }),
  fc.record({
    kind: fc.constant("reserve" as const),
    sku: skuArb,
    line: lineArb,
    qty: fc.integer({ min: 1, max: 4 }),
    w: wArb,
  }),
  fc.record({
    kind: fc.constant("ship" as const),
    sku: skuArb,
    line: lineArb,
    qty: fc.integer({ min: 1, max: 4 }),
  }),
  fc.record({
    kind: fc.constant("return" as const),
    sku: skuArb,
    line: lineArb,
    qty: fc.integer({ min: 1, max: 4 }),
  }),
  fc.record({ kind: fc.constant("release" as const), sku: skuArb, line: lineArb }),
  fc.constant({ kind: "commit" as const }),
  fc.record({ kind: fc.constant("compact" as const), waitMs: fc.integer({ min: 1, max: 20 }) }),
  fc.record({ kind: fc.constant("compact" as const), waitMs: fc.integer({ min: 1, max: 20 }) }),
);

/** Positions of a SKU as the store proves them: its snapshot plus the fold of its remaining entries. */
function provenPositions(store: PartitionStore, sku: string): Record<string, Position> {
  const history = store.get<SkuHistory>("history", sku);
  const remaining = store
    .range<LedgerEntry>("entries", { start: [sku], end: [`${sku}\u0000`] })
    .map((r) => r.value);
  const out: Record<string, Position> = {};
  for (const [w, p] of Object.entries(history?.positions ?? {})) out[w] = { ...p };
  for (const [w, d] of foldEntries(remaining)) {
    const p = out[w] ?? { onHand: 0, reserved: 0, damaged: 0, qualityControl: 0, safetyStock: 0 };
    for (const f of Object.keys(d) as Array<keyof Position>) p[f] += d[f];
    out[w] = p;
  }
  return out;
}

const nonZero = (positions: Record<string, Position>) =>
  Object.fromEntries(Object.entries(positions).filter(([, p]) => Object.values(p).some((v) => v !== 0)));

test("positions = snapshot + remaining entries, and equal a twin that never compacts (random sequences)", async () => {
  let removedTotal = 0;
  // The return window is longer than any run: only lines with nothing out at the customer are removed, so
  // compaction must change no outcome, only what is kept.
  const retention: CompactionLimits = {
    entriesRetentionMs: 8,
    allocationsRetentionMs: 12,
    returnWindowMs: 1e12,
    compactionIntervalMs: 1,
    compactionRecordsMax: 1,
  };
  await fc.assert(
    fc.asyncProperty(
      fc.array(stepArb, { minLength: 10, maxLength: 80, size: "max" }),
      fc.integer({ min: 1, max: 8 }),
      async (steps, budget) => {
        const compacted = openStore();
        // One compactor per run, as per partition: its cursors carry on from pass to pass.
        const compactor = new LedgerCompactor(compacted, { ...retention, compactionRecordsMax: budget });
        const twin = openStore();
        const a = new Ledger(ledgerView(compacted));
        const b = new Ledger(ledgerView(twin));
        const attempts = new Map<string, number>();
        let clock = 0;
        let eventNo = 0;
        try {
          for (const s of steps) {
            clock += 3;
            const input = at(clock);
            if (s.kind === "commit" || s.kind === "compact") {
              if (s.kind === "compact") clock += s.waitMs; // time passes between passes too
              const pass = s.kind === "compact" ? compactor.pass(clock) : null;
              removedTotal += (pass?.entriesRemoved ?? 0) + (pass?.allocationsRemoved ?? 0);
              const before = pass?.ops ?? [];
              await commit(compacted, a, before);
              await commit(twin, b);
              for (const sku of ["A", "B"]) {
                const state = compacted.get<SkuState>("skus", sku);
                expect(nonZero(provenPositions(compacted, sku))).toEqual(nonZero(state?.positions ?? {}));
                expect(state?.positions ?? {}).toEqual(twin.get<SkuState>("skus", sku)?.positions ?? {});
              }
              expectConsistent(compacted);
              expect(rows(compacted, "entries")).toBeLessThanOrEqual(rows(twin, "entries"));
              expect(rows(compacted, "allocations")).toBeLessThanOrEqual(rows(twin, "allocations"));
              continue;
            }
            if (s.kind === "received" || s.kind === "counted") {
              const c =
                s.kind === "received"
                  ? ({ type: "received", warehouse: s.w, qty: s.qty, ref: null } as const)
                  : ({ type: "counted", warehouse: s.w, onHand: s.onHand, ref: null } as const);
              expect(a.applyStock(s.sku, c, input)).toEqual(b.applyStock(s.sku, c, input));
              continue;
            }
            const line = `${s.sku}/${s.line}`;
            const orderKey = `shop.o${s.line}`;
            let attempt = attempts.get(line) ?? 0;
            let request: LineRequest;
            if (s.kind === "reserve") {
              attempt += 1; // each line's attempts only rise: no duplicates from the order stage here
              attempts.set(line, attempt);
              request = reserve(s.sku, orderKey, s.qty, attempt, [s.w, s.w === "w1" ? "w2" : "w1"]);
            } else if (s.kind === "ship") request = ship(s.sku, orderKey, s.qty, `s${eventNo++}`, attempt);
            else if (s.kind === "return") request = ret(s.sku, orderKey, s.qty, `r${eventNo++}`, attempt);
            else request = release(s.sku, orderKey, attempt);
            a.applyLine(request, input);
            b.applyLine(request, input);
          }
        } finally {
          a.takeChanges();
          b.takeChanges();
          await compacted.close();
          await twin.close();
        }
      },
    ),
    { numRuns: 150, seed: Number(process.env.SLUICE_HISTORY_SEED ?? 20_240_611) },
  );
  expect(removedTotal).toBeGreaterThan(500); // the runs did compact
}, 120_000);
