export {
  checkLineRequest,
  checkLineResult,
  checkStockItem,
  type DomainLimits,
  invalid,
  isObject,
  type Parsed,
  parseField,
  parseId,
  parseStockCommand,
  parseStockItems,
  type StockItem,
  stockCommandTypes,
} from "./commands.ts";
export {
  allocationChangedAtMs,
  allocationExpired,
  allocationFinished,
  compactEntries,
  emptyHistory,
  entryExpired,
  foldIntoHistory,
  PositionFold,
  type RetentionLimits,
  type SkuHistory,
} from "./history.ts";
export {
  assertPosition,
  emptyView,
  foldEntries,
  type InputRef,
  Ledger,
  type LedgerChanges,
  type LedgerLimits,
  type LedgerView,
  ledgerLimitsDefault,
  type ReservationKey,
  reservationKey,
} from "./ledger.ts";
export * from "./types.ts";
export { fillOrder, type WaitingKey, waitingKey, waitingKeyText } from "./waiting.ts";
