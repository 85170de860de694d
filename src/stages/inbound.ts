import type { DeadLetterReason } from "../stream/dead-letter.ts";

/**
 * The inbound step of a stage (design: a partition is a self-contained unit): one message in, typed commands
 * for the applier and dead letters out, before anything is applied. It reads nothing but the message and the
 * partition's identity and limits, so it is pure, and where it runs is free (the partition's thread today).
 * A message yields commands, dead letters, or both (an envelope whose bad items are refused alone).
 */
export type Inbound<C> = { commands: C[]; rejects: InboundReject[] };

/** A dead letter the inbound step decided: the whole message, or one item of its envelope. */
export type InboundReject = {
  reason: DeadLetterReason;
  detail: string;
  item?: { index: number; item: unknown };
};

/** The whole message refused, for one reason. */
export function refused<C>(reason: DeadLetterReason, detail: string): Inbound<C> {
  return { commands: [], rejects: [{ reason, detail }] };
}

/** Where the commands apply and what they are held to. */
export type InboundContext<L> = { partition: number; partitionCount: number; limits: L };
