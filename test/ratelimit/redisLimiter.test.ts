/**
 * The Redis limiter's script against a real redis-server: it reaches exactly the numbers of the pure
 * GCRA function, charges all buckets or none, holds under concurrent calls, survives a script cache
 * flush (EVALSHA → NOSCRIPT → EVAL), leaves keys that expire when full; and when Redis is gone or
 * stuck, the in-process limiter answers (bounded), with a warning.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import Redis from "ioredis";
import type { Logger } from "../../src/core/logger.ts";
import { gcra, intervalOf, MINUTE_US } from "../../src/ratelimit/gcra.ts";
import { InProcessRateLimiter, type Bucket } from "../../src/ratelimit/limiter.ts";
import { GCRA_SCRIPT, RedisRateLimiter } from "../../src/ratelimit/redisLimiter.ts";
import { startRedis, type RedisServer } from "../support/redis.ts";

let redis: RedisServer;
let raw: Redis;
const limiters: RedisRateLimiter[] = [];

beforeAll(async () => {
  redis = await startRedis();
  raw = new Redis(redis.url);
});
afterAll(async () => {
  for (const l of limiters) await l.close();
  raw?.disconnect();
  await redis?.stop();
});

/** A logger that keeps what it is told. */
function recordingLogger() {
  const lines: Array<{ level: string; msg: string }> = [];
  const logger: Logger = {
    debug: (msg) => lines.push({ level: "debug", msg }), info: (msg) => lines.push({ level: "info", msg }),
    warn: (msg) => lines.push({ level: "warn", msg }), error: (msg) => lines.push({ level: "error", msg }),
    showSecretOnce() {}, child: () => logger,
  };
  return { logger, lines };
}

/** A limiter of its own (its keys under its own prefix, unless given one to share). */
function limiter(options: { url?: string; timeoutMs?: number; pauseAfterFailureMs?: number; logger?: Logger; prefix?: string } = {}) {
  const l = new RedisRateLimiter({
    url: options.url ?? redis.url, timeoutMs: options.timeoutMs ?? 1000, fallback: new InProcessRateLimiter(1000),
    pauseAfterFailureMs: options.pauseAfterFailureMs ?? 50, prefix: options.prefix ?? `t${limiters.length}:`, ...(options.logger ? { logger: options.logger } : {}),
  });
  limiters.push(l);
  return l;
}

/** A limiter of its own, connected. */
async function connected(options: Parameters<typeof limiter>[0] = {}) {
  const l = limiter(options);
  expect(await l.ready()).toBe(true);
  return l;
}

const bucket = (key: string, limit: number): Bucket => ({ key, limit, interval: intervalOf(limit) });
const T0 = Date.now() * 1000;

describe("the script", () => {
  test("gives exactly what the pure function gives, step by step", async () => {
    const l = await connected();
    for (const limit of [1, 7, 10, 60, 1000]) {
      const b = bucket(`same-${limit}`, limit);
      let tat: number | undefined;
      let now = T0;
      // Bursts, pauses of odd lengths, and refusals, deterministically.
      for (let step = 0; step < 3 * limit + 20; step++) {
        now += step % 5 === 0 ? Math.floor(b.interval * 0.7) + (step % 3) : step % 11 === 0 ? 3 * b.interval + 17 : 0;
        const expected = gcra(tat, now, b.limit, b.interval);
        const got = await l.consume([b], now);
        expect(got.buckets[0]).toEqual({ allowed: expected.allowed, remaining: expected.remaining, resetUs: expected.resetUs, retryAfterUs: expected.retryAfterUs });
        expect(got.allowed).toBe(expected.allowed);
        if (expected.allowed) tat = expected.tat;
      }
    }
  });

  test("a cost of several units gives what the pure function gives, all or nothing", async () => {
    const l = await connected();
    const b = bucket("costly", 10);
    let tat: number | undefined;
    let now = T0;
    for (const [cost, wait] of [[3, 0], [5, 0], [3, 0], [11, 0], [2, 17], [4, b.interval * 2 + 5], [10, 0], [1, MINUTE_US]] as const) {
      now += wait;
      const expected = gcra(tat, now, b.limit, b.interval, cost);
      const got = await l.consume([{ ...b, cost }], now);
      expect(got.buckets[0]).toEqual({ allowed: expected.allowed, remaining: expected.remaining, resetUs: expected.resetUs, retryAfterUs: expected.retryAfterUs });
      if (expected.allowed) tat = expected.tat;
    }
  });

  test("charges every bucket or none", async () => {
    const l = await connected();
    const general = bucket("both:g", 5);
    const heavy = bucket("both:h", 2);
    expect((await l.consume([general, heavy], T0)).allowed).toBe(true);
    expect((await l.consume([general, heavy], T0)).allowed).toBe(true);
    const refused = await l.consume([general, heavy], T0);
    expect(refused.allowed).toBe(false);
    expect(refused.buckets.map((b) => b.allowed)).toEqual([true, false]);
    const after = [];
    for (let i = 0; i < 4; i++) after.push((await l.consume([general], T0)).allowed);
    expect(after).toEqual([true, true, true, false]); // 3 of 5 left: the refused call charged nothing
  });

  test("concurrent calls from two clients, on Redis's clock: exactly the limit passes", async () => {
    const a = await connected({ prefix: "two-clients:" });
    const b = await connected({ prefix: "two-clients:" });
    const shared = bucket("shared", 10); // one every 6 s: nothing refills while the calls run
    const outcomes = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).consume([shared])));
    expect(outcomes.filter((o) => o.allowed).length).toBe(10);
    expect(outcomes.filter((o) => o.allowed).map((o) => o.buckets[0]!.remaining).sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  test("keys expire when their bucket is whole again", async () => {
    const l = await connected();
    const b = bucket("expiring", 60);
    await l.consume([b]);
    const ttl = await raw.pttl(`t${limiters.indexOf(l)}:expiring`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(1000); // one request of 60 a minute: whole again within a second
    for (let i = 0; i < 59; i++) await l.consume([b]);
    expect(await raw.pttl(`t${limiters.indexOf(l)}:expiring`)).toBeLessThanOrEqual(MINUTE_US / 1000);
  });

  test("after the script cache is flushed, the script is sent again (NOSCRIPT → EVAL)", async () => {
    const { logger, lines } = recordingLogger();
    const l = await connected({ logger });
    const b = bucket("flushed", 3);
    expect((await l.consume([b], T0)).buckets[0]!.remaining).toBe(2);
    const sha = new Bun.CryptoHasher("sha1").update(GCRA_SCRIPT).digest("hex");
    expect(await raw.script("EXISTS", sha)).toEqual([1]);
    await raw.script("FLUSH");
    expect(await raw.script("EXISTS", sha)).toEqual([0]);
    expect((await l.consume([b], T0)).buckets[0]!.remaining).toBe(1);
    expect(await raw.script("EXISTS", sha)).toEqual([1]); // EVAL cached it again
    expect((await l.consume([b], T0)).buckets[0]!.remaining).toBe(0);
    expect(lines.filter((x) => x.level === "warn")).toEqual([]); // Redis answered every time
  });
});

describe("when Redis cannot answer", () => {
  test("nothing listening: this process's limiter answers at once, with one warning", async () => {
    const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = probe.port;
    probe.stop(true);
    const { logger, lines } = recordingLogger();
    const l = limiter({ url: `redis://127.0.0.1:${port}`, logger, pauseAfterFailureMs: 0 });
    const b = bucket("offline", 2);
    const outcomes = [];
    for (let i = 0; i < 3; i++) outcomes.push((await l.consume([b])).allowed);
    expect(outcomes).toEqual([true, true, false]); // still limited, by the fallback
    expect(lines.filter((x) => x.level === "warn").map((x) => x.msg)).toEqual(["rate limiter: redis is unreachable; limiting in this process only until it answers"]);
  });

  test("a stalled Redis: the call gives up after its timeout; a restarted one is used again", async () => {
    const { logger, lines } = recordingLogger();
    const l = await connected({ timeoutMs: 100, logger });
    const b = bucket("stall", 100);
    expect((await l.consume([b])).buckets[0]!.remaining).toBe(99); // by Redis
    const pauser = new Redis(redis.url);
    await pauser.call("CLIENT", "PAUSE", "1500", "ALL");
    const during = await l.consume([b]); // resolves: the timeout bounds it
    expect(during.allowed).toBe(true);
    expect(during.buckets[0]!.remaining).toBe(99); // the fallback's own bucket, new
    expect(lines.some((x) => x.level === "warn")).toBe(true);
    pauser.disconnect();
    // Redis restarts empty; the limiter reconnects and uses it again (bounded wait).
    await redis.restartEmpty();
    const deadline = Date.now() + 15_000;
    while (!lines.some((x) => x.level === "info") && Date.now() < deadline) {
      await l.consume([b]);
      await Bun.sleep(100);
    }
    expect(lines.filter((x) => x.level === "info").map((x) => x.msg)).toEqual(["rate limiter: redis answers again; limits are shared across processes again"]);
    raw.disconnect();
    raw = new Redis(redis.url);
  });
});
