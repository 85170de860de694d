// A log-linear latency histogram in the manner of HdrHistogram: values are whole microseconds; below 256 µs
// each value has its own bucket, above it every power of two is split into 128 equal buckets, so a
// recorded value is known to within 1/128 < 0.8 % (two significant digits, HDR's usual setting).
// 256 + 24 × 128 = 3,328 buckets cover 0 µs … 2³² µs (71 minutes) in 26 KiB; a value beyond that is
// counted in the top bucket and flagged (`clampedCount`). Recording is O(1), a percentile O(buckets).
//
// Written here instead of depending on hdr-histogram-js: ~100 lines, no lockfile change while others edit
// package.json, and the report needs the raw buckets anyway (merge per phase, sparse JSON).

const subBucketBits = 7;
const subBucketCount = 1 << subBucketBits; // 128 buckets per power of two
const linearLimit = 2 * subBucketCount; // values below 256 µs are exact
const octaveCount = 32 - (subBucketBits + 1); // 2^8 … 2^32
export const bucketCount = linearLimit + octaveCount * subBucketCount;
export const valueUsMax = 2 ** 32 - 1;

export function bucketOf(valueUs: number): number {
  if (valueUs < linearLimit) return valueUs;
  const bit = 31 - Math.clz32(valueUs); // ≥ 8
  const shift = bit - subBucketBits; // ≥ 1
  const mantissa = valueUs >>> shift; // 128 … 255
  return linearLimit + (shift - 1) * subBucketCount + (mantissa - subBucketCount);
}

/** The highest value that lands in a bucket (HDR's "highest equivalent value"). */
export function bucketHighUs(index: number): number {
  if (index < linearLimit) return index;
  const shift = Math.floor((index - linearLimit) / subBucketCount) + 1;
  const mantissa = ((index - linearLimit) % subBucketCount) + subBucketCount;
  return (mantissa + 1) * 2 ** shift - 1;
}

export type LatencySummary = {
  count: number;
  minMs: number;
  meanMs: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
};

export type HistogramJson = {
  unit: "microseconds";
  count: number;
  minUs: number;
  maxUs: number;
  sumUs: number;
  clampedCount: number;
  /** Sparse [bucket index, count] pairs; a bucket's value is bucketHighUs(index). */
  buckets: [number, number][];
};

export class LatencyHistogram {
  private counts = new Float64Array(bucketCount);
  count = 0;
  minUs = Number.POSITIVE_INFINITY;
  maxUs = 0;
  sumUs = 0;
  clampedCount = 0;

  recordMs(ms: number): void {
    this.recordUs(Math.round(ms * 1000));
  }

  recordUs(valueUs: number): void {
    let v = valueUs;
    // A negative latency only comes from clocks of two processes disagreeing by a little: count it as 0.
    if (!(v > 0)) v = 0;
    if (v > valueUsMax) {
      v = valueUsMax;
      this.clampedCount++;
    }
    const i = bucketOf(v);
    this.counts[i] = (this.counts[i] as number) + 1;
    this.count++;
    this.sumUs += v;
    if (v < this.minUs) this.minUs = v;
    if (v > this.maxUs) this.maxUs = v;
  }

  /** The value at quantile q (0…1): the highest equivalent value of the bucket holding that rank, ≤ max. */
  quantileUs(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < bucketCount; i++) {
      seen += this.counts[i] as number;
      if (seen >= rank) return Math.min(bucketHighUs(i), this.maxUs);
    }
    return this.maxUs;
  }

  merge(other: LatencyHistogram): void {
    for (let i = 0; i < bucketCount; i++)
      this.counts[i] = (this.counts[i] as number) + (other.counts[i] as number);
    this.count += other.count;
    this.sumUs += other.sumUs;
    this.clampedCount += other.clampedCount;
    if (other.minUs < this.minUs) this.minUs = other.minUs;
    if (other.maxUs > this.maxUs) this.maxUs = other.maxUs;
  }

  reset(): void {
    if (this.count === 0) return;
    this.counts.fill(0);
    this.count = 0;
    this.minUs = Number.POSITIVE_INFINITY;
    this.maxUs = 0;
    this.sumUs = 0;
    this.clampedCount = 0;
  }

  summary(): LatencySummary {
    const ms = (us: number) => Math.round(us) / 1000;
    return {
      count: this.count,
      minMs: this.count === 0 ? 0 : ms(this.minUs),
      meanMs: this.count === 0 ? 0 : ms(this.sumUs / this.count),
      p50Ms: ms(this.quantileUs(0.5)),
      p90Ms: ms(this.quantileUs(0.9)),
      p99Ms: ms(this.quantileUs(0.99)),
      p999Ms: ms(this.quantileUs(0.999)),
      maxMs: ms(this.maxUs),
    };
  }

  toJSON(): HistogramJson {
    const buckets: [number, number][] = [];
    for (let i = 0; i < bucketCount; i++) {
      const c = this.counts[i] as number;
      if (c > 0) buckets.push([i, c]);
    }
    return {
      unit: "microseconds",
      count: this.count,
      minUs: this.count === 0 ? 0 : this.minUs,
      maxUs: this.maxUs,
      sumUs: this.sumUs,
      clampedCount: this.clampedCount,
      buckets,
    };
  }

  static fromJSON(json: HistogramJson): LatencyHistogram {
    const h = new LatencyHistogram();
    for (const [i, c] of json.buckets) {
      if (!Number.isInteger(i) || i < 0 || i >= bucketCount) throw new RangeError(`bad bucket index ${i}`);
      h.counts[i] = c;
    }
    h.count = json.count;
    h.minUs = json.count === 0 ? Number.POSITIVE_INFINITY : json.minUs;
    h.maxUs = json.maxUs;
    h.sumUs = json.sumUs;
    h.clampedCount = json.clampedCount;
    return h;
  }
}
