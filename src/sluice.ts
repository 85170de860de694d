import { join, resolve } from "node:path";
import { type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { Server } from "bun";
import type { Config } from "./config/index.ts";
import { startHttp } from "./http/server.ts";
import { Instrumentation } from "./instrumentation/index.ts";
import type { Logger } from "./log/index.ts";
import { createMetrics, type Metrics } from "./metrics/index.ts";
import { LedgerApplier } from "./stages/ledger/applier.ts";
import { PartitionStore, partitionDir } from "./store/index.ts";
import { type Connection, connectNats } from "./stream/connection.ts";
import { EmbeddedServer } from "./stream/embedded-server.ts";
import { OutboxPublisher } from "./stream/outbox-publisher.ts";
import { PartitionRunner } from "./stream/partition-runner.ts";
import { ensureUnroutedConsumer, provisionStreams } from "./stream/provision.ts";
import { UnroutedRouter } from "./stream/unrouted-router.ts";

export type Partition = {
  index: number;
  store: PartitionStore;
  applier: LedgerApplier;
  runner: PartitionRunner;
};

/**
 * One Sluice process: every stage, and by default every partition. Start order follows the data:
 * NATS (embedded or given) → streams → per partition: store, applier, runner → router → HTTP.
 */
export class Sluice {
  readonly events = new Instrumentation();
  readonly metrics: Metrics;
  embedded: EmbeddedServer | null = null;
  connection: Connection | null = null;
  jsm: JetStreamManager | null = null;
  partitions: Partition[] = [];
  http: Server<undefined> | null = null;
  private router: UnroutedRouter | null = null;
  private stopping: Promise<void> | null = null;

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

  async start(): Promise<void> {
    const c = this.config;
    let servers = c.nats.url;
    if (servers === "") {
      this.embedded = new EmbeddedServer({
        dir: join(this.dataDir, "nats"),
        host: c.nats.embeddedHost,
        port: c.nats.embeddedPort,
        bin: c.nats.embeddedBin,
        storeBytesMax: c.nats.embeddedStoreBytesMax,
        memoryBytesMax: c.nats.embeddedMemoryBytesMax,
        payloadBytesMax: Math.max(c.streams.messageBytesMax + 64 * 1024, 1024 * 1024),
        partitionCount: c.streams.partitionCount,
        startTimeoutMs: c.nats.embeddedStartTimeoutMs,
        stopTimeoutMs: c.nats.embeddedStopTimeoutMs,
        restartsMax: c.nats.embeddedRestartsMax,
        log: this.log,
        onGiveUp: (error) => this.onFatal(error),
      });
      await this.embedded.start();
      servers = this.embedded.url;
    }
    this.connection = await connectNats(c, servers, this.log);
    const nc = this.connection.nc;
    const jsm = await jetstreamManager(nc, { timeout: c.nats.requestTimeoutMs });
    this.jsm = jsm;
    const js = jetstream(nc, { timeout: c.nats.requestTimeoutMs });
    await provisionStreams(jsm, c, this.log);
    await ensureUnroutedConsumer(jsm, c);

    const publisher = new OutboxPublisher(js, { ...c.outbox, requestTimeoutMs: c.nats.requestTimeoutMs });
    for (let p = 0; p < c.streams.partitionCount; p++) {
      const store = PartitionStore.open(
        partitionDir(this.dataDir, "ledger", p),
        { stage: "ledger", partition: p, partitionCount: c.streams.partitionCount },
        c.store.mapBytesMax,
      );
      const applier = new LedgerApplier(p, c, store, this.events);
      const runner = new PartitionRunner({
        stage: "ledger",
        partition: p,
        config: c,
        nc,
        jsm,
        js,
        store,
        applier,
        publisher,
        events: this.events,
        log: this.log,
        onFatal: this.onFatal,
      });
      this.partitions.push({ index: p, store, applier, runner });
    }
    await Promise.all(this.partitions.map((p) => p.runner.start()));
    this.router = new UnroutedRouter(js, publisher, c, this.events, this.log, this.onFatal);
    await this.router.start();

    this.http = startHttp({
      config: c,
      metrics: this.metrics,
      readiness: [
        { name: "nats_connected", ok: () => this.connection?.connected() ?? false },
        { name: "consumers_running", ok: () => this.partitions.every((p) => p.runner.running) },
        { name: "lmdb_open", ok: () => this.partitions.length === c.streams.partitionCount },
      ],
      ledgerStore: (p) => this.partitions[p]?.store,
    });
    this.log.info("sluice started", {
      nats: this.embedded ? `embedded ${this.embedded.url}` : "external",
      partitions: c.streams.partitionCount,
      http: `http://${this.http.hostname}:${this.http.port}`,
    });
  }

  /** Graceful stop: partitions finish and commit their batch and ack, then NATS, LMDB and the server close. */
  stop(): Promise<void> {
    this.stopping ??= this.stopOnce();
    return this.stopping;
  }

  private async stopOnce(): Promise<void> {
    this.log.info("sluice stopping");
    await this.router?.stop();
    await Promise.all(this.partitions.map((p) => p.runner.stop()));
    if (this.connection !== null && !this.connection.nc.isClosed()) {
      // Flush sends the last acks before the connection closes.
      await this.connection.nc.flush().catch(() => undefined);
      await this.connection.nc.close();
    }
    for (const p of this.partitions) await p.store.close();
    this.http?.stop(true);
    await this.embedded?.stop();
    this.log.info("sluice stopped");
  }
}
