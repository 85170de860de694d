import { afterAll, beforeAll, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { DiscardPolicy } from "@nats-io/jetstream";
import fc from "fast-check";
import { ensurePartitionConsumer, provisionStreams } from "../../src/stream/provision.ts";
import { encodeToken, skuPartition, streamNames } from "../../src/stream/subjects.ts";
import { Producer, startSluice, TestNats, tempDir, testConfig, testLog } from "../helpers/index.ts";

const nats = new TestNats(8);
const dataDir = tempDir("provision");
let producer: Producer;

beforeAll(async () => {
  await nats.start();
  producer = await Producer.connect(nats.url);
});

afterAll(async () => {
  await producer?.close();
  await nats.dispose();
  rmSync(dataDir, { recursive: true, force: true });
});

test("provisioning is idempotent and refuses a different partition count", async () => {
  const jsm = await producer.jsm();
  const config = testConfig(nats.url, dataDir, { streams: { partitionCount: 8 } });
  await provisionStreams(jsm, config, testLog);
  const first = await jsm.streams.info(streamNames.ledger);
  await provisionStreams(jsm, config, testLog);
  const second = await jsm.streams.info(streamNames.ledger);
  expect(second.created).toBe(first.created);
  expect(second.config.subjects).toEqual(Array.from({ length: 8 }, (_, p) => `sluice.ledger.${p}.>`));
  const names = [];
  for await (const s of jsm.streams.list()) names.push(s.config.name);
  expect(names.sort()).toEqual(Object.values(streamNames).sort());

  const other = testConfig(nats.url, dataDir, { streams: { partitionCount: 4 } });
  await expect(provisionStreams(jsm, other, testLog)).rejects.toThrow(
    /SLUICE_LEDGER has 8 partitions but streams.partitionCount = 4/,
  );
});

test("the partition consumer is created once, kept when in step with the store, reset when not", async () => {
  const jsm = await producer.jsm();
  const config = testConfig(nats.url, dataDir, { streams: { partitionCount: 8 } });
  expect((await ensurePartitionConsumer(jsm, "ledger", 0, config, 0)).cause).toBe("created");
  expect((await ensurePartitionConsumer(jsm, "ledger", 0, config, 0)).cause).toBe("kept");
  const info = await jsm.consumers.info(streamNames.ledger, "ledger-0");
  expect(info.config.filter_subject).toBe("sluice.ledger.0.>");
  expect(info.config.max_ack_pending).toBe(config.consumer.pendingMessagesMax);
  // The store says it applied up to 41 while the consumer never delivered: kept (the store may be ahead
  // after a replay from another process), deliveries below 42 are skipped by the runner.
  expect((await ensurePartitionConsumer(jsm, "ledger", 0, config, 41)).cause).toBe("kept");
  const forced = await ensurePartitionConsumer(jsm, "ledger", 0, config, 41, "delivery_gap");
  expect(forced).toEqual({ reset: true, cause: "delivery_gap", streamSeqStart: 42 });
  const after = await jsm.consumers.info(streamNames.ledger, "ledger-0");
  expect(after.config.opt_start_seq).toBe(42);
});

test("the documented partition rule is the one the server's mapping applies (random ids)", async () => {
  const ids = fc.sample(fc.string({ minLength: 1, maxLength: 40 }), 300);
  ids.push("SKU-1", "a.b", "with space", "ünï", "*", ">");
  const acks = await Promise.all(
    ids.map((id) =>
      producer.js.publish(`sluice.in.stock.${encodeToken(id)}`, "{}", { msgID: `map-${encodeToken(id)}` }),
    ),
  );
  const jsm = await producer.jsm();
  for (let i = 0; i < ids.length; i++) {
    const ack = acks[i];
    if (ack === undefined || ack.duplicate) continue;
    expect(ack.stream).toBe(streamNames.ledger);
    const m = await jsm.streams.getMessage(streamNames.ledger, { seq: ack.seq });
    const partition = Number(m?.subject.split(".")[2]);
    expect(partition).toBe(skuPartition(ids[i] as string, 8));
  }
});

test("start-up refuses a server whose max_payload cannot carry the largest input plus dead-letter headers", async () => {
  const dir = tempDir("payload");
  const config = testConfig(nats.url, dir, {
    streams: { partitionCount: 8, messageBytesMax: 2 * 1024 * 1024 },
  });
  await expect(startSluice(config)).rejects.toThrow(
    /max_payload is 2097152 bytes; streams.messageBytesMax \(2097152\)/,
  );
  rmSync(dir, { recursive: true, force: true });
});

test("streams created with the old policy (oldest dropped, aged out) are updated to refuse when full, never expire", async () => {
  const jsm = await producer.jsm();
  const config = testConfig(nats.url, dataDir, { streams: { partitionCount: 8 } });
  await provisionStreams(jsm, config, testLog);
  for (const name of [streamNames.ledger, streamNames.unrouted]) {
    const info = await jsm.streams.info(name);
    await jsm.streams.update(name, {
      ...info.config,
      discard: DiscardPolicy.Old,
      max_age: 86_400_000_000_000,
    });
  }
  await provisionStreams(jsm, config, testLog);
  for (const name of [streamNames.ledger, streamNames.order, streamNames.unrouted]) {
    const info = await jsm.streams.info(name);
    expect(info.config.discard).toBe(DiscardPolicy.New);
    expect(info.config.max_age).toBe(0);
  }
  // Outputs and dead letters still drop their oldest: a slow reader must not stop the partitions.
  expect((await jsm.streams.info(streamNames.out)).config.discard).toBe(DiscardPolicy.Old);
});
