// The observer: reads Sluice's outputs (a core NATS subscription on sluice.out.>, so it sees each message as
// JetStream stores it, without a consumer's round trips) and measures, from each order's intended send time
// (carried in its id, workload.ts), three latencies:
//
// - allocated: the first status item on sluice.out.order.<channel> in which no line of the order is still
//   `received`, i.e. the ledger's reservation (or refusal) was committed and its answer committed by the
//   order stage ("ledger reservation committed and answered"). One value per order.
// - fulfil: the first `fulfil` item on sluice.out.fulfil.<warehouse> for the order. One value per order.
// - stock delta: per order line, the first delta on sluice.out.stock.<channel> for the line's SKU whose atMs
//   (stream time of the newest input folded into it) is ≥ the time the loadgen actually sent the order.
//   This is an approximation: a delta computed after the order was published might not yet include it (its
//   ledger envelope was stored after the delta's newest input); then the line is matched one delta early.
//
// Each latency goes to an HDR-style histogram overall, per phase (by intended send time), and per second of
// arrival (the timeline). Orders are tracked in typed arrays indexed by order number, not maps. What the
// outputs say about routing (shipments per order, refusals, distances) goes to the routing tally.
import { LatencyHistogram, type LatencySummary } from "./histogram.ts";
import { limits, type Phase, phaseIndexAt } from "./options.ts";
import type { WarehouseSite } from "./replay-network.ts";
import { RoutingTally } from "./routing-tally.ts";
import { isBackorderSku, keyPrefixOf, type OrderRef, parseOrderKey } from "./workload.ts";

export const latencyKinds = ["allocated", "fulfil", "stockDelta"] as const;
export type LatencyKind = (typeof latencyKinds)[number];

/**
 * The allocated latency cut at the stream timestamps Sluice's status items carry (atMs): where an order's
 * time goes, hop by hop, read from the outputs alone. They add up to the allocated latency.
 */
export const hopKinds = ["accept", "orderStage", "ledgerStage", "answer"] as const;
export type HopKind = (typeof hopKinds)[number];

export const orderStatuses = [
  "pending",
  "allocated",
  "partially_allocated",
  "backordered",
  "rejected",
  "cancelled",
  "partially_shipped",
  "shipped",
] as const;

export type SecondRow = {
  s: number;
  completed: number;
  fulfilled: number;
  stockDeltas: number;
  stockLines: number;
  latencyMs: Record<LatencyKind, { p50: number; p90: number; p99: number; max: number; count: number }>;
};

export type StockView = { ats: number; version: number; atMs: number; channel: string };

const bit = { seen: 1, allocated: 2, fulfil: 4 } as const;

/** Per-SKU matching of order lines to stock deltas (pure; unit-tested). Times are epoch ms. */
/** Statuses after a backorder that say its line was filled (the order went on from backordered). */
const backorderFilledStatuses: ReadonlySet<string> = new Set([
  "allocated",
  "partially_allocated",
  "partially_shipped",
  "shipped",
]);

export class StockDeltaMatcher {
  /** Lines not matched yet, per SKU: [sentMs, intendedMs] pairs, sorted by sentMs. */
  private readonly pending = new Map<string, number[][]>();
  /** The newest deltas per SKU, for lines first seen after the delta that covered them. */
  private readonly recent = new Map<string, { atMs: number; arrivalMs: number }[]>();

  /** A line seen for the first time; returns its latency when an earlier delta already covered it. */
  addLine(sku: string, intendedMs: number, sentMs: number): number | null {
    const deltas = this.recent.get(sku);
    if (deltas !== undefined) {
      let best: number | null = null;
      for (const d of deltas)
        if (d.atMs >= sentMs && (best === null || d.arrivalMs < best)) best = d.arrivalMs;
      if (best !== null) return best - intendedMs;
    }
    let list = this.pending.get(sku);
    if (list === undefined) {
      list = [];
      this.pending.set(sku, list);
    }
    let i = list.length;
    while (i > 0 && ((list[i - 1] as number[])[0] as number) > sentMs) i--;
    list.splice(i, 0, [sentMs, intendedMs]);
    return null;
  }

  /** A delta for `sku` arrived: the latencies of every pending line it covers. */
  onDelta(sku: string, atMs: number, arrivalMs: number): number[] {
    let deltas = this.recent.get(sku);
    if (deltas === undefined) {
      deltas = [];
      this.recent.set(sku, deltas);
    }
    deltas.push({ atMs, arrivalMs });
    if (deltas.length > limits.deltasKeptPerSku) deltas.shift();
    const list = this.pending.get(sku);
    if (list === undefined) return [];
    let k = 0;
    while (k < list.length && ((list[k] as number[])[0] as number) <= atMs) k++;
    if (k === 0) return [];
    const covered = list.splice(0, k);
    if (list.length === 0) this.pending.delete(sku);
    return covered.map((pair) => arrivalMs - (pair[1] as number));
  }

  pendingCount(): number {
    let n = 0;
    for (const list of this.pending.values()) n += list.length;
    return n;
  }
}

class Series {
  readonly overall = new LatencyHistogram();
  readonly phases: LatencyHistogram[];
  readonly second = new LatencyHistogram();
  constructor(phaseCount: number) {
    this.phases = Array.from({ length: phaseCount }, () => new LatencyHistogram());
  }
  record(ms: number, phase: number): void {
    this.overall.recordMs(ms);
    this.phases[phase]?.recordMs(ms);
    this.second.recordMs(ms);
  }
}

export class Observer {
  private readonly keyPrefix: string;
  private readonly series: Record<LatencyKind, Series>;
  private flags = new Uint8Array(1 << 16);
  private status = new Uint8Array(1 << 16);
  private version = new Uint32Array(1 << 16);
  /** Arrival (epoch ms) of each order's "created" status, 0 when not seen: the ledger hop starts there. */
  private createdSeenMs = new Float64Array(1 << 16);
  private readonly hops: Record<HopKind, Series>;
  private readonly dec = new TextDecoder();
  readonly matcher = new StockDeltaMatcher();
  readonly stock = new Map<string, StockView>();
  readonly rows: SecondRow[] = [];
  private current: SecondRow | null = null;
  /** Orders whose last status is final. */
  finalCount = 0;
  /** Highest order number seen + 1. */
  ordersSeen = 0;
  completed = 0;
  fulfilled = 0;
  stockDeltaMessages = 0;
  stockDeltaItems = 0;
  linesSeen = 0;
  linesMatched = 0;
  undecodable = 0;
  messages = 0;
  /** Order keys whose last status was not final yet (the audit asks Sluice about them). */
  readonly openKeys = new Map<number, string>();
  /** Per phase (by intended time): arrival of the last order completed, epoch ms (drain time). */
  readonly lastCompletionMs: number[];
  /** Units per hot SKU that the observer saw allocated (hot-sku audit). */
  readonly allocatedUnits = new Map<string, number>();
  /** Called once per order at its completion (chaos: recovery times); epoch ms. */
  onCompleted: ((n: number, intendedMs: number, arrivalMs: number) => void) | null = null;
  /** Splits, shipments per order, refusals and distances, from the newest status and every fulfil item. */
  readonly routing: RoutingTally;
  /**
   * Backorders filled from the waiting list (lifecycle's backorder mix): orders seen backordered, those seen
   * allocated (or further) after it, and the time between the two statuses' arrivals.
   */
  readonly backorders = { waited: 0, filled: 0, fill: new LatencyHistogram() };
  private readonly backorderedAtMs = new Map<number, number>();

  constructor(
    channel: string,
    runId: string,
    private readonly phases: Phase[],
    private readonly startEpochMs: number,
    /** Statuses in which an order needs nothing more from this run. */
    private readonly finalStatuses: ReadonlySet<string>,
    /** The network's warehouses, for distances the fulfil items do not carry. */
    sites: readonly WarehouseSite[] = [],
  ) {
    this.keyPrefix = keyPrefixOf(channel, runId);
    this.routing = new RoutingTally(sites);
    this.lastCompletionMs = phases.map(() => 0);
    this.series = {
      allocated: new Series(phases.length),
      fulfil: new Series(phases.length),
      stockDelta: new Series(phases.length),
    };
    this.hops = {
      accept: new Series(phases.length),
      orderStage: new Series(phases.length),
      ledgerStage: new Series(phases.length),
      answer: new Series(phases.length),
    };
  }

  /** One output message; `arrivalMs` is epoch ms when it was read. */
  onMessage(subject: string, data: Uint8Array, arrivalMs: number): void {
    this.messages++;
    this.roll(arrivalMs);
    let body: { items?: unknown };
    try {
      body = JSON.parse(this.dec.decode(data));
    } catch {
      this.undecodable++;
      return;
    }
    const items = Array.isArray(body.items) ? (body.items as Record<string, unknown>[]) : [];
    if (subject.startsWith("sluice.out.order.")) for (const item of items) this.onStatus(item, arrivalMs);
    else if (subject.startsWith("sluice.out.fulfil."))
      for (const item of items) this.onFulfil(item, arrivalMs);
    else if (subject.startsWith("sluice.out.stock.")) {
      this.stockDeltaMessages++;
      const channel = subject.slice("sluice.out.stock.".length);
      for (const item of items) this.onStock(item, channel, arrivalMs);
    }
  }

  private ref(item: Record<string, unknown>): OrderRef | null {
    const key = item.orderKey;
    if (typeof key !== "string") return null;
    const ref = parseOrderKey(key, this.keyPrefix);
    if (ref !== null) this.grow(ref.n);
    return ref;
  }

  private phaseOf(ref: OrderRef): number {
    return phaseIndexAt(this.phases, ref.intendedUs / 1e6);
  }

  private intendedMs(ref: OrderRef): number {
    return this.startEpochMs + ref.intendedUs / 1000;
  }

  private onBackorder(n: number, status: string, arrivalMs: number): void {
    const since = this.backorderedAtMs.get(n);
    if (status === "backordered") {
      if (since === undefined) {
        this.backorderedAtMs.set(n, arrivalMs);
        this.backorders.waited++;
      }
    } else if (since !== undefined && since >= 0 && backorderFilledStatuses.has(status)) {
      this.backorderedAtMs.set(n, -1); // counted once
      this.backorders.filled++;
      this.backorders.fill.recordMs(Math.max(0, arrivalMs - since));
    }
  }

  private onStatus(item: Record<string, unknown>, arrivalMs: number): void {
    const ref = this.ref(item);
    if (ref === null) return;
    const n = ref.n;
    const lines = Array.isArray(item.lines) ? (item.lines as Record<string, unknown>[]) : [];
    const flags = this.flags[n] as number;
    if ((flags & bit.seen) === 0) {
      this.flags[n] = flags | bit.seen;
      const sentMs = this.startEpochMs + ref.sentUs / 1000;
      for (const l of lines) {
        // A backorder's line changes no ATS when it arrives (none is available): no stock delta follows it.
        if (typeof l.sku !== "string" || isBackorderSku(l.sku)) continue;
        this.linesSeen++;
        const latency = this.matcher.addLine(l.sku, this.intendedMs(ref), sentMs);
        if (latency !== null) this.recordStockLine(latency, this.phaseOf(ref));
      }
    }
    const version = typeof item.version === "number" ? item.version : 0;
    if (version >= (this.version[n] as number)) {
      this.version[n] = version;
      const code = orderStatuses.indexOf(item.status as (typeof orderStatuses)[number]);
      const wasFinal = this.finalStatuses.has(this.statusOf(n) ?? "unseen");
      this.status[n] = code < 0 ? 255 : code + 1; // 255: a status this bench does not know
      const isFinal = this.finalStatuses.has(String(item.status));
      if (isFinal) this.openKeys.delete(n);
      else this.openKeys.set(n, item.orderKey as string);
      this.finalCount += (isFinal ? 1 : 0) - (wasFinal ? 1 : 0);
      this.routing.onStatus(n, lines);
      this.onBackorder(n, String(item.status), arrivalMs);
    }
    const atMs = typeof item.atMs === "number" ? item.atMs : null;
    const open = lines.some((l) => l.state === "received");
    if (item.event === "created" && open && atMs !== null && this.createdSeenMs[n] === 0) {
      // atMs: when JetStream stored the order; then the order stage's first pass until this status arrived.
      this.createdSeenMs[n] = arrivalMs;
      const phase = this.phaseOf(ref);
      this.hops.accept.record(atMs - this.intendedMs(ref), phase);
      this.hops.orderStage.record(arrivalMs - atMs, phase);
    }
    if (((this.flags[n] as number) & bit.allocated) === 0 && !open) {
      this.flags[n] = (this.flags[n] as number) | bit.allocated;
      const created = this.createdSeenMs[n] as number;
      if (created > 0 && atMs !== null) {
        // atMs: when the ledger's answer was stored; before it the ledger hop, after it the order stage again.
        const phase = this.phaseOf(ref);
        this.hops.ledgerStage.record(atMs - created, phase);
        this.hops.answer.record(arrivalMs - atMs, phase);
      }
      this.completed++;
      (this.current as SecondRow).completed++;
      this.onCompleted?.(n, this.intendedMs(ref), arrivalMs);
      const phase = this.phaseOf(ref);
      this.series.allocated.record(arrivalMs - this.intendedMs(ref), phase);
      if (arrivalMs > (this.lastCompletionMs[phase] as number)) this.lastCompletionMs[phase] = arrivalMs;
      for (const l of lines) {
        if (typeof l.sku !== "string" || !l.sku.startsWith("HOT-")) continue;
        if (l.state !== "allocated" && l.state !== "released") continue;
        this.allocatedUnits.set(l.sku, (this.allocatedUnits.get(l.sku) ?? 0) + (Number(l.qty) || 0));
      }
    }
  }

  private onFulfil(item: Record<string, unknown>, arrivalMs: number): void {
    if (item.type !== "fulfil") return;
    const ref = this.ref(item);
    if (ref === null) return;
    this.routing.onFulfil(item);
    const n = ref.n;
    if (((this.flags[n] as number) & bit.fulfil) !== 0) return;
    this.flags[n] = (this.flags[n] as number) | bit.fulfil;
    this.fulfilled++;
    (this.current as SecondRow).fulfilled++;
    this.series.fulfil.record(arrivalMs - this.intendedMs(ref), this.phaseOf(ref));
  }

  private onStock(item: Record<string, unknown>, channel: string, arrivalMs: number): void {
    const { sku, ats, version, atMs } = item;
    if (
      typeof sku !== "string" ||
      typeof ats !== "number" ||
      typeof version !== "number" ||
      typeof atMs !== "number"
    )
      return;
    this.stockDeltaItems++;
    (this.current as SecondRow).stockDeltas++;
    const had = this.stock.get(`${channel}\u0000${sku}`);
    if (had === undefined || version > had.version)
      this.stock.set(`${channel}\u0000${sku}`, { ats, version, atMs, channel });
    for (const latency of this.matcher.onDelta(sku, atMs, arrivalMs)) {
      // The phase of a line is its order's; the matcher keeps times only, so use the intended time.
      const intendedS = (arrivalMs - latency - this.startEpochMs) / 1000;
      this.recordStockLine(latency, phaseIndexAt(this.phases, intendedS));
    }
  }

  private recordStockLine(latencyMs: number, phase: number): void {
    this.linesMatched++;
    (this.current as SecondRow).stockLines++;
    this.series.stockDelta.record(latencyMs, phase);
  }

  /** Closes the seconds before `nowMs` (the timeline is per second of arrival). */
  roll(nowMs: number): void {
    const s = Math.floor((nowMs - this.startEpochMs) / 1000);
    // Arrival times only grow (one clock); anything earlier counts in the current second.
    if (this.current !== null && this.current.s >= s) return;
    if (this.current !== null) this.close(this.current);
    const from = this.current === null ? Math.min(s, 0) : this.current.s + 1;
    for (let t = from; t < s; t++) this.close(this.emptyRow(t)); // seconds with no output at all
    this.current = this.emptyRow(s);
  }

  private emptyRow(s: number): SecondRow {
    const empty = { p50: 0, p90: 0, p99: 0, max: 0, count: 0 };
    return {
      s,
      completed: 0,
      fulfilled: 0,
      stockDeltas: 0,
      stockLines: 0,
      latencyMs: { allocated: { ...empty }, fulfil: { ...empty }, stockDelta: { ...empty } },
    };
  }

  private close(row: SecondRow): void {
    for (const kind of latencyKinds) {
      const h = this.series[kind].second;
      const ms = (us: number) => Math.round(us) / 1000;
      row.latencyMs[kind] = {
        p50: ms(h.quantileUs(0.5)),
        p90: ms(h.quantileUs(0.9)),
        p99: ms(h.quantileUs(0.99)),
        max: ms(h.maxUs),
        count: h.count,
      };
      h.reset();
    }
    if (row.s >= 0) this.rows.push(row);
  }

  /** Ends the timeline at `nowMs`; call once, at the end. */
  finish(nowMs: number): void {
    this.roll(nowMs);
    if (this.current !== null) this.close(this.current);
    this.current = null;
  }

  /** p99 of the allocated latency over the last `seconds` closed seconds (for the progress line). */
  recentP99Ms(kind: LatencyKind): number {
    const last = this.rows[this.rows.length - 1];
    return last?.latencyMs[kind].p99 ?? 0;
  }

  histogram(kind: LatencyKind): { overall: LatencyHistogram; phases: LatencyHistogram[] } {
    return { overall: this.series[kind].overall, phases: this.series[kind].phases };
  }

  summaries(kind: LatencyKind): { overall: LatencySummary; phases: Record<string, LatencySummary> } {
    const s = this.series[kind];
    return {
      overall: s.overall.summary(),
      phases: Object.fromEntries(
        this.phases.map((p, i) => [p.name, (s.phases[i] as LatencyHistogram).summary()]),
      ),
    };
  }

  hopSummaries(kind: HopKind): { overall: LatencySummary; phases: Record<string, LatencySummary> } {
    const s = this.hops[kind];
    return {
      overall: s.overall.summary(),
      phases: Object.fromEntries(
        this.phases.map((p, i) => [p.name, (s.phases[i] as LatencyHistogram).summary()]),
      ),
    };
  }

  /** The last status seen for order n (null when never seen). */
  statusOf(n: number): string | null {
    if (n >= this.status.length) return null;
    const code = this.status[n] as number;
    return code === 0 ? null : (orderStatuses[code - 1] ?? "unknown");
  }

  isAllocated(n: number): boolean {
    return n < this.flags.length && ((this.flags[n] as number) & bit.allocated) !== 0;
  }

  private grow(n: number): void {
    if (n + 1 > this.ordersSeen) this.ordersSeen = n + 1;
    if (n < this.flags.length) return;
    const size = Math.max(n + 1, this.flags.length * 2);
    const f = new Uint8Array(size);
    f.set(this.flags);
    this.flags = f;
    const st = new Uint8Array(size);
    st.set(this.status);
    this.status = st;
    const v = new Uint32Array(size);
    v.set(this.version);
    this.version = v;
    const c = new Float64Array(size);
    c.set(this.createdSeenMs);
    this.createdSeenMs = c;
  }
}
