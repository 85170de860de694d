import type { ConsumerMessages, JetStreamClient, JsMsg } from "@nats-io/jetstream";
import type { Config } from "../config/index.ts";
import { type DomainLimits, parseId, parseStockItems, type StockItem } from "../domain/ledger/index.ts";
import { parseOrderRef } from "../domain/orders/index.ts";
import { type ChannelSnapshot, parseChannelSnapshot } from "../domain/sync/index.ts";
import type { Instrumentation } from "../instrumentation/index.ts";
import type { Logger } from "../log/index.ts";
import { contentTypeOf, Envelopes } from "../stages/envelopes.ts";
import { domainLimits } from "../stages/ledger/applier.ts";
import type { OutboxItem } from "../store/index.ts";
import { contentTypes, decodePayload, pack } from "./codec.ts";
import { type DeadLetterReason, deadLetter } from "./dead-letter.ts";
import { type OutboxPublisher, type PublishRefusal, publishedBytes } from "./outbox-publisher.ts";
import { stageMessageBytesMax } from "./provision.ts";
import {
  decodeToken,
  orderKey,
  orderPartition,
  routedIdHeader,
  routedSubject,
  routePublic,
  skuPartition,
  streamNames,
  subjects,
  unroutedConsumerName,
} from "./subjects.ts";

/** Header naming the public subject a routed message was published to. */
export const originalSubjectHeader = "Sluice-Original-Subject";

const strippedHeaders = new Set([
  "nats-msg-id",
  originalSubjectHeader.toLowerCase(),
  routedIdHeader.toLowerCase(),
]);

/** `<source ms>:<source seq>:<n>`: the same for every re-publish of the same source message. */
function routedName(m: JsMsg, n: number): string {
  return `${Math.floor(m.info.timestampNanos / 1_000_000)}:${m.seq}:${n}`;
}

/**
 * Inbound messages that no server mapping partitioned land in SLUICE_UNROUTED, and this router sends each
 * where it belongs, then acks it:
 * - WMS events (`sluice.in.wms.<warehouse>.<event>`): shipped/rejected go, untouched, to the partition of
 *   the order they name; received/counted are split into one envelope of stock items per ledger partition.
 * - Bulk imports (`sluice.in.import.<id>`): split the same way (fast SKU onboarding).
 * - Channel reports (`sluice.in.channel.<channel>.stock`, reconciliation): validated, then one share per
 *   ledger partition owning some of its SKUs; a full snapshot's part goes to every partition (an empty share
 *   too), so each can tell when it has heard every part.
 *   A `commandId` given once for such a message is given to item i as `<commandId>/<i>` here, where i is
 *   still the item's index in the producer's message (parseStockItems): the envelopes lose it.
 * - Public stock/order subjects on a server without Sluice's mappings: copied to their partitioned subject
 *   (the same rule as the mapping), so Sluice still works, at the cost of this extra hop.
 * - Anything else: a dead letter with its reason.
 * Message ids are `unrouted:<seq>:<n>`: a re-publish after a crash is de-duplicated within the stream's
 * duplicate window (streams.duplicateWindowMs); docs/operations.md says what that bounds.
 *
 * What the stage stream would refuse is never forwarded: a copy over its max_msg_size (a long subject in the
 * router's headers) or refused for good by the server becomes a dead letter (`message_too_large`,
 * `refused`), so one message never stops the router. A full stage stream is waited for (back-pressure: the
 * message stays unacked, SLUICE_UNROUTED fills and refuses producers in turn).
 */
export class UnroutedRouter {
  private buffer: JsMsg[] = [];
  private draining: Promise<void> | null = null;
  private messages: ConsumerMessages | null = null;
  private stopped = false;
  private readonly limits: DomainLimits;
  /** What a stage stream takes (payload and headers): a copy must fit it. */
  private readonly copyBytesMax: number;

  constructor(
    private readonly js: JetStreamClient,
    private readonly publisher: OutboxPublisher,
    private readonly config: Config,
    private readonly events: Instrumentation,
    private readonly log: Logger,
    private readonly onFatal: (error: Error) => void,
  ) {
    this.limits = domainLimits(config);
    this.copyBytesMax = stageMessageBytesMax(config);
  }

  async start(): Promise<void> {
    const consumer = await this.js.consumers.get(streamNames.unrouted, unroutedConsumerName);
    this.messages = await consumer.consume({
      max_messages: this.config.consumer.batchCountMax,
      // Messages delivered while stopping are still routed and acked (a graceful stop finishes what it holds).
      callback: (m) => {
        this.buffer.push(m);
        if (this.draining === null) this.draining = this.drain().finally(() => (this.draining = null));
      },
    });
  }

  private async drain(): Promise<void> {
    await new Promise((resolve) => setImmediate(resolve));
    while (this.buffer.length > 0) {
      const batch = this.buffer.splice(0, this.config.consumer.batchCountMax);
      const items = batch.flatMap((m) => this.fitting(m, this.route(m)));
      try {
        const started = performance.now();
        const attempts = await this.publisher.publish(
          items,
          () => this.stopped,
          (item, refusal, error) => this.refused(batch, item, refusal, error),
        );
        this.events.emit("outbox_published", {
          stage: "unrouted",
          partition: 0,
          count: items.length,
          seconds: (performance.now() - started) / 1000,
          attempts,
        });
      } catch (error) {
        // Stopping while a stage stream is full: what is unacked is routed again at the next start, at once.
        if (this.stopped) {
          this.log.warn(
            "router stopped with messages it could not route; they are routed at the next start",
            {
              count: batch.length + this.buffer.length,
              error: error as Error,
            },
          );
          this.buffer = [];
          return;
        }
        this.onFatal(error as Error);
        return;
      }
      for (const m of batch) m.ack();
    }
  }

  /** The source message's dead letter: a copy must never be over what the stage stream takes. */
  private fitting(m: JsMsg, items: OutboxItem[]): OutboxItem[] {
    const over = items.find(
      (item) => !item.subject.startsWith("sluice.dlq.") && publishedBytes(item) > this.copyBytesMax,
    );
    if (over === undefined) return items;
    return this.dead(
      m,
      "message_too_large",
      `its copy would be ${publishedBytes(over)} bytes with the router's headers, over the ${this.copyBytesMax} the stage stream takes (streams.messageBytesMax + streams.headerBytesMax): shorten the subject or the message; copy to ${over.subject}`,
    );
  }

  /** A copy the stage stream refused for good: its source becomes a dead letter instead. */
  private refused(
    batch: JsMsg[],
    item: OutboxItem,
    refusal: PublishRefusal,
    error: Error,
  ): OutboxItem | null {
    const seq = Number(item.msgId.split(":")[1]);
    const m = batch.find((b) => b.seq === seq);
    if (m === undefined || item.subject.startsWith("sluice.dlq.")) return null;
    return (
      this.dead(m, refusal as DeadLetterReason, `${item.subject} refused the copy: ${error.message}`)[0] ??
      null
    );
  }

  private dead(m: JsMsg, reason: DeadLetterReason, detail: string): OutboxItem[] {
    this.events.emit("dead_lettered", { stage: "unrouted", reason });
    this.log.debug("unrouted message dead-lettered", { subject: m.subject, reason, detail });
    return [deadLetter(this.source(m), reason, detail)];
  }

  private source(m: JsMsg) {
    return { stream: streamNames.unrouted, seq: m.seq, subject: m.subject, data: m.data, headers: m.headers };
  }

  /** One inbound message → what it becomes: copies or envelopes for partitions, or one dead letter. */
  private route(m: JsMsg): OutboxItem[] {
    const dead = (reason: DeadLetterReason, detail: string): OutboxItem[] => this.dead(m, reason, detail);
    const tokens = m.subject.split(".");
    if (tokens[2] === "channel") return this.channelReport(m, tokens);
    if (tokens[2] === "wms" || tokens[2] === "import") {
      const key = tokens[3];
      const event = tokens[2] === "wms" ? tokens[4] : "import";
      if (key === undefined || event === undefined || tokens.length !== (tokens[2] === "wms" ? 5 : 4)) {
        return dead(
          "bad_subject",
          `${m.subject}: expected sluice.in.wms.<warehouse>.<event> or sluice.in.import.<id>`,
        );
      }
      let id: string;
      try {
        id = decodeToken(key);
      } catch (error) {
        return dead("bad_subject", (error as Error).message);
      }
      const checked = parseId(id, tokens[2] === "wms" ? "warehouse" : "importId", this.limits);
      if (!checked.ok) return dead(checked.reason, checked.detail);
      const decoded = decodePayload(m.data, contentTypeOf(m.headers));
      if (!decoded.ok) return dead(decoded.reason, decoded.detail);
      if (event === "shipped" || event === "rejected") {
        const ref = parseOrderRef(decoded.value, this.limits);
        if (!ref.ok) return dead(ref.reason, ref.detail);
        const target = orderPartition(
          orderKey(ref.value.channel, ref.value.orderId),
          this.config.streams.partitionCount,
        );
        return [this.copy(m, subjects.orderWms(target, id, event), 0)];
      }
      if (event === "received" || event === "counted" || event === "import") {
        const defaults = event === "import" ? {} : { type: event, warehouse: id };
        const items = parseStockItems(decoded.value, this.limits, defaults);
        if (!items.ok) return dead(items.reason, items.detail);
        return this.split(m, items.value, event === "import" ? "import" : "wms");
      }
      return dead("unknown_kind", `WMS events are shipped, rejected, received and counted, not ${event}`);
    }
    const routed = routePublic(m.subject, this.config.streams.partitionCount);
    if (!routed.ok) return dead("bad_subject", routed.detail);
    return [this.copy(m, routedSubject(routed.target), 0)];
  }

  /** A channel's report of what it shows → its share for each ledger partition (msgpack), or a dead letter. */
  private channelReport(m: JsMsg, tokens: string[]): OutboxItem[] {
    const dead = (reason: DeadLetterReason, detail: string): OutboxItem[] => this.dead(m, reason, detail);
    if (tokens.length !== 5 || tokens[4] !== "stock") {
      return dead("bad_subject", `${m.subject}: expected sluice.in.channel.<channel>.stock`);
    }
    let channel: string;
    try {
      channel = decodeToken(tokens[3] as string);
    } catch (error) {
      return dead("bad_subject", (error as Error).message);
    }
    const checked = parseId(channel, "channel", this.limits);
    if (!checked.ok) return dead(checked.reason, checked.detail);
    const decoded = decodePayload(m.data, contentTypeOf(m.headers));
    if (!decoded.ok) return dead(decoded.reason, decoded.detail);
    const snapshot = parseChannelSnapshot(decoded.value, this.limits);
    if (!snapshot.ok) return dead(snapshot.reason, snapshot.detail);
    return this.splitReport(m, channel, snapshot.value);
  }

  /** One share per partition, items in the report's order; a full snapshot's part reaches every partition. */
  private splitReport(m: JsMsg, channel: string, snapshot: ChannelSnapshot): OutboxItem[] {
    const P = this.config.streams.partitionCount;
    const shares = new Map<number, ChannelSnapshot["items"]>();
    if (snapshot.full) for (let p = 0; p < P; p++) shares.set(p, []);
    for (const item of snapshot.items) {
      const p = skuPartition(item.sku, P);
      const share = shares.get(p) ?? [];
      share.push(item);
      shares.set(p, share);
    }
    // A share holds a subset of the report's items in msgpack, never larger than the report's JSON, so it
    // fits what the stage stream takes (checked anyway by `fitting`).
    return [...shares].map(([p, items], i) => ({
      subject: subjects.ledgerReconcile(p, channel),
      msgId: `unrouted:${m.seq}:${i}`,
      headers: [
        ["Content-Type", contentTypes.msgpack],
        [originalSubjectHeader, m.subject],
        [routedIdHeader, routedName(m, i)],
      ],
      data: pack({ ...snapshot, items }),
    }));
  }

  /** The message, untouched, on its partitioned subject, naming where it was published. */
  private copy(m: JsMsg, target: string, index: number): OutboxItem {
    const headers: Array<[string, string]> = [];
    if (m.headers !== undefined) {
      for (const key of m.headers.keys()) {
        // The producer's message id is for SLUICE_UNROUTED; the router's own headers are never taken from it.
        if (strippedHeaders.has(key.toLowerCase())) continue;
        for (const value of m.headers.values(key)) headers.push([key, value]);
      }
    }
    headers.push([originalSubjectHeader, m.subject], [routedIdHeader, routedName(m, index)]);
    return { subject: target, msgId: `unrouted:${m.seq}:${index}`, headers, data: m.data };
  }

  /** Stock items of one message, one msgpack envelope per ledger partition that owns some of them. */
  private split(m: JsMsg, items: StockItem[], source: string): OutboxItem[] {
    // Envelopes bounded in items and bytes, one subject per ledger partition, in the items' order.
    const envelopes = new Envelopes(
      this.config.ledger.itemsPerMessageMax,
      this.config.streams.messageBytesMax,
    );
    for (const item of items) {
      envelopes.add(
        subjects.ledgerItems(skuPartition(item.sku, this.config.streams.partitionCount), source),
        item,
      );
    }
    return envelopes.drain().map((e, i) => ({
      ...e,
      msgId: `unrouted:${m.seq}:${i}`,
      headers: [...e.headers, [originalSubjectHeader, m.subject], [routedIdHeader, routedName(m, i)]],
    }));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const messages = this.messages;
    this.messages = null;
    if (messages !== null) {
      messages.stop();
      await messages.closed().catch(() => undefined);
    }
    if (this.draining !== null) await this.draining;
  }
}
