// Order traces for the replay scenario. Two formats (docs/bench.md):
//
// - An Olist-style directory: orders.csv (order_id, order_purchase_timestamp, …) and order_items.csv
//   (order_id, product_id, seller_id, price, …; one row per unit, so quantity = rows with the same order and
//   product), customers.csv optional (customer_id → customer_state as the ship-to region, the zip prefix
//   padded to 5 digits as the ship-to zip, the state's centroid as the ship-to point), olist_sellers_dataset.csv
//   optional (seller_id → seller_state: each line's origin, from which the replay derives its warehouses).
//   Orders without items are skipped (Olist has 111 of 10,000).
// - NDJSON, one order a line: {"t": "2017-10-02T10:56:33Z" | <ms since epoch>, "id"?: string,
//   "lines": [{"sku": string, "qty"?: int ≥ 1 (1), "price"?: number ≥ 0 (0), "origin"?: string}],
//   "region"?: string, "shipTo"?: {"region"?, "zip"?, "lat"?, "lon"?}}.
//
// The trace's own ids are kept in the report's sample only; orders are published under bench ids that carry
// the intended send time (loadgen.ts), so a trace can be replayed twice.
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { stateCentroid } from "./br-states.ts";
import type { TraceFormat } from "./options.ts";

/** origin: where the line was sold from (Olist: the seller's state); absent when the trace names none. */
export type TraceLine = { sku: string; qty: number; price: number; origin?: string };
/** The ship-to: region (Olist: the customer's state), zip, and a point when the trace gives or implies one. */
export type TraceOrder = {
  tMs: number;
  id: string;
  lines: TraceLine[];
  region: string | null;
  zip: string | null;
  lat: number | null;
  lon: number | null;
};
export type Trace = {
  source: string;
  format: "olist-csv" | "ndjson";
  orders: TraceOrder[];
  skipped: number;
  firstMs: number;
  spanMs: number;
};

export class TraceError extends Error {
  override name = "TraceError";
}

export function loadTrace(path: string, format: TraceFormat): Trace {
  if (!existsSync(path)) throw new TraceError(`trace ${path} does not exist`);
  const isDir = statSync(path).isDirectory();
  const kind = format === "auto" ? (isDir ? "olist-csv" : "ndjson") : format;
  const { orders, skipped } =
    kind === "olist-csv"
      ? parseOlist(isDir ? path : join(path, ".."))
      : parseNdjson(readFileSync(path, "utf8"), path);
  if (orders.length === 0) throw new TraceError(`trace ${path} has no order with lines`);
  orders.sort((a, b) => a.tMs - b.tMs);
  const firstMs = (orders[0] as TraceOrder).tMs;
  const spanMs = (orders[orders.length - 1] as TraceOrder).tMs - firstMs;
  return { source: path, format: kind, orders, skipped, firstMs, spanMs };
}

/** Time compression: the factor given, or the one that fits the trace into fitS seconds. */
export function speedupFor(trace: Trace, speedup: number | null, fitS: number): number {
  if (speedup !== null) return speedup;
  return trace.spanMs > 0 ? trace.spanMs / (fitS * 1000) : 1;
}

export function parseNdjson(text: string, where: string): { orders: TraceOrder[]; skipped: number } {
  const orders: TraceOrder[] = [];
  let skipped = 0;
  const rows = text.split("\n");
  for (let i = 0; i < rows.length; i++) {
    const row = (rows[i] as string).trim();
    if (row === "") continue;
    const at = `${where}:${i + 1}`;
    let v: unknown;
    try {
      v = JSON.parse(row);
    } catch (error) {
      throw new TraceError(`${at}: not JSON (${(error as Error).message})`);
    }
    if (typeof v !== "object" || v === null || Array.isArray(v))
      throw new TraceError(`${at}: expected an object`);
    const o = v as Record<string, unknown>;
    const tMs = typeof o.t === "number" ? o.t : typeof o.t === "string" ? Date.parse(o.t) : Number.NaN;
    if (!Number.isFinite(tMs))
      throw new TraceError(`${at}: "t" must be an ISO-8601 time or ms since the epoch`);
    if (!Array.isArray(o.lines)) throw new TraceError(`${at}: "lines" must be an array`);
    const lines: TraceLine[] = [];
    for (const [j, raw] of o.lines.entries()) lines.push(ndjsonLine(raw, `${at}: lines[${j}]`));
    if (lines.length === 0) {
      skipped++;
      continue;
    }
    orders.push({
      tMs,
      id: typeof o.id === "string" ? o.id : String(i + 1),
      lines: mergeSameSku(lines),
      ...ndjsonShipTo(o, at),
    });
  }
  return { orders, skipped };
}

function ndjsonLine(raw: unknown, at: string): TraceLine {
  const l = raw as Record<string, unknown>;
  if (typeof l !== "object" || l === null || typeof l.sku !== "string" || l.sku === "")
    throw new TraceError(`${at}.sku must be a non-empty string`);
  const qty = l.qty ?? 1;
  if (typeof qty !== "number" || !Number.isInteger(qty) || qty < 1)
    throw new TraceError(`${at}.qty must be a whole number ≥ 1`);
  const price = l.price ?? 0;
  if (typeof price !== "number" || !(price >= 0)) throw new TraceError(`${at}.price must be ≥ 0`);
  if (l.origin !== undefined && (typeof l.origin !== "string" || l.origin === ""))
    throw new TraceError(
      `${at}.origin must be a non-empty string (the warehouse or seller location it sold from)`,
    );
  const line: TraceLine = { sku: l.sku, qty, price };
  if (typeof l.origin === "string") line.origin = l.origin;
  return line;
}

/** "shipTo": {region, zip, lat, lon}, each optional; the older top-level "region" still counts. */
function ndjsonShipTo(
  o: Record<string, unknown>,
  at: string,
): Pick<TraceOrder, "region" | "zip" | "lat" | "lon"> {
  const raw = o.shipTo ?? {};
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw new TraceError(`${at}: "shipTo" must be an object {region, zip, lat, lon}`);
  const s = raw as Record<string, unknown>;
  const text = (v: unknown, name: string): string | null => {
    if (v === undefined || v === null) return null;
    if (typeof v !== "string") throw new TraceError(`${at}: ${name} must be a string`);
    return v;
  };
  const degrees = (v: unknown, name: string, max: number): number | null => {
    if (v === undefined || v === null) return null;
    if (typeof v !== "number" || !Number.isFinite(v) || Math.abs(v) > max)
      throw new TraceError(`${at}: shipTo.${name} must be a number of degrees in [-${max}, ${max}]`);
    return v;
  };
  const lat = degrees(s.lat, "lat", 90);
  const lon = degrees(s.lon, "lon", 180);
  if ((lat === null) !== (lon === null))
    throw new TraceError(`${at}: shipTo needs both lat and lon, or neither`);
  return {
    region: text(s.region, "shipTo.region") ?? text(o.region, '"region"'),
    zip: text(s.zip, "shipTo.zip"),
    lat,
    lon,
  };
}

function parseOlist(dir: string): { orders: TraceOrder[]; skipped: number } {
  const file = (name: string) => join(dir, name);
  for (const name of ["orders.csv", "order_items.csv"]) {
    if (!existsSync(file(name))) throw new TraceError(`olist trace ${dir}: ${name} is missing`);
  }
  const customers = olistCustomers(file("customers.csv"));
  const sellerStates = olistSellerStates(file(olistSellersFile));
  const items = new Map<string, TraceLine[]>();
  for (const r of csvRecords(readFileSync(file("order_items.csv"), "utf8"))) {
    const id = r.order_id;
    const sku = r.product_id;
    if (id === undefined || sku === undefined || sku === "") continue;
    const list = items.get(id) ?? [];
    const line: TraceLine = { sku, qty: 1, price: Number(r.price ?? 0) || 0 };
    const origin = sellerStates.get(r.seller_id ?? "");
    if (origin !== undefined) line.origin = origin;
    list.push(line);
    items.set(id, list);
  }
  const orders: TraceOrder[] = [];
  let skipped = 0;
  const nowhere = { region: null, zip: null, lat: null, lon: null };
  for (const r of csvRecords(readFileSync(file("orders.csv"), "utf8"))) {
    const id = r.order_id ?? "";
    const tMs = Date.parse(`${(r.order_purchase_timestamp ?? "").replace(" ", "T")}Z`);
    const lines = items.get(id);
    if (lines === undefined || !Number.isFinite(tMs)) {
      skipped++;
      continue;
    }
    orders.push({ tMs, id, lines: mergeSameSku(lines), ...(customers.get(r.customer_id ?? "") ?? nowhere) });
  }
  return { orders, skipped };
}

/** The sellers table of the Olist sample (seller_id, seller_zip_code_prefix, seller_city, seller_state). */
export const olistSellersFile = "olist_sellers_dataset.csv";

/** customer_id → ship-to: the state as region, the zip prefix padded to 5 digits, the state's centroid. */
function olistCustomers(path: string): Map<string, Pick<TraceOrder, "region" | "zip" | "lat" | "lon">> {
  const out = new Map<string, Pick<TraceOrder, "region" | "zip" | "lat" | "lon">>();
  if (!existsSync(path)) return out;
  for (const r of csvRecords(readFileSync(path, "utf8"))) {
    if (r.customer_id === undefined || r.customer_state === undefined) continue;
    const prefix = (r.customer_zip_code_prefix ?? "").trim();
    // The CSV lost the prefixes' leading zeros (01001 → 1001): pad them back.
    const zip = /^\d{1,5}$/.test(prefix) ? prefix.padStart(5, "0") : null;
    const at = stateCentroid(r.customer_state);
    out.set(r.customer_id, { region: r.customer_state, zip, lat: at?.lat ?? null, lon: at?.lon ?? null });
  }
  return out;
}

/** seller_id → seller_state (empty when the sellers table is absent: lines then have no origin). */
function olistSellerStates(path: string): Map<string, string> {
  const out = new Map<string, string>();
  if (!existsSync(path)) return out;
  for (const r of csvRecords(readFileSync(path, "utf8"))) {
    const state = (r.seller_state ?? "").trim();
    if (r.seller_id !== undefined && state !== "") out.set(r.seller_id, state);
  }
  return out;
}

/**
 * One line per SKU: Olist has a row per unit. Rows of one SKU from two origins in one order (none in the
 * Olist sample) merge into one line at the first row's origin: the units are kept, their split is not.
 */
function mergeSameSku(lines: TraceLine[]): TraceLine[] {
  const bySku = new Map<string, TraceLine>();
  for (const l of lines) {
    const had = bySku.get(l.sku);
    if (had === undefined) bySku.set(l.sku, { ...l });
    else had.qty += l.qty;
  }
  return [...bySku.values()];
}

/** RFC 4180 records as objects keyed by the header row. */
export function csvRecords(text: string): Record<string, string>[] {
  const rows = csvRows(text);
  const header = rows.shift() ?? [];
  return rows
    .filter((r) => r.length > 1 || (r[0] ?? "") !== "")
    .map((r) => Object.fromEntries(header.map((h, i) => [h, r[i] ?? ""])));
}

export function csvRows(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      row.push(field);
      field = "";
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
    } else field += c;
  }
  if (field !== "" || row.length > 0) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}
