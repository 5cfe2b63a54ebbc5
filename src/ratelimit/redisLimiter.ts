/**
 * The Redis adapter of the RateLimiter port: one Lua script charges all of a request's buckets
 * atomically, on Redis's clock, so every API process shares one limit (and their clocks need not
 * agree). The script is sent by its SHA (EVALSHA) and in full (EVAL) only when Redis answers NOSCRIPT
 * (a restart or SCRIPT FLUSH).
 *
 * Redis unreachable, slow or failing: every call is bounded by `timeoutMs`; a failed call is answered
 * by the in-process limiter instead (each process then limits on its own: a limit of N allows up to N
 * per process) and Redis is left alone for `pauseAfterFailureMs`, so an outage costs requests no
 * latency. A warning is logged when that starts, and a note when Redis answers again.
 */
import Redis from "ioredis";
import type { Logger } from "../core/logger.ts";
import type { Bucket, InProcessRateLimiter, RateDecision, RateLimiter } from "./limiter.ts";

/**
 * KEYS: the buckets. ARGV[1]: now in microseconds, or '' for Redis's own clock (tests pass it);
 * ARGV[3i-1], ARGV[3i], ARGV[3i+1]: bucket i's limit, interval (µs) and cost (units). The steps are gcra() in gcra.ts, in the
 * same order, on integers, so both reach the same numbers. Returns {allowed, then per bucket: allowed,
 * remaining, reset µs, retry-after µs}. Buckets are written only when all allow, each expiring when it
 * is full again.
 */
export const GCRA_SCRIPT = `
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local out = {1}
local nexts = {}
for i = 1, #KEYS do
  local limit = tonumber(ARGV[3 * i - 1])
  local interval = tonumber(ARGV[3 * i])
  local cost = tonumber(ARGV[3 * i + 1])
  local window = limit * interval
  local from = tonumber(redis.call('GET', KEYS[i])) or now
  if from < now then from = now end
  local nxt = from + interval * cost
  if nxt - now > window then
    out[1] = 0
    table.insert(out, 0); table.insert(out, 0); table.insert(out, from - now); table.insert(out, nxt - window - now)
  else
    nexts[i] = nxt
    table.insert(out, 1); table.insert(out, math.floor((window - (nxt - now)) / interval)); table.insert(out, nxt - now); table.insert(out, 0)
  end
end
if out[1] == 1 then
  for i = 1, #KEYS do
    redis.call('SET', KEYS[i], string.format('%.0f', nexts[i]), 'PX', math.ceil((nexts[i] - now) / 1000))
  end
end
return out`;

const SCRIPT_SHA = new Bun.CryptoHasher("sha1").update(GCRA_SCRIPT).digest("hex");

export interface RedisRateLimiterOptions {
  url: string;
  /** The longest a call may take before the in-process limiter answers instead. */
  timeoutMs: number;
  /** Answers while Redis cannot. */
  fallback: InProcessRateLimiter;
  /** How long Redis is left alone after a failure. */
  pauseAfterFailureMs?: number;
  /** Prefix of the bucket keys. */
  prefix?: string;
  logger?: Logger;
}

export class RedisRateLimiter implements RateLimiter {
  readonly kind = "redis" as const;
  private readonly client: Redis;
  private readonly prefix: string;
  private readonly pauseMs: number;
  private pausedUntil = 0;
  private failing = false;

  constructor(private readonly options: RedisRateLimiterOptions) {
    this.prefix = options.prefix ?? "agentry:rl:";
    this.pauseMs = options.pauseAfterFailureMs ?? 2000;
    // No offline queue: while disconnected a call fails at once (and the fallback answers) instead of
    // waiting for a reconnect. Auto-pipelining sends the calls of one tick in one write.
    this.client = new Redis(options.url, {
      enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: options.timeoutMs, enableAutoPipelining: true,
    });
    this.client.on("error", (err) => options.logger?.debug("rate limiter: redis connection error", { error: err as Error }));
  }

  /** Resolves true once connected, or false after `timeoutMs` (calls until then use the fallback). */
  ready(timeoutMs = 2000): Promise<boolean> {
    if (this.client.status === "ready") return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.client.off("ready", onReady);
        resolve(ok);
      };
      const onReady = () => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.client.on("ready", onReady);
    });
  }

  consume(buckets: readonly Bucket[], now?: number): RateDecision | Promise<RateDecision> {
    if (this.pausedUntil > Date.now()) return this.options.fallback.consume(buckets);
    const args: Array<string | number> = [];
    for (const b of buckets) args.push(this.prefix + b.key);
    args.push(now === undefined ? "" : now);
    for (const b of buckets) args.push(b.limit, b.interval, b.cost ?? 1);
    return this.run(buckets.length, args).then(
      (reply) => {
        if (this.failing) {
          this.failing = false;
          this.options.logger?.info("rate limiter: redis answers again; limits are shared across processes again");
        }
        return decisionOf(reply, buckets.length);
      },
      (err) => {
        this.pausedUntil = Date.now() + this.pauseMs;
        if (!this.failing) {
          this.failing = true;
          this.options.logger?.warn("rate limiter: redis is unreachable; limiting in this process only until it answers", { error: err as Error });
        }
        return this.options.fallback.consume(buckets);
      },
    );
  }

  private async run(keys: number, args: Array<string | number>): Promise<number[]> {
    try {
      return (await this.client.evalsha(SCRIPT_SHA, keys, ...args)) as number[];
    } catch (err) {
      if (!String((err as Error)?.message).startsWith("NOSCRIPT")) throw err;
      return (await this.client.eval(GCRA_SCRIPT, keys, ...args)) as number[];
    }
  }

  async close(): Promise<void> {
    await Promise.race([this.client.quit().catch(() => {}), Bun.sleep(1000)]);
    this.client.disconnect();
  }
}

function decisionOf(reply: number[], count: number): RateDecision {
  const buckets = [];
  for (let i = 0; i < count; i++) {
    const at = 1 + i * 4;
    buckets.push({ allowed: reply[at] === 1, remaining: reply[at + 1]!, resetUs: reply[at + 2]!, retryAfterUs: reply[at + 3]! });
  }
  return { allowed: reply[0] === 1, buckets };
}
