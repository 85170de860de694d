import { type Faults, json, MockLog, prng, serve } from "./common.ts";

// A Shopify Admin GraphQL endpoint written from its public docs, for the two operations the sink uses:
// - auth: `X-Shopify-Access-Token`, else HTTP 401;
// - cost: a leaky bucket (`maximumAvailable` points, restored at `restoreRate` a second); a mutation costs 10,
//   a read 1 + 2 per aliased inventoryItem/inventoryLevel; a query over what the bucket holds gets
//   `errors: [{extensions: {code: "THROTTLED"}}]` and nothing runs; one costing more than the whole bucket gets
//   MAX_COST_EXCEEDED; every answer carries `extensions.cost.throttleStatus`. Asking again before the bucket
//   could hold the cost (per the status just sent) is a breach;
// - inventorySetQuantities: name "available", at most 250 quantities, each whole and ≥ 0, no pair twice;
//   compare-and-set: `compareQuantity` is required (ignoreCompareQuantity is a breach here: the sink must
//   compare) and must equal what is stored, else COMPARE_QUANTITY_STALE; any userError refuses the whole
//   mutation (nothing is set); an unknown item or location, ITEM_NOT_STOCKED_AT_LOCATION;
// - faults: `foreignCostRate` (another app spends `foreignCostPoints` of the bucket just before a request),
//   `saleRate` (a sale changes one of the request's quantities just before a mutation: a real conflict),
//   `serverErrorRate` (HTTP 502).

export const shopifyQuantitiesMax = 250;

export type ShopifyMockOptions = {
  accessToken: string;
  /** Stocked pairs and their starting "available". */
  levels: Array<{ inventoryItemId: string; locationId: string; available: number }>;
  bucketMaxPoints?: number;
  restorePointsPerSecond?: number;
  faults?: Faults & { foreignCostRate?: number; foreignCostPoints?: number; saleRate?: number };
};

const pairKey = (item: string, location: string) => `${item}|${location}`;

export function startShopifyMock(o: ShopifyMockOptions) {
  const log = new MockLog();
  const available = new Map(o.levels.map((l) => [pairKey(l.inventoryItemId, l.locationId), l.available]));
  const items = new Set(o.levels.map((l) => l.inventoryItemId));
  const random = prng(o.faults?.seed ?? 1);
  const bucket = {
    max: o.bucketMaxPoints ?? 1000,
    restore: o.restorePointsPerSecond ?? 50,
    points: 0,
    atMs: 0,
  };
  bucket.points = bucket.max;
  bucket.atMs = Date.now();
  /** After THROTTLED: the earliest time the same cost could run, by the status we sent. */
  let notBeforeMs = 0;
  const stats = { conflicts: 0, throttled: 0, sales: 0 };

  const refill = (nowMs: number) => {
    bucket.points = Math.min(bucket.max, bucket.points + ((nowMs - bucket.atMs) * bucket.restore) / 1000);
    bucket.atMs = nowMs;
  };
  const extensions = (requested: number, actual: number | null) => ({
    cost: {
      requestedQueryCost: requested,
      actualQueryCost: actual,
      throttleStatus: {
        maximumAvailable: bucket.max,
        currentlyAvailable: bucket.points,
        restoreRate: bucket.restore,
      },
    },
  });

  const server = serve(async (req) => {
    if (req.method !== "POST" || !new URL(req.url).pathname.endsWith("/graphql.json"))
      return json({ errors: "Not Found" }, 404);
    if (req.headers.get("x-shopify-access-token") !== o.accessToken)
      return json(
        { errors: "[API] Invalid API key or access token (unrecognized login or wrong password)" },
        401,
      );
    const body = (await req.json().catch(() => null)) as {
      query?: string;
      variables?: Record<string, unknown>;
    } | null;
    const query = body?.query ?? "";
    const variables = body?.variables ?? {};
    const isMutation = query.includes("inventorySetQuantities(");
    const aliases = [
      ...query.matchAll(/(\w+): inventoryItem\(id: \$(\w+)\) \{ inventoryLevel\(locationId: \$(\w+)\)/g),
    ];
    if (!isMutation && aliases.length === 0) {
      log.violations.push("a query the mock does not know");
      return json({ errors: [{ message: "unsupported by the mock" }] });
    }
    const now = Date.now();
    if (random() < (o.faults?.serverErrorRate ?? 0)) {
      log.note(isMutation ? "mutation" : "read", 0, "502");
      return new Response("Bad Gateway", { status: 502 });
    }
    const cost = isMutation ? 10 : 1 + 2 * aliases.length;
    refill(now);
    if (random() < (o.faults?.foreignCostRate ?? 0))
      bucket.points = Math.max(0, bucket.points - (o.faults?.foreignCostPoints ?? bucket.max / 2));
    if (cost > bucket.max) {
      log.note("read", aliases.length, "MAX_COST_EXCEEDED");
      return json({
        errors: [{ message: `cost ${cost} over ${bucket.max}`, extensions: { code: "MAX_COST_EXCEEDED" } }],
        extensions: extensions(cost, null),
      });
    }
    if (now < notBeforeMs - 20)
      log.violations.push(`asked again ${notBeforeMs - now} ms before the bucket could hold it`);
    if (cost > bucket.points) {
      stats.throttled++;
      notBeforeMs = now + ((cost - bucket.points) * 1000) / bucket.restore;
      log.note(isMutation ? "mutation" : "read", 0, "THROTTLED");
      return json({
        errors: [{ message: "Throttled", extensions: { code: "THROTTLED" } }],
        extensions: extensions(cost, null),
      });
    }
    bucket.points -= cost;
    const data = isMutation ? mutation(variables) : read(aliases, variables);
    return json({ data, extensions: extensions(cost, cost) });
  });

  function read(aliases: RegExpMatchArray[], variables: Record<string, unknown>) {
    const data: Record<string, unknown> = {};
    for (const [, alias, itemVar, locationVar] of aliases) {
      const item = String(variables[itemVar as string]);
      const location = String(variables[locationVar as string]);
      const level = available.get(pairKey(item, location));
      data[alias as string] = !items.has(item)
        ? null
        : {
            inventoryLevel:
              level === undefined ? null : { quantities: [{ name: "available", quantity: level }] },
          };
    }
    log.note("read", aliases.length, "ok");
    return data;
  }

  type Quantity = {
    inventoryItemId?: string;
    locationId?: string;
    quantity?: unknown;
    compareQuantity?: unknown;
  };
  function mutation(variables: Record<string, unknown>) {
    const input = (variables.input ?? {}) as {
      name?: string;
      reason?: string;
      ignoreCompareQuantity?: boolean;
      quantities?: Quantity[];
    };
    const quantities = input.quantities ?? [];
    const errors: Array<{ code: string; field: string[]; message: string }> = [];
    const err = (code: string, i: number | null, message: string, field = "quantity") =>
      errors.push({
        code,
        field: i === null ? ["input"] : ["input", "quantities", String(i), field],
        message,
      });
    if (quantities.length > shopifyQuantitiesMax) {
      log.violations.push(
        `${quantities.length} quantities in one mutation (at most ${shopifyQuantitiesMax})`,
      );
      err("TOO_MANY_QUANTITIES", null, `at most ${shopifyQuantitiesMax}`);
    }
    if (input.name !== "available")
      err("INVALID_NAME", null, "the quantity name must be available or on_hand");
    if (input.ignoreCompareQuantity === true)
      log.violations.push("ignoreCompareQuantity: the sink must compare");
    // A sale lands just before this mutation: one of its quantities moves (a real compare-and-set conflict).
    const sold = quantities[Math.floor(random() * quantities.length)];
    if (sold !== undefined && random() < (o.faults?.saleRate ?? 0)) {
      const key = pairKey(String(sold.inventoryItemId), String(sold.locationId));
      const had = available.get(key);
      if (had !== undefined) {
        available.set(key, had > 0 ? had - 1 : had + 3);
        stats.sales++;
      }
    }
    const seen = new Set<string>();
    quantities.forEach((q, i) => {
      const key = pairKey(String(q.inventoryItemId), String(q.locationId));
      const stored = available.get(key);
      if (seen.has(key)) err("NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR", i, "a pair twice");
      seen.add(key);
      if (typeof q.quantity !== "number" || !Number.isInteger(q.quantity) || q.quantity < 0)
        err("INVALID_QUANTITY_NEGATIVE", i, "The quantity can't be negative.");
      if (!items.has(String(q.inventoryItemId)))
        err("INVALID_INVENTORY_ITEM", i, "The specified inventory item could not be found.");
      else if (stored === undefined)
        err(
          "ITEM_NOT_STOCKED_AT_LOCATION",
          i,
          "The specified inventory item is not stocked at the location.",
        );
      else if (input.ignoreCompareQuantity !== true && typeof q.compareQuantity !== "number")
        err(
          "COMPARE_QUANTITY_REQUIRED",
          i,
          "The compareQuantity argument must be given to each quantity or ignored using ignoreCompareQuantity.",
          "compareQuantity",
        );
      else if (input.ignoreCompareQuantity !== true && q.compareQuantity !== stored) {
        stats.conflicts++;
        err(
          "COMPARE_QUANTITY_STALE",
          i,
          "The compareQuantity value does not match persisted value.",
          "compareQuantity",
        );
      }
    });
    log.note("mutation", quantities.length, errors.length === 0 ? "ok" : (errors[0]?.code ?? "error"));
    if (errors.length > 0)
      return { inventorySetQuantities: { inventoryAdjustmentGroup: null, userErrors: errors } };
    for (const q of quantities)
      available.set(pairKey(String(q.inventoryItemId), String(q.locationId)), q.quantity as number);
    return { inventorySetQuantities: { inventoryAdjustmentGroup: { reason: input.reason }, userErrors: [] } };
  }

  return {
    url: `http://127.0.0.1:${server.port}/admin/api/2025-01/graphql.json`,
    available: (inventoryItemId: string, locationId: string) =>
      available.get(pairKey(inventoryItemId, locationId)),
    stats,
    log,
    /** The client restarted: it knows nothing of the bucket. */
    newClient: () => {
      notBeforeMs = 0;
    },
    stop: () => server.stop(true),
  };
}
