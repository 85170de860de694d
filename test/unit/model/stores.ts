import type {
  Allocation,
  LedgerChanges,
  LedgerEntry,
  LedgerView,
  SkuState,
  WaitingHead,
  WaitingLine,
  WarehouseLoad,
} from "../../../src/domain/ledger/index.ts";
import { fillOrder, waitingKey, waitingKeyText } from "../../../src/domain/ledger/index.ts";
import type {
  AtRiskRow,
  Order,
  OrderChanges,
  OrderTombstone,
  OrderView,
  PendingCancel,
  RetentionIndex,
  RetentionRow,
} from "../../../src/domain/orders/index.ts";

// Map-backed partition stores for the in-memory simulation. They write exactly what the appliers' `finish`
// methods write (src/stages/*/applier.ts) and, like LMDB (msgpack on every put and get), hand out copies: a
// domain object that mutates what it read must not change committed state before its batch commits.

/** A deep copy of plain data (what msgpack round-trips); faster than structuredClone for small values. */
export function copy<T>(v: T): T {
  if (typeof v !== "object" || v === null) return v;
  if (Array.isArray(v)) return v.map(copy) as T;
  const out: Record<string, unknown> = {};
  for (const k in v) out[k] = copy((v as Record<string, unknown>)[k]);
  return out as T;
}

const allocationKey = (sku: string, orderKey: string, lineId: string) =>
  `${sku}\u0000${orderKey}\u0000${lineId}`;

/** A ledger partition's committed state: skus, entries [sku, version], allocations [sku, orderKey, lineId]. */
export class MemLedgerStore implements LedgerView {
  readonly skus = new Map<string, SkuState>();
  readonly entries = new Map<string, Map<number, LedgerEntry>>();
  readonly allocations = new Map<string, Allocation>();
  readonly loads = new Map<string, WarehouseLoad>();
  /** Waiting lines by key text (src/domain/ledger/waiting.ts) and each SKU's head. */
  readonly waiting = new Map<string, WaitingLine>();
  readonly heads = new Map<string, WaitingHead>();
  streamSeqLastApplied = 0;
  outboxSeq = 0;
  /** Entries written over an existing [sku, version] key: a reused version (invariant 4), reported by checks. */
  readonly overwrittenEntries: string[] = [];

  getSku(sku: string): SkuState | undefined {
    const s = this.skus.get(sku);
    return s === undefined ? undefined : copy(s);
  }

  getAllocation(sku: string, orderKey: string, lineId: string): Allocation | undefined {
    const a = this.allocations.get(allocationKey(sku, orderKey, lineId));
    return a === undefined ? undefined : copy(a);
  }

  /** LMDB returns a range in key order; so do we (sorted keys), in case the domain depends on it. */
  allocationsOf(sku: string): Allocation[] {
    const prefix = `${sku}\u0000`;
    return [...this.allocations.entries()]
      .filter(([k]) => k.startsWith(prefix))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, a]) => copy(a));
  }

  getLoad(warehouse: string): WarehouseLoad | undefined {
    const l = this.loads.get(warehouse);
    return l === undefined ? undefined : copy(l);
  }

  getWaitingHead(sku: string): WaitingHead | undefined {
    const h = this.heads.get(sku);
    return h === undefined ? undefined : copy(h);
  }

  /** LMDB's range over [sku, −priority, arrival]: fill order. */
  waitingOf(sku: string): WaitingLine[] {
    return [...this.waiting.values()]
      .filter((w) => w.sku === sku)
      .sort(fillOrder)
      .map(copy);
  }

  entriesOf(sku: string): LedgerEntry[] {
    const m = this.entries.get(sku);
    if (m === undefined) return [];
    return [...m.values()].sort((a, b) => a.version - b.version);
  }

  /** One transaction: the ledger applier's `finish` ops plus the applied sequence. Returns the SKUs written. */
  commit(changes: LedgerChanges, streamSeqLastApplied: number | null): Set<string> {
    const touched = new Set<string>();
    for (const s of changes.skus) {
      this.skus.set(s.sku, copy(s));
      touched.add(s.sku);
    }
    for (const e of changes.entries) {
      let m = this.entries.get(e.sku);
      if (m === undefined) {
        m = new Map();
        this.entries.set(e.sku, m);
      }
      if (m.has(e.version)) this.overwrittenEntries.push(`${e.sku}@${e.version}`);
      m.set(e.version, copy(e));
      touched.add(e.sku);
    }
    for (const l of changes.loads) this.loads.set(l.warehouse, copy(l));
    for (const a of changes.allocations) {
      this.allocations.set(allocationKey(a.sku, a.orderKey, a.lineId), copy(a));
      touched.add(a.sku);
    }
    for (const [sku, orderKey, lineId] of changes.allocationsDeleted) {
      this.allocations.delete(allocationKey(sku, orderKey, lineId));
      touched.add(sku);
    }
    for (const key of changes.waitingDeleted) this.waiting.delete(waitingKeyText(key));
    for (const w of changes.waitingPut) this.waiting.set(waitingKeyText(waitingKey(w)), copy(w));
    for (const [sku, head] of changes.waitingHeads) {
      if (head === null) this.heads.delete(sku);
      else this.heads.set(sku, copy(head));
    }
    if (streamSeqLastApplied !== null) this.streamSeqLastApplied = streamSeqLastApplied;
    return touched;
  }
}

export type TimerKey = { dueMs: number; key: string };

const byTime = (a: RetentionRow, b: RetentionRow) =>
  a.atMs - b.atMs || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/**
 * An order partition's committed state: orders, pending cancels, timers [dueMs, orderKey], tombstones and
 * the retention indexes [atMs, orderKey] (src/stages/order/retention.ts).
 */
export class MemOrderStore implements OrderView {
  readonly orders = new Map<string, Order>();
  readonly pending = new Map<string, PendingCancel[]>();
  readonly timers = new Map<string, TimerKey>();
  readonly tombstones = new Map<string, OrderTombstone>();
  readonly retention: Record<RetentionIndex, Map<string, RetentionRow>> = {
    finals: new Map(),
    tombstones: new Map(),
    pending: new Map(),
  };
  /** The at-risk index [shipByMs, orderKey] → row (src/stages/order/applier.ts, table atRisk). */
  readonly atRisk = new Map<string, AtRiskRow>();
  /** Deletes of at-risk rows that were not committed as given: the batch's idea of the row was wrong. */
  readonly atRiskMismatches: unknown[] = [];
  streamSeqLastApplied = 0;
  outboxSeq = 0;

  getOrder(key: string): Order | undefined {
    const o = this.orders.get(key);
    return o === undefined ? undefined : copy(o);
  }

  getPendingCancels(key: string): PendingCancel[] {
    return copy(this.pending.get(key) ?? []);
  }

  /** LMDB's range over [dueMs, key] up to [nowMs, "\uffff"]: earliest first, ties by key. */
  dueTimers(nowMs: number, limit: number): TimerKey[] {
    return [...this.timers.values()]
      .filter((t) => t.dueMs <= nowMs)
      .sort((a, b) => a.dueMs - b.dueMs || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
      .slice(0, limit);
  }

  getTombstone(key: string): OrderTombstone | undefined {
    const t = this.tombstones.get(key);
    return t === undefined ? undefined : copy(t);
  }

  /** LMDB's range over [atMs, key] up to [cutoffMs, "\uffff"]: earliest first, ties by key. */
  dueRetention(index: RetentionIndex, cutoffMs: number, limit: number): RetentionRow[] {
    return [...this.retention[index].values()]
      .filter((r) => r.atMs <= cutoffMs)
      .sort(byTime)
      .slice(0, limit);
  }

  hasTimer(dueMs: number, key: string): boolean {
    return this.timers.has(`${dueMs}\u0000${key}`);
  }

  /** The order applier's `finish` ops, in its order (a put then a delete of the same timer deletes it). */
  commit(changes: OrderChanges, streamSeqLastApplied: number | null): Set<string> {
    const touched = new Set<string>();
    for (const key of changes.ordersDeleted) {
      this.orders.delete(key);
      touched.add(key);
    }
    for (const o of changes.orders) {
      this.orders.set(o.key, copy(o));
      touched.add(o.key);
    }
    for (const [key, t] of changes.tombstones) {
      if (t === null) this.tombstones.delete(key);
      else this.tombstones.set(key, copy(t));
    }
    for (const r of changes.retention) {
      const k = `${r.atMs}\u0000${r.key}`;
      if (r.op === "put") this.retention[r.index].set(k, { atMs: r.atMs, key: r.key });
      else this.retention[r.index].delete(k);
    }
    for (const [key, list] of changes.pendingCancels) {
      if (list === null) this.pending.delete(key);
      else this.pending.set(key, copy(list));
    }
    for (const t of changes.timers) {
      const k = `${t.dueMs}\u0000${t.key}`;
      if (t.op === "put") this.timers.set(k, { dueMs: t.dueMs, key: t.key });
      else this.timers.delete(k);
    }
    for (const r of changes.atRisk) {
      const k = `${r.row.shipByMs}\u0000${r.row.key}`;
      if (r.op === "put") {
        if (this.atRisk.has(k)) this.atRiskMismatches.push({ put: r.row, over: this.atRisk.get(k) });
        this.atRisk.set(k, copy(r.row));
      } else {
        if (JSON.stringify(this.atRisk.get(k)) !== JSON.stringify(r.row))
          this.atRiskMismatches.push({ delete: r.row, committed: this.atRisk.get(k) });
        this.atRisk.delete(k);
      }
    }
    if (streamSeqLastApplied !== null) this.streamSeqLastApplied = streamSeqLastApplied;
    return touched;
  }
}
