import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Server } from "bun";
import { parsePins } from "./cluster/assignment.ts";
import { LeaseKeeper, LeaseTable } from "./cluster/leases.ts";
import { ClusterMember } from "./cluster/member.ts";
import { openSnapshotBucket } from "./cluster/snapshots.ts";
import { ensureLogStream } from "./cluster/takeover.ts";
import { type Config, ConfigError } from "./config/index.ts";
import { loadNetworkFile } from "./config/network.ts";
import type { Network } from "./domain/network/index.ts";
import { type HostContext, PartitionHost } from "./host/partition-host.ts";
import { WorkerPool } from "./host/worker-pool.ts";
import { startHttp } from "./http/server.ts";
import { Instrumentation } from "./instrumentation/index.ts";
import type { Logger } from "./log/index.ts";
import { createMetrics, type Metrics } from "./metrics/index.ts";
import { recentOrders } from "./rules/recent-orders.ts";
import { RulesStore } from "./rules/store.ts";
import { openPartitionStore } from "./stages/definition.ts";
import type { LedgerApplier } from "./stages/ledger/applier.ts";
import type { OrderApplier } from "./stages/order/applier.ts";
import { LedgerReadView, RoutingPort } from "./stages/order/routing-view.ts";
import type { PartitionStore } from "./store/index.ts";
import { type DataDirLock, lockDataDir } from "./store/lock.ts";
import { type Connection, connectNats } from "./stream/connection.ts";
import { EmbeddedServer } from "./stream/embedded-server.ts";
import { type BlockedEpisode, OutboxPublisher } from "./stream/outbox-publisher.ts";
import type { PartitionApplier } from "./stream/partition-runner.ts";
import { ensureUnroutedConsumer, provisionStreams } from "./stream/provision.ts";
import { Retention } from "./stream/retention.ts";
import { type Stage, stageInputs, streamNames } from "./stream/subjects.ts";
import { UnroutedRouter } from "./stream/unrouted-router.ts";

/** A partition hosted on the main thread (node.workerCount = 0): its store, applier and runner. */
export type Partition<A extends PartitionApplier = PartitionApplier> = PartitionHost<A>;

/**
 * node.workerCount −1: one worker per core but one (the main thread keeps the router, HTTP and metrics) on
 * machines of 4 cores or more; none below, where nats-server and the producers share the cores. Measured on
 * 2 cores (bench/orders.ts, 50k orders): 8.0k orders/s and 7.9 CPU-s with none, 7.2k and 9.0 CPU-s with one
 * worker, 7.2k and 10.5 CPU-s with two: each thread compiles and collects on its own.
 */
export function autoWorkerCount(cores: number): number {
  return cores >= 4 ? cores - 1 : 0;
}

/**
 * One Sluice process: every stage, and by default every partition. Start order follows the data:
 * NATS (embedded or given) → streams → per stage and partition: store, applier, runner → router → HTTP.
 */
export class Sluice {
  readonly events = new Instrumentation();
  readonly metrics: Metrics;
  embedded: EmbeddedServer | null = null;
  connection: Connection | null = null;
  jsm: JetStreamManager | null = null;
  /** Partitions on the main thread (node.workerCount = 0); empty when workers host them. */
  ledger: Array<Partition<LedgerApplier>> = [];
  orders: Array<Partition<OrderApplier>> = [];
  /** The worker threads hosting the partitions (node.workerCount ≠ 0), or null. */
  workers: WorkerPool | null = null;
  /** With workers: every partition's store opened read-only on the main thread (HTTP, retention, readiness). */
  private readonly readStores = new Map<string, PartitionStore>();
  rules: RulesStore | null = null;
  /** Cluster mode (cluster.enabled): this node's share of the partitions, by lease. */
  member: ClusterMember | null = null;
  routingView: LedgerReadView | RoutingPort | null = null;
  http: Server<undefined> | null = null;
  private router: UnroutedRouter | null = null;
  retention: Retention | null = null;
  /** Publishes waiting for room, per target (`sluice.<stage>`, `sluice.out`, …): logged once per episode. */
  private readonly blocked = new Map<string, number>();
  private stopping: Promise<void> | null = null;
  private lock: DataDirLock | null = null;
  private lockMirror: ReturnType<typeof setInterval> | null = null;

  constructor(
    readonly config: Config,
    readonly log: Logger,
    /** Called when something the process cannot recover from happens; main exits non-zero. */
    private readonly onFatal: (error: Error) => void,
  ) {
    this.metrics = createMetrics(this.events, config.node.name);
  }

  /** Worker threads for the partitions: node.workerCount, or with −1 the automatic count (autoWorkerCount). */
  get workerCount(): number {
    const n = this.config.node.workerCount;
    if (this.config.cluster.enabled) return 0; // a cluster scales by nodes (config relation)
    return n < 0 ? autoWorkerCount(availableParallelism()) : n;
  }

  /** A partition's store: the host's on the main thread, else the read-only one (committed state). */
  store(stage: Stage, index: number): PartitionStore | undefined {
    const list: Partition[] = stage === "ledger" ? this.ledger : this.orders;
    return list[index]?.store ?? this.readStores.get(`${stage}-${index}`);
  }

  private get stores(): PartitionStore[] {
    return this.partitions.length > 0 ? this.partitions.map((p) => p.store) : [...this.readStores.values()];
  }

  get dataDir(): string {
    return resolve(this.config.data.dir);
  }

  /** The rule set in force (warehouses, channels, routing weights). */
  get network(): Network | null {
    return this.rules?.network() ?? null;
  }

  /** Partitions hosted on this thread; in cluster mode only those this node owns (the arrays have gaps). */
  get partitions(): Partition[] {
    return [...this.ledger, ...this.orders].filter((p) => p !== undefined);
  }

  async start(): Promise<void> {
    const c = this.config;
    const seed = loadNetworkFile(c.orders.networkFile, { idBytesMax: c.ledger.idBytesMax });
    this.lock = lockDataDir(this.dataDir, {
      refreshMs: c.store.lockRefreshMs,
      staleMs: c.store.lockStaleMs,
    });
    let servers = c.nats.url;
    if (servers === "") {
      this.embedded = this.embeddedServer();
      await this.embedded.start();
      servers = this.embedded.url;
    }
    const client = this.embedded?.client("sluice") ?? null;
    this.connection = await connectNats(c, servers, this.log, client);
    const nc = this.connection.nc;
    const payloadMax = nc.info?.max_payload ?? 0;
    if (payloadMax < c.streams.messageBytesMax + 64 * 1024) {
      throw new ConfigError(
        `the NATS server's max_payload is ${payloadMax} bytes; streams.messageBytesMax (${c.streams.messageBytesMax}) needs 64 KiB more for dead-letter headers: lower streams.messageBytesMax or raise max_payload on the server`,
      );
    }
    const jsm = await jetstreamManager(nc, { timeout: c.nats.requestTimeoutMs });
    this.jsm = jsm;
    const js = jetstream(nc, { timeout: c.nats.requestTimeoutMs });
    await provisionStreams(jsm, c, this.log);
    const router = await ensureUnroutedConsumer(jsm, c);
    if (router.cause !== "kept") {
      this.log.info("consumer ready", {
        stage: "unrouted",
        cause: router.cause,
        streamSeqStart: router.streamSeqStart,
      });
    }
    const rules = new RulesStore(js, c, seed, this.log, this.events);
    await rules.start();
    this.rules = rules;
    const P = c.streams.partitionCount;
    const ledgerStores = () => Array.from({ length: P }, (_, p) => this.store("ledger", p));
    // One process owns every ledger partition: routing reads their LMDB (exact). In a cluster, the ledger
    // partitions of other nodes reach routing through their position feed (src/stages/order/routing-view.ts);
    // a copy left on this node's disk by an earlier ownership is stale and never read.
    this.routingView = c.cluster.enabled
      ? RoutingPort.open(nc, c, ledgerStores, (p) => this.ledger[p] !== undefined)
      : new LedgerReadView(ledgerStores, P, c.routing.loadRefreshMs);

    const publisher = new OutboxPublisher(
      js,
      { ...c.outbox, requestTimeoutMs: c.nats.requestTimeoutMs },
      { blocked: (e) => this.onBlocked(e, +1), unblocked: (e) => this.onBlocked(e, -1) },
    );
    if (c.cluster.enabled) {
      await this.startMember(this.hostContext(nc, js, jsm, publisher));
    } else if (this.workerCount === 0) {
      const ctx = this.hostContext(nc, js, jsm, publisher);
      for (let p = 0; p < P; p++) {
        this.ledger.push(PartitionHost.open("ledger", p, ctx) as Partition<LedgerApplier>);
        this.orders.push(PartitionHost.open("order", p, ctx) as Partition<OrderApplier>);
      }
      // Every runner settles before a failure is reported: stop() must never race a runner still starting.
      const started = await Promise.allSettled(this.partitions.map((p) => p.start()));
      const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
      if (failed !== undefined) throw failed.reason;
    } else {
      const pool = new WorkerPool(c, this.events, this.log, this.onFatal);
      this.workers = pool;
      // Workers commit only inside the lease the main thread renews: the lock, confirmed held now, was touched
      // at most lockRefreshMs ago and cannot be taken before lockStaleMs after that touch; one more
      // lockRefreshMs is the margin (lockStaleMs ≥ 3 × lockRefreshMs leaves a lease of one refresh or more).
      const lock = this.lock;
      const renew = () =>
        pool.setLease(lock?.held() ? Date.now() + c.store.lockStaleMs - 2 * c.store.lockRefreshMs : 0);
      renew();
      this.lockMirror = setInterval(renew, c.store.lockRefreshMs);
      const inForce = () => ({ json: JSON.stringify(rules.raw()), version: rules.network().version });
      await pool.start(servers, client, this.workerCount, inForce());
      this.events.on("rules_applied", () => pool.broadcast({ type: "rules", ...inForce() }));
      // Opened once the workers have them open for writing: reads of committed state, never blocking them.
      for (let p = 0; p < P; p++) {
        for (const stage of ["ledger", "order"] as const) {
          this.readStores.set(`${stage}-${p}`, openPartitionStore(c, stage, p, { readOnly: true }));
        }
      }
    }
    this.router = new UnroutedRouter(js, publisher, c, this.events, this.log, this.onFatal);
    await this.router.start();
    const member = this.member;
    this.retention = new Retention(
      jsm,
      c,
      () =>
        member?.appliedFloors() ??
        this.stores.flatMap((store) =>
          stageInputs[store.identity.stage as Stage].map((input, i, all) => ({
            input,
            index: store.identity.partition,
            // The last input is the stage's main stream; the store names the others.
            streamSeqLastApplied: () =>
              store.streamSeqLastApplied(i === all.length - 1 ? undefined : streamNames[input]),
          })),
        ),
      this.log,
      Date.now,
      (stream, count) => this.events.emit("stream_purged", { stream, count }),
      member === null ? null : { refresh: () => member.refreshFloors(), logFloor: () => member.logFloor() },
    );
    this.retention.start();
    const readiness = [
      { name: "nats_connected", ok: () => this.connection?.connected() ?? false },
      {
        name: "consumers_running",
        ok: () => this.workers?.allRunning() ?? this.partitions.every((p) => p.running),
      },
      {
        name: "lmdb_open",
        // A cluster node may run no partition for a while (it just joined, or more nodes than partitions).
        ok: () => (this.member !== null || this.stores.length > 0) && this.stores.every((s) => s.isOpen),
      },
    ];
    this.metrics.readiness(readiness);
    this.http = startHttp({
      config: c,
      log: this.log,
      metrics: this.metrics,
      readiness,
      ledgerStore: (p) => this.store("ledger", p),
      orderStore: (p) => this.store("order", p),
      rules,
      routingView: this.routingView,
      recentOrders: (count) => recentOrders(js, jsm, c, count),
      cluster: this.member,
      resync: (channel) => {
        for (const p of this.ledger) p?.applier.outputs.requestResync(channel);
        this.workers?.broadcast({ type: "resync", channel });
        return c.streams.partitionCount;
      },
    });
    this.log.info("sluice started", {
      nats: this.embedded ? `embedded ${this.embedded.url}` : "external",
      partitions: c.streams.partitionCount,
      workers: this.workers?.size ?? 0,
      rules: rules.network().version,
      http: `http://${this.http.hostname}:${this.http.port}`,
    });
  }

  private hostContext(
    nc: NatsConnection,
    js: JetStreamClient,
    jsm: JetStreamManager,
    publisher: OutboxPublisher,
  ): HostContext {
    return {
      config: this.config,
      nc,
      js,
      jsm,
      publisher,
      events: this.events,
      log: this.log,
      network: () => (this.rules as RulesStore).network(),
      routing: this.routingView as LedgerReadView | RoutingPort,
      lockHeld: () => this.lock?.held() ?? false,
      onFatal: this.onFatal,
    };
  }

  /**
   * Cluster mode: this node's share of the partitions, by lease (src/cluster/member.ts). Leases, snapshots
   * and the changelog live on the NATS system every node shares.
   */
  private async startMember(ctx: HostContext): Promise<void> {
    const c = this.config;
    await ensureLogStream(ctx.jsm, {
      bytesMax: c.cluster.logBytesMax,
      replicas: c.streams.replicas,
      duplicateWindowMs: c.streams.duplicateWindowMs,
      messageBytesMax: c.streams.messageBytesMax,
    });
    const leases = new LeaseTable(ctx.nc, {
      leaseMs: c.cluster.leaseMs,
      leaseRenewMs: c.cluster.leaseRenewMs,
      replicas: c.streams.replicas,
      node: c.node.name,
      requestTimeoutMs: Math.min(c.nats.requestTimeoutMs, c.cluster.leaseRenewMs),
      openTimeoutMs: c.nats.requestTimeoutMs,
    });
    await leases.open();
    const pins = parsePins(c.cluster.partitions, c.streams.partitionCount);
    // Heartbeat and renewals on one timer of their own: a slow rebalance round (a takeover reading a long
    // log) never lets this node look dead.
    const keeper = new LeaseKeeper(leases, {
      onLost: (p, reason) => this.member?.onLeaseLost(p, reason),
      onError: (error) => this.log.warn("lease renewal failed; retried until the lease runs out", { error }),
      heartbeat: () => ({
        pins,
        ...(this.http === null ? {} : { http: `http://${this.http.hostname}:${this.http.port}` }),
      }),
    });
    keeper.start();
    const snapshots = await openSnapshotBucket(ctx.js, c, { bytesMax: c.cluster.snapshotBytesMax });
    this.member = new ClusterMember({
      config: c,
      log: this.log,
      events: this.events,
      js: ctx.js,
      jsm: ctx.jsm,
      leases,
      keeper,
      snapshots,
      startHost: async ({ stage, index }, store, lease) => {
        const host = new PartitionHost(stage, index, store, ctx, lease);
        const list: Partition[] = stage === "ledger" ? this.ledger : this.orders;
        list[index] = host;
        try {
          await host.start();
        } catch (error) {
          delete list[index];
          throw error;
        }
        return {
          stop: async () => {
            await host.stop();
            if (list[index] === host) delete list[index];
          },
        };
      },
      changed: () => undefined,
    });
    await this.member.start();
  }

  /** A full stream is back-pressure: one warning when the first publish to a target waits, one line when none does. */
  private onBlocked(e: BlockedEpisode, delta: 1 | -1): void {
    const target = e.subject.split(".").slice(0, 2).join(".");
    const waiting = (this.blocked.get(target) ?? 0) + delta;
    this.events.emit("publish_blocked", { target, delta });
    this.blocked.set(target, waiting);
    if (delta === 1 && waiting === 1) {
      this.log.warn("stream full: publishes wait for room (back-pressure, nothing is dropped)", {
        target,
        refusal: e.detail,
        fix: "the stream's readers are behind or its cap is too small: docs/operations.md, Limits and back-pressure",
      });
    } else if (delta === -1 && waiting === 0) {
      this.log.info("stream has room again; publishes resumed", { target, waitedMs: e.waitedMs });
    }
  }

  private embeddedServer(): EmbeddedServer {
    const c = this.config;
    return new EmbeddedServer({
      dir: join(this.dataDir, "nats"),
      host: c.nats.embeddedHost,
      port: c.nats.embeddedPort,
      bin: c.nats.embeddedBin,
      storeBytesMax: c.nats.embeddedStoreBytesMax,
      memoryBytesMax: c.nats.embeddedMemoryBytesMax,
      // Room above the largest inbound message for the headers a dead letter adds.
      payloadBytesMax: c.streams.messageBytesMax + 64 * 1024,
      partitionCount: c.streams.partitionCount,
      // Locked: Sluice and each role connect with an NKey seed it made (docs/security.md, the embedded server).
      lock: { rulesBucket: c.routing.rulesBucket },
      startTimeoutMs: c.nats.embeddedStartTimeoutMs,
      stopTimeoutMs: c.nats.embeddedStopTimeoutMs,
      restartsMax: c.nats.embeddedRestartsMax,
      log: this.log,
      onGiveUp: (error) => this.onFatal(error),
    });
  }

  /** Graceful stop: partitions finish and commit their batch and ack, then NATS, LMDB and the server close. */
  stop(): Promise<void> {
    this.stopping ??= this.stopOnce();
    return this.stopping;
  }

  private async stopOnce(): Promise<void> {
    this.log.info("sluice stopping");
    this.http?.stop(true);
    await this.router?.stop();
    await this.retention?.stop();
    await this.rules?.stop();
    if (this.routingView instanceof RoutingPort) this.routingView.close();
    // Cluster mode: each partition is handed off (batch committed, snapshot written, lease released).
    await this.member?.stop();
    await Promise.all(this.partitions.map((p) => p.stop()));
    await this.workers?.stop(this.config.shutdown.timeoutMs);
    if (this.lockMirror !== null) clearInterval(this.lockMirror);
    if (this.connection !== null && !this.connection.nc.isClosed()) {
      // Flush sends the last acks before the connection closes.
      await this.connection.nc.flush().catch(() => undefined);
      await this.connection.nc.close();
    }
    for (const p of this.partitions) await p.store.close();
    for (const store of this.readStores.values()) await store.close();
    await this.embedded?.stop();
    this.lock?.release();
    this.log.info("sluice stopped");
  }
}
