// What the load generator offers: intended send times (Poisson or evenly spaced, per phase, or a trace's own
// times compressed) and each order's lines. Pure and seeded: the same plan gives the same orders at the same
// intended times. The harness and the tests use it too.
//
// Order ids carry the intended send time, so an observer that sees only Sluice's outputs (which echo the
// order key, not headers) knows when the order was meant to be sent:
//
//   orderId = b<runId>-<n>-<intendedUs>-<lateUs>
//
// n: 0, 1, 2, … in intended order; intendedUs: µs after the run's startEpochMs; lateUs: how much later than
// intended the loadgen actually sent it (0 when on time). E.g. `bk3x9-1042-10517233-0`: order 1042 of run
// k3x9, meant to be (and) sent 10.517233 s after the start.
import type { EmbeddedClient } from "../../src/stream/embedded-auth.ts";
import type { Arrivals, LineMix, Phase, Scenario } from "./options.ts";
import { Categorical, Rng, ZipfSampler } from "./prng.ts";
import type { Trace } from "./trace.ts";

export type PlannedLine = { sku: string; qty: number; price: number };
/** zip, lat, lon: a trace's ship-to (replay); synthetic orders have a region only. */
export type PlannedOrder = {
  n: number;
  intendedUs: number;
  lines: PlannedLine[];
  region: string;
  zip?: string | null;
  lat?: number | null;
  lon?: number | null;
  /** A backorder of the lifecycle mix: one line of a SKU with no stock yet, `split.backorder` set. */
  backorder?: boolean;
};

export type LifecycleMix = {
  /** Orders for a SKU with no stock, allowed to wait (split.backorder); a receipt follows each (loadgen). */
  backorderPct: number;
  /** Orders of one kit line (KIT-<i> of the bench network's catalog): every component or none is reserved. */
  kitPct: number;
  cancelPct: number;
  rejectPct: number;
  partialShipPct: number;
  returnPct: number;
};

/** Everything the load generator process needs, passed as JSON. */
export type LoadPlan = {
  natsUrl: string;
  /** On Sluice's locked embedded server, the `producer` user; null: the SLUICE_NATS_* settings. */
  natsClient: EmbeddedClient | null;
  /** The `reader` user, for the simulated WMS that reads fulfilment requests (lifecycle); null: natsClient's. */
  natsReader: EmbeddedClient | null;
  runId: string;
  startEpochMs: number;
  seed: number;
  scenario: Scenario;
  phases: Phase[];
  arrivals: Arrivals;
  channel: string;
  skus: number;
  zipf: number;
  lines: LineMix;
  hot: { skus: number; share: number } | null;
  lifecycle: LifecycleMix | null;
  trace: { path: string; format: "olist-csv" | "ndjson"; speedup: number } | null;
  inFlightPublishesMax: number;
  /** chaos: a failed order publish is sent again (same Nats-Msg-Id) for this long at most; absent or 0: never. */
  publishRetryMs?: number;
};

export const catalogueSku = (i: number) => `SKU-${i}`;
export const hotSku = (i: number) => `HOT-${i}`;
/** The lifecycle mix's backorder SKUs: never seeded; each order's unit arrives by a receipt after it. */
export const backorderSku = (i: number) => `BO-${i}`;
export const isBackorderSku = (sku: string) => sku.startsWith("BO-");
/** How many backorder SKUs the mix spreads its orders over (several orders wait on one SKU at a time). */
export const backorderSkusCount = 16;
/** The bench network's kits (bench/harness/network.toml: KIT-0 … KIT-7, three components each). */
export const kitSku = (i: number) => `KIT-${i}`;
export const isKitSku = (sku: string) => sku.startsWith("KIT-");
export const kitSkusCount = 8;

/**
 * Lines per order. single: the throughput scenario (one ledger reservation per order). mix: a general-retail
 * basket assumption, heavier than Olist so that multi-line paths (split policy, several ledger partitions per
 * order) carry real load. olist: measured on ../shared/data/olist-2017-10k (9,889 orders with items:
 * distinct products per order 1: 96.9 %, 2: 2.8 %, 3+: 0.3 %).
 */
export const lineCounts: Record<LineMix, readonly (readonly [number, number])[]> = {
  single: [[1, 1]],
  mix: [
    [1, 70],
    [2, 20],
    [3, 4],
    [4, 3],
    [5, 3],
  ],
  olist: [
    [1, 96.9],
    [2, 2.8],
    [3, 0.2],
    [4, 0.1],
  ],
};

/** Units per line, from the same Olist sample: 1: 93.0 %, 2: 5.3 %, 3: 1.0 %, 4+: 0.7 %. */
const quantities: readonly (readonly [number, number])[] = [
  [1, 93],
  [2, 5.3],
  [3, 1],
  [4, 0.7],
];

/** Ship-to regions, roughly Olist's customer states (SP, RJ, MG lead); routing by score is issue 4. */
const regions: readonly (readonly [string, number])[] = [
  ["SP", 42],
  ["RJ", 13],
  ["MG", 12],
  ["RS", 5.5],
  ["PR", 5],
  ["BA", 3.5],
  ["SC", 3.5],
  ["DF", 2],
  ["GO", 2],
  ["PE", 1.5],
];

export function orderIdOf(runId: string, n: number, intendedUs: number, sentUs: number): string {
  return `b${runId}-${n}-${intendedUs}-${Math.max(0, sentUs - intendedUs)}`;
}

export type OrderRef = { n: number; intendedUs: number; sentUs: number };

/** An order key of this run → its number and times; null for anything else. It runs per output item. */
export function parseOrderKey(key: string, keyPrefix: string): OrderRef | null {
  if (!key.startsWith(keyPrefix)) return null;
  const d1 = key.indexOf("-", keyPrefix.length);
  const d2 = d1 < 0 ? -1 : key.indexOf("-", d1 + 1);
  if (d2 < 0) return null;
  const n = Number(key.slice(keyPrefix.length, d1));
  const intendedUs = Number(key.slice(d1 + 1, d2));
  const lateUs = Number(key.slice(d2 + 1));
  if (
    !Number.isInteger(n) ||
    n < 0 ||
    !Number.isInteger(intendedUs) ||
    !Number.isInteger(lateUs) ||
    lateUs < 0
  )
    return null;
  return { n, intendedUs, sentUs: intendedUs + lateUs };
}

/** `<channel>.b<runId>-`: what every order key of the run starts with. */
export const keyPrefixOf = (channel: string, runId: string) => `${channel}.b${runId}-`;

/** Intended send times in µs after the start, phase by phase, in increasing order. */
export class ArrivalSchedule {
  private readonly rng: Rng;
  private phase = 0;
  private tS: number;

  constructor(
    private readonly phases: readonly Phase[],
    private readonly arrivals: Arrivals,
    seed: number,
  ) {
    this.rng = new Rng(seed, 0x5ced);
    this.tS = phases[0]?.startS ?? 0;
  }

  /** The next intended time in µs, or null when the last phase has ended. */
  next(): number | null {
    while (this.phase < this.phases.length) {
      const p = this.phases[this.phase] as Phase;
      if (this.tS < p.startS) this.tS = p.startS;
      if (p.ratePerSecond > 0) {
        const gap = this.arrivals === "poisson" ? this.rng.exponential(p.ratePerSecond) : 1 / p.ratePerSecond;
        const t = this.tS + gap;
        // Poisson is memoryless: past the phase's end, restart the draw at the next phase's rate.
        if (t < p.endS) {
          this.tS = t;
          return Math.round(t * 1e6);
        }
      }
      this.tS = p.endS;
      this.phase++;
    }
    return null;
  }
}

/** Orders in intended order: synthetic (catalogue, hot SKUs) or a compressed trace. */
export class Workload {
  private n = 0;
  private readonly schedule: ArrivalSchedule;
  private readonly zipf: ZipfSampler;
  private readonly lineCount: Categorical<number>;
  private readonly qty = new Categorical(quantities);
  private readonly region = new Categorical(regions);

  constructor(
    private readonly plan: LoadPlan,
    private readonly trace: Trace | null,
  ) {
    this.schedule = new ArrivalSchedule(plan.phases, plan.arrivals, plan.seed);
    this.zipf = new ZipfSampler(plan.skus, plan.zipf);
    this.lineCount = new Categorical(lineCounts[plan.lines]);
  }

  next(): PlannedOrder | null {
    if (this.trace !== null) return this.nextFromTrace(this.trace);
    const intendedUs = this.schedule.next();
    if (intendedUs === null) return null;
    return { n: this.n, intendedUs, ...this.content(this.n++) };
  }

  /** An order's content depends on (seed, n) only, not on the orders before it. */
  content(n: number): { lines: PlannedLine[]; region: string; backorder?: boolean } {
    const rng = new Rng(this.plan.seed, n + 1);
    const backorderPct = this.plan.lifecycle?.backorderPct ?? 0;
    if (backorderPct > 0 && new Rng(this.plan.seed ^ 0xb0, n + 1).chance(backorderPct / 100)) {
      // One unit, shipped to the region of the first warehouse, where its receipt arrives.
      const sku = backorderSku(rng.int(backorderSkusCount));
      return { lines: [{ sku, qty: 1, price: 10 }], region: "SP", backorder: true };
    }
    const kitPct = this.plan.lifecycle?.kitPct ?? 0;
    if (kitPct > 0 && new Rng(this.plan.seed ^ 0x417, n + 1).chance(kitPct / 100)) {
      const sku = kitSku(rng.int(kitSkusCount));
      return { lines: [{ sku, qty: 1 + rng.int(2), price: 49.9 }], region: this.region.sample(rng) };
    }
    const count = this.lineCount.sample(rng);
    const lines: PlannedLine[] = [];
    const used = new Set<string>();
    for (let i = 0; i < count; i++) {
      let sku = this.pickSku(rng);
      // A basket names a SKU once; a few retries find another (a tiny catalogue may give fewer lines).
      for (let retry = 0; used.has(sku) && retry < 8; retry++) sku = this.pickSku(rng);
      if (used.has(sku)) continue;
      used.add(sku);
      const hot = sku.startsWith("HOT-");
      lines.push({
        sku,
        qty: hot ? 1 : this.qty.sample(rng),
        price: Math.round(rng.between(5, 200) * 10) / 10,
      });
    }
    return { lines, region: this.region.sample(rng) };
  }

  private pickSku(rng: Rng): string {
    const hot = this.plan.hot;
    if (hot !== null && rng.chance(hot.share)) return hotSku(rng.int(hot.skus));
    return catalogueSku(this.zipf.sample(rng));
  }

  private nextFromTrace(trace: Trace): PlannedOrder | null {
    const o = trace.orders[this.n];
    const speedup = this.plan.trace?.speedup ?? 1;
    if (o === undefined) return null;
    const intendedUs = Math.round(((o.tMs - trace.firstMs) / speedup) * 1000);
    return {
      n: this.n++,
      intendedUs,
      lines: o.lines,
      region: o.region ?? "SP",
      zip: o.zip,
      lat: o.lat,
      lon: o.lon,
    };
  }
}

/** The order's JSON payload (docs/subjects.md). */
export function orderPayload(order: PlannedOrder): string {
  const shipTo: { region: string; zip?: string; lat?: number; lon?: number } = { region: order.region };
  if (typeof order.zip === "string") shipTo.zip = order.zip;
  // A point gives routing distances to weigh (replay); without one it compares regions.
  if (typeof order.lat === "number" && typeof order.lon === "number") {
    shipTo.lat = order.lat;
    shipTo.lon = order.lon;
  }
  return JSON.stringify({
    lines: order.lines.map((l, i) => ({ lineId: String(i + 1), sku: l.sku, qty: l.qty, price: l.price })),
    shipTo,
    ...(order.backorder === true
      ? { split: { mode: "allow_partial", maxShipments: 0, backorder: true } }
      : {}),
  });
}
