// The least-privilege permissions of docs/security.md, read from that page and run on a real nats-server: Sluice
// with its own user (cluster mode: leases, snapshots, changelog too) takes orders end to end and is never refused;
// the reference sink delivers with its user; a channel and a warehouse publish their own inputs and are refused
// everything else. Also pins down where nats-server 2.9 checks publish permissions: on the mapped subject only.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, errors, type NatsConnection } from "@nats-io/transport-node";
import type { Sluice } from "../../src/sluice.ts";
import { orderKey, orderPartition, skuPartition, streamNames, subjects } from "../../src/stream/subjects.ts";
import {
  deliverErpBatchWithSink,
  getJson,
  httpBase,
  startSluice,
  tempDir,
  testConfig,
  waitFor,
} from "../helpers/index.ts";
import { SecureNats } from "../helpers/nats-secure.ts";

const P = 4;
const docsBlock = (() => {
  const page = readFileSync(join(import.meta.dir, "../../docs/security.md"), "utf8");
  const m = /```conf\n(# Least-privilege users[\s\S]*?)```/.exec(page);
  if (m === null) throw new Error("docs/security.md lost its permissions block");
  return m[1] as string;
})();

const password = (role: string) => `${role}-${crypto.randomUUID()}`;
const passwords = {
  SLUICE_PASSWORD: password("sluice"),
  SHOP_PASSWORD: password("shop"),
  W1_PASSWORD: password("w1"),
  SINK_ERP_PASSWORD: password("sink"),
};
const probePassword = password("probe");
// Two probes that are not in the docs, to show which subject the server checks: one allowed only the public
// order subject of shop, one only its mapped (partitioned) form.
const probe = (user: string, subject: string) =>
  `{ user: ${user}, password: "${probePassword}", permissions: { publish: ["${subject}"], subscribe: ["_INBOX.${user}.>"] } }`;
const serverConfig = [
  ...Object.entries(passwords).map(([name, value]) => `${name}: "${value}"`),
  docsBlock.replace(
    "users: [",
    `users: [\n    ${probe("public", "sluice.in.order.shop.*")}\n    ${probe("mapped", "sluice.order.*.order.shop.*")}`,
  ),
].join("\n");

/** Where the server's mapping puts a public order or stock subject (src/stream/subjects.ts). */
const mappedOrder = (kind: "order" | "cancel" | "return", channel: string, id: string) =>
  subjects.orderPartitioned(orderPartition(orderKey(channel, id), P), kind, channel, id);
const mappedStock = (sku: string) => subjects.stockPartitioned(skuPartition(sku, P), sku);

const nats = new SecureNats({ config: serverConfig, partitionCount: P });
const dataDir = tempDir("nats-permissions");
let sluice: Sluice;
let fatal: Error[];
let admin: NatsConnection;
const clients: NatsConnection[] = [];

/** A client of one role, its inbox under _INBOX.<user> as docs/security.md asks; violations collected. */
async function as(user: string, pass: string) {
  const nc = await connect({
    servers: nats.url,
    user,
    pass,
    inboxPrefix: `_INBOX.${user}`,
    reconnectTimeWait: 50,
  });
  clients.push(nc);
  const violations: InstanceType<typeof errors.PermissionViolationError>[] = [];
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === "error" && s.error instanceof errors.PermissionViolationError) violations.push(s.error);
    }
  })();
  // Allowed publishes wait for their ack generously (a loaded 2-core box); refused ones are not answered.
  const js = jetstream(nc, { timeout: 5000 });
  const jsRefused = jetstream(nc, { timeout: 1000 });
  return {
    nc,
    js,
    violations,
    /**
     * The publish is not acked, and the server said why: a permissions violation on `checked`, the subject the
     * server checks (the mapped one where a mapping applies).
     */
    async refused(subject: string, checked = subject): Promise<void> {
      const outcome = await jsRefused.publish(subject, "{}").then(
        (ack) => `acked by ${ack.stream}`,
        (error: Error) => error.name,
      );
      expect(`${subject}: ${outcome}`).not.toContain("acked");
      await waitFor(
        () => violations.some((v) => v.operation === "publish" && v.subject === checked),
        `a publish violation for ${checked}`,
        5000,
      );
    },
    async subscribeRefused(subject: string): Promise<void> {
      nc.subscribe(subject);
      await waitFor(
        () => violations.some((v) => v.operation === "subscription" && v.subject === subject),
        `a subscription violation for ${subject}`,
        5000,
      );
    },
  };
}

beforeAll(async () => {
  await nats.start();
  ({ sluice, fatal } = await startSluice(
    testConfig(nats.url, dataDir, {
      nats: { user: "sluice", password: passwords.SLUICE_PASSWORD },
      // Cluster mode uses everything the one-process mode does, plus leases, snapshots and the changelog.
      cluster: { enabled: true, snapshotMs: 1000 },
      erp: { windowMs: 100 },
    }),
  ));
  admin = await connect({ servers: nats.url, user: "sluice", pass: passwords.SLUICE_PASSWORD });
});

afterAll(async () => {
  if (process.env.PERM_DEBUG)
    console.log(
      nats
        .log()
        .split("\n")
        .filter((l) => /ERR|Viol|WRN/.test(l))
        .join("\n"),
    );
  for (const nc of clients) await nc.close();
  await admin?.close();
  await sluice?.stop();
  await nats.dispose();
  rmSync(dataDir, { recursive: true, force: true });
});

const orderSettled = (id: string) =>
  waitFor(async () => {
    const r = await getJson(`${httpBase(sluice)}/v1/orders/shop/${id}`);
    return r.status === 200 && r.body.status !== "pending" ? r.body : null;
  }, `order ${id} settled`);

describe("the roles of docs/security.md on nats-server 2.9", () => {
  test("Sluice with its own user: stock from the warehouse and an order from the channel, end to end", async () => {
    const w1 = await as("w1", passwords.W1_PASSWORD);
    const shop = await as("shop", passwords.SHOP_PASSWORD);
    const wmsAck = await w1.js.publish(
      subjects.wmsPublic("w1", "received"),
      JSON.stringify({ items: [{ sku: "PERM-1", qty: 5 }] }),
    );
    expect(wmsAck.stream).toBe(streamNames.unrouted);
    await waitFor(
      async () => (await getJson(`${httpBase(sluice)}/v1/stock/PERM-1`)).status === 200,
      "PERM-1",
    );
    const ack = await shop.js.publish(
      subjects.orderPublic("order", "shop", "perm-o1"),
      JSON.stringify({ lines: [{ sku: "PERM-1", qty: 2, price: 9.9 }] }),
    );
    expect(ack.stream).toBe(streamNames.order);
    expect((await orderSettled("perm-o1")).status).toBe("allocated");
    const cancel = await shop.js.publish(
      subjects.orderPublic("cancel", "shop", "perm-o1"),
      JSON.stringify({}),
    );
    expect(cancel.stream).toBe(streamNames.answer);
    // Snapshots every second (cluster.snapshotMs): the Object Store's subjects are exercised too.
    const jsm = await jetstreamManager(admin);
    await waitFor(
      async () => (await jsm.streams.info("OBJ_SLUICE_SNAPSHOTS")).state.messages > 0,
      "a partition snapshot",
    );
    expect(shop.violations).toEqual([]);
    expect(w1.violations).toEqual([]);
    expect(fatal).toEqual([]);
  });

  test("the reference sink delivers ERP batches with its user", async () => {
    const run = await deliverErpBatchWithSink(nats.url, {
      SLUICE_SINK_NATS_USER: "sink-erp",
      SLUICE_SINK_NATS_PASSWORD: passwords.SINK_ERP_PASSWORD,
    });
    expect(run.deadLettered).toBe(0);
    expect(nats.log()).not.toMatch(/Violation - User "sink-erp"/);
  });

  test("a channel publishes its own orders, cancels and returns, and nothing else", async () => {
    const shop = await as("shop", passwords.SHOP_PASSWORD);
    const ack = await shop.js.publish(
      subjects.orderPublic("return", "shop", "perm-o9"),
      JSON.stringify({ returnId: "r1", lines: [{ lineId: "1", qty: 1 }] }),
    );
    expect(ack.stream).toBe(streamNames.answer);
    for (const subject of [
      "sluice.answer.0.result.1",
      "sluice.ledger.0.cmd.1",
      "sluice.order.0.routed.order.shop.x",
      "sluice.out.order.shop",
      "sluice.in.wms.w1.shipped",
      // No mapping has this shape (one token too many): checked as published, and refused.
      "sluice.in.order.shop.x.y",
      "$KV.sluice_rules.network",
      "$JS.API.STREAM.PURGE.SLUICE_ORDER",
    ]) {
      await shop.refused(subject);
    }
    // Mapped subjects: the server names (and checks) the partitioned form.
    await shop.refused("sluice.in.order.other.x", mappedOrder("order", "other", "x"));
    await shop.refused("sluice.in.cancel.other.x", mappedOrder("cancel", "other", "x"));
    await shop.refused("sluice.in.stock.X", mappedStock("X"));
    // Its inbox only: Sluice's pulled messages (every channel's orders) arrive on Sluice's inboxes.
    await shop.subscribeRefused("_INBOX.>");
    await shop.subscribeRefused("sluice.out.order.shop");
  });

  test("a warehouse publishes its own events, and nothing else", async () => {
    const w1 = await as("w1", passwords.W1_PASSWORD);
    for (const subject of [
      "sluice.in.wms.w2.received",
      "sluice.answer.0.wms.w1.shipped",
      "sluice.ledger.0.items.w1",
    ]) {
      await w1.refused(subject);
    }
    await w1.refused("sluice.in.stock.X", mappedStock("X"));
    await w1.refused("sluice.in.order.shop.w1-order", mappedOrder("order", "shop", "w1-order"));
  });

  test("the sink's user reads its own consumer only: no other filter, stream, message or subscription", async () => {
    const sink = await as("sink-erp", passwords.SINK_ERP_PASSWORD);
    const jsm = await jetstreamManager(sink.nc, { timeout: 1000 });
    const other = await jsm.consumers
      .add(streamNames.out, { durable_name: "sink-erp", filter_subject: "sluice.out.order.shop" })
      .then(
        () => "created",
        (e: Error) => e.name,
      );
    expect(other).not.toBe("created");
    const stream = await jsm.consumers
      .add(streamNames.order, { durable_name: "sink-erp", filter_subject: "sluice.order.>" })
      .then(
        () => "created",
        (e: Error) => e.name,
      );
    expect(stream).not.toBe("created");
    const message = await jsm.streams.getMessage(streamNames.out, { seq: 1 }).then(
      () => "read",
      (e: Error) => e.name,
    );
    expect(message).not.toBe("read");
    await waitFor(
      () =>
        ["sluice.out.order.shop", "sluice.order.>"].every((f) =>
          sink.violations.some(
            (v) => v.subject.startsWith("$JS.API.CONSUMER.CREATE.") && v.subject.endsWith(f),
          ),
        ) && sink.violations.some((v) => v.subject.includes("GET.SLUICE_OUT")),
      "violations for both consumers and the message read",
    );
    await sink.subscribeRefused("sluice.out.>");
  });

  test("nats-server 2.9 checks publish permissions on the mapped subject only, never on the published one", async () => {
    const orderBody = JSON.stringify({ lines: [{ sku: "PERM-1", qty: 1, price: 1 }] });
    // Allowed the public subject only: refused, and the violation names the mapped subject.
    const publicOnly = await as("public", probePassword);
    await publicOnly.refused(
      subjects.orderPublic("order", "shop", "map-1"),
      mappedOrder("order", "shop", "map-1"),
    );
    // Allowed the mapped form only: the public subject is accepted, mapped and stored partitioned.
    const mappedOnly = await as("mapped", probePassword);
    const ack = await mappedOnly.js.publish(subjects.orderPublic("order", "shop", "map-2"), orderBody);
    expect(ack.stream).toBe(streamNames.order);
    const stored = await (await jetstreamManager(admin)).streams.getMessage(streamNames.order, {
      seq: ack.seq,
    });
    expect(stored?.subject).toBe(mappedOrder("order", "shop", "map-2"));
    // The documented channel user lists both forms: its orders are accepted either way.
    const shop = await as("shop", passwords.SHOP_PASSWORD);
    expect((await shop.js.publish(subjects.orderPublic("order", "shop", "map-3"), orderBody)).stream).toBe(
      streamNames.order,
    );
    expect(mappedOnly.violations).toEqual([]);
  });

  test("Sluice's user was never refused while it ran through all of the above: the server logged no violation for it", () => {
    expect(nats.log()).not.toMatch(/Violation.*User "sluice"/);
    expect(fatal).toEqual([]);
  });
});
