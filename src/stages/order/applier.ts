import type { Config } from "../../config/index.ts";
import { checkLineResult, type DomainLimits, type LineResult, parseId } from "../../domain/ledger/index.ts";
import type { Network } from "../../domain/network/index.ts";
import {
  noRoutingView,
  type Order,
  type OrderOutcome,
  Orders,
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
import { type DeadLetterReason, deadLetter } from "../../stream/dead-letter.ts";
import type { InboundMessage, PartitionApplier } from "../../stream/partition-runner.ts";
import {
  decodeToken,
  orderKey,
  orderPartition,
  parsePartitioned,
  partitionOfTokens,
  skuPartition,
  subjects,
} from "../../stream/subjects.ts";
import { BoundedCache } from "../cache.ts";
import { contentTypeOf, Envelopes, openEnvelope } from "../envelopes.ts";
import { ErpWindow, erpTable } from "../erp-window.ts";
import { domainLimits } from "../ledger/applier.ts";

export const orderTables = ["orders", "pending", "timers", erpTable] as const;

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
    dueTimers: (nowMs, limit) =>
      store.range<number>("timers", { start: [0], end: [nowMs, "\uffff"], limit }).map(({ key }) => {
        const [dueMs, orderKey] = key as [number, string];
        return { dueMs, key: orderKey };
      }),
  };
}

type Reject = (m: InboundMessage, reason: DeadLetterReason, detail: string) => void;

/**
 * The order stage of one partition: every order whose key (channel + order id) hashes to it. Inputs by the
 * subject's kind token: `order|cancel|return.<channel>.<orderId>` (public), `wms.<warehouse>.<event>` (WMS
 * events about an order, routed here), `result.<ledgerPartition>` (the ledger's answers). Outputs: line
 * requests to ledger partitions, statuses to `sluice.out.order.<channel>`, requests to
 * `sluice.out.fulfil.<warehouse>`, all through the outbox of the batch's transaction.
 */
export class OrderApplier implements PartitionApplier {
  readonly orders: Orders;
  private readonly store: PartitionStore;
  private readonly limits: DomainLimits;
  private readonly cache: BoundedCache<string, Order>;
  private readonly erp: ErpWindow;

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
    this.cache = new BoundedCache(config.orders.cacheCountMax);
    this.erp = new ErpWindow("order", partition, config, store, events);
    this.store = store;
    this.orders = new Orders(
      orderView(store, this.cache),
      network,
      {
        historyCountMax: config.orders.historyCountMax,
        pendingCancelsPerOrderMax: config.orders.pendingCancelsPerOrderMax,
        timersPerTickMax: config.orders.timersPerTickMax,
      },
      routing,
    );
  }

  apply(messages: readonly InboundMessage[]) {
    const outbox: OutboxItem[] = [];
    const reject: Reject = (m, reason, detail) => {
      outbox.push(deadLetter(m, reason, detail));
      this.events.emit("dead_lettered", { stage: "order", reason });
    };
    for (const m of messages) {
      const route = parsePartitioned(m.subject);
      if (route === null || route.partition !== this.partition) {
        reject(m, "bad_subject", `${m.subject} is not a subject of order partition ${this.partition}`);
        continue;
      }
      const input = { seq: m.seq, atMs: m.atMs };
      if (route.kind === "result") {
        this.results(m, input, reject);
        continue;
      }
      if (route.kind === "wms" && route.tokens.length === 2) {
        this.wms(m, route.tokens[0] as string, route.tokens[1] as string, input, reject);
        continue;
      }
      if (
        (route.kind === "order" || route.kind === "cancel" || route.kind === "return") &&
        route.tokens.length === 2
      ) {
        this.orderInput(m, route.kind, route.tokens as [string, string], input, reject);
        continue;
      }
      reject(
        m,
        "unknown_kind",
        `order partitions take order, cancel, return, wms and result subjects, not ${route.kind}`,
      );
    }
    return this.finish(outbox, Math.max(messages.at(-1)?.seq ?? 0, this.store.streamSeqLastApplied()));
  }

  tick(nowMs: number) {
    const fired = this.orders.fireDueTimers(nowMs);
    if (fired > 0) this.events.emit("timers_fired", { partition: this.partition, count: fired });
    if (fired === 0 && !this.erp.due(nowMs)) return null;
    return this.finish([], this.store.streamSeqLastApplied());
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
    const owner = partitionOfTokens(tokens, this.config.streams.partitionCount);
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
    const owner = orderPartition(key, this.config.streams.partitionCount);
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
    for (const r of envelope.items) this.orders.ledgerResult(r, input);
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

  private finish(outbox: OutboxItem[], seqTo: number) {
    const changes = this.orders.takeChanges();
    this.erp.addDocuments(changes.effects.erp);
    for (const c of changes.counts) this.events.emit("order_counted", c);
    const ops: Op[] = [];
    for (const o of changes.orders) {
      ops.push({ op: "put", table: "orders", key: o.key, value: o });
      this.cache.set(o.key, o);
    }
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
    for (const r of changes.effects.ledger) {
      envelopes.add(subjects.ledgerCommands(skuPartition(r.sku, P), this.partition), r);
    }
    for (const s of changes.effects.statuses) envelopes.add(subjects.outOrder(s.channel), s, true);
    for (const f of changes.effects.fulfilment) envelopes.add(subjects.outFulfil(f.warehouse), f, true);
    const erp: OutboxItem[] = [];
    this.erp.emit(this.clock(), seqTo, ops, erp);
    return { ops, outbox: [...outbox, ...envelopes.drain(), ...erp] };
  }
}
