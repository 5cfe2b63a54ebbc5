/**
 * Online rebuild, the building half: folds the whole store into a projection's tables in a separate
 * SQLite file (the shadow) while the live tables keep serving. The runner swaps the shadow in once it
 * has caught up with what the live runner has seen (ProjectionRunner.rebuild).
 *
 * The shadow is disposable scratch: no journal, no fsync. A crash mid-build leaves a file the next start
 * removes (`removeStaleShadows`).
 */
import { Database } from "bun:sqlite";
import { readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import type { EventStore, RecordedEvent } from "../eventstore/port.ts";
import type { Projection } from "./projection.ts";

export interface RebuildStatus {
  object: "projection.rebuild";
  projection: string;
  /** Why it runs: an operator asked, or the projection's version changed since the tables were built. */
  reason: "requested" | "version_changed";
  state: "running" | "swapping" | "done" | "failed";
  /** Events read from the store so far (all of them, not only those the projection handles). */
  processed_events: number;
  /** Events the rebuild reads in all, estimated from positions while it runs; exact once done. */
  total_events: number;
  /** 0..1 through the store (by position); 1 once done. */
  progress: number;
  /** Time left at the rate so far; null until there is a rate to go by. */
  eta_ms: number | null;
  started_at: string;
  finished_at: string | null;
  /** The position the swapped tables were built up to (a decimal string; positions are bigints). */
  position: string | null;
  error: string | null;
}

/** Where a read-model file's shadows live: beside it, or in the temp folder for an in-memory one. */
export function shadowPathFor(readModelPath: string, projection: string): string {
  const nonce = `${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  if (readModelPath === "" || readModelPath === ":memory:") return join(tmpdir(), `agentry-rebuild-${projection}-${nonce}.sqlite`);
  return `${readModelPath}.rebuild-${projection}-${nonce}`;
}

/** Removes shadows a stopped process left beside `readModelPath` (never those of a live in-memory one). */
export function removeStaleShadows(readModelPath: string): void {
  if (readModelPath === "" || readModelPath === ":memory:") return;
  const prefix = `${basename(readModelPath)}.rebuild-`;
  let names: string[];
  try {
    names = readdirSync(dirname(readModelPath));
  } catch {
    return;
  }
  for (const name of names) if (name.startsWith(prefix)) rmSync(join(dirname(readModelPath), name), { force: true });
}

/** The shadow of one projection being built: its file, its fold position and its progress. */
export class ShadowBuild {
  readonly db: Database;
  /** Last position folded in; null before the first event. */
  position: bigint | null = null;
  processed = 0;
  private readonly handles: ReadonlySet<string> | "all";
  private firstPosition: bigint | null = null;
  private readonly startedAt = performance.now();

  constructor(readonly projection: Projection, readonly path: string) {
    this.db = new Database(path, { create: true, strict: true });
    // Scratch: if the process dies the file is thrown away, so nothing is worth a journal or an fsync.
    this.db.exec("PRAGMA journal_mode = OFF");
    this.db.exec("PRAGMA synchronous = OFF");
    this.db.exec(projection.schema);
    this.handles = projection.eventTypes === "all" ? "all" : new Set(projection.eventTypes);
  }

  /**
   * Reads and folds the events after `position`, `batchSize` at a time, yielding between batches so
   * requests keep being served. Resolves when the store has nothing more to give (at that moment).
   */
  async catchUp(store: EventStore, batchSize: number, shouldStop: () => boolean): Promise<void> {
    for (;;) {
      if (shouldStop()) return;
      const batch: RecordedEvent[] = [];
      // readAll's start is inclusive: skip the event already folded.
      for await (const e of store.readAll({ fromPosition: this.position ?? "start", maxCount: batchSize + 1 })) {
        if (this.position !== null && e.position <= this.position) continue;
        batch.push(e);
        if (batch.length >= batchSize) break;
      }
      if (batch.length === 0) return;
      this.fold(batch);
      await new Promise((resolve) => setImmediate(resolve));
      if (batch.length < batchSize) return;
    }
  }

  private fold(batch: readonly RecordedEvent[]): void {
    const relevant = this.handles === "all" ? batch : batch.filter((e) => (this.handles as ReadonlySet<string>).has(e.type));
    const p = this.projection;
    this.db.transaction(() => {
      if (p.applyBatch) p.applyBatch(this.db, relevant);
      else for (const event of relevant) p.apply(this.db, event);
    })();
    this.firstPosition ??= batch[0]!.position;
    this.position = batch[batch.length - 1]!.position;
    this.processed += batch.length;
  }

  /** Progress by position against the store's head now, the events that implies, and the time left. */
  estimate(head: bigint | null): { progress: number; total: number; etaMs: number | null } {
    if (this.position === null || this.firstPosition === null || head === null) return { progress: 0, total: this.processed, etaMs: null };
    const span = Number(head - this.firstPosition);
    const progress = span <= 0 ? 1 : Math.min(1, Math.max(0, Number(this.position - this.firstPosition) / span));
    const total = progress > 0 ? Math.max(this.processed, Math.round(this.processed / progress)) : this.processed;
    const elapsed = performance.now() - this.startedAt;
    const etaMs = progress > 0 && elapsed > 200 ? Math.round((elapsed * (1 - progress)) / progress) : null;
    return { progress, total, etaMs };
  }

  /** Closes and deletes the shadow file. */
  discard(): void {
    try {
      this.db.close();
    } catch {
      // already closed
    }
    for (const suffix of ["", "-journal", "-wal", "-shm"]) rmSync(`${this.path}${suffix}`, { force: true });
  }
}
