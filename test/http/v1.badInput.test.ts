/** Bad input on every /v1 endpoint: a 4xx in the error envelope, never a 500 or a hang, nothing stored changed. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { api, TEST_KEY, type Api } from "../support/api.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

let server: TestServer;
let client: Api;
let sid: string;
let jobId: string;

beforeAll(async () => {
  server = await startTestServer({ API_KEY: TEST_KEY, SANDBOX_CHUNK_DELAY_MS: "0", TOOL_PRIVATE_ALLOWLIST: "127.0.0.1" });
  client = api(server.url);
  sid = (await client.post("/v1/sessions", { user_id: "bad-input" })).body.id;
  jobId = (await client.post(`/v1/sessions/${sid}/messages`, { content: "hi", wait: true })).body.job_id;
});
afterAll(async () => {
  await server?.stop();
});

type Case = [method: string, path: () => string, body: unknown, status: number, code?: string];

const cases: Case[] = [
  // malformed JSON and wrong shapes
  ["POST", () => "/v1/sessions", "{not json", 400, "invalid_json"],
  ["POST", () => "/v1/sessions", {}, 400, "invalid_request"],
  ["POST", () => "/v1/sessions", { user_id: 5 }, 400, "invalid_request"],
  ["POST", () => "/v1/sessions", { user_id: "" }, 400, "invalid_request"],
  ["POST", () => "/v1/sessions", { user_id: "u", agent_id: "agt_missing" }, 404, "agent_not_found"],
  ["POST", () => "/v1/sessions", { user_id: "u", metadata: "x" }, 400, "invalid_request"],
  ["POST", () => "/v1/agents", { name: "" }, 400, "invalid_request"],
  ["POST", () => "/v1/agents", { name: "x", approval: "sometimes" }, 400, "invalid_request"],
  ["POST", () => "/v1/agents", { name: "x", tools: [{ type: "builtin", name: "rm_rf" }] }, 400, "invalid_request"],
  ["POST", () => "/v1/agents", { name: "x", tools: [{ type: "http", name: "t", description: "d", url: "ftp://x" }] }, 400, "invalid_request"],
  ["POST", () => "/v1/agents", { name: "x", output_schema: { type: "nonsense" } }, 400, "invalid_request"],
  ["PATCH", () => "/v1/agents/agt_default", {}, 400, "invalid_request"],
  ["GET", () => "/v1/agents/agt_nope", undefined, 404, "agent_not_found"],
  ["GET", () => "/v1/agents?limit=0", undefined, 400, "invalid_request"],
  ["GET", () => "/v1/agents?limit=abc", undefined, 400, "invalid_request"],
  ["GET", () => "/v1/agents?cursor=%%%", undefined, 400, "invalid_cursor"],
  ["DELETE", () => "/v1/agents/agt_nope", undefined, 404, "agent_not_found"],
  ["GET", () => "/v1/sessions/sess_nope", undefined, 404, "session_not_found"],
  ["GET", () => "/v1/sessions/has%20space", undefined, 400, "invalid_request"],
  ["GET", () => "/v1/sessions?limit=1000", undefined, 400, "invalid_request"],
  ["GET", () => "/v1/sessions?cursor=bm90LWpzb24", undefined, 400, "invalid_cursor"],
  ["GET", () => "/v1/sessions?archived=maybe", undefined, 400, "invalid_request"],
  ["PATCH", () => `/v1/sessions/${sid}`, {}, 400, "invalid_request"],
  ["PATCH", () => `/v1/sessions/${sid}`, { archived: "yes" }, 400, "invalid_request"],
  ["PATCH", () => "/v1/sessions/sess_nope", { name: "x" }, 404, "session_not_found"],
  ["DELETE", () => "/v1/sessions/sess_nope", undefined, 404, "session_not_found"],
  ["POST", () => `/v1/sessions/${sid}/messages`, {}, 400, "invalid_request"],
  ["POST", () => `/v1/sessions/${sid}/messages`, { content: "" }, 400, "invalid_request"],
  ["POST", () => `/v1/sessions/${sid}/messages`, { content: "x", multitask: "maybe" }, 400, "invalid_request"],
  ["POST", () => `/v1/sessions/${sid}/messages`, { content: "x", attachments: [{ type: "url", url: "javascript:alert(1)" }] }, 400, "invalid_request"],
  ["POST", () => `/v1/sessions/${sid}/messages`, { content: "x", wait_timeout_s: 10_000 }, 400, "invalid_request"],
  ["POST", () => "/v1/sessions/sess_nope/messages", { content: "x" }, 404, "session_not_found"],
  ["GET", () => `/v1/sessions/${sid}/messages?before=garbage`, undefined, 400, "invalid_cursor"],
  ["POST", () => `/v1/sessions/${sid}/assets`, { url: "https://x/y.png", kind: "hologram" }, 400, "invalid_request"],
  ["POST", () => `/v1/sessions/${sid}/assets`, { url: "not a url", kind: "image" }, 400, "invalid_request"],
  ["GET", () => `/v1/sessions/${sid}/events?since=-1`, undefined, 400, "invalid_request"],
  ["GET", () => `/v1/sessions/${sid}/events?wait=31`, undefined, 400, "invalid_request"],
  ["GET", () => "/v1/sessions/sess_nope/events", undefined, 404, "session_not_found"],
  ["GET", () => "/v1/sessions/sess_nope/stream", undefined, 404, "session_not_found"],
  ["GET", () => "/v1/sessions/sess_nope/jobs", undefined, 404, "session_not_found"],
  ["GET", () => "/v1/sessions/sess_nope/assets", undefined, 404, "session_not_found"],
  ["POST", () => "/v1/runs", { input: "x" }, 400, "invalid_request"],
  ["POST", () => "/v1/runs", { user_id: "u", input: "x", output_schema: { type: 12 } }, 400, "invalid_request"],
  ["POST", () => "/v1/runs", { user_id: "u", input: "x", media_url: "file:///etc/passwd" }, 400, "invalid_request"],
  ["GET", () => "/v1/runs/run_nope", undefined, 404, "run_not_found"],
  ["GET", () => "/v1/jobs/job_nope", undefined, 404, "job_not_found"],
  ["GET", () => "/v1/jobs/job_nope/events", undefined, 404, "job_not_found"],
  ["GET", () => `/v1/jobs/${jobId}/events?limit=5000`, undefined, 400, "invalid_request"],
  ["GET", () => "/v1/jobs/job_nope/stream", undefined, 404, "job_not_found"],
  ["GET", () => `/v1/jobs/${jobId}/stream?verbosity=loud`, undefined, 400, "invalid_request"],
  ["POST", () => "/v1/jobs/job_nope/approve", undefined, 404, "job_not_found"],
  ["POST", () => `/v1/jobs/${jobId}/approve`, undefined, 409, "job_not_awaiting_approval"],
  ["POST", () => `/v1/jobs/${jobId}/reject`, undefined, 409, "job_not_awaiting_approval"],
  ["POST", () => `/v1/jobs/${jobId}/reject`, { reason: 5 }, 400, "invalid_request"],
  ["POST", () => `/v1/jobs/${jobId}/cancel`, undefined, 409, "job_finished"],
  ["POST", () => "/v1/jobs/job_nope/cancel", undefined, 404, "job_not_found"],
  ["DELETE", () => "/v1/jobs/job_nope", undefined, 404, "not_found"],
];

test.each(cases)("%s %p → %p", async (method, path, body, status, code) => {
  const p = path();
  const before = await client.get(`/v1/sessions/${sid}/events?since=0&limit=1000`);
  const res = await fetch(server.url + p, {
    method,
    headers: { "x-api-key": TEST_KEY, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
    ...(body !== undefined ? { body: typeof body === "string" ? body : JSON.stringify(body) } : {}),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  expect({ status: res.status, text }).toMatchObject({ status });
  const parsed = JSON.parse(text);
  expect(typeof parsed.error.message).toBe("string");
  if (code) expect(parsed.error.code).toBe(code);
  const after = await client.get(`/v1/sessions/${sid}/events?since=0&limit=1000`);
  expect(after.body.events).toEqual(before.body.events);
});

test("a body over MAX_BODY_BYTES is refused, not stored", async () => {
  const huge = JSON.stringify({ content: "x".repeat(11 * 1024 * 1024) });
  const res = await fetch(`${server.url}/v1/sessions/${sid}/messages`, { method: "POST", headers: { "x-api-key": TEST_KEY, "content-type": "application/json" }, body: huge });
  expect(res.status).toBe(413);
  expect((await client.get(`/v1/sessions/${sid}`)).body.message_count).toBe(2);
});
