/**
 * Operators' reads of the jobs read model, across every app: how many jobs are in each status, and the
 * jobs of one status, newest first. Beside the projection (projections/jobs/index.ts), which owns the
 * table; these only query it.
 */
import type { Database } from "bun:sqlite";
import type { JobRow } from "./index.ts";

/** Every status a job row can hold, in the order a job moves through them. */
export const JOB_STATUSES = ["pending", "processing", "awaiting_approval", "completed", "failed", "cancelled"] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

export const UNFINISHED_STATUSES = ["pending", "processing", "awaiting_approval"] as const;

/**
 * Jobs per status over every app (test data included): zero for a status no job is in. Counted from
 * the jobs_by_status index alone (a walk of its narrow entries, never of the rows).
 */
export function jobCountsByStatus(db: Database): Record<JobStatus, number> {
  const counts = Object.fromEntries(JOB_STATUSES.map((s) => [s, 0])) as Record<JobStatus, number>;
  const rows = db.query<{ status: string; n: number }, []>("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status").all();
  for (const row of rows) if (Object.hasOwn(counts, row.status)) counts[row.status as JobStatus] = row.n;
  return counts;
}

/**
 * Unfinished jobs per status: what the queue's state shows, polled often. Read from the partial index
 * jobs_unfinished, so its cost follows the jobs in flight, not every job ever run.
 */
export function unfinishedJobCounts(db: Database): Record<(typeof UNFINISHED_STATUSES)[number], number> {
  const counts = { pending: 0, processing: 0, awaiting_approval: 0 };
  const rows = db.query<{ status: string; n: number }, []>(
    "SELECT status, COUNT(*) AS n FROM jobs WHERE status IN ('pending', 'processing', 'awaiting_approval') GROUP BY status",
  ).all();
  for (const row of rows) if (Object.hasOwn(counts, row.status)) counts[row.status as keyof typeof counts] = row.n;
  return counts;
}

/**
 * Jobs newest first (by their queueing position), keyset-paginated by `seq`, optionally of one status
 * and one data partition. Jobs of deleted sessions are included: operators see what ran.
 */
export function listJobsForOperators(
  db: Database, filter: { status?: JobStatus; appId?: string }, limit: number, afterSeq?: number,
): JobRow[] {
  const where: string[] = [];
  const params: Array<string | number> = [];
  if (filter.status !== undefined) { where.push("status = ?"); params.push(filter.status); }
  if (filter.appId !== undefined) { where.push("app_id = ?"); params.push(filter.appId); }
  if (afterSeq !== undefined) { where.push("seq < ?"); params.push(afterSeq); }
  const clause = where.length ? `WHERE ${where.join(" AND ")}` : "";
  return db.query(`SELECT * FROM jobs ${clause} ORDER BY seq DESC LIMIT ?`).all(...params, limit) as JobRow[];
}
