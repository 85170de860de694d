import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { InvariantError } from "../../src/domain/assert.ts";
import {
  type AtsItem,
  type ChannelBudget,
  type PendingRow,
  type PendingState,
  type RefusedPair,
  type StockRequest,
  StockSync,
  stateFromRows,
  TokenBucket,
  type TokenBucketState,
} from "../../src/domain/sync/index.ts";

const windowMs = 200;
const roomy: ChannelBudget = { requestsPerSecond: 1000, itemsPerRequestMax: 100, burstRequestsMax: 1000 };

function sync(budget: ChannelBudget | ((c: string) => ChannelBudget) = roomy, pendingCountMax = 100_000) {
  return new StockSync(
    { flushWindowMs: windowMs, pendingCountMax },
    typeof budget === "function" ? budget : () => budget,
  );
}

const item = (sku: string, ats: number, version: number, atMs = 0): AtsItem => ({ sku, ats, version, atMs });
const skus = (requests: StockRequest[]) => requests.flatMap((r) => r.items.map((i) => i.sku));

describe("coalescing", () => {
  test("1,000 updates to one SKU inside one window leave one item with the last value", () => {
    const s = sync();
    for (let v = 1; v <= 1000; v++) s.offer("shop", item("A", 1000 - v, v), ((v - 1) * (windowMs - 1)) / 999);
    expect(s.pendingCount).toBe(1);
    expect(s.take(windowMs - 1)).toEqual([]);
    expect(s.take(windowMs)).toEqual([{ channel: "shop", items: [item("A", 0, 1000)] }]);
    expect(s.pendingCount).toBe(0);
    expect(s.counters().shop).toMatchObject({ offered: 1000, coalesced: 999, published: 1, requests: 1 });
  });

  test("the window counts from the first offer: a SKU updated all the time still goes out every window", () => {
    const s = sync();
    const sent: number[] = [];
    for (let t = 0, v = 1; t <= 1000; t += 10, v++) {
      s.offer("shop", item("A", v, v), t);
      if (s.take(t).length > 0) sent.push(t);
    }
    expect(sent).toEqual([200, 410, 620, 830]);
  });

  test("an older version never replaces a newer one; the same version does (the rules changed)", () => {
    const s = sync();
    expect(s.offer("shop", item("A", 5, 7), 0)).toBe("queued");
    expect(s.offer("shop", item("A", 9, 6), 1)).toBe("stale");
    expect(s.offer("shop", item("A", 4, 7), 2)).toBe("coalesced");
    expect(s.take(windowMs)[0]?.items).toEqual([item("A", 4, 7)]);
    expect(s.counters().shop?.stale).toBe(1);
  });

  test("channels are independent: the same SKU waits once per channel", () => {
    const s = sync();
    s.offer("shop", item("A", 1, 1), 0);
    s.offer("web", item("A", 2, 1), 0);
    expect(s.pendingCount).toBe(2);
    expect(s.take(windowMs)).toEqual([
      { channel: "shop", items: [item("A", 1, 1)] },
      { channel: "web", items: [item("A", 2, 1)] },
    ]);
  });
});

describe("urgent values", () => {
  test("a zero crossing does not wait for the window and goes first", () => {
    const s = sync();
    s.offer("shop", item("A", 5, 1), 0);
    s.offer("shop", item("B", 5, 1), 10);
    s.offer("shop", item("C", 0, 1), 20, true);
    expect(s.nextDueMs(20)).toBe(20);
    const out = s.take(20);
    // Urgent first; the request that goes anyway takes the waiting values along (oldest first).
    expect(skus(out)).toEqual(["C", "A", "B"]);
  });

  test("with one item per request and one token, the zero crossing is what goes", () => {
    const s = sync({ requestsPerSecond: 1, itemsPerRequestMax: 1, burstRequestsMax: 1 });
    for (let i = 0; i < 5; i++) s.offer("shop", item(`S${i}`, 3, 1), i);
    s.offer("shop", item("Z", 0, 1), 500, true);
    expect(skus(s.take(500))).toEqual(["Z"]);
    expect(skus(s.take(1499))).toEqual([]);
    expect(skus(s.take(1500))).toEqual(["S0"]);
  });

  test("a waiting value that becomes urgent keeps its value newest and moves ahead", () => {
    const s = sync({ requestsPerSecond: 1, itemsPerRequestMax: 1, burstRequestsMax: 1 });
    s.offer("shop", item("A", 3, 1), 0);
    s.offer("shop", item("B", 3, 1), 1);
    s.offer("shop", item("B", 0, 2), 2, true);
    expect(s.take(2)).toEqual([{ channel: "shop", items: [item("B", 0, 2)] }]);
    expect(s.pendingCount).toBe(1);
  });

  test("urgency stays until sent, even if a later value is positive again", () => {
    const s = sync();
    s.offer("shop", item("A", 0, 1), 0, true);
    s.offer("shop", item("A", 2, 2), 1);
    expect(s.take(1)).toEqual([{ channel: "shop", items: [item("A", 2, 2)] }]);
  });
});

describe("rate budget", () => {
  test("requests carry at most itemsPerRequestMax items, oldest first", () => {
    const s = sync({ requestsPerSecond: 100, itemsPerRequestMax: 3, burstRequestsMax: 10 });
    for (let i = 0; i < 8; i++) s.offer("shop", item(`S${i}`, i, 1), i);
    const out = s.take(1000);
    expect(out.map((r) => r.items.length)).toEqual([3, 3, 2]);
    expect(skus(out)).toEqual(["S0", "S1", "S2", "S3", "S4", "S5", "S6", "S7"]);
  });

  test("a throttled channel never exceeds its budget over a simulated minute and ends with the newest values", () => {
    const budget = { requestsPerSecond: 2, itemsPerRequestMax: 10, burstRequestsMax: 1 };
    const s = sync(budget);
    const rnd = fc.sample(fc.integer({ min: 0, max: 99 }), 6000);
    const last = new Map<string, AtsItem>();
    const sentAt: number[] = [];
    const seen = new Map<string, AtsItem>();
    const record = (t: number, out: StockRequest[]) => {
      for (const r of out) {
        sentAt.push(t);
        expect(r.items.length).toBeLessThanOrEqual(budget.itemsPerRequestMax);
        for (const i of r.items) {
          expect(i.version).toBeGreaterThan(seen.get(i.sku)?.version ?? 0);
          seen.set(i.sku, i);
        }
      }
    };
    for (let t = 0, v = 1; t < 60_000; t += 10, v++) {
      const sku = `S${rnd[t / 10]}`;
      const it = item(sku, v % 7, v, t);
      s.offer("shop", it, t, v % 7 === 0);
      last.set(sku, it);
      const due = s.nextDueMs(t);
      if (due !== null && due <= t) record(t, s.take(t));
    }
    // Any span of T ms holds at most burst + rps × T requests.
    for (let i = 0; i < sentAt.length; i++) {
      for (let j = i; j < sentAt.length; j++) {
        const spanMs = (sentAt[j] as number) - (sentAt[i] as number);
        expect(j - i + 1).toBeLessThanOrEqual(
          budget.burstRequestsMax + (budget.requestsPerSecond * spanMs) / 1000 + 1e-6,
        );
      }
    }
    expect(sentAt.length).toBeGreaterThanOrEqual(115); // the budget was used, not starved
    expect(s.counters().shop?.throttledMs).toBeGreaterThan(0);
    // Drain: every SKU ends with its newest value.
    let t = 60_000;
    for (let due = s.nextDueMs(t); due !== null; due = s.nextDueMs(t)) {
      t = due;
      record(t, s.take(t));
    }
    expect(s.pendingCount).toBe(0);
    for (const [sku, it] of last) expect(seen.get(sku)).toEqual(it);
  });

  test("nextDueMs: null when idle, the window's end, now for urgent, the next token when throttled", () => {
    const s = sync({ requestsPerSecond: 0.5, itemsPerRequestMax: 1, burstRequestsMax: 1 });
    expect(s.nextDueMs(0)).toBeNull();
    s.offer("shop", item("A", 1, 1), 100);
    expect(s.nextDueMs(150)).toBe(100 + windowMs);
    expect(s.take(300)).toHaveLength(1);
    s.offer("shop", item("B", 0, 1), 400, true);
    expect(s.nextDueMs(400)).toBe(2300); // 0.5 request/s: the next token 2 s after 300
    expect(s.take(2299)).toEqual([]);
    expect(s.take(2300)).toHaveLength(1);
  });

  test("a fractional budget (a channel's 1 request/s over 4 partitions) sends one request every 4 s", () => {
    const s = sync({ requestsPerSecond: 0.25, itemsPerRequestMax: 1, burstRequestsMax: 1 });
    for (let i = 0; i < 4; i++) s.offer("shop", item(`S${i}`, 1, 1), 0, true);
    const at: number[] = [];
    for (let t = 0; t <= 12_000; t += 1) if (s.take(t).length > 0) at.push(t);
    expect(at).toEqual([0, 4000, 8000, 12000]);
  });

  test("a budget changed at run time applies at the next take", () => {
    let budget: ChannelBudget = { requestsPerSecond: 0.1, itemsPerRequestMax: 1, burstRequestsMax: 1 };
    const s = sync(() => budget);
    for (let i = 0; i < 3; i++) s.offer("shop", item(`S${i}`, 1, 1), 0, true);
    expect(s.take(0)).toHaveLength(1);
    expect(s.take(1000)).toHaveLength(0);
    budget = { requestsPerSecond: 10, itemsPerRequestMax: 5, burstRequestsMax: 1 };
    // 0.1 token at 1000 ms, then 10 tokens/s: one token by 1090 ms (tokens are not granted backwards).
    expect(s.take(1089)).toHaveLength(0);
    expect(skus(s.take(1090))).toEqual(["S1", "S2"]);
  });
});

describe("bounds and state", () => {
  test("beyond pendingCountMax a new pair is refused, a waiting one still takes its newest value", () => {
    const s = sync(roomy, 2);
    expect(s.offer("shop", item("A", 1, 1), 0)).toBe("queued");
    expect(s.offer("web", item("A", 1, 1), 0)).toBe("queued");
    expect(s.offer("shop", item("B", 1, 1), 0)).toBe("refused_full");
    expect(s.offer("shop", item("A", 2, 2), 0)).toBe("coalesced");
    expect(s.pendingCount).toBe(2);
    expect(s.counters().shop?.refusedFull).toBe(1);
    s.take(windowMs);
    expect(s.offer("shop", item("B", 1, 1), windowMs)).toBe("queued");
  });

  test("exportState is plain data and importState continues exactly where it stopped", () => {
    const budget = { requestsPerSecond: 1, itemsPerRequestMax: 2, burstRequestsMax: 2 };
    const a = sync(budget);
    for (let i = 0; i < 7; i++) a.offer(i % 2 ? "web" : "shop", item(`S${i}`, i, i + 1), i * 10, i === 5);
    a.take(100);
    const state = JSON.parse(JSON.stringify(a.exportState()));
    const b = sync(budget);
    b.importState(state);
    expect(b.pendingCount).toBe(a.pendingCount);
    expect(b.exportState()).toEqual(a.exportState());
    for (const t of [150, 1100, 2500, 4000]) expect(b.take(t)).toEqual(a.take(t));
    expect(() => b.importState(state)).toThrow(/importState needs an empty StockSync/);
  });

  test("an exported state that breaks the rules is refused", () => {
    const s = sync();
    s.offer("shop", item("A", 1, 1), 10);
    const state = s.exportState();
    const dup = structuredClone(state);
    const first = dup.channels[0]?.waiting[0] as PendingState;
    dup.channels[0]?.waiting.push({ ...first });
    expect(() => sync().importState(dup)).toThrow(/pair waits once/);
    const future = structuredClone(state);
    (future.channels[0]?.waiting[0] as { firstOfferMs: number }).firstOfferMs = 99;
    expect(() => sync().importState(future)).toThrow(/not after the exported clock/);
    const negative = structuredClone(state);
    (negative.channels[0]?.waiting[0] as { ats: number }).ats = -1;
    expect(() => sync().importState(negative)).toThrow(InvariantError);
  });

  test("invalid offers and limits stop the process (assertions)", () => {
    const s = sync();
    expect(() => s.offer("", item("A", 1, 1), 0)).toThrow(/channel id is not empty/);
    expect(() => s.offer("shop", item("", 1, 1), 0)).toThrow(/sku id is not empty/);
    expect(() => s.offer("shop", item("A", -1, 1), 0)).toThrow(/ATS is a whole number ≥ 0/);
    expect(() => s.offer("shop", item("A", 1.5, 1), 0)).toThrow(/ATS is a whole number/);
    expect(() => s.offer("shop", item("A", 1, 0.5), 0)).toThrow(/version is a whole number/);
    expect(() => s.offer("shop", item("A", 1, 1, Number.NaN), 0)).toThrow(/atMs is a number/);
    expect(() => new StockSync({ flushWindowMs: -1, pendingCountMax: 1 }, () => roomy)).toThrow(
      /flushWindowMs/,
    );
    expect(() => new StockSync({ flushWindowMs: 1, pendingCountMax: 0 }, () => roomy)).toThrow(
      /pendingCountMax/,
    );
    const bad = sync({ requestsPerSecond: 0, itemsPerRequestMax: 1, burstRequestsMax: 1 });
    expect(() => bad.offer("shop", item("A", 1, 1), 0)).toThrow(/requestsPerSecond is positive/);
    const noDepth = sync({ requestsPerSecond: 1, itemsPerRequestMax: 1, burstRequestsMax: 0.5 });
    expect(() => noDepth.offer("shop", item("A", 1, 1), 0)).toThrow(/burstRequestsMax ≥ 1/);
    const noItems = sync({ requestsPerSecond: 1, itemsPerRequestMax: 0, burstRequestsMax: 1 });
    expect(() => noItems.offer("shop", item("A", 1, 1), 0)).toThrow(/itemsPerRequestMax ≥ 1/);
  });

  test("a clock that steps back neither sends early nor adds tokens", () => {
    const s = sync({ requestsPerSecond: 1, itemsPerRequestMax: 1, burstRequestsMax: 1 });
    s.offer("shop", item("A", 1, 1), 1000, true);
    s.offer("shop", item("B", 1, 1), 1000, true);
    expect(s.take(1000)).toHaveLength(1);
    // Stepped back 500 ms: no token is added, and the next is 1 s from the earlier time, not 1.5 s.
    expect(s.take(500)).toHaveLength(0);
    expect(s.take(1499)).toHaveLength(0);
    expect(s.take(1500)).toHaveLength(1);
  });
});

describe("token bucket", () => {
  test("holds at most its depth and refills at its rate", () => {
    const b = new TokenBucket(2, 3);
    expect([b.tryTake(0), b.tryTake(0), b.tryTake(0), b.tryTake(0)]).toEqual([true, true, true, false]);
    expect(b.msUntilToken(0)).toBe(500);
    expect(b.tryTake(499)).toBe(false);
    expect(b.tryTake(500)).toBe(true);
    expect(b.tokensAt(100_000)).toBe(3);
    expect(() => new TokenBucket(0, 1)).toThrow(/rate is a positive number/);
    expect(() => new TokenBucket(1, 0)).toThrow(/depth holds at least one token/);
    expect(() => new TokenBucket(1, 2, { tokens: 3, refilledAtMs: 0 })).toThrow(/tokens lie in/);
  });
});

describe("nothing is dropped (property)", () => {
  const op = fc.oneof(
    fc.record({
      kind: fc.constant("offer" as const),
      channel: fc.constantFrom("shop", "web", "tiktok"),
      sku: fc.constantFrom("A", "B", "C", "D", "E", "F"),
      ats: fc.integer({ min: 0, max: 20 }),
      urgent: fc.boolean(),
      /** The same version (rules changed) or a newer one: the ledger's per-SKU versions never go back. */
      versionStep: fc.integer({ min: 0, max: 3 }),
      dtMs: fc.integer({ min: 0, max: 300 }),
    }),
    fc.record({ kind: fc.constant("take" as const), dtMs: fc.integer({ min: 0, max: 2000 }) }),
    fc.record({ kind: fc.constant("restart" as const), dtMs: fc.integer({ min: 0, max: 300 }) }),
  );
  const budgetArb = fc.record({
    requestsPerSecond: fc.double({ min: 0.05, max: 20, noNaN: true }),
    itemsPerRequestMax: fc.integer({ min: 1, max: 4 }),
    burstRequestsMax: fc.integer({ min: 1, max: 3 }),
  });

  test("after draining, the last value taken per (channel, SKU) is the last accepted offer; versions never go back", () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), budgetArb, (ops, budget) => {
        let s = sync(budget);
        const store = new Store();
        const version = new Map<string, number>();
        const lastAccepted = new Map<string, AtsItem>();
        const lastTaken = new Map<string, AtsItem>();
        const collect = (out: StockRequest[]) => {
          for (const r of out) {
            expect(r.items.length).toBeGreaterThan(0);
            expect(r.items.length).toBeLessThanOrEqual(budget.itemsPerRequestMax);
            for (const i of r.items) {
              const k = `${r.channel}|${i.sku}`;
              expect(i.version).toBeGreaterThanOrEqual(lastTaken.get(k)?.version ?? 0);
              lastTaken.set(k, i);
            }
          }
        };
        let t = 0;
        for (const o of ops) {
          t += o.dtMs;
          if (o.kind === "take") {
            collect(s.take(t));
            store.write(s);
            continue;
          }
          if (o.kind === "restart") {
            s = store.load(budget); // a crash: only what was written survives
            continue;
          }
          const k = `${o.channel}|${o.sku}`;
          const v = (version.get(k) ?? 0) + o.versionStep;
          version.set(k, v);
          const it = item(o.sku, o.ats, v, t);
          const result = s.offer(o.channel, it, t, o.urgent);
          expect(result).not.toBe("refused_full");
          if (result !== "stale") lastAccepted.set(k, it);
          store.write(s);
        }
        for (let due = s.nextDueMs(t); due !== null; due = s.nextDueMs(t)) {
          expect(due).toBeGreaterThanOrEqual(t);
          t = due;
          const out = s.take(t);
          expect(out.length).toBeGreaterThan(0); // nextDueMs never wakes the caller for nothing
          collect(out);
        }
        expect(s.pendingCount).toBe(0);
        // Whatever was taken, throttled or restarted on the way: the last value taken is the last accepted.
        for (const [k, it] of lastAccepted) expect(lastTaken.get(k)).toEqual(it);
      }),
      { numRuns: 1000 },
    );
  });
});

/** A stand-in for the LMDB tables the ledger stage would keep: rows written from takeChanges, read back on start. */
class Store {
  rows = new Map<string, PendingRow>();
  buckets = new Map<string, TokenBucketState>();
  refused = new Map<string, RefusedPair>();
  clockMs = 0;
  write(s: StockSync): void {
    const c = s.takeChanges();
    this.clockMs = c.clockMs;
    for (const p of c.pending) {
      if (p.row === null) this.rows.delete(`${p.channel}|${p.sku}`);
      else this.rows.set(`${p.channel}|${p.sku}`, structuredClone(p.row));
    }
    for (const b of c.buckets) this.buckets.set(b.channel, { ...b.bucket });
    for (const r of c.refused) {
      const key = `${r.channel}|${r.sku}`;
      // Net changes only: a mark is set where none is stored and cleared where one is.
      expect(this.refused.has(key)).toBe(!r.refused);
      if (r.refused) this.refused.set(key, { channel: r.channel, sku: r.sku });
      else this.refused.delete(key);
    }
  }
  load(budget: ChannelBudget, pendingCountMax?: number): StockSync {
    const s = sync(budget, pendingCountMax);
    const buckets = [...this.buckets].map(([channel, bucket]) => ({ channel, bucket }));
    // Key order, as LMDB gives them back: not the order of refusal.
    const refused = [...this.refused.values()].sort((a, b) =>
      a.channel === b.channel ? (a.sku < b.sku ? -1 : 1) : a.channel < b.channel ? -1 : 1,
    );
    s.importState(stateFromRows(this.clockMs, [...this.rows.values()], buckets, refused));
    return s;
  }
}

// ---- issue #10, finding 9: a value refused because the queue is full is never lost ----------------------

describe("refused pairs (issue #10, finding 9)", () => {
  const pairs = (list: RefusedPair[]) => list.map((p) => `${p.channel}/${p.sku}`);

  test("a refused pair is marked until an offer of it is queued; refused again it keeps its place", () => {
    const s = sync(roomy, 2);
    s.offer("shop", item("A", 1, 1), 0);
    s.offer("shop", item("B", 1, 1), 0);
    expect(s.offer("shop", item("C", 5, 1), 0)).toBe("refused_full");
    expect(s.offer("web", item("A", 5, 1), 0)).toBe("refused_full");
    expect(s.offer("shop", item("D", 5, 1), 0)).toBe("refused_full");
    expect(s.offer("shop", item("C", 6, 2), 0)).toBe("refused_full");
    expect(s.refusedCount).toBe(3);
    expect(pairs(s.refusedPairs(10))).toEqual(["shop/C", "web/A", "shop/D"]);
    expect(pairs(s.refusedPairs(2))).toEqual(["shop/C", "web/A"]);
    expect(s.refusedPairs(0)).toEqual([]);
    // A waiting pair is never refused: its newest value replaces the waiting one.
    expect(s.offer("shop", item("A", 2, 2), 0)).toBe("coalesced");
    s.take(windowMs);
    expect(s.pendingCount).toBe(0);
    expect(s.offer("shop", item("C", 6, 2), windowMs)).toBe("queued");
    expect(pairs(s.refusedPairs(10))).toEqual(["web/A", "shop/D"]);
    s.forgetRefused("shop", "D");
    s.forgetRefused("shop", "nothing-here");
    expect(pairs(s.refusedPairs(10))).toEqual(["web/A"]);
    expect(s.counters().shop?.refusedFull).toBe(3);
  });

  test("takeChanges hands out each mark's net change once; hasChanges says whether there is one", () => {
    const s = sync(roomy, 1);
    expect(s.hasChanges()).toBe(false);
    s.offer("shop", item("A", 1, 1), 0);
    s.offer("shop", item("B", 1, 1), 0); // refused
    s.offer("shop", item("C", 1, 1), 0); // refused
    expect(s.hasChanges()).toBe(true);
    expect(s.takeChanges().refused).toEqual([
      { channel: "shop", sku: "B", refused: true },
      { channel: "shop", sku: "C", refused: true },
    ]);
    expect(s.hasChanges()).toBe(false);
    expect(s.takeChanges().refused).toEqual([]);
    s.offer("shop", item("B", 2, 2), 0); // refused again: no change
    expect(s.hasChanges()).toBe(false);
    s.take(windowMs);
    s.offer("shop", item("B", 2, 2), windowMs); // queued: the mark goes
    s.forgetRefused("shop", "C");
    s.offer("web", item("D", 1, 1), windowMs); // refused…
    s.forgetRefused("web", "D"); // …and forgotten in the same interval: nothing to store
    expect(s.takeChanges().refused).toEqual([
      { channel: "shop", sku: "B", refused: false },
      { channel: "shop", sku: "C", refused: false },
    ]);
  });

  test("marks are state: exported, imported, rebuilt from rows; a mark on a waiting pair is refused", () => {
    const s = sync(roomy, 1);
    s.offer("shop", item("A", 1, 1), 0);
    s.offer("web", item("B", 1, 1), 0);
    s.offer("shop", item("C", 1, 1), 0);
    const state = JSON.parse(JSON.stringify(s.exportState()));
    expect(state.refused).toEqual([
      { channel: "web", sku: "B" },
      { channel: "shop", sku: "C" },
    ]);
    const back = sync(roomy, 1);
    back.importState(state);
    expect(back.exportState()).toEqual(s.exportState());
    expect(back.refusedCount).toBe(2);
    expect(back.hasChanges()).toBe(false); // loaded marks are stored already

    const rows = stateFromRows(0, [], [], [{ channel: "web", sku: "B" }]);
    expect(rows.refused).toEqual([{ channel: "web", sku: "B" }]);
    const twice = structuredClone(state);
    twice.refused.push({ channel: "web", sku: "B" });
    expect(() => sync(roomy, 1).importState(twice)).toThrow(/refused once/);
    const waiting = structuredClone(state);
    waiting.refused.push({ channel: "shop", sku: "A" });
    expect(() => sync(roomy, 1).importState(waiting)).toThrow(/refused pair is not waiting/);
    const empty = structuredClone(state);
    empty.refused.push({ channel: "shop", sku: "" });
    expect(() => sync(roomy, 1).importState(empty)).toThrow(InvariantError);
  });

  // The ledger stage's contract, modelled: each pair's value is the caller's truth (the ledger's ATS, with its
  // version); the caller offers a pair when its truth changes and, with room, offers again the oldest refused
  // pairs with their truth. Crashes keep only what takeChanges handed out. Once nothing waits and nothing is
  // refused, the last value taken per pair is its truth: a full queue, a restart, or both, lose nothing.
  test("property: with a tiny queue and crashes, every pair ends on its newest value", () => {
    const op = fc.oneof(
      {
        weight: 6,
        arbitrary: fc.record({
          kind: fc.constant("change" as const),
          channel: fc.constantFrom("shop", "web"),
          sku: fc.constantFrom("A", "B", "C", "D", "E", "F", "G"),
          ats: fc.integer({ min: 0, max: 20 }),
          dtMs: fc.integer({ min: 0, max: 300 }),
        }),
      },
      {
        weight: 3,
        arbitrary: fc.record({ kind: fc.constant("take" as const), dtMs: fc.integer({ min: 0, max: 2000 }) }),
      },
      {
        weight: 2,
        arbitrary: fc.record({ kind: fc.constant("reoffer" as const), page: fc.integer({ min: 1, max: 3 }) }),
      },
      { weight: 1, arbitrary: fc.constant({ kind: "restart" as const }) },
    );
    const budget = { requestsPerSecond: 2, itemsPerRequestMax: 1, burstRequestsMax: 1 };
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), fc.integer({ min: 1, max: 3 }), (ops, cap) => {
        let s = sync(budget, cap);
        const store = new Store();
        const truth = new Map<string, AtsItem>();
        const lastTaken = new Map<string, AtsItem>();
        const collect = (out: StockRequest[]) => {
          for (const r of out) for (const i of r.items) lastTaken.set(`${r.channel}|${i.sku}`, i);
        };
        const reoffer = (page: number, t: number) => {
          const room = cap - s.pendingCount;
          for (const p of s.refusedPairs(Math.min(page, room))) {
            const it = truth.get(`${p.channel}|${p.sku}`) as AtsItem;
            expect(s.offer(p.channel, { ...it, atMs: t }, t)).toBe("queued");
          }
        };
        let t = 0;
        let version = 0;
        for (const o of ops) {
          if (o.kind === "restart") {
            s = store.load(budget, cap); // a crash: only what was written survives
            continue;
          }
          if (o.kind === "reoffer") reoffer(o.page, t);
          else if (o.kind === "take") {
            t += o.dtMs;
            collect(s.take(t));
          } else {
            t += o.dtMs;
            const it = item(o.sku, o.ats, ++version, t);
            truth.set(`${o.channel}|${o.sku}`, it);
            const result = s.offer(o.channel, it, t);
            expect(result).not.toBe("stale");
          }
          store.write(s);
        }
        for (let i = 0; i < 10_000 && (s.pendingCount > 0 || s.refusedCount > 0); i++) {
          reoffer(cap, t);
          t = Math.max(t, s.nextDueMs(t) ?? t);
          collect(s.take(t));
          store.write(s);
        }
        expect([s.pendingCount, s.refusedCount]).toEqual([0, 0]);
        expect(store.refused.size).toBe(0);
        for (const [k, it] of truth) {
          expect({ k, ats: lastTaken.get(k)?.ats, version: lastTaken.get(k)?.version }).toEqual({
            k,
            ats: it.ats,
            version: it.version,
          });
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe("incremental changes for a store", () => {
  test("takeChanges reports offered, replaced and taken pairs once; rows rebuild the same line", () => {
    const s = sync({ requestsPerSecond: 1, itemsPerRequestMax: 1, burstRequestsMax: 1 });
    s.offer("shop", item("A", 1, 1), 0);
    s.offer("shop", item("B", 1, 1), 5);
    s.offer("shop", item("A", 2, 2), 6);
    s.offer("web", item("C", 0, 1), 7, true);
    const first = s.takeChanges();
    expect(first.clockMs).toBe(7);
    expect(first.pending.map((p) => [p.channel, p.sku, p.row?.version, p.row?.urgent])).toEqual([
      ["shop", "A", 2, false],
      ["shop", "B", 1, false],
      ["web", "C", 1, true],
    ]);
    expect(s.takeChanges().pending).toEqual([]);
    expect(skus(s.take(7))).toEqual(["C"]);
    expect(s.takeChanges().pending).toEqual([{ channel: "web", sku: "C", row: null }]);
    const rows: PendingRow[] = [
      { channel: "shop", sku: "B", ats: 1, version: 1, atMs: 0, firstOfferMs: 5, urgent: false },
      { channel: "shop", sku: "A", ats: 2, version: 2, atMs: 0, firstOfferMs: 0, urgent: false },
    ];
    const state = stateFromRows(7, rows, s.takeChanges().buckets);
    expect(state.channels.find((c) => c.channel === "shop")?.waiting.map((p) => p.sku)).toEqual(["A", "B"]);
    const back = sync({ requestsPerSecond: 1, itemsPerRequestMax: 1, burstRequestsMax: 1 });
    back.importState(state);
    expect(back.take(1000)).toEqual(s.take(1000));
  });
});

describe("token bucket: a clock that steps back (issue #10, finding 8)", () => {
  test("after a step back of Δ the refill goes on from the earlier time: no stall of Δ", () => {
    const b = new TokenBucket(1, 1);
    expect(b.tryTake(10_000)).toBe(true);
    // The clock steps back 5 s: nothing is added, and the next token is 1 s away, not 6 s.
    expect(b.tryTake(5_000)).toBe(false);
    expect(b.msUntilToken(5_000)).toBe(1000);
    expect(b.tryTake(5_999)).toBe(false);
    expect(b.tryTake(6_000)).toBe(true);
  });

  test("msUntilToken alone sees the step back: waiting what it says is enough", () => {
    const b = new TokenBucket(2, 1);
    expect(b.tryTake(60_000)).toBe(true);
    const wait = b.msUntilToken(1_000);
    expect(wait).toBe(500);
    expect(b.tryTake(1_000 + wait)).toBe(true);
  });

  test("a step back adds no token, and tokens kept are kept", () => {
    const b = new TokenBucket(1, 3);
    expect([b.tryTake(0), b.tryTake(0)]).toEqual([true, true]);
    expect(b.tokensAt(-5_000)).toBe(1);
    expect(b.tryTake(-5_000)).toBe(true);
    expect(b.tryTake(-5_000)).toBe(false);
    expect(b.tokensAt(-4_500)).toBe(0.5);
  });

  test("property: with any clock, waiting msUntilToken always gets a token, and takes never exceed depth + rate × forward time", () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0.1, max: 50, noNaN: true }),
        fc.integer({ min: 1, max: 5 }),
        fc.array(fc.record({ stepMs: fc.integer({ min: -100_000, max: 5_000 }), wait: fc.boolean() }), {
          maxLength: 60,
        }),
        (rate, depth, steps) => {
          const b = new TokenBucket(rate, depth);
          let now = 1_000_000;
          let forwardMs = 0;
          let taken = 0;
          const read = (t: number) => {
            forwardMs += Math.max(0, t - now);
            now = t;
          };
          for (const s of steps) {
            read(now + s.stepMs);
            if (s.wait) {
              const wait = b.msUntilToken(now);
              // At most one token interval: a step back never adds its Δ to the wait.
              expect(wait).toBeLessThanOrEqual(Math.ceil(1000 / rate));
              read(now + wait);
              expect(b.tryTake(now)).toBe(true);
              taken++;
            } else if (b.tryTake(now)) taken++;
          }
          expect(taken).toBeLessThanOrEqual(depth + (rate * forwardMs) / 1000 + 1e-6);
        },
      ),
      { numRuns: 500 },
    );
  });
});
