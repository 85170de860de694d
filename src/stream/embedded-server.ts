import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import type { Logger } from "../log/index.ts";
import {
  type EmbeddedClient,
  type EmbeddedRole,
  type EmbeddedUser,
  embeddedClient,
  ensureEmbeddedUsers,
  renderAuthorization,
} from "./embedded-auth.ts";
import { subjectMappings } from "./subjects.ts";

export type EmbeddedServerOptions = {
  /** Directory for the server's config, ports file and JetStream store. */
  dir: string;
  host: string;
  /** 0 picks a free port at first start; restarts keep it. */
  port: number;
  bin: string;
  storeBytesMax: number;
  memoryBytesMax: number;
  payloadBytesMax: number;
  partitionCount: number;
  /** Write Sluice's subject mappings (true for Sluice; false emulates an operator's server without them). */
  mappings?: boolean;
  /**
   * Lock the server: one NKey user per role (src/stream/embedded-auth.ts), seeds in `<dir>/auth`. Sluice's
   * embedded default always does; null emulates an operator's server without authorization (the tests' own).
   */
  lock: { rulesBucket: string } | null;
  startTimeoutMs: number;
  stopTimeoutMs: number;
  /** Restarts after an unexpected exit before `onGiveUp` is called; 0 disables supervision. */
  restartsMax: number;
  log: Logger;
  onGiveUp?: (error: Error) => void;
};

export class EmbeddedServerError extends Error {
  override name = "EmbeddedServerError";
}

/**
 * A nats-server with JetStream on loopback, started and supervised by Sluice: the embedded default, and what
 * every integration test starts for itself. The config it writes carries Sluice's subject mappings, so
 * producers publish to public subjects and the server partitions them.
 */
export class EmbeddedServer {
  private process: Subprocess | null = null;
  private stopping = false;
  private restarts = 0;
  private chosenPort: number;
  private exited: Promise<number> = Promise.resolve(0);
  private users: EmbeddedUser[] = [];

  constructor(private readonly options: EmbeddedServerOptions) {
    this.chosenPort = options.port;
  }

  get url(): string {
    return `nats://${this.options.host.includes(":") ? `[${this.options.host}]` : this.options.host}:${this.chosenPort}`;
  }

  get port(): number {
    return this.chosenPort;
  }

  get pid(): number | undefined {
    return this.process?.pid;
  }

  /** How a client connects as `role`; null when the server is not locked (anyone may connect). */
  client(role: EmbeddedRole): EmbeddedClient | null {
    return this.options.lock === null ? null : embeddedClient(this.options.dir, role);
  }

  async start(): Promise<void> {
    const o = this.options;
    const bin = resolveBinary(o.bin);
    mkdirSync(join(o.dir, "jetstream"), { recursive: true });
    const portsDir = join(o.dir, "ports");
    rmSync(portsDir, { recursive: true, force: true });
    mkdirSync(portsDir, { recursive: true });
    if (o.lock !== null) this.users = ensureEmbeddedUsers(o.dir);
    const configPath = join(o.dir, "nats-server.conf");
    writeFileSync(configPath, this.renderConfig(portsDir), { mode: 0o600 });
    this.stopping = false;
    const child = Bun.spawn([bin, "-c", configPath], { stdout: "pipe", stderr: "pipe" });
    this.process = child;
    this.exited = child.exited;
    void this.pipeLogs(child);
    const port = await this.waitForPort(portsDir, child);
    this.chosenPort = port;
    o.log.info("embedded nats-server started", {
      url: this.url,
      pid: child.pid,
      storeDir: join(o.dir, "jetstream"),
      ...(o.lock === null ? { auth: "none" } : { auth: "nkey", seeds: join(o.dir, "auth") }),
    });
    void child.exited.then((code) => this.onExit(child, code));
  }

  private renderConfig(portsDir: string): string {
    const o = this.options;
    const mappings = Object.entries(o.mappings === false ? {} : subjectMappings(o.partitionCount))
      .map(([from, to]) => `  ${JSON.stringify(from)}: ${JSON.stringify(to)}`)
      .join("\n");
    // -1 asks the server for a free port; its choice is read from the ports file.
    const port = this.chosenPort === 0 ? -1 : this.chosenPort;
    return [
      "# Written by Sluice at start-up; edits are overwritten.",
      `listen: ${JSON.stringify(`${o.host}:${port}`)}`,
      `ports_file_dir: ${JSON.stringify(portsDir)}`,
      `max_payload: ${o.payloadBytesMax}`,
      "jetstream {",
      `  store_dir: ${JSON.stringify(join(o.dir, "jetstream"))}`,
      `  max_file_store: ${o.storeBytesMax}`,
      `  max_memory_store: ${o.memoryBytesMax}`,
      "}",
      "mappings = {",
      mappings,
      "}",
      ...(o.lock === null
        ? []
        : [renderAuthorization(this.users, { partitionCount: o.partitionCount, ...o.lock })]),
      "",
    ].join("\n");
  }

  private async waitForPort(portsDir: string, child: Subprocess): Promise<number> {
    const deadline = Date.now() + this.options.startTimeoutMs;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) {
        throw new EmbeddedServerError(
          `nats-server exited with code ${child.exitCode} at start; see its log lines above`,
        );
      }
      const file = readdirSync(portsDir).find((f) => f.endsWith(".ports"));
      if (file !== undefined) {
        try {
          const ports = JSON.parse(readFileSync(join(portsDir, file), "utf8")) as { nats?: string[] };
          const url = ports.nats?.[0];
          if (url !== undefined) return Number(new URL(url).port);
        } catch {
          // Written but not complete yet: read again on the next tick.
        }
      }
      await Bun.sleep(20);
    }
    child.kill("SIGKILL");
    throw new EmbeddedServerError(`nats-server did not start within ${this.options.startTimeoutMs} ms`);
  }

  private async pipeLogs(child: Subprocess): Promise<void> {
    const log = this.options.log.child({ component: "nats-server" });
    const read = async (stream: ReadableStream<Uint8Array> | number | undefined | null) => {
      if (!(stream instanceof ReadableStream)) return;
      let pending = "";
      const decoder = new TextDecoder();
      for await (const chunk of stream) {
        pending += decoder.decode(chunk, { stream: true });
        let nl = pending.indexOf("\n");
        while (nl >= 0) {
          const line = pending.slice(0, nl).trim();
          pending = pending.slice(nl + 1);
          if (line !== "") {
            if (/\[(ERR|FTL)\]/.test(line)) log.error(line);
            else if (/\[WRN\]/.test(line)) log.warn(line);
            else log.debug(line);
          }
          nl = pending.indexOf("\n");
        }
      }
    };
    await Promise.all([read(child.stdout), read(child.stderr)]);
  }

  private async onExit(child: Subprocess, code: number): Promise<void> {
    if (this.stopping || child !== this.process) return;
    const o = this.options;
    if (this.restarts >= o.restartsMax) {
      const error = new EmbeddedServerError(
        `embedded nats-server exited with code ${code} and was restarted ${this.restarts} times (nats.embeddedRestartsMax)`,
      );
      o.log.error("embedded nats-server gave up", { code });
      o.onGiveUp?.(error);
      return;
    }
    this.restarts += 1;
    const backoffMs = Math.min(100 * 2 ** this.restarts, 5000);
    o.log.warn("embedded nats-server exited; restarting", { code, restart: this.restarts, backoffMs });
    await Bun.sleep(backoffMs);
    if (this.stopping) return;
    try {
      await this.start();
    } catch (error) {
      o.log.error("embedded nats-server restart failed", { error });
      void this.onExit(child, -1);
    }
  }

  /** SIGTERM, then SIGKILL after the grace period. The server flushes its store on SIGTERM. */
  async stop(): Promise<void> {
    this.stopping = true;
    const child = this.process;
    if (child === null || child.exitCode !== null) return;
    child.kill("SIGTERM");
    const timedOut = await Promise.race([
      child.exited.then(() => false),
      Bun.sleep(this.options.stopTimeoutMs).then(() => true),
    ]);
    if (timedOut) {
      this.options.log.warn("embedded nats-server ignored SIGTERM; killing", { pid: child.pid });
      child.kill("SIGKILL");
      await child.exited;
    }
  }

  /** For fault tests: kill hard (no flush), as a crash would. */
  async kill(): Promise<void> {
    this.stopping = true;
    const child = this.process;
    if (child === null || child.exitCode !== null) return;
    child.kill("SIGKILL");
    await this.exited;
  }
}

/** PATH first, then /usr/sbin where Debian installs nats-server (not on a non-root PATH). */
export function resolveBinary(bin: string): string {
  if (bin.includes("/")) {
    if (!existsSync(bin)) throw new EmbeddedServerError(`nats.embeddedBin ${bin} does not exist`);
    return bin;
  }
  const found = Bun.which(bin) ?? (existsSync(`/usr/sbin/${bin}`) ? `/usr/sbin/${bin}` : null);
  if (found === null) {
    throw new EmbeddedServerError(
      `${bin} not found on PATH or in /usr/sbin; install it (Debian: apt-get install -y nats-server) or set nats.url to a server you run`,
    );
  }
  return found;
}
