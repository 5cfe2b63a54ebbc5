/**
 * Memory search and the embedder: what `GET /v1/memory` and agents' recall rank with.
 *
 * Ranking, for a query:
 * - **BM25** over the user's own entries: the FTS5 index (projections/memory) finds the entries holding
 *   any of the query's words; each is scored with Okapi BM25 (k1 = 1.2, b = 0.75,
 *   idf = ln(1 + (N − n + 0.5) / (n + 0.5))) where N, n and the average length are the user's own, so
 *   no score depends on another user's or app's entries. `bm25_score = bm25 / (bm25 + 1)`: 0 for no
 *   match, towards 1 for many rare words matched; strictly increasing in BM25.
 * - **Hybrid**, when the app has an embeddings model (src/llm/embeddings.ts): the query is embedded,
 *   and candidates are the BM25 matches plus the entries nearest to it by cosine similarity;
 *   `relevance_score = 0.5 · bm25_score + 0.5 · max(0, cosine)`. Entries without a vector yet are
 *   embedded with the query (in the same request) when they are among the candidates; the embedder
 *   fills the rest in the background. If the embeddings endpoint fails, the answer ranks by BM25 alone
 *   (`ranking: "bm25"`): a search never fails because of it.
 * Results are ordered by relevance_score, then newest first.
 */
import type { Database } from "bun:sqlite";
import type { Logger } from "../core/logger.ts";
import type { Connection } from "../domain/app/app.ts";
import {
  entriesLackingVectors, matchingMemories, memoriesByIds, memoryApps, recentMemories, saveVectors, scopeStats, scopeVectors,
  termFrequencyInScope, tokenize, vectorsOf, type AgentScope, type MemoryRow,
} from "../../projections/memory/index.ts";
import { AppEmbeddings, cosine, EMBED_BATCH, type Embedder } from "../llm/embeddings.ts";
import type { SecretBox } from "../secrets/secretBox.ts";
import type { AppContext } from "./context.ts";

/** At most this many of a user's entries are scored for one query (FTS5's own ranking picks them when more match). */
export const MAX_CANDIDATES = 1000;
/** At most this many query words count (the rest are ignored). */
export const MAX_QUERY_TERMS = 32;
/**
 * Vectors compared per query: the user's newest entries' (older ones of a user with more join the
 * candidates through BM25 only). Bounds what one query reads: 5,000 vectors of 1,536 dimensions are 30 MB.
 */
const MAX_VECTORS_SCANNED = 5_000;
/** Entries nearest the query by cosine that join the candidates. */
const NEAREST = 50;
/** Entries lacking a vector embedded along with a query. */
const EMBED_WITH_QUERY = 32;
const K1 = 1.2;
const B = 0.75;
/** How long a query waits for its embedding before ranking by BM25 alone. */
const QUERY_EMBED_TIMEOUT_MS = 5_000;
/** After a failure, an app's embeddings are not tried again for this long (queries rank by BM25 alone). */
const FAILURE_BACKOFF_MS = 30_000;

export type Ranking = "recency" | "bm25" | "hybrid";

export interface MemorySearch {
  /** The data partition (an app, or its test data). */
  appId: string;
  userId: string;
  scope: AgentScope;
  /** Null: the newest entries, unranked. */
  query: string | null;
  limit: number;
  /** Ranked searches: how many of the best to skip (a page's start). */
  offset?: number;
  /** Newest-first lists: entries older than this seq. */
  beforeSeq?: number;
}

export interface MemoryHit {
  row: MemoryRow;
  /** Null when unranked (no query). */
  score: number | null;
}

export interface MemoryResults {
  hits: MemoryHit[];
  hasMore: boolean;
  ranking: Ranking;
}

export interface MemoryServiceDeps {
  db: Database;
  secrets: SecretBox;
  logger: Logger;
  /** An app's model connections (the app's own, for a test partition too). */
  connectionsOf(appId: string): Promise<Readonly<Record<string, Connection>>>;
}

/** BM25 over the candidates, with the user's own statistics. */
function bm25Scores(db: Database, appId: string, userId: string, terms: readonly string[], rows: readonly MemoryRow[]): Map<string, number> {
  const stats = scopeStats(db, appId, userId);
  const n = Math.max(stats.entries, 1);
  const avgdl = stats.entries > 0 ? Math.max(stats.tokens / stats.entries, 1) : 1;
  const idf = new Map<string, number>();
  for (const term of terms) {
    const df = termFrequencyInScope(db, appId, userId, term);
    idf.set(term, Math.log(1 + (n - df + 0.5) / (df + 0.5)));
  }
  const scores = new Map<string, number>();
  for (const row of rows) {
    const tf = new Map<string, number>();
    for (const token of tokenize(row.content)) if (idf.has(token)) tf.set(token, (tf.get(token) ?? 0) + 1);
    let score = 0;
    for (const [term, f] of tf) score += idf.get(term)! * (f * (K1 + 1)) / (f + K1 * (1 - B + B * (row.tokens / avgdl)));
    scores.set(row.id, score);
  }
  return scores;
}

/**
 * Common English function words, left out of a query that has other words: in a user's few entries
 * "a" or "the" can be rarer than the word that matters, and BM25 would rank an entry for sharing one.
 */
const STOPWORDS = new Set((
  "a about all also am an and any are as at be been being but by can could did do does for from had has have he her him his how i if in " +
  "into is it its just me my of on or our she should so some than that the their them then there these they this those to too us was " +
  "we were what when where which who whom why will with would you your"
).split(" "));

/** The words of a query that count: at most MAX_QUERY_TERMS, function words left out unless there is nothing else. */
export function queryTerms(query: string): string[] {
  const words = [...new Set(tokenize(query))];
  const meaningful = words.filter((w) => !STOPWORDS.has(w));
  return (meaningful.length ? meaningful : words).slice(0, MAX_QUERY_TERMS);
}

/** BM25 mapped to 0..1, strictly increasing: what a score means does not depend on the other results. */
export const bm25Normalised = (bm25: number): number => bm25 / (bm25 + 1);

const round6 = (x: number) => Math.round(x * 1e6) / 1e6;

export class MemoryService {
  private readonly embeddings: AppEmbeddings;
  /** Apps whose embeddings failed, until when they are not tried again. */
  private readonly failedUntil = new Map<string, number>();
  private loop: Promise<void> | undefined;
  private stopped = false;
  private wake: (() => void) | undefined;
  private pending = false;

  constructor(private readonly deps: MemoryServiceDeps) {
    this.embeddings = new AppEmbeddings(deps.secrets, deps.connectionsOf);
  }

  /** The embedder of a data partition, unless it has none or failed a moment ago. */
  async embedderFor(appId: string): Promise<Embedder | null> {
    const until = this.failedUntil.get(appId);
    if (until !== undefined && until > Date.now()) return null;
    try {
      return await this.embeddings.forPartition(appId);
    } catch (err) {
      this.failed(appId, err);
      return null;
    }
  }

  private failed(appId: string, err: unknown): void {
    this.failedUntil.set(appId, Date.now() + FAILURE_BACKOFF_MS);
    this.deps.logger.warn("memory embeddings failed; ranking by BM25 alone for a while", { app_id: appId, error: (err as Error)?.message ?? String(err) });
  }

  async search(q: MemorySearch): Promise<MemoryResults> {
    const { db } = this.deps;
    if (q.query === null) {
      const rows = recentMemories(db, q.appId, q.userId, q.scope, q.limit + 1, q.beforeSeq);
      return { hits: rows.slice(0, q.limit).map((row) => ({ row, score: null })), hasMore: rows.length > q.limit, ranking: "recency" };
    }
    const terms = queryTerms(q.query);
    const rows = matchingMemories(db, q.appId, q.userId, q.scope, terms, MAX_CANDIDATES);
    const bm25 = bm25Scores(db, q.appId, q.userId, terms, rows);
    const byId = new Map(rows.map((r) => [r.id, r]));
    const offset = q.offset ?? 0;

    let ranking: Ranking = "bm25";
    let scored: Array<{ row: MemoryRow; score: number }> = rows.map((row) => ({ row, score: bm25Normalised(bm25.get(row.id) ?? 0) }));
    const embedder = await this.embedderFor(q.appId);
    if (embedder) {
      const hybrid = await this.hybrid(embedder, q, byId, bm25, offset + q.limit).catch((err) => {
        this.failed(q.appId, err);
        return null;
      });
      if (hybrid) {
        scored = hybrid;
        ranking = "hybrid";
      }
    }
    scored.sort((a, b) => b.score - a.score || b.row.seq - a.row.seq);
    const page = scored.slice(offset, offset + q.limit);
    return { hits: page.map((h) => ({ row: h.row, score: round6(h.score) })), hasMore: scored.length > offset + q.limit, ranking };
  }

  /** Hybrid scores of the BM25 candidates and the entries nearest the query; null when there is nothing to embed. */
  private async hybrid(embedder: Embedder, q: MemorySearch, byId: Map<string, MemoryRow>, bm25: Map<string, number>, wanted: number) {
    const { db } = this.deps;
    const known = vectorsOf(db, embedder.modelKey, [...byId.keys()]);
    const lacking = [...byId.values()].filter((r) => !known.has(r.id)).slice(0, EMBED_WITH_QUERY);
    const signal = AbortSignal.timeout(QUERY_EMBED_TIMEOUT_MS);
    const [queryVector, ...fresh] = await embedder.embed([q.query!, ...lacking.map((r) => r.content)], signal);
    if (fresh.length) {
      const made = lacking.map((r, i) => ({ memory_id: r.id, vector: fresh[i]! }));
      saveVectors(db, embedder.modelKey, made);
      for (const v of made) known.set(v.memory_id, v.vector);
    }
    // The entries nearest the query by meaning, whether or not they share a word with it.
    const nearest = scopeVectors(db, q.appId, q.userId, q.scope, embedder.modelKey, MAX_VECTORS_SCANNED)
      .map((v) => ({ id: v.memory_id, vector: v.vector, similarity: cosine(queryVector!, v.vector) }))
      .sort((a, b) => b.similarity - a.similarity)
      .slice(0, Math.max(NEAREST, wanted));
    for (const v of nearest) known.set(v.id, v.vector);
    const missing = nearest.map((v) => v.id).filter((id) => !byId.has(id));
    for (const row of memoriesByIds(db, q.appId, q.userId, q.scope, missing)) byId.set(row.id, row);
    return [...byId.values()].map((row) => {
      const vector = known.get(row.id);
      const similarity = vector ? Math.max(0, cosine(queryVector!, vector)) : 0;
      return { row, score: 0.5 * bm25Normalised(bm25.get(row.id) ?? 0) + 0.5 * similarity };
    });
  }

  /** Embeds entries that lack a vector, for every app that has an embeddings model. Returns how many it embedded. */
  async embedPending(maxPerApp = 512): Promise<number> {
    let total = 0;
    for (const appId of memoryApps(this.deps.db)) {
      if (this.stopped) break;
      const embedder = await this.embedderFor(appId);
      if (!embedder) continue;
      try {
        for (let done = 0; done < maxPerApp && !this.stopped;) {
          const batch = entriesLackingVectors(this.deps.db, appId, embedder.modelKey, EMBED_BATCH);
          if (batch.length === 0) break;
          const vectors = await embedder.embed(batch.map((b) => b.content));
          saveVectors(this.deps.db, embedder.modelKey, batch.map((b, i) => ({ memory_id: b.id, vector: vectors[i]! })));
          done += batch.length;
          total += batch.length;
        }
      } catch (err) {
        this.failed(appId, err);
      }
    }
    return total;
  }

  /** Asks the embedder to look for entries to embed now (after an entry was added). */
  nudge(): void {
    this.pending = true;
    this.wake?.();
  }

  /** Starts the background embedder: woken by nudges, and every `intervalMs` regardless. */
  start(intervalMs = 5_000): void {
    if (this.loop) return;
    this.loop = (async () => {
      while (!this.stopped) {
        if (!this.pending) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, intervalMs);
            this.wake = () => {
              clearTimeout(timer);
              resolve();
            };
          });
          this.wake = undefined;
        }
        this.pending = false;
        if (this.stopped) break;
        await this.embedPending().catch((err) => this.deps.logger.warn("memory embedder failed", { error: (err as Error)?.message ?? String(err) }));
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loop;
  }
}

/** A service for contexts the server did not give one (BM25 only). */
const fallbackServices = new WeakMap<object, MemoryService>();

/** The context's memory service (the server's, with its embedder), or one ranking by BM25 alone. */
export function memoryServiceOf(ctx: Pick<AppContext, "memory" | "db" | "secrets" | "logger">): MemoryService {
  if (ctx.memory) return ctx.memory;
  let service = fallbackServices.get(ctx.db);
  if (!service) {
    service = new MemoryService({ db: ctx.db, secrets: ctx.secrets, logger: ctx.logger, connectionsOf: async () => ({}) });
    fallbackServices.set(ctx.db, service);
  }
  return service;
}
