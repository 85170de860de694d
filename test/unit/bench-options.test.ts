import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type BenchOptions,
  expectedOrders,
  OptionsError,
  parseOptions,
  phaseIndexAt,
  phasesOf,
} from "../../bench/harness/options.ts";

const dir = mkdtempSync(join(tmpdir(), "sluice-bench-options-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function options(argv: string[]): BenchOptions {
  const parsed = parseOptions(argv);
  if (parsed.help) throw new Error("unexpected --help");
  return parsed.options;
}

describe("bench options", () => {
  test("no arguments: the quick flash sale, 100 → 5,000 orders/s for 10 s, ~52,500 orders", () => {
    const o = options([]);
    expect(o.scenario).toBe("flash-sale");
    expect([o.baseline, o.multiplier, o.preS, o.burstS, o.postS]).toEqual([100, 50, 10, 10, 15]);
    const phases = phasesOf(o, null);
    expect(phases.map((p) => [p.name, p.startS, p.endS, p.ratePerSecond])).toEqual([
      ["baseline", 0, 10, 100],
      ["burst", 10, 20, 5000],
      ["after", 20, 35, 100],
    ]);
    expect(expectedOrders(phases)).toBe(52_500);
    expect(o.lines).toBe("mix");
  });

  test("the 11.11 run from the command line", () => {
    const o = options([
      "--scenario",
      "flash-sale",
      "--baseline",
      "400",
      "--multiplier",
      "50",
      "--burst-s",
      "60",
    ]);
    expect(phasesOf(o, null)[1]).toEqual({ name: "burst", startS: 10, endS: 70, ratePerSecond: 20_000 });
  });

  test("steady defaults to single-line orders; lifecycle to the mix at 500/s", () => {
    const s = options(["--scenario", "steady", "--rate", "15000", "--duration-s", "20"]);
    expect(s.lines).toBe("single");
    expect(phasesOf(s, null)).toEqual([{ name: "steady", startS: 0, endS: 20, ratePerSecond: 15_000 }]);
    const l = options(["--scenario", "lifecycle"]);
    expect([l.lines, l.rate, l.cancelPct, l.rejectPct, l.partialShipPct, l.returnPct]).toEqual([
      "mix",
      500,
      5,
      2,
      5,
      8,
    ]);
  });

  test("lifecycle's backorder mix: 5 % by default, --backorder-pct sets it", () => {
    expect(options(["--scenario", "lifecycle"]).backorderPct).toBe(5);
    expect(options(["--scenario", "lifecycle", "--backorder-pct", "12.5"]).backorderPct).toBe(12.5);
    expect(options(["--scenario", "lifecycle", "--backorder-pct", "0"]).backorderPct).toBe(0);
  });

  test("a JSON or TOML file sets options; the command line wins over the file", () => {
    const json = join(dir, "o.json");
    writeFileSync(json, JSON.stringify({ scenario: "steady", rate: 123, durationS: 7, seed: 9 }));
    const o = options(["--config", json, "--rate", "456"]);
    expect([o.scenario, o.rate, o.durationS, o.seed]).toEqual(["steady", 456, 7, 9]);
    const toml = join(dir, "o.toml");
    writeFileSync(toml, 'scenario = "hot-sku"\nhotSkus = 3\nhotStock = 50\n');
    const h = options(["--config", toml]);
    expect([h.scenario, h.hotSkus, h.hotStock, h.lines]).toEqual(["hot-sku", 3, 50, "single"]);
  });

  test("--help", () => {
    expect(parseOptions(["--help"]).help).toBe(true);
  });

  test("bad input is refused with the flag and the fix", () => {
    const bad: [string[], RegExp][] = [
      [["--scenario", "nope"], /--scenario must be one of steady, flash-sale/],
      [["--rate", "fast"], /--rate must be a number/],
      [["--rate=-1"], /--rate must be in/],
      [["--skus", "1.5"], /--skus must be a whole number/],
      [["--lines", "many"], /--lines must be one of single, mix, olist/],
      [["--channel", "a.b"], /--channel must be a plain subject token/],
      [["--scenario", "replay"], /needs --trace PATH/],
      [["--inflight", "0"], /--inflight must be a whole number/],
      [["--backorder-pct", "101"], /--backorder-pct must be in/],
      [["--unknown"], /Unknown option/],
      [["--config", join(dir, "missing.json")], /cannot read it/],
    ];
    for (const [argv, message] of bad) expect(() => parseOptions(argv)).toThrow(message);
    const unknownKey = join(dir, "bad.json");
    writeFileSync(unknownKey, JSON.stringify({ burstSeconds: 60 }));
    expect(() => parseOptions(["--config", unknownKey])).toThrow(
      /unknown option "burstSeconds"; expected one of/,
    );
    const notJson = join(dir, "bad2.json");
    writeFileSync(notJson, "{");
    expect(() => parseOptions(["--config", notJson])).toThrow(OptionsError);
  });

  test("a run too large to track is refused before it starts", () => {
    expect(() =>
      parseOptions(["--scenario", "steady", "--rate", "1000000", "--duration-s", "86400"]),
    ).toThrow(/tracks at most/);
  });

  test("phaseIndexAt", () => {
    const phases = phasesOf(options([]), null);
    expect(phaseIndexAt(phases, 0)).toBe(0);
    expect(phaseIndexAt(phases, 10)).toBe(1);
    expect(phaseIndexAt(phases, 19.999)).toBe(1);
    expect(phaseIndexAt(phases, 20)).toBe(2);
    expect(phaseIndexAt(phases, 99)).toBe(2);
  });

  test("replay phases come from the trace's compressed span", () => {
    const o = options(["--scenario", "replay", "--trace", "x.ndjson"]);
    expect(phasesOf(o, { spanS: 60, orders: 600 })).toEqual([
      { name: "replay", startS: 0, endS: 60, ratePerSecond: 10 },
    ]);
  });
});
