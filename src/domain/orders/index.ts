export {
  parseCancel,
  parseOrder,
  parseOrderRef,
  parseRejected,
  parseReturn,
  parseShipped,
} from "./commands.ts";
export {
  noRoutingView,
  type OrderChanges,
  type OrderCount,
  type OrderLimits,
  Orders,
  type OrderView,
  type RoutingView,
  statusOf,
  type TimerOp,
} from "./orders.ts";
export * from "./types.ts";
