/**
 * GCRA (the generic cell rate algorithm), the maths every rate limiter here shares: pure, with the
 * clock passed in. A bucket's whole state is one number, its theoretical arrival time (TAT): when it
 * would be full again. Times are integer microseconds, so every step is exact in a double (and the
 * Redis script, which repeats these steps in Lua, reaches the same numbers).
 *
 * `limit` a minute means: a burst of up to `limit` at once, then one more every `interval`
 * (60 s / limit, rounded down to a whole microsecond). A refused request changes nothing. A request may
 * cost more than one unit (`cost`): it moves the TAT `cost` intervals at once, all or nothing.
 */

export const MINUTE_US = 60_000_000;

/** The emission interval of `limit` requests a minute: whole microseconds, at least 1. */
export const intervalOf = (limitPerMinute: number): number => Math.max(1, Math.floor(MINUTE_US / limitPerMinute));

export interface GcraOutcome {
  allowed: boolean;
  /** The bucket's TAT after this request (unchanged when refused). */
  tat: number;
  /** Requests that may still be made at once after this one (0 when refused). */
  remaining: number;
  /** Microseconds until the bucket is full again (every request of the limit available). */
  resetUs: number;
  /** Microseconds until a request would be allowed (0 when allowed). */
  retryAfterUs: number;
}

/**
 * One request of `cost` units (default 1) against a bucket whose TAT is `tat` (undefined: a new, full
 * bucket) at `now`. Allowed when the TAT after it is within `limit * interval` of now; the remaining
 * count is how many more intervals fit in that window. A cost above `limit` is never allowed.
 */
export function gcra(tat: number | undefined, now: number, limit: number, interval: number, cost = 1): GcraOutcome {
  const window = limit * interval;
  const from = tat === undefined || tat < now ? now : tat;
  const next = from + interval * cost;
  if (next - now > window) {
    return { allowed: false, tat: from, remaining: 0, resetUs: from - now, retryAfterUs: next - window - now };
  }
  return { allowed: true, tat: next, remaining: Math.floor((window - (next - now)) / interval), resetUs: next - now, retryAfterUs: 0 };
}

/** Whole seconds for a header: rounded up, never below `min`. */
export const secondsOf = (us: number, min = 0): number => Math.max(min, Math.ceil(us / 1_000_000));
