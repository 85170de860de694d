import type { Config } from "../../config/index.ts";
import { assert } from "../../domain/assert.ts";
import type { SkuHistory } from "../../domain/ledger/history.ts";
import {
  type Allocation,
  type CapacityDay,
  capacityKey,
  Ledger,
  type LedgerChanges,
  type LedgerView,
  type LineResult,
  type RefusalCode,
  type SkuState,
  type StockCommand,
  type WarehouseLoad,
} from "../../domain/ledger/index.ts";
import type { Network } from "../../domain/network/index.ts";
import type { OrderInputLimits } from "../../domain/orders/commands.ts";
import type { Instrumentation } from "../../instrumentation/index.ts";
import type { Op, OutboxItem, PartitionStore } from "../../store/index.ts";
import {
  appliedPosition,
  type InboundMessage,
  type PartitionApplier,
} from "../../stream/partition-runner.ts";
import { subjects, tokenPartition } from "../../stream/subjects.ts";
import { BoundedCache, skuStateBytes } from "../cache.ts";
import { Envelopes, type Reject, rejecter } from "../envelopes.ts";
import type { InboundContext } from "../inbound.ts";
import {
  CapacityClaimer,
  type CapacityEvent,
  type CapacityLimits,
  capacityDefaults,
  capacityTables,
} from "./capacity.ts";
import type { CapacityPool } from "./capacity-pool.ts";
import { compactionTables, LedgerCompactor } from "./compaction.ts";
import { decodeLedgerMessage, type LedgerCommand } from "./inbound.ts";
import { LedgerOutputs, outputTables } from "./outputs.ts";
import { type FeedPublish, PositionFeed, positionFeedMessageBytesTarget } from "./position-feed.ts";
import { type ReconcileInput, type ReconcileOptions, reconcileDefaults } from "./reconcile.ts";
import { openReservationsOf, reservationOps, reservationTables } from "./reservations.ts";
import { waitingHeadOf, waitingLinesIn, waitingOf, waitingOps, waitingTables } from "./waiting.ts";

/** The stock command ids a partition remembers (see CommandIds). */
export const commandIdTables = ["commandIds", "commandIdsByAge"] as const;

export const ledgerTables = [
  "skus",
  "entries",
  "allocations",
  "load",
  ...outputTables,
  ...commandIdTables,
  ...reservationTables,
  ...compactionTables,
  ...waitingTables,
  ...capacityTables,
] as const;

/** What `commandIds` holds per [sku, commandId]: the first outcome of the command and the input it came in. */
export type CommandIdRecord = { seq: number; atMs: number; refusal: RefusalCode | null };

type FreshCommandId = { key: [string, string]; age: [number, number]; record: CommandIdRecord };

// Deleting at most this many more ids than a batch adds keeps each commit short after
// ledger.commandIdsCountMax is lowered: the surplus goes over the next batches (as the routed table's does).
const commandIdsTrimPerBatchMax = 10_000;

/**
 * The stock command ids a ledger partition applied or refused, so a repeat changes nothing, however late it
 * comes (docs/subjects.md, "commandId"). Two tables of the partition's environment, written with the batch:
 * `commandIds` ([sku, commandId] → CommandIdRecord) answers "seen before?"; `commandIdsByAge` ([seq, item] →
 * [sku, commandId]) orders them by arrival, so past ledger.commandIdsCountMax the oldest are forgotten first.
 * [seq, item] is unique and grows: a stream sequence is applied once, and an envelope's items have indices.
 */
class CommandIds {
  /** This batch's new ids, in arrival order: reads see committed state, so the batch's own are kept here. */
  private readonly fresh = new Map<string, FreshCommandId>();

  constructor(
    private readonly store: PartitionStore,
    private readonly countMax: number,
  ) {}

  begin(): void {
    this.fresh.clear();
  }

  /** The first outcome of this SKU's command id, or undefined when the partition does not remember it. */
  seen(sku: string, commandId: string): CommandIdRecord | undefined {
    // Ids never hold control characters (parseId): NUL separates the two without ambiguity.
    const fresh = this.fresh.get(`${sku}\u0000${commandId}`);
    return fresh?.record ?? this.store.get<CommandIdRecord>("commandIds", [sku, commandId]);
  }

  remember(sku: string, commandId: string, age: [number, number], record: CommandIdRecord): void {
    const name = `${sku}\u0000${commandId}`;
    assert(!this.fresh.has(name), "a command id is remembered once per batch");
    this.fresh.set(name, { key: [sku, commandId], age, record });
  }

  /** The batch's puts, and the deletes that keep the newest `countMax`; then a fresh batch. */
  takeOps(): Op[] {
    const fresh = [...this.fresh.values()];
    this.fresh.clear();
    if (fresh.length === 0) return [];
    // By age, not `commandIds`: LMDB's count of a table also holds its shared msgpack structures record,
    // which object values (CommandIdRecord) have and array values ([sku, commandId]) do not.
    const before = this.store.count("commandIdsByAge");
    const excess = before + fresh.length - this.countMax;
    const drop = Math.max(0, Math.min(excess, fresh.length + commandIdsTrimPerBatchMax));
    const dropCommitted = Math.min(drop, before);
    const ops: Op[] = [];
    const oldest =
      dropCommitted === 0
        ? []
        : this.store.range<[string, string]>("commandIdsByAge", { limit: dropCommitted });
    for (const { key, value } of oldest) {
      assert(this.store.get("commandIds", value) !== undefined, "an id by age is a remembered id");
      ops.push({ op: "delete", table: "commandIdsByAge", key });
      ops.push({ op: "delete", table: "commandIds", key: value });
    }
    // More new ids than the limit in one batch: the oldest of them are forgotten at once (never written).
    for (const f of fresh.slice(drop - dropCommitted)) {
      ops.push({ op: "put", table: "commandIds", key: f.key, value: f.record });
      ops.push({ op: "put", table: "commandIdsByAge", key: f.age, value: f.key });
    }
    return ops;
  }
}

function feedLimits(c: Config) {
  return {
    messageBytesTarget: Math.min(c.streams.messageBytesMax, positionFeedMessageBytesTarget),
    messageBytesMax: c.streams.messageBytesMax,
    loadRefreshMs: c.routing.loadRefreshMs,
    fullMs: c.routing.feedFullMs,
    fullSkusPerStepMax: c.routing.feedFullSkusPerTickMax,
    stepMs: c.sync.tickMs,
  };
}

export function domainLimits(c: Config): OrderInputLimits {
  return {
    quantityMax: c.ledger.quantityMax,
    idBytesMax: c.ledger.idBytesMax,
    linesPerOrderMax: c.orders.linesPerOrderMax,
    itemsPerMessageMax: c.ledger.itemsPerMessageMax,
    textBytesMax: c.orders.textBytesMax,
  };
}

/** The ledger view over a partition's store: synchronous, memory-mapped reads of committed state. */
export function ledgerView(
  store: PartitionStore,
  cache: BoundedCache<string, SkuState> | null = null,
): LedgerView {
  return {
    getSku: (sku) => {
      const load = () => store.get<SkuState>("skus", sku);
      return cache === null ? load() : cache.getOr(sku, load);
    },
    getAllocation: (sku, orderKey, lineId) => store.get("allocations", [sku, orderKey, lineId]),
    getLoad: (warehouse) => store.get<WarehouseLoad>("load", warehouse),
    // A count reads the reservation index, never the SKU's allocation history (src/stages/ledger/reservations.ts).
    // A store opened without the index table (an older table list) is scanned as before.
    ...(store.hasTable("reservations")
      ? { openReservations: (sku: string, warehouse: string) => openReservationsOf(store, sku, warehouse) }
      : {
          allocationsOf: (sku: string) => [
            ...store.rangeValues<Allocation>("allocations", { start: [sku], end: [`${sku}\u0000`] }),
          ],
        }),
    ...(store.hasTable("history")
      ? { historyOf: (sku: string) => store.get<SkuHistory>("history", sku) }
      : {}),
    ...(store.hasTable("waiting")
      ? {
          getWaitingHead: (sku: string) => waitingHeadOf(store, sku),
          waitingOf: (sku: string) => waitingOf(store, sku),
        }
      : {}),
    ...(store.hasTable("capacity")
      ? {
          getCapacity: (day: number, warehouse: string) =>
            store.get<CapacityDay>("capacity", capacityKey({ day, warehouse })),
        }
      : {}),
  };
}

/** The capacity rows a batch or tick writes (src/stages/ledger/capacity.ts). */
function capacityOps(changes: Pick<LedgerChanges, "capacity">): Op[] {
  return changes.capacity.map((c) => ({ op: "put", table: "capacity", key: capacityKey(c), value: c }));
}

/** Where a ledger partition claims warehouse capacity (absent: capacity is not enforced; docs/capacity.md). */
export type CapacityOptions = {
  pool: CapacityPool;
  limits?: CapacityLimits;
  onEvent?: (e: CapacityEvent) => void;
};

/**
 * The ledger stage of one partition: the single writer of the SKUs that hash to it. Three inputs, by the
 * subject's kind token: `stock.<sku>` (public stock commands), `items.<source>` (bulk and WMS stock items,
 * split per partition by the router) and `cmd.<orderPartition>` (line requests from the order stage), each
 * turned into typed commands or dead letters by the inbound step (./inbound.ts) before anything is applied.
 * Bad input and refused stock commands become dead letters in the same transaction; the batch moves on.
 */
export class LedgerApplier implements PartitionApplier {
  readonly ledger: Ledger;
  /** What the inbound step holds each message to: this partition, its peers' count, the input limits. */
  private readonly inbound: InboundContext<OrderInputLimits>;
  private readonly cache: BoundedCache<string, SkuState>;
  private readonly commandIds: CommandIds;
  readonly outputs: LedgerOutputs;
  /** Retention of history: a bounded pass per ledger.compactionIntervalMs, in a batch or a tick. */
  readonly compactor: LedgerCompactor;
  /** Stock updates and ERP windows are due by time: looked for every sync.tickMs. */
  readonly tickMs: number;
  /** Each batch takes what is due itself: ticks matter only when no input flows. */
  readonly tickWhenBusy = false;
  /** Positions and loads for routing views in other processes (null: nothing published, e.g. offline). */
  readonly feed: PositionFeed | null;

  constructor(
    readonly partition: number,
    private readonly config: Config,
    private readonly store: PartitionStore,
    private readonly events: Instrumentation,
    network: () => Network,
    private readonly clock: () => number = Date.now,
    publishFeed: FeedPublish | null = null,
    /** Channel reconciliation settings (config `sync.reconcileFullIntervalMs`, src/stages/definition.ts). */
    reconcile: ReconcileOptions = reconcileDefaults,
    /** The capacity pool (null: warehouse capacity is not enforced by this ledger, routing's hint only). */
    capacity: CapacityOptions | null = null,
  ) {
    this.cache = new BoundedCache(config.ledger.cacheCountMax, config.ledger.cacheBytesMax, skuStateBytes);
    this.capacity =
      capacity === null || !store.hasTable("capacity")
        ? null
        : new CapacityClaimer(
            partition,
            config.streams.partitionCount,
            capacity.pool,
            network,
            store,
            capacity.limits ?? capacityDefaults,
            clock,
            capacity.onEvent,
          );
    this.ledger = new Ledger(
      ledgerView(store, this.cache),
      {
        positionUnitsMax: config.ledger.positionUnitsMax,
        waitingLinesPerSkuMax: config.ledger.waitingLinesPerSkuMax,
      },
      this.capacity === null ? null : { limited: this.capacity.limited },
    );
    this.inbound = {
      partition,
      partitionCount: config.streams.partitionCount,
      limits: domainLimits(config),
    };
    this.commandIds = new CommandIds(store, config.ledger.commandIdsCountMax);
    this.tickMs = config.sync.tickMs;
    this.compactor = new LedgerCompactor(store, config.ledger);
    this.outputs = new LedgerOutputs(
      partition,
      config,
      store,
      network,
      events,
      (s) => this.cache.set(s.sku, s),
      reconcile,
    );
    this.feed =
      publishFeed === null ? null : new PositionFeed(partition, store, feedLimits(config), publishFeed);
    this.waitingLines = store.hasTable("waiting") ? waitingLinesIn(store) : 0;
    events.emit("waiting_lines", { partition, count: this.waitingLines });
    // The first chunks of the day are claimed now, while the runner starts: the first lines find them held.
    this.capacity?.start(clock());
  }

  /** Warehouse capacity this partition holds and claims (null: not enforced). */
  readonly capacity: CapacityClaimer | null;

  /** Chunks claimed in KV since the last batch: held from this batch on, committed with it. */
  private grantCapacity(): number {
    const granted = this.capacity?.takeGranted() ?? [];
    for (const g of granted) this.ledger.grantCapacity(g.warehouse, g.day, g.units);
    return granted.length;
  }

  /** Backordered lines waiting for stock in this partition, as committed (the gauge). */
  private waitingLines: number;

  /** What the batch being committed did to waiting lists: counted once it is durable (a failed commit is redone). */
  private waitingCounted: LedgerChanges | null = null;

  /** The batch or tick just written is durable: what it changed may now be told to other processes. */
  committed(): void {
    this.feed?.committed(this.clock());
    const changes = this.waitingCounted;
    this.waitingCounted = null;
    if (changes !== null) this.countWaiting(changes);
  }

  /** When the last batch was applied (the applier's clock): ticks stand aside while batches flow. */
  private lastApplyMs = Number.NEGATIVE_INFINITY;

  tick(nowMs: number) {
    // Reads committed state only: an idle partition commits nothing, so its feed moves on here.
    this.feed?.tick(nowMs);
    // A batch within the flush window takes what is due itself: then a tick only handles rule changes.
    const out = this.outputs.tick(nowMs, nowMs - this.lastApplyMs < this.config.sync.flushWindowMs);
    const compacted = this.compactor.step(nowMs);
    const capacity = this.capacityTick(nowMs);
    if (out === null && compacted.length === 0 && capacity.length === 0) return null;
    return { ops: [...compacted, ...capacity, ...(out?.ops ?? [])], outbox: out?.outbox ?? [] };
  }

  /** Chunks that landed while the partition was idle are committed by the tick; then top-ups and old days. */
  private capacityTick(nowMs: number): Op[] {
    if (this.capacity === null) return [];
    const ops: Op[] = [];
    if (this.grantCapacity() > 0) {
      const changes = this.ledger.takeChanges();
      assert(changes.skus.length === 0 && changes.entries.length === 0, "a grant changes capacity only");
      ops.push(...capacityOps(changes));
      this.capacity.afterBatch(changes);
      this.ledger.evict();
    }
    ops.push(...this.capacity.tick(nowMs));
    return ops;
  }

  /** Capacity claims in flight for warehouses this partition holds nothing of today: the batch waits for them. */
  beforeApply(): Promise<void> | null {
    return this.capacity?.awaitEmpty() ?? null;
  }

  apply(messages: readonly InboundMessage[]) {
    const outbox: OutboxItem[] = [];
    const reject = rejecter(outbox, (reason) =>
      this.events.emit("dead_lettered", { stage: "ledger", reason }),
    );
    this.commandIds.begin();
    this.grantCapacity();
    // Channel reports are judged after the batch's own stock changes were offered (in finish): against what
    // each channel was last offered once this batch is in.
    const reconciles: ReconcileInput[] = [];
    for (const m of messages) {
      const inbound = decodeLedgerMessage(m, this.inbound);
      // The inbound step's dead letters first, then refusals found applying: each names its source and item
      // (deterministic ids), so their order within a message carries nothing.
      for (const r of inbound.rejects) reject(m, r.reason, r.detail, r.item);
      const input = { seq: m.seq, atMs: m.atMs };
      // Envelope order: each item applies against what the items before it changed.
      for (const c of inbound.commands) {
        if (c.kind === "stock") this.stock(m, c, input, reject);
        else if (c.kind === "reconcile") {
          const refuse: ReconcileInput["reject"] = (reason, detail) => reject(m, reason, detail);
          reconciles.push({ channel: c.channel, snapshot: c.snapshot, seq: m.seq, reject: refuse });
        } else this.line(m, c, input, reject);
      }
    }
    return this.finish(outbox, appliedPosition(this.store, messages), reconciles);
  }

  private stock(
    m: InboundMessage,
    c: Extract<LedgerCommand, { kind: "stock" }>,
    input: { seq: number; atMs: number },
    reject: Reject,
  ): void {
    const one = c.envelopeItem;
    const refusal = this.applyStock(c.sku, c.command, input, one?.index ?? 0);
    if (refusal === null) return;
    if (one === undefined) reject(m, "refused", `${c.command.type} refused: ${refusal}`);
    else {
      const detail = `items envelope item ${one.index}: ${c.command.type} of ${c.sku} refused: ${refusal}`;
      reject(m, "refused", detail, one);
    }
  }

  /**
   * Applies one valid stock command, once per commandId: a repeat of an id the partition remembers changes
   * nothing and is only counted. A refused command's id is remembered too, so a retry gets no second
   * chance against other stock: it stays refused (its one dead letter is the answer). Returns the refusal.
   */
  private applyStock(
    sku: string,
    command: StockCommand,
    input: { seq: number; atMs: number },
    item: number,
  ): RefusalCode | null {
    const id = command.commandId;
    const first = id === undefined ? undefined : this.commandIds.seen(sku, id);
    if (first !== undefined) {
      const outcome = first.refusal === null ? "applied" : "refused";
      this.events.emit("stock_command_repeated", { partition: this.partition, outcome });
      return null;
    }
    const result = this.ledger.applyStock(sku, command, input);
    const refusal = result.ok ? null : result.code;
    if (refusal !== null) this.events.emit("command_refused", { stage: "ledger", code: refusal });
    if (id !== undefined) this.commandIds.remember(sku, id, [input.seq, item], { ...input, refusal });
    return refusal;
  }

  private line(
    m: InboundMessage,
    c: Extract<LedgerCommand, { kind: "line" }>,
    input: { seq: number; atMs: number },
    reject: Reject,
  ): void {
    // A return over ledger.positionUnitsMax changes nothing: its item is refused alone.
    const refusal = this.ledger.applyLine(c.request, input);
    if (refusal === null) return;
    this.events.emit("command_refused", { stage: "ledger", code: refusal });
    const { index } = c.envelopeItem;
    const detail = `cmd envelope item ${index}: ${c.request.kind} of ${c.request.sku} refused: ${refusal}`;
    reject(m, "refused", detail, c.envelopeItem);
  }

  private finish(outbox: OutboxItem[], seqTo: number, reconciles: ReconcileInput[]) {
    const changes = this.ledger.takeChanges();
    // Before the SKU states are written: the outputs record in each the ATS they offered its channels.
    this.lastApplyMs = this.clock();
    const out = this.outputs.afterBatch(changes.skus, changes.entries, this.lastApplyMs, seqTo, reconciles);
    const ops: Op[] = [];
    for (const s of changes.skus) {
      ops.push({ op: "put", table: "skus", key: s.sku, value: s });
      this.cache.set(s.sku, s);
    }
    for (const e of changes.entries)
      ops.push({ op: "put", table: "entries", key: [e.sku, e.version], value: e });
    for (const a of changes.allocations) {
      ops.push({ op: "put", table: "allocations", key: [a.sku, a.orderKey, a.lineId], value: a });
    }
    for (const key of changes.allocationsDeleted) ops.push({ op: "delete", table: "allocations", key });
    ops.push(...reservationOps(changes));
    ops.push(...waitingOps(changes));
    // Counted when committed(): a commit that fails and is applied again must not count twice.
    this.waitingCounted = changes;
    for (const l of changes.loads) ops.push({ op: "put", table: "load", key: l.warehouse, value: l });
    ops.push(...capacityOps(changes));
    this.capacity?.afterBatch(changes);
    this.feed?.stage(changes.skus, changes.loads.length > 0);
    for (const op of this.commandIds.takeOps()) ops.push(op);
    const envelopes = new Envelopes(
      this.config.outbox.itemsPerMessageMax,
      this.config.streams.messageBytesMax,
    );
    for (const r of changes.results) this.answer(envelopes, r);
    this.ledger.evict();
    // Retention first: it reads committed state, and a record this batch writes again must end written.
    const compacted = this.compactor.step(this.lastApplyMs);
    return {
      ops: [...compacted, ...ops, ...out.ops],
      outbox: [...outbox, ...envelopes.drain(), ...out.outbox],
    };
  }

  private countWaiting(changes: LedgerChanges): void {
    const partition = this.partition;
    for (const waitedMs of changes.waitFilledMs)
      this.events.emit("backorder_filled", { partition, waitedMs });
    if (changes.waitRefusedFull > 0)
      this.events.emit("backorder_not_waiting", { partition, count: changes.waitRefusedFull });
    if (changes.waitingDelta === 0) return;
    this.waitingLines += changes.waitingDelta;
    assert(this.waitingLines >= 0, "waiting lines are never negative");
    this.events.emit("waiting_lines", { partition, count: this.waitingLines });
  }

  private answer(envelopes: Envelopes, r: LineResult): void {
    const target = tokenPartition(r.ref.orderKey, this.config.streams.partitionCount);
    envelopes.add(subjects.orderResults(target, this.partition), r);
    if (r.kind === "refused") this.events.emit("command_refused", { stage: "ledger", code: r.code });
    else if (r.kind === "reserved") this.events.emit("line_reserved", { partition: this.partition });
  }
}
