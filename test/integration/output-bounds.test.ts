import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { subjects } from "../../src/stream/subjects.ts";
import { waitFor } from "../helpers/index.ts";
import { Lifecycle } from "../helpers/lifecycle.ts";

// Issue #10, finding 2, over a real nats-server and LMDB: free text over `orders.textBytesMax` (256 bytes) is
// dead-lettered with a detail naming the field and the limit, instead of flowing into a status item larger
// than a message (whose publish would fail forever and stop the partition, and Sluice at the next start).
// The process stays up and the inputs around the refused ones are applied.

const textBytesMax = 256;
const emoji = "😀"; // 4 UTF-8 bytes
const atLimit = emoji.repeat(textBytesMax / 4);
const overLimit = `${atLimit}x`;

describe("free text over its bound is refused; neighbours are applied; Sluice stays up", () => {
  let h: Lifecycle;

  beforeAll(async () => {
    h = await Lifecycle.start("output-bounds", [{ id: "*" }]);
    await h.receive("OB-1", "w1", 100);
    await h.receive("OB-1", "w2", 100);
    await h.waitPosition("OB-1", "w2", { onHand: 100 });
  });

  afterAll(async () => {
    await h?.dispose();
  });

  const allocated = (orderId: string) =>
    h.waitOrder("shop", orderId, (o) => o.status === "allocated", "allocated");

  test("a cancel whose reason is nearly a whole message is dead-lettered, the next cancel applied", async () => {
    await h.order("shop", "ob-1", [{ lineId: "1", sku: "OB-1", qty: 1 }]);
    await allocated("ob-1");
    // The largest payload a stage stream takes, less room for the rest of the JSON.
    const reason = "r".repeat(h.config.streams.messageBytesMax - 200);
    await h.producer.publishJson(subjects.orderPublic("cancel", "shop", "ob-1"), { reason });
    const dead = await h.waitDeadLetter(
      "invalid_command",
      (d) => d.detail.startsWith("reason is "),
      "huge reason",
    );
    expect(dead.detail).toBe(
      `reason is ${reason.length} UTF-8 bytes; at most ${textBytesMax} are allowed (orders.textBytesMax)`,
    );
    expect(dead.body.length).toBe(reason.length + 13);
    await h.producer.publishJson(subjects.orderPublic("cancel", "shop", "ob-1"), { reason: atLimit });
    const o = await h.waitOrder("shop", "ob-1", (x) => x.status === "cancelled", "cancelled");
    expect(o.history.at(-1)).toMatchObject({ event: "cancelled", detail: atLimit });
    await waitFor(
      () => h.statuses("shop", "ob-1").some((s) => s.status === "cancelled" && s.detail === atLimit),
      "the cancelled status with its reason",
    );
  });

  test("a WMS rejected reason at the limit is applied, one byte over is dead-lettered", async () => {
    await h.order("shop", "ob-2", [{ lineId: "1", sku: "OB-1", qty: 1 }]);
    const o = await allocated("ob-2");
    const warehouse = o.lines[0]?.warehouse as string;
    const body = (reason: string) => ({ channel: "shop", orderId: "ob-2", lines: ["1"], reason });
    await h.producer.publishJson(subjects.wmsPublic(warehouse, "rejected"), body(overLimit));
    const dead = await h.waitDeadLetter(
      "invalid_command",
      (d) => d.detail.startsWith("reason is 257"),
      "over",
    );
    expect(dead.detail).toMatch(/at most 256 are allowed \(orders\.textBytesMax\)/);
    await h.producer.publishJson(subjects.wmsPublic(warehouse, "rejected"), body(atLimit));
    await waitFor(
      () =>
        h
          .statuses("shop", "ob-2")
          .some((s) => s.event === "rejected_by_warehouse" && s.detail === `${warehouse}: ${atLimit}`),
      "the rejection with its reason",
    );
  });

  test("shipTo region and zip over the limit are dead-lettered; an order with them at the limit is routed", async () => {
    const line = [{ lineId: "1", sku: "OB-1", qty: 1 }];
    await h.order("shop", "ob-3", line, { shipTo: { region: overLimit } });
    await h.order("shop", "ob-4", line, { shipTo: { zip: overLimit } });
    await h.order("shop", "ob-5", line, { shipTo: { region: atLimit, zip: atLimit } });
    for (const field of ["shipTo.region", "shipTo.zip"]) {
      const dead = await h.waitDeadLetter("invalid_command", (d) => d.detail.startsWith(field), field);
      expect(dead.detail).toBe(`${field} is 257 UTF-8 bytes; at most 256 are allowed (orders.textBytesMax)`);
    }
    const o = await allocated("ob-5");
    const fulfil = await waitFor(
      () => h.fulfilments(o.lines[0]?.warehouse as string, "ob-5").find((f) => f.type === "fulfil"),
      "the fulfilment request",
    );
    expect(fulfil.shipTo).toMatchObject({ region: atLimit, zip: atLimit });
    expect(await h.getOrder("shop", "ob-3")).toBeNull();
    expect(await h.getOrder("shop", "ob-4")).toBeNull();
  });

  test("the process stayed up and the ledger is consistent", async () => {
    await h.quiesce();
    expect(h.fatal).toEqual([]);
    await h.expectLedgerConsistent();
  });
});
