export {
  type BatchWrite,
  layoutVersion,
  type Op,
  type OutboxItem,
  type PartitionIdentity,
  PartitionStore,
  partitionDir,
  type StoreOptions,
} from "./partition-store.ts";
