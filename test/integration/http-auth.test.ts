// The HTTP port's authentication and authorization against a real Sluice (docs/http.md, "Authentication"):
// bearer tokens with scopes, 401/403 bodies, probes and /metrics per their switches, the audit line of every
// operate and admin action, the bounded ledger check, and the CLI sending its token.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, rmSync } from "node:fs";
import { userInfo } from "node:os";
import { join } from "node:path";
import { Logger } from "../../src/log/index.ts";
import { Sluice } from "../../src/sluice.ts";
import { Producer, TestNats, tempDir, testConfig, waitFor } from "../helpers/index.ts";
import { runCli } from "../helpers/process.ts";

const READ = `r${"1".repeat(31)}`;
const OPERATE = `o${"2".repeat(31)}`;
const ADMIN = `a${"3".repeat(31)}`;
const tokens = `viewer:read:${READ},ci:operate:${OPERATE},ops:admin:${ADMIN}`;
const bearer = (secret: string) => ({ Authorization: `Bearer ${secret}` });

/**
 * Every log line the Sluice writes: through the logger it is given and, should the HTTP port log on its own
 * (HttpDeps.log not wired), through stdout as the process would. Parsed JSON lines.
 */
class Logs {
  readonly lines: Array<Record<string, unknown>> = [];
  private readonly write = process.stdout.write.bind(process.stdout);
  readonly logger = new Logger("info", {}, (line) => this.add(line));

  capture(): void {
    process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      const text = typeof chunk === "string" ? chunk : new TextDecoder().decode(chunk);
      if (text.includes('"msg":"admin action"')) this.add(text);
      // biome-ignore lint/suspicious/noExplicitAny: passing stdout's own overloads through.
      return (this.write as any)(chunk, ...rest);
    }) as typeof process.stdout.write;
  }

  release(): void {
    process.stdout.write = this.write;
  }

  private add(text: string): void {
    for (const line of text.split("\n")) if (line.trim() !== "") this.lines.push(JSON.parse(line));
  }

  audit(action: string): Array<Record<string, unknown>> {
    return this.lines.filter((l) => l.msg === "admin action" && l.action === action);
  }
}

/** Its own nats-server and a Sluice with `http` settings; stopped and removed after the file. */
function fixture(name: string, http: Record<string, unknown>) {
  const f = {
    nats: new TestNats(4),
    dataDir: tempDir(name),
    logs: new Logs(),
    sluice: null as Sluice | null,
    fatal: [] as Error[],
    base: "",
  };
  beforeAll(async () => {
    f.logs.capture();
    await f.nats.start();
    const config = testConfig(f.nats.url, f.dataDir, { http, log: { level: "info" } });
    f.sluice = new Sluice(config, f.logs.logger, (error) => f.fatal.push(error));
    await f.sluice.start();
    f.base = `http://127.0.0.1:${f.sluice.http?.port}`;
  });
  afterAll(async () => {
    f.logs.release();
    await f.sluice?.stop();
    await f.nats.dispose();
    rmSync(f.dataDir, { recursive: true, force: true });
  });
  return f;
}

async function call(url: string, init: RequestInit = {}) {
  const res = await fetch(url, init);
  const text = await res.text();
  // biome-ignore lint/suspicious/noExplicitAny: tests read API responses by path; the assertions are the types.
  let body: any = text;
  try {
    body = JSON.parse(text);
  } catch {
    // /metrics
  }
  return { status: res.status, body, headers: res.headers };
}

const network = readFileSync("config/network.toml", "utf8");

/**
 * The value of `name` in a /metrics exposition, summed over its series whose labels include `labels`
 * (0 when none does). `null` when the metric is not declared at all.
 */
function sample(text: string, name: string, labels: Record<string, string>): number | null {
  if (!text.includes(`# TYPE ${name} `)) return null;
  let sum = 0;
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\} (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const has = Object.fromEntries(
      [...(m[2] as string).matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]),
    );
    if (Object.entries(labels).every(([k, v]) => has[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

describe("with http.tokens", () => {
  const f = fixture("http-auth", { tokens });

  test("no token: 401 with the fix and a Bearer challenge; a wrong one: 401 invalid_token", async () => {
    const none = await call(`${f.base}/v1/stock/SKU-1`);
    expect(none.status).toBe(401);
    expect(none.body).toEqual({
      error: "unauthorized",
      detail: "no Authorization header",
      fix: "send Authorization: Bearer <token> (http.tokens)",
    });
    expect(none.headers.get("www-authenticate")).toBe("Bearer");
    const wrong = await call(`${f.base}/v1/stock/SKU-1`, { headers: bearer("x".repeat(32)) });
    expect(wrong.status).toBe(401);
    expect(wrong.body).toMatchObject({ detail: "the token matches none of http.tokens" });
    expect(wrong.headers.get("www-authenticate")).toBe('Bearer error="invalid_token"');
    const basic = await call(`${f.base}/v1/network`, { headers: { Authorization: `Basic ${READ}` } });
    expect(basic.status).toBe(401);
    expect(basic.body).toMatchObject({ detail: "the Authorization header is not Bearer <token>" });
  });

  test("every read needs scope read (any token)", async () => {
    const reads = [
      "/v1/stock/SKU-1",
      "/v1/stock/SKU-1/entries",
      "/v1/stock/SKU-1/ats",
      "/v1/orders/shop/o-1",
      "/v1/network",
      "/v1/rules",
      "/v1/rules/versions",
      "/v1/routing/load",
      "/v1/cluster",
    ];
    for (const path of reads) {
      expect([path, (await call(`${f.base}${path}`)).status]).toEqual([path, 401]);
      for (const secret of [READ, OPERATE, ADMIN]) {
        const r = await call(`${f.base}${path}`, { headers: bearer(secret) });
        // 404 for an unknown SKU, order or a process that is not a cluster: past authorization.
        expect([path, [200, 404].includes(r.status)]).toEqual([path, true]);
      }
    }
  });

  test("probes and /metrics are open by default; unknown paths are 404 whoever asks", async () => {
    expect((await call(`${f.base}/healthz`)).status).toBe(200);
    await waitFor(async () => (await call(`${f.base}/readyz`)).status === 200, "ready");
    const metrics = await call(`${f.base}/metrics`);
    expect(metrics.status).toBe(200);
    expect(String(metrics.body)).toContain("sluice_");
    expect((await call(`${f.base}/nope`)).status).toBe(404);
  });

  test("too low a scope: 403 naming what is needed and what the token has", async () => {
    const put = await call(`${f.base}/v1/rules`, {
      method: "PUT",
      headers: { ...bearer(OPERATE), "Content-Type": "application/toml" },
      body: network,
    });
    expect(put.status).toBe(403);
    expect(put.body).toMatchObject({ error: "forbidden", need: "admin", have: "operate", token: "ci" });
    const resync = await call(`${f.base}/v1/channels/shop/resync`, { method: "POST", headers: bearer(READ) });
    expect(resync.status).toBe(403);
    expect(resync.body).toMatchObject({ error: "forbidden", need: "operate", have: "read" });
    const whatIf = await call(`${f.base}/v1/rules/what-if?orders=5`, {
      method: "POST",
      headers: { ...bearer(READ), "Content-Type": "application/toml" },
      body: network,
    });
    expect(whatIf.body).toMatchObject({ error: "forbidden", need: "operate", have: "read" });
    const check = await call(`${f.base}/v1/ledger/check`, { headers: bearer(OPERATE) });
    expect(check.body).toMatchObject({ error: "forbidden", need: "admin", have: "operate" });
  });

  test("enough scope: 2xx, and every operate or admin action is logged with who did it", async () => {
    const resync = await call(`${f.base}/v1/channels/shop/resync`, {
      method: "POST",
      headers: bearer(OPERATE),
    });
    expect(resync.status).toBe(202);
    const whatIf = await call(`${f.base}/v1/rules/what-if?orders=5`, {
      method: "POST",
      headers: { ...bearer(OPERATE), "Content-Type": "application/toml" },
      body: network,
    });
    expect(whatIf.status).toBe(200);
    const put = await call(`${f.base}/v1/rules`, {
      method: "PUT",
      headers: { ...bearer(ADMIN), "Content-Type": "application/toml" },
      body: network,
    });
    expect(put.status).toBe(200);
    const refused = await call(`${f.base}/v1/rules`, {
      method: "PUT",
      headers: { ...bearer(ADMIN), "Content-Type": "application/toml" },
      body: "[[warehouses]]\nid = 1\n",
    });
    expect(refused.status).toBe(400);
    const check = await call(`${f.base}/v1/ledger/check`, { headers: bearer(ADMIN) });
    expect(check.status).toBe(200);
    expect(check.body).toMatchObject({ consistent: true });

    const logs = f.logs;
    expect(logs.audit("channel.resync")).toContainEqual(
      expect.objectContaining({ level: "info", who: "ci", target: "shop", outcome: "accepted", status: 202 }),
    );
    expect(logs.audit("channel.resync")).toContainEqual(
      expect.objectContaining({ who: "viewer", target: "shop", outcome: "forbidden", status: 403 }),
    );
    expect(logs.audit("rules.what-if")).toContainEqual(
      expect.objectContaining({ who: "ci", target: "orders=5", outcome: "ok" }),
    );
    expect(logs.audit("rules.put")).toContainEqual(
      expect.objectContaining({ who: "ops", target: "rules", outcome: "ok", version: put.body.version }),
    );
    expect(logs.audit("rules.put")).toContainEqual(
      expect.objectContaining({ who: "ops", outcome: "refused", status: 400 }),
    );
    expect(logs.audit("rules.put")).toContainEqual(
      expect.objectContaining({ who: "ci", outcome: "forbidden", status: 403 }),
    );
    expect(logs.audit("ledger.check")).toContainEqual(
      expect.objectContaining({ who: "ops", target: "ledger", outcome: "ok", consistent: true }),
    );
    const denied = await call(`${f.base}/v1/rules`, { method: "PUT", body: "{}" });
    expect(denied.status).toBe(401);
    expect(logs.audit("rules.put")).toContainEqual(
      expect.objectContaining({ who: "unknown (no valid token)", outcome: "unauthorized" }),
    );
    // Reads change nothing and are not audited; no line ever holds a secret.
    expect(logs.lines.filter((l) => l.msg === "admin action").length).toBeGreaterThanOrEqual(8);
    for (const secret of [READ, OPERATE, ADMIN]) expect(JSON.stringify(logs.lines)).not.toContain(secret);
    expect(f.fatal).toEqual([]);
  });

  test("/metrics counts refusals by code and scope and actions run by action, token name and outcome", async () => {
    const metrics = async () => String((await call(`${f.base}/metrics`)).body);
    const refused = (text: string, code: string, scope: string) =>
      sample(text, "sluice_http_requests_refused_total", { code, scope });
    const actions = (text: string, labels: Record<string, string>) =>
      sample(text, "sluice_http_admin_actions_total", labels);
    const before = await metrics();
    // Every refusal that can happen has its series from the start (0 until one happens); a read is never 403.
    const seriesOf = (code: string, scope: string) =>
      new RegExp(
        `^sluice_http_requests_refused_total\\{code="${code}",scope="${scope}",node="[^"]+"\\} \\d+$`,
        "m",
      );
    const refusable: Array<[string, string]> = [
      ["401", "read"],
      ["401", "operate"],
      ["401", "admin"],
      ["403", "operate"],
      ["403", "admin"],
    ];
    for (const [code, scope] of refusable) expect(before, `${code} ${scope}`).toMatch(seriesOf(code, scope));
    expect(before).not.toMatch(seriesOf("403", "read"));

    expect((await call(`${f.base}/v1/stock/SKU-1`, { headers: bearer("x".repeat(32)) })).status).toBe(401);
    const low = await call(`${f.base}/v1/ledger/check`, { headers: bearer(OPERATE) });
    expect(low.status).toBe(403);
    const resync = await call(`${f.base}/v1/channels/shop/resync`, {
      method: "POST",
      headers: bearer(OPERATE),
    });
    expect(resync.status).toBe(202);
    const put = await call(`${f.base}/v1/rules`, {
      method: "PUT",
      headers: { ...bearer(ADMIN), "Content-Type": "application/toml" },
      body: "[[warehouses]]\nid = 1\n",
    });
    expect(put.status).toBe(400);

    const after = await metrics();
    const delta = (read: (text: string) => number | null) => (read(after) ?? NaN) - (read(before) ?? NaN);
    expect(delta((t) => refused(t, "401", "read"))).toBe(1);
    expect(delta((t) => refused(t, "403", "admin"))).toBe(1);
    expect(delta((t) => refused(t, "401", "admin"))).toBe(0);
    expect(delta((t) => refused(t, "403", "operate"))).toBe(0);
    // Actions run, by the token's name; the refused check is not one.
    expect(delta((t) => actions(t, { action: "channel.resync", token: "ci", outcome: "accepted" }))).toBe(1);
    expect(delta((t) => actions(t, { action: "rules.put", token: "ops", outcome: "refused" }))).toBe(1);
    expect(delta((t) => actions(t, { action: "ledger.check" }))).toBe(0);
    // The earlier tests' actions are there too: a rule set put and a check by ops.
    expect(actions(after, { action: "rules.put", token: "ops", outcome: "ok" })).toBeGreaterThanOrEqual(1);
    expect(actions(after, { action: "ledger.check", token: "ops", outcome: "ok" })).toBeGreaterThanOrEqual(1);
    // Bounded labels: no secret, no path, no token name of a refused request.
    for (const secret of [READ, OPERATE, ADMIN, "x".repeat(32)]) expect(after).not.toContain(secret);
    const labelNames = after
      .split("\n")
      .filter((l) => l.startsWith("sluice_http_"))
      .map((l) => [...l.matchAll(/(\w+)="/g)].map((m) => m[1]).join(","));
    expect(new Set(labelNames)).toEqual(new Set(["code,scope,node", "action,token,outcome,node"]));
    expect(after).not.toContain("/v1/");
  });

  test("one ledger check at a time: a second while one runs is 429 busy", async () => {
    const both = await Promise.all(
      [0, 1].map(() => call(`${f.base}/v1/ledger/check`, { headers: bearer(ADMIN) })),
    );
    expect(both.map((r) => r.status).sort()).toEqual([200, 429]);
    const busy = both.find((r) => r.status === 429);
    expect(busy?.body).toMatchObject({ error: "busy" });
    expect(f.logs.audit("ledger.check")).toContainEqual(expect.objectContaining({ outcome: "busy" }));
    // Once it is done, the next one runs.
    expect((await call(`${f.base}/v1/ledger/check`, { headers: bearer(ADMIN) })).status).toBe(200);
  });

  test("the ledger check runs off the event loop: the loop the partitions share keeps turning while it scans", async () => {
    // 40,000 SKUs by bulk import (10,000 items a message): a scan long enough to see the loop while it runs.
    const skus = 40_000;
    const producer = await Producer.connect(f.nats.url);
    try {
      for (let m = 0; m < skus / 10_000; m++) {
        const items = Array.from({ length: 10_000 }, (_, i) => ({
          sku: `BULK-${m * 10_000 + i}`,
          type: "received",
          warehouse: "w1",
          qty: 5,
        }));
        await producer.publishJson(`sluice.in.import.auth-${m}`, { items });
      }
    } finally {
      await producer.close();
    }
    const skusChecked = async () => {
      const r = await call(`${f.base}/v1/ledger/check`, { headers: bearer(ADMIN) });
      return r.status === 200
        ? (r.body as { partitions: Array<{ skus: number }> }).partitions.reduce((n, p) => n + p.skus, 0)
        : 0;
    };
    await waitFor(async () => (await skusChecked()) >= skus, "the imports applied", 30_000, 200);
    let lagMsMax = 0;
    let last = performance.now();
    const ticker = setInterval(() => {
      const now = performance.now();
      lagMsMax = Math.max(lagMsMax, now - last - 5);
      last = now;
    }, 5);
    const startedAt = performance.now();
    const check = call(`${f.base}/v1/ledger/check`, { headers: bearer(ADMIN) });
    const read = await call(`${f.base}/v1/stock/BULK-1`, { headers: bearer(READ) });
    const done = await check;
    const tookMs = performance.now() - startedAt;
    clearInterval(ticker);
    expect(read.status).toBe(200);
    expect(done.status).toBe(200);
    const partitions = (done.body as { partitions: Array<{ skus: number }> }).partitions;
    expect(partitions.reduce((n, p) => n + p.skus, 0)).toBeGreaterThanOrEqual(skus);
    console.error(
      `ledger check of ${skus} SKUs: ${tookMs.toFixed(0)} ms, event loop lag at most ${lagMsMax.toFixed(0)} ms`,
    );
    // On the loop, the loop would have stalled for most of the scan.
    expect(lagMsMax).toBeLessThan(Math.max(50, tookMs / 2));
  }, 60_000);

  test("the CLI sends SLUICE_HTTP_TOKEN or --token; without one it gets the 401 and exits 1", async () => {
    const url = ["--url", f.base];
    const without = await runCli(["rules", "get", ...url]);
    expect(without.code).toBe(1);
    expect(without.stderr).toContain("unauthorized");
    const get = await runCli(["rules", "get", ...url], { SLUICE_HTTP_TOKEN: READ });
    expect(get.code, get.stderr).toBe(0);
    expect(get.stderr).toContain("in force:");
    expect((await runCli(["rules", "versions", ...url, "--token", READ])).code).toBe(0);
    const low = await runCli(["channel", "resync", "shop", ...url], { SLUICE_HTTP_TOKEN: READ });
    expect(low.code).toBe(1);
    expect(low.stderr).toContain('"need":"operate"');
    expect((await runCli(["channel", "resync", "shop", ...url], { SLUICE_HTTP_TOKEN: OPERATE })).code).toBe(
      0,
    );
    const cluster = await runCli(["cluster", "status", ...url], { SLUICE_HTTP_TOKEN: READ });
    expect(cluster.stdout).toContain("not_a_cluster"); // past authorization
    const file = join(f.dataDir, "rules.toml");
    await Bun.write(file, network);
    expect((await runCli(["rules", "put", file, ...url], { SLUICE_HTTP_TOKEN: OPERATE })).code).toBe(1);
    const put = await runCli(["rules", "put", file, ...url, "--token", ADMIN]);
    expect(put.code, put.stderr).toBe(0);
    const whatIf = await runCli(["rules", "what-if", file, "--orders", "3", ...url], {
      SLUICE_HTTP_TOKEN: OPERATE,
    });
    expect(whatIf.code, whatIf.stderr).toBe(0);
  });

  test("partition export, an offline admin command, logs the OS user who ran it", async () => {
    const file = join(f.dataDir, "ledger-0.msgpack");
    const r = await runCli(["partition", "export", "ledger", "0", file], {
      SLUICE_DATA_DIR: f.dataDir,
      SLUICE_STREAMS_PARTITION_COUNT: "4",
    });
    expect(r.code, r.stderr).toBe(0);
    const line = r.stdout
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l.msg === "admin action");
    expect(line).toMatchObject({
      level: "info",
      who: `${userInfo().username} (os user)`,
      action: "partition.export",
      target: `ledger 0 ${file}`,
      outcome: "ok",
    });
    expect(r.stdout).toContain("exported");
  });
});

describe("with probes and /metrics behind a token, and a ledger check bound of 1 ms", () => {
  const f = fixture("http-auth-closed", {
    tokens,
    probesTokenRequired: true,
    metricsTokenRequired: true,
    ledgerCheckMsMax: 1,
  });

  test("probes and /metrics need a token (scope read); each refusal is counted", async () => {
    for (const path of ["/healthz", "/readyz", "/metrics"]) {
      expect([path, (await call(`${f.base}${path}`)).status]).toEqual([path, 401]);
      expect([path, (await call(`${f.base}${path}`, { headers: bearer(READ) })).status]).toEqual([path, 200]);
    }
    const text = String((await call(`${f.base}/metrics`, { headers: bearer(READ) })).body);
    expect(sample(text, "sluice_http_requests_refused_total", { code: "401", scope: "read" })).toBe(3);
  });

  test("a check past http.ledgerCheckMsMax answers 503 with how far it got; busy until it has stopped", async () => {
    const r = await call(`${f.base}/v1/ledger/check`, { headers: bearer(ADMIN) });
    expect(r.status).toBe(503);
    expect(r.body).toMatchObject({ error: "check_timeout", partitionsTotal: 4 });
    const body = r.body as { partitionsChecked: number; partitions: unknown[]; detail: string };
    expect(body.partitions).toHaveLength(body.partitionsChecked);
    expect(body.detail).toContain("http.ledgerCheckMsMax");
    expect(f.logs.audit("ledger.check")).toContainEqual(
      expect.objectContaining({ who: "ops", outcome: "timeout", status: 503 }),
    );
    // The worker stops after the partition in hand; until then another check is refused, then one may start.
    await waitFor(
      async () => (await call(`${f.base}/v1/ledger/check`, { headers: bearer(ADMIN) })).status === 503,
      "the stopped check to end and a new one to run (and time out)",
    );
  });
});

describe("without tokens (loopback)", () => {
  const f = fixture("http-auth-open", {});

  test("everything is open, as before; actions are logged as anonymous", async () => {
    expect((await call(`${f.base}/v1/network`)).status).toBe(200);
    expect((await call(`${f.base}/v1/channels/shop/resync`, { method: "POST" })).status).toBe(202);
    expect(f.logs.audit("channel.resync")).toContainEqual(
      expect.objectContaining({ who: "anonymous (no tokens configured)", outcome: "accepted" }),
    );
    const text = String((await call(`${f.base}/metrics`)).body);
    expect(
      sample(text, "sluice_http_admin_actions_total", {
        action: "channel.resync",
        token: "anonymous",
        outcome: "accepted",
      }),
    ).toBe(1);
    expect(sample(text, "sluice_http_requests_refused_total", {})).toBe(0);
  });

  test("a non-loopback http.host without tokens: sluice start exits 78 with the fix", async () => {
    const dataDir = tempDir("http-auth-refused");
    const r = await runCli(["start"], { SLUICE_HTTP_HOST: "0.0.0.0", SLUICE_DATA_DIR: dataDir });
    rmSync(dataDir, { recursive: true, force: true });
    expect(r.code).toBe(78);
    expect(r.stderr).toContain(
      'http.host is "0.0.0.0", reachable from other machines, but http.tokens is empty',
    );
    expect(r.stderr).toContain('SLUICE_HTTP_TOKENS="ops:admin:$(openssl rand -hex 32)"');
  });

  test("config print masks http.tokens", async () => {
    const r = await runCli(["config", "print"], { SLUICE_HTTP_TOKENS: tokens, SLUICE_HTTP_HOST: "0.0.0.0" });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).http.tokens).toBe("***");
    for (const secret of [READ, OPERATE, ADMIN]) expect(r.stdout).not.toContain(secret);
  });
});
