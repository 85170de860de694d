import type { Config } from "../../config/index.ts";
import { type DomainLimits, Ledger, parseStockCommand } from "../../domain/ledger/index.ts";
import type { Instrumentation } from "../../instrumentation/index.ts";
import type { OutboxItem, PartitionStore } from "../../store/index.ts";
import { decodePayload } from "../../stream/codec.ts";
import { type DeadLetterReason, deadLetter } from "../../stream/dead-letter.ts";
import type { InboundMessage, PartitionApplier } from "../../stream/partition-runner.ts";
import { decodeToken, parsePartitioned, partitionOfTokens } from "../../stream/subjects.ts";

/**
 * The ledger stage of one partition: the single writer of the SKUs that hash to it. Decodes and validates
 * each message, applies it to the in-memory ledger (loaded from the store at start), and hands the runner
 * the writes of one transaction. Bad input becomes a dead letter in the same transaction; the batch moves on.
 */
export class LedgerApplier implements PartitionApplier {
  readonly ledger: Ledger;
  private readonly limits: DomainLimits;

  constructor(
    readonly partition: number,
    private readonly config: Config,
    store: PartitionStore,
    private readonly events: Instrumentation,
  ) {
    this.ledger = Ledger.fromSkus(store.loadSkus());
    this.limits = { quantityMax: config.ledger.quantityMax, idBytesMax: config.ledger.idBytesMax };
  }

  apply(messages: readonly InboundMessage[]) {
    const outbox: OutboxItem[] = [];
    const reject = (m: InboundMessage, reason: DeadLetterReason, detail: string) => {
      outbox.push(deadLetter(m, reason, detail));
      this.events.emit("dead_lettered", { stage: "ledger", reason });
    };
    for (const m of messages) {
      const route = parsePartitioned(m.subject);
      if (route === null || route.kind !== "stock" || route.tokens.length !== 1) {
        reject(m, "bad_subject", `${m.subject} is not sluice.ledger.<p>.stock.<sku>`);
        continue;
      }
      const token = route.tokens[0] as string;
      let sku: string;
      try {
        sku = decodeToken(token);
      } catch (error) {
        reject(m, "bad_subject", (error as Error).message);
        continue;
      }
      // Single writer per SKU (invariant 2): a message published to another partition's subject is refused.
      const owner = partitionOfTokens([token], this.config.streams.partitionCount);
      if (owner !== this.partition || route.partition !== this.partition) {
        reject(
          m,
          "wrong_partition",
          `SKU ${JSON.stringify(sku)} belongs to partition ${owner}, not ${route.partition}`,
        );
        continue;
      }
      const decoded = decodePayload(m.data, m.headers?.get("Content-Type") || undefined);
      if (!decoded.ok) {
        reject(m, decoded.reason, decoded.detail);
        continue;
      }
      const parsed = parseStockCommand(decoded.value, this.limits);
      if (!parsed.ok) {
        reject(m, parsed.reason, parsed.detail);
        continue;
      }
      const result = this.ledger.apply(sku, parsed.value, { seq: m.seq, atMs: m.atMs });
      if (!result.ok) this.events.emit("command_refused", { stage: "ledger", code: result.code });
    }
    const { skus, entries } = this.ledger.takeChanges();
    return { skus, entries, outbox };
  }
}
