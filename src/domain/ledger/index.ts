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
  assertPosition,
  emptyView,
  foldEntries,
  type InputRef,
  Ledger,
  type LedgerChanges,
  type LedgerLimits,
  type LedgerView,
  ledgerLimitsDefault,
} from "./ledger.ts";
export * from "./types.ts";
