import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import type { ErpBatch } from "../../src/domain/erp/index.ts";
import {
  parseSinkOptions,
  SinkError,
  type SinkOptions,
  sinkHeaders,
  startSink,
} from "../../src/sink/index.ts";
import { deadLetterHeaders } from "../../src/stream/dead-letter.ts";
import { provisionStreams } from "../../src/stream/provision.ts";
import { streamNames } from "../../src/stream/subjects.ts";
import { Producer, TestNats, tempDir, testConfig, testLog, waitFor } from "../helpers/index.ts";
import { freePort } from "../helpers/process.ts";

const nats = new TestNats(4);
const dataDir = tempDir("sink");
let producer: Producer;

beforeAll(async () => {
  await nats.start();
  producer = await Producer.connect(nats.url);
  await provisionStreams(await producer.jsm(), testConfig(nats.url, dataDir), testLog);
});

afterAll(async () => {
  await producer?.close();
  await nats.dispose();
  rmSync(dataDir, { recursive: true, force: true });
});

type Received = {
  key: string | null;
  subject: string | null;
  seq: number;
  body: { items?: Array<{ sku: string; version: number }> } & Record<string, unknown>;
  status: number;
  atMs: number;
};

/** A real HTTP endpoint; `respond` picks the status of each request (n counts every request, 0-based). */
function endpoint(respond: (body: Received["body"], n: number) => number = () => 200) {
  const received: Received[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: async (req) => {
      const body = (await req.json()) as Received["body"];
      const status = respond(body, received.length);
      received.push({
        key: req.headers.get("idempotency-key"),
        subject: req.headers.get("sluice-subject"),
        seq: Number(req.headers.get("sluice-stream-seq")),
        body,
        status,
        atMs: performance.now(),
      });
      return new Response(status < 300 ? "ok" : "try later", { status });
    },
  });
  return {
    url: `http://127.0.0.1:${server.port}/hook`,
    received,
    delivered: () => received.filter((r) => r.status < 300),
    stop: () => server.stop(true),
  };
}

function options(channel: string, url: string, extra: string[] = []): SinkOptions {
  const parsed = parseSinkOptions(
    [
      "--source",
      `stock:${channel}`,
      "--url",
      url,
      "--nats",
      nats.url,
      "--rps",
      "1000",
      "--burst",
      "100",
      ...extra,
    ],
    {},
  );
  if (!parsed.ok) throw new Error(parsed.detail);
  return { ...parsed.value, logLevel: "error" };
}

const envelope = (sku: string, version: number) => ({
  items: [{ sku, ats: 10 - version, version, atMs: 1 }],
});
const versions = (rs: Received[]) => rs.map((r) => r.body.items?.[0]?.version);

async function deadLetters(): Promise<Array<{ headers: Record<string, string>; data: string }>> {
  const jsm = await producer.jsm();
  const info = await jsm.streams.info(streamNames.dlq);
  const out = [];
  for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(streamNames.dlq, { seq }).catch(() => null);
    if (m === null || m.subject !== "sluice.dlq.sink_failed") continue;
    const headers: Record<string, string> = {};
    for (const k of m.header.keys()) headers[k] = m.header.get(k);
    out.push({ headers, data: new TextDecoder().decode(m.data) });
  }
  return out;
}

describe("reference sink (in process)", () => {
  test("delivers in order with the message id as Idempotency-Key, else <stream>:<seq>; acks each", async () => {
    const ep = endpoint();
    for (let v = 1; v <= 5; v++)
      await producer.publishJson("sluice.out.stock.shop", envelope("A", v), `ledger-0:abcd1234:${v}`);
    const last = await producer.publishJson("sluice.out.stock.shop", envelope("A", 6));
    await producer.publishJson("sluice.out.stock.web", envelope("A", 99), "not-for-this-sink");
    const sink = await startSink(options("shop", ep.url), { log: testLog });
    try {
      await waitFor(() => ep.received.length >= 6, "six deliveries");
      expect(versions(ep.received)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(ep.received.map((r) => r.key)).toEqual([
        ...[1, 2, 3, 4, 5].map((v) => `ledger-0:abcd1234:${v}`),
        `SLUICE_OUT:${last.seq}`,
      ]);
      expect(ep.received.every((r) => r.subject === "sluice.out.stock.shop")).toBe(true);
      await waitFor(() => sink.stats.delivered === 6, "six acks");
      const info = await (await producer.jsm()).consumers.info(streamNames.out, "sink-stock-shop");
      expect(info.num_ack_pending).toBe(0);
      expect(info.num_pending).toBe(0);
      expect(info.config.max_ack_pending).toBe(1);
    } finally {
      await sink.stop();
      ep.stop();
    }
  });

  test("500 twice then 200: retried with the same key, later messages wait, nothing reordered", async () => {
    const ep = endpoint((_, n) => (n < 2 ? 500 : 200));
    for (let v = 1; v <= 3; v++)
      await producer.publishJson("sluice.out.stock.retry", envelope("B", v), `retry-${v}`);
    const sink = await startSink(
      options("retry", ep.url, ["--backoff-ms-min", "20", "--backoff-ms-max", "100"]),
      {
        log: testLog,
      },
    );
    try {
      await waitFor(() => ep.delivered().length >= 3, "three deliveries");
      expect(ep.received.map((r) => [r.key, r.status])).toEqual([
        ["retry-1", 500],
        ["retry-1", 500],
        ["retry-1", 200],
        ["retry-2", 200],
        ["retry-3", 200],
      ]);
      expect(versions(ep.delivered())).toEqual([1, 2, 3]);
      expect(sink.stats).toMatchObject({ delivered: 3, retried: 2, failedAttempts: 2, deadLettered: 0 });
    } finally {
      await sink.stop();
      ep.stop();
    }
  });

  test("a message that keeps failing ends in sluice.dlq.sink_failed with its reason; the sink keeps going", async () => {
    const ep = endpoint((body) =>
      body.items?.[0]?.sku === "POISON" ? 503 : body.items?.[0]?.sku === "BAD" ? 422 : 200,
    );
    await producer.publishJson("sluice.out.stock.broken", envelope("POISON", 1), "broken-1");
    await producer.publishJson("sluice.out.stock.broken", envelope("BAD", 1), "broken-2");
    await producer.js.publish("sluice.out.stock.broken", "not json {", { msgID: "broken-3" });
    await producer.publishJson("sluice.out.stock.broken", envelope("C", 1), "broken-4");
    const sink = await startSink(
      options("broken", ep.url, ["--attempts", "3", "--backoff-ms-min", "10", "--backoff-ms-max", "30"]),
      { log: testLog },
    );
    try {
      await waitFor(() => ep.delivered().length >= 1, "the good message after the bad ones");
      expect(ep.received.map((r) => [r.key, r.status])).toEqual([
        ["broken-1", 503],
        ["broken-1", 503],
        ["broken-1", 503], // attemptsMax = 3
        ["broken-2", 422], // permanent: not retried
        ["broken-4", 200], // broken-3 is not JSON: never sent
      ]);
      const dl = await waitFor(async () => {
        const d = await deadLetters();
        return d.length >= 3 ? d : null;
      }, "three dead letters");
      expect(dl.map((d) => d.headers[sinkHeaders.idempotencyKey])).toEqual([
        "broken-1",
        "broken-2",
        "broken-3",
      ]);
      const [poison, bad, notJson] = dl;
      expect(poison?.headers[deadLetterHeaders.reason]).toBe("sink_failed");
      expect(poison?.headers[deadLetterHeaders.detail]).toMatch(/^HTTP 503: try later/);
      expect(poison?.headers[deadLetterHeaders.subject]).toBe("sluice.out.stock.broken");
      expect(poison?.headers[deadLetterHeaders.stream]).toBe("SLUICE_OUT");
      expect(poison?.headers[sinkHeaders.attempts]).toBe("3");
      expect(poison?.headers[sinkHeaders.status]).toBe("503");
      expect(poison?.headers["Nats-Msg-Id"]).toBe(
        `dlq:SLUICE_OUT:${poison?.headers[deadLetterHeaders.seq]}:sink-stock-broken`,
      );
      expect(JSON.parse(poison?.data ?? "")).toEqual(envelope("POISON", 1)); // untouched
      expect(bad?.headers[sinkHeaders.attempts]).toBe("1");
      expect(notJson?.headers[deadLetterHeaders.detail]).toBe("payload is not JSON");
      expect(notJson?.data).toBe("not json {");
      // Still running: a new message is delivered.
      await producer.publishJson("sluice.out.stock.broken", envelope("D", 1), "broken-5");
      await waitFor(() => ep.delivered().length >= 2, "a message after the dead letters");
      expect(sink.stats).toMatchObject({ delivered: 2, deadLettered: 3 });
    } finally {
      await sink.stop();
      ep.stop();
    }
  });

  test("honours its rate budget", async () => {
    const ep = endpoint();
    for (let v = 1; v <= 6; v++)
      await producer.publishJson("sluice.out.stock.slow", envelope("E", v), `slow-${v}`);
    const sink = await startSink(options("slow", ep.url, ["--rps", "10", "--burst", "1"]), { log: testLog });
    try {
      await waitFor(() => ep.received.length >= 6, "six deliveries");
      const spanMs = (ep.received[5]?.atMs ?? 0) - (ep.received[0]?.atMs ?? 0);
      expect(spanMs).toBeGreaterThanOrEqual(5 * 100 - 20); // five gaps of 100 ms at 10 requests/s
    } finally {
      await sink.stop();
      ep.stop();
    }
  });

  test("a stop while retrying leaves the message for the next run, which delivers it", async () => {
    let up = false;
    const ep = endpoint(() => (up ? 200 : 500));
    await producer.publishJson("sluice.out.stock.flaky", envelope("F", 1), "flaky-1");
    const opts = options("flaky", ep.url, [
      "--attempts",
      "1000",
      "--backoff-ms-min",
      "20",
      "--backoff-ms-max",
      "50",
    ]);
    const first = await startSink(opts, { log: testLog });
    await waitFor(() => ep.received.length >= 2, "a retry");
    const started = performance.now();
    await first.stop();
    expect(performance.now() - started).toBeLessThan(2000);
    expect(first.stats.deadLettered).toBe(0);
    up = true;
    const second = await startSink(opts, { log: testLog });
    try {
      await waitFor(() => ep.delivered().length >= 1, "delivery by the next run");
      expect(ep.delivered().map((r) => r.key)).toEqual(["flaky-1"]);
    } finally {
      await second.stop();
      ep.stop();
    }
  });

  test("refuses a consumer name that filters another subject, and a server without Sluice's streams", async () => {
    const ep = endpoint();
    const sink = await startSink(options("one", ep.url, ["--consumer", "shared"]), { log: testLog });
    const started = performance.now();
    await sink.stop(); // right after start, with consume() still being set up
    expect(performance.now() - started).toBeLessThan(2000);
    await expect(
      startSink(options("two", ep.url, ["--consumer", "shared"]), { log: testLog }),
    ).rejects.toThrow(
      /consumer shared on SLUICE_OUT filters sluice.out.stock.one, not sluice.out.stock.two: choose another --consumer/,
    );
    const bare = new TestNats(1);
    await bare.start();
    try {
      const o = { ...options("x", ep.url), natsUrl: bare.url };
      const error = await startSink(o, { log: testLog }).catch((e) => e);
      expect(error).toBeInstanceOf(SinkError);
      expect((error as Error).message).toMatch(/stream SLUICE_OUT not found .*start Sluice first/);
    } finally {
      await bare.dispose();
      ep.stop();
    }
  });
});

describe("reference sink across a NATS restart", () => {
  test("keeps running and delivers what is published after the server comes back", async () => {
    const ep = endpoint();
    await producer.publishJson("sluice.out.stock.restart", envelope("G", 1), "restart-1");
    const sink = await startSink(options("restart", ep.url), { log: testLog });
    try {
      await waitFor(() => ep.received.length >= 1, "the first delivery");
      await nats.restart(200);
      await producer.publishJsonRetrying("sluice.out.stock.restart", envelope("G", 2), "restart-2");
      await waitFor(() => ep.received.length >= 2, "a delivery after the restart", 30_000);
      expect(ep.received.map((r) => r.key)).toEqual(["restart-1", "restart-2"]);
    } finally {
      await sink.stop();
      ep.stop();
    }
  });
});

describe("reference sink (its own process)", () => {
  test("bun src/sink/main.ts delivers ERP batches, serves /metrics, stops on SIGTERM with exit 0", async () => {
    const ep = endpoint();
    const batch: ErpBatch = {
      id: "erp-ledger-0-abcd1234-1",
      stage: "ledger",
      partition: 0,
      storeId: "abcd1234",
      batchNo: 1,
      seqFrom: 1,
      seqTo: 9,
      prevSeqTo: 0,
      openedAtMs: 1,
      closedAtMs: 2,
      movements: [{ sku: "A", warehouse: "w1", type: "received", qty: 5, entries: 1, versionTo: 1 }],
      documents: [],
    };
    await producer.publishJson("sluice.out.erp", batch, batch.id);
    const metricsPort = freePort();
    const child = Bun.spawn(
      ["bun", "src/sink/main.ts", "--source", "erp", "--url", ep.url, "--metrics-port", String(metricsPort)],
      {
        env: {
          PATH: process.env.PATH ?? "",
          HOME: process.env.HOME ?? "/tmp",
          SLUICE_SINK_NATS_URL: nats.url,
        },
        stdout: "pipe",
        stderr: "pipe",
      },
    );
    const output = Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text()]);
    try {
      await waitFor(() => ep.received.length >= 1, "the ERP batch");
      expect(ep.received[0]?.key).toBe(batch.id);
      expect(ep.received[0]?.body).toEqual(batch);
      const metrics = await waitFor(async () => {
        const text = await fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((r) => r.text());
        return /sluice_sink_deliveries_total\{[^}]*outcome="delivered"[^}]*\} 1/.test(text) ? text : null;
      }, "the delivery counted");
      expect(metrics).toMatch(/sluice_sink_request_duration_seconds_count\{[^}]*\} 1/);
      expect(metrics).toMatch(/source="erp"/);
    } finally {
      child.kill("SIGTERM");
      ep.stop();
    }
    expect(await child.exited).toBe(0);
    const [stdout] = await output;
    expect(stdout).toMatch(/"msg":"sink stopped"/);
  });

  test("bad usage exits 2 and says the fix", async () => {
    const child = Bun.spawn(["bun", "src/sink/main.ts", "--source", "orders", "--url", "http://x"], {
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp" },
      stdout: "pipe",
      stderr: "pipe",
    });
    const stderr = await new Response(child.stderr).text();
    expect(await child.exited).toBe(2);
    expect(stderr).toMatch(/--source must be stock:<channel> \(e.g. stock:shopify\) or erp/);
  });
});
