import { assert } from "../assert.ts";
import {
  available,
  type CommandResult,
  emptyPosition,
  type LedgerEntry,
  type Position,
  type SkuState,
  type StockCommand,
} from "./types.ts";

/** Where an input came from: its stream sequence and time. Time is an input; the ledger never reads a clock. */
export type InputRef = { seq: number; atMs: number };

/**
 * One partition's ledger in memory: the single writer of its SKUs' positions. Synchronous; it never awaits.
 * Changes since the last `takeChanges()` are what the store must commit in the batch's transaction.
 */
export class Ledger {
  private readonly skus = new Map<string, SkuState>();
  private readonly dirty = new Set<string>();
  private entries: LedgerEntry[] = [];

  static fromSkus(states: Iterable<SkuState>): Ledger {
    const ledger = new Ledger();
    for (const s of states) {
      assertSku(s);
      ledger.skus.set(s.sku, s);
    }
    return ledger;
  }

  get(sku: string): SkuState | undefined {
    return this.skus.get(sku);
  }

  get size(): number {
    return this.skus.size;
  }

  all(): IterableIterator<SkuState> {
    return this.skus.values();
  }

  apply(sku: string, command: StockCommand, input: InputRef): CommandResult {
    const state = this.skus.get(sku) ?? { sku, version: 0, positions: {} };
    const position = state.positions[command.warehouse] ?? emptyPosition();
    const free = available(position);
    let field: "onHand" | "reserved";
    let delta: number;
    switch (command.type) {
      case "received":
        field = "onHand";
        delta = command.qty;
        break;
      case "adjust":
        // Stock can only be taken away down to what is committed: never below reserved + held back.
        if (command.qty < 0 && free + command.qty < 0) {
          return { ok: false, sku, code: "adjust_below_committed", available: free };
        }
        field = "onHand";
        delta = command.qty;
        break;
      case "reserve":
        if (command.qty > free) return { ok: false, sku, code: "insufficient_available", available: free };
        field = "reserved";
        delta = command.qty;
        break;
      case "release":
        if (command.qty > position.reserved) {
          return { ok: false, sku, code: "release_exceeds_reserved", available: free };
        }
        field = "reserved";
        delta = -command.qty;
        break;
    }
    const next: Position = { ...position, [field]: position[field] + delta };
    assertPosition(next);
    state.positions[command.warehouse] = next;
    state.version += 1;
    this.skus.set(sku, state);
    this.dirty.add(sku);
    this.entries.push({
      sku,
      version: state.version,
      warehouse: command.warehouse,
      type: entryTypeOf[command.type],
      qty: delta,
      ref: command.ref,
      seq: input.seq,
      atMs: input.atMs,
    });
    return { ok: true, sku, version: state.version };
  }

  /** What changed since the last call: the SKU states to write and the entries to append. */
  takeChanges(): { skus: SkuState[]; entries: LedgerEntry[] } {
    const skus: SkuState[] = [];
    for (const sku of this.dirty) skus.push(this.skus.get(sku) as SkuState);
    const entries = this.entries;
    this.dirty.clear();
    this.entries = [];
    return { skus, entries };
  }
}

const entryTypeOf = {
  received: "received",
  adjust: "adjusted",
  reserve: "reserved",
  release: "released",
} as const;

/** Folds entries into positions: the reference that `sluice ledger check` compares stored positions with. */
export function foldEntries(entries: Iterable<LedgerEntry>): Map<string, Position> {
  const positions = new Map<string, Position>();
  for (const e of entries) {
    const p = positions.get(e.warehouse) ?? emptyPosition();
    if (e.type === "received" || e.type === "adjusted") p.onHand += e.qty;
    else p.reserved += e.qty;
    positions.set(e.warehouse, p);
  }
  return positions;
}

export function assertPosition(p: Position): void {
  assert(p.onHand >= 0, "onHand must not be negative");
  assert(p.reserved >= 0, "reserved must not be negative");
  assert(p.damaged >= 0 && p.qualityControl >= 0 && p.safetyStock >= 0, "held-back must not be negative");
  assert(available(p) >= 0, "no oversell: reserved + held back must not exceed onHand");
}

function assertSku(s: SkuState): void {
  assert(typeof s.sku === "string" && s.sku.length > 0, "sku id must be a non-empty string");
  assert(Number.isSafeInteger(s.version) && s.version >= 0, "sku version must be a whole number");
  for (const p of Object.values(s.positions)) assertPosition(p);
}
