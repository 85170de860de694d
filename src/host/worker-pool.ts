import { Worker } from "node:worker_threads";
import type { Config } from "../config/index.ts";
import type { Instrumentation } from "../instrumentation/index.ts";
import type { Logger } from "../log/index.ts";
import type { EmbeddedClient } from "../stream/embedded-auth.ts";
import { type Stage, stages } from "../stream/subjects.ts";
import type { FromWorker, SerializedError, ToWorker, WorkerInit } from "./worker.ts";

/** Which worker hosts a partition: every partition of both stages, dealt round-robin. */
export function assignPartitions(
  partitionCount: number,
  workerCount: number,
): Array<Array<{ stage: Stage; index: number }>> {
  const out: Array<Array<{ stage: Stage; index: number }>> = Array.from({ length: workerCount }, () => []);
  // Order partition p goes to the worker after ledger partition p's: each worker gets both stages.
  for (let index = 0; index < partitionCount; index++) {
    stages.forEach((stage, offset) => {
      out[(index + offset) % workerCount]?.push({ stage, index });
    });
  }
  return out.filter((list) => list.length > 0);
}

const revive = (e: SerializedError): Error => {
  const error = new Error(e.message);
  error.name = e.name;
  if (e.stack !== undefined) error.stack = e.stack;
  return error;
};

/**
 * The main thread's side of the worker threads (node.workerCount): it starts them, relays rule changes and
 * control messages, re-emits their events into the process's one Instrumentation (one /metrics for all),
 * keeps each partition's running state for readiness, and turns a worker's fatal error (or a worker that
 * dies) into the process's fail-fast exit, as an in-process partition's would be.
 */
export class WorkerPool {
  private readonly workers: Worker[] = [];
  private readonly running = new Map<string, boolean>();
  private readonly lockFlag = new SharedArrayBuffer(8);
  private readonly lockView = new BigInt64Array(this.lockFlag);
  private stopping = false;

  constructor(
    private readonly config: Config,
    private readonly events: Instrumentation,
    private readonly log: Logger,
    private readonly onFatal: (error: Error) => void,
  ) {}

  /** Whether every hosted partition's runner is running. */
  allRunning(): boolean {
    return this.running.size > 0 && [...this.running.values()].every(Boolean);
  }

  get size(): number {
    return this.workers.length;
  }

  /**
   * The data-dir lease as the workers see it, checked before every commit: the time (ms) until which they may
   * commit, 0 once the lock is lost. A lease that is not renewed runs out by itself, so workers stop
   * committing when the main thread stalls, as partitions on the main thread would.
   */
  setLease(untilMs: number): void {
    Atomics.store(this.lockView, 0, BigInt(Math.floor(untilMs)));
  }

  async start(
    servers: string,
    client: EmbeddedClient | null,
    workerCount: number,
    rules: { json: string; version: string },
  ): Promise<void> {
    const assignment = assignPartitions(this.config.streams.partitionCount, workerCount);
    const starts = assignment.map((partitions, worker) => {
      const init: WorkerInit = {
        worker,
        config: this.config,
        servers,
        client,
        partitions,
        rules,
        lockFlag: this.lockFlag,
      };
      const w = new Worker(new URL("./worker.ts", import.meta.url), { workerData: init });
      this.workers.push(w);
      for (const p of partitions) this.running.set(`${p.stage}-${p.index}`, false);
      return new Promise<void>((resolve, reject) => {
        w.on("message", (m: FromWorker) => {
          if (m.type === "started") resolve();
          else if (m.type === "start_failed") reject(revive(m.error));
          else this.onMessage(m);
        });
        w.on("error", (error: Error) => {
          reject(error);
          this.onFatal(error);
        });
        w.on("exit", (code) => {
          if (this.stopping) return;
          const error = new Error(`worker ${worker} exited (code ${code}) while Sluice runs`);
          reject(error);
          this.onFatal(error);
        });
      });
    });
    this.log.info("workers starting", {
      workers: assignment.length,
      partitions: assignment.map((a) => a.length),
    });
    const started = await Promise.allSettled(starts);
    const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed !== undefined) throw failed.reason;
  }

  private onMessage(m: FromWorker): void {
    if (m.type === "events") {
      for (const [name, payload] of m.list) this.events.emit(name, payload as never);
    } else if (m.type === "running") {
      for (const p of m.partitions) this.running.set(`${p.stage}-${p.index}`, p.running);
    } else if (m.type === "fatal") {
      this.onFatal(revive(m.error));
    }
  }

  broadcast(m: ToWorker): void {
    for (const w of this.workers) w.postMessage(m);
  }

  /** Graceful: each worker stops its partitions (commit, ack, publish) and closes; then it is terminated. */
  async stop(timeoutMs: number): Promise<void> {
    this.stopping = true;
    await Promise.all(
      this.workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, timeoutMs);
            w.on("message", (m: FromWorker) => {
              if (m.type === "stopped") {
                clearTimeout(timer);
                resolve();
              }
            });
            w.postMessage({ type: "stop" } satisfies ToWorker);
          }),
      ),
    );
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
