import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  type Allocation,
  type CapacityDay,
  capacityDayOf,
  chunkUnits,
  dayMs,
  Ledger,
  type LedgerChanges,
  type LedgerView,
  type LineRequest,
  lowWaterUnits,
  type SkuState,
  type WarehouseLoad,
} from "../../src/domain/ledger/index.ts";

// Warehouse capacity in the pure ledger (docs/capacity.md): P partitions share one pool per warehouse and day.
// Each partition reserves only within the capacity it holds; chunks are claimed from the pool first (KV) and
// held once committed with a batch; a crash between the two loses the chunk, never doubles it.

const limited = new Set(["w1", "w2"]);
const rule = { limited: (w: string) => limited.has(w) };
const day0 = 20_000 * dayMs; // some UTC midnight

/** A partition's committed state: what LMDB would hold. */
class Store {
  skus = new Map<string, SkuState>();
  allocations = new Map<string, Allocation>();
  loads = new Map<string, WarehouseLoad>();
  capacity = new Map<string, CapacityDay>();
  view(): LedgerView {
    return {
      getSku: (sku) => this.skus.get(sku),
      getAllocation: (sku, o, l) => this.allocations.get(`${sku}|${o}|${l}`),
      getLoad: (w) => this.loads.get(w),
      allocationsOf: (sku) => [...this.allocations.values()].filter((a) => a.sku === sku),
      getCapacity: (day, w) => this.capacity.get(`${day}|${w}`),
    };
  }
  commit(c: LedgerChanges): void {
    for (const s of c.skus) this.skus.set(s.sku, s);
    for (const a of c.allocations) this.allocations.set(`${a.sku}|${a.orderKey}|${a.lineId}`, a);
    for (const l of c.loads) this.loads.set(l.warehouse, l);
    for (const r of c.capacity) this.capacity.set(`${r.day}|${r.warehouse}`, r);
  }
}

/** A request without its line's identity (distributed over the kinds). */
type Req = LineRequest extends infer R
  ? R extends LineRequest
    ? Omit<R, "ref" | "sku" | "attempt">
    : never
  : never;

type Line = { partition: number; sku: string; orderKey: string; lineId: string; attempt: number };

/** The reference: per line, where and on which day its current reservation was made, what it holds and shipped. */
type Counted = { warehouse: string; day: number; reserved: number; shipped: number };

class Sim {
  stores: Store[];
  ledgers: Ledger[];
  /** Units claimed in the pool per `${day}|${w}`: never past capacity. */
  pool = new Map<string, number>();
  counted = new Map<string, Counted>();
  nowMs = day0 + 1000;
  seq = 1;
  capacityRefusals = 0;

  constructor(
    readonly P: number,
    readonly cap: Record<string, number>,
  ) {
    this.stores = Array.from({ length: P }, () => new Store());
    this.ledgers = this.stores.map((s) => new Ledger(s.view(), {}, rule));
    for (let p = 0; p < P; p++)
      for (const w of ["w1", "w2", "w3"])
        this.batch(p, (l) =>
          l.applyStock(`S${p}`, { type: "received", warehouse: w, qty: 10_000, ref: null }, this.input()),
        );
  }

  input() {
    return { seq: this.seq++, atMs: this.nowMs };
  }

  get day() {
    return capacityDayOf(this.nowMs);
  }

  /** One batch on a partition: commit (the reference follows) or crash (nothing of it stays). */
  batch(p: number, run: (l: Ledger) => void, crash = false): LedgerChanges {
    const ledger = this.ledgers[p] as Ledger;
    run(ledger);
    const changes = ledger.takeChanges();
    ledger.evict();
    if (crash) {
      this.ledgers[p] = new Ledger((this.stores[p] as Store).view(), {}, rule);
      return changes;
    }
    const store = this.stores[p] as Store;
    for (const a of changes.allocations) this.follow(store, a);
    store.commit(changes);
    for (const r of changes.results)
      if (r.kind === "refused" && r.code === "capacity_full") this.capacityRefusals++;
    return changes;
  }

  /** The reference model, from the allocation before and after the batch (independent of capacityDay). */
  private follow(store: Store, a: Allocation): void {
    const key = `${a.sku}|${a.orderKey}|${a.lineId}`;
    const before = store.allocations.get(key);
    const c = this.counted.get(key);
    const fresh =
      before === undefined || before.attempt !== a.attempt || (before.reserved === 0 && a.reserved > 0);
    if (fresh && a.reserved > 0) {
      this.counted.set(key, {
        warehouse: a.warehouse,
        day: capacityDayOf(a.reservedAtMs),
        reserved: a.reserved,
        shipped: 0,
      });
      return;
    }
    if (c === undefined || before === undefined) return;
    const shipped = a.shipped - before.shipped;
    this.counted.set(key, { ...c, reserved: a.reserved, shipped: c.shipped + Math.max(0, shipped) });
  }

  /** A claim: the pool first (a compare-and-set in KV), then the chunk committed with a batch, or lost. */
  claim(p: number, w: string, want: number, crash: boolean, fail: boolean): void {
    if (fail) return; // the KV request failed: nothing claimed, nothing held
    const key = `${this.day}|${w}`;
    const claimed = this.pool.get(key) ?? 0;
    const units = chunkUnits((this.cap[w] as number) - claimed, this.P, want, {
      chunkUnitsMin: 1,
      chunkShareFraction: 0.5,
      lowWaterShareFraction: 0.25,
    });
    if (units === 0) return;
    this.pool.set(key, claimed + units);
    this.batch(p, (l) => l.grantCapacity(w, this.day, units), crash);
  }

  line(p: number, n: number): Line {
    return { partition: p, sku: `S${p}`, orderKey: `o${n}`, lineId: "1", attempt: 1 };
  }

  request(l: Line, r: Req, crash = false) {
    const ref = { orderKey: l.orderKey, lineId: l.lineId };
    return this.batch(
      l.partition,
      (ledger) =>
        ledger.applyLine({ ...r, ref, sku: l.sku, attempt: l.attempt } as LineRequest, this.input()),
      crash,
    );
  }

  /** Units counted today at a warehouse, by the reference, per partition. */
  countedToday(w: string, p?: number): number {
    let n = 0;
    for (const [key, c] of this.counted) {
      if (p !== undefined && !key.startsWith(`S${p}|`)) continue;
      if (c.warehouse === w && c.day === this.day) n += c.reserved + c.shipped;
    }
    return n;
  }

  check(): void {
    for (const w of limited) {
      const claimed = this.pool.get(`${this.day}|${w}`) ?? 0;
      expect(claimed).toBeLessThanOrEqual(this.cap[w] as number);
      let held = 0;
      for (let p = 0; p < this.P; p++) {
        const row = (this.stores[p] as Store).capacity.get(`${this.day}|${w}`);
        held += row?.held ?? 0;
        // Exact accounting: the partition's row counts what the reference counts.
        expect(row?.used ?? 0).toBe(this.countedToday(w, p));
      }
      expect(held).toBeLessThanOrEqual(claimed); // a crash loses a claimed chunk, never doubles one
      // The invariant of issue #14: units reserved or shipped today at w never pass capacityPerDay.
      expect(this.countedToday(w)).toBeLessThanOrEqual(this.cap[w] as number);
    }
  }
}

const step = fc.record({
  kind: fc.constantFrom("claim", "reserve", "reserve", "reserve", "release", "ship", "reject", "day"),
  partition: fc.nat(),
  n: fc.integer({ min: 0, max: 15 }),
  qty: fc.integer({ min: 1, max: 6 }),
  candidates: fc.shuffledSubarray(["w1", "w2", "w3"], { minLength: 1 }),
  w: fc.constantFrom("w1", "w2"),
  crash: fc.boolean(),
  fail: fc.boolean(),
  mostly: fc.integer({ min: 0, max: 9 }),
});

describe("warehouse capacity in the ledger", () => {
  test("P partitions sharing a pool never count more than capacityPerDay at a warehouse (random sequences)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 0, max: 25 }),
        fc.integer({ min: 0, max: 25 }),
        fc.array(step, { minLength: 1, maxLength: 120 }),
        (P, capW1, capW2, steps) => {
          const sim = new Sim(P, { w1: capW1, w2: capW2 });
          const attempts = new Map<string, number>();
          for (const s of steps) {
            const p = s.partition % P;
            const line = sim.line(p, s.n);
            line.attempt = attempts.get(`${p}|${s.n}`) ?? 1;
            // Crashes and failures are rarer than successes.
            const crash = s.crash && s.mostly < 2;
            const fail = s.fail && s.mostly < 2;
            switch (s.kind) {
              case "claim":
                sim.claim(p, s.w, s.qty, crash, fail);
                break;
              case "reserve": {
                // A new attempt each time: a re-route releases the old reservation first.
                line.attempt += 1;
                attempts.set(`${p}|${s.n}`, line.attempt);
                const changes = sim.request(
                  line,
                  { kind: "reserve", qty: s.qty, candidates: s.candidates },
                  crash,
                );
                // A refused candidate for capacity asks for a claim at once (the stage's rule).
                for (const short of changes.capacityShort)
                  sim.claim(p, short.warehouse, short.units, false, fail);
                break;
              }
              case "release":
                sim.request(line, { kind: "release" }, crash);
                break;
              case "ship":
                sim.request(line, { kind: "ship", qty: s.qty, eventId: `e${sim.seq}` }, crash);
                break;
              case "reject":
                sim.request(line, { kind: "reject", stockMissing: false }, crash);
                break;
              case "day":
                sim.nowMs += (s.qty * dayMs) / 4; // a quarter to 1.5 days
                break;
            }
            sim.check();
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  test("a line that does not fit the held capacity takes its next candidate; all out of capacity → capacity_full", () => {
    const sim = new Sim(1, { w1: 10, w2: 10 });
    sim.claim(0, "w1", 2, false, false);
    const held = sim.stores[0]?.capacity.get(`${sim.day}|w1`)?.held ?? 0;
    expect(held).toBeGreaterThanOrEqual(2);
    const big = sim.request(sim.line(0, 1), { kind: "reserve", qty: held + 1, candidates: ["w1", "w3"] });
    expect(big.results[0]).toMatchObject({ kind: "reserved", warehouse: "w3" }); // w3: no enforced capacity
    expect(big.capacityShort).toEqual([{ warehouse: "w1", day: sim.day, units: held + 1, lines: 1 }]);
    const none = sim.request(sim.line(0, 2), { kind: "reserve", qty: held + 1, candidates: ["w1", "w2"] });
    expect(none.results[0]).toMatchObject({ kind: "refused", code: "capacity_full" });
    // Out of stock at one, out of capacity at the other: still capacity_full (the stock was there).
    const mixed = sim.request(sim.line(0, 3), { kind: "reserve", qty: 50_000, candidates: ["w3"] });
    expect(mixed.results[0]).toMatchObject({ kind: "refused", code: "insufficient_available" });
  });

  test("released units are reusable the same day by the partition; shipped units keep counting", () => {
    const sim = new Sim(1, { w1: 3, w2: 0 });
    sim.claim(0, "w1", 3, false, false);
    expect(sim.pool.get(`${sim.day}|w1`)).toBe(3);
    const a = sim.line(0, 1);
    const b = sim.line(0, 2);
    const c = sim.line(0, 3);
    expect(sim.request(a, { kind: "reserve", qty: 2, candidates: ["w1"] }).results[0]?.kind).toBe("reserved");
    expect(sim.request(b, { kind: "reserve", qty: 2, candidates: ["w1"] }).results[0]).toMatchObject({
      code: "capacity_full",
    });
    sim.request(a, { kind: "ship", qty: 1, eventId: "s1" });
    sim.request(a, { kind: "release" }); // the unshipped unit comes back; the shipped one keeps counting
    expect(sim.stores[0]?.capacity.get(`${sim.day}|w1`)).toMatchObject({ held: 3, used: 1 });
    b.attempt = 2;
    expect(sim.request(b, { kind: "reserve", qty: 2, candidates: ["w1"] }).results[0]?.kind).toBe("reserved");
    expect(sim.request(c, { kind: "reserve", qty: 1, candidates: ["w1"] }).results[0]).toMatchObject({
      code: "capacity_full",
    });
    // The pool is spent; nothing more can be claimed today.
    sim.claim(0, "w1", 1, false, false);
    expect(sim.pool.get(`${sim.day}|w1`)).toBe(3);
    sim.check();
  });

  test("across a day boundary the count starts again: nothing held, the old day's reservations not counted", () => {
    const sim = new Sim(1, { w1: 2, w2: 0 });
    sim.claim(0, "w1", 2, false, false);
    const a = sim.line(0, 1);
    expect(sim.request(a, { kind: "reserve", qty: 2, candidates: ["w1"] }).results[0]?.kind).toBe("reserved");
    sim.nowMs += dayMs;
    sim.check();
    const b = sim.line(0, 2);
    // A new day holds nothing until a chunk is claimed for it.
    expect(sim.request(b, { kind: "reserve", qty: 1, candidates: ["w1"] }).results[0]).toMatchObject({
      code: "capacity_full",
    });
    sim.claim(0, "w1", 1, false, false);
    b.attempt = 2;
    expect(sim.request(b, { kind: "reserve", qty: 1, candidates: ["w1"] }).results[0]?.kind).toBe("reserved");
    // Releasing yesterday's reservation gives nothing to today (it counted on its own day).
    const before = sim.stores[0]?.capacity.get(`${sim.day}|w1`);
    sim.request(a, { kind: "release" });
    expect(sim.stores[0]?.capacity.get(`${sim.day}|w1`)).toEqual(before);
    expect(before?.used).toBe(1);
    sim.check();
  });

  test("a crash between the claim and the commit loses the chunk: held < claimed, never more", () => {
    const sim = new Sim(2, { w1: 6, w2: 0 });
    sim.claim(0, "w1", 3, true, false);
    expect(sim.pool.get(`${sim.day}|w1`)).toBe(3);
    expect(sim.stores[0]?.capacity.get(`${sim.day}|w1`)).toBeUndefined();
    sim.claim(1, "w1", 3, false, false);
    expect(
      sim.request(sim.line(1, 1), { kind: "reserve", qty: 3, candidates: ["w1"] }).results[0]?.kind,
    ).toBe("reserved");
    expect(
      sim.request(sim.line(0, 1), { kind: "reserve", qty: 1, candidates: ["w1"] }).results[0],
    ).toMatchObject({ code: "capacity_full" });
    sim.check();
  });

  test("chunks: an even share of what is left, at least the line's units, never more than is left", () => {
    const r = { chunkUnitsMin: 1, chunkShareFraction: 0.5, lowWaterShareFraction: 0.25 };
    expect(chunkUnits(20, 4, 0, r)).toBe(3);
    expect(chunkUnits(2, 4, 0, r)).toBe(1);
    expect(chunkUnits(2, 4, 5, r)).toBe(2);
    expect(chunkUnits(0, 4, 1, r)).toBe(0);
    expect(chunkUnits(1_000_000, 8, 0, r)).toBe(62_500);
    expect(lowWaterUnits(20, 4, r)).toBe(2);
    expect(lowWaterUnits(0, 4, r)).toBe(1);
  });
});
