import { readFileSync, statSync } from "node:fs";
import { isRecord, type ProfileSpec } from "./types.ts";

// The mapping table: Sluice's SKU and warehouse ids → the marketplace's ids. One JSON file (docs/sync-and-erp.md,
// "Marketplace profiles"):
//
//   { "warehouses": { "<sluice warehouse>": "<marketplace location>" },
//     "defaultWarehouse": "<sluice warehouse>",
//     "skus": { "<sluice sku>": { <the profile's ids>, "warehouse": "<sluice warehouse>" } } }
//
// A channel's ATS is one number per SKU, so each SKU has one row and one location (the row's warehouse, else
// the default); two SKUs that would write the same marketplace quantity are refused.

/**
 * The table and the last value delivered per SKU are held in memory: 1,000,000 rows × ~250 B ≈ 250 MB at
 * most. A catalogue bigger than that runs one sink per part of it (a channel per part).
 */
export const mappingSkusMax = 1_000_000;
/** ~150 B per row in JSON at the row cap, with room. */
export const mappingBytesMax = 256 * 1024 * 1024;
/** Locations of one marketplace account: a few, at most hundreds. */
export const mappingWarehousesMax = 10_000;

export type ParsedMapping<R> = { ok: true; value: Map<string, R> } | { ok: false; detail: string };

/** Reads and checks the file; errors name the file, the row and the fix. */
export function loadMapping<R>(path: string, spec: ProfileSpec<R>): ParsedMapping<R> {
  let text: string;
  try {
    const size = statSync(path).size;
    if (size > mappingBytesMax)
      return { ok: false, detail: `${path} is ${size} bytes, over ${mappingBytesMax}: split the catalogue` };
    text = readFileSync(path, "utf8");
  } catch (error) {
    return { ok: false, detail: `cannot read the mapping table ${path}: ${(error as Error).message}` };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return { ok: false, detail: `${path} is not JSON: ${(error as Error).message}` };
  }
  const parsed = parseMapping(json, spec);
  return parsed.ok ? parsed : { ok: false, detail: `${path}: ${parsed.detail}` };
}

export function parseMapping<R>(json: unknown, spec: ProfileSpec<R>): ParsedMapping<R> {
  const fail = (detail: string): ParsedMapping<R> => ({ ok: false, detail });
  if (!isRecord(json) || !isRecord(json.skus))
    return fail(`the table must be an object with "skus": { "<sku>": { … } } (docs/sync-and-erp.md)`);
  for (const key of Object.keys(json))
    if (key !== "skus" && key !== "warehouses" && key !== "defaultWarehouse")
      return fail(`unknown key "${key}": the table has "skus", "warehouses" and "defaultWarehouse"`);
  const warehouses = parseWarehouses(json.warehouses);
  if (typeof warehouses === "string") return fail(warehouses);
  const fallback = json.defaultWarehouse;
  if (fallback !== undefined && (typeof fallback !== "string" || !warehouses.has(fallback)))
    return fail(`"defaultWarehouse" must name a key of "warehouses"`);
  const rows = Object.entries(json.skus);
  if (rows.length > mappingSkusMax)
    return fail(`${rows.length} SKUs, over ${mappingSkusMax}: split the catalogue`);
  const out = new Map<string, R>();
  const byKey = new Map<string, string>();
  for (const [sku, row] of rows) {
    if (sku === "") return fail(`a SKU id is empty`);
    if (!isRecord(row)) return fail(`skus["${sku}"] must be an object`);
    const warehouse = row.warehouse ?? fallback;
    if (warehouse !== undefined && (typeof warehouse !== "string" || !warehouses.has(warehouse)))
      return fail(`skus["${sku}"].warehouse must name a key of "warehouses"`);
    const location = warehouse === undefined ? null : (warehouses.get(warehouse) ?? null);
    if (spec.locationRequired && location === null)
      return fail(
        `skus["${sku}"] has no warehouse: give it "warehouse", or set "defaultWarehouse" (${spec.name} sets quantities per location)`,
      );
    const { warehouse: _, ...ids } = row;
    const ref = spec.parseRef(ids, location);
    if (typeof ref === "string") return fail(`skus["${sku}"]: ${ref}`);
    const key = spec.refKey(ref);
    const other = byKey.get(key);
    if (other !== undefined)
      return fail(
        `skus["${sku}"] and skus["${other}"] map to the same ${spec.name} quantity: one SKU per target`,
      );
    byKey.set(key, sku);
    out.set(sku, ref);
  }
  return { ok: true, value: out };
}

function parseWarehouses(v: unknown): Map<string, string> | string {
  if (v === undefined) return new Map();
  if (!isRecord(v))
    return `"warehouses" must be an object: { "<sluice warehouse>": "<marketplace location>" }`;
  const entries = Object.entries(v);
  if (entries.length > mappingWarehousesMax) return `"warehouses" has over ${mappingWarehousesMax} entries`;
  const out = new Map<string, string>();
  for (const [w, location] of entries) {
    if (typeof location !== "string" || location.trim() === "")
      return `warehouses["${w}"] must be the marketplace's location id, a non-empty string`;
    out.set(w, location);
  }
  return out;
}

/** A non-empty string field, or why not. */
export function stringField(row: Record<string, unknown>, name: string): string | null {
  const v = row[name];
  return typeof v === "string" && v.trim() !== "" ? v : null;
}

/** Fields a profile does not know are refused: a typo must not silently map nothing. */
export function unknownField(row: Record<string, unknown>, known: string[]): string | null {
  const extra = Object.keys(row).find((k) => !known.includes(k));
  return extra === undefined ? null : `unknown field "${extra}" (${known.join(", ")} or warehouse)`;
}
