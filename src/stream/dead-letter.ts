import type { MsgHdrs } from "@nats-io/transport-node";
import type { OutboxItem } from "../store/index.ts";
import { contentTypes, pack } from "./codec.ts";
import { subjects } from "./subjects.ts";

/** Dead-letter reasons are subject tokens: `sluice.dlq.<reason>`. docs/subjects.md lists each. */
export const deadLetterReasons = [
  "decode_failed",
  "invalid_command",
  "bad_subject",
  "wrong_partition",
  "unknown_kind",
  "refused",
  "unknown_order",
  "unknown_line",
  "invalid_transition",
  "unknown_channel",
  "message_too_large",
] as const;
export type DeadLetterReason = (typeof deadLetterReasons)[number];

export const deadLetterHeaders = {
  reason: "Sluice-Reason",
  detail: "Sluice-Detail",
  subject: "Sluice-Source-Subject",
  stream: "Sluice-Source-Stream",
  seq: "Sluice-Source-Seq",
  /** The item's index in its source envelope, on a dead letter of one item. */
  item: "Sluice-Source-Item",
} as const;

export type SourceMessage = {
  stream: string;
  seq: number;
  subject: string;
  data: Uint8Array;
  headers: MsgHdrs | undefined;
};

/** Header value limit: details are for people, and a header line must stay well under max_payload. */
const detailCharsMax = 1024;

/** The input, untouched (payload and original headers), with the reason added in headers. */
export function deadLetter(source: SourceMessage, reason: DeadLetterReason, detail: string): OutboxItem {
  return {
    subject: subjects.dlq(reason),
    msgId: `dlq:${source.stream}:${source.seq}`,
    headers: deadLetterHeadersOf(source, reason, detail),
    data: source.data,
  };
}

/**
 * One refused item of an envelope, alone: its own msgpack bytes as the payload (never its neighbours, which
 * were applied), the source's headers plus the reason and the item's index. The id names the item, so a
 * redelivered batch writes the same dead letters and JetStream drops the copies.
 */
export function deadLetterItem(
  source: SourceMessage,
  index: number,
  item: unknown,
  reason: DeadLetterReason,
  detail: string,
): OutboxItem {
  // The payload is msgpack whatever the source said: the item is re-encoded on its own.
  const headers = deadLetterHeadersOf(source, reason, detail).filter(
    ([key]) => key.toLowerCase() !== "content-type",
  );
  headers.push(["Content-Type", contentTypes.msgpack], [deadLetterHeaders.item, String(index)]);
  return {
    subject: subjects.dlq(reason),
    msgId: `dlq:${source.stream}:${source.seq}:${index}`,
    headers,
    data: pack(item),
  };
}

function deadLetterHeadersOf(
  source: SourceMessage,
  reason: DeadLetterReason,
  detail: string,
): Array<[string, string]> {
  const headers: Array<[string, string]> = [];
  if (source.headers !== undefined) {
    for (const key of source.headers.keys()) {
      // Nats-Msg-Id is the producer's id for the inbound stream; the dead letter has its own. A router name
      // is dropped too: a dead letter fixed and published again must be applied, not taken for a copy.
      const lower = key.toLowerCase();
      if (lower === "nats-msg-id" || lower === "sluice-routed-id") continue;
      for (const value of source.headers.values(key)) headers.push([key, value]);
    }
  }
  headers.push(
    [deadLetterHeaders.reason, reason],
    [deadLetterHeaders.detail, detail.replace(/[\r\n]+/g, " ").slice(0, detailCharsMax)],
    [deadLetterHeaders.subject, source.subject],
    [deadLetterHeaders.stream, source.stream],
    [deadLetterHeaders.seq, String(source.seq)],
  );
  return headers;
}
