import type { Server } from "bun";
import type { Config } from "../config/index.ts";
import { atsOf } from "../domain/channels/index.ts";
import { available, type LedgerEntry, type SkuHistory, type SkuState } from "../domain/ledger/index.ts";
import { serving, syncedChannels } from "../domain/network/index.ts";
import type { Order } from "../domain/orders/index.ts";
import { idsForJson, own, ownEntries } from "../domain/own.ts";
import type { Metrics } from "../metrics/index.ts";
import { type RulesStore, validateRules } from "../rules/store.ts";
import { type PastOrder, whatIf } from "../rules/what-if.ts";
import { checkLedgerPartition, isConsistent } from "../stages/ledger/check.ts";
import type { LedgerReadView, RoutingPort } from "../stages/order/routing-view.ts";
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
  rules: RulesStore;
  routingView: LedgerReadView | RoutingPort;
  /** The last N orders of the order stream (for what-if). */
  recentOrders: (count: number) => Promise<PastOrder[]>;
  /** Starts a channel's full stock resync in every local ledger partition; returns how many. */
  resync: (channel: string) => number;
  /** Cluster mode: this node's view of the cluster (GET /v1/cluster, who owns a partition); else null. */
  cluster: ClusterPort | null;
};

/** What HTTP reads of the cluster member (src/cluster/member.ts). */
export type ClusterPort = {
  status(): Promise<unknown>;
  /** The node that owns a partition as of the last round, with its HTTP address; null when none. */
  ownerOf(stage: "ledger" | "order", index: number): { node: string; http: string | null } | null;
};

/** A partition this node does not run: 503, and in cluster mode the node that does. */
function notLocal(deps: HttpDeps, stage: "ledger" | "order", partition: number): Response {
  const owner = deps.cluster?.ownerOf(stage, partition) ?? null;
  return json(503, {
    error: "partition_not_local",
    stage,
    partition,
    ...(owner === null
      ? {}
      : { owner, fix: owner.http === null ? `ask node ${owner.node}` : `ask ${owner.http}` }),
  });
}

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body, idsForJson), { status, headers: { "Content-Type": "application/json" } });

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
      "/v1/stock/:sku/ats": (req) => atsView(deps, req.params.sku),
      "/v1/channels/:channel/resync": { POST: (req) => resyncView(deps, req.params.channel) },
      "/v1/orders/:channel/:orderId": (req) => orderView(deps, req.params.channel, req.params.orderId),
      "/v1/ledger/check": () => ledgerCheck(deps),
      "/v1/network": () => json(200, deps.rules.network()),
      "/v1/rules": {
        GET: () =>
          json(200, {
            inForce: deps.rules.network().version,
            refusal: deps.rules.refusal(),
            rules: deps.rules.raw(),
          }),
        PUT: (req) => putRules(deps, req),
      },
      "/v1/rules/versions": async () => json(200, { versions: await deps.rules.versions() }),
      "/v1/rules/what-if": { POST: (req) => whatIfView(deps, req) },
      "/v1/routing/load": () => json(200, loadView(deps)),
      "/v1/cluster": async () =>
        deps.cluster === null
          ? json(404, {
              error: "not_a_cluster",
              fix: "cluster.enabled is off: this process owns every partition",
            })
          : json(200, await deps.cluster.status()),
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
  if (store === undefined) return notLocal(deps, "ledger", partition);
  const state = store.get<SkuState>("skus", sku);
  if (state === undefined)
    return json(404, { error: "unknown_sku", sku, partition, fix: "no event has named this SKU yet" });
  return json(200, renderSku(state, partition));
}

export function renderSku(state: SkuState, partition: number) {
  // Built with fromEntries: a warehouse id such as "__proto__" stays an ordinary key (src/domain/own.ts).
  const positions = Object.fromEntries(
    ownEntries(state.positions).map(([warehouse, p]) => [warehouse, { ...p, available: available(p) }]),
  );
  return { sku: state.sku, partition, version: state.version, positions };
}

function entriesView(deps: HttpDeps, sku: string, url: URL): Response {
  const { partition, store } = storeOf(deps, sku);
  if (store === undefined) return notLocal(deps, "ledger", partition);
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
  return json(200, {
    sku,
    partition,
    history: historyView(store, sku),
    entries,
    next: entries.length === limit && last ? last.version : null,
  });
}

/**
 * Where the SKU's history starts: retention folds entries older than ledger.entriesRetentionMs into a
 * snapshot and removes them, so the first entry kept is `firstVersion` and the positions before it are the
 * snapshot's (positions = snapshot + the entries from firstVersion on).
 */
function historyView(store: PartitionStore, sku: string) {
  const h = store.hasTable("history") ? store.get<SkuHistory>("history", sku) : undefined;
  if (h === undefined || h.version === 0) return { firstVersion: 1, snapshot: null };
  return {
    firstVersion: h.version + 1,
    snapshot: { version: h.version, atMs: h.atMs, entriesRemoved: h.entriesRemoved, positions: h.positions },
  };
}

function orderView(deps: HttpDeps, channel: string, orderId: string): Response {
  const key = orderKey(channel, orderId);
  const partition = orderPartition(key, deps.config.streams.partitionCount);
  const store = deps.orderStore(partition);
  if (store === undefined) return notLocal(deps, "order", partition);
  const order = store.get<Order>("orders", key);
  if (order !== undefined) return json(200, { ...order, partition });
  // Compacted (orders.finalRetentionMs after it became final): its status and times, no lines or history.
  type Tombstone = import("../domain/orders/index.ts").OrderTombstone;
  const tombstone = store.get<Tombstone>("tombstones", key);
  if (tombstone !== undefined) return json(200, { key, ...tombstone, compacted: true, partition });
  return json(404, { error: "unknown_order", channel, orderId, partition });
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

/** A rule set in a request body: JSON, or TOML when the Content-Type says so. */
async function ruleSetOf(req: Request): Promise<{ ok: true; raw: unknown } | { ok: false; detail: string }> {
  const text = await req.text();
  const toml = (req.headers.get("content-type") ?? "").includes("toml");
  try {
    return { ok: true, raw: toml ? Bun.TOML.parse(text) : JSON.parse(text) };
  } catch (error) {
    return { ok: false, detail: `the body is not ${toml ? "TOML" : "JSON"}: ${(error as Error).message}` };
  }
}

async function putRules(deps: HttpDeps, req: Request): Promise<Response> {
  const body = await ruleSetOf(req);
  const result = body.ok ? await deps.rules.put(body.raw) : deps.rules.refuse(body.detail);
  if (!result.ok) {
    return json(400, {
      error: "invalid_rules",
      detail: result.detail,
      inForce: deps.rules.network().version,
      fix: "correct the rule set and send it again; the one in force is unchanged",
    });
  }
  return json(200, { revision: result.revision, version: result.version });
}

/** One what-if at a time: it routes thousands of orders on the event loop the partitions share. */
let whatIfRunning = false;

async function whatIfView(deps: HttpDeps, req: Request): Promise<Response> {
  if (whatIfRunning)
    return json(429, { error: "what_if_busy", fix: "one what-if runs at a time; try again when it is done" });
  whatIfRunning = true;
  try {
    return await whatIfOnce(deps, req);
  } finally {
    whatIfRunning = false;
  }
}

async function whatIfOnce(deps: HttpDeps, req: Request): Promise<Response> {
  const url = new URL(req.url);
  const max = deps.config.routing.whatIfOrdersMax;
  const count = Number(url.searchParams.get("orders") ?? "1000");
  if (!Number.isSafeInteger(count) || count < 1 || count > max)
    return json(400, { error: "bad_orders", fix: `orders=<1..${max}> (routing.whatIfOrdersMax)` });
  const body = await ruleSetOf(req);
  if (!body.ok) return json(400, { error: "invalid_rules", detail: body.detail });
  const candidate = validateRules(body.raw, "candidate", { idBytesMax: deps.config.ledger.idBytesMax });
  if (!candidate.ok) return json(400, { error: "invalid_rules", detail: candidate.detail });
  const orders = await deps.recentOrders(count);
  return json(200, whatIf(orders, deps.rules.network(), candidate.value, deps.routingView, Date.now()));
}

function loadView(deps: HttpDeps) {
  const load = deps.routingView.snapshot();
  return {
    warehouses: deps.rules.network().warehouses.map((w) => ({
      warehouse: w.id,
      enabled: w.enabled,
      capacityPerDay: w.capacityPerDay,
      loadUnits: load.get(w.id) ?? 0,
    })),
  };
}

/** A SKU's ATS on every synced channel: computed from its positions now, and the value last offered. */
function atsView(deps: HttpDeps, sku: string): Response {
  const { partition, store } = storeOf(deps, sku);
  if (store === undefined) return notLocal(deps, "ledger", partition);
  const state = store.get<SkuState>("skus", sku);
  if (state === undefined)
    return json(404, { error: "unknown_sku", sku, partition, fix: "no event has named this SKU yet" });
  const network = deps.rules.network();
  const channels = Object.fromEntries(
    syncedChannels(network).map((c) => [
      c.id,
      {
        ats: atsOf(state.positions, sku, c.sync, serving(network, c.id).ids),
        offered: own(state.ats, c.id) ?? null,
      },
    ]),
  );
  return json(200, { sku, partition, version: state.version, rules: network.version, channels });
}

function resyncView(deps: HttpDeps, channel: string): Response {
  if (!syncedChannels(deps.rules.network()).some((c) => c.id === channel)) {
    return json(404, {
      error: "unknown_channel",
      channel,
      fix: "only channels listed by id in the rule set have their stock published (sluice rules get)",
    });
  }
  return json(202, { channel, partitions: deps.resync(channel) });
}
