import type { OrderCount } from "../domain/orders/index.ts";

// Named events with payloads. The pipeline emits them; the metrics exporter (src/metrics) and tests subscribe.
// The loop never imports a metrics library (KafkaJS's instrumentation pattern).

export type Events = {
  /** A batch was applied and committed. Durations in seconds; `lag` is messages still pending after it. */
  batch_committed: {
    stage: string;
    partition: number;
    applied: number;
    skipped: number;
    applySeconds: number;
    commitSeconds: number;
    lag: number;
    /** Reservations the partition awaits from the ledger after the batch (order stage; 0 for the ledger). */
    inFlight: number;
  };
  /** Outbox items reached JetStream. */
  outbox_published: { stage: string; partition: number; count: number; seconds: number; attempts: number };
  /** An input went to the dead-letter stream. */
  dead_lettered: { stage: string; reason: string };
  /** A ledger command was refused (valid input, not enough stock or similar). */
  command_refused: { stage: string; code: string };
  /** A stock command whose commandId the partition had applied or refused before: nothing changed. */
  stock_command_repeated: { partition: number; outcome: "applied" | "refused" };
  /** A line's stock was reserved at a warehouse. */
  line_reserved: { partition: number };
  /** Backordered lines waiting for stock in a ledger partition, after a batch that changed it (and at start). */
  waiting_lines: { partition: number; count: number };
  /** A waiting line was filled when stock arrived, after waiting `waitedMs` (stream time). */
  backorder_filled: { partition: number; waitedMs: number };
  /** Lines backordered without waiting: their SKU's waiting list was full (ledger.waitingLinesPerSkuMax). */
  backorder_not_waiting: { partition: number; count: number };
  /** An order-stage outcome, by a bounded name and label: cancelled/customer, backordered, returned/damaged… */
  order_counted: OrderCount;
  /** Outbox items not yet published and SLA timers pending, sampled every consumer.lagPollMs. */
  store_sampled: {
    stage: string;
    partition: number;
    outboxItems: number;
    timers: number;
    /** LMDB map pages in use × page size, against the map's size (store.mapBytesMax). */
    mapUsedBytes: number;
    mapBytesMax: number;
    /** The data directory's file system: bytes free to this process, and its size (absent: not readable). */
    diskFreeBytes?: number;
    diskSizeBytes?: number;
    /** Order partitions: how far (ms) the process clock is past the earliest SLA deadline not fired; 0 if none. */
    timerOverdueMs: number;
  };
  /**
   * Orders at risk of missing their ship-by in an order partition, per rule-set channel and warehouse ("none":
   * no line at a warehouse yet): the whole count of the partition, at start and after each commit that
   * changed it. An order with lines at two warehouses counts under each.
   */
  orders_at_risk: {
    partition: number;
    counts: Array<{ channel: string; warehouse: string; count: number }>;
  };
  /** SLA deadlines handled in a timer batch. */
  timers_fired: { partition: number; count: number };
  /** The partition's consumer was created, or reset to the store's last applied sequence (start-up, delivery gap, reconnect). */
  consumer_reset: { stage: string; partition: number; cause: string; streamSeqStart: number };
  /** A stock value left for a channel: `latencySeconds` from the input's acceptance to the outbox. */
  stock_delta: { channel: string; latencySeconds: number };
  /** Per channel since the last report: requests and items sent, offers coalesced, time throttled. */
  stock_counted: {
    channel: string;
    requests: number;
    items: number;
    coalesced: number;
    throttledSeconds: number;
    /** New values refused because sync.pendingCountMax pairs were waiting (offered again at the next change). */
    refusedFull: number;
  };
  /**
   * A ledger partition applied its share of one part of a channel's stock report (reconciliation), or ignored
   * one it had applied before (`duplicate`, all counts 0). drifted = healed + deferred.
   */
  channel_reconciled: {
    partition: number;
    channel: string;
    reported: number;
    matched: number;
    inFlight: number;
    drifted: number;
    healed: number;
    deferred: number;
    duplicate: boolean;
  };
  /**
   * A ledger partition's claim of warehouse capacity from the pool (docs/capacity.md). `units`: granted now
   * (a new chunk plus units adopted back after a crash). failed: KV unreachable, tried again later.
   */
  capacity_claimed: {
    partition: number;
    warehouse: string;
    outcome: "granted" | "full" | "reconciled" | "failed";
    units: number;
  };
  /**
   * Lines a ledger partition turned away from a warehouse for want of held capacity in one batch; `poolFull`:
   * after the day's pool was found full (else transient: the pool still had room).
   */
  capacity_short: { partition: number; warehouse: string; poolFull: boolean; lines: number };
  /** A channel's full resync finished in a ledger partition. */
  stock_resynced: { partition: number; channel: string };
  /** An ERP batch was committed to the outbox. */
  erp_batch: { stage: string; movements: number; documents: number };
  /** A rule-set revision was taken into force. */
  rules_applied: { revision: number };
  /** A rule set was refused (invalid): by a command (revision 0) or from the bucket (its revision). */
  rules_refused: { revision: number };
  /** Publishes to a full stream started (+1) or stopped (−1) waiting for room: back-pressure, per target. */
  publish_blocked: { target: string; delta: 1 | -1 };
  /** Applied (or routed) messages that retention purged from a stream. */
  stream_purged: { stream: string; count: number };
  /** A partition found its last applied message removed by something other than Sluice (inputs may be lost). */
  stream_gap: { stage: string; partition: number };
  /** A partition paused (+1) because a commit found no room on the data disk, or resumed (−1). */
  partition_paused: { stage: string; partition: number; delta: 1 | -1 };
  /** Lag of an idle partition (messages the consumer has not delivered yet). */
  lag_observed: { stage: string; partition: number; lag: number };
  /** Cluster mode: this node took a partition (`how`: kept its copy, restored a snapshot, or replayed the log). */
  partition_taken: { stage: string; partition: number; how: string };
  /** Cluster mode: this node lost a partition's lease (renewal refused or too late, or a commit fenced). */
  partition_lost: { stage: string; partition: number };
  /** Cluster mode: this node handed a partition off (rebalance or stop). */
  partition_handed_off: { stage: string; partition: number };
  /** Cluster mode: a partition's snapshot was written to the Object Store. */
  snapshot_written: { stage: string; partition: number; bytes: number };
};

export type EventName = keyof Events;

/** A typed event emitter: the pipeline's (Events) and the sink's (src/sink/events.ts) share it. */
export class Emitter<E extends Record<string, unknown>> {
  private readonly listeners: { [K in keyof E]?: Array<(payload: E[K]) => void> } = {};
  /** Listeners to every event (a worker forwards its events to the main thread's metrics). */
  private readonly taps: Array<(name: keyof E, payload: E[keyof E]) => void> = [];

  tap(listener: (name: keyof E, payload: E[keyof E]) => void): void {
    this.taps.push(listener);
  }

  on<K extends keyof E>(name: K, listener: (payload: E[K]) => void): () => void {
    const list = this.listeners[name] ?? [];
    this.listeners[name] = list;
    list.push(listener);
    return () => {
      const i = list.indexOf(listener);
      if (i >= 0) list.splice(i, 1);
    };
  }

  emit<K extends keyof E>(name: K, payload: E[K]): void {
    for (const tap of this.taps) tap(name, payload);
    const list = this.listeners[name];
    if (list === undefined) return;
    for (const listener of list) listener(payload);
  }
}

export class Instrumentation extends Emitter<Events> {}
