import type { Config } from "../../config/index.ts";
import {
  type Allocation,
  checkLineRequest,
  checkStockItem,
  Ledger,
  type LedgerView,
  type LineRequest,
  type LineResult,
  parseId,
  parseStockCommand,
  type SkuState,
  type StockItem,
  type WarehouseLoad,
} from "../../domain/ledger/index.ts";
import type { Network } from "../../domain/network/index.ts";
import type { OrderInputLimits } from "../../domain/orders/commands.ts";
import type { Instrumentation } from "../../instrumentation/index.ts";
import type { Op, OutboxItem, PartitionStore } from "../../store/index.ts";
import { decodePayload } from "../../stream/codec.ts";
import type { InboundMessage, PartitionApplier } from "../../stream/partition-runner.ts";
import {
  decodeToken,
  encodeToken as encode,
  orderPartition,
  parsePartitioned,
  partitionOfTokens,
  subjects,
} from "../../stream/subjects.ts";
import { BoundedCache } from "../cache.ts";
import { contentTypeOf, Envelopes, openEnvelope, type Reject, rejecter } from "../envelopes.ts";
import { LedgerOutputs, outputTables } from "./outputs.ts";

export const ledgerTables = ["skus", "entries", "allocations", "load", ...outputTables] as const;

export function domainLimits(c: Config): OrderInputLimits {
  return {
    quantityMax: c.ledger.quantityMax,
    idBytesMax: c.ledger.idBytesMax,
    linesPerOrderMax: c.orders.linesPerOrderMax,
    itemsPerMessageMax: c.ledger.itemsPerMessageMax,
    textBytesMax: c.orders.textBytesMax,
  };
}

/** The ledger view over a partition's store: synchronous, memory-mapped reads of committed state. */
export function ledgerView(
  store: PartitionStore,
  cache: BoundedCache<string, SkuState> | null = null,
): LedgerView {
  return {
    getSku: (sku) => {
      const load = () => store.get<SkuState>("skus", sku);
      return cache === null ? load() : cache.getOr(sku, load);
    },
    getAllocation: (sku, orderKey, lineId) => store.get("allocations", [sku, orderKey, lineId]),
    allocationsOf: (sku) => [
      ...store.rangeValues<Allocation>("allocations", { start: [sku], end: [`${sku}\u0000`] }),
    ],
    getLoad: (warehouse) => store.get<WarehouseLoad>("load", warehouse),
  };
}

/**
 * The ledger stage of one partition: the single writer of the SKUs that hash to it. Three inputs, by the
 * subject's kind token: `stock.<sku>` (public stock commands), `items.<source>` (bulk and WMS stock items,
 * split per partition by the router) and `cmd.<orderPartition>` (line requests from the order stage).
 * Bad input and refused stock commands become dead letters in the same transaction; the batch moves on.
 */
export class LedgerApplier implements PartitionApplier {
  readonly ledger: Ledger;
  private readonly limits: OrderInputLimits;
  private readonly cache: BoundedCache<string, SkuState>;
  readonly outputs: LedgerOutputs;
  /** Stock updates and ERP windows are due by time: looked for every sync.tickMs. */
  readonly tickMs: number;
  /** Each batch takes what is due itself: ticks matter only when no input flows. */
  readonly tickWhenBusy = false;

  constructor(
    readonly partition: number,
    private readonly config: Config,
    private readonly store: PartitionStore,
    private readonly events: Instrumentation,
    network: () => Network,
    private readonly clock: () => number = Date.now,
  ) {
    this.cache = new BoundedCache(config.ledger.cacheCountMax);
    this.ledger = new Ledger(ledgerView(store, this.cache), {
      positionUnitsMax: config.ledger.positionUnitsMax,
    });
    this.limits = domainLimits(config);
    this.tickMs = config.sync.tickMs;
    this.outputs = new LedgerOutputs(partition, config, store, network, events, (s) =>
      this.cache.set(s.sku, s),
    );
  }

  /** A SKU's state as this partition last wrote or read it (decoded; no LMDB read), if cached. */
  cachedSku(sku: string): SkuState | undefined {
    return this.cache.peek(sku);
  }

  /** When the last batch was applied (the applier's clock): ticks stand aside while batches flow. */
  private lastApplyMs = Number.NEGATIVE_INFINITY;

  tick(nowMs: number) {
    // A batch within the flush window takes what is due itself: then a tick only handles rule changes.
    const out = this.outputs.tick(nowMs, nowMs - this.lastApplyMs < this.config.sync.flushWindowMs);
    return out === null ? null : { ops: out.ops, outbox: out.outbox };
  }

  apply(messages: readonly InboundMessage[]) {
    const outbox: OutboxItem[] = [];
    const reject = rejecter(outbox, (reason) =>
      this.events.emit("dead_lettered", { stage: "ledger", reason }),
    );
    for (const m of messages) {
      const route = parsePartitioned(m.subject);
      if (route === null || route.partition !== this.partition) {
        reject(m, "bad_subject", `${m.subject} is not a subject of ledger partition ${this.partition}`);
        continue;
      }
      const input = { seq: m.seq, atMs: m.atMs };
      if (route.kind === "stock" && route.tokens.length === 1)
        this.stock(m, route.tokens[0] as string, input, reject);
      else if (route.kind === "items") this.items(m, input, reject);
      else if (route.kind === "cmd") this.lineRequests(m, input, reject);
      else
        reject(
          m,
          "unknown_kind",
          `ledger partitions take stock.<sku>, items.<source> and cmd.<p>, not ${route.kind}`,
        );
    }
    return this.finish(outbox, Math.max(messages.at(-1)?.seq ?? 0, this.store.streamSeqLastApplied()));
  }

  private stock(
    m: InboundMessage,
    token: string,
    input: { seq: number; atMs: number },
    reject: Reject,
  ): void {
    let sku: string;
    try {
      sku = decodeToken(token);
    } catch (error) {
      reject(m, "bad_subject", (error as Error).message);
      return;
    }
    const id = parseId(sku, "sku", this.limits);
    if (!id.ok) {
      reject(m, "invalid_command", id.detail);
      return;
    }
    // Single writer per SKU (invariant 2): a message on another partition's subject is refused.
    const owner = partitionOfTokens([token], this.config.streams.partitionCount);
    if (owner !== this.partition) {
      reject(
        m,
        "wrong_partition",
        `SKU ${JSON.stringify(sku)} belongs to partition ${owner}, not ${this.partition}`,
      );
      return;
    }
    const decoded = decodePayload(m.data, contentTypeOf(m.headers));
    if (!decoded.ok) {
      reject(m, decoded.reason, decoded.detail);
      return;
    }
    const parsed = parseStockCommand(decoded.value, this.limits);
    if (!parsed.ok) {
      reject(m, parsed.reason, parsed.detail);
      return;
    }
    const result = this.ledger.applyStock(sku, parsed.value, input);
    if (!result.ok) {
      this.events.emit("command_refused", { stage: "ledger", code: result.code });
      reject(m, "refused", `${parsed.value.type} refused: ${result.code}`);
    }
  }

  private items(m: InboundMessage, input: { seq: number; atMs: number }, reject: Reject): void {
    const envelope = openEnvelope<StockItem>(m.data, "items", (i) => checkStockItem(i, this.limits));
    if (!envelope.ok) {
      reject(m, "invalid_command", envelope.detail);
      return;
    }
    // Each item that does not apply is a dead letter of its own; the others apply (one bad item sinks none).
    for (const r of envelope.refused) reject(m, "invalid_command", r.detail, r);
    for (const one of envelope.items) {
      const { index, item } = one;
      const owner = partitionOfTokens([encode(item.sku)], this.config.streams.partitionCount);
      if (owner !== this.partition) {
        const detail = `items envelope item ${index}: SKU ${JSON.stringify(item.sku)} belongs to partition ${owner}, not ${this.partition}`;
        reject(m, "wrong_partition", detail, one);
        continue;
      }
      const command = parseStockCommand(item.command, this.limits);
      if (!command.ok) {
        reject(m, command.reason, `items envelope item ${index} (${item.sku}): ${command.detail}`, one);
        continue;
      }
      const result = this.ledger.applyStock(item.sku, command.value, input);
      if (!result.ok) {
        this.events.emit("command_refused", { stage: "ledger", code: result.code });
        const detail = `items envelope item ${index}: ${command.value.type} of ${item.sku} refused: ${result.code}`;
        reject(m, "refused", detail, one);
      }
    }
  }

  private lineRequests(m: InboundMessage, input: { seq: number; atMs: number }, reject: Reject): void {
    const envelope = openEnvelope<LineRequest>(m.data, "cmd", (r) => checkLineRequest(r, this.limits));
    if (!envelope.ok) {
      reject(m, "invalid_command", envelope.detail);
      return;
    }
    for (const r of envelope.refused) reject(m, "invalid_command", r.detail, r);
    for (const one of envelope.items) {
      const owner = partitionOfTokens([encode(one.item.sku)], this.config.streams.partitionCount);
      if (owner === this.partition) {
        // A return over ledger.positionUnitsMax changes nothing: its item is refused alone.
        const refusal = this.ledger.applyLine(one.item, input);
        if (refusal !== null) {
          this.events.emit("command_refused", { stage: "ledger", code: refusal });
          const detail = `cmd envelope item ${one.index}: ${one.item.kind} of ${one.item.sku} refused: ${refusal}`;
          reject(m, "refused", detail, one);
        }
      } else {
        const detail = `cmd envelope item ${one.index}: SKU ${JSON.stringify(one.item.sku)} belongs to partition ${owner}, not ${this.partition}`;
        reject(m, "wrong_partition", detail, one);
      }
    }
  }

  private finish(outbox: OutboxItem[], seqTo: number) {
    const changes = this.ledger.takeChanges();
    // Before the SKU states are written: the outputs record in each the ATS they offered its channels.
    this.lastApplyMs = this.clock();
    const out = this.outputs.afterBatch(changes.skus, changes.entries, this.lastApplyMs, seqTo);
    const ops: Op[] = [];
    for (const s of changes.skus) {
      ops.push({ op: "put", table: "skus", key: s.sku, value: s });
      this.cache.set(s.sku, s);
    }
    for (const e of changes.entries)
      ops.push({ op: "put", table: "entries", key: [e.sku, e.version], value: e });
    for (const a of changes.allocations) {
      ops.push({ op: "put", table: "allocations", key: [a.sku, a.orderKey, a.lineId], value: a });
    }
    for (const key of changes.allocationsDeleted) ops.push({ op: "delete", table: "allocations", key });
    for (const l of changes.loads) ops.push({ op: "put", table: "load", key: l.warehouse, value: l });
    const envelopes = new Envelopes(
      this.config.outbox.itemsPerMessageMax,
      this.config.streams.messageBytesMax,
    );
    for (const r of changes.results) this.answer(envelopes, r);
    this.ledger.evict();
    return { ops: [...ops, ...out.ops], outbox: [...outbox, ...envelopes.drain(), ...out.outbox] };
  }

  private answer(envelopes: Envelopes, r: LineResult): void {
    const target = orderPartition(r.ref.orderKey, this.config.streams.partitionCount);
    envelopes.add(subjects.orderResults(target, this.partition), r);
    if (r.kind === "refused") this.events.emit("command_refused", { stage: "ledger", code: r.code });
    else if (r.kind === "reserved") this.events.emit("line_reserved", { partition: this.partition });
  }
}
