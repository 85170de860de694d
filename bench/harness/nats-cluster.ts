// --nats-cluster: a loopback nats-server JetStream cluster for the bench, the approach of
// test/helpers/nats-cluster.ts (and scripts/nats-cluster.sh): N servers n1..nN routed to each other, each with
// its own store and Sluice's subject mappings, started before Sluice and stopped after it. The store cap is the
// bench's (limits.natsStoreBytesMax): Sluice's default stream caps must fit on every server, as each holds a
// replica of every R3 stream.
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { resolveBinary } from "../../src/stream/embedded-server.ts";
import { subjectMappings } from "../../src/stream/subjects.ts";
import { freePort } from "../lib.ts";
import { limits } from "./options.ts";

const host = "127.0.0.1";
/** Sluice's messages are far smaller; nats-server's default (1 MiB) with room for bulk imports. */
const payloadBytesMax = 8 * 1024 * 1024;
const pollMs = 100;
/** One monitoring request on loopback answers in milliseconds. */
const monitorRequestMsMax = 1000;
/** SIGTERM: the server flushes its store; SIGKILL after this. */
const stopMsMax = 10_000;

type Server = {
  name: string;
  dir: string;
  client: number;
  route: number;
  monitor: number;
  process: Subprocess | null;
};

export class BenchNatsCluster {
  private constructor(
    private readonly servers: Server[],
    private readonly partitionCount: number,
  ) {}

  /** Starts `count` servers under `dir` and returns once each is healthy and all name one meta leader. */
  static async start(dir: string, count: number, partitionCount: number): Promise<BenchNatsCluster> {
    const ports = new Set<number>();
    while (ports.size < count * 3) ports.add(freePort());
    const list = [...ports];
    const servers: Server[] = Array.from({ length: count }, (_, i) => ({
      name: `n${i + 1}`,
      dir: join(dir, `n${i + 1}`),
      client: list[i * 3] as number,
      route: list[i * 3 + 1] as number,
      monitor: list[i * 3 + 2] as number,
      process: null,
    }));
    const cluster = new BenchNatsCluster(servers, partitionCount);
    try {
      await cluster.spawnAll();
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  /** Every client URL, comma-joined: the form SLUICE_NATS_URL takes. */
  get url(): string {
    return this.servers.map((s) => `nats://${host}:${s.client}`).join(",");
  }

  get pids(): Array<{ name: string; pid: number }> {
    return this.servers.map((s) => ({ name: s.name, pid: s.process?.pid ?? -1 }));
  }

  private async spawnAll(): Promise<void> {
    const bin = resolveBinary("nats-server");
    for (const s of this.servers) {
      mkdirSync(s.dir, { recursive: true });
      const config = join(s.dir, "nats-server.conf");
      writeFileSync(config, this.render(s));
      const log = openSync(join(s.dir, "nats-server.log"), "a");
      try {
        s.process = Bun.spawn([bin, "-c", config], { stdout: log, stderr: log });
      } finally {
        closeSync(log);
      }
    }
    const deadline = Date.now() + limits.natsStartMsMax;
    let last = "";
    while (Date.now() < deadline) {
      const exited = this.servers.find((s) => s.process?.exitCode != null);
      if (exited !== undefined)
        throw new Error(`nats-server ${exited.name} exited at start:\n${this.logTail(exited)}`);
      const leaders = await Promise.all(this.servers.map((s) => this.metaLeader(s)));
      if (leaders[0] !== "" && leaders.every((l) => l === leaders[0])) return;
      last = this.servers.map((s, i) => `${s.name}: leader ${leaders[i] || "none"}`).join("; ");
      await Bun.sleep(pollMs);
    }
    throw new Error(
      `the nats-server cluster elected no meta leader within ${limits.natsStartMsMax} ms (${last}); logs: ${this.servers[0]?.dir}`,
    );
  }

  /** The JetStream meta leader a server knows of; "" while it has none or does not answer. */
  private async metaLeader(s: Server): Promise<string> {
    try {
      const res = await fetch(`http://${host}:${s.monitor}/jsz`, {
        signal: AbortSignal.timeout(monitorRequestMsMax),
      });
      if (!res.ok) return "";
      const body = (await res.json()) as { meta_cluster?: { leader?: string } };
      return body.meta_cluster?.leader ?? "";
    } catch {
      return "";
    }
  }

  private logTail(s: Server): string {
    try {
      return readFileSync(join(s.dir, "nats-server.log"), "utf8").trimEnd().split("\n").slice(-15).join("\n");
    } catch {
      return "(no log)";
    }
  }

  private render(s: Server): string {
    const mappings = Object.entries(subjectMappings(this.partitionCount)).map(
      ([from, to]) => `  ${JSON.stringify(from)}: ${JSON.stringify(to)}`,
    );
    return [
      `server_name: ${s.name}`,
      `listen: "${host}:${s.client}"`,
      `http: "${host}:${s.monitor}"`,
      `max_payload: ${payloadBytesMax}`,
      "jetstream {",
      `  store_dir: ${JSON.stringify(s.dir)}`,
      `  max_file_store: ${limits.natsStoreBytesMax}`,
      `  max_memory_store: ${limits.natsMemoryBytesMax}`,
      "}",
      "cluster {",
      "  name: sluice-bench",
      `  listen: "${host}:${s.route}"`,
      "  routes: [",
      ...this.servers.map((o) => `    "nats-route://${host}:${o.route}"`),
      "  ]",
      "}",
      "mappings = {",
      ...mappings,
      "}",
      "",
    ].join("\n");
  }

  /** SIGTERM to every server, SIGKILL to those still running after stopMsMax. */
  async stop(): Promise<void> {
    await Promise.all(
      this.servers.map(async (s) => {
        const p = s.process;
        if (p === null || p.exitCode !== null || p.signalCode !== null) return;
        p.kill("SIGTERM");
        const late = await Promise.race([p.exited.then(() => false), Bun.sleep(stopMsMax).then(() => true)]);
        if (late) {
          p.kill("SIGKILL");
          await p.exited;
        }
      }),
    );
  }
}
