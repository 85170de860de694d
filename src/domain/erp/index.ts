// ERP compaction: finance movements netted per window, order documents, numbered batches. Pure.
export {
  ErpCompactor,
  type ErpCompactorState,
  type ErpLimits,
  type ErpSource,
  movementTypeOf,
} from "./compactor.ts";
export {
  documentId,
  type ErpBatch,
  type ErpDocument,
  type ErpDocumentKind,
  type ErpLine,
  type ErpMovement,
  financeEntryTypes,
  type MovementType,
  nonFinanceEntryTypes,
} from "./types.ts";
