// Who may call the operator's HTTP port, and for what (docs/http.md, "Authentication"): bearer tokens with
// a scope, from `http.tokens`. Pure: parsing, scope order and the constant-time match; the server
// (server.ts) decides per route which scope it needs and writes the audit log.
import { createHash, timingSafeEqual } from "node:crypto";

/** Scopes, weakest first: each includes the ones before it (admin ⊃ operate ⊃ read). */
export const scopes = ["read", "operate", "admin"] as const;
export type Scope = (typeof scopes)[number];

const rank: Record<Scope, number> = { read: 0, operate: 1, admin: 2 };

/** Whether a token of scope `have` may do what needs `need`. */
export function covers(have: Scope, need: Scope): boolean {
  return rank[have] >= rank[need];
}

export function isScope(s: string): s is Scope {
  return (scopes as readonly string[]).includes(s);
}

// 16 characters of hex carry 64 bits, of base64 96: past any online guessing at the rate one HTTP port
// answers. Shorter is a password someone typed, not a generated token.
export const secretLengthMin = 16;
// 256 fits any generated token (`openssl rand -base64 64` is 88 characters) and bounds the hashing per request.
export const secretLengthMax = 256;
// Each request hashes its token once and compares the digest with every stored one (32 bytes each): 64
// tokens is more than one per person and per system on an operations team, and still microseconds.
export const tokensCountMax = 64;

// RFC 6750's b64token: what may follow "Bearer " in an Authorization header. A ',' separates entries and a
// ':' separates fields, so neither may be part of a secret.
const secretPattern = /^[A-Za-z0-9._~+/-]+=*$/;
const namePattern = /^[A-Za-z0-9_-]{1,64}$/;

export type Token = {
  /** Names who called in the audit log; never secret. */
  name: string;
  scope: Scope;
  /** SHA-256 of the secret: the secret itself is not kept past parsing. */
  digest: Buffer;
};

export type ParsedTokens = { ok: true; tokens: Token[] } | { ok: false; detail: string };

export const tokensFormat = "name:scope:secret entries, comma-separated (scope read, operate or admin)";

/**
 * `http.tokens`: `name:scope:secret` entries, comma-separated (spaces around entries are ignored). An error
 * names an entry by its position, never by any part that could be a secret (a name only once its entry is
 * valid): the message ends up in the start-up error on stderr.
 */
export function parseTokens(text: string): ParsedTokens {
  if (text.trim() === "") return { ok: true, tokens: [] };
  const entries = text.split(",").map((e) => e.trim());
  if (entries.length > tokensCountMax)
    return { ok: false, detail: `${entries.length} entries; at most ${tokensCountMax}` };
  const tokens: Token[] = [];
  const names = new Map<string, number>();
  const secrets = new Map<string, number>();
  for (const [i, entry] of entries.entries()) {
    const at = `entry ${i + 1}`;
    if (entry === "") return { ok: false, detail: `${at} is empty (a stray comma?)` };
    const fields = entry.split(":");
    if (fields.length !== 3)
      return {
        ok: false,
        detail: `${at} has ${fields.length} field${fields.length === 1 ? "" : "s"} separated by ':'; each entry is name:scope:secret`,
      };
    const [name, scope, secret] = fields as [string, string, string];
    if (!namePattern.test(name))
      return { ok: false, detail: `${at}: the name must be 1 to 64 letters, digits, '_' or '-'` };
    // Not named here: in a mistaken entry (fields swapped) the name field may hold the secret.
    if (!isScope(scope)) return { ok: false, detail: `${at}: the scope must be read, operate or admin` };
    if (secret.length < secretLengthMin || secret.length > secretLengthMax)
      return {
        ok: false,
        detail: `${at}: the secret has ${secret.length} characters; use ${secretLengthMin} to ${secretLengthMax} (e.g. openssl rand -hex 32)`,
      };
    if (!secretPattern.test(secret))
      return {
        ok: false,
        detail: `${at}: the secret may hold only letters, digits and - . _ ~ + / (then '=' padding), as a bearer token does`,
      };
    const sameName = names.get(name);
    if (sameName !== undefined)
      return {
        ok: false,
        detail: `entries ${sameName} and ${i + 1} are both named ${name}; names must differ`,
      };
    const sameSecret = secrets.get(secret);
    if (sameSecret !== undefined)
      return {
        ok: false,
        detail: `entries ${sameSecret} and ${i + 1} have the same secret; each name needs its own (the audit log must tell them apart)`,
      };
    names.set(name, i + 1);
    secrets.set(secret, i + 1);
    tokens.push({ name, scope, digest: digestOf(secret) });
  }
  return { ok: true, tokens };
}

export function digestOf(secret: string): Buffer {
  return createHash("sha256").update(secret, "utf8").digest();
}

/**
 * Equal digests, in time independent of where they differ. Both are SHA-256 digests (32 bytes), so
 * timingSafeEqual's equal-length rule holds and the length of the presented secret leaks nothing.
 */
export function sameDigest(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * The token whose secret was presented, or null. Every stored digest is compared, without stopping at a
 * match, so the time taken does not say which entry matched or how many came before it.
 */
export function tokenOf(tokens: readonly Token[], presented: string): Token | null {
  const digest = digestOf(presented);
  let found: Token | null = null;
  for (const t of tokens) if (sameDigest(t.digest, digest) && found === null) found = t;
  return found;
}

/** The credentials of `Authorization: Bearer <secret>` (scheme case-insensitive), or null. */
export function bearerOf(header: string | null): string | null {
  if (header === null) return null;
  const match = /^Bearer[ ]+([^\s]+)[ ]*$/i.exec(header);
  return match === null ? null : (match[1] as string);
}

/** What a request is allowed: who it is (for the audit log), or why not. */
export type Verdict =
  | { ok: true; who: string }
  | { ok: false; status: 401; detail: string }
  | { ok: false; status: 403; who: string; have: Scope };

/** Named in the audit log when http.tokens is empty (loopback only: load.ts refuses anything else). */
export const anonymous = "anonymous (no tokens configured)";

/**
 * Whether a request with this Authorization header may do what needs `need`; null `need`: open to anyone
 * (a probe or /metrics left open by config). With no tokens configured everything is open, as the port is
 * then bound to loopback only (a config relation).
 */
export function authorize(tokens: readonly Token[], header: string | null, need: Scope | null): Verdict {
  if (tokens.length === 0) return { ok: true, who: anonymous };
  if (need === null) return { ok: true, who: "anyone (open endpoint)" };
  const presented = bearerOf(header);
  if (presented === null)
    return {
      ok: false,
      status: 401,
      detail: header === null ? "no Authorization header" : "the Authorization header is not Bearer <token>",
    };
  const token = tokenOf(tokens, presented);
  if (token === null) return { ok: false, status: 401, detail: "the token matches none of http.tokens" };
  if (!covers(token.scope, need)) return { ok: false, status: 403, who: token.name, have: token.scope };
  return { ok: true, who: token.name };
}

/** `http.host` values that only this machine can reach: 127.0.0.0/8, ::1, localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host.trim().toLowerCase();
  if (h === "localhost" || h === "::1" || h === "[::1]") return true;
  const v4 = /^(?:::ffff:)?127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(h);
  return v4?.slice(1).every((octet) => Number(octet) <= 255) ?? false;
}
