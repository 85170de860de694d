import type { Config } from "../../config/index.ts";
import { checkLineResult, type LineResult, parseId } from "../../domain/ledger/index.ts";
import type { Network } from "../../domain/network/index.ts";
import type { OrderInputLimits } from "../../domain/orders/commands.ts";
import {
  noRoutingView,
  type Order,
  type OrderOutcome,
  Orders,
  type OrderTombstone,
  type OrderView,
  type PendingCancel,
  parseCancel,
  parseOrder,
  parseRejected,
  parseReturn,
  parseShipped,
  type RoutingView,
} from "../../domain/orders/index.ts";
import type { Instrumentation } from "../../instrumentation/index.ts";
import type { Op, OutboxItem, PartitionStore } from "../../store/index.ts";
import { decodePayload } from "../../stream/codec.ts";
import {
  appliedPosition,
  type InboundMessage,
  type PartitionApplier,
} from "../../stream/partition-runner.ts";
import {
  decodeToken,
  orderKey,
  parsePartitioned,
  skuPartition,
  subjects,
  tokenPartition,
} from "../../stream/subjects.ts";
import { BoundedCache, orderBytes } from "../cache.ts";
import { contentTypeOf, Envelopes, openEnvelope, type Reject, rejecter } from "../envelopes.ts";
import { ErpWindow, erpTable } from "../erp-window.ts";
import { domainLimits } from "../ledger/applier.ts";
import { BatchTimers } from "./batch-timers.ts";
import {
  committedRows,
  RetentionBackfill,
  retentionDueMs,
  retentionLimits,
  retentionTables,
  retentionWrite,
} from "./retention.ts";

export const orderTables = ["orders", "pending", "timers", erpTable, ...retentionTables] as const;

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
  private readonly cache: BoundedCache<string, Order>;
  private readonly erp: ErpWindow;
  private readonly timers: BatchTimers;
  private readonly backfill: RetentionBackfill;
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
      },
      routing,
    );
  }

  apply(messages: readonly InboundMessage[]) {
    const outbox: OutboxItem[] = [];
    const reject = rejecter(outbox, (reason) =>
      this.events.emit("dead_lettered", { stage: "order", reason }),
    );
    this.timers.begin();
    let fired = 0;
    for (const m of messages) {
      // Deadlines fire at clock messages only, in stream time: after every input ahead of the clock in the
      // stream, including WMS events the router copied late (their own stamps are later than their arrival).
      // Retention too, after the deadlines: a line cancelled by one makes its order final, not compacted.
      if (m.subject === subjects.orderClock(this.partition)) {
        fired += this.fireDue(m.atMs);
        this.orders.compact(m.atMs);
      } else this.applyOne(m, reject);
    }
    if (fired > 0) this.events.emit("timers_fired", { partition: this.partition, count: fired });
    return this.finish(outbox, appliedPosition(this.store, messages));
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
    for (const t of this.timers.taken) {
      // A re-route set a new deadline: it may fall due within this batch too.
      const order = this.orders.get(t.key);
      if (order !== undefined && order.shipByMs !== t.dueMs) this.timers.set(order.shipByMs, t.key);
    }
    this.timers.settle();
    return count;
  }

  private applyOne(m: InboundMessage, reject: Reject): void {
    const route = parsePartitioned(m.subject);
    if (route === null || route.partition !== this.partition) {
      reject(m, "bad_subject", `${m.subject} is not a subject of order partition ${this.partition}`);
      return;
    }
    const input = { seq: m.seq, atMs: m.atMs };
    if (route.kind === "result") this.results(m, input, reject);
    else if (route.kind === "wms" && route.tokens.length === 2) {
      this.wms(m, route.tokens[0] as string, route.tokens[1] as string, input, reject);
    } else if (
      (route.kind === "order" || route.kind === "cancel" || route.kind === "return") &&
      route.tokens.length === 2
    ) {
      this.orderInput(m, route.kind, route.tokens as [string, string], input, reject);
    } else {
      reject(
        m,
        "unknown_kind",
        `order partitions take order, cancel, return, wms, result and clock subjects, not ${route.kind}`,
      );
    }
  }

  private orderInput(
    m: InboundMessage,
    kind: "order" | "cancel" | "return",
    tokens: [string, string],
    input: { seq: number; atMs: number },
    reject: Reject,
  ): void {
    let channel: string;
    let orderId: string;
    try {
      channel = decodeToken(tokens[0]);
      orderId = decodeToken(tokens[1]);
    } catch (error) {
      reject(m, "bad_subject", (error as Error).message);
      return;
    }
    for (const [field, id] of [
      ["channel", channel],
      ["orderId", orderId],
    ] as const) {
      const checked = parseId(id, field, this.limits);
      if (!checked.ok) {
        reject(m, checked.reason, checked.detail);
        return;
      }
    }
    const owner = tokenPartition(`${tokens[0]}.${tokens[1]}`, this.config.streams.partitionCount);
    if (owner !== this.partition) {
      reject(
        m,
        "wrong_partition",
        `order ${channel}/${orderId} belongs to partition ${owner}, not ${this.partition}`,
      );
      return;
    }
    const decoded = decodePayload(m.data, contentTypeOf(m.headers));
    if (!decoded.ok) {
      reject(m, decoded.reason, decoded.detail);
      return;
    }
    const key = `${tokens[0]}.${tokens[1]}`;
    let outcome: OrderOutcome;
    if (kind === "order") {
      const parsed = parseOrder(channel, orderId, decoded.value, this.limits);
      if (!parsed.ok) {
        reject(m, parsed.reason, parsed.detail);
        return;
      }
      outcome = this.orders.create(key, parsed.value, input);
      const created = outcome.ok && outcome.event === "created" ? this.orders.get(key) : undefined;
      if (created !== undefined) this.timers.set(created.shipByMs, key);
    } else if (kind === "cancel") {
      const parsed = parseCancel(decoded.value, this.limits);
      if (!parsed.ok) {
        reject(m, parsed.reason, parsed.detail);
        return;
      }
      outcome = this.orders.cancel(
        key,
        { channel, orderId, lineIds: parsed.value.lineIds, cause: "customer", reason: parsed.value.reason },
        input,
      );
    } else {
      const parsed = parseReturn(channel, orderId, decoded.value, this.limits);
      if (!parsed.ok) {
        reject(m, parsed.reason, parsed.detail);
        return;
      }
      outcome = this.orders.returned(key, parsed.value, input);
    }
    this.outcome(m, outcome, reject);
  }

  private wms(
    m: InboundMessage,
    warehouseToken: string,
    event: string,
    input: { seq: number; atMs: number },
    reject: Reject,
  ) {
    let warehouse: string;
    try {
      warehouse = decodeToken(warehouseToken);
    } catch (error) {
      reject(m, "bad_subject", (error as Error).message);
      return;
    }
    const checked = parseId(warehouse, "warehouse", this.limits);
    if (!checked.ok) {
      reject(m, checked.reason, checked.detail);
      return;
    }
    const decoded = decodePayload(m.data, contentTypeOf(m.headers));
    if (!decoded.ok) {
      reject(m, decoded.reason, decoded.detail);
      return;
    }
    const parsed =
      event === "shipped"
        ? parseShipped(warehouse, decoded.value, this.limits)
        : event === "rejected"
          ? parseRejected(warehouse, decoded.value, this.limits)
          : null;
    if (parsed === null) {
      reject(m, "unknown_kind", `WMS events about orders are shipped and rejected, not ${event}`);
      return;
    }
    if (!parsed.ok) {
      reject(m, parsed.reason, parsed.detail);
      return;
    }
    const key = orderKey(parsed.value.channel, parsed.value.orderId);
    const owner = tokenPartition(key, this.config.streams.partitionCount);
    if (owner !== this.partition) {
      reject(m, "wrong_partition", `order ${key} belongs to partition ${owner}, not ${this.partition}`);
      return;
    }
    const outcome =
      "shipmentId" in parsed.value
        ? this.orders.shipped(key, parsed.value, input)
        : this.orders.rejected(key, parsed.value, input);
    this.outcome(m, outcome, reject);
  }

  private results(m: InboundMessage, input: { seq: number; atMs: number }, reject: Reject): void {
    const envelope = openEnvelope<LineResult>(m.data, "result", (r) => checkLineResult(r, this.limits));
    if (!envelope.ok) {
      reject(m, "invalid_command", envelope.detail);
      return;
    }
    // A malformed answer is dead-lettered alone; the other answers of the envelope apply.
    for (const r of envelope.refused) reject(m, "invalid_command", r.detail, r);
    for (const { item } of envelope.items) {
      if (item.kind !== "lost")
        this.awaiting.delete(attemptKey(item.ref.orderKey, item.ref.lineId, item.attempt));
      this.orders.ledgerResult(item, input);
    }
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
