import type { StockCommand, StockCommandType } from "./types.ts";

export type DomainLimits = { quantityMax: number; idBytesMax: number };

/** Why an input was refused before it reached the ledger; becomes the dead-letter reason detail. */
export type Invalid = { ok: false; reason: "invalid_command"; detail: string };
export type Parsed<T> = { ok: true; value: T } | Invalid;

const invalid = (detail: string): Invalid => ({ ok: false, reason: "invalid_command", detail });

const stockTypes: readonly StockCommandType[] = ["received", "adjust", "reserve", "release"];

/** Validates a decoded `sluice.in.stock.<sku>` payload. Unknown fields are refused: typos must not pass. */
export function parseStockCommand(body: unknown, limits: DomainLimits): Parsed<StockCommand> {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return invalid('payload must be an object such as {"type":"received","warehouse":"w1","qty":10}');
  }
  const b = body as Record<string, unknown>;
  for (const key of Object.keys(b)) {
    if (key !== "type" && key !== "warehouse" && key !== "qty" && key !== "ref") {
      return invalid(`unknown field ${JSON.stringify(key)}; expected type, warehouse, qty, ref`);
    }
  }
  const type = b.type;
  if (typeof type !== "string" || !stockTypes.includes(type as StockCommandType)) {
    return invalid(`type must be one of ${stockTypes.join(", ")}`);
  }
  const warehouse = parseId(b.warehouse, "warehouse", limits);
  if (!warehouse.ok) return warehouse;
  const qty = b.qty;
  const signed = type === "adjust";
  if (typeof qty !== "number" || !Number.isSafeInteger(qty)) return invalid("qty must be a whole number");
  if (signed ? qty === 0 : qty <= 0) {
    return invalid(signed ? "qty_must_not_be_zero for adjust" : "qty_must_be_positive");
  }
  if (Math.abs(qty) > limits.quantityMax)
    return invalid(`qty must be at most ${limits.quantityMax} in magnitude`);
  let ref: string | null = null;
  if (b.ref !== undefined && b.ref !== null) {
    const parsed = parseId(b.ref, "ref", limits);
    if (!parsed.ok) return parsed;
    ref = parsed.value;
  }
  return { ok: true, value: { type: type as StockCommandType, warehouse: warehouse.value, qty, ref } };
}

export function parseId(v: unknown, field: string, limits: DomainLimits): Parsed<string> {
  if (typeof v !== "string" || v.length === 0) return invalid(`${field} must be a non-empty string`);
  if (Buffer.byteLength(v, "utf8") > limits.idBytesMax) {
    return invalid(`${field} must be at most ${limits.idBytesMax} bytes`);
  }
  return { ok: true, value: v };
}
