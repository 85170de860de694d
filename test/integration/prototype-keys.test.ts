import { describe, expect, test } from "bun:test";
import type { Sluice } from "../../src/sluice.ts";
import { streamNames, subjects } from "../../src/stream/subjects.ts";
import { getJson, httpBase, type Producer, sluiceFixture, waitFor } from "../helpers/index.ts";

// Issue #10, finding 1: ids that are names every object inherits ("constructor", "toString"…) or that set
// the prototype ("__proto__") used to crash-loop the ledger (`{"type":"received","warehouse":"constructor"}`
// threw "onHand must not be negative"). Over a real nats-server and LMDB they are ordinary ids.

let sluice: Sluice;
let fatal: Error[];
let producer: Producer;
sluiceFixture("prototype-keys", (f) => {
  ({ sluice, fatal, producer } = f);
});

const inherited = [
  "constructor",
  "toString",
  "hasOwnProperty",
  "valueOf",
  "__defineGetter__",
  "isPrototypeOf",
  "prototype",
];

async function stockAt(sku: string, version: number) {
  return waitFor(async () => {
    const r = await getJson(`${httpBase(sluice)}/v1/stock/${encodeURIComponent(sku)}`);
    return r.status === 200 && r.body.version >= version ? r.body : null;
  }, `${sku} at version ${version}`);
}

async function dlqCount(): Promise<number> {
  const jsm = await producer.jsm();
  return (await jsm.streams.info(streamNames.dlq)).state.messages;
}

const position = (onHand: number, reserved = 0) => ({
  onHand,
  reserved,
  damaged: 0,
  qualityControl: 0,
  safetyStock: 0,
  available: onHand - reserved,
});

describe("ids named like inherited members, over NATS and LMDB", () => {
  test("the issue's command: received at warehouse 'constructor' (and the other inherited names) is applied", async () => {
    for (const [i, warehouse] of inherited.entries()) {
      await producer.publishJson(subjects.stockPublic("A"), { type: "received", warehouse, qty: 5 + i });
    }
    const body = await stockAt("A", inherited.length);
    for (const [i, warehouse] of inherited.entries())
      expect(body.positions[warehouse]).toEqual(position(5 + i));
    expect(Object.keys(body.positions).sort()).toEqual([...inherited].sort());
    // The process is up and still applying: the next command lands too.
    await producer.publishJson(subjects.stockPublic("A"), {
      type: "adjust",
      warehouse: "constructor",
      qty: -2,
    });
    expect((await stockAt("A", inherited.length + 1)).positions.constructor).toEqual(position(3));
    expect(fatal).toEqual([]);
  });

  test("an inherited name as a command type is dead-lettered, not applied, and nothing stops", async () => {
    const before = await dlqCount();
    for (const type of ["constructor", "toString", "__proto__"])
      await producer.publishJson(subjects.stockPublic("B"), { type, warehouse: "w1", qty: 5 });
    await waitFor(async () => (await dlqCount()) >= before + 3, "three dead letters");
    await producer.publishJson(subjects.stockPublic("B"), { type: "received", warehouse: "w1", qty: 1 });
    const body = await stockAt("B", 1);
    expect(body.version).toBe(1);
    expect(body.positions.w1).toEqual(position(1));
    expect(fatal).toEqual([]);
  });

  test("a SKU called 'constructor' and stock at warehouse '__proto__' (which msgpack renames) keep their ids", async () => {
    await producer.publishJson(subjects.stockPublic("constructor"), {
      type: "received",
      warehouse: "__proto__",
      qty: 3,
    });
    await producer.publishJson(subjects.stockPublic("constructor"), {
      type: "received",
      warehouse: "__proto_",
      qty: 4,
    });
    await stockAt("constructor", 2);
    // Read back from LMDB (committed), through the entries of the ledger: each id is its own warehouse.
    const entries = await getJson(`${httpBase(sluice)}/v1/stock/constructor/entries`);
    expect(
      entries.body.entries.map((e: { warehouse: string; delta: object }) => [e.warehouse, e.delta]),
    ).toEqual([
      ["__proto__", { onHand: 3 }],
      ["__proto_", { onHand: 4 }],
    ]);
    // A reservation reads the position back from the store: the id must still be the one it was written as.
    await producer.publishJson(subjects.stockPublic("constructor"), {
      type: "adjust",
      warehouse: "__proto__",
      qty: -3,
    });
    await stockAt("constructor", 3);
    expect(fatal).toEqual([]);
  });

  test("GET /v1/stock shows a warehouse '__proto__' under its own name", async () => {
    const body = await stockAt("constructor", 3);
    expect(Object.hasOwn(body.positions, "__proto__")).toBe(true);
    expect(Object.getOwnPropertyDescriptor(body.positions, "__proto__")?.value).toEqual(position(0));
    expect(body.positions.__proto_).toEqual(position(4));
  });

  test("a rule set with warehouse 'constructor' and channel 'toString' routes, reserves and ships", async () => {
    const rules = {
      warehouses: [
        { id: "constructor", capacityPerDay: 1000, minStock: { hasOwnProperty: 1 } },
        { id: "w1", capacityPerDay: 1000 },
      ],
      channels: [
        { id: "*" },
        { id: "toString", warehouses: ["constructor"], marketplaceHeld: { hasOwnProperty: 1, valueOf: 7 } },
      ],
    };
    const put = await fetch(`${httpBase(sluice)}/v1/rules`, { method: "PUT", body: JSON.stringify(rules) });
    expect(put.status).toBe(200);
    await waitFor(async () => {
      const n = await getJson(`${httpBase(sluice)}/v1/network`);
      return n.body.warehouses?.[0]?.id === "constructor";
    }, "the rule set in force");
    await producer.publishJson(subjects.stockPublic("hasOwnProperty"), {
      type: "received",
      warehouse: "constructor",
      qty: 10,
    });
    await stockAt("hasOwnProperty", 1);
    await producer.publishJson(subjects.orderPublic("order", "toString", "o-1"), {
      lines: [{ sku: "hasOwnProperty", qty: 4, price: 1 }],
    });
    const released = await waitFor(async () => {
      const r = await getJson(`${httpBase(sluice)}/v1/orders/toString/o-1`);
      return r.status === 200 && r.body.lines?.[0]?.state === "released" ? r.body : null;
    }, "order toString/o-1 released");
    expect(released.lines[0].warehouse).toBe("constructor");
    const stock = await stockAt("hasOwnProperty", 2);
    expect(stock.positions.constructor).toEqual(position(10, 4));
    await producer.publishJson(subjects.wmsPublic("constructor", "shipped"), {
      channel: "toString",
      orderId: "o-1",
      shipmentId: "s-1",
      lines: [{ lineId: "1", qty: 4 }],
    });
    const shipped = await waitFor(async () => {
      const r = await getJson(`${httpBase(sluice)}/v1/orders/toString/o-1`);
      return r.status === 200 && r.body.status === "shipped" ? r.body : null;
    }, "order toString/o-1 shipped");
    expect(shipped.lines[0].shippedQty).toBe(4);
    expect((await stockAt("hasOwnProperty", 3)).positions.constructor).toEqual(position(6));
    // ATS for channel toString: 6 available at constructor less 1 the marketplace holds for this SKU.
    const ats = await getJson(`${httpBase(sluice)}/v1/stock/hasOwnProperty/ats`);
    expect(ats.body.channels.toString.ats).toBe(5);
    expect(fatal).toEqual([]);
  });
});
