import { DeliverPolicy, type JetStreamClient, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import type { Config } from "../config/index.ts";
import type { DomainLimits } from "../domain/ledger/index.ts";
import { parseOrder } from "../domain/orders/index.ts";
import { contentTypeOf } from "../stages/envelopes.ts";
import { domainLimits } from "../stages/ledger/applier.ts";
import { decodePayload } from "../stream/codec.ts";
import { decodeToken, parsePartitioned, streamNames } from "../stream/subjects.ts";
import type { PastOrder } from "./what-if.ts";

/**
 * The last `count` orders from the order stream (what the channels sent, as the order stage received them),
 * oldest first, read with one ordered consumer per partition. The order stream (the intake) holds new orders
 * only (and, from versions before SLUICE_ANSWER, the other kinds); at most routing.whatIfScanMessagesMax messages are read, for at most routing.whatIfWaitMs. Orders that do not
 * parse are skipped (they went to the dead-letter stream when they arrived).
 */
export async function recentOrders(
  js: JetStreamClient,
  jsm: JetStreamManager,
  config: Config,
  count: number,
): Promise<PastOrder[]> {
  const info = await jsm.streams.info(streamNames.order);
  if (info.state.messages === 0) return [];
  const start = Math.max(
    info.state.first_seq,
    info.state.last_seq - config.routing.whatIfScanMessagesMax + 1,
  );
  const deadline = Date.now() + config.routing.whatIfWaitMs;
  const found: Array<PastOrder & { seq: number }> = [];
  // nats-server 2.9: one filter subject per consumer, inside one of the stream's (per-partition) subjects.
  // Each partition gets its share of the wait, so a slow one never leaves the others out.
  const shareMs = config.routing.whatIfWaitMs / config.streams.partitionCount;
  for (let p = 0; p < config.streams.partitionCount; p++) {
    const deadlineMs = Math.min(deadline, Date.now() + shareMs);
    found.push(...(await partitionOrders(js, config, p, start, count, deadlineMs)));
  }
  return found
    .sort((a, b) => a.seq - b.seq)
    .slice(-count)
    .map(({ input, atMs }) => ({ input, atMs }));
}

async function partitionOrders(
  js: JetStreamClient,
  config: Config,
  partition: number,
  start: number,
  count: number,
  deadlineMs: number,
): Promise<Array<PastOrder & { seq: number }>> {
  const consumer = await js.consumers.get(streamNames.order, {
    // Every order-stage input of the partition: orders arrive mapped (…order.…) or as router copies (…routed.order.…).
    filter_subjects: `sluice.order.${partition}.>`,
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: start,
  });
  const limits = domainLimits(config);
  let found: Array<PastOrder & { seq: number }> = [];
  try {
    while (Date.now() < deadlineMs) {
      const batch = await consumer.fetch({ max_messages: 1000, expires: 1000 });
      let pending = 1;
      let seen = 0;
      for await (const m of batch) {
        seen++;
        pending = m.info.pending;
        const order = pastOrderOf(m, limits);
        if (order !== null) found.push(order);
        if (found.length >= 2 * count) found = found.slice(-count);
        if (pending === 0) break;
      }
      if (seen === 0 || pending === 0) break;
    }
  } finally {
    // The ordered consumer would otherwise linger on the server until its inactivity threshold.
    await consumer.delete().catch(() => undefined);
  }
  return found.slice(-count);
}

/** An order as the order stage took it, or null (not an order, or one it refused into the dead letters). */
function pastOrderOf(m: JsMsg, limits: DomainLimits): (PastOrder & { seq: number }) | null {
  const route = parsePartitioned(m.subject);
  if (route === null || route.kind !== "order" || route.tokens.length !== 2) return null;
  try {
    const channel = decodeToken(route.tokens[0] as string);
    const orderId = decodeToken(route.tokens[1] as string);
    const body = decodePayload(m.data, contentTypeOf(m.headers));
    if (!body.ok) return null;
    const parsed = parseOrder(channel, orderId, body.value, limits);
    if (!parsed.ok) return null;
    return { input: parsed.value, atMs: Math.floor(m.info.timestampNanos / 1e6), seq: m.seq };
  } catch {
    return null; // a subject token that does not decode: not an order the order stage took either
  }
}
