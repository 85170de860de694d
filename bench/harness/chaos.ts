// The chaos scenario's pure parts (unit-tested in test/unit/bench-chaos.test.ts): the fault schedule drawn
// from the seed, the recovery times of a fault from what the harness recorded, and the per-order check of
// Sluice's outputs (no order lost or doubled, versions without a gap). The processes, the faults themselves
// and the stream reading are in chaos-run.ts.
import { Rng } from "./prng.ts";

export const faultKinds = ["sluice-kill", "nats-restart", "sluice-pause", "disk-full"] as const;
export type FaultKind = (typeof faultKinds)[number];

/**
 * How long each fault is held, in seconds (drawn from the seed within the range, and at most 40 % of a fault's
 * slot so that a short run still has time to recover between faults):
 * - sluice-kill: SIGKILL, then Sluice is started again this long after (a supervisor's restart delay);
 * - nats-restart: nats-server SIGKILLed, started again on the same port and store this long after;
 * - sluice-pause: SIGSTOP, SIGCONT this long after;
 * - disk-full: Sluice's data mount filled with a ballast file, freed this long after.
 */
export const faultHoldS: Record<FaultKind, readonly [number, number]> = {
  "sluice-kill": [0.5, 2],
  "nats-restart": [1, 3],
  "sluice-pause": [2, 5],
  "disk-full": [4, 8],
};

export const faultWhat: Record<FaultKind, string> = {
  "sluice-kill": "Sluice SIGKILLed, started again after the hold",
  "nats-restart": "nats-server SIGKILLed, started again on the same port and store after the hold",
  "sluice-pause": "Sluice SIGSTOPped, SIGCONT after the hold",
  "disk-full": "Sluice's data mount filled to the last byte with a ballast file, freed after the hold",
};

export type PlannedFault = { index: number; kind: FaultKind; atS: number; holdS: number };

/** The load's first seconds and last seconds carry no fault: a baseline before, and time to recover after. */
export function faultWindow(loadS: number): { fromS: number; toS: number } {
  return { fromS: Math.min(5, loadS * 0.1), toS: loadS - Math.min(8, loadS * 0.15) };
}

/** The smallest slot a fault may have (seconds): the hold plus time to recover before the next one. */
export const faultSlotMinS = 2.5;

/**
 * The fault schedule: `count` faults in the load's fault window, one per equal slot, none overlapping. Kinds
 * come from a seeded shuffle of `kinds` (each kind once before any repeats); the moment within the slot and the
 * hold are drawn from the seed. The same (seed, kinds, count, loadS) gives the same schedule.
 */
export function planFaults(
  seed: number,
  kinds: readonly FaultKind[],
  count: number,
  loadS: number,
): PlannedFault[] {
  if (count === 0 || kinds.length === 0) return [];
  const { fromS, toS } = faultWindow(loadS);
  const slotS = (toS - fromS) / count;
  if (!(slotS >= faultSlotMinS))
    throw new Error(
      `${count} faults need at least ${faultSlotMinS} s each between ${fromS} s and ${toS} s of the load; raise --duration-s or lower --faults`,
    );
  const rng = new Rng(seed, 0xc4a05);
  const order: FaultKind[] = [];
  while (order.length < count) {
    const cycle = [...kinds];
    for (let i = cycle.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [cycle[i], cycle[j]] = [cycle[j] as FaultKind, cycle[i] as FaultKind];
    }
    order.push(...cycle);
  }
  return order.slice(0, count).map((kind, index) => {
    const [lo, hi] = faultHoldS[kind];
    const holdS = round3(Math.min(rng.between(lo, hi), slotS * 0.4));
    // Start in the first part of the slot: the rest of it is the hold and the recovery before the next fault.
    const slackS = Math.max(0, slotS * 0.5 - holdS * 0.5);
    const atS = round3(fromS + index * slotS + rng.float() * slackS);
    return { index, kind, atS, holdS };
  });
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;

/** /readyz as polled: the state at `atMs` until the next entry (only changes are kept). */
export type ReadyzChange = { atMs: number; ok: boolean };
export type LagPoint = { atMs: number; lag: number };

export type RecoveryInput = {
  startMs: number;
  /** When the harness lifted the fault (restart spawned, SIGCONT sent, ballast removed). */
  liftMs: number;
  /** Arrival times (epoch ms, ascending) of every completion the observer saw. */
  completionsMs: ArrayLike<number>;
  readyz: readonly ReadyzChange[];
  /** Consumer lag (order + ledger) scraped each second; only successful scrapes. */
  lag: readonly LagPoint[];
  ratePerSecond: number;
  /** The last completion (epoch ms) of the accepted orders intended before the lift; null if one never completed. */
  backlogLastCompletionMs: number | null;
  /** The next fault's start, or the end of what the harness watched (epoch ms): "not recovered" means not by then. */
  untilMs: number;
};

export type Recovery = {
  /** Completions the observer saw while the fault was held. */
  completionsWhileHeld: number;
  /** From the lift to the first completion at or after it. */
  completionsResumedMs: number | null;
  /** How long /readyz answered anything but 200 (or nothing) from the fault's start until the next fault. */
  readyzDownMs: number;
  /** From the lift to the first /readyz 200 at or after it (0: it answered 200 at the lift). */
  readyAgainMs: number | null;
  /** The highest lag sample in the 5 s before the fault, the threshold "back to before", the peak after. */
  lagBefore: number;
  lagThreshold: number;
  lagPeak: number;
  /** From the lift to the first lag sample at or under the threshold. */
  lagBackMs: number | null;
  /** From the lift to the completion of the last accepted order intended before the lift. */
  backlogDrainedMs: number | null;
  /** The latest of the four: the fault is over for a client when all of them are. null: not within the run. */
  recoveredMs: number | null;
};

/** Lag within this share of a second of the offered rate counts as "back to before", at least 20 messages. */
export const lagToleranceS = 0.2;

export function recoveryOf(x: RecoveryInput): Recovery {
  const c = x.completionsMs;
  let held = 0;
  let resumed: number | null = null;
  for (let i = 0; i < c.length; i++) {
    const t = c[i] as number;
    if (t >= x.startMs && t < x.liftMs) held++;
    if (t >= x.liftMs && t <= x.untilMs) {
      resumed = t - x.liftMs;
      break;
    }
  }
  // /readyz: the state at a time is the last change at or before it (null before the first poll).
  const stateAt = (t: number) => {
    let ok: boolean | null = null;
    for (const r of x.readyz) {
      if (r.atMs > t) break;
      ok = r.ok;
    }
    return ok;
  };
  let readyAgain: number | null = stateAt(x.liftMs) === true ? 0 : null;
  if (readyAgain === null)
    for (const r of x.readyz)
      if (r.ok && r.atMs > x.liftMs && r.atMs <= x.untilMs) {
        readyAgain = r.atMs - x.liftMs;
        break;
      }
  // Time /readyz was not 200 from the fault's start until the next fault (or the end).
  let downMs = 0;
  let downSince: number | null = stateAt(x.startMs) === false ? x.startMs : null;
  for (const r of x.readyz) {
    if (r.atMs <= x.startMs) continue;
    if (r.atMs > x.untilMs) break;
    if (!r.ok && downSince === null) downSince = r.atMs;
    if (r.ok && downSince !== null) {
      downMs += r.atMs - downSince;
      downSince = null;
    }
  }
  if (downSince !== null) downMs += x.untilMs - downSince;
  const before = x.lag.filter((p) => p.atMs >= x.startMs - 5000 && p.atMs < x.startMs).map((p) => p.lag);
  const lagBefore = before.length === 0 ? 0 : Math.max(...before);
  const lagThreshold = Math.max(lagBefore, Math.round(x.ratePerSecond * lagToleranceS), 20);
  let lagPeak = 0;
  let lagBack: number | null = null;
  for (const p of x.lag) {
    if (p.atMs < x.startMs || p.atMs > x.untilMs) continue;
    if (lagBack === null) lagPeak = Math.max(lagPeak, p.lag);
    if (p.atMs >= x.liftMs && lagBack === null && p.lag <= lagThreshold) lagBack = p.atMs - x.liftMs;
  }
  const backlog =
    x.backlogLastCompletionMs === null || x.backlogLastCompletionMs > x.untilMs
      ? null
      : Math.max(0, x.backlogLastCompletionMs - x.liftMs);
  const parts = [resumed, readyAgain, lagBack, backlog];
  return {
    completionsWhileHeld: held,
    completionsResumedMs: resumed === null ? null : Math.round(resumed),
    readyzDownMs: Math.round(downMs),
    readyAgainMs: readyAgain === null ? null : Math.round(readyAgain),
    lagBefore,
    lagThreshold,
    lagPeak,
    lagBackMs: lagBack === null ? null : Math.round(lagBack),
    backlogDrainedMs: backlog === null ? null : Math.round(backlog),
    recoveredMs: parts.some((p) => p === null) ? null : Math.round(Math.max(...(parts as number[]))),
  };
}

/**
 * The last completion of the accepted orders intended before `liftMs`: null when one of them never completed.
 * `intendedMs[n]` and `completedMs[n]` are epoch ms (0: never completed); `accepted(n)` leaves failed publishes out.
 */
export function backlogLastCompletion(
  intendedMs: ArrayLike<number>,
  completedMs: ArrayLike<number>,
  accepted: (n: number) => boolean,
  liftMs: number,
): number | null {
  let last = 0;
  for (let n = 0; n < intendedMs.length; n++) {
    if ((intendedMs[n] as number) >= liftMs || !accepted(n)) continue;
    const c = completedMs[n] as number;
    if (c === 0) return null;
    if (c > last) last = c;
  }
  return last;
}

/** One output item about an order, as read back from the SLUICE_OUT stream, in stream order. */
export type OrderOutput = {
  kind: "status" | "fulfil";
  version: number;
  /** The item's JSON: a repeat with the same version and the same JSON is a re-publish, not a change. */
  json: string;
  /** status items */
  status?: string;
  event?: string;
  /** fulfil items: "fulfil" or "cancel", and their line ids */
  type?: string;
  lineIds?: string[];
};

export type OrderOutputCheck = {
  /** The highest status version and the status it carried (null: no status item at all). */
  finalVersion: number;
  finalStatus: string | null;
  /** Status items with event "created": exactly 1 for an order processed once. */
  created: number;
  /** The same (kind, version, JSON) read again: re-published outputs, which a consumer drops by version. */
  republished: number;
  /** Problems, in words: versions out of order, a version with two contents, a gap, a line requested twice. */
  problems: string[];
  /** True when an order line was requested from a warehouse while an earlier request for it was still open. */
  doubled: boolean;
};

/**
 * Per order: its status and fulfilment items in stream order. Sluice numbers every output about an order
 * (docs/subjects.md, "The per-order version"): a batch that changes the order raises its version by one, each
 * fulfilment item takes the next version for itself, and the batch's status item carries the final one. So,
 * between two consecutive status versions a < b (a = 0 before the first):
 *   - b = a + 1, with no fulfilment item or one at b; or
 *   - the fulfilment items of the batch hold every version from a + 2 to b, and a + 1 too unless the batch's
 *     first change came before its first fulfilment item (that change took a + 1; its status carries b).
 * Anything else is a gap: a batch's status item (or a fulfilment request) that never reached the stream. And
 * no fulfilment item may be above the last status version (its batch's status is missing).
 */
export function checkOrderOutputs(outputs: readonly OrderOutput[]): OrderOutputCheck {
  const problems: string[] = [];
  let republished = 0;
  let created = 0;
  const seen = new Map<string, string>(); // kind:version → json
  const statusVersions: number[] = [];
  const fulfilVersions = new Set<number>();
  const last = { status: 0, fulfil: 0 };
  let finalStatus: string | null = null;
  const open = new Map<string, number>();
  let doubled = false;
  for (const o of outputs) {
    const key = `${o.kind}:${o.version}`;
    const had = seen.get(key);
    if (had !== undefined) {
      if (had === o.json) republished++;
      else problems.push(`${o.kind} v${o.version} published twice with different contents`);
      continue;
    }
    seen.set(key, o.json);
    if (o.version <= last[o.kind]) problems.push(`${o.kind} v${o.version} after v${last[o.kind]}`);
    last[o.kind] = Math.max(last[o.kind], o.version);
    if (o.kind === "status") {
      statusVersions.push(o.version);
      if (o.event === "created") created++;
      if (o.version === last.status) finalStatus = o.status ?? null;
    } else {
      fulfilVersions.add(o.version);
      for (const id of o.lineIds ?? []) {
        const n = (open.get(id) ?? 0) + (o.type === "cancel" ? -1 : 1);
        open.set(id, n);
        if (n > 1 && !doubled) {
          doubled = true;
          problems.push(`line ${id} requested again (v${o.version}) while an earlier request was open`);
        }
      }
    }
  }
  if (created !== 1) problems.push(`${created} "created" statuses (expected 1)`);
  statusVersions.sort((x, y) => x - y);
  let a = 0;
  for (const b of statusVersions) {
    if (!batchFits(fulfilVersions, a, b))
      problems.push(`gap between status v${a} and v${b}${describeFulfils(fulfilVersions, a, b)}`);
    a = b;
  }
  const above = [...fulfilVersions].filter((v) => v > a);
  if (above.length > 0) problems.push(`fulfilment v${above.join(", v")} above the last status v${a}`);
  return { finalVersion: a, finalStatus, created, republished, problems, doubled };
}

function batchFits(fulfils: ReadonlySet<number>, a: number, b: number): boolean {
  if (b === a + 1) return true; // one change, with or without a fulfilment item at b
  for (let v = a + 2; v <= b; v++) if (!fulfils.has(v)) return false;
  return true; // a + 1: a fulfilment item, or the batch's first change before its first fulfilment item
}

function describeFulfils(fulfils: ReadonlySet<number>, a: number, b: number): string {
  const inside = [...fulfils].filter((v) => v > a && v < b).sort((x, y) => x - y);
  return inside.length === 0
    ? " (no fulfilment item between)"
    : ` (fulfilment v${inside.join(", v")} between)`;
}
