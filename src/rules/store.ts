import type { JetStreamClient } from "@nats-io/jetstream";
import { type KV, type KvEntry, Kvm } from "@nats-io/kv";
import type { Config } from "../config/index.ts";
import { type Network, type NetworkLimits, parseNetwork } from "../domain/network/index.ts";
import type { Instrumentation } from "../instrumentation/index.ts";
import type { Logger } from "../log/index.ts";

/** The one key of the rules bucket: the whole rule set (warehouses, channels, routing weights) as JSON. */
export const rulesKey = "network";

export type Refusal = { revision: number; detail: string };
export type PutResult = { ok: true; revision: number; version: string } | { ok: false; detail: string };
export type RulesVersion = {
  revision: number;
  version: string;
  createdAt: string;
  valid: boolean;
  detail?: string;
};

const versionOf = (revision: number) => `kv-${revision}`;

function decode(value: Uint8Array): { ok: true; raw: unknown } | { ok: false; detail: string } {
  try {
    return { ok: true, raw: JSON.parse(new TextDecoder().decode(value)) };
  } catch (error) {
    return { ok: false, detail: `the rule set is not JSON: ${(error as Error).message}` };
  }
}

/**
 * Validates a rule set as the watcher will: the reply a command gives before anything is written. Ids are
 * held to ledger.idBytesMax when `limits` gives it (else to its largest value).
 */
export function validateRules(
  raw: unknown,
  version = "candidate",
  limits?: NetworkLimits,
): ReturnType<typeof parseNetwork> {
  return parseNetwork(raw, version, limits);
}

/**
 * The rule set in force, kept in a NATS KV bucket (design.md §6): seeded from the network file when the
 * bucket is empty, watched for changes, each change validated before use. A valid revision is in force from
 * the next message every partition applies; an invalid one is refused (log, metric, `refusal`) and the
 * previous one stays. Each revision is a version decisions name (`kv-<revision>`); the bucket keeps
 * routing.rulesHistoryCountMax of them.
 */
export class RulesStore {
  private kv: KV | null = null;
  private current: Network;
  /** The rule set in force as written (what `rules get` prints and `rules put` takes back). */
  private currentRaw: unknown;
  private revision = 0;
  private lastRefusal: Refusal | null = null;
  private watching: Promise<void> | null = null;
  private stopWatch: (() => void) | null = null;
  private stopped = false;

  constructor(
    private readonly js: JetStreamClient,
    private readonly config: Config,
    private readonly seed: { raw: unknown; network: Network },
    private readonly log: Logger,
    private readonly events: Instrumentation,
  ) {
    this.current = seed.network;
    this.currentRaw = seed.raw;
  }

  /** The rule set in force as it was written: `sluice rules get > f.json; sluice rules put f.json` round-trips. */
  raw(): unknown {
    return this.currentRaw;
  }

  /** The rule set in force. */
  network(): Network {
    return this.current;
  }

  /** Rule sets are held to the same id rule as inputs. */
  private limits(): NetworkLimits {
    return { idBytesMax: this.config.ledger.idBytesMax };
  }

  refusal(): Refusal | null {
    return this.lastRefusal;
  }

  async start(): Promise<void> {
    const kv = await new Kvm(this.js).create(this.config.routing.rulesBucket, {
      history: this.config.routing.rulesHistoryCountMax,
      replicas: this.config.streams.replicas,
    });
    this.kv = kv;
    let entry = await kv.get(rulesKey);
    if (entry === null || entry.operation !== "PUT") {
      try {
        await kv.create(rulesKey, JSON.stringify(this.seed.raw));
        this.log.info("rules bucket seeded from the network file", { file: this.config.orders.networkFile });
      } catch {
        // Another process seeded it first: theirs is read below.
      }
      entry = await kv.get(rulesKey);
    }
    if (entry !== null && !this.apply(entry)) await this.fallBackToNewestValid(kv);
    this.watching = this.watch(kv);
  }

  /**
   * Watches the key until stopped. A watch that ends (the connection or the bucket went away) is started
   * again after a pause, from the revision after the last one seen, so a change is never missed for good.
   */
  private async watch(kv: KV): Promise<void> {
    while (!this.stopped) {
      try {
        const watcher = await kv.watch({ key: rulesKey, resumeFromRevision: this.revision + 1 });
        this.stopWatch = () => watcher.stop();
        for await (const e of watcher) if (e.operation === "PUT" && e.revision > this.revision) this.apply(e);
      } catch (error) {
        this.log.warn("rules watch ended; watching again", { error: (error as Error).message });
      }
      if (!this.stopped) await Bun.sleep(this.config.nats.reconnectWaitMs);
    }
  }

  /** At start the newest revision is invalid: the newest valid one in the history is in force. */
  private async fallBackToNewestValid(kv: KV): Promise<void> {
    const history: KvEntry[] = [];
    for await (const e of await kv.history({ key: rulesKey })) history.push(e);
    for (const e of history.reverse()) {
      if (e.operation !== "PUT") continue;
      const decoded = decode(e.value);
      const parsed = decoded.ok ? parseNetwork(decoded.raw, versionOf(e.revision), this.limits()) : null;
      if (parsed?.ok && decoded.ok) {
        this.current = parsed.value;
        this.currentRaw = decoded.raw;
        this.events.emit("rules_applied", { revision: e.revision });
        this.log.warn("rules: the newest revision is invalid; the newest valid one is in force", {
          version: parsed.value.version,
        });
        return;
      }
    }
    this.log.warn("rules: no valid revision in the bucket; the network file is in force", {
      version: this.current.version,
    });
  }

  /** Takes a revision if it is valid. Returns whether it did. */
  private apply(e: KvEntry): boolean {
    this.revision = Math.max(this.revision, e.revision);
    const decoded = decode(e.value);
    const parsed = decoded.ok ? parseNetwork(decoded.raw, versionOf(e.revision), this.limits()) : decoded;
    if (!parsed.ok) {
      this.lastRefusal = { revision: e.revision, detail: parsed.detail };
      this.events.emit("rules_refused", { revision: e.revision });
      this.log.error("rules refused: the previous rule set stays in force", {
        revision: e.revision,
        detail: parsed.detail,
        inForce: this.current.version,
      });
      return false;
    }
    this.current = parsed.value;
    this.currentRaw = (decoded as { ok: true; raw: unknown }).raw;
    // A refusal older than the revision now in force is history (kept in `versions`), not news.
    if (this.lastRefusal !== null && this.lastRefusal.revision < e.revision) this.lastRefusal = null;
    this.events.emit("rules_applied", { revision: e.revision });
    this.log.info("rules in force", { version: parsed.value.version });
    return true;
  }

  /** A command's rule set that could not even be read (not JSON or TOML): refused, and counted. */
  refuse(detail: string): PutResult {
    this.events.emit("rules_refused", { revision: 0 });
    this.log.warn("rules refused by a command: the rule set in force is unchanged", { detail });
    return { ok: false, detail };
  }

  /** Validates, then writes a new revision. An invalid rule set is refused here and never written. */
  async put(raw: unknown): Promise<PutResult> {
    const checked = validateRules(raw, "candidate", this.limits());
    if (!checked.ok) return this.refuse(checked.detail);
    if (this.kv === null) return { ok: false, detail: "the rules bucket is not open yet" };
    const revision = await this.kv.put(rulesKey, JSON.stringify(raw));
    return { ok: true, revision, version: versionOf(revision) };
  }

  /** Every revision the bucket keeps, newest first, with whether it was valid. */
  async versions(): Promise<RulesVersion[]> {
    if (this.kv === null) return [];
    const out: RulesVersion[] = [];
    for await (const e of await this.kv.history({ key: rulesKey })) {
      if (e.operation !== "PUT") continue;
      const decoded = decode(e.value);
      const parsed = decoded.ok ? parseNetwork(decoded.raw, versionOf(e.revision), this.limits()) : decoded;
      out.push({
        revision: e.revision,
        version: versionOf(e.revision),
        createdAt: e.created.toISOString(),
        valid: parsed.ok,
        ...(parsed.ok ? {} : { detail: parsed.detail }),
      });
    }
    return out.reverse();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopWatch?.();
    await this.watching;
  }
}
