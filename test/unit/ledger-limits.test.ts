import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { loadConfig } from "../../src/config/index.ts";
import { atsOf, channelSyncDefaults } from "../../src/domain/channels/index.ts";
import {
  checkLineRequest,
  emptyView,
  Ledger,
  type LedgerView,
  type LineRequest,
  ledgerLimitsDefault,
  parseStockCommand,
  positionFields,
  type SkuState,
  type WarehouseLoad,
} from "../../src/domain/ledger/index.ts";
import { networkLimits } from "../../src/domain/network/index.ts";
import { idRecord, own } from "../../src/domain/own.ts";

// Finding 7: nothing capped accumulated stock, so receipts past 2^53 broke the ATS assertion and crash-looped
// the ledger. Every field of a position is held to ledger.positionUnitsMax; a change past it is a refusal,
// and no input, valid as the stage checks it, reaches an assertion.

const at = (seq: number) => ({ seq, atMs: seq * 1000 });
const received = (qty: number, warehouse = "w1") => ({
  type: "received" as const,
  warehouse,
  qty,
  ref: null,
});

describe("ledger.positionUnitsMax", () => {
  test("the default, and the config relation quantityMax ≤ positionUnitsMax", () => {
    const c = loadConfig({ env: {}, file: "config/sluice.toml" });
    expect(c.ledger.positionUnitsMax).toBe(ledgerLimitsDefault.positionUnitsMax);
    // ATS sums at most warehousesMax positions: even at the largest setting the sum is an exact integer.
    expect(networkLimits.warehousesMax * 10_000_000_000_000).toBeLessThan(Number.MAX_SAFE_INTEGER);
    expect(() =>
      loadConfig({
        env: {},
        file: "config/sluice.toml",
        overrides: { ledger: { quantityMax: 2_000_000_000_000 } },
      }),
    ).toThrow(/ledger.quantityMax \(2000000000000\) must not exceed ledger.positionUnitsMax/);
    expect(() =>
      loadConfig({
        env: {},
        file: "config/sluice.toml",
        overrides: { ledger: { positionUnitsMax: 10 ** 14 } },
      }),
    ).toThrow(/ledger.positionUnitsMax/);
  });

  test("repeated receipts stop at the ceiling with a refusal, never an assertion (the issue's crash loop)", () => {
    const ledger = new Ledger();
    let refusals = 0;
    for (let i = 1; i <= 1100; i++) {
      const r = ledger.applyStock("A", received(1_000_000_000), at(i));
      if (!r.ok) {
        expect(r.code).toBe("position_units_over_limit");
        refusals++;
      }
    }
    // 10^12 / 10^9 = 1000 receipts fit; the other 100 are refused.
    expect(refusals).toBe(100);
    expect(own(ledger.get("A")?.positions, "w1")?.onHand).toBe(1_000_000_000_000);
    // Past 2^53 in the old code: now the ATS of the SKU is still computed, exactly.
    const state = ledger.get("A") as SkuState;
    expect(atsOf(state.positions, "A", { ...channelSyncDefaults, warehouses: ["*"] }, ["w1"])).toBe(10 ** 12);
  });

  test("every change that adds to a field is held to the ceiling: received, adjust, override, counted, return", () => {
    const ledger = new Ledger(emptyView, { positionUnitsMax: 100 });
    expect(ledger.applyStock("A", received(100), at(1)).ok).toBe(true);
    expect(ledger.applyStock("A", received(1), at(2))).toEqual({
      ok: false,
      sku: "A",
      code: "position_units_over_limit",
    });
    expect(
      ledger.applyStock("A", { type: "adjust", warehouse: "w1", qty: 1, ref: null }, at(3)),
    ).toMatchObject({
      code: "position_units_over_limit",
    });
    expect(
      ledger.applyStock("A", { type: "counted", warehouse: "w1", onHand: 101, ref: null }, at(4)),
    ).toMatchObject({
      code: "position_units_over_limit",
    });
    // Reserve 10, then override available to 95: on hand would be 105.
    ledger.applyLine(
      {
        kind: "reserve",
        ref: { orderKey: "o", lineId: "1" },
        sku: "A",
        qty: 10,
        candidates: ["w1"],
        attempt: 1,
      },
      at(5),
    );
    expect(
      ledger.applyStock("A", { type: "override", warehouse: "w1", available: 95, ref: null }, at(6)),
    ).toMatchObject({
      code: "position_units_over_limit",
    });
    expect(
      ledger.applyStock("A", { type: "override", warehouse: "w1", available: 90, ref: null }, at(7)).ok,
    ).toBe(true);
    // Ship 10 and receive 10 again: the position is full; a return of 4 would pass the ceiling.
    ledger.applyLine(
      { kind: "ship", ref: { orderKey: "o", lineId: "1" }, sku: "A", qty: 10, attempt: 1, eventId: "s1" },
      at(8),
    );
    expect(ledger.applyStock("A", received(10), at(9)).ok).toBe(true);
    const ret: LineRequest = {
      kind: "return",
      ref: { orderKey: "o", lineId: "1" },
      sku: "A",
      eventId: "r1",
      qty: 4,
      disposition: "sellable",
      warehouse: "w1",
      attempt: 1,
    };
    expect(ledger.applyLine(ret, at(10))).toBe("position_units_over_limit");
    expect(ledger.allocation("A", "o", "1")).toMatchObject({ returned: 0, eventIds: ["s1"] });
    // Once there is room, the same return applies.
    expect(ledger.applyStock("A", { type: "adjust", warehouse: "w1", qty: -4, ref: null }, at(11)).ok).toBe(
      true,
    );
    expect(ledger.applyLine(ret, at(12))).toBeNull();
    expect(ledger.allocation("A", "o", "1")).toMatchObject({ returned: 4, eventIds: ["s1", "r1"] });
    expect(own(ledger.get("A")?.positions, "w1")?.onHand).toBe(100);
  });

  test("a position above a lowered ceiling may still go down", () => {
    const stored: SkuState = {
      sku: "A",
      version: 3,
      positions: idRecord([
        ["w1", { onHand: 500, reserved: 0, damaged: 0, qualityControl: 0, safetyStock: 0 }],
      ]),
    };
    const view: LedgerView = { ...emptyView, getSku: () => structuredClone(stored) };
    const ledger = new Ledger(view, { positionUnitsMax: 100 });
    expect(ledger.applyStock("A", { type: "adjust", warehouse: "w1", qty: -100, ref: null }, at(1)).ok).toBe(
      true,
    );
    expect(
      ledger.applyStock("A", { type: "hold", warehouse: "w1", qty: 50, bucket: "damaged", ref: null }, at(2))
        .ok,
    ).toBe(true);
    expect(ledger.applyStock("A", received(1), at(3))).toMatchObject({ code: "position_units_over_limit" });
    expect(
      ledger.applyStock("A", { type: "counted", warehouse: "w1", onHand: 80, ref: null }, at(4)).ok,
    ).toBe(true);
    expect(own(ledger.get("A")?.positions, "w1")).toMatchObject({ onHand: 80, damaged: 50 });
  });

  test("a warehouse's open reservations stay exact: a reservation that would pass 2^53 − 1 goes elsewhere", () => {
    const load: WarehouseLoad = {
      warehouse: "w1",
      reserved: Number.MAX_SAFE_INTEGER - 3,
      shippedDay: 0,
      shippedUnits: 0,
    };
    const view: LedgerView = { ...emptyView, getLoad: (w) => (w === "w1" ? load : undefined) };
    const ledger = new Ledger(view);
    ledger.applyStock("A", received(10, "w1"), at(1));
    ledger.applyStock("A", received(10, "w2"), at(2));
    const reserve = (lineId: string, qty: number): LineRequest => ({
      kind: "reserve",
      ref: { orderKey: "o", lineId },
      sku: "A",
      qty,
      candidates: ["w1", "w2"],
      attempt: 1,
    });
    ledger.applyLine(reserve("1", 3), at(3));
    ledger.applyLine(reserve("2", 1), at(4));
    const { results, loads } = ledger.takeChanges();
    expect(results.map((r) => (r.kind === "reserved" ? r.warehouse : r.kind))).toEqual(["w1", "w2"]);
    expect(loads.find((l) => l.warehouse === "w1")?.reserved).toBe(Number.MAX_SAFE_INTEGER);
  });
});

// ---- no input reaches an assertion ----------------------------------------------------------------

const limits = { quantityMax: 1_000_000, idBytesMax: 64, linesPerOrderMax: 10, itemsPerMessageMax: 10 };
const anyQty = fc.oneof(
  fc.integer({ min: -limits.quantityMax, max: limits.quantityMax }),
  fc.constantFrom(
    0,
    1,
    limits.quantityMax,
    -limits.quantityMax,
    limits.quantityMax + 1,
    Number.NaN,
    Infinity,
  ),
);
const warehouse = fc.constantFrom("w1", "w2", "constructor", "__proto__");
const rawStock = fc.record({
  type: fc.constantFrom("received", "counted", "override", "adjust", "hold", "unhold", "safety_stock"),
  warehouse,
  qty: anyQty,
  onHand: anyQty,
  available: anyQty,
  bucket: fc.constantFrom("damaged", "quality_control"),
  to: fc.constantFrom("available", "scrap"),
});
const rawLine = fc.record({
  kind: fc.constantFrom("reserve", "release", "ship", "reject", "return"),
  ref: fc.record({ orderKey: fc.constantFrom("o1", "o2"), lineId: fc.constantFrom("1", "2") }),
  sku: fc.constant("A"),
  qty: anyQty,
  candidates: fc.array(warehouse, { maxLength: 3 }),
  attempt: fc.integer({ min: 0, max: 3 }),
  eventId: fc.constantFrom("e1", "e2", "e3"),
  stockMissing: fc.boolean(),
  disposition: fc.constantFrom("sellable", "damaged", "quality_control"),
  warehouse,
});

/** Keeps only the fields the command type takes, as a producer that read the docs would send them. */
function stockBody(raw: Record<string, unknown>): Record<string, unknown> {
  const fields: Record<string, string[]> = {
    received: ["qty"],
    counted: ["onHand"],
    override: ["available"],
    adjust: ["qty"],
    hold: ["qty", "bucket"],
    unhold: ["qty", "bucket", "to"],
    safety_stock: ["qty"],
  };
  const out: Record<string, unknown> = { type: raw.type, warehouse: raw.warehouse };
  for (const f of fields[raw.type as string] ?? []) out[f] = raw[f];
  return out;
}

describe("no input reaches an assertion", () => {
  test("property: any checked stock commands and line requests, near a small ceiling, never throw and keep every field in [0, ceiling]", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: limits.quantityMax, max: 3 * limits.quantityMax }),
        fc.array(
          fc.oneof(
            rawStock.map((s) => ({ stock: s })),
            rawLine.map((l) => ({ line: l })),
          ),
          { maxLength: 60 },
        ),
        (ceiling, inputs) => {
          const ledger = new Ledger(emptyView, { positionUnitsMax: ceiling });
          for (const [i, input] of inputs.entries()) {
            if ("stock" in input) {
              const parsed = parseStockCommand(stockBody(input.stock), limits);
              if (parsed.ok) ledger.applyStock("A", parsed.value, at(i + 1));
            } else if (checkLineRequest(input.line, limits) === null) {
              ledger.applyLine(input.line as LineRequest, at(i + 1));
            }
          }
          const state = ledger.get("A");
          for (const w of ["w1", "w2", "constructor", "__proto__"]) {
            const p = own(state?.positions, w);
            if (p === undefined) continue;
            for (const f of positionFields) {
              expect(Number.isSafeInteger(p[f])).toBe(true);
              expect(p[f]).toBeGreaterThanOrEqual(0);
              expect(p[f]).toBeLessThanOrEqual(ceiling);
            }
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  test("ATS at the largest ceiling over the most warehouses is exact (no product past 2^53)", () => {
    const ceiling = 10_000_000_000_000;
    const ids = Array.from({ length: networkLimits.warehousesMax }, (_, i) => `w${i}`);
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: ceiling }), { minLength: ids.length, maxLength: ids.length }),
        fc.integer({ min: 0, max: 100 }),
        (onHands, sharePercent) => {
          const positions = idRecord(
            ids.map((w, i) => [
              w,
              { onHand: onHands[i] as number, reserved: 0, damaged: 0, qualityControl: 0, safetyStock: 0 },
            ]),
          );
          const backed = onHands.reduce((a, b) => a + b, 0);
          const ats = atsOf(positions, "A", { ...channelSyncDefaults, warehouses: ["*"], sharePercent }, ids);
          expect(BigInt(ats)).toBe((BigInt(backed) * BigInt(sharePercent)) / 100n);
        },
      ),
      { numRuns: 200 },
    );
  });
});
