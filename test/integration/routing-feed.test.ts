import { afterAll, describe, expect, test } from "bun:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { SkuState } from "../../src/domain/ledger/index.ts";
import { positionFeedSubject } from "../../src/stages/ledger/position-feed.ts";
import { FeedView, type LedgerReadView, RoutingPort } from "../../src/stages/order/routing-view.ts";
import { subjects } from "../../src/stream/subjects.ts";
import { type Fixture, getJson, httpBase, sluiceFixture, waitFor } from "../helpers/index.ts";

// The position feed over a real nats-server: a Sluice's ledger partitions publish what they commit on
// sluice.view.position.<p>; a FeedView on its own connection, treating every ledger partition as remote (as a
// process hosting none of them would), must end equal to what LedgerReadView reads from LMDB, and a view
// started after the stock was set converges through the partitions' full pass within routing.feedFullMs.

const P = 4;
const feedFullMs = 500;
let fx: Fixture;
sluiceFixture("routing-feed", (f) => (fx = f), {
  partitionCount: P,
  // The feed is published in cluster mode (a lone node of a cluster owns every partition).
  overrides: {
    routing: { feedFullMs, loadRefreshMs: 10, feedFullSkusPerTickMax: 50 },
    cluster: { enabled: true, leaseMs: 1500, leaseRenewMs: 300, rebalanceMs: 300, snapshotMs: 2000 },
  },
});

const connections: NatsConnection[] = [];
afterAll(async () => {
  for (const nc of connections) await nc.close();
});

async function feedView(): Promise<FeedView> {
  const nc = await connect({ servers: fx.nats.url });
  connections.push(nc);
  const view = new FeedView({ partitionCount: P, bytesMax: 32 * 1024 * 1024 });
  view.subscribe(nc);
  await nc.flush();
  return view;
}

const lmdb = () => fx.sluice.routingView as LedgerReadView;

function ledgerSkus(): SkuState[] {
  const out: SkuState[] = [];
  for (let p = 0; p < P; p++)
    out.push(...(fx.sluice.store("ledger", p)?.rangeValues<SkuState>("skus", {}) ?? []));
  return out;
}

/** Where the feed view and LMDB differ: SKUs (unknown or other positions) and summed loads; null when equal. */
function difference(view: FeedView): string | null {
  const skus = ledgerSkus();
  const differ = skus.filter(
    (s) => !view.known(s.sku) || !Bun.deepEquals(view.stock(s.sku), lmdb().stock(s.sku)),
  );
  const remote = new RoutingPort(
    () => [],
    view,
    () => false,
    P,
    0,
  );
  const loads = JSON.stringify([...remote.snapshot()].sort());
  const expected = JSON.stringify([...lmdb().snapshot()].sort());
  if (differ.length === 0 && loads === expected && skus.length > 0) return null;
  return `${differ.length} of ${skus.length} SKUs differ; loads ${loads} vs ${expected}`;
}

const skuIds = Array.from({ length: 120 }, (_, i) => `FEED-${i}`);

describe("the position feed over a real nats-server", () => {
  let early: FeedView;

  test("after stock and orders settle, a remote view equals LMDB: every SKU's positions, every load", async () => {
    early = await feedView();
    for (const [i, sku] of skuIds.entries()) {
      await fx.producer.publishJson(subjects.stockPublic(sku), {
        type: "received",
        warehouse: "w1",
        qty: 5 + i,
      });
      if (i % 3 === 0)
        await fx.producer.publishJson(subjects.stockPublic(sku), {
          type: "received",
          warehouse: "w2",
          qty: 4,
        });
    }
    const orderIds = Array.from({ length: 40 }, (_, i) => `feed-o-${i}`);
    for (const [i, id] of orderIds.entries()) {
      const lines = [{ sku: skuIds[i * 3] as string, qty: 2 + (i % 4), price: 1 }];
      await fx.producer.publishJson(subjects.orderPublic("order", "web", id), { lines });
    }
    const base = httpBase(fx.sluice);
    await waitFor(async () => {
      for (const id of orderIds) {
        const o = await getJson(`${base}/v1/orders/web/${id}`);
        if (o.status !== 200 || o.body.status === "pending") return false;
      }
      return true;
    }, "every order answered by the ledger");
    await waitFor(() => difference(early) === null, `the feed view equals LMDB (${difference(early)})`);
    expect(lmdb().snapshot().size).toBeGreaterThan(0);
    expect(early.stats.malformed).toBe(0);
    expect(early.size.skus).toBe(skuIds.length);
  });

  test("a view started after the stock was set converges through the full pass within feedFullMs", async () => {
    const startedAtMs = Date.now();
    const late = await feedView();
    expect(late.size.skus).toBe(0);
    await waitFor(() => difference(late) === null, "the late view converges", 10 * feedFullMs);
    const tookMs = Date.now() - startedAtMs;
    // A pass every feedFullMs; 120 SKUs over 4 partitions is one step each (feedFullSkusPerTickMax 50 ≥ ~30),
    // a step per sync.tickMs (50 ms) while idle. Margin for two shared cores.
    expect(tookMs).toBeLessThan(feedFullMs + 1500);
  });

  test("garbage on the feed subject is counted and dropped; the views and Sluice carry on", async () => {
    const before = early.stats.malformed;
    fx.producer.nc.publish(positionFeedSubject(1), new Uint8Array([0xc1, 0xff, 0x00, 0x93]));
    fx.producer.nc.publish(positionFeedSubject(2), new TextEncoder().encode('{"v":1}'));
    fx.producer.nc.publish("sluice.view.position.99", new Uint8Array([0x80]));
    await fx.producer.nc.flush();
    await waitFor(() => early.stats.malformed >= before + 3, "the garbage counted");
    // A change after the garbage still arrives.
    await fx.producer.publishJson(subjects.stockPublic("FEED-0"), {
      type: "received",
      warehouse: "w3",
      qty: 1,
    });
    await waitFor(() => early.stock("FEED-0")?.w3?.onHand === 1, "the next change folded");
    expect(difference(early)).toBeNull();
    expect(fx.fatal).toEqual([]);
  });
});
