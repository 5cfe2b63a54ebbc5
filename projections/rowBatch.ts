/**
 * Batch folding for projections with one row per entity: group the batch's events by entity, load each
 * entity's row once (unless the batch creates it), fold the events over it in memory with the
 * projection's pure row function, and write each row once. Equivalent to applying event by event.
 */
import type { Database } from "bun:sqlite";
import type { RecordedEvent } from "../src/eventstore/port.ts";

export interface RowFold<Row> {
  keyOf(e: RecordedEvent): string | null;
  load(db: Database, key: string): Row | null;
  evolve(row: Row | null, e: RecordedEvent): Row | null;
  save(db: Database, row: Row): void;
}

export function foldRows<Row>(db: Database, events: readonly RecordedEvent[], fold: RowFold<Row>): void {
  const rows = new Map<string, Row | null>();
  for (const e of events) {
    const key = fold.keyOf(e);
    if (key === null) continue;
    const current = rows.has(key) ? rows.get(key)! : fold.load(db, key);
    rows.set(key, fold.evolve(current, e));
  }
  for (const row of rows.values()) if (row) fold.save(db, row);
}
