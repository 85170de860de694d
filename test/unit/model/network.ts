import {
  type Network,
  parseNetwork,
  type SlaAction,
  type SplitMode,
} from "../../../src/domain/network/index.ts";

/** The channel rules a run varies; every warehouse serves every channel ("*"). */
export type NetworkShape = {
  warehouseCount: 2 | 3;
  backorder: boolean;
  split: SplitMode;
  maxShipments: number;
  slaAction: SlaAction;
  /** The at-risk window (channel rule slaAtRiskMs); absent: the default, a quarter of slaShipWithinMs. */
  slaAtRiskMs?: number;
};

export const warehouseIds = ["w1", "w2", "w3"] as const;

/**
 * Kits of every run (docs/kits.md): "K" of two A and one B (A and B are in every run's SKUs), and a kit whose
 * SKU is "__proto__" (an ordinary id) of B and "c.1" (stocked only in runs with 3 or more SKUs).
 */
export const kitSkus = ["K", "__proto__"] as const;
export const kits = [
  {
    sku: "K",
    components: [
      { sku: "A", qty: 2 },
      { sku: "B", qty: 1 },
    ],
  },
  {
    sku: "__proto__",
    components: [
      { sku: "B", qty: 1 },
      { sku: "c.1", qty: 1 },
    ],
  },
];

/** Short deadlines so that a few SLA ticks of a sequence reach them. */
export const slaShipWithinMs = 1_500;
export const slaRerouteGraceMs = 700;

export function buildNetwork(shape: NetworkShape): Network {
  const parsed = parseNetwork(
    {
      warehouses: warehouseIds.slice(0, shape.warehouseCount).map((id) => ({ id, channels: ["*"] })),
      channels: [
        {
          id: "*",
          backorder: shape.backorder,
          split: shape.split,
          maxShipments: shape.maxShipments,
          slaAction: shape.slaAction,
          slaShipWithinMs,
          slaRerouteGraceMs,
          ...(shape.slaAtRiskMs === undefined ? {} : { slaAtRiskMs: shape.slaAtRiskMs }),
        },
      ],
      kits,
    },
    "test-1",
  );
  if (!parsed.ok) throw new Error(`test network is invalid: ${parsed.detail}`);
  return parsed.value;
}
