// --nodes 1,2,4,8: the scenario once per node count, back to back, each with its own nats-server(s), its own
// raw JetStream measurement and its own full reports (nodes-<N>/); this module turns those reports into the
// scaling curve (schema "sluice-bench-curve/1", docs/bench.md): per count, orders/s completed, latency, CPU per
// node and the ratio to raw JetStream on the same NATS setup, and how each count compares with the first.
import type { Machine, Versions } from "./env.ts";
import type { BenchOptions } from "./options.ts";
import { limits } from "./options.ts";
import { type BenchReport, formatCount, formatMib } from "./report-json.ts";

export const curveSchema = "sluice-bench-curve/1";

export type CurvePoint = {
  nodes: number;
  /** The count's own reports, relative to the curve's directory (null: the run broke before writing them). */
  report: string | null;
  /** Why the count's run broke (null: it completed; its audit may still have failed). */
  error: string | null;
  offeredPerSecond: number | null;
  /** JetStream acks of the peak phase per second of it: the load generator's own limit shows here. */
  acceptedPerSecond: number | null;
  /** Orders of the peak phase completed per second, from its start to its last completion. */
  ordersPerSecond: number | null;
  keptUp: boolean | null;
  allocatedP50Ms: number | null;
  allocatedP99Ms: number | null;
  allocatedP999Ms: number | null;
  rawPublishThenConsumePerSecond: number | null;
  ratioToRaw: number | null;
  /** Sluice's cores during the peak phase: all nodes together, their mean and the busiest node's. */
  sluiceCores: number | null;
  coresPerNodeMean: number | null;
  coresPerNodeMax: number | null;
  natsCores: number | null;
  sluiceCpuMsPerOrder: number | null;
  /** The largest node's peak anonymous RSS, and all nodes' together. */
  rssAnonPerNodeMax: number | null;
  rssAnonAllNodesMax: number | null;
  /**
   * ordersPerSecond ÷ the first count's; efficiency: that ÷ (nodes ÷ the first count's nodes). Null unless the
   * first count fell behind (its orders/s then is its capacity); a lower bound for a count that kept up.
   */
  speedup: number | null;
  efficiency: number | null;
  settleS: number | null;
  partitionMoves: number | null;
  auditPassed: boolean | null;
};

export type CurveReport = {
  schema: typeof curveSchema;
  title: string;
  startedAt: string;
  finishedAt: string;
  wallSeconds: number;
  command: string[];
  options: BenchOptions;
  machine: Machine;
  versions: Versions;
  reportDir: string;
  nats: { servers: number; cluster: boolean; replicas: number };
  points: CurvePoint[];
  /** True when every count completed and its audit passed. */
  passed: boolean;
  notes: string[];
};

export type CurveRun = { nodes: number; report: BenchReport | null; reportDir: string; error: string | null };

const round = (n: number, digits = 3) => {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
};

export function curvePoint(run: CurveRun, relDir: string): CurvePoint {
  const r = run.report;
  if (r === null)
    return {
      nodes: run.nodes,
      report: null,
      error: run.error,
      offeredPerSecond: null,
      acceptedPerSecond: null,
      ordersPerSecond: null,
      keptUp: null,
      allocatedP50Ms: null,
      allocatedP99Ms: null,
      allocatedP999Ms: null,
      rawPublishThenConsumePerSecond: null,
      ratioToRaw: null,
      sluiceCores: null,
      coresPerNodeMean: null,
      coresPerNodeMax: null,
      natsCores: null,
      sluiceCpuMsPerOrder: null,
      rssAnonPerNodeMax: null,
      rssAnonAllNodesMax: null,
      speedup: null,
      efficiency: null,
      settleS: null,
      partitionMoves: null,
      auditPassed: null,
    };
  const peak = r.phases.find((p) => p.name === r.throughput.phase);
  const a = r.latency.allocated.overall;
  const nodes = r.resources.processes?.filter((p) => p.role === "sluice") ?? [];
  const perNode = nodes.map((p) => p.peakPhaseCores).filter((c): c is number => c !== null);
  const sluiceCores = peak?.cpuCores?.sluice ?? null;
  return {
    nodes: run.nodes,
    report: `${relDir}/report.md`,
    error: run.error,
    offeredPerSecond: r.throughput.offeredPerSecond,
    acceptedPerSecond:
      peak === undefined ? null : Math.round(peak.accepted / Math.max(1e-9, peak.endS - peak.startS)),
    ordersPerSecond: r.throughput.ordersPerSecond,
    keptUp: r.throughput.keptUp,
    allocatedP50Ms: a.p50Ms,
    allocatedP99Ms: a.p99Ms,
    allocatedP999Ms: a.p999Ms,
    rawPublishThenConsumePerSecond: r.raw?.publishThenConsumePerSecond ?? null,
    ratioToRaw: r.throughput.ratioToRaw,
    sluiceCores,
    coresPerNodeMean: sluiceCores === null ? null : round(sluiceCores / run.nodes, 2),
    coresPerNodeMax: perNode.length === 0 ? null : Math.max(...perNode),
    natsCores: peak?.cpuCores?.nats ?? null,
    sluiceCpuMsPerOrder: r.where.sluiceCpuMsPerOrder,
    rssAnonPerNodeMax:
      nodes.length === 0
        ? r.resources.sluice.rssAnonBytesMax
        : Math.max(...nodes.map((p) => p.rssAnonBytesMax)),
    rssAnonAllNodesMax: r.resources.sluice.rssAnonBytesMax,
    speedup: null,
    efficiency: null,
    settleS: r.cluster?.settleS ?? null,
    partitionMoves: r.cluster?.moves.length ?? null,
    auditPassed: r.audit.passed,
  };
}

export function buildCurve(input: {
  options: BenchOptions;
  argv: string[];
  startedAt: Date;
  finishedAt: Date;
  reportDir: string;
  machine: Machine;
  versions: Versions;
  runs: CurveRun[];
  relDir: (nodes: number) => string;
}): CurveReport {
  const { options, machine, runs } = input;
  const points = runs.map((run) => curvePoint(run, input.relDir(run.nodes)));
  // Speed-up is only a figure when the first count was saturated: its orders/s is then its capacity. When it
  // kept up, its orders/s is the offered rate and says nothing of what it could do.
  const base = points.find((p) => p.ordersPerSecond !== null && p.ordersPerSecond > 0);
  for (const p of points) {
    if (base === undefined || base.keptUp !== false || p.ordersPerSecond === null) continue;
    p.speedup = round(p.ordersPerSecond / (base.ordersPerSecond as number), 2);
    p.efficiency = round(p.speedup / (p.nodes / base.nodes), 2);
  }
  const servers = options.natsCluster ? limits.natsClusterServers : 1;
  const notes: string[] = [];
  const most = Math.max(...runs.map((r) => r.nodes));
  // Each node, each nats-server, the load generator and the harness want a core of their own to scale.
  const coresWanted = most + servers + 2;
  if (machine.cpus < coresWanted)
    notes.push(
      `this machine has ${machine.cpus} cores and the largest count runs ${most} Sluice nodes + ${servers} nats-server${servers === 1 ? "" : "s"} + the load generator + the harness (${coresWanted} busy processes): they share the cores, so the curve measures correctness and the overhead of more nodes, not scaling. Run the same command on a machine with ${coresWanted} cores or more for the scaling curve`,
    );
  const done = points.filter((p) => p.keptUp !== null);
  if (done.length > 0 && done.every((p) => p.keptUp === true))
    notes.push(
      `every count kept up with the offered ${formatCount(done[0]?.offeredPerSecond ?? 0)} orders/s, so orders/s is what was offered at each (a lower bound of capacity) and there is no speed-up to compute: raise --rate above what one node completes to see the curve rise`,
    );
  else if (base !== undefined && base.keptUp === true)
    notes.push(
      `the first count (${base.nodes} nodes) kept up, so its orders/s is the offered rate, not its capacity: no speed-up is computed; raise --rate above what it completes`,
    );
  for (const p of points) {
    if (p.error !== null) notes.push(`${p.nodes} nodes: the run broke: ${p.error}`);
    else if (p.auditPassed === false) notes.push(`${p.nodes} nodes: the audit FAILED (see ${p.report})`);
    if ((p.partitionMoves ?? 0) > 0)
      notes.push(
        `${p.nodes} nodes: ${p.partitionMoves} partitions changed owner during the run (see ${p.report})`,
      );
  }
  return {
    schema: curveSchema,
    title: `scaling: ${runs.map((r) => r.nodes).join(", ")} nodes, ${scenarioLine(options)}${options.natsCluster ? `, NATS cluster (R${servers})` : ""}`,
    startedAt: input.startedAt.toISOString(),
    finishedAt: input.finishedAt.toISOString(),
    wallSeconds: round((input.finishedAt.getTime() - input.startedAt.getTime()) / 1000, 1),
    command: input.argv,
    options,
    machine,
    versions: input.versions,
    reportDir: input.reportDir,
    nats: { servers, cluster: options.natsCluster, replicas: servers },
    points,
    passed: points.every((p) => p.error === null && p.auditPassed === true),
    notes,
  };
}

function scenarioLine(o: BenchOptions): string {
  if (o.scenario === "flash-sale") return `flash-sale ${o.baseline} → ${o.baseline * o.multiplier} orders/s`;
  if (o.scenario === "replay") return `replay of ${o.trace}`;
  return `${o.scenario} ${formatCount(o.rate)} orders/s for ${o.durationS} s`;
}

const dash = (v: number | string | null, f: (x: number) => string = String) =>
  v === null ? "—" : typeof v === "string" ? v : f(v);

export const curveColumns = [
  "nodes",
  "offered /s",
  "accepted /s",
  "completed /s",
  "× first count",
  "efficiency",
  "allocated p50 / p99 / p99.9 ms",
  "× raw JetStream",
  "raw publish-then-consume /s",
  "Sluice cores (all nodes)",
  "cores per node mean / max",
  "nats cores",
  "CPU-ms per order",
  "anon RSS per node max",
  "settle s",
  "partition moves",
  "audit",
];

export function curveCells(p: CurvePoint): Array<string | number> {
  const n = (x: number) => formatCount(x);
  return [
    p.nodes,
    dash(p.offeredPerSecond, n),
    dash(p.acceptedPerSecond, n),
    p.ordersPerSecond === null ? "—" : `${n(p.ordersPerSecond)}${p.keptUp === true ? " (kept up)" : ""}`,
    dash(p.speedup),
    dash(p.efficiency),
    p.allocatedP50Ms === null ? "—" : `${p.allocatedP50Ms} / ${p.allocatedP99Ms} / ${p.allocatedP999Ms}`,
    dash(p.ratioToRaw),
    dash(p.rawPublishThenConsumePerSecond, n),
    dash(p.sluiceCores),
    p.coresPerNodeMean === null ? "—" : `${p.coresPerNodeMean} / ${dash(p.coresPerNodeMax)}`,
    dash(p.natsCores),
    dash(p.sluiceCpuMsPerOrder),
    dash(p.rssAnonPerNodeMax, formatMib),
    dash(p.settleS),
    dash(p.partitionMoves),
    p.error !== null ? `broke: ${p.error.slice(0, 120)}` : p.auditPassed ? "passed" : "FAILED",
  ];
}

const curveLegend =
  "Per node count, one run of the scenario with its own nats-server(s), Sluice nodes, raw JetStream measurement and full reports. offered / accepted / completed per second are those of the peak phase (completed: from its start to its last order's completion; '(kept up)': every order done within 2 s of the phase's end, so the figure is what was offered). × first count: completed /s ÷ the first count's; efficiency: that ÷ the node ratio (1.0: linear). Latency: accept → allocated over the run, from the intended send time. × raw JetStream: completed /s ÷ the count's own raw publish-then-consume rate on the same NATS setup. Cores: during the peak phase. settle: seconds from the last node's start until every partition ran where the assignment puts it.";

function table(header: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) =>
    `| ${cells.map((c) => String(c).replaceAll("|", "\\|")).join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}

export function renderCurveMarkdown(c: CurveReport): string {
  const out: string[] = [];
  out.push(`# Sluice bench: ${c.title}`);
  out.push("");
  out.push(
    `${c.startedAt} · ${c.machine.cpus} × ${c.machine.cpuModel}, ${formatMib(c.machine.memoryBytes)} · Sluice ${c.versions.sluice}` +
      ` (${c.versions.git.commit?.slice(0, 12) ?? "no git"}${c.versions.git.dirty ? ", uncommitted changes" : ""}) · Bun ${c.versions.bun}` +
      ` · nats-server ${c.versions.natsServer} · ${c.nats.cluster ? `${c.nats.servers}-node NATS cluster, streams R${c.nats.replicas}` : "one nats-server"} · ${c.options.partitions} partitions per stage · seed ${c.options.seed} · ${c.wallSeconds} s in all`,
  );
  out.push("");
  out.push(
    `**${c.passed ? "Every count completed and passed its audit." : "Not every count passed: see below."}**`,
  );
  out.push("");
  out.push(table(curveColumns, c.points.map(curveCells)));
  out.push("");
  out.push(curveLegend);
  if (c.notes.length > 0) {
    out.push("");
    for (const note of c.notes) out.push(`- ${note}`);
  }
  out.push("");
  out.push(
    `Command: \`${["bun run bench", ...c.command].join(" ")}\` · every figure: report.json · each count's own reports: nodes-<N>/`,
  );
  return `${out.join("\n")}\n`;
}

const esc = (s: unknown) =>
  String(s)
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;");

/** Two small SVG charts drawn here (no script): completed /s and latency against node count. */
function svgChart(
  title: string,
  unit: string,
  xs: number[],
  series: Array<{ name: string; color: string; values: Array<number | null> }>,
): string {
  const W = 900;
  const H = 260;
  const M = { left: 64, right: 16, top: 16, bottom: 36 };
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const all = series.flatMap((s) => s.values).filter((v): v is number => v !== null && Number.isFinite(v));
  const top = all.length === 0 ? 1 : Math.max(...all) * 1.1 || 1;
  const xi = (i: number) => M.left + (xs.length <= 1 ? pw / 2 : (i / (xs.length - 1)) * pw);
  const y = (v: number) => M.top + ph - (v / top) * ph;
  const parts: string[] = [];
  for (const f of [0, 0.25, 0.5, 0.75, 1]) {
    const v = top * f;
    parts.push(
      `<line x1="${M.left}" x2="${W - M.right}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#e2e8f0"/>`,
      `<text x="${M.left - 6}" y="${(y(v) + 4).toFixed(1)}" font-size="11" text-anchor="end" fill="#475569">${esc(formatCount(v))}</text>`,
    );
  }
  xs.forEach((x, i) => {
    parts.push(
      `<text x="${xi(i).toFixed(1)}" y="${H - M.bottom + 16}" font-size="11" text-anchor="middle" fill="#475569">${x} node${x === 1 ? "" : "s"}</text>`,
    );
  });
  parts.push(
    `<text x="12" y="${M.top + ph / 2}" font-size="11" text-anchor="middle" fill="#475569" transform="rotate(-90 12 ${M.top + ph / 2})">${esc(unit)}</text>`,
  );
  let drawn = 0;
  for (const s of series) {
    const pts = s.values
      .map((v, i) => (v === null ? null : `${xi(i).toFixed(1)},${y(v).toFixed(1)}`))
      .filter((p): p is string => p !== null);
    if (pts.length === 0) continue;
    drawn++;
    parts.push(
      `<polyline points="${pts.join(" ")}" fill="none" stroke="${s.color}" stroke-width="1.8" data-series="${esc(s.name)}"/>`,
      ...pts.map((p) => {
        const [cx, cy] = p.split(",");
        return `<circle cx="${cx}" cy="${cy}" r="3" fill="${s.color}"/>`;
      }),
    );
  }
  const legend = series
    .map(
      (s) =>
        `<li><span style="display:inline-block;width:12px;height:3px;background:${s.color};margin-right:5px;vertical-align:middle"></span>${esc(s.name)}</li>`,
    )
    .join("");
  return `<figure class="chart" data-drawn="${drawn}"><figcaption>${esc(title)}</figcaption><svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title)}">${parts.join("")}</svg><ul class="legend">${legend}</ul></figure>`;
}

export function renderCurveHtml(c: CurveReport): string {
  const xs = c.points.map((p) => p.nodes);
  const rows = c.points.map(curveCells);
  const throughput = svgChart("Orders/s against node count", "orders/s", xs, [
    { name: "offered", color: "#64748b", values: c.points.map((p) => p.offeredPerSecond) },
    { name: "accepted", color: "#16a34a", values: c.points.map((p) => p.acceptedPerSecond) },
    { name: "completed", color: "#2563eb", values: c.points.map((p) => p.ordersPerSecond) },
    {
      name: "linear from the first count",
      color: "#cbd5e1",
      values: c.points.map((p) => {
        const b = c.points[0];
        // Only from a first count that fell behind: its orders/s is then its capacity.
        return b?.ordersPerSecond == null || b.keptUp !== false
          ? null
          : (b.ordersPerSecond * p.nodes) / b.nodes;
      }),
    },
  ]);
  const latency = svgChart("Accept → allocated against node count", "ms", xs, [
    { name: "p50", color: "#2563eb", values: c.points.map((p) => p.allocatedP50Ms) },
    { name: "p99", color: "#dc2626", values: c.points.map((p) => p.allocatedP99Ms) },
  ]);
  const cpu = svgChart("CPU during the peak phase", "cores", xs, [
    { name: "Sluice, all nodes", color: "#2563eb", values: c.points.map((p) => p.sluiceCores) },
    { name: "per node, mean", color: "#9333ea", values: c.points.map((p) => p.coresPerNodeMean) },
    { name: "nats-server(s)", color: "#ea580c", values: c.points.map((p) => p.natsCores) },
  ]);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sluice bench: ${esc(c.title)}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1100px;color:#0f172a;padding:0 12px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #e2e8f0}
.muted{color:#64748b}.ok{color:#15803d}.bad{color:#b91c1c}
.wide{overflow-x:auto}table{border-collapse:collapse;width:100%;margin:6px 0 12px;font-size:12px}th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #e2e8f0;vertical-align:top}
th{background:#f8fafc}figure{margin:16px 0}figcaption{font-weight:600;margin-bottom:4px}
svg{width:100%;height:auto;background:#fff;border:1px solid #e2e8f0}
.legend{list-style:none;padding:0;margin:4px 0;display:flex;flex-wrap:wrap;gap:12px;font-size:12px}
</style></head>
<body>
<h1>Sluice bench: ${esc(c.title)}</h1>
<p class="muted">${esc(c.startedAt)} · ${c.machine.cpus} × ${esc(c.machine.cpuModel)} · Sluice ${esc(c.versions.sluice)} (${esc(c.versions.git.commit?.slice(0, 12) ?? "no git")}${c.versions.git.dirty ? ", uncommitted changes" : ""}) · Bun ${esc(c.versions.bun)} · nats-server ${esc(c.versions.natsServer)} · ${esc(c.nats.cluster ? `${c.nats.servers}-node NATS cluster, streams R${c.nats.replicas}` : "one nats-server")} · ${c.options.partitions} partitions per stage · ${c.wallSeconds} s in all</p>
<p><b class="${c.passed ? "ok" : "bad"}">${c.passed ? "Every count completed and passed its audit." : "Not every count passed."}</b></p>
<div class="wide"><table><thead><tr>${curveColumns.map((h) => `<th>${esc(h)}</th>`).join("")}</tr></thead><tbody>${rows
    .map(
      (r, i) =>
        `<tr>${r.map((cell, k) => (k === 0 && c.points[i]?.report ? `<td><a href="${esc(c.points[i]?.report?.replace(/\.md$/, ".html"))}">${esc(cell)}</a></td>` : `<td>${esc(cell)}</td>`)).join("")}</tr>`,
    )
    .join("")}</tbody></table></div>
<p class="muted">${esc(curveLegend)}</p>
${c.notes.length === 0 ? "" : `<ul>${c.notes.map((n) => `<li>${esc(n)}</li>`).join("")}</ul>`}
<h2>Curve</h2>
${throughput}
${latency}
${cpu}
<p class="muted">Every figure is in report.json next to this page; each count's own reports are in nodes-&lt;N&gt;/. Command: <code>${esc(["bun run bench", ...c.command].join(" "))}</code></p>
</body></html>
`;
}
