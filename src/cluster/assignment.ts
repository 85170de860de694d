// Which node should own which partition: a pure function of the live nodes, so every node computes the same
// answer from the same membership without talking to the others. Leases (leases.ts) make it safe when
// nodes briefly disagree (one sees a node the other does not yet): a partition is only ever taken through a
// lease, so a disagreement delays a move, it never makes two owners.

export const stages = ["ledger", "order"] as const;
export type Stage = (typeof stages)[number];
export type PartitionId = { stage: Stage; index: number };

/** A live node as the membership heartbeats show it: `pins` null takes a fair share of the unpinned. */
export type ClusterNode = { id: string; pins: PartitionId[] | null };

/** `ledger.3`: one KV key token per part, so `lease.ledger.3` is a valid key and `lease.>` lists them all. */
export function partitionKey(p: PartitionId): string {
  return `${p.stage}.${p.index}`;
}

/** The partition a key names, or null for anything `partitionKey` could not have written. */
export function parsePartitionKey(key: string): PartitionId | null {
  const match = /^(ledger|order)\.(0|[1-9]\d{0,8})$/.exec(key);
  if (match === null) return null;
  return { stage: match[1] as Stage, index: Number(match[2]) };
}

/** Stage first, then index: the order every list this module returns is in. */
export function comparePartitions(a: PartitionId, b: PartitionId): number {
  if (a.stage !== b.stage) return a.stage === "ledger" ? -1 : 1;
  return a.index - b.index;
}

/** Every partition of both stages, ledger first. */
export function allPartitions(partitionCount: number): PartitionId[] {
  return stages.flatMap((stage) => Array.from({ length: partitionCount }, (_, index) => ({ stage, index })));
}

const pinForms = "stage:index, stage:first-last or stage:*, where stage is ledger or order";
const pinItem = /^(ledger|order):(?:(\*)|(\d+)(?:-(\d+))?)$/;

/**
 * The pins of `cluster.partitions` (`ledger:0-3,order:*`), sorted and without repeats; null for an empty
 * spec: no pins, this node takes a fair share of whatever nobody pinned. Throws an Error that names the bad
 * item and the fix.
 */
export function parsePins(spec: string, partitionCount: number): PartitionId[] | null {
  if (spec.trim() === "") return null;
  const keys = new Set<string>();
  const pins: PartitionId[] = [];
  for (const item of spec.split(",")) {
    for (const p of parsePinItem(item, partitionCount)) {
      if (keys.has(partitionKey(p))) continue;
      keys.add(partitionKey(p));
      pins.push(p);
    }
  }
  return pins.sort(comparePartitions);
}

function parsePinItem(item: string, partitionCount: number): PartitionId[] {
  const match = pinItem.exec(item.trim());
  if (match === null) {
    throw new Error(`cluster.partitions: ${JSON.stringify(item)} is not a pin; write ${pinForms}`);
  }
  const stage = match[1] as Stage;
  if (match[2] === "*") return allPartitions(partitionCount).filter((p) => p.stage === stage);
  const first = Number(match[3]);
  const last = match[4] === undefined ? first : Number(match[4]);
  const lastIndex = partitionCount - 1;
  for (const index of [first, last]) {
    if (index > lastIndex) {
      throw new Error(
        `cluster.partitions: ${item.trim()} names partition ${index}, but streams.partitionCount is ${partitionCount} (indexes 0-${lastIndex}); pin indexes up to ${lastIndex}, or ${stage}:* for all`,
      );
    }
  }
  if (first > last) {
    throw new Error(`cluster.partitions: ${item.trim()} runs backwards; write ${stage}:${last}-${first}`);
  }
  return Array.from({ length: last - first + 1 }, (_, i) => ({ stage, index: first + i }));
}

export type AssignmentInput = {
  /** This node's id; it counts as live with `pins` even before its own heartbeat is visible. */
  self: string;
  /** The live nodes (their heartbeats exist); order and repeats do not matter. */
  nodes: readonly ClusterNode[];
  partitionCount: number;
  /** This node's pins (`parsePins` of its `cluster.partitions`). */
  pins: PartitionId[] | null;
};

/**
 * The partitions this node should own, sorted. Pinned partitions go to the live node that pins them (the
 * lowest id if several do); a pinned node takes only its pins. The rest (including the pins of nodes that
 * are not live) are spread over the unpinned nodes by `assignPartitions`. With no unpinned node live, a
 * partition nobody pinned goes to nobody: the caller reports it (nobody may take it).
 */
export function desiredPartitions(input: AssignmentInput): PartitionId[] {
  const nodes = [...input.nodes.filter((n) => n.id !== input.self), { id: input.self, pins: input.pins }];
  const owners = assignPartitions(nodes, input.partitionCount);
  return allPartitions(input.partitionCount).filter((p) => owners.get(partitionKey(p)) === input.self);
}

/**
 * The owner of every partition that has one, by partition key, for the whole cluster: what each node's
 * `desiredPartitions` returns, side by side.
 *
 * The unpinned partitions go by rendezvous (highest-random-weight) hashing: each partition to the node with
 * the highest hash of (node id, partition). It needs no coordination and moves the least on a change: when
 * a node joins, only the partitions it scores highest move, all to it; when one leaves, only its own move.
 * Hashing alone leaves loads uneven on few partitions (8 over 3 nodes may come out 5-2-1), so a balancing
 * pass follows (`balance`): each stage to at most ceil(its unpinned partitions / unpinned nodes) per node,
 * and in all at most ceil(unpinned partitions / unpinned nodes). A partition it moves goes to its
 * best-scoring node with room, so moves stay few: a join moves the partitions the new node takes, plus at
 * most the partitions the pass displaced from their hashed owner before and after (`displacedCount`). On
 * average a join moves ≈ 1.1-1.2 × the new node's fair share (1.0 is the least any rule can move).
 */
export function assignPartitions(nodes: readonly ClusterNode[], partitionCount: number): Map<string, string> {
  const live = uniqueNodes(nodes);
  const owners = new Map<string, string>();
  const free: PartitionId[] = [];
  for (const p of allPartitions(partitionCount)) {
    const pinnedBy = live.find((n) => n.pins?.some((q) => q.stage === p.stage && q.index === p.index));
    if (pinnedBy === undefined) free.push(p);
    else owners.set(partitionKey(p), pinnedBy.id);
  }
  const unpinned = live.filter((n) => n.pins === null).map((n) => n.id);
  if (unpinned.length === 0) return owners;
  for (const [key, node] of balance(free, unpinned)) owners.set(key, node);
  return owners;
}

/**
 * How many of `free` the balancing pass placed off their hashed owner among `unpinnedIds`: the bound on
 * extra moves a membership change costs (see `assignPartitions`).
 */
export function displacedCount(free: readonly PartitionId[], unpinnedIds: readonly string[]): number {
  const ids = [...new Set(unpinnedIds)].sort(compareIds);
  if (ids.length === 0) return 0; // nobody to place anything on
  const placed = balance(free, ids);
  return free.filter((p) => placed.get(partitionKey(p)) !== rankedNodes(p, ids)[0]).length;
}

/** Live nodes once each, sorted by id, so the input's order and repeats change nothing. */
function uniqueNodes(nodes: readonly ClusterNode[]): ClusterNode[] {
  const byId = new Map<string, ClusterNode>();
  for (const n of nodes) if (!byId.has(n.id)) byId.set(n.id, n);
  return [...byId.values()].sort((a, b) => compareIds(a.id, b.id));
}

// Code-unit order, not localeCompare: the same on every machine whatever its locale.
function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

type Placement = {
  owner: Map<string, string>;
  /** Partitions per node per stage, and in all ("*"). */
  load: Map<string, Map<Stage | "*", number>>;
};

/** Rendezvous placement of `free` over `ids` (sorted, unique, non-empty), then the two capping passes. */
function balance(free: readonly PartitionId[], ids: readonly string[]): Map<string, string> {
  const placement: Placement = { owner: new Map(), load: new Map(ids.map((id) => [id, new Map()])) };
  for (const p of free) place(placement, p, rankedNodes(p, ids)[0] as string, 1);
  const caps = new Map<Stage | "*", number>([["*", Math.ceil(free.length / ids.length)]]);
  for (const stage of stages) {
    caps.set(stage, Math.ceil(free.filter((p) => p.stage === stage).length / ids.length));
  }
  for (const stage of stages) shed(placement, free, ids, caps, [stage]);
  shed(placement, free, ids, caps, stages);
  return placement.owner;
}

function place(placement: Placement, p: PartitionId, node: string, delta: 1 | -1): void {
  const load = placement.load.get(node) as Map<Stage | "*", number>;
  load.set(p.stage, (load.get(p.stage) ?? 0) + delta);
  load.set("*", (load.get("*") ?? 0) + delta);
  if (delta === 1) placement.owner.set(partitionKey(p), node);
}

/**
 * Moves partitions of `shedStages` off nodes over a cap (their stage's, or "*" for the last pass) until
 * none is. A node sheds the partition it scores lowest first (the one it is least tied to), to the node that
 * scores that partition highest among those with room. Each move lowers one node's excess by one and
 * creates none, so the loop ends; nodes go in id order, so the result is deterministic.
 *
 * A receiver always exists. Stage pass: the stage's partitions fit under its cap on all nodes, so when one
 * node is over, another is under. Total pass (every stage already under its cap): when node A is over the
 * total cap T, some node B is under it; if B is full in one stage, its other stage holds fewer than
 * T − that stage's cap ≤ the other cap, so B has room there, and A holds partitions of that other stage
 * (more than T − the full stage's cap ≥ 0), because T ≤ the sum of the stage caps and T ≥ either.
 */
function shed(
  placement: Placement,
  free: readonly PartitionId[],
  ids: readonly string[],
  caps: Map<Stage | "*", number>,
  shedStages: readonly Stage[],
): void {
  const capOf = (k: Stage | "*") => caps.get(k) as number;
  const loadOf = (node: string, k: Stage | "*") => placement.load.get(node)?.get(k) ?? 0;
  const capKey = shedStages.length === 1 ? (shedStages[0] as Stage) : "*";
  // A stage pass looks at its stage alone (the total pass after it evens totals out); the total pass keeps
  // every stage under its cap while it moves.
  const hasRoom = (node: string, p: PartitionId) =>
    loadOf(node, p.stage) < capOf(p.stage) && (capKey !== "*" || loadOf(node, "*") < capOf("*"));
  for (const node of ids) {
    while (loadOf(node, capKey) > capOf(capKey)) {
      const held = free
        .filter((p) => shedStages.includes(p.stage) && placement.owner.get(partitionKey(p)) === node)
        .sort((a, b) => score(node, a) - score(node, b) || comparePartitions(a, b));
      const move = firstMove(held, ids, hasRoom);
      if (move === null) break; // cannot happen (see above); stopping keeps the loop bounded regardless
      place(placement, move.p, node, -1);
      place(placement, move.p, move.to, 1);
    }
  }
}

function firstMove(
  held: readonly PartitionId[],
  ids: readonly string[],
  hasRoom: (node: string, p: PartitionId) => boolean,
): { p: PartitionId; to: string } | null {
  for (const p of held) {
    const to = rankedNodes(p, ids).find((n) => hasRoom(n, p));
    if (to !== undefined) return { p, to };
  }
  return null;
}

/** `ids` from the highest score for `p` to the lowest; a tie goes to the lower id. */
function rankedNodes(p: PartitionId, ids: readonly string[]): string[] {
  return [...ids].sort((a, b) => score(b, p) - score(a, p) || compareIds(a, b));
}

/**
 * The rendezvous weight of (node, partition): FNV-1a over both, then murmur3's finaliser, because FNV alone
 * barely mixes ids that differ in their last character ("node-1", "node-2") and rendezvous needs the
 * weights of one partition to look independent across nodes.
 */
export function score(node: string, p: PartitionId): number {
  const text = `${node}\u0000${partitionKey(p)}`;
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
