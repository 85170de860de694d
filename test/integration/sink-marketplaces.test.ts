import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Logger } from "../../src/log/index.ts";
import {
  parseSinkOptions,
  type Sink,
  type SinkOptions,
  sinkHeaders,
  startSink,
} from "../../src/sink/index.ts";
import type { StockItem } from "../../src/sink/marketplaces/types.ts";
import { deadLetterHeaders } from "../../src/stream/dead-letter.ts";
import { provisionStreams } from "../../src/stream/provision.ts";
import { streamNames } from "../../src/stream/subjects.ts";
import { Producer, TestNats, tempDir, testConfig, testLog, waitFor } from "../helpers/index.ts";
import {
  envelopes,
  newestValues,
  prng,
  startLazadaMock,
  startShopeeMock,
  startShopifyMock,
  stockRounds,
} from "../helpers/marketplace-mocks/index.ts";

// The real sink against a real nats-server, fed `sluice.out.stock.<channel>` envelopes, delivering to local
// marketplaces that enforce their documented limits (test/helpers/marketplace-mocks). Every test ends with the
// marketplace holding the newest value of every mapped SKU, no breach of the marketplace's contract, and the
// unmapped SKUs in sluice.dlq.sink_failed with their reason.

const nats = new TestNats(4);
const dir = tempDir("sink-marketplaces");
let producer: Producer;

beforeAll(async () => {
  await nats.start();
  producer = await Producer.connect(nats.url);
  await provisionStreams(await producer.jsm(), testConfig(nats.url, dir), testLog);
});

afterAll(async () => {
  await producer?.close();
  await nats.dispose();
  rmSync(dir, { recursive: true, force: true });
});

let files = 0;
function file(content: unknown): string {
  const path = join(dir, `f-${++files}`);
  writeFileSync(path, typeof content === "string" ? content : JSON.stringify(content));
  return path;
}

/** Sink options for a profile: fast retries, a generous rate budget, secrets from `env`. */
function options(channel: string, args: string[], env: Record<string, string>): SinkOptions {
  const parsed = parseSinkOptions(
    [
      "--source",
      `stock:${channel}`,
      "--nats",
      nats.url,
      "--rps",
      "1000",
      "--burst",
      "100",
      "--backoff-ms-min",
      "10",
      "--backoff-ms-max",
      "100",
      ...args,
    ],
    env,
  );
  if (!parsed.ok) throw new Error(parsed.detail);
  return { ...parsed.value, logLevel: "error" };
}

/** Publishes rounds as envelopes, in stream order; returns every item published. */
async function publish(channel: string, random: () => number, rounds: StockItem[][]): Promise<StockItem[]> {
  const out: StockItem[] = [];
  for (const round of rounds)
    for (const e of envelopes(random, round)) {
      await producer.publishJson(`sluice.out.stock.${channel}`, e);
      out.push(...e.items);
    }
  return out;
}

type DeadLetter = { headers: Record<string, string>; items: StockItem[] };

/** The item dead letters one sink wrote (its consumer's), in order. */
async function itemDeadLetters(consumer: string): Promise<DeadLetter[]> {
  const jsm = await producer.jsm();
  const info = await jsm.streams.info(streamNames.dlq);
  const out: DeadLetter[] = [];
  for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(streamNames.dlq, { seq }).catch(() => null);
    if (m === null || m.subject !== "sluice.dlq.sink_failed") continue;
    const headers: Record<string, string> = {};
    for (const k of m.header.keys()) headers[k] = m.header.get(k);
    if (headers[sinkHeaders.consumer] !== consumer || headers[sinkHeaders.code] === undefined) continue;
    out.push({
      headers,
      items: (JSON.parse(new TextDecoder().decode(m.data)) as { items: StockItem[] }).items,
    });
  }
  return out;
}

/** Waits until `holds(sku)` equals the newest ATS of every SKU in `expected`. */
async function converged(
  expected: Map<string, StockItem>,
  holds: (sku: string) => number | undefined,
  what: string,
  timeoutMs = 20_000,
): Promise<void> {
  await waitFor(
    () => [...expected.values()].every((item) => holds(item.sku) === item.ats),
    what,
    timeoutMs,
  ).catch((error) => {
    const wrong = [...expected.values()].filter((i) => holds(i.sku) !== i.ats);
    const sample = wrong.slice(0, 5).map((i) => `${i.sku}: want ${i.ats} v${i.version}, has ${holds(i.sku)}`);
    throw new Error(`${(error as Error).message}; ${wrong.length} wrong, e.g. ${sample.join("; ")}`);
  });
}

const skusOf = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

describe("Lazada profile", () => {
  const secrets = {
    SLUICE_SINK_APP_SECRET: "lazada-app-secret-1",
    SLUICE_SINK_ACCESS_TOKEN: "lazada-token-1",
  };

  /** SKU-i → SellerSku LZ-i; every 10th by ItemId/SkuId; every 7th in warehouse "dropshipping". */
  function catalogue(mapped: string[]) {
    const skus: Record<string, Record<string, unknown>> = {};
    const keys = new Map<string, string>();
    mapped.forEach((sku, i) => {
      const row: Record<string, unknown> =
        i % 10 === 0 ? { itemId: 1000 + i, skuId: String(5000 + i) } : { sellerSku: `LZ-${i}` };
      if (i % 7 === 0) row.warehouse = "main";
      skus[sku] = row;
      const id = i % 10 === 0 ? `${1000 + i}/${5000 + i}` : `LZ-${i}`;
      keys.set(sku, i % 7 === 0 ? `${id}@dropshipping` : id);
    });
    return { mapping: { warehouses: { main: "dropshipping" }, skus }, keys };
  }

  test("a heal (the value delivered before, in a later message) reaches a marketplace that drifted", async () => {
    const mapped = skusOf("LZH", 3);
    const { mapping, keys } = catalogue(mapped);
    const mock = startLazadaMock({
      appKey: "app-1",
      ...{ appSecret: secrets.SLUICE_SINK_APP_SECRET, accessToken: secrets.SLUICE_SINK_ACCESS_TOKEN },
      skus: [...keys.values()],
      callsPerSecondMax: 100,
    });
    const args = ["--profile", "lazada", "--url", mock.url, "--mapping", file(mapping), "--app-key", "app-1"];
    const sink = await startSink(options("lzh", args, secrets), { log: testLog });
    try {
      const values = mapped.map((sku, i) => ({ sku, ats: 5 + i, version: 3, atMs: 0 }));
      await producer.publishJson("sluice.out.stock.lzh", { items: values });
      const key = (sku: string) => keys.get(sku) as string;
      await waitFor(() => values.every((v) => mock.quantities.get(key(v.sku)) === v.ats), "first delivery");
      // The marketplace drifts (an edit on its side); reconciliation heals by offering the same value again.
      for (const v of values) mock.quantities.set(key(v.sku), 99);
      await producer.publishJson("sluice.out.stock.lzh", { items: values });
      await waitFor(
        () => values.every((v) => mock.quantities.get(key(v.sku)) === v.ats),
        "the heal delivered",
      );
      expect(mock.log.violations).toEqual([]);
    } finally {
      await sink.stop();
      mock.stop();
    }
  });

  test("batches within 20 SKUs (≤ 50), signs every request, honours bans, ends on the newest value; unmapped SKUs dead-lettered", async () => {
    const random = prng(11);
    const mapped = skusOf("LZA", 130);
    const unmapped = skusOf("LZA-NOPE", 3);
    const { mapping, keys } = catalogue(mapped);
    const mock = startLazadaMock({
      appKey: "app-1",
      ...{ appSecret: secrets.SLUICE_SINK_APP_SECRET, accessToken: secrets.SLUICE_SINK_ACCESS_TOKEN },
      skus: [...keys.values()],
      callsPerSecondMax: 4,
    });
    const args = ["--profile", "lazada", "--url", mock.url, "--mapping", file(mapping), "--app-key", "app-1"];
    const rounds = stockRounds(random, [...mapped, ...unmapped], 5);
    const published = await publish("lz1", random, rounds.slice(0, 3));
    const sink = await startSink(options("lz1", args, secrets), { log: testLog });
    try {
      published.push(...(await publish("lz1", random, rounds.slice(3))));
      const expected = newestValues(published);
      const wanted = new Map([...expected].filter(([sku]) => keys.has(sku)));
      await converged(
        wanted,
        (sku) => mock.quantities.get(keys.get(sku) as string),
        "Lazada on the newest values",
      );
      expect(mock.log.violations).toEqual([]);
      expect(mock.log.sizeMax("update")).toBeLessThanOrEqual(20);
      expect(mock.log.count("ApiCallLimit")).toBeGreaterThan(0); // 4 calls/s: banned, and waited
      expect(mock.signatureFailures()).toBe(0);
      const dl = await waitFor(async () => {
        const d = await itemDeadLetters("sink-stock-lz1");
        const last = new Map(d.flatMap((x) => x.items.map((i) => [i.sku, i.version] as const)));
        return unmapped.every((sku) => last.get(sku) === expected.get(sku)?.version) ? d : null;
      }, "the unmapped SKUs' newest values dead-lettered");
      for (const d of dl) {
        expect(d.headers[sinkHeaders.code]).toBe("sku_unmapped");
        expect(d.headers[deadLetterHeaders.reason]).toBe("sink_failed");
        expect(d.headers[deadLetterHeaders.detail]).toMatch(
          /^sku_unmapped: SKU LZA-NOPE-\d has no row in the mapping table/,
        );
        expect(d.headers[deadLetterHeaders.subject]).toBe("sluice.out.stock.lz1");
        expect(Number(d.headers[deadLetterHeaders.item])).toBeGreaterThanOrEqual(0);
        expect(d.items).toHaveLength(1);
      }
      // Every item the sink dead-lettered is on the stream (read again: one may have landed after `dl`).
      await waitFor(
        async () => (await itemDeadLetters("sink-stock-lz1")).length === sink.stats.itemsDeadLettered,
        "the dead-letter stream holds every item the sink counted",
      );
    } finally {
      await sink.stop();
      mock.stop();
    }
  }, 30_000);

  test("--batch-items-max 50 fills requests to Lazada's limit; a wrong app secret is refused, not retried, and dead-lettered", async () => {
    const random = prng(12);
    const mapped = skusOf("LZB", 120);
    const { mapping, keys } = catalogue(mapped);
    const mock = startLazadaMock({
      appKey: "app-1",
      appSecret: "right",
      accessToken: "tok-1",
      skus: [...keys.values()],
    });
    const good = { SLUICE_SINK_APP_SECRET: "right", SLUICE_SINK_ACCESS_TOKEN: "tok-1" };
    const args = ["--profile", "lazada", "--url", mock.url, "--mapping", file(mapping), "--app-key", "app-1"];
    const published = await publish("lz2", random, stockRounds(random, mapped, 2));
    const sink = await startSink(options("lz2", [...args, "--batch-items-max", "50"], good), {
      log: testLog,
    });
    try {
      await converged(
        newestValues(published),
        (sku) => mock.quantities.get(keys.get(sku) as string),
        "Lazada on the newest values",
      );
      expect(mock.log.sizeMax("update")).toBe(50);
      expect(mock.log.violations).toEqual([]);
    } finally {
      await sink.stop();
    }
    const before = new Map(mock.quantities);
    const bad = await startSink(options("lz3", args, { ...good, SLUICE_SINK_APP_SECRET: "wrong" }), {
      log: testLog,
    });
    try {
      const wrong = await publish("lz3", random, [
        mapped.slice(0, 30).map((sku) => ({ sku, ats: 999, version: 9, atMs: 1 })),
      ]);
      const dl = await waitFor(async () => {
        const d = await itemDeadLetters("sink-stock-lz3");
        return d.length >= wrong.length ? d : null;
      }, "every item of the badly signed requests dead-lettered");
      expect(new Set(dl.map((d) => d.headers[sinkHeaders.code]))).toEqual(new Set(["rejected"]));
      expect(dl[0]?.headers[deadLetterHeaders.detail]).toMatch(/^rejected: Lazada IncompleteSignature/);
      expect(mock.signatureFailures()).toBe(2); // 30 SKUs in 20 + 10: each refused once, never retried
      expect(mock.quantities).toEqual(before);
      expect(bad.stats.itemsDeadLettered).toBe(30);
    } finally {
      await bad.stop();
      mock.stop();
    }
  }, 30_000);
});

describe("Shopify profile", () => {
  const location = (n: number) => `gid://shopify/Location/${n}`;
  const itemOf = (i: number) => `gid://shopify/InventoryItem/${100 + i}`;

  function catalogue(mapped: string[]) {
    const skus: Record<string, Record<string, unknown>> = {};
    const pairs = new Map<string, [string, string]>();
    mapped.forEach((sku, i) => {
      // Every third SKU in warehouse w2 (Location/2), the others in the default w1 (Location/1), by gid or number.
      skus[sku] =
        i % 3 === 0 ? { inventoryItemId: itemOf(i), warehouse: "w2" } : { inventoryItemId: 100 + i };
      pairs.set(sku, [itemOf(i), location(i % 3 === 0 ? 2 : 1)]);
    });
    const mapping = { warehouses: { w1: location(1), w2: "2" }, defaultWarehouse: "w1", skus };
    const levels = [...pairs.values()].map(([inventoryItemId, locationId]) => ({
      inventoryItemId,
      locationId,
      available: 7,
    }));
    return { mapping, pairs, levels };
  }

  test("compare-and-set: conflicts from sales are read again and resent; the cost bucket is honoured; the shop ends on the newest value", async () => {
    const random = prng(21);
    const mapped = skusOf("SHA", 60);
    const { mapping, pairs, levels } = catalogue(mapped);
    // One more SKU mapped to an item the shop does not stock at its location: refused, dead-lettered.
    mapping.skus["SHA-ELSEWHERE"] = { inventoryItemId: 999, warehouse: "w2" };
    const mock = startShopifyMock({
      accessToken: "shpat_secret_1",
      levels: [...levels, { inventoryItemId: itemOf(899), locationId: location(1), available: 0 }],
      bucketMaxPoints: 60,
      restorePointsPerSecond: 600,
      faults: { seed: 5, foreignCostRate: 0.3, foreignCostPoints: 55, saleRate: 0.3 },
    });
    const tokenFile = file("shpat_secret_1\n");
    const args = [
      "--profile",
      "shopify",
      "--url",
      mock.url,
      "--mapping",
      file(mapping),
      "--access-token-file",
      tokenFile,
    ];
    const all = [...mapped, "SHA-ELSEWHERE", "SHA-NOPE"];
    const rounds = stockRounds(random, all, 6);
    const published = await publish("sh1", random, rounds.slice(0, 3));
    const sink = await startSink(
      options("sh1", [...args, "--batch-items-max", "20", "--conflict-retries-max", "20"], {}),
      { log: testLog },
    );
    try {
      published.push(...(await publish("sh1", random, rounds.slice(3))));
      const expected = newestValues(published);
      const wanted = new Map([...expected].filter(([sku]) => pairs.has(sku)));
      await converged(
        wanted,
        (sku) => mock.available(...(pairs.get(sku) as [string, string])),
        "Shopify on the newest values",
      );
      expect(mock.log.violations).toEqual([]);
      expect(mock.stats.conflicts).toBeGreaterThan(0);
      expect(mock.stats.throttled).toBeGreaterThan(0);
      expect(mock.log.sizeMax("mutation")).toBeLessThanOrEqual(20);
      const dl = await waitFor(async () => {
        const d = await itemDeadLetters("sink-stock-sh1");
        const skus = new Set(d.flatMap((x) => x.items.map((i) => i.sku)));
        return skus.has("SHA-NOPE") && skus.has("SHA-ELSEWHERE") ? d : null;
      }, "the unmapped and the unstocked SKU dead-lettered");
      const codeOf = (sku: string) => dl.find((d) => d.items[0]?.sku === sku)?.headers[sinkHeaders.code];
      expect(codeOf("SHA-NOPE")).toBe("sku_unmapped");
      expect(codeOf("SHA-ELSEWHERE")).toBe("rejected");
    } finally {
      await sink.stop();
      mock.stop();
    }
  }, 30_000);
});

describe("Shopee profile", () => {
  const partner = { partnerId: 2001887, shopId: 14701711 };
  const env = {
    SLUICE_SINK_PARTNER_KEY: "shopee-partner-key-1",
    SLUICE_SINK_ACCESS_TOKEN: "shopee-token-0001",
  };
  const idArgs = ["--partner-id", String(partner.partnerId), "--shop-id", String(partner.shopId)];

  /** 8 items of 5 models, 6 items without variations, one item in location "SGZ". */
  function catalogue() {
    const skus: Record<string, Record<string, unknown>> = {};
    const where = new Map<string, [number, number, string]>();
    for (let item = 1; item <= 8; item++)
      for (let model = 1; model <= 5; model++) {
        skus[`SPE-${item}-${model}`] = { itemId: 700 + item, modelId: 9000 + model };
        where.set(`SPE-${item}-${model}`, [700 + item, 9000 + model, ""]);
      }
    for (let item = 1; item <= 6; item++) {
      skus[`SPE-SOLO-${item}`] = { itemId: String(800 + item) };
      where.set(`SPE-SOLO-${item}`, [800 + item, 0, ""]);
    }
    skus["SPE-LOC"] = { itemId: 900, modelId: 1, warehouse: "sg" };
    where.set("SPE-LOC", [900, 1, "SGZ"]);
    const items = [
      ...Array.from({ length: 8 }, (_, i) => ({ itemId: 701 + i, models: [9001, 9002, 9003, 9004, 9005] })),
      ...Array.from({ length: 6 }, (_, i) => ({ itemId: 801 + i, models: [0] })),
      { itemId: 900, models: [1], locations: ["SGZ"] },
    ];
    return { mapping: { warehouses: { sg: "SGZ" }, skus }, where, items };
  }

  test("one item per call, its models together; 429 with Retry-After honoured; ends on the newest value; unmapped dead-lettered", async () => {
    const random = prng(31);
    const { mapping, where, items } = catalogue();
    const mock = startShopeeMock({
      ...partner,
      partnerKey: env.SLUICE_SINK_PARTNER_KEY,
      accessToken: env.SLUICE_SINK_ACCESS_TOKEN,
      items,
      callsPerSecondMax: 8,
    });
    const args = ["--profile", "shopee", "--url", mock.url, "--mapping", file(mapping), ...idArgs];
    const all = [...where.keys(), "SPE-NOPE"];
    const rounds = stockRounds(random, all, 5);
    const published = await publish("sp1", random, rounds.slice(0, 3));
    const sink = await startSink(options("sp1", args, env), { log: testLog });
    try {
      published.push(...(await publish("sp1", random, rounds.slice(3))));
      const expected = newestValues(published);
      const wanted = new Map([...expected].filter(([sku]) => where.has(sku)));
      await converged(
        wanted,
        (sku) => mock.stock(...(where.get(sku) as [number, number, string])),
        "Shopee on the newest values",
      );
      expect(mock.log.violations).toEqual([]);
      expect(mock.log.count("429")).toBeGreaterThan(0);
      expect(mock.log.sizeMax("update_stock")).toBeLessThanOrEqual(5); // an item's models, never two items
      const dl = await waitFor(async () => {
        const d = await itemDeadLetters("sink-stock-sp1");
        return d.some((x) => x.items[0]?.version === expected.get("SPE-NOPE")?.version) ? d : null;
      }, "the unmapped SKU's newest value dead-lettered");
      expect(dl.every((d) => d.headers[sinkHeaders.code] === "sku_unmapped")).toBe(true);
    } finally {
      await sink.stop();
      mock.stop();
    }
  }, 30_000);

  test("a wrong partner key is refused (error_sign) and dead-lettered; no secret reaches a log line or a dead letter", async () => {
    const { mapping, where, items } = catalogue();
    const mock = startShopeeMock({
      ...partner,
      partnerKey: "the-right-key",
      accessToken: env.SLUICE_SINK_ACCESS_TOKEN,
      items,
    });
    // A gateway that echoes the request (its URL carries the access token) in its error: masked by the sink.
    const echo = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: (req) => new Response(`bad request ${req.url}`, { status: 400 }),
    });
    const lines: string[] = [];
    const log = new Logger("debug", {}, (line) => lines.push(line));
    const args = ["--profile", "shopee", "--mapping", file(mapping), ...idArgs];
    const skus = [...where.keys()].slice(0, 6);
    try {
      for (const [channel, url] of [
        ["sp2", mock.url],
        ["sp3", `http://127.0.0.1:${echo.port}`],
      ] as const) {
        const sink = await startSink(
          { ...options(channel, [...args, "--url", url], env), logLevel: "debug" },
          { log },
        );
        try {
          await publish(channel, prng(1), [skus.map((sku) => ({ sku, ats: 5, version: 1, atMs: 1 }))]);
          await waitFor(
            async () => (await itemDeadLetters(`sink-stock-${channel}`)).length >= skus.length,
            "dead letters",
          );
        } finally {
          await sink.stop();
        }
      }
      const refused = await itemDeadLetters("sink-stock-sp2");
      expect(refused[0]?.headers[deadLetterHeaders.detail]).toMatch(
        /^rejected: Shopee error_sign: Wrong sign/,
      );
      expect(mock.signatureFailures()).toBeGreaterThan(0);
      const echoed = await itemDeadLetters("sink-stock-sp3");
      expect(echoed[0]?.headers[deadLetterHeaders.detail]).toMatch(/access_token=\[secret\]/);
      const everything = JSON.stringify([lines, refused, echoed]);
      expect(everything).not.toContain(env.SLUICE_SINK_ACCESS_TOKEN);
      expect(everything).not.toContain(env.SLUICE_SINK_PARTNER_KEY);
    } finally {
      echo.stop(true);
      mock.stop();
    }
  }, 30_000);
});

/** Random sequences of updates, random faults from the mock, a stop and restart or replays: the newest wins. */
describe("generated inputs", () => {
  type Run = {
    profile: "lazada" | "shopify" | "shopee";
    seed: number;
    restart: boolean;
  };
  const runs: Run[] = [
    { profile: "lazada", seed: 101, restart: true },
    { profile: "lazada", seed: 102, restart: false },
    { profile: "shopify", seed: 201, restart: true },
    { profile: "shopify", seed: 202, restart: false },
    { profile: "shopee", seed: 301, restart: true },
    { profile: "shopee", seed: 302, restart: false },
    // SLUICE_SINK_GEN_RUNS=N adds N more seeds per profile (a longer search; the default stays quick).
    ...Array.from({ length: Number(process.env.SLUICE_SINK_GEN_RUNS ?? 0) }, (_, i) =>
      (["lazada", "shopify", "shopee"] as const).map((profile) => ({
        profile,
        seed: 1000 + i,
        restart: i % 2 === 0,
      })),
    ).flat(),
  ];

  for (const run of runs)
    test(`${run.profile}, seed ${run.seed}${run.restart ? ", restarted midway" : ", old envelopes replayed"}`, async () => {
      const random = prng(run.seed);
      const channel = `gen-${run.profile}-${run.seed}`;
      const world = marketplace(run, random);
      const skus = [...skusOf(`G${run.seed}`, 10 + Math.floor(random() * 50)), `G${run.seed}-UNMAPPED`];
      const rounds = stockRounds(random, skus, 3 + Math.floor(random() * 4));
      const args = [
        ...world.args,
        "--batch-messages-max",
        String(1 + Math.floor(random() * 20)),
        "--attempts",
        "30",
        "--conflict-retries-max",
        "30",
        "--ack-wait-ms",
        "2000",
        "--timeout-ms",
        "1000",
      ];
      const opts = options(channel, args, world.env);
      const published = await publish(channel, random, rounds.slice(0, 1));
      let sink: Sink = await startSink(opts, { log: testLog });
      try {
        for (const [r, round] of rounds.slice(1).entries()) {
          published.push(...(await publish(channel, random, [round])));
          if (run.restart && r === 0) {
            await Bun.sleep(Math.floor(random() * 100));
            await sink.stop();
            world.newClient();
            sink = await startSink(opts, { log: testLog });
          } else if (!run.restart && random() < 0.7) {
            // An older envelope published again (a dead letter replayed): its values are older, or equal.
            const old = envelopes(random, rounds[Math.floor(random() * r)] ?? [])[0];
            if (old !== undefined) published.push(...(await publish(channel, random, [old.items])));
          }
          await Bun.sleep(Math.floor(random() * 60));
        }
        const expected = newestValues(published);
        const wanted = new Map([...expected].filter(([sku]) => !sku.endsWith("-UNMAPPED")));
        await converged(wanted, world.holds, `${run.profile} on the newest values`, 25_000);
        expect(world.violations()).toEqual([]);
        const unmapped = expected.get(`G${run.seed}-UNMAPPED`);
        await waitFor(async () => {
          const d = await itemDeadLetters(opts.consumerName);
          return d.some(
            (x) => x.items[0]?.version === unmapped?.version && x.items[0]?.ats === unmapped?.ats,
          );
        }, "the unmapped SKU's newest value dead-lettered");
      } finally {
        await sink.stop();
        world.stop();
      }
    }, 40_000);

  type World = {
    args: string[];
    env: Record<string, string>;
    holds: (sku: string) => number | undefined;
    violations: () => string[];
    newClient: () => void;
    stop: () => void;
  };

  /** A mock with random faults for `run`, the sink's arguments for it, and what it holds per Sluice SKU. */
  function marketplace(run: Run, random: () => number): World {
    const sku = (i: number) => `G${run.seed}-${i}`;
    const n = 60;
    const faults = { seed: run.seed, serverErrorRate: 0.1 };
    if (run.profile === "lazada") {
      const skus = Object.fromEntries(Array.from({ length: n }, (_, i) => [sku(i), { sellerSku: `L${i}` }]));
      const mock = startLazadaMock({
        appKey: "k",
        appSecret: "s-secret",
        accessToken: "t-token",
        skus: Array.from({ length: n }, (_, i) => `L${i}`),
        faults: { ...faults, throttleRate: 0.04 },
      });
      return {
        args: [
          "--profile",
          "lazada",
          "--url",
          mock.url,
          "--mapping",
          file({ skus }),
          "--app-key",
          "k",
          "--batch-items-max",
          String(1 + Math.floor(random() * 50)),
        ],
        env: { SLUICE_SINK_APP_SECRET: "s-secret", SLUICE_SINK_ACCESS_TOKEN: "t-token" },
        holds: (s: string) => mock.quantities.get(`L${s.slice(s.lastIndexOf("-") + 1)}`),
        violations: () => mock.log.violations,
        newClient: () => mock.newClient(),
        stop: () => mock.stop(),
      };
    }
    if (run.profile === "shopify") {
      const skus = Object.fromEntries(
        Array.from({ length: n }, (_, i) => [sku(i), { inventoryItemId: 5000 + i }]),
      );
      const mock = startShopifyMock({
        accessToken: "shpat_gen",
        levels: Array.from({ length: n }, (_, i) => ({
          inventoryItemId: `gid://shopify/InventoryItem/${5000 + i}`,
          locationId: "gid://shopify/Location/9",
          available: 3,
        })),
        bucketMaxPoints: 120,
        restorePointsPerSecond: 1000,
        faults: { ...faults, foreignCostRate: 0.2, foreignCostPoints: 110, saleRate: 0.25 },
      });
      return {
        args: [
          "--profile",
          "shopify",
          "--url",
          mock.url,
          "--mapping",
          file({ warehouses: { w: "9" }, defaultWarehouse: "w", skus }),
          "--batch-items-max",
          String(1 + Math.floor(random() * 50)),
        ],
        env: { SLUICE_SINK_ACCESS_TOKEN: "shpat_gen" },
        holds: (s: string) =>
          mock.available(
            `gid://shopify/InventoryItem/${5000 + Number(s.slice(s.lastIndexOf("-") + 1))}`,
            "gid://shopify/Location/9",
          ),
        violations: () => mock.log.violations,
        newClient: () => mock.newClient(),
        stop: () => mock.stop(),
      };
    }
    // Shopee: 6 items of 10 models.
    const skus = Object.fromEntries(
      Array.from({ length: n }, (_, i) => [
        sku(i),
        { itemId: 100 + (i % 6), modelId: 1 + Math.floor(i / 6) },
      ]),
    );
    const mock = startShopeeMock({
      partnerId: 1,
      shopId: 2,
      partnerKey: "p-key",
      accessToken: "t-token",
      items: Array.from({ length: 6 }, (_, i) => ({
        itemId: 100 + i,
        models: Array.from({ length: 10 }, (_, m) => m + 1),
      })),
      faults: { ...faults, throttleRate: 0.04 },
    });
    return {
      args: [
        "--profile",
        "shopee",
        "--url",
        mock.url,
        "--mapping",
        file({ skus }),
        "--partner-id",
        "1",
        "--shop-id",
        "2",
        "--batch-items-max",
        String(1 + Math.floor(random() * 10)),
      ],
      env: { SLUICE_SINK_PARTNER_KEY: "p-key", SLUICE_SINK_ACCESS_TOKEN: "t-token" },
      holds: (s: string) => {
        const i = Number(s.slice(s.lastIndexOf("-") + 1));
        return mock.stock(100 + (i % 6), 1 + Math.floor(i / 6));
      },
      violations: () => mock.log.violations,
      newClient: () => mock.newClient(),
      stop: () => mock.stop(),
    };
  }
});

describe("a marketplace sink as its own process", () => {
  const run = async (args: string[], env: Record<string, string> = {}) => {
    const child = Bun.spawn(
      ["bun", "src/sink/main.ts", "--source", "stock:shop", "--nats", nats.url, ...args],
      {
        env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env },
        stdout: "pipe",
        stderr: "pipe",
      },
    );
    const [stdout, stderr] = await Promise.all([
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
    ]);
    return { code: await child.exited, stdout, stderr };
  };

  test("a profile without its mapping table exits 2; a bad table exits 1; both say the fix, neither prints a secret", async () => {
    const env = { SLUICE_SINK_ACCESS_TOKEN: "shpat_never_printed" };
    const usage = await run(["--profile", "shopify", "--url", "http://127.0.0.1:1/graphql.json"], env);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/--profile shopify needs --mapping FILE/);
    const table = file({ skus: { A: { inventoryItemId: 1 } } });
    const bad = await run(
      ["--profile", "shopify", "--url", "http://127.0.0.1:1/graphql.json", "--mapping", table],
      env,
    );
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(
      /skus\[\\"A\\"\] has no warehouse: give it \\"warehouse\\", or set \\"defaultWarehouse\\"/,
    );
    expect(usage.stdout + usage.stderr + bad.stdout + bad.stderr).not.toContain("shpat_never_printed");
  });
});
