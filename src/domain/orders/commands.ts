import {
  type DomainLimits,
  invalid,
  isObject,
  type Parsed,
  parseField,
  parseId,
} from "../ledger/commands.ts";
import type { ReturnDisposition } from "../ledger/types.ts";
import type { OrderInput, RejectedInput, ReturnInput, ShippedInput, ShipTo, SplitPolicy } from "./types.ts";

// Validation of order-stage inputs. Each refuses unknown fields and names the field and the fix.

function onlyFields(body: Record<string, unknown>, allowed: string[], what: string): Parsed<null> {
  for (const key of Object.keys(body)) {
    if (!allowed.includes(key))
      return invalid(`unknown field ${JSON.stringify(key)} in ${what}; expected ${allowed.join(", ")}`);
  }
  return { ok: true, value: null };
}

function qty(v: unknown, field: string, limits: DomainLimits): Parsed<number> {
  return parseField(v, field, "qty", limits) as Parsed<number>;
}

function uniqueIds(ids: string[], what: string): Parsed<null> {
  return new Set(ids).size === ids.length ? { ok: true, value: null } : invalid(`${what} names a line twice`);
}

/** `sluice.in.order.<channel>.<orderId>`: the channel and order id come from the subject. */
export function parseOrder(
  channel: string,
  orderId: string,
  body: unknown,
  limits: DomainLimits,
): Parsed<OrderInput> {
  if (!isObject(body))
    return invalid('payload must be an object such as {"lines":[{"sku":"A","qty":1,"price":9.9}]}');
  const fields = onlyFields(body, ["lines", "shipTo", "shipBy", "priority", "split"], "order");
  if (!fields.ok) return fields;
  if (!Array.isArray(body.lines) || body.lines.length === 0)
    return invalid("lines must be a non-empty array");
  if (body.lines.length > limits.linesPerOrderMax) {
    return invalid(`an order has at most ${limits.linesPerOrderMax} lines (orders.linesPerOrderMax)`);
  }
  const lines: OrderInput["lines"] = [];
  for (const [i, raw] of body.lines.entries()) {
    if (!isObject(raw)) return invalid(`lines[${i}] must be an object`);
    const f = onlyFields(raw, ["lineId", "sku", "qty", "price"], `lines[${i}]`);
    if (!f.ok) return f;
    const lineId = parseId(raw.lineId ?? String(i + 1), `lines[${i}].lineId`, limits);
    if (!lineId.ok) return lineId;
    const sku = parseId(raw.sku, `lines[${i}].sku`, limits);
    if (!sku.ok) return sku;
    const q = qty(raw.qty, `lines[${i}].qty`, limits);
    if (!q.ok) return q;
    const price = raw.price ?? 0;
    if (typeof price !== "number" || !Number.isFinite(price) || price < 0) {
      return invalid(`lines[${i}].price must be a number ≥ 0`);
    }
    lines.push({ lineId: lineId.value, sku: sku.value, qty: q.value, price });
  }
  const unique = uniqueIds(
    lines.map((l) => l.lineId),
    "lines",
  );
  if (!unique.ok) return unique;
  const shipTo = parseShipTo(body.shipTo);
  if (!shipTo.ok) return shipTo;
  let shipByMs: number | null = null;
  if (body.shipBy !== undefined && body.shipBy !== null) {
    const t =
      typeof body.shipBy === "number"
        ? body.shipBy
        : typeof body.shipBy === "string"
          ? Date.parse(body.shipBy)
          : Number.NaN;
    if (!Number.isSafeInteger(t) || t <= 0) {
      return invalid("shipBy must be an ISO-8601 time or milliseconds since the epoch");
    }
    shipByMs = t;
  }
  const priority = body.priority ?? 0;
  if (typeof priority !== "number" || !Number.isSafeInteger(priority))
    return invalid("priority must be a whole number");
  const split = parseSplit(body.split);
  if (!split.ok) return split;
  return {
    ok: true,
    value: { channel, orderId, lines, shipTo: shipTo.value, shipByMs, priority, split: split.value },
  };
}

function parseShipTo(v: unknown): Parsed<ShipTo> {
  const out: ShipTo = { region: null, zip: null, lat: null, lon: null };
  if (v === undefined || v === null) return { ok: true, value: out };
  if (!isObject(v)) return invalid("shipTo must be an object with region, zip, lat, lon");
  const f = onlyFields(v, ["region", "zip", "lat", "lon"], "shipTo");
  if (!f.ok) return f;
  for (const k of ["region", "zip"] as const) {
    if (v[k] !== undefined && typeof v[k] !== "string") return invalid(`shipTo.${k} must be a string`);
    if (typeof v[k] === "string") out[k] = v[k] as string;
  }
  if (v.lat !== undefined && (typeof v.lat !== "number" || v.lat < -90 || v.lat > 90)) {
    return invalid("shipTo.lat must be a number from -90 to 90");
  }
  if (v.lon !== undefined && (typeof v.lon !== "number" || v.lon < -180 || v.lon > 180)) {
    return invalid("shipTo.lon must be a number from -180 to 180");
  }
  if (typeof v.lat === "number") out.lat = v.lat;
  if (typeof v.lon === "number") out.lon = v.lon;
  return { ok: true, value: out };
}

function parseSplit(v: unknown): Parsed<Partial<SplitPolicy>> {
  if (v === undefined || v === null) return { ok: true, value: {} };
  if (!isObject(v)) return invalid("split must be an object with mode, maxShipments, backorder");
  const f = onlyFields(v, ["mode", "maxShipments", "backorder"], "split");
  if (!f.ok) return f;
  const out: Partial<SplitPolicy> = {};
  if (v.mode !== undefined) {
    if (v.mode !== "allow_partial" && v.mode !== "ship_complete")
      return invalid("split.mode must be allow_partial or ship_complete");
    out.mode = v.mode;
  }
  if (v.maxShipments !== undefined) {
    if (typeof v.maxShipments !== "number" || !Number.isSafeInteger(v.maxShipments) || v.maxShipments < 0) {
      return invalid("split.maxShipments must be a whole number ≥ 0 (0: no limit)");
    }
    out.maxShipments = v.maxShipments;
  }
  if (v.backorder !== undefined) {
    if (typeof v.backorder !== "boolean") return invalid("split.backorder must be true or false");
    out.backorder = v.backorder;
  }
  return { ok: true, value: out };
}

function parseLineIds(v: unknown, field: string, limits: DomainLimits): Parsed<string[]> {
  if (!Array.isArray(v) || v.length === 0) return invalid(`${field} must be a non-empty array of line ids`);
  if (v.length > limits.linesPerOrderMax)
    return invalid(`${field} names at most ${limits.linesPerOrderMax} lines`);
  const ids: string[] = [];
  for (const [i, id] of v.entries()) {
    const p = parseId(id, `${field}[${i}]`, limits);
    if (!p.ok) return p;
    ids.push(p.value);
  }
  const unique = uniqueIds(ids, field);
  return unique.ok ? { ok: true, value: ids } : unique;
}

/** `sluice.in.cancel.<channel>.<orderId>`: `{}` cancels the whole order, `{"lines":["1"]}` some lines. */
export function parseCancel(
  body: unknown,
  limits: DomainLimits,
): Parsed<{ lineIds: string[] | null; reason: string | null }> {
  if (!isObject(body))
    return invalid('payload must be an object: {} for the whole order or {"lines":["1","2"]}');
  const f = onlyFields(body, ["lines", "reason"], "cancel");
  if (!f.ok) return f;
  let lineIds: string[] | null = null;
  if (body.lines !== undefined) {
    const p = parseLineIds(body.lines, "lines", limits);
    if (!p.ok) return p;
    lineIds = p.value;
  }
  if (body.reason !== undefined && typeof body.reason !== "string") return invalid("reason must be a string");
  return { ok: true, value: { lineIds, reason: typeof body.reason === "string" ? body.reason : null } };
}

const dispositions: readonly ReturnDisposition[] = ["sellable", "damaged", "quality_control"];

/** `sluice.in.return.<channel>.<orderId>`: lines with quantities and disposition. */
export function parseReturn(
  channel: string,
  orderId: string,
  body: unknown,
  limits: DomainLimits,
): Parsed<ReturnInput> {
  if (!isObject(body)) {
    return invalid(
      'payload must be an object such as {"returnId":"r1","lines":[{"lineId":"1","qty":1,"disposition":"sellable"}]}',
    );
  }
  const f = onlyFields(body, ["returnId", "lines"], "return");
  if (!f.ok) return f;
  const returnId = parseId(body.returnId, "returnId", limits);
  if (!returnId.ok) return returnId;
  if (!Array.isArray(body.lines) || body.lines.length === 0)
    return invalid("lines must be a non-empty array");
  if (body.lines.length > limits.linesPerOrderMax)
    return invalid(`lines has at most ${limits.linesPerOrderMax} entries`);
  const lines: ReturnInput["lines"] = [];
  for (const [i, raw] of body.lines.entries()) {
    if (!isObject(raw)) return invalid(`lines[${i}] must be an object`);
    const lf = onlyFields(raw, ["lineId", "qty", "disposition", "warehouse"], `lines[${i}]`);
    if (!lf.ok) return lf;
    const lineId = parseId(raw.lineId, `lines[${i}].lineId`, limits);
    if (!lineId.ok) return lineId;
    const q = qty(raw.qty, `lines[${i}].qty`, limits);
    if (!q.ok) return q;
    if (!dispositions.includes(raw.disposition as ReturnDisposition)) {
      return invalid(`lines[${i}].disposition must be one of ${dispositions.join(", ")}`);
    }
    let warehouse: string | null = null;
    if (raw.warehouse !== undefined) {
      const w = parseId(raw.warehouse, `lines[${i}].warehouse`, limits);
      if (!w.ok) return w;
      warehouse = w.value;
    }
    lines.push({
      lineId: lineId.value,
      qty: q.value,
      disposition: raw.disposition as ReturnDisposition,
      warehouse,
    });
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
  const channel = parseId(body.channel, "channel", limits);
  if (!channel.ok) return channel;
  const orderId = parseId(body.orderId, "orderId", limits);
  if (!orderId.ok) return orderId;
  return { ok: true, value: { channel: channel.value, orderId: orderId.value } };
}

/** `sluice.in.wms.<warehouse>.shipped`: full or partial, per line. */
export function parseShipped(warehouse: string, body: unknown, limits: DomainLimits): Parsed<ShippedInput> {
  const ref = parseOrderRef(body, limits);
  if (!ref.ok) return ref;
  const b = body as Record<string, unknown>;
  const f = onlyFields(b, ["channel", "orderId", "shipmentId", "lines"], "shipped");
  if (!f.ok) return f;
  const shipmentId = parseId(b.shipmentId, "shipmentId", limits);
  if (!shipmentId.ok) return shipmentId;
  if (!Array.isArray(b.lines) || b.lines.length === 0) return invalid("lines must be a non-empty array");
  if (b.lines.length > limits.linesPerOrderMax)
    return invalid(`lines has at most ${limits.linesPerOrderMax} entries`);
  const lines: ShippedInput["lines"] = [];
  for (const [i, raw] of b.lines.entries()) {
    if (!isObject(raw)) return invalid(`lines[${i}] must be an object`);
    const lf = onlyFields(raw, ["lineId", "qty"], `lines[${i}]`);
    if (!lf.ok) return lf;
    const lineId = parseId(raw.lineId, `lines[${i}].lineId`, limits);
    if (!lineId.ok) return lineId;
    const q = qty(raw.qty, `lines[${i}].qty`, limits);
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
export function parseRejected(warehouse: string, body: unknown, limits: DomainLimits): Parsed<RejectedInput> {
  const ref = parseOrderRef(body, limits);
  if (!ref.ok) return ref;
  const b = body as Record<string, unknown>;
  const f = onlyFields(b, ["channel", "orderId", "lines", "stockMissing", "reason"], "rejected");
  if (!f.ok) return f;
  const lineIds = parseLineIds(b.lines, "lines", limits);
  if (!lineIds.ok) return lineIds;
  if (b.stockMissing !== undefined && typeof b.stockMissing !== "boolean")
    return invalid("stockMissing must be true or false");
  if (b.reason !== undefined && typeof b.reason !== "string") return invalid("reason must be a string");
  return {
    ok: true,
    value: {
      ...ref.value,
      warehouse,
      lineIds: lineIds.value,
      stockMissing: b.stockMissing === true,
      reason: typeof b.reason === "string" ? b.reason : null,
    },
  };
}
