/**
 * Files read model: every file of every app, pending (a signed upload not yet used) or uploaded, for
 * reads by id and a session's file list (attachments and artifacts, oldest first). A removed file's
 * row is deleted.
 */
import type { Database } from "bun:sqlite";
import type { RecordedEvent } from "../../src/eventstore/port.ts";
import type { Projection } from "../../src/projections/projection.ts";
import { fileEvents } from "../../src/domain/file/events.ts";
import { appIdOf, occurredAt } from "../support.ts";
import { deleteIn, erasedOf, USER_ERASED } from "../erasure.ts";

export const filesProjection: Projection = {
  name: "files",
  version: 1,
  eventTypes: ["UploadAuthorized", "FileUploaded", "FileAssignedToSession", "FileRemoved", USER_ERASED],
  tables: ["files"],
  schema: `
    CREATE TABLE IF NOT EXISTS files (
      id TEXT PRIMARY KEY, app_id TEXT NOT NULL, session_id TEXT, user_id TEXT, agent_id TEXT, name TEXT NOT NULL,
      content_type TEXT NOT NULL, size INTEGER, sha256 TEXT, role TEXT NOT NULL, source TEXT NOT NULL, status TEXT NOT NULL,
      message_id TEXT, job_id TEXT, expires_at INTEGER, created_at INTEGER NOT NULL, uploaded_at INTEGER, seq INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS files_by_session ON files(session_id, status, role, seq);
  `,
  apply(db: Database, e: RecordedEvent) {
    if (e.type === USER_ERASED) return deleteIn(db, "files", "id", erasedOf(e).files);
    const event = fileEvents.decode(e);
    const at = occurredAt(e);
    switch (event.type) {
      case "UploadAuthorized": {
        const d = event.data;
        db.query(
          `INSERT OR REPLACE INTO files (id, app_id, session_id, user_id, agent_id, name, content_type, size, sha256, role, source, status,
             message_id, job_id, expires_at, created_at, uploaded_at, seq)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, 'attachment', 'signed_url', 'pending', NULL, NULL, ?, ?, NULL, ?)`,
        ).run(d.file_id, appIdOf(e), d.session_id, d.user_id, d.agent_id, d.name, d.content_type, d.size, d.expires_at, at, Number(e.position));
        return;
      }
      case "FileUploaded": {
        const d = event.data;
        // A signed upload keeps the row (and the place in its session's list) its authorization made.
        const before = db.query("SELECT created_at, seq, expires_at FROM files WHERE id = ?").get(d.file_id) as { created_at: number; seq: number; expires_at: number | null } | null;
        db.query(
          `INSERT OR REPLACE INTO files (id, app_id, session_id, user_id, agent_id, name, content_type, size, sha256, role, source, status,
             message_id, job_id, expires_at, created_at, uploaded_at, seq)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'uploaded', ?, ?, ?, ?, ?, ?)`,
        ).run(d.file_id, appIdOf(e), d.session_id, d.user_id, d.agent_id, d.name, d.content_type, d.size, d.sha256, d.role, d.source,
          d.message_id, d.job_id, before?.expires_at ?? null, before?.created_at ?? at, at, before?.seq ?? Number(e.position));
        return;
      }
      case "FileAssignedToSession":
        db.query("UPDATE files SET session_id = ?, agent_id = ? WHERE id = ?").run(event.data.session_id, event.data.agent_id, event.data.file_id);
        return;
      case "FileRemoved":
        db.query("DELETE FROM files WHERE id = ?").run(event.data.file_id);
        return;
    }
  },
};

export interface FileRow {
  id: string; app_id: string; session_id: string | null; user_id: string | null; agent_id: string | null; name: string;
  content_type: string; size: number | null; sha256: string | null; role: "attachment" | "artifact"; source: string;
  status: "pending" | "uploaded"; message_id: string | null; job_id: string | null; expires_at: number | null;
  created_at: number; uploaded_at: number | null; seq: number;
}

export function getFile(db: Database, appId: string, id: string): FileRow | null {
  return db.query("SELECT * FROM files WHERE id = ? AND app_id = ?").get(id, appId) as FileRow | null;
}

/** A session's uploaded files, oldest first, after `afterSeq`; of one role when given. */
export function listSessionFiles(db: Database, sessionId: string, role: "attachment" | "artifact" | null, limit: number, afterSeq = 0): FileRow[] {
  return role
    ? db.query("SELECT * FROM files WHERE session_id = ? AND status = 'uploaded' AND role = ? AND seq > ? ORDER BY seq LIMIT ?").all(sessionId, role, afterSeq, limit) as FileRow[]
    : db.query("SELECT * FROM files WHERE session_id = ? AND status = 'uploaded' AND seq > ? ORDER BY seq LIMIT ?").all(sessionId, afterSeq, limit) as FileRow[];
}

/** Every file of a session (pending or uploaded): what its deletion removes. */
export function sessionFileIds(db: Database, sessionId: string): string[] {
  return (db.query("SELECT id FROM files WHERE session_id = ?").all(sessionId) as Array<{ id: string }>).map((r) => r.id);
}

/**
 * Files whose session is deleted but which are still there (their removal did not happen: no process
 * was listening, or the file arrived as the session went). Reads the sessions read model beside this
 * one (same database), so both must be kept where it is asked.
 */
export function filesOfDeletedSessions(db: Database, limit: number): Array<{ id: string; app_id: string; session_id: string }> {
  return db.query(
    "SELECT f.id, f.app_id, f.session_id FROM files f JOIN sessions s ON s.id = f.session_id WHERE s.deleted = 1 LIMIT ?",
  ).all(limit) as Array<{ id: string; app_id: string; session_id: string }>;
}
