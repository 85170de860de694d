import type { MsgHdrs } from "@nats-io/transport-node";
import { assert } from "../domain/assert.ts";
import type { OutboxItem } from "../store/index.ts";
import { contentTypes, pack, unpack } from "../stream/codec.ts";
import {
  type DeadLetterReason,
  deadLetter,
  deadLetterItem,
  type SourceMessage,
} from "../stream/dead-letter.ts";

/**
 * Batches outputs: one message per subject per batch, carrying many items (design.md §7: envelopes). A
 * message holds at most `itemsPerMessageMax` items and at most `messageBytesMax` bytes of payload, so it
 * always fits the server's max_payload whatever the items weigh. Each item is encoded once; a message is
 * the items' encodings joined under `{"items":[…]}` (JSON for public outputs, msgpack for internal hops).
 * Message ids are assigned by the store at commit (deterministic per partition).
 */
export class Envelopes {
  private readonly bySubject = new Map<string, Pending>();
  private readonly encoder = new TextEncoder();

  constructor(
    private readonly itemsPerMessageMax: number,
    private readonly messageBytesMax: number,
  ) {}

  add(subject: string, item: unknown, json = false): void {
    let entry = this.bySubject.get(subject);
    if (entry === undefined) {
      entry = { json, items: [], sizes: [] };
      this.bySubject.set(subject, entry);
    }
    // JSON items stay text until their message is built: one UTF-8 encode per message, not per item.
    if (entry.json) {
      const text = JSON.stringify(item);
      entry.items.push(text);
      entry.sizes.push(Buffer.byteLength(text, "utf8"));
    } else {
      const bytes = pack(item);
      entry.items.push(bytes);
      entry.sizes.push(bytes.length);
    }
  }

  get size(): number {
    return this.bySubject.size;
  }

  drain(): OutboxItem[] {
    const out: OutboxItem[] = [];
    for (const [subject, { json, items, sizes }] of this.bySubject) {
      const headers: Array<[string, string]> = [
        ["Content-Type", json ? contentTypes.json : contentTypes.msgpack],
      ];
      let from = 0;
      let bytes = 0;
      const flush = (to: number) => {
        if (to === from) return;
        const chunk = items.slice(from, to);
        out.push({
          subject,
          msgId: "",
          headers,
          data: json
            ? this.encoder.encode(`{"items":[${(chunk as string[]).join(",")}]}`)
            : msgpackEnvelope(chunk as Uint8Array[], bytes),
        });
        from = to;
        bytes = 0;
      };
      for (let i = 0; i < items.length; i++) {
        const size = sizes[i] as number;
        // Input bounds and the config relation (largestOutputItem, src/config/load.ts) make every item fit.
        assert(size + envelopeOverheadBytes <= this.messageBytesMax, "every output item fits a message");
        const full =
          i - from >= this.itemsPerMessageMax || bytes + size + envelopeOverheadBytes > this.messageBytesMax;
        if (full) flush(i);
        bytes += size + 1;
      }
      flush(items.length);
    }
    this.bySubject.clear();
    return out;
  }
}

/** A subject's items of a batch: JSON texts (public outputs) or msgpack encodings, with their UTF-8 sizes. */
type Pending = { json: boolean; items: Array<string | Uint8Array>; sizes: number[] };

/** `{"items":[` … `]}` or the msgpack map and array headers: what wraps the items' bytes. */
export const envelopeOverheadBytes = 16;

/** msgpack {items: [...]}: fixmap(1), fixstr "items", array32 header, then each item's encoding as is. */
function msgpackEnvelope(items: Uint8Array[], bytes: number): Uint8Array {
  const head = [0x81, 0xa5, 0x69, 0x74, 0x65, 0x6d, 0x73, 0xdd];
  const out = new Uint8Array(head.length + 4 + bytes);
  out.set(head, 0);
  new DataView(out.buffer).setUint32(head.length, items.length);
  let at = head.length + 4;
  for (const item of items) {
    out.set(item, at);
    at += item.length;
  }
  return out.subarray(0, at);
}

/** Content-Type of an inbound message, whatever the case of the header name. */
export function contentTypeOf(headers: MsgHdrs | undefined): string | undefined {
  if (headers === undefined) return undefined;
  for (const key of headers.keys()) if (key.toLowerCase() === "content-type") return headers.get(key);
  return undefined;
}

/** An item of an opened envelope: its index in the envelope (the dead letter's name if refused) and value. */
export type EnvelopeItem<T> = { index: number; item: T };

/** An item that failed its check: it is dead-lettered alone, its neighbours are applied. */
export type RefusedItem = { index: number; item: unknown; detail: string };

/**
 * The inverse of Envelopes for internal hops: a msgpack `{items: [...]}` split into the items that pass
 * `check` and those that do not (each becomes its own dead letter; one bad item never sinks its
 * neighbours), or why the body is no envelope at all (then the message is dead-lettered whole).
 */
export function openEnvelope<T>(
  data: Uint8Array,
  what: string,
  check: (item: unknown) => string | null,
): { ok: true; items: EnvelopeItem<T>[]; refused: RefusedItem[] } | { ok: false; detail: string } {
  let body: unknown;
  try {
    body = unpack(data);
  } catch {
    body = null;
  }
  if (typeof body !== "object" || body === null || !Array.isArray((body as { items?: unknown }).items)) {
    return { ok: false, detail: `${what} envelope without items` };
  }
  const items: EnvelopeItem<T>[] = [];
  const refused: RefusedItem[] = [];
  (body as { items: unknown[] }).items.forEach((item, index) => {
    const problem = check(item);
    if (problem === null) items.push({ index, item: item as T });
    else refused.push({ index, item, detail: `${what} envelope item ${index}: ${problem}` });
  });
  return { ok: true, items, refused };
}

/**
 * Dead-letters an input: the whole message, or with `item` one item of its envelope alone. Either way an
 * outbox item of the batch's transaction, with an id derived from the source (stream, seq, item index).
 */
export type Reject = (
  m: SourceMessage,
  reason: DeadLetterReason,
  detail: string,
  item?: { index: number; item: unknown },
) => void;

/** A Reject that writes into `outbox` and reports each dead letter's reason. */
export function rejecter(outbox: OutboxItem[], counted: (reason: DeadLetterReason) => void): Reject {
  return (m, reason, detail, item) => {
    outbox.push(
      item === undefined
        ? deadLetter(m, reason, detail)
        : deadLetterItem(m, item.index, item.item, reason, detail),
    );
    counted(reason);
  };
}
