/**
 * The worker: takes job ids from the queue and runs them, at most `concurrency` at once, keeping an
 * abort handle per running job so a cancel can stop the model request immediately, and owning the
 * graceful stop of a deploy (see `stop`).
 */
import type { RunningJobs } from "../app/context.ts";
import type { Logger } from "../core/logger.ts";
import type { JobQueue } from "./queue.ts";
import { Shutdown } from "./runner/outcome.ts";
import type { RunOutcome, TurnRunner } from "./turnRunner.ts";

/** What a stop did with the jobs that were running when it began (and any delivered meanwhile). */
export interface StopReport {
  /** Jobs that ended, or went on to wait (for approval, for their session's turn), within the grace. */
  finished: number;
  /** Jobs handed back at a step boundary, resumable by another runner. */
  released: number;
  /** Jobs still in a step when the grace ran out: aborted and handed back (their cut step is redone). */
  cut: number;
  /** Jobs whose runner did not return even after the abort: their leases expire instead. */
  abandoned: string[];
}

/** The runner's part of a worker: runs one job until it ends, waits, or is handed back. */
export type JobRunner = Pick<TurnRunner, "run">;

export class Worker implements RunningJobs {
  private readonly running = new Map<string, AbortController>();
  private readonly inFlight = new Set<Promise<RunOutcome>>();
  /** Aborted when a stop begins: runners stop at their next step boundary. */
  private readonly draining = new AbortController();
  private readonly cut = new Set<string>();
  private readonly report: StopReport = { finished: 0, released: 0, cut: 0, abandoned: [] };
  private started = false;
  private stopping: Promise<StopReport> | undefined;

  constructor(
    private readonly queue: JobQueue,
    private readonly runner: JobRunner,
    private readonly logger: Logger,
    private readonly concurrency = 4,
    /** How long runners aborted at the end of the grace get to record their release and return. */
    private readonly abortGraceMs = 5_000,
  ) {}

  /** `onGiveUp` ends a job the queue stopped redelivering (its workers kept dying). */
  start(onGiveUp?: (jobId: string, deliveries: number) => Promise<void>): void {
    this.started = true;
    this.queue.consume((jobId) => this.handle(jobId), this.concurrency, onGiveUp ? { onGiveUp } : {});
  }

  isRunning(jobId: string): boolean {
    return this.running.has(jobId);
  }

  abort(jobId: string): void {
    this.running.get(jobId)?.abort();
  }

  get activeCount(): number {
    return this.running.size;
  }

  /**
   * A deploy's stop: takes no new job from now on; lets running jobs finish their current step (a model
   * call or a tool call) within `timeoutMs` — a job that reaches a step boundary meanwhile is handed
   * back there — then aborts what is left with the `Shutdown` reason, which the runner treats as "hand
   * it back" (not a cancel, not a failure). Handed-back jobs are released by the queue: with Redis,
   * another worker takes them at once; in process, the next start's reconciler resumes them.
   *
   * The abort comes a little before `timeoutMs` (a fifth of it, at most `abortGraceMs`), so that cut
   * jobs usually record their release within the timeout: an orchestrator that kills the process soon
   * after it would otherwise find them still writing. Runners get up to `abortGraceMs` after the abort.
   *
   * Only consuming stops here: the queue's producer side stays open for whoever closes it last (the
   * process's HTTP side may still be accepting jobs while it drains).
   */
  stop(timeoutMs: number): Promise<StopReport> {
    return (this.stopping ??= this.stopOnce(timeoutMs));
  }

  private async stopOnce(timeoutMs: number): Promise<StopReport> {
    const report = this.report;
    // A worker that never started has nothing to stop (an API process's): leave its queue alone.
    if (!this.started) return report;
    const atStart = this.running.size;
    this.draining.abort();
    const stopped = this.queue.stopConsuming().then(() => true);
    const cutAt = timeoutMs - Math.min(this.abortGraceMs, Math.floor(timeoutMs / 5));
    if (!(await Promise.race([stopped, Bun.sleep(cutAt).then(() => false)]))) {
      for (const [jobId, controller] of this.running) {
        this.cut.add(jobId);
        controller.abort(new Shutdown());
      }
      if (!(await Promise.race([stopped, Bun.sleep(this.abortGraceMs).then(() => false)]))) {
        // Their queue entries stay held until the lease expires; their streams say they were cut off.
        report.abandoned = [...this.running.keys()];
      }
    }
    this.logger.info("worker stopped", {
      running_at_stop: atStart, finished: report.finished, released: report.released, cut: report.cut,
      ...(report.abandoned.length ? { abandoned: report.abandoned } : {}),
    });
    if (report.abandoned.length) this.logger.warn("jobs still running after the shutdown grace; left to their leases", { jobs: report.abandoned });
    return report;
  }

  private async handle(jobId: string): Promise<RunOutcome> {
    // Delivered as the stop began: hand it straight back, untouched.
    if (this.draining.signal.aborted) return "released";
    if (this.running.has(jobId)) return;
    const controller = new AbortController();
    this.running.set(jobId, controller);
    const work = this.runner.run(jobId, controller.signal, this.draining.signal)
      .catch((err): RunOutcome => {
        this.logger.error("job runner crashed", { job_id: jobId, error: err as Error });
      })
      .then((outcome) => {
        if (this.draining.signal.aborted) {
          if (outcome !== "released") this.report.finished++;
          else if (this.cut.has(jobId)) this.report.cut++;
          else this.report.released++;
        }
        return outcome;
      })
      .finally(() => {
        this.running.delete(jobId);
        this.inFlight.delete(work);
      });
    this.inFlight.add(work);
    return work;
  }
}
