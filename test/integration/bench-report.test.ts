// The bench's reports: the HTML page draws its charts in headless Chromium (Debian's chromium package,
// installed by scripts/dev.sh), and a tiny real bench run end to end produces a complete, audited report.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LoadDone } from "../../bench/harness/loadgen.ts";
import { runBench } from "../../bench/harness/main.ts";
import { Observer } from "../../bench/harness/observe.ts";
import { parseOptions, phasesOf } from "../../bench/harness/options.ts";
import { chartIds, renderHtml, sweepChartId } from "../../bench/harness/report-html.ts";
import { type BenchReport, buildReport, reportSchema } from "../../bench/harness/report-json.ts";
import { renderMarkdown } from "../../bench/harness/report-md.ts";
import type { Sample } from "../../bench/harness/sample.ts";
import { orderIdOf } from "../../bench/harness/workload.ts";

const dir = mkdtempSync(join(tmpdir(), "sluice-bench-report-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A flash-sale report made from synthetic outputs: no Sluice, no NATS. */
function fixtureReport(): BenchReport {
  const parsed = parseOptions([
    "--baseline",
    "10",
    "--multiplier",
    "20",
    "--pre-s",
    "3",
    "--burst-s",
    "3",
    "--post-s",
    "3",
  ]);
  if (parsed.help) throw new Error("unreachable");
  const options = parsed.options;
  const phases = phasesOf(options, null);
  const start = 1_800_000_000_000;
  const observer = new Observer("shop", "fx", phases, start, new Set(["allocated"]));
  const enc = new TextEncoder();
  const offeredBySecond: number[] = [];
  let n = 0;
  for (let s = 0; s < 9; s++) {
    const rate = s >= 3 && s < 6 ? 200 : 10;
    offeredBySecond.push(rate);
    for (let i = 0; i < rate; i++) {
      const intended = s * 1000 + (i * 1000) / rate;
      const latency = (s >= 3 && s < 6 ? 150 : 8) + (i % 10) * 3;
      const key = `shop.${orderIdOf("fx", n, Math.round(intended * 1000), Math.round(intended * 1000))}`;
      const line = (state: string) => [{ lineId: "1", sku: `SKU-${n % 7}`, qty: 1, state }];
      const at = start + intended;
      observer.onMessage(
        "sluice.out.order.shop",
        enc.encode(
          JSON.stringify({
            items: [
              {
                orderKey: key,
                version: 1,
                status: "pending",
                event: "created",
                atMs: at + 1,
                lines: line("received"),
              },
            ],
          }),
        ),
        at + latency / 3,
      );
      observer.onMessage(
        "sluice.out.stock.shop",
        enc.encode(
          JSON.stringify({ items: [{ sku: `SKU-${n % 7}`, ats: 100 - n, version: n + 1, atMs: at + 2 }] }),
        ),
        at + latency / 2,
      );
      observer.onMessage(
        "sluice.out.order.shop",
        enc.encode(
          JSON.stringify({
            items: [
              {
                orderKey: key,
                version: 2,
                status: "allocated",
                event: "allocated",
                atMs: at + latency / 2,
                lines: line("released"),
              },
            ],
          }),
        ),
        at + latency,
      );
      observer.onMessage(
        "sluice.out.fulfil.w1",
        enc.encode(
          JSON.stringify({ items: [{ type: "fulfil", orderKey: key, warehouse: "w1", lines: [] }] }),
        ),
        at + latency + 1,
      );
      n++;
    }
  }
  observer.finish(start + 10_000);
  const samples: Sample[] = Array.from({ length: 11 }, (_, i) => ({
    tS: i,
    scraped: true,
    lag: { order: i >= 3 && i < 6 ? 120 * (i - 2) : 0, ledger: i >= 3 && i < 6 ? 30 : 0 },
    stages: {
      order: {
        applied: n,
        batches: 100 * i,
        batchMessages: 400 * i,
        applySeconds: 0.1 * i,
        commitSeconds: 0.3 * i,
        outboxPublishSeconds: 0.1 * i,
        outboxPublishes: 50 * i,
      },
      ledger: {
        applied: n,
        batches: 80 * i,
        batchMessages: 200 * i,
        applySeconds: 0.05 * i,
        commitSeconds: 0.2 * i,
        outboxPublishSeconds: 0.05 * i,
        outboxPublishes: 40 * i,
      },
    },
    outboxDepth: 0,
    deadLetters: 0,
    deadLettersByReason: {},
    cpuSeconds: { sluice: 0.6 * i, nats: 0.2 * i, loadgen: 0.1 * i, harness: 0.05 * i },
    rssBytes: { sluice: (150 + i) * 1048576, nats: 30 * 1048576, loadgen: 60 * 1048576 },
    rssAnonBytes: { sluice: 100 * 1048576, nats: 28 * 1048576, loadgen: 50 * 1048576 },
    rssFileBytes: { sluice: (50 + i) * 1048576, nats: 2 * 1048576, loadgen: 10 * 1048576 },
  }));
  const load: LoadDone = {
    type: "done",
    offered: n,
    sent: n,
    accepted: n,
    errors: 0,
    failed: [],
    behindMsMax: 2,
    inflightMax: 40,
    offeredBySecond,
    sentBySecond: offeredBySecond,
    acceptedBySecond: offeredBySecond,
    errorsBySecond: [],
    linesPerOrder: { "1": n },
    unitsOffered: n,
    hotUnits: {},
    followUps: {
      cancel: { sent: 0, accepted: 0, errors: 0 },
      shipped: { sent: 0, accepted: 0, errors: 0 },
      rejected: { sent: 0, accepted: 0, errors: 0 },
      returned: { sent: 0, accepted: 0, errors: 0 },
      restock: { sent: 0, accepted: 0, errors: 0 },
    },
    reactionsAwaited: 0,
    cpuSeconds: 1,
  };
  return buildReport({
    options,
    argv: ["--baseline", "10"],
    phases,
    runId: "fx",
    startEpochMs: start,
    startedAt: new Date(start - 5000),
    finishedAt: new Date(start + 12_000),
    reportDir: dir,
    machine: { hostname: "h", os: "Debian", kernel: "6", cpuModel: "cpu", cpus: 2, memoryBytes: 2 ** 34 },
    versions: {
      sluice: "0.1.0",
      bun: Bun.version,
      natsServer: "v2.9.10",
      git: { commit: "0123456789abcdef", dirty: false },
    },
    orderMessageBytesMean: 110,
    trace: null,
    load,
    raw: {
      messages: n,
      messageBytes: 110,
      publishPerSecond: 40_000,
      consumeAckPerSecond: 90_000,
      publishThenConsumePerSecond: 27_000,
    },
    observer,
    samples,
    audit: {
      passed: true,
      checks: [{ name: "ledger consistent", passed: true, detail: "fixture" }],
      statuses: { allocated: n },
      hot: [],
    },
    harnessCpuSeconds: 0.5,
    profileDir: null,
    notes: ["a fixture: </script><script>alert(1)</script> must stay text"],
  });
}

function chromiumBinary(): string {
  const bin = Bun.which("chromium") ?? Bun.which("chromium-browser");
  if (bin === null)
    throw new Error(
      "chromium is not installed: run ./scripts/dev.sh test (it installs Debian's chromium package as root) or 'sudo apt-get install -y chromium'",
    );
  return bin;
}

/** The page's DOM after headless Chromium ran its scripts. */
async function drawnDom(page: string): Promise<string> {
  const bin = chromiumBinary();
  const run = Bun.spawn(
    [
      bin,
      "--headless=new",
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      `--user-data-dir=${join(dir, "profile")}`,
      "--virtual-time-budget=5000",
      "--dump-dom",
      `file://${page}`,
    ],
    { stdout: "pipe", stderr: "pipe" },
  );
  const [dom, code] = await Promise.all([new Response(run.stdout).text(), run.exited]);
  expect(code).toBe(0);
  return dom;
}

describe("bench HTML report", () => {
  test("headless Chromium draws every chart of a report made from a fixture", async () => {
    const report = fixtureReport();
    expect(report.schema).toBe(reportSchema);
    expect(report.latency.stockDelta.observed).toBe(true);
    expect(report.sweep).toBeNull();
    const page = join(dir, "report.html");
    const html = renderHtml(report);
    // self-contained: nothing fetched (the SVG namespace is a name, not a fetch)
    expect(
      /<script[^>]+src=|<link[^>]+href=|<img|url\(|https?:\/\/(?!www\.w3\.org\/2000\/svg)/.test(html),
    ).toBe(false);
    expect(html).not.toContain(`data-chart="${sweepChartId}"`);
    writeFileSync(page, html);
    const dom = await drawnDom(page);
    expect(dom).toContain('data-charts-done="true"');
    for (const id of chartIds) {
      const figure = new RegExp(`<figure[^>]*data-chart="${id}"[^>]*>`).exec(dom)?.[0] ?? "";
      expect(figure).not.toBe("");
      expect(figure).not.toContain("data-error");
      const drawn = Number(/data-drawn="(\d+)"/.exec(figure)?.[1] ?? 0);
      expect(drawn).toBeGreaterThanOrEqual(id === "lag" || id === "memory" ? 2 : 3);
    }
    const paths = [...dom.matchAll(/<path[^>]* d="([^"]*)"/g)].map((m) => m[1] as string);
    expect(paths.length).toBeGreaterThanOrEqual(15);
    for (const d of paths) expect(d).toMatch(/^M[\d.]+,[\d.]+(L[\d.]+,[\d.]+)+$/);
    expect(dom).toContain('data-series="stock delta p99"');
    expect(dom).not.toContain("<script>alert(1)");
    // the Markdown summary of the same report
    const md = renderMarkdown(report);
    expect(md).toContain("# Sluice bench: flash-sale 10 → 200 orders/s for 3 s");
    expect(md).toContain("| burst |");
    // RSS split: total / anonymous / file-backed (the LMDB maps), in every format; the burst's gaps
    const burst = report.phases.find((p) => p.name === "burst");
    expect([burst?.sluiceRssBytesMax, burst?.sluiceRssAnonBytesMax, burst?.sluiceRssFileBytesMax]).toEqual([
      156 * 1048576,
      100 * 1048576,
      56 * 1048576,
    ]);
    expect(report.resources.sluice.rssFileBytesMax).toBe(60 * 1048576);
    expect(report.timeline[2]?.rssAnonBytes).toEqual({ sluice: 100 * 1048576, nats: 28 * 1048576 });
    expect(report.burst).toMatchObject({
      seconds: 3,
      secondsWithoutCompletions: 0,
      runWithoutCompletionsSMax: 0,
    });
    const verdict = (name: string) => report.targets.find((t) => t.name === name)?.verdict;
    expect(verdict("completions through the burst")).toBe("met");
    expect(verdict("bounded memory")).toBe("met");
    expect(md).toContain("| Sluice | ");
    expect(md).toContain("| 160 MiB | 100 MiB | 60 MiB |");
    expect(md).toContain("| burst | 3 | 6 |");
    expect(md).toContain("| 156 / 100 / 56 |");
    expect(md).toContain("- burst: orders completed in every one of the burst's 3 seconds.");
    expect(md).toContain(
      "file-backed 60 MiB max: pages of the LMDB maps and Bun's executable, reclaimable page cache",
    );
    expect(html).toContain("<h2>CPU and memory</h2>");
    expect(html).toContain("<td>160 MiB</td><td>100 MiB</td><td>60 MiB</td>");
    expect(dom).toContain('data-series="Sluice anon RSS"');
  }, 60_000);
});

describe("bench end to end", () => {
  test("a tiny steady run: Sluice, loadgen, observer, audit, three reports", async () => {
    const out = join(dir, "run");
    const code = await runBench([
      "--scenario",
      "steady",
      "--rate",
      "150",
      "--duration-s",
      "2",
      "--skus",
      "200",
      "--raw-messages",
      "300",
      "--quiet",
      "--out",
      out,
    ]);
    expect(code).toBe(0);
    for (const f of ["report.json", "report.md", "report.html"]) expect(existsSync(join(out, f))).toBe(true);
    const r = JSON.parse(readFileSync(join(out, "report.json"), "utf8")) as BenchReport;
    expect(r.schema).toBe(reportSchema);
    expect(r.options.scenario).toBe("steady");
    expect(r.machine.cpus).toBeGreaterThan(0);
    expect(r.versions.bun).toBe(Bun.version);
    expect(r.load.accepted).toBe(r.load.sent);
    expect(r.load.accepted).toBeGreaterThan(150);
    expect(r.load.errors).toBe(0);
    expect(r.throughput.completedOrders).toBe(r.load.accepted);
    expect(r.latency.allocated.overall.count).toBe(r.load.accepted);
    expect(r.latency.fulfil.overall.count).toBe(r.load.accepted);
    expect(r.latency.allocated.phases.steady?.count).toBe(r.load.accepted);
    expect(r.latency.allocated.overall.p50Ms).toBeGreaterThan(0);
    expect(r.latency.allocated.overall.p99Ms).toBeGreaterThanOrEqual(r.latency.allocated.overall.p50Ms);
    expect(r.latency.allocated.histogram.count).toBe(r.load.accepted);
    expect(r.hops.orderStage.overall.count).toBeGreaterThan(0);
    expect(r.raw?.messages).toBe(300);
    expect(r.raw?.publishThenConsumePerSecond).toBeGreaterThan(0);
    expect(r.throughput.ratioToRaw).toBeGreaterThan(0);
    expect(r.timeline.length).toBeGreaterThanOrEqual(2);
    expect(r.timeline.reduce((n, row) => n + row.completed, 0)).toBe(r.load.accepted);
    expect(r.resources.sluice.cpuSeconds).toBeGreaterThan(0);
    expect(r.resources.natsServer.rssBytesMax).toBeGreaterThan(0);
    expect(r.targets.map((t) => t.name)).toEqual([
      "sustained throughput",
      "p99 accept → stock delta",
      "p99.9 accept → stock delta",
      "backlog drained after the burst",
      "zero oversell",
      "completions through the burst",
      "bounded memory",
    ]);
    expect(r.burst).toBeNull();
    expect(r.resources.sluice.rssAnonBytesMax).toBeGreaterThan(0);
    expect(r.resources.sluice.rssFileBytesMax).toBeGreaterThan(0);
    expect(r.resources.sluice.rssBytesMax).toBeGreaterThanOrEqual(r.resources.sluice.rssAnonBytesMax);
    expect(r.audit.passed).toBe(true);
    const check = (name: string) => r.audit.checks.find((c) => c.name === name)?.passed;
    expect(check("ledger consistent")).toBe(true);
    expect(check("no oversell")).toBe(true);
    expect(check("every order in a final state")).toBe(true);
    expect(check("no dead letters")).toBe(true);
    // null until Sluice publishes sluice.out.stock, then true
    expect(check("last published ATS equals computed ATS")).not.toBe(false);
    if (!r.latency.stockDelta.observed)
      expect(r.latency.stockDelta.note).toContain("no stock deltas observed");
  }, 60_000);
});

describe("bench chaos end to end", () => {
  test("a tiny chaos run: Sluice killed and paused under load, every order accounted for, faults reported", async () => {
    const out = join(dir, "chaos");
    const code = await runBench([
      "--scenario",
      "chaos",
      "--rate",
      "100",
      "--duration-s",
      "10",
      "--faults",
      "2",
      "--fault-kinds",
      "sluice-kill,sluice-pause",
      "--skus",
      "200",
      "--raw-messages",
      "0",
      "--drain-wait-s",
      "20",
      "--quiet",
      "--out",
      out,
    ]);
    const r = JSON.parse(readFileSync(join(out, "report.json"), "utf8")) as BenchReport;
    expect(r.options.scenario).toBe("chaos");
    const chaos = r.chaos as NonNullable<BenchReport["chaos"]>;
    expect(chaos.faults.map((f) => f.kind).sort()).toEqual(["sluice-kill", "sluice-pause"]);
    for (const f of chaos.faults) {
      expect(f.status).toBe("done");
      expect(f.startS).not.toBeNull();
      expect(f.recovery?.readyAgainMs).not.toBeNull();
      expect(f.recovery?.completionsResumedMs).not.toBeNull();
    }
    // The first, and the one after the kill (an unexpected exit would add one: shown if it fails).
    expect(chaos.sluice.incarnations.map((i) => `${i.cause}: ${i.exit}`)).toHaveLength(2);
    expect(chaos.outputs?.ordersInStream).toBe(r.load.accepted);
    const check = (name: string) => r.audit.checks.find((c) => c.name === name)?.passed;
    for (const name of [
      "no order lost",
      "no order doubled",
      "order outputs without a version gap",
      "reserved stock equals allocated lines",
      "every order in a final state",
      "no oversell",
    ])
      expect(check(name)).toBe(true);
    expect(r.audit.passed).toBe(true);
    expect(code).toBe(0);
    expect(readFileSync(join(out, "report.md"), "utf8")).toContain("## Faults");
    expect(readFileSync(join(out, "report.html"), "utf8")).toContain("<h2>Faults</h2>");
  }, 45_000);
});

describe("bench sweep end to end", () => {
  test("a tiny sweep: two steps judged, a table in every report, the curve drawn", async () => {
    const out = join(dir, "sweep");
    const code = await runBench([
      "--scenario",
      "sweep",
      "--sweep-rates",
      "100,200",
      "--step-s",
      "2",
      "--settle-s",
      "1",
      "--saturation-p99-ms",
      "60000",
      "--workers",
      "2",
      "--skus",
      "200",
      "--raw-messages",
      "300",
      "--quiet",
      "--out",
      out,
    ]);
    expect(code).toBe(0);
    const r = JSON.parse(readFileSync(join(out, "report.json"), "utf8")) as BenchReport;
    const w = r.sweep as NonNullable<BenchReport["sweep"]>;
    expect(r.options.workers).toBe(2);
    expect(w.workers).toBe(2);
    expect(r.phases.map((p) => [p.name, p.startS, p.endS])).toEqual([
      ["100/s", 0, 2],
      ["200/s", 3, 5],
    ]);
    expect(w.steps).toHaveLength(2);
    for (const s of w.steps) {
      expect(s.judgement).not.toBeNull();
      expect(s.completed).toBe(r.latency.allocated.phases[s.name]?.count ?? -1);
      expect(s.allocated.p99Ms).toBeGreaterThan(0);
      expect(s.sluiceCpuMsPerOrder).toBeGreaterThan(0);
      expect(s.sluiceRssBytesMax).toBeGreaterThan(0);
      expect(s.ratioToRaw).toBeGreaterThan(0);
    }
    expect(w.steps.reduce((n, s) => n + s.completed, 0)).toBe(r.load.accepted);
    expect(w.stepsNotRun).toBe(0);
    expect(r.audit.passed).toBe(true);
    expect(readFileSync(join(out, "report.md"), "utf8")).toContain("## Sweep: the latency-throughput curve");
    const dom = await drawnDom(join(out, "report.html"));
    const figure = new RegExp(`<figure[^>]*data-chart="${sweepChartId}"[^>]*>`).exec(dom)?.[0] ?? "";
    expect(figure).not.toContain("data-error");
    expect(Number(/data-drawn="(\d+)"/.exec(figure)?.[1] ?? 0)).toBeGreaterThanOrEqual(3);
    expect(dom).toContain('data-series="allocated p99"');
  }, 45_000);
});
