// Sluice's HTTP API as the harness reads it, over one process or the nodes of a cluster. In cluster mode a node
// answers a read of a partition it does not run with 503 and the owner ({owner: {node, http}}, src/http); the
// harness follows that, and when the owner is unknown or does not answer either, asks every node in turn.

export type HttpAnswer<T> = { status: number; body: T | null; url: string };

type NotLocal = { error?: string; owner?: { node?: string; http?: string | null } };

async function getOnce<T>(url: string, timeoutMs: number): Promise<HttpAnswer<T>> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  try {
    return { status: res.status, body: JSON.parse(text) as T, url };
  } catch {
    return { status: res.status, body: null, url };
  }
}

export class SluiceHttp {
  readonly bases: string[];

  constructor(ports: readonly number[]) {
    if (ports.length === 0) throw new Error("SluiceHttp needs at least one HTTP port");
    this.bases = ports.map((p) => `http://127.0.0.1:${p}`);
  }

  get nodes(): number {
    return this.bases.length;
  }

  /**
   * GET `path` (e.g. `/v1/stock/SKU-1`) from the node that runs the partition it names: the first node, then
   * the owner its 503 names, then every other node; the first answer that is not a 503 wins. With one node
   * this is a plain GET. A request that fails (refused, timed out) counts as a 503 of that node, and the error
   * is thrown only when no node answered at all.
   */
  async get<T>(path: string, timeoutMs = 10_000): Promise<HttpAnswer<T>> {
    const tried = new Set<string>();
    const seen: { last: HttpAnswer<T> | null; error: unknown } = { last: null, error: null };
    const ask = async (base: string): Promise<HttpAnswer<T> | null> => {
      tried.add(base);
      try {
        const a = await getOnce<T>(`${base}${path}`, timeoutMs);
        seen.last = a;
        return a.status === 503 ? null : a;
      } catch (e) {
        seen.error = e;
        return null;
      }
    };
    const answer = await ask(this.bases[0] as string);
    if (answer !== null) return answer;
    const owner = (seen.last?.body as NotLocal | null | undefined)?.owner?.http ?? null;
    if (owner !== null && !tried.has(owner)) {
      const a = await ask(owner);
      if (a !== null) return a;
    }
    for (const base of this.bases) {
      if (tried.has(base)) continue;
      const a = await ask(base);
      if (a !== null) return a;
    }
    if (seen.last !== null) return seen.last;
    throw seen.error instanceof Error ? seen.error : new Error(String(seen.error));
  }

  /** GET `path` from every node (e.g. `/v1/ledger/check`, which covers the node's own partitions only). */
  async everyNode<T>(path: string, timeoutMs = 10_000): Promise<HttpAnswer<T>[]> {
    return await Promise.all(this.bases.map((base) => getOnce<T>(`${base}${path}`, timeoutMs)));
  }
}
