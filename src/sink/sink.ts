import {
  AckPolicy,
  type ConsumerConfig,
  type ConsumerMessages,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
  ReplayPolicy,
} from "@nats-io/jetstream";
import { type NatsConnection, headers as natsHeaders } from "@nats-io/transport-node";
import { assert } from "../domain/assert.ts";
import { TokenBucket } from "../domain/sync/token-bucket.ts";
import { Logger } from "../log/index.ts";
import { connectSecured } from "../stream/connection.ts";
import { deadLetterHeaders } from "../stream/dead-letter.ts";
import { isNotFound } from "../stream/provision.ts";
import { ErpChainWatch, erpChainLink } from "./erp-chain.ts";
import { SinkError } from "./errors.ts";
import { SinkInstrumentation } from "./events.ts";
import { type BatchHost, MarketplaceBatches } from "./marketplaces/batches.ts";
import { loadMarketplace, type Marketplace } from "./marketplaces/index.ts";
import type { Call, ItemFailureCode } from "./marketplaces/types.ts";
import { createSinkMetrics, serveMetrics } from "./metrics.ts";
import { filterSubjectOf, outStream, type SinkOptions, sinkSecurity, sinkSecurityNames } from "./options.ts";
import { backoffMs, type FailureKind, type HttpReply, httpPost, type PostOutcome, postJson } from "./post.ts";

// The reference sink: one durable consumer on SLUICE_OUT, one message in flight, POST → 2xx → ack. Strict
// order comes from the server: max_ack_pending = 1 delivers the next message only once this one is settled,
// redeliveries included, so two versions of a SKU never reach the endpoint out of order. At-least-once: a
// crash between the 2xx and the ack repeats the request with the same Idempotency-Key.
//
// A marketplace profile (src/sink/marketplaces/) takes a batch instead: every message that has arrived, up to
// max_ack_pending = --batch-messages-max, coalesced to the newest value per SKU and sent in the API's own
// requests; one batch in flight, settled (acked, or items dead-lettered alone) before the next.

export const sinkDeadLetterSubject = "sluice.dlq.sink_failed";
export const sinkDeadLetterReason = "sink_failed";
/** Sink-specific dead-letter headers, next to the common ones of src/stream/dead-letter.ts. */
export const sinkHeaders = {
  idempotencyKey: "Sluice-Idempotency-Key",
  attempts: "Sluice-Sink-Attempts",
  status: "Sluice-Sink-Status",
  consumer: "Sluice-Sink-Consumer",
  /** On an item dead-lettered by a marketplace profile: why (item_invalid, sku_unmapped, rejected…). */
  code: "Sluice-Sink-Code",
  profile: "Sluice-Sink-Profile",
} as const;

/** Pause before consuming again after the consumer broke (server restart, consumer deleted). */
const reconsumePauseMs = 1000;
const msToNs = (ms: number) => ms * 1_000_000;

export { SinkError };

export type SinkStats = {
  delivered: number;
  retried: number;
  deadLettered: number;
  failedAttempts: number;
  /** Marketplace profiles: stock items delivered, and dead-lettered alone. */
  itemsDelivered: number;
  itemsDeadLettered: number;
};

export type Sink = {
  readonly stats: Readonly<SinkStats>;
  readonly events: SinkInstrumentation;
  /** The metrics port actually bound (null: not served). */
  readonly metricsPort: number | null;
  /** Finishes or abandons the message in hand (left for redelivery), then closes. Idempotent. */
  stop(): Promise<void>;
};

export type SinkDeps = { log?: Logger; events?: SinkInstrumentation };

/** Connects, makes sure the durable consumer exists, and starts delivering. Throws SinkError on a bad setup. */
export async function startSink(options: SinkOptions, deps: SinkDeps = {}): Promise<Sink> {
  const label = options.source.kind === "erp" ? "erp" : `stock:${options.source.channel}`;
  const log = deps.log ?? new Logger(options.logLevel, { component: "sink", source: label });
  const events = deps.events ?? new SinkInstrumentation();
  // The mapping table and the secrets are read before connecting: a bad table fails fast, with its fix.
  const market = options.profile === "generic" ? null : loadMarketplace(options);
  const nc = await connectSink(options, log);
  try {
    const jsm = await jetstreamManager(nc);
    const runner = new SinkRunner(options, nc, jetstream(nc), jsm, log, events, market);
    await runner.ensureConsumer();
    const metrics =
      options.metricsPort === null
        ? null
        : serveMetrics(createSinkMetrics(events, label), options.metricsHost, options.metricsPort);
    runner.start();
    log.info("sink started", {
      filter: filterSubjectOf(options.source),
      consumer: options.consumerName,
      profile: options.profile,
      ...(market === null
        ? {}
        : { mappedSkus: market.mapping.size, batchItemsMax: market.profile.batchItemsMax }),
    });
    return {
      stats: runner.stats,
      events,
      metricsPort: metrics === null ? null : (metrics.port ?? null),
      stop: async () => {
        await runner.stop();
        await metrics?.stop(true);
      },
    };
  } catch (error) {
    await nc.close();
    throw error;
  }
}

async function connectSink(o: SinkOptions, log: Logger): Promise<NatsConnection> {
  // TLS, token, user/password, NKey seed or creds file: checked (files included) and applied in one place.
  const nc = await connectSecured(
    {
      servers: o.natsUrl.split(",").map((s) => s.trim()),
      name: `sluice-sink-${o.consumerName}`,
      // Replies and pulled messages arrive on <prefix>.<consumer>.… (`_INBOX.sink-erp.…` by default), so the
      // sink's NATS user may subscribe to its own inboxes only, never to other clients' (docs/security.md, the
      // sink's permissions; on the embedded server the reader's prefix, `_INBOX_READER`).
      inboxPrefix: `${o.natsInboxPrefix}.${o.consumerName}`,
      reconnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
    },
    sinkSecurity(o),
    sinkSecurityNames,
  );
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === "disconnect" || s.type === "reconnect") log.warn(`NATS ${s.type}`, { server: s.server });
    }
  })();
  return nc;
}

class SinkRunner implements BatchHost {
  readonly stats: SinkStats = {
    delivered: 0,
    retried: 0,
    deadLettered: 0,
    failedAttempts: 0,
    itemsDelivered: 0,
    itemsDeadLettered: 0,
  };
  private readonly filter: string;
  private readonly bucket: TokenBucket;
  private readonly stopSignal = new AbortController();
  private messages: ConsumerMessages | null = null;
  private loop: Promise<void> = Promise.resolve();
  private stopped: Promise<void> | null = null;
  private readonly chains = new ErpChainWatch();
  /** Messages handed out at once: 1 for generic (strict order), a batch for a marketplace profile. */
  private readonly inFlightMax: number;
  private readonly batches: MarketplaceBatches | null;
  private arrivals: Arrivals<JsMsg> | null = null;

  constructor(
    private readonly o: SinkOptions,
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly log: Logger,
    private readonly events: SinkInstrumentation,
    market: Marketplace | null,
  ) {
    this.filter = filterSubjectOf(o.source);
    this.bucket = new TokenBucket(o.requestsPerSecond, o.burstRequestsMax);
    this.inFlightMax = market === null ? 1 : o.batchMessagesMax;
    this.batches = market === null ? null : new MarketplaceBatches(market, this, events, o.backoffMsMax);
  }

  get stopping(): boolean {
    return this.stopSignal.signal.aborted;
  }

  /** Creates the durable consumer, or checks and keeps one that filters the same subject. */
  async ensureConsumer(): Promise<void> {
    const wanted: Partial<ConsumerConfig> = {
      durable_name: this.o.consumerName,
      description: `Sluice reference sink (${this.filter})`,
      filter_subject: this.filter,
      ack_policy: AckPolicy.Explicit,
      ack_wait: msToNs(this.o.ackWaitMs),
      max_ack_pending: this.inFlightMax,
      max_deliver: -1,
      deliver_policy: DeliverPolicy.All,
      replay_policy: ReplayPolicy.Instant,
    };
    const info = await this.jsm.consumers.info(outStream, this.o.consumerName).catch((error) => {
      if (isNotFound(error)) return null;
      throw error;
    });
    if (info === null) {
      await this.requireStream();
      await this.jsm.consumers.add(outStream, wanted);
      return;
    }
    if (info.config.filter_subject !== this.filter) {
      throw new SinkError(
        `consumer ${this.o.consumerName} on ${outStream} filters ${info.config.filter_subject}, not ${this.filter}: choose another --consumer, or delete it (nats consumer rm ${outStream} ${this.o.consumerName})`,
      );
    }
    if (info.config.ack_wait !== wanted.ack_wait || info.config.max_ack_pending !== this.inFlightMax) {
      await this.jsm.consumers.update(outStream, this.o.consumerName, {
        ack_wait: wanted.ack_wait,
        max_ack_pending: this.inFlightMax,
      });
    }
  }

  private async requireStream(): Promise<void> {
    try {
      await this.jsm.streams.info(outStream);
    } catch (error) {
      if (!isNotFound(error)) throw error;
      throw new SinkError(
        `stream ${outStream} not found at ${this.o.natsUrl}: start Sluice first (it creates its streams)`,
      );
    }
  }

  start(): void {
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      try {
        const consumer = await this.js.consumers.get(outStream, this.o.consumerName);
        this.messages = await consumer.consume({ max_messages: this.inFlightMax });
        // stop() ran while consume() was being set up: closed now, the loop below ends at once.
        if (this.stopping) void this.messages.close();
        if (this.batches === null) {
          // One message at a time, the next pulled only once this one is settled: a message given back at a
          // stop finds no pull of ours open, so the next run gets it at once.
          for await (const m of this.messages) {
            await this.handle(m);
            if (this.stopping) break;
          }
        } else {
          this.arrivals = new Arrivals(this.messages);
          await this.drain(this.arrivals);
        }
      } catch (error) {
        if (this.stopping) break;
        this.log.warn("consuming failed; starting again", { error });
        await this.ensureConsumer().catch((e) => this.log.warn("consumer check failed", { error: e }));
      }
      if (!this.stopping) await sleep(reconsumePauseMs, this.stopSignal.signal);
    }
  }

  /** Batches as they arrive until the consumer ends or the sink stops; what was not handed out goes back. */
  private async drain(arrivals: Arrivals<JsMsg>): Promise<void> {
    try {
      for (;;) {
        const batch = await arrivals.next(this.inFlightMax);
        if (batch === null) return;
        if (this.stopping) {
          for (const m of batch) this.leave(m);
          return;
        }
        await this.handleBatch(batch);
        if (this.stopping) return;
      }
    } finally {
      for (const m of arrivals.rest()) this.leave(m);
    }
  }

  private async handleBatch(batch: JsMsg[]): Promise<void> {
    const batches = this.batches;
    assert(batches !== null, "batches come only with a marketplace profile");
    const settled = await batches.handle(batch);
    this.stats.itemsDelivered += settled.itemsDelivered;
    this.stats.itemsDeadLettered += settled.itemsDeadLettered;
  }

  private async handle(m: JsMsg): Promise<void> {
    const key = idempotencyKeyOf(m);
    if (!isJson(m.data)) {
      await this.deadLetter(m, key, "payload is not JSON", 0, null);
      return;
    }
    await this.deliver(m, key);
  }

  /** Up to attemptsMax tries, each within the rate budget; 2xx → ack; bound spent or permanent → dead letter. */
  private async deliver(m: JsMsg, key: string): Promise<void> {
    let last: Extract<PostOutcome, { ok: false }> | null = null;
    let attempt = 0;
    while (attempt < this.o.attemptsMax) {
      attempt++;
      await this.waitForToken([m]);
      if (this.stopping) return this.leave(m);
      m.working();
      const out = await postJson({
        url: this.o.url,
        body: m.data,
        headers: this.requestHeaders(m, key),
        timeoutMs: this.o.requestTimeoutMs,
        stop: this.stopSignal.signal,
      });
      this.events.emit("request", { seconds: out.seconds, ok: out.ok });
      if (out.ok) return this.delivered(m, key, attempt);
      if (out.kind === "aborted") return this.leave(m);
      last = out;
      const willRetry = out.retriable && attempt < this.o.attemptsMax;
      this.failed(m, out, attempt, willRetry);
      if (!willRetry) break;
      await this.pause(backoffMs(attempt, this.o, out.retryAfterMs), [m]);
      if (this.stopping) return this.leave(m);
    }
    await this.deadLetter(m, key, last?.detail ?? "no attempt made", attempt, last?.status ?? null);
  }

  private requestHeaders(m: JsMsg, key: string): Array<[string, string]> {
    return [
      ["Content-Type", "application/json"],
      ["Idempotency-Key", key],
      ["Sluice-Subject", m.subject],
      ["Sluice-Stream-Seq", String(m.seq)],
      ...this.o.headers,
    ];
  }

  private failed(
    m: JsMsg,
    out: Extract<PostOutcome, { ok: false }>,
    attempt: number,
    willRetry: boolean,
  ): void {
    this.stats.failedAttempts++;
    if (willRetry) this.stats.retried++;
    this.events.emit("attempt_failed", {
      streamSeq: m.seq,
      kind: out.kind,
      status: out.status,
      attempt,
      willRetry,
    });
    this.log.warn("delivery attempt failed", { seq: m.seq, attempt, willRetry, detail: out.detail });
  }

  private async delivered(m: JsMsg, key: string, attempts: number): Promise<void> {
    try {
      await m.ackAck({ timeout: this.o.requestTimeoutMs });
    } catch (error) {
      // The endpoint has it; a lost ack only repeats the request, with the same Idempotency-Key.
      this.log.warn("ack not confirmed; the message may be delivered again", { seq: m.seq, error });
    }
    this.stats.delivered++;
    this.events.emit("delivered", { streamSeq: m.seq, idempotencyKey: key, attempts });
    if (this.o.source.kind === "erp") this.watchChain(m);
  }

  /** The ERP chain as delivered: a gap is logged and counted here, where the ERP is fed. */
  private watchChain(m: JsMsg): void {
    const link = erpChainLink(m.data);
    if (link === null) return;
    const outcome = this.chains.observe(link);
    if (outcome === null) return;
    const { stage, partition, batchNo } = link;
    this.events.emit("erp_chain", { outcome, stage, partition, batchNo });
    if (outcome === "gap")
      this.log.error("ERP chain gap: a batch is missing before this one (docs/sync-and-erp.md)", {
        seq: m.seq,
        stage,
        partition,
        storeId: link.storeId,
        batchNo,
        prevSeqTo: link.prevSeqTo,
      });
  }

  /** Stopping: the message goes back to the server at once and is delivered to the next run. */
  leave(m: JsMsg, delayMs?: number): void {
    m.nak(delayMs);
  }

  /** A marketplace call: within the rate budget, the batch kept alive, the request counted. */
  async send(call: Call<unknown>, batch: JsMsg[]): Promise<HttpReply> {
    await this.waitForToken(batch);
    if (this.stopping) return { answered: false, kind: "aborted", detail: "stopping", seconds: 0 };
    for (const m of batch) m.working();
    const reply = await httpPost({
      url: call.url,
      body: call.body,
      headers: call.headers,
      timeoutMs: this.o.requestTimeoutMs,
      stop: this.stopSignal.signal,
    });
    const ok = reply.answered && reply.status >= 200 && reply.status < 300;
    this.events.emit("request", { seconds: reply.seconds, ok });
    return reply;
  }

  attemptFailed(
    m: JsMsg,
    e: { failure: FailureKind; status: number | null; attempt: number; willRetry: boolean; detail: string },
  ): void {
    this.stats.failedAttempts++;
    if (e.willRetry) this.stats.retried++;
    const { failure: kind, status, attempt, willRetry } = e;
    this.events.emit("attempt_failed", { streamSeq: m.seq, kind, status, attempt, willRetry });
    this.log.warn("marketplace request failed", { seq: m.seq, attempt, willRetry, kind, detail: e.detail });
  }

  deadLetterMessage(m: JsMsg, detail: string): Promise<void> {
    return this.deadLetter(m, idempotencyKeyOf(m), detail, 0, null);
  }

  async ack(m: JsMsg, requests: number): Promise<void> {
    await this.delivered(m, idempotencyKeyOf(m), requests);
  }

  /**
   * One stock item, alone, to sluice.dlq.sink_failed: `{"items":[item]}` (republished to the channel's subject,
   * it is delivered again), the source's headers, the reason and the item's index; the id names the item, so
   * a redelivered batch writes the same dead letter and JetStream drops the copy.
   */
  async deadLetterItem(
    m: JsMsg,
    index: number,
    item: unknown,
    code: ItemFailureCode,
    detail: string,
  ): Promise<boolean> {
    const h = this.deadLetterHeadersOf(m, idempotencyKeyOf(m), `${code}: ${detail}`, 0, null);
    h.set("Content-Type", "application/json");
    h.set(deadLetterHeaders.item, String(index));
    h.set(sinkHeaders.code, code);
    h.set(sinkHeaders.profile, this.o.profile);
    try {
      const msgID = `dlq:${m.info.stream}:${m.seq}:${this.o.consumerName}:${index}`;
      await this.js.publish(sinkDeadLetterSubject, JSON.stringify({ items: [item] }), { headers: h, msgID });
      this.log.warn("stock item dead-lettered", { seq: m.seq, index, code, detail });
      return true;
    } catch (error) {
      this.events.emit("dead_letter_failed", { streamSeq: m.seq, error: String(error) });
      this.log.error("item dead letter not published; the message will be redelivered", {
        seq: m.seq,
        error,
      });
      return false;
    }
  }

  /**
   * The message, untouched, to sluice.dlq.sink_failed with the reason in headers; then term() so the next
   * message can go. If the dead letter cannot be published the message is nak'ed and comes back later:
   * nothing is dropped silently.
   */
  private async deadLetter(m: JsMsg, key: string, detail: string, attempts: number, status: number | null) {
    const h = this.deadLetterHeadersOf(m, key, detail, attempts, status);
    try {
      const msgID = `dlq:${m.info.stream}:${m.seq}:${this.o.consumerName}`;
      await this.js.publish(sinkDeadLetterSubject, m.data, { headers: h, msgID });
      m.term();
      this.stats.deadLettered++;
      this.events.emit("dead_lettered", { streamSeq: m.seq, idempotencyKey: key, detail });
      this.log.warn("message dead-lettered", { seq: m.seq, subject: sinkDeadLetterSubject, detail });
    } catch (error) {
      this.events.emit("dead_letter_failed", { streamSeq: m.seq, error: String(error) });
      this.log.error("dead letter not published; the message will be redelivered", { seq: m.seq, error });
      m.nak(this.o.backoffMsMax);
    }
  }

  private deadLetterHeadersOf(
    m: JsMsg,
    key: string,
    detail: string,
    attempts: number,
    status: number | null,
  ) {
    const h = natsHeaders();
    for (const k of m.headers?.keys() ?? []) {
      if (k.toLowerCase() === "nats-msg-id") continue;
      for (const v of m.headers?.values(k) ?? []) h.append(k, v);
    }
    h.set(deadLetterHeaders.reason, sinkDeadLetterReason);
    h.set(deadLetterHeaders.detail, detail.replace(/[\r\n]+/g, " ").slice(0, 1024));
    h.set(deadLetterHeaders.subject, m.subject);
    h.set(deadLetterHeaders.stream, m.info.stream);
    h.set(deadLetterHeaders.seq, String(m.seq));
    h.set(sinkHeaders.idempotencyKey, key);
    h.set(sinkHeaders.attempts, String(attempts));
    h.set(sinkHeaders.status, status === null ? "none" : String(status));
    h.set(sinkHeaders.consumer, this.o.consumerName);
    return h;
  }

  private async waitForToken(batch: JsMsg[]): Promise<void> {
    while (!this.stopping && !this.bucket.tryTake(performance.now())) {
      await this.pause(this.bucket.msUntilToken(performance.now()), batch);
    }
  }

  /** Sleeps `ms`, telling the server the batch is still being worked on (at most every ackWaitMs / 2). */
  async pause(ms: number, batch: JsMsg[]): Promise<void> {
    const sliceMs = Math.floor(this.o.ackWaitMs / 2);
    for (let left = ms; left > 0 && !this.stopping; left -= sliceMs) {
      await sleep(Math.min(left, sliceMs), this.stopSignal.signal);
      for (const m of batch) m.working();
    }
  }

  stop(): Promise<void> {
    this.stopped ??= this.close();
    return this.stopped;
  }

  private async close(): Promise<void> {
    this.stopSignal.abort();
    // Awaited below with the loop: close() resolves when the iteration ends.
    const closing = this.messages?.close().catch(() => undefined) ?? Promise.resolve();
    const budget = new AbortController();
    const timedOut = await Promise.race([
      Promise.all([this.loop, closing]).then(() => false),
      sleep(this.o.stopTimeoutMs, budget.signal).then(() => !budget.signal.aborted),
    ]);
    budget.abort(); // no timer left behind
    if (timedOut) this.log.warn("stop budget spent with a message in hand; it will be redelivered");
    // A marketplace batch's pull stays open while it works (max_ack_pending > 1): what it delivered after the
    // stop goes back now; one the server hands that closed pull again waits ack_wait (docs/sync-and-erp.md).
    for (const m of this.arrivals?.rest() ?? []) m.nak();
    await this.nc.drain().catch(() => this.nc.close());
    this.log.info("sink stopped", { ...this.stats });
  }
}

const idempotencyKeyOf = (m: JsMsg) => m.headers?.get("Nats-Msg-Id") || `${m.info.stream}:${m.seq}`;

/**
 * Batching by arrival (docs/architecture.md): whatever the consumer has delivered since the last batch is the
 * next batch; nothing waits for a batch to fill. Bounded by the consumer's max_ack_pending.
 */
class Arrivals<T> {
  private readonly buffer: T[] = [];
  private wake: (() => void) | null = null;
  private ended = false;
  private failure: unknown = null;

  constructor(source: AsyncIterable<T>) {
    void this.pump(source);
  }

  private async pump(source: AsyncIterable<T>): Promise<void> {
    try {
      for await (const m of source) {
        this.buffer.push(m);
        this.wake?.();
      }
    } catch (error) {
      this.failure = error ?? new Error("consumer failed");
    } finally {
      this.ended = true;
      this.wake?.();
    }
  }

  /** Up to `max` messages once at least one is there; null when the source ended (its error, if it failed). */
  async next(max: number): Promise<T[] | null> {
    while (this.buffer.length === 0) {
      if (this.failure !== null) throw this.failure;
      if (this.ended) return null;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = null;
    }
    return this.buffer.splice(0, max);
  }

  /** What arrived and was never handed out. */
  rest(): T[] {
    return this.buffer.splice(0);
  }
}

function isJson(data: Uint8Array): boolean {
  try {
    JSON.parse(new TextDecoder().decode(data));
    return true;
  } catch {
    return false;
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
