import { Emitter } from "../instrumentation/index.ts";
import type { ErpChainOutcome } from "./erp-chain.ts";
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
};

export type SinkEventName = keyof SinkEvents;

export class SinkInstrumentation extends Emitter<SinkEvents> {}
