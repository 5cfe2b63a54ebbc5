/**
 * The tails of hot streams, in memory: the last events of each recently read stream, kept current by
 * the live `$all` feed (LiveEvents), so cursor polls and reads of an aggregate's latest state are
 * served without touching the store. Bounded: at most `maxStreams` streams and about `maxBytes` of
 * event data in all (least recently used streams go first), and `maxEvents` events each.
 *
 * Exact or nothing: an entry holds a gapless run of revisions ending at the stream's last revision as
 * the feed has seen it. A read that would need events before the run, or a stream the cache does not
 * hold, falls back to the store and warms the entry. Warming cannot miss an event the feed delivered
 * meanwhile: the feed's last revision per stream is remembered, and a warm that would end before it
 * is not kept. Other processes' appends reach the feed after a poll interval, so for deciding (where a
 * stale read costs a retry) repositories always read the store; the cache serves reads.
 */
import type { RecordedEvent } from "../eventstore/port.ts";

interface Tail {
  /** The stream's last revision, as far as the feed knows. */
  last: bigint;
  /** Its last events by ascending revision, gapless, ending at `last` (may be empty: only `last` known). */
  events: RecordedEvent[];
  /** Estimated size of `events` (see sizeOf). */
  bytes: number;
}

export interface StreamTailsOptions {
  maxStreams: number;
  maxEvents: number;
  /** Estimated bytes of event data held in all; an event alone may be up to the 1 MiB append limit. */
  maxBytes?: number;
}

/** The streams a UserErased names (src/domain/erasure/events.ts); read loosely: only a cache depends on it. */
export const erasedStreamNames = (e: RecordedEvent): string[] => {
  const streams = (e.data as { streams?: unknown } | null)?.streams;
  return Array.isArray(streams) ? streams.flatMap((s) => (typeof s?.stream === "string" ? [s.stream as string] : [])) : [];
};

/** An event's estimated size in memory: its data as JSON, plus a fixed cost for the record around it. */
const sizeOf = (e: RecordedEvent): number => JSON.stringify(e.data ?? null).length + e.streamId.length + 200;

export class StreamTails {
  private readonly tails = new Map<string, Tail>();
  /** The last revision the feed delivered per stream (bounded alongside the tails). */
  private readonly fedRevision = new Map<string, bigint>();
  private bytes = 0;

  constructor(private readonly options: StreamTailsOptions) {}

  /** The live feed's events, in order. */
  observe(event: RecordedEvent): void {
    const stream = event.streamId;
    // Another process erased a user: what this one holds of the erased streams goes (reads then reach
    // the store, which has them no more).
    if (event.type === "UserErased") for (const s of erasedStreamNames(event)) this.forget(s);
    this.fedRevision.delete(stream);
    this.fedRevision.set(stream, event.revision);
    if (this.fedRevision.size > this.options.maxStreams * 4) this.fedRevision.delete(this.fedRevision.keys().next().value!);
    const tail = this.tails.get(stream);
    if (!tail) return;
    if (event.revision <= tail.last) return; // already warmed from the store
    if (event.revision !== tail.last + 1n) {
      this.drop(stream); // a gap (deleted and reopened, or missed): no longer exact
      return;
    }
    tail.last = event.revision;
    tail.events.push(event);
    this.grow(tail, sizeOf(event));
    if (tail.events.length > this.options.maxEvents) {
      const dropped = tail.events.splice(0, tail.events.length - this.options.maxEvents);
      this.grow(tail, -dropped.reduce((n, e) => n + sizeOf(e), 0));
    }
    this.evict();
  }

  /**
   * Events with revision >= `fromRevision`, at most `limit`, when the cache can answer exactly;
   * undefined when the store must be read.
   */
  read(stream: string, fromRevision: bigint, limit: number): RecordedEvent[] | undefined {
    const tail = this.tails.get(stream);
    if (!tail) return undefined;
    const first = tail.events[0]?.revision ?? tail.last + 1n;
    if (fromRevision < first) return undefined;
    this.touch(stream, tail);
    const start = Number(fromRevision - first);
    return tail.events.slice(start, start + limit);
  }

  /** The stream's last revision as the cache knows it exactly, or undefined. */
  lastRevision(stream: string): bigint | undefined {
    return this.tails.get(stream)?.last;
  }

  /**
   * Keeps what a store read found at the end of a stream: `events` must be the stream's last events,
   * gapless, through its last revision at the time of the read.
   */
  warm(stream: string, events: readonly RecordedEvent[]): void {
    if (events.length === 0) return;
    this.keep(stream, events[events.length - 1]!.revision, events.slice(-this.options.maxEvents));
  }

  /** Keeps only what a store read learnt of a stream's end: its last revision then. */
  warmRevision(stream: string, last: bigint): void {
    this.keep(stream, last, []);
  }

  private keep(stream: string, last: bigint, events: RecordedEvent[]): void {
    const fed = this.fedRevision.get(stream);
    if (fed !== undefined && fed > last) return; // the feed is already past this read
    const existing = this.tails.get(stream);
    const existingFirst = existing ? (existing.events[0]?.revision ?? existing.last + 1n) : undefined;
    const newFirst = events[0]?.revision ?? last + 1n;
    // Keep what the cache has when it already covers as much (it may hold more events).
    if (existing && existing.last >= last && existingFirst! <= newFirst) return;
    this.drop(stream);
    const tail = { last, events, bytes: 0 };
    this.touch(stream, tail);
    this.grow(tail, events.reduce((n, e) => n + sizeOf(e), 0));
    this.evict();
  }

  /** Forgets a stream (deleted, or found not to be what the cache says). */
  forget(stream: string): void {
    this.drop(stream);
  }

  /** Estimated bytes of event data held. */
  get heldBytes(): number {
    return this.bytes;
  }

  private grow(tail: Tail, by: number): void {
    tail.bytes += by;
    this.bytes += by;
  }

  private drop(stream: string): void {
    const tail = this.tails.get(stream);
    if (!tail) return;
    this.bytes -= tail.bytes;
    this.tails.delete(stream);
  }

  /** Least recently used streams go until both bounds hold. */
  private evict(): void {
    const maxBytes = this.options.maxBytes ?? Number.POSITIVE_INFINITY;
    while (this.tails.size > this.options.maxStreams || (this.bytes > maxBytes && this.tails.size > 0)) {
      this.drop(this.tails.keys().next().value!);
    }
  }

  get size(): number {
    return this.tails.size;
  }

  private touch(stream: string, tail: Tail): void {
    this.tails.delete(stream);
    this.tails.set(stream, tail);
  }
}
