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
import { OutboxPublisher } from "./stream/outbox-publisher.ts";
import { type PartitionApplier, PartitionRunner } from "./stream/partition-runner.ts";
import { ensureUnroutedConsumer, provisionStreams } from "./stream/provision.ts";
import type { Stage } from "./stream/subjects.ts";
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
  private stopping: Promise<void> | null = null;
  private lock: DataDirLock | null = null;

  constructor(
    readonly config: Config,
    readonly log: Logger,
    /** Called when something the process cannot recover from happens; main exits non-zero. */
    private readonly onFatal: (error: Error) => void,
  ) {
    this.metrics = createMetrics(this.events, config.node.name);
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
    const seed = loadNetworkFile(c.orders.networkFile);
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
    await ensureUnroutedConsumer(jsm, c);
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

    const publisher = new OutboxPublisher(js, { ...c.outbox, requestTimeoutMs: c.nats.requestTimeoutMs });
    const network = () => rules.network();
    for (let p = 0; p < c.streams.partitionCount; p++) {
      const ledgerStore = this.openStore("ledger", p, ledgerTables);
      this.ledger.push(
        this.partition(
          "ledger",
          p,
          ledgerStore,
          new LedgerApplier(p, c, ledgerStore, this.events, network),
          js,
          publisher,
        ),
      );
      const orderStore = this.openStore("order", p, orderTables);
      const orderApplier = new OrderApplier(p, c, orderStore, network, this.events, this.routingView);
      this.orders.push(this.partition("order", p, orderStore, orderApplier, js, publisher));
    }
    // Every runner settles before a failure is reported: stop() must never race a runner still starting.
    const started = await Promise.allSettled(this.partitions.map((p) => p.runner.start()));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed !== undefined) throw failed.reason;
    this.router = new UnroutedRouter(js, publisher, c, this.events, this.log, this.onFatal);
    await this.router.start();
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
      // Fencing: a process that stalled past the lock's lease and lost it stops before its next commit.
      lockHeld: () => this.lock?.held() ?? false,
    });
    return { stage, index, store, applier, runner };
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
    await this.rules?.stop();
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
