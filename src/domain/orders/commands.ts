import type { ErpBatch, ErpDocument, ErpLine, ErpMovement } from "../erp/index.ts";
import {
  type DomainLimits,
  invalid,
  isObject,
  type Parsed,
  parseField,
  parseId,
  type StockItem,
} from "../ledger/commands.ts";
import type { LineRequest, LineResult, ReturnDisposition } from "../ledger/types.ts";
import type { AtsItem } from "../sync/index.ts";
import type {
  FulfilmentItem,
  OrderInput,
  OrderStatusItem,
  RejectedInput,
  ReturnInput,
  RoutingSummary,
  ShippedInput,
  ShipTo,
  SplitPolicy,
} from "./types.ts";

// Validation of order-stage inputs. Each refuses unknown fields and names the field and the fix. Every field
// that can reach an output has a bound (docs/subjects.md lists them): ids `ledger.idBytesMax`, free text
// `orders.textBytesMax`, lists `orders.linesPerOrderMax`, numbers finite. `worstCaseOutputs` (below) builds the
// largest items those bounds allow, and the config refuses a `streams.messageBytesMax` they would not fit.

/**
 * The ledger's limits plus the bound on free text (cancel and WMS reasons, shipTo region and zip).
 * `textBytesMax` is optional only while callers still build a plain DomainLimits: absent, the schema's default.
 */
export type OrderInputLimits = DomainLimits & { textBytesMax?: number };

/** `orders.textBytesMax`'s default (src/config/schema.ts): used when a caller passes no text limit. */
export const textBytesMaxDefault = 256;

/** shipBy as ISO-8601 text: "2030-01-02T18:00:00.000+14:00" is 29 characters; 64 leaves room for any form. */
const timeTextLengthMax = 64;

/**
 * The body's allowed fields as an object without a prototype, or why not: a field is read only if the
 * payload has it itself (a name such as "constructor" never reaches an inherited member).
 */
function fieldsOf(
  body: Record<string, unknown>,
  allowed: string[],
  what: string,
): Parsed<Record<string, unknown>> {
  const out: Record<string, unknown> = Object.create(null);
  for (const key of Object.keys(body)) {
    if (!allowed.includes(key))
      return invalid(`unknown field ${JSON.stringify(key)} in ${what}; expected ${allowed.join(", ")}`);
    out[key] = body[key];
  }
  return { ok: true, value: out };
}

const own = (o: Record<string, unknown>, key: string): unknown =>
  Object.hasOwn(o, key) ? o[key] : undefined;

/**
 * Free text (a reason, a region, a zip): a string of at most `orders.textBytesMax` UTF-8 bytes, well-formed
 * Unicode (a lone surrogate would become a 6-byte escape in JSON), without control characters (C0, DEL, C1):
 * it is shown to people and carried in every status and fulfilment item.
 */
export function parseText(v: unknown, field: string, limits: OrderInputLimits): Parsed<string> {
  if (typeof v !== "string") return invalid(`${field} must be a string`);
  const max = limits.textBytesMax ?? textBytesMaxDefault;
  const bytes = Buffer.byteLength(v, "utf8");
  if (bytes > max)
    return invalid(`${field} is ${bytes} UTF-8 bytes; at most ${max} are allowed (orders.textBytesMax)`);
  const problem = textProblem(v);
  return problem === null ? { ok: true, value: v } : invalid(`${field} ${problem}`);
}

/** A control character (C0, DEL, C1) or a lone surrogate, or null. */
function textProblem(v: string): string | null {
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f))
      return "must not contain control characters (U+0000–U+001F, U+007F–U+009F)";
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = v.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++; // a pair: one character outside the BMP
        continue;
      }
    }
    if (c >= 0xd800 && c <= 0xdfff) return "must be well-formed Unicode text (it has a lone surrogate)";
  }
  return null;
}

/** A finite number (msgpack carries NaN and ±Infinity; JSON cannot, but both are checked) in [min, max]. */
function finiteIn(v: unknown, min: number, max: number): v is number {
  return typeof v === "number" && Number.isFinite(v) && v >= min && v <= max;
}

function qty(v: unknown, field: string, limits: OrderInputLimits): Parsed<number> {
  return parseField(v, field, "qty", limits) as Parsed<number>;
}

function uniqueIds(ids: string[], what: string): Parsed<null> {
  return new Set(ids).size === ids.length ? { ok: true, value: null } : invalid(`${what} names a line twice`);
}

/** A non-empty array of at most `orders.linesPerOrderMax` entries, checked before any entry is read. */
function linesArray(v: unknown, field: string, limits: OrderInputLimits): Parsed<unknown[]> {
  if (!Array.isArray(v) || v.length === 0) return invalid(`${field} must be a non-empty array`);
  if (v.length > limits.linesPerOrderMax)
    return invalid(`${field} has at most ${limits.linesPerOrderMax} entries (orders.linesPerOrderMax)`);
  return { ok: true, value: v };
}

/** `sluice.in.order.<channel>.<orderId>`: the channel and order id come from the subject. */
export function parseOrder(
  channel: string,
  orderId: string,
  body: unknown,
  limits: OrderInputLimits,
): Parsed<OrderInput> {
  if (!isObject(body))
    return invalid('payload must be an object such as {"lines":[{"sku":"A","qty":1,"price":9.9}]}');
  const fields = fieldsOf(body, ["lines", "shipTo", "shipBy", "priority", "split"], "order");
  if (!fields.ok) return fields;
  const b = fields.value;
  const raws = linesArray(b.lines, "lines", limits);
  if (!raws.ok) return raws;
  const lines: OrderInput["lines"] = [];
  for (const [i, raw] of raws.value.entries()) {
    const line = parseOrderLine(raw, i, limits);
    if (!line.ok) return line;
    lines.push(line.value);
  }
  const unique = uniqueIds(
    lines.map((l) => l.lineId),
    "lines",
  );
  if (!unique.ok) return unique;
  const shipTo = parseShipTo(b.shipTo, limits);
  if (!shipTo.ok) return shipTo;
  const shipByMs = parseShipBy(b.shipBy);
  if (!shipByMs.ok) return shipByMs;
  const priority = b.priority ?? 0;
  if (typeof priority !== "number" || !Number.isSafeInteger(priority))
    return invalid("priority must be a whole number");
  const split = parseSplit(b.split);
  if (!split.ok) return split;
  return {
    ok: true,
    value: {
      channel,
      orderId,
      lines,
      shipTo: shipTo.value,
      shipByMs: shipByMs.value,
      priority,
      split: split.value,
    },
  };
}

function parseOrderLine(
  raw: unknown,
  i: number,
  limits: OrderInputLimits,
): Parsed<OrderInput["lines"][number]> {
  if (!isObject(raw)) return invalid(`lines[${i}] must be an object`);
  const f = fieldsOf(raw, ["lineId", "sku", "qty", "price"], `lines[${i}]`);
  if (!f.ok) return f;
  const l = f.value;
  const lineId = parseId(l.lineId ?? String(i + 1), `lines[${i}].lineId`, limits);
  if (!lineId.ok) return lineId;
  const sku = parseId(l.sku, `lines[${i}].sku`, limits);
  if (!sku.ok) return sku;
  const q = qty(l.qty, `lines[${i}].qty`, limits);
  if (!q.ok) return q;
  const price = l.price ?? 0;
  if (!finiteIn(price, 0, Number.MAX_VALUE))
    return invalid(`lines[${i}].price must be a finite number ≥ 0 (not NaN or Infinity)`);
  // -0 is ≥ 0: kept as 0, so that outputs never carry a signed zero.
  return { ok: true, value: { lineId: lineId.value, sku: sku.value, qty: q.value, price: price + 0 } };
}

/** shipBy: ISO-8601 text or ms since the epoch, a whole number > 0; absent or null: the channel's SLA. */
function parseShipBy(v: unknown): Parsed<number | null> {
  if (v === undefined || v === null) return { ok: true, value: null };
  const t =
    typeof v === "number"
      ? v
      : typeof v === "string" && v.length <= timeTextLengthMax
        ? Date.parse(v)
        : Number.NaN;
  if (!Number.isSafeInteger(t) || t <= 0) {
    return invalid(
      `shipBy must be an ISO-8601 time (at most ${timeTextLengthMax} characters) or milliseconds since the epoch`,
    );
  }
  return { ok: true, value: t };
}

function parseShipTo(v: unknown, limits: OrderInputLimits): Parsed<ShipTo> {
  const out: ShipTo = { region: null, zip: null, lat: null, lon: null };
  if (v === undefined || v === null) return { ok: true, value: out };
  if (!isObject(v)) return invalid("shipTo must be an object with region, zip, lat, lon");
  const f = fieldsOf(v, ["region", "zip", "lat", "lon"], "shipTo");
  if (!f.ok) return f;
  const s = f.value;
  for (const k of ["region", "zip"] as const) {
    if (s[k] === undefined || s[k] === null) continue;
    const text = parseText(s[k], `shipTo.${k}`, limits);
    if (!text.ok) return text;
    out[k] = text.value;
  }
  // A NaN coordinate would pass a range check (every comparison with NaN is false) and make every routing
  // score NaN: only finite numbers in range.
  for (const [k, max] of [
    ["lat", 90],
    ["lon", 180],
  ] as const) {
    const c = s[k];
    if (c === undefined || c === null) continue;
    if (!finiteIn(c, -max, max)) return invalid(`shipTo.${k} must be a finite number from -${max} to ${max}`);
    out[k] = c + 0;
  }
  return { ok: true, value: out };
}

function parseSplit(v: unknown): Parsed<Partial<SplitPolicy>> {
  if (v === undefined || v === null) return { ok: true, value: {} };
  if (!isObject(v)) return invalid("split must be an object with mode, maxShipments, backorder");
  const f = fieldsOf(v, ["mode", "maxShipments", "backorder"], "split");
  if (!f.ok) return f;
  const s = f.value;
  const out: Partial<SplitPolicy> = {};
  if (s.mode !== undefined) {
    if (s.mode !== "allow_partial" && s.mode !== "ship_complete")
      return invalid("split.mode must be allow_partial or ship_complete");
    out.mode = s.mode;
  }
  if (s.maxShipments !== undefined) {
    if (typeof s.maxShipments !== "number" || !Number.isSafeInteger(s.maxShipments) || s.maxShipments < 0) {
      return invalid("split.maxShipments must be a whole number ≥ 0 (0: no limit)");
    }
    out.maxShipments = s.maxShipments;
  }
  if (s.backorder !== undefined) {
    if (typeof s.backorder !== "boolean") return invalid("split.backorder must be true or false");
    out.backorder = s.backorder;
  }
  return { ok: true, value: out };
}

function parseLineIds(v: unknown, field: string, limits: OrderInputLimits): Parsed<string[]> {
  if (!Array.isArray(v) || v.length === 0) return invalid(`${field} must be a non-empty array of line ids`);
  if (v.length > limits.linesPerOrderMax)
    return invalid(`${field} names at most ${limits.linesPerOrderMax} lines (orders.linesPerOrderMax)`);
  const ids: string[] = [];
  for (const [i, id] of v.entries()) {
    const p = parseId(id, `${field}[${i}]`, limits);
    if (!p.ok) return p;
    ids.push(p.value);
  }
  const unique = uniqueIds(ids, field);
  return unique.ok ? { ok: true, value: ids } : unique;
}

/** An optional free-text reason: absent or null is none. */
function parseReason(v: unknown, limits: OrderInputLimits): Parsed<string | null> {
  return v === undefined || v === null ? { ok: true, value: null } : parseText(v, "reason", limits);
}

/** `sluice.in.cancel.<channel>.<orderId>`: `{}` cancels the whole order, `{"lines":["1"]}` some lines. */
export function parseCancel(
  body: unknown,
  limits: OrderInputLimits,
): Parsed<{ lineIds: string[] | null; reason: string | null }> {
  if (!isObject(body))
    return invalid('payload must be an object: {} for the whole order or {"lines":["1","2"]}');
  const f = fieldsOf(body, ["lines", "reason"], "cancel");
  if (!f.ok) return f;
  const b = f.value;
  let lineIds: string[] | null = null;
  if (b.lines !== undefined) {
    const p = parseLineIds(b.lines, "lines", limits);
    if (!p.ok) return p;
    lineIds = p.value;
  }
  const reason = parseReason(b.reason, limits);
  if (!reason.ok) return reason;
  return { ok: true, value: { lineIds, reason: reason.value } };
}

const dispositions: readonly ReturnDisposition[] = ["sellable", "damaged", "quality_control"];

/** `sluice.in.return.<channel>.<orderId>`: lines with quantities and disposition. */
export function parseReturn(
  channel: string,
  orderId: string,
  body: unknown,
  limits: OrderInputLimits,
): Parsed<ReturnInput> {
  if (!isObject(body)) {
    return invalid(
      'payload must be an object such as {"returnId":"r1","lines":[{"lineId":"1","qty":1,"disposition":"sellable"}]}',
    );
  }
  const f = fieldsOf(body, ["returnId", "lines"], "return");
  if (!f.ok) return f;
  const b = f.value;
  const returnId = parseId(b.returnId, "returnId", limits);
  if (!returnId.ok) return returnId;
  const raws = linesArray(b.lines, "lines", limits);
  if (!raws.ok) return raws;
  const lines: ReturnInput["lines"] = [];
  for (const [i, raw] of raws.value.entries()) {
    if (!isObject(raw)) return invalid(`lines[${i}] must be an object`);
    const lf = fieldsOf(raw, ["lineId", "qty", "disposition", "warehouse"], `lines[${i}]`);
    if (!lf.ok) return lf;
    const l = lf.value;
    const lineId = parseId(l.lineId, `lines[${i}].lineId`, limits);
    if (!lineId.ok) return lineId;
    const q = qty(l.qty, `lines[${i}].qty`, limits);
    if (!q.ok) return q;
    const disposition = dispositions.find((d) => d === l.disposition);
    if (disposition === undefined)
      return invalid(`lines[${i}].disposition must be one of ${dispositions.join(", ")}`);
    let warehouse: string | null = null;
    if (l.warehouse !== undefined && l.warehouse !== null) {
      const w = parseId(l.warehouse, `lines[${i}].warehouse`, limits);
      if (!w.ok) return w;
      warehouse = w.value;
    }
    lines.push({ lineId: lineId.value, qty: q.value, disposition, warehouse });
  }
  const unique = uniqueIds(
    lines.map((l) => l.lineId),
    "lines",
  );
  if (!unique.ok) return unique;
  return { ok: true, value: { channel, orderId, returnId: returnId.value, lines } };
}

/** The order a WMS event is about: what the router needs to find its partition. */
export function parseOrderRef(
  body: unknown,
  limits: DomainLimits,
): Parsed<{ channel: string; orderId: string }> {
  if (!isObject(body)) return invalid("payload must be an object with channel and orderId");
  const channel = parseId(own(body, "channel"), "channel", limits);
  if (!channel.ok) return channel;
  const orderId = parseId(own(body, "orderId"), "orderId", limits);
  if (!orderId.ok) return orderId;
  return { ok: true, value: { channel: channel.value, orderId: orderId.value } };
}

/** `sluice.in.wms.<warehouse>.shipped`: full or partial, per line. */
export function parseShipped(
  warehouse: string,
  body: unknown,
  limits: OrderInputLimits,
): Parsed<ShippedInput> {
  const ref = parseOrderRef(body, limits);
  if (!ref.ok) return ref;
  const f = fieldsOf(
    body as Record<string, unknown>,
    ["channel", "orderId", "shipmentId", "lines"],
    "shipped",
  );
  if (!f.ok) return f;
  const b = f.value;
  const shipmentId = parseId(b.shipmentId, "shipmentId", limits);
  if (!shipmentId.ok) return shipmentId;
  const raws = linesArray(b.lines, "lines", limits);
  if (!raws.ok) return raws;
  const lines: ShippedInput["lines"] = [];
  for (const [i, raw] of raws.value.entries()) {
    if (!isObject(raw)) return invalid(`lines[${i}] must be an object`);
    const lf = fieldsOf(raw, ["lineId", "qty"], `lines[${i}]`);
    if (!lf.ok) return lf;
    const lineId = parseId(lf.value.lineId, `lines[${i}].lineId`, limits);
    if (!lineId.ok) return lineId;
    const q = qty(lf.value.qty, `lines[${i}].qty`, limits);
    if (!q.ok) return q;
    lines.push({ lineId: lineId.value, qty: q.value });
  }
  const unique = uniqueIds(
    lines.map((l) => l.lineId),
    "lines",
  );
  if (!unique.ok) return unique;
  return { ok: true, value: { ...ref.value, warehouse, shipmentId: shipmentId.value, lines } };
}

/** `sluice.in.wms.<warehouse>.rejected`: the warehouse cannot fulfil these lines. */
export function parseRejected(
  warehouse: string,
  body: unknown,
  limits: OrderInputLimits,
): Parsed<RejectedInput> {
  const ref = parseOrderRef(body, limits);
  if (!ref.ok) return ref;
  const f = fieldsOf(
    body as Record<string, unknown>,
    ["channel", "orderId", "lines", "stockMissing", "reason"],
    "rejected",
  );
  if (!f.ok) return f;
  const b = f.value;
  const lineIds = parseLineIds(b.lines, "lines", limits);
  if (!lineIds.ok) return lineIds;
  if (b.stockMissing !== undefined && typeof b.stockMissing !== "boolean")
    return invalid("stockMissing must be true or false");
  const reason = parseReason(b.reason, limits);
  if (!reason.ok) return reason;
  return {
    ok: true,
    value: {
      ...ref.value,
      warehouse,
      lineIds: lineIds.value,
      stockMissing: b.stockMissing === true,
      reason: reason.value,
    },
  };
}

// ---- output bounds --------------------------------------------------------------------------------
// The largest item each stage can put in an output, built from the input bounds above with the output types
// themselves (a field added to an output type must be added here, or this does not compile). The config
// encodes them as the stages do (JSON for sluice.out.*, msgpack for internal hops) and refuses a
// `streams.messageBytesMax` they would not fit (src/config/load.ts); test/unit/output-fits.test.ts checks that
// no output the real domain code builds from valid inputs is larger than its kind's worst case here.

/** What bounds every output: the input limits, and those of the rule set (warehouse and carrier ids). */
export type OutputBounds = {
  idBytesMax: number;
  textBytesMax: number;
  linesPerOrderMax: number;
  quantityMax: number;
  /** Warehouse and carrier ids of the rule set: they reach fulfilment items, statuses and line requests. */
  networkIdBytesMax: number;
  /** Warehouses in the rule set: a reservation request lists each as a candidate at most once. */
  warehousesMax: number;
  /**
   * Components of a kit (networkLimits.kitComponentsMax). A kit line takes one of the order's
   * `linesPerOrderMax` ledger lines per component (orders.ts, kitsOf), so an order lists at most
   * `linesPerOrderMax` components in all: its fulfilment items and ERP documents grow with that, not with
   * lines × components.
   */
  kitComponentsMax: number;
};

export type OutputKind =
  | "order status item"
  | "fulfilment item"
  | "line request"
  | "line result"
  | "stock item"
  | "router stock item"
  | "ERP batch part";

export type WorstCaseOutput = { kind: OutputKind; codec: "json" | "msgpack"; item: unknown };

/**
 * A string of `bytes` UTF-8 bytes that costs the most once encoded: `"` is 1 byte and 2 in JSON (`\"`), as
 * `\` is; a 4-byte character stays 4 bytes in both codecs, a lone surrogate in an id 3 bytes and 6 in JSON:
 * no character allowed in an id or in text costs more than twice its UTF-8 bytes (control characters, which
 * JSON writes as 6-byte escapes, are refused everywhere). msgpack writes any string as its bytes plus a header.
 */
const costly = (bytes: number) => '"'.repeat(bytes);
/** The longest subject token of an id of `bytes` bytes: `~` and base64url without padding. */
const tokenOf = (bytes: number) => `~${"A".repeat(Math.ceil((4 * bytes) / 3))}`;
/** 24 characters in JSON, 9 bytes in msgpack: no double is longer (`Number.MIN_VALUE` is `5e-324`). */
const longestFloat = -2.2250738585072014e-308;
/** 17 characters in JSON, 9 bytes in msgpack: versions, times, counts, quantities are safe integers. */
const longestInt = -Number.MAX_SAFE_INTEGER;
/** `kv-<revision>` (a uint64) or `file-<12 hex>`. */
const longestRulesVersion = "kv-18446744073709551615";
/** A store id is 8 characters (partition-store.ts); a whole UUID is the most it could ever be. */
const longestStoreId = "0".repeat(36);

export function worstCaseOutputs(b: OutputBounds): WorstCaseOutput[] {
  const id = costly(b.idBytesMax);
  const networkId = costly(b.networkIdBytesMax);
  const text = costly(b.textBytesMax);
  const orderKey = `${tokenOf(b.idBytesMax)}.${tokenOf(b.idBytesMax)}`;
  const lines = Array.from({ length: b.linesPerOrderMax }, () => id);
  const qty = b.quantityMax;
  const statusLine: OrderStatusItem["lines"][number] = {
    lineId: id,
    sku: id,
    qty,
    state: "backordered",
    warehouse: networkId,
    shippedQty: qty,
    returnedQty: qty,
    cancelCause: "ship_complete",
    refusal: "insufficient_available",
  };
  const status: OrderStatusItem = {
    orderKey,
    channel: id,
    orderId: id,
    version: longestInt,
    status: "partially_allocated",
    event: "ship_complete_cancelled",
    detail: longestDetail(b, id, networkId, text),
    atRisk: true,
    lines: lines.map(() => statusLine),
    atMs: longestInt,
  };
  const routing: RoutingSummary = {
    rules: longestRulesVersion,
    score: longestFloat,
    reason: "fewer_shipments",
    distanceKm: longestFloat,
    carrierId: networkId,
    shipments: longestInt,
  };
  const fulfil = (fulfilLines: FulfilmentItem["lines"]): FulfilmentItem => ({
    type: "fulfil",
    orderKey,
    channel: id,
    orderId: id,
    version: longestInt,
    warehouse: networkId,
    shipTo: { region: text, zip: text, lat: longestFloat, lon: longestFloat },
    shipByMs: longestInt,
    priority: longestInt,
    atRisk: false,
    lines: fulfilLines,
    atMs: longestInt,
  });
  const fulfilLine = { lineId: id, sku: id, qty, routing };
  // A kit line's components are rule-set SKUs; units are kits × units per kit (longestInt bounds them).
  const withComponents = (n: number) => ({
    ...fulfilLine,
    components: Array.from({ length: n }, () => ({ sku: networkId, qty: longestInt })),
  });
  const ref = { orderKey, lineId: id };
  const candidates = Array.from({ length: b.warehousesMax }, () => networkId);
  const requests: LineRequest[] = [
    {
      kind: "reserve",
      ref,
      sku: id,
      qty,
      candidates,
      keep: candidates.map(() => longestInt),
      attempt: longestInt,
    },
    // The order stage's longest cause: `reroute:ship_complete` (orders.ts request()).
    {
      kind: "reject",
      ref,
      sku: id,
      stockMissing: false,
      attempt: longestInt,
      cause: "reroute:ship_complete",
    },
    {
      kind: "return",
      ref,
      sku: id,
      eventId: id,
      qty,
      disposition: "quality_control",
      warehouse: networkId,
      attempt: longestInt,
    },
  ];
  // A kit component's request and answer: its SKU a rule-set id, its line id `<kit line id>#<n>` (within
  // ledger.idBytesMax: orders.ts refuses a kit line whose component ids would be longer), qty in units.
  const components: LineRequest[] = requests.map((r) =>
    "qty" in r ? { ...r, sku: networkId, qty: longestInt } : { ...r, sku: networkId },
  );
  requests.push(...components);
  const results: LineResult[] = [
    { kind: "reserved", ref, sku: id, attempt: longestInt, warehouse: networkId, qty },
    { kind: "reserved", ref, sku: networkId, attempt: longestInt, warehouse: networkId, qty: longestInt },
    {
      kind: "refused",
      ref,
      sku: networkId,
      attempt: longestInt,
      code: "safety_stock_exceeds_available",
      available: longestInt,
    },
    {
      kind: "refused",
      ref,
      sku: id,
      attempt: longestInt,
      code: "safety_stock_exceeds_available",
      available: longestInt,
    },
  ];
  const stockItem: StockItem = {
    sku: id,
    command: {
      type: "unhold",
      warehouse: networkId,
      ref: id,
      qty,
      bucket: "quality_control",
      to: "available",
    },
  };
  const ats: AtsItem = { sku: id, ats: longestInt, version: longestInt, atMs: longestInt };
  return [
    { kind: "order status item", codec: "json", item: status },
    // Plain lines, and the two extremes of the kit lines an order's linesPerOrderMax ledger lines allow:
    // as many kit lines as possible (1 component each), and kits of kitComponentsMax components. The size is
    // linear in the lines and the components, so the largest mix is one of these.
    ...kitShapes(b).map((shape) => ({
      kind: "fulfilment item" as const,
      codec: "json" as const,
      item: fulfil(shape.length === 0 ? lines.map(() => fulfilLine) : shape.map(withComponents)),
    })),
    ...requests.map((item) => ({ kind: "line request" as const, codec: "msgpack" as const, item })),
    ...results.map((item) => ({ kind: "line result" as const, codec: "msgpack" as const, item })),
    { kind: "router stock item", codec: "msgpack", item: stockItem },
    { kind: "stock item", codec: "json", item: ats },
    ...worstErpParts(b, { id, networkId, orderKey, lines }),
  ];
}

/**
 * The kit lines of an order at `linesPerOrderMax` ledger lines, as components per kit line: none (plain
 * lines), as many 1-component kits as lines, and kits of kitComponentsMax components (the rest in one more).
 */
function kitShapes(b: OutputBounds): number[][] {
  const n = b.linesPerOrderMax;
  const k = Math.min(b.kitComponentsMax, n);
  const full = Array.from({ length: Math.floor(n / k) }, () => k);
  return [[], Array.from({ length: n }, () => 1), n % k === 0 ? full : [...full, n % k]];
}

/** The longest `detail` of a status item: the order stage writes these (orders.ts, touch()). */
function longestDetail(b: OutputBounds, id: string, networkId: string, text: string): string {
  const ids = Array.from({ length: b.linesPerOrderMax }, () => id);
  const details = [
    `already shipped: ${shippedList(ids)}; send a return`, // cancel_refused
    `${id}: ${text}`, // rejected_by_warehouse: the WMS subject's warehouse and the reason
    text, // cancelled: the cancel's reason
    `${id}: safety_stock_exceeds_available`, // refused
    `${id} at ${networkId}`, // stock_lost
    `${id} (${networkId}) at ${networkId}`, // stock_lost of a kit component
    `${id}: safety_stock_exceeds_available at ${networkId}`, // kit_retried
    `line ${id} could not be re-routed`, // ship_complete_cancelled
  ];
  return details.reduce((a, d) => (JSON.stringify(d).length > JSON.stringify(a).length ? d : a));
}

/** One ERP batch part per document kind (and one for a movement): a part holds at least one (erp-window.ts). */
function worstErpParts(
  b: OutputBounds,
  s: { id: string; networkId: string; orderKey: string; lines: string[] },
): WorstCaseOutput[] {
  const plain: ErpLine = { lineId: s.id, sku: s.id, qty: b.quantityMax, price: longestFloat };
  // A kit line is listed as its components, each naming its parent: at most linesPerOrderMax in all.
  const kit = { lineId: s.id, sku: s.id, qty: b.quantityMax, price: longestFloat };
  const component: ErpLine = { lineId: s.id, sku: s.networkId, qty: longestInt, price: 0, kit };
  return [plain, component].flatMap((line) => erpParts(s, line));
}

function erpParts(
  s: { id: string; networkId: string; orderKey: string; lines: string[] },
  line: ErpLine,
): WorstCaseOutput[] {
  const documents: ErpDocument[] = [
    {
      kind: "shipment",
      id: `shipment:${s.orderKey}:${s.id}`,
      orderKey: s.orderKey,
      channel: s.id,
      orderId: s.id,
      warehouse: s.networkId,
      shipmentId: s.id,
      lines: s.lines.map(() => line),
      atMs: longestInt,
    },
    {
      kind: "cancellation",
      id: `cancel:${s.orderKey}:${longestInt}:ship_complete`,
      orderKey: s.orderKey,
      channel: s.id,
      orderId: s.id,
      cause: "ship_complete",
      lines: s.lines.map(() => line),
      atMs: longestInt,
    },
    {
      kind: "return",
      id: `return:${s.orderKey}:${s.id}@${s.networkId}`,
      orderKey: s.orderKey,
      channel: s.id,
      orderId: s.id,
      returnId: s.id,
      warehouse: s.networkId,
      lines: s.lines.map(() => ({ ...line, disposition: "quality_control" as const })),
      atMs: longestInt,
    },
  ];
  const movement: ErpMovement = {
    sku: s.id,
    warehouse: s.networkId,
    type: "returned:quality_control",
    qty: longestInt,
    entries: longestInt,
    versionTo: longestInt,
  };
  const batch = (
    movements: ErpMovement[],
    docs: ErpDocument[],
  ): ErpBatch & { part: number; parts: number } => ({
    id: `erp-ledger-${longestInt}-${longestStoreId}-${longestInt}`,
    stage: "ledger",
    partition: longestInt,
    storeId: longestStoreId,
    batchNo: longestInt,
    seqFrom: longestInt,
    seqTo: longestInt,
    prevSeqTo: longestInt,
    openedAtMs: longestInt,
    closedAtMs: longestInt,
    movements,
    documents: docs,
    part: longestInt,
    parts: longestInt,
  });
  return [
    { kind: "ERP batch part", codec: "json", item: batch([movement], []) },
    ...documents.map((d) => ({
      kind: "ERP batch part" as const,
      codec: "json" as const,
      item: batch([], [d]),
    })),
  ];
}

/** Line ids named in a status detail: the first 10 and a count, so a detail (kept in history) stays small. */
export const detailLineIdsMax = 10;

export function shippedList(lineIds: readonly string[]): string {
  const named = lineIds.slice(0, detailLineIdsMax).join(", ");
  const more = lineIds.length - detailLineIdsMax;
  return more > 0 ? `${named} and ${more} more` : named;
}
