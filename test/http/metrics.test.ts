/**
 * `/metrics` and the access log, on a real server on a real port: the series after known traffic
 * (a sandbox turn, a model call that fails, polls, an SSE stream), who may scrape, and the log lines
 * each request leaves, with their request id, through the real logger.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Elysia } from "elysia";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../src/config.ts";
import { createLogger } from "../../src/core/logger.ts";
import { startServer, type RunningServer } from "../../src/main.ts";
import { api, TEST_KEY, type Api } from "../support/api.ts";
import { startOpenAiWireServer, type WireServer } from "../support/llmWireServers.ts";
import { startRedis, type RedisServer } from "../support/redis.ts";

const ROOT = "root-token-0123456789abcdef";
const METRICS_TOKEN = "metrics-token-0123456789";

/** One sample's value from the exposition text; undefined when the series is absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const m of (match[3] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) got[m[1]!] = m[2]!;
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(match[4]);
  }
  return undefined;
}

/** Waits (bounded) until `check` holds on a fresh scrape; returns that scrape. */
async function scrapeUntil(scrape: () => Promise<string>, check: (text: string) => boolean, timeoutMs = 10_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let text = await scrape();
  while (!check(text) && Date.now() < deadline) {
    await Bun.sleep(20);
    text = await scrape();
  }
  return text;
}

describe("metrics and access log", () => {
  let wire: WireServer;
  let server: RunningServer;
  let dataDir: string;
  let client: Api;
  const lines: Array<Record<string, any>> = [];
  const raw: string[] = [];
  const scrape = async (token = ROOT) => {
    const res = await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    return res.text();
  };

  beforeAll(async () => {
    wire = startOpenAiWireServer();
    dataDir = mkdtempSync(join(tmpdir(), "agentry-metrics-"));
    const config = loadConfig({
      PORT: "0", DATA_DIR: dataDir, SQLITE_SYNCHRONOUS: "normal", RATE_LIMIT_PER_MINUTE: "0", RATE_LIMIT_HEAVY_PER_MINUTE: "0",
      API_KEY: TEST_KEY, ADMIN_TOKEN: ROOT, METRICS_TOKEN, METRICS_PORT: "0",
      LLM_PROVIDER: "openai", LLM_API_KEY: "sk-live-secret-key", LLM_MODEL: "model-x", LLM_BASE_URL: wire.baseURL,
      SANDBOX_CHUNK_DELAY_MS: "0",
    });
    const logger = createLogger("debug", {}, (line) => {
      raw.push(line);
      lines.push(JSON.parse(line));
    });
    // A route that logs after an await, naming no request id itself.
    const routeLog = logger.child({ component: "test-route" });
    const logging = new Elysia().get("/v1/test/log-inside", async ({ request }) => {
      await Bun.sleep(Math.random() * 5);
      routeLog.warn("logged inside a handler", { seen: request.headers.get("x-request-id") });
      return { ok: true };
    });
    server = await startServer(config, logger, { plugins: [logging] });
    client = api(server.url);
  });
  afterAll(async () => {
    await server?.shutdown("test");
    wire?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test("requests are counted by route pattern and status, exactly", async () => {
    const before = await scrape();
    const route = "/v1/jobs/:job_id";
    const was = sample(before, "agentry_http_request_duration_seconds_count", { method: "GET", route, status: "404" }) ?? 0;
    for (let i = 0; i < 3; i++) expect((await client.get(`/v1/jobs/job_missing_${i}`)).status).toBe(404);
    const after = await scrape();
    expect(sample(after, "agentry_http_request_duration_seconds_count", { method: "GET", route, status: "404" })).toBe(was + 3);
    // The pattern, never the raw path with its ids.
    expect(after).not.toContain("job_missing_");
    expect(sample(after, "agentry_http_request_duration_seconds_bucket", { method: "GET", route, status: "404", le: "+Inf" })).toBe(was + 3);
  });

  test("a sandbox turn, a model call and a failing one show in the append, model, job and projection series", async () => {
    const sandbox = await client.post("/v1/agents", { name: "Sandboxed", model: { provider: "sandbox" } });
    expect(sandbox.status).toBe(201);
    const sid = (await client.post("/v1/sessions", { user_id: "u", agent_id: sandbox.body.id })).body.id;
    const turn = await client.post(`/v1/sessions/${sid}/messages`, { content: "hello", wait: true });
    expect(turn.body.status).toBe("completed");

    const before = await scrape();
    const tokensBefore = sample(before, "agentry_llm_tokens_total", { provider: "openai", kind: "prompt" }) ?? 0;
    const errorsBefore = sample(before, "agentry_llm_errors_total", { provider: "openai", code: "invalid_request" }) ?? 0;
    const callsBefore = sample(before, "agentry_llm_call_duration_seconds_count", { provider: "openai", outcome: "ok" }) ?? 0;
    const openai = (await client.post("/v1/sessions", { user_id: "u" })).body.id;
    wire.script({ kind: "text", chunks: ["hi"], usage: { prompt: 10, completion: 5, cached: 4 } });
    expect((await client.post(`/v1/sessions/${openai}/messages`, { content: "one", wait: true })).body.status).toBe("completed");
    wire.script({ kind: "status", status: 400, body: JSON.stringify({ error: { message: "no" } }) });
    expect((await client.post(`/v1/sessions/${openai}/messages`, { content: "two", wait: true })).body.status).toBe("failed");

    const text = await scrapeUntil(scrape, (t) => (sample(t, "agentry_jobs", { status: "failed" }) ?? 0) >= 1);
    expect(sample(text, "agentry_llm_tokens_total", { provider: "openai", kind: "prompt" })).toBe(tokensBefore + 10);
    expect(sample(text, "agentry_llm_tokens_total", { provider: "openai", kind: "completion" })).toBeGreaterThanOrEqual(5);
    expect(sample(text, "agentry_llm_tokens_total", { provider: "openai", kind: "cached" })).toBeGreaterThanOrEqual(4);
    expect(sample(text, "agentry_llm_call_duration_seconds_count", { provider: "openai", outcome: "ok" })).toBe(callsBefore + 1);
    expect(sample(text, "agentry_llm_errors_total", { provider: "openai", code: "invalid_request" })).toBe(errorsBefore + 1);
    expect(sample(text, "agentry_llm_call_duration_seconds_count", { provider: "sandbox", outcome: "ok" })).toBeGreaterThanOrEqual(1);
    expect(sample(text, "agentry_jobs", { status: "completed" })).toBeGreaterThanOrEqual(2);
    expect(sample(text, "agentry_jobs", { status: "failed" })).toBe(1);
    expect(sample(text, "agentry_eventstore_append_duration_seconds_count", { result: "ok" })).toBeGreaterThan(5);
    expect(sample(text, "agentry_eventstore_appended_events_total")).toBeGreaterThan(5);
    expect(sample(text, "agentry_projection_lag_events", { projection: "jobs" })).toBeGreaterThanOrEqual(0);
    expect(sample(text, "agentry_projection_lag_seconds", { projection: "jobs" })).toBeGreaterThanOrEqual(0);
    expect(sample(text, "agentry_queue_depth")).toBeGreaterThanOrEqual(0);
    expect(sample(text, "agentry_queue_lease_takeovers_total")).toBe(0);
    expect(sample(text, "agentry_http_request_duration_seconds_count", { method: "POST", route: "/v1/sessions/:session_id/messages", status: "200" })).toBeGreaterThanOrEqual(1);
    expect(sample(text, "process_resident_memory_bytes")).toBeGreaterThan(0);
  });

  test("open SSE streams and waiting polls are gauged while open, and fall back after", async () => {
    const sid = (await client.post("/v1/sessions", { user_id: "u" })).body.id;
    const base = await scrape();
    const sseBase = sample(base, "agentry_sse_connections_open") ?? 0;
    const pollBase = sample(base, "agentry_long_polls_open") ?? 0;
    const abort = new AbortController();
    const stream = await fetch(`${server.url}/v1/sessions/${sid}/stream`, { headers: { "x-api-key": TEST_KEY }, signal: abort.signal });
    expect(stream.status).toBe(200);
    const pollAbort = new AbortController();
    const poll = fetch(`${server.url}/v1/sessions/${sid}/events?since=1000&wait=30`, { headers: { "x-api-key": TEST_KEY }, signal: pollAbort.signal }).catch(() => null);
    const open = await scrapeUntil(scrape, (t) => sample(t, "agentry_long_polls_open") === pollBase + 1);
    expect(sample(open, "agentry_sse_connections_open")).toBe(sseBase + 1);
    expect(sample(open, "agentry_long_polls_open")).toBe(pollBase + 1);
    abort.abort();
    pollAbort.abort();
    await poll;
    const closed = await scrapeUntil(scrape, (t) => sample(t, "agentry_sse_connections_open") === sseBase && sample(t, "agentry_long_polls_open") === pollBase);
    expect(sample(closed, "agentry_sse_connections_open")).toBe(sseBase);
    expect(sample(closed, "agentry_long_polls_open")).toBe(pollBase);
  });

  test("a scrape takes the management credential or METRICS_TOKEN, never a data-plane key", async () => {
    expect((await fetch(`${server.url}/metrics`)).status).toBe(401);
    const withKey = await fetch(`${server.url}/metrics`, { headers: { "x-api-key": TEST_KEY, authorization: `Bearer ${TEST_KEY}` } });
    expect(withKey.status).toBe(401);
    expect(((await withKey.json()) as any).error.request_id).toBe(withKey.headers.get("x-request-id"));
    const withToken = await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    expect(withToken.status).toBe(200);
    expect(withToken.headers.get("content-type")).toContain("text/plain");
    expect(await scrape(ROOT)).toContain("agentry_http_request_duration_seconds");
    // The separate listener (METRICS_PORT) asks for METRICS_TOKEN when one is set, and serves only /metrics.
    const port = server.metricsPort!;
    expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).toBe(401);
    const separate = await fetch(`http://127.0.0.1:${port}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    expect(separate.status).toBe(200);
    expect(await separate.text()).toContain("agentry_eventstore_append_duration_seconds");
    expect((await fetch(`http://127.0.0.1:${port}/other`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).status).toBe(404);
  });

  test("one access-log line per request: route pattern, status, duration, request id and app, never the key", async () => {
    const res = await client.get("/v1/jobs/job_logged_1", { "x-request-id": "req-access-1" });
    expect(res.status).toBe(404);
    expect(res.body.error.request_id).toBe("req-access-1");
    const access = await waitForLine((l) => l.msg === "request" && l.request_id === "req-access-1");
    expect(access).toMatchObject({ level: "info", component: "access", method: "GET", route: "/v1/jobs/:job_id", status: 404, request_id: "req-access-1", app_id: expect.any(String), key_id: expect.any(String) });
    expect(typeof access.duration_ms).toBe("number");
    expect(lines.filter((l) => l.msg === "request" && l.request_id === "req-access-1")).toHaveLength(1);
    const refused = await fetch(`${server.url}/v1/sessions`, { headers: { "x-request-id": "req-access-2" } });
    expect(refused.status).toBe(401);
    expect(await waitForLine((l) => l.msg === "request" && l.request_id === "req-access-2")).toMatchObject({ status: 401 });
    expect(raw.filter((l) => l.includes(TEST_KEY) || l.includes(ROOT) || l.includes(METRICS_TOKEN) || l.includes("sk-live-secret-key"))).toEqual([]);
  });

  test("a line a handler logs while answering carries the request's id; a line outside any request has none", async () => {
    server.ctx.logger.warn("outside any request");
    const res = await client.get("/v1/test/log-inside", { "x-request-id": "req-inside-1" });
    expect(res.status).toBe(200);
    const inside = await waitForLine((l) => l.msg === "logged inside a handler");
    expect(inside).toMatchObject({ level: "warn", request_id: "req-inside-1", component: "test-route" });
    // Concurrent requests each keep their own id across awaits.
    await Promise.all([1, 2, 3, 4].map((i) => client.get("/v1/test/log-inside", { "x-request-id": `req-many-${i}` })));
    const many = lines.filter((l) => l.msg === "logged inside a handler" && String(l.request_id).startsWith("req-many-"));
    expect(many.map((l) => l.request_id).sort()).toEqual(["req-many-1", "req-many-2", "req-many-3", "req-many-4"]);
    expect(many.every((l) => l.seen === l.request_id)).toBe(true);
    expect(lines.find((l) => l.msg === "outside any request")!.request_id).toBeUndefined();
  });

  async function waitForLine(match: (l: Record<string, any>) => boolean, timeoutMs = 5000): Promise<Record<string, any>> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const found = lines.find(match);
      if (found) return found;
      await Bun.sleep(10);
    }
    throw new Error("no such log line");
  }
});

describe("a worker-only process", () => {
  let redis: RedisServer;
  let worker: RunningServer;
  let dataDir: string;
  beforeAll(async () => {
    redis = await startRedis();
    dataDir = mkdtempSync(join(tmpdir(), "agentry-metrics-worker-"));
    const config = loadConfig({
      ROLE: "worker", PORT: "0", DATA_DIR: dataDir, SQLITE_SYNCHRONOUS: "normal", REDIS_URL: redis.url, API_KEY: TEST_KEY,
      READ_MODEL_FILE: join(dataDir, "readmodels-worker.sqlite"), METRICS_PORT: "0", ACCESS_LOG: "false",
    });
    worker = await startServer(config, createLogger("error", {}, () => {}));
  });
  afterAll(async () => {
    await worker?.shutdown("test");
    await redis?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test("has no API port but serves its own metrics on METRICS_PORT, open on loopback when no METRICS_TOKEN is set", async () => {
    expect(worker.app).toBeUndefined();
    const res = await fetch(`http://127.0.0.1:${worker.metricsPort}/metrics`);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(sample(text, "agentry_queue_depth")).toBe(0);
    expect(sample(text, "agentry_queue_lease_takeovers_total")).toBe(0);
    expect(sample(text, "agentry_projection_lag_events", { projection: "jobs" })).toBe(0);
    expect(text).toContain("# TYPE agentry_eventstore_append_duration_seconds histogram");
    expect(text).not.toContain("agentry_http_request_duration_seconds_count");
  });
});
