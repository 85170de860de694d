import { describe, expect, test } from "bun:test";
import type { Phase } from "../../bench/harness/options.ts";
import { Categorical, mix32, Rng, ZipfSampler } from "../../bench/harness/prng.ts";
import {
  ArrivalSchedule,
  isBackorderSku,
  keyPrefixOf,
  type LoadPlan,
  orderIdOf,
  orderPayload,
  parseOrderKey,
  Workload,
} from "../../bench/harness/workload.ts";
import { parseOrder } from "../../src/domain/orders/commands.ts";

function plan(overrides: Partial<LoadPlan> = {}): LoadPlan {
  return {
    natsUrl: "",
    natsClient: null,
    natsReader: null,
    runId: "abc",
    startEpochMs: 0,
    seed: 42,
    scenario: "steady",
    phases: [{ name: "steady", startS: 0, endS: 10, ratePerSecond: 1000 }],
    arrivals: "poisson",
    channel: "shop",
    skus: 1000,
    zipf: 0.6,
    lines: "mix",
    hot: null,
    lifecycle: null,
    trace: null,
    inFlightPublishesMax: 100,
    ...overrides,
  };
}

describe("Rng", () => {
  test("the same seed gives the same stream; another seed or stream another one", () => {
    const a = new Rng(1);
    const b = new Rng(1);
    const c = new Rng(2);
    const d = new Rng(1, 1);
    const xs = Array.from({ length: 100 }, () => a.nextU32());
    expect(Array.from({ length: 100 }, () => b.nextU32())).toEqual(xs);
    expect(Array.from({ length: 100 }, () => c.nextU32())).not.toEqual(xs);
    expect(Array.from({ length: 100 }, () => d.nextU32())).not.toEqual(xs);
  });

  test("floats are uniform in [0, 1) and ints in range", () => {
    const rng = new Rng(3);
    const bins = new Array(10).fill(0);
    for (let i = 0; i < 100_000; i++) {
      const f = rng.float();
      expect(f).toBeGreaterThanOrEqual(0);
      expect(f).toBeLessThan(1);
      bins[Math.floor(f * 10)]++;
    }
    for (const b of bins) expect(Math.abs(b - 10_000)).toBeLessThan(500);
    for (let i = 0; i < 1000; i++) expect(rng.int(7)).toBeLessThan(7);
  });

  test("exponential gaps have the rate's mean", () => {
    const rng = new Rng(4);
    let sum = 0;
    for (let i = 0; i < 50_000; i++) sum += rng.exponential(200);
    expect(sum / 50_000).toBeCloseTo(1 / 200, 3);
  });

  test("mix32 spreads neighbouring seeds", () => {
    expect(mix32(1)).not.toBe(mix32(2));
    expect(mix32(0)).toBeGreaterThanOrEqual(0);
  });
});

describe("ZipfSampler", () => {
  test("rank frequencies follow 1/(k+1)^s", () => {
    const z = new ZipfSampler(100, 1);
    const rng = new Rng(5);
    const counts = new Array(100).fill(0);
    const draws = 200_000;
    for (let i = 0; i < draws; i++) counts[z.sample(rng)]++;
    let h = 0;
    for (let k = 1; k <= 100; k++) h += 1 / k;
    for (const k of [0, 1, 4, 9]) expect(counts[k] / draws).toBeCloseTo(1 / (k + 1) / h, 2);
  });

  test("s = 0.6 over 10,000 SKUs puts ~37 % of draws on the top 10 % (Olist 2017)", () => {
    const share = new ZipfSampler(10_000, 0.6).topShare(0.1);
    expect(share).toBeGreaterThan(0.34);
    expect(share).toBeLessThan(0.42);
  });

  test("refuses a bad size or exponent", () => {
    expect(() => new ZipfSampler(0, 1)).toThrow(RangeError);
    expect(() => new ZipfSampler(10, -1)).toThrow(RangeError);
  });
});

describe("Categorical", () => {
  test("draws with the given weights", () => {
    const c = new Categorical([
      ["a", 70],
      ["b", 20],
      ["c", 10],
    ] as const);
    const rng = new Rng(6);
    const counts: Record<string, number> = { a: 0, b: 0, c: 0 };
    for (let i = 0; i < 100_000; i++) {
      const v = c.sample(rng);
      counts[v] = (counts[v] ?? 0) + 1;
    }
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    expect((counts.a ?? 0) / total).toBeCloseTo(0.7, 1);
    expect((counts.c ?? 0) / total).toBeCloseTo(0.1, 1);
  });

  test("refuses no entries or zero weight", () => {
    expect(() => new Categorical([])).toThrow(RangeError);
    expect(() => new Categorical([["a", 0]])).toThrow(RangeError);
  });
});

describe("ArrivalSchedule", () => {
  const phases: Phase[] = [
    { name: "baseline", startS: 0, endS: 5, ratePerSecond: 100 },
    { name: "burst", startS: 5, endS: 7, ratePerSecond: 5000 },
    { name: "after", startS: 7, endS: 10, ratePerSecond: 100 },
  ];

  function drain(s: ArrivalSchedule): number[] {
    const out: number[] = [];
    for (let t = s.next(); t !== null; t = s.next()) out.push(t);
    return out;
  }

  test("poisson: increasing times, each phase's count close to rate × length, deterministic", () => {
    const times = drain(new ArrivalSchedule(phases, "poisson", 9));
    expect(drain(new ArrivalSchedule(phases, "poisson", 9))).toEqual(times);
    for (let i = 1; i < times.length; i++)
      expect(times[i] as number).toBeGreaterThanOrEqual(times[i - 1] as number);
    const inPhase = (p: Phase) => times.filter((t) => t >= p.startS * 1e6 && t < p.endS * 1e6).length;
    expect(Math.abs(inPhase(phases[0] as Phase) - 500)).toBeLessThan(100);
    expect(Math.abs(inPhase(phases[1] as Phase) - 10_000)).toBeLessThan(400);
    expect(Math.abs(inPhase(phases[2] as Phase) - 300)).toBeLessThan(80);
    expect(times[times.length - 1] as number).toBeLessThan(10e6);
  });

  test("uniform: exactly rate × length, evenly spaced", () => {
    const times = drain(
      new ArrivalSchedule([{ name: "s", startS: 0, endS: 2, ratePerSecond: 1000 }], "uniform", 1),
    );
    // 1 ms, 2 ms, … ; whether the one at 2 s falls inside depends on floating-point rounding of the sum
    expect(times.length).toBeGreaterThanOrEqual(1999);
    expect(times.length).toBeLessThanOrEqual(2000);
    expect(times[0]).toBe(1000);
    expect((times[1] as number) - (times[0] as number)).toBe(1000);
  });

  test("a phase with rate 0 offers nothing", () => {
    const times = drain(
      new ArrivalSchedule(
        [
          { name: "quiet", startS: 0, endS: 5, ratePerSecond: 0 },
          { name: "on", startS: 5, endS: 6, ratePerSecond: 10 },
        ],
        "uniform",
        1,
      ),
    );
    expect(times.every((t) => t > 5e6)).toBe(true);
  });
});

describe("Workload", () => {
  test("an order's content depends on (seed, n) only", () => {
    const a = new Workload(plan(), null);
    const b = new Workload(plan({ phases: [{ name: "x", startS: 0, endS: 1, ratePerSecond: 5 }] }), null);
    expect(a.content(123)).toEqual(b.content(123));
    expect(a.content(123)).not.toEqual(new Workload(plan({ seed: 43 }), null).content(123));
  });

  test("line counts follow the mix; SKUs are distinct per order; payloads pass Sluice's parser", () => {
    const w = new Workload(plan(), null);
    const counts: Record<number, number> = {};
    const limits = { idBytesMax: 256, quantityMax: 1e9, linesPerOrderMax: 200 } as never;
    for (let n = 0; n < 5000; n++) {
      const c = w.content(n);
      counts[c.lines.length] = (counts[c.lines.length] ?? 0) + 1;
      expect(new Set(c.lines.map((l) => l.sku)).size).toBe(c.lines.length);
      if (n < 200) {
        const parsed = parseOrder(
          "shop",
          `o-${n}`,
          JSON.parse(orderPayload({ n, intendedUs: 0, ...c })),
          limits,
        );
        expect(parsed.ok).toBe(true);
      }
    }
    expect((counts[1] ?? 0) / 5000).toBeCloseTo(0.7, 1);
    expect((counts[2] ?? 0) / 5000).toBeCloseTo(0.2, 1);
  });

  test("single lines only for --lines single; hot SKUs take their share", () => {
    const w = new Workload(plan({ lines: "single", hot: { skus: 3, share: 0.9 } }), null);
    let hot = 0;
    for (let n = 0; n < 2000; n++) {
      const c = w.content(n);
      expect(c.lines.length).toBe(1);
      if (c.lines[0]?.sku.startsWith("HOT-")) {
        hot++;
        expect(c.lines[0]?.qty).toBe(1);
        expect(["HOT-0", "HOT-1", "HOT-2"]).toContain(c.lines[0]?.sku as string);
      }
    }
    expect(hot / 2000).toBeCloseTo(0.9, 1);
  });

  test("next() numbers orders 0, 1, 2 … in intended order and stops at the end", () => {
    const w = new Workload(plan({ phases: [{ name: "s", startS: 0, endS: 1, ratePerSecond: 50 }] }), null);
    let last = -1;
    let n = 0;
    for (let o = w.next(); o !== null; o = w.next()) {
      expect(o.n).toBe(n++);
      expect(o.intendedUs).toBeGreaterThanOrEqual(last);
      last = o.intendedUs;
    }
    expect(n).toBeGreaterThan(20);
  });
});

describe("order ids carry the intended and actual send times", () => {
  test("round trip", () => {
    const id = orderIdOf("k3x9", 1042, 10_517_233, 10_519_000);
    expect(id).toBe("bk3x9-1042-10517233-1767");
    expect(parseOrderKey(`shop.${id}`, keyPrefixOf("shop", "k3x9"))).toEqual({
      n: 1042,
      intendedUs: 10_517_233,
      sentUs: 10_519_000,
    });
  });

  test("a send before the intended time counts as on time", () => {
    expect(orderIdOf("r", 1, 500, 400)).toBe("br-1-500-0");
  });

  test("keys of another run, channel or shape are not ours", () => {
    const prefix = keyPrefixOf("shop", "k3x9");
    expect(parseOrderKey("shop.bzzzz-1-2-0", prefix)).toBeNull();
    expect(parseOrderKey("web.bk3x9-1-2-0", prefix)).toBeNull();
    expect(parseOrderKey("shop.bk3x9-1-2", prefix)).toBeNull();
    expect(parseOrderKey("shop.bk3x9-x-2-0", prefix)).toBeNull();
    expect(parseOrderKey("shop.bk3x9-1-2--5", prefix)).toBeNull();
  });
});

describe("lifecycle's backorder mix", () => {
  const orderLimits = { idBytesMax: 256, quantityMax: 1e9, linesPerOrderMax: 200 } as never;
  const mix = { backorderPct: 20, kitPct: 0, cancelPct: 0, rejectPct: 0, partialShipPct: 0, returnPct: 0 };
  test("about backorderPct of the orders: one unit of a BO- SKU, shipped to SP, split.backorder in the payload", () => {
    const w = new Workload(plan({ scenario: "lifecycle", lifecycle: mix }), null);
    let backorders = 0;
    const n = 5000;
    for (let i = 0; i < n; i++) {
      const c = w.content(i);
      const payload = JSON.parse(orderPayload({ n: i, intendedUs: 0, ...c })) as {
        split?: { backorder: boolean };
      };
      expect(parseOrder("shop", `o-${i}`, payload, orderLimits).ok).toBe(true);
      if (c.backorder === true) {
        backorders++;
        expect(c.lines).toHaveLength(1);
        expect(isBackorderSku(c.lines[0]?.sku ?? "")).toBe(true);
        expect(c.lines[0]?.qty).toBe(1);
        expect(c.region).toBe("SP");
        expect(payload.split?.backorder).toBe(true);
      } else {
        expect(c.lines.some((l) => isBackorderSku(l.sku))).toBe(false);
        expect(payload.split).toBeUndefined();
      }
    }
    expect(backorders / n).toBeGreaterThan(0.17);
    expect(backorders / n).toBeLessThan(0.23);
    // The same (seed, n) gives the same order.
    expect(new Workload(plan({ scenario: "lifecycle", lifecycle: mix }), null).content(7)).toEqual(
      w.content(7),
    );
  });

  test("0 % (and every other scenario): no backorder", () => {
    const off = new Workload(plan({ scenario: "lifecycle", lifecycle: { ...mix, backorderPct: 0 } }), null);
    const steady = new Workload(plan(), null);
    for (let i = 0; i < 1000; i++) {
      expect(off.content(i).backorder).toBeUndefined();
      expect(steady.content(i).backorder).toBeUndefined();
    }
  });
});

describe("lifecycle's kit mix", () => {
  const mix = { backorderPct: 0, kitPct: 25, cancelPct: 0, rejectPct: 0, partialShipPct: 0, returnPct: 0 };
  test("about kitPct of the orders are one line of a bench-network kit, 1–2 kits", () => {
    const w = new Workload(plan({ scenario: "lifecycle", lifecycle: mix }), null);
    let kits = 0;
    const n = 4000;
    for (let i = 0; i < n; i++) {
      const c = w.content(i);
      const kitLines = c.lines.filter((l) => /^KIT-[0-7]$/.test(l.sku));
      if (kitLines.length > 0) {
        kits++;
        expect(c.lines).toHaveLength(1);
        expect(kitLines[0]?.qty).toBeGreaterThanOrEqual(1);
        expect(kitLines[0]?.qty).toBeLessThanOrEqual(2);
      }
    }
    expect(kits / n).toBeGreaterThan(0.22);
    expect(kits / n).toBeLessThan(0.28);
  });

  test("the bench network's catalog holds those kits, its components catalogue SKUs", async () => {
    const { parseNetwork } = await import("../../src/domain/network/index.ts");
    const toml = await Bun.file(new URL("../../bench/harness/network.toml", import.meta.url)).text();
    const parsed = parseNetwork(Bun.TOML.parse(toml), "bench");
    if (!parsed.ok) throw new Error(parsed.detail);
    const kits = parsed.value.kits ?? [];
    expect(kits.map((k) => k.sku)).toEqual(Array.from({ length: 8 }, (_, i) => `KIT-${i}`));
    for (const k of kits) for (const c of k.components) expect(c.sku).toMatch(/^SKU-\d+$/);
  });
});
