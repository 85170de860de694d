// Local marketplaces for the sink's profiles, written from each marketplace's public docs and enforcing their
// documented limits. No real marketplace is reachable from the tests: these mocks are the contract.
export { type Faults, MockLog, prng } from "./common.ts";
export { type LazadaMockOptions, lazadaSkusPerRequestMax, startLazadaMock } from "./lazada.ts";
export { type ShopeeMockOptions, shopeeModelsPerCallMax, startShopeeMock } from "./shopee.ts";
export { type ShopifyMockOptions, shopifyQuantitiesMax, startShopifyMock } from "./shopify.ts";
export { envelopes, newestValues, stockRounds } from "./workload.ts";
