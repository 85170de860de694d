import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Kvm } from "@nats-io/kv";
import type { Order } from "../../src/domain/orders/index.ts";
import type { OrderLine } from "../../src/domain/orders/types.ts";
import { rulesKey } from "../../src/rules/store.ts";
import type { WhatIfReport } from "../../src/rules/what-if.ts";
import { getJson, waitFor } from "../helpers/index.ts";
import { Lifecycle } from "../helpers/lifecycle.ts";
import { runCli } from "../helpers/process.ts";

// Routing over a real nats-server and LMDB: the rule set lives in the KV bucket, is changed while Sluice
// runs, and every decision is kept with the line and summarised in the fulfilment request.

const line = (o: Order, id = "1") => o.lines.find((l) => l.lineId === id) as OrderLine;
const allocated = (o: Order) => o.lines.every((l) => l.state === "released");

/** São Paulo, Rio de Janeiro, Belo Horizonte: ~360 km and ~490 km from São Paulo. */
const warehouses = (enabled: Record<string, boolean> = {}, capacity: Record<string, number> = {}) => [
  {
    id: "w1",
    region: "SP",
    lat: -23.55,
    lon: -46.63,
    capacityPerDay: capacity.w1 ?? 100_000,
    enabled: enabled.w1 ?? true,
  },
  {
    id: "w2",
    region: "RJ",
    lat: -22.91,
    lon: -43.17,
    capacityPerDay: capacity.w2 ?? 100_000,
    enabled: enabled.w2 ?? true,
  },
  {
    id: "w3",
    region: "MG",
    lat: -19.92,
    lon: -43.94,
    capacityPerDay: capacity.w3 ?? 100_000,
    enabled: enabled.w3 ?? true,
  },
];
const rules = (over: { enabled?: Record<string, boolean>; capacity?: Record<string, number> } = {}) => ({
  routing: { distanceWeight: 1, stockWeight: 0, loadWeight: 0, carrierWeight: 0, splitCost: 1 },
  warehouses: warehouses(over.enabled, over.capacity),
  channels: [{ id: "*" }],
});
const nearRio = { region: "RJ", lat: -22.95, lon: -43.2 };

async function putRules(h: Lifecycle, body: unknown, contentType = "application/json") {
  const res = await fetch(`${h.base}/v1/rules`, {
    method: "PUT",
    headers: { "Content-Type": contentType },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function metric(h: Lifecycle, name: string): Promise<number> {
  const text = await (await fetch(`${h.base}/metrics`)).text();
  const lines = text.split("\n").filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return lines.reduce((n, l) => n + Number(l.split(" ").pop()), 0);
}

async function inForce(h: Lifecycle): Promise<string> {
  return (await getJson(`${h.base}/v1/rules`)).body.inForce as string;
}

describe("routing over a real nats-server and LMDB", () => {
  let h: Lifecycle;
  let n = 0;
  const sku = () => `RT-${++n}`;
  const stockEverywhere = async (s: string, qty = 10) => {
    for (const w of ["w1", "w2", "w3"]) await h.receive(s, w, qty);
    for (const w of ["w1", "w2", "w3"]) await h.waitPosition(s, w, { onHand: qty });
  };

  beforeAll(async () => {
    h = await Lifecycle.start("routing", [{ id: "*" }], { routing: { loadRefreshMs: 10 } });
  });

  afterAll(async () => {
    await h?.dispose();
  });

  test("the network file seeds the bucket; a rule set put over HTTP is in force for the next order", async () => {
    expect(await inForce(h)).toBe("kv-1");
    const put = await putRules(h, rules());
    expect(put).toEqual({ status: 200, body: { revision: 2, version: "kv-2" } });
    await waitFor(async () => (await inForce(h)) === "kv-2", "kv-2 in force");
    const s = sku();
    await stockEverywhere(s);
    await h.order("shop", "RT-near", [{ lineId: "1", sku: s, qty: 1 }], { shipTo: nearRio });
    const o = await h.waitOrder("shop", "RT-near", allocated, "released");
    // Rio is nearest: ~5 km, then Belo Horizonte ~340 km, then São Paulo ~360 km.
    expect(line(o).warehouse).toBe("w2");
    const d = line(o).decision;
    expect(d).toMatchObject({ rules: "kv-2", chosen: "w2", reason: "best_score", shipments: 1 });
    expect(d?.candidates.map((c) => c.warehouse)).toEqual(["w2", "w3", "w1"]);
    expect(d?.candidates[0]?.distanceKm).toBeLessThan(10);
    expect(d?.candidates[2]?.distanceKm).toBeGreaterThan(330);
    const f = await waitFor(
      () => h.fulfilmentsOf("shop", "RT-near").find((x) => x.type === "fulfil"),
      "fulfilment request",
    );
    expect(f.lines[0]?.routing).toMatchObject({ rules: "kv-2", reason: "best_score", shipments: 1 });
  });

  test("a disabled warehouse gets no new order from the next message on; enabling it brings it back", async () => {
    const s = sku();
    await stockEverywhere(s);
    const put = await putRules(h, rules({ enabled: { w2: false } }));
    expect(put.status).toBe(200);
    await waitFor(async () => (await inForce(h)) === put.body.version, "disabled w2 in force");
    await h.order("shop", "RT-dis", [{ lineId: "1", sku: s, qty: 1 }], { shipTo: nearRio });
    const o = await h.waitOrder("shop", "RT-dis", allocated, "released");
    expect(line(o).warehouse).toBe("w3");
    expect(line(o).decision?.filtered).toContainEqual({ warehouse: "w2", reason: "disabled" });
    expect(line(o).decision?.rules).toBe(put.body.version as string);

    const back = await putRules(h, rules());
    await waitFor(async () => (await inForce(h)) === back.body.version, "w2 back in force");
    await h.order("shop", "RT-back", [{ lineId: "1", sku: s, qty: 1 }], { shipTo: nearRio });
    expect(line(await h.waitOrder("shop", "RT-back", allocated, "released")).warehouse).toBe("w2");
  });

  test("a bad rule set is refused with a clear error and the previous one keeps working", async () => {
    const before = await inForce(h);
    const refusedBefore = await metric(h, "sluice_rules_refused_total");
    const bad = await putRules(h, {
      ...rules(),
      warehouses: [{ id: "w1", carriers: [{ id: "c", cutoff: "25:00", transitDays: 1 }] }],
    });
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({ error: "invalid_rules", inForce: before });
    expect(bad.body.detail).toContain('cutoff must be a time "HH:MM"');
    expect((await putRules(h, "not json")).status).toBe(400);
    expect((await putRules(h, 'routing = "x"', "application/toml")).body.detail).toContain(
      "routing must be a table",
    );

    // Written straight into the bucket, around the command: the watcher refuses it, the old one stays.
    const kv = await new Kvm(h.producer.nc).open(h.config.routing.rulesBucket);
    await kv.put(rulesKey, JSON.stringify({ warehouses: [{ id: "" }] }));
    await waitFor(
      async () =>
        (await getJson(`${h.base}/v1/rules`)).body.refusal?.detail?.includes("id must be a non-empty"),
      "the refusal is shown",
    );
    expect(await inForce(h)).toBe(before);
    expect(await metric(h, "sluice_rules_refused_total")).toBe(refusedBefore + 4);
    const s = sku();
    await stockEverywhere(s);
    await h.order("shop", "RT-bad", [{ lineId: "1", sku: s, qty: 1 }], { shipTo: nearRio });
    const o = await h.waitOrder("shop", "RT-bad", allocated, "released");
    expect(line(o).decision?.rules).toBe(before);
    const versions = (await getJson(`${h.base}/v1/rules/versions`)).body.versions as Array<
      Record<string, unknown>
    >;
    expect(versions[0]).toMatchObject({ valid: false });
    expect(versions.find((v) => v.version === before)).toMatchObject({ valid: true });
    // Back to a valid rule set for the tests after this one.
    const good = await putRules(h, rules());
    await waitFor(async () => (await inForce(h)) === good.body.version, "valid rules again");
  });

  test("a warehouse rejection re-routes to the next best candidate, never the one that rejected", async () => {
    const s = sku();
    await stockEverywhere(s);
    await h.order("shop", "RT-rej", [{ lineId: "1", sku: s, qty: 1 }], { shipTo: nearRio });
    await h.waitOrder("shop", "RT-rej", (o) => line(o).warehouse === "w2" && allocated(o), "at w2");
    await h.rejected("w2", "shop", "RT-rej", ["1"]);
    let o = await h.waitOrder("shop", "RT-rej", (x) => line(x).warehouse === "w3" && allocated(x), "at w3");
    expect(line(o).decision?.filtered).toContainEqual({ warehouse: "w2", reason: "rejected_before" });
    await h.rejected("w3", "shop", "RT-rej", ["1"]);
    o = await h.waitOrder("shop", "RT-rej", (x) => line(x).warehouse === "w1" && allocated(x), "at w1");
    expect(line(o).excluded).toEqual(["w2", "w3"]);
    expect(line(o).decision?.candidates.map((c) => c.warehouse)).toEqual(["w1"]);
  });

  test("load: a warehouse whose capacity is taken receives no more; shipping frees nothing the same day", async () => {
    const put = await putRules(h, rules({ capacity: { w2: 2 } }));
    await waitFor(async () => (await inForce(h)) === put.body.version, "capacity rule in force");
    const s = sku();
    await stockEverywhere(s);
    // Earlier tests left their orders at w2 open; a fresh capacity of 2 counts them: start from what is there.
    const load = async () =>
      (
        (await getJson(`${h.base}/v1/routing/load`)).body.warehouses as Array<{
          warehouse: string;
          loadUnits: number;
        }>
      ).find((w) => w.warehouse === "w2")?.loadUnits ?? 0;
    const open = await load();
    expect(open).toBeGreaterThanOrEqual(2);
    await h.order("shop", "RT-cap", [{ lineId: "1", sku: s, qty: 1 }], { shipTo: nearRio });
    const o = await h.waitOrder("shop", "RT-cap", allocated, "released");
    expect(line(o).warehouse).toBe("w3");
    expect(line(o).decision?.filtered).toContainEqual({ warehouse: "w2", reason: "capacity_full" });
    await waitFor(async () => (await load()) === open, "w2 load unchanged");
  });

  test("what-if: a candidate rule set against the last orders, without touching the ledger", async () => {
    const good = await putRules(h, rules());
    await waitFor(async () => (await inForce(h)) === good.body.version, "rules in force");
    const s = sku();
    await stockEverywhere(s, 100);
    for (let i = 0; i < 5; i++)
      await h.order("shop", `RT-wi-${i}`, [{ lineId: "1", sku: s, qty: 1 }], { shipTo: nearRio });
    for (let i = 0; i < 5; i++) await h.waitOrder("shop", `RT-wi-${i}`, allocated, "released");
    const positions = async () => (await getJson(`${h.base}/v1/stock/${s}`)).body.positions;
    const before = await positions();
    const res = await fetch(`${h.base}/v1/rules/what-if?orders=5`, {
      method: "POST",
      body: JSON.stringify(rules({ enabled: { w2: false } })),
    });
    const report = (await res.json()) as WhatIfReport & { error?: string; message?: string };
    expect({ status: res.status, error: report.error, message: report.message }).toMatchObject({
      status: 200,
    });
    expect(report.orders).toBe(5);
    expect(report.baseline.byWarehouse.w2?.lines).toBe(5);
    expect(report.candidate.byWarehouse.w2).toBeUndefined();
    expect(report.candidate.byWarehouse.w3?.lines).toBe(5);
    expect(report.ordersChanged).toBe(5);
    expect(report.candidate.distanceKmMean).toBeGreaterThan(
      report.baseline.distanceKmMean ?? Number.POSITIVE_INFINITY,
    );
    expect(await positions()).toEqual(before);
    const bad = await fetch(`${h.base}/v1/rules/what-if?orders=0`, { method: "POST", body: "{}" });
    expect(bad.status).toBe(400);
  });

  test("the CLI: rules put refuses a bad file (exit 1, the reason), puts a good one; versions; what-if", async () => {
    const dir = h.dataDir;
    const bad = join(dir, "bad.toml");
    writeFileSync(bad, '[[warehouses]]\nid = "w1"\ncapacityPerDay = -1\n');
    const good = join(dir, "good.json");
    writeFileSync(good, JSON.stringify(rules()));
    const url = ["--url", h.base];
    const refused = await runCli(["rules", "put", bad, ...url]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("capacityPerDay must be a whole number");
    const put = await runCli(["rules", "put", good, ...url]);
    expect(put.code).toBe(0);
    const version = JSON.parse(put.stdout).version as string;
    await waitFor(async () => (await inForce(h)) === version, "the CLI's rule set in force");
    const versions = await runCli(["rules", "versions", ...url]);
    expect(JSON.parse(versions.stdout).versions[0].version).toBe(version);
    const whatIf = await runCli(["rules", "what-if", good, "--orders", "3", ...url]);
    expect(whatIf.code).toBe(0);
    expect(JSON.parse(whatIf.stdout)).toMatchObject({ orders: 3, ordersChanged: 0 });
    expect((await runCli(["rules", "put", ...url])).code).toBe(2);
  });

  test("the rule set in force survives a restart (the bucket, not the file)", async () => {
    const version = await inForce(h);
    await h.restart();
    expect(await inForce(h)).toBe(version);
    expect(h.fatal).toEqual([]);
  });
});
