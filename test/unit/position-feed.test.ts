import { afterAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import type { Config } from "../../src/config/index.ts";
import {
  emptyPosition,
  type Position,
  type SkuState,
  type WarehouseLoad,
} from "../../src/domain/ledger/index.ts";
import { type Network, parseNetwork } from "../../src/domain/network/index.ts";
import { idRecord, ownEntries } from "../../src/domain/own.ts";
import { Instrumentation } from "../../src/instrumentation/index.ts";
import { LedgerApplier, ledgerTables } from "../../src/stages/ledger/applier.ts";
import {
  decodeFeed,
  encodeFeed,
  type FeedSku,
  positionFeedSubject,
} from "../../src/stages/ledger/position-feed.ts";
import { FeedView, LedgerReadView, RoutingPort } from "../../src/stages/order/routing-view.ts";
import { PartitionStore } from "../../src/store/index.ts";
import { pack } from "../../src/stream/codec.ts";
import type { InboundMessage } from "../../src/stream/partition-runner.ts";
import { skuPartition, subjects } from "../../src/stream/subjects.ts";
import { tempDir, testConfig } from "../helpers/index.ts";

// The position feed (src/stages/ledger/position-feed.ts) and the views folded from it
// (src/stages/order/routing-view.ts): the wire form, splitting under a byte bound, garbage, folding by
// version, the byte-bounded cache, and a ledger partition over a real LMDB store publishing into a view that
// must end equal to what LedgerReadView reads. Over a real nats-server: test/integration/routing-feed.test.ts.

const KiB = 1024;
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const position = (onHand: number, reserved = 0): Position => ({ ...emptyPosition(), onHand, reserved });
const state = (sku: string, version: number, positions: Record<string, Position>): SkuState => ({
  sku,
  version,
  positions: idRecord(Object.entries(positions)),
});
const load = (warehouse: string, reserved: number, shippedDay = 0, shippedUnits = 0): WarehouseLoad => ({
  warehouse,
  reserved,
  shippedDay,
  shippedUnits,
});

/** Every SKU of every message, in order, and the loads of each message (null where it carries none). */
function decodeAll(messages: Uint8Array[], partition: number, P: number) {
  const skus: FeedSku[] = [];
  const loads: Array<WarehouseLoad[] | null> = [];
  for (const data of messages) {
    const d = decodeFeed(positionFeedSubject(partition), data, P);
    if (!d.ok) throw new Error(d.detail);
    skus.push(...d.update.skus);
    loads.push(d.update.loads);
  }
  return { skus, loads };
}

const plain = (s: { sku: string; version: number; positions: SkuState["positions"] }) => ({
  sku: s.sku,
  version: s.version,
  positions: Object.fromEntries(ownEntries(s.positions)),
});

// Ids as they come: plain, encoded in subjects, non-ASCII, and the one msgpack would mangle as a map key.
const idArb = fc.oneof(
  fc.constantFrom("w1", "SKU-1", "__proto__", "constructor", "é-ü", "a.b c", "日本"),
  fc.string({ minLength: 1, maxLength: 12 }),
);
const units = fc.integer({ min: 0, max: 1_000_000_000_000 });
const positionArb: fc.Arbitrary<Position> = fc.record({
  onHand: units,
  reserved: units,
  damaged: units,
  qualityControl: units,
  safetyStock: units,
});
const stateArb = fc
  .record({
    sku: idArb,
    version: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
    positions: fc.uniqueArray(fc.tuple(idArb, positionArb), { selector: ([w]) => w, maxLength: 6 }),
  })
  .map((s): SkuState => ({ sku: s.sku, version: s.version, positions: idRecord(s.positions) }));
const loadArb = fc
  .tuple(
    idArb,
    fc.integer({ min: 0, max: 1e9 }),
    fc.integer({ min: 0, max: 50_000 }),
    fc.integer({ min: 0, max: 1e9 }),
  )
  .map(([w, r, d, u]) => load(w, r, d, u));

describe("the wire form", () => {
  test("what is encoded decodes to the same SKUs, versions, positions and (non-zero) loads", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(stateArb, { selector: (s) => s.sku, maxLength: 30 }),
        fc.option(fc.uniqueArray(loadArb, { selector: (l) => l.warehouse, maxLength: 8 })),
        fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
        (skus, loads, seq) => {
          const e = encodeFeed(0, seq, skus, loads, 256 * KiB);
          expect(e.skusTooLarge).toBe(0);
          expect(e.loadsLeftOut).toBe(0);
          const got = decodeAll(e.messages, 0, 1);
          expect(got.skus.map(plain)).toEqual(skus.map(plain));
          const nonZero = (loads ?? []).filter((l) => l.reserved > 0 || l.shippedUnits > 0);
          expect(got.loads[0] ?? null).toEqual(loads === null ? null : nonZero);
          for (const data of e.messages) {
            const d = decodeFeed(positionFeedSubject(0), data, 1);
            expect(d.ok && d.update.seq).toBe(seq);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  test("an id of '__proto__' stays that id through the wire, never a prototype", () => {
    const proto: SkuState = {
      sku: "__proto__",
      version: 3,
      positions: idRecord([["__proto__", position(5)]]),
    };
    const e = encodeFeed(0, 1, [proto], null, 64 * KiB);
    const [s] = decodeAll(e.messages, 0, 1).skus;
    expect(ownEntries(s?.positions)).toEqual([["__proto__", position(5)]]);
    expect(Object.getPrototypeOf(s?.positions)).toBe(Object.prototype);
  });

  test("nothing to say is no message; loads alone are one", () => {
    expect(encodeFeed(0, 1, [], null, 64 * KiB).messages).toHaveLength(0);
    const loadsOnly = encodeFeed(0, 1, [], [load("w1", 3)], 64 * KiB);
    expect(decodeAll(loadsOnly.messages, 0, 1).loads).toEqual([[load("w1", 3)]]);
  });
});

describe("splitting under a byte bound", () => {
  const manySkus = (n: number, warehouses: number) =>
    Array.from({ length: n }, (_, i) =>
      state(
        `SKU-${i}`,
        i + 1,
        Object.fromEntries(Array.from({ length: warehouses }, (_, w) => [`wh-${w}`, position(i, w)])),
      ),
    );

  test.each([
    [20_000, 3, 256 * KiB],
    [20_000, 3, 16 * KiB],
    [2_000, 40, 64 * KiB],
    [500, 1, 1 * KiB],
  ])("%d SKUs × %d warehouses under %d bytes: every message fits, every SKU once, in order", (n, w, max) => {
    const skus = manySkus(n, w);
    const loads = Array.from({ length: 50 }, (_, i) => load(`wh-${i}`, i + 1));
    const e = encodeFeed(0, 7, skus, loads, max);
    expect(e.messages.length).toBeGreaterThan(1);
    for (const m of e.messages) expect(m.length).toBeLessThanOrEqual(max);
    const got = decodeAll(e.messages, 0, 1);
    expect(got.skus.map((s) => s.sku)).toEqual(skus.map((s) => s.sku));
    expect(got.skus.map(plain)).toEqual(skus.map(plain));
    // The load table goes whole in the first message (it replaces what a view holds), never in the others.
    expect(got.loads.slice(1).every((l) => l === null)).toBe(true);
    expect((got.loads[0] ?? []).length + e.loadsLeftOut).toBe(50);
  });

  test("a SKU larger than the target goes alone up to the hard bound; past it, left out and counted", () => {
    const huge = state(
      "HUGE",
      1,
      Object.fromEntries(Array.from({ length: 300 }, (_, w) => [`w-${"x".repeat(40)}-${w}`, position(1)])),
    );
    const skus = [state("A", 1, { w1: position(1) }), huge, state("B", 1, {})];
    const alone = encodeFeed(0, 1, skus, null, 4 * KiB, 64 * KiB);
    expect(alone.skusTooLarge).toBe(0);
    expect(alone.messages.map((m) => m.length > 4 * KiB)).toEqual([true, false]);
    expect(decodeAll(alone.messages, 0, 1).skus.map((s) => s.sku)).toEqual(["HUGE", "A", "B"]);
    const left = encodeFeed(0, 1, skus, null, 4 * KiB, 8 * KiB);
    expect(left.skusTooLarge).toBe(1);
    expect(decodeAll(left.messages, 0, 1).skus.map((s) => s.sku)).toEqual(["A", "B"]);
  });

  test("a load table too large for one message keeps its largest rows; rows of zero load never go", () => {
    const loads = [
      ...Array.from({ length: 400 }, (_, i) => load(`warehouse-${"y".repeat(30)}-${i}`, i + 1)),
      load("empty", 0, 5, 0),
    ];
    const e = encodeFeed(0, 1, [], loads, 4 * KiB);
    const [rows] = decodeAll(e.messages, 0, 1).loads;
    expect(rows?.length).toBeGreaterThan(10);
    expect((rows?.length ?? 0) + e.loadsLeftOut).toBe(400);
    const kept = Math.min(...(rows ?? []).map((l) => l.reserved));
    const dropped = loads.filter((l) => l.reserved > 0 && !rows?.some((r) => r.warehouse === l.warehouse));
    expect(dropped.every((l) => l.reserved <= kept)).toBe(true);
    expect(rows?.some((r) => r.warehouse === "empty")).toBe(false);
    expect(e.messages[0]?.length).toBeLessThanOrEqual(4 * KiB);
  });
});

describe("garbage on the feed", () => {
  const P = 4;
  const skuIn = (p: number) => {
    for (let i = 0; ; i++) if (skuPartition(`G-${i}`, P) === p) return `G-${i}`;
  };
  const valid = (p: number) =>
    encodeFeed(p, 5, [state(skuIn(p), 2, { w1: position(4) })], [load("w1", 1)], 64 * KiB);

  test("random bytes never throw: counted as malformed, the view unchanged", () => {
    const view = new FeedView({ partitionCount: P, bytesMax: 1024 * KiB });
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), fc.integer({ min: 0, max: P - 1 }), (bytes, p) => {
        expect(() => view.receive(positionFeedSubject(p), bytes)).not.toThrow();
      }),
      { numRuns: 2000 },
    );
    expect(view.stats.malformed).toBe(view.stats.messages);
    expect(view.size.skus).toBe(0);
  });

  test("well-formed msgpack of any other shape is malformed too", () => {
    const view = new FeedView({ partitionCount: P, bytesMax: 1024 * KiB });
    fc.assert(
      fc.property(fc.anything(), (value) => {
        expect(view.receive(positionFeedSubject(1), pack(value))).toBe(false);
      }),
      { numRuns: 1000 },
    );
    const shapes: unknown[] = [
      { v: 2, p: 1, seq: 1, skus: [] },
      { v: 1, p: 2, seq: 1, skus: [] },
      { v: 1, p: 1, seq: -1, skus: [] },
      { v: 1, p: 1, seq: 1.5, skus: [] },
      { v: 1, p: 1, seq: 1, skus: {} },
      { v: 1, p: 1, seq: 1, skus: [[skuIn(1), 1]] },
      { v: 1, p: 1, seq: 1, skus: [[skuIn(1), 1, [["w1", 1, 2, 3, 4]]]] },
      { v: 1, p: 1, seq: 1, skus: [[skuIn(1), 1, [["w1", 1, 2, 3, 4, -5]]]] },
      { v: 1, p: 1, seq: 1, skus: [[skuIn(1), 1, [["", 1, 2, 3, 4, 5]]]] },
      { v: 1, p: 1, seq: 1, skus: [[skuIn(2), 1, []]] },
      { v: 1, p: 1, seq: 1, skus: [], loads: [["w1", 1, 2]] },
      { v: 1, p: 1, seq: 1, skus: [], loads: [["w1", 1, 2, Number.POSITIVE_INFINITY]] },
    ];
    for (const s of shapes) expect(view.receive(positionFeedSubject(1), pack(s))).toBe(false);
    expect(view.size.skus).toBe(0);
    expect(view.loadsOf(1)).toEqual([]);
  });

  test("a valid message on a wrong subject is malformed", () => {
    const view = new FeedView({ partitionCount: P, bytesMax: 1024 * KiB });
    const data = valid(1).messages[0] as Uint8Array;
    for (const subject of [
      positionFeedSubject(2),
      positionFeedSubject(P),
      "sluice.view.position.x",
      "sluice.view.position.01x",
      "sluice.view.stock.1",
      "",
    ])
      expect(view.receive(subject, data)).toBe(false);
    expect(view.receive(positionFeedSubject(1), data)).toBe(true);
    expect(view.known(skuIn(1))).toBe(true);
  });

  test("a valid message with bytes flipped never throws; what folds is well-formed", () => {
    const data = valid(3).messages[0] as Uint8Array;
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(data.length - 1), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 4,
        }),
        (flips) => {
          const view = new FeedView({ partitionCount: P, bytesMax: 1024 * KiB });
          const bad = data.slice();
          for (const [i, b] of flips) bad[i] = b;
          expect(() => view.receive(positionFeedSubject(3), bad)).not.toThrow();
          for (const l of view.loadsOf(3)) expect(Number.isSafeInteger(l.reserved)).toBe(true);
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe("folding", () => {
  const msg = (skus: SkuState[], loads: WarehouseLoad[] | null = null, seq = 1) =>
    encodeFeed(0, seq, skus, loads, 64 * KiB).messages[0] as Uint8Array;

  test("a newer version replaces, the same version applies again, an older one is dropped", () => {
    const view = new FeedView({ partitionCount: 1, bytesMax: 1024 * KiB });
    expect(view.known("S")).toBe(false);
    view.receive(positionFeedSubject(0), msg([state("S", 5, { w1: position(5) })]));
    view.receive(positionFeedSubject(0), msg([state("S", 4, { w1: position(4) })]));
    expect(view.stock("S")).toEqual(idRecord([["w1", position(5)]]));
    expect(view.stats.skusStale).toBe(1);
    view.receive(positionFeedSubject(0), msg([state("S", 6, { w1: position(6), w2: position(1) })]));
    expect(view.stock("S")).toEqual(
      idRecord([
        ["w1", position(6)],
        ["w2", position(1)],
      ]),
    );
    // A SKU known with no position anywhere is known and empty: not the same as unknown.
    view.receive(positionFeedSubject(0), msg([state("EMPTY", 1, {})]));
    expect(view.known("EMPTY")).toBe(true);
    expect(view.stock("EMPTY")).toEqual({});
  });

  test("a load table replaces the partition's whole table unless older", () => {
    const view = new FeedView({ partitionCount: 1, bytesMax: 1024 * KiB });
    view.receive(positionFeedSubject(0), msg([], [load("w1", 3), load("w2", 1)], 10));
    view.receive(positionFeedSubject(0), msg([], [load("w1", 9)], 9));
    expect(view.loadsOf(0)).toEqual([load("w1", 3), load("w2", 1)]);
    expect(view.stats.loadsStale).toBe(1);
    view.receive(positionFeedSubject(0), msg([], [load("w1", 4)], 10));
    expect(view.loadsOf(0)).toEqual([load("w1", 4)]);
    // A message without loads leaves them as they are.
    view.receive(positionFeedSubject(0), msg([state("S", 1, {})], null, 11));
    expect(view.loadsOf(0)).toEqual([load("w1", 4)]);
  });

  test("bounded in estimated bytes: the oldest go first and become unknown", () => {
    const bytesMax = 64 * KiB;
    const view = new FeedView({ partitionCount: 1, bytesMax });
    const skus = Array.from({ length: 5000 }, (_, i) =>
      state(`SKU-${i}`, 1, { w1: position(i), w2: position(1) }),
    );
    for (const data of encodeFeed(0, 1, skus, null, 16 * KiB).messages)
      view.receive(positionFeedSubject(0), data);
    expect(view.size.bytes).toBeLessThanOrEqual(bytesMax);
    expect(view.size.skus).toBeGreaterThan(100);
    expect(view.size.skus).toBeLessThan(5000);
    expect(view.known("SKU-0")).toBe(false);
    expect(view.stock("SKU-0")).toBeUndefined();
    expect(view.known("SKU-4999")).toBe(true);
  });

  test("partitions the view does not fold are ignored", () => {
    const P = 4;
    const view = new FeedView({ partitionCount: P, bytesMax: 1024 * KiB, folds: (p) => p !== 2 });
    const sku = Array.from({ length: 100 }, (_, i) => `F-${i}`).find(
      (s) => skuPartition(s, P) === 2,
    ) as string;
    const data = encodeFeed(2, 1, [state(sku, 1, {})], [load("w1", 1)], 64 * KiB).messages[0] as Uint8Array;
    expect(view.receive(positionFeedSubject(2), data)).toBe(false);
    expect(view.stats.ignored).toBe(1);
    expect(view.known(sku)).toBe(false);
    expect(view.loadsOf(2)).toEqual([]);
  });
});

// ---- a ledger partition over real LMDB, publishing into views --------------------------------------------

const network = ((): Network => {
  const parsed = parseNetwork(
    { warehouses: ["w1", "w2", "w3"].map((id) => ({ id, channels: ["*"] })), channels: [{ id: "*" }] },
    "v1",
  );
  if (!parsed.ok) throw new Error(parsed.detail);
  return parsed.value;
})();

const encoder = new TextEncoder();

/** One ledger partition (P = 1) whose feed goes to `sent`; its clock is the test's. */
class FeedPartition {
  readonly config: Config;
  readonly store: PartitionStore;
  readonly applier: LedgerApplier;
  readonly sent: Array<{ subject: string; data: Uint8Array }> = [];
  nowMs = 1_000_000;
  seq = 0;
  failPublish = false;

  constructor(routing: Record<string, unknown> = {}) {
    const dir = tempDir("position-feed");
    dirs.push(dir);
    this.config = testConfig("nats://127.0.0.1:4222", dir, { streams: { partitionCount: 1 }, routing });
    this.store = PartitionStore.open(
      join(dir, "ledger-0"),
      { stage: "ledger", partition: 0, partitionCount: 1 },
      { mapBytesMax: 256 * 1024 * 1024, tables: ledgerTables },
    );
    this.applier = new LedgerApplier(
      0,
      this.config,
      this.store,
      new Instrumentation(),
      () => network,
      () => this.nowMs,
      (subject, data) => {
        if (this.failPublish) throw new Error("connection closed");
        this.sent.push({ subject, data });
      },
    );
  }

  private message(subject: string, data: Uint8Array): InboundMessage {
    this.seq += 1;
    return { stream: "SLUICE_LEDGER", seq: this.seq, subject, data, headers: undefined, atMs: this.nowMs };
  }

  received(sku: string, warehouse: string, qty: number): InboundMessage {
    const body = { type: "received", warehouse, qty };
    return this.message(subjects.stockPartitioned(0, sku), encoder.encode(JSON.stringify(body)));
  }

  reserve(sku: string, orderId: string, qty: number, candidates: string[]): InboundMessage {
    const request = {
      kind: "reserve",
      ref: { orderKey: `shop.${orderId}`, lineId: "1" },
      sku,
      qty,
      candidates,
      attempt: 1,
    };
    return this.message(subjects.ledgerCommands(0, 0), pack({ items: [request] }));
  }

  /** One batch as the runner does it: apply, commit, then `committed()`. */
  async batch(messages: InboundMessage[]): Promise<void> {
    const write = this.applier.apply(messages);
    const last = messages.at(-1) as InboundMessage;
    await this.store.commit({
      ...write,
      streamSeqLastApplied: last.seq,
      streamSeqLastAppliedAtMs: last.atMs,
    });
    this.applier.committed();
  }

  /** An idle tick as the runner does it (its write, if any, committed before `committed()`). */
  async tick(): Promise<void> {
    const write = this.applier.tick(this.nowMs);
    if (write === null) return;
    await this.store.commit({ ...write, streamSeqLastApplied: null });
    this.applier.committed();
  }

  /** Delivers what was sent since the last call to each view. */
  deliver(...views: FeedView[]): number {
    const out = this.sent.splice(0);
    for (const m of out) for (const v of views) v.receive(m.subject, m.data);
    return out.length;
  }

  skus(): SkuState[] {
    return this.store.range<SkuState>("skus").map((r) => r.value);
  }
}

/** The view agrees with LMDB: every SKU's positions, and every warehouse's load. */
function expectSame(view: FeedView, p: FeedPartition) {
  const lmdb = new LedgerReadView(
    () => [p.store],
    1,
    0,
    () => p.nowMs,
  );
  for (const s of p.skus()) {
    expect(view.known(s.sku)).toBe(true);
    expect(view.stock(s.sku)).toEqual(lmdb.stock(s.sku) as SkuState["positions"]);
  }
  const port = new RoutingPort(
    () => [p.store],
    view,
    () => false,
    1,
    0,
    () => p.nowMs,
  );
  expect(port.snapshot()).toEqual(lmdb.snapshot());
}

describe("a ledger partition's feed", () => {
  test("after each commit the view holds what LMDB holds: positions, versions and loads", async () => {
    const p = new FeedPartition({ loadRefreshMs: 10 });
    const view = new FeedView({ partitionCount: 1, bytesMax: 8 * 1024 * KiB });
    await p.batch([p.received("A", "w1", 10), p.received("B", "w2", 5), p.received("A", "w2", 3)]);
    p.deliver(view);
    expectSame(view, p);
    p.nowMs += 20;
    await p.batch([p.reserve("A", "o1", 4, ["w1", "w2"]), p.reserve("B", "o2", 5, ["w2"])]);
    p.deliver(view);
    expectSame(view, p);
    expect(view.loadsOf(0)).toEqual([load("w1", 4), load("w2", 5)]);
    // A batch that changes nothing publishes nothing (the first full pass is over: A and B are two SKUs).
    p.nowMs += 20;
    await p.batch([p.reserve("A", "o1", 4, ["w1", "w2"])]);
    expect(p.deliver(view)).toBe(0);
  });

  test("loads go out at most every loadRefreshMs; a tick sends what waited", async () => {
    const p = new FeedPartition({ loadRefreshMs: 1000 });
    const view = new FeedView({ partitionCount: 1, bytesMax: 8 * 1024 * KiB });
    await p.batch([p.received("A", "w1", 100)]);
    p.deliver(view);
    await p.batch([p.reserve("A", "o1", 1, ["w1"])]);
    p.deliver(view);
    // The first load table went with the first batch; this one waits for its refresh interval.
    expect(view.loadsOf(0)).toEqual([]);
    expect(view.stock("A")).toEqual(idRecord([["w1", position(100, 1)]]));
    p.nowMs += 999;
    await p.tick();
    p.deliver(view);
    expect(view.loadsOf(0)).toEqual([]);
    p.nowMs += 1;
    await p.tick();
    p.deliver(view);
    expect(view.loadsOf(0)).toEqual([load("w1", 1)]);
  });

  test("a view started late converges through the full pass, a bounded step at a time", async () => {
    const perStep = 50;
    const fullMs = 10_000;
    const p = new FeedPartition({ feedFullMs: fullMs, feedFullSkusPerTickMax: perStep });
    const early = new FeedView({ partitionCount: 1, bytesMax: 8 * 1024 * KiB });
    for (let b = 0; b < 6; b++) {
      await p.batch(
        Array.from({ length: 40 }, (_, i) => p.received(`S-${b}-${i}`, `w${(i % 3) + 1}`, i + 1)),
      );
    }
    const passStartedAtMs = p.nowMs;
    await p.batch([p.reserve("S-0-1", "o1", 1, ["w2"])]);
    // The reservation's load waits for routing.loadRefreshMs (100 ms) after the last load table sent.
    p.nowMs += 100;
    await p.tick();
    p.deliver(early);
    expectSame(early, p);

    const late = new FeedView({ partitionCount: 1, bytesMax: 8 * 1024 * KiB });
    // Within fullMs of the last pass's start nothing is republished.
    p.nowMs = passStartedAtMs + fullMs - 1;
    await p.tick();
    expect(p.deliver(late)).toBe(0);
    p.nowMs += 1;
    const passes = p.applier.feed?.stats.passes ?? 0;
    let steps = 0;
    for (; steps < 100 && late.size.skus < 240; steps++) {
      const before = p.sent.length;
      await p.tick();
      // Steps are at least sync.tickMs apart, busy or idle: a batch or tick at the same time does not step.
      const stepped = p.sent.length;
      await p.tick();
      await p.batch([p.reserve("S-0-1", "o1", 1, ["w2"])]);
      expect(p.sent.length).toBe(stepped);
      p.nowMs += p.config.sync.tickMs;
      const step = decodeAll(
        p.sent.slice(before).map((m) => m.data),
        0,
        1,
      );
      expect(step.skus.length).toBeLessThanOrEqual(perStep);
      p.deliver(late);
    }
    expect(p.applier.feed?.stats.passes).toBe(passes + 1);
    expect(steps).toBe(Math.ceil(240 / perStep));
    expectSame(late, p);
  });

  test("a publish that throws never reaches the partition: counted, and mended by the next pass", async () => {
    const p = new FeedPartition({ feedFullMs: 5000 });
    const view = new FeedView({ partitionCount: 1, bytesMax: 8 * 1024 * KiB });
    p.failPublish = true;
    await p.batch([p.received("A", "w1", 3)]);
    expect(p.applier.feed?.stats.publishFailed).toBeGreaterThan(0);
    p.failPublish = false;
    p.nowMs += 5000;
    await p.tick();
    p.deliver(view);
    expectSame(view, p);
  });
});

describe("RoutingPort", () => {
  test("local partitions from LMDB (always known), the others from the feed (maybe unknown)", async () => {
    const p = new FeedPartition();
    await p.batch([p.received("A", "w1", 10), p.reserve("A", "o1", 2, ["w1"])]);
    const feed = new FeedView({ partitionCount: 1, bytesMax: 8 * 1024 * KiB });
    let local = true;
    const port = new RoutingPort(
      () => [p.store],
      feed,
      () => local,
      1,
      0,
      () => p.nowMs,
    );
    expect(port.known("A")).toBe(true);
    expect(port.known("NONE")).toBe(true);
    expect(port.stock("NONE")).toBeUndefined();
    expect(port.stock("A")).toEqual(idRecord([["w1", position(10, 2)]]));
    expect(port.load("w1")).toBe(2);
    // The partition moves away: until the feed says otherwise, its SKUs are unknown and its loads 0.
    local = false;
    expect(port.known("A")).toBe(false);
    expect(port.stock("A")).toBeUndefined();
    expect(port.load("w1")).toBe(0);
    p.deliver(feed);
    expect(port.known("A")).toBe(true);
    expect(port.known("NONE")).toBe(false);
    expect(port.stock("A")).toEqual(idRecord([["w1", position(10, 2)]]));
    expect(port.load("w1")).toBe(2);
  });
});
