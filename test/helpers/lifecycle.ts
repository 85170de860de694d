// A harness for order-lifecycle integration tests: a real nats-server, a real Sluice (LMDB), a producer that
// publishes like a channel or a WMS would, and taps that read what Sluice publishes (SLUICE_OUT, SLUICE_DLQ).
import { expect } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ConsumerMessages, PubAck } from "@nats-io/jetstream";
import type { Config } from "../../src/config/index.ts";
import type { Order, OrderStatusItem } from "../../src/domain/orders/index.ts";
import type { FulfilmentItem } from "../../src/domain/orders/types.ts";
import type { Sluice } from "../../src/sluice.ts";
import { deadLetterHeaders } from "../../src/stream/dead-letter.ts";
import {
  inputConsumerName,
  inputs,
  orderKey,
  skuPartition,
  streamNames,
  subjects,
  unroutedConsumerName,
} from "../../src/stream/subjects.ts";
import { getJson, httpBase, Producer, startSluice, TestNats, tempDir, testConfig, waitFor } from "./index.ts";

// ---- network file -----------------------------------------------------------------------------------

export type ChannelRules = {
  id: string;
  backorder?: boolean;
  split?: "allow_partial" | "ship_complete";
  maxShipments?: number;
  slaShipWithinMs?: number;
  slaAction?: "cancel" | "reroute";
  slaRerouteGraceMs?: number;
  slaAtRiskMs?: number;
};

export type WarehouseSpec = { id: string; channels?: string[]; enabled?: boolean };

const tomlValue = (v: unknown): string =>
  Array.isArray(v)
    ? `[${v.map(tomlValue).join(", ")}]`
    : typeof v === "string"
      ? JSON.stringify(v)
      : String(v);

/**
 * Lifecycle tests route by list order: with no coordinates, carriers, load or stock weight every warehouse
 * scores the same and ties go to the one listed first. Scoring has its own tests (routing*.test.ts).
 */
export const listOrderRouting = { loadWeight: 0, stockWeight: 0 };

/** Writes a network TOML file (warehouses in routing order, channels with their rules) and returns its path. */
export function writeNetwork(
  dir: string,
  channels: ChannelRules[],
  warehouses: WarehouseSpec[] = [{ id: "w1" }, { id: "w2" }, { id: "w3" }],
  routing: Record<string, number> = listOrderRouting,
): string {
  const blocks: string[] = [];
  blocks.push(["[routing]", ...Object.entries(routing).map(([k, v]) => `${k} = ${v}`)].join("\n"));
  for (const w of warehouses) {
    blocks.push(
      [
        "[[warehouses]]",
        `id = ${tomlValue(w.id)}`,
        `channels = ${tomlValue(w.channels ?? ["*"])}`,
        `enabled = ${w.enabled ?? true}`,
      ].join("\n"),
    );
  }
  for (const c of channels) {
    const lines = ["[[channels]]"];
    for (const [k, v] of Object.entries(c)) if (v !== undefined) lines.push(`${k} = ${tomlValue(v)}`);
    blocks.push(lines.join("\n"));
  }
  const path = join(dir, "network.toml");
  writeFileSync(path, `${blocks.join("\n\n")}\n`);
  return path;
}

// ---- taps on Sluice's output streams ------------------------------------------------------------------

export type TappedMessage = {
  seq: number;
  subject: string;
  headers: Record<string, string>;
  data: Uint8Array;
};

/** Reads a stream from its first message with an ordered consumer and keeps every message, in stream order. */
export class StreamTap {
  readonly messages: TappedMessage[] = [];

  private constructor(private readonly consuming: ConsumerMessages) {}

  static async open(producer: Producer, stream: string, filter: string): Promise<StreamTap> {
    const consumer = await producer.js.consumers.get(stream, { filter_subjects: filter });
    const messages = await consumer.consume();
    const tap = new StreamTap(messages);
    (async () => {
      for await (const m of messages) {
        const headers: Record<string, string> = {};
        if (m.headers !== undefined) for (const k of m.headers.keys()) headers[k] = m.headers.get(k);
        tap.messages.push({ seq: m.seq, subject: m.subject, headers, data: m.data });
      }
    })().catch(() => undefined);
    return tap;
  }

  /** The items of every JSON `{items:[…]}` message on `subject`, in stream order. */
  items<T>(subject: string): T[] {
    return this.messages
      .filter((m) => m.subject === subject)
      .flatMap((m) => (JSON.parse(new TextDecoder().decode(m.data)) as { items: T[] }).items);
  }

  stop(): void {
    this.consuming.stop();
  }
}

// ---- the harness ---------------------------------------------------------------------------------------

export type Line = { lineId: string; sku: string; qty: number; price?: number };
export type PositionView = {
  onHand: number;
  reserved: number;
  damaged: number;
  qualityControl: number;
  safetyStock: number;
  available: number;
};
export type DeadLetter = { reason: string; detail: string; sourceSubject: string; body: string };

const zero: PositionView = {
  onHand: 0,
  reserved: 0,
  damaged: 0,
  qualityControl: 0,
  safetyStock: 0,
  available: 0,
};

/** Order states that no longer wait for the ledger. */
export const settled = (o: Order | null) => o !== null && o.status !== "pending";

export class Lifecycle {
  sluice!: Sluice;
  fatal: Error[] = [];
  out!: StreamTap;
  dlq!: StreamTap;
  producer!: Producer;

  private constructor(
    readonly nats: TestNats,
    readonly dataDir: string,
    readonly config: Config,
  ) {}

  /** A nats-server, a Sluice on a fresh data dir with this network, a producer and taps on the outputs. */
  static async start(
    name: string,
    channels: ChannelRules[],
    overrides: Record<string, Record<string, unknown>> = {},
    warehouses?: WarehouseSpec[],
  ): Promise<Lifecycle> {
    const nats = new TestNats(4);
    await nats.start();
    const dataDir = tempDir(name);
    const networkFile = writeNetwork(dataDir, channels, warehouses);
    const config = testConfig(nats.url, join(dataDir, "data"), {
      ...overrides,
      orders: { ...(overrides.orders ?? {}), networkFile },
    });
    const h = new Lifecycle(nats, dataDir, config);
    await h.startSluice();
    h.producer = await Producer.connect(nats.url);
    h.out = await StreamTap.open(h.producer, streamNames.out, subjects.outAll);
    h.dlq = await StreamTap.open(h.producer, streamNames.dlq, subjects.dlqAll);
    return h;
  }

  get P(): number {
    return this.config.streams.partitionCount;
  }

  get base(): string {
    return httpBase(this.sluice);
  }

  async startSluice(): Promise<void> {
    const started = await startSluice(this.config);
    this.sluice = started.sluice;
    this.fatal = started.fatal;
  }

  /** Graceful stop and a new process on the same data dir and server. */
  async restart(): Promise<void> {
    await this.sluice.stop();
    await this.startSluice();
  }

  async dispose(): Promise<void> {
    this.out?.stop();
    this.dlq?.stop();
    await this.producer?.close().catch(() => undefined);
    await this.sluice?.stop().catch(() => undefined);
    await this.nats.dispose();
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  // ---- inputs ------------------------------------------------------------------------------------------

  stock(sku: string, command: Record<string, unknown>): Promise<PubAck> {
    return this.producer.publishJson(subjects.stockPublic(sku), command);
  }

  receive(sku: string, warehouse: string, qty: number): Promise<PubAck> {
    return this.stock(sku, { type: "received", warehouse, qty });
  }

  order(
    channel: string,
    orderId: string,
    lines: Line[],
    extra: Record<string, unknown> = {},
    msgId?: string,
  ) {
    return this.producer.publishJson(
      subjects.orderPublic("order", channel, orderId),
      { lines: lines.map((l) => ({ price: 10, ...l })), ...extra },
      msgId,
    );
  }

  cancel(channel: string, orderId: string, lineIds?: string[]): Promise<PubAck> {
    return this.producer.publishJson(
      subjects.orderPublic("cancel", channel, orderId),
      lineIds === undefined ? {} : { lines: lineIds },
    );
  }

  shipped(
    warehouse: string,
    channel: string,
    orderId: string,
    shipmentId: string,
    lines: Array<{ lineId: string; qty: number }>,
  ): Promise<PubAck> {
    return this.producer.publishJson(subjects.wmsPublic(warehouse, "shipped"), {
      channel,
      orderId,
      shipmentId,
      lines,
    });
  }

  rejected(
    warehouse: string,
    channel: string,
    orderId: string,
    lineIds: string[],
    stockMissing = false,
  ): Promise<PubAck> {
    return this.producer.publishJson(subjects.wmsPublic(warehouse, "rejected"), {
      channel,
      orderId,
      lines: lineIds,
      stockMissing,
      reason: "cannot pick",
    });
  }

  returned(
    channel: string,
    orderId: string,
    returnId: string,
    lines: Array<{ lineId: string; qty: number; disposition: string; warehouse?: string }>,
  ): Promise<PubAck> {
    return this.producer.publishJson(subjects.orderPublic("return", channel, orderId), { returnId, lines });
  }

  // ---- reads -------------------------------------------------------------------------------------------

  async getOrder(channel: string, orderId: string): Promise<Order | null> {
    const r = await getJson(
      `${this.base}/v1/orders/${encodeURIComponent(channel)}/${encodeURIComponent(orderId)}`,
    );
    return r.status === 200 ? (r.body as Order) : null;
  }

  waitOrder(
    channel: string,
    orderId: string,
    done: (o: Order) => boolean,
    what: string,
    timeoutMs = 15_000,
  ): Promise<Order> {
    return waitFor(
      async () => {
        const o = await this.getOrder(channel, orderId);
        return o !== null && done(o) ? o : null;
      },
      `order ${channel}/${orderId}: ${what}`,
      timeoutMs,
    );
  }

  /** The SKU as GET /v1/stock/:sku shows it, or null (404). */
  // biome-ignore lint/suspicious/noExplicitAny: API response read by path.
  async getStock(sku: string): Promise<any | null> {
    const r = await getJson(`${this.base}/v1/stock/${encodeURIComponent(sku)}`);
    return r.status === 200 ? r.body : null;
  }

  async position(sku: string, warehouse: string): Promise<PositionView> {
    const s = await this.getStock(sku);
    return (s?.positions?.[warehouse] as PositionView | undefined) ?? zero;
  }

  async waitPosition(
    sku: string,
    warehouse: string,
    expected: Partial<PositionView>,
    timeoutMs = 15_000,
  ): Promise<PositionView> {
    return waitFor(
      async () => {
        const p = await this.position(sku, warehouse);
        return Object.entries(expected).every(([k, v]) => p[k as keyof PositionView] === v) ? p : null;
      },
      `${sku}@${warehouse} to be ${JSON.stringify(expected)}`,
      timeoutMs,
    );
  }

  // biome-ignore lint/suspicious/noExplicitAny: API response read by path.
  async entries(sku: string): Promise<any[]> {
    const r = await getJson(`${this.base}/v1/stock/${encodeURIComponent(sku)}/entries?limit=500`);
    return r.status === 200 ? r.body.entries : [];
  }

  statuses(channel: string, orderId: string): OrderStatusItem[] {
    return this.out.items<OrderStatusItem>(subjects.outOrder(channel)).filter((s) => s.orderId === orderId);
  }

  fulfilments(warehouse: string, orderId?: string): FulfilmentItem[] {
    return this.out
      .items<FulfilmentItem>(subjects.outFulfil(warehouse))
      .filter((f) => orderId === undefined || f.orderId === orderId);
  }

  /** Every fulfilment item about one order, across warehouses, in stream order. */
  fulfilmentsOf(channel: string, orderId: string): FulfilmentItem[] {
    const key = orderKey(channel, orderId);
    return this.out.messages
      .filter((m) => m.subject.startsWith("sluice.out.fulfil."))
      .flatMap((m) => (JSON.parse(new TextDecoder().decode(m.data)) as { items: FulfilmentItem[] }).items)
      .filter((f) => f.orderKey === key);
  }

  deadLetters(reason?: string): DeadLetter[] {
    return this.dlq.messages
      .filter((m) => reason === undefined || m.subject === subjects.dlq(reason))
      .map((m) => ({
        reason: m.headers[deadLetterHeaders.reason] ?? "",
        detail: m.headers[deadLetterHeaders.detail] ?? "",
        sourceSubject: m.headers[deadLetterHeaders.subject] ?? "",
        body: new TextDecoder().decode(m.data),
      }));
  }

  waitDeadLetter(reason: string, match: (d: DeadLetter) => boolean, what: string): Promise<DeadLetter> {
    return waitFor(() => this.deadLetters(reason).find(match) ?? null, `a ${reason} dead letter: ${what}`);
  }

  /**
   * Waits until nothing is in flight: every consumer of Sluice has delivered and acked everything and no
   * stream grew while it looked. Each stage publishes its outputs before it acks its input, so once this
   * holds every effect of what was published before is committed (timers aside).
   */
  async quiesce(timeoutMs = 15_000): Promise<void> {
    const jsm = await this.producer.jsm();
    const streams = [
      streamNames.unrouted,
      streamNames.order,
      streamNames.answer,
      streamNames.ledger,
      streamNames.out,
    ];
    const lastSeqs = async () =>
      (await Promise.all(streams.map((s) => jsm.streams.info(s)))).map((i) => i.state.last_seq).join(",");
    const consumers: Array<[string, string]> = [[streamNames.unrouted, unroutedConsumerName]];
    for (const input of inputs)
      for (let p = 0; p < this.P; p++) consumers.push([streamNames[input], inputConsumerName(input, p)]);
    await waitFor(
      async () => {
        const before = await lastSeqs();
        for (const [stream, name] of consumers) {
          const info = await jsm.consumers.info(stream, name);
          if (info.num_pending > 0 || info.num_ack_pending > 0) return false;
        }
        return before === (await lastSeqs());
      },
      "the pipeline to be idle",
      timeoutMs,
    );
  }

  /** GET /v1/ledger/check: positions equal the fold of their entries, nothing oversold, no version gaps. */
  async expectLedgerConsistent(): Promise<void> {
    const r = await getJson(`${this.base}/v1/ledger/check`);
    expect(r.body.partitions.flatMap((p: { mismatches: unknown[] }) => p.mismatches)).toEqual([]);
    expect(r.body.partitions.flatMap((p: { oversold: unknown[] }) => p.oversold)).toEqual([]);
    expect(r.body.partitions.flatMap((p: { versionGaps: unknown[] }) => p.versionGaps)).toEqual([]);
    expect(r.body.consistent).toBe(true);
    expect(r.status).toBe(200);
    expect(this.fatal).toEqual([]);
  }
}

// ---- SKU names by partition ----------------------------------------------------------------------------

/** A SKU name `<prefix>-<n>` that hashes to ledger partition `p`. */
export function skuIn(prefix: string, p: number, partitionCount = 4): string {
  for (let n = 0; n < 10_000; n++) {
    const sku = `${prefix}-${n}`;
    if (skuPartition(sku, partitionCount) === p) return sku;
  }
  throw new Error(`no SKU ${prefix}-* in partition ${p}`);
}

/** `count` SKU names, each in a different ledger partition (count ≤ partitionCount). */
export function skusAcrossPartitions(prefix: string, count: number, partitionCount = 4): string[] {
  return Array.from({ length: count }, (_, p) => skuIn(prefix, p, partitionCount));
}

/** Strictly increasing, as every output's version must be for one key. */
export function expectIncreasing(versions: number[], what: string): void {
  for (let i = 1; i < versions.length; i++) {
    if (!((versions[i] as number) > (versions[i - 1] as number))) {
      throw new Error(`${what}: versions are not strictly increasing: ${JSON.stringify(versions)}`);
    }
  }
}
