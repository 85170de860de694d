// Shared pieces of the bench scripts: Sluice as its own process on an embedded nats-server, Prometheus
// scrapes, bounded-window publishing. Everything lives in a temporary directory removed at the end.

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { embeddedSecurity, type NatsSecurity } from "../src/stream/connection.ts";
import { type EmbeddedClient, type EmbeddedRole, embeddedClient } from "../src/stream/embedded-auth.ts";
import { benchNatsSecurity } from "./harness/options.ts";

export type SluiceUnderTest = {
  dir: string;
  /** The (first) Sluice process's HTTP port. */
  httpPort: number;
  /** Every Sluice process's HTTP port (--nodes); absent: only httpPort. */
  httpPorts?: number[];
  /** Every Sluice process and nats-server by name (--nodes, --nats-cluster); absent: pid and natsPid. */
  processes?: () => Array<{ name: string; role: "sluice" | "nats"; pid: number }>;
  natsUrl: string;
  /** How a client connects as a role to Sluice's locked embedded server; null on the bench's own servers. */
  natsClient: (role: EmbeddedRole) => EmbeddedClient | null;
  pid: number;
  natsPid: number;
  metric: (name: string, labels?: Record<string, string>) => Promise<number>;
  /** The whole /metrics text; rejects after `timeoutMs`. */
  metricsText: (timeoutMs?: number) => Promise<string>;
  cpuSeconds: () => { sluice: number; nats: number };
  /** True while the Sluice process runs. */
  alive: () => boolean;
  stop: () => Promise<void>;
};

/**
 * A bench client's connect options and security: on Sluice's locked embedded server, `role`'s seed and inbox
 * prefix; otherwise the SLUICE_NATS_* settings of the environment (a server the bench started, or one secured
 * by hand).
 */
export function benchConnection(
  client: EmbeddedClient | null,
  env: Record<string, string | undefined>,
): { options: { inboxPrefix?: string }; security: NatsSecurity } {
  return client === null
    ? { options: {}, security: benchNatsSecurity(env) }
    : { options: { inboxPrefix: client.inboxPrefix }, security: embeddedSecurity(client) };
}

/** The repository root: Sluice is started from here whatever the caller's working directory. */
export const repoRoot = join(import.meta.dir, "..");

/** What /proc says about one process at one instant. */
export type ProcSample = {
  cpuSeconds: number;
  /** VmRSS: every resident page, anonymous and file-backed. */
  rssBytes: number;
  /** RssAnon: the process's own memory (heap, buffers, stacks): what it costs the machine. */
  rssAnonBytes: number;
  /**
   * RssFile + RssShmem: resident pages of mapped files. For Sluice these are mostly its LMDB maps: page cache
   * the kernel may reclaim, growing with the data. A map of a file on tmpfs (the chaos scenario's data
   * directory) counts as RssShmem, not RssFile (and is not reclaimable there), so both are file-backed here
   * and rssBytes = rssAnonBytes + rssFileBytes.
   */
  rssFileBytes: number;
};

/** CPU seconds (user + system) and resident memory of a process, from /proc; null when it is gone. */
export function procSample(pid: number): ProcSample | null {
  try {
    // Fields after the command name: state is [0], utime [11], stime [12], in clock ticks (1/100 s here).
    const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0);
    return {
      cpuSeconds: (Number(f[11]) + Number(f[12])) / 100,
      rssBytes: kb("VmRSS") * 1024,
      rssAnonBytes: kb("RssAnon") * 1024,
      rssFileBytes: (kb("RssFile") + kb("RssShmem")) * 1024,
    };
  } catch {
    return null;
  }
}

/**
 * The command line of a Sluice process under test: `bun src/cli.ts start`, with
 * BENCH_PROFILE=<dir>: Bun writes a CPU profile of Sluice (Markdown, hottest functions) on exit (one per
 * process); BENCH_PROFILE_FORMAT=cpuprofile writes Chrome's .cpuprofile instead (samples, for DevTools or a
 * script); BENCH_BUN_FLAGS="--smol …": Bun runtime flags (what a deployment's command line sets).
 */
export function sluiceCommand(): string[] {
  const profileDir = process.env.BENCH_PROFILE;
  const format = process.env.BENCH_PROFILE_FORMAT === "cpuprofile" ? "--cpu-prof" : "--cpu-prof-md";
  const profile = profileDir ? [format, `--cpu-prof-dir=${profileDir}`] : [];
  const flags = (process.env.BENCH_BUN_FLAGS ?? "").split(" ").filter((f) => f !== "");
  return ["bun", ...flags, ...profile, join(repoRoot, "src/cli.ts"), "start"];
}

export async function startSluice(env: Record<string, string>): Promise<SluiceUnderTest> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-bench-"));
  const httpPort = 18000 + Math.floor(Math.random() * 1000);
  const child = Bun.spawn(sluiceCommand(), {
    cwd: repoRoot,
    env: {
      ...process.env,
      SLUICE_DATA_DIR: dir,
      SLUICE_NATS_EMBEDDED_PORT: "0",
      SLUICE_HTTP_PORT: String(httpPort),
      SLUICE_LOG_LEVEL: "warn",
      ...env,
    },
    stdout: "inherit",
    stderr: "inherit",
  });
  const metricsText = async (timeoutMs = 10_000) =>
    await (
      await fetch(`http://127.0.0.1:${httpPort}/metrics`, { signal: AbortSignal.timeout(timeoutMs) })
    ).text();
  const metric = async (name: string, labels: Record<string, string> = {}) => {
    const text = await metricsText();
    let sum = 0;
    for (const line of text.split("\n")) {
      if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
      if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)))
        sum += Number(line.split(" ").pop());
    }
    return sum;
  };
  for (let i = 0; i < 400; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${httpPort}/readyz`)).status === 200) break;
    } catch {}
    if (child.exitCode !== null) throw new Error(`sluice exited with ${child.exitCode}`);
    await Bun.sleep(50);
  }
  const portsDir = join(dir, "nats", "ports");
  const file = (await Array.fromAsync(new Bun.Glob("*.ports").scan({ cwd: portsDir })))[0];
  if (file === undefined) throw new Error("embedded nats-server wrote no ports file");
  const natsUrl = (JSON.parse(readFileSync(join(portsDir, file), "utf8")) as { nats: string[] })
    .nats[0] as string;
  const natsPid = Number(file.split("_").pop()?.replace(".ports", ""));
  const ticks = (pid: number) => procSample(pid)?.cpuSeconds ?? 0;
  return {
    dir,
    httpPort,
    natsUrl,
    natsClient: (role) => embeddedClient(join(dir, "nats"), role),
    pid: child.pid,
    natsPid,
    metric,
    metricsText,
    cpuSeconds: () => ({ sluice: ticks(child.pid), nats: ticks(natsPid) }),
    alive: () => child.exitCode === null && child.signalCode === null,
    stop: async () => {
      child.kill("SIGTERM");
      await child.exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A TCP port free on loopback right now (the OS picks it; another process may take it before we bind it). */
export function freePort(): number {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = server.port;
  server.stop(true);
  return port;
}

/** Sends `count` messages with at most `windowMax` awaiting their JetStream ack: a real producer's shape. */
export async function publishAll(count: number, windowMax: number, send: (i: number) => Promise<unknown>) {
  const inflight = new Set<Promise<unknown>>();
  for (let i = 0; i < count; i++) {
    const p = send(i).finally(() => inflight.delete(p));
    inflight.add(p);
    if (inflight.size >= windowMax) await Promise.race(inflight);
  }
  await Promise.all(inflight);
}

export async function waitUntil(
  probe: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`bench: timed out waiting for ${what}`);
    await Bun.sleep(100); // a scrape costs Sluice a little: do not poll it harder than a person would look
  }
}

/**
 * This machine's raw JetStream rate in the same run: publish `count` messages of the given payloads with
 * the same window, then consume and ack them (ack all, every 500) with no processing.
 */
export async function measureRawJetStream(
  nc: NatsConnection,
  count: number,
  windowMax: number,
  partitions: number,
  payload: (i: number) => Uint8Array,
  /** Replicas of the raw stream: as Sluice's streams have (3 on a nats-server cluster). */
  replicas = 1,
) {
  const js = jetstream(nc, { timeout: 10_000 });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({
    name: "BENCH_RAW",
    subjects: ["bench.raw.>"],
    max_bytes: 1024 * 1024 * 1024,
    num_replicas: replicas,
  });
  let t0 = performance.now();
  await publishAll(count, windowMax, (i) => js.publish(`bench.raw.${i % partitions}`, payload(i)));
  const publishSeconds = (performance.now() - t0) / 1000;
  await jsm.consumers.add("BENCH_RAW", {
    durable_name: "raw",
    ack_policy: AckPolicy.All,
    deliver_policy: DeliverPolicy.All,
    max_ack_pending: 8000,
  });
  t0 = performance.now();
  let consumed = 0;
  for await (const m of await (await js.consumers.get("BENCH_RAW", "raw")).consume({ max_messages: 2000 })) {
    consumed++;
    if (consumed % 500 === 0 || consumed === count) m.ack();
    if (consumed === count) break;
  }
  const consumeSeconds = (performance.now() - t0) / 1000;
  await jsm.streams.delete("BENCH_RAW");
  return {
    publishPerSecond: Math.round(count / publishSeconds),
    consumeAckPerSecond: Math.round(count / consumeSeconds),
    publishThenConsumePerSecond: Math.round(count / (publishSeconds + consumeSeconds)),
  };
}
