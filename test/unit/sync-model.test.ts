import { afterAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import type { Config } from "../../src/config/index.ts";
import { atsOf } from "../../src/domain/channels/index.ts";
import { type ErpBatch, type ErpCompactorState, nonFinanceEntryTypes } from "../../src/domain/erp/index.ts";
import {
  foldEntries,
  type LedgerEntry,
  type LineRequest,
  positionFields,
  type SkuState,
  type StockCommand,
} from "../../src/domain/ledger/index.ts";
import { candidatesFor, type Network, parseNetwork, syncedChannels } from "../../src/domain/network/index.ts";
import type { AtsItem } from "../../src/domain/sync/index.ts";
import { Instrumentation } from "../../src/instrumentation/index.ts";
import { LedgerApplier, ledgerTables } from "../../src/stages/ledger/applier.ts";
import { type OutboxItem, PartitionStore } from "../../src/store/index.ts";
import { pack } from "../../src/stream/codec.ts";
import type { InboundMessage } from "../../src/stream/partition-runner.ts";
import { decodeToken, subjects } from "../../src/stream/subjects.ts";
import { tempDir, testConfig } from "../helpers/index.ts";

// The ledger stage's outputs against the state they describe, over random command sequences applied the way
// the partition runner applies them: LedgerApplier over a real LMDB PartitionStore, one transaction per batch,
// timer ticks in between, restarts from the store, a fake clock. Whatever the sequence, once everything due
// has gone out:
//   - the last ATS published per (channel, SKU) is atsOf(the SKU's final positions), and the view agrees;
//   - per (channel, SKU) versions never go back (equal only for a resync of an unchanged value);
//   - a throttled channel stays within its bucket (depth + rate × T requests);
//   - the ERP batches chain and their movements net, per (SKU, warehouse), to the finance entries' on-hand
//     deltas (which, from an empty ledger, is the final on hand); commitments and holds never appear.

const MiB = 1024 * 1024;
const skuIds = ["S1", "S2", "S3"] as const;
const warehouseIds = ["w1", "w2", "w3"] as const;
const orderKeys = ["shop.o1", "shop.o2", "web.o3"] as const;

function rules(raw: Record<string, unknown>, version: string): Network {
  const parsed = parseNetwork(raw, version);
  if (!parsed.ok) throw new Error(parsed.detail);
  return parsed.value;
}

/** w3 is disabled (it never feeds), w2 serves only A, B, C; D lists w1 and the disabled w3. */
const networkOne = rules(
  {
    warehouses: [
      { id: "w1", channels: ["*"] },
      { id: "w2", channels: ["A", "B", "C"] },
      { id: "w3", channels: ["*"], enabled: false },
    ],
    channels: [
      { id: "*" },
      { id: "A", warehouses: ["w1"] },
      { id: "B", warehouses: ["w2"], sharePercent: 50, bufferUnits: 1, lowStockThreshold: 2 },
      // Throttled: one item per request, one request every 2 s.
      { id: "C", warehouses: ["*"], marketplaceHeldUnits: 1, requestsPerSecond: 0.5, itemsPerRequestMax: 1 },
      { id: "D", warehouses: ["w1", "w3"], marketplaceHeld: { S2: 3 } },
    ],
  },
  "model-1",
);

/** The same network with w2 disabled and A fed by w1 and w2 at half share: A, B and C must be resynced. */
const networkTwo = rules(
  {
    warehouses: [
      { id: "w1", channels: ["*"] },
      { id: "w2", channels: ["A", "B", "C"], enabled: false },
      { id: "w3", channels: ["*"], enabled: false },
    ],
    channels: [
      { id: "*" },
      { id: "A", warehouses: ["w1", "w2"], sharePercent: 50 },
      { id: "B", warehouses: ["w2"], sharePercent: 50, bufferUnits: 1, lowStockThreshold: 2 },
      { id: "C", warehouses: ["*"], marketplaceHeldUnits: 1, requestsPerSecond: 0.5, itemsPerRequestMax: 1 },
      { id: "D", warehouses: ["w1", "w3"], marketplaceHeld: { S2: 3 } },
    ],
  },
  "model-2",
);

const flushWindowMs = 200;
const burstRequestsMax = 2;
const erpWindowMs = 1000;

/** One warehouse, two channels showing `sharePercent` of it. */
const withShare = (sharePercent: number, version: string) =>
  rules(
    {
      warehouses: [{ id: "w1", channels: ["*"] }],
      channels: [
        { id: "*" },
        { id: "A", warehouses: ["w1"], sharePercent },
        { id: "B", warehouses: ["w1"], sharePercent },
      ],
    },
    version,
  );

// ---- the random sequence ------------------------------------------------------------------------

type Step =
  | { kind: "stock"; sku: string; command: StockCommand }
  | { kind: "line"; request: LineRequest }
  /** Ends the batch being gathered: applied and committed as the runner does. */
  | { kind: "cut"; advanceMs: number }
  | { kind: "tick"; advanceMs: number }
  | { kind: "restart" }
  /**
   * The other rule set comes into force (as the rules watcher swaps it between batches); `seen`: a tick runs
   * at once, before the next batch (the runner ticks every sync.tickMs, so that is the usual case).
   */
  | { kind: "rules"; seen: boolean };

const sku = fc.constantFrom(...skuIds);
const warehouse = fc.constantFrom(...warehouseIds);
const qty = fc.integer({ min: 1, max: 12 });
const ref = fc.record({ orderKey: fc.constantFrom(...orderKeys), lineId: fc.constantFrom("1", "2") });
const attempt = fc.integer({ min: 1, max: 2 });
const bucket = fc.constantFrom("damaged" as const, "quality_control" as const);

const stockCommand: fc.Arbitrary<StockCommand> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({ type: fc.constant("received" as const), warehouse, qty, ref: fc.constant(null) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      type: fc.constant("adjust" as const),
      warehouse,
      qty: fc.integer({ min: -8, max: 8 }).filter((q) => q !== 0),
      ref: fc.constant(null),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      type: fc.constant("override" as const),
      warehouse,
      available: fc.integer({ min: 0, max: 20 }),
      ref: fc.constant(null),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      type: fc.constant("counted" as const),
      warehouse,
      onHand: fc.integer({ min: 0, max: 20 }),
      ref: fc.constant(null),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      type: fc.constant("hold" as const),
      warehouse,
      qty: fc.integer({ min: 1, max: 4 }),
      bucket,
      ref: fc.constant(null),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      type: fc.constant("unhold" as const),
      warehouse,
      qty: fc.integer({ min: 1, max: 4 }),
      bucket,
      to: fc.constantFrom("available" as const, "scrap" as const),
      ref: fc.constant(null),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      type: fc.constant("safety_stock" as const),
      warehouse,
      qty: fc.integer({ min: 0, max: 4 }),
      ref: fc.constant(null),
    }),
  },
);

const lineRequest: fc.Arbitrary<LineRequest> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("reserve" as const),
      ref,
      sku,
      qty: fc.integer({ min: 1, max: 6 }),
      candidates: fc.shuffledSubarray([...warehouseIds], { minLength: 0 }),
      attempt,
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("release" as const), ref, sku, attempt }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("ship" as const),
      ref,
      sku,
      qty: fc.integer({ min: 1, max: 6 }),
      attempt,
      eventId: fc.constantFrom("s1", "s2", "s3"),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("reject" as const),
      ref,
      sku,
      stockMissing: fc.boolean(),
      attempt,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("return" as const),
      ref,
      sku,
      eventId: fc.constantFrom("r1", "r2"),
      qty: fc.integer({ min: 1, max: 4 }),
      disposition: fc.constantFrom("sellable" as const, "damaged" as const, "quality_control" as const),
      warehouse,
      attempt,
    }),
  },
);

const stepWithoutRules: fc.Arbitrary<Step> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ kind: fc.constant("stock" as const), sku, command: stockCommand }) },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant("line" as const), request: lineRequest }) },
  {
    weight: 4,
    arbitrary: fc.record({ kind: fc.constant("cut" as const), advanceMs: fc.integer({ min: 0, max: 400 }) }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("tick" as const),
      advanceMs: fc.integer({ min: 0, max: 1500 }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: "restart" as const }) },
);

/** The same, with rule sets swapped now and then (every swap resyncs the channels whose rule it changed). */
const stepWithRules: fc.Arbitrary<Step> = fc.oneof(
  { weight: 28, arbitrary: stepWithoutRules },
  { weight: 1, arbitrary: fc.constant({ kind: "rules" as const, seen: true }) },
);

// ---- the harness: an applier over a real store, driven like the partition runner ------------------

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** When it was committed, and under which rule set (how many swaps had happened). */
type Published = { atMs: number; rulesEpoch: number; item: OutboxItem };

class Harness {
  nowMs = 1_800_000_000_000;
  seq = 0;
  store!: PartitionStore;
  applier!: LedgerApplier;
  readonly published: Published[] = [];
  network: Network;
  rulesEpoch = 0;
  /** The rule set each (SKU, version) was made under: "sku/version" → rulesEpoch. */
  readonly versionEpochs = new Map<string, number>();
  private pending: InboundMessage[] = [];

  constructor(
    readonly dir: string,
    readonly config: Config,
    /** The rule set in force first, and the one a "rules" step swaps it with. */
    readonly networks: readonly [Network, Network],
  ) {
    this.network = networks[0];
  }

  open(): void {
    this.store = PartitionStore.open(
      join(this.dir, "ledger-0"),
      { stage: "ledger", partition: 0, partitionCount: 1 },
      { mapBytesMax: 64 * MiB, tables: ledgerTables },
    );
    this.applier = new LedgerApplier(
      0,
      this.config,
      this.store,
      new Instrumentation(),
      () => this.network,
      () => this.nowMs,
    );
  }

  async restart(): Promise<void> {
    await this.store.close();
    this.open();
  }

  add(subject: string, data: Uint8Array): void {
    this.seq += 1;
    this.pending.push({
      stream: "SLUICE_LEDGER",
      seq: this.seq,
      subject,
      data,
      headers: undefined,
      atMs: this.nowMs,
    });
  }

  async cut(): Promise<void> {
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    const write = this.applier.apply(batch);
    const last = batch.at(-1) as InboundMessage;
    await this.commit({ ...write, streamSeqLastApplied: last.seq, streamSeqLastAppliedAtMs: last.atMs });
    for (const { value } of this.store.range<SkuState>("skus", {})) {
      const key = `${value.sku}/${value.version}`;
      if (!this.versionEpochs.has(key)) this.versionEpochs.set(key, this.rulesEpoch);
    }
  }

  async tick(): Promise<boolean> {
    const write = this.applier.tick(this.nowMs);
    if (write === null) return false;
    await this.commit({ ...write, streamSeqLastApplied: null });
    return true;
  }

  private async commit(write: Parameters<PartitionStore["commit"]>[0]): Promise<void> {
    const { items } = await this.store.commit(write);
    for (const item of items) this.published.push({ atMs: this.nowMs, rulesEpoch: this.rulesEpoch, item });
  }

  swapRules(): void {
    this.network = this.network === this.networks[0] ? this.networks[1] : this.networks[0];
    this.rulesEpoch += 1;
  }

  /** Nothing waits: no resync under way, no stock value in any lane and no open ERP window. */
  drained(): boolean {
    const erp = this.store.get<ErpCompactorState>("erp", "state");
    return (
      this.applier.outputs.resyncing().length === 0 &&
      this.applier.outputs.pendingCount() === 0 &&
      this.applier.outputs.refusedCount() === 0 &&
      (erp === undefined || erp.openedAtMs === null)
    );
  }
}

const decoder = new TextDecoder();
const json = <T>(o: OutboxItem): T => JSON.parse(decoder.decode(o.data)) as T;

async function run(
  steps: Step[],
  networks: readonly [Network, Network] = [networkOne, networkTwo],
  /** sync.pendingCountMax: tiny, most new (channel, SKU) pairs are refused and must be offered again. */
  pendingCountMax = 2_000_000,
): Promise<Harness> {
  const dir = tempDir("sync-model");
  dirs.push(dir);
  const config = testConfig("nats://127.0.0.1:4222", dir, {
    streams: { partitionCount: 1 },
    // One SKU per resync step: a resync spans ticks, batches, restarts and further rule swaps.
    sync: { flushWindowMs, burstRequestsMax, tickMs: 25, resyncSkusPerTickMax: 1, pendingCountMax },
    // Small batches: carried movements and several batches per run.
    erp: { windowMs: erpWindowMs, movementKeysMax: 3, documentsMax: 10 },
  });
  const h = new Harness(dir, config, networks);
  h.open();
  for (const s of steps) {
    if (s.kind === "stock") {
      h.add(subjects.stockPartitioned(0, s.sku), new TextEncoder().encode(JSON.stringify(s.command)));
    } else if (s.kind === "line") {
      h.add(subjects.ledgerCommands(0, 0), pack({ items: [s.request] }));
    } else if (s.kind === "cut") {
      await h.cut();
      h.nowMs += s.advanceMs;
    } else if (s.kind === "tick") {
      await h.cut();
      h.nowMs += s.advanceMs;
      await h.tick();
    } else if (s.kind === "rules") {
      await h.cut();
      h.swapRules();
      if (s.seen) await h.tick();
    } else {
      await h.cut();
      await h.restart();
    }
  }
  await h.cut();
  // Let every window pass and every bucket refill until nothing waits (bounded: C needs 2 s per item).
  for (let i = 0; i < 200 && !h.drained(); i++) {
    h.nowMs += 500;
    await h.tick();
  }
  expect(h.drained()).toBe(true);
  return h;
}

// ---- the checks ---------------------------------------------------------------------------------

/**
 * `view`: check the current-stock view too. Not with a tiny queue: the view's lane takes a value only while
 * less than half of sync.pendingCountMax waits and otherwise catches up with the SKU's next change (by design).
 */
function checkStock(h: Harness, view = true): void {
  const network = h.network;
  const lastByPair = new Map<string, AtsItem>();
  const viewByPair = new Map<string, AtsItem>();
  const requestTimes = new Map<string, number[]>();
  for (const { atMs, rulesEpoch, item } of h.published) {
    if (item.subject.startsWith("sluice.out.stock.")) {
      const channel = decodeToken(item.subject.slice("sluice.out.stock.".length));
      requestTimes.set(channel, [...(requestTimes.get(channel) ?? []), atMs]);
      const { items } = json<{ items: AtsItem[] }>(item);
      for (const it of items) {
        expect(Object.keys(it).sort()).toEqual(["atMs", "ats", "sku", "version"]);
        const key = `${channel}/${it.sku}`;
        const before = lastByPair.get(key);
        if (before !== undefined) {
          // Versions never go back. An equal version is a resync: the same value, or a new one only under
          // rules that changed after that version was made.
          expect(it.version).toBeGreaterThanOrEqual(before.version);
          if (it.version === before.version && it.ats !== before.ats) {
            expect(rulesEpoch).toBeGreaterThan(h.versionEpochs.get(`${it.sku}/${it.version}`) as number);
          }
        }
        lastByPair.set(key, it);
      }
    } else if (item.subject.startsWith("sluice.view.stock.")) {
      const [channel, s] = item.subject.slice("sluice.view.stock.".length).split(".") as [string, string];
      viewByPair.set(`${decodeToken(channel)}/${decodeToken(s)}`, json<AtsItem>(item));
    }
  }
  const states = h.store.range<SkuState>("skus", {}).map(({ value }) => value);
  for (const state of states) {
    for (const c of syncedChannels(network)) {
      const expected = atsOf(state.positions, state.sku, c.sync, candidatesFor(network, c.id));
      const last = lastByPair.get(`${c.id}/${state.sku}`);
      expect({ channel: c.id, sku: state.sku, ats: last?.ats }).toEqual({
        channel: c.id,
        sku: state.sku,
        ats: expected,
      });
      expect(last?.version).toBeLessThanOrEqual(state.version);
      expect(state.ats?.[c.id]).toBe(expected);
      // The view (a late joiner's read) ends on the value the channel was sent.
      if (view) expect(viewByPair.get(`${c.id}/${state.sku}`)).toEqual(last as AtsItem);
    }
  }
  // Every pair published belongs to a SKU that exists and a synced channel.
  expect(lastByPair.size).toBe(states.length * syncedChannels(network).length);
  // C: 0.5 requests/s with a bucket of depth 2. Over any span T: at most depth + rate × T requests.
  const times = requestTimes.get("C") ?? [];
  for (let i = 0; i < times.length; i++) {
    for (let j = i; j < times.length; j++) {
      const spanMs = (times[j] as number) - (times[i] as number);
      expect(j - i + 1).toBeLessThanOrEqual(burstRequestsMax + Math.floor((0.5 * spanMs) / 1000));
    }
  }
}

const isFinance = (e: LedgerEntry) => !(nonFinanceEntryTypes as readonly string[]).includes(e.type);

function checkErp(h: Harness): void {
  const batches = h.published
    .filter(({ item }) => item.subject === subjects.outErp)
    .map(({ item }) => {
      const b = json<ErpBatch>(item);
      expect(item.msgId).toBe(b.id);
      return b;
    });
  const storeId = h.store.storeId();
  let previous: ErpBatch | null = null;
  for (const b of batches) {
    expect(b.id).toBe(`erp-ledger-0-${storeId}-${b.batchNo}`);
    expect([b.stage, b.partition, b.storeId]).toEqual(["ledger", 0, storeId]);
    expect(b.batchNo).toBe((previous?.batchNo ?? 0) + 1);
    expect(b.prevSeqTo).toBe(previous?.seqTo ?? 0);
    expect(b.seqFrom).toBe(b.prevSeqTo + 1);
    expect(b.movements.length).toBeGreaterThan(0);
    expect(b.movements.length).toBeLessThanOrEqual(3);
    expect(b.documents).toEqual([]);
    for (const m of b.movements) {
      expect(m.qty).not.toBe(0);
      expect((nonFinanceEntryTypes as readonly string[]).includes(m.type.split(":")[0] as string)).toBe(
        false,
      );
    }
    previous = b;
  }
  const net = (rows: Iterable<{ sku: string; warehouse: string; qty: number }>) => {
    const out: Record<string, number> = {};
    for (const r of rows) out[`${r.sku}@${r.warehouse}`] = (out[`${r.sku}@${r.warehouse}`] ?? 0) + r.qty;
    for (const k of Object.keys(out)) if (out[k] === 0) delete out[k];
    return out;
  };
  const entries = h.store.range<LedgerEntry>("entries", {}).map(({ value }) => value);
  const fromEntries = net(
    entries.filter(isFinance).map((e) => ({ sku: e.sku, warehouse: e.warehouse, qty: e.delta.onHand ?? 0 })),
  );
  expect(net(batches.flatMap((b) => b.movements))).toEqual(fromEntries);
  // From an empty ledger the finance movements add up to the final on hand; positions are their entries' fold.
  const onHand: Array<{ sku: string; warehouse: string; qty: number }> = [];
  for (const { value: s } of h.store.range<SkuState>("skus", {})) {
    const folded = foldEntries(entries.filter((e) => e.sku === s.sku));
    for (const [w, p] of Object.entries(s.positions)) {
      onHand.push({ sku: s.sku, warehouse: w, qty: p.onHand });
      for (const f of positionFields) expect(folded.get(w)?.[f] ?? 0).toBe(p[f]);
    }
  }
  expect(net(onHand)).toEqual(fromEntries);
}

describe("ledger outputs over a real store: a model check", () => {
  const property = (step: fc.Arbitrary<Step>) =>
    fc.asyncProperty(fc.array(step, { minLength: 10, maxLength: 100, size: "max" }), async (steps) => {
      const h = await run(steps);
      try {
        checkStock(h);
        checkErp(h);
      } finally {
        await h.store.close();
      }
    });

  test("after any command sequence, published ATS = atsOf(final positions) and ERP movements = on-hand deltas", async () => {
    // Quick (~40 ms a run, LMDB commits included): the property is part of the unit suite.
    await fc.assert(property(stepWithoutRules), { numRuns: 30 });
  }, 20_000);

  // Fails today: see "a resync of two channels in one tick keeps both recorded ATS" below (the bug it found).
  test("…and so it does when rule sets change along the way (resyncs across ticks, batches and restarts)", async () => {
    await fc.assert(property(stepWithRules), { numRuns: 30 });
  }, 20_000);

  // Found by the property above. A rule change resyncs A and B in the same tick; each channel's resync reads
  // the SKU from the committed store and writes it back with only its own channel's new ATS, so B's write
  // overwrites A's: S1 records A = 5 while A was sent 10. When S1's ATS on A later becomes 5 again it is
  // never offered (it "did not change"): A keeps showing 10 units that are not there.
  test("a resync of two channels in one tick keeps both recorded ATS (the next change reaches both)", async () => {
    const steps: Step[] = [
      { kind: "stock", sku: "S1", command: { type: "received", warehouse: "w1", qty: 10, ref: null } },
      { kind: "tick", advanceMs: 300 }, // A and B are sent 5 (half of 10)
      { kind: "rules", seen: true }, // now the whole 10: both resynced in one tick
      { kind: "tick", advanceMs: 300 }, // A and B are sent 10
      { kind: "stock", sku: "S1", command: { type: "adjust", warehouse: "w1", qty: -5, ref: null } },
    ];
    const h = await run(steps, [withShare(50, "half"), withShare(100, "whole")]);
    try {
      const sent = (channel: string) =>
        h.published
          .filter(({ item }) => item.subject === subjects.outStock(channel))
          .flatMap(({ item }) => json<{ items: AtsItem[] }>(item).items)
          .map((i) => [i.ats, i.version]);
      expect(sent("B")).toEqual([
        [5, 1],
        [10, 1],
        [5, 2],
      ]);
      expect(h.store.get<SkuState>("skus", "S1")?.ats).toEqual({ A: 5, B: 5 });
      expect(sent("A")).toEqual([
        [5, 1],
        [10, 1],
        [5, 2],
      ]);
    } finally {
      await h.store.close();
    }
  });

  // Fails today (a narrow race). Fingerprints of the rules a channel's ATS was computed with are recorded only
  // by a tick. A rule set in force for less than one tick (sync.tickMs, 25 ms) during which a batch ran
  // leaves that batch's SKUs on its ATS: when the previous rule set comes back, the tick finds the recorded
  // fingerprint unchanged and resyncs nothing. Here A keeps showing 12 of the 6 it may sell.
  test("a rule set that comes and goes between two ticks leaves no channel on its ATS", async () => {
    const steps: Step[] = [
      { kind: "stock", sku: "S1", command: { type: "received", warehouse: "w1", qty: 10, ref: null } },
      { kind: "tick", advanceMs: 300 }, // half: A and B are sent 5
      { kind: "rules", seen: false }, // whole, not yet seen by a tick
      { kind: "stock", sku: "S1", command: { type: "received", warehouse: "w1", qty: 2, ref: null } },
      { kind: "rules", seen: false }, // half again; this batch offered 12 (the whole 12)
      { kind: "tick", advanceMs: 300 },
    ];
    const h = await run(steps, [withShare(50, "half"), withShare(100, "whole")]);
    try {
      expect(h.network.version).toBe("half");
      checkStock(h);
    } finally {
      await h.store.close();
    }
  });

  // Issue #10, finding 9: with room for 2 waiting pairs (of 3 SKUs × 4 channels), most values are refused. A
  // refused pair is a row of the sync table, written with the batch, so a restart (any step may be one)
  // loses none: once drained, every channel still ends on atsOf(final positions).
  test("…and so it does with a tiny queue (sync.pendingCountMax = 2): refused values survive restarts", async () => {
    const tiny = (step: fc.Arbitrary<Step>) =>
      fc.asyncProperty(fc.array(step, { minLength: 10, maxLength: 100, size: "max" }), async (steps) => {
        const h = await run(steps, [networkOne, networkTwo], 2);
        try {
          checkStock(h, false);
          checkErp(h);
        } finally {
          await h.store.close();
        }
      });
    await fc.assert(tiny(stepWithRules), { numRuns: 30 });
  }, 20_000);

  // Fails on the code before the fix: the refused pairs lived in memory only, so after the restart S2 and S3
  // (and most channels of S1) were never offered again: the channels showed nothing, or stock long gone.
  test("values refused by a full queue are offered again after a restart (issue #10, finding 9)", async () => {
    const received = (s: string, qty: number): Step => ({
      kind: "stock",
      sku: s,
      command: { type: "received", warehouse: "w1", qty, ref: null },
    });
    const steps: Step[] = [
      received("S1", 10),
      received("S2", 7),
      received("S3", 4),
      { kind: "cut", advanceMs: 10 }, // 12 pairs offered, 2 queued, 10 refused
      { kind: "restart" },
      received("S1", 1), // a change after the restart: S1 is offered anew, S2 and S3 only as refused
      { kind: "cut", advanceMs: 10 },
      { kind: "restart" },
    ];
    const h = await run(steps, [networkOne, networkTwo], 2);
    try {
      checkStock(h, false);
      const stored = h.store.range<unknown>("sync", {}).filter(({ key }) => (key as string[])[0] === "x");
      expect(stored).toEqual([]);
    } finally {
      await h.store.close();
    }
  });

  test("a worked sequence: reserve, ship, return and count reach the channels and the ERP", async () => {
    const steps: Step[] = [
      { kind: "stock", sku: "S1", command: { type: "received", warehouse: "w1", qty: 10, ref: null } },
      { kind: "stock", sku: "S1", command: { type: "received", warehouse: "w2", qty: 6, ref: null } },
      { kind: "cut", advanceMs: 50 },
      {
        kind: "line",
        request: {
          kind: "reserve",
          ref: { orderKey: "shop.o1", lineId: "1" },
          sku: "S1",
          qty: 4,
          candidates: ["w1", "w2"],
          attempt: 1,
        },
      },
      { kind: "cut", advanceMs: 300 },
      { kind: "tick", advanceMs: 0 },
      {
        kind: "line",
        request: {
          kind: "ship",
          ref: { orderKey: "shop.o1", lineId: "1" },
          sku: "S1",
          qty: 4,
          attempt: 1,
          eventId: "s1",
        },
      },
      {
        kind: "line",
        request: {
          kind: "return",
          ref: { orderKey: "shop.o1", lineId: "1" },
          sku: "S1",
          eventId: "r1",
          qty: 1,
          disposition: "damaged",
          warehouse: "w1",
          attempt: 1,
        },
      },
      { kind: "stock", sku: "S1", command: { type: "counted", warehouse: "w2", onHand: 5, ref: null } },
      { kind: "restart" },
      { kind: "tick", advanceMs: 2000 },
    ];
    const h = await run(steps);
    try {
      checkStock(h);
      checkErp(h);
      const movements = h.published
        .filter(({ item }) => item.subject === subjects.outErp)
        .flatMap(({ item }) => json<ErpBatch>(item).movements)
        .map(({ sku, warehouse, type, qty }) => ({ sku, warehouse, type, qty }));
      expect(movements).toContainEqual({ sku: "S1", warehouse: "w1", type: "shipped", qty: -4 });
      expect(movements).toContainEqual({ sku: "S1", warehouse: "w1", type: "returned:damaged", qty: 1 });
      expect(movements).toContainEqual({ sku: "S1", warehouse: "w2", type: "counted", qty: -1 });
      expect(movements.some((m) => m.type === ("reserved" as string))).toBe(false);
      // A: w1 only. 10 → 6 (reserved 4) → 6 (shipped) → 6 (the damaged return is not sellable).
      const onA = h.published
        .filter(({ item }) => item.subject === subjects.outStock("A"))
        .flatMap(({ item }) => json<{ items: AtsItem[] }>(item).items)
        .map((i) => i.ats);
      expect(onA.at(-1)).toBe(6);
    } finally {
      await h.store.close();
    }
  });
});
