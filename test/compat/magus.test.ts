/**
 * The Magus surface (/compat/magus), driven as a Magus client drives Magus: plain fetch with the
 * headers and bodies of the Magus "API Integration" doc (seed 003), nothing of /v1 — except where the
 * issue asks that a conversation started here be read through /v1 (one store, one history). Each test
 * quotes the doc lines it relies on.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startTestServer, type TestServer } from "../support/server.ts";
import { api } from "../support/api.ts";
import { DEFAULT_APP_ID } from "../../src/domain/streams.ts";
import { startAnthropicWireServer, type WireServer } from "../support/llmWireServers.ts";

const ROOT = "root-token-magus-0123456789abcdef";
let server: TestServer;
let base: string;
/** A model that reasons (Anthropic's wire format, scripted), and an HTTP tool that reports its progress: what `full` shows more of. */
let wire: WireServer;
let toolServer: ReturnType<typeof Bun.serve>;

beforeAll(async () => {
  // The sync wait is short so the doc's 504 can be reached with a slow reply.
  server = await startTestServer({ ADMIN_TOKEN: ROOT, SANDBOX_CHUNK_DELAY_MS: "5", COMPAT_SYNC_TIMEOUT_MS: "1500", TOOL_PRIVATE_ALLOWLIST: "127.0.0.1" });
  wire = startAnthropicWireServer();
  // The tool streams NDJSON: two progress lines, then its result.
  toolServer = Bun.serve({
    port: 0, hostname: "127.0.0.1",
    fetch: () => new Response([{ type: "progress", progress: 0.5, message: "halfway" }, { type: "progress", progress: 1 }, { type: "result", result: { frames: 12 } }]
      .map((l) => `${JSON.stringify(l)}\n`).join(""), { headers: { "content-type": "application/x-ndjson" } }),
  });
  base = `${server.url}/compat/magus`;
});
afterAll(async () => {
  await server?.stop();
  wire?.stop();
  toolServer?.stop(true);
});

/** `curl -X POST …/api/v1/messages -H "Authorization: Bearer magus_sk_…" -H "Content-Type: application/json" -d '{…}'` */
async function send(body: unknown, key: string | null = server.apiKey) {
  const res = await fetch(`${base}/api/v1/messages`, {
    method: "POST",
    headers: { ...(key !== null ? { Authorization: `Bearer ${key}` } : {}), "Content-Type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: any = text;
  try { parsed = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, body: parsed, headers: res.headers };
}

/**
 * The doc's JavaScript consumer: "if (line.startsWith('data: ') && line !== 'data: [DONE]') { const event =
 * JSON.parse(line.slice(6)); …". Returns the events and whether `data: [DONE]` ended the stream.
 */
async function stream(body: Record<string, unknown>, key = server.apiKey) {
  const response = await fetch(`${base}/api/v1/messages`, {
    method: "POST",
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: JSON.stringify({ ...body, stream: true }),
  });
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toContain("text/event-stream");
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  const events: any[] = [];
  const dataLines: string[] = [];
  let pending = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    pending += decoder.decode(value, { stream: true });
    const lines = pending.split("\n");
    pending = lines.pop()!;
    for (const line of lines) {
      if (line.startsWith("data: ")) dataLines.push(line);
      if (line.startsWith("data: ") && line !== "data: [DONE]") events.push(JSON.parse(line.slice(6)));
    }
  }
  return { events, done: dataLines.at(-1) === "data: [DONE]", dataLines };
}

const v1 = () => api(server.url, server.apiKey);

/** The management plane, for setup the doc leaves to Magus's dashboard ("Go to Integrations and add a new API integration"). */
const manage = () => api(server.url, "");
const asRoot = () => ({ authorization: `Bearer ${ROOT}` });

/** A new app with one integration: its id and the integration's key. */
async function newIntegration(name: string): Promise<{ appId: string; key: string }> {
  const app = await manage().post("/v1/apps", { name }, asRoot());
  expect(app.status).toBe(201);
  return { appId: app.body.id as string, key: await newKey(app.body.id) };
}
const newKey = async (appId: string, name = "magus"): Promise<string> => (await manage().post(`/v1/apps/${appId}/keys`, { name }, asRoot())).body.key as string;

test("Step 3: the first message with a session_id answers the doc's non-streaming JSON", async () => {
  // Doc: -d '{"content": "Hello!", "session_id": "my-session-1"}'
  // Doc: "When stream is false (default), the API waits for the agent to finish and returns a single JSON response"
  const r = await send({ content: "Hello!", session_id: "my-session-1" });
  expect(r.status).toBe(200);
  // Doc: {"id": "msg_abc123", "session_id": "my-session-1", "conversation_id": "uuid", "content": …, "citations": [],
  //       "tool_calls": [], "attachments": [], "usage": {"prompt_tokens": 150, "completion_tokens": 25}, "created_at": "2026-03-28T14:30:00Z"}
  expect(r.body).toMatchObject({ session_id: "my-session-1", citations: [], tool_calls: [], attachments: [] });
  expect(r.body.id).toStartWith("msg_");
  expect(typeof r.body.conversation_id).toBe("string");
  expect(r.body.content).toContain("Hello!");
  expect(r.body.usage.prompt_tokens).toBeGreaterThan(0);
  expect(r.body.usage.completion_tokens).toBeGreaterThan(0);
  expect(new Date(r.body.created_at).toISOString()).toBe(r.body.created_at);
});

test("Same session_id: same conversation (the agent remembers); different session_id: a different one", async () => {
  // Doc: "Same session_id: same conversation (agent remembers context)" / "Different session_id: different conversation"
  const first = await send({ content: "Remember the word heron", session_id: "same-1" });
  const second = await send({ content: "Which word?", session_id: "same-1" });
  const other = await send({ content: "Hi", session_id: "same-2" });
  expect([first.status, second.status, other.status]).toEqual([200, 200, 200]);
  expect(second.body.conversation_id).toBe(first.body.conversation_id);
  // The sandbox model counts the user messages it was given: the second saw the first.
  expect(second.body.content).toContain("message 2 of our conversation");
  expect(other.body.conversation_id).not.toBe(first.body.conversation_id);
  expect(other.body.content).toContain("message 1 of our conversation");
});

test("No session_id: a new conversation, its generated session_id returned, and reusable", async () => {
  // Doc: "No session_id: new conversation (auto-generated ID returned in response)"
  // Doc: "The auto-generated session ID is returned in the response as session_id; save it if you want to continue"
  const a = await send({ content: "Start" });
  const b = await send({ content: "Start" });
  expect(a.status).toBe(200);
  expect(typeof a.body.session_id).toBe("string");
  expect(a.body.session_id).not.toBe(b.body.session_id);
  const again = await send({ content: "Continue", session_id: a.body.session_id });
  expect(again.body.conversation_id).toBe(a.body.conversation_id);
  expect(again.body.content).toContain("message 2 of our conversation");
});

test("Streaming: data: lines with session.created, message.started, text.chunk…, message.completed, then data: [DONE]", async () => {
  // Doc: data: {"event": "session.created", "session_id": "my-session-1", "conversation_id": "uuid"}
  //      data: {"event": "message.started", "message_id": "msg_abc123"}
  //      data: {"event": "text.chunk", "delta": "Hello! "}
  //      data: {"event": "message.completed", "message_id": "msg_abc123", "usage": {"prompt_tokens": 150, "completion_tokens": 25}}
  //      data: [DONE]
  const { events, done } = await stream({ content: "Hello", session_id: "sess-1" });
  expect(done).toBe(true);
  const names = events.map((e) => e.event);
  expect(names[0]).toBe("session.created");
  expect(names[1]).toBe("message.started");
  expect(names.at(-1)).toBe("message.completed");
  expect(names.filter((n) => n === "text.chunk").length).toBeGreaterThan(0);
  expect(events[0]).toMatchObject({ session_id: "sess-1" });
  expect(typeof events[0].conversation_id).toBe("string");
  const started = events[1];
  const completed = events.at(-1);
  expect(completed.message_id).toBe(started.message_id);
  expect(completed.usage.prompt_tokens).toBeGreaterThan(0);
  expect(completed.usage.completion_tokens).toBeGreaterThan(0);
  const text = events.filter((e) => e.event === "text.chunk").map((e) => e.delta).join("");
  expect(text).toContain("Sandbox reply to «Hello»");

  // One store, one history: the conversation reads through /v1 by its session_id (external_ref).
  const found = await v1().get(`/v1/sessions?external_ref=sess-1`);
  expect(found.status).toBe(200);
  expect(found.body.data).toHaveLength(1);
  expect(found.body.data[0].id).toBe(events[0].conversation_id);
  const history = await v1().get(`/v1/sessions/${events[0].conversation_id}/messages`);
  expect(history.body.data.map((m: any) => m.role)).toEqual(["user", "assistant"]);
  expect(history.body.data[0].content).toBe("Hello");
  expect(history.body.data[1].content).toBe(text);
  expect(history.body.data[1].id).toBe(started.message_id);
});

test("Streaming without a session_id (the doc's curl) announces the generated session_id first", async () => {
  // Doc: -d '{"content": "Hello", "stream": true}' --no-buffer
  const { events, done } = await stream({ content: "Hello" });
  expect(done).toBe(true);
  expect(events[0].event).toBe("session.created");
  const next = await send({ content: "again", session_id: events[0].session_id });
  expect(next.body.conversation_id).toBe(events[0].conversation_id);
});

test("Verbosity: tool.started/tool.completed at standard, not at minimal; an integration bound to its agent", async () => {
  // Doc: "Each API integration is bound to a custom agent" / "Each key is bound to one integration and one agent"
  // Doc table: tool.started / tool.completed: minimal -, standard Yes, full Yes
  const root = api(server.url, "");
  const bearer = { authorization: `Bearer ${ROOT}` };
  const agent = await v1().post("/v1/agents", {
    name: "Magus tools", system_prompt: "Register what you are given.",
    tools: [{ type: "builtin", name: "register_asset", requires_approval: false }], approval: "never",
  });
  expect(agent.status).toBe(201);
  const issued = await root.post(`/v1/apps/${DEFAULT_APP_ID}/keys`, { name: "magus integration", agent_ids: [agent.body.id] }, bearer);
  expect(issued.status).toBe(201);
  const key = issued.body.key as string;
  const ask = 'call register_asset {"url": "http://127.0.0.1/cat.png", "kind": "image"}';
  const standard = await stream({ content: ask, session_id: "tools-standard" }, key);
  const minimal = await stream({ content: ask, session_id: "tools-minimal", verbosity: "minimal" }, key);
  const names = (s: { events: any[] }) => s.events.map((e) => e.event);
  expect(names(standard)).toContain("tool.started");
  expect(names(standard)).toContain("tool.completed");
  expect(standard.events.find((e) => e.event === "tool.started")).toMatchObject({ name: "register_asset" });
  expect(names(minimal)).not.toContain("tool.started");
  expect(names(minimal)).not.toContain("tool.completed");
  expect(names(minimal)).toContain("message.completed");
  // The conversation ran on the key's agent, not the app's default one.
  const session = await v1().get(`/v1/sessions/${standard.events[0].conversation_id}`);
  expect(session.body.agent_id).toBe(agent.body.id);
  // The synchronous reply lists the turn's tool calls.
  const sync = await send({ content: ask, session_id: "tools-sync" }, key);
  expect(sync.status).toBe(200);
  expect(sync.body.tool_calls).toHaveLength(1);
  expect(sync.body.tool_calls[0]).toMatchObject({ name: "register_asset" });
});

test("Attachments: a file sent base64 inline reaches the agent", async () => {
  // Doc: "attachments": [{"type": "file", "name": "document.pdf", "data": "base64-encoded-content", "content_type": "application/pdf"}]
  const data = Buffer.from("Bonjour tout le monde").toString("base64");
  const r = await send({
    content: "Translate this document", session_id: "attach-1",
    attachments: [{ type: "file", name: "notes.txt", data, content_type: "text/plain" }],
  });
  expect(r.status).toBe(200);
  expect(r.body.content).toContain("notes.txt");
  expect(r.body.content).toContain("Bonjour tout le monde");
  // The doc marks neither name nor content_type required: without them the bytes say what the file is.
  const png = Buffer.from("89504e470d0a1a0a0000000d49484452", "hex").toString("base64");
  const bare = await send({
    content: "What are these?", session_id: "attach-2",
    attachments: [{ type: "file", data: Buffer.from("Hallo Welt").toString("base64") }, { type: "file", data: png }],
  });
  expect(bare.status).toBe(200);
  expect(bare.body.content).toContain("Hallo Welt");
  const files = (await v1().get(`/v1/sessions/${bare.body.conversation_id}/files`)).body.data ?? [];
  expect(files.map((f: any) => f.content_type).sort()).toEqual(["image/png", "text/plain"]);
  // Bytes that are neither a known format nor text are still refused, not stored as some type.
  const binary = await send({ content: "and this?", session_id: "attach-2", attachments: [{ type: "file", data: Buffer.from([0, 1, 2, 3, 255]).toString("base64") }] });
  expect(binary.status).toBe(415);
  expect(binary.body.error.code).toBe("invalid_request");
});

test("Busy: a message sent while the conversation's turn runs waits its turn; both are answered, in order", async () => {
  // Doc: "Conversations are managed automatically via session IDs; the same session ID always routes to the same conversation."
  // (The doc has no busy error: a Magus client expects every message it sends to be answered.)
  const first = `${"long question ".repeat(14)}end`;
  const response = await fetch(`${base}/api/v1/messages`, {
    method: "POST", headers: { Authorization: `Bearer ${server.apiKey}`, "Content-Type": "application/json" },
    body: JSON.stringify({ content: first, session_id: "busy-1", stream: true }),
  });
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let seen = "";
  // Read until the first turn is streaming its reply: it is in flight when the second message is sent.
  while (!seen.includes('"text.chunk"')) {
    const { done, value } = await reader.read();
    if (done) break;
    seen += decoder.decode(value, { stream: true });
  }
  expect(seen).toContain('"text.chunk"');
  const second = await send({ content: "second", session_id: "busy-1" });
  expect(second.status).toBe(200);
  expect(second.body.content).toContain("message 2 of our conversation");
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    seen += decoder.decode(value, { stream: true });
  }
  expect(seen).toContain('"message.completed"');
  expect(seen.trimEnd().endsWith("data: [DONE]")).toBe(true);
  const history = await v1().get(`/v1/sessions/${second.body.conversation_id}/messages`);
  expect(history.body.data.filter((m: any) => m.role === "user").map((m: any) => m.content)).toEqual([first, "second"]);
});

test("First use races: two messages starting the same session_id at once land in one conversation", async () => {
  // Doc: "the same session ID always routes to the same conversation"
  const [a, b] = await Promise.all([send({ content: "one", session_id: "race-1" }), send({ content: "two", session_id: "race-1" })]);
  expect([a.status, b.status]).toEqual([200, 200]);
  expect(a.body.conversation_id).toBe(b.body.conversation_id);
  const found = await v1().get(`/v1/sessions?external_ref=race-1`);
  expect(found.body.data).toHaveLength(1);
  const history = await v1().get(`/v1/sessions/${a.body.conversation_id}/messages`);
  expect(history.body.data.filter((m: any) => m.role === "user").map((m: any) => m.content).sort()).toEqual(["one", "two"]);
});

test("Conflict: a conversation deleted (through /v1) is not started again under its session_id", async () => {
  // Doc: "Same session_id: same conversation" — a deleted one is not silently replaced by an empty one.
  const r = await send({ content: "hello", session_id: "deleted-1" });
  expect((await v1().del(`/v1/sessions/${r.body.conversation_id}`)).status).toBe(200);
  const again = await send({ content: "hello again", session_id: "deleted-1" });
  expect(again.status).toBe(400);
  expect(again.body.error.code).toBe("invalid_request");
});

test("OpenAPI: the surface is documented under its own tag", async () => {
  const doc = await (await fetch(`${server.url}/docs/json`)).json() as any;
  expect(doc.paths["/compat/magus/api/v1/messages"].post.tags).toEqual(["Magus (compat)"]);
});

test("Errors: 400 invalid_request for missing content or a malformed request", async () => {
  // Doc: "400 invalid_request Missing content or malformed request"
  // Doc: All errors follow the format: {"error": {"code": "invalid_api_key", "message": "Invalid API key"}}
  for (const body of [{ session_id: "x" }, { content: "" }, { content: "hi", verbosity: "loud" }, { content: "hi", stream: "yes" }, "{not json", "[1]"]) {
    const r = await send(body);
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe("invalid_request");
    expect(typeof r.body.error.message).toBe("string");
  }
  const bad = await send({ content: "hi", attachments: [{ type: "file", name: "a.txt", data: "%%%not base64%%%" }] });
  expect(bad.status).toBe(400);
  expect(bad.body.error.code).toBe("invalid_request");
});

test("Errors: 401 invalid_api_key for a missing, invalid or malformed key", async () => {
  // Doc: "401 invalid_api_key Missing, invalid, or malformed API key"
  for (const key of [null, "magus_sk_a1b2c3d4e5f6", "x"]) {
    const r = await send({ content: "Hello!", session_id: "auth" }, key);
    expect(r.status).toBe(401);
    expect(r.body.error).toMatchObject({ code: "invalid_api_key", message: expect.any(String) });
  }
});

test("Errors: 502 agent_error when the agent fails; 504 timeout when it does not answer in time", async () => {
  // Doc: "502 agent_error Agent encountered an error while processing"
  const failed = await send({ content: "[fail] please", session_id: "errors-1" });
  expect(failed.status).toBe(502);
  expect(failed.body.error.code).toBe("agent_error");
  // Doc: "data: {"event": …}" / verbosity table: "error Yes Yes Yes" — a failed turn streams an error event.
  const streamed = await stream({ content: "[fail] again", session_id: "errors-1" });
  expect(streamed.events.map((e) => e.event)).toContain("error");
  expect(streamed.events.find((e) => e.event === "error").code).toBe("agent_error");
  // Doc: "504 timeout Agent did not respond within the time limit"
  const slow = await send({ content: "[slow] take your time", session_id: "errors-2" });
  expect(slow.status).toBe(504);
  expect(slow.body.error.code).toBe("timeout");
  // The conversation is usable after both.
  const after = await send({ content: "still there?", session_id: "errors-2" });
  expect(after.status).toBe(200);
});

test("Errors: 403 integration_inactive when the integration is suspended", async () => {
  // Doc: "403 integration_inactive Integration is disabled or suspended"
  const { appId, key } = await newIntegration("Suspended integration");
  expect((await send({ content: "hi", session_id: "s" }, key)).status).toBe(200);
  expect((await manage().patch(`/v1/apps/${appId}`, { status: "suspended" }, asRoot())).status).toBe(200);
  const r = await send({ content: "hi", session_id: "s" }, key);
  expect(r.status).toBe(403);
  expect(r.body.error.code).toBe("integration_inactive");
});

test("Errors: 403 usage_limit_exceeded when the daily limit is reached", async () => {
  // Doc: "403 usage_limit_exceeded Daily credit limit reached"
  // Doc: "Every message consumes credits from the same pool as the web UI and other integrations."
  const { appId, key } = await newIntegration("Limited integration");
  const limits = await manage().put(`/v1/apps/${appId}/limits`, { app: { daily_tokens: 1 }, reservation: { tokens: 1000 } }, asRoot());
  expect(limits.status).toBe(200);
  const r = await send({ content: "hi", session_id: "limited" }, key);
  expect(r.status).toBe(403);
  expect(r.body.error.code).toBe("usage_limit_exceeded");
});

test("Rate limits: over the app's limit a 429 in the doc's envelope, with RateLimit headers", async () => {
  // The doc has no rate-limit error; Agentry's limits still apply (429, Retry-After), in the doc's envelope:
  // Doc: All errors follow the format: {"error": {"code": "invalid_api_key", "message": "Invalid API key"}}
  const { appId, key } = await newIntegration("Rate limited integration");
  const set = await manage().put(`/v1/apps/${appId}/rate_limits`, { per_key: { requests_per_minute: 2 } }, asRoot());
  expect(set.status).toBe(200);
  const answers = [];
  for (let i = 0; i < 4; i++) answers.push(await send({ content: `n${i}`, session_id: "rl" }, key));
  const first = answers[0]!;
  expect(first.status).toBe(200);
  expect(first.headers.get("ratelimit-limit")).not.toBeNull();
  expect(first.headers.get("ratelimit-remaining")).not.toBeNull();
  const limited = answers.find((a) => a.status === 429);
  expect(limited).toBeDefined();
  expect(limited!.body.error.code).toBe("rate_limit_exceeded");
  expect(limited!.headers.get("retry-after")).not.toBeNull();
});

test("Errors: a credit limit reached in the middle of a turn is 403 usage_limit_exceeded, not agent_error", async () => {
  // Doc: "403 usage_limit_exceeded Daily credit limit reached"
  const { appId, key } = await newIntegration("Limited mid-turn");
  // Room for the message's reservation, not for a second step after the first step's tokens.
  expect((await manage().put(`/v1/apps/${appId}/limits`, { app: { daily_tokens: 20 }, reservation: { tokens: 20 } }, asRoot())).status).toBe(200);
  // The app's default agent asks before it registers an asset (a second model step follows the tool);
  // Magus has no approval endpoint, so it is approved through /v1 while the request waits.
  const pending = send({ content: "register https://example.com/cat.png as an asset", session_id: "mid-turn" }, key);
  const admin = api(server.url, key);
  let jobId: string | undefined;
  for (let i = 0; i < 200 && !jobId; i++) {
    const session = (await admin.get("/v1/sessions?limit=1")).body.data?.[0];
    const jobs = session ? (await admin.get(`/v1/sessions/${session.id}/jobs`)).body.data ?? [] : [];
    jobId = jobs.find((j: any) => j.status === "awaiting_approval")?.id;
    if (!jobId) await Bun.sleep(10);
  }
  expect(jobId).toBeDefined();
  expect((await admin.post(`/v1/jobs/${jobId}/approve`)).status).toBeLessThan(300);
  const r = await pending;
  expect(r.status).toBe(403);
  expect(r.body.error.code).toBe("usage_limit_exceeded");
  expect((await admin.get(`/v1/jobs/${jobId}`)).body.error.code).toBe("usage_limit_exceeded");
});

test("The same session_id in two integrations (keys), or another app, is another conversation", async () => {
  // Doc: "Each API integration is bound to a custom agent." / "the same session ID always routes to the same conversation"
  const { appId, key: first } = await newIntegration("Two integrations");
  const second = await newKey(appId, "two");
  const { key: foreign } = await newIntegration("Another app");
  const a1 = await send({ content: "first words", session_id: "shared-id" }, first);
  const a2 = await send({ content: "again", session_id: "shared-id" }, first);
  const b = await send({ content: "other words", session_id: "shared-id" }, second);
  const c = await send({ content: "foreign words", session_id: "shared-id" }, foreign);
  for (const r of [a1, a2, b, c]) expect(r.status).toBe(200);
  expect(a2.body.conversation_id).toBe(a1.body.conversation_id);
  expect(new Set([a1.body.conversation_id, b.body.conversation_id, c.body.conversation_id]).size).toBe(3);
  // Each conversation holds only its own integration's messages.
  expect(a2.body.content).toContain("message 2 of our conversation");
  expect(b.body.content).toContain("message 1 of our conversation");
  expect(c.body.content).toContain("message 1 of our conversation");
  // Another app's key cannot read this app's conversation through /v1 either.
  expect((await api(server.url, foreign).get(`/v1/sessions/${a1.body.conversation_id}/messages`)).status).toBe(404);
});

test("Verbosity: full adds tool.progress and thinking.chunk; standard (the default) leaves them out, minimal the tool events too", async () => {
  // Doc table: tool.progress: minimal -, standard -, full Yes; thinking.chunk: minimal -, standard -, full Yes;
  //            tool.started / tool.completed: minimal -, standard Yes, full Yes; text.chunk, message.completed: Yes at every level.
  // Doc: "Use "full" for debugging or advanced UIs that display reasoning."
  const root = api(server.url, "");
  const bearer = { authorization: `Bearer ${ROOT}` };
  const app = await root.post("/v1/apps", { name: "Magus reasoning" }, bearer);
  expect((await root.put(`/v1/apps/${app.body.id}/connections/claude`, {
    provider: "anthropic", base_url: wire.baseURL.replace(/\/v1$/, ""), api_key: "sk-ant-wire-0001", default_model: "claude-wire",
  }, bearer)).status).toBe(200);
  const admin = (await root.post(`/v1/apps/${app.body.id}/keys`, { name: "setup", scopes: ["data:read", "data:write", "agents:manage"] }, bearer)).body.key as string;
  const agent = await api(server.url, admin).post("/v1/agents", {
    name: "Renderer", approval: "never", model: { connection: "claude", parameters: { emit_thinking: true } },
    tools: [{ type: "http", name: "render", description: "Renders", url: `http://127.0.0.1:${toolServer.port}/render`, parameters: { type: "object" } }],
  });
  expect(agent.status).toBe(201);
  const key = (await root.post(`/v1/apps/${app.body.id}/keys`, { name: "magus integration", agent_ids: [agent.body.id] }, bearer)).body.key as string;
  // Each turn: the model reasons, calls the tool (which reports progress), then answers.
  const turn = () => wire.script(
    { kind: "tools", calls: [{ id: "toolu_1", name: "render", args: "{}" }] },
    { kind: "text", thinking: ["The render is done, ", "so I report it."], chunks: ["Rendered ", "12 frames."] },
  );
  const names = (s: { events: any[] }) => s.events.map((e) => e.event);
  const levels: Record<string, { events: any[]; done: boolean }> = {};
  for (const verbosity of ["full", "standard", "minimal", undefined]) {
    turn();
    levels[String(verbosity)] = await stream({ content: "Render it", session_id: `levels-${verbosity}`, ...(verbosity ? { verbosity } : {}) }, key);
  }
  const full = levels.full!;
  expect(full.done).toBe(true);
  // full: every event of the table, the progress and reasoning in the stream's order.
  expect(full.events.filter((e) => e.event === "tool.progress").map((e) => [e.progress, e.message])).toEqual([[0.5, "halfway"], [1, null]]);
  expect(full.events.filter((e) => e.event === "thinking.chunk").map((e) => e.delta).join("")).toBe("The render is done, so I report it.");
  const order = names(full).filter((n) => n !== "text.chunk");
  expect(order.indexOf("tool.started")).toBeLessThan(order.indexOf("tool.progress"));
  expect(order.lastIndexOf("tool.progress")).toBeLessThan(order.indexOf("tool.completed"));
  expect(order.indexOf("tool.completed")).toBeLessThan(order.indexOf("thinking.chunk"));
  const progress = full.events.find((e) => e.event === "tool.progress");
  expect(progress.tool_call_id).toBe(full.events.find((e) => e.event === "tool.started").tool_call_id);
  // standard, asked for or by default: the tool's start and end, no progress, no reasoning.
  for (const level of ["standard", "undefined"]) {
    const shown = names(levels[level]!);
    expect(shown).toContain("tool.started");
    expect(shown).toContain("tool.completed");
    expect(shown).not.toContain("tool.progress");
    expect(shown).not.toContain("thinking.chunk");
    expect(levels[level]!.events.filter((e) => e.event === "text.chunk").map((e) => e.delta).join("")).toBe("Rendered 12 frames.");
  }
  // minimal: no tool events either.
  const minimal = names(levels.minimal!);
  expect(minimal.filter((n) => n.startsWith("tool.") || n === "thinking.chunk")).toEqual([]);
  expect(minimal).toContain("message.completed");
});
