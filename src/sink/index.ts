// The reference sink: SLUICE_OUT → HTTP, in order, at least once with an Idempotency-Key, dead letters after
// a bound. `bun src/sink/main.ts --help` lists its options.
export { type SinkEventName, type SinkEvents, SinkInstrumentation } from "./events.ts";
export { createSinkMetrics, serveMetrics } from "./metrics.ts";
export {
  checkRelations,
  filterSubjectOf,
  outErpSubject,
  outStockSubject,
  type ParsedOptions,
  parseSinkOptions,
  type SinkOptions,
  type SinkSource,
  sinkDefaults,
  sinkUsage,
} from "./options.ts";
export { backoffMs, type FailureKind, type PostOutcome, postJson, retryAfterMs } from "./post.ts";
export {
  type Sink,
  type SinkDeps,
  SinkError,
  type SinkStats,
  sinkDeadLetterReason,
  sinkDeadLetterSubject,
  sinkHeaders,
  startSink,
} from "./sink.ts";
