import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { ObjectStore } from "@nats-io/obj";
import type { Config } from "../config/index.ts";
import type { HostLease } from "../host/partition-host.ts";
import type { Instrumentation } from "../instrumentation/index.ts";
import type { Logger } from "../log/index.ts";
import { openPartitionStore } from "../stages/definition.ts";
import { type PartitionStore, partitionDir } from "../store/partition-store.ts";
import type { FencedError } from "../stream/partition-runner.ts";
import type { AppliedPartition } from "../stream/retention.ts";
import { allPartitions, desiredPartitions, type PartitionId, parsePins, partitionKey } from "./assignment.ts";
import { appliedFloorsOf, type Floors, logFloorOf, readFloors, retentionNode } from "./floors.ts";
import type { Lease, LeaseKeeper, LeaseOwner, LeaseTable, LiveNode, LostReason } from "./leases.ts";
import { readSnapshotInfo, restoreSnapshot, type SnapshotInfo, writeSnapshot } from "./snapshots.ts";
import { logHead, takeOver } from "./takeover.ts";

export type ClusterStatus = {
  node: string;
  nodes: Array<{ node: string; http: string | null; pins: PartitionId[] | null; heartbeatAgeMs: number }>;
  partitions: Array<{
    partition: string;
    owner: string;
    leaseAgeMs: number;
    commitSeq?: number | null;
    snapshotAgeMs?: number | null;
  }>;
  /** Partitions no node holds right now (moving, or nobody may take them: see cluster.partitions). */
  unowned: number;
};

/** A partition this node runs: its lease, its store and whatever hosts it (started by the process). */
type Owned = {
  id: PartitionId;
  lease: Lease;
  store: PartitionStore;
  host: { stop(): Promise<void> };
  /** The latest snapshot this node wrote of it (its applied sequences bound stream retention). */
  snapshot: SnapshotInfo | null;
  leaving: boolean;
};

export type MemberDeps = {
  config: Config;
  log: Logger;
  events: Instrumentation;
  js: JetStreamClient;
  jsm: JetStreamManager;
  leases: LeaseTable;
  keeper: LeaseKeeper;
  snapshots: ObjectStore;
  /** Builds and starts the partition's host over its store (the process's host factory). */
  startHost: (id: PartitionId, store: PartitionStore, lease: HostLease) => Promise<{ stop(): Promise<void> }>;
  /** The set of partitions run here changed (routing's local view, retention, readiness). */
  changed: () => void;
};

/** Bounds of one takeover's log read (cluster.takeoverLog*), its deadline counted from the takeover's start. */
const logReadLimits = (c: Config) => ({
  fetchCountMax: c.cluster.takeoverLogFetchCountMax,
  fetchWaitMs: c.nats.requestTimeoutMs,
  deadlineMs: Date.now() + c.cluster.takeoverLogReadMsMax,
});

/**
 * This node's part in a cluster (cluster.enabled): every `cluster.rebalanceMs` it heartbeats, computes its
 * fair share of the 2 × P partitions over the live nodes (src/cluster/assignment.ts), hands off what it should
 * no longer run and takes what it should and nobody holds. Ownership is a lease (src/cluster/leases.ts);
 * each commit and publish of a partition checks it (fencing), and a lost lease stops only that partition.
 * Taking a partition over restores its latest snapshot and applies its changelog (src/cluster/takeover.ts);
 * handing one off finishes its batch, snapshots it and releases the lease, so the next owner replays nothing.
 */
export class ClusterMember {
  readonly owned = new Map<string, Owned>();
  private readonly pins: PartitionId[] | null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private snapshotTimer: ReturnType<typeof setInterval> | null = null;
  private round: Promise<void> = Promise.resolve();
  private snapshotting: Promise<void> = Promise.resolve();
  private stopped = false;
  /** What the last round read: live nodes and lease owners (HTTP says who owns a partition from it). */
  private seen: { nodes: LiveNode[]; owners: Map<string, LeaseOwner> } = { nodes: [], owners: new Map() };

  constructor(private readonly d: MemberDeps) {
    this.pins = parsePins(d.config.cluster.partitions, d.config.streams.partitionCount);
  }

  get node(): string {
    return this.d.config.node.name;
  }

  /** Joins: one round at once (a lone node takes everything before it reports started), then on a timer. */
  async start(): Promise<void> {
    await this.rebalance();
    this.schedule();
    this.snapshotTimer = setInterval(() => {
      this.snapshotting = this.snapshotting.then(() => this.snapshotAll()).catch(() => undefined);
    }, this.d.config.cluster.snapshotMs);
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.round = this.rebalance()
        .catch((error: Error) => this.d.log.warn("cluster round failed; next round retries", { error }))
        .finally(() => this.schedule());
    }, this.d.config.cluster.rebalanceMs);
  }

  /** One round: heartbeat, fair share, hand off one partition that should move, take what is free and ours. */
  async rebalance(): Promise<void> {
    const c = this.d.config;
    await this.d.keeper.renewAll(); // the heartbeat is visible before this node counts itself in
    const live = await this.d.leases.liveNodes();
    const nodes = live.map((n) => ({ id: n.node, pins: n.pins }));
    const desired = desiredPartitions({
      self: this.node,
      nodes,
      partitionCount: c.streams.partitionCount,
      pins: this.pins,
    });
    const wanted = new Set(desired.map(partitionKey));
    // One handoff per round: partitions move one at a time, so the cluster never has many in flight at once.
    const leaving = [...this.owned.values()].find((o) => !wanted.has(partitionKey(o.id)) && !o.leaving);
    if (leaving !== undefined && !this.stopped) await this.handOff(leaving, "rebalance");
    const owners = await this.d.leases.owners();
    this.seen = { nodes: live, owners };
    for (const id of desired) {
      if (this.stopped) return;
      const key = partitionKey(id);
      if (this.owned.has(key) || owners.has(key)) continue;
      await this.take(id);
    }
  }

  private async take(id: PartitionId): Promise<void> {
    const lease = await this.d.keeper.acquire(id);
    if (lease === null) return; // another node was quicker; the next round looks again
    const key = partitionKey(id);
    const started = performance.now();
    try {
      const t = await takeOver(id.stage, id.index, this.takeoverPort(id));
      // A restore and a long log can outlast the lease's validity while they keep the event loop busy (the
      // renewal timer waits for them): renew now, and start only on a lease that is valid.
      await this.d.keeper.renewAll();
      if (!lease.valid()) {
        await t.store.close();
        throw new Error(`the lease of ${key} ran out during the takeover and could not be renewed`);
      }
      const owned: Owned = {
        id,
        lease,
        store: t.store,
        host: { stop: async () => undefined },
        snapshot: null,
        leaving: false,
      };
      this.owned.set(key, owned);
      owned.host = await this.d.startHost(id, t.store, {
        valid: () => lease.valid(),
        onFenced: (error) => this.lost(key, error),
      });
      this.d.changed();
      this.d.log.info("partition taken", {
        stage: id.stage,
        partition: id.index,
        how: t.how,
        logApplied: t.applied,
        logIgnored: t.ignored,
        ms: Math.round(performance.now() - started),
      });
      this.d.events.emit("partition_taken", { stage: id.stage, partition: id.index, how: t.how });
    } catch (error) {
      this.d.log.warn("partition takeover failed; the lease is released and a later round tries again", {
        stage: id.stage,
        partition: id.index,
        error,
      });
      const owned = this.owned.get(key);
      this.owned.delete(key);
      await owned?.host.stop().catch(() => undefined);
      await owned?.store.close().catch(() => undefined);
      await this.d.keeper.release(id).catch(() => undefined);
      this.d.changed();
    }
  }

  private takeoverPort(id: PartitionId) {
    const c = this.d.config;
    const dir = partitionDir(c.data.dir, id.stage, id.index);
    return {
      js: this.d.js,
      jsm: this.d.jsm,
      node: this.node,
      openLocal: () => {
        if (!existsSync(dir)) return null;
        try {
          return openPartitionStore(c, id.stage, id.index);
        } catch (error) {
          // A copy this version cannot open is no use to a takeover: it is replaced by snapshot and log.
          this.d.log.warn("local copy unreadable; it is replaced", {
            stage: id.stage,
            partition: id.index,
            error,
          });
          return null;
        }
      },
      wipeLocal: () => rm(dir, { recursive: true, force: true }),
      restore: async () => {
        const info = await restoreSnapshot(this.d.snapshots, c, id.stage, id.index);
        return info === null ? null : { writer: info.storeId, logSeqFrom: info.logSeqFrom };
      },
      openFresh: () => openPartitionStore(c, id.stage, id.index),
      logPartBytesMax: c.streams.messageBytesMax,
      read: logReadLimits(c),
      markerAttemptsMax: c.cluster.takeoverMarkerAttemptsMax,
    };
  }

  /** The lease ran out (renewal refused or too late) or a commit was fenced: the partition stops here. */
  private lost(key: string, why: FencedError | string): void {
    const owned = this.owned.get(key);
    if (owned === undefined) return;
    this.owned.delete(key);
    // Fenced by a commit: the keeper may still hold it; released so that the next owner need not wait it out.
    if (typeof why !== "string") void this.d.keeper.release(owned.id).catch(() => undefined);
    this.d.log.warn("partition lease lost: it stops here and another node takes it", {
      stage: owned.id.stage,
      partition: owned.id.index,
      why: typeof why === "string" ? why : why.message,
    });
    this.d.events.emit("partition_lost", { stage: owned.id.stage, partition: owned.id.index });
    void owned.host
      .stop()
      .catch(() => undefined)
      .then(() => owned.store.close())
      .catch(() => undefined);
    this.d.changed();
  }

  /** The keeper's report: a renewal was refused (`taken`) or none was confirmed in time (`expired`). */
  onLeaseLost(id: PartitionId, reason: LostReason): void {
    this.lost(partitionKey(id), `lease ${reason}`);
  }

  /** Graceful: the batch in flight commits and its outbox is published, a snapshot is written, the lease goes. */
  private async handOff(o: Owned, why: string): Promise<void> {
    o.leaving = true;
    const key = partitionKey(o.id);
    await o.host.stop();
    try {
      if (o.lease.valid()) await this.snapshotOf(o);
    } catch (error) {
      this.d.log.warn("snapshot at handoff failed; the next owner replays the log", { error });
    }
    this.owned.delete(key);
    await o.store.close();
    await this.d.keeper.release(o.id).catch(() => undefined);
    this.d.changed();
    this.d.log.info("partition handed off", { stage: o.id.stage, partition: o.id.index, why });
    this.d.events.emit("partition_handed_off", { stage: o.id.stage, partition: o.id.index });
  }

  /**
   * A snapshot of one partition, then its log before it is purged. The log position is read first: every
   * record the snapshot lacks lands after it.
   */
  private async snapshotOf(o: Owned): Promise<void> {
    const logSeqFrom = ((await logHead(this.d.jsm, o.id.stage, o.id.index))?.seq ?? 0) + 1;
    if (!o.lease.valid()) return; // fenced: a snapshot of a branch that lost must not replace the latest
    const info = await writeSnapshot(
      this.d.snapshots,
      o.store,
      { writer: this.node, writtenAtMs: Date.now(), logSeqFrom },
      { waitMsMax: this.d.config.cluster.handoffSnapshotWaitMsMax },
    );
    // A handoff that joined the periodic snapshot gets the same one: counted once, by whoever sees it first.
    if (o.snapshot?.revision === info.revision) return;
    o.snapshot = info;
    this.d.events.emit("snapshot_written", {
      stage: o.id.stage,
      partition: o.id.index,
      bytes: info.bodyBytes,
    });
  }

  private async snapshotAll(): Promise<void> {
    for (const o of [...this.owned.values()]) {
      if (this.stopped || o.leaving) continue;
      try {
        await this.snapshotOf(o);
      } catch (error) {
        this.d.log.warn("snapshot failed; the next period tries again", {
          stage: o.id.stage,
          partition: o.id.index,
          error,
        });
      }
    }
  }

  /** Every partition's latest snapshot as the last `refreshFloors` read it; empty on all but one node. */
  private floors: Floors = new Map();

  /**
   * Before each retention pass: on the retention node (the live node first by name, as of the last round),
   * every partition's latest snapshot metadata (no bodies), cluster.snapshotInfoReadsInFlightMax at a time;
   * on every other node nothing, and nothing is purged there (src/cluster/floors.ts says why one node).
   */
  async refreshFloors(): Promise<void> {
    const c = this.d.config;
    if (retentionNode(this.seen.nodes.map((n) => n.node)) !== this.node) {
      this.floors = new Map();
      return;
    }
    this.floors = await readFloors(
      allPartitions(c.streams.partitionCount),
      (p) => readSnapshotInfo(this.d.snapshots, p.stage, p.index),
      c.cluster.snapshotInfoReadsInFlightMax,
    );
  }

  /** The input streams with what their partitions' latest snapshots applied (src/stream/retention.ts). */
  appliedFloors(): AppliedPartition[] {
    return appliedFloorsOf(this.floors, this.d.config.streams.partitionCount);
  }

  /** SLUICE_LOG below the oldest partition's snapshot position (its last record kept) may go; 1: nothing. */
  logFloor(): number {
    return logFloorOf(this.floors);
  }

  /** The owner of a partition as of the last round, with its HTTP address (from its heartbeat). */
  ownerOf(stage: "ledger" | "order", index: number): { node: string; http: string | null } | null {
    const o = this.seen.owners.get(partitionKey({ stage, index }));
    if (o === undefined) return null;
    return { node: o.node, http: this.seen.nodes.find((n) => n.node === o.node)?.http ?? null };
  }

  /** What `GET /v1/cluster` and `sluice cluster status` show: nodes, owners, lease ages, snapshots here. */
  async status(): Promise<ClusterStatus> {
    const [nodes, owners] = await Promise.all([this.d.leases.liveNodes(), this.d.leases.owners()]);
    const nowMs = Date.now();
    const partitions = [...owners].map(([key, o]) => {
      const here = this.owned.get(key);
      return {
        partition: key,
        owner: o.node,
        leaseAgeMs: o.ageMs,
        ...(here === undefined
          ? {}
          : {
              commitSeq: here.store.isOpen ? here.store.commitSeq() : null,
              snapshotAgeMs: here.snapshot === null ? null : nowMs - here.snapshot.writtenAtMs,
            }),
      };
    });
    const all = 2 * this.d.config.streams.partitionCount;
    return {
      node: this.node,
      nodes: nodes.map((n) => ({
        node: n.node,
        http: n.http ?? null,
        pins: n.pins,
        heartbeatAgeMs: n.ageMs,
      })),
      partitions: partitions.sort((a, b) => a.partition.localeCompare(b.partition)),
      unowned: all - partitions.length,
    };
  }

  /** Leaves: every partition handed off (snapshot, lease released) so the others take them at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.snapshotTimer !== null) clearInterval(this.snapshotTimer);
    await this.round.catch(() => undefined);
    await this.snapshotting.catch(() => undefined);
    for (const o of [...this.owned.values()]) await this.handOff(o, "stopping");
    await this.d.keeper.stop();
    await this.d.leases.leave().catch(() => undefined);
  }
}
