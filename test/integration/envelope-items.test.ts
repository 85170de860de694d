import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { headers as natsHeaders } from "@nats-io/transport-node";
import type { Order } from "../../src/domain/orders/index.ts";
import { pack, unpack } from "../../src/stream/codec.ts";
import { deadLetterHeaders } from "../../src/stream/dead-letter.ts";
import { orderKey, orderPartition, streamNames, subjects } from "../../src/stream/subjects.ts";
import { waitFor } from "../helpers/index.ts";
import { Lifecycle, skuIn, type TappedMessage } from "../helpers/lifecycle.ts";

// One bad item of an internal envelope is dead-lettered alone (its own bytes, its index, its source); the
// other items of the envelope apply. Real nats-server, real LMDB, a real Sluice.

let h: Lifecycle;

beforeAll(async () => {
  h = await Lifecycle.start("envelope-items", [{ id: "*" }]);
});

afterAll(async () => {
  await h?.dispose();
});

/** Publishes a msgpack envelope as a stage would; returns its stream sequence. */
async function publishEnvelope(subject: string, items: unknown[]): Promise<number> {
  const hs = natsHeaders();
  hs.set("Content-Type", "application/msgpack");
  return (await h.producer.js.publish(subject, pack({ items }), { headers: hs })).seq;
}

/** The dead letters of one source message, by item index. */
function deadLettersOf(stream: string, seq: number): TappedMessage[] {
  return h.dlq.messages.filter(
    (m) => m.headers[deadLetterHeaders.stream] === stream && m.headers[deadLetterHeaders.seq] === String(seq),
  );
}

function expectAlone(m: TappedMessage | undefined, reason: string, index: number, item: unknown): void {
  expect(m?.subject).toBe(subjects.dlq(reason));
  expect(m?.headers[deadLetterHeaders.reason]).toBe(reason);
  expect(m?.headers[deadLetterHeaders.item]).toBe(String(index));
  expect(m?.headers["Content-Type"]).toBe("application/msgpack");
  expect(unpack(m?.data as Uint8Array)).toEqual(item); // the item alone, never its neighbours
}

const byIndex = (ms: TappedMessage[], index: number) =>
  ms.find((m) => m.headers[deadLetterHeaders.item] === String(index));

describe("one bad item never sinks its envelope", () => {
  test("line requests: the valid ones reserve; each bad one is a dead letter of its own", async () => {
    const sku = skuIn("EI-R", 1);
    const other = skuIn("EI-R", 2);
    await h.receive(sku, "w1", 10);
    await h.waitPosition(sku, "w1", { onHand: 10 });
    const reserve = (orderId: string, qty: number, s = sku) => ({
      kind: "reserve",
      ref: { orderKey: orderKey("web", orderId), lineId: "1" },
      sku: s,
      qty,
      candidates: ["w1"],
      attempt: 1,
    });
    const malformed = { kind: "reserve", sku, qty: 1 }; // no ref, no attempt
    const misrouted = reserve("ei-3", 1, other);
    const items = [reserve("ei-1", 2), malformed, reserve("ei-2", 3), misrouted];
    const seq = await publishEnvelope(subjects.ledgerCommands(1, 0), items);

    await h.waitPosition(sku, "w1", { onHand: 10, reserved: 5, available: 5 });
    const dead = await waitFor(() => {
      const ms = deadLettersOf(streamNames.ledger, seq);
      return ms.length === 2 ? ms : null;
    }, "two dead letters of the envelope");
    expectAlone(byIndex(dead, 1), "invalid_command", 1, malformed);
    expect(byIndex(dead, 1)?.headers[deadLetterHeaders.detail]).toContain("cmd envelope item 1:");
    expectAlone(byIndex(dead, 3), "wrong_partition", 3, misrouted);
    expect(byIndex(dead, 3)?.headers[deadLetterHeaders.subject]).toBe(subjects.ledgerCommands(1, 0));
    expect(await h.position(other, "w1")).toMatchObject({ reserved: 0 });
    await h.expectLedgerConsistent();
  });

  test("stock items: the valid ones apply; invalid, misrouted and refused ones are dead letters of their own", async () => {
    const sku = skuIn("EI-S", 3);
    const other = skuIn("EI-S", 0);
    const items = [
      { sku, command: { type: "received", warehouse: "w1", qty: 5 } },
      { sku: other, command: { type: "received", warehouse: "w1", qty: 5 } },
      { sku, command: { type: "received" } },
      { sku, command: { type: "adjust", warehouse: "w1", qty: -100 } },
      { command: { type: "received", warehouse: "w1", qty: 1 } },
      { sku, command: { type: "received", warehouse: "w2", qty: 1 } },
    ];
    const seq = await publishEnvelope(subjects.ledgerItems(3, "test"), items);
    await h.waitPosition(sku, "w1", { onHand: 5 });
    await h.waitPosition(sku, "w2", { onHand: 1 });
    const dead = await waitFor(() => {
      const ms = deadLettersOf(streamNames.ledger, seq);
      return ms.length === 4 ? ms : null;
    }, "four dead letters of the envelope");
    expectAlone(byIndex(dead, 1), "wrong_partition", 1, items[1]);
    expectAlone(byIndex(dead, 2), "invalid_command", 2, items[2]);
    expectAlone(byIndex(dead, 3), "refused", 3, items[3]);
    expectAlone(byIndex(dead, 4), "invalid_command", 4, items[4]);
    expect(await h.getStock(other)).toBeNull();
    await h.expectLedgerConsistent();
  });

  test("ledger answers: a malformed one is dead-lettered alone; the answer beside it reaches its order", async () => {
    const sku = skuIn("EI-A", 2);
    await h.receive(sku, "w1", 4);
    await h.waitPosition(sku, "w1", { onHand: 4 });
    await h.order("web", "ei-order", [{ lineId: "1", sku, qty: 1 }]);
    const placed = await h.waitOrder("web", "ei-order", (o: Order) => o.status !== "pending", "settled");
    const line = placed.lines[0] as Order["lines"][number];
    expect(line.warehouse).toBe("w1");
    const op = orderPartition(orderKey("web", "ei-order"), h.P);
    // A valid answer (the line lost its reservation: it must be re-routed) with a malformed one beside it.
    const lost = {
      kind: "lost",
      ref: { orderKey: orderKey("web", "ei-order"), lineId: "1" },
      sku,
      attempt: line.attempt,
      warehouse: "w1",
      qty: 1,
    };
    const bad = { kind: "reserved", ref: { orderKey: "web.x" }, sku, attempt: 1 };
    const seq = await publishEnvelope(subjects.orderResults(op, 2), [lost, bad]);
    const answered = await h.waitOrder(
      "web",
      "ei-order",
      (o) => o.history.some((e) => e.event === "stock_lost"),
      "the valid answer applied",
    );
    expect(answered.lines[0]?.attempt).toBeGreaterThan(line.attempt);
    await h.quiesce();
    // Answers travel in the order partition's answer stream (read before its intake).
    const dead = deadLettersOf(streamNames.answer, seq);
    expect(dead).toHaveLength(1);
    expectAlone(byIndex(dead, 1), "invalid_command", 1, bad);
  });

  test("a body that is no envelope is dead-lettered whole, with the message's own id", async () => {
    const hs = natsHeaders();
    hs.set("Content-Type", "application/msgpack");
    const body = pack({ nothing: true });
    const seq = (await h.producer.js.publish(subjects.ledgerCommands(0, 1), body, { headers: hs })).seq;
    const [dead] = await waitFor(() => {
      const ms = deadLettersOf(streamNames.ledger, seq);
      return ms.length === 1 ? ms : null;
    }, "the whole message dead-lettered");
    expect(dead?.subject).toBe(subjects.dlq("invalid_command"));
    expect(dead?.headers[deadLetterHeaders.item]).toBeUndefined();
    expect(dead?.headers[deadLetterHeaders.detail]).toBe("cmd envelope without items");
    expect(dead?.data).toEqual(body);
  });

  test("exactly once: dead letters re-published after a crash are not duplicated, valid items not re-applied", async () => {
    const sku = skuIn("EI-X", 1);
    let armed = true;
    // Crash after the batch's outbox was published, before it was marked done: the next start publishes it again.
    h.sluice.events.on("outbox_published", (e) => {
      if (armed && e.stage === "ledger" && e.partition === 1) {
        armed = false;
        throw new Error("simulated crash after publish");
      }
    });
    const items = [
      { sku, command: { type: "received", warehouse: "w1", qty: 7 } },
      { sku, command: { type: "received" } },
      { sku, command: { type: "adjust", warehouse: "w1", qty: -100 } },
    ];
    const seq = await publishEnvelope(subjects.ledgerItems(1, "crash"), items);
    await waitFor(() => h.fatal.length > 0, "the simulated crash");
    await waitFor(() => deadLettersOf(streamNames.ledger, seq).length === 2, "the first publish");
    // Still in the outbox: the next start publishes them again, under the same ids.
    const left = (h.sluice.ledger[1]?.store.pendingOutbox() ?? []).map((p) => p.item.msgId);
    expect(left).toContain(`dlq:${streamNames.ledger}:${seq}:1`);
    expect(left).toContain(`dlq:${streamNames.ledger}:${seq}:2`);
    await h.sluice.stop();
    await h.startSluice();
    await h.quiesce();
    await h.waitPosition(sku, "w1", { onHand: 7 });
    const dlq = await (await h.producer.jsm()).streams.info(streamNames.dlq);
    await Bun.sleep(200);
    expect((await (await h.producer.jsm()).streams.info(streamNames.dlq)).state.last_seq).toBe(
      dlq.state.last_seq,
    );
    const dead = deadLettersOf(streamNames.ledger, seq);
    expect(dead.map((m) => m.headers[deadLetterHeaders.item]).sort()).toEqual(["1", "2"]);
    expect((await h.getStock(sku))?.version).toBe(1);
    expect(h.fatal).toEqual([]);
  });
});
