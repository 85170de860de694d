import { expect, test } from "bun:test";
import fc from "fast-check";
import { Envelopes } from "../../src/stages/envelopes.ts";
import { unpack } from "../../src/stream/codec.ts";

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
