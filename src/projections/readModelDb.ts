/**
 * The read-model database: one SQLite file per API process, fed by that process's projection runner.
 * Disposable: everything in it can be rebuilt from the event store, so it trades the event store's
 * fsync-per-commit for speed (synchronous=NORMAL survives a killed process, and after a power cut a
 * rebuild restores it).
 */
import { Database } from "bun:sqlite";
import { preparePrivateFile } from "../core/privateFiles.ts";

export function openReadModelDb(path: string): Database {
  preparePrivateFile(path);
  const db = new Database(path, { create: true, strict: true });
  db.exec("PRAGMA journal_mode = WAL");
  db.exec("PRAGMA synchronous = NORMAL");
  db.exec("PRAGMA busy_timeout = 5000");
  db.exec(`CREATE TABLE IF NOT EXISTS projection_checkpoints (
    name       TEXT PRIMARY KEY,
    version    INTEGER NOT NULL,
    position   TEXT,
    updated_at INTEGER NOT NULL
  ) WITHOUT ROWID`);
  return db;
}

export interface CheckpointRow {
  name: string;
  version: number;
  /** Global position as a decimal string (positions are bigints), or null before the first event. */
  position: string | null;
}

export function readCheckpoint(db: Database, name: string): CheckpointRow | undefined {
  return db.query("SELECT name, version, position FROM projection_checkpoints WHERE name = ?").get(name) as CheckpointRow | undefined ?? undefined;
}

export function writeCheckpoint(db: Database, name: string, version: number, position: bigint | null, now: number): void {
  db.query(
    `INSERT INTO projection_checkpoints (name, version, position, updated_at) VALUES (?, ?, ?, ?)
     ON CONFLICT(name) DO UPDATE SET version = excluded.version, position = excluded.position, updated_at = excluded.updated_at`,
  ).run(name, version, position === null ? null : position.toString(), now);
}

/**
 * Every row of every table, sorted, as JSON: what the rebuild-equivalence checks compare. An FTS5 index
 * is compared by what it indexes (each term's every instance: document, column, offset), read through
 * fts5vocab: a contentless index answers its own columns with nulls, which would compare equal whatever
 * it held.
 */
export function dumpTables(db: Database, tables: readonly string[]): Record<string, unknown[]> {
  const out: Record<string, unknown[]> = {};
  for (const table of [...tables].sort()) {
    const sql = (db.query("SELECT sql FROM sqlite_master WHERE name = ?").get(table) as { sql: string | null } | null)?.sql ?? "";
    if (/USING\s+fts5\s*\(/i.test(sql)) {
      const vocab = quoteIdent(`dump_vocab_${table}`);
      db.exec(`CREATE VIRTUAL TABLE IF NOT EXISTS temp.${vocab} USING fts5vocab(main, ${quoteIdent(table)}, 'instance')`);
      out[table] = db.query(`SELECT term, doc, col, "offset" FROM temp.${vocab} ORDER BY term, doc, col, "offset"`).all();
      continue;
    }
    const columns = (db.query(`PRAGMA table_info(${quoteIdent(table)})`).all() as Array<{ name: string }>).map((c) => quoteIdent(c.name));
    out[table] = columns.length ? db.query(`SELECT * FROM ${quoteIdent(table)} ORDER BY ${columns.join(", ")}`).all() : [];
  }
  return out;
}

export const quoteIdent = (name: string): string => `"${name.replaceAll('"', '""')}"`;
