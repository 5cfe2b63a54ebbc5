/**
 * Conversation history: user messages as they were sent, and the assistant's reply to each turn when
 * the turn ends (its text, tool calls and assets; or how it failed or was cancelled).
 */
import type { Database } from "bun:sqlite";
import type { RecordedEvent } from "../../src/eventstore/port.ts";
import type { Projection } from "../../src/projections/projection.ts";
import { sessionEvents } from "../../src/domain/session/events.ts";
import { streamIdOf, occurredAt } from "../support.ts";
import { deleteIn, erasedOf, USER_ERASED } from "../erasure.ts";

export const messagesProjection: Projection = {
  name: "messages",
  version: 1,
  eventTypes: ["MessageSent", "TurnEnded", USER_ERASED],
  tables: ["messages"],
  schema: `
    CREATE TABLE IF NOT EXISTS messages (
      seq INTEGER PRIMARY KEY, session_id TEXT NOT NULL, id TEXT NOT NULL, role TEXT NOT NULL, job_id TEXT NOT NULL,
      content TEXT NOT NULL, attachments TEXT, status TEXT NOT NULL, tool_calls TEXT, assets TEXT, result TEXT, error TEXT,
      created_at INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS messages_by_session ON messages(session_id, seq);
  `,
  apply(db: Database, e: RecordedEvent) {
    if (e.type === USER_ERASED) return deleteIn(db, "messages", "session_id", erasedOf(e).sessions);
    const row = messageRowOf(e);
    if (!row) return;
    db.query(`INSERT INTO messages (${COLUMNS.join(", ")}) VALUES (${COLUMNS.map(() => "?").join(", ")})`).run(...COLUMNS.map((c) => row[c]));
  },
};

const COLUMNS = ["seq", "session_id", "id", "role", "job_id", "content", "attachments", "status", "tool_calls", "assets", "result", "error", "created_at"] as const;

/**
 * The history row an event adds (a user's message, or the reply that ends its turn), or null: a pure
 * function, also what the as-of replay uses (src/app/asOf.ts).
 */
export function messageRowOf(e: RecordedEvent): MessageRow | null {
  const sessionId = streamIdOf(e);
  const event = sessionEvents.decode(e);
  const at = occurredAt(e);
  if (event.type === "MessageSent") {
    return {
      seq: Number(e.position), session_id: sessionId, id: event.data.message_id, role: "user", job_id: event.data.job_id, content: event.data.content,
      attachments: JSON.stringify(event.data.attachments), status: "sent", tool_calls: null, assets: null, result: null, error: null, created_at: at,
    };
  }
  if (event.type === "TurnEnded") {
    const r = event.data.reply;
    return {
      seq: Number(e.position), session_id: sessionId, id: `${event.data.message_id}_reply`, role: "assistant", job_id: event.data.job_id, content: r?.content ?? "",
      attachments: null, status: event.data.outcome, tool_calls: JSON.stringify(r?.tool_calls ?? []), assets: JSON.stringify(r?.assets ?? []),
      result: r ? JSON.stringify(r.result ?? null) : null, error: event.data.error ? JSON.stringify(event.data.error) : null, created_at: at,
    };
  }
  return null;
}

export interface MessageRow {
  seq: number; session_id: string; id: string; role: "user" | "assistant"; job_id: string; content: string;
  attachments: string | null; status: string; tool_calls: string | null; assets: string | null; result: string | null;
  error: string | null; created_at: number;
}

/** The newest `limit` messages before `beforeSeq` (all when absent), returned oldest first. */
export function listMessages(db: Database, sessionId: string, limit: number, beforeSeq?: number): MessageRow[] {
  const rows = (beforeSeq === undefined
    ? db.query("SELECT * FROM messages WHERE session_id = ? ORDER BY seq DESC LIMIT ?").all(sessionId, limit)
    : db.query("SELECT * FROM messages WHERE session_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?").all(sessionId, beforeSeq, limit)) as MessageRow[];
  return rows.reverse();
}

/**
 * One page of a session's messages in `order`, after the message `afterSeq` (exclusive; from the
 * start or end when absent): `limit` rows and whether more follow. Reads only the page.
 */
export function pageMessages(
  db: Database, sessionId: string, options: { order: "asc" | "desc"; limit: number; afterSeq?: number },
): { rows: MessageRow[]; hasMore: boolean } {
  const { order, limit, afterSeq } = options;
  const bound = afterSeq === undefined ? "" : order === "asc" ? "AND seq > ?" : "AND seq < ?";
  const rows = db.query(`SELECT * FROM messages WHERE session_id = ? ${bound} ORDER BY seq ${order === "asc" ? "ASC" : "DESC"} LIMIT ?`)
    .all(...(afterSeq === undefined ? [sessionId, limit + 1] : [sessionId, afterSeq, limit + 1])) as MessageRow[];
  return { rows: rows.slice(0, limit), hasMore: rows.length > limit };
}

/** A session's message by its id, or null. */
export const findMessage = (db: Database, sessionId: string, id: string): MessageRow | null =>
  (db.query("SELECT * FROM messages WHERE session_id = ? AND id = ?").get(sessionId, id) as MessageRow | null) ?? null;

/** The messages of one turn of a session (its user message and its reply), oldest first. */
export const messagesOfJob = (db: Database, sessionId: string, jobId: string): MessageRow[] =>
  db.query("SELECT * FROM messages WHERE session_id = ? AND job_id = ? ORDER BY seq").all(sessionId, jobId) as MessageRow[];
