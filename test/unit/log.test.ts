import { expect, test } from "bun:test";
import { Logger } from "../../src/log/index.ts";

test("logs are one JSON object per line, level-filtered, with base and child fields", () => {
  const lines: string[] = [];
  const log = new Logger("info", { node: "n1" }, (line) => lines.push(line));
  log.debug("hidden");
  log.info("started", { partitions: 4 });
  log.child({ stage: "ledger" }).warn("lagging", { error: new Error("boom") });
  expect(lines.length).toBe(2);
  expect(lines.every((l) => l.endsWith("\n"))).toBe(true);
  const [a, b] = lines.map((l) => JSON.parse(l));
  expect(a).toMatchObject({ level: "info", msg: "started", node: "n1", partitions: 4 });
  expect(Number.isNaN(Date.parse(a.ts))).toBe(false);
  expect(b).toMatchObject({
    level: "warn",
    msg: "lagging",
    node: "n1",
    stage: "ledger",
    error: { name: "Error", message: "boom" },
  });
  const quiet = new Logger("error", {}, (line) => lines.push(line));
  quiet.warn("dropped");
  expect(lines.length).toBe(2);
});
