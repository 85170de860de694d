// The cluster folder's door: which partitions a node should own (assignment.ts, pure) and the leases that
// make ownership safe (leases.ts, NATS KV).
export {
  type AssignmentInput,
  allPartitions,
  assignPartitions,
  type ClusterNode,
  comparePartitions,
  desiredPartitions,
  displacedCount,
  type PartitionId,
  parsePartitionKey,
  parsePins,
  partitionKey,
  type Stage,
  stages,
} from "./assignment.ts";
export {
  isCompareAndSetRefusal,
  Lease,
  LeaseKeeper,
  type LeaseKeeperOptions,
  type LeaseOwner,
  LeaseRequestError,
  LeaseTable,
  type LeaseTableOptions,
  type LiveNode,
  type LostReason,
  leaseBucketDefault,
  leaseKey,
  type NodeInfo,
  type ReleaseResult,
} from "./leases.ts";
