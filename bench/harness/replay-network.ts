// Replay networks: the warehouses a replay routes over and the stock each holds (docs/bench.md, "Replays
// that route"). The rule set comes from one of three places:
//
// 1. --network FILE: a rule set as Sluice reads it (TOML, or JSON when the name ends in .json), validated
//    here with Sluice's own loader so a bad file stops the bench (exit 2) before anything starts.
// 2. derived (--network derive, and the default when the trace's lines name origins): one warehouse per
//    origin (Olist: the seller's state, at its centroid), serving every channel, with the bench network's
//    channels; stock per (warehouse, SKU) = ceil(units the trace sold from that origin × --stock-headroom).
// 3. the bench's own network.toml (w1, w2, w3) with --stock units of every SKU at w1: nothing splits.
//
// --stock-file FILE replaces the stock of 1 or 2. What ran is written next to the reports (network.json, or
// a copy of the file given, and stock.csv), so `--network DIR/network.json --stock-file DIR/stock.csv`
// replays the same network again. Pure but for reading and writing those files.
import { copyFileSync, existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadNetworkFile } from "../../src/config/network.ts";
import { type Network, networkLimits, parseNetwork } from "../../src/domain/network/index.ts";
import { stateCentroid } from "./br-states.ts";
import { type BenchOptions, limits } from "./options.ts";
import { csvRecords, type Trace, type TraceOrder } from "./trace.ts";

export type StockRow = { warehouse: string; sku: string; qty: number };
/** A warehouse's point, for distances computed from outputs that carry none (routing-tally.ts). */
export type WarehouseSite = { id: string; lat: number | null; lon: number | null };

export const benchNetworkFile = join(import.meta.dir, "network.toml");

export class NetworkError extends Error {
  override name = "NetworkError";
}

/** Warehouse ids end up in subjects (sluice.out.fulfil.<warehouse>): one plain subject token each. */
const warehouseIdPattern = /^[A-Za-z0-9_\-:@+,=]+$/;

export type Derivation = {
  /** The rule set, as Sluice reads it from JSON. */
  ruleSet: {
    routing: { distanceKmMax: number };
    warehouses: Array<{
      id: string;
      region: string;
      lat?: number;
      lon?: number;
      capacityPerDay: number;
      channels: string[];
    }>;
    channels: unknown[];
  };
  /** The same, as Sluice parses it. */
  network: Network;
  stock: StockRow[];
  /** Per warehouse, busiest first: lines and units the trace sold from its origin. */
  origins: Array<{ warehouse: string; lines: number; units: number }>;
  /** Lines without an origin: stocked at the busiest warehouse (counted here, not guessed elsewhere). */
  linesWithoutOrigin: number;
  unitsWithoutOrigin: number;
};

/** Units sold per origin and SKU, and the lines that name none. */
function unitsByOrigin(orders: readonly TraceOrder[]) {
  const bySku = new Map<string, Map<string, number>>();
  const totals = new Map<string, { lines: number; units: number }>();
  const orphans = new Map<string, number>();
  let linesWithoutOrigin = 0;
  let unitsWithoutOrigin = 0;
  for (const order of orders) {
    for (const line of order.lines) {
      if (line.origin === undefined) {
        linesWithoutOrigin++;
        unitsWithoutOrigin += line.qty;
        orphans.set(line.sku, (orphans.get(line.sku) ?? 0) + line.qty);
        continue;
      }
      let skus = bySku.get(line.origin);
      if (skus === undefined) {
        skus = new Map();
        bySku.set(line.origin, skus);
      }
      skus.set(line.sku, (skus.get(line.sku) ?? 0) + line.qty);
      const t = totals.get(line.origin) ?? { lines: 0, units: 0 };
      t.lines++;
      t.units += line.qty;
      totals.set(line.origin, t);
    }
  }
  return { bySku, totals, orphans, linesWithoutOrigin, unitsWithoutOrigin };
}

/**
 * One warehouse per origin of the trace's lines, busiest first, at its Brazilian state's centroid when the
 * origin is a state code (else without a point: routing then compares regions); stock per (warehouse, SKU)
 * from the units sold there × headroom, rounded up.
 */
export function deriveNetwork(
  trace: Pick<Trace, "orders">,
  headroom: number,
  channels: unknown[],
): Derivation {
  if (!(headroom > 0)) throw new NetworkError(`--stock-headroom must be > 0, got ${headroom}`);
  const u = unitsByOrigin(trace.orders);
  if (u.totals.size === 0)
    throw new NetworkError(
      'the trace names no origin for its lines, so there is nothing to derive warehouses from: an Olist directory needs olist_sellers_dataset.csv, NDJSON lines need "origin"; or give --network FILE',
    );
  if (u.totals.size > networkLimits.warehousesMax)
    throw new NetworkError(
      `the trace's lines name ${u.totals.size} origins; a rule set holds at most ${networkLimits.warehousesMax} warehouses: give --network FILE`,
    );
  const origins = [...u.totals.entries()]
    .map(([warehouse, t]) => ({ warehouse, lines: t.lines, units: t.units }))
    .sort((a, b) => b.units - a.units || (a.warehouse < b.warehouse ? -1 : 1));
  for (const o of origins) {
    if (!warehouseIdPattern.test(o.warehouse))
      throw new NetworkError(
        `origin ${JSON.stringify(o.warehouse)} cannot be a warehouse id: use letters, digits and _ - : @ + , = only (it becomes a subject token)`,
      );
  }
  const busiest = (origins[0] as { warehouse: string }).warehouse;
  const stock: StockRow[] = [];
  for (const { warehouse } of origins) {
    const skus = new Map(u.bySku.get(warehouse));
    if (warehouse === busiest)
      for (const [sku, units] of u.orphans) skus.set(sku, (skus.get(sku) ?? 0) + units);
    for (const sku of [...skus.keys()].sort())
      stock.push({ warehouse, sku, qty: unitsWithHeadroom(skus.get(sku) as number, headroom) });
  }
  const warehouses = origins.map(({ warehouse }) => {
    const at = stateCentroid(warehouse);
    return {
      id: warehouse,
      region: warehouse,
      ...(at === null ? {} : { lat: at.lat, lon: at.lon }),
      capacityPerDay: limits.derivedCapacityPerDayUnits,
      channels: ["*"],
    };
  });
  const ruleSet = { routing: { distanceKmMax: limits.derivedDistanceKmMax }, warehouses, channels };
  const parsed = parseNetwork(ruleSet, "derived");
  if (!parsed.ok) throw new NetworkError(`the derived network is not a valid rule set: ${parsed.detail}`);
  return {
    ruleSet,
    network: parsed.value,
    stock,
    origins,
    linesWithoutOrigin: u.linesWithoutOrigin,
    unitsWithoutOrigin: u.unitsWithoutOrigin,
  };
}

/** ceil(units × headroom); the small slack keeps 3 × 1.1 = 3.3000000000000003 at 4, not 5. */
export function unitsWithHeadroom(units: number, headroom: number): number {
  return Math.max(1, Math.ceil(units * headroom - 1e-9));
}

/** Stock rows as the CSV --stock-file reads: a header, then warehouse,sku,qty. */
export function stockCsv(rows: readonly StockRow[]): string {
  const field = (v: string) => (/[",\r\n]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v);
  return `warehouse,sku,qty\n${rows.map((r) => `${field(r.warehouse)},${field(r.sku)},${r.qty}`).join("\n")}\n`;
}

/** A --stock-file's rows: every warehouse in the rule set, whole quantities, a row per (warehouse, SKU). */
export function parseStockCsv(text: string, where: string, warehouseIds: ReadonlySet<string>): StockRow[] {
  const header = text.slice(0, text.search(/\r?\n|$/)).split(",");
  for (const column of ["warehouse", "sku", "qty"]) {
    if (!header.includes(column))
      throw new NetworkError(`${where}: the first row must name the columns warehouse,sku,qty`);
  }
  const records = csvRecords(text);
  if (records.length > limits.stockFileRowsMax)
    throw new NetworkError(`${where}: ${records.length} rows; at most ${limits.stockFileRowsMax}`);
  const rows: StockRow[] = [];
  const seen = new Set<string>();
  for (const [i, r] of records.entries()) {
    const at = `${where}:${i + 2}`;
    const warehouse = r.warehouse ?? "";
    const sku = r.sku ?? "";
    const qty = Number(r.qty);
    if (!warehouseIds.has(warehouse))
      throw new NetworkError(
        `${at}: warehouse ${JSON.stringify(warehouse)} is not in the network; it has ${[...warehouseIds].join(", ")}`,
      );
    if (sku === "") throw new NetworkError(`${at}: sku must be non-empty`);
    if (!Number.isInteger(qty) || qty < 0 || qty > 1_000_000_000)
      throw new NetworkError(
        `${at}: qty must be a whole number in 0 … 1000000000, got ${JSON.stringify(r.qty)}`,
      );
    const key = `${warehouse}\u0000${sku}`;
    if (seen.has(key)) throw new NetworkError(`${at}: ${warehouse},${sku} is listed twice; list it once`);
    seen.add(key);
    rows.push({ warehouse, sku, qty });
  }
  return rows;
}

/** What a replay (or any scenario) runs on: the rule set, where its warehouses are, the stock to seed. */
export type ReplayNetwork = {
  source: "derived" | "file" | "bench";
  /** The rule set Sluice reads: a file given or the bench's (null: derived, written into the output dir). */
  file: string | null;
  derived: Derivation | null;
  sites: WarehouseSite[];
  /** null: --stock units per SKU at `firstWarehouse` (and w2 in lifecycle), the bench's way. */
  stock: StockRow[] | null;
  stockSource: "derived" | "file" | "per-sku";
  firstWarehouse: string;
  headroom: number | null;
};

/** The network and stock a run uses (options and trace already validated); NetworkError names the fix. */
export function resolveNetwork(o: BenchOptions, trace: Trace | null): ReplayNetwork {
  const named = trace?.orders.some((t) => t.lines.some((l) => l.origin !== undefined)) ?? false;
  const derive = trace !== null && (o.network === "derive" || (o.network === null && named));
  const derived = derive ? deriveNetwork(trace, o.stockHeadroom, channelsOf(benchNetworkFile)) : null;
  const source: ReplayNetwork["source"] =
    derived !== null ? "derived" : o.network !== null ? "file" : "bench";
  const file = source === "derived" ? null : (o.network ?? benchNetworkFile);
  const network =
    derived?.network ??
    readRuleSet(file as string, source === "file" ? `--network ${file}` : "the bench's network");
  const first = network.warehouses.find((w) => w.enabled);
  if (first === undefined)
    throw new NetworkError(`--network ${file}: the rule set has no enabled warehouse to stock`);
  const ids = new Set(network.warehouses.map((w) => w.id));
  const stock =
    o.stockFile !== null ? readStockFile(o.stockFile, ids) : derived !== null ? derived.stock : null;
  return {
    source,
    file,
    derived,
    sites: network.warehouses.map((w) => ({ id: w.id, lat: w.lat, lon: w.lon })),
    stock,
    stockSource: o.stockFile !== null ? "file" : derived !== null ? "derived" : "per-sku",
    firstWarehouse: first.id,
    headroom: derived !== null && o.stockFile === null ? o.stockHeadroom : null,
  };
}

function readRuleSet(path: string, what: string): Network {
  try {
    return loadNetworkFile(path).network;
  } catch (error) {
    throw new NetworkError(`${what}: ${(error as Error).message}`);
  }
}

/** The channels of a rule-set file, as written (the derived network keeps the bench's sync settings). */
function channelsOf(path: string): unknown[] {
  const raw = Bun.TOML.parse(readFileSync(path, "utf8")) as { channels?: unknown[] };
  return raw.channels ?? [];
}

function readStockFile(path: string, warehouseIds: ReadonlySet<string>): StockRow[] {
  if (!existsSync(path) || !statSync(path).isFile())
    throw new NetworkError(
      `--stock-file ${path} does not exist; give a CSV with the columns warehouse,sku,qty`,
    );
  return parseStockCsv(readFileSync(path, "utf8"), `--stock-file ${path}`, warehouseIds);
}

/** Files written next to the reports; Sluice reads `networkFile`. */
export type WrittenNetwork = { networkFile: string; stockFile: string | null };

/**
 * Writes what the run uses into `dir`: the derived rule set as network.json (a file given: a copy, same
 * extension) and the seeded stock as stock.csv. The bench's own network is left where it is.
 */
export function writeNetwork(rn: ReplayNetwork, dir: string): WrittenNetwork {
  let networkFile = rn.file ?? join(dir, "network.json");
  if (rn.derived !== null) writeFileSync(networkFile, `${JSON.stringify(rn.derived.ruleSet, null, 2)}\n`);
  else if (rn.source === "file" && rn.file !== null) {
    networkFile = join(dir, rn.file.endsWith(".json") ? "network.json" : "network.toml");
    copyFileSync(rn.file, networkFile);
  }
  let stockFile: string | null = null;
  if (rn.stock !== null) {
    stockFile = join(dir, "stock.csv");
    writeFileSync(stockFile, stockCsv(rn.stock));
  }
  return { networkFile, stockFile };
}

/** The network section of the report. */
export type NetworkSummary = {
  source: ReplayNetwork["source"];
  networkFile: string;
  stockFile: string | null;
  stockSource: ReplayNetwork["stockSource"];
  warehouses: number;
  /** Warehouses with a point (lat, lon): distances need one on both sides. */
  warehousesWithPoint: number;
  stockRows: number | null;
  stockUnits: number | null;
  stockHeadroom: number | null;
  linesWithoutOrigin: number;
  unitsWithoutOrigin: number;
};

export function networkSummary(rn: ReplayNetwork, written: WrittenNetwork): NetworkSummary {
  return {
    source: rn.source,
    networkFile: written.networkFile,
    stockFile: written.stockFile,
    stockSource: rn.stockSource,
    warehouses: rn.sites.length,
    warehousesWithPoint: rn.sites.filter((s) => s.lat !== null && s.lon !== null).length,
    stockRows: rn.stock?.length ?? null,
    stockUnits: rn.stock === null ? null : rn.stock.reduce((n, r) => n + r.qty, 0),
    stockHeadroom: rn.headroom,
    linesWithoutOrigin: rn.derived?.linesWithoutOrigin ?? 0,
    unitsWithoutOrigin: rn.derived?.unitsWithoutOrigin ?? 0,
  };
}
