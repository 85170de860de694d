// The hostile-input harness (issue 10). Generated inputs over every public subject, internal-looking subjects a
// hostile producer could hit, and the rule set (HTTP PUT and raw KV puts), interleaved with valid traffic whose
// effects are computed here exactly. Against a real nats-server and real LMDB it asserts:
//   (a) Sluice stays up: no fatal error, /readyz 200 at the end, the ledger consistent;
//   (b) every valid input is applied: orders reach their expected statuses, stock positions equal what the
//       valid commands imply (valid SKUs `V…`; prototype-name ids, which are valid ids, on their own SKUs);
//   (c) every input known to be invalid ends in SLUICE_DLQ (`sluice.dlq.<reason>`) with its reason, counted
//       per subject family; a rule set known to be invalid is refused (HTTP 400 with the field, or refused by
//       the watcher) and the rule set in force is unchanged.
// Seeded: the seed is printed; SLUICE_HOSTILE_SEED=<n> replays it. SLUICE_HOSTILE_MS sets the traffic time
// (default 3000 ms): `SLUICE_HOSTILE_MS=600000 bun test test/integration/hostile-input.test.ts`.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type ConsumerMessages, jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { headers as natsHeaders } from "@nats-io/transport-node";
import type { Order } from "../../src/domain/orders/index.ts";
import { deadLetterHeaders, deadLetterReasons } from "../../src/stream/dead-letter.ts";
import { encodeToken, skuPartition, streamNames, subjects } from "../../src/stream/subjects.ts";
import {
  badQuantities,
  controlChars,
  deepJson,
  deepMsgpack,
  idOfBytes,
  json,
  jsonWithToken,
  msgpack,
  nonFinite,
  nonFiniteTokens,
  pick,
  protoKeyBody,
  protoNames,
  Rng,
  textEncoder,
  truncated,
  unicodeNames,
  wrongContentTypes,
} from "../helpers/hostile.ts";
import { getJson } from "../helpers/index.ts";
import { Lifecycle, skuIn } from "../helpers/lifecycle.ts";

const seed = Number(process.env.SLUICE_HOSTILE_SEED ?? Math.floor(Math.random() * 2 ** 32)) >>> 0;
const trafficMs = Number(process.env.SLUICE_HOSTILE_MS ?? 3000);
console.log(
  `hostile-input: seed ${seed} (replay with SLUICE_HOSTILE_SEED=${seed}), traffic ${trafficMs} ms (SLUICE_HOSTILE_MS)`,
);
const rng = new Rng(seed);

const MiB = 1024 * 1024;
const P = 4;
// Raised to the largest allowed position (ledger.positionUnitsMax's ceiling), so that two commands overflow a
// position and a few warehouses of one SKU sum far past what a 32-bit or float-sloppy sum could hold.
const quantityMax = 10_000_000_000_000;
const caseHeader = "Hostile-Case";

// ---- the world ---------------------------------------------------------------------------------------------

/** Warehouses named like prototype properties: valid ids, listed in the rule set like any other. */
const protoWarehouses = ["constructor", "__proto__", "toString", "hasOwnProperty", "valueOf"];
/** Prototype-name SKUs that get stock (hostile but valid stock commands) and ones that never do (orders). */
const stockPool: string[] = [];
const noStockPool: string[] = [];
for (const [i, n] of protoNames.entries()) (i % 2 === 0 ? stockPool : noStockPool).push(n);
const accSku = stockPool.shift() as string; // the SKU whose positions are filled to the limit
const accWarehouse = "__proto__";
stockPool.push(...unicodeNames, idOfBytes(256, "max-"));
const idMax = 256;

/** Valid SKUs: exact expectations. V-* have orders; V-OVR/V-CNT get override/counted only. */
const vSkus = [0, 1, 2, 3].flatMap((p) => [skuIn("V", p, P), skuIn("VB", p, P)]);
const ovrSku = skuIn("V-OVR", 1, P);
const cntSku = skuIn("V-CNT", 2, P);

type Pos = { onHand: number; reserved: number; damaged: number; qualityControl: number; safetyStock: number };
const zeroPos = (): Pos => ({ onHand: 0, reserved: 0, damaged: 0, qualityControl: 0, safetyStock: 0 });
const validPos = new Map<string, Pos>([...vSkus, ovrSku, cntSku].map((s) => [s, zeroPos()]));
/** Units a new reservation (or hold, negative adjust, safety-stock raise) may take whatever the interleaving. */
const budget = new Map<string, number>(vSkus.map((s) => [s, 0]));
/** Hostile-but-valid stock: `${sku}\u0000${warehouse}` → onHand (received adds; a counted pair is frozen). */
const hostilePairs = new Map<string, { sku: string; warehouse: string; onHand: number; frozen: boolean }>();

type ExpectedOrder = {
  channel: string;
  orderId: string;
  status: Order["status"];
  lines: Array<{ lineId: string; sku: string; qty: number }>;
  fate: string;
};
const expectedOrders: ExpectedOrder[] = [];
const usedKeys = new Set<string>();
let keyCounter = 0;

/** A fresh (channel, orderId) pair, both prototype names or Unicode when possible. */
function freshKey(): { channel: string; orderId: string } {
  for (let i = 0; i < 20; i++) {
    const channel = rng.chance(0.8) ? pick(rng, protoNames) : pick(rng, unicodeNames);
    const orderId = rng.chance(0.8) ? pick(rng, protoNames) : pick(rng, unicodeNames);
    const k = `${channel}\u0000${orderId}`;
    if (!usedKeys.has(k)) {
      usedKeys.add(k);
      return { channel, orderId };
    }
  }
  const channel = pick(rng, protoNames);
  const orderId = `${pick(rng, protoNames)}-${keyCounter++}`;
  usedKeys.add(`${channel}\u0000${orderId}`);
  return { channel, orderId };
}

// ---- accounting ----------------------------------------------------------------------------------------------

type Known = {
  id: number;
  family: string;
  label: string;
  reasons: readonly string[];
  /** Too big for the stream: the publish may be refused (then it was never an input). */
  mayRefusePublish?: boolean;
  published?: boolean;
};
const known = new Map<number, Known>();
let caseCounter = 0;
const validSent = new Map<string, number>();
const countValid = (family: string) => validSent.set(family, (validSent.get(family) ?? 0) + 1);
const publishErrors: string[] = [];

/** Header-only tap on SLUICE_DLQ (long runs would not fit the payloads in memory). */
const dead = new Map<string, string[]>(); // case id → reasons seen
const deadOther: Array<{ reason: string; subject: string; detail: string }> = [];
const deadBadHeaders: string[] = [];
let dlqConsuming: ConsumerMessages | null = null;

let h: Lifecycle;

beforeAll(async () => {
  h = await Lifecycle.start(
    "hostile",
    [{ id: "*" }],
    {
      ledger: { quantityMax, positionUnitsMax: quantityMax },
      // No applied history kept: a long run (SLUICE_HOSTILE_MS) must stay inside the test server's store cap.
      streams: { dlqBytesMax: 96 * MiB, unroutedBytesMax: 64 * MiB, appliedHistoryMs: 0 },
    },
    [{ id: "w1" }, { id: "w2" }, ...protoWarehouses.map((id) => ({ id }))],
  );
  // The harness's own taps keep payloads; this test keeps headers only.
  h.out.stop();
  h.dlq.stop();
  const consumer = await h.producer.js.consumers.get(streamNames.dlq, { filter_subjects: subjects.dlqAll });
  dlqConsuming = await consumer.consume();
  (async () => {
    for await (const m of dlqConsuming as ConsumerMessages) {
      const reason = m.headers?.get(deadLetterHeaders.reason) ?? "";
      const suffix = m.subject.slice("sluice.dlq.".length);
      if (reason === "" || reason !== suffix || !(deadLetterReasons as readonly string[]).includes(reason)) {
        deadBadHeaders.push(`${m.subject} reason=${JSON.stringify(reason)}`);
      }
      const id = m.headers?.get(caseHeader) ?? "";
      if (id !== "") dead.set(id, [...(dead.get(id) ?? []), reason]);
      else
        deadOther.push({
          reason,
          subject: m.headers?.get(deadLetterHeaders.subject) ?? "",
          detail: m.headers?.get(deadLetterHeaders.detail) ?? "",
        });
    }
  })().catch(() => undefined);
}, 60_000);

afterAll(async () => {
  dlqConsuming?.stop();
  await h?.dispose();
});

// ---- publishing ------------------------------------------------------------------------------------------------

async function publishRaw(
  subject: string,
  data: Uint8Array,
  contentType: string | null,
  extra: Array<[string, string]> = [],
): Promise<void> {
  const hs = natsHeaders();
  if (contentType !== null) hs.set("Content-Type", contentType);
  for (const [k, v] of extra) hs.set(k, v);
  await h.producer.js.publish(subject, data, { headers: hs });
}

/** A valid input: must be accepted by JetStream (a refusal here fails the test). */
async function valid(family: string, subject: string, body: unknown, asMsgpack = false): Promise<void> {
  countValid(family);
  await publishRaw(
    subject,
    asMsgpack ? msgpack(body) : json(body),
    asMsgpack ? "application/msgpack" : "application/json",
  );
}

/** An input known to be invalid: it must end in the DLQ with one of `reasons`. */
async function invalid(
  family: string,
  label: string,
  subject: string,
  data: Uint8Array,
  contentType: string | null,
  reasons: readonly string[],
  mayRefusePublish = false,
): Promise<void> {
  const id = ++caseCounter;
  const k: Known = { id, family, label, reasons, mayRefusePublish };
  known.set(id, k);
  try {
    await publishRaw(subject, data, contentType, [[caseHeader, String(id)]]);
    k.published = true;
  } catch (error) {
    k.published = false;
    if (!mayRefusePublish) publishErrors.push(`${family} ${label}: ${(error as Error).message}`);
  }
}

const JSONCT = "application/json";
const MPCT = "application/msgpack";
const INV = ["invalid_command"] as const;
const DEC = ["decode_failed"] as const;
const INV_OR_DEC = ["invalid_command", "decode_failed"] as const;
const SUBJ = ["bad_subject"] as const;
const SUBJ_OR_INV = ["bad_subject", "invalid_command"] as const;

function textBytesMax(): number {
  const v = (h.config.orders as Record<string, unknown>).textBytesMax;
  return typeof v === "number" ? v : 1024; // orders.textBytesMax is being added; 1024 until it lands
}

/** Generic body-level attacks that make any JSON/msgpack input undecodable or invalid. */
async function bodyAttack(family: string, subject: string, good: Record<string, unknown>): Promise<void> {
  const which = rng.int(10);
  switch (which) {
    case 0:
      return invalid(family, "truncated JSON", subject, truncated(json(good), rng), JSONCT, DEC);
    case 1:
      return invalid(family, "truncated msgpack", subject, truncated(msgpack(good), rng), MPCT, INV_OR_DEC);
    case 2: {
      const ct = pick(rng, wrongContentTypes);
      return invalid(family, `Content-Type ${ct}`, subject, json(good), ct, DEC);
    }
    case 3:
      return invalid(
        family,
        "empty payload",
        subject,
        new Uint8Array(0),
        pick(rng, [JSONCT, MPCT, null]),
        DEC,
      );
    case 4: {
      const key = pick(rng, protoNames);
      return invalid(family, `unknown field ${key}`, subject, protoKeyBody(good, key), JSONCT, INV);
    }
    case 5: {
      const depth = pick(rng, [1000, 100_000]);
      return rng.chance(0.5)
        ? invalid(
            family,
            `deep JSON ${depth}`,
            subject,
            textEncoder.encode(`{"zz":${deepJson(depth)}}`),
            JSONCT,
            INV_OR_DEC,
          )
        : invalid(family, `deep msgpack ${depth}`, subject, deepMsgpack(depth), MPCT, INV_OR_DEC);
    }
    case 6: {
      const n = pick(rng, [50_000, 100_000]); // ~0.3 and ~0.6 MB: under streams.messageBytesMax
      return invalid(
        family,
        `array of ${n}`,
        subject,
        json(Array.from({ length: n }, (_, i) => i)),
        JSONCT,
        INV,
      );
    }
    case 7:
      return invalid(
        family,
        "not an object",
        subject,
        json(pick(rng, ["x", 5, null, true, []])),
        JSONCT,
        INV,
      );
    case 8:
      return invalid(
        family,
        "invalid UTF-8",
        subject,
        new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]),
        JSONCT,
        DEC,
      );
    default: {
      // Near the message limit: a padded invalid body just under it, or one just over (refused at publish).
      const limit = h.config.streams.messageBytesMax;
      const over = rng.chance(0.3);
      const target = over
        ? limit + (((h.config.streams as Record<string, unknown>).headerBytesMax as number) ?? 0) + 4096
        : limit - 512;
      const base = JSON.stringify({ ...good, pad: "" });
      const pad = "x".repeat(Math.max(0, target - base.length));
      const data = textEncoder.encode(JSON.stringify({ ...good, pad }));
      return invalid(
        family,
        over ? "over messageBytesMax" : "near messageBytesMax",
        subject,
        data,
        JSONCT,
        INV,
        over,
      );
    }
  }
}

// ---- stock commands ------------------------------------------------------------------------------------------------

const stockTypes = ["received", "counted", "override", "adjust", "hold", "unhold", "safety_stock"] as const;
const goodStock = (type: string, warehouse = "w1"): Record<string, unknown> => {
  switch (type) {
    case "received":
    case "adjust":
    case "safety_stock":
      return { type, warehouse, qty: 1 };
    case "counted":
      return { type, warehouse, onHand: 1 };
    case "override":
      return { type, warehouse, available: 1 };
    case "hold":
      return { type, warehouse, qty: 1, bucket: "damaged" };
    default:
      return { type, warehouse, qty: 1, bucket: "damaged", to: "available" };
  }
};
const qtyField = (type: string) =>
  type === "counted" ? "onHand" : type === "override" ? "available" : "qty";

/** An invalid stock command (any type) as a body. */
function badStockBody(): { label: string; data: Uint8Array; ct: string; reasons: readonly string[] } {
  const type = pick(rng, stockTypes);
  const good = goodStock(type, pick(rng, protoWarehouses));
  const field = qtyField(type);
  switch (rng.int(9)) {
    case 0: {
      const q = pick(rng, badQuantities(quantityMax));
      return {
        label: `${type} ${field}=${JSON.stringify(q)}`,
        data: json({ ...good, [field]: q }),
        ct: JSONCT,
        reasons: INV,
      };
    }
    case 1: {
      const q = pick(rng, nonFinite);
      return {
        label: `${type} ${field}=${q} (msgpack)`,
        data: msgpack({ ...good, [field]: q }),
        ct: MPCT,
        reasons: INV_OR_DEC,
      };
    }
    case 2: {
      const t = pick(rng, nonFiniteTokens);
      return {
        label: `${type} ${field}=${t} (JSON token)`,
        data: jsonWithToken(good, field, t),
        ct: JSONCT,
        reasons: DEC,
      };
    }
    case 3: {
      const t = pick(rng, protoNames);
      return { label: `type ${t}`, data: json({ ...good, type: t }), ct: JSONCT, reasons: INV };
    }
    case 4: {
      const w = rng.chance(0.5) ? `w${pick(rng, controlChars)}1` : idOfBytes(idMax + 1);
      return {
        label: `warehouse ${JSON.stringify(w).slice(0, 40)}`,
        data: json({ ...good, warehouse: w }),
        ct: JSONCT,
        reasons: INV,
      };
    }
    case 5: {
      const r = rng.chance(0.5) ? `ref${pick(rng, controlChars)}` : idOfBytes(idMax + 1);
      return { label: "bad ref", data: json({ ...good, ref: r }), ct: JSONCT, reasons: INV };
    }
    case 6: {
      const { [field]: _drop, ...rest } = good;
      return { label: `${type} without ${field}`, data: json(rest), ct: JSONCT, reasons: INV };
    }
    case 7: {
      // Duplicate keys, both values invalid: whichever a parser keeps, the command is invalid.
      const text = JSON.stringify(good).replace(/\}$/, `,"${field}":-0.5,"${field}":0.5}`);
      return {
        label: `${type} duplicate ${field}`,
        data: textEncoder.encode(text),
        ct: JSONCT,
        reasons: INV_OR_DEC,
      };
    }
    default: {
      if (type === "hold" || type === "unhold") {
        const key = rng.chance(0.5) ? "bucket" : "to";
        return {
          label: `${key}=${"constructor"}`,
          data: json({
            ...good,
            bucket: "damaged",
            [key]: pick(rng, ["constructor", "__proto__", "toString"]),
          }),
          ct: JSONCT,
          reasons: INV,
        };
      }
      const sign = type === "received" ? 0 : type === "adjust" ? 0 : -1;
      return {
        label: `${type} ${field}=${sign}`,
        data: json({ ...good, [field]: sign }),
        ct: JSONCT,
        reasons: INV,
      };
    }
  }
}

async function hostileStock(): Promise<void> {
  const family = "in.stock";
  const r = rng.int(10);
  if (r < 3) {
    // Valid: received on a prototype-name SKU at a prototype-name warehouse (or counted on a fresh pair).
    const sku = pick(rng, stockPool);
    const warehouse = pick(rng, [...protoWarehouses, ...protoNames.slice(0, 10)]);
    const pair = hostilePair(sku, warehouse);
    if (!pair.frozen && rng.chance(0.85)) {
      const qty = 1 + rng.int(1000);
      pair.onHand += qty;
      return valid(
        family,
        subjects.stockPublic(sku),
        { type: "received", warehouse, qty, ref: pick(rng, protoNames) },
        rng.chance(0.3),
      );
    }
    if (!pair.frozen && pair.onHand === 0) {
      const n = rng.int(50);
      pair.onHand = n;
      pair.frozen = true;
      return valid(family, subjects.stockPublic(sku), { type: "counted", warehouse, onHand: n });
    }
    return;
  }
  const sku = pick(rng, noStockPool);
  if (r < 7) {
    const b = badStockBody();
    return invalid(family, b.label, subjects.stockPublic(sku), b.data, b.ct, b.reasons);
  }
  if (r < 8) {
    // Bad SKU tokens: not canonical, neither plain nor encoded, control characters, over idBytesMax.
    switch (rng.int(4)) {
      case 0:
        return invalid(
          family,
          "non-canonical token",
          `sluice.in.stock.~${Buffer.from(sku).toString("base64url")}`,
          json(goodStock("received")),
          JSONCT,
          SUBJ,
        );
      case 1:
        return invalid(
          family,
          "token ~!",
          "sluice.in.stock.~U0t=",
          json(goodStock("received")),
          JSONCT,
          SUBJ,
        );
      case 2:
        return invalid(
          family,
          "control char SKU",
          subjects.stockPublic(`${sku}${pick(rng, controlChars)}`),
          json(goodStock("received")),
          JSONCT,
          SUBJ_OR_INV,
        );
      default:
        return invalid(
          family,
          "SKU over idBytesMax",
          subjects.stockPublic(idOfBytes(idMax + 1, sku)),
          json(goodStock("received")),
          JSONCT,
          SUBJ_OR_INV,
        );
    }
  }
  return bodyAttack(family, subjects.stockPublic(sku), goodStock(pick(rng, stockTypes)));
}

/** SKUs for the valid neighbours of an invalid item: whether they are applied is not checked (per-item or whole). */
const neighbourSku = () => `nb-${pick(rng, protoNames)}`;

function hostilePair(sku: string, warehouse: string) {
  const k = `${sku}\u0000${warehouse}`;
  let p = hostilePairs.get(k);
  if (p === undefined) {
    p = { sku, warehouse, onHand: 0, frozen: false };
    hostilePairs.set(k, p);
  }
  return p;
}

// ---- orders, cancels, returns -----------------------------------------------------------------------------------

const lineIdsFor = (n: number) =>
  Array.from({ length: n }, (_, i) =>
    i < protoNames.length ? (protoNames[i] as string) : `${pick(rng, protoNames)}#${i}`,
  );

async function hostileOrder(): Promise<void> {
  const family = "in.order";
  const { channel, orderId } = freshKey();
  const subject = subjects.orderPublic("order", channel, orderId);
  const r = rng.int(12);
  if (r < 3) {
    // Valid, on SKUs that never have stock: rejected. Some at exactly linesPerOrderMax lines.
    const n = rng.chance(0.15) ? h.config.orders.linesPerOrderMax : 1 + rng.int(3);
    const ids = lineIdsFor(n);
    const lines = ids.map((lineId) => ({
      lineId,
      sku: pick(rng, noStockPool),
      qty: 1 + rng.int(5),
      price: rng.int(1000) / 7,
    }));
    expectedOrders.push({ channel, orderId, status: "rejected", lines, fate: "no-stock" });
    return valid(
      family,
      subject,
      { lines, shipTo: { region: pick(rng, protoNames), zip: pick(rng, unicodeNames) } },
      rng.chance(0.3),
    );
  }
  const line = { lineId: pick(rng, protoNames), sku: pick(rng, noStockPool), qty: 1 };
  const good = { lines: [line] };
  switch (r) {
    case 3:
      return invalid(family, "lines: []", subject, json({ lines: [] }), JSONCT, INV);
    case 4: {
      const n = h.config.orders.linesPerOrderMax + 1;
      const lines = lineIdsFor(n).map((lineId) => ({ lineId, sku: line.sku, qty: 1 }));
      return invalid(family, `${n} lines`, subject, json({ lines }), JSONCT, INV);
    }
    case 5: {
      const q = pick(rng, [...badQuantities(quantityMax), 0, -1]);
      return invalid(
        family,
        `qty ${JSON.stringify(q)}`,
        subject,
        json({ lines: [{ ...line, qty: q }] }),
        JSONCT,
        INV,
      );
    }
    case 6:
      return invalid(family, "line named twice", subject, json({ lines: [line, { ...line }] }), JSONCT, INV);
    case 7: {
      const which = rng.int(6);
      const v = pick(rng, nonFinite);
      const body =
        which === 0
          ? { lines: [{ ...line, price: v }] }
          : which === 1
            ? { ...good, shipTo: { lat: v } }
            : which === 2
              ? { ...good, shipTo: { lon: v } }
              : which === 3
                ? { ...good, shipBy: v }
                : which === 4
                  ? { ...good, priority: v }
                  : { ...good, split: { maxShipments: v } };
      return invalid(
        family,
        `${["price", "shipTo.lat", "shipTo.lon", "shipBy", "priority", "split.maxShipments"][which]}=${v} (msgpack)`,
        subject,
        msgpack(body),
        MPCT,
        INV_OR_DEC,
      );
    }
    case 8: {
      const which = rng.int(5);
      const body =
        which === 0
          ? { lines: [{ ...line, sku: `s${pick(rng, controlChars)}` }] }
          : which === 1
            ? { lines: [{ ...line, sku: idOfBytes(idMax + 1) }] }
            : which === 2
              ? { lines: [{ ...line, lineId: idOfBytes(idMax + 1) }] }
              : which === 3
                ? { ...good, split: { mode: pick(rng, protoNames) } }
                : rng.chance(0.5)
                  ? { ...good, shipTo: { region: 5 } }
                  : { ...good, shipTo: { [pick(rng, ["region", "zip"])]: idOfBytes(textBytesMax() + 1) } };
      return invalid(family, `bad field #${which}`, subject, json(body), JSONCT, INV);
    }
    case 9: {
      // Ids on the subject: over the limit, control characters, not canonical.
      const which = rng.int(3);
      const subj =
        which === 0
          ? subjects.orderPublic("order", channel, idOfBytes(idMax + 1))
          : which === 1
            ? subjects.orderPublic("order", `c${pick(rng, controlChars)}`, orderId)
            : `sluice.in.order.~${Buffer.from(channel).toString("base64url")}.${encodeToken(orderId)}`;
      // a non-canonical token of a plain id; an encoded channel that is not plain is canonical, so force plain
      if (which === 2 && !/^[A-Za-z0-9_\-:@+,=]+$/.test(channel)) return;
      return invalid(
        family,
        `subject id #${which}`,
        subj,
        json(good),
        JSONCT,
        which === 2 ? SUBJ : SUBJ_OR_INV,
      );
    }
    case 10:
      return invalid(
        family,
        "duplicate lines keys",
        subject,
        textEncoder.encode(`{"lines":[],"lines":5}`),
        JSONCT,
        INV,
      );
    default:
      return bodyAttack(family, subject, good);
  }
}

async function hostileCancel(): Promise<void> {
  const family = "in.cancel";
  const target = expectedOrders.length > 0 && rng.chance(0.3) ? pick(rng, expectedOrders) : null;
  if (target !== null) {
    // A line the (already applied) order does not have: unknown_line, nothing cancelled. Cancels travel in
    // the answer stream, ahead of new orders: one that overtakes its order waits for it instead (pending).
    await h.waitOrder(target.channel, target.orderId, () => true, "the target order applied");
    const subject = subjects.orderPublic("cancel", target.channel, target.orderId);
    const missing = `${pick(rng, protoNames)}-missing`;
    return invalid(family, "unknown line", subject, json({ lines: [missing] }), JSONCT, ["unknown_line"]);
  }
  const { channel, orderId } = freshKey();
  const subject = subjects.orderPublic("cancel", channel, orderId);
  switch (rng.int(9)) {
    case 0: {
      // A cancel before its order is kept, up to orders.pendingCancelsPerOrderMax; one more is refused.
      const max = h.config.orders.pendingCancelsPerOrderMax;
      for (let i = 0; i < max; i++)
        await valid(family, subject, { lines: [pick(rng, protoNames)], reason: pick(rng, unicodeNames) });
      return invalid(family, `cancel #${max + 1} before the order`, subject, json({}), JSONCT, INV);
    }
    case 1:
      return invalid(
        family,
        "lines not an array",
        subject,
        json({ lines: pick(rng, ["1", 1, {}, null]) }),
        JSONCT,
        INV,
      );
    case 2:
      return invalid(family, "lines: []", subject, json({ lines: [] }), JSONCT, INV);
    case 3:
      return invalid(
        family,
        "line twice",
        subject,
        json({ lines: ["constructor", "constructor"] }),
        JSONCT,
        INV,
      );
    case 4:
      return invalid(
        family,
        "control char line",
        subject,
        json({ lines: [`a${pick(rng, controlChars)}`] }),
        JSONCT,
        INV,
      );
    case 5:
      return invalid(
        family,
        "reason not a string",
        subject,
        json({ reason: pick(rng, [5, {}, [], true]) }),
        JSONCT,
        INV,
      );
    case 6: {
      const n = textBytesMax();
      return invalid(
        family,
        `reason of ${n + 1} bytes (orders.textBytesMax)`,
        subject,
        json({ reason: idOfBytes(n + 1) }),
        JSONCT,
        INV,
      );
    }
    case 7:
      return invalid(
        family,
        "too many lines",
        subject,
        json({ lines: lineIdsFor(h.config.orders.linesPerOrderMax + 1) }),
        JSONCT,
        INV,
      );
    default:
      return bodyAttack(family, subject, { lines: ["1"] });
  }
}

async function hostileReturn(): Promise<void> {
  const family = "in.return";
  const shipped = expectedOrders.filter((o) => o.fate === "ship");
  if (shipped.length > 0 && rng.chance(0.25)) {
    // More than was shipped (and not returned): whatever the timing, invalid_transition.
    const o = pick(rng, shipped);
    const l = o.lines[0] as { lineId: string; qty: number };
    return invalid(
      family,
      "return more than shipped",
      subjects.orderPublic("return", o.channel, o.orderId),
      json({
        returnId: pick(rng, protoNames),
        lines: [{ lineId: l.lineId, qty: l.qty + 1, disposition: "sellable" }],
      }),
      JSONCT,
      ["invalid_transition"],
    );
  }
  const { channel, orderId } = freshKey();
  const subject = subjects.orderPublic("return", channel, orderId);
  const goodLine = { lineId: pick(rng, protoNames), qty: 1, disposition: "sellable" };
  const good = { returnId: pick(rng, protoNames), lines: [goodLine] };
  switch (rng.int(6)) {
    case 0:
      return invalid(family, "unknown order", subject, json(good), JSONCT, ["unknown_order"]);
    case 1:
      return invalid(
        family,
        "disposition constructor",
        subject,
        json({
          ...good,
          lines: [{ ...goodLine, disposition: pick(rng, ["constructor", "__proto__", "toString"]) }],
        }),
        JSONCT,
        INV,
      );
    case 2:
      return invalid(
        family,
        "qty NaN (msgpack)",
        subject,
        msgpack({ ...good, lines: [{ ...goodLine, qty: pick(rng, nonFinite) }] }),
        MPCT,
        INV_OR_DEC,
      );
    case 3:
      return invalid(
        family,
        "returnId over idBytesMax",
        subject,
        json({ ...good, returnId: idOfBytes(idMax + 1) }),
        JSONCT,
        INV,
      );
    case 4:
      return invalid(
        family,
        "warehouse control char",
        subject,
        json({ ...good, lines: [{ ...goodLine, warehouse: `w${pick(rng, controlChars)}` }] }),
        JSONCT,
        INV,
      );
    default:
      return bodyAttack(family, subject, good);
  }
}

// ---- WMS and imports --------------------------------------------------------------------------------------------

async function hostileWms(): Promise<void> {
  const warehouse = pick(rng, [...protoWarehouses, ...protoNames]);
  const r = rng.int(12);
  if (r < 3) {
    // Valid stock events at a prototype-name warehouse on prototype-name SKUs; sometimes itemsPerMessageMax items.
    const event = rng.chance(0.8) ? "received" : "counted";
    const family = `in.wms.${event}`;
    const big = rng.chance(0.05);
    const items: Array<Record<string, unknown>> = [];
    const seen = new Set<string>();
    const count = big ? h.config.ledger.itemsPerMessageMax : 1 + rng.int(5);
    for (let i = 0; i < count; i++) {
      const sku = big ? pick(rng, stockPool) : pick(rng, stockPool);
      const pair = hostilePair(sku, warehouse);
      if (pair.frozen) continue;
      if (event === "received") {
        const qty = 1 + rng.int(100);
        pair.onHand += qty;
        items.push({ sku, qty, ref: pick(rng, protoNames) });
      } else if (pair.onHand === 0 && !seen.has(sku)) {
        const n = rng.int(20);
        pair.onHand = n;
        pair.frozen = true;
        items.push({ sku, onHand: n });
      }
      seen.add(sku);
    }
    if (items.length === 0) return;
    return valid(family, subjects.wmsPublic(warehouse, event), { items });
  }
  if (r < 5) {
    const event = rng.chance(0.5) ? "received" : "counted";
    const family = `in.wms.${event}`;
    const subject = subjects.wmsPublic(warehouse, event);
    const item = event === "received" ? { sku: neighbourSku(), qty: 1 } : { sku: neighbourSku(), onHand: 1 };
    switch (rng.int(6)) {
      case 0:
        return invalid(family, "items: []", subject, json({ items: [] }), JSONCT, INV);
      case 1: {
        const n = h.config.ledger.itemsPerMessageMax + 1;
        return invalid(
          family,
          `${n} items`,
          subject,
          json({ items: Array.from({ length: n }, () => item) }),
          JSONCT,
          INV,
        );
      }
      case 2:
        return invalid(
          family,
          "item qty NaN (msgpack)",
          subject,
          msgpack({
            items: [item, { ...item, [event === "received" ? "qty" : "onHand"]: pick(rng, nonFinite) }],
          }),
          MPCT,
          INV_OR_DEC,
        );
      case 3:
        return invalid(
          family,
          "item sku control char",
          subject,
          json({ items: [{ ...item, sku: `s${pick(rng, controlChars)}` }] }),
          JSONCT,
          INV,
        );
      case 4:
        return invalid(
          family,
          "item unknown field",
          subject,
          json({ items: [{ ...item, [pick(rng, ["constructor", "toString", "valueOf"])]: 1 }] }),
          JSONCT,
          INV,
        );
      default:
        return bodyAttack(family, subject, { items: [item] });
    }
  }
  if (r < 9) {
    const event = rng.chance(0.6) ? "shipped" : "rejected";
    const family = `in.wms.${event}`;
    const subject = subjects.wmsPublic(warehouse, event);
    const { channel, orderId } = freshKey();
    const good =
      event === "shipped"
        ? {
            channel,
            orderId,
            shipmentId: pick(rng, protoNames),
            lines: [{ lineId: pick(rng, protoNames), qty: 1 }],
          }
        : { channel, orderId, lines: [pick(rng, protoNames)], reason: pick(rng, unicodeNames) };
    const target = expectedOrders.length > 0 && rng.chance(0.3) ? pick(rng, expectedOrders) : null;
    switch (rng.int(7)) {
      case 0:
        return invalid(family, "unknown order", subject, json(good), JSONCT, ["unknown_order"]);
      case 1:
        if (target === null) return;
        // WMS events travel in the answer stream, ahead of new orders: the target must be applied first.
        await h.waitOrder(target.channel, target.orderId, () => true, "the target order applied");
        return invalid(
          family,
          "unknown line",
          subject,
          json({
            ...good,
            channel: target.channel,
            orderId: target.orderId,
            ...(event === "shipped"
              ? { lines: [{ lineId: "no-such-line", qty: 1 }] }
              : { lines: ["no-such-line"] }),
          }),
          JSONCT,
          ["unknown_line", "invalid_transition"],
        );
      case 2:
        return invalid(
          family,
          "without channel",
          subject,
          json({ ...good, channel: undefined }),
          JSONCT,
          INV,
        );
      case 3:
        return invalid(
          family,
          "orderId control char",
          subject,
          json({ ...good, orderId: `o${pick(rng, controlChars)}` }),
          JSONCT,
          INV,
        );
      case 4:
        return event === "shipped"
          ? invalid(
              family,
              "qty Infinity (msgpack)",
              subject,
              msgpack({ ...good, lines: [{ lineId: "1", qty: pick(rng, nonFinite) }] }),
              MPCT,
              INV_OR_DEC,
            )
          : invalid(
              family,
              "stockMissing not boolean",
              subject,
              json({ ...good, stockMissing: "yes" }),
              JSONCT,
              INV,
            );
      case 5:
        return event === "shipped"
          ? invalid(
              family,
              "shipmentId over idBytesMax",
              subject,
              json({ ...good, shipmentId: idOfBytes(idMax + 1) }),
              JSONCT,
              INV,
            )
          : invalid(
              family,
              `reason over orders.textBytesMax`,
              subject,
              json({ ...good, reason: idOfBytes(textBytesMax() + 1) }),
              JSONCT,
              INV,
            );
      default:
        return bodyAttack(family, subject, good);
    }
  }
  const family = "in.wms.other";
  switch (rng.int(4)) {
    case 0: {
      const event = pick(rng, [...protoNames, "picked", "SHIPPED"]);
      return invalid(
        family,
        `event ${event}`,
        `sluice.in.wms.${encodeToken(warehouse)}.${encodeToken(event)}`,
        json({ items: [] }),
        JSONCT,
        ["unknown_kind"],
      );
    }
    case 1:
      return invalid(
        family,
        "warehouse over idBytesMax",
        subjects.wmsPublic(idOfBytes(idMax + 1), "received"),
        json({ items: [{ sku: "x", qty: 1 }] }),
        JSONCT,
        SUBJ_OR_INV,
      );
    case 2:
      return invalid(
        family,
        "warehouse control char",
        subjects.wmsPublic(`w${pick(rng, controlChars)}`, "received"),
        json({ items: [{ sku: "x", qty: 1 }] }),
        JSONCT,
        SUBJ_OR_INV,
      );
    default:
      return invalid(
        family,
        "extra token",
        `sluice.in.wms.${encodeToken(warehouse)}.shipped.x`,
        json({}),
        JSONCT,
        SUBJ,
      );
  }
}

async function hostileImport(): Promise<void> {
  const family = "in.import";
  const importId = `${pick(rng, [...protoNames, ...unicodeNames])}-${caseCounter}-${rng.int(1e9)}`;
  const subject = subjects.importPublic(importId);
  if (rng.chance(0.35)) {
    const items: Array<Record<string, unknown>> = [];
    for (let i = 1 + rng.int(4); i > 0; i--) {
      const sku = pick(rng, stockPool);
      const warehouse = pick(rng, protoWarehouses);
      const pair = hostilePair(sku, warehouse);
      if (pair.frozen) continue;
      const qty = 1 + rng.int(100);
      pair.onHand += qty;
      items.push({ sku, type: "received", warehouse, qty });
    }
    if (items.length === 0) return;
    return valid(family, subject, { items }, rng.chance(0.3));
  }
  const b = badStockBody();
  if (rng.chance(0.7)) {
    // One bad item among good ones (that must not be applied either: the whole message is refused).
    let decoded: Record<string, unknown> | null = null;
    try {
      decoded =
        b.ct === JSONCT
          ? JSON.parse(new TextDecoder().decode(b.data))
          : ((await import("../../src/stream/codec.ts")).unpack(b.data) as Record<string, unknown>);
    } catch {
      decoded = null;
    }
    if (decoded !== null && typeof decoded === "object") {
      const items = [
        { sku: neighbourSku(), type: "received", warehouse: "w1", qty: 1 },
        { sku: neighbourSku(), ...decoded },
      ];
      return invalid(
        family,
        `item: ${b.label}`,
        subject,
        b.ct === JSONCT ? json({ items }) : msgpack({ items }),
        b.ct,
        b.ct === JSONCT ? INV : INV_OR_DEC,
      );
    }
  }
  return bodyAttack(family, subject, { items: [{ sku: "x", type: "received", warehouse: "w1", qty: 1 }] });
}

// ---- subjects a producer should not use -------------------------------------------------------------------------

async function hostileInternal(): Promise<void> {
  const p = rng.int(P);
  const q = rng.int(P);
  const ref = {
    orderKey: `${encodeToken(pick(rng, protoNames))}.${encodeToken(pick(rng, protoNames))}`,
    lineId: pick(rng, protoNames),
  };
  const sku = pick(rng, noStockPool);
  const r = rng.int(8);
  if (r < 3) {
    const family = "ledger.cmd";
    const subject = subjects.ledgerCommands(p, q);
    const good = { kind: "reserve", ref, sku, attempt: 0, qty: 1, candidates: ["w1"] };
    const items = [
      { ...good, attempt: pick(rng, nonFinite) },
      { ...good, qty: pick(rng, nonFinite) },
      { ...good, kind: pick(rng, protoNames) },
      { ...good, ref: undefined },
      { ...good, candidates: "w1" },
      { ...good, keep: [Number.NaN] },
      { ...good, sku: idOfBytes(idMax + 1) },
      { ...good, candidates: [`w${pick(rng, controlChars)}`] },
    ];
    const which = rng.int(items.length + 2);
    if (which === items.length)
      return invalid(family, "not msgpack", subject, new Uint8Array([0xc1, 0xc1, 0xc1]), MPCT, INV_OR_DEC);
    if (which === items.length + 1)
      return invalid(
        family,
        "items not an array",
        subject,
        msgpack({ items: pick(rng, [5, "x", { a: 1 }, null]) }),
        MPCT,
        INV_OR_DEC,
      );
    return invalid(
      family,
      `line request #${which}`,
      subject,
      msgpack({ items: [items[which]] }),
      MPCT,
      INV_OR_DEC,
    );
  }
  if (r < 5) {
    const family = "order.result";
    const subject = subjects.orderResults(p, q);
    const good = { kind: "reserved", ref, sku, attempt: 0, warehouse: "w1", qty: 1 };
    const items = [
      { ...good, attempt: pick(rng, nonFinite) },
      { ...good, qty: pick(rng, nonFinite) },
      { ...good, kind: pick(rng, protoNames) },
      { ...good, warehouse: undefined },
      { kind: "refused", ref, sku, attempt: 0 },
      { ...good, ref: { orderKey: 5, lineId: "1" } },
    ];
    const which = rng.int(items.length + 1);
    if (which === items.length)
      return invalid(family, "deep msgpack", subject, deepMsgpack(100_000), MPCT, INV_OR_DEC);
    return invalid(
      family,
      `line result #${which}`,
      subject,
      msgpack({ items: [items[which]] }),
      MPCT,
      INV_OR_DEC,
    );
  }
  if (r < 7) {
    const family = "ledger.items";
    const subject = subjects.ledgerItems(p, pick(rng, ["wms", "import"]));
    const skuHere = pick(rng, noStockPool.filter((s) => skuPartition(s, P) === p).concat([]));
    if (skuHere === undefined) return;
    const b = badStockBody();
    let command: unknown;
    try {
      command = b.ct === JSONCT ? JSON.parse(new TextDecoder().decode(b.data)) : null;
    } catch {
      command = null;
    }
    if (command === null || typeof command !== "object")
      command = { type: pick(rng, protoNames), warehouse: "w1", qty: 1 };
    return invalid(
      family,
      `item: ${b.label}`,
      subject,
      msgpack({ items: [{ sku: skuHere, command }] }),
      MPCT,
      ["invalid_command", "refused"],
    );
  }
  const family = "internal.other";
  const kind = pick(rng, protoNames);
  return rng.chance(0.5)
    ? invalid(family, `ledger kind ${kind}`, `sluice.ledger.${p}.${encodeToken(kind)}.x`, json({}), JSONCT, [
        "unknown_kind",
        "bad_subject",
      ])
    : invalid(family, `order kind ${kind}`, `sluice.order.${p}.${encodeToken(kind)}.a.b`, json({}), JSONCT, [
        "unknown_kind",
        "bad_subject",
      ]);
}

async function hostileOtherIn(): Promise<void> {
  const family = "in.other";
  const name = pick(rng, protoNames);
  switch (rng.int(3)) {
    case 0:
      return invalid(family, `sluice.in.${name}`, `sluice.in.${encodeToken(name)}.x`, json({}), JSONCT, SUBJ);
    case 1:
      return invalid(
        family,
        "stock with two tokens",
        `sluice.in.stock.${encodeToken(name)}.x`,
        json(goodStock("received")),
        JSONCT,
        SUBJ,
      );
    default:
      return invalid(
        family,
        "order with one token",
        `sluice.in.order.${encodeToken(name)}`,
        json({ lines: [] }),
        JSONCT,
        SUBJ,
      );
  }
}

// ---- the valid traffic ------------------------------------------------------------------------------------------

const pendingCancels: ExpectedOrder[] = [];
const pendingShips: ExpectedOrder[] = [];
let shipCounter = 0;

async function validStep(): Promise<void> {
  const r = rng.int(20);
  const sku = pick(rng, vSkus);
  const pos = validPos.get(sku) as Pos;
  const free = budget.get(sku) as number;
  if (r < 5) {
    const qty = 1 + rng.int(20);
    pos.onHand += qty;
    budget.set(sku, free + qty);
    return valid(
      "in.stock",
      subjects.stockPublic(sku),
      { type: "received", warehouse: "w1", qty, ref: pick(rng, protoNames) },
      rng.chance(0.3),
    );
  }
  if (r < 6) {
    // Through the router: counted in the final position, never relied on for allocation (it may land late).
    const qty = 1 + rng.int(5);
    pos.onHand += qty;
    return rng.chance(0.5)
      ? valid("in.wms.received", subjects.wmsPublic("w1", "received"), { items: [{ sku, qty }] })
      : valid("in.import", subjects.importPublic(`valid-${pick(rng, protoNames)}-${rng.int(1e9)}`), {
          items: [{ sku, type: "received", warehouse: "w1", qty }],
        });
  }
  if (r < 12) {
    const n = 1 + rng.int(3);
    const skus = [...new Set(Array.from({ length: n }, () => pick(rng, vSkus)))];
    const ids = lineIdsFor(skus.length);
    const lines = skus.map((s, i) => ({ lineId: ids[i] as string, sku: s, qty: 1 + rng.int(4) }));
    if (!lines.every((l) => l.qty <= (budget.get(l.sku) as number))) return;
    for (const l of lines) {
      budget.set(l.sku, (budget.get(l.sku) as number) - l.qty);
      (validPos.get(l.sku) as Pos).reserved += l.qty;
    }
    const { channel, orderId } = freshKey();
    const fate = pick(rng, ["keep", "keep", "cancel", "ship"]);
    const o: ExpectedOrder = {
      channel,
      orderId,
      lines,
      fate,
      status: fate === "keep" ? "allocated" : fate === "cancel" ? "cancelled" : "shipped",
    };
    expectedOrders.push(o);
    if (fate === "cancel") pendingCancels.push(o);
    if (fate === "ship") pendingShips.push(o);
    return valid(
      "in.order",
      subjects.orderPublic("order", channel, orderId),
      { lines: lines.map((l) => ({ ...l, price: 9.9 })) },
      rng.chance(0.3),
    );
  }
  if (r < 13) {
    const { channel, orderId } = freshKey();
    const lines = [{ lineId: pick(rng, protoNames), sku, qty: 1_000_000_000 }];
    expectedOrders.push({ channel, orderId, lines, fate: "huge", status: "rejected" });
    return valid("in.order", subjects.orderPublic("order", channel, orderId), { lines });
  }
  if (r < 14 && pendingCancels.length > 0) {
    const o = pendingCancels.shift() as ExpectedOrder;
    for (const l of o.lines) {
      (validPos.get(l.sku) as Pos).reserved -= l.qty;
      budget.set(l.sku, (budget.get(l.sku) as number) + l.qty);
    }
    return valid(
      "in.cancel",
      subjects.orderPublic("cancel", o.channel, o.orderId),
      rng.chance(0.5) ? {} : { reason: pick(rng, unicodeNames) },
    );
  }
  if (r < 16) {
    // Every other stock command type on the valid SKUs, within what the budget guarantees.
    const t = rng.int(5);
    if (t === 0 && free > 0) {
      const qty = 1 + rng.int(Math.min(free, 3));
      const bucket = pick(rng, ["damaged", "quality_control"] as const);
      budget.set(sku, free - qty);
      if (bucket === "damaged") pos.damaged += qty;
      else pos.qualityControl += qty;
      return valid("in.stock", subjects.stockPublic(sku), { type: "hold", warehouse: "w1", qty, bucket });
    }
    if (t === 1 && pos.damaged + pos.qualityControl > 0) {
      const bucket = pos.damaged > 0 ? "damaged" : "quality_control";
      const held = bucket === "damaged" ? pos.damaged : pos.qualityControl;
      const qty = 1 + rng.int(held);
      const to = pick(rng, ["available", "scrap"] as const);
      if (bucket === "damaged") pos.damaged -= qty;
      else pos.qualityControl -= qty;
      if (to === "available") budget.set(sku, free + qty);
      else pos.onHand -= qty;
      return valid("in.stock", subjects.stockPublic(sku), {
        type: "unhold",
        warehouse: "w1",
        qty,
        bucket,
        to,
      });
    }
    if (t === 2) {
      const qty = rng.chance(0.5) || free === 0 ? 1 + rng.int(5) : -(1 + rng.int(Math.min(free, 3)));
      pos.onHand += qty;
      budget.set(sku, free + qty);
      return valid("in.stock", subjects.stockPublic(sku), { type: "adjust", warehouse: "w1", qty });
    }
    if (t === 3 && free > 0) {
      const d = 1 + rng.int(Math.min(free, 2));
      pos.safetyStock += d;
      budget.set(sku, free - d);
      return valid("in.stock", subjects.stockPublic(sku), {
        type: "safety_stock",
        warehouse: "w1",
        qty: pos.safetyStock,
      });
    }
    if (rng.chance(0.5)) {
      const p = validPos.get(ovrSku) as Pos;
      if (p.onHand === 0) {
        p.onHand = 10 + rng.int(10);
        return valid("in.stock", subjects.stockPublic(ovrSku), {
          type: "received",
          warehouse: "w1",
          qty: p.onHand,
        });
      }
      p.onHand = rng.int(30);
      return valid("in.stock", subjects.stockPublic(ovrSku), {
        type: "override",
        warehouse: "w1",
        available: p.onHand,
      });
    }
    const c = validPos.get(cntSku) as Pos;
    c.onHand = rng.int(30);
    return valid("in.stock", subjects.stockPublic(cntSku), {
      type: "counted",
      warehouse: "w1",
      onHand: c.onHand,
      ref: pick(rng, protoNames),
    });
  }
  if (r < 18 && pendingShips.length > 0) await tryShip(pendingShips.shift() as ExpectedOrder);
}

/** Ships an order (fate "ship") once it is allocated; put back otherwise. */
async function tryShip(o: ExpectedOrder): Promise<boolean> {
  const got = await h.getOrder(o.channel, o.orderId);
  if (got === null || got.status !== "allocated") {
    pendingShips.push(o);
    return false;
  }
  for (const l of o.lines) {
    const pos = validPos.get(l.sku) as Pos;
    pos.onHand -= l.qty;
    pos.reserved -= l.qty;
  }
  await valid("in.wms.shipped", subjects.wmsPublic("w1", "shipped"), {
    channel: o.channel,
    orderId: o.orderId,
    shipmentId: `${pick(rng, protoNames)}-${shipCounter++}`,
    lines: o.lines.map((l) => ({ lineId: l.lineId, qty: l.qty })),
  });
  return true;
}

// ---- rule sets ------------------------------------------------------------------------------------------------------

type RulesOutcome = { label: string; problem: string | null };
const rulesOutcomes: RulesOutcome[] = [];
let inForce = "";

/** A valid rule set with prototype-name warehouses, channels, minStock and marketplaceHeld keys. */
function validRules(): Record<string, unknown> {
  const minStock = Object.fromEntries([
    ["__proto__", 0],
    ["constructor", 0],
    [pick(rng, protoNames), 0],
  ]);
  const extra = rng.chance(0.5) ? [{ id: idOfBytes(idMax, "wh-"), channels: ["*"] }] : [];
  return {
    routing: { loadWeight: 0, stockWeight: 0 },
    warehouses: [
      { id: "w1", channels: ["*"], minStock },
      { id: "w2", channels: ["*"] },
      ...protoWarehouses.map((id) => ({ id, channels: ["*", pick(rng, protoNames)], minStockDefault: 0 })),
      ...extra,
    ],
    channels: [
      { id: "*" },
      {
        id: "__proto__",
        marketplaceHeld: Object.fromEntries([
          ["__proto__", 0],
          ["toString", 0],
        ]),
      },
      {
        id: pick(
          rng,
          protoNames.filter((n) => n !== "__proto__"),
        ),
        warehouses: ["*"],
      },
    ],
  };
}

function invalidRules(): { label: string; body: string; contentType: string } {
  const base = validRules();
  const ws = base.warehouses as Array<Record<string, unknown>>;
  const j = (v: unknown) => JSON.stringify(v);
  const cases: Array<() => { label: string; body: string; contentType: string }> = [
    () => ({ label: "truncated JSON", body: j(base).slice(0, 40), contentType: JSONCT }),
    () => ({
      label: "NaN token",
      body: j({ ...base, routing: { distanceWeight: "\u0000" } }).replace('"\\u0000"', "NaN"),
      contentType: JSONCT,
    }),
    () => ({
      label: "TOML nan weight",
      body: "[routing]\ndistanceWeight = nan\n",
      contentType: "application/toml",
    }),
    () => ({
      label: "TOML inf capacity",
      body: '[[warehouses]]\nid = "w1"\ncapacityPerDay = inf\n',
      contentType: "application/toml",
    }),
    () => ({
      label: "TOML -inf lat",
      body: '[[warehouses]]\nid = "w1"\nlat = -inf\n',
      contentType: "application/toml",
    }),
    () => ({
      label: "warehouse id with a control character",
      body: j({ ...base, warehouses: [...ws, { id: `w${pick(rng, controlChars)}x` }] }),
      contentType: JSONCT,
    }),
    () => ({
      label: "warehouse id over idBytesMax",
      body: j({ ...base, warehouses: [...ws, { id: idOfBytes(idMax + 1) }] }),
      contentType: JSONCT,
    }),
    () => ({
      label: "channel id with a control character",
      body: j({ ...base, channels: [{ id: "*" }, { id: `c${pick(rng, controlChars)}` }] }),
      contentType: JSONCT,
    }),
    () => ({
      label: "257 warehouses",
      body: j({ ...base, warehouses: Array.from({ length: 257 }, (_, i) => ({ id: `w${i}` })) }),
      contentType: JSONCT,
    }),
    () => ({
      label: "17 carriers",
      body: j({
        ...base,
        warehouses: [
          {
            id: "w1",
            carriers: Array.from({ length: 17 }, (_, i) => ({
              id: `c${i}`,
              cutoff: "10:00",
              transitDays: 1,
            })),
          },
        ],
      }),
      contentType: JSONCT,
    }),
    () => ({
      label: "warehouse constructor twice",
      body: j({ ...base, warehouses: [...ws, { id: "constructor" }] }),
      contentType: JSONCT,
    }),
    () => ({ label: "deep nesting", body: `{"warehouses":${deepJson(100_000)}}`, contentType: JSONCT }),
    () => ({ label: "routing.__proto__", body: `{"routing":{"__proto__":1}}`, contentType: JSONCT }),
    () => ({
      label: "channel field constructor",
      body: j({ ...base, channels: [{ id: "*", constructor: 1 }] }),
      contentType: JSONCT,
    }),
    () => ({ label: "body is an array", body: j([base]), contentType: JSONCT }),
    () => ({
      label: "minStock __proto__ = -1",
      body: '{"warehouses":[{"id":"w1","minStock":{"__proto__":-1}}]}',
      contentType: JSONCT,
    }),
    () => ({ label: "TOML body as JSON", body: '[[warehouses]]\nid = "w1"\n', contentType: JSONCT }),
    () => ({ label: "empty body", body: "", contentType: JSONCT }),
    () => ({
      label: "duplicate keys, both invalid",
      body: '{"warehouses":5,"warehouses":"x"}',
      contentType: JSONCT,
    }),
    () => ({
      label: "capacityPerDay 1.5",
      body: j({ ...base, warehouses: [{ id: "w1", capacityPerDay: 1.5 }] }),
      contentType: JSONCT,
    }),
    () => ({
      label: "minStock 100001 SKUs",
      body: j({
        ...base,
        warehouses: [
          { id: "w1", minStock: Object.fromEntries(Array.from({ length: 100_001 }, (_, i) => [`s${i}`, 1])) },
        ],
      }),
      contentType: JSONCT,
    }),
  ];
  return pick(rng, cases)();
}

async function putRules(body: string, contentType: string) {
  const res = await fetch(`${h.base}/v1/rules`, {
    method: "PUT",
    headers: { "Content-Type": contentType },
    body,
  });
  const text = await res.text();
  let parsed: Record<string, unknown> = {};
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = { unparsable: text.slice(0, 200) };
  }
  return { status: res.status, body: parsed };
}

async function rulesInForce(): Promise<{ inForce: string; refusal: { revision: number } | null }> {
  const r = await getJson(`${h.base}/v1/rules`);
  return r.body;
}

async function hostileRules(): Promise<void> {
  const r = rng.int(10);
  if (r < 3) {
    const body = validRules();
    const res = await putRules(JSON.stringify(body), JSONCT);
    if (res.status !== 200) {
      rulesOutcomes.push({
        label: "valid prototype-name rule set (PUT)",
        problem: `refused: ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`,
      });
      return;
    }
    const version = res.body.version as string;
    try {
      await waitForRules((s) => s.inForce === version, `rules ${version} in force`);
      inForce = version;
      rulesOutcomes.push({ label: "valid prototype-name rule set (PUT)", problem: null });
    } catch (error) {
      rulesOutcomes.push({ label: "valid prototype-name rule set (PUT)", problem: (error as Error).message });
    }
    return;
  }
  if (r < 7) {
    const c = invalidRules();
    const before = (await rulesInForce()).inForce;
    const res = await putRules(c.body, c.contentType);
    const after = (await rulesInForce()).inForce;
    const detail = typeof res.body.detail === "string" ? res.body.detail : "";
    const problem =
      res.status !== 400
        ? `answered ${res.status} ${JSON.stringify(res.body).slice(0, 200)}`
        : res.body.error !== "invalid_rules" || detail === "" || typeof res.body.fix !== "string"
          ? `400 without error/detail/fix: ${JSON.stringify(res.body).slice(0, 200)}`
          : after !== before
            ? `rules in force changed ${before} → ${after}`
            : null;
    rulesOutcomes.push({ label: `PUT ${c.label}`, problem });
    if (res.status === 200) {
      // Written: put a valid one back so that the valid traffic is routed as designed.
      await restoreRules();
    }
    return;
  }
  // A raw put into the KV bucket, bypassing validation: the watcher must refuse it and keep the rule set in force.
  const c = invalidRules();
  if (c.contentType !== JSONCT || c.label === "TOML body as JSON" || c.body === "") return;
  const before = (await rulesInForce()).inForce;
  const kv = await new Kvm(jetstream(h.producer.nc)).open(h.config.routing.rulesBucket);
  const revision = await kv.put("network", textEncoder.encode(c.body));
  try {
    const s = await waitForRules(
      (x) => (x.refusal?.revision ?? 0) >= revision || x.inForce === `kv-${revision}`,
      `raw put ${revision} seen`,
    );
    rulesOutcomes.push({
      label: `raw KV ${c.label}`,
      problem:
        s.inForce !== before
          ? `rules in force changed ${before} → ${s.inForce} (revision ${revision} taken)`
          : null,
    });
    if (s.inForce !== before) await restoreRules();
  } catch (error) {
    rulesOutcomes.push({ label: `raw KV ${c.label}`, problem: (error as Error).message });
  }
}

async function restoreRules(): Promise<void> {
  const res = await putRules(JSON.stringify(validRules()), JSONCT);
  if (res.status === 200) {
    const v = res.body.version as string;
    await waitForRules((s) => s.inForce === v, `rules ${v} in force`).catch(() => undefined);
    inForce = v;
  }
}

async function waitForRules(
  done: (s: { inForce: string; refusal: { revision: number } | null }) => boolean,
  what: string,
) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const s = await rulesInForce();
    if (done(s)) return s;
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what} (last ${JSON.stringify(s).slice(0, 200)})`);
    await Bun.sleep(25);
  }
}

// ---- the run ----------------------------------------------------------------------------------------------------------

const hostileSteps: Array<[() => Promise<void>, number]> = [
  [hostileStock, 4],
  [hostileOrder, 3],
  [hostileCancel, 2],
  [hostileReturn, 1],
  [hostileWms, 3],
  [hostileImport, 2],
  [hostileInternal, 2],
  [hostileOtherIn, 1],
];
const hostileWeight = hostileSteps.reduce((n, [, w]) => n + w, 0);

async function hostileStep(): Promise<void> {
  let u = rng.float() * hostileWeight;
  for (const [f, w] of hostileSteps) {
    if (u < w) return f();
    u -= w;
  }
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length))) ?? [];
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i] as number)).join("  ")).join("\n");
}

describe("hostile input: every public subject, internal subjects and the rule set", () => {
  test(
    "Sluice stays up, applies every valid input and dead-letters every known-invalid one",
    async () => {
      // Accumulation: a full position at several warehouses (valid), then one more unit past the position's
      // limit (refused), and a quantity past 2^53 (refused whatever the limits).
      // Distinct warehouses: accWarehouse is one of protoWarehouses, and a second fill would be over the limit.
      for (const w of new Set([accWarehouse, ...protoWarehouses.slice(0, 3)])) {
        await valid("in.stock", subjects.stockPublic(accSku), {
          type: "received",
          warehouse: w,
          qty: quantityMax,
        });
        hostilePair(accSku, w).onHand = quantityMax;
        hostilePair(accSku, w).frozen = true;
      }
      await invalid(
        "in.stock",
        "received past positionUnitsMax",
        subjects.stockPublic(accSku),
        json({ type: "received", warehouse: accWarehouse, qty: quantityMax }),
        JSONCT,
        ["refused", "invalid_command"],
      );
      await invalid(
        "in.stock",
        "received 2^53 + 2",
        subjects.stockPublic(accSku),
        json({ type: "received", warehouse: accWarehouse, qty: 2 ** 53 + 2 }),
        JSONCT,
        INV,
      );
      await invalid(
        "in.stock",
        "adjust past positionUnitsMax",
        subjects.stockPublic(accSku),
        json({ type: "adjust", warehouse: protoWarehouses[0], qty: quantityMax }),
        JSONCT,
        ["refused", "invalid_command"],
      );

      const started = Date.now();
      let steps = 0;
      let lastRules = 0;
      while (Date.now() - started < trafficMs) {
        steps++;
        if (rng.chance(0.45)) await validStep();
        else await hostileStep();
        if (Date.now() - lastRules > 150) {
          lastRules = Date.now();
          await hostileRules();
        }
      }
      // Drain: cancels not sent yet, then ship every "ship" order once allocated.
      while (pendingCancels.length > 0) {
        const o = pendingCancels.shift() as ExpectedOrder;
        for (const l of o.lines) (validPos.get(l.sku) as Pos).reserved -= l.qty;
        await valid("in.cancel", subjects.orderPublic("cancel", o.channel, o.orderId), {});
      }
      const shipDeadline = Date.now() + 20_000;
      while (pendingShips.length > 0 && Date.now() < shipDeadline) {
        const o = pendingShips.shift() as ExpectedOrder;
        if (!(await tryShip(o))) await Bun.sleep(10);
      }
      const unshipped = pendingShips.splice(0).map((o) => `${o.channel}/${o.orderId}`);
      await h.quiesce(30_000);
      await Bun.sleep(300); // the DLQ tap catches up with what the last batches published

      const failures: string[] = [];
      const note = (s: string) => failures.push(s);

      // (a) up
      if (h.fatal.length > 0) note(`fatal errors: ${h.fatal.map((e) => e.message).join(" | ")}`);
      const ready = await getJson(`${h.base}/readyz`);
      if (ready.status !== 200) note(`/readyz ${ready.status}: ${JSON.stringify(ready.body)}`);
      const check = await getJson(`${h.base}/v1/ledger/check`);
      if (check.status !== 200 || check.body.consistent !== true)
        note(`ledger check: ${JSON.stringify(check.body).slice(0, 500)}`);
      if (publishErrors.length > 0) note(`publishes refused: ${publishErrors.slice(0, 5).join(" | ")}`);

      // (b) every valid input applied
      if (unshipped.length > 0)
        note(`orders never allocated, so never shipped: ${unshipped.slice(0, 5).join(", ")}`);
      const wrongOrders: string[] = [];
      for (const o of expectedOrders) {
        const got = await h.getOrder(o.channel, o.orderId);
        if (got === null)
          wrongOrders.push(`${JSON.stringify(o.channel)}/${JSON.stringify(o.orderId)} (${o.fate}): missing`);
        else if (got.status !== o.status)
          wrongOrders.push(
            `${JSON.stringify(o.channel)}/${JSON.stringify(o.orderId)} (${o.fate}, ${o.lines.length} lines): ${got.status}, expected ${o.status}`,
          );
      }
      if (wrongOrders.length > 0)
        note(
          `${wrongOrders.length}/${expectedOrders.length} orders off: ${wrongOrders.slice(0, 8).join("; ")}`,
        );
      const wrongStock: string[] = [];
      const own = (o: unknown, k: string) =>
        o !== null && typeof o === "object" ? Object.getOwnPropertyDescriptor(o, k)?.value : undefined;
      for (const [sku, e] of validPos) {
        const s = await h.getStock(sku);
        const got = own(s?.positions, "w1") ?? {};
        const want = {
          ...e,
          available: e.onHand - e.reserved - e.damaged - e.qualityControl - e.safetyStock,
        };
        for (const [k, v] of Object.entries(want))
          if (got[k] !== v && !(v === 0 && got[k] === undefined))
            wrongStock.push(`${sku}@w1.${k}: ${got[k]}, expected ${v}`);
      }
      for (const p of hostilePairs.values()) {
        const s = await h.getStock(p.sku);
        const got = own(own(s, "positions"), p.warehouse);
        const onHand = got?.onHand ?? 0;
        if (onHand !== p.onHand)
          wrongStock.push(
            `${JSON.stringify(p.sku).slice(0, 40)}@${JSON.stringify(p.warehouse)}.onHand: ${onHand}, expected ${p.onHand}`,
          );
      }
      if (wrongStock.length > 0)
        note(`${wrongStock.length} stock figures off: ${wrongStock.slice(0, 8).join("; ")}`);

      // (c) every known-invalid input dead-lettered, with its reason
      const perFamily = new Map<
        string,
        {
          valid: number;
          invalid: number;
          dead: number;
          missing: number;
          wrongReason: number;
          refusedAtPublish: number;
        }
      >();
      const row = (f: string) => {
        let r = perFamily.get(f);
        if (r === undefined) {
          r = {
            valid: validSent.get(f) ?? 0,
            invalid: 0,
            dead: 0,
            missing: 0,
            wrongReason: 0,
            refusedAtPublish: 0,
          };
          perFamily.set(f, r);
        }
        return r;
      };
      for (const f of validSent.keys()) row(f);
      const missing: string[] = [];
      const wrongReason: string[] = [];
      const duplicated: string[] = [];
      for (const k of known.values()) {
        const r = row(k.family);
        r.invalid++;
        if (k.published === false) {
          r.refusedAtPublish++;
          continue;
        }
        const reasons = dead.get(String(k.id)) ?? [];
        if (reasons.length === 0) {
          r.missing++;
          missing.push(`${k.family}: ${k.label}`);
        } else {
          r.dead++;
          if (!reasons.every((x) => k.reasons.includes(x))) {
            r.wrongReason++;
            wrongReason.push(
              `${k.family}: ${k.label} → ${reasons.join(",")} (expected ${k.reasons.join("|")})`,
            );
          }
          if (reasons.length > 1) duplicated.push(`${k.family}: ${k.label} → ${reasons.length} dead letters`);
        }
      }
      const rows = [
        ["family", "valid", "invalid", "dead-lettered", "missing", "wrong reason", "refused at publish"],
      ];
      for (const [f, r] of [...perFamily].sort())
        rows.push([
          f,
          String(r.valid),
          String(r.invalid),
          String(r.dead),
          String(r.missing),
          String(r.wrongReason),
          String(r.refusedAtPublish),
        ]);
      console.log(
        `hostile-input: seed ${seed}, ${steps} steps in ${Date.now() - started} ms, ${expectedOrders.length} orders checked, ${validPos.size + hostilePairs.size} positions checked\n${table(rows)}`,
      );
      const uniq = (xs: string[]) => [...new Map(xs.map((x) => [x.replace(/\d+/g, "#"), x])).values()];
      if (missing.length > 0)
        note(
          `${missing.length} known-invalid inputs not dead-lettered, e.g.: ${uniq(missing).slice(0, 12).join(" | ")}`,
        );
      if (wrongReason.length > 0)
        note(`${wrongReason.length} with another reason: ${uniq(wrongReason).slice(0, 12).join(" | ")}`);
      if (deadBadHeaders.length > 0)
        note(`dead letters without a proper reason header: ${deadBadHeaders.slice(0, 5).join(" | ")}`);
      // Valid inputs never become dead letters (nor do the valid neighbours of an invalid one in an envelope).
      if (deadOther.length > 0)
        note(
          `${deadOther.length} dead letters of VALID inputs (or of envelopes holding them): ${uniq(
            deadOther.map((d) => `${d.reason} ${d.subject.slice(0, 80)}: ${d.detail.slice(0, 160)}`),
          )
            .slice(0, 8)
            .join(" | ")}`,
        );
      if (duplicated.length > 0)
        console.log(
          `hostile-input: inputs with several dead letters: ${uniq(duplicated).slice(0, 5).join(" | ")}`,
        );

      // Rules: every invalid one refused with the field and the fix; valid prototype-name ones in force.
      const badRules = rulesOutcomes.filter((o) => o.problem !== null);
      console.log(`hostile-input: ${rulesOutcomes.length} rule-set inputs, ${badRules.length} mishandled`);
      if (badRules.length > 0)
        note(
          `rule sets mishandled: ${uniq(badRules.map((o) => `${o.label}: ${o.problem}`))
            .slice(0, 10)
            .join(" | ")}`,
        );
      if (inForce !== "") {
        const now = await rulesInForce();
        if (now.inForce !== inForce) note(`rules in force ${now.inForce}, expected ${inForce}`);
      }

      if (failures.length > 0)
        console.log(`hostile-input FAILURES (seed ${seed}):\n- ${failures.join("\n- ")}`);
      expect(failures).toEqual([]);
    },
    trafficMs + 120_000,
  );
});
