import { describe, expect, test } from "bun:test";
import { createHmac } from "node:crypto";
import { mkdtempSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadMarketplace, parseSinkOptions, SinkError, type SinkOptions } from "../../src/sink/index.ts";
import {
  type Answer,
  type Call,
  coalesce,
  type DeliverIo,
  type DeliverLimits,
  deliverAll,
  type LazadaRef,
  lazadaPayload,
  lazadaSign,
  lazadaSpec,
  type Profile,
  parseMapping,
  Secret,
  SecretError,
  type ShopeeRef,
  ShopifyProfile,
  type ShopifyRef,
  shopeeBody,
  shopeeSign,
  shopeeSpec,
  shopifySpec,
  type Target,
  type Verdict,
} from "../../src/sink/marketplaces/index.ts";
import { lazadaProfile } from "../../src/sink/marketplaces/lazada.ts";
import { shopeeProfile } from "../../src/sink/marketplaces/shopee.ts";

const dir = mkdtempSync(join(tmpdir(), "sluice-sink-mkt-"));
let files = 0;
const file = (content: string) => {
  const path = join(dir, `f${++files}`);
  writeFileSync(path, content);
  return path;
};

const target = <R>(sku: string, ats: number, ref: R, version = 1): Target<R> => ({ sku, ats, version, ref });
const answer = (status: number, body: unknown, retryAfterMs: number | null = null): Answer => ({
  status,
  text: typeof body === "string" ? body : JSON.stringify(body),
  retryAfterMs,
});

describe("Lazada", () => {
  test("signs as documented: the API path, then sorted name+value pairs, HMAC-SHA256, upper-case hex", () => {
    // The worked example of Lazada's "HTTP request sample" (GetOrder, app secret "helloworld").
    const params = {
      app_key: "123456",
      access_token: "test",
      timestamp: "1517820392000",
      sign_method: "sha256",
      order_id: "1234",
    };
    expect(lazadaSign("/order/get", params, "helloworld")).toBe(
      "4190D32361CFB9581350222F345CB77F3B19F0E31D162316848A2C1FFD5FAB4A",
    );
    // `sign` itself and empty parameters are not signed.
    expect(lazadaSign("/order/get", { ...params, sign: "x", empty: "" }, "helloworld")).toBe(
      lazadaSign("/order/get", params, "helloworld"),
    );
  });

  test("the payload: SellerSku escaped, ItemId+SkuId, a SKU's warehouses in one <Sku>", () => {
    const seller = (s: string, w: string | null = null): LazadaRef => ({
      itemId: null,
      skuId: null,
      sellerSku: s,
      warehouseCode: w,
    });
    const xml = lazadaPayload([
      target("a", 3, seller("A&<B>")),
      target("b", 0, { itemId: "11", skuId: "22", sellerSku: null, warehouseCode: null }),
      target("c", 5, seller("C", "dropshipping")),
      target("d", 6, seller("C", "wh2")),
    ]);
    expect(xml).toBe(
      '<?xml version="1.0" encoding="UTF-8"?><Request><Product><Skus>' +
        "<Sku><SellerSku>A&amp;&lt;B&gt;</SellerSku><Quantity>3</Quantity></Sku>" +
        "<Sku><ItemId>11</ItemId><SkuId>22</SkuId><Quantity>0</Quantity></Sku>" +
        "<Sku><SellerSku>C</SellerSku><MultiWarehouseInventories>" +
        "<MultiWarehouseInventory><WarehouseCode>dropshipping</WarehouseCode><Quantity>5</Quantity></MultiWarehouseInventory>" +
        "<MultiWarehouseInventory><WarehouseCode>wh2</WarehouseCode><Quantity>6</Quantity></MultiWarehouseInventory>" +
        "</MultiWarehouseInventories></Sku></Skus></Product></Request>",
    );
  });

  const secret = (v: string) => Secret.fromEnv("X", v);
  const profile = lazadaProfile({
    url: "http://lazada.test/rest/",
    appKey: "k",
    appSecret: secret("app-secret"),
    accessToken: secret("access-token"),
    batchItemsMax: 20,
    headers: [],
  });
  const many = Array.from({ length: 45 }, (_, i) =>
    target(`s${i}`, i, { itemId: null, skuId: null, sellerSku: `S${i}`, warehouseCode: null }),
  );

  test("requests of at most batchItemsMax SKUs, signed, form-encoded", () => {
    expect(profile.group(many).map((g) => g.length)).toEqual([20, 20, 5]);
    const call = profile.next(many.slice(0, 2), 1_700_000_000_123);
    expect(call.url).toBe("http://lazada.test/rest/product/price_quantity/update");
    const params = Object.fromEntries(new URLSearchParams(call.body));
    expect(params).toMatchObject({ app_key: "k", access_token: "access-token", timestamp: "1700000000123" });
    const { sign, ...signed } = params;
    expect(sign).toBe(lazadaSign("/product/price_quantity/update", signed, "app-secret"));
  });

  test("answers: 0 written; ApiCallLimit a throttle with its ban; detail refuses SKUs and resends the rest", () => {
    const call = profile.next(many.slice(0, 3), 0);
    expect(profile.judge(call, answer(200, { code: "0" }), 0)).toMatchObject({ kind: "written", failed: [] });
    const ban = { code: "ApiCallLimit", message: "This ban will last 3 seconds" };
    expect(profile.judge(call, answer(200, ban), 0)).toMatchObject({
      kind: "retry",
      throttled: true,
      retryAfterMs: 3000,
    });
    expect(profile.judge(call, answer(200, { code: "InternalError" }), 0)).toMatchObject({
      kind: "retry",
      throttled: false,
    });
    expect(profile.judge(call, answer(200, { code: "IncompleteSignature" }), 0)).toMatchObject({
      kind: "refused",
    });
    const v = profile.judge(
      call,
      answer(200, { code: "207", detail: [{ seller_sku: "S1", message: "gone" }] }),
      0,
    );
    expect(v.kind).toBe("written");
    if (v.kind !== "written") return;
    expect(v.failed.map((f) => f.target.sku)).toEqual(["s1"]);
    expect(v.resend.map((t) => t.sku)).toEqual(["s0", "s2"]);
    expect(profile.judge(call, answer(503, "busy"), 0)).toMatchObject({ kind: "retry", failure: "http_5xx" });
    expect(profile.judge(call, answer(200, "<html>"), 0)).toMatchObject({
      kind: "retry",
      failure: "api_error",
    });
  });
});

describe("Shopee", () => {
  test("signs partner_id + path + timestamp + access_token + shop_id with the partner key, hex", () => {
    // The base string of Shopee's example (shop API get_shop_info).
    const base = "2001887/api/v2/shop/get_shop_info165571443159777174636562737266615546704c6d14701711";
    const token = "59777174636562737266615546704c6d";
    const sign = shopeeSign("2001887", "/api/v2/shop/get_shop_info", 1655714431, token, "14701711", "key");
    expect(sign).toBe(createHmac("sha256", "key").update(base).digest("hex"));
    expect(sign).toMatch(/^[0-9a-f]{64}$/);
  });

  const ref = (itemId: number, modelId: number, locationId: string | null = null): ShopeeRef => ({
    itemId,
    modelId,
    locationId,
  });

  test("one item per request, its models together (at most batchItemsMax), model_id left out for 0", () => {
    expect(shopeeBody([target("a", 4, ref(9, 0))])).toBe(
      '{"item_id":9,"stock_list":[{"seller_stock":[{"stock":4}]}]}',
    );
    expect(JSON.parse(shopeeBody([target("a", 1, ref(9, 5, "SGZ")), target("b", 2, ref(9, 6))]))).toEqual({
      item_id: 9,
      stock_list: [
        { model_id: 5, seller_stock: [{ location_id: "SGZ", stock: 1 }] },
        { model_id: 6, seller_stock: [{ stock: 2 }] },
      ],
    });
    const p = shopeeProfile({
      url: "http://shopee.test",
      partnerId: "1",
      shopId: "2",
      partnerKey: Secret.fromEnv("K", "partner-key"),
      accessToken: Secret.fromEnv("T", "access-token"),
      batchItemsMax: 2,
      headers: [],
    });
    const ts = [
      target("a", 1, ref(1, 1)),
      target("b", 1, ref(2, 1)),
      target("c", 1, ref(1, 2)),
      target("d", 1, ref(1, 3)),
    ];
    expect(p.group(ts).map((g) => g.map((t) => t.sku))).toEqual([["a", "c"], ["d"], ["b"]]);
    const call = p.next([ts[0] as Target<ShopeeRef>], 1_700_000_000_999);
    const q = new URL(call.url).searchParams;
    expect(q.get("timestamp")).toBe("1700000000");
    expect(q.get("sign")).toBe(
      shopeeSign("1", "/api/v2/product/update_stock", 1700000000, "access-token", "2", "partner-key"),
    );
    const failed = p.judge(
      { ...call, covers: [ts[0], ts[2]] as Array<Target<ShopeeRef>> },
      answer(200, { error: "", response: { failure_list: [{ model_id: 2, failed_reason: "no" }] } }),
      0,
    );
    expect(failed).toMatchObject({ kind: "written", resend: [] });
    expect(failed.kind === "written" && failed.failed.map((f) => f.target.sku)).toEqual(["c"]);
    expect(p.judge(call, answer(429, { error: "error_too_many_request" }, 1000), 0)).toMatchObject({
      kind: "retry",
      throttled: true,
      retryAfterMs: 1000,
    });
    expect(p.judge(call, answer(403, { error: "error_sign", message: "Wrong sign." }), 0)).toMatchObject({
      kind: "refused",
      detail: "Shopee error_sign: Wrong sign.",
    });
  });
});

describe("Shopify", () => {
  const ref = (i: number): ShopifyRef => ({
    inventoryItemId: `gid://shopify/InventoryItem/${i}`,
    locationId: "gid://shopify/Location/1",
  });
  const status = (available: number, requested = 10) => ({
    cost: {
      requestedQueryCost: requested,
      throttleStatus: { maximumAvailable: 100, currentlyAvailable: available, restoreRate: 50 },
    },
  });

  test("reads what it does not know, then sets with compareQuantity; a stale compare is read again and resent", () => {
    const p = new ShopifyProfile({
      url: "http://s/graphql.json",
      accessToken: Secret.fromEnv("T", "shpat_x"),
      batchItemsMax: 100,
      headers: [],
    });
    const ts = [target("a", 5, ref(1)), target("b", 6, ref(2))];
    const read = p.next(ts);
    expect(read.op).toBe("read");
    expect(read.cost).toBe(5);
    expect(read.headers).toContainEqual(["X-Shopify-Access-Token", "shpat_x"]);
    const levels = {
      q0: { inventoryLevel: { quantities: [{ name: "available", quantity: 2 }] } },
      q1: { inventoryLevel: null },
    };
    const r = p.judge(read, answer(200, { data: levels, extensions: status(80) }), 0);
    expect(r.kind === "read" && r.failed.map((f) => [f.target.sku, f.detail])).toEqual([
      ["b", "gid://shopify/InventoryItem/2 is not stocked at gid://shopify/Location/1"],
    ]);
    const write = p.next([ts[0] as Target<ShopifyRef>]);
    expect(write.op).toBe("write");
    expect(JSON.parse(write.body).variables.input).toEqual({
      name: "available",
      reason: "correction",
      ignoreCompareQuantity: false,
      quantities: [
        {
          inventoryItemId: ref(1).inventoryItemId,
          locationId: ref(1).locationId,
          quantity: 5,
          compareQuantity: 2,
        },
      ],
    });
    const stale = {
      data: {
        inventorySetQuantities: {
          userErrors: [
            {
              code: "COMPARE_QUANTITY_STALE",
              field: ["input", "quantities", "0", "compareQuantity"],
              message: "stale",
            },
          ],
        },
      },
    };
    expect(p.judge(write, answer(200, stale), 0)).toMatchObject({
      kind: "written",
      failed: [],
      conflict: true,
    });
    expect(p.next([ts[0] as Target<ShopifyRef>]).op).toBe("read"); // the stale value was forgotten
  });

  test("THROTTLED waits what the bucket needs; pacing follows the last status; a userError without a quantity refuses", () => {
    const p = new ShopifyProfile({
      url: "http://s/graphql.json",
      accessToken: Secret.fromEnv("T", "shpat_x"),
      batchItemsMax: 100,
      headers: [],
    });
    const read = p.next([target("a", 5, ref(1))]);
    expect(p.paceMs(read, 0)).toBe(0); // no status yet
    const throttled = {
      errors: [{ message: "Throttled", extensions: { code: "THROTTLED" } }],
      extensions: status(1, 4),
    };
    // 4 points asked (the answer's figure, not our estimate of 3), 1 there, 50 a second: 60 ms.
    expect(p.judge(read, answer(200, throttled), 1000)).toMatchObject({
      kind: "retry",
      throttled: true,
      retryAfterMs: 60,
    });
    expect(p.paceMs(read, 1000)).toBe(60);
    expect(p.paceMs(read, 1030)).toBe(30);
    expect(p.paceMs(read, 1060)).toBe(0);
    const bad = {
      data: {
        inventorySetQuantities: {
          userErrors: [{ code: "INVALID_REASON", field: ["input", "reason"], message: "no" }],
        },
      },
    };
    expect(p.judge({ ...read, op: "write" }, answer(200, bad), 0)).toMatchObject({ kind: "refused" });
    expect(p.judge(read, answer(401, "bad token"), 0)).toMatchObject({
      kind: "refused",
      failure: "http_4xx",
    });
  });
});

describe("mapping table", () => {
  test("SKU rows with per-profile ids; warehouses map to locations, with a default", () => {
    const parsed = parseMapping(
      {
        warehouses: { w1: "gid://shopify/Location/1", w2: "2" },
        defaultWarehouse: "w1",
        skus: {
          A: { inventoryItemId: 11 },
          B: { inventoryItemId: "gid://shopify/InventoryItem/12", warehouse: "w2" },
        },
      },
      shopifySpec,
    );
    expect(parsed.ok && [...parsed.value]).toEqual([
      ["A", { inventoryItemId: "gid://shopify/InventoryItem/11", locationId: "gid://shopify/Location/1" }],
      ["B", { inventoryItemId: "gid://shopify/InventoryItem/12", locationId: "gid://shopify/Location/2" }],
    ]);
  });

  test("refusals name the row and the fix", () => {
    const refused = (json: unknown, spec: Parameters<typeof parseMapping>[1] = lazadaSpec) => {
      const p = parseMapping(json, spec);
      return p.ok ? "accepted" : p.detail;
    };
    expect(refused({ skus: { A: { sellerSkus: "x" } } })).toMatch(/skus\["A"\]: unknown field "sellerSkus"/);
    expect(refused({ skus: { A: { itemId: 1 } } })).toMatch(/give both "itemId" and "skuId", or "sellerSku"/);
    expect(refused({ skus: { A: { sellerSku: "x" }, B: { sellerSku: "x" } } })).toMatch(
      /skus\["B"\] and skus\["A"\] map to the same lazada quantity/,
    );
    expect(refused({ skus: { A: { inventoryItemId: 1 } } }, shopifySpec)).toMatch(
      /has no warehouse: give it "warehouse", or set "defaultWarehouse"/,
    );
    expect(refused({ skus: {}, defaultWarehouse: "w9" })).toMatch(
      /"defaultWarehouse" must name a key of "warehouses"/,
    );
    expect(refused({ skus: { A: { sellerSku: "x", warehouse: "nope" } } })).toMatch(
      /warehouse must name a key/,
    );
    expect(refused({ sku: {} })).toMatch(/must be an object with "skus"/);
    expect(refused({ skus: {}, extra: 1 })).toMatch(/unknown key "extra"/);
    expect(refused({ skus: { A: { itemId: -1 } } }, shopeeSpec)).toMatch(/"itemId" must be Shopee's item_id/);
    expect(
      refused({ skus: { A: { itemId: 1, modelId: 2 }, B: { itemId: "1", modelId: "2" } } }, shopeeSpec),
    ).toMatch(/same shopee quantity/);
  });
});

describe("coalescing", () => {
  const item = (sku: string, version: number, ats: number) => ({ sku, version, ats, atMs: 0 });

  test("the newest (version, stream sequence) per SKU; a value delivered before is sent again from a later message (a heal), never from a redelivery", () => {
    const delivered = new Map([
      ["D", { version: 5, ats: 1, seq: 3 }],
      ["E", { version: 2, ats: 7, seq: 3 }],
      ["F", { version: 2, ats: 7, seq: 12 }],
      ["G", { version: 3, ats: 2, seq: 20 }],
    ]);
    const c = coalesce(
      [
        { seq: 10, items: [item("A", 1, 10), item("B", 3, 1), item("D", 4, 9), item("E", 2, 7)] },
        { seq: 11, items: [item("A", 2, 20), item("B", 2, 99), { sku: "", ats: 1 }, item("F", 2, 8)] },
        { seq: 12, items: null },
        { seq: 13, items: [item("A", 2, 21)] }, // same version, later: a rule change — applied
        { seq: 8, items: [item("C", 1, 4), item("A", 2, 19)] }, // a redelivery from before: never undoes seq 13
        { seq: 20, items: [item("G", 3, 2), item("H", 0, 0)] }, // G: the message delivered before, again
      ],
      delivered,
    );
    expect(c.newest.map((n) => [n.item.sku, n.item.ats, n.seq])).toEqual([
      ["A", 21, 13],
      ["B", 1, 10],
      ["E", 7, 10], // equal to what the marketplace was sent, from a later message: a heal or a resync, sent
      ["C", 4, 8],
      ["H", 0, 20], // version 0: a SKU the ledger never saw, healed to 0
    ]);
    expect(c.invalid.map((i) => [i.message, i.index, i.detail])).toEqual([[1, 2, "item has no sku"]]);
    expect(c).toMatchObject({ superseded: 4, stale: 2, unchanged: 1 }); // D and F stale; G unchanged
  });
});

/** A scripted profile: each call's verdict comes from `script`, in order. */
function scripted(script: Array<Verdict<string> | ((covers: Array<Target<string>>) => Verdict<string>)>) {
  const calls: string[][] = [];
  const profile: Profile<string> = {
    name: "lazada",
    batchItemsMax: 2,
    group: (ts) => Array.from({ length: Math.ceil(ts.length / 2) }, (_, i) => ts.slice(2 * i, 2 * i + 2)),
    next: (ts) => ({ op: "write", url: "http://x", headers: [], body: "", cost: 7, covers: ts }),
    judge: (call: Call<string>) => {
      calls.push(call.covers.map((t) => t.sku));
      const step = script.shift();
      if (step === undefined) return { kind: "written", failed: [], resend: [], conflict: false };
      return typeof step === "function" ? step(call.covers) : step;
    },
    paceMs: () => 5000,
  };
  return { profile, calls };
}

function fakeIo(stopAfterSends = Number.POSITIVE_INFINITY) {
  const pauses: number[] = [];
  const failures: Array<{ attempt: number; willRetry: boolean }> = [];
  let sends = 0;
  const io: DeliverIo<string> = {
    send: async () => {
      sends++;
      return { answered: true, status: 200, text: "", retryAfterMs: null, seconds: 0 };
    },
    pause: async (ms) => {
      pauses.push(ms);
    },
    stopping: () => sends >= stopAfterSends,
    nowMs: () => 0,
    attemptFailed: (e) => failures.push({ attempt: e.attempt, willRetry: e.willRetry }),
    throttleWaited: () => undefined,
    conflicted: () => undefined,
    mask: (t) => t.replace("s3cr3t", "[secret]"),
  };
  return { io, pauses, failures };
}

const limits: DeliverLimits = {
  attemptsMax: 3,
  backoffMsMin: 100,
  backoffMsMax: 400,
  throttleRetriesMax: 2,
  throttleWaitMsMax: 1000,
  conflictRetriesMax: 2,
};

describe("the retry loop", () => {
  const retry = (throttled: boolean, retryAfterMs: number | null = null): Verdict<string> => ({
    kind: "retry",
    throttled,
    failure: throttled ? "http_429" : "http_5xx",
    status: throttled ? 429 : 503,
    detail: "no s3cr3t here",
    retryAfterMs,
  });
  const ts = ["a", "b", "c"].map((s) => target(s, 1, s));

  test("retries within --attempts, then dead-letters as attempts_exhausted; every wait bounded", async () => {
    const { profile } = scripted([retry(false), retry(false), retry(false)]);
    const { io, pauses, failures } = fakeIo();
    const out = await deliverAll(profile, ts, limits, io);
    expect([...(out?.values() ?? [])]).toEqual([
      { ok: false, code: "attempts_exhausted", detail: "no [secret] here" },
      { ok: false, code: "attempts_exhausted", detail: "no [secret] here" },
      { ok: true },
    ]);
    expect(failures).toEqual([
      { attempt: 1, willRetry: true },
      { attempt: 2, willRetry: true },
      { attempt: 3, willRetry: false },
    ]);
    // Every call first paces (5000 asked, throttleWaitMsMax 1000 kept); backoffs stay within backoffMsMax.
    expect(pauses.filter((p) => p === 1000)).toHaveLength(4);
    expect(pauses.filter((p) => p !== 1000).every((p) => p >= 50 && p <= 400)).toBe(true);
  });

  test("a throttle waits what the API asked (within throttleWaitMsMax), bounded by --throttle-retries-max", async () => {
    const written: Verdict<string> = { kind: "written", failed: [], resend: [], conflict: false };
    const script = [
      retry(true, 300),
      retry(true, 9000),
      written,
      retry(true, 300),
      retry(true, null),
      retry(true, 300),
    ];
    const { profile } = scripted(script);
    const { io, pauses } = fakeIo();
    const out = await deliverAll(
      { ...profile, paceMs: () => 0 },
      ts,
      { ...limits, throttleRetriesMax: 3 },
      io,
    );
    expect(pauses.length).toBe(4);
    expect(pauses.slice(0, 3)).toEqual([300, 1000, 300]);
    expect(pauses[3]).toBeLessThanOrEqual(400); // no Retry-After: backoff
    expect([...(out?.values() ?? [])].map((o) => (o.ok ? "ok" : o.code))).toEqual([
      "ok",
      "ok",
      "throttle_exhausted",
    ]);
  });

  test("conflicts resend within --conflict-retries-max; a refusal is not retried; a resend drops the refused", async () => {
    const conflict = (covers: Array<Target<string>>): Verdict<string> => ({
      kind: "written",
      failed: [],
      resend: covers,
      conflict: true,
    });
    const { profile, calls } = scripted([
      conflict,
      conflict,
      conflict,
      (covers) => ({
        kind: "written",
        failed: [{ target: covers[0] as Target<string>, detail: "gone" }],
        resend: covers.slice(1),
        conflict: false,
      }),
      { kind: "refused", failure: "http_4xx", status: 401, detail: "bad token" },
    ]);
    const four = [...ts, target("d", 1, "d")];
    const out = await deliverAll(
      { ...profile, paceMs: () => 0 },
      [...four, target("e", 1, "e")],
      limits,
      fakeIo().io,
    );
    expect(calls).toEqual([["a", "b"], ["a", "b"], ["a", "b"], ["c", "d"], ["d"], ["e"]]);
    expect([...(out?.entries() ?? [])].map(([t, o]) => [t.sku, o.ok ? "ok" : o.code])).toEqual([
      ["a", "conflicts_exhausted"],
      ["b", "conflicts_exhausted"],
      ["c", "rejected"],
      ["d", "rejected"],
      ["e", "ok"],
    ]);
  });

  test("a stop ends the loop without outcomes: the batch goes back to the server", async () => {
    const { profile } = scripted([retry(false)]);
    expect(await deliverAll({ ...profile, paceMs: () => 0 }, ts, limits, fakeIo(1).io)).toBeNull();
  });
});

describe("secrets", () => {
  test("from the environment or a file, re-read when the file changes, never printed", () => {
    expect(() => Secret.fromEnv("SLUICE_SINK_ACCESS_TOKEN", " ")).toThrow(SecretError);
    expect(() => Secret.fromFile(join(dir, "missing"))).toThrow(/cannot read/);
    expect(() => Secret.fromFile(file("\n"))).toThrow(/is empty: write the credential in it/);
    const path = file("first-token\n");
    const s = Secret.fromFile(path, 0);
    expect(s.reveal(1000)).toBe("first-token"); // not checked again before secretCheckMs
    writeFileSync(path, "second-token");
    utimesSync(path, new Date(), new Date(Date.now() + 5000));
    expect(s.reveal(2000)).toBe("first-token");
    expect(s.reveal(6000)).toBe("second-token");
    expect(String(s)).toBe("[secret]");
    expect(JSON.stringify({ s })).toBe('{"s":"[secret]"}');
    expect(s.mask("x second-token y second-token")).toBe("x [secret] y [secret]");
  });
});

describe("options", () => {
  const base = ["--source", "stock:shop", "--url", "http://127.0.0.1:1/x"];
  const parse = (argv: string[], env: Record<string, string> = {}) => {
    const p = parseSinkOptions([...base, ...argv], env);
    return p.ok ? p.value : p.detail;
  };
  const shopify = ["--profile", "shopify", "--mapping", "/m.json"];

  test("a profile's needs, named with their fix", () => {
    expect(parse(["--profile", "amazon"])).toMatch(
      /--profile must be one of generic, lazada, shopify, shopee/,
    );
    expect(parse(["--profile", "shopify"])).toMatch(/needs --mapping FILE/);
    expect(parse(shopify)).toMatch(/set SLUICE_SINK_ACCESS_TOKEN or give --access-token-file FILE/);
    expect(parse([...shopify, "--access-token-file", "/t"], { SLUICE_SINK_ACCESS_TOKEN: "t" })).toMatch(
      /not both/,
    );
    expect(parse([...shopify, "--batch-items-max", "251"])).toMatch(
      /--batch-items-max must be a whole number from 1 to 250/,
    );
    expect(
      parse(["--profile", "lazada", "--mapping", "/m", "--batch-items-max", "51"], {
        SLUICE_SINK_ACCESS_TOKEN: "t",
      }),
    ).toMatch(/at most 50 for lazada/);
    expect(parse(["--profile", "lazada", "--mapping", "/m"], { SLUICE_SINK_ACCESS_TOKEN: "t" })).toMatch(
      /give --app-key/,
    );
    const shopee = ["--profile", "shopee", "--mapping", "/m", "--partner-id", "x1", "--shop-id", "2"];
    expect(parse(shopee, { SLUICE_SINK_ACCESS_TOKEN: "t", SLUICE_SINK_PARTNER_KEY: "k" })).toMatch(
      /--partner-id must be Shopee's numeric id/,
    );
    expect(parse(["--mapping", "/m"])).toMatch(
      /--mapping and --batch-items-max are for a marketplace --profile/,
    );
    const erp = parseSinkOptions(["--source", "erp", "--url", "http://x/y", ...shopify], {
      SLUICE_SINK_ACCESS_TOKEN: "t",
    });
    expect(!erp.ok && erp.detail).toMatch(/--profile shopify delivers stock: use --source stock:<channel>/);
  });

  test("defaults, and the environment", () => {
    const o = parse([], {
      SLUICE_SINK_PROFILE: "shopify",
      SLUICE_SINK_MAPPING_FILE: "/m.json",
      SLUICE_SINK_ACCESS_TOKEN: "shpat_1",
      SLUICE_SINK_BATCH_MESSAGES_MAX: "7",
    }) as SinkOptions;
    expect(o).toMatchObject({
      profile: "shopify",
      mappingFile: "/m.json",
      accessToken: "shpat_1",
      batchItemsMax: null,
      batchMessagesMax: 7,
      throttleWaitMsMax: 60_000,
      throttleRetriesMax: 20,
      conflictRetriesMax: 5,
    });
  });

  test("loadMarketplace reads the table and the secrets, or says what to fix", () => {
    const mapping = file(JSON.stringify({ skus: { A: { itemId: 5 } } }));
    const env = { SLUICE_SINK_ACCESS_TOKEN: "t", SLUICE_SINK_PARTNER_KEY: "k" };
    const o = parse(
      ["--profile", "shopee", "--mapping", mapping, "--partner-id", "1", "--shop-id", "2"],
      env,
    ) as SinkOptions;
    const m = loadMarketplace(o);
    expect(m.profile.name).toBe("shopee");
    expect(m.profile.batchItemsMax).toBe(50);
    expect([...m.mapping.keys()]).toEqual(["A"]);
    expect(() => loadMarketplace({ ...o, mappingFile: file("{") })).toThrow(/--mapping: .* is not JSON/);
    expect(() => loadMarketplace({ ...o, partnerKey: "", partnerKeyFile: join(dir, "nope") })).toThrow(
      SinkError,
    );
  });
});
