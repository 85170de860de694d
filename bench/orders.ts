// End-to-end single-line orders per second: order published → order stage → line request to the SKU's
// ledger partition → reservation committed → answer back → order released to its warehouse (fulfilment
// request and status committed in the outbox). Three JetStream hops per order; the raw JetStream rate of
// the same machine is measured in the same run. Where the time goes: per-stage apply, commit and
// outbox-publish seconds (from Sluice's own histograms) and CPU seconds of Sluice and nats-server.
//
//   bun bench/orders.ts [--orders 50000] [--skus 5000] [--partitions 4] [--window 2000]
import { parseArgs } from "node:util";
import { jetstream } from "@nats-io/jetstream";
import { headers } from "@nats-io/transport-node";
import { connectSecured } from "../src/stream/connection.ts";
import { subjects } from "../src/stream/subjects.ts";
import { benchConnection, measureRawJetStream, publishAll, startSluice, waitUntil } from "./lib.ts";

const { values } = parseArgs({
  options: {
    orders: { type: "string", default: "50000" },
    skus: { type: "string", default: "5000" },
    partitions: { type: "string", default: "4" },
    window: { type: "string", default: "2000" },
  },
});
const orders = Number(values.orders);
const skus = Number(values.skus);
const partitions = Number(values.partitions);
const windowMax = Number(values.window);

// The bench network: warehouses with capacities no bench exhausts (routing would refuse past capacityPerDay).
const sluice = await startSluice({
  SLUICE_STREAMS_PARTITION_COUNT: String(partitions),
  SLUICE_ORDERS_NETWORK_FILE:
    process.env.SLUICE_ORDERS_NETWORK_FILE ?? new URL("./harness/network.toml", import.meta.url).pathname,
});
try {
  const admin = benchConnection(sluice.natsClient("admin"), process.env);
  const nc = await connectSecured({ servers: sluice.natsUrl, ...admin.options }, admin.security);
  const js = jetstream(nc, { timeout: 10_000 });
  const h = headers();
  h.set("Content-Type", "application/json");
  const enc = new TextEncoder();

  // Seed stock through bulk imports (the router splits them per ledger partition).
  const chunk = 5000;
  for (let start = 0; start < skus; start += chunk) {
    const items = [];
    for (let i = start; i < Math.min(skus, start + chunk); i++) {
      items.push({ sku: `SKU-${i}`, type: "received", warehouse: "w1", qty: 1_000_000 });
    }
    await js.publish(subjects.importPublic(`seed-${start}`), enc.encode(JSON.stringify({ items })), {
      headers: h,
    });
  }
  await waitUntil(
    async () => (await fetch(`http://127.0.0.1:${sluice.httpPort}/v1/stock/SKU-${skus - 1}`)).status === 200,
    60_000,
    "seed stock",
  );
  const payload = (i: number) =>
    enc.encode(
      JSON.stringify({ lines: [{ sku: `SKU-${i % skus}`, qty: 1, price: 19.9 }], shipTo: { region: "SP" } }),
    );
  const bytes = payload(0).length;

  // Raw JetStream: publish then consume + ack the same count and size, no processing.
  const raw = await measureRawJetStream(nc, orders, windowMax, partitions, payload);

  const done = async () =>
    (await sluice.metric("sluice_order_outcomes_total", { outcome: "released" })) +
    (await sluice.metric("sluice_order_outcomes_total", { outcome: "rejected" }));
  const base = await done();
  const sums: Record<string, number> = {};
  const histograms = [
    "sluice_apply_duration_seconds_sum",
    "sluice_commit_duration_seconds_sum",
    "sluice_outbox_publish_duration_seconds_sum",
    "sluice_batch_size_messages_sum",
    "sluice_batch_size_messages_count",
  ];
  for (const stage of ["order", "ledger"])
    for (const name of histograms) sums[`${stage}:${name}`] = await sluice.metric(name, { stage });
  const cpu0 = sluice.cpuSeconds();
  const t0 = performance.now();
  await publishAll(orders, windowMax, (i) =>
    js.publish(subjects.orderPublic("order", "shop", `o-${i}`), payload(i), { headers: h }),
  );
  const publishSeconds = (performance.now() - t0) / 1000;
  await waitUntil(async () => (await done()) - base >= orders, 300_000, "every order released");
  const seconds = (performance.now() - t0) / 1000;
  const cpu1 = sluice.cpuSeconds();
  const where: Record<string, Record<string, number>> = {};
  for (const stage of ["order", "ledger"]) {
    const d = async (name: string) =>
      (await sluice.metric(name, { stage })) - (sums[`${stage}:${name}`] ?? 0);
    const batches = await d("sluice_batch_size_messages_count");
    where[stage] = {
      applySeconds: round(await d("sluice_apply_duration_seconds_sum")),
      commitSeconds: round(await d("sluice_commit_duration_seconds_sum")),
      outboxPublishSeconds: round(await d("sluice_outbox_publish_duration_seconds_sum")),
      batches,
      messagesPerBatch: round((await d("sluice_batch_size_messages_sum")) / Math.max(1, batches)),
    };
  }
  const rawRate = raw.publishThenConsumePerSecond;
  console.log(
    JSON.stringify(
      {
        orders,
        skus,
        partitions,
        orderMessageBytes: bytes,
        publishWindow: windowMax,
        rawJetStream: raw,
        sluice: {
          ordersPublishedPerSecond: Math.round(orders / publishSeconds),
          ordersReleasedPerSecond: Math.round(orders / seconds),
          drainAfterLastPublishSeconds: round(seconds - publishSeconds),
          residentMemoryBytes: await sluice.metric("process_resident_memory_bytes"),
          cpuSeconds: {
            sluice: round(cpu1.sluice - cpu0.sluice),
            natsServer: round(cpu1.nats - cpu0.nats),
            wall: round(seconds),
          },
          where,
        },
        ratioToRawPublishThenConsume: round(orders / seconds / rawRate),
      },
      null,
      2,
    ),
  );
  await nc.close();
} finally {
  await sluice.stop();
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}
