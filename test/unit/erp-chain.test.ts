import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { type ErpChainLink, ErpChainWatch, erpChainLink } from "../../src/sink/erp-chain.ts";

// The sink's view of the ERP chains: generated chains across store changes (takeovers, imports) judge every
// batch `next` or `new_chain` after the first; a batch taken out anywhere makes the next one a `gap`; a copy is
// a `repeat` and changes nothing.

/** Chains of one partition: each store continues from the last seqTo, batchNo from 1. */
const chains = fc
  .array(fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 1, maxLength: 6 }), {
    minLength: 1,
    maxLength: 4,
  })
  .map((stores) => {
    const out: ErpChainLink[] = [];
    let seqTo = 0;
    stores.forEach((steps, s) => {
      steps.forEach((step, i) => {
        const prevSeqTo = seqTo;
        seqTo += step; // 0: a batch with no new input (seqFrom > seqTo)
        out.push({ stage: "ledger", partition: 2, storeId: `store${s}`, batchNo: i + 1, seqTo, prevSeqTo });
      });
    });
    return out;
  });

describe("ERP chain watch", () => {
  test("a whole chain, across stores, is first_seen then next or new_chain; copies are repeats", () => {
    fc.assert(
      fc.property(chains, (links) => {
        const watch = new ErpChainWatch();
        const outcomes = links.map((l) => watch.observe(l));
        expect(outcomes[0]).toBe("first_seen");
        for (const [i, o] of outcomes.entries()) {
          if (i === 0) continue;
          const l = links[i] as ErpChainLink;
          expect(o).toBe(l.batchNo === 1 ? "new_chain" : "next");
        }
        // A copy of any batch already seen in the current store changes nothing.
        const last = links.at(-1) as ErpChainLink;
        if (last.batchNo > 1) expect(watch.observe({ ...last, batchNo: last.batchNo - 1 })).toBe("repeat");
        expect(watch.observe(last)).toBe("repeat");
      }),
      { numRuns: 300 },
    );
  });

  test("a batch missing anywhere after the first makes the next one a gap", () => {
    fc.assert(
      fc.property(
        chains.filter((l) => l.length >= 3),
        fc.nat(),
        (links, pick) => {
          const drop = 1 + (pick % (links.length - 2)); // neither the first nor the last
          const watch = new ErpChainWatch();
          const outcomes = links.filter((_, i) => i !== drop).map((l) => watch.observe(l));
          const dropped = links[drop] as ErpChainLink;
          const next = links[drop + 1] as ErpChainLink;
          // Only a batch that moved nothing (seqTo equal to its prevSeqTo) can go unnoticed across stores.
          const invisible = next.batchNo === 1 && dropped.seqTo === dropped.prevSeqTo;
          expect(outcomes[drop]).toBe(invisible ? "new_chain" : "gap");
        },
      ),
      { numRuns: 300 },
    );
  });

  test("later parts of a batch are not judged; malformed messages are not links", () => {
    const watch = new ErpChainWatch();
    const b = { stage: "order", partition: 0, storeId: "s", batchNo: 1, seqTo: 3, prevSeqTo: 0 };
    expect(watch.observe({ ...b, part: 2 })).toBeNull();
    const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
    expect(erpChainLink(enc(b))).toEqual(b);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        expect(() => erpChainLink(bytes)).not.toThrow();
      }),
    );
    for (const bad of [null, 1, "x", { ...b, batchNo: "1" }, { ...b, storeId: 7 }, { ...b, seqTo: 1.5 }])
      expect(erpChainLink(enc(bad))).toBeNull();
  });
});
