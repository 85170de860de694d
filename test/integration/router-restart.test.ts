import { afterAll, beforeAll, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { streamNames, unroutedConsumerName } from "../../src/stream/subjects.ts";
import { Producer, TestNats, tempDir, waitFor } from "../helpers/index.ts";
import { processEnv, type SluiceProcess, spawnSluice, waitReady } from "../helpers/process.ts";

// WMS events always take the router. Messages it had taken but not acked when its process died (or stopped
// mid-burst) must be routed again at once by the next start, not after consumer.ackWaitMs (left at 30 s).
const nats = new TestNats(4);
const dataDir = tempDir("router-restart");
const running: SluiceProcess[] = [];
let producer: Producer;

const env = () => processEnv(nats.url, dataDir, 30_000);

beforeAll(async () => {
  await nats.start();
  producer = await Producer.connect(nats.url);
});

afterAll(async () => {
  for (const p of running) p.child.kill("SIGKILL");
  await producer?.close();
  await nats.dispose();
  rmSync(dataDir, { recursive: true, force: true });
});

async function units(p: SluiceProcess, skus: string[]): Promise<number> {
  let sum = 0;
  for (const sku of skus) {
    const res = await fetch(`http://127.0.0.1:${p.httpPort}/v1/stock/${sku}`);
    if (res.status !== 200) continue;
    const body = (await res.json()) as { positions: { w1?: { onHand: number } } };
    sum += body.positions.w1?.onHand ?? 0;
  }
  return sum;
}

/** `count` WMS receipts of one unit each over `skus`, published as fast as acks come back. */
async function burst(prefix: string, skus: string[], count: number): Promise<void> {
  const inflight: Array<Promise<void>> = [];
  for (let i = 0; i < count; i++) {
    const sku = skus[i % skus.length] as string;
    inflight.push(
      producer.publishJsonRetrying(
        "sluice.in.wms.w1.received",
        { items: [{ sku, qty: 1 }] },
        `${prefix}-${i}`,
      ),
    );
    if (inflight.length >= 200) await Promise.all(inflight.splice(0));
  }
  await Promise.all(inflight);
}

async function ackPending(): Promise<number> {
  const jsm = await producer.jsm();
  return (await jsm.consumers.info(streamNames.unrouted, unroutedConsumerName)).num_ack_pending;
}

for (const signal of ["SIGKILL", "SIGTERM"] as const) {
  test(`${signal} with WMS events in the router's hands: the next start routes them at once`, async () => {
    const skus = Array.from({ length: 20 }, (_, i) => `RR-${signal}-${i}`);
    const total = 3000;
    const first = spawnSluice(env());
    running.push(first);
    await waitReady(first);
    const publishing = burst(signal, skus, total);
    // Stop while the router holds messages it has not acked yet.
    await waitFor(async () => (await ackPending()) > 0, "the router holding unacked messages", 20_000, 5);
    first.child.kill(signal);
    const code = await first.child.exited;
    if (signal === "SIGTERM") expect(code).toBe(0);
    // What a killed router took stays unacked: before the fix it waited consumer.ackWaitMs.
    if (signal === "SIGKILL") expect(await ackPending()).toBeGreaterThan(0);
    await publishing;

    const second = spawnSluice(env());
    running.push(second);
    await waitReady(second);
    const readyAtMs = Date.now();
    // Well under consumer.ackWaitMs (30 s): nothing waits for a redelivery.
    await waitFor(async () => (await units(second, skus)) === total, `${total} units`, 10_000, 50);
    expect(Date.now() - readyAtMs).toBeLessThan(10_000);
    // The router acks a batch after its copies land: the last acks may trail the last applied unit a little.
    await waitFor(async () => (await ackPending()) === 0, "the router acked everything", 5_000, 50);
    second.child.kill("SIGTERM");
    expect(await second.child.exited).toBe(0);
    expect(second.output()).not.toContain('"level":"error"');
  }, 60_000);
}
