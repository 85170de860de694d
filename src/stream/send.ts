import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { jetstream } from "@nats-io/jetstream";
import { headers } from "@nats-io/transport-node";
import type { Config } from "../config/index.ts";
import { connectSecured, embeddedSecurity } from "./connection.ts";
import { embeddedClient } from "./embedded-auth.ts";

/** The embedded server's URL: the configured port, or (port 0) the one it chose, from its ports file. */
function embeddedUrl(c: Config): string {
  if (c.nats.embeddedPort !== 0) return `nats://${c.nats.embeddedHost}:${c.nats.embeddedPort}`;
  const dir = join(c.data.dir, "nats", "ports");
  const file = readdirSync(dir).find((f) => f.endsWith(".ports"));
  if (file === undefined)
    throw new Error(`no running embedded server found in ${dir}; start Sluice or set nats.url`);
  return (JSON.parse(readFileSync(join(dir, file), "utf8")) as { nats: string[] }).nats[0] as string;
}

/**
 * `sluice send`: one JetStream publish for people without the nats CLI. Returns the stream's ack. With
 * nats.url, the same TLS and credentials as Sluice itself (token, user, NKey seed, creds file); on the
 * embedded server, its `producer` user (the seed Sluice wrote in its data directory): public inputs only.
 */
export async function send(c: Config, subject: string, json: string) {
  const external = c.nats.url !== "";
  const servers = external ? c.nats.url.split(",") : [embeddedUrl(c)];
  const producer = external ? null : embeddedClient(join(c.data.dir, "nats"), "producer");
  const nc =
    producer === null
      ? await connectSecured({ servers, timeout: c.nats.connectTimeoutMs }, c.nats)
      : await connectSecured(
          { servers, timeout: c.nats.connectTimeoutMs, inboxPrefix: producer.inboxPrefix },
          embeddedSecurity(producer),
        );
  try {
    const h = headers();
    h.set("Content-Type", "application/json");
    const ack = await jetstream(nc, { timeout: c.nats.requestTimeoutMs }).publish(subject, json, {
      headers: h,
    });
    return { stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate };
  } finally {
    await nc.close();
  }
}
