import type { LineRequest, LineResult, Position, StockCommand } from "../../../src/domain/ledger/index.ts";

// The reference ledger: plain, obviously correct bookkeeping of what design.md §2 and §4 say a ledger does,
// written without looking at how src/domain/ledger stores or caches anything. It is fed the same committed
// inputs, in the same order, as one ledger partition, and predicts positions, per-SKU versions (one per
// change of a position) and the answers to the order stage.

type Line = {
  attempt: number;
  warehouse: string;
  reserved: number;
  shipped: number;
  returned: number;
  /** The time of the input that reserved it: a count takes the newest reservations first. */
  reservedAtMs: number;
  /** Shipment and return ids already applied: a copy of the same request moves nothing. */
  eventIds: string[];
  /** The refusal of this attempt ("" when none): a repeated request is answered with it. */
  refusal: string;
};

/** A line waiting for stock (a backorder the ledger fills when stock arrives). */
type Waiting = {
  orderKey: string;
  lineId: string;
  attempt: number;
  qty: number;
  candidates: string[];
  keep: number[];
  priority: number;
  /** Global arrival number: among equal priorities the first to wait is filled first. */
  arrival: number;
};

export type ModelOutcome = { ok: true } | { ok: false; code: string };

const zero = (): Position => ({ onHand: 0, reserved: 0, damaged: 0, qualityControl: 0, safetyStock: 0 });

const free = (p: Position) => p.onHand - p.reserved - p.damaged - p.qualityControl - p.safetyStock;

export class LedgerModel {
  /**
   * `same`: a repeated reserve is refused with the code of the first answer (what the ledger promises).
   * `domain`: with "insufficient_available" whatever the first code was, as src/domain/ledger does today
   * (reported with this file); used only when exploring past the known bugs.
   */
  constructor(
    private readonly repeatedRefusal: "same" | "domain" = "same",
    /** ledger.waitingLinesPerSkuMax of the ledger under test. */
    private readonly waitingMax = 1000,
  ) {}

  /** Per SKU, the lines waiting for stock, in the order they began to wait. */
  readonly waiting = new Map<string, Waiting[]>();
  private arrivals = 0;
  /** Lines (sku|orderKey|lineId|attempt) filled from a waiting list: each at most once. */
  readonly filled = new Set<string>();

  readonly positions = new Map<string, Position>();
  readonly versions = new Map<string, number>();
  readonly lines = new Map<string, Line & { sku: string; orderKey: string; lineId: string }>();
  /** Answers produced since the last `takeResults()`. */
  private results: LineResult[] = [];

  position(sku: string, warehouse: string): Position {
    return { ...(this.positions.get(`${sku}|${warehouse}`) ?? zero()) };
  }

  warehousesOf(sku: string): string[] {
    return [...this.positions.keys()]
      .filter((k) => k.startsWith(`${sku}|`))
      .map((k) => k.slice(sku.length + 1));
  }

  takeResults(): LineResult[] {
    const out = this.results;
    this.results = [];
    return out;
  }

  /** One change of one position: the only way the model moves stock; each one is a version. */
  private move(sku: string, warehouse: string, delta: Partial<Position>): void {
    const p = this.position(sku, warehouse);
    let moved = false;
    for (const [field, d] of Object.entries(delta) as Array<[keyof Position, number]>) {
      if (d === 0) continue;
      p[field] += d;
      moved = true;
    }
    if (!moved) return; // nothing changed: no entry, no version
    this.positions.set(`${sku}|${warehouse}`, p);
    this.versions.set(sku, (this.versions.get(sku) ?? 0) + 1);
  }

  /** A stock command, then the waiting lines that fit now are filled (the rule: after every command). */
  stock(sku: string, c: StockCommand, atMs = 0): ModelOutcome {
    const out = this.stockCommand(sku, c);
    this.fill(sku, atMs);
    return out;
  }

  private stockCommand(sku: string, c: StockCommand): ModelOutcome {
    const p = this.position(sku, c.warehouse);
    switch (c.type) {
      case "received":
        this.move(sku, c.warehouse, { onHand: c.qty });
        return { ok: true };
      case "adjust":
        if (free(p) + c.qty < 0) return { ok: false, code: "adjust_below_committed" };
        this.move(sku, c.warehouse, { onHand: c.qty });
        return { ok: true };
      case "override":
        // "Available is now X": reservations and held-back stock stay, on hand follows.
        if (c.available < 0) return { ok: false, code: "override_below_zero" };
        this.move(sku, c.warehouse, { onHand: c.available - free(p) });
        return { ok: true };
      case "hold": {
        if (c.qty > free(p)) return { ok: false, code: "hold_exceeds_available" };
        this.move(sku, c.warehouse, c.bucket === "damaged" ? { damaged: c.qty } : { qualityControl: c.qty });
        return { ok: true };
      }
      case "unhold": {
        const field = c.bucket === "damaged" ? "damaged" : "qualityControl";
        if (c.qty > p[field]) return { ok: false, code: "unhold_exceeds_held" };
        this.move(
          sku,
          c.warehouse,
          c.to === "scrap" ? { [field]: -c.qty, onHand: -c.qty } : { [field]: -c.qty },
        );
        return { ok: true };
      }
      case "safety_stock":
        if (c.qty - p.safetyStock > free(p)) return { ok: false, code: "safety_stock_exceeds_available" };
        this.move(sku, c.warehouse, { safetyStock: c.qty - p.safetyStock });
        return { ok: true };
      case "counted":
        this.count(sku, c.warehouse, c.onHand);
        return { ok: true };
    }
  }

  /**
   * A count is the truth. What is committed beyond it is given up in a fixed order: safety stock, then whole
   * reservations, the newest first (ties: order key, then line id, descending; each answered `lost`), then
   * quality control, then damaged. On hand becomes the count.
   */
  private count(sku: string, warehouse: string, onHand: number): void {
    const committed = (q: Position) => q.reserved + q.damaged + q.qualityControl + q.safetyStock;
    let short = committed(this.position(sku, warehouse)) - onHand;
    const safety = this.position(sku, warehouse).safetyStock;
    if (short > 0 && safety > 0) {
      const take = Math.min(short, safety);
      this.move(sku, warehouse, { safetyStock: -take });
      short -= take;
    }
    const holders = [...this.lines.values()]
      .filter((l) => l.sku === sku && l.warehouse === warehouse && l.reserved > 0)
      .sort(
        (a, b) =>
          b.reservedAtMs - a.reservedAtMs ||
          (a.orderKey === b.orderKey ? desc(a.lineId, b.lineId) : desc(a.orderKey, b.orderKey)),
      );
    for (const l of holders) {
      if (short <= 0) break;
      const qty = l.reserved;
      this.move(sku, warehouse, { reserved: -qty });
      l.reserved = 0;
      this.results.push({
        kind: "lost",
        ref: { orderKey: l.orderKey, lineId: l.lineId },
        sku,
        attempt: l.attempt,
        warehouse,
        qty,
      });
      short -= qty;
    }
    for (const field of ["qualityControl", "damaged"] as const) {
      const held = this.position(sku, warehouse)[field];
      if (short > 0 && held > 0) {
        const take = Math.min(short, held);
        this.move(sku, warehouse, { [field]: -take });
        short -= take;
      }
    }
    this.move(sku, warehouse, { onHand: onHand - this.position(sku, warehouse).onHand });
  }

  /** A refusal says why, and how much the best candidate has now. A duplicate is answered the same way. */
  private refuse(
    r: Extract<LineRequest, { kind: "reserve" }>,
    base: { ref: LineRequest["ref"]; sku: string; attempt: number },
    asDomainRepeats = false,
    first?: string,
    fresh?: { attempt: number },
  ): string {
    const best = Math.max(0, ...r.candidates.map((c) => free(this.position(r.sku, c))));
    const none = r.candidates.length === 0 && !asDomainRepeats;
    let code = first ?? (none ? "no_candidate_warehouse" : "insufficient_available");
    // A first refusal for want of stock, of a request that may wait: the line waits, unless its list is full.
    if (fresh !== undefined && code === "insufficient_available" && r.kind === "reserve" && r.wait) {
      const list = this.waiting.get(r.sku) ?? [];
      if (list.length >= this.waitingMax) code = "waiting_list_full";
      else {
        list.push({
          orderKey: r.ref.orderKey,
          lineId: r.ref.lineId,
          attempt: r.attempt,
          qty: r.qty,
          candidates: [...r.candidates],
          keep: r.candidates.map((_, k) => r.keep?.[k] ?? 0),
          priority: r.wait.priority,
          arrival: this.arrivals++,
        });
        this.waiting.set(r.sku, list);
      }
    }
    this.results.push({ ...base, kind: "refused", code, available: best } as LineResult);
    return code;
  }

  line(r: LineRequest, atMs: number): void {
    this.lineRequest(r, atMs);
    this.fill(r.sku, atMs);
  }

  /**
   * Waiting lines of the SKU, priority first (higher first), then arrival: each is filled whole at the first
   * of its candidates that keeps its `keep` after it; one that fits nowhere is passed over.
   */
  private fill(sku: string, atMs: number): void {
    const list = [...(this.waiting.get(sku) ?? [])].sort(
      (a, b) => b.priority - a.priority || a.arrival - b.arrival,
    );
    for (const w of list) {
      const i = w.candidates.findIndex((c, k) => free(this.position(sku, c)) - w.qty >= (w.keep[k] ?? 0));
      if (i < 0) continue;
      const warehouse = w.candidates[i] as string;
      this.unwait(sku, w.orderKey, w.lineId);
      const key = `${sku}|${w.orderKey}|${w.lineId}`;
      const l = this.lines.get(key);
      if (l === undefined || l.attempt !== w.attempt)
        throw new Error(`model: waiting line ${key} has no attempt`);
      const once = `${key}|${w.attempt}`;
      if (this.filled.has(once)) throw new Error(`model: ${once} filled twice`);
      this.filled.add(once);
      this.move(sku, warehouse, { reserved: w.qty });
      l.warehouse = warehouse;
      l.reserved = w.qty;
      l.reservedAtMs = atMs;
      l.refusal = "";
      const ref = { orderKey: w.orderKey, lineId: w.lineId };
      this.results.push({
        ref,
        sku,
        attempt: w.attempt,
        kind: "reserved",
        warehouse,
        qty: w.qty,
        filled: true,
      });
    }
  }

  /** Whether the line waits, and takes it out of its SKU's list. */
  private unwait(sku: string, orderKey: string, lineId: string): boolean {
    const list = this.waiting.get(sku) ?? [];
    const i = list.findIndex((w) => w.orderKey === orderKey && w.lineId === lineId);
    if (i < 0) return false;
    list.splice(i, 1);
    if (list.length === 0) this.waiting.delete(sku);
    return true;
  }

  private lineRequest(r: LineRequest, atMs: number): void {
    const key = `${r.sku}|${r.ref.orderKey}|${r.ref.lineId}`;
    const l = this.lines.get(key);
    const base = { ref: { ...r.ref }, sku: r.sku, attempt: r.attempt };
    if (r.kind === "reserve") {
      if (l !== undefined && l.attempt > r.attempt) return; // an older attempt: nothing
      if (l !== undefined && l.attempt === r.attempt) {
        // The same request again: the same answer, nothing moves.
        if (l.reserved > 0)
          this.results.push({ ...base, kind: "reserved", warehouse: l.warehouse, qty: l.reserved });
        else if (l.warehouse === "")
          this.refuse(
            r,
            base,
            this.repeatedRefusal === "domain",
            this.repeatedRefusal === "domain" ? undefined : l.refusal,
          );
        return;
      }
      // A new attempt takes the line's place in the waiting list away: it waits again only if refused again.
      this.unwait(r.sku, r.ref.orderKey, r.ref.lineId);
      if (l !== undefined && l.reserved > 0) this.move(r.sku, l.warehouse, { reserved: -l.reserved });
      // A re-route keeps what the line already shipped and had returned: that is history, not stock.
      const shipped = l?.shipped ?? 0;
      const returned = l?.returned ?? 0;
      const eventIds = l?.eventIds ?? [];
      const line = {
        sku: r.sku,
        ...r.ref,
        attempt: r.attempt,
        shipped,
        returned,
        warehouse: "",
        reserved: 0,
        reservedAtMs: atMs,
        eventIds,
        refusal: "",
      };
      this.lines.set(key, line);
      // Each candidate keeps what routing asked it to keep (its min stock) after the reservation.
      const w = r.candidates.find((c, k) => free(this.position(r.sku, c)) - r.qty >= (r.keep?.[k] ?? 0));
      if (w !== undefined) {
        this.move(r.sku, w, { reserved: r.qty });
        line.warehouse = w;
        line.reserved = r.qty;
        this.results.push({ ...base, kind: "reserved", warehouse: w, qty: r.qty });
        return;
      }
      line.refusal = this.refuse(r, base, false, undefined, line);
      return;
    }
    if (l === undefined || l.attempt !== r.attempt) return; // unknown or stale: nothing
    switch (r.kind) {
      case "release":
        if (this.unwait(r.sku, r.ref.orderKey, r.ref.lineId)) return; // a cancelled backorder stops waiting
        this.move(r.sku, l.warehouse, { reserved: -l.reserved });
        l.reserved = 0;
        return;
      case "ship": {
        if (l.eventIds.includes(r.eventId)) return;
        l.eventIds.push(r.eventId);
        const qty = Math.min(r.qty, l.reserved);
        this.move(r.sku, l.warehouse, { onHand: -qty, reserved: -qty });
        l.reserved -= qty;
        l.shipped += qty;
        return;
      }
      case "reject": {
        const qty = l.reserved;
        this.move(r.sku, l.warehouse, { reserved: -qty });
        if (r.stockMissing) this.move(r.sku, l.warehouse, { onHand: -qty });
        l.reserved = 0;
        return;
      }
      case "return": {
        if (l.eventIds.includes(r.eventId)) return;
        const qty = Math.min(r.qty, l.shipped - l.returned);
        if (qty <= 0) return;
        l.eventIds.push(r.eventId);
        const held =
          r.disposition === "damaged"
            ? { damaged: qty }
            : r.disposition === "quality_control"
              ? { qualityControl: qty }
              : {};
        this.move(r.sku, r.warehouse, { onHand: qty, ...held });
        l.returned += qty;
        return;
      }
    }
  }
}

function desc(a: string, b: string): number {
  return a < b ? 1 : a > b ? -1 : 0;
}
