/**
 * Memory read model: every live memory entry, and an SQLite FTS5 full-text index over their content.
 *
 * - `memory_entries`: one row per entry, keyed by `seq` (the global position of its MemoryAdded, so
 *   newest first is `seq DESC` and a rebuild gives the same keys), with its token count for BM25.
 * - `memory_fts`: FTS5, contentless (the text lives in `memory_entries`), rowid = `seq`. Besides the
 *   content it indexes one `scope` token per entry, derived from its app and user, so a search reads
 *   only that user's postings: `scope : "s…" AND content : (…)`.
 * - `memory_scopes`: entries and tokens per (app, user): the N and average length BM25 needs, taken
 *   from the user's own entries only, so no score depends on another app's or user's data.
 *
 * Vectors for hybrid ranking are not part of this fold (a projection does no I/O): the embedder
 * (src/app/memoryEmbedder.ts) fills `memory_vectors`, created here so a removal can drop its entry's
 * vector at once, but not among `tables`: it is a cache of what the content determines, survives a
 * rebuild of this projection, and can be dropped at any time (it is filled again).
 */
import type { Database } from "bun:sqlite";
import type { RecordedEvent } from "../../src/eventstore/port.ts";
import type { Projection } from "../../src/projections/projection.ts";
import { memoryEvents } from "../../src/domain/memory/events.ts";
import { occurredAt } from "../support.ts";
import { erasedOf, USER_ERASED } from "../erasure.ts";

/**
 * Words as the index sees them: runs of letters and digits, lower-cased, diacritics removed — what
 * FTS5's `unicode61 remove_diacritics 2` tokenizer makes of the same text (for the scripts people
 * write memories in), so term counts computed here match what the index matches.
 */
export function tokenize(text: string): string[] {
  return text.normalize("NFD").replace(/\p{M}+/gu, "").toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
}

/** The index token of an (app, user) scope: letters and digits only, so it is one FTS5 token. */
export const scopeToken = (appId: string, userId: string): string =>
  `s${(Bun.SHA256.hash(`${appId}\u0000${userId}`, "hex") as string).slice(0, 32)}`;

export const memoryProjection: Projection = {
  name: "memory",
  version: 1,
  eventTypes: ["MemoryAdded", "MemoryRemoved", USER_ERASED],
  tables: ["memory_entries", "memory_scopes", "memory_fts"],
  schema: `
    CREATE TABLE IF NOT EXISTS memory_entries (
      seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, app_id TEXT NOT NULL, user_id TEXT NOT NULL, agent_id TEXT,
      content TEXT NOT NULL, metadata TEXT NOT NULL, source TEXT NOT NULL, job_id TEXT, tokens INTEGER NOT NULL, created_at INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS memory_by_user ON memory_entries(app_id, user_id, seq DESC);
    CREATE TABLE IF NOT EXISTS memory_scopes (
      app_id TEXT NOT NULL, user_id TEXT NOT NULL, entries INTEGER NOT NULL, tokens INTEGER NOT NULL,
      PRIMARY KEY (app_id, user_id)
    ) WITHOUT ROWID;
    CREATE VIRTUAL TABLE IF NOT EXISTS memory_fts USING fts5(
      scope, content, content='', contentless_delete=1, tokenize='unicode61 remove_diacritics 2'
    );
    CREATE TABLE IF NOT EXISTS memory_vectors (
      memory_id TEXT PRIMARY KEY, model_key TEXT NOT NULL, dims INTEGER NOT NULL, vector BLOB NOT NULL
    ) WITHOUT ROWID;
  `,
  apply(db: Database, e: RecordedEvent) {
    if (e.type === USER_ERASED) {
      const ids = erasedOf(e).memories;
      for (const id of ids) removeEntry(db, id);
      // Deleting from a contentless index only marks the rows deleted; merging the index drops their
      // terms for good, so the erased words are not left in its pages.
      if (ids.length) db.query("INSERT INTO memory_fts (memory_fts) VALUES ('optimize')").run();
      return;
    }
    const event = memoryEvents.decode(e);
    switch (event.type) {
      case "MemoryAdded": {
        const d = event.data;
        const seq = Number(e.position);
        const tokens = tokenize(d.content).length;
        // A repeated event (the same entry added twice) changes nothing.
        const added = db.query(
          `INSERT OR IGNORE INTO memory_entries (seq, id, app_id, user_id, agent_id, content, metadata, source, job_id, tokens, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        ).run(seq, d.memory_id, d.app_id, d.user_id, d.agent_id, d.content, JSON.stringify(d.metadata), d.source, d.job_id, tokens, occurredAt(e));
        if (added.changes === 0) break;
        db.query("INSERT INTO memory_fts (rowid, scope, content) VALUES (?, ?, ?)").run(seq, scopeToken(d.app_id, d.user_id), d.content);
        db.query(
          `INSERT INTO memory_scopes (app_id, user_id, entries, tokens) VALUES (?, ?, 1, ?)
           ON CONFLICT (app_id, user_id) DO UPDATE SET entries = entries + 1, tokens = tokens + excluded.tokens`,
        ).run(d.app_id, d.user_id, tokens);
        break;
      }
      case "MemoryRemoved":
        removeEntry(db, event.data.memory_id);
        break;
    }
  },
  // After an online rebuild's copy: the index holds exactly the entries' content, as the fold put it.
  refillIndexes(db: Database) {
    const insert = db.query("INSERT INTO memory_fts (rowid, scope, content) VALUES (?, ?, ?)");
    for (const row of db.query("SELECT seq, app_id, user_id, content FROM memory_entries ORDER BY seq").iterate() as IterableIterator<{ seq: number; app_id: string; user_id: string; content: string }>) {
      insert.run(row.seq, scopeToken(row.app_id, row.user_id), row.content);
    }
  },
};

/** Drops an entry, its index postings, its share of its scope's statistics and its vector. */
function removeEntry(db: Database, memoryId: string): void {
  const row = db.query("SELECT seq, app_id, user_id, tokens FROM memory_entries WHERE id = ?").get(memoryId) as
    { seq: number; app_id: string; user_id: string; tokens: number } | null;
  // What was derived from the content goes with it (a vector may outlive its row: it survives rebuilds).
  db.query("DELETE FROM memory_vectors WHERE memory_id = ?").run(memoryId);
  if (!row) return;
  db.query("DELETE FROM memory_entries WHERE seq = ?").run(row.seq);
  db.query("DELETE FROM memory_fts WHERE rowid = ?").run(row.seq);
  db.query("UPDATE memory_scopes SET entries = entries - 1, tokens = tokens - ? WHERE app_id = ? AND user_id = ?").run(row.tokens, row.app_id, row.user_id);
  db.query("DELETE FROM memory_scopes WHERE app_id = ? AND user_id = ? AND entries <= 0").run(row.app_id, row.user_id);
}

export interface MemoryRow {
  seq: number; id: string; app_id: string; user_id: string; agent_id: string | null; content: string; metadata: string;
  source: string; job_id: string | null; tokens: number; created_at: number;
}

/** Which of a user's entries a read covers: all, one agent's only, or what an agent recalls (its own and the user's shared ones). */
export type AgentScope =
  | { kind: "all" }
  | { kind: "only"; agentIds: readonly string[] }
  | { kind: "recall"; agentId: string };

function agentFilter(scope: AgentScope, column: string): { sql: string; args: string[] } {
  switch (scope.kind) {
    case "all":
      return { sql: "1", args: [] };
    case "only":
      return scope.agentIds.length ? { sql: `${column} IN (${scope.agentIds.map(() => "?").join(", ")})`, args: [...scope.agentIds] } : { sql: "0", args: [] };
    case "recall":
      return { sql: `(${column} IS NULL OR ${column} = ?)`, args: [scope.agentId] };
  }
}

export const findMemory = (db: Database, appId: string, id: string): MemoryRow | null =>
  db.query("SELECT * FROM memory_entries WHERE app_id = ? AND id = ?").get(appId, id) as MemoryRow | null;

/** A user's entries, newest first, keyset-paginated by `seq`. */
export function recentMemories(db: Database, appId: string, userId: string, scope: AgentScope, limit: number, beforeSeq?: number): MemoryRow[] {
  const agents = agentFilter(scope, "agent_id");
  const args: Array<string | number> = [appId, userId, ...agents.args];
  let sql = `SELECT * FROM memory_entries WHERE app_id = ? AND user_id = ? AND ${agents.sql}`;
  if (beforeSeq !== undefined) {
    sql += " AND seq < ?";
    args.push(beforeSeq);
  }
  return db.query(`${sql} ORDER BY seq DESC LIMIT ?`).all(...args, limit) as MemoryRow[];
}

/** What BM25 needs of a user's scope: how many entries and how many tokens in all. */
export function scopeStats(db: Database, appId: string, userId: string): { entries: number; tokens: number } {
  return (db.query("SELECT entries, tokens FROM memory_scopes WHERE app_id = ? AND user_id = ?").get(appId, userId) as { entries: number; tokens: number } | null)
    ?? { entries: 0, tokens: 0 };
}

/** An FTS5 phrase for one word: the word quoted (words hold letters and digits only). */
const phrase = (term: string) => `"${term}"`;

/**
 * A user's entries holding any of `terms`, at most `max` of them (FTS5's own ranking decides which
 * when there are more). `terms` come from `tokenize`.
 */
export function matchingMemories(db: Database, appId: string, userId: string, scope: AgentScope, terms: readonly string[], max: number): MemoryRow[] {
  if (terms.length === 0) return [];
  const agents = agentFilter(scope, "e.agent_id");
  const match = `scope : ${phrase(scopeToken(appId, userId))} AND content : (${terms.map(phrase).join(" OR ")})`;
  return db.query(
    `SELECT e.* FROM memory_fts f JOIN memory_entries e ON e.seq = f.rowid
     WHERE memory_fts MATCH ? AND e.app_id = ? AND e.user_id = ? AND ${agents.sql} ORDER BY f.rank LIMIT ?`,
  ).all(match, appId, userId, ...agents.args, max) as MemoryRow[];
}

/** How many of a user's entries hold `term` (its document frequency in the user's scope). */
export function termFrequencyInScope(db: Database, appId: string, userId: string, term: string): number {
  const match = `scope : ${phrase(scopeToken(appId, userId))} AND content : ${phrase(term)}`;
  return (db.query("SELECT count(*) AS n FROM memory_fts WHERE memory_fts MATCH ?").get(match) as { n: number }).n;
}

/** Entries by id, in the caller's scope. */
export function memoriesByIds(db: Database, appId: string, userId: string, scope: AgentScope, ids: readonly string[]): MemoryRow[] {
  if (ids.length === 0) return [];
  const agents = agentFilter(scope, "agent_id");
  return db.query(
    `SELECT * FROM memory_entries WHERE app_id = ? AND user_id = ? AND ${agents.sql} AND id IN (${ids.map(() => "?").join(", ")})`,
  ).all(appId, userId, ...agents.args, ...ids) as MemoryRow[];
}

// Vectors (written by the embedder and by searches that embed what lacks one; see the file's comment).

export interface StoredVector {
  memory_id: string;
  vector: Float32Array;
}

const toVector = (blob: Uint8Array): Float32Array => {
  const copy = new Uint8Array(blob); // aligned
  return new Float32Array(copy.buffer, 0, copy.byteLength / 4);
};

/** The vectors of a user's entries made with `modelKey`, newest entries first, at most `max`. */
export function scopeVectors(db: Database, appId: string, userId: string, scope: AgentScope, modelKey: string, max: number): StoredVector[] {
  const agents = agentFilter(scope, "e.agent_id");
  const rows = db.query(
    `SELECT v.memory_id, v.vector FROM memory_entries e JOIN memory_vectors v ON v.memory_id = e.id AND v.model_key = ?
     WHERE e.app_id = ? AND e.user_id = ? AND ${agents.sql} ORDER BY e.seq DESC LIMIT ?`,
  ).all(modelKey, appId, userId, ...agents.args, max) as Array<{ memory_id: string; vector: Uint8Array }>;
  return rows.map((r) => ({ memory_id: r.memory_id, vector: toVector(r.vector) }));
}

/** Which of `ids` have a vector made with `modelKey`. */
export function vectorsOf(db: Database, modelKey: string, ids: readonly string[]): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (let i = 0; i < ids.length; i += 500) {
    const chunk = ids.slice(i, i + 500);
    const rows = db.query(`SELECT memory_id, vector FROM memory_vectors WHERE model_key = ? AND memory_id IN (${chunk.map(() => "?").join(", ")})`)
      .all(modelKey, ...chunk) as Array<{ memory_id: string; vector: Uint8Array }>;
    for (const r of rows) out.set(r.memory_id, toVector(r.vector));
  }
  return out;
}

/** An app's entries without a vector made with `modelKey`, oldest first, at most `max`. */
export function entriesLackingVectors(db: Database, appId: string, modelKey: string, max: number): Array<{ id: string; content: string }> {
  return db.query(
    `SELECT e.id, e.content FROM memory_entries e LEFT JOIN memory_vectors v ON v.memory_id = e.id AND v.model_key = ?
     WHERE e.app_id = ? AND v.memory_id IS NULL ORDER BY e.seq LIMIT ?`,
  ).all(modelKey, appId, max) as Array<{ id: string; content: string }>;
}

/** Data partitions that have entries. */
export const memoryApps = (db: Database): string[] =>
  (db.query("SELECT DISTINCT app_id FROM memory_entries").all() as Array<{ app_id: string }>).map((r) => r.app_id);

/**
 * Stores vectors for entries that still exist (one removed meanwhile gets none). Outside the
 * projection's transaction: a single statement per vector, each atomic.
 */
export function saveVectors(db: Database, modelKey: string, vectors: ReadonlyArray<{ memory_id: string; vector: Float32Array }>): void {
  const save = db.query(
    `INSERT INTO memory_vectors (memory_id, model_key, dims, vector)
     SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM memory_entries WHERE id = ?)
     ON CONFLICT (memory_id) DO UPDATE SET model_key = excluded.model_key, dims = excluded.dims, vector = excluded.vector`,
  );
  db.transaction(() => {
    for (const v of vectors) save.run(v.memory_id, modelKey, v.vector.length, new Uint8Array(v.vector.buffer, v.vector.byteOffset, v.vector.byteLength), v.memory_id);
  })();
}
