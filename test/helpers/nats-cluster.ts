import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { resolveBinary } from "../../src/stream/embedded-server.ts";
import { subjectMappings } from "../../src/stream/subjects.ts";
import { tempDir } from "./index.ts";
import { freePort } from "./process.ts";

const MiB = 1024 * 1024;
const host = "127.0.0.1";
/**
 * Each node keeps a copy of every replicated stream, and a cluster reserves each stream's max_bytes on every
 * peer: as TestNats, room for testConfig's stream caps (256 MiB in all) with margin. A cap, not disk used.
 */
const storeBytesMax = 512 * MiB;
const memoryBytesMax = 32 * MiB;
const payloadBytesMax = 2 * MiB;
/** A node opens its ports in well under a second; the margin is for a loaded two-core machine. */
const nodeStartMsMax = 15_000;
/** A meta leader election takes a few seconds; a restarted node also replays its store first. */
const readyMsMax = 20_000;
const pollMs = 50;
/** One monitoring request on loopback; a SIGSTOPped node never answers, so this bounds asking it. */
const monitorRequestMsMax = 1000;
/** Ports are probed free, then released before nats-server binds them: another process may win the race. */
const startAttemptsMax = 2;

type Ports = { client: number; cluster: number; monitor: number };
type NodeState = "running" | "stopped" | "killed";

class PortTakenError extends Error {
  override name = "PortTakenError";
}

/** One nats-server of the cluster: its ports and store stay the same across restarts. */
class ClusterNode {
  process: Subprocess | null = null;
  state: NodeState = "killed";

  constructor(
    readonly name: string,
    readonly dir: string,
    readonly ports: Ports,
  ) {}

  get logPath(): string {
    return join(this.dir, "nats-server.log");
  }

  spawn(bin: string, configPath: string): void {
    // Appended, so a restarted node's log follows its first run's.
    const log = openSync(this.logPath, "a");
    try {
      this.process = Bun.spawn([bin, "-c", configPath], { stdout: log, stderr: log });
    } finally {
      closeSync(log);
    }
    this.state = "running";
  }

  logTail(lines = 15): string {
    return readFileSync(this.logPath, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  }

  /** GET a monitoring endpoint; null when the node does not answer in time. */
  async monitor(path: string): Promise<unknown> {
    try {
      const res = await fetch(`http://${host}:${this.ports.monitor}${path}`, {
        signal: AbortSignal.timeout(monitorRequestMsMax),
      });
      return res.ok ? await res.json() : null;
    } catch {
      return null;
    }
  }

  async healthy(): Promise<boolean> {
    return (await this.monitor("/healthz?js-enabled-only=true")) !== null;
  }

  /** The JetStream meta leader this node knows of; "" while there is none. */
  async metaLeader(): Promise<string> {
    const jsz = (await this.monitor("/jsz")) as { meta_cluster?: { leader?: string } } | null;
    return jsz?.meta_cluster?.leader ?? "";
  }
}

/**
 * N real nats-servers on loopback routed into one JetStream cluster (`sluice`, servers n1..nN), each with its
 * own temporary capped store and Sluice's subject mappings: what an operator's cluster is, for fault tests
 * (kill, stop, restart one node). Nodes are addressed by index, 0 for n1.
 */
export class TestNatsCluster {
  private constructor(
    private readonly root: string,
    private readonly bin: string,
    private readonly nodes: ClusterNode[],
  ) {}

  static async start(opts: { nodes?: number; partitionCount?: number } = {}): Promise<TestNatsCluster> {
    const nodeCount = opts.nodes ?? 3;
    const partitionCount = opts.partitionCount ?? 4;
    for (let attempt = 1; ; attempt++) {
      const cluster = TestNatsCluster.create(nodeCount, partitionCount);
      try {
        await cluster.startAll();
        return cluster;
      } catch (error) {
        await cluster.dispose();
        if (!(error instanceof PortTakenError) || attempt >= startAttemptsMax) throw error;
      }
    }
  }

  private static create(nodeCount: number, partitionCount: number): TestNatsCluster {
    const root = tempDir("cluster");
    const ports = distinctFreePorts(nodeCount * 3);
    const nodes = Array.from({ length: nodeCount }, (_, i) => {
      const [client, cluster, monitor] = ports.slice(i * 3, i * 3 + 3) as [number, number, number];
      const node = new ClusterNode(`n${i + 1}`, join(root, `n${i + 1}`), { client, cluster, monitor });
      mkdirSync(node.dir, { recursive: true });
      return node;
    });
    for (const node of nodes) {
      writeFileSync(join(node.dir, "nats-server.conf"), renderConfig(node, nodes, partitionCount));
    }
    return new TestNatsCluster(root, resolveBinary("nats-server"), nodes);
  }

  private async startAll(): Promise<void> {
    for (const node of this.nodes) node.spawn(this.bin, join(node.dir, "nats-server.conf"));
    await Promise.all(this.nodes.map((node) => this.waitHealthy(node)));
    await this.waitReady();
  }

  get urls(): string[] {
    return this.nodes.map((node) => `nats://${host}:${node.ports.client}`);
  }

  /** Every client URL, comma-joined: the form SLUICE_NATS_URL takes. */
  get url(): string {
    return this.urls.join(",");
  }

  /** The index of server `name` (n1 → 0), as stream and meta leaders are reported by name. */
  indexOf(name: string): number {
    const i = this.nodes.findIndex((node) => node.name === name);
    if (i < 0) throw new Error(`no node named ${name} in this cluster`);
    return i;
  }

  /** GET a node's monitoring endpoint (e.g. `/jsz?accounts=true&streams=true`); null if it does not answer. */
  monitor(i: number, path: string): Promise<unknown> {
    return this.node(i).monitor(path);
  }

  /** A crash: no flush, no goodbye to the other nodes. */
  async kill(i: number): Promise<void> {
    const node = this.node(i);
    node.process?.kill("SIGKILL");
    await node.process?.exited;
    node.state = "killed";
  }

  /** Freezes the node: it keeps its sockets open but answers nothing, as a hung machine would. */
  stop(i: number): void {
    this.node(i).process?.kill("SIGSTOP");
    this.node(i).state = "stopped";
  }

  cont(i: number): void {
    this.node(i).process?.kill("SIGCONT");
    this.node(i).state = "running";
  }

  /** Starts a killed node again on the same ports and store; returns once it serves JetStream in the cluster. */
  async restart(i: number): Promise<void> {
    const node = this.node(i);
    if (node.state !== "killed") await this.kill(i);
    node.spawn(this.bin, join(node.dir, "nats-server.conf"));
    await this.waitHealthy(node);
    await this.waitReady();
  }

  /** Every node not killed or stopped answers healthy, and all of them name the same meta leader. */
  async waitReady(): Promise<void> {
    const up = this.nodes.filter((node) => node.state === "running");
    const deadline = Date.now() + readyMsMax;
    let last = "";
    while (Date.now() < deadline) {
      const healthy = await Promise.all(up.map((node) => node.healthy()));
      const leaders = await Promise.all(up.map((node) => node.metaLeader()));
      if (healthy.every(Boolean) && leaders[0] !== "" && leaders.every((l) => l === leaders[0])) return;
      last = up
        .map((node, k) => `${node.name}: healthy=${healthy[k]} leader=${leaders[k] || "none"}`)
        .join("; ");
      await Bun.sleep(pollMs);
    }
    throw new Error(`cluster not ready within ${readyMsMax} ms (${last}); node logs are in ${this.root}`);
  }

  async dispose(): Promise<void> {
    await Promise.all(this.nodes.map((_, i) => this.kill(i)));
    rmSync(this.root, { recursive: true, force: true });
  }

  private node(i: number): ClusterNode {
    const node = this.nodes[i];
    if (node === undefined) throw new Error(`no node ${i}: this cluster has ${this.nodes.length}`);
    return node;
  }

  private async waitHealthy(node: ClusterNode): Promise<void> {
    const deadline = Date.now() + nodeStartMsMax;
    while (Date.now() < deadline) {
      if (node.process?.exitCode != null) {
        const tail = node.logTail();
        const message = `${node.name} exited with code ${node.process.exitCode} at start:\n${tail}`;
        throw tail.includes("address already in use") ? new PortTakenError(message) : new Error(message);
      }
      if (await node.healthy()) return;
      await Bun.sleep(pollMs);
    }
    throw new Error(`${node.name} not healthy within ${nodeStartMsMax} ms:\n${node.logTail()}`);
  }
}

/** Probed one by one; the OS may hand out a port just released, so repeats are probed again. */
function distinctFreePorts(count: number): number[] {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(freePort());
  return [...ports];
}

function renderConfig(node: ClusterNode, nodes: ClusterNode[], partitionCount: number): string {
  const mappings = Object.entries(subjectMappings(partitionCount)).map(
    ([from, to]) => `  ${JSON.stringify(from)}: ${JSON.stringify(to)}`,
  );
  const routes = nodes.map((n) => `    "nats-route://${host}:${n.ports.cluster}"`);
  return [
    `server_name: ${node.name}`,
    `listen: "${host}:${node.ports.client}"`,
    `http: "${host}:${node.ports.monitor}"`,
    `max_payload: ${payloadBytesMax}`,
    "jetstream {",
    `  store_dir: ${JSON.stringify(node.dir)}`,
    `  max_file_store: ${storeBytesMax}`,
    `  max_memory_store: ${memoryBytesMax}`,
    "}",
    "cluster {",
    "  name: sluice",
    `  listen: "${host}:${node.ports.cluster}"`,
    "  routes: [",
    ...routes,
    "  ]",
    "}",
    "mappings = {",
    ...mappings,
    "}",
    "",
  ].join("\n");
}
