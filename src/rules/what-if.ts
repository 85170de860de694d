import type { Position } from "../domain/ledger/index.ts";
import { channelOf, type Network } from "../domain/network/index.ts";
import type { OrderInput, RoutingView } from "../domain/orders/index.ts";
import { idRecord, ownEntries } from "../domain/own.ts";
import { route } from "../domain/routing/index.ts";

/** An order of the recent past, with the time it was accepted (its ship-by is kept relative to it). */
export type PastOrder = { input: OrderInput; atMs: number };

export type WhatIfSide = {
  rules: string;
  lines: number;
  linesAllocated: number;
  linesUnallocated: number;
  /** Lines and units per warehouse (a JSON view: each id is an own property, "__proto__" included). */
  byWarehouse: Record<string, { lines: number; units: number }>;
  ordersSplit: number;
  shipmentsPerOrderMean: number;
  /** Over allocated lines whose ship-to and warehouse have coordinates. */
  distanceKmMean: number | null;
};

export type WhatIfReport = {
  orders: number;
  nowMs: number;
  baseline: WhatIfSide;
  candidate: WhatIfSide;
  /** Orders with at least one line routed elsewhere (or allocated on one side only). */
  ordersChanged: number;
  linesMoved: number;
};

/**
 * Routes the same orders with two rule sets against the same stock, as it is now, and compares. Each side
 * takes stock from its own scratch copy as it goes (orders in their arrival order), so later orders see
 * what earlier ones took. Nothing is written: the ledger is not touched.
 */
export function whatIf(
  orders: readonly PastOrder[],
  baseline: Network,
  candidate: Network,
  view: RoutingView,
  nowMs: number,
): WhatIfReport {
  const a = simulate(orders, baseline, view, nowMs);
  const b = simulate(orders, candidate, view, nowMs);
  let ordersChanged = 0;
  let linesMoved = 0;
  for (const [i, left] of a.choices.entries()) {
    const right = b.choices[i] as Array<string | null>;
    const moved = left.filter((w, j) => w !== right[j]).length;
    linesMoved += moved;
    if (moved > 0) ordersChanged++;
  }
  return { orders: orders.length, nowMs, baseline: a.side, candidate: b.side, ordersChanged, linesMoved };
}

function simulate(orders: readonly PastOrder[], network: Network, view: RoutingView, nowMs: number) {
  const taken = new Map<string, number>();
  const units = new Map<string, number>();
  const stock = (sku: string) => {
    const positions = view.stock(sku);
    if (positions === undefined) return undefined;
    return idRecord(
      ownEntries(positions).map(([w, p]): [string, Position] => [
        w,
        { ...p, reserved: p.reserved + (taken.get(`${sku}\u0000${w}`) ?? 0) },
      ]),
    );
  };
  const ctx = { stock, load: (w: string) => view.load(w) + (units.get(w) ?? 0), nowMs };
  const side: WhatIfSide = {
    rules: network.version,
    lines: 0,
    linesAllocated: 0,
    linesUnallocated: 0,
    byWarehouse: {},
    ordersSplit: 0,
    shipmentsPerOrderMean: 0,
    distanceKmMean: null,
  };
  const choices: Array<Array<string | null>> = [];
  let shipments = 0;
  let routedOrders = 0;
  let km = 0;
  let kmLines = 0;
  const byWarehouse = new Map<string, { lines: number; units: number }>();
  for (const { input, atMs } of orders) {
    const channel = channelOf(network, input.channel);
    const within = input.shipByMs === null ? (channel?.slaShipWithinMs ?? 0) : input.shipByMs - atMs;
    const result = route(
      {
        channel: input.channel,
        shipTo: input.shipTo,
        shipByMs: nowMs + Math.max(0, within),
        split: {
          mode: input.split.mode ?? channel?.split ?? "allow_partial",
          maxShipments: input.split.maxShipments ?? channel?.maxShipments ?? 0,
        },
        lines: input.lines.map((l) => ({ lineId: l.lineId, sku: l.sku, qty: l.qty, excluded: [] })),
        used: new Set(),
      },
      network,
      ctx,
    );
    choices.push(result.lines.map((l) => l.decision.chosen));
    side.lines += input.lines.length;
    if (result.shipments > 0) {
      routedOrders++;
      shipments += result.shipments;
    }
    if (result.shipments > 1) side.ordersSplit++;
    for (const [i, l] of result.lines.entries()) {
      const w = l.decision.chosen;
      const qty = (input.lines[i] as OrderInput["lines"][number]).qty;
      if (w === null) {
        side.linesUnallocated++;
        continue;
      }
      side.linesAllocated++;
      const k = `${(input.lines[i] as OrderInput["lines"][number]).sku}\u0000${w}`;
      taken.set(k, (taken.get(k) ?? 0) + qty);
      units.set(w, (units.get(w) ?? 0) + qty);
      const per = byWarehouse.get(w) ?? { lines: 0, units: 0 };
      per.lines++;
      per.units += qty;
      byWarehouse.set(w, per);
      const d = l.decision.candidates.find((c) => c.warehouse === w)?.distanceKm ?? null;
      if (d !== null) {
        km += d;
        kmLines++;
      }
    }
  }
  // Object.fromEntries defines each key, so a warehouse "__proto__" is a property like any other.
  side.byWarehouse = Object.fromEntries(byWarehouse);
  side.shipmentsPerOrderMean = routedOrders === 0 ? 0 : round(shipments / routedOrders);
  side.distanceKmMean = kmLines === 0 ? null : round(km / kmLines);
  return { side, choices };
}

const round = (n: number) => Math.round(n * 1000) / 1000;
