import { atsOf } from "../../domain/channels/index.ts";
import type { SkuState } from "../../domain/ledger/index.ts";
import { type Channel, type Network, serving } from "../../domain/network/index.ts";
import { own } from "../../domain/own.ts";
import {
  type ChannelSnapshot,
  type PairView,
  type ReconcileReport,
  reconcileFullIntervalMsDefault,
  reportMessages,
  type SnapshotSeen,
} from "../../domain/sync/index.ts";
import type { Events } from "../../instrumentation/index.ts";
import type { OutboxItem } from "../../store/index.ts";
import { contentTypes } from "../../stream/codec.ts";
import type { DeadLetterReason } from "../../stream/dead-letter.ts";
import { subjects } from "../../stream/subjects.ts";

// Channel reconciliation in a ledger partition: the types and leaves LedgerOutputs (./outputs.ts) uses to
// judge a channel's report against what the partition last offered, heal the differences through its
// StockSync, and say what it did on `sluice.out.reconcile.<channel>` (docs/sync-and-erp.md#reconciliation).

/** One share of a channel's report, applied after the batch's stock changes were offered. */
export type ReconcileInput = {
  channel: string;
  snapshot: ChannelSnapshot;
  /** The share's stream sequence: a snapshot's age among those the partition remembers. */
  seq: number;
  /** Dead-letters the share (an unknown channel, a snapshot announced differently before). */
  reject: (reason: DeadLetterReason, detail: string) => void;
};

/** Settings of reconciliation (config `reconcile.*` once wired; docs/sync-and-erp.md). */
export type ReconcileOptions = {
  /** A channel's full resync when the last one finished this long ago; 0: never. */
  fullIntervalMs: number;
};

export const reconcileDefaults: ReconcileOptions = { fullIntervalMs: reconcileFullIntervalMsDefault };

/**
 * Per channel report share applied (a duplicate included), for metrics: the `channel_reconciled` event
 * (src/instrumentation), which src/stages/definition.ts emits.
 */
export type ReconcileCounted = Events["channel_reconciled"];

/** Rows of the `sync` table: ["s", channel, snapshotId] → SnapshotSeen; ["z", channel] → last full resync. */
export const snapshotKey = (channel: string, snapshotId: string) => ["s", channel, snapshotId];
export const fullResyncKey = (channel: string) => ["z", channel];

export function isSnapshotSeen(v: unknown): v is SnapshotSeen {
  const r = v as SnapshotSeen;
  return (
    typeof r === "object" &&
    r !== null &&
    typeof r.snapshotId === "string" &&
    typeof r.full === "boolean" &&
    Number.isSafeInteger(r.parts) &&
    Array.isArray(r.seen) &&
    Number.isSafeInteger(r.seq)
  );
}

/** What the partition knows of (channel, SKU): last offered, ATS now, whether a newer value waits. */
export function pairView(
  s: SkuState | undefined,
  channel: Channel,
  network: Network,
  waiting: boolean,
): PairView {
  // A SKU never seen shows 0; one healed to 0 already waits like any other value.
  if (s === undefined) return waiting ? { published: null, ats: 0, waiting } : null;
  const ats = atsOf(s.positions, s.sku, channel.sync, serving(network, channel.id).ids);
  return { published: own(s.ats, channel.id) ?? null, ats, waiting };
}

/** The report's messages for the outbox (ids assigned at commit, deterministic per partition). */
export function reportOutbox(report: ReconcileReport, messageBytesMax: number): OutboxItem[] {
  const encoder = new TextEncoder();
  return reportMessages(report, messageBytesMax).map((text) => ({
    subject: subjects.outReconcile(report.channel),
    msgId: "",
    headers: [["Content-Type", contentTypes.json]],
    data: encoder.encode(text),
  }));
}
