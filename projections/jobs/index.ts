/** Jobs read model: status, input, outcome, usage and timing of every job (session turns and runs). */
import type { Database } from "bun:sqlite";
import type { RecordedEvent } from "../../src/eventstore/port.ts";
import type { Projection } from "../../src/projections/projection.ts";
import { jobEvents } from "../../src/domain/job/events.ts";
import { foldRows, type RowFold } from "../rowBatch.ts";
import { aroundErasures, deleteIn, USER_ERASED } from "../erasure.ts";
import { appIdOf, streamIdOf, occurredAt } from "../support.ts";
import { roundCredits } from "../../src/domain/billing/prices.ts";

export const jobsProjection: Projection = {
  name: "jobs",
  version: 3,
  eventTypes: [
    "JobQueued", "JobStarted", "PlanProposed", "PlanApproved", "PlanRejected", "CancelRequested",
    "JobCancelled", "JobCompleted", "JobFailed", "UsageRecorded", "ToolCompleted", USER_ERASED,
  ],
  tables: ["jobs"],
  schema: `
    CREATE TABLE IF NOT EXISTS jobs (
      id TEXT PRIMARY KEY, app_id TEXT NOT NULL, kind TEXT NOT NULL, session_id TEXT, message_id TEXT,
      agent_id TEXT NOT NULL, user_id TEXT NOT NULL, status TEXT NOT NULL, input TEXT NOT NULL,
      output_schema TEXT, approval TEXT, cancel_requested INTEGER NOT NULL DEFAULT 0,
      content TEXT, result TEXT, error TEXT, attempts INTEGER NOT NULL DEFAULT 0,
      prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,
      cached_tokens INTEGER NOT NULL DEFAULT 0, reasoning_tokens INTEGER NOT NULL DEFAULT 0, credits_spent REAL NOT NULL DEFAULT 0,
      created_at INTEGER NOT NULL, started_at INTEGER, completed_at INTEGER, updated_at INTEGER NOT NULL, seq INTEGER NOT NULL,
      citations TEXT
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS jobs_by_session ON jobs(session_id, seq DESC);
    CREATE INDEX IF NOT EXISTS jobs_unfinished ON jobs(status) WHERE status IN ('pending', 'processing', 'awaiting_approval');
    -- The operators' reads (operators.ts), newest first over every app, by status or by app: a page is
    -- an index walk, not a sort of the whole table; and counting by status reads jobs_by_status only.
    CREATE INDEX IF NOT EXISTS jobs_by_seq ON jobs(seq);
    CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs(status, seq);
    CREATE INDEX IF NOT EXISTS jobs_by_app ON jobs(app_id, seq);
  `,
  apply(db: Database, e: RecordedEvent) {
    jobsProjection.applyBatch!(db, [e]);
  },
  applyBatch(db: Database, events: readonly RecordedEvent[]) {
    aroundErasures(events, (segment) => foldRows(db, segment, jobRows), (erased) => deleteIn(db, "jobs", "id", erased.jobs));
  },
};

const COLUMNS = [
  "id", "app_id", "kind", "session_id", "message_id", "agent_id", "user_id", "status", "input", "output_schema", "approval",
  "cancel_requested", "content", "result", "error", "attempts", "prompt_tokens", "completion_tokens", "cached_tokens",
  "reasoning_tokens", "credits_spent", "created_at", "started_at", "completed_at", "updated_at", "seq", "citations",
] as const;

/** The jobs row as a pure fold of the job's events (also what the as-of replay folds: src/app/asOf.ts). */
export const jobRows: RowFold<JobRow> = {
  keyOf: streamIdOf,
  load: (db, id) => db.query("SELECT * FROM jobs WHERE id = ?").get(id) as JobRow | null,
  save: (db, row) => {
    db.query(`INSERT OR REPLACE INTO jobs (${COLUMNS.join(", ")}) VALUES (${COLUMNS.map(() => "?").join(", ")})`)
      .run(...COLUMNS.map((c) => row[c]));
  },
  evolve(row, e) {
    const at = occurredAt(e);
    const event = jobEvents.decode(e);
    if (event.type === "JobQueued") {
      const d = event.data;
      return {
        id: d.job_id, app_id: appIdOf(e), kind: d.kind, session_id: d.session_id, message_id: d.message_id, agent_id: d.agent_id,
        user_id: d.user_id, status: "pending", input: JSON.stringify(d.input), output_schema: d.output_schema ? JSON.stringify(d.output_schema) : null,
        approval: null, cancel_requested: 0, content: null, result: null, error: null, attempts: 0,
        prompt_tokens: 0, completion_tokens: 0, cached_tokens: 0, reasoning_tokens: 0, credits_spent: 0,
        created_at: at, started_at: null, completed_at: null, updated_at: at, seq: Number(e.position), citations: null,
      };
    }
    if (!row) return null;
    const next: JobRow = { ...row, updated_at: at };
    switch (event.type) {
      case "JobStarted":
        return { ...next, status: "processing", attempts: event.data.attempt, started_at: row.started_at ?? at };
      case "PlanProposed":
        return { ...next, status: "awaiting_approval", approval: JSON.stringify({ requested: true, approved: null, plan: event.data }) };
      case "PlanApproved":
      case "PlanRejected": {
        const approval = row.approval ? JSON.parse(row.approval) : { plan: null };
        const approved = event.type === "PlanApproved";
        return { ...next, approval: JSON.stringify({ ...approval, requested: false, approved }), ...(approved ? { status: "processing" } : {}) };
      }
      case "CancelRequested":
        return { ...next, cancel_requested: 1 };
      case "JobCancelled":
        return { ...next, status: "cancelled", completed_at: at, error: JSON.stringify({ code: "cancelled", message: `Cancelled (${event.data.reason})` }) };
      case "JobCompleted":
        return {
          ...next, status: "completed", completed_at: at, content: event.data.content, result: JSON.stringify(event.data.result ?? null),
          citations: event.data.citations?.length ? JSON.stringify(event.data.citations) : null,
        };
      case "JobFailed":
        return { ...next, status: "failed", completed_at: at, error: JSON.stringify(event.data.error) };
      case "UsageRecorded":
        return {
          ...next,
          prompt_tokens: row.prompt_tokens + event.data.prompt_tokens, completion_tokens: row.completion_tokens + event.data.completion_tokens,
          cached_tokens: row.cached_tokens + event.data.cached_tokens, reasoning_tokens: row.reasoning_tokens + event.data.reasoning_tokens,
          credits_spent: roundCredits(row.credits_spent + (event.data.credits ?? 0)),
        };
      case "ToolCompleted":
        return event.data.credits ? { ...next, credits_spent: roundCredits(row.credits_spent + event.data.credits) } : row;
      default:
        return row;
    }
  },
};

export interface JobRow {
  id: string; app_id: string; kind: "message" | "run"; session_id: string | null; message_id: string | null; agent_id: string; user_id: string;
  status: string; input: string; output_schema: string | null; approval: string | null; cancel_requested: number;
  content: string | null; result: string | null; error: string | null; attempts: number;
  prompt_tokens: number; completion_tokens: number; cached_tokens: number; reasoning_tokens: number; credits_spent: number;
  created_at: number; started_at: number | null; completed_at: number | null; updated_at: number; seq: number;
  /** What the reply cites, as JSON (see JobCompleted); null for none. */
  citations: string | null;
}

/** A job, unless its session was deleted (its jobs then leave every read; their events stay for audit). */
export function getJob(db: Database, appId: string, id: string): JobRow | null {
  return db.query(
    `SELECT * FROM jobs j WHERE app_id = ? AND id = ?
       AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = j.session_id AND s.deleted = 1)`,
  ).get(appId, id) as JobRow | null;
}

export function listSessionJobs(db: Database, sessionId: string, limit: number, afterSeq?: number): JobRow[] {
  return afterSeq === undefined
    ? db.query("SELECT * FROM jobs WHERE session_id = ? ORDER BY seq DESC LIMIT ?").all(sessionId, limit) as JobRow[]
    : db.query("SELECT * FROM jobs WHERE session_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?").all(sessionId, afterSeq, limit) as JobRow[];
}

export function unfinishedJobs(db: Database): Array<Pick<JobRow, "id" | "status" | "session_id" | "updated_at">> {
  return db.query("SELECT id, status, session_id, updated_at FROM jobs WHERE status IN ('pending', 'processing', 'awaiting_approval') ORDER BY seq").all() as Array<Pick<JobRow, "id" | "status" | "session_id" | "updated_at">>;
}
