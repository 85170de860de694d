import { readFileSync } from "node:fs";
import {
  connect,
  credsAuthenticator,
  errors,
  type NatsConnection,
  type NodeConnectionOptions,
  nkeyAuthenticator,
  nkeys,
} from "@nats-io/transport-node";
import { type Config, ConfigError } from "../config/index.ts";
import type { Logger } from "../log/index.ts";
import type { EmbeddedClient } from "./embedded-auth.ts";

export type Connection = { nc: NatsConnection; connected: () => boolean };

/**
 * Connects with @nats-io/transport-node, the client @nats-io/jetstream v3 is made for (a legacy `nats` v2
 * connection breaks its consumers). Reconnects forever by default: an outage must not end the process.
 * TLS and credentials come from `nats.*` (docs/security.md); a failed first connect says what to fix.
 */
export async function connectNats(
  c: Config,
  servers: string,
  log: Logger,
  embedded: EmbeddedClient | null = null,
): Promise<Connection> {
  const nc = await connectSecured(
    {
      servers: servers.split(",").map((s) => s.trim()),
      name: c.node.name,
      timeout: c.nats.connectTimeoutMs,
      reconnect: true,
      maxReconnectAttempts: c.nats.reconnectAttemptsMax,
      reconnectTimeWait: c.nats.reconnectWaitMs,
      waitOnFirstConnect: false,
      ...(embedded === null ? {} : { inboxPrefix: embedded.inboxPrefix }),
    },
    embedded === null ? c.nats : embeddedSecurity(embedded),
    embedded === null ? configNames : embeddedNames,
  );
  let connected = true;
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === "disconnect") {
        connected = false;
        log.warn("NATS disconnected", { server: s.server });
      } else if (s.type === "reconnect") {
        connected = true;
        log.info("NATS reconnected", { server: s.server });
      } else if (s.type === "error") {
        log.error("NATS error", { error: s.error });
      }
    }
  })();
  log.info("NATS connected", {
    server: nc.getServer(),
    tls: wantsTls(c.nats) || nc.info?.tls_required === true,
  });
  return { nc, connected: () => connected && !nc.isClosed() };
}

/**
 * How a client proves itself to NATS and checks the server: the `nats` keys Sluice, the reference sink and the
 * bench share. Empty means unset. At most one of token, user/password, NKey seed and creds file.
 */
export type NatsSecurity = {
  token: string;
  user: string;
  password: string;
  /** PEM CA that signed the server's certificate (empty: the system's trust store). */
  tlsCaFile: string;
  /** PEM client certificate and its key, for servers with `tls { verify: true }`; both or neither. */
  tlsCertFile: string;
  tlsKeyFile: string;
  /** A file holding an NKey user seed (`SU…`). */
  nkeySeedFile: string;
  /** A .creds file: a user JWT and its NKey seed (operator mode, `nsc generate creds`). */
  credsFile: string;
};

/** What each setting is called where the operator set it: a config key, a flag, an environment variable. */
export type SecurityNames = Record<keyof NatsSecurity, string>;

/** Sluice's own names: its config keys (`SLUICE_NATS_TLS_CA_FILE` … in the environment). */
export const configNames: SecurityNames = {
  token: "nats.token",
  user: "nats.user",
  password: "nats.password",
  tlsCaFile: "nats.tlsCaFile",
  tlsCertFile: "nats.tlsCertFile",
  tlsKeyFile: "nats.tlsKeyFile",
  nkeySeedFile: "nats.nkeySeedFile",
  credsFile: "nats.credsFile",
};

/** The security of a client of the locked embedded server: its role's NKey seed, nothing else. */
export const embeddedSecurity = (client: EmbeddedClient): NatsSecurity => ({
  token: "",
  user: "",
  password: "",
  tlsCaFile: "",
  tlsCertFile: "",
  tlsKeyFile: "",
  nkeySeedFile: client.seedFile,
  credsFile: "",
});

/** What a message calls the embedded server's seed (Sluice wrote it; no setting names it). */
const embeddedNames: SecurityNames = { ...configNames, nkeySeedFile: "the embedded server's seed" };

const authKeys = ["token", "user", "nkeySeedFile", "credsFile"] as const;

/** Whether any TLS file is set: the client then insists on TLS (nats.js never falls back to clear text). */
export const wantsTls = (s: NatsSecurity) =>
  s.tlsCaFile !== "" || s.tlsCertFile !== "" || s.tlsKeyFile !== "";

/** How the settings contradict each other, or null: pure, checked again with the files at connect. */
export function securityRelationError(s: NatsSecurity, names: SecurityNames = configNames): string | null {
  const set = authKeys.filter((k) => s[k] !== "");
  if (set.length > 1) {
    return `${set.map((k) => names[k]).join(" and ")} are ${set.length === 2 ? "both" : "all"} set: set one way to authenticate (a token, a user and password, an NKey seed file or a creds file) and leave the others empty`;
  }
  if (s.password !== "" && s.user === "") return `${names.password} is set without ${names.user}: set both`;
  if (s.tlsCertFile !== "" && s.tlsKeyFile === "") {
    return `${names.tlsCertFile} is set without ${names.tlsKeyFile}: a client certificate needs its private key; set both or neither`;
  }
  if (s.tlsKeyFile !== "" && s.tlsCertFile === "") {
    return `${names.tlsKeyFile} is set without ${names.tlsCertFile}: set the client certificate too, or neither`;
  }
  return null;
}

/**
 * The TLS and authentication part of the connect options. Checks the relations and every file named (exists,
 * readable, of the right kind) and throws ConfigError naming the setting and the fix. Seeds and creds are read
 * again at every (re)connect, so a rotated file is used from the next reconnect; nats.js reads the TLS files
 * at every connect itself.
 */
export function natsSecurityOptions(
  s: NatsSecurity,
  names: SecurityNames = configNames,
): Partial<NodeConnectionOptions> {
  const relation = securityRelationError(s, names);
  if (relation !== null) throw new ConfigError(relation);
  const out: Partial<NodeConnectionOptions> = {};
  if (wantsTls(s)) {
    out.tls = {
      ...(s.tlsCaFile !== "" ? { caFile: pemFile(names.tlsCaFile, s.tlsCaFile, "CERTIFICATE") } : {}),
      ...(s.tlsCertFile !== "" ? { certFile: pemFile(names.tlsCertFile, s.tlsCertFile, "CERTIFICATE") } : {}),
      ...(s.tlsKeyFile !== "" ? { keyFile: pemFile(names.tlsKeyFile, s.tlsKeyFile, "PRIVATE KEY") } : {}),
    };
  }
  if (s.token !== "") out.token = s.token;
  if (s.user !== "") Object.assign(out, { user: s.user, pass: s.password });
  if (s.nkeySeedFile !== "") {
    const seed = rereading(names.nkeySeedFile, s.nkeySeedFile, parseSeedFile);
    out.authenticator = nkeyAuthenticator(seed);
  }
  if (s.credsFile !== "") {
    const creds = rereading(names.credsFile, s.credsFile, parseCredsFile);
    out.authenticator = credsAuthenticator(creds);
  }
  return out;
}

/** `connect` with the security options, and a first-connect failure turned into a NatsConnectError. */
export async function connectSecured(
  base: NodeConnectionOptions,
  s: NatsSecurity,
  names: SecurityNames = configNames,
): Promise<NatsConnection> {
  const options = { ...base, ...natsSecurityOptions(s, names) };
  try {
    return await connect(options);
  } catch (error) {
    throw explainConnectError(error, String(base.servers ?? ""), base.timeout ?? 20_000, s, names);
  }
}

export class NatsConnectError extends Error {
  override name = "NatsConnectError";
}

/** A URL may carry user:password: never in a message. */
const maskUrl = (servers: string) => servers.replace(/\/\/[^@/]*@/g, "//***@");

/** What the first connect's failure means, as a sentence with the fix (no secret in it). */
export function explainConnectError(
  error: unknown,
  servers: string,
  timeoutMs: number,
  s: NatsSecurity,
  names: SecurityNames = configNames,
): NatsConnectError {
  const at = maskUrl(servers);
  const detail = error instanceof Error ? error.message : String(error);
  const cause = { cause: error };
  const auth = authKeys.find((k) => s[k] !== "");
  if (error instanceof errors.AuthorizationError || /authorization violation/i.test(detail)) {
    const used =
      auth === undefined ? "no credentials" : `${names[auth]} (${auth === "token" ? "***" : s[auth]})`;
    return new NatsConnectError(
      `NATS at ${at} refused the connection (${detail}) with ${used}: the server's authorization must list this user, NKey or account, with a matching secret; check the server's log and the credentials`,
      cause,
    );
  }
  if (/does not support 'tls'/.test(detail)) {
    return new NatsConnectError(
      `NATS at ${at} does not offer TLS but ${wantedTlsNames(s, names)} is set, so the connection was not made in clear text: enable tls on the server or remove the TLS settings`,
      cause,
    );
  }
  if (/certificate|self[- ]signed|CERT_|ERR_TLS|SSL|handshake/i.test(detail)) {
    const ca =
      s.tlsCaFile === ""
        ? `${names.tlsCaFile} is not set (the system's trust store was used)`
        : `${names.tlsCaFile} is ${s.tlsCaFile}`;
    return new NatsConnectError(
      `TLS with NATS at ${at} failed: ${detail}. The server's certificate must be signed by the CA in ${names.tlsCaFile} and name the host of the URL (SAN); ${ca}`,
      cause,
    );
  }
  if (error instanceof errors.TimeoutError || /timeout/i.test(detail)) {
    // A server with tls { verify: true } checks the client certificate after the handshake and then closes
    // the connection: the client sees no answer rather than a refusal.
    const certificate =
      s.tlsCertFile === "" ? `${names.tlsCertFile} is not set` : `${names.tlsCertFile} is ${s.tlsCertFile}`;
    return new NatsConnectError(
      `no answer from NATS at ${at} within ${timeoutMs} ms: the server is unreachable or slow, or it requires a client certificate (tls { verify: true }) and closed the connection because it got none it trusts (${certificate}); see the server's log`,
      cause,
    );
  }
  if (/connection refused|ECONNREFUSED/i.test(detail)) {
    return new NatsConnectError(
      `nothing listens at ${at} (connection refused): start the server or fix the URL`,
      cause,
    );
  }
  return new NatsConnectError(`could not connect to NATS at ${at}: ${detail}`, cause);
}

const wantedTlsNames = (s: NatsSecurity, names: SecurityNames) =>
  (["tlsCaFile", "tlsCertFile", "tlsKeyFile"] as const)
    .filter((k) => s[k] !== "")
    .map((k) => names[k])
    .join(", ");

/** The file's bytes, or a ConfigError that names the setting, the path and what is wrong with it. */
function readSetting(name: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === "ENOENT"
        ? "does not exist"
        : code === "EACCES"
          ? `is not readable by this process (uid ${process.getuid?.() ?? "?"}); fix its owner or mode`
          : code === "EISDIR"
            ? "is a directory, not a file"
            : `cannot be read (${code ?? (error as Error).message})`;
    return configFail(`${name} = ${path} ${why}`);
  }
}

function configFail(message: string): never {
  throw new ConfigError(message);
}

/** A PEM file with at least one block of this kind; returns the path (nats.js reads it at every connect). */
function pemFile(name: string, path: string, kind: "CERTIFICATE" | "PRIVATE KEY"): string {
  const text = readSetting(name, path).toString("utf8");
  if (!new RegExp(`-----BEGIN [A-Z ]*${kind}-----`).test(text)) {
    configFail(
      `${name} = ${path} holds no PEM ${kind.toLowerCase()} (a "-----BEGIN ${kind === "CERTIFICATE" ? "CERTIFICATE" : "PRIVATE KEY"}-----" block): point it at the PEM file`,
    );
  }
  return path;
}

type Parser = (name: string, path: string, bytes: Buffer) => Uint8Array;

/**
 * Reads and checks the file now (a ConfigError at start), then returns a reader for nats.js that reads it again
 * at each (re)connect and keeps the last good contents when the new ones are missing or broken.
 */
function rereading(name: string, path: string, parse: Parser): () => Uint8Array {
  let last = parse(name, path, readSetting(name, path));
  return () => {
    try {
      last = parse(name, path, readFileSync(path));
    } catch {
      // Mid-rotation or gone: the last good contents still authenticate until the file is back.
    }
    return last;
  };
}

const seedPattern = /^SU[A-Z2-7]{56}$/;

function checkSeed(name: string, path: string, seed: string, where: string): void {
  const hint = `an NKey user seed is one line of 58 characters starting with SU (as \`nk -gen user\` or nkeys.createUser() make it)`;
  if (!seedPattern.test(seed)) configFail(`${name} = ${path}: ${where} is not an NKey user seed: ${hint}`);
  try {
    nkeys.fromSeed(new TextEncoder().encode(seed));
  } catch (error) {
    configFail(`${name} = ${path}: ${where} is not a valid NKey seed (${(error as Error).message}): ${hint}`);
  }
}

const parseSeedFile: Parser = (name, path, bytes) => {
  const seed = bytes.toString("utf8").trim();
  checkSeed(name, path, seed, "the file");
  return new TextEncoder().encode(seed);
};

/** The blocks of a .creds file, as nats.js reads them: the user JWT, then the user's NKey seed. */
const credsBlock = /\s*(?:(?:-{3,}[^\n]*-{3,}\n)(.+)(?:\n\s*-{3,}[^\n]*-{3,}\n))/gi;

const parseCredsFile: Parser = (name, path, bytes) => {
  const text = bytes.toString("utf8");
  const blocks = [...text.matchAll(credsBlock)].map((m) => (m[1] ?? "").trim());
  const [jwt, seed] = blocks;
  const expected =
    "a NATS creds file (as `nsc generate creds` writes it): a -----BEGIN NATS USER JWT----- block, then a -----BEGIN USER NKEY SEED----- block";
  if (jwt === undefined || seed === undefined) configFail(`${name} = ${path} is not ${expected}`);
  const claims = jwtClaims(jwt);
  if (claims === null)
    configFail(`${name} = ${path}: its first block is not a JWT; the file must be ${expected}`);
  checkSeed(name, path, seed, "its seed block");
  const publicKey = nkeys.fromSeed(new TextEncoder().encode(seed)).getPublicKey();
  if (claims.sub !== publicKey) {
    configFail(
      `${name} = ${path}: the seed does not belong to the JWT's user (${String(claims.sub)}); generate the creds file again`,
    );
  }
  if (typeof claims.exp === "number" && claims.exp * 1000 < Date.now()) {
    configFail(
      `${name} = ${path}: the user JWT expired at ${new Date(claims.exp * 1000).toISOString()}; issue a new one`,
    );
  }
  return bytes;
};

function jwtClaims(jwt: string): Record<string, unknown> | null {
  const parts = jwt.split(".");
  if (parts.length !== 3 || parts.some((p) => !/^[A-Za-z0-9_-]+$/.test(p))) return null;
  try {
    const claims: unknown = JSON.parse(Buffer.from(parts[1] as string, "base64url").toString("utf8"));
    return typeof claims === "object" && claims !== null ? (claims as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
