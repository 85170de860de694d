import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  decodeToken,
  encodeToken,
  fnv1a32,
  parsePartitioned,
  partitionOfTokens,
  routePublic,
  SubjectError,
  skuPartition,
  subjectMappings,
} from "../../src/stream/subjects.ts";

describe("subject tokens", () => {
  test("plain ids stand as they are; others are ~base64url and come back intact", () => {
    expect(encodeToken("SKU-123_a:b@c+d,e=f")).toBe("SKU-123_a:b@c+d,e=f");
    expect(encodeToken("a.b")).toBe(`~${Buffer.from("a.b").toString("base64url")}`);
    for (const id of ["a.b", "with space", "*", ">", "~x", "ünï", "x\ny", "$SYS"]) {
      const token = encodeToken(id);
      expect(token).toMatch(/^[A-Za-z0-9_\-:@+,=~]+$/);
      expect(decodeToken(token)).toBe(id);
    }
  });

  test("round trip for any string (property)", () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 64, unit: "binary" }), (id) => {
        const token = encodeToken(id);
        expect(token).not.toMatch(/[.\s*>]/);
        // lone surrogates are not representable in UTF-8; they are replaced, everything else returns intact
        if (Buffer.from(id, "utf8").toString("utf8") === id) expect(decodeToken(token)).toBe(id);
      }),
      { numRuns: 2000 },
    );
  });

  test("invalid tokens are refused with a reason", () => {
    expect(() => encodeToken("")).toThrow(SubjectError);
    expect(() => decodeToken("")).toThrow(SubjectError);
    expect(() => decodeToken("~!!")).toThrow(/not base64url/);
    expect(() => decodeToken(`~${Buffer.from("plain").toString("base64url")}`)).toThrow(/not canonical/);
    expect(() => decodeToken("a$b")).toThrow(/neither plain nor ~encoded/);
  });
});

describe("partitions", () => {
  test("FNV-1a 32 matches its published test vectors", () => {
    expect(fnv1a32("")).toBe(0x811c9dc5);
    expect(fnv1a32("a")).toBe(0xe40c292c);
    expect(fnv1a32("foobar")).toBe(0xbf9cf968);
  });

  test("several tokens hash concatenated, as the server does", () => {
    expect(partitionOfTokens(["shop", "o1"], 7)).toBe(fnv1a32("shopo1") % 7);
    expect(skuPartition("a.b", 16)).toBe(fnv1a32(encodeToken("a.b")) % 16);
  });

  test("the mapping the server applies is the documented rule", () => {
    expect(subjectMappings(8)).toEqual({
      "sluice.in.stock.*": "sluice.ledger.{{partition(8,1)}}.stock.{{wildcard(1)}}",
      "sluice.in.order.*.*": "sluice.order.{{partition(8,1,2)}}.order.{{wildcard(1)}}.{{wildcard(2)}}",
      // Cancels and returns are about orders that exist: the order partition's answer stream, read first.
      "sluice.in.cancel.*.*": "sluice.answer.{{partition(8,1,2)}}.cancel.{{wildcard(1)}}.{{wildcard(2)}}",
      "sluice.in.return.*.*": "sluice.answer.{{partition(8,1,2)}}.return.{{wildcard(1)}}.{{wildcard(2)}}",
    });
  });

  test("routePublic partitions public subjects and refuses others", () => {
    const r = routePublic("sluice.in.stock.SKU-1", 4);
    expect(r.ok && r.target).toBe(`sluice.ledger.${skuPartition("SKU-1", 4)}.stock.SKU-1`);
    const o = routePublic("sluice.in.cancel.shop.o-1", 4);
    expect(o.ok && o.target).toBe(`sluice.answer.${partitionOfTokens(["shop", "o-1"], 4)}.cancel.shop.o-1`);
    const n = routePublic("sluice.in.order.shop.o-1", 4);
    expect(n.ok && n.target).toBe(`sluice.order.${partitionOfTokens(["shop", "o-1"], 4)}.order.shop.o-1`);
    for (const bad of [
      "sluice.in.stock.a.b",
      "sluice.in.stok.a",
      "other.in.stock.a",
      "sluice.in.stock.~!!",
    ]) {
      const out = routePublic(bad, 4);
      expect(out.ok).toBe(false);
      if (!out.ok) expect(out.reason).toBe("bad_subject");
    }
  });

  test("parsePartitioned reads stage, partition, kind and rest", () => {
    expect(parsePartitioned("sluice.ledger.3.stock.SKU")).toEqual({
      stage: "ledger",
      partition: 3,
      kind: "stock",
      tokens: ["SKU"],
    });
    expect(parsePartitioned("sluice.ledger.x.stock.SKU")).toBeNull();
    expect(parsePartitioned("sluice.ledger.3")).toBeNull();
  });
});
