import { Worker } from "node:worker_threads";
import type { Config } from "../config/index.ts";
import type { LedgerCheck } from "../stages/ledger/check.ts";
import type { CheckInit, FromCheck } from "./ledger-check-worker.ts";

export type CheckOutcome =
  /** Every partition asked for was checked. */
  | { kind: "done"; partitions: LedgerCheck[] }
  /** Another check is running: one at a time. */
  | { kind: "busy" }
  /** http.ledgerCheckMsMax passed: the partitions checked so far, of `total`. */
  | { kind: "timeout"; partitions: LedgerCheck[]; total: number }
  /** A partition could not be opened or read. */
  | { kind: "failed"; partitions: LedgerCheck[]; partition: number | null; message: string };

/**
 * GET /v1/ledger/check, bounded: at most one at a time, in a worker thread (ledger-check-worker.ts) so the
 * partitions' event loop never waits for the scan, and answered after at most `timeMsMax`. A check that ran
 * out of time is told to stop after the partition in hand and still counts as running until it has: the
 * next one is refused as busy until then, so checks never pile up.
 */
export class LedgerChecks {
  /** The check holding the one slot, until it has finished its work (not merely been answered). */
  private running: object | null = null;

  get busy(): boolean {
    return this.running !== null;
  }

  run(config: Config, partitions: number[], timeMsMax: number): Promise<CheckOutcome> {
    if (this.running !== null) return Promise.resolve({ kind: "busy" });
    if (partitions.length === 0) return Promise.resolve({ kind: "done", partitions: [] });
    const slot = {};
    this.running = slot;
    // Only this check's own end frees the slot: its worker's exit may come after a later check started.
    const release = () => {
      if (this.running === slot) this.running = null;
    };
    const stop = new SharedArrayBuffer(4);
    const init: CheckInit = { kind: "sluice-ledger-check", config, partitions, stop };
    let worker: Worker;
    try {
      worker = new Worker(new URL("./ledger-check-worker.ts", import.meta.url), { workerData: init });
    } catch (error) {
      release();
      throw error;
    }
    // A check left running when Sluice stops must not keep the process alive.
    worker.unref();
    const results: LedgerCheck[] = [];
    return new Promise<CheckOutcome>((resolve) => {
      let answered = false;
      const answer = (o: CheckOutcome) => {
        if (answered) return;
        answered = true;
        clearTimeout(timer);
        resolve(o);
      };
      const timer = setTimeout(() => {
        Atomics.store(new Int32Array(stop), 0, 1);
        answer({ kind: "timeout", partitions: [...results], total: partitions.length });
      }, timeMsMax);
      timer.unref();
      // "failed" and "done" are the worker's last words: its reading is over, so the slot is free already.
      worker.on("message", (m: FromCheck) => {
        if (m.type === "partition") results.push(m.result);
        else if (m.type === "failed") {
          release();
          answer({ kind: "failed", partitions: [...results], partition: m.partition, message: m.message });
        } else {
          release();
          answer({ kind: "done", partitions: results });
        }
      });
      worker.on("error", (error: Error) =>
        answer({ kind: "failed", partitions: [...results], partition: null, message: error.message }),
      );
      worker.on("exit", () => {
        release();
        answer({
          kind: "failed",
          partitions: [...results],
          partition: null,
          message: "the check's worker thread ended before it finished",
        });
      });
    });
  }
}
