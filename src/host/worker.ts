// A worker thread of one Sluice process: it hosts some partitions (src/host/partition-host.ts) on its own event
// loop, with its own NATS connection and outbox publisher. Everything it starts from is serializable
// (WorkerInit); the main thread supervises (src/host/worker-pool.ts): it forwards rule changes and control
// messages, receives events (one /metrics for all), the partitions' running state and fatal errors.
import { parentPort, workerData } from "node:worker_threads";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { Config } from "../config/index.ts";
import { type Network, parseNetwork } from "../domain/network/index.ts";
import { type EventName, Instrumentation } from "../instrumentation/index.ts";
import { isLogLevel, Logger } from "../log/index.ts";
import { openPartitionStore } from "../stages/definition.ts";
import type { LedgerApplier } from "../stages/ledger/applier.ts";
import { LedgerReadView } from "../stages/order/routing-view.ts";
import type { PartitionStore } from "../store/index.ts";
import { connectNats } from "../stream/connection.ts";
import type { EmbeddedClient } from "../stream/embedded-auth.ts";
import { OutboxPublisher } from "../stream/outbox-publisher.ts";
import type { Stage } from "../stream/subjects.ts";
import { PartitionHost } from "./partition-host.ts";

export type WorkerInit = {
  worker: number;
  config: Config;
  servers: string;
  /** The embedded server's `sluice` user (its seed and inbox prefix); null with nats.url. */
  client: EmbeddedClient | null;
  partitions: Array<{ stage: Stage; index: number }>;
  /** The rule set in force as JSON text (not a cloned object: an own `__proto__` key must survive as it is). */
  rules: { json: string; version: string };
  /** BigInt64Array over it: [0] is the time (ms) until which the data-dir lease lets this process commit. */
  lockFlag: SharedArrayBuffer;
};

export type ToWorker =
  | { type: "rules"; json: string; version: string }
  | { type: "resync"; channel: string }
  | { type: "stop" };

export type SerializedError = { name: string; message: string; stack?: string };

export type FromWorker =
  | { type: "started" }
  | { type: "start_failed"; error: SerializedError }
  | { type: "events"; list: Array<[EventName, unknown]> }
  | { type: "running"; partitions: Array<{ stage: Stage; index: number; running: boolean }> }
  | { type: "fatal"; error: SerializedError }
  | { type: "stopped" };

const serialize = (e: unknown): SerializedError => {
  const error = e instanceof Error ? e : new Error(String(e));
  return {
    name: error.name,
    message: error.message,
    ...(error.stack === undefined ? {} : { stack: error.stack }),
  };
};

if (parentPort !== null && (workerData as WorkerInit | undefined)?.partitions !== undefined) {
  const port = parentPort;
  const init = workerData as WorkerInit;
  const post = (m: FromWorker) => port.postMessage(m);
  void run(init, post, port).catch((error: unknown) =>
    post({ type: "start_failed", error: serialize(error) }),
  );
}

async function run(
  init: WorkerInit,
  post: (m: FromWorker) => void,
  port: NonNullable<typeof parentPort>,
): Promise<void> {
  const c = init.config;
  const log = new Logger(isLogLevel(c.log.level) ? c.log.level : "info", {
    node: c.node.name,
    worker: init.worker,
  });
  const lease = new BigInt64Array(init.lockFlag);
  let fatal = false;
  const onFatal = (error: Error) => {
    if (fatal) return;
    fatal = true;
    post({ type: "fatal", error: serialize(error) });
  };

  // Events go to the main thread in one message per event-loop turn (its metrics count them as its own).
  const events = new Instrumentation();
  const pending: Array<[EventName, unknown]> = [];
  events.tap((name, payload) => {
    if (pending.length === 0) setImmediate(() => post({ type: "events", list: pending.splice(0) }));
    pending.push([name, payload]);
  });

  const first = parsed(init.rules.json, init.rules.version, c);
  if (!first.ok) throw new Error(`the rule set in force does not parse in a worker: ${first.detail}`);
  let network: Network = first.value;
  const connection = await connectNats(c, init.servers, log, init.client);
  const nc = connection.nc;
  const js = jetstream(nc, { timeout: c.nats.requestTimeoutMs });
  const jsm = await jetstreamManager(nc, { timeout: c.nats.requestTimeoutMs });
  const publisher = new OutboxPublisher(js, { ...c.outbox, requestTimeoutMs: c.nats.requestTimeoutMs });

  // The order stage reads the ledger's committed state: the stores of ledger partitions hosted here, and the
  // others opened read-only (LMDB shares one environment per path across the process's threads).
  const hostedLedger = new Map<number, PartitionStore>();
  const readOnly: PartitionStore[] = [];
  /** Another worker creates its ledger partitions: one not there yet is tried again a second later. */
  const triedAtMs: number[] = [];
  const ledgerStore = (p: number): PartitionStore | undefined => {
    const hosted = hostedLedger.get(p) ?? readOnly[p];
    if (hosted !== undefined) return hosted;
    const now = Date.now();
    if (now - (triedAtMs[p] ?? Number.NEGATIVE_INFINITY) < 1000) return undefined;
    triedAtMs[p] = now;
    try {
      readOnly[p] = openPartitionStore(c, "ledger", p, { readOnly: true });
    } catch {
      return undefined; // routing reads no stock for it meanwhile; the ledger's reservation decides anyway
    }
    return readOnly[p];
  };
  const hosts: PartitionHost[] = [];
  const ctx = {
    config: c,
    nc,
    js,
    jsm,
    publisher,
    events,
    log,
    network: () => network,
    routing: new LedgerReadView(
      () => Array.from({ length: c.streams.partitionCount }, (_, p) => ledgerStore(p)),
      c.streams.partitionCount,
      c.routing.loadRefreshMs,
    ),
    lockHeld: () => Date.now() < Number(Atomics.load(lease, 0)),
    onFatal,
  };
  for (const { stage, index } of init.partitions) {
    const host = PartitionHost.open(stage, index, ctx);
    hosts.push(host);
    if (stage === "ledger") hostedLedger.set(index, host.store);
  }
  const started = await Promise.allSettled(hosts.map((h) => h.start()));
  const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed !== undefined) throw failed.reason;

  // The partitions' running state, sent when it changes (readiness in the main thread reads it).
  let last = "";
  const report = () => {
    const partitions = hosts.map((h) => ({ stage: h.stage, index: h.index, running: h.running }));
    const now = JSON.stringify(partitions);
    if (now === last) return;
    last = now;
    post({ type: "running", partitions });
  };
  report();
  const reporting = setInterval(report, c.node.workerStateReportMs);
  post({ type: "started" });

  port.on("message", (m: ToWorker) => {
    if (m.type === "rules") {
      // The main thread validated it the same way; should it still not parse here, the set in force stays.
      const next = parsed(m.json, m.version, c);
      if (next.ok) network = next.value;
      else
        log.error("rules refused in a worker: the previous rule set stays in force", { detail: next.detail });
    } else if (m.type === "resync") {
      for (const h of hosts)
        if (h.stage === "ledger") (h.applier as LedgerApplier).outputs.requestResync(m.channel);
    } else if (m.type === "stop") {
      void (async () => {
        clearInterval(reporting);
        await Promise.all(hosts.map((h) => h.stop()));
        if (!nc.isClosed()) {
          await nc.flush().catch(() => undefined);
          await nc.close();
        }
        for (const h of hosts) await h.store.close();
        for (const s of readOnly) await s?.close();
        if (pending.length > 0) post({ type: "events", list: pending.splice(0) });
        post({ type: "stopped" });
      })().catch((error: unknown) => onFatal(error as Error));
    }
  });
}

/** The rule set the main thread validated and put in force, parsed again here (a Network is not cloneable). */
function parsed(json: string, version: string, c: Config): ReturnType<typeof parseNetwork> {
  let raw: unknown = null; // text that is not JSON is refused as no rule set at all
  try {
    raw = JSON.parse(json);
  } catch {}
  return parseNetwork(raw, version, { idBytesMax: c.ledger.idBytesMax });
}
