import type { MsgHdrs } from "@nats-io/transport-node";
import type { OutboxItem } from "../store/index.ts";
import { contentTypes, pack } from "../stream/codec.ts";

/**
 * Batches outputs: one message per subject per batch, carrying many items (design.md §7: envelopes),
 * at most `itemsPerMessageMax` items each. Internal hops are msgpack; public outputs (sluice.out.*) JSON.
 * Message ids are assigned by the store at commit (deterministic per partition).
 */
export class Envelopes {
  private readonly bySubject = new Map<string, { json: boolean; items: unknown[] }>();

  constructor(private readonly itemsPerMessageMax: number) {}

  add(subject: string, item: unknown, json = false): void {
    const entry = this.bySubject.get(subject) ?? { json, items: [] };
    entry.items.push(item);
    this.bySubject.set(subject, entry);
  }

  get size(): number {
    return this.bySubject.size;
  }

  drain(): OutboxItem[] {
    const out: OutboxItem[] = [];
    for (const [subject, { json, items }] of this.bySubject) {
      for (let i = 0; i < items.length; i += this.itemsPerMessageMax) {
        const chunk = items.slice(i, i + this.itemsPerMessageMax);
        out.push({
          subject,
          msgId: "",
          headers: [["Content-Type", json ? contentTypes.json : contentTypes.msgpack]],
          data: json ? new TextEncoder().encode(JSON.stringify({ items: chunk })) : pack({ items: chunk }),
        });
      }
    }
    this.bySubject.clear();
    return out;
  }
}

/** Content-Type of an inbound message, whatever the case of the header name. */
export function contentTypeOf(headers: MsgHdrs | undefined): string | undefined {
  if (headers === undefined) return undefined;
  for (const key of headers.keys()) if (key.toLowerCase() === "content-type") return headers.get(key);
  return undefined;
}
