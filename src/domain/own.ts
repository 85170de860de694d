// Records keyed by ids that come from outside: positions and offered ATS per warehouse or channel,
// shippedAt per warehouse, minStock and marketplaceHeld per SKU. They are plain objects because they cross
// LMDB and internal hops as msgpack and the HTTP API as JSON. Any string is a valid id, so three traps are
// closed here, for every such record, and nowhere else:
//
// 1. Reading `rec[id]` finds inherited members: rec["constructor"] is Object's constructor function,
//    rec["toString"] a function. `own` reads own properties only.
// 2. Writing `rec[id] = v` with the id "__proto__" replaces the prototype instead of adding a property.
//    `withOwn` and `idRecord` define properties: a computed key in an object literal and Object.fromEntries
//    never call a setter.
// 3. msgpackr decodes a map key "__proto__" as "__proto_" (node_modules/msgpackr/unpack.js, readMap and the
//    record readers: `if (key === '__proto__') key = '__proto_'`; the same in the 1.12 that lmdb bundles), so
//    that id would come back from LMDB as another id, or merge with it. A record stores it under
//    `protoIdKey`, a key no id can be (ids hold no control characters: parseId), and every helper here maps
//    it back. Read id-keyed records only through these helpers; to show one as JSON, build a fresh object
//    from `ownEntries` with Object.fromEntries.

/** An object whose keys are record keys of ids (see `keyOfId`); read and write it only through this module. */
export type IdRecord<V> = Record<string, V>;

const protoId = "__proto__";
/** Where a record keeps the id "__proto__": NUL is a control character, which parseId refuses in any id. */
export const protoIdKey = "\u0000__proto__";

/** The property name under which a record keeps `id`. */
export function keyOfId(id: string): string {
  return id === protoId ? protoIdKey : id;
}

/** The id a record's property name stands for. */
export function idOfKey(key: string): string {
  return key === protoIdKey ? protoId : key;
}

/** The value kept for `id`, never an inherited member. */
export function own<V>(rec: Readonly<IdRecord<V>> | undefined, id: string): V | undefined {
  if (rec === undefined) return undefined;
  const key = keyOfId(id);
  return Object.hasOwn(rec, key) ? rec[key] : undefined;
}

export function hasOwnId(rec: Readonly<IdRecord<unknown>> | undefined, id: string): boolean {
  return rec !== undefined && Object.hasOwn(rec, keyOfId(id));
}

/** A copy of `rec` with `id` set to `value`. */
export function withOwn<V>(rec: Readonly<IdRecord<V>> | undefined, id: string, value: V): IdRecord<V> {
  return { ...rec, [keyOfId(id)]: value };
}

/** [id, value] for every id the record holds. */
export function ownEntries<V>(rec: Readonly<IdRecord<V>> | undefined): Array<[string, V]> {
  if (rec === undefined) return [];
  return Object.entries(rec).map(([key, v]) => [idOfKey(key), v]);
}

export function ownIds(rec: Readonly<IdRecord<unknown>> | undefined): string[] {
  return rec === undefined ? [] : Object.keys(rec).map(idOfKey);
}

/** A record of the given ids (a later duplicate wins, as with assignment). */
export function idRecord<V>(entries: Iterable<readonly [string, V]>): IdRecord<V> {
  const out: IdRecord<V> = {};
  for (const [id, v] of entries) Object.defineProperty(out, keyOfId(id), ownProperty(v));
  return out;
}

/** What a plain assignment would define: enumerable, writable, configurable (so spread and JSON see it). */
function ownProperty<V>(value: V): PropertyDescriptor {
  return { value, enumerable: true, writable: true, configurable: true };
}

/**
 * A JSON.stringify replacer for what people read (the HTTP API): an id-keyed record shows the id "__proto__"
 * under its own name. Object.fromEntries defines the key, so the copy is still an ordinary object.
 */
export function idsForJson(_key: string, value: unknown): unknown {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return value;
  if (!Object.hasOwn(value, protoIdKey)) return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [idOfKey(k), v]));
}
