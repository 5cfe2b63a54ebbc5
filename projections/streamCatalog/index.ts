/**
 * The stream catalog: every stream the store holds, grouped by category (`session`, `job`, …), with
 * its event count, last event and activity times; plus totals per category and per event type.
 * Auditors use it to find conversations to replay; operators to see what the store holds.
 */
import type { Database } from "bun:sqlite";
import type { RecordedEvent } from "../../src/eventstore/port.ts";
import type { Projection } from "../../src/projections/projection.ts";
import { aroundErasures, ERASABLE_CATEGORIES, type Erased } from "../erasure.ts";

/** The category of a stream: what precedes the first "-" (the whole name when there is none). */
export const categoryOf = (stream: string): string => {
  const dash = stream.indexOf("-");
  return dash < 0 ? stream : stream.slice(0, dash);
};

export const streamCatalog: Projection = {
  name: "stream_catalog",
  // 2: catalog_stream_types, so an erasure subtracts what the catalog itself counted.
  version: 2,
  eventTypes: "all",
  tables: ["catalog_streams", "catalog_categories", "catalog_event_types", "catalog_stream_types"],
  schema: `
    CREATE TABLE IF NOT EXISTS catalog_streams (
      stream         TEXT PRIMARY KEY,
      category       TEXT NOT NULL,
      event_count    INTEGER NOT NULL,
      last_revision  INTEGER NOT NULL,
      last_type      TEXT NOT NULL,
      first_position TEXT NOT NULL,
      last_position  TEXT NOT NULL,
      created_at     INTEGER NOT NULL,
      updated_at     INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS catalog_streams_by_category ON catalog_streams(category, updated_at DESC, stream);
    CREATE TABLE IF NOT EXISTS catalog_categories (
      category     TEXT PRIMARY KEY,
      stream_count INTEGER NOT NULL,
      event_count  INTEGER NOT NULL,
      updated_at   INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS catalog_event_types (
      type  TEXT PRIMARY KEY,
      count INTEGER NOT NULL
    ) WITHOUT ROWID;
    -- Events per type of each stream an erasure may remove (ERASABLE_CATEGORIES), to subtract them.
    CREATE TABLE IF NOT EXISTS catalog_stream_types (
      stream TEXT NOT NULL,
      type   TEXT NOT NULL,
      count  INTEGER NOT NULL,
      PRIMARY KEY (stream, type)
    ) WITHOUT ROWID;
  `,
  apply(db: Database, e: RecordedEvent): void {
    streamCatalog.applyBatch!(db, [e]);
  },

  applyBatch(db: Database, events: readonly RecordedEvent[]): void {
    aroundErasures(events, (segment) => applyCatalog(db, segment), (erased) => eraseFromCatalog(db, erased), true);
  },
};

/**
 * An erasure's streams leave the catalog, and their events its totals. A rebuild never sees them (nor
 * finds their rows), so it subtracts nothing; live processing subtracts what it had added, as counted
 * in its own rows (never the record's counts: a stream an interrupted attempt removed is in the record
 * without them, and the catalog still holds what it counted). A category's activity time becomes its
 * newest remaining stream's.
 */
function eraseFromCatalog(db: Database, erased: Erased): void {
  const rows = erased.streams
    .map((s) => db.query("SELECT stream, category, event_count FROM catalog_streams WHERE stream = ?").get(s) as { stream: string; category: string; event_count: number } | null)
    .filter((r) => r !== null);
  if (rows.length === 0) return;
  const touched = new Set<string>();
  for (const r of rows) {
    db.query("DELETE FROM catalog_streams WHERE stream = ?").run(r.stream);
    db.query("UPDATE catalog_categories SET stream_count = stream_count - 1, event_count = event_count - ? WHERE category = ?").run(r.event_count, r.category);
    touched.add(r.category);
  }
  for (const category of touched) {
    const newest = db.query("SELECT max(updated_at) AS at FROM catalog_streams WHERE category = ?").get(category) as { at: number | null };
    if (newest.at === null) db.query("DELETE FROM catalog_categories WHERE category = ?").run(category);
    else db.query("UPDATE catalog_categories SET updated_at = ? WHERE category = ?").run(newest.at, category);
  }
  for (const r of rows) {
    const types = db.query("SELECT type, count FROM catalog_stream_types WHERE stream = ?").all(r.stream) as Array<{ type: string; count: number }>;
    for (const { type, count } of types) {
      db.query("UPDATE catalog_event_types SET count = count - ? WHERE type = ?").run(count, type);
      db.query("DELETE FROM catalog_event_types WHERE type = ? AND count <= 0").run(type);
    }
    db.query("DELETE FROM catalog_stream_types WHERE stream = ?").run(r.stream);
  }
}

// Aggregates the batch per stream, category and type, then writes each once: the same sums and
// last values as event-by-event application, with a fraction of the statements.
function applyCatalog(db: Database, events: readonly RecordedEvent[]): void {
  const streams = new Map<string, { first: RecordedEvent; last: RecordedEvent; count: number }>();
  const categories = new Map<string, { newStreams: number; count: number; at: number }>();
  const types = new Map<string, number>();
  const streamTypes = new Map<string, number>();
  for (const e of events) {
    const s = streams.get(e.streamId);
    if (s) {
      s.last = e;
      s.count++;
    } else {
      streams.set(e.streamId, { first: e, last: e, count: 1 });
    }
    const category = categoryOf(e.streamId);
    const c = categories.get(category) ?? { newStreams: 0, count: 0, at: 0 };
    c.count++;
    c.at = e.created.getTime();
    // A stream's first event is revision 0: the catalog sees every stream from its start.
    if (e.revision === 0n) c.newStreams++;
    categories.set(category, c);
    types.set(e.type, (types.get(e.type) ?? 0) + 1);
    if (ERASABLE_CATEGORIES.has(category)) {
      const key = `${e.streamId}\u0000${e.type}`;
      streamTypes.set(key, (streamTypes.get(key) ?? 0) + 1);
    }
  }
  const upsertStream = db.query(
    `INSERT INTO catalog_streams (stream, category, event_count, last_revision, last_type, first_position, last_position, created_at, updated_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
     ON CONFLICT(stream) DO UPDATE SET event_count = event_count + ?3, last_revision = ?4, last_type = ?5,
       last_position = ?7, updated_at = ?9`,
  );
  for (const [stream, s] of streams) {
    upsertStream.run(stream, categoryOf(stream), s.count, Number(s.last.revision), s.last.type, s.first.position.toString(),
      s.last.position.toString(), s.first.created.getTime(), s.last.created.getTime());
  }
  const upsertCategory = db.query(
    `INSERT INTO catalog_categories (category, stream_count, event_count, updated_at) VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT(category) DO UPDATE SET stream_count = stream_count + ?2, event_count = event_count + ?3, updated_at = ?4`,
  );
  for (const [category, c] of categories) upsertCategory.run(category, c.newStreams, c.count, c.at);
  const upsertType = db.query(`INSERT INTO catalog_event_types (type, count) VALUES (?1, ?2) ON CONFLICT(type) DO UPDATE SET count = count + ?2`);
  for (const [type, n] of types) upsertType.run(type, n);
  const upsertStreamType = db.query(
    `INSERT INTO catalog_stream_types (stream, type, count) VALUES (?1, ?2, ?3) ON CONFLICT(stream, type) DO UPDATE SET count = count + ?3`,
  );
  for (const [key, n] of streamTypes) {
    const at = key.indexOf("\u0000");
    upsertStreamType.run(key.slice(0, at), key.slice(at + 1), n);
  }
}

export interface CatalogStream {
  stream: string;
  category: string;
  event_count: number;
  last_revision: number;
  last_type: string;
  created_at: number;
  updated_at: number;
}

/** Streams of a category, most recently active first. */
export function listStreams(db: Database, category: string, limit: number): CatalogStream[] {
  return db.query(
    `SELECT stream, category, event_count, last_revision, last_type, created_at, updated_at
     FROM catalog_streams WHERE category = ? ORDER BY updated_at DESC, stream LIMIT ?`,
  ).all(category, limit) as CatalogStream[];
}
