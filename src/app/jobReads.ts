/**
 * What the API may show of a job. A job belongs to its session: once the session is deleted its jobs
 * are gone from every read (status, events, SSE, runs), though their events stay in the store for audit.
 */
import { NotFoundError } from "../core/errors.ts";
import type { JobState } from "../domain/job/job.ts";
import { getJob, type JobRow } from "../../projections/jobs/index.ts";
import type { AppContext } from "./context.ts";
import { requireAgentAllowed, requireUser } from "./access.ts";

const jobNotFound = () => new NotFoundError("Job not found", { param: "job_id" }, "job_not_found");
const runNotFound = () => new NotFoundError("Run not found", { param: "run_id" }, "run_not_found");

/** The job's live state from its stream (cached, brought up to date incrementally); 404 when not visible. */
export async function visibleJobState(ctx: AppContext, jobId: string): Promise<JobState> {
  return (await visibleJob(ctx, jobId)).state;
}

/**
 * The job's state and the id of its last event (its stream revision + 1): once the job has ended,
 * that is its terminal event, since nothing is appended to an ended job.
 */
export async function visibleJob(ctx: AppContext, jobId: string): Promise<{ state: JobState; lastEventId: number }> {
  const { state, revision, appId } = await ctx.repos.jobs.peek(jobId);
  // Another app's job is as absent as one that never existed.
  if (state.status === "none" || appId !== ctx.appId) throw jobNotFound();
  if (state.queued) {
    requireAgentAllowed(ctx, state.queued.agent_id);
    requireUser(ctx, state.queued.user_id);
  }
  if (state.sessionId) {
    const { state: session } = await ctx.repos.sessions.peek(state.sessionId);
    if (session.status !== "active") throw jobNotFound();
  }
  return { state, lastEventId: Number(revision) + 1 };
}

/** The job's read-model row; 404 when not visible. */
export function visibleJobRow(ctx: AppContext, jobId: string): JobRow {
  const row = getJob(ctx.db, ctx.appId, jobId);
  if (!row) throw jobNotFound();
  requireAgentAllowed(ctx, row.agent_id);
  requireUser(ctx, row.user_id);
  return row;
}

/** A run (any job, read through /v1/runs) by the id the client sent as run_id; 404 names run_id. */
export function visibleRunRow(ctx: AppContext, runId: string): JobRow {
  const row = getJob(ctx.db, ctx.appId, runId);
  if (!row) throw runNotFound();
  requireAgentAllowed(ctx, row.agent_id);
  requireUser(ctx, row.user_id);
  return row;
}
