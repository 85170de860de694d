import { type ChannelSync, channelSyncFields, parseChannelSync } from "../channels/index.ts";
import { type DomainLimits, invalid, isObject, type Parsed, parseId } from "../ledger/commands.ts";
import { type IdRecord, idRecord, own } from "../own.ts";

// The fulfilment network and its routing rules: warehouses, channels, score weights. Seeded from
// config/network.toml, then kept in a NATS KV bucket where each accepted revision is a named version
// (src/rules/). Plain data, validated once, before it is used.

/** A carrier a warehouse hands parcels to: its daily cut-off (warehouse local time) and transit days. */
export type Carrier = { id: string; cutoffMinute: number; transitDays: number };

export type Warehouse = {
  id: string;
  enabled: boolean;
  region: string;
  lat: number | null;
  lon: number | null;
  /** Units it can ship per day: open reservations plus today's shipments count against it. */
  capacityPerDay: number;
  /** Channel ids served; "*" serves every channel. */
  channels: string[];
  /** Empty: no carrier constraint (no cut-off filter, carrier score 0). */
  carriers: Carrier[];
  /** Offset of the warehouse's local time from UTC, for cut-offs (a fixed offset: no DST rules). */
  utcOffsetMinutes: number;
  /** Brokering safety stock: units an allocation must leave at this warehouse, per SKU or by default. */
  minStockDefault: number;
  /** Per SKU id: an IdRecord, read through `minStockOf` (src/domain/own.ts). */
  minStock: IdRecord<number>;
};

/**
 * Score weights and scales. A candidate's score for a line is the weighted sum of four components in
 * [0, 1] (1 is best); an order's objective is the sum over its lines minus `splitCost` per extra shipment.
 */
export type RoutingRules = {
  distanceWeight: number;
  stockWeight: number;
  loadWeight: number;
  carrierWeight: number;
  /** Score units an order loses for each warehouse it ships from beyond the first. */
  splitCost: number;
  /** Proximity is 1 at the ship-to point and 0 at this distance or further. */
  distanceKmMax: number;
  /** Carrier score is 1 for same-day delivery and 0 at this many transit days or more. */
  transitDaysMax: number;
  /** Candidates kept with their scores in each line's decision (the best ones). */
  decisionCandidatesMax: number;
};

export type SplitMode = "allow_partial" | "ship_complete";
export type SlaAction = "cancel" | "reroute";

export type Channel = {
  id: string;
  /** Whether a line that cannot be reserved waits as a backorder (else it is rejected). */
  backorder: boolean;
  split: SplitMode;
  /** 0: no limit on the number of warehouses an order ships from. */
  maxShipments: number;
  /** Default ship-by: the order's time plus this, when the order gives no deadline. */
  slaShipWithinMs: number;
  /** What happens to unshipped lines when the ship-by deadline passes. */
  slaAction: SlaAction;
  /** After an SLA re-route, the lines get this long before they are cancelled. */
  slaRerouteGraceMs: number;
  /**
   * An open order is "at risk" from this long before its ship-by deadline (0: never): it is marked once, its
   * released lines are asked again with `atRisk: true`, and it is counted and listed until it ships, is
   * cancelled or is re-routed by the SLA. Default: a quarter of slaShipWithinMs.
   */
  slaAtRiskMs: number;
  /** Stock sync: which warehouses feed the channel's ATS, share, buffer, thresholds, rate budget. */
  sync: ChannelSync;
};

/** One component of a kit: `qty` units of `sku` in every kit. */
export type KitComponent = { sku: string; qty: number };

/**
 * A kit (bundle): selling one unit of `sku` takes `qty` units of each component (docs/kits.md). The kit SKU
 * has no stock of its own: its lines reserve, ship and return their components, all or none.
 */
export type Kit = { sku: string; components: KitComponent[] };

export type Network = {
  version: string;
  warehouses: Warehouse[];
  channels: Channel[];
  routing: RoutingRules;
  /** The kit catalog (`[[kits]]`); absent or empty: no kits. Read it through `kitOf`. */
  kits?: Kit[];
};

export const defaultRouting: RoutingRules = {
  distanceWeight: 1,
  stockWeight: 0.5,
  loadWeight: 0.5,
  carrierWeight: 0.5,
  splitCost: 1,
  distanceKmMax: 2000,
  transitDaysMax: 7,
  decisionCandidatesMax: 5,
};

/** Rules for a channel not listed: the "*" entry if there is one. */
export const defaultChannelId = "*";

export function channelOf(network: Network, id: string): Channel | undefined {
  return network.channels.find((c) => c.id === id) ?? network.channels.find((c) => c.id === defaultChannelId);
}

/** The warehouses that may serve a channel, and why each other one may not (routing's first filter). */
export type Serving = {
  sites: Array<{ index: number; w: Warehouse }>;
  ids: string[];
  excluded: Array<{ warehouse: string; reason: "disabled" | "not_serving_channel" }>;
};

const servingCache = new WeakMap<Network, Map<string, Serving>>();
/** Per rule set and channel it is computed once; the map goes with the rule set when a new one is in force. */
const servingChannelsMax = 10_000;

/** Enabled warehouses serving a channel, in the order the network lists them (memoized per rule set). */
export function serving(network: Network, channel: string): Serving {
  let byChannel = servingCache.get(network);
  if (byChannel === undefined) {
    byChannel = new Map();
    servingCache.set(network, byChannel);
  }
  const cached = byChannel.get(channel);
  if (cached !== undefined) return cached;
  const entry: Serving = { sites: [], ids: [], excluded: [] };
  for (const [index, w] of network.warehouses.entries()) {
    if (!w.enabled) entry.excluded.push({ warehouse: w.id, reason: "disabled" });
    else if (!w.channels.includes(channel) && !w.channels.includes("*"))
      entry.excluded.push({ warehouse: w.id, reason: "not_serving_channel" });
    else {
      entry.sites.push({ index, w });
      entry.ids.push(w.id);
    }
  }
  // Channels come from order subjects: the memo stays bounded whatever producers send.
  if (byChannel.size < servingChannelsMax) byChannel.set(channel, entry);
  return entry;
}

/** Enabled warehouses serving a channel, less the excluded ones. */
export function candidatesFor(network: Network, channel: string, excluded: readonly string[] = []): string[] {
  const ids = serving(network, channel).ids;
  return excluded.length === 0 ? [...ids] : ids.filter((w) => !excluded.includes(w));
}

const dayMs = 86_400_000;

/** Bounds on a rule set: routing scores every warehouse per order, so their count is what it costs. */
export const networkLimits = {
  /** Also what ATS sums over: 256 × ledger.positionUnitsMax (≤ 10^13) ≈ 2.6 × 10^15 < 2^53. */
  warehousesMax: 256,
  /** Each synced channel gets an ATS per changed SKU per batch: their count multiplies the ledger's output. */
  channelsMax: 1_000,
  carriersPerWarehouseMax: 16,
  minStockSkusMax: 100_000,
  weightMax: 1_000,
  /** Units in a rule (capacity, min stock): ledger.positionUnitsMax's largest value; no position holds more. */
  unitsMax: 10_000_000_000_000,
  /** A ship-by or grace period longer than a year is a typo (ms; 365 × 86,400,000 ≈ 3.2 × 10^10). */
  slaMsMax: 365 * 86_400_000,
  /** Kits in the catalog: the rule set is one KV value (≤ 1 MiB), ~100 B per kit ⇒ ≤ ~10,000 kits fit. */
  kitsMax: 10_000,
  /**
   * Components per kit: a kit line sends one reserve per component per warehouse tried (and as many
   * answers); an order counts a kit line as one line per component against orders.linesPerOrderMax, so one
   * try of an order asks the ledger at most linesPerOrderMax reservations.
   */
  kitComponentsMax: 16,
  /** Units of one component in one kit: kits × this must stay far below ledger.positionUnitsMax. */
  kitComponentUnitsMax: 10_000,
} as const;

/** Ids in a rule set follow the ledger's id rule (parseId); idBytesMax is ledger.idBytesMax, at most 256. */
export type NetworkLimits = { idBytesMax: number };
const networkIdBytesMaxDefault = 256;

export function parseNetwork(raw: unknown, version: string, limits?: NetworkLimits): Parsed<Network> {
  if (!isObject(raw)) return invalid("network must be a table with [[warehouses]] and [[channels]]");
  const ids = idLimitsOf(limits);
  const ws = raw.warehouses ?? [];
  const cs = raw.channels ?? [];
  if (!Array.isArray(ws) || !Array.isArray(cs))
    return invalid("warehouses and channels must be arrays of tables");
  if (ws.length > networkLimits.warehousesMax)
    return invalid(`at most ${networkLimits.warehousesMax} warehouses; this rule set lists ${ws.length}`);
  if (cs.length > networkLimits.channelsMax) {
    return invalid(
      `at most ${networkLimits.channelsMax} channels; this rule set lists ${cs.length} (a "*" channel gives the rest its rules)`,
    );
  }
  const warehouses: Warehouse[] = [];
  const warehouseIds = new Set<string>();
  for (const [i, w] of ws.entries()) {
    const parsed = parseWarehouse(w, `warehouses[${i}]`, ids);
    if (!parsed.ok) return parsed;
    if (warehouseIds.has(parsed.value.id))
      return invalid(`warehouses[${i}].id ${JSON.stringify(parsed.value.id)} is listed twice`);
    warehouseIds.add(parsed.value.id);
    warehouses.push(parsed.value);
  }
  const channels: Channel[] = [];
  const channelIds = new Set<string>();
  for (const [i, c] of cs.entries()) {
    const parsed = parseChannel(c, `channels[${i}]`, [...warehouseIds], ids);
    if (!parsed.ok) return parsed;
    if (channelIds.has(parsed.value.id))
      return invalid(`channels[${i}].id ${JSON.stringify(parsed.value.id)} is listed twice`);
    channelIds.add(parsed.value.id);
    channels.push(parsed.value);
  }
  const routing = parseRouting(raw.routing ?? {});
  if (!routing.ok) return routing;
  const kits = parseKits(raw.kits ?? [], ids);
  if (!kits.ok) return kits;
  return {
    ok: true,
    value: {
      version,
      warehouses,
      channels,
      routing: routing.value,
      // Only a rule set that lists kits carries the key: one without reads and prints as before.
      ...(kits.value.length === 0 ? {} : { kits: kits.value }),
    },
  };
}

const kitFields = ["sku", "components"];
const kitComponentFields = ["sku", "qty"];

/**
 * `[[kits]]`: each a kit SKU and its components (SKU × units per kit). A kit SKU is listed once; a component
 * is listed once per kit, is not a kit itself (no kit inside a kit: a kit line reserves plain SKUs, one
 * ledger line each) and is not the kit. Any id is an ordinary id, "__proto__" included (lookups use a Map).
 */
function parseKits(raw: unknown, ids: DomainLimits): Parsed<Kit[]> {
  if (!Array.isArray(raw))
    return invalid("kits must be a list of tables { sku, components = [{ sku, qty }, …] }");
  if (raw.length > networkLimits.kitsMax)
    return invalid(`at most ${networkLimits.kitsMax} kits; this rule set lists ${raw.length}`);
  const kits: Kit[] = [];
  const kitSkus = new Set<string>();
  for (const [i, k] of raw.entries()) {
    const where = `kits[${i}]`;
    if (!isObject(k)) return invalid(`${where} must be a table { sku, components = [{ sku, qty }, …] }`);
    const unknown = Object.keys(k).find((f) => !kitFields.includes(f));
    if (unknown !== undefined)
      return invalid(`${where}.${unknown} is not a kit setting; known: ${kitFields.join(", ")}`);
    const sku = parseId(k.sku, `${where}.sku`, ids);
    if (!sku.ok) return sku;
    if (kitSkus.has(sku.value)) return invalid(`${where}.sku ${JSON.stringify(sku.value)} is listed twice`);
    kitSkus.add(sku.value);
    const cs = k.components;
    if (!Array.isArray(cs) || cs.length === 0 || cs.length > networkLimits.kitComponentsMax)
      return invalid(
        `${where}.components must list 1 to ${networkLimits.kitComponentsMax} components { sku, qty }`,
      );
    const components: KitComponent[] = [];
    for (const [j, c] of cs.entries()) {
      const at = `${where}.components[${j}]`;
      if (!isObject(c)) return invalid(`${at} must be a table { sku, qty }`);
      const extra = Object.keys(c).find((f) => !kitComponentFields.includes(f));
      if (extra !== undefined) return invalid(`${at}.${extra} is not a component setting; known: sku, qty`);
      const csku = parseId(c.sku, `${at}.sku`, ids);
      if (!csku.ok) return csku;
      if (csku.value === sku.value) return invalid(`${at}.sku is the kit itself; list its parts`);
      if (components.some((x) => x.sku === csku.value))
        return invalid(`${at}.sku ${JSON.stringify(csku.value)} is listed twice; give it once with its qty`);
      if (!wholeAtLeast(c.qty, 1) || c.qty > networkLimits.kitComponentUnitsMax)
        return invalid(
          `${at}.qty must be a whole number of units in [1, ${networkLimits.kitComponentUnitsMax}]`,
        );
      components.push({ sku: csku.value, qty: c.qty });
    }
    kits.push({ sku: sku.value, components });
  }
  // No kit inside a kit: checked once every kit SKU is known (a component may be a kit listed later).
  for (const [i, k] of kits.entries()) {
    const j = k.components.findIndex((c) => kitSkus.has(c.sku));
    if (j >= 0)
      return invalid(
        `kits[${i}].components[${j}].sku ${JSON.stringify(k.components[j]?.sku)} is a kit; a kit's components are plain SKUs: list that kit's components instead`,
      );
  }
  return { ok: true, value: kits };
}

const kitCache = new WeakMap<Network, Map<string, Kit>>();

/** The kit of a SKU under this rule set, or undefined for a plain SKU (memoized per rule set). */
export function kitOf(network: Network, sku: string): Kit | undefined {
  if (network.kits === undefined || network.kits.length === 0) return undefined;
  let bySku = kitCache.get(network);
  if (bySku === undefined) {
    // A Map, not an object: "__proto__" or "constructor" are ordinary kit SKUs here (src/domain/own.ts).
    bySku = new Map(network.kits.map((k) => [k.sku, k]));
    kitCache.set(network, bySku);
  }
  return bySku.get(sku);
}

function idLimitsOf(limits: NetworkLimits | undefined): DomainLimits {
  const idBytesMax = Math.min(limits?.idBytesMax ?? networkIdBytesMaxDefault, networkIdBytesMaxDefault);
  return { quantityMax: networkLimits.unitsMax, idBytesMax, linesPerOrderMax: 1, itemsPerMessageMax: 1 };
}

const wholeAtLeast = (v: unknown, min: number): v is number =>
  typeof v === "number" && Number.isSafeInteger(v) && v >= min;

/** A whole number of units in [0, unitsMax], or why not (NaN and ±Infinity are not whole numbers). */
function unitsError(v: unknown, at: string): string | null {
  if (!wholeAtLeast(v, 0)) return `${at} must be a whole number of units ≥ 0`;
  if (v > networkLimits.unitsMax) return `${at} must be at most ${networkLimits.unitsMax} units`;
  return null;
}

function parseWarehouse(w: unknown, where: string, ids: DomainLimits): Parsed<Warehouse> {
  if (!isObject(w)) return invalid(`${where} must be a table`);
  const id = parseId(w.id, `${where}.id`, ids);
  if (!id.ok) return id;
  const channels = parseChannelIds(w.channels ?? ["*"], `${where}.channels`, ids);
  if (!channels.ok) return channels;
  const capacity = w.capacityPerDay ?? 1_000_000;
  const capacityError = unitsError(capacity, `${where}.capacityPerDay`);
  if (capacityError !== null) return invalid(capacityError);
  for (const k of ["lat", "lon"] as const) {
    if (w[k] !== undefined && (typeof w[k] !== "number" || !Number.isFinite(w[k])))
      return invalid(`${where}.${k} must be a finite number of degrees`);
  }
  if (w.region !== undefined && (typeof w.region !== "string" || !regionOk(w.region, ids)))
    return invalid(
      `${where}.region must be a string of at most ${ids.idBytesMax} bytes, no control characters`,
    );
  if (typeof w.lat === "number" && Math.abs(w.lat) > 90) return invalid(`${where}.lat must be in [-90, 90]`);
  if (typeof w.lon === "number" && Math.abs(w.lon) > 180)
    return invalid(`${where}.lon must be in [-180, 180]`);
  if (w.enabled !== undefined && typeof w.enabled !== "boolean")
    return invalid(`${where}.enabled must be true or false`);
  const offset = w.utcOffsetMinutes ?? 0;
  if (typeof offset !== "number" || !Number.isSafeInteger(offset) || Math.abs(offset) > 14 * 60)
    return invalid(`${where}.utcOffsetMinutes must be a whole number of minutes in [-840, 840]`);
  const carriers = parseCarriers(w.carriers ?? [], `${where}.carriers`, ids);
  if (!carriers.ok) return carriers;
  const minStockDefault = w.minStockDefault ?? 0;
  const defaultError = unitsError(minStockDefault, `${where}.minStockDefault`);
  if (defaultError !== null) return invalid(defaultError);
  const minStock = parseMinStock(w.minStock ?? {}, `${where}.minStock`, ids);
  if (!minStock.ok) return minStock;
  return {
    ok: true,
    value: {
      id: id.value,
      enabled: w.enabled !== false,
      region: typeof w.region === "string" ? w.region : "",
      lat: typeof w.lat === "number" ? w.lat : null,
      lon: typeof w.lon === "number" ? w.lon : null,
      capacityPerDay: capacity as number,
      channels: channels.value,
      carriers: carriers.value,
      utcOffsetMinutes: offset,
      minStockDefault: minStockDefault as number,
      minStock: minStock.value,
    },
  };
}

/** Regions are compared with an order's ship-to region: "" (none) or a string an id could be. */
function regionOk(region: string, ids: DomainLimits): boolean {
  return region === "" || parseId(region, "region", ids).ok;
}

/** Channel ids a warehouse serves ("*": every channel): ids, no duplicates, at most channelsMax. */
function parseChannelIds(raw: unknown, where: string, ids: DomainLimits): Parsed<string[]> {
  if (!Array.isArray(raw)) return invalid(`${where} must be a list of channel ids (or ["*"])`);
  if (raw.length > networkLimits.channelsMax)
    return invalid(
      `${where} lists more than ${networkLimits.channelsMax} channels; use ["*"] to serve every one`,
    );
  const seen = new Set<string>();
  for (const [i, c] of raw.entries()) {
    const id = parseId(c, `${where}[${i}]`, ids);
    if (!id.ok) return invalid(`${id.detail} (a channel id, or "*" for every channel)`);
    if (seen.has(id.value)) return invalid(`${where} lists ${JSON.stringify(id.value)} twice; list it once`);
    seen.add(id.value);
  }
  return { ok: true, value: [...seen] };
}

function parseMinStock(raw: unknown, where: string, ids: DomainLimits): Parsed<IdRecord<number>> {
  if (!isObject(raw)) return invalid(`${where} must be a table of SKU = units`);
  const skus = Object.entries(raw);
  if (skus.length > networkLimits.minStockSkusMax) {
    return invalid(
      `${where} lists more than ${networkLimits.minStockSkusMax} SKUs; use minStockDefault for the rest`,
    );
  }
  for (const [sku, units] of skus) {
    const id = parseId(sku, `${where} key`, ids);
    if (!id.ok) return id;
    const error = unitsError(units, `${where}.${JSON.stringify(sku)}`);
    if (error !== null) return invalid(error);
  }
  return { ok: true, value: idRecord(skus as Array<[string, number]>) };
}

function parseCarriers(raw: unknown, where: string, ids: DomainLimits): Parsed<Carrier[]> {
  if (!Array.isArray(raw)) return invalid(`${where} must be a list of { id, cutoff = "HH:MM", transitDays }`);
  if (raw.length > networkLimits.carriersPerWarehouseMax)
    return invalid(`${where}: at most ${networkLimits.carriersPerWarehouseMax} carriers`);
  const out: Carrier[] = [];
  for (const [i, c] of raw.entries()) {
    const at = `${where}[${i}]`;
    if (!isObject(c)) return invalid(`${at} must be a table { id, cutoff = "HH:MM", transitDays }`);
    const id = parseId(c.id, `${at}.id`, ids);
    if (!id.ok) return id;
    if (out.some((x) => x.id === id.value))
      return invalid(`${at}.id ${JSON.stringify(id.value)} is listed twice; list each carrier once`);
    const m = typeof c.cutoff === "string" ? /^([01]\d|2[0-3]):([0-5]\d)$/.exec(c.cutoff) : null;
    if (m === null) return invalid(`${at}.cutoff must be a time "HH:MM" (24 h, warehouse local time)`);
    if (!wholeAtLeast(c.transitDays, 0) || c.transitDays > 365)
      return invalid(`${at}.transitDays must be a whole number of days in [0, 365]`);
    out.push({ id: id.value, cutoffMinute: Number(m[1]) * 60 + Number(m[2]), transitDays: c.transitDays });
  }
  return { ok: true, value: out };
}

/** Fields of a channel table that are not stock-sync fields (those belong to parseChannelSync). */
const channelFields = [
  "id",
  "backorder",
  "split",
  "maxShipments",
  "slaShipWithinMs",
  "slaAction",
  "slaRerouteGraceMs",
  "slaAtRiskMs",
];

function parseChannel(
  c: unknown,
  where: string,
  warehouseIds: readonly string[],
  ids: DomainLimits,
): Parsed<Channel> {
  if (!isObject(c)) return invalid(`${where} must be a table`);
  const unknown = Object.keys(c).find(
    (k) => !channelFields.includes(k) && !(channelSyncFields as readonly string[]).includes(k),
  );
  if (unknown !== undefined) {
    return invalid(
      `${where}.${unknown} is not a channel setting; known: ${[...channelFields, ...channelSyncFields].join(", ")}`,
    );
  }
  const id = parseId(c.id, `${where}.id`, ids);
  if (!id.ok) return id;
  const sync = parseChannelSync(c, where, warehouseIds, ids.idBytesMax);
  if (!sync.ok) return sync;
  const split = c.split ?? "allow_partial";
  if (split !== "allow_partial" && split !== "ship_complete") {
    return invalid(`${where}.split must be allow_partial or ship_complete`);
  }
  const slaAction = c.slaAction ?? "cancel";
  if (slaAction !== "cancel" && slaAction !== "reroute")
    return invalid(`${where}.slaAction must be cancel or reroute`);
  const slaShipWithinMs = c.slaShipWithinMs ?? 2 * dayMs;
  const ints = {
    maxShipments: c.maxShipments ?? 0,
    slaShipWithinMs,
    slaRerouteGraceMs: c.slaRerouteGraceMs ?? dayMs,
    // A quarter of the default ship-by: 12 h of 2 days, time for a WMS to move an order up its queue.
    slaAtRiskMs:
      c.slaAtRiskMs ??
      (typeof slaShipWithinMs === "number" ? Math.floor(slaShipWithinMs / 4) : slaShipWithinMs),
  };
  const intsMax = {
    maxShipments: networkLimits.warehousesMax,
    slaShipWithinMs: networkLimits.slaMsMax,
    slaRerouteGraceMs: networkLimits.slaMsMax,
    slaAtRiskMs: networkLimits.slaMsMax,
  };
  for (const k of ["maxShipments", "slaShipWithinMs", "slaRerouteGraceMs", "slaAtRiskMs"] as const) {
    const v = ints[k];
    if (!wholeAtLeast(v, 0) || v > intsMax[k])
      return invalid(`${where}.${k} must be a whole number in [0, ${intsMax[k]}]`);
  }
  if (c.backorder !== undefined && typeof c.backorder !== "boolean")
    return invalid(`${where}.backorder must be true or false`);
  return {
    ok: true,
    value: {
      id: id.value,
      backorder: c.backorder === true,
      split,
      maxShipments: ints.maxShipments as number,
      slaShipWithinMs: ints.slaShipWithinMs as number,
      slaAction,
      slaRerouteGraceMs: ints.slaRerouteGraceMs as number,
      slaAtRiskMs: ints.slaAtRiskMs as number,
      sync: sync.value,
    },
  };
}

function parseRouting(raw: unknown): Parsed<RoutingRules> {
  if (!isObject(raw)) return invalid("routing must be a table of weights and scales");
  const known = new Set(Object.keys(defaultRouting));
  const unknown = Object.keys(raw).find((k) => !known.has(k));
  if (unknown !== undefined)
    return invalid(`routing.${unknown} is not a routing setting; known: ${[...known].join(", ")}`);
  const out = { ...defaultRouting };
  for (const k of ["distanceWeight", "stockWeight", "loadWeight", "carrierWeight", "splitCost"] as const) {
    const v = raw[k] ?? defaultRouting[k];
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0 || v > networkLimits.weightMax)
      return invalid(`routing.${k} must be a number in [0, ${networkLimits.weightMax}]`);
    out[k] = v;
  }
  for (const k of ["distanceKmMax", "transitDaysMax", "decisionCandidatesMax"] as const) {
    const v = raw[k] ?? defaultRouting[k];
    if (!wholeAtLeast(v, 1) || v > 100_000)
      return invalid(`routing.${k} must be a whole number in [1, 100000]`);
    out[k] = v;
  }
  return { ok: true, value: out };
}

/** Channels whose stock is published: every channel listed by its own id ("*" only gives default rules). */
export function syncedChannels(network: Network): Channel[] {
  return network.channels.filter((c) => c.id !== defaultChannelId);
}

/** The units an allocation must leave of `sku` at warehouse `w` (brokering safety stock). */
export function minStockOf(w: Warehouse, sku: string): number {
  if (!hasPerSkuMinStock(w)) return w.minStockDefault;
  return own(w.minStock, sku) ?? w.minStockDefault;
}

const perSkuMinStock = new WeakMap<Warehouse, boolean>();

/** Most warehouses list no per-SKU minimum: routing then skips the lookup (it runs per line per warehouse). */
function hasPerSkuMinStock(w: Warehouse): boolean {
  let has = perSkuMinStock.get(w);
  if (has === undefined) {
    has = Object.keys(w.minStock).length > 0;
    perSkuMinStock.set(w, has);
  }
  return has;
}
