import { available } from "../ledger/types.ts";
import { minStockOf, type Network, serving, type Warehouse } from "../network/index.ts";
import { own } from "../own.ts";
import { distanceKm, nextCutoffMs } from "./geo.ts";
import type {
  CandidateScore,
  FilterReason,
  LineDecision,
  LineRoute,
  RouteContext,
  RouteLine,
  RouteOrder,
  RouteResult,
} from "./types.ts";

/** A warehouse that passed the order-level filters, with the components that do not depend on the line. */
type Site = {
  index: number;
  w: Warehouse;
  loadUnits: number;
  distanceKm: number | null;
  proximity: number;
  load: number;
  carrier: number;
  carrierId: string | null;
  /** Weighted proximity + load + carrier. */
  base: number;
};

/** One site for one line: stock left after the allocation, what must stay, and the line's score there. */
type Option = {
  site: Site;
  free: number;
  keep: number;
  feasible: boolean;
  why: "no_stock" | "min_stock" | "capacity_full" | null;
  stock: number;
  score: number;
};

type Filtered = { warehouse: string; reason: FilterReason };

/**
 * Sourcing for one order (design.md §6). Candidates: enabled warehouses serving the channel. Filters: capacity
 * left today, a carrier cut-off that still meets the ship-by deadline, warehouses that rejected the line,
 * stock and minimum stock after the allocation. Scores: proximity, stock health (balance), load and
 * carrier SLA, weighted; minus `splitCost` per extra shipment. The split policy bounds the warehouses.
 * Pure and synchronous: stock and load are read through the context, time is an input.
 */
export function route(order: RouteOrder, network: Network, ctx: RouteContext): RouteResult {
  const orderFiltered: Filtered[] = [];
  const sites = sitesFor(order, network, ctx, orderFiltered);
  // A view fed from another process may not know a SKU yet: unknown is not "none", so such a line goes blind.
  const blind = order.lines.map((line) => ctx.known?.(line.sku) === false);
  const options = order.lines.map((line, i) =>
    blind[i] ? blindOptionsFor(line, sites) : optionsFor(line, sites, network, ctx),
  );
  const greedy = assignGreedy(order, options, network);
  let best = greedy;
  if (order.lines.length > 1) {
    const single = assignSingle(order, options, sites, network);
    if (single !== null && better(single, best)) best = single;
    // Greedy takes lines one at a time: when it needs three or more warehouses, two may do (W² / 2 pairs).
    if (order.lines.length > 2 && order.used.size === 0 && shipmentsOf(best) > 2) {
      const pair = assignPairs(order, options, sites, network);
      if (pair !== null && better(pair, best)) best = pair;
    }
  }
  const final = new Set([
    ...order.used,
    ...best.chosen.filter((c): c is Site => c !== null).map((s) => s.w.id),
  ]);
  // Fallbacks stay open on a first routing (the order stage applies max shipments to what the ledger
  // reserved); a re-route of an order already at its maximum may only move among those warehouses.
  const full = order.split.maxShipments > 0 && order.used.size >= order.split.maxShipments;
  const lines = order.lines.map((line, i) =>
    lineRoute(
      line,
      options[i] as Option[],
      best.chosen[i] ?? null,
      order.used,
      full,
      orderFiltered,
      final.size,
      network,
      ctx,
      blind[i] === true,
    ),
  );
  return { lines, shipments: final.size };
}

function sitesFor(order: RouteOrder, network: Network, ctx: RouteContext, filtered: Filtered[]): Site[] {
  const r = network.routing;
  const sites: Site[] = [];
  const to = order.shipTo;
  const candidates = serving(network, order.channel);
  for (const f of candidates.excluded) filtered.push(f);
  for (const { index, w } of candidates.sites) {
    const loadUnits = ctx.load(w.id);
    // Nothing fits once the day's capacity is taken; a part of the order may fit (checked per line).
    if (loadUnits >= w.capacityPerDay) {
      filtered.push({ warehouse: w.id, reason: "capacity_full" });
      continue;
    }
    let carrier = 0;
    let carrierId: string | null = null;
    if (w.carriers.length > 0) {
      let transit = Number.POSITIVE_INFINITY;
      for (const c of w.carriers) {
        if (nextCutoffMs(ctx.nowMs, c.cutoffMinute, w.utcOffsetMinutes) > order.shipByMs) continue;
        if (c.transitDays < transit) {
          transit = c.transitDays;
          carrierId = c.id;
        }
      }
      if (carrierId === null) {
        filtered.push({ warehouse: w.id, reason: "cutoff_missed" });
        continue;
      }
      carrier = 1 - Math.min(transit, r.transitDaysMax) / r.transitDaysMax;
    }
    let km: number | null = null;
    let proximity: number;
    if (to.lat !== null && to.lon !== null && w.lat !== null && w.lon !== null) {
      km = distanceKm(to.lat, to.lon, w.lat, w.lon);
      proximity = 1 - Math.min(km, r.distanceKmMax) / r.distanceKmMax;
    } else {
      // Without coordinates: the same region counts as near, another as half-way, unknown as neutral.
      proximity = to.region === null || w.region === "" ? 0.5 : to.region === w.region ? 1 : 0.25;
    }
    const load = w.capacityPerDay === 0 ? 0 : 1 - Math.min(1, loadUnits / w.capacityPerDay);
    const base = r.distanceWeight * proximity + r.loadWeight * load + r.carrierWeight * carrier;
    sites.push({ index, w, loadUnits, distanceKm: km, proximity, load, carrier, carrierId, base });
  }
  return sites;
}

function optionsFor(line: RouteLine, sites: Site[], network: Network, ctx: RouteContext): Option[] {
  const positions = ctx.stock(line.sku);
  const out: Option[] = [];
  let bestLeft = 0;
  for (const site of sites) {
    if (line.excluded.includes(site.w.id)) continue;
    const p = own(positions, site.w.id);
    const free = p === undefined ? 0 : Math.max(0, available(p));
    const keep = minStockOf(site.w, line.sku);
    // Per line, capacity: a warehouse with some capacity left may still not take this line's units.
    const why =
      line.qty > site.w.capacityPerDay - site.loadUnits
        ? "capacity_full"
        : free < line.qty
          ? "no_stock"
          : free - line.qty < keep
            ? "min_stock"
            : null;
    if (why === null) bestLeft = Math.max(bestLeft, free - line.qty);
    out.push({ site, free, keep, feasible: why === null, why, stock: 0, score: 0 });
  }
  const ws = network.routing.stockWeight;
  for (const o of out) {
    // Balance: the candidate left with the most stock scores 1, the others in proportion.
    o.stock = !o.feasible ? 0 : bestLeft === 0 ? 1 : (o.free - line.qty) / bestLeft;
    o.score = o.site.base + ws * o.stock;
  }
  return out;
}

/**
 * Options of a line whose stock the view does not know: every site that can take its units today, none
 * filtered for stock or min stock, ranked by the components that do not depend on stock (stock scores 0
 * everywhere). `free` is unbounded as far as routing knows; the ledger reserves at the first candidate that
 * has the units and leaves its `keep`, or refuses (the line is then backordered or rejected as any other).
 */
function blindOptionsFor(line: RouteLine, sites: Site[]): Option[] {
  const out: Option[] = [];
  for (const site of sites) {
    if (line.excluded.includes(site.w.id)) continue;
    const full = line.qty > site.w.capacityPerDay - site.loadUnits;
    out.push({
      site,
      free: Number.POSITIVE_INFINITY,
      keep: minStockOf(site.w, line.sku),
      feasible: !full,
      why: full ? "capacity_full" : null,
      stock: 0,
      score: site.base,
    });
  }
  return out;
}

type Assignment = { chosen: Array<Site | null>; assigned: number; objective: number };

const better = (a: Assignment, b: Assignment) =>
  a.assigned > b.assigned || (a.assigned === b.assigned && a.objective > b.objective + 1e-9);

/** What the order pays for shipping from `warehouses`: the extra shipments beyond what it already has. */
function splitPenalty(order: RouteOrder, warehouses: ReadonlySet<string>, network: Network): number {
  return network.routing.splitCost * Math.max(0, warehouses.size - Math.max(1, order.used.size));
}

/**
 * Stock and capacity an assignment has taken so far, so two lines never count the same units twice. Keyed
 * by numbers (the line's SKU group × the site's index): routing runs per order on the hot path.
 */
class Taken {
  private readonly stock = new Map<number, number>();
  private readonly units = new Map<number, number>();
  constructor(private readonly groups: readonly number[]) {}
  fits(i: number, line: RouteLine, o: Option): boolean {
    if (!o.feasible) return false;
    const used = this.stock.get((this.groups[i] as number) * siteIndexBound + o.site.index) ?? 0;
    const capacityLeft = o.site.w.capacityPerDay - o.site.loadUnits - (this.units.get(o.site.index) ?? 0);
    return o.free - used - line.qty >= o.keep && line.qty <= capacityLeft;
  }
  take(i: number, line: RouteLine, o: Option): void {
    const k = (this.groups[i] as number) * siteIndexBound + o.site.index;
    this.stock.set(k, (this.stock.get(k) ?? 0) + line.qty);
    this.units.set(o.site.index, (this.units.get(o.site.index) ?? 0) + line.qty);
  }
}

/** Above any warehouse index (networkLimits.warehousesMax). */
const siteIndexBound = 1 << 16;

/** Lines of the same SKU share a group: they draw on the same stock. */
function skuGroups(lines: readonly RouteLine[]): number[] {
  if (lines.length === 1) return [0];
  const first = new Map<string, number>();
  return lines.map((l, i) => {
    const g = first.get(l.sku);
    if (g !== undefined) return g;
    first.set(l.sku, i);
    return i;
  });
}

/**
 * Lines with the fewest options first, each to its best score, where a warehouse the order does not ship
 * from yet costs `splitCost`; once the order ships from `maxShipments` warehouses, only those remain.
 */
function assignGreedy(order: RouteOrder, options: Option[][], network: Network): Assignment {
  if (order.lines.length === 1) return assignOne(order, options[0] as Option[], network);
  const splitCost = network.routing.splitCost;
  const chosen: Array<Site | null> = order.lines.map(() => null);
  const warehouses = new Set(order.used);
  const taken = new Taken(skuGroups(order.lines));
  const byConstraint = order.lines
    .map((_, i) => i)
    .sort((a, b) => count(options[a] as Option[]) - count(options[b] as Option[]) || a - b);
  let total = 0;
  let assigned = 0;
  for (const i of byConstraint) {
    const line = order.lines[i] as RouteLine;
    const full = order.split.maxShipments > 0 && warehouses.size >= order.split.maxShipments;
    let best: Option | null = null;
    let bestValue = Number.NEGATIVE_INFINITY;
    for (const o of options[i] as Option[]) {
      const isNew = !warehouses.has(o.site.w.id);
      if ((full && isNew) || !taken.fits(i, line, o)) continue;
      const value = o.score - (isNew && warehouses.size > 0 ? splitCost : 0);
      if (value > bestValue + 1e-12) {
        best = o;
        bestValue = value;
      }
    }
    if (best === null) continue;
    taken.take(i, line, best);
    warehouses.add(best.site.w.id);
    chosen[i] = best.site;
    total += best.score;
    assigned++;
  }
  return { chosen, assigned, objective: total - splitPenalty(order, warehouses, network) };
}

/**
 * The fast path of most orders, one line: its best feasible option (options already hold its stock, min
 * stock and capacity), a warehouse the order does not ship from yet costing splitCost, max shipments kept.
 */
function assignOne(order: RouteOrder, options: Option[], network: Network): Assignment {
  const used = order.used;
  const full = order.split.maxShipments > 0 && used.size >= order.split.maxShipments;
  let best: Option | null = null;
  let bestValue = Number.NEGATIVE_INFINITY;
  for (const o of options) {
    if (!o.feasible) continue;
    const isNew = !used.has(o.site.w.id);
    if (full && isNew) continue;
    const value = o.score - (isNew && used.size > 0 ? network.routing.splitCost : 0);
    if (value > bestValue + 1e-12) {
      best = o;
      bestValue = value;
    }
  }
  if (best === null) return { chosen: [null], assigned: 0, objective: -splitPenalty(order, used, network) };
  const warehouses = used.has(best.site.w.id) ? used : new Set([...used, best.site.w.id]);
  return {
    chosen: [best.site],
    assigned: 1,
    objective: best.score - splitPenalty(order, warehouses, network),
  };
}

/** The best single warehouse that can take every line (the fewest shipments), if any. */
function assignSingle(
  order: RouteOrder,
  options: Option[][],
  sites: Site[],
  network: Network,
): Assignment | null {
  let best: Assignment | null = null;
  const groups = skuGroups(order.lines);
  for (const site of sites) {
    const taken = new Taken(groups);
    let total = 0;
    let ok = true;
    for (const [i, line] of order.lines.entries()) {
      const o = (options[i] as Option[]).find((x) => x.site === site);
      if (o === undefined || !taken.fits(i, line, o)) {
        ok = false;
        break;
      }
      taken.take(i, line, o);
      total += o.score;
    }
    if (!ok) continue;
    const warehouses = new Set([...order.used, site.w.id]);
    if (order.split.maxShipments > 0 && warehouses.size > Math.max(order.split.maxShipments, order.used.size))
      continue;
    const a: Assignment = {
      chosen: order.lines.map(() => site),
      assigned: order.lines.length,
      objective: total - splitPenalty(order, warehouses, network),
    };
    if (best === null || better(a, best)) best = a;
  }
  return best;
}

const shipmentsOf = (a: Assignment) => new Set(a.chosen.filter((c) => c !== null)).size;

/** The best assignment using two warehouses: each line to the better of the pair that can take it. */
function assignPairs(
  order: RouteOrder,
  options: Option[][],
  sites: Site[],
  network: Network,
): Assignment | null {
  if (order.split.maxShipments === 1) return null;
  const groups = skuGroups(order.lines);
  let best: Assignment | null = null;
  for (let a = 0; a < sites.length; a++) {
    for (let b = a + 1; b < sites.length; b++) {
      const pair = [sites[a] as Site, sites[b] as Site];
      const taken = new Taken(groups);
      const chosen: Array<Site | null> = order.lines.map(() => null);
      let total = 0;
      let assigned = 0;
      for (const [i, line] of order.lines.entries()) {
        let pick: Option | null = null;
        for (const o of options[i] as Option[]) {
          if (
            (o.site === pair[0] || o.site === pair[1]) &&
            taken.fits(i, line, o) &&
            (pick === null || o.score > pick.score)
          )
            pick = o;
        }
        if (pick === null) continue;
        taken.take(i, line, pick);
        chosen[i] = pick.site;
        total += pick.score;
        assigned++;
      }
      const warehouses = new Set(chosen.filter((c): c is Site => c !== null).map((c) => c.w.id));
      const candidate = { chosen, assigned, objective: total - splitPenalty(order, warehouses, network) };
      if (best === null || better(candidate, best)) best = candidate;
    }
  }
  return best;
}

const count = (os: Option[]) => os.reduce((n, o) => n + (o.feasible ? 1 : 0), 0);

function lineRoute(
  line: RouteLine,
  options: Option[],
  chosen: Site | null,
  used: ReadonlySet<string>,
  full: boolean,
  orderFiltered: Filtered[],
  shipments: number,
  network: Network,
  ctx: RouteContext,
  stockUnknown: boolean,
): LineRoute {
  const filtered: Filtered[] = orderFiltered.slice();
  for (const id of line.excluded) filtered.push({ warehouse: id, reason: "rejected_before" });
  // One sort: what the view says has stock, by score, then the rest (the view may be stale).
  const byScore = options
    .slice()
    .sort(
      (a, b) => Number(b.feasible) - Number(a.feasible) || b.score - a.score || a.site.index - b.site.index,
    );
  const ranked: Option[] = [];
  const top: Option[] = [];
  if (chosen !== null) ranked.push(byScore.find((o) => o.site === chosen) as Option);
  for (const o of byScore) {
    if (full && !used.has(o.site.w.id)) {
      filtered.push({ warehouse: o.site.w.id, reason: "max_shipments" });
      continue;
    }
    if (o.feasible) top.push(o);
    if (o.why !== null) filtered.push({ warehouse: o.site.w.id, reason: o.why });
    // The ledger knows stock, not capacity: a warehouse this line would overfill is never a fallback.
    if (o.site !== chosen && o.why !== "capacity_full") ranked.push(o);
  }
  const chosenOption = options.find((o) => o.site === chosen);
  const decision: LineDecision = {
    rules: network.version,
    atMs: ctx.nowMs,
    chosen: chosen?.w.id ?? null,
    score: round(chosenOption?.score ?? 0),
    reason:
      chosen === null
        ? ranked.length === 0
          ? "no_candidate"
          : "no_stock"
        : top[0]?.site === chosen
          ? "best_score"
          : "fewer_shipments",
    shipments,
    ...(stockUnknown ? { stockUnknown: true as const } : {}),
    candidates: top.slice(0, network.routing.decisionCandidatesMax).map(scoreOf),
    filtered,
  };
  return {
    lineId: line.lineId,
    candidates: ranked.map((o) => o.site.w.id),
    keep: ranked.map((o) => o.keep),
    decision,
  };
}

function scoreOf(o: Option): CandidateScore {
  return {
    warehouse: o.site.w.id,
    score: round(o.score),
    distanceKm: o.site.distanceKm === null ? null : Math.round(o.site.distanceKm * 10) / 10,
    proximity: round(o.site.proximity),
    stock: round(o.stock),
    load: round(o.site.load),
    carrier: round(o.site.carrier),
    carrierId: o.site.carrierId,
  };
}

const round = (n: number) => Math.round(n * 1000) / 1000;
