/**
 * Sessions read model: one row per session with its status (idle while no turn is in flight), the turn
 * in flight and those queued behind it, counts, token usage and activity times.
 */
import type { Database } from "bun:sqlite";
import { domainEvents } from "../../src/domain/catalog.ts";
import { sessionEvents } from "../../src/domain/session/events.ts";
import type { RecordedEvent } from "../../src/eventstore/port.ts";
import type { Projection } from "../../src/projections/projection.ts";
import { foldRows } from "../rowBatch.ts";
import { aroundErasures, deleteIn, USER_ERASED } from "../erasure.ts";
import { appIdOf, streamIdOf, occurredAt } from "../support.ts";
import { roundCredits } from "../../src/domain/billing/prices.ts";

export const sessionsProjection: Projection = {
  name: "sessions",
  // v2: a turn leaves the session's open turns when its job ends, not only when TurnEnded follows.
  // v3: message_count counts every message of the history, failed and cancelled turns' included.
  // v4: created_seq, for listing in a stable order.
  // v5: credits_spent, from its jobs' steps and tools.
  version: 5,
  eventTypes: [
    "SessionStarted", "SessionRenamed", "SessionArchived", "SessionUnarchived", "SessionDeleted",
    "MessageSent", "TurnEnded", "AssetRegistered", "UsageRecorded", "ToolCompleted", "JobCompleted", "JobFailed", "JobCancelled",
    USER_ERASED,
  ],
  tables: ["sessions", "session_jobs"],
  schema: `
    CREATE TABLE IF NOT EXISTS sessions (
      id TEXT PRIMARY KEY, app_id TEXT NOT NULL, agent_id TEXT NOT NULL, user_id TEXT NOT NULL, name TEXT NOT NULL,
      external_ref TEXT, metadata TEXT NOT NULL, archived INTEGER NOT NULL DEFAULT 0, deleted INTEGER NOT NULL DEFAULT 0,
      turns TEXT NOT NULL DEFAULT '[]', message_count INTEGER NOT NULL DEFAULT 0, asset_count INTEGER NOT NULL DEFAULT 0,
      prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,
      cached_tokens INTEGER NOT NULL DEFAULT 0, reasoning_tokens INTEGER NOT NULL DEFAULT 0, credits_spent REAL NOT NULL DEFAULT 0,
      created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, last_activity_at INTEGER NOT NULL, activity_seq INTEGER NOT NULL,
      created_seq INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions(app_id, user_id, deleted, activity_seq DESC);
    CREATE INDEX IF NOT EXISTS sessions_by_app ON sessions(app_id, deleted, activity_seq DESC);
    CREATE INDEX IF NOT EXISTS sessions_by_user_created ON sessions(app_id, user_id, deleted, created_seq DESC);
    CREATE INDEX IF NOT EXISTS sessions_by_app_created ON sessions(app_id, deleted, created_seq DESC);
    -- The auditors' search (search.ts) spans deleted sessions too, newest created first: without
    -- \`deleted\` in the key these read in (created_seq, id) order as they are (walked backwards), so a
    -- page is a bounded index walk instead of a sort of the whole app. The external_ref one replaces
    -- sessions_by_ref (app_id, external_ref), of which it is a superset.
    CREATE INDEX IF NOT EXISTS sessions_by_app_seq ON sessions(app_id, created_seq);
    CREATE INDEX IF NOT EXISTS sessions_by_user_seq ON sessions(app_id, user_id, created_seq);
    CREATE INDEX IF NOT EXISTS sessions_by_ref_seq ON sessions(app_id, external_ref, created_seq);
    DROP INDEX IF EXISTS sessions_by_ref;
    CREATE TABLE IF NOT EXISTS session_jobs (job_id TEXT PRIMARY KEY, session_id TEXT NOT NULL) WITHOUT ROWID;
  `,
  apply(db: Database, e: RecordedEvent) {
    sessionsProjection.applyBatch!(db, [e]);
  },
  applyBatch(db: Database, events: readonly RecordedEvent[]) {
    aroundErasures(events, (segment) => applySessions(db, segment), (erased) => {
      deleteIn(db, "sessions", "id", erased.sessions);
      deleteIn(db, "session_jobs", "session_id", erased.sessions);
      deleteIn(db, "session_jobs", "job_id", erased.jobs);
    });
  },
};

/** Folds a batch into session rows (one read and one write per session), keeping the job → session map. */
function applySessions(db: Database, events: readonly RecordedEvent[]): void {
  const jobSessions = new Map<string, string>();
  const insertJob = db.query("INSERT OR REPLACE INTO session_jobs (job_id, session_id) VALUES (?, ?)");
  const sessionOfJob = (jobId: string): string | null => {
    const known = jobSessions.get(jobId);
    if (known) return known;
    const row = db.query("SELECT session_id FROM session_jobs WHERE job_id = ?").get(jobId) as { session_id: string } | null;
    return row?.session_id ?? null;
  };
  foldRows(db, events, {
    keyOf: (e) => {
      if (e.type === "UsageRecorded" || e.type === "ToolCompleted" || JOB_ENDS.has(e.type)) return sessionOfJob(streamIdOf(e));
      if (e.type === "MessageSent") {
        const event = sessionEvents.decode(e);
        const jobId = event.type === "MessageSent" ? event.data.job_id : "";
        jobSessions.set(jobId, streamIdOf(e));
        insertJob.run(jobId, streamIdOf(e));
      }
      return streamIdOf(e);
    },
    load: (d, id) => d.query("SELECT * FROM sessions WHERE id = ?").get(id) as SessionRow | null,
    save: (d, row) => {
      d.query(`INSERT OR REPLACE INTO sessions (${COLUMNS.join(", ")}) VALUES (${COLUMNS.map(() => "?").join(", ")})`)
        .run(...COLUMNS.map((c) => row[c]));
    },
    evolve: evolveSessionRow,
  });
}

/**
 * A job's end closes its turn in this view at once. The session's own TurnEnded is appended after
 * it (by the worker, possibly in another process); without this the session would read "processing"
 * for a moment after its job read "failed" or "completed".
 */
const JOB_ENDS = new Set(["JobCompleted", "JobFailed", "JobCancelled"]);

const COLUMNS = [
  "id", "app_id", "agent_id", "user_id", "name", "external_ref", "metadata", "archived", "deleted", "turns", "message_count",
  "asset_count", "prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens", "credits_spent", "created_at", "updated_at",
  "last_activity_at", "activity_seq", "created_seq",
] as const;

/**
 * The sessions row as a pure fold of the session's events (and its jobs' usage), in `$all` order: also
 * what the as-of replay folds (src/app/asOf.ts), so a past state has the shape the live row had.
 */
export function evolveSessionRow(row: SessionRow | null, e: RecordedEvent): SessionRow | null {
  const at = occurredAt(e);
  const seq = Number(e.position);
  const event = domainEvents.decode(e);
  if (event.type === "UsageRecorded") {
    if (!row) return null;
    const d = event.data;
    return {
      ...row, prompt_tokens: row.prompt_tokens + d.prompt_tokens, completion_tokens: row.completion_tokens + d.completion_tokens,
      cached_tokens: row.cached_tokens + d.cached_tokens, reasoning_tokens: row.reasoning_tokens + d.reasoning_tokens,
      credits_spent: roundCredits(row.credits_spent + (d.credits ?? 0)),
    };
  }
  if (event.type === "ToolCompleted") {
    return row && event.data.credits ? { ...row, credits_spent: roundCredits(row.credits_spent + event.data.credits) } : row;
  }
  if (JOB_ENDS.has(e.type)) {
    if (!row) return null;
    const jobId = streamIdOf(e);
    const turns = JSON.parse(row.turns) as string[];
    return turns.includes(jobId) ? { ...row, turns: JSON.stringify(turns.filter((j) => j !== jobId)), updated_at: at } : row;
  }
  if (event.type === "SessionStarted") {
    const d = event.data;
    return {
      id: d.session_id, app_id: appIdOf(e), agent_id: d.agent_id, user_id: d.user_id, name: d.name, external_ref: d.external_ref,
      metadata: JSON.stringify(d.metadata), archived: 0, deleted: 0, turns: "[]", message_count: 0, asset_count: 0,
      prompt_tokens: 0, completion_tokens: 0, cached_tokens: 0, reasoning_tokens: 0, credits_spent: 0,
      created_at: at, updated_at: at, last_activity_at: at, activity_seq: seq, created_seq: seq,
    };
  }
  if (!row) return null;
  const touched = { ...row, updated_at: at, last_activity_at: at, activity_seq: seq };
  switch (event.type) {
    case "SessionRenamed":
      return { ...row, name: event.data.name, updated_at: at };
    case "SessionArchived":
    case "SessionUnarchived":
      return { ...row, archived: event.type === "SessionArchived" ? 1 : 0, updated_at: at };
    case "SessionDeleted":
      return { ...row, deleted: 1, updated_at: at };
    case "MessageSent":
      return { ...touched, turns: JSON.stringify([...(JSON.parse(row.turns) as string[]), event.data.job_id]), message_count: row.message_count + 1 };
    case "TurnEnded":
      return {
        ...touched,
        turns: JSON.stringify((JSON.parse(row.turns) as string[]).filter((j) => j !== event.data.job_id)),
        // The history shows an assistant message for every ended turn (its reply, or how it failed).
        message_count: row.message_count + 1,
      };
    case "AssetRegistered":
      return { ...touched, asset_count: row.asset_count + 1 };
    default:
      return row;
  }
}

export interface SessionRow {
  id: string; app_id: string; agent_id: string; user_id: string; name: string; external_ref: string | null; metadata: string;
  archived: number; deleted: number; turns: string; message_count: number; asset_count: number;
  prompt_tokens: number; completion_tokens: number; cached_tokens: number; reasoning_tokens: number; credits_spent: number;
  created_at: number; updated_at: number; last_activity_at: number; activity_seq: number; created_seq: number;
}

/** Whether the session was deleted (false for one the read model does not know). */
export function sessionDeleted(db: Database, id: string): boolean {
  return (db.query("SELECT deleted FROM sessions WHERE id = ?").get(id) as { deleted: number } | null)?.deleted === 1;
}

export function getSession(db: Database, appId: string, id: string): SessionRow | null {
  return db.query("SELECT * FROM sessions WHERE app_id = ? AND id = ? AND deleted = 0").get(appId, id) as SessionRow | null;
}

/**
 * Sessions, keyset-paginated by (seq, id), newest first. `activity`: most recently active first — a
 * session that gets activity while a client pages moves to the front, so a walk through the pages may
 * miss it. `created`: newest created first, an order that never changes, so every session that
 * existed when paging began is seen exactly once.
 */
export function listSessions(
  db: Database, appId: string, filter: { user_id?: string; archived?: boolean; external_ref?: string; agent_ids?: readonly string[] }, order: "activity" | "created",
  limit: number, after?: { seq: number; id: string },
): SessionRow[] {
  const seq = order === "created" ? "created_seq" : "activity_seq";
  const where = ["app_id = ?", "deleted = 0"];
  const params: Array<string | number> = [appId];
  if (filter.user_id !== undefined) { where.push("user_id = ?"); params.push(filter.user_id); }
  if (filter.archived !== undefined) { where.push("archived = ?"); params.push(filter.archived ? 1 : 0); }
  if (filter.external_ref !== undefined) { where.push("external_ref = ?"); params.push(filter.external_ref); }
  if (filter.agent_ids !== undefined) {
    where.push(filter.agent_ids.length ? `agent_id IN (${filter.agent_ids.map(() => "?").join(", ")})` : "0");
    params.push(...filter.agent_ids);
  }
  if (after) { where.push(`(${seq} < ? OR (${seq} = ? AND id < ?))`); params.push(after.seq, after.seq, after.id); }
  return db.query(`SELECT * FROM sessions WHERE ${where.join(" AND ")} ORDER BY ${seq} DESC, id DESC LIMIT ?`).all(...params, limit) as SessionRow[];
}

/** Sessions with turns in flight or queued, for the reconciler. */
export function sessionsWithOpenTurns(db: Database): Array<{ id: string; turns: string[] }> {
  const rows = db.query("SELECT id, turns FROM sessions WHERE deleted = 0 AND turns != '[]'").all() as Array<{ id: string; turns: string }>;
  return rows.map((r) => ({ id: r.id, turns: JSON.parse(r.turns) as string[] }));
}
