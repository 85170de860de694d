// The routing tally: what Sluice's order outputs say about routing (pure; the observer feeds it).
//
// - Shipments per order, from each order's newest status item on sluice.out.order.<channel>: the distinct
//   warehouses of its lines that are allocated, released or shipped (a cancelled line too when some of it
//   shipped). 0: nothing placed (rejected, backordered, still pending); 2 or more: the order is split.
// - Refusals by reason: the lines of each order's newest status that carry a `refusal`, by its code.
// - Per fulfilment request (a `fulfil` item on sluice.out.fulfil.<warehouse>: one order's lines at one
//   warehouse): lines, units, and the distance to the ship-to point: the routing summary's `distanceKm`
//   (the decision's, of the warehouse that reserved) when a line carries one, else the great-circle km
//   between the item's shipTo point and the warehouse's point in the network, else unknown. A re-routed
//   line is requested again from its new warehouse: each request counts.
//
// A newer status of an order replaces its contribution instead of adding to it, so per order the tally keeps
// 5 bytes: its shipment count, its refusal mix (2 bytes: an index into a table of distinct mixes such as
// "insufficient_available ×2"; few distinct mixes occur, the table is bounded all the same), and two flags.
import { distanceKm } from "../../src/domain/routing/geo.ts";
import { limits } from "./options.ts";
import type { WarehouseSite } from "./replay-network.ts";

/** Line states in which a line ships from its warehouse (now or already). */
const placedStates = new Set(["allocated", "released", "shipped"]);
/** An order's shipment count is kept in a byte: past 255 warehouses (a rule set has ≤ 256) it reads 255. */
const shipmentsCountMax = 255;
/** Distinct refusal mixes at most (an index fits 2 bytes); orders with a mix beyond it are counted apart. */
const refusalMixesMax = 65_535;

/** Distance buckets, upper bounds in km (exclusive); the last is open. */
export const distanceBucketsKm = [1, 100, 500, 1000, 2000, Number.POSITIVE_INFINITY] as const;

export type WarehouseRequests = { requests: number; lines: number; units: number };

export type RoutingFigures = {
  /** Orders with at least one status item seen. */
  orders: number;
  /** Orders whose newest status ships from at least one warehouse, and from two or more. */
  ordersPlaced: number;
  ordersSplit: number;
  /** ordersSplit ÷ ordersPlaced (null: none placed). */
  splitShare: number | null;
  /** Mean warehouses per placed order (null: none placed). */
  shipmentsPerOrderMean: number | null;
  /** Orders by the number of warehouses they ship from ("0", "1", "2", …). */
  shipmentsPerOrder: Record<string, number>;
  refusals: {
    /** Lines of the newest statuses with a refusal, and the orders they belong to. */
    lines: number;
    orders: number;
    byReason: Record<string, number>;
    /** Orders whose refusal mix found no room in the table (refusalMixesMax): not in the counts above. */
    ordersUntracked: number;
  };
  fulfil: {
    requests: number;
    lines: number;
    units: number;
    byWarehouse: Record<string, WarehouseRequests>;
  };
  distance: {
    /** Requests by where their km came from. */
    fromDecision: number;
    computed: number;
    unknown: number;
    /** Over requests with a distance; per unit: weighted by the request's units. */
    kmMean: number | null;
    kmPerUnitMean: number | null;
    kmMax: number | null;
    buckets: Array<{ label: string; requests: number }>;
  };
};

type Mix = Array<[reason: string, lines: number]>;

export class RoutingTally {
  private shipments = new Uint8Array(1 << 12);
  private mixOf = new Uint16Array(1 << 12);
  private seen = new Uint8Array(1 << 12);
  /** Index 0: no refusal. */
  private readonly mixes: Mix[] = [[]];
  private readonly mixIndex = new Map<string, number>([["", 0]]);
  private readonly ordersByShipments = new Float64Array(shipmentsCountMax + 1);
  private readonly refusedLines = new Map<string, number>();
  private refusedOrders = 0;
  private untracked = new Uint8Array(1 << 12);
  private untrackedOrders = 0;
  private orders = 0;
  private readonly sites = new Map<string, WarehouseSite>();
  private readonly byWarehouse = new Map<string, WarehouseRequests>();
  private requests = 0;
  private requestLines = 0;
  private requestUnits = 0;
  private readonly km = {
    fromDecision: 0,
    computed: 0,
    unknown: 0,
    sum: 0,
    unitSum: 0,
    units: 0,
    max: 0,
    buckets: distanceBucketsKm.map(() => 0),
  };

  constructor(sites: readonly WarehouseSite[] = []) {
    for (const s of sites) this.sites.set(s.id, s);
  }

  /** The newest status item of order n (the observer drops older versions before calling). */
  onStatus(n: number, lines: readonly Record<string, unknown>[]): void {
    this.grow(n);
    if (this.seen[n] === 0) {
      // A new order counts under 0 shipments until this status says otherwise.
      this.seen[n] = 1;
      this.orders++;
      this.ordersByShipments[0] = (this.ordersByShipments[0] as number) + 1;
    }
    const warehouses = new Set<string>();
    const reasons = new Map<string, number>();
    for (const l of lines) {
      const shipped = typeof l.shippedQty === "number" && l.shippedQty > 0;
      if (typeof l.warehouse === "string" && (placedStates.has(String(l.state)) || shipped))
        warehouses.add(l.warehouse);
      if (typeof l.refusal === "string" && l.refusal !== "")
        reasons.set(l.refusal, (reasons.get(l.refusal) ?? 0) + 1);
    }
    this.setShipments(n, Math.min(shipmentsCountMax, warehouses.size));
    this.setMix(n, reasons);
  }

  private setShipments(n: number, count: number): void {
    const was = this.shipments[n] as number;
    this.ordersByShipments[was] = (this.ordersByShipments[was] as number) - 1;
    this.ordersByShipments[count] = (this.ordersByShipments[count] as number) + 1;
    this.shipments[n] = count;
  }

  private setMix(n: number, reasons: Map<string, number>): void {
    const mix: Mix = [...reasons.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const key = mix.map(([r, c]) => `${r}\u0000${c}`).join("\u0001");
    let index = this.mixIndex.get(key);
    if (index === undefined && this.mixes.length <= refusalMixesMax) {
      index = this.mixes.length;
      this.mixes.push(mix);
      this.mixIndex.set(key, index);
    }
    this.apply(this.mixes[this.mixOf[n] as number] as Mix, -1);
    if ((this.mixOf[n] as number) !== 0) this.refusedOrders--;
    if (this.untracked[n] === 1) {
      this.untracked[n] = 0;
      this.untrackedOrders--;
    }
    if (index === undefined) {
      this.mixOf[n] = 0;
      this.untracked[n] = 1;
      this.untrackedOrders++;
      return;
    }
    this.mixOf[n] = index;
    this.apply(mix, 1);
    if (index !== 0) this.refusedOrders++;
  }

  private apply(mix: Mix, sign: 1 | -1): void {
    for (const [reason, lines] of mix) {
      const next = (this.refusedLines.get(reason) ?? 0) + sign * lines;
      if (next === 0) this.refusedLines.delete(reason);
      else this.refusedLines.set(reason, next);
    }
  }

  /** A `fulfil` item (cancel items are not requests and are ignored). */
  onFulfil(item: Record<string, unknown>): void {
    if (item.type !== "fulfil") return;
    const warehouse = typeof item.warehouse === "string" ? item.warehouse : "?";
    const lines = Array.isArray(item.lines) ? (item.lines as Record<string, unknown>[]) : [];
    let units = 0;
    let decidedKm: number | null = null;
    for (const l of lines) {
      units += typeof l.qty === "number" ? l.qty : 0;
      const routing = l.routing as Record<string, unknown> | undefined;
      if (decidedKm === null && typeof routing?.distanceKm === "number") decidedKm = routing.distanceKm;
    }
    this.requests++;
    this.requestLines += lines.length;
    this.requestUnits += units;
    const row = this.warehouseRow(warehouse);
    row.requests++;
    row.lines += lines.length;
    row.units += units;
    const km = decidedKm ?? this.computedKm(warehouse, item.shipTo);
    if (decidedKm !== null) this.km.fromDecision++;
    else if (km !== null) this.km.computed++;
    else {
      this.km.unknown++;
      return;
    }
    this.recordKm(km as number, units);
  }

  private warehouseRow(warehouse: string): WarehouseRequests {
    const known = this.byWarehouse.get(warehouse);
    if (known !== undefined) return known;
    const id = this.byWarehouse.size < limits.routingWarehousesTrackedMax ? warehouse : "other";
    const row = this.byWarehouse.get(id) ?? { requests: 0, lines: 0, units: 0 };
    this.byWarehouse.set(id, row);
    return row;
  }

  /** Great-circle km between the item's shipTo point and the warehouse's, or null without both. */
  private computedKm(warehouse: string, shipTo: unknown): number | null {
    const site = this.sites.get(warehouse);
    const to = shipTo as { lat?: unknown; lon?: unknown } | null | undefined;
    if (site?.lat == null || site.lon == null) return null;
    if (typeof to?.lat !== "number" || typeof to.lon !== "number") return null;
    return distanceKm(to.lat, to.lon, site.lat, site.lon);
  }

  private recordKm(km: number, units: number): void {
    this.km.sum += km;
    this.km.unitSum += km * units;
    this.km.units += units;
    if (km > this.km.max) this.km.max = km;
    const b = distanceBucketsKm.findIndex((upper) => km < upper);
    this.km.buckets[b] = (this.km.buckets[b] as number) + 1;
  }

  figures(): RoutingFigures {
    const round = (v: number, digits = 3) => Math.round(v * 10 ** digits) / 10 ** digits;
    const byShipments: Record<string, number> = {};
    let placed = 0;
    let split = 0;
    let warehouses = 0;
    for (let k = 0; k <= shipmentsCountMax; k++) {
      const c = this.ordersByShipments[k] as number;
      if (c === 0) continue;
      byShipments[String(k)] = c;
      if (k >= 1) placed += c;
      if (k >= 2) split += c;
      warehouses += k * c;
    }
    const withKm = this.km.fromDecision + this.km.computed;
    const label = (i: number) => {
      const lo = i === 0 ? 0 : (distanceBucketsKm[i - 1] as number);
      const hi = distanceBucketsKm[i] as number;
      return hi === Number.POSITIVE_INFINITY ? `≥ ${lo} km` : `${lo}–${hi} km`;
    };
    return {
      orders: this.orders,
      ordersPlaced: placed,
      ordersSplit: split,
      splitShare: placed === 0 ? null : round(split / placed, 4),
      shipmentsPerOrderMean: placed === 0 ? null : round(warehouses / placed),
      shipmentsPerOrder: byShipments,
      refusals: {
        lines: [...this.refusedLines.values()].reduce((a, b) => a + b, 0),
        orders: this.refusedOrders,
        byReason: Object.fromEntries([...this.refusedLines.entries()].sort((a, b) => b[1] - a[1])),
        ordersUntracked: this.untrackedOrders,
      },
      fulfil: {
        requests: this.requests,
        lines: this.requestLines,
        units: this.requestUnits,
        byWarehouse: Object.fromEntries(
          [...this.byWarehouse.entries()].sort((a, b) => b[1].requests - a[1].requests),
        ),
      },
      distance: {
        fromDecision: this.km.fromDecision,
        computed: this.km.computed,
        unknown: this.km.unknown,
        kmMean: withKm === 0 ? null : round(this.km.sum / withKm, 1),
        kmPerUnitMean: this.km.units === 0 ? null : round(this.km.unitSum / this.km.units, 1),
        kmMax: withKm === 0 ? null : round(this.km.max, 1),
        buckets: this.km.buckets.map((requests, i) => ({ label: label(i), requests })),
      },
    };
  }

  private grow(n: number): void {
    if (n < this.shipments.length) return;
    const size = Math.max(n + 1, this.shipments.length * 2);
    const bytes = (a: Uint8Array) => {
      const b = new Uint8Array(size);
      b.set(a);
      return b;
    };
    this.shipments = bytes(this.shipments);
    this.seen = bytes(this.seen);
    this.untracked = bytes(this.untracked);
    const m = new Uint16Array(size);
    m.set(this.mixOf);
    this.mixOf = m;
  }
}
