/**
 * The JobQueue port: hands job ids to workers. Delivery is at-least-once; the job stream (appends with
 * expected revisions) is what makes running a job exactly-once in effect, so adapters may redeliver.
 */

/**
 * Runs a delivered job. It answers "released" to hand the job back unfinished (its worker is shutting
 * down): the queue gives up its hold on the job and makes it available to a consumer again at once.
 */
export type JobHandler = (jobId: string) => Promise<void | "released">;

export interface ConsumeOptions {
  /** Called instead of the handler when a job has been delivered too often (its workers keep dying). */
  onGiveUp?: (jobId: string, deliveries: number) => Promise<void>;
}

export interface JobQueue {
  readonly kind: string;
  enqueue(jobId: string): Promise<void>;
  /**
   * True while a live worker holds the job (is running it). The reconciler dispatches a started job
   * again only when this is false: a job is never taken from a worker that is still alive.
   */
  isHeld(jobId: string): Promise<boolean>;
  /**
   * Delivers queued job ids to `handler`, at most `concurrency` at a time. A job its handler released
   * is held no more (`isHeld` is false) and is delivered again, to this consumer or another; after
   * consuming stopped (`stopConsuming` or `close`), to another only.
   */
  consume(handler: JobHandler, concurrency: number, options?: ConsumeOptions): void;
  /**
   * Stops delivering at once (a job that arrives now is left for another consumer, not started);
   * resolves when the handlers in flight have returned and their jobs are finished or released. The
   * producer side stays open: `enqueue` still works, so a process whose worker stops while its HTTP side
   * drains still hands the jobs it accepts meanwhile to the queue.
   */
  stopConsuming(): Promise<void>;
  /** Stops consuming (as `stopConsuming`), then lets go of the queue's connections: `enqueue` fails after. */
  close(): Promise<void>;
}

/**
 * The in-process queue of the embedded default. Nothing here needs to survive a restart: on start the
 * reconciler re-enqueues every job the event store says is unfinished. A job released while the queue
 * is open goes to the back of it; one released (or enqueued) once consuming stopped is left to that
 * reconciler.
 */
export class InProcessJobQueue implements JobQueue {
  readonly kind = "in-process";
  private readonly waiting: string[] = [];
  private readonly queued = new Set<string>();
  private handler: JobHandler | undefined;
  private concurrency = 1;
  private active = 0;
  /** No more deliveries (the worker is stopping); jobs enqueued meanwhile wait for the next start. */
  private stopped = false;
  private closed = false;
  private readonly inFlight = new Set<Promise<void>>();
  /** Deliveries in flight per job (a job handed out again while its handler returns counts twice). */
  private readonly running = new Map<string, number>();

  async enqueue(jobId: string): Promise<void> {
    if (this.closed || this.queued.has(jobId)) return;
    this.queued.add(jobId);
    this.waiting.push(jobId);
    this.pump();
  }

  consume(handler: JobHandler, concurrency: number): void {
    this.handler = handler;
    this.concurrency = Math.max(1, concurrency);
    this.pump();
  }

  async stopConsuming(): Promise<void> {
    this.stopped = true;
    await Promise.allSettled([...this.inFlight]);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.stopConsuming();
  }

  async isHeld(jobId: string): Promise<boolean> {
    return (this.running.get(jobId) ?? 0) > 0;
  }

  get depth(): number {
    return this.waiting.length;
  }

  private pump(): void {
    while (!this.stopped && this.handler && this.active < this.concurrency && this.waiting.length > 0) {
      const jobId = this.waiting.shift()!;
      this.queued.delete(jobId);
      this.active++;
      this.running.set(jobId, (this.running.get(jobId) ?? 0) + 1);
      const run = this.handler(jobId)
        .catch(() => {}) // the worker reports its own failures; the queue only schedules
        .then((outcome) => {
          this.active--;
          const left = (this.running.get(jobId) ?? 1) - 1;
          if (left > 0) this.running.set(jobId, left);
          else this.running.delete(jobId);
          this.inFlight.delete(run);
          if (outcome === "released") void this.enqueue(jobId);
          this.pump();
        });
      this.inFlight.add(run);
    }
  }
}
