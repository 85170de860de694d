// The machine and versions a report was made on: figures from two machines only compare with these beside.
import { readFileSync } from "node:fs";
import { cpus, hostname, release, totalmem, type } from "node:os";
import { version as sluiceVersion } from "../../src/version.ts";
import { repoRoot } from "../lib.ts";

export type Machine = {
  hostname: string;
  os: string;
  kernel: string;
  cpuModel: string;
  cpus: number;
  memoryBytes: number;
};

export type Versions = {
  sluice: string;
  bun: string;
  natsServer: string;
  git: { commit: string | null; dirty: boolean | null };
};

export function machineInfo(): Machine {
  const list = cpus();
  let os: string = type();
  try {
    const text = readFileSync("/etc/os-release", "utf8");
    os = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(text)?.[1] ?? os;
  } catch {}
  return {
    hostname: hostname(),
    os,
    kernel: release(),
    cpuModel: list[0]?.model ?? "unknown",
    cpus: list.length,
    memoryBytes: totalmem(),
  };
}

function run(cmd: string[]): string | null {
  try {
    const r = Bun.spawnSync(cmd, { cwd: repoRoot, stdout: "pipe", stderr: "pipe" });
    if (r.exitCode !== 0) return null;
    return `${r.stdout.toString()}${r.stderr.toString()}`.trim();
  } catch {
    return null;
  }
}

export function versionsInfo(natsBin = "nats-server"): Versions {
  const nats = run([natsBin, "--version"]) ?? run(["/usr/sbin/nats-server", "--version"]) ?? "unknown";
  const commit = run(["git", "rev-parse", "HEAD"]);
  const status = commit === null ? null : run(["git", "status", "--porcelain", "--untracked-files=no"]);
  return {
    sluice: sluiceVersion,
    bun: Bun.version,
    natsServer: nats.replace(/^nats-server:\s*/, ""),
    git: { commit, dirty: status === null ? null : status.length > 0 },
  };
}
