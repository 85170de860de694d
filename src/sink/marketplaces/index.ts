// Marketplace profiles of the reference sink: Lazada, Shopify, Shopee. This module is their door: the profiles,
// the mapping table, the retry loop, and `loadMarketplace`, which turns the sink's options into a profile.
import { SinkError } from "../errors.ts";
import type { SinkOptions } from "../options.ts";
import type { DeliverLimits } from "./deliver.ts";
import { type LazadaRef, lazadaProfile, lazadaSpec } from "./lazada.ts";
import { loadMapping } from "./mapping.ts";
import { Secret, SecretError } from "./secrets.ts";
import { type ShopeeRef, shopeeProfile, shopeeSpec } from "./shopee.ts";
import { ShopifyProfile, type ShopifyRef, shopifySpec } from "./shopify.ts";
import type { Profile, ProfileSpec } from "./types.ts";

export {
  type Carried,
  type Coalesced,
  coalesce,
  type Delivered,
  readEnvelope,
  readItem,
} from "./coalesce.ts";
export { type DeliverIo, type DeliverLimits, deliverAll, type Outcome } from "./deliver.ts";
export { banMs, type LazadaRef, lazadaApiPath, lazadaPayload, lazadaSign, lazadaSpec } from "./lazada.ts";
export { loadMapping, mappingSkusMax, parseMapping } from "./mapping.ts";
export { maskSecrets, Secret, SecretError } from "./secrets.ts";
export { type ShopeeRef, shopeeApiPath, shopeeBody, shopeeSign, shopeeSpec } from "./shopee.ts";
export {
  ShopifyProfile,
  type ShopifyRef,
  shopifyMutation,
  shopifyReadQuery,
  shopifySpec,
} from "./shopify.ts";
export * from "./types.ts";

/** A profile with its mapping table, its secrets (to mask them) and the limits of its retry loop. */
export type Marketplace = {
  profile: Profile<unknown>;
  mapping: ReadonlyMap<string, unknown>;
  secrets: Secret[];
  limits: DeliverLimits;
};

/** Reads the mapping table and the secrets; a SinkError says what to fix. */
export function loadMarketplace(o: SinkOptions, nowMs = Date.now()): Marketplace {
  if (o.profile === "generic") throw new SinkError("the generic profile has no marketplace");
  const limits: DeliverLimits = {
    attemptsMax: o.attemptsMax,
    backoffMsMin: o.backoffMsMin,
    backoffMsMax: o.backoffMsMax,
    throttleRetriesMax: o.throttleRetriesMax,
    throttleWaitMsMax: o.throttleWaitMsMax,
    conflictRetriesMax: o.conflictRetriesMax,
  };
  try {
    const secret = (value: string, file: string, name: string) =>
      file !== "" ? Secret.fromFile(file, nowMs) : Secret.fromEnv(`SLUICE_SINK_${name}`, value);
    const common = { url: o.url, headers: o.headers };
    const accessToken = secret(o.accessToken, o.accessTokenFile, "ACCESS_TOKEN");
    switch (o.profile) {
      case "lazada": {
        const appSecret = secret(o.appSecret, o.appSecretFile, "APP_SECRET");
        const batchItemsMax = o.batchItemsMax ?? lazadaSpec.batchItemsDefault;
        const profile = lazadaProfile({ ...common, appKey: o.appKey, appSecret, accessToken, batchItemsMax });
        return {
          profile,
          mapping: mapping<LazadaRef>(o, lazadaSpec),
          secrets: [appSecret, accessToken],
          limits,
        };
      }
      case "shopify": {
        const batchItemsMax = o.batchItemsMax ?? shopifySpec.batchItemsDefault;
        const profile = new ShopifyProfile({ ...common, accessToken, batchItemsMax });
        return { profile, mapping: mapping<ShopifyRef>(o, shopifySpec), secrets: [accessToken], limits };
      }
      case "shopee": {
        const partnerKey = secret(o.partnerKey, o.partnerKeyFile, "PARTNER_KEY");
        const batchItemsMax = o.batchItemsMax ?? shopeeSpec.batchItemsDefault;
        const ids = { partnerId: o.partnerId, shopId: o.shopId };
        const profile = shopeeProfile({ ...common, ...ids, partnerKey, accessToken, batchItemsMax });
        return {
          profile,
          mapping: mapping<ShopeeRef>(o, shopeeSpec),
          secrets: [partnerKey, accessToken],
          limits,
        };
      }
    }
  } catch (error) {
    if (error instanceof SecretError) throw new SinkError(`--profile ${o.profile}: ${error.message}`);
    throw error;
  }
}

function mapping<R>(o: SinkOptions, spec: ProfileSpec<R>): Map<string, R> {
  const parsed = loadMapping(o.mappingFile, spec);
  if (!parsed.ok) throw new SinkError(`--mapping: ${parsed.detail}`);
  return parsed.value;
}
