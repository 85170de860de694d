import type { NatsConnection } from "@nats-io/transport-node";
import type { Config } from "../config/index.ts";
import type { Network } from "../domain/network/index.ts";
import type { RoutingView } from "../domain/orders/index.ts";
import type { Instrumentation } from "../instrumentation/index.ts";
import { PartitionStore, partitionDir } from "../store/index.ts";
import type { PartitionApplier } from "../stream/partition-runner.ts";
import type { Stage } from "../stream/subjects.ts";
import { type ComponentView, KitsAts } from "./kits-ats.ts";
import { type CapacityOptions, LedgerApplier, ledgerTables } from "./ledger/applier.ts";
import { capacityDefaults, poolLimits } from "./ledger/capacity.ts";
import { capacityPoolOf } from "./ledger/capacity-pool.ts";
import type { FeedPublish } from "./ledger/position-feed.ts";
import { ledgerUpgrades } from "./ledger/upgrade.ts";
import { OrderApplier, orderTables } from "./order/applier.ts";

/** What an applier is built from, besides its store: all of it serializable or rebuilt where it runs. */
export type ApplierDeps = {
  config: Config;
  events: Instrumentation;
  network: () => Network;
  /** What the order stage reads of the ledger (committed positions and loads); unused by the ledger stage. */
  routing: RoutingView;
  /**
   * Core NATS, for hints other processes may read: the ledger's position feed (src/stages/ledger/
   * position-feed.ts). Absent (offline admin commands, tests): no feed is published.
   */
  nc?: Pick<NatsConnection, "publish">;
  /**
   * The whole connection, where the ledger may claim warehouse capacity from the shared pool (NATS KV,
   * docs/capacity.md). Absent (offline admin commands, tests that build appliers alone): capacity is not
   * enforced by the ledger.
   */
  capacityNc?: NatsConnection;
};

/**
 * A stage, once: its tables, the upgrades of its stored layout and its applier. Start-up (src/host), the
 * offline admin commands (src/store/admin.ts) and tests open partitions through it, so they agree.
 */
export type StageDefinition<A extends PartitionApplier = PartitionApplier> = {
  stage: Stage;
  tables: readonly string[];
  upgrades?: Parameters<typeof PartitionStore.open>[2]["upgrades"];
  applier(index: number, store: PartitionStore, deps: ApplierDeps): A;
};

export const ledgerStage: StageDefinition<LedgerApplier> = {
  stage: "ledger",
  tables: ledgerTables,
  upgrades: ledgerUpgrades,
  applier: (index, store, d) => {
    const applier = new LedgerApplier(
      index,
      d.config,
      store,
      d.events,
      d.network,
      Date.now,
      // One process reads every ledger partition's LMDB (its own or a worker's): only a cluster needs the feed.
      feedPublisher(d.config.cluster.enabled ? d.nc : undefined),
      { fullIntervalMs: d.config.sync.reconcileFullIntervalMs },
      capacityOptions(d),
    );
    applier.outputs.reconcileCounted = (c) => d.events.emit("channel_reconciled", c);
    // Kit ATS reads the components through routing's read view (every ledger partition of this process, or
    // the position feed in a cluster): the kits this partition owns go out with its stock.
    if (isComponentView(d.routing))
      applier.outputs.kitsAts = new KitsAts(d.network, d.routing, d.config.streams.partitionCount);
    return applier;
  },
};

/** Capacity is claimed wherever the partition runs with a NATS connection (main thread, worker, node). */
function capacityOptions(d: ApplierDeps): CapacityOptions | null {
  const nc = d.capacityNc ?? (isConnection(d.nc) ? d.nc : undefined);
  if (nc === undefined) return null;
  const limits = { ...capacityDefaults, ...d.config.capacity };
  return {
    pool: capacityPoolOf(nc, { replicas: d.config.streams.replicas }, poolLimits(limits)),
    limits,
    onEvent: (e) =>
      e.type === "claimed"
        ? d.events.emit("capacity_claimed", {
            partition: e.partition,
            warehouse: e.warehouse,
            outcome: e.outcome,
            units: e.units,
          })
        : d.events.emit("capacity_short", {
            partition: e.partition,
            warehouse: e.warehouse,
            poolFull: e.poolFull,
            lines: e.lines,
          }),
  };
}

/** A read view that also says each SKU's ledger version (LedgerReadView, RoutingPort): kit ATS needs it. */
function isComponentView(v: RoutingView): v is RoutingView & ComponentView {
  return typeof (v as Partial<ComponentView>).version === "function";
}

/** A host's context carries the whole connection (src/host/partition-host.ts HostContext) in `nc`. */
function isConnection(nc: ApplierDeps["nc"]): nc is NatsConnection {
  return nc !== undefined && typeof (nc as Partial<NatsConnection>).request === "function";
}

function feedPublisher(nc: ApplierDeps["nc"]): FeedPublish | null {
  return nc === undefined ? null : (subject, data) => nc.publish(subject, data);
}

export const orderStage: StageDefinition<OrderApplier> = {
  stage: "order",
  tables: orderTables,
  applier: (index, store, d) => new OrderApplier(index, d.config, store, d.network, d.events, d.routing),
};

export const stageDefinitions: {
  ledger: StageDefinition<LedgerApplier>;
  order: StageDefinition<OrderApplier>;
} = { ledger: ledgerStage, order: orderStage };

/** Opens one partition's store under `config.data.dir` (read-only: inspection while Sluice runs). */
export function openPartitionStore(
  config: Config,
  stage: Stage,
  index: number,
  options: { readOnly?: boolean } = {},
): PartitionStore {
  const def = stageDefinitions[stage];
  return PartitionStore.open(
    partitionDir(config.data.dir, stage, index),
    { stage, partition: index, partitionCount: config.streams.partitionCount },
    {
      mapBytesMax: config.store.mapBytesMax,
      tables: def.tables,
      routedCountMax: config.store.routedCountMax,
      ...(options.readOnly === true ? { readOnly: true } : {}),
      ...(def.upgrades === undefined ? {} : { upgrades: def.upgrades }),
    },
  );
}
