import type { FailureKind } from "../post.ts";

// The shapes every marketplace profile shares: what the sink hands a profile (targets), what a profile asks
// the sink to send (calls), and what an answer means (verdicts). The retry loop (deliver.ts) owns retries,
// waits and bounds; a profile only builds requests and reads answers, so its rules are data.

export const profileNames = ["lazada", "shopify", "shopee"] as const;
export type ProfileName = (typeof profileNames)[number];

/** One item of a `sluice.out.stock.<channel>` envelope (docs/sync-and-erp.md). */
export type StockItem = { sku: string; ats: number; version: number; atMs: number };

/** A SKU's newest value, mapped to the marketplace's ids (`ref`, per profile). */
export type Target<R> = { sku: string; ats: number; version: number; ref: R };

/**
 * Why an item was dead-lettered, a fixed list (a metric label):
 * - item_invalid: the item is not `{sku, ats, version}` as Sluice writes it;
 * - sku_unmapped: the mapping table has no row for the SKU;
 * - rejected: the marketplace refused it (unknown id, not stocked at the location, bad credentials…);
 * - attempts_exhausted: `--attempts` failed tries (5xx, network, timeouts);
 * - throttle_exhausted: `--throttle-retries-max` throttled tries;
 * - conflicts_exhausted: `--conflict-retries-max` compare-and-set conflicts in a row (Shopify).
 */
export const itemFailureCodes = [
  "item_invalid",
  "sku_unmapped",
  "rejected",
  "attempts_exhausted",
  "throttle_exhausted",
  "conflicts_exhausted",
] as const;
export type ItemFailureCode = (typeof itemFailureCodes)[number];

/** One HTTP request a profile wants sent; `covers` are the targets it is about. */
export type Call<R> = {
  /** `write` sets quantities; `read` fetches what a write needs (Shopify's compare values). */
  op: "write" | "read";
  url: string;
  headers: Array<[string, string]>;
  body: string;
  /** The API's own cost of the call where it budgets by cost (Shopify), else null. */
  cost: number | null;
  covers: Array<Target<R>>;
};

/** An answer as the profile sees it. */
export type Answer = { status: number; text: string; retryAfterMs: number | null };

export type TargetFailure<R> = { target: Target<R>; detail: string };

export type Verdict<R> =
  /**
   * A write was answered: `failed` are refused for good, `resend` were not applied and go again (an API that
   * refuses a whole request for some of its items; a compare-and-set conflict when `conflict`); every other
   * covered target is applied.
   */
  | { kind: "written"; failed: Array<TargetFailure<R>>; resend: Array<Target<R>>; conflict: boolean }
  /** A read was answered: `failed` cannot be written (not stocked there…); the others can now be. */
  | { kind: "read"; failed: Array<TargetFailure<R>> }
  /** Nothing applied; worth another try (after `retryAfterMs` when the API said so). */
  | {
      kind: "retry";
      throttled: boolean;
      failure: FailureKind;
      status: number | null;
      detail: string;
      retryAfterMs: number | null;
    }
  /** Nothing applied and another try would not help (bad credentials, a malformed request). */
  | { kind: "refused"; failure: FailureKind; status: number | null; detail: string };

export interface Profile<R> {
  readonly name: ProfileName;
  /** Items (or the API's unit: Lazada's <Sku>, Shopee's models of one item) per request. */
  readonly batchItemsMax: number;
  /** Splits targets into requests the API allows. */
  group(targets: Array<Target<R>>): Array<Array<Target<R>>>;
  /** The next call for these targets: the write, or first a read the write needs. `nowMs`: epoch ms (signed). */
  next(targets: Array<Target<R>>, nowMs: number): Call<R>;
  /** What an answer to `call` means. */
  judge(call: Call<R>, answer: Answer, nowMs: number): Verdict<R>;
  /** A pause before `call` that the API's own budget asks for (Shopify's cost bucket); 0: none. */
  paceMs(call: Call<R>, nowMs: number): number;
}

/** Per profile: how a mapping row becomes the marketplace's ids, and the limits of its API. */
export type ProfileSpec<R> = {
  name: ProfileName;
  /** The documented most per request, and the default (what the marketplace recommends). */
  batchItemsMax: number;
  batchItemsDefault: number;
  /** A location is required (Shopify sets quantities per location). */
  locationRequired: boolean;
  /** A mapping row (`location`: the marketplace's id of the row's warehouse, or null) → ids, or why not. */
  parseRef(row: Record<string, unknown>, location: string | null): R | string;
  /** Two SKUs with the same key would write the same marketplace quantity: refused in the table. */
  refKey(ref: R): string;
};

/** An HTTP verdict for a non-2xx answer, shared by the profiles. */
export function httpVerdict<R>(a: Answer, detail: string): Verdict<R> {
  const status = a.status;
  if (status === 429)
    return {
      kind: "retry",
      throttled: true,
      failure: "http_429",
      status,
      detail,
      retryAfterMs: a.retryAfterMs,
    };
  if (status === 408 || status === 425 || status >= 500) {
    const failure = status >= 500 ? "http_5xx" : "http_4xx";
    return { kind: "retry", throttled: false, failure, status, detail, retryAfterMs: a.retryAfterMs };
  }
  return { kind: "refused", failure: status >= 400 ? "http_4xx" : "http_other", status, detail };
}

/** JSON.parse that answers null instead of throwing. */
export function parseJsonOrNull(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

export const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
