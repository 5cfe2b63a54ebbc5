/**
 * API benchmarks, each against a baseline in the same run:
 * - cursor-event polls per second against a bare Elysia route answering a same-sized JSON body;
 * - message → JobCompleted latency (p50/p99) with the sandbox provider;
 * - poll cost as a job's history grows from 10 to 10,000 events (should stay flat).
 */
import { join } from "node:path";
import { timingSafeEqual } from "node:crypto";
import { UnauthorizedError } from "../src/core/errors.ts";
import { Elysia } from "elysia";
import { loadConfig } from "../src/config.ts";
import { silentLogger } from "../src/core/logger.ts";
import { newEventId } from "../src/core/ids.ts";
import { startServer } from "../src/main.ts";
import { compare, median, NO_RATE_LIMITS, percentile, tempDir, type Result } from "./lib.ts";

const KEY = "bench-key-0123456789abcdef";

/**
 * Requests per second with `concurrency` loops each issuing requests back to back for `count` total,
 * from a client in its own process (bench/loadClient.ts): in this process the client's work would
 * share the server's one JS thread and be counted against it.
 */
export async function throughput(url: string, count: number, concurrency: number, headers: Record<string, string> = {}): Promise<number> {
  const client = Bun.spawn(["bun", join(import.meta.dir, "loadClient.ts"), url, String(count), String(concurrency), ...Object.entries(headers).map(([k, v]) => `${k}:${v}`)], {
    stdout: "pipe", stderr: "inherit",
  });
  const timer = setTimeout(() => client.kill(), 120_000); // bounded, whatever happens
  const [out, status] = await Promise.all([new Response(client.stdout).text(), client.exited]);
  clearTimeout(timer);
  if (status !== 0) throw new Error(`load client failed (${status}) against ${url}`);
  return (JSON.parse(out) as { rps: number }).rps;
}

/** The same loop in this process, for short latency probes where a process start would dominate. */
async function inProcess(url: string, count: number, concurrency: number, headers: Record<string, string> = {}): Promise<number> {
  let next = 0;
  const start = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next++ < count) {
      const res = await fetch(url, { headers });
      if (res.status !== 200) throw new Error(`${url}: ${res.status}`);
      await res.arrayBuffer();
    }
  }));
  return (count / (performance.now() - start)) * 1000;
}

/** The data-plane check before multi-tenancy: one key, compared by SHA-256 digest in constant time. */
function singleKeyAuthenticator(expected: string): (request: Request) => void {
  const digest = (value: string) => Buffer.from(new Bun.CryptoHasher("sha256").update(value).digest());
  const want = digest(expected);
  return (request) => {
    const key = request.headers.get("x-api-key") ?? "";
    if (!timingSafeEqual(digest(key), want)) throw new UnauthorizedError("Invalid API key");
  };
}

export async function apiBenchmarks(quick: boolean): Promise<Result[]> {
  const results: Result[] = [];
  const t = tempDir("api");
  const server = await startServer(loadConfig({ PORT: "0", DATA_DIR: t.dir, API_KEY: KEY, SQLITE_SYNCHRONOUS: "normal", SANDBOX_CHUNK_DELAY_MS: "0", ...NO_RATE_LIMITS }), silentLogger);
  const headers = { "x-api-key": KEY, "content-type": "application/json" };
  const post = async (path: string, body: unknown) => (await fetch(server.url + path, { method: "POST", headers, body: JSON.stringify(body) })).json() as Promise<any>;

  // A finished job to poll.
  const session = await post("/v1/sessions", { user_id: "bench" });
  const reply = await post(`/v1/sessions/${session.id}/messages`, { content: "hello", wait: true });
  const pollUrl = `${server.url}/v1/jobs/${reply.job_id}/events?since=2`;
  const body = await (await fetch(pollUrl, { headers })).text();
  const bare = new Elysia().get("/events", () => new Response(body, { headers: { "content-type": "application/json" } })).listen({ port: 0, hostname: "127.0.0.1" });
  const requests = quick ? 2000 : 40_000;
  const polls = await compare(
    quick ? 1 : 5,
    () => throughput(pollUrl, requests, 32, headers),
    () => throughput(`http://127.0.0.1:${bare.server!.port}/events`, requests, 32),
  );
  results.push({ name: "GET /v1/jobs/{id}/events (tail poll, 32 clients)", unit: "req/s", ...polls, baselineName: "bare Elysia route, same body", target: 0.6 });
  bare.stop(true);

  // What multi-tenancy costs a poll: the same server with the single-key check it had before (one
  // app, one key compared by digest), against the tenant directory's check (hash, in-memory lookup,
  // scope, per-request app context).
  const t2 = tempDir("api-single-key");
  const singleKey = await startServer(loadConfig({ PORT: "0", DATA_DIR: t2.dir, API_KEY: KEY, SQLITE_SYNCHRONOUS: "normal", SANDBOX_CHUNK_DELAY_MS: "0", ...NO_RATE_LIMITS }), silentLogger, {
    authenticate: singleKeyAuthenticator(KEY),
  });
  const post2 = async (path: string, body: unknown) => (await fetch(singleKey.url + path, { method: "POST", headers, body: JSON.stringify(body) })).json() as Promise<any>;
  const session2 = await post2("/v1/sessions", { user_id: "bench" });
  const reply2 = await post2(`/v1/sessions/${session2.id}/messages`, { content: "hello", wait: true });
  const tenancy = await compare(
    quick ? 1 : 5,
    () => throughput(pollUrl, requests, 32, headers),
    () => throughput(`${singleKey.url}/v1/jobs/${reply2.job_id}/events?since=2`, requests, 32, headers),
  );
  results.push({ name: "tail poll, tenant-directory auth", unit: "req/s", ...tenancy, baselineName: "the same server with the single-key check of before", target: 0.95 });
  await singleKey.shutdown("bench");
  t2.remove();

  // Latency of a whole turn.
  const turns = quick ? 30 : 300;
  const latencies: number[] = [];
  for (let i = 0; i < turns; i++) {
    const s = await post("/v1/sessions", { user_id: "latency" });
    const started = performance.now();
    const r = await post(`/v1/sessions/${s.id}/messages`, { content: `turn ${i}`, wait: true });
    if (r.status !== "completed") throw new Error(`turn ended ${r.status}`);
    latencies.push(performance.now() - started);
  }
  results.push({ name: "message → JobCompleted, sandbox provider, p50", unit: "ms", value: median(latencies) });
  results.push({ name: "message → JobCompleted, sandbox provider, p99", unit: "ms", value: percentile(latencies, 99) });

  // Poll cost against history length: jobs with synthetic histories of 10 … 10,000 events.
  const sizes = quick ? [10, 1000] : [10, 100, 1000, 10_000];
  const costs = new Map<number, number>();
  for (const size of sizes) {
    const jobId = `job_bench_${size}`;
    const stream = `job-${jobId}`;
    await server.ctx.store.appendToStream(stream, [{ id: newEventId(), type: "JobQueued", data: {
      job_id: jobId, kind: "run", session_id: null, message_id: null, agent_id: "agt_default", user_id: "bench",
      input: { content: "x", attachments: [], media_url: null, context: null }, model: null, output_schema: null,
    }, metadata: { app_id: "app_default" } }], { expectedRevision: "no_stream" });
    for (let i = 1; i < size; i += 500) {
      const n = Math.min(500, size - i);
      await server.ctx.store.appendToStream(stream, Array.from({ length: n }, (_, k) => ({ id: newEventId(), type: "TextEmitted", data: { step: 1, content: `chunk ${i + k} `.repeat(4) } })));
    }
    const url = `${server.url}/v1/jobs/${jobId}/events?since=${size - 5}`;
    await inProcess(url, 50, 1, headers); // warm the job's state cache, as a polling client would
    costs.set(size, 1000 / (await inProcess(url, quick ? 300 : 2000, 1, headers)));
  }
  const smallest = costs.get(sizes[0]!)!;
  for (const size of sizes.slice(1)) {
    results.push({ name: `tail poll latency, ${size.toLocaleString("en-US")}-event job`, unit: "ms", value: costs.get(size)!, baselineName: `${sizes[0]}-event job`, baseline: smallest });
  }

  await server.shutdown("bench");
  t.remove();
  return results;
}
