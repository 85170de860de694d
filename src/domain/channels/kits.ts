import { assert } from "../assert.ts";
import type { Position } from "../ledger/types.ts";
import type { Kit } from "../network/index.ts";
import type { IdRecord } from "../own.ts";
import { atsOf } from "./ats.ts";
import type { ChannelSync } from "./rules.ts";

// Kit ATS (docs/kits.md): what a channel may sell of a kit SKU, from its components' stock. Pure: the caller
// reads the components' committed state (src/stages/kits-ats.ts) and offers the result to stock sync.

/** A component's committed ledger state as read: its positions and its per-SKU ledger version. */
export type ComponentState = { positions: Readonly<IdRecord<Position>>; version: number };

/**
 * A kit's ATS on one channel: the minimum over its components of ⌊component ATS / units per kit⌋, each
 * component's ATS computed by the channel's rule exactly as for a plain SKU (atsOf: feeding warehouses,
 * share, buffer, marketplace-held, low-stock threshold, of the component). A component never stocked counts 0.
 *
 * Worked example: kit = 2 × A + 1 × B; channel ATS of A 7, of B 5 ⇒ min(⌊7/2⌋, ⌊5/1⌋) = min(3, 5) = 3.
 *
 * It may promise a kit whose components sit in different warehouses (a kit ships whole from one): the
 * ledger still refuses such a reservation (no oversell), and the order is backordered or rejected.
 */
export function kitAtsOf(
  kit: Kit,
  components: ReadonlyArray<ComponentState | undefined>,
  rule: ChannelSync,
  warehousesOfNetwork: readonly string[],
): number {
  assert(components.length === kit.components.length, "one state per component");
  let kits = Number.POSITIVE_INFINITY;
  for (const [i, c] of kit.components.entries()) {
    const state = components[i];
    const ats = state === undefined ? 0 : atsOf(state.positions, c.sku, rule, warehousesOfNetwork);
    kits = Math.min(kits, Math.floor(ats / c.qty));
  }
  const out = kits === Number.POSITIVE_INFINITY ? 0 : kits;
  assert(Number.isSafeInteger(out) && out >= 0, "kit ATS is a whole number ≥ 0");
  return out;
}

/**
 * The version of a kit's ATS: the sum of its components' ledger versions. Each of those never decreases and
 * rises with every change of its SKU, so the sum never decreases and rises whenever an input of the kit's
 * ATS changed (invariant 4 for the kit SKU). A component never stocked counts 0. Sums stay exact: ≤ 16
 * components × 2^48 entries each < 2^53.
 */
export function kitVersionOf(components: ReadonlyArray<ComponentState | undefined>): number {
  let sum = 0;
  for (const c of components) sum += c?.version ?? 0;
  assert(Number.isSafeInteger(sum), "a kit version is exact");
  return sum;
}
