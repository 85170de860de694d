// The load generator, a process of its own: `bun bench/harness/loadgen.ts '<LoadPlan JSON>'`.
//
// Open loop: each order has an intended send time from the seeded schedule (workload.ts), and is published
// when that time comes, whatever happened to the orders before it; at most `inFlightPublishesMax` publishes
// wait for their JetStream ack (a real producer's window). When the window is full or the process is
// slow, it falls behind its schedule and says so (`behindMs`); latency is still measured from the intended
// time, so a slow Sluice cannot hide behind a slow generator (no coordinated omission).
//
// lifecycle adds follow-ups. Customer cancels are planned with the order (open loop). The warehouse side is a
// simulated WMS that reacts to Sluice's outputs as a real one would: a fulfilment request is rejected (once
// per order) or shipped, in one or two shipments, after a delay; a shipped order is sometimes returned.
//
// It reports to the harness on stdout, one JSON object a line: "ready", a "tick" every second with
// cumulative counts, and "done" with every per-second series. Errors go to stderr.
import { jetstream } from "@nats-io/jetstream";
import { headers, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { connectSecured } from "../../src/stream/connection.ts";
import { subjects } from "../../src/stream/subjects.ts";
import { benchConnection } from "../lib.ts";
import { benchSecurityNames, limits } from "./options.ts";
import { Categorical, Rng } from "./prng.ts";
import { loadTrace, type Trace } from "./trace.ts";
import {
  ArrivalSchedule,
  keyPrefixOf,
  type LoadPlan,
  orderIdOf,
  orderPayload,
  type PlannedOrder,
  parseOrderKey,
  Workload,
} from "./workload.ts";

export type FollowUpKind = "cancel" | "shipped" | "rejected" | "returned" | "restock";
export type FollowUpCounts = Record<FollowUpKind, { sent: number; accepted: number; errors: number }>;

export type LoadTick = {
  type: "tick";
  elapsedS: number;
  offered: number;
  sent: number;
  accepted: number;
  errors: number;
  inflight: number;
  behindMs: number;
};

export type LoadDone = {
  type: "done";
  offered: number;
  sent: number;
  accepted: number;
  errors: number;
  /** chaos: publishes sent again after a failure (same Nats-Msg-Id). */
  retries?: number;
  /** Order numbers whose publish failed (not accepted): the audit leaves them out. */
  failed: number[];
  behindMsMax: number;
  inflightMax: number;
  /** Per second after the start: offered by intended time; sent, accepted, errors by wall time. */
  offeredBySecond: number[];
  sentBySecond: number[];
  acceptedBySecond: number[];
  errorsBySecond: number[];
  linesPerOrder: Record<string, number>;
  unitsOffered: number;
  /** hot-sku: units offered per hot SKU (the audit compares with stock and reservations). */
  hotUnits: Record<string, number>;
  followUps: FollowUpCounts;
  /** lifecycle: reactions still awaited when the loadgen gave up waiting (0 when it saw everything). */
  reactionsAwaited: number;
  cpuSeconds: number;
};

/** Per-order bits (lifecycle): one byte an order. */
const Flag = {
  PlannedCancel: 1,
  FulfilSeen: 2,
  RejectDecided: 4,
  ShippedSeen: 8,
  Accepted: 16,
  Closed: 32,
  ShipPlanned: 64,
} as const;

type FollowUp = { atUs: number; kind: FollowUpKind; subject: string; payload: string };

const followUpDelaysMs = {
  cancel: [200, 2000],
  reject: [100, 1000],
  ship: [500, 3000],
  secondShipment: [500, 2000],
  returned: [500, 3000],
  // A backorder's unit arrives this long after the order: long enough that the line waits first.
  restock: [1000, 1500],
} as const;

/** Where a backorder's unit is received: the bench network's first warehouse, in the orders' region (SP). */
const restockWarehouse = "w1";

/** Return dispositions: an assumption (Olist has no returns), most returns resellable. */
const dispositions = new Categorical([
  ["sellable", 70],
  ["damaged", 20],
  ["quality_control", 10],
] as const);

const epochNowMs = () => performance.timeOrigin + performance.now();

function emit(message: object): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

class MinHeap {
  private items: FollowUp[] = [];
  get size(): number {
    return this.items.length;
  }
  peek(): FollowUp | undefined {
    return this.items[0];
  }
  push(x: FollowUp): void {
    const a = this.items;
    a.push(x);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if ((a[p] as FollowUp).atUs <= x.atUs) break;
      a[i] = a[p] as FollowUp;
      i = p;
    }
    a[i] = x;
  }
  pop(): FollowUp | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length === 0 || last === undefined) return top;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= a.length) break;
      const r = l + 1;
      const c = r < a.length && (a[r] as FollowUp).atUs < (a[l] as FollowUp).atUs ? r : l;
      if ((a[c] as FollowUp).atUs >= last.atUs) break;
      a[i] = a[c] as FollowUp;
      i = c;
    }
    a[i] = last;
    return top;
  }
}

class Counter {
  private readonly values: number[] = [];
  add(second: number, by = 1): void {
    const s = Math.max(0, Math.floor(second));
    while (this.values.length <= s) this.values.push(0);
    this.values[s] = (this.values[s] as number) + by;
  }
  toArray(): number[] {
    return this.values;
  }
}

export async function runLoadgen(plan: LoadPlan): Promise<void> {
  const trace: Trace | null = plan.trace === null ? null : loadTrace(plan.trace.path, plan.trace.format);
  const workload = new Workload(plan, trace);
  const offeredTimes = intendedTimes(plan, trace);
  // The harness's environment (SLUICE_NATS_* security settings) is this process's too.
  const client = benchConnection(plan.natsClient, process.env);
  const nc = await connectSecured(
    {
      servers: plan.natsUrl.split(","),
      name: "sluice-bench-loadgen",
      ...client.options,
      // chaos restarts nats-server: reconnect for as long as the run lasts.
      ...((plan.publishRetryMs ?? 0) > 0 ? { maxReconnectAttempts: -1, reconnectTimeWait: 250 } : {}),
    },
    client.security,
    benchSecurityNames,
  );
  // chaos: a publish lost with a killed server is sent again after a producer's timeout, not the bench's 10 s.
  const js = jetstream(nc, {
    timeout: (plan.publishRetryMs ?? 0) > 0 ? limits.chaosPublishAckWaitMs : limits.publishAckWaitMs,
  });
  const h = headers();
  h.set("Content-Type", "application/json");
  const enc = new TextEncoder();
  const keyPrefix = keyPrefixOf(plan.channel, plan.runId);
  const nowUs = () => (epochNowMs() - plan.startEpochMs) * 1000;

  const offered = new Counter();
  const sentBy = new Counter();
  const acceptedBy = new Counter();
  const errorsBy = new Counter();
  const failed: number[] = [];
  const linesPerOrder: Record<string, number> = {};
  const hotUnits: Record<string, number> = {};
  const followUps: FollowUpCounts = {
    cancel: { sent: 0, accepted: 0, errors: 0 },
    shipped: { sent: 0, accepted: 0, errors: 0 },
    rejected: { sent: 0, accepted: 0, errors: 0 },
    returned: { sent: 0, accepted: 0, errors: 0 },
    restock: { sent: 0, accepted: 0, errors: 0 },
  };
  /** Backorders of the mix: the simulated WMS never rejects them (no stock elsewhere to re-route to). */
  const backorders = new Set<number>();
  let offeredCount = 0;
  let nextOfferedUs = offeredTimes.next();
  let sent = 0;
  let accepted = 0;
  let errors = 0;
  let retries = 0;
  let unitsOffered = 0;
  let inflight = 0;
  let inflightMax = 0;
  let behindMs = 0;
  let behindMsMax = 0;
  let slotWaiter: (() => void) | null = null;
  const heap = new MinHeap();
  const lifecycle = plan.lifecycle;
  let flags = new Uint8Array(1024);
  let awaitingFulfil = 0;
  let awaitingShipped = 0;

  const flag = (n: number) => (n < flags.length ? (flags[n] as number) : 0);
  const setFlag = (n: number, f: number) => {
    if (n >= flags.length) {
      const grown = new Uint8Array(Math.max(n + 1, flags.length * 2));
      grown.set(flags);
      flags = grown;
    }
    flags[n] = (flags[n] as number) | f;
  };

  const settle = () => {
    inflight--;
    if (slotWaiter !== null) {
      const w = slotWaiter;
      slotWaiter = null;
      w();
    }
  };

  const sendOrder = (order: PlannedOrder) => {
    const now = nowUs();
    const orderId = orderIdOf(
      plan.runId,
      order.n,
      order.intendedUs,
      Math.max(order.intendedUs, Math.round(now)),
    );
    behindMs = Math.max(0, (now - order.intendedUs) / 1000);
    if (behindMs > behindMsMax) behindMsMax = behindMs;
    sent++;
    sentBy.add(now / 1e6);
    linesPerOrder[order.lines.length] = (linesPerOrder[order.lines.length] ?? 0) + 1;
    for (const l of order.lines) {
      unitsOffered += l.qty;
      if (l.sku.startsWith("HOT-")) hotUnits[l.sku] = (hotUnits[l.sku] ?? 0) + l.qty;
    }
    if (lifecycle !== null) planCancel(order, orderId);
    if (order.backorder === true) planRestock(order);
    inflight++;
    if (inflight > inflightMax) inflightMax = inflight;
    const subject = subjects.orderPublic("order", plan.channel, orderId);
    const payload = enc.encode(orderPayload(order));
    const firstMs = epochNowMs();
    // chaos: a failed publish is sent again, same id (Nats-Msg-Id), as a producer would, for retryMs at most.
    const retryMs = plan.publishRetryMs ?? 0;
    const attempt = () =>
      js.publish(subject, payload, retryMs > 0 ? { headers: h, msgID: orderId } : { headers: h }).then(
        () => {
          accepted++;
          acceptedBy.add(nowUs() / 1e6);
          if (lifecycle !== null) {
            setFlag(order.n, Flag.Accepted);
            if ((flag(order.n) & Flag.PlannedCancel) === 0) awaitingFulfil++;
          }
          settle();
        },
        (error: unknown) => {
          if (epochNowMs() - firstMs < retryMs) {
            retries++;
            setTimeout(attempt, limits.publishRetryDelayMs);
            return;
          }
          errors++;
          errorsBy.add(nowUs() / 1e6);
          failed.push(order.n);
          if (errors <= limits.examplesMax)
            process.stderr.write(`loadgen: order ${orderId}: ${String(error)}\n`);
          settle();
        },
      );
    attempt();
  };

  const planCancel = (order: PlannedOrder, orderId: string) => {
    const rng = new Rng(plan.seed ^ 0x0ca9ce1, order.n + 1);
    if (!rng.chance((lifecycle?.cancelPct ?? 0) / 100)) return;
    setFlag(order.n, Flag.PlannedCancel);
    const [lo, hi] = followUpDelaysMs.cancel;
    heap.push({
      atUs: order.intendedUs + rng.between(lo, hi) * 1000,
      kind: "cancel",
      subject: subjects.orderPublic("cancel", plan.channel, orderId),
      payload: JSON.stringify({ reason: "bench: customer cancel" }),
    });
  };

  /** The unit a backorder waits for: a receipt at the first warehouse, after the line has waited. */
  const planRestock = (order: PlannedOrder) => {
    backorders.add(order.n);
    const rng = new Rng(plan.seed ^ 0x7e57, order.n + 1);
    const [lo, hi] = followUpDelaysMs.restock;
    for (const l of order.lines)
      heap.push({
        atUs: order.intendedUs + rng.between(lo, hi) * 1000,
        kind: "restock",
        subject: subjects.stockPublic(l.sku),
        payload: JSON.stringify({ type: "received", warehouse: restockWarehouse, qty: l.qty }),
      });
  };

  const sendFollowUp = (f: FollowUp) => {
    const c = followUps[f.kind];
    c.sent++;
    inflight++;
    js.publish(f.subject, enc.encode(f.payload), { headers: h }).then(
      () => {
        c.accepted++;
        settle();
      },
      (error: unknown) => {
        c.errors++;
        if (c.errors <= limits.examplesMax)
          process.stderr.write(`loadgen: ${f.kind} ${f.subject}: ${String(error)}\n`);
        settle();
      },
    );
  };

  // The simulated WMS and customer returns: reactions to Sluice's outputs (lifecycle only).
  let lastReactionMs = epochNowMs();
  let watcher: NatsConnection = nc;
  if (lifecycle !== null) {
    const dec = new TextDecoder();
    const react = (msg: Msg) => {
      lastReactionMs = epochNowMs();
      let body: { items?: unknown[] };
      try {
        body = JSON.parse(dec.decode(msg.data));
      } catch {
        return;
      }
      for (const raw of body.items ?? []) {
        const item = raw as Record<string, unknown>;
        const key = typeof item.orderKey === "string" ? item.orderKey : "";
        const parsed = parseOrderKey(key, keyPrefix);
        if (parsed === null) continue;
        if (msg.subject.startsWith("sluice.out.fulfil.")) onFulfil(parsed.n, item);
        else onStatus(parsed.n, item);
      }
    };
    // On Sluice's locked embedded server the producer may not read outputs: the WMS and the customers read
    // them as the reader role, as a real WMS adapter would.
    const readerClient = plan.natsReader === null ? null : benchConnection(plan.natsReader, process.env);
    watcher =
      readerClient === null
        ? nc
        : await connectSecured(
            { servers: plan.natsUrl.split(","), name: "sluice-bench-wms", ...readerClient.options },
            readerClient.security,
            benchSecurityNames,
          );
    watcher.subscribe("sluice.out.fulfil.>", { callback: (_e, m) => react(m) });
    watcher.subscribe("sluice.out.order.>", { callback: (_e, m) => react(m) });
  }

  const onFulfil = (n: number, item: Record<string, unknown>) => {
    if (item.type !== "fulfil" || (flag(n) & Flag.PlannedCancel) !== 0) return;
    const lc = lifecycle as NonNullable<typeof lifecycle>;
    const orderId = String(item.orderId);
    const warehouse = String(item.warehouse);
    const lines = (item.lines as { lineId: string; qty: number }[]) ?? [];
    if ((flag(n) & Flag.FulfilSeen) === 0 && (flag(n) & Flag.Accepted) !== 0) awaitingFulfil--;
    setFlag(n, Flag.FulfilSeen);
    const rng = new Rng(plan.seed ^ 0x3a5e, n * 8 + (flag(n) & Flag.RejectDecided ? 1 : 0) + 1);
    const now = nowUs();
    if ((flag(n) & Flag.RejectDecided) === 0) {
      setFlag(n, Flag.RejectDecided);
      if (!backorders.has(n) && rng.chance(lc.rejectPct / 100)) {
        const [lo, hi] = followUpDelaysMs.reject;
        heap.push({
          atUs: now + rng.between(lo, hi) * 1000,
          kind: "rejected",
          subject: subjects.wmsPublic(warehouse, "rejected"),
          payload: JSON.stringify({
            channel: plan.channel,
            orderId,
            lines: lines.map((l) => l.lineId),
            reason: "bench: cannot fulfil",
          }),
        });
        return;
      }
    }
    // Ship: one shipment, or two when partial (half of a line with qty ≥ 2, or the first line first).
    const [lo, hi] = followUpDelaysMs.ship;
    const firstAt = now + rng.between(lo, hi) * 1000;
    const shipment = (id: string, atUs: number, part: { lineId: string; qty: number }[]) =>
      heap.push({
        atUs,
        kind: "shipped",
        subject: subjects.wmsPublic(warehouse, "shipped"),
        payload: JSON.stringify({
          channel: plan.channel,
          orderId,
          shipmentId: `${id}-${warehouse}`,
          // Only lineId and qty: the fulfilment item's lines carry more (sku, routing) that Sluice refuses here.
          lines: part.map((l) => ({ lineId: l.lineId, qty: l.qty })),
        }),
      });
    const splittable = lines.find((l) => l.qty >= 2);
    if (rng.chance(lc.partialShipPct / 100) && (splittable !== undefined || lines.length >= 2)) {
      const [lo2, hi2] = followUpDelaysMs.secondShipment;
      const first =
        splittable !== undefined
          ? lines.map((l) => (l === splittable ? { lineId: l.lineId, qty: Math.floor(l.qty / 2) } : l))
          : lines.slice(0, 1);
      const rest =
        splittable !== undefined
          ? [{ lineId: splittable.lineId, qty: splittable.qty - Math.floor(splittable.qty / 2) }]
          : lines.slice(1);
      shipment("s1", firstAt, first);
      shipment("s2", firstAt + rng.between(lo2, hi2) * 1000, rest);
    } else shipment("s1", firstAt, lines);
    // An order split over two warehouses gets two fulfilment requests and one "shipped" status.
    if ((flag(n) & Flag.ShipPlanned) === 0) {
      setFlag(n, Flag.ShipPlanned);
      awaitingShipped++;
    }
  };

  const onStatus = (n: number, item: Record<string, unknown>) => {
    const status = item.status;
    if ((status === "rejected" || status === "cancelled") && (flag(n) & Flag.Closed) === 0) {
      setFlag(n, Flag.Closed);
      const f = flag(n);
      if ((f & Flag.FulfilSeen) === 0 && (f & Flag.Accepted) !== 0 && (f & Flag.PlannedCancel) === 0) {
        setFlag(n, Flag.FulfilSeen);
        awaitingFulfil--;
      }
      if ((f & Flag.ShipPlanned) !== 0 && (f & Flag.ShippedSeen) === 0) {
        setFlag(n, Flag.ShippedSeen); // will never ship now
        awaitingShipped--;
      }
      return;
    }
    if (status !== "shipped" || (flag(n) & Flag.ShippedSeen) !== 0) return;
    setFlag(n, Flag.ShippedSeen);
    if ((flag(n) & Flag.ShipPlanned) !== 0) awaitingShipped--;
    const lc = lifecycle as NonNullable<typeof lifecycle>;
    const rng = new Rng(plan.seed ^ 0x7e7, n + 1);
    if (!rng.chance(lc.returnPct / 100)) return;
    const lines = (item.lines as { lineId: string; shippedQty: number }[]) ?? [];
    const line = lines.find((l) => l.shippedQty > 0);
    if (line === undefined) return;
    const [lo, hi] = followUpDelaysMs.returned;
    heap.push({
      atUs: nowUs() + rng.between(lo, hi) * 1000,
      kind: "returned",
      subject: subjects.orderPublic("return", plan.channel, String(item.orderId)),
      payload: JSON.stringify({
        returnId: `r-${n}`,
        lines: [{ lineId: line.lineId, qty: 1, disposition: dispositions.sample(rng) }],
      }),
    });
  };

  const tick = () => {
    const now = nowUs();
    while (nextOfferedUs !== null && nextOfferedUs <= now && nextOfferedUs < stopAtUs) {
      offered.add(nextOfferedUs / 1e6);
      offeredCount++;
      nextOfferedUs = offeredTimes.next();
    }
    emit({
      type: "tick",
      elapsedS: Math.round(now / 1000) / 1000,
      offered: offeredCount,
      sent,
      accepted,
      errors,
      inflight,
      behindMs: Math.round(behindMs),
    } satisfies LoadTick);
  };

  // The harness answers "ready" with the start time, so a slow start of this process is not counted as lag.
  emit({ type: "ready" });
  // Later stdin lines (sweep): {"stopAtUs": n}: offer nothing intended at or after n µs.
  let stopAtUs = Number.POSITIVE_INFINITY;
  plan.startEpochMs = await readControl((line) => {
    const at = (line as { stopAtUs?: unknown }).stopAtUs;
    if (typeof at === "number") stopAtUs = Math.min(stopAtUs, at);
  });
  while (nowUs() < 0) await Bun.sleep(Math.min(50, -nowUs() / 1000));
  const ticker = setInterval(tick, limits.reportIntervalMs);
  let next = workload.next();
  let scheduleEndedMs: number | null = null;
  for (;;) {
    const now = nowUs();
    if (next !== null && next.intendedUs >= stopAtUs) next = null;
    let turn = 0;
    while (turn < limits.sendsPerTurnMax && inflight < plan.inFlightPublishesMax) {
      const f = heap.peek();
      const orderDue = next !== null && next.intendedUs <= now;
      const followDue = f !== undefined && f.atUs <= now;
      if (!orderDue && !followDue) break;
      if (orderDue && (!followDue || (next as PlannedOrder).intendedUs <= (f as FollowUp).atUs)) {
        sendOrder(next as PlannedOrder);
        next = workload.next();
      } else sendFollowUp(heap.pop() as FollowUp);
      turn++;
    }
    if (next === null && scheduleEndedMs === null) scheduleEndedMs = epochNowMs();
    if (next === null && heap.size === 0 && inflight === 0) {
      if (lifecycle === null) break;
      const settled = awaitingFulfil <= 0 && awaitingShipped <= 0;
      const gaveUp = epochNowMs() - (scheduleEndedMs as number) > limits.followUpWaitMs;
      const quiet = epochNowMs() - lastReactionMs > 1000; // a return may follow the last shipped status
      if ((settled && quiet) || gaveUp) break;
    }
    if (inflight >= plan.inFlightPublishesMax) {
      await new Promise<void>((resolve) => {
        slotWaiter = resolve;
      });
      continue;
    }
    if (turn >= limits.sendsPerTurnMax) {
      await new Promise<void>((resolve) => setImmediate(resolve)); // due sends remain: let acks in first
      continue;
    }
    const dueUs = Math.min(
      next?.intendedUs ?? Number.POSITIVE_INFINITY,
      heap.peek()?.atUs ?? Number.POSITIVE_INFINITY,
    );
    // Sleep until the next due send, but at least one tick: waking per order (a 50 µs gap at 20k/s) would
    // cost more CPU than the sends. Orders due within the tick go out together, up to a tick late, and
    // that lateness is in every latency (measured from the intended time). At most 5 ms, for reactions.
    const untilDueMs = (dueUs - nowUs()) / 1000;
    await Bun.sleep(Math.min(5, Math.max(limits.sendTickMs, untilDueMs)));
  }
  clearInterval(ticker);
  tick();
  const cpu = process.cpuUsage();
  emit({
    type: "done",
    offered: offeredCount,
    sent,
    accepted,
    errors,
    retries,
    failed,
    behindMsMax: Math.round(behindMsMax),
    inflightMax,
    offeredBySecond: offered.toArray(),
    sentBySecond: sentBy.toArray(),
    acceptedBySecond: acceptedBy.toArray(),
    errorsBySecond: errorsBy.toArray(),
    linesPerOrder,
    unitsOffered,
    hotUnits,
    followUps,
    reactionsAwaited: Math.max(0, awaitingFulfil) + Math.max(0, awaitingShipped),
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
  } satisfies LoadDone);
  if (watcher !== nc) await watcher.drain();
  await nc.drain();
}

/**
 * The first stdin line: {"startEpochMs": <epoch ms>}, returned. Every later line (until stdin closes) goes
 * to `onLine`, parsed; the harness may keep stdin open to send them (sweep: {"stopAtUs": n}).
 */
function readControl(onLine: (line: unknown) => void): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let started = false;
    (async () => {
      const dec = new TextDecoder();
      let text = "";
      for await (const chunk of Bun.stdin.stream()) {
        text += dec.decode(chunk, { stream: true });
        let nl = text.indexOf("\n");
        while (nl >= 0) {
          const line = text.slice(0, nl);
          text = text.slice(nl + 1);
          nl = text.indexOf("\n");
          if (line.trim() === "") continue;
          if (started) {
            onLine(JSON.parse(line));
            continue;
          }
          const start = (JSON.parse(line) as { startEpochMs?: unknown }).startEpochMs;
          if (typeof start !== "number") throw new Error(`loadgen: bad start line ${line}`);
          started = true;
          resolve(start);
        }
      }
      if (!started) throw new Error("loadgen: stdin closed before the start line");
    })().catch(reject);
  });
}

/** Intended send times only (for counting offered load while the sender may be behind). */
function intendedTimes(plan: LoadPlan, trace: Trace | null): { next: () => number | null } {
  if (trace === null) return new ArrivalSchedule(plan.phases, plan.arrivals, plan.seed);
  let i = 0;
  const speedup = plan.trace?.speedup ?? 1;
  return {
    next: () => {
      const o = trace.orders[i++];
      return o === undefined ? null : Math.round(((o.tMs - trace.firstMs) / speedup) * 1000);
    },
  };
}

if (import.meta.main) {
  const arg = process.argv[2];
  if (arg === undefined) {
    process.stderr.write(
      "usage: bun bench/harness/loadgen.ts '<LoadPlan JSON>' (started by bench/harness/main.ts)\n",
    );
    process.exit(2);
  }
  try {
    await runLoadgen(JSON.parse(arg) as LoadPlan);
    process.exit(0);
  } catch (error) {
    process.stderr.write(`loadgen: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  }
}
