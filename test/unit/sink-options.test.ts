import { describe, expect, test } from "bun:test";
import {
  backoffMs,
  filterSubjectOf,
  parseSinkOptions,
  postJson,
  retryAfterMs,
  sinkDefaults,
} from "../../src/sink/index.ts";

const base = ["--source", "stock:shopify", "--url", "http://127.0.0.1:9000/stock"];

function ok(argv: string[], env: Record<string, string> = {}) {
  const parsed = parseSinkOptions(argv, env);
  if (!parsed.ok) throw new Error(parsed.detail);
  return parsed.value;
}

function refused(argv: string[], env: Record<string, string> = {}): string {
  const parsed = parseSinkOptions(argv, env);
  if (parsed.ok) throw new Error(`accepted ${argv.join(" ")}`);
  return parsed.detail;
}

describe("sink options", () => {
  test("defaults, the consumer name and the filter subject", () => {
    const o = ok(base);
    expect(o).toMatchObject({
      natsUrl: sinkDefaults.natsUrl,
      natsInboxPrefix: "_INBOX",
      source: { kind: "stock", channel: "shopify" },
      consumerName: "sink-stock-shopify",
      requestsPerSecond: 10,
      attemptsMax: 10,
      metricsPort: null,
      headers: [],
    });
    expect(filterSubjectOf(o.source)).toBe("sluice.out.stock.shopify");
    const erp = ok(["--source", "erp", "--url", "https://erp.example/batches"]);
    expect(erp.consumerName).toBe("sink-erp");
    expect(filterSubjectOf(erp.source)).toBe("sluice.out.erp");
  });

  test("a channel id that is not a plain token is encoded as Sluice encodes it in subjects", () => {
    const o = ok(["--source", "stock:shop.br", "--url", "http://x/y"]);
    expect(filterSubjectOf(o.source)).toBe("sluice.out.stock.~c2hvcC5icg");
    expect(o.consumerName).toBe("sink-stock-_c2hvcC5icg");
  });

  test("environment variables, and flags over them", () => {
    const env = {
      SLUICE_SINK_SOURCE: "erp",
      SLUICE_SINK_URL: "http://erp/in",
      SLUICE_SINK_NATS_URL: "nats://a:4222,nats://b:4222",
      SLUICE_SINK_RPS: "0.5",
      SLUICE_SINK_ATTEMPTS: "3",
      SLUICE_SINK_HEADERS: "Authorization: Bearer t0k3n; X-Tenant: 7",
      SLUICE_SINK_NATS_TOKEN: "secret",
      SLUICE_SINK_METRICS_PORT: "9464",
    };
    const o = ok(["--attempts", "5"], env);
    expect(o).toMatchObject({
      source: { kind: "erp" },
      url: "http://erp/in",
      natsUrl: "nats://a:4222,nats://b:4222",
      natsToken: "secret",
      requestsPerSecond: 0.5,
      attemptsMax: 5,
      metricsPort: 9464,
      headers: [
        ["Authorization", "Bearer t0k3n"],
        ["X-Tenant", "7"],
      ],
    });
    expect(ok([...base, "--header", "X-A: 1", "--header", "X-B:2"], env).headers).toEqual([
      ["X-A", "1"],
      ["X-B", "2"],
    ]);
  });

  test("the inbox prefix: a flag or the environment, any subject prefix without wildcards", () => {
    expect(ok([...base, "--nats-inbox-prefix", "_INBOX_READER"]).natsInboxPrefix).toBe("_INBOX_READER");
    expect(ok(base, { SLUICE_SINK_NATS_INBOX_PREFIX: "_INBOX.shop" }).natsInboxPrefix).toBe("_INBOX.shop");
    expect(
      ok([...base, "--nats-inbox-prefix", "_INBOX_READER"], { SLUICE_SINK_NATS_INBOX_PREFIX: "_INBOX" })
        .natsInboxPrefix,
    ).toBe("_INBOX_READER");
    const longest = "a".repeat(sinkDefaults.natsInboxPrefixCharsMax);
    expect(ok([...base, "--nats-inbox-prefix", longest]).natsInboxPrefix).toBe(longest);
    const message =
      /--nats-inbox-prefix must be a subject prefix of at most 128 characters.*without spaces or wildcards/;
    for (const bad of [
      "",
      "_INBOX.>",
      "_INBOX.*",
      "a*b",
      "a>",
      ">",
      "*",
      ".x",
      "x.",
      "a..b",
      "a b",
      "a\tb",
      "ä",
    ]) {
      expect(refused([...base, "--nats-inbox-prefix", bad])).toMatch(message);
    }
    expect(refused([...base, "--nats-inbox-prefix", `${longest}a`])).toMatch(message);
    expect(refused(base, { SLUICE_SINK_NATS_INBOX_PREFIX: "_INBOX.>" })).toMatch(message);
  });

  const cases: Array<[string, string[], RegExp]> = [
    ["no source", ["--url", "http://x/y"], /--source must be stock:<channel> \(e.g. stock:shopify\) or erp/],
    ["an empty channel", ["--source", "stock:", "--url", "http://x/y"], /--source must be/],
    ["another source", ["--source", "orders", "--url", "http://x/y"], /--source must be/],
    ["no url", ["--source", "erp"], /--url must be an http\(s\) URL/],
    ["a non-http url", ["--source", "erp", "--url", "ftp://x/y"], /--url must be an http\(s\) URL/],
    ["rps 0", [...base, "--rps", "0"], /--rps must be a number from 0.001 to 100000/],
    ["rps text", [...base, "--rps", "fast"], /--rps must be a number/],
    ["rps empty", [...base, "--rps", ""], /--rps must be a number/],
    ["attempts 0", [...base, "--attempts", "0"], /--attempts must be a whole number from 1 to 1000/],
    ["attempts fractional", [...base, "--attempts", "2.5"], /--attempts must be a whole number/],
    [
      "a bad port",
      [...base, "--metrics-port", "70000"],
      /--metrics-port must be a whole number from 0 to 65535/,
    ],
    ["burst 0", [...base, "--burst", "0"], /--burst must be a whole number from 1/],
    [
      "min over max",
      [...base, "--backoff-ms-min", "500", "--backoff-ms-max", "100"],
      /--backoff-ms-min must not exceed --backoff-ms-max/,
    ],
    [
      "timeout over half ack wait",
      [...base, "--timeout-ms", "40000"],
      /--timeout-ms must be at most half of --ack-wait-ms/,
    ],
    ["a malformed header", [...base, "--header", "no colon"], /--header "no colon" must read 'Name: value'/],
    ["a header the sink sets", [...base, "--header", "Idempotency-Key: x"], /set by the sink itself/],
    ["a bad consumer name", [...base, "--consumer", "a.b"], /--consumer must be 1–64 letters/],
    ["a bad log level", [...base, "--log-level", "loud"], /--log-level must be debug, info, warn or error/],
    ["an unknown flag", [...base, "--retries", "3"], /Unknown option '--retries'/],
    ["a positional", [...base, "extra"], /Unexpected argument 'extra'/],
  ];
  for (const [what, argv, message] of cases) {
    test(`refuses ${what}`, () => expect(refused(argv)).toMatch(message));
  }

  test("refuses a bad value from the environment too", () => {
    expect(refused(base, { SLUICE_SINK_RPS: "-1" })).toMatch(/--rps must be/);
  });
});

describe("retry policy", () => {
  const o = { backoffMsMin: 100, backoffMsMax: 2000 };
  test("doubles from the minimum, capped at the maximum, with up to half random", () => {
    expect([1, 2, 3, 4, 5, 6].map((a) => backoffMs(a, o, null, () => 1))).toEqual([
      100, 200, 400, 800, 1600, 2000,
    ]);
    expect([1, 2, 3].map((a) => backoffMs(a, o, null, () => 0))).toEqual([50, 100, 200]);
    expect(backoffMs(1000, o, null, () => 1)).toBe(2000);
  });

  test("honours Retry-After within the maximum", () => {
    expect(backoffMs(1, o, 1500, () => 0)).toBe(1500);
    expect(backoffMs(1, o, 60_000, () => 0)).toBe(2000);
    expect(retryAfterMs("3")).toBe(3000);
    expect(retryAfterMs(new Date(10_000).toUTCString(), 4000)).toBe(6000);
    expect(retryAfterMs("soon")).toBeNull();
    expect(retryAfterMs(null)).toBeNull();
    expect(retryAfterMs(" ")).toBeNull();
  });
});

describe("one delivery attempt (postJson against a real local server)", () => {
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: async (req) => {
      const path = new URL(req.url).pathname;
      if (path === "/slow") await Bun.sleep(500);
      if (path === "/busy")
        return new Response("slow down", { status: 429, headers: { "Retry-After": "2" } });
      if (path === "/moved") return new Response(null, { status: 301, headers: { Location: "/elsewhere" } });
      if (path === "/gone") return new Response("no such hook", { status: 404 });
      return new Response("ok", { status: 202 });
    },
  });
  const at = (path: string) => `http://127.0.0.1:${server.port}${path}`;
  const request = (url: string, timeoutMs = 2000, stop = new AbortController().signal) =>
    postJson({ url, body: new TextEncoder().encode("{}"), headers: [], timeoutMs, stop });

  test("2xx is delivered; 429 is retried after Retry-After; 404 and a redirect are not retried", async () => {
    expect(await request(at("/ok"))).toMatchObject({ ok: true, status: 202 });
    expect(await request(at("/busy"))).toMatchObject({
      ok: false,
      retriable: true,
      kind: "http_429",
      retryAfterMs: 2000,
    });
    expect(await request(at("/gone"))).toMatchObject({
      ok: false,
      retriable: false,
      kind: "http_4xx",
      detail: "HTTP 404: no such hook",
    });
    expect(await request(at("/moved"))).toMatchObject({
      ok: false,
      retriable: false,
      kind: "http_other",
      status: 301,
    });
  });

  test("a timeout and a refused connection are retried; a stop is not an error", async () => {
    expect(await request(at("/slow"), 50)).toMatchObject({
      ok: false,
      retriable: true,
      kind: "timeout",
      status: null,
    });
    expect(await request("http://127.0.0.1:1/nothing")).toMatchObject({
      ok: false,
      retriable: true,
      kind: "network",
    });
    const stop = new AbortController();
    const pending = request(at("/slow"), 2000, stop.signal);
    stop.abort();
    expect(await pending).toMatchObject({ ok: false, retriable: false, kind: "aborted" });
    server.stop(true);
  });
});
