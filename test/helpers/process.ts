import type { Subprocess } from "bun";

/** A free TCP port on loopback (the OS picks; released before use, good enough for tests). */
export function freePort(): number {
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
  const port = server.port as number;
  server.stop(true);
  return port;
}

export type SluiceProcess = { child: Subprocess; httpPort: number; output: () => string };

/** `bun src/cli.ts start` as an operator runs it, with settings given as SLUICE_* environment variables. */
export function spawnSluice(env: Record<string, string>): SluiceProcess {
  const httpPort = freePort();
  let output = "";
  const child = Bun.spawn(["bun", "src/cli.ts", "start"], {
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "/tmp",
      SLUICE_HTTP_PORT: String(httpPort),
      ...env,
    },
    stdout: "pipe",
    stderr: "pipe",
  });
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) output += decoder.decode(chunk, { stream: true });
  };
  void collect(child.stdout as ReadableStream<Uint8Array>);
  void collect(child.stderr as ReadableStream<Uint8Array>);
  return { child, httpPort, output: () => output };
}

export async function waitReady(p: SluiceProcess, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (p.child.exitCode !== null) throw new Error(`sluice exited with ${p.child.exitCode}:\n${p.output()}`);
    try {
      const res = await fetch(`http://127.0.0.1:${p.httpPort}/readyz`);
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await Bun.sleep(50);
  }
  throw new Error(`sluice not ready within ${timeoutMs} ms:\n${p.output()}`);
}

/** `bun src/cli.ts …` with only the given settings in its environment; its output and exit code. */
export async function runCli(args: string[], env: Record<string, string> = {}) {
  const child = Bun.spawn(["bun", "src/cli.ts", ...args], {
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  return { stdout, stderr, code };
}

/** The environment of a test's Sluice process: its server and data dir, small caps, the given ack wait. */
export function processEnv(natsUrl: string, dataDir: string, ackWaitMs: number): Record<string, string> {
  const MiB = 1024 * 1024;
  return {
    SLUICE_NATS_URL: natsUrl,
    SLUICE_DATA_DIR: dataDir,
    SLUICE_LOG_LEVEL: "warn",
    // The process tests (SIGKILL, SIGTERM, restarts) run the partitions in worker threads.
    SLUICE_NODE_WORKER_COUNT: "2",
    SLUICE_NATS_REQUEST_TIMEOUT_MS: "1000",
    SLUICE_CONSUMER_ACK_WAIT_MS: String(ackWaitMs),
    SLUICE_STREAMS_INBOUND_BYTES_MAX: String(64 * MiB),
    SLUICE_STREAMS_UNROUTED_BYTES_MAX: String(16 * MiB),
    SLUICE_STREAMS_ANSWER_BYTES_MAX: String(16 * MiB),
    SLUICE_STREAMS_STOCK_VIEW_BYTES_MAX: String(16 * MiB),
    SLUICE_STREAMS_DLQ_BYTES_MAX: String(16 * MiB),
    SLUICE_STREAMS_OUT_BYTES_MAX: String(64 * MiB),
    SLUICE_STORE_MAP_BYTES_MAX: String(256 * MiB),
  };
}
