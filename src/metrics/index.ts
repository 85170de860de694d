import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { scopes } from "../http/auth.ts";
import type { Instrumentation } from "../instrumentation/index.ts";

// Base units at the edge (_seconds, _messages, _total); histograms, not summaries; label values bounded
// (stage, partition < streams.partitionCount, reason and code from fixed lists): never SKUs or order ids.

const durationBucketsSeconds = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
];
const batchBucketsMessages = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000, 10000];

/** prom-client defaults this edge does not serve, each with why. */
const runtimeMetricsDropped = [
  // Under Bun, v8.getHeapSpaceStatistics walks the whole heap: ~20 ms per scrape with a few hundred
  // thousand live objects, measured here, stalling every partition on the event loop. Heap totals stay.
  "nodejs_heap_space_size_total_bytes",
  "nodejs_heap_space_size_used_bytes",
  "nodejs_heap_space_size_available_bytes",
  // Gauges named like counters: `promtool check metrics` refuses them ("non-counter metrics should not have
  // _total suffix"), and rate() over them would be wrong. The same counts stay, by type, in
  // nodejs_active_handles / _requests / _resources: sum them for the total.
  "nodejs_active_handles_total",
  "nodejs_active_requests_total",
  "nodejs_active_resources_total",
];

/**
 * prom-client's process and runtime metrics (CPU, memory, file descriptors, event-loop lag, GC, heap totals)
 * on `registry`, less `runtimeMetricsDropped`: what remains passes `promtool check metrics`. The sink's
 * registry can use it too.
 */
export function collectRuntimeMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry });
  for (const name of runtimeMetricsDropped) registry.removeSingleMetric(name);
}

export type Metrics = {
  registry: Registry;
  contentType: string;
  /** `sluice_ready{check}`: what /readyz answers, one series per check, read at each scrape. */
  readiness(checks: ReadonlyArray<{ name: string; ok: () => boolean }>): void;
  /**
   * The HTTP port's security (src/http/server.ts counts; it is an edge, as this module is, so it calls
   * these directly rather than through Instrumentation, which is the pipeline's).
   */
  http: HttpMetrics;
};

export type HttpMetrics = {
  /** `sluice_http_requests_refused_total{code, scope}`: a request authorize() refused; `scope` it needed. */
  refused(code: 401 | 403, scope: string): void;
  /**
   * `sluice_http_admin_actions_total{action, token, outcome}`: an operate or admin action that passed
   * authorization and ran (its audit line's `action`, `who` and `outcome`). `token` is the token's name from
   * http.tokens (at most tokensCountMax), or `anonymous` without tokens: bounded, never a secret.
   */
  action(action: string, token: string, outcome: string): void;
};

export function createMetrics(events: Instrumentation, nodeName: string): Metrics {
  const registry = new Registry();
  registry.setDefaultLabels({ node: nodeName });
  collectRuntimeMetrics(registry);

  const applied = new Counter({
    name: "sluice_messages_applied_total",
    help: "Inbound messages applied and committed (dead letters included).",
    labelNames: ["stage", "partition"],
    registers: [registry],
  });
  const skipped = new Counter({
    name: "sluice_messages_skipped_total",
    help: "Deliveries skipped because their sequence was already applied (redeliveries, duplicates).",
    labelNames: ["stage", "partition"],
    registers: [registry],
  });
  const batchSize = new Histogram({
    name: "sluice_batch_size_messages",
    help: "Messages per applied batch (batching by arrival).",
    labelNames: ["stage"],
    buckets: batchBucketsMessages,
    registers: [registry],
  });
  const applySeconds = new Histogram({
    name: "sluice_apply_duration_seconds",
    help: "Synchronous apply time of one batch.",
    labelNames: ["stage"],
    buckets: durationBucketsSeconds,
    registers: [registry],
  });
  const commitSeconds = new Histogram({
    name: "sluice_commit_duration_seconds",
    help: "LMDB commit time of one batch (durable on disk when it ends).",
    labelNames: ["stage"],
    buckets: durationBucketsSeconds,
    registers: [registry],
  });
  const lag = new Gauge({
    name: "sluice_partition_lag_messages",
    help: "Messages of a partition not yet applied (pending at the server plus buffered).",
    labelNames: ["stage", "partition"],
    registers: [registry],
  });
  const inFlight = new Gauge({
    name: "sluice_order_in_flight_lines",
    help: "Reservations an order partition awaits from the ledger; at orders.inFlightLinesMax new orders wait in JetStream.",
    labelNames: ["partition"],
    registers: [registry],
  });
  const deadLetters = new Counter({
    name: "sluice_dead_letters_total",
    help: "Inputs sent to sluice.dlq.<reason>.",
    labelNames: ["stage", "reason"],
    registers: [registry],
  });
  const publishBlocked = new Counter({
    name: "sluice_publish_blocked_total",
    help: "Times publishes to a target started waiting for room in a full stream (back-pressure, nothing dropped).",
    labelNames: ["target"],
    registers: [registry],
  });
  const publishesWaiting = new Gauge({
    name: "sluice_publishes_waiting",
    help: "Publishes waiting for room in a full stream now, per target.",
    labelNames: ["target"],
    registers: [registry],
  });
  const purged = new Counter({
    name: "sluice_stream_purged_messages_total",
    help: "Applied or routed messages removed by Sluice's retention (streams.appliedHistoryMs).",
    labelNames: ["stream"],
    registers: [registry],
  });
  const gaps = new Counter({
    name: "sluice_stream_gaps_total",
    help: "Partitions that found their last applied message removed by something other than Sluice.",
    labelNames: ["stage"],
    registers: [registry],
  });
  events.on("publish_blocked", (e) => {
    if (e.delta === 1) publishBlocked.inc({ target: e.target });
    publishesWaiting.inc({ target: e.target }, e.delta);
  });
  events.on("stream_purged", (e) => purged.inc({ stream: e.stream }, e.count));
  events.on("stream_gap", (e) => gaps.inc({ stage: e.stage }));
  const paused = new Gauge({
    name: "sluice_partitions_paused",
    help: "Partitions waiting for room on the data disk (a commit found none); their input waits in JetStream.",
    labelNames: ["stage"],
    registers: [registry],
  });
  const pauses = new Counter({
    name: "sluice_partition_pauses_total",
    help: "Times a partition paused because a commit found no room on the data disk.",
    labelNames: ["stage"],
    registers: [registry],
  });
  events.on("partition_paused", (e) => {
    paused.inc({ stage: e.stage }, e.delta);
    if (e.delta === 1) pauses.inc({ stage: e.stage });
  });
  // Cluster mode: a partition that leaves this node takes its per-partition gauges with it (below). Left
  // behind, its last lag or outbox depth would stay on this node next to the new owner's live one, and alerts
  // would read a partition no longer run here as stalled. A sample already on its way when the partition left
  // (a lag poll awaiting the server, a host still stopping) is dropped: `away` holds "<stage>/<partition>" until
  // it is taken again.
  const away = new Set<string>();
  const owned = new Gauge({
    name: "sluice_cluster_partitions_owned",
    help: "Cluster mode: partitions this node runs (it holds their leases).",
    labelNames: ["stage"],
    registers: [registry],
  });
  const moves = new Counter({
    name: "sluice_cluster_partition_moves_total",
    help: "Cluster mode: partitions taken (by how: kept, restored, fresh), lost (lease ran out) or handed off here.",
    labelNames: ["stage", "event"],
    registers: [registry],
  });
  const snapshots = new Counter({
    name: "sluice_cluster_snapshot_bytes_total",
    help: "Cluster mode: bytes of partition snapshots written to the Object Store.",
    labelNames: ["stage"],
    registers: [registry],
  });
  const snapshotLast = new Gauge({
    name: "sluice_cluster_snapshot_last_timestamp_seconds",
    help: "Cluster mode: when this node last wrote the partition's snapshot (until its first one, when it took the partition), Unix time.",
    labelNames: ["stage", "partition"],
    registers: [registry],
  });
  // Its age (time() − value) is what a takeover would replay; the clock is read here, at the edge, as the
  // event arrives: milliseconds after the write, against alerts in minutes.
  events.on("snapshot_written", (e) => {
    snapshots.inc({ stage: e.stage }, e.bytes);
    snapshotLast.set({ stage: e.stage, partition: String(e.partition) }, Date.now() / 1000);
  });
  events.on("partition_taken", (e) => {
    away.delete(`${e.stage}/${e.partition}`);
    owned.inc({ stage: e.stage });
    moves.inc({ stage: e.stage, event: `taken_${e.how}` });
    snapshotLast.set({ stage: e.stage, partition: String(e.partition) }, Date.now() / 1000);
  });
  const refused = new Counter({
    name: "sluice_commands_refused_total",
    help: "Valid commands refused by the ledger (for example insufficient_available: no oversell).",
    labelNames: ["stage", "code"],
    registers: [registry],
  });
  const published = new Counter({
    name: "sluice_outbox_published_total",
    help: "Outbox items published to JetStream.",
    labelNames: ["stage"],
    registers: [registry],
  });
  const publishSeconds = new Histogram({
    name: "sluice_outbox_publish_duration_seconds",
    help: "Time to publish one batch's outbox and get every JetStream ack.",
    labelNames: ["stage"],
    buckets: durationBucketsSeconds,
    registers: [registry],
  });
  const resets = new Counter({
    name: "sluice_consumer_resets_total",
    help: "Partition consumers (re)created from the store's last applied sequence, by cause.",
    labelNames: ["stage", "cause"],
    registers: [registry],
  });

  const reserved = new Counter({
    name: "sluice_reservations_total",
    help: "Order lines reserved at a warehouse by the ledger.",
    registers: [registry],
  });
  const orderOutcomes = new Counter({
    name: "sluice_order_outcomes_total",
    help: "Order-stage outcomes: orders/created, cancelled/<cause>, backordered|rejected/<why>, rerouted/<cause>, returned/<disposition> (units), shipped/units, sla/<action>, retention/<compacted|tombstone_removed|pending_cancel_expired>.",
    labelNames: ["outcome", "label"],
    registers: [registry],
  });
  const timersPending = new Gauge({
    name: "sluice_sla_timers_pending",
    help: "SLA deadlines and at-risk marks waiting in an order partition.",
    labelNames: ["partition"],
    registers: [registry],
  });
  const timersFired = new Counter({
    name: "sluice_sla_timers_fired_total",
    help: "SLA deadlines handled.",
    registers: [registry],
  });
  const outboxDepth = new Gauge({
    name: "sluice_outbox_depth_items",
    help: "Outbox items committed and not yet confirmed published, per partition.",
    labelNames: ["stage", "partition"],
    registers: [registry],
  });
  const decisions = new Counter({
    name: "sluice_routing_decisions_total",
    help: "Lines routed, by the warehouse chosen (none: no warehouse had stock by routing's view).",
    labelNames: ["warehouse"],
    registers: [registry],
  });
  const splits = new Counter({
    name: "sluice_routing_splits_total",
    help: "Orders routed to more than one warehouse, by the number of shipments.",
    labelNames: ["shipments"],
    registers: [registry],
  });
  const filtered = new Counter({
    name: "sluice_routing_filtered_total",
    help: "Warehouses a filter removed from a line's candidates, by reason.",
    labelNames: ["reason"],
    registers: [registry],
  });
  const rulesRevision = new Gauge({
    name: "sluice_rules_revision",
    help: "KV revision of the rule set in force (0: the network file, the bucket had none valid).",
    registers: [registry],
  });
  const rulesRefused = new Counter({
    name: "sluice_rules_refused_total",
    help: "Rule sets refused as invalid (by a command, or found in the bucket); the previous stays in force.",
    registers: [registry],
  });
  const stockLatency = new Histogram({
    name: "sluice_stock_delta_latency_seconds",
    help: "From an input's acceptance (its stream time) to the channel's ATS change committed for publishing.",
    labelNames: ["channel"],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const stockItems = new Counter({
    name: "sluice_stock_deltas_published_total",
    help: "ATS values sent to channels (items of sluice.out.stock.<channel>).",
    labelNames: ["channel"],
    registers: [registry],
  });
  const stockRequests = new Counter({
    name: "sluice_stock_requests_total",
    help: "Messages (requests, within the channel's rate budget) on sluice.out.stock.<channel>.",
    labelNames: ["channel"],
    registers: [registry],
  });
  const stockCoalesced = new Counter({
    name: "sluice_stock_deltas_coalesced_total",
    help: "ATS values replaced by a newer one before they were sent (the saving coalescing makes).",
    labelNames: ["channel"],
    registers: [registry],
  });
  const stockThrottled = new Counter({
    name: "sluice_stock_throttled_seconds_total",
    help: "Time due ATS values waited for the channel's rate budget, summed over ledger partitions.",
    labelNames: ["channel"],
    registers: [registry],
  });
  const stockRefused = new Counter({
    name: "sluice_stock_refused_full_total",
    help: "ATS values not queued because sync.pendingCountMax pairs were waiting (sent at the SKU's next change or a resync).",
    labelNames: ["channel"],
    registers: [registry],
  });
  const stockResyncs = new Counter({
    name: "sluice_stock_resyncs_total",
    help: "Channel resyncs finished, per ledger partition (a rule change or a resync command starts one).",
    labelNames: ["channel"],
    registers: [registry],
  });
  const erpBatches = new Counter({
    name: "sluice_erp_batches_total",
    help: "ERP batches committed for sluice.out.erp, by stage.",
    labelNames: ["stage"],
    registers: [registry],
  });
  const erpBatchItems = new Histogram({
    name: "sluice_erp_batch_items",
    help: "Movements and documents per ERP batch.",
    labelNames: ["stage"],
    buckets: [1, 10, 50, 100, 500, 1000, 5000],
    registers: [registry],
  });
  events.on("stock_delta", (e) => stockLatency.observe({ channel: e.channel }, e.latencySeconds));
  events.on("stock_counted", (e) => {
    stockItems.inc({ channel: e.channel }, e.items);
    stockRequests.inc({ channel: e.channel }, e.requests);
    if (e.coalesced > 0) stockCoalesced.inc({ channel: e.channel }, e.coalesced);
    if (e.throttledSeconds > 0) stockThrottled.inc({ channel: e.channel }, e.throttledSeconds);
    if (e.refusedFull > 0) stockRefused.inc({ channel: e.channel }, e.refusedFull);
  });
  events.on("stock_resynced", (e) => stockResyncs.inc({ channel: e.channel }));
  // Warehouse capacity (docs/capacity.md): warehouse labels are bounded by the rule set, as routing's are.
  const capacityClaims = new Counter({
    name: "sluice_capacity_claims_total",
    help: "Claims of warehouse capacity from the shared pool (KV SLUICE_CAPACITY) by ledger partitions, by outcome: granted, full (the day's capacityPerDay is all claimed), reconciled (start-up check), failed (KV unreachable; tried again later).",
    labelNames: ["warehouse", "outcome"],
    registers: [registry],
  });
  const capacityClaimedUnits = new Counter({
    name: "sluice_capacity_claimed_units_total",
    help: "Units of warehouse capacity ledger partitions took into their held capacity (new chunks and units adopted back after a crash).",
    labelNames: ["warehouse"],
    registers: [registry],
  });
  const capacityShort = new Counter({
    name: "sluice_capacity_short_lines_total",
    help: "Lines a ledger partition turned away from a warehouse for want of held capacity (they took their next candidate or were refused capacity_full); pool_full=false: the day's pool still had room (docs/capacity.md).",
    labelNames: ["warehouse", "pool_full"],
    registers: [registry],
  });
  events.on("capacity_claimed", (e) => {
    capacityClaims.inc({ warehouse: e.warehouse, outcome: e.outcome });
    if (e.units > 0) capacityClaimedUnits.inc({ warehouse: e.warehouse }, e.units);
  });
  events.on("capacity_short", (e) =>
    capacityShort.inc({ warehouse: e.warehouse, pool_full: String(e.poolFull) }, e.lines),
  );
  // Reconciliation (docs/sync-and-erp.md): label `channel` is a synced channel of the rule set (bounded).
  const channelReported = new Counter({
    name: "sluice_channel_reported_total",
    help: "SKUs a channel reported showing (reconciliation reports, each part's share once).",
    labelNames: ["channel"],
    registers: [registry],
  });
  const channelDrift = new Counter({
    name: "sluice_channel_drift_total",
    help: "SKUs a channel reported with another quantity than Sluice last offered it (reconciliation).",
    labelNames: ["channel"],
    registers: [registry],
  });
  const channelHealed = new Counter({
    name: "sluice_channel_healed_total",
    help: "Drifted SKUs whose current ATS was offered to the channel again (sent within its rate budget).",
    labelNames: ["channel"],
    registers: [registry],
  });
  const channelReconcileDeferred = new Counter({
    name: "sluice_channel_reconcile_deferred_total",
    help: "Drifted SKUs not offered again because sync.pendingCountMax values were waiting (the next report finds them).",
    labelNames: ["channel"],
    registers: [registry],
  });
  const channelReconcileParts = new Counter({
    name: "sluice_channel_reconcile_parts_total",
    help: "Shares of channel report parts a ledger partition handled: applied, or duplicate (heard before, nothing changed).",
    labelNames: ["channel", "outcome"],
    registers: [registry],
  });
  events.on("channel_reconciled", (e) => {
    channelReconcileParts.inc({ channel: e.channel, outcome: e.duplicate ? "duplicate" : "applied" });
    if (e.duplicate) return;
    channelReported.inc({ channel: e.channel }, e.reported);
    channelDrift.inc({ channel: e.channel }, e.drifted);
    channelHealed.inc({ channel: e.channel }, e.healed);
    channelReconcileDeferred.inc({ channel: e.channel }, e.deferred);
  });
  events.on("erp_batch", (e) => {
    erpBatches.inc({ stage: e.stage });
    erpBatchItems.observe({ stage: e.stage }, e.movements + e.documents);
  });
  events.on("rules_applied", (e) => rulesRevision.set(e.revision));
  events.on("rules_refused", () => rulesRefused.inc());
  events.on("line_reserved", () => reserved.inc());
  const waitingLines = new Gauge({
    name: "sluice_backorder_waiting_lines",
    help: "Backordered lines waiting for stock in a ledger partition's waiting lists (filled when stock arrives).",
    labelNames: ["partition"],
    registers: [registry],
  });
  const backorderFilled = new Counter({
    name: "sluice_backorder_filled_total",
    help: "Waiting backordered lines filled when stock arrived.",
    registers: [registry],
  });
  const backorderWait = new Histogram({
    name: "sluice_backorder_wait_seconds",
    help: "How long a filled backordered line waited for stock (stream time).",
    buckets: [1, 60, 600, 3600, 6 * 3600, 86_400, 3 * 86_400, 7 * 86_400, 30 * 86_400],
    registers: [registry],
  });
  const backorderNotWaiting = new Counter({
    name: "sluice_backorder_not_waiting_total",
    help: "Lines backordered without waiting because their SKU's waiting list was full (ledger.waitingLinesPerSkuMax).",
    registers: [registry],
  });
  events.on("waiting_lines", (e) => {
    if (away.has(`ledger/${e.partition}`)) return;
    waitingLines.set({ partition: String(e.partition) }, e.count);
  });
  events.on("backorder_filled", (e) => {
    backorderFilled.inc();
    backorderWait.observe(e.waitedMs / 1000);
  });
  events.on("backorder_not_waiting", (e) => backorderNotWaiting.inc(e.count));
  events.on("order_counted", (e) => {
    if (e.name === "routed") decisions.inc({ warehouse: e.label }, e.count);
    else if (e.name === "split") splits.inc({ shipments: e.label }, e.count);
    else if (e.name === "filtered") filtered.inc({ reason: e.label }, e.count);
    else orderOutcomes.inc({ outcome: e.name, label: e.label }, e.count);
  });
  events.on("timers_fired", (e) => timersFired.inc(e.count));
  // Per partition, so that a partition moving between nodes takes its series along (below): labels are the
  // rule set's channel ids ("*" for channels it does not list) and warehouse ids, or "none".
  const atRisk = new Gauge({
    name: "sluice_orders_at_risk",
    help: "Open orders past their at-risk point (ship-by less the channel's slaAtRiskMs), per order partition, rule-set channel and warehouse of their open lines (none: not at a warehouse yet); an order at two warehouses counts under each.",
    labelNames: ["partition", "channel", "warehouse"],
    registers: [registry],
  });
  /** The series each order partition has set: a new count replaces them all. */
  const atRiskSeries = new Map<number, Array<{ channel: string; warehouse: string }>>();
  const dropAtRisk = (partition: number) => {
    for (const s of atRiskSeries.get(partition) ?? []) atRisk.remove({ partition: String(partition), ...s });
    atRiskSeries.delete(partition);
  };
  events.on("orders_at_risk", (e) => {
    if (away.has(`order/${e.partition}`)) return;
    dropAtRisk(e.partition);
    const partition = String(e.partition);
    for (const c of e.counts) atRisk.set({ partition, channel: c.channel, warehouse: c.warehouse }, c.count);
    atRiskSeries.set(
      e.partition,
      e.counts.map((c) => ({ channel: c.channel, warehouse: c.warehouse })),
    );
  });
  const mapUsed = new Gauge({
    name: "sluice_store_map_used_bytes",
    help: "LMDB map in use by a partition (pages in use × page size; the high-water mark, LMDB never shrinks).",
    labelNames: ["stage", "partition"],
    registers: [registry],
  });
  const mapSize = new Gauge({
    name: "sluice_store_map_size_bytes",
    help: "A partition's LMDB map size (store.mapBytesMax): a commit past it fails with MDB_MAP_FULL.",
    labelNames: ["stage", "partition"],
    registers: [registry],
  });
  const diskFree = new Gauge({
    name: "sluice_data_disk_free_bytes",
    help: "Bytes free to Sluice on the data directory's file system.",
    registers: [registry],
  });
  const diskSize = new Gauge({
    name: "sluice_data_disk_size_bytes",
    help: "Size of the data directory's file system.",
    registers: [registry],
  });
  const timerOverdue = new Gauge({
    name: "sluice_sla_timer_overdue_seconds",
    help: "How far the clock is past an order partition's earliest SLA deadline not fired yet (0: none due).",
    labelNames: ["partition"],
    registers: [registry],
  });
  events.on("store_sampled", (e) => {
    if (away.has(`${e.stage}/${e.partition}`)) return;
    const labels = { stage: e.stage, partition: String(e.partition) };
    outboxDepth.set(labels, e.outboxItems);
    mapUsed.set(labels, e.mapUsedBytes);
    mapSize.set(labels, e.mapBytesMax);
    if (e.diskFreeBytes !== undefined) diskFree.set(e.diskFreeBytes);
    if (e.diskSizeBytes !== undefined) diskSize.set(e.diskSizeBytes);
    if (e.stage === "order") {
      timersPending.set({ partition: String(e.partition) }, e.timers);
      timerOverdue.set({ partition: String(e.partition) }, e.timerOverdueMs / 1000);
    }
  });

  events.on("batch_committed", (e) => {
    const partition = String(e.partition);
    applied.inc({ stage: e.stage, partition }, e.applied);
    if (e.skipped > 0) skipped.inc({ stage: e.stage, partition }, e.skipped);
    batchSize.observe({ stage: e.stage }, e.applied + e.skipped);
    applySeconds.observe({ stage: e.stage }, e.applySeconds);
    commitSeconds.observe({ stage: e.stage }, e.commitSeconds);
    if (away.has(`${e.stage}/${e.partition}`)) return;
    lag.set({ stage: e.stage, partition }, e.lag);
    if (e.stage === "order") inFlight.set({ partition }, e.inFlight);
  });
  events.on("lag_observed", (e) => {
    if (away.has(`${e.stage}/${e.partition}`)) return;
    lag.set({ stage: e.stage, partition: String(e.partition) }, e.lag);
  });
  events.on("dead_lettered", (e) => deadLetters.inc({ stage: e.stage, reason: e.reason }));
  events.on("command_refused", (e) => refused.inc({ stage: e.stage, code: e.code }));
  const repeated = new Counter({
    name: "sluice_stock_commands_repeated_total",
    help: "Stock commands whose commandId was applied (or refused) before: ignored, by that first outcome.",
    labelNames: ["outcome"],
    registers: [registry],
  });
  events.on("stock_command_repeated", (e) => repeated.inc({ outcome: e.outcome }));
  events.on("outbox_published", (e) => {
    published.inc({ stage: e.stage }, e.count);
    publishSeconds.observe({ stage: e.stage }, e.seconds);
  });
  events.on("consumer_reset", (e) => resets.inc({ stage: e.stage, cause: e.cause }));

  // The partition left this node: its per-partition gauges go with it (`away`, above); counters stay.
  for (const event of ["partition_lost", "partition_handed_off"] as const) {
    events.on(event, (e) => {
      owned.dec({ stage: e.stage });
      moves.inc({ stage: e.stage, event: event.slice("partition_".length) });
      away.add(`${e.stage}/${e.partition}`);
      const partition = String(e.partition);
      lag.remove({ stage: e.stage, partition });
      mapUsed.remove({ stage: e.stage, partition });
      mapSize.remove({ stage: e.stage, partition });
      outboxDepth.remove({ stage: e.stage, partition });
      snapshotLast.remove({ stage: e.stage, partition });
      if (e.stage === "ledger") waitingLines.remove({ partition });
      if (e.stage === "order") {
        inFlight.remove({ partition });
        timersPending.remove({ partition });
        timerOverdue.remove({ partition });
        dropAtRisk(e.partition);
      }
    });
  }

  const readiness: Metrics["readiness"] = (checks) => {
    registry.removeSingleMetric("sluice_ready");
    new Gauge({
      name: "sluice_ready",
      help: "What /readyz answers, per check (1 passing, 0 failing): nats_connected, consumers_running, lmdb_open.",
      labelNames: ["check"],
      registers: [registry],
      // Read at each scrape: the checks are cheap reads of state the process keeps.
      collect() {
        for (const c of checks) this.set({ check: c.name }, c.ok() ? 1 : 0);
      },
    });
  };

  return { registry, contentType: registry.contentType, readiness, http: httpMetrics(registry) };
}

function httpMetrics(registry: Registry): HttpMetrics {
  const refused = new Counter({
    name: "sluice_http_requests_refused_total",
    help: "HTTP requests refused by authentication (401: no or unknown token) or authorization (403: scope too low), by the scope the endpoint needs.",
    labelNames: ["code", "scope"],
    registers: [registry],
  });
  // Every refusal that can happen starts at 0, so increase() over a window counts the first one too (a
  // counter series born at its first increase has no earlier sample). 5 series: 401 at each scope, 403 at
  // operate and admin (every token covers read, so a read is never 403).
  for (const scope of scopes) {
    refused.inc({ code: "401", scope }, 0);
    if (scope !== "read") refused.inc({ code: "403", scope }, 0);
  }
  const actions = new Counter({
    name: "sluice_http_admin_actions_total",
    help: "Operate and admin actions that passed authorization and ran (the audit log's admin action lines), by the token's name and the outcome.",
    labelNames: ["action", "token", "outcome"],
    registers: [registry],
  });
  return {
    refused: (code, scope) => refused.inc({ code: String(code), scope }),
    action: (action, token, outcome) => actions.inc({ action, token, outcome }),
  };
}
