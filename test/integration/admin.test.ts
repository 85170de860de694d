import { afterAll, beforeAll, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import type { SkuState } from "../../src/domain/ledger/index.ts";
import { ledgerTables } from "../../src/stages/ledger/applier.ts";
import { PartitionStore, partitionDir } from "../../src/store/index.ts";
import { skuPartition, subjects } from "../../src/stream/subjects.ts";
import {
  getJson,
  httpBase,
  Producer,
  startSluice,
  TestNats,
  tempDir,
  testConfig,
  waitFor,
} from "../helpers/index.ts";
import { runCli } from "../helpers/process.ts";

// Operator commands over a data directory: the ledger consistency check and partition export/import.
const nats = new TestNats(4);
const dataDir = tempDir("admin");
const otherDir = tempDir("admin-import");

/** The CLI on `dir`, as an operator runs it (small LMDB maps for the test). */
const cli = (args: string[], dir: string) =>
  runCli(args, { SLUICE_DATA_DIR: dir, SLUICE_STORE_MAP_BYTES_MAX: String(256 * 1024 * 1024) });

beforeAll(async () => {
  await nats.start();
  const { sluice } = await startSluice(testConfig(nats.url, dataDir));
  const producer = await Producer.connect(nats.url);
  for (const sku of ["AD-1", "AD-2", "AD-3", "AD-4", "AD-5"]) {
    await producer.publishJson(subjects.stockPublic(sku), { type: "received", warehouse: "w1", qty: 10 });
  }
  await producer.publishJson(subjects.orderPublic("order", "shop", "adm-1"), {
    lines: [
      { sku: "AD-1", qty: 2, price: 1 },
      { sku: "AD-2", qty: 3, price: 1 },
    ],
  });
  await waitFor(async () => {
    const r = await getJson(`${httpBase(sluice)}/v1/orders/shop/adm-1`);
    return r.status === 200 && r.body.status === "allocated";
  }, "order allocated");
  await producer.close();
  await sluice.stop();
});

afterAll(async () => {
  await nats.dispose();
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(otherDir, { recursive: true, force: true });
});

test("sluice ledger check rebuilds positions from entries: consistent, then a tampered position is found", async () => {
  const ok = await cli(["ledger", "check"], dataDir);
  expect(ok.stderr).toBe("");
  expect(ok.code).toBe(0);
  const report = JSON.parse(ok.stdout);
  expect(report.consistent).toBe(true);
  expect(report.partitions.reduce((n: number, p: { skus: number }) => n + p.skus, 0)).toBe(5);

  // Tamper with one stored position behind the ledger's back: the check must name it.
  const p = skuPartition("AD-1", 4);
  const store = PartitionStore.open(
    partitionDir(dataDir, "ledger", p),
    { stage: "ledger", partition: p, partitionCount: 4 },
    { mapBytesMax: 256 * 1024 * 1024, tables: ledgerTables },
  );
  const state = store.get<SkuState>("skus", "AD-1") as SkuState;
  const w1 = state.positions.w1 as SkuState["positions"][string];
  await store.commit({
    ops: [
      {
        op: "put",
        table: "skus",
        key: "AD-1",
        value: { ...state, positions: { w1: { ...w1, onHand: 99 } } },
      },
    ],
    outbox: [],
    streamSeqLastApplied: null,
  });
  await store.close();
  const bad = await cli(["ledger", "check"], dataDir);
  expect(bad.code).toBe(1);
  const mismatches = JSON.parse(bad.stdout).partitions.flatMap(
    (x: { mismatches: unknown[] }) => x.mismatches,
  );
  expect(mismatches).toEqual([{ sku: "AD-1", warehouse: "w1", field: "onHand", stored: 99, folded: 10 }]);
});

test("a partition exported from one data directory imports into another, record for record", async () => {
  const p = skuPartition("AD-2", 4);
  const file = join(otherDir, "ledger.msgpack");
  const exported = await cli(["partition", "export", "ledger", String(p), file], dataDir);
  expect(exported.code).toBe(0);
  const count = Number(/exported (\d+) records/.exec(exported.stdout)?.[1]);
  expect(count).toBeGreaterThan(3);
  const imported = await cli(["partition", "import", "ledger", String(p), file], otherDir);
  expect(imported.stderr).toBe("");
  expect(imported.stdout).toContain(`imported ${count - 1} records`); // all but the exporting store's id
  const open = (dir: string) =>
    PartitionStore.open(
      partitionDir(dir, "ledger", p),
      { stage: "ledger", partition: p, partitionCount: 4 },
      { mapBytesMax: 256 * 1024 * 1024, tables: ledgerTables, readOnly: true },
    );
  const a = open(dataDir);
  const b = open(otherDir);
  // Everything but the store's own id (each store names its outputs with its own).
  const records = (s: PartitionStore) =>
    [...s.export()].filter((r) => !(r.table === "meta" && r.key === "storeId"));
  expect(records(b)).toEqual(records(a));
  expect(b.export().next().value).toBeDefined();
  expect(b.streamSeqLastApplied()).toBe(a.streamSeqLastApplied());
  await a.close();
  await b.close();
  const again = await cli(["partition", "import", "ledger", String(p), file], otherDir);
  expect(again.code).not.toBe(0);
  expect(again.stderr).toContain("is not empty; import goes into an empty partition");
  const other = (p + 1) % 4;
  const misplaced = await cli(["partition", "import", "ledger", String(other), file], otherDir);
  expect(misplaced.code).toBe(1);
  expect(misplaced.stderr).toContain(`holds ledger partition ${p}, not ledger partition ${other}`);
  const wrong = await cli(["partition", "export", "ledger", "9", file], dataDir);
  expect(wrong.code).toBe(2);
  expect(wrong.stderr).toContain("partition 9 does not exist");
});
