/**
 * Memory search at 100,000 entries: the p50 of a ranked query (MemoryService.search, BM25 with the
 * user's own statistics, over the FTS5 read model) against a raw bun:sqlite FTS5 query on the same
 * table (the same user's postings, FTS5's own bm25 ranking, the top 10 with their content): the ratio
 * is what scoring with per-user statistics, and the rest of the service, cost over FTS5 alone.
 *
 * The entries are built the way the server would: MemoryAdded events appended in concurrent batches
 * (each its own stream; the store's group commit shares commits), then the memory projection catches
 * up from the store. 99 users hold 500 entries each and one user the rest (50,500): the typical scope
 * and a heavy one, in one 100,000-entry index.
 */
import { memoryProjection, scopeToken } from "../projections/memory/index.ts";
import { MemoryService, queryTerms } from "../src/app/memory.ts";
import { silentLogger } from "../src/core/logger.ts";
import { memoryEvents, type MemoryEvent } from "../src/domain/memory/events.ts";
import { SqliteEventStore } from "../src/eventstore/adapters/sqlite.ts";
import type { EventData } from "../src/eventstore/port.ts";
import { openReadModelDb } from "../src/projections/readModelDb.ts";
import { ProjectionRunner } from "../src/projections/runner.ts";
import type { SecretBox } from "../src/secrets/secretBox.ts";
import { median, tempDir, type Result } from "./lib.ts";

const APP = "app_bench";
const VOCABULARY = 5_000;

/** A deterministic PRNG, so every run indexes the same entries and asks the same queries. */
function mulberry32(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "qui", "bo", "de", "fu", "ga", "hi", "ja", "ko", "lu", "me"];
/** Word `i` of the vocabulary: syllables spelling `i` in base 20, so every word is distinct. */
const word = (i: number): string => {
  let w = "";
  let n = i + 20;
  while (n > 0) {
    w = SYLLABLES[n % 20]! + w;
    n = Math.floor(n / 20);
  }
  return w;
};
const WORDS = Array.from({ length: VOCABULARY }, (_, i) => word(i));

/** Zipf-distributed word picks, as in text: a few words are everywhere, most are rare. */
function zipf(random: () => number): () => string {
  const cumulative: number[] = [];
  let sum = 0;
  for (let i = 0; i < VOCABULARY; i++) cumulative.push((sum += 1 / (i + 1)));
  return () => {
    const x = random() * sum;
    let lo = 0;
    let hi = VOCABULARY - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cumulative[mid]! < x) lo = mid + 1;
      else hi = mid;
    }
    return WORDS[lo]!;
  };
}

const userOf = (i: number, heavyFrom: number): string => (i >= heavyFrom ? "user-heavy" : `user-${i % 99}`);

async function buildStore(path: string, total: number, random: () => number): Promise<SqliteEventStore> {
  const store = new SqliteEventStore({ path, synchronous: "normal" });
  const pick = zipf(random);
  const heavyFrom = 99 * Math.floor(total / 200);
  const batch = 1000;
  for (let start = 0; start < total; start += batch) {
    const appends: Array<Promise<unknown>> = [];
    for (let i = start; i < Math.min(total, start + batch); i++) {
      const id = `mem_bench${i.toString().padStart(7, "0")}`;
      const length = 6 + Math.floor(random() * 15);
      const content = Array.from({ length }, pick).join(" ");
      const event: MemoryEvent = {
        type: "MemoryAdded",
        data: { memory_id: id, app_id: APP, user_id: userOf(i, heavyFrom), agent_id: null, content, metadata: {}, source: "api", job_id: null },
      };
      const data: EventData = { id: crypto.randomUUID(), type: event.type, data: event.data, metadata: { app_id: APP, occurred_at: 1_790_000_000_000 + i, ...memoryEvents.encode(event) } };
      appends.push(store.appendToStream(`memory-${id}`, [data], { expectedRevision: "no_stream" }));
    }
    await Promise.all(appends);
  }
  return store;
}

export async function memoryBenchmarks(quick: boolean): Promise<Result[]> {
  const total = 100_000;
  const queries = quick ? 100 : 400;
  const rounds = quick ? 1 : 3;
  const t = tempDir("memory");
  const random = mulberry32(20261201);
  try {
    const buildStart = performance.now();
    const store = await buildStore(t.path("events.sqlite"), total, random);
    const appendedMs = performance.now() - buildStart;
    const db = openReadModelDb(t.path("read.sqlite"));
    const runner = new ProjectionRunner(store, db, [memoryProjection], { batchSize: 2000 });
    const projectStart = performance.now();
    runner.start();
    await runner.waitUntilCaughtUp(10 * 60_000);
    const projectedMs = performance.now() - projectStart;
    await runner.stop();
    const indexed = (db.query("SELECT count(*) AS n FROM memory_entries").get() as { n: number }).n;
    if (indexed !== total) throw new Error(`indexed ${indexed} entries, expected ${total}`);

    const service = new MemoryService({ db, secrets: {} as SecretBox, logger: silentLogger, connectionsOf: async () => ({}) });
    // Two or three words of middling frequency: the kind of query that matches some, not all.
    const pickQuery = () => Array.from({ length: 2 + Math.floor(random() * 2) }, () => WORDS[20 + Math.floor(random() * 1500)]!).join(" ");
    const raw = db.query(
      `SELECT e.id, e.content, f.rank FROM memory_fts f JOIN memory_entries e ON e.seq = f.rowid
       WHERE memory_fts MATCH ? ORDER BY f.rank LIMIT 10`,
    );

    const results: Result[] = [
      { name: `memory: ${total.toLocaleString("en-US")} MemoryAdded appended (batches of 1,000 concurrent)`, unit: "events/s", value: (total / appendedMs) * 1000 },
      { name: `memory: projection catch-up (entries, FTS5, per-user counts)`, unit: "entries/s", value: (total / projectedMs) * 1000 },
    ];
    // The worst case: the most common words, matched by most of a heavy user's entries (scoring stops at 1,000 candidates).
    const commonQuery = () => Array.from({ length: 2 }, () => WORDS[Math.floor(random() * 10)]!).join(" ");
    const typical = Array.from({ length: 99 }, (_, i) => `user-${i}`);
    const cases = [
      ["users of 500 entries", typical, pickQuery],
      ["one user of 50,500 entries", ["user-heavy"], pickQuery],
      ["one user of 50,500 entries, the 10 commonest words", ["user-heavy"], commonQuery],
    ] as const;
    for (const [label, users, makeQuery] of cases) {
      const asked = Array.from({ length: queries }, (_, i) => ({ user: users[i % users.length]!, query: makeQuery() }));
      const ours: number[] = [];
      const base: number[] = [];
      for (let r = 0; r < rounds; r++) {
        const a: number[] = [];
        const b: number[] = [];
        for (const q of asked) {
          let start = performance.now();
          const match = `scope : "${scopeToken(APP, q.user)}" AND content : (${queryTerms(q.query).map((w) => `"${w}"`).join(" OR ")})`;
          raw.all(match);
          b.push(performance.now() - start);
          start = performance.now();
          await service.search({ appId: APP, userId: q.user, scope: { kind: "all" }, query: q.query, limit: 10 });
          a.push(performance.now() - start);
        }
        ours.push(median(a));
        base.push(median(b));
      }
      results.push({
        name: `memory query p50, ${total.toLocaleString("en-US")} entries, ${label} (BM25, top 10)`, unit: "ms",
        value: median(ours), baselineName: "raw FTS5 MATCH … ORDER BY rank LIMIT 10, same table", baseline: median(base),
      });
    }
    await store.close();
    db.close();
    return results;
  } finally {
    t.remove();
  }
}
