/** A setup the sink cannot run with (exit 1): the message says the fix. */
export class SinkError extends Error {
  override name = "SinkError";
}
