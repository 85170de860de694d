// The container image, checked without a Docker engine (none runs on the dev and CI machines): the Dockerfile
// is parsed and held to its contract, and the commands it runs (the production install, the start command,
// the HEALTHCHECK) are run here the way the image runs them.
import { afterAll, describe, expect, test } from "bun:test";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import type { Subprocess } from "bun";
import { ConfigError, loadConfig } from "../../src/config/index.ts";

const root = join(import.meta.dir, "..", "..");
const bun = process.execPath;
const tmpDirs: string[] = [];
const children: Subprocess[] = [];
const strayPids: number[] = [];

afterAll(() => {
  for (const child of children)
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  for (const pid of strayPids) if (alive(pid)) process.kill(pid, "SIGKILL");
  for (const dir of tmpDirs) rmSync(dir, { recursive: true, force: true });
});

// ---- a small Dockerfile reader ---------------------------------------------------------------------------

type Instruction = { keyword: string; args: string };
type Stage = { from: string; name: string | undefined; instructions: Instruction[] };

/** Joins `\` continuations, drops comments (also inside continuations, as Docker does), splits into stages. */
function parseDockerfile(text: string): Stage[] {
  const logical: string[] = [];
  let pending = "";
  for (const raw of text.split("\n")) {
    const line = raw.trimEnd();
    if (/^\s*#/.test(line) || (pending === "" && line.trim() === "")) continue;
    if (line.endsWith("\\")) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    logical.push((pending + line).trim());
    pending = "";
  }
  if (pending.trim() !== "") logical.push(pending.trim());

  const stages: Stage[] = [];
  for (const line of logical) {
    const match = /^(\S+)\s*(.*)$/.exec(line);
    if (match === null) continue;
    const keyword = (match[1] as string).toUpperCase();
    const args = (match[2] as string).trim();
    if (keyword === "FROM") {
      const from = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      if (from === null) throw new Error(`unreadable FROM ${args}`);
      stages.push({ from: from[1] as string, name: from[2], instructions: [] });
      continue;
    }
    const stage = stages[stages.length - 1];
    if (stage === undefined) {
      if (keyword === "ARG") continue; // ARGs before the first FROM are allowed
      throw new Error(`${keyword} before the first FROM`);
    }
    stage.instructions.push({ keyword, args });
  }
  return stages;
}

const all = (stage: Stage, keyword: string) => stage.instructions.filter((i) => i.keyword === keyword);
const last = (stage: Stage, keyword: string) => all(stage, keyword).at(-1);

function execForm(args: string): string[] {
  expect(args.startsWith("[")).toBe(true); // shell form would put `sh -c` in front and eat SIGTERM
  const parsed: unknown = JSON.parse(args);
  expect(Array.isArray(parsed) && parsed.every((s) => typeof s === "string")).toBe(true);
  return parsed as string[];
}

/** `ENV A=1 B=2` (the `ENV A 1` legacy form too). */
function envOf(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const { args } of all(stage, "ENV")) {
    if (!args.includes("=")) {
      const [name, ...value] = args.split(/\s+/);
      env[name as string] = value.join(" ");
      continue;
    }
    for (const pair of args.match(/\S+=("[^"]*"|\S*)/g) ?? []) {
      const at = pair.indexOf("=");
      env[pair.slice(0, at)] = pair.slice(at + 1).replace(/^"(.*)"$/, "$1");
    }
  }
  return env;
}

/** The `bun install ...` command of a RUN line, as argv. */
function bunInstallOf(stage: Stage): string[] | undefined {
  for (const { args } of all(stage, "RUN")) {
    const command = args
      .split(/&&|;/)
      .map((s) => s.trim())
      .find((s) => /^bun\s+install\b/.test(s));
    if (command !== undefined) return command.split(/\s+/);
  }
  return undefined;
}

/** Sources of the COPY lines (not --from) that come before the RUN that installs. */
function copiedBeforeInstall(stage: Stage): string[] {
  const sources: string[] = [];
  for (const instruction of stage.instructions) {
    if (instruction.keyword === "RUN" && /\bbun\s+install\b/.test(instruction.args)) break;
    if (instruction.keyword !== "COPY" || instruction.args.includes("--from")) continue;
    const words = instruction.args.split(/\s+/).filter((w) => !w.startsWith("--"));
    sources.push(...words.slice(0, -1));
  }
  return sources;
}

const dockerfile = readFileSync(join(root, "Dockerfile"), "utf8");
/** The `docker run …` and `export SLUICE_HTTP_TOKENS=…` lines of the header comment: how the image is run. */
const documented = (prefix: RegExp) =>
  dockerfile
    .split("\n")
    .map((l) => l.replace(/^#\s*/, ""))
    .find((l) => prefix.test(l));
/** A token as the documented `export` line makes one, its `$(openssl rand -hex 32)` spelled out. */
const documentedTokens = () =>
  /^export SLUICE_HTTP_TOKENS="([^"]+)"/
    .exec(documented(/^export SLUICE_HTTP_TOKENS=/) ?? "")?.[1]
    ?.replace("$(openssl rand -hex 32)", "ab".repeat(32));
const stages = parseDockerfile(dockerfile);
const build = stages[0] as Stage;
const final = stages[stages.length - 1] as Stage;

// ---- helpers ---------------------------------------------------------------------------------------------

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tmpDirs.push(dir);
  return dir;
}

function freePort(): number {
  const server = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response() });
  const port = server.port as number;
  server.stop(true);
  return port;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The environment the test runs in, without any SLUICE_ variable (Sluice rejects ones it does not know). */
function cleanEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (!k.startsWith("SLUICE_") && v !== undefined) env[k] = v;
  return { ...env, ...extra };
}

/** argv from the image, with `bun` as the bun running this test (same binary the image pins). */
const local = (argv: string[]) => argv.map((a, i) => (i === 0 && a === "bun" ? bun : a));

async function run(argv: string[], cwd: string, env: Record<string, string>, timeoutMs = 20_000) {
  const child = Bun.spawn(local(argv), { cwd, env, stdout: "pipe", stderr: "pipe" });
  children.push(child);
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const [stdout, stderr, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

async function status(url: string): Promise<number> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(1000) });
    await response.arrayBuffer();
    return response.status;
  } catch {
    return 0;
  }
}

// ---- (a) the Dockerfile's contract -------------------------------------------------------------------------

describe("Dockerfile", () => {
  test("is multi-stage, on pinned oven/bun images of one Bun version, slim at run time", () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    const versions = stages.map((s) => {
      const match = /^oven\/bun:(\d+\.\d+\.\d+)(-[a-z]+)?(@sha256:[0-9a-f]{64})?$/.exec(s.from);
      expect(match, `FROM ${s.from} must pin oven/bun:X.Y.Z[-variant]`).not.toBeNull();
      return match?.[1];
    });
    expect(new Set(versions).size).toBe(1);
    expect(final.from).toContain("-slim");
    // The runtime stage takes the build stage's output, not the host's node_modules.
    expect(build.name).toBeDefined();
    expect(all(final, "COPY").some((c) => c.args.includes(`--from=${build.name}`))).toBe(true);
  });

  test("installs with --frozen-lockfile --production in the build stage", () => {
    const install = bunInstallOf(build);
    expect(install).toBeDefined();
    expect(install).toContain("--frozen-lockfile");
    expect(install).toContain("--production");
    expect(copiedBeforeInstall(build)).toEqual(expect.arrayContaining(["package.json", "bun.lock"]));
  });

  test("copies only sources that exist and that .dockerignore keeps", () => {
    const ignored = new Set(
      readFileSync(join(root, ".dockerignore"), "utf8")
        .split("\n")
        .map((l) => l.trim().replace(/\/$/, ""))
        .filter((l) => l !== "" && !l.startsWith("#")),
    );
    for (const stage of stages) {
      for (const { args } of all(stage, "COPY")) {
        if (args.includes("--from")) continue;
        const sources = args
          .split(/\s+/)
          .filter((w) => !w.startsWith("--"))
          .slice(0, -1);
        for (const source of sources) {
          expect(existsSync(join(root, source)), `COPY ${source}`).toBe(true);
          expect(ignored.has(source) || ignored.has(basename(source)), `.dockerignore drops ${source}`).toBe(
            false,
          );
        }
      }
    }
    for (const needed of ["node_modules", ".git", "data", "test"]) expect(ignored.has(needed)).toBe(true);
  });

  test("runs as a non-root user in the final stage", () => {
    const user = last(final, "USER");
    expect(user).toBeDefined();
    const [name] = (user as Instruction).args.split(":");
    expect(["root", "0", ""]).not.toContain(name);
    // The user must be created in the image, with a fixed uid.
    expect(all(final, "RUN").some((r) => /useradd\b.*--uid\s+10001\b.*\bsluice\b/.test(r.args))).toBe(true);
  });

  test("installs Debian's nats-server for the embedded default", () => {
    expect(all(final, "RUN").some((r) => /apt-get install\b.*\bnats-server\b/.test(r.args))).toBe(true);
  });

  test("ENTRYPOINT + CMD are the start command of package.json, in exec form", () => {
    const entrypoint = execForm((last(final, "ENTRYPOINT") as Instruction).args);
    const cmd = execForm((last(final, "CMD") as Instruction).args);
    expect([...entrypoint, ...cmd].join(" ")).toBe("bun src/cli.ts start");
    const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
      scripts: { start: string };
    };
    expect(pkg.scripts.start).toBe("bun src/cli.ts start");
    expect(last(final, "STOPSIGNAL")?.args).toBe("SIGTERM");
  });

  test("has a HEALTHCHECK running scripts/healthcheck.ts, with room for its 2 s fetch timeout", () => {
    const healthcheck = last(final, "HEALTHCHECK");
    expect(healthcheck).toBeDefined();
    const args = (healthcheck as Instruction).args;
    const cmdAt = args.indexOf("CMD");
    expect(cmdAt).toBeGreaterThanOrEqual(0);
    const argv = execForm(args.slice(cmdAt + 3).trim());
    expect(argv).toEqual(["bun", "scripts/healthcheck.ts"]);
    expect(existsSync(join(root, "scripts/healthcheck.ts"))).toBe(true);
    const timeout = /--timeout=(\d+)s/.exec(args);
    expect(Number(timeout?.[1] ?? 30)).toBeGreaterThan(2);
  });

  test("ENV names are Sluice settings whose values load with the documented token, with the data dir on the VOLUME and the port EXPOSEd", () => {
    const env = envOf(final);
    // No token is baked into the image: it binds every interface, so without one the start is refused.
    expect(Object.keys(env).filter((k) => k.startsWith("SLUICE_HTTP_TOKEN"))).toEqual([]);
    expect(() => loadConfig({ file: join(root, "config/sluice.toml"), env })).toThrow(ConfigError);
    expect(() => loadConfig({ file: join(root, "config/sluice.toml"), env })).toThrow(
      /http\.host is "0\.0\.0\.0", reachable from other machines, but http\.tokens is empty.*SLUICE_HTTP_TOKENS=/,
    );
    // loadConfig throws on an unknown SLUICE_ variable or a bad value: the container would exit 78 at start.
    const tokens = documentedTokens();
    expect(tokens, "the header's export SLUICE_HTTP_TOKENS=… line").toBeDefined();
    const config = loadConfig({
      file: join(root, "config/sluice.toml"),
      env: { ...env, SLUICE_HTTP_TOKENS: tokens as string },
    });
    expect(config.data.dir).toBe("/var/lib/sluice");
    expect(config.http.host).toBe("0.0.0.0");
    expect(
      last(final, "VOLUME")
        ?.args.replace(/[[\]"]/g, "")
        .split(/[\s,]+/),
    ).toContain(config.data.dir);
    expect(last(final, "EXPOSE")?.args.split(/\s+/)).toContain(String(config.http.port));
    expect(all(final, "RUN").some((r) => r.args.includes(config.data.dir) && r.args.includes("sluice"))).toBe(
      true,
    );
  });

  test("the documented docker run passes SLUICE_HTTP_TOKENS from the environment, not on the command line", () => {
    const run = documented(/^docker run /);
    expect(run).toBeDefined();
    const words = (run as string).split(/\s+/);
    const at = words.indexOf("-e");
    expect(at).toBeGreaterThan(0);
    expect(words[at + 1]).toBe("SLUICE_HTTP_TOKENS");
    expect(words).toContain(`-p`);
  });
});

// ---- (b) the production install the build stage runs -------------------------------------------------------

describe("production install", () => {
  test("succeeds from the lockfile and yields working native lmdb and msgpackr", async () => {
    const dir = tempDir("sluice-image-install-");
    const copied = copiedBeforeInstall(build);
    for (const file of copied) cpSync(join(root, file), join(dir, file));
    const install = bunInstallOf(build) as string[];
    const result = await run(install, dir, cleanEnv({}), 120_000);
    expect(result.code, `${install.join(" ")}\n${result.stdout}\n${result.stderr}`).toBe(0);

    const has = (name: string) => existsSync(join(dir, "node_modules", name, "package.json"));
    for (const name of ["lmdb", "msgpackr", "@nats-io/jetstream", "@nats-io/transport-node", "prom-client"]) {
      expect(has(name), `node_modules/${name}`).toBe(true);
    }
    for (const dev of ["typescript", "@biomejs/biome", "fast-check"])
      expect(has(dev), `dev ${dev}`).toBe(false);
    if (process.platform === "linux" && process.arch === "x64") {
      expect(has("@lmdb/lmdb-linux-x64")).toBe(true);
      expect(has("@msgpackr-extract/msgpackr-extract-linux-x64")).toBe(true);
    }

    const db = join(dir, "db");
    const script = `
      const { open } = require("lmdb");
      require("msgpackr-extract");
      const { pack, unpack } = require("msgpackr");
      const db = open({ path: ${JSON.stringify(db)} });
      await db.put("k", { n: 1 });
      const value = db.get("k");
      await db.close();
      console.log(JSON.stringify({ value, roundTrip: unpack(pack({ a: [1, "b"] })) }));
    `;
    const check = await run(["bun", "-e", script], dir, cleanEnv({}));
    expect(check.code, check.stderr).toBe(0);
    expect(JSON.parse(check.stdout.trim())).toEqual({ value: { n: 1 }, roundTrip: { a: [1, "b"] } });
  }, 130_000);
});

// ---- (c) the image's start command and HEALTHCHECK ---------------------------------------------------------

describe("start command and healthcheck", () => {
  const healthcheckArgv = () =>
    execForm(((last(final, "HEALTHCHECK") as Instruction).args.split("CMD")[1] as string).trim());
  const healthcheck = (port: number, ...extra: string[]) =>
    run([...healthcheckArgv(), ...extra], root, cleanEnv({ SLUICE_HTTP_PORT: String(port) }), 10_000);
  const startArgv = () => [
    ...execForm((last(final, "ENTRYPOINT") as Instruction).args),
    ...execForm((last(final, "CMD") as Instruction).args),
  ];

  test("the image's start refuses (exit 78, with the fix) without SLUICE_HTTP_TOKENS", async () => {
    const env = cleanEnv({
      ...envOf(final),
      SLUICE_DATA_DIR: tempDir("sluice-image-refused-"),
      SLUICE_HTTP_PORT: String(freePort()),
      SLUICE_NATS_EMBEDDED_PORT: "0",
    });
    const refused = await run(startArgv(), root, env);
    expect(refused.code, refused.stdout + refused.stderr).toBe(78);
    expect(refused.stderr).toContain("http.tokens is empty");
    expect(refused.stderr).toContain("SLUICE_HTTP_TOKENS=");
    expect(refused.stdout).not.toContain("embedded nats-server started"); // refused before anything started
    // A malformed token is refused the same way, without echoing it.
    const secret = "short-secret";
    const bad = await run(startArgv(), root, { ...env, SLUICE_HTTP_TOKENS: `ops:admin:${secret}` });
    expect(bad.code).toBe(78);
    expect(bad.stderr).toContain("http.tokens is invalid: entry 1: the secret has 12 characters");
    expect(bad.stderr).not.toContain(secret);
  }, 30_000);

  test("Sluice starts as the image starts it (every interface, the documented token), passes both checks, and exits 0 on SIGTERM", async () => {
    const port = freePort();
    const argv = startArgv();
    const tokens = documentedTokens() as string;
    const env = cleanEnv({
      ...envOf(final),
      SLUICE_HTTP_TOKENS: tokens,
      SLUICE_DATA_DIR: tempDir("sluice-image-data-"),
      SLUICE_HTTP_PORT: String(port),
      SLUICE_NATS_EMBEDDED_PORT: "0",
    });
    const sluice = Bun.spawn(local(argv), { cwd: root, env, stdout: "pipe", stderr: "pipe" });
    children.push(sluice);
    let logs = "";
    const drain = async (stream: ReadableStream<Uint8Array>) => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) {
        logs += decoder.decode(chunk, { stream: true });
        const pid = /"msg":"embedded nats-server started".*?"pid":(\d+)/.exec(logs)?.[1];
        if (pid !== undefined && !strayPids.includes(Number(pid))) strayPids.push(Number(pid));
      }
    };
    const drained = Promise.all([drain(sluice.stdout), drain(sluice.stderr)]);

    const waitFor = async (path: string, deadlineMs: number) => {
      const deadline = Date.now() + deadlineMs;
      while (Date.now() < deadline) {
        if (sluice.exitCode !== null) throw new Error(`Sluice exited ${sluice.exitCode} at start:\n${logs}`);
        if ((await status(`http://127.0.0.1:${port}${path}`)) === 200) return;
        await Bun.sleep(100);
      }
      throw new Error(`${path} not 200 within ${deadlineMs} ms:\n${logs}`);
    };

    await waitFor("/healthz", 15_000);
    const live = await healthcheck(port);
    expect(live.code, live.stdout + live.stderr).toBe(0);
    expect(live.stdout.trim().split("\n")).toHaveLength(1);
    expect(live.stdout).toContain("/healthz");

    await waitFor("/readyz", 10_000);
    const ready = await healthcheck(port, "--ready");
    expect(ready.code, ready.stdout + ready.stderr).toBe(0);
    expect(ready.stdout).toContain("/readyz");

    // Probes are open (the default); the API needs the token.
    const secret = tokens.split(":")[2] as string;
    expect(await status(`http://127.0.0.1:${port}/v1/rules`)).toBe(401);
    const rules = await fetch(`http://127.0.0.1:${port}/v1/rules`, {
      headers: { Authorization: `Bearer ${secret}` },
    });
    await rules.arrayBuffer();
    expect(rules.status).toBe(200);

    expect(strayPids.length).toBe(1); // the embedded nats-server, started from /usr/sbin or PATH
    const natsPid = strayPids[0] as number;
    expect(alive(natsPid)).toBe(true);

    const stoppedAt = Date.now();
    sluice.kill("SIGTERM");
    const exited = await Promise.race([sluice.exited, Bun.sleep(15_000).then(() => "timeout" as const)]);
    expect(exited, `no exit within 15 s of SIGTERM:\n${logs}`).not.toBe("timeout");
    await drained;
    expect(sluice.signalCode, logs).toBeNull();
    expect(sluice.exitCode, logs).toBe(0);
    expect(Date.now() - stoppedAt).toBeLessThan(15_000);
    expect(logs).toContain('"msg":"sluice stopped"');
    expect(alive(natsPid), "the embedded nats-server outlived Sluice").toBe(false);

    // Nothing listens on the port any more: the probe must say unhealthy.
    const down = await healthcheck(port);
    expect(down.code).toBe(1);
    expect(down.stdout).toContain("fail");
  }, 40_000);

  test("the healthcheck exits 1 when nothing listens, on a non-200 answer and on a silent server", async () => {
    const nothing = await healthcheck(freePort());
    expect(nothing.code).toBe(1);
    expect(nothing.stdout.trim().split("\n")).toHaveLength(1);

    const fake = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      routes: {
        "/healthz": () => new Response("alive"),
        "/readyz": () => new Response("not ready", { status: 503 }),
      },
      fetch: () => new Response("not found", { status: 404 }),
    });
    const silent = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch: () => new Promise<Response>(() => {}), // never answers
    });
    try {
      expect((await healthcheck(fake.port as number)).code).toBe(0);
      const notReady = await healthcheck(fake.port as number, "--ready");
      expect(notReady.code).toBe(1);
      expect(notReady.stdout).toContain("503");
      const startedAt = Date.now();
      const hung = await healthcheck(silent.port as number);
      expect(hung.code).toBe(1);
      expect(hung.stdout).toContain("2000 ms");
      expect(Date.now() - startedAt).toBeLessThan(5000);
      expect((await healthcheck(fake.port as number, "--bogus")).code).toBe(1);
    } finally {
      fake.stop(true);
      silent.stop(true);
    }
  }, 20_000);

  test("with probes behind a token, the healthcheck sends SLUICE_HTTP_TOKEN or the first SLUICE_HTTP_TOKENS secret", async () => {
    const secret = "cd".repeat(16);
    const guarded = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch: (req) =>
        req.headers.get("authorization") === `Bearer ${secret}`
          ? new Response("alive")
          : new Response("unauthorized", { status: 401 }),
    });
    const probe = (env: Record<string, string>) =>
      run(healthcheckArgv(), root, cleanEnv({ SLUICE_HTTP_PORT: String(guarded.port), ...env }), 10_000);
    try {
      const without = await probe({});
      expect(without.code).toBe(1);
      expect(without.stdout).toContain("401");
      const fromConfig = await probe({
        SLUICE_HTTP_TOKENS: `probe:read:${secret}, ops:admin:${"ef".repeat(16)}`,
      });
      expect(fromConfig.code, fromConfig.stdout).toBe(0);
      expect((await probe({ SLUICE_HTTP_TOKEN: secret })).code).toBe(0);
      expect((await probe({ SLUICE_HTTP_TOKEN: "ab".repeat(16) })).code).toBe(1);
    } finally {
      guarded.stop(true);
    }
  }, 20_000);
});
