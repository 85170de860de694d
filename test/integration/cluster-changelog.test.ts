import { afterAll, beforeAll, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { ensureLogStream, type TakeoverPort, takeOver } from "../../src/cluster/takeover.ts";
import type { BatchWrite } from "../../src/store/index.ts";
import { PartitionStore } from "../../src/store/partition-store.ts";
import { FencedError } from "../../src/stream/fenced.ts";
import { OutboxPublisher } from "../../src/stream/outbox-publisher.ts";
import { TestNats, tempDir } from "../helpers/index.ts";

// The changelog on a real nats-server: a new owner takes a partition over from the log alone, its marker
// fences the old owner (whose next record JetStream refuses, so nothing of that commit leaves), and a third
// copy folded from the log ends equal to the new owner's.

const nats = new TestNats(4);
const dirs: string[] = [];
let nc: NatsConnection;

const identity = { stage: "ledger", partition: 1, partitionCount: 4 };
function openStore(dir: string): PartitionStore {
  return PartitionStore.open(dir, identity, { mapBytesMax: 64 * 1024 * 1024, tables: ["skus"] });
}
function newDir(): string {
  const d = tempDir("changelog-nats");
  dirs.push(d);
  return join(d, "p");
}

beforeAll(async () => {
  await nats.start();
  nc = await connect({ servers: nats.url });
  await ensureLogStream(await jetstreamManager(nc), {
    bytesMax: 64 * 1024 * 1024,
    replicas: 1,
    duplicateWindowMs: 60_000,
    messageBytesMax: 1024 * 1024,
  });
  await (await jetstreamManager(nc)).streams.add({ name: "TEST_OUT", subjects: ["test.out"] });
});

afterAll(async () => {
  await nc?.close();
  await nats.dispose();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const put = (key: string, n: number): BatchWrite => ({
  ops: [{ op: "put", table: "skus", key, value: { n } }],
  outbox: [{ subject: "test.out", msgId: "", headers: [], data: new TextEncoder().encode(`{"n":${n}}`) }],
  streamSeqLastApplied: null,
});

async function port(dir: string): Promise<TakeoverPort> {
  return {
    js: jetstream(nc),
    jsm: await jetstreamManager(nc),
    node: "test",
    openLocal: () => null,
    wipeLocal: async () => undefined,
    restore: async () => null,
    openFresh: () => openStore(dir),
    logPartBytesMax: 200, // records split into several parts
    read: { fetchCountMax: 100, fetchWaitMs: 1000, deadlineMs: Date.now() + 20_000 },
    markerAttemptsMax: 3,
  };
}

test("a takeover from the log fences the old writer; a copy folded from the log equals the new writer", async () => {
  const js = jetstream(nc);
  const publisher = new OutboxPublisher(js, {
    publishAttemptsMax: 3,
    publishBackoffMsMax: 50,
    publishInFlightMax: 4,
    fullRetryMsMax: 50,
    requestTimeoutMs: 2000,
  });
  const first = await takeOver("ledger", 1, await port(newDir()));
  expect(first.how).toBe("fresh");
  const old = first.store;
  const fenceOf = (s: PartitionStore) => ({ fenced: () => false, chain: s.logChain });
  for (let i = 0; i < 5; i++) {
    const { items } = await old.commit(put(`k${i}`, i));
    await publisher.publish(items, () => false, null, fenceOf(old));
  }
  // A second node takes over from the log alone: it holds what the old writer logged.
  const second = await takeOver("ledger", 1, await port(newDir()));
  expect(second.how).toBe("fresh");
  expect(second.applied).toBe(5);
  const next = second.store;
  expect(next.get<{ n: number }>("skus", "k4")?.n).toBe(4);
  // The old writer, unaware, commits once more: its record is refused and none of the commit's outputs leave.
  const late = await old.commit(put("k4", 99));
  const jsm = await jetstreamManager(nc);
  const count = async () =>
    (await jsm.streams.info("SLUICE_LOG")).state.messages +
    (await jsm.streams.info("TEST_OUT")).state.messages;
  const before = await count();
  await expect(publisher.publish(late.items, () => false, null, fenceOf(old))).rejects.toBeInstanceOf(
    FencedError,
  );
  expect(await count()).toBe(before);
  for (let i = 5; i < 8; i++) {
    const { items } = await next.commit(put(`k${i}`, i));
    await publisher.publish(items, () => false, null, fenceOf(next));
  }
  // A third copy from the log: the new writer's state, not the fenced one's.
  const third = await takeOver("ledger", 1, await port(newDir()));
  const copy = third.store;
  expect(copy.commitSeq()).toBe(next.commitSeq());
  expect(copy.get<{ n: number }>("skus", "k4")?.n).toBe(4);
  expect(copy.get<{ n: number }>("skus", "k7")?.n).toBe(7);
  const rows = (s: PartitionStore) => s.range("skus");
  expect(rows(copy)).toEqual(rows(next));
  for (const s of [old, next, copy]) await s.close();
}, 30_000);
