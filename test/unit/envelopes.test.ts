import { expect, test } from "bun:test";
import { headers as natsHeaders } from "@nats-io/transport-node";
import fc from "fast-check";
import { Envelopes, openEnvelope, rejecter } from "../../src/stages/envelopes.ts";
import type { OutboxItem } from "../../src/store/index.ts";
import { pack, unpack } from "../../src/stream/codec.ts";
import { deadLetterHeaders } from "../../src/stream/dead-letter.ts";

const decode = (data: Uint8Array, json: boolean) =>
  (json ? JSON.parse(new TextDecoder().decode(data)) : unpack(data)) as { items: unknown[] };

test("envelopes keep every item, in order, within the item and byte limits (JSON and msgpack)", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({ s: fc.constantFrom("a", "b"), v: fc.string({ maxLength: 300 }), n: fc.integer() }),
        {
          maxLength: 200,
        },
      ),
      fc.boolean(),
      fc.integer({ min: 1, max: 20 }),
      (items, json, itemsMax) => {
        const bytesMax = 2000;
        const e = new Envelopes(itemsMax, bytesMax);
        for (const item of items) e.add(`out.${item.s}`, item, json);
        const messages = e.drain();
        for (const s of ["a", "b"]) {
          const mine = messages.filter((m) => m.subject === `out.${s}`);
          const decoded = mine.map((m) => decode(m.data, json).items);
          expect(decoded.flat()).toEqual(items.filter((i) => i.s === s));
          for (const [k, m] of mine.entries()) {
            expect(decoded[k]?.length).toBeLessThanOrEqual(itemsMax);
            // a message is over the byte limit only when one item alone is
            if ((decoded[k]?.length ?? 0) > 1) expect(m.data.length).toBeLessThanOrEqual(bytesMax);
          }
        }
        expect(e.drain()).toEqual([]);
      },
    ),
    { numRuns: 500 },
  );
});

test("a large backlog of big status items is cut under the server's max_payload", () => {
  const e = new Envelopes(500, 1024 * 1024 - 64 * 1024);
  const lines = Array.from({ length: 40 }, (_, i) => ({
    lineId: String(i),
    sku: `SKU-${"x".repeat(40)}-${i}`,
    qty: 1,
  }));
  for (let i = 0; i < 500; i++)
    e.add("sluice.out.order.web", { orderKey: `web.o${i}`, version: 3, lines }, true);
  const messages = e.drain();
  expect(messages.length).toBeGreaterThan(1);
  for (const m of messages) expect(m.data.length).toBeLessThanOrEqual(1024 * 1024 - 64 * 1024);
  expect(messages.flatMap((m) => decode(m.data, true).items).length).toBe(500);
});

test("opening an envelope splits valid items from refused ones, keeping each item's index", () => {
  const check = (item: unknown) =>
    typeof (item as { n?: unknown } | null)?.n === "number" ? null : "n must be a number";
  const opened = openEnvelope<{ n: number }>(
    pack({ items: [{ n: 1 }, { n: "two" }, { n: 3 }, null] }),
    "cmd",
    check,
  );
  expect(opened).toEqual({
    ok: true,
    items: [
      { index: 0, item: { n: 1 } },
      { index: 2, item: { n: 3 } },
    ],
    refused: [
      { index: 1, item: { n: "two" }, detail: "cmd envelope item 1: n must be a number" },
      { index: 3, item: null, detail: "cmd envelope item 3: n must be a number" },
    ],
  });
});

test.each([
  ["not msgpack", new Uint8Array([0xc1])],
  ["no items", pack({ nothing: true })],
  ["items not a list", pack({ items: { n: 1 } })],
  ["a bare list", pack([{ n: 1 }])],
  ["empty", new Uint8Array(0)],
])("a body that is no envelope (%s) is refused whole", (_, data) => {
  expect(openEnvelope(data, "items", () => null)).toEqual({
    ok: false,
    detail: "items envelope without items",
  });
});

test("a refused item's dead letter carries it alone, its index, its source and a deterministic id", () => {
  const headers = natsHeaders();
  headers.set("Content-Type", "application/json");
  headers.set("Nats-Msg-Id", "producer-id");
  headers.set("X-Trace", "t-1");
  const source = {
    stream: "SLUICE_LEDGER",
    seq: 42,
    subject: "sluice.ledger.1.cmd.0",
    data: pack({}),
    headers,
  };
  const outbox: OutboxItem[] = [];
  const reasons: string[] = [];
  const reject = rejecter(outbox, (r) => reasons.push(r));
  reject(source, "invalid_command", "cmd envelope item 3:\nbad", { index: 3, item: { sku: "S", qty: -1 } });
  reject(source, "bad_subject", "whole");
  const [item, whole] = outbox as [OutboxItem, OutboxItem];
  expect(item.subject).toBe("sluice.dlq.invalid_command");
  expect(item.msgId).toBe("dlq:SLUICE_LEDGER:42:3");
  expect(unpack(item.data)).toEqual({ sku: "S", qty: -1 });
  expect(Object.fromEntries(item.headers)).toEqual({
    "Content-Type": "application/msgpack",
    "X-Trace": "t-1",
    [deadLetterHeaders.reason]: "invalid_command",
    [deadLetterHeaders.detail]: "cmd envelope item 3: bad",
    [deadLetterHeaders.subject]: "sluice.ledger.1.cmd.0",
    [deadLetterHeaders.stream]: "SLUICE_LEDGER",
    [deadLetterHeaders.seq]: "42",
    [deadLetterHeaders.item]: "3",
  });
  expect(whole.msgId).toBe("dlq:SLUICE_LEDGER:42");
  expect(whole.data).toBe(source.data);
  expect(Object.fromEntries(whole.headers)[deadLetterHeaders.item]).toBeUndefined();
  expect(reasons).toEqual(["invalid_command", "bad_subject"]);
});
