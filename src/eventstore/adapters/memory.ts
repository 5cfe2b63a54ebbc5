/**
 * The in-memory adapter: the whole store in arrays. For tests and for backing the EventStoreDB
 * protocol-level test server. Not durable.
 */
import {
  decideAppend, checkExpected, NEW_STREAM, streamExists, toJson, validateAppend, validateStreamName,
  type StreamState,
} from "../appendRules.ts";
import { chainBodyJson, chainLink, chainOf, GENESIS, metadataWithoutChain, withChainJson } from "../chain.ts";
import { StreamDeletedError, StreamNotFoundError, StoreUnavailableError } from "../errors.ts";
import { matchesFilter } from "../filter.ts";
import type {
  AppendOptions, AppendResult, DeleteResult, EraseResult, EraseTarget, EventData, EventStore, ReadAllOptions, ReadStreamOptions,
  RecordedEvent, SubscribeToAllOptions, SubscribeToStreamOptions, Subscription,
} from "../port.ts";
import { ChangeSignal, pollingSubscription } from "../subscription.ts";

interface MemoryStream extends StreamState {
  events: RecordedEvent[]; // indexed by revision
}

export class MemoryEventStore implements EventStore {
  readonly kind = "memory";
  /** Index i holds position i + 1; erased events leave holes, so positions never move. */
  private log: Array<RecordedEvent | undefined> = [];
  private streams = new Map<string, MemoryStream>();
  private changes = new ChangeSignal();
  private closed = false;

  constructor(private readonly clock: () => Date = () => new Date()) {}

  async appendToStream(stream: string, events: readonly EventData[], options: AppendOptions = {}): Promise<AppendResult> {
    this.ensureOpen();
    const expected = options.expectedRevision ?? "any";
    validateAppend(stream, events, expected);
    const state = this.streams.get(stream) ?? { ...NEW_STREAM, events: [] };
    const decision = decideAppend(
      stream, state, expected, events.map((e) => e.id),
      (rev) => state.events[Number(rev)]?.id,
      (id) => findRecent(state, id),
    );
    if (decision.kind === "already_written") {
      const last = state.events[Number(decision.lastRevision)]!;
      return { nextExpectedRevision: decision.lastRevision, position: last.position };
    }
    // Serialise first so a bad payload refuses the whole append before anything is stored.
    const payloads = events.map((e) => {
      const data = toJson(e.data, "Event data");
      return { data, metadata: toJson(metadataWithoutChain(e.metadata), "Event metadata"), body: chainBodyJson(stream, e.id, e.type, data, e.metadata) };
    });
    const created = this.clock();
    let revision = decision.firstRevision;
    let chain = previousChain(state, revision);
    for (const [i, e] of events.entries()) {
      chain = chainLink(chain, payloads[i]!.body);
      const recorded: RecordedEvent = {
        id: e.id, type: e.type, streamId: stream, revision, position: BigInt(this.log.length + 1),
        data: JSON.parse(payloads[i]!.data), metadata: JSON.parse(withChainJson(payloads[i]!.metadata, chain)), created,
      };
      this.log.push(recorded);
      state.events[Number(revision)] = recorded;
      revision++;
    }
    state.lastRevision = revision - 1n;
    this.streams.set(stream, state);
    this.changes.notify();
    return { nextExpectedRevision: state.lastRevision, position: BigInt(this.log.length) };
  }

  async *readStream(stream: string, options: ReadStreamOptions = {}): AsyncIterable<RecordedEvent> {
    this.ensureOpen();
    validateStreamName(stream);
    const state = this.visibleStream(stream);
    const visible = state.events.slice(Number(state.truncateBefore));
    const backwards = options.direction === "backwards";
    const max = options.maxCount ?? Number.MAX_SAFE_INTEGER;
    const from = options.fromRevision;
    const ordered = backwards ? [...visible].reverse() : visible;
    let count = 0;
    for (const e of ordered) {
      if (count >= max) break;
      if (typeof from === "bigint" && (backwards ? e.revision > from : e.revision < from)) continue;
      if (!backwards && from === "end") break;
      if (backwards && from === "start" && e.revision !== state.truncateBefore) continue;
      count++;
      yield e;
    }
  }

  async *readAll(options: ReadAllOptions = {}): AsyncIterable<RecordedEvent> {
    this.ensureOpen();
    const backwards = options.direction === "backwards";
    const max = options.maxCount ?? Number.MAX_SAFE_INTEGER;
    const from = options.fromPosition;
    let count = 0;
    const n = this.log.length;
    for (let k = 0; k < n && count < max; k++) {
      const e = this.log[backwards ? n - 1 - k : k];
      if (!e) continue;
      if (typeof from === "bigint" && (backwards ? e.position > from : e.position < from)) continue;
      if (!backwards && from === "end") break;
      if (!matchesFilter(e.streamId, e.type, options.filter)) continue;
      count++;
      yield e;
    }
  }

  subscribeToStream(stream: string, options: SubscribeToStreamOptions = {}): Subscription {
    this.ensureOpen();
    validateStreamName(stream);
    const start = options.fromRevision === undefined || options.fromRevision === "start" ? -1n : options.fromRevision;
    return pollingSubscription({
      isClosed: () => this.closed,
      changes: this.changes,
      cursorOf: (e) => e.revision,
      readPage: (after, max) => {
        const state = this.streams.get(stream);
        if (!state) return [];
        if (state.tombstoned) throw new StreamDeletedError(stream);
        const from = Math.max(Number(after + 1n), Number(state.truncateBefore));
        return state.events.slice(from, from + max);
      },
    }, start);
  }

  subscribeToAll(options: SubscribeToAllOptions = {}): Subscription {
    this.ensureOpen();
    const start = options.fromPosition === undefined || options.fromPosition === "start" ? 0n : options.fromPosition;
    return pollingSubscription({
      isClosed: () => this.closed,
      changes: this.changes,
      cursorOf: (e) => e.position,
      readPage: (after, max) => {
        const out: RecordedEvent[] = [];
        // Positions are 1-based indexes into the log, so "after" is where to resume.
        for (let i = Number(after); i < this.log.length && out.length < max; i++) {
          const e = this.log[i];
          if (e && matchesFilter(e.streamId, e.type, options.filter)) out.push(e);
        }
        return out;
      },
    }, start);
  }

  async deleteStream(stream: string, options: AppendOptions = {}): Promise<DeleteResult> {
    const state = this.streamForDelete(stream, options);
    state.truncateBefore = state.lastRevision + 1n;
    return {};
  }

  async tombstoneStream(stream: string, options: AppendOptions = {}): Promise<DeleteResult> {
    const state = this.streamForDelete(stream, options);
    state.tombstoned = true;
    this.streams.set(stream, state);
    this.changes.notify(); // stream subscribers learn that the stream is gone
    return {};
  }

  async eraseStreams(targets: readonly EraseTarget[]): Promise<EraseResult> {
    this.ensureOpen();
    for (const t of targets) validateStreamName(t.stream);
    const states = targets.map((t) => {
      const state = this.streams.get(t.stream);
      if (!state || !streamExists(state)) return null;
      checkExpected(t.stream, state, t.expectedRevision ?? "any");
      return state;
    });
    const erased: string[] = [];
    const missing: string[] = [];
    targets.forEach((t, i) => {
      const state = states[i];
      if (!state) return void missing.push(t.stream);
      for (const e of state.events) if (e) this.log[Number(e.position) - 1] = undefined;
      state.events = [];
      if (t.reusable) state.truncateBefore = state.lastRevision + 1n;
      else state.tombstoned = true;
      erased.push(t.stream);
    });
    if (erased.length === 0) return { erased, missing, reclaim: "none" };
    this.changes.notify();
    return { erased, missing, reclaim: "removed" };
  }

  async headPosition(): Promise<bigint | null> {
    this.ensureOpen();
    for (let i = this.log.length - 1; i >= 0; i--) {
      const e = this.log[i];
      if (e && matchesFilter(e.streamId, e.type, undefined)) return e.position;
    }
    return null;
  }

  async ping(): Promise<void> {
    this.ensureOpen();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.changes.notify();
  }

  private streamForDelete(stream: string, options: AppendOptions): MemoryStream {
    this.ensureOpen();
    validateStreamName(stream);
    const state = this.streams.get(stream) ?? { ...NEW_STREAM, events: [] };
    checkExpected(stream, state, options.expectedRevision ?? "any");
    if (!streamExists(state)) throw new StreamNotFoundError(stream);
    return state;
  }

  private visibleStream(stream: string): MemoryStream {
    const state = this.streams.get(stream);
    if (state?.tombstoned) throw new StreamDeletedError(stream);
    if (!state || !streamExists(state)) throw new StreamNotFoundError(stream);
    return state;
  }

  private ensureOpen(): void {
    if (this.closed) throw new StoreUnavailableError("The event store is closed");
  }
}

/** How far back an `any` retry is recognised, like EventStoreDB's bounded idempotency window. */
export const IDEMPOTENCY_WINDOW = 256;

/** The chain a stream's next event links to: its previous visible event's, else the genesis. */
function previousChain(state: MemoryStream, revision: bigint): string {
  if (revision - 1n < state.truncateBefore) return GENESIS;
  return chainOf(state.events[Number(revision - 1n)]?.metadata) ?? GENESIS;
}

function findRecent(state: MemoryStream, id: string): bigint | undefined {
  const stop = Math.max(0, state.events.length - IDEMPOTENCY_WINDOW);
  for (let i = state.events.length - 1; i >= stop; i--) if (state.events[i]?.id === id) return BigInt(i);
  return undefined;
}
