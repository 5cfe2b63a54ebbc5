/**
 * The EventStore port. It mirrors EventStoreDB's semantics so the sqlite, memory and esdb adapters are
 * interchangeable, and one contract suite (test/contract/eventStore.contract.ts) holds every adapter to it.
 *
 * - Streams are named `category-id`; revisions are 0-based and gapless within a stream.
 * - Every event also has a global position in `$all`: opaque, unique and increasing in commit order.
 *   Positions are bigints; compare them, never do arithmetic on them (in EventStoreDB they are byte offsets).
 * - An append is atomic; it either writes all of its events or none.
 */

export type ExpectedRevision = "any" | "no_stream" | "stream_exists" | bigint;

/** Metadata every event carries. `created` is assigned by the store; correlation/causation by the writer. */
export interface EventMetadata {
  correlationId?: string;
  causationId?: string;
  [key: string]: unknown;
}

/** An event to append. `id` (a UUID) makes retries idempotent: see appendToStream. */
export interface EventData<Type extends string = string, Data = unknown> {
  id: string;
  type: Type;
  data: Data;
  metadata?: EventMetadata;
}

export interface RecordedEvent<Type extends string = string, Data = unknown> {
  id: string;
  type: Type;
  streamId: string;
  /** 0-based revision within the stream. */
  revision: bigint;
  /** Global position in `$all`. */
  position: bigint;
  data: Data;
  metadata: EventMetadata;
  /** When the store recorded the event. */
  created: Date;
}

export interface AppendOptions {
  expectedRevision?: ExpectedRevision;
}

export interface AppendResult {
  /** Revision of the last event now in the stream: pass it as expectedRevision for the next append. */
  nextExpectedRevision: bigint;
  /** Global position of the last event written (or matched, for an idempotent retry). */
  position: bigint;
}

export type Direction = "forwards" | "backwards";

export interface ReadStreamOptions {
  /** Inclusive start revision; defaults to the start (forwards) or the end (backwards). */
  fromRevision?: bigint | "start" | "end";
  direction?: Direction;
  maxCount?: number;
}

/** Which events of `$all` to see. Events of system streams (`$`-prefixed) are never shown. */
export interface AllFilter {
  streamPrefixes?: readonly string[];
  eventTypes?: readonly string[];
}

export interface ReadAllOptions {
  /** Inclusive start position; defaults to the start (forwards) or the end (backwards). */
  fromPosition?: bigint | "start" | "end";
  direction?: Direction;
  maxCount?: number;
  filter?: AllFilter;
}

export interface SubscribeToStreamOptions {
  /** Exclusive: the subscription delivers events after this revision. "start" delivers from revision 0. */
  fromRevision?: bigint | "start";
}

export interface SubscribeToAllOptions {
  /** Exclusive: the subscription delivers events after this position. "start" delivers everything. */
  fromPosition?: bigint | "start";
  filter?: AllFilter;
}

/**
 * A catch-up subscription: first the history after the start point, then live events, with no gap and
 * no duplicate at the switch. Consumers pull at their own pace; a slow one never blocks appenders.
 */
export interface Subscription extends AsyncIterable<RecordedEvent> {
  /**
   * Waits until at least one event is available and returns what is buffered, up to `max` events.
   * Resolves with [] once the subscription has been closed; rejects if it failed.
   */
  nextBatch(max: number): Promise<RecordedEvent[]>;
  /** True once the subscription has delivered (into its buffer) everything that existed when it caught up. */
  readonly caughtUp: boolean;
  /** Resolves when `caughtUp` first becomes true (or the subscription closes). */
  waitUntilCaughtUp(): Promise<void>;
  unsubscribe(): Promise<void>;
}

export interface DeleteResult {
  position?: bigint;
}

/** One stream to erase (see EventStore.eraseStreams). */
export interface EraseTarget {
  stream: string;
  /** Checked as for a delete: the erasure of this stream is refused when it does not hold. */
  expectedRevision?: ExpectedRevision;
  /**
   * Keep the name usable: the stream reads as missing and a later append starts it again, its revisions
   * continuing (a soft delete whose events are gone). For streams named after a person rather than a
   * random id (an end user's credentials), which must not lock that person out for good. Otherwise the
   * stream is tombstoned: gone for good, its name never reused.
   */
  reusable?: boolean;
}

/** What an erasure removed, and how the store got the bytes off its disk. */
export interface EraseResult {
  /** Streams whose events were removed (or tombstoned, awaiting the scavenge). */
  erased: string[];
  /** Streams that had nothing to erase: never written, or already deleted. */
  missing: string[];
  /**
   * How the space was reclaimed: `vacuumed` (SQLite: rows deleted, file rebuilt, WAL truncated),
   * `removed` (memory), `scavenge_started` (EventStoreDB: tombstoned, then a scavenge started on the
   * node the client talks to; `scavenge_failed` when the node refused it, e.g. without ops rights);
   * `none` when nothing was erased (nothing compacted, no scavenge started).
   */
  reclaim: "vacuumed" | "removed" | "scavenge_started" | "scavenge_failed" | "none";
  /** EventStoreDB's id for the scavenge, to follow it in the server's `$scavenges` stream. */
  scavengeId?: string;
  /** Why reclaiming did not complete (the events are erased from reads regardless). */
  reclaimError?: string;
}

export interface EventStore {
  /** Human-readable adapter name for logs and /health. */
  readonly kind: "sqlite" | "memory" | "esdb";

  /**
   * Appends events atomically. Throws WrongExpectedVersionError when `expectedRevision` does not hold.
   * Retrying an append whose event ids are already in the stream at the positions the retry implies
   * succeeds without writing again (EventStoreDB's idempotent append).
   * Throws StreamDeletedError for a tombstoned stream. A soft-deleted stream is reopened by the append,
   * its revisions continuing where they were.
   */
  appendToStream(stream: string, events: readonly EventData[], options?: AppendOptions): Promise<AppendResult>;

  /** Reads a stream; throws StreamNotFoundError (missing or soft-deleted) or StreamDeletedError (tombstoned). */
  readStream(stream: string, options?: ReadStreamOptions): AsyncIterable<RecordedEvent>;

  /** Reads `$all` in global-position order. */
  readAll(options?: ReadAllOptions): AsyncIterable<RecordedEvent>;

  subscribeToStream(stream: string, options?: SubscribeToStreamOptions): Subscription;
  subscribeToAll(options?: SubscribeToAllOptions): Subscription;

  /** Soft delete: the stream reads as missing until appended to again. */
  deleteStream(stream: string, options?: AppendOptions): Promise<DeleteResult>;
  /** Tombstone: the stream is gone for good; reads and appends throw StreamDeletedError. */
  tombstoneStream(stream: string, options?: AppendOptions): Promise<DeleteResult>;

  /**
   * Erasure: removes the streams' events from the store, from `$all` and, as far as the store allows,
   * from its disk (a tombstone alone only hides them). EventStoreDB keeps them in `$all` until a
   * scavenge has covered their chunk: a reader serving `$all` skips erased streams itself (the
   * `UserErased` records name them). With nothing to erase, nothing is compacted (`reclaim: "none"`). Each stream is checked against its expected
   * revision first; a mismatch refuses the call (WrongExpectedVersionError) before anything is
   * erased (SQLite and memory check them all first; EventStoreDB checks each as it tombstones it, so
   * the streams before the refused one stay erased: run the call again). Erased streams read as
   * tombstoned (StreamDeletedError), or as missing when `reusable`. Streams already tombstoned, never
   * written or soft-deleted are reported `missing`.
   */
  eraseStreams(targets: readonly EraseTarget[]): Promise<EraseResult>;

  /** Position of the newest event in `$all` (excluding system events), or null when the store is empty. */
  headPosition(): Promise<bigint | null>;

  /** Cheap liveness check for /health. */
  ping(): Promise<void>;

  close(): Promise<void>;
}

/** Convenience: collect an async iterable of events into an array. */
export async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}
