import { afterAll, beforeAll, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import type { Config } from "../../src/config/index.ts";
import type { SkuState } from "../../src/domain/ledger/index.ts";
import type { Sluice } from "../../src/sluice.ts";
import { skuPartition, subjects } from "../../src/stream/subjects.ts";
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

// Several Sluice nodes on one NATS system share the partitions by lease; a node that leaves hands its
// partitions over (snapshot + changelog) and the others carry on from exactly where it stopped.

const P = 4;
const nats = new TestNats(P);
const dirs: string[] = [];
const nodes: Array<{ sluice: Sluice; fatal: Error[]; name: string }> = [];
let producer: Producer;

function clusterConfig(name: string): Config {
  const dir = tempDir(`cluster-${name}`);
  dirs.push(dir);
  return testConfig(nats.url, dir, {
    node: { name, workerCount: 0 },
    cluster: {
      enabled: true,
      leaseMs: 1500,
      leaseRenewMs: 300,
      rebalanceMs: 300,
      snapshotMs: 2000,
      logBytesMax: 64 * 1024 * 1024,
      snapshotBytesMax: 64 * 1024 * 1024,
    },
  });
}

async function join(name: string) {
  const node = { ...(await startSluice(clusterConfig(name))), name };
  nodes.push(node);
  return node;
}

/** Which node runs each partition (by the stores it hosts), and whether every one runs exactly once. */
function placement(): Map<string, string[]> {
  const at = new Map<string, string[]>();
  for (const n of nodes) {
    if (n.sluice.member === null) continue;
    for (const key of n.sluice.member.owned.keys()) at.set(key, [...(at.get(key) ?? []), n.name]);
  }
  return at;
}

const everyPartitionOnce = () => {
  const at = placement();
  return at.size === 2 * P && [...at.values()].every((owners) => owners.length === 1);
};

function ledgerState(sku: string): SkuState | undefined {
  const p = skuPartition(sku, P);
  for (const n of nodes) {
    const store = n.sluice.store("ledger", p);
    if (store?.isOpen) return store.get<SkuState>("skus", sku);
  }
  return undefined;
}

beforeAll(async () => {
  await nats.start();
  producer = await Producer.connect(nats.url);
});

afterAll(async () => {
  for (const n of nodes) await n.sluice.stop().catch(() => undefined);
  await producer?.close();
  await nats.dispose();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const skus = Array.from({ length: 24 }, (_, i) => `CL-${i}`);
let sent = 0;
async function receive(count: number) {
  for (let i = 0; i < count; i++) {
    const n = sent++;
    await producer.publishJson(
      subjects.stockPublic(skus[n % skus.length] as string),
      { type: "received", warehouse: "w1", qty: 1 },
      `cl-${n}`,
    );
  }
}
const expectedOnHand = (sku: string) => {
  const i = skus.indexOf(sku);
  return Math.floor(sent / skus.length) + (i < sent % skus.length ? 1 : 0);
};
const allCounted = () => skus.every((sku) => ledgerState(sku)?.positions.w1?.onHand === expectedOnHand(sku));

test("one node takes every partition; a second joins and they split them", async () => {
  const a = await join("node-a");
  expect(a.sluice.member?.owned.size).toBe(2 * P);
  await receive(200);
  await waitFor(allCounted, "node-a counted every receipt");
  const b = await join("node-b");
  await waitFor(
    () => everyPartitionOnce() && (b.sluice.member?.owned.size ?? 0) >= P - 1,
    "the partitions split between two nodes",
    20_000,
  );
  expect(a.sluice.member?.owned.size).toBeGreaterThanOrEqual(P - 1);
  await receive(200);
  await waitFor(allCounted, "every receipt counted once across the two nodes");
  // Leases as the bucket shows them: a partition may still be between two owners for a round.
  const status = await waitFor(async () => {
    const r = await getJson(`${httpBase(a.sluice)}/v1/cluster`);
    return r.body.partitions?.length === 2 * P ? r : null;
  }, "every partition's lease held");
  expect(status.status).toBe(200);
  expect(status.body.nodes.map((n: { node: string }) => n.node).sort()).toEqual(["node-a", "node-b"]);
  expect(status.body.partitions).toHaveLength(2 * P);
  expect(a.fatal).toEqual([]);
  expect(b.fatal).toEqual([]);
}, 60_000);

test("a node leaving hands its partitions over: nothing lost, nothing counted twice", async () => {
  const b = nodes.find((n) => n.name === "node-b");
  if (b === undefined) throw new Error("node-b missing");
  const sending = receive(300);
  await Bun.sleep(200);
  await b.sluice.stop();
  nodes.splice(nodes.indexOf(b), 1);
  await sending;
  await waitFor(everyPartitionOnce, "node-a runs every partition again", 20_000);
  await waitFor(allCounted, "every receipt counted exactly once after the handoff", 20_000);
  const a = nodes.find((n) => n.name === "node-a");
  expect(a?.fatal).toEqual([]);
}, 60_000);

test("a pinned node runs exactly its pins; the unpinned nodes share the rest", async () => {
  const config = clusterConfig("node-pinned");
  const pinned = {
    ...(await startSluice({ ...config, cluster: { ...config.cluster, partitions: "ledger:1,order:2" } })),
    name: "node-pinned",
  };
  nodes.push(pinned);
  await waitFor(
    () =>
      everyPartitionOnce() &&
      [...(pinned.sluice.member?.owned.keys() ?? [])].sort().join() === "ledger.1,order.2",
    "the pinned node runs ledger.1 and order.2 only",
    20_000,
  );
  await pinned.sluice.stop();
  nodes.splice(nodes.indexOf(pinned), 1);
  await waitFor(everyPartitionOnce, "its pins run elsewhere once it left", 20_000);
}, 60_000);

test("a partition's HTTP read on a node that does not run it names the owner", async () => {
  const c = await join("node-c");
  await waitFor(
    () => everyPartitionOnce() && (c.sluice.member?.owned.size ?? 0) > 0,
    "node-c took a share",
    20_000,
  );
  const a = nodes.find((n) => n.name === "node-a");
  if (a === undefined) throw new Error("node-a missing");
  const remote = skus.find((sku) => a.sluice.store("ledger", skuPartition(sku, P)) === undefined);
  if (remote === undefined) throw new Error("no SKU on node-c's partitions");
  const res = await waitFor(async () => {
    const r = await getJson(`${httpBase(a.sluice)}/v1/stock/${remote}`);
    return r.body.owner?.http ? r : null;
  }, "node-a names node-c's address (its next round reads node-c's heartbeat)");
  expect(res.status).toBe(503);
  expect(res.body.owner.node).toBe("node-c");
  expect(res.body.fix).toBe(`ask ${httpBase(c.sluice)}`);
}, 60_000);
