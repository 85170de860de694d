import { afterAll, beforeAll, expect, test } from "bun:test";
import { subjects } from "../../src/stream/subjects.ts";
import { waitFor } from "../helpers/index.ts";
import { Lifecycle } from "../helpers/lifecycle.ts";
import { runCli } from "../helpers/process.ts";

// Fencing with workers: the main thread holds the data-dir lock and hands the workers a lease (a time until
// which they may commit), renewed every store.lockRefreshMs. When the main thread stalls, the lease runs out
// and a worker refuses to commit, as a partition on the stalled main thread could not have committed either.

let h: Lifecycle;

beforeAll(async () => {
  h = await Lifecycle.start("workers-lease", [{ id: "shop" }], {
    node: { workerCount: 1 },
    // A lease of lockStaleMs − 2 × lockRefreshMs = 100 ms.
    store: { lockRefreshMs: 100, lockStaleMs: 300 },
  });
});
afterAll(async () => {
  await h?.dispose();
});

test("a worker does not commit once the main thread has stalled past its lease", async () => {
  await h.receive("LE-1", "w1", 10);
  await h.waitPosition("LE-1", "w1", { onHand: 10 });
  // Another process publishes while this thread is stalled: the worker receives it after the lease ran out.
  const sending = runCli(
    [
      "send",
      subjects.orderPublic("order", "shop", "LE-o1"),
      JSON.stringify({ lines: [{ sku: "LE-1", qty: 1, price: 1 }] }),
    ],
    { SLUICE_NATS_URL: h.nats.url },
  );
  // The main thread stalls; the worker keeps running. Long enough for the other process to start and publish
  // on a loaded machine (a whole suite on two cores): its message must land inside the stall.
  Bun.sleepSync(6000);
  expect((await sending).code).toBe(0);
  await waitFor(() => h.fatal.length > 0, "the worker's fatal error");
  expect(h.fatal[0]?.message).toContain("data-dir lock");
  expect(await h.getOrder("shop", "LE-o1")).toBeNull();
}, 30_000);
