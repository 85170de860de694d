// Ledger-stage throughput: how many stock commands per second Sluice applies end to end (publish →
// JetStream → partition → LMDB commit → ack), next to this machine's raw JetStream rate for the same
// messages, measured in the same run. The full flash-sale harness (issue 6) grows from this.
//
//   bun bench/ledger.ts [--messages 200000] [--skus 10000] [--partitions 4] [--window 4000]
//
// Sluice runs as its own process (`bun src/cli.ts start`, embedded nats-server); this process is the
// load generator. Writes nothing to the repository; data lives in a temporary directory.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { subjects } from "../src/stream/subjects.ts";

const { values } = parseArgs({
  options: {
    messages: { type: "string", default: "200000" },
    skus: { type: "string", default: "10000" },
    partitions: { type: "string", default: "4" },
    window: { type: "string", default: "4000" },
  },
});
const messages = Number(values.messages);
const skuCount = Number(values.skus);
const partitions = Number(values.partitions);
/** Publishes awaiting their ack at once: a bounded window, like a real producer. */
const windowMax = Number(values.window);

const dir = mkdtempSync(join(tmpdir(), "sluice-bench-"));
const httpPort = 18000 + Math.floor(Math.random() * 1000);
const child = Bun.spawn(["bun", "src/cli.ts", "start"], {
  env: {
    ...process.env,
    SLUICE_DATA_DIR: dir,
    SLUICE_NATS_EMBEDDED_PORT: "0",
    SLUICE_HTTP_PORT: String(httpPort),
    SLUICE_STREAMS_PARTITION_COUNT: String(partitions),
    SLUICE_LOG_LEVEL: "warn",
  },
  stdout: "inherit",
  stderr: "inherit",
});

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n")) if (line.startsWith(`${name}{`)) sum += Number(line.split(" ").pop());
  return sum;
}

async function natsUrl(): Promise<string> {
  for (let i = 0; i < 200; i++) {
    try {
      const r = await fetch(`http://127.0.0.1:${httpPort}/readyz`);
      if (r.status === 200) break;
    } catch {}
    await Bun.sleep(50);
  }
  const ports = await Array.fromAsync(new Bun.Glob("*.ports").scan({ cwd: join(dir, "nats", "ports") }));
  const file = ports[0];
  if (file === undefined) throw new Error("embedded nats-server wrote no ports file");
  return (JSON.parse(await Bun.file(join(dir, "nats", "ports", file)).text()) as { nats: string[] })
    .nats[0] as string;
}

try {
  const url = await natsUrl();
  const nc = await connect({ servers: url });
  const js = jetstream(nc);
  const payloads = Array.from({ length: 16 }, (_, i) =>
    new TextEncoder().encode(JSON.stringify({ type: "received", warehouse: `w${i % 4}`, qty: 1 + i })),
  );
  const bytes = payloads[0]?.length ?? 0;

  // 1. Raw JetStream on this machine: publish, then consume + ack the same count, no processing.
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: "BENCH_RAW", subjects: ["bench.raw.>"], max_bytes: 1024 * 1024 * 1024 });
  let t0 = performance.now();
  await publishAll((i) => js.publish(`bench.raw.${i % partitions}`, payloads[i % 16]));
  const rawPublishSeconds = (performance.now() - t0) / 1000;
  await jsm.consumers.add("BENCH_RAW", {
    durable_name: "raw",
    ack_policy: AckPolicy.All,
    deliver_policy: DeliverPolicy.All,
    max_ack_pending: 8000,
  });
  const consumer = await js.consumers.get("BENCH_RAW", "raw");
  t0 = performance.now();
  let consumed = 0;
  const iter = await consumer.consume({ max_messages: 2000 });
  for await (const m of iter) {
    consumed++;
    if (consumed % 500 === 0 || consumed === messages) m.ack();
    if (consumed === messages) break;
  }
  const rawConsumeSeconds = (performance.now() - t0) / 1000;
  await jsm.streams.delete("BENCH_RAW");

  // 2. Sluice: the same count of stock commands, Zipf-free uniform SKUs, end to end.
  const before = await metric("sluice_messages_applied_total");
  t0 = performance.now();
  await publishAll((i) => js.publish(subjects.stockPublic(`SKU-${i % skuCount}`), payloads[i % 16]));
  const publishSeconds = (performance.now() - t0) / 1000;
  let applied = 0;
  while (applied < messages) {
    applied = (await metric("sluice_messages_applied_total")) - before;
    await Bun.sleep(20);
  }
  const endToEndSeconds = (performance.now() - t0) / 1000;
  const rss = await metric("process_resident_memory_bytes");
  const rawRate = messages / (rawPublishSeconds + rawConsumeSeconds);
  const report = {
    messages,
    messageBytes: bytes,
    partitions,
    publishWindow: windowMax,
    rawJetStream: {
      publishPerSecond: Math.round(messages / rawPublishSeconds),
      consumeAckPerSecond: Math.round(messages / rawConsumeSeconds),
      publishThenConsumePerSecond: Math.round(rawRate),
    },
    sluice: {
      publishPerSecond: Math.round(messages / publishSeconds),
      appliedEndToEndPerSecond: Math.round(messages / endToEndSeconds),
      drainAfterLastPublishSeconds: Number((endToEndSeconds - publishSeconds).toFixed(3)),
      residentMemoryBytes: rss,
    },
    ratioToRawPublishThenConsume: Number((messages / endToEndSeconds / rawRate).toFixed(3)),
  };
  console.log(JSON.stringify(report, null, 2));
  await nc.close();
} finally {
  child.kill("SIGTERM");
  await child.exited;
  rmSync(dir, { recursive: true, force: true });
}

async function publishAll(send: (i: number) => Promise<unknown>): Promise<void> {
  const inflight = new Set<Promise<unknown>>();
  for (let i = 0; i < messages; i++) {
    const p = send(i).finally(() => inflight.delete(p));
    inflight.add(p);
    if (inflight.size >= windowMax) await Promise.race(inflight);
  }
  await Promise.all(inflight);
}
