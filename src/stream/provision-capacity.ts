import type { JetStreamClient } from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import { capacityBucketDefault } from "./subjects.ts";

// The capacity pool's KV bucket (docs/capacity.md). Not made by provisionStreams: the ledger partitions open
// it themselves when they first claim (in the main thread, a worker or a cluster node alike), with the same
// settings, so an existing bucket is opened as it is.

/**
 * Old days' keys expire: a key is last written on its day (or a few minutes before it, a claim ahead of
 * midnight), and nothing reads a day's key once the day is over. 3 days keeps yesterday's for an operator
 * looking back, and an entry can never expire while its day still runs (its age then is < 1 day + the ahead
 * window). nats-server 2.9 has no per-key TTL: the bucket's max age is the TTL.
 */
export const capacityBucketAgeMsDefault = 3 * 86_400_000;

/** Only the last value of a key matters (claims are compare-and-set on its revision): no history kept. */
export const capacityBucketHistoryCountDefault = 1;

export type CapacityBucketOptions = {
  /** The bucket's name; SLUICE_CAPACITY by default. */
  bucket?: string;
  /** streams.replicas: the pool must survive what the streams survive. */
  replicas: number;
  ageMs?: number;
  historyCount?: number;
};

/** Creates the bucket, or opens it when it exists with these settings. */
export function ensureCapacityBucket(js: JetStreamClient, o: CapacityBucketOptions): Promise<KV> {
  return new Kvm(js).create(o.bucket ?? capacityBucketDefault, {
    history: o.historyCount ?? capacityBucketHistoryCountDefault,
    ttl: o.ageMs ?? capacityBucketAgeMsDefault,
    replicas: o.replicas,
  });
}
