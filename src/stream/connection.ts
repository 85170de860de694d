import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { Config } from "../config/index.ts";
import type { Logger } from "../log/index.ts";

export type Connection = { nc: NatsConnection; connected: () => boolean };

/**
 * Connects with @nats-io/transport-node, the client @nats-io/jetstream v3 is made for (a legacy `nats` v2
 * connection breaks its consumers). Reconnects forever by default: an outage must not end the process.
 */
export async function connectNats(c: Config, servers: string, log: Logger): Promise<Connection> {
  const nc = await connect({
    servers: servers.split(",").map((s) => s.trim()),
    name: c.node.name,
    timeout: c.nats.connectTimeoutMs,
    reconnect: true,
    maxReconnectAttempts: c.nats.reconnectAttemptsMax,
    reconnectTimeWait: c.nats.reconnectWaitMs,
    waitOnFirstConnect: false,
    ...(c.nats.token !== "" ? { token: c.nats.token } : {}),
    ...(c.nats.user !== "" ? { user: c.nats.user, pass: c.nats.password } : {}),
  });
  let connected = true;
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === "disconnect") {
        connected = false;
        log.warn("NATS disconnected", { server: s.server });
      } else if (s.type === "reconnect") {
        connected = true;
        log.info("NATS reconnected", { server: s.server });
      } else if (s.type === "error") {
        log.error("NATS error", { error: s.error });
      }
    }
  })();
  log.info("NATS connected", { server: nc.getServer() });
  return { nc, connected: () => connected && !nc.isClosed() };
}
