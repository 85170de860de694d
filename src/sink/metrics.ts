import { Counter, Histogram, Registry } from "prom-client";
import { collectRuntimeMetrics } from "../metrics/index.ts";
import type { SinkInstrumentation } from "./events.ts";

// The sink's Prometheus metrics: base units, histograms, bounded labels (the source is one per process; kinds
// and outcomes come from fixed lists; never a SKU, a key or a sequence).

const requestBucketsSeconds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export function createSinkMetrics(events: SinkInstrumentation, source: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ source });
  collectRuntimeMetrics(registry);
  const deliveries = new Counter({
    name: "sluice_sink_deliveries_total",
    help: "Messages settled: delivered (2xx, acked) or dead_lettered (sluice.dlq.sink_failed).",
    labelNames: ["outcome"],
    registers: [registry],
  });
  const retries = new Counter({
    name: "sluice_sink_retries_total",
    help: "Failed attempts that were retried.",
    registers: [registry],
  });
  const failures = new Counter({
    name: "sluice_sink_failures_total",
    help: "Failed attempts by kind: http_4xx, http_429, http_5xx, http_other, network, timeout, aborted, throttled, api_error.",
    labelNames: ["kind"],
    registers: [registry],
  });
  const chain = new Counter({
    name: "sluice_sink_erp_chain_batches_total",
    help: "ERP batches delivered, by how they continue their partition's chain: next, new_chain, first_seen, repeat, gap.",
    labelNames: ["outcome"],
    registers: [registry],
  });
  events.on("erp_chain", (e) => chain.inc({ outcome: e.outcome }));
  const deadLetterFailures = new Counter({
    name: "sluice_sink_dead_letter_failures_total",
    help: "Dead letters that could not be published (the message is redelivered later).",
    registers: [registry],
  });
  const latency = new Histogram({
    name: "sluice_sink_request_duration_seconds",
    help: "Duration of one HTTP request to the endpoint.",
    labelNames: ["ok"],
    buckets: requestBucketsSeconds,
    registers: [registry],
  });
  events.on("request", (e) => latency.observe({ ok: String(e.ok) }, e.seconds));
  events.on("delivered", () => deliveries.inc({ outcome: "delivered" }));
  events.on("dead_lettered", () => deliveries.inc({ outcome: "dead_lettered" }));
  events.on("attempt_failed", (e) => {
    failures.inc({ kind: e.kind });
    if (e.willRetry) retries.inc();
  });
  events.on("dead_letter_failed", () => deadLetterFailures.inc());
  marketplaceMetrics(events, registry);
  return registry;
}

/** GET /metrics on host:port (0 picks a free port); the caller stops it. */
export function serveMetrics(registry: Registry, host: string, port: number) {
  return Bun.serve({
    hostname: host,
    port,
    fetch: async (req) => {
      if (new URL(req.url).pathname !== "/metrics")
        return new Response("not found: try /metrics\n", { status: 404 });
      return new Response(await registry.metrics(), { headers: { "Content-Type": registry.contentType } });
    },
  });
}

/** A marketplace profile's items, dead letters by code, throttle waits and conflicts (zero for generic). */
function marketplaceMetrics(events: SinkInstrumentation, registry: Registry): void {
  const items = new Counter({
    name: "sluice_sink_items_total",
    help: "Stock items settled by a marketplace profile: delivered, superseded, stale, unchanged, dead_lettered.",
    labelNames: ["outcome"],
    registers: [registry],
  });
  events.on("items", (e) => {
    items.inc({ outcome: "delivered" }, e.delivered);
    items.inc({ outcome: "superseded" }, e.superseded);
    items.inc({ outcome: "stale" }, e.stale);
    items.inc({ outcome: "unchanged" }, e.unchanged);
    items.inc({ outcome: "dead_lettered" }, e.deadLettered);
  });
  const itemDeadLetters = new Counter({
    name: "sluice_sink_item_dead_letters_total",
    help: "Stock items dead-lettered alone, by code: item_invalid, sku_unmapped, rejected, attempts_exhausted, throttle_exhausted, conflicts_exhausted.",
    labelNames: ["code"],
    registers: [registry],
  });
  events.on("item_dead_lettered", (e) => itemDeadLetters.inc({ code: e.code }));
  const throttled = new Counter({
    name: "sluice_sink_throttle_wait_seconds_total",
    help: "Time spent waiting for a marketplace's budget (cost bucket, Retry-After, ban).",
    registers: [registry],
  });
  events.on("throttle_wait", (e) => throttled.inc(e.ms / 1000));
  const conflicts = new Counter({
    name: "sluice_sink_conflicts_total",
    help: "Quantities sent again after a compare-and-set conflict (Shopify).",
    registers: [registry],
  });
  events.on("conflict", (e) => conflicts.inc(e.items));
}
