// Seeded randomness for the load generator: the same seed gives the same orders, the same SKUs and the same
// intended send times, run after run. xoshiro128** (Blackman & Vigna) seeded through splitmix32: 32-bit
// integer arithmetic only, so it is exact in JavaScript and fast.

/** splitmix32 step: spreads a seed over 32 bits; used to seed xoshiro and to derive per-order streams. */
export function mix32(x: number): number {
  let z = (x + 0x9e3779b9) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number, stream = 0) {
    // Two inputs (a run seed and, say, an order number) give independent streams.
    let x = mix32((seed >>> 0) ^ mix32(stream >>> 0));
    this.s0 = x = mix32(x);
    this.s1 = x = mix32(x);
    this.s2 = x = mix32(x);
    this.s3 = mix32(x);
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1; // the all-zero state never leaves zero
  }

  /** A uniform 32-bit unsigned integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1), 32 bits of resolution. */
  float(): number {
    return this.nextU32() / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  /** Uniform in [lo, hi). */
  between(lo: number, hi: number): number {
    return lo + (hi - lo) * this.float();
  }

  /** An exponential gap with the given rate (events per unit): Poisson arrivals. */
  exponential(rate: number): number {
    return -Math.log(1 - this.float()) / rate;
  }

  chance(p: number): boolean {
    return this.float() < p;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/**
 * Zipf popularity over ranks 0…n−1: P(rank k) ∝ 1/(k+1)^s. The CDF is precomputed (8 bytes a rank) and
 * sampled by binary search: log2(n) steps, ~17 for 100,000 SKUs.
 */
export class ZipfSampler {
  private readonly cdf: Float64Array;

  constructor(
    readonly n: number,
    readonly s: number,
  ) {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`zipf: n must be a whole number ≥ 1, got ${n}`);
    if (!(s >= 0)) throw new RangeError(`zipf: exponent must be ≥ 0, got ${s}`);
    this.cdf = new Float64Array(n);
    let sum = 0;
    for (let k = 0; k < n; k++) {
      sum += 1 / (k + 1) ** s;
      this.cdf[k] = sum;
    }
    for (let k = 0; k < n; k++) this.cdf[k] = (this.cdf[k] as number) / sum;
  }

  sample(rng: Rng): number {
    const u = rng.float();
    let lo = 0;
    let hi = this.n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.cdf[mid] as number) > u) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** Share of all draws that go to the top `fraction` of ranks (for the report). */
  topShare(fraction: number): number {
    const k = Math.max(1, Math.round(this.n * fraction));
    return this.cdf[k - 1] as number;
  }
}

/** Draws one of `values` with the given weights (need not sum to 1). */
export class Categorical<T> {
  private readonly cumulative: number[] = [];
  private readonly total: number;

  constructor(private readonly entries: readonly (readonly [T, number])[]) {
    if (entries.length === 0) throw new RangeError("categorical: no entries");
    let sum = 0;
    for (const [, w] of entries) {
      if (!(w >= 0)) throw new RangeError(`categorical: weights must be ≥ 0, got ${w}`);
      sum += w;
      this.cumulative.push(sum);
    }
    if (!(sum > 0)) throw new RangeError("categorical: weights sum to 0");
    this.total = sum;
  }

  sample(rng: Rng): T {
    const u = rng.float() * this.total;
    for (let i = 0; i < this.cumulative.length; i++) {
      if (u < (this.cumulative[i] as number)) return (this.entries[i] as readonly [T, number])[0];
    }
    return (this.entries[this.entries.length - 1] as readonly [T, number])[0];
  }
}
