import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { type Config, loadConfig } from "../../src/config/index.ts";
import { largestOutputItem, outputBounds } from "../../src/config/load.ts";
import { ErpCompactor, type ErpDocument } from "../../src/domain/erp/index.ts";
import { Ledger, type LineRequest, parseStockItems } from "../../src/domain/ledger/index.ts";
import { type Kit, type Network, networkLimits, parseNetwork } from "../../src/domain/network/index.ts";
import {
  type OrderInputLimits,
  type OutputKind,
  parseCancel,
  parseOrder,
  parseRejected,
  parseReturn,
  parseShipped,
  worstCaseOutputs,
} from "../../src/domain/orders/commands.ts";
import { kitPartId, type Order, Orders, type OrderView } from "../../src/domain/orders/index.ts";
import { erpMessages } from "../../src/stages/erp-window.ts";
import { decodePayload, pack } from "../../src/stream/codec.ts";
import { orderKey } from "../../src/stream/subjects.ts";

// Every output fits (issue #10, finding 2): the config refuses limits whose largest output item would not fit
// `streams.messageBytesMax` (src/config/load.ts, from the worst-case items of src/domain/orders/commands.ts).
// Here the real domain code (parsers, Orders, Ledger, ERP compaction) runs random orders whose ids, texts,
// line counts and quantities sit at their limits, and every item it puts in an output must encode to at most
// its kind's worst case, which the config relation has checked against messageBytesMax. Inputs one byte or
// one line over a limit must be refused.

const bytes = (s: string) => Buffer.byteLength(s, "utf8");

/** mulberry32: seeded, so a failure replays (SLUICE_OUTPUT_SEED). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const seed = Number(process.env.SLUICE_OUTPUT_SEED ?? Date.now() % 2 ** 31);

/** Characters that cost the most per UTF-8 byte in JSON (`"`, `\`), and 1- to 4-byte ones. */
const textChars = ['"', "\\", "a", "é", "€", "😀", "\u2028"];
/** Ids may also carry a lone surrogate (3 bytes, a 6-byte escape in JSON). */
const idChars = [...textChars, "\ud800"];

/** A string of exactly `n` UTF-8 bytes. */
function stringOf(next: () => number, n: number, chars: string[]): string {
  let out = "";
  let left = n;
  while (left > 0) {
    const fit = chars.filter((c) => bytes(c) <= left);
    const c = fit[Math.floor(next() * fit.length)] as string;
    out += c;
    left -= bytes(c);
  }
  return out;
}

/** Decoded as Sluice decodes a JSON payload. */
function wire(body: unknown): unknown {
  const d = decodePayload(new TextEncoder().encode(JSON.stringify(body)), "application/json");
  if (!d.ok) throw new Error(d.detail);
  return d.value;
}

function must<T>(p: { ok: true; value: T } | { ok: false; detail: string }): T {
  if (!p.ok) throw new Error(p.detail);
  return p.value;
}

const limitsOf = (c: Config): OrderInputLimits => ({
  quantityMax: c.ledger.quantityMax,
  idBytesMax: c.ledger.idBytesMax,
  linesPerOrderMax: c.orders.linesPerOrderMax,
  itemsPerMessageMax: c.ledger.itemsPerMessageMax,
  textBytesMax: c.orders.textBytesMax,
});

/** The worst case of each kind, encoded as the stages encode it; ERP documents also by document kind. */
function worstBytes(c: Config) {
  const byKind = new Map<OutputKind | "fulfilment item of plain lines", number>();
  const byDocument = new Map<string, number>();
  for (const o of worstCaseOutputs(outputBounds(c))) {
    const n = o.codec === "json" ? bytes(JSON.stringify(o.item)) : pack(o.item).length;
    byKind.set(o.kind, Math.max(byKind.get(o.kind) ?? 0, n));
    // The worst fulfilment item of plain lines alone: what an order without kits comes close to.
    const fulfilLines = (o.item as { type?: string; lines?: object[] }).lines ?? [];
    if (o.kind === "fulfilment item" && fulfilLines.every((l) => !("components" in l)))
      byKind.set(
        "fulfilment item of plain lines",
        Math.max(byKind.get("fulfilment item of plain lines") ?? 0, n),
      );
    const docs = (o.item as { documents?: ErpDocument[] }).documents ?? [];
    for (const d of docs)
      byDocument.set(d.kind, Math.max(byDocument.get(d.kind) ?? 0, bytes(JSON.stringify(d))));
  }
  return { byKind, byDocument };
}

class MemView implements OrderView {
  orders = new Map<string, Order>();
  getOrder = (key: string) => structuredClone(this.orders.get(key));
  getPendingCancels = () => [];
  dueTimers = () => [];
}

/** What one run measured: the largest encoding seen per kind. */
type Seen = Map<string, number>;

/**
 * Drives the order stage and the ledger in memory, as the two stages would, and measures every output item:
 * statuses and fulfilment items (JSON), line requests and results (msgpack), ERP documents in a batch.
 */
class Harness {
  readonly view = new MemView();
  readonly ledger = new Ledger();
  readonly orders: Orders;
  readonly seen: Seen = new Map();
  readonly erp = new ErpCompactor(
    { stage: "order", partition: 255, storeId: "abcd1234" },
    { windowMs: 0, movementKeysMax: 2000, documentsMax: 1 },
  );
  private seq = 1;

  constructor(
    readonly c: Config,
    /** Replaced by a kit run with a rule set listing its kits (an order's kits are frozen when it comes). */
    public network: Network,
    readonly worst: ReturnType<typeof worstBytes>,
  ) {
    this.orders = new Orders(
      this.view,
      () => this.network,
      {
        historyCountMax: 100,
        pendingCancelsPerOrderMax: 16,
        timersPerTickMax: 100,
        linesPerOrderMax: c.orders.linesPerOrderMax,
        idBytesMax: c.ledger.idBytesMax,
      },
      { stock: (sku) => this.ledger.get(sku)?.positions, load: () => 0 },
    );
  }

  get at() {
    return { seq: this.seq++, atMs: 1_900_000_000_000 + this.seq };
  }

  measure(kind: string, n: number, bound: number | undefined): void {
    expect(bound).toBeDefined();
    if (n > (bound as number)) throw new Error(`a ${kind} of ${n} bytes exceeds its worst case ${bound}`);
    expect(n + 16).toBeLessThanOrEqual(this.c.streams.messageBytesMax);
    this.seen.set(kind, Math.max(this.seen.get(kind) ?? 0, n));
  }

  /** Takes the order stage's changes, measures them and answers its ledger requests until none is left. */
  pump(): void {
    for (let round = 0; round < 10; round++) {
      const changes = this.orders.takeChanges();
      for (const o of changes.orders) this.view.orders.set(o.key, structuredClone(o));
      const { effects } = changes;
      for (const s of effects.statuses)
        this.measure(
          "order status item",
          bytes(JSON.stringify(s)),
          this.worst.byKind.get("order status item"),
        );
      for (const f of effects.fulfilment)
        this.measure("fulfilment item", bytes(JSON.stringify(f)), this.worst.byKind.get("fulfilment item"));
      for (const d of effects.erp) this.document(d);
      if (effects.ledger.length === 0) return;
      for (const r of effects.ledger) {
        this.measure("line request", pack(r).length, this.worst.byKind.get("line request"));
        this.ledger.applyLine(r as LineRequest, this.at);
      }
      const results = this.ledger.takeChanges().results;
      for (const r of results) {
        this.measure("line result", pack(r).length, this.worst.byKind.get("line result"));
        this.orders.ledgerResult(r, this.at);
      }
    }
    throw new Error("the order stage kept asking the ledger");
  }

  /** A document alone in an ERP batch, as erp-window.ts publishes it: one message, within the worst part. */
  private document(d: ErpDocument): void {
    this.measure(`ERP ${d.kind} document`, bytes(JSON.stringify(d)), this.worst.byDocument.get(d.kind));
    expect(this.erp.addDocument(d)).toBe(true);
    const batch = this.erp.close(this.seq, 1_900_000_000_000 + this.seq);
    expect(batch).not.toBeNull();
    for (const m of erpMessages(batch as NonNullable<typeof batch>, this.c.streams.messageBytesMax))
      this.measure("ERP batch part", m.data.length, this.worst.byKind.get("ERP batch part"));
  }
}

function networkOf(next: () => number, c: Config, count: number): Network {
  const idBytes = outputBounds(c).networkIdBytesMax;
  return must(
    parseNetwork(
      {
        warehouses: Array.from({ length: count }, (_, i) => ({
          id: `${i}${stringOf(next, idBytes - bytes(String(i)), idChars)}`,
          lat: next() * 180 - 90,
          lon: next() * 360 - 180,
          capacityPerDay: 10_000_000_000_000,
          carriers: [{ id: stringOf(next, idBytes, idChars), cutoff: "23:59", transitDays: 1 }],
        })),
        channels: [{ id: "*", backorder: false, split: "allow_partial" }],
      },
      "kv-18446744073709551615",
    ),
  );
}

/** An id of `bytes` UTF-8 bytes starting with `prefix`. */
const idOf = (next: () => number, prefix: string, n: number) =>
  `${prefix}${stringOf(next, n - bytes(prefix), idChars)}`;

type OrderLineInput = { lineId: string; sku: string; qty: number; price: number };

/**
 * The lines of one order: plain, or (`kitShape`, components per kit line) kit lines of a catalog made for
 * it and put in the harness's rule set. Kit SKUs at ledger.idBytesMax, components' SKUs at the rule set's
 * 256 bytes, kit line ids as long as their component ids (`<line id>#<n>`) allow. Every SKU gets stock.
 */
function orderLines(
  h: Harness,
  next: () => number,
  lineCount: number,
  kitShape?: number[],
): OrderLineInput[] {
  const c = h.c;
  const idMax = c.ledger.idBytesMax;
  const price = () => (next() < 0.5 ? next() * 1e-300 : next() * 1e6);
  let lines: OrderLineInput[];
  let skus: string[];
  if (kitShape === undefined) {
    lines = Array.from({ length: lineCount }, (_, i) => ({
      lineId: idOf(next, `l${i}.`, idMax),
      sku: idOf(next, `s${i}.`, idMax),
      qty: c.ledger.quantityMax - Math.floor(next() * 3),
      price: price(),
    }));
    skus = lines.map((l) => l.sku);
  } else {
    const networkIdBytes = outputBounds(c).networkIdBytesMax;
    const kits: Kit[] = kitShape.map((k, i) => {
      const per = 1 + Math.floor(next() * 3);
      return {
        sku: idOf(next, `k${i}.`, idMax),
        components: Array.from({ length: k }, (_, j) => ({
          sku: idOf(next, `${i}.${j}.`, networkIdBytes),
          qty: j === 0 ? 1 : per,
        })),
      };
    });
    h.network = { ...h.network, kits };
    lines = kits.map((kit, i) => {
      const suffix = bytes(kitPartId("", kit.components.length - 1));
      const perMax = Math.max(...kit.components.map((p) => p.qty));
      return {
        lineId: idOf(next, `l${i}.`, idMax - suffix),
        sku: kit.sku,
        qty: Math.max(1, Math.floor(c.ledger.quantityMax / perMax) - Math.floor(next() * 3)),
        price: price(),
      };
    });
    skus = kits.flatMap((k) => k.components.map((p) => p.sku));
  }
  for (const sku of skus)
    for (const w of h.network.warehouses)
      h.ledger.applyStock(
        sku,
        { type: "received", warehouse: w.id, qty: c.ledger.quantityMax, ref: null },
        h.at,
      );
  h.ledger.takeChanges();
  return lines;
}

/**
 * One order at the limits through its whole life: created, allocated and released; one warehouse rejects
 * its lines with a reason; shipped; a cancel after shipment (its detail names every line); returned. A second
 * order is cancelled before shipment (cancellation document, fulfilment cancel items). With `kitShape`, both
 * orders are made of kit lines (components per line), within orders.linesPerOrderMax ledger lines.
 */
function run(h: Harness, next: () => number, kitShape?: number[]): void {
  const c = h.c;
  const limits = limitsOf(c);
  const idMax = c.ledger.idBytesMax;
  const textMax = c.orders.textBytesMax;
  const id = (prefix: string) => idOf(next, prefix, idMax);
  const text = () => stringOf(next, textMax, textChars);
  const lineCount =
    next() < 0.7 ? c.orders.linesPerOrderMax : 1 + Math.floor(next() * c.orders.linesPerOrderMax);
  const channel = id("c");
  for (const [n, cancelEarly] of [
    [0, false],
    [1, true],
  ] as const) {
    const orderId = id(`o${n}`);
    const key = orderKey(channel, orderId);
    const lines = orderLines(h, next, lineCount, kitShape);
    const body = {
      lines,
      shipTo: { region: text(), zip: text(), lat: next() * 180 - 90, lon: next() * 360 - 180 },
      shipBy: "2099-12-31T23:59:59.999Z",
    };
    const input = must(parseOrder(channel, orderId, wire(body), limits));
    expect(h.orders.create(key, input, h.at)).toEqual({ ok: true, event: "created" });
    h.pump();
    if (cancelEarly) {
      const cancel = must(parseCancel(wire({ reason: text() }), limits));
      h.orders.cancel(
        key,
        { channel, orderId, lineIds: null, cause: "customer", reason: cancel.reason },
        h.at,
      );
      h.pump();
      continue;
    }
    const released = () => {
      const order = h.view.orders.get(key) as Order;
      const by = new Map<string, string[]>();
      for (const l of order.lines)
        if (l.state === "released")
          by.set(l.warehouse as string, [...(by.get(l.warehouse as string) ?? []), l.lineId]);
      return by;
    };
    if (kitShape !== undefined) {
      const order = h.view.orders.get(key) as Order;
      expect(order.lines.every((l) => l.kit !== undefined && l.state === "released")).toBe(true);
    }
    const [firstWarehouse, firstLines] = [...released().entries()][0] as [string, string[]];
    const rejectedBody = { channel, orderId, lines: firstLines, reason: text(), stockMissing: false };
    const rejected = must(parseRejected(firstWarehouse, wire(rejectedBody), limits));
    expect(h.orders.rejected(key, rejected, h.at).ok).toBe(true);
    h.pump();
    for (const [w, ids] of released()) {
      const shippedBody = {
        channel,
        orderId,
        shipmentId: id("shp"),
        lines: ids.map((lineId) => ({ lineId, qty: 1 })),
      };
      const shipped = must(parseShipped(w, wire(shippedBody), limits));
      expect(h.orders.shipped(key, shipped, h.at)).toEqual({ ok: true, event: "shipped" });
      h.pump();
    }
    // The rest of every line ships too, so that a cancel names them all in its detail.
    for (const [w, ids] of released()) {
      const order = h.view.orders.get(key) as Order;
      const rest = ids.map((lineId) => {
        const l = order.lines.find((x) => x.lineId === lineId) as Order["lines"][number];
        return { lineId, qty: l.qty - l.shippedQty };
      });
      const shipped = must(
        parseShipped(w, wire({ channel, orderId, shipmentId: id("shq"), lines: rest }), limits),
      );
      expect(h.orders.shipped(key, shipped, h.at).ok).toBe(true);
      h.pump();
    }
    const cancel = must(
      parseCancel(wire({ lines: input.lines.map((l) => l.lineId), reason: text() }), limits),
    );
    expect(
      h.orders.cancel(
        key,
        { channel, orderId, lineIds: cancel.lineIds, cause: "customer", reason: cancel.reason },
        h.at,
      ),
    ).toEqual({ ok: true, event: "cancel_refused" });
    h.pump();
    const returnBody = {
      returnId: id("r"),
      lines: input.lines.map((l, i) => ({
        lineId: l.lineId,
        qty: 1,
        disposition: "quality_control",
        warehouse: i % 2 === 0 ? id("w") : undefined,
      })),
    };
    const returned = must(parseReturn(channel, orderId, wire(returnBody), limits));
    expect(h.orders.returned(key, returned, h.at)).toEqual({ ok: true, event: "returned" });
    h.pump();
  }
  // The router's stock items (WMS received/counted, imports): ids and reference at the limit.
  const items = must(
    parseStockItems(
      wire({
        items: [
          { sku: id("k"), type: "received", warehouse: id("w"), qty: c.ledger.quantityMax, ref: id("ref") },
        ],
      }),
      limitsOf(c),
    ),
  );
  for (const item of items)
    h.measure("router stock item", pack(item).length, h.worst.byKind.get("router stock item"));
}

/** One byte or one line over each limit: refused, naming the limit. */
function overLimits(c: Config, next: () => number): void {
  const limits = limitsOf(c);
  const over = (n: number, chars: string[]) => stringOf(next, n + 1, chars);
  const line = { sku: "A", qty: 1 };
  const text = over(c.orders.textBytesMax, textChars);
  const refusal = (p: { ok: boolean; detail?: string }) => (p.ok ? "accepted" : p.detail);
  expect(refusal(parseCancel(wire({ reason: text }), limits))).toMatch(/orders\.textBytesMax/);
  expect(
    refusal(parseRejected("w", wire({ channel: "c", orderId: "o", lines: ["1"], reason: text }), limits)),
  ).toMatch(/orders\.textBytesMax/);
  for (const k of ["region", "zip"])
    expect(refusal(parseOrder("c", "o", wire({ lines: [line], shipTo: { [k]: text } }), limits))).toMatch(
      new RegExp(`shipTo\\.${k} .*orders\\.textBytesMax`),
    );
  const longId = over(c.ledger.idBytesMax, idChars);
  expect(refusal(parseOrder("c", "o", wire({ lines: [{ ...line, sku: longId }] }), limits))).toMatch(
    new RegExp(`at most ${c.ledger.idBytesMax} bytes`),
  );
  const tooMany = Array.from({ length: c.orders.linesPerOrderMax + 1 }, (_, i) => ({
    ...line,
    lineId: String(i),
  }));
  expect(refusal(parseOrder("c", "o", wire({ lines: tooMany }), limits))).toMatch(/orders\.linesPerOrderMax/);
  expect(
    refusal(parseOrder("c", "o", wire({ lines: [{ ...line, qty: c.ledger.quantityMax + 1 }] }), limits)),
  ).toMatch(/at most/);
}

/**
 * Kit orders past the bounds are refused at creation (invalid_command), naming the limit: a kit line whose
 * component ids would pass ledger.idBytesMax, and an order of more ledger lines (a kit line one per
 * component) than orders.linesPerOrderMax.
 */
function overKitLimits(h: Harness, next: () => number): void {
  const c = h.c;
  const n = c.orders.linesPerOrderMax;
  const k = Math.min(networkLimits.kitComponentsMax, n + 1);
  const create = (lines: OrderLineInput[]) => {
    const channel = idOf(next, "c", c.ledger.idBytesMax);
    const orderId = idOf(next, "x", c.ledger.idBytesMax);
    const input = must(parseOrder(channel, orderId, wire({ lines }), limitsOf(c)));
    const outcome = h.orders.create(orderKey(channel, orderId), input, h.at);
    h.orders.takeChanges();
    return outcome;
  };
  // Too many components in all: ⌈(n + 1) / k⌉ kit lines of k components (at most n lines).
  const many = orderLines(
    h,
    next,
    0,
    Array.from({ length: Math.ceil((n + 1) / k) }, () => k),
  );
  expect(many.length).toBeLessThanOrEqual(n);
  expect(create(many)).toMatchObject({ ok: false, reason: "invalid_command" });
  expect((create(many) as { detail: string }).detail).toMatch(/orders\.linesPerOrderMax/);
  // A kit line id at ledger.idBytesMax: its component ids would be 2 or 3 bytes over.
  const [kitLine] = orderLines(h, next, 0, [Math.min(k, n)]);
  const longId = { ...(kitLine as OrderLineInput), lineId: idOf(next, "L", c.ledger.idBytesMax) };
  const refused = create([longId]);
  expect(refused).toMatchObject({ ok: false, reason: "invalid_command" });
  expect((refused as { detail: string }).detail).toMatch(/ledger\.idBytesMax/);
}

const configs: Array<[string, Record<string, Record<string, unknown>>]> = [
  ["the defaults", {}],
  ["small limits", { orders: { linesPerOrderMax: 5, textBytesMax: 24 }, ledger: { idBytesMax: 12 } }],
  ["wide text, few lines", { orders: { linesPerOrderMax: 2, textBytesMax: 4096 } }],
  // The smallest messages these limits allow: the relation's own figure, so the run shows it is enough.
  ["messageBytesMax at the relation's figure", { orders: { linesPerOrderMax: 20, textBytesMax: 300 } }],
];

describe(`every output item fits (seed ${seed})`, () => {
  for (const [name, overrides] of configs) {
    test(`${name}: real outputs of orders at the limits stay within the worst case; over the limits is refused`, () => {
      let c = loadConfig({ env: {}, file: "config/sluice.toml", overrides });
      if (name.startsWith("messageBytesMax")) {
        const tight = largestOutputItem(c).bytes;
        c = loadConfig({
          env: {},
          file: "config/sluice.toml",
          overrides: { ...overrides, streams: { messageBytesMax: tight } },
        });
        expect(() =>
          loadConfig({
            env: {},
            file: "config/sluice.toml",
            overrides: { ...overrides, streams: { messageBytesMax: tight - 1 } },
          }),
        ).toThrow(/streams\.messageBytesMax/);
      }
      const next = rng(seed + name.length);
      const worst = worstBytes(c);
      const runs = c.orders.linesPerOrderMax > 50 ? 2 : 6;
      for (let i = 0; i < runs; i++) {
        const h = new Harness(c, networkOf(next, c, 2 + Math.floor(next() * 2)), worst);
        run(h, next);
        for (const kind of [
          "order status item",
          "fulfilment item",
          "line request",
          "line result",
          "ERP batch part",
        ])
          expect(h.seen.get(kind) ?? 0).toBeGreaterThan(0);
        overLimits(c, next);
      }
    }, 60_000);
  }

  test("the bound is tight: ids and text of '\"' only (2 JSON bytes each) come within 10% of it", () => {
    const c = loadConfig({
      env: {},
      file: "config/sluice.toml",
      overrides: { orders: { linesPerOrderMax: 40 } },
    });
    const quotes = () => 0; // stringOf picks the first character that fits: always '"'
    const worst = worstBytes(c);
    const h = new Harness(c, networkOf(quotes, c, 2), worst);
    run(h, quotes);
    for (const [kind, bound] of [
      ["order status item", "order status item"],
      ["fulfilment item", "fulfilment item of plain lines"],
    ] as const) {
      const seen = h.seen.get(kind) ?? 0;
      expect(seen / (worst.byKind.get(bound) as number)).toBeGreaterThan(0.9);
    }
  }, 60_000);

  test("a reservation request listing every warehouse of the largest rule set fits", () => {
    const c = loadConfig({
      env: {},
      file: "config/sluice.toml",
      overrides: { orders: { linesPerOrderMax: 1 } },
    });
    const next = rng(seed);
    const h = new Harness(c, networkOf(next, c, networkLimits.warehousesMax), worstBytes(c));
    const limits = limitsOf(c);
    const channel = stringOf(next, c.ledger.idBytesMax, idChars);
    const orderId = stringOf(next, c.ledger.idBytesMax, idChars);
    const sku = stringOf(next, c.ledger.idBytesMax, idChars);
    for (const w of h.network.warehouses)
      h.ledger.applyStock(sku, { type: "received", warehouse: w.id, qty: 5, ref: null }, h.at);
    h.ledger.takeChanges();
    const input = must(parseOrder(channel, orderId, wire({ lines: [{ sku, qty: 1 }] }), limits));
    h.orders.create(orderKey(channel, orderId), input, h.at);
    const reserve = h.orders.takeChanges().effects.ledger[0] as Extract<LineRequest, { kind: "reserve" }>;
    expect(reserve.candidates.length).toBe(networkLimits.warehousesMax);
    expect(pack(reserve).length).toBeLessThanOrEqual(h.worst.byKind.get("line request") as number);
  }, 60_000);

  // Kit lines (docs/kits.md): a fulfilment item lists each kit line's components, an ERP document one line per
  // component with its parent `kit`. An order takes at most orders.linesPerOrderMax ledger lines (a kit line
  // one per component), so the worst case holds whatever mix of kits an order has.
  const kitConfigs = configs.filter(([name]) => !name.startsWith("wide"));
  for (const [name, overrides] of kitConfigs) {
    test(`${name}: orders of kit lines (up to ${networkLimits.kitComponentsMax} components, the longest ids) stay within the worst case`, () => {
      let c = loadConfig({ env: {}, file: "config/sluice.toml", overrides });
      if (name.startsWith("messageBytesMax")) {
        const tight = largestOutputItem(c).bytes;
        c = loadConfig({
          env: {},
          file: "config/sluice.toml",
          overrides: { ...overrides, streams: { messageBytesMax: tight } },
        });
      }
      const worst = worstBytes(c);
      const n = c.orders.linesPerOrderMax;
      const k = Math.min(networkLimits.kitComponentsMax, n);
      // Components per kit line, at most n in all: the two extremes (n kits of 1; kits of k), then random mixes.
      const shape = fc.array(fc.integer({ min: 1, max: k }), { minLength: 1, maxLength: n }).map((ks) => {
        const out: number[] = [];
        let left = n;
        for (const x of ks) {
          if (x > left) break;
          out.push(x);
          left -= x;
        }
        return out.length > 0 ? out : [1];
      });
      const runs = n > 50 ? 2 : 4;
      const examples: Array<[number, number[]]> = [
        [seed, Array.from({ length: n }, () => 1)],
        [seed + 1, Array.from({ length: Math.floor(n / k) }, () => k)],
      ];
      fc.assert(
        fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), shape, (s, kitShape) => {
          const next = rng(s);
          const h = new Harness(c, networkOf(next, c, 2 + Math.floor(next() * 2)), worst);
          run(h, next, kitShape);
          for (const kind of ["fulfilment item", "line request", "line result", "ERP batch part"])
            expect(h.seen.get(kind) ?? 0).toBeGreaterThan(0);
          overKitLimits(h, next);
        }),
        { seed, numRuns: runs, examples },
      );
    }, 120_000);
  }

  test("the kit bound is tight: 1-component kit lines of '\"' ids come within 10% of the fulfilment worst case", () => {
    const c = loadConfig({
      env: {},
      file: "config/sluice.toml",
      overrides: { orders: { linesPerOrderMax: 40 } },
    });
    const quotes = () => 0;
    const worst = worstBytes(c);
    const h = new Harness(c, networkOf(quotes, c, 2), worst);
    run(
      h,
      quotes,
      Array.from({ length: c.orders.linesPerOrderMax }, () => 1),
    );
    const seen = h.seen.get("fulfilment item") ?? 0;
    expect(seen / (worst.byKind.get("fulfilment item") as number)).toBeGreaterThan(0.9);
  }, 60_000);
});
