import { createHmac } from "node:crypto";
import { type Faults, json, MockLog, prng, RateLimit, serve } from "./common.ts";

// A Lazada Open Platform written from its public docs, for POST /product/price_quantity/update only:
// - every parameter signed: the API path, then each parameter but `sign` sorted by name as name+value,
//   HMAC-SHA256 with the app secret, upper-case hex; a bad signature → code IncompleteSignature;
// - app_key, access_token and sign_method=sha256 checked (InvalidApiKey, IllegalAccessToken);
// - the XML payload holds at most 50 <Sku> (more is a breach, refused); quantities are whole and ≥ 0;
// - a request naming an unknown SKU is refused whole (nothing applied) with `detail` naming it;
// - at most `callsPerSecondMax` calls a second: past it, code ApiCallLimit "This ban will last 1 seconds";
//   a call during the ban is a breach.
// Codes and shapes follow Lazada's answers ({code, type, message, request_id, detail}); the exact texts are the
// mock's own: no real Lazada is reachable from the tests, so this mock is the contract.

export const lazadaSkusPerRequestMax = 50;

export type LazadaMockOptions = {
  appKey: string;
  appSecret: string;
  accessToken: string;
  /** Known SKUs: SellerSku, or "<ItemId>/<SkuId>"; each optionally per warehouse code ("sku@WH"). */
  skus: string[];
  callsPerSecondMax?: number;
  faults?: Faults;
};

export function startLazadaMock(o: LazadaMockOptions) {
  const log = new MockLog();
  /** key ("sku" or "sku@warehouse") → quantity; absent until first set. */
  const quantities = new Map<string, number>();
  const known = new Set(o.skus);
  const random = prng(o.faults?.seed ?? 1);
  const limit = new RateLimit(o.callsPerSecondMax ?? 1000, 1000);
  let signatureFailures = 0;
  const server = serve(async (req) => {
    const path = new URL(req.url).pathname;
    if (req.method !== "POST" || path !== "/rest/product/price_quantity/update")
      return json({ code: "InvalidApi", type: "ISP", message: `no API ${req.method} ${path}` }, 404);
    const params = Object.fromEntries(new URLSearchParams(await req.text()));
    const auth = checkAuth(params, o);
    if (auth !== null) {
      if (auth === "IncompleteSignature") signatureFailures++;
      log.note("update", 0, auth);
      return json({ code: auth, type: "ISV", message: messages[auth], request_id: "mock" });
    }
    const rate = limit.check(Date.now(), random() < (o.faults?.throttleRate ?? 0));
    if (rate === "banned") log.violations.push("a call during an ApiCallLimit ban");
    if (rate !== "ok") {
      log.note("update", 0, "ApiCallLimit");
      const message = "The request has exceeded the allowed limit. This ban will last 1 seconds";
      return json({ code: "ApiCallLimit", type: "ISP", message, request_id: "mock" });
    }
    if (random() < (o.faults?.serverErrorRate ?? 0)) {
      log.note("update", 0, "InternalError");
      return json({ code: "InternalError", type: "ISP", message: "mock fault", request_id: "mock" });
    }
    return update(params.payload ?? "");
  });

  function update(payload: string): Response {
    const skus = [...payload.matchAll(/<Sku>(.*?)<\/Sku>/gs)].map((m) => m[1] as string);
    if (skus.length > lazadaSkusPerRequestMax) {
      log.violations.push(`${skus.length} SKUs in one request (at most ${lazadaSkusPerRequestMax})`);
      log.note("update", skus.length, "TooManySkus");
      return json({
        code: "E0501",
        type: "ISV",
        message: `at most ${lazadaSkusPerRequestMax} SKUs per request`,
      });
    }
    if (skus.length === 0 || !payload.startsWith("<?xml")) {
      log.violations.push("a payload without <Sku>");
      return json({
        code: "InvalidParameter",
        type: "ISV",
        message: "payload has no Request/Product/Skus/Sku",
      });
    }
    const writes: Array<[string, number]> = [];
    const unknown: Array<Record<string, string>> = [];
    for (const sku of skus) {
      const id = skuId(sku);
      if (id === null) return badPayload(skus.length, "a <Sku> without SellerSku or ItemId+SkuId");
      const inventories = [...sku.matchAll(/<MultiWarehouseInventory>(.*?)<\/MultiWarehouseInventory>/gs)];
      const pairs: Array<[string | null, string | null]> =
        inventories.length === 0
          ? [[null, tag(sku, "Quantity")]]
          : inventories.map((m) => [tag(m[1] as string, "WarehouseCode"), tag(m[1] as string, "Quantity")]);
      for (const [warehouse, qty] of pairs) {
        const key = warehouse === null ? id.key : `${id.key}@${warehouse}`;
        if (qty === null || !/^\d+$/.test(qty))
          return badPayload(skus.length, `${key}: Quantity must be whole and ≥ 0`);
        if (!known.has(key)) unknown.push({ ...id.detail, message: "SKU_NOT_FOUND", field: "SellerSku" });
        else writes.push([key, Number(qty)]);
      }
    }
    if (unknown.length > 0) {
      log.note("update", skus.length, "SkuNotFound");
      return json({
        code: "207",
        type: "ISV",
        message: "some SKUs were refused",
        detail: unknown,
        request_id: "mock",
      });
    }
    for (const [key, qty] of writes) quantities.set(key, qty);
    log.note("update", skus.length, "0");
    return json({ code: "0", request_id: "mock" });
  }

  function badPayload(size: number, why: string): Response {
    log.violations.push(why);
    log.note("update", size, "InvalidParameter");
    return json({ code: "InvalidParameter", type: "ISV", message: why });
  }

  return {
    url: `http://127.0.0.1:${server.port}/rest`,
    quantities,
    log,
    signatureFailures: () => signatureFailures,
    /** The client restarted: it knows of no ban. */
    newClient: () => limit.newClient(),
    stop: () => server.stop(true),
  };
}

const messages: Record<string, string> = {
  IncompleteSignature: "The request signature does not conform to platform standards",
  InvalidApiKey: "Specified api key is invalid",
  IllegalAccessToken: "The specified access token is invalid or expired",
  InvalidSignMethod: "sign_method must be sha256",
};

/** The mock's own signature check, written from Lazada's docs (not the sink's code). */
function checkAuth(p: Record<string, string>, o: LazadaMockOptions): string | null {
  const names = Object.keys(p)
    .filter((k) => k !== "sign")
    .sort();
  let base = "/product/price_quantity/update";
  for (const k of names) if (p[k] !== "") base += k + p[k];
  const expected = createHmac("sha256", o.appSecret).update(base).digest("hex").toUpperCase();
  if (p.sign !== expected) return "IncompleteSignature";
  if (p.sign_method !== "sha256") return "InvalidSignMethod";
  if (p.app_key !== o.appKey) return "InvalidApiKey";
  if (p.access_token !== o.accessToken) return "IllegalAccessToken";
  const ts = Number(p.timestamp);
  // Lazada takes timestamps in ms; a request over 2 hours off is refused.
  if (!Number.isFinite(ts) || Math.abs(Date.now() - ts) > 7_200_000) return "IncompleteSignature";
  return null;
}

const xmlUnescape = (s: string) =>
  s
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&amp;/g, "&");

function tag(xml: string, name: string): string | null {
  const m = new RegExp(`<${name}>(.*?)</${name}>`, "s").exec(xml);
  return m === null ? null : xmlUnescape(m[1] as string);
}

function skuId(sku: string): { key: string; detail: Record<string, string> } | null {
  const seller = tag(sku, "SellerSku");
  if (seller !== null) return { key: seller, detail: { seller_sku: seller } };
  const [item, id] = [tag(sku, "ItemId"), tag(sku, "SkuId")];
  return item === null || id === null ? null : { key: `${item}/${id}`, detail: { sku_id: id } };
}
