import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { YAML } from "bun";
import type { Registry } from "prom-client";
import { type EventName, type Events, Instrumentation } from "../../src/instrumentation/index.ts";
import { createMetrics } from "../../src/metrics/index.ts";
import { SinkInstrumentation } from "../../src/sink/events.ts";
import { createSinkMetrics } from "../../src/sink/metrics.ts";
import type { Sluice } from "../../src/sluice.ts";
import { subjects } from "../../src/stream/subjects.ts";
import { getJson, httpBase, type Producer, sluiceFixture, waitFor } from "../helpers/index.ts";

// The Prometheus kit (deploy/prometheus/) against Prometheus's own checker. A live Sluice's /metrics, with
// traffic behind counters, gauges and histograms, and a registry fed every instrumentation event once, must
// pass `promtool check metrics` without a complaint; the rules must pass `promtool check rules`, their unit
// tests `promtool test rules`, and name only metrics Sluice or the sink serve.
// promtool is required, not optional: ./scripts/dev.sh test installs it (Debian's `prometheus` package). A
// machine without it fails here with the fix instead of skipping in silence.

const rulesFile = "deploy/prometheus/sluice-rules.yml";
const rulesTestFile = "deploy/prometheus/sluice-rules.test.yml";
const runbookFile = "docs/operations.md";

function promtoolPath(): string {
  const path = Bun.which("promtool");
  if (path === null) {
    throw new Error(
      "promtool is not on PATH: run ./scripts/dev.sh test (it installs what is missing), or " +
        "'sudo apt-get update && sudo apt-get install -y prometheus' (Debian/Ubuntu: promtool comes with it), " +
        "or put promtool from https://prometheus.io/download/ on PATH",
    );
  }
  return path;
}

/** Runs promtool with `args` (and `stdin` piped in): its exit code and its output, both streams. */
async function promtool(args: string[], stdin?: string) {
  const child = Bun.spawn([promtoolPath(), ...args], {
    stdin: stdin === undefined ? "ignore" : new Blob([stdin]),
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  return { code, output: `${stdout}${stderr}`.trim() };
}

/** `promtool check metrics` on an exposition: exit 0 and not one line of complaint. */
async function expectPromtoolClean(text: string): Promise<void> {
  const result = await promtool(["check", "metrics"], text);
  expect(result.output).toBe("");
  expect(result.code).toBe(0);
}

let sluice: Sluice;
let fatal: Error[];
let producer: Producer;
sluiceFixture("promtool", (f) => {
  ({ sluice, fatal, producer } = f);
});

/** Stock received, an order reserved and one refused, a dead letter: values behind every kind of series. */
async function traffic(): Promise<void> {
  await producer.publishJson(subjects.stockPublic("SKU-P"), { type: "received", warehouse: "w1", qty: 10 });
  for (const orderId of ["p-1", "p-2"]) {
    await producer.publishJson(subjects.orderPublic("order", "shop", orderId), {
      lines: [{ sku: "SKU-P", qty: 7, price: 9.9 }],
    });
  }
  await producer.js.publish(subjects.stockPublic("SKU-P"), "{not json");
  await waitFor(async () => {
    const r = await getJson(`${httpBase(sluice)}/v1/orders/shop/p-2`);
    return r.status === 200 && r.body.status !== "pending";
  }, "order p-2 settled");
}

/** One payload of every instrumentation event: the compiler makes sure none is missing. */
const everyEvent: { [K in EventName]: Events[K] } = {
  batch_committed: {
    stage: "ledger",
    partition: 0,
    applied: 5,
    skipped: 1,
    applySeconds: 0.001,
    commitSeconds: 0.002,
    lag: 3,
    inFlight: 0,
  },
  outbox_published: { stage: "order", partition: 0, count: 2, seconds: 0.003, attempts: 1 },
  dead_lettered: { stage: "unrouted", reason: "bad_subject" },
  command_refused: { stage: "ledger", code: "insufficient_available" },
  stock_command_repeated: { partition: 0, outcome: "applied" },
  line_reserved: { partition: 0 },
  waiting_lines: { partition: 0, count: 2 },
  backorder_filled: { partition: 0, waitedMs: 90_000 },
  backorder_not_waiting: { partition: 0, count: 1 },
  order_counted: { name: "cancelled", label: "customer", count: 1 },
  store_sampled: {
    stage: "order",
    partition: 0,
    outboxItems: 2,
    timers: 1,
    mapUsedBytes: 8192,
    mapBytesMax: 65536,
    diskFreeBytes: 1e9,
    diskSizeBytes: 2e9,
    timerOverdueMs: 1500,
  },
  orders_at_risk: { partition: 0, counts: [{ channel: "shop", warehouse: "w1", count: 1 }] },
  timers_fired: { partition: 0, count: 1 },
  consumer_reset: { stage: "order", partition: 0, cause: "created", streamSeqStart: 1 },
  stock_delta: { channel: "shopee", latencySeconds: 0.05 },
  stock_counted: {
    channel: "shopee",
    requests: 1,
    items: 3,
    coalesced: 1,
    throttledSeconds: 0.5,
    refusedFull: 1,
  },
  stock_resynced: { partition: 0, channel: "shopee" },
  capacity_claimed: { partition: 0, warehouse: "w1", outcome: "granted", units: 5 },
  capacity_short: { partition: 0, warehouse: "w1", poolFull: false, lines: 2 },
  channel_reconciled: {
    partition: 0,
    channel: "shopee",
    reported: 10,
    matched: 6,
    inFlight: 1,
    drifted: 3,
    healed: 2,
    deferred: 1,
    duplicate: false,
  },
  erp_batch: { stage: "ledger", movements: 3, documents: 0 },
  rules_applied: { revision: 2 },
  rules_refused: { revision: 3 },
  publish_blocked: { target: "sluice.out", delta: 1 },
  stream_purged: { stream: "SLUICE_LEDGER", count: 10 },
  stream_gap: { stage: "ledger", partition: 0 },
  partition_paused: { stage: "ledger", partition: 0, delta: 1 },
  lag_observed: { stage: "order", partition: 1, lag: 4 },
  partition_taken: { stage: "ledger", partition: 0, how: "restored" },
  partition_lost: { stage: "order", partition: 3 },
  partition_handed_off: { stage: "ledger", partition: 2 },
  snapshot_written: { stage: "ledger", partition: 0, bytes: 4096 },
};

function emitEvery(events: Instrumentation): void {
  for (const name of Object.keys(everyEvent) as EventName[]) events.emit(name, everyEvent[name] as never);
}

/** Every sample name a registry can serve: histograms add _bucket, _sum and _count. */
async function sampleNames(registry: Registry): Promise<Set<string>> {
  const names = new Set<string>();
  for (const metric of await registry.getMetricsAsJSON()) {
    names.add(metric.name);
    if (String(metric.type) === "histogram")
      for (const s of ["_bucket", "_sum", "_count"]) names.add(metric.name + s);
  }
  return names;
}

type Rule = {
  alert?: string;
  record?: string;
  expr: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
};
type RuleTest = { alertname: string; exp_alerts: unknown[] };

function rulesOf(): Rule[] {
  const doc = YAML.parse(readFileSync(rulesFile, "utf8")) as { groups: Array<{ rules: Rule[] }> };
  return doc.groups.flatMap((g) => g.rules);
}

/** GitHub's anchor of every heading in a Markdown file. */
function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  for (const [, heading] of markdown.matchAll(/^#{1,6} +(.+)$/gm)) {
    anchors.add(
      (heading ?? "")
        .trim()
        .toLowerCase()
        .replace(/[^\p{L}\p{N} _-]/gu, "")
        .replace(/ /g, "-"),
    );
  }
  return anchors;
}

describe("Prometheus kit", () => {
  test("a live Sluice's /metrics passes promtool check metrics", async () => {
    promtoolPath();
    await traffic();
    const wanted = [
      /^sluice_dead_letters_total\{[^}]*reason="decode_failed"/m,
      /^sluice_reservations_total\{[^}]*\} [1-9]/m,
      /^sluice_commands_refused_total\{[^}]*code="insufficient_available"/m,
      /^sluice_stock_delta_latency_seconds_bucket\{/m,
      /^sluice_commit_duration_seconds_bucket\{/m,
      // Sampled from the stores and the data disk: real, non-zero sizes.
      /^sluice_store_map_used_bytes\{[^}]*\} [1-9]/m,
      /^sluice_store_map_size_bytes\{[^}]*\} [1-9]/m,
      /^sluice_data_disk_free_bytes\{[^}]*\} [1-9]/m,
      /^sluice_sla_timer_overdue_seconds\{[^}]*\} 0$/m,
      /^sluice_ready\{[^}]*check="consumers_running"[^}]*\} 1$/m,
    ];
    const text = await waitFor(async () => {
      const body = await (await fetch(`${httpBase(sluice)}/metrics`)).text();
      return wanted.every((re) => re.test(body)) ? body : null;
    }, "metrics with a dead letter, a reservation, a refusal and histogram buckets");
    await expectPromtoolClean(text);
    // The gauges promtool refused are gone; their counts stay, by type.
    expect(text).not.toMatch(/^nodejs_active_(handles|requests|resources)_total/m);
    expect(text).toMatch(/^process_resident_memory_bytes\{/m);
    expect(fatal).toEqual([]);
  });

  test("every metric Sluice can serve passes promtool check metrics (each event once)", async () => {
    const events = new Instrumentation();
    const metrics = createMetrics(events, "lint");
    emitEvery(events);
    // The HTTP port counts through Metrics.http, not events: once each, as it would.
    metrics.http.refused(401, "read");
    metrics.http.refused(403, "admin");
    metrics.http.action("rules.put", "ops", "ok");
    const text = await metrics.registry.metrics();
    for (const name of [
      "sluice_cluster_partition_moves_total",
      "sluice_cluster_snapshot_last_timestamp_seconds",
      "sluice_http_requests_refused_total",
      "sluice_http_admin_actions_total",
    ])
      expect(text).toContain(`${name}{`);
    await expectPromtoolClean(text);
  });

  test("a partition that leaves the node takes its gauges with it, until it comes back", async () => {
    const events = new Instrumentation();
    const { registry } = createMetrics(events, "n1");
    const series = async () =>
      (await registry.metrics()).split("\n").filter((l) => l.includes('partition="1"'));
    const ledger1 = { stage: "ledger", partition: 1 };
    const sampled = {
      outboxItems: 3,
      timers: 0,
      mapUsedBytes: 8192,
      mapBytesMax: 65536,
      diskFreeBytes: 1e9,
      diskSizeBytes: 2e9,
      timerOverdueMs: 0,
    };
    events.emit("partition_taken", { ...ledger1, how: "kept" });
    events.emit("batch_committed", { ...everyEvent.batch_committed, ...ledger1 });
    events.emit("store_sampled", { ...ledger1, ...sampled });
    expect((await series()).filter((l) => !l.includes("_total"))).toHaveLength(5); // lag, outbox, map used and size, snapshot
    events.emit("partition_handed_off", ledger1);
    // A lag poll that was awaiting the server when the partition left lands after it: dropped.
    events.emit("lag_observed", { ...ledger1, lag: 9 });
    events.emit("store_sampled", { ...ledger1, ...sampled });
    expect(await series()).toEqual([
      'sluice_messages_applied_total{stage="ledger",partition="1",node="n1"} 5',
      'sluice_messages_skipped_total{stage="ledger",partition="1",node="n1"} 1',
    ]);
    events.emit("partition_taken", { ...ledger1, how: "restored" });
    events.emit("lag_observed", { ...ledger1, lag: 9 });
    expect(await series()).toContain(
      'sluice_partition_lag_messages{stage="ledger",partition="1",node="n1"} 9',
    );
  });

  test("orders at risk: each partition's count replaces its series, and leaves with the partition", async () => {
    const events = new Instrumentation();
    const { registry } = createMetrics(events, "n1");
    const atRisk = async () =>
      (await registry.metrics())
        .split("\n")
        .filter((l) => l.startsWith("sluice_orders_at_risk{"))
        .sort();
    events.emit("orders_at_risk", {
      partition: 1,
      counts: [
        { channel: "shopee", warehouse: "w1", count: 2 },
        { channel: "*", warehouse: "none", count: 1 },
      ],
    });
    events.emit("orders_at_risk", {
      partition: 2,
      counts: [{ channel: "shopee", warehouse: "w1", count: 1 }],
    });
    expect(await atRisk()).toHaveLength(3);
    // A later count of partition 1 without the "none" series: that series goes (not left at its last value).
    events.emit("orders_at_risk", {
      partition: 1,
      counts: [{ channel: "shopee", warehouse: "w1", count: 3 }],
    });
    expect(await atRisk()).toEqual([
      'sluice_orders_at_risk{partition="1",channel="shopee",warehouse="w1",node="n1"} 3',
      'sluice_orders_at_risk{partition="2",channel="shopee",warehouse="w1",node="n1"} 1',
    ]);
    events.emit("partition_taken", { stage: "order", partition: 2, how: "kept" });
    events.emit("partition_handed_off", { stage: "order", partition: 2 });
    events.emit("orders_at_risk", {
      partition: 2,
      counts: [{ channel: "shopee", warehouse: "w1", count: 5 }],
    });
    expect(await atRisk()).toEqual([
      'sluice_orders_at_risk{partition="1",channel="shopee",warehouse="w1",node="n1"} 3',
    ]);
  });

  test("the rules pass promtool check rules and their unit tests", async () => {
    const checked = await promtool(["check", "rules", rulesFile]);
    expect(checked.output).toMatch(/SUCCESS: \d+ rules found/);
    expect(checked.code).toBe(0);
    const tested = await promtool(["test", "rules", rulesTestFile]);
    if (tested.code !== 0) throw new Error(`promtool test rules ${rulesTestFile} failed:\n${tested.output}`);
    expect(tested.output).toContain("SUCCESS");
  });

  test("every alert has a severity, a summary, a description, a runbook entry, and tests both ways", () => {
    const alerts = rulesOf().filter((r) => r.alert !== undefined);
    expect(alerts.length).toBeGreaterThan(20);
    const anchors = anchorsOf(readFileSync(runbookFile, "utf8"));
    const tests = (
      YAML.parse(readFileSync(rulesTestFile, "utf8")) as {
        tests: Array<{ alert_rule_test?: RuleTest[] }>;
      }
    ).tests.flatMap((t) => t.alert_rule_test ?? []);
    const problems: string[] = [];
    for (const rule of alerts) {
      const name = rule.alert ?? "";
      if (!["critical", "warning"].includes(rule.labels?.severity ?? "")) problems.push(`${name}: severity`);
      if (!rule.annotations?.summary || !rule.annotations.description)
        problems.push(`${name}: summary, description`);
      const url = rule.annotations?.runbook_url ?? "";
      const [file, anchor] = url.split("#");
      if (file !== runbookFile || anchor !== name.toLowerCase() || !anchors.has(anchor))
        problems.push(
          `${name}: runbook_url ${url} (wanted ${runbookFile}#${name.toLowerCase()}, a heading there)`,
        );
      const mine = tests.filter((t) => t.alertname === name);
      if (!mine.some((t) => t.exp_alerts.length > 0)) problems.push(`${name}: no test where it fires`);
      if (!mine.some((t) => t.exp_alerts.length === 0))
        problems.push(`${name}: no test where it stays quiet`);
    }
    expect(problems).toEqual([]);
  });

  test("the rules name only metrics that Sluice or the sink serve", async () => {
    const sluiceEvents = new Instrumentation();
    const metrics = createMetrics(sluiceEvents, "n");
    metrics.readiness([{ name: "nats_connected", ok: () => true }]);
    const served = await sampleNames(metrics.registry);
    for (const name of await sampleNames(createSinkMetrics(new SinkInstrumentation(), "erp")))
      served.add(name);
    const recorded = new Set(rulesOf().flatMap((r) => (r.record === undefined ? [] : [r.record])));
    const unknown: string[] = [];
    const read = new Set<string>();
    for (const rule of rulesOf()) {
      const expr = rule.expr.replace(/"[^"]*"/g, '""'); // label values ("sluice.out") are not names
      // Every metric these rules read is Sluice's (sluice_*), the runtime's (process_*, nodejs_*) or `up`; a
      // name with colons is a recording rule's (level:metric:operation) and must be recorded here.
      for (const [name] of expr.matchAll(/(?<![\w:])(?:sluice|process|nodejs)_\w+(?![\w:])/g)) {
        read.add(name);
        if (!served.has(name)) unknown.push(`${rule.alert ?? rule.record}: ${name} is not served`);
      }
      for (const [name] of expr.matchAll(/(?<![\w:])\w+:\w+:\w+(?![\w:])/g))
        if (!recorded.has(name)) unknown.push(`${rule.alert ?? rule.record}: ${name} is not recorded`);
    }
    expect(unknown).toEqual([]);
    expect(read.size).toBeGreaterThan(30); // the pattern found the names (not a test that passes on nothing)
  });
});
