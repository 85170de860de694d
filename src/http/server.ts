import type { Server } from "bun";
import type { Config } from "../config/index.ts";
import { available, type SkuState } from "../domain/ledger/index.ts";
import type { Metrics } from "../metrics/index.ts";
import type { PartitionStore } from "../store/index.ts";
import { skuPartition } from "../stream/subjects.ts";

export type ReadinessCheck = { name: string; ok: () => boolean };

export type HttpDeps = {
  config: Config;
  metrics: Metrics;
  readiness: ReadinessCheck[];
  /** The store of a ledger partition (reads see committed state only). */
  ledgerStore: (partition: number) => PartitionStore | undefined;
};

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });

/** The operator's edge: /healthz, /readyz, /metrics and the read API under /v1. */
export function startHttp(deps: HttpDeps): Server<undefined> {
  const { config } = deps;
  return Bun.serve({
    hostname: config.http.host,
    port: config.http.port,
    routes: {
      "/healthz": () => json(200, { status: "alive" }),
      "/readyz": () => {
        const checks = Object.fromEntries(deps.readiness.map((c) => [c.name, c.ok()]));
        const ready = Object.values(checks).every(Boolean);
        return json(ready ? 200 : 503, { status: ready ? "ready" : "not_ready", checks });
      },
      "/metrics": async () =>
        new Response(await deps.metrics.registry.metrics(), {
          headers: { "Content-Type": deps.metrics.contentType },
        }),
      "/v1/stock/:sku": (req) => stockView(deps, decodeURIComponent(req.params.sku)),
      "/v1/stock/:sku/entries": (req) =>
        entriesView(deps, decodeURIComponent(req.params.sku), new URL(req.url)),
    },
    fetch: () => json(404, { error: "not_found", fix: "see docs/http.md for the endpoints" }),
    error: (error) => json(500, { error: "internal", message: error.message }),
  });
}

function storeOf(deps: HttpDeps, sku: string) {
  const partition = skuPartition(sku, deps.config.streams.partitionCount);
  return { partition, store: deps.ledgerStore(partition) };
}

function stockView(deps: HttpDeps, sku: string): Response {
  const { partition, store } = storeOf(deps, sku);
  if (store === undefined) return json(503, { error: "partition_not_local", partition });
  const state = store.getSku(sku);
  if (state === undefined)
    return json(404, { error: "unknown_sku", sku, partition, fix: "no event has named this SKU yet" });
  return json(200, renderSku(state, partition));
}

export function renderSku(state: SkuState, partition: number) {
  const positions: Record<string, unknown> = {};
  for (const [warehouse, p] of Object.entries(state.positions))
    positions[warehouse] = { ...p, available: available(p) };
  return { sku: state.sku, partition, version: state.version, positions };
}

function entriesView(deps: HttpDeps, sku: string, url: URL): Response {
  const { partition, store } = storeOf(deps, sku);
  if (store === undefined) return json(503, { error: "partition_not_local", partition });
  const limitMax = deps.config.ledger.entriesPageCountMax;
  const after = Number(url.searchParams.get("after") ?? "0");
  const limit = Number(url.searchParams.get("limit") ?? String(Math.min(100, limitMax)));
  if (!Number.isSafeInteger(after) || after < 0)
    return json(400, { error: "bad_after", fix: "after=<version ≥ 0>" });
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > limitMax) {
    return json(400, { error: "bad_limit", fix: `limit=<1..${limitMax}> (ledger.entriesPageCountMax)` });
  }
  const entries = store.entriesOf(sku, after, limit);
  const last = entries[entries.length - 1];
  return json(200, { sku, partition, entries, next: entries.length === limit && last ? last.version : null });
}
