import { describe, expect, test } from "bun:test";
import { ConfigError, envName, loadConfig, printable, schema } from "../../src/config/index.ts";
import { largestOutputItem } from "../../src/config/load.ts";

const load = (env: Record<string, string> = {}, overrides?: Record<string, Record<string, unknown>>) =>
  loadConfig({ env, file: "config/sluice.toml", ...(overrides ? { overrides } : {}) });

describe("config", () => {
  test("the shipped file loads and every key has its default or the file's value", () => {
    const c = load();
    expect(c.streams.partitionCount).toBe(4);
    expect(c.nats.url).toBe("");
    expect(c.consumer.batchCountMax).toBe(2000);
    expect(c.outbox.publishAttemptsMax).toBe(schema.outbox.publishAttemptsMax.default);
  });

  test("environment variables override the file, with units kept in their names", () => {
    expect(envName("streams", "partitionCount")).toBe("SLUICE_STREAMS_PARTITION_COUNT");
    expect(envName("consumer", "ackWaitMs")).toBe("SLUICE_CONSUMER_ACK_WAIT_MS");
    const c = load({
      SLUICE_STREAMS_PARTITION_COUNT: "8",
      SLUICE_LOG_LEVEL: "debug",
      SLUICE_NATS_URL: "nats://x:4222",
    });
    expect(c.streams.partitionCount).toBe(8);
    expect(c.log.level).toBe("debug");
  });

  test("an unknown environment variable stops start-up and suggests the right one", () => {
    expect(() => load({ SLUICE_STREAMS_PARTITION_COUNTS: "8" })).toThrow(
      /SLUICE_STREAMS_PARTITION_COUNTS is not a Sluice setting; did you mean SLUICE_STREAMS_PARTITION_COUNT\?/,
    );
  });

  test("a wrong value names the key, where it came from and the fix", () => {
    expect(() => load({ SLUICE_STREAMS_PARTITION_COUNT: "many" })).toThrow(
      /streams\.partitionCount = "many" \(from env SLUICE_STREAMS_PARTITION_COUNT\) is invalid: set a whole number from 1 to 256/,
    );
    expect(() => load({ SLUICE_STREAMS_PARTITION_COUNT: "0" })).toThrow(ConfigError);
    expect(() => load({ SLUICE_STREAMS_PARTITION_COUNT: "2.5" })).toThrow(ConfigError);
    expect(() => load({ SLUICE_LOG_LEVEL: "loud" })).toThrow(/set one of debug, info, warn, error/);
    expect(() => load({ SLUICE_NATS_EMBEDDED_HOST: "0.0.0.0" })).toThrow(/loopback/);
  });

  test("unknown keys and sections in a file are refused", async () => {
    const dir = await import("node:os").then((os) => os.tmpdir());
    const file = `${dir}/sluice-config-${process.pid}.toml`;
    await Bun.write(file, "[streams]\npartitionCont = 4\n");
    expect(() => loadConfig({ env: {}, file })).toThrow(
      /unknown key streams\.partitionCont; did you mean streams\.partitionCount\?/,
    );
    await Bun.write(file, "[stream]\npartitionCount = 4\n");
    expect(() => loadConfig({ env: {}, file })).toThrow(/unknown section \[stream\]; did you mean streams\?/);
    await Bun.write(file, "[streams\n");
    expect(() => loadConfig({ env: {}, file })).toThrow(/not valid TOML/);
    expect(() => loadConfig({ env: {}, file: `${file}.missing` })).toThrow(/does not exist/);
    await Bun.file(file).delete();
  });

  test("relations between limits are asserted at start-up", () => {
    expect(() => load({}, { consumer: { batchCountMax: 5000, pendingMessagesMax: 6000 } })).toThrow(
      /pendingMessagesMax \(6000\) must be at least 2 × consumer.batchCountMax \(5000\)/,
    );
    expect(() => load({}, { consumer: { ackWaitMs: 1000 }, nats: { requestTimeoutMs: 2000 } })).toThrow(
      /ackWaitMs/,
    );
    expect(() => load({}, { streams: { replicas: 3 } })).toThrow(/needs a cluster/);
    expect(() => load({}, { ledger: { returnWindowMs: 60_000 } })).toThrow(
      /ledger\.returnWindowMs \(60000\) must be at least orders\.finalRetentionMs/,
    );
    expect(() => load({}, { nats: { embeddedStoreBytesMax: 64 * 1024 * 1024 } })).toThrow(
      /embeddedStoreBytesMax/,
    );
  });

  test("the largest output item must fit streams.messageBytesMax; the refusal names the keys to change", () => {
    const c = load();
    const largest = largestOutputItem(c);
    expect(largest.kind).toBe("fulfilment item");
    expect(largest.bytes).toBeLessThanOrEqual(c.streams.messageBytesMax);
    expect(c.orders.textBytesMax).toBe(256);
    const fix =
      /the largest (fulfilment|order status) item .* takes \d+ bytes but streams\.messageBytesMax is \d+: lower orders\.linesPerOrderMax, ledger\.idBytesMax or orders\.textBytesMax, or raise streams\.messageBytesMax/;
    expect(() => load({}, { orders: { linesPerOrderMax: 10_000 } })).toThrow(fix);
    expect(() => load({}, { streams: { messageBytesMax: 256 * 1024 } })).toThrow(fix);
    expect(() =>
      load({ SLUICE_ORDERS_TEXT_BYTES_MAX: "4096" }, { orders: { linesPerOrderMax: 1 } }),
    ).not.toThrow();
    expect(() => load({ SLUICE_ORDERS_TEXT_BYTES_MAX: "4097" })).toThrow(
      /orders\.textBytesMax .* from 16 to 4096/,
    );
    // Exactly at the figure passes, one byte under does not.
    const small = { orders: { linesPerOrderMax: 10 }, ledger: { idBytesMax: 32 } };
    const figure = largestOutputItem(load({}, small)).bytes;
    expect(() => load({}, { ...small, streams: { messageBytesMax: figure } })).not.toThrow();
    expect(() => load({}, { ...small, streams: { messageBytesMax: figure - 1 } })).toThrow(
      /streams\.messageBytesMax/,
    );
  });

  test("config print masks secrets", () => {
    const c = load({
      SLUICE_NATS_URL: "nats://alice:s3cret@nats-1:4222",
      SLUICE_NATS_TOKEN: "tok",
      SLUICE_NATS_PASSWORD: "pw",
    });
    const shown = JSON.stringify(printable(c));
    expect(shown).not.toContain("s3cret");
    expect(shown).not.toContain('tok"');
    expect(shown).not.toContain('"pw"');
    expect(printable(c).nats?.url).toBe("nats://***@nats-1:4222");
  });

  test("every number names its unit (Ms, Bytes) or is a count (…Max, …Count) or a port", () => {
    const counts = new Set(["streams.replicas"]);
    for (const [section, fields] of Object.entries(schema)) {
      for (const [key, spec] of Object.entries(fields)) {
        if (spec.kind !== "int" || counts.has(`${section}.${key}`)) continue;
        expect(key).toMatch(/(Ms|Bytes|Max|Count|Port|^port)$/);
        expect(spec.why.length).toBeGreaterThan(10);
      }
    }
  });
});

test("node.workerCount -1: cores − 1 worker threads from 4 cores, none below (measured slower on 2)", async () => {
  const { autoWorkerCount } = await import("../../src/sluice.ts");
  expect([1, 2, 3, 4, 8, 16].map(autoWorkerCount)).toEqual([0, 0, 0, 3, 7, 15]);
});
