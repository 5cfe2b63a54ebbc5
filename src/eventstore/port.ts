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
