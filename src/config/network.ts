import { existsSync, readFileSync } from "node:fs";
import { type Network, type NetworkLimits, parseNetwork } from "../domain/network/index.ts";
import { ConfigError } from "./load.ts";

/** A rule-set file as written (TOML, or JSON when the name ends in .json), before validation. */
export function readRulesFile(path: string): unknown {
  if (!existsSync(path)) {
    throw new ConfigError(
      `${path} does not exist; copy config/network.toml and list your warehouses, channels and routing weights`,
    );
  }
  const text = readFileSync(path, "utf8");
  try {
    return path.endsWith(".json") ? JSON.parse(text) : Bun.TOML.parse(text);
  } catch (error) {
    throw new ConfigError(
      `${path} is not valid ${path.endsWith(".json") ? "JSON" : "TOML"}: ${(error as Error).message}`,
    );
  }
}

/**
 * Reads and validates the network file (warehouses, channels, routing). Its content hash names the version.
 * `limits` (ledger.idBytesMax) holds its ids to the rule inputs follow; absent, to that limit's largest value.
 */
export function loadNetworkFile(path: string, limits?: NetworkLimits): { raw: unknown; network: Network } {
  const raw = readRulesFile(path);
  const version = `file-${Bun.hash(JSON.stringify(raw)).toString(16).slice(0, 12)}`;
  const parsed = parseNetwork(raw, version, limits);
  if (!parsed.ok) throw new ConfigError(`network file ${path}: ${parsed.detail}`);
  return { raw, network: parsed.value };
}
