import { expect, test } from "bun:test";
import { headers as natsHeaders } from "@nats-io/transport-node";
import fc from "fast-check";
import type { LineResult } from "../../src/domain/ledger/index.ts";
import { domainLimits } from "../../src/stages/ledger/applier.ts";
import { decodeOrderMessage } from "../../src/stages/order/inbound.ts";
import { pack } from "../../src/stream/codec.ts";
import { deadLetterReasons } from "../../src/stream/dead-letter.ts";
import type { InboundMessage } from "../../src/stream/partition-runner.ts";
import { encodeToken, orderKey, orderPartition, subjects } from "../../src/stream/subjects.ts";
import { testConfig } from "../helpers/index.ts";

// The order stage's inbound step: a message → typed commands or dead letters, before anything applies.
// Pure: no store, no NATS. The integration tests (lifecycle, hostile input) cover it end to end.

const config = testConfig("nats://127.0.0.1:1", "/tmp/unused");
const P = config.streams.partitionCount;
const ctxOf = (partition: number) => ({ partition, partitionCount: P, limits: domainLimits(config) });
const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const message = (subject: string, data: Uint8Array, contentType?: string): InboundMessage => {
  const h = natsHeaders();
  if (contentType !== undefined) h.set("Content-Type", contentType);
  return {
    stream: "SLUICE_ORDER",
    seq: 1,
    subject,
    data,
    headers: contentType === undefined ? undefined : h,
    atMs: 5,
  };
};
const home = (channel: string, orderId: string) => orderPartition(orderKey(channel, orderId), P);

test("each kind becomes its command; what needs no state is refused here, with its reason", () => {
  const p = home("shop", "o-1");
  const order = decodeOrderMessage(
    message(
      subjects.orderPartitioned(p, "order", "shop", "o-1"),
      json({ lines: [{ sku: "A", qty: 1, price: 1 }] }),
    ),
    ctxOf(p),
  );
  expect(order.rejects).toEqual([]);
  expect(order.commands).toMatchObject([{ kind: "create", key: "shop.o-1" }]);
  const cancel = decodeOrderMessage(
    message(subjects.orderPartitioned(p, "cancel", "shop", "o-1"), json({})),
    ctxOf(p),
  );
  expect(cancel.commands).toMatchObject([{ kind: "cancel", key: "shop.o-1", cancel: { cause: "customer" } }]);
  expect(decodeOrderMessage(message(subjects.orderClock(p), new Uint8Array(0)), ctxOf(p)).commands).toEqual([
    { kind: "clock", atMs: 5 },
  ]);

  const other = (p + 1) % P;
  const wrong = decodeOrderMessage(
    message(`sluice.order.${other}.order.shop.o-1`, json({ lines: [{ sku: "A", qty: 1, price: 1 }] })),
    ctxOf(other),
  );
  expect(wrong.rejects.map((r) => r.reason)).toEqual(["wrong_partition"]);
  const bad = (subject: string, data: Uint8Array, partition = p) =>
    decodeOrderMessage(message(subject, data), ctxOf(partition)).rejects.map((r) => r.reason);
  expect(bad(`sluice.order.${p}.order.~!!.o-1`, json({}))).toEqual(["bad_subject"]);
  expect(bad(`sluice.order.${p}.nope.a.b`, json({}))).toEqual(["unknown_kind"]);
  expect(bad(`sluice.order.${p + 1}.order.shop.o-1`, json({}))).toEqual(["bad_subject"]);
  expect(bad(subjects.orderPartitioned(p, "order", "shop", "o-1"), new TextEncoder().encode("{"))).toEqual([
    "decode_failed",
  ]);
  const wmsP = home("shop", "o-1");
  expect(bad(subjects.orderWms(wmsP, "w1", "lost"), json({ channel: "shop", orderId: "o-1" }), wmsP)).toEqual(
    ["unknown_kind"],
  );
});

test("an answers envelope: a malformed answer is refused alone, the others are commands", () => {
  const p = home("web", "o-2");
  const good: LineResult = {
    kind: "reserved",
    ref: { orderKey: "web.o-2", lineId: "1" },
    sku: "A",
    attempt: 1,
    warehouse: "w1",
    qty: 1,
  };
  const m = message(
    subjects.orderResults(p, 0),
    pack({ items: [good, { kind: "reserved" }] }),
    "application/msgpack",
  );
  const r = decodeOrderMessage(m, ctxOf(p));
  expect(r.commands).toEqual([{ kind: "result", result: good }]);
  expect(r.rejects.map((x) => [x.reason, x.item?.index])).toEqual([["invalid_command", 1]]);
  expect(
    decodeOrderMessage(message(subjects.orderResults(p, 0), json([1])), ctxOf(p)).rejects[0]?.reason,
  ).toBe("invalid_command");
});

test("generated messages: never throws; always commands or dead letters, with known reasons", () => {
  const token = fc.oneof(
    fc.constantFrom(
      "shop",
      "web",
      "o-1",
      "w1",
      "~",
      "~AA",
      "a b",
      "order",
      "cancel",
      "return",
      "wms",
      "result",
      "clock",
    ),
    fc.string({ minLength: 0, maxLength: 12 }),
  );
  const body = fc.oneof(
    fc.uint8Array({ maxLength: 64 }),
    fc.jsonValue().map((v) => json(v)),
    fc.anything().map((v) => {
      try {
        return pack(v);
      } catch {
        return new Uint8Array(0);
      }
    }),
    fc.constant(json({ lines: [{ sku: "A", qty: 1, price: 1 }] })),
    fc.constant(json({ channel: "shop", orderId: "o-1", shipmentId: "s", lines: [{ lineId: "1", qty: 1 }] })),
  );
  fc.assert(
    fc.property(
      fc.array(token, { minLength: 1, maxLength: 6 }),
      body,
      fc.integer({ min: 0, max: P - 1 }),
      fc.constantFrom(undefined, "application/json", "application/msgpack", "text/plain"),
      (tokens, data, partition, contentType) => {
        const subject = ["sluice", "order", String(partition), ...tokens].join(".");
        const r = decodeOrderMessage(message(subject, data, contentType), ctxOf(partition));
        expect(r.commands.length + r.rejects.length).toBeGreaterThan(0);
        for (const x of r.rejects) expect(deadLetterReasons).toContain(x.reason);
      },
    ),
    { numRuns: 3000 },
  );
  // Valid ids of every shape route to their own partition and nowhere else.
  fc.assert(
    fc.property(
      fc.string({ minLength: 1, maxLength: 20 }),
      fc.string({ minLength: 1, maxLength: 20 }),
      (ch, id) => {
        const p = home(ch, id);
        const subject = `sluice.order.${p}.return.${encodeToken(ch)}.${encodeToken(id)}`;
        const r = decodeOrderMessage(message(subject, json({})), ctxOf(p));
        expect(r.rejects.map((x) => x.reason)).not.toContain("wrong_partition");
      },
    ),
    { numRuns: 500 },
  );
});
