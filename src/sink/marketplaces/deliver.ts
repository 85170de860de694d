import { assert } from "../../domain/assert.ts";
import { backoffMs, type FailureKind, type HttpReply } from "../post.ts";
import type { Call, ItemFailureCode, Profile, Target, Verdict } from "./types.ts";

// The retry loop of the marketplace profiles: one request (a group of targets) at a time, every retry and
// wait bounded. A profile builds requests and reads answers; this loop decides what happens next.

export type DeliverLimits = {
  /** Tries of a request that failed (5xx, network, timeout, an API error worth retrying). */
  attemptsMax: number;
  backoffMsMin: number;
  backoffMsMax: number;
  /** Throttled answers (429, THROTTLED, ApiCallLimit) of one request before its targets are dead-lettered. */
  throttleRetriesMax: number;
  /** The longest single wait for a throttle (Retry-After, Shopify's cost bucket). */
  throttleWaitMsMax: number;
  /** Compare-and-set conflicts in a row for one request (Shopify) before its targets are dead-lettered. */
  conflictRetriesMax: number;
};

export type DeliverIo<R> = {
  /** Sends one call within the sink's rate budget, telling the server the batch is being worked on. */
  send(call: Call<R>): Promise<HttpReply>;
  /** Sleeps, telling the server the batch is being worked on; returns early when the sink stops. */
  pause(ms: number): Promise<void>;
  stopping(): boolean;
  /** Wall-clock epoch ms (signatures carry it). */
  nowMs(): number;
  attemptFailed(e: {
    failure: FailureKind;
    status: number | null;
    attempt: number;
    willRetry: boolean;
    detail: string;
  }): void;
  throttleWaited(ms: number): void;
  conflicted(targets: number): void;
  /** Secrets out of every detail that leaves (logs, dead letters). */
  mask(text: string): string;
};

export type Outcome = { ok: true } | { ok: false; code: ItemFailureCode; detail: string };

/** Every target's outcome, or null when the sink stopped first (what was not settled goes again next run). */
export async function deliverAll<R>(
  profile: Profile<R>,
  targets: Array<Target<R>>,
  limits: DeliverLimits,
  io: DeliverIo<R>,
): Promise<Map<Target<R>, Outcome> | null> {
  const out = new Map<Target<R>, Outcome>();
  for (const group of profile.group(targets)) {
    assert(group.length > 0, "a request covers at least one target");
    const done = await deliverGroup(profile, group, limits, io, out);
    if (!done) return null;
  }
  assert(out.size === targets.length, "every target has an outcome");
  return out;
}

/** One request's targets to their outcomes; false when the sink stopped. */
async function deliverGroup<R>(
  profile: Profile<R>,
  group: Array<Target<R>>,
  limits: DeliverLimits,
  io: DeliverIo<R>,
  out: Map<Target<R>, Outcome>,
): Promise<boolean> {
  let live = group;
  const tries = { attempts: 0, throttles: 0, conflicts: 0 };
  // Each step either settles targets, or spends one of the bounded tries; a read happens at most once per
  // conflict (and once at the start), so this many steps is more than enough — more is a broken profile.
  const stepsMax =
    limits.attemptsMax + limits.throttleRetriesMax + 2 * (limits.conflictRetriesMax + 2) + group.length;
  const fail = (ts: Array<Target<R>>, code: ItemFailureCode, detail: string) => {
    for (const t of ts) out.set(t, { ok: false, code, detail: io.mask(detail) });
  };
  for (let step = 0; live.length > 0; step++) {
    assert(step <= stepsMax, "a request settles within its bounded tries");
    const call = profile.next(live, io.nowMs());
    assert(call.covers.length > 0, "a call covers at least one target");
    const paceMs = Math.min(profile.paceMs(call, io.nowMs()), limits.throttleWaitMsMax);
    if (paceMs > 0) {
      io.throttleWaited(paceMs);
      await io.pause(paceMs);
    }
    if (io.stopping()) return false;
    const reply = await io.send(call);
    if (!reply.answered && reply.kind === "aborted") return false;
    const verdict: Verdict<R> = reply.answered
      ? profile.judge(
          call,
          { status: reply.status, text: reply.text, retryAfterMs: reply.retryAfterMs },
          io.nowMs(),
        )
      : {
          kind: "retry",
          throttled: false,
          failure: reply.kind,
          status: null,
          detail: reply.detail,
          retryAfterMs: null,
        };
    switch (verdict.kind) {
      case "written": {
        const failed = new Set(verdict.failed.map((f) => f.target));
        const resend = new Set(verdict.resend);
        for (const f of verdict.failed) fail([f.target], "rejected", f.detail);
        for (const t of call.covers) if (!failed.has(t) && !resend.has(t)) out.set(t, { ok: true });
        const progressed = failed.size > 0 || resend.size < call.covers.length || verdict.conflict;
        assert(progressed, "a resend without a conflict drops something");
        if (verdict.conflict) {
          io.conflicted(resend.size);
          tries.conflicts++;
          if (tries.conflicts > limits.conflictRetriesMax) {
            fail([...resend], "conflicts_exhausted", `${tries.conflicts} compare-and-set conflicts in a row`);
            resend.clear();
          }
        } else tries.conflicts = 0;
        live = live.filter((t) => resend.has(t) || !(out.has(t) || call.covers.includes(t)));
        break;
      }
      case "read": {
        const failed = new Set(verdict.failed.map((f) => f.target));
        for (const f of verdict.failed) fail([f.target], "rejected", f.detail);
        live = live.filter((t) => !failed.has(t));
        break;
      }
      case "refused":
        fail(live, "rejected", verdict.detail);
        io.attemptFailed({ ...attemptOf(verdict, tries.attempts + 1, io), willRetry: false });
        live = [];
        break;
      case "retry": {
        const pause = await retryPause(verdict, tries, limits, io);
        if (pause === "exhausted") {
          const code = verdict.throttled ? "throttle_exhausted" : "attempts_exhausted";
          fail(live, code, verdict.detail);
          live = [];
        } else if (io.stopping()) return false;
      }
    }
  }
  return true;
}

const attemptOf = <R>(
  v: { failure: FailureKind; status: number | null; detail: string },
  attempt: number,
  io: DeliverIo<R>,
) => ({ failure: v.failure, status: v.status, attempt, detail: io.mask(v.detail) });

/** Counts the try and waits before the next one, or says the bound is spent. */
async function retryPause<R>(
  v: Extract<Verdict<R>, { kind: "retry" }>,
  tries: { attempts: number; throttles: number },
  limits: DeliverLimits,
  io: DeliverIo<R>,
): Promise<"exhausted" | "waited"> {
  const attempt = v.throttled ? ++tries.throttles : ++tries.attempts;
  const bound = v.throttled ? limits.throttleRetriesMax : limits.attemptsMax;
  const willRetry = attempt < bound;
  io.attemptFailed({ ...attemptOf(v, attempt, io), willRetry });
  if (!willRetry) return "exhausted";
  if (v.throttled) {
    // The API said how long (Retry-After, Lazada's ban, Shopify's bucket): wait that, else back off; either
    // within throttleWaitMsMax. A wait cut short by the bound is met by another throttle, counted above.
    const ms = Math.min(limits.throttleWaitMsMax, v.retryAfterMs ?? backoffMs(attempt, limits, null));
    io.throttleWaited(ms);
    await io.pause(ms);
  } else {
    await io.pause(backoffMs(attempt, limits, v.retryAfterMs));
  }
  return "waited";
}
