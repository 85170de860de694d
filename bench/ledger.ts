// Ledger-stage throughput: how many stock commands per second Sluice applies end to end (publish →
// JetStream → partition → LMDB commit → ack), next to this machine's raw JetStream rate for the same
// messages, measured in the same run.
//
//   bun bench/ledger.ts [--messages 200000] [--skus 10000] [--partitions 4] [--window 4000]
//
// Sluice runs as its own process (`bun src/cli.ts start`, embedded nats-server); this process is the
// load generator. Writes nothing to the repository; data lives in a temporary directory.
import { parseArgs } from "node:util";
import { jetstream } from "@nats-io/jetstream";
import { connectSecured } from "../src/stream/connection.ts";
import { subjects } from "../src/stream/subjects.ts";
import { benchConnection, measureRawJetStream, publishAll, startSluice, waitUntil } from "./lib.ts";

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
const windowMax = Number(values.window);

const sluice = await startSluice({ SLUICE_STREAMS_PARTITION_COUNT: String(partitions) });
try {
  const admin = benchConnection(sluice.natsClient("admin"), process.env);
  const nc = await connectSecured({ servers: sluice.natsUrl, ...admin.options }, admin.security);
  const js = jetstream(nc);
  const payloads = Array.from({ length: 16 }, (_, i) =>
    new TextEncoder().encode(JSON.stringify({ type: "received", warehouse: `w${(i % 3) + 1}`, qty: 1 + i })),
  );
  const raw = await measureRawJetStream(
    nc,
    messages,
    windowMax,
    partitions,
    (i) => payloads[i % 16] as Uint8Array,
  );

  const before = await sluice.metric("sluice_messages_applied_total", { stage: "ledger" });
  const t0 = performance.now();
  await publishAll(messages, windowMax, (i) =>
    js.publish(subjects.stockPublic(`SKU-${i % skuCount}`), payloads[i % 16]),
  );
  const publishSeconds = (performance.now() - t0) / 1000;
  await waitUntil(
    async () =>
      (await sluice.metric("sluice_messages_applied_total", { stage: "ledger" })) - before >= messages,
    300_000,
    "every command applied",
  );
  const seconds = (performance.now() - t0) / 1000;
  const report = {
    messages,
    messageBytes: payloads[0]?.length ?? 0,
    partitions,
    publishWindow: windowMax,
    rawJetStream: raw,
    sluice: {
      publishPerSecond: Math.round(messages / publishSeconds),
      appliedEndToEndPerSecond: Math.round(messages / seconds),
      drainAfterLastPublishSeconds: Number((seconds - publishSeconds).toFixed(3)),
      residentMemoryBytes: await sluice.metric("process_resident_memory_bytes"),
    },
    ratioToRawPublishThenConsume: Number((messages / seconds / raw.publishThenConsumePerSecond).toFixed(3)),
  };
  console.log(JSON.stringify(report, null, 2));
  await nc.close();
} finally {
  await sluice.stop();
}
