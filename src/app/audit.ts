/**
 * Audit reads: events exactly as stored, with their full metadata, read from the event store itself
 * (never a read model) and scoped to one data partition (an app's live data, or its test data).
 *
 * - A session's complete history: its own stream and each of its jobs' streams (named by the
 *   session's `MessageSent` events), merged in commit order (global position).
 * - One stream, by revision.
 * - `$all`, by position, showing only the partition's events (each event carries `app_id`), and none
 *   of an erased stream's: EventStoreDB keeps a tombstoned stream's events in `$all` until a scavenge
 *   has rewritten their chunk (never the chunk being written), so the partition's erasure record says
 *   which events are gone whatever the store still holds.
 *
 * Every read is an async generator pulling from the store page by page, so an export (NDJSON) is
 * streamed with bounded memory, and a JSON page stops as soon as it is full.
 */
import { NotFoundError, ValidationError } from "../core/errors.ts";
import { OCCURRED_AT_KEY, SCHEMA_VERSION_KEY } from "../core/eventContract.ts";
import { erasureStream, jobStream, sessionStream } from "../domain/streams.ts";
import { StreamDeletedError, StreamNotFoundError } from "../eventstore/errors.ts";
import type { EventStore, RecordedEvent } from "../eventstore/port.ts";

/** Events read from one stream at a time (bounded memory per stream). */
const CHUNK = 256;

/** An event as an auditor sees it: everything stored, nothing filtered. */
export interface AuditEvent {
  object: "audit_event";
  stream: string;
  revision: number;
  /** The event's global position in `$all`, as a decimal string (opaque: compare, never subtract). */
  position: string;
  id: string;
  type: string;
  schema_version: number;
  occurred_at: string;
  recorded_at: string;
  app_id: string | null;
  actor: string | null;
  attributed_user_id: string | null;
  correlation_id: string | null;
  causation_id: string | null;
  request_id: string | null;
  data: unknown;
  metadata: Record<string, unknown>;
}

const str = (v: unknown): string | null => (typeof v === "string" ? v : null);

export function auditView(e: RecordedEvent): AuditEvent {
  const m = e.metadata as Record<string, unknown>;
  const at = typeof m[OCCURRED_AT_KEY] === "number" ? (m[OCCURRED_AT_KEY] as number) : e.created.getTime();
  return {
    object: "audit_event", stream: e.streamId, revision: Number(e.revision), position: e.position.toString(), id: e.id, type: e.type,
    schema_version: typeof m[SCHEMA_VERSION_KEY] === "number" ? (m[SCHEMA_VERSION_KEY] as number) : 1,
    occurred_at: new Date(at).toISOString(), recorded_at: e.created.toISOString(),
    app_id: str(m.app_id), actor: str(m.actor), attributed_user_id: str(m.attributed_user_id),
    correlation_id: str(m.correlationId ?? m.$correlationId), causation_id: str(m.causationId ?? m.$causationId), request_id: str(m.request_id),
    data: e.data, metadata: m,
  };
}

/** The app (data partition) a stream belongs to: its first event's `app_id`; null when missing or unowned. */
export async function streamOwner(store: EventStore, stream: string): Promise<string | null> {
  try {
    for await (const e of store.readStream(stream, { fromRevision: "start", maxCount: 1 })) return str(e.metadata.app_id);
  } catch (err) {
    if (err instanceof StreamNotFoundError || err instanceof StreamDeletedError) return null;
    throw err;
  }
  return null;
}

/** A stream's events from `fromRevision` on, read a chunk at a time; nothing for a missing stream. */
async function* streamFrom(store: EventStore, stream: string, fromRevision: bigint): AsyncGenerator<RecordedEvent> {
  let next = fromRevision;
  for (;;) {
    const chunk: RecordedEvent[] = [];
    try {
      for await (const e of store.readStream(stream, { fromRevision: next, maxCount: CHUNK })) chunk.push(e);
    } catch (err) {
      if (err instanceof StreamNotFoundError || err instanceof StreamDeletedError) return;
      throw err;
    }
    yield* chunk;
    if (chunk.length < CHUNK) return;
    next = chunk[chunk.length - 1]!.revision + 1n;
  }
}

/**
 * One stream of the partition `appId`, from `fromRevision`. 404 `stream_not_found` for a stream that
 * does not exist or belongs to another partition (the same answer: another app's streams do not exist
 * for the caller).
 */
export async function auditStream(store: EventStore, appId: string, stream: string, fromRevision: bigint): Promise<AsyncGenerator<RecordedEvent>> {
  if ((await streamOwner(store, stream)) !== appId) throw new NotFoundError(`No stream ${stream}`, { param: "stream_name" }, "stream_not_found");
  return streamFrom(store, stream, fromRevision);
}

/** The session's stream and its jobs' streams, checked to be the partition's; 404 `session_not_found` otherwise. */
export async function sessionStreams(store: EventStore, appId: string, sessionId: string): Promise<string[]> {
  const stream = sessionStream(sessionId);
  if ((await streamOwner(store, stream)) !== appId) throw new NotFoundError("Session not found", { param: "session_id" }, "session_not_found");
  const jobs: string[] = [];
  for await (const e of streamFrom(store, stream, 0n)) {
    if (e.type === "MessageSent") {
      const jobId = (e.data as { job_id?: unknown }).job_id;
      if (typeof jobId === "string" && !jobs.includes(jobId)) jobs.push(jobId);
    }
  }
  return [stream, ...jobs.map(jobStream)];
}

/**
 * The events of `streams` merged by global position (commit order), those after `afterPosition`
 * only. A k-way merge of chunked reads: each stream holds at most one chunk in memory.
 */
export async function* mergedHistory(store: EventStore, appId: string, streams: readonly string[], afterPosition: bigint | null): AsyncGenerator<RecordedEvent> {
  const readers = streams.map((s) => ({ it: streamFrom(store, s, 0n), head: undefined as RecordedEvent | undefined, done: false }));
  const advance = async (r: (typeof readers)[number]) => {
    for (;;) {
      const n = await r.it.next();
      if (n.done) {
        r.done = true;
        r.head = undefined;
        return;
      }
      // Skipping what the cursor has passed (positions grow with revisions within a stream).
      if (afterPosition !== null && n.value.position <= afterPosition) continue;
      r.head = n.value;
      return;
    }
  };
  try {
    await Promise.all(readers.map(advance));
    for (;;) {
      let min: (typeof readers)[number] | undefined;
      for (const r of readers) if (r.head && (!min || r.head.position < min.head!.position)) min = r;
      if (!min) return;
      const e = min.head!;
      await advance(min);
      if (e.metadata.app_id === appId) yield e;
    }
  } finally {
    await Promise.all(readers.filter((r) => !r.done).map((r) => r.it.return(undefined)));
  }
}

/**
 * The partition's erased streams (from its `UserErased` records, read from the store: never lagging),
 * each with the position of the record that erased it: every event of the stream before that position
 * is erased content. A stream kept usable (an end user's credentials) may hold newer events after it.
 */
export async function erasedStreams(store: EventStore, appId: string): Promise<Map<string, bigint>> {
  const out = new Map<string, bigint>();
  for await (const e of streamFrom(store, erasureStream(appId), 0n)) {
    if (e.type !== "UserErased") continue;
    const streams = (e.data as { streams?: Array<{ stream?: unknown }> }).streams ?? [];
    for (const { stream } of streams) if (typeof stream === "string") out.set(stream, e.position);
  }
  return out;
}

/**
 * `$all` from after `afterPosition`, the partition's events only, without erased ones (erasedStreams). `scanLimit` bounds how many events
 * (of any app) one call looks at: the generator then ends, and `scanned.last` says where it stopped,
 * so a page over a store full of other apps' events still answers promptly with a cursor.
 */
export async function* auditAll(
  store: EventStore, appId: string, afterPosition: bigint | null, scanned: { last: bigint | null; count: number }, scanLimit = Infinity,
): AsyncGenerator<RecordedEvent> {
  let from: bigint | "start" = afterPosition ?? "start";
  const erased = await erasedStreams(store, appId);
  const isErased = (e: RecordedEvent) => {
    const at = erased.get(e.streamId);
    return at !== undefined && e.position < at;
  };
  for (;;) {
    const chunk: RecordedEvent[] = [];
    for await (const e of store.readAll({ fromPosition: from, maxCount: CHUNK + 1 })) chunk.push(e);
    let fresh = 0;
    for (const e of chunk) {
      if (afterPosition !== null && e.position <= afterPosition) continue;
      fresh++;
      afterPosition = e.position;
      scanned.last = e.position;
      scanned.count++;
      if (e.metadata.app_id === appId && !isErased(e)) yield e;
      if (scanned.count >= scanLimit) return;
    }
    if (fresh === 0 || chunk.length < CHUNK + 1) return;
    from = afterPosition!;
  }
}

/** A position cursor's value, or 400 invalid_cursor. */
export function positionOf(value: string, param = "cursor"): bigint {
  if (!/^\d{1,30}$/.test(value)) throw new ValidationError(`Invalid ${param}: pass back the next_cursor of a previous page unchanged`, { param }, "invalid_cursor");
  return BigInt(value);
}
