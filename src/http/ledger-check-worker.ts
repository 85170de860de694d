// GET /v1/ledger/check off the event loop the partitions share (src/http/ledger-check.ts starts it): a worker
// thread opens each local ledger partition read-only, as `sluice ledger check` does, and checks it. LMDB
// readers never block the writer, so the partitions keep applying while it reads.
import { parentPort, workerData } from "node:worker_threads";
import type { Config } from "../config/index.ts";
import { openPartitionStore } from "../stages/definition.ts";
import { checkLedgerPartition, type LedgerCheck } from "../stages/ledger/check.ts";

export type CheckInit = {
  kind: "sluice-ledger-check";
  config: Config;
  partitions: number[];
  /** Int32Array over it: [0] becomes 1 when the answer has gone (time bound): stop after this partition. */
  stop: SharedArrayBuffer;
};

export type FromCheck =
  | { type: "partition"; result: LedgerCheck }
  | { type: "failed"; partition: number; message: string }
  | { type: "done" };

if (parentPort !== null && (workerData as CheckInit | undefined)?.kind === "sluice-ledger-check") {
  const port = parentPort;
  const init = workerData as CheckInit;
  const stop = new Int32Array(init.stop);
  const post = (m: FromCheck) => port.postMessage(m);
  // One partition at a time: a check of one is synchronous (src/stages/ledger/check.ts), so the stop flag is
  // read between partitions; its store is closed before the next opens.
  for (const p of init.partitions) {
    if (Atomics.load(stop, 0) === 1) break;
    try {
      const store = openPartitionStore(init.config, "ledger", p, { readOnly: true });
      try {
        post({ type: "partition", result: checkLedgerPartition(store, p) });
      } finally {
        await store.close();
      }
    } catch (error) {
      post({ type: "failed", partition: p, message: (error as Error).message });
      break;
    }
  }
  post({ type: "done" });
}
