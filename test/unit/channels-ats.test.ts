import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { InvariantError } from "../../src/domain/assert.ts";
import {
  atsOf,
  backedUnits,
  type ChannelSync,
  channelSyncDefaults,
  feedingWarehouses,
  isUrgent,
  marketplaceHeldOf,
  parseChannelSync,
} from "../../src/domain/channels/index.ts";
import { available, emptyPosition, type Position } from "../../src/domain/ledger/index.ts";

const pos = (onHand: number, more: Partial<Position> = {}): Position => ({
  ...emptyPosition(),
  onHand,
  ...more,
});

function rule(fields: Record<string, unknown> = {}): ChannelSync {
  const parsed = parseChannelSync(fields, "channels[0]");
  if (!parsed.ok) throw new Error(parsed.detail);
  return parsed.value;
}

const network = ["w1", "w2"]; // enabled warehouses serving the channel (w3 is disabled: not in the list)

describe("atsOf: hand-worked examples", () => {
  const positions = { w1: pos(130, { reserved: 10 }), w2: pos(40, { damaged: 5 }), w3: pos(50) };

  test("defaults: the sum of available over the feeding warehouses", () => {
    expect(atsOf(positions, "A", rule(), network)).toBe(120 + 35);
  });

  test("the documented example: share 80 %, buffer 10, marketplace holds 4, threshold 20 → 110", () => {
    const r = rule({ sharePercent: 80, bufferUnits: 10, marketplaceHeldUnits: 4, lowStockThreshold: 20 });
    expect(atsOf(positions, "A", r, network)).toBe(110);
    // w1 at 5 available: backed 40, shared 32, 32 − 10 − 4 = 18 < 20 → 0
    expect(atsOf({ ...positions, w1: pos(5) }, "A", r, network)).toBe(0);
  });

  test("buffer alone", () => {
    expect(atsOf(positions, "A", rule({ bufferUnits: 15 }), network)).toBe(140);
    expect(atsOf(positions, "A", rule({ bufferUnits: 500 }), network)).toBe(0);
  });

  test("share is floored and comes before the buffer", () => {
    // 155 × 33 / 100 = 51.15 → 51; − 1 = 50
    expect(atsOf(positions, "A", rule({ sharePercent: 33, bufferUnits: 1 }), network)).toBe(50);
    expect(atsOf(positions, "A", rule({ sharePercent: 0 }), network)).toBe(0);
  });

  test("low-stock threshold: below it shows 0, at it shows the figure", () => {
    expect(atsOf({ w1: pos(4) }, "A", rule({ lowStockThreshold: 5 }), network)).toBe(0);
    expect(atsOf({ w1: pos(5) }, "A", rule({ lowStockThreshold: 5 }), network)).toBe(5);
  });

  test("marketplace-held: the SKU's own figure, else the channel's default", () => {
    const r = rule({ marketplaceHeldUnits: 2, marketplaceHeld: { B: 30 } });
    expect(marketplaceHeldOf(r, "A")).toBe(2);
    expect(marketplaceHeldOf(r, "B")).toBe(30);
    expect(atsOf(positions, "A", r, network)).toBe(153);
    expect(atsOf(positions, "B", r, network)).toBe(125);
    expect(atsOf({ w1: pos(10) }, "B", r, network)).toBe(0);
  });

  test("a disabled warehouse does not feed, even when the rule lists it", () => {
    const r = rule({ warehouses: ["w1", "w3"] });
    expect(feedingWarehouses(r, network)).toEqual(["w1"]);
    expect(atsOf(positions, "A", r, network)).toBe(120);
  });

  test("a warehouse the rule does not list does not feed", () => {
    expect(atsOf(positions, "A", rule({ warehouses: ["w2"] }), network)).toBe(35);
  });

  test("a warehouse with no position, or nothing available, adds nothing", () => {
    expect(atsOf({}, "A", rule(), network)).toBe(0);
    expect(atsOf({ w1: pos(10, { reserved: 10 }) }, "A", rule(), network)).toBe(0);
  });

  test("a negative available (never stored, but read defensively) is clamped at 0, not subtracted", () => {
    const broken = { w1: pos(0, { reserved: 7 }), w2: pos(9) };
    expect(backedUnits(broken, rule(), network)).toBe(9);
    expect(atsOf(broken, "A", rule(), network)).toBe(9);
  });

  test("urgent: a change to 0 from anything else", () => {
    expect(isUrgent(5, 0)).toBe(true);
    expect(isUrgent(null, 0)).toBe(true);
    expect(isUrgent(0, 0)).toBe(false);
    expect(isUrgent(5, 1)).toBe(false);
    expect(isUrgent(0, 3)).toBe(false);
  });
});

describe("parseChannelSync", () => {
  test("fills defaults and ignores the fields parseNetwork owns", () => {
    const parsed = parseChannelSync({ id: "shopify", backorder: true }, "channels[0]");
    expect(parsed).toEqual({
      ok: true,
      value: { ...channelSyncDefaults, warehouses: ["*"], marketplaceHeld: {} },
    });
  });

  test("keeps every given field", () => {
    const raw = {
      warehouses: ["w1", "w2"],
      sharePercent: 50,
      bufferUnits: 3,
      lowStockThreshold: 2,
      marketplaceHeldUnits: 1,
      marketplaceHeld: { "SKU 1": 4 },
      requestsPerSecond: 0.5,
      itemsPerRequestMax: 20,
    };
    expect(parseChannelSync(raw, "channels[1]", ["w1", "w2", "w3"])).toEqual({ ok: true, value: raw });
  });

  const refused: Array<[string, Record<string, unknown>, RegExp]> = [
    [
      "not a list",
      { warehouses: "w1" },
      /channels\[0\]\.warehouses must be a list of warehouse ids, or \["\*"\]/,
    ],
    ["an empty list", { warehouses: [] }, /at least one warehouse .*sharePercent = 0/],
    ["a non-string id", { warehouses: ["w1", 2] }, /warehouses must be a list/],
    ["an empty id", { warehouses: [""] }, /warehouses must be a list/],
    ["* with ids", { warehouses: ["*", "w1"] }, /list ids or \["\*"\], not both/],
    ["a duplicate", { warehouses: ["w1", "w1"] }, /lists "w1" twice/],
    [
      "an unknown warehouse",
      { warehouses: ["w9"] },
      /unknown warehouse "w9"; add it under \[\[warehouses\]\]/,
    ],
    ["share above 100", { sharePercent: 101 }, /sharePercent must be a whole percent from 0 to 100/],
    ["share below 0", { sharePercent: -1 }, /sharePercent must be a whole percent/],
    ["fractional share", { sharePercent: 33.3 }, /sharePercent must be a whole percent/],
    ["share as text", { sharePercent: "50" }, /sharePercent must be a whole percent/],
    ["negative buffer", { bufferUnits: -1 }, /bufferUnits must be a whole number of units ≥ 0/],
    ["fractional buffer", { bufferUnits: 1.5 }, /bufferUnits must be a whole number/],
    ["huge buffer", { bufferUnits: 2_000_000_000 }, /bufferUnits must be at most 1000000000/],
    ["negative threshold", { lowStockThreshold: -3 }, /lowStockThreshold must be a whole number/],
    ["held as text", { marketplaceHeldUnits: "2" }, /marketplaceHeldUnits must be a whole number/],
    ["held table as list", { marketplaceHeld: [1] }, /marketplaceHeld must be a table of SKU = units/],
    ["held negative", { marketplaceHeld: { A: -1 } }, /marketplaceHeld\."A" must be a whole number/],
    ["held empty SKU", { marketplaceHeld: { "": 1 } }, /marketplaceHeld key must be a non-empty string/],
    ["held control char", { marketplaceHeld: { "A\u0000": 1 } }, /must not contain control characters/],
    ["rps zero", { requestsPerSecond: 0 }, /requestsPerSecond must be a number above 0/],
    [
      "rps infinite",
      { requestsPerSecond: Number.POSITIVE_INFINITY },
      /requestsPerSecond must be a number above 0/,
    ],
    ["rps too high", { requestsPerSecond: 10_001 }, /at most 10000/],
    ["items zero", { itemsPerRequestMax: 0 }, /itemsPerRequestMax must be a whole number from 1 to 10000/],
    ["items fractional", { itemsPerRequestMax: 2.5 }, /itemsPerRequestMax must be a whole number/],
  ];
  for (const [what, raw, message] of refused) {
    test(`refuses ${what}`, () => {
      const parsed = parseChannelSync(raw, "channels[0]", ["w1", "w2"]);
      expect(parsed.ok).toBe(false);
      if (!parsed.ok) expect(parsed.detail).toMatch(message);
    });
  }

  test("refuses a table that is not one, and too many per-SKU figures", () => {
    expect(parseChannelSync(null, "channels[3]")).toMatchObject({
      ok: false,
      detail: "channels[3] must be a table",
    });
    expect(parseChannelSync([], "channels[3]").ok).toBe(false);
    const many = Object.fromEntries(Array.from({ length: 10_001 }, (_, i) => [`S${i}`, 1]));
    const parsed = parseChannelSync({ marketplaceHeld: many }, "channels[0]");
    expect(parsed.ok ? "" : parsed.detail).toMatch(/more than 10000 SKUs; use marketplaceHeldUnits/);
  });

  test("a parsed rule is a copy: changing the input later changes nothing", () => {
    const raw = { warehouses: ["w1"] };
    const r = rule(raw);
    raw.warehouses.push("w2");
    expect(r.warehouses).toEqual(["w1"]);
  });
});

describe("atsOf: properties", () => {
  const position = fc
    .record({
      onHand: fc.integer({ min: 0, max: 1000 }),
      reserved: fc.integer({ min: 0, max: 1000 }),
      damaged: fc.integer({ min: 0, max: 50 }),
      qualityControl: fc.integer({ min: 0, max: 50 }),
      safetyStock: fc.integer({ min: 0, max: 50 }),
    })
    .map((p) => p as Position);
  const warehouseIds = ["w1", "w2", "w3", "w4"];
  const ruleArb = fc.record({
    warehouses: fc.oneof(fc.constant(["*"]), fc.subarray(warehouseIds, { minLength: 1 })),
    sharePercent: fc.integer({ min: 0, max: 100 }),
    bufferUnits: fc.integer({ min: 0, max: 200 }),
    lowStockThreshold: fc.integer({ min: 0, max: 200 }),
    marketplaceHeldUnits: fc.integer({ min: 0, max: 200 }),
    marketplaceHeld: fc.dictionary(fc.constantFrom("A", "B"), fc.integer({ min: 0, max: 200 })),
  });

  test("ATS lies in [0, Σ available of the feeding warehouses] and is monotone in stock", () => {
    fc.assert(
      fc.property(
        fc.dictionary(fc.constantFrom(...warehouseIds), position),
        ruleArb,
        fc.subarray(warehouseIds),
        fc.constantFrom("A", "B", "C"),
        fc.integer({ min: 1, max: 100 }),
        (positions, raw, enabled, sku, extra) => {
          const r = rule(raw);
          const ats = atsOf(positions, sku, r, enabled);
          const sum = feedingWarehouses(r, enabled).reduce(
            (s, w) => s + Math.max(0, positions[w] === undefined ? 0 : available(positions[w])),
            0,
          );
          expect(ats).toBeGreaterThanOrEqual(0);
          expect(ats).toBeLessThanOrEqual(sum);
          expect(Number.isInteger(ats)).toBe(true);
          // Receiving more stock at a feeding warehouse never lowers the channel's ATS.
          const w = feedingWarehouses(r, enabled)[0];
          if (w !== undefined) {
            const more = {
              ...positions,
              [w]: { ...(positions[w] ?? emptyPosition()), onHand: (positions[w]?.onHand ?? 0) + extra },
            };
            expect(atsOf(more, sku, r, enabled)).toBeGreaterThanOrEqual(ats);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  test("the ATS assertions stop a broken rule from showing more than the ledger backs", () => {
    const r = { ...rule(), sharePercent: 150 }; // not reachable through parseChannelSync
    expect(() => atsOf({ w1: pos(10) }, "A", r, network)).toThrow(InvariantError);
  });
});
