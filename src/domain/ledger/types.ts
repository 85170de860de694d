import type { IdRecord } from "../own.ts";

// The ledger's values. Plain data: they cross LMDB (msgpack), internal hops and partition export/import.

/** One SKU at one warehouse. Available = onHand − reserved − damaged − qualityControl − safetyStock. */
export type Position = {
  onHand: number;
  reserved: number;
  damaged: number;
  qualityControl: number;
  safetyStock: number;
};
export type PositionField = keyof Position;
export const positionFields: readonly PositionField[] = [
  "onHand",
  "reserved",
  "damaged",
  "qualityControl",
  "safetyStock",
];

/** Every SKU's state in a partition: its positions and the per-SKU version of its last change. */
export type SkuState = {
  sku: string;
  /** Strictly increasing on every change of any of the SKU's positions (invariant 4). */
  version: number;
  /** Per warehouse id: an IdRecord, read and written only through src/domain/own.ts. */
  positions: IdRecord<Position>;
  /** The ATS last offered to each synced channel id (an IdRecord too; absent: never offered). */
  ats?: IdRecord<number>;
};

/** Which order line a reservation belongs to. */
export type LineRef = { orderKey: string; lineId: string };

/** A line's stock at one warehouse, kept by the ledger so release, ship and return know where and how much. */
export type Allocation = {
  sku: string;
  orderKey: string;
  lineId: string;
  /** Re-routes raise it; a request from an older attempt is answered, never applied. */
  attempt: number;
  warehouse: string;
  reserved: number;
  shipped: number;
  returned: number;
  /** When the reservation was made (the input's time): a count shortfall takes the newest first. */
  reservedAtMs: number;
  /**
   * When the line last changed (the input's time): retention counts from it (src/domain/ledger/history.ts).
   * Absent on allocations written before retention existed: reservedAtMs stands in.
   */
  changedAtMs?: number;
  /** Shipment and return ids applied to this line (bounded by the line's shipments and returns). */
  eventIds: string[];
  /** Why the current attempt was refused ("" when it was not). */
  refusal: RefusalCode | "";
  /**
   * The UTC day whose warehouse capacity this reservation's units were counted against (src/domain/ledger/
   * capacity.ts). Absent: not counted (a warehouse without an enforced capacity, or written before capacity
   * was enforced). A release on that day gives the units back to the partition's held capacity.
   */
  capacityDay?: number;
  /**
   * The refused attempt waits for stock in the SKU's waiting list (src/domain/ledger/waiting.ts): its row's
   * key parts. Absent: the line does not wait. A fill, a release or a newer attempt removes it.
   */
  waiting?: { priority: number; arrival: number };
};

/**
 * A backordered line waiting for stock of its SKU, in the ledger partition that owns the SKU. Filled whole at
 * the first of its candidates (routing's ranking) that has the stock, priority first, then arrival.
 */
export type WaitingLine = {
  sku: string;
  orderKey: string;
  lineId: string;
  /** The refused attempt: the fill answers it, so the order stage takes it once and ignores it when stale. */
  attempt: number;
  qty: number;
  /** The warehouses routing allowed for the line, best first; `keep` as in a reserve request. */
  candidates: string[];
  keep?: number[];
  /** The order's priority: higher first. */
  priority: number;
  /** Per-SKU arrival number: among equal priorities, the first to wait is the first filled. */
  arrival: number;
  /** When it began to wait (the input's time): the time waited is measured from it. */
  sinceMs: number;
};

/** A SKU's waiting list at a glance: how many lines wait and the next arrival number. Absent: none wait. */
export type WaitingHead = { sku: string; count: number; arrivalNext: number };

/**
 * What a partition's SKUs count against a warehouse's daily capacity: units reserved and not shipped, and
 * units shipped on `shippedDay` (UTC day number). The sum over partitions is the warehouse's load.
 */
export type WarehouseLoad = { warehouse: string; reserved: number; shippedDay: number; shippedUnits: number };

export const dayMs = 86_400_000;

/** Units counted against capacity on the UTC day of `nowMs`. */
export function loadUnits(l: WarehouseLoad, nowMs: number): number {
  return l.reserved + (l.shippedDay === Math.floor(nowMs / dayMs) ? l.shippedUnits : 0);
}

export type EntryType =
  | "received"
  | "counted"
  | "override"
  | "adjusted"
  | "held"
  | "unheld"
  | "scrapped"
  | "safety_stock"
  | "reserved"
  | "released"
  | "shipped"
  | "missing"
  | "returned";

/** A change of one position: the signed change of each field it moved (invariant 5: positions = fold). */
export type LedgerEntry = {
  sku: string;
  version: number;
  warehouse: string;
  type: EntryType;
  delta: Partial<Position>;
  /** Who asked: an order line `orderKey/lineId`, a receipt, a count id…, or null. */
  ref: string | null;
  /**
   * Why: the stock command (received, counted, override…), or for an order line: order, shipment,
   * return:<disposition>, cancel:<customer|sla|warehouse|ship_complete>, reroute:<cause>, ship_complete,
   * max_shipments, count_shortfall.
   */
  cause: string;
  /** Stream sequence of the input that caused it (0 for a timer). */
  seq: number;
  /** Time of the input (the stream's timestamp, ms since epoch): an input, never read from a clock here. */
  atMs: number;
};

export type HoldBucket = "damaged" | "quality_control";

/**
 * Commands about stock itself: from admins, the ERP, the WMS, bulk onboarding. `commandId` (optional) names
 * the command for the SKU: a repeat of an id the partition remembers changes nothing (docs/subjects.md).
 */
export type StockCommand = { commandId?: string } & (
  | { type: "received"; warehouse: string; qty: number; ref: string | null }
  | { type: "counted"; warehouse: string; onHand: number; ref: string | null }
  | { type: "override"; warehouse: string; available: number; ref: string | null }
  | { type: "adjust"; warehouse: string; qty: number; ref: string | null }
  | { type: "hold"; warehouse: string; qty: number; bucket: HoldBucket; ref: string | null }
  | {
      type: "unhold";
      warehouse: string;
      qty: number;
      bucket: HoldBucket;
      to: "available" | "scrap";
      ref: string | null;
    }
  | { type: "safety_stock"; warehouse: string; qty: number; ref: string | null }
);

export type StockCommandType = StockCommand["type"];

export type ReturnDisposition = "sellable" | "damaged" | "quality_control";

/** Requests from the order stage about one order line (internal hop, msgpack). */
export type LineRequest =
  | {
      kind: "reserve";
      ref: LineRef;
      sku: string;
      qty: number;
      /** Best first: the ledger reserves at the first with enough stock. */
      candidates: string[];
      /** Units each candidate must keep after the reservation (routing's min stock); absent: none. */
      keep?: number[];
      attempt: number;
      /**
       * Present: when refused for want of stock, the line waits in the SKU's waiting list (a backorder) and is
       * filled when stock arrives, by `priority` (higher first), then arrival. Absent: a refusal is final.
       */
      wait?: { priority: number };
    }
  | { kind: "release"; ref: LineRef; sku: string; attempt: number; cause?: string }
  /** `eventId` (the WMS shipment id) makes a copy that outlived JetStream's duplicate window change nothing. */
  | { kind: "ship"; ref: LineRef; sku: string; qty: number; attempt: number; eventId: string }
  | { kind: "reject"; ref: LineRef; sku: string; stockMissing: boolean; attempt: number; cause?: string }
  | {
      kind: "return";
      ref: LineRef;
      sku: string;
      /** The return id, for the same reason as a shipment's. */
      eventId: string;
      qty: number;
      disposition: ReturnDisposition;
      warehouse: string;
      attempt: number;
    };

/** Answers to the order stage. Only what changes a line's fate is answered: reservations and losses. */
export type LineResult =
  | {
      kind: "reserved";
      ref: LineRef;
      sku: string;
      attempt: number;
      warehouse: string;
      qty: number;
      /** Present (true): a waiting line filled when stock arrived, not an answer to a request. */
      filled?: true;
    }
  | { kind: "refused"; ref: LineRef; sku: string; attempt: number; code: RefusalCode; available: number }
  /** A count found less stock than was reserved: this line lost its reservation and must be re-routed. */
  | { kind: "lost"; ref: LineRef; sku: string; attempt: number; warehouse: string; qty: number };

export type CommandResult =
  | { ok: true; sku: string; version: number }
  | { ok: false; sku: string; code: RefusalCode };

/** Refusals read as sentences; they are outcomes, not errors: the input was valid. */
export const refusalCodes = [
  "insufficient_available",
  "no_candidate_warehouse",
  "adjust_below_committed",
  "hold_exceeds_available",
  "unhold_exceeds_held",
  "override_below_zero",
  "safety_stock_exceeds_available",
  /** The change would carry a field of the position past ledger.positionUnitsMax. */
  "position_units_over_limit",
  /** A return for a line whose allocation was removed by retention (ledger.returnWindowMs passed). */
  "line_history_compacted",
  /** The line may wait for stock, but its SKU's waiting list holds ledger.waitingLinesPerSkuMax lines. */
  "waiting_list_full",
  /**
   * A candidate had the stock but the ledger partition holds no capacity left for its warehouse today (every
   * candidate out of stock or capacity, at least one of capacity: docs/capacity.md).
   */
  "capacity_full",
] as const;
export type RefusalCode = (typeof refusalCodes)[number];

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

export const lineRefKey = (ref: LineRef) => `${ref.orderKey}/${ref.lineId}`;
