import { assert } from "../assert.ts";
import { available, type Position } from "../ledger/types.ts";
import { type IdRecord, own } from "../own.ts";
import { type ChannelSync, everyWarehouse, marketplaceHeldOf } from "./rules.ts";

/**
 * The warehouses that feed a channel: enabled warehouses serving it (`warehousesOfNetwork`, from
 * `candidatesFor(network, channel)`) that the channel's rule also lists. A disabled warehouse never feeds.
 */
export function feedingWarehouses(rule: ChannelSync, warehousesOfNetwork: readonly string[]): string[] {
  if (rule.warehouses.includes(everyWarehouse)) return [...warehousesOfNetwork];
  return warehousesOfNetwork.filter((w) => rule.warehouses.includes(w));
}

/** Σ available over the feeding warehouses, each clamped at 0: what the ledger can back. */
export function backedUnits(
  positions: Readonly<IdRecord<Position>>,
  rule: ChannelSync,
  warehousesOfNetwork: readonly string[],
): number {
  let sum = 0;
  for (const w of feedingWarehouses(rule, warehousesOfNetwork)) {
    const p = own(positions, w);
    if (p !== undefined) sum += Math.max(0, available(p));
  }
  return sum;
}

/**
 * Available-to-sell of one SKU on one channel. The order of operations:
 *
 *   1. backed  = Σ max(0, available) over the feeding warehouses (enabled, serving, listed by the rule)
 *   2. shared  = floor(backed × sharePercent / 100)
 *   3. minus bufferUnits
 *   4. minus what the marketplace already holds for the SKU (marketplaceHeld[sku] ?? marketplaceHeldUnits)
 *   5. below lowStockThreshold → 0; never below 0
 *
 * Worked example: w1 available 120, w2 available 35, w3 available 50 but disabled; share 80 %, buffer 10,
 * marketplace holds 4, threshold 20. backed = 120 + 35 = 155 (w3 does not feed); shared = floor(124) = 124;
 * 124 − 10 = 114; 114 − 4 = 110; 110 ≥ 20 → ATS 110. The same rule with w1 at 5: backed 40, shared 32,
 * 32 − 10 − 4 = 18 < 20 → ATS 0.
 *
 * Share comes before the buffer so the buffer is a fixed number of units whatever the share; the marketplace's
 * units come after both because they are already sold on its side. The result is never negative and never
 * more than the ledger backs (sharePercent ≤ 100 and every later step only subtracts).
 */
export function atsOf(
  positions: Readonly<IdRecord<Position>>,
  sku: string,
  rule: ChannelSync,
  warehousesOfNetwork: readonly string[],
): number {
  const backed = backedUnits(positions, rule, warehousesOfNetwork);
  const shared = shareOf(backed, rule.sharePercent);
  const net = shared - rule.bufferUnits - marketplaceHeldOf(rule, sku);
  const ats = net < rule.lowStockThreshold ? 0 : Math.max(0, net);
  assert(Number.isSafeInteger(ats), "ATS is a whole number");
  assert(ats >= 0, "ATS is never negative");
  assert(ats <= backed, "ATS never exceeds what the ledger backs");
  return ats;
}

/**
 * floor(units × percent / 100) without the product: backed is at most warehousesMax (256) ×
 * ledger.positionUnitsMax (≤ 10^13) ≈ 2.6 × 10^15, under 2^53 ≈ 9.0 × 10^15, but × 100 it would not be.
 */
function shareOf(units: number, percent: number): number {
  const hundreds = Math.floor(units / 100);
  return hundreds * percent + Math.floor(((units - hundreds * 100) * percent) / 100);
}

/**
 * Whether a change must go out before the flush window (StockSync's `urgent`): the channel starts showing 0
 * (stock ran out, or fell below the low-stock threshold, which shows 0). A channel still showing units it no
 * longer has is where overselling comes from. `previousAts` null: the channel's figure is not known.
 */
export function isUrgent(previousAts: number | null, nextAts: number): boolean {
  return nextAts === 0 && previousAts !== 0;
}
