// Partition leases and node membership in one NATS KV bucket (SLUICE_LEASES by default).
//
// - `lease.<stage>.<index>` holds the owner of a partition: JSON { node, token, acquiredAtMs, renewedAtMs }.
//   `token` is new for each acquisition; it lets a node recognise its own write when the reply to it was
//   lost (see `LeaseTable.renew`).
// - `node.<id>` is a node's membership heartbeat: JSON { ...info, node, startedAtMs, renewedAtMs }.
//
// nats-server 2.9 has no per-key TTL: the bucket's max age (= cluster.leaseMs) is what ends an entry that
// is not rewritten. Every change of owner goes through a compare-and-set on the key's last revision
// (Nats-Expected-Last-Subject-Sequence), decided by the stream's leader, so two nodes never both hold a lease
// at one revision. Reads (`owners`, `liveNodes`) may be a little stale (direct gets may be answered by a
// replica); they only guide which partitions a node tries to take.

import {
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
} from "@nats-io/jetstream";
import { type KV, type KvEntry, Kvm } from "@nats-io/kv";
import { type NatsConnection, nanos } from "@nats-io/transport-node";
import { type PartitionId, parsePartitionKey, partitionKey, stages } from "./assignment.ts";

export const leaseBucketDefault = "SLUICE_LEASES";

export type LeaseTableOptions = {
  /** KV bucket name; SLUICE_LEASES by default. */
  bucket?: string;
  /** cluster.leaseMs: the bucket's max age, so an entry not renewed for this long disappears. */
  leaseMs: number;
  /** cluster.leaseRenewMs: how often a holder renews; also the fencing margin (see `Lease`). */
  leaseRenewMs: number;
  /** streams.replicas: copies of the bucket when it is created. */
  replicas: number;
  /** This node's id: 1-64 letters, digits, '_' or '-' (one KV key token). */
  node: string;
  /**
   * Longest wait for one KV request (create, update, delete, get); leaseRenewMs by default and at most
   * that: a renewal unanswered by then is tried again at the next round anyway.
   */
  requestTimeoutMs?: number;
  /** Longest wait for creating or opening the bucket (placing its stream); requestTimeoutMs when smaller. */
  openTimeoutMs?: number;
  /**
   * Fencing clock in ms (`Lease.validUntilMs`, `Lease.valid()`); monotonic by default, so a step of the wall
   * clock cannot stretch a lease. Compare a lease's deadline only with this clock, never with Date.now().
   */
  clock?: () => number;
};

/**
 * A KV request whose outcome is unknown (timeout, no responders, connection down, server error): the write
 * may or may not have landed. Try again; a held lease stays valid until its `validUntilMs` meanwhile.
 */
export class LeaseRequestError extends Error {
  override name = "LeaseRequestError";
  readonly retriable = true;

  constructor(action: string, cause: unknown) {
    super(`${action}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

/** `taken`: the compare-and-set was refused (another node wrote the key, or it aged out). `expired`: no
 * renewal was confirmed before the lease's validUntilMs. */
export type LostReason = "taken" | "expired";

/** `released`: deleted. `not_held`: the key was no longer this lease's. `outcome_unknown`: the request
 * failed; the entry then ages out within leaseMs. In every case the lease is no longer valid. */
export type ReleaseResult = "released" | "not_held" | "outcome_unknown";

/** A partition's current owner as the bucket shows it; `node` "" when the value is unreadable. */
export type LeaseOwner = { node: string; revision: number; ageMs: number };

/** What a node publishes about itself; the supervisor may add fields, which are stored as they are. */
export type NodeInfo = { pins: PartitionId[] | null; http?: string; [field: string]: unknown };

/** A node whose heartbeat exists. `info` is the whole stored value; `ageMs` is since its last heartbeat. */
export type LiveNode = {
  node: string;
  pins: PartitionId[] | null;
  http?: string;
  startedAtMs: number;
  renewedAtMs: number;
  ageMs: number;
  info: Record<string, unknown>;
};

type LeaseValue = { node: string; token: string; acquiredAtMs: number; renewedAtMs: number };

const nodeIdPattern = /^[A-Za-z0-9_-]{1,64}$/;
const monotonicClock = () => performance.timeOrigin + performance.now();

/**
 * One acquisition of one partition, and the fence that goes with it: the supervisor checks `valid()` before
 * every commit, ack and publish of the partition.
 *
 * validUntilMs = sentAtMs + leaseMs − leaseRenewMs, where sentAtMs is this node's clock just before the
 * last successful create or update was sent. The server stamped that entry after it was sent, and ages it
 * out no sooner than the bucket's max age after its stamp (at least leaseMs: `LeaseTable.open` sees to
 * it), so nobody else can create the key before sentAtMs + leaseMs. The margin, leaseRenewMs (1.5 s by default,
 * at most leaseMs / 3), covers what that sum does not: clock rates that differ between this node and the
 * server (100 ppm is 0.6 ms on 6 s), a NATS server whose wall clock steps forward or a new stream leader
 * whose clock runs ahead (NATS servers' clocks must agree within it), and the time an action checked as
 * valid takes to land: a check at validUntilMs − 1 followed by a 200 ms ack still lands before the key can
 * be taken, one that takes longer than the margin may not.
 */
export class Lease {
  readonly key: string;
  #revision: number;
  #validUntilMs: number;
  #ended: "lost" | "released" | null = null;
  #tail: Promise<unknown> = Promise.resolve();

  constructor(
    readonly partition: PartitionId,
    readonly node: string,
    readonly token: string,
    readonly acquiredAtMs: number,
    revision: number,
    validUntilMs: number,
    private readonly clock: () => number,
  ) {
    this.key = leaseKey(partition);
    this.#revision = revision;
    this.#validUntilMs = validUntilMs;
  }

  /** The key's revision this lease last wrote: the compare-and-set base of the next renewal or release. */
  get revision(): number {
    return this.#revision;
  }

  get validUntilMs(): number {
    return this.#validUntilMs;
  }

  /** Null while held; why it ended otherwise. */
  get ended(): "lost" | "released" | null {
    return this.#ended;
  }

  /**
   * True while no other node can hold this partition: not ended and before validUntilMs. Call it without an
   * argument, or with the table's `clock()`: validUntilMs is on that (monotonic) clock, not Date.now()'s.
   */
  valid(nowMs: number = this.clock()): boolean {
    return this.#ended === null && nowMs < this.#validUntilMs;
  }

  /** LeaseTable's: a write that left the key at `revision` succeeded; it sets the fence to `validUntilMs`. */
  confirm(revision: number, validUntilMs: number): void {
    this.#revision = revision;
    this.#validUntilMs = Math.max(this.#validUntilMs, validUntilMs);
  }

  /** LeaseTable's: ends the lease for good; `valid()` is false from now on. */
  end(reason: "lost" | "released"): void {
    this.#ended ??= reason;
  }

  /** LeaseTable's: runs renewals and the release of this lease one at a time, in call order. */
  exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(task, task);
    this.#tail = run.catch(() => undefined);
    return run;
  }
}

export function leaseKey(p: PartitionId): string {
  return `lease.${partitionKey(p)}`;
}

function nodeKey(node: string): string {
  return `node.${node}`;
}

/** The wrong-last-sequence refusal of a compare-and-set: a definite "not yours", unlike a timeout. */
export function isCompareAndSetRefusal(error: unknown): boolean {
  return (
    error instanceof JetStreamApiError &&
    (error.code === JetStreamApiCodes.StreamWrongLastSequence ||
      error.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}

/** Runs one KV write: its value, `refused` on a compare-and-set refusal, a LeaseRequestError otherwise. */
async function compareAndSet<T>(action: string, write: () => Promise<T>): Promise<T | "refused"> {
  try {
    return await write();
  } catch (error) {
    if (isCompareAndSetRefusal(error)) return "refused";
    throw new LeaseRequestError(action, error);
  }
}

async function request<T>(action: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw new LeaseRequestError(action, error);
  }
}

function record(value: unknown): Record<string, unknown> | null {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : null;
}

function readJson(entry: KvEntry): Record<string, unknown> | null {
  try {
    return record(entry.json<unknown>());
  } catch {
    return null;
  }
}

function readLeaseValue(entry: KvEntry): LeaseValue | null {
  const v = readJson(entry);
  if (v === null || typeof v.node !== "string" || typeof v.token !== "string") return null;
  const acquiredAtMs = typeof v.acquiredAtMs === "number" ? v.acquiredAtMs : 0;
  return { node: v.node, token: v.token, acquiredAtMs, renewedAtMs: Number(v.renewedAtMs) || 0 };
}

/** Pins from another node's heartbeat: null unless every one is a partition. */
function readPins(value: unknown): PartitionId[] | null {
  if (!Array.isArray(value)) return null;
  const pins: PartitionId[] = [];
  for (const item of value) {
    const p = record(item);
    const stage = stages.find((s) => s === p?.stage);
    if (stage === undefined || !Number.isSafeInteger(p?.index) || (p?.index as number) < 0) return null;
    pins.push({ stage, index: p?.index as number });
  }
  return pins;
}

/**
 * The bucket's view of leases and nodes. It holds no leases itself: a `Lease` is what `acquire` returns,
 * `LeaseKeeper` renews it. Every method waits at most about requestTimeoutMs per request it sends.
 */
export class LeaseTable {
  readonly bucket: string;
  readonly node: string;
  readonly leaseMs: number;
  readonly leaseRenewMs: number;
  readonly requestTimeoutMs: number;
  readonly openTimeoutMs: number;
  readonly clock: () => number;
  readonly startedAtMs = Date.now();
  readonly #js: JetStreamClient;
  readonly #replicas: number;
  #kv: KV | null = null;
  #jsm: JetStreamManager | null = null;
  /** Tokens of creates whose outcome is unknown, by key: a retry reuses it and recognises its own entry. */
  readonly #pendingTokens = new Map<string, string>();

  constructor(
    private readonly nc: NatsConnection,
    options: LeaseTableOptions,
  ) {
    this.bucket = options.bucket ?? leaseBucketDefault;
    this.node = options.node;
    this.leaseMs = options.leaseMs;
    this.leaseRenewMs = options.leaseRenewMs;
    this.requestTimeoutMs = options.requestTimeoutMs ?? options.leaseRenewMs;
    this.openTimeoutMs = options.openTimeoutMs ?? this.requestTimeoutMs;
    this.clock = options.clock ?? monotonicClock;
    this.#replicas = options.replicas;
    checkOptions(this);
    this.#js = jetstream(nc, { timeout: this.requestTimeoutMs });
  }

  /**
   * Opens the bucket, creating it (max age leaseMs, one value per key) if missing. A bucket that ages
   * entries out sooner than leaseMs, or never, is raised to leaseMs: a shorter age would let another node
   * take a lease this node still counts as valid. Raising is safe for nodes with a shorter leaseMs (their
   * leases end early, never late). A longer age is kept: leases then move later, never unsafely.
   */
  async open(): Promise<void> {
    // Creating the bucket places a stream (on a cluster, its replicas): slower than a renewal may take.
    const js = jetstream(this.nc, { timeout: Math.max(this.requestTimeoutMs, this.openTimeoutMs) });
    const created = await request(`open KV bucket ${this.bucket}`, () =>
      new Kvm(js).create(this.bucket, { ttl: this.leaseMs, history: 1, replicas: this.#replicas }),
    );
    const jsm = await request("JetStream manager", () => js.jetstreamManager());
    const status = await request(`status of ${this.bucket}`, () => created.status());
    if (status.ttl === 0 || status.ttl < this.leaseMs) {
      await request(`raise the max age of ${this.bucket} to ${this.leaseMs} ms`, () =>
        jsm.streams.update(this.#streamName(), { max_age: nanos(this.leaseMs) }),
      );
    }
    // Requests from here on are renewals and reads: bounded by the renewal period.
    const kv = await request(`open KV bucket ${this.bucket}`, () => new Kvm(this.#js).open(this.bucket));
    this.#kv = kv;
    this.#jsm = jsm;
  }

  /**
   * Takes `p` if nobody holds it: a KV create, which succeeds only when the key has no live value (never
   * written, aged out, or deleted: @nats-io/kv 3.4 retries a create over a delete marker with a
   * compare-and-set on the marker's revision). Null when another node holds it. Throws LeaseRequestError
   * when the outcome is unknown; the next acquire of `p` then recognises the entry if the create landed.
   */
  async acquire(p: PartitionId): Promise<Lease | null> {
    const key = leaseKey(p);
    const token = this.#pendingTokens.get(key) ?? crypto.randomUUID();
    const nowMs = Date.now();
    const value: LeaseValue = { node: this.node, token, acquiredAtMs: nowMs, renewedAtMs: nowMs };
    this.#pendingTokens.set(key, token);
    const sentAtMs = this.clock();
    const revision = await compareAndSet(`acquire ${key}`, () =>
      this.#open().create(key, JSON.stringify(value)),
    );
    if (revision !== "refused") {
      this.#pendingTokens.delete(key);
      return new Lease(p, this.node, token, nowMs, revision, this.#validUntil(sentAtMs), this.clock);
    }
    const adopted = await this.#adopt(p, token);
    if (adopted === null) this.#pendingTokens.delete(key);
    return adopted;
  }

  /**
   * Extends `lease` by leaseMs from now: a KV update at its revision. True when renewed (its revision and
   * validUntilMs move on). False when lost for good: the key was rewritten by another node or aged out, or
   * the lease had already ended; `lease.valid()` is false from then on. Throws LeaseRequestError when the
   * outcome is unknown; the lease stays valid until its validUntilMs and the next renewal decides.
   */
  renew(lease: Lease): Promise<boolean> {
    return lease.exclusive(async () => {
      if (lease.ended !== null) return false;
      const sentAtMs = this.clock();
      const written = await compareAndSet(`renew ${lease.key}`, () =>
        this.#open().update(lease.key, this.#leaseValue(lease), lease.revision, this.requestTimeoutMs),
      );
      if (written !== "refused") {
        lease.confirm(written, this.#validUntil(sentAtMs));
        return true;
      }
      // Refused: either another node's, or our own earlier renewal landed and only its reply was lost.
      const own = await this.#ownRevision(lease.key, lease.token);
      if (own !== null) return this.#renewAt(lease, own);
      lease.end("lost");
      return false;
    });
  }

  /**
   * Gives `lease` up: it is invalid at once (before anything is sent, so no commit follows), then the key is
   * deleted only at this lease's revision, so another node's lease is never deleted. Waits for a renewal
   * of the lease in flight first.
   */
  release(lease: Lease): Promise<ReleaseResult> {
    return lease.exclusive(async () => {
      const wasHeld = lease.ended === null;
      lease.end("released");
      if (!wasHeld) return "not_held";
      try {
        const deleted = await compareAndSet(`release ${lease.key}`, () =>
          this.#open().delete(lease.key, { previousSeq: lease.revision }),
        );
        if (deleted !== "refused") return "released";
        const own = await this.#ownRevision(lease.key, lease.token);
        if (own === null) return "not_held";
        const again = await compareAndSet(`release ${lease.key}`, () =>
          this.#open().delete(lease.key, { previousSeq: own }),
        );
        return again === "refused" ? "not_held" : "released";
      } catch (error) {
        if (error instanceof LeaseRequestError) return "outcome_unknown";
        throw error;
      }
    });
  }

  /** Every lease in the bucket, by partition key (`ledger.3`); ageMs: since its last write (server time). */
  async owners(): Promise<Map<string, LeaseOwner>> {
    const owners = new Map<string, LeaseOwner>();
    const nowMs = Date.now();
    for (const entry of await this.#liveEntries("lease")) {
      const p = parsePartitionKey(entry.key.slice("lease.".length));
      if (p === null) continue;
      const node = readLeaseValue(entry)?.node ?? "";
      owners.set(partitionKey(p), { node, revision: entry.revision, ageMs: ageMs(entry, nowMs) });
    }
    return owners;
  }

  /** Writes this node's membership heartbeat; it disappears leaseMs after the last one. */
  async heartbeat(info: NodeInfo): Promise<void> {
    const value = { ...info, node: this.node, startedAtMs: this.startedAtMs, renewedAtMs: Date.now() };
    await request(`heartbeat ${nodeKey(this.node)}`, () =>
      this.#open().put(nodeKey(this.node), JSON.stringify(value), { timeout: this.requestTimeoutMs }),
    );
  }

  /** Deletes this node's heartbeat (a graceful stop): the others rebalance without waiting leaseMs. */
  async leave(): Promise<void> {
    await request(`leave ${nodeKey(this.node)}`, () => this.#open().delete(nodeKey(this.node)));
  }

  /** Nodes whose heartbeat exists, sorted by id; an unreadable heartbeat is skipped. */
  async liveNodes(): Promise<LiveNode[]> {
    const nowMs = Date.now();
    const nodes: LiveNode[] = [];
    for (const entry of await this.#liveEntries("node")) {
      const v = readJson(entry);
      const node = entry.key.slice("node.".length);
      if (v === null || v.node !== node) continue;
      nodes.push({
        node,
        pins: readPins(v.pins),
        ...(typeof v.http === "string" ? { http: v.http } : {}),
        startedAtMs: Number(v.startedAtMs) || 0,
        renewedAtMs: Number(v.renewedAtMs) || 0,
        ageMs: ageMs(entry, nowMs),
        info: v,
      });
    }
    return nodes.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  }

  /** The entry's revision when it is still this acquisition's (`token`), else null. */
  async #ownRevision(key: string, token: string): Promise<number | null> {
    const entry = await request(`read ${key}`, () => this.#open().get(key));
    if (entry === null || entry.operation !== "PUT") return null;
    return readLeaseValue(entry)?.token === token ? entry.revision : null;
  }

  /** A lease from a create of ours whose reply was lost, renewed at once so its deadline is known. */
  async #adopt(p: PartitionId, token: string): Promise<Lease | null> {
    const key = leaseKey(p);
    const entry = await request(`read ${key}`, () => this.#open().get(key));
    const value = entry?.operation === "PUT" ? readLeaseValue(entry) : null;
    if (entry === null || value === null || value.token !== token || value.node !== this.node) return null;
    const lease = new Lease(p, this.node, token, value.acquiredAtMs, entry.revision, 0, this.clock);
    return (await this.renew(lease)) ? lease : null;
  }

  /** The update of a renewal again, at the revision our own lost-reply write left. */
  async #renewAt(lease: Lease, revision: number): Promise<boolean> {
    const sentAtMs = this.clock();
    const written = await compareAndSet(`renew ${lease.key}`, () =>
      this.#open().update(lease.key, this.#leaseValue(lease), revision, this.requestTimeoutMs),
    );
    if (written === "refused") {
      lease.end("lost");
      return false;
    }
    lease.confirm(written, this.#validUntil(sentAtMs));
    return true;
  }

  #leaseValue(lease: Lease): string {
    const value: LeaseValue = {
      node: this.node,
      token: lease.token,
      acquiredAtMs: lease.acquiredAtMs,
      renewedAtMs: Date.now(),
    };
    return JSON.stringify(value);
  }

  // See `Lease`: the entry cannot age out before sentAtMs + leaseMs; leaseRenewMs is the safety margin.
  #validUntil(sentAtMs: number): number {
    return sentAtMs + this.leaseMs - this.leaseRenewMs;
  }

  /**
   * The current value of every key under `prefix` that is not deleted: the stream's subjects (one request,
   * paged by the client), then their last values, all at once (their number is bounded by the partitions
   * and the nodes).
   */
  async #liveEntries(prefix: "lease" | "node"): Promise<KvEntry[]> {
    const kv = this.#open();
    const jsm = this.#jsm as JetStreamManager;
    const subjectPrefix = `$KV.${this.bucket}.`;
    const info = await request(`list ${prefix}.>`, () =>
      jsm.streams.info(this.#streamName(), { subjects_filter: `${subjectPrefix}${prefix}.>` }),
    );
    const keys = Object.keys(info.state.subjects ?? {}).map((s) => s.slice(subjectPrefix.length));
    const entries = await Promise.all(keys.map((key) => request(`read ${key}`, () => kv.get(key))));
    return entries.filter((e): e is KvEntry => e !== null && e.operation === "PUT");
  }

  #streamName(): string {
    return `KV_${this.bucket}`;
  }

  #open(): KV {
    if (this.#kv === null) throw new Error("LeaseTable: call open() first");
    return this.#kv;
  }
}

function ageMs(entry: KvEntry, nowMs: number): number {
  return Math.max(0, nowMs - entry.created.getTime());
}

function checkOptions(t: LeaseTable): void {
  if (!nodeIdPattern.test(t.node)) {
    throw new Error(
      `cluster node id ${JSON.stringify(t.node)} is not usable as a KV key token: use 1-64 letters, digits, '_' or '-'`,
    );
  }
  if (3 * t.leaseRenewMs > t.leaseMs) {
    throw new Error(
      `cluster.leaseRenewMs (${t.leaseRenewMs}) must be at most cluster.leaseMs / 3 (${Math.floor(t.leaseMs / 3)}): lower leaseRenewMs or raise leaseMs`,
    );
  }
  if (t.requestTimeoutMs <= 0 || t.requestTimeoutMs > t.leaseRenewMs) {
    throw new Error(
      `the lease request timeout (${t.requestTimeoutMs} ms) must be within 1-${t.leaseRenewMs} ms (cluster.leaseRenewMs): a renewal must end before the next one starts`,
    );
  }
}

export type LeaseKeeperOptions = {
  /** A held lease was lost (`taken`: someone else has it or it aged out; `expired`: no renewal confirmed
   * in time). It is no longer held when this runs; stop the partition. */
  onLost: (partition: PartitionId, reason: LostReason) => void;
  /** A renewal or heartbeat failed with an unknown outcome (the lease is kept until validUntilMs), or
   * onLost threw. For logs and metrics. */
  onError?: (error: Error) => void;
  /** When given, the node's heartbeat is written on the same timer, with what this returns. */
  heartbeat?: () => NodeInfo;
};

/**
 * Keeps the leases it holds: every leaseRenewMs one round renews all of them at once (and writes the
 * heartbeat), each renewal bounded by the table's request timeout. A refused renewal drops the lease and
 * reports it lost at once; one with an unknown outcome keeps the lease and reports it lost only once its
 * validUntilMs has passed. A round still running when the next is due (only when requests are slow)
 * delays that one, so rounds never overlap.
 */
export class LeaseKeeper {
  readonly #leases = new Map<string, Lease>();
  #timer: ReturnType<typeof setInterval> | null = null;
  #round: Promise<void> | null = null;

  constructor(
    readonly table: LeaseTable,
    private readonly options: LeaseKeeperOptions,
  ) {}

  /** Starts the timer; the first round runs at once (the heartbeat shows up without waiting). */
  start(): void {
    if (this.#timer !== null) return;
    this.#timer = setInterval(() => void this.renewAll(), this.table.leaseRenewMs);
    void this.renewAll();
  }

  /** Stops renewing (leases are kept, not released) after the round in flight, if any, ends. */
  async stop(): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    await this.#round;
  }

  /** The held lease of `p`, if any: check its `valid()` before each commit, ack and publish. */
  lease(p: PartitionId): Lease | undefined {
    return this.#leases.get(partitionKey(p));
  }

  held(): PartitionId[] {
    return [...this.#leases.values()].map((l) => l.partition);
  }

  /** Keeps renewing `lease` (acquired through the table), in place of any other lease of its partition. */
  add(lease: Lease): void {
    this.#leases.set(partitionKey(lease.partition), lease);
  }

  /** Stops renewing `lease`, without releasing it (the caller releases it, or lets it age out). */
  remove(lease: Lease): void {
    this.#forget(lease);
  }

  /** Acquires `p` (see `LeaseTable.acquire`) and keeps it; a lease already held is returned as it is. */
  async acquire(p: PartitionId): Promise<Lease | null> {
    const held = this.lease(p);
    if (held !== undefined && held.ended === null) return held;
    const lease = await this.table.acquire(p);
    if (lease !== null) this.add(lease);
    return lease;
  }

  /** Stops keeping `p` and releases it (see `LeaseTable.release`). */
  async release(p: PartitionId): Promise<ReleaseResult> {
    const lease = this.lease(p);
    if (lease === undefined) return "not_held";
    this.#leases.delete(partitionKey(p));
    return this.table.release(lease);
  }

  /** Releases every held lease at once (a graceful stop). */
  async releaseAll(): Promise<void> {
    await Promise.all(this.held().map((p) => this.release(p)));
  }

  /** One round now: what the timer runs. Joins the round in flight instead of starting a second one. */
  renewAll(): Promise<void> {
    this.#round ??= this.#renewRound().finally(() => {
      this.#round = null;
    });
    return this.#round;
  }

  async #renewRound(): Promise<void> {
    const heartbeat = this.options.heartbeat;
    await Promise.all([
      ...[...this.#leases.values()].map((lease) => this.#renewOne(lease)),
      heartbeat === undefined ? null : this.table.heartbeat(heartbeat()).catch((e) => this.#error(e)),
    ]);
  }

  async #renewOne(lease: Lease): Promise<void> {
    try {
      if (await this.table.renew(lease)) return;
      if (lease.ended === "lost") this.#lose(lease, "taken");
      else this.#forget(lease); // released through the table meanwhile
    } catch (error) {
      this.#error(error);
      if (!lease.valid()) this.#lose(lease, "expired");
    }
  }

  #lose(lease: Lease, reason: LostReason): void {
    // Released or replaced by a newer acquisition meanwhile: not this lease's loss to report.
    if (!this.#forget(lease)) return;
    lease.end("lost");
    try {
      this.options.onLost(lease.partition, reason);
    } catch (error) {
      this.#error(error);
    }
  }

  /** Stops keeping `lease` if it is still the one kept for its partition; true if it was. */
  #forget(lease: Lease): boolean {
    const key = partitionKey(lease.partition);
    if (this.#leases.get(key) !== lease) return false;
    this.#leases.delete(key);
    return true;
  }

  #error(error: unknown): void {
    this.options.onError?.(error instanceof Error ? error : new Error(String(error)));
  }
}
