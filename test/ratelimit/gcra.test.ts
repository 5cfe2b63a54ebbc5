/**
 * The GCRA maths with an injected clock: a burst of the limit at once, then one per interval; what is
 * left, when it is whole again, and when to retry; the in-process limiter's all-or-nothing charge and
 * its bounded memory.
 */
import { describe, expect, test } from "bun:test";
import { gcra, intervalOf, MINUTE_US, secondsOf } from "../../src/ratelimit/gcra.ts";
import { InProcessRateLimiter } from "../../src/ratelimit/limiter.ts";

const T0 = 1_700_000_000_000_000; // µs: an ordinary wall-clock time
const SECOND = 1_000_000;

/** Runs `n` requests at `now` against one bucket, returning the outcomes and the final TAT. */
function burst(tat: number | undefined, now: number, limit: number, n: number) {
  const outcomes = [];
  for (let i = 0; i < n; i++) {
    const o = gcra(tat, now, limit, intervalOf(limit));
    if (o.allowed) tat = o.tat;
    outcomes.push(o);
  }
  return { outcomes, tat };
}

describe("gcra", () => {
  test("a new bucket allows a burst of exactly the limit, counting remaining down to 0", () => {
    const { outcomes } = burst(undefined, T0, 60, 61);
    expect(outcomes.slice(0, 60).every((o) => o.allowed)).toBe(true);
    expect(outcomes.slice(0, 60).map((o) => o.remaining)).toEqual(Array.from({ length: 60 }, (_, i) => 59 - i));
    expect(outcomes[60]).toMatchObject({ allowed: false, remaining: 0 });
  });

  test("after the burst, one more every interval (60 a minute: one a second)", () => {
    let { tat } = burst(undefined, T0, 60, 60);
    // Just before a second has passed: still refused, and told to retry in (just under) a second.
    const early = gcra(tat, T0 + SECOND - 1, 60, intervalOf(60));
    expect(early).toMatchObject({ allowed: false, retryAfterUs: 1 });
    const onTime = gcra(tat, T0 + SECOND, 60, intervalOf(60));
    expect(onTime).toMatchObject({ allowed: true, remaining: 0 });
    tat = onTime.tat;
    expect(gcra(tat, T0 + SECOND, 60, intervalOf(60)).allowed).toBe(false);
    // After a quiet minute the bucket is whole again.
    expect(gcra(tat, T0 + SECOND + MINUTE_US, 60, intervalOf(60))).toMatchObject({ allowed: true, remaining: 59 });
  });

  test("refill is proportional: half a minute after a burst of 10/min, 5 are back", () => {
    const { tat } = burst(undefined, T0, 10, 10);
    const later = burst(tat, T0 + 30 * SECOND, 10, 6);
    expect(later.outcomes.map((o) => o.allowed)).toEqual([true, true, true, true, true, false]);
    expect(later.outcomes[0]!.remaining).toBe(4);
  });

  test("Retry-After is when the next request would pass, in whole seconds, at least 1", () => {
    const { tat, outcomes } = burst(undefined, T0, 10, 11);
    const refused = outcomes[10]!;
    expect(refused.retryAfterUs).toBe(6 * SECOND); // 10 a minute: one every 6 s
    expect(secondsOf(refused.retryAfterUs, 1)).toBe(6);
    // Part of a second rounds up; a refusal never says 0.
    expect(secondsOf(gcra(tat, T0 + 5.5 * SECOND, 10, intervalOf(10)).retryAfterUs, 1)).toBe(1);
    expect(secondsOf(1, 1)).toBe(1);
    expect(secondsOf(0, 1)).toBe(1);
  });

  test("reset is when the bucket is whole again; a refusal changes nothing", () => {
    const first = gcra(undefined, T0, 10, intervalOf(10));
    expect(first.resetUs).toBe(6 * SECOND);
    const { tat, outcomes } = burst(undefined, T0, 10, 11);
    expect(outcomes[9]!.resetUs).toBe(MINUTE_US);
    expect(outcomes[10]).toMatchObject({ allowed: false, tat, resetUs: MINUTE_US });
    expect(gcra(tat, T0 + 15 * SECOND, 10, intervalOf(10)).resetUs).toBe(MINUTE_US - 15 * SECOND + 6 * SECOND);
  });

  test("limits that do not divide a minute: the burst is still exactly the limit", () => {
    for (const limit of [7, 13, 999, 1_000_000]) {
      const { outcomes } = burst(undefined, T0, limit, limit + 1);
      expect(outcomes.filter((o) => o.allowed).length).toBe(limit);
      expect(outcomes[limit - 1]!.remaining).toBe(0);
      expect(outcomes[0]!.remaining).toBe(limit - 1);
    }
  });
});

describe("the in-process limiter", () => {
  const bucket = (key: string, limit: number) => ({ key, limit, interval: intervalOf(limit) });

  test("charges every bucket or none: a refusal by one leaves the other untouched", () => {
    const limiter = new InProcessRateLimiter(1000);
    const general = bucket("k:g", 5);
    const heavy = bucket("k:h", 2);
    expect(limiter.consume([general, heavy], T0).allowed).toBe(true);
    expect(limiter.consume([general, heavy], T0).allowed).toBe(true);
    const refused = limiter.consume([general, heavy], T0);
    expect(refused.allowed).toBe(false);
    expect(refused.buckets.map((b) => b.allowed)).toEqual([true, false]);
    // The general budget was not charged by the refused call: 3 of 5 are still there.
    const after = [1, 2, 3, 4].map(() => limiter.consume([general], T0).allowed);
    expect(after).toEqual([true, true, true, false]);
  });

  test("a bucket's cost takes that many units at once, or none", () => {
    const limiter = new InProcessRateLimiter(1000);
    const heavy = bucket("c:h", 4);
    expect(limiter.consume([{ ...heavy, cost: 3 }], T0)).toMatchObject({ allowed: true, buckets: [{ remaining: 1 }] });
    // Two more do not fit in the one left: refused, and nothing charged.
    expect(limiter.consume([{ ...heavy, cost: 2 }], T0).allowed).toBe(false);
    expect(limiter.consume([heavy], T0)).toMatchObject({ allowed: true, buckets: [{ remaining: 0 }] });
    // More than the limit never fits, even in a whole bucket.
    expect(new InProcessRateLimiter(1000).consume([{ ...heavy, cost: 5 }], T0).allowed).toBe(false);
  });

  test("separate keys are separate budgets", () => {
    const limiter = new InProcessRateLimiter(1000);
    expect(limiter.consume([bucket("a", 1)], T0).allowed).toBe(true);
    expect(limiter.consume([bucket("a", 1)], T0).allowed).toBe(false);
    expect(limiter.consume([bucket("b", 1)], T0).allowed).toBe(true);
  });

  test("memory is bounded: past the cap, full buckets go first, then the least recently used", () => {
    let now = T0;
    const limiter = new InProcessRateLimiter(100, () => now);
    for (let i = 0; i < 1000; i++) limiter.consume([bucket(`caller-${i}`, 60)]);
    expect(limiter.size).toBeLessThanOrEqual(100);
    // A busy caller keeps its state while others come and go.
    const busy = bucket("busy", 3);
    for (let i = 0; i < 3; i++) limiter.consume([busy]);
    for (let i = 0; i < 50; i++) {
      limiter.consume([bucket(`passer-${i}`, 60)]);
      expect(limiter.consume([busy]).allowed).toBe(false);
    }
    // A minute later every bucket is full again: the next sweep drops them all but the new ones.
    now += 2 * MINUTE_US;
    for (let i = 0; i < 101; i++) limiter.consume([bucket(`late-${i}`, 60)]);
    expect(limiter.size).toBeLessThanOrEqual(100);
  });
});
