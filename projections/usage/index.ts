/**
 * Usage read model: tokens and credits per app, UTC day, end user, agent and API key — the rows
 * GET /v1/usage groups and exports. A job's user, agent and key are learnt from its JobQueued (the key
 * from the event's actor); its steps' usage and its tools' credits are then added to the day they
 * happened on.
 */
import type { Database } from "bun:sqlite";
import type { RecordedEvent } from "../../src/eventstore/port.ts";
import type { Projection } from "../../src/projections/projection.ts";
import { jobEvents } from "../../src/domain/job/events.ts";
import { keyIdOfActor } from "../../src/domain/billing/limits.ts";
import { appIdOf, occurredAt, streamIdOf } from "../support.ts";
import { deleteIn, erasedOf, USER_ERASED } from "../erasure.ts";

export const usageProjection: Projection = {
  name: "usage",
  version: 1,
  eventTypes: ["JobQueued", "UsageRecorded", "ToolCompleted", USER_ERASED],
  tables: ["usage_jobs", "usage_daily"],
  schema: `
    CREATE TABLE IF NOT EXISTS usage_jobs (
      job_id TEXT PRIMARY KEY, app_id TEXT NOT NULL, user_id TEXT NOT NULL, agent_id TEXT NOT NULL, key_id TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS usage_daily (
      app_id TEXT NOT NULL, day TEXT NOT NULL, user_id TEXT NOT NULL, agent_id TEXT NOT NULL, key_id TEXT NOT NULL,
      jobs INTEGER NOT NULL DEFAULT 0, model_calls INTEGER NOT NULL DEFAULT 0, tool_calls INTEGER NOT NULL DEFAULT 0,
      prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,
      cached_tokens INTEGER NOT NULL DEFAULT 0, reasoning_tokens INTEGER NOT NULL DEFAULT 0, credits REAL NOT NULL DEFAULT 0,
      PRIMARY KEY (app_id, day, user_id, agent_id, key_id)
    ) WITHOUT ROWID;
  `,
  apply(db: Database, e: RecordedEvent) {
    applyUsage(db, e);
  },
};

interface UsageJob {
  app_id: string;
  user_id: string;
  agent_id: string;
  /** "" when the job was not started with an API key (e.g. by the operator's configured key of old). */
  key_id: string;
}

interface Delta {
  jobs?: number;
  model_calls?: number;
  tool_calls?: number;
  prompt_tokens?: number;
  completion_tokens?: number;
  cached_tokens?: number;
  reasoning_tokens?: number;
  credits?: number;
}

const DELTA_COLUMNS = ["jobs", "model_calls", "tool_calls", "prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens", "credits"] as const;

function applyUsage(db: Database, e: RecordedEvent): void {
  if (e.type === USER_ERASED) return eraseUsage(db, erasedOf(e).jobs);
  const event = jobEvents.decode(e);
  const jobId = streamIdOf(e);
  const day = new Date(occurredAt(e)).toISOString().slice(0, 10);
  if (event.type === "JobQueued") {
    const job: UsageJob = { app_id: appIdOf(e), user_id: event.data.user_id, agent_id: event.data.agent_id, key_id: keyIdOfActor(e.metadata.actor as string | undefined) ?? "" };
    db.query("INSERT OR IGNORE INTO usage_jobs (job_id, app_id, user_id, agent_id, key_id) VALUES (?, ?, ?, ?, ?)")
      .run(jobId, job.app_id, job.user_id, job.agent_id, job.key_id);
    add(db, job, day, { jobs: 1 });
    return;
  }
  const job = db.query("SELECT app_id, user_id, agent_id, key_id FROM usage_jobs WHERE job_id = ?").get(jobId) as UsageJob | null;
  if (!job) return;
  if (event.type === "UsageRecorded") {
    const d = event.data;
    add(db, job, day, {
      model_calls: 1, prompt_tokens: d.prompt_tokens, completion_tokens: d.completion_tokens, cached_tokens: d.cached_tokens,
      reasoning_tokens: d.reasoning_tokens, credits: d.credits ?? 0,
    });
  } else if (event.type === "ToolCompleted") {
    add(db, job, day, { tool_calls: 1, credits: event.data.credits ?? 0 });
  }
}

function add(db: Database, job: UsageJob, day: string, delta: Delta): void {
  const values = DELTA_COLUMNS.map((c) => delta[c] ?? 0);
  db.query(
    `INSERT INTO usage_daily (app_id, day, user_id, agent_id, key_id, ${DELTA_COLUMNS.join(", ")})
     VALUES (?, ?, ?, ?, ?, ${DELTA_COLUMNS.map(() => "?").join(", ")})
     ON CONFLICT (app_id, day, user_id, agent_id, key_id) DO UPDATE SET
       ${DELTA_COLUMNS.map((c) => (c === "credits" ? "credits = round(credits + excluded.credits, 6)" : `${c} = ${c} + excluded.${c}`)).join(", ")}`,
  ).run(job.app_id, day, job.user_id, job.agent_id, job.key_id, ...values);
}

export const USAGE_GROUPS = ["day", "user", "agent", "key"] as const;
export type UsageGroup = (typeof USAGE_GROUPS)[number];
const GROUP_COLUMN: Record<UsageGroup, string> = { day: "day", user: "user_id", agent: "agent_id", key: "key_id" };

export interface UsageFilter {
  appId: string;
  /** Inclusive UTC days, YYYY-MM-DD. */
  from: string;
  to: string;
  userId?: string;
  /** Only these agents (a key limited to some agents sees only theirs). */
  agentIds?: readonly string[];
}

export interface UsageRow {
  group: string;
  jobs: number;
  model_calls: number;
  tool_calls: number;
  prompt_tokens: number;
  completion_tokens: number;
  cached_tokens: number;
  reasoning_tokens: number;
  credits: number;
}

/** Usage between two days, one row per value of `groupBy`, in that value's order. */
export function usageReport(db: Database, filter: UsageFilter, groupBy: UsageGroup): UsageRow[] {
  const where = ["app_id = ?", "day >= ?", "day <= ?"];
  const args: Array<string | number> = [filter.appId, filter.from, filter.to];
  if (filter.userId !== undefined) {
    where.push("user_id = ?");
    args.push(filter.userId);
  }
  if (filter.agentIds) {
    where.push(`agent_id IN (${filter.agentIds.map(() => "?").join(", ") || "NULL"})`);
    args.push(...filter.agentIds);
  }
  const column = GROUP_COLUMN[groupBy];
  return db.query(
    `SELECT ${column} AS "group", ${DELTA_COLUMNS.map((c) => (c === "credits" ? "round(sum(credits), 6) AS credits" : `sum(${c}) AS ${c}`)).join(", ")}
     FROM usage_daily WHERE ${where.join(" AND ")} GROUP BY ${column} ORDER BY ${column}`,
  ).all(...args) as UsageRow[];
}

/**
 * An erased user's rows: their days are sums over the erased jobs alone (every job of the user in the
 * partition is erased), which a rebuild no longer sees. The credits they spent stay in the usage-limit
 * pools (`budget-…` streams), under a hash of the user.
 */
function eraseUsage(db: Database, jobIds: readonly string[]): void {
  const users = new Set<string>();
  for (const id of jobIds) {
    const job = db.query("SELECT app_id, user_id FROM usage_jobs WHERE job_id = ?").get(id) as { app_id: string; user_id: string } | null;
    if (job) users.add(JSON.stringify([job.app_id, job.user_id]));
  }
  for (const key of users) {
    const [appId, userId] = JSON.parse(key) as [string, string];
    db.query("DELETE FROM usage_daily WHERE app_id = ? AND user_id = ?").run(appId, userId);
  }
  deleteIn(db, "usage_jobs", "job_id", jobIds);
}
