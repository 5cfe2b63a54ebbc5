/**
 * Catch-up subscriptions for the local adapters, and the buffer every adapter's subscription uses.
 *
 * A subscription is a cursor that pages forward through the store: it reads a page after its cursor,
 * buffers it, and when a page comes back empty it has caught up and waits for the store to signal an
 * append (or for a poll interval, when other processes may write to the same store). Because every
 * page starts strictly after the last delivered event, the switch from catch-up to live has no gap and
 * no duplicate. Appenders only ever notify; a slow consumer makes its own subscription fall behind and
 * never blocks a write.
 */
import type { RecordedEvent, Subscription } from "./port.ts";

/** Wakes waiters when the store has new events. */
export class ChangeSignal {
  private waiters = new Set<() => void>();
  /** Bumped on every notify, so a waiter can tell that a change happened after it last looked. */
  version = 0;

  notify(): void {
    this.version++;
    const waiters = this.waiters;
    this.waiters = new Set();
    for (const wake of waiters) wake();
  }

  /**
   * Resolves on the next notify, after `timeoutMs` if given, or when `abort` fires; at once when a
   * notify already happened since the caller saw `sinceVersion`.
   */
  wait(abort: AbortSignal, timeoutMs?: number, sinceVersion = this.version): Promise<void> {
    return new Promise((resolve) => {
      if (abort.aborted || this.version !== sinceVersion) return resolve();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = () => {
        this.waiters.delete(done);
        abort.removeEventListener("abort", done);
        if (timer) clearTimeout(timer);
        resolve();
      };
      this.waiters.add(done);
      abort.addEventListener("abort", done, { once: true });
      if (timeoutMs !== undefined) timer = setTimeout(done, timeoutMs);
    });
  }
}

/**
 * The consumer side of a subscription: a bounded buffer that producers fill and consumers drain.
 * `highWaterMark` bounds memory; producers await `hasRoom()` before reading more.
 */
export class BufferedSubscription implements Subscription {
  caughtUp = false;
  private buffer: RecordedEvent[] = [];
  private head = 0;
  private closed = false;
  private failure: unknown;
  private readers: Array<() => void> = [];
  private writers: Array<() => void> = [];
  readonly abort = new AbortController();
  private readonly caughtUpSignal = Promise.withResolvers<void>();

  constructor(
    private readonly onClose: () => Promise<void> | void = () => {},
    private readonly highWaterMark = 2048,
  ) {}

  get isClosed(): boolean {
    return this.closed;
  }

  push(event: RecordedEvent): void {
    if (this.closed) return;
    this.buffer.push(event);
    this.wakeReaders();
  }

  markCaughtUp(): void {
    this.caughtUp = true;
    this.caughtUpSignal.resolve();
  }

  waitUntilCaughtUp(): Promise<void> {
    return this.caughtUpSignal.promise;
  }

  /** Ends the subscription with an error that consumers will see. */
  fail(error: unknown): void {
    if (this.closed) return;
    this.failure = error;
    this.close();
  }

  /** Resolves once the buffer has room (or the subscription closed). */
  hasRoom(): Promise<void> {
    if (this.closed || this.buffer.length - this.head < this.highWaterMark) return Promise.resolve();
    return new Promise((resolve) => this.writers.push(resolve));
  }

  async nextBatch(max: number): Promise<RecordedEvent[]> {
    while (this.buffer.length - this.head === 0) {
      if (this.failure !== undefined) throw this.failure;
      if (this.closed) return [];
      await new Promise<void>((resolve) => this.readers.push(resolve));
    }
    const end = Math.min(this.buffer.length, this.head + Math.max(1, max));
    const batch = this.buffer.slice(this.head, end);
    this.head = end;
    if (this.head > 4096 && this.head * 2 > this.buffer.length) {
      this.buffer = this.buffer.slice(this.head);
      this.head = 0;
    }
    const writers = this.writers;
    this.writers = [];
    for (const wake of writers) wake();
    return batch;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<RecordedEvent> {
    try {
      for (;;) {
        const batch = await this.nextBatch(256);
        if (batch.length === 0) return;
        yield* batch;
      }
    } finally {
      await this.unsubscribe();
    }
  }

  async unsubscribe(): Promise<void> {
    if (!this.closed) this.close();
    await this.onClose();
  }

  private close(): void {
    this.closed = true;
    this.caughtUpSignal.resolve();
    this.abort.abort();
    this.wakeReaders();
    const writers = this.writers;
    this.writers = [];
    for (const wake of writers) wake();
  }

  private wakeReaders(): void {
    const readers = this.readers;
    this.readers = [];
    for (const wake of readers) wake();
  }
}

export interface PollingSource {
  /** True once the store is closed: the subscription then ends instead of waiting for appends. */
  isClosed(): boolean;
  /** Events strictly after `cursor`, oldest first, at most `max`. */
  readPage(cursor: bigint, max: number): RecordedEvent[] | Promise<RecordedEvent[]>;
  /** The cursor value an event advances to (its position, or its revision). */
  cursorOf(event: RecordedEvent): bigint;
  changes: ChangeSignal;
  /** When set, also re-read this often while idle: other processes may append without notifying us. */
  pollIntervalMs?: number;
  pageSize?: number;
}

/** Starts a catch-up subscription over a pageable source, delivering events after `start`. */
export function pollingSubscription(source: PollingSource, start: bigint): Subscription {
  const sub = new BufferedSubscription();
  const pageSize = source.pageSize ?? 512;
  void (async () => {
    let cursor = start;
    try {
      while (!sub.isClosed) {
        await sub.hasRoom();
        if (sub.isClosed) break;
        if (source.isClosed()) {
          await sub.unsubscribe();
          break;
        }
        const seen = source.changes.version;
        const page = await source.readPage(cursor, pageSize);
        for (const event of page) {
          sub.push(event);
          cursor = source.cursorOf(event);
        }
        if (page.length < pageSize) {
          sub.markCaughtUp();
          if (page.length === 0) await source.changes.wait(sub.abort.signal, source.pollIntervalMs, seen);
        }
      }
    } catch (err) {
      sub.fail(err);
    }
  })();
  return sub;
}
