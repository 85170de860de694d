import { expect, test } from "bun:test";
import type { Order } from "../../src/domain/orders/index.ts";
import type { Sluice } from "../../src/sluice.ts";
import { streamNames, subjects } from "../../src/stream/subjects.ts";
import { getJson, httpBase, type Producer, sluiceFixture, type TestNats, waitFor } from "../helpers/index.ts";

// The whole order path (order stage → ledger partitions → order stage → outputs) through a nats-server
// restart in the middle of a stream of orders: none lost, none doubled; then the stage's metrics.
let sluice: Sluice;
let fatal: Error[];
let producer: Producer;
let nats: TestNats;
sluiceFixture("orders-outage", (f) => {
  ({ sluice, fatal, producer, nats } = f);
});

const skus = ["OO-1", "OO-2", "OO-3", "OO-4", "OO-5"];
const total = 1500;

function orders(): Order[] {
  return sluice.orders.flatMap((p) => [...p.store.rangeValues<Order>("orders")]);
}

async function reservedSum(): Promise<number> {
  let sum = 0;
  for (const sku of skus)
    sum += (await getJson(`${httpBase(sluice)}/v1/stock/${sku}`)).body.positions.w1.reserved;
  return sum;
}

test("two-line orders through a nats-server restart: every order released once, stock reserved once", async () => {
  for (const sku of skus)
    await producer.publishJson(subjects.stockPublic(sku), {
      type: "received",
      warehouse: "w1",
      qty: 100_000,
    });
  await waitFor(async () => (await getJson(`${httpBase(sluice)}/v1/stock/OO-5`)).status === 200, "stock");
  let sent = 0;
  const publishing = (async () => {
    for (; sent < total; sent++) {
      const lines = [
        { lineId: "1", sku: skus[sent % 5], qty: 1, price: 1 },
        { lineId: "2", sku: skus[(sent + 1) % 5], qty: 2, price: 1 },
      ];
      await producer.publishJsonRetrying(
        subjects.orderPublic("order", "shop", `OO-${sent}`),
        { lines },
        `oo-${sent}`,
      );
    }
  })();
  await waitFor(() => sent >= 500, "500 orders published");
  await nats.restart(200);
  await publishing;
  await waitFor(
    () => orders().filter((o) => o.status === "allocated").length === total,
    `${total} orders allocated`,
    60_000,
    100,
  );
  expect(orders().length).toBe(total);
  expect(await reservedSum()).toBe(total * 3);
  // Fulfilment requests: one per order, whatever was re-published across the restart.
  const jsm = await producer.jsm();
  const out = await jsm.streams.info(streamNames.out);
  const fulfilled = new Map<string, number>();
  for (let seq = out.state.first_seq; seq <= out.state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(streamNames.out, { seq });
    if (m?.subject !== subjects.outFulfil("w1")) continue;
    for (const item of (m.json() as { items: Array<{ type: string; orderId: string }> }).items) {
      if (item.type === "fulfil") fulfilled.set(item.orderId, (fulfilled.get(item.orderId) ?? 0) + 1);
    }
  }
  expect(fulfilled.size).toBe(total);
  expect([...fulfilled.values()].every((n) => n === 1)).toBe(true);
  expect((await getJson(`${httpBase(sluice)}/v1/ledger/check`)).body.consistent).toBe(true);
  expect(fatal).toEqual([]);
}, 120_000);

test("the order stage's metrics count what happened", async () => {
  await producer.publishJson(subjects.orderPublic("cancel", "shop", "OO-0"), {});
  await producer.publishJson(subjects.wmsPublic("w1", "shipped"), {
    channel: "shop",
    orderId: "OO-1",
    shipmentId: "s-1",
    lines: [{ lineId: "1", qty: 1 }],
  });
  await waitFor(
    () => orders().find((o) => o.orderId === "OO-1")?.status === "partially_shipped",
    "OO-1 shipped",
  );
  await producer.publishJson(subjects.orderPublic("return", "shop", "OO-1"), {
    returnId: "r-1",
    lines: [{ lineId: "1", qty: 1, disposition: "damaged" }],
  });
  await producer.publishJson(subjects.orderPublic("order", "shop", "OO-NONE"), {
    lines: [{ sku: "OO-NOSTOCK", qty: 1 }],
  });
  const text = await waitFor(async () => {
    const t = await (await fetch(`${httpBase(sluice)}/metrics`)).text();
    return t.includes('outcome="returned",label="damaged"') && t.includes('outcome="rejected"') ? t : null;
  }, "the return and the rejection counted");
  const value = (pattern: RegExp) => Number(pattern.exec(text)?.[1] ?? Number.NaN);
  expect(value(/^sluice_reservations_total\{[^}]*\} (\d+)$/m)).toBe(total * 2);
  expect(value(/^sluice_order_outcomes_total\{outcome="orders",label="created"[^}]*\} (\d+)$/m)).toBe(
    total + 1,
  );
  expect(value(/^sluice_order_outcomes_total\{outcome="released",label="lines"[^}]*\} (\d+)$/m)).toBe(
    total * 2,
  );
  expect(value(/^sluice_order_outcomes_total\{outcome="cancelled",label="customer"[^}]*\} (\d+)$/m)).toBe(2);
  expect(value(/^sluice_order_outcomes_total\{outcome="returned",label="damaged"[^}]*\} (\d+)$/m)).toBe(1);
  expect(value(/^sluice_order_outcomes_total\{outcome="shipped",label="units"[^}]*\} (\d+)$/m)).toBe(1);
  expect(
    value(/^sluice_order_outcomes_total\{outcome="rejected",label="insufficient_available"[^}]*\} (\d+)$/m),
  ).toBe(1);
  expect(
    value(/^sluice_commands_refused_total\{stage="ledger",code="insufficient_available"[^}]*\} (\d+)$/m),
  ).toBe(1);
  // Every open order has its deadline and its at-risk mark (slaAtRiskMs, a quarter of the ship-within by default,
  // still ahead); the cancelled and the rejected ones have none (sampled every lagPollMs).
  await waitFor(async () => {
    const t = await (await fetch(`${httpBase(sluice)}/metrics`)).text();
    const pending = [...t.matchAll(/^sluice_sla_timers_pending\{partition="\d+"[^}]*\} (\d+)$/gm)];
    return pending.reduce((n, m) => n + Number(m[1]), 0) === 2 * (total - 1);
  }, "SLA timers pending = 2 × open orders (deadline and at-risk mark)");
  expect(text).toMatch(/^sluice_outbox_depth_items\{stage="order",partition="0"[^}]*\} \d+$/m);
  expect(text).toMatch(/^sluice_sla_timers_fired_total\{[^}]*\} 0$/m);
});
