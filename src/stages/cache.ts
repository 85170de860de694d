import { assert } from "../domain/assert.ts";
import type { SkuState } from "../domain/ledger/index.ts";
import type { Order } from "../domain/orders/index.ts";

/** What the cache keeps per key: the value and its estimated bytes when it was set. */
type Slot<V> = { value: V; bytes: number };

/**
 * A bounded cache of committed (or about-to-be-committed) state, owned by one partition's single writer.
 * It saves the LMDB read and msgpack decode of an order or SKU touched again within moments (an order's
 * ledger answer follows its creation by milliseconds). Sharing objects with the domain is safe because a
 * batch either commits or the process exits.
 *
 * Two bounds, whichever is reached first: `countMax` entries and `bytesMax` estimated bytes (`sizeOf`, a
 * cheap estimate from the value's shape, taken when the value is set). The memory budget is set in bytes
 * (ledger.cacheBytesMax, orders.cacheBytesMax) because an entry's size varies a hundredfold (an order of
 * one line ≈ 2 KB, one of 100 lines with a long history ≈ 200 KB): a count alone bounds nothing.
 *
 * Order of eviction: oldest set first. A value the domain changes is set again when its batch finishes
 * (both appliers do), so this is least recently written or loaded; a read does not reorder (it costs a Map
 * delete and insert per read on the hot path, and every read that matters is followed by a write).
 */
export class BoundedCache<K, V> {
  private readonly map = new Map<K, Slot<V>>();
  private bytesTotal = 0;

  constructor(
    private readonly countMax: number,
    private readonly bytesMax: number = Number.POSITIVE_INFINITY,
    private readonly sizeOf: (value: V) => number = () => 0,
  ) {
    assert(countMax >= 0, "cache.countMax is ≥ 0");
    assert(bytesMax >= 0, "cache.bytesMax is ≥ 0");
  }

  get(key: K): V | undefined {
    return this.map.get(key)?.value;
  }

  /** Read-through: the cached value, or `load()`'s (kept when there is one). */
  getOr(key: K, load: () => V | undefined): V | undefined {
    const cached = this.map.get(key);
    if (cached !== undefined) return cached.value;
    const loaded = load();
    if (loaded !== undefined) this.set(key, loaded);
    return loaded;
  }

  /** Keeps `value` as the newest entry (its size estimated now), then evicts the oldest beyond the bounds. */
  set(key: K, value: V): void {
    const old = this.map.get(key);
    if (old !== undefined) {
      this.map.delete(key);
      this.bytesTotal -= old.bytes;
    }
    const bytes = this.sizeOf(value);
    // A value larger than the whole budget is not kept at all (it would evict everything, then itself).
    if (bytes > this.bytesMax || this.countMax === 0) return;
    this.map.set(key, { value, bytes });
    this.bytesTotal += bytes;
    if (this.map.size <= this.countMax && this.bytesTotal <= this.bytesMax) return;
    for (const [k, slot] of this.map) {
      if (this.map.size <= this.countMax && this.bytesTotal <= this.bytesMax) break;
      this.map.delete(k);
      this.bytesTotal -= slot.bytes;
    }
  }

  delete(key: K): void {
    const old = this.map.get(key);
    if (old === undefined) return;
    this.map.delete(key);
    this.bytesTotal -= old.bytes;
  }

  get size(): number {
    return this.map.size;
  }

  /** The estimated bytes of what is cached: ≤ bytesMax. */
  get bytes(): number {
    return this.bytesTotal;
  }
}

// ---- size estimates ---------------------------------------------------------------------------------
//
// Estimates of a decoded value's heap, from its shape, in a few dozen operations: no serialisation. The
// constants are JavaScriptCore's layout on 64-bit: an object is a 16-byte cell plus 8 bytes per property;
// an array a 16-byte cell plus an 8-byte header and 8 bytes per element; a string a 16-byte cell plus a
// 20-byte implementation and its characters (1 byte each for Latin-1, which ids and states are; a string
// with other characters takes 2, so the estimate is low for those). Numbers and booleans live in their
// slot. Checked against the heap (test/unit/cache.test.ts): within ±30% of the measured growth for orders
// and SKU states decoded from LMDB.

const objectBytes = (properties: number) => 16 + 8 * properties;
const arrayBytes = (length: number) => 24 + 8 * length;
const stringBytes = (s: string | null | undefined) => (s == null ? 0 : 36 + s.length);

/** Bytes of an IdRecord<number> or a string[]-like record: its keys and values. */
function recordBytes(record: object | undefined, valueBytes: number): number {
  if (record === undefined) return 0;
  let bytes = objectBytes(0);
  for (const key in record) bytes += 8 + stringBytes(key) + valueBytes;
  return bytes;
}

function stringsBytes(list: readonly string[]): number {
  let bytes = arrayBytes(list.length);
  for (const s of list) bytes += stringBytes(s);
  return bytes;
}

/** Estimated heap of a decoded order: its fields, each line (and its routing decision), its history. */
export function orderBytes(order: Order): number {
  let bytes =
    objectBytes(21) +
    stringBytes(order.key) +
    stringBytes(order.channel) +
    stringBytes(order.orderId) +
    stringBytes(order.status) +
    objectBytes(3) +
    stringBytes(order.split.mode) +
    objectBytes(4) +
    stringBytes(order.shipTo.region) +
    stringBytes(order.shipTo.zip) +
    stringsBytes(order.shipmentIds) +
    stringsBytes(order.returnIds) +
    arrayBytes(order.lines.length) +
    arrayBytes(order.history.length);
  for (const l of order.lines) {
    bytes +=
      objectBytes(17) +
      stringBytes(l.lineId) +
      stringBytes(l.sku) +
      stringBytes(l.state) +
      stringBytes(l.warehouse) +
      recordBytes(l.shippedAt, 0) +
      stringsBytes(l.excluded) +
      stringBytes(l.cancelCause) +
      stringBytes(l.rerouteCause) +
      stringBytes(l.refusal) +
      stringBytes(l.cancelPending);
    const d = l.decision;
    if (d == null) continue;
    bytes +=
      objectBytes(10) +
      stringBytes(d.rules) +
      stringBytes(d.chosen) +
      stringBytes(d.taken) +
      stringBytes(d.reason) +
      arrayBytes(d.candidates.length) +
      arrayBytes(d.filtered.length);
    for (const c of d.candidates)
      bytes += objectBytes(9) + stringBytes(c.warehouse) + stringBytes(c.carrierId);
    for (const f of d.filtered) bytes += objectBytes(2) + stringBytes(f.warehouse) + stringBytes(f.reason);
  }
  for (const h of order.history) bytes += objectBytes(3) + stringBytes(h.event) + stringBytes(h.detail);
  return bytes;
}

/** Estimated heap of a decoded SKU state: its positions per warehouse and the ATS offered per channel. */
export function skuStateBytes(state: SkuState): number {
  let positions = 0;
  for (const warehouse in state.positions) positions += 8 + stringBytes(warehouse) + objectBytes(5);
  return objectBytes(4) + stringBytes(state.sku) + objectBytes(0) + positions + recordBytes(state.ats, 0);
}
