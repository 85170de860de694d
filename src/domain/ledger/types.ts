// The ledger's values. Plain data: they cross LMDB (msgpack) and partition export/import unchanged.

/** One SKU at one warehouse. Available = onHand − reserved − damaged − qualityControl − safetyStock. */
export type Position = {
  onHand: number;
  reserved: number;
  damaged: number;
  qualityControl: number;
  safetyStock: number;
};

/** Every SKU's state in a partition: its positions and the per-SKU version of its last change. */
export type SkuState = {
  sku: string;
  /** Strictly increasing on every change of any of the SKU's positions (invariant 4). */
  version: number;
  positions: Record<string, Position>;
};

export type EntryType = "received" | "adjusted" | "reserved" | "released";

/** A change of one position. Positions are the fold of their entries (invariant 5). */
export type LedgerEntry = {
  sku: string;
  version: number;
  warehouse: string;
  type: EntryType;
  /** Signed change of the field the type moves (onHand for received/adjusted, reserved for reserve/release). */
  qty: number;
  /** Who asked: the inbound command's ref (order/line, receipt, …), or null. */
  ref: string | null;
  /** Stream sequence of the input that caused it: the entry's provenance. */
  seq: number;
  /** Time of the input (the stream's timestamp, ms since epoch): an input, never read from a clock here. */
  atMs: number;
};

export type StockCommand =
  | { type: "received"; warehouse: string; qty: number; ref: string | null }
  | { type: "adjust"; warehouse: string; qty: number; ref: string | null }
  | { type: "reserve"; warehouse: string; qty: number; ref: string | null }
  | { type: "release"; warehouse: string; qty: number; ref: string | null };

export type StockCommandType = StockCommand["type"];

export type CommandResult =
  | { ok: true; sku: string; version: number }
  | { ok: false; sku: string; code: RefusalCode; available: number };

/** Refusals read as sentences; they are outcomes, not errors: the input was valid. */
export type RefusalCode = "insufficient_available" | "release_exceeds_reserved" | "adjust_below_committed";

export const emptyPosition = (): Position => ({
  onHand: 0,
  reserved: 0,
  damaged: 0,
  qualityControl: 0,
  safetyStock: 0,
});

export function available(p: Position): number {
  return p.onHand - p.reserved - p.damaged - p.qualityControl - p.safetyStock;
}
