import type { JetStreamClient, PubAck } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/transport-node";
import type { OutboxItem } from "../store/index.ts";

export type OutboxPublisherLimits = {
  publishAttemptsMax: number;
  publishBackoffMsMax: number;
  publishInFlightMax: number;
  requestTimeoutMs: number;
};

export class OutboxPublishError extends Error {
  override name = "OutboxPublishError";
  readonly retriable = false;
}

/**
 * Publishes committed outbox items with their deterministic Nats-Msg-Id. Items for one subject go in their
 * committed order, each after the previous one's ack: a consumer of a subject never sees a later item
 * before an earlier one, even when a publish fails and is retried. Different subjects go in parallel, up
 * to publishInFlightMax at once. A failed publish is retried with capped exponential backoff; a duplicate
 * ack counts as success (an earlier attempt landed).
 */
export class OutboxPublisher {
  constructor(
    private readonly js: JetStreamClient,
    private readonly limits: OutboxPublisherLimits,
  ) {}

  /** Resolves with the most attempts any item needed; throws OutboxPublishError when attempts run out. */
  async publish(items: readonly OutboxItem[], isStopping: () => boolean = () => false): Promise<number> {
    const bySubject = new Map<string, OutboxItem[]>();
    for (const item of items) {
      const list = bySubject.get(item.subject);
      if (list === undefined) bySubject.set(item.subject, [item]);
      else list.push(item);
    }
    const queues = [...bySubject.values()];
    let attemptsMax = 0;
    let next = 0;
    const worker = async () => {
      while (next < queues.length) {
        const queue = queues[next++] as OutboxItem[];
        for (const item of queue)
          attemptsMax = Math.max(attemptsMax, await this.publishWithRetry(item, isStopping));
      }
    };
    const workers = Math.min(this.limits.publishInFlightMax, queues.length);
    await Promise.all(Array.from({ length: workers }, worker));
    return Math.max(attemptsMax, 1);
  }

  private async publishWithRetry(item: OutboxItem, isStopping: () => boolean): Promise<number> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.publishOne(item);
        return attempt;
      } catch (error) {
        if (attempt >= this.limits.publishAttemptsMax || isStopping()) {
          throw new OutboxPublishError(
            `outbox item ${item.msgId} to ${item.subject} not published after ${attempt} attempts (outbox.publishAttemptsMax); it stays in the outbox and is published at the next start`,
            { cause: error },
          );
        }
        await Bun.sleep(Math.min(this.limits.publishBackoffMsMax, 25 * 2 ** attempt));
      }
    }
  }

  private publishOne(item: OutboxItem): Promise<PubAck> {
    const h = natsHeaders();
    for (const [k, v] of item.headers) h.append(k, v);
    return this.js.publish(item.subject, item.data, {
      msgID: item.msgId,
      headers: h,
      timeout: this.limits.requestTimeoutMs,
    });
  }
}
