import type { ReturnDisposition } from "../ledger/types.ts";

// What Sluice tells the ERP (`sluice.out.erp`): compacted stock movements from the ledger stage and order
// documents from the order stage, in numbered batches per stage partition. Plain data, JSON on the wire.

/**
 * Ledger entry types that move on-hand stock: what finance values. A return is split by disposition, read from
 * the entry's cause `return:<disposition>` (a damaged return is on hand but not sellable).
 */
export const financeEntryTypes = [
  "received",
  "shipped",
  "returned",
  "counted",
  "override",
  "adjusted",
  "missing",
  "scrapped",
] as const;

/** Entry types that never reach the ERP: commitments and holds inside one position, on hand unchanged. */
export const nonFinanceEntryTypes = ["reserved", "released", "held", "unheld", "safety_stock"] as const;

export type MovementType =
  | Exclude<(typeof financeEntryTypes)[number], "returned">
  | `returned:${ReturnDisposition}`;

/** The net on-hand change of one SKU at one warehouse by one movement type within a batch's window. */
export type ErpMovement = {
  sku: string;
  warehouse: string;
  type: MovementType;
  /** Signed net change of onHand in units (never 0: keys that net to 0 are left out). */
  qty: number;
  /** Ledger entries netted into it. */
  entries: number;
  /** The SKU's ledger version after the last of them. */
  versionTo: number;
};

/**
 * A document line. A kit line is listed as its components (docs/kits.md): each a line of its own (the
 * component's ledger line id and SKU, qty in units, price 0) with `kit` naming its parent: the kit line, its
 * SKU, the kits it moved and the price per kit. The kit's price is counted once, on its parent.
 */
export type ErpLine = {
  lineId: string;
  sku: string;
  qty: number;
  price: number;
  kit?: { lineId: string; sku: string; qty: number; price: number };
};

/** Order documents, each with a deterministic id so the ERP can de-duplicate them. */
export type ErpDocument =
  | {
      kind: "shipment";
      /** `shipment:<orderKey>:<shipmentId>` (documentId.shipment) */
      id: string;
      orderKey: string;
      channel: string;
      orderId: string;
      warehouse: string;
      shipmentId: string;
      /** Units shipped in this shipment with the order's unit price. */
      lines: ErpLine[];
      atMs: number;
    }
  | {
      kind: "cancellation";
      /** `cancel:<orderKey>:<order version>` */
      id: string;
      orderKey: string;
      channel: string;
      orderId: string;
      cause: string;
      lines: ErpLine[];
      atMs: number;
    }
  | {
      kind: "return";
      /** `return:<orderKey>:<returnId>` */
      id: string;
      orderKey: string;
      channel: string;
      orderId: string;
      returnId: string;
      warehouse: string;
      lines: Array<ErpLine & { disposition: ReturnDisposition }>;
      atMs: number;
    };

export type ErpDocumentKind = ErpDocument["kind"];

/** Deterministic document ids (the order key already joins two encoded ids, so ':' cannot be ambiguous). */
export const documentId = {
  shipment: (orderKey: string, shipmentId: string) => `shipment:${orderKey}:${shipmentId}`,
  cancellation: (orderKey: string, orderVersion: number) => `cancel:${orderKey}:${orderVersion}`,
  return: (orderKey: string, returnId: string) => `return:${orderKey}:${returnId}`,
} as const;

/**
 * One message on `sluice.out.erp`. Per (stage, partition, storeId) batchNo runs 1, 2, 3… without gaps and each
 * batch's prevSeqTo is the previous batch's seqTo: a missing or repeated batch shows at once.
 */
export type ErpBatch = {
  /** `erp-<stage>-<partition>-<storeId>-<batchNo>`: also the message's Nats-Msg-Id and the sink's Idempotency-Key. */
  id: string;
  stage: string;
  partition: number;
  /** The partition store's identity: a wiped and recreated partition starts a new sequence of batches. */
  storeId: string;
  batchNo: number;
  /** Stream sequences of the inputs this batch closes: (prevSeqTo, seqTo]. seqFrom > seqTo: no new input. */
  seqFrom: number;
  seqTo: number;
  prevSeqTo: number;
  /** When the window opened (its first movement or document's input time) and closed (the stage's clock). */
  openedAtMs: number;
  closedAtMs: number;
  /** Sorted by sku, warehouse, type (code-unit order). */
  movements: ErpMovement[];
  /** In the order they happened. */
  documents: ErpDocument[];
};
