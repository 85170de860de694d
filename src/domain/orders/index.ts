export {
  parseCancel,
  parseOrder,
  parseOrderRef,
  parseRejected,
  parseReturn,
  parseShipped,
} from "./commands.ts";
export {
  atRiskRowOf,
  finalAtOf,
  isFinal,
  kitPartId,
  kitWarehousesPerAttemptMax,
  noRoutingView,
  type OrderChanges,
  type OrderCount,
  type OrderLimits,
  Orders,
  type OrderView,
  type RetentionLimits,
  type RoutingView,
  statusOf,
  type TimerOp,
} from "./orders.ts";
export * from "./types.ts";
