import { DeliverPolicy, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import type { Config } from "../config/index.ts";
import { parseOrder } from "../domain/orders/index.ts";
import { contentTypeOf } from "../stages/envelopes.ts";
import { domainLimits } from "../stages/ledger/applier.ts";
import { decodePayload } from "../stream/codec.ts";
import { decodeToken, parsePartitioned, streamNames } from "../stream/subjects.ts";
import type { PastOrder } from "./what-if.ts";

/**
 * The last `count` orders from the order stream (what the channels sent, as the order stage received them),
 * oldest first. Orders share the stream with line results and WMS events: at most
 * routing.whatIfScanMessagesMax messages are read, for at most routing.whatIfWaitMs. Orders that do not
 * parse are skipped (they went to the dead-letter stream when they arrived).
 */
export async function recentOrders(
  js: JetStreamClient,
  jsm: JetStreamManager,
  config: Config,
  count: number,
): Promise<PastOrder[]> {
  const info = await jsm.streams.info(streamNames.order);
  const last = info.state.last_seq;
  if (info.state.messages === 0) return [];
  const start = Math.max(info.state.first_seq, last - config.routing.whatIfScanMessagesMax + 1);
  const consumer = await js.consumers.get(streamNames.order, {
    filter_subjects: "sluice.order.*.order.>",
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: start,
  });
  const limits = domainLimits(config);
  const found: PastOrder[] = [];
  const deadline = Date.now() + config.routing.whatIfWaitMs;
  while (Date.now() < deadline) {
    const batch = await consumer.fetch({ max_messages: 1000, expires: 1000 });
    let pending = 1;
    let seen = 0;
    for await (const m of batch) {
      seen++;
      pending = m.info.pending;
      const route = parsePartitioned(m.subject);
      if (route === null || route.tokens.length !== 2) continue;
      try {
        const channel = decodeToken(route.tokens[0] as string);
        const orderId = decodeToken(route.tokens[1] as string);
        const body = decodePayload(m.data, contentTypeOf(m.headers));
        if (!body.ok) continue;
        const parsed = parseOrder(channel, orderId, body.value, limits);
        if (!parsed.ok) continue;
        found.push({ input: parsed.value, atMs: Math.floor(m.info.timestampNanos / 1e6) });
        if (found.length >= 2 * count) found.splice(0, found.length - count);
      } catch {
        // A subject token that does not decode: not an order the order stage took either.
      }
    }
    if (seen === 0 || pending === 0) break;
  }
  return found.slice(-count);
}
