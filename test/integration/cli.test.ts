import { afterAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { provisionStreams } from "../../src/stream/provision.ts";
import { skuPartition } from "../../src/stream/subjects.ts";
import { Producer, TestNats, tempDir, testConfig, testLog } from "../helpers/index.ts";
import { runCli } from "../helpers/process.ts";

const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const c of cleanups) await c();
});

const cli = runCli;

describe("sluice CLI", () => {
  test("--help and version", async () => {
    const help = await cli(["--help"]);
    expect(help.code).toBe(0);
    for (const word of ["sluice start", "sluice config print", "sluice version", "SLUICE_<SECTION>_<KEY>"]) {
      expect(help.stdout).toContain(word);
    }
    const version = await cli(["version"]);
    expect(version.code).toBe(0);
    expect(version.stdout).toMatch(/^sluice \d+\.\d+\.\d+ \(bun \d+\.\d+\.\d+\)\n$/);
  });

  test("config print shows the effective config with secrets masked", async () => {
    const r = await cli(["config", "print"], {
      SLUICE_NATS_URL: "nats://bob:hunter2@nats-a:4222",
      SLUICE_NATS_TOKEN: "t0ken",
      SLUICE_STREAMS_PARTITION_COUNT: "8",
    });
    expect(r.code).toBe(0);
    const printed = JSON.parse(r.stdout);
    expect(printed.streams.partitionCount).toBe(8);
    expect(printed.nats.url).toBe("nats://***@nats-a:4222");
    expect(printed.nats.token).toBe("***");
    expect(r.stdout).not.toContain("hunter2");
    expect(r.stdout).not.toContain("t0ken");
  });

  test("a bad setting stops with exit 78 and a message naming the key and the fix", async () => {
    const r = await cli(["config", "print"], { SLUICE_HTTP_PORT: "eighty" });
    expect(r.code).toBe(78);
    expect(r.stderr).toContain(
      'http.port = "eighty" (from env SLUICE_HTTP_PORT) is invalid: set a whole number',
    );
    const start = await cli(["start"], { SLUICE_CONSUMER_BATCH_COUNT_MAX: "-5" });
    expect(start.code).toBe(78);
    expect(start.stderr).toContain("consumer.batchCountMax");
  });

  test("start --partitions pins a cluster node; pins that do not exist stop it with exit 78 and the fix", async () => {
    const outOfRange = await cli(["start", "--partitions", "ledger:0-9"], {
      SLUICE_STREAMS_PARTITION_COUNT: "4",
    });
    expect(outOfRange.code).toBe(78);
    expect(outOfRange.stderr).toContain("cluster.partitions: ledger:0-9 names partition 9");
    const garbage = await cli(["start", "--partitions", "ledgers:1"]);
    expect(garbage.code).toBe(78);
    expect(garbage.stderr).toContain("cluster.partitions");
    expect(garbage.stderr).toContain("SLUICE_CLUSTER_PARTITIONS");
  });

  test("usage errors exit 2 with the help text", async () => {
    const r = await cli(["frobnicate"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown command "frobnicate"');
    expect((await cli(["config", "show"])).code).toBe(2);
    expect((await cli(["--bogus"])).code).toBe(2);
  });

  test("partition prints the ledger partition of a SKU", async () => {
    const r = await cli(["partition", "SKU 1.5"], { SLUICE_STREAMS_PARTITION_COUNT: "16" });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${skuPartition("SKU 1.5", 16)}\n`);
  });

  test("send publishes one JSON message to the configured server and prints the ack", async () => {
    const nats = new TestNats(4);
    await nats.start();
    const dir = tempDir("cli");
    cleanups.push(async () => {
      await nats.dispose();
      rmSync(dir, { recursive: true, force: true });
    });
    const producer = await Producer.connect(nats.url);
    await provisionStreams(await producer.jsm(), testConfig(nats.url, dir), testLog);
    await producer.close();
    const body = '{"type":"received","warehouse":"w1","qty":5}';
    const r = await cli(["send", "sluice.in.stock.SKU-1", body], { SLUICE_NATS_URL: nats.url });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ stream: "SLUICE_LEDGER", seq: 1, duplicate: false });
    const bad = await cli(["send", "sluice.in.stock.SKU-1", "{oops"], { SLUICE_NATS_URL: nats.url });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("the body is not JSON");
  });
});
