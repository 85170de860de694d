import type { StockItem } from "../../../src/sink/marketplaces/types.ts";

// Stock outputs as Sluice writes them on sluice.out.stock.<channel>, and the value a marketplace must end on.

/**
 * `roundsCount` rounds over `skus`: each SKU changes in a round with probability `changeRate`; most changes
 * are a new version, some keep the version with a new ATS (a rule change or a resync, as Sluice sends them).
 */
export function stockRounds(
  random: () => number,
  skus: string[],
  roundsCount: number,
  changeRate = 0.6,
): StockItem[][] {
  const version = new Map<string, number>();
  const rounds: StockItem[][] = [];
  for (let r = 0; r < roundsCount; r++) {
    const round: StockItem[] = [];
    for (const sku of skus) {
      if (r > 0 && random() >= changeRate) continue;
      const had = version.get(sku);
      const v = had === undefined || random() < 0.8 ? (had ?? 0) + 1 : had;
      version.set(sku, v);
      round.push({ sku, ats: Math.floor(random() * 500), version: v, atMs: 1_700_000_000_000 + r });
    }
    rounds.push(round);
  }
  return rounds;
}

/** A round cut into envelopes of 1 to `itemsMax` items, as a channel's itemsPerRequestMax cuts them. */
export function envelopes(
  random: () => number,
  items: StockItem[],
  itemsMax = 50,
): Array<{ items: StockItem[] }> {
  const out: Array<{ items: StockItem[] }> = [];
  for (let i = 0; i < items.length; ) {
    const n = 1 + Math.floor(random() * itemsMax);
    out.push({ items: items.slice(i, i + n) });
    i += n;
  }
  return out;
}

/**
 * The reference model: items in stream order, each applied when its version is at least the one applied
 * (an equal version may carry a new ATS: docs/sync-and-erp.md). What every marketplace must end on.
 */
export function newestValues(published: StockItem[]): Map<string, StockItem> {
  const out = new Map<string, StockItem>();
  for (const item of published) {
    const had = out.get(item.sku);
    if (had === undefined || item.version >= had.version) out.set(item.sku, item);
  }
  return out;
}
