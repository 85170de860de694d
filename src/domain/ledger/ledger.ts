import { assert } from "../assert.ts";
import { own, withOwn } from "../own.ts";
import {
  assertCapacityDay,
  type CapacityDay,
  type CapacityRule,
  type CapacityShort,
  capacityDayOf,
  capacityFree,
} from "./capacity.ts";
import type { SkuHistory } from "./history.ts";
import {
  type Allocation,
  available,
  type CommandResult,
  dayMs,
  type EntryType,
  emptyPosition,
  type LedgerEntry,
  type LineRequest,
  type LineResult,
  type Position,
  type PositionField,
  positionFields,
  type RefusalCode,
  type SkuState,
  type StockCommand,
  type WaitingHead,
  type WaitingLine,
  type WarehouseLoad,
} from "./types.ts";
import { fillOrder, type WaitingKey, waitingKey, waitingKeyText } from "./waiting.ts";

/** Where an input came from: its stream sequence and time. Time is an input; the ledger never reads a clock. */
export type InputRef = { seq: number; atMs: number };

/** Synchronous reads of committed state (LMDB is memory-mapped: a read is a lookup, never an await). */
export interface LedgerView {
  getSku(sku: string): SkuState | undefined;
  getAllocation(sku: string, orderKey: string, lineId: string): Allocation | undefined;
  getLoad(warehouse: string): WarehouseLoad | undefined;
  /**
   * The committed open reservations (reserved > 0) of a SKU at one warehouse, newest first (reservedAtMs,
   * then orderKey, then lineId, descending), read lazily from the reservation index: a count reads only as
   * many as its shortfall takes, never the SKU's history. The stage's view has it (src/stages/ledger).
   */
  openReservations?(sku: string, warehouse: string): Iterable<Allocation>;
  /**
   * Every allocation of a SKU: for in-memory test doubles without a reservation index only (O(history));
   * used when `openReservations` is absent.
   */
  allocationsOf?(sku: string): Allocation[];
  /** What retention removed of the SKU's history, if anything (src/domain/ledger/history.ts). */
  historyOf?(sku: string): SkuHistory | undefined;
  /** The SKU's waiting list head (src/domain/ledger/waiting.ts); absent (or a view without it): none wait. */
  getWaitingHead?(sku: string): WaitingHead | undefined;
  /** The SKU's committed waiting lines, in fill order (at most ledger.waitingLinesPerSkuMax). */
  waitingOf?(sku: string): Iterable<WaitingLine>;
  /** The capacity this partition holds and uses at a warehouse on a UTC day (src/domain/ledger/capacity.ts). */
  getCapacity?(day: number, warehouse: string): CapacityDay | undefined;
}

export const emptyView: LedgerView = {
  getSku: () => undefined,
  getAllocation: () => undefined,
  getLoad: () => undefined,
  openReservations: () => [],
};

/**
 * A row of the reservation index: one per allocation with reserved > 0, ordered so that a SKU's open
 * reservations at a warehouse are a contiguous range, oldest to newest. Written with the allocation, in the
 * batch's transaction (`LedgerChanges.reservationsOpened/Closed`).
 */
export type ReservationKey = [
  sku: string,
  warehouse: string,
  reservedAtMs: number,
  orderKey: string,
  lineId: string,
];

export function reservationKey(a: Allocation): ReservationKey {
  return [a.sku, a.warehouse, a.reservedAtMs, a.orderKey, a.lineId];
}

export type LedgerChanges = {
  skus: SkuState[];
  entries: LedgerEntry[];
  allocations: Allocation[];
  allocationsDeleted: Array<[string, string, string]>;
  /** Reservation index rows to write (value: the units reserved) and to delete, for the changed allocations. */
  reservationsOpened: Array<{ key: ReservationKey; reserved: number }>;
  reservationsClosed: ReservationKey[];
  results: LineResult[];
  loads: WarehouseLoad[];
  /** Waiting rows to write and to delete, and the heads that changed (null: the SKU's list is empty now). */
  waitingPut: WaitingLine[];
  waitingDeleted: WaitingKey[];
  waitingHeads: Array<[string, WaitingHead | null]>;
  /** For metrics: how long each line filled in this batch waited (ms), and lines refused for a full list. */
  waitFilledMs: number[];
  waitRefusedFull: number;
  /** Lines added to waiting lists less lines taken out, in this batch. */
  waitingDelta: number;
  /** Capacity rows this batch changed (grants, reservations, releases), as they end. */
  capacity: CapacityDay[];
  /** Warehouses a candidate was refused at for want of held capacity, with the most units one line wanted. */
  capacityShort: CapacityShort[];
};

/** Bounds the ledger keeps on what input may do; the stage passes the configured values. */
export type LedgerLimits = {
  /** Units one field of one position may hold (ledger.positionUnitsMax): a change past it is refused. */
  positionUnitsMax: number;
  /** Lines one SKU's waiting list holds (ledger.waitingLinesPerSkuMax): one more is backordered without waiting. */
  waitingLinesPerSkuMax: number;
};

/** The defaults of ledger.positionUnitsMax and ledger.waitingLinesPerSkuMax (src/config/schema.ts says why). */
export const ledgerLimitsDefault: Readonly<LedgerLimits> = Object.freeze({
  positionUnitsMax: 1_000_000_000_000,
  waitingLinesPerSkuMax: 1000,
});

/**
 * A warehouse's open reservations are summed over every SKU of a partition (WarehouseLoad): a reservation
 * that would carry the sum past the largest exact integer is not made there, so the sum stays exact and its
 * assertion can only catch a bug.
 */
const loadUnitsMax = Number.MAX_SAFE_INTEGER;

const allocationKey = (sku: string, orderKey: string, lineId: string) =>
  `${sku}\u0000${orderKey}\u0000${lineId}`;

/**
 * One partition's ledger: the single writer of its SKUs' positions. Synchronous; it never awaits. It reads
 * committed state through a view and keeps what it changed until `takeChanges()` hands it to the store,
 * which commits it in the batch's one transaction.
 */
export class Ledger {
  private readonly skus = new Map<string, SkuState>();
  private readonly allocations = new Map<string, Allocation | null>();
  private readonly dirtySkus = new Set<string>();
  private readonly dirtyAllocations = new Set<string>();
  /** The committed allocation behind each one changed in this batch (null: none): the index rows it had. */
  private readonly baseAllocations = new Map<string, Allocation | null>();
  private entries: LedgerEntry[] = [];
  /** The cause recorded on the entries of the command being applied. */
  private cause = "";
  private results: LineResult[] = [];
  private readonly loads = new Map<string, WarehouseLoad>();
  private readonly dirtyLoads = new Set<string>();
  /** Waiting rows this batch wrote (a line) or deleted (null), by key text, over the committed ones. */
  private readonly waitingRows = new Map<string, { key: WaitingKey; line: WaitingLine | null }>();
  private readonly dirtyWaitingRows = new Set<string>();
  /** Waiting list heads this batch changed (null: the list is empty), over the committed ones. */
  private readonly heads = new Map<string, WaitingHead | null>();
  private readonly dirtyHeads = new Set<string>();
  /** SKUs whose available rose at some warehouse during the command being applied: waiting lines may fit. */
  private readonly raised = new Set<string>();
  private waitFilledMs: number[] = [];
  private waitRefusedFull = 0;
  private waitingDelta = 0;
  /** Capacity rows this batch changed, by `day\u0000warehouse`, over the committed ones. */
  private readonly capacityRows = new Map<string, CapacityDay>();
  private readonly dirtyCapacity = new Set<string>();
  private readonly capacityShort = new Map<string, CapacityShort>();

  private readonly limits: Readonly<LedgerLimits>;

  /**
   * Limits not given take their defaults (ledgerLimitsDefault). `capacity`: which warehouses' daily capacity
   * this ledger enforces (null: none, every warehouse unlimited; a ledger built without a pool to claim from).
   */
  constructor(
    private readonly view: LedgerView = emptyView,
    given: Readonly<Partial<LedgerLimits>> = ledgerLimitsDefault,
    private readonly capacity: CapacityRule | null = null,
  ) {
    const limits = { ...ledgerLimitsDefault, ...given };
    this.limits = limits;
    assert(
      Number.isSafeInteger(limits.positionUnitsMax) && limits.positionUnitsMax >= 1,
      "positionUnitsMax is a whole number ≥ 1",
    );
    assert(
      Number.isSafeInteger(limits.waitingLinesPerSkuMax) && limits.waitingLinesPerSkuMax >= 0,
      "waitingLinesPerSkuMax is a whole number ≥ 0",
    );
  }

  get(sku: string): SkuState | undefined {
    const cached = this.skus.get(sku);
    if (cached !== undefined) return cached;
    const stored = this.view.getSku(sku);
    if (stored === undefined) return undefined;
    assertSku(stored);
    this.skus.set(sku, stored);
    return stored;
  }

  /** Every SKU this ledger has touched or loaded (tests and the consistency check walk them). */
  cached(): IterableIterator<SkuState> {
    return this.skus.values();
  }

  allocation(sku: string, orderKey: string, lineId: string): Allocation | undefined {
    const key = allocationKey(sku, orderKey, lineId);
    if (this.allocations.has(key)) return this.allocations.get(key) ?? undefined;
    return this.view.getAllocation(sku, orderKey, lineId);
  }

  // ---- stock commands ------------------------------------------------------------------------------

  /** Applies one stock command; stock it makes available goes to the SKU's waiting lines first. */
  applyStock(sku: string, c: StockCommand, input: InputRef): CommandResult {
    const result = this.stockCommand(sku, c, input);
    this.fillRaised(input);
    return result;
  }

  private stockCommand(sku: string, c: StockCommand, input: InputRef): CommandResult {
    this.cause = c.type;
    const p = this.position(sku, c.warehouse);
    const free = available(p);
    switch (c.type) {
      case "received":
        return this.change(sku, c.warehouse, "received", { onHand: c.qty }, c.ref, input);
      case "adjust":
        // Stock can only be taken away down to what is committed: never below reserved + held back.
        if (c.qty < 0 && free + c.qty < 0) return this.refuse(sku, "adjust_below_committed");
        return this.change(sku, c.warehouse, "adjusted", { onHand: c.qty }, c.ref, input);
      case "override": {
        // Absolute available as of now: reservations in flight are kept, on hand moves to match.
        const onHand = c.available + p.reserved + p.damaged + p.qualityControl + p.safetyStock;
        if (c.available < 0) return this.refuse(sku, "override_below_zero");
        // An override to what is already available changes nothing: no entry, no version.
        return this.change(sku, c.warehouse, "override", { onHand: onHand - p.onHand }, c.ref, input, true);
      }
      case "counted":
        return this.count(sku, c.warehouse, c.onHand, c.ref, input);
      case "hold": {
        if (c.qty > free) return this.refuse(sku, "hold_exceeds_available");
        const field: PositionField = c.bucket === "damaged" ? "damaged" : "qualityControl";
        return this.change(sku, c.warehouse, "held", { [field]: c.qty }, c.ref, input);
      }
      case "unhold": {
        const field: PositionField = c.bucket === "damaged" ? "damaged" : "qualityControl";
        if (c.qty > p[field]) return this.refuse(sku, "unhold_exceeds_held");
        if (c.to === "scrap") {
          return this.change(sku, c.warehouse, "scrapped", { [field]: -c.qty, onHand: -c.qty }, c.ref, input);
        }
        return this.change(sku, c.warehouse, "unheld", { [field]: -c.qty }, c.ref, input);
      }
      case "safety_stock": {
        if (c.qty - p.safetyStock > free) return this.refuse(sku, "safety_stock_exceeds_available");
        return this.change(
          sku,
          c.warehouse,
          "safety_stock",
          { safetyStock: c.qty - p.safetyStock },
          c.ref,
          input,
          true, // setting the level it already has changes nothing
        );
      }
    }
  }

  /**
   * A cycle count is the truth about on hand. When it finds less than is committed, the shortfall is taken
   * from safety stock first, then from reservations (the newest first; each one is answered `lost`, so
   * the order stage re-routes it), then from held-back stock. Never negative available, never oversold.
   */
  private count(
    sku: string,
    warehouse: string,
    onHand: number,
    ref: string | null,
    input: InputRef,
  ): CommandResult {
    const p = this.position(sku, warehouse);
    // Refused before the shortfall steps change anything (a count is at most ledger.quantityMax, which the
    // config keeps ≤ positionUnitsMax, so only a ledger built with other limits gets here).
    if (onHand > this.limits.positionUnitsMax && onHand > p.onHand)
      return this.refuse(sku, "position_units_over_limit");
    let shortfall = p.reserved + p.damaged + p.qualityControl + p.safetyStock - onHand;
    if (shortfall > 0 && p.safetyStock > 0) {
      const take = Math.min(shortfall, p.safetyStock);
      this.change(sku, warehouse, "safety_stock", { safetyStock: -take }, ref, input);
      shortfall -= take;
    }
    if (shortfall > 0) {
      // Only the newest reservations that cover the shortfall are read (the index is ordered by age): the
      // work is bounded by what is lost, however many lines the SKU ever had.
      const lost: Allocation[] = [];
      let covered = 0;
      for (const a of this.openReservations(sku, warehouse)) {
        lost.push(a);
        covered += a.reserved;
        if (covered >= shortfall) break;
      }
      for (const a of lost) {
        if (shortfall <= 0) break;
        const qty = a.reserved;
        this.cause = "count_shortfall";
        this.giveBackCapacity(a, qty, input);
        this.change(sku, warehouse, "released", { reserved: -qty }, `${a.orderKey}/${a.lineId}`, input);
        this.cause = "counted";
        this.putAllocation({ ...a, reserved: 0 }, input);
        this.results.push({
          kind: "lost",
          ref: { orderKey: a.orderKey, lineId: a.lineId },
          sku,
          attempt: a.attempt,
          warehouse,
          qty,
        });
        shortfall -= qty;
      }
    }
    for (const field of ["qualityControl", "damaged"] as const) {
      const current = this.position(sku, warehouse)[field];
      if (shortfall > 0 && current > 0) {
        const take = Math.min(shortfall, current);
        this.change(sku, warehouse, "counted", { [field]: -take }, ref, input);
        shortfall -= take;
      }
    }
    const now = this.position(sku, warehouse);
    return this.change(sku, warehouse, "counted", { onHand: onHand - now.onHand }, ref, input, true);
  }

  // ---- order-line requests -------------------------------------------------------------------------

  /**
   * Applies one request of the order stage. Returns null, or why a return could not be applied (the one
   * request that adds stock: past ledger.positionUnitsMax it changes nothing, like a stale request, and the
   * stage can say so).
   */
  applyLine(r: LineRequest, input: InputRef): RefusalCode | null {
    const refusal = this.lineRequest(r, input);
    this.fillRaised(input);
    return refusal;
  }

  private lineRequest(r: LineRequest, input: InputRef): RefusalCode | null {
    this.cause =
      r.kind === "reserve"
        ? "order"
        : r.kind === "ship"
          ? "shipment"
          : r.kind === "return"
            ? `return:${r.disposition}`
            : (r.cause ?? (r.kind === "reject" ? "reroute:warehouse" : "release"));
    const existing = this.allocation(r.sku, r.ref.orderKey, r.ref.lineId);
    const refText = `${r.ref.orderKey}/${r.ref.lineId}`;
    if (r.kind === "reserve") {
      if (existing !== undefined && existing.attempt >= r.attempt) {
        // A duplicate of a request already applied (or an older attempt): answer again, change nothing.
        if (existing.attempt === r.attempt && existing.reserved > 0) {
          this.results.push({
            ...baseResult(r),
            kind: "reserved",
            warehouse: existing.warehouse,
            qty: existing.reserved,
          });
        } else if (existing.attempt === r.attempt && existing.refusal !== "") {
          const best = Math.max(0, ...r.candidates.map((w) => available(this.position(r.sku, w))));
          this.results.push({ ...baseResult(r), kind: "refused", code: existing.refusal, available: best });
        }
        return null;
      }
      // A new attempt replaces the line's place in the waiting list (it waits again only if refused again).
      if (existing?.waiting !== undefined) this.unwait(existing, input);
      if (existing !== undefined && existing.reserved > 0) {
        this.cause = "reroute"; // a new attempt supersedes the old reservation
        this.releaseAllocation(existing, refText, input);
        this.cause = "order";
      }
      this.reserve(r, refText, input, existing);
      return null;
    }
    // A return for a line retention removed (its return window passed) cannot find where its units went: it
    // is refused, so the stage dead-letters it and an operator can receive the units by hand.
    if (
      existing === undefined &&
      r.kind === "return" &&
      (this.view.historyOf?.(r.sku)?.allocationsRemoved ?? 0) > 0
    )
      return "line_history_compacted";
    if (existing === undefined || existing.attempt !== r.attempt) return null; // stale or unknown: nothing to do
    switch (r.kind) {
      case "release":
        // A cancelled backorder leaves the waiting list; a filled one gives its units back.
        if (existing.waiting !== undefined) this.unwait(existing, input);
        else this.releaseAllocation(existing, refText, input);
        return null;
      case "ship": {
        const qty = Math.min(r.qty, existing.reserved);
        if (qty <= 0 || existing.eventIds.includes(r.eventId)) return null;
        this.change(r.sku, existing.warehouse, "shipped", { onHand: -qty, reserved: -qty }, refText, input);
        this.putAllocation(
          {
            ...existing,
            reserved: existing.reserved - qty,
            shipped: existing.shipped + qty,
            eventIds: [...existing.eventIds, r.eventId],
          },
          input,
        );
        return null;
      }
      case "reject": {
        const qty = existing.reserved;
        if (qty === 0) return null; // a repeat: nothing left to release, nothing changes
        this.giveBackCapacity(existing, qty, input);
        this.change(r.sku, existing.warehouse, "released", { reserved: -qty }, refText, input);
        // The warehouse says the stock is not there: correct its on hand by what it could not pick.
        if (r.stockMissing)
          this.change(r.sku, existing.warehouse, "missing", { onHand: -qty }, refText, input);
        this.putAllocation({ ...existing, reserved: 0 }, input);
        return null;
      }
      case "return": {
        const qty = Math.min(r.qty, existing.shipped - existing.returned);
        if (qty <= 0 || existing.eventIds.includes(r.eventId)) return null;
        const delta: Partial<Position> = { onHand: qty };
        if (r.disposition === "damaged") delta.damaged = qty;
        if (r.disposition === "quality_control") delta.qualityControl = qty;
        const applied = this.change(r.sku, r.warehouse, "returned", delta, refText, input);
        if (!applied.ok) return applied.code;
        this.putAllocation(
          {
            ...existing,
            returned: existing.returned + qty,
            eventIds: [...existing.eventIds, r.eventId],
          },
          input,
        );
        return null;
      }
    }
  }

  /** A new attempt keeps what the line shipped and returned before (a re-route of a partly shipped line). */
  private reserve(
    r: Extract<LineRequest, { kind: "reserve" }>,
    refText: string,
    input: InputRef,
    previous: Allocation | undefined,
  ): void {
    const history = {
      shipped: previous?.shipped ?? 0,
      returned: previous?.returned ?? 0,
      eventIds: previous?.eventIds ?? [],
    };
    let best = 0;
    let capacityFull = false;
    for (const [i, warehouse] of r.candidates.entries()) {
      const free = available(this.position(r.sku, warehouse));
      const fit = this.fits(r.sku, warehouse, r.qty, r.keep?.[i] ?? 0, input);
      if (fit === "yes") {
        this.change(r.sku, warehouse, "reserved", { reserved: r.qty }, refText, input);
        const capacityDay = this.useCapacity(warehouse, r.qty, input);
        this.putAllocation(
          {
            sku: r.sku,
            orderKey: r.ref.orderKey,
            lineId: r.ref.lineId,
            attempt: r.attempt,
            warehouse,
            reserved: r.qty,
            ...history,
            reservedAtMs: input.atMs,
            refusal: "",
            ...(capacityDay === undefined ? {} : { capacityDay }),
          },
          input,
        );
        this.results.push({ ...baseResult(r), kind: "reserved", warehouse, qty: r.qty });
        return;
      }
      // The stock is there, the warehouse's capacity held here is not: the next candidate is tried.
      if (fit === "capacity") capacityFull = true;
      best = Math.max(best, free);
    }
    // Record the refused attempt, so a duplicate request is answered the same way without a reservation.
    // A line that some candidate had the stock for, but no candidate the capacity: capacity_full (it does not
    // wait in the waiting list, which stock arriving fills, not capacity).
    let code: RefusalCode =
      r.candidates.length === 0
        ? "no_candidate_warehouse"
        : capacityFull
          ? "capacity_full"
          : "insufficient_available";
    let waiting: Allocation["waiting"];
    if (code === "insufficient_available" && r.wait !== undefined) {
      waiting = this.addWaiting(r, r.wait.priority, input);
      if (waiting === undefined) {
        code = "waiting_list_full";
        this.waitRefusedFull++;
      }
    }
    this.putAllocation(
      {
        sku: r.sku,
        orderKey: r.ref.orderKey,
        lineId: r.ref.lineId,
        attempt: r.attempt,
        warehouse: "",
        reserved: 0,
        ...history,
        reservedAtMs: input.atMs,
        refusal: code,
        ...(waiting === undefined ? {} : { waiting }),
      },
      input,
    );
    this.results.push({ ...baseResult(r), kind: "refused", code, available: best });
  }

  /**
   * Whether `qty` can be reserved at `warehouse` leaving `keep` available (and the load sum exact), and within
   * the capacity this partition holds there for the input's day: "yes", "stock" (not the stock) or
   * "capacity" (the stock, not the capacity: noted, so the stage claims more at once).
   */
  private fits(
    sku: string,
    warehouse: string,
    qty: number,
    keep: number,
    input: InputRef,
  ): "yes" | "stock" | "capacity" {
    const free = available(this.position(sku, warehouse));
    if (!(free - qty >= keep && this.load(warehouse).reserved <= loadUnitsMax - qty)) return "stock";
    if (this.capacity === null || !this.capacity.limited(warehouse)) return "yes";
    const day = capacityDayOf(input.atMs);
    if (capacityFree(this.capacityOf(day, warehouse)) >= qty) return "yes";
    const key = capacityRowKey(day, warehouse);
    const short = this.capacityShort.get(key);
    const units = Math.max(qty, short?.units ?? 0);
    this.capacityShort.set(key, { warehouse, day, units, lines: (short?.lines ?? 0) + 1 });
    return "capacity";
  }

  // ---- capacity (src/domain/ledger/capacity.ts) ----------------------------------------------------

  /** This partition's capacity row for a warehouse and day, as this batch leaves it. */
  capacityOf(day: number, warehouse: string): CapacityDay {
    const key = capacityRowKey(day, warehouse);
    const mine = this.capacityRows.get(key);
    if (mine !== undefined) return mine;
    const stored = this.view.getCapacity?.(day, warehouse);
    if (stored !== undefined) assertCapacityDay(stored);
    const row = stored ?? { day, warehouse, held: 0, used: 0 };
    this.capacityRows.set(key, row); // read once per batch; written only when marked dirty
    return row;
  }

  private setCapacity(next: CapacityDay): void {
    assertCapacityDay(next);
    const key = capacityRowKey(next.day, next.warehouse);
    this.capacityRows.set(key, next);
    this.dirtyCapacity.add(key);
  }

  /**
   * A chunk the stage claimed from the shared pool (KV) for this warehouse and day: held from now on, written
   * with the batch. Called before the batch's commands, so they may use it.
   */
  grantCapacity(warehouse: string, day: number, units: number): void {
    assert(Number.isSafeInteger(units) && units > 0, "a capacity grant is a whole number of units > 0");
    const c = this.capacityOf(day, warehouse);
    this.setCapacity({ ...c, held: c.held + units });
  }

  /** Counts a reservation against the held capacity of its day; returns that day (undefined: not limited). */
  private useCapacity(warehouse: string, qty: number, input: InputRef): number | undefined {
    if (this.capacity === null || !this.capacity.limited(warehouse)) return undefined;
    const day = capacityDayOf(input.atMs);
    const c = this.capacityOf(day, warehouse);
    this.setCapacity({ ...c, used: c.used + qty }); // asserts used ≤ held: fits() checked it
    return day;
  }

  /**
   * Units of a reservation leaving it (release, warehouse rejection, count shortfall) go back to the held
   * capacity of the day they were counted on, if that is the input's day; a reservation of an earlier day
   * counted on that day, which is over. A shipment gives nothing back: shipped units count for their day.
   */
  private giveBackCapacity(a: Allocation, qty: number, input: InputRef): void {
    if (a.capacityDay === undefined || a.capacityDay !== capacityDayOf(input.atMs)) return;
    const c = this.capacityOf(a.capacityDay, a.warehouse);
    assert(c.used >= qty, "capacity given back was counted");
    this.setCapacity({ ...c, used: c.used - qty });
  }

  // ---- waiting lines (src/domain/ledger/waiting.ts) ------------------------------------------------

  private head(sku: string): WaitingHead | null {
    if (this.heads.has(sku)) return this.heads.get(sku) ?? null;
    return this.view.getWaitingHead?.(sku) ?? null;
  }

  private setHead(sku: string, head: WaitingHead | null): void {
    assert(head === null || (head.count > 0 && head.count <= head.arrivalNext), "a head counts its lines");
    this.heads.set(sku, head);
    this.dirtyHeads.add(sku);
  }

  private setRow(key: WaitingKey, line: WaitingLine | null): void {
    const text = waitingKeyText(key);
    this.waitingRows.set(text, { key, line });
    this.dirtyWaitingRows.add(text);
  }

  /** Puts a refused line in its SKU's waiting list: its place, or undefined when the list is full. */
  private addWaiting(
    r: Extract<LineRequest, { kind: "reserve" }>,
    priority: number,
    input: InputRef,
  ): Allocation["waiting"] {
    const head = this.head(r.sku) ?? { sku: r.sku, count: 0, arrivalNext: 0 };
    if (head.count >= this.limits.waitingLinesPerSkuMax) return undefined;
    const line: WaitingLine = {
      sku: r.sku,
      orderKey: r.ref.orderKey,
      lineId: r.ref.lineId,
      attempt: r.attempt,
      qty: r.qty,
      candidates: r.candidates,
      ...(r.keep === undefined ? {} : { keep: r.keep }),
      priority,
      arrival: head.arrivalNext,
      sinceMs: input.atMs,
    };
    this.setRow(waitingKey(line), line);
    this.setHead(r.sku, { sku: r.sku, count: head.count + 1, arrivalNext: head.arrivalNext + 1 });
    this.waitingDelta++;
    return { priority, arrival: line.arrival };
  }

  /** Takes a line out of the waiting list (its row and its allocation's mark). */
  private removeWaiting(a: Allocation): void {
    const w = a.waiting;
    assert(w !== undefined, "only a waiting line leaves the waiting list");
    const head = this.head(a.sku);
    assert(head !== null && head.count > 0, "a waiting line is counted in its SKU's head");
    this.setRow(waitingKey({ sku: a.sku, ...w }), null);
    // An empty list forgets its head: arrival numbers only order lines that wait together.
    this.setHead(a.sku, head.count === 1 ? null : { ...head, count: head.count - 1 });
    this.waitingDelta--;
  }

  /** A waiting line cancelled or asked again: out of the list, its refused attempt kept as it was. */
  private unwait(a: Allocation, input: InputRef): void {
    this.removeWaiting(a);
    const { waiting: _, ...rest } = a;
    this.putAllocation(rest, input);
  }

  /** The SKU's waiting lines as this batch leaves them, in fill order (bounded by waitingLinesPerSkuMax). */
  private waitingList(sku: string): WaitingLine[] {
    const out: WaitingLine[] = [];
    for (const w of this.view.waitingOf?.(sku) ?? []) {
      if (!this.waitingRows.has(waitingKeyText(waitingKey(w)))) out.push(w);
    }
    for (const { key, line } of this.waitingRows.values()) {
      if (line !== null && key[0] === sku) out.push(line);
    }
    return out.sort(fillOrder);
  }

  /** After each command: the SKUs it made stock available for fill their waiting lines, in fill order. */
  private fillRaised(input: InputRef): void {
    if (this.raised.size === 0) return;
    const skus = [...this.raised];
    this.raised.clear();
    for (const sku of skus) if (this.head(sku) !== null) this.fill(sku, input);
    // Fills only reserve (never raise available): nothing is left to fill.
    this.raised.clear();
  }

  private fill(sku: string, input: InputRef): void {
    const cause = this.cause;
    this.cause = "backorder";
    for (const w of this.waitingList(sku)) {
      if (!this.anyAvailable(sku)) break;
      const i = w.candidates.findIndex((c, k) => this.fits(sku, c, w.qty, w.keep?.[k] ?? 0, input) === "yes");
      if (i < 0) continue; // too large for now: smaller lines behind it may still fit
      const warehouse = w.candidates[i] as string;
      const a = this.allocation(sku, w.orderKey, w.lineId);
      assert(a !== undefined && a.attempt === w.attempt, "a waiting line has its refused attempt");
      assert(a.waiting?.arrival === w.arrival && a.reserved === 0, "a waiting line is marked and unreserved");
      this.removeWaiting(a);
      const refText = `${w.orderKey}/${w.lineId}`;
      const done = this.change(sku, warehouse, "reserved", { reserved: w.qty }, refText, input);
      assert(done.ok, "a fill that fits is reserved");
      const capacityDay = this.useCapacity(warehouse, w.qty, input);
      const { waiting: _, capacityDay: __, ...rest } = a;
      this.putAllocation(
        {
          ...rest,
          warehouse,
          reserved: w.qty,
          reservedAtMs: input.atMs,
          refusal: "",
          ...(capacityDay === undefined ? {} : { capacityDay }),
        },
        input,
      );
      const ref = { orderKey: w.orderKey, lineId: w.lineId };
      const answer = { ref, sku, attempt: w.attempt, kind: "reserved", warehouse, qty: w.qty, filled: true };
      this.results.push(answer as LineResult);
      this.waitFilledMs.push(Math.max(0, input.atMs - w.sinceMs));
    }
    this.cause = cause;
  }

  private anyAvailable(sku: string): boolean {
    const state = this.get(sku);
    if (state === undefined) return false;
    for (const p of Object.values(state.positions)) if (available(p) > 0) return true;
    return false;
  }

  private releaseAllocation(a: Allocation, refText: string, input: InputRef): void {
    // Nothing reserved: a repeat (a copy past the duplicate window), which must change nothing, not even the
    // line's time (retention counts from it, and a replay must reach the same state whatever the copies).
    if (a.reserved === 0) return;
    this.giveBackCapacity(a, a.reserved, input);
    this.change(a.sku, a.warehouse, "released", { reserved: -a.reserved }, refText, input);
    this.putAllocation({ ...a, reserved: 0 }, input);
  }

  // ---- state changes -------------------------------------------------------------------------------

  private position(sku: string, warehouse: string): Position {
    return own(this.get(sku)?.positions, warehouse) ?? emptyPosition();
  }

  private refuse(sku: string, code: RefusalCode): CommandResult {
    return { ok: false, sku, code };
  }

  private change(
    sku: string,
    warehouse: string,
    type: EntryType,
    delta: Partial<Position>,
    ref: string | null,
    input: InputRef,
    allowNoop = false,
  ): CommandResult {
    const state = this.get(sku) ?? { sku, version: 0, positions: {} };
    const before = own(state.positions, warehouse) ?? emptyPosition();
    const next: Position = { ...before };
    let moved = false;
    for (const field of positionFields) {
      const d = delta[field];
      if (d === undefined || d === 0) continue;
      next[field] += d;
      moved = true;
    }
    if (!moved && allowNoop) return { ok: true, sku, version: state.version };
    // Input may add stock without end (receipts, returns, counts, overrides): past the ceiling it is refused,
    // so every sum the ledger and ATS take stays an exact integer and no assertion below can be reached by it.
    if (positionFields.some((f) => next[f] > this.limits.positionUnitsMax && next[f] > before[f]))
      return this.refuse(sku, "position_units_over_limit");
    assert(moved, "a ledger entry moves at least one field");
    assertPosition(next);
    const version = state.version + 1;
    if (available(next) > available(before)) this.raised.add(sku);
    const updated: SkuState = { ...state, version, positions: withOwn(state.positions, warehouse, next) };
    this.skus.set(sku, updated);
    this.dirtySkus.add(sku);
    if (next.reserved !== before.reserved || type === "shipped")
      this.countLoad(
        warehouse,
        next.reserved - before.reserved,
        type === "shipped" ? -(delta.onHand ?? 0) : 0,
        input,
      );
    this.entries.push({
      sku,
      version,
      warehouse,
      type,
      delta: compact(delta),
      ref,
      cause: this.cause,
      seq: input.seq,
      atMs: input.atMs,
    });
    return { ok: true, sku, version };
  }

  /** Capacity use: reservations open and units shipped today (a shipment moves units from one to the other). */
  private countLoad(warehouse: string, reservedDelta: number, shipped: number, input: InputRef): void {
    const l = this.load(warehouse);
    const day = Math.floor(input.atMs / dayMs);
    const next: WarehouseLoad = {
      warehouse,
      reserved: l.reserved + reservedDelta,
      shippedDay: Math.max(day, l.shippedDay),
      shippedUnits: (day > l.shippedDay ? 0 : l.shippedUnits) + (day >= l.shippedDay ? shipped : 0),
    };
    assert(next.reserved >= 0, "a warehouse's open reservations are never negative");
    this.loads.set(warehouse, next);
    this.dirtyLoads.add(warehouse);
  }

  private load(warehouse: string): WarehouseLoad {
    return (
      this.loads.get(warehouse) ??
      this.view.getLoad(warehouse) ?? { warehouse, reserved: 0, shippedDay: 0, shippedUnits: 0 }
    );
  }

  /** Every change of a line goes through here: its time is the input's (retention counts from it). */
  private putAllocation(next: Allocation, input: InputRef): void {
    const a: Allocation = { ...next, changedAtMs: input.atMs };
    assert(a.reserved >= 0 && a.shipped >= 0 && a.returned >= 0, "allocation quantities are not negative");
    assert(a.returned <= a.shipped, "never more returned than shipped");
    assert(a.reserved === 0 || a.warehouse !== "", "a reservation is at a warehouse");
    const key = allocationKey(a.sku, a.orderKey, a.lineId);
    if (!this.baseAllocations.has(key))
      this.baseAllocations.set(key, this.view.getAllocation(a.sku, a.orderKey, a.lineId) ?? null);
    this.allocations.set(key, a);
    this.dirtyAllocations.add(key);
  }

  /**
   * A SKU's open reservations at a warehouse, newest first, as this batch leaves them: the committed ones
   * (from the view's index, lazily) merged with the ones this batch changed, which replace their committed
   * versions. The batch's own are at most its lines; the committed ones are read only as far as consumed.
   */
  private *openReservations(sku: string, warehouse: string): Generator<Allocation> {
    const mine: Allocation[] = [];
    for (const a of this.allocations.values()) {
      if (a !== null && a.sku === sku && a.warehouse === warehouse && a.reserved > 0) mine.push(a);
    }
    mine.sort(newestFirst);
    const committed = this.committedReservations(sku, warehouse)[Symbol.iterator]();
    try {
      let next = this.nextUnchanged(committed);
      let i = 0;
      while (next !== undefined || i < mine.length) {
        const own = mine[i];
        if (own !== undefined && (next === undefined || newestFirst(own, next) <= 0)) {
          yield own;
          i++;
        } else if (next !== undefined) {
          yield next;
          next = this.nextUnchanged(committed);
        }
      }
    } finally {
      committed.return?.(); // a count that stopped early closes the index cursor
    }
  }

  /** The next committed reservation this batch has not changed (a changed one is in the batch's own list). */
  private nextUnchanged(it: Iterator<Allocation>): Allocation | undefined {
    for (let r = it.next(); r.done !== true; r = it.next()) {
      if (!this.allocations.has(allocationKey(r.value.sku, r.value.orderKey, r.value.lineId))) return r.value;
    }
    return undefined;
  }

  private committedReservations(sku: string, warehouse: string): Iterable<Allocation> {
    if (this.view.openReservations !== undefined) return this.view.openReservations(sku, warehouse);
    // A view without an index (test doubles): every allocation of the SKU, filtered and sorted.
    return (this.view.allocationsOf?.(sku) ?? [])
      .filter((a) => a.warehouse === warehouse && a.reserved > 0)
      .sort(newestFirst);
  }

  /** The index rows the batch's allocation changes add and remove (compared with their committed versions). */
  private reservationChanges(): Pick<LedgerChanges, "reservationsOpened" | "reservationsClosed"> {
    const reservationsOpened: LedgerChanges["reservationsOpened"] = [];
    const reservationsClosed: ReservationKey[] = [];
    for (const key of this.dirtyAllocations) {
      const before = this.baseAllocations.get(key) ?? null;
      const after = this.allocations.get(key) ?? null;
      const was = before !== null && before.reserved > 0 ? reservationKey(before) : null;
      const is = after !== null && after.reserved > 0 ? reservationKey(after) : null;
      const same = was !== null && is !== null && sameKey(was, is);
      if (was !== null && !same) reservationsClosed.push(was);
      if (is !== null && after !== null && !(same && before?.reserved === after.reserved))
        reservationsOpened.push({ key: is, reserved: after.reserved });
    }
    return { reservationsOpened, reservationsClosed };
  }

  /** What changed since the last call: what the store writes in this batch's transaction. */
  takeChanges(): LedgerChanges {
    const skus: SkuState[] = [];
    for (const sku of this.dirtySkus) skus.push(this.skus.get(sku) as SkuState);
    const allocations: Allocation[] = [];
    const allocationsDeleted: Array<[string, string, string]> = [];
    for (const key of this.dirtyAllocations) {
      const a = this.allocations.get(key);
      if (a === null || a === undefined) {
        const [sku, orderKey, lineId] = key.split("\u0000") as [string, string, string];
        allocationsDeleted.push([sku, orderKey, lineId]);
      } else allocations.push(a);
    }
    const waitingPut: WaitingLine[] = [];
    const waitingDeleted: WaitingKey[] = [];
    for (const text of this.dirtyWaitingRows) {
      const row = this.waitingRows.get(text) as { key: WaitingKey; line: WaitingLine | null };
      if (row.line === null) waitingDeleted.push(row.key);
      else waitingPut.push(row.line);
    }
    const changes: LedgerChanges = {
      skus,
      entries: this.entries,
      allocations,
      allocationsDeleted,
      ...this.reservationChanges(),
      results: this.results,
      loads: [...this.dirtyLoads].map((w) => this.loads.get(w) as WarehouseLoad),
      waitingPut,
      waitingDeleted,
      waitingHeads: [...this.dirtyHeads].map((sku) => [sku, this.heads.get(sku) ?? null]),
      waitFilledMs: this.waitFilledMs,
      waitRefusedFull: this.waitRefusedFull,
      waitingDelta: this.waitingDelta,
      capacity: [...this.dirtyCapacity].map((k) => this.capacityRows.get(k) as CapacityDay),
      capacityShort: [...this.capacityShort.values()],
    };
    this.dirtyCapacity.clear();
    this.capacityShort.clear();
    this.waitingDelta = 0;
    this.dirtyWaitingRows.clear();
    this.dirtyHeads.clear();
    this.waitFilledMs = [];
    this.waitRefusedFull = 0;
    this.dirtyLoads.clear();
    this.dirtySkus.clear();
    this.dirtyAllocations.clear();
    this.baseAllocations.clear();
    this.entries = [];
    this.results = [];
    return changes;
  }

  /** Forget cached state (after a commit) so memory stays bounded; committed state is read again on demand. */
  evict(): void {
    this.skus.clear();
    this.loads.clear();
    this.allocations.clear();
    this.waitingRows.clear();
    this.heads.clear();
    this.capacityRows.clear();
  }
}

/** Ids hold no control characters (parseId): NUL separates day and warehouse without ambiguity. */
const capacityRowKey = (day: number, warehouse: string) => `${day}\u0000${warehouse}`;

function baseResult(r: LineRequest) {
  return { ref: r.ref, sku: r.sku, attempt: r.attempt };
}

function compact(delta: Partial<Position>): Partial<Position> {
  const out: Partial<Position> = {};
  for (const field of positionFields) {
    const d = delta[field];
    if (d !== undefined && d !== 0) out[field] = d;
  }
  return out;
}

/**
 * Strings by code point: the order of their UTF-8 bytes, which is LMDB's key order, so the batch's own
 * reservations merge with the index's in one order (JS `<` compares UTF-16 units, which differs above U+FFFF).
 */
function cmp(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i) as number;
    const y = b.codePointAt(i) as number;
    if (x !== y) return x < y ? -1 : 1;
    if (x > 0xffff) i++;
  }
  return a.length - b.length;
}

/** The order a count takes reservations in: the newest first (the reservation index read backwards). */
function newestFirst(a: Allocation, b: Allocation): number {
  return (
    b.reservedAtMs - a.reservedAtMs ||
    (a.orderKey === b.orderKey ? cmp(b.lineId, a.lineId) : cmp(b.orderKey, a.orderKey))
  );
}

function sameKey(a: ReservationKey, b: ReservationKey): boolean {
  return a.every((v, i) => v === b[i]);
}

/** Folds entries into positions: the reference the consistency check compares stored positions with. */
export function foldEntries(entries: Iterable<LedgerEntry>): Map<string, Position> {
  const positions = new Map<string, Position>();
  for (const e of entries) {
    const p = positions.get(e.warehouse) ?? emptyPosition();
    for (const field of positionFields) p[field] += e.delta[field] ?? 0;
    positions.set(e.warehouse, p);
  }
  return positions;
}

export function assertPosition(p: Position): void {
  assert(p.onHand >= 0, "onHand must not be negative");
  assert(p.reserved >= 0, "reserved must not be negative");
  assert(p.damaged >= 0, "damaged must not be negative");
  assert(p.qualityControl >= 0, "qualityControl must not be negative");
  assert(p.safetyStock >= 0, "safetyStock must not be negative");
  assert(available(p) >= 0, "no oversell: reserved + held back must not exceed onHand");
}

function assertSku(s: SkuState): void {
  assert(typeof s.sku === "string" && s.sku.length > 0, "sku id must be a non-empty string");
  assert(Number.isSafeInteger(s.version) && s.version >= 0, "sku version must be a whole number");
  for (const p of Object.values(s.positions)) assertPosition(p);
}
