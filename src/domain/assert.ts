/**
 * A broken invariant stops the process: JetStream redelivers whatever was not acked, so crashing is safe
 * and continuing is not (TigerStyle). One condition per call, so the message names the one that broke.
 */
export class InvariantError extends Error {
  override name = "InvariantError";
}

export function assert(condition: boolean, invariant: string): asserts condition {
  if (!condition) throw new InvariantError(`invariant broken: ${invariant}`);
}
