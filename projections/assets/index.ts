/** Assets read model: every asset registered in a session, by label, oldest first. */
import type { Database } from "bun:sqlite";
import type { RecordedEvent } from "../../src/eventstore/port.ts";
import type { Projection } from "../../src/projections/projection.ts";
import { sessionEvents } from "../../src/domain/session/events.ts";
import { streamIdOf, occurredAt } from "../support.ts";
import { deleteIn, erasedOf, USER_ERASED } from "../erasure.ts";

export const assetsProjection: Projection = {
  name: "assets",
  // v2: an asset is a URL or a file of the app (file_id), so url may be null.
  version: 2,
  eventTypes: ["AssetRegistered", USER_ERASED],
  tables: ["assets"],
  schema: `
    CREATE TABLE IF NOT EXISTS assets (
      session_id TEXT NOT NULL, n INTEGER NOT NULL, asset_label TEXT NOT NULL, url TEXT, file_id TEXT, kind TEXT NOT NULL,
      source_tool TEXT NOT NULL, prompt TEXT, model TEXT, job_id TEXT, created_at INTEGER NOT NULL,
      PRIMARY KEY (session_id, n)
    ) WITHOUT ROWID;
  `,
  apply(db: Database, e: RecordedEvent) {
    if (e.type === USER_ERASED) return deleteIn(db, "assets", "session_id", erasedOf(e).sessions);
    const r = assetRowOf(e);
    if (!r) return;
    db.query(
      `INSERT OR REPLACE INTO assets (session_id, n, asset_label, url, file_id, kind, source_tool, prompt, model, job_id, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(r.session_id, r.n, r.asset_label, r.url, r.file_id, r.kind, r.source_tool, r.prompt, r.model, r.job_id, r.created_at);
  },
};

/** The asset row an event registers (keyed by session and n), or null: pure, also what the as-of replay uses. */
export function assetRowOf(e: RecordedEvent): AssetRow | null {
  const event = sessionEvents.decode(e);
  if (event.type !== "AssetRegistered") return null;
  const d = event.data;
  return {
    session_id: streamIdOf(e), n: Number(d.asset_label.slice("asset_".length)), asset_label: d.asset_label, url: d.url, file_id: d.file_id,
    kind: d.kind, source_tool: d.source_tool, prompt: d.prompt, model: d.model, job_id: d.job_id, created_at: occurredAt(e),
  };
}

export interface AssetRow {
  session_id: string; n: number; asset_label: string; url: string | null; file_id: string | null; kind: string; source_tool: string;
  prompt: string | null; model: string | null; job_id: string | null; created_at: number;
}

export function listAssets(db: Database, sessionId: string, limit: number, afterN = 0): AssetRow[] {
  return db.query("SELECT * FROM assets WHERE session_id = ? AND n > ? ORDER BY n LIMIT ?").all(sessionId, afterN, limit) as AssetRow[];
}
