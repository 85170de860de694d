import { isRecord, parseJsonOrNull, type StockItem } from "./types.ts";

// Pure: the messages of one batch → the newest value per SKU. Sluice's versions never decrease per SKU
// (docs/sync-and-erp.md); an equal version may carry a new ATS (a rule change, a resync) and is applied, the
// later one in the stream winning. So "newest" is the highest (version, stream sequence): a message the server
// redelivers late (after a stop, or ack_wait) never undoes a later one with the same version. A message
// delivered before (a redelivery) is not sent again; a later message with the same value is: a resync or a
// reconciliation heal offers the current value again because the marketplace may show another one.

/** An envelope's items: Sluice writes at most `itemsPerRequestMax` (≤ 10,000) per message. */
export const envelopeItemsMax = 10_000;
/** ATS above this is not a quantity any marketplace takes (Shopify's cap is 1,000,000,000). */
export const atsMax = 1_000_000_000;

/** Where an item came from: the batch's message index, its stream sequence, its index in the envelope. */
export type Carried = { item: StockItem; message: number; seq: number; index: number };

export type Coalesced = {
  /** The value to send per SKU, in the order SKUs were first seen. */
  newest: Carried[];
  /** Items that are not `{sku, ats, version}`: dead-lettered. */
  invalid: Array<{ message: number; index: number; raw: unknown; detail: string }>;
  /** Older than a newer item of the same batch. */
  superseded: number;
  /** Older than what was delivered before (a replay, a redelivery). */
  stale: number;
  /** The very message delivered before, delivered again: nothing to send. */
  unchanged: number;
};

export type Delivered = { version: number; ats: number; seq: number };

/** a is newer than b: a higher version, or the same version later in the stream. */
const newer = (a: { version: number; seq: number }, b: { version: number; seq: number }) =>
  a.version > b.version || (a.version === b.version && a.seq > b.seq);

/** The envelope's items, or why the message is not an envelope. */
export function readEnvelope(
  data: Uint8Array,
): { ok: true; items: unknown[] } | { ok: false; detail: string } {
  const v = parseJsonOrNull(new TextDecoder().decode(data));
  if (v === null) return { ok: false, detail: "payload is not JSON" };
  if (!isRecord(v) || !Array.isArray(v.items))
    return { ok: false, detail: `payload is not a stock envelope {"items":[…]}` };
  if (v.items.length > envelopeItemsMax)
    return { ok: false, detail: `envelope holds ${v.items.length} items, over ${envelopeItemsMax}` };
  return { ok: true, items: v.items };
}

/** A stock item as Sluice writes it, or why not. */
export function readItem(v: unknown): StockItem | string {
  if (!isRecord(v)) return "item is not an object";
  const { sku, ats, version, atMs } = v;
  if (typeof sku !== "string" || sku === "") return "item has no sku";
  if (typeof ats !== "number" || !Number.isSafeInteger(ats) || ats < 0 || ats > atsMax)
    return `item ${sku}: ats must be a whole number from 0 to ${atsMax}`;
  // 0: a SKU the ledger never saw, healed to 0 by a reconciliation (docs/sync-and-erp.md).
  if (typeof version !== "number" || !Number.isSafeInteger(version) || version < 0)
    return `item ${sku}: version must be a whole number from 0`;
  return { sku, ats, version, atMs: typeof atMs === "number" ? atMs : 0 };
}

/**
 * `envelopes[i]`: the batch's message i, its stream sequence and items (null items: not an envelope). Within
 * one message a SKU appears once (Sluice coalesces); if it did twice, the later one wins.
 */
export function coalesce(
  envelopes: Array<{ seq: number; items: unknown[] | null }>,
  delivered: ReadonlyMap<string, Delivered>,
): Coalesced {
  const bySku = new Map<string, Carried>();
  const out: Coalesced = { newest: [], invalid: [], superseded: 0, stale: 0, unchanged: 0 };
  envelopes.forEach(({ seq, items }, message) => {
    items?.forEach((raw, index) => {
      const item = readItem(raw);
      if (typeof item === "string") {
        out.invalid.push({ message, index, raw, detail: item });
        return;
      }
      const had = bySku.get(item.sku);
      const at = { version: item.version, seq };
      if (had !== undefined) out.superseded++;
      if (had === undefined || !newer({ version: had.item.version, seq: had.seq }, at))
        bySku.set(item.sku, { item, message, seq, index });
    });
  });
  for (const c of bySku.values()) {
    const last = delivered.get(c.item.sku);
    const at = { version: c.item.version, seq: c.seq };
    if (last === undefined || newer(at, last)) out.newest.push(c);
    else if (at.seq === last.seq) out.unchanged++;
    else out.stale++;
  }
  return out;
}
