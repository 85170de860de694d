import { createHmac } from "node:crypto";
import { type Faults, json, MockLog, prng, RateLimit, serve } from "./common.ts";

// A Shopee Open Platform v2 written from its public docs, for POST /api/v2/product/update_stock only:
// - common parameters in the query: partner_id, timestamp (seconds, within 5 minutes), access_token, shop_id,
//   sign = hex HMAC-SHA256(partner key, partner_id + path + timestamp + access_token + shop_id); a bad sign →
//   HTTP 403 error_sign; a wrong token → 403 error_auth;
// - the body is ONE item: {item_id, stock_list}; an array, an item list or anything else is a breach (refused
//   with error_param); stock_list holds 1 to 50 models, each with seller_stock [{location_id?, stock ≥ 0}];
// - an unknown item → error_item_not_found; an unknown model → failure_list (the other models are set);
// - at most `callsPerSecondMax` calls a second, and `throttleRate` at random: HTTP 429 with Retry-After: 1;
//   a call before that second is over is a breach.
// Errors follow Shopee's {request_id, error, message, response} shape; the texts are the mock's own.

export const shopeeModelsPerCallMax = 50;
const apiPath = "/api/v2/product/update_stock";

export type ShopeeMockOptions = {
  partnerId: number;
  partnerKey: string;
  shopId: number;
  accessToken: string;
  /** Known items, their model ids (0: no variations) and, for multi-location shops, their locations. */
  items: Array<{ itemId: number; models: number[]; locations?: string[] }>;
  callsPerSecondMax?: number;
  faults?: Faults;
};

export function startShopeeMock(o: ShopeeMockOptions) {
  const log = new MockLog();
  /** "item/model@location" (location "" when none) → stock. */
  const stock = new Map<string, number>();
  const models = new Map(o.items.map((i) => [i.itemId, new Set(i.models)]));
  const random = prng(o.faults?.seed ?? 1);
  const limit = new RateLimit(o.callsPerSecondMax ?? 1000, 1000);
  let signatureFailures = 0;

  const server = serve(async (req) => {
    const url = new URL(req.url);
    if (req.method !== "POST" || url.pathname !== apiPath)
      return json({ error: "error_not_found", message: url.pathname }, 404);
    const q = Object.fromEntries(url.searchParams);
    const auth = checkAuth(q, o);
    if (auth !== null) {
      if (auth === "error_sign") signatureFailures++;
      log.note("update_stock", 0, auth);
      return json(
        {
          request_id: "mock",
          error: auth,
          message: auth === "error_sign" ? "Wrong sign." : "Invalid access_token.",
        },
        403,
      );
    }
    const rate = limit.check(Date.now(), random() < (o.faults?.throttleRate ?? 0));
    if (rate === "banned") log.violations.push("a call before Retry-After was over");
    if (rate !== "ok") {
      log.note("update_stock", 0, "429");
      return json(
        { request_id: "mock", error: "error_too_many_request", message: "too many requests" },
        429,
        { "Retry-After": "1" },
      );
    }
    if (random() < (o.faults?.serverErrorRate ?? 0)) {
      log.note("update_stock", 0, "500");
      return json({ request_id: "mock", error: "error_server", message: "mock fault" }, 500);
    }
    return update(await req.json().catch(() => null));
  });

  function refuse(why: string, size = 0): Response {
    log.violations.push(why);
    log.note("update_stock", size, "error_param");
    return json({ request_id: "mock", error: "error_param", message: why });
  }

  type Entry = { model_id?: unknown; seller_stock?: Array<{ location_id?: unknown; stock?: unknown }> };
  function update(body: unknown): Response {
    if (Array.isArray(body)) return refuse("more than one item in one call (an array)");
    if (typeof body !== "object" || body === null) return refuse("the body is not a JSON object");
    const b = body as { item_id?: unknown; stock_list?: Entry[] };
    const extra = Object.keys(b).filter((k) => k !== "item_id" && k !== "stock_list");
    if (extra.length > 0)
      return refuse(`more than one item in one call, or unknown fields: ${extra.join(", ")}`);
    if (typeof b.item_id !== "number") return refuse("item_id must be one number: one item per call");
    const list = b.stock_list;
    if (!Array.isArray(list) || list.length < 1 || list.length > shopeeModelsPerCallMax)
      return refuse(
        `stock_list must hold 1 to ${shopeeModelsPerCallMax} models`,
        Array.isArray(list) ? list.length : 0,
      );
    const known = models.get(b.item_id);
    if (known === undefined) {
      log.note("update_stock", list.length, "error_item_not_found");
      return json({
        request_id: "mock",
        error: "error_item_not_found",
        message: `item ${b.item_id} not found`,
      });
    }
    const success: unknown[] = [];
    const failure: unknown[] = [];
    for (const e of list) {
      const model = e.model_id === undefined ? 0 : e.model_id;
      if (typeof model !== "number") return refuse("model_id must be a number", list.length);
      if (!Array.isArray(e.seller_stock) || e.seller_stock.length === 0)
        return refuse("seller_stock is empty", list.length);
      if (!known.has(model)) {
        failure.push({ model_id: model, failed_reason: "model not found" });
        continue;
      }
      for (const s of e.seller_stock) {
        if (typeof s.stock !== "number" || !Number.isInteger(s.stock) || s.stock < 0)
          return refuse("stock must be whole and ≥ 0", list.length);
        const location = typeof s.location_id === "string" ? s.location_id : "";
        stock.set(`${b.item_id}/${model}@${location}`, s.stock);
        success.push({ model_id: model, location_id: location, stock: s.stock });
      }
    }
    log.note("update_stock", list.length, failure.length === 0 ? "ok" : "partial");
    return json({
      request_id: "mock",
      error: "",
      message: "",
      response: { failure_list: failure, success_list: success },
    });
  }

  return {
    url: `http://127.0.0.1:${server.port}`,
    stock: (itemId: number, modelId: number, location = "") => stock.get(`${itemId}/${modelId}@${location}`),
    log,
    signatureFailures: () => signatureFailures,
    /** The client restarted: it knows of no ban. */
    newClient: () => limit.newClient(),
    stop: () => server.stop(true),
  };
}

/** The mock's own check, written from Shopee's docs (not the sink's code). */
function checkAuth(q: Record<string, string>, o: ShopeeMockOptions): string | null {
  const base = `${q.partner_id}${apiPath}${q.timestamp}${q.access_token}${q.shop_id}`;
  if (q.sign !== createHmac("sha256", o.partnerKey).update(base).digest("hex")) return "error_sign";
  if (Math.abs(Date.now() / 1000 - Number(q.timestamp)) > 300) return "error_sign";
  if (q.partner_id !== String(o.partnerId) || q.shop_id !== String(o.shopId)) return "error_auth";
  if (q.access_token !== o.accessToken) return "error_auth";
  return null;
}
