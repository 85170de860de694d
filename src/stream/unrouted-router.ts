import type { ConsumerMessages, JetStreamClient, JsMsg } from "@nats-io/jetstream";
import type { Config } from "../config/index.ts";
import type { Instrumentation } from "../instrumentation/index.ts";
import type { Logger } from "../log/index.ts";
import type { OutboxItem } from "../store/index.ts";
import { deadLetter } from "./dead-letter.ts";
import type { OutboxPublisher } from "./outbox-publisher.ts";
import { routePublic, streamNames, unroutedConsumerName } from "./subjects.ts";

/** Header naming the public subject a routed message was published to. */
export const originalSubjectHeader = "Sluice-Original-Subject";

/**
 * Inbound messages that no server mapping partitioned land in SLUICE_UNROUTED. This router gives each one
 * its partitioned subject (the same rule as the mapping) or dead-letters it (`bad_subject`), then acks it.
 * With the mapping in place (the embedded server, or docs/operations.md on your own) only malformed
 * subjects come here; without it, every inbound message takes this extra hop and still arrives, in order.
 */
export class UnroutedRouter {
  private buffer: JsMsg[] = [];
  private draining: Promise<void> | null = null;
  private messages: ConsumerMessages | null = null;
  private stopped = false;

  constructor(
    private readonly js: JetStreamClient,
    private readonly publisher: OutboxPublisher,
    private readonly config: Config,
    private readonly events: Instrumentation,
    private readonly log: Logger,
    private readonly onFatal: (error: Error) => void,
  ) {}

  async start(): Promise<void> {
    const consumer = await this.js.consumers.get(streamNames.unrouted, unroutedConsumerName);
    this.messages = await consumer.consume({
      max_messages: this.config.consumer.batchCountMax,
      callback: (m) => {
        if (this.stopped) return;
        this.buffer.push(m);
        if (this.draining === null) this.draining = this.drain().finally(() => (this.draining = null));
      },
    });
  }

  private async drain(): Promise<void> {
    await new Promise((resolve) => setImmediate(resolve));
    while (this.buffer.length > 0) {
      const batch = this.buffer.splice(0, this.config.consumer.batchCountMax);
      const items = batch.map((m) => this.route(m));
      try {
        await this.publisher.publish(items);
      } catch (error) {
        this.onFatal(error as Error);
        return;
      }
      for (const m of batch) m.ack();
    }
  }

  private route(m: JsMsg): OutboxItem {
    const source = {
      stream: streamNames.unrouted,
      seq: m.seq,
      subject: m.subject,
      data: m.data,
      headers: m.headers,
    };
    const routed = routePublic(m.subject, this.config.streams.partitionCount);
    if (!routed.ok) {
      this.events.emit("dead_lettered", { stage: "unrouted", reason: routed.reason });
      this.log.debug("unrouted message dead-lettered", { subject: m.subject, detail: routed.detail });
      return deadLetter(source, "bad_subject", routed.detail);
    }
    const headers: Array<[string, string]> = [];
    if (m.headers !== undefined) {
      for (const key of m.headers.keys()) {
        if (key.toLowerCase() === "nats-msg-id") continue;
        for (const value of m.headers.values(key)) headers.push([key, value]);
      }
    }
    headers.push([originalSubjectHeader, m.subject]);
    return { subject: routed.target, msgId: `unrouted:${m.seq}`, headers, data: m.data };
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
