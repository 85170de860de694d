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

// Shopify Admin GraphQL: `inventorySetQuantities` sets absolute "available" quantities per inventory item and
// location, with a compare-and-set: each quantity carries `compareQuantity`, what we believe is there now; if
// the shop changed it meanwhile (a sale), the mutation fails with COMPARE_QUANTITY_STALE and nothing is set.
// We then read the quantities again and resend, so the shop ends on Sluice's newest value. Shopify budgets by
// query cost (a leaky bucket: `extensions.cost.throttleStatus`); we pace by it and wait it out when THROTTLED.

export type ShopifyRef = { inventoryItemId: string; locationId: string };

export const shopifySpec: ProfileSpec<ShopifyRef> = {
  name: "shopify",
  // inventorySetQuantities takes at most 250 quantities per call.
  batchItemsMax: 250,
  // 100 quantities ⇒ a read of 1 + 2 × 100 = 201 points, a fifth of the standard 1,000-point bucket.
  batchItemsDefault: 100,
  locationRequired: true,
  parseRef(row, location) {
    const unknown = unknownField(row, ["inventoryItemId"]);
    if (unknown !== null) return unknown;
    const item = gidOf(row.inventoryItemId, "InventoryItem");
    if (item === null) return `"inventoryItemId" must be gid://shopify/InventoryItem/<n> or <n>`;
    const locationId = gidOf(location, "Location");
    if (locationId === null) return `its warehouse's location must be gid://shopify/Location/<n> or <n>`;
    return { inventoryItemId: item, locationId };
  },
  refKey: (r) => `${r.inventoryItemId}|${r.locationId}`,
};

function gidOf(v: unknown, type: string): string | null {
  const s = typeof v === "number" && Number.isSafeInteger(v) ? String(v) : typeof v === "string" ? v : null;
  if (s === null) return null;
  if (/^\d+$/.test(s)) return `gid://shopify/${type}/${s}`;
  return new RegExp(`^gid://shopify/${type}/\\d+$`).test(s) ? s : null;
}

export const shopifyMutation = `mutation SluiceSetAvailable($input: InventorySetQuantitiesInput!) {
  inventorySetQuantities(input: $input) {
    inventoryAdjustmentGroup { reason }
    userErrors { code field message }
  }
}`;

/** One aliased field per pair: `q<i>: inventoryItem(id: $i<i>) { inventoryLevel(locationId: $l<i>) { … } }`. */
export function shopifyReadQuery(n: number): string {
  const vars = Array.from({ length: n }, (_, i) => `$i${i}: ID!, $l${i}: ID!`).join(", ");
  const fields = Array.from(
    { length: n },
    (_, i) =>
      `  q${i}: inventoryItem(id: $i${i}) { inventoryLevel(locationId: $l${i}) { quantities(names: ["available"]) { name quantity } } }`,
  ).join("\n");
  return `query SluiceReadAvailable(${vars}) {\n${fields}\n}`;
}

/**
 * Shopify's documented costs: a mutation 10 points; an object 1 point, so a read costs about 1 + 2 per pair.
 * An estimate only: every answer carries the real `requestedQueryCost`, and a THROTTLED one the exact wait.
 */
const mutationCostPoints = 10;
const readCostPoints = (pairs: number) => 1 + 2 * pairs;

export type ShopifySettings = {
  /** The shop's GraphQL endpoint, e.g. https://<shop>.myshopify.com/admin/api/2025-01/graphql.json. */
  url: string;
  accessToken: Secret;
  batchItemsMax: number;
  headers: Array<[string, string]>;
};

type Bucket = { maximum: number; available: number; restorePerSecond: number; atMs: number };

const pairKey = (r: ShopifyRef) => `${r.inventoryItemId}|${r.locationId}`;

export class ShopifyProfile implements Profile<ShopifyRef> {
  readonly name = "shopify" as const;
  readonly batchItemsMax: number;
  /**
   * What the shop holds per (item, location), as last read or set: the next compareQuantity. Bounded by the
   * mapping table (one entry per mapped SKU).
   */
  private readonly known = new Map<string, number>();
  private bucket: Bucket | null = null;
  /** The cost Shopify asked for a call of this op and size, when it said (bounded: 2 ops × sizes ≤ 250). */
  private readonly costSeen = new Map<string, number>();

  constructor(private readonly s: ShopifySettings) {
    this.batchItemsMax = s.batchItemsMax;
  }

  group(targets: Array<Target<ShopifyRef>>): Array<Array<Target<ShopifyRef>>> {
    const out: Array<Array<Target<ShopifyRef>>> = [];
    for (let i = 0; i < targets.length; i += this.batchItemsMax)
      out.push(targets.slice(i, i + this.batchItemsMax));
    return out;
  }

  next(targets: Array<Target<ShopifyRef>>): Call<ShopifyRef> {
    const unknown = targets.filter((t) => !this.known.has(pairKey(t.ref)));
    if (unknown.length > 0) return this.readCall(unknown);
    const quantities = targets.map((t) => ({
      inventoryItemId: t.ref.inventoryItemId,
      locationId: t.ref.locationId,
      quantity: t.ats,
      compareQuantity: this.known.get(pairKey(t.ref)),
    }));
    const input = { name: "available", reason: "correction", ignoreCompareQuantity: false, quantities };
    return this.call("write", { query: shopifyMutation, variables: { input } }, mutationCostPoints, targets);
  }

  private readCall(targets: Array<Target<ShopifyRef>>): Call<ShopifyRef> {
    const variables: Record<string, string> = {};
    targets.forEach((t, i) => {
      variables[`i${i}`] = t.ref.inventoryItemId;
      variables[`l${i}`] = t.ref.locationId;
    });
    const body = { query: shopifyReadQuery(targets.length), variables };
    return this.call("read", body, readCostPoints(targets.length), targets);
  }

  private call(op: "read" | "write", body: unknown, cost: number, covers: Array<Target<ShopifyRef>>) {
    return {
      op,
      url: this.s.url,
      headers: [
        ["Content-Type", "application/json"],
        ["X-Shopify-Access-Token", this.s.accessToken.reveal()],
        ...this.s.headers,
      ] as Array<[string, string]>,
      body: JSON.stringify(body),
      cost,
      covers,
    };
  }

  paceMs(call: Call<ShopifyRef>, nowMs: number): number {
    const cost = this.costSeen.get(costKey(call)) ?? call.cost ?? mutationCostPoints;
    return this.bucket === null ? 0 : msUntil(this.bucket, cost, nowMs);
  }

  judge(call: Call<ShopifyRef>, a: Answer, nowMs: number): Verdict<ShopifyRef> {
    if (a.status < 200 || a.status >= 300) return httpVerdict(a, `HTTP ${a.status}: ${bodySnippet(a.text)}`);
    const body = parseJsonOrNull(a.text);
    if (!isRecord(body))
      return {
        kind: "retry",
        throttled: false,
        failure: "api_error",
        status: a.status,
        detail: `not a GraphQL answer: ${bodySnippet(a.text)}`,
        retryAfterMs: null,
      };
    const requested = this.noteCost(body, nowMs);
    if (requested !== null) this.costSeen.set(costKey(call), requested);
    const errors = Array.isArray(body.errors) ? body.errors.filter(isRecord) : [];
    if (errors.some((e) => isRecord(e.extensions) && e.extensions.code === "THROTTLED")) {
      const wait = this.bucket === null ? null : msUntil(this.bucket, requested ?? call.cost ?? 0, nowMs);
      return {
        kind: "retry",
        throttled: true,
        failure: "throttled",
        status: a.status,
        detail: "Shopify THROTTLED: the query cost is over what the bucket holds",
        retryAfterMs: wait,
      };
    }
    if (errors.length > 0) {
      const detail = `Shopify: ${bodySnippet(errors.map((e) => String(e.message)).join("; "))}`;
      return { kind: "refused", failure: "api_error", status: a.status, detail };
    }
    const data = isRecord(body.data) ? body.data : {};
    return call.op === "read" ? this.judgeRead(call, data) : this.judgeWrite(call, data, a.status);
  }

  /** The bucket as the answer reports it; returns the requested cost. */
  private noteCost(body: Record<string, unknown>, nowMs: number): number | null {
    const cost = isRecord(body.extensions) && isRecord(body.extensions.cost) ? body.extensions.cost : null;
    const t = cost !== null && isRecord(cost.throttleStatus) ? cost.throttleStatus : null;
    if (t !== null) {
      const [maximum, available, restorePerSecond] = [
        t.maximumAvailable,
        t.currentlyAvailable,
        t.restoreRate,
      ];
      if (
        typeof maximum === "number" &&
        typeof available === "number" &&
        typeof restorePerSecond === "number"
      )
        if (restorePerSecond > 0) this.bucket = { maximum, available, restorePerSecond, atMs: nowMs };
    }
    return cost !== null && typeof cost.requestedQueryCost === "number" ? cost.requestedQueryCost : null;
  }

  private judgeRead(call: Call<ShopifyRef>, data: Record<string, unknown>): Verdict<ShopifyRef> {
    const failed: Array<TargetFailure<ShopifyRef>> = [];
    call.covers.forEach((t, i) => {
      const item = data[`q${i}`];
      const level = isRecord(item) ? item.inventoryLevel : null;
      const quantities = isRecord(level) && Array.isArray(level.quantities) ? level.quantities : null;
      const available = quantities?.find((q) => isRecord(q) && q.name === "available");
      if (!isRecord(item)) failed.push({ target: t, detail: `Shopify has no ${t.ref.inventoryItemId}` });
      else if (!isRecord(available) || typeof available.quantity !== "number")
        failed.push({ target: t, detail: `${t.ref.inventoryItemId} is not stocked at ${t.ref.locationId}` });
      else this.known.set(pairKey(t.ref), available.quantity);
    });
    return { kind: "read", failed };
  }

  private judgeWrite(
    call: Call<ShopifyRef>,
    data: Record<string, unknown>,
    status: number,
  ): Verdict<ShopifyRef> {
    const result = data.inventorySetQuantities;
    const userErrors =
      isRecord(result) && Array.isArray(result.userErrors) ? result.userErrors.filter(isRecord) : [];
    if (!isRecord(result))
      return {
        kind: "refused",
        failure: "api_error",
        status,
        detail: "Shopify answered without inventorySetQuantities",
      };
    if (userErrors.length === 0) {
      for (const t of call.covers) this.known.set(pairKey(t.ref), t.ats);
      return { kind: "written", failed: [], resend: [], conflict: false };
    }
    // A userError refuses the whole mutation: nothing was set. Stale compare values are read again; a
    // quantity refused for another reason is dropped; the rest go again.
    const failed: Array<TargetFailure<ShopifyRef>> = [];
    let conflict = false;
    for (const e of userErrors) {
      const index = quantityIndex(e.field);
      const target = index === null ? undefined : call.covers[index];
      if (target === undefined) {
        const detail = `Shopify ${String(e.code)}: ${bodySnippet(String(e.message))}`;
        return { kind: "refused", failure: "api_error", status, detail };
      }
      if (e.code === "COMPARE_QUANTITY_STALE") {
        this.known.delete(pairKey(target.ref));
        conflict = true;
      } else if (!failed.some((f) => f.target === target)) {
        failed.push({ target, detail: `Shopify ${String(e.code)}: ${bodySnippet(String(e.message))}` });
      }
    }
    const refused = new Set(failed.map((f) => f.target));
    return { kind: "written", failed, resend: call.covers.filter((t) => !refused.has(t)), conflict };
  }
}

const costKey = (call: Call<ShopifyRef>) => `${call.op}:${call.covers.length}`;

/** `["input", "quantities", "3", "compareQuantity"]` → 3. */
function quantityIndex(field: unknown): number | null {
  if (!Array.isArray(field)) return null;
  const at = field.indexOf("quantities");
  const n = at < 0 ? Number.NaN : Number(field[at + 1]);
  return Number.isSafeInteger(n) && n >= 0 ? n : null;
}

/** Milliseconds until the bucket, leaking back at its restore rate, holds `cost` points. */
function msUntil(b: Bucket, cost: number, nowMs: number): number {
  const available = Math.min(
    b.maximum,
    b.available + (Math.max(0, nowMs - b.atMs) * b.restorePerSecond) / 1000,
  );
  return cost <= available ? 0 : Math.ceil(((cost - available) * 1000) / b.restorePerSecond);
}
