import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { ConfigError, loadConfig, printable } from "../../src/config/index.ts";
import {
  anonymous,
  authorize,
  bearerOf,
  covers,
  digestOf,
  isLoopbackHost,
  parseTokens,
  type Scope,
  sameDigest,
  scopes,
  secretLengthMin,
  tokenOf,
  tokensCountMax,
} from "../../src/http/auth.ts";

const hex = (n: number, seed = "a") => seed.repeat(n);
const READ = `r${hex(31, "1")}`;
const OPERATE = `o${hex(31, "2")}`;
const ADMIN = `a${hex(31, "3")}`;
const tokens = `viewer:read:${READ}, ci:operate:${OPERATE},ops:admin:${ADMIN}`;

const parsed = (text: string) => {
  const p = parseTokens(text);
  if (!p.ok) throw new Error(p.detail);
  return p.tokens;
};
const detailOf = (text: string) => {
  const p = parseTokens(text);
  if (p.ok) throw new Error(`parsed: ${text}`);
  return p.detail;
};

describe("http.tokens", () => {
  test("name:scope:secret entries, comma-separated; empty is none; secrets are kept only as digests", () => {
    expect(parsed("")).toEqual([]);
    expect(parsed("   ")).toEqual([]);
    const list = parsed(tokens);
    expect(list.map((t) => [t.name, t.scope])).toEqual([
      ["viewer", "read"],
      ["ci", "operate"],
      ["ops", "admin"],
    ]);
    for (const t of list) expect(t.digest.length).toBe(32);
    expect(JSON.stringify(list)).not.toContain(ADMIN);
    // Base64 secrets (openssl rand -base64 32) are bearer tokens too.
    expect(parsed("b64:admin:q0Lp8Zk+u3v/Hw9e1T2yXmN4aBcDeFgHiJkLmNoPqRs=")).toHaveLength(1);
  });

  test("each mistake is refused with what to fix, naming the entry by position, never echoing a secret", () => {
    expect(detailOf(`ops:admin:${ADMIN},`)).toBe("entry 2 is empty (a stray comma?)");
    expect(detailOf(`ops:${ADMIN}`)).toContain(
      "entry 1 has 2 fields separated by ':'; each entry is name:scope:secret",
    );
    expect(detailOf(ADMIN)).toContain("entry 1 has 1 field separated");
    expect(detailOf(`ops:admin:${ADMIN}:x`)).toContain("has 4 fields");
    expect(detailOf(`o ps:admin:${ADMIN}`)).toContain("entry 1: the name must be 1 to 64 letters");
    expect(detailOf(`:admin:${ADMIN}`)).toContain("the name must be");
    expect(detailOf(`ops:root:${ADMIN}`)).toBe("entry 1: the scope must be read, operate or admin");
    expect(detailOf(`ops:Admin:${ADMIN}`)).toContain("the scope must be");
    expect(detailOf("ops:admin:tooshort")).toContain("entry 1: the secret has 8 characters; use 16 to 256");
    expect(detailOf(`ops:admin:${"x".repeat(257)}`)).toContain("the secret has 257 characters");
    expect(detailOf(`ops:admin:${hex(15)}`)).toContain("has 15 characters");
    expect(parsed(`ops:admin:${hex(secretLengthMin)}`)).toHaveLength(1);
    expect(detailOf(`ops:admin:${hex(20)}"`)).toContain("the secret may hold only letters, digits");
    expect(detailOf(`ops:admin:${hex(10)}=${hex(10)}`)).toContain("may hold only");
    expect(detailOf(`ops:admin:${hex(20)} x`)).toContain("may hold only");
    expect(detailOf(`ops:admin:${ADMIN},ops:read:${READ}`)).toBe(
      "entries 1 and 2 are both named ops; names must differ",
    );
    expect(detailOf(`ops:admin:${ADMIN},ci:read:${ADMIN}`)).toContain("entries 1 and 2 have the same secret");
    const many = Array.from({ length: tokensCountMax + 1 }, (_, i) => `t${i}:read:${hex(16)}${i}`).join(",");
    expect(detailOf(many)).toBe(`${tokensCountMax + 1} entries; at most ${tokensCountMax}`);
    // Fields swapped (the secret where the name goes): the error does not name the entry by it.
    expect(detailOf(`${ADMIN}:admin:ops`)).not.toContain(ADMIN);
    expect(detailOf(`ops:${ADMIN}:admin`)).not.toContain(ADMIN);
  });

  test("generated garbage: never throws; refused with a message that holds no field of the input", () => {
    const field = fc.string({ unit: "grapheme-composite", maxLength: 40 });
    const entry = fc.tuple(field, field, field, fc.constantFrom(":", "::", "", ";", " : "));
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 6 }), fc.constantFrom(",", ", ", ",,"), (entries, sep) => {
        const text = entries.map(([a, b, c, s]) => [a, b, c].join(s)).join(sep);
        const p = parseTokens(text);
        if (p.ok) {
          for (const t of p.tokens) expect(scopes).toContain(t.scope);
          return;
        }
        expect(p.detail.length).toBeGreaterThan(0);
        // A field long enough to be a secret never shows up, unless the entry was valid (a duplicate name).
        if (p.detail.includes("both named")) return;
        for (const [a, b, c] of entries)
          for (const f of [a, b, c]) if (f.trim().length >= 12) expect(p.detail).not.toContain(f.trim());
      }),
      { numRuns: 2000 },
    );
  });

  test("secrets with the shape of a real one, misplaced at random, are never echoed", () => {
    const secret = fc.stringMatching(/^[A-Za-z0-9]{16,64}$/);
    fc.assert(
      fc.property(
        secret,
        fc.constantFrom("ops", "ci-1"),
        fc.constantFrom<string>(...scopes, "write", ""),
        fc.integer({ min: 0, max: 5 }),
        (s, name, scope, order) => {
          const fields = [
            [name, scope, s],
            [s, scope, name],
            [name, s, scope],
            [scope, name, s],
            [s, name],
            [name, scope, s, "extra"],
          ][order] as string[];
          const p = parseTokens(fields.join(":"));
          if (!p.ok) expect(p.detail).not.toContain(s);
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe("scopes", () => {
  test("admin ⊃ operate ⊃ read", () => {
    const table: Array<[Scope, Scope, boolean]> = [
      ["read", "read", true],
      ["read", "operate", false],
      ["read", "admin", false],
      ["operate", "read", true],
      ["operate", "operate", true],
      ["operate", "admin", false],
      ["admin", "read", true],
      ["admin", "operate", true],
      ["admin", "admin", true],
    ];
    for (const [have, need, ok] of table) expect([have, need, covers(have, need)]).toEqual([have, need, ok]);
  });
});

describe("the constant-time match", () => {
  test("digests are compared whole and at equal length, whatever length was presented", () => {
    expect(sameDigest(digestOf(ADMIN), digestOf(ADMIN))).toBe(true);
    expect(sameDigest(digestOf(ADMIN), digestOf(`${ADMIN}x`))).toBe(false);
    expect(sameDigest(digestOf(ADMIN), digestOf(ADMIN.slice(0, -1)))).toBe(false);
    // Different lengths say no instead of throwing (timingSafeEqual would throw).
    expect(sameDigest(Buffer.alloc(32), Buffer.alloc(31))).toBe(false);
    for (const presented of ["", "x", "y".repeat(10_000)]) expect(digestOf(presented).length).toBe(32);
  });

  test("tokenOf finds the token of a secret and nothing for a prefix, a suffix or another case", () => {
    const list = parsed(tokens);
    expect(tokenOf(list, READ)?.name).toBe("viewer");
    expect(tokenOf(list, ADMIN)?.name).toBe("ops");
    for (const wrong of ["", ADMIN.slice(0, 16), `${ADMIN}0`, ADMIN.toUpperCase(), ` ${ADMIN}`])
      expect(tokenOf(list, wrong)).toBeNull();
  });

  test("Authorization: Bearer <secret> only", () => {
    expect(bearerOf(`Bearer ${ADMIN}`)).toBe(ADMIN);
    expect(bearerOf(`bearer ${ADMIN}`)).toBe(ADMIN);
    expect(bearerOf(`Bearer  ${ADMIN} `)).toBe(ADMIN);
    for (const bad of [null, "Bearer", "Bearer ", `Basic ${ADMIN}`, `Bearer ${ADMIN} extra`, ADMIN])
      expect(bearerOf(bad)).toBeNull();
  });
});

describe("authorize", () => {
  const list = parsed(tokens);
  test("no tokens configured: everything open, as anonymous", () => {
    expect(authorize([], null, "admin")).toEqual({ ok: true, who: anonymous });
  });
  test("an open endpoint (need null) ignores the header", () => {
    expect(authorize(list, null, null).ok).toBe(true);
    expect(authorize(list, "Bearer wrong", null).ok).toBe(true);
  });
  test("401 says what is missing; 403 what is needed and what was had", () => {
    expect(authorize(list, null, "read")).toEqual({
      ok: false,
      status: 401,
      detail: "no Authorization header",
    });
    expect(authorize(list, `Basic ${READ}`, "read")).toMatchObject({
      status: 401,
      detail: "the Authorization header is not Bearer <token>",
    });
    expect(authorize(list, `Bearer ${hex(32, "9")}`, "read")).toMatchObject({
      status: 401,
      detail: "the token matches none of http.tokens",
    });
    expect(authorize(list, `Bearer ${READ}`, "operate")).toEqual({
      ok: false,
      status: 403,
      who: "viewer",
      have: "read",
    });
    expect(authorize(list, `Bearer ${OPERATE}`, "admin")).toMatchObject({ status: 403, have: "operate" });
    expect(authorize(list, `Bearer ${OPERATE}`, "operate")).toEqual({ ok: true, who: "ci" });
    expect(authorize(list, `Bearer ${ADMIN}`, "read")).toEqual({ ok: true, who: "ops" });
  });
});

describe("config: the HTTP port's security", () => {
  const load = (env: Record<string, string> = {}) => loadConfig({ env, file: "config/sluice.toml" });

  test("loopback hosts", () => {
    for (const h of ["127.0.0.1", "127.1.2.3", "localhost", "LOCALHOST", "::1", "[::1]", "::ffff:127.0.0.1"])
      expect([h, isLoopbackHost(h)]).toEqual([h, true]);
    for (const h of [
      "0.0.0.0",
      "",
      "::",
      "10.0.0.5",
      "128.0.0.1",
      "127.0.0.256",
      "localhost.example.com",
      "1.127.0.0.1",
    ])
      expect([h, isLoopbackHost(h)]).toEqual([h, false]);
  });

  test("a non-loopback http.host without tokens refuses to start, with the fix", () => {
    expect(() => load({ SLUICE_HTTP_HOST: "0.0.0.0" })).toThrow(ConfigError);
    expect(() => load({ SLUICE_HTTP_HOST: "10.0.0.5" })).toThrow(
      /http\.host is "10\.0\.0\.5", reachable from other machines, but http\.tokens is empty.*SLUICE_HTTP_TOKENS=.*http\.host = "127\.0\.0\.1"/,
    );
    expect(load({ SLUICE_HTTP_HOST: "0.0.0.0", SLUICE_HTTP_TOKENS: tokens }).http.host).toBe("0.0.0.0");
    expect(load({ SLUICE_HTTP_HOST: "::1" }).http.tokens).toBe("");
    expect(load({ SLUICE_HTTP_TOKENS: tokens }).http.tokens).toBe(tokens); // tokens on loopback: fine too
  });

  test("a bad http.tokens is refused at load, without the secret in the message", () => {
    const secret = "hunter2hunter2";
    let message = "";
    try {
      load({ SLUICE_HTTP_TOKENS: `ops:admin:${secret}` });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain("http.tokens is invalid: entry 1: the secret has 14 characters");
    expect(message).not.toContain(secret);
  });

  test("closing the probes or /metrics needs tokens; both default to open", () => {
    const c = load();
    expect(c.http.probesTokenRequired).toBe(false);
    expect(c.http.metricsTokenRequired).toBe(false);
    expect(() => load({ SLUICE_HTTP_PROBES_TOKEN_REQUIRED: "true" })).toThrow(
      /http\.probesTokenRequired is on but http\.tokens is empty/,
    );
    expect(() => load({ SLUICE_HTTP_METRICS_TOKEN_REQUIRED: "true" })).toThrow(/metricsTokenRequired/);
    const closed = load({
      SLUICE_HTTP_TOKENS: tokens,
      SLUICE_HTTP_PROBES_TOKEN_REQUIRED: "true",
      SLUICE_HTTP_METRICS_TOKEN_REQUIRED: "1",
    });
    expect([closed.http.probesTokenRequired, closed.http.metricsTokenRequired]).toEqual([true, true]);
  });

  test("config print masks the tokens; SLUICE_HTTP_TOKEN (the CLI's) is not a setting but is allowed", () => {
    const c = load({ SLUICE_HTTP_TOKENS: tokens, SLUICE_HTTP_TOKEN: ADMIN });
    expect(printable(c).http?.tokens).toBe("***");
    const shown = JSON.stringify(printable(c));
    for (const s of [READ, OPERATE, ADMIN]) expect(shown).not.toContain(s);
  });
});
