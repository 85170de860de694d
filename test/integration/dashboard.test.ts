import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Server, Subprocess } from "bun";
import { parseSinkOptions, type Sink, startSink } from "../../src/sink/index.ts";
import type { Sluice } from "../../src/sluice.ts";
import { subjects } from "../../src/stream/subjects.ts";
import {
  getJson,
  httpBase,
  type Producer,
  sluiceFixture,
  tempDir,
  testLog,
  waitFor,
} from "../helpers/index.ts";
import { freePort } from "../helpers/process.ts";

// The Grafana dashboard (deploy/grafana/) and the Prometheus rules (deploy/prometheus/) against a real
// Prometheus on loopback that scrapes a live Sluice and a reference sink (job names as the rules expect):
// every panel query and every rule must evaluate without error and name only metrics one of them serves (or
// a rule records). Prometheus is a hard requirement, like promtool: CI installs Debian's package; a machine
// without it fails here with the fix instead of skipping in silence. Rule files absent: that test is skipped
// and says so in its name.

const dashboardFile = "deploy/grafana/sluice-dashboard.json";
const rulesDir = "deploy/prometheus";
const nodeName = "sluice-test"; // testConfig's node.name
// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax, meant literally.
const datasourceUid = "${datasource}";
const installFix =
  "the prometheus binary is not on PATH: run 'apt-get install -y prometheus' (Debian/Ubuntu; CI installs it), " +
  "or put prometheus from https://prometheus.io/download/ on PATH";

// Grafana's variables as the test substitutes them: every node, and fixed stand-ins for the intervals.
const substitutions: [RegExp, string][] = [
  [/\$__rate_interval|\$\{__rate_interval\}/g, "1m"],
  [/\$__interval|\$\{__interval\}/g, "15s"],
  [/\$__range|\$\{__range\}/g, "5m"],
  [/\$node|\$\{node\}/g, ".*"],
  [/\$source|\$\{source\}/g, ".*"],
];

// Series Prometheus makes itself for each target; a query may join on them though Sluice does not serve them.
const prometheusSeries = new Set(["up"]);

// ---------------------------------------------------------------------------------------------------------
// Metric names in a PromQL expression: a small tokenizer, not a parser (Prometheus checks the syntax). It
// skips strings, label matchers `{…}`, ranges `[…]`, numbers and durations, the label lists after by,
// without, on, ignoring, group_left and group_right, and the names below; any other identifier is a metric.

const promqlFunctions = new Set(
  (
    "abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes clamp clamp_max " +
    "clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year days_in_month deg delta deriv exp " +
    "floor histogram_count histogram_fraction histogram_quantile histogram_sum holt_winters hour idelta " +
    "increase irate label_join label_replace last_over_time ln log10 log2 max_over_time min_over_time minute " +
    "month pi predict_linear present_over_time quantile_over_time rad rate resets round scalar sgn sin sinh " +
    "sort sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time tan tanh time timestamp vector year " +
    "start end"
  ).split(" "),
);
const promqlAggregations = new Set(
  "sum min max avg group stddev stdvar count count_values bottomk topk quantile".split(" "),
);
const promqlLabelListKeywords = new Set("by without on ignoring group_left group_right".split(" "));
const promqlKeywords = new Set("and or unless bool offset atan2 inf nan".split(" "));

type Mention = { name: string; matchers: string };

/** The index after the bracket that closes the one at `open`, skipping quoted strings. */
function closing(expr: string, open: number): number {
  const pair: Record<string, string> = { "{": "}", "[": "]", "(": ")" };
  const want = pair[expr[open] as string];
  for (let i = open + 1; i < expr.length; i++) {
    const c = expr[i] as string;
    if (c === '"' || c === "'" || c === "`") i = stringEnd(expr, i) - 1;
    else if (c === want) return i + 1;
  }
  throw new Error(`unbalanced ${expr[open]} at ${open} in: ${expr}`);
}

function stringEnd(expr: string, start: number): number {
  const quote = expr[start];
  for (let i = start + 1; i < expr.length; i++) {
    if (expr[i] === "\\" && quote !== "`") i++;
    else if (expr[i] === quote) return i + 1;
  }
  throw new Error(`unterminated string at ${start} in: ${expr}`);
}

function skipSpace(expr: string, i: number): number {
  while (i < expr.length && /\s/.test(expr[i] as string)) i++;
  return i;
}

function metricMentions(expr: string): Mention[] {
  const out: Mention[] = [];
  let i = 0;
  while (i < expr.length) {
    const c = expr[i] as string;
    if (/\s/.test(c)) i++;
    else if (c === '"' || c === "'" || c === "`") i = stringEnd(expr, i);
    else if (c === "{" || c === "[")
      i = closing(expr, i); // a bare {…} selector names no metric by identifier
    else if (/[0-9]/.test(c) || (c === "." && /[0-9]/.test(expr[i + 1] ?? ""))) {
      i = i + (/^[0-9.]+(?:e[+-]?[0-9]+)?[a-zA-Z0-9_]*/i.exec(expr.slice(i))?.[0].length ?? 1);
    } else if (/[a-zA-Z_:]/.test(c)) {
      const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(expr.slice(i))?.[0] as string;
      i += name.length;
      const next = skipSpace(expr, i);
      if (promqlLabelListKeywords.has(name)) {
        if (expr[next] === "(") i = closing(expr, next);
      } else if (promqlFunctions.has(name) || promqlAggregations.has(name) || promqlKeywords.has(name)) {
        // not a metric
      } else if (expr[next] === "(") {
        throw new Error(`unknown PromQL function ${name} (add it to the list if Prometheus has it): ${expr}`);
      } else {
        const matchers = expr[next] === "{" ? expr.slice(next, closing(expr, next)) : "";
        out.push({ name, matchers });
      }
    } else i++;
  }
  return out;
}

/** Every metric name Sluice's /metrics declares (# TYPE, with a histogram's series) or has a sample of. */
function servedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split("\n")) {
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)/.exec(line);
    if (type) {
      const [, name, kind] = type as unknown as [string, string, string];
      names.add(name);
      if (kind === "histogram") for (const s of ["_bucket", "_sum", "_count"]) names.add(`${name}${s}`);
      if (kind === "summary") for (const s of ["_sum", "_count"]) names.add(`${name}${s}`);
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/.exec(line);
    if (sample) names.add(sample[1] as string);
  }
  return names;
}

// ---------------------------------------------------------------------------------------------------------
// The dashboard as the test reads it.

type DashboardTarget = { expr: string; refId: string; format?: string; legendFormat?: string };
type DashboardPanel = {
  id: number;
  type: string;
  title: string;
  gridPos: { h: number; w: number; x: number; y: number };
  datasource?: { type: string; uid: string };
  targets?: DashboardTarget[];
  panels?: DashboardPanel[];
};
type Variable = Record<string, unknown> & { name: string; type: string };
type Dashboard = {
  schemaVersion: number;
  uid: string;
  title: string;
  panels: DashboardPanel[];
  templating: { list: Variable[] };
};

const dashboard = JSON.parse(readFileSync(dashboardFile, "utf8")) as Dashboard;
const rows = dashboard.panels.filter((p) => p.type === "row");
const queryPanels = dashboard.panels.filter((p) => p.type !== "row");
const queries = queryPanels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, ...t })));

function substitute(expr: string): string {
  let out = expr;
  for (const [pattern, value] of substitutions) out = out.replace(pattern, value);
  return out;
}

/** The rule files of deploy/prometheus/ (YAML with `groups:`; promtool's test files are left out). */
function ruleFiles(): { path: string; groups: string[] }[] {
  if (!existsSync(rulesDir)) return [];
  return readdirSync(rulesDir)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort()
    .map((f) => {
      const path = resolve(rulesDir, f);
      const doc = Bun.YAML.parse(readFileSync(path, "utf8")) as { groups?: { name: string }[] } | null;
      return { path, groups: (doc?.groups ?? []).map((g) => g.name) };
    })
    .filter((f) => f.groups.length > 0);
}
const rules = ruleFiles();

// ---------------------------------------------------------------------------------------------------------
// Prometheus on loopback: a free port, a temporary TSDB, a 1 s scrape and evaluation, the rule files. The jobs
// are named as deploy/prometheus/sluice-rules.yml expects: `sluice` and `sluice-sink`.

type ScrapeJob = { job: string; host: string };

class TestPrometheus {
  readonly dir = tempDir("prometheus");
  readonly port = freePort();
  private child: Subprocess | null = null;
  private output = "";

  get base(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(jobs: ScrapeJob[], files: string[]): Promise<void> {
    const bin = Bun.which("prometheus");
    if (bin === null) throw new Error(installFix);
    const config = join(this.dir, "prometheus.yml");
    // Strings quoted as JSON, which YAML reads as they are.
    const lines = ["global:", "  scrape_interval: 1s", "  evaluation_interval: 1s", "rule_files:"];
    lines.push(...(files.length > 0 ? files.map((f) => `  - ${JSON.stringify(f)}`) : ["  []"]));
    lines.push("scrape_configs:");
    for (const j of jobs) {
      lines.push(`  - job_name: ${JSON.stringify(j.job)}`, "    static_configs:");
      lines.push(`      - targets: [${JSON.stringify(j.host)}]`);
    }
    writeFileSync(config, `${lines.join("\n")}\n`);
    this.child = Bun.spawn(
      [
        bin,
        `--config.file=${config}`,
        `--storage.tsdb.path=${join(this.dir, "data")}`,
        `--web.listen-address=127.0.0.1:${this.port}`,
        "--log.level=warn",
      ],
      { stdout: "pipe", stderr: "pipe" },
    );
    const collect = async (stream: ReadableStream<Uint8Array>) => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) this.output += decoder.decode(chunk, { stream: true });
    };
    void collect(this.child.stdout as ReadableStream<Uint8Array>);
    void collect(this.child.stderr as ReadableStream<Uint8Array>);
    await waitFor(
      async () => {
        if (this.child?.exitCode !== null) throw new Error(`prometheus exited:\n${this.output}`);
        return (await fetch(`${this.base}/-/ready`).catch(() => null))?.status === 200;
      },
      "prometheus ready",
      15_000,
      100,
    );
  }

  // biome-ignore lint/suspicious/noExplicitAny: Prometheus API responses read by path; assertions are the types.
  async api(path: string): Promise<any> {
    return (await fetch(`${this.base}${path}`)).json();
  }

  // biome-ignore lint/suspicious/noExplicitAny: as above.
  query(expr: string): Promise<any> {
    return this.api(`/api/v1/query?query=${encodeURIComponent(expr)}`);
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (child !== null && child.exitCode === null) {
      child.kill("SIGTERM");
      const stopped = await Promise.race([child.exited.then(() => true), Bun.sleep(5000).then(() => false)]);
      if (!stopped) {
        child.kill("SIGKILL");
        await child.exited;
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------------------

let sluice: Sluice;
let fatal: Error[];
let producer: Producer;
let natsUrl: string;
sluiceFixture("dashboard", (f) => {
  ({ sluice, fatal, producer } = f);
  natsUrl = f.nats.url;
});

const prometheus = new TestPrometheus();
let startError: Error | null = null;
let endpoint: Server<undefined> | null = null;
let sink: Sink | null = null;
/** Metric names Sluice's /metrics serves, and the reference sink's. */
let served = { sluice: new Set<string>(), sink: new Set<string>() };

function ready(): void {
  if (startError !== null) throw startError;
}

/** A metric the dashboard or a rule names: the sink's are served by the sink, the rest by Sluice. */
function isServed(name: string): boolean {
  return served.sluice.has(name) || served.sink.has(name) || prometheusSeries.has(name);
}

/** Stock on two warehouses, orders reserved, one refused, a shipment, a dead letter: most series get values. */
async function traffic(): Promise<void> {
  const stock = (sku: string, warehouse: string, qty: number) =>
    producer.publishJson(subjects.stockPublic(sku), { type: "received", warehouse, qty });
  const order = (id: string, sku: string, qty: number) =>
    producer.publishJson(subjects.orderPublic("order", "shop", id), {
      lines: [{ lineId: "1", sku, qty, price: 9.9 }],
    });
  for (let i = 0; i < 8; i++) await stock(`SKU-D${i}`, i % 2 === 0 ? "w1" : "w2", 20);
  for (let i = 0; i < 8; i++) await order(`d-${i}`, `SKU-D${i}`, 3);
  await order("d-refused", "SKU-D0", 500);
  await producer.js.publish(subjects.stockPublic("SKU-D0"), "{not json");
  const settled = async (id: string) => {
    const r = await getJson(`${httpBase(sluice)}/v1/orders/shop/${id}`);
    return r.status === 200 && r.body.status !== "pending" ? r.body : null;
  };
  const first = await waitFor(() => settled("d-0"), "order d-0 settled");
  await producer.publishJson(subjects.wmsPublic(first.lines[0].warehouse as string, "shipped"), {
    channel: "shop",
    orderId: "d-0",
    shipmentId: "s-0",
    lines: [{ lineId: "1", qty: 3 }],
  });
  await waitFor(() => settled("d-refused"), "order d-refused settled");
}

/** /metrics of `url` once every pattern matches, as the set of names it serves. */
async function namesOnceSeen(url: string, wanted: RegExp[], what: string): Promise<Set<string>> {
  const text = await waitFor(async () => {
    const body = await (await fetch(url)).text();
    return wanted.every((re) => re.test(body)) ? body : null;
  }, what);
  return servedNames(text);
}

/** The reference sink delivering sluice.out.erp to an endpoint that takes everything, its metrics served. */
async function startErpSink(): Promise<Sink> {
  endpoint = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("ok") });
  const parsed = parseSinkOptions(
    [
      "--source",
      "erp",
      "--url",
      `http://127.0.0.1:${endpoint.port}/erp`,
      "--nats",
      natsUrl,
      "--metrics-port",
      "0",
    ],
    {},
  );
  if (!parsed.ok) throw new Error(parsed.detail);
  return startSink({ ...parsed.value, logLevel: "error" }, { log: testLog });
}

async function start(): Promise<void> {
  sink = await startErpSink();
  const sinkMetrics = `http://127.0.0.1:${sink.metricsPort}/metrics`;
  await prometheus.start(
    [
      { job: "sluice", host: new URL(httpBase(sluice)).host },
      { job: "sluice-sink", host: `127.0.0.1:${sink.metricsPort}` },
    ],
    rules.map((r) => r.path),
  );
  await waitFor(
    async () => {
      const t = await prometheus.api("/api/v1/targets");
      const up = t.data.activeTargets.filter((x: { health: string }) => x.health === "up");
      return up.length === 2;
    },
    "Sluice and the sink up in prometheus",
    15_000,
    100,
  );
  await traffic();
  served = {
    sluice: await namesOnceSeen(
      `${httpBase(sluice)}/metrics`,
      [/^sluice_erp_batches_total\{/m, /^sluice_dead_letters_total\{/m, /^sluice_stock_requests_total\{/m],
      "ERP batches, a dead letter and stock requests in Sluice's /metrics",
    ),
    sink: await namesOnceSeen(
      sinkMetrics,
      [
        /^sluice_sink_deliveries_total\{[^}]*outcome="delivered"/m,
        // Real ERP batches judged against their chains: the first of each partition, never a gap.
        /^sluice_sink_erp_chain_batches_total\{[^}]*outcome="first_seen"/m,
      ],
      "a delivery in the sink's /metrics",
    ),
  };
  const sinkText = await (await fetch(sinkMetrics)).text();
  expect(sinkText).not.toMatch(/^sluice_sink_erp_chain_batches_total\{[^}]*outcome="gap"/m);
  // Three scrapes after the traffic, so rate() over them has points to work with.
  await waitFor(
    async () => {
      const r = await prometheus.query(`count_over_time(sluice_sink_deliveries_total{source="erp"}[1m])`);
      return r.data.result.some((s: { value: [number, string] }) => Number(s.value[1]) >= 3);
    },
    "three scrapes of the traffic",
    15_000,
    200,
  );
}

describe("dashboard and rules against a real Prometheus", () => {
  // Inside this describe, so they run after the fixture's beforeAll and before its afterAll (NATS still up).
  beforeAll(async () => {
    try {
      await start();
    } catch (error) {
      startError = error as Error;
    }
  }, 40_000);

  afterAll(async () => {
    await prometheus.stop();
    await sink?.stop();
    endpoint?.stop(true);
  });

  describe("Grafana dashboard", () => {
    test("is importable: schema, datasource, node and source variables, the rows, ids and layout", () => {
      expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
      expect(dashboard.uid).toMatch(/^[a-zA-Z0-9_-]{1,40}$/);
      const vars = Object.fromEntries(dashboard.templating.list.map((v) => [v.name, v]));
      expect(vars.datasource).toMatchObject({ type: "datasource", query: "prometheus" });
      expect(vars.node).toMatchObject({
        type: "query",
        definition: "label_values(sluice_messages_applied_total, node)",
        multi: true,
        includeAll: true,
        allValue: ".*",
        datasource: { type: "prometheus", uid: datasourceUid },
      });
      expect(vars.source).toMatchObject({
        type: "query",
        definition: "label_values(sluice_sink_deliveries_total, source)",
        multi: true,
        includeAll: true,
        allValue: ".*",
      });
      expect(rows.map((r) => r.title)).toEqual(
        expect.arrayContaining([
          "Overview",
          "Stages",
          "Stock sync",
          "ERP",
          "Outbox and back-pressure",
          "Cluster",
          "Resources",
          "Reference sink",
        ]),
      );
      const ids = dashboard.panels.map((p) => p.id);
      expect(new Set(ids).size).toBe(ids.length);
      for (const p of queryPanels) {
        expect(p.datasource, p.title).toEqual({ type: "prometheus", uid: datasourceUid });
        expect(p.targets?.length ?? 0, p.title).toBeGreaterThan(0);
        for (const t of p.targets ?? []) expect(t.expr.length, `${p.title} ${t.refId}`).toBeGreaterThan(0);
        if (p.type === "heatmap") for (const t of p.targets ?? []) expect(t.format, p.title).toBe("heatmap");
      }
      // No panel overlaps another or runs past the 24 columns.
      for (const [i, a] of dashboard.panels.entries()) {
        expect(a.gridPos.x + a.gridPos.w, a.title).toBeLessThanOrEqual(24);
        for (const b of dashboard.panels.slice(i + 1)) {
          const apart =
            a.gridPos.x + a.gridPos.w <= b.gridPos.x ||
            b.gridPos.x + b.gridPos.w <= a.gridPos.x ||
            a.gridPos.y + a.gridPos.h <= b.gridPos.y ||
            b.gridPos.y + b.gridPos.h <= a.gridPos.y;
          expect(apart, `${a.title} overlaps ${b.title}`).toBe(true);
        }
      }
    });

    test("every query selects the node variable on each Sluice metric, the source one on each sink metric", () => {
      for (const q of queries) {
        for (const m of metricMentions(q.expr)) {
          if (prometheusSeries.has(m.name)) continue;
          const selector = m.name.startsWith("sluice_sink_") ? 'source=~"$source"' : 'node=~"$node"';
          expect(m.matchers, `${q.panel} ${q.refId}: ${m.name}`).toContain(selector);
        }
      }
    });

    test("readiness is sluice_ready per check and process; up is only about scrapes; the HTTP port has its row", () => {
      const reading = (name: string) =>
        queries.filter((q) => metricMentions(q.expr).some((m) => m.name === name)).map((q) => q.panel);
      expect(reading("sluice_ready")).toEqual(["Ready per check"]);
      const ready = queries.find((q) => q.panel === "Ready per check");
      expect(ready?.expr).toMatch(/by \((?=[^)]*\bcheck\b)(?=[^)]*\binstance\b)[^)]*\)/);
      expect(ready?.legendFormat).toContain("{{check}}");
      expect(reading("up")).toEqual(["Scrape up"]);
      expect(rows.map((r) => r.title)).toContain("HTTP port");
      expect(reading("sluice_http_requests_refused_total")).toEqual([
        "HTTP requests refused /s by code and scope",
      ]);
      expect(reading("sluice_http_admin_actions_total")).toEqual(["Operate and admin actions by token"]);
    });

    test("the tokenizer finds metric names and nothing else", () => {
      const found = metricMentions(
        'histogram_quantile(0.99, sum by (le, stage) (rate(a_bucket{node=~"x", le!="+Inf"}[5m] offset 1h)))' +
          ' / on (node) group_left (stage) b_total * 1e3 + count_values("v", c) unless max without (d) (e:rec)',
      ).map((m) => m.name);
      expect(found).toEqual(["a_bucket", "b_total", "c", "e:rec"]);
      expect(() => metricMentions("nonsense(x)")).toThrow(/unknown PromQL function nonsense/);
    });

    test("the variables' label_values queries find this node and the sink's source", async () => {
      ready();
      const expected: Record<string, string> = { node: nodeName, source: "erp" };
      const queryVars = dashboard.templating.list.filter((v) => v.type === "query");
      expect(queryVars.map((v) => v.name).sort()).toEqual(Object.keys(expected).sort());
      for (const v of queryVars) {
        const call = /^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$/.exec(
          String(v.definition),
        );
        expect(call, v.name).not.toBeNull();
        const [, metric, label] = call as unknown as [string, string, string];
        expect(isServed(metric), metric).toBe(true);
        const r = await prometheus.api(`/api/v1/label/${label}/values?match[]=${encodeURIComponent(metric)}`);
        expect(r.status).toBe("success");
        expect(r.data).toContain(expected[v.name]);
      }
    });

    test("every panel query evaluates in Prometheus and names only metrics Sluice or the sink serves", async () => {
      ready();
      const failures: string[] = [];
      const empty: string[] = [];
      for (const q of queries) {
        const expr = substitute(q.expr);
        if (/\$[a-zA-Z_{]/.test(expr)) failures.push(`${q.panel} ${q.refId}: a variable left in ${expr}`);
        for (const m of metricMentions(expr)) {
          if (!isServed(m.name))
            failures.push(`${q.panel} ${q.refId}: ${m.name} is in neither Sluice's nor the sink's /metrics`);
        }
        const r = await prometheus.query(expr);
        if (r.status !== "success")
          failures.push(`${q.panel} ${q.refId}: ${r.errorType} ${r.error} in ${expr}`);
        else if (r.data.result.length === 0) empty.push(q.panel);
      }
      expect(failures).toEqual([]);
      // After the traffic these show data (a join, a histogram, counters and gauges of both stages).
      const withData = [
        "Throughput",
        "Scrape up",
        "Ready per check",
        "Applied /s per partition",
        "Lag per partition",
        "Commit duration p50 / p99",
        "ATS items and requests /s per channel",
        "ERP batches /s by stage",
        "Dead letters /s by stage and reason",
        "CPU",
        "Memory",
        "Sink deliveries /s by source",
        "Sink request duration p50 / p99",
        // Its series are served from the start at 0: a rate of 0 is data.
        "HTTP requests refused /s by code and scope",
      ];
      for (const title of withData) {
        expect(queryPanels.map((p) => p.title)).toContain(title);
        expect(empty, `${title} returned no series`).not.toContain(title);
      }
      expect(fatal).toEqual([]);
    }, 30_000);
  });

  describe("Prometheus rules", () => {
    // The rule files are part of the repository: none found is a failure, not a skip.
    const title = `every group of ${rules.map((r) => r.path.slice(resolve(rulesDir).length + 1)).join(", ")} loads and evaluates without error, naming metrics Sluice or the sink serves`;
    test(title, async () => {
      expect(rules.length).toBeGreaterThan(0);
      ready();
      type Rule = {
        name: string;
        type: "recording" | "alerting";
        query: string;
        health: string;
        lastError?: string;
        lastEvaluation: string;
      };
      const neverEvaluated = "0001-01-01T00:00:00Z";
      const groups = await waitFor(
        async () => {
          const r = await prometheus.api("/api/v1/rules");
          const list = r.data.groups as { name: string; file: string; rules: Rule[] }[];
          const evaluated = list.every((g) => g.rules.every((x) => x.lastEvaluation !== neverEvaluated));
          return evaluated ? list : null;
        },
        "every rule evaluated once",
        10_000,
        200,
      );
      expect(groups.map((g) => g.name).sort()).toEqual(rules.flatMap((r) => r.groups).sort());
      const recorded = new Set(
        groups.flatMap((g) => g.rules.filter((x) => x.type === "recording").map((x) => x.name)),
      );
      const failures: string[] = [];
      for (const g of groups) {
        for (const x of g.rules) {
          if (x.health !== "ok" || x.lastError)
            failures.push(`${g.name}/${x.name}: ${x.health} ${x.lastError ?? ""}`);
          for (const m of metricMentions(x.query)) {
            if (!isServed(m.name) && !recorded.has(m.name))
              failures.push(
                `${g.name}/${x.name}: ${m.name} is in neither Sluice's nor the sink's /metrics, nor recorded by a rule`,
              );
          }
        }
      }
      expect(failures).toEqual([]);
    }, 20_000);
    if (rules.length === 0)
      console.log(`dashboard.test: no rule files in ${rulesDir}/ yet, the rules test is skipped`);
  });
});
