// The correctness audit at the end of a run, through Sluice's HTTP API (docs/http.md) and what the observer
// saw: ledger consistent, no oversell, every accepted order in a final state, the last published ATS equal
// to the ATS computed from the positions, no dead letters. With several nodes (--nodes) each SKU and order is
// read from the node that runs its partition (sluice-http.ts), and the ledger check of every node is merged.

import type { Observer } from "./observe.ts";
import { limits } from "./options.ts";
import type { SluiceHttp } from "./sluice-http.ts";
import { hotSku } from "./workload.ts";

export type AuditCheck = {
  name: string;
  /** null: could not be checked in this run (the detail says why). */
  passed: boolean | null;
  detail: string;
  examples?: string[];
};

export type Audit = {
  passed: boolean;
  checks: AuditCheck[];
  /** Accepted orders by their last observed status ("unseen": no status observed). */
  statuses: Record<string, number>;
  hot: {
    sku: string;
    stock: number;
    unitsOffered: number;
    reserved: number;
    onHand: number;
    allocatedObserved: number;
  }[];
};

export type AuditInput = {
  /** Sluice's HTTP API: one process, or every node of a cluster. */
  http: SluiceHttp;
  /** Ledger partitions: the merged ledger checks must cover each exactly once. */
  partitionCount: number;
  observer: Observer;
  /** Orders 0 … sent−1 were published; those in `failed` were not accepted. */
  sent: number;
  failed: ReadonlySet<number>;
  finalStatuses: ReadonlySet<string>;
  hot: { skus: number; stock: number; unitsOffered: Record<string, number> } | null;
  deadLettersByReason: Record<string, number>;
  /** The first dead letters seen on sluice.dlq.>: reason, detail, source subject. */
  deadLetterExamples: string[];
  /** The run seeded more stock than it can order (all but hot-sku): any refusal is a finding. */
  stockAmple: boolean;
  /** chaos: each order's last status as read back from SLUICE_OUT (the observer misses outputs during faults). */
  statusOf?: (n: number) => string | null;
  /** chaos: checks of its own (lost, doubled, version gaps, reservations), listed after the ledger's. */
  extraChecks?: AuditCheck[];
};

type Position = {
  onHand: number;
  reserved: number;
  damaged: number;
  qualityControl: number;
  safetyStock: number;
  available: number;
};
type StockBody = { sku: string; version: number; positions: Record<string, Position> };
type CheckBody = {
  consistent: boolean;
  partitions: {
    partition: number;
    skus: number;
    entries: number;
    mismatches: unknown[];
    oversold: unknown[];
    versionGaps: unknown[];
  }[];
};

/** Runs `work` over `items`, at most `limits.auditConcurrencyMax` at a time. */
export async function pool<T, R>(items: T[], work: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await work(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limits.auditConcurrencyMax, items.length) }, worker));
  return out;
}

export async function runAudit(input: AuditInput): Promise<Audit> {
  const http = input.http;
  const checks: AuditCheck[] = [];
  const ledger = await ledgerChecks(http, input.partitionCount);
  checks.push(...ledger);
  checks.push(...(input.extraChecks ?? []));
  const hot = input.hot === null ? [] : await hotChecks(http, input, checks);
  const statuses = await finalStateCheck(http, input, checks);
  if (input.stockAmple) {
    const refused =
      (statuses.rejected ?? 0) + (statuses.backordered ?? 0) + (statuses.partially_allocated ?? 0);
    checks.push({
      name: "no order refused while stock was ample",
      passed: refused === 0,
      detail:
        refused === 0
          ? "every order line found stock (the bench seeds more than the run can order)"
          : `${refused} orders rejected, backordered or partly allocated although stock was seeded for every line: a routing filter (capacity, cut-off, minimum stock) or a seeding problem`,
    });
  }
  checks.push(await atsCheck(http, input.observer));
  const dead = Object.entries(input.deadLettersByReason).filter(([, n]) => n > 0);
  checks.push({
    name: "no dead letters",
    passed: dead.length === 0,
    detail:
      dead.length === 0
        ? "no input of this run was dead-lettered"
        : `dead letters during the run: ${dead.map(([r, n]) => `${r} ${n}`).join(", ")} (sluice_dead_letters_total)`,
    examples: input.deadLetterExamples,
  });
  return { passed: checks.every((c) => c.passed !== false), checks, statuses, hot };
}

async function ledgerChecks(http: SluiceHttp, partitionCount: number): Promise<AuditCheck[]> {
  const fail = (detail: string): AuditCheck[] => [
    { name: "ledger consistent", passed: false, detail },
    { name: "no oversell", passed: false, detail },
  ];
  let answers: Awaited<ReturnType<typeof http.everyNode<CheckBody>>>;
  try {
    answers = await http.everyNode<CheckBody>("/v1/ledger/check", limits.ledgerCheckTimeoutMs);
  } catch (error) {
    return fail(`GET /v1/ledger/check failed: ${(error as Error).message}`);
  }
  const bad = answers.find((a) => a.body === null || !Array.isArray(a.body.partitions));
  if (bad !== undefined) return fail(`GET ${bad.url} answered ${bad.status} without a report`);
  // Each node checks the ledger partitions it runs: together they must cover every partition once.
  const body: CheckBody = {
    consistent: answers.every((a) => a.body?.consistent === true),
    partitions: answers.flatMap((a) => a.body?.partitions ?? []),
  };
  const seen = new Map<number, number>();
  for (const p of body.partitions) seen.set(p.partition, (seen.get(p.partition) ?? 0) + 1);
  const twice = [...seen].filter(([, n]) => n > 1).map(([p]) => p);
  const missing = Array.from({ length: partitionCount }, (_, p) => p).filter((p) => !seen.has(p));
  const coverage =
    twice.length === 0 && missing.length === 0
      ? ""
      : `; ${missing.length > 0 ? `partitions checked by no node: ${missing.join(", ")}` : ""}${missing.length > 0 && twice.length > 0 ? "; " : ""}${twice.length > 0 ? `partitions checked by two nodes: ${twice.join(", ")}` : ""}`;
  const nodes = answers.length > 1 ? `, ${answers.length} nodes` : "";
  const sum = (f: (p: CheckBody["partitions"][number]) => number) =>
    body.partitions.reduce((n, p) => n + f(p), 0);
  const mismatches = sum((p) => p.mismatches.length);
  const gaps = sum((p) => p.versionGaps.length);
  const oversold = sum((p) => p.oversold.length);
  return [
    {
      name: "ledger consistent",
      passed: body.consistent && mismatches === 0 && gaps === 0 && coverage === "",
      detail: `positions rebuilt from ${sum((p) => p.entries)} entries of ${sum((p) => p.skus)} SKUs in ${body.partitions.length} partitions${nodes}: ${mismatches} mismatches, ${gaps} version gaps (GET /v1/ledger/check)${coverage}`,
    },
    {
      name: "no oversell",
      passed: oversold === 0,
      detail: `${oversold} positions with reserved + held back > onHand (GET /v1/ledger/check)`,
      examples: body.partitions
        .flatMap((p) => p.oversold.map((o) => JSON.stringify(o)))
        .slice(0, limits.examplesMax),
    },
  ];
}

async function hotChecks(http: SluiceHttp, input: AuditInput, checks: AuditCheck[]): Promise<Audit["hot"]> {
  const hot = input.hot as NonNullable<AuditInput["hot"]>;
  const skus = Array.from({ length: hot.skus }, (_, i) => hotSku(i));
  const bodies = await pool(skus, (sku) => http.get<StockBody>(`/v1/stock/${encodeURIComponent(sku)}`));
  const rows: Audit["hot"] = [];
  const problems: string[] = [];
  for (const [i, sku] of skus.entries()) {
    const positions = Object.values(bodies[i]?.body?.positions ?? {});
    const reserved = positions.reduce((n, p) => n + p.reserved, 0);
    const onHand = positions.reduce((n, p) => n + p.onHand, 0);
    const heldBack = positions.reduce((n, p) => n + p.damaged + p.qualityControl + p.safetyStock, 0);
    const unitsOffered = hot.unitsOffered[sku] ?? 0;
    const allocatedObserved = input.observer.allocatedUnits.get(sku) ?? 0;
    rows.push({ sku, stock: hot.stock, unitsOffered, reserved, onHand, allocatedObserved });
    if (reserved + heldBack > onHand)
      problems.push(`${sku}: reserved ${reserved} + held ${heldBack} > onHand ${onHand}`);
    if (allocatedObserved > hot.stock)
      problems.push(`${sku}: ${allocatedObserved} units allocated in statuses > stock ${hot.stock}`);
    const expected = Math.min(hot.stock, unitsOffered);
    if (reserved !== expected)
      problems.push(
        `${sku}: reserved ${reserved}, expected min(stock ${hot.stock}, demand ${unitsOffered}) = ${expected}`,
      );
  }
  checks.push({
    name: "hot SKUs sold to the last unit, never beyond",
    passed: problems.length === 0,
    detail:
      problems.length === 0
        ? `${skus.length} hot SKUs: reserved = min(stock, units ordered) for each, reserved ≤ onHand (GET /v1/stock)`
        : `${problems.length} hot SKUs wrong`,
    examples: problems.slice(0, limits.examplesMax),
  });
  return rows;
}

async function finalStateCheck(
  http: SluiceHttp,
  input: AuditInput,
  checks: AuditCheck[],
): Promise<Record<string, number>> {
  const statuses: Record<string, number> = {};
  const notFinal: number[] = [];
  for (let n = 0; n < input.sent; n++) {
    if (input.failed.has(n)) continue;
    const status = input.statusOf?.(n) ?? input.observer.statusOf(n) ?? "unseen";
    statuses[status] = (statuses[status] ?? 0) + 1;
    if (!input.finalStatuses.has(status)) notFinal.push(n);
  }
  // The observer may have missed an output (it reads a core subscription): ask Sluice about the open ones.
  const toAsk = notFinal.filter((n) => input.observer.openKeys.has(n)).slice(0, limits.auditOrdersFetchMax);
  const answers = await pool(toAsk, async (n) => {
    const key = input.observer.openKeys.get(n) as string;
    const dot = key.indexOf(".");
    try {
      const r = await http.get<{ status?: string }>(`/v1/orders/${key.slice(0, dot)}/${key.slice(dot + 1)}`);
      return r.body?.status ?? `http ${r.status}`;
    } catch (error) {
      return `http error ${(error as Error).message}`;
    }
  });
  const stillOpen = toAsk.filter((_, i) => !input.finalStatuses.has(answers[i] as string));
  const unseen = notFinal.filter((n) => !input.observer.openKeys.has(n)).length;
  const open = notFinal.length - (toAsk.length - stillOpen.length);
  const accepted = input.sent - input.failed.size;
  checks.push({
    name: "every order in a final state",
    passed: open === 0,
    detail:
      open === 0
        ? `${accepted} accepted orders, all in ${[...input.finalStatuses].join(" | ")}` +
          (toAsk.length > 0
            ? ` (${toAsk.length} confirmed over HTTP: the observer missed their last status)`
            : "")
        : `${open} of ${accepted} accepted orders not final (${unseen} never seen on sluice.out.order)`,
    examples: stillOpen
      .map((n, i) => `${input.observer.openKeys.get(n)}: ${answers[toAsk.indexOf(n)] ?? i}`)
      .slice(0, limits.examplesMax),
  });
  return statuses;
}

async function atsCheck(http: SluiceHttp, observer: Observer): Promise<AuditCheck> {
  const name = "last published ATS equals computed ATS";
  if (observer.stock.size === 0)
    return {
      name,
      passed: null,
      detail: "no stock deltas observed (no channel of the bench network is synced?), so ATS was not checked",
    };
  const views = [...observer.stock.entries()].slice(0, limits.auditSkusMax);
  type AtsBody = { channels?: Record<string, { ats: number }> };
  const bodies = await pool(views, ([key]) =>
    http
      .get<AtsBody>(`/v1/stock/${encodeURIComponent(key.slice(key.indexOf("\u0000") + 1))}/ats`)
      .catch(() => null),
  );
  const problems: string[] = [];
  for (const [i, [key, view]] of views.entries()) {
    const body = bodies[i]?.body;
    const sku = key.slice(key.indexOf("\u0000") + 1);
    if (body === null || body === undefined) {
      problems.push(`${sku}: GET /v1/stock/${sku}/ats failed`);
      continue;
    }
    // Sluice computes ATS from the SKU's positions now, with the channel's rules (share, buffer, threshold).
    // A kit's: the minimum over its components. A body without channels (404, 503) counts as a difference.
    const computed = body.channels?.[view.channel]?.ats;
    if (computed !== view.ats)
      problems.push(`${view.channel}/${sku}: published ${view.ats} (v${view.version}), computed ${computed}`);
  }
  return {
    name,
    passed: problems.length === 0,
    detail: `${views.length} (channel, SKU) pairs of ${observer.stock.size} with deltas compared with GET /v1/stock/<sku>/ats: ${problems.length} differ (a kit's: the minimum over its components)`,
    examples: problems.slice(0, limits.examplesMax),
  };
}
