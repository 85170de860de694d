import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { open } from "lmdb";
import type { Allocation } from "../../src/domain/ledger/index.ts";
import { ledgerTables } from "../../src/stages/ledger/applier.ts";
import { checkLedgerPartition } from "../../src/stages/ledger/check.ts";
import { ledgerUpgrades } from "../../src/stages/ledger/upgrade.ts";
import { PartitionStore } from "../../src/store/index.ts";

// A ledger partition written before retention (layout 5) has allocations but no reservation index: opening it
// for writing derives the index from its open reservations, once, so a count finds them.

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const identity = { stage: "ledger", partition: 0, partitionCount: 1 };
const options = { mapBytesMax: 64 * 1024 * 1024, tables: ledgerTables };

const allocation = (
  lineId: string,
  warehouse: string,
  reserved: number,
  reservedAtMs: number,
): Allocation => ({
  sku: "A",
  orderKey: "shop.o1",
  lineId,
  attempt: 1,
  warehouse,
  reserved,
  shipped: 0,
  returned: 0,
  reservedAtMs,
  eventIds: [],
  refusal: "",
});

test("layout 5 → 6: the reservation index is derived from open reservations, once", async () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-upgrade6-"));
  dirs.push(dir);
  const store = PartitionStore.open(dir, identity, options);
  const list = [allocation("1", "w1", 3, 10), allocation("2", "w1", 0, 11), allocation("3", "w2", 4, 12)];
  await store.commit({
    ops: list.map((a) => ({
      op: "put" as const,
      table: "allocations",
      key: [a.sku, a.orderKey, a.lineId],
      value: a,
    })),
    outbox: [],
    streamSeqLastApplied: 7,
  });
  await store.close();
  const root = open({ path: dir, maxDbs: 30 });
  root.openDB({ name: "meta", encoding: "msgpack" }).putSync("layoutVersion", 5);
  await root.close();

  const upgraded = PartitionStore.open(dir, identity, { ...options, upgrades: ledgerUpgrades });
  expect(upgraded.range<number>("reservations").map((r) => [r.key, r.value])).toEqual([
    [["A", "w1", 10, "shop.o1", "1"], 3],
    [["A", "w2", 12, "shop.o1", "3"], 4],
  ]);
  expect(upgraded.streamSeqLastApplied()).toBe(7);
  expect(checkLedgerPartition(upgraded, 0).reservationMismatches.filter((m) => m.rowsWrong > 0)).toEqual([]);
  await upgraded.close();
});
