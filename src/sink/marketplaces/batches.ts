import type { JsMsg } from "@nats-io/jetstream";
import type { SinkInstrumentation } from "../events.ts";
import type { FailureKind, HttpReply } from "../post.ts";
import { type Carried, coalesce, type Delivered, readEnvelope } from "./coalesce.ts";
import { type DeliverIo, deliverAll, type Outcome } from "./deliver.ts";
import type { Marketplace } from "./index.ts";
import { maskSecrets } from "./secrets.ts";
import type { Call, ItemFailureCode, Target } from "./types.ts";

// One batch of `sluice.out.stock.<channel>` messages through a marketplace profile: coalesce to the newest
// value per SKU, map, deliver, then settle each message. A message is acked once each of its items is
// delivered, superseded, unchanged, stale or dead-lettered alone (sluice.dlq.sink_failed, its code in headers);
// one that cannot be settled (a dead letter not published, the sink stopping) goes back to the server.

/** What the sink (src/sink/sink.ts) lends a batch: its HTTP door, pauses, dead letters and acks. */
export interface BatchHost {
  readonly stopping: boolean;
  send(call: Call<unknown>, batch: JsMsg[]): Promise<HttpReply>;
  pause(ms: number, batch: JsMsg[]): Promise<void>;
  attemptFailed(
    m: JsMsg,
    e: { failure: FailureKind; status: number | null; attempt: number; willRetry: boolean; detail: string },
  ): void;
  /** The whole message (not an envelope), as the generic sink dead-letters what is not JSON. */
  deadLetterMessage(m: JsMsg, detail: string): Promise<void>;
  /** One item alone; false when it could not be published. */
  deadLetterItem(
    m: JsMsg,
    index: number,
    item: unknown,
    code: ItemFailureCode,
    detail: string,
  ): Promise<boolean>;
  ack(m: JsMsg, requests: number): Promise<void>;
  /** Back to the server for a later delivery (nak). */
  leave(m: JsMsg, delayMs?: number): void;
}

type ItemDeadLetter = { index: number; item: unknown; code: ItemFailureCode; detail: string };

export class MarketplaceBatches {
  /**
   * The last value delivered per SKU, with its stream sequence (bounded by the mapping table: only mapped SKUs
   * are delivered). It drops an older value the server hands over late, and one already delivered. A restart
   * forgets it (docs/sync-and-erp.md, "What is not covered").
   */
  private readonly delivered = new Map<string, Delivered>();

  constructor(
    private readonly market: Marketplace,
    private readonly host: BatchHost,
    private readonly events: SinkInstrumentation,
    private readonly retryDelayMs: number,
  ) {}

  async handle(batch: JsMsg[]): Promise<{ itemsDelivered: number; itemsDeadLettered: number }> {
    const envelopes = batch.map((m) => readEnvelope(m.data));
    const c = coalesce(
      envelopes.map((e, i) => ({ seq: (batch[i] as JsMsg).seq, items: e.ok ? e.items : null })),
      this.delivered,
    );
    const deadLetters = new Map<number, ItemDeadLetter[]>();
    const addDeadLetter = (message: number, d: ItemDeadLetter) =>
      deadLetters.set(message, [...(deadLetters.get(message) ?? []), d]);
    for (const bad of c.invalid) addDeadLetter(bad.message, { ...bad, item: bad.raw, code: "item_invalid" });
    const targets: Array<Target<unknown>> = [];
    const carriedBy = new Map<Target<unknown>, Carried>();
    for (const n of c.newest) {
      const ref = this.market.mapping.get(n.item.sku);
      if (ref === undefined) {
        const detail = `SKU ${n.item.sku} has no row in the mapping table: add it, restart the sink, replay this`;
        addDeadLetter(n.message, { index: n.index, item: n.item, code: "sku_unmapped", detail });
        continue;
      }
      const target = { sku: n.item.sku, ats: n.item.ats, version: n.item.version, ref };
      targets.push(target);
      carriedBy.set(target, n);
    }
    const counter = { requests: 0 };
    const outcomes = await deliverAll(
      this.market.profile,
      targets,
      this.market.limits,
      this.io(batch, counter),
    );
    if (outcomes === null) {
      for (const m of batch) this.host.leave(m);
      return { itemsDelivered: 0, itemsDeadLettered: 0 };
    }
    const delivered = this.record(outcomes, carriedBy, addDeadLetter);
    let deadLettered = 0;
    for (const [i, m] of batch.entries()) {
      const e = envelopes[i];
      if (e !== undefined && !e.ok) {
        await this.host.deadLetterMessage(m, e.detail);
        continue;
      }
      const mine = deadLetters.get(i) ?? [];
      if (await this.settle(m, mine, counter.requests)) deadLettered += mine.length;
    }
    const { superseded, stale, unchanged } = c;
    this.events.emit("items", { delivered, superseded, stale, unchanged, deadLettered });
    return { itemsDelivered: delivered, itemsDeadLettered: deadLettered };
  }

  /** Notes what was delivered; failures become their message's item dead letters. */
  private record(
    outcomes: Map<Target<unknown>, Outcome>,
    carriedBy: Map<Target<unknown>, Carried>,
    addDeadLetter: (message: number, d: ItemDeadLetter) => void,
  ): number {
    let delivered = 0;
    for (const [t, outcome] of outcomes) {
      const carried = carriedBy.get(t) as Carried;
      if (outcome.ok) {
        this.delivered.set(t.sku, { version: t.version, ats: t.ats, seq: carried.seq });
        delivered++;
      } else {
        const { code, detail } = outcome;
        addDeadLetter(carried.message, { index: carried.index, item: carried.item, code, detail });
      }
    }
    return delivered;
  }

  /** Dead letters first, then the ack; a dead letter not published sends the message back. */
  private async settle(m: JsMsg, deadLetters: ItemDeadLetter[], requests: number): Promise<boolean> {
    for (const d of deadLetters) {
      if (!(await this.host.deadLetterItem(m, d.index, d.item, d.code, d.detail))) {
        this.host.leave(m, this.retryDelayMs);
        return false;
      }
      this.events.emit("item_dead_lettered", {
        streamSeq: m.seq,
        index: d.index,
        code: d.code,
        detail: d.detail,
      });
    }
    await this.host.ack(m, requests);
    return true;
  }

  private io(batch: JsMsg[], counter: { requests: number }): DeliverIo<unknown> {
    const last = batch[batch.length - 1] as JsMsg;
    return {
      send: (call) => {
        counter.requests++;
        return this.host.send(call, batch);
      },
      pause: (ms) => this.host.pause(ms, batch),
      stopping: () => this.host.stopping,
      nowMs: () => Date.now(),
      attemptFailed: (e) => this.host.attemptFailed(last, e),
      throttleWaited: (ms) => this.events.emit("throttle_wait", { ms }),
      conflicted: (items) => this.events.emit("conflict", { items }),
      mask: (text) => maskSecrets(text, this.market.secrets),
    };
  }
}
