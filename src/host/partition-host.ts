import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Config } from "../config/index.ts";
import type { Logger } from "../log/index.ts";
import { type ApplierDeps, openPartitionStore, stageDefinitions } from "../stages/definition.ts";
import type { PartitionStore, StoreWriteError } from "../store/index.ts";
import type { OutboxPublisher } from "../stream/outbox-publisher.ts";
import { type FencedError, type PartitionApplier, PartitionRunner } from "../stream/partition-runner.ts";
import type { Stage } from "../stream/subjects.ts";

/** What every partition of one thread shares: its NATS connection, publisher, events and log. */
export type HostContext = ApplierDeps & {
  config: Config;
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  publisher: OutboxPublisher;
  log: Logger;
  /** Whether this process still holds the data-dir lock; checked before every commit. */
  lockHeld: () => boolean;
  /** A failure the partition cannot recover from: the process must exit (fail fast). */
  onFatal: (error: Error) => void;
};

/** Cluster mode: the partition's lease, checked before every commit and publish (src/cluster/). */
export type HostLease = {
  valid: () => boolean;
  /** The partition was fenced (its lease ran out): it has stopped; the node hands it over. */
  onFenced: (error: FencedError) => void;
};

/**
 * One partition, self-contained: its store, its applier and its runner, built from (stage, index) and the
 * thread's context alone, so it runs in the main thread or in a worker the same way. A commit that finds no
 * room on the data disk pauses it (src/store/partition-store.ts StoreWriteError): the runner stops, nothing
 * past its last commit was acked, and after a pause (doubling up to store.diskFullRetryMsMax) a fresh applier
 * and runner start from the store; if there is still no room the first commit pauses it again. Readiness is
 * false meanwhile; intake waits in JetStream, so nothing is lost.
 */
export class PartitionHost<A extends PartitionApplier = PartitionApplier> {
  applier: A;
  runner: PartitionRunner;
  private stopping = false;
  /** The next full-disk pause (ms), doubled each time, reset by a commit. */
  private diskFullWaitMs: number | null = null;
  private resuming: Promise<void> | null = null;
  /** Ends a full-disk pause early (stop). */
  private wake: (() => void) | null = null;

  constructor(
    readonly stage: Stage,
    readonly index: number,
    readonly store: PartitionStore,
    private readonly ctx: HostContext,
    private readonly lease: HostLease | null = null,
  ) {
    [this.applier, this.runner] = this.build();
    ctx.events.on("batch_committed", (e) => {
      if (e.stage === stage && e.partition === index) this.diskFullWaitMs = null;
    });
  }

  /** Opens the partition's store under config.data.dir and builds the partition over it. */
  static open(stage: Stage, index: number, ctx: HostContext): PartitionHost {
    return new PartitionHost(stage, index, openPartitionStore(ctx.config, stage, index), ctx);
  }

  get running(): boolean {
    return this.runner.running;
  }

  start(): Promise<void> {
    return this.runner.start();
  }

  /** Graceful: the runner commits and acks what it holds; a partition resuming after a full disk first starts. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    if (this.resuming !== null) await this.resuming.catch(() => undefined);
    await this.runner.stop();
  }

  private build(): [A, PartitionRunner] {
    const { stage, index, store, ctx } = this;
    const applier = stageDefinitions[stage].applier(index, store, ctx) as unknown as A;
    const runner = new PartitionRunner({
      stage,
      partition: index,
      config: ctx.config,
      nc: ctx.nc,
      jsm: ctx.jsm,
      js: ctx.js,
      store,
      applier,
      publisher: ctx.publisher,
      events: ctx.events,
      log: ctx.log,
      onFatal: ctx.onFatal,
      onStoreFull: (error) => {
        this.resuming = this.resumeWhenRoom(error).catch((e: Error) => ctx.onFatal(e));
      },
      // Fencing: a process that stalled past the lock's lease and lost it stops before its next commit; in
      // cluster mode so does a node whose partition lease ran out, and only that partition stops.
      lockHeld: this.lease === null ? ctx.lockHeld : () => ctx.lockHeld() && this.lease?.valid() === true,
      ...(this.lease === null ? {} : { onFenced: this.lease.onFenced }),
    });
    return [applier, runner];
  }

  private async resumeWhenRoom(error: StoreWriteError): Promise<void> {
    const { stage, index, ctx } = this;
    if (this.stopping) return;
    const waitMs = Math.min(
      this.diskFullWaitMs ?? ctx.config.store.diskFullFirstRetryMs,
      ctx.config.store.diskFullRetryMsMax,
    );
    this.diskFullWaitMs = waitMs * 2;
    ctx.events.emit("partition_paused", { stage, partition: index, delta: 1 });
    ctx.log.warn("partition waits for room on the data disk", { stage, partition: index, waitMs, error });
    await this.runner.stop();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, waitMs);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.wake = null;
    ctx.events.emit("partition_paused", { stage, partition: index, delta: -1 });
    if (this.stopping) return;
    [this.applier, this.runner] = this.build();
    await this.runner.start();
  }
}
