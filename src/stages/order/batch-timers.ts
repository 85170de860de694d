import type { PartitionStore } from "../../store/index.ts";

export type Due = { dueMs: number; key: string };

const idOf = (t: Due) => `${t.dueMs}\u0000${t.key}`;
const byDue = (a: Due, b: Due) => a.dueMs - b.dueMs || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/**
 * SLA timers as the batch being applied sees them: the store's committed rows, plus the deadlines this
 * batch set (orders created or re-routed, not committed yet), less those it already fired. Deadlines fire
 * in stream time, at clock messages: where one falls among the inputs depends on the stream alone, never on
 * batch boundaries (a clock in the middle of a batch sees that batch's new deadlines) or on the process
 * clock, so a replay of the stream fires the same timers at the same points.
 */
export class BatchTimers {
  private readonly fired = new Set<string>();
  private fresh: Due[] = [];
  private takenLast: Due[] = [];
  private nextDueMs = Number.POSITIVE_INFINITY;

  constructor(private readonly store: PartitionStore) {}

  /** A new batch: its overlay is empty; the earliest committed deadline bounds when the first can fire. */
  begin(): void {
    this.fired.clear();
    this.fresh = [];
    this.takenLast = [];
    this.nextDueMs = this.committedDue(Number.POSITIVE_INFINITY, 1)[0]?.dueMs ?? Number.POSITIVE_INFINITY;
  }

  /** A deadline this batch set (an order created, or re-routed by a firing): it may fall due in the batch. */
  set(dueMs: number, key: string): void {
    this.fresh.push({ dueMs, key });
    this.nextDueMs = Math.min(this.nextDueMs, dueMs);
  }

  /** Whether some timer may be due by `atMs` (cheap: one comparison). */
  isDue(atMs: number): boolean {
    return this.nextDueMs <= atMs;
  }

  /** Due timers not fired in this batch yet, earliest first, at most `limit`; they count as fired. */
  take(nowMs: number, limit: number): Due[] {
    const due = new Map<string, Due>();
    for (const t of this.committedDue(nowMs, limit)) due.set(idOf(t), t);
    for (const t of this.fresh) if (t.dueMs <= nowMs && !this.fired.has(idOf(t))) due.set(idOf(t), t);
    this.takenLast = [...due.values()].sort(byDue).slice(0, limit);
    for (const t of this.takenLast) this.fired.add(idOf(t));
    return this.takenLast;
  }

  /** What the last `take` returned: the timers just fired. */
  get taken(): readonly Due[] {
    return this.takenLast;
  }

  /** After a firing: the earliest deadline not fired yet, committed or set in this batch. */
  settle(): void {
    const committed = this.committedDue(Number.POSITIVE_INFINITY, 1)[0]?.dueMs;
    const fresh = this.fresh.filter((t) => !this.fired.has(idOf(t))).map((t) => t.dueMs);
    this.nextDueMs = Math.min(committed ?? Number.POSITIVE_INFINITY, ...fresh);
  }

  /** The earliest committed deadline, or null: what the runner's clock messages wait for. */
  earliestCommittedMs(): number | null {
    return this.committedDue(Number.POSITIVE_INFINITY, 1)[0]?.dueMs ?? null;
  }

  /** Committed rows due by `nowMs` that this batch has not fired, earliest first, at most `limit`. */
  private committedDue(nowMs: number, limit: number): Due[] {
    // Rows fired in this batch are still in the store (their deletes commit with it): read past them.
    const count = limit + this.fired.size;
    const options = Number.isFinite(nowMs)
      ? { start: [0], end: [nowMs, "\uffff"], limit: count }
      : { start: [0], limit: count };
    return this.store
      .range<number>("timers", options)
      .map(({ key }) => {
        const [dueMs, orderKey] = key as [number, string];
        return { dueMs, key: orderKey };
      })
      .filter((t) => !this.fired.has(idOf(t)))
      .slice(0, limit);
  }
}
