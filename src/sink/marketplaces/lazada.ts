import { createHmac } from "node:crypto";
import { bodySnippet } from "../post.ts";
import { stringField, unknownField } from "./mapping.ts";
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
  type Verdict,
} from "./types.ts";

// Lazada Open Platform, UpdatePriceQuantity (POST /product/price_quantity/update): quantities of up to 50 SKUs
// per request (20 recommended), an XML `payload`, every parameter signed (lazadaSign). Answers are JSON with
// `code` "0" on success; an error code otherwise, with `detail` naming the SKUs it refused.

export const lazadaApiPath = "/product/price_quantity/update";

/** A Lazada SKU: ItemId + SkuId, or SellerSku; WarehouseCode for multi-warehouse sellers. */
export type LazadaRef = {
  itemId: string | null;
  skuId: string | null;
  sellerSku: string | null;
  warehouseCode: string | null;
};

export const lazadaSpec: ProfileSpec<LazadaRef> = {
  name: "lazada",
  // "A maximum of 50 SKUs can be added per request … 20 is recommended" (Lazada's inventory API guide).
  batchItemsMax: 50,
  batchItemsDefault: 20,
  locationRequired: false,
  parseRef(row, location) {
    const unknown = unknownField(row, ["itemId", "skuId", "sellerSku"]);
    if (unknown !== null) return unknown;
    const itemId = idField(row.itemId);
    const skuId = idField(row.skuId);
    const sellerSku = stringField(row, "sellerSku");
    if ((itemId === null) !== (skuId === null)) return `give both "itemId" and "skuId", or "sellerSku"`;
    if (itemId === null && sellerSku === null) return `give "itemId" and "skuId", or "sellerSku"`;
    return { itemId, skuId, sellerSku, warehouseCode: location };
  },
  // One Sluice SKU per Lazada SKU: its channel ATS is one number, whatever warehouse it is written to.
  refKey: (r) => skuIdentity(r),
};

/** Lazada ids are numbers in its answers and strings in ours: either form, kept as digits. */
function idField(v: unknown): string | null {
  if (typeof v === "number" && Number.isSafeInteger(v) && v > 0) return String(v);
  return typeof v === "string" && /^\d+$/.test(v) ? v : null;
}

/** One <Sku> element: the SKU itself, whatever warehouse. */
const skuIdentity = (r: LazadaRef) =>
  r.skuId !== null ? `id:${r.itemId}/${r.skuId}` : `seller:${r.sellerSku}`;

/**
 * Lazada's signature: every parameter but `sign` (and empty ones) sorted by name in ASCII order, each name
 * followed by its value, the API path in front; HMAC-SHA256 of that with the app secret; upper-case hex.
 */
export function lazadaSign(apiPath: string, params: Record<string, string>, appSecret: string): string {
  const names = Object.keys(params)
    .filter((k) => k !== "sign" && params[k] !== "")
    .sort();
  const base = apiPath + names.map((k) => `${k}${params[k]}`).join("");
  return createHmac("sha256", appSecret).update(base, "utf8").digest("hex").toUpperCase();
}

export const xmlEscape = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** The UpdatePriceQuantity payload: one <Sku> per SKU, per warehouse under MultiWarehouseInventories. */
export function lazadaPayload(targets: Array<Target<LazadaRef>>): string {
  const bySku = new Map<string, Array<Target<LazadaRef>>>();
  for (const t of targets) {
    const key = skuIdentity(t.ref);
    bySku.set(key, [...(bySku.get(key) ?? []), t]);
  }
  const skus = [...bySku.values()].map((same) => {
    const r = (same[0] as Target<LazadaRef>).ref;
    const id =
      r.skuId !== null
        ? `<ItemId>${r.itemId}</ItemId><SkuId>${r.skuId}</SkuId>`
        : `<SellerSku>${xmlEscape(r.sellerSku ?? "")}</SellerSku>`;
    if (r.warehouseCode === null)
      return `<Sku>${id}<Quantity>${(same[0] as Target<LazadaRef>).ats}</Quantity></Sku>`;
    const inventories = same
      .map(
        (t) =>
          `<MultiWarehouseInventory><WarehouseCode>${xmlEscape(t.ref.warehouseCode ?? "")}</WarehouseCode><Quantity>${t.ats}</Quantity></MultiWarehouseInventory>`,
      )
      .join("");
    return `<Sku>${id}<MultiWarehouseInventories>${inventories}</MultiWarehouseInventories></Sku>`;
  });
  return `<?xml version="1.0" encoding="UTF-8"?><Request><Product><Skus>${skus.join("")}</Skus></Product></Request>`;
}

export type LazadaSettings = {
  /** The regional gateway, e.g. https://api.lazada.co.th/rest; the API path is appended. */
  url: string;
  appKey: string;
  appSecret: Secret;
  accessToken: Secret;
  batchItemsMax: number;
  headers: Array<[string, string]>;
};

/** Codes that mean "try again" (Lazada's platform errors); any other non-"0" code is a refusal. */
const retriableCodes = new Set(["InternalError", "ServiceTimeout", "ServiceUnavailable", "SystemBusy"]);
const throttleCode = "ApiCallLimit";

export function lazadaProfile(s: LazadaSettings): Profile<LazadaRef> {
  const url = s.url.replace(/\/+$/, "") + lazadaApiPath;
  return {
    name: "lazada",
    batchItemsMax: s.batchItemsMax,
    group: (targets) => packBySku(targets, s.batchItemsMax),
    next(targets, nowMs) {
      const params: Record<string, string> = {
        app_key: s.appKey,
        access_token: s.accessToken.reveal(),
        timestamp: String(Math.floor(nowMs)), // epoch ms: Lazada's timestamps are in milliseconds
        sign_method: "sha256",
        payload: lazadaPayload(targets),
      };
      params.sign = lazadaSign(lazadaApiPath, params, s.appSecret.reveal());
      return {
        op: "write",
        url,
        headers: [["Content-Type", "application/x-www-form-urlencoded;charset=utf-8"], ...s.headers],
        body: new URLSearchParams(params).toString(),
        cost: null,
        covers: targets,
      };
    },
    judge: (call, answer) => judgeLazada(call, answer),
    paceMs: () => 0,
  };
}

/** Requests of at most `max` <Sku> elements; a SKU's warehouses stay in one element. */
function packBySku(targets: Array<Target<LazadaRef>>, max: number): Array<Array<Target<LazadaRef>>> {
  const bySku = new Map<string, Array<Target<LazadaRef>>>();
  for (const t of targets) {
    const key = skuIdentity(t.ref);
    bySku.set(key, [...(bySku.get(key) ?? []), t]);
  }
  const out: Array<Array<Target<LazadaRef>>> = [];
  const skus = [...bySku.values()];
  for (let i = 0; i < skus.length; i += max) out.push(skus.slice(i, i + max).flat());
  return out;
}

type LazadaAnswer = {
  code?: unknown;
  message?: unknown;
  detail?: unknown;
};

function judgeLazada(call: Call<LazadaRef>, a: Answer): Verdict<LazadaRef> {
  const body = parseJsonOrNull(a.text);
  if (a.status < 200 || a.status >= 300) return httpVerdict(a, `HTTP ${a.status}: ${bodySnippet(a.text)}`);
  if (!isRecord(body) || body.code === undefined)
    return {
      kind: "retry",
      throttled: false,
      failure: "api_error",
      status: a.status,
      detail: `not a Lazada answer: ${bodySnippet(a.text)}`,
      retryAfterMs: null,
    };
  const b = body as LazadaAnswer;
  const code = String(b.code);
  if (code === "0") return { kind: "written", failed: [], resend: [], conflict: false };
  const detail = `Lazada ${code}: ${bodySnippet(String(b.message ?? ""))}`;
  if (code === throttleCode)
    return {
      kind: "retry",
      throttled: true,
      failure: "throttled",
      status: a.status,
      detail,
      retryAfterMs: a.retryAfterMs ?? banMs(String(b.message ?? "")),
    };
  if (retriableCodes.has(code))
    return {
      kind: "retry",
      throttled: false,
      failure: "api_error",
      status: a.status,
      detail,
      retryAfterMs: null,
    };
  const failed = refusedSkus(call.covers, b.detail);
  if (failed.length === 0) return { kind: "refused", failure: "api_error", status: a.status, detail };
  // The request was refused for these SKUs: nothing of it was applied, the others go again without them.
  const refused = new Set(failed.map((f) => f.target));
  return {
    kind: "written",
    failed,
    resend: call.covers.filter((t) => !refused.has(t)),
    conflict: false,
  };
}

/** "…This ban will last 3 seconds…" → 3000; null when the message says nothing of it. */
export function banMs(message: string): number | null {
  const m = /last (\d+) seconds?/i.exec(message);
  return m === null ? null : Number(m[1]) * 1000;
}

/** `detail: [{seller_sku | sku_id, message}]` → the covered targets it names. */
function refusedSkus(covers: Array<Target<LazadaRef>>, detail: unknown) {
  if (!Array.isArray(detail)) return [];
  const out: Array<{ target: Target<LazadaRef>; detail: string }> = [];
  for (const d of detail) {
    if (!isRecord(d)) continue;
    const why = `Lazada refused it: ${bodySnippet(String(d.message ?? d.field ?? "no reason given"))}`;
    for (const t of covers) {
      const named =
        (d.seller_sku !== undefined && String(d.seller_sku) === t.ref.sellerSku) ||
        (d.sku_id !== undefined && t.ref.skuId !== null && String(d.sku_id) === t.ref.skuId);
      if (named && !out.some((o) => o.target === t)) out.push({ target: t, detail: why });
    }
  }
  return out;
}
