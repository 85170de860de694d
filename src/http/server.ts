import type { Server } from "bun";
import type { Config } from "../config/index.ts";
import { available, type LedgerEntry, type SkuState } from "../domain/ledger/index.ts";
import type { Network } from "../domain/network/index.ts";
import type { Order } from "../domain/orders/index.ts";
import type { Metrics } from "../metrics/index.ts";
import { checkLedgerPartition, isConsistent } from "../stages/ledger/check.ts";
import type { PartitionStore } from "../store/index.ts";
import { orderKey, orderPartition, skuPartition } from "../stream/subjects.ts";

export type ReadinessCheck = { name: string; ok: () => boolean };

export type HttpDeps = {
  config: Config;
  metrics: Metrics;
  readiness: ReadinessCheck[];
  /** The store of a ledger partition (reads see committed state only). */
  ledgerStore: (partition: number) => PartitionStore | undefined;
  orderStore: (partition: number) => PartitionStore | undefined;
  network: () => Network | null;
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
      // Bun has already percent-decoded route parameters: decoding again would misread a SKU with "%".
      "/v1/stock/:sku": (req) => stockView(deps, req.params.sku),
      "/v1/stock/:sku/entries": (req) => entriesView(deps, req.params.sku, new URL(req.url)),
      "/v1/orders/:channel/:orderId": (req) => orderView(deps, req.params.channel, req.params.orderId),
      "/v1/ledger/check": () => ledgerCheck(deps),
      "/v1/network": () => json(200, deps.network()),
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
  const state = store.get<SkuState>("skus", sku);
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
  const entries = store
    .range<LedgerEntry>("entries", {
      start: [sku, after + 1],
      end: [sku, Number.MAX_SAFE_INTEGER],
      limit,
    })
    .map((r) => r.value);
  const last = entries[entries.length - 1];
  return json(200, { sku, partition, entries, next: entries.length === limit && last ? last.version : null });
}

function orderView(deps: HttpDeps, channel: string, orderId: string): Response {
  const key = orderKey(channel, orderId);
  const partition = orderPartition(key, deps.config.streams.partitionCount);
  const store = deps.orderStore(partition);
  if (store === undefined) return json(503, { error: "partition_not_local", partition });
  const order = store.get<Order>("orders", key);
  if (order === undefined) return json(404, { error: "unknown_order", channel, orderId, partition });
  return json(200, { ...order, partition });
}

function ledgerCheck(deps: HttpDeps): Response {
  const partitions = [];
  for (let p = 0; p < deps.config.streams.partitionCount; p++) {
    const store = deps.ledgerStore(p);
    if (store !== undefined) partitions.push(checkLedgerPartition(store, p));
  }
  const consistent = partitions.every(isConsistent);
  return json(consistent ? 200 : 500, { consistent, partitions });
}
