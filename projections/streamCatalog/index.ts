/**
 * The stream catalog: every stream the store holds, grouped by category (`session`, `job`, …), with
 * its event count, last event and activity times; plus totals per category and per event type.
 * Auditors use it to find conversations to replay; operators to see what the store holds.
 */
import type { Database } from "bun:sqlite";
import type { RecordedEvent } from "../../src/eventstore/port.ts";
import type { Projection } from "../../src/projections/projection.ts";

/** The category of a stream: what precedes the first "-" (the whole name when there is none). */
export const categoryOf = (stream: string): string => {
  const dash = stream.indexOf("-");
  return dash < 0 ? stream : stream.slice(0, dash);
};

export const streamCatalog: Projection = {
  name: "stream_catalog",
  version: 1,
  eventTypes: "all",
  tables: ["catalog_streams", "catalog_categories", "catalog_event_types"],
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
  `,
  apply(db: Database, e: RecordedEvent): void {
    const category = categoryOf(e.streamId);
    const at = e.created.getTime();
    const position = e.position.toString();
    const isNew = e.revision === 0n ||
      db.query("SELECT 1 FROM catalog_streams WHERE stream = ?").get(e.streamId) === null;
    db.query(
      `INSERT INTO catalog_streams (stream, category, event_count, last_revision, last_type, first_position, last_position, created_at, updated_at)
       VALUES (?1, ?2, 1, ?3, ?4, ?5, ?5, ?6, ?6)
       ON CONFLICT(stream) DO UPDATE SET event_count = event_count + 1, last_revision = ?3, last_type = ?4,
         last_position = ?5, updated_at = ?6`,
    ).run(e.streamId, category, Number(e.revision), e.type, position, at);
    db.query(
      `INSERT INTO catalog_categories (category, stream_count, event_count, updated_at) VALUES (?1, ?2, 1, ?3)
       ON CONFLICT(category) DO UPDATE SET stream_count = stream_count + ?2, event_count = event_count + 1, updated_at = ?3`,
    ).run(category, isNew ? 1 : 0, at);
    db.query(
      `INSERT INTO catalog_event_types (type, count) VALUES (?, 1) ON CONFLICT(type) DO UPDATE SET count = count + 1`,
    ).run(e.type);
  },
};

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
