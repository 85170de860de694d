import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  available,
  foldEntries,
  Ledger,
  type LedgerEntry,
  parseStockCommand,
} from "../../src/domain/ledger/index.ts";

const limits = { quantityMax: 1_000_000, idBytesMax: 64, linesPerOrderMax: 10, itemsPerMessageMax: 10 };

/** The reference model: plain, obviously correct. Positions per SKU × warehouse, reservations per line. */
class Model {
  pos = new Map<string, { onHand: number; reserved: number }>();
  lines = new Map<string, { warehouse: string; qty: number }>();
  version = new Map<string, number>();
  private p(k: string) {
    return this.pos.get(k) ?? { onHand: 0, reserved: 0 };
  }
  bump(sku: string) {
    this.version.set(sku, (this.version.get(sku) ?? 0) + 1);
  }
  received(sku: string, w: string, qty: number) {
    const p = this.p(`${sku}|${w}`);
    this.pos.set(`${sku}|${w}`, { ...p, onHand: p.onHand + qty });
    this.bump(sku);
  }
  /** Each line is reserved once per attempt: a refused attempt stays refused (the order stage retries with a new one). */
  reserve(sku: string, line: string, qty: number, candidates: string[]): string | null {
    if (this.lines.has(line)) return null;
    this.lines.set(line, { warehouse: "", qty: 0 });
    for (const w of candidates) {
      const p = this.p(`${sku}|${w}`);
      if (p.onHand - p.reserved >= qty) {
        this.pos.set(`${sku}|${w}`, { ...p, reserved: p.reserved + qty });
        this.lines.set(line, { warehouse: w, qty });
        this.bump(sku);
        return w;
      }
    }
    return null;
  }
  release(sku: string, line: string) {
    const l = this.lines.get(line);
    if (l === undefined || l.qty === 0) return;
    const p = this.p(`${sku}|${l.warehouse}`);
    this.pos.set(`${sku}|${l.warehouse}`, { ...p, reserved: p.reserved - l.qty });
    this.lines.set(line, { ...l, qty: 0 });
    this.bump(sku);
  }
}

const op = fc.record({
  sku: fc.constantFrom("A", "B"),
  kind: fc.constantFrom("received", "reserve", "release"),
  warehouse: fc.constantFrom("w1", "w2"),
  line: fc.constantFrom("o1/1", "o2/1", "o3/1", "o4/1"),
  qty: fc.integer({ min: 1, max: 20 }),
});

describe("ledger (pure core) against the reference model", () => {
  test("10,000 random sequences: same outcomes, no oversell, positions are the fold of entries", () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 60 }), (ops) => {
        const ledger = new Ledger();
        const model = new Model();
        const entries: LedgerEntry[] = [];
        ops.forEach((o, i) => {
          const input = { seq: i + 1, atMs: 1000 + i };
          const [orderKey, lineId] = o.line.split("/") as [string, string];
          const ref = { orderKey: `${o.sku}-${orderKey}`, lineId };
          if (o.kind === "received") {
            ledger.applyStock(
              o.sku,
              { type: "received", warehouse: o.warehouse, qty: o.qty, ref: null },
              input,
            );
            model.received(o.sku, o.warehouse, o.qty);
          } else if (o.kind === "reserve") {
            const candidates = o.warehouse === "w1" ? ["w1", "w2"] : ["w2"];
            ledger.applyLine({ kind: "reserve", ref, sku: o.sku, qty: o.qty, candidates, attempt: 1 }, input);
            const expected = model.reserve(o.sku, `${ref.orderKey}/${lineId}`, o.qty, candidates);
            const results = ledger.takeChanges();
            entries.push(...results.entries);
            const answer = results.results[0];
            if (expected !== null) expect(answer).toMatchObject({ kind: "reserved", warehouse: expected });
            else if (answer !== undefined)
              expect(answer.kind === "refused" || answer.kind === "reserved").toBe(true);
            for (const s of ledger.cached())
              for (const p of Object.values(s.positions)) expect(available(p)).toBeGreaterThanOrEqual(0);
            return;
          } else {
            ledger.applyLine({ kind: "release", ref, sku: o.sku, attempt: 1 }, input);
            model.release(o.sku, `${ref.orderKey}/${lineId}`);
          }
          // invariant 1 after every step, for every position
          for (const s of ledger.cached())
            for (const p of Object.values(s.positions)) expect(available(p)).toBeGreaterThanOrEqual(0);
          entries.push(...ledger.takeChanges().entries);
        });
        for (const s of ledger.cached()) {
          expect(s.version).toBe(model.version.get(s.sku) ?? 0);
          const mine = entries.filter((e) => e.sku === s.sku);
          // invariant 4: versions strictly increasing per SKU, no gaps
          expect(mine.map((e) => e.version)).toEqual(mine.map((_, i) => i + 1));
          // invariant 5: the fold of entries equals the position
          const folded = foldEntries(mine);
          for (const [w, p] of Object.entries(s.positions)) {
            expect(folded.get(w)).toEqual(p);
            expect(p.onHand).toBe(model.pos.get(`${s.sku}|${w}`)?.onHand ?? 0);
            expect(p.reserved).toBe(model.pos.get(`${s.sku}|${w}`)?.reserved ?? 0);
          }
        }
      }),
      { numRuns: 10_000 },
    );
  });

  test("hot SKU: 1,000 units, 20,000 competing reservations: exactly 1,000 reserved", () => {
    const ledger = new Ledger();
    ledger.applyStock(
      "HOT",
      { type: "received", warehouse: "w1", qty: 1000, ref: null },
      { seq: 1, atMs: 0 },
    );
    let reserved = 0;
    for (let i = 0; i < 20_000; i++) {
      ledger.applyLine(
        {
          kind: "reserve",
          ref: { orderKey: `o${i}`, lineId: "1" },
          sku: "HOT",
          qty: 1,
          candidates: ["w1"],
          attempt: 1,
        },
        { seq: i + 2, atMs: 0 },
      );
      const p = ledger.get("HOT")?.positions.w1;
      expect(p && available(p)).toBeGreaterThanOrEqual(0);
    }
    for (const r of ledger.takeChanges().results) {
      if (r.kind === "reserved") reserved++;
      else expect(r).toMatchObject({ kind: "refused", code: "insufficient_available" });
    }
    expect(reserved).toBe(1000);
  });

  test("stock commands: override keeps reservations, counted below committed takes from reservations", () => {
    const ledger = new Ledger();
    const at = { seq: 1, atMs: 0 };
    ledger.applyStock("S", { type: "received", warehouse: "w1", qty: 10, ref: null }, at);
    ledger.applyLine(
      {
        kind: "reserve",
        ref: { orderKey: "o1", lineId: "1" },
        sku: "S",
        qty: 4,
        candidates: ["w1"],
        attempt: 1,
      },
      at,
    );
    ledger.applyStock("S", { type: "override", warehouse: "w1", available: 2, ref: null }, at);
    expect(ledger.get("S")?.positions.w1).toMatchObject({ onHand: 6, reserved: 4 });
    ledger.applyStock("S", { type: "hold", warehouse: "w1", qty: 1, bucket: "damaged", ref: null }, at);
    expect(
      ledger.applyStock("S", { type: "hold", warehouse: "w1", qty: 5, bucket: "damaged", ref: null }, at),
    ).toMatchObject({
      ok: false,
      code: "hold_exceeds_available",
    });
    ledger.takeChanges();
    ledger.applyStock("S", { type: "counted", warehouse: "w1", onHand: 3, ref: "count-1" }, at);
    const p = ledger.get("S")?.positions.w1;
    expect(p).toMatchObject({ onHand: 3, reserved: 0, damaged: 1 });
    expect(p && available(p)).toBe(2);
    expect(ledger.takeChanges().results).toEqual([
      { kind: "lost", ref: { orderKey: "o1", lineId: "1" }, sku: "S", attempt: 1, warehouse: "w1", qty: 4 },
    ]);
  });

  test("a duplicate reserve is answered again without a second reservation; a stale attempt changes nothing", () => {
    const ledger = new Ledger();
    const at = { seq: 1, atMs: 0 };
    ledger.applyStock("S", { type: "received", warehouse: "w1", qty: 10, ref: null }, at);
    const reserve = {
      kind: "reserve" as const,
      ref: { orderKey: "o", lineId: "1" },
      sku: "S",
      qty: 3,
      candidates: ["w1"],
      attempt: 1,
    };
    ledger.applyLine(reserve, at);
    ledger.applyLine(reserve, at);
    expect(ledger.get("S")?.positions.w1?.reserved).toBe(3);
    expect(ledger.takeChanges().results.map((r) => r.kind)).toEqual(["reserved", "reserved"]);
    ledger.applyLine({ kind: "release", ref: reserve.ref, sku: "S", attempt: 0 }, at);
    expect(ledger.get("S")?.positions.w1?.reserved).toBe(3);
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
    [{ type: "received", warehouse: "w", qty: -1 }, "qty_must_be_positive"],
    [{ type: "counted", warehouse: "w", onHand: -1 }, "onHand_must_not_be_negative"],
    [{ type: "hold", warehouse: "w", qty: 1, bucket: "lost" }, "bucket must be damaged or quality_control"],
    [{ type: "reserve", warehouse: "w", qty: 1 }, "type must be one of"],
    [{ type: "adjust", warehouse: "w", qty: 0 }, "qty_must_not_be_zero"],
    [{ type: "received", warehouse: "w", qty: 1.5 }, "whole number"],
    [{ type: "received", warehouse: "w", qty: "1" }, "whole number"],
    [{ type: "received", warehouse: "w", qty: 2_000_000 }, "at most 1000000"],
    [{ type: "received", warehouse: "w", qty: 1, ref: 7 }, "ref must be a non-empty string"],
    [{ type: "received", warehouse: "w", qty: 1, extra: true }, 'unknown field "extra" for received'],
  ])("%j is refused: %s", (body, detail) => {
    const r = ok(body);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.reason).toBe("invalid_command");
      expect(r.detail).toContain(detail);
    }
  });
});

describe("stock commands that change nothing", () => {
  test("an override to the current available and a safety stock at its level are no-ops, not crashes", () => {
    const ledger = new Ledger();
    const at = { seq: 1, atMs: 0 };
    ledger.applyStock("N", { type: "received", warehouse: "w1", qty: 5, ref: null }, at);
    expect(
      ledger.applyStock("N", { type: "override", warehouse: "w1", available: 5, ref: null }, at),
    ).toEqual({
      ok: true,
      sku: "N",
      version: 1,
    });
    ledger.applyStock("N", { type: "safety_stock", warehouse: "w1", qty: 2, ref: null }, at);
    expect(ledger.applyStock("N", { type: "safety_stock", warehouse: "w1", qty: 2, ref: null }, at)).toEqual({
      ok: true,
      sku: "N",
      version: 2,
    });
    expect(ledger.takeChanges().entries.map((e) => e.type)).toEqual(["received", "safety_stock"]);
  });
});

describe("no valid stock command can break the ledger", () => {
  const command = fc.oneof(
    fc.record({ type: fc.constant("received"), qty: fc.integer({ min: 1, max: 50 }) }),
    fc.record({ type: fc.constant("counted"), onHand: fc.integer({ min: 0, max: 50 }) }),
    fc.record({ type: fc.constant("override"), available: fc.integer({ min: 0, max: 50 }) }),
    fc.record({ type: fc.constant("adjust"), qty: fc.integer({ min: -50, max: 50 }).filter((q) => q !== 0) }),
    fc.record({
      type: fc.constant("hold"),
      qty: fc.integer({ min: 1, max: 20 }),
      bucket: fc.constantFrom("damaged", "quality_control"),
    }),
    fc.record({
      type: fc.constant("unhold"),
      qty: fc.integer({ min: 1, max: 20 }),
      bucket: fc.constantFrom("damaged", "quality_control"),
      to: fc.constantFrom("available", "scrap"),
    }),
    fc.record({ type: fc.constant("safety_stock"), qty: fc.integer({ min: 0, max: 20 }) }),
    fc.record({
      type: fc.constant("reserve"),
      qty: fc.integer({ min: 1, max: 20 }),
      line: fc.integer({ min: 0, max: 5 }),
    }),
    fc.record({ type: fc.constant("release"), line: fc.integer({ min: 0, max: 5 }) }),
  );
  test("random valid commands (2,000 sequences): never a throw, never a negative or oversold position", () => {
    fc.assert(
      fc.property(fc.array(command, { minLength: 1, maxLength: 80 }), (cmds) => {
        const ledger = new Ledger();
        const entries: LedgerEntry[] = [];
        cmds.forEach((c, i) => {
          const at = { seq: i + 1, atMs: i };
          if (c.type === "reserve" || c.type === "release") {
            const ref = { orderKey: "o", lineId: String(c.line) };
            if (c.type === "reserve") {
              ledger.applyLine(
                { kind: "reserve", ref, sku: "X", qty: c.qty, candidates: ["w1"], attempt: i + 1 },
                at,
              );
            } else
              ledger.applyLine(
                {
                  kind: "release",
                  ref,
                  sku: "X",
                  attempt: ledger.allocation("X", "o", String(c.line))?.attempt ?? 0,
                },
                at,
              );
          } else {
            const parsed = parseStockCommand({ ...c, warehouse: "w1" }, limits);
            expect(parsed.ok).toBe(true);
            if (parsed.ok) ledger.applyStock("X", parsed.value, at);
          }
          const p = ledger.get("X")?.positions.w1;
          if (p) expect(available(p)).toBeGreaterThanOrEqual(0);
          entries.push(...ledger.takeChanges().entries);
        });
        const p = ledger.get("X")?.positions.w1;
        if (p) expect(foldEntries(entries).get("w1")).toEqual(p);
      }),
      { numRuns: 2000 },
    );
  });
});
