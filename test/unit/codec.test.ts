import { expect, test } from "bun:test";
import { decodePayload, pack } from "../../src/stream/codec.ts";

test("JSON by default and by header; msgpack by header; clear errors otherwise", () => {
  const json = new TextEncoder().encode('{"a":1}');
  expect(decodePayload(json, undefined)).toEqual({ ok: true, value: { a: 1 } });
  expect(decodePayload(json, "application/json; charset=utf-8")).toEqual({ ok: true, value: { a: 1 } });
  expect(decodePayload(pack({ a: 1 }), "application/msgpack")).toEqual({ ok: true, value: { a: 1 } });
  expect(decodePayload(pack({ a: 1 }), "application/x-msgpack")).toEqual({ ok: true, value: { a: 1 } });
  const bad = decodePayload(new TextEncoder().encode("{nope"), undefined);
  expect(bad.ok).toBe(false);
  if (!bad.ok) expect(bad.detail).toContain("not valid JSON");
  const empty = decodePayload(new Uint8Array(), undefined);
  expect(!empty.ok && empty.detail).toBe("empty payload");
  const xml = decodePayload(json, "application/xml");
  expect(!xml.ok && xml.detail).toContain("not supported; use application/json or application/msgpack");
  const invalidUtf8 = decodePayload(new Uint8Array([0x22, 0xff, 0x22]), undefined);
  expect(invalidUtf8.ok).toBe(false);
  const truncated = decodePayload(pack({ a: "long string here" }).subarray(0, 5), "application/msgpack");
  expect(truncated.ok).toBe(false);
});
