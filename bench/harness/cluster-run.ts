// --nodes and --nats-cluster: the harness runs nats-server itself (one server, as the chaos scenario does, or a
// 3-node loopback cluster, nats-cluster.ts) and Sluice against it (SLUICE_NATS_URL): with --nodes N, N
// processes in cluster mode (SLUICE_CLUSTER_ENABLED, each with its own SLUICE_NODE_NAME, data directory and
// HTTP port) sharing the 2 × P partitions by lease (src/cluster/member.ts); with --nats-cluster alone, one
// process as by default. The first node starts alone (it provisions the streams and seeds the rules), the
// others join together; the run starts once every node is ready and every partition is owned, taken over and
// running where the cluster's own assignment puts it (src/cluster/assignment.ts `assignPartitions`).
//
// While the load runs the rig reads GET /v1/cluster each second: a partition that changes owner during the
// run is a finding (the report lists it), and the consumer-lag gauges are taken from each partition's owner.
import { appendFileSync, closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Subprocess } from "bun";
import { assignPartitions } from "../../src/cluster/assignment.ts";
import { Logger } from "../../src/log/index.ts";
import { EmbeddedServer } from "../../src/stream/embedded-server.ts";
import { freePort, repoRoot, type SluiceUnderTest, sluiceCommand } from "../lib.ts";
import { BenchNatsCluster } from "./nats-cluster.ts";
import { limits } from "./options.ts";
import type { ProcRef } from "./sample.ts";

const epochNowMs = () => performance.timeOrigin + performance.now();

export type RigSetup = {
  /** Sluice processes in cluster mode; null: one process, not in cluster mode (--nats-cluster alone). */
  nodes: number | null;
  natsCluster: boolean;
  partitions: number;
  /** node.workerCount outside cluster mode (cluster mode runs partitions on each node's main thread). */
  workers: number;
  /** More Sluice settings (the bench network file). */
  env: Record<string, string>;
  /** Each Sluice process's log (level warn) goes next to the reports. */
  reportDir: string;
};

export type PartitionMove = { atS: number; partition: string; from: string; to: string };

/** What the report says about how the processes ran (report.json `cluster`). */
export type ClusterInfo = {
  /** Sluice processes. */
  nodes: number;
  /** SLUICE_CLUSTER_ENABLED: the nodes share the partitions by lease. */
  clusterMode: boolean;
  nats: { servers: number; cluster: boolean; replicas: number; url: string };
  /** From the first nats-server's start to the last Sluice node's spawn (s). */
  startS: number;
  /** From the last node's spawn until every partition ran where the assignment puts it (s); null: one process. */
  settleS: number | null;
  /** Node → the partitions it ran when the load started (`ledger.0`, `order.3`). */
  placement: Record<string, string[]>;
  /** Partitions that changed owner after the load started (a finding), seconds after the load's start. */
  moves: PartitionMove[];
  /** Replicas of each stream as JetStream reports them after the start (SLUICE_STREAMS_REPLICAS at work). */
  streamReplicas: Record<string, number>;
  logs: string[];
  notes: string[];
};

type NodeProc = {
  name: string;
  dataDir: string;
  httpPort: number;
  logPath: string;
  process: Subprocess | null;
  /** False when the harness stopped it. */
  stopping: boolean;
};

type ClusterStatus = {
  node: string;
  nodes: Array<{ node: string }>;
  partitions: Array<{ partition: string; owner: string; commitSeq?: number | null }>;
  unowned: number;
};

async function getJson<T>(url: string, timeoutMs: number): Promise<T | null> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    if (res.status !== 200) {
      await res.arrayBuffer();
      return null;
    }
    return (await res.json()) as T;
  } catch {
    return null;
  }
}

export class ClusterRig {
  readonly baseDir = mkdtempSync(join(tmpdir(), "sluice-bench-cluster-"));
  readonly nodes: NodeProc[];
  readonly clusterMode: boolean;
  readonly notes: string[] = [];
  private single: EmbeddedServer | null = null;
  private cluster: BenchNatsCluster | null = null;
  /** Partition key → owning node, as the last GET /v1/cluster showed it. */
  private owners = new Map<string, string>();
  private placement: Record<string, string[]> = {};
  private readonly moves: PartitionMove[] = [];
  private startS = 0;
  private settleS: number | null = null;
  private watching: { stop: boolean; loop: Promise<void> } | null = null;
  private streamReplicas: Record<string, number> = {};

  constructor(
    private readonly setup: RigSetup,
    private readonly say: (message: string) => void,
  ) {
    this.clusterMode = setup.nodes !== null;
    const count = setup.nodes ?? 1;
    this.nodes = Array.from({ length: count }, (_, i) => {
      const name = this.clusterMode ? `sluice-${i + 1}` : "sluice";
      return {
        name,
        dataDir: join(this.baseDir, name),
        httpPort: 0,
        logPath: join(setup.reportDir, `${name}.log`),
        process: null,
        stopping: false,
      };
    });
  }

  get natsUrl(): string {
    return this.cluster?.url ?? this.single?.url ?? "";
  }

  get replicas(): number {
    return this.setup.natsCluster ? limits.natsClusterServers : 1;
  }

  /** nats-server(s), then the first node alone, then the others together; returns once they settled. */
  async start(): Promise<void> {
    const t0 = epochNowMs();
    await this.startNats();
    const [first, ...rest] = this.nodes;
    this.spawn(first as NodeProc);
    await this.waitReady([first as NodeProc]);
    for (const node of rest) this.spawn(node);
    this.startS = (epochNowMs() - t0) / 1000;
    if (!this.clusterMode) return;
    const t1 = epochNowMs();
    await this.settle();
    this.settleS = Math.round(epochNowMs() - t1) / 1000;
  }

  private async startNats(): Promise<void> {
    const dir = join(this.baseDir, "nats");
    if (this.setup.natsCluster) {
      this.say(`starting a ${limits.natsClusterServers}-node nats-server cluster on loopback`);
      this.cluster = await BenchNatsCluster.start(dir, limits.natsClusterServers, this.setup.partitions);
      return;
    }
    const logPath = join(this.setup.reportDir, "nats-server.log");
    const log = new Logger("warn", { component: "bench-nats-server" }, (line) =>
      appendFileSync(logPath, line),
    );
    this.single = new EmbeddedServer({
      dir,
      host: "127.0.0.1",
      port: 0,
      bin: "nats-server",
      storeBytesMax: limits.natsStoreBytesMax,
      memoryBytesMax: limits.natsMemoryBytesMax,
      payloadBytesMax: 8 * 1024 * 1024,
      partitionCount: this.setup.partitions,
      // The bench's own server, like an operator's without authorization (docs/security.md, the bench).
      lock: null,
      startTimeoutMs: limits.natsStartMsMax,
      stopTimeoutMs: 10_000,
      restartsMax: 0,
      log,
    });
    await this.single.start();
  }

  private spawn(node: NodeProc): void {
    mkdirSync(node.dataDir, { recursive: true });
    // Probed free, then released before Sluice binds it: the OS may hand the same port out again meanwhile.
    const taken = new Set(this.nodes.map((n) => n.httpPort));
    do node.httpPort = freePort();
    while (taken.has(node.httpPort));
    const s = this.setup;
    const fd = openSync(node.logPath, "a");
    try {
      node.process = Bun.spawn(sluiceCommand(), {
        cwd: repoRoot,
        env: {
          ...process.env,
          SLUICE_DATA_DIR: node.dataDir,
          SLUICE_NATS_URL: this.natsUrl,
          SLUICE_HTTP_PORT: String(node.httpPort),
          SLUICE_LOG_LEVEL: "warn",
          SLUICE_NODE_NAME: node.name,
          SLUICE_STREAMS_PARTITION_COUNT: String(s.partitions),
          SLUICE_STREAMS_REPLICAS: String(this.replicas),
          // Cluster mode hosts each node's partitions on its main thread (a cluster scales by nodes).
          SLUICE_NODE_WORKER_COUNT: this.clusterMode ? "0" : String(s.workers),
          ...(this.clusterMode ? { SLUICE_CLUSTER_ENABLED: "true" } : {}),
          ...s.env,
        },
        stdout: fd,
        stderr: fd,
      });
    } finally {
      closeSync(fd);
    }
    const child = node.process;
    void child.exited.then((code) => {
      if (node.stopping) return;
      this.notes.push(
        `${node.name} (pid ${child.pid}) exited on its own: ${child.signalCode ?? `exit code ${code}`}; its log: ${node.logPath}`,
      );
    });
  }

  private running(node: NodeProc): boolean {
    const p = node.process;
    return p !== null && p.exitCode === null && p.signalCode === null;
  }

  private async readyz(node: NodeProc): Promise<boolean> {
    try {
      const res = await fetch(`http://127.0.0.1:${node.httpPort}/readyz`, {
        signal: AbortSignal.timeout(1000),
      });
      await res.arrayBuffer();
      return res.status === 200;
    } catch {
      return false;
    }
  }

  private async waitReady(nodes: NodeProc[]): Promise<void> {
    const deadline = epochNowMs() + limits.nodeReadyMsMax;
    for (;;) {
      const dead = nodes.find((n) => !this.running(n));
      if (dead !== undefined) throw new Error(`${dead.name} exited at start:\n${this.logTail(dead)}`);
      const ready = await Promise.all(nodes.map((n) => this.readyz(n)));
      if (ready.every(Boolean)) return;
      if (epochNowMs() > deadline) {
        const late = nodes.filter((_, i) => !ready[i]).map((n) => n.name);
        throw new Error(
          `${late.join(", ")} not ready within ${limits.nodeReadyMsMax} ms; logs in ${this.setup.reportDir}`,
        );
      }
      await Bun.sleep(100);
    }
  }

  /**
   * Every node ready, and every partition owned by the node `assignPartitions` gives it to, taken over there
   * (its /v1/cluster lists it with a commitSeq) and running (its /readyz: consumers running).
   */
  private async settle(): Promise<void> {
    const expected = assignPartitions(
      this.nodes.map((n) => ({ id: n.name, pins: null })),
      this.setup.partitions,
    );
    this.say(
      `waiting for ${this.nodes.length} nodes to share the ${expected.size} partitions (${this.nodes.map((n) => `${n.name}: ${[...expected].filter(([, o]) => o === n.name).length}`).join(", ")})`,
    );
    const deadline = epochNowMs() + limits.clusterSettleMsMax;
    let last = "";
    for (;;) {
      const dead = this.nodes.find((n) => !this.running(n));
      if (dead !== undefined) throw new Error(`${dead.name} exited while joining:\n${this.logTail(dead)}`);
      const [ready, statuses] = await Promise.all([
        Promise.all(this.nodes.map((n) => this.readyz(n))),
        Promise.all(
          this.nodes.map((n) => getJson<ClusterStatus>(`http://127.0.0.1:${n.httpPort}/v1/cluster`, 2000)),
        ),
      ]);
      const problems: string[] = [];
      for (const [i, node] of this.nodes.entries()) {
        const st = statuses[i];
        if (!ready[i]) problems.push(`${node.name} not ready`);
        if (st === null || st === undefined) {
          problems.push(`${node.name}: no /v1/cluster`);
          continue;
        }
        const owner = new Map(st.partitions.map((p) => [p.partition, p]));
        for (const [key, want] of expected) {
          const p = owner.get(key);
          if (p?.owner !== want) problems.push(`${key} owned by ${p?.owner ?? "nobody"}, not ${want}`);
          else if (want === node.name && p.commitSeq === undefined)
            problems.push(`${key} leased by ${want}, not taken over yet`);
        }
      }
      if (problems.length === 0) {
        this.owners = expected;
        this.placement = Object.fromEntries(
          this.nodes.map((n) => [n.name, [...expected].filter(([, o]) => o === n.name).map(([k]) => k)]),
        );
        return;
      }
      last = [...new Set(problems)].slice(0, 6).join("; ");
      if (epochNowMs() > deadline)
        throw new Error(
          `the cluster did not settle within ${limits.clusterSettleMsMax} ms: ${last}; logs in ${this.setup.reportDir}`,
        );
      await Bun.sleep(limits.clusterPollMs);
    }
  }

  private logTail(node: NodeProc): string {
    try {
      return readFileSync(node.logPath, "utf8").trimEnd().split("\n").slice(-15).join("\n");
    } catch {
      return "(no log)";
    }
  }

  /** Reads each stream's replicas from JetStream; a Sluice stream with fewer than asked is a note. */
  async readStreamReplicas(nc: NatsConnection): Promise<void> {
    const jsm = await jetstreamManager(nc);
    for await (const si of jsm.streams.list()) this.streamReplicas[si.config.name] = si.config.num_replicas;
    const short = Object.entries(this.streamReplicas).filter(([, r]) => r < this.replicas);
    if (short.length > 0)
      this.notes.push(
        `streams with fewer than ${this.replicas} replicas: ${short.map(([n, r]) => `${n} R${r}`).join(", ")}`,
      );
  }

  /** Every Sluice node and nats-server, for /proc sampling. */
  processes(): ProcRef[] {
    const sluice: ProcRef[] = this.nodes.map((n) => ({
      name: n.name,
      role: "sluice",
      pid: n.process?.pid ?? -1,
    }));
    const nats: ProcRef[] =
      this.cluster !== null
        ? this.cluster.pids.map((p) => ({ name: `nats ${p.name}`, role: "nats", pid: p.pid }))
        : [{ name: "nats-server", role: "nats", pid: this.single?.pid ?? -1 }];
    return [...sluice, ...nats];
  }

  /**
   * Every node's /metrics, one text: the sample sums each metric over its lines, so counters add up over the
   * nodes. A lag gauge of a partition is taken from its owner only: a node keeps the last value it set for a
   * partition it handed off.
   */
  async metricsText(timeoutMs: number): Promise<string> {
    const texts = await Promise.all(
      this.nodes.map(async (n) => {
        const res = await fetch(`http://127.0.0.1:${n.httpPort}/metrics`, {
          signal: AbortSignal.timeout(timeoutMs),
        });
        return await res.text();
      }),
    );
    if (!this.clusterMode) return texts.join("\n");
    return texts
      .flatMap((t) => t.split("\n"))
      .filter((line) => {
        if (!line.startsWith("sluice_partition_lag_messages{")) return true;
        const label = (k: string) => new RegExp(`${k}="([^"]*)"`).exec(line)?.[1];
        const stage = label("stage");
        const partition = label("partition");
        const owner = this.owners.get(`${stage}.${partition}`);
        return owner === undefined || owner === label("node");
      })
      .join("\n");
  }

  /** Reads GET /v1/cluster each second from the load's start and records partitions that change owner. */
  startWatch(startEpochMs: number): void {
    if (!this.clusterMode || this.watching !== null) return;
    const state = { stop: false, loop: Promise.resolve() };
    state.loop = (async () => {
      while (!state.stop) {
        await Bun.sleep(limits.sampleIntervalMs);
        if (state.stop) break;
        const now = await this.readOwners();
        if (now === null) continue;
        for (const [key, node] of now) {
          const before = this.owners.get(key);
          if (before !== node)
            this.moves.push({
              atS: Math.round(epochNowMs() - startEpochMs) / 1000,
              partition: key,
              from: before ?? "nobody",
              to: node,
            });
        }
        for (const key of this.owners.keys())
          if (!now.has(key))
            this.moves.push({
              atS: Math.round(epochNowMs() - startEpochMs) / 1000,
              partition: key,
              from: this.owners.get(key) as string,
              to: "nobody",
            });
        this.owners = now;
      }
    })();
    this.watching = state;
  }

  async stopWatch(): Promise<void> {
    const w = this.watching;
    if (w === null) return;
    w.stop = true;
    await w.loop;
    this.watching = null;
  }

  /** Partition → owner from the first node that answers GET /v1/cluster; null when none does. */
  private async readOwners(): Promise<Map<string, string> | null> {
    for (const n of this.nodes) {
      if (!this.running(n)) continue;
      const st = await getJson<ClusterStatus>(`http://127.0.0.1:${n.httpPort}/v1/cluster`, 2000);
      if (st !== null) return new Map(st.partitions.map((p) => [p.partition, p.owner]));
    }
    return null;
  }

  info(): ClusterInfo {
    return {
      nodes: this.nodes.length,
      clusterMode: this.clusterMode,
      nats: {
        servers: this.setup.natsCluster ? limits.natsClusterServers : 1,
        cluster: this.setup.natsCluster,
        replicas: this.replicas,
        url: this.natsUrl,
      },
      startS: Math.round(this.startS * 10) / 10,
      settleS: this.settleS,
      placement: this.placement,
      moves: this.moves,
      streamReplicas: this.streamReplicas,
      logs: this.nodes.map((n) => n.logPath),
      notes: this.notes,
    };
  }

  /** The SluiceUnderTest the rest of the harness reads: every node's HTTP port and process. */
  asSluice(): SluiceUnderTest {
    const first = this.nodes[0] as NodeProc;
    const metricsText = (timeoutMs = 10_000) => this.metricsText(timeoutMs);
    return {
      dir: this.baseDir,
      httpPort: first.httpPort,
      httpPorts: this.nodes.map((n) => n.httpPort),
      natsUrl: this.natsUrl,
      natsClient: () => null,
      pid: first.process?.pid ?? -1,
      natsPid: this.single?.pid ?? this.cluster?.pids[0]?.pid ?? -1,
      processes: () => this.processes(),
      metricsText,
      metric: async (name: string) => {
        let sum = 0;
        for (const line of (await metricsText()).split("\n"))
          if (line.startsWith(`${name}{`) || line.startsWith(`${name} `))
            sum += Number(line.split(" ").pop());
        return sum;
      },
      cpuSeconds: () => ({ sluice: 0, nats: 0 }),
      alive: () => this.nodes.every((n) => this.running(n)),
      stop: () => this.stopNodes(),
    };
  }

  /** SIGTERM to every node at once (no node takes over another's partitions on the way out); SIGKILL late ones. */
  async stopNodes(): Promise<void> {
    await this.stopWatch();
    for (const n of this.nodes) n.stopping = true;
    await Promise.all(
      this.nodes.map(async (n) => {
        const p = n.process;
        if (p === null || !this.running(n)) return;
        p.kill("SIGTERM");
        const late = await Promise.race([
          p.exited.then(() => false),
          Bun.sleep(limits.nodeStopMsMax).then(() => true),
        ]);
        if (late) {
          this.notes.push(`${n.name} did not stop within ${limits.nodeStopMsMax} ms of SIGTERM; killed`);
          p.kill("SIGKILL");
          await p.exited;
        } else if (p.exitCode !== 0) {
          this.notes.push(`${n.name} exited with ${p.signalCode ?? `code ${p.exitCode}`} after SIGTERM`);
        }
      }),
    );
  }

  /** Sluice nodes and nats-server(s) stopped, their files removed (the logs stay with the reports). */
  async teardown(): Promise<void> {
    await this.stopNodes().catch(() => {});
    await this.cluster?.stop().catch(() => {});
    await this.single?.stop().catch(() => {});
    rmSync(this.baseDir, { recursive: true, force: true });
  }
}
