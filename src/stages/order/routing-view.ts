import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import type { Config } from "../../config/index.ts";
import { loadUnits, type Position, type SkuState, type WarehouseLoad } from "../../domain/ledger/index.ts";
import type { RoutingView } from "../../domain/orders/index.ts";
import type { IdRecord } from "../../domain/own.ts";
import type { PartitionStore } from "../../store/index.ts";
import { skuPartition } from "../../stream/subjects.ts";
import { BoundedCache, skuStateBytes } from "../cache.ts";
import { decodeFeed, type FeedUpdate, positionFeedAll } from "../ledger/position-feed.ts";

/**
 * What routing reads, in one process: the ledger partitions' committed LMDB state (memory-mapped, read
 * synchronously, never blocking their writers). Stock is read per SKU; warehouse load is summed over every
 * ledger partition and refreshed at most every `refreshMs` (routing.loadRefreshMs), so a route costs one
 * read per line. Slightly stale is safe: the ledger's reservation is the authority and takes the next
 * candidate when stock moved. It always knows: a SKU without a record has no stock. Ledger partitions in
 * other processes are read through FeedView instead (RoutingPort picks per partition).
 */
export class LedgerReadView implements RoutingView {
  private loads = new Map<string, number>();
  private refreshedAtMs = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly stores: () => ReadonlyArray<PartitionStore | undefined>,
    private readonly partitionCount: number,
    private readonly refreshMs: number,
    private readonly clock: () => number = Date.now,
    /** Where each partition's load rows come from: this process's LMDB unless told (RoutingPort). */
    private readonly loadSource:
      | ((partition: number, stores: ReadonlyArray<PartitionStore | undefined>) => Iterable<WarehouseLoad>)
      | null = null,
  ) {}

  stock = (sku: string) => {
    const partition = skuPartition(sku, this.partitionCount);
    const store = this.stores()[partition];
    if (store === undefined || !store.isOpen) return undefined;
    return store.get<SkuState>("skus", sku)?.positions;
  };

  /** The SKU's ledger version as committed (0: never changed), or undefined when its store is not open here. */
  version = (sku: string): number | undefined => {
    const store = this.stores()[skuPartition(sku, this.partitionCount)];
    if (store === undefined || !store.isOpen) return undefined;
    return store.get<SkuState>("skus", sku)?.version ?? 0;
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

  /** One ledger partition's committed load table (empty when its store is not open here). */
  loadsOf(partition: number, stores = this.stores()): Iterable<WarehouseLoad> {
    const store = stores[partition];
    if (store === undefined || !store.isOpen) return [];
    return store.rangeValues<WarehouseLoad>("load", {});
  }

  private refresh(nowMs: number): void {
    const loads = new Map<string, number>();
    const stores = this.stores();
    for (let p = 0; p < this.partitionCount; p++)
      addLoads(loads, this.loadSource?.(p, stores) ?? this.loadsOf(p, stores), nowMs);
    this.loads = loads;
    this.refreshedAtMs = nowMs;
  }
}

function addLoads(sums: Map<string, number>, loads: Iterable<WarehouseLoad>, nowMs: number): void {
  for (const l of loads) sums.set(l.warehouse, (sums.get(l.warehouse) ?? 0) + loadUnits(l, nowMs));
}

/** What a FeedView has folded and dropped, for metrics. */
export type FeedViewStats = {
  messages: number;
  /** Messages that did not decode or check (dropped whole). */
  malformed: number;
  /** Messages of partitions this view does not fold (local ones). */
  ignored: number;
  skusApplied: number;
  /** SKU states older than the one held (a late message): dropped. */
  skusStale: number;
  /** Load tables older than the one held: dropped. */
  loadsStale: number;
};

export type FeedViewOptions = {
  partitionCount: number;
  /** routing.viewBytesMax: estimated heap of the SKU states kept; past it the oldest set are dropped. */
  bytesMax: number;
  /** Which ledger partitions to fold (default all): a process leaves out those it reads from LMDB. */
  folds?: (ledgerPartition: number) => boolean;
};

/**
 * Routing's view of ledger partitions in other processes, folded from their position feed
 * (`sluice.view.position.<p>`, core NATS: src/stages/ledger/position-feed.ts). Per SKU the newest version
 * received, in a cache bounded in estimated bytes (routing.viewBytesMax); per partition its newest load
 * table. A SKU it does not hold is *unknown* (`known` false), not empty: routing goes blind and the ledger
 * decides. How stale: a change arrives one commit and one hop after it is made; a lost message, an evicted
 * SKU or a view started late is mended by the partition's next full pass, within routing.feedFullMs plus one
 * pass (SKUs / routing.feedFullSkusPerTickMax steps, at least sync.tickMs apart). A message that
 * does not decode is counted and dropped; nothing here throws into the subscription.
 */
export class FeedView {
  private readonly skus: BoundedCache<string, SkuState>;
  private readonly loads: Array<{ seq: number; rows: WarehouseLoad[] } | undefined>;
  private subscription: Subscription | null = null;
  readonly stats: FeedViewStats = {
    messages: 0,
    malformed: 0,
    ignored: 0,
    skusApplied: 0,
    skusStale: 0,
    loadsStale: 0,
  };

  constructor(private readonly options: FeedViewOptions) {
    // Bounded by bytes alone: a count would bound nothing (a SKU at 1 warehouse or at 200 differ 100-fold).
    this.skus = new BoundedCache(Number.POSITIVE_INFINITY, options.bytesMax, skuStateBytes);
    this.loads = Array.from({ length: options.partitionCount }, () => undefined);
  }

  /** Folds every feed message `nc` delivers from now on (core NATS: none from before). */
  subscribe(nc: NatsConnection): void {
    if (this.subscription !== null) return;
    this.subscription = nc.subscribe(positionFeedAll, {
      callback: (error, msg) => {
        if (error === null) this.receive(msg.subject, msg.data);
      },
    });
  }

  close(): void {
    this.subscription?.unsubscribe();
    this.subscription = null;
  }

  /** One feed message: folded, or counted and dropped. Never throws. Returns whether it was folded. */
  receive(subject: string, data: Uint8Array): boolean {
    this.stats.messages++;
    const decoded = decodeFeed(subject, data, this.options.partitionCount);
    if (!decoded.ok) {
      this.stats.malformed++;
      return false;
    }
    if (this.options.folds?.(decoded.update.partition) === false) {
      this.stats.ignored++;
      return false;
    }
    this.fold(decoded.update);
    return true;
  }

  private fold(u: FeedUpdate): void {
    for (const s of u.skus) {
      const held = this.skus.get(s.sku);
      // Versions only grow (invariant 4): an older state is a message that came late (a partition moved).
      if (held !== undefined && held.version > s.version) {
        this.stats.skusStale++;
        continue;
      }
      this.skus.set(s.sku, s);
      this.stats.skusApplied++;
    }
    if (u.loads === null) return;
    const held = this.loads[u.partition];
    // Its last applied sequence only grows; a table is whole, so the newer replaces the older.
    if (held !== undefined && held.seq > u.seq) this.stats.loadsStale++;
    else this.loads[u.partition] = { seq: u.seq, rows: u.loads };
  }

  stock = (sku: string): Readonly<IdRecord<Position>> | undefined => this.skus.get(sku)?.positions;

  known = (sku: string): boolean => this.skus.get(sku) !== undefined;

  /** The newest ledger version received for the SKU, or undefined when none came yet (unknown). */
  version = (sku: string): number | undefined => this.skus.get(sku)?.version;

  /** The newest load table received from a ledger partition (empty before any). */
  loadsOf(partition: number): readonly WarehouseLoad[] {
    return this.loads[partition]?.rows ?? [];
  }

  /** SKU states held and their estimated bytes (≤ routing.viewBytesMax). */
  get size(): { skus: number; bytes: number } {
    return { skus: this.skus.size, bytes: this.skus.bytes };
  }
}

/**
 * What routing reads when ledger partitions are spread over processes: per SKU, from LMDB when its ledger
 * partition is in this process (`isLocal`: exact, fresh), else from the feed (possibly unknown: blind
 * routing). Loads are summed over every partition, each from where it is read, at most every `refreshMs`.
 * `isLocal` is asked at every read, so partitions moving in or out take effect at once.
 */
export class RoutingPort implements RoutingView {
  /** This process's partitions from LMDB; loads of every partition, each from where it is read. */
  private readonly local: LedgerReadView;

  constructor(
    stores: () => ReadonlyArray<PartitionStore | undefined>,
    readonly feed: FeedView,
    private readonly isLocal: (ledgerPartition: number) => boolean,
    private readonly partitionCount: number,
    refreshMs: number,
    clock: () => number = Date.now,
  ) {
    this.local = new LedgerReadView(stores, partitionCount, refreshMs, clock, (p, all) =>
      isLocal(p) ? this.local.loadsOf(p, all) : feed.loadsOf(p),
    );
  }

  /**
   * The port a process routes with: LMDB for its own ledger partitions, a FeedView subscribed on `nc` for
   * the others (folding only those). `close()` ends the subscription.
   */
  static open(
    nc: NatsConnection,
    config: Config,
    stores: () => ReadonlyArray<PartitionStore | undefined>,
    isLocal: (ledgerPartition: number) => boolean,
  ): RoutingPort {
    const P = config.streams.partitionCount;
    const refreshMs = config.routing.loadRefreshMs;
    const feed = new FeedView({
      partitionCount: P,
      bytesMax: config.routing.viewBytesMax,
      folds: (p) => !isLocal(p),
    });
    feed.subscribe(nc);
    return new RoutingPort(stores, feed, isLocal, P, refreshMs);
  }

  close(): void {
    this.feed.close();
  }

  stock = (sku: string) => {
    const p = skuPartition(sku, this.partitionCount);
    return this.isLocal(p) ? this.local.stock(sku) : this.feed.stock(sku);
  };

  known = (sku: string) => this.isLocal(skuPartition(sku, this.partitionCount)) || this.feed.known(sku);

  /** The SKU's ledger version (kit ATS, src/stages/kits-ats.ts): local LMDB or the feed, as `stock`. */
  version = (sku: string): number | undefined => {
    const p = skuPartition(sku, this.partitionCount);
    return this.isLocal(p) ? this.local.version(sku) : this.feed.version(sku);
  };

  load = (warehouse: string) => this.local.load(warehouse);

  /** Units counted against each warehouse's capacity now, summed over every ledger partition. */
  snapshot(): Map<string, number> {
    return this.local.snapshot();
  }
}
