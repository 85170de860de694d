// The report: every figure of a run in one JSON document (schema "sluice-bench/1"), from which the Markdown
// and HTML reports are rendered. docs/bench.md describes each field.
import type { Audit } from "./audit.ts";
import type { ChaosReport } from "./chaos-run.ts";
import type { ClusterInfo } from "./cluster-run.ts";
import type { Machine, Versions } from "./env.ts";
import type { HistogramJson, LatencySummary } from "./histogram.ts";
import type { FollowUpCounts, LoadDone } from "./loadgen.ts";
import { type HopKind, hopKinds, type LatencyKind, latencyKinds, type Observer } from "./observe.ts";
import { type BenchOptions, limits, type Phase, phaseIndexAt } from "./options.ts";
import type { NetworkSummary } from "./replay-network.ts";
import type { RoutingFigures } from "./routing-tally.ts";
import { type Sample, type StageCounters, type StageName, stageDelta, stageNames } from "./sample.ts";
import {
  buildSweepReport,
  type CounterPoint,
  cpuMsPerOrder,
  peakIn,
  type StepJudgement,
  type SweepLatency,
  type SweepReport,
  type SweepStepInput,
  sweepRates,
} from "./sweep.ts";

export const reportSchema = "sluice-bench/1";

export type RawJetStream = {
  messages: number;
  messageBytes: number;
  publishPerSecond: number;
  consumeAckPerSecond: number;
  publishThenConsumePerSecond: number;
};

export type LatencyReport = {
  label: string;
  description: string;
  observed: boolean;
  note: string | null;
  overall: LatencySummary;
  phases: Record<string, LatencySummary>;
  histogram: HistogramJson;
};

export type TimelineRow = {
  s: number;
  phase: string;
  offered: number;
  sent: number;
  accepted: number;
  completed: number;
  fulfilled: number;
  stockDeltas: number;
  latencyMs: Record<LatencyKind, { p50: number; p90: number; p99: number; max: number; count: number }>;
  lag: Record<StageName, number> | null;
  cpuCores: { sluice: number; nats: number; loadgen: number; harness: number } | null;
  /** VmRSS: anonymous + file-backed. */
  rssBytes: { sluice: number; nats: number } | null;
  /** RssAnon: the process's own memory (heap, buffers). */
  rssAnonBytes: { sluice: number; nats: number } | null;
  /** RssFile + RssShmem: resident pages of mapped files (Sluice's LMDB maps: reclaimable page cache). */
  rssFileBytes: { sluice: number; nats: number } | null;
};

export type PhaseReport = Phase & {
  offered: number;
  accepted: number;
  completed: number;
  completedPerSecond: number;
  /** Arrival of the phase's last order's completion, seconds after the start. */
  lastCompletionS: number | null;
  cpuCores: { sluice: number; nats: number; loadgen: number; harness: number } | null;
  /** Sluice's peak RSS over the samples taken in the phase: total, anonymous, file-backed (0: none taken). */
  sluiceRssBytesMax: number;
  sluiceRssAnonBytesMax: number;
  sluiceRssFileBytesMax: number;
  stages: Record<StageName, StageCounters> | null;
};

export type Target = {
  name: string;
  target: string;
  measured: string;
  verdict: "met" | "missed" | "not measured" | "not applicable";
  note: string;
};

export type ResourceUse = {
  cpuSeconds: number;
  cpuCoresMean: number;
  cpuCoresMax: number;
  /** Peaks over the run's samples, each on its own (they may come from different seconds). */
  rssBytesMax: number;
  rssAnonBytesMax: number;
  rssFileBytesMax: number;
};

/** One process of several (--nodes, --nats-cluster): its use over the run and its CPU in the peak phase. */
export type ProcessUse = ResourceUse & {
  name: string;
  role: "sluice" | "nats";
  /** Mean cores during the phase with the highest offered rate (null: too few samples). */
  peakPhaseCores: number | null;
};

/** --nodes / --nats-cluster: how the processes ran (null: one Sluice on its embedded nats-server). */
export type ClusterReport = ClusterInfo & { note: string };

export type BurstGaps = {
  startS: number;
  endS: number;
  /** Whole seconds of the burst in the per-second completion series (timeline[].completed). */
  seconds: number;
  /** Of them, the seconds in which no order completed. */
  secondsWithoutCompletions: number;
  /** The longest run of consecutive seconds without a completion, and the second it began (null: none). */
  runWithoutCompletionsSMax: number;
  runWithoutCompletionsStartS: number | null;
  note: string;
};

export type BenchReport = {
  schema: typeof reportSchema;
  title: string;
  startedAt: string;
  finishedAt: string;
  wallSeconds: number;
  command: string[];
  options: BenchOptions;
  run: { runId: string; startEpochMs: number; loadSeconds: number; reportDir: string };
  machine: Machine;
  versions: Versions;
  workload: {
    orderMessageBytesMean: number;
    linesPerOrder: Record<string, number>;
    unitsOffered: number;
    skuPopularity: string;
    trace: { source: string; orders: number; skipped: number; spanMs: number; speedup: number } | null;
  };
  phases: PhaseReport[];
  load: {
    offered: number;
    sent: number;
    accepted: number;
    errors: number;
    behindMsMax: number;
    inflightMax: number;
    inFlightPublishesMax: number;
    followUps: FollowUpCounts | null;
    reactionsAwaited: number;
    /**
     * lifecycle: orders of the backorder mix seen backordered, those seen allocated after it (filled from the
     * waiting list when their unit arrived), and the time between the two statuses; null otherwise.
     */
    backorders?: { waited: number; filled: number; fillMs: LatencySummary } | null;
  };
  raw: RawJetStream | null;
  throughput: {
    completedOrders: number;
    fulfilledOrders: number;
    /** The phase with the highest offered rate: the headline figures are its. */
    phase: string;
    offeredPerSecond: number;
    /** Its orders completed per second, from its start to its last order's completion. */
    ordersPerSecond: number;
    sustainedPeakPerSecond: number;
    sustainedWindowS: number;
    ratioToRaw: number | null;
    keptUp: boolean;
    note: string;
  };
  latency: Record<LatencyKind, LatencyReport>;
  hops: Record<
    HopKind,
    { label: string; description: string; overall: LatencySummary; phases: Record<string, LatencySummary> }
  >;
  drain: {
    afterLoadEndS: number | null;
    burstEndS: number | null;
    afterBurstEndS: number | null;
    lagDrainedAfterBurstS: number | null;
    note: string;
  };
  /** flash-sale only (else null): the burst's seconds in which no order completed. */
  burst: BurstGaps | null;
  lag: { maxMessages: number; maxAtS: number; byStageMax: Record<StageName, number> };
  resources: {
    sluice: ResourceUse;
    natsServer: ResourceUse;
    loadgen: ResourceUse;
    harnessCpuSeconds: number;
    windowS: number;
    /** The memory target's budget (limits.sluiceRssAnonBudgetBytes), judged on Sluice's anonymous RSS. */
    sluiceRssAnonBudgetBytes: number;
    /**
     * --nodes / --nats-cluster: every Sluice node and nats-server on its own (then `sluice` and `natsServer`
     * are their sums: CPU seconds and RSS of all nodes together); null otherwise (always written; optional
     * for reports built before it existed).
     */
    processes?: ProcessUse[] | null;
  };
  where: {
    stages: Record<
      StageName,
      StageCounters & { messagesPerBatch: number; applyMsPerBatch: number; commitMsPerBatch: number }
    >;
    sluiceCpuMsPerOrder: number | null;
    findings: string[];
    profile: string | null;
  };
  observer: {
    messages: number;
    undecodable: number;
    linesSeen: number;
    linesMatchedToStockDelta: number;
    stockDeltaMessages: number;
    stockDeltaItems: number;
  };
  audit: Audit;
  targets: Target[];
  timeline: TimelineRow[];
  notes: string[];
  /** chaos: every fault, when, how long held, what Sluice did, how long recovery took (null otherwise). */
  chaos: ChaosReport | null;
  /** sweep: one row per step run, the saturation verdicts, the curve (null otherwise). */
  sweep: SweepReport | null;
  /** --nodes / --nats-cluster: the Sluice nodes and nats-servers, placement, partition moves (null otherwise). */
  cluster: ClusterReport | null;
  /**
   * What the outputs say about routing: splits, shipments per order, refusals, fulfilment requests and their
   * distances (routing-tally.ts), and the network the run used (null: not recorded). Optional for reports
   * built before it existed.
   */
  routing?: RoutingReport;
};

export type RoutingReport = RoutingFigures & { network: NetworkSummary | null; note: string };

export type BuildInput = {
  options: BenchOptions;
  argv: string[];
  phases: Phase[];
  runId: string;
  startEpochMs: number;
  startedAt: Date;
  finishedAt: Date;
  reportDir: string;
  machine: Machine;
  versions: Versions;
  orderMessageBytesMean: number;
  trace: BenchReport["workload"]["trace"];
  load: LoadDone;
  raw: RawJetStream | null;
  observer: Observer;
  samples: Sample[];
  audit: Audit;
  harnessCpuSeconds: number;
  profileDir: string | null;
  notes: string[];
  chaos?: ChaosReport | null;
  /** sweep: the run's judgement of each step (null: not judged). */
  sweep?: { judgements: (StepJudgement | null)[] } | null;
  cluster?: ClusterInfo | null;
  /** The network and stock the run used (replay-network.ts); absent: not recorded. */
  network?: NetworkSummary | null;
};

const round = (n: number, digits = 3) => {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
};

export const latencyLabels: Record<LatencyKind, { label: string; description: string }> = {
  allocated: {
    label: "accept → allocated",
    description:
      "intended send time → the first status on sluice.out.order in which no line is still received: ledger reservation committed and answered (per order)",
  },
  fulfil: {
    label: "accept → fulfilment request",
    description: "intended send time → the first fulfil item on sluice.out.fulfil.<warehouse> (per order)",
  },
  stockDelta: {
    label: "accept → stock delta",
    description:
      "intended send time → the first delta on sluice.out.stock for the line's SKU with atMs ≥ the order's send time (per order line; approximation in docs/bench.md)",
  },
};

export const hopLabels: Record<HopKind, { label: string; description: string }> = {
  accept: {
    label: "publish → stored",
    description:
      "intended send time → JetStream stored the order (the created status's atMs): the load generator's lateness, the publish, the server",
  },
  orderStage: {
    label: "order stage",
    description:
      "stored → its created status arrived: waiting in the order partition, apply, LMDB commit, outbox publish",
  },
  ledgerStage: {
    label: "ledger stage",
    description:
      "created status arrived → the ledger's answer stored (the allocated status's atMs): the line request's hop, the ledger partition's wait, apply, commit, publish",
  },
  answer: {
    label: "answer applied",
    description:
      "answer stored → the allocated status arrived: the order partition's wait, apply, commit, outbox publish",
  },
};

export function buildReport(input: BuildInput): BenchReport {
  const { options, phases, observer, samples, load } = input;
  const loadSeconds = phases[phases.length - 1]?.endS ?? 0;
  const timeline = buildTimeline(input);
  const sustainedPeak = bestWindow(
    timeline.map((r) => r.completed),
    limits.sustainedWindowS,
  );
  const lastCompletionMs = Math.max(0, ...observer.lastCompletionMs);
  const afterLoadEndS =
    observer.completed > 0
      ? Math.max(0, round((lastCompletionMs - input.startEpochMs) / 1000 - loadSeconds))
      : null;
  const phaseReports = phaseFigures(input, timeline);
  const peak = peakPhase(phaseReports);
  const rawRate = input.raw?.publishThenConsumePerSecond ?? null;
  const drain = drainFigures(input, timeline, afterLoadEndS);
  const burst = phases.find((p) => p.name === "burst");
  const burstGaps =
    options.scenario === "flash-sale" && burst !== undefined
      ? gapsWithoutCompletions(timeline, burst.startS, burst.endS)
      : null;
  const lagMax = lagFigures(samples);
  const resources = resourceFigures(samples, input.harnessCpuSeconds, phases[peak.index]);
  const hops = Object.fromEntries(
    hopKinds.map((kind) => [kind, { ...hopLabels[kind], ...observer.hopSummaries(kind) }]),
  ) as BenchReport["hops"];
  const where = whereTimeGoes(input, phaseReports, peak, hops, resources);
  const latency = Object.fromEntries(
    latencyKinds.map((kind) => {
      const s = observer.summaries(kind);
      const observed = s.overall.count > 0;
      const note =
        kind === "stockDelta" && !observed
          ? "no stock deltas observed: this Sluice no synced channel in the bench network, so there is no accept-to-stock-delta figure"
          : !observed
            ? "nothing observed"
            : null;
      return [
        kind,
        {
          ...latencyLabels[kind],
          observed,
          note,
          overall: s.overall,
          phases: s.phases,
          histogram: observer.histogram(kind).overall.toJSON(),
        },
      ];
    }),
  ) as Record<LatencyKind, LatencyReport>;
  const report: BenchReport = {
    schema: reportSchema,
    title: titleOf(options, phases),
    startedAt: input.startedAt.toISOString(),
    finishedAt: input.finishedAt.toISOString(),
    wallSeconds: round((input.finishedAt.getTime() - input.startedAt.getTime()) / 1000, 1),
    command: input.argv,
    options,
    run: { runId: input.runId, startEpochMs: input.startEpochMs, loadSeconds, reportDir: input.reportDir },
    machine: input.machine,
    versions: input.versions,
    workload: {
      orderMessageBytesMean: input.orderMessageBytesMean,
      linesPerOrder: load.linesPerOrder,
      unitsOffered: load.unitsOffered,
      skuPopularity:
        options.scenario === "replay"
          ? "the trace's own"
          : `Zipf s=${options.zipf} over ${options.skus} SKUs`,
      trace: input.trace,
    },
    phases: phaseReports,
    load: {
      offered: load.offered,
      sent: load.sent,
      accepted: load.accepted,
      errors: load.errors,
      behindMsMax: load.behindMsMax,
      inflightMax: load.inflightMax,
      inFlightPublishesMax: options.inFlightPublishesMax,
      followUps: options.scenario === "lifecycle" ? load.followUps : null,
      reactionsAwaited: load.reactionsAwaited,
      backorders:
        options.scenario === "lifecycle"
          ? {
              waited: observer.backorders.waited,
              filled: observer.backorders.filled,
              fillMs: observer.backorders.fill.summary(),
            }
          : null,
    },
    raw: input.raw,
    throughput: {
      completedOrders: observer.completed,
      fulfilledOrders: observer.fulfilled,
      phase: peak.name,
      offeredPerSecond: Math.round(peak.ratePerSecond),
      ordersPerSecond: Math.round(peak.ordersPerSecond),
      sustainedPeakPerSecond: Math.round(sustainedPeak),
      sustainedWindowS: limits.sustainedWindowS,
      ratioToRaw: rawRate === null || rawRate === 0 ? null : round(peak.ordersPerSecond / rawRate),
      keptUp: peak.keptUp,
      note: peak.keptUp
        ? `Sluice kept up with the ${peak.name} phase's ${Math.round(peak.ratePerSecond).toLocaleString("en-US")} orders/s: its rate is what was offered and the ratio to raw JetStream a lower bound; raise the rate to find the limit`
        : `Sluice fell behind the ${peak.name} phase's ${Math.round(peak.ratePerSecond).toLocaleString("en-US")} orders/s: orders/s is what it completed, from the phase's start to its last order`,
    },
    latency,
    hops,
    drain,
    burst: burstGaps,
    lag: lagMax,
    resources,
    where,
    observer: {
      messages: observer.messages,
      undecodable: observer.undecodable,
      linesSeen: observer.linesSeen,
      linesMatchedToStockDelta: observer.linesMatched,
      stockDeltaMessages: observer.stockDeltaMessages,
      stockDeltaItems: observer.stockDeltaItems,
    },
    audit: input.audit,
    targets: [],
    timeline,
    notes: input.notes,
    chaos: input.chaos ?? null,
    sweep:
      options.scenario === "sweep"
        ? sweepFigures(input, timeline, input.raw?.publishThenConsumePerSecond ?? null)
        : null,
    cluster: clusterFigures(input.cluster ?? null),
    routing: routingReport(observer.routing.figures(), input.network ?? null),
  };
  report.targets = targetsOf(report);
  return report;
}

/** The routing section: the tally's figures, the network, and a sentence that says what they mean. */
export function routingReport(f: RoutingFigures, network: NetworkSummary | null): RoutingReport {
  const n = formatCount;
  const pct = (share: number | null) => (share === null ? "" : ` (${round(share * 100, 1)} %)`);
  const split =
    f.ordersPlaced === 0
      ? "no order was placed at a warehouse"
      : `${n(f.ordersSplit)} of ${n(f.ordersPlaced)} placed orders split across warehouses${pct(f.splitShare)}, ${f.shipmentsPerOrderMean} warehouses per placed order`;
  const reasons = Object.entries(f.refusals.byReason)
    .map(([r, c]) => `${r} ${n(c)}`)
    .join(", ");
  const refused =
    f.refusals.lines === 0 ? "no line refused" : `${n(f.refusals.lines)} lines refused (${reasons})`;
  const km =
    f.distance.kmMean === null
      ? "no distances (neither the decisions nor the points of warehouse and ship-to give one)"
      : `${f.distance.kmMean} km mean to the ship-to point (${f.distance.kmPerUnitMean} km per unit, max ${f.distance.kmMax} km)`;
  return {
    ...f,
    network,
    note: `${split}; ${refused}; ${n(f.fulfil.requests)} fulfilment requests, ${km}`,
  };
}

/** Warehouse rows shown in the routing tables at most (report.json has them all). */
const routingWarehouseRowsMax = 20;

/** The network in a sentence: where the rule set and the stock came from, and the files to replay it with. */
export function networkLine(w: NetworkSummary): string {
  const n = formatCount;
  const source = {
    derived: "derived from the trace's origins (one warehouse per origin)",
    file: "the rule set given with --network",
    bench: "the bench's own (bench/harness/network.toml)",
  }[w.source];
  const stock =
    w.stockSource === "per-sku"
      ? "--stock units of every SKU at its first warehouse"
      : `${w.stockSource === "file" ? "from --stock-file" : `derived: units sold from each warehouse × ${w.stockHeadroom}, rounded up`}: ${n(w.stockRows ?? 0)} positions, ${n(w.stockUnits ?? 0)} units`;
  const orphans =
    w.linesWithoutOrigin === 0
      ? ""
      : `; ${n(w.linesWithoutOrigin)} trace lines (${n(w.unitsWithoutOrigin)} units) named no origin and were stocked at the busiest warehouse`;
  return `${source}: ${n(w.warehouses)} warehouses, ${n(w.warehousesWithPoint)} with a point; stock ${stock}${orphans}. Rule set: ${w.networkFile}${w.stockFile === null ? "" : `, stock: ${w.stockFile}`}`;
}

/** The routing section's tables, for Markdown and HTML alike. */
export function routingTables(
  r: RoutingReport,
): Array<{ title: string; header: string[]; rows: (string | number)[][] }> {
  const n = formatCount;
  const warehouses = Object.entries(r.fulfil.byWarehouse);
  const shown = warehouses.slice(0, routingWarehouseRowsMax);
  const rest = warehouses.slice(routingWarehouseRowsMax);
  const restRow = { requests: 0, lines: 0, units: 0 };
  for (const [, w] of rest) {
    restRow.requests += w.requests;
    restRow.lines += w.lines;
    restRow.units += w.units;
  }
  return [
    {
      title: "Orders by the number of warehouses they ship from (newest status)",
      header: ["warehouses", "orders"],
      rows: Object.entries(r.shipmentsPerOrder).map(([k, c]) => [k, n(c)]),
    },
    {
      title: "Refused lines by reason (newest status)",
      header: ["refusal", "lines"],
      rows: Object.entries(r.refusals.byReason).map(([k, c]) => [k, n(c)]),
    },
    {
      title: "Fulfilment requests by warehouse",
      header: ["warehouse", "requests", "lines", "units"],
      rows: [
        ...shown.map(([id, w]) => [id, n(w.requests), n(w.lines), n(w.units)]),
        ...(rest.length === 0
          ? []
          : [[`${rest.length} more`, n(restRow.requests), n(restRow.lines), n(restRow.units)]]),
      ],
    },
    {
      title: `Fulfilment requests by distance to the ship-to point (${n(r.distance.fromDecision)} from the routing decision, ${n(r.distance.computed)} computed from the points, ${n(r.distance.unknown)} unknown)`,
      header: ["distance", "requests"],
      rows: r.distance.buckets.map((b) => [b.label, n(b.requests)]),
    },
  ];
}

/** The cluster section: what ran, and a word on partition moves during the load. */
function clusterFigures(info: ClusterInfo | null): ClusterReport | null {
  if (info === null) return null;
  const nats = info.nats.cluster
    ? `a ${info.nats.servers}-node nats-server cluster (streams with ${info.nats.replicas} replicas)`
    : "one nats-server run by the harness";
  const sluice = info.clusterMode
    ? `${info.nodes} Sluice node${info.nodes === 1 ? "" : "s"} in cluster mode (each partition on one node, by lease), settled ${info.settleS} s after the last started`
    : "one Sluice process (not in cluster mode)";
  const moves =
    info.moves.length === 0
      ? info.clusterMode
        ? "; no partition changed owner during the run"
        : ""
      : `; ${info.moves.length} partition moves during the run (a lease lost or handed off: see moves)`;
  return { ...info, note: `${sluice} on ${nats}${moves}` };
}

/** " · 4 nodes · NATS cluster (R3)": what the title adds for --nodes and --nats-cluster. */
export function setupSuffix(o: BenchOptions): string {
  const count = o.nodes?.length === 1 ? (o.nodes[0] as number) : null;
  const nodes = count === null ? "" : ` · ${count} node${count === 1 ? "" : "s"}`;
  return `${nodes}${o.natsCluster ? ` · NATS cluster (R${limits.natsClusterServers})` : ""}`;
}

function titleOf(o: BenchOptions, phases: Phase[]): string {
  return `${scenarioTitle(o, phases)}${setupSuffix(o)}`;
}

function scenarioTitle(o: BenchOptions, phases: Phase[]): string {
  switch (o.scenario) {
    case "flash-sale":
      return `flash-sale ${o.baseline} → ${o.baseline * o.multiplier} orders/s for ${o.burstS} s`;
    case "chaos":
      return `chaos ${o.rate} orders/s for ${o.durationS} s with ${o.faults} faults`;
    case "sweep": {
      const rates = sweepRates(o);
      return `sweep ${rates[0]} → ${rates[rates.length - 1]} orders/s, ${o.stepS} s steps`;
    }
    case "replay":
      return `replay of ${o.trace} (${Math.round(phases[0]?.ratePerSecond ?? 0)} orders/s on average)`;
    default:
      return `${o.scenario} ${o.rate} orders/s for ${o.durationS} s`;
  }
}

/** Best mean over `window` consecutive seconds. */
export function bestWindow(values: number[], window: number): number {
  if (values.length === 0) return 0;
  const w = Math.min(window, values.length);
  let sum = 0;
  for (let i = 0; i < w; i++) sum += values[i] as number;
  let best = sum;
  for (let i = w; i < values.length; i++) {
    sum += (values[i] as number) - (values[i - w] as number);
    if (sum > best) best = sum;
  }
  return best / w;
}

function buildTimeline(input: BuildInput): TimelineRow[] {
  const { observer, load, samples, phases } = input;
  const rows: TimelineRow[] = [];
  const bySecond = new Map<number, Sample>();
  for (const s of samples) bySecond.set(Math.round(s.tS), s);
  const lastS = Math.max(
    observer.rows.length > 0 ? (observer.rows[observer.rows.length - 1] as { s: number }).s : 0,
    load.offeredBySecond.length - 1,
    load.sentBySecond.length - 1,
  );
  const obs = new Map(observer.rows.map((r) => [r.s, r]));
  let prev: Sample | undefined;
  for (let s = 0; s <= lastS; s++) {
    const sample = bySecond.get(s + 1) ?? bySecond.get(s);
    const o = obs.get(s);
    const cpuCores =
      sample !== undefined && prev !== undefined && sample.tS > prev.tS
        ? {
            sluice: round((sample.cpuSeconds.sluice - prev.cpuSeconds.sluice) / (sample.tS - prev.tS), 2),
            nats: round((sample.cpuSeconds.nats - prev.cpuSeconds.nats) / (sample.tS - prev.tS), 2),
            loadgen: round((sample.cpuSeconds.loadgen - prev.cpuSeconds.loadgen) / (sample.tS - prev.tS), 2),
            harness: round((sample.cpuSeconds.harness - prev.cpuSeconds.harness) / (sample.tS - prev.tS), 2),
          }
        : null;
    if (sample !== undefined) prev = sample;
    const empty = { p50: 0, p90: 0, p99: 0, max: 0, count: 0 };
    rows.push({
      s,
      phase:
        s < (phases[phases.length - 1]?.endS ?? 0) ? (phases[phaseIndexAt(phases, s)]?.name ?? "") : "drain",
      offered: load.offeredBySecond[s] ?? 0,
      sent: load.sentBySecond[s] ?? 0,
      accepted: load.acceptedBySecond[s] ?? 0,
      completed: o?.completed ?? 0,
      fulfilled: o?.fulfilled ?? 0,
      stockDeltas: o?.stockDeltas ?? 0,
      latencyMs: o?.latencyMs ?? { allocated: { ...empty }, fulfil: { ...empty }, stockDelta: { ...empty } },
      lag: sample?.scraped ? { ...sample.lag } : null,
      cpuCores,
      rssBytes: sample === undefined ? null : { sluice: sample.rssBytes.sluice, nats: sample.rssBytes.nats },
      rssAnonBytes:
        sample === undefined ? null : { sluice: sample.rssAnonBytes.sluice, nats: sample.rssAnonBytes.nats },
      rssFileBytes:
        sample === undefined ? null : { sluice: sample.rssFileBytes.sluice, nats: sample.rssFileBytes.nats },
    });
  }
  return rows;
}

/** sweep: each step's row (sweep.ts builds the report from them). */
function sweepFigures(input: BuildInput, timeline: TimelineRow[], rawPerSecond: number | null): SweepReport {
  const { options, phases, observer, samples } = input;
  const allocated = observer.summaries("allocated").phases;
  const stock = observer.summaries("stockDelta").phases;
  const cpu: CounterPoint[] = samples.map((s) => ({ tS: s.tS, value: s.cpuSeconds.sluice }));
  const rss = sluiceRssSeries(samples);
  const sum = (from: number, to: number, pick: (r: TimelineRow) => number) =>
    timeline.filter((r) => r.s >= from && r.s < to).reduce((n, r) => n + pick(r), 0);
  const lat = (s: LatencySummary | undefined): SweepLatency => ({
    count: s?.count ?? 0,
    p50Ms: s?.p50Ms ?? 0,
    p99Ms: s?.p99Ms ?? 0,
    p999Ms: s?.p999Ms ?? 0,
  });
  const steps: SweepStepInput[] = phases.map((p, i) => {
    const stepS = p.endS - p.startS;
    const windowEndS = p.endS + options.settleS;
    const judgement = input.sweep?.judgements[i] ?? null;
    const a = allocated[p.name];
    const lastS = observer.lastCompletionMs[i]
      ? (observer.lastCompletionMs[i] - input.startEpochMs) / 1000
      : p.endS;
    const sd = stock[p.name];
    return {
      phase: p,
      offeredPerSecond: p.ratePerSecond,
      offered: sum(p.startS, p.endS, (r) => r.offered),
      acceptedPerSecond: Math.round(sum(p.startS, p.endS, (r) => r.accepted) / Math.max(1e-9, stepS)),
      completedPerSecond: Math.round(
        judgement !== null
          ? judgement.completedByJudge / Math.max(1e-9, stepS)
          : (a?.count ?? 0) / Math.max(1e-9, Math.max(p.endS, lastS) - p.startS),
      ),
      completed: a?.count ?? 0,
      allocated: lat(a),
      stockDelta: sd === undefined || sd.count === 0 ? null : lat(sd),
      sluiceCpuMsPerOrder: cpuMsPerOrder(
        cpu,
        p.startS,
        windowEndS,
        sum(p.startS, windowEndS, (r) => r.completed),
      ),
      ...sluiceRssPeaks(rss, p.startS, windowEndS),
      judgement,
    };
  });
  return buildSweepReport(options, sweepRates(options), steps, rawPerSecond);
}

/** Sluice's RSS over the samples: total, anonymous, file-backed. */
function sluiceRssSeries(samples: Sample[]): Record<"total" | "anon" | "file", CounterPoint[]> {
  return {
    total: samples.map((s) => ({ tS: s.tS, value: s.rssBytes.sluice })),
    anon: samples.map((s) => ({ tS: s.tS, value: s.rssAnonBytes.sluice })),
    file: samples.map((s) => ({ tS: s.tS, value: s.rssFileBytes.sluice })),
  };
}

function sluiceRssPeaks(
  rss: ReturnType<typeof sluiceRssSeries>,
  fromS: number,
  toS: number,
): Pick<PhaseReport, "sluiceRssBytesMax" | "sluiceRssAnonBytesMax" | "sluiceRssFileBytesMax"> {
  return {
    sluiceRssBytesMax: peakIn(rss.total, fromS, toS),
    sluiceRssAnonBytesMax: peakIn(rss.anon, fromS, toS),
    sluiceRssFileBytesMax: peakIn(rss.file, fromS, toS),
  };
}

/**
 * The seconds in [fromS, toS) of the per-second completion series with no completion, and the longest run of
 * them. A second missing from the series (the run broke) counts as one without completions.
 */
export function gapsWithoutCompletions(timeline: TimelineRow[], fromS: number, toS: number): BurstGaps {
  const completed = new Map(timeline.map((r) => [r.s, r.completed]));
  let seconds = 0;
  let without = 0;
  let run = 0;
  let runMax = 0;
  let runMaxStartS: number | null = null;
  for (let s = Math.ceil(fromS); s < toS; s++) {
    seconds++;
    if ((completed.get(s) ?? 0) > 0) {
      run = 0;
      continue;
    }
    without++;
    run++;
    if (run > runMax) {
      runMax = run;
      runMaxStartS = s - run + 1;
    }
  }
  const note =
    seconds === 0
      ? "the burst has no whole second in the run"
      : without === 0
        ? `orders completed in every one of the burst's ${seconds} seconds`
        : `no order completed in ${without} of the burst's ${seconds} seconds; the longest run without one: ${runMax} s from ${runMaxStartS} s`;
  return {
    startS: fromS,
    endS: toS,
    seconds,
    secondsWithoutCompletions: without,
    runWithoutCompletionsSMax: runMax,
    runWithoutCompletionsStartS: runMaxStartS,
    note,
  };
}

function phaseFigures(input: BuildInput, timeline: TimelineRow[]): PhaseReport[] {
  const { phases, samples, observer } = input;
  const rss = sluiceRssSeries(samples);
  const at = (s: number) => {
    let best: Sample | undefined;
    for (const x of samples)
      if (x.scraped && (best === undefined || Math.abs(x.tS - s) < Math.abs(best.tS - s))) best = x;
    return best;
  };
  const atAny = (t: number) => {
    let best: Sample | undefined;
    for (const x of samples) if (best === undefined || Math.abs(x.tS - t) < Math.abs(best.tS - t)) best = x;
    return best;
  };
  return phases.map((p, i) => {
    const from = at(p.startS);
    const to = at(p.endS);
    const c0 = atAny(p.startS);
    const c1 = atAny(p.endS);
    const last = observer.lastCompletionMs[i] ?? 0;
    const dt = c0 !== undefined && c1 !== undefined ? c1.tS - c0.tS : 0;
    const cores = (pick: (s: Sample) => number) => round((pick(c1 as Sample) - pick(c0 as Sample)) / dt, 2);
    const offered = timeline
      .filter((r) => r.s >= p.startS && r.s < p.endS)
      .reduce((n, r) => n + r.offered, 0);
    const completed = observer.summaries("allocated").phases[p.name]?.count ?? 0;
    return {
      ...p,
      offered,
      accepted: timeline.filter((r) => r.s >= p.startS && r.s < p.endS).reduce((n, r) => n + r.accepted, 0),
      completed,
      completedPerSecond: Math.round(
        timeline.filter((r) => r.s >= p.startS && r.s < p.endS).reduce((n, r) => n + r.completed, 0) /
          Math.max(1, Math.ceil(p.endS - p.startS)),
      ),
      lastCompletionS: last > 0 ? round((last - input.startEpochMs) / 1000) : null,
      cpuCores:
        dt > 0
          ? {
              sluice: cores((s) => s.cpuSeconds.sluice),
              nats: cores((s) => s.cpuSeconds.nats),
              loadgen: cores((s) => s.cpuSeconds.loadgen),
              harness: cores((s) => s.cpuSeconds.harness),
            }
          : null,
      ...sluiceRssPeaks(rss, p.startS, p.endS),
      stages:
        from !== undefined && to !== undefined && to.tS > from.tS
          ? {
              order: stageDelta(from.stages.order, to.stages.order),
              ledger: stageDelta(from.stages.ledger, to.stages.ledger),
            }
          : null,
    };
  });
}

function drainFigures(
  input: BuildInput,
  timeline: TimelineRow[],
  afterLoadEndS: number | null,
): BenchReport["drain"] {
  const { phases, observer, options } = input;
  const burst = phases.findIndex((p) => p.name === "burst");
  if (options.scenario !== "flash-sale" || burst < 0) {
    return {
      afterLoadEndS,
      burstEndS: null,
      afterBurstEndS: null,
      lagDrainedAfterBurstS: null,
      note:
        afterLoadEndS === null
          ? "no order completed"
          : `backlog drained ${afterLoadEndS} s after the load ended (the last order's completion)`,
    };
  }
  const burstEndS = (phases[burst] as Phase).endS;
  const upTo = Math.max(0, ...observer.lastCompletionMs.slice(0, burst + 1));
  const afterBurstEndS = upTo > 0 ? Math.max(0, round((upTo - input.startEpochMs) / 1000 - burstEndS)) : null;
  const baselineLag = Math.max(50, options.baseline); // ~1 s of baseline traffic in flight is "no backlog"
  const drained = timeline.find(
    (r) => r.s >= burstEndS && r.lag !== null && r.lag.order + r.lag.ledger <= baselineLag,
  );
  return {
    afterLoadEndS,
    burstEndS,
    afterBurstEndS,
    lagDrainedAfterBurstS: drained === undefined ? null : drained.s - burstEndS,
    note: `backlog drained: the last order offered up to the burst's end completed ${afterBurstEndS ?? "?"} s after it; consumer lag back under ${baselineLag} messages ${drained === undefined ? "never (within the run)" : `${drained.s - burstEndS} s after it (1-s samples)`}`,
  };
}

function lagFigures(samples: Sample[]): BenchReport["lag"] {
  let maxMessages = 0;
  let maxAtS = 0;
  const byStageMax: Record<StageName, number> = { order: 0, ledger: 0 };
  for (const s of samples) {
    if (!s.scraped) continue;
    const total = s.lag.order + s.lag.ledger;
    if (total > maxMessages) {
      maxMessages = total;
      maxAtS = Math.round(s.tS);
    }
    for (const stage of stageNames) byStageMax[stage] = Math.max(byStageMax[stage], s.lag[stage]);
  }
  return { maxMessages, maxAtS, byStageMax };
}

/** Mean cores of one process between the samples nearest to fromS and toS (null: no interval). */
function processCoresIn(samples: Sample[], name: string, fromS: number, toS: number): number | null {
  const near = (t: number) => {
    let best: Sample | undefined;
    for (const x of samples) if (best === undefined || Math.abs(x.tS - t) < Math.abs(best.tS - t)) best = x;
    return best;
  };
  const a = near(fromS);
  const b = near(toS);
  if (a === undefined || b === undefined || b.tS <= a.tS) return null;
  const cpu = (s: Sample) => s.processes?.[name]?.cpuSeconds ?? 0;
  return round((cpu(b) - cpu(a)) / (b.tS - a.tS), 2);
}

function resourceFigures(
  samples: Sample[],
  harnessCpuSeconds: number,
  peak: Phase | undefined,
): BenchReport["resources"] {
  const window = samples.filter((s) => s.tS >= 0);
  const first = window[0];
  const last = window[window.length - 1];
  const windowS = first !== undefined && last !== undefined ? last.tS - first.tS : 0;
  const use = (
    pick: (s: Sample) => number,
    rss: (s: Sample) => number,
    rssAnon: (s: Sample) => number,
    rssFile: (s: Sample) => number,
  ): ResourceUse => {
    let cpuCoresMax = 0;
    for (let i = 1; i < window.length; i++) {
      const a = window[i - 1] as Sample;
      const b = window[i] as Sample;
      if (b.tS > a.tS) cpuCoresMax = Math.max(cpuCoresMax, (pick(b) - pick(a)) / (b.tS - a.tS));
    }
    const cpuSeconds = first !== undefined && last !== undefined ? pick(last) - pick(first) : 0;
    return {
      cpuSeconds: round(cpuSeconds, 2),
      cpuCoresMean: windowS > 0 ? round(cpuSeconds / windowS, 2) : 0,
      cpuCoresMax: round(cpuCoresMax, 2),
      rssBytesMax: Math.max(0, ...samples.map(rss)),
      rssAnonBytesMax: Math.max(0, ...samples.map(rssAnon)),
      rssFileBytesMax: Math.max(0, ...samples.map(rssFile)),
    };
  };
  return {
    sluice: use(
      (s) => s.cpuSeconds.sluice,
      (s) => s.rssBytes.sluice,
      (s) => s.rssAnonBytes.sluice,
      (s) => s.rssFileBytes.sluice,
    ),
    natsServer: use(
      (s) => s.cpuSeconds.nats,
      (s) => s.rssBytes.nats,
      (s) => s.rssAnonBytes.nats,
      (s) => s.rssFileBytes.nats,
    ),
    loadgen: use(
      (s) => s.cpuSeconds.loadgen,
      (s) => s.rssBytes.loadgen,
      (s) => s.rssAnonBytes.loadgen,
      (s) => s.rssFileBytes.loadgen,
    ),
    harnessCpuSeconds: round(harnessCpuSeconds, 2),
    windowS: round(windowS, 1),
    sluiceRssAnonBudgetBytes: limits.sluiceRssAnonBudgetBytes,
    processes: processFigures(samples, use, peak),
  };
}

/** Each sampled process on its own (--nodes, --nats-cluster), Sluice nodes first; null when none was. */
function processFigures(
  samples: Sample[],
  use: (
    pick: (s: Sample) => number,
    rss: (s: Sample) => number,
    rssAnon: (s: Sample) => number,
    rssFile: (s: Sample) => number,
  ) => ResourceUse,
  peak: Phase | undefined,
): ProcessUse[] | null {
  const roles = new Map<string, "sluice" | "nats">();
  for (const s of samples) for (const [name, p] of Object.entries(s.processes ?? {})) roles.set(name, p.role);
  if (roles.size === 0) return null;
  const out: ProcessUse[] = [];
  for (const [name, role] of roles) {
    const of = (s: Sample) => s.processes?.[name];
    out.push({
      name,
      role,
      ...use(
        (s) => of(s)?.cpuSeconds ?? 0,
        (s) => of(s)?.rssBytes ?? 0,
        (s) => of(s)?.rssAnonBytes ?? 0,
        (s) => of(s)?.rssFileBytes ?? 0,
      ),
      peakPhaseCores: peak === undefined ? null : processCoresIn(samples, name, peak.startS, peak.endS),
    });
  }
  return out.sort((a, b) => (a.role === b.role ? 0 : a.role === "sluice" ? -1 : 1));
}

type Peak = { name: string; ratePerSecond: number; ordersPerSecond: number; keptUp: boolean; index: number };

/** The phase with the highest offered rate, and how fast its orders completed. */
function peakPhase(phases: PhaseReport[]): Peak {
  let index = 0;
  phases.forEach((p, i) => {
    if (p.ratePerSecond > (phases[index] as PhaseReport).ratePerSecond) index = i;
  });
  const p = phases[index];
  if (p === undefined) return { name: "", ratePerSecond: 0, ordersPerSecond: 0, keptUp: false, index };
  const endS = Math.max(p.endS, p.lastCompletionS ?? p.endS);
  const ordersPerSecond = p.completed / Math.max(0.001, endS - p.startS);
  // Kept up: every order of the phase completed, the last within a tolerance of the phase's end.
  const keptUp =
    p.completed >= p.offered * 0.999 && (p.lastCompletionS ?? Number.POSITIVE_INFINITY) <= p.endS + 2;
  return { name: p.name, ratePerSecond: p.ratePerSecond, ordersPerSecond, keptUp, index };
}

function whereTimeGoes(
  input: BuildInput,
  phases: PhaseReport[],
  peak: Peak,
  hops: BenchReport["hops"],
  resources: BenchReport["resources"],
): BenchReport["where"] {
  const scraped = input.samples.filter((s) => s.scraped && s.tS >= 0);
  const first = scraped[0];
  const last = scraped[scraped.length - 1];
  const stages = Object.fromEntries(
    stageNames.map((stage) => {
      const d =
        first !== undefined && last !== undefined
          ? stageDelta(first.stages[stage], last.stages[stage])
          : stageDelta(emptyCounters(), emptyCounters());
      return [
        stage,
        {
          ...roundCounters(d),
          messagesPerBatch: d.batches > 0 ? round(d.batchMessages / d.batches, 1) : 0,
          applyMsPerBatch: d.batches > 0 ? round((d.applySeconds / d.batches) * 1000) : 0,
          commitMsPerBatch: d.batches > 0 ? round((d.commitSeconds / d.batches) * 1000) : 0,
        },
      ];
    }),
  ) as BenchReport["where"]["stages"];
  const completed = input.observer.completed;
  const cpuMsPerOrder = completed > 0 ? round((resources.sluice.cpuSeconds * 1000) / completed) : null;
  const findings: string[] = [];
  const p = phases[peak.index];
  const cores = input.machine.cpus;
  const nodes = resources.processes?.filter((x) => x.role === "sluice") ?? [];
  if (p?.cpuCores && nodes.length > 1) {
    const c = p.cpuCores;
    const busy = round(c.sluice + c.nats + c.loadgen + c.harness, 2);
    const perNode = nodes.map((x) => `${x.name} ${x.peakPhaseCores ?? "?"}`).join(", ");
    findings.push(
      `during ${p.name} the ${nodes.length} Sluice nodes used ${c.sluice} cores together (${perNode}); a node runs its partitions on one event loop, so one near 1 core is CPU-bound`,
    );
    findings.push(
      `CPU during ${p.name}: Sluice ${c.sluice} + nats-server ${c.nats} + load generator ${c.loadgen} + harness ${c.harness} = ${busy} of ${cores} cores${busy >= cores * 0.85 ? " (saturated: the processes share the cores, so more nodes add overhead here, not capacity)" : ""}`,
    );
  } else if (p?.cpuCores) {
    const c = p.cpuCores;
    const busy = round(c.sluice + c.nats + c.loadgen + c.harness, 2);
    const saturated = busy >= cores * 0.85;
    findings.push(
      c.sluice >= 0.9
        ? `during ${p.name} Sluice used ${c.sluice} cores: CPU-bound (one Bun event loop runs every partition; LMDB's commit threads add a little)`
        : saturated
          ? `during ${p.name} Sluice used ${c.sluice} cores while the machine was saturated: it competed for CPU with nats-server and the bench itself`
          : `during ${p.name} Sluice used ${c.sluice} cores, under one, on a machine with CPU to spare: the time is spent waiting (LMDB commits with sync on commit, JetStream round trips), not computing`,
    );
    findings.push(
      `CPU during ${p.name}: Sluice ${c.sluice} + nats-server ${c.nats} + load generator ${c.loadgen} + harness ${c.harness} = ${busy} of ${cores} cores${saturated ? " (saturated: the bench's own processes take CPU Sluice would use)" : ""}`,
    );
  }
  if (p !== undefined) {
    const ranked = hopKinds
      .map((k) => ({ k, s: hops[k].phases[p.name] }))
      .filter((h) => h.s !== undefined && h.s.count > 0)
      .sort((a, b) => (b.s?.p99Ms ?? 0) - (a.s?.p99Ms ?? 0));
    if (ranked.length > 0)
      findings.push(
        `per hop during ${p.name} (p50 / p99 ms): ${ranked.map((h) => `${hops[h.k].label} ${h.s?.p50Ms} / ${h.s?.p99Ms}`).join(", ")}`,
      );
  }
  for (const stage of stageNames) {
    const s = stages[stage];
    if (s.batches === 0) continue;
    findings.push(
      `${stage} stage over the run: ${s.batches} batches of ${s.messagesPerBatch} messages; per batch apply ${s.applyMsPerBatch} ms, LMDB commit ${s.commitMsPerBatch} ms; outbox publish ${round(s.outboxPublishSeconds, 2)} s in all (partitions overlap, so these sums can exceed the wall time)`,
    );
  }
  if (cpuMsPerOrder !== null) findings.push(`Sluice spent ${cpuMsPerOrder} CPU-ms per completed order`);
  if (input.load.behindMsMax > 50)
    findings.push(
      `the load generator fell up to ${input.load.behindMsMax} ms behind its schedule; that time is inside every latency above (measured from the intended send time)`,
    );
  if (!peak.keptUp)
    findings.push(
      "for a CPU profile of Sluice run again with BENCH_PROFILE=<dir> (bench/lib.ts: bun --cpu-prof-md writes the hottest functions on exit)",
    );
  return { stages, sluiceCpuMsPerOrder: cpuMsPerOrder, findings, profile: input.profileDir };
}

function emptyCounters(): StageCounters {
  return {
    applied: 0,
    batches: 0,
    batchMessages: 0,
    applySeconds: 0,
    commitSeconds: 0,
    outboxPublishSeconds: 0,
    outboxPublishes: 0,
  };
}

function roundCounters(c: StageCounters): StageCounters {
  return {
    applied: Math.round(c.applied),
    batches: Math.round(c.batches),
    batchMessages: Math.round(c.batchMessages),
    applySeconds: round(c.applySeconds),
    commitSeconds: round(c.commitSeconds),
    outboxPublishSeconds: round(c.outboxPublishSeconds),
    outboxPublishes: Math.round(c.outboxPublishes),
  };
}

/** The issue's targets, each with what this run measured and a verdict; never asserted by tests. */
export function targetsOf(r: BenchReport): Target[] {
  const o = r.options;
  const fullFlash =
    o.scenario === "flash-sale" && o.baseline >= 400 && o.baseline * o.multiplier >= 20_000 && o.burstS >= 60;
  const scale =
    o.scenario === "flash-sale" && !fullFlash
      ? ` (at this run's scale, ${r.title}; the target is 400 → 20,000/s for 60 s)`
      : "";
  const targets: Target[] = [];
  const steady = o.scenario === "steady" && o.lines === "single";
  targets.push({
    name: "sustained throughput",
    target: "20,000 single-line orders/s sustained",
    measured: `${r.throughput.ordersPerSecond.toLocaleString("en-US")} orders/s (best ${r.throughput.sustainedWindowS} s: ${r.throughput.sustainedPeakPerSecond.toLocaleString("en-US")}/s)`,
    verdict: !steady
      ? "not applicable"
      : o.rate < 20_000
        ? "not measured"
        : r.throughput.keptUp && r.throughput.ordersPerSecond >= 20_000 * 0.98
          ? "met"
          : "missed",
    note: !steady
      ? "measured by --scenario steady --lines single --rate 20000"
      : o.rate < 20_000
        ? `offered ${o.rate}/s; run --rate 20000 to test the target`
        : r.throughput.note,
  });
  const flash = o.scenario === "flash-sale";
  const stock = r.latency.stockDelta;
  const alloc = r.latency.allocated.overall;
  const latencyVerdict = (value: number, limit: number): Target["verdict"] =>
    !flash ? "not applicable" : !stock.observed ? "not measured" : value < limit ? "met" : "missed";
  const noStock = `no stock deltas observed (accept → allocated, the nearest figure: p99 ${alloc.p99Ms} ms, p99.9 ${alloc.p999Ms} ms)`;
  targets.push({
    name: "p99 accept → stock delta",
    target: "< 250 ms during the flash sale",
    measured: stock.observed ? `${stock.overall.p99Ms} ms` : noStock,
    verdict: latencyVerdict(stock.overall.p99Ms, 250),
    note: flash ? scale.trim() : "measured by --scenario flash-sale",
  });
  targets.push({
    name: "p99.9 accept → stock delta",
    target: "< 1 s during the flash sale",
    measured: stock.observed ? `${stock.overall.p999Ms} ms` : noStock,
    verdict: latencyVerdict(stock.overall.p999Ms, 1000),
    note: flash ? scale.trim() : "measured by --scenario flash-sale",
  });
  targets.push({
    name: "backlog drained after the burst",
    target: "within 10 s of the burst's end",
    measured: r.drain.afterBurstEndS === null ? "—" : `${r.drain.afterBurstEndS} s`,
    verdict: !flash
      ? "not applicable"
      : r.drain.afterBurstEndS === null
        ? "not measured"
        : r.drain.afterBurstEndS <= 10
          ? "met"
          : "missed",
    note: flash ? scale.trim() : "measured by --scenario flash-sale",
  });
  const oversell = r.audit.checks.find((c) => c.name === "no oversell");
  targets.push({
    name: "zero oversell",
    target: "no position with reserved + held back > onHand",
    measured: oversell?.detail ?? "not checked",
    verdict: oversell?.passed === true ? "met" : oversell?.passed === false ? "missed" : "not measured",
    note: "",
  });
  targets.push(burstTarget(r, flash ? scale.trim() : "measured by --scenario flash-sale"));
  targets.push(memoryTarget(r.resources));
  return targets;
}

function burstTarget(r: BenchReport, note: string): Target {
  const b = r.burst;
  return {
    name: "completions through the burst",
    target: "no second of the burst without completions",
    measured:
      b === null
        ? "—"
        : `${b.secondsWithoutCompletions} of ${b.seconds} s without a completion; longest run ${b.runWithoutCompletionsSMax} s${b.runWithoutCompletionsStartS === null ? "" : ` from ${b.runWithoutCompletionsStartS} s`}`,
    verdict:
      r.options.scenario !== "flash-sale"
        ? "not applicable"
        : b === null || b.seconds === 0
          ? "not measured"
          : b.secondsWithoutCompletions === 0
            ? "met"
            : "missed",
    note,
  };
}

function memoryTarget(res: BenchReport["resources"]): Target {
  const nodes = res.processes?.filter((p) => p.role === "sluice") ?? [];
  // Several nodes: the budget is per process; `sluice` is their sum, so judge the largest node.
  const s =
    nodes.length > 1
      ? nodes.reduce((a, b) => (b.rssAnonBytesMax > a.rssAnonBytesMax ? b : a))
      : (res.sluice as ResourceUse & { name?: string });
  const budget = res.sluiceRssAnonBudgetBytes;
  const who =
    nodes.length > 1
      ? ` (the largest of ${nodes.length} nodes, ${(s as ProcessUse).name}; all together ${formatMib(res.sluice.rssAnonBytesMax)})`
      : "";
  return {
    name: "bounded memory",
    target: `Sluice anonymous RSS ≤ ${formatBytes(budget)} at any offered load${nodes.length > 1 ? " (per process)" : ""}`,
    measured:
      s.rssAnonBytesMax === 0
        ? "anonymous RSS not read (no RssAnon in /proc/<pid>/status)"
        : `anonymous ${formatMib(s.rssAnonBytesMax)} max (RSS ${formatMib(s.rssBytesMax)}, file-backed ${formatMib(s.rssFileBytesMax)})${who}`,
    verdict: s.rssAnonBytesMax === 0 ? "not measured" : s.rssAnonBytesMax <= budget ? "met" : "missed",
    note: "judged on anonymous RSS (heap, buffers); file-backed pages of the LMDB maps (and Bun's executable) are shown separately: reclaimable page cache that grows with the data",
  };
}

// ---- shared by the Markdown and HTML renderers ----------------------------------------------------------

/** A count as people read it: rounded, with thousands separators. */
export const formatCount = (x: number) => Math.round(x).toLocaleString("en-US");

/** Bytes in MiB, rounded: "1,024 MiB". */
export const formatMib = (bytes: number) => `${formatCount(bytes / 1048576)} MiB`;

/** A budget in whole GiB when it is one ("1 GiB"), else in MiB. */
export const formatBytes = (bytes: number) =>
  bytes % 1024 ** 3 === 0 ? `${bytes / 1024 ** 3} GiB` : formatMib(bytes);

/** The memory columns' note (Markdown and HTML). */
export const rssNote =
  "RSS is VmRSS = anonymous (RssAnon: heap, buffers) + file-backed (RssFile + RssShmem). Sluice's file-backed pages are its LMDB maps (growing with the data) and Bun's executable (~55 MiB at start): page cache the kernel reclaims, shown separately; the memory target is judged on anonymous RSS. Each is its own peak over the samples (1 s apart), so the three need not add up.";

/** The process table (Markdown and HTML): CPU and the three RSS peaks per process. */
export const resourceColumns = [
  "process",
  "CPU s",
  "cores mean",
  "cores max",
  "RSS max",
  "anon RSS max",
  "file-backed RSS max",
];
export function resourceRows(res: BenchReport["resources"]): Array<Array<string | number>> {
  const row = (name: string, u: ResourceUse) => [
    name,
    u.cpuSeconds,
    u.cpuCoresMean,
    u.cpuCoresMax,
    formatMib(u.rssBytesMax),
    formatMib(u.rssAnonBytesMax),
    formatMib(u.rssFileBytesMax),
  ];
  const procs = res.processes ?? null;
  if (procs === null)
    return [
      row("Sluice", res.sluice),
      row("nats-server", res.natsServer),
      row("load generator", res.loadgen),
      ["harness (observer)", res.harnessCpuSeconds, "", "", "", "", ""],
    ];
  // Several processes: each on its own, then the sums a single-process run would show.
  const nodes = procs.filter((p) => p.role === "sluice").length;
  const servers = procs.length - nodes;
  return [
    ...procs.map((p) => row(p.role === "sluice" ? `Sluice ${p.name}` : p.name, p)),
    ...(nodes > 1 ? [row(`Sluice, all ${nodes} nodes`, res.sluice)] : []),
    ...(servers > 1 ? [row(`nats-server, all ${servers}`, res.natsServer)] : []),
    row("load generator", res.loadgen),
    ["harness (observer)", res.harnessCpuSeconds, "", "", "", "", ""],
  ];
}

/** The load table's columns and one row per phase (both reports show the same figures). */
export const phaseColumns = [
  "phase",
  "from s",
  "to s",
  "rate offered /s",
  "offered",
  "accepted",
  "completed",
  "completed /s",
  "Sluice RSS max total / anon / file MiB",
];
export function phaseCells(p: BenchReport["phases"][number]): Array<string | number> {
  const n = formatCount;
  return [
    p.name,
    p.startS,
    p.endS,
    n(p.ratePerSecond),
    n(p.offered),
    n(p.accepted),
    n(p.completed),
    n(p.completedPerSecond),
    `${n(p.sluiceRssBytesMax / 1048576)} / ${n(p.sluiceRssAnonBytesMax / 1048576)} / ${n(p.sluiceRssFileBytesMax / 1048576)}`,
  ];
}

/** The faults table (Markdown and HTML): one row per fault, recovery times in seconds from the lift. */
export const faultColumns = [
  "#",
  "fault",
  "at (s)",
  "held (s)",
  "what the harness did",
  "completions while held",
  "/readyz not 200 (s)",
  "ready again",
  "completions resumed",
  "lag back to before (peak)",
  "backlog drained",
  "recovered",
  "Sluice exits",
];

const secs = (ms: number | null) => (ms === null ? "not recovered" : `${(ms / 1000).toFixed(2)} s`);

export function faultCells(f: ChaosReport["faults"][number]): Array<string | number> {
  const r = f.recovery;
  if (f.status === "skipped" || r === null)
    return [
      f.index + 1,
      f.kind,
      f.startS ?? f.atS,
      f.holdS,
      `skipped: ${f.reason ?? "?"}`,
      "",
      "",
      "",
      "",
      "",
      "",
      "",
      f.sluiceExits.join("; "),
    ];
  return [
    f.index + 1,
    f.kind,
    f.startS ?? "",
    f.liftS !== null && f.startS !== null ? round(f.liftS - f.startS, 2) : f.holdS,
    f.detail,
    formatCount(r.completionsWhileHeld),
    (r.readyzDownMs / 1000).toFixed(2),
    secs(r.readyAgainMs),
    secs(r.completionsResumedMs),
    `${secs(r.lagBackMs)} (${formatCount(r.lagPeak)} msgs, before ≤ ${formatCount(r.lagThreshold)})`,
    secs(r.backlogDrainedMs),
    secs(r.recoveredMs),
    f.sluiceExits.length === 0 ? "none" : f.sluiceExits.join("; "),
  ];
}
