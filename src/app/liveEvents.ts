/**
 * Wakes long-polls and SSE streams when their stream gets a new event. One `$all` subscription per
 * process feeds it, so it sees appends from any process sharing the store (other API processes,
 * workers). Listeners are told "something changed in stream X"; they then read the stream themselves
 * from their own cursor, which keeps the cursor semantics in one place: the stream.
 */
import type { Logger } from "../core/logger.ts";
import type { EventStore, Subscription } from "../eventstore/port.ts";
import { erasedStreamNames, type StreamTails } from "./streamTails.ts";

type Listener = () => void;

export class LiveEvents {
  private readonly listeners = new Map<string, Set<Listener>>();
  private subscription: Subscription | undefined;
  private loop: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly store: EventStore, private readonly logger?: Logger, private readonly tails?: StreamTails) {}

  async start(): Promise<void> {
    const head = await this.store.headPosition();
    this.loop = this.run(head);
  }

  /** Calls `listener` after each append to `stream` until the returned function is called. */
  listen(stream: string, listener: Listener): () => void {
    let set = this.listeners.get(stream);
    if (!set) {
      set = new Set();
      this.listeners.set(stream, set);
    }
    set.add(listener);
    return () => {
      set!.delete(listener);
      if (set!.size === 0) this.listeners.delete(stream);
    };
  }

  /**
   * Resolves on the next append to `stream`, after `timeoutMs`, or when `signal` aborts — whichever
   * is first. Register before checking the stream to avoid missing an append in between.
   */
  waiter(stream: string, timeoutMs: number, signal?: AbortSignal): { promise: Promise<void>; cancel: () => void } {
    let cancel = () => {};
    const promise = new Promise<void>((resolve) => {
      const done = () => {
        stop();
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      const stop = this.listen(stream, done);
      const timer = setTimeout(done, timeoutMs);
      signal?.addEventListener("abort", done, { once: true });
      cancel = done;
    });
    return { promise, cancel };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.subscription?.unsubscribe();
    await this.loop;
    for (const set of this.listeners.values()) for (const l of set) l();
    this.listeners.clear();
  }

  private async run(from: bigint | null): Promise<void> {
    let position = from;
    while (!this.stopped) {
      this.subscription = this.store.subscribeToAll({ fromPosition: position ?? "start" });
      try {
        for (;;) {
          const batch = await this.subscription.nextBatch(1000);
          if (batch.length === 0) return;
          const touched = new Set<string>();
          for (const e of batch) {
            touched.add(e.streamId);
            // An erased stream gets no event of its own: its listeners wake on the erasure, and find it gone.
            if (e.type === "UserErased") for (const s of erasedStreamNames(e)) touched.add(s);
            position = e.position;
            this.tails?.observe(e);
          }
          for (const stream of touched) {
            const set = this.listeners.get(stream);
            if (set) for (const l of [...set]) l();
          }
        }
      } catch (err) {
        if (this.stopped) return;
        this.logger?.warn("live event feed failed; resubscribing", { error: err as Error });
        await Bun.sleep(500);
      }
    }
  }
}
