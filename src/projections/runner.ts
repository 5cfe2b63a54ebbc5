/**
 * The projection runner: one catch-up subscription to `$all`, feeding every registered projection.
 *
 * Each batch of events is applied in one SQLite transaction that also advances every projection's
 * checkpoint, so a crash can never leave a read model ahead of or behind its checkpoint. Projections
 * may sit at different checkpoints (one just reset for a rebuild, the others current): the runner
 * subscribes from the lowest and each projection skips what it has already seen.
 */
import type { Database } from "bun:sqlite";
import { TimeoutError } from "../core/errors.ts";
import type { Logger } from "../core/logger.ts";
import type { EventStore, RecordedEvent, Subscription } from "../eventstore/port.ts";
import type { Projection } from "./projection.ts";
import { quoteIdent, readCheckpoint, writeCheckpoint } from "./readModelDb.ts";

export interface ProjectionStatus {
  name: string;
  version: number;
  state: "starting" | "catching_up" | "live" | "error" | "stopped";
  /** Last processed global position, as a string (positions are bigints). */
  checkpoint: string | null;
  /** Events in the store after the checkpoint (counted up to `lagCountLimit`). */
  lag_events: number;
  lag_events_capped: boolean;
  /** Age of the oldest event not yet processed; 0 when caught up. */
  lag_ms: number;
  last_error: string | null;
}

/**
 * Each projection's checkpoint and lag against the store: what `status()` answers in the process that
 * runs the projections, and what `bun run projections status` reads beside a running server (from the
 * read-model file's checkpoints).
 */
export async function projectionStatus(
  store: EventStore, projections: readonly Projection[], checkpointOf: (name: string) => bigint | null,
  options: { stateOf: (lagEvents: number) => ProjectionStatus["state"]; lastError: string | null; now: number; lagCountLimit?: number },
): Promise<ProjectionStatus[]> {
  const limit = options.lagCountLimit ?? 10_000;
  const out: ProjectionStatus[] = [];
  // Every projection's lag is counted from its own checkpoint; most share one, so memoise.
  const lagByCheckpoint = new Map<string, { count: number; capped: boolean; oldest: number | null }>();
  for (const p of projections) {
    const checkpoint = checkpointOf(p.name);
    const key = checkpoint?.toString() ?? "";
    let lag = lagByCheckpoint.get(key);
    if (!lag) {
      lag = { count: 0, capped: false, oldest: null };
      for await (const e of store.readAll({ fromPosition: checkpoint ?? "start", maxCount: limit + 1 })) {
        if (checkpoint !== null && e.position <= checkpoint) continue;
        lag.oldest ??= e.created.getTime();
        if (++lag.count >= limit) {
          lag.capped = true;
          break;
        }
      }
      lagByCheckpoint.set(key, lag);
    }
    out.push({
      name: p.name,
      version: p.version,
      state: options.stateOf(lag.count),
      checkpoint: checkpoint?.toString() ?? null,
      lag_events: lag.count,
      lag_events_capped: lag.capped,
      lag_ms: lag.oldest === null ? 0 : Math.max(0, options.now - lag.oldest),
      last_error: options.lastError,
    });
  }
  return out;
}

export interface ProjectionRunnerOptions {
  batchSize?: number;
  now?: () => number;
  logger?: Logger;
  /** Status counts lag up to this many events; beyond, it reports the cap. */
  lagCountLimit?: number;
}

interface Waiter {
  position: bigint;
  resolve: () => void;
}

export class ProjectionRunner {
  private readonly checkpoints = new Map<string, bigint | null>();
  private readonly handles = new Map<string, ReadonlySet<string> | "all">();
  private subscription: Subscription | undefined;
  private loop: Promise<void> | undefined;
  private stopped = false;
  private state: ProjectionStatus["state"] = "starting";
  private lastError: string | null = null;
  /** Highest position every projection has processed (the minimum of their checkpoints). */
  private processed: bigint | null = null;
  private waiters: Waiter[] = [];
  private readonly batchSize: number;
  private readonly now: () => number;

  constructor(
    private readonly store: EventStore,
    private readonly db: Database,
    private readonly projections: readonly Projection[],
    private readonly options: ProjectionRunnerOptions = {},
  ) {
    const names = new Set<string>();
    for (const p of projections) {
      if (names.has(p.name)) throw new Error(`Two projections are named ${p.name}`);
      names.add(p.name);
      this.handles.set(p.name, p.eventTypes === "all" ? "all" : new Set(p.eventTypes));
    }
    this.batchSize = options.batchSize ?? 1000;
    this.now = options.now ?? Date.now;
  }

  /** Creates schemas, rebuilds projections whose version changed, and starts processing. */
  start(): void {
    if (this.loop) return;
    this.db.transaction(() => {
      for (const p of this.projections) {
        const row = readCheckpoint(this.db, p.name);
        if (row && row.version !== p.version) {
          this.options.logger?.info("projection version changed: rebuilding", { projection: p.name, from: row.version, to: p.version });
          this.dropTables(p);
        }
        this.db.exec(p.schema);
        if (!row || row.version !== p.version) writeCheckpoint(this.db, p.name, p.version, null, this.now());
        const position = row && row.version === p.version && row.position !== null ? BigInt(row.position) : null;
        this.checkpoints.set(p.name, position);
      }
    }).immediate();
    this.processed = this.minCheckpoint();
    this.loop = this.run();
  }

  /** Resets the named projections (all when none given): drops their tables and checkpoints. Call before start(). */
  reset(names?: readonly string[]): string[] {
    if (this.loop) throw new Error("reset() must run before start()");
    const chosen = names?.length ? names : this.projections.map((p) => p.name);
    for (const name of chosen) if (!this.projections.some((p) => p.name === name)) throw new Error(`Unknown projection ${name}`);
    this.db.transaction(() => {
      for (const p of this.projections) {
        if (!chosen.includes(p.name)) continue;
        this.dropTables(p);
        writeCheckpoint(this.db, p.name, p.version, null, this.now());
      }
    }).immediate();
    return [...chosen];
  }

  /**
   * Resolves once every projection has processed the event at `position` (read-your-writes).
   * Rejects with a 504-mapped TimeoutError after `timeoutMs`.
   */
  waitForPosition(position: bigint, timeoutMs = 5000, signal?: AbortSignal): Promise<void> {
    if (this.processed !== null && this.processed >= position) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const giveUp = (why: string) => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new TimeoutError(
          `The read models did not catch up with position ${position} ${why}`,
          { position: position.toString(), processed: this.processed?.toString() ?? null },
          "read_model_timeout",
        ));
      };
      const onAbort = () => giveUp("before the caller went away");
      const waiter: Waiter = {
        position,
        resolve: () => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      const timer = setTimeout(() => giveUp(`within ${timeoutMs} ms`), timeoutMs);
      this.waiters.push(waiter);
      if (signal?.aborted) onAbort();
      else signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Resolves once every event that existed when called has been processed. */
  async waitUntilCaughtUp(timeoutMs = 60_000): Promise<void> {
    const head = await this.store.headPosition();
    if (head !== null) await this.waitForPosition(head, timeoutMs);
  }

  get processedPosition(): bigint | null {
    return this.processed;
  }

  async status(): Promise<ProjectionStatus[]> {
    return projectionStatus(this.store, this.projections, (name) => this.checkpoints.get(name) ?? null, {
      // Nothing left to process means live, whether or not a batch has arrived since start.
      stateOf: (lagEvents) => (this.state === "catching_up" && lagEvents === 0 ? "live" : this.state),
      lastError: this.lastError, now: this.now(), lagCountLimit: this.options.lagCountLimit,
    });
  }

  get currentState(): ProjectionStatus["state"] {
    return this.state;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.state = "stopped";
    await this.subscription?.unsubscribe();
    await this.loop;
  }

  private async run(): Promise<void> {
    let backoffMs = 250;
    while (!this.stopped) {
      const from = this.minCheckpoint();
      this.subscription = this.store.subscribeToAll({ fromPosition: from ?? "start" });
      this.state = "catching_up";
      try {
        for (;;) {
          const batch = await this.subscription.nextBatch(this.batchSize);
          if (batch.length === 0) break; // unsubscribed
          this.applyBatch(batch);
          backoffMs = 250;
          if (this.subscription.caughtUp && this.state === "catching_up") this.state = "live";
          if (this.lastError) this.lastError = null;
        }
      } catch (err) {
        if (this.stopped) break;
        this.state = "error";
        this.lastError = (err as Error)?.message ?? String(err);
        this.options.logger?.error("projection runner failed; retrying", { error: this.lastError, retry_in_ms: backoffMs });
        await this.subscription.unsubscribe().catch(() => {});
        await Bun.sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, 30_000);
      }
    }
  }

  private applyBatch(batch: readonly RecordedEvent[]): void {
    const last = batch[batch.length - 1]!.position;
    const advanced: Array<[Projection, bigint]> = [];
    this.db.transaction(() => {
      for (const p of this.projections) {
        const checkpoint = this.checkpoints.get(p.name) ?? null;
        if (checkpoint !== null && checkpoint >= last) continue;
        const handles = this.handles.get(p.name)!;
        const relevant = batch.filter((e) => (checkpoint === null || e.position > checkpoint) && (handles === "all" || handles.has(e.type)));
        if (p.applyBatch) p.applyBatch(this.db, relevant);
        else for (const event of relevant) p.apply(this.db, event);
        writeCheckpoint(this.db, p.name, p.version, last, this.now());
        advanced.push([p, last]);
      }
    }).immediate();
    // Only after the commit: the in-memory view never runs ahead of what is on disk.
    for (const [p, position] of advanced) this.checkpoints.set(p.name, position);
    this.processed = this.minCheckpoint();
    this.releaseWaiters();
  }

  private releaseWaiters(): void {
    const processed = this.processed;
    if (processed === null || this.waiters.length === 0) return;
    const ready = this.waiters.filter((w) => w.position <= processed);
    if (ready.length === 0) return;
    this.waiters = this.waiters.filter((w) => w.position > processed);
    for (const w of ready) w.resolve();
  }

  private minCheckpoint(): bigint | null {
    let min: bigint | undefined;
    for (const p of this.projections) {
      const c = this.checkpoints.get(p.name) ?? null;
      if (c === null) return null;
      if (min === undefined || c < min) min = c;
    }
    return min ?? null;
  }

  private dropTables(p: Projection): void {
    for (const table of p.tables) this.db.exec(`DROP TABLE IF EXISTS ${quoteIdent(table)}`);
  }
}
