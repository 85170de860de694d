import { assert } from "../domain/assert.ts";
import type { AppliedPartition } from "../stream/retention.ts";
import { inputs, stageInputs, streamNames } from "../stream/subjects.ts";
import { allPartitions, type PartitionId, partitionKey } from "./assignment.ts";
import type { SnapshotInfo } from "./snapshots.ts";

// Retention's floors in cluster mode: how much of each stage stream and of SLUICE_LOG every partition's latest
// snapshot covers. The purges are unfiltered, one point per stream (src/stream/retention.ts: nats-server 2.9
// does not give a filtered purge's bytes back), so a point is the minimum over every partition, whichever
// node runs it: a node's own partitions alone cannot decide it. So one node, the retention node, reads every
// partition's snapshot metadata each pass and purges; the others purge nothing. The cluster reads 2 × P
// metadata a pass, not 2 × P per node.

/** What retention needs of a partition's latest snapshot. */
export type Floor = Pick<SnapshotInfo, "applied" | "logSeqFrom">;
/** By partition key; empty: this node read none (it is not the retention node), so nothing may go. */
export type Floors = ReadonlyMap<string, Floor | null>;

/** The node that runs the cluster's retention: the live node first by name (each node computes the same). */
export function retentionNode(liveNodes: readonly string[]): string | null {
  let first: string | null = null;
  for (const node of liveNodes) if (first === null || node < first) first = node;
  return first;
}

/**
 * Every partition's latest snapshot position, read from the Object Store (not from what this node wrote: a
 * new owner restores the store's, so only that one bounds a purge), `inFlightMax` reads at a time.
 */
export async function readFloors(
  partitions: readonly PartitionId[],
  read: (p: PartitionId) => Promise<Floor | null>,
  inFlightMax: number,
): Promise<Map<string, Floor | null>> {
  assert(Number.isSafeInteger(inFlightMax) && inFlightMax >= 1, "snapshot metadata reads are bounded");
  const floors = new Map<string, Floor | null>();
  for (let i = 0; i < partitions.length; i += inFlightMax) {
    const slice = partitions.slice(i, i + inFlightMax);
    const infos = await Promise.all(slice.map(read));
    for (const [j, p] of slice.entries()) floors.set(partitionKey(p), infos[j] ?? null);
  }
  return floors;
}

/**
 * Every partition's input streams with the sequence its latest snapshot applied (0 without a snapshot:
 * nothing of that stream may go yet). Without floors, one partition per stream at 0: nothing may go.
 */
export function appliedFloorsOf(floors: Floors, partitionCount: number): AppliedPartition[] {
  if (floors.size === 0) return inputs.map((input) => ({ input, index: 0, streamSeqLastApplied: () => 0 }));
  return allPartitions(partitionCount).flatMap((p) =>
    stageInputs[p.stage].map((input, i, all) => ({
      input,
      index: p.index,
      streamSeqLastApplied: () => {
        const applied = floors.get(partitionKey(p))?.applied;
        if (applied === undefined) return 0;
        // The last input is the stage's main stream; the others are named.
        if (i === all.length - 1) return applied.streamSeqLastApplied;
        return applied.inputs.find((x) => x.stream === streamNames[input])?.seq ?? 0;
      },
    })),
  );
}

/**
 * SLUICE_LOG below this may go: every partition's snapshot reads from its logSeqFrom on, and one record
 * more is kept, the last each partition wrote before its snapshot (logSeqFrom − 1). A takeover reads the
 * writer of a partition's last record (takeover.ts, logHead): with that record purged an idle partition's
 * subject would be empty, a node holding an old local copy of it would keep that copy as current, and its next
 * snapshot would read the log from 1, holding every purge at 1. 1 (nothing) while some partition has none.
 */
export function logFloorOf(floors: Floors): number {
  let floor = Number.POSITIVE_INFINITY;
  for (const info of floors.values()) floor = Math.min(floor, (info?.logSeqFrom ?? 1) - 1);
  return floors.size === 0 || !Number.isFinite(floor) ? 1 : Math.max(1, floor);
}
