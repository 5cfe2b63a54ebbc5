/**
 * The RateLimiter port and its in-process adapter. A request consumes one unit (or a bucket's `cost`) from each of its
 * buckets (a caller's general budget and, for a heavy call, its heavy budget) all or nothing: when any
 * bucket refuses, none is charged. The Redis adapter (redisLimiter.ts) does the same atomically across
 * processes.
 */
import { gcra, type GcraOutcome } from "./gcra.ts";

/** A budget to charge: its key, and `limit` a minute as GCRA sees it (see intervalOf). */
export interface Bucket {
  key: string;
  limit: number;
  /** Microseconds between requests at the steady rate. */
  interval: number;
  /** Units this request takes from the bucket (default 1): a call that does the work of several. */
  cost?: number;
}

export type BucketOutcome = Omit<GcraOutcome, "tat">;

export interface RateDecision {
  /** Whether every bucket allowed the request (and so each was charged). */
  allowed: boolean;
  /** Per bucket, in the order given. */
  buckets: BucketOutcome[];
}

export interface RateLimiter {
  readonly kind: "in-process" | "redis";
  /** Charges one request (each bucket's `cost`) to every bucket, or to none; `now` (µs) is for tests, the limiter's clock otherwise. */
  consume(buckets: readonly Bucket[], now?: number): RateDecision | Promise<RateDecision>;
  close(): Promise<void>;
}

/** Microseconds since the epoch, from the wall clock (whole milliseconds are precise enough). */
export const wallClockUs = (): number => Date.now() * 1000;

/**
 * Buckets in a Map in this process, bounded: past `maxBuckets`, buckets that are full again (which
 * carry no state: a full bucket and no bucket are the same) are dropped first, then the least recently
 * charged ones, down to 90% of the cap. Dropping a bucket that is not yet full forgives what it held;
 * with the cap far above the callers active in one minute, that does not happen.
 */
export class InProcessRateLimiter implements RateLimiter {
  readonly kind = "in-process" as const;
  private readonly tats = new Map<string, number>();

  constructor(private readonly maxBuckets = 100_000, private readonly clock: () => number = wallClockUs) {}

  consume(buckets: readonly Bucket[], now = this.clock()): RateDecision {
    const outcomes: GcraOutcome[] = [];
    let allowed = true;
    for (const b of buckets) {
      const outcome = gcra(this.tats.get(b.key), now, b.limit, b.interval, b.cost ?? 1);
      if (!outcome.allowed) allowed = false;
      outcomes.push(outcome);
    }
    if (allowed) {
      for (let i = 0; i < buckets.length; i++) {
        const key = buckets[i]!.key;
        this.tats.delete(key); // re-inserted last: the Map's order is the order of last use
        this.tats.set(key, outcomes[i]!.tat);
      }
      if (this.tats.size > this.maxBuckets) this.evict(now);
    }
    return { allowed, buckets: outcomes };
  }

  /** How many buckets are held (for tests of the cap). */
  get size(): number {
    return this.tats.size;
  }

  async close(): Promise<void> {
    this.tats.clear();
  }

  private evict(now: number): void {
    for (const [key, tat] of this.tats) if (tat <= now) this.tats.delete(key);
    const keep = Math.floor(this.maxBuckets * 0.9);
    for (const key of this.tats.keys()) {
      if (this.tats.size <= keep) break;
      this.tats.delete(key);
    }
  }
}
