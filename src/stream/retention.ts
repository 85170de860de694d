import type { JetStreamManager } from "@nats-io/jetstream";
import { logStreamName } from "../cluster/changelog.ts";
import type { Config } from "../config/index.ts";
import type { Logger } from "../log/index.ts";
import { isNotFound } from "./provision.ts";
import { type Input, inputConsumerName, inputs, streamNames, unroutedConsumerName } from "./subjects.ts";

/** One partition's input stream as retention sees it: the partition's committed last applied sequence of it. */
export type AppliedPartition = { input: Input; index: number; streamSeqLastApplied: () => number };

/**
 * Cluster mode (src/cluster/member.ts): what may go is what every partition's latest snapshot covers, whichever
 * node runs it. A new owner restores the snapshot, applies the changelog after it, and executes again the
 * inputs its copy has not applied: those must still be in the streams.
 */
export type ClusterRetention = {
  /** Reads every partition's latest snapshot position (Object Store metadata) before a pass. */
  refresh(): Promise<void>;
  /** SLUICE_LOG may go below this (every partition's snapshot reads its log from there on); ≤ 1: nothing. */
  logFloor(): number;
};

/**
 * Above this share of max_bytes, a stage stream keeps no applied history: history must never be what makes a
 * stream refuse producers or Sluice's own hops. (Half: the other half stays for unapplied input.)
 */
const historyFillShareMax = 0.5;

/**
 * Sluice's own retention. Stage streams and SLUICE_UNROUTED refuse publishes when full and never expire
 * messages (provision.ts), so nothing unapplied is deleted by a limit; this removes what was applied instead:
 * - each stage stream below the first message a partition has not applied (`purgeStage`: one unfiltered
 *   purge). `streams.appliedHistoryMs` of applied history is kept for what-if (src/rules/recent-orders.ts reads
 *   the order stream) and audits, unless the stream is over half full;
 * - SLUICE_UNROUTED below its single consumer's ack floor (what the router routed and acked).
 * One pass every `streams.retentionIntervalMs`; a purge is sent only when its point moved. A failed pass is
 * logged and tried again at the next interval: nothing is lost meanwhile, the streams only fill.
 */
export class Retention {
  private timer: ReturnType<typeof setInterval> | null = null;
  private pass: Promise<void> | null = null;
  /** Per stage (and "unrouted"): `[atMs, purge point]` samples, oldest first (for the history window). */
  private readonly samples = new Map<string, Array<[number, number]>>();
  /** Per stage (and "unrouted"): the purge point last sent. */
  private readonly purgedBelow = new Map<string, number>();
  /** Messages purged since start, per stream (what was applied or routed). */
  readonly purgedCount = new Map<string, number>();
  private failing = false;

  constructor(
    private readonly jsm: JetStreamManager,
    private readonly config: Config,
    private readonly partitions: () => readonly AppliedPartition[],
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
    private readonly onPurged: (stream: string, count: number) => void = () => undefined,
    private readonly cluster: ClusterRetention | null = null,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      if (this.pass === null) this.pass = this.runOnce().finally(() => (this.pass = null));
    }, this.config.streams.retentionIntervalMs);
  }

  async stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    if (this.pass !== null) await this.pass;
  }

  /** One pass over every stream; never throws (logs once per failing episode). */
  async runOnce(): Promise<void> {
    try {
      await this.cluster?.refresh();
      for (const input of inputs) await this.purgeStage(input);
      await this.purgeUnrouted();
      if (this.cluster !== null) await this.purgeLog(this.cluster.logFloor());
      if (this.failing) this.log.info("retention purges work again");
      this.failing = false;
    } catch (error) {
      if (!this.failing) {
        this.log.warn("retention purge failed; retried every streams.retentionIntervalMs", {
          error: error as Error,
        });
      }
      this.failing = true;
    }
  }

  /**
   * One unfiltered purge per stage stream, below the first message some partition has not applied. A purge
   * with a subject filter would be simpler, but nats-server 2.9 does not give its bytes back to the account's
   * storage use: the server would end up refusing every publish ("insufficient resources") with the streams
   * nearly empty (seen on 2.9.10; test/integration/backpressure.test.ts checks the use stays bounded).
   * A partition bounds the purge at its last applied sequence + 1, unless its consumer has nothing pending
   * nor unacked: then every message of it up to the stream's last sequence (read first) is applied.
   */
  private async purgeStage(stage: Input): Promise<void> {
    const stream = streamNames[stage];
    const info = await this.jsm.streams.info(stream);
    let below = info.state.last_seq + 1;
    for (const p of this.partitions()) {
      if (p.input !== stage) continue;
      const applied = p.streamSeqLastApplied();
      if (applied + 1 >= below) continue;
      // In cluster mode the floor is a snapshot's, not what the consumer has delivered: no shortcut, and no
      // consumer info to ask for.
      const consumer =
        this.cluster !== null
          ? null
          : await this.jsm.consumers
              .info(stream, inputConsumerName(stage, p.index))
              .catch((error: unknown) => (isNotFound(error) ? null : Promise.reject(error)));
      const idle = consumer !== null && consumer.num_pending === 0 && consumer.num_ack_pending === 0;
      if (!idle) below = Math.min(below, applied + 1);
    }
    const bytesMax = info.config.max_bytes;
    const pressed = bytesMax > 0 && info.state.bytes > bytesMax * historyFillShareMax;
    const keep = pressed ? below : Math.min(below, this.historyPoint(stage, this.now(), below));
    if (keep <= (this.purgedBelow.get(stage) ?? 1)) return;
    const r = await this.jsm.streams.purge(stream, { seq: keep });
    this.purgedBelow.set(stage, keep);
    this.count(stream, r.purged);
  }

  /**
   * The applied sequence at least `appliedHistoryMs` old: what may go while keeping the window. Samples are
   * taken each pass; right after a start nothing is old enough, so history is kept (a restart purges nothing
   * for one window unless the stream is pressed).
   */
  private historyPoint(key: string, nowMs: number, applied: number): number {
    const windowMs = this.config.streams.appliedHistoryMs;
    if (windowMs === 0) return applied;
    const list = this.samples.get(key) ?? [];
    this.samples.set(key, list);
    const last = list[list.length - 1];
    if (last === undefined || last[1] !== applied) list.push([nowMs, applied]);
    const cutoffMs = nowMs - windowMs;
    // Drop samples older than the newest one past the cutoff: it alone decides.
    while (list.length > 1 && (list[1] as [number, number])[0] <= cutoffMs) list.shift();
    const oldest = list[0] as [number, number];
    return oldest[0] <= cutoffMs ? oldest[1] : 0;
  }

  private async purgeUnrouted(): Promise<void> {
    let ackFloor: number;
    try {
      const info = await this.jsm.consumers.info(streamNames.unrouted, unroutedConsumerName);
      ackFloor = info.ack_floor.stream_seq;
    } catch (error) {
      if (isNotFound(error)) return;
      throw error;
    }
    const below = ackFloor + 1;
    if (below <= (this.purgedBelow.get("unrouted") ?? 1)) return;
    const r = await this.jsm.streams.purge(streamNames.unrouted, { seq: below });
    this.purgedBelow.set("unrouted", below);
    this.count(streamNames.unrouted, r.purged);
  }

  /** The changelogs below what every partition's snapshot covers: one unfiltered purge (see purgeStage). */
  private async purgeLog(below: number): Promise<void> {
    if (below <= (this.purgedBelow.get(logStreamName) ?? 1)) return;
    const r = await this.jsm.streams.purge(logStreamName, { seq: below });
    this.purgedBelow.set(logStreamName, below);
    this.count(logStreamName, r.purged);
  }

  private count(stream: string, purged: number): void {
    this.purgedCount.set(stream, (this.purgedCount.get(stream) ?? 0) + purged);
    if (purged > 0) this.onPurged(stream, purged);
  }
}
