/**
 * What the projections share for `UserErased` (src/domain/erasure/events.ts): the ids of the erased
 * streams by kind, and a batch fold that handles each erasure at its place in the batch, so rows a
 * batch folds before an erasure are written (and then dropped) before it, never written back after.
 *
 * Every projection that keeps rows made from a user's streams drops them here. A rebuild never sees
 * those streams (the store no longer has them), so it finds nothing to drop: both ways give the same
 * tables.
 */
import type { RecordedEvent } from "../src/eventstore/port.ts";
import { erasureEvents } from "../src/domain/erasure/events.ts";
import { categoryOf, idOf } from "../src/domain/streams.ts";

export const USER_ERASED = "UserErased";

/** The categories of the streams an erasure removes (src/app/erasure.ts). */
export const ERASABLE_CATEGORIES: ReadonlySet<string> = new Set(["session", "job", "file", "memory", "credentials", "idempotency"]);

export interface Erased {
  sessions: string[];
  jobs: string[];
  files: string[];
  memories: string[];
  /** Every erased stream's name. */
  streams: string[];
  /** Events of each type the erasure removed (as counted when it ran; informative: projections count their own). */
  eventTypes: Record<string, number>;
}

export function erasedOf(e: RecordedEvent): Erased {
  const event = erasureEvents.decode(e);
  const out: Erased = { sessions: [], jobs: [], files: [], memories: [], streams: [], eventTypes: event.data.event_types };
  for (const { stream } of event.data.streams) {
    out.streams.push(stream);
    const category = categoryOf(stream);
    if (category === "session") out.sessions.push(idOf(stream));
    else if (category === "job") out.jobs.push(idOf(stream));
    else if (category === "file") out.files.push(idOf(stream));
    else if (category === "memory") out.memories.push(idOf(stream));
  }
  return out;
}

/**
 * Runs `segment` over the events between erasures and `erase` at each erasure, in order. With
 * `foldErasures`, each UserErased also goes to `segment` after its erasure (a projection of every event).
 */
export function aroundErasures(
  events: readonly RecordedEvent[], segment: (events: readonly RecordedEvent[]) => void, erase: (erased: Erased) => void, foldErasures = false,
): void {
  let start = 0;
  for (let i = 0; i < events.length; i++) {
    if (events[i]!.type !== USER_ERASED) continue;
    if (i > start) segment(events.slice(start, i));
    erase(erasedOf(events[i]!));
    start = foldErasures ? i : i + 1;
  }
  if (start === 0) segment(events);
  else if (start < events.length) segment(events.slice(start));
}

/** `DELETE … WHERE column IN (…)` in chunks (SQLite caps a statement's parameters). */
export function deleteIn(db: import("bun:sqlite").Database, table: string, column: string, values: readonly string[]): void {
  for (let i = 0; i < values.length; i += 500) {
    const chunk = values.slice(i, i + 500);
    db.query(`DELETE FROM ${table} WHERE ${column} IN (${chunk.map(() => "?").join(", ")})`).run(...chunk);
  }
}
