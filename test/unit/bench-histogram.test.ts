import { describe, expect, test } from "bun:test";
import {
  bucketCount,
  bucketHighUs,
  bucketOf,
  LatencyHistogram,
  valueUsMax,
} from "../../bench/harness/histogram.ts";
import { Rng } from "../../bench/harness/prng.ts";

describe("bench histogram buckets", () => {
  test("values below 256 µs are exact", () => {
    for (let v = 0; v < 256; v++) {
      expect(bucketOf(v)).toBe(v);
      expect(bucketHighUs(bucketOf(v))).toBe(v);
    }
  });

  test("every value lands in a bucket whose range holds it, within 1/128", () => {
    const rng = new Rng(7);
    for (let i = 0; i < 20_000; i++) {
      const v = Math.floor(2 ** (rng.float() * 32));
      const b = bucketOf(v);
      expect(b).toBeGreaterThanOrEqual(0);
      expect(b).toBeLessThan(bucketCount);
      const high = bucketHighUs(b);
      expect(high).toBeGreaterThanOrEqual(v);
      expect((high - v) / Math.max(1, v)).toBeLessThan(1 / 128);
      if (b > 0) expect(bucketHighUs(b - 1)).toBeLessThan(v);
    }
  });

  test("buckets are monotonic and the last one ends at the top value", () => {
    for (let b = 1; b < bucketCount; b++) expect(bucketHighUs(b)).toBeGreaterThan(bucketHighUs(b - 1));
    expect(bucketOf(valueUsMax)).toBe(bucketCount - 1);
    expect(bucketHighUs(bucketCount - 1)).toBe(valueUsMax);
  });
});

describe("LatencyHistogram", () => {
  test("percentiles of 1…10,000 ms are within 1 % of the exact ones", () => {
    const h = new LatencyHistogram();
    for (let ms = 1; ms <= 10_000; ms++) h.recordMs(ms);
    const s = h.summary();
    expect(s.count).toBe(10_000);
    expect(s.minMs).toBe(1);
    expect(s.maxMs).toBe(10_000);
    for (const [got, exact] of [
      [s.p50Ms, 5000],
      [s.p90Ms, 9000],
      [s.p99Ms, 9900],
      [s.p999Ms, 9990],
    ] as const) {
      expect(got).toBeGreaterThanOrEqual(exact);
      expect(got / exact).toBeLessThan(1.01);
    }
    expect(s.meanMs).toBeCloseTo(5000.5, 1);
  });

  test("an empty histogram summarises to zeros", () => {
    const s = new LatencyHistogram().summary();
    expect(s).toEqual({ count: 0, minMs: 0, meanMs: 0, p50Ms: 0, p90Ms: 0, p99Ms: 0, p999Ms: 0, maxMs: 0 });
  });

  test("a percentile never exceeds the largest recorded value", () => {
    const h = new LatencyHistogram();
    h.recordUs(1_000_001);
    expect(h.quantileUs(0.5)).toBe(1_000_001);
    expect(h.quantileUs(1)).toBe(1_000_001);
  });

  test("negative values count as 0 and huge ones are clamped and flagged", () => {
    const h = new LatencyHistogram();
    h.recordMs(-3);
    h.recordUs(valueUsMax * 4);
    expect(h.count).toBe(2);
    expect(h.minUs).toBe(0);
    expect(h.maxUs).toBe(valueUsMax);
    expect(h.clampedCount).toBe(1);
  });

  test("merge equals recording everything in one; JSON round-trips; reset empties", () => {
    const rng = new Rng(11);
    const a = new LatencyHistogram();
    const b = new LatencyHistogram();
    const all = new LatencyHistogram();
    for (let i = 0; i < 5000; i++) {
      const v = Math.floor(rng.exponential(1 / 20_000));
      (i % 2 === 0 ? a : b).recordUs(v);
      all.recordUs(v);
    }
    a.merge(b);
    expect(a.summary()).toEqual(all.summary());
    const back = LatencyHistogram.fromJSON(JSON.parse(JSON.stringify(all.toJSON())));
    expect(back.summary()).toEqual(all.summary());
    expect(all.toJSON().buckets.length).toBeLessThan(bucketCount);
    all.reset();
    expect(all.count).toBe(0);
    expect(all.summary().p99Ms).toBe(0);
  });

  test("fromJSON refuses a bucket index out of range", () => {
    const json = new LatencyHistogram().toJSON();
    json.buckets = [[bucketCount, 1]];
    expect(() => LatencyHistogram.fromJSON(json)).toThrow(/bad bucket index/);
  });
});
