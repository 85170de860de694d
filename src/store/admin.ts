import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { Packr, Unpackr } from "msgpackr";
import type { Config } from "../config/index.ts";
import { openPartitionStore, stageDefinitions } from "../stages/definition.ts";
import { checkLedgerPartition, isConsistent, type LedgerCheck } from "../stages/ledger/check.ts";
import type { Stage } from "../stream/subjects.ts";
import { lockDataDir } from "./lock.ts";
import { type PartitionStore, partitionDir } from "./partition-store.ts";

// Offline operator commands over a data directory: `sluice ledger check`, `sluice partition export|import`.
// LMDB lets these read while Sluice runs; import needs the partition stopped (it writes).

const tablesOf = (stage: Stage) => stageDefinitions[stage].tables;

function openPartition(c: Config, stage: Stage, partition: number, readOnly: boolean): PartitionStore {
  const dir = partitionDir(c.data.dir, stage, partition);
  if (readOnly && !existsSync(dir))
    throw new Error(`${dir} does not exist: no ${stage} partition ${partition} in data.dir`);
  // The stage's definition, as start-up uses it: the same tables and layout upgrades.
  return openPartitionStore(c, stage, partition, { readOnly });
}

/** Rebuilds every ledger position from its entries and compares (invariant 5), partition by partition. */
export async function checkLedger(c: Config): Promise<{ consistent: boolean; partitions: LedgerCheck[] }> {
  const partitions: LedgerCheck[] = [];
  for (let p = 0; p < c.streams.partitionCount; p++) {
    const store = openPartition(c, "ledger", p, true);
    try {
      partitions.push(checkLedgerPartition(store, p));
    } finally {
      await store.close();
    }
  }
  return { consistent: partitions.every(isConsistent), partitions };
}

/** Writes one partition's whole state (every table, meta and outbox) to a msgpack file. */
export async function exportPartition(
  c: Config,
  stage: Stage,
  partition: number,
  file: string,
): Promise<number> {
  const store = openPartition(c, stage, partition, true);
  try {
    const records = [...store.export()];
    writeFileSync(
      file,
      new Packr({ useRecords: false }).pack({ format: "sluice-partition", version: 1, records }),
    );
    return records.length;
  } finally {
    await store.close();
  }
}

/** Loads an export into an empty partition directory of this data.dir (the partition must not be running). */
export async function importPartition(
  c: Config,
  stage: Stage,
  partition: number,
  file: string,
): Promise<number> {
  const body = new Unpackr({ useRecords: false, mapsAsObjects: true }).unpack(readFileSync(file)) as {
    format?: string;
    records?: Array<{ table: string; key: never; value: unknown }>;
  };
  if (body.format !== "sluice-partition" || !Array.isArray(body.records)) {
    throw new Error(`${file} is not a Sluice partition export`);
  }
  const identity = body.records.find((r) => r.table === "meta" && r.key === "identity")?.value as
    | { stage: string; partition: number }
    | undefined;
  if (identity?.stage !== stage || identity.partition !== partition) {
    throw new Error(
      `${file} holds ${identity?.stage ?? "no"} partition ${identity?.partition ?? "?"}, not ${stage} partition ${partition}`,
    );
  }
  // The partition is written: no Sluice may run on this data directory meanwhile.
  const lock = lockDataDir(c.data.dir, { refreshMs: c.store.lockRefreshMs, staleMs: c.store.lockStaleMs });
  let store: PartitionStore | null = null;
  try {
    store = openPartition(c, stage, partition, false);
    if (store.streamSeqLastApplied() !== 0 || store.count(tablesOf(stage)[0] as string) !== 0) {
      throw new Error(
        `${stage} partition ${partition} in ${c.data.dir} is not empty; import goes into an empty partition`,
      );
    }
    return await store.import(body.records);
  } finally {
    await store?.close();
    lock.release();
  }
}
