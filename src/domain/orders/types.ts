import type { ErpDocument } from "../erp/index.ts";
import type { LineRequest, ReturnDisposition } from "../ledger/types.ts";
import type { SplitMode } from "../network/index.ts";
import type { IdRecord } from "../own.ts";
import type { LineDecision } from "../routing/index.ts";

/**
 * Line lifecycle (design.md §2): received → allocated (warehouse, qty) | backordered | rejected →
 * released to warehouse → shipped (possibly partial) → returned (partial). Cancelled at any point before
 * shipment. `received` waits for the ledger's answer.
 */
export type LineState =
  | "received"
  | "allocated"
  | "backordered"
  | "rejected"
  | "released"
  | "shipped"
  | "cancelled";

export type CancelCause = "customer" | "warehouse" | "sla" | "ship_complete";

export type OrderLine = {
  lineId: string;
  sku: string;
  qty: number;
  price: number;
  state: LineState;
  /** Raised at every re-route; ledger answers for older attempts are ignored. */
  attempt: number;
  warehouse: string | null;
  shippedQty: number;
  /** Where the shipped units left from (warehouse → quantity): returns go back there by default. */
  shippedAt: IdRecord<number>;
  returnedQty: number;
  /** Warehouses that rejected this line (never chosen again). */
  excluded: string[];
  cancelCause: CancelCause | null;
  /** Why the line is being re-routed (a warehouse rejection, lost stock, the SLA): its cause if that fails. */
  rerouteCause: CancelCause | null;
  /** Why the ledger could not reserve it (insufficient_available, max_shipments…). */
  refusal: string | null;
  /** A cancel that came while the line waited for the ledger: applied when the answer comes. */
  cancelPending: CancelCause | null;
  /** Why the line went where it went (its latest routing): candidates, score components, filters, rules. */
  decision: LineDecision | null;
};

export type OrderStatus =
  | "pending"
  | "allocated"
  | "partially_allocated"
  | "backordered"
  | "rejected"
  | "cancelled"
  | "partially_shipped"
  | "shipped";

export type ShipTo = { region: string | null; zip: string | null; lat: number | null; lon: number | null };

export type SplitPolicy = { mode: SplitMode; maxShipments: number; backorder: boolean };

export type HistoryEvent = { atMs: number; event: string; detail?: string };

export type Order = {
  key: string;
  channel: string;
  orderId: string;
  /** Strictly increasing on every change: outputs carry it so consumers drop stale values. */
  version: number;
  status: OrderStatus;
  createdAtMs: number;
  shipByMs: number;
  priority: number;
  split: SplitPolicy;
  shipTo: ShipTo;
  lines: OrderLine[];
  /** Shipment and return ids already applied: a WMS retry with a new message id changes nothing twice. */
  shipmentIds: string[];
  returnIds: string[];
  /** SLA re-route already done: the next deadline cancels. */
  slaRerouted: boolean;
  /** The split policy was applied to the first allocation (it is applied once). */
  policyApplied: boolean;
  history: HistoryEvent[];
  /**
   * When the order became final (stream time): no line waits for the ledger, a warehouse or a deadline any
   * more, and only a return can still come. Absent on orders that are not final, and on orders written
   * before it was recorded (their last history event stands in: `finalAtOf`).
   */
  finalAtMs?: number | null;
};

/**
 * What is left of a final order once `orders.finalRetentionMs` has passed since it became final: enough to
 * recognise its inputs (a duplicate order message is ignored; a late cancel, shipment, rejection or return
 * is refused) until `orders.tombstoneRetentionMs` after it became final. Kept under its order key.
 */
export type OrderTombstone = {
  channel: string;
  orderId: string;
  /** The order's final status: shipped, cancelled or rejected. */
  status: OrderStatus;
  /** The version of its last output: nothing about it is published any more. */
  version: number;
  createdAtMs: number;
  finalAtMs: number;
  /** The stream time of the clock message that compacted it. */
  compactedAtMs: number;
};

/**
 * The time indexes of retention, each a table `[atMs, orderKey]` in the order partition: `finals` (final
 * orders by final time), `tombstones` (tombstones by final time), `pending` (cancels waiting for their
 * order, by the oldest cancel's time).
 */
export type RetentionIndex = "finals" | "tombstones" | "pending";
export type RetentionRow = { atMs: number; key: string };
export type RetentionOp = RetentionRow & { index: RetentionIndex; op: "put" | "delete" };

// ---- inputs ---------------------------------------------------------------------------------------

export type OrderInput = {
  channel: string;
  orderId: string;
  lines: Array<{ lineId: string; sku: string; qty: number; price: number }>;
  shipTo: ShipTo;
  shipByMs: number | null;
  priority: number;
  split: Partial<SplitPolicy>;
};

export type CancelInput = {
  channel: string;
  orderId: string;
  lineIds: string[] | null;
  cause: "customer";
  /** The customer's or channel's words, kept in the order's history. */
  reason?: string | null;
};

export type ShippedInput = {
  channel: string;
  orderId: string;
  warehouse: string;
  shipmentId: string;
  lines: Array<{ lineId: string; qty: number }>;
};

export type RejectedInput = {
  channel: string;
  orderId: string;
  warehouse: string;
  lineIds: string[];
  stockMissing: boolean;
  reason: string | null;
};

export type ReturnInput = {
  channel: string;
  orderId: string;
  returnId: string;
  lines: Array<{ lineId: string; qty: number; disposition: ReturnDisposition; warehouse: string | null }>;
};

export type PendingCancel = {
  key: string;
  lineIds: string[] | null;
  cause: "customer";
  reason?: string | null;
  atMs: number;
};

// ---- outputs --------------------------------------------------------------------------------------

/** An item of `sluice.out.order.<channel>`: the order's state after a change. */
export type OrderStatusItem = {
  orderKey: string;
  channel: string;
  orderId: string;
  version: number;
  status: OrderStatus;
  event: string;
  detail?: string;
  lines: Array<{
    lineId: string;
    sku: string;
    qty: number;
    state: LineState;
    warehouse: string | null;
    shippedQty: number;
    returnedQty: number;
    cancelCause: CancelCause | null;
    refusal: string | null;
  }>;
  atMs: number;
};

/** An item of `sluice.out.fulfil.<warehouse>`: pick and ship these lines, or stop. */
export type FulfilmentItem = {
  type: "fulfil" | "cancel";
  orderKey: string;
  channel: string;
  orderId: string;
  version: number;
  warehouse: string;
  shipTo: ShipTo;
  shipByMs: number;
  lines: Array<{ lineId: string; sku: string; qty: number; routing?: RoutingSummary }>;
  atMs: number;
};

/** The summary of a line's routing decision a warehouse gets with the request (GET on the order has all). */
export type RoutingSummary = {
  rules: string;
  score: number;
  reason: LineDecision["reason"];
  distanceKm: number | null;
  carrierId: string | null;
  shipments: number;
};

/** What the order stage asks the ledger stage, the statuses for channels and the requests for warehouses. */
export type OrderEffects = {
  ledger: LineRequest[];
  statuses: OrderStatusItem[];
  fulfilment: FulfilmentItem[];
  /** Order documents for the ERP: shipments with prices, cancellations, returns. */
  erp: ErpDocument[];
};

/** Why an order-stage input was refused (dead-letter reason) and the detail for people. */
export type OrderRejection = {
  ok: false;
  reason: "unknown_order" | "unknown_line" | "invalid_transition" | "invalid_command" | "unknown_channel";
  detail: string;
};
export type OrderOutcome = { ok: true; event: string } | OrderRejection;
