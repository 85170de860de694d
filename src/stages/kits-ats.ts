import { type ComponentState, kitAtsOf, kitVersionOf } from "../domain/channels/kits.ts";
import type { Position } from "../domain/ledger/types.ts";
import { type Kit, type Network, serving, syncedChannels } from "../domain/network/index.ts";
import type { IdRecord } from "../domain/own.ts";
import type { AtsItem } from "../domain/sync/coalescer.ts";
import { skuPartition } from "../stream/subjects.ts";

/**
 * What kit ATS reads of the components: the routing read view (src/stages/order/routing-view.ts, LedgerReadView
 * in one process, RoutingPort in cluster mode: local LMDB or the position feed). `version` undefined, or
 * `known` false, means the SKU's state is not known here yet (a feed that has not sent it): the kit waits.
 */
export interface ComponentView {
  stock(sku: string): Readonly<IdRecord<Position>> | undefined;
  version(sku: string): number | undefined;
  known?(sku: string): boolean;
}

/** One kit's ATS for every synced channel, at one version. */
export type KitAts = { sku: string; version: number; channels: Array<{ channel: string; ats: number }> };

/**
 * Kits offered per sync tick and partition: each costs ≤ 16 component reads (kitComponentsMax) and one
 * ATS per synced channel, so 1,000 kits ≈ 16,000 memory-mapped reads, well under a millisecond each tick.
 */
export const kitsPerTickMax = 1_000;

/**
 * Kit ATS for the ledger partition that owns each kit SKU (skuPartition of the kit SKU, as for any SKU: its
 * stock-sync coalescer offers it). On each sync tick `due(partition)` gives the kits of that partition whose
 * version rose since they were last offered (all of them after a start: an equal version is applied again by
 * consumers), at most kitsPerTickMax, round robin. Nothing here is durable: versions come from the ledger.
 */
export class KitsAts {
  /** Per kit SKU: the version last handed out (a Map: "__proto__" is an ordinary SKU). */
  private readonly offered = new Map<string, number>();
  private cursor = 0;

  constructor(
    private readonly network: () => Network,
    private readonly view: ComponentView,
    private readonly partitionCount: number,
  ) {}

  /** A kit's ATS per synced channel and its version, or null while a component is not known here. */
  compute(kit: Kit): KitAts | null {
    const states: Array<ComponentState | undefined> = [];
    for (const c of kit.components) {
      if (this.view.known?.(c.sku) === false) return null;
      const version = this.view.version(c.sku);
      if (version === undefined) return null;
      const positions = this.view.stock(c.sku);
      states.push(positions === undefined ? undefined : { positions, version });
    }
    const network = this.network();
    return {
      sku: kit.sku,
      version: kitVersionOf(states),
      channels: syncedChannels(network).map((ch) => ({
        channel: ch.id,
        ats: kitAtsOf(kit, states, ch.sync, serving(network, ch.id).ids),
      })),
    };
  }

  /** The kits of the rule set in force by owning partition, worked out once per rule set (not every tick). */
  private byPartition: { network: Network; kits: Kit[][] } | null = null;

  /** Kits whose SKU `partition` owns. */
  kitsOf(partition: number): Kit[] {
    const network = this.network();
    if (this.byPartition?.network !== network) {
      const kits: Kit[][] = Array.from({ length: this.partitionCount }, () => []);
      for (const k of network.kits ?? []) kits[skuPartition(k.sku, this.partitionCount)]?.push(k);
      this.byPartition = { network, kits };
    }
    return this.byPartition.kits[partition] ?? [];
  }

  /**
   * What to offer on a sync tick of `partition` at `atMs`: one item per (channel, kit) whose version rose
   * since it was last handed out. A caller whose coalescer refused an item calls `forget(sku)`.
   */
  due(partition: number, atMs: number): Array<{ channel: string; item: AtsItem }> {
    const kits = this.kitsOf(partition);
    const out: Array<{ channel: string; item: AtsItem }> = [];
    if (kits.length === 0) return out;
    const n = Math.min(kits.length, kitsPerTickMax);
    for (let i = 0; i < n; i++) {
      const kit = kits[(this.cursor + i) % kits.length] as Kit;
      const value = this.compute(kit);
      if (value === null) continue;
      const last = this.offered.get(kit.sku);
      if (last !== undefined && value.version <= last) continue;
      this.offered.set(kit.sku, value.version);
      for (const c of value.channels)
        out.push({ channel: c.channel, item: { sku: kit.sku, ats: c.ats, version: value.version, atMs } });
    }
    this.cursor = (this.cursor + n) % kits.length;
    return out;
  }

  /** Offer the kit again on the next tick (its coalescer was full, or its channel's rule changed). */
  forget(sku: string): void {
    this.offered.delete(sku);
  }

  /** A rule change: every kit is offered again (its components or the channels' rules may differ). */
  forgetAll(): void {
    this.offered.clear();
  }
}
