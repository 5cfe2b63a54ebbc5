/**
 * The projection runner: one catch-up subscription to `$all`, feeding every registered projection.
 *
 * Each batch of events is applied in one SQLite transaction that also advances every projection's
 * checkpoint, so a crash can never leave a read model ahead of or behind its checkpoint. Projections
 * may sit at different checkpoints (one just reset for a rebuild, the others current): the runner
 * subscribes from the lowest and each projection skips what it has already seen.
 */
import type { Database } from "bun:sqlite";
import { TimeoutError, UnavailableError } from "../core/errors.ts";
import type { Logger } from "../core/logger.ts";
import type { EventStore, RecordedEvent, Subscription } from "../eventstore/port.ts";
import type { Projection } from "./projection.ts";
import { quoteIdent, readCheckpoint, writeCheckpoint } from "./readModelDb.ts";
import { removeStaleShadows, ShadowBuild, shadowPathFor, type RebuildStatus } from "./shadowRebuild.ts";

export interface ProjectionStatus {
  name: string;
  version: number;
  /**
   * `rebuilding`: the projection's version changed since its tables were built; they are kept, frozen and
   * not served (the process is not ready), while the new version is built beside them.
   */
  state: "starting" | "catching_up" | "live" | "rebuilding" | "error" | "stopped";
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
  options: { stateOf: (lagEvents: number, name: string) => ProjectionStatus["state"]; lastError: string | null; now: number; lagCountLimit?: number },
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
      state: options.stateOf(lag.count, p.name),
      checkpoint: checkpoint?.toString() ?? null,
      lag_events: lag.count,
      lag_events_capped: lag.capped,
      lag_ms: lag.oldest === null ? 0 : Math.max(0, options.now - lag.oldest),
      last_error: options.lastError,
    });
  }
  return out;
}

/** Tries of a failing version rebuild before it waits for an operator (backing off 1 s, 2 s, … 64 s). */
const VERSION_REBUILD_ATTEMPTS = 8;
/** SQLite's default WAL auto-checkpoint, in pages. */
const WAL_AUTOCHECKPOINT_PAGES = 1000;
/** While folding a backlog: about 256 MB of WAL between checkpoints. */
const BULK_CHECKPOINT_PAGES = 65_536;

export interface ProjectionRunnerOptions {
  batchSize?: number;
  now?: () => number;
  logger?: Logger;
  /** Status counts lag up to this many events; beyond, it reports the cap. */
  lagCountLimit?: number;
  /**
   * What a changed projection version does at start: `background` (the default) keeps the old tables
   * serving and rebuilds beside them; `blocking` drops them and refolds live, start waiting for it (the
   * CLI, which has the read models to itself).
   */
  versionRebuild?: "background" | "blocking";
  /** The first wait before a failed version rebuild is tried again (doubling, at most a minute). */
  versionRetryBaseMs?: number;
  /** Events per batch an online rebuild folds between yields to the event loop. */
  rebuildBatchSize?: number;
}

/**
 * Refuses (503 read_models_rebuilding) a read of read models waiting for their version rebuild: their
 * old tables are not what this code reads. For reads outside the data plane's readiness gate.
 */
export function requireServing(runner: Pick<ProjectionRunner, "rebuildingAtStart">, ...names: string[]): void {
  const waiting = runner.rebuildingAtStart.filter((name) => names.includes(name));
  if (waiting.length) {
    throw new UnavailableError(`Read models are being rebuilt for this version (${waiting.join(", ")}); retry once they are ready`,
      { projections: waiting }, "read_models_rebuilding");
  }
}

/** Thrown by `rebuild` for a name no projection has. */
export class UnknownProjectionError extends Error {}
/** Thrown by `rebuild` while one already runs for that projection. */
export class RebuildInProgressError extends Error {}
/** Thrown by `rebuild` once the runner is stopping. */
export class RunnerStoppedError extends Error {}

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
  /** Projections not folded live: their version changed and their rebuild has not swapped in yet. */
  private readonly frozen = new Set<string>();
  /**
   * The highest position the live subscription has handed over. Every event the runner applies from
   * now on comes after it: a shadow built at least this far can take over with nothing missed.
   */
  private deliveredUpTo: bigint | null = null;
  private readonly rebuilds = new Map<string, RebuildStatus>();
  private readonly rebuildsRunning = new Map<string, Promise<void>>();
  private readonly versionRetries = new Map<string, number>();
  private bulk = false;
  /** Why a version rebuild was given up, until one succeeds. */
  private versionFailure: string | null = null;
  /** A batch asked of the subscription whose answer came too late for the batch it was asked for. */
  private pendingBatch: Promise<RecordedEvent[]> | undefined;
  private readonly retryTimers = new Set<ReturnType<typeof setTimeout>>();

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

  /**
   * Creates schemas and starts processing. A projection whose version changed is rebuilt: in the
   * background by default (its old tables frozen until the new ones swap in; see rebuildingAtStart), or
   * dropped and refolded live with `versionRebuild: "blocking"`.
   */
  start(): void {
    if (this.loop) return;
    const background = (this.options.versionRebuild ?? "background") === "background";
    if (background) removeStaleShadows(this.db.filename);
    // Read models already built here: a projection new to them is built beside them, like a new version
    // (a fresh read-model file is a first fold, which start waits for).
    const builtBefore = (this.db.query("SELECT count(*) AS n FROM projection_checkpoints").get() as { n: number }).n > 0;
    this.db.transaction(() => {
      for (const p of this.projections) {
        const row = readCheckpoint(this.db, p.name);
        const changed = row !== undefined && row.version !== p.version;
        if (background && (changed || (row === undefined && builtBefore))) {
          this.options.logger?.info(changed ? "projection version changed: rebuilding in the background" : "new projection: building it in the background",
            { projection: p.name, from: row?.version ?? null, to: p.version });
          // A new one gets its (empty) tables, so nothing that reads them meanwhile meets a missing table.
          if (!changed) this.db.exec(p.schema);
          this.frozen.add(p.name);
          this.checkpoints.set(p.name, null);
          continue;
        }
        if (changed) {
          this.options.logger?.info("projection version changed: rebuilding", { projection: p.name, from: row.version, to: p.version });
          this.dropTables(p);
        }
        this.db.exec(p.schema);
        if (!row || changed) writeCheckpoint(this.db, p.name, p.version, null, this.now());
        const position = row && !changed && row.position !== null ? BigInt(row.position) : null;
        this.checkpoints.set(p.name, position);
      }
    }).immediate();
    this.processed = this.minCheckpoint();
    this.loop = this.run();
    for (const name of this.frozen) this.rebuild(name, "version_changed");
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
      stateOf: (lagEvents, name) => this.stateOf(name, lagEvents),
      lastError: this.lastError ?? this.versionFailure, now: this.now(), lagCountLimit: this.options.lagCountLimit,
    });
  }

  private stateOf(name: string, lagEvents: number): ProjectionStatus["state"] {
    if (this.frozen.has(name)) return (this.versionRetries.get(name) ?? 0) > VERSION_REBUILD_ATTEMPTS ? "error" : "rebuilding";
    // Nothing left to process means live, whether or not a batch has arrived since start.
    return this.state === "catching_up" && lagEvents === 0 ? "live" : this.state;
  }

  get currentState(): ProjectionStatus["state"] {
    return this.state;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.state = "stopped";
    for (const timer of this.retryTimers) clearTimeout(timer);
    await this.subscription?.unsubscribe();
    await this.loop;
    // A rebuild cut short leaves the live tables as they were; its shadow goes.
    await Promise.allSettled([...this.rebuildsRunning.values()]);
  }

  /** The latest rebuild of a projection (running or finished), if it had one since start. */
  rebuildOf(name: string): RebuildStatus | null {
    const status = this.rebuilds.get(name);
    return status ? { ...status } : null;
  }

  /**
   * The projections whose version changed at start and whose new tables are not swapped in yet. Their
   * old tables are not what this code reads, so the process is not ready to serve until this is empty
   * (the data plane answers 503 read_models_rebuilding meanwhile, and GET /health/ready 503).
   */
  get rebuildingAtStart(): readonly string[] {
    return [...this.frozen];
  }

  /** Resolves once no projection is waiting for its version rebuild (at once when none was). */
  async whenReady(): Promise<void> {
    while (this.frozen.size && !this.stopped) {
      await Promise.race([...this.frozen].map((name) => this.rebuildsRunning.get(name) ?? Bun.sleep(100)));
    }
  }

  /** Resolves with the rebuild's final status once the running one (if any) has ended. */
  async whenRebuilt(name: string): Promise<RebuildStatus | null> {
    await this.rebuildsRunning.get(name);
    return this.rebuildOf(name);
  }

  /**
   * Starts an online rebuild of one projection and answers its status at once. The projection's whole
   * history is folded into a shadow file while its live tables keep serving (and, unless its version
   * changed, keep being updated); once the shadow has caught up with everything the live runner has
   * seen, it replaces the live tables in one transaction. Reads see the old tables or the new, never a
   * half-built model.
   */
  rebuild(name: string, reason: RebuildStatus["reason"] = "requested"): RebuildStatus {
    const p = this.projections.find((x) => x.name === name);
    if (!p) throw new UnknownProjectionError(`No projection is named ${name}`);
    if (this.rebuildsRunning.has(name)) throw new RebuildInProgressError(`A rebuild of ${name} is already running`);
    if (this.stopped) throw new RunnerStoppedError("The projection runner is stopping: no rebuild can start");
    const status: RebuildStatus = {
      object: "projection.rebuild", projection: name, reason, state: "running", processed_events: 0, total_events: 0,
      progress: 0, eta_ms: null, started_at: new Date(this.now()).toISOString(), finished_at: null, position: null, error: null,
    };
    this.rebuilds.set(name, status);
    const run = this.runRebuild(p, status).finally(() => this.rebuildsRunning.delete(name));
    this.rebuildsRunning.set(name, run);
    return { ...status };
  }

  private async runRebuild(p: Projection, status: RebuildStatus): Promise<void> {
    const log = this.options.logger;
    const started = performance.now();
    log?.info("projection rebuild started", { projection: p.name, reason: status.reason });
    let shadow: ShadowBuild | undefined;
    try {
      const virtual = p.tables.filter((t) => this.isVirtualTable(t));
      if (virtual.length && !p.refillIndexes) throw new Error(`${p.name} has virtual tables (${virtual.join(", ")}) but no refillIndexes to fill them after a copy`);
      shadow = new ShadowBuild(p, shadowPathFor(this.db.filename, p.name));
      let head = await this.store.headPosition();
      let headReadAt = performance.now();
      const report = () => {
        const { progress, total, etaMs } = shadow!.estimate(head);
        Object.assign(status, { processed_events: shadow!.processed, total_events: total, progress, eta_ms: etaMs });
      };
      for (;;) {
        await shadow.catchUp(this.store, this.options.rebuildBatchSize ?? 2000, () => {
          report();
          if (performance.now() - headReadAt > 250) {
            headReadAt = performance.now();
            void this.store.headPosition().then((h) => (head = h), () => {});
          }
          return this.stopped;
        });
        if (this.stopped) throw new Error("stopped before the rebuild finished");
        // Caught up with the store as of a moment ago; the swap needs it caught up with the live runner.
        if (this.canTakeOver(shadow.position)) break;
      }
      status.state = "swapping";
      this.swapIn(p, shadow);
      this.versionRetries.delete(p.name);
      if (this.frozen.size === 0) this.versionFailure = null;
      Object.assign(status, {
        state: "done", progress: 1, eta_ms: 0, processed_events: shadow.processed, total_events: shadow.processed,
        position: shadow.position?.toString() ?? null, finished_at: new Date(this.now()).toISOString(),
      });
      log?.info("projection rebuild swapped in", { projection: p.name, events: shadow.processed, position: status.position, seconds: Number(((performance.now() - started) / 1000).toFixed(3)) });
    } catch (err) {
      Object.assign(status, { state: "failed", error: (err as Error)?.message ?? String(err), finished_at: new Date(this.now()).toISOString() });
      if (!this.stopped) log?.error("projection rebuild failed; the live tables are unchanged", { projection: p.name, error: err as Error });
    } finally {
      shadow?.discard();
    }
    // A version rebuild must succeed for the process to serve: try again, backing off, until stopped.
    if (status.state === "failed" && this.frozen.has(p.name) && !this.stopped) this.retryVersionRebuild(p.name, status);
  }

  private retryVersionRebuild(name: string, failed: RebuildStatus): void {
    const attempt = (this.versionRetries.get(name) ?? 0) + 1;
    this.versionRetries.set(name, attempt);
    if (attempt > VERSION_REBUILD_ATTEMPTS) {
      // Failing every time is a fault to fix, not to retry forever (each attempt reads the whole store).
      // Not ready meanwhile; /health reports it; POST /v1/admin/projections/{name}/rebuild tries again.
      this.versionFailure = `the version rebuild of ${name} failed ${attempt - 1} times: ${failed.error}`;
      this.options.logger?.error("version rebuild given up; the process stays not ready until a rebuild succeeds", { projection: name, attempts: attempt - 1, error: failed.error });
      return;
    }
    const delayMs = Math.min((this.options.versionRetryBaseMs ?? 1000) * 2 ** (attempt - 1), 60_000);
    this.options.logger?.warn("retrying the version rebuild", { projection: name, attempt, in_ms: delayMs, error: failed.error });
    const timer = setTimeout(() => {
      this.retryTimers.delete(timer);
      if (!this.stopped && this.frozen.has(name) && !this.rebuildsRunning.has(name)) this.rebuild(name, "version_changed");
    }, delayMs);
    this.retryTimers.add(timer);
  }

  /** A shadow at `position` misses nothing if every event the live runner applies from now on is after it. */
  private canTakeOver(position: bigint | null): boolean {
    return this.deliveredUpTo === null || (position !== null && position >= this.deliveredUpTo);
  }

  /**
   * Replaces a projection's live tables with its shadow's, in one transaction with its checkpoint. It is
   * synchronous, like every read of the read models in this process (one connection), so no read can
   * fall between the drop and the copy.
   */
  private swapIn(p: Projection, shadow: ShadowBuild): void {
    const alias = "rebuild_shadow";
    this.db.query(`ATTACH DATABASE ? AS ${alias}`).run(shadow.path);
    try {
      this.db.transaction(() => {
        this.dropTables(p);
        this.db.exec(p.schema);
        for (const table of p.tables) {
          if (this.isVirtualTable(table)) continue; // filled by refillIndexes, from the tables copied here
          const columns = (this.db.query(`PRAGMA main.table_info(${quoteIdent(table)})`).all() as Array<{ name: string }>)
            .map((c) => quoteIdent(c.name)).join(", ");
          this.db.exec(`INSERT INTO main.${quoteIdent(table)} (${columns}) SELECT ${columns} FROM ${alias}.${quoteIdent(table)}`);
        }
        p.refillIndexes?.(this.db);
        writeCheckpoint(this.db, p.name, p.version, shadow.position, this.now());
      }).immediate();
    } finally {
      this.db.exec(`DETACH DATABASE ${alias}`);
    }
    this.checkpoints.set(p.name, shadow.position);
    this.frozen.delete(p.name);
    this.processed = this.minCheckpoint();
    this.releaseWaiters();
  }

  private isVirtualTable(table: string): boolean {
    const row = this.db.query("SELECT sql FROM main.sqlite_master WHERE type = 'table' AND name = ?").get(table) as { sql: string | null } | null;
    return /^\s*CREATE\s+VIRTUAL\s+TABLE/i.test(row?.sql ?? "");
  }

  private async run(): Promise<void> {
    let backoffMs = 250;
    while (!this.stopped) {
      const from = this.minCheckpoint();
      this.pendingBatch = undefined; // asked of a subscription that is gone
      // Where the backlog ends: not every store says when its subscription caught up.
      const backlogEnd = await this.store.headPosition().catch(() => null);
      if (this.stopped) break;
      this.subscription = this.store.subscribeToAll({ fromPosition: from ?? "start" });
      if (from !== null && (this.deliveredUpTo === null || from > this.deliveredUpTo)) this.deliveredUpTo = from;
      this.state = "catching_up";
      try {
        for (;;) {
          const batch = await this.nextBatch();
          if (batch.length === 0) break; // unsubscribed
          // A backlog arrives a page at a time: fold what follows at once (up to batchSize) in the same
          // transaction. Only what is there within a moment: a store may never say it caught up.
          const inBacklog = () => backlogEnd !== null && batch[batch.length - 1]!.position < backlogEnd && !this.subscription!.caughtUp;
          while (batch.length < this.batchSize && inBacklog()) {
            const more = this.nextBatch(this.batchSize - batch.length);
            const got = await Promise.race([more, Bun.sleep(2).then(() => null)]);
            if (got === null) {
              this.pendingBatch = more; // not lost: the next round starts with it
              more.catch(() => {}); // a failure surfaces when it is awaited, not as an unhandled rejection
              break;
            }
            if (got.length === 0) break;
            for (const e of got) batch.push(e);
          }
          // Before the backlog's end, fold without checkpointing the WAL on the way (each checkpoint is
          // an fsync), and checkpoint once at its end.
          const backlogLeft = inBacklog();
          if (!this.bulk && backlogLeft) this.setBulk(true);
          this.applyBatch(batch, this.bulk && !backlogLeft);
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

  /**
   * Bulk folding: the WAL is not checkpointed every WAL_AUTOCHECKPOINT_PAGES (SQLite's default, and an
   * fsync each) but at most every BULK_CHECKPOINT_PAGES, and once when the backlog ends. Durability is
   * what synchronous=NORMAL gives either way: the WAL is synced at checkpoints only.
   */
  private setBulk(on: boolean): void {
    this.bulk = on;
    this.db.exec(`PRAGMA wal_autocheckpoint = ${on ? BULK_CHECKPOINT_PAGES : WAL_AUTOCHECKPOINT_PAGES}`);
    if (!on) this.db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  }

  /** The subscription's next batch: one asked for earlier and not awaited to the end first. */
  private nextBatch(max = this.batchSize): Promise<RecordedEvent[]> {
    const pending = this.pendingBatch;
    this.pendingBatch = undefined;
    return pending ?? this.subscription!.nextBatch(max);
  }

  private applyBatch(batch: readonly RecordedEvent[], endsBacklog = false): void {
    const last = batch[batch.length - 1]!.position;
    const advanced: Array<[Projection, bigint]> = [];
    this.db.transaction(() => {
      for (const p of this.projections) {
        if (this.frozen.has(p.name)) continue;
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
    if (this.deliveredUpTo === null || last > this.deliveredUpTo) this.deliveredUpTo = last;
    // Before anyone waiting is told: the backlog counts as folded once it is checkpointed.
    if (endsBacklog) this.setBulk(false);
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
    let live = 0;
    for (const p of this.projections) {
      if (this.frozen.has(p.name)) continue; // frozen: read-your-writes waits for the live ones only
      live++;
      const c = this.checkpoints.get(p.name) ?? null;
      if (c === null) return null;
      if (min === undefined || c < min) min = c;
    }
    // Every one frozen: none lags, so what the subscription has handed over counts as processed.
    if (live === 0) return this.deliveredUpTo;
    return min ?? null;
  }

  private dropTables(p: Projection): void {
    for (const table of p.tables) this.db.exec(`DROP TABLE IF EXISTS ${quoteIdent(table)}`);
  }
}
