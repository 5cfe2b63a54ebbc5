/**
 * What a projection is: a named, versioned, deterministic fold of events into SQLite tables.
 *
 * `apply` runs inside the runner's transaction, together with the checkpoint update, so a read model
 * and its checkpoint never disagree. It must depend on nothing but the event and the tables it owns
 * (no clock, no randomness, no other I/O): that is what makes a rebuild give exactly what live
 * processing gave.
 */
import type { Database } from "bun:sqlite";
import type { RecordedEvent } from "../eventstore/port.ts";

export interface Projection {
  /** Stable name; the checkpoint row is keyed by it. */
  readonly name: string;
  /** Bump when the schema or the fold changes: the projection then rebuilds itself on start. */
  readonly version: number;
  /** Event types `apply` handles ("all" for every event); other events only advance the checkpoint. */
  readonly eventTypes: readonly string[] | "all";
  /** Idempotent DDL creating the tables and indexes the projection owns. */
  readonly schema: string;
  /** The tables it owns, dropped on rebuild. */
  readonly tables: readonly string[];
  apply(db: Database, event: RecordedEvent): void;
  /**
   * Optional: folds a whole batch at once (only the events it handles, in order). It must leave exactly
   * what applying them one by one would, whatever the batch boundaries — the rebuild-equivalence tests
   * hold it to that — and lets a projection aggregate in memory before writing.
   */
  applyBatch?(db: Database, events: readonly RecordedEvent[]): void;
  /**
   * Required when `tables` holds a virtual table (an FTS5 index): an online rebuild copies the ordinary
   * tables from its shadow row by row, which a contentless index cannot be (it answers its own columns
   * with nulls), and then calls this to fill the virtual tables from the ordinary ones just copied.
   */
  refillIndexes?(db: Database): void;
}
