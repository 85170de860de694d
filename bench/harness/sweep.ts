// `--scenario sweep`: the latency-throughput curve. A series of steady single-line rates, each offered for
// --step-s seconds with a --settle-s gap of no load after it; each step is a phase, so its latencies come
// from the per-phase histograms (orders by intended send time). During the run a monitor judges each step
// --settle-s − 0.5 s after it ends (the saturation rule below) and, at the first saturated step, tells the
// load generator to offer nothing more: the steps after it never run. docs/bench.md explains every figure.
//
// The pure parts (schedule, rule, CPU per order, the report's rows) are unit-tested
// (test/unit/bench-sweep.test.ts).
import type { Phase } from "./options.ts";

/** The sweep's own options (a subset of BenchOptions, so this file needs nothing else from options.ts). */
export type SweepOptions = {
  /** Explicit rates (strictly increasing); null: sweepStart × sweepFactor^k up to sweepMax. */
  sweepRates: number[] | null;
  sweepStart: number;
  sweepFactor: number;
  sweepMax: number;
  stepS: number;
  settleS: number;
  /** Saturated when the step's orders completed by the judgement, per second of step, < this × offered. */
  saturationRatio: number;
  /** Saturated when the step's accept → allocated p99 (of the orders completed by then) is over this. */
  saturationP99Ms: number;
};

/** Steps in one sweep at most (a doubling from 1/s reaches 10^6/s in 20). */
export const sweepStepsMax = 40;

/** The offered rates, in order: the explicit list, or start, start × factor, … while ≤ max. */
export function sweepRates(o: SweepOptions): number[] {
  if (o.sweepRates !== null) return [...o.sweepRates];
  const rates: number[] = [];
  for (let r = o.sweepStart; r <= o.sweepMax * (1 + 1e-9) && rates.length < sweepStepsMax; r *= o.sweepFactor)
    rates.push(Math.round(r * 1000) / 1000);
  return rates;
}

/** Phase name of a step: its rate ("4000/s"); rates are strictly increasing, so names are unique. */
export const stepName = (rate: number) => `${rate}/s`;

/** One phase per step, stepS long, settleS of no load between consecutive steps (none after the last). */
export function sweepPhases(rates: number[], stepS: number, settleS: number): Phase[] {
  return rates.map((rate, i) => {
    const startS = round(i * (stepS + settleS), 6);
    return { name: stepName(rate), startS, endS: round(startS + stepS, 6), ratePerSecond: rate };
  });
}

/** Seconds after a step's end at which the monitor judges it: before the next step starts, ≥ 0. */
export const judgeAfterS = (settleS: number) => Math.max(0, settleS - 0.5);

export type StepJudgement = {
  /** Orders of the step (by intended time) completed (allocated status seen) when it was judged. */
  completedByJudge: number;
  /** Their accept → allocated p99, ms. */
  p99MsAtJudge: number;
  saturated: boolean;
  /** Why it is saturated (null when it is not). */
  reason: string | null;
};

/**
 * The saturation rule: a step is saturated when the orders it offered that completed within the step and the
 * judgement delay after it, per second of step, are fewer than `ratio` × the offered rate, or when their
 * accept → allocated p99 is over `p99MsMax`.
 */
export function judgeStep(
  step: { ratePerSecond: number; stepS: number; completedByJudge: number; p99MsAtJudge: number },
  rule: { ratio: number; p99MsMax: number },
): StepJudgement {
  const completedPerSecond = step.completedByJudge / Math.max(1e-9, step.stepS);
  const reasons: string[] = [];
  if (completedPerSecond < rule.ratio * step.ratePerSecond)
    reasons.push(
      `completed ${Math.round(completedPerSecond)}/s < ${round(rule.ratio * 100, 1)} % of ${step.ratePerSecond}/s offered`,
    );
  if (step.p99MsAtJudge > rule.p99MsMax)
    reasons.push(`accept → allocated p99 ${round(step.p99MsAtJudge, 1)} ms > ${rule.p99MsMax} ms`);
  return {
    completedByJudge: step.completedByJudge,
    p99MsAtJudge: round(step.p99MsAtJudge, 3),
    saturated: reasons.length > 0,
    reason: reasons.length > 0 ? reasons.join("; ") : null,
  };
}

/** A cumulative counter sampled over time (seconds after the load's start). */
export type CounterPoint = { tS: number; value: number };

/** The counter's value at `tS`, linearly interpolated between samples (clamped at the ends). */
export function counterAt(points: CounterPoint[], tS: number): number | null {
  if (points.length === 0) return null;
  const first = points[0] as CounterPoint;
  const last = points[points.length - 1] as CounterPoint;
  if (tS <= first.tS) return first.value;
  if (tS >= last.tS) return last.value;
  for (let i = 1; i < points.length; i++) {
    const b = points[i] as CounterPoint;
    if (b.tS < tS) continue;
    const a = points[i - 1] as CounterPoint;
    return b.tS === a.tS ? b.value : a.value + ((b.value - a.value) * (tS - a.tS)) / (b.tS - a.tS);
  }
  return last.value;
}

/** CPU-ms per order: the CPU seconds the counter grew by over [fromS, toS], × 1000, ÷ orders; null if 0. */
export function cpuMsPerOrder(
  cpu: CounterPoint[],
  fromS: number,
  toS: number,
  orders: number,
): number | null {
  const a = counterAt(cpu, fromS);
  const b = counterAt(cpu, toS);
  if (a === null || b === null || orders <= 0) return null;
  return round(((b - a) * 1000) / orders, 3);
}

/** The largest value of samples taken in [fromS, toS] (0 when none). */
export function peakIn(points: CounterPoint[], fromS: number, toS: number): number {
  let peak = 0;
  for (const p of points) if (p.tS >= fromS && p.tS <= toS && p.value > peak) peak = p.value;
  return peak;
}

export type SweepLatency = { count: number; p50Ms: number; p99Ms: number; p999Ms: number };

export type SweepStep = {
  step: number;
  name: string;
  startS: number;
  endS: number;
  offeredPerSecond: number;
  /** Orders offered (by intended time) and accepted by JetStream (by ack time) in the step. */
  offered: number;
  acceptedPerSecond: number;
  /** The step's orders completed by its judgement, per second of step (the saturation rule's figure). */
  completedPerSecond: number;
  /** The step's orders completed by the end of the run (the drain included). */
  completed: number;
  allocated: SweepLatency;
  /** null when no stock delta was matched to the step's lines. */
  stockDelta: SweepLatency | null;
  /** Sluice CPU seconds over the step and its settle gap × 1000 ÷ orders completed in that window. */
  sluiceCpuMsPerOrder: number | null;
  /** Sluice's peak RSS over the step and its settle gap: total, anonymous, file-backed (the LMDB maps). */
  sluiceRssBytesMax: number;
  sluiceRssAnonBytesMax: number;
  sluiceRssFileBytesMax: number;
  /** completedPerSecond ÷ raw JetStream publish-then-consume msg/s of the same run. */
  ratioToRaw: number | null;
  /** null: never judged (the run broke, or the step came after the saturated one). */
  judgement: StepJudgement | null;
};

export type SweepReport = {
  rates: number[];
  stepS: number;
  settleS: number;
  judgedAfterS: number;
  rule: { completedRatioMin: number; p99MsMax: number };
  /** --workers as given: Sluice's node.workerCount (−1 automatic, 0 none). */
  workers: number;
  rawPublishThenConsumePerSecond: number | null;
  steps: SweepStep[];
  saturated: { step: number; name: string; ratePerSecond: number; reason: string } | null;
  /** The highest offered rate judged not saturated. */
  lastGoodPerSecond: number | null;
  stepsNotRun: number;
  note: string;
};

/** What the run hands to the report: the steps' figures, each judged or not. */
export type SweepStepInput = Omit<SweepStep, "ratioToRaw" | "step" | "name" | "startS" | "endS"> & {
  phase: Phase;
};

export function buildSweepReport(
  o: SweepOptions & { workers: number },
  rates: number[],
  steps: SweepStepInput[],
  rawPerSecond: number | null,
): SweepReport {
  const rows: SweepStep[] = steps.map((s, i) => {
    const { phase, ...rest } = s;
    return {
      step: i + 1,
      name: phase.name,
      startS: phase.startS,
      endS: phase.endS,
      ...rest,
      ratioToRaw:
        rawPerSecond === null || rawPerSecond <= 0 ? null : round(s.completedPerSecond / rawPerSecond),
    };
  });
  const sat = rows.find((r) => r.judgement?.saturated === true) ?? null;
  const good = rows.filter((r) => r.judgement !== null && !r.judgement.saturated);
  const lastGood = good.length > 0 ? (good[good.length - 1] as SweepStep).offeredPerSecond : null;
  const stepsNotRun = rates.length - rows.length;
  const judgedAfterS = judgeAfterS(o.settleS);
  const note =
    sat !== null
      ? `saturated at step ${sat.step} (${sat.offeredPerSecond}/s offered): ${sat.judgement?.reason}; ${lastGood === null ? "no step kept up" : `the last step that kept up offered ${lastGood}/s`}${stepsNotRun > 0 ? `; the ${stepsNotRun} higher steps were not run` : ""}`
      : rows.some((r) => r.judgement === null)
        ? "some steps were not judged (the load generator ended early)"
        : `no step saturated up to ${rates[rates.length - 1]}/s: raise --sweep-max (or --sweep-rates) to find the limit`;
  return {
    rates,
    stepS: o.stepS,
    settleS: o.settleS,
    judgedAfterS,
    rule: { completedRatioMin: o.saturationRatio, p99MsMax: o.saturationP99Ms },
    workers: o.workers,
    rawPublishThenConsumePerSecond: rawPerSecond,
    steps: rows,
    saturated:
      sat === null
        ? null
        : {
            step: sat.step,
            name: sat.name,
            ratePerSecond: sat.offeredPerSecond,
            reason: sat.judgement?.reason ?? "",
          },
    lastGoodPerSecond: lastGood,
    stepsNotRun,
    note,
  };
}

// ---- shared by the Markdown and HTML renderers ----------------------------------------------------------

export const sweepColumns = [
  "step",
  "offered /s",
  "accepted /s",
  "completed /s",
  "allocated p50 / p99 / p99.9 ms",
  "stock delta p50 / p99 / p99.9 ms",
  "Sluice CPU-ms / order",
  "Sluice RSS peak total / anon / file MiB",
  "× raw JetStream",
  "verdict",
];

export function sweepCells(s: SweepStep): Array<string | number> {
  const n = (x: number) => Math.round(x).toLocaleString("en-US");
  const lat = (l: SweepLatency | null) =>
    l === null || l.count === 0 ? "—" : `${l.p50Ms} / ${l.p99Ms} / ${l.p999Ms}`;
  return [
    s.step,
    n(s.offeredPerSecond),
    n(s.acceptedPerSecond),
    n(s.completedPerSecond),
    lat(s.allocated),
    lat(s.stockDelta),
    s.sluiceCpuMsPerOrder ?? "—",
    `${n(s.sluiceRssBytesMax / 1048576)} / ${n(s.sluiceRssAnonBytesMax / 1048576)} / ${n(s.sluiceRssFileBytesMax / 1048576)}`,
    s.ratioToRaw ?? "—",
    s.judgement === null
      ? "not judged"
      : s.judgement.saturated
        ? `SATURATED: ${s.judgement.reason}`
        : "kept up",
  ];
}

function round(x: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
