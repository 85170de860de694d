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
 * Publishes committed outbox items with their deterministic Nats-Msg-Id. Publishes are pipelined (up to
 * publishInFlightMax awaiting acks), never one round trip each. Items that fail are retried with capped
 * exponential backoff; a JetStream duplicate ack counts as success, since the earlier publish landed.
 */
export class OutboxPublisher {
  constructor(
    private readonly js: JetStreamClient,
    private readonly limits: OutboxPublisherLimits,
  ) {}

  /** Resolves with the number of attempts used; throws OutboxPublishError when attempts run out. */
  async publish(items: readonly OutboxItem[], isStopping: () => boolean = () => false): Promise<number> {
    let pending = items;
    for (let attempt = 1; ; attempt++) {
      // On a failure, everything from the first failed item on is published again, in order: items after
      // it that did land are de-duplicated by their message id, and no consumer sees a later one first.
      let firstFailed = -1;
      let lastError: unknown = null;
      for (let i = 0; i < pending.length && firstFailed < 0; i += this.limits.publishInFlightMax) {
        const chunk = pending.slice(i, i + this.limits.publishInFlightMax);
        const results = await Promise.allSettled(chunk.map((item) => this.publishOne(item)));
        const j = results.findIndex((r) => r.status === "rejected");
        if (j >= 0) {
          firstFailed = i + j;
          lastError = (results[j] as PromiseRejectedResult).reason;
        }
      }
      if (firstFailed < 0) return attempt;
      const failed = pending.slice(firstFailed);
      if (attempt >= this.limits.publishAttemptsMax || isStopping()) {
        throw new OutboxPublishError(
          `${failed.length} outbox item(s) not published after ${attempt} attempts (outbox.publishAttemptsMax); they stay in the outbox and are published at the next start`,
          { cause: lastError },
        );
      }
      pending = failed;
      await Bun.sleep(Math.min(this.limits.publishBackoffMsMax, 25 * 2 ** attempt));
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
