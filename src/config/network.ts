import { existsSync, readFileSync } from "node:fs";
import { type Network, parseNetwork } from "../domain/network/index.ts";
import { ConfigError } from "./load.ts";

/** Reads and validates the network file (warehouses, channels). Its content hash names the version. */
export function loadNetworkFile(path: string): Network {
  if (!existsSync(path)) {
    throw new ConfigError(
      `orders.networkFile ${path} does not exist; copy config/network.toml and list your warehouses and channels`,
    );
  }
  const text = readFileSync(path, "utf8");
  let raw: unknown;
  try {
    raw = Bun.TOML.parse(text);
  } catch (error) {
    throw new ConfigError(`network file ${path} is not valid TOML: ${(error as Error).message}`);
  }
  const version = `file-${Bun.hash(text).toString(16).slice(0, 12)}`;
  const parsed = parseNetwork(raw, version);
  if (!parsed.ok) throw new ConfigError(`network file ${path}: ${parsed.detail}`);
  return parsed.value;
}
