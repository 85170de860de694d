export { type DomainLimits, type Parsed, parseId, parseStockCommand } from "./commands.ts";
export { assertPosition, foldEntries, type InputRef, Ledger } from "./ledger.ts";
export * from "./types.ts";
