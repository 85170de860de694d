// One HTTP delivery attempt and what it means for the retry policy. Errors carry `retriable` (KafkaJS):
// the retry policy is data, not a guess made later.

/** http_other: a 1xx/3xx answer (redirects are not followed: the URL should be the final one). */
export type FailureKind =
  | "http_4xx"
  | "http_429"
  | "http_5xx"
  | "http_other"
  | "network"
  | "timeout"
  | "aborted";

export type PostOutcome =
  | { ok: true; status: number; seconds: number }
  | {
      ok: false;
      retriable: boolean;
      kind: FailureKind;
      status: number | null;
      detail: string;
      /** The server's Retry-After, when it gave one. */
      retryAfterMs: number | null;
      seconds: number;
    };

/** Status codes worth another try: timeout, too early, too many requests, and every server error. */
const retriableStatus = (s: number) => s === 408 || s === 425 || s === 429 || s >= 500;
/** A response body quoted in a dead letter: enough to see the endpoint's reason, never the whole page. */
const detailCharsMax = 300;

export type PostRequest = {
  url: string;
  body: Uint8Array;
  headers: Array<[string, string]>;
  timeoutMs: number;
  /** Aborted when the sink stops: the attempt ends as `aborted` and the message is left for redelivery. */
  stop: AbortSignal;
};

export async function postJson(r: PostRequest, nowMs: () => number = performance.now.bind(performance)) {
  const started = nowMs();
  const seconds = () => (nowMs() - started) / 1000;
  const timeout = AbortSignal.timeout(r.timeoutMs);
  try {
    const res = await fetch(r.url, {
      method: "POST",
      body: r.body,
      headers: r.headers,
      signal: AbortSignal.any([r.stop, timeout]),
      redirect: "manual",
    });
    const text = await res.text().catch(() => "");
    if (res.status >= 200 && res.status < 300)
      return { ok: true, status: res.status, seconds: seconds() } as const;
    return {
      ok: false,
      retriable: retriableStatus(res.status),
      kind: statusKind(res.status),
      status: res.status,
      detail: `HTTP ${res.status}: ${text.replace(/\s+/g, " ").slice(0, detailCharsMax)}`,
      retryAfterMs: retryAfterMs(res.headers.get("retry-after")),
      seconds: seconds(),
    } satisfies PostOutcome;
  } catch (error) {
    const kind: FailureKind = r.stop.aborted ? "aborted" : timeout.aborted ? "timeout" : "network";
    const detail = kind === "timeout" ? `no answer within ${r.timeoutMs} ms` : (error as Error).message;
    return {
      ok: false,
      retriable: kind !== "aborted",
      kind,
      status: null,
      detail,
      retryAfterMs: null,
      seconds: seconds(),
    } satisfies PostOutcome;
  }
}

function statusKind(status: number): FailureKind {
  if (status === 429) return "http_429";
  if (status >= 500) return "http_5xx";
  return status >= 400 ? "http_4xx" : "http_other";
}

/** Retry-After in seconds or as an HTTP date → ms from now; null when absent or unreadable. */
export function retryAfterMs(v: string | null, nowMs = Date.now()): number | null {
  if (v === null || v.trim() === "") return null;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? null : Math.max(0, at - nowMs);
}

/**
 * Pause before attempt `attempt + 1`: doubling from backoffMsMin, capped at backoffMsMax, with up to half of it
 * random so sinks restarted together do not retry in step. A Retry-After is honoured within the cap.
 */
export function backoffMs(
  attempt: number,
  o: { backoffMsMin: number; backoffMsMax: number },
  retryAfter: number | null,
  random: () => number = Math.random,
): number {
  const exp = Math.min(o.backoffMsMax, o.backoffMsMin * 2 ** Math.min(attempt - 1, 30));
  const jittered = Math.round(exp / 2 + (random() * exp) / 2);
  return Math.min(o.backoffMsMax, Math.max(jittered, retryAfter ?? 0));
}
