import { describe, expect, test } from "bun:test";
import { limits, parseOptions } from "../../bench/harness/options.ts";
import {
  type BenchReport,
  bestWindow,
  gapsWithoutCompletions,
  resourceRows,
  type TimelineRow,
  targetsOf,
} from "../../bench/harness/report-json.ts";

describe("bestWindow", () => {
  test("the best mean over consecutive seconds", () => {
    expect(bestWindow([1, 2, 10, 10, 1], 2)).toBe(10);
    expect(bestWindow([4, 4], 5)).toBe(4); // a window longer than the run: the whole run
    expect(bestWindow([], 5)).toBe(0);
  });
});

const MiB = 1048576;
const GiB = 1024 * MiB;

/** Sluice's resources with the given RSS peaks (the other processes small). */
function resources(sluice: { total: number; anon: number; file: number }): BenchReport["resources"] {
  const use = (total: number, anon: number, file: number) => ({
    cpuSeconds: 1,
    cpuCoresMean: 0.5,
    cpuCoresMax: 0.9,
    rssBytesMax: total,
    rssAnonBytesMax: anon,
    rssFileBytesMax: file,
  });
  return {
    sluice: use(sluice.total, sluice.anon, sluice.file),
    natsServer: use(30 * MiB, 28 * MiB, 2 * MiB),
    loadgen: use(60 * MiB, 50 * MiB, 10 * MiB),
    harnessCpuSeconds: 0.5,
    windowS: 10,
    sluiceRssAnonBudgetBytes: limits.sluiceRssAnonBudgetBytes,
  };
}

/** A timeline of completions per second (only `s` and `completed` matter to the gap count). */
const timeline = (completed: number[]) =>
  completed.map((c, s) => ({ s, completed: c }) as unknown as TimelineRow);

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
    burst: gapsWithoutCompletions(timeline([5, 5, 5, 5]), 1, 3),
    resources: resources({ total: 600 * MiB, anon: 200 * MiB, file: 400 * MiB }),
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
        burst: gapsWithoutCompletions(timeline([9, 0, 9]), 0, 3),
        resources: resources({ total: 1.5 * GiB, anon: 1.2 * GiB, file: 0.3 * GiB }),
      }),
    );
    expect(t.map((x) => x.verdict)).toEqual([
      "not applicable",
      "met",
      "missed",
      "missed",
      "missed",
      "missed",
      "missed",
    ]);
    expect(t[1]?.note).toBe("");
  });
});

describe("seconds of the burst without completions", () => {
  test("counts the zero seconds in [from, to) and the longest run of them", () => {
    //              s: 0  1  2  3  4  5  6  7  8  9
    const g = gapsWithoutCompletions(timeline([0, 4, 0, 0, 7, 0, 0, 0, 3, 0]), 1, 9);
    expect(g.seconds).toBe(8);
    expect(g.secondsWithoutCompletions).toBe(5); // 2, 3, 5, 6, 7: second 0 and 9 are outside the burst
    expect(g.runWithoutCompletionsSMax).toBe(3);
    expect(g.runWithoutCompletionsStartS).toBe(5);
    expect(g.note).toContain("5 of the burst's 8 seconds");
  });

  test("every second with a completion: none, no run", () => {
    const g = gapsWithoutCompletions(timeline([1, 2, 3]), 0, 3);
    expect(g.secondsWithoutCompletions).toBe(0);
    expect(g.runWithoutCompletionsSMax).toBe(0);
    expect(g.runWithoutCompletionsStartS).toBeNull();
  });

  test("a second missing from the series (the run broke) counts as one without completions", () => {
    const g = gapsWithoutCompletions(timeline([3, 3]), 0, 4);
    expect(g.seconds).toBe(4);
    expect(g.secondsWithoutCompletions).toBe(2);
    expect(g.runWithoutCompletionsStartS).toBe(2);
  });

  test("only whole seconds from a fractional start; an empty burst has none", () => {
    expect(gapsWithoutCompletions(timeline([0, 1, 1]), 0.5, 3).seconds).toBe(2);
    expect(gapsWithoutCompletions(timeline([0]), 2, 2).seconds).toBe(0);
  });

  test("the target: met at 0, missed at 1 with the run named, not measured without burst seconds", () => {
    const met = targetsOf(report([], { burst: gapsWithoutCompletions(timeline([1, 1, 1]), 0, 3) }));
    const burst = (t: ReturnType<typeof targetsOf>) =>
      t.find((x) => x.name === "completions through the burst");
    expect(burst(met)?.verdict).toBe("met");
    expect(burst(met)?.target).toBe("no second of the burst without completions");
    const missed = targetsOf(report([], { burst: gapsWithoutCompletions(timeline([1, 0, 1]), 0, 3) }));
    expect(burst(missed)?.verdict).toBe("missed");
    expect(burst(missed)?.measured).toBe("1 of 3 s without a completion; longest run 1 s from 1 s");
    const empty = targetsOf(report([], { burst: gapsWithoutCompletions([], 2, 2) }));
    expect(burst(empty)?.verdict).toBe("not measured");
    const steady = targetsOf(report(["--scenario", "steady"], { burst: null }));
    expect(burst(steady)?.verdict).toBe("not applicable");
  });
});

describe("memory target", () => {
  const memory = (sluice: { total: number; anon: number; file: number }) =>
    targetsOf(report(["--scenario", "steady"], { resources: resources(sluice) })).find(
      (x) => x.name === "bounded memory",
    );

  test("the budget is 1 GiB of anonymous RSS", () => {
    expect(limits.sluiceRssAnonBudgetBytes).toBe(GiB);
    expect(memory({ total: GiB, anon: GiB, file: 0 })?.target).toBe(
      "Sluice anonymous RSS ≤ 1 GiB at any offered load",
    );
  });

  test("judged on anonymous RSS: met when only the LMDB maps' file-backed pages push RSS over", () => {
    const t = memory({ total: 1.4 * GiB, anon: 700 * MiB, file: 0.7 * GiB });
    expect(t?.verdict).toBe("met");
    expect(t?.measured).toBe("anonymous 700 MiB max (RSS 1,434 MiB, file-backed 717 MiB)");
    expect(t?.note).toContain(
      "file-backed pages of the LMDB maps (and Bun's executable) are shown separately",
    );
    expect(t?.note).toContain("reclaimable page cache");
  });

  test("missed when anonymous RSS is over the budget, at the budget still met", () => {
    expect(memory({ total: GiB + 2 * MiB, anon: GiB + MiB, file: MiB })?.verdict).toBe("missed");
    expect(memory({ total: GiB, anon: GiB, file: 0 })?.verdict).toBe("met");
  });

  test("not measured when no anonymous RSS was read", () => {
    const t = memory({ total: 300 * MiB, anon: 0, file: 0 });
    expect(t?.verdict).toBe("not measured");
    expect(t?.measured).toContain("RssAnon");
  });

  test("the process table shows RSS, anonymous and file-backed peaks per process", () => {
    const rows = resourceRows(resources({ total: 600 * MiB, anon: 200 * MiB, file: 400 * MiB }));
    expect(rows[0]).toEqual(["Sluice", 1, 0.5, 0.9, "600 MiB", "200 MiB", "400 MiB"]);
    expect(rows[1]?.slice(4)).toEqual(["30 MiB", "28 MiB", "2 MiB"]);
    expect(rows[3]?.[0]).toBe("harness (observer)");
  });
});
