import { itemCommandIdBytesMax } from "../../domain/ledger/commands.ts";
import {
  checkLineRequest,
  checkStockItem,
  type LineRequest,
  parseId,
  parseStockCommand,
  type StockCommand,
  type StockItem,
} from "../../domain/ledger/index.ts";
import type { OrderInputLimits } from "../../domain/orders/commands.ts";
import { type ChannelSnapshot, parseChannelSnapshot } from "../../domain/sync/index.ts";
import { decodePayload } from "../../stream/codec.ts";
import type { InboundMessage } from "../../stream/partition-runner.ts";
import { decodeToken, encodeToken, parsePartitioned, tokenPartition } from "../../stream/subjects.ts";
import { contentTypeOf, type EnvelopeItem, openEnvelope, type RefusedItem } from "../envelopes.ts";
import { type Inbound, type InboundContext, type InboundReject, refused } from "../inbound.ts";

/**
 * What a ledger partition applies, typed. `stock`: a stock command of one SKU, from `stock.<sku>` (no
 * `envelopeItem`) or one item of an `items.<source>` envelope; `line`: one line request of a `cmd.<p>`
 * envelope. An item keeps its envelope index and value: a refusal while applying dead-letters it alone.
 */
export type LedgerCommand =
  | { kind: "stock"; sku: string; command: StockCommand; envelopeItem?: EnvelopeItem<StockItem> }
  | { kind: "line"; request: LineRequest; envelopeItem: EnvelopeItem<LineRequest> }
  // A share of a channel report is judged whole: no envelope item of its own (the field says so to readers of
  // `envelopeItem` on any command).
  | { kind: "reconcile"; channel: string; snapshot: ChannelSnapshot; envelopeItem?: undefined };

type Context = InboundContext<OrderInputLimits>;

/**
 * The ledger stage's inbound step: a message of the partition's stream → its commands, or dead letters with
 * their reasons. Every check that needs no ledger state is here (subject, token, ids, ownership, decoding,
 * command shape); what needs it (a refusal against stock, a repeated command id) is the applier's. Commands
 * keep envelope order. Never throws.
 */
export function decodeLedgerMessage(m: InboundMessage, ctx: Context): Inbound<LedgerCommand> {
  const route = parsePartitioned(m.subject);
  if (route === null || route.partition !== ctx.partition) {
    return refused("bad_subject", `${m.subject} is not a subject of ledger partition ${ctx.partition}`);
  }
  if (route.kind === "stock" && route.tokens.length === 1) return stock(m, route.tokens[0] as string, ctx);
  if (route.kind === "items") return items(m, ctx);
  if (route.kind === "cmd") return lineRequests(m, ctx);
  if (route.kind === "reconcile" && route.tokens.length === 1)
    return reconcile(m, route.tokens[0] as string, ctx);
  return refused(
    "unknown_kind",
    `ledger partitions take stock.<sku>, items.<source> and cmd.<p>, not ${route.kind} (channel reports: reconcile.<channel>)`,
  );
}

function stock(m: InboundMessage, token: string, ctx: Context): Inbound<LedgerCommand> {
  let sku: string;
  try {
    sku = decodeToken(token);
  } catch (error) {
    return refused("bad_subject", (error as Error).message);
  }
  const id = parseId(sku, "sku", ctx.limits);
  if (!id.ok) return refused("invalid_command", id.detail);
  // Single writer per SKU (invariant 2): a message on another partition's subject is refused.
  const owner = tokenPartition(token, ctx.partitionCount);
  if (owner !== ctx.partition) {
    return refused(
      "wrong_partition",
      `SKU ${JSON.stringify(sku)} belongs to partition ${owner}, not ${ctx.partition}`,
    );
  }
  const decoded = decodePayload(m.data, contentTypeOf(m.headers));
  if (!decoded.ok) return refused(decoded.reason, decoded.detail);
  const parsed = parseStockCommand(decoded.value, ctx.limits);
  if (!parsed.ok) return refused(parsed.reason, parsed.detail);
  return { commands: [{ kind: "stock", sku, command: parsed.value }], rejects: [] };
}

function items(m: InboundMessage, ctx: Context): Inbound<LedgerCommand> {
  const envelope = openEnvelope<StockItem>(m.data, "items", (i) => checkStockItem(i, ctx.limits));
  if (!envelope.ok) return refused("invalid_command", envelope.detail);
  // Each item that does not pass is a dead letter of its own; the others apply (one bad item sinks none).
  const rejects = envelope.refused.map(refusedItem);
  const commands: LedgerCommand[] = [];
  // An item's id may be derived from its message's (`<commandId>/<i>`): a few bytes over idBytesMax.
  const commandIdBytesMax = itemCommandIdBytesMax(ctx.limits);
  for (const one of envelope.items) {
    const { index, item } = one;
    const owner = tokenPartition(encodeToken(item.sku), ctx.partitionCount);
    if (owner !== ctx.partition) {
      const detail = `items envelope item ${index}: SKU ${JSON.stringify(item.sku)} belongs to partition ${owner}, not ${ctx.partition}`;
      rejects.push({ reason: "wrong_partition", detail, item: one });
      continue;
    }
    const command = parseStockCommand(item.command, ctx.limits, commandIdBytesMax);
    if (!command.ok) {
      const detail = `items envelope item ${index} (${item.sku}): ${command.detail}`;
      rejects.push({ reason: command.reason, detail, item: one });
      continue;
    }
    commands.push({ kind: "stock", sku: item.sku, command: command.value, envelopeItem: one });
  }
  return { commands, rejects };
}

function lineRequests(m: InboundMessage, ctx: Context): Inbound<LedgerCommand> {
  const envelope = openEnvelope<LineRequest>(m.data, "cmd", (r) => checkLineRequest(r, ctx.limits));
  if (!envelope.ok) return refused("invalid_command", envelope.detail);
  const rejects = envelope.refused.map(refusedItem);
  const commands: LedgerCommand[] = [];
  for (const one of envelope.items) {
    const owner = tokenPartition(encodeToken(one.item.sku), ctx.partitionCount);
    if (owner === ctx.partition) {
      commands.push({ kind: "line", request: one.item, envelopeItem: one });
    } else {
      const detail = `cmd envelope item ${one.index}: SKU ${JSON.stringify(one.item.sku)} belongs to partition ${owner}, not ${ctx.partition}`;
      rejects.push({ reason: "wrong_partition", detail, item: one });
    }
  }
  return { commands, rejects };
}

/**
 * A partition's share of a channel's report (the router's, or published straight to the partitioned subject:
 * held to the same rules). Every SKU in it must be this partition's: a share is judged whole.
 */
function reconcile(m: InboundMessage, token: string, ctx: Context): Inbound<LedgerCommand> {
  let channel: string;
  try {
    channel = decodeToken(token);
  } catch (error) {
    return refused("bad_subject", (error as Error).message);
  }
  const id = parseId(channel, "channel", ctx.limits);
  if (!id.ok) return refused("invalid_command", id.detail);
  const decoded = decodePayload(m.data, contentTypeOf(m.headers));
  if (!decoded.ok) return refused(decoded.reason, decoded.detail);
  const snapshot = parseChannelSnapshot(decoded.value, ctx.limits, true);
  if (!snapshot.ok) return refused(snapshot.reason, snapshot.detail);
  for (const { sku } of snapshot.value.items) {
    const owner = tokenPartition(encodeToken(sku), ctx.partitionCount);
    if (owner !== ctx.partition) {
      const detail = `channel report: SKU ${JSON.stringify(sku)} belongs to partition ${owner}, not ${ctx.partition}`;
      return refused("wrong_partition", detail);
    }
  }
  return { commands: [{ kind: "reconcile", channel, snapshot: snapshot.value }], rejects: [] };
}

/** An item that failed its envelope's check (its detail already names the item). */
function refusedItem(r: RefusedItem): InboundReject {
  return { reason: "invalid_command", detail: r.detail, item: { index: r.index, item: r.item } };
}
