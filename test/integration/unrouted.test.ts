import { expect, test } from "bun:test";
import { headers as natsHeaders } from "@nats-io/transport-node";
import type { Sluice } from "../../src/sluice.ts";
import { publishedBytes } from "../../src/stream/outbox-publisher.ts";
import { stageMessageBytesMax } from "../../src/stream/provision.ts";
import { routedIdHeader, streamNames, subjects } from "../../src/stream/subjects.ts";
import { originalSubjectHeader } from "../../src/stream/unrouted-router.ts";
import { getJson, httpBase, type Producer, sluiceFixture, waitFor } from "../helpers/index.ts";

// An operator's nats-server without Sluice's subject mappings: public subjects land in SLUICE_UNROUTED and
// the router partitions them. Everything still arrives, in order per SKU, exactly once.
let sluice: Sluice;
let producer: Producer;
sluiceFixture(
  "unrouted",
  (f) => {
    ({ sluice, producer } = f);
  },
  // Header room at its smallest (3 × idBytesMax + 512 ≤ headerBytesMax): a long subject can outgrow it.
  { mappings: false, overrides: { streams: { headerBytesMax: 1024 }, ledger: { idBytesMax: 160 } } },
);

test("without server mappings, public inbound subjects are routed to their partition and applied in order", async () => {
  const skus = ["U-1", "U-2", "U-3", "U-4", "U-5"];
  for (let i = 0; i < 20; i++) {
    for (const sku of skus) {
      const ack = await producer.publishJson(subjects.stockPublic(sku), {
        type: "received",
        warehouse: "w1",
        qty: i + 1,
      });
      expect(ack.stream).toBe(streamNames.unrouted);
    }
  }
  // take everything that was received (1 + … + 20 = 210) away: only possible if every receipt came first,
  // otherwise the adjust is refused (adjust_below_committed) and dead-lettered.
  for (const sku of skus) {
    await producer.publishJson(subjects.stockPublic(sku), { type: "adjust", warehouse: "w1", qty: -210 });
  }
  for (const sku of skus) {
    const body = await waitFor(async () => {
      const r = await getJson(`${httpBase(sluice)}/v1/stock/${sku}`);
      return r.status === 200 && r.body.version === 21 ? r.body : null;
    }, `${sku} at version 21`);
    expect(body.positions.w1.onHand).toBe(0);
  }
  const jsm = await producer.jsm();
  const ledger = await jsm.streams.info(streamNames.ledger);
  expect(ledger.state.messages).toBe(105);
  const first = await jsm.streams.getMessage(streamNames.ledger, { seq: ledger.state.first_seq });
  expect(first?.header.get(originalSubjectHeader)).toMatch(/^sluice\.in\.stock\.U-\d$/);
});

test("a malformed inbound subject is dead-lettered, not routed", async () => {
  await producer.publishJson("sluice.in.stok.U-1", { type: "received", warehouse: "w1", qty: 1 });
  const jsm = await producer.jsm();
  const m = await waitFor(
    () =>
      jsm.streams
        .getMessage(streamNames.dlq, { last_by_subj: subjects.dlq("bad_subject") })
        .catch(() => null),
    "a bad_subject dead letter",
  );
  expect(m.header.get("Sluice-Source-Subject")).toBe("sluice.in.stok.U-1");
  expect(m.header.get("Sluice-Detail")).toContain("expected sluice.in.stock.<sku>");
});

test("a routed copy published again after the duplicate window is applied once", async () => {
  await producer.publishJson(subjects.stockPublic("U-DUP"), { type: "received", warehouse: "w1", qty: 3 });
  const first = await waitFor(async () => {
    const r = await getJson(`${httpBase(sluice)}/v1/stock/U-DUP`);
    return r.status === 200 ? r.body : null;
  }, "U-DUP applied");
  expect(first.positions.w1.onHand).toBe(3);
  // What the router published, as a crash-and-late-restart would publish it again: same name, new msg id.
  const jsm = await producer.jsm();
  const info = await jsm.streams.info(streamNames.ledger);
  let copy = null;
  for (let seq = info.state.last_seq; seq >= info.state.first_seq && copy === null; seq--) {
    const m = await jsm.streams.getMessage(streamNames.ledger, { seq });
    if (m?.subject.endsWith(".stock.U-DUP")) copy = m;
  }
  expect(copy?.header.get(routedIdHeader)).toMatch(/^\d+:\d+:0$/);
  const h = natsHeaders();
  for (const [k, vs] of copy?.header ?? []) for (const v of vs) h.append(k, v);
  const again = await producer.js.publish(copy?.subject as string, copy?.data, {
    headers: h,
    msgID: "late-copy",
  });
  expect(again.duplicate).toBe(false);
  await producer.publishJson(subjects.stockPublic("U-DUP"), { type: "received", warehouse: "w1", qty: 1 });
  const after = await waitFor(async () => {
    const r = await getJson(`${httpBase(sluice)}/v1/stock/U-DUP`);
    return r.body.version === 2 ? r.body : null;
  }, "the next receipt applied");
  expect(after.positions.w1.onHand).toBe(4); // 3 + 1: the late copy changed nothing
});

/** A stock receipt whose message (payload and the producer's headers) is exactly `bytes` long. */
function receiptOf(bytes: number, qty: number): string {
  const body = JSON.stringify({ type: "received", warehouse: "w1", qty });
  const overhead = publishedBytes({
    subject: "",
    msgId: "",
    headers: [["Content-Type", "application/json"]],
    data: new Uint8Array(0),
  });
  // Trailing spaces are JSON whitespace: the command is the same, only bigger.
  return body + " ".repeat(bytes - overhead - body.length);
}

test("a message at streams.messageBytesMax − 50 bytes is routed and applied: its copy fits the stage stream", async () => {
  const c = sluice.config;
  const jsm = await producer.jsm();
  const ledger = await jsm.streams.info(streamNames.ledger);
  const unrouted = await jsm.streams.info(streamNames.unrouted);
  expect(unrouted.config.max_msg_size).toBe(c.streams.messageBytesMax);
  expect(ledger.config.max_msg_size).toBe(stageMessageBytesMax(c));
  const h = natsHeaders();
  h.set("Content-Type", "application/json");
  const accepted = await producer.js.publish(
    subjects.stockPublic("U-BIG"),
    receiptOf(c.streams.messageBytesMax - 50, 2),
    { headers: h },
  );
  expect(accepted.stream).toBe(streamNames.unrouted);
  await producer.publishJson(subjects.stockPublic("U-BIG"), { type: "received", warehouse: "w1", qty: 1 });
  const body = await waitFor(async () => {
    const r = await getJson(`${httpBase(sluice)}/v1/stock/U-BIG`);
    return r.status === 200 && r.body.version === 2 ? r.body : null;
  }, "both receipts applied");
  expect(body.positions.w1.onHand).toBe(3);
});

test("a copy the stage stream would refuse is dead-lettered (message_too_large) and the router moves on", async () => {
  const c = sluice.config;
  // 1100 characters of subject in the copy's Sluice-Original-Subject header: more than streams.headerBytesMax.
  const longSku = `U-LONG-${"x".repeat(1100)}`;
  const h = natsHeaders();
  h.set("Content-Type", "application/json");
  const accepted = await producer.js.publish(
    subjects.stockPublic(longSku),
    receiptOf(c.streams.messageBytesMax - 50, 5),
    { headers: h },
  );
  expect(accepted.stream).toBe(streamNames.unrouted);
  await producer.publishJson(subjects.stockPublic("U-AFTER"), { type: "received", warehouse: "w1", qty: 1 });
  const jsm = await producer.jsm();
  const m = await waitFor(
    () =>
      jsm.streams
        .getMessage(streamNames.dlq, { last_by_subj: subjects.dlq("message_too_large") })
        .catch(() => null),
    "a message_too_large dead letter",
  );
  expect(m.header.get("Sluice-Source-Subject")).toBe(subjects.stockPublic(longSku));
  expect(m.header.get("Sluice-Detail")).toContain("streams.headerBytesMax");
  const after = await waitFor(async () => {
    const r = await getJson(`${httpBase(sluice)}/v1/stock/U-AFTER`);
    return r.status === 200 ? r.body : null;
  }, "the next message routed and applied");
  expect(after.positions.w1.onHand).toBe(1);
});

test("SLUICE_UNROUTED refuses a message over streams.messageBytesMax, saying so", async () => {
  const c = sluice.config;
  const h = natsHeaders();
  h.set("Content-Type", "application/json");
  await expect(
    producer.js.publish(subjects.stockPublic("U-TOO-BIG"), receiptOf(c.streams.messageBytesMax + 1, 1), {
      headers: h,
    }),
  ).rejects.toThrow("message size exceeds maximum allowed");
});
