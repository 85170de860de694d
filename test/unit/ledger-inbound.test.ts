import { describe, expect, test } from "bun:test";
import { headers as natsHeaders } from "@nats-io/transport-node";
import fc from "fast-check";
import { loadConfig } from "../../src/config/index.ts";
import { stockCommandTypes } from "../../src/domain/ledger/commands.ts";
import type { OrderInputLimits } from "../../src/domain/orders/commands.ts";
import type { InboundContext } from "../../src/stages/inbound.ts";
import { domainLimits } from "../../src/stages/ledger/applier.ts";
import { decodeLedgerMessage } from "../../src/stages/ledger/inbound.ts";
import { pack, unpack } from "../../src/stream/codec.ts";
import { deadLetterReasons } from "../../src/stream/dead-letter.ts";
import type { InboundMessage } from "../../src/stream/partition-runner.ts";
import { encodeToken, orderKey, skuPartition, subjects } from "../../src/stream/subjects.ts";

// The ledger's inbound step: a message → typed commands or dead letters, before anything is applied. Table
// cases for each reason (the details are the ones docs/subjects.md and the integration tests rely on), then
// generated subjects and bodies: it never throws and every message ends as commands or dead letters.

const config = loadConfig({ env: {}, file: "config/sluice.toml" });
const partitionCount = config.streams.partitionCount;
const ctx: InboundContext<OrderInputLimits> = {
  partition: 0,
  partitionCount,
  limits: domainLimits(config),
};

/** The first SKU `<prefix>-<n>` that partition `p` owns. */
function skuOf(p: number, prefix = "LI"): string {
  for (let n = 0; ; n++) if (skuPartition(`${prefix}-${n}`, partitionCount) === p) return `${prefix}-${n}`;
}
const mine = skuOf(0);
const theirs = skuOf(1);

const jsonText = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const msgpackHeaders = () => {
  const hs = natsHeaders();
  hs.set("Content-Type", "application/msgpack");
  return hs;
};

function message(subject: string, data: Uint8Array, headers = natsHeaders()): InboundMessage {
  return { stream: "SLUICE_LEDGER", seq: 7, subject, data, headers, atMs: 1_000 };
}
const envelope = (subject: string, items: unknown[]) => message(subject, pack({ items }), msgpackHeaders());

const received = { type: "received", warehouse: "w1", qty: 5 };
const reserve = (sku: string, lineId = "1") => ({
  kind: "reserve",
  ref: { orderKey: orderKey("web", "o1"), lineId },
  sku,
  qty: 1,
  candidates: ["w1"],
  attempt: 1,
});

/** The one reject of a message refused whole. */
function refusedWhole(m: InboundMessage) {
  const out = decodeLedgerMessage(m, ctx);
  expect(out.commands).toEqual([]);
  expect(out.rejects.length).toBe(1);
  expect(out.rejects[0]?.item).toBeUndefined();
  return out.rejects[0];
}

describe("stock.<sku>", () => {
  test("a valid command is one stock command of its SKU, not an envelope item", () => {
    const out = decodeLedgerMessage(message(subjects.stockPartitioned(0, mine), jsonText(received)), ctx);
    expect<unknown>(out).toEqual({
      commands: [{ kind: "stock", sku: mine, command: { ...received, ref: null } }],
      rejects: [],
    });
  });

  test("another partition's SKU on this partition's subject: wrong_partition", () => {
    const r = refusedWhole(message(`sluice.ledger.0.stock.${encodeToken(theirs)}`, jsonText(received)));
    expect(r).toEqual({
      reason: "wrong_partition",
      detail: `SKU ${JSON.stringify(theirs)} belongs to partition 1, not 0`,
    });
  });

  test.each([
    ["a malformed token", "sluice.ledger.0.stock.~!!", "bad_subject", 'token "~!!" is not base64url'],
    ["a token that is not canonical", "sluice.ledger.0.stock.~YQ", "bad_subject", "not canonical"],
    [
      "another partition's subject",
      subjects.stockPartitioned(1, theirs),
      "bad_subject",
      `${subjects.stockPartitioned(1, theirs)} is not a subject of ledger partition 0`,
    ],
    [
      "no partitioned subject",
      "sluice.ledger.x.stock.A",
      "bad_subject",
      "is not a subject of ledger partition 0",
    ],
    [
      "an id with control characters",
      `sluice.ledger.0.stock.${encodeToken("a\u0001b")}`,
      "invalid_command",
      "sku must not contain control characters",
    ],
    [
      "an unknown kind",
      "sluice.ledger.0.order.web.o1",
      "unknown_kind",
      "ledger partitions take stock.<sku>, items.<source> and cmd.<p>, not order",
    ],
    [
      "stock with two tokens",
      `sluice.ledger.0.stock.${mine}.x`,
      "unknown_kind",
      "ledger partitions take stock.<sku>, items.<source> and cmd.<p>, not stock",
    ],
  ])("%s: %s", (_name, subject, reason, detail) => {
    const r = refusedWhole(message(subject, jsonText(received)));
    expect(r?.reason).toBe(reason as (typeof deadLetterReasons)[number]);
    expect(r?.detail).toContain(detail);
  });

  test.each([
    ["bad JSON", new TextEncoder().encode("{"), "decode_failed", "payload is not valid JSON"],
    ["an empty payload", new Uint8Array(), "decode_failed", "empty payload"],
    ["not an object", jsonText([1]), "invalid_command", "payload must be an object"],
    ["an unknown type", jsonText({ type: "stolen" }), "invalid_command", "type must be one of"],
  ])("%s", (_name, data, reason, detail) => {
    const r = refusedWhole(message(subjects.stockPartitioned(0, mine), data));
    expect(r?.reason).toBe(reason as (typeof deadLetterReasons)[number]);
    expect(r?.detail).toContain(detail);
  });

  test("an unsupported Content-Type: decode_failed", () => {
    const hs = natsHeaders();
    hs.set("content-type", "text/plain");
    const r = refusedWhole(message(subjects.stockPartitioned(0, mine), jsonText(received), hs));
    expect(r?.reason).toBe("decode_failed");
    expect(r?.detail).toContain('Content-Type "text/plain" is not supported');
  });
});

describe("items.<source>", () => {
  const subject = subjects.ledgerItems(0, "import");

  test("bad items are refused alone, by index; the others are commands in envelope order", () => {
    const items = [
      { sku: mine, command: received },
      { sku: theirs, command: received },
      { sku: mine, command: { type: "stolen" } },
      { nope: true },
      { sku: skuOf(0, "LJ"), command: { ...received, commandId: "c/3" } },
    ];
    const out = decodeLedgerMessage(envelope(subject, items), ctx);
    expect<unknown[]>(out.commands).toEqual([
      {
        kind: "stock",
        sku: mine,
        command: { ...received, ref: null },
        envelopeItem: { index: 0, item: items[0] },
      },
      {
        kind: "stock",
        sku: skuOf(0, "LJ"),
        command: { ...received, ref: null, commandId: "c/3" },
        envelopeItem: { index: 4, item: items[4] },
      },
    ]);
    // What fails the envelope's check first, then the items that pass it, in order (as before the split).
    expect(out.rejects).toEqual([
      {
        reason: "invalid_command",
        detail: "items envelope item 3: stock item without sku or command",
        item: { index: 3, item: items[3] },
      },
      {
        reason: "wrong_partition",
        detail: `items envelope item 1: SKU ${JSON.stringify(theirs)} belongs to partition 1, not 0`,
        item: { index: 1, item: items[1] },
      },
      {
        reason: "invalid_command",
        detail: expect.stringContaining(`items envelope item 2 (${mine}): type must be one of`),
        item: { index: 2, item: items[2] },
      },
    ]);
  });

  test.each([
    ["bytes that are no msgpack", new Uint8Array([0xc1])],
    ["a body without items", pack({ things: [] })],
    ["items that are not an array", pack({ items: 3 })],
  ])("%s: the whole message is invalid_command", (_name, data) => {
    expect(refusedWhole(message(subject, data, msgpackHeaders()))).toEqual({
      reason: "invalid_command",
      detail: "items envelope without items",
    });
  });
});

describe("cmd.<p>", () => {
  const subject = subjects.ledgerCommands(0, 2);

  test("line requests: misrouted and malformed ones refused alone; the others are line commands", () => {
    const items = [reserve(mine, "1"), reserve(theirs, "2"), { kind: "reserve" }, reserve(mine, "4")];
    const out = decodeLedgerMessage(envelope(subject, items), ctx);
    expect<unknown[]>(out.commands).toEqual([
      { kind: "line", request: items[0], envelopeItem: { index: 0, item: items[0] } },
      { kind: "line", request: items[3], envelopeItem: { index: 3, item: items[3] } },
    ]);
    expect(out.rejects).toEqual([
      {
        reason: "invalid_command",
        detail: "cmd envelope item 2: line request without ref, sku or attempt",
        item: { index: 2, item: items[2] },
      },
      {
        reason: "wrong_partition",
        detail: `cmd envelope item 1: SKU ${JSON.stringify(theirs)} belongs to partition 1, not 0`,
        item: { index: 1, item: items[1] },
      },
    ]);
  });

  test("a body that is no envelope: the whole message is invalid_command", () => {
    expect(refusedWhole(message(subject, jsonText({ items: [] }), msgpackHeaders()))).toEqual({
      reason: "invalid_command",
      detail: "cmd envelope without items",
    });
  });

  test("an empty envelope: nothing to apply and nothing refused", () => {
    expect(decodeLedgerMessage(envelope(subject, []), ctx)).toEqual({ commands: [], rejects: [] });
  });
});

// ---- Generated input ----

const id = fc.oneof(
  fc.constantFrom(mine, theirs, "w1", "", "a.b", "a\u0000b"),
  fc.string({ maxLength: 12 }),
  fc.string({ unit: "grapheme", maxLength: 6 }),
);
const token = fc.oneof(
  id.filter((s) => s.length > 0).map(encodeToken),
  fc.string({ maxLength: 12 }),
  fc.constantFrom("~", "~!!", "~YQ", "*", ">", ""),
);
const subject = fc.oneof(
  fc
    .tuple(
      fc.constantFrom("0", "1", "-1", "x", "0.routed"),
      fc.constantFrom("stock", "items", "cmd", "order", "routed", ""),
      fc.array(token, { minLength: 0, maxLength: 3 }),
    )
    .map(([p, kind, tokens]) => ["sluice", "ledger", p, kind, ...tokens].join(".")),
  fc.string({ maxLength: 40 }),
);
const quantity = fc.oneof(
  fc.integer({ min: -3, max: 1_000_000_000_000 }),
  fc.double(),
  fc.string({ maxLength: 3 }),
);
const stockCommand = fc.oneof(
  fc.record(
    {
      type: fc.oneof(fc.constantFrom(...stockCommandTypes), fc.string({ maxLength: 8 })),
      warehouse: id,
      qty: quantity,
      onHand: quantity,
      available: quantity,
      bucket: fc.constantFrom("damaged", "qc", "x"),
      commandId: id,
    },
    { requiredKeys: ["type"] },
  ),
  fc.jsonValue({ maxDepth: 2 }),
);
const stockItem = fc.oneof(
  fc.record({ sku: id, command: stockCommand }, { requiredKeys: [] }),
  fc.jsonValue({ maxDepth: 2 }),
);
const lineRequest = fc.oneof(
  fc.record(
    {
      kind: fc.constantFrom("reserve", "release", "ship", "reject", "return", "steal"),
      ref: fc.oneof(fc.record({ orderKey: id, lineId: id }), fc.jsonValue({ maxDepth: 1 })),
      sku: id,
      qty: quantity,
      candidates: fc.array(id, { maxLength: 3 }),
      keep: fc.array(quantity, { maxLength: 3 }),
      attempt: quantity,
      eventId: id,
      stockMissing: fc.boolean(),
      cause: fc.string({ maxLength: 80 }),
      disposition: fc.string({ maxLength: 8 }),
      warehouse: id,
    },
    { requiredKeys: [] },
  ),
  fc.jsonValue({ maxDepth: 2 }),
);
const value = fc.oneof(
  stockCommand,
  fc.record({ items: fc.array(fc.oneof(stockItem, lineRequest), { maxLength: 6 }) }),
  fc.jsonValue({ maxDepth: 3 }),
);
const body = fc.oneof(
  fc.uint8Array({ maxLength: 64 }),
  value.map(jsonText),
  value.map((v) => pack(v)),
);
const contentType = fc.constantFrom(
  undefined,
  "application/json",
  "application/msgpack",
  "application/x-msgpack; charset=binary",
  "text/plain",
);

function isEmptyEnvelope(data: Uint8Array): boolean {
  try {
    const items = (unpack(data) as { items?: unknown } | null)?.items;
    return Array.isArray(items) && items.length === 0;
  } catch {
    return false;
  }
}

test("generated: never throws; every message ends as commands or dead letters with known reasons", () => {
  const reasons: ReadonlySet<string> = new Set(deadLetterReasons);
  fc.assert(
    fc.property(
      subject,
      body,
      contentType,
      fc.integer({ min: 0, max: partitionCount - 1 }),
      (s, data, type, p) => {
        const headers = natsHeaders();
        if (type !== undefined) headers.set("Content-Type", type);
        const m = message(s, data, headers);
        const out = decodeLedgerMessage(m, { ...ctx, partition: p });
        // An envelope with no items is the one message that yields neither: nothing in it to apply or refuse.
        if (out.commands.length === 0 && out.rejects.length === 0) expect(isEmptyEnvelope(data)).toBe(true);
        for (const r of out.rejects) {
          expect(reasons.has(r.reason)).toBe(true);
          expect(r.detail.length).toBeGreaterThan(0);
        }
        // Each item of an envelope ends once, as a command or a dead letter; commands keep envelope order.
        const indices = [
          ...out.commands.map((c) => c.envelopeItem?.index),
          ...out.rejects.map((r) => r.item?.index),
        ].filter((i) => i !== undefined);
        expect(new Set(indices).size).toBe(indices.length);
        const order = out.commands.map((c) => c.envelopeItem?.index ?? -1);
        expect(order).toEqual([...order].sort((a, b) => a - b));
      },
    ),
    { numRuns: 3_000 },
  );
});
