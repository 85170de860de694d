// The local stack (issue 13): (a) `scripts/stack.sh up` for real on loopback: nats-server, Sluice, the ERP
// receiver, the reference sink and Prometheus answer, a stock message goes through, Prometheus scrapes both
// jobs with the rules loaded, the running stack is the one the compose file describes, then status and
// `down --clean`; (b) deploy/compose/ read without Docker (there is no engine on the dev and CI machines) and
// held to the script: services, host ports, Sluice's settings, the sink's options, the receiver, the scrape
// jobs, the rule file and the mappings block. Bun reads the YAML (Bun.YAML); nothing is parsed by hand except
// the nats-server config's mappings block, which `nats-server -t` also checks. Prometheus is a hard
// requirement, as in the dashboard test: a machine without it fails here with the fix.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { YAML } from "bun";
import { loadConfig } from "../../src/config/index.ts";
import { parseSinkOptions } from "../../src/sink/index.ts";
import { subjectMappings } from "../../src/stream/subjects.ts";
import { tempDir, waitFor } from "../helpers/index.ts";
import { freePort, runCli } from "../helpers/process.ts";

const root = resolve(import.meta.dir, "..", "..");
const script = join(root, "scripts/stack.sh");
const composeDir = join(root, "deploy/compose");
const composeFile = join(composeDir, "docker-compose.yml");
const composePrometheusFile = join(composeDir, "prometheus.yml");
const rulesFile = join(root, "deploy/prometheus/sluice-rules.yml");
/** A DIR with no stack in it: the script's defaults, whatever a developer's ./.stack holds. */
const noStack = join(tmpdir(), `sluice-no-stack-${process.pid}`);
/** The parts scripts/stack.sh runs, each a compose service of the same name. */
const parts = ["nats", "sluice", "receiver", "sink", "prometheus"];
const installFix =
  "the prometheus binary is not on PATH: run 'apt-get install -y --no-install-recommends prometheus' " +
  "(Debian/Ubuntu; CI installs it), or put prometheus from https://prometheus.io/download/ on PATH";

// ---- helpers ---------------------------------------------------------------------------------------------

/** This environment without SLUICE_* variables, as an operator's shell would be. */
function shellEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (!k.startsWith("SLUICE_") && v !== undefined) env[k] = v;
  return env;
}

async function stack(args: string[], timeoutMs = 60_000) {
  const child = Bun.spawn(["bash", script, ...args], {
    cwd: root,
    env: shellEnv(),
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const [stdout, stderr, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  clearTimeout(timer);
  return { stdout, stderr, code, said: `scripts/stack.sh ${args.join(" ")} → ${code}\n${stdout}\n${stderr}` };
}

/** `NAME=VALUE` of the script's `env` (`export NAME=VALUE` lines, values as printf %q writes them). */
function parseExports(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const match = /^export ([A-Z0-9_]+)=(.*)$/.exec(line);
    if (match !== null) env[match[1] as string] = (match[2] as string).replace(/\\(.)/g, "$1");
  }
  return env;
}

/** `name port url` lines of the script's `ports`. */
async function scriptPorts(args: string[] = []): Promise<Map<string, number>> {
  const r = await stack(["ports", ...args]);
  expect(r.code, r.said).toBe(0);
  const ports = new Map<string, number>();
  for (const line of r.stdout.trim().split("\n")) {
    const [name, port] = line.split(" ");
    ports.set(name as string, Number(port));
  }
  return ports;
}

/** N such that N … N+5 (every port of a stack) are free on loopback now. */
function freePortBase(): number {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 30_000);
    const servers = [];
    try {
      for (let i = 0; i <= 5; i++)
        servers.push(Bun.serve({ hostname: "127.0.0.1", port: base + i, fetch: () => new Response() }));
      return base;
    } catch {
      // one of them is taken: another base
    } finally {
      for (const s of servers) s.stop(true);
    }
  }
  throw new Error("no free range of 6 ports on loopback after 50 tries");
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The mappings block of a nats-server config: `"from": "to"` lines between `mappings = {` and `}`. */
function mappingsOf(conf: string): Record<string, string> {
  const block = /^\s*mappings\s*=\s*\{\n([\s\S]*?)\n\s*\}/m.exec(conf);
  if (block === null) throw new Error(`no mappings block in:\n${conf}`);
  const out: Record<string, string> = {};
  for (const line of (block[1] as string).split("\n")) {
    if (line.trim() === "") continue;
    const m = /^\s*("[^"]+")\s*:\s*("[^"]+")\s*$/.exec(line);
    if (m === null) throw new Error(`unreadable mapping line: ${line}`);
    out[JSON.parse(m[1] as string)] = JSON.parse(m[2] as string);
  }
  return out;
}

/** `listen: "host:port"` / `http: "host:port"` of a nats-server config. */
const natsPortOf = (conf: string, key: "listen" | "http") =>
  Number(new RegExp(`^${key}:\\s*"[^"]*:(\\d+)"`, "m").exec(conf)?.[1]);

// ---- the compose file, as Bun reads it ---------------------------------------------------------------------

type Service = {
  image?: string;
  build?: { context: string; dockerfile: string };
  entrypoint?: string[];
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  configs?: { source: string; target: string }[];
  depends_on?: string[] | Record<string, { condition: string }>;
  healthcheck?: { test?: string[]; disable?: boolean };
};
type Compose = {
  services: Record<string, Service>;
  configs: Record<string, { content: string }>;
  volumes: Record<string, unknown>;
};
type PrometheusConfig = {
  global: { scrape_interval: string; evaluation_interval: string };
  rule_files: string[];
  scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
};

const composeText = readFileSync(composeFile, "utf8");
const compose = YAML.parse(composeText) as Compose;
const composePrometheus = YAML.parse(readFileSync(composePrometheusFile, "utf8")) as PrometheusConfig;

function service(name: string): Service {
  const s = compose.services[name];
  if (s === undefined) throw new Error(`no service ${name} in ${composeFile}`);
  return s;
}

/** `127.0.0.1:HOST:CONTAINER` entries of a service. */
function published(name: string): { host: string; hostPort: number; containerPort: number }[] {
  return (service(name).ports ?? []).map((p) => {
    const m = /^([\d.]+):(\d+):(\d+)$/.exec(p);
    if (m === null) throw new Error(`${name}: port ${p} is not HOST_IP:HOST_PORT:CONTAINER_PORT`);
    return { host: m[1] as string, hostPort: Number(m[2]), containerPort: Number(m[3]) };
  });
}

/** A volume or bind mount `SOURCE:TARGET[:ro]` of a service, by target. */
function mountAt(name: string, target: string): string | undefined {
  for (const v of service(name).volumes ?? []) {
    const [source, at] = v.split(":");
    if (at === target) return source;
  }
  return undefined;
}

/** The config file mounted into a service at `target`, by its content. */
function configAt(name: string, target: string): string {
  const ref = service(name).configs?.find((c) => c.target === target);
  if (ref === undefined) throw new Error(`${name} mounts no config at ${target}`);
  const config = compose.configs[ref.source];
  if (config === undefined) throw new Error(`config ${ref.source} is not defined`);
  return config.content;
}

const argv = (s: Service) => [...(s.entrypoint ?? []), ...(s.command ?? [])];
const flag = (args: string[], name: string) => {
  const at = args.indexOf(name);
  return at < 0 ? undefined : args[at + 1];
};
const natsConf = () => {
  const nats = service("nats");
  return configAt("nats", flag(nats.command ?? [], "--config") as string);
};
const sinkArgs = () => {
  const args = argv(service("sink"));
  expect(args.slice(0, 2)).toEqual(["bun", "src/sink/main.ts"]);
  return args.slice(2);
};

// ---- (a) the stack for real --------------------------------------------------------------------------------

describe("scripts/stack.sh up, for real", () => {
  const dir = join(tempDir("stack"), "stack");
  const portBase = freePortBase();
  let up: Awaited<ReturnType<typeof stack>>;
  let ports: Map<string, number>;
  let env: Record<string, string>;
  /** The parts' pids once up, to check that down stopped them (and to kill them should the test fail). */
  const pids = new Map<string, number>();
  const pidOf = (part: string) => Number(readFileSync(join(dir, part, `${part}.pid`), "utf8").trim());
  const base = (part: string) => `http://127.0.0.1:${ports.get(part)}`;
  const started = () => expect(up.code, up.said).toBe(0);

  beforeAll(async () => {
    up = await stack(["up", "--dir", dir, "--port-base", String(portBase)], 90_000);
    ports = await scriptPorts(["--port-base", String(portBase)]);
    env = parseExports((await stack(["env", "--dir", dir])).stdout);
    if (up.code === 0) for (const part of parts) pids.set(part, pidOf(part));
  }, 100_000);

  afterAll(async () => {
    if (existsSync(dir)) await stack(["down", "--dir", dir, "--clean"], 40_000);
    for (const pid of pids.values()) if (alive(pid)) process.kill(pid, "SIGKILL");
    rmSync(resolve(dir, ".."), { recursive: true, force: true });
  }, 45_000);

  test("prometheus is installed (CI installs Debian's package)", () => {
    expect(Bun.which("prometheus"), installFix).not.toBeNull();
  });

  test("up starts every part, each answering, and prints where to look", async () => {
    started();
    expect([...ports.keys()]).toEqual([...parts, "nats-monitoring"]);
    expect(ports.get("nats")).toBe(portBase);
    expect(new Set(ports.values()).size).toBe(ports.size);
    expect((await fetch(`${base("sluice")}/readyz`)).status).toBe(200);
    expect((await fetch(`${base("sink")}/metrics`)).status).toBe(200);
    expect((await fetch(`${base("prometheus")}/-/ready`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${ports.get("nats-monitoring")}/healthz`)).status).toBe(200);
    for (const where of [
      base("sluice"),
      `${base("sluice")}/metrics`,
      `${base("sink")}/metrics`,
      `${base("prometheus")}/targets`,
      `${base("prometheus")}/alerts`,
      `nats://127.0.0.1:${portBase}`,
      `${dir}/<part>/<part>.log`,
      "deploy/grafana/sluice-dashboard.json",
      `scripts/stack.sh down --dir ${dir}`,
    ])
      expect(up.stdout, where).toContain(where);
  });

  test("a stock message sent through NATS shows in /v1/stock and the sink delivers its ERP batch", async () => {
    started();
    expect(env.SLUICE_NATS_URL).toBe(`nats://127.0.0.1:${portBase}`);
    const sent = await runCli(
      ["send", "sluice.in.stock.SKU-STACK-1", '{"type":"received","warehouse":"w1","qty":10}'],
      env,
    );
    expect(sent.code, sent.stdout + sent.stderr).toBe(0);
    expect(sent.stdout).toContain("SLUICE_LEDGER"); // through the server's mapping, not the unrouted fallback
    const stock = await waitFor(
      async () => {
        const r = await fetch(`${base("sluice")}/v1/stock/SKU-STACK-1`);
        const body =
          r.status === 200 ? ((await r.json()) as { positions: { w1?: { onHand: number } } }) : null;
        return body?.positions.w1?.onHand === 10 ? body : null;
      },
      "SKU-STACK-1 onHand 10 in /v1/stock",
      15_000,
      100,
    );
    expect(stock.positions.w1?.onHand).toBe(10);
    // The ERP batch of that movement: Sluice → SLUICE_OUT → the sink → the receiver's log.
    const delivered = await waitFor(
      () =>
        readFileSync(join(dir, "receiver", "receiver.log"), "utf8")
          .split("\n")
          .find((l) => l.includes('"msg":"received"') && l.includes("SKU-STACK-1")),
      "the ERP batch with SKU-STACK-1 in the receiver's log",
      20_000,
      100,
    );
    const line = JSON.parse(delivered) as {
      path: string;
      idempotencyKey: string;
      body: { movements: unknown[] };
    };
    expect(line.path).toBe("/erp");
    expect(line.idempotencyKey).toMatch(/^erp-ledger-/);
    expect(line.body.movements).toContainEqual(
      expect.objectContaining({ sku: "SKU-STACK-1", warehouse: "w1", type: "received", qty: 10 }),
    );
  }, 45_000);

  test("Prometheus scrapes Sluice as job sluice and the sink as job sluice-sink, with the rules loaded", async () => {
    started();
    type Target = { labels: { job: string }; scrapeUrl: string; health: string; lastError: string };
    const targets = await waitFor(
      async () => {
        const r = (await (await fetch(`${base("prometheus")}/api/v1/targets`)).json()) as {
          data: { activeTargets: Target[] };
        };
        const active = r.data.activeTargets;
        return active.length === 2 && active.every((t) => t.health === "up") ? active : null;
      },
      "both targets up in Prometheus",
      30_000,
      250,
    );
    const byJob = Object.fromEntries(targets.map((t) => [t.labels.job, t.scrapeUrl]));
    expect(byJob).toEqual({ sluice: `${base("sluice")}/metrics`, "sluice-sink": `${base("sink")}/metrics` });

    const rules = (await (await fetch(`${base("prometheus")}/api/v1/rules`)).json()) as {
      data: { groups: { name: string; file: string; rules: { health: string }[] }[] };
    };
    const expected = (YAML.parse(readFileSync(rulesFile, "utf8")) as { groups: { name: string }[] }).groups;
    // Prometheus lists the groups in its own order.
    expect(rules.data.groups.map((g) => g.name).sort()).toEqual(expected.map((g) => g.name).sort());
    for (const g of rules.data.groups) {
      expect(g.file).toBe(rulesFile);
      expect(g.rules.length).toBeGreaterThan(0);
    }
  }, 40_000);

  test("the running stack is the one the compose file describes", () => {
    started();
    // nats: the same mappings block, the same partition count as Sluice's.
    const conf = readFileSync(join(dir, "nats", "nats-server.conf"), "utf8");
    expect(mappingsOf(conf)).toEqual(mappingsOf(natsConf()));
    expect(natsPortOf(conf, "listen")).toBe(ports.get("nats") as number);
    expect(natsPortOf(conf, "http")).toBe(ports.get("nats-monitoring") as number);

    // Sluice: the settings `env` prints are the ones it runs with, and the compose service sets every one.
    const sluiceEnv = service("sluice").environment ?? {};
    const running: Record<string, string> = {};
    if (existsSync("/proc")) {
      for (const kv of readFileSync(`/proc/${pids.get("sluice")}/environ`, "utf8").split("\0")) {
        const at = kv.indexOf("=");
        if (kv.startsWith("SLUICE_")) running[kv.slice(0, at)] = kv.slice(at + 1);
      }
      expect(running).toEqual(env);
    }
    expect(Object.keys(sluiceEnv)).toEqual(expect.arrayContaining(Object.keys(env)));
    expect(sluiceEnv.SLUICE_STREAMS_PARTITION_COUNT).toBe(env.SLUICE_STREAMS_PARTITION_COUNT);

    // Prometheus: the same intervals, jobs (in order) and rule file; only the targets' hosts differ.
    const prom = YAML.parse(
      readFileSync(join(dir, "prometheus", "prometheus.yml"), "utf8"),
    ) as PrometheusConfig;
    expect(prom.global).toEqual(composePrometheus.global);
    expect(prom.scrape_configs.map((j) => j.job_name)).toEqual(
      composePrometheus.scrape_configs.map((j) => j.job_name),
    );
    expect(prom.rule_files).toEqual([rulesFile]);
    expect(composePrometheus.rule_files.map((f) => f.split("/").at(-1))).toEqual(["sluice-rules.yml"]);

    // The sink: the same options but for hosts and ports.
    if (existsSync("/proc")) {
      const cmdline = readFileSync(`/proc/${pids.get("sink")}/cmdline`, "utf8")
        .split("\0")
        .filter(Boolean);
      const at = cmdline.indexOf("src/sink/main.ts");
      expect(at).toBeGreaterThan(0);
      const ours = parseSinkOptions(cmdline.slice(at + 1), {});
      const theirs = parseSinkOptions(sinkArgs(), {});
      if (!ours.ok || !theirs.ok) throw new Error("a sink command line does not parse");
      const { natsUrl, url, metricsPort, metricsHost, ...same } = ours.value;
      const { natsUrl: n2, url: u2, metricsPort: m2, metricsHost: h2, ...same2 } = theirs.value;
      expect(same).toEqual(same2);
      expect(new URL(url).pathname).toBe(new URL(u2).pathname);
      expect(natsUrl).toBe(env.SLUICE_NATS_URL as string);
      expect(metricsPort).toBe(ports.get("sink") as number);
      expect(metricsHost).toBe("127.0.0.1");
      expect(new URL(url).port).toBe(String(ports.get("receiver")));
    }
  });

  test("status shows every part up", async () => {
    started();
    const status = await stack(["status", "--dir", dir]);
    expect(status.code, status.said).toBe(0);
    const lines = status.stdout.trim().split("\n");
    expect(lines.map((l) => l.split(/\s+/)[0])).toEqual(parts);
    for (const line of lines) expect(line, line).toMatch(/\sup \(pid \d+\)$/);
  });

  test("up refuses while the stack runs; down --clean stops every part and removes DIR", async () => {
    started();
    const again = await stack(["up", "--dir", dir, "--port-base", String(portBase)]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("is running");
    expect(again.stderr).toContain(`scripts/stack.sh down --dir ${dir}`);

    const down = await stack(["down", "--dir", dir, "--clean"], 40_000);
    expect(down.code, down.said).toBe(0);
    for (const [part, pid] of pids) expect(alive(pid), `${part} (pid ${pid}) still runs`).toBe(false);
    expect(existsSync(dir)).toBe(false);
    // Sluice stopped gracefully: nothing listens on its port any more.
    expect(await fetch(`${base("sluice")}/healthz`).catch(() => null)).toBeNull();
    const status = await stack(["status", "--dir", dir]);
    expect(status.code).toBe(1);
    expect(status.stderr).toContain("no stack in");
  }, 45_000);
});

describe("scripts/stack.sh without its tools", () => {
  test("up without prometheus on PATH starts nothing and names the install command", async () => {
    // PATH: every program of this machine's bin directories but prometheus.
    const bin = tempDir("stack-path");
    const dir = join(bin, "stack");
    try {
      for (const from of ["/usr/local/bin", "/usr/bin", "/usr/sbin"]) {
        if (!existsSync(from)) continue;
        for (const name of readdirSync(from))
          if (name !== "prometheus" && !existsSync(join(bin, name)))
            symlinkSync(join(from, name), join(bin, name));
      }
      const child = Bun.spawn(["bash", script, "up", "--dir", dir, "--port-base", String(freePortBase())], {
        cwd: root,
        env: { ...shellEnv(), PATH: bin },
        stdout: "pipe",
        stderr: "pipe",
      });
      const [stderr, code] = await Promise.all([new Response(child.stderr).text(), child.exited]);
      expect(code, stderr).toBe(1);
      expect(stderr).toContain("prometheus not found");
      expect(stderr).toContain("apt-get install -y --no-install-recommends prometheus");
      expect(existsSync(dir)).toBe(false);
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });
});

// ---- (b) the compose file, held to the script ----------------------------------------------------------------

describe("deploy/compose/docker-compose.yml describes the same stack", () => {
  test("one service per part of the script (and Grafana), Sluice's image built from the repository's Dockerfile", () => {
    expect(Object.keys(compose.services).sort()).toEqual([...parts, "grafana"].sort());
    const sluice = service("sluice");
    expect(sluice.build).toBeDefined();
    const context = resolve(composeDir, sluice.build?.context as string);
    expect(context).toBe(root);
    expect(existsSync(join(context, sluice.build?.dockerfile as string))).toBe(true);
    // The sink and the receiver run from the same image (src/sink, scripts/stack.sh are in it).
    for (const name of ["sink", "receiver"]) {
      expect(service(name).image).toBe(sluice.image as string);
      expect(service(name).build).toEqual(sluice.build as Service["build"]);
    }
    expect(service("nats").image).toMatch(/^nats:2\.9(\.\d+)?$/);
    expect(service("prometheus").image).toMatch(/^prom\/prometheus:v2\.42\.\d+$/);
  });

  test("every port of the script (default --port-base) is published on 127.0.0.1 by its service", async () => {
    const ports = await scriptPorts(["--dir", noStack]);
    expect(ports.get("nats")).toBe(14222);
    const owner = (name: string) => (name === "nats-monitoring" ? "nats" : name);
    const hostPorts = new Map<number, string>();
    for (const name of Object.keys(compose.services))
      for (const p of published(name)) {
        expect(p.host, `${name} publishes on loopback only`).toBe("127.0.0.1");
        expect(hostPorts.has(p.hostPort), `host port ${p.hostPort} published twice`).toBe(false);
        hostPorts.set(p.hostPort, name);
      }
    for (const [name, port] of ports) expect(hostPorts.get(port), `${name} on ${port}`).toBe(owner(name));
    // Nothing else of the compose file lands on the script's ports; Grafana takes the next one.
    expect([...hostPorts.values()].filter((s) => s === "grafana").length).toBe(1);
    expect(published("grafana")[0]?.hostPort).toBe(14222 + 6);
  });

  test("nats: JetStream, the mappings block for Sluice's partition count, ports as published; nats-server accepts it", async () => {
    const conf = natsConf();
    const count = Number(service("sluice").environment?.SLUICE_STREAMS_PARTITION_COUNT);
    expect(count).toBe(
      loadConfig({ file: join(root, "config/sluice.toml"), env: {} }).streams.partitionCount,
    );
    expect(mappingsOf(conf)).toEqual(subjectMappings(count));
    expect(conf).toMatch(/^jetstream\s*\{/m);
    const store = /store_dir:\s*"([^"]+)"/.exec(conf)?.[1] as string;
    expect(mountAt("nats", store), "the JetStream store on a volume").toBeDefined();
    const containerPorts = published("nats").map((p) => p.containerPort);
    expect(containerPorts).toEqual([natsPortOf(conf, "listen"), natsPortOf(conf, "http")]);

    const dir = tempDir("stack-nats-conf");
    try {
      const file = join(dir, "nats.conf");
      writeFileSync(file, conf.replace(store, join(dir, "js")));
      const check = Bun.spawnSync([Bun.which("nats-server") ?? "/usr/sbin/nats-server", "-c", file, "-t"], {
        stderr: "pipe",
      });
      expect(check.exitCode, check.stderr.toString()).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("sluice: the script's settings with the containers' addresses, a token placeholder marked to change; they load", async () => {
    const scriptEnv = parseExports((await stack(["env", "--dir", noStack])).stdout);
    const env = service("sluice").environment ?? {};
    expect(Object.keys(env)).toEqual(expect.arrayContaining(Object.keys(scriptEnv)));
    const natsClientPort = published("nats")[0]?.containerPort;
    expect(env.SLUICE_NATS_URL).toBe(`nats://nats:${natsClientPort}`);
    expect(env.SLUICE_HTTP_HOST).toBe("0.0.0.0");
    expect(published("sluice").map((p) => p.containerPort)).toEqual([Number(env.SLUICE_HTTP_PORT)]);
    expect(mountAt("sluice", env.SLUICE_DATA_DIR as string), "the data dir on a volume").toBeDefined();
    // Every interface needs tokens: a placeholder, with a comment saying it must be changed.
    const tokens = /^\$\{SLUICE_HTTP_TOKENS:-(.+)\}$/.exec(env.SLUICE_HTTP_TOKENS ?? "")?.[1];
    // biome-ignore lint/suspicious/noTemplateCurlyInString: Compose's interpolation syntax, meant literally.
    expect(tokens, "SLUICE_HTTP_TOKENS as ${SLUICE_HTTP_TOKENS:-placeholder}").toBeDefined();
    expect(tokens).toContain("change-me");
    expect(composeText).toMatch(/CHANGE THIS PLACEHOLDER/);
    // Compose passes the values as strings; Sluice refuses an unknown key or a bad value (exit 78).
    const config = loadConfig({
      file: join(root, "config/sluice.toml"),
      env: { ...env, SLUICE_HTTP_TOKENS: tokens as string },
    });
    expect(config.nats.url).toBe(env.SLUICE_NATS_URL as string);
    expect(config.http.port).toBe(Number(env.SLUICE_HTTP_PORT));
    expect(service("sluice").healthcheck?.test).toEqual(["CMD", "bun", "scripts/healthcheck.ts", "--ready"]);
  });

  test("sink: the reference sink for the ERP, posting to the receiver, metrics where Prometheus scrapes", () => {
    const parsed = parseSinkOptions(sinkArgs(), {});
    if (!parsed.ok) throw new Error(parsed.detail);
    const o = parsed.value;
    expect(o.source).toEqual({ kind: "erp" });
    expect(o.natsUrl).toBe(service("sluice").environment?.SLUICE_NATS_URL as string);
    const url = new URL(o.url);
    expect(url.hostname).toBe("receiver");
    expect(Number(url.port)).toBe(published("receiver")[0]?.containerPort as number);
    expect(url.pathname).toBe("/erp");
    expect(o.metricsHost).toBe("0.0.0.0");
    expect(published("sink").map((p) => p.containerPort)).toEqual([o.metricsPort as number]);
    expect(service("sink").depends_on).toMatchObject({ sluice: { condition: "service_healthy" } });
  });

  test("receiver: the script's own receiver, which answers and logs what it receives", async () => {
    const args = argv(service("receiver"));
    expect(args.slice(0, 4)).toEqual(["bash", "scripts/stack.sh", "receiver", "--listen"]);
    expect(args[4]).toBe(`0.0.0.0:${published("receiver")[0]?.containerPort}`);
    // Run as the container runs it, on loopback.
    const port = freePort();
    const child = Bun.spawn(["bash", script, "receiver", "--listen", `127.0.0.1:${port}`], {
      cwd: root,
      stdout: "pipe",
      stderr: "pipe",
    });
    try {
      const at = `http://127.0.0.1:${port}`;
      await waitFor(
        async () => (await fetch(`${at}/`).catch(() => null))?.status === 200,
        "the receiver",
        10_000,
        50,
      );
      const post = await fetch(`${at}/erp`, {
        method: "POST",
        headers: { "Content-Type": "application/json", "Idempotency-Key": "k-1" },
        body: JSON.stringify({ batchNo: 1 }),
      });
      expect(post.status).toBe(204);
      expect(await (await fetch(`${at}/`)).json()).toEqual({ received: 1 });
      child.kill("SIGTERM");
      expect(await child.exited).toBe(0);
      const out = await new Response(child.stdout).text();
      const line = JSON.parse(out.split("\n").find((l) => l.includes('"msg":"received"')) as string);
      expect(line).toMatchObject({ path: "/erp", idempotencyKey: "k-1", body: { batchNo: 1 } });
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  });

  test("prometheus: the rule file and the compose prometheus.yml mounted; jobs sluice and sluice-sink at the containers' ports; promtool accepts it", () => {
    const prometheus = service("prometheus");
    const configFile = (prometheus.command ?? []).find((a) => a.startsWith("--config.file="))?.split("=")[1];
    expect(configFile).toBeDefined();
    expect(resolve(composeDir, mountAt("prometheus", configFile as string) as string)).toBe(
      composePrometheusFile,
    );
    expect(composePrometheus.rule_files).toHaveLength(1);
    const ruleTarget = composePrometheus.rule_files[0] as string;
    expect(resolve(composeDir, mountAt("prometheus", ruleTarget) as string)).toBe(rulesFile);
    const jobs = Object.fromEntries(
      composePrometheus.scrape_configs.map((j) => [j.job_name, j.static_configs.flatMap((s) => s.targets)]),
    );
    expect(jobs).toEqual({
      sluice: [`sluice:${service("sluice").environment?.SLUICE_HTTP_PORT}`],
      "sluice-sink": [`sink:${published("sink")[0]?.containerPort}`],
    });
    const listen = (prometheus.command ?? []).find((a) => a.startsWith("--web.listen-address="));
    expect(listen?.split(":").at(-1)).toBe(String(published("prometheus")[0]?.containerPort));

    const promtool = Bun.which("promtool");
    expect(promtool, installFix).not.toBeNull();
    const dir = tempDir("stack-prometheus");
    try {
      const file = join(dir, "prometheus.yml");
      writeFileSync(file, readFileSync(composePrometheusFile, "utf8").replace(ruleTarget, rulesFile));
      const check = Bun.spawnSync([promtool as string, "check", "config", file], {
        stdout: "pipe",
        stderr: "pipe",
      });
      expect(check.exitCode, check.stdout.toString() + check.stderr.toString()).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("grafana: the dashboard provisioned from deploy/grafana over the stack's Prometheus", () => {
    const providers = YAML.parse(configAt("grafana", "/etc/grafana/provisioning/dashboards/sluice.yml")) as {
      providers: { options: { path: string } }[];
    };
    const path = providers.providers[0]?.options.path as string;
    const mounted = mountAt("grafana", `${path}/sluice-dashboard.json`);
    expect(resolve(composeDir, mounted as string)).toBe(join(root, "deploy/grafana/sluice-dashboard.json"));
    const sources = YAML.parse(configAt("grafana", "/etc/grafana/provisioning/datasources/sluice.yml")) as {
      datasources: { type: string; url: string; isDefault: boolean }[];
    };
    expect(sources.datasources).toEqual([
      expect.objectContaining({
        type: "prometheus",
        url: `http://prometheus:${published("prometheus")[0]?.containerPort}`,
        isDefault: true,
      }),
    ]);
  });
});
