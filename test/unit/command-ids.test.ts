import { afterAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import type { Config } from "../../src/config/index.ts";
import {
  itemCommandId,
  itemCommandIdBytesMax,
  parseStockCommand,
  parseStockItems,
} from "../../src/domain/ledger/commands.ts";
import type { LedgerEntry, SkuState } from "../../src/domain/ledger/index.ts";
import { type Network, parseNetwork } from "../../src/domain/network/index.ts";
import { Instrumentation } from "../../src/instrumentation/index.ts";
import { type CommandIdRecord, LedgerApplier, ledgerTables } from "../../src/stages/ledger/applier.ts";
import { type OutboxItem, PartitionStore } from "../../src/store/index.ts";
import { pack } from "../../src/stream/codec.ts";
import type { InboundMessage } from "../../src/stream/partition-runner.ts";
import { subjects } from "../../src/stream/subjects.ts";
import { tempDir, testConfig } from "../helpers/index.ts";

// Stock command ids (issue #10, finding 12): parsing, and the ledger applier over a real LMDB partition store,
// one transaction per batch as the partition runner commits it. Over a real nats-server:
// test/integration/command-ids.test.ts.

const limits = { quantityMax: 1_000_000, idBytesMax: 64, linesPerOrderMax: 10, itemsPerMessageMax: 10 };
const encoder = new TextEncoder();

describe("commandId in a stock command", () => {
  test("optional: absent stays absent, present is kept", () => {
    const plain = parseStockCommand({ type: "received", warehouse: "w1", qty: 5 }, limits);
    expect(plain).toEqual({ ok: true, value: { type: "received", warehouse: "w1", qty: 5, ref: null } });
    expect(plain.ok && "commandId" in plain.value).toBe(false);
    for (const type of ["received", "adjust", "hold", "unhold", "counted", "override", "safety_stock"]) {
      const body: Record<string, unknown> = { type, warehouse: "w1", commandId: `c-${type}` };
      if (type === "counted") body.onHand = 1;
      else if (type === "override") body.available = 1;
      else body.qty = 1;
      if (type === "hold" || type === "unhold") body.bucket = "damaged";
      const parsed = parseStockCommand(body, limits);
      expect(parsed.ok && parsed.value.commandId).toBe(`c-${type}`);
    }
  });

  test.each([
    [7, "commandId must be a non-empty string"],
    ["", "commandId must be a non-empty string"],
    [null, "commandId must be a non-empty string"],
    ["c".repeat(65), "commandId must be at most 64 bytes"],
    ["é".repeat(33), "commandId must be at most 64 bytes"],
    ["a\u0000b", "commandId must not contain control characters"],
    ["a\nb", "commandId must not contain control characters"],
  ])("%j is refused: %s", (commandId, detail) => {
    const r = parseStockCommand({ type: "received", warehouse: "w1", qty: 1, commandId }, limits);
    expect(r).toEqual({ ok: false, reason: "invalid_command", detail });
  });

  test("at idBytesMax passes; an unknown field names commandId among the allowed", () => {
    const id = "c".repeat(64);
    const r = parseStockCommand({ type: "received", warehouse: "w1", qty: 1, commandId: id }, limits);
    expect(r.ok && r.value.commandId).toBe(id);
    const typo = parseStockCommand({ type: "received", warehouse: "w1", qty: 1, commandID: "x" }, limits);
    expect(!typo.ok && typo.detail).toBe(
      'unknown field "commandID" for received; expected type, ref, warehouse, qty, commandId',
    );
  });

  test("an item's id may be longer by its derived suffix, and no more", () => {
    // idBytesMax 64, indices 0…9: "/9" adds 2 bytes.
    expect(itemCommandIdBytesMax(limits)).toBe(66);
    expect(itemCommandIdBytesMax({ ...limits, idBytesMax: 256, itemsPerMessageMax: 1_000_000 })).toBe(263);
    const body = (commandId: string) => ({ type: "received", warehouse: "w1", qty: 1, commandId });
    expect(parseStockCommand(body("c".repeat(66)), limits, 66).ok).toBe(true);
    expect(parseStockCommand(body("c".repeat(67)), limits, 66)).toEqual({
      ok: false,
      reason: "invalid_command",
      detail: "commandId must be at most 66 bytes",
    });
  });
});

describe("commandId in an import or WMS stock message", () => {
  const items = [
    { sku: "A", type: "received", warehouse: "w1", qty: 1 },
    { sku: "B", type: "received", warehouse: "w1", qty: 2 },
    { sku: "A", type: "received", warehouse: "w2", qty: 3 },
  ];

  test("once for the message: item i is <commandId>/<i>, in the producer's order", () => {
    const r = parseStockItems({ commandId: "imp-7", items }, limits);
    expect(r.ok && r.value.map((i) => [i.sku, i.command.commandId])).toEqual([
      ["A", "imp-7/0"],
      ["B", "imp-7/1"],
      ["A", "imp-7/2"],
    ]);
    expect(itemCommandId("imp-7", 2)).toBe("imp-7/2");
    // A message id at idBytesMax: its items' ids fit the bound the ledger checks them with.
    const long = parseStockItems({ commandId: "c".repeat(64), items }, limits);
    expect(long.ok && long.value.every((i) => (i.command.commandId?.length ?? 0) <= 66)).toBe(true);
  });

  test("per item: each keeps its own; items without one have none", () => {
    const r = parseStockItems({ items: [{ ...items[0], commandId: "x" }, items[1]] }, limits);
    expect(r.ok && r.value.map((i) => i.command.commandId)).toEqual(["x", undefined]);
  });

  test("WMS events: the subject's type and warehouse, the message's commandId", () => {
    const r = parseStockItems({ commandId: "asn-5", items: [{ sku: "A", qty: 4 }] }, limits, {
      type: "received",
      warehouse: "w9",
    });
    expect(r.ok && r.value[0]?.command).toEqual({
      type: "received",
      warehouse: "w9",
      qty: 4,
      ref: null,
      commandId: "asn-5/0",
    });
  });

  test("refused: both at once, a bad message id, a bad item id, another field", () => {
    const both = parseStockItems(
      { commandId: "m", items: [items[0], { ...items[1], commandId: "i" }] },
      limits,
    );
    expect(!both.ok && both.detail).toStartWith("items[1]: commandId is given for the whole message");
    const bad = parseStockItems({ commandId: "c".repeat(65), items }, limits);
    expect(!bad.ok && bad.detail).toBe("commandId must be at most 64 bytes");
    const badItem = parseStockItems({ items: [{ ...items[0], commandId: 5 }] }, limits);
    expect(!badItem.ok && badItem.detail).toBe("items[0]: commandId must be a non-empty string");
    const other = parseStockItems({ commandID: "m", items }, limits);
    expect(!other.ok && other.detail).toBe(
      'unknown field "commandID"; expected items and (optional) commandId',
    );
  });
});

// ---- the ledger applier over LMDB -----------------------------------------------------------------------

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const network = ((): Network => {
  const parsed = parseNetwork({ warehouses: [{ id: "w1", channels: ["*"] }], channels: [{ id: "*" }] }, "v1");
  if (!parsed.ok) throw new Error(parsed.detail);
  return parsed.value;
})();

type Repeat = { partition: number; outcome: "applied" | "refused" };

class Partition {
  seq = 0;
  store!: PartitionStore;
  applier!: LedgerApplier;
  readonly events = new Instrumentation();
  readonly repeats: Repeat[] = [];
  readonly config: Config;

  constructor(
    readonly dir: string,
    ledger: Record<string, unknown> = {},
  ) {
    this.config = testConfig("nats://127.0.0.1:4222", dir, { streams: { partitionCount: 1 }, ledger });
    this.events.on("stock_command_repeated", (e) => this.repeats.push(e));
    this.open();
  }

  open(): void {
    this.store = PartitionStore.open(
      join(this.dir, "ledger-0"),
      { stage: "ledger", partition: 0, partitionCount: 1 },
      { mapBytesMax: 64 * 1024 * 1024, tables: ledgerTables },
    );
    this.applier = new LedgerApplier(0, this.config, this.store, this.events, () => network);
  }

  async reopen(): Promise<void> {
    await this.store.close();
    this.open();
  }

  message(subject: string, body: unknown): InboundMessage {
    this.seq += 1;
    const data = typeof body === "string" ? encoder.encode(body) : encoder.encode(JSON.stringify(body));
    return {
      stream: "SLUICE_LEDGER",
      seq: this.seq,
      subject,
      data,
      headers: undefined,
      atMs: 1_000 + this.seq,
    };
  }

  stock(sku: string, body: unknown): InboundMessage {
    return this.message(subjects.stockPartitioned(0, sku), body);
  }

  items(items: unknown[]): InboundMessage {
    const m = this.message(subjects.ledgerItems(0, "import"), "");
    return { ...m, data: pack({ items }) };
  }

  /** One batch, committed: what it wrote to the ledger's own tables and what it put in the outbox. */
  async batch(...messages: InboundMessage[]): Promise<{ changed: string[]; outbox: OutboxItem[] }> {
    const write = this.applier.apply(messages);
    const last = messages.at(-1) as InboundMessage;
    await this.store.commit({
      ...write,
      streamSeqLastApplied: last.seq,
      streamSeqLastAppliedAtMs: last.atMs,
    });
    const changed = write.ops
      .filter((o) => o.table === "skus" || o.table === "entries")
      .map((o) => `${o.table}:${JSON.stringify(o.key)}`);
    return { changed, outbox: write.outbox };
  }

  sku(sku: string): SkuState | undefined {
    return this.store.get<SkuState>("skus", sku);
  }

  onHand(sku: string, warehouse = "w1"): number {
    return this.sku(sku)?.positions[warehouse]?.onHand ?? 0;
  }

  remembered(): string[] {
    return this.store.range<[string, string]>("commandIdsByAge").map(({ value }) => value.join("|"));
  }
}

const dlq = (outbox: OutboxItem[]) => outbox.filter((o) => o.subject.startsWith("sluice.dlq."));
const received = (qty: number, commandId?: string) => ({
  type: "received",
  warehouse: "w1",
  qty,
  ...(commandId === undefined ? {} : { commandId }),
});

function partition(ledger: Record<string, unknown> = {}): Partition {
  const dir = tempDir("command-ids");
  dirs.push(dir);
  return new Partition(dir, ledger);
}

describe("the ledger applies a stock command once per commandId", () => {
  test("a repeat in a later batch changes nothing: no entry, no version, no outputs; it is counted", async () => {
    const p = partition();
    await p.batch(p.stock("S", received(10, "PO-7:1")));
    expect(p.sku("S")?.version).toBe(1);
    const again = await p.batch(p.stock("S", received(10, "PO-7:1")));
    expect(again).toEqual({ changed: [], outbox: [] });
    expect(p.sku("S")?.version).toBe(1);
    expect(p.onHand("S")).toBe(10);
    expect(p.store.range<LedgerEntry>("entries").length).toBe(1);
    expect(p.repeats).toEqual([{ partition: 0, outcome: "applied" }]);
    // Without an id, or with another, a command applies every time (as before).
    await p.batch(p.stock("S", received(1)), p.stock("S", received(1)), p.stock("S", received(1, "PO-7:2")));
    expect(p.onHand("S")).toBe(13);
  });

  test("a repeat in the same batch, and after a restart, changes nothing", async () => {
    const p = partition();
    await p.batch(p.stock("S", received(5, "c1")), p.stock("S", received(5, "c1")));
    expect(p.onHand("S")).toBe(5);
    await p.reopen();
    await p.batch(p.stock("S", received(5, "c1")));
    expect(p.onHand("S")).toBe(5);
    expect(p.repeats.length).toBe(2);
  });

  test("an id names a command of one SKU: the same id on another SKU is another command", async () => {
    const p = partition();
    await p.batch(p.stock("A", received(1, "PO-9")), p.stock("B", received(2, "PO-9")));
    expect([p.onHand("A"), p.onHand("B")]).toEqual([1, 2]);
    expect(p.remembered()).toEqual(["A|PO-9", "B|PO-9"]);
  });

  test("every stock command type is idempotent by its id", async () => {
    const p = partition();
    const commands = [
      received(100, "r"),
      { type: "adjust", warehouse: "w1", qty: -3, commandId: "a" },
      { type: "hold", warehouse: "w1", qty: 4, bucket: "damaged", commandId: "h" },
      { type: "unhold", warehouse: "w1", qty: 1, bucket: "damaged", commandId: "u" },
      { type: "safety_stock", warehouse: "w1", qty: 2, commandId: "s" },
      { type: "counted", warehouse: "w1", onHand: 90, commandId: "c" },
      { type: "override", warehouse: "w1", available: 50, commandId: "o" },
    ];
    for (const c of commands) await p.batch(p.stock("S", c));
    const before = p.sku("S");
    for (const c of commands) expect(await p.batch(p.stock("S", c))).toEqual({ changed: [], outbox: [] });
    expect(p.sku("S")).toEqual(before as SkuState);
    expect(p.repeats.length).toBe(commands.length);
  });

  test("a refused command's id is remembered: a retry stays refused, with no second dead letter", async () => {
    const p = partition();
    const hold = { type: "hold", warehouse: "w1", qty: 5, bucket: "damaged", commandId: "h-1" };
    const first = await p.batch(p.stock("S", hold));
    expect(dlq(first.outbox).map((o) => o.subject)).toEqual(["sluice.dlq.refused"]);
    await p.batch(p.stock("S", received(10)));
    // Now there would be stock for it, but the command with this id was answered already: refused.
    const retry = await p.batch(p.stock("S", hold));
    expect(retry).toEqual({ changed: [], outbox: [] });
    expect(p.sku("S")?.positions.w1?.damaged).toBe(0);
    expect(p.repeats).toEqual([{ partition: 0, outcome: "refused" }]);
    expect(p.store.get<CommandIdRecord>("commandIds", ["S", "h-1"])).toEqual({
      seq: 1,
      atMs: 1_001,
      refusal: "hold_exceeds_available",
    });
  });

  test("an invalid commandId is dead-lettered invalid_command and remembers nothing", async () => {
    const p = partition();
    const { outbox } = await p.batch(p.stock("S", received(1, "x".repeat(257))));
    expect(dlq(outbox).map((o) => o.subject)).toEqual(["sluice.dlq.invalid_command"]);
    const detail = dlq(outbox)[0]?.headers.find(([k]) => k === "Sluice-Detail")?.[1];
    expect(detail).toBe("commandId must be at most 256 bytes");
    expect(p.sku("S")).toBeUndefined();
    expect(p.remembered()).toEqual([]);
  });

  test("items envelope: an item's id, derived or its own, applies once", async () => {
    const p = partition();
    const long = `${"m".repeat(256)}/9999`; // a message id at idBytesMax, item 9,999 (itemsPerMessageMax 10,000)
    const envelope = [
      { sku: "A", command: { ...received(1, "imp/0"), ref: null } },
      { sku: "B", command: { ...received(2, long), ref: null } },
      { sku: "C", command: { ...received(3), ref: null } },
    ];
    await p.batch(p.items(envelope));
    const again = await p.batch(p.items(envelope));
    expect([p.onHand("A"), p.onHand("B"), p.onHand("C")]).toEqual([1, 2, 6]);
    expect(dlq(again.outbox)).toEqual([]);
    expect(p.repeats.length).toBe(2);
    // Over the derived bound: that item alone is dead-lettered.
    const over = await p.batch(p.items([{ sku: "D", command: { ...received(1, `${long}0`), ref: null } }]));
    expect(dlq(over.outbox).map((o) => o.subject)).toEqual(["sluice.dlq.invalid_command"]);
  });

  test("bounded by ledger.commandIdsCountMax: the oldest ids are forgotten first", async () => {
    const p = partition({ commandIdsCountMax: 3, itemsPerMessageMax: 2 });
    for (const id of ["c1", "c2", "c3", "c4", "c5"]) await p.batch(p.stock("S", received(1, id)));
    expect(p.remembered()).toEqual(["S|c3", "S|c4", "S|c5"]);
    expect(p.store.range("commandIds").length).toBe(3);
    // c5 is remembered: nothing; c1 was forgotten: applied again (and now remembered, c3 forgotten).
    await p.batch(p.stock("S", received(1, "c5")));
    expect(p.onHand("S")).toBe(5);
    await p.batch(p.stock("S", received(1, "c1")));
    expect(p.onHand("S")).toBe(6);
    expect(p.remembered()).toEqual(["S|c4", "S|c5", "S|c1"]);
    // More new ids in one batch than the bound: the newest 3 are kept, both tables alike.
    const batch = ["d1", "d2", "d3", "d4"].map((id) => p.stock("S", received(1, id)));
    await p.batch(...batch);
    expect(p.remembered()).toEqual(["S|d2", "S|d3", "S|d4"]);
    expect(p.store.range("commandIds").length).toBe(3);
    expect(p.onHand("S")).toBe(10);
  });

  test("a partition export carries the remembered ids", async () => {
    const p = partition();
    await p.batch(p.stock("S", received(1, "c1")));
    const tables = new Set([...p.store.export()].map((r) => r.table));
    expect(tables.has("commandIds")).toBe(true);
    expect(tables.has("commandIdsByAge")).toBe(true);
  });
});
