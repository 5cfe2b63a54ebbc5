/**
 * Session ↔ job coordination in one place: the process manager for turns. Its rules:
 *
 * - A session turn's job ended (completed, failed or cancelled, by whichever process) → the turn ends
 *   on its session, with the reply, and the session's next queued turn goes to the queue.
 * - A session was deleted → the jobs of its open turns are cancelled, and its files removed.
 * - A job that holds usage reservations ended → they are settled with what it spent (src/app/billing.ts).
 *
 * It reacts to those events as they are appended, through its own `$all` subscription, in every
 * process that runs workers; the start-up and periodic reconciler repairs what happened while no
 * process was listening. Each reaction is idempotent (ending an ended turn decides nothing, cancelling
 * an ended job is refused and ignored), so several processes, and a caller that needs the effect
 * before it answers (a message sent just after the previous turn ended), may all apply it.
 */
import type { Logger } from "../core/logger.ts";
import { ConflictError, NotFoundError } from "../core/errors.ts";
import { TERMINAL } from "../domain/job/job.ts";
import { idOf, sessionStream } from "../domain/streams.ts";
import { StreamNotFoundError } from "../eventstore/errors.ts";
import type { Subscription } from "../eventstore/port.ts";
import { readYourWrites, type AppContext } from "./context.ts";
import type { CommandMetadata } from "./repository.ts";
import { cancelJob, dispatch, replySummary } from "./turns.ts";
import { settleJob } from "./billing.ts";
import { removeSessionFiles } from "./files.ts";
import { sessionFileIds } from "../../projections/files/index.ts";

const JOB_ENDS = ["JobCompleted", "JobFailed", "JobCancelled"];
const SETTLED_REMEMBERED = 10_000;

export class TurnCoordinator {
  private subscription: Subscription | undefined;
  private loop: Promise<void> | undefined;
  private stopped = false;
  /** Ended jobs whose turn this process has seen reach the read models (bounded, oldest dropped first). */
  private readonly settled = new Set<string>();
  /** Turn ends under way in this process, by job. */
  private readonly ending = new Map<string, Promise<bigint | null>>();

  constructor(private readonly ctx: AppContext, private readonly logger: Logger = ctx.logger) {}

  /** Starts reacting to events appended from now on. */
  async start(): Promise<void> {
    const head = await this.ctx.store.headPosition();
    this.loop = this.run(head);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.subscription?.unsubscribe();
    await this.loop;
  }

  /**
   * The job ended: ends its turn on the session (with the reply) and dispatches the session's next
   * queued turn. Returns the position of what it appended, or null when there was nothing to do.
   */
  jobEnded(jobId: string, meta: CommandMetadata): Promise<bigint | null> {
    // Several paths react to the same end at once (this subscription, a waiting request, a poll):
    // within this process they share one reaction instead of each building the reply.
    let ending = this.ending.get(jobId);
    if (!ending) {
      ending = this.endTurn(jobId, meta).finally(() => this.ending.delete(jobId));
      this.ending.set(jobId, ending);
    }
    return ending;
  }

  private async endTurn(jobId: string, meta: CommandMetadata): Promise<bigint | null> {
    const { state: job } = await this.ctx.repos.jobs.load(jobId);
    if (!TERMINAL.has(job.status as never) || !job.sessionId) return null;
    // Already ended on its session (another path got here first): skip building the reply again.
    const { state: session } = await this.ctx.repos.sessions.load(job.sessionId);
    if (!session.turns.some((t) => t.job_id === jobId)) return null;
    const reply = job.status === "completed" ? await replySummary(this.ctx, jobId) : null;
    const error = job.status === "failed" ? job.error
      : job.status === "cancelled" ? { code: "cancelled", message: `The turn was cancelled (${job.cancelReason ?? "cancelled"})` }
      : null;
    const ended = await this.ctx.repos.sessions.handle(job.sessionId, {
      type: "EndTurn", job_id: jobId, outcome: job.status as "completed" | "failed" | "cancelled", reply, error,
    }, { ...meta, causationId: jobId }).catch((err) => {
      if (err instanceof NotFoundError) return null; // the session was deleted meanwhile
      throw err;
    });
    const next = ended?.state.turns[0];
    if (next) dispatch(this.ctx, next.job_id);
    return ended?.position ?? null;
  }

  /**
   * Makes an ended job's turn visible before a reader is told the job is done: ends the turn on its
   * session if no process has yet, then waits (bounded by read-your-writes) until the read models hold
   * it, so the session's history has the reply and the session reads idle. False when they did not
   * catch up in time or the caller went away; the caller then reports "not done yet", never an error.
   * Remembered per job, so repeated polls of a finished job cost nothing more.
   */
  async turnSettled(jobId: string, meta: CommandMetadata, signal?: AbortSignal): Promise<boolean> {
    if (this.isSettled(jobId)) return true;
    const sessionId = (await this.ctx.repos.jobs.peek(jobId)).state.sessionId;
    if (!sessionId) return true; // a run: no turn to end
    // When another path ended the turn, its TurnEnded is already in the session's stream: waiting for
    // that stream's last event covers it (and only this session's events, not the whole store's).
    const position = (await this.jobEnded(jobId, meta)) ?? (await this.lastPositionOf(sessionStream(sessionId)));
    if (!(await readYourWrites(this.ctx, position, signal))) return false;
    this.settled.add(jobId);
    if (this.settled.size > SETTLED_REMEMBERED) this.settled.delete(this.settled.values().next().value!);
    return true;
  }

  private async lastPositionOf(stream: string): Promise<bigint | null> {
    try {
      for await (const e of this.ctx.store.readStream(stream, { direction: "backwards", maxCount: 1 })) return e.position;
    } catch (err) {
      if (!(err instanceof StreamNotFoundError)) throw err;
    }
    return null;
  }

  /** Whether `turnSettled` already saw this job's turn reach the read models (cheap: no store read). */
  isSettled(jobId: string): boolean {
    return this.settled.has(jobId);
  }

  /**
   * The session was deleted: its turns in flight or queued end with it (their events stay for audit),
   * and its files are removed (their bytes collected once no other file has them). `position` is the
   * deletion's: the files read model is brought up to it first, so every file recorded before is found.
   */
  async sessionDeleted(sessionId: string, meta: CommandMetadata, position: bigint | null = null): Promise<void> {
    const { state: session, appId } = await this.ctx.repos.sessions.load(sessionId);
    for (const turn of session.turns) {
      await cancelJob(this.ctx, turn.job_id, "session_deleted", { ...meta, causationId: sessionId }).catch((err) => {
        if (!(err instanceof ConflictError) && !(err instanceof NotFoundError)) throw err; // ended, or never queued
      });
    }
    if (session.status !== "deleted" || !this.ctx.files) return;
    await readYourWrites(this.ctx, position);
    const removed = await removeSessionFiles(this.ctx, sessionFileIds(this.ctx.db, sessionId), { ...meta, appId: appId ?? meta.appId, causationId: sessionId });
    if (removed) this.logger.debug("removed a deleted session's files", { session_id: sessionId, files: removed });
  }

  private async run(from: bigint | null): Promise<void> {
    let position = from;
    while (!this.stopped) {
      this.subscription = this.ctx.store.subscribeToAll({
        fromPosition: position ?? "start", filter: { eventTypes: [...JOB_ENDS, "SessionDeleted"] },
      });
      try {
        for (;;) {
          const batch = await this.subscription.nextBatch(100);
          if (batch.length === 0) return;
          for (const e of batch) {
            const meta = { appId: this.ctx.appId, correlationId: "turns", causationId: e.id, actor: "system:turns" };
            try {
              if (e.type === "SessionDeleted") await this.sessionDeleted(idOf(e.streamId), meta, e.position);
              else {
                // Its usage reservations are settled whether or not it was a session's turn.
                await settleJob(this.ctx, idOf(e.streamId)).catch((err) => {
                  this.logger.warn("could not settle a job's usage reservations; the next refusal in its pools repairs it", { stream: e.streamId, error: err as Error });
                });
                await this.jobEnded(idOf(e.streamId), meta);
              }
            } catch (err) {
              // One event's reaction failing must not stop the others; the reconciler repairs it later.
              this.logger.warn("could not coordinate a turn", { stream: e.streamId, event: e.type, error: err as Error });
            }
            position = e.position;
          }
        }
      } catch (err) {
        if (this.stopped) return;
        this.logger.warn("turn coordination failed; resubscribing", { error: err as Error });
        await Bun.sleep(500);
      }
    }
  }
}
