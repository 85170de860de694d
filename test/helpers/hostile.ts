// Generators for the hostile-input harness (test/integration/hostile-input.test.ts): ids that are JavaScript's
// own property names, ids at and over the byte limits, awkward Unicode, control characters, NaN and ±Infinity
// in msgpack and as (invalid) JSON tokens, deep nesting, duplicate keys, truncated bodies, wrong Content-Types
// and huge arrays. Everything is drawn from a seeded PRNG, so a seed replays a run.
import { Rng } from "../../bench/harness/prng.ts";
import { pack } from "../../src/stream/codec.ts";

export { Rng };

/** JavaScript's own property names: the ids a naive `obj[id]` lookup confuses with the prototype's. */
export const protoNames: readonly string[] = [
  ...new Set([
    ...Object.getOwnPropertyNames(Object.prototype),
    ...Object.getOwnPropertyNames(Function.prototype),
    ...Object.getOwnPropertyNames(Array.prototype),
    ...Object.getOwnPropertyNames(String.prototype),
    "__proto__",
    "prototype",
    "constructor",
  ]),
].sort();

/** Valid ids that are not prototype names but are hard on encoders: 4-byte chars, combining marks, RTL. */
export const unicodeNames: readonly string[] = [
  "😀-sku", // 4-byte UTF-8 (a surrogate pair in JS)
  "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
  "e\u0301\u0301\u0301", // combining marks
  "\u202eevil\u202c", // RTL override (not a control character by the id rule: U+0000–U+001F, U+007F)
  "שלום-עולם", // RTL script
  "a.b*c>d ~e", // subject metacharacters: ~encoded
  "\ufeffbom",
  "\u200bzero-width",
];

export const textEncoder = new TextEncoder();
export const utf8Bytes = (s: string) => Buffer.byteLength(s, "utf8");

/** An id of exactly `bytes` UTF-8 bytes built from 4-byte characters (padded with ASCII). */
export function idOfBytes(bytes: number, prefix = ""): string {
  let s = prefix;
  while (utf8Bytes(s) + 4 <= bytes) s += "😀";
  while (utf8Bytes(s) < bytes) s += "x";
  return s;
}

/** Control characters an id must never carry. */
export const controlChars: readonly string[] = [
  "\u0000",
  "\u0001",
  "\u0007",
  "\n",
  "\r",
  "\t",
  "\u001b",
  "\u001f",
  "\u007f",
];

export function pick<T>(rng: Rng, xs: readonly T[]): T {
  return xs[rng.int(xs.length)] as T;
}

/** JSON with a NaN / Infinity / -Infinity token where `field`'s value goes: invalid JSON. */
export function jsonWithToken(body: Record<string, unknown>, field: string, token: string): Uint8Array {
  const marker = "\u0000MARK\u0000";
  const text = JSON.stringify({ ...body, [field]: marker }).replace(JSON.stringify(marker), token);
  return textEncoder.encode(text);
}

export const nonFinite: readonly number[] = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY];
export const nonFiniteTokens: readonly string[] = ["NaN", "Infinity", "-Infinity", "nan", "inf"];

/** `depth` nested arrays around a value, as JSON text (built iteratively: no recursion). */
export function deepJson(depth: number): string {
  return `${"[".repeat(depth)}1${"]".repeat(depth)}`;
}

/** The same nesting as msgpack: fixarray(1) headers, then an int. */
export function deepMsgpack(depth: number): Uint8Array {
  const out = new Uint8Array(depth + 1);
  out.fill(0x91, 0, depth);
  out[depth] = 0x01;
  return out;
}

/** A body cut short: the first part of its encoding only. */
export function truncated(data: Uint8Array, rng: Rng): Uint8Array {
  return data.subarray(0, Math.max(1, rng.int(data.length - 1)));
}

export const json = (v: unknown) => textEncoder.encode(JSON.stringify(v));
export const msgpack = (v: unknown) => pack(v);

/** Content-Types Sluice does not decode (the payload is then a dead letter, decode_failed). */
export const wrongContentTypes: readonly string[] = [
  "text/plain",
  "application/xml",
  "application/x-www-form-urlencoded",
  "application/json-patch+json",
  "msgpack",
  "application/octet-stream",
];

/** Quantities a whole-number field must refuse (zero/negative only where the field says). */
export function badQuantities(quantityMax: number): unknown[] {
  return [
    1.5,
    0.0001,
    -0.5,
    quantityMax + 1,
    2 ** 53,
    Number.MAX_VALUE,
    "5",
    "1e3",
    null,
    true,
    [3],
    { value: 3 },
  ];
}

/** A hostile object key: a prototype name as an unknown field. */
export function protoKeyBody(base: Record<string, unknown>, key: string): Uint8Array {
  // JSON.stringify drops nothing here, and "__proto__" as a literal JSON key is an own property once parsed.
  const text = JSON.stringify(base).replace(/^\{/, `{${JSON.stringify(key)}:1,`);
  return textEncoder.encode(text);
}
