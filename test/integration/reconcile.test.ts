import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { AtsItem } from "../../src/domain/sync/index.ts";
import { subjects } from "../../src/stream/subjects.ts";
import { waitFor } from "../helpers/index.ts";
import { type ChannelRules, Lifecycle, type StreamTap, skuIn } from "../helpers/lifecycle.ts";

// Channel reconciliation over a real nats-server and LMDB: a channel reports what it shows on
// sluice.in.channel.<channel>.stock; Sluice heals what drifted on sluice.out.stock.<channel> and says what it
// did on sluice.out.reconcile.<channel>; invalid reports are dead letters with their reason.

type SyncChannel = ChannelRules & { warehouses?: string[]; requestsPerSecond?: number };
type Report = {
  channel: string;
  snapshotId: string;
  full: boolean;
  part: number;
  parts: number;
  partition: number;
  reported: number;
  matched: number;
  inFlight: number;
  drifted: number;
  healed: Array<{ sku: string; reported: number; published: number; ats: number }>;
  deferred: number;
  resync: boolean;
  page: number;
  pages: number;
};

const decoder = new TextDecoder();
const itemsOf = (tap: StreamTap, channel: string, sku: string): AtsItem[] =>
  tap.items<AtsItem>(subjects.outStock(channel)).filter((i) => i.sku === sku);
const reportsOf = (tap: StreamTap, channel: string, snapshotId: string): Report[] =>
  tap.messages
    .filter((m) => m.subject === subjects.outReconcile(channel))
    .map((m) => JSON.parse(decoder.decode(m.data)) as Report)
    .filter((r) => r.snapshotId === snapshotId);

describe("channel reconciliation over a real nats-server and LMDB", () => {
  let h: Lifecycle;

  beforeAll(async () => {
    const channels: SyncChannel[] = [
      { id: "*" },
      { id: "A", warehouses: ["w1"] },
      { id: "__proto__", warehouses: ["w1"] },
    ];
    h = await Lifecycle.start("reconcile", channels, { sync: { flushWindowMs: 50 } });
  });

  afterAll(async () => {
    await h?.dispose();
  });

  test("a report with wrong values: the drifted SKUs get their ATS again, and the report says so", async () => {
    // SKUs in two partitions, one named like an inherited property.
    const skus = [skuIn("RC-a", 0, h.P), skuIn("RC-b", 1, h.P), "constructor"];
    for (const [i, s] of skus.entries()) await h.receive(s, "w1", 10 + i);
    for (const [i, s] of skus.entries())
      await waitFor(() => itemsOf(h.out, "A", s).at(-1)?.ats === 10 + i, `A shows ${s}`);
    await h.quiesce();
    const before = new Map(skus.map((s) => [s, itemsOf(h.out, "A", s).length]));

    const [a, b, c] = skus as [string, string, string];
    const report = {
      snapshotId: "R-1",
      full: false,
      // a: right; b: the channel shows more than Sluice offered (an oversell in the making); c: fewer;
      // never-seen SKU shows 4: Sluice has none of it.
      items: [
        { sku: a, qty: 10 },
        { sku: b, qty: 99 },
        { sku: c, qty: 0 },
        { sku: "RC-ghost", qty: 4 },
      ],
    };
    await h.producer.publishJson(subjects.channelStockPublic("A"), report);
    await waitFor(() => itemsOf(h.out, "A", b).length === (before.get(b) as number) + 1, "b healed");
    await waitFor(() => itemsOf(h.out, "A", c).length === (before.get(c) as number) + 1, "c healed");
    await waitFor(() => itemsOf(h.out, "A", "RC-ghost").length === 1, "the ghost healed");
    await h.quiesce();
    expect(itemsOf(h.out, "A", b).at(-1)).toMatchObject({ ats: 11 });
    expect(itemsOf(h.out, "A", c).at(-1)).toMatchObject({ ats: 12 });
    expect(itemsOf(h.out, "A", "RC-ghost")).toEqual([
      expect.objectContaining({ sku: "RC-ghost", ats: 0, version: 0 }),
    ]);
    // The right one was not sent again.
    expect(itemsOf(h.out, "A", a)).toHaveLength(before.get(a) as number);

    const reports = reportsOf(h.out, "A", "R-1");
    const sum = (k: "reported" | "matched" | "drifted" | "inFlight") => reports.reduce((n, r) => n + r[k], 0);
    expect([sum("reported"), sum("matched"), sum("drifted"), sum("inFlight")]).toEqual([4, 1, 3, 0]);
    const healed = reports.flatMap((r) => r.healed).sort((x, y) => (x.sku < y.sku ? -1 : 1));
    expect(healed).toEqual(
      [
        { sku: b, reported: 99, published: 11, ats: 11 },
        { sku: c, reported: 0, published: 12, ats: 12 },
        { sku: "RC-ghost", reported: 4, published: 0, ats: 0 },
      ].sort((x, y) => (x.sku < y.sku ? -1 : 1)),
    );
    for (const r of reports) expect(r).toMatchObject({ channel: "A", full: false, page: 1, pages: 1 });

    // Counted on /metrics by channel: what was reported, what drifted, what was healed.
    const metric = async (name: string) => {
      const text = await (await fetch(`${h.base}/metrics`)).text();
      const line = text.split("\n").find((l) => l.startsWith(`${name}{`) && l.includes('channel="A"'));
      return line === undefined ? 0 : Number(line.split(" ").pop());
    };
    expect(await metric("sluice_channel_reported_total")).toBe(4);
    expect(await metric("sluice_channel_drift_total")).toBe(3);
    expect(await metric("sluice_channel_healed_total")).toBe(3);

    // The same report again (another message, same snapshotId and part): nothing twice.
    const sentBefore = h.out.messages.length;
    await h.producer.publishJson(subjects.channelStockPublic("A"), report);
    await h.quiesce();
    expect(reportsOf(h.out, "A", "R-1")).toHaveLength(reports.length);
    expect(h.out.messages.length).toBe(sentBefore);
    expect(await metric("sluice_channel_drift_total")).toBe(3);
  }, 30_000);

  test("a channel named __proto__ and a full snapshot: all parts heard starts the channel's resync", async () => {
    const s = skuIn("RC-full", 2, h.P);
    await h.receive(s, "w1", 5);
    await waitFor(() => itemsOf(h.out, "__proto__", s).at(-1)?.ats === 5, "__proto__ shows 5");
    await h.quiesce();
    const before = itemsOf(h.out, "__proto__", s).length;
    // Part 1 lists nothing of s; only when part 2 arrives is the snapshot complete.
    const channel = subjects.channelStockPublic("__proto__");
    await h.producer.publishJson(channel, { snapshotId: "F-1", full: true, part: 1, parts: 2, items: [] });
    await h.quiesce();
    expect(reportsOf(h.out, "__proto__", "F-1")).toEqual([]);
    await h.producer.publishJson(channel, {
      snapshotId: "F-1",
      full: true,
      part: 2,
      parts: 2,
      items: [{ sku: "constructor", qty: 10 }],
    });
    // Every partition heard both parts: each resyncs the channel, so s (not listed) is offered again.
    await waitFor(() => itemsOf(h.out, "__proto__", s).length > before, "s offered again by the resync");
    await h.quiesce();
    const reports = reportsOf(h.out, "__proto__", "F-1");
    expect(reports).toHaveLength(h.P);
    expect(reports.every((r) => r.resync && r.part === 2 && r.channel === "__proto__")).toBe(true);
    expect(reports.reduce((n, r) => n + r.reported, 0)).toBe(1);
    expect(itemsOf(h.out, "__proto__", s).at(-1)?.ats).toBe(5);
  }, 30_000);

  test("invalid reports are dead letters with their reason; the router and partitions keep going", async () => {
    const A = subjects.channelStockPublic("A");
    await h.producer.publishJson(A, { snapshotId: "bad-1", items: [{ sku: "x", qty: "many" }] });
    const shape = await h.waitDeadLetter("invalid_command", (d) => d.body.includes("bad-1"), "bad qty");
    expect(shape.detail).toContain("items[0].qty");
    expect(shape.sourceSubject).toBe(A);

    await h.producer.publishJson(A, {
      snapshotId: "bad-2",
      items: [
        { sku: "x", qty: 1 },
        { sku: "x", qty: 2 },
      ],
    });
    const twice = await h.waitDeadLetter("invalid_command", (d) => d.body.includes("bad-2"), "listed twice");
    expect(twice.detail).toContain("listed twice");

    await h.producer.js.publish(A, "{not json");
    await h.waitDeadLetter("decode_failed", (d) => d.sourceSubject === A, "not JSON");

    await h.producer.publishJson("sluice.in.channel.A.stocks", { snapshotId: "bad-3", items: [] });
    await h.waitDeadLetter("bad_subject", (d) => d.body.includes("bad-3"), "wrong subject");

    // A channel that is not synced: the partition owning the SKU refuses its share.
    await h.producer.publishJson(subjects.channelStockPublic("nope"), {
      snapshotId: "bad-4",
      items: [{ sku: "x", qty: 1 }],
    });
    const unknown = await h.waitDeadLetter("unknown_channel", (d) => d.detail.includes("nope"), "unknown");
    expect(unknown.sourceSubject).toMatch(/^sluice\.ledger\.\d+\.reconcile\.nope$/);

    // A snapshot id announced again with another shape.
    await h.producer.publishJson(A, {
      snapshotId: "R-1",
      full: true,
      parts: 2,
      items: [{ sku: "constructor", qty: 1 }],
    });
    const conflict = await h.waitDeadLetter(
      "invalid_command",
      (d) => d.detail.includes("announced"),
      "conflict",
    );
    expect(conflict.detail).toContain("use a new snapshotId");

    // Still working: a good report after all that.
    await h.producer.publishJson(A, { snapshotId: "R-2", items: [{ sku: "constructor", qty: 12 }] });
    await waitFor(() => reportsOf(h.out, "A", "R-2").length === 1, "R-2 reported");
    expect(reportsOf(h.out, "A", "R-2")[0]).toMatchObject({
      reported: 1,
      matched: 1,
      drifted: 0,
      healed: [],
    });
    expect(h.fatal).toEqual([]);
  }, 30_000);
});
