/**
 * Start-up reconciliation: makes sure no job acknowledged to a client is lost or left stuck after the
 * process stopped, whatever it was doing. It repairs from the event store's own record:
 *
 * - unfinished jobs go back to the queue (the runner then runs them, waits for their session's turn,
 *   or ends one that was cut off mid-step with a clear `interrupted` error);
 * - a session turn whose job stream was never written (the process stopped between the two appends)
 *   gets its job queued from the message itself (with the usage reservations the message took);
 * - a session turn whose job has ended but whose end was not recorded on the session is closed, which
 *   frees the session and starts its next queued turn;
 * - files of a deleted session that are still there (no process was listening when it was deleted, or
 *   a file arrived as it went) are removed.
 */
import type { AppContext } from "../app/context.ts";
import { dispatch } from "../app/turns.ts";
import { TERMINAL } from "../domain/job/job.ts";
import type { SessionEvent } from "../domain/session/session.ts";
import { sessionStream } from "../domain/streams.ts";
import { sessionEvents } from "../domain/session/events.ts";
import { unfinishedJobs } from "../../projections/jobs/index.ts";
import { sessionsWithOpenTurns } from "../../projections/sessions/index.ts";
import { filesOfDeletedSessions } from "../../projections/files/index.ts";
import { removeSessionFiles } from "../app/files.ts";
import { heldBudgets } from "../app/billing.ts";
import { keyIdOfActor } from "../domain/billing/limits.ts";
import { occurredAt } from "../core/eventContract.ts";
import type { RecordedEvent } from "../eventstore/port.ts";

export interface ReconcileReport {
  requeued: number;
  recreated: number;
  closed: number;
  /** Files of deleted sessions removed. */
  files: number;
}

export interface ReconcileOptions {
  /** Leave jobs that changed more recently than this alone: they were just queued and are on their way. */
  minAgeMs?: number;
  now?: number;
}

/**
 * A started job is dispatched again only when no live worker holds its lease (`JobQueue.isHeld`): a
 * turn that streams for an hour is never taken from the worker running it. When the queue cannot
 * answer, the job is left alone this round.
 */
export async function reconcile(ctx: AppContext, options: ReconcileOptions = {}): Promise<ReconcileReport> {
  const report: ReconcileReport = { requeued: 0, recreated: 0, closed: 0, files: 0 };
  const meta = { appId: ctx.appId, correlationId: "reconcile", actor: "system:reconciler" };
  const now = options.now ?? Date.now();

  for (const job of unfinishedJobs(ctx.db)) {
    if (job.status === "awaiting_approval") continue; // waits for a person, not a worker
    if (now - job.updated_at < (options.minAgeMs ?? 0)) continue;
    const held = await ctx.queue.isHeld(job.id).catch((err) => {
      ctx.logger.warn("could not tell whether a job is held; leaving it for the next round", { job_id: job.id, error: err as Error });
      return true;
    });
    if (held) continue;
    dispatch(ctx, job.id);
    report.requeued++;
  }

  for (const session of sessionsWithOpenTurns(ctx.db)) {
    for (const [index, jobId] of session.turns.entries()) {
      const { state } = await ctx.repos.jobs.load(jobId);
      if (state.status === "none") {
        if (await recreateJob(ctx, session.id, jobId)) {
          report.recreated++;
          if (index === 0) dispatch(ctx, jobId);
        }
      } else if (TERMINAL.has(state.status)) {
        await ctx.turns.jobEnded(jobId, meta);
        report.closed++;
      }
    }
  }
  if (ctx.files) {
    for (const file of filesOfDeletedSessions(ctx.db, 10_000)) {
      report.files += await removeSessionFiles(ctx, [file.id], { ...meta, appId: file.app_id, causationId: file.session_id }).catch((err) => {
        ctx.logger.warn("could not remove a deleted session's file; the next round tries again", { file_id: file.id, error: err as Error });
        return 0;
      });
    }
  }
  if (report.requeued || report.recreated || report.closed || report.files) ctx.logger.info("reconciled unfinished work", { ...report });
  return report;
}

/** Queues a session turn's job from its MessageSent event. */
async function recreateJob(ctx: AppContext, sessionId: string, jobId: string): Promise<boolean> {
  let message: Extract<SessionEvent, { type: "MessageSent" }>["data"] | undefined;
  let started: Extract<SessionEvent, { type: "SessionStarted" }>["data"] | undefined;
  // The job belongs to its session's app (never the server's default): the session's first event says which.
  let sessionApp: string | undefined;
  let sent: RecordedEvent | undefined;
  for await (const e of ctx.store.readStream(sessionStream(sessionId))) {
    const event = sessionEvents.decode(e);
    if (event.type === "SessionStarted") {
      started = event.data;
      sessionApp = typeof e.metadata.app_id === "string" ? e.metadata.app_id : undefined;
    }
    if (event.type === "MessageSent" && event.data.job_id === jobId) {
      message = event.data;
      sent = e;
    }
  }
  if (!message || !started || !sent) return false;
  const { state: agent } = await ctx.repos.agents.load(started.agent_id);
  // The usage reservations the message took before its process stopped: the job holds them, and settles them when it ends.
  const budgets = await heldBudgets(ctx, {
    appId: sessionApp ?? ctx.appId, userId: started.user_id, keyId: keyIdOfActor(sent.metadata.actor as string | undefined),
  }, jobId, occurredAt(sent));
  await ctx.repos.jobs.handle(jobId, {
    type: "QueueJob",
    data: {
      job_id: jobId, kind: "message", session_id: sessionId, message_id: message.message_id, agent_id: started.agent_id,
      user_id: started.user_id,
      input: { content: message.content, attachments: message.attachments, media_url: null, context: message.context, ...(message.skill ? { skill: message.skill } : {}) },
      model: message.model, output_schema: message.skill?.output_schema ?? agent.spec?.output_schema ?? null, ...(budgets.length ? { budgets } : {}),
    },
  }, { appId: sessionApp ?? ctx.appId, correlationId: "reconcile", causationId: message.message_id, actor: "system:reconciler" });
  return true;
}
