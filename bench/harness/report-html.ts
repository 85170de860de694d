// The HTML report: one self-contained page (inline CSS, inline script, the report's JSON inline), charts
// drawn as SVG by html/charts.js in the browser. Opens offline; nothing is fetched.
import { readFileSync } from "node:fs";
import { join } from "node:path";
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
import { setupLine } from "./report-md.ts";
import { sweepCells, sweepColumns } from "./sweep.ts";

const chartsScript = () => readFileSync(join(import.meta.dir, "html", "charts.js"), "utf8");

export const chartIds = ["throughput", "latency", "phases", "lag", "cpu", "memory"] as const;

/** The sweep's curve: drawn only in a sweep's report. */
export const sweepChartId = "sweep";
const sweepChartTitle =
  "Latency against offered rate: one point per sweep step (accept → allocated and → stock delta)";

const chartTitles: Record<(typeof chartIds)[number], string> = {
  throughput: "Throughput per second: offered, accepted (JetStream acks), completed, fulfilment requests",
  latency: "Latency per second of arrival, from the intended send time",
  phases: "Latency percentiles per phase",
  lag: "Consumer lag (sluice_partition_lag_messages, sampled each second)",
  cpu: "CPU per process",
  memory: "Resident memory: RSS, Sluice's anonymous and file-backed (LMDB maps) parts",
};

const esc = (s: unknown) =>
  String(s)
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;");
const n = formatCount;

function table(header: string[], rows: unknown[][]): string {
  return `<table><thead><tr>${header.map((h) => `<th>${esc(h)}</th>`).join("")}</tr></thead><tbody>${rows
    .map((r) => `<tr>${r.map((c) => `<td>${esc(c)}</td>`).join("")}</tr>`)
    .join("")}</tbody></table>`;
}

/** JSON safe inside <script>: no "</script>", no "<!--". */
function inlineJson(value: unknown): string {
  return JSON.stringify(value)
    .replaceAll("<", "\\u003c")
    .replaceAll("\u2028", "\\u2028")
    .replaceAll("\u2029", "\\u2029");
}

/** --nodes / --nats-cluster: the processes, where the partitions ran, moves during the run. */
function clusterHtml(r: BenchReport): string {
  const c = r.cluster as NonNullable<BenchReport["cluster"]>;
  const peak = r.throughput.phase;
  const rows = (r.resources.processes ?? []).map((p) => [
    p.name,
    p.role === "sluice" ? (c.placement[p.name]?.join(", ") ?? "all") : "",
    p.peakPhaseCores ?? "",
    p.cpuCoresMean,
    p.cpuSeconds,
    formatMib(p.rssBytesMax),
    formatMib(p.rssAnonBytesMax),
    formatMib(p.rssFileBytesMax),
  ]);
  const moves =
    c.moves.length === 0
      ? ""
      : `<p>Partitions that changed owner during the run:</p><ul>${c.moves
          .slice(0, 50)
          .map((m) => `<li>${m.atS} s: ${esc(m.partition)} ${esc(m.from)} → ${esc(m.to)}</li>`)
          .join("")}</ul>`;
  return `<h2>Nodes and nats-servers</h2><p>${esc(c.note)}.</p><p class="muted">The last Sluice process was started ${c.startS} s after the first nats-server${c.settleS === null ? "" : `; every partition ran where the assignment puts it ${c.settleS} s after the last node's start`}. Logs: ${esc(c.logs.join(", "))}.</p>${table(
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
    rows,
  )}${moves}${c.notes.length === 0 ? "" : `<ul>${c.notes.map((n) => `<li>${esc(n)}</li>`).join("")}</ul>`}`;
}

/** Splits, shipments per order, refusals, requests per warehouse and their distances; the network used. */
function routingHtml(routing: NonNullable<BenchReport["routing"]>): string {
  const tables = routingTables(routing)
    .filter((t) => t.rows.length > 0)
    .map((t) => `<h3>${esc(t.title)}</h3>${table(t.header, t.rows)}`)
    .join("");
  const network =
    routing.network === null ? "" : `<p class="muted">Network: ${esc(networkLine(routing.network))}.</p>`;
  return `<h2>Routing</h2><p>${esc(routing.note)}.</p>${network}${tables}`;
}

export function renderHtml(r: BenchReport): string {
  const verdicts = table(
    ["target", "goal", "measured", "verdict", "note"],
    r.targets.map((t) => [t.name, t.target, t.measured, t.verdict, t.note]),
  );
  const latency = latencyKinds
    .map((kind) => {
      const l = r.latency[kind];
      if (!l.observed) return `<h3>${esc(l.label)}</h3><p class="muted">${esc(l.note)}</p>`;
      const rows = [["all", l.overall] as const, ...Object.entries(l.phases)].map(([name, s]) => [
        name,
        n(s.count),
        s.p50Ms,
        s.p90Ms,
        s.p99Ms,
        s.p999Ms,
        s.maxMs,
      ]);
      return `<h3>${esc(l.label)}</h3><p class="muted">${esc(l.description)}</p>${table(["phase", "count", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"], rows)}`;
    })
    .join("");
  const audit = table(
    ["check", "result", "detail"],
    r.audit.checks.map((c) => [
      c.name,
      c.passed === null ? "not checked" : c.passed ? "passed" : "FAILED",
      c.detail,
    ]),
  );
  const raw =
    r.raw === null
      ? "raw JetStream not measured"
      : `${n(r.raw.publishThenConsumePerSecond)} msg/s raw JetStream publish-then-consume (publish ${n(r.raw.publishPerSecond)}/s, consume + ack ${n(r.raw.consumeAckPerSecond)}/s, ${n(r.raw.messages)} × ${r.raw.messageBytes} B)`;
  const figures = chartIds
    .map(
      (id) =>
        `<figure class="chart" data-chart="${id}" data-title="${esc(chartTitles[id])}"><figcaption>${esc(chartTitles[id])}</figcaption></figure>`,
    )
    .join("\n");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sluice bench: ${esc(r.title)}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:960px;color:#0f172a;padding:0 12px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #e2e8f0}h3{font-size:14px;margin:16px 0 4px}
.muted{color:#64748b}.big{font-size:18px}.ok{color:#15803d}.bad{color:#b91c1c}
table{border-collapse:collapse;width:100%;margin:6px 0 12px;font-size:13px}th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #e2e8f0;vertical-align:top}
th{background:#f8fafc}figure{margin:16px 0;position:relative}figcaption{font-weight:600;margin-bottom:4px}
svg{width:100%;height:auto;background:#fff;border:1px solid #e2e8f0}.grid{stroke:#e2e8f0}.cursor{stroke:#94a3b8;stroke-dasharray:3 3}
.series{fill:none;stroke-width:1.6}.ylab{font-size:11px;text-anchor:end;fill:#475569}.xlab{font-size:11px;text-anchor:middle;fill:#475569}
.unit{font-size:11px;text-anchor:middle;fill:#475569}.band{font-size:11px;fill:#64748b}
.legend{list-style:none;padding:0;margin:4px 0;display:flex;flex-wrap:wrap;gap:12px;font-size:12px}.swatch{display:inline-block;width:12px;height:3px;margin-right:5px;vertical-align:middle}
.tip{font-size:12px;color:#334155;min-height:16px;font-variant-numeric:tabular-nums}
</style></head>
<body>
<h1>Sluice bench: ${esc(r.title)}</h1>
<p class="muted">${esc(r.startedAt)} · ${r.machine.cpus} × ${esc(r.machine.cpuModel)} · Sluice ${esc(r.versions.sluice)} (${esc(r.versions.git.commit?.slice(0, 12) ?? "no git")}${r.versions.git.dirty ? ", uncommitted changes" : ""}) · Bun ${esc(r.versions.bun)} · nats-server ${esc(r.versions.natsServer)} · seed ${r.options.seed} · ${r.options.partitions} partitions · ${esc(setupLine(r))}</p>
<p class="big"><b>${n(r.throughput.ordersPerSecond)} orders/s</b> end to end during ${esc(r.throughput.phase)} · <b>${esc(r.throughput.ratioToRaw ?? "?")}</b> of ${esc(raw)} · audit <b class="${r.audit.passed ? "ok" : "bad"}">${r.audit.passed ? "passed" : "FAILED"}</b></p>
<p class="muted">${esc(r.throughput.note)}. ${esc(r.drain.note)}.${r.burst === null ? "" : ` Burst: ${esc(r.burst.note)}.`}</p>
<p>Sluice memory${(r.resources.processes ?? []).filter((p) => p.role === "sluice").length > 1 ? ", all nodes together" : ""}: anonymous RSS <b>${formatMib(r.resources.sluice.rssAnonBytesMax)}</b> max (budget ${formatBytes(r.resources.sluiceRssAnonBudgetBytes)}); RSS ${formatMib(r.resources.sluice.rssBytesMax)} max, of which file-backed ${formatMib(r.resources.sluice.rssFileBytesMax)} max: pages of the LMDB maps and Bun's executable, reclaimable page cache, shown separately.</p>
${r.cluster === null ? "" : clusterHtml(r)}
<h2>Targets</h2>
${verdicts}
${
  r.chaos === null
    ? ""
    : `<h2>Faults</h2><p class="muted">Recovery times from the moment the harness lifted the fault; <i>recovered</i> is the latest of ready again, completions resumed, lag back to before and backlog drained. Sluice: ${r.chaos.sluice.incarnations.length} processes, ${r.chaos.sluice.unexpectedExits} unexpected exits; data directory ${esc(r.chaos.disk.mounted || r.chaos.disk.reason === null ? `a ${r.chaos.disk.sizeMb} MiB tmpfs` : `a plain directory (${r.chaos.disk.reason})`)}.</p>${table(faultColumns, r.chaos.faults.map(faultCells))}${r.chaos.faults
        .filter((f) => f.sluiceSaid.length > 0)
        .map(
          (f) =>
            `<p>Fault ${f.index + 1} (${esc(f.kind)}), Sluice logged:</p><ul>${f.sluiceSaid.map((l) => `<li><code>${esc(l)}</code></li>`).join("")}</ul>`,
        )
        .join("")}`
}
${
  r.sweep === null
    ? ""
    : `<h2>Sweep</h2><p><b>${esc(r.sweep.note)}.</b></p><p class="muted">Steps of ${r.sweep.stepS} s, ${r.sweep.settleS} s of no load after each; judged ${r.sweep.judgedAfterS} s after the step: saturated below ${r.sweep.rule.completedRatioMin * 100} % of the offered rate completed, or above ${r.sweep.rule.p99MsMax} ms p99. Latencies in ms of the step's orders; --workers ${r.sweep.workers} (Sluice's node.workerCount; −1: automatic).</p>${table(sweepColumns, r.sweep.steps.map(sweepCells))}<figure class="chart" data-chart="${sweepChartId}" data-title="${esc(sweepChartTitle)}"><figcaption>${esc(sweepChartTitle)}</figcaption></figure>`
}
<h2>Charts</h2>
${figures}
<h2>Latency</h2>
${latency}
<h2>Load</h2>
${table(phaseColumns, r.phases.map(phaseCells))}
<p>Offered ${n(r.load.offered)}, accepted ${n(r.load.accepted)}, ${n(r.load.errors)} publish errors; the load generator was at most ${n(r.load.behindMsMax)} ms behind its schedule (at most ${n(r.load.inflightMax)} of ${n(r.load.inFlightPublishesMax)} publishes awaiting an ack).</p>
${r.routing === undefined ? "" : routingHtml(r.routing)}
<h2>CPU and memory</h2>
${table(resourceColumns, resourceRows(r.resources))}
<p class="muted">CPU over ${r.resources.windowS} s from the start of the load to the end of the drain. ${esc(rssNote)}</p>
<h2>Where the time goes</h2>
<p class="muted">The accept → allocated latency cut at the stream timestamps the status items carry (ms).</p>
${table(
  ["hop", "what", ...r.phases.flatMap((p) => [`${p.name} p50`, `${p.name} p99`])],
  Object.values(r.hops).map((h) => [
    h.label,
    h.description,
    ...r.phases.flatMap((p) => [h.phases[p.name]?.p50Ms ?? "", h.phases[p.name]?.p99Ms ?? ""]),
  ]),
)}
<ul>${r.where.findings.map((f) => `<li>${esc(f)}</li>`).join("")}</ul>
<h2>Audit</h2>
${audit}
<p class="muted">Every figure is in report.json next to this page. Command: <code>${esc(["bun run bench", ...r.command].join(" "))}</code></p>
<script type="application/json" id="bench-data">${inlineJson(r)}</script>
<script>${chartsScript()}</script>
</body></html>
`;
}
