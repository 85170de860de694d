#!/usr/bin/env bun
import { userInfo } from "node:os";
import { parseArgs } from "node:util";
import { ConfigError, loadConfig, printable } from "./config/index.ts";
import { readRulesFile } from "./config/network.ts";
import { isLogLevel, Logger } from "./log/index.ts";
import { skuPartition } from "./stream/subjects.ts";
import { version } from "./version.ts";

const help = `sluice ${version}: real-time order orchestration core

Usage:
  sluice start [--config FILE]          run Sluice (embedded nats-server unless nats.url is set)
  sluice start --partitions SPEC        run as a cluster node pinned to SPEC (e.g. ledger:0-3,order:*);
                                        sets cluster.enabled and cluster.partitions (docs/cluster.md)
  sluice cluster status                 nodes, partition owners, lease and snapshot ages of the cluster
                                        (through a running node's HTTP port: --url, or http.host:http.port)
  sluice config print [--config FILE]   print the effective config as JSON, secrets masked
  sluice partition SKU [--config FILE]  print the ledger partition that owns SKU
  sluice ledger check                   rebuild every position from its entries and compare (exit 1 if not)
  sluice partition export STAGE P FILE  write one partition's state (ledger|order) to FILE
  sluice partition import STAGE P FILE  load an export into an empty partition (Sluice stopped)
  sluice send SUBJECT JSON              publish one JSON message with JetStream (to nats.url, or the
                                        embedded server on nats.embeddedHost:embeddedPort) and print the ack
  sluice rules get                      print the rule set in force (warehouses, channels, routing weights)
  sluice rules put FILE                 validate FILE (TOML, or JSON if *.json) and make it the rule set in
                                        force; an invalid one is refused (exit 1) and the old one stays
  sluice rules versions                 list the rule-set versions the bucket keeps
  sluice rules what-if FILE [--orders N]  route the last N orders (default 1000) with FILE and with the
                                        rules in force, against current stock; compare (nothing changes)
                                        (rules talk to a running Sluice: --url, default http.host:http.port)
  sluice channel resync CHANNEL         republish the ATS of every SKU to CHANNEL (paced by its rate budget)
                                        (rules, channel and cluster send SLUICE_HTTP_TOKEN, or --token TOKEN,
                                        as Authorization: Bearer when set: http.tokens, docs/http.md)
  sluice bench [OPTIONS]                run the load-test harness (docs/bench.md; sluice bench --help)
  sluice version                        print the version
  sluice --help                         this text

Config: config/sluice.toml (or --config / SLUICE_CONFIG), overridden by SLUICE_<SECTION>_<KEY>
environment variables; every key is in docs/configuration.md.`;

export async function main(argv: string[]): Promise<number> {
  // The bench has options of its own (docs/bench.md): everything after `bench` is its.
  if (argv[0] === "bench") {
    let harness: typeof import("../bench/harness/main.ts");
    try {
      harness = await import("../bench/harness/main.ts");
    } catch (error) {
      process.stderr.write(
        `sluice: the bench harness is not here (${(error as Error).message}); run it from a checkout: bun run bench\n`,
      );
      return 1;
    }
    return harness.runBench(argv.slice(1));
  }
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (error) {
    process.stderr.write(`sluice: ${(error as Error).message}\n\n${help}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (values.help || command === "help") {
    process.stdout.write(`${help}\n`);
    return 0;
  }
  try {
    switch (command) {
      case "version":
        process.stdout.write(`sluice ${version} (bun ${Bun.version})\n`);
        return 0;
      case "start": {
        if (values.partitions !== undefined) {
          // The config's own override path (SLUICE_<SECTION>_<KEY>), so it is validated like the file.
          process.env.SLUICE_CLUSTER_ENABLED = "true";
          process.env.SLUICE_CLUSTER_PARTITIONS = values.partitions;
        }
        const { runSluice } = await import("./main.ts");
        await runSluice(values.config);
        return 0;
      }
      case "config": {
        if (rest[0] !== "print") throw new UsageError("config takes one subcommand: print");
        const config = loadConfig(values.config === undefined ? {} : { file: values.config });
        process.stdout.write(`${JSON.stringify(printable(config), null, 2)}\n`);
        return 0;
      }
      case "ledger": {
        if (rest[0] !== "check") throw new UsageError("ledger takes one subcommand: check");
        const config = loadConfig(values.config === undefined ? {} : { file: values.config });
        const { checkLedger } = await import("./store/admin.ts");
        const result = await checkLedger(config);
        process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        return result.consistent ? 0 : 1;
      }
      case "partition": {
        if (rest[0] === "export" || rest[0] === "import") {
          const [verb, stage, p, file] = rest;
          if (
            (stage !== "ledger" && stage !== "order") ||
            p === undefined ||
            !/^\d+$/.test(p) ||
            file === undefined
          ) {
            throw new UsageError(
              `partition ${verb} needs STAGE (ledger|order), a partition number and a FILE`,
            );
          }
          const config = loadConfig(values.config === undefined ? {} : { file: values.config });
          if (Number(p) >= config.streams.partitionCount) {
            throw new UsageError(
              `partition ${p} does not exist: streams.partitionCount is ${config.streams.partitionCount}`,
            );
          }
          const admin = await import("./store/admin.ts");
          const count = await audited(config, `partition.${verb}`, `${stage} ${p} ${file}`, () =>
            verb === "export"
              ? admin.exportPartition(config, stage, Number(p), file)
              : admin.importPartition(config, stage, Number(p), file),
          );
          process.stdout.write(
            `${verb === "export" ? "exported" : "imported"} ${count} records (${stage} partition ${p})\n`,
          );
          return 0;
        }
        if (rest[0] === undefined) throw new UsageError("partition needs a SKU: sluice partition SKU-1");
        const config = loadConfig(values.config === undefined ? {} : { file: values.config });
        process.stdout.write(`${skuPartition(rest[0], config.streams.partitionCount)}\n`);
        return 0;
      }
      case "send": {
        const [subject, body] = rest;
        if (subject === undefined || body === undefined) {
          throw new UsageError(
            `send needs a subject and a JSON body: sluice send sluice.in.stock.SKU-1 '{"type":"received","warehouse":"w1","qty":5}'`,
          );
        }
        try {
          JSON.parse(body);
        } catch (error) {
          throw new UsageError(`the body is not JSON: ${(error as Error).message}`);
        }
        const config = loadConfig(values.config === undefined ? {} : { file: values.config });
        const { send } = await import("./stream/send.ts");
        const ack = await send(config, subject, body);
        process.stdout.write(`${JSON.stringify(ack)}\n`);
        return 0;
      }
      case "rules":
        return await rulesCommand(rest, values);
      case "cluster": {
        if (rest[0] !== "status") throw new UsageError("cluster takes one subcommand: status");
        const res = await fetch(`${httpBase(values)}/v1/cluster`, { headers: authHeaders(values) });
        process.stdout.write(`${JSON.stringify(await res.json(), null, 2)}\n`);
        return res.ok ? 0 : 1;
      }
      case "channel": {
        const [verb, channel] = rest;
        if (verb !== "resync" || channel === undefined)
          throw new UsageError("channel takes one subcommand: resync CHANNEL");
        const res = await fetch(`${httpBase(values)}/v1/channels/${encodeURIComponent(channel)}/resync`, {
          method: "POST",
          headers: authHeaders(values),
        });
        const text = await res.text();
        (res.ok ? process.stdout : process.stderr).write(`${text}\n`);
        return res.ok ? 0 : 1;
      }
      case undefined:
        process.stdout.write(`${help}\n`);
        return 2;
      default:
        throw new UsageError(`unknown command ${JSON.stringify(command)}`);
    }
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`sluice: config error: ${error.message}\n`);
      return 78; // EX_CONFIG
    }
    if (error instanceof UsageError) {
      process.stderr.write(`sluice: ${error.message}\n\n${help}\n`);
      return 2;
    }
    if (command !== "start" && error instanceof Error) {
      process.stderr.write(`sluice: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}

class UsageError extends Error {}

/** The running Sluice's HTTP port: --url, or http.host:http.port of the config. */
function httpBase(values: { config?: string; url?: string }): string {
  if (values.url !== undefined) return values.url;
  const config = loadConfig(values.config === undefined ? {} : { file: values.config });
  const host = config.http.host === "0.0.0.0" ? "127.0.0.1" : config.http.host;
  return `http://${host}:${config.http.port}`;
}

/**
 * The token for the running Sluice's HTTP port (http.tokens): --token, else SLUICE_HTTP_TOKEN; none, no
 * header (a Sluice without tokens, on loopback). The variable keeps it out of `ps` and shell history.
 */
function authHeaders(values: { token?: string }): Record<string, string> {
  const token = values.token ?? process.env.SLUICE_HTTP_TOKEN ?? "";
  return token === "" ? {} : { Authorization: `Bearer ${token}` };
}

/**
 * An offline admin command (partition export or import: no HTTP port, so no token) logged as the running
 * Sluice logs its admin actions (`admin action`, one JSON line on stdout), with the OS user who ran it.
 */
async function audited<T>(
  config: ReturnType<typeof loadConfig>,
  action: string,
  target: string,
  run: () => Promise<T>,
): Promise<T> {
  const log = new Logger(isLogLevel(config.log.level) ? config.log.level : "info", {
    node: config.node.name,
  });
  const who = `${osUser()} (os user)`;
  try {
    const result = await run();
    log.info("admin action", { who, action, target, outcome: "ok" });
    return result;
  } catch (error) {
    log.info("admin action", { who, action, target, outcome: "failed", detail: (error as Error).message });
    throw error;
  }
}

function osUser(): string {
  try {
    return userInfo().username;
  } catch {
    // A uid without a passwd entry (a container's --user 12345) has no name.
    return `uid ${process.getuid?.() ?? "unknown"}`;
  }
}

/** `sluice rules …`: through the running Sluice's HTTP port, which validates before anything is written. */
async function rulesCommand(
  rest: string[],
  values: { config?: string; url?: string; orders?: string; token?: string },
): Promise<number> {
  const [verb, file] = rest;
  const base = httpBase(values);
  const auth = authHeaders(values);
  const body = () => {
    if (file === undefined)
      throw new UsageError(`rules ${verb} needs a FILE (TOML, or JSON if it ends in .json)`);
    return {
      body: JSON.stringify(readRulesFile(file)),
      headers: { "Content-Type": "application/json", ...auth },
    };
  };
  let res: Response;
  switch (verb) {
    case "get":
      res = await fetch(`${base}/v1/rules`, { headers: auth });
      break;
    case "versions":
      res = await fetch(`${base}/v1/rules/versions`, { headers: auth });
      break;
    case "put":
      res = await fetch(`${base}/v1/rules`, { method: "PUT", ...body() });
      break;
    case "what-if":
      res = await fetch(`${base}/v1/rules/what-if?orders=${values.orders ?? "1000"}`, {
        method: "POST",
        ...body(),
      });
      break;
    default:
      throw new UsageError("rules takes one subcommand: get, put FILE, versions or what-if FILE");
  }
  const text = await res.text();
  if (res.ok && verb === "get") {
    // The rule set alone, as written: what `rules put` takes back. Which version it is goes to stderr.
    const body = JSON.parse(text) as { inForce: string; refusal: unknown; rules: unknown };
    process.stderr.write(
      `in force: ${body.inForce}${body.refusal ? `; last refused: ${JSON.stringify(body.refusal)}` : ""}\n`,
    );
    process.stdout.write(`${JSON.stringify(body.rules, null, 2)}\n`);
    return 0;
  }
  (res.ok ? process.stdout : process.stderr).write(`${text}\n`);
  return res.ok ? 0 : 1;
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: "string", short: "c" },
      help: { type: "boolean", short: "h" },
      url: { type: "string" },
      orders: { type: "string" },
      partitions: { type: "string" },
      token: { type: "string" },
    },
  });
}

if (import.meta.main) {
  const code = await main(process.argv.slice(2));
  if (code !== 0 || process.argv[2] !== "start") process.exit(code);
}
