// Sluice on a JetStream cluster (issue 12 groundwork): replicated streams survive losing a node, a lost node
// catches up, provisioning places every Sluice stream on `streams.replicas` peers, and the operator's
// script brings a local cluster up and down.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import {
  AckPolicy,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Logger } from "../../src/log/index.ts";
import { ProvisionError, provisionStreams } from "../../src/stream/provision.ts";
import { streamNames, subjectMappings } from "../../src/stream/subjects.ts";
import { tempDir, testConfig, waitFor } from "../helpers/index.ts";
import { TestNatsCluster } from "../helpers/nats-cluster.ts";

const stream = "REPLICATED";
const consumerName = "reader";
const msgCountPerPhase = 100;
/** Redelivery of what a dead consumer leader handed out but never saw acked; short, so the test sees it. */
const ackWaitNs = 2_000 * 1_000_000;
/** Publishes and reads retry across a leader election, which takes a few seconds at most. */
const failoverMsMax = 20_000;
/** The client's floor for a pull request's expiry. */
const fetchExpiresMs = 1000;
/** One API request or publish ack; a request to a dead leader fails after this and is retried. */
const requestTimeoutMs = 2000;
const retryPauseMs = 50;

let cluster: TestNatsCluster;
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;
/** Payloads JetStream acked, and payloads the durable consumer read (and acked). */
const published = new Set<string>();
const read = new Set<string>();
let killed = -1;

beforeAll(async () => {
  cluster = await TestNatsCluster.start({ nodes: 3, partitionCount: 4 });
  // Every URL: when the node it talks to dies, the client moves to another.
  nc = await connect({ servers: cluster.urls, reconnectTimeWait: retryPauseMs, maxReconnectAttempts: -1 });
  js = jetstream(nc, { timeout: requestTimeoutMs });
  jsm = await jetstreamManager(nc, { timeout: requestTimeoutMs });
}, 30_000);

afterAll(async () => {
  await nc?.close();
  await cluster?.dispose();
});

/** Publishes until JetStream acks; the message id makes a retry of a stored publish a duplicate, not a copy. */
async function publishAcked(payload: string): Promise<void> {
  const deadline = Date.now() + failoverMsMax;
  for (;;) {
    try {
      await js.publish(`repl.${payload}`, payload, { msgID: payload });
      published.add(payload);
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await Bun.sleep(retryPauseMs);
    }
  }
}

/** Reads with the durable consumer until it has seen `count` distinct payloads; retries across failover. */
async function readUntil(count: number): Promise<void> {
  const deadline = Date.now() + failoverMsMax;
  let lastError: unknown = null;
  while (read.size < count) {
    if (Date.now() > deadline) {
      throw new Error(`read ${read.size} of ${count} within ${failoverMsMax} ms (last error: ${lastError})`);
    }
    try {
      const consumer = await js.consumers.get(stream, consumerName);
      const batch = await consumer.fetch({ max_messages: msgCountPerPhase, expires: fetchExpiresMs });
      for await (const m of batch) {
        // Acked before counted: a payload counts as read only once its ack is confirmed.
        await m.ackAck();
        read.add(m.string());
      }
    } catch (error) {
      // The consumer's leader may be gone until the election: ask again.
      lastError = error;
      await Bun.sleep(retryPauseMs);
    }
  }
}

async function publishPhase(phase: string): Promise<void> {
  for (let i = 0; i < msgCountPerPhase; i++) await publishAcked(`${phase}-${i}`);
}

test("a stream on three replicas takes publishes and a durable pull consumer reads them", async () => {
  await jsm.streams.add({ name: stream, subjects: ["repl.>"], num_replicas: 3 });
  await jsm.consumers.add(stream, {
    durable_name: consumerName,
    ack_policy: AckPolicy.Explicit,
    ack_wait: ackWaitNs,
  });
  await publishPhase("a");
  await readUntil(msgCountPerPhase);
  const info = await jsm.streams.info(stream);
  expect(info.config.num_replicas).toBe(3);
  expect(info.cluster?.replicas?.length).toBe(2);
  expect(info.state.messages).toBe(msgCountPerPhase);
  expect([...read].sort()).toEqual([...published].sort());
}, 20_000);

test("after SIGKILL of the stream leader, publishes and reads go on and no acked message is lost", async () => {
  const leader = (await jsm.streams.info(stream)).cluster?.leader;
  expect(leader).toBeString();
  killed = cluster.indexOf(leader as string);
  // Killed while a phase is being published: usually a publish is in flight when the leader goes.
  const publishing = publishPhase("b");
  await waitFor(() => published.size >= msgCountPerPhase + 10, "publishes before the kill");
  await cluster.kill(killed);
  await publishing;
  await publishPhase("c");
  await readUntil(3 * msgCountPerPhase);
  expect(published.size).toBe(3 * msgCountPerPhase);
  expect([...read].sort()).toEqual([...published].sort());
  const info = await jsm.streams.info(stream);
  expect(info.cluster?.leader).not.toBe(leader);
  // Message ids kept a retried publish from becoming a second copy.
  expect(info.state.messages).toBe(3 * msgCountPerPhase);
}, 40_000);

type StreamDetail = { name: string; state: { messages: number; last_seq: number } };

/** Node i's own copy of the test stream, as its monitoring port reports it: not the leader's view. */
async function localCopy(i: number): Promise<StreamDetail | undefined> {
  const jsz = (await cluster.monitor(i, "/jsz?accounts=true&streams=true")) as {
    account_details?: { stream_detail?: StreamDetail[] }[];
  } | null;
  return jsz?.account_details?.flatMap((a) => a.stream_detail ?? []).find((s) => s.name === stream);
}

/** Waits until node i holds every message the stream holds, then checks it ends where the stream ends. */
async function expectCaughtUp(i: number, what: string): Promise<void> {
  const info = await jsm.streams.info(stream);
  const copy = await waitFor(
    async () => ((await localCopy(i))?.state.messages === info.state.messages ? localCopy(i) : null),
    what,
    failoverMsMax,
  );
  expect(copy.state.last_seq).toBe(info.state.last_seq);
  await waitFor(
    async () => (await jsm.streams.info(stream)).cluster?.replicas?.every((r) => r.current),
    "every replica current",
    failoverMsMax,
  );
}

test("the killed node restarts and catches up", async () => {
  expect(killed).toBeGreaterThanOrEqual(0);
  await cluster.restart(killed);
  await expectCaughtUp(killed, "the restarted node's copy of the stream");
}, 40_000);

test("a frozen follower does not hold up publishes, and catches up once continued", async () => {
  const leader = cluster.indexOf((await jsm.streams.info(stream)).cluster?.leader as string);
  // Not the node this client talks to: a frozen server keeps the socket open, and the client would only
  // notice after its ping timeouts (minutes), which is a client matter, not the cluster's.
  const connected = cluster.urls.findIndex((u) => u.endsWith(`:${nc.getServer().split(":").at(-1)}`));
  expect(connected).toBeGreaterThanOrEqual(0);
  const follower = [0, 1, 2].find((i) => i !== leader && i !== connected) as number;
  cluster.stop(follower);
  try {
    // Two of three replicas are a quorum: acks keep coming while the third is frozen.
    await publishPhase("d");
  } finally {
    cluster.cont(follower);
  }
  await cluster.waitReady();
  await expectCaughtUp(follower, "the continued node's copy of the stream");
  await readUntil(4 * msgCountPerPhase);
  expect([...read].sort()).toEqual([...published].sort());
}, 40_000);

test("provisioning places every Sluice stream and the rules bucket on streams.replicas peers", async () => {
  const dataDir = tempDir("cluster-provision");
  const lines: string[] = [];
  const log = new Logger("info", {}, (line) => lines.push(line));
  const config = (replicaCount: number) =>
    testConfig(cluster.url, dataDir, { streams: { replicas: replicaCount } });
  try {
    // Made at one replica first, as a single-server install would have them, then scaled by an update.
    await provisionStreams(jsm, config(1), log);
    await new Kvm(nc).create(config(1).routing.rulesBucket, { replicas: 1 });
    const updated = () => lines.filter((l) => l.includes('"stream updated"'));
    lines.length = 0;
    await provisionStreams(jsm, config(3), log);
    const names = [...Object.values(streamNames), `KV_${config(3).routing.rulesBucket}`];
    expect(updated().length).toBe(names.length);
    for (const name of names) {
      expect((await jsm.streams.info(name)).config.num_replicas).toBe(3);
      // Right after the scale the peer set is still moving (a leader change may list a third peer).
      await waitFor(
        async () => (await jsm.streams.info(name)).cluster?.replicas?.length === 2,
        `${name} led by one server with two peers`,
        failoverMsMax,
      );
    }
    // Once scaled, a start finds nothing to change: no update each time.
    lines.length = 0;
    await provisionStreams(jsm, config(3), log);
    expect(updated()).toEqual([]);
    // More replicas than servers: refused with the setting to change.
    const refusal = await provisionStreams(jsm, config(5), log).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(ProvisionError);
    expect(String(refusal)).toMatch(/needs 5 replicas .* set streams.replicas to at most/);
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}, 40_000);

/** A client port base with BASE+i, BASE+100+i and BASE+200+i free for three nodes (the script's layout). */
function freePortBase(): number {
  const nodeCount = 3;
  const attemptsMax = 50;
  for (let attempt = 0; attempt < attemptsMax; attempt++) {
    // Below Linux's ephemeral range (32768+), so outgoing connections do not take them meanwhile.
    const base = 20_000 + Math.floor(Math.random() * 10_000);
    const ports = [0, 100, 200].flatMap((offset) =>
      Array.from({ length: nodeCount }, (_, i) => base + offset + i),
    );
    if (ports.every(canListen)) return base;
  }
  throw new Error(`no free port base for the cluster script in ${attemptsMax} tries`);
}

function canListen(port: number): boolean {
  try {
    Bun.serve({ hostname: "127.0.0.1", port, fetch: () => new Response() }).stop(true);
    return true;
  } catch {
    return false;
  }
}

async function script(...args: string[]) {
  const path = join(import.meta.dir, "..", "..", "scripts", "nats-cluster.sh");
  const child = Bun.spawn([path, ...args], { stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  return { stdout, stderr, code };
}

test("scripts/nats-cluster.sh brings a cluster up, reports it and takes it down", async () => {
  const dir = join(tempDir("cluster-script"), "cluster");
  const base = freePortBase();
  try {
    const up = await script("up", "--nodes", "3", "--dir", dir, "--port", String(base));
    expect({ code: up.code, stderr: up.stderr }).toEqual({ code: 0, stderr: expect.any(String) });
    const urls = [0, 1, 2].map((i) => `nats://127.0.0.1:${base + i}`).join(",");
    expect(up.stdout.trim()).toBe(urls);
    expect(readFileSync(join(dir, "urls"), "utf8").trim()).toBe(urls);
    const conf = readFileSync(join(dir, "n1", "nats-server.conf"), "utf8");
    for (const [from, to] of Object.entries(subjectMappings(4))) {
      expect(conf).toContain(`${JSON.stringify(from)}: ${JSON.stringify(to)}`);
    }

    const status = await script("status", "--dir", dir);
    expect(status.code).toBe(0);
    expect(status.stdout.match(/ up \(pid \d+\)/g)?.length).toBe(3);
    expect(status.stdout).toMatch(/meta leader: n[123]/);

    const down = await script("down", "--dir", dir, "--clean");
    expect(down.code).toBe(0);
    expect(existsSync(dir)).toBe(false);
    expect(canListen(base)).toBe(true);
  } finally {
    await script("down", "--dir", dir, "--clean");
    rmSync(join(dir, ".."), { recursive: true, force: true });
  }
}, 20_000);
