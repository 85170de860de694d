// Routing decisions per second: the pure router (src/domain/routing) alone, as the order stage calls it
// for a new order, with 20 warehouses (coordinates, capacities, carriers with cut-offs, min stock), Zipf
// SKU popularity and 1–3 lines per order. Stock and load are read through the same kind of synchronous
// view the order stage uses, backed by in-memory maps here so only routing is measured.
//
//   bun bench/routing.ts [--decisions 200000] [--warehouses 20] [--skus 10000] [--seed 1]
import { parseArgs } from "node:util";
import type { Position } from "../src/domain/ledger/index.ts";
import { parseNetwork } from "../src/domain/network/index.ts";
import { type RouteOrder, route } from "../src/domain/routing/index.ts";

const { values } = parseArgs({
  options: {
    decisions: { type: "string", default: "200000" },
    warehouses: { type: "string", default: "20" },
    skus: { type: "string", default: "10000" },
    seed: { type: "string", default: "1" },
  },
});
const decisions = Number(values.decisions);
const warehouseCount = Number(values.warehouses);
const skuCount = Number(values.skus);

// mulberry32: a small seeded PRNG, so runs are repeatable.
let state = Number(values.seed) >>> 0;
const random = () => {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

const parsed = parseNetwork(
  {
    warehouses: Array.from({ length: warehouseCount }, (_, i) => ({
      id: `w${i + 1}`,
      region: `R${i % 5}`,
      lat: -30 + random() * 25,
      lon: -55 + random() * 20,
      capacityPerDay: 50_000 + Math.floor(random() * 50_000),
      carriers: [
        { id: "express", cutoff: "15:00", transitDays: 1 },
        { id: "ground", cutoff: "18:00", transitDays: 4 },
      ],
      utcOffsetMinutes: -180,
      minStockDefault: i % 4 === 0 ? 2 : 0,
    })),
    channels: [{ id: "*" }],
  },
  "bench",
);
if (!parsed.ok) throw new Error(parsed.detail);
const network = parsed.value;

// Stock: each SKU at about half of the warehouses.
const stock = new Map<string, Record<string, Position>>();
for (let s = 0; s < skuCount; s++) {
  const positions: Record<string, Position> = {};
  for (const w of network.warehouses) {
    if (random() < 0.5)
      positions[w.id] = {
        onHand: Math.floor(random() * 200),
        reserved: 0,
        damaged: 0,
        qualityControl: 0,
        safetyStock: 0,
      };
  }
  stock.set(`SKU-${s}`, positions);
}
const load = new Map(network.warehouses.map((w) => [w.id, Math.floor(random() * w.capacityPerDay * 0.8)]));

// Zipf(1) popularity by inverse CDF over a precomputed table.
const cdf: number[] = [];
let sum = 0;
for (let k = 1; k <= skuCount; k++) {
  sum += 1 / k;
  cdf.push(sum);
}
const zipf = () => {
  const x = random() * sum;
  let lo = 0;
  let hi = cdf.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((cdf[mid] as number) < x) lo = mid + 1;
    else hi = mid;
  }
  return `SKU-${lo}`;
};

const nowMs = Date.UTC(2026, 10, 11, 12, 0, 0);
const orders: RouteOrder[] = Array.from({ length: 10_000 }, () => {
  const r = random();
  const lineCount = r < 0.8 ? 1 : r < 0.95 ? 2 : 3;
  return {
    channel: "shop",
    shipTo: { region: `R${Math.floor(random() * 5)}`, lat: -30 + random() * 25, lon: -55 + random() * 20 },
    shipByMs: nowMs + 2 * 86_400_000,
    split: { mode: "allow_partial", maxShipments: 0 },
    lines: Array.from({ length: lineCount }, (_, i) => ({
      lineId: String(i + 1),
      sku: zipf(),
      qty: 1 + Math.floor(random() * 3),
      excluded: [],
    })),
    used: new Set(),
  };
});
const ctx = { stock: (sku: string) => stock.get(sku), load: (w: string) => load.get(w) ?? 0, nowMs };

for (let i = 0; i < 20_000; i++) route(orders[i % orders.length] as RouteOrder, network, ctx); // warm-up
let lines = 0;
let allocated = 0;
const t0 = performance.now();
for (let i = 0; i < decisions; i++) {
  const result = route(orders[i % orders.length] as RouteOrder, network, ctx);
  lines += result.lines.length;
  for (const l of result.lines) if (l.decision.chosen !== null) allocated++;
}
const seconds = (performance.now() - t0) / 1000;
console.log(
  JSON.stringify(
    {
      decisions,
      warehouses: warehouseCount,
      skus: skuCount,
      linesPerOrderMean: Math.round((lines / decisions) * 100) / 100,
      linesAllocatedShare: Math.round((allocated / lines) * 1000) / 1000,
      seconds: Math.round(seconds * 1000) / 1000,
      orderDecisionsPerSecond: Math.round(decisions / seconds),
      lineDecisionsPerSecond: Math.round(lines / seconds),
    },
    null,
    2,
  ),
);
