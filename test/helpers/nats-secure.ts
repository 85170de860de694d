// A nats-server with TLS, users, NKeys or operator JWTs, made for one test file: certificates come from
// `openssl` in a temporary directory (EC P-256, one day of validity, SAN 127.0.0.1 and localhost), the server
// gets a random port (`-1` plus a ports file), a temporary capped JetStream store and Sluice's subject
// mappings, and is SIGKILLed and removed afterwards. docs/security.md shows the same blocks for production.
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { nkeys } from "@nats-io/transport-node";
import type { Subprocess } from "bun";
import { subjectMappings } from "../../src/stream/subjects.ts";
import { tempDir } from "./index.ts";

const MiB = 1024 * 1024;
/** A nats-server opens its port in well under a second; 15 s leaves room on a loaded 2-core box. */
const startTimeoutMs = 15_000;

/** A CA and, signed by it, a server certificate (SAN 127.0.0.1, localhost) and a client certificate. */
export type Pki = {
  caFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  clientCertFile: string;
  clientKeyFile: string;
};

function openssl(dir: string, args: string[]): void {
  const r = Bun.spawnSync(["openssl", ...args], { cwd: dir, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`openssl ${args.join(" ")} failed:\n${r.stderr.toString()}`);
}

/** Makes a fresh PKI under `dir/name` (two calls give two CAs that do not trust each other). */
export function makePki(dir: string, name = "pki"): Pki {
  const d = join(dir, name);
  mkdirSync(d, { recursive: true });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  // Our own config: the system's openssl.cnf may add extensions of its own.
  writeFileSync(
    join(d, "ca.cnf"),
    [
      "[req]",
      "distinguished_name = dn",
      "prompt = no",
      "[dn]",
      `CN = sluice-test-ca-${name}`,
      "[ca]",
      "basicConstraints = critical,CA:TRUE",
      "keyUsage = critical,keyCertSign,cRLSign",
      "subjectKeyIdentifier = hash",
      "",
    ].join("\n"),
  );
  const days = ["-days", "1"]; // short-lived: a test's certificates are worthless a day later
  const caOut = ["-keyout", "ca.key", "-out", "ca.pem"];
  openssl(d, ["req", "-x509", ...ec, ...days, "-config", "ca.cnf", "-extensions", "ca", ...caOut]);
  const leaf = (who: "server" | "client", usage: string, san: string) => {
    writeFileSync(
      join(d, `${who}.ext`),
      [
        "basicConstraints = CA:FALSE",
        "keyUsage = critical,digitalSignature",
        `extendedKeyUsage = ${usage}`,
        ...(san === "" ? [] : [`subjectAltName = ${san}`]),
        "",
      ].join("\n"),
    );
    const subject = ["-subj", `/CN=sluice-test-${who}`];
    openssl(d, ["req", ...ec, ...subject, "-keyout", `${who}.key`, "-out", `${who}.csr`]);
    const signer = ["-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", who === "server" ? "1" : "2"];
    const out = ["-extfile", `${who}.ext`, "-out", `${who}.pem`];
    openssl(d, ["x509", "-req", "-in", `${who}.csr`, ...signer, ...days, ...out]);
  };
  leaf("server", "serverAuth", "IP:127.0.0.1,DNS:localhost");
  leaf("client", "clientAuth", "");
  return {
    caFile: join(d, "ca.pem"),
    serverCertFile: join(d, "server.pem"),
    serverKeyFile: join(d, "server.key"),
    clientCertFile: join(d, "client.pem"),
    clientKeyFile: join(d, "client.key"),
  };
}

/** The server's tls block: TLS only; `verify` also requires a client certificate signed by the CA. */
export function tlsBlock(pki: Pki, verify: boolean): string {
  return [
    "tls {",
    `  cert_file: ${JSON.stringify(pki.serverCertFile)}`,
    `  key_file: ${JSON.stringify(pki.serverKeyFile)}`,
    `  ca_file: ${JSON.stringify(pki.caFile)}`,
    `  verify: ${verify}`,
    "  timeout: 2",
    "}",
  ].join("\n");
}

export function mappingsBlock(partitionCount: number): string {
  const lines = Object.entries(subjectMappings(partitionCount)).map(
    ([from, to]) => `  ${JSON.stringify(from)}: ${JSON.stringify(to)}`,
  );
  return ["mappings = {", ...lines, "}"].join("\n");
}

export type SecureNatsOptions = {
  /** Server config added as it is: a tls block, authorization { users … }, operator and resolver … */
  config: string;
  partitionCount?: number;
  /** Top-level mappings (the global account); false with operator JWTs (the account JWT carries them). */
  mappings?: boolean;
};

/** A real nats-server with the given security config; `url` once started. */
export class SecureNats {
  readonly dir = tempDir("nats-secure");
  private child: Subprocess | null = null;
  private port = 0;
  private output = "";

  constructor(private readonly options: SecureNatsOptions) {}

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** What the server wrote so far (its log): for assertions and failure messages. */
  log(): string {
    return this.output;
  }

  async start(): Promise<void> {
    const o = this.options;
    const portsDir = join(this.dir, "ports");
    mkdirSync(portsDir, { recursive: true });
    mkdirSync(join(this.dir, "jetstream"), { recursive: true });
    const configPath = join(this.dir, "nats-server.conf");
    writeFileSync(
      configPath,
      [
        'listen: "127.0.0.1:-1"',
        `ports_file_dir: ${JSON.stringify(portsDir)}`,
        `max_payload: ${2 * MiB}`,
        "jetstream {",
        `  store_dir: ${JSON.stringify(join(this.dir, "jetstream"))}`,
        `  max_file_store: ${512 * MiB}`,
        `  max_memory_store: ${32 * MiB}`,
        "}",
        o.mappings === false ? "" : mappingsBlock(o.partitionCount ?? 4),
        o.config,
        "",
      ].join("\n"),
    );
    const child = Bun.spawn(["nats-server", "-c", configPath], { stdout: "pipe", stderr: "pipe" });
    this.child = child;
    void this.collect(child.stdout);
    void this.collect(child.stderr);
    this.port = await this.waitForPort(portsDir, child);
  }

  private async collect(stream: ReadableStream<Uint8Array> | number | undefined | null): Promise<void> {
    if (!(stream instanceof ReadableStream)) return;
    const decoder = new TextDecoder();
    for await (const chunk of stream) this.output += decoder.decode(chunk, { stream: true });
  }

  private async waitForPort(portsDir: string, child: Subprocess): Promise<number> {
    const deadline = Date.now() + startTimeoutMs;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) {
        await Bun.sleep(50); // let the last log lines arrive
        throw new Error(`nats-server exited with ${child.exitCode} at start:\n${this.output}`);
      }
      const file = readdirSync(portsDir).find((f) => f.endsWith(".ports"));
      if (file !== undefined) {
        try {
          const ports = JSON.parse(readFileSync(join(portsDir, file), "utf8")) as { nats?: string[] };
          const url = ports.nats?.[0];
          // A TLS server writes tls://…: only the port matters.
          if (url !== undefined) return Number(new URL(url).port);
        } catch {
          // Not complete yet: read again.
        }
      }
      await Bun.sleep(20);
    }
    child.kill("SIGKILL");
    throw new Error(`nats-server did not start within ${startTimeoutMs} ms:\n${this.output}`);
  }

  async dispose(): Promise<void> {
    const child = this.child;
    if (child !== null && child.exitCode === null) {
      child.kill("SIGKILL");
      await child.exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Writes `text` to `dir/name` (mode 0600, as a secret should be) and returns the path. */
export function secretFile(dir: string, name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text, { mode: 0o600 });
  return path;
}

// Operator mode without nsc: a NATS JWT is `base64url(header).base64url(claims).base64url(ed25519 signature)`,
// signed by the issuer's NKey (the operator signs accounts, an account signs its users). nats-server checks the
// signature, the issuer chain and the claims it uses; `jti` is any unique id.

const b64url = (bytes: Uint8Array | string) => Buffer.from(bytes).toString("base64url");

function encodeJwt(
  issuer: nkeys.KeyPair,
  subject: string,
  name: string,
  nats: Record<string, unknown>,
): string {
  const header = b64url(JSON.stringify({ typ: "JWT", alg: "ed25519-nkey" }));
  const claims = {
    jti: Bun.hash(`${subject}:${Math.random()}`).toString(36).toUpperCase(),
    iat: Math.floor(Date.now() / 1000),
    iss: issuer.getPublicKey(),
    name,
    sub: subject,
    nats: { ...nats, version: 2 },
  };
  const body = `${header}.${b64url(JSON.stringify(claims))}`;
  return `${body}.${b64url(issuer.sign(new TextEncoder().encode(body)))}`;
}

/** A .creds file as `nsc generate creds` writes it. */
export function credsText(jwt: string, seed: string): string {
  return [
    "-----BEGIN NATS USER JWT-----",
    jwt,
    "------END NATS USER JWT------",
    "",
    "************************* IMPORTANT *************************",
    "NKEY Seed printed below can be used to sign and prove identity.",
    "NKEYs are sensitive and should be treated as secrets.",
    "",
    "-----BEGIN USER NKEY SEED-----",
    seed,
    "------END USER NKEY SEED------",
    "",
    "*************************************************************",
    "",
  ].join("\n");
}

export type OperatorSetup = {
  /** Server config: operator, system account, memory resolver with both account JWTs preloaded. */
  config: string;
  /** A user of the application account (JetStream enabled, Sluice's mappings on the account). */
  userCreds: string;
  /** A user signed by an account the server does not know: refused at connect. */
  strangerCreds: string;
};

const unlimited = { subs: -1, data: -1, payload: -1 };
const accountLimits = {
  ...unlimited,
  imports: -1,
  exports: -1,
  wildcards: true,
  conn: -1,
  leaf: -1,
  mem_storage: -1,
  disk_storage: -1,
  streams: -1,
  consumer: -1,
};

/** An operator, a system account and an application account ("SLUICE") with one user, as JWTs. */
export function operatorSetup(partitionCount: number): OperatorSetup {
  const operator = nkeys.createOperator();
  const system = nkeys.createAccount();
  const app = nkeys.createAccount();
  const user = nkeys.createUser();
  const mappings = Object.fromEntries(
    Object.entries(subjectMappings(partitionCount)).map(([from, to]) => [
      from,
      [{ subject: to, weight: 100 }],
    ]),
  );
  const operatorJwt = encodeJwt(operator, operator.getPublicKey(), "sluice-test-operator", {
    type: "operator",
    system_account: system.getPublicKey(),
  });
  const systemJwt = encodeJwt(operator, system.getPublicKey(), "SYS", {
    type: "account",
    limits: { ...unlimited, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1 },
  });
  const appJwt = encodeJwt(operator, app.getPublicKey(), "SLUICE", {
    type: "account",
    limits: accountLimits,
    mappings,
  });
  const userJwt = encodeJwt(app, user.getPublicKey(), "sluice", { type: "user", ...unlimited });
  const strangerAccount = nkeys.createAccount();
  const stranger = nkeys.createUser();
  const strangerJwt = encodeJwt(strangerAccount, stranger.getPublicKey(), "stranger", {
    type: "user",
    ...unlimited,
  });
  const seed = (kp: nkeys.KeyPair) => new TextDecoder().decode(kp.getSeed());
  return {
    config: [
      `operator: ${JSON.stringify(operatorJwt)}`,
      `system_account: ${system.getPublicKey()}`,
      "resolver: MEMORY",
      "resolver_preload: {",
      `  ${system.getPublicKey()}: ${JSON.stringify(systemJwt)}`,
      `  ${app.getPublicKey()}: ${JSON.stringify(appJwt)}`,
      "}",
    ].join("\n"),
    userCreds: credsText(userJwt, seed(user)),
    strangerCreds: credsText(strangerJwt, seed(stranger)),
  };
}
