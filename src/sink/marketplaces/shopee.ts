import { createHmac } from "node:crypto";
import { bodySnippet } from "../post.ts";
import { unknownField } from "./mapping.ts";
import type { Secret } from "./secrets.ts";
import {
  type Answer,
  type Call,
  httpVerdict,
  isRecord,
  type Profile,
  type ProfileSpec,
  parseJsonOrNull,
  type Target,
  type TargetFailure,
  type Verdict,
} from "./types.ts";

// Shopee Open Platform v2, product.update_stock (POST /api/v2/product/update_stock): one item per call, its
// models' seller stock (per location where the shop has several). A shop API call is signed: HMAC-SHA256 of
// partner_id + path + timestamp + access_token + shop_id with the partner key, hex; the timestamp (seconds)
// must be within 5 minutes. Answers carry `error` ("" on success) and `response.failure_list` per model.

export const shopeeApiPath = "/api/v2/product/update_stock";

export type ShopeeRef = { itemId: number; modelId: number; locationId: string | null };

export const shopeeSpec: ProfileSpec<ShopeeRef> = {
  name: "shopee",
  // update_stock's stock_list takes 1 to 50 models of the one item.
  batchItemsMax: 50,
  batchItemsDefault: 50,
  locationRequired: false,
  parseRef(row, location) {
    const unknown = unknownField(row, ["itemId", "modelId"]);
    if (unknown !== null) return unknown;
    const itemId = positiveInt(row.itemId);
    if (itemId === null || itemId === 0) return `"itemId" must be Shopee's item_id, a positive integer`;
    const modelId = row.modelId === undefined ? 0 : positiveInt(row.modelId);
    if (modelId === null)
      return `"modelId" must be Shopee's model_id (0 or absent: an item without variations)`;
    return { itemId, modelId, locationId: location };
  },
  // One Sluice SKU per Shopee model: its channel ATS is one number, whatever location it is written to.
  refKey: (r) => `${r.itemId}/${r.modelId}`,
};

function positiveInt(v: unknown): number | null {
  const n = typeof v === "string" && /^\d+$/.test(v) ? Number(v) : v;
  return typeof n === "number" && Number.isSafeInteger(n) && n >= 0 ? n : null;
}

/** Shopee's shop-API signature: HMAC-SHA256(partner key, partner_id + path + timestamp + access_token + shop_id). */
export function shopeeSign(
  partnerId: string,
  apiPath: string,
  timestampS: number,
  accessToken: string,
  shopId: string,
  partnerKey: string,
): string {
  const base = `${partnerId}${apiPath}${timestampS}${accessToken}${shopId}`;
  return createHmac("sha256", partnerKey).update(base, "utf8").digest("hex");
}

/** The update_stock body for one item: a stock_list entry per model, a seller_stock entry per location. */
export function shopeeBody(targets: Array<Target<ShopeeRef>>): string {
  const first = targets[0];
  if (first === undefined) throw new Error("shopeeBody needs a target");
  const models = new Map<number, Array<Target<ShopeeRef>>>();
  for (const t of targets) models.set(t.ref.modelId, [...(models.get(t.ref.modelId) ?? []), t]);
  const stockList = [...models].map(([modelId, same]) => ({
    // An item without variations is sent without model_id, as Shopee's example does.
    ...(modelId === 0 ? {} : { model_id: modelId }),
    seller_stock: same.map((t) =>
      t.ref.locationId === null ? { stock: t.ats } : { location_id: t.ref.locationId, stock: t.ats },
    ),
  }));
  return JSON.stringify({ item_id: first.ref.itemId, stock_list: stockList });
}

export type ShopeeSettings = {
  /** The gateway, e.g. https://partner.shopeemobile.com; the API path is appended. */
  url: string;
  partnerId: string;
  shopId: string;
  partnerKey: Secret;
  accessToken: Secret;
  batchItemsMax: number;
  headers: Array<[string, string]>;
};

/** Error codes that mean "try again later"; others refuse. A 429 is a throttle whatever its body says. */
const throttleErrors = new Set(["error_too_many_request", "error_rate_limit"]);
const retriableErrors = new Set(["error_server", "error_inner", "error_busy", "error_network"]);

export function shopeeProfile(s: ShopeeSettings): Profile<ShopeeRef> {
  const base = s.url.replace(/\/+$/, "") + shopeeApiPath;
  return {
    name: "shopee",
    batchItemsMax: s.batchItemsMax,
    group: (targets) => groupByItem(targets, s.batchItemsMax),
    next(targets, nowMs) {
      const timestamp = Math.floor(nowMs / 1000);
      const accessToken = s.accessToken.reveal();
      const sign = shopeeSign(
        s.partnerId,
        shopeeApiPath,
        timestamp,
        accessToken,
        s.shopId,
        s.partnerKey.reveal(),
      );
      const query = new URLSearchParams({
        partner_id: s.partnerId,
        timestamp: String(timestamp),
        access_token: accessToken,
        shop_id: s.shopId,
        sign,
      });
      return {
        op: "write",
        url: `${base}?${query}`,
        headers: [["Content-Type", "application/json"], ...s.headers],
        body: shopeeBody(targets),
        cost: null,
        covers: targets,
      };
    },
    judge: judgeShopee,
    paceMs: () => 0,
  };
}

/** One request per item, at most `max` models each (an item with more models takes several). */
function groupByItem(targets: Array<Target<ShopeeRef>>, max: number): Array<Array<Target<ShopeeRef>>> {
  const items = new Map<number, Map<number, Array<Target<ShopeeRef>>>>();
  for (const t of targets) {
    const models = items.get(t.ref.itemId) ?? new Map<number, Array<Target<ShopeeRef>>>();
    models.set(t.ref.modelId, [...(models.get(t.ref.modelId) ?? []), t]);
    items.set(t.ref.itemId, models);
  }
  const out: Array<Array<Target<ShopeeRef>>> = [];
  for (const models of items.values()) {
    const list = [...models.values()];
    for (let i = 0; i < list.length; i += max) out.push(list.slice(i, i + max).flat());
  }
  return out;
}

function judgeShopee(call: Call<ShopeeRef>, a: Answer): Verdict<ShopeeRef> {
  const body = parseJsonOrNull(a.text);
  const error = isRecord(body) && typeof body.error === "string" ? body.error : "";
  const message = isRecord(body) ? String(body.message ?? "") : "";
  const detail =
    error === "" ? `HTTP ${a.status}: ${bodySnippet(a.text)}` : `Shopee ${error}: ${bodySnippet(message)}`;
  if (a.status === 429 || throttleErrors.has(error))
    return {
      kind: "retry",
      throttled: true,
      failure: "http_429",
      status: a.status,
      detail,
      retryAfterMs: a.retryAfterMs,
    };
  if (a.status < 200 || a.status >= 300) return httpVerdict(a, detail);
  if (!isRecord(body))
    return {
      kind: "retry",
      throttled: false,
      failure: "api_error",
      status: a.status,
      detail,
      retryAfterMs: null,
    };
  if (retriableErrors.has(error))
    return {
      kind: "retry",
      throttled: false,
      failure: "api_error",
      status: a.status,
      detail,
      retryAfterMs: null,
    };
  if (error !== "") return { kind: "refused", failure: "api_error", status: a.status, detail };
  const response = isRecord(body.response) ? body.response : {};
  const failures = Array.isArray(response.failure_list) ? response.failure_list.filter(isRecord) : [];
  const failed: Array<TargetFailure<ShopeeRef>> = [];
  for (const f of failures) {
    const modelId = Number(f.model_id ?? 0);
    const why = `Shopee refused it: ${bodySnippet(String(f.failed_reason ?? "no reason given"))}`;
    for (const t of call.covers) if (t.ref.modelId === modelId) failed.push({ target: t, detail: why });
  }
  // The models not in failure_list were set (Shopee applies an item's models one by one).
  return { kind: "written", failed, resend: [], conflict: false };
}
