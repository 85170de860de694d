// Sluice, its producers and the reference sink against real nats-servers that insist on TLS with client
// certificates, on NKey users and on operator JWTs (creds files): what works, and that each misconfiguration
// stops the start with a message that names the setting and the fix (docs/security.md).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { jetstream } from "@nats-io/jetstream";
import {
  connect,
  credsAuthenticator,
  type NatsConnection,
  nkeyAuthenticator,
  nkeys,
} from "@nats-io/transport-node";
import { benchNatsSecurity, benchSecurityNames } from "../../bench/harness/options.ts";
import { ConfigError } from "../../src/config/index.ts";
import { parseSinkOptions, startSink } from "../../src/sink/index.ts";
import { sinkSecurity } from "../../src/sink/options.ts";
import { Sluice } from "../../src/sluice.ts";
import { NatsConnectError } from "../../src/stream/connection.ts";
import { streamNames, subjects } from "../../src/stream/subjects.ts";
import { getJson, httpBase, startSluice, tempDir, testConfig, testLog, waitFor } from "../helpers/index.ts";
import {
  makePki,
  operatorSetup,
  type Pki,
  SecureNats,
  secretFile,
  tlsBlock,
} from "../helpers/nats-secure.ts";

const dir = tempDir("nats-tls");
const pki: Pki = makePki(dir);
/** Trusted by nobody here: its client certificate must be refused. */
const stranger: Pki = makePki(dir, "stranger");
const seedOf = (kp: nkeys.KeyPair) => new TextDecoder().decode(kp.getSeed());
const userKey = nkeys.createUser();
const operator = operatorSetup(4);

const tlsNats = new SecureNats({ config: tlsBlock(pki, true) });
const nkeyNats = new SecureNats({
  config: `authorization { users: [ { nkey: ${userKey.getPublicKey()} } ] }`,
});
const jwtNats = new SecureNats({ config: operator.config, mappings: false });

beforeAll(async () => {
  await Promise.all([tlsNats.start(), nkeyNats.start(), jwtNats.start()]);
});

afterAll(async () => {
  await Promise.all([tlsNats.dispose(), nkeyNats.dispose(), jwtNats.dispose()]);
  rmSync(dir, { recursive: true, force: true });
});

const clientTls = { tlsCaFile: pki.caFile, tlsCertFile: pki.clientCertFile, tlsKeyFile: pki.clientKeyFile };

/** Starts Sluice and expects the start to fail; stops what it started (lock, embedded pieces) either way. */
async function startFails(nats: Record<string, unknown>, url: string): Promise<Error> {
  const dataDir = tempDir("nats-tls-fail");
  const fatal: Error[] = [];
  const config = testConfig(url, dataDir, { nats: { connectTimeoutMs: 1500, ...nats } });
  const sluice = new Sluice(config, testLog, (e) => fatal.push(e));
  const error = await sluice.start().then(
    () => null,
    (e: unknown) => e as Error,
  );
  await sluice.stop();
  rmSync(dataDir, { recursive: true, force: true });
  if (error === null) throw new Error("Sluice started, but it should have refused");
  return error;
}

/** Stock received, then an order for it: the order is allocated (end to end through both stages). */
async function stockAndOrder(
  sluice: Sluice,
  nc: NatsConnection,
  sku: string,
  orderId: string,
): Promise<void> {
  const js = jetstream(nc, { timeout: 2000 });
  const stockAck = await js.publish(
    subjects.stockPublic(sku),
    JSON.stringify({ type: "received", warehouse: "w1", qty: 5 }),
  );
  expect(stockAck.stream).toBe(streamNames.ledger);
  await waitFor(async () => (await getJson(`${httpBase(sluice)}/v1/stock/${sku}`)).status === 200, `${sku}`);
  const orderAck = await js.publish(
    subjects.orderPublic("order", "shop", orderId),
    JSON.stringify({ lines: [{ sku, qty: 2, price: 9.9 }] }),
  );
  // The server's mapping put it straight on its partition's stream.
  expect(orderAck.stream).toBe(streamNames.order);
  const order = await waitFor(async () => {
    const r = await getJson(`${httpBase(sluice)}/v1/orders/shop/${orderId}`);
    return r.status === 200 && r.body.status !== "pending" ? r.body : null;
  }, `order ${orderId} settled`);
  expect(order.status).toBe("allocated");
  const position = (await getJson(`${httpBase(sluice)}/v1/stock/${sku}`)).body.positions.w1;
  expect(position).toMatchObject({ onHand: 5, reserved: 2 });
}

describe("TLS with client certificates (tls { verify: true })", () => {
  test("Sluice with the CA and a client certificate starts and takes stock and an order end to end; so does the sink", async () => {
    const dataDir = tempDir("nats-tls-ok");
    const { sluice, fatal } = await startSluice(testConfig(tlsNats.url, dataDir, { nats: clientTls }));
    const producer = await connect({
      servers: tlsNats.url,
      tls: { caFile: pki.caFile, certFile: pki.clientCertFile, keyFile: pki.clientKeyFile },
    });
    try {
      expect(producer.info?.tls_required).toBe(true);
      await stockAndOrder(sluice, producer, "TLS-1", "tls-o1");
      const parsed = parseSinkOptions(
        ["--source", "erp", "--url", "http://127.0.0.1:9/x", "--nats", tlsNats.url]
          .concat(["--nats-tls-ca", pki.caFile, "--nats-tls-cert", pki.clientCertFile])
          .concat(["--nats-tls-key", pki.clientKeyFile, "--log-level", "error"]),
        {},
      );
      if (!parsed.ok) throw new Error(parsed.detail);
      const sink = await startSink(parsed.value);
      const consumer = await jetstream(producer).consumers.get(streamNames.out, "sink-erp");
      expect((await consumer.info()).config.filter_subject).toBe("sluice.out.erp");
      await sink.stop();
      expect(fatal).toEqual([]);
    } finally {
      await producer.close();
      await sluice.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test("without nats.tlsCaFile the server's certificate is not trusted: the start stops and says to set it", async () => {
    const error = await startFails({}, tlsNats.url);
    expect(error).toBeInstanceOf(NatsConnectError);
    expect(error.message).toMatch(
      /^TLS with NATS at nats:\/\/127\.0\.0\.1:\d+ failed: unable to verify the first certificate\. The server's certificate must be signed by the CA in nats\.tlsCaFile .*nats\.tlsCaFile is not set/,
    );
  });

  test("with the CA but no client certificate the server closes the handshake: the error names the client certificate", async () => {
    const error = await startFails({ tlsCaFile: pki.caFile }, tlsNats.url);
    expect(error).toBeInstanceOf(NatsConnectError);
    expect(error.message).toMatch(/^no answer from NATS at nats:\/\/127\.0\.0\.1:\d+ within 1500 ms/);
    expect(error.message).toContain("nats.tlsCertFile is not set");
    await waitFor(() => /client didn't provide a certificate/.test(tlsNats.log()), "the server's log line");
  });

  test("a client certificate signed by another CA is refused", async () => {
    const error = await startFails(
      { tlsCaFile: pki.caFile, tlsCertFile: stranger.clientCertFile, tlsKeyFile: stranger.clientKeyFile },
      tlsNats.url,
    );
    expect(error).toBeInstanceOf(NatsConnectError);
    expect(error.message).toContain(`nats.tlsCertFile is ${stranger.clientCertFile}`);
    await waitFor(
      () => /certificate signed by unknown authority/.test(tlsNats.log()),
      "the server's log line",
    );
  });

  test("a server without TLS is refused when TLS is configured: no fall-back to clear text", async () => {
    const error = await startFails({ tlsCaFile: pki.caFile }, nkeyNats.url);
    expect(error.message).toMatch(
      /^NATS at nats:\/\/127\.0\.0\.1:\d+ does not offer TLS but nats\.tlsCaFile is set, so the connection was not made in clear text/,
    );
  });

  test("TLS files are checked before connecting: missing, unreadable kind, certificate without key", async () => {
    const missing = await startFails({ ...clientTls, tlsCaFile: join(dir, "nope.pem") }, tlsNats.url);
    expect(missing).toBeInstanceOf(ConfigError);
    expect(missing.message).toBe(`nats.tlsCaFile = ${join(dir, "nope.pem")} does not exist`);
    const notPem = await startFails({ ...clientTls, tlsKeyFile: pki.caFile }, tlsNats.url);
    expect(notPem.message).toBe(
      `nats.tlsKeyFile = ${pki.caFile} holds no PEM private key (a "-----BEGIN PRIVATE KEY-----" block): point it at the PEM file`,
    );
    const directory = await startFails({ tlsCaFile: dir }, tlsNats.url);
    expect(directory.message).toBe(`nats.tlsCaFile = ${dir} is a directory, not a file`);
    expect(() => testConfig(tlsNats.url, dir, { nats: { tlsCertFile: pki.clientCertFile } })).toThrow(
      "nats.tlsCertFile is set without nats.tlsKeyFile: a client certificate needs its private key; set both or neither",
    );
  });
});

describe("NKey users", () => {
  test("Sluice with nats.nkeySeedFile starts and takes stock and an order; a producer with the same key too", async () => {
    const seedFile = secretFile(dir, "sluice.nk", `${seedOf(userKey)}\n`);
    const dataDir = tempDir("nats-nkey-ok");
    const { sluice, fatal } = await startSluice(
      testConfig(nkeyNats.url, dataDir, { nats: { nkeySeedFile: seedFile } }),
    );
    const producer = await connect({
      servers: nkeyNats.url,
      authenticator: nkeyAuthenticator(userKey.getSeed()),
    });
    try {
      await stockAndOrder(sluice, producer, "NK-1", "nk-o1");
      expect(fatal).toEqual([]);
    } finally {
      await producer.close();
      await sluice.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test("a seed the server does not know is refused with the setting named, the seed never shown", async () => {
    const other = seedOf(nkeys.createUser());
    const seedFile = secretFile(dir, "wrong.nk", other);
    const error = await startFails({ nkeySeedFile: seedFile }, nkeyNats.url);
    expect(error).toBeInstanceOf(NatsConnectError);
    expect(error.message).toMatch(
      /^NATS at nats:\/\/127\.0\.0\.1:\d+ refused the connection \(.*Authorization Violation.*\) with nats\.nkeySeedFile \(/,
    );
    expect(error.message).not.toContain(other);
  });

  test("no credentials at all against an NKey server: refused, and the error says none were given", async () => {
    const error = await startFails({}, nkeyNats.url);
    expect(error.message).toMatch(/refused the connection .* with no credentials/);
  });

  test("a file that is not an NKey user seed, and two ways to authenticate at once, stop the start", async () => {
    const account = secretFile(dir, "account.nk", seedOf(nkeys.createAccount()));
    const error = await startFails({ nkeySeedFile: account }, nkeyNats.url);
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toBe(
      `nats.nkeySeedFile = ${account}: the file is not an NKey user seed: an NKey user seed is one line of 58 characters starting with SU (as \`nk -gen user\` or nkeys.createUser() make it)`,
    );
    const seed = seedOf(userKey);
    // A middle character: the last one of a base32 seed carries padding bits, so changing it may change nothing.
    const at = 20;
    const flipped = seed[at] === "A" ? "B" : "A";
    const broken = secretFile(dir, "broken.nk", `${seed.slice(0, at)}${flipped}${seed.slice(at + 1)}`);
    expect((await startFails({ nkeySeedFile: broken }, nkeyNats.url)).message).toMatch(
      /is not a valid NKey seed \(.*\)/,
    );
    expect(() =>
      testConfig(nkeyNats.url, dir, { nats: { nkeySeedFile: account, token: "t0k3n", credsFile: account } }),
    ).toThrow("nats.token and nats.nkeySeedFile and nats.credsFile are all set: set one way to authenticate");
  });

  test("the embedded server has no TLS and users of its own: the security keys need nats.url", () => {
    expect(() => testConfig("", dir, { nats: { tlsCaFile: pki.caFile } })).toThrow(
      "nats.tlsCaFile set but nats.url is empty: the embedded server has no TLS and its own NKey users",
    );
    expect(() => testConfig("", dir, { nats: { token: "t0ken" } })).toThrow(
      /^nats\.token set but nats\.url is empty/,
    );
    expect(() => testConfig("", dir, { nats: { user: "u", password: "p" } })).toThrow(
      /^nats\.user, nats\.password set but nats\.url is empty/,
    );
  });
});

describe("operator JWTs (creds files)", () => {
  test("Sluice with nats.credsFile starts on an operator-mode server and takes stock and an order", async () => {
    const credsFile = secretFile(dir, "sluice.creds", operator.userCreds);
    const dataDir = tempDir("nats-creds-ok");
    const { sluice, fatal } = await startSluice(testConfig(jwtNats.url, dataDir, { nats: { credsFile } }));
    const producer = await connect({
      servers: jwtNats.url,
      authenticator: credsAuthenticator(new TextEncoder().encode(operator.userCreds)),
    });
    try {
      await stockAndOrder(sluice, producer, "JWT-1", "jwt-o1");
      expect(fatal).toEqual([]);
    } finally {
      await producer.close();
      await sluice.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test("a user of an account the server does not trust is refused", async () => {
    const credsFile = secretFile(dir, "stranger.creds", operator.strangerCreds);
    const error = await startFails({ credsFile }, jwtNats.url);
    expect(error).toBeInstanceOf(NatsConnectError);
    expect(error.message).toMatch(
      /refused the connection \(.*Authorization Violation.*\) with nats\.credsFile/,
    );
  });

  test("a malformed creds file, or one whose seed is not its user's, stops the start with the fix", async () => {
    const garbage = secretFile(dir, "garbage.creds", "not a creds file\n");
    expect((await startFails({ credsFile: garbage }, jwtNats.url)).message).toBe(
      `nats.credsFile = ${garbage} is not a NATS creds file (as \`nsc generate creds\` writes it): a -----BEGIN NATS USER JWT----- block, then a -----BEGIN USER NKEY SEED----- block`,
    );
    const [jwtBlock] = operator.userCreds.split("-----BEGIN USER NKEY SEED-----");
    const swapped = `${jwtBlock}-----BEGIN USER NKEY SEED-----\n${seedOf(nkeys.createUser())}\n------END USER NKEY SEED------\n`;
    const mismatch = secretFile(dir, "mismatch.creds", swapped);
    expect((await startFails({ credsFile: mismatch }, jwtNats.url)).message).toMatch(
      /^nats\.credsFile = .*: the seed does not belong to the JWT's user \(U[A-Z2-7]+\); generate the creds file again$/,
    );
    const unreadable = join(dir, "unreadable.creds");
    writeFileSync(unreadable, operator.userCreds, { mode: 0o000 });
    if (process.getuid?.() !== 0) {
      expect((await startFails({ credsFile: unreadable }, jwtNats.url)).message).toMatch(
        /is not readable by this process/,
      );
    }
  });
});

describe("the same settings for the reference sink and the bench", () => {
  const base = ["--source", "erp", "--url", "http://127.0.0.1:9/x", "--nats", "nats://127.0.0.1:1"];

  test("the sink takes them as flags or SLUICE_SINK_* variables and checks how they relate before connecting", () => {
    const flags = parseSinkOptions([...base, "--nats-tls-ca", pki.caFile, "--nats-creds", "/x.creds"], {
      SLUICE_SINK_NATS_TLS_CERT_FILE: pki.clientCertFile,
      SLUICE_SINK_NATS_TLS_KEY_FILE: pki.clientKeyFile,
    });
    if (!flags.ok) throw new Error(flags.detail);
    expect(sinkSecurity(flags.value)).toMatchObject({
      tlsCaFile: pki.caFile,
      tlsCertFile: pki.clientCertFile,
      tlsKeyFile: pki.clientKeyFile,
      credsFile: "/x.creds",
    });
    expect(parseSinkOptions([...base, "--nats-tls-cert", pki.clientCertFile], {})).toEqual({
      ok: false,
      detail:
        "--nats-tls-cert is set without --nats-tls-key: a client certificate needs its private key; set both or neither",
    });
    expect(
      parseSinkOptions([...base, "--nats-nkey-seed", "/a.nk"], { SLUICE_SINK_NATS_TOKEN: "t" }),
    ).toMatchObject({
      ok: false,
      detail: expect.stringContaining("SLUICE_SINK_NATS_TOKEN and --nats-nkey-seed are both set"),
    });
  });

  test("the sink names its flag when a file is missing", async () => {
    const parsed = parseSinkOptions([...base, "--nats-nkey-seed", join(dir, "missing.nk")], {});
    if (!parsed.ok) throw new Error(parsed.detail);
    await expect(startSink(parsed.value)).rejects.toThrow(
      `--nats-nkey-seed = ${join(dir, "missing.nk")} does not exist`,
    );
  });

  test("the bench's clients read Sluice's SLUICE_NATS_* variables", () => {
    expect(
      benchNatsSecurity({
        SLUICE_NATS_TLS_CA_FILE: "/ca.pem",
        SLUICE_NATS_TLS_CERT_FILE: "/c.pem",
        SLUICE_NATS_TLS_KEY_FILE: "/c.key",
        SLUICE_NATS_NKEY_SEED_FILE: "/s.nk",
        SLUICE_NATS_CREDS_FILE: "/u.creds",
        SLUICE_NATS_TOKEN: "t",
        SLUICE_NATS_USER: "u",
        SLUICE_NATS_PASSWORD: "p",
      }),
    ).toEqual({
      tlsCaFile: "/ca.pem",
      tlsCertFile: "/c.pem",
      tlsKeyFile: "/c.key",
      nkeySeedFile: "/s.nk",
      credsFile: "/u.creds",
      token: "t",
      user: "u",
      password: "p",
    });
    expect(benchSecurityNames.tlsCaFile).toBe("SLUICE_NATS_TLS_CA_FILE");
  });
});
