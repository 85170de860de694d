import type { Config } from "../../config/index.ts";
import type { Network } from "../../domain/network/index.ts";
import type { OrderInputLimits } from "../../domain/orders/commands.ts";
import {
  type AtRiskOp,
  type AtRiskRow,
  noRoutingView,
  type Order,
  type OrderOutcome,
  Orders,
  type OrderTombstone,
  type OrderView,
  type PendingCancel,
  type RoutingView,
} from "../../domain/orders/index.ts";
import type { Instrumentation } from "../../instrumentation/index.ts";
import type { Op, OutboxItem, PartitionStore } from "../../store/index.ts";
import {
  appliedPosition,
  type InboundMessage,
  type PartitionApplier,
} from "../../stream/partition-runner.ts";
import { skuPartition, subjects } from "../../stream/subjects.ts";
import { BoundedCache, orderBytes } from "../cache.ts";
import { Envelopes, type Reject, rejecter } from "../envelopes.ts";
import { ErpWindow, erpTable } from "../erp-window.ts";
import type { InboundContext } from "../inbound.ts";
import { domainLimits } from "../ledger/applier.ts";
import { BatchTimers } from "./batch-timers.ts";
import { decodeOrderMessage, type OrderCommand } from "./inbound.ts";
import {
  committedRows,
  RetentionBackfill,
  retentionDueMs,
  retentionLimits,
  retentionTables,
  retentionWrite,
} from "./retention.ts";

/**
 * Tables of an order partition: orders, pending (cancels before their order), timers ([dueMs, orderKey]: SLA
 * deadlines and at-risk marks), atRisk ([shipByMs, orderKey] → AtRiskRow: the orders at risk now), the ERP
 * window's and retention's. A new table starts empty (no layout change): orders written before at-risk marks
 * have no at-risk timer.
 */
export const orderTables = ["orders", "pending", "timers", "atRisk", erpTable, ...retentionTables] as const;

/** The gauge's series key: rule-set channel and warehouse ("none": no line of the order is at a warehouse). */
const riskLabels = (row: AtRiskRow): string[] =>
  (row.warehouses.length === 0 ? ["none"] : row.warehouses).map((w) => `${row.rulesChannel}\u0000${w}`);

/** The at-risk counts of a partition as committed: one scan of its atRisk table (only orders at risk). */
export function atRiskCounts(store: PartitionStore): Map<string, number> {
  const counts = new Map<string, number>();
  if (!store.hasTable("atRisk")) return counts;
  for (const { value } of store.rangeLazy<AtRiskRow>("atRisk"))
    for (const k of riskLabels(value)) counts.set(k, (counts.get(k) ?? 0) + 1);
  return counts;
}

/** The order view over a partition's store: synchronous, memory-mapped reads of committed state. */
export function orderView(
  store: PartitionStore,
  cache: BoundedCache<string, Order> | null = null,
): OrderView {
  return {
    getOrder: (key) => {
      const load = () => store.get<Order>("orders", key);
      return cache === null ? load() : cache.getOr(key, load);
    },
    getPendingCancels: (key) => store.get<PendingCancel[]>("pending", key) ?? [],
    getTombstone: (key) => store.get<OrderTombstone>("tombstones", key),
    dueRetention: (index, cutoffMs, limit) => committedRows(store, index, cutoffMs, limit),
    dueTimers: (nowMs, limit) =>
      store.range<number>("timers", { start: [0], end: [nowMs, "\uffff"], limit }).map(({ key }) => {
        const [dueMs, orderKey] = key as [number, string];
        return { dueMs, key: orderKey };
      }),
  };
}

/**
 * The order stage of one partition: every order whose key (channel + order id) hashes to it. Inputs by the
 * subject's kind token: `order|cancel|return.<channel>.<orderId>` (public), `wms.<warehouse>.<event>` (WMS
 * events about an order, routed here), `result.<ledgerPartition>` (the ledger's answers), `clock` (stream time:
 * SLA deadlines fire there). Outputs: line
 * requests to ledger partitions, statuses to `sluice.out.order.<channel>`, requests to
 * `sluice.out.fulfil.<warehouse>`, all through the outbox of the batch's transaction.
 */
export class OrderApplier implements PartitionApplier {
  readonly orders: Orders;
  private readonly store: PartitionStore;
  private readonly limits: OrderInputLimits;
  private readonly inbound: InboundContext<OrderInputLimits>;
  private readonly cache: BoundedCache<string, Order>;
  private readonly erp: ErpWindow;
  private readonly timers: BatchTimers;
  private readonly backfill: RetentionBackfill;
  /** Orders at risk per (rule-set channel, warehouse) as committed: the gauge, kept with every batch's ops. */
  private readonly atRisk: Map<string, number>;
  /** The at-risk index ops of the write in flight: counted when it is committed. */
  private atRiskUncommitted: AtRiskOp[] = [];
  /** Timer writes of the batch already given to the overlay (Orders.timerOps). */
  private timerOpsSeen = 0;
  /** Reservation requests sent to the ledger, not answered yet: line attempt → process time sent (ms), oldest first. */
  private readonly awaiting = new Map<string, number>();

  constructor(
    readonly partition: number,
    private readonly config: Config,
    store: PartitionStore,
    network: () => Network,
    private readonly events: Instrumentation,
    routing: RoutingView = noRoutingView,
    private readonly clock: () => number = Date.now,
  ) {
    this.limits = domainLimits(config);
    this.inbound = { partition, partitionCount: config.streams.partitionCount, limits: this.limits };
    this.cache = new BoundedCache(config.orders.cacheCountMax, config.orders.cacheBytesMax, orderBytes);
    this.erp = new ErpWindow("order", partition, config, store, events);
    this.store = store;
    this.timers = new BatchTimers(store);
    this.backfill = new RetentionBackfill(store, config.orders.retentionPerTickMax);
    this.orders = new Orders(
      // Deadlines are read through the batch's overlay: those it set or fired are not committed yet.
      { ...orderView(store, this.cache), dueTimers: (nowMs, limit) => this.timers.take(nowMs, limit) },
      network,
      {
        historyCountMax: config.orders.historyCountMax,
        pendingCancelsPerOrderMax: config.orders.pendingCancelsPerOrderMax,
        timersPerTickMax: config.orders.timersPerTickMax,
        retention: retentionLimits(config),
        // A kit line takes one ledger line per component; its component ids must fit the ledger's bound.
        linesPerOrderMax: config.orders.linesPerOrderMax,
        idBytesMax: config.ledger.idBytesMax,
        kitWarehousesPerAttemptMax: config.orders.kitWarehousesPerAttemptMax,
      },
      routing,
    );
    // Counted from state at start (and after a takeover: a new applier): right across restarts and moves.
    this.atRisk = atRiskCounts(store);
    this.emitAtRisk();
  }

  /** The partition's whole at-risk count, per series (the metrics edge replaces the partition's series). */
  private emitAtRisk(): void {
    const counts = [...this.atRisk.entries()].map(([k, count]) => {
      const [channel, warehouse] = k.split("\u0000") as [string, string];
      return { channel, warehouse, count };
    });
    this.events.emit("orders_at_risk", { partition: this.partition, counts });
  }

  /** The write `apply` or `tick` returned is durable: its at-risk changes count now. */
  committed(): void {
    const ops = this.atRiskUncommitted;
    this.atRiskUncommitted = [];
    if (ops.length > 0) this.countAtRisk(ops);
  }

  private countAtRisk(ops: readonly AtRiskOp[]): void {
    for (const o of ops) {
      for (const k of riskLabels(o.row)) {
        const n = (this.atRisk.get(k) ?? 0) + (o.op === "put" ? 1 : -1);
        if (n === 0) this.atRisk.delete(k);
        else this.atRisk.set(k, n);
      }
    }
    this.emitAtRisk();
  }

  apply(messages: readonly InboundMessage[]) {
    const outbox: OutboxItem[] = [];
    const reject = rejecter(outbox, (reason) =>
      this.events.emit("dead_lettered", { stage: "order", reason }),
    );
    this.timers.begin();
    this.timerOpsSeen = 0;
    let fired = 0;
    for (const m of messages) {
      const { commands, rejects } = decodeOrderMessage(m, this.inbound);
      for (const r of rejects) reject(m, r.reason, r.detail, r.item);
      for (const c of commands) fired += this.applyCommand(m, c, reject);
    }
    if (fired > 0) this.events.emit("timers_fired", { partition: this.partition, count: fired });
    return this.finish(outbox, appliedPosition(this.store, messages));
  }

  /** One typed command (src/stages/order/inbound.ts); returns the SLA timers it fired. */
  private applyCommand(m: InboundMessage, c: OrderCommand, reject: Reject): number {
    const input = { seq: m.seq, atMs: m.atMs };
    switch (c.kind) {
      case "clock": {
        // Deadlines fire at clock messages only, in stream time: after every input ahead of the clock in the
        // stream, including WMS events the router copied late (their own stamps are later than their arrival).
        // Retention too, after the deadlines: a line cancelled by one makes its order final, not compacted.
        const fired = this.fireDue(c.atMs);
        this.orders.compact(c.atMs);
        return fired;
      }
      case "create": {
        this.outcome(m, this.orders.create(c.key, c.order, input), reject);
        this.takeTimersSet(); // its SLA deadline and at-risk mark may fall due within this batch
        return 0;
      }
      case "cancel":
        this.outcome(m, this.orders.cancel(c.key, c.cancel, input), reject);
        return 0;
      case "return":
        this.outcome(m, this.orders.returned(c.key, c.returned, input), reject);
        return 0;
      case "shipped":
        this.outcome(m, this.orders.shipped(c.key, c.shipped, input), reject);
        return 0;
      case "rejected":
        this.outcome(m, this.orders.rejected(c.key, c.rejected, input), reject);
        return 0;
      case "result": {
        const r = c.result;
        if (r.kind !== "lost") this.awaiting.delete(attemptKey(r.ref.orderKey, r.ref.lineId, r.attempt));
        this.orders.ledgerResult(r, input);
        return 0;
      }
      default:
        return unreachable(c);
    }
  }

  /**
   * The intake gate (answers first): how many new intake messages this partition takes now. It awaits at
   * most orders.inFlightLinesMax reservations from the ledger; at the limit the runner applies only its
   * answer stream (ledger answers, cancels, WMS events, clocks) and new orders wait in JetStream. A message
   * may carry several lines, so the count can pass the limit by one order's lines per message admitted.
   * A reservation unanswered for orders.answerWaitMsMax stops counting: a lost answer cannot close the gate.
   */
  intakeRoom(nowMs: number): number {
    const cutoffMs = nowMs - this.config.orders.answerWaitMsMax;
    for (const [key, sentAtMs] of this.awaiting) {
      if (sentAtMs > cutoffMs) break; // insertion order is send order
      this.awaiting.delete(key);
    }
    return Math.max(0, this.config.orders.inFlightLinesMax - this.awaiting.size);
  }

  /** Reservations sent and not answered yet (the intake gate's count). */
  get inFlightLines(): number {
    return this.awaiting.size;
  }

  /**
   * Only the ERP windows, and the retention backfill of an older version's records (which does not depend on
   * time), run by the process clock: SLA deadlines and retention run in stream time, inside `apply`.
   */
  tick(nowMs: number) {
    const backfill = this.backfill.step();
    if (backfill.length === 0 && !this.erp.due(nowMs)) return null;
    return this.finish([], appliedPosition(this.store, []), backfill);
  }

  /**
   * The earliest committed SLA deadline or retention horizon, or null: the runner publishes a clock message
   * once it passed. While the backfill runs, a row it has not written yet waits for it.
   */
  timerDueMs(): number | null {
    const sla = this.timers.earliestCommittedMs();
    const retention = retentionDueMs(this.store, retentionLimits(this.config));
    if (sla === null) return retention;
    return retention === null ? sla : Math.min(sla, retention);
  }

  /** Fires the timers due by a clock message's stream time `atMs` (at most orders.timersPerTickMax). */
  private fireDue(atMs: number): number {
    if (!this.timers.isDue(atMs)) return 0;
    const count = this.orders.fireDueTimers(atMs);
    // A re-route set a new deadline: it may fall due within this batch too.
    this.takeTimersSet();
    this.timers.settle();
    return count;
  }

  /** Deadlines the domain set since the last call go into the batch's overlay. */
  private takeTimersSet(): void {
    const ops = this.orders.timerOps;
    for (let i = this.timerOpsSeen; i < ops.length; i++) {
      const t = ops[i] as (typeof ops)[number];
      if (t.op === "put") this.timers.set(t.dueMs, t.key);
    }
    this.timerOpsSeen = ops.length;
  }

  private outcome(m: InboundMessage, outcome: OrderOutcome, reject: Reject): void {
    if (!outcome.ok) {
      reject(m, outcome.reason, outcome.detail);
      return;
    }
    if (outcome.event.startsWith("duplicate_")) {
      this.events.emit("order_counted", { name: "orders", label: outcome.event, count: 1 });
    }
  }

  private finish(outbox: OutboxItem[], seqTo: number, backfill: Op[] = []) {
    const changes = this.orders.takeChanges();
    this.erp.addDocuments(changes.effects.erp);
    for (const c of changes.counts) this.events.emit("order_counted", c);
    const ops: Op[] = [...backfill];
    // Compacted first: an order compacted and created again in one batch is the new one.
    for (const key of changes.ordersDeleted) {
      ops.push({ op: "delete", table: "orders", key });
      this.cache.delete(key);
    }
    for (const o of changes.orders) {
      ops.push({ op: "put", table: "orders", key: o.key, value: o });
      this.cache.set(o.key, o);
    }
    for (const [key, tombstone] of changes.tombstones) {
      ops.push(
        tombstone === null
          ? { op: "delete", table: "tombstones", key }
          : { op: "put", table: "tombstones", key, value: tombstone },
      );
    }
    for (const r of changes.retention) ops.push(retentionWrite(r));
    for (const r of changes.atRisk) {
      const key = [r.row.shipByMs, r.row.key];
      ops.push(
        r.op === "put"
          ? { op: "put", table: "atRisk", key, value: r.row }
          : { op: "delete", table: "atRisk", key },
      );
    }
    // Counted once committed (committed()): a batch that fails to commit changes no count.
    this.atRiskUncommitted = changes.atRisk;
    for (const [key, list] of changes.pendingCancels) {
      ops.push(
        list === null
          ? { op: "delete", table: "pending", key }
          : { op: "put", table: "pending", key, value: list },
      );
    }
    for (const t of changes.timers) {
      ops.push(
        t.op === "put"
          ? { op: "put", table: "timers", key: [t.dueMs, t.key], value: 1 }
          : { op: "delete", table: "timers", key: [t.dueMs, t.key] },
      );
    }
    const envelopes = new Envelopes(
      this.config.outbox.itemsPerMessageMax,
      this.config.streams.messageBytesMax,
    );
    const P = this.config.streams.partitionCount;
    const sentAtMs = this.clock();
    for (const r of changes.effects.ledger) {
      envelopes.add(subjects.ledgerCommands(skuPartition(r.sku, P), this.partition), r);
      if (r.kind === "reserve")
        this.awaiting.set(attemptKey(r.ref.orderKey, r.ref.lineId, r.attempt), sentAtMs);
    }
    for (const s of changes.effects.statuses) envelopes.add(subjects.outOrder(s.channel), s, true);
    for (const f of changes.effects.fulfilment) envelopes.add(subjects.outFulfil(f.warehouse), f, true);
    const erp: OutboxItem[] = [];
    this.erp.emit(this.clock(), seqTo, ops, erp);
    return { ops, outbox: [...outbox, ...envelopes.drain(), ...erp] };
  }
}

/** A line's reservation attempt, as the intake gate counts it. */
const attemptKey = (orderKey: string, lineId: string, attempt: number) =>
  `${orderKey}\u0000${lineId}\u0000${attempt}`;

function unreachable(c: never): never {
  throw new Error(`unknown order command ${JSON.stringify(c)}`);
}
