#!/usr/bin/env bun
import { Logger } from "../log/index.ts";
import { parseSinkOptions, sinkUsage } from "./options.ts";
import { startSink } from "./sink.ts";

// Entry of the reference sink, a process of its own: bun src/sink/main.ts --source stock:<channel> --url …
// Exit codes: 0 stopped by SIGTERM/SIGINT, 1 could not start, 2 bad usage.

export async function main(argv: string[], env: Record<string, string | undefined>): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(`${sinkUsage}\n`);
    return 0;
  }
  const parsed = parseSinkOptions(argv, env);
  if (!parsed.ok) {
    process.stderr.write(`sluice sink: ${parsed.detail}\n\n${sinkUsage}\n`);
    return 2;
  }
  const log = new Logger(parsed.value.logLevel, { component: "sink" });
  let sink: Awaited<ReturnType<typeof startSink>>;
  try {
    sink = await startSink(parsed.value, { log });
  } catch (error) {
    log.error("sink could not start", { error });
    return 1;
  }
  if (sink.metricsPort !== null) log.info("metrics served", { port: sink.metricsPort, path: "/metrics" });
  await new Promise<void>((resolve) => {
    const onSignal = (signal: string) => {
      log.info("stopping", { signal });
      void sink.stop().then(resolve);
    };
    process.once("SIGTERM", () => onSignal("SIGTERM"));
    process.once("SIGINT", () => onSignal("SIGINT"));
  });
  return 0;
}

if (import.meta.main) {
  process.exit(await main(process.argv.slice(2), process.env));
}
