import { afterAll, beforeAll, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { subjects } from "../../src/stream/subjects.ts";
import { Producer, TestNats, tempDir, waitFor } from "../helpers/index.ts";
import { processEnv, type SluiceProcess, spawnSluice, waitReady } from "../helpers/process.ts";

// The real thing: a Sluice process killed with SIGKILL in the middle of a stream, then started again on the
// same data directory. Every receipt must count exactly once.
const nats = new TestNats(4);
const dataDir = tempDir("crash");
const running: SluiceProcess[] = [];
let producer: Producer;

const env = () => processEnv(nats.url, dataDir, 2000);

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

const skus = Array.from({ length: 40 }, (_, i) => `CR-${i}`);

async function sums(p: SluiceProcess) {
  let units = 0;
  let versions = 0;
  for (const sku of skus) {
    const res = await fetch(`http://127.0.0.1:${p.httpPort}/v1/stock/${sku}`);
    if (res.status !== 200) continue;
    const body = (await res.json()) as { version: number; positions: { w1: { onHand: number } } };
    units += body.positions.w1.onHand;
    versions += body.version;
  }
  return { units, versions };
}

test("SIGKILL mid-stream, restart: every input applied exactly once", async () => {
  const first = spawnSluice(env());
  running.push(first);
  await waitReady(first);
  const total = 4000;
  let acked = 0;
  const publishing = (async () => {
    const inflight = [];
    for (let i = 0; i < total; i++) {
      inflight.push(
        producer
          .publishJsonRetrying(
            subjects.stockPublic(skus[i % skus.length] as string),
            { type: "received", warehouse: "w1", qty: 1 },
            `cr-${i}`,
          )
          .then(() => acked++),
      );
      if (inflight.length >= 100) await Promise.all(inflight.splice(0));
    }
    await Promise.all(inflight);
  })();
  await waitFor(
    async () => (await sums(first)).units >= 1000,
    "1000 units applied before the kill",
    20_000,
    50,
  );
  first.child.kill("SIGKILL");
  expect(await first.child.exited).not.toBe(0);
  await publishing;
  expect(acked).toBe(total);

  const second = spawnSluice(env());
  running.push(second);
  await waitReady(second);
  await waitFor(
    async () => (await sums(second)).units === total,
    `${total} units after the restart`,
    30_000,
    100,
  );
  await Bun.sleep(500);
  expect(await sums(second)).toEqual({ units: total, versions: total });

  second.child.kill("SIGTERM");
  expect(await second.child.exited).toBe(0);
  expect(second.output()).not.toContain('"level":"error"');
});

test("a second Sluice on the same data directory refuses to start", async () => {
  const first = spawnSluice(env());
  running.push(first);
  await waitReady(first);
  const second = spawnSluice(env());
  running.push(second);
  expect(await second.child.exited).toBe(1);
  expect(second.output()).toContain(`is in use by Sluice process ${first.child.pid}`);
  first.child.kill("SIGTERM");
  expect(await first.child.exited).toBe(0);
});
