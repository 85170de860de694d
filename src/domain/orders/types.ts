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
  /**
   * A kit line (its SKU was a kit in the catalog when the order came): its components, frozen then, and the
   * state of the reservation protocol (docs/kits.md). Absent: a plain line.
   */
  kit?: KitLine;
};

/** One component of a kit line: one ledger line of its own, `per` units for each kit. */
export type KitPart = {
  sku: string;
  per: number;
  /** The ledger's line id: the kit line's id, "#", the component's 1-based position (kitPartId). */
  lineId: string;
  /** The current try's answer: "pending" (asked), "reserved", a refusal code, or null (not asked). */
  answer: string | null;
};

/**
 * The all-or-none reservation of a kit line (docs/kits.md). Each try asks every component at one warehouse;
 * once every answer is in, all reserved allocates the line, else the reserved ones are released (the
 * compensation) and the next candidate is tried, up to the line's candidates; then the line is refused as
 * any line whose reservation failed.
 */
export type KitLine = {
  parts: KitPart[];
  /**
   * The ledger attempt of every component request: raised by each try (and so by each re-route), never
   * reused. A component answer for another try is stale.
   */
  try: number;
  /** The warehouses this attempt of the line tries, best first (routing over the components' stock). */
  candidates: string[];
  /** How many of them were tried. */
  tried: number;
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
  /**
   * When the order's at-risk timer is due (ship-by less the channel's slaAtRiskMs, never before the order
   * came); null once it fired or when none was set (window 0, or it would be due at the deadline itself).
   * Absent on orders written before at-risk marks existed: they are never marked.
   */
  atRiskDueMs?: number | null;
  /**
   * Set when the at-risk timer fired on an open order (once per order); null again once it ships whole, is
   * cancelled or is re-routed by its SLA. `channel` is the rule-set channel whose rules the order follows
   * ("*" for a channel the rules do not list): the gauge's label, bounded by the rule set.
   */
  atRisk?: { sinceMs: number; channel: string } | null;
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

/**
 * An order at risk as indexed in its partition (table `atRisk`, key [shipByMs, orderKey], earliest deadline
 * first): what `sluice_orders_at_risk` counts and `GET /v1/orders?atRisk=true` lists. A function of the order
 * alone (atRiskRowOf), rewritten when it changes and deleted when the order is no longer at risk.
 */
export type AtRiskRow = {
  key: string;
  channel: string;
  orderId: string;
  /** The rule-set channel the order follows: the gauge's `channel` label. */
  rulesChannel: string;
  shipByMs: number;
  atRiskSinceMs: number;
  priority: number;
  status: OrderStatus;
  /** Warehouses holding an open line of it (allocated or released, not shipped whole), sorted; [] if none. */
  warehouses: string[];
};
export type AtRiskOp = { op: "put" | "delete"; row: AtRiskRow };
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
  /** Present (true) while the order is at risk of missing its ship-by (channel rule slaAtRiskMs). */
  atRisk?: true;
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
  /** The order's priority (from the channel's order; higher first). */
  priority: number;
  /**
   * The order is close to its ship-by (channel rule slaAtRiskMs): pick it first. When an order becomes at risk
   * its released lines are asked again with `atRisk: true` (same lines, a higher version).
   */
  atRisk: boolean;
  lines: Array<{
    lineId: string;
    sku: string;
    qty: number;
    routing?: RoutingSummary;
    /** A kit line (qty in kits): what to pick for it, in units (qty × units per kit). */
    components?: Array<{ sku: string; qty: number }>;
  }>;
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
