import { afterEach, expect, test } from "bun:test";
import {
  existsSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
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
const here = {
  host: hostname(),
  boot: readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim(),
  pidns: readlinkSync("/proc/self/ns/pid"),
};
const writeOwner = (d: string, owner: Record<string, unknown>, ageMs = 0) => {
  const path = join(d, "sluice.lock");
  writeFileSync(path, JSON.stringify({ token: "theirs", ...owner }));
  const t = new Date(Date.now() - ageMs);
  utimesSync(path, t, t);
};

test("a live lock of another host is refused, naming its owner", () => {
  const d = dir();
  writeOwner(d, { host: "other-host", pid: 1 }); // PID 1 in another container sharing the volume
  expect(() => lockDataDir(d, times)).toThrow(DataDirLockedError);
  expect(() => lockDataDir(d, times)).toThrow(/in use by Sluice process 1 on other-host/);
});

test("another host's lock not touched within staleMs is taken over", () => {
  const d = dir();
  writeOwner(d, { host: "other-host", pid: 1 }, 5000);
  const lock = lockDataDir(d, times);
  expect(JSON.parse(readFileSync(join(d, "sluice.lock"), "utf8")).pid).toBe(process.pid);
  lock.release();
  expect(existsSync(join(d, "sluice.lock"))).toBe(false);
});

test("a live process in this pid namespace keeps its lock however stale it looks", () => {
  const d = dir();
  writeOwner(d, { ...here, pid: process.ppid }, 60_000); // our parent: alive
  expect(() => lockDataDir(d, times)).toThrow(/in use by Sluice process/);
});

test("a dead process in this pid namespace loses its lock at once; one in another namespace does not", () => {
  const d = dir();
  writeOwner(d, { ...here, pid: 2 ** 22 + 12345 }); // above any pid_max: no such process
  lockDataDir(d, times).release();
  writeOwner(d, { ...here, pidns: "pid:[1]", pid: 2 ** 22 + 12345 }); // same host, another container
  expect(() => lockDataDir(d, times)).toThrow(/in use by Sluice process/);
});

test("the owner keeps its lease fresh; it notices when another process took the lock", async () => {
  const d = dir();
  const lock = lockDataDir(d, times);
  const path = join(d, "sluice.lock");
  const t = new Date(Date.now() - 900);
  utimesSync(path, t, t);
  await Bun.sleep(250);
  expect(Date.now() - Bun.file(path).lastModified).toBeLessThan(500);
  expect(lock.held()).toBe(true);
  writeOwner(d, { host: "other-host", pid: 7 });
  await Bun.sleep(250);
  expect(lock.held()).toBe(false);
  lock.release();
  expect(existsSync(path)).toBe(true); // not its lock any more: left alone
});

test("two processes locking the same directory at the same instant: exactly one wins", async () => {
  for (let trial = 0; trial < 5; trial++) {
    const d = dir();
    const script = `
      import { lockDataDir } from "${join(import.meta.dir, "../../src/store/lock.ts")}";
      const start = Number(process.argv[2]);
      while (Date.now() < start) {}
      try { lockDataDir(process.argv[3], { refreshMs: 100, staleMs: 1000 }); console.log("won"); await Bun.sleep(300); }
      catch { console.log("lost"); }
    `;
    const file = join(d, "racer.ts");
    await Bun.write(file, script);
    const start = String(Date.now() + 300);
    const racers = [0, 1].map(() => Bun.spawn(["bun", file, start, d], { stdout: "pipe" }));
    const outs = await Promise.all(racers.map((r) => new Response(r.stdout).text()));
    expect(outs.map((o) => o.trim()).sort()).toEqual(["lost", "won"]);
  }
});
