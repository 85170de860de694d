import { type HoldBucket, refusalCodes, type StockCommand, type StockCommandType } from "./types.ts";

const refusalCodeSet: ReadonlySet<string> = new Set(refusalCodes);

export type DomainLimits = {
  quantityMax: number;
  idBytesMax: number;
  linesPerOrderMax: number;
  itemsPerMessageMax: number;
};

/** Why an input was refused before it reached the domain; becomes the dead-letter reason and detail. */
export type Invalid = { ok: false; reason: "invalid_command"; detail: string };
export type Parsed<T> = { ok: true; value: T } | Invalid;

export const invalid = (detail: string): Invalid => ({ ok: false, reason: "invalid_command", detail });

type Fields = Record<string, "id" | "qty" | "signedQty" | "count" | "bucket" | "unholdTo">;

/** The fields of each stock command type: required unless marked optional below. docs/subjects.md mirrors it. */
const stockFields: Record<StockCommandType, Fields> = {
  received: { warehouse: "id", qty: "qty" },
  counted: { warehouse: "id", onHand: "count" },
  override: { warehouse: "id", available: "count" },
  adjust: { warehouse: "id", qty: "signedQty" },
  hold: { warehouse: "id", qty: "qty", bucket: "bucket" },
  unhold: { warehouse: "id", qty: "qty", bucket: "bucket", to: "unholdTo" },
  safety_stock: { warehouse: "id", qty: "count" },
};
const optionalFields = new Set(["ref", "to"]);
export const stockCommandTypes = Object.keys(stockFields) as StockCommandType[];

/**
 * The id of item `index` of a bulk message that gave one `commandId` for all its items. Deterministic, so a
 * retry of the same message (same items, same order) names every item as before; docs/subjects.md.
 */
export const itemCommandId = (commandId: string, index: number): string => `${commandId}/${index}`;

/**
 * Longest command id an item of an items envelope may carry: a producer's id (≤ idBytesMax) plus the suffix
 * `/<index>` of a derived one (index < itemsPerMessageMax). 256 + 1 + 6 = 263 bytes at the maxima; the
 * key `[sku, commandId]` is then ≤ 2 × 264 + 2 bytes, far under LMDB's 1,978.
 */
export function itemCommandIdBytesMax(limits: DomainLimits): number {
  return limits.idBytesMax + 1 + String(Math.max(0, limits.itemsPerMessageMax - 1)).length;
}

/**
 * Validates a decoded stock command. Unknown fields are refused: a typo must not pass silently.
 * `commandIdBytesMax` is the bound of the optional `commandId`: `ledger.idBytesMax` for what producers send,
 * `itemCommandIdBytesMax` for the router's items (their id may be derived from the message's).
 */
export function parseStockCommand(
  body: unknown,
  limits: DomainLimits,
  commandIdBytesMax: number = limits.idBytesMax,
): Parsed<StockCommand> {
  if (!isObject(body)) {
    return invalid('payload must be an object such as {"type":"received","warehouse":"w1","qty":10}');
  }
  const type = body.type;
  // Own keys only: "constructor" or "toString" is not a command type because every object inherits one.
  if (typeof type !== "string" || !Object.hasOwn(stockFields, type)) {
    return invalid(`type must be one of ${stockCommandTypes.join(", ")}`);
  }
  const fields = stockFields[type as StockCommandType];
  const allowed = new Set(["type", "ref", ...Object.keys(fields), "commandId"]);
  for (const key of Object.keys(body)) {
    if (!allowed.has(key))
      return invalid(`unknown field ${JSON.stringify(key)} for ${type}; expected ${[...allowed].join(", ")}`);
  }
  const out: Record<string, unknown> = { type, ref: null };
  for (const [field, kind] of Object.entries(fields)) {
    const v = body[field];
    if (v === undefined && optionalFields.has(field)) continue;
    const parsed = parseField(v, field, kind, limits);
    if (!parsed.ok) return parsed;
    out[field] = parsed.value;
  }
  if (type === "unhold" && out.to === undefined) out.to = "available";
  if (body.ref !== undefined && body.ref !== null) {
    const ref = parseId(body.ref, "ref", limits);
    if (!ref.ok) return ref;
    out.ref = ref.value;
  }
  // Absent stays absent (not null): a command without an id is exactly as before, applied every time.
  if (body.commandId !== undefined) {
    const id = parseId(body.commandId, "commandId", { ...limits, idBytesMax: commandIdBytesMax });
    if (!id.ok) return id;
    out.commandId = id.value;
  }
  return { ok: true, value: out as StockCommand };
}

export function parseField(
  v: unknown,
  field: string,
  kind: Fields[string],
  limits: DomainLimits,
): Parsed<unknown> {
  switch (kind) {
    case "id":
      return parseId(v, field, limits);
    case "qty":
    case "signedQty":
    case "count": {
      if (typeof v !== "number" || !Number.isSafeInteger(v))
        return invalid(`${field} must be a whole number`);
      if (kind === "qty" && v <= 0) return invalid(`${field}_must_be_positive`);
      if (kind === "signedQty" && v === 0) return invalid(`${field}_must_not_be_zero`);
      if (kind === "count" && v < 0) return invalid(`${field}_must_not_be_negative`);
      if (Math.abs(v) > limits.quantityMax)
        return invalid(`${field} must be at most ${limits.quantityMax} in magnitude`);
      return { ok: true, value: v };
    }
    case "bucket":
      return v === "damaged" || v === "quality_control"
        ? { ok: true, value: v as HoldBucket }
        : invalid(`${field} must be damaged or quality_control`);
    case "unholdTo":
      return v === "available" || v === "scrap"
        ? { ok: true, value: v }
        : invalid(`${field} must be available or scrap`);
  }
}

export function parseId(v: unknown, field: string, limits: DomainLimits): Parsed<string> {
  if (typeof v !== "string" || v.length === 0) return invalid(`${field} must be a non-empty string`);
  if (Buffer.byteLength(v, "utf8") > limits.idBytesMax) {
    return invalid(`${field} must be at most ${limits.idBytesMax} bytes`);
  }
  // Control characters (NUL among them) are refused: they have no place in an id and would blur key prefixes.
  if (hasControlCharacter(v)) return invalid(`${field} must not contain control characters`);
  return { ok: true, value: v };
}

function hasControlCharacter(v: string): boolean {
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export type StockItem = { sku: string; command: StockCommand };

/**
 * A bulk message (`sluice.in.import.<id>`, or a WMS received/counted event): many SKUs in one message, each
 * item a stock command with its SKU. Fast SKU onboarding: a SKU exists from its first item.
 * `defaults` fills fields the message gives once for all items (the WMS event's warehouse). A `commandId`
 * given once for the message names item i `<commandId>/<i>` (itemCommandId); items may instead carry their own.
 */
export function parseStockItems(
  body: unknown,
  limits: DomainLimits,
  defaults: Record<string, unknown> = {},
): Parsed<StockItem[]> {
  if (!isObject(body) || !Array.isArray(body.items)) {
    return invalid(
      'payload must be an object with items: [{"sku":"A","type":"counted","warehouse":"w1","onHand":5}]',
    );
  }
  // Only `items` and `commandId`: a typo or a stray field must not pass silently (the rule for every input).
  for (const key of Object.keys(body)) {
    if (key !== "items" && key !== "commandId")
      return invalid(`unknown field ${JSON.stringify(key)}; expected items and (optional) commandId`);
  }
  let commandId: string | null = null;
  if (body.commandId !== undefined) {
    const id = parseId(body.commandId, "commandId", limits);
    if (!id.ok) return id;
    commandId = id.value;
  }
  if (body.items.length === 0) return invalid("items must not be empty");
  if (body.items.length > limits.itemsPerMessageMax) {
    return invalid(
      `at most ${limits.itemsPerMessageMax} items per message (ledger.itemsPerMessageMax); split it`,
    );
  }
  const items: StockItem[] = [];
  for (let i = 0; i < body.items.length; i++) {
    const raw = body.items[i];
    if (!isObject(raw)) return invalid(`items[${i}] must be an object`);
    const { sku, ...rest } = raw;
    const id = parseId(sku, `items[${i}].sku`, limits);
    if (!id.ok) return id;
    // One id for the message or one per item, never both: which one a retry's item is known by must be plain.
    if (commandId !== null && rest.commandId !== undefined) {
      return invalid(
        `items[${i}]: commandId is given for the whole message, so an item may not have its own; give it once or per item`,
      );
    }
    // What the message gives for all items (the WMS event's warehouse and type) wins over an item's own.
    const command = parseStockCommand({ ...rest, ...defaults }, limits);
    if (!command.ok) return invalid(`items[${i}]: ${command.detail}`);
    if (commandId !== null) command.value.commandId = itemCommandId(commandId, i);
    items.push({ sku: id.value, command: command.value });
  }
  return { ok: true, value: items };
}

// ---- internal hops --------------------------------------------------------------------------------
// Internal envelopes come from Sluice itself, but anyone with access to the subjects can publish one: each
// item is checked for shape, so a malformed one is dead-lettered instead of crashing the partition.

const isStr = (v: unknown): v is string => typeof v === "string" && v.length > 0;
const isCount = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
const isRef = (v: unknown) => isObject(v) && isStr(v.orderKey) && isStr(v.lineId);

/** Ids of internal items are bounded like public ones (an order key holds two encoded ids). */
function idsTooLong(v: Record<string, unknown>, limits: DomainLimits): boolean {
  const ref = v.ref as { orderKey: string; lineId: string };
  const bytes = (s: string) => Buffer.byteLength(s, "utf8");
  return (
    bytes(v.sku as string) > limits.idBytesMax ||
    bytes(ref.lineId) > limits.idBytesMax ||
    bytes(ref.orderKey) > 3 * limits.idBytesMax
  );
}

/** A LineRequest from the order stage, or why not. */
export function checkLineRequest(v: unknown, limits: DomainLimits): string | null {
  if (!isObject(v) || !isRef(v.ref) || !isStr(v.sku) || !isCount(v.attempt))
    return "line request without ref, sku or attempt";
  if (idsTooLong(v, limits)) return "line request with an id over ledger.idBytesMax";
  if (v.cause !== undefined && (!isStr(v.cause) || v.cause.length > 64 || hasControlCharacter(v.cause))) {
    return "line request cause must be a short string";
  }
  switch (v.kind) {
    case "reserve":
      return isCount(v.qty) &&
        v.qty > 0 &&
        Array.isArray(v.candidates) &&
        v.candidates.length <= 1000 &&
        v.candidates.every((w) => parseId(w, "candidate", limits).ok) &&
        (v.keep === undefined ||
          (Array.isArray(v.keep) && v.keep.length === v.candidates.length && v.keep.every(isCount))) &&
        (v.wait === undefined || (isObject(v.wait) && Number.isSafeInteger(v.wait.priority)))
        ? null
        : "reserve needs qty > 0, candidates, (optional) keep: units ≥ 0, one per candidate, and (optional) wait: {priority: a whole number}";
    case "release":
      return null;
    case "ship":
      return isCount(v.qty) && v.qty > 0 && parseId(v.eventId, "eventId", limits).ok
        ? null
        : "ship needs qty > 0 and eventId";
    case "reject":
      return typeof v.stockMissing === "boolean" ? null : "reject needs stockMissing";
    case "return":
      return isCount(v.qty) &&
        v.qty > 0 &&
        parseId(v.eventId, "eventId", limits).ok &&
        parseId(v.warehouse, "warehouse", limits).ok &&
        (v.disposition === "sellable" || v.disposition === "damaged" || v.disposition === "quality_control")
        ? null
        : "return needs qty > 0, eventId, warehouse and disposition";
    default:
      return `unknown line request kind ${JSON.stringify(v.kind)}`;
  }
}

/** A LineResult from the ledger stage, or why not. */
export function checkLineResult(v: unknown, limits: DomainLimits): string | null {
  if (!isObject(v) || !isRef(v.ref) || !isStr(v.sku) || !isCount(v.attempt))
    return "line result without ref, sku or attempt";
  if (idsTooLong(v, limits)) return "line result with an id over ledger.idBytesMax";
  if (v.kind === "reserved" || v.kind === "lost")
    return parseId(v.warehouse, "warehouse", limits).ok &&
      isCount(v.qty) &&
      (v.filled === undefined || (v.kind === "reserved" && v.filled === true))
      ? null
      : `${v.kind} needs warehouse and qty (and filled: true or nothing)`;
  if (v.kind === "refused")
    return typeof v.code === "string" && refusalCodeSet.has(v.code) && isCount(v.available)
      ? null
      : "refused needs a known code and available";
  return `unknown line result kind ${JSON.stringify(v.kind)}`;
}

/** A stock item of an items envelope (router → ledger), or why not. */
export function checkStockItem(v: unknown, limits: DomainLimits): string | null {
  if (!isObject(v) || !isStr(v.sku) || !isObject(v.command)) return "stock item without sku or command";
  const sku = parseId(v.sku, "sku", limits);
  return sku.ok ? null : sku.detail;
}
