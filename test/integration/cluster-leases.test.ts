import { afterAll, beforeAll, expect, test } from "bun:test";
import { Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import {
  LeaseKeeper,
  LeaseTable,
  type LeaseTableOptions,
  type LostReason,
  type PartitionId,
  partitionKey,
} from "../../src/cluster/index.ts";
import { TestNats } from "../helpers/index.ts";

// Leases against a real nats-server with short periods: leaseMs 1500, renewals every 300 ms, so a lease is
// valid for 1200 ms after its last confirmed write and its entry lives at least 1500 ms after it. Each test
// uses its own bucket: an expiry in one never reaches another.

const leaseMs = 1500;
const leaseRenewMs = 300;
const nats = new TestNats(8);
let nc: NatsConnection;
let buckets = 0;

beforeAll(async () => {
  await nats.start();
  nc = await connect({ servers: nats.url });
});

afterAll(async () => {
  await nc?.close();
  await nats.dispose();
});

const ledger = (index: number): PartitionId => ({ stage: "ledger", index });
const order = (index: number): PartitionId => ({ stage: "order", index });

function newBucket(): string {
  buckets += 1;
  return `LEASES_TEST_${buckets}`;
}

async function openTable(
  node: string,
  bucket: string,
  options: Partial<LeaseTableOptions> = {},
  conn: NatsConnection = nc,
): Promise<LeaseTable> {
  const table = new LeaseTable(conn, { bucket, leaseMs, leaseRenewMs, replicas: 1, node, ...options });
  await table.open();
  return table;
}

/** Polls `attempt` every `everyMs` until it returns non-null or `limitMs` passes. */
async function until<T>(attempt: () => Promise<T | null>, limitMs: number, everyMs = 50): Promise<T | null> {
  const deadline = Date.now() + limitMs;
  while (Date.now() < deadline) {
    const result = await attempt();
    if (result !== null) return result;
    await Bun.sleep(everyMs);
  }
  return null;
}

test("two nodes contend for the same partitions: exactly one acquires each", async () => {
  const bucket = newBucket();
  const [a, b] = await Promise.all([openTable("node-a", bucket), openTable("node-b", bucket)]);
  for (let index = 0; index < 8; index++) {
    const [fromA, fromB] = await Promise.all([a.acquire(ledger(index)), b.acquire(ledger(index))]);
    expect([fromA, fromB].filter((l) => l !== null)).toHaveLength(1);
    const winner = fromA ?? fromB;
    expect(winner?.valid()).toBe(true);
    const owners = await a.owners();
    expect(owners.get(partitionKey(ledger(index)))?.node).toBe(winner?.node as string);
  }
});

test("a holder that renews keeps its lease across several lease periods", async () => {
  const bucket = newBucket();
  const [a, b] = await Promise.all([openTable("node-a", bucket), openTable("node-b", bucket)]);
  const keeper = new LeaseKeeper(a, { onLost: () => expect.unreachable("no lease is lost") });
  const lease = await keeper.acquire(ledger(0));
  expect(lease).not.toBeNull();
  keeper.start();
  const revisions = new Set<number>();
  const endMs = Date.now() + 3 * leaseMs;
  while (Date.now() < endMs) {
    expect(await b.acquire(ledger(0))).toBeNull();
    expect(lease?.valid()).toBe(true);
    revisions.add(lease?.revision as number);
    await Bun.sleep(200);
  }
  await keeper.stop();
  // ≈ 4500 / 300 renewals: the revision moved on many times, and the lease is still this node's.
  expect(revisions.size).toBeGreaterThan(5);
  expect((await a.owners()).get("ledger.0")).toMatchObject({ node: "node-a", revision: lease?.revision });
});

test("a paused holder's lease goes to another node after leaseMs; its renewal then fails, and it was invalid before", async () => {
  const bucket = newBucket();
  const [a, b] = await Promise.all([openTable("node-a", bucket), openTable("node-b", bucket)]);
  const sentMs = a.clock();
  const old = await a.acquire(order(3));
  expect(old).not.toBeNull();
  if (old === null) return;
  // The arithmetic of the fence: valid until (sent + leaseMs − leaseRenewMs).
  expect(old.validUntilMs - sentMs).toBeGreaterThanOrEqual(leaseMs - leaseRenewMs);
  expect(old.validUntilMs - sentMs).toBeLessThan(leaseMs - leaseRenewMs + 100);
  // node-a is paused: nothing renews. node-b tries every 50 ms.
  const taken = await until(async () => {
    const lease = await b.acquire(order(3));
    return lease === null ? null : { lease, atMs: a.clock() };
  }, 4 * leaseMs);
  expect(taken).not.toBeNull();
  if (taken === null) return;
  expect(taken.atMs - sentMs).toBeGreaterThanOrEqual(leaseMs - 50);
  // When node-b got it, node-a's lease had already stopped being valid.
  expect(old.valid(taken.atMs)).toBe(false);
  expect(await a.renew(old)).toBe(false);
  expect(old.ended).toBe("lost");
  expect(old.valid()).toBe(false);
  expect(await b.renew(taken.lease)).toBe(true);
});

test("release lets another node acquire at once (a create over the delete marker)", async () => {
  const bucket = newBucket();
  const [a, b] = await Promise.all([openTable("node-a", bucket), openTable("node-b", bucket)]);
  const lease = await a.acquire(ledger(1));
  expect(lease).not.toBeNull();
  if (lease === null) return;
  expect(await b.acquire(ledger(1))).toBeNull();
  expect(await a.release(lease)).toBe("released");
  expect(lease.valid()).toBe(false);
  expect((await a.owners()).has("ledger.1")).toBe(false);
  const next = await b.acquire(ledger(1));
  expect(next).not.toBeNull();
  expect(next?.revision).toBeGreaterThan(lease.revision);
  expect((await a.owners()).get("ledger.1")?.node).toBe("node-b");
  // Released twice: nothing is sent, the new owner keeps it.
  expect(await a.release(lease)).toBe("not_held");
  expect(await b.renew(next as NonNullable<typeof next>)).toBe(true);
});

test("a release with a stale revision does not delete the new owner's lease", async () => {
  const bucket = newBucket();
  const [a, b] = await Promise.all([openTable("node-a", bucket), openTable("node-b", bucket)]);
  const old = await a.acquire(ledger(2));
  expect(old).not.toBeNull();
  if (old === null) return;
  const next = await until(() => b.acquire(ledger(2)), 4 * leaseMs);
  expect(next).not.toBeNull();
  // node-a wakes up and releases what it believes it holds: the delete carries its old revision.
  expect(await a.release(old)).toBe("not_held");
  const owner = (await b.owners()).get("ledger.2");
  expect(owner).toMatchObject({ node: "node-b", revision: next?.revision });
  expect(await b.renew(next as NonNullable<typeof next>)).toBe(true);
});

test("a renewal whose reply was lost is recognised by its token, not reported lost", async () => {
  const bucket = newBucket();
  const a = await openTable("node-a", bucket);
  const lease = await a.acquire(order(0));
  expect(lease).not.toBeNull();
  if (lease === null) return;
  // Write what node-a's renewal would have written, behind the lease's back: its revision is now stale.
  const kv = await new Kvm(nc).open(bucket);
  const entry = await kv.get(lease.key);
  const landed = await kv.update(lease.key, entry?.string() ?? "", lease.revision);
  expect(await a.renew(lease)).toBe(true);
  expect(lease.revision).toBeGreaterThan(landed);
  // Someone else's write (another token) is a loss.
  const stolen = JSON.stringify({ node: "node-x", token: "other", acquiredAtMs: 0, renewedAtMs: 0 });
  await kv.update(lease.key, stolen, lease.revision);
  expect(await a.renew(lease)).toBe(false);
  expect(lease.ended).toBe("lost");
});

test("heartbeats list the live nodes; one that stops heartbeating disappears after leaseMs", async () => {
  const bucket = newBucket();
  const [a, b, c] = await Promise.all([
    openTable("node-a", bucket),
    openTable("node-b", bucket),
    openTable("node-c", bucket),
  ]);
  await a.heartbeat({ pins: null, http: "http://a:8080", version: "1" });
  await b.heartbeat({ pins: [ledger(0), order(1)] });
  await c.heartbeat({ pins: null });
  const live = await a.liveNodes();
  expect(live.map((n) => n.node)).toEqual(["node-a", "node-b", "node-c"]);
  expect(live[0]).toMatchObject({
    node: "node-a",
    pins: null,
    http: "http://a:8080",
    info: { version: "1" },
  });
  expect(live[1]?.pins).toEqual([ledger(0), order(1)]);
  expect(live[1]?.startedAtMs).toBe(b.startedAtMs);
  // A graceful stop leaves at once.
  await c.leave();
  expect((await a.liveNodes()).map((n) => n.node)).toEqual(["node-a", "node-b"]);
  // node-a keeps heartbeating through its keeper; node-b stops.
  const keeper = new LeaseKeeper(a, { onLost: () => undefined, heartbeat: () => ({ pins: null }) });
  keeper.start();
  const stoppedMs = Date.now();
  const gone = await until(async () => {
    const nodes = (await a.liveNodes()).map((n) => n.node);
    return nodes.includes("node-b") ? null : nodes;
  }, 4 * leaseMs);
  await keeper.stop();
  expect(gone).toEqual(["node-a"]);
  expect(Date.now() - stoppedMs).toBeGreaterThanOrEqual(leaseMs - 400);
});

test("many partitions (2 × 8) are acquired and listed by owners()", async () => {
  const bucket = newBucket();
  const [a, b] = await Promise.all([openTable("node-a", bucket), openTable("node-b", bucket)]);
  const ids = Array.from({ length: 8 }, (_, i) => i);
  const fromA = await Promise.all(ids.map((i) => a.acquire(ledger(i))));
  const fromB = await Promise.all(ids.map((i) => b.acquire(order(i))));
  expect([...fromA, ...fromB].every((l) => l !== null)).toBe(true);
  const owners = await b.owners();
  expect(owners.size).toBe(16);
  for (const l of [...fromA, ...fromB]) {
    expect(owners.get(partitionKey(l?.partition as PartitionId))).toMatchObject({
      node: l?.node,
      revision: l?.revision,
    });
    expect(owners.get(partitionKey(l?.partition as PartitionId))?.ageMs).toBeLessThan(leaseMs);
  }
  expect(await a.release(fromA[0] as NonNullable<(typeof fromA)[0]>)).toBe("released");
  expect((await b.owners()).size).toBe(15);
});

test("the keeper reports a lease another node took (refused renewal) at its next round", async () => {
  const bucket = newBucket();
  const [a, b] = await Promise.all([openTable("node-a", bucket), openTable("node-b", bucket)]);
  const lost: [string, LostReason][] = [];
  const keeper = new LeaseKeeper(a, { onLost: (p, reason) => lost.push([partitionKey(p), reason]) });
  const lease = await keeper.acquire(order(5));
  expect(lease).not.toBeNull();
  // An operator purges the key (as an expiry would): node-b takes it before node-a's next renewal.
  const kv = await new Kvm(nc).open(bucket);
  await kv.purge(lease?.key as string);
  expect(await b.acquire(order(5))).not.toBeNull();
  await keeper.renewAll();
  expect(lost).toEqual([["order.5", "taken"]]);
  expect(keeper.held()).toEqual([]);
  expect(lease?.valid()).toBe(false);
});

test("a keeper cut off from NATS keeps its leases until validUntilMs, then reports them expired", async () => {
  const bucket = newBucket();
  const own = await connect({ servers: nats.url });
  const a = await openTable("node-a", bucket, {}, own);
  const lost: { key: string; reason: LostReason; validAtReport: boolean }[] = [];
  const errors: Error[] = [];
  const keeper = new LeaseKeeper(a, {
    onLost: (p, reason) => lost.push({ key: partitionKey(p), reason, validAtReport: lease?.valid() ?? true }),
    onError: (error) => errors.push(error),
  });
  const lease = await keeper.acquire(ledger(4));
  expect(lease).not.toBeNull();
  keeper.start();
  await Bun.sleep(2 * leaseRenewMs);
  expect(lease?.valid()).toBe(true);
  await own.close(); // every request now fails at once: an outcome the keeper cannot know
  const validUntilMs = lease?.validUntilMs as number;
  await until(async () => (lost.length > 0 ? true : null), 2 * leaseMs);
  await keeper.stop();
  expect(lost).toEqual([{ key: "ledger.4", reason: "expired", validAtReport: false }]);
  expect(a.clock()).toBeGreaterThanOrEqual(validUntilMs);
  expect(errors.length).toBeGreaterThan(0);
  expect(errors[0]?.name).toBe("LeaseRequestError");
});

test("open() raises a bucket's max age that is shorter than leaseMs", async () => {
  const bucket = newBucket();
  await new Kvm(nc).create(bucket, { ttl: 1000, history: 1 });
  await openTable("node-a", bucket);
  const status = await (await new Kvm(nc).open(bucket)).status();
  expect(status.ttl).toBe(leaseMs);
});

test("options that cannot work are refused with the fix", () => {
  const base = { leaseMs, leaseRenewMs, replicas: 1 };
  expect(() => new LeaseTable(nc, { ...base, node: "a.b" })).toThrow(/letters, digits, '_' or '-'/);
  expect(() => new LeaseTable(nc, { ...base, node: "a", leaseRenewMs: 600 })).toThrow(
    /cluster\.leaseRenewMs \(600\) must be at most cluster\.leaseMs \/ 3 \(500\)/,
  );
  expect(() => new LeaseTable(nc, { ...base, node: "a", requestTimeoutMs: 5000 })).toThrow(
    /must be within 1-300 ms/,
  );
});
