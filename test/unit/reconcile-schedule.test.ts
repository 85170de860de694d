import { afterAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import type { Config } from "../../src/config/index.ts";
import { type Network, parseNetwork } from "../../src/domain/network/index.ts";
import type { AtsItem } from "../../src/domain/sync/index.ts";
import { Instrumentation } from "../../src/instrumentation/index.ts";
import { LedgerApplier, ledgerTables } from "../../src/stages/ledger/applier.ts";
import { type OutboxItem, PartitionStore } from "../../src/store/index.ts";
import type { InboundMessage } from "../../src/stream/partition-runner.ts";
import { subjects } from "../../src/stream/subjects.ts";
import { tempDir, testConfig } from "../helpers/index.ts";

// The scheduled full reconciliation of a channel (the channel resync every reconcile.fullIntervalMs), over a
// real LMDB partition store with a controlled clock, batches and ticks committed as the partition runner does.

const network = ((): Network => {
  const parsed = parseNetwork(
    { warehouses: [{ id: "w1", channels: ["*"] }], channels: [{ id: "*" }, { id: "A", warehouses: ["w1"] }] },
    "v1",
  );
  if (!parsed.ok) throw new Error(parsed.detail);
  return parsed.value;
})();

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

class Partition {
  seq = 0;
  nowMs = 1_000_000;
  store!: PartitionStore;
  applier!: LedgerApplier;
  readonly sent: AtsItem[] = [];
  readonly config: Config;

  constructor(
    readonly dir: string,
    readonly fullIntervalMs: number,
  ) {
    this.config = testConfig("nats://127.0.0.1:4222", dir, {
      streams: { partitionCount: 1 },
      sync: { flushWindowMs: 10 },
    });
    this.open();
  }

  open(): void {
    this.store = PartitionStore.open(
      join(this.dir, "ledger-0"),
      { stage: "ledger", partition: 0, partitionCount: 1 },
      { mapBytesMax: 64 * 1024 * 1024, tables: ledgerTables },
    );
    this.applier = new LedgerApplier(
      0,
      this.config,
      this.store,
      new Instrumentation(),
      () => network,
      () => this.nowMs,
      null,
      { fullIntervalMs: this.fullIntervalMs },
    );
  }

  async reopen(): Promise<void> {
    await this.store.close();
    this.open();
  }

  private collect(outbox: OutboxItem[]): void {
    for (const o of outbox) {
      if (o.subject !== subjects.outStock("A")) continue;
      this.sent.push(...(JSON.parse(new TextDecoder().decode(o.data)) as { items: AtsItem[] }).items);
    }
  }

  async receive(sku: string, qty: number): Promise<void> {
    this.seq += 1;
    const m: InboundMessage = {
      stream: "SLUICE_LEDGER",
      seq: this.seq,
      subject: subjects.stockPartitioned(0, sku),
      data: new TextEncoder().encode(JSON.stringify({ type: "received", warehouse: "w1", qty })),
      headers: undefined,
      atMs: this.nowMs,
    };
    const write = this.applier.apply([m]);
    await this.store.commit({ ...write, streamSeqLastApplied: m.seq, streamSeqLastAppliedAtMs: m.atMs });
    this.collect(write.outbox);
  }

  /** Ticks every 20 ms for `ms` of the partition's clock. */
  async run(ms: number): Promise<void> {
    for (const end = this.nowMs + ms; this.nowMs < end; ) {
      this.nowMs += 20;
      const write = this.applier.tick(this.nowMs);
      if (write === null) continue;
      await this.store.commit({ ...write, streamSeqLastApplied: null });
      this.collect(write.outbox);
    }
  }

  sentOf(sku: string): AtsItem[] {
    return this.sent.filter((i) => i.sku === sku);
  }
}

function partition(fullIntervalMs: number): Partition {
  const dir = tempDir("reconcile-schedule");
  dirs.push(dir);
  return new Partition(dir, fullIntervalMs);
}

describe("the scheduled full reconciliation", () => {
  test("every fullIntervalMs after the last full resync, every SKU's ATS is offered again", async () => {
    const p = partition(5_000);
    await p.receive("S1", 7);
    await p.receive("__proto__", 3);
    // The first start resyncs the channel (no rule fingerprint yet) and the changes go out.
    await p.run(2_000);
    const settled = { S1: p.sentOf("S1").length, proto: p.sentOf("__proto__").length };
    expect(p.sentOf("S1").at(-1)?.ats).toBe(7);
    expect(p.sentOf("__proto__").at(-1)?.ats).toBe(3);
    // Nothing more before the interval passes…
    await p.run(2_000);
    expect(p.sentOf("S1")).toHaveLength(settled.S1);
    // …then the channel's resync sends both again, same versions.
    await p.run(2_000);
    expect(p.sentOf("S1").length).toBe(settled.S1 + 1);
    expect(p.sentOf("__proto__").length).toBe(settled.proto + 1);
    expect(p.sentOf("S1").at(-1)).toMatchObject({ ats: 7, version: 1 });
    // The schedule is stored: a restart does not resync at once, and the next one comes an interval later.
    await p.reopen();
    await p.run(2_000);
    expect(p.sentOf("S1").length).toBe(settled.S1 + 1);
    await p.run(4_000);
    expect(p.sentOf("S1").length).toBe(settled.S1 + 2);
  }, 20_000);

  test("fullIntervalMs 0: never scheduled", async () => {
    const p = partition(0);
    await p.receive("S1", 7);
    await p.run(2_000);
    const n = p.sentOf("S1").length;
    await p.run(20_000);
    expect(p.sentOf("S1")).toHaveLength(n);
  }, 20_000);
});
