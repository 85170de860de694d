import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { ObjectStore } from "@nats-io/obj";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import {
  openSnapshotBucket,
  readSnapshotInfo,
  restoreSnapshot,
  type SnapshotInfo,
  SnapshotRefusedError,
  snapshotName,
  writeSnapshot,
} from "../../src/cluster/snapshots.ts";
import { logHead } from "../../src/cluster/takeover.ts";
import type { Config } from "../../src/config/index.ts";
import type { SkuState } from "../../src/domain/ledger/index.ts";
import type { Sluice } from "../../src/sluice.ts";
import { stageDefinitions } from "../../src/stages/definition.ts";
import { importPartition } from "../../src/store/admin.ts";
import { type Op, PartitionStore, partitionDir } from "../../src/store/index.ts";
import { type Stage, skuPartition, streamNames, subjects } from "../../src/stream/subjects.ts";
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

// Partition snapshots in the Object Store (issue 12): written from a store, restored into a data directory
// that lost it, refused when corrupt or for another partition count, bounded in the bucket, and consistent
// while the partition's writer commits.
const MiB = 1024 * 1024;
const nats = new TestNats(4);
const dataDir = tempDir("snapshots");
const dirs = [dataDir];
let config: Config;
let nc: NatsConnection;
let os: ObjectStore;

const open = (c: Config, stage: Stage, index: number, readOnly = false) =>
  PartitionStore.open(
    partitionDir(c.data.dir, stage, index),
    { stage, partition: index, partitionCount: c.streams.partitionCount },
    { mapBytesMax: c.store.mapBytesMax, tables: stageDefinitions[stage].tables, readOnly },
  );

/** Everything but the store's own id (a restored store names its outputs with its own). */
const records = (s: PartitionStore) =>
  [...s.export()].filter((r) => !(r.table === "meta" && r.key === "storeId"));
const applied = (s: PartitionStore) => ({ seq: s.streamSeqLastApplied(), inputs: s.inputStreams() });
const writer = { writer: "node-a", writtenAtMs: 1_700_000_000_000, logSeqFrom: 1 };
/** How long a snapshot waits for one of the same partition in flight (cluster.handoffSnapshotWaitMsMax). */
const limits = { waitMsMax: 30_000 };
const partitions = (["ledger", "order"] as const).flatMap((stage) =>
  [0, 1, 2, 3].map((i) => [stage, i] as const),
);

function newDataDir(name: string, overrides: Record<string, Record<string, unknown>> = {}): Config {
  const dir = tempDir(name);
  dirs.push(dir);
  return testConfig(nats.url, dir, overrides);
}

beforeAll(async () => {
  await nats.start();
  config = testConfig(nats.url, dataDir);
  const { sluice } = await startSluice(config);
  const producer = await Producer.connect(nats.url);
  for (const sku of ["SN-1", "SN-2", "SN-3", "SN-4", "SN-5", "SN-6"]) {
    await producer.publishJson(subjects.stockPublic(sku), { type: "received", warehouse: "w1", qty: 10 });
  }
  for (const [id, sku] of [
    ["sn-o1", "SN-1"],
    ["sn-o2", "SN-4"],
  ]) {
    await producer.publishJson(subjects.orderPublic("order", "shop", id as string), {
      lines: [{ sku, qty: 2, price: 1 }],
    });
  }
  for (const id of ["sn-o1", "sn-o2"]) {
    await waitFor(async () => {
      const r = await getJson(`${httpBase(sluice)}/v1/orders/shop/${id}`);
      return r.status === 200 && r.body.status === "allocated";
    }, `order ${id} allocated`);
  }
  await producer.close();
  await sluice.stop();
  nc = await connect({ servers: nats.url });
  os = await openSnapshotBucket(jetstream(nc), config, { bytesMax: 128 * MiB });
});

afterAll(async () => {
  await nc?.close();
  await nats.dispose();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

test("every partition's snapshot restores record for record, with its applied sequences, into a wiped data dir", async () => {
  expect(await readSnapshotInfo(os, "ledger", 0)).toBeNull();
  expect(await restoreSnapshot(os, config, "ledger", 0)).toBeNull();
  const before = new Map<
    string,
    { records: unknown[]; applied: ReturnType<typeof applied>; storeId: string }
  >();
  for (const [stage, index] of partitions) {
    const store = open(config, stage, index);
    const info = await writeSnapshot(os, store, { ...writer, logSeqFrom: 100 + index }, limits);
    expect(info.applied.streamSeqLastApplied).toBe(store.streamSeqLastApplied());
    expect(info.applied.inputs).toEqual(store.inputStreams());
    expect(info.recordCount).toBe(records(store).length + 1);
    expect(info.commitSeq).toBe(store.commitSeq());
    expect(info.storeId).toBe(store.storeId());
    expect(await readSnapshotInfo(os, stage, index)).toEqual(info);
    before.set(snapshotName(stage, index), {
      records: records(store),
      applied: applied(store),
      storeId: store.storeId(),
    });
    await store.close();
  }
  // Real content: every ledger partition holding a SKU applied its stock, and the orders went through.
  const seqs = [...before.values()].map((b) => b.applied.seq);
  expect(seqs.filter((s) => s > 0).length).toBeGreaterThanOrEqual(4);

  rmSync(dataDir, { recursive: true, force: true }); // the node is lost with its disk
  for (const [stage, index] of partitions) {
    const restored = await restoreSnapshot(os, config, stage, index);
    const was = before.get(snapshotName(stage, index));
    expect(restored?.applied.streamSeqLastApplied).toBe(was?.applied.seq as number);
    expect(restored?.applied.inputs).toEqual(was?.applied.inputs as []);
    expect(restored?.storeId).toBe(was?.storeId as string); // the lineage the changelog continues
    expect(restored?.logSeqFrom).toBe(100 + index);
    const store = open(config, stage, index);
    expect(records(store)).toEqual(was?.records as []);
    expect(applied(store)).toEqual(was?.applied as ReturnType<typeof applied>);
    await store.close();
  }
  expect(readdirSync(join(dataDir, "partitions")).sort()).toEqual(
    partitions.map(([s, i]) => snapshotName(s, i)).sort(),
  );
});

test("a snapshot's body is a partition export: `sluice partition import` loads it", async () => {
  const body = (await os.getBlob(snapshotName("ledger", 1))) as Uint8Array;
  const other = newDataDir("snapshots-import");
  const file = join(other.data.dir, "ledger-1.msgpack");
  writeFileSync(file, body);
  const count = await importPartition(other, "ledger", 1, file);
  const a = open(config, "ledger", 1, true);
  const b = open(other, "ledger", 1, true);
  expect(count).toBe(records(a).length);
  expect(records(b)).toEqual(records(a));
  await a.close();
  await b.close();
});

test("a corrupted snapshot is refused with the fix, and the local partition is left as it was", async () => {
  const name = snapshotName("ledger", 2);
  const good = (await os.getBlob(name)) as Uint8Array;
  const info = await os.info(name);
  const bad = Uint8Array.from(good);
  bad[bad.length - 3] = (bad[bad.length - 3] as number) ^ 0xff;
  await os.putBlob({ name, metadata: info?.metadata ?? {} }, bad);
  const dir = partitionDir(config.data.dir, "ledger", 2);
  const dataBefore = readFileSync(join(dir, "data.mdb"));
  const error = await restoreSnapshot(os, config, "ledger", 2).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(SnapshotRefusedError);
  expect((error as SnapshotRefusedError).reason).toBe("snapshot_checksum_does_not_match");
  expect((error as Error).message).toContain("is corrupt");
  expect((error as Error).message).toContain("nothing local was changed");
  expect((error as Error).message).toContain(`nats object del SLUICE_SNAPSHOTS ${name}`);
  expect(readFileSync(join(dir, "data.mdb")).equals(dataBefore)).toBe(true);
  expect(
    readdirSync(join(config.data.dir, "partitions")).filter((f) => f !== name && f.startsWith(name)),
  ).toEqual([]);

  // The good body again: restored over the partition that is there (the data file is swapped).
  await os.putBlob({ name, metadata: info?.metadata ?? {} }, good);
  const store = open(config, "ledger", 2);
  const expected = records(store);
  const storeId = store.storeId();
  await store.close();
  expect(await restoreSnapshot(os, config, "ledger", 2)).not.toBeNull();
  const again = open(config, "ledger", 2);
  expect(records(again)).toEqual(expected);
  expect(again.storeId()).not.toBe(storeId); // a new environment, with a store id of its own
  await again.close();
});

test("a snapshot written for another partition count is refused before anything is downloaded", async () => {
  const eight = newDataDir("snapshots-8", { streams: { partitionCount: 8 } });
  const error = await restoreSnapshot(os, eight, "ledger", 1).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(SnapshotRefusedError);
  expect((error as SnapshotRefusedError).reason).toBe("snapshot_partition_count_differs");
  expect((error as Error).message).toContain("written with streams.partitionCount = 4, config says 8");
  expect((error as Error).message).toContain("Changing the partition count");
  expect(existsSync(join(eight.data.dir, "partitions"))).toBe(false);
});

test("an object under a snapshot's name that Sluice did not write is refused", async () => {
  await os.putBlob({ name: snapshotName("order", 9) }, new TextEncoder().encode("not a snapshot"));
  const error = await readSnapshotInfo(os, "order", 9).catch((e: unknown) => e);
  expect((error as SnapshotRefusedError).reason).toBe("snapshot_is_not_sluice");
  await os.delete(snapshotName("order", 9));
});

/** A ledger partition of its own data dir, preloaded with `count` keys in each of two tables, seq 1. */
async function bigPartition(name: string, count: number) {
  const c = newDataDir(name);
  const store = open(c, "ledger", 3);
  await store.commit({ ops: pairOps(1, count), outbox: [], streamSeqLastApplied: 1 });
  return { c, store };
}

/**
 * One commit's writes: `count` keys in skus and the same in allocations, each value naming the commit's
 * sequence. A state is a committed one when both tables hold the same keys and the newest value's sequence
 * is the applied sequence.
 */
function pairOps(seq: number, count: number): Op[] {
  const pad = "x".repeat(200);
  return Array.from({ length: count }, (_, i): Op[] => [
    { op: "put", table: "skus", key: `k-${seq}-${i}`, value: { seq, pad } },
    { op: "put", table: "allocations", key: `k-${seq}-${i}`, value: { seq, pad } },
  ]).flat();
}

test("many snapshots over one name keep the bucket at one snapshot's size", async () => {
  const { store } = await bigPartition("snapshots-bounded", 2_000); // ≈ 1 MiB: several chunks per put
  const first = await writeSnapshot(os, store, writer, limits);
  const sizeAfterOne = (await os.status()).size;
  for (let i = 0; i < 20; i++)
    await writeSnapshot(os, store, { ...writer, writtenAtMs: writer.writtenAtMs + i }, limits);
  const sizeAfterMany = (await os.status()).size;
  await store.close();
  expect(first.bodyBytes).toBeGreaterThan(512 * 1024);
  // Only the metadata message's timestamp and revision digits differ between puts.
  expect(Math.abs(sizeAfterMany - sizeAfterOne)).toBeLessThan(1024);
});

test("a snapshot taken while the writer commits restores to one committed state", async () => {
  const { store } = await bigPartition("snapshots-live", 20_000); // ≈ 10 MiB: ten file chunks
  let seq = 1;
  let stop = false;
  const writes = (async () => {
    while (!stop) {
      await store.commit({ ops: pairOps(seq + 1, 3), outbox: [], streamSeqLastApplied: seq + 1 });
      seq++;
    }
  })();

  let info: SnapshotInfo;
  try {
    info = await snapshotsWhileCommitting(store, () => seq);
  } finally {
    stop = true;
    await writes;
  }
  expect(seq).toBeGreaterThan(info.applied.streamSeqLastApplied);
  const elsewhere = newDataDir("snapshots-live-restore");
  const restored = await restoreSnapshot(os, elsewhere, "ledger", 3);
  expect(restored?.applied.streamSeqLastApplied).toBe(info.applied.streamSeqLastApplied);
  expect(restored?.commitSeq).toBe(info.commitSeq);
  expect(info.commitSeq).toBe(info.applied.streamSeqLastApplied); // one commit per sequence here
  const copy = open(elsewhere, "ledger", 3, true);
  const tables = ["skus", "allocations"].flatMap((table) =>
    copy.range<{ seq: number }>(table).map((r) => ({ table, seq: r.value.seq })),
  );
  expectCommitted(tables, copy.streamSeqLastApplied());
  await copy.close();
  await store.close();
});

/**
 * The store's snapshot read while the writer commits (two commits land half-way through it): it holds one
 * committed state. Then the snapshot written meanwhile, which the caller restores.
 */
async function snapshotsWhileCommitting(store: PartitionStore, seq: () => number): Promise<SnapshotInfo> {
  const snap = store.snapshot();
  let read = 0;
  const seen: Array<{ table: string; seq: number }> = [];
  try {
    for (const r of snap.records) {
      if (r.table === "skus" || r.table === "allocations")
        seen.push({ table: r.table, seq: (r.value as { seq: number }).seq });
      // Inside skus, before allocations is read.
      if (++read === 20_000) {
        const at = snap.applied.streamSeqLastApplied;
        await waitFor(() => seq() >= at + 2, "two commits while the snapshot is read");
      }
    }
  } finally {
    snap.done();
  }
  expect(seq()).toBeGreaterThan(snap.applied.streamSeqLastApplied); // the writer moved on meanwhile
  expectCommitted(seen, snap.applied.streamSeqLastApplied);
  return writeSnapshot(os, store, writer, limits);
}

/** Both tables hold every key of commits 1…seq and none later: 20,000 from the first, 3 from each after. */
function expectCommitted(rows: Array<{ table: string; seq: number }>, seq: number): void {
  const expected = 20_000 + 3 * (seq - 1);
  for (const table of ["skus", "allocations"]) {
    const mine = rows.filter((r) => r.table === table);
    expect(mine.length).toBe(expected);
    expect(mine.reduce((max, r) => Math.max(max, r.seq), 0)).toBe(seq);
  }
}

test("a handoff's snapshot meets the periodic one of its partition: it joins it when it holds the last commit, else writes its own after it", async () => {
  const { store } = await bigPartition("snapshots-collide", 5_000); // ≈ 2.5 MiB: the body takes a while
  const handoff = { ...writer, writer: "node-handoff" };

  // Nothing committed since the periodic snapshot's read began: it is the handoff's snapshot too.
  const [periodic, joined] = await Promise.all([
    writeSnapshot(os, store, writer, limits),
    writeSnapshot(os, store, handoff, limits),
  ]);
  expect(joined.commitSeq).toBeGreaterThanOrEqual(store.commitSeq());
  expect(joined.revision).toBe(periodic.revision); // one snapshot written, both callers have it
  expect((await readSnapshotInfo(os, "ledger", 3))?.revision).toBe(periodic.revision);

  // A commit lands after the periodic snapshot's read began: the handoff waits for it, then writes its own.
  const older = writeSnapshot(os, store, writer, limits);
  await store.commit({ ops: pairOps(2, 3), outbox: [], streamSeqLastApplied: 2 });
  const needed = store.commitSeq();
  const [second, own] = await Promise.all([older, writeSnapshot(os, store, handoff, limits)]);
  expect(second.commitSeq).toBe(needed - 1);
  expect(own.commitSeq).toBe(needed);
  expect(own.writer).toBe("node-handoff");
  expect(own.revision).toBeGreaterThan(second.revision);
  const latest = await readSnapshotInfo(os, "ledger", 3);
  expect(latest?.revision).toBe(own.revision);
  expect(latest?.commitSeq).toBe(needed);

  // Past its limit the waiting one is refused, naming the key; the one in flight is written all the same.
  const slow = writeSnapshot(os, store, writer, limits);
  const refused = await writeSnapshot(os, store, handoff, { waitMsMax: 0 }).catch((e: unknown) => e);
  expect((refused as Error).message).toContain("cluster.handoffSnapshotWaitMsMax");
  expect((await slow).commitSeq).toBe(needed);
  await store.close();
});

test("in a cluster one node reads the snapshots' positions and purges; nothing goes that a partition's latest snapshot needs", async () => {
  const natsC = new TestNats(4);
  await natsC.start();
  const nodes: Array<{ sluice: Sluice; fatal: Error[] }> = [];
  const nodeConfig = (name: string) => {
    const dir = tempDir(`snapshots-retention-${name}`);
    dirs.push(dir);
    return testConfig(natsC.url, dir, {
      node: { name, workerCount: 0 },
      cluster: { enabled: true, leaseMs: 1500, leaseRenewMs: 300, rebalanceMs: 300, snapshotMs: 1000 },
      streams: { appliedHistoryMs: 0, retentionIntervalMs: 100 },
    });
  };
  const ncC = await connect({ servers: natsC.url });
  const producer = await Producer.connect(natsC.url);
  try {
    nodes.push(await startSluice(nodeConfig("node-a")));
    nodes.push(await startSluice(nodeConfig("node-b")));
    const jsm = await jetstreamManager(ncC);
    const osC = await openSnapshotBucket(jetstream(ncC), config, { bytesMax: 64 * MiB });
    // The streams' first sequences, then the snapshots: a purge point read from older snapshots is lower.
    const purgedWithinSnapshots = async () => {
      const logFirst = (await jsm.streams.info("SLUICE_LOG")).state.first_seq;
      const ledgerFirst = (await jsm.streams.info(streamNames.ledger)).state.first_seq;
      const infos = await Promise.all(partitions.map(([stage, i]) => readSnapshotInfo(osC, stage, i)));
      // Each partition's last record before its snapshot stays (a takeover reads its writer).
      const logFloor = Math.max(1, Math.min(...infos.map((info) => (info?.logSeqFrom ?? 1) - 1)));
      const ledgerFloor = Math.min(
        ...infos.map((info, i) =>
          partitions[i]?.[0] === "ledger" ? (info?.applied.streamSeqLastApplied ?? 0) + 1 : Infinity,
        ),
      );
      expect(logFirst).toBeLessThanOrEqual(logFloor);
      expect(ledgerFirst).toBeLessThanOrEqual(ledgerFloor);
      // Every partition logged its takeover marker at least: none of their subjects is ever purged empty.
      for (const [stage, i] of partitions) expect(await logHead(jsm, stage, i)).not.toBeNull();
      return { logFirst, ledgerFirst };
    };
    const skus = Array.from({ length: 16 }, (_, i) => `SR-${i}`);
    let sent = 0;
    let purged = { logFirst: 1, ledgerFirst: 1 };
    for (
      let round = 0;
      round < 60 && (purged.logFirst <= 1 || purged.ledgerFirst <= 1 || sent < 300);
      round++
    ) {
      for (let i = 0; i < 10; i++, sent++) {
        await producer.publishJson(subjects.stockPublic(skus[sent % skus.length] as string), {
          type: "received",
          warehouse: "w1",
          qty: 1,
        });
      }
      purged = await purgedWithinSnapshots();
      await Bun.sleep(100);
    }
    expect(purged.logFirst).toBeGreaterThan(1);
    expect(purged.ledgerFirst).toBeGreaterThan(1);
    const [a, b] = nodes.map((n) => n.sluice.retention?.purgedCount);
    expect(a?.get("SLUICE_LOG") ?? 0).toBeGreaterThan(0);
    expect(b?.get("SLUICE_LOG") ?? 0).toBe(0); // node-b is not the retention node: it purges nothing
    expect(b?.get(streamNames.ledger) ?? 0).toBe(0);

    // node-a leaves: node-b restores its partitions from what retention kept, and every receipt counts once.
    await nodes[0]?.sluice.stop();
    const onB = nodes[1]?.sluice as Sluice;
    const counted = (sku: string, i: number) =>
      onB.store("ledger", skuPartition(sku, 4))?.get<SkuState>("skus", sku)?.positions.w1?.onHand ===
      Math.floor(sent / skus.length) + (i < sent % skus.length ? 1 : 0);
    await waitFor(
      () => onB.member?.owned.size === 8 && skus.every(counted),
      "node-b runs all and counted all",
    );
    await purgedWithinSnapshots();
    expect(nodes.flatMap((n) => n.fatal)).toEqual([]);
  } finally {
    for (const n of nodes) await n.sluice.stop().catch(() => undefined);
    await producer.close();
    await ncC.close();
    await natsC.dispose();
  }
}, 90_000);
