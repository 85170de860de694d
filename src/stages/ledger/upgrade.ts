import type { Allocation, WarehouseLoad } from "../../domain/ledger/index.ts";
import type { PartitionStore } from "../../store/index.ts";
import { upgradeLedgerFrom5 } from "./reservations.ts";

/**
 * Layout 4 → 5 (routing, stock sync, ERP): the `load` table is derived from the reservations a partition
 * already holds, so a release or shipment of one of them finds the units it counted. Today's shipments
 * before the upgrade are not known and count as 0. `sync` and `erp` start empty; every synced channel's
 * stock is resynced on the first batch (its rule fingerprint is new).
 */
export function upgradeLedgerFrom4(store: PartitionStore): void {
  const reserved = new Map<string, number>();
  for (const a of store.rangeValues<Allocation>("allocations", {})) {
    if (a.reserved > 0) reserved.set(a.warehouse, (reserved.get(a.warehouse) ?? 0) + a.reserved);
  }
  for (const [warehouse, units] of reserved) {
    const load: WarehouseLoad = { warehouse, reserved: units, shippedDay: 0, shippedUnits: 0 };
    store.upgradePut("load", warehouse, load);
  }
}

export const ledgerUpgrades = { 4: upgradeLedgerFrom4, 5: upgradeLedgerFrom5 };
