import { invalid, isObject, type Parsed } from "../ledger/commands.ts";

// The fulfilment network: warehouses and channels with their rules. Loaded from config/network.toml at start;
// the routing issue moves it to a NATS KV bucket with versions. Plain data, validated once.

export type Warehouse = {
  id: string;
  enabled: boolean;
  region: string;
  lat: number | null;
  lon: number | null;
  capacityPerDay: number;
  /** Channel ids served; "*" serves every channel. */
  channels: string[];
};

export type SplitMode = "allow_partial" | "ship_complete";
export type SlaAction = "cancel" | "reroute";

export type Channel = {
  id: string;
  /** Whether a line that cannot be reserved waits as a backorder (else it is rejected). */
  backorder: boolean;
  split: SplitMode;
  /** 0: no limit on the number of warehouses an order ships from. */
  maxShipments: number;
  /** Default ship-by: the order's time plus this, when the order gives no deadline. */
  slaShipWithinMs: number;
  /** What happens to unshipped lines when the ship-by deadline passes. */
  slaAction: SlaAction;
  /** After an SLA re-route, the lines get this long before they are cancelled. */
  slaRerouteGraceMs: number;
};

export type Network = { version: string; warehouses: Warehouse[]; channels: Channel[] };

/** Rules for a channel not listed: the "*" entry if there is one. */
export const defaultChannelId = "*";

export function channelOf(network: Network, id: string): Channel | undefined {
  return network.channels.find((c) => c.id === id) ?? network.channels.find((c) => c.id === defaultChannelId);
}

/** Enabled warehouses serving a channel, in the order the network lists them: the simplest correct routing. */
export function candidatesFor(network: Network, channel: string, excluded: readonly string[] = []): string[] {
  return network.warehouses
    .filter(
      (w) =>
        w.enabled && (w.channels.includes(channel) || w.channels.includes("*")) && !excluded.includes(w.id),
    )
    .map((w) => w.id);
}

const dayMs = 86_400_000;

export function parseNetwork(raw: unknown, version: string): Parsed<Network> {
  if (!isObject(raw)) return invalid("network must be a table with [[warehouses]] and [[channels]]");
  const ws = raw.warehouses ?? [];
  const cs = raw.channels ?? [];
  if (!Array.isArray(ws) || !Array.isArray(cs))
    return invalid("warehouses and channels must be arrays of tables");
  const warehouses: Warehouse[] = [];
  for (const [i, w] of ws.entries()) {
    if (!isObject(w)) return invalid(`warehouses[${i}] must be a table`);
    const where = `warehouses[${i}]`;
    if (typeof w.id !== "string" || w.id === "") return invalid(`${where}.id must be a non-empty string`);
    if (warehouses.some((x) => x.id === w.id))
      return invalid(`${where}.id ${JSON.stringify(w.id)} is listed twice`);
    const channels = w.channels ?? ["*"];
    if (!Array.isArray(channels) || !channels.every((c) => typeof c === "string")) {
      return invalid(`${where}.channels must be a list of channel ids (or ["*"])`);
    }
    const capacity = w.capacityPerDay ?? 1_000_000;
    if (typeof capacity !== "number" || !Number.isSafeInteger(capacity) || capacity < 0) {
      return invalid(`${where}.capacityPerDay must be a whole number ≥ 0`);
    }
    for (const k of ["lat", "lon"] as const) {
      if (w[k] !== undefined && typeof w[k] !== "number") return invalid(`${where}.${k} must be a number`);
    }
    warehouses.push({
      id: w.id,
      enabled: w.enabled !== false,
      region: typeof w.region === "string" ? w.region : "",
      lat: typeof w.lat === "number" ? w.lat : null,
      lon: typeof w.lon === "number" ? w.lon : null,
      capacityPerDay: capacity,
      channels: channels as string[],
    });
  }
  const channels: Channel[] = [];
  for (const [i, c] of cs.entries()) {
    if (!isObject(c)) return invalid(`channels[${i}] must be a table`);
    const where = `channels[${i}]`;
    if (typeof c.id !== "string" || c.id === "") return invalid(`${where}.id must be a non-empty string`);
    const split = c.split ?? "allow_partial";
    if (split !== "allow_partial" && split !== "ship_complete") {
      return invalid(`${where}.split must be allow_partial or ship_complete`);
    }
    const slaAction = c.slaAction ?? "cancel";
    if (slaAction !== "cancel" && slaAction !== "reroute")
      return invalid(`${where}.slaAction must be cancel or reroute`);
    const ints: Record<string, unknown> = {
      maxShipments: c.maxShipments ?? 0,
      slaShipWithinMs: c.slaShipWithinMs ?? 2 * dayMs,
      slaRerouteGraceMs: c.slaRerouteGraceMs ?? dayMs,
    };
    for (const [k, v] of Object.entries(ints)) {
      if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0)
        return invalid(`${where}.${k} must be a whole number ≥ 0`);
    }
    channels.push({
      id: c.id,
      backorder: c.backorder === true,
      split,
      maxShipments: ints.maxShipments as number,
      slaShipWithinMs: ints.slaShipWithinMs as number,
      slaAction,
      slaRerouteGraceMs: ints.slaRerouteGraceMs as number,
    });
  }
  return { ok: true, value: { version, warehouses, channels } };
}
