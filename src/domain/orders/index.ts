export {
  parseCancel,
  parseOrder,
  parseOrderRef,
  parseRejected,
  parseReturn,
  parseShipped,
} from "./commands.ts";
export {
  type OrderChanges,
  type OrderCount,
  type OrderLimits,
  Orders,
  type OrderView,
  statusOf,
  type TimerOp,
} from "./orders.ts";
export * from "./types.ts";
