import { loadUnits, type SkuState, type WarehouseLoad } from "../../domain/ledger/index.ts";
import type { RoutingView } from "../../domain/orders/index.ts";
import type { PartitionStore } from "../../store/index.ts";
import { skuPartition } from "../../stream/subjects.ts";

/**
 * What routing reads, in one process: the ledger partitions' committed LMDB state (memory-mapped, read
 * synchronously, never blocking their writers). Stock is read per SKU; warehouse load is summed over every
 * ledger partition and refreshed at most every `refreshMs` (routing.loadRefreshMs), so a route costs one
 * read per line. Slightly stale is safe: the ledger's reservation is the authority and takes the next
 * candidate when stock moved. When partitions spread over processes, this view is fed from the ledger
 * partitions' outputs instead; its interface stays.
 */
export class LedgerReadView implements RoutingView {
  private loads = new Map<string, number>();
  private refreshedAtMs = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly stores: () => ReadonlyArray<PartitionStore | undefined>,
    private readonly partitionCount: number,
    private readonly refreshMs: number,
    private readonly clock: () => number = Date.now,
  ) {}

  stock = (sku: string) => {
    const partition = skuPartition(sku, this.partitionCount);
    const store = this.stores()[partition];
    if (store === undefined || !store.isOpen) return undefined;
    return store.get<SkuState>("skus", sku)?.positions;
  };

  load = (warehouse: string) => {
    const now = this.clock();
    if (now - this.refreshedAtMs >= this.refreshMs) this.refresh(now);
    return this.loads.get(warehouse) ?? 0;
  };

  /** Units counted against each warehouse's capacity now, summed over the ledger partitions. */
  snapshot(): Map<string, number> {
    this.refresh(this.clock());
    return new Map(this.loads);
  }

  private refresh(nowMs: number): void {
    const loads = new Map<string, number>();
    for (const store of this.stores()) {
      if (store === undefined || !store.isOpen) continue;
      for (const l of store.rangeValues<WarehouseLoad>("load", {}))
        loads.set(l.warehouse, (loads.get(l.warehouse) ?? 0) + loadUnits(l, nowMs));
    }
    this.loads = loads;
    this.refreshedAtMs = nowMs;
  }
}
