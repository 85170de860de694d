export {
  type BatchWrite,
  layoutVersion,
  type Op,
  type OutboxItem,
  type PartitionIdentity,
  PartitionStore,
  partitionDir,
  type StoreOptions,
  StoreWriteError,
} from "./partition-store.ts";
