import type { Position } from "../ledger/types.ts";
import type { SplitMode } from "../network/index.ts";
import type { IdRecord } from "../own.ts";

/** Why a warehouse was not a candidate for an order or a line. Bounded: a metric label. */
export type FilterReason =
  | "disabled"
  | "not_serving_channel"
  | "capacity_full"
  | "cutoff_missed"
  | "rejected_before"
  | "max_shipments"
  | "no_stock"
  | "min_stock";

export const filterReasons: readonly FilterReason[] = [
  "disabled",
  "not_serving_channel",
  "capacity_full",
  "cutoff_missed",
  "rejected_before",
  "max_shipments",
  "no_stock",
  "min_stock",
];

/** One candidate's score for one line, with every component (each in [0, 1], 1 is best). */
export type CandidateScore = {
  warehouse: string;
  score: number;
  /** Null when the ship-to point or the warehouse has no coordinates (proximity by region instead). */
  distanceKm: number | null;
  proximity: number;
  /** Stock left after this allocation, relative to the best-stocked candidate (inventory balance). */
  stock: number;
  /** 1 − (open reservations + today's shipments) / capacity. */
  load: number;
  /** The fastest carrier whose next cut-off still meets the ship-by deadline: 1 − transit / max. */
  carrier: number;
  carrierId: string | null;
};

/** Why a line went where it went: kept with the line, shown by GET on the order. */
export type LineDecision = {
  /** The rule set's version (the KV revision, or the file's hash) the decision was made with. */
  rules: string;
  atMs: number;
  chosen: string | null;
  /** The warehouse the ledger reserved at, when stock had moved and it took a later candidate. */
  taken?: string;
  score: number;
  /** "best_score", "fewer_shipments" (not the line's own best: the order ships from fewer places), "no_stock". */
  reason: "best_score" | "fewer_shipments" | "no_stock" | "no_candidate";
  /** Warehouses the order ships from with this decision (1 = not split). */
  shipments: number;
  /**
   * Present (true) only when routing's view did not know the SKU's stock (its ledger partition is in another
   * process and its feed had not reached this one): the line was routed blind, without the stock filters and
   * score, and the ledger reserved where the stock was, or refused.
   */
  stockUnknown?: true;
  candidates: CandidateScore[];
  filtered: Array<{ warehouse: string; reason: FilterReason }>;
};

export type RouteLine = {
  lineId: string;
  sku: string;
  qty: number;
  /** Warehouses that rejected this line before: never chosen again. */
  excluded: readonly string[];
};

export type RouteOrder = {
  channel: string;
  shipTo: { region: string | null; lat: number | null; lon: number | null };
  shipByMs: number;
  split: { mode: SplitMode; maxShipments: number };
  /** The lines to route now (all of a new order, or the re-routed ones). */
  lines: readonly RouteLine[];
  /** Warehouses the order already ships from (lines released or shipped there): no extra shipment there. */
  used: ReadonlySet<string>;
};

/** Synchronous reads of what routing scores against (committed ledger state; the ledger stays the authority). */
export type RouteContext = {
  /** A SKU's positions per warehouse, or undefined when it has none (or, when `known` says so, unknown). */
  stock: (sku: string) => Readonly<IdRecord<Position>> | undefined;
  /**
   * Whether the view knows the SKU's stock. False: `stock` returning undefined means "unknown", not "none"
   * (a view fed from another process that has not heard of the SKU yet), and the line is routed blind: every
   * warehouse passing the other filters is a candidate, ranked without the stock component, and the ledger
   * (the authority) reserves at the first that has the stock. Absent: the view always knows (in-process LMDB).
   */
  known?: (sku: string) => boolean;
  /** Units counted against a warehouse's daily capacity now: open reservations plus today's shipments. */
  load: (warehouse: string) => number;
  nowMs: number;
};

export type LineRoute = {
  lineId: string;
  /** Where to reserve, best first: the choice, then the other candidates by score (the ledger takes the
   * first with enough stock, so stock that moved since the view was read never fails a line needlessly). */
  candidates: string[];
  /** Units each candidate must keep after the reservation (min stock), aligned with `candidates`. */
  keep: number[];
  decision: LineDecision;
};

export type RouteResult = { lines: LineRoute[]; shipments: number };
