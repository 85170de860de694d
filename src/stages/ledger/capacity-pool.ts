import { type JetStreamClient, jetstream } from "@nats-io/jetstream";
import type { KV, KvEntry } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { isCompareAndSetRefusal } from "../../cluster/leases.ts";
import { type ChunkRule, chunkUnits } from "../../domain/ledger/index.ts";
import { ensureCapacityBucket } from "../../stream/provision-capacity.ts";

// The shared capacity pool: one NATS KV key per warehouse and UTC day, whose value counts the units every
// ledger partition claimed of that day's capacityPerDay. A claim is a compare-and-set on the key's revision
// (decided by the stream's leader), so the claimed total never passes capacityPerDay whatever the partitions
// do at once (docs/capacity.md).

export type ClaimRequest = {
  warehouse: string;
  day: number;
  /** The rule set's capacityPerDay now: a claim never carries the day's total past it. */
  capacityPerDay: number;
  partition: number;
  partitionCount: number;
  /** Units a refused line wanted (0: a low-water top-up): the chunk is at least this, if the pool has it. */
  wantUnits: number;
  /**
   * What the partition holds for the key (committed in its LMDB, or landed and about to be). The key records
   * each partition's part; a part above this is what landed in KV and was never committed (a crash, a stop, a
   * move between nodes): it is handed back with the claim (adopted), so it is not lost to the day. A part below
   * it (the key lost) is raised to it, so the key never counts less than is held.
   */
  heldUnits: number;
  /** Only reconcile the part with heldUnits (at start): no new chunk. */
  reconcileOnly: boolean;
  rule: ChunkRule;
};

export type ClaimOutcome =
  /**
   * `grantUnits`: what the partition now holds more (its part in KV less heldUnits: the new chunk plus what
   * it adopted). `claimed` is the day's total after the claim. `granted`: a new chunk; `full`: none, the day's
   * total has reached capacityPerDay (nothing more unless it rises); `reconciled`: none asked.
   */
  | { outcome: "granted" | "full" | "reconciled"; grantUnits: number; adoptedUnits: number; claimed: number }
  /** Retries exhausted (the server unreachable, timeouts, too much contention): try again later. */
  | { outcome: "failed"; error: Error };

export interface CapacityPool {
  claim(r: ClaimRequest): Promise<ClaimOutcome>;
}

/** The value of a pool key: the day's total and each partition's part of it (for operators, and retries). */
export type PoolValue = { claimed: number; partitions: Record<string, number> };

export type KvPoolLimits = {
  /** Longest wait for one KV request (ms). */
  claimTimeoutMs: number;
  /** KV requests that fail (timeout, no responders) tried again per claim before it is `failed`. */
  claimRetriesMax: number;
  /** Compare-and-set refusals (another partition wrote first) tried again per claim: P writers share a key. */
  claimCasRetriesMax: number;
  /** Wait between two tries after a failed request (ms), doubled each time. */
  claimRetryBackoffMs: number;
};

/**
 * KV keys allow `[-/_=.A-Za-z0-9]`: a warehouse id made of letters, digits, `_` and `-` stands as it is, any
 * other becomes `=` + base64url of its UTF-8 (`=` is not in the plain set, so the rule is reversible).
 */
export function capacityPoolKey(warehouse: string, day: number): string {
  const token = /^[A-Za-z0-9_-]+$/.test(warehouse)
    ? warehouse
    : `=${Buffer.from(warehouse, "utf8").toString("base64url")}`;
  return `w.${token}.d.${day}`;
}

function readValue(entry: KvEntry | null): PoolValue | null {
  if (entry === null || entry.operation !== "PUT") return { claimed: 0, partitions: {} };
  try {
    const v = entry.json<PoolValue>();
    if (!Number.isSafeInteger(v?.claimed) || v.claimed < 0 || typeof v.partitions !== "object") return null;
    return v;
  } catch {
    return null;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The pool in a KV bucket (SLUICE_CAPACITY), opened on the first claim. */
export class KvCapacityPool implements CapacityPool {
  private readonly js: JetStreamClient;
  private kv: Promise<KV> | null = null;

  constructor(
    nc: NatsConnection,
    private readonly bucket: { bucket?: string; replicas: number },
    private readonly limits: KvPoolLimits,
  ) {
    this.js = jetstream(nc, { timeout: limits.claimTimeoutMs });
  }

  private open(): Promise<KV> {
    this.kv ??= ensureCapacityBucket(this.js, this.bucket).catch((error: unknown) => {
      this.kv = null; // the next claim tries again
      throw error;
    });
    return this.kv;
  }

  async claim(r: ClaimRequest): Promise<ClaimOutcome> {
    const key = capacityPoolKey(r.warehouse, r.day);
    const mine = String(r.partition);
    let failures = 0;
    let refusals = 0;
    // A write whose outcome is unknown (timeout): the part it wrote. The next read tells whether it landed (this
    // partition is the only writer of its own part), so a lost reply never claims twice.
    let unknown: { partAfter: number; outcome: "granted" | "full" | "reconciled"; adopted: number } | null =
      null;
    for (;;) {
      try {
        const kv = await this.open();
        const entry = await kv.get(key);
        const value = readValue(entry);
        if (value === null) throw new Error(`capacity pool key ${key} holds no pool value; delete it`);
        const part = value.partitions[mine] ?? 0;
        if (unknown !== null && part >= unknown.partAfter) {
          const grantUnits = part - r.heldUnits;
          return {
            outcome: unknown.outcome,
            grantUnits,
            adoptedUnits: unknown.adopted,
            claimed: value.claimed,
          };
        }
        unknown = null;
        // The key never counts less than the partition holds; what it counts more is adopted.
        const base = Math.max(part, r.heldUnits);
        const claimedBase = value.claimed + (base - part);
        const adopted = Math.max(part - r.heldUnits, 0);
        const units = r.reconcileOnly
          ? 0
          : chunkUnits(r.capacityPerDay - claimedBase, r.partitionCount, r.wantUnits, r.rule);
        const outcome = r.reconcileOnly ? "reconciled" : units > 0 ? "granted" : "full";
        const partAfter = base + units;
        if (partAfter === part)
          return { outcome, grantUnits: part - r.heldUnits, adoptedUnits: adopted, claimed: value.claimed };
        const next: PoolValue = {
          claimed: claimedBase + units,
          partitions: { ...value.partitions, [mine]: partAfter },
        };
        unknown = { partAfter, outcome, adopted };
        const body = JSON.stringify(next);
        if (entry === null) await kv.create(key, body);
        else await kv.update(key, body, entry.revision, this.limits.claimTimeoutMs);
        return { outcome, grantUnits: partAfter - r.heldUnits, adoptedUnits: adopted, claimed: next.claimed };
      } catch (error) {
        if (isCompareAndSetRefusal(error)) {
          unknown = null; // refused: it did not land
          if (++refusals > this.limits.claimCasRetriesMax)
            return { outcome: "failed", error: error as Error };
          continue;
        }
        if (++failures > this.limits.claimRetriesMax) return { outcome: "failed", error: error as Error };
        await sleep(this.limits.claimRetryBackoffMs * 2 ** (failures - 1));
      }
    }
  }
}

/** One pool per connection: every ledger partition of a thread claims through it. */
const pools = new WeakMap<NatsConnection, KvCapacityPool>();

export function capacityPoolOf(
  nc: NatsConnection,
  bucket: { bucket?: string; replicas: number },
  limits: KvPoolLimits,
): KvCapacityPool {
  let pool = pools.get(nc);
  if (pool === undefined) {
    pool = new KvCapacityPool(nc, bucket, limits);
    pools.set(nc, pool);
  }
  return pool;
}
