// The embedded server's lock: one NKey user per role, generated at first start into the data directory (mode
// 0600, directory 0700), listed with least-privilege permissions in the server config Sluice writes. Nobody
// connects without a seed: another user of the host cannot read them, so cannot publish Sluice's internal
// subjects (`sluice.answer.<p>.result.*`), forge ledger answers or read the outputs. docs/security.md,
// "The embedded server".
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { nkeys } from "@nats-io/transport-node";
import { streamNames, subjectMappings } from "./subjects.ts";

/**
 * - `sluice`: Sluice itself (its threads and workers);
 * - `producer`: every public input (`sluice send`, the bench's load generator, channel and WMS adapters
 *   run on the host);
 * - `reader`: the outputs, through consumers on SLUICE_OUT (the reference sink, the bench's observer);
 * - `admin`: everything (the nats CLI for an operator; the bench's harness, which also measures raw JetStream).
 */
export const embeddedRoles = ["sluice", "producer", "reader", "admin"] as const;
export type EmbeddedRole = (typeof embeddedRoles)[number];

/**
 * Each role's inbox prefix: what it may subscribe to for replies, so no role reads another's replies. Every
 * prefix is its own first token: `_INBOX_READER.>` reaches neither `_INBOX.…` (the admin's: stream views, KV
 * gets of the rule set) nor `_SLUICE_INBOX.…` (Sluice's, where every pulled order arrives). The sink, as a
 * reader, is started with `--nats-inbox-prefix _INBOX_READER` (its inboxes are `<prefix>.<consumer>`).
 */
export const embeddedInboxPrefix: Record<EmbeddedRole, string> = {
  sluice: "_SLUICE_INBOX",
  producer: "_INBOX_PRODUCER",
  reader: "_INBOX_READER",
  // The nats CLI's default: an operator's `nats` needs no --inbox-prefix. Only the admin may subscribe there.
  admin: "_INBOX",
};

/** How a client of the embedded server connects as a role: the seed file and the inbox prefix to use. */
export type EmbeddedClient = { role: EmbeddedRole; seedFile: string; inboxPrefix: string };

export type EmbeddedUser = EmbeddedClient & { publicKey: string };

export class EmbeddedAuthError extends Error {
  override name = "EmbeddedAuthError";
}

/** The directory of the seeds under the embedded server's directory (`<data.dir>/nats/auth`). */
export const embeddedAuthDir = (natsDir: string) => join(natsDir, "auth");

/** The client options for `role` (the seed must exist: the server wrote it at its first start). */
export function embeddedClient(natsDir: string, role: EmbeddedRole): EmbeddedClient {
  const seedFile = join(embeddedAuthDir(natsDir), `${role}.nk`);
  if (!existsSync(seedFile)) {
    throw new EmbeddedAuthError(
      `${seedFile} does not exist: the embedded server writes its users' seeds at its first start; start Sluice once (or set nats.url to a server you run)`,
    );
  }
  return { role, seedFile, inboxPrefix: embeddedInboxPrefix[role] };
}

/**
 * Each role's seed, made at the first start and kept after: restarts keep the users, so a client that read a
 * seed goes on connecting. A seed file that is not a user seed, or that others may read, stops the start.
 */
export function ensureEmbeddedUsers(natsDir: string): EmbeddedUser[] {
  const dir = embeddedAuthDir(natsDir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  return embeddedRoles.map((role) => {
    const file = join(dir, `${role}.nk`);
    if (!existsSync(file)) {
      const seed = new TextDecoder().decode(nkeys.createUser().getSeed());
      // wx: two starts racing on one directory cannot both write (the data directory's lock prevents it too).
      writeFileSync(file, `${seed}\n`, { mode: 0o600, flag: "wx" });
    }
    const mode = statSync(file).mode & 0o777;
    if ((mode & 0o077) !== 0) {
      throw new EmbeddedAuthError(
        `${file} may be read by others (mode ${mode.toString(8)}): it is the embedded server's ${role} seed; chmod 600 it (or delete it to have a new one made)`,
      );
    }
    const seed = readFileSync(file, "utf8").trim();
    let publicKey: string;
    try {
      const pair = nkeys.fromSeed(new TextEncoder().encode(seed));
      publicKey = pair.getPublicKey();
    } catch {
      throw new EmbeddedAuthError(
        `${file} does not hold an NKey user seed: delete it to have a new one made at the next start`,
      );
    }
    if (!publicKey.startsWith("U")) {
      throw new EmbeddedAuthError(`${file} holds a seed that is not a user's: delete it to have one made`);
    }
    return { ...embeddedClient(natsDir, role), publicKey };
  });
}

export type Permissions = { publish: string[]; subscribe: string[] };

/** The subjects a mapping's source is checked as (nats-server 2.9 checks the mapped subject): `*` for each token made. */
const mappedForm = (to: string) => to.replace(/\{\{[^}]*\}\}/g, "*");

/**
 * Least privilege per role; the same lists as docs/security.md's blocks, for one server and every channel:
 * Sluice's internal subjects are Sluice's alone, a producer publishes only public inputs (in both the public
 * and the mapped form), a reader reads SLUICE_OUT through consumers and nothing else.
 */
export function embeddedPermissions(
  role: EmbeddedRole,
  o: { partitionCount: number; rulesBucket: string },
): Permissions | null {
  switch (role) {
    case "sluice":
      return {
        publish: [
          "$JS.API.>",
          "$JS.ACK.>",
          "$JS.FC.>",
          "sluice.ledger.>",
          "sluice.order.>",
          "sluice.answer.>",
          "sluice.out.>",
          "sluice.view.>",
          "sluice.dlq.>",
          "sluice.log.>",
          `$KV.${o.rulesBucket}.>`,
          "$KV.SLUICE_LEASES.>",
          "$KV.SLUICE_CAPACITY.>",
          "$O.SLUICE_SNAPSHOTS.>",
        ],
        subscribe: [`${embeddedInboxPrefix.sluice}.>`, "sluice.view.position.>"],
      };
    case "producer":
      return {
        publish: ["sluice.in.>", ...Object.values(subjectMappings(o.partitionCount)).map(mappedForm)],
        subscribe: [`${embeddedInboxPrefix.producer}.>`],
      };
    case "reader": {
      const out = streamNames.out;
      return {
        publish: [
          "$JS.API.INFO",
          `$JS.API.STREAM.INFO.${out}`,
          `$JS.API.CONSUMER.INFO.${out}.*`,
          `$JS.API.CONSUMER.CREATE.${out}.>`,
          `$JS.API.CONSUMER.DURABLE.CREATE.${out}.*`,
          `$JS.API.CONSUMER.DELETE.${out}.*`,
          `$JS.API.CONSUMER.MSG.NEXT.${out}.*`,
          `$JS.ACK.${out}.>`,
          "sluice.dlq.sink_failed",
        ],
        // Replies to its requests and pulls (the sink's arrive on `_INBOX_READER.<consumer>`), and outputs
        // live. Never `_INBOX.>`: that is the admin's, whose replies carry whatever the admin reads.
        subscribe: [`${embeddedInboxPrefix.reader}.>`, "sluice.out.>"],
      };
    }
    case "admin":
      return null;
  }
}

/** The server config's `authorization` block: one NKey user per role; nobody connects without one. */
export function renderAuthorization(
  users: readonly EmbeddedUser[],
  o: { partitionCount: number; rulesBucket: string },
): string {
  const list = (xs: string[]) => `[${xs.map((x) => JSON.stringify(x)).join(", ")}]`;
  const lines = users.map((u) => {
    const p = embeddedPermissions(u.role, o);
    const permissions =
      p === null ? "" : `, permissions: { publish: ${list(p.publish)}, subscribe: ${list(p.subscribe)} }`;
    return `    { nkey: ${JSON.stringify(u.publicKey)}${permissions} }  # ${u.role}`;
  });
  return ["authorization {", "  users: [", ...lines, "  ]", "}"].join("\n");
}
