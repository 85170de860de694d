import { expect, test } from "bun:test";
import fc from "fast-check";
import { skuPartitionOf, tokenPartition } from "../../src/stages/partition-of.ts";
import { encodeToken, orderKey, orderPartition, skuPartition } from "../../src/stream/subjects.ts";

// The hot path's partition rule (src/stages/partition-of.ts) is the subjects' rule, for any id.

const id = fc.oneof(
  fc.string({ minLength: 1, maxLength: 40 }),
  fc.string({ unit: "grapheme", minLength: 1, maxLength: 20 }),
  fc.stringMatching(/^[A-Za-z0-9_\-:@+,=]{1,30}$/),
);

test("generated: the same partition as partitionOfTokens for SKUs and order keys, ASCII or not", () => {
  fc.assert(
    fc.property(id, id, fc.integer({ min: 1, max: 64 }), (a, b, count) => {
      expect(skuPartitionOf(a, count)).toBe(skuPartition(a, count));
      expect(tokenPartition(encodeToken(a), count)).toBe(skuPartition(a, count));
      const key = orderKey(a, b);
      expect(tokenPartition(key, count)).toBe(orderPartition(key, count));
    }),
    { numRuns: 3000 },
  );
});

test("known values: the server's mapping for the bench's SKUs and orders", () => {
  for (let i = 0; i < 200; i++) {
    expect(skuPartitionOf(`SKU-${i}`, 4)).toBe(skuPartition(`SKU-${i}`, 4));
    expect(tokenPartition(`shop.o-${i}`, 7)).toBe(orderPartition(`shop.o-${i}`, 7));
  }
});
