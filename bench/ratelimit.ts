/**
 * Rate-limit benchmarks, each against a baseline in the same run:
 * - the tail poll (`GET /v1/jobs/{id}/events`) with the in-process limiter charging every request,
 *   against the same server with limits off (target: under 5% cost, ratio ≥ 0.95); and, for the
 *   record, with the Redis limiter;
 * - the Redis limiter's checks per second (the GCRA script by EVALSHA, one bucket a check) against
 *   raw Redis round trips (`INCR`) from the same kind of client, at the same concurrency.
 */
import Redis from "ioredis";
import { loadConfig } from "../src/config.ts";
import { silentLogger } from "../src/core/logger.ts";
import { startServer, type RunningServer } from "../src/main.ts";
import { intervalOf } from "../src/ratelimit/gcra.ts";
import { InProcessRateLimiter } from "../src/ratelimit/limiter.ts";
import { RedisRateLimiter } from "../src/ratelimit/redisLimiter.ts";
import { startRedis } from "../test/support/redis.ts";
import { throughput } from "./api.ts";
import { compare, NO_RATE_LIMITS, tempDir, type Result } from "./lib.ts";

const KEY = "bench-key-0123456789abcdef";
/** As high as a limit goes: every poll is charged and none refused. */
const HIGH_LIMITS = { RATE_LIMIT_PER_MINUTE: "1000000", RATE_LIMIT_HEAVY_PER_MINUTE: "1000000" };

/** A server with `env`, and the poll URL of a finished job on it. */
async function pollTarget(label: string, env: Record<string, string>): Promise<{ server: RunningServer; url: string; remove(): void }> {
  const t = tempDir(label);
  const server = await startServer(loadConfig({ PORT: "0", DATA_DIR: t.dir, API_KEY: KEY, SQLITE_SYNCHRONOUS: "normal", SANDBOX_CHUNK_DELAY_MS: "0", ...env }), silentLogger);
  const headers = { "x-api-key": KEY, "content-type": "application/json" };
  const post = async (path: string, body: unknown) => (await fetch(server.url + path, { method: "POST", headers, body: JSON.stringify(body) })).json() as Promise<any>;
  const session = await post("/v1/sessions", { user_id: "bench" });
  const reply = await post(`/v1/sessions/${session.id}/messages`, { content: "hello", wait: true });
  if (reply.status !== "completed") throw new Error(`bench turn ended ${reply.status}`);
  return { server, url: `${server.url}/v1/jobs/${reply.job_id}/events?since=2`, remove: t.remove };
}

/** Polls answered per CPU-second of this process (the servers'; the load client is another process). */
async function pollsPerCpuSecond(url: string, count: number, headers: Record<string, string>): Promise<number> {
  const before = process.cpuUsage();
  await throughput(url, count, 32, headers);
  const used = process.cpuUsage(before);
  return count / ((used.user + used.system) / 1e6);
}

/**
 * What the six headers cost by themselves, with no server logic at all: the same small JSON answer
 * from a bare Bun.serve, with and without them (the floor under the limiter's ratio above).
 */
async function headerFloor(count: number): Promise<{ value: number; baseline: number }> {
  const body = JSON.stringify({ job_id: "job_bench", status: "completed", error: null, cursor: 5, done: true, approval_requested: false, approved: null, events: [] });
  const plain = () => ({ "content-type": "application/json;charset=utf-8", "x-request-id": crypto.randomUUID() });
  const limited = () => ({
    ...plain(), "ratelimit-limit": "1000000", "ratelimit-remaining": "999999", "ratelimit-reset": "1",
    "x-ratelimit-limit": "1000000", "x-ratelimit-remaining": "999999", "x-ratelimit-reset": String(Math.ceil(Date.now() / 1000)),
  });
  const without = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response(body, { headers: plain() }) });
  const withThem = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response(body, { headers: limited() }) });
  try {
    return await compare(3, () => throughput(`http://127.0.0.1:${withThem.port}/`, count, 32), () => throughput(`http://127.0.0.1:${without.port}/`, count, 32));
  } finally {
    without.stop(true);
    withThem.stop(true);
  }
}

/** `count` calls of `op` over `concurrency` loops, back to back: calls per second. */
async function concurrently(count: number, concurrency: number, op: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const start = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    for (let i = next++; i < count; i = next++) await op(i);
  }));
  return (count / (performance.now() - start)) * 1000;
}

export async function rateLimitBenchmarks(quick: boolean): Promise<Result[]> {
  const results: Result[] = [];
  const redis = await startRedis();
  const headers = { "x-api-key": KEY };
  const requests = quick ? 2000 : 40_000;
  const rounds = quick ? 1 : 5;

  const off = await pollTarget("rl-off", { ...NO_RATE_LIMITS });
  const local = await pollTarget("rl-local", HIGH_LIMITS);
  const shared = await pollTarget("rl-redis", { ...HIGH_LIMITS, REDIS_URL: redis.url });
  try {
    const first = await fetch(local.url, { headers });
    if (first.headers.get("ratelimit-limit") !== "1000000") throw new Error("the limited server does not limit");
    const inProcess = await compare(rounds, () => throughput(local.url, requests, 32, headers), () => throughput(off.url, requests, 32, headers));
    results.push({ name: "tail poll, in-process rate limiter", unit: "req/s", ...inProcess, baselineName: "the same poll, limits off", target: 0.95 });
    // The load client shares the machine's two cores and parses every header the server adds: the
    // server's own CPU per poll says what the limiter costs the server itself.
    const cpu = await compare(rounds, () => pollsPerCpuSecond(local.url, requests, headers), () => pollsPerCpuSecond(off.url, requests, headers));
    results.push({ name: "tail poll, server CPU: in-process rate limiter", unit: "polls/CPU-s", ...cpu, baselineName: "the same poll, limits off", target: 0.95 });
    const floor = await headerFloor(requests);
    results.push({ name: "bare Bun.serve answer + the six RateLimit headers", unit: "req/s", ...floor, baselineName: "the same answer without them" });
    const viaRedis = await compare(rounds, () => throughput(shared.url, requests, 32, headers), () => throughput(off.url, requests, 32, headers));
    results.push({ name: "tail poll, Redis rate limiter", unit: "req/s", ...viaRedis, baselineName: "the same poll, limits off" });
  } finally {
    for (const target of [off, local, shared]) {
      await target.server.shutdown("bench");
      target.remove();
    }
  }

  // The limiter's own throughput: checks against many callers' buckets, none refused.
  const checks = quick ? 20_000 : 200_000;
  const concurrency = 64;
  const limiter = new RedisRateLimiter({ url: redis.url, timeoutMs: 2000, fallback: new InProcessRateLimiter(10), pauseAfterFailureMs: 60_000, prefix: "bench:rl:" });
  if (!(await limiter.ready())) throw new Error("redis-server is not reachable");
  const raw = new Redis(redis.url, { maxRetriesPerRequest: 0, enableAutoPipelining: true }); // pipelined as the limiter is
  await raw.ping();
  const limit = 1_000_000;
  const interval = intervalOf(limit);
  let fallbacks = 0;
  const check = async (i: number) => {
    const d = await limiter.consume([{ key: `{caller-${i % 1000}}:g`, limit, interval }]);
    if (!d.allowed) fallbacks++;
  };
  const viaScript = await compare(quick ? 1 : 3, () => concurrently(checks, concurrency, check), () => concurrently(checks, concurrency, (i) => raw.incr(`bench:raw:{caller-${i % 1000}}`)));
  if (fallbacks > 0) throw new Error(`${fallbacks} checks were refused: the limit is not high enough for the bench`);
  results.push({ name: `Redis limiter: checks/s (GCRA script, ${concurrency} concurrent)`, unit: "checks/s", ...viaScript, baselineName: "raw INCR round trips, same client" });
  const inMemory = new InProcessRateLimiter(100_000);
  const start = performance.now();
  const n = quick ? 200_000 : 2_000_000;
  for (let i = 0; i < n; i++) inMemory.consume([{ key: `{caller-${i % 1000}}:g`, limit, interval }]);
  results.push({ name: "in-process limiter: checks/s (one thread)", unit: "checks/s", value: (n / (performance.now() - start)) * 1000 });

  await limiter.close();
  raw.disconnect();
  await redis.stop();
  return results;
}
