import {
  AckPolicy,
  type ConsumerConfig,
  type ConsumerInfo,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiError,
  type JetStreamManager,
  ReplayPolicy,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "@nats-io/jetstream";
import type { Config } from "../config/index.ts";
import type { Logger } from "../log/index.ts";
import {
  type Input,
  inputConsumerName,
  inputs,
  streamNames,
  subjects,
  unroutedConsumerName,
} from "./subjects.ts";

const msToNs = (ms: number) => ms * 1_000_000;

export class ProvisionError extends Error {
  override name = "ProvisionError";
}

type StreamSpec = Partial<StreamConfig> & { name: string; subjects: string[] };

/**
 * The largest message a stage stream takes: an input at streams.messageBytesMax plus the headers Sluice adds
 * when it forwards one (router copies, envelopes with their ids). SLUICE_UNROUTED takes messageBytesMax only,
 * so a router copy of anything it accepted fits (the router still checks each copy: a long subject may not).
 */
export const stageMessageBytesMax = (c: Config) => c.streams.messageBytesMax + c.streams.headerBytesMax;

/**
 * Every Sluice stream: limits retention on file, one duplicate window, one replica count. Inputs and internal
 * hops (`pushBack`) refuse a publish when full and never expire: nothing unapplied is ever deleted by a limit;
 * Sluice purges what was applied (retention.ts). Outputs and dead letters drop their oldest instead: a slow
 * reader must not stop the partitions.
 */
function limitsStream(
  c: Config,
  spec: {
    name: string;
    description: string;
    subjects: string[];
    ageMsMax: number;
    bytesMax: number;
    messageBytesMax?: number;
    pushBack?: boolean;
  },
): StreamSpec {
  return {
    name: spec.name,
    description: spec.description,
    subjects: spec.subjects,
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: spec.pushBack === true ? DiscardPolicy.New : DiscardPolicy.Old,
    max_age: spec.pushBack === true ? 0 : msToNs(spec.ageMsMax),
    max_bytes: spec.bytesMax,
    ...(spec.messageBytesMax === undefined ? {} : { max_msg_size: spec.messageBytesMax }),
    duplicate_window: msToNs(c.streams.duplicateWindowMs),
    num_replicas: c.streams.replicas,
  };
}

const inputDescriptions: Record<Input, string> = {
  ledger: "Sluice ledger stage",
  order: "Sluice order stage intake (new orders, returns)",
  answer: "Sluice order stage answers (ledger answers, cancels, WMS events, clocks), read before the intake",
};

/** A partitioned input stream: one subject per partition, so a publish to a partition that does not exist fails. */
export function stageStreamConfig(input: Input, c: Config): StreamSpec {
  return limitsStream(c, {
    name: streamNames[input],
    description: `${inputDescriptions[input]}; partitions=${c.streams.partitionCount}`,
    subjects: Array.from({ length: c.streams.partitionCount }, (_, p) =>
      subjects.inputPartitionFilter(input, p),
    ),
    ageMsMax: 0,
    bytesMax: input === "answer" ? c.streams.answerBytesMax : c.streams.inboundBytesMax,
    messageBytesMax: stageMessageBytesMax(c),
    pushBack: true,
  });
}

function otherStreams(c: Config): StreamSpec[] {
  return [
    limitsStream(c, {
      name: streamNames.dlq,
      description: "Sluice dead letters: rejected inputs, untouched, reason in headers",
      subjects: [subjects.dlqAll],
      ageMsMax: c.streams.dlqAgeMsMax,
      bytesMax: c.streams.dlqBytesMax,
    }),
    // What no server mapping claimed under sluice.in: WMS events, imports, wrong subjects, unmapped servers.
    limitsStream(c, {
      name: streamNames.unrouted,
      description: "Sluice inbound not partitioned by a server mapping; routed or dead-lettered by Sluice",
      subjects: [subjects.inboundAll],
      ageMsMax: 0,
      bytesMax: c.streams.unroutedBytesMax,
      messageBytesMax: c.streams.messageBytesMax,
      pushBack: true,
    }),
    // Outputs for channels and warehouses, kept so adapters can consume them durably.
    limitsStream(c, {
      name: streamNames.out,
      description:
        "Sluice outputs: order statuses, fulfilment requests, channel stock, ERP batches (batched, Nats-Msg-Id deduplicated)",
      subjects: [subjects.outAll],
      ageMsMax: c.streams.inboundAgeMsMax,
      bytesMax: c.streams.outBytesMax,
    }),
    // The current stock of every (channel, SKU): only the last message per subject is kept.
    {
      ...limitsStream(c, {
        name: streamNames.stockView,
        description:
          "Sluice current ATS per channel and SKU (last value per subject; refreshed at a bounded rate)",
        subjects: [subjects.stockViewAll],
        ageMsMax: 0,
        bytesMax: c.streams.stockViewBytesMax,
      }),
      max_msgs_per_subject: 1,
    },
  ];
}

/** Creates or updates Sluice's streams. Idempotent; refuses a partition count that differs from the stream's. */
export async function provisionStreams(jsm: JetStreamManager, c: Config, log: Logger): Promise<void> {
  const stageStreams = inputs.map((input) => stageStreamConfig(input, c));
  for (const config of stageStreams) {
    const existing = await streamInfoOrNull(jsm, config.name);
    const had = existing?.config.subjects?.length ?? c.streams.partitionCount;
    if (had !== c.streams.partitionCount) {
      throw new ProvisionError(
        `stream ${config.name} has ${had} partitions but streams.partitionCount = ${c.streams.partitionCount}; the count is fixed once the streams exist (docs/operations.md, "Changing the partition count")`,
      );
    }
  }
  for (const config of [...stageStreams, ...otherStreams(c)]) await ensureStream(jsm, config, log);
  await scaleRulesBucket(jsm, c, log);
}

async function ensureStream(jsm: JetStreamManager, config: StreamSpec, log: Logger): Promise<void> {
  const info = await streamInfoOrNull(jsm, config.name);
  if (info === null) {
    await placed(config, () => jsm.streams.add(config));
    log.info("stream created", { stream: config.name, replicas: config.num_replicas });
  } else if (differs(info.config as unknown as Record<string, unknown>, config)) {
    // Only when something changed: an update is not free, and some servers rewrite stream metadata on it.
    // A replica count that differs is scaled by this update too (nats-server 2.9 moves the stream and its
    // consumers to the new peer set and catches the new peers up), and the server then reports exactly the
    // count asked for, so the next start finds nothing to change.
    await placed(config, () => jsm.streams.update(config.name, { ...info.config, ...config }));
    log.info("stream updated", {
      stream: config.name,
      replicas: config.num_replicas,
      replicasBefore: info.config.num_replicas,
    });
  }
}

/**
 * The rules KV bucket is a stream too (KV_<bucket>). The rules store creates it with the replica count, but
 * opening an existing bucket never changes its config, so a bucket made before streams.replicas changed
 * is scaled here; provisioning runs before the rules store opens it.
 */
async function scaleRulesBucket(jsm: JetStreamManager, c: Config, log: Logger): Promise<void> {
  const name = `KV_${c.routing.rulesBucket}`;
  const info = await streamInfoOrNull(jsm, name);
  const wanted = c.streams.replicas;
  if (info === null || info.config.num_replicas === wanted) return;
  await placed({ name, num_replicas: wanted }, () =>
    jsm.streams.update(name, { ...info.config, num_replicas: wanted }),
  );
  log.info("stream updated", { stream: name, replicas: wanted, replicasBefore: info.config.num_replicas });
}

/** Server error codes that mean "not enough JetStream servers for this replica count". */
const placementErrorCodes = new Set([
  10005, // JSClusterNoPeersErr: no suitable peers for placement
  10023, // JSInsufficientResourcesErr
  10074, // JSStreamReplicasNotSupportedErr: replicas > 1 on a server that is not clustered
]);

/** Runs a stream add or update; a placement refusal becomes an error that names the setting to change. */
async function placed<T>(
  config: { name: string; num_replicas?: number },
  write: () => Promise<T>,
): Promise<T> {
  try {
    return await write();
  } catch (error) {
    if (!(error instanceof JetStreamApiError) || !placementErrorCodes.has(error.code)) throw error;
    throw new ProvisionError(
      `stream ${config.name} needs ${config.num_replicas} replicas but the server refused to place them (${error.message}); set streams.replicas to at most the number of JetStream servers in the cluster (1 on a single server)`,
      { cause: error },
    );
  }
}

function differs(current: Record<string, unknown>, wanted: Record<string, unknown>): boolean {
  return Object.entries(wanted).some(([k, v]) => JSON.stringify(current[k]) !== JSON.stringify(v));
}

async function streamInfoOrNull(jsm: JetStreamManager, name: string) {
  try {
    return await jsm.streams.info(name);
  } catch (error) {
    if (isNotFound(error)) return null;
    throw error;
  }
}

export function partitionConsumerConfig(
  input: Input,
  partition: number,
  c: Config,
  streamSeqStart: number,
): Partial<ConsumerConfig> {
  return {
    durable_name: inputConsumerName(input, partition),
    description: `Sluice ${input} partition ${partition}`,
    filter_subject: subjects.inputPartitionFilter(input, partition),
    // AckAll: the runner acks a batch's last message after its commit, which acks the batch.
    ack_policy: AckPolicy.All,
    ack_wait: msToNs(c.consumer.ackWaitMs),
    // The gated intake keeps little in memory: while the gate is closed, new orders wait in the stream.
    max_ack_pending: input === "order" ? c.consumer.intakePendingMessagesMax : c.consumer.pendingMessagesMax,
    max_deliver: -1,
    replay_policy: ReplayPolicy.Instant,
    ...(streamSeqStart <= 1
      ? { deliver_policy: DeliverPolicy.All }
      : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: streamSeqStart }),
  };
}

export type EnsureResult = { reset: boolean; cause: string; streamSeqStart: number };

/**
 * Creates the partition's durable consumer, or keeps it when its state agrees with the store. The store is
 * the truth (the last applied sequence is committed with the effects); when the consumer delivered messages
 * the store never applied, or acked past what the store holds, it is recreated to start right after the
 * store's last applied sequence. Deliveries then come in stream order again, which the skip rule relies on.
 */
export async function ensurePartitionConsumer(
  jsm: JetStreamManager,
  input: Input,
  partition: number,
  c: Config,
  streamSeqLastApplied: number,
  force: string | null = null,
): Promise<EnsureResult> {
  const stream = streamNames[input];
  const name = inputConsumerName(input, partition);
  const start = streamSeqLastApplied + 1;
  const wanted = partitionConsumerConfig(input, partition, c, start);
  let info: ConsumerInfo | null = null;
  try {
    info = await jsm.consumers.info(stream, name);
  } catch (error) {
    if (!isNotFound(error)) throw error;
  }
  const cause = force ?? (info === null ? "created" : disagreement(info, streamSeqLastApplied));
  if (info !== null && cause === null) {
    const { ack_wait, max_ack_pending, description } = wanted;
    if (info.config.ack_wait !== ack_wait || info.config.max_ack_pending !== max_ack_pending) {
      await jsm.consumers.update(stream, name, { ack_wait, max_ack_pending, description });
    }
    return { reset: false, cause: "kept", streamSeqStart: info.delivered.stream_seq + 1 };
  }
  if (info !== null) await jsm.consumers.delete(stream, name);
  await jsm.consumers.add(stream, wanted);
  return { reset: info !== null, cause: cause ?? "created", streamSeqStart: start };
}

function disagreement(info: ConsumerInfo, streamSeqLastApplied: number): string | null {
  if (info.delivered.stream_seq > streamSeqLastApplied) return "delivered_beyond_store";
  if (info.ack_floor.stream_seq > streamSeqLastApplied) return "acked_beyond_store";
  return null;
}

/**
 * The router's durable consumer, resumed at once from its first unacked message. Messages it delivered to a
 * process that died (or stopped while they were in flight) would otherwise wait consumer.ackWaitMs for
 * redelivery; re-routing one already routed is harmless (copies are named by Sluice-Routed-Id and message
 * id, and de-duplicated downstream). With several processes this must run only while none routes.
 */
export async function ensureUnroutedConsumer(jsm: JetStreamManager, c: Config): Promise<EnsureResult> {
  const config: Partial<ConsumerConfig> = {
    durable_name: unroutedConsumerName,
    description: "Sluice router for inbound messages no server mapping partitioned",
    filter_subject: subjects.inboundAll,
    ack_policy: AckPolicy.Explicit,
    ack_wait: msToNs(c.consumer.ackWaitMs),
    max_ack_pending: c.consumer.pendingMessagesMax,
    max_deliver: -1,
    deliver_policy: DeliverPolicy.All,
    replay_policy: ReplayPolicy.Instant,
  };
  let info: ConsumerInfo | null = null;
  try {
    info = await jsm.consumers.info(streamNames.unrouted, unroutedConsumerName);
  } catch (error) {
    if (!isNotFound(error)) throw error;
  }
  if (info === null) {
    await jsm.consumers.add(streamNames.unrouted, config);
    return { reset: false, cause: "created", streamSeqStart: 1 };
  }
  // Explicit acks: the ack floor is the last message below which everything was acked.
  const start = info.ack_floor.stream_seq + 1;
  if (info.delivered.stream_seq < start) {
    if (info.config.ack_wait !== config.ack_wait || info.config.max_ack_pending !== config.max_ack_pending) {
      await jsm.consumers.update(streamNames.unrouted, unroutedConsumerName, {
        ack_wait: config.ack_wait,
        max_ack_pending: config.max_ack_pending,
      });
    }
    return { reset: false, cause: "kept", streamSeqStart: start };
  }
  await jsm.consumers.delete(streamNames.unrouted, unroutedConsumerName);
  await jsm.consumers.add(streamNames.unrouted, {
    ...config,
    ...(start <= 1 ? {} : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: start }),
  });
  return { reset: true, cause: "delivered_unacked", streamSeqStart: start };
}

export function isNotFound(error: unknown): boolean {
  const e = error as { code?: unknown; api_error?: { err_code?: number; code?: number }; message?: string };
  const code = e?.api_error?.code ?? e?.code;
  return code === 404 || code === "404" || /not found/i.test(e?.message ?? "");
}
