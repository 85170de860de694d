import { describe, expect, test } from "bun:test";
import { headers as natsHeaders } from "@nats-io/transport-node";
import type { Sluice } from "../../src/sluice.ts";
import { pack } from "../../src/stream/codec.ts";
import { deadLetterHeaders } from "../../src/stream/dead-letter.ts";
import { encodeToken, skuPartition, streamNames, subjects } from "../../src/stream/subjects.ts";
import { getJson, httpBase, type Producer, sluiceFixture, waitFor } from "../helpers/index.ts";

let sluice: Sluice;
let fatal: Error[];
let producer: Producer;
sluiceFixture("pipeline", (f) => {
  ({ sluice, fatal, producer } = f);
});

async function stock(sku: string) {
  return getJson(`${httpBase(sluice)}/v1/stock/${encodeURIComponent(sku)}`);
}

async function waitForVersion(sku: string, version: number) {
  return waitFor(async () => {
    const r = await stock(sku);
    return r.status === 200 && r.body.version >= version ? r.body : null;
  }, `${sku} at version ${version}`);
}

async function dlqMessages(reason: string) {
  const jsm = await producer.jsm();
  const info = await jsm.streams.info(streamNames.dlq);
  const out = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const m = await jsm.streams.getMessage(streamNames.dlq, { seq }).catch(() => null);
    if (m && m.subject === subjects.dlq(reason)) out.push(m);
  }
  return out;
}

describe("ledger pipeline over a real nats-server and LMDB", () => {
  test("received stock is reserved by orders; an order that would oversell is refused", async () => {
    await producer.publishJson(subjects.stockPublic("SKU-A"), { type: "received", warehouse: "w1", qty: 10 });
    await waitForVersion("SKU-A", 1);
    const order = (id: string, qty: number) =>
      producer.publishJson(subjects.orderPublic("order", "shop", id), {
        lines: [{ sku: "SKU-A", qty, price: 5 }],
      });
    await order("o1", 7);
    await waitForVersion("SKU-A", 2);
    await order("o2", 4);
    await order("o3", 3);
    const body = await waitFor(async () => {
      const r = await stock("SKU-A");
      // Three changes: received, reserve 7, reserve 3. The order of 4 (only 3 available) changed nothing.
      return r.status === 200 && r.body.version === 3 ? r.body : null;
    }, "SKU-A at version 3");
    expect(body.positions.w1).toEqual({
      onHand: 10,
      reserved: 10,
      damaged: 0,
      qualityControl: 0,
      safetyStock: 0,
      available: 0,
    });
    expect(body.partition).toBe(skuPartition("SKU-A", 4));
    const o2 = await waitFor(async () => {
      const r = await getJson(`${httpBase(sluice)}/v1/orders/shop/o2`);
      return r.status === 200 && r.body.status !== "pending" ? r.body : null;
    }, "order o2 settled");
    expect(o2.status).toBe("rejected");
    expect(o2.lines[0]).toMatchObject({ state: "rejected", refusal: "insufficient_available" });
    const entries = await getJson(`${httpBase(sluice)}/v1/stock/SKU-A/entries?limit=2`);
    expect(entries.body.entries.map((e: { type: string; delta: object }) => [e.type, e.delta])).toEqual([
      ["received", { onHand: 10 }],
      ["reserved", { reserved: 7 }],
    ]);
    expect(entries.body.entries.map((e: { cause: string }) => e.cause)).toEqual(["received", "order"]);
    expect(entries.body.next).toBe(2);
    const rest = await getJson(`${httpBase(sluice)}/v1/stock/SKU-A/entries?after=2`);
    expect(rest.body.entries.map((e: { ref: string }) => e.ref)).toEqual(["shop.o3/1"]);
    const metrics = await (await fetch(`${httpBase(sluice)}/metrics`)).text();
    expect(metrics).toMatch(
      /sluice_commands_refused_total\{stage="ledger",code="insufficient_available"[^}]*\} 1/,
    );
    const check = await getJson(`${httpBase(sluice)}/v1/ledger/check`);
    expect(check.status).toBe(200);
    expect(check.body.consistent).toBe(true);
  });

  test("malformed input goes to the DLQ with its reason; good input around it is applied", async () => {
    const subject = subjects.stockPublic("SKU-B");
    await producer.publishJson(subject, { type: "received", warehouse: "w1", qty: 5 });
    await producer.js.publish(subject, "{not json");
    await producer.publishJson(subject, { type: "received", warehouse: "w1", qty: -1 });
    await producer.publishJson(subject, { type: "teleport", warehouse: "w1", qty: 1 });
    await producer.publishJson(subject, { type: "received", warehouse: "w1", qty: 1, colour: "red" });
    await producer.publishJson(subject, { type: "received", warehouse: "w1", qty: 2 });
    const body = await waitForVersion("SKU-B", 2);
    expect(body.positions.w1.onHand).toBe(7);

    const decodeFailed = await waitFor(async () => {
      const ms = await dlqMessages("decode_failed");
      return ms.length >= 1 ? ms : null;
    }, "a decode_failed dead letter");
    const dl = decodeFailed.find((m) => m.header.get(deadLetterHeaders.subject).endsWith(".stock.SKU-B"));
    expect(dl).toBeDefined();
    expect(new TextDecoder().decode(dl?.data)).toBe("{not json"); // untouched
    expect(dl?.header.get(deadLetterHeaders.reason)).toBe("decode_failed");
    expect(dl?.header.get(deadLetterHeaders.detail)).toContain("not valid JSON");

    const invalid = await waitFor(async () => {
      const ms = (await dlqMessages("invalid_command")).filter((m) =>
        m.header.get(deadLetterHeaders.subject).endsWith(".stock.SKU-B"),
      );
      return ms.length >= 3 ? ms : null;
    }, "three invalid_command dead letters");
    const details = invalid.map((m) => m.header.get(deadLetterHeaders.detail));
    expect(details.some((d) => d.includes("qty_must_be_positive"))).toBe(true);
    expect(details.some((d) => d.includes("type must be one of"))).toBe(true);
    expect(details.some((d) => d.includes('unknown field "colour"'))).toBe(true);
    expect(fatal).toEqual([]);
  });

  test("msgpack payloads are accepted by Content-Type", async () => {
    const h = natsHeaders();
    h.set("Content-Type", "application/msgpack");
    await producer.js.publish(
      subjects.stockPublic("SKU-MP"),
      pack({ type: "received", warehouse: "w2", qty: 3 }),
      {
        headers: h,
      },
    );
    const body = await waitForVersion("SKU-MP", 1);
    expect(body.positions.w2.onHand).toBe(3);
  });

  test("ids that are not subject tokens travel ~encoded and come back intact", async () => {
    const sku = "ACME 12.5 mm *bolt* > nut ~ ünïcode 50%25off";
    const token = encodeToken(sku);
    expect(token.startsWith("~")).toBe(true);
    await producer.publishJson(`sluice.in.stock.${token}`, {
      type: "received",
      warehouse: "wh.central",
      qty: 4,
    });
    const body = await waitForVersion(sku, 1);
    expect(body.sku).toBe(sku);
    expect(body.positions["wh.central"].onHand).toBe(4);
  });

  test("a message on another partition's subject is refused: one writer per SKU", async () => {
    const owner = skuPartition("SKU-W", 4);
    const wrong = (owner + 1) % 4;
    await producer.publishJson(subjects.stockPartitioned(wrong, "SKU-W"), {
      type: "received",
      warehouse: "w1",
      qty: 1,
    });
    const dl = await waitFor(async () => {
      const ms = await dlqMessages("wrong_partition");
      return ms.find((m) => m.header.get(deadLetterHeaders.subject).endsWith("SKU-W")) ?? null;
    }, "a wrong_partition dead letter");
    expect(dl.header.get(deadLetterHeaders.detail)).toContain(`belongs to partition ${owner}`);
    expect((await stock("SKU-W")).status).toBe(404);
  });

  test("a producer may publish to the partitioned subject itself (documented hash)", async () => {
    const p = skuPartition("SKU-P", 4);
    await producer.publishJson(subjects.stockPartitioned(p, "SKU-P"), {
      type: "received",
      warehouse: "w1",
      qty: 6,
    });
    expect((await waitForVersion("SKU-P", 1)).positions.w1.onHand).toBe(6);
  });

  test("an inbound subject no mapping claims is dead-lettered by the unrouted router", async () => {
    const ack = await producer.js.publish("sluice.in.stock.has.dots", '{"type":"received"}');
    expect(ack.stream).toBe(streamNames.unrouted);
    const dl = await waitFor(async () => {
      const ms = await dlqMessages("bad_subject");
      return ms.find((m) => m.header.get(deadLetterHeaders.subject) === "sluice.in.stock.has.dots") ?? null;
    }, "a bad_subject dead letter");
    expect(new TextDecoder().decode(dl.data)).toBe('{"type":"received"}');
  });

  test("malformed internal envelopes are dead-lettered; the partitions keep running", async () => {
    const h = natsHeaders();
    h.set("Content-Type", "application/msgpack");
    const bad = [
      ["sluice.ledger.0.cmd.1", { items: [{ kind: "reserve", sku: "X" }] }],
      [
        "sluice.ledger.1.cmd.1",
        { items: [{ kind: "teleport", ref: { orderKey: "a.b", lineId: "1" }, sku: "X", attempt: 1 }] },
      ],
      ["sluice.ledger.2.items.import", { items: [{ command: { type: "received" } }] }],
      [
        "sluice.order.3.result.0",
        { items: [{ kind: "reserved", ref: { orderKey: "a.b" }, sku: "X", attempt: 1 }] },
      ],
      ["sluice.ledger.3.cmd.0", { nothing: true }],
    ] as const;
    for (const [subject, body] of bad) await producer.js.publish(subject, pack(body), { headers: h });
    const dead = await waitFor(async () => {
      const ms = await dlqMessages("invalid_command");
      const mine = ms.filter((m) =>
        bad.some(([subject]) => m.header.get(deadLetterHeaders.subject) === subject),
      );
      return mine.length === bad.length ? mine : null;
    }, "five invalid_command dead letters");
    expect(dead.map((m) => m.header.get(deadLetterHeaders.detail)).join(" | ")).toContain("envelope");
    await producer.publishJson(subjects.stockPublic("SKU-AFTER"), {
      type: "received",
      warehouse: "w1",
      qty: 2,
    });
    expect((await waitForVersion("SKU-AFTER", 1)).positions.w1.onHand).toBe(2);
    expect(fatal).toEqual([]);
  });

  test("health, readiness and metrics", async () => {
    expect((await getJson(`${httpBase(sluice)}/healthz`)).status).toBe(200);
    const ready = await getJson(`${httpBase(sluice)}/readyz`);
    expect(ready.status).toBe(200);
    expect(ready.body.checks).toEqual({ nats_connected: true, consumers_running: true, lmdb_open: true });
    const metrics = await (await fetch(`${httpBase(sluice)}/metrics`)).text();
    for (const name of [
      "sluice_messages_applied_total",
      "sluice_batch_size_messages_bucket",
      "sluice_apply_duration_seconds_bucket",
      "sluice_commit_duration_seconds_bucket",
      "sluice_dead_letters_total",
      "sluice_partition_lag_messages",
      "process_resident_memory_bytes",
    ]) {
      expect(metrics).toContain(name);
    }
    expect((await getJson(`${httpBase(sluice)}/v1/stock/NEVER-SEEN`)).status).toBe(404);
    expect((await getJson(`${httpBase(sluice)}/v1/stock/SKU-A/entries?limit=0`)).status).toBe(400);
    expect((await getJson(`${httpBase(sluice)}/nope`)).status).toBe(404);
  });
});

describe("ids at their limits", () => {
  test("an order whose ids are too long or carry control characters is dead-lettered; orders beside it go through", async () => {
    const long = "o".repeat(300);
    await producer.publishJson(subjects.orderPublic("order", "shop", long), {
      lines: [{ sku: "SKU-LIM", qty: 1 }],
    });
    await producer.publishJson(subjects.orderPublic("order", "shop", "nul\u0000id"), {
      lines: [{ sku: "SKU-LIM", qty: 1 }],
    });
    await producer.publishJson(subjects.orderPublic("order", "shop", "ok-lim"), {
      lines: [{ sku: "SKU-LIM", qty: 1 }],
    });
    const details = await waitFor(async () => {
      const ms = (await dlqMessages("invalid_command")).map((m) => m.header.get(deadLetterHeaders.detail));
      const mine = ms.filter((d) => d.startsWith("orderId"));
      return mine.length >= 2 ? mine : null;
    }, "two invalid_command dead letters for order ids");
    expect(details).toContain("orderId must be at most 256 bytes");
    expect(details).toContain("orderId must not contain control characters");
    const ok = await waitFor(async () => {
      const r = await getJson(`${httpBase(sluice)}/v1/orders/shop/ok-lim`);
      return r.status === 200 && r.body.status !== "pending" ? r.body : null;
    }, "the valid order settled");
    expect(ok.lines[0].refusal).toBe("insufficient_available"); // no stock of SKU-LIM anywhere
    expect(fatal).toEqual([]);
  });
});
