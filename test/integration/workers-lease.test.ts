import { afterAll, beforeAll, expect, test } from "bun:test";
import { subjects } from "../../src/stream/subjects.ts";
import { waitFor } from "../helpers/index.ts";
import { Lifecycle } from "../helpers/lifecycle.ts";

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
  // Another process publishes while this thread is stalled: it connects first, says so, then publishes one
  // second later, inside the stall, so the worker receives it after the lease ran out (however slowly the
  // process started on a loaded machine).
  const publisher = Bun.spawn(
    [
      "bun",
      "-e",
      `import { connect, headers } from "@nats-io/transport-node";
       import { jetstream } from "@nats-io/jetstream";
       const nc = await connect({ servers: process.env.NATS_URL });
       console.log("ready");
       await Bun.sleep(1000);
       const h = headers();
       h.set("Content-Type", "application/json");
       await jetstream(nc).publish(process.env.SUBJECT, process.env.BODY, { headers: h });
       await nc.close();`,
    ],
    {
      env: {
        PATH: process.env.PATH ?? "",
        NATS_URL: h.nats.url,
        SUBJECT: subjects.orderPublic("order", "shop", "LE-o1"),
        BODY: JSON.stringify({ lines: [{ sku: "LE-1", qty: 1, price: 1 }] }),
      },
      stdout: "pipe",
      stderr: "inherit",
    },
  );
  const reader = (publisher.stdout as ReadableStream<Uint8Array>).getReader();
  const first = await reader.read();
  expect(new TextDecoder().decode(first.value)).toContain("ready");
  Bun.sleepSync(3000); // the main thread stalls; the worker keeps running
  expect(await publisher.exited).toBe(0);
  await waitFor(() => h.fatal.length > 0, "the worker's fatal error");
  expect(h.fatal[0]?.message).toContain("data-dir lock");
  expect(await h.getOrder("shop", "LE-o1")).toBeNull();
}, 30_000);
