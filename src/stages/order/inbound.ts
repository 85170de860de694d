import { checkLineResult, type LineResult, parseId } from "../../domain/ledger/index.ts";
import type { OrderInputLimits } from "../../domain/orders/commands.ts";
import {
  type CancelInput,
  type OrderInput,
  parseCancel,
  parseOrder,
  parseRejected,
  parseReturn,
  parseShipped,
  type RejectedInput,
  type ReturnInput,
  type ShippedInput,
} from "../../domain/orders/index.ts";
import { decodePayload } from "../../stream/codec.ts";
import type { InboundMessage } from "../../stream/partition-runner.ts";
import { decodeToken, orderKey, parsePartitioned, subjects, tokenPartition } from "../../stream/subjects.ts";
import { contentTypeOf, openEnvelope } from "../envelopes.ts";
import { type Inbound, type InboundContext, refused } from "../inbound.ts";

/** What an order partition applies, typed: each from one message (`result`: one item of an envelope). */
export type OrderCommand =
  /** A clock message: deadlines and retention due by its stream time fire. */
  | { kind: "clock"; atMs: number }
  | { kind: "create"; key: string; order: OrderInput }
  | { kind: "cancel"; key: string; cancel: CancelInput }
  | { kind: "return"; key: string; returned: ReturnInput }
  | { kind: "shipped"; key: string; shipped: ShippedInput }
  | { kind: "rejected"; key: string; rejected: RejectedInput }
  | { kind: "result"; result: LineResult };

type Context = InboundContext<OrderInputLimits>;

/**
 * The order stage's inbound step: a message of the partition's streams → its commands, or dead letters with
 * their reasons. Subject kinds: `order|cancel|return.<channel>.<orderId>` (public), `wms.<warehouse>.<event>`
 * (WMS events about an order, routed), `result.<ledgerPartition>` (the ledger's answers), `clock`. Checks
 * that need no state are all here; what needs the orders (an unknown order, a line the order lacks) is the
 * applier's. Never throws.
 */
export function decodeOrderMessage(m: InboundMessage, ctx: Context): Inbound<OrderCommand> {
  if (m.subject === subjects.orderClock(ctx.partition)) return one({ kind: "clock", atMs: m.atMs });
  const route = parsePartitioned(m.subject);
  if (route === null || route.partition !== ctx.partition) {
    return refused("bad_subject", `${m.subject} is not a subject of order partition ${ctx.partition}`);
  }
  if (route.kind === "result") return results(m, ctx);
  if (route.kind === "wms" && route.tokens.length === 2) {
    return wms(m, route.tokens[0] as string, route.tokens[1] as string, ctx);
  }
  if (
    (route.kind === "order" || route.kind === "cancel" || route.kind === "return") &&
    route.tokens.length === 2
  ) {
    return orderInput(m, route.kind, route.tokens as [string, string], ctx);
  }
  return refused(
    "unknown_kind",
    `order partitions take order, cancel, return, wms, result and clock subjects, not ${route.kind}`,
  );
}

const one = (command: OrderCommand): Inbound<OrderCommand> => ({ commands: [command], rejects: [] });

function orderInput(
  m: InboundMessage,
  kind: "order" | "cancel" | "return",
  tokens: [string, string],
  ctx: Context,
): Inbound<OrderCommand> {
  let channel: string;
  let orderId: string;
  try {
    channel = decodeToken(tokens[0]);
    orderId = decodeToken(tokens[1]);
  } catch (error) {
    return refused("bad_subject", (error as Error).message);
  }
  for (const [field, id] of [
    ["channel", channel],
    ["orderId", orderId],
  ] as const) {
    const checked = parseId(id, field, ctx.limits);
    if (!checked.ok) return refused(checked.reason, checked.detail);
  }
  const key = `${tokens[0]}.${tokens[1]}`;
  const owner = tokenPartition(key, ctx.partitionCount);
  if (owner !== ctx.partition) {
    return refused(
      "wrong_partition",
      `order ${channel}/${orderId} belongs to partition ${owner}, not ${ctx.partition}`,
    );
  }
  const decoded = decodePayload(m.data, contentTypeOf(m.headers));
  if (!decoded.ok) return refused(decoded.reason, decoded.detail);
  if (kind === "order") {
    const parsed = parseOrder(channel, orderId, decoded.value, ctx.limits);
    return parsed.ok
      ? one({ kind: "create", key, order: parsed.value })
      : refused(parsed.reason, parsed.detail);
  }
  if (kind === "cancel") {
    const parsed = parseCancel(decoded.value, ctx.limits);
    if (!parsed.ok) return refused(parsed.reason, parsed.detail);
    const { lineIds, reason } = parsed.value;
    return one({ kind: "cancel", key, cancel: { channel, orderId, lineIds, cause: "customer", reason } });
  }
  const parsed = parseReturn(channel, orderId, decoded.value, ctx.limits);
  return parsed.ok
    ? one({ kind: "return", key, returned: parsed.value })
    : refused(parsed.reason, parsed.detail);
}

function wms(m: InboundMessage, warehouseToken: string, event: string, ctx: Context): Inbound<OrderCommand> {
  let warehouse: string;
  try {
    warehouse = decodeToken(warehouseToken);
  } catch (error) {
    return refused("bad_subject", (error as Error).message);
  }
  const checked = parseId(warehouse, "warehouse", ctx.limits);
  if (!checked.ok) return refused(checked.reason, checked.detail);
  const decoded = decodePayload(m.data, contentTypeOf(m.headers));
  if (!decoded.ok) return refused(decoded.reason, decoded.detail);
  if (event !== "shipped" && event !== "rejected") {
    return refused("unknown_kind", `WMS events about orders are shipped and rejected, not ${event}`);
  }
  const parsed =
    event === "shipped"
      ? parseShipped(warehouse, decoded.value, ctx.limits)
      : parseRejected(warehouse, decoded.value, ctx.limits);
  if (!parsed.ok) return refused(parsed.reason, parsed.detail);
  const key = orderKey(parsed.value.channel, parsed.value.orderId);
  const owner = tokenPartition(key, ctx.partitionCount);
  if (owner !== ctx.partition) {
    return refused("wrong_partition", `order ${key} belongs to partition ${owner}, not ${ctx.partition}`);
  }
  return one(
    "shipmentId" in parsed.value
      ? { kind: "shipped", key, shipped: parsed.value }
      : { kind: "rejected", key, rejected: parsed.value as RejectedInput },
  );
}

/** The ledger's answers: a malformed one is dead-lettered alone; the others of the envelope apply. */
function results(m: InboundMessage, ctx: Context): Inbound<OrderCommand> {
  const envelope = openEnvelope<LineResult>(m.data, "result", (r) => checkLineResult(r, ctx.limits));
  if (!envelope.ok) return refused("invalid_command", envelope.detail);
  return {
    commands: envelope.items.map(({ item }) => ({ kind: "result", result: item })),
    rejects: envelope.refused.map((r) => ({ reason: "invalid_command", detail: r.detail, item: r })),
  };
}
