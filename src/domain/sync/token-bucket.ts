import { assert } from "../assert.ts";

/**
 * A token bucket, clock-free: time is an argument. It holds up to `depth` tokens and gains `ratePerSecond`
 * tokens per second; one request takes one token. Over any interval of T seconds it allows at most
 * depth + ratePerSecond × T requests. The rate may be fractional (a channel's budget split across partitions).
 */
export type TokenBucketState = { tokens: number; refilledAtMs: number | null };

/** Float slack: a refill computed to the millisecond can land a hair under a whole token. */
const tokenEpsilon = 1e-9;

export class TokenBucket {
  private tokens: number;
  private refilledAtMs: number | null;

  constructor(
    private ratePerSecond: number,
    private depth: number,
    state?: TokenBucketState,
  ) {
    assertRate(ratePerSecond, depth);
    this.tokens = state?.tokens ?? depth;
    this.refilledAtMs = state?.refilledAtMs ?? null;
    assert(this.tokens >= 0 && this.tokens <= depth, "bucket tokens lie in [0, depth]");
  }

  /** A new rate or depth (the channel's rules changed): tokens above the new depth are dropped. */
  setRate(ratePerSecond: number, depth: number): void {
    assertRate(ratePerSecond, depth);
    this.ratePerSecond = ratePerSecond;
    this.depth = depth;
    this.tokens = Math.min(this.tokens, depth);
  }

  /**
   * Tokens at `nowMs`, without taking any. A clock that steps back adds nothing (and takes nothing); the
   * next `tryTake` or `msUntilToken` measures from the earlier time, so the refill goes on from there.
   */
  tokensAt(nowMs: number): number {
    if (this.refilledAtMs === null) return this.tokens;
    const elapsedMs = Math.max(0, nowMs - this.refilledAtMs);
    return Math.min(this.depth, this.tokens + (elapsedMs * this.ratePerSecond) / 1000);
  }

  /** Takes one token if there is one at `nowMs`. */
  tryTake(nowMs: number): boolean {
    this.tokens = this.tokensAt(nowMs);
    // Always `nowMs`, also when the clock stepped back Δ: keeping the later time would refill nothing
    // until the clock caught up again (a stall of Δ); the tokens already earned are kept, none are added.
    this.refilledAtMs = nowMs;
    if (this.tokens + tokenEpsilon < 1) return false;
    this.tokens = Math.max(0, this.tokens - 1);
    return true;
  }

  /** Milliseconds from `nowMs` until a token is there (0: now). */
  msUntilToken(nowMs: number): number {
    // A clock behind the last refill stepped back: measure from now on, or the wait would be Δ too long.
    if (this.refilledAtMs !== null && nowMs < this.refilledAtMs) this.refilledAtMs = nowMs;
    const missing = 1 - this.tokensAt(nowMs);
    if (missing <= tokenEpsilon) return 0;
    return Math.ceil((missing * 1000) / this.ratePerSecond);
  }

  exportState(): TokenBucketState {
    return { tokens: this.tokens, refilledAtMs: this.refilledAtMs };
  }
}

function assertRate(ratePerSecond: number, depth: number): void {
  assert(Number.isFinite(ratePerSecond) && ratePerSecond > 0, "bucket rate is a positive number");
  assert(Number.isFinite(depth) && depth >= 1, "bucket depth holds at least one token");
}
