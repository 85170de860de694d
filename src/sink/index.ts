// The reference sink: SLUICE_OUT → HTTP, in order, at least once with an Idempotency-Key, dead letters after
// a bound; or, with a marketplace profile, Lazada's, Shopify's or Shopee's stock API (./marketplaces/).
// `bun src/sink/main.ts --help` lists its options.
export { type SinkEventName, type SinkEvents, SinkInstrumentation } from "./events.ts";
export { loadMarketplace, type Marketplace } from "./marketplaces/index.ts";
export { createSinkMetrics, serveMetrics } from "./metrics.ts";
export {
  checkProfile,
  checkRelations,
  filterSubjectOf,
  outErpSubject,
  outStockSubject,
  type ParsedOptions,
  parseSinkOptions,
  profileSpecs,
  type SinkOptions,
  type SinkProfile,
  type SinkSource,
  sinkDefaults,
  sinkProfiles,
  sinkUsage,
} from "./options.ts";
export {
  backoffMs,
  type FailureKind,
  type HttpReply,
  httpPost,
  type PostOutcome,
  postJson,
  retryAfterMs,
} from "./post.ts";
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
