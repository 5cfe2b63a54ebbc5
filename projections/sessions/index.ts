/**
 * Sessions read model: one row per session with its status (idle while no turn is in flight), the turn
 * in flight and those queued behind it, counts, token usage and activity times.
 */
import type { Database } from "bun:sqlite";
import type { JobEvent } from "../../src/domain/job/job.ts";
import type { SessionEvent } from "../../src/domain/session/session.ts";
import type { RecordedEvent } from "../../src/eventstore/port.ts";
import type { Projection } from "../../src/projections/projection.ts";
import { appIdOf, streamIdOf } from "../support.ts";

export const sessionsProjection: Projection = {
  name: "sessions",
  version: 1,
  eventTypes: [
    "SessionStarted", "SessionRenamed", "SessionArchived", "SessionUnarchived", "SessionDeleted",
    "MessageSent", "TurnEnded", "AssetRegistered", "UsageRecorded",
  ],
  tables: ["sessions", "session_jobs"],
  schema: `
    CREATE TABLE IF NOT EXISTS sessions (
      id TEXT PRIMARY KEY, app_id TEXT NOT NULL, agent_id TEXT NOT NULL, user_id TEXT NOT NULL, name TEXT NOT NULL,
      external_ref TEXT, metadata TEXT NOT NULL, archived INTEGER NOT NULL DEFAULT 0, deleted INTEGER NOT NULL DEFAULT 0,
      turns TEXT NOT NULL DEFAULT '[]', message_count INTEGER NOT NULL DEFAULT 0, asset_count INTEGER NOT NULL DEFAULT 0,
      prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,
      cached_tokens INTEGER NOT NULL DEFAULT 0, reasoning_tokens INTEGER NOT NULL DEFAULT 0,
      created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, last_activity_at INTEGER NOT NULL, activity_seq INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions(app_id, user_id, deleted, activity_seq DESC);
    CREATE INDEX IF NOT EXISTS sessions_by_app ON sessions(app_id, deleted, activity_seq DESC);
    CREATE INDEX IF NOT EXISTS sessions_by_ref ON sessions(app_id, external_ref);
    CREATE TABLE IF NOT EXISTS session_jobs (job_id TEXT PRIMARY KEY, session_id TEXT NOT NULL) WITHOUT ROWID;
  `,
  apply(db: Database, e: RecordedEvent) {
    const at = e.created.getTime();
    const seq = Number(e.position);
    if (e.type === "UsageRecorded") {
      const d = (e.data as Extract<JobEvent, { type: "UsageRecorded" }>["data"]);
      db.query(
        `UPDATE sessions SET prompt_tokens = prompt_tokens + ?, completion_tokens = completion_tokens + ?,
           cached_tokens = cached_tokens + ?, reasoning_tokens = reasoning_tokens + ?
         WHERE id = (SELECT session_id FROM session_jobs WHERE job_id = ?)`,
      ).run(d.prompt_tokens, d.completion_tokens, d.cached_tokens, d.reasoning_tokens, streamIdOf(e));
      return;
    }
    const id = streamIdOf(e);
    const event = { type: e.type, data: e.data } as SessionEvent;
    const touch = (extra = "", ...params: Array<string | number | null>) =>
      db.query(`UPDATE sessions SET updated_at = ?, last_activity_at = ?, activity_seq = ?${extra} WHERE id = ?`).run(at, at, seq, ...params, id);
    switch (event.type) {
      case "SessionStarted": {
        const d = event.data;
        db.query(
          `INSERT OR REPLACE INTO sessions (id, app_id, agent_id, user_id, name, external_ref, metadata, created_at, updated_at, last_activity_at, activity_seq)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        ).run(d.session_id, appIdOf(e), d.agent_id, d.user_id, d.name, d.external_ref, JSON.stringify(d.metadata), at, at, at, seq);
        break;
      }
      case "SessionRenamed":
        db.query("UPDATE sessions SET name = ?, updated_at = ? WHERE id = ?").run(event.data.name, at, id);
        break;
      case "SessionArchived":
      case "SessionUnarchived":
        db.query("UPDATE sessions SET archived = ?, updated_at = ? WHERE id = ?").run(event.type === "SessionArchived" ? 1 : 0, at, id);
        break;
      case "SessionDeleted":
        db.query("UPDATE sessions SET deleted = 1, updated_at = ? WHERE id = ?").run(at, id);
        break;
      case "MessageSent": {
        db.query("INSERT OR REPLACE INTO session_jobs (job_id, session_id) VALUES (?, ?)").run(event.data.job_id, id);
        const turns = turnsOf(db, id);
        turns.push(event.data.job_id);
        touch(", turns = ?, message_count = message_count + 1", JSON.stringify(turns));
        break;
      }
      case "TurnEnded": {
        const turns = turnsOf(db, id).filter((j) => j !== event.data.job_id);
        touch(`, turns = ?${event.data.reply ? ", message_count = message_count + 1" : ""}`, JSON.stringify(turns));
        break;
      }
      case "AssetRegistered":
        touch(", asset_count = asset_count + 1");
        break;
    }
  },
};

function turnsOf(db: Database, id: string): string[] {
  const row = db.query("SELECT turns FROM sessions WHERE id = ?").get(id) as { turns: string } | null;
  return row ? (JSON.parse(row.turns) as string[]) : [];
}

export interface SessionRow {
  id: string; app_id: string; agent_id: string; user_id: string; name: string; external_ref: string | null; metadata: string;
  archived: number; deleted: number; turns: string; message_count: number; asset_count: number;
  prompt_tokens: number; completion_tokens: number; cached_tokens: number; reasoning_tokens: number;
  created_at: number; updated_at: number; last_activity_at: number; activity_seq: number;
}

export function getSession(db: Database, appId: string, id: string): SessionRow | null {
  return db.query("SELECT * FROM sessions WHERE app_id = ? AND id = ? AND deleted = 0").get(appId, id) as SessionRow | null;
}

/** Sessions, most recently active first; keyset-paginated by (activity_seq, id). */
export function listSessions(
  db: Database, appId: string, filter: { user_id?: string; archived?: boolean; external_ref?: string }, limit: number, after?: { seq: number; id: string },
): SessionRow[] {
  const where = ["app_id = ?", "deleted = 0"];
  const params: Array<string | number> = [appId];
  if (filter.user_id !== undefined) { where.push("user_id = ?"); params.push(filter.user_id); }
  if (filter.archived !== undefined) { where.push("archived = ?"); params.push(filter.archived ? 1 : 0); }
  if (filter.external_ref !== undefined) { where.push("external_ref = ?"); params.push(filter.external_ref); }
  if (after) { where.push("(activity_seq < ? OR (activity_seq = ? AND id < ?))"); params.push(after.seq, after.seq, after.id); }
  return db.query(`SELECT * FROM sessions WHERE ${where.join(" AND ")} ORDER BY activity_seq DESC, id DESC LIMIT ?`).all(...params, limit) as SessionRow[];
}
