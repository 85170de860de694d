// The chaos scenario's processes and faults. Unlike the other scenarios, Sluice does not run its embedded
// nats-server here: a SIGKILLed Sluice would orphan it, and a restarted one would pick a new port. The harness
// runs nats-server itself (src/stream/embedded-server.ts, Sluice's own config and subject mappings, a fixed
// port after the first start, its store outside Sluice's data directory) and Sluice against it
// (SLUICE_NATS_URL), as a supervisor would: an unexpected exit of Sluice is recorded and Sluice started again
// with a backoff. Sluice's data directory (LMDB partitions, the lock) is a size-capped tmpfs mounted for the run
// when a disk-full fault is planned; it is unmounted at the end, also when the run fails.
//
// Faults (chaos.ts plans them): sluice-kill (SIGKILL, start again after the hold), nats-restart (nats-server
// SIGKILLed, started again on the same port and store), sluice-pause (SIGSTOP, SIGCONT), disk-full (a ballast
// file fills the mount to the last byte, removed after the hold).
import {
  appendFileSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Subprocess } from "bun";
import { Logger } from "../../src/log/index.ts";
import { EmbeddedServer } from "../../src/stream/embedded-server.ts";
import { streamNames } from "../../src/stream/subjects.ts";
import { repoRoot, type SluiceUnderTest } from "../lib.ts";
import { type AuditCheck, pool } from "./audit.ts";
import {
  backlogLastCompletion,
  checkOrderOutputs,
  type FaultKind,
  faultWhat,
  type LagPoint,
  type OrderOutput,
  type PlannedFault,
  type ReadyzChange,
  type Recovery,
  recoveryOf,
} from "./chaos.ts";
import { limits } from "./options.ts";
import type { Sample } from "./sample.ts";
import { keyPrefixOf, parseOrderKey } from "./workload.ts";

const epochNowMs = () => performance.timeOrigin + performance.now();
const GiB = 1024 ** 3;

export type Incarnation = {
  pid: number;
  cause: string;
  startedMs: number;
  exitedMs: number | null;
  exit: string | null;
  /** False when the harness stopped it (a kill fault, the end of the run). */
  unexpected: boolean;
};

export type FaultRecord = PlannedFault & {
  what: string;
  status: "done" | "skipped";
  reason: string | null;
  /** Seconds after the load's start (the run's time 0). */
  startS: number | null;
  liftS: number | null;
  detail: string;
  /** Exits of Sluice the harness did not cause, from the fault's start until the next fault. */
  sluiceExits: string[];
  /** What Sluice logged at warn and error from the fault's start until the next fault: message × count. */
  sluiceSaid: string[];
  recovery: Recovery | null;
};

export type ChaosReport = {
  faults: FaultRecord[];
  disk: { mounted: boolean; dir: string; sizeMb: number; reason: string | null };
  natsServer: { url: string; restarts: number; note: string };
  sluice: { incarnations: Incarnation[]; unexpectedExits: number; gaveUp: boolean; log: string };
  outputs: {
    ordersInStream: number;
    statusItems: number;
    fulfilItems: number;
    republished: number;
    storedAlthoughPublishFailed: number;
  } | null;
  notes: string[];
};

/** A temporary directory; the data directory inside it is a tmpfs of `sizeMb` when `mount` is asked. */
function tryMount(dir: string, sizeMb: number): { mounted: boolean; reason: string | null } {
  if (process.getuid?.() !== 0) return { mounted: false, reason: "not root: mount -t tmpfs needs root" };
  const r = Bun.spawnSync(["mount", "-t", "tmpfs", "-o", `size=${sizeMb}m,mode=0755`, "tmpfs", dir], {
    stdout: "pipe",
    stderr: "pipe",
  });
  if (r.exitCode === 0) return { mounted: true, reason: null };
  return {
    mounted: false,
    reason: `mount -t tmpfs failed (${r.exitCode}): ${new TextDecoder().decode(r.stderr).trim() || "no message"}`,
  };
}

function unmount(dir: string): string | null {
  for (const args of [
    ["umount", dir],
    ["umount", "-l", dir],
  ]) {
    const r = Bun.spawnSync(args, { stdout: "pipe", stderr: "pipe" });
    if (r.exitCode === 0) return null;
    if (args.length === 3) return new TextDecoder().decode(r.stderr).trim();
  }
  return "unreachable";
}

export class ChaosRig {
  readonly baseDir = mkdtempSync(join(tmpdir(), "sluice-chaos-"));
  readonly dataDir = join(this.baseDir, "data");
  readonly httpPort = 18000 + Math.floor(Math.random() * 1000);
  readonly logPath: string;
  readonly nats: EmbeddedServer;
  readonly incarnations: Incarnation[] = [];
  readonly notes: string[] = [];
  disk: { mounted: boolean; reason: string | null } = {
    mounted: false,
    reason: "no disk-full fault planned",
  };
  natsRestarts = 0;
  gaveUp = false;
  private child: Subprocess | null = null;
  /** While true the supervisor does not restart an exited Sluice (the harness is killing or stopping it). */
  private holding = false;
  private stopped = false;
  private crashRestarts = 0;
  private restartTimer: Timer | null = null;
  private readonly logFd: number;

  constructor(
    private readonly env: Record<string, string>,
    private readonly partitions: number,
    readonly diskMb: number,
    mountDisk: boolean,
    reportDir: string,
  ) {
    mkdirSync(this.dataDir, { recursive: true });
    this.logPath = join(reportDir, "sluice.log");
    this.logFd = openSync(this.logPath, "a");
    if (mountDisk) this.disk = tryMount(this.dataDir, diskMb);
    const log = new Logger("warn", { component: "bench-nats-server" }, (line) =>
      appendFileSync(this.logPath, line),
    );
    this.nats = new EmbeddedServer({
      dir: join(this.baseDir, "nats"),
      host: "127.0.0.1",
      port: 0,
      bin: "nats-server",
      storeBytesMax: 8 * GiB,
      memoryBytesMax: 256 * 1024 * 1024,
      payloadBytesMax: 1024 * 1024,
      partitionCount: partitions,
      // The bench's own server, like an operator's without authorization (docs/security.md, the bench).
      lock: null,
      startTimeoutMs: 15_000,
      stopTimeoutMs: 10_000,
      restartsMax: 0,
      log,
    });
  }

  /** A line in sluice.log from the harness, so the log reads as one story. */
  mark(msg: string, fields: Record<string, unknown> = {}): void {
    appendFileSync(
      this.logPath,
      `${JSON.stringify({ ts: new Date().toISOString(), level: "bench", msg, ...fields })}\n`,
    );
  }

  async start(): Promise<void> {
    await this.nats.start();
    this.mark("nats-server started", { url: this.nats.url, pid: this.nats.pid });
    this.spawnSluice("start");
    await this.waitReady(60_000);
  }

  get natsUrl(): string {
    return this.nats.url;
  }

  get pid(): number {
    return this.child?.pid ?? -1;
  }

  running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  private spawnSluice(cause: string): void {
    if (this.stopped) return;
    const child = Bun.spawn(["bun", join(repoRoot, "src/cli.ts"), "start"], {
      cwd: repoRoot,
      env: {
        ...process.env,
        SLUICE_DATA_DIR: this.dataDir,
        SLUICE_NATS_URL: this.nats.url,
        SLUICE_HTTP_PORT: String(this.httpPort),
        SLUICE_LOG_LEVEL: "warn",
        SLUICE_STREAMS_PARTITION_COUNT: String(this.partitions),
        ...this.env,
      },
      stdout: this.logFd,
      stderr: this.logFd,
    });
    const inc: Incarnation = {
      pid: child.pid,
      cause,
      startedMs: epochNowMs(),
      exitedMs: null,
      exit: null,
      unexpected: false,
    };
    this.child = child;
    this.incarnations.push(inc);
    this.mark("Sluice started", { pid: child.pid, cause });
    void child.exited.then(() => {
      inc.exitedMs = epochNowMs();
      inc.exit = child.signalCode !== null ? String(child.signalCode) : `exit code ${child.exitCode}`;
      inc.unexpected = !this.holding && !this.stopped;
      this.mark("Sluice exited", { pid: child.pid, exit: inc.exit, unexpected: inc.unexpected });
      if (inc.unexpected && this.child === child) this.superviseRestart();
    });
  }

  /** An exit the harness did not cause: start again after a backoff, as systemd's Restart=always would. */
  private superviseRestart(): void {
    if (this.crashRestarts >= limits.chaosCrashRestartsMax) {
      this.gaveUp = true;
      this.notes.push(
        `Sluice exited unexpectedly ${this.crashRestarts + 1} times; the harness stopped restarting it (limits.chaosCrashRestartsMax)`,
      );
      return;
    }
    this.crashRestarts++;
    const backoffMs = Math.min(500 * 2 ** Math.min(this.crashRestarts - 1, 4), 5000);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (!this.holding && !this.stopped && !this.running())
        this.spawnSluice(`restart after an unexpected exit (#${this.crashRestarts})`);
    }, backoffMs);
  }

  async readyz(timeoutMs = 500): Promise<boolean> {
    try {
      const r = await fetch(`http://127.0.0.1:${this.httpPort}/readyz`, {
        signal: AbortSignal.timeout(timeoutMs),
      });
      await r.arrayBuffer();
      return r.status === 200;
    } catch {
      return false;
    }
  }

  async waitReady(timeoutMs: number): Promise<boolean> {
    const deadline = epochNowMs() + timeoutMs;
    while (epochNowMs() < deadline) {
      if (await this.readyz()) return true;
      await Bun.sleep(100);
    }
    return false;
  }

  async killSluice(): Promise<boolean> {
    this.holding = true;
    if (this.restartTimer !== null) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    const child = this.child;
    if (child === null || !this.running()) return false;
    child.kill("SIGKILL");
    await child.exited;
    return true;
  }

  restartSluice(cause: string): void {
    this.holding = false;
    if (!this.running()) this.spawnSluice(cause);
  }

  signal(sig: "SIGSTOP" | "SIGCONT"): boolean {
    if (!this.running()) return false;
    this.child?.kill(sig);
    return true;
  }

  async killNats(): Promise<void> {
    await this.nats.kill();
  }

  async startNats(): Promise<void> {
    await this.nats.start();
    this.natsRestarts++;
  }

  natsUp(): boolean {
    const pid = this.nats.pid;
    return pid !== undefined && existsSync(`/proc/${pid}`);
  }

  private get ballastPath(): string {
    return join(this.dataDir, "bench-ballast");
  }

  /** Writes zeros until the mount refuses a byte more: 1 MiB writes, then down to 4 KiB. */
  fillDisk(): { bytes: number; error: string | null } {
    const fd = openSync(this.ballastPath, "w");
    const big = Buffer.alloc(1024 * 1024);
    let bytes = 0;
    let error: string | null = null;
    try {
      for (let chunk = big.length; chunk >= 4096; ) {
        try {
          bytes += writeSync(fd, big, 0, chunk);
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code !== "ENOSPC") {
            error = String(e);
            break;
          }
          chunk = chunk / 2;
        }
      }
    } finally {
      closeSync(fd);
    }
    return { bytes, error };
  }

  freeDisk(): void {
    rmSync(this.ballastPath, { force: true });
  }

  /** The SluiceUnderTest the rest of the harness reads: pids follow restarts. */
  asSluice(): SluiceUnderTest {
    const rig = this;
    const metricsText = async (timeoutMs = 10_000) =>
      await (
        await fetch(`http://127.0.0.1:${rig.httpPort}/metrics`, { signal: AbortSignal.timeout(timeoutMs) })
      ).text();
    return {
      dir: rig.dataDir,
      httpPort: rig.httpPort,
      get natsUrl() {
        return rig.natsUrl;
      },
      natsClient: () => null,
      get pid() {
        return rig.pid;
      },
      get natsPid() {
        return rig.nats.pid ?? -1;
      },
      metricsText,
      metric: async (name: string) => {
        let sum = 0;
        for (const line of (await metricsText()).split("\n"))
          if (line.startsWith(`${name}{`) || line.startsWith(`${name} `))
            sum += Number(line.split(" ").pop());
        return sum;
      },
      cpuSeconds: () => ({ sluice: 0, nats: 0 }),
      // The drain waits while Sluice is supervised: a crash is restarted, only giving up ends the wait.
      alive: () => !rig.gaveUp,
      stop: async () => {
        await rig.stopSluice();
      },
    } as SluiceUnderTest;
  }

  async stopSluice(): Promise<void> {
    this.stopped = true;
    if (this.restartTimer !== null) clearTimeout(this.restartTimer);
    const child = this.child;
    if (child === null || !this.running()) return;
    child.kill("SIGCONT");
    child.kill("SIGTERM");
    const timedOut = await Promise.race([child.exited.then(() => false), Bun.sleep(30_000).then(() => true)]);
    if (timedOut) {
      this.notes.push("Sluice did not stop within 30 s of SIGTERM; killed");
      child.kill("SIGKILL");
      await child.exited;
    }
  }

  /** Everything back: Sluice and nats-server stopped, ballast removed, the mount unmounted, files removed. */
  async teardown(): Promise<void> {
    await this.stopSluice().catch(() => {});
    await this.nats.stop().catch(() => {});
    try {
      this.freeDisk();
    } catch {}
    if (this.disk.mounted) {
      const error = unmount(this.dataDir);
      if (error !== null) this.notes.push(`umount ${this.dataDir} failed: ${error}`);
      else this.disk.mounted = false;
    }
    try {
      closeSync(this.logFd);
    } catch {}
    if (!this.disk.mounted) rmSync(this.baseDir, { recursive: true, force: true });
  }
}

/** Polls /readyz every 200 ms and keeps the changes. */
export class ReadyzWatch {
  readonly changes: ReadyzChange[] = [];
  private running = true;
  private readonly loop: Promise<void>;
  constructor(rig: ChaosRig) {
    this.loop = (async () => {
      while (this.running) {
        const began = epochNowMs();
        const ok = await rig.readyz(400);
        // Timed at the answer: a poll sent during a pause and answered after SIGCONT says "ready" from then on.
        const at = epochNowMs();
        const last = this.changes[this.changes.length - 1];
        if (last === undefined || last.ok !== ok) this.changes.push({ atMs: ok ? at : began, ok });
        await Bun.sleep(Math.max(0, 200 - (epochNowMs() - began)));
      }
    })();
  }
  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}

/** Completion time per order, from the observer's callback. */
export class CompletionLog {
  intendedMs = new Float64Array(1 << 16);
  completedMs = new Float64Array(1 << 16);
  readonly arrivals: number[] = [];
  record(n: number, intendedMs: number, arrivalMs: number): void {
    if (n >= this.intendedMs.length) {
      const size = Math.max(n + 1, this.intendedMs.length * 2);
      const a = new Float64Array(size);
      a.set(this.intendedMs);
      this.intendedMs = a;
      const b = new Float64Array(size);
      b.set(this.completedMs);
      this.completedMs = b;
    }
    this.intendedMs[n] = intendedMs;
    this.completedMs[n] = arrivalMs;
    this.arrivals.push(arrivalMs);
  }
}

/** Injects the planned faults at their times; `stop()` ends early and lifts a fault in progress. */
export class FaultInjector {
  readonly records: FaultRecord[];
  private aborted = false;
  private readonly done: Promise<void>;
  private lift: (() => Promise<void>) | null = null;

  constructor(
    private readonly rig: ChaosRig,
    plan: PlannedFault[],
    private readonly startEpochMs: number,
    say: (m: string) => void,
  ) {
    const records: FaultRecord[] = plan.map((f) => ({
      ...f,
      what: faultWhat[f.kind],
      status: "skipped",
      reason: "not reached",
      startS: null,
      liftS: null,
      detail: "",
      sluiceExits: [],
      sluiceSaid: [],
      recovery: null,
    }));
    this.records = records;
    this.done = (async () => {
      for (const r of records) {
        const wait = startEpochMs + r.atS * 1000 - epochNowMs();
        if (wait > 0) await this.sleep(wait);
        if (this.aborted) return;
        say(`fault ${r.index + 1}/${records.length}: ${r.kind} for ${r.holdS} s at ${r.atS} s`);
        try {
          await this.inject(r);
        } catch (error) {
          r.reason = `the harness failed to inject it: ${(error as Error).message}`;
          r.status = "skipped";
        }
      }
    })();
  }

  private async sleep(ms: number): Promise<void> {
    const until = epochNowMs() + ms;
    while (!this.aborted && epochNowMs() < until) await Bun.sleep(Math.min(50, until - epochNowMs()));
  }

  private at(): number {
    return Math.round(epochNowMs() - this.startEpochMs) / 1000;
  }

  private async inject(r: FaultRecord): Promise<void> {
    const rig = this.rig;
    const begin = async (lift: () => Promise<void>) => {
      this.lift = lift;
      await this.sleep(r.holdS * 1000);
      await lift();
      this.lift = null;
      r.liftS = this.at();
      r.status = "done";
      r.reason = null;
    };
    rig.mark(`fault ${r.index + 1}: ${r.kind}`, { holdS: r.holdS });
    switch (r.kind) {
      case "sluice-kill": {
        r.startS = this.at();
        if (!(await rig.killSluice())) {
          rig.restartSluice(`after fault ${r.index + 1} (${r.kind}), which found it not running`);
          r.reason = "Sluice was not running (a restart after an unexpected exit was pending)";
          return;
        }
        r.detail = "SIGKILL";
        await begin(async () => rig.restartSluice(`restart after fault ${r.index + 1} (${r.kind})`));
        return;
      }
      case "nats-restart": {
        r.startS = this.at();
        await rig.killNats();
        r.detail = "nats-server SIGKILL";
        await begin(async () => {
          await rig.startNats();
          rig.mark("nats-server started again", { pid: rig.nats.pid });
        });
        return;
      }
      case "sluice-pause": {
        r.startS = this.at();
        if (!rig.signal("SIGSTOP")) {
          r.startS = null;
          r.reason = "Sluice was not running at that moment";
          return;
        }
        r.detail = "SIGSTOP";
        await begin(async () => {
          rig.signal("SIGCONT");
        });
        return;
      }
      case "disk-full": {
        if (!rig.disk.mounted) {
          r.reason = `no size-capped mount: ${rig.disk.reason}`;
          return;
        }
        r.startS = this.at();
        const fill = rig.fillDisk();
        r.detail = `ballast of ${(fill.bytes / 1024 / 1024).toFixed(1)} MiB filled the ${rig.diskMb} MiB mount${fill.error === null ? "" : ` (${fill.error})`}`;
        await begin(async () => rig.freeDisk());
        return;
      }
    }
  }

  /** Waits for the schedule's end. */
  async finished(): Promise<void> {
    await this.done;
  }

  /** Stops early (the run broke): lifts a fault being held. */
  async stop(): Promise<void> {
    this.aborted = true;
    await this.done.catch(() => {});
    const lift = this.lift;
    this.lift = null;
    if (lift !== null) await lift().catch(() => {});
  }
}

/** Sluice's warn/error log lines within [fromMs, toMs]: "message" × count, most frequent first. */
export function logSummary(logPath: string, fromMs: number, toMs: number, max = 6): string[] {
  let text: string;
  try {
    text = readFileSync(logPath, "utf8");
  } catch {
    return [];
  }
  const counts = new Map<string, number>();
  let lastTs = 0;
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    let rec: { ts?: string; level?: string; msg?: string; error?: { message?: string } | string } | null =
      null;
    try {
      rec = JSON.parse(line);
    } catch {}
    if (rec !== null && typeof rec === "object" && typeof rec.ts === "string") {
      lastTs = Date.parse(rec.ts);
      if (rec.level !== "warn" && rec.level !== "error") continue;
      if (lastTs < fromMs || lastTs > toMs) continue;
      const err = typeof rec.error === "string" ? rec.error : rec.error?.message;
      const key = `${rec.level}: ${rec.msg}${err ? ` (${String(err).slice(0, 160)})` : ""}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    } else if (lastTs >= fromMs && lastTs <= toMs && /^\s*(error|[A-Za-z ]*error:)/i.test(line)) {
      // Not a log record: Bun's own report of an uncaught error (its first line; the stack is left out),
      // timed by the record before it.
      const key = `stderr: ${line.trim().slice(0, 200)}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  }
  return [...counts.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, max)
    .map(([k, v]) => (v > 1 ? `${k} × ${v}` : k));
}

/** Fills in each fault's recovery, exits and log lines once the run is over. */
export function finishFaults(input: {
  records: FaultRecord[];
  rig: ChaosRig;
  readyz: ReadyzChange[];
  completions: CompletionLog;
  samples: Sample[];
  startEpochMs: number;
  endMs: number;
  ratePerSecond: number;
  accepted: (n: number) => boolean;
}): void {
  const { records, rig, startEpochMs } = input;
  const lag: LagPoint[] = input.samples
    .filter((s) => s.scraped && s.tS >= 0)
    .map((s) => ({ atMs: startEpochMs + s.tS * 1000, lag: s.lag.order + s.lag.ledger }));
  const arrivals = Float64Array.from(input.completions.arrivals).sort();
  const done = records.filter((r) => r.startS !== null);
  for (const [i, r] of done.entries()) {
    const startMs = startEpochMs + (r.startS as number) * 1000;
    const next = done[i + 1];
    const untilMs = next === undefined ? input.endMs : startEpochMs + (next.startS as number) * 1000;
    r.sluiceExits = rig.incarnations
      .filter(
        (inc) =>
          inc.unexpected && inc.exitedMs !== null && inc.exitedMs >= startMs && inc.exitedMs <= untilMs,
      )
      .map(
        (inc) =>
          `${(((inc.exitedMs as number) - startEpochMs) / 1000).toFixed(2)} s: pid ${inc.pid} ${inc.exit}`,
      );
    r.sluiceSaid = logSummary(rig.logPath, startMs, untilMs);
    if (r.liftS === null) continue;
    const liftMs = startEpochMs + r.liftS * 1000;
    r.recovery = recoveryOf({
      startMs,
      liftMs,
      completionsMs: arrivals,
      readyz: input.readyz,
      lag,
      ratePerSecond: input.ratePerSecond,
      backlogLastCompletionMs: backlogLastCompletion(
        input.completions.intendedMs,
        input.completions.completedMs,
        input.accepted,
        liftMs,
      ),
      untilMs,
    });
  }
}

/** Reads every output of the run back from SLUICE_OUT: what Sluice stored, whatever the observer missed. */
export async function readOutputs(
  nc: NatsConnection,
  channel: string,
  runId: string,
): Promise<{
  byOrder: Map<number, OrderOutput[]>;
  stock: Map<string, { ats: number; version: number; atMs: number; sku: string }>;
  statusItems: number;
  fulfilItems: number;
  lines: Map<number, { sku: string; qty: number; state: string }[]>;
}> {
  const prefix = keyPrefixOf(channel, runId);
  const byOrder = new Map<number, OrderOutput[]>();
  const lines = new Map<number, { sku: string; qty: number; state: string }[]>();
  const stock = new Map<string, { ats: number; version: number; atMs: number; sku: string }>();
  const topVersion = new Map<number, number>();
  let statusItems = 0;
  let fulfilItems = 0;
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(streamNames.out);
  if (info.state.messages === 0) return { byOrder, stock, statusItems, fulfilItems, lines };
  const js = jetstream(nc);
  // An ordered consumer over the whole stream (nats-server 2.9 takes one filter; ERP batches are skipped below).
  const consumer = await js.consumers.get(streamNames.out);
  const dec = new TextDecoder();
  const statusSubject = `sluice.out.order.${channel}`;
  const stockSubject = `sluice.out.stock.${channel}`;
  const add = (n: number, o: OrderOutput) => {
    let list = byOrder.get(n);
    if (list === undefined) {
      list = [];
      byOrder.set(n, list);
    }
    list.push(o);
  };
  for (;;) {
    const batch = await consumer.fetch({ max_messages: 1000, expires: 2000 });
    let got = 0;
    let pending = 1;
    for await (const m of batch) {
      got++;
      pending = m.info.pending;
      const subject = m.subject;
      const isStatus = subject === statusSubject;
      const isFulfil = subject.startsWith("sluice.out.fulfil.");
      const isStock = subject === stockSubject;
      if (!isStatus && !isFulfil && !isStock) continue;
      let body: { items?: Record<string, unknown>[] };
      try {
        body = JSON.parse(dec.decode(m.data));
      } catch {
        continue;
      }
      for (const item of body.items ?? []) {
        if (isStock) {
          const { sku, ats, version, atMs } = item as {
            sku: string;
            ats: number;
            version: number;
            atMs: number;
          };
          const had = stock.get(sku);
          if (had === undefined || version > had.version) stock.set(sku, { sku, ats, version, atMs });
          continue;
        }
        const ref = typeof item.orderKey === "string" ? parseOrderKey(item.orderKey, prefix) : null;
        if (ref === null) continue;
        const json = String(Bun.hash(JSON.stringify(item)));
        const version = Number(item.version);
        if (isStatus) {
          statusItems++;
          add(ref.n, {
            kind: "status",
            version,
            json,
            status: String(item.status),
            event: String(item.event),
          });
          const ls = (item.lines as { sku: string; qty: number; state: string }[]) ?? [];
          if (version >= (topVersion.get(ref.n) ?? 0)) {
            topVersion.set(ref.n, version);
            lines.set(
              ref.n,
              ls.map((l) => ({ sku: l.sku, qty: l.qty, state: l.state })),
            );
          }
        } else {
          fulfilItems++;
          add(ref.n, {
            kind: "fulfil",
            version,
            json,
            type: String(item.type),
            lineIds: ((item.lines as { lineId: string }[]) ?? []).map((l) => String(l.lineId)),
          });
        }
      }
    }
    if (got === 0 || pending === 0) break;
  }
  return { byOrder, stock, statusItems, fulfilItems, lines };
}

type StockBody = { positions: Record<string, { reserved: number }> };

/** The chaos audit's own checks, from the outputs read back and Sluice's HTTP API. */
export async function chaosChecks(input: {
  httpPort: number;
  outputs: Awaited<ReturnType<typeof readOutputs>>;
  sent: number;
  failed: ReadonlySet<number>;
  finalStatuses: ReadonlySet<string>;
}): Promise<{
  checks: AuditCheck[];
  statusOf: (n: number) => string | null;
  republished: number;
  storedAlthoughFailed: number;
}> {
  const { outputs, sent, failed } = input;
  const checks: AuditCheck[] = [];
  const results = new Map<number, ReturnType<typeof checkOrderOutputs>>();
  for (const [n, list] of outputs.byOrder) results.set(n, checkOrderOutputs(list));
  const lost: string[] = [];
  let accepted = 0;
  for (let n = 0; n < sent; n++) {
    if (failed.has(n)) continue;
    accepted++;
    if ((results.get(n)?.created ?? 0) === 0) lost.push(`order ${n}: no status item in SLUICE_OUT`);
  }
  checks.push({
    name: "no order lost",
    passed: lost.length === 0,
    detail: `${accepted} accepted orders, ${lost.length} without a created status in SLUICE_OUT (read back after the run: what Sluice stored, not what the observer happened to see)`,
    examples: lost.slice(0, limits.examplesMax),
  });
  const doubled: string[] = [];
  const gaps: string[] = [];
  let republished = 0;
  for (const [n, r] of results) {
    republished += r.republished;
    if (r.created > 1 || r.doubled)
      doubled.push(`order ${n}: ${r.created} created statuses${r.doubled ? ", a line requested twice" : ""}`);
    const versionProblems = r.problems.filter(
      (p) => !p.includes('"created"') && !p.includes("requested again"),
    );
    if (versionProblems.length > 0) gaps.push(`order ${n}: ${versionProblems.join("; ")}`);
  }
  checks.push({
    name: "no order doubled",
    passed: doubled.length === 0,
    detail: `${results.size} orders in SLUICE_OUT: ${doubled.length} with more than one created status or a line requested from a warehouse twice`,
    examples: doubled.slice(0, limits.examplesMax),
  });
  checks.push({
    name: "order outputs without a version gap",
    passed: gaps.length === 0,
    detail: `status and fulfilment items per order, versions 1…final: ${gaps.length} orders with a gap, a repeat with other contents or a version out of order; ${republished} items re-published unchanged (a consumer drops them by version)`,
    examples: gaps.slice(0, limits.examplesMax),
  });
  // Reserved stock = the units of every allocated line: a reservation applied twice (or lost) shows here.
  const units = new Map<string, number>();
  for (const ls of outputs.lines.values())
    for (const l of ls)
      if (l.state === "allocated" || l.state === "released")
        units.set(l.sku, (units.get(l.sku) ?? 0) + l.qty);
  for (const ls of outputs.lines.values()) for (const l of ls) if (!units.has(l.sku)) units.set(l.sku, 0);
  const skus = [...units.keys()];
  const base = `http://127.0.0.1:${input.httpPort}`;
  const reserved = await pool(skus, async (sku) => {
    try {
      const r = await fetch(`${base}/v1/stock/${encodeURIComponent(sku)}`, {
        signal: AbortSignal.timeout(10_000),
      });
      const body = (await r.json()) as StockBody;
      return Object.values(body.positions ?? {}).reduce((s, p) => s + p.reserved, 0);
    } catch {
      return Number.NaN;
    }
  });
  const wrong: string[] = [];
  for (const [i, sku] of skus.entries()) {
    const want = units.get(sku) as number;
    const got = reserved[i] as number;
    if (got !== want)
      wrong.push(`${sku}: reserved ${Number.isNaN(got) ? "?" : got}, allocated in final statuses ${want}`);
  }
  checks.push({
    name: "reserved stock equals allocated lines",
    passed: wrong.length === 0,
    detail: `${skus.length} SKUs: reserved (GET /v1/stock/<sku>) vs the units of allocated lines in the orders' last statuses in SLUICE_OUT: ${wrong.length} differ (a reservation applied twice or lost)`,
    examples: wrong.slice(0, limits.examplesMax),
  });
  let storedAlthoughFailed = 0;
  for (const n of failed) if (results.has(n)) storedAlthoughFailed++;
  return {
    checks,
    statusOf: (n) => results.get(n)?.finalStatus ?? null,
    republished,
    storedAlthoughFailed,
  };
}

/** CPU seconds per process made monotone across restarts (a new process starts again from ~0). */
export function monotoneCpu(samples: Sample[]): void {
  const keys = ["sluice", "nats"] as const;
  for (const k of keys) {
    let carry = 0;
    let prevRaw = 0;
    for (const s of samples) {
      const raw = s.cpuSeconds[k];
      if (raw < prevRaw) carry += prevRaw;
      prevRaw = raw;
      s.cpuSeconds[k] = raw + carry;
    }
  }
}

export type { FaultKind };
