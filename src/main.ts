import { type Config, loadConfig } from "./config/index.ts";
import { isLogLevel, Logger } from "./log/index.ts";
import { Sluice } from "./sluice.ts";

/** `sluice start`: config → edges → run, until SIGTERM/SIGINT; exits 0 after a graceful stop within budget. */
export async function runSluice(configFile: string | undefined): Promise<never> {
  const config: Config = loadConfig(configFile === undefined ? {} : { file: configFile });
  const log = new Logger(isLogLevel(config.log.level) ? config.log.level : "info", {
    node: config.node.name,
  });
  let exiting = false;
  const exit = (code: number) => {
    if (exiting) return;
    exiting = true;
    // Exit even if something hangs: the stop budget is a limit like any other.
    setTimeout(() => process.exit(code === 0 ? 1 : code), config.shutdown.timeoutMs).unref();
    sluice
      .stop()
      .then(() => process.exit(code))
      .catch((error: unknown) => {
        log.error("stop failed", { error });
        process.exit(1);
      });
  };
  const sluice = new Sluice(config, log, (error) => {
    log.error("fatal: stopping; unacked input is redelivered at the next start", { error });
    exit(1);
  });
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.on(signal, () => {
      log.info("signal received", { signal });
      exit(0);
    });
  }
  try {
    await sluice.start();
  } catch (error) {
    log.error("start failed", { error });
    exit(1);
  }
  return new Promise<never>(() => {});
}
