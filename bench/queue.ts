/**
 * Job-queue and multi-process benchmarks:
 * - jobs/s through the Redis adapter (enqueue, lease, handler, ack) against raw XADD / XREADGROUP /
 *   XACK on the same redis-server;
 * - end-to-end turns/s with an API process and two worker processes against the one-process shape.
 */
import Redis from "ioredis";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RedisJobQueue } from "../src/jobs/redisQueue.ts";
import { startRedis } from "../test/support/redis.ts";
import { median, NO_RATE_LIMITS, type Result } from "./lib.ts";

const KEY = "bench-key-0123456789abcdef";

async function queueThroughput(url: string, n: number, stream: string): Promise<number> {
  const queue = new RedisJobQueue({ url, stream, blockMs: 50 });
  let done = 0;
  const start = performance.now();
  for (let i = 0; i < n; i += 500) await Promise.all(Array.from({ length: Math.min(500, n - i) }, (_, k) => queue.enqueue(`job_${i + k}`)));
  await new Promise<void>((resolve) => {
    queue.consume(async () => {
      if (++done === n) resolve();
    }, 16);
  });
  const rate = (n / (performance.now() - start)) * 1000;
  await queue.close();
  return rate;
}

async function rawThroughput(url: string, n: number, stream: string): Promise<number> {
  const r = new Redis(url);
  await r.xgroup("CREATE", stream, "g", "0", "MKSTREAM");
  const start = performance.now();
  for (let i = 0; i < n; i += 500) await Promise.all(Array.from({ length: Math.min(500, n - i) }, (_, k) => r.xadd(stream, "*", "job", `job_${i + k}`)));
  let done = 0;
  while (done < n) {
    const read = (await r.xreadgroup("GROUP", "g", "c", "COUNT", 16, "BLOCK", 50, "STREAMS", stream, ">")) as Array<[string, Array<[string, string[]]>]> | null;
    const entries = read?.[0]?.[1] ?? [];
    await Promise.all(entries.map(([id]) => r.multi().xack(stream, "g", id).xdel(stream, id).exec()));
    done += entries.length;
  }
  const rate = (n / (performance.now() - start)) * 1000;
  r.disconnect();
  return rate;
}

/** Starts a server process (its readiness is checked through /health). */
function spawn(env: Record<string, string>) {
  return Bun.spawn(["bun", join(import.meta.dir, "../src/main.ts")], {
    env: { ...process.env, PORT: "0", API_KEY: KEY, SQLITE_SYNCHRONOUS: "normal", SANDBOX_CHUNK_DELAY_MS: "0", LOG_LEVEL: "warn", ...NO_RATE_LIMITS, ...env },
    stdout: "ignore", stderr: "inherit",
  });
}

function freePort(): number {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}

async function turnsPerSecond(url: string, sessions: number, turns: number): Promise<number> {
  const headers = { "x-api-key": KEY, "content-type": "application/json" };
  const post = async (path: string, body: unknown) => (await fetch(url + path, { method: "POST", headers, body: JSON.stringify(body) })).json() as Promise<any>;
  const ids = await Promise.all(Array.from({ length: sessions }, async () => (await post("/v1/sessions", { user_id: "bench" })).id as string));
  const start = performance.now();
  await Promise.all(ids.map(async (sid) => {
    for (let t = 0; t < turns; t++) {
      const r = await post(`/v1/sessions/${sid}/messages`, { content: `turn ${t}`, wait: true, wait_timeout_s: 120 });
      if (r.status !== "completed") throw new Error(`turn ended ${r.status}`);
    }
  }));
  return ((sessions * turns) / (performance.now() - start)) * 1000;
}

/** Median latency of `turns` turns sent one after another on one session (wait: true). */
async function turnLatency(url: string, turns: number): Promise<number> {
  const headers = { "x-api-key": KEY, "content-type": "application/json" };
  const post = async (path: string, body: unknown) => (await fetch(url + path, { method: "POST", headers, body: JSON.stringify(body) })).json() as Promise<any>;
  const sid = (await post("/v1/sessions", { user_id: "latency" })).id as string;
  const times: number[] = [];
  for (let t = 0; t < turns; t++) {
    const started = performance.now();
    const r = await post(`/v1/sessions/${sid}/messages`, { content: `turn ${t}`, wait: true, wait_timeout_s: 60 });
    if (r.status !== "completed") throw new Error(`turn ended ${r.status}`);
    times.push(performance.now() - started);
  }
  return median(times);
}

async function waitHealthy(port: number): Promise<string> {
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 400; i++) {
    try {
      if ((await fetch(`${url}/health`)).ok) return url;
    } catch { /* not yet */ }
    await Bun.sleep(25);
  }
  throw new Error("server did not start");
}

export async function queueBenchmarks(quick: boolean): Promise<Result[]> {
  const results: Result[] = [];
  const redis = await startRedis();
  const n = quick ? 2000 : 20_000;
  const raw = await rawThroughput(redis.url, n, "bench:raw");
  const adapter = await queueThroughput(redis.url, n, "bench:adapter");
  results.push({ name: "Redis job queue: enqueue → lease → handler → ack", unit: "jobs/s", value: adapter, baselineName: "raw XADD/XREADGROUP/XACK", baseline: raw });

  const sessions = quick ? 20 : 100;
  const turns = quick ? 2 : 5;
  const dataDir = mkdtempSync(join(tmpdir(), "agentry-bench-roles-"));
  const one = mkdtempSync(join(tmpdir(), "agentry-bench-one-"));
  const ports = [freePort(), freePort()];
  const procs = [spawn({ DATA_DIR: one, PORT: String(ports[0]) })];
  const singleUrl = await waitHealthy(ports[0]!);
  const single = await turnsPerSecond(singleUrl, sessions, turns);
  const latencyTurns = quick ? 10 : 40;
  const singleLatency = await turnLatency(singleUrl, latencyTurns);
  procs.push(
    spawn({ DATA_DIR: dataDir, PORT: String(ports[1]), ROLE: "api", REDIS_URL: redis.url, READ_MODEL_FILE: join(dataDir, "rm-api.sqlite") }),
    spawn({ DATA_DIR: dataDir, ROLE: "worker", REDIS_URL: redis.url, READ_MODEL_FILE: join(dataDir, "rm-w1.sqlite") }),
    spawn({ DATA_DIR: dataDir, ROLE: "worker", REDIS_URL: redis.url, READ_MODEL_FILE: join(dataDir, "rm-w2.sqlite") }),
  );
  const apiUrl = await waitHealthy(ports[1]!);
  await Bun.sleep(1000); // let the workers finish starting
  const split = await turnsPerSecond(apiUrl, sessions, turns);
  results.push({ name: `turns/s, API + 2 workers over Redis (${sessions} sessions × ${turns} turns)`, unit: "turns/s", value: split, baselineName: "one process", baseline: single });
  // Default poll interval: a turn crosses processes several times, woken by the append signal.
  results.push({ name: `one turn's latency (p50 of ${latencyTurns}), API + 2 workers`, unit: "ms", value: await turnLatency(apiUrl, latencyTurns), baselineName: "one process", baseline: singleLatency });
  for (const p of procs) p.kill("SIGKILL");
  await Promise.all(procs.map((p) => p.exited));
  await redis.stop();
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(one, { recursive: true, force: true });
  return results;
}
