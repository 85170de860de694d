import { describe, expect, test } from "bun:test";
import {
  type BenchOptions,
  OptionsError,
  parseOptions,
  phaseIndexAt,
  phasesOf,
} from "../../bench/harness/options.ts";
import {
  buildSweepReport,
  counterAt,
  cpuMsPerOrder,
  judgeAfterS,
  judgeStep,
  peakIn,
  type SweepStepInput,
  sweepCells,
  sweepPhases,
  sweepRates,
} from "../../bench/harness/sweep.ts";

function options(argv: string[]): BenchOptions {
  const parsed = parseOptions(argv);
  if (parsed.help) throw new Error("unexpected --help");
  return parsed.options;
}

describe("sweep schedule", () => {
  test("defaults: 1000 doubling to 32000, 8 s steps with 2 s of no load between, single-line orders", () => {
    const o = options(["--scenario", "sweep"]);
    expect(o.lines).toBe("single");
    expect(o.workers).toBe(-1);
    expect(sweepRates(o)).toEqual([1000, 2000, 4000, 8000, 16000, 32000]);
    const phases = phasesOf(o, null);
    expect(phases.map((p) => [p.name, p.startS, p.endS, p.ratePerSecond])).toEqual([
      ["1000/s", 0, 8, 1000],
      ["2000/s", 10, 18, 2000],
      ["4000/s", 20, 28, 4000],
      ["8000/s", 30, 38, 8000],
      ["16000/s", 40, 48, 16000],
      ["32000/s", 50, 58, 32000],
    ]);
    // a settle gap belongs to the step before it (timeline labels), outside the load to the last
    expect(phaseIndexAt(phases, 9)).toBe(0);
    expect(phaseIndexAt(phases, 10)).toBe(1);
    expect(phaseIndexAt(phases, 99)).toBe(5);
    expect(phaseIndexAt(phases, -1)).toBe(0);
  });

  test("start / factor / max, and an explicit list", () => {
    const o = options([
      "--scenario",
      "sweep",
      "--sweep-start",
      "500",
      "--sweep-factor",
      "1.5",
      "--sweep-max",
      "2000",
    ]);
    expect(sweepRates(o)).toEqual([500, 750, 1125, 1687.5]);
    const l = options([
      "--scenario",
      "sweep",
      "--sweep-rates",
      "100, 300,900",
      "--step-s",
      "2",
      "--settle-s",
      "1",
    ]);
    expect(sweepRates(l)).toEqual([100, 300, 900]);
    expect(sweepPhases([100, 300], 2, 1)).toEqual([
      { name: "100/s", startS: 0, endS: 2, ratePerSecond: 100 },
      { name: "300/s", startS: 3, endS: 5, ratePerSecond: 300 },
    ]);
    const f = options(["--scenario", "sweep", "--sweep-max", "1000"]);
    expect(sweepRates(f)).toEqual([1000]);
  });

  test("bad sweep options name the flag", () => {
    for (const argv of [
      ["--sweep-rates", "100,50"],
      ["--sweep-rates", "100,x"],
      ["--sweep-rates", ""],
      ["--sweep-factor", "1"],
      ["--sweep-start", "5000", "--sweep-max", "1000"],
      ["--saturation-ratio", "1.5"],
      ["--step-s", "0"],
      ["--workers", "-2"],
    ]) {
      expect(() => options(["--scenario", "sweep", ...argv])).toThrow(OptionsError);
    }
    expect(() => options(["--scenario", "sweep", "--sweep-rates", "100,50"])).toThrow(/--sweep-rates/);
  });

  test("--workers is accepted for every scenario: Sluice's node.workerCount (-1 automatic, 0 none)", () => {
    expect(options(["--scenario", "steady", "--workers", "4"]).workers).toBe(4);
    expect(options(["--scenario", "steady", "--workers", "0"]).workers).toBe(0);
  });

  test("the judgement comes before the next step starts", () => {
    expect(judgeAfterS(2)).toBe(1.5);
    expect(judgeAfterS(0.5)).toBe(0);
  });
});

describe("saturation rule", () => {
  const rule = { ratio: 0.9, p99MsMax: 1000 };
  test("kept up: ≥ 90 % completed and p99 within the bound", () => {
    const j = judgeStep({ ratePerSecond: 1000, stepS: 8, completedByJudge: 7200, p99MsAtJudge: 999 }, rule);
    expect(j).toEqual({ completedByJudge: 7200, p99MsAtJudge: 999, saturated: false, reason: null });
  });
  test("saturated by the completed rate", () => {
    const j = judgeStep({ ratePerSecond: 1000, stepS: 8, completedByJudge: 7199, p99MsAtJudge: 10 }, rule);
    expect(j.saturated).toBe(true);
    expect(j.reason).toBe("completed 900/s < 90 % of 1000/s offered");
  });
  test("saturated by p99, or both", () => {
    expect(
      judgeStep({ ratePerSecond: 1000, stepS: 8, completedByJudge: 8000, p99MsAtJudge: 1500 }, rule).reason,
    ).toBe("accept → allocated p99 1500 ms > 1000 ms");
    const both = judgeStep({ ratePerSecond: 1000, stepS: 8, completedByJudge: 0, p99MsAtJudge: 2000 }, rule);
    expect(both.reason).toContain("; ");
  });
});

describe("per-step CPU and memory", () => {
  const cpu = [
    { tS: -1, value: 5 },
    { tS: 1, value: 6 },
    { tS: 2, value: 7 },
    { tS: 3, value: 9 },
  ];
  test("the counter interpolates between samples and clamps at the ends", () => {
    expect(counterAt(cpu, 2.5)).toBe(8);
    expect(counterAt(cpu, 0)).toBe(5.5);
    expect(counterAt(cpu, -5)).toBe(5);
    expect(counterAt(cpu, 10)).toBe(9);
    expect(counterAt([], 1)).toBeNull();
  });
  test("CPU-ms per order over a window", () => {
    // 1 → 3 s: 6 → 9 CPU seconds = 3000 ms over 1500 orders
    expect(cpuMsPerOrder(cpu, 1, 3, 1500)).toBe(2);
    expect(cpuMsPerOrder(cpu, 1, 2.5, 1000)).toBe(2);
    expect(cpuMsPerOrder(cpu, 1, 3, 0)).toBeNull();
    expect(cpuMsPerOrder([], 1, 3, 10)).toBeNull();
  });
  test("RSS peak of the samples in a window", () => {
    expect(peakIn(cpu, 1, 2)).toBe(7);
    expect(peakIn(cpu, 4, 5)).toBe(0);
  });
});

describe("sweep report", () => {
  const o = options(["--scenario", "sweep", "--sweep-rates", "1000,2000,4000,8000", "--workers", "2"]);
  const phases = phasesOf(o, null);
  const step = (i: number, completedPerSecond: number, saturated: boolean): SweepStepInput => ({
    phase: phases[i] as (typeof phases)[number],
    offeredPerSecond: phases[i]?.ratePerSecond ?? 0,
    offered: 8 * (phases[i]?.ratePerSecond ?? 0),
    acceptedPerSecond: phases[i]?.ratePerSecond ?? 0,
    completedPerSecond,
    completed: 8 * completedPerSecond,
    allocated: { count: 8 * completedPerSecond, p50Ms: 5, p99Ms: saturated ? 3000 : 20, p999Ms: 40 },
    stockDelta: null,
    sluiceCpuMsPerOrder: 0.4,
    sluiceRssBytesMax: 200 * 1048576,
    sluiceRssAnonBytesMax: 150 * 1048576,
    sluiceRssFileBytesMax: 50 * 1048576,
    judgement: {
      completedByJudge: 8 * completedPerSecond,
      p99MsAtJudge: saturated ? 3000 : 20,
      saturated,
      reason: saturated ? "accept → allocated p99 3000 ms > 1000 ms" : null,
    },
  });
  test("names the saturated step, the last that kept up, the steps not run; ratio to raw", () => {
    const r = buildSweepReport(
      o,
      sweepRates(o),
      [step(0, 1000, false), step(1, 2000, false), step(2, 3000, true)],
      20_000,
    );
    expect(r.saturated).toEqual({
      step: 3,
      name: "4000/s",
      ratePerSecond: 4000,
      reason: "accept → allocated p99 3000 ms > 1000 ms",
    });
    expect(r.lastGoodPerSecond).toBe(2000);
    expect(r.stepsNotRun).toBe(1);
    expect(r.workers).toBe(2);
    expect(r.steps.map((s) => s.ratioToRaw)).toEqual([0.05, 0.1, 0.15]);
    expect(r.note).toContain("saturated at step 3 (4000/s offered)");
    // RSS peak: total / anonymous / file-backed (the LMDB maps), MiB
    expect(sweepCells(r.steps[2] as (typeof r.steps)[number])).toContain("200 / 150 / 50");
    expect(r.steps[2]?.sluiceRssAnonBytesMax).toBe(150 * 1048576);
    expect(String(sweepCells(r.steps[2] as (typeof r.steps)[number]).at(-1))).toStartWith("SATURATED");
  });
  test("no saturation: says to raise the maximum; no raw: no ratio", () => {
    const r = buildSweepReport(
      o,
      sweepRates(o),
      [0, 1, 2, 3].map((i) => step(i, phases[i]?.ratePerSecond ?? 0, false)),
      null,
    );
    expect(r.saturated).toBeNull();
    expect(r.lastGoodPerSecond).toBe(8000);
    expect(r.note).toContain("raise --sweep-max");
    expect(r.steps.every((s) => s.ratioToRaw === null)).toBe(true);
  });
});
