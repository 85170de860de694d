import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  available,
  foldEntries,
  Ledger,
  type LedgerEntry,
  parseStockCommand,
  type StockCommand,
} from "../../src/domain/ledger/index.ts";

const limits = { quantityMax: 1_000_000, idBytesMax: 64 };

/** The reference model: plain, obviously correct. */
class Model {
  onHand = new Map<string, number>();
  reserved = new Map<string, number>();
  version = new Map<string, number>();
  apply(sku: string, c: StockCommand): boolean {
    const k = `${sku}|${c.warehouse}`;
    const on = this.onHand.get(k) ?? 0;
    const res = this.reserved.get(k) ?? 0;
    let ok = true;
    if (c.type === "received") this.onHand.set(k, on + c.qty);
    else if (c.type === "adjust") {
      if (on + c.qty < res) ok = false;
      else this.onHand.set(k, on + c.qty);
    } else if (c.type === "reserve") {
      if (on - res < c.qty) ok = false;
      else this.reserved.set(k, res + c.qty);
    } else if (res < c.qty) ok = false;
    else this.reserved.set(k, res - c.qty);
    if (ok) this.version.set(sku, (this.version.get(sku) ?? 0) + 1);
    return ok;
  }
}

const command = fc.record({
  sku: fc.constantFrom("A", "B", "C"),
  warehouse: fc.constantFrom("w1", "w2"),
  type: fc.constantFrom("received", "adjust", "reserve", "release") as fc.Arbitrary<StockCommand["type"]>,
  qty: fc.integer({ min: 1, max: 20 }),
  negative: fc.boolean(),
});

describe("ledger (pure core) against the reference model", () => {
  test("10,000 random sequences: same outcomes, no oversell, positions are the fold of entries", () => {
    fc.assert(
      fc.property(fc.array(command, { minLength: 1, maxLength: 60 }), (cmds) => {
        const ledger = new Ledger();
        const model = new Model();
        const entries: LedgerEntry[] = [];
        cmds.forEach((c, i) => {
          const qty = c.type === "adjust" && c.negative ? -c.qty : c.qty;
          const cmd = { type: c.type, warehouse: c.warehouse, qty, ref: `r${i}` } as StockCommand;
          const result = ledger.apply(c.sku, cmd, { seq: i + 1, atMs: 1000 + i });
          expect(result.ok).toBe(model.apply(c.sku, cmd));
          // invariant 1 after every step, for every position
          for (const s of ledger.all())
            for (const p of Object.values(s.positions)) expect(available(p)).toBeGreaterThanOrEqual(0);
          entries.push(...ledger.takeChanges().entries);
        });
        for (const s of ledger.all()) {
          expect(s.version).toBe(model.version.get(s.sku) ?? 0);
          const mine = entries.filter((e) => e.sku === s.sku);
          // invariant 4: versions strictly increasing per SKU, no gaps
          expect(mine.map((e) => e.version)).toEqual(mine.map((_, i) => i + 1));
          // invariant 5: the fold of entries equals the position
          const folded = foldEntries(mine);
          for (const [w, p] of Object.entries(s.positions)) {
            expect(folded.get(w)?.onHand).toBe(p.onHand);
            expect(folded.get(w)?.reserved).toBe(p.reserved);
            expect(p.onHand).toBe(model.onHand.get(`${s.sku}|${w}`) ?? 0);
            expect(p.reserved).toBe(model.reserved.get(`${s.sku}|${w}`) ?? 0);
          }
        }
      }),
      { numRuns: 10_000 },
    );
  });

  test("hot SKU: 1,000 units, 20,000 competing reservations: exactly 1,000 reserved", () => {
    const ledger = new Ledger();
    ledger.apply("HOT", { type: "received", warehouse: "w1", qty: 1000, ref: null }, { seq: 1, atMs: 0 });
    let ok = 0;
    for (let i = 0; i < 20_000; i++) {
      const r = ledger.apply(
        "HOT",
        { type: "reserve", warehouse: "w1", qty: 1, ref: `o${i}` },
        { seq: i + 2, atMs: 0 },
      );
      if (r.ok) ok++;
      else expect(r.code).toBe("insufficient_available");
    }
    expect(ok).toBe(1000);
    expect(ledger.get("HOT")?.positions.w1).toMatchObject({ onHand: 1000, reserved: 1000 });
  });

  test("a ledger rebuilt from its stored SKU states continues the versions", () => {
    const a = new Ledger();
    a.apply("S", { type: "received", warehouse: "w1", qty: 3, ref: null }, { seq: 1, atMs: 0 });
    const { skus } = a.takeChanges();
    const b = Ledger.fromSkus(structuredClone(skus));
    const r = b.apply("S", { type: "reserve", warehouse: "w1", qty: 2, ref: null }, { seq: 2, atMs: 0 });
    expect(r).toEqual({ ok: true, sku: "S", version: 2 });
  });

  test("a stored state that breaks an invariant is refused on load", () => {
    const broken = {
      sku: "X",
      version: 1,
      positions: { w1: { onHand: 1, reserved: 2, damaged: 0, qualityControl: 0, safetyStock: 0 } },
    };
    expect(() => Ledger.fromSkus([broken])).toThrow(/no oversell/);
  });
});

describe("stock command validation", () => {
  const ok = (b: unknown) => parseStockCommand(b, limits);
  test("valid commands parse", () => {
    expect(ok({ type: "received", warehouse: "w1", qty: 5 })).toEqual({
      ok: true,
      value: { type: "received", warehouse: "w1", qty: 5, ref: null },
    });
    expect(ok({ type: "adjust", warehouse: "w1", qty: -5, ref: "count-7" }).ok).toBe(true);
  });
  test.each([
    [null, "payload must be an object"],
    [[1], "payload must be an object"],
    [{ type: "x", warehouse: "w", qty: 1 }, "type must be one of"],
    [{ type: "received", qty: 1 }, "warehouse must be a non-empty string"],
    [{ type: "received", warehouse: "", qty: 1 }, "warehouse must be a non-empty string"],
    [{ type: "received", warehouse: "w".repeat(65), qty: 1 }, "at most 64 bytes"],
    [{ type: "received", warehouse: "w", qty: 0 }, "qty_must_be_positive"],
    [{ type: "reserve", warehouse: "w", qty: -1 }, "qty_must_be_positive"],
    [{ type: "adjust", warehouse: "w", qty: 0 }, "qty_must_not_be_zero"],
    [{ type: "received", warehouse: "w", qty: 1.5 }, "whole number"],
    [{ type: "received", warehouse: "w", qty: "1" }, "whole number"],
    [{ type: "received", warehouse: "w", qty: 2_000_000 }, "at most 1000000"],
    [{ type: "received", warehouse: "w", qty: 1, ref: 7 }, "ref must be a non-empty string"],
    [{ type: "received", warehouse: "w", qty: 1, extra: true }, 'unknown field "extra"'],
  ])("%j is refused: %s", (body, detail) => {
    const r = ok(body);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.reason).toBe("invalid_command");
      expect(r.detail).toContain(detail);
    }
  });
});
