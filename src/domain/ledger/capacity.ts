import { assert } from "../assert.ts";
import { dayMs } from "./types.ts";

// Warehouse capacity as the ledger enforces it (docs/capacity.md). Pure: the numbers and rules only; the
// shared pool (a NATS KV bucket) and the claims live in the stage (src/stages/ledger/capacity*.ts).
//
// A warehouse's capacity for a UTC day is `capacityPerDay` units. A unit counts against the day on which it was
// reserved; it keeps counting when shipped; it is given back (to the partition that reserved it, not to the
// pool) when released, rejected or lost on that same day. Each ledger partition reserves at a warehouse only
// within the capacity it holds for the day: chunks it claimed from the pool, whose total over partitions never
// exceeds capacityPerDay. So Σ over partitions of units counted for (warehouse, day) ≤ capacityPerDay.

/** UTC day number of a time (ms since epoch): the capacity day of an input. */
export const capacityDayOf = (atMs: number): number => Math.floor(atMs / dayMs);

/**
 * What one partition holds of one warehouse's capacity for one day: `held` units claimed from the pool (and
 * committed here), `used` units reserved that day and not released that day. `used ≤ held` always.
 */
export type CapacityDay = { day: number; warehouse: string; held: number; used: number };

/** The key of a CapacityDay row: day first, so old days are one range to delete. */
export type CapacityKey = [day: number, warehouse: string];

export const capacityKey = (c: { day: number; warehouse: string }): CapacityKey => [c.day, c.warehouse];

/** Units held and not used: what the partition may still reserve at the warehouse that day. */
export function capacityFree(c: CapacityDay | undefined): number {
  return c === undefined ? 0 : c.held - c.used;
}

/** Which warehouses have a capacity the ledger enforces (the rule set's warehouses); others are unlimited. */
export type CapacityRule = { limited(warehouse: string): boolean };

/** A warehouse a line could not take for want of held capacity: the stage claims for it at once. */
export type CapacityShort = {
  warehouse: string;
  day: number;
  /** The most units one of those lines wanted. */
  units: number;
  /** How many times a line was turned away there for want of capacity, in the batch. */
  lines: number;
};

export function assertCapacityDay(c: CapacityDay): void {
  assert(Number.isSafeInteger(c.day) && c.day >= 0, "a capacity day is a whole UTC day number");
  assert(Number.isSafeInteger(c.held) && c.held >= 0, "held capacity is a whole number ≥ 0");
  assert(Number.isSafeInteger(c.used) && c.used >= 0, "used capacity is a whole number ≥ 0");
  assert(c.used <= c.held, "a partition never uses more capacity than it holds");
}

/** How claims are sized: named limits with their units (the stage's defaults: src/stages/ledger/capacity.ts). */
export type ChunkRule = {
  /** The smallest chunk claimed (units). */
  chunkUnitsMin: number;
  /** A chunk is this fraction of an even share of what is left in the pool: remaining / P × fraction. */
  chunkShareFraction: number;
  /** A partition claims again once its free capacity falls below this fraction of capacityPerDay / P… */
  lowWaterShareFraction: number;
};

/**
 * The chunk a partition asks for, given what the pool has left: an even share of the remainder (so chunks
 * shrink as the pool drains and little is stranded in partitions that do not need it), at least
 * `chunkUnitsMin`, at least `wantUnits` (the line that was just refused), never more than is left.
 */
export function chunkUnits(
  remaining: number,
  partitionCount: number,
  wantUnits: number,
  r: ChunkRule,
): number {
  assert(partitionCount >= 1, "a pool is shared by at least one partition");
  if (remaining <= 0) return 0;
  const share = Math.ceil((remaining / partitionCount) * r.chunkShareFraction);
  return Math.min(remaining, Math.max(r.chunkUnitsMin, wantUnits, share));
}

/** …but never below chunkUnitsMin: with less free than this, the partition claims its next chunk. */
export function lowWaterUnits(capacityPerDay: number, partitionCount: number, r: ChunkRule): number {
  return Math.max(r.chunkUnitsMin, Math.ceil((capacityPerDay / partitionCount) * r.lowWaterShareFraction));
}
