#!/usr/bin/env bun
// Container health probe: the Dockerfile's HEALTHCHECK runs `bun scripts/healthcheck.ts` (the slim image has
// no curl). Exit 0 when the endpoint answers 200, 1 otherwise, with one line on stdout saying which.
//
//   bun scripts/healthcheck.ts            GET /healthz (alive: the process serves HTTP)
//   bun scripts/healthcheck.ts --ready    GET /readyz  (ready: NATS connected, consumers running, LMDB open)
//
// The port is SLUICE_HTTP_PORT (default 8080), the same variable Sluice reads; the host is 127.0.0.1 because
// the probe runs inside the container, next to the process, whatever address it listens on for others.
// Probes are open by default (http.probesTokenRequired off); when they are not, the probe sends
// SLUICE_HTTP_TOKEN, else the first secret of SLUICE_HTTP_TOKENS (the container's own config: any scope
// reads the probes). An open probe ignores it.

const timeoutMs = 2000;

/** The token to send, or null: SLUICE_HTTP_TOKEN, else the secret of the first SLUICE_HTTP_TOKENS entry. */
export function probeToken(env: Record<string, string | undefined>): string | null {
  if (env.SLUICE_HTTP_TOKEN) return env.SLUICE_HTTP_TOKEN;
  const secret = env.SLUICE_HTTP_TOKENS?.split(",")[0]?.trim().split(":")[2];
  return secret ? secret : null;
}

export async function probe(
  url: string,
  token: string | null = null,
): Promise<{ ok: boolean; line: string }> {
  try {
    const response = await fetch(url, {
      signal: AbortSignal.timeout(timeoutMs),
      redirect: "manual",
      ...(token === null ? {} : { headers: { Authorization: `Bearer ${token}` } }),
    });
    // Drain the body so the connection closes cleanly; its content does not matter here.
    await response.arrayBuffer().catch(() => undefined);
    const ok = response.status === 200;
    return { ok, line: `healthcheck: ${ok ? "ok" : "fail"} ${url} -> HTTP ${response.status}` };
  } catch (error) {
    const reason =
      error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError")
        ? `no answer within ${timeoutMs} ms`
        : error instanceof Error
          ? error.message
          : String(error);
    return { ok: false, line: `healthcheck: fail ${url} -> ${reason}` };
  }
}

if (import.meta.main) {
  const args = process.argv.slice(2);
  const unknown = args.filter((a) => a !== "--ready");
  if (unknown.length > 0) {
    console.log(`healthcheck: fail: unknown argument ${unknown.join(" ")} (usage: healthcheck.ts [--ready])`);
    process.exit(1);
  }
  const port = process.env.SLUICE_HTTP_PORT || "8080";
  const path = args.includes("--ready") ? "/readyz" : "/healthz";
  const { ok, line } = await probe(`http://127.0.0.1:${port}${path}`, probeToken(process.env));
  console.log(line);
  process.exit(ok ? 0 : 1);
}
