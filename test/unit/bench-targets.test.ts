import { describe, expect, test } from "bun:test";
import { parseOptions } from "../../bench/harness/options.ts";
import { type BenchReport, bestWindow, targetsOf } from "../../bench/harness/report-json.ts";

describe("bestWindow", () => {
  test("the best mean over consecutive seconds", () => {
    expect(bestWindow([1, 2, 10, 10, 1], 2)).toBe(10);
    expect(bestWindow([4, 4], 5)).toBe(4); // a window longer than the run: the whole run
    expect(bestWindow([], 5)).toBe(0);
  });
});

/** The fields targetsOf reads, for one scenario. */
function report(argv: string[], over: Record<string, unknown>): BenchReport {
  const parsed = parseOptions(argv);
  if (parsed.help) throw new Error("unreachable");
  const summary = (p99Ms: number, p999Ms: number) => ({
    count: 1,
    minMs: 1,
    meanMs: 1,
    p50Ms: 1,
    p90Ms: 1,
    p99Ms,
    p999Ms,
    maxMs: p999Ms,
  });
  return {
    options: parsed.options,
    title: "t",
    throughput: {
      ordersPerSecond: 20_000,
      sustainedPeakPerSecond: 20_000,
      sustainedWindowS: 5,
      keptUp: true,
      note: "",
    },
    latency: {
      allocated: { observed: true, overall: summary(100, 200) },
      stockDelta: { observed: false, overall: summary(0, 0) },
    },
    drain: { afterBurstEndS: 3 },
    audit: { checks: [{ name: "no oversell", passed: true, detail: "0 positions" }] },
    ...over,
  } as unknown as BenchReport;
}

describe("targets", () => {
  test("steady at 20,000/s that kept up meets the throughput target; flash targets are n/a", () => {
    const t = targetsOf(report(["--scenario", "steady", "--rate", "20000"], {}));
    expect(t.map((x) => x.verdict)).toEqual([
      "met",
      "not applicable",
      "not applicable",
      "not applicable",
      "met",
    ]);
  });

  test("a steady run below 20,000/s does not measure the target", () => {
    const t = targetsOf(report(["--scenario", "steady", "--rate", "5000"], {}));
    expect(t[0]?.verdict).toBe("not measured");
    expect(t[0]?.note).toContain("--rate 20000");
  });

  test("flash sale without stock deltas: latency targets not measured, the nearest figure named", () => {
    const t = targetsOf(report([], {}));
    expect(t[1]?.verdict).toBe("not measured");
    expect(t[1]?.measured).toContain("no stock deltas observed");
    expect(t[1]?.measured).toContain("p99 100 ms");
    expect(t[3]?.verdict).toBe("met");
    expect(t[3]?.note).toContain("at this run's scale");
  });

  test("full-scale flash sale with stock deltas: met and missed by the thresholds", () => {
    const summary = (p99Ms: number, p999Ms: number) => ({ count: 1, p99Ms, p999Ms });
    const argv = ["--baseline", "400", "--multiplier", "50", "--burst-s", "60"];
    const t = targetsOf(
      report(argv, {
        latency: {
          allocated: { overall: summary(1, 1) },
          stockDelta: { observed: true, overall: summary(240, 1200) },
        },
        drain: { afterBurstEndS: 12 },
        audit: { checks: [{ name: "no oversell", passed: false, detail: "1 position" }] },
      }),
    );
    expect(t.map((x) => x.verdict)).toEqual(["not applicable", "met", "missed", "missed", "missed"]);
    expect(t[1]?.note).toBe("");
  });
});
