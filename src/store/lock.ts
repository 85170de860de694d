import {
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";

export class DataDirLockedError extends Error {
  override name = "DataDirLockedError";
}

export type LockTimes = {
  /** The owner touches the lock this often. */
  refreshMs: number;
  /** A lock not touched for this long is stale, whoever wrote it, on whatever host. */
  staleMs: number;
};

type Owner = { host: string; pid: number; token: string };

/**
 * One writer per data directory: a second Sluice on the same partitions would break the single-writer
 * invariant. The lock file names its owner (host, pid, a random token) and is touched every `refreshMs`
 * while it runs: a lease. It is taken over when it is stale (not touched for `staleMs`: the owner died,
 * here or on another host sharing the volume) or when its owner is a dead process on this host. A takeover
 * writes a new file and renames it over the old one, then reads it back: of two processes racing, only the
 * one whose token is there goes on.
 */
export function lockDataDir(
  dir: string,
  times: LockTimes = { refreshMs: 5000, staleMs: 30_000 },
): () => void {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, "sluice.lock");
  const me: Owner = { host: hostname(), pid: process.pid, token: crypto.randomUUID() };
  if (existsSync(path)) {
    const owner = readOwner(path);
    const ageMs = Date.now() - statSync(path).mtimeMs;
    const deadHere = owner !== null && owner.host === me.host && owner.pid !== me.pid && !alive(owner.pid);
    const sameProcess = owner !== null && owner.host === me.host && owner.pid === me.pid;
    if (!(ageMs > times.staleMs || deadHere || sameProcess || owner === null)) {
      throw new DataDirLockedError(
        `${dir} is in use by Sluice process ${owner?.pid} on ${owner?.host} (lock touched ${Math.round(ageMs / 1000)} s ago); stop it, or give this one its own data.dir`,
      );
    }
  }
  const temp = `${path}.${me.token}`;
  writeFileSync(temp, JSON.stringify(me));
  renameSync(temp, path);
  if (readOwner(path)?.token !== me.token) {
    throw new DataDirLockedError(
      `${dir} was locked by another Sluice at the same moment; start one at a time`,
    );
  }
  const refresh = setInterval(() => {
    try {
      if (readOwner(path)?.token === me.token) utimesSync(path, new Date(), new Date());
    } catch {
      // The directory went away: nothing to keep.
    }
  }, times.refreshMs);
  refresh.unref();
  return () => {
    clearInterval(refresh);
    if (readOwner(path)?.token === me.token) rmSync(path, { force: true });
  };
}

function readOwner(path: string): Owner | null {
  try {
    const v = JSON.parse(readFileSync(path, "utf8")) as Partial<Owner>;
    return typeof v.host === "string" && typeof v.pid === "number" && typeof v.token === "string"
      ? (v as Owner)
      : null;
  } catch {
    return null;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
