import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { getJson, waitFor } from "../helpers/index.ts";
import { Lifecycle, settled, skusAcrossPartitions } from "../helpers/lifecycle.ts";

// Partitions in worker threads (node.workerCount): each worker hosts some partitions of both stages on its own
// event loop and NATS connection; the main thread keeps HTTP, the router, retention and one /metrics for all,
// and exits fast when a worker's partition cannot go on, as an in-process partition would.

const P = 4;
let h: Lifecycle;

beforeAll(async () => {
  h = await Lifecycle.start("workers", [{ id: "shop" }, { id: "web" }], {
    node: { workerCount: 2 },
    store: { lockRefreshMs: 100 },
  });
});
afterAll(async () => {
  await h?.dispose();
});

test("orders through partitions in two workers: every order settles once, metrics cover every partition", async () => {
  expect(h.sluice.workers?.size).toBe(2);
  expect(h.sluice.ledger).toEqual([]); // no partition on the main thread
  const skus = [...skusAcrossPartitions("WK", P, P), ...skusAcrossPartitions("WX", P, P)];
  for (const sku of skus) await h.receive(sku, "w1", 1000);
  for (const sku of skus) await h.waitPosition(sku, "w1", { onHand: 1000 });

  const count = 120;
  for (let i = 0; i < count; i++) {
    const channel = i % 2 === 0 ? "shop" : "web";
    await h.order(channel, `WK-${i}`, [
      { lineId: "1", sku: skus[i % skus.length] as string, qty: 1 },
      { lineId: "2", sku: skus[(i + 3) % skus.length] as string, qty: 2 },
    ]);
  }
  for (let i = 0; i < count; i += 10) await h.cancel(i % 2 === 0 ? "shop" : "web", `WK-${i}`);
  for (let i = 0; i < count; i++) {
    // An order may be allocated before its cancel applies: wait for its final status.
    const status = i % 10 === 0 ? "cancelled" : "allocated";
    const o = await h.waitOrder(i % 2 === 0 ? "shop" : "web", `WK-${i}`, (x) => x.status === status, status);
    expect(o.status).toBe(status);
  }
  await h.quiesce();
  let reserved = 0;
  for (const sku of skus) reserved += (await h.position(sku, "w1")).reserved;
  const kept = count - count / 10;
  expect(reserved).toBe(kept * 3);
  await h.expectLedgerConsistent();

  // One /metrics for every partition, whichever worker hosts it.
  const metrics = await (await fetch(`${h.base}/metrics`)).text();
  for (const stage of ["ledger", "order"]) {
    for (let p = 0; p < P; p++) {
      const line = metrics
        .split("\n")
        .find(
          (l) =>
            l.startsWith(`sluice_messages_applied_total{`) &&
            l.includes(`stage="${stage}"`) &&
            l.includes(`partition="${p}"`),
        );
      expect(Number(line?.split(" ").at(-1))).toBeGreaterThan(0);
    }
  }
  expect((await getJson(`${h.base}/readyz`)).status).toBe(200);

  // A restart keeps every effect once.
  await h.restart();
  await h.quiesce();
  let after = 0;
  for (const sku of skus) after += (await h.position(sku, "w1")).reserved;
  expect(after).toBe(reserved);
  expect(h.fatal).toEqual([]);
}, 60_000);

test("a rule set with prototype-named ids reaches the workers intact: they route to warehouse '__proto__'", async () => {
  const rules = {
    warehouses: [
      { id: "__proto__", capacityPerDay: 1000 },
      { id: "constructor", capacityPerDay: 1000 },
    ],
    channels: [{ id: "*" }, { id: "toString", warehouses: ["__proto__"] }],
  };
  const put = await fetch(`${h.base}/v1/rules`, { method: "PUT", body: JSON.stringify(rules) });
  expect(put.status).toBe(200);
  await waitFor(
    async () => (await getJson(`${h.base}/v1/network`)).body.warehouses?.[0]?.id === "__proto__",
    "rules",
  );
  await h.receive("WK-P", "__proto__", 10);
  await h.waitPosition("WK-P", "__proto__", { onHand: 10 });
  await h.order("toString", "WK-P-1", [{ lineId: "1", sku: "WK-P", qty: 4 }]);
  const o = await h.waitOrder("toString", "WK-P-1", (x) => settled(x), "settled");
  expect(o.status).toBe("allocated");
  expect(o.lines[0]?.warehouse).toBe("__proto__");
  expect((await h.position("WK-P", "__proto__")).reserved).toBe(4);
  expect(h.fatal).toEqual([]);
}, 30_000);

test("fail fast: a worker's partition that finds the data-dir lock taken stops the process", async () => {
  // Another process took the lock (this one stalled past store.lockStaleMs): no worker may commit again.
  writeFileSync(
    join(h.config.data.dir, "sluice.lock"),
    JSON.stringify({ host: "elsewhere", pid: 1, token: "another", boot: "", pidns: "" }),
  );
  await Bun.sleep(300);
  await h.order("shop", "WK-after-lock", [{ lineId: "1", sku: "WK-any", qty: 1 }]);
  await waitFor(() => h.fatal.length > 0, "the fatal error");
  expect(h.fatal[0]?.message).toContain("data-dir lock");
  expect(await h.getOrder("shop", "WK-after-lock")).toBeNull();
}, 30_000);
