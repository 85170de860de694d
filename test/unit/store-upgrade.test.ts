import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { open } from "lmdb";
import type { Allocation, WarehouseLoad } from "../../src/domain/ledger/index.ts";
import { ledgerTables } from "../../src/stages/ledger/applier.ts";
import { ledgerUpgrades } from "../../src/stages/ledger/upgrade.ts";
import { layoutVersion, PartitionStore } from "../../src/store/index.ts";

// A ledger partition written before routing (layout 4) has reservations but no `load` table: opening it
// for writing derives the table from its allocations, so releasing a reservation never counts below zero.

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const identity = { stage: "ledger", partition: 0, partitionCount: 1 };
const options = { mapBytesMax: 64 * 1024 * 1024, tables: ledgerTables };

function allocation(lineId: string, warehouse: string, reserved: number): Allocation {
  return {
    sku: "A",
    orderKey: "shop.o1",
    lineId,
    attempt: 1,
    warehouse,
    reserved,
    shipped: 0,
    returned: 0,
    reservedAtMs: 1,
    eventIds: [],
    refusal: "",
  };
}

async function layout4Partition(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-upgrade-"));
  dirs.push(dir);
  const store = PartitionStore.open(dir, identity, options);
  const ops = [
    allocation("1", "w1", 3),
    allocation("2", "w1", 2),
    allocation("3", "w2", 4),
    allocation("4", "w2", 0),
  ];
  await store.commit({
    ops: ops.map((a) => ({
      op: "put" as const,
      table: "allocations",
      key: [a.sku, a.orderKey, a.lineId],
      value: a,
    })),
    outbox: [],
    streamSeqLastApplied: 7,
  });
  await store.close();
  const root = open({ path: dir, maxDbs: 20 });
  root.openDB({ name: "meta", encoding: "msgpack" }).putSync("layoutVersion", 4);
  await root.close();
  return dir;
}

test("layout 4 → 5: the load table is derived from open reservations, once", async () => {
  const dir = await layout4Partition();
  const store = PartitionStore.open(dir, identity, { ...options, upgrades: ledgerUpgrades });
  const loads = [...store.rangeValues<WarehouseLoad>("load", {})];
  expect(loads).toEqual([
    { warehouse: "w1", reserved: 5, shippedDay: 0, shippedUnits: 0 },
    { warehouse: "w2", reserved: 4, shippedDay: 0, shippedUnits: 0 },
  ]);
  expect(store.streamSeqLastApplied()).toBe(7);
  await store.close();
  // Opened again: already layout 5, nothing derived twice.
  const again = PartitionStore.open(dir, identity, { ...options, upgrades: ledgerUpgrades });
  expect([...again.rangeValues<WarehouseLoad>("load", {})].map((l) => l.reserved)).toEqual([5, 4]);
  await again.close();
  expect(layoutVersion).toBe(6);
});

test("an older layout opened read-only is refused with the fix, not upgraded", async () => {
  const dir = await layout4Partition();
  expect(() =>
    PartitionStore.open(dir, identity, { ...options, readOnly: true, upgrades: ledgerUpgrades }),
  ).toThrow(/layout 4/);
});
