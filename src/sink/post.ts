// One HTTP delivery attempt and what it means for the retry policy. Errors carry `retriable` (KafkaJS):
// the retry policy is data, not a guess made later.

/**
 * http_other: a 1xx/3xx answer (redirects are not followed: the URL should be the final one). The marketplace
 * profiles add two read from a 2xx body: throttled (Shopify's THROTTLED, Lazada's ApiCallLimit) and
 * api_error (an error code the API answered with, e.g. Lazada's InternalError).
 */
export type FailureKind =
  | "http_4xx"
  | "http_429"
  | "http_5xx"
  | "http_other"
  | "network"
  | "timeout"
  | "aborted"
  | "throttled"
  | "api_error";

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

/** A response body quoted in a dead letter: enough to see the endpoint's reason, never the whole page. */
const detailCharsMax = 300;

export type PostRequest = {
  url: string;
  body: Uint8Array | string;
  headers: Array<[string, string]>;
  timeoutMs: number;
  /** Aborted when the sink stops: the attempt ends as `aborted` and the message is left for redelivery. */
  stop: AbortSignal;
};

/**
 * A response body is read up to this many bytes: a marketplace's answer to one stock request is a few KiB
 * (Shopify's to a 250-quantity mutation ≈ 40 KiB), so 4 MiB is generous and still bounds a hostile endpoint.
 */
export const responseBytesMax = 4 * 1024 * 1024;

/** What came back from one POST: an answer (any status, its body), or none (network, timeout, stop). */
export type HttpReply =
  | { answered: true; status: number; text: string; retryAfterMs: number | null; seconds: number }
  | { answered: false; kind: "network" | "timeout" | "aborted"; detail: string; seconds: number };

/** One POST, redirects not followed, the body read within responseBytesMax. The marketplaces' door too. */
export async function httpPost(
  r: PostRequest,
  nowMs: () => number = performance.now.bind(performance),
): Promise<HttpReply> {
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
    const text = await readBounded(res).catch(() => "");
    const retryAfter = retryAfterMs(res.headers.get("retry-after"));
    return { answered: true, status: res.status, text, retryAfterMs: retryAfter, seconds: seconds() };
  } catch (error) {
    const kind = r.stop.aborted ? "aborted" : timeout.aborted ? "timeout" : "network";
    const detail = kind === "timeout" ? `no answer within ${r.timeoutMs} ms` : (error as Error).message;
    return { answered: false, kind, detail, seconds: seconds() };
  }
}

async function readBounded(res: Response): Promise<string> {
  if (res.body === null) return "";
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    bytes += chunk.byteLength;
    if (bytes > responseBytesMax) {
      await res.body.cancel().catch(() => undefined);
      return `(response over ${responseBytesMax} bytes, not read)`;
    }
    chunks.push(chunk);
  }
  return new TextDecoder().decode(Buffer.concat(chunks));
}

/** Quotes an answer's body in a detail: enough to see the endpoint's reason, never the whole page. */
export function bodySnippet(text: string): string {
  return text.replace(/\s+/g, " ").slice(0, detailCharsMax);
}

export async function postJson(
  r: PostRequest,
  nowMs: () => number = performance.now.bind(performance),
): Promise<PostOutcome> {
  const reply = await httpPost(r, nowMs);
  if (!reply.answered) {
    return {
      ok: false,
      retriable: reply.kind !== "aborted",
      kind: reply.kind,
      status: null,
      detail: reply.detail,
      retryAfterMs: null,
      seconds: reply.seconds,
    };
  }
  const { status } = reply;
  if (status >= 200 && status < 300) return { ok: true, status, seconds: reply.seconds };
  return {
    ok: false,
    retriable: retriableStatus(status),
    kind: statusKind(status),
    status,
    detail: `HTTP ${status}: ${bodySnippet(reply.text)}`,
    retryAfterMs: reply.retryAfterMs,
    seconds: reply.seconds,
  };
}

/** Status codes worth another try: timeout, too early, too many requests, and every server error. */
export const retriableStatus = (s: number) => s === 408 || s === 425 || s === 429 || s >= 500;

export function statusKind(status: number): FailureKind {
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
