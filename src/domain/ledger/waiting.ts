import type { WaitingLine } from "./types.ts";

// Backorders filled when stock arrives (docs/architecture.md, "Backorders are filled when stock arrives").
// A line refused for want of stock whose order allows backorders waits in its SKU's waiting list, kept by the
// ledger partition that owns the SKU: rows `waiting` ([sku, −priority, arrival] → WaitingLine) and one head
// per SKU (`waitingHeads`: count and next arrival number). Every command that raises a position's available
// fills waiting lines in the same transaction, before the ATS of that batch is offered to channels.

/** A waiting row's key: a SKU's rows are one contiguous range, in fill order (priority desc, arrival asc). */
export type WaitingKey = [sku: string, rank: number, arrival: number];

/** `0 - priority`, not `-priority`: priority 0 gives +0, one key for one value. */
export function waitingKey(w: Pick<WaitingLine, "sku" | "priority" | "arrival">): WaitingKey {
  return [w.sku, 0 - w.priority, w.arrival];
}

export const waitingKeyText = (k: WaitingKey): string => `${k[0]}\u0000${k[1]}\u0000${k[2]}`;

/**
 * The order lines are filled in: higher priority first, then the first to wait. A line that does not fit
 * (too large for what is available at any of its candidates) is passed over, and smaller lines behind it
 * may be filled: stock is never held back for a line that cannot take it now.
 */
export function fillOrder(a: WaitingLine, b: WaitingLine): number {
  return b.priority - a.priority || a.arrival - b.arrival;
}
