export {
  type BatchWrite,
  layoutVersion,
  type OutboxItem,
  type OutboxKey,
  type PartitionIdentity,
  PartitionStore,
  partitionDir,
} from "./partition-store.ts";
