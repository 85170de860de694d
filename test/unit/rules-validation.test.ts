import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { parseChannelSync } from "../../src/domain/channels/index.ts";
import { networkLimits, parseNetwork } from "../../src/domain/network/index.ts";
import { validateRules } from "../../src/rules/store.ts";

// Finding 12 (part): a rule set is an input like any other. Its ids follow the ledger's id rule, every number
// is finite and in range, counts are whole and bounded, ids are unique, and every refusal names the field.

const refuses = (raw: unknown, detail: string | RegExp, idBytesMax?: number) => {
  const parsed = parseNetwork(raw, "v", idBytesMax === undefined ? undefined : { idBytesMax });
  expect(parsed.ok).toBe(false);
  if (!parsed.ok) expect(parsed.detail).toMatch(detail);
};
const accepts = (raw: unknown) => {
  const parsed = parseNetwork(raw, "v");
  if (!parsed.ok) throw new Error(parsed.detail);
  return parsed.value;
};
const wh = (more: Record<string, unknown> = {}) => ({ id: "w1", ...more });
const ch = (more: Record<string, unknown> = {}) => ({ id: "shop", ...more });

/** Non-finite numbers as TOML gives them (JSON has none; msgpack carries them as floats). */
const nonFinite = Bun.TOML.parse("a = nan\nb = inf\nc = -inf") as Record<string, number>;

describe("ids in a rule set follow the id rule of inputs", () => {
  test("warehouse, channel, carrier, served-channel, sync-warehouse and SKU ids", () => {
    const bad: Array<[string, unknown]> = [
      ["empty", ""],
      ["control character", "w\u0000"],
      ["newline", "w\n1"],
      ["DEL", "w\u007f"],
      ["too long", "x".repeat(257)],
      ["not a string", 7],
    ];
    for (const [, id] of bad) {
      refuses({ warehouses: [wh({ id })] }, /^warehouses\[0\]\.id must/);
      refuses({ channels: [ch({ id })] }, /^channels\[0\]\.id must/);
      refuses(
        { warehouses: [wh({ carriers: [{ id, cutoff: "10:00", transitDays: 1 }] })] },
        /^warehouses\[0\]\.carriers\[0\]\.id must/,
      );
      refuses(
        { warehouses: [wh({ channels: [id] })] },
        /^warehouses\[0\]\.channels\[0\] must .*a channel id/,
      );
      refuses(
        { warehouses: [wh()], channels: [ch({ warehouses: [id] })] },
        /^channels\[0\]\.warehouses must be a list of warehouse ids.*: channels\[0\]\.warehouses\[0\] must/,
      );
      if (typeof id === "string")
        refuses({ warehouses: [wh({ minStock: { [id]: 1 } })] }, /^warehouses\[0\]\.minStock key must/);
    }
  });

  test("ledger.idBytesMax, when given, bounds every id", () => {
    refuses({ warehouses: [wh({ id: "x".repeat(17) })] }, "warehouses[0].id must be at most 16 bytes", 16);
    refuses({ channels: [ch({ id: "x".repeat(17) })] }, "channels[0].id must be at most 16 bytes", 16);
    refuses(
      { warehouses: [wh()], channels: [ch({ marketplaceHeld: { ["x".repeat(17)]: 1 } })] },
      "channels[0].marketplaceHeld key must be at most 16 bytes",
      16,
    );
    const ok = validateRules({ warehouses: [wh({ id: "x".repeat(16) })] }, "c", { idBytesMax: 16 });
    expect(ok.ok).toBe(true);
    expect(validateRules({ warehouses: [wh({ id: "x".repeat(17) })] }, "c", { idBytesMax: 16 }).ok).toBe(
      false,
    );
  });

  test("a region is a string an id could be, or empty", () => {
    refuses({ warehouses: [wh({ region: 3 })] }, "warehouses[0].region must be a string");
    refuses({ warehouses: [wh({ region: "S\u0000P" })] }, "warehouses[0].region must be a string");
    expect(accepts({ warehouses: [wh({ region: "" })] }).warehouses[0]?.region).toBe("");
  });
});

describe("duplicates are refused, naming the one listed twice", () => {
  test("warehouses, channels, carriers, served channels, sync warehouses", () => {
    refuses({ warehouses: [wh(), wh()] }, 'warehouses[1].id "w1" is listed twice');
    refuses({ channels: [ch(), ch()] }, 'channels[1].id "shop" is listed twice');
    const carrier = { id: "c", cutoff: "10:00", transitDays: 1 };
    refuses(
      { warehouses: [wh({ carriers: [carrier, carrier] })] },
      'warehouses[0].carriers[1].id "c" is listed twice',
    );
    refuses(
      { warehouses: [wh({ channels: ["shop", "shop"] })] },
      'warehouses[0].channels lists "shop" twice',
    );
    refuses(
      { warehouses: [wh()], channels: [ch({ warehouses: ["w1", "w1"] })] },
      'channels[0].warehouses lists "w1" twice',
    );
  });
});

describe("numbers: finite, in range, whole where they count", () => {
  test("NaN, Infinity and -Infinity are refused in every numeric field", () => {
    for (const v of [nonFinite.a, nonFinite.b, nonFinite.c]) {
      refuses({ warehouses: [wh({ lat: v })] }, "warehouses[0].lat must be a finite number");
      refuses({ warehouses: [wh({ lon: v })] }, "warehouses[0].lon must be a finite number");
      refuses(
        { warehouses: [wh({ capacityPerDay: v })] },
        "warehouses[0].capacityPerDay must be a whole number",
      );
      refuses(
        { warehouses: [wh({ utcOffsetMinutes: v })] },
        "warehouses[0].utcOffsetMinutes must be a whole number",
      );
      refuses(
        { warehouses: [wh({ minStockDefault: v })] },
        "warehouses[0].minStockDefault must be a whole number",
      );
      refuses(
        { warehouses: [wh({ minStock: { A: v } })] },
        'warehouses[0].minStock."A" must be a whole number',
      );
      refuses(
        { warehouses: [wh({ carriers: [{ id: "c", cutoff: "10:00", transitDays: v }] })] },
        "warehouses[0].carriers[0].transitDays must be a whole number",
      );
      for (const k of ["maxShipments", "slaShipWithinMs", "slaRerouteGraceMs", "slaAtRiskMs"])
        refuses({ channels: [ch({ [k]: v })] }, `channels[0].${k} must be a whole number`);
      for (const k of ["bufferUnits", "lowStockThreshold", "marketplaceHeldUnits"])
        refuses({ channels: [ch({ [k]: v })] }, `channels[0].${k} must be a whole number`);
      refuses({ channels: [ch({ sharePercent: v })] }, "channels[0].sharePercent must be a whole percent");
      refuses(
        { channels: [ch({ requestsPerSecond: v })] },
        "channels[0].requestsPerSecond must be a number above 0",
      );
      refuses(
        { channels: [ch({ itemsPerRequestMax: v })] },
        "channels[0].itemsPerRequestMax must be a whole number",
      );
      refuses(
        { channels: [ch({ marketplaceHeld: { A: v } })] },
        'channels[0].marketplaceHeld."A" must be a whole number',
      );
      for (const k of ["distanceWeight", "stockWeight", "loadWeight", "carrierWeight", "splitCost"])
        refuses({ routing: { [k]: v } }, `routing.${k} must be a number in [0, 1000]`);
      for (const k of ["distanceKmMax", "transitDaysMax", "decisionCandidatesMax"])
        refuses({ routing: { [k]: v } }, `routing.${k} must be a whole number in [1, 100000]`);
    }
  });

  test("units, counts and periods are bounded, and the bound is named", () => {
    const units = networkLimits.unitsMax;
    refuses(
      { warehouses: [wh({ capacityPerDay: units + 1 })] },
      `warehouses[0].capacityPerDay must be at most ${units} units`,
    );
    refuses(
      { warehouses: [wh({ minStockDefault: units + 1 })] },
      `warehouses[0].minStockDefault must be at most ${units}`,
    );
    refuses(
      { warehouses: [wh({ minStock: { A: units + 1 } })] },
      `warehouses[0].minStock."A" must be at most ${units}`,
    );
    refuses(
      { channels: [ch({ maxShipments: 257 })] },
      "channels[0].maxShipments must be a whole number in [0, 256]",
    );
    refuses(
      { channels: [ch({ slaShipWithinMs: networkLimits.slaMsMax + 1 })] },
      `channels[0].slaShipWithinMs must be a whole number in [0, ${networkLimits.slaMsMax}]`,
    );
    refuses(
      { channels: [ch({ slaRerouteGraceMs: -1 })] },
      "channels[0].slaRerouteGraceMs must be a whole number in [0,",
    );
    refuses(
      { channels: [ch({ slaAtRiskMs: networkLimits.slaMsMax + 1 })] },
      `channels[0].slaAtRiskMs must be a whole number in [0, ${networkLimits.slaMsMax}]`,
    );
    // The at-risk window defaults to a quarter of the ship-by; 0 turns marks off.
    expect(accepts({ channels: [ch({ slaShipWithinMs: 4000 })] }).channels[0]?.slaAtRiskMs).toBe(1000);
    expect(accepts({ channels: [ch({})] }).channels[0]?.slaAtRiskMs).toBe(12 * 3_600_000);
    expect(accepts({ channels: [ch({ slaAtRiskMs: 0 })] }).channels[0]?.slaAtRiskMs).toBe(0);
    refuses({ channels: [ch({ maxShipments: 1.5 })] }, "channels[0].maxShipments must be a whole number");
    refuses(
      { warehouses: [wh({ minStock: { A: 0.5 } })] },
      'warehouses[0].minStock."A" must be a whole number',
    );
    expect(
      accepts({ warehouses: [wh({ capacityPerDay: units, minStock: { A: units } })] }).warehouses[0]
        ?.capacityPerDay,
    ).toBe(units);
  });

  test("sizes: warehouses, channels, carriers, served channels, minStock entries", () => {
    const many = (n: number, make: (i: number) => unknown) => Array.from({ length: n }, (_, i) => make(i));
    refuses(
      { warehouses: many(257, (i) => wh({ id: `w${i}` })) },
      "at most 256 warehouses; this rule set lists 257",
    );
    refuses(
      { channels: many(networkLimits.channelsMax + 1, (i) => ch({ id: `c${i}` })) },
      `at most ${networkLimits.channelsMax} channels`,
    );
    expect(
      accepts({ channels: many(networkLimits.channelsMax, (i) => ch({ id: `c${i}` })) }).channels,
    ).toHaveLength(networkLimits.channelsMax);
    refuses(
      { warehouses: [wh({ carriers: many(17, (i) => ({ id: `c${i}`, cutoff: "10:00", transitDays: 1 })) })] },
      "warehouses[0].carriers: at most 16 carriers",
    );
    refuses(
      { warehouses: [wh({ channels: many(networkLimits.channelsMax + 1, (i) => `c${i}`) })] },
      `warehouses[0].channels lists more than ${networkLimits.channelsMax} channels`,
    );
    const minStock = Object.fromEntries(
      Array.from({ length: networkLimits.minStockSkusMax + 1 }, (_, i) => [`S${i}`, 1]),
    );
    refuses(
      { warehouses: [wh({ minStock })] },
      `warehouses[0].minStock lists more than ${networkLimits.minStockSkusMax} SKUs; use minStockDefault`,
    );
  });

  test("parseChannelSync alone keeps its id rule and bounds", () => {
    const parsed = parseChannelSync({ warehouses: ["w\u0001"] }, "channels[3]");
    expect(parsed.ok ? "" : parsed.detail).toMatch(
      /^channels\[3\]\.warehouses must be a list of warehouse ids/,
    );
  });
});

describe("property: any rule set either parses into valid values or is refused with the field named", () => {
  const junk = fc.oneof(
    fc.constantFrom(Number.NaN, Infinity, -Infinity, -1, 0, 1, 0.5, 2 ** 53, 1e300, "", "x", null, true),
    fc.integer(),
    fc.double(),
    fc.string({ maxLength: 4 }),
  );
  const maybe = (a: fc.Arbitrary<unknown>) => fc.option(a, { nil: undefined });
  const warehouse = fc.record(
    {
      id: fc.oneof(fc.constantFrom("w1", "w2", "constructor", "__proto__"), junk),
      lat: maybe(junk),
      lon: maybe(junk),
      capacityPerDay: maybe(junk),
      utcOffsetMinutes: maybe(junk),
      minStockDefault: maybe(junk),
      minStock: maybe(fc.dictionary(fc.constantFrom("A", "toString", "__proto__", ""), junk)),
      channels: maybe(fc.array(fc.oneof(fc.constantFrom("*", "shop"), junk), { maxLength: 3 })),
    },
    { requiredKeys: ["id"] },
  );
  const channel = fc.record(
    {
      id: fc.oneof(fc.constantFrom("*", "shop", "valueOf"), junk),
      maxShipments: maybe(junk),
      slaShipWithinMs: maybe(junk),
      sharePercent: maybe(junk),
      bufferUnits: maybe(junk),
      requestsPerSecond: maybe(junk),
      marketplaceHeld: maybe(fc.dictionary(fc.constantFrom("A", "constructor", "__proto__"), junk)),
    },
    { requiredKeys: ["id"] },
  );
  const routing = fc.record(
    { distanceWeight: junk, splitCost: junk, transitDaysMax: junk },
    { requiredKeys: [] },
  );

  test("never throws; accepted numbers are finite and in range; refusals name a field", () => {
    fc.assert(
      fc.property(
        fc.array(warehouse, { maxLength: 3 }),
        fc.array(channel, { maxLength: 3 }),
        routing,
        (warehouses, channels, r) => {
          // Through JSON, as the KV bucket stores it: undefined fields drop out, "__proto__" stays an own key.
          const raw = JSON.parse(JSON.stringify({ warehouses, channels, routing: r }));
          const parsed = parseNetwork(raw, "v");
          if (!parsed.ok) {
            expect(parsed.detail).toMatch(/^(warehouses|channels|routing|at most)/);
            return;
          }
          for (const w of parsed.value.warehouses) {
            expect(w.id.length).toBeGreaterThan(0);
            for (const n of [w.capacityPerDay, w.minStockDefault, w.utcOffsetMinutes])
              expect(Number.isSafeInteger(n)).toBe(true);
            for (const n of [w.lat, w.lon]) expect(n === null || Number.isFinite(n)).toBe(true);
          }
          for (const c of parsed.value.channels) {
            expect(Number.isSafeInteger(c.maxShipments) && c.maxShipments <= 256).toBe(true);
            expect(Number.isFinite(c.sync.requestsPerSecond) && c.sync.requestsPerSecond > 0).toBe(true);
          }
          expect(Number.isFinite(parsed.value.routing.distanceWeight)).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
  });
});
