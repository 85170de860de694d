/**
 * The partition may no longer commit or publish here: its data-dir lock or, in cluster mode, its lease is gone,
 * or its changelog has a newer writer (a takeover marker past this owner's last record).
 */
export class FencedError extends Error {
  override name = "FencedError";
}
