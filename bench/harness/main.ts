// `sluice bench` / `bun run bench` / `bun bench/harness/main.ts [options]`: one command that answers "does
// Sluice hold 11.11 on this hardware, and how close to the limit is it?".
//
// 1. Start Sluice as its own process on an embedded nats-server (bench/lib.ts), or with --nodes / --nats-cluster
//    nats-server(s) the harness runs and N Sluice nodes in cluster mode (cluster-run.ts); seed stock by bulk imports.
// 2. Measure this machine's raw JetStream (publish, consume, ack the same count and size, no processing).
// 3. Subscribe to Sluice's outputs (observe.ts), spawn the load generator (loadgen.ts, its own process),
//    sample /metrics and /proc each second, print a live progress line.
// 4. Wait for the backlog to drain, audit (audit.ts), stop Sluice, write report.json, report.md and
//    report.html (docs/bench.md explains them). --nodes 1,2,4,8: steps 1–4 once per count into nodes-<N>/,
//    then the scaling curve (curve.ts) at the top of the output directory.
//
// Exit code: 0 when the run completed and the audit passed, 1 when the audit failed or the run broke,
// 2 for bad options. Targets missed do not change the exit code: they are figures, not assertions.
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { jetstream } from "@nats-io/jetstream";
import { headers, type NatsConnection } from "@nats-io/transport-node";
import { connectSecured } from "../../src/stream/connection.ts";
import { skuPartition, subjects } from "../../src/stream/subjects.ts";
import {
  benchConnection,
  measureRawJetStream,
  repoRoot,
  type SluiceUnderTest,
  startSluice,
  waitUntil,
} from "../lib.ts";
import { runAudit } from "./audit.ts";
import { planFaults } from "./chaos.ts";
import {
  type ChaosReport,
  ChaosRig,
  CompletionLog,
  chaosChecks,
  FaultInjector,
  finishFaults,
  monotoneCpu,
  ReadyzWatch,
  readOutputs,
} from "./chaos-run.ts";
import { ClusterRig } from "./cluster-run.ts";
import { buildCurve, type CurveRun, renderCurveHtml, renderCurveMarkdown } from "./curve.ts";
import { machineInfo, versionsInfo } from "./env.ts";
import type { LoadDone, LoadTick } from "./loadgen.ts";
import { Observer, orderStatuses } from "./observe.ts";
import {
  type BenchOptions,
  benchSecurityNames,
  expectedOrders,
  limits,
  OptionsError,
  type Phase,
  parseOptions,
  phaseIndexAt,
  phasesOf,
  usage,
} from "./options.ts";
import { ZipfSampler } from "./prng.ts";
import {
  NetworkError,
  networkSummary,
  type ReplayNetwork,
  resolveNetwork,
  type WarehouseSite,
  writeNetwork,
} from "./replay-network.ts";
import { renderHtml } from "./report-html.ts";
import { type BenchReport, buildReport, type RawJetStream } from "./report-json.ts";
import { renderMarkdown } from "./report-md.ts";
import { type Sample, takeSample } from "./sample.ts";
import { SluiceHttp } from "./sluice-http.ts";
import { judgeAfterS, judgeStep, type StepJudgement } from "./sweep.ts";
import { loadTrace, speedupFor, type Trace, TraceError } from "./trace.ts";
import { catalogueSku, hotSku, type LoadPlan, orderPayload, Workload } from "./workload.ts";

const epochNowMs = () => performance.timeOrigin + performance.now();
const say = (message: string) => process.stderr.write(`sluice-bench: ${message}\n`);

/** Statuses in which an order needs nothing more from the run: lifecycle waits for shipments too. */
function finalStatusesOf(o: BenchOptions): Set<string> {
  if (o.scenario === "lifecycle") return new Set(["shipped", "cancelled", "rejected"]);
  return new Set(orderStatuses.filter((s) => s !== "pending"));
}

export async function runBench(argv: string[]): Promise<number> {
  let options: BenchOptions;
  try {
    const parsed = parseOptions(argv);
    if (parsed.help) {
      process.stdout.write(`${usage}\n`);
      return 0;
    }
    options = parsed.options;
  } catch (error) {
    if (!(error instanceof OptionsError)) throw error;
    process.stderr.write(`sluice bench: ${error.message}\n`);
    return 2;
  }
  let trace: Trace | null = null;
  let speedup = 1;
  if (options.scenario === "replay") {
    try {
      trace = loadTrace(options.trace as string, options.traceFormat);
    } catch (error) {
      if (!(error instanceof TraceError)) throw error;
      process.stderr.write(`sluice bench: ${error.message}\n`);
      return 2;
    }
    speedup = speedupFor(trace, options.speedup, options.fitS);
  }
  let network: ReplayNetwork;
  try {
    network = resolveNetwork(options, trace);
  } catch (error) {
    if (!(error instanceof NetworkError)) throw error;
    process.stderr.write(`sluice bench: ${error.message}\n`);
    return 2;
  }
  const phases = phasesOf(
    options,
    trace === null ? null : { spanS: trace.spanMs / speedup / 1000, orders: trace.orders.length },
  );
  if ((options.nodes?.length ?? 0) > 1) return await runCurve(argv, options, trace, speedup, network);
  try {
    const report = await runScenario(argv, options, phases, trace, speedup, network);
    printSummary(report);
    return report.audit.passed ? 0 : 1;
  } catch (error) {
    process.stderr.write(`sluice bench: the run failed: ${(error as Error).stack ?? String(error)}\n`);
    return 1;
  }
}

function printSummary(report: BenchReport): void {
  const a = report.latency.allocated.overall;
  process.stdout.write(
    [
      `${report.title}: ${report.throughput.ordersPerSecond.toLocaleString("en-US")} orders/s end to end` +
        (report.throughput.ratioToRaw === null ? "" : ` (${report.throughput.ratioToRaw} of raw JetStream)`),
      `accept → allocated p50 ${a.p50Ms} ms, p99 ${a.p99Ms} ms, p99.9 ${a.p999Ms} ms, max ${a.maxMs} ms`,
      report.latency.stockDelta.observed
        ? `accept → stock delta p99 ${report.latency.stockDelta.overall.p99Ms} ms`
        : "accept → stock delta: no stock deltas observed",
      ...(report.sweep === null ? [] : [`sweep: ${report.sweep.note}`]),
      ...(report.cluster === null ? [] : [`processes: ${report.cluster.note}`]),
      `${report.drain.note}`,
      `audit ${report.audit.passed ? "passed" : "FAILED"}; targets: ${report.targets.map((t) => `${t.name} ${t.verdict}`).join(", ")}`,
      `reports: ${join(report.run.reportDir, "report.md")}, report.html, report.json`,
      "",
    ].join("\n"),
  );
}

/**
 * --nodes with several counts: the scenario once per count, back to back, each into nodes-<N>/ of the output
 * directory with its own processes and raw measurement; then the curve (curve.ts) at the top of it. A count
 * whose run breaks is reported as such and the next one runs.
 */
async function runCurve(
  argv: string[],
  options: BenchOptions,
  trace: Trace | null,
  speedup: number,
  network: ReplayNetwork,
): Promise<number> {
  const startedAt = new Date();
  const reportDir = resolve(options.out ?? defaultOutDir());
  mkdirSync(reportDir, { recursive: true });
  const counts = options.nodes as number[];
  const relDir = (nodes: number) => `nodes-${nodes}`;
  const runs: CurveRun[] = [];
  for (const [i, count] of counts.entries()) {
    const o: BenchOptions = { ...options, nodes: [count], out: join(reportDir, relDir(count)) };
    const phases = phasesOf(
      o,
      trace === null ? null : { spanS: trace.spanMs / speedup / 1000, orders: trace.orders.length },
    );
    say(`curve: ${count} node${count === 1 ? "" : "s"} (${i + 1} of ${counts.length})`);
    try {
      const report = await runScenario(argv, o, phases, trace, speedup, network);
      printSummary(report);
      runs.push({ nodes: count, report, reportDir: o.out as string, error: null });
    } catch (error) {
      const message = (error as Error).message ?? String(error);
      process.stderr.write(
        `sluice bench: the ${count}-node run failed: ${(error as Error).stack ?? message}\n`,
      );
      runs.push({
        nodes: count,
        report: null,
        reportDir: o.out as string,
        error: message.split("\n")[0] ?? "",
      });
    }
  }
  const curve = buildCurve({
    options,
    argv,
    startedAt,
    finishedAt: new Date(),
    reportDir,
    machine: machineInfo(),
    versions: versionsInfo(),
    runs,
    relDir,
  });
  writeFileSync(join(reportDir, "report.json"), `${JSON.stringify(curve, null, 2)}\n`);
  writeFileSync(join(reportDir, "report.md"), renderCurveMarkdown(curve));
  writeFileSync(join(reportDir, "report.html"), renderCurveHtml(curve));
  process.stdout.write(
    [
      "",
      curve.title,
      ...curve.points.map((p) =>
        p.error !== null
          ? `${p.nodes} nodes: the run broke: ${p.error}`
          : `${p.nodes} node${p.nodes === 1 ? "" : "s"}: ${p.ordersPerSecond?.toLocaleString("en-US")} orders/s${p.keptUp ? " (kept up)" : ""}, ×${p.speedup ?? "?"}, p50 ${p.allocatedP50Ms} ms, p99 ${p.allocatedP99Ms} ms, ${p.ratioToRaw ?? "?"} of raw JetStream (${p.rawPublishThenConsumePerSecond?.toLocaleString("en-US") ?? "?"} msg/s), ${p.coresPerNodeMean ?? "?"} cores per node, audit ${p.auditPassed ? "passed" : "FAILED"}`,
      ),
      ...curve.notes.map((n) => `note: ${n}`),
      `curve: ${join(reportDir, "report.md")}, report.html, report.json (${curve.wallSeconds} s in all)`,
      "",
    ].join("\n"),
  );
  return curve.passed ? 0 : 1;
}

function defaultOutDir(): string {
  const stamp = new Date()
    .toISOString()
    .replaceAll(":", "")
    .replace(/\.\d+Z$/, "Z");
  return join(process.cwd(), "bench-results", stamp);
}

async function runScenario(
  argv: string[],
  options: BenchOptions,
  phases: Phase[],
  trace: Trace | null,
  speedup: number,
  network: ReplayNetwork,
): Promise<BenchReport> {
  const startedAt = new Date();
  const reportDir = resolve(options.out ?? defaultOutDir());
  mkdirSync(reportDir, { recursive: true });
  // The rule set and stock the run uses, next to its reports: --network and --stock-file replay them again.
  const written = writeNetwork(network, reportDir);
  if (network.source !== "bench" || network.stock !== null)
    say(
      `network: ${network.source}, ${network.sites.length} warehouses${network.stock === null ? "" : `, ${network.stock.length.toLocaleString("en-US")} stock positions (${network.stockSource})`} → ${written.networkFile}`,
    );
  const networkEnv = { SLUICE_ORDERS_NETWORK_FILE: written.networkFile };
  const runId = Date.now().toString(36).slice(-6);
  const expected = trace === null ? expectedOrders(phases) : trace.orders.length;
  const loadSeconds = phases[phases.length - 1]?.endS ?? 0;
  say(
    `${options.scenario}: ~${expected.toLocaleString("en-US")} orders over ${loadSeconds.toFixed(1)} s; reports → ${reportDir}`,
  );
  const plan: LoadPlan = {
    natsUrl: "",
    natsClient: null,
    natsReader: null,
    runId,
    startEpochMs: 0,
    seed: options.seed,
    scenario: options.scenario,
    phases,
    arrivals: options.arrivals,
    channel: options.channel,
    skus: options.skus,
    zipf: options.zipf,
    lines: options.lines,
    hot: options.scenario === "hot-sku" ? { skus: options.hotSkus, share: options.hotShare } : null,
    lifecycle:
      options.scenario === "lifecycle"
        ? {
            backorderPct: options.backorderPct,
            kitPct: options.kitPct,
            cancelPct: options.cancelPct,
            rejectPct: options.rejectPct,
            partialShipPct: options.partialShipPct,
            returnPct: options.returnPct,
          }
        : null,
    trace: trace === null ? null : { path: trace.source, format: trace.format, speedup },
    inFlightPublishesMax: options.inFlightPublishesMax,
  };
  const samplePayloads = sampleOrderPayloads(plan, trace);
  const orderMessageBytesMean = Math.round(
    samplePayloads.reduce((n, p) => n + p.length, 0) / Math.max(1, samplePayloads.length),
  );
  const profileDir = process.env.BENCH_PROFILE ?? null;
  const chaos = options.scenario === "chaos";
  const faultPlan = chaos ? planFaults(options.seed, options.faultKinds, options.faults, loadSeconds) : [];
  let rig: ChaosRig | null = null;
  let cluster: ClusterRig | null = null;
  let sluice: SluiceUnderTest;
  if (chaos) {
    const diskFault = faultPlan.some((f) => f.kind === "disk-full");
    say(
      `starting nats-server and Sluice (data directory on a ${diskFault ? `${options.diskMb} MiB tmpfs` : "temporary directory"}); ${faultPlan.length} faults: ${faultPlan.map((f) => `${f.kind} at ${f.atS} s for ${f.holdS} s`).join(", ")}`,
    );
    rig = new ChaosRig(networkEnv, options.partitions, options.diskMb, diskFault, reportDir);
    if (diskFault && !rig.disk.mounted) say(`disk-full faults will be skipped: ${rig.disk.reason}`);
    try {
      await rig.start();
    } catch (error) {
      await rig.teardown();
      throw error;
    }
    sluice = rig.asSluice();
    plan.publishRetryMs = limits.publishRetryMsMax;
  } else if (options.nodes !== null || options.natsCluster) {
    const count = options.nodes?.[0] ?? null;
    say(
      `starting ${count === null ? "Sluice" : `${count} Sluice node${count === 1 ? "" : "s"} in cluster mode`} on ${options.natsCluster ? `a ${limits.natsClusterServers}-node nats-server cluster (streams with ${limits.natsClusterServers} replicas)` : "a nats-server the harness runs"}`,
    );
    cluster = new ClusterRig(
      {
        nodes: count,
        natsCluster: options.natsCluster,
        partitions: options.partitions,
        workers: options.workers,
        env: networkEnv,
        reportDir,
      },
      say,
    );
    try {
      await cluster.start();
    } catch (error) {
      await cluster.teardown();
      throw error;
    }
    const info = cluster.info();
    if (info.settleS !== null)
      say(`cluster settled ${info.settleS} s after the last node started: ${placementLine(info.placement)}`);
    sluice = cluster.asSluice();
  } else {
    say("starting Sluice on an embedded nats-server");
    sluice = await startSluice({
      SLUICE_STREAMS_PARTITION_COUNT: String(options.partitions),
      ...networkEnv,
      SLUICE_NODE_WORKER_COUNT: String(options.workers),
    });
  }
  const http = new SluiceHttp(sluice.httpPorts ?? [sluice.httpPort]);
  let nc: NatsConnection | null = null;
  let injector: FaultInjector | null = null;
  let readyz: ReadyzWatch | null = null;
  try {
    // On Sluice's locked embedded server the harness is its `admin` (it also measures raw JetStream on streams
    // of its own) and the load generator its `producer`, public inputs only, as a channel would be.
    const harness = benchConnection(sluice.natsClient("admin"), process.env);
    nc = await connectSecured(
      {
        servers: sluice.natsUrl.split(","),
        name: "sluice-bench-harness",
        ...harness.options,
        ...(chaos ? { maxReconnectAttempts: -1, reconnectTimeWait: 250 } : {}),
      },
      harness.security,
      benchSecurityNames,
    );
    plan.natsUrl = sluice.natsUrl;
    plan.natsClient = sluice.natsClient("producer");
    plan.natsReader = sluice.natsClient("reader");
    await cluster?.readStreamReplicas(nc);
    await seedStock(nc, http, options, trace, network);
    let raw: RawJetStream | null = null;
    const rawCount =
      options.rawMessages ??
      Math.min(
        expected,
        options.scenario === "sweep" ? limits.sweepRawMessagesDefault : limits.rawMessagesMax,
      );
    if (rawCount > 0) {
      say(
        `raw JetStream: publish, consume and ack ${rawCount.toLocaleString("en-US")} messages of ~${orderMessageBytesMean} B`,
      );
      const r = await measureRawJetStream(
        nc,
        rawCount,
        options.inFlightPublishesMax,
        options.partitions,
        (i) => samplePayloads[i % samplePayloads.length] as Uint8Array,
        cluster?.replicas ?? 1,
      );
      raw = { messages: rawCount, messageBytes: orderMessageBytesMean, ...r };
    }
    const completions = new CompletionLog();
    const run = await driveLoad(
      nc,
      sluice,
      options,
      plan,
      phases,
      network.sites,
      (startEpochMs, observer) => {
        cluster?.startWatch(startEpochMs);
        if (rig === null) return;
        observer.onCompleted = (n, intendedMs, arrivalMs) => completions.record(n, intendedMs, arrivalMs);
        readyz = new ReadyzWatch(rig);
        injector = new FaultInjector(rig, faultPlan, startEpochMs, say);
      },
    );
    // sweep: the steps after the saturated one never ran; they leave the report.
    if (run.sweepStoppedAfter !== null) phases.length = run.sweepStoppedAfter + 1;
    let chaosReport: ChaosReport | null = null;
    let chaosAudit: Awaited<ReturnType<typeof chaosChecks>> | null = null;
    if (rig !== null) {
      const inj = injector as FaultInjector | null;
      const watch = readyz as ReadyzWatch | null;
      await inj?.stop();
      // Sluice must be up for the audit: a supervisor's restart may still be pending.
      if (!(await rig.waitReady(30_000)))
        run.notes.push("Sluice was not ready 30 s after the drain; the audit asks it anyway");
      await watch?.stop();
      monotoneCpu(run.samples);
      const endMs = epochNowMs();
      const failed = new Set(run.load.failed);
      finishFaults({
        records: inj?.records ?? [],
        rig,
        readyz: watch?.changes ?? [],
        completions,
        samples: run.samples,
        startEpochMs: plan.startEpochMs,
        endMs,
        ratePerSecond: options.rate,
        accepted: (n) => n < run.load.sent && !failed.has(n),
      });
      say("reading the run's outputs back from SLUICE_OUT");
      const outputs = await readOutputs(nc, options.channel, runId);
      // The ATS check compares the last published value: take it from the stream, not from what the observer saw.
      for (const v of outputs.stock.values()) {
        const key = `${options.channel}\u0000${v.sku}`;
        const had = run.observer.stock.get(key);
        if (had === undefined || v.version > had.version)
          run.observer.stock.set(key, {
            ats: v.ats,
            version: v.version,
            atMs: v.atMs,
            channel: options.channel,
          });
      }
      chaosAudit = await chaosChecks({
        httpPort: sluice.httpPort,
        outputs,
        sent: run.load.sent,
        failed,
        finalStatuses: finalStatusesOf(options),
      });
      chaosReport = {
        faults: inj?.records ?? [],
        disk: {
          mounted: rig.disk.mounted,
          dir: rig.dataDir,
          sizeMb: options.diskMb,
          reason: rig.disk.reason,
        },
        natsServer: {
          url: rig.natsUrl,
          restarts: rig.natsRestarts,
          note: "run by the harness (Sluice's config and subject mappings), store outside Sluice's data directory",
        },
        sluice: {
          incarnations: rig.incarnations,
          unexpectedExits: rig.incarnations.filter((i) => i.unexpected).length,
          gaveUp: rig.gaveUp,
          log: rig.logPath,
        },
        outputs: {
          ordersInStream: outputs.byOrder.size,
          statusItems: outputs.statusItems,
          fulfilItems: outputs.fulfilItems,
          republished: chaosAudit.republished,
          storedAlthoughPublishFailed: chaosAudit.storedAlthoughFailed,
        },
        notes: rig.notes,
      };
    }
    await cluster?.stopWatch();
    const audit = await runAudit({
      http,
      partitionCount: options.partitions,
      observer: run.observer,
      sent: run.load.sent,
      failed: new Set(run.load.failed),
      finalStatuses: finalStatusesOf(options),
      hot:
        options.scenario === "hot-sku"
          ? { skus: options.hotSkus, stock: options.hotStock, unitsOffered: run.load.hotUnits }
          : null,
      deadLettersByReason: run.deadLettersByReason,
      deadLetterExamples: run.deadLetterExamples,
      // Stock per warehouse (derived or a file) is what the trace sold, not more than it can order: refusals
      // are then routing's figures (the report's routing section), not findings.
      stockAmple:
        options.scenario !== "hot-sku" && network.stock === null && stockIsAmple(options, expected, trace),
      ...(chaosAudit === null ? {} : { statusOf: chaosAudit.statusOf, extraChecks: chaosAudit.checks }),
    });
    await nc.close();
    nc = null;
    await sluice.stop();
    const cpu = process.cpuUsage();
    const report = buildReport({
      options,
      argv,
      phases,
      runId,
      startEpochMs: plan.startEpochMs,
      startedAt,
      finishedAt: new Date(),
      reportDir,
      machine: machineInfo(),
      versions: versionsInfo(),
      orderMessageBytesMean,
      trace:
        trace === null
          ? null
          : {
              source: trace.source,
              orders: trace.orders.length,
              skipped: trace.skipped,
              spanMs: trace.spanMs,
              speedup,
            },
      load: run.load,
      raw,
      observer: run.observer,
      samples: run.samples,
      audit,
      harnessCpuSeconds: (cpu.user + cpu.system) / 1e6,
      profileDir,
      notes: run.notes,
      chaos: chaosReport,
      sweep: run.sweepJudgements === null ? null : { judgements: run.sweepJudgements },
      cluster: cluster?.info() ?? null,
      network: networkSummary(network, written),
    });
    writeFileSync(join(reportDir, "report.json"), `${JSON.stringify(report, null, 2)}\n`);
    writeFileSync(join(reportDir, "report.md"), renderMarkdown(report));
    writeFileSync(join(reportDir, "report.html"), renderHtml(report));
    return report;
  } finally {
    await (injector as FaultInjector | null)?.stop();
    await (readyz as ReadyzWatch | null)?.stop();
    if (nc !== null) await nc.close().catch(() => {});
    if (rig !== null) await rig.teardown();
    else if (cluster !== null) await cluster.teardown();
    else if (sluice.alive()) await sluice.stop();
  }
}

/**
 * Stock per SKU covers every unit the run can order of its most popular SKU: an order names a SKU at most
 * once, with at most 4 units, and has at most 5 lines (workload.ts), so the top SKU is in at most
 * 5 × P(top) of the orders; × 1.5 for the randomness of a run. A replay counts its trace exactly.
 */
function stockIsAmple(o: BenchOptions, expected: number, trace: Trace | null): boolean {
  if (trace !== null) {
    const units = new Map<string, number>();
    for (const order of trace.orders)
      for (const l of order.lines) units.set(l.sku, (units.get(l.sku) ?? 0) + l.qty);
    return o.stockPerSku >= Math.max(0, ...units.values());
  }
  const top = new ZipfSampler(o.skus, o.zipf).topShare(1 / o.skus);
  return o.stockPerSku >= expected * Math.min(1, 5 * top) * 4 * 1.5;
}

/** The first orders' payloads: the raw measurement uses the same sizes, the report their mean. */
function sampleOrderPayloads(plan: LoadPlan, trace: Trace | null): Uint8Array[] {
  const w = new Workload(
    { ...plan, phases: [{ name: "sample", startS: 0, endS: 1e9, ratePerSecond: 1 }] },
    trace,
  );
  const enc = new TextEncoder();
  const out: Uint8Array[] = [];
  for (let i = 0; i < 256; i++) {
    const o = w.next();
    if (o === null) break;
    out.push(enc.encode(orderPayload(o)));
  }
  return out;
}

/** "sluice-1: ledger.0, order.2 · sluice-2: …": where the partitions run. */
function placementLine(placement: Record<string, string[]>): string {
  return Object.entries(placement)
    .map(([node, ps]) => `${node}: ${ps.join(", ")}`)
    .join(" · ");
}

/**
 * Bulk imports (the router splits them per ledger partition); waits until every partition applied its last.
 * Stock per (warehouse, SKU) when the network has it (replay: derived or --stock-file), else --stock units of
 * every SKU at the network's first warehouse.
 */
async function seedStock(
  nc: NatsConnection,
  http: SluiceHttp,
  o: BenchOptions,
  trace: Trace | null,
  network: ReplayNetwork,
): Promise<void> {
  type Item = { sku: string; type: "received"; warehouse: string; qty: number };
  const items: Item[] = [];
  const skus =
    trace === null
      ? Array.from({ length: o.skus }, (_, i) => catalogueSku(i))
      : [...new Set(trace.orders.flatMap((t) => t.lines.map((l) => l.sku)))];
  if (network.stock !== null) {
    for (const r of network.stock)
      if (r.qty > 0) items.push({ sku: r.sku, type: "received", warehouse: r.warehouse, qty: r.qty });
  } else if (o.stockPerSku > 0) {
    for (const sku of skus) {
      items.push({ sku, type: "received", warehouse: network.firstWarehouse, qty: o.stockPerSku });
      // lifecycle: a warehouse rejection re-routes to the next warehouse, which needs stock too.
      if (o.scenario === "lifecycle")
        items.push({ sku, type: "received", warehouse: "w2", qty: o.stockPerSku });
    }
  }
  if (o.scenario === "hot-sku" && o.hotStock > 0) {
    for (let i = 0; i < o.hotSkus; i++)
      items.push({ sku: hotSku(i), type: "received", warehouse: "w1", qty: o.hotStock });
  }
  if (items.length === 0) return;
  say(`seeding ${items.length.toLocaleString("en-US")} stock positions`);
  const js = jetstream(nc, { timeout: limits.publishAckWaitMs });
  const h = headers();
  h.set("Content-Type", "application/json");
  const enc = new TextEncoder();
  const lastPerPartition = new Map<number, string>();
  for (let start = 0; start < items.length; start += limits.seedItemsPerMessage) {
    const chunk = items.slice(start, start + limits.seedItemsPerMessage);
    for (const it of chunk) lastPerPartition.set(skuPartition(it.sku, o.partitions), it.sku);
    await js.publish(
      subjects.importPublic(`bench-seed-${start}`),
      enc.encode(JSON.stringify({ items: chunk })),
      {
        headers: h,
      },
    );
  }
  // A partition applies its envelopes in order: once its last SKU exists, all of its SKUs do.
  for (const sku of lastPerPartition.values()) {
    await waitUntil(
      async () => (await http.get(`/v1/stock/${encodeURIComponent(sku)}`)).status === 200,
      limits.seedWaitMs,
      `seed stock (${sku})`,
    );
  }
}

type LoadRun = {
  load: LoadDone;
  observer: Observer;
  samples: Sample[];
  deadLettersByReason: Record<string, number>;
  deadLetterExamples: string[];
  notes: string[];
  /** sweep: each step's judgement (null: not judged), and the saturated step's index when it stopped. */
  sweepJudgements: (StepJudgement | null)[] | null;
  sweepStoppedAfter: number | null;
};

async function driveLoad(
  nc: NatsConnection,
  sluice: SluiceUnderTest,
  options: BenchOptions,
  plan: LoadPlan,
  phases: Phase[],
  sites: readonly WarehouseSite[],
  onStart: (startEpochMs: number, observer: Observer) => void = () => {},
): Promise<LoadRun> {
  const notes: string[] = [];
  const child = Bun.spawn(["bun", join(import.meta.dir, "loadgen.ts"), JSON.stringify(plan)], {
    cwd: repoRoot,
    stdin: "pipe",
    stdout: "pipe",
    stderr: "inherit",
  });
  let lastTick: LoadTick | null = null;
  let done: LoadDone | null = null;
  let ready!: () => void;
  const readyP = new Promise<void>((r) => {
    ready = r;
  });
  const reading = (async () => {
    const dec = new TextDecoder();
    let buffer = "";
    for await (const chunk of child.stdout) {
      buffer += dec.decode(chunk, { stream: true });
      let nl = buffer.indexOf("\n");
      while (nl >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        nl = buffer.indexOf("\n");
        if (line.trim() === "") continue;
        const m = JSON.parse(line) as { type: string };
        if (m.type === "ready") ready();
        else if (m.type === "tick") lastTick = m as LoadTick;
        else if (m.type === "done") done = m as LoadDone;
      }
    }
  })();
  await Promise.race([
    readyP,
    child.exited.then((code) => {
      throw new Error(`the load generator exited with ${code} before it was ready`);
    }),
  ]);
  const startEpochMs = Math.ceil(epochNowMs()) + 200; // a moment for the start line to arrive
  plan.startEpochMs = startEpochMs;
  const observer = new Observer(
    options.channel,
    plan.runId,
    phases,
    startEpochMs,
    finalStatusesOf(options),
    sites,
  );
  const sub = nc.subscribe(subjects.outAll, {
    callback: (_error, msg) => observer.onMessage(msg.subject, msg.data, epochNowMs()),
  });
  // Dead letters of the run, with Sluice's reason and detail (the audit lists the first ones).
  const deadLetterExamples: string[] = [];
  const dlq = nc.subscribe(subjects.dlqAll, {
    callback: (_error, msg) => {
      if (deadLetterExamples.length >= limits.examplesMax) return;
      const h = msg.headers;
      deadLetterExamples.push(
        `${h?.get("Sluice-Reason") ?? msg.subject}: ${h?.get("Sluice-Detail") ?? ""} (${h?.get("Sluice-Source-Subject") ?? "?"})`,
      );
    },
  });
  await nc.flush();
  const baseline = await takeSample(
    -1,
    { sluice: sluice.pid, nats: sluice.natsPid, loadgen: null, processes: sluice.processes?.() },
    () => sluice.metricsText(limits.scrapeTimeoutMs),
    null,
  );
  onStart(startEpochMs, observer);
  child.stdin.write(`${JSON.stringify({ startEpochMs })}\n`);
  await child.stdin.flush();
  const sweep = options.scenario === "sweep" ? new SweepMonitor(phases, options) : null;
  // sweep keeps the loadgen's stdin open, to tell it to stop at the first saturated step.
  const sweepRun =
    sweep?.run(startEpochMs, observer, async (atUs) => {
      child.stdin.write(`${JSON.stringify({ stopAtUs: atUs })}\n`);
      await child.stdin.flush();
    }) ?? null;
  if (sweep === null) await child.stdin.end();

  const samples: Sample[] = [];
  const progress = new Progress(options.quiet, phases);
  let sampling = true;
  const sampler = (async () => {
    let prev: Sample | null = baseline;
    while (sampling) {
      const due = startEpochMs + (samples.length + 1) * limits.sampleIntervalMs;
      await Bun.sleep(Math.max(0, due - epochNowMs()));
      const tS = (epochNowMs() - startEpochMs) / 1000;
      observer.roll(epochNowMs());
      prev = await takeSample(
        tS,
        { sluice: sluice.pid, nats: sluice.natsPid, loadgen: child.pid, processes: sluice.processes?.() },
        () => sluice.metricsText(limits.scrapeTimeoutMs),
        prev,
      );
      samples.push(prev);
      progress.show(tS, lastTick, observer, prev);
    }
  })();

  const loadgenWaitMs =
    (phases[phases.length - 1]?.endS ?? 0) * 1000 + limits.followUpWaitMs + limits.publishAckWaitMs + 30_000;
  const exit = await Promise.race([child.exited, Bun.sleep(loadgenWaitMs).then(() => null)]);
  if (sweep !== null) {
    // The loadgen is gone; its stdin may be closed already.
    await Promise.resolve(child.stdin.end()).catch(() => {});
    if (exit !== 0) sweep.cancel();
  }
  if (exit === null) {
    child.kill("SIGKILL");
    throw new Error(`the load generator did not finish within ${loadgenWaitMs} ms`);
  }
  await reading;
  const load = done as LoadDone | null;
  if (exit !== 0 || load === null)
    throw new Error(`the load generator exited with ${exit} without its report`);
  if (load.reactionsAwaited > 0)
    notes.push(
      `the load generator stopped waiting with ${load.reactionsAwaited} lifecycle reactions outstanding`,
    );

  // Drain: every accepted order in a final state, or the wait runs out.
  const accepted = load.accepted;
  const drainDeadline = epochNowMs() + options.drainWaitS * 1000;
  while (observer.finalCount < accepted && epochNowMs() < drainDeadline && sluice.alive())
    await Bun.sleep(50);
  if (observer.finalCount < accepted)
    notes.push(
      `after ${options.drainWaitS} s of drain wait, ${accepted - observer.finalCount} accepted orders were not final in what the observer saw`,
    );
  // Stock deltas may trail the last status by a flush interval: wait until none arrived for a while.
  const quietDeadline = epochNowMs() + limits.stockQuietWaitMsMax;
  let deltas = observer.stockDeltaItems;
  let quietSince = epochNowMs();
  while (epochNowMs() < quietDeadline && epochNowMs() - quietSince < limits.stockQuietMs) {
    await Bun.sleep(100);
    if (observer.stockDeltaItems !== deltas) {
      deltas = observer.stockDeltaItems;
      quietSince = epochNowMs();
    }
  }
  // sweep: the last step is judged settle-s − 0.5 s after its end, maybe after the drain.
  await sweepRun;
  if (sweep?.stoppedAfter != null)
    notes.push(
      `sweep: stopped after step ${sweep.stoppedAfter + 1} (${phases[sweep.stoppedAfter]?.name}), saturated`,
    );
  sampling = false;
  await sampler;
  progress.end();
  const final = await takeSample(
    (epochNowMs() - startEpochMs) / 1000,
    { sluice: sluice.pid, nats: sluice.natsPid, loadgen: null, processes: sluice.processes?.() },
    () => sluice.metricsText(limits.ledgerCheckTimeoutMs),
    samples[samples.length - 1] ?? baseline,
  );
  samples.push(final);
  observer.finish(epochNowMs());
  sub.unsubscribe();
  dlq.unsubscribe();
  const deadLettersByReason: Record<string, number> = {};
  for (const [reason, count] of Object.entries(final.deadLettersByReason)) {
    const d = count - (baseline.deadLettersByReason[reason] ?? 0);
    if (d > 0) deadLettersByReason[reason] = d;
  }
  if (observer.undecodable > 0) notes.push(`${observer.undecodable} output messages were not JSON`);
  return {
    load,
    observer,
    samples,
    deadLettersByReason,
    deadLetterExamples,
    notes,
    sweepJudgements: sweep?.judgements ?? null,
    sweepStoppedAfter: sweep?.stoppedAfter ?? null,
  };
}

/**
 * sweep: judges each step settle-s − 0.5 s after it ends, from what the observer has seen of the step's
 * orders by then (sweep.ts, judgeStep); at the first saturated step, asks the loadgen to offer nothing
 * intended from the next step's start on.
 */
class SweepMonitor {
  readonly judgements: (StepJudgement | null)[];
  stoppedAfter: number | null = null;
  private cancelled = false;

  constructor(
    private readonly phases: Phase[],
    private readonly options: BenchOptions,
  ) {
    this.judgements = phases.map(() => null);
  }

  cancel(): void {
    this.cancelled = true;
  }

  async run(startEpochMs: number, observer: Observer, stop: (atUs: number) => Promise<void>): Promise<void> {
    const afterS = judgeAfterS(this.options.settleS);
    for (let i = 0; i < this.phases.length; i++) {
      const p = this.phases[i] as Phase;
      const atMs = startEpochMs + (p.endS + afterS) * 1000;
      while (!this.cancelled && epochNowMs() < atMs) await Bun.sleep(Math.min(100, atMs - epochNowMs()));
      if (this.cancelled) return;
      const h = observer.histogram("allocated").phases[i];
      const j = judgeStep(
        {
          ratePerSecond: p.ratePerSecond,
          stepS: p.endS - p.startS,
          completedByJudge: h?.count ?? 0,
          p99MsAtJudge: (h?.quantileUs(0.99) ?? 0) / 1000,
        },
        { ratio: this.options.saturationRatio, p99MsMax: this.options.saturationP99Ms },
      );
      this.judgements[i] = j;
      if (!this.options.quiet)
        say(
          `step ${i + 1} (${p.name}): ${j.completedByJudge.toLocaleString("en-US")} of its orders completed, p99 ${j.p99MsAtJudge} ms: ${j.saturated ? `SATURATED (${j.reason})` : "kept up"}`,
        );
      if (j.saturated) {
        const next = this.phases[i + 1];
        if (next !== undefined) {
          this.stoppedAfter = i;
          await stop(Math.round(next.startS * 1e6)).catch(() => {});
        }
        return;
      }
    }
  }
}

/** The live line: elapsed, phase, offered and accepted rate, completions, lag, p99 so far. */
class Progress {
  private prevTick: LoadTick | null = null;
  private tick: LoadTick | null = null;
  private tickAtS = 0;
  private prevCompleted = { tS: 0, completed: 0 };
  private printedAtS = Number.NEGATIVE_INFINITY;
  private readonly tty = process.stderr.isTTY === true;

  constructor(
    private readonly quiet: boolean,
    private readonly phases: Phase[],
  ) {}

  show(tS: number, tick: LoadTick | null, observer: Observer, sample: Sample): void {
    if (this.quiet) return;
    // Rates from the loadgen's own ticks (their clock), completions from the observer's.
    if (tick !== null && tick !== this.tick) {
      this.prevTick = this.tick;
      this.tick = tick;
      this.tickAtS = tS;
    }
    // The loadgen has finished (no tick for a while): it offers nothing any more.
    if (tS - this.tickAtS > 2 * (limits.reportIntervalMs / 1000)) this.prevTick = this.tick;
    const a = this.prevTick;
    const b = this.tick;
    const dt = a !== null && b !== null ? Math.max(0.001, b.elapsedS - a.elapsedS) : 1;
    const rate = (pick: (t: LoadTick) => number) =>
      b === null
        ? "0"
        : a === null
          ? Math.round(pick(b) / Math.max(0.001, b.elapsedS)).toLocaleString("en-US")
          : Math.round((pick(b) - pick(a)) / dt).toLocaleString("en-US");
    const completedRate = Math.round(
      (observer.completed - this.prevCompleted.completed) / Math.max(0.001, tS - this.prevCompleted.tS),
    );
    this.prevCompleted = { tS, completed: observer.completed };
    const endS = this.phases[this.phases.length - 1]?.endS ?? 0;
    const phase = tS < endS ? (this.phases[phaseIndexAt(this.phases, tS)]?.name ?? "") : "drain";
    const lag = sample.scraped ? (sample.lag.order + sample.lag.ledger).toLocaleString("en-US") : "?";
    const p99 = observer.histogram("allocated").overall.quantileUs(0.99) / 1000;
    const line =
      `${tS.toFixed(0).padStart(4)}s ${phase.padEnd(9)} offered ${rate((t) => t.offered).padStart(6)}/s` +
      `  accepted ${rate((t) => t.accepted).padStart(6)}/s  completed ${completedRate.toLocaleString("en-US").padStart(6)}/s` +
      `  lag ${lag.padStart(7)}  p99 so far ${p99.toFixed(0).padStart(5)} ms  behind ${(b?.behindMs ?? 0).toLocaleString("en-US")} ms`;
    if (this.tty) process.stderr.write(`\r${line}`);
    else if (tS - this.printedAtS >= 5) {
      process.stderr.write(`${line}\n`);
      this.printedAtS = tS;
    }
  }

  end(): void {
    if (!this.quiet && this.tty) process.stderr.write("\n");
  }
}

if (import.meta.main) {
  process.exit(await runBench(process.argv.slice(2)));
}
