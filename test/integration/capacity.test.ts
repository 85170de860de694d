import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Kvm } from "@nats-io/kv";
import { type CapacityDay, capacityDayOf } from "../../src/domain/ledger/index.ts";
import type { Order } from "../../src/domain/orders/index.ts";
import type { Sluice } from "../../src/sluice.ts";
import type { LedgerApplier } from "../../src/stages/ledger/applier.ts";
import type { CapacityStats } from "../../src/stages/ledger/capacity.ts";
import { capacityPoolKey, type PoolValue } from "../../src/stages/ledger/capacity-pool.ts";
import { capacityBucketDefault, skuPartition, subjects } from "../../src/stream/subjects.ts";
import {
  getJson,
  httpBase,
  Producer,
  startSluice,
  TestNats,
  tempDir,
  testConfig,
  waitFor,
} from "../helpers/index.ts";
import { skuIn } from "../helpers/lifecycle.ts";

// Issue #14: warehouse capacity holds under bursts. w1 takes 20 units a day; w2 has room and stock. Orders all
// prefer w1 (listed first, every score equal). The ledger partitions (P = 4) claim w1's capacity from the
// shared pool (KV SLUICE_CAPACITY) in chunks; whatever the interleaving, w1 never takes more than 20.

const P = 4;
const capacityW1 = 20;
const nats = new TestNats(P);
const dir = tempDir("capacity");
let sluice: Sluice;
let fatal: Error[] = [];
let producer: Producer;
let config: ReturnType<typeof testConfig>;
const skus = Array.from({ length: 12 }, (_, i) => skuIn(`CAP-${i}`, i % P, P));

const network = `[routing]
loadWeight = 0
stockWeight = 0

[[warehouses]]
id = "w1"
capacityPerDay = ${capacityW1}

[[warehouses]]
id = "w2"
capacityPerDay = 100000

[[channels]]
id = "*"
`;

const stats: CapacityStats[] = [];
const appliers = () => sluice.ledger.map((p) => p.applier as LedgerApplier);
/** Stats of the process now running plus those of processes before it (a restart builds new appliers). */
const totals = () => {
  const all = [...stats, ...appliers().map((a) => a.capacity?.stats as CapacityStats)];
  return {
    shortTransient: all.reduce((n, s) => n + s.shortTransient, 0),
    shortPoolFull: all.reduce((n, s) => n + s.shortPoolFull, 0),
    claims: all.reduce((n, s) => n + s.claims.granted + s.claims.full + s.claims.failed, 0),
    failed: all.reduce((n, s) => n + s.claims.failed, 0),
  };
};

async function order(id: string, sku: string, qty = 1) {
  await producer.publishJson(subjects.orderPublic("order", "shop", id), {
    lines: [{ lineId: "1", sku, qty, price: 1 }],
  });
}

async function getOrder(id: string): Promise<Order | null> {
  const r = await getJson(`${httpBase(sluice)}/v1/orders/shop/${id}`);
  return r.status === 200 ? (r.body as Order) : null;
}

/** Orders that have an answer for their line: reserved (released to a warehouse) or refused. */
async function settled(ids: string[]): Promise<Order[] | null> {
  const out: Order[] = [];
  for (const id of ids) {
    const o = await getOrder(id);
    if (o === null || o.status === "pending" || o.lines.some((l) => l.state === "received")) return null;
    out.push(o);
  }
  return out;
}

/** Units reserved or shipped at w1 today, from the positions (committed LMDB via HTTP). */
async function unitsAt(warehouse: string): Promise<number> {
  let n = 0;
  for (const sku of new Set(skus)) {
    const body = (await getJson(`${httpBase(sluice)}/v1/stock/${sku}`)).body;
    n += body?.positions?.[warehouse]?.reserved ?? 0;
  }
  return n;
}

async function pool(): Promise<PoolValue | null> {
  const kv = await new Kvm(producer.js).open(capacityBucketDefault);
  const e = await kv.get(capacityPoolKey("w1", capacityDayOf(Date.now())));
  return e === null ? null : e.json<PoolValue>();
}

/** Held and used at w1 today, summed over the ledger partitions' LMDB capacity rows. */
function heldUsed(): { held: number; used: number; byPartition: number[] } {
  const day = capacityDayOf(Date.now());
  let held = 0;
  let used = 0;
  const byPartition: number[] = [];
  for (let p = 0; p < P; p++) {
    const row = sluice.store("ledger", p)?.get<CapacityDay>("capacity", [day, "w1"]);
    held += row?.held ?? 0;
    used += row?.used ?? 0;
    byPartition.push(row?.held ?? 0);
  }
  return { held, used, byPartition };
}

beforeAll(async () => {
  await nats.start();
  const networkFile = join(dir, "network.toml");
  writeFileSync(networkFile, network);
  config = testConfig(nats.url, join(dir, "data"), { orders: { networkFile } });
  ({ sluice, fatal } = await startSluice(config));
  producer = await Producer.connect(nats.url);
  for (const sku of skus) {
    await producer.publishJson(subjects.stockPublic(sku), { type: "received", warehouse: "w1", qty: 100 });
    await producer.publishJson(subjects.stockPublic(sku), { type: "received", warehouse: "w2", qty: 100 });
  }
  await waitFor(
    async () =>
      (await unitsAt("w1")) === 0 &&
      (await getJson(`${httpBase(sluice)}/v1/stock/${skus[11]}`)).body?.positions?.w2?.onHand === 100,
    "stock received",
  );
});

afterAll(async () => {
  await producer?.close();
  await sluice?.stop();
  await nats.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe("warehouse capacity under a burst (issue #14)", () => {
  const burst = Array.from({ length: 60 }, (_, i) => `burst-${i}`);

  test("60 orders at once, a restart in the middle: w1 takes at most 20, the rest go to w2 or are refused capacity_full", async () => {
    await Promise.all(burst.map((id, i) => order(id, skus[i % skus.length] as string)));
    // A restart while the burst is being applied: held capacity is in LMDB, claimed capacity in KV.
    await waitFor(async () => ((await pool())?.claimed ?? 0) > 0, "a first claim");
    await waitFor(
      async () =>
        (await Promise.all(burst.slice(0, 10).map(getOrder))).some(
          (o) => o !== null && o.status !== "pending",
        ),
      "some orders answered",
    );
    stats.push(...appliers().map((a) => a.capacity?.stats as CapacityStats));
    await sluice.stop();
    ({ sluice, fatal } = await startSluice(config));
    const orders = await waitFor(() => settled(burst), "every order answered", 30_000);
    await waitFor(() => appliers().every((a) => (a.capacity?.claimsInFlight ?? 0) === 0), "claims done");

    const atW1 = orders.filter((o) => o.lines[0]?.warehouse === "w1" && o.lines[0]?.state !== "backordered");
    const atW2 = orders.filter((o) => o.lines[0]?.warehouse === "w2");
    const refused = orders.filter((o) => o.lines[0]?.refusal !== null && o.lines[0]?.warehouse === null);
    const units = await unitsAt("w1");
    const p = await pool();
    const hu = heldUsed();
    const t = totals();
    console.log(
      `capacity figures: w1 units ${units}/${capacityW1} (orders at w1 ${atW1.length}, at w2 ${atW2.length}, refused ${refused.length} [${refused.map((o) => o.lines[0]?.refusal).join(",")}]); pool claimed ${p?.claimed} by partition ${JSON.stringify(p?.partitions)}; LMDB held ${hu.held} (by partition ${hu.byPartition}) used ${hu.used}; claims ${t.claims} (failed ${t.failed}); capacity misses while the pool had room ${t.shortTransient}, after it was full ${t.shortPoolFull}`,
    );
    expect(units).toBeLessThanOrEqual(capacityW1); // measured tolerance: zero
    expect(atW1.length).toBe(units);
    expect(atW1.length + atW2.length + refused.length).toBe(burst.length);
    for (const o of refused) expect(o.lines[0]?.refusal).toBe("capacity_full");
    // The pool never passes capacityPerDay; what partitions hold is within what was claimed (a claim that
    // landed in KV while its partition stopped is lost to the day, never doubled); what they used is w1's units.
    expect(p?.claimed ?? 0).toBeLessThanOrEqual(capacityW1);
    expect(hu.held).toBeLessThanOrEqual(p?.claimed ?? 0);
    expect(hu.used).toBe(units);
    for (let q = 0; q < P; q++)
      expect(hu.byPartition[q] ?? 0).toBeLessThanOrEqual(p?.partitions[String(q)] ?? 0);
    // Nothing claimed is lost across the restart: what landed in KV and was never committed is adopted back.
    await waitFor(async () => heldUsed().held === (await pool())?.claimed, "held = claimed (adopted)");
    expect(fatal).toEqual([]);
  }, 60_000);

  const wave = Array.from({ length: 24 }, (_, i) => `wave-${i}`);

  test("orders that come one after another fill w1 to exactly 20: the chunks left after the burst are used", async () => {
    for (const [i, id] of wave.entries()) {
      await order(id, skus[i % skus.length] as string);
      await waitFor(() => settled([id]), `order ${id} answered`);
    }
    const orders = (await settled([...burst, ...wave])) as Order[];
    const atW1 = orders.filter((o) => o.lines[0]?.warehouse === "w1");
    const units = await unitsAt("w1");
    const p = await pool();
    const t = totals();
    console.log(
      `capacity figures after a sequential wave: w1 units ${units}/${capacityW1}; pool claimed ${p?.claimed}; LMDB ${JSON.stringify(heldUsed())}; misses while the pool had room ${t.shortTransient}, after it was full ${t.shortPoolFull}`,
    );
    expect(units).toBe(capacityW1);
    expect(atW1.length).toBe(capacityW1);
    expect(p?.claimed).toBe(capacityW1);
    expect(heldUsed().used).toBe(capacityW1);
    expect(fatal).toEqual([]);
  }, 60_000);

  test("a cancel gives the unit back to its partition: a later order there fits at w1", async () => {
    const orders = (await settled([...burst, ...wave])) as Order[];
    const p = await pool();
    expect(p?.claimed).toBe(capacityW1); // the pool is spent: only a given-back unit can take the next order
    const before = await unitsAt("w1");
    expect(before).toBe(capacityW1);
    const atW1 = orders.find((o) => o.lines[0]?.warehouse === "w1") as Order;
    const sku = atW1.lines[0]?.sku as string;
    const partition = skuPartition(sku, P);
    // Every unit this partition holds is used: the next order there fits only with the unit the cancel frees.
    const day = capacityDayOf(Date.now());
    const row = () => sluice.store("ledger", partition)?.get<CapacityDay>("capacity", [day, "w1"]);
    await producer.publishJson(subjects.orderPublic("cancel", "shop", atW1.orderId), {});
    await waitFor(async () => (await unitsAt("w1")) === before - 1, "the cancel released its unit");
    const free = (row()?.held ?? 0) - (row()?.used ?? 0);
    expect(free).toBe(1); // the pool is spent and this partition used all it held: the freed unit is all it has
    const other = skus.find((s) => skuPartition(s, P) === partition && s !== sku) ?? sku;
    await order("after-cancel", other);
    const o = (await waitFor(() => settled(["after-cancel"]), "the later order answered"))[0] as Order;
    expect(o.lines[0]?.warehouse).toBe("w1");
    expect(await unitsAt("w1")).toBe(before);
    expect((await pool())?.claimed).toBe(capacityW1);
    expect(fatal).toEqual([]);
  }, 30_000);
});
