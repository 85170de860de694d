import type { JetStreamClient, PubAck } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/transport-node";
import type { OutboxItem } from "../store/index.ts";
import { FencedError } from "./fenced.ts";

export type OutboxPublisherLimits = {
  publishAttemptsMax: number;
  publishBackoffMsMax: number;
  /** outbox.fullRetryMsMax: the longest pause between tries to publish into a full stream. */
  fullRetryMsMax: number;
  publishInFlightMax: number;
  requestTimeoutMs: number;
};

export class OutboxPublishError extends Error {
  override name = "OutboxPublishError";
  readonly retriable = false;
}

/**
 * What a refused publish means, decoded once from the server's answer (nats-server 2.9 codes):
 * - `stream_full`: the target stream is at a limit and refuses new messages (discard new). Back-pressure, not
 *   a fault: it clears once the stream's readers catch up and Sluice purges what they applied.
 * - `message_too_large`: the message exceeds the stream's max_msg_size; it never fits.
 * - `refused`: any other answer of the stream's own (a 4xx API error); publishing it again changes nothing.
 * - null: no answer or a transient one (timeout, no responders, connection lost): worth retrying.
 */
export type PublishRefusal = "stream_full" | "message_too_large" | "refused";

/** JetStream API error codes (nats-server's errors.json). */
const apiCodes = { streamStoreFailed: 10077, messageTooLarge: 10054 } as const;

export function publishRefusal(error: unknown): PublishRefusal | null {
  const e = error as { name?: unknown; code?: unknown; status?: unknown; message?: unknown };
  if (e?.name !== "JetStreamApiError") return null;
  const message = typeof e.message === "string" ? e.message : "";
  // 10077 carries the store's reason; only the limits mean "full" (an I/O failure there is transient).
  if (
    e.code === apiCodes.streamStoreFailed &&
    /maximum (bytes|messages)( per subject)? exceeded/.test(message)
  ) {
    return "stream_full";
  }
  if (e.code === apiCodes.messageTooLarge) return "message_too_large";
  return typeof e.status === "number" && e.status >= 400 && e.status < 500 ? "refused" : null;
}

/** A publish that waits for room in a full stream: one episode per (subject's) item, from refusal to success. */
export type BlockedEpisode = { subject: string; detail: string; waitedMs?: number };

export type OutboxPublisherHooks = {
  /** A publish found its stream full (called once per episode) … */
  blocked?: (episode: BlockedEpisode) => void;
  /** … and landed after waiting `waitedMs`. */
  unblocked?: (episode: BlockedEpisode) => void;
};

/**
 * Replaces an item the stream refused for good (`message_too_large`, `refused`): what to publish instead
 * (the router's dead letter), or null to fail as before.
 */
/**
 * Cluster mode: the partition's fencing. `fenced` is its lease, checked before each attempt; `chain` its
 * changelog's last sequence this owner wrote (null: no changelog), checked by JetStream on each log part.
 */
export type PublishFence = { fenced: () => boolean; chain: { lastSeq: number } | null };

function isWrongLastSequence(error: unknown): boolean {
  return /wrong last sequence/i.test(String((error as Error)?.message ?? ""));
}

/** The changelog's subjects (src/cluster/changelog.ts logSubject). */
const logSubjectPrefix = "sluice.log.";

export type OnRefused = (item: OutboxItem, refusal: PublishRefusal, error: Error) => OutboxItem | null;

/**
 * Publishes committed outbox items with their deterministic Nats-Msg-Id. Items for one subject go in their
 * committed order, each after the previous one's ack: a consumer of a subject never sees a later item
 * before an earlier one, even when a publish fails and is retried. Different subjects go in parallel, up
 * to publishInFlightMax at once. A failed publish is retried with capped exponential backoff; a duplicate
 * ack counts as success (an earlier attempt landed). A full target stream is waited for without a limit on
 * attempts (back-pressure: the process must not exit for it), until `isStopping`.
 */
export class OutboxPublisher {
  constructor(
    private readonly js: JetStreamClient,
    private readonly limits: OutboxPublisherLimits,
    private readonly hooks: OutboxPublisherHooks = {},
  ) {}

  /** Resolves with the most attempts any item needed; throws OutboxPublishError when attempts run out. */
  async publish(
    items: readonly OutboxItem[],
    isStopping: () => boolean = () => false,
    onRefused: OnRefused | null = null,
    fence: PublishFence | null = null,
  ): Promise<number> {
    // A commit's changelog record (cluster mode) lands before any of its outputs: a new owner that finds an
    // output of the commit in a stream finds the commit in the log (src/cluster/changelog.ts).
    let attemptsLog = 0;
    let rest: readonly OutboxItem[] = items;
    if (items.length > 0 && (items[0] as OutboxItem).subject.startsWith(logSubjectPrefix)) {
      const outputs: OutboxItem[] = [];
      rest = outputs;
      for (const item of items) {
        if (item.subject.startsWith(logSubjectPrefix))
          attemptsLog = Math.max(attemptsLog, await this.publishWithRetry(item, isStopping, false, fence));
        else outputs.push(item);
      }
    }
    const bySubject = new Map<string, OutboxItem[]>();
    for (const item of rest) {
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
        for (const item of queue) {
          attemptsMax = Math.max(attemptsMax, await this.publishItem(item, isStopping, onRefused, fence));
        }
      }
    };
    const workers = Math.min(this.limits.publishInFlightMax, queues.length);
    await Promise.all(Array.from({ length: workers }, worker));
    return Math.max(attemptsMax, attemptsLog, 1);
  }

  private async publishItem(
    item: OutboxItem,
    isStopping: () => boolean,
    onRefused: OnRefused | null,
    fence: PublishFence | null,
  ): Promise<number> {
    try {
      return await this.publishWithRetry(item, isStopping, onRefused !== null, fence);
    } catch (error) {
      const cause = (error as Error).cause;
      const refusal = publishRefusal(cause);
      if (onRefused === null || refusal === null || refusal === "stream_full") throw error;
      const instead = onRefused(item, refusal, cause as Error);
      if (instead === null) throw error;
      return await this.publishWithRetry(instead, isStopping, false, fence);
    }
  }

  private async publishWithRetry(
    item: OutboxItem,
    isStopping: () => boolean,
    refusalIsFinal: boolean,
    fence: PublishFence | null = null,
  ): Promise<number> {
    let episode: (BlockedEpisode & { sinceMs: number }) | null = null;
    let attemptsFailed = 0;
    for (let attempt = 1; ; attempt++) {
      // Checked before every attempt: a publish retried through a NATS outage must not land after the
      // partition's lease ran out.
      if (fence?.fenced() === true)
        throw new FencedError(`outbox item ${item.msgId} not published: the partition was fenced off`);
      try {
        await this.publishOne(item, fence);
        if (episode !== null) this.hooks.unblocked?.({ ...episode, waitedMs: Date.now() - episode.sinceMs });
        return attempt;
      } catch (error) {
        if (isWrongLastSequence(error) && item.subject.startsWith(logSubjectPrefix)) {
          throw new FencedError(
            `changelog ${item.subject} has another writer (a takeover marker after this owner's last record): this node no longer runs the partition`,
            { cause: error },
          );
        }
        const refusal = publishRefusal(error);
        const full = refusal === "stream_full";
        if (full && episode === null) {
          episode = { subject: item.subject, detail: (error as Error).message, sinceMs: Date.now() };
          this.hooks.blocked?.(episode);
        }
        // A full stream is not a failed attempt: it is waited for however long it takes.
        if (!full) attemptsFailed++;
        const final = refusalIsFinal && refusal !== null && !full;
        if (final || attemptsFailed >= this.limits.publishAttemptsMax || isStopping()) {
          if (episode !== null)
            this.hooks.unblocked?.({ ...episode, waitedMs: Date.now() - episode.sinceMs });
          throw new OutboxPublishError(
            full
              ? `outbox item ${item.msgId} to ${item.subject} waits for room (${(error as Error).message}) and Sluice is stopping; it stays in the outbox and is published at the next start`
              : `outbox item ${item.msgId} to ${item.subject} not published after ${attempt} attempts (outbox.publishAttemptsMax); it stays in the outbox and is published at the next start`,
            { cause: error },
          );
        }
        // Waiting for room: retried at a short cap so freed space goes to Sluice's hops, not only to producers.
        const capMs = full
          ? Math.min(this.limits.publishBackoffMsMax, this.limits.fullRetryMsMax)
          : this.limits.publishBackoffMsMax;
        await Bun.sleep(Math.min(capMs, 25 * 2 ** Math.min(attempt, 16)));
      }
    }
  }

  /**
   * A changelog part carries the subject's expected last sequence (this owner's previous record, or its
   * takeover marker): once another node has appended a marker, JetStream refuses it, and nothing of the
   * commit (published after its record) leaves. A copy of a part that already landed is a duplicate by
   * message id, acked with its first sequence.
   */
  private async publishOne(item: OutboxItem, fence: PublishFence | null): Promise<PubAck> {
    const h = natsHeaders();
    for (const [k, v] of item.headers) h.append(k, v);
    const chain = item.subject.startsWith(logSubjectPrefix) ? (fence?.chain ?? null) : null;
    const ack = await this.js.publish(item.subject, item.data, {
      msgID: item.msgId,
      headers: h,
      timeout: this.limits.requestTimeoutMs,
      ...(chain === null ? {} : { expect: { lastSubjectSequence: chain.lastSeq } }),
    });
    if (chain !== null && !ack.duplicate) chain.lastSeq = ack.seq;
    return ack;
  }
}

/** The bytes a stream counts against max_msg_size for an item: payload plus encoded headers (Nats-Msg-Id too). */
export function publishedBytes(item: OutboxItem): number {
  const encoder = new TextEncoder();
  // NATS/1.0\r\n, then `Key: value\r\n` per header, then \r\n.
  let bytes = "NATS/1.0\r\n".length + 2;
  const line = (k: string, v: string) => encoder.encode(k).length + 2 + encoder.encode(v).length + 2;
  for (const [k, v] of item.headers) bytes += line(k, v);
  if (item.msgId !== "") bytes += line("Nats-Msg-Id", item.msgId);
  return item.data.length + bytes;
}
