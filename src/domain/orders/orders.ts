import { assert } from "../assert.ts";
import { documentId, type ErpLine } from "../erp/index.ts";
import type { InputRef } from "../ledger/ledger.ts";
import {
  available,
  type LineRequest,
  type LineResult,
  type Position,
  type ReturnDisposition,
} from "../ledger/types.ts";
import { channelOf, kitOf, type Network, networkLimits } from "../network/index.ts";
import { type IdRecord, own, ownEntries, ownIds, withOwn } from "../own.ts";
import { type LineDecision, type RouteContext, route } from "../routing/index.ts";
import { shippedList } from "./commands.ts";
import type {
  AtRiskOp,
  AtRiskRow,
  CancelCause,
  CancelInput,
  FulfilmentItem,
  HistoryEvent,
  KitLine,
  KitPart,
  Order,
  OrderEffects,
  OrderInput,
  OrderLine,
  OrderOutcome,
  OrderRejection,
  OrderStatus,
  OrderStatusItem,
  OrderTombstone,
  PendingCancel,
  RejectedInput,
  RetentionIndex,
  RetentionOp,
  RetentionRow,
  ReturnInput,
  RoutingSummary,
  ShippedInput,
} from "./types.ts";

/** Synchronous reads of committed order-stage state (LMDB is memory-mapped: reads never await). */
export interface OrderView {
  getOrder(key: string): Order | undefined;
  getPendingCancels(key: string): PendingCancel[];
  /** Timers due at or before `nowMs`, earliest first, at most `limit`. */
  dueTimers(nowMs: number, limit: number): Array<{ dueMs: number; key: string }>;
  /** The tombstone of a compacted order (absent: retention is off, as in views without it). */
  getTombstone?(key: string): OrderTombstone | undefined;
  /** Committed rows of a retention index at or before `cutoffMs`, earliest first, at most `limit`. */
  dueRetention?(index: RetentionIndex, cutoffMs: number, limit: number): RetentionRow[];
}

/** How long what is final stays, in stream time (orders.finalRetentionMs…; src/config/schema.ts says why). */
export type RetentionLimits = {
  finalRetentionMs: number;
  tombstoneRetentionMs: number;
  pendingCancelAgeMsMax: number;
  /** Rows of each retention index handled by one clock message; the rest wait for the next. */
  perTickMax: number;
};

export type OrderLimits = {
  historyCountMax: number;
  pendingCancelsPerOrderMax: number;
  timersPerTickMax: number;
  /** Absent: nothing is compacted or expired (and no retention index is written). */
  retention?: RetentionLimits;
  /**
   * `orders.linesPerOrderMax`: the ledger lines one order may take, a kit line one per component, so that no
   * fulfilment item or ERP document of it outgrows the worst case the config checked (worstCaseOutputs).
   * Absent: the schema's default.
   */
  linesPerOrderMax?: number;
  /** `ledger.idBytesMax`: a kit line's component ids (`<line id>#<n>`) must stay within it. Absent: the default. */
  idBytesMax?: number;
  /** `orders.kitWarehousesPerAttemptMax`: warehouses one attempt of a kit line tries. Absent: the default. */
  kitWarehousesPerAttemptMax?: number;
};

/** The schema's defaults of `orders.linesPerOrderMax` and `ledger.idBytesMax` (src/config/schema.ts). */
const linesPerOrderMaxDefault = 200;
const idBytesMaxDefault = 256;

/**
 * What routing scores against: committed ledger state read synchronously (the ledger's reservation stays
 * the authority: a line whose stock moved takes the next candidate there, or is refused). A view that may
 * not know a SKU (fed from ledger partitions in other processes) says so with `known`; `stock` returning
 * undefined then means unknown, and routing goes blind (RouteContext.known).
 */
export type RoutingView = Omit<RouteContext, "nowMs">;

export const noRoutingView: RoutingView = { stock: () => undefined, load: () => 0 };

export type TimerOp = { op: "put" | "delete"; dueMs: number; key: string };

/** Outcomes counted for metrics: a bounded name and label (a cause, a disposition), never an id. */
export type OrderCount = {
  name:
    | "orders"
    | "released"
    | "cancelled"
    | "backordered"
    | "rejected"
    | "rerouted"
    | "returned"
    | "shipped"
    | "sla"
    /** An order marked at risk of missing its ship-by (label: marked). */
    | "at_risk"
    /** Routing: a line routed to a warehouse (label), an order split (label: shipments), a filter (reason). */
    | "routed"
    | "split"
    | "filtered"
    /** Retention (label): compacted, tombstone_removed, pending_cancel_expired (cancels). */
    | "retention"
    /** Kit lines (label): allocated (every component reserved), compensated (a try's reservations released). */
    | "kit";
  label: string;
  count: number;
};

export type OrderChanges = {
  counts: OrderCount[];
  orders: Order[];
  pendingCancels: Array<[string, PendingCancel[] | null]>;
  timers: TimerOp[];
  effects: OrderEffects;
  /** Orders replaced by their tombstone in this batch: their records are deleted. */
  ordersDeleted: string[];
  /** Tombstones written (compaction) or removed (null: past orders.tombstoneRetentionMs). */
  tombstones: Array<[string, OrderTombstone | null]>;
  /** Retention index rows, in order (a put then a delete of the same row deletes it). */
  retention: RetentionOp[];
  /**
   * The at-risk index: per order whose row changed in the batch, a delete of its committed row, then a put of
   * the new one (the stage counts the gauge from the same ops: the delete's row says what to take off).
   */
  atRisk: AtRiskOp[];
};

const live = (l: OrderLine) =>
  l.state === "received" ||
  l.state === "allocated" ||
  l.state === "backordered" ||
  (l.state === "released" && l.shippedQty < l.qty);

const fail = (reason: OrderRejection["reason"], detail: string): OrderRejection => ({
  ok: false,
  reason,
  detail,
});

/** Final: nothing waits for the ledger, a warehouse or a deadline; only a return can still change it. */
export const isFinal = (order: Order): boolean => !order.lines.some(live);

/**
 * Whether a refused reservation of this line may wait in the ledger's waiting list (a backorder filled when
 * stock arrives): its order allows backorders, does not ship complete (a line filled alone would ship part of
 * an order that must ship whole), and it is the line's first attempt (a refused re-route cancels the line).
 */
const waitsWhenRefused = (order: Order, line: OrderLine): boolean =>
  order.split.backorder &&
  order.split.mode !== "ship_complete" &&
  line.attempt === 1 &&
  line.kit === undefined;

/**
 * The ledger line id of a kit line's component: the kit line's id, "#", its 1-based position in the kit
 * (docs/kits.md). An order whose own line ids include one of these is refused (invalid_command).
 */
export const kitPartId = (kitLineId: string, index: number): string => `${kitLineId}#${index + 1}`;

/**
 * Warehouses one attempt of a kit line tries, best first: each try is a round trip to the ledger for every
 * component (≤ networkLimits.kitComponentsMax requests and answers), so 4 tries ≤ 64 requests per kit line.
 * A kit that no warehouse of the first 4 could serve is refused as a line would be (backordered or rejected).
 * The default of `orders.kitWarehousesPerAttemptMax` (OrderLimits).
 */
export const kitWarehousesPerAttemptMax = 4;

/** The kit line and component a component's ledger line id belongs to, or undefined. */
function kitPartOf(order: Order, lineId: string): { line: OrderLine; part: KitPart } | undefined {
  for (const line of order.lines) {
    const part = line.kit?.parts.find((p) => p.lineId === lineId);
    if (part !== undefined) return { line, part };
  }
  return undefined;
}

/** What an ERP document lists for `kits` of a line (units for a plain line): a kit line's components. */
function erpLines(line: OrderLine, qty: number): ErpLine[] {
  if (line.kit === undefined) return [{ lineId: line.lineId, sku: line.sku, qty, price: line.price }];
  const kit = { lineId: line.lineId, sku: line.sku, qty, price: line.price };
  return line.kit.parts.map((p) => ({ lineId: p.lineId, sku: p.sku, qty: qty * p.per, price: 0, kit }));
}

/** A backordered line that the ledger may hold in its waiting list (refused for want of stock). */
const isWaiting = (order: Order, line: OrderLine): boolean =>
  line.state === "backordered" && line.refusal === "insufficient_available" && waitsWhenRefused(order, line);

/**
 * An order's at-risk row, or null when it is not at risk: marked, and not final (an order that shipped whole
 * or was cancelled is at risk no more). A function of the order alone, so the row a batch replaces is the one
 * committed with the order.
 */
export function atRiskRowOf(order: Order): AtRiskRow | null {
  if (order.atRisk == null || isFinal(order)) return null;
  const warehouses = new Set<string>();
  for (const l of order.lines)
    if (live(l) && l.warehouse !== null && (l.state === "allocated" || l.state === "released"))
      warehouses.add(l.warehouse);
  return {
    key: order.key,
    channel: order.channel,
    orderId: order.orderId,
    rulesChannel: order.atRisk.channel,
    shipByMs: order.shipByMs,
    atRiskSinceMs: order.atRisk.sinceMs,
    priority: order.priority,
    status: statusOf(order),
    warehouses: [...warehouses].sort(),
  };
}

const sameRow = (a: AtRiskRow | null, b: AtRiskRow | null) => JSON.stringify(a) === JSON.stringify(b);

/**
 * When an order created at `atMs` with deadline `shipByMs` becomes at risk under a window of `windowMs`: not
 * before it came; null for a window of 0, or when that would be the deadline itself (the SLA acts then).
 */
export function atRiskDueOf(atMs: number, shipByMs: number, windowMs: number): number | null {
  if (windowMs <= 0) return null;
  const dueMs = Math.max(atMs, shipByMs - windowMs);
  return dueMs < shipByMs ? dueMs : null;
}

/** When a final order became final; for one written before that was recorded, its last event's time. */
export const finalAtOf = (order: Order): number =>
  order.finalAtMs ?? order.history.at(-1)?.atMs ?? order.createdAtMs;

/** The time a list of waiting cancels is indexed by: its oldest cancel's. */
const oldestOf = (list: readonly PendingCancel[]): number | null =>
  list.length === 0 ? null : Math.min(...list.map((c) => c.atMs));

const rowId = (r: RetentionRow) => `${r.atMs}\u0000${r.key}`;
const byTime = (a: RetentionRow, b: RetentionRow) =>
  a.atMs - b.atMs || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/** A late input about a compacted order: refused, with what happened to the order and when. */
const compacted = (t: OrderTombstone, what: string): OrderRejection =>
  fail(
    "invalid_transition",
    `order ${t.channel}/${t.orderId} was final (${t.status}) at ${new Date(t.finalAtMs).toISOString()} and has been compacted (orders.finalRetentionMs passed): ${what} for it changes nothing`,
  );

/**
 * The order stage of one partition: every order whose key hashes to it. Synchronous, no clock, no I/O: it
 * reads committed state through a view and returns what to write and what to send (ledger requests,
 * channel statuses, fulfilment requests), which the stage puts in the batch's one transaction and outbox.
 */
export class Orders {
  private readonly cache = new Map<string, Order>();
  private readonly dirty = new Set<string>();
  private readonly pending = new Map<string, PendingCancel[] | null>();
  private timers: TimerOp[] = [];
  private counts = new Map<string, OrderCount>();
  private effects: OrderEffects = { ledger: [], statuses: [], fulfilment: [], erp: [] };
  private readonly statusEvents = new Map<string, { event: string; detail?: string; atMs: number }>();
  /** Stock and capacity this batch's reservation requests take, until the ledger has committed them. */
  private readonly batchStock = new Map<string, number>();
  private readonly batchLoad = new Map<string, number>();
  /** Lines cancelled in this batch per order: one ERP cancellation document each, at the order's version. */
  private readonly cancellations = new Map<string, { order: Order; cause: string; lines: ErpLine[] }>();
  /** Orders replaced by a tombstone in this batch: gone for every later input of the batch. */
  private readonly compactedKeys = new Set<string>();
  /** Tombstones this batch wrote (or removed: null), over the committed ones. */
  private readonly tombstones = new Map<string, OrderTombstone | null>();
  private retentionOps: RetentionOp[] = [];
  /** Retention rows handled in this batch (their deletes are not committed yet): never handled twice. */
  private readonly retentionTaken = new Set<string>();
  /** The at-risk row of each order as committed (read when the batch first loaded it; null: none or new). */
  private readonly riskBefore = new Map<string, AtRiskRow | null>();

  constructor(
    private readonly view: OrderView,
    private readonly network: () => Network,
    private readonly limits: OrderLimits,
    private readonly routing: RoutingView = noRoutingView,
  ) {}

  get(key: string): Order | undefined {
    if (this.compactedKeys.has(key)) return undefined;
    const cached = this.cache.get(key);
    if (cached !== undefined) return cached;
    const stored = this.view.getOrder(key);
    if (stored !== undefined) {
      this.cache.set(key, stored);
      if (!this.riskBefore.has(key)) this.riskBefore.set(key, atRiskRowOf(stored));
    }
    return stored;
  }

  /** Timer writes of the batch so far: the stage's overlay takes the deadlines set (puts) from it. */
  get timerOps(): readonly TimerOp[] {
    return this.timers;
  }

  // ---- inputs --------------------------------------------------------------------------------------

  /** The tombstone of a compacted order, as this batch sees it. */
  tombstoneOf(key: string): OrderTombstone | undefined {
    if (this.tombstones.has(key)) return this.tombstones.get(key) ?? undefined;
    return this.view.getTombstone?.(key);
  }

  create(key: string, input: OrderInput, at: InputRef): OrderOutcome {
    if (this.get(key) !== undefined) return { ok: true, event: "duplicate_order" }; // same key twice: nothing new
    // Compacted, within orders.tombstoneRetentionMs: the same order again, not a new one.
    if (this.tombstoneOf(key) !== undefined) return { ok: true, event: "duplicate_order_compacted" };
    const network = this.network();
    const channel = channelOf(network, input.channel);
    if (channel === undefined) {
      return fail(
        "unknown_channel",
        `channel ${JSON.stringify(input.channel)} is not in the network and there is no "*" channel`,
      );
    }
    const kits = this.kitsOf(input, network);
    if (!kits.ok) return kits;
    const order: Order = {
      key,
      channel: input.channel,
      orderId: input.orderId,
      version: 0,
      status: "pending",
      createdAtMs: at.atMs,
      shipByMs: input.shipByMs ?? at.atMs + channel.slaShipWithinMs,
      priority: input.priority,
      split: {
        mode: input.split.mode ?? channel.split,
        maxShipments: input.split.maxShipments ?? channel.maxShipments,
        backorder: input.split.backorder ?? channel.backorder,
      },
      shipTo: input.shipTo,
      lines: input.lines.map((l, i) => ({
        ...l,
        ...(kits.value[i] === undefined ? {} : { kit: kits.value[i] }),
        state: "received",
        attempt: 1,
        warehouse: null,
        shippedQty: 0,
        shippedAt: {},
        returnedQty: 0,
        excluded: [],
        cancelCause: null,
        rerouteCause: null,
        refusal: null,
        cancelPending: null,
        decision: null,
      })),
      shipmentIds: [],
      returnIds: [],
      slaRerouted: false,
      atRiskDueMs: null,
      atRisk: null,
      policyApplied: false,
      history: [],
    };
    this.compactedKeys.delete(key); // compacted and its tombstone removed in this batch: a new order
    this.cache.set(key, order);
    // A key compacted earlier in this batch was final: it had no row.
    if (!this.riskBefore.has(key)) this.riskBefore.set(key, null);
    this.timers.push({ op: "put", dueMs: order.shipByMs, key });
    order.atRiskDueMs = atRiskDueOf(at.atMs, order.shipByMs, channel.slaAtRiskMs);
    // Inside its window on arrival: marked below, with no timer; its first requests carry the flag.
    const atRiskNow = order.atRiskDueMs === at.atMs;
    if (order.atRiskDueMs !== null && !atRiskNow)
      this.timers.push({ op: "put", dueMs: order.atRiskDueMs, key });
    const waiting = this.pendingCancelsOf(key);
    for (const c of waiting) this.markCancel(order, c.lineIds, c.cause, at);
    if (waiting.length > 0) this.setPending(key, waiting, []);
    const toRoute: OrderLine[] = [];
    for (const line of order.lines) {
      if (line.cancelPending !== null) this.cancelLine(order, line, line.cancelPending);
      else toRoute.push(line);
    }
    this.requestReservations(order, toRoute, at.atMs);
    this.count("orders", "created");
    this.touch(order, "created", at);
    if (atRiskNow) this.markAtRisk(order, at);
    this.settle(order, at);
    return { ok: true, event: "created" };
  }

  cancel(key: string, input: CancelInput, at: InputRef): OrderOutcome {
    const order = this.get(key);
    if (order === undefined) {
      const tombstone = this.tombstoneOf(key);
      if (tombstone !== undefined) return compacted(tombstone, "a cancel");
      // A cancel before its order: kept, and applied when the order arrives.
      const list = this.pendingCancelsOf(key);
      if (list.length >= this.limits.pendingCancelsPerOrderMax) {
        return fail(
          "invalid_command",
          `more than ${this.limits.pendingCancelsPerOrderMax} cancels wait for this order`,
        );
      }
      this.setPending(key, list, [
        ...list,
        { key, lineIds: input.lineIds, cause: input.cause, reason: input.reason ?? null, atMs: at.atMs },
      ]);
      return { ok: true, event: "cancel_pending" };
    }
    const unknown = (input.lineIds ?? []).find((id) => !order.lines.some((l) => l.lineId === id));
    if (unknown !== undefined)
      return fail("unknown_line", `order ${key} has no line ${JSON.stringify(unknown)}`);
    const targets = order.lines.filter((l) => input.lineIds === null || input.lineIds.includes(l.lineId));
    const shipped = targets.filter(
      (l) => l.state === "shipped" || (l.state === "released" && l.shippedQty === l.qty),
    );
    const event = this.markCancel(order, input.lineIds, input.cause, at);
    if (shipped.length > 0) {
      // After shipment a cancel is refused with a clear status: a return is the way.
      this.touch(
        order,
        "cancel_refused",
        at,
        `already shipped: ${shippedList(shipped.map((l) => l.lineId))}; send a return`,
      );
    } else this.touch(order, event, at, input.reason ?? undefined);
    this.settle(order, at);
    return { ok: true, event: shipped.length > 0 ? "cancel_refused" : event };
  }

  ledgerResult(r: LineResult, at: InputRef): OrderOutcome {
    const order = this.get(r.ref.orderKey);
    const kitPart = order === undefined ? undefined : kitPartOf(order, r.ref.lineId);
    if (order !== undefined && kitPart !== undefined)
      return this.kitResult(order, kitPart.line, kitPart.part, r, at);
    const line = order?.lines.find((l) => l.lineId === r.ref.lineId);
    if (order === undefined || line === undefined || line.attempt !== r.attempt)
      return { ok: true, event: "stale_result" };
    if (r.kind === "lost") {
      if ((line.state !== "allocated" && line.state !== "released") || line.warehouse !== r.warehouse) {
        return { ok: true, event: "stale_result" };
      }
      if (line.state === "released") this.fulfil(order, "cancel", r.warehouse, [line], at);
      this.reroute(order, line, r.warehouse, "warehouse", false, at);
      this.touch(order, "stock_lost", at, `${line.lineId} at ${r.warehouse}`);
      this.settle(order, at);
      return { ok: true, event: "stock_lost" };
    }
    if (r.kind === "reserved" && r.filled === true && line.state === "backordered")
      return this.filled(order, line, r, at);
    if (line.state !== "received") return { ok: true, event: "stale_result" };
    if (r.kind === "reserved") {
      line.warehouse = r.warehouse;
      // Stock moved since routing read it: the ledger took a later candidate. The decision says so.
      // (`!= null`: lines written before routing existed have no decision at all.)
      if (line.decision != null && line.decision.chosen !== r.warehouse) line.decision.taken = r.warehouse;
      if (line.cancelPending !== null) {
        this.ask(line, this.request(order, line, "release", `cancel:${line.cancelPending}`));
        this.cancelLine(order, line, line.cancelPending);
      } else line.state = "allocated";
      this.touch(order, "allocated", at);
    } else this.refused(order, line, r.code, at);
    this.settle(order, at);
    return { ok: true, event: r.kind };
  }

  /** A line's reservation failed (for a kit line: at every warehouse its attempt tried). */
  private refused(order: Order, line: OrderLine, code: string, at: InputRef): void {
    line.refusal = code;
    if (line.cancelPending !== null) {
      // The refusal may have put the line in the waiting list: out of it (a release changes nothing else).
      if (waitsWhenRefused(order, line))
        this.ask(line, this.request(order, line, "release", `cancel:${line.cancelPending}`));
      this.cancelLine(order, line, line.cancelPending);
    } else if (line.attempt > 1) this.rerouteFailed(order, line, at);
    else this.notReserved(order, line, code);
    this.touch(order, "refused", at, `${line.lineId}: ${code}`);
  }

  // ---- kits (docs/kits.md) ------------------------------------------------------------------------------

  /**
   * The kit of each line of a new order (frozen: a later catalog change leaves the order as it came), or why
   * the order is refused: a line id that is a component id of a kit line, a component id over
   * `ledger.idBytesMax` (the ledger would refuse its requests), kits × units past the bound, or more ledger
   * lines than `orders.linesPerOrderMax` (a kit line counts its components: what bounds every output item).
   */
  private kitsOf(
    input: OrderInput,
    network: Network,
  ): { ok: true; value: Array<KitLine | undefined> } | OrderRejection {
    const ids = new Set(input.lines.map((l) => l.lineId));
    const value: Array<KitLine | undefined> = [];
    const idBytesMax = this.limits.idBytesMax ?? idBytesMaxDefault;
    const ledgerLinesMax = this.limits.linesPerOrderMax ?? linesPerOrderMaxDefault;
    let ledgerLines = 0;
    for (const l of input.lines) {
      const kit = kitOf(network, l.sku);
      ledgerLines += kit === undefined ? 1 : kit.components.length;
      if (ledgerLines > ledgerLinesMax)
        return fail(
          "invalid_command",
          `the order takes more than ${ledgerLinesMax} ledger lines (orders.linesPerOrderMax; a kit line takes one per component): send its lines in several orders`,
        );
      if (kit === undefined) {
        value.push(undefined);
        continue;
      }
      const lastPartId = kitPartId(l.lineId, kit.components.length - 1);
      const partIdBytes = Buffer.byteLength(lastPartId, "utf8");
      if (partIdBytes > idBytesMax)
        return fail(
          "invalid_command",
          `kit line ${JSON.stringify(l.lineId)} (${l.sku}): its component line id ${JSON.stringify(lastPartId)} is ${partIdBytes} UTF-8 bytes, over ledger.idBytesMax (${idBytesMax}); use a line id of at most ${idBytesMax - (partIdBytes - Buffer.byteLength(l.lineId, "utf8"))} bytes`,
        );
      const parts: KitPart[] = kit.components.map((c, j) => ({
        sku: c.sku,
        per: c.qty,
        lineId: kitPartId(l.lineId, j),
        answer: null,
      }));
      const clash = parts.find((p) => ids.has(p.lineId));
      if (clash !== undefined)
        return fail(
          "invalid_command",
          `line id ${JSON.stringify(clash.lineId)} is the id Sluice gives a component of kit line ${JSON.stringify(l.lineId)} (${l.sku}); use other line ids`,
        );
      const unitsMax = Math.max(...parts.map((p) => p.per)) * l.qty;
      if (unitsMax > networkLimits.unitsMax)
        return fail(
          "invalid_command",
          `line ${JSON.stringify(l.lineId)}: ${l.qty} kits of ${l.sku} need ${unitsMax} units of a component, more than ${networkLimits.unitsMax}`,
        );
      value.push({ parts, try: 0, candidates: [], tried: 0 });
    }
    return { ok: true, value };
  }

  /**
   * A ledger answer about a kit line's component. Stale unless it answers the current try of a line waiting
   * for it, once. When the last answer of a try is in: every component reserved allocates the line; else the
   * reserved ones are released (the compensation: once per try, since the try then moves on) and the next
   * candidate warehouse is tried, or the line is refused as any line is. A count that took a component's
   * stock re-routes the whole kit line.
   */
  private kitResult(order: Order, line: OrderLine, part: KitPart, r: LineResult, at: InputRef): OrderOutcome {
    const kit = line.kit as KitLine;
    if (r.attempt !== kit.try) return { ok: true, event: "stale_result" };
    if (r.kind === "lost" && line.state === "received") {
      // A count took a component this try had reserved while another's answer is still due: the try fails.
      if (part.answer !== "reserved") return { ok: true, event: "stale_result" };
      part.answer = "lost";
      return this.kitAnswered(order, line, kit, part, at);
    }
    if (r.kind === "lost") {
      if ((line.state !== "allocated" && line.state !== "released") || line.warehouse !== r.warehouse)
        return { ok: true, event: "stale_result" };
      if (line.state === "released") this.fulfil(order, "cancel", r.warehouse, [line], at);
      this.reroute(order, line, r.warehouse, "warehouse", false, at);
      this.touch(order, "stock_lost", at, `${line.lineId} (${part.sku}) at ${r.warehouse}`);
      this.settle(order, at);
      return { ok: true, event: "stock_lost" };
    }
    if (
      line.state !== "received" ||
      part.answer !== "pending" ||
      (r.kind === "reserved" && r.filled === true)
    )
      return { ok: true, event: "stale_result" };
    part.answer = r.kind === "reserved" ? "reserved" : r.code;
    return this.kitAnswered(order, line, kit, part, at);
  }

  private kitAnswered(
    order: Order,
    line: OrderLine,
    kit: KitLine,
    part: KitPart,
    at: InputRef,
  ): OrderOutcome {
    // The answer is state: written with the order (a restart finds it), and the line waits for the others.
    if (kit.parts.some((p) => p.answer === "pending")) {
      this.touch(order, "kit_component_answered", at, `${part.lineId}: ${part.answer}`);
      return { ok: true, event: "kit_component_answered" };
    }
    return this.kitTryDone(order, line, kit, at);
  }

  private kitTryDone(order: Order, line: OrderLine, kit: KitLine, at: InputRef): OrderOutcome {
    const warehouse = kit.candidates[kit.tried - 1];
    if (warehouse !== undefined && kit.parts.every((p) => p.answer === "reserved")) {
      line.warehouse = warehouse;
      if (line.decision != null && line.decision.chosen !== warehouse) line.decision.taken = warehouse;
      this.count("kit", "allocated");
      if (line.cancelPending !== null) {
        this.ask(line, this.request(order, line, "release", `cancel:${line.cancelPending}`));
        this.cancelLine(order, line, line.cancelPending);
      } else line.state = "allocated";
      this.touch(order, "allocated", at);
      this.settle(order, at);
      return { ok: true, event: "reserved" };
    }
    // Compensation: what this try reserved goes back, through the ledger's ordinary release (a component a
    // count took, "lost", too: whatever the count left of it).
    const held = kit.parts.filter((p) => p.answer === "reserved" || p.answer === "lost");
    for (const p of held)
      this.effects.ledger.push(
        this.partRequest(this.request(order, line, "release", "kit_compensate"), p, kit),
      );
    if (held.length > 0) this.count("kit", "compensated");
    const first = kit.parts.find((p) => p.answer !== "reserved")?.answer;
    const code = first === "lost" ? "insufficient_available" : (first ?? "no_candidate_warehouse");
    if (line.cancelPending === null && kit.tried < kit.candidates.length) {
      this.touch(order, "kit_retried", at, `${line.lineId}: ${code} at ${warehouse}`);
      this.kitTry(order, line, kit);
      return { ok: true, event: "kit_retried" };
    }
    this.refused(order, line, code, at);
    this.settle(order, at);
    return { ok: true, event: "refused" };
  }

  /**
   * One try of a kit line: every component asked at the next candidate warehouse alone (a kit ships as one
   * parcel), under a new ledger attempt. With no candidate left (none at all), asked with none: the ledger
   * answers no_candidate_warehouse, and the line is refused by the same path as any other.
   */
  private kitTry(order: Order, line: OrderLine, kit: KitLine): void {
    const warehouse = kit.candidates[kit.tried];
    kit.tried += 1;
    kit.try += 1;
    const kits = line.qty - line.shippedQty;
    let units = 0;
    for (const part of kit.parts) {
      part.answer = "pending";
      const qty = kits * part.per;
      units += qty;
      if (warehouse !== undefined) {
        const k = `${part.sku}\u0000${warehouse}`;
        this.batchStock.set(k, (this.batchStock.get(k) ?? 0) + qty);
      }
      this.effects.ledger.push({
        kind: "reserve",
        ref: { orderKey: order.key, lineId: part.lineId },
        sku: part.sku,
        qty,
        candidates: warehouse === undefined ? [] : [warehouse],
        attempt: kit.try,
      });
    }
    if (warehouse !== undefined) this.batchLoad.set(warehouse, (this.batchLoad.get(warehouse) ?? 0) + units);
  }

  /** A request about a line, to the ledger: for a kit line, one per component at its try (qty in units). */
  private ask(line: OrderLine, r: LineRequest): void {
    const kit = line.kit;
    if (kit === undefined) this.effects.ledger.push(r);
    else for (const part of kit.parts) this.effects.ledger.push(this.partRequest(r, part, kit));
  }

  /**
   * A line request about one component. A warehouse rejection of a kit never corrects on hand (stockMissing
   * false): the WMS does not say which component is missing; its count of that SKU does (docs/kits.md).
   */
  private partRequest(r: LineRequest, part: KitPart, kit: KitLine): LineRequest {
    const ref = { orderKey: r.ref.orderKey, lineId: part.lineId };
    const base = { ref, sku: part.sku, attempt: kit.try };
    switch (r.kind) {
      case "ship":
      case "return":
        return { ...r, ...base, qty: r.qty * part.per };
      case "reject":
        return { ...r, ...base, stockMissing: false };
      default:
        return { ...r, ...base };
    }
  }

  /**
   * What routing reads for a kit SKU: per warehouse, the kits its components' available stock makes
   * (min over components of ⌊available / units per kit⌋), as on-hand of a position with nothing held.
   */
  private kitStock(parts: readonly KitPart[]): IdRecord<Position> | undefined {
    const first = parts[0];
    if (first === undefined) return undefined;
    let out: IdRecord<Position> = {};
    for (const [w] of ownEntries(this.stockInBatch(first.sku))) {
      let kits = Number.POSITIVE_INFINITY;
      for (const p of parts) {
        const pos = own(this.stockInBatch(p.sku), w);
        kits = Math.min(kits, pos === undefined ? 0 : Math.floor(Math.max(0, available(pos)) / p.per));
      }
      out = withOwn(out, w, { onHand: kits, reserved: 0, damaged: 0, qualityControl: 0, safetyStock: 0 });
    }
    return out;
  }

  /**
   * A waiting backorder filled by the ledger when stock arrived: the line is allocated and released as any
   * allocation. Taken once: a copy finds the line no longer backordered (or at another attempt) and is stale.
   * A fill at a warehouse that would carry the order past split.maxShipments is given back: the line stays
   * backordered (refusal max_shipments) and waits no more; an SLA re-route asks again.
   */
  private filled(
    order: Order,
    line: OrderLine,
    r: Extract<LineResult, { kind: "reserved" }>,
    at: InputRef,
  ): OrderOutcome {
    if (!isWaiting(order, line)) return { ok: true, event: "stale_result" };
    if (!this.withinShipments(order, r.warehouse)) {
      this.ask(line, this.request(order, line, "release", "max_shipments"));
      line.refusal = "max_shipments";
      this.count("backordered", "max_shipments");
      this.touch(order, "backorder_fill_refused", at, `${line.lineId} at ${r.warehouse}: max_shipments`);
      this.settle(order, at);
      return { ok: true, event: "backorder_fill_refused" };
    }
    line.warehouse = r.warehouse;
    line.refusal = null;
    line.state = "allocated";
    if (line.decision != null && line.decision.chosen !== r.warehouse) line.decision.taken = r.warehouse;
    this.touch(order, "backorder_filled", at, `${line.lineId} at ${r.warehouse}`);
    this.settle(order, at);
    return { ok: true, event: "backorder_filled" };
  }

  /** Whether the order may take a line at `warehouse` within split.maxShipments (0: no limit). */
  private withinShipments(order: Order, warehouse: string): boolean {
    if (order.split.maxShipments <= 0) return true;
    const used = new Set<string>();
    for (const l of order.lines) {
      for (const w of ownIds(l.shippedAt)) used.add(w);
      if (l.warehouse !== null && (l.state === "allocated" || l.state === "released")) used.add(l.warehouse);
    }
    return used.has(warehouse) || used.size < order.split.maxShipments;
  }

  shipped(key: string, input: ShippedInput, at: InputRef): OrderOutcome {
    const order = this.get(key);
    if (order === undefined) return this.missing(key, input, `shipment ${input.shipmentId}`);
    if (order.shipmentIds.includes(input.shipmentId)) return { ok: true, event: "duplicate_shipment" };
    for (const s of input.lines) {
      const line = order.lines.find((l) => l.lineId === s.lineId);
      if (line === undefined)
        return fail("unknown_line", `order ${key} has no line ${JSON.stringify(s.lineId)}`);
      if (line.state !== "released" || line.warehouse !== input.warehouse) {
        return fail(
          "invalid_transition",
          `line ${s.lineId} is ${line.state} at ${line.warehouse ?? "no warehouse"}, not released to ${input.warehouse}`,
        );
      }
      if (s.qty > line.qty - line.shippedQty) {
        return fail(
          "invalid_transition",
          `line ${s.lineId}: ships ${s.qty} but only ${line.qty - line.shippedQty} are open`,
        );
      }
    }
    for (const s of input.lines) {
      const line = order.lines.find((l) => l.lineId === s.lineId) as OrderLine;
      line.shippedQty += s.qty;
      line.shippedAt = withOwn(
        line.shippedAt,
        input.warehouse,
        (own(line.shippedAt, input.warehouse) ?? 0) + s.qty,
      );
      if (line.shippedQty === line.qty) line.state = "shipped";
      this.count("shipped", "units", s.qty);
      this.ask(line, {
        ...this.request(order, line, "ship", "shipment"),
        kind: "ship",
        qty: s.qty,
        eventId: input.shipmentId,
      } as LineRequest);
    }
    order.shipmentIds.push(input.shipmentId);
    this.effects.erp.push({
      kind: "shipment",
      id: documentId.shipment(key, input.shipmentId),
      orderKey: key,
      channel: order.channel,
      orderId: order.orderId,
      warehouse: input.warehouse,
      shipmentId: input.shipmentId,
      lines: input.lines.flatMap((s) =>
        erpLines(order.lines.find((l) => l.lineId === s.lineId) as OrderLine, s.qty),
      ),
      atMs: at.atMs,
    });
    this.touch(order, "shipped", at, input.shipmentId);
    this.settle(order, at);
    return { ok: true, event: "shipped" };
  }

  rejected(key: string, input: RejectedInput, at: InputRef): OrderOutcome {
    const order = this.get(key);
    if (order === undefined) return this.missing(key, input, `a rejection by ${input.warehouse}`);
    const lines: OrderLine[] = [];
    for (const id of input.lineIds) {
      const line = order.lines.find((l) => l.lineId === id);
      if (line === undefined) return fail("unknown_line", `order ${key} has no line ${JSON.stringify(id)}`);
      if (line.state !== "released" || line.warehouse !== input.warehouse || line.shippedQty > 0) {
        return fail(
          "invalid_transition",
          `line ${id} is ${line.state} at ${line.warehouse ?? "no warehouse"} with ${line.shippedQty} shipped; only an unshipped line released to ${input.warehouse} can be rejected by it`,
        );
      }
      lines.push(line);
    }
    for (const line of lines)
      this.reroute(order, line, input.warehouse, "warehouse", input.stockMissing, at, true);
    this.touch(
      order,
      "rejected_by_warehouse",
      at,
      `${input.warehouse}${input.reason ? `: ${input.reason}` : ""}`,
    );
    this.settle(order, at);
    return { ok: true, event: "rejected_by_warehouse" };
  }

  returned(key: string, input: ReturnInput, at: InputRef): OrderOutcome {
    const order = this.get(key);
    if (order === undefined) return this.missing(key, input, `return ${input.returnId}`);
    if (order.returnIds.includes(input.returnId)) return { ok: true, event: "duplicate_return" };
    for (const r of input.lines) {
      const line = order.lines.find((l) => l.lineId === r.lineId);
      if (line === undefined)
        return fail("unknown_line", `order ${key} has no line ${JSON.stringify(r.lineId)}`);
      const open = line.shippedQty - line.returnedQty;
      if (r.qty > open) {
        return fail(
          "invalid_transition",
          `line ${r.lineId}: returns ${r.qty} but only ${Math.max(open, 0)} shipped and not yet returned`,
        );
      }
    }
    for (const r of input.lines) {
      const line = order.lines.find((l) => l.lineId === r.lineId) as OrderLine;
      line.returnedQty += r.qty;
      this.count("returned", r.disposition, r.qty);
      this.ask(line, {
        kind: "return",
        ref: { orderKey: key, lineId: line.lineId },
        sku: line.sku,
        eventId: input.returnId,
        qty: r.qty,
        disposition: r.disposition,
        // Back to where it shipped from unless the return names a warehouse.
        warehouse: r.warehouse ?? (ownIds(line.shippedAt)[0] as string),
        attempt: line.attempt,
      });
    }
    order.returnIds.push(input.returnId);
    this.returnDocuments(order, input, at);
    this.touch(order, "returned", at, input.returnId);
    return { ok: true, event: "returned" };
  }

  /** One ERP return document per warehouse the units go back to (the return id names it; with @warehouse if several). */
  private returnDocuments(order: Order, input: ReturnInput, at: InputRef): void {
    const byWarehouse = new Map<string, Array<ErpLine & { disposition: ReturnDisposition }>>();
    for (const r of input.lines) {
      const line = order.lines.find((l) => l.lineId === r.lineId) as OrderLine;
      const warehouse = r.warehouse ?? (ownIds(line.shippedAt)[0] as string);
      const list = byWarehouse.get(warehouse) ?? [];
      for (const l of erpLines(line, r.qty)) list.push({ ...l, disposition: r.disposition });
      byWarehouse.set(warehouse, list);
    }
    for (const [warehouse, lines] of byWarehouse) {
      const name = byWarehouse.size === 1 ? input.returnId : `${input.returnId}@${warehouse}`;
      this.effects.erp.push({
        kind: "return",
        id: documentId.return(order.key, name),
        orderKey: order.key,
        channel: order.channel,
        orderId: order.orderId,
        returnId: input.returnId,
        warehouse,
        lines,
        atMs: at.atMs,
      });
    }
  }

  /**
   * Timers that passed: an at-risk mark (its due time is the order's atRiskDueMs), or an SLA deadline (the
   * order's shipByMs): cancel or re-route the unshipped lines, by the channel's rule. Any other row is stale.
   */
  fireDueTimers(nowMs: number): number {
    const due = this.view.dueTimers(nowMs, this.limits.timersPerTickMax);
    const at = { seq: 0, atMs: nowMs };
    for (const t of due) {
      this.timers.push({ op: "delete", dueMs: t.dueMs, key: t.key });
      const order = this.get(t.key);
      if (order === undefined) continue;
      if (order.atRiskDueMs === t.dueMs) {
        this.markAtRisk(order, at);
        continue;
      }
      if (order.shipByMs !== t.dueMs) continue;
      const channel = channelOf(this.network(), order.channel);
      const open = order.lines.filter(live);
      if (open.length === 0) continue;
      // The SLA acts now: an at-risk mark not made yet never will be, and one made ends (re-route or cancel).
      this.disarmAtRisk(order);
      order.atRisk = null;
      if (channel?.slaAction === "reroute" && !order.slaRerouted) {
        order.slaRerouted = true;
        this.count("sla", "reroute");
        // The new deadline first: routing filters carriers by it (the one that passed would filter all).
        order.shipByMs = nowMs + (channel?.slaRerouteGraceMs ?? 0);
        this.timers.push({ op: "put", dueMs: order.shipByMs, key: order.key });
        for (const line of open) {
          if (line.state === "received") continue; // waiting for the ledger already
          if (line.state === "backordered") this.retry(order, line, "sla", at);
          else {
            if (line.state === "released") this.fulfil(order, "cancel", line.warehouse as string, [line], at);
            this.reroute(order, line, line.warehouse as string, "sla", false, at);
          }
        }
        this.touch(order, "sla_rerouted", at);
      } else {
        this.count("sla", "cancel");
        this.markCancel(
          order,
          open.map((l) => l.lineId),
          "sla",
          at,
        );
        this.touch(order, "sla_cancelled", at);
      }
      this.settle(order, at);
    }
    return due.length;
  }

  /**
   * The at-risk timer of an open order fired (once: its due time is cleared): the order is marked, says so in
   * its history and status, and its released lines are asked again of their warehouses with `atRisk: true`,
   * so a WMS picks them first. Lines not released yet carry the flag when they are.
   */
  private markAtRisk(order: Order, at: InputRef): void {
    order.atRiskDueMs = null;
    // Cannot happen (a final order's timer goes with it, settle()), and would change nothing: not written.
    if (!order.lines.some(live)) return;
    const rules = channelOf(this.network(), order.channel);
    order.atRisk = { sinceMs: at.atMs, channel: rules?.id ?? order.channel };
    this.count("at_risk", "marked");
    this.touch(order, "at_risk", at, `ship-by ${new Date(order.shipByMs).toISOString()}`);
    const byWarehouse = new Map<string, OrderLine[]>();
    for (const line of order.lines) {
      if (line.state !== "released" || line.shippedQty >= line.qty) continue;
      const w = line.warehouse as string;
      byWarehouse.set(w, [...(byWarehouse.get(w) ?? []), line]);
    }
    for (const [warehouse, lines] of byWarehouse) this.fulfil(order, "fulfil", warehouse, lines, at);
  }

  /** An at-risk timer not fired yet is removed (the order became final, or its SLA acted first). */
  private disarmAtRisk(order: Order): void {
    if (order.atRiskDueMs == null) return;
    this.timers.push({ op: "delete", dueMs: order.atRiskDueMs, key: order.key });
    order.atRiskDueMs = null;
  }

  // ---- retention -----------------------------------------------------------------------------------

  /**
   * Retention at a clock message's stream time `nowMs`: final orders past orders.finalRetentionMs become
   * tombstones, tombstones past orders.tombstoneRetentionMs (both from the final time) are removed, and
   * cancels that waited orders.pendingCancelAgeMsMax for an order that never came are dropped; at most
   * `perTickMax` rows of each index, earliest first, the rest at the next clock. Compaction publishes
   * nothing: the order's last output stays its last. Returns the rows handled.
   */
  compact(nowMs: number): number {
    const r = this.limits.retention;
    if (r === undefined) return 0;
    // Orders first: with equal horizons a tombstone made now is removed by the same clock.
    const finals = this.dueRows("finals", nowMs - r.finalRetentionMs, r.perTickMax);
    for (const row of finals) this.compactOrder(row, nowMs);
    const tombstones = this.dueRows("tombstones", nowMs - r.tombstoneRetentionMs, r.perTickMax);
    for (const row of tombstones) this.removeTombstone(row);
    const cutoffMs = nowMs - r.pendingCancelAgeMsMax;
    const pending = this.dueRows("pending", cutoffMs, r.perTickMax);
    for (const row of pending) this.expirePending(row, cutoffMs);
    return finals.length + tombstones.length + pending.length;
  }

  /**
   * Due rows of an index as this batch sees them: committed rows and rows this batch put, less those it
   * handled already, earliest first. Each row returned is deleted (handled once); its record is checked by
   * the caller, so a row whose record changed since (or is gone) is only dropped. Where a row is handled
   * thus depends on the stream alone, never on batch boundaries.
   */
  private dueRows(index: RetentionIndex, cutoffMs: number, limit: number): RetentionRow[] {
    const seen = (r: RetentionRow) => this.retentionTaken.has(`${index}\u0000${rowId(r)}`);
    const rows = new Map<string, RetentionRow>();
    // Rows handled in this batch are still committed (their deletes commit with it): read past them.
    const committed = this.view.dueRetention?.(index, cutoffMs, limit + this.retentionTaken.size) ?? [];
    for (const r of committed) rows.set(rowId(r), r);
    for (const op of this.retentionOps) {
      if (op.index === index && op.op === "put" && op.atMs <= cutoffMs)
        rows.set(rowId(op), { atMs: op.atMs, key: op.key });
    }
    const due = [...rows.values()]
      .filter((r) => !seen(r))
      .sort(byTime)
      .slice(0, limit);
    for (const r of due) {
      this.retentionTaken.add(`${index}\u0000${rowId(r)}`);
      this.retention(index, "delete", r.atMs, r.key);
    }
    return due;
  }

  private compactOrder(row: RetentionRow, nowMs: number): void {
    const order = this.get(row.key);
    if (order === undefined || !isFinal(order) || finalAtOf(order) !== row.atMs) return; // a stale row
    if (this.dirty.has(order.key)) {
      // Changed earlier in this batch (a return): its status goes out now, before its record goes.
      this.emitStatus(order);
      this.dirty.delete(order.key);
    }
    const tombstone: OrderTombstone = {
      channel: order.channel,
      orderId: order.orderId,
      status: statusOf(order),
      version: order.version,
      createdAtMs: order.createdAtMs,
      finalAtMs: row.atMs,
      compactedAtMs: nowMs,
    };
    this.compactedKeys.add(order.key);
    this.tombstones.set(order.key, tombstone);
    this.retention("tombstones", "put", row.atMs, order.key);
    this.count("retention", "compacted");
  }

  private removeTombstone(row: RetentionRow): void {
    const tombstone = this.tombstoneOf(row.key);
    if (tombstone === undefined || tombstone.finalAtMs !== row.atMs) return; // a stale row
    this.tombstones.set(row.key, null);
    this.count("retention", "tombstone_removed");
  }

  private expirePending(row: RetentionRow, cutoffMs: number): void {
    const list = this.pendingCancelsOf(row.key);
    if (oldestOf(list) !== row.atMs) return; // a stale row: its order came, or its list changed
    const keep = list.filter((c) => c.atMs > cutoffMs);
    this.count("retention", "pending_cancel_expired", list.length - keep.length);
    this.setPending(row.key, list, keep);
  }

  /** The cancels waiting for `key` become `after`; the index follows their oldest time. */
  private setPending(key: string, before: readonly PendingCancel[], after: PendingCancel[]): void {
    this.pending.set(key, after.length === 0 ? null : after);
    const was = oldestOf(before);
    const is = oldestOf(after);
    if (was === is) return;
    if (was !== null) this.retention("pending", "delete", was, key);
    if (is !== null) this.retention("pending", "put", is, key);
  }

  private retention(index: RetentionIndex, op: "put" | "delete", atMs: number, key: string): void {
    if (this.limits.retention !== undefined) this.retentionOps.push({ index, op, atMs, key });
  }

  /** An input about an order this partition does not hold: compacted (refused, saying so), or unknown. */
  private missing(key: string, input: { channel: string; orderId: string }, what: string): OrderRejection {
    const tombstone = this.tombstoneOf(key);
    if (tombstone !== undefined) return compacted(tombstone, what);
    return fail("unknown_order", `no order ${input.channel}/${input.orderId}`);
  }

  // ---- transitions ---------------------------------------------------------------------------------

  private markCancel(order: Order, lineIds: string[] | null, cause: CancelCause, at: InputRef): string {
    let cancelled = 0;
    const byWarehouse = new Map<string, OrderLine[]>();
    for (const line of order.lines) {
      if (lineIds !== null && !lineIds.includes(line.lineId)) continue;
      switch (line.state) {
        case "received":
          line.cancelPending = cause;
          break;
        case "allocated":
          this.ask(line, this.request(order, line, "release", `cancel:${cause}`));
          this.cancelLine(order, line, cause);
          cancelled++;
          break;
        case "released":
          if (line.shippedQty >= line.qty) break;
          this.ask(line, this.request(order, line, "release", `cancel:${cause}`));
          byWarehouse.set(line.warehouse as string, [
            ...(byWarehouse.get(line.warehouse as string) ?? []),
            line,
          ]);
          this.cancelLine(order, line, cause); // a partly shipped line: the rest is cancelled
          cancelled++;
          break;
        case "backordered":
          // A line that may wait in the ledger's waiting list leaves it (or gives back what a fill in flight took).
          if (isWaiting(order, line)) this.ask(line, this.request(order, line, "release", `cancel:${cause}`));
          this.cancelLine(order, line, cause);
          cancelled++;
          break;
        default:
          break;
      }
    }
    for (const [warehouse, lines] of byWarehouse) this.fulfil(order, "cancel", warehouse, lines, at);
    return cancelled > 0 ? "cancelled" : "cancel_noted";
  }

  private cancelLine(order: Order, line: OrderLine, cause: CancelCause): void {
    this.count("cancelled", cause);
    const open = line.qty - line.shippedQty;
    if (open > 0) {
      const k = `${order.key}\u0000${cause}`;
      const c = this.cancellations.get(k) ?? { order, cause, lines: [] };
      c.lines.push(...erpLines(line, open));
      this.cancellations.set(k, c);
    }
    // What shipped stays shipped: a partly shipped line whose rest is cancelled ends as shipped.
    line.state = line.shippedQty > 0 ? "shipped" : "cancelled";
    line.cancelCause = cause;
    line.cancelPending = null;
  }

  /** Take a line away from its warehouse and ask the ledger for another one, never one that rejected it. */
  private reroute(
    order: Order,
    line: OrderLine,
    warehouse: string,
    cause: CancelCause,
    stockMissing: boolean,
    at: InputRef,
    reject = false,
  ): void {
    if (reject || stockMissing) {
      this.ask(line, {
        ...this.request(order, line, "reject", `reroute:${cause}`),
        kind: "reject",
        stockMissing,
      } as LineRequest);
    } else this.ask(line, this.request(order, line, "release", `reroute:${cause}`));
    if (!line.excluded.includes(warehouse)) line.excluded.push(warehouse);
    this.count("rerouted", cause);
    this.retry(order, line, cause, at);
  }

  private retry(order: Order, line: OrderLine, cause: CancelCause, at: InputRef): void {
    line.attempt += 1;
    line.warehouse = null;
    line.state = "received";
    line.rerouteCause = cause;
    this.requestReservations(order, [line], at.atMs);
  }

  /**
   * Routes lines (all of a new order, or one re-routed line) and asks the ledger to reserve each at its
   * choice, then at the other candidates by score. A re-route keeps the split policy: the warehouses the
   * order already ships from cost no extra shipment, and once it ships from its maximum number of them the
   * line may only move to one of those. Every decision is kept on its line.
   */
  private requestReservations(order: Order, lines: OrderLine[], nowMs: number): void {
    if (lines.length === 0) return;
    const used = new Set<string>();
    for (const l of order.lines) {
      for (const w of ownIds(l.shippedAt)) used.add(w);
      if (!lines.includes(l) && l.warehouse !== null && (l.state === "allocated" || l.state === "released"))
        used.add(l.warehouse);
    }
    // A kit line is routed as its kit SKU over the kits its components' stock makes at each warehouse.
    const kitParts = new Map<string, readonly KitPart[]>();
    for (const l of lines) if (l.kit !== undefined) kitParts.set(l.sku, l.kit.parts);
    const result = route(
      {
        channel: order.channel,
        shipTo: order.shipTo,
        shipByMs: order.shipByMs,
        split: order.split,
        // A re-routed, partly shipped line needs only the rest.
        lines: lines.map((l) => ({
          lineId: l.lineId,
          sku: l.sku,
          qty: l.qty - l.shippedQty,
          excluded: l.excluded,
        })),
        used,
      },
      this.network(),
      {
        stock: (sku) => {
          const parts = kitParts.get(sku);
          return parts === undefined ? this.stockInBatch(sku) : this.kitStock(parts);
        },
        known: (sku) => {
          const parts = kitParts.get(sku);
          if (parts === undefined) return this.routing.known?.(sku) ?? true;
          return parts.every((p) => this.routing.known?.(p.sku) ?? true);
        },
        load: (w) => this.routing.load(w) + (this.batchLoad.get(w) ?? 0),
        nowMs,
      },
    );
    for (const [i, line] of lines.entries()) {
      const r = result.lines[i];
      assert(r !== undefined && r.lineId === line.lineId, "routing answers every line, in order");
      line.decision = r.decision;
      this.countDecision(r.decision);
      if (line.kit !== undefined) {
        line.kit.candidates = r.candidates.slice(
          0,
          this.limits.kitWarehousesPerAttemptMax ?? kitWarehousesPerAttemptMax,
        );
        line.kit.tried = 0;
        this.kitTry(order, line, line.kit);
        continue;
      }
      const qty = line.qty - line.shippedQty;
      if (r.decision.chosen !== null) {
        const k = `${line.sku}\u0000${r.decision.chosen}`;
        this.batchStock.set(k, (this.batchStock.get(k) ?? 0) + qty);
        this.batchLoad.set(r.decision.chosen, (this.batchLoad.get(r.decision.chosen) ?? 0) + qty);
      }
      this.effects.ledger.push({
        kind: "reserve",
        ref: { orderKey: order.key, lineId: line.lineId },
        sku: line.sku,
        qty,
        candidates: r.candidates,
        ...(r.keep.some((k) => k > 0) ? { keep: r.keep } : {}),
        attempt: line.attempt,
        ...(waitsWhenRefused(order, line) ? { wait: { priority: order.priority } } : {}),
      });
    }
    if (lines.length === order.lines.length && result.shipments > 1)
      this.count("split", String(result.shipments));
  }

  /** Committed positions less what this batch has already asked to reserve (until the ledger commits it). */
  private stockInBatch(sku: string) {
    const positions = this.routing.stock(sku);
    if (positions === undefined || this.batchStock.size === 0) return positions;
    let out: IdRecord<Position> | undefined;
    for (const [w, p] of ownEntries(positions)) {
      const taken = this.batchStock.get(`${sku}\u0000${w}`);
      if (taken === undefined) continue;
      out = withOwn(out ?? positions, w, { ...p, reserved: p.reserved + taken });
    }
    return out ?? positions;
  }

  private countDecision(d: LineDecision): void {
    this.count("routed", d.chosen ?? "none");
    for (const f of d.filtered) this.count("filtered", f.reason);
  }

  /** `cause` says why, in the ledger entry it leads to: cancel:<cause>, reroute:<cause>, ship_complete… */
  private request(
    order: Order,
    line: OrderLine,
    kind: "release" | "ship" | "reject",
    cause: string,
  ): LineRequest {
    return {
      kind,
      ref: { orderKey: order.key, lineId: line.lineId },
      sku: line.sku,
      attempt: line.attempt,
      cause,
    } as LineRequest;
  }

  /**
   * Once no line waits for the ledger, the split policy is applied (once per order): max shipments keeps
   * the warehouses with the most lines; ship complete releases every reservation when a line failed. Then
   * every allocated line is released to its warehouse, one fulfilment request per warehouse.
   */
  private settle(order: Order, at: InputRef): void {
    if (order.lines.some((l) => l.state === "received")) return;
    const allocated = order.lines.filter((l) => l.state === "allocated");
    if (!order.policyApplied && allocated.length > 0) {
      order.policyApplied = true;
      if (order.split.maxShipments > 0) this.limitShipments(order, allocated, at);
      const failed = order.lines.some((l) => l.state === "backordered" || l.state === "rejected");
      if (order.split.mode === "ship_complete" && failed) {
        for (const line of order.lines.filter((l) => l.state === "allocated")) {
          this.ask(line, this.request(order, line, "release", "ship_complete"));
          line.warehouse = null;
          this.notReserved(order, line, "ship_complete");
        }
        this.touch(order, "ship_complete_released", at);
      }
    } else if (order.policyApplied && order.split.maxShipments > 0 && this.keepWithinShipments(order, at)) {
      return; // some re-routed lines were moved again, into the warehouses the order keeps
    }
    const byWarehouse = new Map<string, OrderLine[]>();
    for (const line of order.lines.filter((l) => l.state === "allocated")) {
      line.state = "released";
      byWarehouse.set(line.warehouse as string, [...(byWarehouse.get(line.warehouse as string) ?? []), line]);
    }
    for (const [warehouse, lines] of byWarehouse) {
      this.fulfil(order, "fulfil", warehouse, lines, at);
      this.count("released", "lines", lines.length);
    }
    if (!order.lines.some(live)) {
      this.timers.push({ op: "delete", dueMs: order.shipByMs, key: order.key });
      // Shipped whole or cancelled: no longer at risk, and never marked later.
      this.disarmAtRisk(order);
      order.atRisk = null;
      // Final from now on (a return does not change that): the retention horizons count from here.
      if (this.limits.retention !== undefined && order.finalAtMs == null) {
        order.finalAtMs = at.atMs;
        this.retention("finals", "put", at.atMs, order.key);
      }
    }
    order.status = statusOf(order);
  }

  /**
   * Re-routed lines each find their own warehouse; together they may exceed max shipments. Warehouses that
   * already have the order (released or shipped lines) stay, then those with the most re-routed lines; a
   * re-routed line elsewhere is released and asked again, limited to the kept warehouses (or cancelled when
   * none has stock). Returns whether it moved any line.
   */
  private keepWithinShipments(order: Order, at: InputRef): boolean {
    // Where the order already ships from (released lines, and every warehouse a line shipped from).
    const fixed = new Set([
      ...order.lines.filter((l) => l.state === "released").map((l) => l.warehouse as string),
      ...order.lines.flatMap((l) => ownIds(l.shippedAt)),
    ]);
    const movable = order.lines.filter((l) => l.state === "allocated");
    const counts = new Map<string, number>();
    for (const l of movable) counts.set(l.warehouse as string, (counts.get(l.warehouse as string) ?? 0) + 1);
    const all = new Set([...fixed, ...counts.keys()]);
    if (all.size <= order.split.maxShipments) return false;
    const keep = new Set(fixed);
    for (const [w] of [...counts.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))) {
      if (keep.size >= order.split.maxShipments) break;
      keep.add(w);
    }
    let moved = false;
    for (const line of movable) {
      if (keep.has(line.warehouse as string)) continue;
      this.ask(line, this.request(order, line, "release", "max_shipments"));
      this.retry(order, line, line.rerouteCause ?? "warehouse", at);
      moved = true;
    }
    if (moved) this.touch(order, "max_shipments_applied", at);
    return moved;
  }

  private limitShipments(order: Order, allocated: OrderLine[], at: InputRef): void {
    const counts = new Map<string, number>();
    for (const l of allocated)
      counts.set(l.warehouse as string, (counts.get(l.warehouse as string) ?? 0) + 1);
    if (counts.size <= order.split.maxShipments) return;
    const keep = new Set(
      [...counts.entries()]
        .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
        .slice(0, order.split.maxShipments)
        .map(([w]) => w),
    );
    for (const line of allocated) {
      if (keep.has(line.warehouse as string)) continue;
      this.ask(line, this.request(order, line, "release", "max_shipments"));
      line.warehouse = null;
      this.notReserved(order, line, "max_shipments");
    }
    this.touch(order, "max_shipments_applied", at);
  }

  /**
   * A re-routed line found no other warehouse: it is cancelled for the cause of its re-route. Under ship
   * complete the order ships whole or not at all, so every other unshipped line is cancelled with it.
   */
  private rerouteFailed(order: Order, line: OrderLine, at: InputRef): void {
    const cause = line.rerouteCause ?? "warehouse";
    this.cancelLine(order, line, cause);
    if (order.split.mode !== "ship_complete") return;
    const others = order.lines
      .filter((l) => l !== line && live(l) && l.shippedQty === 0)
      .map((l) => l.lineId);
    if (others.length > 0) {
      this.markCancel(order, others, "ship_complete", at);
      this.touch(order, "ship_complete_cancelled", at, `line ${line.lineId} could not be re-routed`);
    }
  }

  /** A line the first allocation could not serve: a backorder where the order allows it, else rejected. */
  private notReserved(order: Order, line: OrderLine, why: string): void {
    line.refusal = why;
    line.state = order.split.backorder ? "backordered" : "rejected";
    this.count(line.state, why);
  }

  /** Summed per (name, label) within a batch: a batch reports each outcome once, whatever its size. */
  private count(name: OrderCount["name"], label: string, count = 1): void {
    const key = `${name}\u0000${label}`;
    const c = this.counts.get(key);
    if (c === undefined) this.counts.set(key, { name, label, count });
    else c.count += count;
  }

  private fulfil(
    order: Order,
    type: "fulfil" | "cancel",
    warehouse: string,
    lines: OrderLine[],
    at: InputRef,
  ): void {
    const item: FulfilmentItem = {
      type,
      orderKey: order.key,
      channel: order.channel,
      orderId: order.orderId,
      version: this.nextVersion(order),
      warehouse,
      shipTo: order.shipTo,
      shipByMs: order.shipByMs,
      priority: order.priority,
      atRisk: order.atRisk != null,
      lines: lines.map((l) => ({
        lineId: l.lineId,
        sku: l.sku,
        qty: l.qty - l.shippedQty,
        ...(type === "fulfil" && l.decision != null ? { routing: summaryOf(l.decision) } : {}),
        ...(l.kit === undefined
          ? {}
          : { components: l.kit.parts.map((p) => ({ sku: p.sku, qty: (l.qty - l.shippedQty) * p.per })) }),
      })),
      atMs: at.atMs,
    };
    this.effects.fulfilment.push(item);
  }

  /**
   * Every output about an order carries a version above every earlier output about it (invariant 4): a
   * fulfilment item takes the next version itself, the status item of the batch the final one.
   */
  private nextVersion(order: Order): number {
    order.version += 1;
    this.dirty.add(order.key);
    return order.version;
  }

  private touch(order: Order, event: string, at: InputRef, detail?: string): void {
    if (!this.dirty.has(order.key)) order.version += 1;
    this.dirty.add(order.key);
    const entry: HistoryEvent =
      detail === undefined ? { atMs: at.atMs, event } : { atMs: at.atMs, event, detail };
    order.history.push(entry);
    if (order.history.length > this.limits.historyCountMax)
      order.history.splice(0, order.history.length - this.limits.historyCountMax);
    this.statusEvents.set(order.key, entry);
  }

  private pendingCancelsOf(key: string): PendingCancel[] {
    if (this.pending.has(key)) return this.pending.get(key) ?? [];
    return this.view.getPendingCancels(key);
  }

  /** The status item of an order changed in this batch, at its final version. */
  private emitStatus(order: Order): void {
    order.status = statusOf(order);
    assertOrder(order);
    const e = this.statusEvents.get(order.key);
    this.effects.statuses.push(statusItem(order, e?.event ?? "changed", e?.atMs ?? 0, e?.detail));
  }

  /** What changed since the last call. One status item per changed order, carrying its final version. */
  takeChanges(): OrderChanges {
    const orders: Order[] = [];
    for (const key of this.dirty) {
      const order = this.cache.get(key) as Order;
      this.emitStatus(order);
      orders.push(order);
    }
    for (const c of this.cancellations.values()) {
      const key = c.order.key;
      this.effects.erp.push({
        kind: "cancellation",
        // One document per order, cause and batch: the order's version names the batch.
        id: `${documentId.cancellation(key, c.order.version)}:${c.cause}`,
        orderKey: key,
        channel: c.order.channel,
        orderId: c.order.orderId,
        cause: c.cause,
        lines: c.lines,
        atMs: this.statusEvents.get(key)?.atMs ?? 0,
      });
    }
    this.cancellations.clear();
    const atRisk: AtRiskOp[] = [];
    // Every order the batch loaded or created (a compacted one has no row: it was final).
    for (const [key, before] of this.riskBefore) {
      const order = this.compactedKeys.has(key) ? undefined : this.cache.get(key);
      const after = order === undefined ? null : atRiskRowOf(order);
      if (sameRow(before, after)) continue;
      if (before !== null) atRisk.push({ op: "delete", row: before });
      if (after !== null) atRisk.push({ op: "put", row: after });
    }
    // Releases of orders at risk leave first (each order's own items keep their order: versions increase).
    const risky = new Set(orders.filter((o) => atRiskRowOf(o) !== null).map((o) => o.key));
    if (risky.size > 0) {
      const f = this.effects.fulfilment;
      this.effects.fulfilment = [
        ...f.filter((i) => risky.has(i.orderKey)),
        ...f.filter((i) => !risky.has(i.orderKey)),
      ];
    }
    const changes: OrderChanges = {
      counts: [...this.counts.values()],
      orders,
      pendingCancels: [...this.pending.entries()],
      timers: this.timers,
      effects: this.effects,
      ordersDeleted: [...this.compactedKeys],
      tombstones: [...this.tombstones.entries()],
      retention: this.retentionOps,
      atRisk,
    };
    this.riskBefore.clear();
    this.compactedKeys.clear();
    this.tombstones.clear();
    this.retentionOps = [];
    this.retentionTaken.clear();
    this.dirty.clear();
    this.pending.clear();
    this.statusEvents.clear();
    this.cache.clear();
    this.timers = [];
    this.counts = new Map();
    this.batchStock.clear();
    this.batchLoad.clear();
    this.effects = { ledger: [], statuses: [], fulfilment: [], erp: [] };
    return changes;
  }
}

function summaryOf(d: LineDecision): RoutingSummary {
  const chosen = d.candidates.find((c) => c.warehouse === (d.taken ?? d.chosen));
  return {
    rules: d.rules,
    score: chosen?.score ?? d.score,
    reason: d.reason,
    distanceKm: chosen?.distanceKm ?? null,
    carrierId: chosen?.carrierId ?? null,
    shipments: d.shipments,
  };
}

export function statusOf(order: Order): OrderStatus {
  const lines = order.lines;
  if (lines.some((l) => l.state === "received")) return "pending";
  if (lines.every((l) => l.state === "cancelled")) return "cancelled";
  if (lines.every((l) => l.state === "rejected" || l.state === "cancelled")) return "rejected";
  const shipped = lines.filter((l) => l.shippedQty > 0);
  if (shipped.length > 0) return lines.some(live) ? "partially_shipped" : "shipped";
  const allocated = lines.filter((l) => l.state === "allocated" || l.state === "released");
  if (allocated.length === 0) return "backordered";
  return lines.every((l) => l.state === "allocated" || l.state === "released" || l.state === "cancelled")
    ? "allocated"
    : "partially_allocated";
}

function statusItem(order: Order, event: string, atMs: number, detail?: string): OrderStatusItem {
  return {
    orderKey: order.key,
    channel: order.channel,
    orderId: order.orderId,
    version: order.version,
    status: order.status,
    event,
    ...(detail === undefined ? {} : { detail }),
    ...(atRiskRowOf(order) === null ? {} : { atRisk: true as const }),
    lines: order.lines.map((l) => ({
      lineId: l.lineId,
      sku: l.sku,
      qty: l.qty,
      state: l.state,
      warehouse: l.warehouse,
      shippedQty: l.shippedQty,
      returnedQty: l.returnedQty,
      cancelCause: l.cancelCause,
      refusal: l.refusal,
    })),
    atMs,
  };
}

function assertOrder(order: Order): void {
  for (const l of order.lines) {
    assert(l.shippedQty >= 0 && l.shippedQty <= l.qty, "a line never ships more than ordered");
    assert(l.returnedQty >= 0 && l.returnedQty <= l.shippedQty, "a line never returns more than shipped");
    assert(l.state !== "released" || l.warehouse !== null, "a released line has a warehouse");
    if (l.kit !== undefined && (l.state === "allocated" || l.state === "released"))
      assert(
        l.kit.parts.every((p) => p.answer === "reserved"),
        "an allocated kit line has every component reserved",
      );
  }
}
