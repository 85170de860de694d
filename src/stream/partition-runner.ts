import type { ConsumerMessages, JetStreamClient, JetStreamManager, JsMsg } from "@nats-io/jetstream";
import type { MsgHdrs, NatsConnection } from "@nats-io/transport-node";
import type { Config } from "../config/index.ts";
import { assert } from "../domain/assert.ts";
import type { Instrumentation } from "../instrumentation/index.ts";
import type { Logger } from "../log/index.ts";
import { type BatchWrite, type OutboxItem, type PartitionStore, StoreWriteError } from "../store/index.ts";
import { FencedError } from "./fenced.ts";
import type { OutboxPublisher, PublishFence } from "./outbox-publisher.ts";
import { ensurePartitionConsumer } from "./provision.ts";
import {
  type Input,
  inputConsumerName,
  parseRoutedId,
  routedIdHeader,
  routerKinds,
  type Stage,
  stageInputs,
  streamNames,
  subjects,
  unroutedConsumerName,
} from "./subjects.ts";

/** What a stage sees of a message: no JetStream types cross into the apply step. */
export type InboundMessage = {
  stream: string;
  seq: number;
  subject: string;
  data: Uint8Array;
  headers: MsgHdrs | undefined;
  /** The stream's timestamp of the message: the apply step's clock, the same on every replay. */
  atMs: number;
};

/** The synchronous heart of a stage's partition: a batch in, the writes of one transaction out. */
export interface PartitionApplier {
  apply(messages: readonly InboundMessage[]): Omit<BatchWrite, "streamSeqLastApplied">;
  /**
   * Work that is due by the process clock alone (stock sync, ERP windows); null when nothing is due. `nowMs`
   * is the runner's clock. Never SLA deadlines: those fire in stream time, inside `apply` (see timerDueMs).
   */
  tick?(nowMs: number): Omit<BatchWrite, "streamSeqLastApplied"> | null;
  /**
   * The earliest deadline that fires in stream time (SLA timers), or null. Once the process clock passes it
   * while the partition is idle, the runner publishes a clock message into the partition's own stream: its
   * stream timestamp, applied after everything before it, is what lets `apply` fire the deadline.
   */
  timerDueMs?(): number | null;
  /** How often `tick` runs (ms); orders.timerTickMs when absent. */
  readonly tickMs?: number;
  /**
   * False when every batch already does what a tick would (the ledger's stock and ERP outputs): a tick is
   * then skipped while messages wait, instead of costing a commit of its own between batches.
   */
  readonly tickWhenBusy?: boolean;
  /**
   * The intake gate (answers first): how many messages the partition takes from its intake stream now
   * (`nowMs`: the process clock). At 0, only its other inputs are applied and new intake waits in JetStream;
   * the runner asks again before each batch and at each tick. Absent: no limit.
   */
  intakeRoom?(nowMs: number): number;
  /** Work the partition awaits from elsewhere (reservations from the ledger), for the gauge; absent: none. */
  readonly inFlightLines?: number;
  /**
   * Called once the write `apply` or `tick` returned is committed (durable), before its outbox is published:
   * for hints other processes may read (the routing position feed), never for effects (those go in the
   * outbox, in the transaction).
   */
  committed?(): void;
  /**
   * What the next batch should wait for before it is applied, or null: work in flight elsewhere whose result
   * the batch needs (the ledger: warehouse capacity claimed from the pool while the partition holds none of it,
   * at start, on a new day or warehouse). Bounded by the applier (its claims time out); the batch then applies.
   */
  beforeApply?(): Promise<void> | null;
}

/**
 * A partition's applied position: the sum of the last applied sequences of its input streams, counting the
 * messages of the batch being applied. It only grows, by at least one per applied message: what ERP batches
 * cite as their sequence range (seqFrom … seqTo), the same on a replay of the same batches.
 */
export function appliedPosition(store: PartitionStore, messages: readonly InboundMessage[]): number {
  const main = streamNames[store.identity.stage as Stage] as string;
  const seqs = new Map<string, number>([[main, store.streamSeqLastApplied()]]);
  for (const { stream, seq } of store.inputStreams()) seqs.set(stream, seq);
  for (const m of messages) if (m.seq > (seqs.get(m.stream) ?? 0)) seqs.set(m.stream, m.seq);
  let position = 0;
  for (const seq of seqs.values()) position += seq;
  return position;
}

/**
 * The applied sequences a batch commits (invariant 3): the main stream's last message as
 * `streamSeqLastApplied` (null when the batch has none), every other stream's last message in `inputs`.
 * `messages` are in stream order within each stream.
 */
export function appliedSeqs(
  mainStream: string,
  messages: readonly InboundMessage[],
): Pick<BatchWrite, "streamSeqLastApplied" | "streamSeqLastAppliedAtMs" | "inputs"> {
  const last = new Map<string, InboundMessage>();
  for (const m of messages) last.set(m.stream, m);
  const main = last.get(mainStream);
  last.delete(mainStream);
  return {
    streamSeqLastApplied: main?.seq ?? null,
    ...(main === undefined ? {} : { streamSeqLastAppliedAtMs: main.atMs }),
    inputs: [...last.values()].map((m) => ({ stream: m.stream, seq: m.seq, atMs: m.atMs })),
  };
}

/** One input stream of a partition, as the runner reads it. */
type InputState = {
  input: Input;
  stream: string;
  /** The stage's main stream: its sequence is BatchWrite.streamSeqLastApplied; the others go in `inputs`. */
  main: boolean;
  /** New intake behind a gate (PartitionApplier.intakeRoom); the other inputs are always taken first. */
  gated: boolean;
  buffer: JsMsg[];
  deliverySeqNext: number | null;
  seqLastApplied: number;
  messages: ConsumerMessages | null;
  /** Messages the server held for this input at its last delivery applied (JsMsg info.pending). */
  serverPending: number;
};

type RunnerState = "idle" | "running" | "resetting" | "stopping" | "stopped" | "failed";

export type PartitionRunnerDeps = {
  stage: Stage;
  partition: number;
  config: Config;
  nc: NatsConnection;
  jsm: JetStreamManager;
  js: JetStreamClient;
  store: PartitionStore;
  applier: PartitionApplier;
  publisher: OutboxPublisher;
  events: Instrumentation;
  log: Logger;
  /** A failure the runner cannot recover from (commit failed, invariant broken): the process must exit. */
  onFatal: (error: Error) => void;
  /**
   * A commit found no room on the data disk: the runner has stopped (nothing acked past its last commit) and
   * its applier's memory may hold uncommitted effects, so the owner starts a fresh applier and runner once
   * there is room. Absent: such a failure is fatal like any other.
   */
  onStoreFull?: (error: StoreWriteError) => void;
  /** Whether this process still holds the data-dir lock; checked before every commit. */
  lockHeld?: () => boolean;
  /**
   * Cluster mode: a fenced partition (its lease ran out) stops and calls this instead of failing the process;
   * absent, fencing is fatal (one process, one data-dir lock).
   */
  onFenced?: (error: FencedError) => void;
};

/**
 * One partition's loop (design.md §7): batch by arrival, never by waiting. Messages that arrive are buffered;
 * on the next event-loop turn whatever has arrived (up to consumer.batchCountMax) is applied synchronously,
 * committed in one LMDB transaction with the last applied sequence, acked (AckAll on the batch's last
 * message), then its outbox is published. One flush is in flight per partition; what arrives meanwhile
 * forms the next batch. The server bounds the buffer: at most consumer.pendingMessagesMax unacked.
 *
 * Ordering: the skip rule (seq ≤ last applied ⇒ already applied) needs deliveries in stream order. A lost
 * delivery (the connection dropped while messages were in flight) shows as a gap in the consumer's
 * delivery sequence; the runner then drops its buffer and recreates the consumer right after the store's
 * last applied sequence, so nothing is skipped and nothing is applied twice.
 */
export class PartitionRunner {
  private state: RunnerState = "idle";
  /** The partition's input streams, first first; the last is the stage's main stream. */
  private readonly inputs: InputState[];
  private flushScheduled = false;
  private flushing: Promise<void> | null = null;
  private generation = 0;
  private lagPoll: ReturnType<typeof setInterval> | null = null;
  private timerTick: ReturnType<typeof setInterval> | null = null;
  private tickRequested = false;
  /** A clock message is being published (at most one at a time, one per tick: bounded by the tick rate). */
  private clockPublishing = false;
  /** The sequence of the last clock message published: none more until the partition has applied it. */
  private clockSeqOutstanding: number | null = null;
  /** SLUICE_UNROUTED's last sequence when a deadline was first seen passed: the router must route it first. */
  private unroutedSeqAtDue: number | null = null;
  private resetting: Promise<void> | null = null;
  private lastBatchAtMs = 0;
  /** Outboxes of committed batches, published one batch after another (per-subject order across batches). */
  private publishing: Promise<void> = Promise.resolve();
  /** Cluster mode: the changelog records' own chain (see enqueuePublish). */
  private logging: Promise<void> = Promise.resolve();
  private publishesPending = 0;
  private readonly log: Logger;

  constructor(private readonly d: PartitionRunnerDeps) {
    this.log = d.log.child({ stage: d.stage, partition: d.partition });
    const list: readonly Input[] = stageInputs[d.stage];
    this.inputs = list.map((input, i) => ({
      input,
      stream: streamNames[input],
      main: i === list.length - 1,
      // The intake of a stage with answers: the main stream when it is not the only one.
      gated: list.length > 1 && i === list.length - 1,
      buffer: [],
      deliverySeqNext: null,
      seqLastApplied: 0,
      messages: null,
      serverPending: 0,
    }));
  }

  get running(): boolean {
    return this.state === "running";
  }

  /** The last applied sequence of the stage's main stream. */
  get lastApplied(): number {
    return this.mainInput.seqLastApplied;
  }

  private get mainInput(): InputState {
    return this.inputs[this.inputs.length - 1] as InputState;
  }

  /** Messages delivered and waiting in memory, over every input. */
  private get buffered(): number {
    let n = 0;
    for (const i of this.inputs) n += i.buffer.length;
    return n;
  }

  async start(): Promise<void> {
    assert(this.state === "idle", "a runner starts once");
    for (const i of this.inputs) {
      i.seqLastApplied = this.d.store.streamSeqLastApplied(i.main ? undefined : i.stream);
      await this.checkStream(i);
    }
    await this.publishLeftovers();
    for (const i of this.inputs) await this.resetConsumer(i, null);
    this.state = "running";
    // Creating the first consumer counts as a reset in progress: a reconnect meanwhile waits for it.
    const first = this.consume();
    this.resetting = first.then(
      () => undefined,
      () => undefined,
    );
    await first.finally(() => {
      this.resetting = null;
    });
    this.lagPoll = setInterval(
      () =>
        void this.pollLag().catch((error: Error) =>
          // A sample that failed (a store closing under it) is only a missed sample.
          this.log.debug("store sample failed", { error }),
        ),
      this.d.config.consumer.lagPollMs,
    );
    if (this.d.applier.tick !== undefined) {
      this.timerTick = setInterval(() => {
        this.tickRequested = true;
        this.scheduleFlush();
        void this.publishClockIfDue();
      }, this.d.applier.tickMs ?? this.d.config.orders.timerTickMs);
    }
    void this.watchConnection();
    this.log.info("partition running", { streamSeqLastApplied: this.seqsForLog() });
  }

  /** The last applied sequence per input stream, for logs. */
  private seqsForLog(): Record<string, number> {
    return Object.fromEntries(this.inputs.map((i) => [i.stream, i.seqLastApplied]));
  }

  /**
   * The store's sequences belong to one stream. A stream deleted and created again restarts its sequences:
   * reading it with the old store would skip its first messages, so the partition refuses to start.
   */
  private async checkStream(input: InputState): Promise<void> {
    const stream = input.stream;
    const info = await this.d.jsm.streams.info(stream);
    const seq = input.seqLastApplied;
    const atMs = this.d.store.streamSeqLastAppliedAtMs(input.main ? undefined : stream);
    const refuse = (why: string) =>
      new Error(
        `${this.d.store.dir} applied ${stream} up to sequence ${seq}, but ${why}: the stream was deleted and created again, or lost data; restore it, or move the partition directory away to start over (docs/operations.md)`,
      );
    if (seq > 0 && info.state.last_seq < seq) throw refuse(`the stream ends at ${info.state.last_seq}`);
    if (seq === 0) return; // nothing applied yet: nothing to compare (retention purges only applied messages)
    const m = await this.d.jsm.streams.getMessage(stream, { seq });
    if (m === null) {
      // Below the stream's first message: retention purged it once applied everywhere (src/stream/retention.ts).
      if (info.state.first_seq > seq) return;
      // Inside the stream's range, gone: deleted by something other than Sluice (retention purges prefixes
      // only), and inputs after it may be gone with it.
      this.log.error("the partition's last applied message was deleted by something other than Sluice", {
        stream,
        streamSeqLastApplied: seq,
        streamSeqFirst: info.state.first_seq,
        fix: "inputs published after it may be lost: check for an operator purge or message delete (docs/operations.md)",
      });
      this.d.events.emit("stream_gap", { stage: this.d.stage, partition: this.d.partition });
      return;
    }
    const storedMs = m.time.getTime();
    if (atMs !== undefined && Math.abs(storedMs - atMs) > 1) {
      throw refuse(
        `its message ${seq} is from ${new Date(storedMs).toISOString()}, not ${new Date(atMs).toISOString()}`,
      );
    }
  }

  /** Outbox items committed before a crash but maybe not published: publish again (JetStream dedupes). */
  private async publishLeftovers(): Promise<void> {
    const pending = this.d.store.pendingOutbox();
    if (pending.length === 0) return;
    this.log.info("publishing outbox left from the last run", { count: pending.length });
    await this.d.publisher.publish(
      pending.map((p) => p.item),
      () => false,
      null,
      this.publishFence(),
    );
    await this.d.store.outboxDone(pending.map((p) => p.key));
  }

  private async resetConsumer(input: InputState, force: string | null): Promise<void> {
    const result = await ensurePartitionConsumer(
      this.d.jsm,
      input.input,
      this.d.partition,
      this.d.config,
      input.seqLastApplied,
      force,
    );
    const info = await this.d.jsm.consumers.info(
      input.stream,
      inputConsumerName(input.input, this.d.partition),
    );
    input.deliverySeqNext = info.delivered.consumer_seq + 1;
    if (result.cause !== "kept") {
      this.log.info("consumer ready", {
        stream: input.stream,
        cause: result.cause,
        streamSeqStart: result.streamSeqStart,
      });
      this.d.events.emit("consumer_reset", {
        stage: this.d.stage,
        partition: this.d.partition,
        cause: result.cause,
        streamSeqStart: result.streamSeqStart,
      });
    }
  }

  private async consume(): Promise<void> {
    await this.stopMessages(); // never two live consumers of one partition in this process
    const generation = ++this.generation;
    for (const input of this.inputs) {
      const consumer = await this.d.js.consumers.get(
        input.stream,
        inputConsumerName(input.input, this.d.partition),
      );
      const messages = await consumer.consume({
        max_messages: this.d.config.consumer.batchCountMax,
        callback: (m) => this.onMessage(input, m, generation),
      });
      input.messages = messages;
      void this.watchStatus(messages, generation);
    }
  }

  private async watchStatus(messages: ConsumerMessages, generation: number): Promise<void> {
    for await (const s of messages.status()) {
      if (generation !== this.generation) return;
      if (s.type === "consumer_deleted" || s.type === "consumer_not_found") {
        this.log.warn("consumer lost; recreating from the store", { status: s.type });
        this.requestReset(s.type);
      } else if (s.type === "heartbeats_missed" || s.type === "exceeded_limits") {
        this.log.warn("consumer status", { status: s.type });
      }
    }
  }

  /**
   * After a reconnect, deliveries that were in flight may be lost (they come back only after ack_wait) and
   * the server may have restarted. Re-syncing the consumer with the store at once keeps order and avoids
   * waiting for redelivery.
   */
  private async watchConnection(): Promise<void> {
    for await (const s of this.d.nc.status()) {
      if (this.state === "stopping" || this.state === "stopped" || this.state === "failed") return;
      if (s.type === "reconnect") this.requestReset("reconnect");
    }
  }

  private onMessage(input: InputState, m: JsMsg, generation: number): void {
    // While stopping, what the server already delivered is still applied: the final drain commits and acks
    // it, so the next start finds the consumer in step with the store and nothing waits for ack_wait.
    if (generation !== this.generation || (this.state !== "running" && this.state !== "stopping")) return;
    const deliverySeq = m.info.deliverySequence;
    if (input.deliverySeqNext !== null && deliverySeq !== input.deliverySeqNext) {
      this.log.warn("delivery gap; resetting consumers to the store's sequences", {
        stream: input.stream,
        deliverySeqExpected: input.deliverySeqNext,
        deliverySeq,
      });
      this.requestReset("delivery_gap");
      return;
    }
    input.deliverySeqNext = deliverySeq + 1;
    input.buffer.push(m);
    this.scheduleFlush();
  }

  /**
   * The next batch, answers first: every input in order, up to consumer.batchCountMax messages in all; the
   * gated intake only while the applier's gate is open. Each input's part is a prefix of its buffer (stream
   * order), so acking its last message acks the part.
   */
  private takeBatch(): Array<[InputState, JsMsg[]]> {
    let room = this.d.config.consumer.batchCountMax;
    const parts: Array<[InputState, JsMsg[]]> = [];
    for (const input of this.inputs) {
      if (room === 0) break;
      if (input.buffer.length === 0) continue;
      const admitted = input.gated && this.state === "running" ? Math.min(room, this.intakeRoom()) : room;
      if (admitted === 0) continue;
      const part = input.buffer.splice(0, admitted);
      room -= part.length;
      parts.push([input, part]);
    }
    return parts;
  }

  private intakeRoom(): number {
    return this.d.applier.intakeRoom?.(Date.now()) ?? Number.POSITIVE_INFINITY;
  }

  /** Whether a batch could be taken now (a gated intake with its gate closed waits for an answer or a tick). */
  private hasWork(): boolean {
    for (const input of this.inputs) {
      if (input.buffer.length === 0) continue;
      if (!input.gated || this.state !== "running" || this.intakeRoom() > 0) return true;
    }
    return false;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.flushing !== null) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flushing = this.drain()
        .catch((error: Error) => this.fail(error))
        .finally(() => {
          this.flushing = null;
          const more = this.hasWork() || (this.tickRequested && this.state === "running");
          if (more && (this.state === "running" || this.state === "stopping")) this.scheduleFlush();
        });
    });
  }

  private async drain(): Promise<void> {
    while (this.state === "running" || this.state === "stopping") {
      // A due tick goes before the next batch: under a sustained burst, work due by the process clock (ERP
      // windows, stock sync) still runs within one batch of its tick. SLA deadlines are not ticks: clocks.
      if (this.tickRequested && this.state === "running") {
        this.tickRequested = false;
        if (this.d.applier.tickWhenBusy === false && this.hasWork()) continue;
        await this.processTick();
      } else {
        const parts = this.takeBatch();
        if (parts.length === 0) return;
        await this.processBatch(parts);
      }
    }
  }

  /**
   * A deadline passed by the process clock: publish a clock message into the partition's stream. Deadlines
   * fire only when the partition applies a clock message (stream time, the same on a replay), so after every
   * input published before it. At most one clock is outstanding (published, not yet applied) and at most one
   * is published per tick, only while a deadline is due; one lost is sent again next tick. One from anyone
   * else is harmless: its timestamp is the server's.
   */
  private async publishClockIfDue(): Promise<void> {
    const dueMs = this.d.applier.timerDueMs?.() ?? null;
    if (dueMs === null || dueMs > Date.now() || this.clockPublishing || this.state !== "running") return;
    const clockInput = this.inputs.find((i) => i.stream === streamNames.answer) ?? this.mainInput;
    if (this.clockSeqOutstanding !== null && this.clockSeqOutstanding > clockInput.seqLastApplied) return;
    this.clockPublishing = true;
    try {
      if (!(await this.routerCaughtUp())) return;
      const ack = await this.d.js.publish(subjects.orderClock(this.d.partition), new Uint8Array(0));
      this.clockSeqOutstanding = ack.seq;
      this.unroutedSeqAtDue = null;
    } catch (error) {
      this.log.warn("clock message not published; the next tick tries again", { error });
    } finally {
      this.clockPublishing = false;
    }
  }

  /**
   * Whether the router has routed (and acked) every message that reached SLUICE_UNROUTED before the deadline
   * passed: a WMS event waiting there would otherwise land after the clock and lose to a deadline it met
   * (after an outage, the router drains a backlog). Later messages do not hold the clock back, so a router
   * that is never idle does not starve the deadlines.
   */
  private async routerCaughtUp(): Promise<boolean> {
    if (this.unroutedSeqAtDue === null) {
      this.unroutedSeqAtDue = (await this.d.jsm.streams.info(streamNames.unrouted)).state.last_seq;
    }
    const info = await this.d.jsm.consumers.info(streamNames.unrouted, unroutedConsumerName);
    const idle = info.num_pending === 0 && info.num_ack_pending === 0;
    return idle || info.ack_floor.stream_seq >= this.unroutedSeqAtDue;
  }

  /** A batch with no input: what is due by time. Committed like any batch; the applied sequence stays. */
  private async processTick(): Promise<void> {
    const write = this.d.applier.tick?.(Date.now()) ?? null;
    if (write === null) return;
    this.fence("commit");
    const { keys, items } = await this.d.store.commit({ ...write, streamSeqLastApplied: null });
    this.d.applier.committed?.();
    if (items.length > 0) await this.enqueuePublish(items, keys);
  }

  private async processBatch(parts: Array<[InputState, JsMsg[]]>): Promise<void> {
    const started = performance.now();
    const fresh: InboundMessage[] = [];
    /** Per input of the batch: the message to ack (its part's last) and the new last applied sequence. */
    const advanced: Array<{ input: InputState; last: JsMsg }> = [];
    let total = 0;
    for (const [input, batch] of parts) {
      let seqMax = input.seqLastApplied;
      let last: JsMsg | null = null;
      for (const m of batch) {
        if (last === null || m.seq > last.seq) last = m;
        if (m.seq <= seqMax) continue; // applied before: a redelivery or a duplicate delivery
        seqMax = m.seq;
        fresh.push(toInbound(input.stream, m));
      }
      assert(last !== null, "a batch's part is never empty");
      total += batch.length;
      advanced.push({ input, last });
    }
    // Router copies published again after the duplicate window carry a name this partition already applied.
    const routed: Array<[number, number, number]> = [];
    const seen = new Set<string>();
    const toApply = fresh.filter((m) => {
      const kind = m.subject.split(".")[3] ?? "";
      const id = routerKinds.has(kind) ? parseRoutedId(m.headers?.get(routedIdHeader) || undefined) : null;
      if (id === null) return true;
      const name = id.join(":");
      if (seen.has(name) || this.d.store.isRouted(id)) return false;
      seen.add(name);
      routed.push(id);
      return true;
    });
    let outbox: OutboxItem[] = [];
    let keys: number[] = [];
    let applied = started;
    if (toApply.length > 0) {
      const wait = this.d.applier.beforeApply?.() ?? null;
      if (wait !== null) await wait;
    }
    if (fresh.length > 0) {
      const write = toApply.length > 0 ? this.d.applier.apply(toApply) : { ops: [], outbox: [] };
      this.fence("commit");
      applied = performance.now();
      const seqs = appliedSeqs(this.mainInput.stream, fresh);
      const committed = await this.d.store.commit({ ...write, ...seqs, routed });
      this.d.applier.committed?.();
      outbox = committed.items;
      keys = committed.keys;
      if (seqs.streamSeqLastApplied !== null) this.mainInput.seqLastApplied = seqs.streamSeqLastApplied;
      for (const i of seqs.inputs ?? []) {
        const input = this.inputs.find((x) => x.stream === i.stream);
        if (input !== undefined) input.seqLastApplied = i.seq;
      }
    }
    const committed = performance.now();
    // Every input counts, also one this batch took nothing from (an intake behind a closed gate): what the
    // server still holds for it, as its newest delivery said, plus what waits in memory.
    for (const a of advanced) a.input.serverPending = a.last.info.pending;
    let lag = 0;
    for (const i of this.inputs) lag += (i.buffer.at(-1)?.info.pending ?? i.serverPending) + i.buffer.length;
    // Emitted between commit and ack: a listener that throws here is a crash after commit, before ack.
    this.d.events.emit("batch_committed", {
      stage: this.d.stage,
      partition: this.d.partition,
      applied: toApply.length,
      skipped: total - toApply.length,
      applySeconds: (applied - started) / 1000,
      commitSeconds: (committed - applied) / 1000,
      lag,
      inFlight: this.d.applier.inFlightLines ?? 0,
    });
    for (const a of advanced) a.last.ack(); // AckAll: acknowledges every message of the part, after the commit
    this.lastBatchAtMs = Date.now();
    if (outbox.length > 0) await this.enqueuePublish(outbox, keys);
  }

  /**
   * The next batch is applied and committed while this one's outbox is published (pipelining: JetStream's
   * publish acks no longer stall the partition). Publishes stay in commit order, batch after batch, so a
   * subject's items never overtake each other; at most outbox.batchesInFlightMax batches wait to publish.
   */
  private async enqueuePublish(outbox: OutboxItem[], keys: number[]): Promise<void> {
    this.publishesPending++;
    // Cluster mode: a commit's changelog record leads its outbox. Records go one after the other on a chain of
    // their own, so the next commit's record travels while this commit's outputs do: one round trip per
    // batch, not two. A commit's outputs still wait for its record (a fenced record must stop them).
    const logCount = leadingLogItems(outbox);
    const logged =
      logCount === 0
        ? Promise.resolve()
        : this.logging.then(() =>
            this.state === "failed" ? undefined : this.publishOutbox(outbox.slice(0, logCount), [], false),
          );
    // A record that failed ends the chain: every later record waits on it and fails with it, so the log never
    // holds a commit without the one before (a gap a new owner would refuse to read past).
    this.logging = logged;
    const outputs = logCount === 0 ? outbox : outbox.slice(logCount);
    this.publishing = Promise.all([this.publishing, logged])
      .then(() => (this.state === "failed" ? undefined : this.publishOutbox(outputs, keys)))
      .catch((error: Error) => {
        // Stopping while a target stream is full: the items stay in the outbox, published at the next start.
        if (this.state === "stopping") this.log.warn("outbox left for the next start", { error });
        else this.fail(error);
      })
      .finally(() => {
        this.publishesPending--;
      });
    if (this.publishesPending > this.d.config.outbox.batchesInFlightMax) await this.publishing;
  }

  /** Resolves once every committed batch's outbox has been published (or the partition failed). */
  private async published(): Promise<void> {
    while (this.publishesPending > 0) await this.publishing;
  }

  /**
   * Fencing: a process that stalled past the data-dir lock's lease, or a node whose partition lease ran out
   * (cluster mode), neither commits nor publishes for the partition again.
   */
  private fence(what: "commit" | "publish"): void {
    if (this.d.lockHeld === undefined || this.d.lockHeld()) return;
    throw new FencedError(
      this.d.onFenced === undefined
        ? `another process took over the data-dir lock (this one stalled past store.lockStaleMs); no ${what}`
        : `the partition's lease ran out (cluster.leaseMs); no ${what} here any more`,
    );
  }

  /** What the publisher checks before each attempt: the lease (cluster) and the changelog's writer chain. */
  private publishFence(): PublishFence {
    return {
      fenced: () => this.d.lockHeld !== undefined && !this.d.lockHeld(),
      chain: this.d.store.logChain,
    };
  }

  private async publishOutbox(outbox: OutboxItem[], keys: number[], report = true): Promise<void> {
    this.fence("publish");
    if (outbox.length === 0) {
      if (keys.length > 0) this.d.store.outboxDone(keys).catch((error: Error) => this.fail(error));
      return;
    }
    const started = performance.now();
    const attempts = await this.d.publisher.publish(
      outbox,
      () => this.state === "stopping",
      null,
      this.publishFence(),
    );
    if (report)
      this.d.events.emit("outbox_published", {
        stage: this.d.stage,
        partition: this.d.partition,
        count: outbox.length,
        seconds: (performance.now() - started) / 1000,
        attempts,
      });
    // Not awaited: a crash before it lands only re-publishes these items, which JetStream de-duplicates.
    if (keys.length > 0) this.d.store.outboxDone(keys).catch((error: Error) => this.fail(error));
  }

  private requestReset(cause: string): void {
    // One reset at a time: a reconnect while the consumer is being (re)created is covered by that reset.
    if (this.state !== "running" || this.resetting !== null) return;
    this.state = "resetting";
    this.resetting = this.reset(cause).finally(() => {
      this.resetting = null;
    });
  }

  private async reset(cause: string): Promise<void> {
    this.generation++;
    for (const i of this.inputs) i.buffer = []; // not acked; the recreated consumers deliver them again, in order
    await this.stopMessages();
    if (this.flushing !== null) await this.flushing;
    const attemptsMax = this.d.config.consumer.resetAttemptsMax;
    for (let attempt = 1; ; attempt++) {
      try {
        for (const i of this.inputs) await this.resetConsumer(i, cause);
        if (this.state !== "resetting") return; // stopped meanwhile
        this.state = "running";
        await this.consume();
        return;
      } catch (error) {
        if (attempt >= attemptsMax) {
          this.fail(
            new Error(`consumer reset failed ${attempt} times (consumer.resetAttemptsMax)`, { cause: error }),
          );
          return;
        }
        this.log.warn("consumer reset failed; retrying", { attempt, error });
        await Bun.sleep(Math.min(this.d.config.outbox.publishBackoffMsMax, 50 * 2 ** attempt));
        if (this.state !== "resetting" && this.state !== "running") return;
        this.state = "resetting";
      }
    }
  }

  private async pollLag(): Promise<void> {
    if (this.state !== "running") return;
    const space = this.d.store.space();
    if (space === null) return; // closed under the runner: it is stopping
    const dueMs =
      this.d.stage === "order"
        ? (this.d.store.range<number>("timers", { limit: 1 })[0]?.key as [number, string] | undefined)?.[0]
        : undefined;
    this.d.events.emit("store_sampled", {
      stage: this.d.stage,
      partition: this.d.partition,
      outboxItems: this.d.store.count("outbox"),
      timers: this.d.stage === "order" ? this.d.store.count("timers") : 0,
      ...space,
      timerOverdueMs: dueMs === undefined ? 0 : Math.max(0, Date.now() - dueMs),
    });
    if (Date.now() - this.lastBatchAtMs < this.d.config.consumer.lagPollMs) return;
    try {
      let lag = 0;
      for (const i of this.inputs) {
        const info = await this.d.jsm.consumers.info(i.stream, inputConsumerName(i.input, this.d.partition));
        lag += info.num_pending + info.num_ack_pending;
      }
      this.d.events.emit("lag_observed", { stage: this.d.stage, partition: this.d.partition, lag });
    } catch {
      // NATS unavailable: the next poll tries again; readiness reports the outage.
    }
  }

  private async stopMessages(): Promise<void> {
    for (const input of this.inputs) {
      const messages = input.messages;
      input.messages = null;
      if (messages === null) continue;
      try {
        messages.stop();
        await messages.closed();
      } catch {
        // Already closed with its connection.
      }
    }
  }

  /** Graceful: stop taking messages, finish the batch in flight and what is buffered, commit, ack. */
  async stop(): Promise<void> {
    if (this.state === "stopped" || this.state === "idle") {
      this.state = "stopped";
      return;
    }
    if (this.lagPoll !== null) clearInterval(this.lagPoll);
    if (this.timerTick !== null) clearInterval(this.timerTick);
    this.tickRequested = false;
    if (this.resetting !== null && this.state !== "failed") {
      this.state = "stopping"; // a reset in progress sees it and returns after its current step
      await this.resetting;
    }
    if (this.state === "failed") {
      // Nothing more is applied or acked after a failure: what was not acked is delivered again.
      this.generation++;
      await this.stopMessages();
      if (this.flushing !== null) await this.flushing;
      await this.publishing;
      return;
    }
    this.state = "stopping";
    await this.stopMessages();
    // Finish through the one flush path, so there is never a second flush in flight.
    while (this.state === "stopping") {
      if (this.flushing !== null) await this.flushing;
      else if (this.buffered > 0) this.scheduleFlush();
      if (this.flushing === null && this.buffered === 0 && !this.flushScheduled) break;
      await new Promise((resolve) => setImmediate(resolve));
    }
    if (this.flushing !== null) await this.flushing;
    await this.published();
    this.state = "stopped";
    this.log.info("partition stopped", { streamSeqLastApplied: this.seqsForLog() });
  }

  private fail(error: Error): void {
    if (this.state === "failed") return;
    this.state = "failed";
    for (const i of this.inputs) i.buffer = [];
    this.generation++; // deliveries still arriving are ignored
    if (error instanceof StoreWriteError && error.full && this.d.onStoreFull !== undefined) {
      this.log.warn("partition paused: no room to commit; its input waits in JetStream", { error });
      this.d.onStoreFull(error);
      return;
    }
    if (error instanceof FencedError && this.d.onFenced !== undefined) {
      this.log.warn("partition fenced: it stops here; its new owner carries on", { error });
      this.d.onFenced(error);
      return;
    }
    this.log.error("partition failed", { error });
    this.d.onFatal(error);
  }
}

/** What a stage sees of a JetStream message of `stream`. */
export function toInbound(stream: string, m: JsMsg): InboundMessage {
  return {
    stream,
    seq: m.seq,
    subject: m.subject,
    data: m.data,
    headers: m.headers,
    atMs: Math.floor(m.info.timestampNanos / 1_000_000),
  };
}

export { FencedError };

/** How many of a commit's outbox items are its changelog record's parts: they come first (PartitionStore). */
function leadingLogItems(outbox: readonly OutboxItem[]): number {
  let n = 0;
  while (n < outbox.length && (outbox[n] as OutboxItem).subject.startsWith("sluice.log.")) n++;
  return n;
}
