import type { Config } from "../../config/index.ts";
import { assert } from "../../domain/assert.ts";
import { atsOf, isUrgent } from "../../domain/channels/index.ts";
import type { LedgerEntry, SkuState } from "../../domain/ledger/index.ts";
import { type Channel, type Network, serving, syncedChannels } from "../../domain/network/index.ts";
import { own, withOwn } from "../../domain/own.ts";
import {
  type AtsItem,
  compareReported,
  type Drift,
  type PendingRow,
  type RefusedPair,
  SnapshotLog,
  type StockRequest,
  StockSync,
  stateFromRows,
  type TokenBucketState,
} from "../../domain/sync/index.ts";
import type { Instrumentation } from "../../instrumentation/index.ts";
import type { Op, OutboxItem, PartitionStore } from "../../store/index.ts";
import { contentTypes } from "../../stream/codec.ts";
import { subjects } from "../../stream/subjects.ts";
import { Envelopes } from "../envelopes.ts";
import { ErpWindow, erpTable } from "../erp-window.ts";
import type { KitsAts } from "../kits-ats.ts";
import {
  fullResyncKey,
  isSnapshotSeen,
  pairView,
  type ReconcileCounted,
  type ReconcileInput,
  type ReconcileOptions,
  reconcileDefaults,
  reportOutbox,
  snapshotKey,
} from "./reconcile.ts";

/**
 * Tables of a ledger partition's outputs to channels and the ERP (written in the batch's transaction):
 *   sync  ["p", lane, sku] → PendingRow (a value waiting to go out)   ["b", lane] → its rate bucket
 *         ["c"] → the publisher's clock   ["f", channel] → the rule a channel's ATS was computed with
 *         ["r", channel] → resync cursor (the last SKU offered again; "" at the start)
 *         ["x", lane, sku] → true: the pair's newest value was refused (sync.pendingCountMax pairs were
 *                            waiting) and must be offered again; at most one row per (channel, SKU)
 *         ["s", channel, snapshotId] → SnapshotSeen: the parts of a channel report applied (reconciliation;
 *                            the newest reconcileSnapshotsPerChannelMax per channel)
 *         ["z", channel] → when the channel's last full resync finished (the scheduled one counts from it)
 *   erp   "state" → the ERP accumulator of the open window
 */
export const outputTables = ["sync", erpTable] as const;

/** The current-stock view of a channel is its own lane: rate-bounded, one message per (channel, SKU). */
const viewLanePrefix = "\u0001view:";
const viewLane = (channel: string) => `${viewLanePrefix}${channel}`;
/** 500 items per view request: the view's per-partition budget is viewItemsPerSecondMax / 500 requests. */
const viewItemsPerRequestMax = 500;

type Emit = { ops: Op[]; outbox: OutboxItem[] };

/**
 * What a ledger partition sends besides line answers: every change of a synced channel's ATS on
 * `sluice.out.stock.<channel>` (coalesced per (channel, SKU), within the channel's rate budget, a drop to 0
 * first), the current-stock view on `sluice.view.stock.<channel>.<sku>` (bounded rate), and compacted ERP
 * batches on `sluice.out.erp`. Everything waiting is in LMDB with the batch that caused it: a crash loses
 * nothing and sends nothing twice (outbox message ids are deterministic).
 */
export class LedgerOutputs {
  private readonly sync: StockSync;
  private readonly erp: ErpWindow;
  private readonly fingerprints = new Map<string, string>();
  private readonly resyncs = new Map<string, string>();
  private readonly resyncRequested = new Set<string>();
  private rulesChecked: Network | null = null;
  /** Pairs with a row in the sync table: a pair queued and sent within one batch never gets one. */
  private readonly persisted = new Set<string>();
  /** Channel report parts applied, per channel (bounded): a part heard again changes nothing. */
  private readonly snapshots = new SnapshotLog();
  /** When each channel's last full resync finished (stored) or, never, when this process first looked. */
  private readonly fullResyncAtMs = new Map<string, number>();
  /** Reconciliation counts for metrics (src/stages/definition.ts emits them); null: nobody listens. */
  reconcileCounted: ((c: ReconcileCounted) => void) | null = null;
  /**
   * Kit ATS (docs/kits.md): the kits this partition owns are offered on each tick, when a component's version
   * rose. Null: no read view of the components here (offline admin commands, tests that build outputs alone).
   */
  kitsAts: KitsAts | null = null;
  private published = new Map<
    string,
    { requests: number; items: number; coalesced: number; throttledMs: number; refusedFull: number }
  >();

  constructor(
    private readonly partition: number,
    private readonly config: Config,
    private readonly store: PartitionStore,
    private readonly network: () => Network,
    private readonly events: Instrumentation,
    /** Writes a SKU state through the ledger stage's cache (a resync records the ATS it offered). */
    private readonly skuWritten: (s: SkuState) => void,
    private readonly reconcile: ReconcileOptions = reconcileDefaults,
  ) {
    assert(
      Number.isSafeInteger(reconcile.fullIntervalMs) && reconcile.fullIntervalMs >= 0,
      "reconcile fullIntervalMs ≥ 0",
    );
    this.sync = new StockSync(
      { flushWindowMs: config.sync.flushWindowMs, pendingCountMax: config.sync.pendingCountMax },
      (lane) => this.budgetOf(lane),
    );
    const rows: PendingRow[] = [];
    const buckets: Array<{ channel: string; bucket: TokenBucketState }> = [];
    const refused: RefusedPair[] = [];
    let clockMs = 0;
    for (const { key, value } of store.range<unknown>("sync", {})) {
      const k = key as string[];
      if (k[0] === "p") {
        rows.push(value as PendingRow);
        this.persisted.add(`${k[1]}\u0000${k[2]}`);
      } else if (k[0] === "b") buckets.push({ channel: k[1] as string, bucket: value as TokenBucketState });
      else if (k[0] === "c") clockMs = value as number;
      else if (k[0] === "f") this.fingerprints.set(k[1] as string, value as string);
      else if (k[0] === "r") this.resyncs.set(k[1] as string, value as string);
      else if (k[0] === "x") refused.push({ channel: k[1] as string, sku: k[2] as string });
      else if (k[0] === "s" && isSnapshotSeen(value)) this.snapshots.load(k[1] as string, value);
      else if (k[0] === "z") this.fullResyncAtMs.set(k[1] as string, value as number);
    }
    this.sync.importState(stateFromRows(clockMs, rows, buckets, refused));
    this.erp = new ErpWindow("ledger", partition, config, store, events);
  }

  /** A channel's budget in this partition: its share of requestsPerSecond (1/P), or the view's bound. */
  private budgetOf(lane: string) {
    const P = this.config.streams.partitionCount;
    const burstRequestsMax = this.config.sync.burstRequestsMax;
    if (lane.startsWith(viewLanePrefix)) {
      return {
        requestsPerSecond: this.config.sync.viewItemsPerSecondMax / viewItemsPerRequestMax,
        itemsPerRequestMax: viewItemsPerRequestMax,
        burstRequestsMax,
      };
    }
    const rule = this.network().channels.find((c) => c.id === lane)?.sync;
    return {
      // A channel no longer listed keeps a slow lane until its last values are out: never dropped.
      requestsPerSecond: (rule?.requestsPerSecond ?? 1) / P,
      itemsPerRequestMax: rule?.itemsPerRequestMax ?? 50,
      burstRequestsMax,
    };
  }

  /** Operators ask a channel's full resync (a new channel, or after its outage): started at the next tick. */
  requestResync(channel: string): void {
    this.resyncRequested.add(channel);
  }

  resyncing(): string[] {
    return [...this.resyncs.keys()];
  }

  /**
   * After a batch: offers the new ATS of every synced channel for each SKU the batch changed (and records it
   * in the SKU's state, which the batch writes), nets the batch's entries into the ERP window, and emits what
   * is due. `seqTo` is the batch's last stream sequence.
   */
  afterBatch(
    skus: SkuState[],
    entries: LedgerEntry[],
    nowMs: number,
    seqTo: number,
    reconciles: readonly ReconcileInput[] = [],
  ): Emit {
    const atMs = new Map<string, number>();
    for (const e of entries) atMs.set(e.sku, Math.max(atMs.get(e.sku) ?? 0, e.atMs));
    const network = this.network();
    // Rules first: a rule set in force for less than a tick still resyncs what it changed.
    const ops: Op[] = [];
    this.checkRules(ops);
    this.scheduleFullResyncs(nowMs, ops);
    // A resync moves on with every batch too (a page each), so sustained input never stalls it. It reads
    // committed states, so this batch's own (not yet committed) states stand in for theirs, and the resync
    // and the re-offers build on each other's writes (one map).
    const written = new Map(skus.map((s) => [s.sku, s]));
    this.resyncStep(nowMs, ops, written);
    const channels = syncedChannels(network);
    for (const s of skus) this.offerAts(s, channels, network, atMs.get(s.sku) ?? nowMs, nowMs, false);
    this.reofferRefused(nowMs, ops, written);
    const reports: OutboxItem[] = [];
    for (const r of reconciles) this.reconcileShare(r, nowMs, ops, reports, written);
    this.erp.addEntries(entries);
    const out = this.emit(nowMs, seqTo);
    return { ops: [...ops, ...out.ops], outbox: [...reports, ...out.outbox] };
  }

  /** Due by time alone: stock values whose window passed or budget returned, ERP windows, resync steps. */
  tick(nowMs: number, busy = false): Emit | null {
    const ops: Op[] = [];
    this.checkRules(ops);
    this.scheduleFullResyncs(nowMs, ops);
    const written = new Map<string, SkuState>();
    this.resyncStep(nowMs, ops, written);
    this.reofferRefused(nowMs, ops, written);
    this.offerKits(nowMs);
    // Batches are flowing and will take what is due: a commit of its own only for rule work.
    if (busy && ops.length === 0) return null;
    const due = this.sync.nextDueMs(nowMs);
    const idle = ops.length === 0 && !this.sync.hasChanges() && !this.erp.due(nowMs);
    if (idle && (due === null || due > nowMs)) return null;
    const out = this.emit(nowMs, this.store.streamSeqLastApplied());
    return { ops: [...ops, ...out.ops], outbox: out.outbox };
  }

  /**
   * Offers the SKU's ATS to each channel; returns whether its state changed and whether a channel refused.
   * `SkuState.ats` is what each channel was last offered: a refused value is not recorded (the pair is marked
   * refused instead, in StockSync, and offered again when there is room).
   */
  private offerAts(
    s: SkuState,
    channels: Channel[],
    network: Network,
    atMs: number,
    nowMs: number,
    force: boolean,
  ): { changed: boolean; refused: boolean } {
    let changed = false;
    let refused = false;
    for (const c of channels) {
      const ats = atsOf(s.positions, s.sku, c.sync, serving(network, c.id).ids);
      const previous = own(s.ats, c.id);
      if (!force && previous === ats) {
        // Back to what the channel was last offered: a value refused in between has nothing left to send.
        this.sync.forgetRefused(c.id, s.sku);
        continue;
      }
      const item: AtsItem = { sku: s.sku, ats, version: s.version, atMs };
      const result = this.sync.offer(c.id, item, nowMs, isUrgent(previous ?? null, ats));
      // Full: the SKU's recorded ATS stays as it was; StockSync marks the pair (a row of the sync table) and
      // reofferRefused offers it again once there is room, also after a restart.
      if (result === "refused_full") {
        refused = true;
        continue;
      }
      if (previous !== ats) {
        s.ats = withOwn(s.ats, c.id, ats);
        changed = true;
      }
    }
    return { changed, refused };
  }

  /**
   * Kits whose version rose since last offered (a component changed, here or in another partition): their ATS
   * per channel goes through the same coalescer and budget as any SKU's; a drop to 0 is urgent (no state holds
   * a kit's last offered value). A value the full queue refused is offered again on the next tick.
   */
  private offerKits(nowMs: number): void {
    if (this.kitsAts === null) return;
    for (const { channel, item } of this.kitsAts.due(this.partition, nowMs)) {
      if (this.sync.offer(channel, item, nowMs, item.ats === 0) === "refused_full")
        this.kitsAts.forget(item.sku);
    }
  }

  /** A channel whose rule or feeding warehouses changed is resynced: its ATS may differ for every SKU. */
  private checkRules(ops: Op[]): void {
    const network = this.network();
    if (network === this.rulesChecked && this.resyncRequested.size === 0) return;
    if (network !== this.rulesChecked) this.kitsAts?.forgetAll(); // the catalog or a channel may differ
    this.rulesChecked = network;
    for (const c of syncedChannels(network)) {
      const fp = JSON.stringify([c.sync, serving(network, c.id).ids]);
      if (this.fingerprints.get(c.id) === fp && !this.resyncRequested.has(c.id)) continue;
      this.fingerprints.set(c.id, fp);
      ops.push({ op: "put", table: "sync", key: ["f", c.id], value: fp });
      this.resyncs.set(c.id, "");
      ops.push({ op: "put", table: "sync", key: ["r", c.id], value: "" });
    }
    this.resyncRequested.clear();
  }

  /** Whether a channel's lane is short enough to take a resync page (about a burst of requests' worth). */
  private roomFor(channel: Channel): boolean {
    const burst = channel.sync.itemsPerRequestMax * this.config.sync.burstRequestsMax;
    const pageMax = this.config.sync.resyncSkusPerTickMax;
    return (
      this.sync.pendingIn(channel.id) <= burst &&
      this.sync.pendingCount + pageMax <= this.config.sync.pendingCountMax
    );
  }

  /**
   * Pairs refused while the queue was full (marked in StockSync, rows of the sync table), offered again with
   * their ATS recomputed now, as far as there is room: at most sync.resyncSkusPerTickMax per batch or tick,
   * oldest refusal first. Not forced: a value equal to the one the channel was last offered only clears the
   * mark. `written`: SKU states this batch or tick already changed (they stand in for the committed ones).
   */
  private reofferRefused(nowMs: number, ops: Op[], written: Map<string, SkuState>): void {
    if (this.sync.refusedCount === 0) return;
    const room = this.config.sync.pendingCountMax - this.sync.pendingCount;
    if (room <= 0) return;
    const network = this.network();
    const channels = new Map(syncedChannels(network).map((c) => [c.id, c]));
    for (const { channel: lane, sku } of this.sync.refusedPairs(
      Math.min(room, this.config.sync.resyncSkusPerTickMax),
    )) {
      const channel = channels.get(lane);
      const s = written.get(sku) ?? this.store.get<SkuState>("skus", sku);
      // A channel no longer synced has nothing to be offered; an unknown SKU has no ATS.
      if (channel === undefined || s === undefined) {
        this.sync.forgetRefused(lane, sku);
        continue;
      }
      const offered = this.offerAts(s, [channel], network, nowMs, nowMs, false);
      // Each offer takes at most one of the `room` places counted above: none is refused again.
      assert(!offered.refused, "a refused pair offered again with room is queued");
      if (offered.changed) {
        ops.push({ op: "put", table: "skus", key: s.sku, value: s });
        written.set(s.sku, s);
        this.skuWritten(s);
      }
    }
  }

  /**
   * Offers again, at most sync.resyncSkusPerTickMax SKUs per tick, the ATS of every SKU of a channel.
   * `written`: SKU states rewritten in this batch or tick, added to here: a second channel's resync must build
   * on the first's write, not on the committed state (else the first channel's recorded ATS is lost and a
   * later change is not sent).
   */
  private resyncStep(nowMs: number, ops: Op[], written: Map<string, SkuState>): void {
    if (this.resyncs.size === 0) return;
    const network = this.network();
    for (const [channelId, after] of this.resyncs) {
      const channel = syncedChannels(network).find((c) => c.id === channelId);
      // Paced by the channel's budget: the next page only once what waits is about a burst's worth, so
      // live changes never queue behind the whole catalogue.
      if (channel !== undefined && !this.roomFor(channel)) continue;
      const page =
        channel === undefined
          ? []
          : // No `start` key at all from the beginning: `start: undefined` would include LMDB's structures key.
            this.store.range<SkuState>(
              "skus",
              after === ""
                ? { limit: this.config.sync.resyncSkusPerTickMax }
                : { start: after, limit: this.config.sync.resyncSkusPerTickMax + 1 },
            );
      const skus = page
        .filter(({ key }) => key !== after)
        .map(({ value }) => written.get(value.sku) ?? value);
      let last: string | undefined;
      for (const s of skus) {
        if (channel === undefined) break;
        const offered = this.offerAts(s, [channel], network, nowMs, nowMs, true);
        if (offered.changed) {
          ops.push({ op: "put", table: "skus", key: s.sku, value: s });
          written.set(s.sku, s);
          this.skuWritten(s);
        }
        if (offered.refused) break; // the cursor stays before it: the resync resumes there
        last = s.sku;
      }
      if (last === undefined && skus.length > 0) continue; // refused at its first SKU: try again later
      if (last === undefined) {
        this.resyncs.delete(channelId);
        ops.push({ op: "delete", table: "sync", key: ["r", channelId] });
        // The scheduled full reconciliation counts from the last full resync, whatever started it.
        this.fullResyncAtMs.set(channelId, nowMs);
        ops.push({ op: "put", table: "sync", key: fullResyncKey(channelId), value: nowMs });
        this.events.emit("stock_resynced", { partition: this.partition, channel: channelId });
      } else {
        this.resyncs.set(channelId, last);
        ops.push({ op: "put", table: "sync", key: ["r", channelId], value: last });
      }
    }
  }

  /** Starts a channel's resync (every SKU offered again, paced), unless one is running. */
  private startResync(channel: string, ops: Op[]): void {
    if (this.resyncs.has(channel)) return;
    this.resyncs.set(channel, "");
    ops.push({ op: "put", table: "sync", key: ["r", channel], value: "" });
  }

  /**
   * The scheduled full reconciliation: a channel whose last full resync finished reconcile.fullIntervalMs ago
   * is resynced (the existing paced resync: every SKU's ATS offered again within the channel's budget). A
   * channel never resynced in this store counts from when this process first looked (kept in memory only, so
   * an idle partition writes nothing for it).
   */
  private scheduleFullResyncs(nowMs: number, ops: Op[]): void {
    const intervalMs = this.reconcile.fullIntervalMs;
    if (intervalMs === 0) return;
    for (const c of syncedChannels(this.network())) {
      const lastMs = this.fullResyncAtMs.get(c.id);
      if (lastMs === undefined) {
        // Stored, so a node restarted more often than the interval still reaches its first full resync.
        this.fullResyncAtMs.set(c.id, nowMs);
        ops.push({ op: "put", table: "sync", key: fullResyncKey(c.id), value: nowMs });
      } else if (nowMs - lastMs >= intervalMs && !this.resyncs.has(c.id)) {
        this.startResync(c.id, ops);
        // Not due again while this one runs, nor right after a restart in the middle of it.
        this.fullResyncAtMs.set(c.id, nowMs);
        ops.push({ op: "put", table: "sync", key: fullResyncKey(c.id), value: nowMs });
      }
    }
  }

  /**
   * One partition's share of a channel's report: each listed SKU against what the channel was last offered;
   * each drifted one is offered its current ATS again (once; within the channel's budget like any value),
   * while the stock queue has room (the rest is `deferred`: the next report finds it again). A part heard
   * before changes nothing; a full snapshot whose parts have all been heard starts the channel's resync here
   * (what it did not list is offered again too). What it found goes out on `sluice.out.reconcile.<channel>`.
   */
  private reconcileShare(
    r: ReconcileInput,
    nowMs: number,
    ops: Op[],
    outbox: OutboxItem[],
    written: Map<string, SkuState>,
  ): void {
    const network = this.network();
    const channel = syncedChannels(network).find((c) => c.id === r.channel);
    if (channel === undefined) {
      r.reject(
        "unknown_channel",
        `channel ${JSON.stringify(r.channel)} is not synced: only channels listed by id under [[channels]] are reconciled`,
      );
      return;
    }
    const admission = this.snapshots.admit(channel.id, r.snapshot, r.seq);
    if (admission.kind === "conflict") {
      r.reject("invalid_command", admission.detail);
      return;
    }
    if (admission.kind === "duplicate") {
      this.countReconciled(channel.id, null, [], 0);
      return;
    }
    ops.push({
      op: "put",
      table: "sync",
      key: snapshotKey(channel.id, r.snapshot.snapshotId),
      value: admission.row,
    });
    for (const id of admission.evicted)
      ops.push({ op: "delete", table: "sync", key: snapshotKey(channel.id, id) });
    const stateOf = (sku: string) => written.get(sku) ?? this.store.get<SkuState>("skus", sku);
    const comparison = compareReported(r.snapshot.items, (sku) =>
      pairView(stateOf(sku), channel, network, this.sync.isWaiting(channel.id, sku)),
    );
    const healed: Drift[] = [];
    let deferred = 0;
    for (const d of comparison.drifted) {
      if (this.heal(channel.id, d, stateOf(d.sku), nowMs, ops, written)) healed.push(d);
      else deferred++;
    }
    if (admission.complete) this.startResync(channel.id, ops);
    this.countReconciled(channel.id, comparison, healed, deferred);
    const { snapshotId, full, part, parts } = r.snapshot;
    if (comparison.reported === 0 && !admission.complete) return; // a full part with nothing of ours
    const report = {
      channel: channel.id,
      snapshotId,
      full,
      part,
      parts,
      partition: this.partition,
      reported: comparison.reported,
      matched: comparison.matched,
      inFlight: comparison.inFlight,
      drifted: comparison.drifted.length,
      healed,
      deferred,
      resync: admission.complete,
      atMs: nowMs,
    };
    outbox.push(...reportOutbox(report, this.config.streams.messageBytesMax));
  }

  /**
   * Offers a drifted pair its current ATS: not urgent unless the channel shows more than it may sell (an
   * oversell in the making) or the ATS is 0. False when the queue is full (not marked refused: the value the
   * channel was last offered is unchanged, so a mark would be cleared at once; the next report finds it).
   */
  private heal(
    channel: string,
    d: Drift,
    s: SkuState | undefined,
    nowMs: number,
    ops: Op[],
    written: Map<string, SkuState>,
  ): boolean {
    if (this.sync.pendingCount >= this.config.sync.pendingCountMax) return false;
    // A SKU this partition never saw shows 0 at version 0: no value of it was ever sent with a higher one.
    const item: AtsItem = { sku: d.sku, ats: d.ats, version: s?.version ?? 0, atMs: nowMs };
    const result = this.sync.offer(channel, item, nowMs, d.reported > d.ats || d.ats === 0);
    // compareReported judged a waiting pair in flight, so a drifted one is never waiting: it is queued.
    assert(result === "queued", "a healed pair is queued");
    if (s !== undefined && own(s.ats, channel) !== d.ats) {
      s.ats = withOwn(s.ats, channel, d.ats);
      ops.push({ op: "put", table: "skus", key: s.sku, value: s });
      written.set(s.sku, s);
      this.skuWritten(s);
    }
    return true;
  }

  private countReconciled(
    channel: string,
    c: { reported: number; matched: number; inFlight: number } | null,
    healed: Drift[],
    deferred: number,
  ): void {
    this.reconcileCounted?.({
      partition: this.partition,
      channel,
      reported: c?.reported ?? 0,
      matched: c?.matched ?? 0,
      inFlight: c?.inFlight ?? 0,
      drifted: healed.length + deferred,
      healed: healed.length,
      deferred,
      duplicate: c === null,
    });
  }

  private emit(nowMs: number, seqTo: number): Emit {
    const ops: Op[] = [];
    const outbox: OutboxItem[] = [];
    for (const request of this.sync.take(nowMs)) this.send(request, nowMs, outbox);
    this.erp.emit(nowMs, seqTo, ops, outbox);
    const changes = this.sync.takeChanges();
    for (const r of changes.refused) {
      const key = ["x", r.channel, r.sku];
      ops.push(
        r.refused ? { op: "put", table: "sync", key, value: true } : { op: "delete", table: "sync", key },
      );
    }
    for (const p of changes.pending) {
      const key = ["p", p.channel, p.sku];
      const name = `${p.channel}\u0000${p.sku}`;
      if (p.row !== null) {
        ops.push({ op: "put", table: "sync", key, value: p.row });
        this.persisted.add(name);
      } else if (this.persisted.delete(name)) ops.push({ op: "delete", table: "sync", key });
    }
    if (changes.pending.length > 0 || outbox.length > 0) {
      for (const b of changes.buckets)
        ops.push({ op: "put", table: "sync", key: ["b", b.channel], value: b.bucket });
      ops.push({ op: "put", table: "sync", key: ["c"], value: changes.clockMs });
    }
    this.countPublished();
    return { ops, outbox };
  }

  /** One request: one message on the channel's subject (split further only if it would pass max payload). */
  private send(request: StockRequest, nowMs: number, outbox: OutboxItem[]): void {
    if (request.channel.startsWith(viewLanePrefix)) {
      const channel = request.channel.slice(viewLanePrefix.length);
      for (const item of request.items) {
        outbox.push({
          subject: subjects.stockView(channel, item.sku),
          msgId: "",
          headers: [["Content-Type", contentTypes.json]],
          data: new TextEncoder().encode(JSON.stringify(item)),
        });
      }
      return;
    }
    const envelopes = new Envelopes(request.items.length, this.config.streams.messageBytesMax);
    for (const item of request.items) {
      envelopes.add(subjects.outStock(request.channel), item, true);
      this.events.emit("stock_delta", {
        channel: request.channel,
        latencySeconds: Math.max(0, nowMs - item.atMs) / 1000,
      });
      // The view follows what channels were sent, at its own bounded rate, in at most half the queue (it
      // catches up with the SKU's next change): channel values always find room.
      if (this.sync.pendingCount < this.config.sync.pendingCountMax / 2)
        this.sync.offer(viewLane(request.channel), item, nowMs, false);
    }
    outbox.push(...envelopes.drain());
  }

  /** Counter deltas since the last report, per channel (the view's own lane is not a channel). */
  private countPublished(): void {
    for (const [lane, c] of Object.entries(this.sync.counters())) {
      if (lane.startsWith(viewLanePrefix)) continue;
      const last = this.published.get(lane);
      const now = {
        requests: c.requests,
        items: c.published,
        coalesced: c.coalesced,
        throttledMs: c.throttledMs,
        refusedFull: c.refusedFull,
      };
      if (last !== undefined && Object.entries(now).every(([k, v]) => last[k as keyof typeof now] === v))
        continue;
      const before = last ?? { requests: 0, items: 0, coalesced: 0, throttledMs: 0, refusedFull: 0 };
      this.events.emit("stock_counted", {
        channel: lane,
        requests: now.requests - before.requests,
        items: now.items - before.items,
        coalesced: now.coalesced - before.coalesced,
        throttledSeconds: (now.throttledMs - before.throttledMs) / 1000,
        refusedFull: now.refusedFull - before.refusedFull,
      });
      this.published.set(lane, now);
    }
  }

  pendingCount(): number {
    return this.sync.pendingCount;
  }

  /** (channel, SKU) pairs whose refused value waits to be offered again. */
  refusedCount(): number {
    return this.sync.refusedCount;
  }
}
