import {
  type Allocation,
  available,
  type EntryType,
  foldEntries,
  type Position,
  positionFields,
} from "../../../src/domain/ledger/index.ts";
import { candidatesFor, channelOf, type Network } from "../../../src/domain/network/index.ts";
import type { Order, OrderLine, OrderStatus } from "../../../src/domain/orders/index.ts";
import { LedgerModel } from "./ledger-model.ts";
import {
  type LedgerCommit,
  type OrderCommit,
  orderPartition,
  type Sim,
  type SimObserver,
  skuPartition,
} from "./sim.ts";

// What must hold after every step of a simulated run (design.md §4) and, once every stream is drained,
// between the stages. A broken rule throws a ModelViolation naming it; fast-check then shrinks the run.

/** How often each event happened across all runs: shows what the random runs actually reached. */
export const coverage = new Map<string, number>();
export const count = (what: string, n = 1) => coverage.set(what, (coverage.get(what) ?? 0) + n);

export class ModelViolation extends Error {
  override name = "ModelViolation";
}

function check(condition: boolean, rule: string, detail: () => unknown): asserts condition {
  if (!condition) throw new ModelViolation(`${rule}: ${JSON.stringify(detail())}`);
}

/** Invariant 5: the only entry types that may move on hand. */
const onHandTypes = new Set<EntryType>([
  "received",
  "counted",
  "override",
  "adjusted",
  "shipped",
  "missing",
  "returned",
  "scrapped",
]);

/** States a line may be in after one committed batch, given the state it had before. */
const nextStates: Record<OrderLine["state"], ReadonlySet<OrderLine["state"]>> = {
  received: new Set(["received", "allocated", "released", "backordered", "rejected", "cancelled", "shipped"]),
  allocated: new Set(["allocated", "released", "received", "backordered", "rejected", "cancelled"]),
  released: new Set(["released", "shipped", "cancelled", "received"]),
  // A waiting backorder filled when stock arrives is allocated, then released in the same batch.
  backordered: new Set(["backordered", "received", "cancelled", "allocated", "released"]),
  rejected: new Set(["rejected"]),
  cancelled: new Set(["cancelled"]),
  shipped: new Set(["shipped"]),
};

/** A line that can still move: it waits, holds stock or waits for stock. */
const isOpen = (l: OrderLine) =>
  l.state === "received" ||
  l.state === "allocated" ||
  l.state === "backordered" ||
  (l.state === "released" && l.shippedQty < l.qty);

/** The order's status, written from its definition (design.md §2), as a table over its lines. */
export function expectedStatus(lines: readonly OrderLine[]): OrderStatus {
  const all = (...s: OrderLine["state"][]) => lines.every((l) => s.includes(l.state));
  if (lines.some((l) => l.state === "received")) return "pending";
  if (all("cancelled")) return "cancelled";
  if (all("cancelled", "rejected")) return "rejected";
  if (lines.some((l) => l.shippedQty > 0)) return lines.some(isOpen) ? "partially_shipped" : "shipped";
  if (!lines.some((l) => l.state === "allocated" || l.state === "released")) return "backordered";
  return all("allocated", "released", "cancelled") ? "allocated" : "partially_allocated";
}

const lineKey = (orderKey: string, lineId: string) => `${orderKey}/${lineId}`;
const add = (m: Map<string, number>, k: string, n: number) => m.set(k, (m.get(k) ?? 0) + n);

export type CheckerOptions = {
  network: Network;
  partitions: number;
  avoid: ReadonlySet<string>;
  /** The ledger's waiting list bound (ledger.waitingLinesPerSkuMax). */
  waitingMax?: number;
};

export class Checker implements SimObserver {
  readonly model: LedgerModel;
  private readonly touchedSkus = new Set<string>();
  private readonly touchedOrders = new Set<string>();
  private readonly statusVersion = new Map<string, number>();
  private readonly fulfilVersion = new Map<string, number>();
  /** Customer cancels the order stage accepted (also those kept for an order not yet arrived). */
  private readonly cancels: Array<{ key: string; lineIds: string[] | null }> = [];
  /** Lines that lost their reservation to a count at some point: their shipments may outrun the ledger's. */
  private readonly lost = new Set<string>();
  /** Candidates of each reservation that asked to wait (sku|order|line|attempt), and the fills seen. */
  private readonly mayWait = new Map<string, string[]>();
  private readonly fills = new Set<string>();
  /** The warehouse each line was last asked to ship from and not told to stop (from the fulfilment output). */
  private readonly openFulfil = new Map<string, string>();
  /** Kit compensations the order stage committed (order/component line@try): each at most once. */
  private readonly compensations = new Set<string>();
  /** Orders marked at risk, with the clock of the mark: at most once per order. */
  private readonly marked = new Map<string, number>();
  /** The model's orders at risk: marked, and their SLA has not acted since (open lines are checked at use). */
  private readonly riskModel = new Set<string>();

  constructor(private readonly o: CheckerOptions) {
    this.model = new LedgerModel(o.avoid.has("repeat-refusal-code") ? "domain" : "same", o.waitingMax);
  }

  // ---- per commit ----------------------------------------------------------------------------------------

  ledgerCommitted(c: LedgerCommit): void {
    c.inputs.forEach((m, i) => {
      if (m.body.kind === "stock") {
        const expected = this.model.stock(m.body.sku, m.body.command, m.atMs);
        const actual = c.stockOutcomes[i];
        check(
          actual !== null && actual !== undefined && actual.ok === expected.ok,
          "stock command outcome differs from the model",
          () => ({ command: m.body, expected, actual }),
        );
        if (!expected.ok && actual.ok === false)
          check(actual.code === expected.code, "refusal code differs from the model", () => ({
            expected,
            actual,
          }));
      } else if (m.body.kind === "cmd") for (const r of m.body.items) this.model.line(r, m.atMs);
    });
    for (const m of c.inputs)
      if (m.body.kind === "cmd")
        for (const r of m.body.items)
          if (r.kind === "reserve" && r.wait !== undefined)
            this.mayWait.set(`${r.sku}|${r.ref.orderKey}|${r.ref.lineId}|${r.attempt}`, r.candidates);
    for (const r of c.changes.results) {
      if (r.kind !== "reserved" || r.filled !== true) continue;
      const key = `${r.sku}|${r.ref.orderKey}|${r.ref.lineId}|${r.attempt}`;
      check(!this.fills.has(key), "a waiting line is filled at most once", () => r);
      this.fills.add(key);
      check(
        this.mayWait.get(key)?.includes(r.warehouse) === true,
        "a waiting line is filled only where its routing allowed, and only if it asked to wait",
        () => ({ r, candidates: this.mayWait.get(key) }),
      );
    }
    const expected = this.model.takeResults();
    check(
      sameJson(expected, c.changes.results),
      "ledger answers to the order stage differ from the model",
      () => ({ inputs: c.inputs.map((m) => m.body), expected, actual: c.changes.results }),
    );
    for (const e of c.changes.entries) count(`entry ${e.type}`);
    for (const r of c.changes.results)
      count(
        r.kind === "reserved" && r.filled === true
          ? "answer reserved: a waiting backorder filled"
          : r.kind === "refused"
            ? `answer refused ${r.code}`
            : `answer ${r.kind}`,
      );
    if (c.inputs.every((m) => m.dup))
      check(c.changes.entries.length === 0, "a duplicate delivery moves no stock (invariant 3)", () => ({
        inputs: c.inputs.map((m) => m.body),
        entries: c.changes.entries,
      }));
    for (const s of c.touched) this.touchedSkus.add(s);
  }

  orderCommitted(c: OrderCommit): void {
    for (const outcomes of c.outcomes)
      for (const o of outcomes) count(o.ok ? `order ${o.event}` : `order refused: ${o.reason}`);
    for (const order of c.changes.orders)
      for (const h of order.history) if (h.atMs === c.nowMs && c.inputs === null) count(`timer ${h.event}`);
    if (c.dup) count("duplicate applied to the order stage");
    for (const order of c.changes.orders) {
      this.touchedOrders.add(order.key);
      const before = c.before.get(order.key);
      if (before !== undefined) this.transition(before, order, c);
      else if (c.before.has(order.key) && order.history.some((h) => h.event === "created"))
        this.created(order);
    }
    this.atRiskOutputs(c);
    for (const key of c.before.keys()) {
      if (c.dup)
        check(!c.touched.has(key), "a duplicate delivery changed an order", () => ({
          key,
          inputs: c.inputs,
        }));
    }
    for (const f of c.changes.effects.fulfilment) {
      const last = this.fulfilVersion.get(f.orderKey) ?? 0;
      const committed = c.changes.orders.find((o) => o.key === f.orderKey)?.version ?? 0;
      check(f.version > last, "fulfilment versions of an order strictly increase (invariant 4)", () => ({
        f,
        last,
      }));
      check(f.version <= committed, "a fulfilment version is one the order has reached", () => ({
        f,
        committed,
      }));
      this.fulfilVersion.set(f.orderKey, f.version);
    }
    for (const s of c.changes.effects.statuses) {
      const last = this.statusVersion.get(s.orderKey) ?? 0;
      check(s.version > last, "order status versions strictly increase (invariant 4)", () => ({ s, last }));
      this.statusVersion.set(s.orderKey, s.version);
      const committed = c.changes.orders.find((o) => o.key === s.orderKey);
      check(
        committed !== undefined &&
          committed.version === s.version &&
          committed.status === s.status &&
          sameJson(
            committed.lines.map((l) => [l.lineId, l.state, l.shippedQty, l.returnedQty]),
            s.lines.map((l) => [l.lineId, l.state, l.shippedQty, l.returnedQty]),
          ),
        "a status output describes the committed order",
        () => ({ status: s, committed }),
      );
    }
    this.trackFulfilment(c);
    this.inputEffects(c);
    this.kitRequests(c);
    for (const r of c.changes.effects.ledger) {
      if (r.kind !== "reserve") continue;
      const order = c.changes.orders.find((o) => o.key === r.ref.orderKey);
      if (order?.lines.some((l) => l.kit?.parts.some((p) => p.lineId === r.ref.lineId)) === true) continue;
      const line = order?.lines.find((l) => l.lineId === r.ref.lineId);
      check(line !== undefined, "a reservation is asked for a line of a changed order", () => r);
      // Only what is still to ship needs stock: a partly shipped line asks for the rest, never more.
      check(
        r.qty === line.qty - line.shippedQty,
        "a reservation asks for the line's unshipped quantity",
        () => ({ request: r, line }),
      );
      check(r.attempt === line.attempt, "a reservation carries the line's attempt", () => ({ r, line }));
      const allowed = candidatesFor(this.o.network, order?.channel ?? "", line.excluded);
      check(
        r.candidates.every((w) => allowed.includes(w)) &&
          new Set(r.candidates).size === r.candidates.length &&
          (line.attempt > 1 || sameJson([...r.candidates].sort(), [...allowed].sort())),
        "candidates are enabled warehouses that did not reject the line (all of them at first, ranked)",
        () => ({ r, line }),
      );
    }
  }

  /**
   * Kit lines (docs/kits.md): a try asks every component of the line, for its unshipped kits × units per kit,
   * at one warehouse (or none), under the try's attempt; a compensation releases a component of the try that
   * just ended, at most once ever; and once a try ends, nothing of it is asked again.
   */
  private kitRequests(c: OrderCommit): void {
    const reserves = new Map<OrderLine, string[]>();
    for (const r of c.changes.effects.ledger) {
      const order = c.changes.orders.find((o) => o.key === r.ref.orderKey);
      const line = order?.lines.find((l) => l.kit?.parts.some((p) => p.lineId === r.ref.lineId));
      const kit = line?.kit;
      if (order === undefined || line === undefined || kit === undefined) continue;
      const part = kit.parts.find((p) => p.lineId === r.ref.lineId);
      check(
        part !== undefined && part.sku === r.sku,
        "a component request names its component's SKU",
        () => r,
      );
      if (r.kind === "release" && r.cause === "kit_compensate") {
        count("kit compensation");
        const k = `${r.ref.orderKey}/${r.ref.lineId}@${r.attempt}`;
        check(!this.compensations.has(k), "a kit try's component is compensated at most once", () => r);
        this.compensations.add(k);
        check(r.attempt < kit.try || line.state !== "received", "a compensation ends its try", () => ({
          r,
          line,
        }));
        continue;
      }
      if (r.kind !== "reserve") continue;
      count("kit component reserve");
      check(r.attempt === kit.try, "a component reservation carries the kit line's try", () => ({ r, kit }));
      check(
        r.qty === (line.qty - line.shippedQty) * part.per && r.candidates.length <= 1 && r.wait === undefined,
        "a component is asked for the unshipped kits × its units, at one warehouse, never to wait",
        () => ({ r, line }),
      );
      // A batch asks one try of a line at most (a try ends with its answers, in a later batch).
      reserves.set(line, [...(reserves.get(line) ?? []), `${r.ref.lineId}>${r.candidates.join(",")}`]);
    }
    for (const [line, asked] of reserves) {
      const parts = line.kit?.parts ?? [];
      check(
        asked.length === parts.length &&
          new Set(asked.map((a) => a.split(">")[0])).size === parts.length &&
          new Set(asked.map((a) => a.split(">")[1])).size === 1,
        "a kit try asks every component once, all at the same warehouse",
        () => ({ line, asked }),
      );
    }
  }

  /** Accepted shipments and returns move exactly their quantities; accepted cancels are remembered. */
  private inputEffects(c: OrderCommit): void {
    const shipped = new Map<string, number>();
    const returned = new Map<string, number>();
    c.inputs?.forEach((m, i) => {
      const outcome = c.outcomes[i]?.[0];
      if (outcome?.ok !== true) return;
      const b = m.body;
      if (b.kind === "shipped" && outcome.event === "shipped")
        for (const l of b.input.lines) add(shipped, lineKey(b.key, l.lineId), l.qty);
      if (b.kind === "return" && outcome.event === "returned")
        for (const l of b.input.lines) add(returned, lineKey(b.key, l.lineId), l.qty);
      if (b.kind === "cancel") this.cancels.push({ key: b.key, lineIds: b.input.lineIds });
    });
    for (const r of c.inputs ?? [])
      if (r.body.kind === "result")
        for (const item of r.body.items)
          if (item.kind === "lost")
            this.lost.add(`${item.sku}|${lineKey(item.ref.orderKey, item.ref.lineId)}`);
    for (const [key, before] of c.before) {
      const after = c.changes.orders.find((o) => o.key === key);
      if (before === undefined || after === undefined) continue;
      for (const [i, a] of after.lines.entries()) {
        const b = before.lines[i] as OrderLine;
        const k = lineKey(key, a.lineId);
        check(
          a.shippedQty - b.shippedQty === (shipped.get(k) ?? 0),
          "a line ships what accepted shipments say",
          () => ({
            line: k,
            before: b.shippedQty,
            after: a.shippedQty,
            accepted: shipped.get(k),
          }),
        );
        check(
          a.returnedQty - b.returnedQty === (returned.get(k) ?? 0),
          "a line is returned what accepted returns say",
          () => ({ line: k, before: b.returnedQty, after: a.returnedQty, accepted: returned.get(k) }),
        );
      }
    }
  }

  /** A new order's at-risk timer: its ship-by less the channel's window, not before it came; none for 0. */
  private created(order: Order): void {
    const windowMs = channelOf(this.o.network, order.channel)?.slaAtRiskMs ?? 0;
    const dueMs = Math.max(order.createdAtMs, order.shipByMs - windowMs);
    const expected = windowMs > 0 && dueMs < order.shipByMs ? dueMs : null;
    const now = expected === order.createdAtMs;
    check(
      (order.atRiskDueMs ?? null) === (now ? null : expected) || (order.atRiskDueMs ?? null) === null,
      "a new order's at-risk point is its ship-by less the channel's slaAtRiskMs",
      () => ({ order: order.key, atRiskDueMs: order.atRiskDueMs, expected }),
    );
    // Only a timer batch clears it, or the order ending in its first batch.
    if (order.atRiskDueMs == null && expected !== null && !now)
      check(!order.lines.some(isOpen), "an open new order keeps its at-risk timer", () => order);
    // Inside its window on arrival: marked at once (unless every line was cancelled before it came).
    const marked = order.history.some((h) => h.event === "at_risk");
    check(now || !marked, "a new order is not marked before its at-risk point", () => order);
    if (marked) {
      count("order marked at risk on arrival");
      this.marked.set(order.key, order.createdAtMs);
      this.riskModel.add(order.key);
    }
  }

  /**
   * At-risk marks: only by a timer, at or after the order's at-risk point, while a line is open, at most once;
   * an SLA action ends it. Returns whether the SLA acted on the order in this batch.
   */
  private atRiskTransition(before: Order, after: Order, c: OrderCommit): boolean {
    const fresh = (event: string) =>
      after.history.filter((h) => h.atMs === c.nowMs && h.event === event).length -
      before.history.filter((h) => h.atMs === c.nowMs && h.event === event).length;
    const where = () => ({ order: after.key, before, after, nowMs: c.nowMs, timer: c.inputs === null });
    check(
      after.atRiskDueMs == null || after.atRiskDueMs === before.atRiskDueMs,
      "an at-risk timer is never set again",
      where,
    );
    const marks = c.inputs === null ? Math.max(0, fresh("at_risk")) : 0;
    if (c.inputs !== null)
      check(
        after.atRisk == null || sameJson(after.atRisk, before.atRisk),
        "only a timer marks an order at risk",
        where,
      );
    if (marks > 0) {
      count("order marked at risk");
      check(marks === 1 && !this.marked.has(after.key), "an order is marked at risk at most once", where);
      check(
        before.atRiskDueMs != null && c.nowMs >= before.atRiskDueMs && before.atRisk == null,
        "an order is marked at risk at its at-risk point, not before",
        where,
      );
      check(before.lines.some(isOpen), "a shipped or cancelled order is never marked at risk", where);
      this.marked.set(after.key, c.nowMs);
      this.riskModel.add(after.key);
      for (const l of before.lines) {
        if (l.state !== "released" || l.shippedQty >= l.qty) continue;
        check(
          c.changes.effects.fulfilment.some(
            (f) =>
              f.orderKey === after.key &&
              f.type === "fulfil" &&
              f.atRisk &&
              f.warehouse === l.warehouse &&
              f.lines.some((x) => x.lineId === l.lineId),
          ),
          "a marked order's released lines are asked again with atRisk",
          () => ({ order: after.key, line: l, fulfilment: c.changes.effects.fulfilment }),
        );
      }
    }
    const sla = c.inputs === null && (fresh("sla_rerouted") > 0 || fresh("sla_cancelled") > 0);
    if (sla) {
      this.riskModel.delete(after.key);
      check(after.atRiskDueMs == null, "once its SLA acted an order is never marked at risk", where);
    }
    return sla;
  }

  /** Outputs say what the model says: requests of marked orders only carry atRisk; statuses flag it. */
  private atRiskOutputs(c: OrderCommit): void {
    for (const f of c.changes.effects.fulfilment)
      check(!f.atRisk || this.marked.has(f.orderKey), "only a marked order's requests carry atRisk", () => f);
    for (const s of c.changes.effects.statuses) {
      const order = c.changes.orders.find((o) => o.key === s.orderKey);
      const expected = this.riskModel.has(s.orderKey) && order?.lines.some(isOpen) === true;
      check(
        (s.atRisk === true) === expected,
        "a status says atRisk exactly while the order is at risk",
        () => ({
          status: s,
          expected,
        }),
      );
    }
  }

  /** The partition's at-risk index holds exactly the model's orders at risk, each row as the order says. */
  private checkAtRisk(sim: Sim, key: string): void {
    const part = sim.orderParts[orderPartition(key, this.o.partitions)];
    if (part === undefined) return;
    const order = part.store.orders.get(key);
    const rows = [...part.store.atRisk.values()].filter((r) => r.key === key);
    const expected = order !== undefined && this.riskModel.has(key) && order.lines.some(isOpen);
    check(
      rows.length === (expected ? 1 : 0),
      "an order is indexed at risk exactly while the model says",
      () => ({
        key,
        expected,
        rows,
        order,
      }),
    );
    const row = rows[0];
    if (row === undefined || order === undefined) return;
    const warehouses = [
      ...new Set(
        order.lines
          .filter((l) => isOpen(l) && (l.state === "allocated" || l.state === "released"))
          .map((l) => l.warehouse as string),
      ),
    ].sort();
    check(
      row.shipByMs === order.shipByMs &&
        row.rulesChannel === channelOf(this.o.network, order.channel)?.id &&
        sameJson(row.warehouses, warehouses) &&
        row.atRiskSinceMs === this.marked.get(key),
      "an at-risk row names the order's deadline, rule-set channel, open warehouses and mark",
      () => ({ row, warehouses, order }),
    );
  }

  private transition(before: Order, after: Order, c: OrderCommit): void {
    check(after.version > before.version, "an order's version increases with every change", () => ({
      before: before.version,
      after: after.version,
    }));
    const sla = this.atRiskTransition(before, after, c);
    check(after.lines.length === before.lines.length, "an order keeps its lines", () => after.key);
    for (const [i, a] of after.lines.entries()) {
      const b = before.lines[i] as OrderLine;
      const where = () => ({ order: after.key, before: b, after: a, inputs: c.inputs?.map((m) => m.body) });
      check(
        a.lineId === b.lineId && a.sku === b.sku && a.qty === b.qty,
        "a line keeps its id, SKU, qty",
        where,
      );
      // A partly shipped line being re-routed (allocated again) whose rest is cancelled ends as shipped.
      const partlyShippedEnds = b.state === "allocated" && b.shippedQty > 0 && a.state === "shipped";
      check(
        nextStates[b.state].has(a.state) || partlyShippedEnds,
        `no line goes from ${b.state} to ${a.state}`,
        where,
      );
      check(!(b.shippedQty > 0 && a.state === "cancelled"), "a shipped line never becomes cancelled", where);
      check(a.shippedQty >= b.shippedQty, "shipped quantities never shrink", where);
      check(a.returnedQty >= b.returnedQty, "returned quantities never shrink", where);
      check(a.attempt >= b.attempt, "attempts never go back", where);
      if (sla) this.deadline(before, b, a, where);
    }
  }

  /** A passed ship-by deadline: the channel's first re-route moves open lines; otherwise they are cancelled. */
  private deadline(order: Order, b: OrderLine, a: OrderLine, where: () => unknown): void {
    const reroute = channelOf(this.o.network, order.channel)?.slaAction === "reroute" && !order.slaRerouted;
    if (reroute)
      check(a.state !== "cancelled" || b.state === "cancelled", "an SLA re-route cancels no line", where);
    else check(a.attempt === b.attempt, "an SLA cancel re-routes no line", where);
    if (isOpen(b) && b.state !== "received") {
      const moved = reroute ? a.attempt > b.attempt : a.state === "cancelled" || a.state === "shipped";
      check(
        moved,
        reroute ? "an SLA re-route moves every open line" : "an SLA cancel ends every open line",
        where,
      );
    }
  }

  private trackFulfilment(c: OrderCommit): void {
    // A warehouse that rejected lines stops on its own: no cancel is sent to it.
    c.inputs?.forEach((m, i) => {
      if (m.body.kind !== "rejected" || c.outcomes[i]?.[0]?.ok !== true) return;
      for (const id of m.body.input.lineIds) {
        const k = lineKey(m.body.key, id);
        if (this.openFulfil.get(k) === m.body.input.warehouse) this.openFulfil.delete(k);
      }
    });
    for (const f of c.changes.effects.fulfilment) {
      for (const l of f.lines) {
        const k = lineKey(f.orderKey, l.lineId);
        const open = this.openFulfil.get(k);
        if (f.type === "fulfil") {
          check(
            open === undefined || open === f.warehouse,
            "a line is never asked of two warehouses at once",
            () => ({ item: f, open }),
          );
          this.openFulfil.set(k, f.warehouse);
        } else {
          check(open === f.warehouse, "a cancel goes to the warehouse that was asked", () => ({
            item: f,
            open,
          }));
          this.openFulfil.delete(k);
        }
      }
    }
  }

  // ---- after every step ----------------------------------------------------------------------------------

  afterStep(sim: Sim): void {
    count("checked steps");
    for (const sku of this.touchedSkus) this.checkSku(sim, sku);
    this.touchedSkus.clear();
    for (const key of this.touchedOrders) {
      this.checkOrder(sim, key);
      this.checkAtRisk(sim, key);
    }
    this.touchedOrders.clear();
    for (const o of sim.orderParts)
      check(o.store.atRiskMismatches.length === 0, "a batch replaces the at-risk row it committed", () => [
        ...o.store.atRiskMismatches,
      ]);
    for (const l of sim.ledgers)
      check(l.store.overwrittenEntries.length === 0, "a ledger entry key is never reused", () => [
        ...l.store.overwrittenEntries,
      ]);
    if (sim.quiet) this.atQuiescence(sim);
  }

  /**
   * Backorders waiting for stock: the stored list is the model's, in fill order (priority, then arrival),
   * within its bound, counted by its head, each line marked on its refused allocation, and none of them
   * fits now (every command fills what fits: stock is never offered past a waiting line that could take it).
   */
  private checkWaiting(store: Sim["ledgers"][number]["store"], sku: string): void {
    const stored = store.waitingOf(sku);
    const model = [...(this.model.waiting.get(sku) ?? [])].sort(
      (a, b) => b.priority - a.priority || a.arrival - b.arrival,
    );
    const row = (w: { orderKey: string; lineId: string; attempt: number; qty: number; priority: number }) => [
      w.orderKey,
      w.lineId,
      w.attempt,
      w.qty,
      w.priority,
    ];
    check(sameJson(stored.map(row), model.map(row)), "waiting lines equal the reference model", () => ({
      sku,
      stored,
      model,
    }));
    check(stored.length <= (this.o.waitingMax ?? 1000), "a waiting list stays within its bound", () => ({
      sku,
      count: stored.length,
    }));
    check(
      (store.getWaitingHead(sku)?.count ?? 0) === stored.length,
      "a waiting list's head counts its lines",
      () => ({ sku, head: store.getWaitingHead(sku), stored }),
    );
    for (const w of stored) {
      const a = store.getAllocation(sku, w.orderKey, w.lineId);
      check(
        a !== undefined && a.attempt === w.attempt && a.reserved === 0 && a.waiting?.arrival === w.arrival,
        "a waiting line is its line's refused attempt, marked",
        () => ({ w, a }),
      );
      const fits = w.candidates.some((c, k) => {
        const pos = store.getSku(sku)?.positions[c];
        return pos !== undefined && available(pos) - w.qty >= (w.keep?.[k] ?? 0);
      });
      check(!fits, "no waiting line fits the stock available (fills happen at once)", () => ({
        w,
        positions: store.getSku(sku)?.positions,
      }));
    }
  }

  private checkSku(sim: Sim, sku: string): void {
    const p = skuPartition(sku, this.o.partitions);
    for (const [i, l] of sim.ledgers.entries())
      check(
        i === p || !l.store.skus.has(sku),
        "a SKU is written only by its partition (invariant 2)",
        () => ({
          sku,
          owner: p,
          writer: i,
        }),
      );
    const store = sim.ledgers[p]?.store;
    if (store !== undefined) this.checkWaiting(store, sku);
    const state = store?.skus.get(sku);
    if (store === undefined || state === undefined) return;
    for (const [w, pos] of Object.entries(state.positions)) {
      for (const f of positionFields)
        check(pos[f] >= 0, `${f} is never negative (invariant 1)`, () => ({ sku, w, pos }));
      check(available(pos) >= 0, "reserved + held back never exceed on hand (invariant 1)", () => ({
        sku,
        w,
        pos,
      }));
    }
    const entries = store.entriesOf(sku);
    check(
      entries.length === state.version && entries.every((e, i) => e.version === i + 1),
      "entries are numbered 1..version without gaps (invariant 4)",
      () => ({ sku, version: state.version, versions: entries.map((e) => e.version) }),
    );
    for (const e of entries) {
      check(Object.keys(e.delta).length > 0, "every entry moves something", () => e);
      if (e.delta.onHand !== undefined)
        check(
          onHandTypes.has(e.type),
          "on hand moves only through stock-movement entries (invariant 5)",
          () => e,
        );
    }
    const folded = foldEntries(entries);
    const warehouses = new Set([
      ...folded.keys(),
      ...Object.keys(state.positions),
      ...this.model.warehousesOf(sku),
    ]);
    const reservedBy = new Map<string, number>();
    for (const a of store.allocationsOf(sku))
      reservedBy.set(a.warehouse, (reservedBy.get(a.warehouse) ?? 0) + a.reserved);
    for (const w of warehouses) {
      const stored = state.positions[w] ?? zero();
      check(
        samePosition(folded.get(w) ?? zero(), stored),
        "positions are the fold of their entries (invariant 5)",
        () => ({ sku, w, stored, folded: folded.get(w) }),
      );
      check(samePosition(this.model.position(sku, w), stored), "positions equal the reference model", () => ({
        sku,
        w,
        stored,
        model: this.model.position(sku, w),
      }));
      check(
        (reservedBy.get(w) ?? 0) === stored.reserved,
        "reserved equals the sum of the allocations' reservations",
        () => ({ sku, w, stored, allocations: store.allocationsOf(sku) }),
      );
    }
    check(
      state.version === (this.model.versions.get(sku) ?? 0),
      "the SKU's version equals the model's",
      () => ({
        sku,
        version: state.version,
        model: this.model.versions.get(sku),
      }),
    );
    for (const a of store.allocationsOf(sku)) {
      const m = this.model.lines.get(`${sku}|${a.orderKey}|${a.lineId}`);
      check(
        m !== undefined &&
          m.attempt === a.attempt &&
          m.warehouse === a.warehouse &&
          m.reserved === a.reserved &&
          m.shipped === a.shipped &&
          m.returned === a.returned,
        "allocations equal the reference model",
        () => ({ stored: a, model: m }),
      );
    }
  }

  private checkOrder(sim: Sim, key: string): void {
    const order = this.findOrder(sim, key);
    if (order === undefined) return;
    for (const l of order.lines) {
      const where = () => ({ order: key, line: l });
      check(l.shippedQty >= 0 && l.shippedQty <= l.qty, "0 ≤ shippedQty ≤ qty", where);
      check(l.returnedQty >= 0 && l.returnedQty <= l.shippedQty, "0 ≤ returnedQty ≤ shippedQty", where);
      check(l.state !== "shipped" || l.shippedQty > 0, "a shipped line shipped something", where);
      check(l.state !== "cancelled" || l.shippedQty === 0, "a cancelled line shipped nothing", where);
      if (l.state === "allocated" || l.state === "released") {
        check(l.warehouse !== null, "an allocated line has a warehouse", where);
        check(
          !l.excluded.includes(l.warehouse),
          "a warehouse that rejected a line never gets it again",
          where,
        );
      }
    }
    for (const l of order.lines) {
      const where = () => ({ order: key, split: order.split, line: l });
      if (l.state === "backordered")
        check(order.split.backorder, "a line waits as a backorder only if allowed", where);
      if (l.state === "rejected")
        check(!order.split.backorder, "a line is rejected only if backorders are not allowed", where);
    }
    check(order.status === expectedStatus(order.lines), "the order status follows from its lines", () => ({
      status: order.status,
      expected: expectedStatus(order.lines),
      lines: order.lines.map((l) => l.state),
    }));
  }

  private findOrder(sim: Sim, key: string): Order | undefined {
    for (const p of sim.orderParts) {
      const o = p.store.orders.get(key);
      if (o !== undefined) return o;
    }
    return undefined;
  }

  /** At rest the order's split policy holds: max shipments, and ship complete's all or nothing. */
  private splitPolicy(order: Order): void {
    const shipping = order.lines.filter(
      (l) => l.warehouse !== null && (l.state === "released" || l.state === "shipped"),
    );
    const warehouses = new Set(shipping.map((l) => l.warehouse));
    if (order.split.maxShipments > 0)
      check(
        warehouses.size <= order.split.maxShipments,
        "an order ships from at most maxShipments warehouses",
        () => ({
          order: order.key,
          split: order.split,
          lines: order.lines,
        }),
      );
    if (order.split.mode === "ship_complete") {
      const failed = order.lines.some((l) => l.state === "backordered" || l.state === "rejected");
      const holding = order.lines.some((l) => l.state === "released");
      check(!(failed && holding), "ship complete: no line holds stock while another failed", () => ({
        order: order.key,
        lines: order.lines,
      }));
    }
  }

  /** Once every deadline passed: each line is final, and no stock is reserved for anything. */
  afterEveryDeadline(sim: Sim): void {
    for (const part of sim.orderParts)
      for (const order of part.store.orders.values())
        for (const l of order.lines)
          check(
            l.state === "shipped" || l.state === "cancelled" || l.state === "rejected",
            "after every deadline each line is shipped, cancelled or rejected",
            () => ({ order: order.key, line: l, split: order.split }),
          );
    for (const l of sim.ledgers)
      check(l.store.waiting.size === 0, "after every deadline no line waits for stock", () => ({
        waiting: [...l.store.waiting.values()],
      }));
    for (const l of sim.ledgers)
      for (const s of l.store.skus.values())
        for (const [w, p] of Object.entries(s.positions))
          check(p.reserved === 0, "after every deadline nothing stays reserved", () => ({
            sku: s.sku,
            w,
            p,
          }));
  }

  // ---- retention (scenario.ts retire) ----------------------------------------------------------------------

  /** After every deadline: every order is final and indexed at its final time. Returns what each must become. */
  beforeRetire(sim: Sim): Map<string, { status: string; version: number; finalAtMs: number }> {
    const finals = new Map<string, { status: string; version: number; finalAtMs: number }>();
    for (const part of sim.orderParts) {
      for (const order of part.store.orders.values()) {
        const where = () => ({ order: order.key, finalAtMs: order.finalAtMs });
        check(typeof order.finalAtMs === "number", "a final order has its final time", where);
        check(
          part.store.retention.finals.has(`${order.finalAtMs}\u0000${order.key}`),
          "a final order is indexed at its final time",
          where,
        );
        finals.set(order.key, { status: order.status, version: order.version, finalAtMs: order.finalAtMs });
      }
    }
    count("orders retired", finals.size);
    return finals;
  }

  /** Past finalRetentionMs: every order is a tombstone of itself; no cancel waits any more. */
  afterCompaction(
    sim: Sim,
    finals: Map<string, { status: string; version: number; finalAtMs: number }>,
  ): void {
    for (const part of sim.orderParts) {
      check(part.store.orders.size === 0, "past the final horizon no order record is left", () => [
        ...part.store.orders.keys(),
      ]);
      check(part.store.pending.size === 0, "past the cancel age no cancel waits", () => [
        ...part.store.pending.entries(),
      ]);
      check(part.store.retention.finals.size === 0, "no final order is left to compact", () => [
        ...part.store.retention.finals.values(),
      ]);
      check(part.store.retention.pending.size === 0, "no waiting cancel is left indexed", () => [
        ...part.store.retention.pending.values(),
      ]);
    }
    for (const [key, f] of finals) {
      const t = sim.orderParts[orderPartition(key, this.o.partitions)]?.store.tombstones.get(key);
      check(
        t !== undefined && t.status === f.status && t.version === f.version && t.finalAtMs === f.finalAtMs,
        "a compacted order's tombstone keeps its status, version and final time",
        () => ({ key, final: f, tombstone: t }),
      );
    }
  }

  /** Past tombstoneRetentionMs: nothing of any order is left. */
  afterTombstones(sim: Sim): void {
    for (const part of sim.orderParts) {
      check(part.store.tombstones.size === 0, "past the tombstone horizon no tombstone is left", () => [
        ...part.store.tombstones.keys(),
      ]);
      check(part.store.retention.tombstones.size === 0, "no tombstone is left indexed", () => [
        ...part.store.retention.tombstones.values(),
      ]);
    }
  }

  // ---- when every stream is drained -----------------------------------------------------------------------

  /**
   * A kit line at rest (docs/kits.md): all or none. Released: every component holds exactly its unshipped
   * kits × units at the line's warehouse, under the line's try. Otherwise no component holds anything. Its
   * components shipped and returned what the line did, in units; the warehouse asked holds the kit line.
   */
  private kitAtRest(sim: Sim, order: Order, l: OrderLine, holders: Map<string, Allocation>): void {
    const kit = l.kit as NonNullable<OrderLine["kit"]>;
    check(l.state !== "received", "at rest no kit line waits for the ledger", () => ({
      order: order.key,
      l,
    }));
    check(l.state !== "allocated", "at rest every allocated kit line is released", () => ({
      order: order.key,
      l,
    }));
    const lost = kit.parts.some((p) => this.lost.has(`${p.sku}|${lineKey(order.key, p.lineId)}`));
    for (const p of kit.parts) {
      const alloc = partAllocation(sim, this.o.partitions, order.key, p.sku, p.lineId);
      const where = () => ({ order: order.key, line: l, part: p, allocation: alloc });
      holders.delete(`${p.sku}|${lineKey(order.key, p.lineId)}`);
      if (l.state === "released") {
        count("kit line released at rest");
        check(
          alloc !== undefined &&
            alloc.attempt === kit.try &&
            alloc.warehouse === l.warehouse &&
            alloc.reserved === (l.qty - l.shippedQty) * p.per,
          "a released kit line holds every component, exactly its unshipped kits × units, at its warehouse",
          where,
        );
      } else {
        if (l.state === "backordered" || l.state === "rejected") count(`kit line ${l.state} at rest`);
        check(
          alloc === undefined || alloc.reserved === 0,
          `no component of a ${l.state} kit line holds stock`,
          where,
        );
      }
      if (!lost && (l.shippedQty > 0 || alloc !== undefined))
        check(
          alloc !== undefined &&
            alloc.shipped === l.shippedQty * p.per &&
            alloc.returned === l.returnedQty * p.per,
          "a kit line's components shipped and returned its kits × units",
          where,
        );
    }
    const open = this.openFulfil.get(lineKey(order.key, l.lineId));
    if (l.state === "released")
      check(open === l.warehouse, "a released kit line's warehouse was asked to ship it", () => ({
        l,
        open,
      }));
    else if (l.state !== "shipped")
      check(open === undefined, `a ${l.state} kit line is not left with a warehouse`, () => ({ l, open }));
  }

  /** Conservation between the stages: every reservation belongs to a line that holds it, and back. */
  atQuiescence(sim: Sim): void {
    count("checked at rest (every stream drained)");
    const holders = new Map<string, Allocation>();
    for (const l of sim.ledgers)
      for (const a of l.store.allocations.values())
        if (a.reserved > 0) holders.set(`${a.sku}|${lineKey(a.orderKey, a.lineId)}`, a);
    for (const part of sim.orderParts) {
      for (const order of part.store.orders.values()) {
        let live = false;
        for (const l of order.lines) {
          if (l.kit !== undefined) {
            this.kitAtRest(sim, order, l, holders);
            live ||= isOpen(l);
            continue;
          }
          const where = () => ({ order: order.key, line: l, allocation: alloc });
          const ledger = sim.ledgers[skuPartition(l.sku, this.o.partitions)]?.store;
          const alloc = ledger?.allocations.get(`${l.sku}\u0000${order.key}\u0000${l.lineId}`);
          check(l.state !== "received", "at rest no line waits for the ledger", where);
          check(l.state !== "allocated", "at rest every allocated line is released", where);
          holders.delete(`${l.sku}|${lineKey(order.key, l.lineId)}`);
          if (l.state === "released") {
            check(
              alloc !== undefined &&
                alloc.attempt === l.attempt &&
                alloc.warehouse === l.warehouse &&
                alloc.reserved === l.qty - l.shippedQty,
              "a released line holds exactly its unshipped quantity at its warehouse",
              where,
            );
          } else
            check(alloc === undefined || alloc.reserved === 0, `a ${l.state} line holds no stock`, where);
          if (
            !this.lost.has(`${l.sku}|${lineKey(order.key, l.lineId)}`) &&
            (l.shippedQty > 0 || alloc !== undefined)
          )
            check(
              alloc !== undefined && alloc.shipped === l.shippedQty && alloc.returned === l.returnedQty,
              "the ledger's shipped and returned quantities of a line are the order's",
              where,
            );
          const open = this.openFulfil.get(lineKey(order.key, l.lineId));
          if (l.state === "released")
            check(open === l.warehouse, "a released line's warehouse was asked to ship it", () => ({
              order: order.key,
              line: l,
              open,
            }));
          else if (l.state !== "shipped")
            check(open === undefined, `a ${l.state} line is not left with a warehouse`, () => ({
              order: order.key,
              line: l,
              open,
            }));
          live ||= isOpen(l);
        }
        this.splitPolicy(order);
        check(
          live === part.store.hasTimer(order.shipByMs, order.key),
          "an order has an SLA timer exactly while a line is open",
          () => ({
            order: order.key,
            live,
            shipByMs: order.shipByMs,
            timers: [...part.store.timers.values()],
          }),
        );
        check(
          !part.store.pending.has(order.key),
          "no cancel waits for an order that exists",
          () => order.key,
        );
        const due = order.atRiskDueMs ?? null;
        check(
          (due === null || live) && (due === null || part.store.hasTimer(due, order.key)),
          "an order has its at-risk timer only while open and not fired",
          () => ({ order: order.key, live, due, timers: [...part.store.timers.values()] }),
        );
        this.checkAtRisk(sim, order.key);
      }
      for (const t of part.store.timers.values()) {
        check(part.store.orders.has(t.key), "a timer belongs to an order", () => t);
        const o = part.store.orders.get(t.key);
        check(
          o === undefined || o.shipByMs === t.dueMs || o.atRiskDueMs === t.dueMs,
          "a timer is its order's deadline or at-risk point",
          () => ({ t, shipByMs: o?.shipByMs, atRiskDueMs: o?.atRiskDueMs }),
        );
      }
      // The count (the gauge) equals the model's.
      const modelCount = [...part.store.orders.values()].filter(
        (o) => this.riskModel.has(o.key) && o.lines.some(isOpen),
      ).length;
      check(part.store.atRisk.size === modelCount, "orders at risk counted as the model says", () => ({
        stored: part.store.atRisk.size,
        modelCount,
      }));
    }
    for (const c of this.cancels) {
      const order = this.findOrder(sim, c.key);
      for (const l of order?.lines ?? []) {
        if (c.lineIds !== null && !c.lineIds.includes(l.lineId)) continue;
        check(
          l.state === "cancelled" || l.state === "shipped" || l.state === "rejected",
          "an accepted customer cancel is never lost: the line ends cancelled unless it shipped or failed",
          () => ({ cancel: c, line: l }),
        );
      }
    }
    check(holders.size === 0, "every reservation belongs to an order line (no leaked stock)", () => [
      ...holders.values(),
    ]);
  }
}

/** The ledger allocation of a kit line's component (undefined: never asked). */
function partAllocation(sim: Sim, partitions: number, orderKey: string, sku: string, lineId: string) {
  return sim.ledgers[skuPartition(sku, partitions)]?.store.allocations.get(
    `${sku}\u0000${orderKey}\u0000${lineId}`,
  );
}

const zero = (): Position => ({ onHand: 0, reserved: 0, damaged: 0, qualityControl: 0, safetyStock: 0 });

const samePosition = (a: Position, b: Position) => positionFields.every((f) => a[f] === b[f]);

export function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Where two committed states first differ (a path and both values), or null when they are the same. */
export function firstDifference(expected: unknown, actual: unknown, path = "$"): string | null {
  if (JSON.stringify(expected) === JSON.stringify(actual)) return null;
  if (typeof expected === "object" && expected !== null && typeof actual === "object" && actual !== null) {
    const keys = new Set([...Object.keys(expected), ...Object.keys(actual)]);
    for (const k of keys) {
      const d = firstDifference(
        (expected as Record<string, unknown>)[k],
        (actual as Record<string, unknown>)[k],
        `${path}.${k}`,
      );
      if (d !== null) return d;
    }
  }
  return `${path}: without faults ${JSON.stringify(expected)}, with faults ${JSON.stringify(actual)}`;
}

/** Everything a run committed, in a canonical form: two runs that did the same work give the same text. */
export function committedState(sim: Sim): unknown {
  const sorted = <T>(m: Map<string, T>) => [...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return {
    ledgers: sim.ledgers.map((l) => ({
      skus: sorted(l.store.skus),
      // An entry's stream sequence differs when the faulty run's streams hold extra copies; all else must not.
      entries: [...l.store.skus.keys()].sort().map((s) => l.store.entriesOf(s).map(({ seq: _, ...e }) => e)),
      allocations: sorted(l.store.allocations),
      waiting: sorted(l.store.waiting),
      waitingHeads: sorted(l.store.heads),
    })),
    orders: sim.orderParts.map((o) => ({
      orders: sorted(o.store.orders),
      pending: sorted(o.store.pending),
      timers: sorted(o.store.timers),
      atRisk: sorted(o.store.atRisk),
      tombstones: sorted(o.store.tombstones),
      retention: Object.values(o.store.retention).map(sorted),
    })),
    outputs: sim.outputs,
  };
}
