import { assert } from "../assert.ts";
import { type DomainLimits, invalid, isObject, type Parsed, parseId } from "../ledger/commands.ts";

// Channel reconciliation, the pure part: what a channel says it shows (`sluice.in.channel.<channel>.stock`),
// compared with what the ledger partition owning each SKU last offered it, and the bounded memory of the
// snapshot parts a partition applied (so a part delivered or published again changes nothing twice).
// The stage (src/stages/ledger/reconcile.ts) heals each difference by offering the current ATS again through
// StockSync: coalesced, within the channel's rate budget, like any other stock value.

/**
 * Parts of one snapshot: a full snapshot of a 1M-SKU catalogue at 1,000 items per message is 1,000 parts.
 * Bounds the `seen` list a partition keeps per snapshot (≤ 1,000 numbers ≈ 3 KiB in msgpack).
 */
export const reconcilePartsMax = 1000;
/**
 * Snapshots a ledger partition remembers per channel (their parts seen): a part published again after 64 newer
 * snapshots of the same channel is applied again. Harmless: a heal offers the current ATS, never a stored one.
 * 64 × synced channels rows of the `sync` table, loaded at start.
 */
export const reconcileSnapshotsPerChannelMax = 64;
/** Healed SKUs per `sluice.out.reconcile.<channel>` message (also bounded by streams.messageBytesMax). */
export const reconcileHealedPerMessageMax = 1000;
/**
 * A scheduled full reconciliation per channel: every SKU's ATS offered again (the channel resync) when the
 * last one finished this long ago; 0: never. 6 h: a drifted SKU nobody reports is fixed within a working
 * shift, and a 1M-SKU catalogue at 5 requests/s × 50 items takes ~1 h of the channel's budget.
 */
export const reconcileFullIntervalMsDefault = 6 * 60 * 60 * 1000;

/** One SKU as the channel shows it. `qty` may be negative: some marketplaces show an oversell that way. */
export type ReportedItem = { sku: string; qty: number };

/**
 * One message of a channel's report. `full`: the snapshot lists every SKU the channel shows, over `parts`
 * messages numbered `part` 1…parts; a partial one (`full` false) lists some SKUs only. A SKU appears once
 * per message.
 */
export type ChannelSnapshot = {
  snapshotId: string;
  full: boolean;
  part: number;
  parts: number;
  items: ReportedItem[];
};

const snapshotFields = new Set(["snapshotId", "full", "part", "parts", "items"]);
const example =
  '{"snapshotId":"S-1","full":false,"items":[{"sku":"SKU-1","qty":3}]} (full snapshots over several messages add "part":1,"parts":3)';

const isWhole = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v);

/**
 * A channel's report, validated: the same rule for the public message (JSON or msgpack) and the router's
 * copy of a partition's share (a router envelope may hold no items: every partition hears every part of a
 * full snapshot, so it can tell when it has all of them). Unknown fields are refused.
 */
export function parseChannelSnapshot(
  body: unknown,
  limits: DomainLimits,
  emptyAllowed = false,
): Parsed<ChannelSnapshot> {
  if (!isObject(body)) return invalid(`payload must be an object such as ${example}`);
  for (const key of Object.keys(body)) {
    if (!snapshotFields.has(key))
      return invalid(`unknown field ${JSON.stringify(key)}; expected snapshotId, full, part, parts, items`);
  }
  const id = parseId(body.snapshotId, "snapshotId", limits);
  if (!id.ok) return id;
  if (body.full !== undefined && typeof body.full !== "boolean") return invalid("full must be true or false");
  const parts = body.parts ?? 1;
  const part = body.part ?? 1;
  if (!isWhole(parts) || parts < 1 || parts > reconcilePartsMax)
    return invalid(`parts must be a whole number from 1 to ${reconcilePartsMax}`);
  if (!isWhole(part) || part < 1 || part > parts)
    return invalid(`part must be a whole number from 1 to parts (${parts})`);
  // A full snapshot may list nothing (the channel shows no SKU); a partial one says something or is a mistake.
  const items = parseReportedItems(body.items, limits, emptyAllowed || body.full === true);
  if (!items.ok) return items;
  return {
    ok: true,
    value: { snapshotId: id.value, full: body.full === true, part, parts, items: items.value },
  };
}

function parseReportedItems(
  raw: unknown,
  limits: DomainLimits,
  emptyAllowed: boolean,
): Parsed<ReportedItem[]> {
  if (!Array.isArray(raw)) return invalid(`items must be an array such as [{"sku":"SKU-1","qty":3}]`);
  if (raw.length === 0 && !emptyAllowed) return invalid("items must not be empty");
  if (raw.length > limits.itemsPerMessageMax) {
    return invalid(
      `at most ${limits.itemsPerMessageMax} items per message (ledger.itemsPerMessageMax); send the snapshot in parts`,
    );
  }
  const items: ReportedItem[] = [];
  // A Set, not an object: a SKU "__proto__" or "constructor" is an ordinary key here.
  const seen = new Set<string>();
  for (let i = 0; i < raw.length; i++) {
    const r = raw[i] as unknown;
    if (!isObject(r)) return invalid(`items[${i}] must be an object {"sku":"…","qty":N}`);
    for (const key of Object.keys(r)) {
      if (key !== "sku" && key !== "qty")
        return invalid(`items[${i}]: unknown field ${JSON.stringify(key)}; expected sku and qty`);
    }
    const sku = parseId(r.sku, `items[${i}].sku`, limits);
    if (!sku.ok) return sku;
    if (!isWhole(r.qty) || Math.abs(r.qty) > limits.quantityMax)
      return invalid(`items[${i}].qty must be a whole number of at most ${limits.quantityMax} units`);
    if (seen.has(sku.value))
      return invalid(`items[${i}]: SKU ${JSON.stringify(sku.value)} is listed twice; list each SKU once`);
    seen.add(sku.value);
    items.push({ sku: sku.value, qty: r.qty });
  }
  return { ok: true, value: items };
}

// ---- comparing --------------------------------------------------------------------------------------

/**
 * What the partition knows of a (channel, SKU): the value the channel was last offered (`published`, null
 * when never), the ATS now, and whether a newer value is waiting to go out (then the channel is behind by
 * design, not drifted). `null` for a SKU the partition has never seen: it shows 0 and has ATS 0.
 */
export type PairView = { published: number | null; ats: number; waiting: boolean } | null;

export type Drift = { sku: string; reported: number; published: number; ats: number };

export type Comparison = {
  reported: number;
  matched: number;
  /** Listed SKUs with a newer value on its way (compared when it has gone, at the next report). */
  inFlight: number;
  drifted: Drift[];
};

/**
 * Each reported quantity against what the channel was last offered (or, never offered, the ATS now; unknown
 * SKU: 0). A difference is drift, unless a newer value is already waiting for the channel's budget.
 */
export function compareReported(items: readonly ReportedItem[], view: (sku: string) => PairView): Comparison {
  const out: Comparison = { reported: items.length, matched: 0, inFlight: 0, drifted: [] };
  for (const { sku, qty } of items) {
    const v = view(sku);
    if (v?.waiting) {
      out.inFlight++;
      continue;
    }
    const ats = v === null ? 0 : v.ats;
    const published = v === null ? 0 : (v.published ?? v.ats);
    if (qty === published) out.matched++;
    else out.drifted.push({ sku, reported: qty, published, ats });
  }
  assert(
    out.matched + out.inFlight + out.drifted.length === out.reported,
    "every reported SKU is judged once",
  );
  return out;
}

// ---- snapshot parts seen ------------------------------------------------------------------------------

/** A snapshot a partition has heard of: its shape, the parts applied (ascending), its first stream seq. */
export type SnapshotSeen = { snapshotId: string; full: boolean; parts: number; seen: number[]; seq: number };

export type Admission =
  | { kind: "duplicate" }
  | { kind: "conflict"; detail: string }
  /** Applied: the row to write, whether a full snapshot is now complete here, and snapshot ids to forget. */
  | { kind: "new"; row: SnapshotSeen; complete: boolean; evicted: string[] };

/**
 * The snapshot parts one ledger partition applied, per channel, the newest reconcileSnapshotsPerChannelMax
 * snapshots (by the stream sequence of their first part). Pure: the stage writes each admitted row and
 * deletes the evicted ones in the batch's transaction, and loads the rows at start.
 */
export class SnapshotLog {
  private readonly byChannel = new Map<string, Map<string, SnapshotSeen>>();

  constructor(private readonly perChannelMax = reconcileSnapshotsPerChannelMax) {
    assert(Number.isSafeInteger(perChannelMax) && perChannelMax >= 1, "snapshots per channel ≥ 1");
  }

  load(channel: string, row: SnapshotSeen): void {
    const snapshots = this.channel(channel);
    assert(!snapshots.has(row.snapshotId), "a snapshot is stored once per channel");
    snapshots.set(row.snapshotId, { ...row, seen: [...row.seen] });
  }

  /** Rows of a channel, by first stream sequence (the order eviction follows). */
  rows(channel: string): SnapshotSeen[] {
    return [...(this.byChannel.get(channel)?.values() ?? [])].sort((a, b) => a.seq - b.seq);
  }

  admit(channel: string, s: Omit<ChannelSnapshot, "items">, seq: number): Admission {
    const snapshots = this.channel(channel);
    const known = snapshots.get(s.snapshotId);
    if (known !== undefined) {
      if (known.full !== s.full || known.parts !== s.parts) {
        const was = `full ${known.full}, parts ${known.parts}`;
        return {
          kind: "conflict",
          detail: `snapshot ${JSON.stringify(s.snapshotId)} of channel ${JSON.stringify(channel)} was announced with ${was}, not full ${s.full}, parts ${s.parts}; use a new snapshotId`,
        };
      }
      if (known.seen.includes(s.part)) return { kind: "duplicate" };
      const row = { ...known, seen: [...known.seen, s.part].sort((a, b) => a - b) };
      snapshots.set(s.snapshotId, row);
      return { kind: "new", row, complete: row.full && row.seen.length === row.parts, evicted: [] };
    }
    const row: SnapshotSeen = { snapshotId: s.snapshotId, full: s.full, parts: s.parts, seen: [s.part], seq };
    snapshots.set(s.snapshotId, row);
    const evicted: string[] = [];
    while (snapshots.size > this.perChannelMax) {
      const oldest = this.rows(channel)[0] as SnapshotSeen;
      snapshots.delete(oldest.snapshotId);
      evicted.push(oldest.snapshotId);
    }
    return { kind: "new", row, complete: row.full && row.parts === 1, evicted };
  }

  private channel(channel: string): Map<string, SnapshotSeen> {
    let m = this.byChannel.get(channel);
    if (m === undefined) {
      m = new Map();
      this.byChannel.set(channel, m);
    }
    return m;
  }
}

// ---- the report ---------------------------------------------------------------------------------------

/** What one ledger partition did with one snapshot part, for `sluice.out.reconcile.<channel>`. */
export type ReconcileReport = {
  channel: string;
  snapshotId: string;
  full: boolean;
  part: number;
  parts: number;
  partition: number;
  /** Reported SKUs this partition owns, and how each was judged. */
  reported: number;
  matched: number;
  inFlight: number;
  drifted: number;
  /** Drifted SKUs offered again; `deferred` ones found the stock queue full (healed at a later report). */
  healed: Drift[];
  deferred: number;
  /** A full snapshot complete in this partition started the channel's resync here (unlisted SKUs). */
  resync: boolean;
  atMs: number;
};

/**
 * The report as JSON messages: all of its fields in each, a share of `healed` per message, with `page` and
 * `pages` (1-based), never over `messageBytesMax` bytes nor `healedPerMessageMax` healed SKUs (the rule of
 * every output: it never outgrows a message).
 */
export function reportMessages(
  report: ReconcileReport,
  messageBytesMax: number,
  healedPerMessageMax = reconcileHealedPerMessageMax,
): string[] {
  const { healed, ...head } = report;
  // The head with the widest page numbers, so a page fits whatever its numbers are.
  const digits = String(Math.max(1, healed.length)).length;
  const wide = 10 ** digits - 1;
  const headBytes = Buffer.byteLength(JSON.stringify({ ...head, page: wide, pages: wide, healed: [] }));
  assert(headBytes < messageBytesMax, "a reconcile report's head fits a message");
  const pages: Drift[][] = [];
  let page: Drift[] = [];
  let bytes = headBytes;
  for (const d of healed) {
    const size = Buffer.byteLength(JSON.stringify(d)) + 1;
    assert(headBytes + size <= messageBytesMax, "one healed SKU fits a report message");
    if (page.length >= healedPerMessageMax || bytes + size > messageBytesMax) {
      pages.push(page);
      page = [];
      bytes = headBytes;
    }
    page.push(d);
    bytes += size;
  }
  pages.push(page);
  return pages.map((p, i) => JSON.stringify({ ...head, page: i + 1, pages: pages.length, healed: p }));
}
