import { type DomainLimits, invalid, isObject, type Parsed, parseId } from "../ledger/commands.ts";
import { type IdRecord, idRecord, own } from "../own.ts";

// A channel's stock-sync rules: which warehouses feed it, how much of their stock it may show, and how fast
// Sluice may push changes to it. Read from the channel's `[[channels]]` table in config/network.toml, next to
// the fields parseNetwork owns (id, backorder, split…). Plain data, validated once.

/** Feeds the channel from every enabled warehouse that serves it. */
export const everyWarehouse = "*";

export type ChannelSync = {
  /** Warehouses whose stock the channel may show: ids, or ["*"] for every warehouse serving the channel. */
  warehouses: string[];
  /** Share of the fed stock shown, a whole percent 0–100 (0 stops selling on the channel). */
  sharePercent: number;
  /** Units kept back from the channel after the share (a cushion against sync delay). */
  bufferUnits: number;
  /** ATS below this many units is shown as 0: the channel stops selling before the last units. */
  lowStockThreshold: number;
  /** Units the marketplace already holds on its side (unpaid orders, campaigns) for any SKU... */
  marketplaceHeldUnits: number;
  /** ...unless the SKU has its own figure here (per SKU id: an IdRecord, read through marketplaceHeldOf). */
  marketplaceHeld: IdRecord<number>;
  /** The channel's API budget for stock pushes, all partitions together; may be fractional (0.5 = 1 per 2 s). */
  requestsPerSecond: number;
  /** SKUs in one push request (one `sluice.out.stock.<channel>` message). */
  itemsPerRequestMax: number;
};

/** The fields of a `[[channels]]` table this module owns; parseNetwork owns the others. */
export const channelSyncFields = [
  "warehouses",
  "sharePercent",
  "bufferUnits",
  "lowStockThreshold",
  "marketplaceHeldUnits",
  "marketplaceHeld",
  "requestsPerSecond",
  "itemsPerRequestMax",
] as const;

// Defaults: show everything, keep nothing back. 5 requests/s × 50 items is within the published stock-update
// limits of the large marketplaces (Shopify REST leaks 2 req/s per store with a bucket of 40; Shopee and
// Lazada take 50 models per stock call); lower it per channel to the contract you have.
export const channelSyncDefaults: Readonly<ChannelSync> = Object.freeze({
  warehouses: [everyWarehouse],
  sharePercent: 100,
  bufferUnits: 0,
  lowStockThreshold: 0,
  marketplaceHeldUnits: 0,
  marketplaceHeld: {},
  requestsPerSecond: 5,
  itemsPerRequestMax: 50,
});

/** Same bound as ledger.quantityMax's default: no stock figure is larger. */
const unitsMax = 1_000_000_000;
/** Per-SKU marketplace figures per channel: a config file, not a catalogue (the catalogue lives in the ledger). */
export const marketplaceHeldSkusMax = 10_000;
const warehousesMax = 1_000;
const requestsPerSecondMax = 10_000;
/** 10,000 items × ~80 B of JSON ≈ 800 KiB: one request stays under NATS's 1 MiB max_payload. */
const itemsPerRequestCeiling = 10_000;
/** Ids here follow the ledger's id rule; ledger.idBytesMax's largest value unless the caller gives it. */
const idBytesMaxDefault = 256;
const idLimitsOf = (idBytesMax: number): DomainLimits => ({
  quantityMax: unitsMax,
  idBytesMax: Math.min(idBytesMax, idBytesMaxDefault),
  linesPerOrderMax: 1,
  itemsPerMessageMax: 1,
});

/**
 * Validates the sync fields of one channel table and fills defaults. `where` names the table in messages
 * (`channels[2]`); `knownWarehouses`, when given, refuses a warehouse id the network does not list.
 */
export function parseChannelSync(
  raw: unknown,
  where: string,
  knownWarehouses?: readonly string[],
  idBytesMax = idBytesMaxDefault,
): Parsed<ChannelSync> {
  if (!isObject(raw)) return invalid(`${where} must be a table`);
  const ids = idLimitsOf(idBytesMax);
  const warehouses = parseWarehouses(raw.warehouses, `${where}.warehouses`, ids, knownWarehouses);
  if (!warehouses.ok) return warehouses;
  const units: Record<string, number> = {};
  for (const field of ["bufferUnits", "lowStockThreshold", "marketplaceHeldUnits"] as const) {
    const v = parseUnits(raw[field] ?? channelSyncDefaults[field], `${where}.${field}`);
    if (!v.ok) return v;
    units[field] = v.value;
  }
  const share = raw.sharePercent ?? channelSyncDefaults.sharePercent;
  if (typeof share !== "number" || !Number.isInteger(share) || share < 0 || share > 100) {
    return invalid(`${where}.sharePercent must be a whole percent from 0 to 100 (100 shows all the stock)`);
  }
  const held = parseMarketplaceHeld(raw.marketplaceHeld ?? {}, `${where}.marketplaceHeld`, ids);
  if (!held.ok) return held;
  const budget = parseBudget(raw, where);
  if (!budget.ok) return budget;
  return {
    ok: true,
    value: {
      warehouses: warehouses.value,
      sharePercent: share,
      bufferUnits: units.bufferUnits as number,
      lowStockThreshold: units.lowStockThreshold as number,
      marketplaceHeldUnits: units.marketplaceHeldUnits as number,
      marketplaceHeld: held.value,
      ...budget.value,
    },
  };
}

function parseWarehouses(
  v: unknown,
  where: string,
  ids: DomainLimits,
  known?: readonly string[],
): Parsed<string[]> {
  const list = v ?? channelSyncDefaults.warehouses;
  if (!Array.isArray(list)) {
    return invalid(
      `${where} must be a list of warehouse ids, or ["*"] for every warehouse serving the channel`,
    );
  }
  for (const [i, w] of list.entries()) {
    const id = parseId(w, `${where}[${i}]`, ids);
    if (!id.ok) {
      return invalid(
        `${where} must be a list of warehouse ids, or ["*"] for every warehouse serving the channel: ${id.detail}`,
      );
    }
  }
  if (list.length === 0) {
    return invalid(
      `${where} must list at least one warehouse (or ["*"]); to stop selling set sharePercent = 0`,
    );
  }
  if (list.length > warehousesMax) return invalid(`${where} lists more than ${warehousesMax} warehouses`);
  if (list.includes(everyWarehouse) && list.length > 1) {
    return invalid(`${where}: "*" already means every warehouse; list ids or ["*"], not both`);
  }
  const seen = new Set<string>();
  for (const w of list as string[]) {
    if (seen.has(w)) return invalid(`${where} lists ${JSON.stringify(w)} twice`);
    seen.add(w);
    if (known !== undefined && w !== everyWarehouse && !known.includes(w)) {
      return invalid(
        `${where}: unknown warehouse ${JSON.stringify(w)}; add it under [[warehouses]] or remove it`,
      );
    }
  }
  return { ok: true, value: [...(list as string[])] };
}

function parseUnits(v: unknown, where: string): Parsed<number> {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
    return invalid(`${where} must be a whole number of units ≥ 0`);
  }
  if (v > unitsMax) return invalid(`${where} must be at most ${unitsMax}`);
  return { ok: true, value: v };
}

function parseMarketplaceHeld(v: unknown, where: string, ids: DomainLimits): Parsed<IdRecord<number>> {
  if (!isObject(v)) return invalid(`${where} must be a table of SKU = units, e.g. { "SKU-1" = 3 }`);
  const entries = Object.entries(v);
  if (entries.length > marketplaceHeldSkusMax) {
    return invalid(
      `${where} has more than ${marketplaceHeldSkusMax} SKUs; use marketplaceHeldUnits for the rest`,
    );
  }
  for (const [sku, units] of entries) {
    const id = parseId(sku, `${where} key`, ids);
    if (!id.ok) return id;
    const parsed = parseUnits(units, `${where}.${JSON.stringify(sku)}`);
    if (!parsed.ok) return parsed;
  }
  return { ok: true, value: idRecord(entries as Array<[string, number]>) };
}

function parseBudget(
  raw: Record<string, unknown>,
  where: string,
): Parsed<Pick<ChannelSync, "requestsPerSecond" | "itemsPerRequestMax">> {
  const rps = raw.requestsPerSecond ?? channelSyncDefaults.requestsPerSecond;
  if (typeof rps !== "number" || !Number.isFinite(rps) || rps <= 0 || rps > requestsPerSecondMax) {
    return invalid(
      `${where}.requestsPerSecond must be a number above 0 and at most ${requestsPerSecondMax} (0.5 = one request every 2 s)`,
    );
  }
  const items = raw.itemsPerRequestMax ?? channelSyncDefaults.itemsPerRequestMax;
  if (
    typeof items !== "number" ||
    !Number.isSafeInteger(items) ||
    items < 1 ||
    items > itemsPerRequestCeiling
  ) {
    return invalid(`${where}.itemsPerRequestMax must be a whole number from 1 to ${itemsPerRequestCeiling}`);
  }
  return { ok: true, value: { requestsPerSecond: rps, itemsPerRequestMax: items } };
}

/** The units the marketplace holds for this SKU: its own figure, else the channel's default. */
export function marketplaceHeldOf(rule: ChannelSync, sku: string): number {
  return own(rule.marketplaceHeld, sku) ?? rule.marketplaceHeldUnits;
}
