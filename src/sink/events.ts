import { Emitter } from "../instrumentation/index.ts";
import type { ErpChainOutcome } from "./erp-chain.ts";
import type { ItemFailureCode } from "./marketplaces/types.ts";
import type { FailureKind } from "./post.ts";

// Named events with payloads: the sink's loop emits them, the metrics exporter and tests subscribe. The loop
// never imports a metrics library (the same pattern as src/instrumentation).

export type SinkEvents = {
  /** One HTTP request ended (any outcome). */
  request: { seconds: number; ok: boolean };
  /** A message reached the endpoint with a 2xx and was acked. */
  delivered: { streamSeq: number; idempotencyKey: string; attempts: number };
  /** An attempt failed; `willRetry` false means the message goes to the dead letter next. */
  attempt_failed: {
    streamSeq: number;
    kind: FailureKind;
    status: number | null;
    attempt: number;
    willRetry: boolean;
  };
  /** The bound was exhausted (or the failure was permanent): the message is in sluice.dlq.sink_failed. */
  dead_lettered: { streamSeq: number; idempotencyKey: string; detail: string };
  /** The dead letter could not be published: the message is left for redelivery. */
  dead_letter_failed: { streamSeq: number; error: string };
  /** An ERP batch delivered, judged against its partition's chain (src/sink/erp-chain.ts). */
  erp_chain: { outcome: ErpChainOutcome; stage: string; partition: number; batchNo: number };
  /**
   * A marketplace batch settled, by item: delivered (the marketplace has the value), superseded (a newer value
   * of the SKU was in the batch), stale (older than one delivered before), unchanged (delivered before),
   * dead_lettered (alone, in sluice.dlq.sink_failed).
   */
  items: { delivered: number; superseded: number; stale: number; unchanged: number; deadLettered: number };
  /** One item dead-lettered alone; its message's other items went on. */
  item_dead_lettered: { streamSeq: number; index: number; code: ItemFailureCode; detail: string };
  /** A wait for a marketplace's budget: its cost bucket (Shopify), a Retry-After, a ban. */
  throttle_wait: { ms: number };
  /** A compare-and-set conflict (Shopify): `items` quantities read again and sent again. */
  conflict: { items: number };
};

export type SinkEventName = keyof SinkEvents;

export class SinkInstrumentation extends Emitter<SinkEvents> {}
