// Once a second: Sluice's /metrics (lag, per-stage apply/commit/outbox seconds, batches, dead letters) and
// /proc for CPU and resident memory of Sluice, nats-server and the load generator. nats-server runs without
// its monitoring port here, so /proc is the only window on it. With several Sluice nodes or nats-servers
// (--nodes, --nats-cluster) each process is sampled on its own and the `sluice` / `nats` figures are their sums.
import { type ProcSample, procSample } from "../lib.ts";

export const stageNames = ["order", "ledger"] as const;
export type StageName = (typeof stageNames)[number];

export type StageCounters = {
  applied: number;
  batches: number;
  batchMessages: number;
  applySeconds: number;
  commitSeconds: number;
  outboxPublishSeconds: number;
  outboxPublishes: number;
};

/** Cumulative values at one instant (the report takes differences). */
export type Sample = {
  /** Seconds after the load's start (may be negative before it). */
  tS: number;
  scraped: boolean;
  lag: Record<StageName, number>;
  stages: Record<StageName, StageCounters>;
  outboxDepth: number;
  deadLetters: number;
  deadLettersByReason: Record<string, number>;
  /** harness: this process (observer, sampler), from process.cpuUsage(). */
  cpuSeconds: { sluice: number; nats: number; loadgen: number; harness: number };
  /** VmRSS: anonymous + file-backed. */
  rssBytes: { sluice: number; nats: number; loadgen: number };
  /** RssAnon: the process's own memory (heap, buffers); the memory target is judged on Sluice's. */
  rssAnonBytes: { sluice: number; nats: number; loadgen: number };
  /** RssFile + RssShmem: resident pages of mapped files (Sluice's LMDB maps: reclaimable page cache). */
  rssFileBytes: { sluice: number; nats: number; loadgen: number };
  /** --nodes / --nats-cluster: every Sluice node and nats-server on its own, by name (absent otherwise). */
  processes?: Record<string, ProcSample & { role: ProcRole }>;
};

export type ProcRole = "sluice" | "nats";
/** A process the harness samples by name: a Sluice node (`sluice-2`) or a nats-server (`nats n1`). */
export type ProcRef = { name: string; role: ProcRole; pid: number };

export type PromLine = { name: string; labels: Record<string, string>; value: number };

/** Prometheus text format → lines (comments and malformed lines skipped). */
export function parsePrometheus(text: string): PromLine[] {
  const out: PromLine[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const brace = line.indexOf("{");
    const space = line.lastIndexOf(" ");
    if (space < 0) continue;
    const value = Number(line.slice(space + 1));
    if (!Number.isFinite(value)) continue;
    if (brace < 0 || brace > space) {
      out.push({ name: line.slice(0, space), labels: {}, value });
      continue;
    }
    const close = line.lastIndexOf("}", space);
    const labels: Record<string, string> = {};
    for (const m of line.slice(brace + 1, close).matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g))
      labels[m[1] as string] = m[2] as string;
    out.push({ name: line.slice(0, brace), labels, value });
  }
  return out;
}

function emptyStage(): StageCounters {
  return {
    applied: 0,
    batches: 0,
    batchMessages: 0,
    applySeconds: 0,
    commitSeconds: 0,
    outboxPublishSeconds: 0,
    outboxPublishes: 0,
  };
}

/** The figures the bench needs from one scrape. */
export function fromMetrics(
  lines: PromLine[],
): Pick<Sample, "lag" | "stages" | "outboxDepth" | "deadLetters" | "deadLettersByReason"> {
  const lag: Record<StageName, number> = { order: 0, ledger: 0 };
  const stages: Record<StageName, StageCounters> = { order: emptyStage(), ledger: emptyStage() };
  let outboxDepth = 0;
  let deadLetters = 0;
  const deadLettersByReason: Record<string, number> = {};
  const field: Record<string, keyof StageCounters> = {
    sluice_messages_applied_total: "applied",
    sluice_batch_size_messages_count: "batches",
    sluice_batch_size_messages_sum: "batchMessages",
    sluice_apply_duration_seconds_sum: "applySeconds",
    sluice_commit_duration_seconds_sum: "commitSeconds",
    sluice_outbox_publish_duration_seconds_sum: "outboxPublishSeconds",
    sluice_outbox_publish_duration_seconds_count: "outboxPublishes",
  };
  for (const l of lines) {
    const stage = l.labels.stage as StageName | undefined;
    if (l.name === "sluice_partition_lag_messages" && stage !== undefined && stage in lag)
      lag[stage] += l.value;
    else if (l.name === "sluice_outbox_depth_items") outboxDepth += l.value;
    else if (l.name === "sluice_dead_letters_total") {
      deadLetters += l.value;
      const reason = l.labels.reason ?? "unknown";
      deadLettersByReason[reason] = (deadLettersByReason[reason] ?? 0) + l.value;
    } else {
      const key = field[l.name];
      if (key !== undefined && stage !== undefined && stage in stages) stages[stage][key] += l.value;
    }
  }
  return { lag, stages, outboxDepth, deadLetters, deadLettersByReason };
}

/** `processes`, when given, replaces `sluice` and `nats`: each is sampled, and the sums fill those figures. */
export type Pids = { sluice: number; nats: number; loadgen: number | null; processes?: ProcRef[] };

/** Each process's /proc figures; a process gone (or not started) keeps its previous sample's. */
function sampleProcesses(
  refs: ProcRef[],
  previous: Sample | null,
): Record<string, ProcSample & { role: ProcRole }> {
  const out: Record<string, ProcSample & { role: ProcRole }> = {};
  for (const r of refs) {
    const s = procSample(r.pid);
    const before = previous?.processes?.[r.name];
    out[r.name] = {
      role: r.role,
      cpuSeconds: s?.cpuSeconds ?? before?.cpuSeconds ?? 0,
      rssBytes: s?.rssBytes ?? 0,
      rssAnonBytes: s?.rssAnonBytes ?? 0,
      rssFileBytes: s?.rssFileBytes ?? 0,
    };
  }
  return out;
}

/** One role's processes summed into the figures of a single one. */
function sumRole(processes: Record<string, ProcSample & { role: ProcRole }>, role: ProcRole): ProcSample {
  const sum: ProcSample = { cpuSeconds: 0, rssBytes: 0, rssAnonBytes: 0, rssFileBytes: 0 };
  for (const p of Object.values(processes)) {
    if (p.role !== role) continue;
    sum.cpuSeconds += p.cpuSeconds;
    sum.rssBytes += p.rssBytes;
    sum.rssAnonBytes += p.rssAnonBytes;
    sum.rssFileBytes += p.rssFileBytes;
  }
  return sum;
}

/** Takes one sample. A failed or slow scrape keeps /proc figures and marks the sample `scraped: false`. */
export async function takeSample(
  tS: number,
  pids: Pids,
  metricsText: () => Promise<string>,
  previous: Sample | null,
): Promise<Sample> {
  const proc = (pid: number | null) => (pid === null ? null : procSample(pid));
  const processes = pids.processes === undefined ? undefined : sampleProcesses(pids.processes, previous);
  const s = processes === undefined ? proc(pids.sluice) : sumRole(processes, "sluice");
  const n = processes === undefined ? proc(pids.nats) : sumRole(processes, "nats");
  const g = proc(pids.loadgen);
  let metrics: ReturnType<typeof fromMetrics> | null = null;
  try {
    metrics = fromMetrics(parsePrometheus(await metricsText()));
  } catch {
    metrics = null;
  }
  const keep = previous ?? {
    lag: { order: 0, ledger: 0 },
    stages: { order: emptyStage(), ledger: emptyStage() },
    outboxDepth: 0,
    deadLetters: 0,
    deadLettersByReason: {},
  };
  return {
    tS,
    scraped: metrics !== null,
    ...(metrics ?? {
      lag: keep.lag,
      stages: keep.stages,
      outboxDepth: keep.outboxDepth,
      deadLetters: keep.deadLetters,
      deadLettersByReason: keep.deadLettersByReason,
    }),
    cpuSeconds: {
      sluice: s?.cpuSeconds ?? previous?.cpuSeconds.sluice ?? 0,
      nats: n?.cpuSeconds ?? previous?.cpuSeconds.nats ?? 0,
      loadgen: g?.cpuSeconds ?? previous?.cpuSeconds.loadgen ?? 0,
      harness: (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
    },
    rssBytes: { sluice: s?.rssBytes ?? 0, nats: n?.rssBytes ?? 0, loadgen: g?.rssBytes ?? 0 },
    rssAnonBytes: { sluice: s?.rssAnonBytes ?? 0, nats: n?.rssAnonBytes ?? 0, loadgen: g?.rssAnonBytes ?? 0 },
    rssFileBytes: { sluice: s?.rssFileBytes ?? 0, nats: n?.rssFileBytes ?? 0, loadgen: g?.rssFileBytes ?? 0 },
    ...(processes === undefined ? {} : { processes }),
  };
}

export function stageDelta(a: StageCounters, b: StageCounters): StageCounters {
  return {
    applied: b.applied - a.applied,
    batches: b.batches - a.batches,
    batchMessages: b.batchMessages - a.batchMessages,
    applySeconds: b.applySeconds - a.applySeconds,
    commitSeconds: b.commitSeconds - a.commitSeconds,
    outboxPublishSeconds: b.outboxPublishSeconds - a.outboxPublishSeconds,
    outboxPublishes: b.outboxPublishes - a.outboxPublishes,
  };
}
