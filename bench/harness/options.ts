// Bench options: scenario defaults, then a file (--config FILE, JSON or TOML, camelCase keys as in
// BenchOptions), then the command line (kebab-case flags). Every value is validated with a message that
// names the flag and the fix. The limits of the harness itself are at the bottom (`limits`).
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { configNames, type NatsSecurity } from "../../src/stream/connection.ts";
import { type FaultKind, faultKinds, planFaults } from "./chaos.ts";
import { sweepPhases, sweepRates, sweepStepsMax } from "./sweep.ts";

export const scenarios = [
  "steady",
  "flash-sale",
  "hot-sku",
  "lifecycle",
  "replay",
  "chaos",
  "sweep",
] as const;
export type Scenario = (typeof scenarios)[number];
export const lineMixes = ["single", "mix", "olist"] as const;
export type LineMix = (typeof lineMixes)[number];
export const arrivalKinds = ["poisson", "uniform"] as const;
export type Arrivals = (typeof arrivalKinds)[number];
export const traceFormats = ["auto", "olist-csv", "ndjson"] as const;
export type TraceFormat = (typeof traceFormats)[number];

export type BenchOptions = {
  scenario: Scenario;
  seed: number;
  /** steady, hot-sku, lifecycle: orders per second offered for durationS. */
  rate: number;
  durationS: number;
  /** flash-sale: baseline for preS, baseline × multiplier for burstS, baseline again for postS. */
  baseline: number;
  multiplier: number;
  preS: number;
  burstS: number;
  postS: number;
  arrivals: Arrivals;
  /** Catalogue: SKU-0 … SKU-(skus−1), Zipf popularity with this exponent, stockPerSku units each at w1. */
  skus: number;
  zipf: number;
  lines: LineMix;
  stockPerSku: number;
  channel: string;
  /** hot-sku: hotSkus SKUs with hotStock units each; hotShare of the lines go to them. */
  hotSkus: number;
  hotStock: number;
  hotShare: number;
  /** lifecycle: percentages of orders (backorder, cancel) or of fulfilment requests (reject, partial ship, return). */
  backorderPct: number;
  kitPct: number;
  cancelPct: number;
  rejectPct: number;
  partialShipPct: number;
  returnPct: number;
  /** replay: a trace file or Olist-style directory; time compressed by speedup, or fitted into fitS. */
  trace: string | null;
  traceFormat: TraceFormat;
  speedup: number | null;
  fitS: number;
  /**
   * replay: the fulfilment network. null: derived from the trace when its lines name origins (Olist: seller
   * states), else the bench's own (network.toml); "derive": derived, or an error when the trace names none;
   * otherwise a rule-set file (TOML, or JSON when it ends in .json). replay-network.ts.
   */
  network: string | null;
  /** replay: stock per (warehouse, SKU) from a CSV file (warehouse,sku,qty) instead of --stock or derived. */
  stockFile: string | null;
  /** replay, derived stock: units per (warehouse, SKU) = ceil(units the trace sold from there × this factor). */
  stockHeadroom: number;
  partitions: number;
  inFlightPublishesMax: number;
  /** Raw JetStream measurement: messages (null: as many as the scenario's expected orders; 0: skip). */
  rawMessages: number | null;
  out: string | null;
  drainWaitS: number;
  quiet: boolean;
  /** chaos: how many faults, of which kinds (each kind once before any repeats), the data mount's size. */
  faults: number;
  faultKinds: FaultKind[];
  diskMb: number;
  /** sweep: explicit rates, or start × factor^k up to max; each step stepS long, settleS of no load after. */
  sweepRates: number[] | null;
  sweepStart: number;
  sweepFactor: number;
  sweepMax: number;
  stepS: number;
  settleS: number;
  /** sweep: a step is saturated below this share of its rate completed, or above this p99 (sweep.ts). */
  saturationRatio: number;
  saturationP99Ms: number;
  /** Sluice's node.workerCount: worker threads hosting the partitions (−1 automatic, 0 none). */
  workers: number;
  /**
   * null: one Sluice process on its embedded nats-server (the default). Otherwise Sluice processes in cluster
   * mode on a nats-server the harness runs, one run per count, in this order (several: a scaling curve).
   */
  nodes: number[] | null;
  /** A 3-node nats-server cluster on loopback instead of one server; Sluice's streams then have 3 replicas. */
  natsCluster: boolean;
};

export type Phase = { name: string; startS: number; endS: number; ratePerSecond: number };

export class OptionsError extends Error {
  override name = "OptionsError";
}

/** Limits of the harness: every queue, window and wait, with its unit and why. */
export const limits = {
  /** Publishes awaiting their JetStream ack at most; the loadgen waits (and falls behind) past it. */
  inFlightPublishesMaxDefault: 2000,
  inFlightPublishesMaxCeiling: 50_000,
  /** Sends in one event-loop turn at most, so acks and timers get a turn: 20k/s ≈ 20 a millisecond. */
  sendsPerTurnMax: 256,
  /** The loadgen sleeps at least this long between sends (timer granularity; see loadgen.ts). */
  sendTickMs: 1,
  /** A JetStream publish without an ack after this long is an error (counted, not retried but in chaos). */
  publishAckWaitMs: 10_000,
  /** chaos: a failed order publish is sent again after this delay, with the same id, for this long at most. */
  publishRetryDelayMs: 250,
  publishRetryMsMax: 60_000,
  /** chaos: a publish without an ack after this long is sent again (a producer's timeout). */
  chaosPublishAckWaitMs: 2_000,
  /** The loadgen connects and computes its schedule in this time before the first intended send. */
  startDelayMs: 1_500,
  /** Loadgen → harness report interval. */
  reportIntervalMs: 1_000,
  /** Prometheus scrape and /proc sample interval: a scrape costs Sluice a little, once a second is enough. */
  sampleIntervalMs: 1_000,
  scrapeTimeoutMs: 2_000,
  /** After the loadgen ends: wait for every accepted order to settle at most this long (--drain-wait-s). */
  drainWaitSDefault: 120,
  /** After settling: wait for stock deltas to stop this long (a delta may trail its order by deltaFlushMs). */
  stockQuietMs: 1_500,
  stockQuietWaitMsMax: 10_000,
  /** lifecycle: wait for the loadgen's follow-ups (ships, returns) this long after the last order at most. */
  followUpWaitMs: 60_000,
  /**
   * replay: rows of a --stock-file at most. Each row is one seeded position, sent in seedItemsPerMessage
   * batches: 10,000,000 rows ≈ 2,000 bulk messages and ~1 GiB of harness memory while seeding.
   */
  stockFileRowsMax: 10_000_000,
  /**
   * replay, derived network: each warehouse's capacityPerDay. A replay never ships, so open reservations only
   * grow: a real capacity would fill and measure capacity refusals instead of routing (as network.toml says).
   */
  derivedCapacityPerDayUnits: 1_000_000_000,
  /**
   * replay, derived network: routing.distanceKmMax. Brazil is ~4,300 km across; at Sluice's default 2,000 km
   * every warehouse beyond it scores proximity 0 and a far-north customer could not tell them apart.
   */
  derivedDistanceKmMax: 4_000,
  /** The routing tally's per-warehouse rows at most (a rule set has at most 256 warehouses); the rest: "other". */
  routingWarehousesTrackedMax: 256,
  /** Orders per second × seconds the bench can track (typed arrays, ~6 bytes an order). */
  ordersMax: 20_000_000,
  rawMessagesMax: 2_000_000,
  /** sweep: the raw JetStream measurement's default size (its expected count would take minutes). */
  sweepRawMessagesDefault: 100_000,
  /** Bulk import messages carry this many stock items (Sluice's ledger.itemsPerMessageMax is 10,000). */
  seedItemsPerMessage: 5_000,
  seedWaitMs: 120_000,
  /** The audit asks Sluice's HTTP API about this many SKUs / orders at most, this many at a time. */
  auditSkusMax: 2_000,
  auditOrdersFetchMax: 200,
  auditConcurrencyMax: 16,
  ledgerCheckTimeoutMs: 120_000,
  /** Per SKU, the newest stock deltas kept to match order lines first seen after their delta. */
  deltasKeptPerSku: 8,
  /** Sustained throughput: the best window of this many seconds. */
  sustainedWindowS: 5,
  /** Problems listed by name in the report at most (counts are always complete). */
  examplesMax: 20,
  /** chaos: unexpected exits of Sluice restarted at most (a crash loop), and faults in one run at most. */
  chaosCrashRestartsMax: 30,
  chaosFaultsMax: 20,
  /**
   * Issue #11's memory budget: Sluice's anonymous RSS (heap, buffers) stays under this at any offered load on
   * the development box. Judged on RssAnon, not VmRSS: VmRSS also counts the resident pages of the LMDB maps,
   * page cache that grows with the data (169 MiB, Bun's executable included, after the default flash sale on
   * the 2-core box; 641 MiB anonymous) and that the kernel reclaims.
   */
  sluiceRssAnonBudgetBytes: 1024 ** 3,
  /** --nodes: Sluice processes in one run at most (each a Bun process of ~100 MiB at rest, and its ports). */
  clusterNodesMax: 32,
  /** --nodes: node counts in one curve at most (each count is a whole run). */
  curvePointsMax: 8,
  /**
   * --nodes with several counts: the load's default length per count when --duration-s is not given (steady,
   * hot-sku, lifecycle). Per count ≈ 15 s of load + start, settle, seed, raw JetStream, drain, audit and stop
   * (20–40 s with 8 nodes on a many-core machine): 1,2,4,8 stays within five minutes.
   */
  curveDurationSDefault: 15,
  /** --nats-cluster: nats-servers in the cluster; 3 is the smallest that keeps a quorum losing one. */
  natsClusterServers: 3,
  /**
   * The harness's nats-server(s): JetStream store cap per server. A reservation, not disk used: Sluice's
   * default stream caps in cluster mode (stage streams 2 GiB each, SLUICE_OUT 1 GiB, changelog 4 GiB, snapshot
   * store 8 GiB, …) must fit under it on every server that holds a replica, or JetStream refuses the stream.
   */
  natsStoreBytesMax: 64 * 1024 ** 3,
  natsMemoryBytesMax: 256 * 1024 ** 2,
  /** A nats-server opens its ports in well under a second; a cluster elects a meta leader in a few seconds. */
  natsStartMsMax: 30_000,
  /** A Sluice node is ready (HTTP /readyz 200) this long after its start at most. */
  nodeReadyMsMax: 60_000,
  /**
   * Every partition owned where the cluster's own assignment puts it (src/cluster/assignment.ts), at most this
   * long after the last node started: the first node owns all 2 × P and hands one off per cluster round
   * (cluster.rebalanceMs, 2 s), so 8 nodes on 8 partitions settle in ~15–20 s.
   */
  clusterSettleMsMax: 180_000,
  /** GET /v1/cluster while settling and each second of the run (its owners show partition moves). */
  clusterPollMs: 250,
  /** SIGTERM to every node at once at the end; SIGKILL after this (a node hands off and snapshots first). */
  nodeStopMsMax: 30_000,
} as const;

const flags = {
  scenario: { type: "string" },
  seed: { type: "string" },
  rate: { type: "string" },
  "duration-s": { type: "string" },
  baseline: { type: "string" },
  multiplier: { type: "string" },
  "pre-s": { type: "string" },
  "burst-s": { type: "string" },
  "post-s": { type: "string" },
  arrivals: { type: "string" },
  skus: { type: "string" },
  zipf: { type: "string" },
  lines: { type: "string" },
  stock: { type: "string" },
  channel: { type: "string" },
  "hot-skus": { type: "string" },
  "hot-stock": { type: "string" },
  "hot-share": { type: "string" },
  "backorder-pct": { type: "string" },
  "kit-pct": { type: "string" },
  "cancel-pct": { type: "string" },
  "reject-pct": { type: "string" },
  "partial-ship-pct": { type: "string" },
  "return-pct": { type: "string" },
  trace: { type: "string" },
  "trace-format": { type: "string" },
  speedup: { type: "string" },
  "fit-s": { type: "string" },
  network: { type: "string" },
  "stock-file": { type: "string" },
  "stock-headroom": { type: "string" },
  partitions: { type: "string" },
  inflight: { type: "string" },
  "raw-messages": { type: "string" },
  out: { type: "string" },
  "drain-wait-s": { type: "string" },
  faults: { type: "string" },
  "fault-kinds": { type: "string" },
  "disk-mb": { type: "string" },
  "sweep-rates": { type: "string" },
  "sweep-start": { type: "string" },
  "sweep-factor": { type: "string" },
  "sweep-max": { type: "string" },
  "step-s": { type: "string" },
  "settle-s": { type: "string" },
  "saturation-ratio": { type: "string" },
  "saturation-p99-ms": { type: "string" },
  workers: { type: "string" },
  nodes: { type: "string" },
  "nats-cluster": { type: "boolean" },
  config: { type: "string" },
  quiet: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/** Flag → option key (the file uses the keys). */
const flagKey: Record<string, keyof BenchOptions> = {
  scenario: "scenario",
  seed: "seed",
  rate: "rate",
  "duration-s": "durationS",
  baseline: "baseline",
  multiplier: "multiplier",
  "pre-s": "preS",
  "burst-s": "burstS",
  "post-s": "postS",
  arrivals: "arrivals",
  skus: "skus",
  zipf: "zipf",
  lines: "lines",
  stock: "stockPerSku",
  channel: "channel",
  "hot-skus": "hotSkus",
  "hot-stock": "hotStock",
  "hot-share": "hotShare",
  "backorder-pct": "backorderPct",
  "kit-pct": "kitPct",
  "cancel-pct": "cancelPct",
  "reject-pct": "rejectPct",
  "partial-ship-pct": "partialShipPct",
  "return-pct": "returnPct",
  trace: "trace",
  "trace-format": "traceFormat",
  speedup: "speedup",
  "fit-s": "fitS",
  network: "network",
  "stock-file": "stockFile",
  "stock-headroom": "stockHeadroom",
  partitions: "partitions",
  inflight: "inFlightPublishesMax",
  "raw-messages": "rawMessages",
  out: "out",
  "drain-wait-s": "drainWaitS",
  quiet: "quiet",
  faults: "faults",
  "fault-kinds": "faultKinds",
  "disk-mb": "diskMb",
  "sweep-rates": "sweepRates",
  "sweep-start": "sweepStart",
  "sweep-factor": "sweepFactor",
  "sweep-max": "sweepMax",
  "step-s": "stepS",
  "settle-s": "settleS",
  "saturation-ratio": "saturationRatio",
  "saturation-p99-ms": "saturationP99Ms",
  workers: "workers",
  nodes: "nodes",
  "nats-cluster": "natsCluster",
};

export const usage = `sluice bench: open-loop load against a Sluice of its own, with latency, limits and reports

Usage: bun run bench [options]        (or: bun bench/harness/main.ts [options])

  --scenario NAME     steady | flash-sale | hot-sku | lifecycle | replay | chaos | sweep  (default flash-sale)
  --seed N            PRNG seed: the same seed offers the same orders at the same times     (1)
  --rate N            orders/s for steady, hot-sku, lifecycle, chaos  (2000; lifecycle, chaos 500)
  --duration-s N      seconds of load for steady, hot-sku, lifecycle, chaos       (30; hot-sku 20; chaos 60)
  --baseline N        flash-sale: orders/s before and after the burst                        (100)
  --multiplier N      flash-sale: burst rate = baseline × N                                   (50)
  --pre-s N / --burst-s N / --post-s N    flash-sale phase lengths in seconds          (10 / 10 / 15)
  --arrivals KIND     poisson | uniform spacing of intended send times                    (poisson)
  --skus N            catalogue size, SKU-0 … SKU-(N−1)                                       (10000)
  --zipf S            SKU popularity exponent (0.6 ≈ Olist 2017: top 10 % of SKUs, ~37 % of units)
  --lines MIX         single | mix (1: 70 %, 2: 20 %, 3–5: 10 %) | olist (96.9 / 2.8 / 0.3 %)
                      (single for steady and hot-sku, mix otherwise)
  --stock N           units per catalogue SKU at w1 (lifecycle: also at w2)                (1000000)
  --channel NAME      the channel orders arrive on                                            (shop)
  --hot-skus N / --hot-stock N / --hot-share F    hot-sku: SKUs, units each, share of lines (10/2000/0.9)
  --cancel-pct P / --reject-pct P / --partial-ship-pct P / --return-pct P   lifecycle (5 / 2 / 5 / 8)
  --backorder-pct P   lifecycle: orders of one unit of a SKU with no stock, allowed to wait (split.backorder);
                      its unit is received at w1 1–1.5 s later and fills the waiting line        (5)
  --kit-pct P         lifecycle: orders of one kit line (KIT-0 … KIT-7 of the bench network, three
                      components each, reserved all or none at one warehouse)                     (5)
  --trace PATH        replay: an Olist-style directory (orders.csv + order_items.csv) or an NDJSON file
  --trace-format F    auto | olist-csv | ndjson                                               (auto)
  --speedup N         replay: time compression factor (default: fit the trace into --fit-s)
  --fit-s N           replay: seconds the whole trace should take when --speedup is absent     (60)
  --network FILE|derive  replay: the warehouses routed over. derive: one per origin of the trace's
                      lines (Olist: seller state, at its centroid), stock from what each sold; FILE: a
                      rule set (TOML, .json). Default: derive when the trace names origins, else the
                      bench's network.toml with --stock at w1. Written to the output directory
  --stock-file FILE   replay: stock per warehouse, CSV warehouse,sku,qty (default: derived, or --stock
                      units per SKU at the network's first enabled warehouse)
  --stock-headroom F  replay, derived stock: units per (warehouse, SKU) = ceil(units sold there × F) (1.5)
  --partitions N      Sluice partitions per stage                                             (4)
  --inflight N        publishes awaiting their JetStream ack at most (a real producer's window) (2000)
  --raw-messages N    raw JetStream measurement size (default: the expected order count; 0 skips it)
  --out DIR           where the reports go (default ./bench-results/<timestamp>)
  --drain-wait-s N    after the load, wait this long at most for every order to settle  (120; chaos 90)
  --faults N          chaos: faults injected during the load, at seeded moments              (4)
  --fault-kinds LIST  chaos: comma-separated sluice-kill,nats-restart,sluice-pause,disk-full  (all)
  --disk-mb N         chaos: size of the tmpfs mounted as Sluice's data directory (disk-full) (256)
  --sweep-rates LIST  sweep: comma-separated offered rates, increasing (default: start × factor^k ≤ max)
  --sweep-start N / --sweep-factor F / --sweep-max N   sweep: the default schedule   (1000 / 2 / 32000)
  --step-s N / --settle-s N   sweep: seconds per step / of no load after each step          (8 / 2)
  --saturation-ratio F  sweep: saturated when its orders completed by settle-s − 0.5 s after the step,
                      per second of step, < F × offered                                          (0.9)
  --saturation-p99-ms N sweep: … or when their accept → allocated p99 > N ms; stops at the first (1000)
  --workers N         Sluice's worker threads (node.workerCount): -1 auto, 0 none, N            (-1)
  --nodes N|LIST      N Sluice processes in cluster mode on a nats-server the harness runs; a list
                      (1,2,4,8) runs the scenario once per count and reports the scaling curve,
                      with --duration-s 15 unless given        (default: one process, embedded nats-server)
  --nats-cluster      a 3-node nats-server cluster on loopback, streams with 3 replicas       (off)
  --config FILE       options from a JSON or TOML file (camelCase keys, e.g. {"burstS": 60})
  --quiet             no live progress line

NATS security: the harness and the load generator connect with Sluice's own variables, which the Sluice
processes it starts inherit too: SLUICE_NATS_TOKEN, SLUICE_NATS_USER + SLUICE_NATS_PASSWORD,
SLUICE_NATS_TLS_CA_FILE, SLUICE_NATS_TLS_CERT_FILE + SLUICE_NATS_TLS_KEY_FILE, SLUICE_NATS_NKEY_SEED_FILE,
SLUICE_NATS_CREDS_FILE (docs/security.md). The servers the harness starts have no TLS or authentication.

The full 11.11 run: --scenario flash-sale --baseline 400 --multiplier 50 --burst-s 60
The scaling curve on a many-core machine: --scenario steady --rate 20000 --nodes 1,2,4,8 (docs/bench.md)
Reports: report.json, report.md, report.html in the output directory. docs/bench.md explains every figure.`;

/** Each security setting's environment variable: the bench's clients take what Sluice takes (docs/security.md). */
export const benchSecurityNames: Record<keyof NatsSecurity, string> = Object.fromEntries(
  Object.keys(configNames).map((k) => [
    k,
    `SLUICE_NATS_${k.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase()}`,
  ]),
) as Record<keyof NatsSecurity, string>;

/** The bench's NATS security settings from the environment (SLUICE_NATS_*), empty where unset. */
export function benchNatsSecurity(env: Record<string, string | undefined>): NatsSecurity {
  const get = (k: keyof NatsSecurity) => env[benchSecurityNames[k]] ?? "";
  return {
    token: get("token"),
    user: get("user"),
    password: get("password"),
    tlsCaFile: get("tlsCaFile"),
    tlsCertFile: get("tlsCertFile"),
    tlsKeyFile: get("tlsKeyFile"),
    nkeySeedFile: get("nkeySeedFile"),
    credsFile: get("credsFile"),
  };
}

function baseDefaults(scenario: Scenario): BenchOptions {
  return {
    scenario,
    seed: 1,
    rate: scenario === "lifecycle" || scenario === "chaos" ? 500 : 2000,
    durationS: scenario === "hot-sku" ? 20 : scenario === "chaos" ? 60 : 30,
    baseline: 100,
    multiplier: 50,
    preS: 10,
    burstS: 10,
    postS: 15,
    arrivals: "poisson",
    skus: 10_000,
    zipf: 0.6,
    lines: scenario === "steady" || scenario === "hot-sku" || scenario === "sweep" ? "single" : "mix",
    stockPerSku: 1_000_000,
    channel: "shop",
    hotSkus: 10,
    hotStock: 2000,
    hotShare: 0.9,
    backorderPct: 5,
    kitPct: 5,
    cancelPct: 5,
    rejectPct: 2,
    partialShipPct: 5,
    returnPct: 8,
    trace: null,
    traceFormat: "auto",
    speedup: null,
    fitS: 60,
    network: null,
    stockFile: null,
    stockHeadroom: 1.5,
    partitions: 4,
    inFlightPublishesMax: limits.inFlightPublishesMaxDefault,
    rawMessages: null,
    out: null,
    drainWaitS: scenario === "chaos" ? 90 : limits.drainWaitSDefault,
    quiet: false,
    faults: 4,
    faultKinds: [...faultKinds],
    diskMb: 256,
    sweepRates: null,
    sweepStart: 1000,
    sweepFactor: 2,
    sweepMax: 32_000,
    stepS: 8,
    settleS: 2,
    saturationRatio: 0.9,
    saturationP99Ms: 1000,
    workers: -1,
    nodes: null,
    natsCluster: false,
  };
}

export type Parsed = { help: true } | { help: false; options: BenchOptions };

export function parseOptions(argv: string[]): Parsed {
  let parsed: ReturnType<typeof parseArgs<{ options: typeof flags; allowPositionals: false; strict: true }>>;
  try {
    parsed = parseArgs({ args: argv, options: flags, allowPositionals: false, strict: true });
  } catch (error) {
    throw new OptionsError(`${(error as Error).message} (see --help)`);
  }
  const cli = parsed.values as Record<string, string | boolean | undefined>;
  if (cli.help === true) return { help: true };
  const file = typeof cli.config === "string" ? readOptionsFile(cli.config) : {};
  const fromCli: Record<string, unknown> = {};
  for (const [flag, value] of Object.entries(cli)) {
    if (value === undefined || flag === "config" || flag === "help") continue;
    fromCli[flagKey[flag] as string] = value;
  }
  const scenario = pick(fromCli.scenario ?? file.scenario ?? "flash-sale", scenarios, "--scenario");
  const options = baseDefaults(scenario);
  for (const [key, raw] of [...Object.entries(file), ...Object.entries(fromCli)]) {
    assign(options, key as keyof BenchOptions, raw);
  }
  // A curve runs the scenario once per node count: a shorter default load keeps 1,2,4,8 within minutes.
  const durationGiven = "durationS" in fromCli || "durationS" in file;
  if ((options.nodes?.length ?? 0) > 1 && !durationGiven) options.durationS = limits.curveDurationSDefault;
  validate(options);
  return { help: false, options };
}

function readOptionsFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new OptionsError(`--config ${path}: cannot read it (${(error as Error).message})`);
  }
  let value: unknown;
  try {
    value = path.endsWith(".toml") ? Bun.TOML.parse(text) : JSON.parse(text);
  } catch (error) {
    throw new OptionsError(
      `--config ${path}: not valid ${path.endsWith(".toml") ? "TOML" : "JSON"}: ${(error as Error).message}`,
    );
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new OptionsError(`--config ${path}: expected an object of options such as {"scenario":"steady"}`);
  const known = new Set(Object.values(flagKey));
  for (const key of Object.keys(value)) {
    if (!known.has(key as keyof BenchOptions))
      throw new OptionsError(
        `--config ${path}: unknown option ${JSON.stringify(key)}; expected one of ${[...known].join(", ")}`,
      );
  }
  return value as Record<string, unknown>;
}

const numberKeys = new Set<keyof BenchOptions>([
  "seed",
  "rate",
  "durationS",
  "baseline",
  "multiplier",
  "preS",
  "burstS",
  "postS",
  "skus",
  "zipf",
  "stockPerSku",
  "hotSkus",
  "hotStock",
  "hotShare",
  "backorderPct",
  "kitPct",
  "cancelPct",
  "rejectPct",
  "partialShipPct",
  "returnPct",
  "speedup",
  "fitS",
  "stockHeadroom",
  "partitions",
  "inFlightPublishesMax",
  "rawMessages",
  "drainWaitS",
  "faults",
  "diskMb",
  "sweepStart",
  "sweepFactor",
  "sweepMax",
  "stepS",
  "settleS",
  "saturationRatio",
  "saturationP99Ms",
  "workers",
]);

function assign(options: BenchOptions, key: keyof BenchOptions, raw: unknown): void {
  const name = flagOf(key);
  const target = options as Record<string, unknown>;
  if (numberKeys.has(key)) {
    const n =
      typeof raw === "number" ? raw : typeof raw === "string" && raw.trim() !== "" ? Number(raw) : Number.NaN;
    if (!Number.isFinite(n)) throw new OptionsError(`${name} must be a number, got ${JSON.stringify(raw)}`);
    target[key] = n;
  } else if (key === "quiet" || key === "natsCluster") {
    if (typeof raw !== "boolean") throw new OptionsError(`${name} must be true or false`);
    target[key] = raw;
  } else if (key === "nodes") {
    const list = Array.isArray(raw)
      ? raw
      : typeof raw === "number"
        ? [raw]
        : typeof raw === "string"
          ? raw.split(",")
          : null;
    const counts = (list ?? []).map((r) =>
      typeof r === "number" ? r : String(r).trim() === "" ? Number.NaN : Number(r),
    );
    if (list === null || counts.length === 0 || counts.some((c) => !Number.isFinite(c)))
      throw new OptionsError(`${name} must be a node count or a comma-separated list of them, e.g. 1,2,4,8`);
    target[key] = counts;
  } else if (key === "scenario") target[key] = pick(raw, scenarios, name);
  else if (key === "lines") target[key] = pick(raw, lineMixes, name);
  else if (key === "arrivals") target[key] = pick(raw, arrivalKinds, name);
  else if (key === "traceFormat") target[key] = pick(raw, traceFormats, name);
  else if (key === "faultKinds") {
    const list = Array.isArray(raw) ? raw : typeof raw === "string" ? raw.split(",") : null;
    if (list === null || list.length === 0)
      throw new OptionsError(`${name} must be a comma-separated list of ${faultKinds.join(", ")}`);
    target[key] = [...new Set(list.map((k) => pick(String(k).trim(), faultKinds, name)))];
  } else if (key === "sweepRates") {
    const list = Array.isArray(raw) ? raw : typeof raw === "string" ? raw.split(",") : null;
    const rates = (list ?? []).map((r) =>
      typeof r === "number" ? r : String(r).trim() === "" ? Number.NaN : Number(r),
    );
    if (list === null || rates.length === 0 || rates.some((r) => !Number.isFinite(r)))
      throw new OptionsError(`${name} must be a comma-separated list of rates, e.g. 1000,2000,4000`);
    target[key] = rates;
  } else {
    if (typeof raw !== "string" || raw === "") throw new OptionsError(`${name} must be a non-empty string`);
    target[key] = raw;
  }
}

function flagOf(key: keyof BenchOptions): string {
  const flag = Object.entries(flagKey).find(([, k]) => k === key)?.[0] ?? key;
  return `--${flag}`;
}

function pick<T extends string>(raw: unknown, allowed: readonly T[], name: string): T {
  if (typeof raw === "string" && (allowed as readonly string[]).includes(raw)) return raw as T;
  throw new OptionsError(`${name} must be one of ${allowed.join(", ")}; got ${JSON.stringify(raw)}`);
}

function validate(o: BenchOptions): void {
  const whole = (key: keyof BenchOptions, min: number, max = Number.MAX_SAFE_INTEGER) => {
    const v = o[key] as number;
    if (!Number.isInteger(v) || v < min || v > max)
      throw new OptionsError(`${flagOf(key)} must be a whole number in ${min} … ${max}, got ${v}`);
  };
  const range = (key: keyof BenchOptions, min: number, max: number) => {
    const v = o[key] as number;
    if (!(v >= min && v <= max))
      throw new OptionsError(`${flagOf(key)} must be in ${min} … ${max}, got ${v}`);
  };
  whole("seed", 0, 2 ** 32 - 1);
  range("rate", 0.001, 1_000_000);
  range("durationS", 0.1, 86_400);
  range("baseline", 0, 1_000_000);
  range("multiplier", 1, 1000);
  range("preS", 0, 86_400);
  range("burstS", 0.1, 86_400);
  range("postS", 0, 86_400);
  whole("skus", 1, 10_000_000);
  range("zipf", 0, 5);
  whole("stockPerSku", 0, 1_000_000_000);
  whole("hotSkus", 1, 10_000);
  whole("hotStock", 0, 1_000_000_000);
  range("hotShare", 0, 1);
  for (const key of [
    "backorderPct",
    "kitPct",
    "cancelPct",
    "rejectPct",
    "partialShipPct",
    "returnPct",
  ] as const)
    range(key, 0, 100);
  if (o.speedup !== null) range("speedup", 1e-6, 1e12);
  range("fitS", 0.1, 86_400);
  range("stockHeadroom", 0.01, 1000);
  whole("partitions", 1, 1024);
  whole("inFlightPublishesMax", 1, limits.inFlightPublishesMaxCeiling);
  if (o.rawMessages !== null) whole("rawMessages", 0, limits.rawMessagesMax);
  range("drainWaitS", 1, 86_400);
  whole("faults", 0, limits.chaosFaultsMax);
  whole("diskMb", 16, 1_000_000);
  range("sweepStart", 0.001, 1_000_000);
  range("sweepFactor", 1.01, 100);
  range("sweepMax", 0.001, 1_000_000);
  range("stepS", 0.5, 86_400);
  range("settleS", 0.5, 600);
  range("saturationRatio", 0, 1);
  range("saturationP99Ms", 1, 3_600_000);
  whole("workers", -1, 256);
  validateNodes(o);
  if (o.sweepRates !== null) {
    const r = o.sweepRates;
    if (
      r.length > sweepStepsMax ||
      r.some((x, i) => !(x > 0 && x <= 1_000_000) || (i > 0 && x <= (r[i - 1] as number)))
    )
      throw new OptionsError(
        `--sweep-rates must be 1 … ${sweepStepsMax} increasing rates in (0, 1000000], got ${r.join(",")}`,
      );
  }
  if (o.scenario === "sweep" && o.sweepRates === null && o.sweepStart > o.sweepMax)
    throw new OptionsError(`--sweep-start ${o.sweepStart} is above --sweep-max ${o.sweepMax}`);
  if (o.scenario === "chaos" && o.natsCluster)
    throw new OptionsError(
      "--nats-cluster does not combine with --scenario chaos: its nats-restart fault restarts one server",
    );
  if (o.scenario === "chaos") {
    try {
      planFaults(o.seed, o.faultKinds, o.faults, o.durationS);
    } catch (error) {
      throw new OptionsError(`--faults ${o.faults} --duration-s ${o.durationS}: ${(error as Error).message}`);
    }
  }
  if (!/^[A-Za-z0-9_\-:@+,=]+$/.test(o.channel))
    throw new OptionsError("--channel must be a plain subject token (letters, digits, _ - : @ + , =)");
  if (o.scenario === "replay" && o.trace === null)
    throw new OptionsError(
      "--scenario replay needs --trace PATH: an Olist-style directory (e.g. ../shared/data/olist-2017-10k) or an NDJSON file (docs/bench.md)",
    );
  if (o.scenario !== "replay" && (o.network !== null || o.stockFile !== null))
    throw new OptionsError(
      `${o.network !== null ? "--network" : "--stock-file"} is for --scenario replay; the other scenarios run on the bench's network (bench/harness/network.toml) with --stock units per SKU at w1`,
    );
  if (o.scenario === "flash-sale" && o.baseline * o.multiplier <= 0)
    throw new OptionsError("--baseline × --multiplier must be > 0 for a flash sale");
  const expected = phasesOf(o, null).reduce((n, p) => n + p.ratePerSecond * (p.endS - p.startS), 0);
  if (expected > limits.ordersMax)
    throw new OptionsError(
      `this run would offer ~${Math.round(expected)} orders; the bench tracks at most ${limits.ordersMax}`,
    );
}

function validateNodes(o: BenchOptions): void {
  const counts = o.nodes;
  if (counts === null) return;
  const max = limits.clusterNodesMax;
  if (
    counts.length > limits.curvePointsMax ||
    counts.some(
      (c, i) => !Number.isInteger(c) || c < 1 || c > max || (i > 0 && c <= (counts[i - 1] as number)),
    )
  )
    throw new OptionsError(
      `--nodes must be 1 … ${limits.curvePointsMax} increasing whole numbers in 1 … ${max}, e.g. 1,2,4,8; got ${counts.join(",")}`,
    );
  const most = counts[counts.length - 1] as number;
  if (most > 2 * o.partitions)
    throw new OptionsError(
      `--nodes ${most} with --partitions ${o.partitions}: there are 2 × ${o.partitions} = ${2 * o.partitions} partitions and a node without one is never ready; raise --partitions to ${Math.ceil(most / 2)} or more`,
    );
  if (o.scenario === "chaos")
    throw new OptionsError(
      "--nodes does not combine with --scenario chaos: its faults hit one supervised Sluice process",
    );
  if (o.scenario === "sweep" && counts.length > 1)
    throw new OptionsError(
      "--scenario sweep takes one --nodes count (a sweep per count would take minutes each); run one sweep per count",
    );
  if (o.workers > 0)
    throw new OptionsError(
      `--workers ${o.workers} with --nodes: a cluster scales by nodes, each node runs its partitions on its main thread (node.workerCount ≤ 0); leave --workers out`,
    );
}

/**
 * The scenario's phases. replay passes its trace's span in seconds (already compressed); a phase's rate is
 * what the schedule offers on average.
 */
export function phasesOf(o: BenchOptions, replay: { spanS: number; orders: number } | null): Phase[] {
  switch (o.scenario) {
    case "flash-sale": {
      const burst = o.baseline * o.multiplier;
      const phases: Phase[] = [];
      if (o.preS > 0) phases.push({ name: "baseline", startS: 0, endS: o.preS, ratePerSecond: o.baseline });
      phases.push({ name: "burst", startS: o.preS, endS: o.preS + o.burstS, ratePerSecond: burst });
      if (o.postS > 0)
        phases.push({
          name: "after",
          startS: o.preS + o.burstS,
          endS: o.preS + o.burstS + o.postS,
          ratePerSecond: o.baseline,
        });
      return phases;
    }
    case "replay": {
      const spanS = replay?.spanS ?? 0;
      return [
        {
          name: "replay",
          startS: 0,
          endS: spanS,
          ratePerSecond: spanS > 0 ? (replay?.orders ?? 0) / spanS : 0,
        },
      ];
    }
    case "sweep":
      return sweepPhases(sweepRates(o), o.stepS, o.settleS);
    default:
      return [{ name: o.scenario, startS: 0, endS: o.durationS, ratePerSecond: o.rate }];
  }
}

export function expectedOrders(phases: Phase[]): number {
  return Math.round(phases.reduce((n, p) => n + p.ratePerSecond * (p.endS - p.startS), 0));
}

/**
 * The phase an intended send time (seconds from the start of the load) belongs to: the first phase before
 * the start, the last after the end, and in a gap between phases (sweep's settle gaps) the one before it.
 */
export function phaseIndexAt(phases: Phase[], s: number): number {
  let before = 0;
  for (let i = 0; i < phases.length; i++) {
    const p = phases[i] as Phase;
    if (s >= p.startS && s < p.endS) return i;
    if (s >= p.endS) before = i;
  }
  return before;
}
