import {
  type CommandResult,
  Ledger,
  type LedgerChanges,
  type LineRequest,
  type LineResult,
  loadUnits,
  type StockCommand,
} from "../../../src/domain/ledger/index.ts";
import type { Network } from "../../../src/domain/network/index.ts";
import {
  type CancelInput,
  type Order,
  type OrderChanges,
  type OrderInput,
  type OrderLimits,
  type OrderOutcome,
  Orders,
  type RejectedInput,
  type ReturnInput,
  type RoutingView,
  type ShippedInput,
} from "../../../src/domain/orders/index.ts";
import {
  orderPartition as orderPartitionOf,
  skuPartition as skuPartitionOf,
} from "../../../src/stream/subjects.ts";
import { copy, MemLedgerStore, MemOrderStore } from "./stores.ts";

// The simulation: P ledger partitions and P order partitions over Map stores, wired by streams that behave
// like JetStream's: per-partition order, a stream sequence per message, Nats-Msg-Id de-duplication (the
// outbox's deterministic ids), and a runner that skips sequences at or below the partition's last applied
// one (src/stream/partition-runner.ts). Faults: a crash after apply and before commit, a restart after a
// commit, a consumer that delivers applied messages again, an outbox published twice, and a copy of a
// message that JetStream did not de-duplicate (published again after the duplicate window).

// The partition rules of src/stream/subjects.ts, memoized: the few ids of a run are hashed millions of times.
const memo = new Map<string, number>();
const memoized = (f: (id: string, P: number) => number, tag: string) => (id: string, P: number) => {
  const k = `${tag}${P}\u0000${id}`;
  let p = memo.get(k);
  if (p === undefined) {
    p = f(id, P);
    memo.set(k, p);
  }
  return p;
};
export const skuPartition = memoized(skuPartitionOf, "s");
export const orderPartition = memoized(orderPartitionOf, "o");

export type Body =
  | { kind: "stock"; sku: string; command: StockCommand }
  | { kind: "cmd"; from: number; items: LineRequest[] }
  | { kind: "result"; from: number; items: LineResult[] }
  | { kind: "order"; key: string; input: OrderInput }
  | { kind: "cancel"; key: string; input: CancelInput }
  | { kind: "shipped"; key: string; input: ShippedInput }
  | { kind: "rejected"; key: string; input: RejectedInput }
  | { kind: "return"; key: string; input: ReturnInput };

export type Msg = {
  seq: number;
  atMs: number;
  msgId: string;
  /** A copy JetStream did not de-duplicate, or an output of applying one: absent from a fault-free run. */
  dup: boolean;
  body: Body;
};

export type StageName = "ledger" | "order";

/** One partition's stream and its consumer's delivery position (an index: message i has seq i + 1). */
export class Stream {
  readonly msgs: Msg[] = [];
  cursor = 0;
  private readonly ids = new Set<string>();
  /** Publishes refused because JetStream had the id already. */
  deduplicated = 0;

  publish(body: Body, atMs: number, msgId: string, dup: boolean): Msg | null {
    if (this.ids.has(msgId)) {
      this.deduplicated++;
      return null;
    }
    this.ids.add(msgId);
    const m: Msg = { seq: this.msgs.length + 1, atMs, msgId, dup, body: copy(body) };
    this.msgs.push(m);
    return m;
  }

  get pending(): number {
    return this.msgs.length - this.cursor;
  }
}

/** What a committed batch of a partition was: the checks and the log read it. */
export type LedgerCommit = {
  partition: number;
  inputs: Msg[];
  stockOutcomes: Array<CommandResult | null>;
  changes: LedgerChanges;
  touched: Set<string>;
};

export type OrderCommit = {
  partition: number;
  /** null for a timer batch. */
  inputs: Msg[] | null;
  nowMs: number;
  /** Outcomes of each input, in order (a result envelope has one per item). */
  outcomes: OrderOutcome[][];
  changes: OrderChanges;
  before: Map<string, Order | undefined>;
  touched: Set<string>;
  dup: boolean;
};

export interface SimObserver {
  ledgerCommitted(c: LedgerCommit): void;
  orderCommitted(c: OrderCommit): void;
}

/** A committed action of a run: replaying the log without faults is the run "as it should have been". */
export type LogEntry =
  | { t: "publish"; stage: StageName; partition: number; body: Body; atMs: number }
  | { t: "batch"; stage: StageName; partition: number; count: number; atMs: number }
  | { t: "tick"; partition: number; nowMs: number };

type Published = { stream: Stream; body: Body; atMs: number; msgId: string };

class LedgerPart {
  readonly store = new MemLedgerStore();
  readonly stream = new Stream();
  ledger: Ledger;
  lastOutbox: Published[] = [];
  constructor(
    readonly index: number,
    private readonly limits: { waitingLinesPerSkuMax?: number } = {},
  ) {
    this.ledger = new Ledger(this.store, limits);
  }
  restart(): void {
    this.ledger = new Ledger(this.store, this.limits);
    this.stream.cursor = this.store.streamSeqLastApplied; // the consumer resumes after the last applied
  }
}

class OrderPart {
  readonly store = new MemOrderStore();
  readonly stream = new Stream();
  orders: Orders;
  lastOutbox: Published[] = [];
  constructor(
    readonly index: number,
    private readonly make: (store: MemOrderStore) => Orders,
  ) {
    this.orders = make(this.store);
  }
  restart(): void {
    this.orders = this.make(this.store);
    this.stream.cursor = this.store.streamSeqLastApplied;
  }
}

export type SimOptions = {
  partitions: number;
  network: Network;
  limits: OrderLimits;
  observer?: SimObserver;
  /** ledger.waitingLinesPerSkuMax (absent: the default). */
  waitingLinesPerSkuMax?: number;
};

const waitingLimits = (o: SimOptions) =>
  o.waitingLinesPerSkuMax === undefined ? {} : { waitingLinesPerSkuMax: o.waitingLinesPerSkuMax };

export class SimCrash extends Error {
  override name = "SimCrash";
}

export class Sim {
  clock = 1_000_000;
  readonly ledgers: LedgerPart[];
  readonly orderParts: OrderPart[];
  readonly log: LogEntry[] = [];
  /** Public outputs in commit order: statuses and fulfilment requests, as the channels and WMS see them. */
  readonly outputs: unknown[] = [];
  /** Shipments and returns the order stage committed: what a producer's retry may resend. */
  readonly acceptedInputs: Body[] = [];
  private inputSeq = 0;

  constructor(readonly o: SimOptions) {
    this.ledgers = Array.from({ length: o.partitions }, (_, i) => new LedgerPart(i, waitingLimits(o)));
    this.orderParts = Array.from(
      { length: o.partitions },
      (_, i) => new OrderPart(i, (store) => new Orders(store, () => o.network, o.limits, this.routingView())),
    );
  }

  /** Routing reads committed ledger state, as the order stage does over the ledger partitions' LMDB. */
  private routingView(): RoutingView {
    return {
      stock: (sku) => this.ledgers[skuPartition(sku, this.P)]?.store.getSku(sku)?.positions,
      load: (w) =>
        this.ledgers.reduce((n, l) => {
          const load = l.store.getLoad(w);
          return n + (load === undefined ? 0 : loadUnits(load, this.clock));
        }, 0),
    };
  }

  get P(): number {
    return this.o.partitions;
  }

  /** Partitions by a flat index: ledger 0..P-1, then order 0..P-1. */
  part(i: number): LedgerPart | OrderPart {
    return i < this.P ? (this.ledgers[i] as LedgerPart) : (this.orderParts[i - this.P] as OrderPart);
  }

  get partCount(): number {
    return 2 * this.P;
  }

  streams(): Stream[] {
    return [...this.ledgers.map((l) => l.stream), ...this.orderParts.map((o) => o.stream)];
  }

  get quiet(): boolean {
    return this.streams().every((s) => s.pending === 0);
  }

  // ---- external inputs -------------------------------------------------------------------------------

  stock(sku: string, command: StockCommand): void {
    this.input("ledger", skuPartition(sku, this.P), { kind: "stock", sku, command });
  }

  orderInput(body: Exclude<Body, { kind: "stock" | "cmd" | "result" }>): void {
    this.input("order", orderPartition(body.key, this.P), body);
  }

  private input(stage: StageName, partition: number, body: Body): void {
    const stream = stage === "ledger" ? this.ledgers[partition]?.stream : this.orderParts[partition]?.stream;
    if (stream === undefined) throw new Error(`no ${stage} partition ${partition}`);
    stream.publish(body, this.clock, `in:${++this.inputSeq}`, false);
    this.log.push({ t: "publish", stage, partition, body: copy(body), atMs: this.clock });
  }

  /** A producer's retry with a new message id (a WMS resending a shipment): JetStream keeps both. */
  retryInput(stage: StageName, partition: number, body: Body): void {
    const stream = stage === "ledger" ? this.ledgers[partition]?.stream : this.orderParts[partition]?.stream;
    stream?.publish(body, this.clock, `in:${++this.inputSeq}`, true);
  }

  // ---- delivery ----------------------------------------------------------------------------------------

  /**
   * The next batch of a partition: up to `k` messages in stream order. A copy that a fault-free run does not
   * have is applied in a batch of its own, so the other batches are the same in both runs.
   */
  private nextBatch(stream: Stream, k: number): Msg[] {
    const batch: Msg[] = [];
    for (let i = stream.cursor; i < stream.msgs.length && batch.length < k; i++) {
      const m = stream.msgs[i] as Msg;
      if (m.dup && batch.length > 0) break;
      batch.push(m);
      if (m.dup) break;
    }
    return batch;
  }

  deliver(partIndex: number, k: number, crash = false): void {
    const part = this.part(partIndex);
    const batch = this.nextBatch(part.stream, k);
    if (batch.length === 0) return;
    part.stream.cursor += batch.length;
    if (part instanceof LedgerPart) this.applyLedger(part, batch, crash);
    else this.applyOrders(part, batch, crash);
    if (crash) part.restart();
  }

  /** The skip rule: a sequence at or below the last applied one was applied before. */
  private fresh(batch: Msg[], lastApplied: number): Msg[] {
    return batch.filter((m) => m.seq > lastApplied);
  }

  private applyLedger(part: LedgerPart, batch: Msg[], crash: boolean): void {
    const fresh = this.fresh(batch, part.store.streamSeqLastApplied);
    if (fresh.length === 0) return;
    const outcomes: Array<CommandResult | null> = [];
    for (const m of fresh) {
      const input = { seq: m.seq, atMs: m.atMs };
      try {
        if (m.body.kind === "stock") outcomes.push(part.ledger.applyStock(m.body.sku, m.body.command, input));
        else if (m.body.kind === "cmd") {
          for (const r of m.body.items) {
            if (skuPartition(r.sku, this.P) !== part.index)
              throw new SimCrash(`line request for ${r.sku} reached ledger partition ${part.index}`);
            part.ledger.applyLine(r, input);
          }
          outcomes.push(null);
        } else throw new SimCrash(`ledger partition got a ${m.body.kind} message`);
      } catch (error) {
        throw new SimCrash(
          `ledger-${part.index} crashed applying seq ${m.seq} ${JSON.stringify(m.body)}: ${(error as Error).message}`,
          { cause: error },
        );
      }
    }
    const changes = part.ledger.takeChanges();
    part.ledger.evict();
    if (crash) return; // nothing reached the store; the messages are delivered again after the restart
    const last = fresh[fresh.length - 1] as Msg;
    const touched = part.store.commit(changes, last.seq);
    const dup = fresh.every((m) => m.dup);
    const byTarget = new Map<number, LineResult[]>();
    for (const r of changes.results) {
      const p = orderPartition(r.ref.orderKey, this.P);
      byTarget.set(p, [...(byTarget.get(p) ?? []), r]);
    }
    part.lastOutbox = [];
    for (const [p, items] of byTarget) {
      const stream = (this.orderParts[p] as OrderPart).stream;
      const msgId = `ledger-${part.index}:${++part.store.outboxSeq}`;
      const body: Body = { kind: "result", from: part.index, items };
      stream.publish(body, this.clock, msgId, dup);
      part.lastOutbox.push({ stream, body, atMs: this.clock, msgId });
    }
    if (!dup) this.logBatch("ledger", part.index, fresh);
    this.o.observer?.ledgerCommitted({
      partition: part.index,
      inputs: fresh,
      stockOutcomes: outcomes,
      changes,
      touched,
    });
  }

  private applyOrders(part: OrderPart, batch: Msg[], crash: boolean): void {
    const fresh = this.fresh(batch, part.store.streamSeqLastApplied);
    if (fresh.length === 0) return;
    const before = new Map<string, Order | undefined>();
    const outcomes: OrderOutcome[][] = [];
    for (const m of fresh) {
      const at = { seq: m.seq, atMs: m.atMs };
      const b = m.body;
      const keys = b.kind === "result" ? b.items.map((r) => r.ref.orderKey) : "key" in b ? [b.key] : [];
      for (const key of keys) if (!before.has(key)) before.set(key, part.store.getOrder(key));
      try {
        outcomes.push(this.applyOrderMessage(part, b, at));
      } catch (error) {
        throw new SimCrash(
          `order-${part.index} crashed applying seq ${m.seq} ${JSON.stringify(b)}: ${(error as Error).message}`,
          { cause: error },
        );
      }
    }
    let changes: OrderChanges;
    try {
      changes = part.orders.takeChanges();
    } catch (error) {
      throw new SimCrash(`order-${part.index} crashed at takeChanges: ${(error as Error).message}`, {
        cause: error,
      });
    }
    if (crash) return;
    const last = fresh[fresh.length - 1] as Msg;
    const dup = fresh.every((m) => m.dup);
    this.commitOrders(part, changes, last.seq, dup);
    if (!dup) this.logBatch("order", part.index, fresh);
    fresh.forEach((m, i) => {
      const ok = outcomes[i]?.[0]?.ok === true;
      if (ok && !m.dup && (m.body.kind === "shipped" || m.body.kind === "return"))
        this.acceptedInputs.push(m.body);
    });
    this.o.observer?.orderCommitted({
      partition: part.index,
      inputs: fresh,
      nowMs: this.clock,
      outcomes,
      changes,
      before,
      touched: new Set(changes.orders.map((o) => o.key)),
      dup,
    });
  }

  private applyOrderMessage(part: OrderPart, b: Body, at: { seq: number; atMs: number }): OrderOutcome[] {
    const orders = part.orders;
    switch (b.kind) {
      case "order":
        return [orders.create(b.key, b.input, at)];
      case "cancel":
        return [orders.cancel(b.key, b.input, at)];
      case "shipped":
        return [orders.shipped(b.key, b.input, at)];
      case "rejected":
        return [orders.rejected(b.key, b.input, at)];
      case "return":
        return [orders.returned(b.key, b.input, at)];
      case "result":
        return b.items.map((r) => orders.ledgerResult(r, at));
      default:
        throw new SimCrash(`order partition got a ${b.kind} message`);
    }
  }

  private commitOrders(part: OrderPart, changes: OrderChanges, seq: number | null, dup: boolean): void {
    part.store.commit(changes, seq);
    const byTarget = new Map<number, LineRequest[]>();
    for (const r of changes.effects.ledger) {
      const p = skuPartition(r.sku, this.P);
      byTarget.set(p, [...(byTarget.get(p) ?? []), r]);
    }
    part.lastOutbox = [];
    for (const [p, items] of byTarget) {
      const stream = (this.ledgers[p] as LedgerPart).stream;
      const msgId = `order-${part.index}:${++part.store.outboxSeq}`;
      const body: Body = { kind: "cmd", from: part.index, items };
      stream.publish(body, this.clock, msgId, dup);
      part.lastOutbox.push({ stream, body, atMs: this.clock, msgId });
    }
    for (const s of changes.effects.statuses) this.outputs.push({ out: "status", ...copy(s) });
    for (const f of changes.effects.fulfilment) this.outputs.push({ out: "fulfil", ...copy(f) });
  }

  private logBatch(stage: StageName, partition: number, fresh: Msg[]): void {
    const count = fresh.filter((m) => !m.dup).length;
    if (count > 0) this.log.push({ t: "batch", stage, partition, count, atMs: this.clock });
  }

  /** SLA deadlines and retention of one order partition: a batch with no input (a clock message). */
  tick(partition: number, crash = false): number {
    const part = this.orderParts[partition] as OrderPart;
    const before = new Map<string, Order | undefined>();
    for (const t of part.store.dueTimers(this.clock, this.o.limits.timersPerTickMax))
      if (!before.has(t.key)) before.set(t.key, part.store.getOrder(t.key));
    let fired: number;
    let changes: OrderChanges;
    try {
      // A clock message: deadlines, then retention (compact is a no-op without limits.retention).
      fired = part.orders.fireDueTimers(this.clock) + part.orders.compact(this.clock);
      changes = part.orders.takeChanges();
    } catch (error) {
      throw new SimCrash(`order-${partition} crashed firing timers: ${(error as Error).message}`, {
        cause: error,
      });
    }
    if (fired === 0) return 0;
    if (crash) {
      part.restart();
      return fired;
    }
    this.commitOrders(part, changes, null, false);
    this.log.push({ t: "tick", partition, nowMs: this.clock });
    this.o.observer?.orderCommitted({
      partition,
      inputs: null,
      nowMs: this.clock,
      outcomes: [],
      changes,
      before,
      touched: new Set(changes.orders.map((o) => o.key)),
      dup: false,
    });
    return fired;
  }

  // ---- faults --------------------------------------------------------------------------------------------

  /** Restart after a commit: caches and the consumer's position are gone, the store is what remains. */
  restart(partIndex: number): void {
    this.part(partIndex).restart();
  }

  /** The consumer delivers messages that were applied already (a reset, an ack lost after the commit). */
  rewind(partIndex: number, back: number): void {
    const s = this.part(partIndex).stream;
    s.cursor = Math.max(0, s.cursor - back);
  }

  /** A crash after the commit and before the outbox was marked published: the same ids again, de-duplicated. */
  republish(partIndex: number): void {
    for (const p of this.part(partIndex).lastOutbox) p.stream.publish(p.body, p.atMs, p.msgId, true);
  }

  /** Internal messages published so far, across streams: candidates for an undetected duplicate. */
  internalMessages(filter: (b: Body) => boolean): Array<{ stream: Stream; msg: Msg }> {
    const out: Array<{ stream: Stream; msg: Msg }> = [];
    for (const stream of this.streams())
      for (const msg of stream.msgs)
        if (!msg.dup && (msg.body.kind === "cmd" || msg.body.kind === "result") && filter(msg.body))
          out.push({ stream, msg });
    return out;
  }

  /** A copy of a message published again after the duplicate window: a new sequence, applied again. */
  duplicate(stream: Stream, msg: Msg): void {
    stream.publish(msg.body, msg.atMs, `${msg.msgId}:again:${stream.msgs.length}`, true);
  }

  // ---- whole runs ------------------------------------------------------------------------------------------

  /** Delivers everything, in a fixed order, until no stream has anything left. Bounded: a loop is a bug. */
  drain(batchCount = 2): void {
    for (let rounds = 0; ; rounds++) {
      if (rounds > 20_000) throw new SimCrash("the stages keep sending each other messages: no quiescence");
      let moved = false;
      for (let i = 0; i < this.partCount; i++) {
        if (this.part(i).stream.pending === 0) continue;
        this.deliver(i, batchCount);
        moved = true;
      }
      if (!moved) return;
    }
  }

  /** The same committed actions without any fault: what the faulty run must have ended with. */
  static replay(o: SimOptions, log: readonly LogEntry[]): Sim {
    const sim = new Sim(o);
    for (const e of log) {
      if (e.t === "publish") {
        sim.clock = e.atMs;
        sim.input(e.stage, e.partition, e.body);
      } else if (e.t === "batch") {
        sim.clock = e.atMs;
        const idx = e.stage === "ledger" ? e.partition : sim.P + e.partition;
        const stream = sim.part(idx).stream;
        if (stream.pending < e.count)
          throw new SimCrash(`replay: ${e.stage}-${e.partition} has ${stream.pending} < ${e.count} messages`);
        sim.deliver(idx, e.count);
      } else {
        sim.clock = e.nowMs;
        sim.tick(e.partition);
      }
    }
    return sim;
  }
}
