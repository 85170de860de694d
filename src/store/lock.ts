import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeSync,
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

/** Who holds a lock: where (host, boot, pid namespace) and which process, plus a token for this holding. */
type Owner = { host: string; boot: string; pidns: string; pid: number; token: string };

export type DataDirLock = {
  /** False once another process has taken the lock over (after a stall past staleMs): stop writing. */
  held: () => boolean;
  release: () => void;
};

const procText = (path: string, read: (p: string) => string) => {
  try {
    return read(path).trim();
  } catch {
    return "";
  }
};

function me(): Owner {
  return {
    host: hostname(),
    boot: procText("/proc/sys/kernel/random/boot_id", (p) => readFileSync(p, "utf8")),
    pidns: procText("/proc/self/ns/pid", readlinkSync),
    pid: process.pid,
    token: crypto.randomUUID(),
  };
}

/**
 * One writer per data directory: a second Sluice on the same partitions would break the single-writer
 * invariant. The lock file names its owner and is touched every `refreshMs` while it runs (a lease).
 *
 * - A new lock is created with an exclusive open: of two processes starting together, one gets it.
 * - A held lock is taken over only when its owner is provably gone: a dead process in the same pid
 *   namespace of the same boot of this host, or no touch for `staleMs` (the owner died elsewhere, for
 *   example a container on another host sharing the volume: hosts sharing a volume need synchronised
 *   clocks). A live process in the same namespace is never taken over, however stale its lock looks.
 * - A takeover renames the old file away (only one racer can) and then creates its own exclusively.
 * - The owner re-reads its token at every refresh; `held()` turns false if another process took the lock
 *   (this one stalled past `staleMs`), and Sluice then stops writing.
 */
export function lockDataDir(
  dir: string,
  times: LockTimes = { refreshMs: 5000, staleMs: 30_000 },
): DataDirLock {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, "sluice.lock");
  const self = me();
  for (let attempt = 0; attempt < 40; attempt++) {
    if (createExclusive(path, self)) return hold(path, self, times);
    const owner = readOwner(path);
    if (owner === null) {
      // Unreadable: being written this instant (wait), or left half-written by a crash long ago (take it).
      if (existsSync(path) && Date.now() - statSync(path).mtimeMs > unreadableGraceMs) takeAway(path, self);
      else Bun.sleepSync(25);
      continue;
    }
    const sameSpace = owner.host === self.host && owner.boot === self.boot && owner.pidns === self.pidns;
    if (sameSpace && owner.pid === self.pid) {
      takeAway(path, self); // this process again (a restart in the same process)
      continue;
    }
    const ageMs = Date.now() - statSync(path).mtimeMs;
    const gone = sameSpace ? !alive(owner.pid) : ageMs > times.staleMs;
    if (!gone) {
      throw new DataDirLockedError(
        `${dir} is in use by Sluice process ${owner.pid} on ${owner.host} (lock touched ${Math.round(ageMs / 1000)} s ago); stop it, or give this one its own data.dir`,
      );
    }
    takeAway(path, self);
  }
  throw new DataDirLockedError(
    `${dir}: another Sluice took the lock at the same moment; start one at a time`,
  );
}

/** How long a lock file may be unreadable (being written) before it counts as a crash's leftover. */
const unreadableGraceMs = 2000;

function createExclusive(path: string, self: Owner): boolean {
  try {
    const fd = openSync(path, "wx");
    writeSync(fd, JSON.stringify(self));
    closeSync(fd);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  }
}

/** Moves a dead owner's lock aside; when two try, the rename succeeds for one and the other retries. */
function takeAway(path: string, self: Owner): void {
  const aside = `${path}.taken-${self.token}`;
  try {
    renameSync(path, aside);
    rmSync(aside, { force: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
}

function hold(path: string, self: Owner, times: LockTimes): DataDirLock {
  let lost = false;
  let checkedAtMs = Date.now();
  const check = () => {
    if (lost) return false;
    if (readOwner(path)?.token !== self.token) lost = true;
    checkedAtMs = Date.now();
    return !lost;
  };
  const refresh = setInterval(() => {
    try {
      if (check()) utimesSync(path, new Date(), new Date());
    } catch {
      lost = true; // the file or its directory went away
    }
  }, times.refreshMs);
  refresh.unref();
  return {
    // Checked at most every refreshMs between timer ticks: cheap enough to ask before every commit.
    held: () => (Date.now() - checkedAtMs < times.refreshMs ? !lost : check()),
    release: () => {
      clearInterval(refresh);
      if (readOwner(path)?.token === self.token) rmSync(path, { force: true });
    },
  };
}

function readOwner(path: string): Owner | null {
  try {
    const v = JSON.parse(readFileSync(path, "utf8")) as Partial<Owner>;
    const ok = typeof v.host === "string" && typeof v.pid === "number" && typeof v.token === "string";
    return ok ? { ...(v as Owner), boot: v.boot ?? "", pidns: v.pidns ?? "" } : null;
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
