/**
 * The MUXI surface (/compat/muxi), driven as a MUXI client drives MUXI: plain fetch with the headers,
 * paths, bodies and queries of the MUXI Framework "API Documentation" (seed 002), nothing of /v1 —
 * except where the issue asks that a conversation started here be read through /v1 (one store, one
 * history). Each test quotes the doc lines it relies on.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startTestServer, type TestServer } from "../support/server.ts";
import { api } from "../support/api.ts";
import { DEFAULT_APP_ID } from "../../src/domain/streams.ts";

const ROOT = "root-token-muxi-0123456789abcdef";
let server: TestServer;
let base: string;

beforeAll(async () => {
  server = await startTestServer({ ADMIN_TOKEN: ROOT, SANDBOX_CHUNK_DELAY_MS: "2", COMPAT_SYNC_TIMEOUT_MS: "30000" });
  base = `${server.url}/compat/muxi`;
});
afterAll(async () => {
  await server?.stop();
});

/** Doc: "include an Authorization header with a Bearer token: Authorization: Bearer <token>" */
async function call(method: string, path: string, body?: unknown, key: string | null = server.apiKey, at = base) {
  const res = await fetch(`${at}${path}`, {
    method,
    headers: { ...(key !== null ? { Authorization: `Bearer ${key}` } : {}), ...(body !== undefined ? { "Content-Type": "application/json" } : {}) },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: any = text;
  try { parsed = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, body: parsed, headers: res.headers };
}

/** The doc's error shape: {"error": {"code": "invalid_request", "message": "…", "details": {"param": "user_id"}}} */
function expectError(r: { status: number; body: any }, status: number, code: string) {
  expect(r.status).toBe(status);
  expect(r.body.error.code).toBe(code);
  expect(typeof r.body.error.message).toBe("string");
}

test("Agents: create with a client-chosen id, get, list, delete", async () => {
  // Doc: POST /agents {"id": "custom-agent-1", "name": "Custom Agent", "description": "A custom-tailored agent", "model": {"provider": …, "name": …, "parameters": {"temperature": 0.7, "max_tokens": 1024}}}
  const created = await call("POST", "/agents", {
    id: "custom-agent-1", name: "Custom Agent", description: "A custom-tailored agent",
    model: { provider: "sandbox", name: "sandbox-1", parameters: { temperature: 0.7, max_tokens: 1024 } },
  });
  expect(created.status).toBe(201);
  // Doc: Response: {"id": "custom-agent-1", "name": "Custom Agent", "description": "A custom-tailored agent", "status": "created"}
  expect(created.body).toEqual({ id: "custom-agent-1", name: "Custom Agent", description: "A custom-tailored agent", status: "created" });
  // Doc: GET /agents/{agent_id} → {"id", "name", "description", "model": {"provider", "name", "parameters"}}
  const got = await call("GET", "/agents/custom-agent-1");
  expect(got.status).toBe(200);
  expect(got.body).toEqual({
    id: "custom-agent-1", name: "Custom Agent", description: "A custom-tailored agent",
    model: { provider: "sandbox", name: "sandbox-1", parameters: { temperature: 0.7, max_tokens: 1024 } },
  });
  // The same id twice is a conflict, in the doc's envelope.
  expectError(await call("POST", "/agents", { id: "custom-agent-1", name: "Again" }), 409, "invalid_request");
  // Doc: GET /agents → {"agents": [{"id", "name", "description"}, …]}
  const list = await call("GET", "/agents");
  expect(list.status).toBe(200);
  expect(list.body.agents.map((a: any) => a.id)).toContain("custom-agent-1");
  expect(Object.keys(list.body.agents[0]).sort()).toEqual(["description", "id", "name"]);
  // Doc: DELETE /agents/{agent_id} → {"status": "deleted", "id": "assistant-1"}
  const deleted = await call("DELETE", "/agents/custom-agent-1");
  expect(deleted.status).toBe(200);
  expect(deleted.body).toEqual({ status: "deleted", id: "custom-agent-1" });
  // Doc: "not_found: The requested resource doesn't exist"
  expectError(await call("GET", "/agents/custom-agent-1"), 404, "not_found");
  expectError(await call("DELETE", "/agents/custom-agent-1"), 404, "not_found");
});

test("Pagination: limit and offset, with the doc's pagination metadata", async () => {
  for (const i of [1, 2, 3]) expect((await call("POST", "/agents", { id: `page-agent-${i}`, name: `Page ${i}` })).status).toBe(201);
  // Doc: "limit: Number of items to return per page (default: 50, max: 100)"; "offset: Number of items to skip (default: 0)"
  // Doc: "pagination": {"total": 120, "limit": 50, "offset": 0, "next_offset": 50}
  const all = await call("GET", "/agents");
  const total = all.body.pagination.total as number;
  expect(total).toBe(all.body.agents.length);
  expect(all.body.pagination).toEqual({ total, limit: 50, offset: 0, next_offset: null });
  const first = await call("GET", "/agents?limit=2&offset=0");
  expect(first.body.agents).toHaveLength(2);
  expect(first.body.pagination).toEqual({ total, limit: 2, offset: 0, next_offset: 2 });
  const second = await call("GET", `/agents?limit=2&offset=${first.body.pagination.next_offset}`);
  const seen = [...first.body.agents, ...second.body.agents].map((a: any) => a.id);
  expect(new Set(seen).size).toBe(seen.length);
  expect(seen).toEqual(all.body.agents.slice(0, seen.length).map((a: any) => a.id));
  // Doc: "max: 100"
  expectError(await call("GET", "/agents?limit=101"), 400, "invalid_request");
});

test("Chat: the first message with a session_id creates it; history lists both sides; /v1 reads the same session", async () => {
  await call("POST", "/agents", { id: "assistant-1", name: "General Assistant", description: "A general-purpose AI assistant" });
  // Doc: POST /chat/{agent_id} {"message": "What's the weather like today?", "user_id": "user123", "session_id": "session456", "context": {"location": "New York"}}
  const r = await call("POST", "/chat/assistant-1", { message: "What's the weather like today?", user_id: "user123", session_id: "session456", context: { location: "New York" } });
  expect(r.status).toBe(200);
  // Doc: {"id": "msg_123456", "content": "…", "timestamp": "2023-09-21T14:32:01Z", "agent_id": "assistant-1", "session_id": "session456"}
  expect(r.body).toMatchObject({ agent_id: "assistant-1", session_id: "session456" });
  expect(r.body.id).toStartWith("msg_");
  expect(r.body.content).toContain("What's the weather like today?");
  expect(Number.isNaN(Date.parse(r.body.timestamp))).toBe(false);
  const again = await call("POST", "/chat/assistant-1", { message: "And tomorrow?", user_id: "user123", session_id: "session456" });
  expect(again.status).toBe(200);
  expect(again.body.content).toContain("message 2 of our conversation");
  // Doc: GET /chat/{agent_id}/history — user_id (required), session_id (required), limit (optional, default 50)
  const h = await call("GET", "/chat/assistant-1/history?user_id=user123&session_id=session456");
  expect(h.status).toBe(200);
  // Doc: {"messages": [{"id", "role": "user", "content", "timestamp"}, {"id", "role": "assistant", …}], "has_more": false}
  expect(h.body.has_more).toBe(false);
  expect(h.body.messages.map((m: any) => [m.role, m.content])).toEqual([
    ["user", "What's the weather like today?"], ["assistant", r.body.content], ["user", "And tomorrow?"], ["assistant", again.body.content],
  ]);
  expect(h.body.messages[1].id).toBe(r.body.id);
  expect(Object.keys(h.body.messages[0]).sort()).toEqual(["content", "id", "role", "timestamp"]);
  // Another user's session456 is another conversation.
  const other = await call("GET", "/chat/assistant-1/history?user_id=someone-else&session_id=session456");
  expect(other.body).toEqual({ messages: [], has_more: false });
  // One store: the session is found through /v1 by the client's id.
  const v1 = api(server.url, server.apiKey);
  const sessions = await v1.get("/v1/sessions?external_ref=session456");
  expect(sessions.body.data).toHaveLength(1);
  const messages = await v1.get(`/v1/sessions/${sessions.body.data[0].id}/messages`);
  expect(messages.body.data.map((m: any) => m.content)).toEqual(h.body.messages.map((m: any) => m.content));
});

test("History pages back with limit and before (a timestamp), has_more telling that older ones remain", async () => {
  await call("POST", "/agents", { id: "pager", name: "Pager" });
  for (const m of ["one", "two", "three"]) expect((await call("POST", "/chat/pager", { message: m, user_id: "u-page", session_id: "s-page" })).status).toBe(200);
  // Doc: "limit (optional): Maximum number of messages to return (default: 50)"; "before (optional): Return messages before this timestamp"
  const last = await call("GET", "/chat/pager/history?user_id=u-page&session_id=s-page&limit=2");
  expect(last.body.has_more).toBe(true);
  expect(last.body.messages.map((m: any) => m.role)).toEqual(["user", "assistant"]);
  expect(last.body.messages[0].content).toBe("three");
  const older = await call("GET", `/chat/pager/history?user_id=u-page&session_id=s-page&before=${encodeURIComponent(last.body.messages[0].timestamp)}`);
  expect(older.body.messages.map((m: any) => m.content)).toContain("one");
  expect(older.body.messages.map((m: any) => m.content)).not.toContain("three");
  expectError(await call("GET", "/chat/pager/history?user_id=u-page&session_id=s-page&before=yesterday"), 400, "invalid_request");
});

test("Busy: two messages to one new session at once are both answered, in one conversation", async () => {
  await call("POST", "/agents", { id: "busy-agent", name: "Busy" });
  // The doc has no busy error: a MUXI client expects every message it sends to be answered.
  const [a, b] = await Promise.all([
    call("POST", "/chat/busy-agent", { message: "first [slow]", user_id: "u-busy", session_id: "s-busy" }),
    call("POST", "/chat/busy-agent", { message: "second", user_id: "u-busy", session_id: "s-busy" }),
  ]);
  expect([a.status, b.status]).toEqual([200, 200]);
  const h = await call("GET", "/chat/busy-agent/history?user_id=u-busy&session_id=s-busy");
  expect(h.body.messages.filter((m: any) => m.role === "user").map((m: any) => m.content).sort()).toEqual(["first [slow]", "second"]);
  expect(h.body.messages.filter((m: any) => m.role === "assistant")).toHaveLength(2);
});

test("Chat without a session_id starts a new one and returns its id", async () => {
  const r = await call("POST", "/chat/busy-agent", { message: "hello", user_id: "u-new" });
  expect(r.status).toBe(200);
  expect(typeof r.body.session_id).toBe("string");
  const h = await call("GET", `/chat/busy-agent/history?user_id=u-new&session_id=${encodeURIComponent(r.body.session_id)}`);
  expect(h.body.messages.map((m: any) => m.content)).toEqual(["hello", r.body.content]);
});

test("Memory: add, then query by relevance", async () => {
  await call("POST", "/agents", { id: "memo", name: "Memo" });
  // Doc: POST /memory/{agent_id} {"user_id": "user123", "content": "User prefers vegetarian food", "metadata": {"source": "conversation", "importance": "high"}}
  const added = await call("POST", "/memory/memo", { user_id: "user123", content: "User prefers vegetarian food", metadata: { source: "conversation", importance: "high" } });
  expect(added.status).toBe(201);
  // Doc: {"id": "mem_123458", "status": "created", "created_at": "2023-09-21T14:40:22Z"}
  expect(added.body.id).toStartWith("mem_");
  expect(added.body.status).toBe("created");
  expect(Number.isNaN(Date.parse(added.body.created_at))).toBe(false);
  await call("POST", "/memory/memo", { user_id: "user123", content: "User lives in New York" });
  // Doc: GET /memory/{agent_id} — user_id (required), query (required), limit (optional, default 10)
  const q = await call("GET", "/memory/memo?user_id=user123&query=vegetarian%20food");
  expect(q.status).toBe(200);
  // Doc: {"memories": [{"id", "content", "created_at", "relevance_score": 0.95}, …]}
  expect(q.body.memories[0]).toMatchObject({ id: added.body.id, content: "User prefers vegetarian food" });
  expect(q.body.memories[0].relevance_score).toBeGreaterThan(0);
  expect(q.body.memories[0].relevance_score).toBeLessThanOrEqual(1);
  // Another user's memory is not theirs.
  expect((await call("GET", "/memory/memo?user_id=other&query=vegetarian")).body.memories).toEqual([]);
  // Doc: "Missing required parameter: user_id" → {"error": {"code": "invalid_request", …, "details": {"param": "user_id"}}}
  const missing = await call("GET", "/memory/memo?query=vegetarian");
  expectError(missing, 400, "invalid_request");
  expect(missing.body.error.details.param).toBe("user_id");
  expectError(await call("POST", "/memory/nope", { user_id: "u", content: "x" }), 404, "not_found");
});

test("Errors: the doc's envelope and codes", async () => {
  // Doc: "authentication_error: Authentication failed"
  expectError(await call("GET", "/agents", undefined, null), 401, "authentication_error");
  expectError(await call("GET", "/agents", undefined, "wrong-key"), 401, "authentication_error");
  // Doc: "invalid_request: The request is malformed or missing required parameters"
  const noUser = await call("POST", "/chat/busy-agent", { message: "hi" });
  expectError(noUser, 400, "invalid_request");
  expect(noUser.body.error.details.param).toBe("user_id");
  expectError(await call("POST", "/chat/busy-agent", "{not json"), 400, "invalid_request");
  expectError(await call("POST", "/chat/no-such-agent", { message: "hi", user_id: "u" }), 404, "not_found");
  // Doc: "permission_denied: The authenticated user doesn't have permission for this action"
  const bearer = { authorization: `Bearer ${ROOT}` };
  const root = api(server.url, "");
  const readOnly = (await root.post(`/v1/apps/${DEFAULT_APP_ID}/keys`, { name: "muxi read", scopes: ["data:read"] }, bearer)).body.key as string;
  expectError(await call("POST", "/agents", { id: "denied", name: "Denied" }, readOnly), 403, "permission_denied");
  // Creating or deleting the app's agents takes agents:manage, as /v1/agents does: not a data:write
  // key, nor one acting as a user.
  const writer = (await root.post(`/v1/apps/${DEFAULT_APP_ID}/keys`, { name: "muxi write", scopes: ["data:read", "data:write"] }, bearer)).body.key as string;
  const asUser = (await root.post(`/v1/apps/${DEFAULT_APP_ID}/keys`, { name: "muxi user", user_id: "u-bound" }, bearer)).body.key as string;
  for (const key of [writer, asUser]) {
    expectError(await call("POST", "/agents", { id: "by-writer", name: "Nope" }, key), 403, "permission_denied");
    expectError(await call("DELETE", "/agents/busy-agent", undefined, key), 403, "permission_denied");
    expectError(await call("DELETE", "/api/v1/agents/busy-agent", undefined, key), 403, "permission_denied");
  }
  // Doc: "The API version is specified in the URL path: /api/v1/..."
  const versioned = await call("GET", "/api/v1/agents/busy-agent");
  expect(versioned.status).toBe(200);
  expect(versioned.body.id).toBe("busy-agent");
  // Documented under its own tag in the OpenAPI document.
  const openapi = await (await fetch(`${server.url}/docs/json`)).json() as any;
  expect(openapi.paths["/compat/muxi/chat/{agent_id}"].post.tags).toContain("MUXI (compat)");
  expect(openapi.paths["/compat/muxi/api/v1/agents"]).toBeUndefined();
});

test("Rate limiting: X-RateLimit headers on answers; over the limit 429 rate_limit_exceeded", async () => {
  // Doc: "Rate limit information is included in the response headers: X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset"
  const bearer = { authorization: `Bearer ${ROOT}` };
  const root = api(server.url, "");
  const app = await root.post("/v1/apps", { name: "Rate limited muxi" }, bearer);
  const key = (await root.post(`/v1/apps/${app.body.id}/keys`, { name: "muxi" }, bearer)).body.key as string;
  expect((await root.put(`/v1/apps/${app.body.id}/rate_limits`, { per_key: { requests_per_minute: 2 } }, bearer)).status).toBe(200);
  const answers = [];
  for (let i = 0; i < 4; i++) answers.push(await call("GET", "/agents", undefined, key));
  const first = answers[0]!;
  expect(first.status).toBe(200);
  expect(first.headers.get("x-ratelimit-limit")).toBe("2");
  expect(first.headers.get("x-ratelimit-remaining")).toBe("1");
  // Doc: "X-RateLimit-Reset: … in UTC epoch seconds"
  const reset = Number(first.headers.get("x-ratelimit-reset"));
  expect(reset).toBeGreaterThan(Date.now() / 1000 - 1);
  expect(reset).toBeLessThan(Date.now() / 1000 + 120);
  const limited = answers.find((a) => a.status === 429);
  expect(limited).toBeDefined();
  // Doc: "rate_limit_exceeded: The rate limit for the API has been exceeded"
  expect(limited!.body.error.code).toBe("rate_limit_exceeded");
});

test("Rate limiting: chat is a resource-intensive endpoint, with its own smaller budget", async () => {
  // Doc: "60 requests per minute per user for most endpoints"; "10 requests per minute per user for resource-intensive endpoints"
  const bearer = { authorization: `Bearer ${ROOT}` };
  const root = api(server.url, "");
  const app = await root.post("/v1/apps", { name: "Heavy muxi" }, bearer);
  const key = (await root.post(`/v1/apps/${app.body.id}/keys`, { name: "muxi", scopes: ["data:read", "data:write", "agents:manage"] }, bearer)).body.key as string;
  expect((await root.put(`/v1/apps/${app.body.id}/rate_limits`, { per_key: { requests_per_minute: 50, heavy_per_minute: 1 } }, bearer)).status).toBe(200);
  const agent = "heavy-agent";
  expect((await call("POST", "/agents", { id: agent, name: "Heavy" }, key)).status).toBe(201);
  const first = await call("POST", `/chat/${agent}`, { message: "hi", user_id: "u-heavy", session_id: "s-heavy" }, key);
  expect(first.status).toBe(200);
  expect(first.headers.get("x-ratelimit-limit")).toBe("1");
  const second = await call("POST", `/api/v1/chat/${agent}`, { message: "again", user_id: "u-heavy", session_id: "s-heavy" }, key);
  expectError(second, 429, "rate_limit_exceeded");
  // Other endpoints still answer.
  expect((await call("GET", `/chat/${agent}/history?user_id=u-heavy&session_id=s-heavy`, undefined, key)).status).toBe(200);
});

test("Approvals (not in the doc): a plan that needs approval is answered at once; approved through /v1, its reply joins the history", async () => {
  // Doc: GET /agents lists "all available agents": the server's default agent, which asks before registering assets, is one.
  const agents = (await call("GET", "/agents")).body.agents.map((a: any) => a.id) as string[];
  const assistant = agents.find((id) => id.includes("default"))!;
  expect(assistant).toBeDefined();
  const r = await call("POST", `/chat/${assistant}`, { message: "Please register https://example.com/cat.png as an asset", user_id: "u-approve", session_id: "s-approve" });
  expect(r.status).toBe(200);
  expect(r.body).toMatchObject({ agent_id: assistant, session_id: "s-approve", status: "awaiting_approval" });
  expect(r.body.job_id).toStartWith("job_");
  const v1 = api(server.url, server.apiKey);
  expect((await v1.post(`/v1/jobs/${r.body.job_id}/approve`, {})).status).toBeLessThan(300);
  // The next message waits its turn behind the approved one, so both replies are in the history when it answers.
  const next = await call("POST", `/chat/${assistant}`, { message: "thanks", user_id: "u-approve", session_id: "s-approve" });
  expect(next.status).toBe(200);
  const h = await call("GET", `/chat/${assistant}/history?user_id=u-approve&session_id=s-approve`);
  // In the order things happened ("thanks" may be recorded before the approved turn's reply).
  const replies = h.body.messages.filter((m: any) => m.role === "assistant").map((m: any) => m.content);
  expect(h.body.messages.filter((m: any) => m.role === "user").map((m: any) => m.content)).toEqual(["Please register https://example.com/cat.png as an asset", "thanks"]);
  expect(replies).toHaveLength(2);
  expect(replies[0]).toContain("register_asset");
  expect(replies[1]).toBe(next.body.content);
});

test("A turn that fails answers 502 internal_error in the doc's envelope", async () => {
  // Doc: "internal_error: An internal server error occurred"
  await call("POST", "/agents", { id: "failing", name: "Failing" });
  const r = await call("POST", "/chat/failing", { message: "[fail] please", user_id: "u-fail", session_id: "s-fail" });
  expectError(r, 502, "internal_error");
});

/** A second app and its key (agents:manage included, as MUXI's single server key has every right). */
async function otherApp(name: string): Promise<{ id: string; key: string }> {
  const root = api(server.url, "");
  const bearer = { authorization: `Bearer ${ROOT}` };
  const app = await root.post("/v1/apps", { name }, bearer);
  const key = (await root.post(`/v1/apps/${app.body.id}/keys`, { name: "muxi", scopes: ["data:read", "data:write", "agents:manage"] }, bearer)).body.key as string;
  return { id: app.body.id, key };
}

test("Agents: a client-chosen id is the app's own; two apps each have their own `support`", async () => {
  // Doc: POST /agents {"id": "custom-agent-1", …} → {"id": "custom-agent-1", …, "status": "created"}
  // Doc: GET /agents/{agent_id} "Get details about a specific agent."
  const b = await otherApp("Second MUXI deployment");
  const mine = await call("POST", "/agents", { id: "support", name: "Support A", description: "App A's support agent" });
  expect(mine.status).toBe(201);
  const theirs = await call("POST", "/agents", { id: "support", name: "Support B", description: "App B's support agent" }, b.key);
  expect(theirs.status).toBe(201);
  expect(theirs.body).toEqual({ id: "support", name: "Support B", description: "App B's support agent", status: "created" });
  expect((await call("GET", "/agents/support")).body.name).toBe("Support A");
  expect((await call("GET", "/agents/support", undefined, b.key)).body.name).toBe("Support B");
  // Each lists its own, under the id it chose.
  const listA = (await call("GET", "/agents")).body.agents.filter((a: any) => a.id === "support");
  const listB = (await call("GET", "/agents", undefined, b.key)).body.agents.filter((a: any) => a.id === "support");
  expect(listA.map((a: any) => a.name)).toEqual(["Support A"]);
  expect(listB.map((a: any) => a.name)).toEqual(["Support B"]);
  // Chat, history and memory reach each app's own agent.
  const chatB = await call("POST", "/chat/support", { message: "Hello B", user_id: "u1", session_id: "s1" }, b.key);
  expect(chatB.status).toBe(200);
  expect(chatB.body.agent_id).toBe("support");
  expect((await call("GET", "/chat/support/history?user_id=u1&session_id=s1")).body.messages).toEqual([]);
  expect((await call("POST", "/memory/support", { user_id: "u1", content: "App B's user likes tea" }, b.key)).status).toBe(201);
  expect((await call("GET", "/memory/support?user_id=u1&query=tea")).body.memories).toEqual([]);
  // Deleting B's leaves A's.
  expect((await call("DELETE", "/agents/support", undefined, b.key)).body).toEqual({ status: "deleted", id: "support" });
  expectError(await call("GET", "/agents/support", undefined, b.key), 404, "not_found");
  expect((await call("GET", "/agents/support")).status).toBe(200);
  // Through /v1 they are two agents of two apps.
  const v1a = await api(server.url, server.apiKey).get("/v1/agents?limit=200");
  expect(v1a.body.data.filter((a: any) => a.name === "Support A")).toHaveLength(1);
  expect(v1a.body.data.filter((a: any) => a.name === "Support B")).toHaveLength(0);
});

test("Tenancy: another app's key gets 404 on this app's agents and sees none of its conversations or memories", async () => {
  // Doc: "not_found: The requested resource doesn't exist"
  await call("POST", "/agents", { id: "private-agent", name: "Private" });
  expect((await call("POST", "/chat/private-agent", { message: "secret plans", user_id: "u-t", session_id: "s-t" })).status).toBe(200);
  await call("POST", "/memory/private-agent", { user_id: "u-t", content: "The secret plans are in the vault" });
  const b = await otherApp("Tenancy MUXI");
  for (const [method, path, body] of [
    ["GET", "/agents/private-agent", undefined], ["DELETE", "/agents/private-agent", undefined],
    ["POST", "/chat/private-agent", { message: "hi", user_id: "u-t", session_id: "s-t" }],
    ["GET", "/chat/private-agent/history?user_id=u-t&session_id=s-t", undefined],
    ["GET", "/memory/private-agent?user_id=u-t&query=secret", undefined], ["POST", "/memory/private-agent", { user_id: "u-t", content: "x" }],
  ] as const) expectError(await call(method, path, body, b.key), 404, "not_found");
  expect((await call("GET", "/agents", undefined, b.key)).body.agents.map((a: any) => a.id)).not.toContain("private-agent");
  // Its own agent of the same name does not open this app's session s-t either.
  await call("POST", "/agents", { id: "private-agent", name: "Theirs" }, b.key);
  expect((await call("GET", "/chat/private-agent/history?user_id=u-t&session_id=s-t", undefined, b.key)).body).toEqual({ messages: [], has_more: false });
  expect((await call("GET", "/chat/private-agent/history?user_id=u-t&session_id=s-t")).body.messages.map((m: any) => m.content)).toContain("secret plans");
});

test("End users: a token minted for a user reads and writes only that user's conversations and memories", async () => {
  // Doc: "permission_denied: The authenticated user doesn't have permission for this action"
  await call("POST", "/agents", { id: "eu-agent", name: "End users" });
  expect((await call("POST", "/chat/eu-agent", { message: "mine, alice", user_id: "alice", session_id: "s-eu" })).status).toBe(200);
  expect((await call("POST", "/chat/eu-agent", { message: "mine, bob", user_id: "bob", session_id: "s-eu" })).status).toBe(200);
  const backend = api(server.url, server.apiKey);
  const alice = (await backend.post("/v1/end-user-tokens", { user_id: "alice" })).body.token as string;
  const own = await call("GET", "/chat/eu-agent/history?user_id=alice&session_id=s-eu", undefined, alice);
  expect(own.status).toBe(200);
  expect(own.body.messages.map((m: any) => m.content)).toContain("mine, alice");
  expect(JSON.stringify(own.body)).not.toContain("mine, bob");
  expectError(await call("GET", "/chat/eu-agent/history?user_id=bob&session_id=s-eu", undefined, alice), 403, "permission_denied");
  expectError(await call("POST", "/chat/eu-agent", { message: "as bob", user_id: "bob", session_id: "s-eu" }, alice), 403, "permission_denied");
  expectError(await call("GET", "/memory/eu-agent?user_id=bob&query=anything", undefined, alice), 403, "permission_denied");
  expectError(await call("POST", "/memory/eu-agent", { user_id: "bob", content: "planted" }, alice), 403, "permission_denied");
  expect((await call("POST", "/chat/eu-agent", { message: "again, alice", user_id: "alice", session_id: "s-eu" }, alice)).status).toBe(200);
  // Nor does a user's token manage the app's agents.
  expectError(await call("POST", "/agents", { id: "by-alice", name: "Nope" }, alice), 403, "permission_denied");
});

test("History pages by message id: messages that share a millisecond are each returned once", async () => {
  // Doc: "limit (optional): Maximum number of messages to return (default: 50)"; "before (optional): Return messages before this timestamp"
  // Doc: {"messages": [...], "has_more": false}
  await call("POST", "/agents", { id: "burst", name: "Burst" });
  expect((await call("POST", "/chat/burst", { message: "start", user_id: "u-burst", session_id: "s-burst" })).status).toBe(200);
  const v1 = api(server.url, server.apiKey);
  const session = (await v1.get("/v1/sessions?external_ref=s-burst")).body.data[0].id as string;
  // Many messages at once (queued behind each other), until some share a millisecond timestamp.
  let all: any[] = [];
  for (let round = 0; round < 5; round++) {
    const sent = await Promise.all(Array.from({ length: 20 }, (_, i) => v1.post(`/v1/sessions/${session}/messages`, { content: `burst ${round}.${i}`, multitask: "enqueue" })));
    for (const s of sent) expect(s.status).toBe(202);
    for (const s of sent) await v1.waitForStatus(s.body.job_id, ["completed", "failed", "cancelled"]);
    all = (await call("GET", "/chat/burst/history?user_id=u-burst&session_id=s-burst&limit=100")).body.messages;
    const stamps = all.map((m: any) => m.timestamp);
    if (new Set(stamps).size < stamps.length) break;
  }
  const stamps = all.map((m: any) => m.timestamp);
  expect(new Set(stamps).size).toBeLessThan(stamps.length);
  // Pages of 3, each ending before the first message of the one after it.
  const paged: any[] = [];
  let before: string | null = null;
  for (let page = 0; page < 100; page++) {
    const r = await call("GET", `/chat/burst/history?user_id=u-burst&session_id=s-burst&limit=3${before ? `&before=${encodeURIComponent(before)}` : ""}`);
    expect(r.status).toBe(200);
    paged.unshift(...r.body.messages);
    if (!r.body.has_more) break;
    before = r.body.messages[0].id;
  }
  expect(paged.map((m) => m.id)).toEqual(all.map((m: any) => m.id));
  expect(new Set(paged.map((m) => m.id)).size).toBe(paged.length);
  // A message id of another session is not a place in this one.
  // Neither a message of this history nor a timestamp: 400.
  expectError(await call("GET", "/chat/burst/history?user_id=u-burst&session_id=s-burst&before=msg_not_here"), 400, "invalid_request");
});

test("Rate limiting is per user: each end user has a budget of their own, apart from the key's", async () => {
  // Doc: "60 requests per minute per user for most endpoints"
  // Doc: "X-RateLimit-Limit: The rate limit ceiling"; "X-RateLimit-Remaining: The number of requests left for the time window"
  const b = await otherApp("Per-user MUXI budgets");
  const bearer = { authorization: `Bearer ${ROOT}` };
  const root = api(server.url, "");
  expect((await root.put(`/v1/apps/${b.id}/rate_limits`, { per_key: { requests_per_minute: 3 }, per_end_user: { requests_per_minute: 2 } }, bearer)).status).toBe(200);
  const backend = api(server.url, b.key);
  const alice = (await backend.post("/v1/end-user-tokens", { user_id: "alice" })).body.token as string;
  const bob = (await backend.post("/v1/end-user-tokens", { user_id: "bob" })).body.token as string;
  // The key's own budget (minting spent two of its three): one more, then 429.
  expect((await call("GET", "/agents", undefined, b.key)).status).toBe(200);
  expectError(await call("GET", "/agents", undefined, b.key), 429, "rate_limit_exceeded");
  // Alice's requests spend Alice's budget, not the key's, nor Bob's.
  const first = await call("GET", "/agents", undefined, alice);
  expect(first.status).toBe(200);
  expect(first.headers.get("x-ratelimit-limit")).toBe("2");
  expect(first.headers.get("x-ratelimit-remaining")).toBe("1");
  expect((await call("GET", "/agents", undefined, alice)).status).toBe(200);
  expectError(await call("GET", "/agents", undefined, alice), 429, "rate_limit_exceeded");
  const bobs = await call("GET", "/agents", undefined, bob);
  expect(bobs.status).toBe(200);
  expect(bobs.headers.get("x-ratelimit-remaining")).toBe("1");
});
