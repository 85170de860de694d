import { join, resolve } from "node:path";
import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { Server } from "bun";
import { type Config, ConfigError } from "./config/index.ts";
import { loadNetworkFile } from "./config/network.ts";
import type { Network } from "./domain/network/index.ts";
import { startHttp } from "./http/server.ts";
import { Instrumentation } from "./instrumentation/index.ts";
import type { Logger } from "./log/index.ts";
import { createMetrics, type Metrics } from "./metrics/index.ts";
import { recentOrders } from "./rules/recent-orders.ts";
import { RulesStore } from "./rules/store.ts";
import { LedgerApplier, ledgerTables } from "./stages/ledger/applier.ts";
import { ledgerUpgrades } from "./stages/ledger/upgrade.ts";
import { OrderApplier, orderTables } from "./stages/order/applier.ts";
import { LedgerReadView } from "./stages/order/routing-view.ts";
import { PartitionStore, partitionDir } from "./store/index.ts";
import { type DataDirLock, lockDataDir } from "./store/lock.ts";
import { type Connection, connectNats } from "./stream/connection.ts";
import { EmbeddedServer } from "./stream/embedded-server.ts";
import { type BlockedEpisode, OutboxPublisher } from "./stream/outbox-publisher.ts";
import { type PartitionApplier, PartitionRunner } from "./stream/partition-runner.ts";
import { ensureUnroutedConsumer, provisionStreams } from "./stream/provision.ts";
import { Retention } from "./stream/retention.ts";
import { type Stage, stageInputs, streamNames } from "./stream/subjects.ts";
import { UnroutedRouter } from "./stream/unrouted-router.ts";

export type Partition<A extends PartitionApplier = PartitionApplier> = {
  stage: Stage;
  index: number;
  store: PartitionStore;
  applier: A;
  runner: PartitionRunner;
};

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
  ledger: Array<Partition<LedgerApplier>> = [];
  orders: Array<Partition<OrderApplier>> = [];
  rules: RulesStore | null = null;
  routingView: LedgerReadView | null = null;
  http: Server<undefined> | null = null;
  private router: UnroutedRouter | null = null;
  retention: Retention | null = null;
  /** Publishes waiting for room, per target (`sluice.<stage>`, `sluice.out`, …): logged once per episode. */
  private readonly blocked = new Map<string, number>();
  private stopping: Promise<void> | null = null;
  /** Builds a stage partition (applier and runner) over its store; set once NATS and the rules are up. */
  private build: ((stage: Stage, index: number, store: PartitionStore) => Partition) | null = null;
  /** Per partition paused by a full disk: the next pause (ms), doubled each time, reset by a commit. */
  private readonly diskFullWaitMs = new Map<string, number>();
  /** Runners starting again after a full disk (stop waits for them). */
  private readonly resuming = new Set<Promise<void>>();
  private lock: DataDirLock | null = null;

  constructor(
    readonly config: Config,
    readonly log: Logger,
    /** Called when something the process cannot recover from happens; main exits non-zero. */
    private readonly onFatal: (error: Error) => void,
  ) {
    this.metrics = createMetrics(this.events, config.node.name);
    // A commit ends a full-disk episode: the next pause starts short again.
    this.events.on("batch_committed", (e) => this.diskFullWaitMs.delete(`${e.stage}-${e.partition}`));
  }

  get dataDir(): string {
    return resolve(this.config.data.dir);
  }

  /** The rule set in force (warehouses, channels, routing weights). */
  get network(): Network | null {
    return this.rules?.network() ?? null;
  }

  get partitions(): Partition[] {
    return [...this.ledger, ...this.orders];
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
    this.connection = await connectNats(c, servers, this.log);
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
    this.routingView = new LedgerReadView(
      () => this.ledger.map((p) => p.store),
      c.streams.partitionCount,
      c.routing.loadRefreshMs,
      Date.now,
      (p, sku) => this.ledger[p]?.applier.cachedSku(sku),
    );

    const publisher = new OutboxPublisher(
      js,
      { ...c.outbox, requestTimeoutMs: c.nats.requestTimeoutMs },
      { blocked: (e) => this.onBlocked(e, +1), unblocked: (e) => this.onBlocked(e, -1) },
    );
    const network = () => rules.network();
    const routingView = this.routingView;
    // A partition is built from its store alone: at start, and again after a full disk paused it.
    this.build = (stage, p, store) => {
      const applier =
        stage === "ledger"
          ? new LedgerApplier(p, c, store, this.events, network)
          : new OrderApplier(p, c, store, network, this.events, routingView);
      return this.partition(stage, p, store, applier, js, publisher);
    };
    for (let p = 0; p < c.streams.partitionCount; p++) {
      this.ledger.push(
        this.build("ledger", p, this.openStore("ledger", p, ledgerTables)) as Partition<LedgerApplier>,
      );
      this.orders.push(
        this.build("order", p, this.openStore("order", p, orderTables)) as Partition<OrderApplier>,
      );
    }
    // Every runner settles before a failure is reported: stop() must never race a runner still starting.
    const started = await Promise.allSettled(this.partitions.map((p) => p.runner.start()));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed !== undefined) throw failed.reason;
    this.router = new UnroutedRouter(js, publisher, c, this.events, this.log, this.onFatal);
    await this.router.start();
    this.retention = new Retention(
      jsm,
      c,
      () =>
        this.partitions.flatMap((p) =>
          stageInputs[p.stage].map((input, i, all) => ({
            input,
            index: p.index,
            // The last input is the stage's main stream; the store names the others.
            streamSeqLastApplied: () =>
              p.store.streamSeqLastApplied(i === all.length - 1 ? undefined : streamNames[input]),
          })),
        ),
      this.log,
      Date.now,
      (stream, count) => this.events.emit("stream_purged", { stream, count }),
    );
    this.retention.start();
    this.http = startHttp({
      config: c,
      metrics: this.metrics,
      readiness: [
        { name: "nats_connected", ok: () => this.connection?.connected() ?? false },
        { name: "consumers_running", ok: () => this.partitions.every((p) => p.runner.running) },
        {
          name: "lmdb_open",
          ok: () => this.partitions.length > 0 && this.partitions.every((p) => p.store.isOpen),
        },
      ],
      ledgerStore: (p) => this.ledger[p]?.store,
      orderStore: (p) => this.orders[p]?.store,
      rules,
      routingView: this.routingView,
      recentOrders: (count) => recentOrders(js, jsm, c, count),
      resync: (channel) => {
        for (const p of this.ledger) p.applier.outputs.requestResync(channel);
        return this.ledger.length;
      },
    });
    this.log.info("sluice started", {
      nats: this.embedded ? `embedded ${this.embedded.url}` : "external",
      partitions: c.streams.partitionCount,
      rules: rules.network().version,
      http: `http://${this.http.hostname}:${this.http.port}`,
    });
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
      startTimeoutMs: c.nats.embeddedStartTimeoutMs,
      stopTimeoutMs: c.nats.embeddedStopTimeoutMs,
      restartsMax: c.nats.embeddedRestartsMax,
      log: this.log,
      onGiveUp: (error) => this.onFatal(error),
    });
  }

  private openStore(stage: Stage, p: number, tables: readonly string[]): PartitionStore {
    const c = this.config;
    return PartitionStore.open(
      partitionDir(this.dataDir, stage, p),
      { stage, partition: p, partitionCount: c.streams.partitionCount },
      {
        mapBytesMax: c.store.mapBytesMax,
        tables,
        routedCountMax: c.store.routedCountMax,
        ...(stage === "ledger" ? { upgrades: ledgerUpgrades } : {}),
      },
    );
  }

  private partition<A extends PartitionApplier>(
    stage: Stage,
    index: number,
    store: PartitionStore,
    applier: A,
    js: JetStreamClient,
    publisher: OutboxPublisher,
  ): Partition<A> {
    const runner = new PartitionRunner({
      stage,
      partition: index,
      config: this.config,
      nc: (this.connection as Connection).nc,
      jsm: this.jsm as JetStreamManager,
      js,
      store,
      applier,
      publisher,
      events: this.events,
      log: this.log,
      onFatal: this.onFatal,
      onStoreFull: (error) => void this.resumeWhenRoom(stage, index, error),
      // Fencing: a process that stalled past the lock's lease and lost it stops before its next commit.
      lockHeld: () => this.lock?.held() ?? false,
    });
    return { stage, index, store, applier, runner };
  }

  /**
   * A partition whose commit found no room (src/store/partition-store.ts StoreWriteError): its runner has
   * stopped, nothing past its last commit was acked, and its applier's memory may hold what did not commit.
   * After a pause (doubling up to store.diskFullRetryMsMax) a fresh applier and runner start from the store;
   * if there is still no room, the first commit pauses it again. Readiness is false meanwhile; intake waits
   * in JetStream, so nothing is lost.
   */
  private async resumeWhenRoom(stage: Stage, index: number, error: Error): Promise<void> {
    const key = `${stage}-${index}`;
    const list: Partition[] = stage === "ledger" ? this.ledger : this.orders;
    const old = list[index];
    const build = this.build;
    if (old === undefined || build === null || this.stopping !== null) return;
    const waitMs = Math.min(
      this.diskFullWaitMs.get(key) ?? this.config.store.diskFullFirstRetryMs,
      this.config.store.diskFullRetryMsMax,
    );
    this.diskFullWaitMs.set(key, waitMs * 2);
    this.events.emit("partition_paused", { stage, partition: index, delta: 1 });
    this.log.warn("partition waits for room on the data disk", { stage, partition: index, waitMs, error });
    await old.runner.stop();
    await new Promise((resolve) => setTimeout(resolve, waitMs));
    this.events.emit("partition_paused", { stage, partition: index, delta: -1 });
    if (this.stopping !== null) return;
    const fresh = build(stage, index, old.store);
    list[index] = fresh;
    const starting = fresh.runner.start().catch((e: Error) => this.onFatal(e));
    this.resuming.add(starting);
    await starting.finally(() => this.resuming.delete(starting));
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
    // A runner must never be stopped while it starts: a partition resuming after a full disk finishes first.
    await Promise.allSettled([...this.resuming]);
    await Promise.all(this.partitions.map((p) => p.runner.stop()));
    if (this.connection !== null && !this.connection.nc.isClosed()) {
      // Flush sends the last acks before the connection closes.
      await this.connection.nc.flush().catch(() => undefined);
      await this.connection.nc.close();
    }
    for (const p of this.partitions) await p.store.close();
    await this.embedded?.stop();
    this.lock?.release();
    this.log.info("sluice stopped");
  }
}
