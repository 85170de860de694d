// Every setting and every limit of Sluice lives here, once, with its unit in its name and a line saying
// why it has the value it has. `assertRelations` (load.ts) checks how the limits relate at start-up.

export type FieldSpec =
  | { kind: "int"; default: number; min: number; max: number; why: string; secret?: false }
  | { kind: "string"; default: string; why: string; secret?: boolean; pattern?: RegExp; hint?: string }
  | { kind: "bool"; default: boolean; why: string; secret?: false }
  | { kind: "enum"; default: string; values: readonly string[]; why: string; secret?: false };

type IntSpec = Extract<FieldSpec, { kind: "int" }>;
type StringSpec = Extract<FieldSpec, { kind: "string" }>;
type EnumSpec = Extract<FieldSpec, { kind: "enum" }>;

const int = (def: number, min: number, max: number, why: string): IntSpec => ({
  kind: "int",
  default: def,
  min,
  max,
  why,
});
const str = (
  def: string,
  why: string,
  extra: { secret?: boolean; pattern?: RegExp; hint?: string } = {},
): StringSpec => ({
  kind: "string",
  default: def,
  why,
  ...extra,
});
const oneOf = (def: string, values: readonly string[], why: string): EnumSpec => ({
  kind: "enum",
  default: def,
  values,
  why,
});

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const secondMs = 1000;
const minuteMs = 60 * secondMs;
const hourMs = 60 * minuteMs;
const dayMs = 24 * 60 * minuteMs;

export const schema = {
  node: {
    name: str("sluice", "Names this process in logs, the NATS connection name and metrics.", {
      pattern: /^[A-Za-z0-9_-]{1,64}$/,
      hint: "use letters, digits, '_' or '-' (at most 64)",
    }),
    workerCount: int(
      -1,
      -1,
      256,
      "Worker threads hosting the partitions: -1 auto (cores − 1 from 4 cores, else none), 0 none (main thread).",
    ),
    workerStateReportMs: int(
      250,
      10,
      10 * secondMs,
      "How often a worker sends its partitions' running state (readiness lags by at most this).",
    ),
  },
  cluster: {
    enabled: {
      kind: "bool",
      default: false,
      why: "Share the partitions with other Sluice processes on the same NATS system (leases, snapshots, failover); off: this process owns every partition.",
    },
    partitions: str(
      "",
      "Pins this node to these partitions only, e.g. `ledger:0-3,order:0-3` (empty: take a fair share of all); `sluice start --partitions` sets it.",
      {
        pattern: /^$|^(ledger|order):(\*|\d+(-\d+)?)(,(ledger|order):(\*|\d+(-\d+)?))*$/,
        hint: "a comma-separated list of stage:index, stage:first-last or stage:*",
      },
    ),
    leaseMs: int(
      6 * secondMs,
      1000,
      5 * minuteMs,
      "How long a partition lease lives without renewal (the KV bucket's age limit): a dead node's partitions move after at most this.",
    ),
    leaseRenewMs: int(
      1500,
      100,
      minuteMs,
      "How often an owner renews its leases (compare-and-set on the entry's revision); ≤ leaseMs / 3 so a renewal or two may fail.",
    ),
    rebalanceMs: int(
      2 * secondMs,
      100,
      minuteMs,
      "How often a node compares what it owns with its fair share and takes or hands off partitions.",
    ),
    snapshotMs: int(
      30 * secondMs,
      1000,
      hourMs,
      "How often an owner writes each partition's snapshot to the Object Store: a new owner replays at most this much of the stream.",
    ),
    logBytesMax: int(
      4 * GiB,
      16 * MiB,
      1024 * GiB,
      "Cap of SLUICE_LOG, the partitions' changelogs (each commit's write); each owner purges its partitions' logs up to their latest snapshot, so it holds about one snapshot period of commits. Full is back-pressure.",
    ),
    snapshotBytesMax: int(
      8 * GiB,
      16 * MiB,
      1024 * GiB,
      "Cap of the SLUICE_SNAPSHOTS Object Store: every partition's latest snapshot, plus the largest once more for a put in flight.",
    ),
    // A handoff finds the periodic snapshot of the same partition in flight at most once per snapshotMs; one
    // snapshot is a local body write (~1 s per few hundred MiB) and its upload: 30 s covers a few GiB.
    handoffSnapshotWaitMsMax: int(
      30 * secondMs,
      100,
      10 * minuteMs,
      "Longest a handoff (or any snapshot) waits for a snapshot of the same partition already being written: it joins that one when it covers the partition's last commit, else writes its own after it; past this the handoff goes on without one and the next owner replays the log.",
    ),
    // 1,000 records per fetch ≈ a few MiB of typical commits (a few hundred bytes to a few KiB each): a
    // takeover reads one snapshot period of log in a few round trips.
    takeoverLogFetchCountMax: int(
      1000,
      1,
      100_000,
      "Changelog records one fetch of a takeover reads (each fetch waits at most nats.requestTimeoutMs).",
    ),
    // 60 s = 10 × the default leaseMs: a takeover that cannot restore and read its log in it is released and
    // retried by a later round (a stuck one must not hold the lease forever).
    takeoverLogReadMsMax: int(
      minuteMs,
      secondMs,
      hourMs,
      "Longest a takeover may take to restore the latest snapshot and read the changelog after it, counted from its start; past it the lease is released and a later round tries again.",
    ),
    takeoverMarkerAttemptsMax: int(
      5,
      1,
      1000,
      "Takeover markers refused in a row (another node's record landed after the last one read) before a takeover gives up this round: another node still writes the log.",
    ),
    // 16 metadata requests at once: 2 × 256 partitions are read in 32 round trips, never 512 at once.
    snapshotInfoReadsInFlightMax: int(
      16,
      1,
      512,
      "Snapshot metadata reads in flight at once when the cluster's retention node reads every partition's latest snapshot position (once per streams.retentionIntervalMs, on one node only).",
    ),
  },
  log: {
    level: oneOf("info", ["debug", "info", "warn", "error"], "Lowest level written to stdout as JSON."),
  },
  data: {
    dir: str("./data", "Where LMDB partitions (and the embedded nats-server's store) live."),
  },
  nats: {
    url: str(
      "",
      "Empty: start and supervise an embedded nats-server. Otherwise the servers, comma-separated.",
      {
        secret: true,
      },
    ),
    token: str("", "Auth token for the given servers (kept out of logs and `config print`).", {
      secret: true,
    }),
    user: str("", "User for the given servers."),
    password: str("", "Password for the given servers.", { secret: true }),
    // TLS and the other ways to authenticate (docs/security.md). Paths, not secrets: the files are read at
    // every (re)connect, so a rotated certificate, seed or creds file is used from the next reconnect.
    tlsCaFile: str(
      "",
      "PEM file of the CA that signed the servers' certificates; any TLS key set makes Sluice insist on TLS (empty: the system's trust store).",
    ),
    tlsCertFile: str(
      "",
      "PEM client certificate for servers with `tls { verify: true }`; needs nats.tlsKeyFile.",
    ),
    tlsKeyFile: str("", "PEM private key of nats.tlsCertFile (keep it mode 0600)."),
    nkeySeedFile: str(
      "",
      "File holding an NKey user seed (`SU…`): the server lists the user's public key (`authorization { users: [{ nkey: U… }] }`).",
    ),
    credsFile: str(
      "",
      "A .creds file (user JWT and its NKey seed, from `nsc generate creds`) for servers in operator mode.",
    ),
    connectTimeoutMs: int(5 * secondMs, 100, 5 * minuteMs, "How long one connection attempt may take."),
    requestTimeoutMs: int(5 * secondMs, 100, 5 * minuteMs, "JetStream API and publish-ack wait."),
    reconnectWaitMs: int(250, 10, 30 * secondMs, "Pause between reconnect attempts after an outage."),
    reconnectAttemptsMax: int(-1, -1, 1_000_000, "-1 retries forever: an outage must not end the process."),
    embeddedHost: str("127.0.0.1", "The embedded server listens on loopback only.", {
      pattern: /^(127\.\d+\.\d+\.\d+|localhost|::1)$/,
      hint: "use a loopback address such as 127.0.0.1 (the embedded server is never exposed)",
    }),
    embeddedPort: int(4222, 0, 65535, "Client port of the embedded server; 0 picks a free one."),
    embeddedBin: str("nats-server", "The nats-server binary (PATH is searched, then /usr/sbin)."),
    embeddedStoreBytesMax: int(8 * GiB, 16 * MiB, 1024 * GiB, "Cap on the embedded JetStream file store."),
    embeddedMemoryBytesMax: int(256 * MiB, 1 * MiB, 64 * GiB, "Cap on the embedded JetStream memory store."),
    embeddedStartTimeoutMs: int(15 * secondMs, 500, 5 * minuteMs, "Wait for the embedded server to accept."),
    embeddedRestartsMax: int(10, 0, 1000, "Restarts of a crashed embedded server before Sluice gives up."),
    embeddedStopTimeoutMs: int(10 * secondMs, 100, 5 * minuteMs, "SIGTERM grace before SIGKILL on exit."),
  },
  streams: {
    partitionCount: int(4, 1, 256, "Partitions per stage; fixed when the streams are first created."),
    replicas: int(
      1,
      1,
      5,
      "JetStream replicas of every Sluice stream and bucket (streams, rules, leases, snapshots, changelog): 1 on a single server, 3 on a cluster (survives losing one server).",
    ),
    duplicateWindowMs: int(2 * minuteMs, secondMs, dayMs, "How long JetStream remembers a Nats-Msg-Id."),
    inboundAgeMsMax: int(
      7 * dayMs,
      minuteMs,
      365 * dayMs,
      "SLUICE_OUT keeps outputs this long; stage streams never expire what is not applied.",
    ),
    inboundBytesMax: int(
      2 * GiB,
      1 * MiB,
      1024 * GiB,
      "Stage stream size cap; when full, publishes are refused (back-pressure), nothing is dropped.",
    ),
    appliedHistoryMs: int(
      hourMs,
      0,
      30 * dayMs,
      "Applied stage messages kept this long for what-if and audits, while the stream is under half full.",
    ),
    retentionIntervalMs: int(
      secondMs,
      100,
      minuteMs,
      "How often Sluice purges applied stage messages and routed unrouted ones.",
    ),
    headerBytesMax: int(
      4 * KiB,
      1 * KiB,
      32 * KiB,
      "Room for Sluice's headers on a forwarded message: stage streams take messageBytesMax + this.",
    ),
    unroutedBytesMax: int(
      256 * MiB,
      1 * MiB,
      1024 * GiB,
      "Cap on inbound waiting to be routed (no server mapping); when full, publishes are refused.",
    ),
    outBytesMax: int(
      1 * GiB,
      1 * MiB,
      1024 * GiB,
      "Cap on the outputs stream (statuses, fulfilment, channel stock, ERP batches).",
    ),
    stockViewBytesMax: int(
      256 * MiB,
      1 * MiB,
      1024 * GiB,
      "Cap on the current-stock view (one message per channel × SKU; ~150 B each).",
    ),
    answerBytesMax: int(
      512 * MiB,
      1 * MiB,
      1024 * GiB,
      "Cap on SLUICE_ANSWER (ledger answers, cancels, WMS events, clocks); when full, publishes wait.",
    ),
    dlqAgeMsMax: int(30 * dayMs, minuteMs, 365 * dayMs, "Dead letters are kept this long for operators."),
    dlqBytesMax: int(512 * MiB, 1 * MiB, 1024 * GiB, "Dead-letter stream size cap."),
    messageBytesMax: int(
      1 * MiB - 64 * KiB,
      1 * KiB,
      64 * MiB,
      "Largest inbound message and output payload; 64 KiB under max_payload leaves room for dead-letter headers.",
    ),
  },
  consumer: {
    batchCountMax: int(2000, 1, 100_000, "Messages applied in one LMDB transaction (batch by arrival)."),
    pendingMessagesMax: int(8000, 2, 1_000_000, "max_ack_pending: messages out and unacked per partition."),
    intakePendingMessagesMax: int(
      4000,
      2,
      1_000_000,
      "max_ack_pending of an order partition's intake (new orders): what waits in memory while it is gated.",
    ),
    ackWaitMs: int(30 * secondMs, 500, 10 * minuteMs, "Redelivery after this long without an ack."),
    resetAttemptsMax: int(120, 1, 100_000, "Tries to recreate a partition's consumer during an outage."),
    lagPollMs: int(5 * secondMs, 100, 10 * minuteMs, "How often idle partitions refresh their lag gauge."),
  },
  outbox: {
    publishAttemptsMax: int(
      60,
      1,
      100_000,
      "Publish attempts of one outbox batch before the process exits (a full stream is waited for).",
    ),
    publishBackoffMsMax: int(
      2 * secondMs,
      10,
      5 * minuteMs,
      "Longest pause between outbox publish attempts.",
    ),
    itemsPerMessageMax: int(
      500,
      1,
      100_000,
      "Items batched in one output message (keeps it under max_payload).",
    ),
    batchesInFlightMax: int(
      4,
      1,
      64,
      "Committed batches per partition whose outbox is still publishing before the next batch waits.",
    ),
    fullRetryMsMax: int(
      250,
      10,
      10 * secondMs,
      "Longest pause between tries to publish into a full stream: short, so room a purge frees goes to Sluice's own hops, not only to producers.",
    ),
    publishInFlightMax: int(
      1024,
      1,
      100_000,
      "Publishes awaiting their JetStream ack at once per partition.",
    ),
  },
  ledger: {
    quantityMax: int(1_000_000_000, 1, Number.MAX_SAFE_INTEGER, "Largest quantity one command may move."),
    // ATS sums a SKU's positions over at most 256 warehouses (networkLimits.warehousesMax): 256 × 10^12 ≈
    // 2.6 × 10^14, 35× under 2^53 ≈ 9.0 × 10^15, so every sum is an exact integer; the largest value,
    // 10^13, still leaves 256 × 10^13 ≈ 2.6 × 10^15 under it.
    positionUnitsMax: int(
      1_000_000_000_000,
      1,
      10_000_000_000_000,
      "Units one field of one position (SKU at a warehouse) may hold; a change past it is refused (position_units_over_limit), so sums over warehouses stay exact (≤ 256 × this < 2^53).",
    ),
    // 256: the longest LMDB key, [sku, orderKey (two encoded ids), lineId], stays under LMDB's 1,978 bytes.
    idBytesMax: int(
      256,
      8,
      256,
      "Longest SKU, channel, order, line, warehouse or reference id in UTF-8 bytes.",
    ),
    itemsPerMessageMax: int(10_000, 1, 1_000_000, "SKUs in one bulk import or WMS stock message."),
    cacheCountMax: int(100_000, 0, 10_000_000, "SKU states kept decoded in memory per ledger partition."),
    cacheBytesMax: int(
      8 * MiB,
      0,
      64 * GiB,
      "Estimated bytes of SKU states kept decoded in memory per ledger partition (more costs GC, not reads).",
    ),
    entriesPageCountMax: int(500, 1, 100_000, "Largest page of ledger entries the HTTP API returns."),
    // A fill reads the SKU's whole waiting list once per command that raised its available: 1,000 lines of
    // ~250 B (a few candidates) ≈ 250 KB decoded, ~0.3 ms, only on SKUs that have backorders waiting.
    waitingLinesPerSkuMax: int(
      1000,
      0,
      100_000,
      "Backordered lines one SKU's waiting list holds (filled when stock arrives); a line past it is backordered without waiting (waiting_list_full). 0: no line waits.",
    ),
    waitingPageCountMax: int(500, 1, 100_000, "Largest page of waiting lines the HTTP API returns."),
    // Retention of history (docs/operations.md, "Retention of history"): without it a ledger partition's
    // entries and allocations grow with every order forever. ~150 B per entry and ~200 B per allocation.
    entriesRetentionMs: int(
      90 * dayMs,
      secondMs,
      3650 * dayMs,
      "How long a ledger entry stays readable (GET /v1/stock/<sku>/entries); older ones are folded into their SKU's snapshot and removed.",
    ),
    allocationsRetentionMs: int(
      30 * dayMs,
      secondMs,
      3650 * dayMs,
      "How long a finished line's allocation is kept after its last change: within it, a late copy of a request about the line (an old attempt, a shipment or return id) is recognised and changes nothing; ≥ streams.duplicateWindowMs.",
    ),
    returnWindowMs: int(
      90 * dayMs,
      secondMs,
      3650 * dayMs,
      "How long after its last change a shipped line may still be returned: its allocation is kept at least this long; a return after it was removed is dead-lettered (line_history_compacted).",
    ),
    compactionIntervalMs: int(
      1000,
      10,
      hourMs,
      "Shortest time between two retention passes of a ledger partition (each runs in a batch's or a tick's transaction).",
    ),
    // 1,000 reads + up to 1,000 deletes ≈ 1–3 ms per pass: never a long pause; at one pass a second a
    // partition sweeps ~500 SKUs' entries and ~1,000 allocations a second (10^6 allocations ≈ 17 min).
    compactionRecordsMax: int(
      1000,
      1,
      1_000_000,
      "Records one retention pass reads in each of a ledger partition's entries and allocations: bounds the pass's time.",
    ),
    // Two LMDB records per id (by [sku, id] and by age): ≈ 220 B of disk each with a 20-byte SKU and id
    // (measured), so ≈ 220 MB per ledger partition at 10^6; ≈ 1.2 KB each with both at 256 bytes.
    commandIdsCountMax: int(
      1_000_000,
      1,
      100_000_000,
      "Stock command ids (commandId) each ledger partition remembers, the oldest forgotten first: a repeat of one of them changes nothing, even past the duplicate window.",
    ),
  },
  orders: {
    linesPerOrderMax: int(
      200,
      1,
      10_000,
      "Lines in one order (and in one cancel, return or shipment); the largest output item grows with it.",
    ),
    kitWarehousesPerAttemptMax: int(
      4,
      1,
      256,
      "Warehouses one attempt of a kit line tries, best first; each try is one reserve per component, so it bounds the ledger requests a kit line makes (docs/kits.md).",
    ),
    // 256 B holds a sentence of reason (~40 words) or any postal region or code; each text is copied into
    // status and fulfilment items (twice its bytes at worst in JSON), so the largest output item grows with it.
    textBytesMax: int(
      256,
      16,
      4096,
      "Longest free text in UTF-8 bytes: cancel and WMS reasons, shipTo region and zip (longer is refused).",
    ),
    historyCountMax: int(100, 1, 10_000, "History events kept per order; the oldest are dropped first."),
    pendingCancelsPerOrderMax: int(16, 1, 1000, "Cancels kept for an order that has not arrived yet."),
    cacheCountMax: int(100_000, 0, 10_000_000, "Orders kept decoded in memory per order partition."),
    cacheBytesMax: int(
      8 * MiB,
      0,
      64 * GiB,
      "Estimated bytes of orders kept decoded in memory per order partition: its orders in flight fit.",
    ),
    inFlightLinesMax: int(
      2000,
      1,
      1_000_000,
      "Reservations an order partition awaits from the ledger at most; beyond it new orders wait in JetStream.",
    ),
    answerWaitMsMax: int(
      10 * secondMs,
      100,
      10 * minuteMs,
      "A reservation unanswered this long no longer holds the intake gate (a lost answer must not close it).",
    ),
    timersPerTickMax: int(
      1000,
      1,
      1_000_000,
      "SLA deadlines fired by one clock message (the rest fire at the next one).",
    ),
    timerTickMs: int(
      1000,
      10,
      60 * secondMs,
      "How often a partition looks for a passed SLA deadline and then publishes one clock message (stream time): the firing delay bound, and at most one clock per partition per tick.",
    ),
    // Retention counts in stream time from when an order became final (docs/subjects.md, delivery guarantees).
    finalRetentionMs: int(
      90 * dayMs,
      1,
      3650 * dayMs,
      "The return window: a final order (shipped, cancelled, rejected) keeps its whole record (~2-20 KB) this long, then becomes a tombstone and a late return, cancel or WMS event is refused (invalid_transition). 90 days covers 30-day return windows with room for late carriers.",
    ),
    tombstoneRetentionMs: int(
      365 * dayMs,
      1,
      3650 * dayMs,
      "A compacted order's tombstone (~100 B plus its ids) stays this long after the order became final: the same order message again is ignored, not a new order; afterwards its key is unknown. A year is ~37 MB per 1,000 orders a day.",
    ),
    pendingCancelAgeMsMax: int(
      7 * dayMs,
      1,
      3650 * dayMs,
      "A cancel waiting for an order that has not arrived is dropped this long after it came (counted): orders that never come do not keep it forever; an order arriving later is not cancelled.",
    ),
    retentionPerTickMax: int(
      1000,
      1,
      1_000_000,
      "Final orders compacted, tombstones removed and waiting cancels dropped by one clock message, each (the rest at the next): ~1000 deletes of ~5 KB ≈ 5 MB per commit.",
    ),
    // A row is ~200 B of JSON: 500 rows ≈ 100 KB per answer, read from each local partition's atRisk table.
    atRiskPageCountMax: int(
      500,
      1,
      100_000,
      "Largest page of at-risk orders GET /v1/orders?atRisk=true returns (limit).",
    ),
    // The listing reads up to offset + limit rows per local partition, synchronously on the HTTP thread:
    // (10,000 + 500) rows × ~1 µs ≈ 10 ms per partition. Deeper pages are narrowed by channel or warehouse.
    atRiskOffsetMax: int(
      10_000,
      0,
      1_000_000,
      "Largest offset GET /v1/orders?atRisk=true accepts: each partition reads offset + limit rows to answer; a larger one is refused (400), filter by channel or warehouse instead.",
    ),
    networkFile: str(
      "config/network.toml",
      "Warehouses, channels and routing weights: seeds the rules bucket when it is empty.",
    ),
  },
  routing: {
    rulesBucket: str("sluice_rules", "NATS KV bucket holding the rule set (warehouses, channels, weights).", {
      pattern: /^[A-Za-z0-9_-]{1,64}$/,
      hint: "use letters, digits, '_' or '-' (a KV bucket name)",
    }),
    // 64 is the most history a NATS KV bucket keeps per key.
    rulesHistoryCountMax: int(64, 1, 64, "Rule-set versions kept in the bucket (named in decisions)."),
    loadRefreshMs: int(
      100,
      10,
      10 * secondMs,
      "How stale the warehouse load routing reads may be (summed over ledger partitions).",
    ),
    feedFullMs: int(
      10 * secondMs,
      100,
      hourMs,
      "How often a ledger partition republishes every SKU position on the position feed: a routing view that joined late or lost a message converges within this plus one pass.",
    ),
    // 1000 SKUs ≈ 60 KB packed ≈ 1 ms to read and pack: a pass step never holds a partition for long.
    feedFullSkusPerTickMax: int(
      1000,
      1,
      1_000_000,
      "SKU positions one step of a ledger partition's full feed refresh reads and publishes; steps are at least sync.tickMs apart.",
    ),
    viewBytesMax: int(
      32 * MiB,
      0,
      64 * GiB,
      "Estimated heap of the SKU positions a process's routing view keeps from ledger partitions in other processes; past it the oldest are dropped and routed blind.",
    ),
    whatIfOrdersMax: int(10_000, 1, 1_000_000, "Most recent orders one what-if evaluates."),
    whatIfScanMessagesMax: int(
      1_000_000,
      1,
      100_000_000,
      "Order-stream messages a what-if reads to find them (orders share the stream with results).",
    ),
    whatIfWaitMs: int(30 * secondMs, 100, 10 * minuteMs, "Longest a what-if may read the order stream."),
  },
  sync: {
    flushWindowMs: int(
      25,
      0,
      10 * secondMs,
      "A channel's ATS change waits at most this long to coalesce (a drop to 0 does not wait).",
    ),
    tickMs: int(50, 5, secondMs, "How often a ledger partition looks for due stock updates and ERP windows."),
    pendingCountMax: int(
      2_000_000,
      1,
      100_000_000,
      "(channel, SKU) pairs waiting to be sent per ledger partition (SKUs × channels bounds it).",
    ),
    burstRequestsMax: int(2, 1, 1000, "A channel's rate bucket depth: requests at once after a quiet spell."),
    viewItemsPerSecondMax: int(
      250,
      1,
      1_000_000,
      "Current-stock view updates per second per ledger partition: one message each, so kept low.",
    ),
    resyncSkusPerTickMax: int(
      2000,
      1,
      1_000_000,
      "SKUs a channel resync reads per tick per ledger partition.",
    ),
    reconcileFullIntervalMs: int(
      21_600_000,
      0,
      604_800_000,
      "Scheduled full reconciliation per synced channel: its resync (every SKU's ATS offered again, paced by resyncSkusPerTickMax and the channel's budget) starts this long after its last full resync finished; 0 turns it off.",
    ),
  },
  // Warehouse capacity enforced by the ledger (docs/capacity.md): chunks claimed from the pool in NATS KV.
  capacity: {
    claimsInFlightMax: int(
      8,
      1,
      1024,
      "Capacity claims one ledger partition has in flight at once (one per warehouse and day at most).",
    ),
    claimTimeoutMs: int(2000, 100, 60 * secondMs, "Longest wait for one KV request of a capacity claim."),
    claimRetriesMax: int(
      3,
      0,
      100,
      "Failed KV requests (timeouts, no responders) retried within one capacity claim.",
    ),
    claimCasRetriesMax: int(
      64,
      1,
      10_000,
      "Compare-and-set refusals retried within one capacity claim; each means another partition's claim landed.",
    ),
    claimRetryBackoffMs: int(
      100,
      1,
      60 * secondMs,
      "First wait between two failed requests of a capacity claim, doubled each time.",
    ),
    claimFailedPauseMs: int(
      1000,
      1,
      10 * minuteMs,
      "After a capacity claim failed, no claim for that warehouse and day for this long.",
    ),
    dayAheadMs: int(
      10 * minuteMs,
      0,
      12 * hourMs,
      "Tomorrow's first chunk of warehouse capacity is claimed this long before UTC midnight, so a day does not start with nothing held.",
    ),
    rowsDeletedPerTickMax: int(
      1000,
      1,
      1_000_000,
      "Capacity rows of days before yesterday a ledger partition deletes per tick.",
    ),
  },
  erp: {
    windowMs: int(
      1000,
      0,
      10 * minuteMs,
      "An ERP batch closes this long after its first movement or document.",
    ),
    movementKeysMax: int(2000, 1, 100_000, "SKU × warehouse × type keys in one ERP batch (else it closes)."),
    documentsMax: int(500, 1, 100_000, "Order documents in one ERP batch (else it closes)."),
  },
  store: {
    routedCountMax: int(
      1_000_000,
      0,
      100_000_000,
      "Router message names each partition remembers: exactly-once past the duplicate window.",
    ),
    lockRefreshMs: int(
      5 * secondMs,
      100,
      minuteMs,
      "How often a running Sluice touches its data-dir lock (a lease).",
    ),
    lockStaleMs: int(
      30 * secondMs,
      300,
      10 * minuteMs,
      "A lock of another host, boot or pid namespace untouched this long is taken over.",
    ),
    mapBytesMax: int(16 * GiB, 16 * MiB, 4096 * GiB, "LMDB map size per partition: address space, not RAM."),
    diskFullFirstRetryMs: int(
      250,
      10,
      minuteMs,
      "First pause before a partition whose commit found no room on the data disk starts again (doubling up to diskFullRetryMsMax).",
    ),
    diskFullRetryMsMax: int(
      10 * secondMs,
      100,
      10 * minuteMs,
      "Longest pause before a partition whose commit found no room on the data disk starts again (250 ms, doubling).",
    ),
  },
  shutdown: {
    timeoutMs: int(15 * secondMs, 100, 10 * minuteMs, "Graceful stop budget; past it the process exits 1."),
  },
  http: {
    host: str(
      "127.0.0.1",
      "Address of the operator's HTTP port (0.0.0.0 in a container); anything but loopback needs http.tokens.",
    ),
    port: int(8080, 0, 65535, "Port of /healthz, /readyz, /metrics and /v1; 0 picks a free one."),
    tokens: str(
      "",
      "Bearer tokens of the HTTP port: `name:scope:secret` entries, comma-separated; scope read, operate or admin (each includes the ones before), secrets of 16 to 256 characters, names for the audit log. Empty: no authentication, loopback only.",
      { secret: true },
    ),
    probesTokenRequired: {
      kind: "bool",
      default: false,
      why: "Whether /healthz and /readyz need a token (scope read); off, as probes on a private network usually are (they tell only whether it is alive and ready).",
    },
    metricsTokenRequired: {
      kind: "bool",
      default: false,
      why: "Whether /metrics needs a token (scope read); off, as Prometheus scrapes on a private network usually are (counts and timings; no SKUs or order ids).",
    },
    // A check reads every SKU and entry of every local ledger partition: 40,000 SKUs of one entry each took
    // 0.5–1 s in a worker on the 2-core dev machine (~20 µs a SKU), so 2 min covers ~6 × 10^6 such SKUs; the
    // bench's audit waits that long too. Past it, `sluice ledger check` reads the same without a bound.
    ledgerCheckMsMax: int(
      2 * minuteMs,
      1,
      hourMs,
      "Longest GET /v1/ledger/check may run (off the partitions' event loop, one at a time); past it the answer is 503 with the partitions checked so far.",
    ),
  },
} as const satisfies Record<string, Record<string, FieldSpec>>;

export type Schema = typeof schema;
type ValueOf<F> = F extends { kind: "int" }
  ? number
  : F extends { kind: "bool" }
    ? boolean
    : F extends { kind: "string" }
      ? string
      : F extends { kind: "enum" }
        ? string
        : never;

export type Config = {
  readonly [S in keyof Schema]: { readonly [K in keyof Schema[S]]: ValueOf<Schema[S][K]> };
};
