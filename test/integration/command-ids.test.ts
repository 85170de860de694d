import { describe, expect, test } from "bun:test";
import type { Sluice } from "../../src/sluice.ts";
import { streamNames, subjects } from "../../src/stream/subjects.ts";
import { getJson, httpBase, type Producer, sluiceFixture, waitFor } from "../helpers/index.ts";

// Stock command ids over a real nats-server (issue #10, finding 12). A producer retrying after JetStream's
// duplicate window sends the same command under a new Nats-Msg-Id: the stream stores it twice, and the
// commandId alone must keep it from applying twice. Each copy here has its own Nats-Msg-Id, which is what
// the stream sees of a retry past the window.

const partitionCount = 4;
const commandIdsCountMax = 20;
let sluice: Sluice;
let fatal: Error[];
let producer: Producer;
sluiceFixture(
  "command-ids",
  (f) => {
    ({ sluice, fatal, producer } = f);
  },
  { partitionCount, overrides: { ledger: { commandIdsCountMax, itemsPerMessageMax: 10 } } },
);

async function stock(sku: string) {
  const r = await getJson(`${httpBase(sluice)}/v1/stock/${encodeURIComponent(sku)}`);
  return r.status === 200 ? r.body : null;
}

const markers = new Map<string, number>();
/**
 * Sends a marker (one unit at warehouse "marker", no id) after what the test sent, by the same path, and
 * waits until it is applied: then so is everything before it on the SKU (a partition applies in stream
 * order; the router keeps the order of one target subject). Returns the SKU's state then.
 */
async function settled(sku: string, path: "stock" | "import" | "wms" = "stock") {
  const n = (markers.get(sku) ?? 0) + 1;
  markers.set(sku, n);
  if (path === "stock")
    await send(subjects.stockPublic(sku), { type: "received", warehouse: "marker", qty: 1 });
  else if (path === "wms") await send(subjects.wmsPublic("marker", "received"), { items: [{ sku, qty: 1 }] });
  else {
    const item = { sku, type: "received", warehouse: "marker", qty: 1 };
    await send(subjects.importPublic("marker"), { items: [item] });
  }
  return waitFor(async () => {
    const s = await stock(sku);
    return s?.positions.marker?.onHand === n ? s : null;
  }, `marker ${n} of ${sku}`);
}

let msgIds = 0;
/** Every publish gets a Nats-Msg-Id never used before: each copy is stored, as a retry past the window is. */
const send = (subject: string, body: unknown) => producer.publishJson(subject, body, `cmd-ids-${++msgIds}`);
const received = (qty: number, commandId?: string) => ({
  type: "received",
  warehouse: "w1",
  qty,
  ...(commandId === undefined ? {} : { commandId }),
});

async function repeated(outcome: "applied" | "refused"): Promise<number> {
  const metric = sluice.metrics.registry.getSingleMetric("sluice_stock_commands_repeated_total");
  const values = (await metric?.get())?.values ?? [];
  return values.find((v) => v.labels.outcome === outcome)?.value ?? 0;
}

async function dlqDetails(reason: string): Promise<string[]> {
  const jsm = await producer.jsm();
  const info = await jsm.streams.info(streamNames.dlq);
  const out: string[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const m = await jsm.streams.getMessage(streamNames.dlq, { seq }).catch(() => null);
    if (m && m.subject === subjects.dlq(reason)) out.push(m.header.get("Sluice-Detail"));
  }
  return out;
}

describe("stock commands with a commandId apply once, whatever their Nats-Msg-Id", () => {
  test("the same received twice: applied once, the repeat counted", async () => {
    const before = await repeated("applied");
    const first = await send(subjects.stockPublic("CI-1"), received(10, "PO-1:CI-1"));
    const second = await send(subjects.stockPublic("CI-1"), received(10, "PO-1:CI-1"));
    // Both stored: JetStream's de-duplication did not see a repeat.
    expect(second.duplicate).toBe(false);
    expect(second.seq).toBeGreaterThan(first.seq);
    await send(subjects.stockPublic("CI-1"), received(1));
    const s = await settled("CI-1");
    // received 10, received 1, the marker: three versions, not four.
    expect(s.version).toBe(3);
    expect(s.positions.w1.onHand).toBe(11);
    expect(await repeated("applied")).toBe(before + 1);
  });

  test("a refused command stays refused when retried, even once there is stock for it", async () => {
    const before = await repeated("refused");
    const hold = { type: "hold", warehouse: "w1", qty: 3, bucket: "damaged", commandId: "hold-7" };
    await send(subjects.stockPublic("CI-2"), hold);
    await send(subjects.stockPublic("CI-2"), received(5));
    await send(subjects.stockPublic("CI-2"), hold);
    const s = await settled("CI-2");
    expect(s.version).toBe(2);
    expect(s.positions.w1).toMatchObject({ onHand: 5, damaged: 0 });
    expect(await repeated("refused")).toBe(before + 1);
    // Dead letters are published after their batch's commit: wait for the first; there is no second.
    const refusals = await waitFor(async () => {
      const d = (await dlqDetails("refused")).filter((x) => x.startsWith("hold refused"));
      return d.length > 0 ? d : null;
    }, "the hold's dead letter");
    expect(refusals).toEqual(["hold refused: hold_exceeds_available"]);
  });

  test("an import sent twice with one commandId for the message: every item applied once", async () => {
    const body = {
      commandId: "onboard-42",
      items: [
        { sku: "CI-3", type: "received", warehouse: "w1", qty: 4 },
        { sku: "CI-4", type: "received", warehouse: "w1", qty: 6 },
        // The same SKU twice in one message: items are told apart by their index.
        { sku: "CI-3", type: "received", warehouse: "w2", qty: 2 },
      ],
    };
    await send(subjects.importPublic("onboard-42"), body);
    await send(subjects.importPublic("onboard-42-retry"), body);
    const a = await settled("CI-3", "import");
    const b = await settled("CI-4", "import");
    expect([a.version, a.positions.w1.onHand, a.positions.w2.onHand]).toEqual([3, 4, 2]);
    expect([b.version, b.positions.w1.onHand]).toEqual([2, 6]);
  });

  test("an import with an id per item: each applied once", async () => {
    const items = [
      { sku: "CI-5", type: "received", warehouse: "w1", qty: 3, commandId: "asn-1" },
      { sku: "CI-5", type: "adjust", warehouse: "w1", qty: -1, commandId: "adj-1" },
    ];
    await send(subjects.importPublic("per-item"), { items });
    await send(subjects.importPublic("per-item"), { items });
    await send(subjects.importPublic("per-item"), { items: [{ ...items[0], commandId: "asn-2" }] });
    const s = await settled("CI-5", "import");
    expect([s.version, s.positions.w1.onHand]).toEqual([4, 5]);
  });

  test("a WMS received event sent twice: applied once", async () => {
    const body = { commandId: "ASN-900", items: [{ sku: "CI-6", qty: 8, ref: "ASN-900" }] };
    await send(subjects.wmsPublic("w2", "received"), body);
    await send(subjects.wmsPublic("w2", "received"), body);
    const s = await settled("CI-6", "wms");
    expect([s.version, s.positions.w2.onHand]).toEqual([2, 8]);
  });

  test("an invalid commandId is dead-lettered invalid_command; nothing is applied", async () => {
    await send(subjects.stockPublic("CI-7"), received(1, "x".repeat(257)));
    await send(subjects.importPublic("bad-id"), {
      commandId: "",
      items: [{ sku: "CI-7", type: "received", warehouse: "w1", qty: 1 }],
    });
    const s = await settled("CI-7", "import");
    expect(s.version).toBe(1);
    expect(s.positions.w1).toBeUndefined();
    const details = await waitFor(async () => {
      const d = (await dlqDetails("invalid_command")).filter((x) => x.includes("commandId"));
      return d.length >= 2 ? d : null;
    }, "two invalid_command dead letters");
    // From the ledger (the stock subject) and the router (the import): in either order.
    expect(details.sort()).toEqual([
      "commandId must be a non-empty string",
      "commandId must be at most 256 bytes",
    ]);
  });

  test("the bound forgets the oldest ids of a partition first", async () => {
    const sku = "CI-8";
    // 25 more ids on this SKU's partition than ledger.commandIdsCountMax (20): the first is forgotten.
    const count = commandIdsCountMax + 5;
    for (let i = 0; i < count; i++) await send(subjects.stockPublic(sku), received(1, `e-${i}`));
    // Committed (the bound is applied at the end of each batch: within one, every id is still known).
    await settled(sku);
    // The newest is remembered: nothing. The oldest was forgotten: applied again.
    await send(subjects.stockPublic(sku), received(1, `e-${count - 1}`));
    await send(subjects.stockPublic(sku), received(1, "e-0"));
    const s = await settled(sku);
    // count ids, a marker, e-0 again, a marker.
    expect([s.version, s.positions.w1.onHand]).toEqual([count + 3, count + 1]);
    expect(fatal).toEqual([]);
  });
});
