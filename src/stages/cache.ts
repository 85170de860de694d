/**
 * A bounded most-recently-used cache of committed (or about-to-be-committed) state, owned by one
 * partition's single writer. It saves the LMDB read and msgpack decode of an order or SKU touched again
 * within moments (an order's ledger answer follows its creation by milliseconds). Sharing objects with
 * the domain is safe because a batch either commits or the process exits.
 */
export class BoundedCache<K, V> {
  private readonly map = new Map<K, V>();

  constructor(private readonly countMax: number) {}

  get(key: K): V | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }

  /** The cached value without touching its recency (a read by another stage must not reorder). */
  peek(key: K): V | undefined {
    return this.map.get(key);
  }

  /** Read-through: the cached value, or `load()`'s (kept when there is one). */
  getOr(key: K, load: () => V | undefined): V | undefined {
    const cached = this.get(key);
    if (cached !== undefined) return cached;
    const loaded = load();
    if (loaded !== undefined) this.set(key, loaded);
    return loaded;
  }

  set(key: K, value: V): void {
    this.map.delete(key);
    this.map.set(key, value);
    while (this.map.size > this.countMax) {
      const oldest = this.map.keys().next();
      if (oldest.done) break;
      this.map.delete(oldest.value);
    }
  }

  delete(key: K): void {
    this.map.delete(key);
  }

  get size(): number {
    return this.map.size;
  }
}
