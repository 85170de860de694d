import { afterAll, beforeAll, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { DiscardPolicy, jetstream } from "@nats-io/jetstream";
import type { Sluice } from "../../src/sluice.ts";
import { OutboxPublisher } from "../../src/stream/outbox-publisher.ts";
import { streamNames, subjects } from "../../src/stream/subjects.ts";
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

// Inputs and internal hops push back on producers instead of dropping: a full stage stream refuses
// publishes (nothing unapplied is deleted), Sluice applies its backlog, purges what it applied, and takes
// producers again. Sluice's own publishes wait for room instead of failing the process.
const nats = new TestNats(4);
const dataDir = tempDir("backpressure");
let producer: Producer;
const running: Sluice[] = [];

const MiB = 1024 * 1024;
const config = () =>
  testConfig(nats.url, dataDir, {
    streams: { inboundBytesMax: 1 * MiB, appliedHistoryMs: 0, retentionIntervalMs: 200 },
  });

beforeAll(async () => {
  await nats.start();
  producer = await Producer.connect(nats.url);
});

afterAll(async () => {
  for (const s of running) await s.stop();
  await producer?.close();
  await nats.dispose();
  rmSync(dataDir, { recursive: true, force: true });
});

test("a full stage stream refuses producers, drops nothing, and takes them again once Sluice applied its backlog", async () => {
  // Provision, then stop: the backlog piles up while Sluice is down.
  const first = await startSluice(config());
  await first.sluice.stop();
  const jsm = await producer.jsm();
  const ledger = await jsm.streams.info(streamNames.ledger);
  expect(ledger.config.discard).toBe(DiscardPolicy.New);
  expect(ledger.config.max_age).toBe(0);

  const padding = " ".repeat(8 * 1024);
  const skus = ["BP-1", "BP-2", "BP-3", "BP-4", "BP-5", "BP-6"];
  let accepted = 0;
  let refusal: Error | null = null;
  for (let i = 0; refusal === null && i < 1000; i++) {
    const body = `{"type":"received","warehouse":"w1","qty":1}${padding}`;
    try {
      await producer.js.publish(subjects.stockPublic(skus[i % skus.length] as string), body);
      accepted++;
    } catch (error) {
      refusal = error as Error;
    }
  }
  expect(refusal?.message).toBe("maximum bytes exceeded");
  const full = await jsm.streams.info(streamNames.ledger);
  expect(full.state.first_seq).toBe(1);
  expect(full.state.messages).toBe(accepted);

  const { sluice, fatal } = await startSluice(config());
  running.push(sluice);
  await waitFor(async () => {
    let units = 0;
    for (const sku of skus) {
      const r = await getJson(`${httpBase(sluice)}/v1/stock/${sku}`);
      if (r.status === 200) units += r.body.positions.w1.onHand;
    }
    return units === accepted;
  }, `${accepted} units applied`);
  // Applied messages are purged.
  const purged = await waitFor(async () => {
    const info = await jsm.streams.info(streamNames.ledger);
    return info.state.messages === 0 ? info : null;
  }, "applied messages purged");
  expect(purged.state.last_seq).toBe(accepted);
  // And the server gets their bytes back: nats-server 2.9 keeps counting what a purge with a subject filter
  // removed, so the account's storage use would stay ~1 MiB above what its streams hold.
  const account = await jsm.getAccountInfo();
  let held = 0;
  for await (const s of jsm.streams.list()) held += s.state.bytes;
  expect(account.storage - held).toBeLessThan(64 * 1024);
  const ack = await producer.js.publish(
    subjects.stockPublic("BP-1"),
    '{"type":"received","warehouse":"w1","qty":1}',
  );
  expect(ack.stream).toBe(streamNames.ledger);
  expect(fatal).toEqual([]);
});

test("an outbox publish to a full stream waits for room past outbox.publishAttemptsMax, and never fails for it", async () => {
  const jsm = await producer.jsm();
  await jsm.streams.add({ name: "BP_FULL", subjects: ["bp.>"], discard: DiscardPolicy.New, max_bytes: 4096 });
  for (;;) {
    const ok = await producer.js.publish("bp.fill", new Uint8Array(500)).then(
      () => true,
      () => false,
    );
    if (!ok) break;
  }
  const blocked: string[] = [];
  const unblocked: number[] = [];
  const publisher = new OutboxPublisher(
    jetstream(producer.nc),
    {
      publishAttemptsMax: 2,
      publishBackoffMsMax: 50,
      fullRetryMsMax: 50,
      publishInFlightMax: 4,
      requestTimeoutMs: 1000,
    },
    { blocked: (e) => blocked.push(e.detail), unblocked: (e) => unblocked.push(e.waitedMs ?? 0) },
  );
  let done = false;
  const publishing = publisher
    .publish([{ subject: "bp.item", msgId: "bp-1", headers: [], data: new Uint8Array(500) }])
    .finally(() => (done = true));
  await Bun.sleep(1000); // ~20 attempts at the 50 ms cap: far past publishAttemptsMax
  expect(done).toBe(false);
  expect(blocked).toEqual(["maximum bytes exceeded"]);
  await jsm.streams.purge("BP_FULL", { filter: "bp.fill" });
  expect(await publishing).toBeGreaterThan(2);
  expect(unblocked.length).toBe(1);
  await jsm.streams.delete("BP_FULL");
});

test("a publish refused for good is replaced when the caller says how (the router's dead letter)", async () => {
  const jsm = await producer.jsm();
  await jsm.streams.add({ name: "BP_SMALL", subjects: ["bs.>"], max_msg_size: 100 });
  const publisher = new OutboxPublisher(jetstream(producer.nc), {
    publishAttemptsMax: 3,
    publishBackoffMsMax: 50,
    fullRetryMsMax: 50,
    publishInFlightMax: 4,
    requestTimeoutMs: 1000,
  });
  const refusals: string[] = [];
  await publisher.publish(
    [{ subject: "bs.big", msgId: "bs-1", headers: [], data: new Uint8Array(200) }],
    () => false,
    (item, refusal) => {
      refusals.push(refusal);
      return { ...item, subject: "bs.dead", data: new Uint8Array(1) };
    },
  );
  expect(refusals).toEqual(["message_too_large"]);
  const m = await jsm.streams.getMessage("BP_SMALL", { last_by_subj: "bs.dead" });
  expect(m?.data.length).toBe(1);
  // Without a replacement it fails at once, as before.
  await expect(
    publisher.publish([{ subject: "bs.big", msgId: "bs-2", headers: [], data: new Uint8Array(200) }]),
  ).rejects.toThrow(/not published after 3 attempts/);
  await jsm.streams.delete("BP_SMALL");
});
