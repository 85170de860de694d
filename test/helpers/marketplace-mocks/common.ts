// What the three marketplace mocks share: a seeded PRNG for injected faults, a record of every request and of
// every breach of the marketplace's documented contract (a test asserts there was none), and Bun.serve on
// 127.0.0.1 with a random port.

/** mulberry32: small, seeded, good enough to pick faults and workloads reproducibly. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type MockRequest = {
  atMs: number;
  /** How many units the request carried (Lazada SKUs, Shopify quantities or read pairs, Shopee models). */
  size: number;
  op: string;
  /** What the mock answered: ok, or an error code. */
  outcome: string;
};

/** Faults injected at random (rates in [0, 1]), from `seed`. */
export type Faults = { seed?: number; serverErrorRate?: number; throttleRate?: number };

export class MockLog {
  readonly requests: MockRequest[] = [];
  /** Breaches of the documented contract by the client; every test expects none. */
  readonly violations: string[] = [];

  note(op: string, size: number, outcome: string): void {
    this.requests.push({ atMs: Date.now(), op, size, outcome });
  }

  count(outcome: string): number {
    return this.requests.filter((r) => r.outcome === outcome).length;
  }

  /** The largest request of `op` that was accepted for processing. */
  sizeMax(op: string): number {
    return Math.max(0, ...this.requests.filter((r) => r.op === op).map((r) => r.size));
  }
}

/**
 * A fixed one-second window: at most `perSecondMax` calls; past it the client is banned for `banMs`. A call
 * during a ban is answered with the ban again, and is a breach when the client had been told of that ban
 * (it did not honour the answer that told it to wait). A restarted client was told nothing: `newClient()`.
 */
export class RateLimit {
  private windowStartMs = 0;
  private calls = 0;
  private bannedUntilMs = 0;
  private toldUntilMs = 0;

  constructor(
    private readonly perSecondMax: number,
    readonly banMs: number,
  ) {}

  /** "ok", or "banned" (a call during a ban it was told of: a breach), or "limited" (told to wait now). */
  check(nowMs: number, forced: boolean): "ok" | "banned" | "limited" {
    // 20 ms of slack: the client's timer and ours may disagree by a tick.
    if (nowMs < this.toldUntilMs - 20) return "banned";
    if (nowMs < this.bannedUntilMs) {
      this.toldUntilMs = this.bannedUntilMs;
      return "limited";
    }
    if (nowMs - this.windowStartMs >= 1000) {
      this.windowStartMs = nowMs;
      this.calls = 0;
    }
    this.calls++;
    if (!forced && this.calls <= this.perSecondMax) return "ok";
    this.bannedUntilMs = nowMs + this.banMs;
    this.toldUntilMs = this.bannedUntilMs;
    return "limited";
  }

  newClient(): void {
    this.toldUntilMs = 0;
  }
}

export function serve(fetch: (req: Request) => Response | Promise<Response>) {
  return Bun.serve({ hostname: "127.0.0.1", port: 0, fetch });
}

export const json = (body: unknown, status = 200, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json", ...headers } });
