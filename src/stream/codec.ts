import { Packr, Unpackr } from "msgpackr";

// Inbound payloads are JSON or msgpack, picked by the Content-Type header; no header means JSON, what people
// type with the NATS CLI. Internal hops and outputs are msgpack.
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: "number" });
const packr = new Packr({ useRecords: false, int64AsType: "number" });

export const contentTypes = {
  json: "application/json",
  msgpack: "application/msgpack",
} as const;

const msgpackTypes = new Set(["application/msgpack", "application/x-msgpack", "application/vnd.msgpack"]);

export type Decoded = { ok: true; value: unknown } | { ok: false; reason: "decode_failed"; detail: string };

export function decodePayload(data: Uint8Array, contentType: string | undefined): Decoded {
  const type = (contentType ?? contentTypes.json).split(";")[0]?.trim().toLowerCase() ?? "";
  if (data.length === 0) return { ok: false, reason: "decode_failed", detail: "empty payload" };
  try {
    if (msgpackTypes.has(type)) return { ok: true, value: unpackr.unpack(data) };
    if (type === contentTypes.json || type === "text/json") {
      return { ok: true, value: JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(data)) };
    }
    return {
      ok: false,
      reason: "decode_failed",
      detail: `Content-Type ${JSON.stringify(contentType)} is not supported; use application/json or application/msgpack`,
    };
  } catch (error) {
    const kind = msgpackTypes.has(type) ? "msgpack" : "JSON";
    return {
      ok: false,
      reason: "decode_failed",
      detail: `payload is not valid ${kind}: ${(error as Error).message}`,
    };
  }
}

export function pack(value: unknown): Uint8Array {
  return packr.pack(value);
}

export function unpack(data: Uint8Array): unknown {
  return unpackr.unpack(data);
}
