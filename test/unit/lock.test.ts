import { afterEach, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { DataDirLockedError, lockDataDir } from "../../src/store/lock.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const dir = () => {
  const d = mkdtempSync(join(tmpdir(), "sluice-lock-"));
  dirs.push(d);
  return d;
};
const times = { refreshMs: 100, staleMs: 1000 };
const writeOwner = (d: string, host: string, pid: number, ageMs = 0) => {
  const path = join(d, "sluice.lock");
  writeFileSync(path, JSON.stringify({ host, pid, token: "theirs" }));
  const t = new Date(Date.now() - ageMs);
  utimesSync(path, t, t);
};

test("a live lock of another process is refused, naming its owner", () => {
  const d = dir();
  writeOwner(d, "other-host", 1); // PID 1 in another container sharing the volume
  expect(() => lockDataDir(d, times)).toThrow(DataDirLockedError);
  expect(() => lockDataDir(d, times)).toThrow(/in use by Sluice process 1 on other-host/);
});

test("a lock not touched within staleMs is taken over, whatever host wrote it", () => {
  const d = dir();
  writeOwner(d, "other-host", 1, 5000);
  const release = lockDataDir(d, times);
  expect(JSON.parse(readFileSync(join(d, "sluice.lock"), "utf8")).pid).toBe(process.pid);
  release();
  expect(existsSync(join(d, "sluice.lock"))).toBe(false);
});

test("a fresh lock of a dead process on this host is taken over at once", () => {
  const d = dir();
  writeOwner(d, hostname(), 2 ** 22 + 12345); // above any pid_max: no such process
  const release = lockDataDir(d, times);
  release();
});

test("the owner keeps its lease fresh, and releasing leaves another owner's lock alone", async () => {
  const d = dir();
  const release = lockDataDir(d, times);
  const path = join(d, "sluice.lock");
  const t = new Date(Date.now() - 900);
  utimesSync(path, t, t);
  await Bun.sleep(250);
  expect(Date.now() - Bun.file(path).lastModified).toBeLessThan(500);
  writeOwner(d, "other-host", 7);
  release();
  expect(existsSync(path)).toBe(true);
});
