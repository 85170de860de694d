// The chaos scenario's pure parts: the fault schedule from a seed, recovery times, the per-order output check.
import { describe, expect, test } from "bun:test";
import {
  backlogLastCompletion,
  checkOrderOutputs,
  type FaultKind,
  faultHoldS,
  faultKinds,
  faultWindow,
  type OrderOutput,
  planFaults,
  recoveryOf,
} from "../../bench/harness/chaos.ts";
import { OptionsError, parseOptions } from "../../bench/harness/options.ts";

describe("chaos fault schedule", () => {
  test("the same seed gives the same schedule; another seed another one", () => {
    const a = planFaults(7, faultKinds, 4, 60);
    expect(planFaults(7, faultKinds, 4, 60)).toEqual(a);
    expect(planFaults(8, faultKinds, 4, 60)).not.toEqual(a);
  });

  test("every kind once before any repeats, in the window, in order, not overlapping, holds in range", () => {
    for (let seed = 1; seed <= 200; seed++) {
      const loadS = 30 + (seed % 5) * 15;
      const count = 1 + (seed % 8);
      const plan = planFaults(seed, faultKinds, count, loadS);
      expect(plan.length).toBe(count);
      const { fromS, toS } = faultWindow(loadS);
      const first = plan.slice(0, Math.min(count, faultKinds.length)).map((f) => f.kind);
      expect(new Set(first).size).toBe(first.length);
      for (const [i, f] of plan.entries()) {
        expect(f.index).toBe(i);
        expect(f.atS).toBeGreaterThanOrEqual(fromS);
        expect(f.atS + f.holdS).toBeLessThanOrEqual(toS + 1e-9);
        const [lo, hi] = faultHoldS[f.kind];
        expect(f.holdS).toBeLessThanOrEqual(hi);
        const slotS = (toS - fromS) / count;
        expect(f.holdS).toBeGreaterThanOrEqual(Math.min(lo, slotS * 0.4) - 1e-3);
        const next = plan[i + 1];
        if (next !== undefined) expect(next.atS).toBeGreaterThan(f.atS + f.holdS);
      }
    }
  });

  test("only the kinds asked for; no faults for 0; too many for the duration is refused", () => {
    const kinds: FaultKind[] = ["sluice-kill", "sluice-pause"];
    expect(new Set(planFaults(3, kinds, 6, 120).map((f) => f.kind))).toEqual(new Set(kinds));
    expect(planFaults(3, faultKinds, 0, 60)).toEqual([]);
    expect(() => planFaults(3, faultKinds, 20, 30)).toThrow(/raise --duration-s or lower --faults/);
  });

  test("options: chaos defaults, fault kinds from the command line, bad kinds and counts refused", () => {
    const parsed = parseOptions(["--scenario", "chaos"]);
    if (parsed.help) throw new Error("unreachable");
    const o = parsed.options;
    expect([o.rate, o.durationS, o.faults, o.diskMb, o.lines]).toEqual([500, 60, 4, 256, "mix"]);
    expect(o.faultKinds).toEqual([...faultKinds]);
    const k = parseOptions(["--scenario", "chaos", "--fault-kinds", "sluice-kill,disk-full"]);
    if (k.help) throw new Error("unreachable");
    expect(k.options.faultKinds).toEqual(["sluice-kill", "disk-full"]);
    expect(() => parseOptions(["--scenario", "chaos", "--fault-kinds", "meteor"])).toThrow(OptionsError);
    expect(() => parseOptions(["--scenario", "chaos", "--faults", "15", "--duration-s", "20"])).toThrow(
      /--faults 15 --duration-s 20/,
    );
  });
});

describe("chaos recovery times", () => {
  const base = {
    startMs: 10_000,
    liftMs: 12_000,
    ratePerSecond: 500,
    untilMs: 30_000,
  };

  test("a kill: /readyz down, completions stop, lag grows and comes back", () => {
    const r = recoveryOf({
      ...base,
      completionsMs: [9_000, 9_900, 10_050, 12_700, 12_800, 14_000],
      readyz: [
        { atMs: 0, ok: true },
        { atMs: 10_100, ok: false },
        { atMs: 12_900, ok: true },
      ],
      lag: [
        { atMs: 6_000, lag: 10 },
        { atMs: 9_000, lag: 40 },
        { atMs: 11_000, lag: 900 },
        { atMs: 13_000, lag: 1_500 },
        { atMs: 14_000, lag: 300 },
        { atMs: 15_000, lag: 60 },
      ],
      backlogLastCompletionMs: 14_000,
    });
    expect(r.completionsWhileHeld).toBe(1);
    expect(r.completionsResumedMs).toBe(700);
    expect(r.readyAgainMs).toBe(900);
    expect(r.readyzDownMs).toBe(2_800);
    expect(r.lagBefore).toBe(40);
    expect(r.lagThreshold).toBe(100); // 500/s × 0.2 s
    expect(r.lagPeak).toBe(1_500);
    expect(r.lagBackMs).toBe(3_000);
    expect(r.backlogDrainedMs).toBe(2_000);
    expect(r.recoveredMs).toBe(3_000);
  });

  test("a fault /readyz never noticed; nothing recovered before the next fault is null", () => {
    const r = recoveryOf({
      ...base,
      untilMs: 16_000,
      completionsMs: [11_000, 11_500],
      readyz: [{ atMs: 0, ok: true }],
      lag: [{ atMs: 13_000, lag: 5_000 }],
      backlogLastCompletionMs: null,
    });
    expect(r.readyzDownMs).toBe(0);
    expect(r.readyAgainMs).toBe(0);
    expect(r.completionsWhileHeld).toBe(2);
    expect(r.completionsResumedMs).toBeNull();
    expect(r.lagBackMs).toBeNull();
    expect(r.backlogDrainedMs).toBeNull();
    expect(r.recoveredMs).toBeNull();
  });

  test("/readyz still down at the next fault counts until then", () => {
    const r = recoveryOf({
      ...base,
      untilMs: 20_000,
      completionsMs: [],
      readyz: [
        { atMs: 0, ok: true },
        { atMs: 10_500, ok: false },
      ],
      lag: [],
      backlogLastCompletionMs: null,
    });
    expect(r.readyzDownMs).toBe(9_500);
    expect(r.readyAgainMs).toBeNull();
  });

  test("backlog: the last completion of the accepted orders intended before the lift", () => {
    const intended = [1_000, 2_000, 3_000, 5_000];
    const completed = [1_100, 4_500, 0, 5_200];
    expect(backlogLastCompletion(intended, completed, (n) => n !== 2, 4_000)).toBe(4_500);
    expect(backlogLastCompletion(intended, completed, () => true, 4_000)).toBeNull();
  });
});

describe("chaos per-order output check", () => {
  const status = (version: number, event = "changed", st = "pending"): OrderOutput => ({
    kind: "status",
    version,
    json: `s${version}${event}${st}`,
    status: st,
    event,
  });
  const fulfil = (version: number, lineIds = ["1"], type = "fulfil"): OrderOutput => ({
    kind: "fulfil",
    version,
    json: `f${version}${type}${lineIds.join()}`,
    type,
    lineIds,
  });

  test("the shapes Sluice produces pass: one change a batch, fulfilment first or after the change", () => {
    // created v1; answer batch: change (v2) then fulfil v3, status v3
    let r = checkOrderOutputs([status(1, "created"), fulfil(3), status(3, "allocated", "allocated")]);
    expect(r.problems).toEqual([]);
    expect(r.finalVersion).toBe(3);
    expect(r.finalStatus).toBe("allocated");
    // fulfil first (v2), status of the same batch at v2
    r = checkOrderOutputs([status(1, "created"), fulfil(2), status(2, "allocated", "allocated")]);
    expect(r.problems).toEqual([]);
    // two lines answered in two batches, the second releasing both to two warehouses
    r = checkOrderOutputs([
      status(1, "created"),
      status(2, "allocated"),
      fulfil(4, ["1"]),
      fulfil(5, ["2"]),
      status(5, "allocated", "allocated"),
    ]);
    expect(r.problems).toEqual([]);
    expect(r.created).toBe(1);
  });

  test("a missing status (a batch lost) is a gap; a fulfilment above the last status too", () => {
    let r = checkOrderOutputs([status(1, "created"), status(3, "allocated", "allocated")]);
    expect(r.problems.join()).toContain("gap between status v1 and v3 (no fulfilment item between)");
    r = checkOrderOutputs([status(1, "created"), fulfil(2)]);
    expect(r.problems.join()).toContain("fulfilment v2 above the last status v1");
    r = checkOrderOutputs([status(1, "created"), fulfil(4), status(5, "allocated")]);
    expect(r.problems.join()).toContain("gap between status v1 and v5");
    r = checkOrderOutputs([fulfil(2), status(2, "allocated")]);
    expect(r.problems.join()).toContain('0 "created" statuses');
  });

  test("re-published unchanged is counted, not a problem; changed contents or a step back is", () => {
    let r = checkOrderOutputs([status(1, "created"), status(1, "created"), fulfil(2), fulfil(2), status(2)]);
    expect(r.problems).toEqual([]);
    expect(r.republished).toBe(2);
    r = checkOrderOutputs([status(1, "created"), { ...status(1, "created"), json: "other" }]);
    expect(r.problems.join()).toContain("status v1 published twice with different contents");
    r = checkOrderOutputs([status(1, "created"), status(3), fulfil(3), status(2)]);
    expect(r.problems.join()).toContain("status v2 after v3");
  });

  test("doubled: a second created status, a line requested again while its request is open", () => {
    let r = checkOrderOutputs([status(1, "created"), status(2, "created")]);
    expect(r.created).toBe(2);
    expect(r.problems.join()).toContain('2 "created" statuses');
    r = checkOrderOutputs([status(1, "created"), fulfil(2), status(2), fulfil(3), status(3)]);
    expect(r.doubled).toBe(true);
    // a cancel in between closes the first request: re-routing, not doubling
    r = checkOrderOutputs([
      status(1, "created"),
      fulfil(2),
      status(2),
      fulfil(3, ["1"], "cancel"),
      status(3),
      fulfil(4),
      status(4),
    ]);
    expect(r.doubled).toBe(false);
    expect(r.problems).toEqual([]);
  });
});
