/**
 * Tells the other processes sharing a SQLite store that it has new events, through Redis pub/sub,
 * when Redis is configured (the split deployment). Without it a process sees another's appends only
 * at its next poll (SQLITE_POLL_INTERVAL_MS), and a turn that crosses from the API to a worker and
 * back waits out that interval several times. The signal only wakes readers early: they still read
 * the store from their own position, so a lost or late message costs a poll interval, never an event.
 */
import Redis from "ioredis";
import type { Logger } from "../core/logger.ts";

/** A store whose commits can be announced, and whose readers can be woken. */
export interface SignalledStore {
  /** Calls `listener` after each commit of this process's appends; returns the unsubscribe. */
  onCommitted(listener: () => void): () => void;
  /** Wakes this process's subscriptions to read the store now. */
  wakeReaders(): void;
}

export interface AppendSignal {
  close(): Promise<void>;
}

export function linkThroughRedis(store: SignalledStore, url: string, logger?: Logger, channel = "agentry:events:appended"): AppendSignal {
  const self = crypto.randomUUID();
  const options = { maxRetriesPerRequest: null, lazyConnect: false } as const;
  const publisher = new Redis(url, options);
  const subscriber = new Redis(url, options);
  for (const c of [publisher, subscriber]) c.on("error", (err) => logger?.debug("append signal: redis connection error", { error: err }));
  void subscriber.subscribe(channel).catch((err) => logger?.warn("append signal: could not subscribe; other processes' appends are seen at each poll", { error: err as Error }));
  subscriber.on("message", (_channel: string, from: string) => {
    if (from !== self) store.wakeReaders();
  });
  // One message per commit (a group of appends), and none while one is still on its way.
  let sending = false;
  let again = false;
  const announce = () => {
    if (sending) {
      again = true;
      return;
    }
    sending = true;
    void publisher.publish(channel, self).catch(() => {}).finally(() => {
      sending = false;
      if (again) {
        again = false;
        announce();
      }
    });
  };
  const stop = store.onCommitted(announce);
  return {
    async close() {
      stop();
      await Promise.allSettled([subscriber.quit(), publisher.quit()]);
    },
  };
}
