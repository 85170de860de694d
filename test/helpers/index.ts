import { afterAll, beforeAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection, headers as natsHeaders } from "@nats-io/transport-node";
import { type Config, loadConfig } from "../../src/config/index.ts";
import { Logger } from "../../src/log/index.ts";
import { Sluice } from "../../src/sluice.ts";
import { embeddedSecurity, natsSecurityOptions } from "../../src/stream/connection.ts";
import type { EmbeddedClient } from "../../src/stream/embedded-auth.ts";
import { EmbeddedServer } from "../../src/stream/embedded-server.ts";

const MiB = 1024 * 1024;

/** Quiet logs in tests unless SLUICE_TEST_LOG=debug|info is set. */
export const testLog = new Logger(
  (process.env.SLUICE_TEST_LOG as "debug" | "info" | undefined) ?? "error",
  { test: true },
  (line) => process.stderr.write(line),
);

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `sluice-${prefix}-`));
}

/**
 * A real nats-server for one test file: random port, a temporary capped JetStream store, Sluice's subject
 * mappings for `partitionCount`. The same class Sluice embeds, so tests exercise the real server config.
 */
export class TestNats {
  readonly dir = tempDir("nats");
  readonly server: EmbeddedServer;

  constructor(
    readonly partitionCount = 4,
    mappings = true,
  ) {
    this.server = new EmbeddedServer({
      dir: this.dir,
      host: "127.0.0.1",
      port: 0,
      bin: "nats-server",
      storeBytesMax: 512 * MiB,
      memoryBytesMax: 32 * MiB,
      payloadBytesMax: 2 * MiB,
      partitionCount,
      mappings,
      // An operator's server without authorization; Sluice's own embedded default is locked (embedded-auth).
      lock: null,
      startTimeoutMs: 15_000,
      stopTimeoutMs: 10_000,
      restartsMax: 0,
      log: testLog,
    });
  }

  get url(): string {
    return this.server.url;
  }

  start(): Promise<void> {
    return this.server.start();
  }

  /** Stops (SIGTERM, store flushed) and starts again on the same port and store. */
  async restart(downMs = 0): Promise<void> {
    await this.server.stop();
    if (downMs > 0) await Bun.sleep(downMs);
    await this.server.start();
  }

  async dispose(): Promise<void> {
    await this.server.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A test config: small caps, short waits, nothing from the process environment. */
export function testConfig(
  natsUrl: string,
  dataDir: string,
  overrides: Record<string, Record<string, unknown>> = {},
): Config {
  const base: Record<string, Record<string, unknown>> = {
    node: { name: "sluice-test", workerCount: 0 },
    log: { level: "error" },
    data: { dir: dataDir },
    nats: { url: natsUrl, requestTimeoutMs: 2000, reconnectWaitMs: 50 },
    streams: {
      partitionCount: 4,
      inboundBytesMax: 64 * MiB,
      unroutedBytesMax: 16 * MiB,
      answerBytesMax: 16 * MiB,
      dlqBytesMax: 16 * MiB,
      outBytesMax: 64 * MiB,
      stockViewBytesMax: 16 * MiB,
      duplicateWindowMs: 60_000,
    },
    consumer: { ackWaitMs: 3000, batchCountMax: 500, pendingMessagesMax: 2000, lagPollMs: 200 },
    // Off unless a test turns it on; small caps for the changelog and snapshots when it does.
    cluster: { logBytesMax: 64 * MiB, snapshotBytesMax: 64 * MiB },
    orders: { timerTickMs: 100 },
    outbox: { publishBackoffMsMax: 200 },
    store: { mapBytesMax: 256 * MiB },
    shutdown: { timeoutMs: 15_000 },
    http: { port: 0 },
  };
  for (const [section, values] of Object.entries(overrides)) base[section] = { ...base[section], ...values };
  return loadConfig({ env: {}, file: "config/sluice.toml", overrides: base });
}

/** An in-process Sluice; fatal errors are recorded instead of exiting the test runner. */
export async function startSluice(config: Config): Promise<{ sluice: Sluice; fatal: Error[] }> {
  const fatal: Error[] = [];
  const sluice = new Sluice(config, testLog, (error) => fatal.push(error));
  await sluice.start();
  return { sluice, fatal };
}

export async function waitFor<T>(
  probe: () => T | Promise<T>,
  what: string,
  timeoutMs = 15_000,
  intervalMs = 25,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < deadline) {
    last = await probe();
    if (last) return last as NonNullable<T>;
    await Bun.sleep(intervalMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
}

/** A producer as a channel or WMS would be: its own connection, JetStream publishes, acks awaited. */
export class Producer {
  private constructor(readonly nc: NatsConnection) {}

  /** `client`: a role of Sluice's locked embedded server (`sluice.embedded.client("producer")`). */
  static async connect(url: string, client: EmbeddedClient | null = null): Promise<Producer> {
    const auth =
      client === null
        ? {}
        : { ...natsSecurityOptions(embeddedSecurity(client)), inboxPrefix: client.inboxPrefix };
    return new Producer(
      await connect({ servers: url, reconnectTimeWait: 50, maxReconnectAttempts: -1, ...auth }),
    );
  }

  get js() {
    return jetstream(this.nc, { timeout: 1000 });
  }

  jsm() {
    return jetstreamManager(this.nc);
  }

  publishJson(subject: string, body: unknown, msgId?: string) {
    const h = natsHeaders();
    h.set("Content-Type", "application/json");
    return this.js.publish(subject, JSON.stringify(body), { headers: h, ...(msgId ? { msgID: msgId } : {}) });
  }

  /** Retries while the server is down (a restart test): returns once JetStream acked the message. */
  async publishJsonRetrying(
    subject: string,
    body: unknown,
    msgId: string,
    timeoutMs = 20_000,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await this.publishJson(subject, body, msgId);
        return;
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await Bun.sleep(50);
      }
    }
  }

  close(): Promise<void> {
    return this.nc.close();
  }
}

// biome-ignore lint/suspicious/noExplicitAny: tests read API responses by path; the assertions are the types.
export async function getJson(url: string): Promise<{ status: number; body: any }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.json() };
}

export function httpBase(sluice: Sluice): string {
  const server = sluice.http;
  if (server === null) throw new Error("sluice has no HTTP server");
  return `http://127.0.0.1:${server.port}`;
}

export type Fixture = { nats: TestNats; dataDir: string; sluice: Sluice; fatal: Error[]; producer: Producer };

/**
 * The usual integration-test set-up for one file: its own nats-server, a Sluice on it with a temporary data
 * directory, a producer; all stopped and removed after the file. `ready` receives them once started.
 */
export function sluiceFixture(
  name: string,
  ready: (f: Fixture) => void,
  options: {
    partitionCount?: number;
    mappings?: boolean;
    overrides?: Record<string, Record<string, unknown>>;
  } = {},
): void {
  const nats = new TestNats(options.partitionCount ?? 4, options.mappings ?? true);
  const dataDir = tempDir(name);
  let fixture: Fixture | null = null;
  beforeAll(async () => {
    await nats.start();
    const { sluice, fatal } = await startSluice(testConfig(nats.url, dataDir, options.overrides));
    fixture = { nats, dataDir, sluice, fatal, producer: await Producer.connect(nats.url) };
    ready(fixture);
  });
  afterAll(async () => {
    await fixture?.producer.close();
    await fixture?.sluice.stop();
    await nats.dispose();
    rmSync(dataDir, { recursive: true, force: true });
  });
}

/**
 * The reference sink (`--source erp`) run against `natsUrl` with the NATS settings in `env` (security, and
 * `SLUICE_SINK_NATS_INBOX_PREFIX` where the user's inboxes are not under `_INBOX`) until it delivered one ERP
 * batch to an endpoint that takes everything; returns what it delivered and its stats.
 */
export async function deliverErpBatchWithSink(
  natsUrl: string,
  env: Record<string, string>,
  timeoutMs = 15_000,
): Promise<{ received: unknown[]; deadLettered: number }> {
  const { parseSinkOptions, startSink } = await import("../../src/sink/index.ts");
  const received: unknown[] = [];
  const endpoint = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: async (req) => {
      received.push(await req.json());
      return new Response("ok");
    },
  });
  const args = ["--source", "erp", "--url", `http://127.0.0.1:${endpoint.port}/erp`, "--nats", natsUrl];
  const parsed = parseSinkOptions([...args, "--rps", "1000", "--log-level", "error"], env);
  if (!parsed.ok) throw new Error(parsed.detail);
  let sink: Awaited<ReturnType<typeof startSink>> | null = null;
  try {
    sink = await startSink(parsed.value);
    await waitFor(() => received.length > 0, "an ERP batch delivered", timeoutMs);
    return { received, deadLettered: sink.stats.deadLettered };
  } finally {
    await sink?.stop();
    endpoint.stop(true);
  }
}
