/**
 * Conversation history: user messages as they were sent, and the assistant's reply to each turn when
 * the turn ends (its text, tool calls and assets; or how it failed or was cancelled).
 */
import type { Database } from "bun:sqlite";
import type { RecordedEvent } from "../../src/eventstore/port.ts";
import type { Projection } from "../../src/projections/projection.ts";
import { sessionEvents } from "../../src/domain/session/events.ts";
import { streamIdOf, occurredAt } from "../support.ts";

export const messagesProjection: Projection = {
  name: "messages",
  version: 1,
  eventTypes: ["MessageSent", "TurnEnded"],
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
    const sessionId = streamIdOf(e);
    const event = sessionEvents.decode(e);
    const at = occurredAt(e);
    const insert = db.query(
      `INSERT INTO messages (seq, session_id, id, role, job_id, content, attachments, status, tool_calls, assets, result, error, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    if (event.type === "MessageSent") {
      insert.run(Number(e.position), sessionId, event.data.message_id, "user", event.data.job_id, event.data.content,
        JSON.stringify(event.data.attachments), "sent", null, null, null, null, at);
    } else if (event.type === "TurnEnded") {
      const r = event.data.reply;
      insert.run(Number(e.position), sessionId, `${event.data.message_id}_reply`, "assistant", event.data.job_id, r?.content ?? "",
        null, event.data.outcome, JSON.stringify(r?.tool_calls ?? []), JSON.stringify(r?.assets ?? []),
        r ? JSON.stringify(r.result ?? null) : null, event.data.error ? JSON.stringify(event.data.error) : null, at);
    }
  },
};

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
