// Sluice's embedded server locks itself down (src/stream/embedded-auth.ts, docs/security.md "The embedded
// server"): one NKey user per role, seeds in the data directory, least-privilege permissions. Run on the real
// embedded server Sluice starts (worker threads included): nobody connects without a seed; Sluice works end
// to end as its own user and is never refused; a producer publishes public inputs only and a reader reads
// outputs only, over generated subjects of every internal family, and never the admin's replies; `sluice send`
// works as the producer.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, errors, type NatsConnection, nkeyAuthenticator, nkeys } from "@nats-io/transport-node";
import fc from "fast-check";
import { Logger } from "../../src/log/index.ts";
import { Sluice } from "../../src/sluice.ts";
import { embeddedSecurity, natsSecurityOptions } from "../../src/stream/connection.ts";
import {
  EmbeddedAuthError,
  type EmbeddedClient,
  type EmbeddedRole,
  embeddedRoles,
  ensureEmbeddedUsers,
} from "../../src/stream/embedded-auth.ts";
import { streamNames, subjects } from "../../src/stream/subjects.ts";
import { deliverErpBatchWithSink, tempDir, testConfig, waitFor } from "../helpers/index.ts";

const P = 4;
const dataDir = tempDir("embedded-auth");
const natsDir = join(dataDir, "nats");
const serverLog: string[] = [];
let sluice: Sluice;
const fatal: Error[] = [];
const clients: NatsConnection[] = [];
const repoRoot = join(import.meta.dir, "../..");

type Violation = InstanceType<typeof errors.PermissionViolationError>;

/** A client of one role as Sluice's embedded server describes it (seed, inbox prefix); violations collected. */
async function as(role: EmbeddedRole) {
  const client = sluice.embedded?.client(role) as EmbeddedClient;
  const nc = await connect({
    servers: sluice.embedded?.url,
    inboxPrefix: client.inboxPrefix,
    ...natsSecurityOptions(embeddedSecurity(client)),
  });
  clients.push(nc);
  const violations: Violation[] = [];
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === "error" && s.error instanceof errors.PermissionViolationError) violations.push(s.error);
    }
  })();
  const seen = (operation: string, subject: string) =>
    violations.some((v) => v.operation === operation && v.subject === subject);
  return {
    nc,
    violations,
    /** Core publishes of every subject; each is refused by the server (a violation naming it). */
    async publishRefused(list: readonly string[]) {
      for (const s of list) nc.publish(s, "{}");
      await nc.flush();
      await waitFor(() => list.every((s) => seen("publish", s)), `publish violations for ${list.join(", ")}`);
    },
    async subscribeRefused(list: readonly string[]) {
      for (const s of list) nc.subscribe(s);
      await nc.flush();
      await waitFor(() => list.every((s) => seen("subscription", s)), `subscription violations for ${list}`);
    },
  };
}

beforeAll(async () => {
  const log = new Logger("debug", {}, (line) => {
    if (line.includes('"component":"nats-server"')) serverLog.push(line);
  });
  const config = testConfig("", dataDir, {
    nats: { url: "", embeddedPort: 0, embeddedStoreBytesMax: 320 * 1024 * 1024 },
    node: { name: "embedded-auth", workerCount: 1 },
    streams: { partitionCount: P },
  });
  sluice = new Sluice(config, log, (error) => fatal.push(error));
  await sluice.start();
});

afterAll(async () => {
  for (const nc of clients) await nc.close().catch(() => undefined);
  await sluice?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

const publicKeyOf = (role: EmbeddedRole) =>
  nkeys
    .fromSeed(new TextEncoder().encode(readFileSync(join(natsDir, "auth", `${role}.nk`), "utf8").trim()))
    .getPublicKey();

describe("the embedded server is locked", () => {
  test("one seed per role, 0600 in a 0700 directory; the server config names public keys only", () => {
    expect(statSync(join(natsDir, "auth")).mode & 0o777).toBe(0o700);
    const conf = readFileSync(join(natsDir, "nats-server.conf"), "utf8");
    expect(statSync(join(natsDir, "nats-server.conf")).mode & 0o777).toBe(0o600);
    for (const role of embeddedRoles) {
      const file = join(natsDir, "auth", `${role}.nk`);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(readFileSync(file, "utf8")).toMatch(/^SU[A-Z2-7]{56}\n$/);
      expect(conf).toContain(`nkey: "${publicKeyOf(role)}"`);
    }
    expect(conf).not.toMatch(/SU[A-Z2-7]{56}/);
  });

  test("without a seed, or with a key the server does not list, nobody connects", async () => {
    const url = sluice.embedded?.url as string;
    const refused = async (options: Parameters<typeof connect>[0]) =>
      await connect({ servers: url, reconnect: false, timeout: 5000, ...options }).then(
        async (nc) => {
          await nc.close();
          return "connected";
        },
        (error: Error) => error.message,
      );
    expect(await refused({})).toMatch(/authorization violation/i);
    expect(await refused({ user: "sluice", pass: "sluice" })).toMatch(/authorization violation/i);
    const stranger = nkeys.createUser().getSeed();
    expect(await refused({ authenticator: nkeyAuthenticator(stranger) })).toMatch(/authorization violation/i);
  });

  test("Sluice works end to end as its own user: the producer's order is allocated, the reader reads its status", async () => {
    const producer = await as("producer");
    const js = jetstream(producer.nc, { timeout: 5000 });
    await js.publish(
      subjects.stockPublic("EA-1"),
      JSON.stringify({ type: "received", warehouse: "w1", qty: 5 }),
    );
    const ack = await js.publish(
      subjects.orderPublic("order", "shop", "ea-1"),
      JSON.stringify({ lines: [{ lineId: "1", sku: "EA-1", qty: 2, price: 10 }] }),
    );
    expect(ack.stream).toBe(streamNames.order);

    const reader = await as("reader");
    const jsm = await jetstreamManager(reader.nc);
    await jsm.consumers.add(streamNames.out, {
      durable_name: "ea-reader",
      filter_subject: "sluice.out.order.shop",
      ack_policy: AckPolicy.Explicit,
    });
    const consumer = await jetstream(reader.nc).consumers.get(streamNames.out, "ea-reader");
    const statuses: string[] = [];
    await waitFor(
      async () => {
        const m = await consumer.next({ expires: 1000 });
        if (m !== null) {
          for (const item of (m.json() as { items: Array<{ orderKey: string; status: string }> }).items)
            if (item.orderKey === "shop.ea-1") statuses.push(item.status);
          m.ack();
        }
        return statuses.includes("allocated");
      },
      "the order's status allocated, read by the reader",
      30_000,
    );
    expect(producer.violations).toEqual([]);
    expect(reader.violations).toEqual([]);
  });

  test("sluice send publishes as the producer (the seed in the data directory)", async () => {
    const run = Bun.spawnSync(
      [
        "bun",
        join(repoRoot, "src/cli.ts"),
        "send",
        subjects.stockPublic("EA-2"),
        '{"type":"received","warehouse":"w1","qty":3}',
      ],
      {
        env: { ...process.env, SLUICE_DATA_DIR: dataDir, SLUICE_NATS_EMBEDDED_PORT: "0" },
        stdout: "pipe",
        stderr: "pipe",
      },
    );
    expect(run.stderr.toString()).toBe("");
    expect(JSON.parse(run.stdout.toString())).toMatchObject({ stream: streamNames.ledger, duplicate: false });
  });

  test("the reference sink delivers as the reader, and the server never refuses it", async () => {
    const reader = sluice.embedded?.client("reader") as EmbeddedClient;
    const run = await deliverErpBatchWithSink(
      sluice.embedded?.url as string,
      { SLUICE_SINK_NATS_NKEY_SEED_FILE: reader.seedFile, SLUICE_SINK_NATS_INBOX_PREFIX: reader.inboxPrefix },
      30_000,
    );
    expect(run.deadLettered).toBe(0);
    expect(serverLog.filter((l) => l.includes("Violation") && l.includes(publicKeyOf("reader")))).toEqual([]);
  });

  test("a producer publishes public inputs only: generated subjects of every internal family are refused", async () => {
    const producer = await as("producer");
    const token = fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/);
    const partition = fc.integer({ min: 0, max: P - 1 });
    const internal = fc.oneof(
      fc.tuple(partition, token).map(([p, t]) => `sluice.answer.${p}.result.${t}`),
      fc.tuple(partition, token).map(([p, t]) => `sluice.ledger.${p}.cmd.${t}`),
      fc.tuple(partition, token, token).map(([p, a, b]) => `sluice.order.${p}.routed.${a}.${b}`),
      token.map((t) => `sluice.out.order.${t}`),
      token.map((t) => `sluice.out.stock.${t}`),
      token.map((t) => `sluice.out.fulfil.${t}`),
      token.map((t) => `sluice.dlq.${t}`),
      token.map((t) => `sluice.view.stock.${t}`),
      partition.map((p) => `sluice.log.ledger.${p}`),
      token.map((t) => `$KV.sluice_rules.${t}`),
      token.map((t) => `$KV.SLUICE_LEASES.${t}`),
      token.map((t) => `$O.SLUICE_SNAPSHOTS.${t}`),
      fc.constantFrom(...Object.values(streamNames)).map((s) => `$JS.API.STREAM.DELETE.${s}`),
      fc
        .tuple(fc.constantFrom(...Object.values(streamNames)), token)
        .map(([s, t]) => `$JS.API.CONSUMER.CREATE.${s}.${t}`),
      fc.constantFrom(...Object.values(streamNames)).map((s) => `$JS.API.STREAM.MSG.GET.${s}`),
    );
    const list = [
      ...new Set(
        fc.sample(internal, { numRuns: 60, seed: Number(process.env.SLUICE_MODEL_SEED ?? Date.now()) }),
      ),
    ];
    await producer.publishRefused(list);
    await producer.subscribeRefused(["sluice.out.>", "sluice.order.>", "_INBOX.>", "_SLUICE_INBOX.>"]);
  });

  test("a reader reads outputs only: no inputs, no other stream, no reading by sequence, no Sluice inbox", async () => {
    const reader = await as("reader");
    await reader.publishRefused([
      // Checked as the mapped subject (nats-server 2.9): the order's partition, hence the match below.
      "sluice.in.wms.w1.shipped",
      "sluice.in.import.x",
      "sluice.answer.0.result.x",
      `$JS.API.CONSUMER.CREATE.${streamNames.order}.x`,
      `$JS.API.STREAM.MSG.GET.${streamNames.out}`,
      `$JS.API.DIRECT.GET.${streamNames.out}`,
      `$JS.API.STREAM.PURGE.${streamNames.out}`,
      `$JS.API.STREAM.DELETE.${streamNames.out}`,
    ]);
    reader.nc.publish(subjects.orderPublic("order", "shop", "forged"), "{}");
    await waitFor(
      () => reader.violations.some((v) => v.operation === "publish" && v.subject.startsWith("sluice.order.")),
      "a publish violation for the reader's order (its mapped subject)",
    );
    await reader.subscribeRefused([
      "_SLUICE_INBOX.>",
      "_INBOX.>",
      "_INBOX_PRODUCER.>",
      "sluice.order.>",
      "sluice.answer.>",
    ]);
  });

  test("a reader never sees the admin's replies: its inboxes are its own, `_INBOX.>` is refused", async () => {
    expect(sluice.embedded?.client("reader")?.inboxPrefix).toBe("_INBOX_READER");
    expect(sluice.embedded?.client("admin")?.inboxPrefix).toBe("_INBOX");
    const reader = await as("reader");
    const seen: string[] = [];
    reader.nc.subscribe("_INBOX_READER.>", {
      callback: (_error, m) => {
        seen.push((m.json() as { type: string }).type);
      },
    });
    await reader.subscribeRefused(["_INBOX.>"]);
    // What `nats stream info` and `nats stream view` ask: the reply names the stream and its contents.
    const admin = await as("admin");
    const jsm = await jetstreamManager(admin.nc);
    expect((await jsm.streams.info(streamNames.order)).config.name).toBe(streamNames.order);
    expect((await jsm.streams.info(streamNames.out)).config.name).toBe(streamNames.out);
    // The reader's own request: its reply reaches the subscription above, so it is live. The server sent the
    // admin's replies (had they matched) to the reader's connection before this one, so they would be in `seen`.
    const own = await reader.nc.request("$JS.API.INFO", "", { timeout: 5000 });
    expect((own.json() as { type: string }).type).toBe("io.nats.jetstream.api.v1.account_info_response");
    await reader.nc.flush();
    expect(seen).toEqual(["io.nats.jetstream.api.v1.account_info_response"]);
    expect(reader.violations.map((v) => `${v.operation} ${v.subject}`)).toEqual(["subscription _INBOX.>"]);
    expect(admin.violations).toEqual([]);
  });

  test("the server never refused Sluice's own user", () => {
    expect(fatal).toEqual([]);
    const key = publicKeyOf("sluice");
    expect(serverLog.filter((l) => l.includes("Violation") && l.includes(key))).toEqual([]);
    // The log does show the others' violations: the check above reads the right lines.
    expect(serverLog.some((l) => l.includes("Violation") && l.includes(publicKeyOf("producer")))).toBe(true);
  });
});

describe("the seeds' files", () => {
  test("a seed others may read, or a file that is not a user seed, stops the start with the fix", () => {
    const dir = tempDir("embedded-seeds");
    try {
      const users = ensureEmbeddedUsers(dir);
      expect(users.map((u) => u.role)).toEqual([...embeddedRoles]);
      // Kept across starts.
      expect(ensureEmbeddedUsers(dir).map((u) => u.publicKey)).toEqual(users.map((u) => u.publicKey));
      chmodSync(join(dir, "auth", "producer.nk"), 0o644);
      expect(() => ensureEmbeddedUsers(dir)).toThrow(
        /producer\.nk may be read by others \(mode 644\).*chmod 600/,
      );
      chmodSync(join(dir, "auth", "producer.nk"), 0o600);
      writeFileSync(join(dir, "auth", "reader.nk"), "not a seed\n", { mode: 0o600 });
      expect(() => ensureEmbeddedUsers(dir)).toThrow(EmbeddedAuthError);
      const account = new TextDecoder().decode(nkeys.createAccount().getSeed());
      writeFileSync(join(dir, "auth", "reader.nk"), `${account}\n`, { mode: 0o600 });
      expect(() => ensureEmbeddedUsers(dir)).toThrow(/not a user's/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
