import { expect, test } from "bun:test";
import fc from "fast-check";
import {
  encodeToken,
  fnv1a32,
  orderKey,
  orderPartition,
  partitionOfTokens,
  skuPartition,
  tokenPartition,
} from "../../src/stream/subjects.ts";

// The partition hash hashes characters without allocating when they are ASCII (encoded tokens always are):
// it must equal FNV-1a over the UTF-8 bytes of the tokens joined, which is what nats-server's
// {{partition(P,…)}} computes, for any id.

/** The reference: FNV-1a, 32 bits, over UTF-8 bytes. */
function reference(text: string): number {
  let hash = 0x811c9dc5;
  for (const b of Buffer.from(text, "utf8")) hash = Math.imul(hash ^ b, 0x01000193) >>> 0;
  return hash >>> 0;
}

const id = fc.oneof(
  fc.string({ minLength: 1, maxLength: 40 }),
  fc.string({ unit: "grapheme", minLength: 1, maxLength: 20 }),
  fc.stringMatching(/^[A-Za-z0-9_\-:@+,=]{1,30}$/),
);

test("generated: SKUs, order keys and raw text hash as the reference over UTF-8 bytes", () => {
  fc.assert(
    fc.property(id, id, fc.integer({ min: 1, max: 64 }), (a, b, count) => {
      expect(fnv1a32(a)).toBe(reference(a));
      expect(skuPartition(a, count)).toBe(reference(encodeToken(a)) % count);
      const key = orderKey(a, b);
      const joined = `${encodeToken(a)}${encodeToken(b)}`;
      expect(orderPartition(key, count)).toBe(reference(joined) % count);
      expect(tokenPartition(key, count)).toBe(partitionOfTokens([encodeToken(a), encodeToken(b)], count));
      expect(fnv1a32(`${a}.${b}`, true)).toBe(reference(`${a}${b}`.split(".").join("")));
    }),
    { numRuns: 3000 },
  );
});

test("known values: the FNV-1a test vectors", () => {
  expect(fnv1a32("")).toBe(0x811c9dc5);
  expect(fnv1a32("a")).toBe(0xe40c292c);
  expect(fnv1a32("foobar")).toBe(0xbf9cf968);
});
