// The Markdown summary of a report: the verdict first, then the figures a person reads (docs/bench.md).
import type { LatencySummary } from "./histogram.ts";
import { latencyKinds } from "./observe.ts";
import {
  type BenchReport,
  faultCells,
  faultColumns,
  formatBytes,
  formatCount,
  formatMib,
  networkLine,
  phaseCells,
  phaseColumns,
  resourceColumns,
  resourceRows,
  routingTables,
  rssNote,
} from "./report-json.ts";
import { type SweepReport, sweepCells, sweepColumns } from "./sweep.ts";

const n = formatCount;
const mib = formatMib;
const verdictMark = {
  met: "✅ met",
  missed: "❌ missed",
  "not measured": "— not measured",
  "not applicable": "· n/a",
};

function table(header: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) =>
    `| ${cells.map((c) => String(c).replaceAll("|", "\\|")).join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}

function latencyRow(name: string, s: LatencySummary): (string | number)[] {
  return [name, n(s.count), s.p50Ms, s.p90Ms, s.p99Ms, s.p999Ms, s.maxMs];
}

export function renderMarkdown(r: BenchReport): string {
  const out: string[] = [];
  const audit = r.audit.passed ? "passed" : "FAILED";
  out.push(`# Sluice bench: ${r.title}`);
  out.push("");
  out.push(
    `${r.startedAt} · ${r.machine.cpus} × ${r.machine.cpuModel}, ${mib(r.machine.memoryBytes)} · Sluice ${r.versions.sluice}` +
      ` (${r.versions.git.commit?.slice(0, 12) ?? "no git"}${r.versions.git.dirty ? ", uncommitted changes" : ""}) · Bun ${r.versions.bun}` +
      ` · nats-server ${r.versions.natsServer} · seed ${r.options.seed} · ${r.options.partitions} partitions` +
      ` · ${setupLine(r)}`,
  );
  out.push("");
  out.push("## Verdict");
  out.push("");
  const raw =
    r.raw === null
      ? "raw JetStream not measured"
      : `**${r.throughput.ratioToRaw ?? "?"}** of this machine's raw JetStream publish-then-consume rate (${n(r.raw.publishThenConsumePerSecond)} msg/s)`;
  out.push(
    `- **${n(r.throughput.ordersPerSecond)} orders/s** end to end during ${r.throughput.phase} (best ${r.throughput.sustainedWindowS} s of the run: ${n(r.throughput.sustainedPeakPerSecond)}/s), ${raw}. ${r.throughput.note}.`,
  );
  const a = r.latency.allocated.overall;
  out.push(
    `- accept → allocated p50 ${a.p50Ms} ms, p99 ${a.p99Ms} ms, p99.9 ${a.p999Ms} ms, max ${a.maxMs} ms.`,
  );
  out.push(
    r.latency.stockDelta.observed
      ? `- accept → stock delta p99 ${r.latency.stockDelta.overall.p99Ms} ms, p99.9 ${r.latency.stockDelta.overall.p999Ms} ms.`
      : `- accept → stock delta: ${r.latency.stockDelta.note}.`,
  );
  out.push(`- ${r.drain.note}.`);
  if (r.burst !== null) out.push(`- burst: ${r.burst.note}.`);
  const sluice = r.resources.sluice;
  const nodes = (r.resources.processes ?? []).filter((p) => p.role === "sluice");
  out.push(
    `- Sluice memory${nodes.length > 1 ? `, all ${nodes.length} nodes together` : ""}: anonymous RSS ${mib(sluice.rssAnonBytesMax)} max (budget ${formatBytes(r.resources.sluiceRssAnonBudgetBytes)}${nodes.length > 1 ? " per process" : ""}); RSS ${mib(sluice.rssBytesMax)} max, of which file-backed ${mib(sluice.rssFileBytesMax)} max: pages of the LMDB maps and Bun's executable, reclaimable page cache, shown separately.`,
  );
  if (r.cluster !== null) out.push(`- processes: ${r.cluster.note}.`);
  out.push(
    `- audit ${audit}; offered ${n(r.load.offered)}, accepted ${n(r.load.accepted)}, ${n(r.load.errors)} publish errors, loadgen at most ${n(r.load.behindMsMax)} ms behind its schedule.`,
  );
  out.push("");
  out.push(
    table(
      ["target", "goal", "measured", "verdict", "note"],
      r.targets.map((t) => [t.name, t.target, t.measured, verdictMark[t.verdict], t.note]),
    ),
  );
  out.push("");
  out.push("## Load");
  out.push("");
  out.push(
    table(
      [...phaseColumns, "CPU cores Sluice / nats / loadgen"],
      r.phases.map((p) => [
        ...phaseCells(p),
        p.cpuCores === null ? "" : `${p.cpuCores.sluice} / ${p.cpuCores.nats} / ${p.cpuCores.loadgen}`,
      ]),
    ),
  );
  out.push("");
  const lines = Object.entries(r.workload.linesPerOrder)
    .map(([k, v]) => `${k}: ${n(v)}`)
    .join(", ");
  out.push(
    `Orders by line count: ${lines}; ${n(r.workload.unitsOffered)} units; mean order message ${n(r.workload.orderMessageBytesMean)} B; SKU popularity: ${r.workload.skuPopularity}.`,
  );
  if (r.load.followUps !== null) {
    const f = r.load.followUps;
    out.push("");
    out.push(
      `Lifecycle follow-ups (sent / accepted): cancels ${f.cancel.sent} / ${f.cancel.accepted}, warehouse rejections ${f.rejected.sent} / ${f.rejected.accepted}, shipments ${f.shipped.sent} / ${f.shipped.accepted}, partial returns ${f.returned.sent} / ${f.returned.accepted}, backorder receipts ${f.restock.sent} / ${f.restock.accepted}; reactions still awaited at the end: ${r.load.reactionsAwaited}.`,
    );
    const b = r.load.backorders;
    if (b !== undefined && b !== null && b.waited > 0) {
      out.push("");
      out.push(
        `Backorders: ${n(b.waited)} orders backordered, ${n(b.filled)} filled from the waiting list when their unit arrived; backordered → allocated p50 ${b.fillMs.p50Ms.toFixed(0)} ms, p99 ${b.fillMs.p99Ms.toFixed(0)} ms (the receipt comes 1–1.5 s after the order).`,
      );
    }
  }
  out.push("");
  if (r.routing !== undefined) out.push(...routingSection(r.routing), "");
  if (r.chaos !== null) out.push(...chaosSection(r.chaos), "");
  if (r.sweep !== null) out.push(...sweepSection(r.sweep), "");
  out.push("## Latency (ms, from the intended send time)");
  for (const kind of latencyKinds) {
    const l = r.latency[kind];
    out.push("");
    out.push(`**${l.label}**: ${l.description}.`);
    out.push("");
    if (!l.observed) {
      out.push(`_${l.note}._`);
      continue;
    }
    out.push(
      table(
        ["phase", "count", "p50", "p90", "p99", "p99.9", "max"],
        [latencyRow("all", l.overall), ...Object.entries(l.phases).map(([name, s]) => latencyRow(name, s))],
      ),
    );
  }
  out.push("");
  out.push("## Limit of this machine (same run)");
  out.push("");
  if (r.raw === null) out.push("_Raw JetStream measurement skipped (--raw-messages 0)._");
  else
    out.push(
      `${n(r.raw.messages)} messages of ${n(r.raw.messageBytes)} B, no processing: publish ${n(r.raw.publishPerSecond)}/s, consume + ack ${n(r.raw.consumeAckPerSecond)}/s, publish then consume ${n(r.raw.publishThenConsumePerSecond)}/s. Sluice: ${n(r.throughput.ordersPerSecond)} orders/s = ${r.throughput.ratioToRaw ?? "?"} of it (an order crosses JetStream three times: order, ledger request, ledger answer).`,
    );
  out.push("");
  if (r.cluster !== null) out.push(...clusterSection(r), "");
  out.push("## Lag, CPU, memory");
  out.push("");
  out.push(
    `Consumer lag peaked at ${n(r.lag.maxMessages)} messages at ${r.lag.maxAtS} s (order ${n(r.lag.byStageMax.order)}, ledger ${n(r.lag.byStageMax.ledger)}).`,
  );
  out.push("");
  const res = r.resources;
  out.push(table(resourceColumns, resourceRows(res)));
  out.push("");
  out.push(`CPU over ${res.windowS} s from the start of the load to the end of the drain. ${rssNote}`);
  out.push("");
  out.push("## Where the time goes");
  out.push("");
  out.push("The accept → allocated latency cut at the stream timestamps the status items carry (ms):");
  out.push("");
  const phaseNames = r.phases.map((p) => p.name);
  out.push(
    table(
      ["hop", "what", ...phaseNames.flatMap((p) => [`${p} p50`, `${p} p99`])],
      Object.values(r.hops).map((h) => [
        h.label,
        h.description,
        ...phaseNames.flatMap((p) => [h.phases[p]?.p50Ms ?? "", h.phases[p]?.p99Ms ?? ""]),
      ]),
    ),
  );
  out.push("");
  for (const f of r.where.findings) out.push(`- ${f}`);
  if (r.where.profile !== null) out.push(`- CPU profile of Sluice: ${r.where.profile}`);
  out.push("");
  out.push("## Audit");
  out.push("");
  out.push(
    table(
      ["check", "result", "detail"],
      r.audit.checks.map((c) => [
        c.name,
        c.passed === null ? "— not checked" : c.passed ? "✅ passed" : "❌ FAILED",
        c.detail,
      ]),
    ),
  );
  const examples = r.audit.checks.filter((c) => (c.examples?.length ?? 0) > 0 && c.passed === false);
  for (const c of examples) {
    out.push("");
    out.push(`${c.name}, examples:`);
    for (const e of c.examples ?? []) out.push(`- \`${e}\``);
  }
  if (r.audit.hot.length > 0) {
    out.push("");
    out.push(
      table(
        ["hot SKU", "stock", "units ordered", "reserved", "onHand", "allocated in statuses"],
        r.audit.hot.map((h) => [
          h.sku,
          n(h.stock),
          n(h.unitsOffered),
          n(h.reserved),
          n(h.onHand),
          n(h.allocatedObserved),
        ]),
      ),
    );
  }
  out.push("");
  out.push(
    `Orders by last status: ${Object.entries(r.audit.statuses)
      .map(([k, v]) => `${k} ${n(v)}`)
      .join(", ")}.`,
  );
  if (r.notes.length > 0) {
    out.push("");
    out.push("## Notes");
    out.push("");
    for (const note of r.notes) out.push(`- ${note}`);
  }
  out.push("");
  out.push(
    `Command: \`${["bun run bench", ...r.command].join(" ")}\` · every figure: report.json · charts: report.html`,
  );
  return `${out.join("\n")}\n`;
}

/** What ran: one Sluice on its embedded nats-server, or the nodes and nats-servers of --nodes / --nats-cluster. */
export function setupLine(r: BenchReport): string {
  const c = r.cluster;
  if (c === null) return "one Sluice process, embedded nats-server";
  const sluice = c.clusterMode
    ? `${c.nodes} Sluice node${c.nodes === 1 ? "" : "s"} (cluster mode)`
    : "one Sluice process";
  const nats = c.nats.cluster
    ? `${c.nats.servers}-node NATS cluster, streams R${c.nats.replicas}`
    : "one nats-server";
  return `${sluice}, ${nats}`;
}

function clusterSection(r: BenchReport): string[] {
  const c = r.cluster as NonNullable<BenchReport["cluster"]>;
  const procs = r.resources.processes ?? [];
  const peak = r.throughput.phase;
  const out = ["## Nodes and nats-servers", "", `${c.note}.`, ""];
  out.push(
    `The harness ran nats-server itself (${c.nats.url}) and Sluice against it; the last Sluice process was started ${c.startS} s after the first nats-server${c.settleS === null ? "" : `, every partition ran where the assignment puts it ${c.settleS} s after the last node's start`}. Per process (CPU in cores, mean during ${peak} and over the run; memory peaks):`,
  );
  out.push("");
  out.push(
    table(
      [
        "process",
        "partitions",
        `cores during ${peak}`,
        "cores mean (run)",
        "CPU s",
        "RSS max",
        "anon RSS max",
        "file-backed RSS max",
      ],
      procs.map((p) => [
        p.name,
        p.role === "sluice" ? (c.placement[p.name]?.join(", ") ?? "all") : "",
        p.peakPhaseCores ?? "",
        p.cpuCoresMean,
        p.cpuSeconds,
        mib(p.rssBytesMax),
        mib(p.rssAnonBytesMax),
        mib(p.rssFileBytesMax),
      ]),
    ),
  );
  if (c.moves.length > 0) {
    out.push("");
    out.push("Partitions that changed owner during the run (GET /v1/cluster, read each second):");
    for (const m of c.moves.slice(0, 50)) out.push(`- ${m.atS} s: ${m.partition} ${m.from} → ${m.to}`);
  }
  const replicas = Object.entries(c.streamReplicas ?? {});
  if (replicas.length > 0) {
    out.push("");
    out.push(
      `Streams and replicas (JetStream, after the start): ${replicas.map(([n, r]) => `${n} R${r}`).join(", ")}.`,
    );
  }
  out.push("");
  out.push(`Logs (level warn): ${c.logs.join(", ")}.`);
  for (const note of c.notes) out.push("", `- ${note}`);
  return out;
}

function routingSection(routing: NonNullable<BenchReport["routing"]>): string[] {
  const out = ["## Routing", "", `${routing.note}.`];
  if (routing.network !== null) out.push("", `Network: ${networkLine(routing.network)}.`);
  for (const t of routingTables(routing)) {
    if (t.rows.length === 0) continue;
    out.push("", `${t.title}:`, "", table(t.header, t.rows));
  }
  return out;
}

export function sweepSection(w: SweepReport): string[] {
  return [
    "## Sweep: the latency-throughput curve",
    "",
    `**${w.note}.**`,
    "",
    `Steps of ${w.stepS} s with ${w.settleS} s of no load after each, single-line orders; each judged ${w.judgedAfterS} s after its end: saturated when its orders completed by then, per second of step, are < ${w.rule.completedRatioMin * 100} % of the offered rate, or their accept → allocated p99 > ${w.rule.p99MsMax} ms. Latencies (ms, from the intended send time) are of the step's orders, the drain included; CPU-ms per order is Sluice's CPU over the step and its settle gap ÷ the orders completed in that window; × raw JetStream is completed /s ÷ ${w.rawPublishThenConsumePerSecond === null ? "(not measured)" : `${n(w.rawPublishThenConsumePerSecond)} msg/s`} publish-then-consume measured in the same run. --workers ${w.workers} (Sluice's node.workerCount; −1: automatic).`,
    "",
    table(sweepColumns, w.steps.map(sweepCells)),
  ];
}

function chaosSection(c: NonNullable<BenchReport["chaos"]>): string[] {
  const out: string[] = [];
  out.push("## Faults");
  out.push("");
  out.push(
    `Sluice's data directory: ${c.disk.mounted || c.disk.reason === null ? `a ${c.disk.sizeMb} MiB tmpfs` : `a plain directory (${c.disk.reason})`}. nats-server: ${c.natsServer.note}; restarted ${c.natsServer.restarts} times. Sluice: ${c.sluice.incarnations.length} processes, ${c.sluice.unexpectedExits} unexpected exits${c.sluice.gaveUp ? ", the harness gave up restarting it" : ""}; its log: ${c.sluice.log}.`,
  );
  out.push("");
  out.push(
    "Recovery times run from the moment the harness lifted the fault (restart spawned, SIGCONT sent, ballast removed) to: the first /readyz 200, the first completion, the first lag sample back at most the threshold, the last completion of the orders intended before the lift; *recovered* is the latest of them. *not recovered*: not before the next fault or the end of the run.",
  );
  out.push("");
  out.push(table(faultColumns, c.faults.map(faultCells)));
  for (const f of c.faults) {
    if (f.sluiceSaid.length === 0) continue;
    out.push("");
    out.push(`Fault ${f.index + 1} (${f.kind}), what Sluice logged at warn and error until the next fault:`);
    for (const line of f.sluiceSaid) out.push(`- \`${line.replaceAll("`", "'")}\``);
  }
  if (c.outputs !== null) {
    out.push("");
    out.push(
      `Read back from SLUICE_OUT: ${n(c.outputs.ordersInStream)} orders, ${n(c.outputs.statusItems)} status items, ${n(c.outputs.fulfilItems)} fulfilment items, ${n(c.outputs.republished)} re-published unchanged; ${n(c.outputs.storedAlthoughPublishFailed)} orders stored although their publish failed at the producer.`,
    );
  }
  for (const note of c.notes) out.push("", `- ${note}`);
  return out;
}
