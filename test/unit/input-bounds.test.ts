import { describe, expect, test } from "bun:test";
import {
  parseCancel,
  parseOrder,
  parseOrderRef,
  parseRejected,
  parseReturn,
  parseShipped,
  parseText,
} from "../../src/domain/orders/commands.ts";
import { decodePayload, pack } from "../../src/stream/codec.ts";

// Every field of every order-stage input that can reach an output has a bound (issue #10, finding 2): free
// text `orders.textBytesMax`, ids `ledger.idBytesMax`, lists `orders.linesPerOrderMax`, numbers finite and in
// range. Input over a bound is refused (`invalid_command`) with a detail naming the field and the limit.

const limits = {
  quantityMax: 1000,
  idBytesMax: 16,
  linesPerOrderMax: 3,
  itemsPerMessageMax: 10,
  textBytesMax: 32,
};
const emoji = "😀"; // 4 UTF-8 bytes
const atLimit = emoji.repeat(8); // 32 bytes
const overLimit = `${atLimit}a`; // 33 bytes

/** What a msgpack producer would send: NaN and ±Infinity survive, as they do not in JSON. */
const viaMsgpack = (body: unknown) => {
  const d = decodePayload(pack(body), "application/msgpack");
  if (!d.ok) throw new Error(d.detail);
  return d.value;
};
const viaJson = (text: string) => {
  const d = decodePayload(new TextEncoder().encode(text), undefined);
  if (!d.ok) throw new Error(d.detail);
  return d.value;
};
const refused = (p: { ok: boolean; detail?: string }) => (p.ok ? "accepted" : (p.detail as string));
const order = (extra: Record<string, unknown> = {}, lines: unknown[] = [{ sku: "A", qty: 1, price: 2 }]) =>
  parseOrder("shop", "o1", { lines, ...extra }, limits);
const rejected = (body: Record<string, unknown>) =>
  parseRejected("w1", { channel: "shop", orderId: "o1", lines: ["1"], ...body }, limits);

describe("free text: at most orders.textBytesMax UTF-8 bytes, no control characters, well-formed", () => {
  test("a cancel reason at the limit passes; one byte over is refused, naming the field and the limit", () => {
    expect(parseCancel({ reason: atLimit }, limits)).toEqual({
      ok: true,
      value: { lineIds: null, reason: atLimit },
    });
    expect(refused(parseCancel({ reason: overLimit }, limits))).toBe(
      "reason is 33 UTF-8 bytes; at most 32 are allowed (orders.textBytesMax)",
    );
    expect(parseCancel({ reason: null }, limits)).toEqual({
      ok: true,
      value: { lineIds: null, reason: null },
    });
    expect(refused(parseCancel({ reason: 5 }, limits))).toBe("reason must be a string");
  });

  test("a WMS rejected reason: the same bound", () => {
    const ok = rejected({ reason: atLimit });
    expect(ok.ok && ok.value.reason).toBe(atLimit);
    expect(refused(rejected({ reason: overLimit }))).toMatch(
      /^reason is 33 UTF-8 bytes.*orders\.textBytesMax/,
    );
    expect(refused(rejected({ reason: "x".repeat(1024 * 1024 - 100) }))).toMatch(
      /^reason is 1048476 UTF-8 bytes/,
    );
  });

  test("shipTo region and zip: the same bound; null is absent", () => {
    for (const k of ["region", "zip"]) {
      const ok = order({ shipTo: { [k]: atLimit } });
      expect(ok.ok && (ok.value.shipTo as Record<string, unknown>)[k]).toBe(atLimit);
      expect(refused(order({ shipTo: { [k]: overLimit } }))).toMatch(
        new RegExp(`^shipTo\\.${k} is 33 UTF-8 bytes; at most 32.*orders\\.textBytesMax`),
      );
      expect(refused(order({ shipTo: { [k]: 7 } }))).toBe(`shipTo.${k} must be a string`);
    }
    const nulls = order({ shipTo: { region: null, zip: null, lat: null, lon: null } });
    expect(nulls.ok && nulls.value.shipTo).toEqual({ region: null, zip: null, lat: null, lon: null });
  });

  test("control characters (C0, DEL, C1) and lone surrogates are refused; other characters pass", () => {
    for (const bad of ["a\nb", "\u0000", "tab\t", "\u007f", "\u0085", "\u009f"]) {
      expect(refused(parseText(bad, "reason", limits))).toMatch(/reason must not contain control characters/);
    }
    for (const bad of ["\ud800", "a\udc00b", `${emoji.slice(0, 1)}x`]) {
      expect(refused(parseText(bad, "reason", limits))).toMatch(/well-formed Unicode/);
    }
    // JSON's escape for a lone surrogate decodes to one: refused on the way in, like a raw one.
    expect(refused(parseCancel(viaJson('{"reason":"\\ud800"}'), limits))).toMatch(/lone surrogate/);
    for (const good of ["", "damaged in picking", 'quote " and \\ back', "é€😀", "\u00a0\u2028"]) {
      expect(parseText(good, "reason", limits)).toEqual({ ok: true, value: good });
    }
  });

  test("without a text limit in the limits, the schema's default (256 bytes) applies", () => {
    const { textBytesMax: _, ...plain } = limits;
    expect(parseCancel({ reason: "x".repeat(256) }, plain).ok).toBe(true);
    expect(refused(parseCancel({ reason: "x".repeat(257) }, plain))).toMatch(/at most 256 are allowed/);
  });
});

describe("numbers: finite, whole where a count, in range", () => {
  test("a price is a finite number ≥ 0: NaN and ±Infinity (msgpack can carry them) are refused", () => {
    for (const price of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -1, "9.9"]) {
      const body = viaMsgpack({ lines: [{ sku: "A", qty: 1, price }] });
      expect(refused(parseOrder("shop", "o1", body, limits))).toBe(
        "lines[0].price must be a finite number ≥ 0 (not NaN or Infinity)",
      );
    }
    const zero = parseOrder("shop", "o1", viaMsgpack({ lines: [{ sku: "A", qty: 1, price: -0 }] }), limits);
    expect(zero.ok && Object.is(zero.value.lines[0]?.price, 0)).toBe(true);
    expect(order({}, [{ sku: "A", qty: 1, price: 1.7976931348623157e308 }]).ok).toBe(true);
  });

  test("a NaN or infinite coordinate is refused (it passed the range check and made every score NaN)", () => {
    for (const [k, v] of [
      ["lat", Number.NaN],
      ["lon", Number.NaN],
      ["lat", Number.POSITIVE_INFINITY],
      ["lon", Number.NEGATIVE_INFINITY],
      ["lat", 90.5],
      ["lon", -181],
      ["lat", "1"],
    ] as const) {
      const body = viaMsgpack({ lines: [{ sku: "A", qty: 1 }], shipTo: { [k]: v } });
      const max = k === "lat" ? 90 : 180;
      expect(refused(parseOrder("shop", "o1", body, limits))).toBe(
        `shipTo.${k} must be a finite number from -${max} to ${max}`,
      );
    }
    const edge = order({ shipTo: { lat: -90, lon: 180 } });
    expect(edge.ok && edge.value.shipTo).toEqual({ region: null, zip: null, lat: -90, lon: 180 });
  });

  test("quantities are whole, positive and at most ledger.quantityMax, in every input", () => {
    for (const q of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 1001, "1"]) {
      expect(order({}, [{ sku: "A", qty: q }]).ok).toBe(false);
      const shipped = parseShipped(
        "w1",
        viaMsgpack({ channel: "c", orderId: "o", shipmentId: "s", lines: [{ lineId: "1", qty: q }] }),
        limits,
      );
      expect(shipped.ok).toBe(false);
      const ret = parseReturn(
        "c",
        "o",
        viaMsgpack({ returnId: "r", lines: [{ lineId: "1", qty: q, disposition: "sellable" }] }),
        limits,
      );
      expect(ret.ok).toBe(false);
    }
    expect(order({}, [{ sku: "A", qty: 1000 }]).ok).toBe(true);
  });

  test("shipBy: a whole number of ms > 0 or an ISO-8601 time of at most 64 characters", () => {
    expect(order({ shipBy: "2030-01-02T18:00:00Z" }).ok).toBe(true);
    for (const shipBy of [
      Number.NaN,
      Number.POSITIVE_INFINITY,
      1.5,
      0,
      -5,
      `2030-01-02T18:00:00Z${" ".repeat(60)}`,
      {},
    ]) {
      expect(
        refused(parseOrder("shop", "o1", viaMsgpack({ lines: [{ sku: "A", qty: 1 }], shipBy }), limits)),
      ).toMatch(/^shipBy must be an ISO-8601 time \(at most 64 characters\)/);
    }
  });
});

describe("lists and ids", () => {
  const four = ["1", "2", "3", "4"];
  test("every list of lines has at most orders.linesPerOrderMax entries", () => {
    const tooMany = /at most 3 .*\(orders\.linesPerOrderMax\)/;
    expect(
      refused(
        order(
          {},
          four.map((lineId) => ({ lineId, sku: "A", qty: 1 })),
        ),
      ),
    ).toMatch(tooMany);
    expect(refused(parseCancel({ lines: four }, limits))).toMatch(tooMany);
    expect(refused(rejected({ lines: four }))).toMatch(tooMany);
    expect(
      refused(
        parseShipped(
          "w1",
          { channel: "c", orderId: "o", shipmentId: "s", lines: four.map((lineId) => ({ lineId, qty: 1 })) },
          limits,
        ),
      ),
    ).toMatch(tooMany);
    expect(
      refused(
        parseReturn(
          "c",
          "o",
          { returnId: "r", lines: four.map((lineId) => ({ lineId, qty: 1, disposition: "damaged" })) },
          limits,
        ),
      ),
    ).toMatch(tooMany);
  });

  test("no list may name a line twice, also through an order's default line ids", () => {
    expect(
      refused(
        order({}, [
          { lineId: "2", sku: "A", qty: 1 },
          { sku: "B", qty: 1 },
        ]),
      ),
    ).toBe("lines names a line twice");
    expect(refused(parseCancel({ lines: ["a", "a"] }, limits))).toBe("lines names a line twice");
    expect(refused(rejected({ lines: ["a", "a"] }))).toBe("lines names a line twice");
    expect(
      refused(
        parseShipped(
          "w1",
          {
            channel: "c",
            orderId: "o",
            shipmentId: "s",
            lines: [
              { lineId: "a", qty: 1 },
              { lineId: "a", qty: 1 },
            ],
          },
          limits,
        ),
      ),
    ).toBe("lines names a line twice");
    expect(
      refused(
        parseReturn(
          "c",
          "o",
          {
            returnId: "r",
            lines: [
              { lineId: "a", qty: 1, disposition: "damaged" },
              { lineId: "a", qty: 1, disposition: "sellable" },
            ],
          },
          limits,
        ),
      ),
    ).toBe("lines names a line twice");
  });

  test("ids in every field are at most ledger.idBytesMax bytes", () => {
    const long = "x".repeat(17);
    expect(refused(order({}, [{ lineId: long, sku: "A", qty: 1 }]))).toMatch(
      /lines\[0\]\.lineId must be at most 16/,
    );
    expect(refused(order({}, [{ sku: long, qty: 1 }]))).toMatch(/lines\[0\]\.sku must be at most 16/);
    expect(refused(parseCancel({ lines: [long] }, limits))).toMatch(/lines\[0\] must be at most 16/);
    expect(
      refused(
        parseReturn(
          "c",
          "o",
          { returnId: long, lines: [{ lineId: "1", qty: 1, disposition: "damaged" }] },
          limits,
        ),
      ),
    ).toMatch(/returnId must be at most 16/);
    expect(
      refused(
        parseReturn(
          "c",
          "o",
          { returnId: "r", lines: [{ lineId: "1", qty: 1, disposition: "damaged", warehouse: long }] },
          limits,
        ),
      ),
    ).toMatch(/lines\[0\]\.warehouse must be at most 16/);
    expect(
      refused(
        parseShipped(
          "w1",
          { channel: "c", orderId: "o", shipmentId: long, lines: [{ lineId: "1", qty: 1 }] },
          limits,
        ),
      ),
    ).toMatch(/shipmentId must be at most 16/);
    expect(refused(parseOrderRef({ channel: long, orderId: "o" }, limits))).toMatch(
      /channel must be at most 16/,
    );
  });

  test("nested values must have their shape", () => {
    expect(refused(order({}, ["A"]))).toBe("lines[0] must be an object");
    expect(refused(order({ shipTo: [] }))).toBe("shipTo must be an object with region, zip, lat, lon");
    expect(refused(order({ split: "ship_complete" }))).toBe(
      "split must be an object with mode, maxShipments, backorder",
    );
    expect(refused(order({ split: { maxShipments: Number.NaN } }))).toMatch(/split\.maxShipments/);
    expect(refused(parseCancel({ lines: "1" }, limits))).toMatch(/lines must be a non-empty array/);
    expect(
      refused(
        parseReturn(
          "c",
          "o",
          { returnId: "r", lines: [{ lineId: "1", qty: 1, disposition: "lost" }] },
          limits,
        ),
      ),
    ).toBe("lines[0].disposition must be one of sellable, damaged, quality_control");
    expect(
      refused(
        parseReturn(
          "c",
          "o",
          { returnId: "r", lines: [{ lineId: "1", qty: 1, disposition: "toString" }] },
          limits,
        ),
      ),
    ).toMatch(/disposition must be one of/);
  });
});

describe("prototype keys never reach an inherited member", () => {
  test("fields named like Object.prototype members are unknown fields", () => {
    for (const key of ["constructor", "toString", "__proto__", "hasOwnProperty"]) {
      const body = viaJson(`{"lines":[{"sku":"A","qty":1}],${JSON.stringify(key)}:{}}`);
      expect(refused(parseOrder("shop", "o1", body, limits))).toMatch(
        new RegExp(`^unknown field "${key}" in order`),
      );
      const line = viaJson(`{"lines":[{"sku":"A","qty":1,${JSON.stringify(key)}:1}]}`);
      expect(refused(parseOrder("shop", "o1", line, limits))).toMatch(/^unknown field .* in lines\[0\]/);
      expect(refused(parseCancel(viaJson(`{${JSON.stringify(key)}:"x"}`), limits))).toMatch(/^unknown field/);
    }
    // msgpack renames a __proto__ key: still an unknown field, never a prototype.
    expect(refused(parseCancel(viaMsgpack(JSON.parse('{"__proto__":{"reason":"x"}}')), limits))).toMatch(
      /^unknown field "__proto_"/,
    );
  });

  test("ids named like Object.prototype members are plain ids", () => {
    const ids = ["constructor", "toString", "__proto__"];
    const parsed = order(
      {},
      ids.map((lineId) => ({ lineId, sku: lineId, qty: 1 })),
    );
    expect(parsed.ok && parsed.value.lines.map((l) => l.lineId)).toEqual(ids);
    expect(refused(parseCancel({ lines: ["constructor", "constructor"] }, limits))).toBe(
      "lines names a line twice",
    );
    const ret = parseReturn(
      "c",
      "o",
      { returnId: "r", lines: [{ lineId: "valueOf", qty: 1, disposition: "damaged" }] },
      limits,
    );
    expect(ret.ok).toBe(true);
  });

  test("fields a payload only inherits are absent", () => {
    const inherited = Object.create({ channel: "shop", orderId: "o1", reason: "x" }) as Record<
      string,
      unknown
    >;
    expect(refused(parseOrderRef(inherited, limits))).toBe("channel must be a non-empty string");
    const cancel = parseCancel(Object.create({ lines: ["1"], reason: "x" }), limits);
    expect(cancel).toEqual({ ok: true, value: { lineIds: null, reason: null } });
  });
});
