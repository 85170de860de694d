// The audit a cluster test ends with, through what Sluice stored and serves (not what a test happened to
// see): every order final exactly once, outputs per order gap-free by version (bench/harness/chaos.ts's
// checkOrderOutputs), reserved stock equal to the allocated lines, no oversell, each node's ledger partitions
// consistent, ERP chains unbroken per (stage, partition) across owners.
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { checkOrderOutputs, type OrderOutput } from "../../bench/harness/chaos.ts";
import type { ErpBatch } from "../../src/domain/erp/types.ts";
import { streamNames } from "../../src/stream/subjects.ts";

type Line = { sku: string; qty: number; state: string };
type ErpLink = Pick<
  ErpBatch,
  "stage" | "partition" | "storeId" | "batchNo" | "seqFrom" | "seqTo" | "prevSeqTo"
> & {
  part?: number;
};
type Outputs = {
  byOrder: Map<string, OrderOutput[]>;
  lastLines: Map<string, Line[]>;
  erp: ErpLink[];
};

/** Every status, fulfilment and ERP item in SLUICE_OUT (an ordered consumer over the whole stream). */
export async function readOutputs(nc: NatsConnection, channel: string): Promise<Outputs> {
  const out: Outputs = { byOrder: new Map(), lastLines: new Map(), erp: [] };
  const top = new Map<string, number>();
  const jsm = await jetstreamManager(nc);
  if ((await jsm.streams.info(streamNames.out)).state.messages === 0) return out;
  const consumer = await jetstream(nc).consumers.get(streamNames.out);
  const dec = new TextDecoder();
  try {
    for (;;) {
      const batch = await consumer.fetch({ max_messages: 1000, expires: 2000 });
      let got = 0;
      let pending = 1;
      for await (const m of batch) {
        got++;
        pending = m.info.pending;
        const body = JSON.parse(dec.decode(m.data)) as Record<string, unknown> & {
          items?: Record<string, unknown>[];
        };
        if (m.subject === "sluice.out.erp") {
          out.erp.push(body as unknown as ErpLink);
          continue;
        }
        const status = m.subject === `sluice.out.order.${channel}`;
        if (!status && !m.subject.startsWith("sluice.out.fulfil.")) continue;
        for (const item of body.items ?? []) {
          const key = String(item.orderKey);
          const version = Number(item.version);
          const json = String(Bun.hash(JSON.stringify(item)));
          const list = out.byOrder.get(key) ?? [];
          out.byOrder.set(key, list);
          if (status) {
            list.push({
              kind: "status",
              version,
              json,
              status: String(item.status),
              event: String(item.event),
            });
            if (version >= (top.get(key) ?? 0)) {
              top.set(key, version);
              out.lastLines.set(
                key,
                ((item.lines as Line[]) ?? []).map((l) => ({ sku: l.sku, qty: l.qty, state: l.state })),
              );
            }
          } else {
            const lineIds = ((item.lines as { lineId: string }[]) ?? []).map((l) => String(l.lineId));
            list.push({ kind: "fulfil", version, json, type: String(item.type), lineIds });
          }
        }
      }
      if (got === 0 || pending === 0) break;
    }
  } finally {
    await consumer.delete().catch(() => undefined);
  }
  return out;
}

type Position = { onHand: number; reserved: number; available: number };

/** A SKU's positions from whichever node runs its ledger partition (the others answer 503). */
async function stockOf(httpPorts: readonly number[], sku: string): Promise<Record<string, Position> | null> {
  for (const port of httpPorts) {
    const res = await fetch(`http://127.0.0.1:${port}/v1/stock/${encodeURIComponent(sku)}`);
    if (res.status === 200) return ((await res.json()) as { positions: Record<string, Position> }).positions;
    if (res.status === 404) return {};
  }
  return null;
}

export type ClusterAudit = {
  problems: string[];
  orders: number;
  finals: Record<string, number>;
  erpBatches: number;
};

export type AuditInput = {
  nc: NatsConnection;
  httpPorts: readonly number[];
  channel: string;
  orderKeys: readonly string[];
  skus: readonly string[];
  finalStatuses: ReadonlySet<string>;
};

/** The audit, run again every `intervalMs` until it passes or `waitMs` ran out (the last orders settle). */
export async function auditUntilPassed(
  input: AuditInput,
  waitMs: number,
  intervalMs = 500,
): Promise<ClusterAudit> {
  const deadline = Date.now() + waitMs;
  let audit = await auditOnce(input);
  while (audit.problems.length > 0 && Date.now() < deadline) {
    await Bun.sleep(intervalMs);
    audit = await auditOnce(input);
  }
  return audit;
}

/** One audit; a read that fails (a NATS request timing out while a restarted server rejoins, an HTTP port
 * not answering yet) is a problem of this round, to be read again, not the end of the test. */
async function auditOnce(input: AuditInput): Promise<ClusterAudit> {
  try {
    return await auditCluster(input);
  } catch (err) {
    return { problems: [`the audit could not read: ${String(err)}`], orders: 0, finals: {}, erpBatches: 0 };
  }
}

export async function auditCluster(input: AuditInput): Promise<ClusterAudit> {
  const problems: string[] = [];
  const outputs = await readOutputs(input.nc, input.channel);
  const finals: Record<string, number> = {};
  for (const key of input.orderKeys) {
    const list = outputs.byOrder.get(key);
    if (list === undefined) {
      problems.push(`${key}: no output at all (lost)`);
      continue;
    }
    const r = checkOrderOutputs(list);
    for (const p of r.problems) problems.push(`${key}: ${p}`);
    const status = r.finalStatus ?? "none";
    finals[status] = (finals[status] ?? 0) + 1;
    if (!input.finalStatuses.has(status)) problems.push(`${key}: last status ${status} is not final`);
  }
  // Reserved = the units of allocated lines in the orders' last statuses: a reservation applied twice or lost shows.
  const allocated = new Map<string, number>(input.skus.map((s) => [s, 0]));
  for (const lines of outputs.lastLines.values())
    for (const l of lines)
      if (l.state === "allocated" || l.state === "released")
        allocated.set(l.sku, (allocated.get(l.sku) ?? 0) + l.qty);
  for (const [sku, units] of allocated) {
    const positions = await stockOf(input.httpPorts, sku);
    if (positions === null) {
      problems.push(`${sku}: no node serves its ledger partition`);
      continue;
    }
    let reserved = 0;
    for (const [w, p] of Object.entries(positions)) {
      reserved += p.reserved;
      if (p.available < 0 || p.reserved > p.onHand)
        problems.push(`${sku}@${w}: oversold (${JSON.stringify(p)})`);
    }
    if (reserved !== units) problems.push(`${sku}: reserved ${reserved}, allocated lines hold ${units}`);
  }
  for (const port of input.httpPorts) {
    const res = await fetch(`http://127.0.0.1:${port}/v1/ledger/check`);
    const body = (await res.json()) as { consistent?: boolean };
    if (res.status === 200 && body.consistent !== true)
      problems.push(`node :${port}: ledger check inconsistent`);
  }
  problems.push(...erpChainProblems(outputs.erp));
  return { problems, orders: input.orderKeys.length, finals, erpBatches: outputs.erp.length };
}

/**
 * ERP chains per (stage, partition): within a store, batchNo runs 1, 2, 3… and each prevSeqTo is the previous
 * seqTo; a new owner's store starts a new chain at batchNo 1 whose prevSeqTo is the seqTo of a batch already
 * published for the partition (docs/sync-and-erp.md: a new chain, not a gap).
 */
export function erpChainProblems(batches: Outputs["erp"]): string[] {
  const problems: string[] = [];
  const chains = new Map<string, Map<number, ErpLink>>();
  for (const b of batches) {
    if ((b.part ?? 1) !== 1) continue;
    const key = `${b.stage}-${b.partition}:${b.storeId}`;
    const chain = chains.get(key) ?? new Map();
    chains.set(key, chain);
    const had = chain.get(b.batchNo);
    if (had !== undefined && (had.seqFrom !== b.seqFrom || had.seqTo !== b.seqTo))
      problems.push(`ERP ${key} batch ${b.batchNo} published twice with different ranges`);
    chain.set(b.batchNo, b);
  }
  const seqTosOf = new Map<string, Set<number>>();
  for (const [key, chain] of chains) {
    const partition = key.split(":")[0] as string;
    const set = seqTosOf.get(partition) ?? new Set([0]);
    seqTosOf.set(partition, set);
    for (const b of chain.values()) set.add(b.seqTo);
  }
  for (const [key, chain] of chains) {
    const partition = key.split(":")[0] as string;
    const nos = [...chain.keys()].sort((a, b) => a - b);
    for (let i = 0; i < nos.length; i++) {
      const b = chain.get(nos[i] as number) as ErpLink;
      if (b.batchNo !== i + 1) {
        problems.push(`ERP ${key}: batch ${i + 1} missing (next is ${b.batchNo})`);
        break;
      }
      const prev = i === 0 ? null : (chain.get(i) as ErpLink);
      if (prev !== null && b.prevSeqTo !== prev.seqTo)
        problems.push(
          `ERP ${key}: batch ${b.batchNo} prevSeqTo ${b.prevSeqTo} ≠ batch ${prev.batchNo} seqTo ${prev.seqTo}`,
        );
      if (prev === null && !(seqTosOf.get(partition) as Set<number>).has(b.prevSeqTo))
        problems.push(
          `ERP ${key}: chain starts after seqTo ${b.prevSeqTo}, which no batch of ${partition} ended at`,
        );
    }
  }
  return problems;
}
