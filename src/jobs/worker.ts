/**
 * The worker: takes job ids from the queue and runs them, at most `concurrency` at once, keeping an
 * abort handle per running job so a cancel can stop the model request immediately.
 */
import type { RunningJobs } from "../app/context.ts";
import type { Logger } from "../core/logger.ts";
import type { JobQueue } from "./queue.ts";
import type { TurnRunner } from "./turnRunner.ts";

export class Worker implements RunningJobs {
  private readonly running = new Map<string, AbortController>();
  private readonly inFlight = new Set<Promise<void>>();

  constructor(
    private readonly queue: JobQueue,
    private readonly runner: TurnRunner,
    private readonly logger: Logger,
    private readonly concurrency = 4,
  ) {}

  /** `onGiveUp` ends a job the queue stopped redelivering (its workers kept dying). */
  start(onGiveUp?: (jobId: string, deliveries: number) => Promise<void>): void {
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

  /** Stops taking jobs and waits (up to `timeoutMs`) for running ones to reach an end or a wait. */
  async stop(timeoutMs: number): Promise<void> {
    await Promise.race([this.queue.close(), Bun.sleep(timeoutMs)]);
    if (this.running.size) {
      // Left unfinished: the next start's reconciler resumes or fails them; none stays "processing".
      this.logger.warn("jobs still running at shutdown", { jobs: [...this.running.keys()] });
    }
  }

  private async handle(jobId: string): Promise<void> {
    if (this.running.has(jobId)) return;
    const controller = new AbortController();
    this.running.set(jobId, controller);
    const work = this.runner.run(jobId, controller.signal)
      .catch((err) => this.logger.error("job runner crashed", { job_id: jobId, error: err as Error }))
      .finally(() => {
        this.running.delete(jobId);
        this.inFlight.delete(work);
      });
    this.inFlight.add(work);
    await work;
  }
}
