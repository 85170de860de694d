// Issue #10: a full data disk stops intake cleanly and resumes when space returns, with nothing lost.
// The data directory is a small tmpfs made for this file (the test runs as root, as CI does); a ballast file
// fills it while stock commands keep coming, then is removed.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { closeSync, mkdirSync, openSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import type { Sluice } from "../../src/sluice.ts";
import {
  getJson,
  httpBase,
  Producer,
  startSluice,
  TestNats,
  tempDir,
  testConfig,
  waitFor,
} from "../helpers/index.ts";

const MiB = 1024 * 1024;
const nats = new TestNats(2, true);
const mount = tempDir("disk-full");
let sluice: Sluice;
let fatal: Error[];
let producer: Producer;

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr || r.error?.message}`);
}

/** Writes zeros until the file system refuses: returns the ballast's size in bytes. */
function fill(path: string): number {
  const fd = openSync(path, "w");
  const chunk = new Uint8Array(MiB);
  let written = 0;
  try {
    for (;;) written += writeSync(fd, chunk);
  } catch (error) {
    expect((error as NodeJS.ErrnoException).code).toBe("ENOSPC");
  } finally {
    closeSync(fd);
  }
  return written;
}

const onHand = async (sku: string): Promise<number> => {
  const r = await getJson(`${httpBase(sluice)}/v1/stock/${sku}`);
  return r.status === 200 ? (r.body.positions.w1?.onHand ?? 0) : 0;
};

beforeAll(async () => {
  await nats.start();
  mkdirSync(mount, { recursive: true });
  run("mount", ["-t", "tmpfs", "-o", `size=${48 * MiB}`, "tmpfs", mount]);
  const data = join(mount, "data");
  const config = testConfig(nats.url, data, {
    streams: { partitionCount: 2 },
    store: { diskFullRetryMsMax: 500 },
  });
  ({ sluice, fatal } = await startSluice(config));
  producer = await Producer.connect(nats.url);
});

afterAll(async () => {
  await producer?.close();
  await sluice?.stop();
  await nats.dispose();
  spawnSync("umount", [mount]);
  rmSync(mount, { recursive: true, force: true });
});

test("a full data disk pauses the partitions, the process stays up, and every command applies once there is room", async () => {
  const skus = ["DF-A", "DF-B", "DF-C", "DF-D"];
  for (const sku of skus)
    await producer.publishJson(`sluice.in.stock.${sku}`, { type: "received", warehouse: "w1", qty: 1 });
  for (const sku of skus) await waitFor(async () => (await onHand(sku)) === 1, `${sku} received before`);

  const ballast = join(mount, "ballast");
  expect(fill(ballast)).toBeGreaterThan(0);
  // 40 commands per SKU while the disk is full: each commit fails, nothing may be acked or lost.
  for (let i = 0; i < 40; i++) {
    for (const sku of skus)
      await producer.publishJson(`sluice.in.stock.${sku}`, { type: "received", warehouse: "w1", qty: 1 });
  }
  // Until a pause is counted: an empty list of values (no pause yet) is not an answer.
  const paused = await waitFor(async () => {
    const values = (await sluice.metrics.registry.getSingleMetric("sluice_partition_pauses_total")?.get())
      ?.values;
    return values !== undefined && values.reduce((n, v) => n + v.value, 0) > 0 ? values : null;
  }, "a partition paused");
  expect(paused.reduce((n, v) => n + v.value, 0)).toBeGreaterThan(0);
  await waitFor(
    async () => (await fetch(`${httpBase(sluice)}/readyz`)).status === 503,
    "not ready while full",
  );
  expect(fatal).toEqual([]);

  rmSync(ballast);
  for (const sku of skus) await waitFor(async () => (await onHand(sku)) === 41, `${sku} has every unit`);
  await waitFor(async () => (await fetch(`${httpBase(sluice)}/readyz`)).status === 200, "ready again");
  const check = await getJson(`${httpBase(sluice)}/v1/ledger/check`);
  expect(check.status).toBe(200);
  expect(fatal).toEqual([]);
}, 60_000);
