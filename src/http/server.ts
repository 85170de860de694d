import type { Server } from "bun";
import type { Config } from "../config/index.ts";
import { atsOf } from "../domain/channels/index.ts";
import { available, type LedgerEntry, type SkuHistory, type SkuState } from "../domain/ledger/index.ts";
import { kitOf, serving, syncedChannels } from "../domain/network/index.ts";
import type { AtRiskRow, Order } from "../domain/orders/index.ts";
import { idsForJson, own, ownEntries } from "../domain/own.ts";
import { isLogLevel, Logger } from "../log/index.ts";
import type { Metrics } from "../metrics/index.ts";
import { type RulesStore, validateRules } from "../rules/store.ts";
import { type PastOrder, whatIf } from "../rules/what-if.ts";
import { KitsAts } from "../stages/kits-ats.ts";
import { isConsistent } from "../stages/ledger/check.ts";
import { waitingHeadOf, waitingPage } from "../stages/ledger/waiting.ts";
import type { LedgerReadView, RoutingPort } from "../stages/order/routing-view.ts";
import type { PartitionStore } from "../store/index.ts";
import { orderKey, orderPartition, skuPartition } from "../stream/subjects.ts";
import { authorize, parseTokens, type Scope, type Token, type Verdict } from "./auth.ts";
import { LedgerChecks } from "./ledger-check.ts";

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
  /**
   * Where the audit lines of operate and admin actions go (the process's logger); without it, a logger of
   * the configured level on stdout, as the process's own.
   */
  log?: Logger;
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

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body, idsForJson), {
    status,
    headers: { "Content-Type": "application/json", ...headers },
  });

/** What the routes share: the deps, the tokens, the audit log and the one ledger check that may run. */
type Ctx = { deps: HttpDeps; tokens: readonly Token[]; audit: Logger; checks: LedgerChecks };

/**
 * A request refused by authorize(): counted by status and the scope needed (never by token or path), then
 * answered: 401 says what is missing, 403 which scope it needs and which it has.
 */
function denied(ctx: Ctx, v: Exclude<Verdict, { ok: true }>, need: Scope): Response {
  ctx.deps.metrics.http.refused(v.status, need);
  if (v.status === 401) {
    return json(
      401,
      { error: "unauthorized", detail: v.detail, fix: "send Authorization: Bearer <token> (http.tokens)" },
      // RFC 6750 §3: a request without credentials gets the bare challenge, a wrong token says so.
      {
        "WWW-Authenticate":
          v.detail === "no Authorization header" ? "Bearer" : 'Bearer error="invalid_token"',
      },
    );
  }
  return json(403, {
    error: "forbidden",
    need,
    have: v.have,
    token: v.who,
    fix: `use a token whose scope is ${need}${need === "admin" ? "" : " or above"}`,
  });
}

type Handler<R extends Request> = (req: R, server: Server<undefined>) => Response | Promise<Response>;

/** A read: any token of scope `need` (read), or anyone when `need` is null (an open probe or /metrics). */
function guard<R extends Request>(ctx: Ctx, need: Scope | null, handler: Handler<R>): Handler<R> {
  return (req, server) => {
    const v = authorize(ctx.tokens, req.headers.get("authorization"), need);
    // authorize() refuses only when `need` is a scope: null lets anyone in.
    if (!v.ok) return denied(ctx, v, need as Scope);
    return handler(req, server);
  };
}

/** What an operate or admin handler adds to its audit line: what it acted on, and fields of the outcome. */
type Audit = { target: string; fields: Record<string, unknown> };

/**
 * An operate or admin action: authorized, then run, and logged with who asked, what and how it ended
 * (`admin action`, info), refusals included. Counted too: refusals in sluice_http_requests_refused_total (as
 * every refusal), actions run in sluice_http_admin_actions_total. Reads are not logged: they change nothing.
 */
function act<R extends Request>(
  ctx: Ctx,
  need: "operate" | "admin",
  action: string,
  target: (req: R) => string,
  handler: (req: R, audit: Audit) => Response | Promise<Response>,
): Handler<R> {
  return async (req, server) => {
    const from = server.requestIP(req)?.address ?? null;
    const v = authorize(ctx.tokens, req.headers.get("authorization"), need);
    // The target comes from the request, before authorization: cut to an id's length (ledger.idBytesMax).
    const audit: Audit = { target: target(req).slice(0, 256), fields: {} };
    const log = (who: string, status: number) =>
      ctx.audit.info("admin action", {
        who,
        action,
        target: audit.target,
        outcome: outcomeOf(status),
        status,
        from,
        ...audit.fields,
      });
    if (!v.ok) {
      log(v.status === 403 ? v.who : "unknown (no valid token)", v.status);
      return denied(ctx, v, need);
    }
    // Counted by the token's name (http.tokens, bounded), as the audit line names it.
    const token = ctx.tokens.length === 0 ? "anonymous" : v.who;
    const done = (status: number) => {
      log(v.who, status);
      ctx.deps.metrics.http.action(action, token, outcomeOf(status));
    };
    try {
      const response = await handler(req, audit);
      done(response.status);
      return response;
    } catch (error) {
      done(500);
      throw error;
    }
  };
}

const outcomes: Record<number, string> = {
  200: "ok",
  202: "accepted",
  400: "refused",
  401: "unauthorized",
  403: "forbidden",
  404: "not_found",
  429: "busy",
  500: "failed",
  503: "timeout",
};
const outcomeOf = (status: number) => outcomes[status] ?? `http_${status}`;

/** The operator's edge: /healthz, /readyz, /metrics and the API under /v1 (docs/http.md; scopes there). */
export function startHttp(deps: HttpDeps): Server<undefined> {
  const { config } = deps;
  const parsed = parseTokens(config.http.tokens);
  // loadConfig refused a bad http.tokens already (a relation); this is its double check.
  if (!parsed.ok) throw new Error(`http.tokens is invalid: ${parsed.detail}`);
  const audit =
    deps.log ??
    new Logger(isLogLevel(config.log.level) ? config.log.level : "info", { node: config.node.name });
  const ctx: Ctx = { deps, tokens: parsed.tokens, audit, checks: new LedgerChecks() };
  const probes: Scope | null = config.http.probesTokenRequired ? "read" : null;
  const scrape: Scope | null = config.http.metricsTokenRequired ? "read" : null;
  return Bun.serve({
    hostname: config.http.host,
    port: config.http.port,
    routes: {
      "/healthz": guard(ctx, probes, () => json(200, { status: "alive" })),
      "/readyz": guard(ctx, probes, () => {
        const checks = Object.fromEntries(deps.readiness.map((c) => [c.name, c.ok()]));
        const ready = Object.values(checks).every(Boolean);
        return json(ready ? 200 : 503, { status: ready ? "ready" : "not_ready", checks });
      }),
      "/metrics": guard(
        ctx,
        scrape,
        async () =>
          new Response(await deps.metrics.registry.metrics(), {
            headers: { "Content-Type": deps.metrics.contentType },
          }),
      ),
      // Bun has already percent-decoded route parameters: decoding again would misread a SKU with "%".
      "/v1/stock/:sku": guard(ctx, "read", (req) => stockView(deps, req.params.sku)),
      "/v1/stock/:sku/entries": guard(ctx, "read", (req) =>
        entriesView(deps, req.params.sku, new URL(req.url)),
      ),
      "/v1/stock/:sku/ats": guard(ctx, "read", (req) => atsView(deps, req.params.sku)),
      "/v1/stock/:sku/waiting": guard(ctx, "read", (req) =>
        waitingView(deps, req.params.sku, new URL(req.url)),
      ),
      "/v1/channels/:channel/resync": {
        POST: act(
          ctx,
          "operate",
          "channel.resync",
          (req) => req.params.channel,
          (req) => resyncView(deps, req.params.channel),
        ),
      },
      "/v1/orders": guard(ctx, "read", (req) => ordersList(deps, new URL(req.url))),
      "/v1/orders/:channel/:orderId": guard(ctx, "read", (req) =>
        orderView(deps, req.params.channel, req.params.orderId),
      ),
      // admin: it reads every entry of every local ledger partition.
      "/v1/ledger/check": act(
        ctx,
        "admin",
        "ledger.check",
        () => "ledger",
        (_req, audit) => ledgerCheck(ctx, audit),
      ),
      "/v1/network": guard(ctx, "read", () => json(200, deps.rules.network())),
      "/v1/rules": {
        GET: guard(ctx, "read", () =>
          json(200, {
            inForce: deps.rules.network().version,
            refusal: deps.rules.refusal(),
            rules: deps.rules.raw(),
          }),
        ),
        PUT: act(
          ctx,
          "admin",
          "rules.put",
          () => "rules",
          (req, audit) => putRules(deps, req, audit),
        ),
      },
      "/v1/rules/versions": guard(ctx, "read", async () =>
        json(200, { versions: await deps.rules.versions() }),
      ),
      "/v1/rules/what-if": {
        POST: act(
          ctx,
          "operate",
          "rules.what-if",
          (req) => `orders=${new URL(req.url).searchParams.get("orders") ?? "1000"}`,
          (req) => whatIfView(deps, req),
        ),
      },
      "/v1/routing/load": guard(ctx, "read", () => json(200, loadView(deps))),
      "/v1/cluster": guard(ctx, "read", async () =>
        deps.cluster === null
          ? json(404, {
              error: "not_a_cluster",
              fix: "cluster.enabled is off: this process owns every partition",
            })
          : json(200, await deps.cluster.status()),
      ),
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
 * The SKU's backorders waiting for stock, in the order they will be filled (priority, then arrival), paged by
 * place: `offset` lines skipped, at most `limit` (ledger.waitingPageCountMax). `offset` needs no bound of its
 * own: the range covers one SKU's list, at most ledger.waitingLinesPerSkuMax lines, so a larger offset reads
 * no more than that and answers an empty page. A SKU nobody waits for has an
 * empty list, not a 404: whether a SKU exists is GET /v1/stock/<sku>.
 */
function waitingView(deps: HttpDeps, sku: string, url: URL): Response {
  const { partition, store } = storeOf(deps, sku);
  if (store === undefined) return notLocal(deps, "ledger", partition);
  const limitMax = deps.config.ledger.waitingPageCountMax;
  const offset = Number(url.searchParams.get("offset") ?? "0");
  const limit = Number(url.searchParams.get("limit") ?? String(Math.min(100, limitMax)));
  if (!Number.isSafeInteger(offset) || offset < 0)
    return json(400, { error: "bad_offset", fix: "offset=<lines to skip ≥ 0>" });
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > limitMax) {
    return json(400, { error: "bad_limit", fix: `limit=<1..${limitMax}> (ledger.waitingPageCountMax)` });
  }
  // A store opened with an older table list has no waiting lists.
  const tables = store.hasTable("waiting");
  const count = tables ? (waitingHeadOf(store, sku)?.count ?? 0) : 0;
  const page = tables ? waitingPage(store, sku, offset, limit) : [];
  return json(200, {
    sku,
    partition,
    count,
    lines: page.map((w, i) => ({
      place: offset + i,
      orderKey: w.orderKey,
      lineId: w.lineId,
      attempt: w.attempt,
      qty: w.qty,
      priority: w.priority,
      candidates: w.candidates,
      ...(w.keep === undefined ? {} : { keep: w.keep }),
      sinceMs: w.sinceMs,
    })),
    next: offset + page.length < count ? offset + page.length : null,
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

/**
 * `GET /v1/orders?atRisk=true[&channel=…][&warehouse=…][&limit=…][&offset=…]`: open orders past their at-risk
 * point, the earliest ship-by first (ties by order key), read from each local order partition's atRisk index
 * (only orders at risk are in it). Paged by place: `offset` skipped (at most orders.atRiskOffsetMax), at most
 * `limit` (orders.atRiskPageCountMax); each partition reads at most offset + limit + 1 rows that pass the filters. A partition this node does not
 * run (cluster mode, or not open yet) is named in `partitionsNotLocal`, with its owner where known: ask it.
 */
function ordersList(deps: HttpDeps, url: URL): Response {
  const q = url.searchParams;
  if (q.get("atRisk") !== "true") {
    return json(400, {
      error: "bad_query",
      fix: "atRisk=true lists the orders at risk of missing their ship-by; one order: /v1/orders/{channel}/{orderId}",
    });
  }
  const limitMax = deps.config.orders.atRiskPageCountMax;
  const offset = Number(q.get("offset") ?? "0");
  const limit = Number(q.get("limit") ?? String(Math.min(100, limitMax)));
  if (!Number.isSafeInteger(offset) || offset < 0)
    return json(400, { error: "bad_offset", fix: "offset=<orders to skip ≥ 0>" });
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > limitMax)
    return json(400, { error: "bad_limit", fix: `limit=<1..${limitMax}> (orders.atRiskPageCountMax)` });
  // Each partition reads offset + limit rows synchronously: a deep offset would hold the HTTP thread.
  const offsetMax = deps.config.orders.atRiskOffsetMax;
  if (offset > offsetMax)
    return json(400, {
      error: "bad_offset",
      fix: `offset=<0..${offsetMax}> (orders.atRiskOffsetMax); to reach deeper orders, narrow the list with channel=<id> or warehouse=<id>`,
    });
  const channel = q.get("channel");
  const warehouse = q.get("warehouse");
  const wanted = (r: AtRiskRow) =>
    (channel === null || r.channel === channel) &&
    (warehouse === null ||
      (warehouse === "none" ? r.warehouses.length === 0 : r.warehouses.includes(warehouse)));
  const rows: Array<AtRiskRow & { partition: number }> = [];
  const listed: number[] = [];
  const notLocal: Array<{ partition: number; owner: { node: string; http: string | null } | null }> = [];
  let more = false;
  for (let p = 0; p < deps.config.streams.partitionCount; p++) {
    const store = deps.orderStore(p);
    if (store === undefined) {
      notLocal.push({ partition: p, owner: deps.cluster?.ownerOf("order", p) ?? null });
      continue;
    }
    listed.push(p);
    if (!store.hasTable("atRisk")) continue;
    let taken = 0;
    for (const { value } of store.rangeLazy<AtRiskRow>("atRisk")) {
      if (!wanted(value)) continue;
      if (taken === offset + limit) {
        more = true;
        break;
      }
      rows.push({ ...value, partition: p });
      taken++;
    }
  }
  rows.sort((a, b) => a.shipByMs - b.shipByMs || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const page = rows.slice(offset, offset + limit);
  more ||= rows.length > offset + limit;
  return json(200, {
    orders: page,
    next: more ? offset + page.length : null,
    partitionsListed: listed,
    partitionsNotLocal: notLocal,
  });
}

/**
 * Every local ledger partition rebuilt from its entries and compared, bounded (LedgerChecks): in a worker
 * thread, one at a time (429 while one runs), answered within http.ledgerCheckMsMax (503 with the partitions
 * checked so far when it runs out).
 */
async function ledgerCheck(ctx: Ctx, audit: Audit): Promise<Response> {
  const { deps } = ctx;
  const local: number[] = [];
  for (let p = 0; p < deps.config.streams.partitionCount; p++)
    if (deps.ledgerStore(p) !== undefined) local.push(p);
  const limitMs = deps.config.http.ledgerCheckMsMax;
  const o = await ctx.checks.run(deps.config, local, limitMs);
  switch (o.kind) {
    case "busy":
      return json(429, {
        error: "busy",
        fix: "one ledger check runs at a time; try again when it is done (or run sluice ledger check)",
      });
    case "done": {
      const consistent = o.partitions.every(isConsistent);
      audit.fields.consistent = consistent;
      return json(consistent ? 200 : 500, { consistent, partitions: o.partitions });
    }
    case "timeout":
      audit.fields.partitionsChecked = o.partitions.length;
      return json(503, {
        error: "check_timeout",
        detail: `checked ${o.partitions.length} of ${o.total} partitions within ${limitMs} ms (http.ledgerCheckMsMax)`,
        partitionsChecked: o.partitions.length,
        partitionsTotal: o.total,
        consistentSoFar: o.partitions.every(isConsistent),
        partitions: o.partitions,
        fix: "raise http.ledgerCheckMsMax, or run sluice ledger check (read-only, next to the running Sluice)",
      });
    case "failed":
      return json(500, {
        error: "check_failed",
        partition: o.partition,
        message: o.message,
        partitions: o.partitions,
      });
  }
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

async function putRules(deps: HttpDeps, req: Request, audit: Audit): Promise<Response> {
  const body = await ruleSetOf(req);
  const result = body.ok ? await deps.rules.put(body.raw) : deps.rules.refuse(body.detail);
  if (!result.ok) {
    audit.fields.detail = result.detail;
    return json(400, {
      error: "invalid_rules",
      detail: result.detail,
      inForce: deps.rules.network().version,
      fix: "correct the rule set and send it again; the one in force is unchanged",
    });
  }
  audit.fields.version = result.version;
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
  const network = deps.rules.network();
  const kit = kitOf(network, sku);
  if (kit !== undefined) {
    // A kit has no positions: the minimum over its components (docs/kits.md), as its sync tick offers it.
    const value = new KitsAts(() => network, deps.routingView, deps.config.streams.partitionCount).compute(
      kit,
    );
    if (value === null)
      return json(503, { error: "components_unknown", sku, fix: "a component is not known here yet; retry" });
    const channels = Object.fromEntries(
      value.channels.map((c) => [c.channel, { ats: c.ats, offered: null }]),
    );
    return json(200, { sku, partition, kit: true, version: value.version, rules: network.version, channels });
  }
  const state = store.get<SkuState>("skus", sku);
  if (state === undefined)
    return json(404, { error: "unknown_sku", sku, partition, fix: "no event has named this SKU yet" });
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
