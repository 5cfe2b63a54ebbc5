/** Jobs read model: status, input, outcome, usage and timing of every job (session turns and runs). */
import type { Database } from "bun:sqlite";
import type { JobEvent } from "../../src/domain/job/job.ts";
import type { RecordedEvent } from "../../src/eventstore/port.ts";
import type { Projection } from "../../src/projections/projection.ts";
import { appIdOf, streamIdOf } from "../support.ts";

export const jobsProjection: Projection = {
  name: "jobs",
  version: 1,
  eventTypes: [
    "JobQueued", "JobStarted", "PlanProposed", "PlanApproved", "PlanRejected", "CancelRequested",
    "JobCancelled", "JobCompleted", "JobFailed", "UsageRecorded",
  ],
  tables: ["jobs"],
  schema: `
    CREATE TABLE IF NOT EXISTS jobs (
      id TEXT PRIMARY KEY, app_id TEXT NOT NULL, kind TEXT NOT NULL, session_id TEXT, message_id TEXT,
      agent_id TEXT NOT NULL, user_id TEXT NOT NULL, status TEXT NOT NULL, input TEXT NOT NULL,
      output_schema TEXT, approval TEXT, cancel_requested INTEGER NOT NULL DEFAULT 0,
      content TEXT, result TEXT, error TEXT, attempts INTEGER NOT NULL DEFAULT 0,
      prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,
      cached_tokens INTEGER NOT NULL DEFAULT 0, reasoning_tokens INTEGER NOT NULL DEFAULT 0,
      created_at INTEGER NOT NULL, started_at INTEGER, completed_at INTEGER, updated_at INTEGER NOT NULL, seq INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS jobs_by_session ON jobs(session_id, seq DESC);
    CREATE INDEX IF NOT EXISTS jobs_unfinished ON jobs(status) WHERE status IN ('pending', 'processing', 'awaiting_approval');
  `,
  apply(db: Database, e: RecordedEvent) {
    const id = streamIdOf(e);
    const at = e.created.getTime();
    const event = { type: e.type, data: e.data } as JobEvent;
    const set = (sql: string, ...params: Array<string | number | null>) =>
      db.query(`UPDATE jobs SET ${sql}, updated_at = ? WHERE id = ?`).run(...params, at, id);
    switch (event.type) {
      case "JobQueued": {
        const d = event.data;
        db.query(
          `INSERT OR REPLACE INTO jobs (id, app_id, kind, session_id, message_id, agent_id, user_id, status, input, output_schema, created_at, updated_at, seq)
           VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?)`,
        ).run(d.job_id, appIdOf(e), d.kind, d.session_id, d.message_id, d.agent_id, d.user_id, JSON.stringify(d.input),
          d.output_schema ? JSON.stringify(d.output_schema) : null, at, at, Number(e.position));
        break;
      }
      case "JobStarted":
        set("status = 'processing', attempts = ?, started_at = COALESCE(started_at, ?)", event.data.attempt, at);
        break;
      case "PlanProposed":
        set("status = 'awaiting_approval', approval = ?", JSON.stringify({ requested: true, approved: null, plan: event.data }));
        break;
      case "PlanApproved":
      case "PlanRejected": {
        const row = db.query("SELECT approval FROM jobs WHERE id = ?").get(id) as { approval: string | null } | null;
        const approval = row?.approval ? JSON.parse(row.approval) : { plan: null };
        const approved = event.type === "PlanApproved";
        set(`approval = ?${approved ? ", status = 'processing'" : ""}`, JSON.stringify({ ...approval, requested: false, approved }));
        break;
      }
      case "CancelRequested":
        set("cancel_requested = 1");
        break;
      case "JobCancelled":
        set("status = 'cancelled', completed_at = ?, error = ?", at, JSON.stringify({ code: "cancelled", message: `Cancelled (${event.data.reason})` }));
        break;
      case "JobCompleted":
        set("status = 'completed', completed_at = ?, content = ?, result = ?", at, event.data.content, JSON.stringify(event.data.result ?? null));
        break;
      case "JobFailed":
        set("status = 'failed', completed_at = ?, error = ?", at, JSON.stringify(event.data.error));
        break;
      case "UsageRecorded":
        set("prompt_tokens = prompt_tokens + ?, completion_tokens = completion_tokens + ?, cached_tokens = cached_tokens + ?, reasoning_tokens = reasoning_tokens + ?",
          event.data.prompt_tokens, event.data.completion_tokens, event.data.cached_tokens, event.data.reasoning_tokens);
        break;
      default:
        break;
    }
  },
};

export interface JobRow {
  id: string; app_id: string; kind: "message" | "run"; session_id: string | null; message_id: string | null; agent_id: string; user_id: string;
  status: string; input: string; output_schema: string | null; approval: string | null; cancel_requested: number;
  content: string | null; result: string | null; error: string | null; attempts: number;
  prompt_tokens: number; completion_tokens: number; cached_tokens: number; reasoning_tokens: number;
  created_at: number; started_at: number | null; completed_at: number | null; updated_at: number; seq: number;
}

export function getJob(db: Database, appId: string, id: string): JobRow | null {
  return db.query("SELECT * FROM jobs WHERE app_id = ? AND id = ?").get(appId, id) as JobRow | null;
}

export function listSessionJobs(db: Database, sessionId: string, limit: number, afterSeq?: number): JobRow[] {
  return afterSeq === undefined
    ? db.query("SELECT * FROM jobs WHERE session_id = ? ORDER BY seq DESC LIMIT ?").all(sessionId, limit) as JobRow[]
    : db.query("SELECT * FROM jobs WHERE session_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?").all(sessionId, afterSeq, limit) as JobRow[];
}

export function unfinishedJobs(db: Database): Array<Pick<JobRow, "id" | "status" | "session_id">> {
  return db.query("SELECT id, status, session_id FROM jobs WHERE status IN ('pending', 'processing', 'awaiting_approval') ORDER BY seq").all() as Array<Pick<JobRow, "id" | "status" | "session_id">>;
}
