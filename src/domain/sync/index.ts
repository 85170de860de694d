// Channel stock publishing for one ledger partition: coalescing per (channel, SKU) and rate budgets. Pure.
export {
  type AtsItem,
  type ChannelBudget,
  type ChannelCounters,
  type OfferResult,
  type PendingRow,
  type PendingState,
  type RefusedPair,
  type StockRequest,
  StockSync,
  type StockSyncChanges,
  type StockSyncLimits,
  type StockSyncState,
  stateFromRows,
} from "./coalescer.ts";
export { TokenBucket, type TokenBucketState } from "./token-bucket.ts";
