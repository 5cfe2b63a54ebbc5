/**
 * The append rules the local adapters share (memory, sqlite): expected-revision checks, idempotent
 * retries, soft delete and tombstone; and the input checks every adapter runs, esdb included. Pure:
 * adapters hand in the stream's state and a lookup of event ids by revision, and get back what to do.
 */
import { AppendTooLargeError, InvalidEventError, StreamDeletedError, WrongExpectedVersionError } from "./errors.ts";
import type { EventData, ExpectedRevision } from "./port.ts";
import { isUuid } from "../core/ids.ts";

export interface StreamState {
  /** Revision of the newest event ever written, -1n when none. */
  lastRevision: bigint;
  /** Revisions below this are hidden (soft delete sets it to lastRevision + 1). */
  truncateBefore: bigint;
  tombstoned: boolean;
}

export const NEW_STREAM: StreamState = { lastRevision: -1n, truncateBefore: 0n, tombstoned: false };

/** A stream "exists" when it has at least one visible event. */
export const streamExists = (s: StreamState): boolean => !s.tombstoned && s.lastRevision >= s.truncateBefore;

/** The revision reported to clients in wrong-expected-version errors. */
const actualRevision = (s: StreamState): bigint | "no_stream" => (streamExists(s) ? s.lastRevision : "no_stream");

export type AppendDecision =
  | { kind: "write"; firstRevision: bigint }
  | { kind: "already_written"; lastRevision: bigint };

/**
 * Decides an append. `idAt(revision)` returns the id of the event at that revision (or undefined);
 * `revisionOf(id)` finds an event id's revision in this stream (or undefined).
 */
export function decideAppend(
  stream: string,
  state: StreamState,
  expected: ExpectedRevision,
  eventIds: readonly string[],
  idAt: (revision: bigint) => string | undefined,
  revisionOf: (id: string) => bigint | undefined,
): AppendDecision {
  if (state.tombstoned) throw new StreamDeletedError(stream);

  // An idempotent retry: the proposed ids already stand, in order, where this append would have put them.
  const firstId = eventIds[0];
  const retryStart =
    typeof expected === "bigint" ? expected + 1n
    : expected === "no_stream" ? state.truncateBefore
    : firstId === undefined || !streamExists(state) ? undefined
    : revisionOf(firstId);
  if (retryStart !== undefined && retryStart <= state.lastRevision) {
    const matches = eventIds.every((id, i) => idAt(retryStart + BigInt(i)) === id);
    if (matches) return { kind: "already_written", lastRevision: retryStart + BigInt(eventIds.length) - 1n };
    if (expected === "any" || expected === "stream_exists") {
      // Some of these ids were written before, but not as this exact batch: refuse rather than duplicate.
      throw new WrongExpectedVersionError(stream, expected, actualRevision(state));
    }
  }

  checkExpected(stream, state, expected);
  return { kind: "write", firstRevision: state.lastRevision + 1n };
}

/** Throws WrongExpectedVersionError unless `expected` holds for the stream as it is. */
export function checkExpected(stream: string, state: StreamState, expected: ExpectedRevision): void {
  if (state.tombstoned) throw new StreamDeletedError(stream);
  const exists = streamExists(state);
  const ok =
    expected === "any" ? true
    : expected === "no_stream" ? !exists
    : expected === "stream_exists" ? exists
    // A soft-deleted stream keeps its last revision for concurrency checks, as EventStoreDB does.
    : expected === state.lastRevision && state.lastRevision >= 0n;
  if (!ok) throw new WrongExpectedVersionError(stream, expected, actualRevision(state));
}

const MAX_STREAM_NAME = 512;

/**
 * The most one append may carry: EventStoreDB's default MaxAppendSize, counted as it counts (data and
 * metadata bytes, plus twice the event type's length). Every store refuses more, so an append means the
 * same wherever it lands.
 */
export const MAX_APPEND_BYTES = 1_048_576;

/** Checks what every adapter must refuse before touching storage. */
export function validateAppend(stream: string, events: readonly EventData[], expected: ExpectedRevision): void {
  validateStreamName(stream);
  if (events.length === 0) throw new InvalidEventError("An append needs at least one event");
  if (typeof expected === "bigint" && expected < 0n) {
    throw new InvalidEventError(`Expected revision must be >= 0, got ${expected}`);
  }
  const seen = new Set<string>();
  let size = 0;
  for (const e of events) {
    if (typeof e.id !== "string" || !isUuid(e.id)) throw new InvalidEventError(`Event id must be a UUID, got ${String(e.id)}`);
    if (seen.has(e.id)) throw new InvalidEventError(`Event id ${e.id} appears twice in one append`);
    seen.add(e.id);
    if (typeof e.type !== "string" || e.type.length === 0 || e.type.startsWith("$")) {
      throw new InvalidEventError(`Event type must be a non-empty string not starting with '$', got ${String(e.type)}`);
    }
    size += Buffer.byteLength(toJson(e.data, "Event data")) + Buffer.byteLength(toJson(e.metadata ?? {}, "Event metadata")) + e.type.length * 2;
  }
  if (size > MAX_APPEND_BYTES) throw new AppendTooLargeError(stream, MAX_APPEND_BYTES, size);
}

export function validateStreamName(stream: string): void {
  if (typeof stream !== "string" || stream.length === 0 || stream.length > MAX_STREAM_NAME || stream.startsWith("$")) {
    throw new InvalidEventError(`Invalid stream name ${JSON.stringify(stream)}`);
  }
}

/** Serialises event data and metadata, refusing what JSON cannot carry faithfully. */
export function toJson(value: unknown, what: string): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(value ?? null);
  } catch (err) {
    throw new InvalidEventError(`${what} is not JSON-serialisable: ${(err as Error).message}`);
  }
  if (json === undefined) throw new InvalidEventError(`${what} is not JSON-serialisable`);
  return json;
}
