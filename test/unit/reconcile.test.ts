import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  type ChannelBudget,
  compareReported,
  type PairView,
  parseChannelSnapshot,
  type ReconcileReport,
  type ReportedItem,
  reportMessages,
  SnapshotLog,
  StockSync,
} from "../../src/domain/sync/index.ts";

// Channel reconciliation, the pure part: a channel's report against what was last offered, the parts a
// partition remembers, and the report's messages. The stage's wiring is covered by
// test/integration/reconcile.test.ts.

const limits = { quantityMax: 1_000_000, idBytesMax: 64, linesPerOrderMax: 100, itemsPerMessageMax: 50 };
const parse = (body: unknown) => parseChannelSnapshot(body, limits);
const detailOf = (body: unknown) => {
  const r = parse(body);
  return r.ok ? "ok" : r.detail;
};

describe("parseChannelSnapshot", () => {
  test("a partial report, with defaults; a full one in parts", () => {
    expect(parse({ snapshotId: "S-1", items: [{ sku: "A", qty: 3 }] })).toEqual({
      ok: true,
      value: { snapshotId: "S-1", full: false, part: 1, parts: 1, items: [{ sku: "A", qty: 3 }] },
    });
    const full = parse({ snapshotId: "S-2", full: true, part: 2, parts: 3, items: [] });
    expect(full).toEqual({
      ok: true,
      value: { snapshotId: "S-2", full: true, part: 2, parts: 3, items: [] },
    });
  });

  test("ids that look like inherited property names are ordinary ids", () => {
    const items = ["__proto__", "constructor", "toString", "hasOwnProperty"].map((sku, i) => ({
      sku,
      qty: i,
    }));
    const r = parse(JSON.parse(JSON.stringify({ snapshotId: "__proto__", items })));
    expect(r.ok && r.value.items.map((i) => i.sku)).toEqual([
      "__proto__",
      "constructor",
      "toString",
      "hasOwnProperty",
    ]);
    expect(r.ok && r.value.snapshotId).toBe("__proto__");
    // Listed twice, even as "__proto__" (a Set, not an object, remembers what was listed).
    const twice = JSON.parse(
      '{"snapshotId":"S","items":[{"sku":"__proto__","qty":1},{"sku":"__proto__","qty":2}]}',
    );
    expect(detailOf(twice)).toContain("listed twice");
  });

  test("invalid reports say what is wrong", () => {
    expect(detailOf(null)).toContain("payload must be an object");
    expect(detailOf({ items: [{ sku: "A", qty: 1 }] })).toContain("snapshotId must be a non-empty string");
    expect(detailOf({ snapshotId: "S", items: [] })).toContain("items must not be empty");
    expect(detailOf({ snapshotId: "S", items: [{ sku: "A", qty: 1.5 }] })).toContain("items[0].qty");
    expect(detailOf({ snapshotId: "S", items: [{ sku: "A", qty: 2e6 }] })).toContain("items[0].qty");
    expect(detailOf({ snapshotId: "S", items: [{ sku: "", qty: 1 }] })).toContain("items[0].sku");
    expect(detailOf({ snapshotId: "S", items: [{ sku: "A", qty: 1, ats: 2 }] })).toContain(
      'unknown field "ats"',
    );
    expect(detailOf({ snapshotId: "S", items: [{ sku: "A", qty: 1 }], extra: 1 })).toContain(
      'unknown field "extra"',
    );
    expect(detailOf({ snapshotId: "S", full: "yes", items: [] })).toContain("full must be true or false");
    expect(detailOf({ snapshotId: "S", part: 3, parts: 2, items: [{ sku: "A", qty: 1 }] })).toContain(
      "part must",
    );
    expect(detailOf({ snapshotId: "S", parts: 0, items: [{ sku: "A", qty: 1 }] })).toContain("parts must");
    const many = Array.from({ length: 51 }, (_, i) => ({ sku: `S${i}`, qty: 1 }));
    expect(detailOf({ snapshotId: "S", items: many })).toContain("at most 50 items");
    expect(detailOf({ snapshotId: "S\u0000", items: [{ sku: "A", qty: 1 }] })).toContain(
      "control characters",
    );
  });

  test("never throws on arbitrary input", () => {
    fc.assert(
      fc.property(fc.anything(), (body) => {
        const r = parse(body);
        if (!r.ok) expect(r.reason).toBe("invalid_command");
      }),
    );
  });
});

// ---- the property: drift counted exactly, every drifted pair offered once, within the budget ----------

/** What the partition knows per SKU (undefined: a SKU it never saw). */
const knownArb = fc.dictionary(
  fc.constantFrom("A", "B", "C", "D", "E", "F", "G", "__proto__", "constructor", "toString"),
  fc.record({
    published: fc.option(fc.integer({ min: 0, max: 5 }), { nil: null }),
    ats: fc.integer({ min: 0, max: 5 }),
    waiting: fc.boolean(),
  }),
  { noNullPrototype: true },
);
const reportArb = fc.uniqueArray(
  fc.record({
    sku: fc.constantFrom(
      "A",
      "B",
      "C",
      "D",
      "E",
      "F",
      "G",
      "H",
      "__proto__",
      "constructor",
      "toString",
      "valueOf",
    ),
    qty: fc.integer({ min: -2, max: 5 }),
  }),
  { selector: (i) => i.sku, maxLength: 12 },
);
const budgetArb: fc.Arbitrary<ChannelBudget> = fc.record({
  requestsPerSecond: fc.constantFrom(0.5, 1, 5, 20),
  itemsPerRequestMax: fc.integer({ min: 1, max: 4 }),
  burstRequestsMax: fc.integer({ min: 1, max: 3 }),
});

type Known = Record<string, { published: number | null; ats: number; waiting: boolean }>;
const viewOf =
  (known: Known) =>
  (sku: string): PairView =>
    Object.hasOwn(known, sku) ? (known[sku] as PairView) : null;

describe("compareReported and healing through StockSync", () => {
  test("drift is counted exactly; each drifted pair is offered once and sent within the budget", () => {
    fc.assert(
      fc.property(knownArb, reportArb, budgetArb, (known, report, budget) => {
        const c = compareReported(report, viewOf(known));
        // The reference: a SKU waiting is in flight; else compare with last offered (else ATS now; unknown: 0).
        const expectDrifted: string[] = [];
        let inFlight = 0;
        for (const { sku, qty } of report) {
          const k = Object.hasOwn(known, sku) ? known[sku] : undefined;
          if (k?.waiting) inFlight++;
          else if (qty !== (k === undefined ? 0 : (k.published ?? k.ats))) expectDrifted.push(sku);
        }
        expect(c.drifted.map((d) => d.sku)).toEqual(expectDrifted);
        expect(c.inFlight).toBe(inFlight);
        expect(c.matched).toBe(report.length - inFlight - expectDrifted.length);
        for (const d of c.drifted) {
          const k = Object.hasOwn(known, d.sku) ? known[d.sku] : undefined;
          expect(d.ats).toBe(k?.ats ?? 0);
        }

        // Heal: offer each drifted pair's ATS now, then drain the channel over time.
        const sync = new StockSync({ flushWindowMs: 50, pendingCountMax: 1000 }, () => budget);
        for (const d of c.drifted) {
          expect(
            sync.offer("shop", { sku: d.sku, ats: d.ats, version: 1, atMs: 0 }, 0, d.reported > d.ats),
          ).toBe("queued");
        }
        const sent: string[] = [];
        let requests = 0;
        const horizonMs = 60_000;
        for (let t = 0; t <= horizonMs && sync.pendingCount > 0; t += 25) {
          const taken = sync.take(t);
          requests += taken.length;
          // Never more than the bucket allows up to t: depth + rate × t.
          expect(requests).toBeLessThanOrEqual(
            budget.burstRequestsMax + (budget.requestsPerSecond * t) / 1000,
          );
          for (const r of taken) {
            expect(r.items.length).toBeLessThanOrEqual(budget.itemsPerRequestMax);
            sent.push(...r.items.map((i) => i.sku));
          }
        }
        // Every drifted pair sent exactly once, nothing else.
        expect([...sent].sort()).toEqual([...expectDrifted].sort());
      }),
      { numRuns: 300 },
    );
  });
});

describe("SnapshotLog", () => {
  const head = (snapshotId: string, part = 1, parts = 1, full = false) => ({ snapshotId, full, part, parts });

  test("a part heard again changes nothing; a full snapshot is complete once all parts are heard", () => {
    const log = new SnapshotLog();
    const first = log.admit("shop", head("S", 2, 3, true), 10);
    expect(first).toMatchObject({ kind: "new", complete: false });
    expect(log.admit("shop", head("S", 2, 3, true), 11)).toEqual({ kind: "duplicate" });
    expect(log.admit("shop", head("S", 1, 3, true), 12)).toMatchObject({ kind: "new", complete: false });
    const last = log.admit("shop", head("S", 3, 3, true), 13);
    expect(last).toMatchObject({ kind: "new", complete: true, row: { seen: [1, 2, 3], seq: 10 } });
    expect(log.admit("shop", head("S", 3, 3, true), 14)).toEqual({ kind: "duplicate" });
    // The same id on another channel is another snapshot.
    expect(log.admit("web", head("S", 3, 3, true), 15)).toMatchObject({ kind: "new" });
  });

  test("a snapshot announced differently is a conflict", () => {
    const log = new SnapshotLog();
    log.admit("shop", head("S", 1, 2, true), 1);
    const c = log.admit("shop", head("S", 2, 3, true), 2);
    expect(c.kind).toBe("conflict");
    expect(log.admit("shop", head("S", 2, 2, false), 3).kind).toBe("conflict");
  });

  test("bounded per channel: the oldest snapshot is forgotten first", () => {
    const log = new SnapshotLog(3);
    for (let i = 0; i < 3; i++) expect(log.admit("shop", head(`S${i}`), i)).toMatchObject({ evicted: [] });
    expect(log.admit("shop", head("S3"), 3)).toMatchObject({ kind: "new", evicted: ["S0"] });
    expect(log.rows("shop").map((r) => r.snapshotId)).toEqual(["S1", "S2", "S3"]);
    expect(log.admit("shop", head("S1"), 4)).toEqual({ kind: "duplicate" });
  });

  test("ids that look like inherited property names", () => {
    const log = new SnapshotLog();
    for (const id of ["__proto__", "constructor", "toString"]) {
      expect(log.admit("__proto__", head(id), 1).kind).toBe("new");
      expect(log.admit("__proto__", head(id), 2).kind).toBe("duplicate");
    }
    expect(log.admit("constructor", head("__proto__"), 3).kind).toBe("new");
  });

  test("property: duplicates anywhere in the stream have no effect on what is offered", () => {
    const partArb = fc.record({
      snapshot: fc.integer({ min: 0, max: 3 }),
      part: fc.integer({ min: 1, max: 3 }),
      items: reportArb,
    });
    fc.assert(
      fc.property(
        fc.array(partArb, { maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        knownArb,
        (parts, repeats, known) => {
          // The content of a part is fixed by its (snapshot, part): a copy carries the same items.
          const byKey = new Map<string, ReportedItem[]>();
          for (const p of parts)
            if (!byKey.has(`${p.snapshot}/${p.part}`)) byKey.set(`${p.snapshot}/${p.part}`, p.items);
          const unique = [...byKey].map(([key, items]) => ({ key, items }));
          const withCopies = [...unique];
          for (const r of repeats)
            if (unique.length > 0) withCopies.push(unique[r % unique.length] as (typeof unique)[0]);
          const run = (stream: typeof unique) => {
            const log = new SnapshotLog();
            const offered: string[] = [];
            stream.forEach(({ key, items }, seq) => {
              const [id, part] = key.split("/");
              const a = log.admit("shop", head(`S${id}`, Number(part), 3, true), seq);
              if (a.kind !== "new") return;
              offered.push(...compareReported(items, viewOf(known)).drifted.map((d) => `${key}:${d.sku}`));
            });
            return offered.sort();
          };
          expect(run(withCopies)).toEqual(run(unique));
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe("reportMessages", () => {
  const report = (healed: number, skuBytes = 8): ReconcileReport => ({
    channel: "shop",
    snapshotId: "S-1",
    full: false,
    part: 1,
    parts: 1,
    partition: 0,
    reported: healed,
    matched: 0,
    inFlight: 0,
    drifted: healed,
    healed: Array.from({ length: healed }, (_, i) => ({
      sku: `${i}`.padStart(skuBytes, "x"),
      reported: 5,
      published: 3,
      ats: 3,
    })),
    deferred: 0,
    resync: false,
    atMs: 1,
  });

  test("one message when it fits; pages never over the byte or item bound, healed kept in order", () => {
    expect(reportMessages(report(3), 65_536)).toHaveLength(1);
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 400 }),
        fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 600, max: 8000 }),
        (n, skuBytes, bytesMax) => {
          const r = report(n, skuBytes);
          const messages = reportMessages(r, bytesMax, 50);
          const parsed = messages.map((m) => JSON.parse(m));
          for (const m of messages) expect(Buffer.byteLength(m)).toBeLessThanOrEqual(bytesMax);
          for (const [i, p] of parsed.entries()) {
            expect(p.page).toBe(i + 1);
            expect(p.pages).toBe(messages.length);
            expect(p.healed.length).toBeLessThanOrEqual(50);
            expect(p).toMatchObject({ channel: "shop", snapshotId: "S-1", drifted: n });
          }
          expect(parsed.flatMap((p) => p.healed)).toEqual(r.healed);
        },
      ),
      { numRuns: 200 },
    );
  });
});
