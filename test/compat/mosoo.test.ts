/**
 * The Mosoo surface (/compat/mosoo), driven as a Mosoo client drives Mosoo: plain fetch with the
 * headers and bodies of the Mosoo doc (seed 001: "Build on published Mosoo Agents"), nothing of /v1 —
 * except where the issue asks that a Thread started here be read through /v1 (one store, one history).
 * Each test quotes the doc lines it relies on.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startTestServer, type TestServer } from "../support/server.ts";
import { api } from "../support/api.ts";
import { DEFAULT_APP_ID } from "../../src/domain/streams.ts";

const ROOT = "root-token-mosoo-0123456789abcdef";
let server: TestServer;
let base: string;

beforeAll(async () => {
  server = await startTestServer({ ADMIN_TOKEN: ROOT, SANDBOX_CHUNK_DELAY_MS: "5" });
  // Doc: curl -X POST "https://mosoo.ai/api/v1/agents/$MOSOO_AGENT_ID/threads" — the base URL changes, the path does not.
  base = `${server.url}/compat/mosoo/api/v1`;
});
afterAll(async () => {
  await server?.stop();
});

/** Doc: -H "Authorization: Bearer $MOSOO_API_TOKEN" -H "Content-Type: application/json" [-H "Idempotency-Key: …"] */
async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}, token: string | null = server.apiKey) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { ...(token !== null ? { Authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { "Content-Type": "application/json" } : {}), ...headers },
    ...(body !== undefined ? { body: typeof body === "string" ? body : JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  let parsed: any = text;
  try { parsed = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, body: parsed, headers: res.headers };
}

/** The doc's first request body: `{"client_external_ref", "input": {"type": "user.message", "content": [{"type": "text", "text"}]}}`. */
const firstRequest = (text: string, ref?: string) => ({
  ...(ref ? { client_external_ref: ref } : {}),
  input: { type: "user.message", content: [{ type: "text", text }] },
});

/** Doc: "Poll the public event log for Agent messages, tool status, file changes, usage updates, and run completion." */
async function pollUntil(threadId: string, done: (events: any[]) => boolean, token: string | null = server.apiKey): Promise<any[]> {
  for (let i = 0; i < 200; i++) {
    const r = await call("GET", `/threads/${threadId}/events?limit=1000`, undefined, {}, token);
    expect(r.status).toBe(200);
    if (done(r.body.events)) return r.body.events;
    await Bun.sleep(50);
  }
  throw new Error(`thread ${threadId} never reached the expected state`);
}
const ended = (events: any[], n = 1) => events.filter((e) => /^run\.(completed|failed|cancelled)$/.test(e.type)).length >= n;

test("First request: create a Thread with the published Agent ID; the response has thread.id and the first run; the event log has the reply", async () => {
  // Doc: "Create a Thread by combining your access token with the published Agent ID."
  // Doc: "The response includes a thread.id and the first run."
  const r = await call("POST", "/agents/default/threads", firstRequest("Triage this customer escalation and suggest next steps.", "ticket-182"),
    { "Idempotency-Key": "ticket-182-create-thread" });
  expect(r.status).toBe(201);
  expect(typeof r.body.thread.id).toBe("string");
  expect(r.body.thread.client_external_ref).toBe("ticket-182");
  expect(typeof r.body.run.id).toBe("string");
  expect(r.body.thread.last_run_id).toBe(r.body.run.id);

  const events = await pollUntil(r.body.thread.id, (e) => ended(e));
  const types = events.map((e) => e.type);
  expect(types).toContain("user.message");
  expect(events.find((e) => e.type === "user.message").content).toBe("Triage this customer escalation and suggest next steps.");
  expect(types).toContain("agent.message");
  expect(types).toContain("run.completed");
  expect(events.find((e) => e.type === "agent.message").content.length).toBeGreaterThan(0);
  for (const e of events) expect(Object.keys(e).sort()).toEqual(["content", "durationMs", "id", "occurredAt", "tokens", "type", "status"].sort());

  // Retrieve: "Retrieve, archive, unarchive, or delete a Thread"
  const got = await call("GET", `/threads/${r.body.thread.id}`);
  expect(got.status).toBe(200);
  expect(got.body.thread.id).toBe(r.body.thread.id);
  expect(got.body.run).toMatchObject({ id: r.body.run.id, status: "completed" });

  // One store, one history: the same conversation through /v1.
  const history = await api(server.url, server.apiKey).get(`/v1/sessions/${r.body.thread.id}/messages`);
  expect(history.status).toBe(200);
  expect(JSON.stringify(history.body)).toContain("Triage this customer escalation");
});

test("Idempotency-Key: a retried create returns the original answer; client_external_ref names one Thread", async () => {
  // Doc: "Keep external systems in sync with client_external_ref and Idempotency-Key."
  const body = firstRequest("Say hello and explain what you can help with.", "quickstart-001");
  const a = await call("POST", "/agents/default/threads", body, { "Idempotency-Key": "quickstart-create-thread" });
  const b = await call("POST", "/agents/default/threads", body, { "Idempotency-Key": "quickstart-create-thread" });
  expect(a.status).toBe(201);
  expect(b.status).toBe(201);
  expect(b.body.run.id).toBe(a.body.run.id);
  expect(b.body.thread.id).toBe(a.body.thread.id);
  // The key with another request is a conflict, not a silent new Thread.
  const other = await call("POST", "/agents/default/threads", firstRequest("Something else", "quickstart-001"), { "Idempotency-Key": "quickstart-create-thread" });
  expect(other.status).toBe(409);
  expect(other.body.error.code).toBe("idempotency_conflict");
  // A new request with the same client_external_ref continues the same Thread with a new run.
  const c = await call("POST", "/agents/default/threads", firstRequest("And one more thing.", "quickstart-001"));
  expect(c.status).toBe(201);
  expect(c.body.thread.id).toBe(a.body.thread.id);
  expect(c.body.run.id).not.toBe(a.body.run.id);
  await pollUntil(a.body.thread.id, (e) => ended(e, 2));
});

test("Send events: another user message continues the Thread; list Threads; the event log's limit and truncated", async () => {
  const created = await call("POST", "/agents/default/threads", firstRequest("Hello"));
  const id = created.body.thread.id;
  await pollUntil(id, (e) => ended(e));
  // Doc: "POST /threads/{threadId}/events sends user messages, permission decisions, or interrupts."
  const sent = await call("POST", `/threads/${id}/events`, { events: [{ type: "user_message", text: "Give me the three most important next steps." }] },
    { "Idempotency-Key": "quickstart-send-message-1" });
  expect(sent.status).toBe(202);
  expect(sent.body.events).toHaveLength(1);
  expect(typeof sent.body.events[0].run.id).toBe("string");
  expect(sent.body.thread.id).toBe(id);
  expect(sent.body.warnings).toEqual([]);
  const events = await pollUntil(id, (e) => ended(e, 2));
  expect(events.filter((e) => e.type === "user.message").map((e) => e.content)).toEqual(["Hello", "Give me the three most important next steps."]);
  // Events are in chronological order, ids unique.
  expect(new Set(events.map((e) => e.id)).size).toBe(events.length);

  // GET /threads/{threadId}/events reads the public event log: the latest `limit`, oldest first.
  const two = await call("GET", `/threads/${id}/events?limit=2`);
  expect(two.status).toBe(200);
  expect(two.body.truncated).toBe(true);
  expect(two.body.events.map((e: any) => e.id)).toEqual(events.slice(-2).map((e) => e.id));
  const bad = await call("GET", `/threads/${id}/events?limit=0`);
  expect(bad.status).toBe(400);
  expect(typeof bad.body.error.code).toBe("string");

  // Doc: "GET /agents/{agentId}/threads lists Threads visible to the caller."
  const list = await call("GET", "/agents/default/threads");
  expect(list.status).toBe(200);
  expect(list.body.threads.map((t: any) => t.id)).toContain(id);
});

test("Permission decision: a run waiting for permission continues once the decision is sent", async () => {
  // Doc: "Send user messages or permission decisions, then read Agent-visible results from the Thread event list."
  const created = await call("POST", "/agents/default/threads", firstRequest("Please register https://example.com/cat.png as an asset"));
  const id = created.body.thread.id;
  const waiting = await pollUntil(id, (e) => e.some((x) => x.type === "permission.requested"));
  expect(waiting.find((e) => e.type === "permission.requested").status).toBe("pending");
  expect((await call("GET", `/threads/${id}`)).body.run.status).toBe("waiting_for_permission");
  const sent = await call("POST", `/threads/${id}/events`, { events: [{ type: "permission_decision", decision: "allow" }] });
  expect(sent.status).toBe(202);
  const events = await pollUntil(id, (e) => ended(e));
  expect(events.map((e) => e.type)).toContain("run.completed");
  expect(events.map((e) => e.type)).not.toContain("permission.requested");
  // A decision with nothing waiting is a conflict.
  const again = await call("POST", `/threads/${id}/events`, { events: [{ type: "permission_decision", decision: "allow" }] });
  expect(again.status).toBe(409);
  expect(again.body.error.code).toBe("no_pending_permission");
});

test("Interrupt: a user_interrupt stops the run in flight", async () => {
  const created = await call("POST", "/agents/default/threads", firstRequest("Please register https://example.com/cat.png as an asset"));
  const id = created.body.thread.id;
  await pollUntil(id, (e) => e.some((x) => x.type === "permission.requested"));
  const sent = await call("POST", `/threads/${id}/events`, { events: [{ type: "user_interrupt" }] });
  expect(sent.status).toBe(202);
  const events = await pollUntil(id, (e) => ended(e));
  expect(events.map((e) => e.type)).toContain("run.cancelled");
  // Nothing in flight: the interrupt is accepted with a warning.
  const idle = await call("POST", `/threads/${id}/events`, { events: [{ type: "user_interrupt" }] });
  expect(idle.status).toBe(202);
  expect(idle.body.warnings.map((w: any) => w.code)).toEqual(["nothing_to_interrupt"]);
});

test("Files: add, list and remove Thread files; API-added files are attachments", async () => {
  // Doc: "Attach files to a Thread before or during a run." "Add, list, and remove Thread files. API-added files are attachments"
  const created = await call("POST", "/agents/default/threads", firstRequest("Hello"));
  const id = created.body.thread.id;
  const added = await call("POST", `/threads/${id}/files`, { contentBase64: Buffer.from("Hello from a brief.\n").toString("base64"), contentType: "text/plain", name: "brief.txt" });
  expect(added.status).toBe(201);
  expect(added.body.file).toMatchObject({ name: "brief.txt", mimeType: "text/plain", kind: "attachment", size: 20, committed: true });
  const list = await call("GET", `/threads/${id}/files`);
  expect(list.body.files.map((f: any) => f.id)).toContain(added.body.file.id);
  const removed = await call("DELETE", `/threads/${id}/files/${added.body.file.id}`);
  expect(removed.status).toBe(200);
  expect((await call("GET", `/threads/${id}/files`)).body.files.map((f: any) => f.id)).not.toContain(added.body.file.id);
  const notBase64 = await call("POST", `/threads/${id}/files`, { contentBase64: "%%%", contentType: "text/plain", name: "x.txt" });
  expect(notBase64.status).toBe(400);
  await pollUntil(id, (e) => ended(e));
});

test("Lifecycle: archive, unarchive and delete a Thread", async () => {
  // Doc: "Retrieve, archive, unarchive, or delete a Thread when your integration no longer needs it active."
  const created = await call("POST", "/agents/default/threads", firstRequest("Hello"));
  const id = created.body.thread.id;
  await pollUntil(id, (e) => ended(e));
  expect((await call("POST", `/threads/${id}/archive`)).status).toBe(200);
  expect((await call("GET", "/agents/default/threads")).body.threads.map((t: any) => t.id)).not.toContain(id);
  expect((await call("GET", "/agents/default/threads?archived=true")).body.threads.map((t: any) => t.id)).toContain(id);
  expect((await call("POST", `/threads/${id}/unarchive`)).status).toBe(200);
  expect((await call("GET", "/agents/default/threads")).body.threads.map((t: any) => t.id)).toContain(id);
  expect((await call("DELETE", `/threads/${id}`)).status).toBe(200);
  const gone = await call("GET", `/threads/${id}`);
  expect(gone.status).toBe(404);
  expect(gone.body.error.code).toBe("session_not_found");
});

test("Access: no token is 401, an unknown Agent 404, a bad body 400, all in the error envelope", async () => {
  // Doc: "The caller token must be valid and not revoked." "The Agent must exist"
  const none = await call("POST", "/agents/default/threads", firstRequest("Hi"), {}, null);
  expect(none.status).toBe(401);
  expect(typeof none.body.error.code).toBe("string");
  expect(typeof none.body.error.message).toBe("string");
  const wrong = await call("GET", "/agents/default/threads", undefined, {}, "not-a-key");
  expect(wrong.status).toBe(401);
  const unknown = await call("POST", "/agents/agent_nope/threads", firstRequest("Hi"));
  expect(unknown.status).toBe(404);
  expect(unknown.body.error.code).toBe("agent_not_found");
  const bad = await call("POST", "/agents/default/threads", { input: { type: "user.message", content: [] } });
  expect(bad.status).toBe(400);
  const notJson = await call("POST", "/agents/default/threads", "{not json");
  expect(notJson.status).toBe(400);
  expect(typeof notJson.body.error.code).toBe("string");
  const unknownEvent = await call("POST", "/threads/sess_nope/events", { events: [{ type: "agent_message", text: "x" }] });
  expect(unknownEvent.status).toBe(400);
  const noThread = await call("GET", "/threads/sess_nope/events");
  expect(noThread.status).toBe(404);
  expect(noThread.body.error.code).toBe("session_not_found");
});

test("OpenAPI: the surface is documented under its own tag", async () => {
  const doc = await (await fetch(`${server.url}/docs/json`)).json() as any;
  const op = doc.paths["/compat/mosoo/api/v1/agents/{agentId}/threads"];
  expect(op.post.tags).toContain("Mosoo (compat)");
  expect(doc.paths["/compat/mosoo/api/v1/threads/{threadId}/events"].get.tags).toContain("Mosoo (compat)");
});

test("attributed_user_id: the Thread is that user's, as /v1 sees it", async () => {
  // Doc: "Project work to a user through attributed_user_id when an Organization Service token is allowed to do so."
  const r = await call("POST", "/agents/default/threads", { ...firstRequest("Hello"), attributed_user_id: "user-42" });
  expect(r.status).toBe(201);
  expect(r.body.thread.attributed_user).toEqual({ id: "user-42" });
  const v1 = await api(server.url, server.apiKey).get("/v1/sessions?user_id=user-42");
  expect(v1.body.data.map((s: any) => s.id)).toContain(r.body.thread.id);
  await pollUntil(r.body.thread.id, (e) => ended(e));
});

test("Rate limits: RateLimit headers on every answer; over the limit a 429 with Retry-After in the error envelope", async () => {
  // The doc documents no rate limit; Agentry's limits still apply to the same token.
  const bearer = { authorization: `Bearer ${ROOT}` };
  const root = api(server.url, "");
  const app = await root.post("/v1/apps", { name: "Rate limited Mosoo integration" }, bearer);
  const key = (await root.post(`/v1/apps/${app.body.id}/keys`, { name: "mosoo" }, bearer)).body.key as string;
  expect((await root.put(`/v1/apps/${app.body.id}/rate_limits`, { per_key: { requests_per_minute: 2 } }, bearer)).status).toBe(200);
  const answers = [];
  for (let i = 0; i < 4; i++) answers.push(await call("GET", "/agents/default/threads", undefined, {}, key));
  expect(answers[0]!.status).toBe(200);
  expect(answers[0]!.headers.get("ratelimit-limit")).not.toBeNull();
  expect(answers[0]!.headers.get("ratelimit-remaining")).not.toBeNull();
  const limited = answers.find((a) => a.status === 429);
  expect(limited).toBeDefined();
  expect(limited!.body.error.code).toBe("rate_limit_exceeded");
  expect(limited!.headers.get("retry-after")).not.toBeNull();
});

test("Access: a token limited to other Agents is refused with 403", async () => {
  // Doc: "Organization Service tokens must be explicitly allowed to call selected published Agents."
  const v1 = api(server.url, server.apiKey);
  const agent = await v1.post("/v1/agents", { name: "Published agent" });
  expect(agent.status).toBe(201);
  const bearer = { authorization: `Bearer ${ROOT}` };
  const root = api(server.url, "");
  const appId = DEFAULT_APP_ID;
  const limitedKey = (await root.post(`/v1/apps/${appId}/keys`, { name: "selected", agent_ids: [agent.body.id] }, bearer)).body.key as string;
  const allowed = await call("POST", `/agents/${agent.body.id}/threads`, firstRequest("Hi"), {}, limitedKey);
  expect(allowed.status).toBe(201);
  expect(allowed.body.thread.agent_id).toBe(agent.body.id);
  const refused = await call("POST", "/agents/default/threads", firstRequest("Hi"), {}, limitedKey);
  expect(refused.status).toBe(403);
  expect(refused.body.error.code).toBe("agent_not_allowed");
  await pollUntil(allowed.body.thread.id, (e) => ended(e));
});

/** Every event of a Thread's log, read the doc's way (the latest 1000). */
const fullLog = async (threadId: string, token: string | null = server.apiKey) => (await call("GET", `/threads/${threadId}/events?limit=1000`, undefined, {}, token)).body.events as any[];

/** A second app with its own key, and an end-user token of the default app for `user`. */
async function otherAppKey(name: string): Promise<string> {
  const root = api(server.url, "");
  const bearer = { authorization: `Bearer ${ROOT}` };
  const app = await root.post("/v1/apps", { name }, bearer);
  return (await root.post(`/v1/apps/${app.body.id}/keys`, { name: "mosoo" }, bearer)).body.key as string;
}
const endUserToken = async (user: string): Promise<string> => (await api(server.url, server.apiKey).post("/v1/end-user-tokens", { user_id: user })).body.token as string;

test("Send events: a batch is checked whole before any of it is applied, and a refused batch applies nothing on retry either", async () => {
  // Doc: "POST /threads/{threadId}/events sends user messages, permission decisions, or interrupts."
  // Doc: "Keep external systems in sync with client_external_ref and Idempotency-Key."
  const created = await call("POST", "/agents/default/threads", firstRequest("Hello"));
  const id = created.body.thread.id;
  await pollUntil(id, (e) => ended(e));
  const before = (await fullLog(id)).filter((e) => e.type === "user.message").length;
  // A message, then a decision nothing waits for: the decision is refused, and the message with it.
  const batch = { events: [{ type: "user_message", text: "first of a refused batch" }, { type: "permission_decision", decision: "allow" }] };
  for (let attempt = 0; attempt < 2; attempt++) {
    const r = await call("POST", `/threads/${id}/events`, batch, { "Idempotency-Key": "refused-batch-1" });
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe("no_pending_permission");
  }
  expect((await fullLog(id)).filter((e) => e.type === "user.message")).toHaveLength(before);
  // A run id that is not this Thread's: 404, nothing applied.
  const unknownRun = await call("POST", `/threads/${id}/events`, { events: [{ type: "user_message", text: "second of a refused batch" }, { type: "permission_decision", decision: "deny", run_id: "job_not_here" }] });
  expect(unknownRun.status).toBe(404);
  expect(unknownRun.body.error.code).toBe("run_not_found");
  // A content part we cannot take, after a good message: 400, nothing applied.
  const badPart = await call("POST", `/threads/${id}/events`, {
    events: [{ type: "user_message", text: "third of a refused batch" }, { type: "user.message", content: [{ type: "image", url: "https://example.com/cat.png" }] }],
  });
  expect(badPart.status).toBe(400);
  expect(badPart.body.error.code).toBe("unsupported_content_type");
  const log = await fullLog(id);
  expect(log.filter((e) => e.type === "user.message")).toHaveLength(before);
  expect(JSON.stringify(log)).not.toContain("of a refused batch");

  // A batch that is applied is applied once, however often it is retried with its key.
  const good = { events: [{ type: "user_message", text: "applied once", client_request_id: "c-1" }, { type: "user_message", text: "and this once too", client_request_id: "c-2" }] };
  const a = await call("POST", `/threads/${id}/events`, good, { "Idempotency-Key": "applied-batch-1" });
  const b = await call("POST", `/threads/${id}/events`, good, { "Idempotency-Key": "applied-batch-1" });
  expect(a.status).toBe(202);
  expect(b.status).toBe(202);
  expect(a.body.events.map((e: any) => e.clientRequestId)).toEqual(["c-1", "c-2"]);
  expect(b.body.events.map((e: any) => e.run.id)).toEqual(a.body.events.map((e: any) => e.run.id));
  const after = await pollUntil(id, (e) => ended(e, 3));
  expect(after.filter((e) => e.type === "user.message").map((e) => e.content)).toEqual(["Hello", "applied once", "and this once too"]);
});

test("Send events: the doc's user.message shape is accepted, in events and as input; content we cannot take is refused by name", async () => {
  // Doc: "input": {"type": "user.message", "content": [{"type": "text", "text": "Triage this customer escalation and suggest next steps."}]}
  const created = await call("POST", "/agents/default/threads", firstRequest("Hello"));
  const id = created.body.thread.id;
  await pollUntil(id, (e) => ended(e));
  const asEvent = await call("POST", `/threads/${id}/events`, { events: [{ type: "user.message", content: [{ type: "text", text: "Sent as a user.message event." }] }] });
  expect(asEvent.status).toBe(202);
  expect(typeof asEvent.body.events[0].run.id).toBe("string");
  await pollUntil(id, (e) => ended(e, 2));
  const asInput = await call("POST", `/threads/${id}/events`, { input: { type: "user.message", content: [{ type: "text", text: "Sent as input," }, { type: "text", text: "in two parts." }] } });
  expect(asInput.status).toBe(202);
  const events = await pollUntil(id, (e) => ended(e, 3));
  expect(events.filter((e) => e.type === "user.message").map((e) => e.content)).toEqual(["Hello", "Sent as a user.message event.", "Sent as input,\n\nin two parts."]);
  // Neither shape, or both: 400.
  expect((await call("POST", `/threads/${id}/events`, {})).status).toBe(400);
  // Content parts other than text are refused, never dropped: 400 in the error envelope, naming the part.
  const image = await call("POST", "/agents/default/threads", { input: { type: "user.message", content: [{ type: "text", text: "Look:" }, { type: "image", url: "https://example.com/cat.png" }] } });
  expect(image.status).toBe(400);
  expect(image.body.error.code).toBe("unsupported_content_type");
  expect(typeof image.body.error.message).toBe("string");
  const inEvent = await call("POST", `/threads/${id}/events`, { input: { type: "user.message", content: [{ type: "file", file_id: "file_x" }] } });
  expect(inEvent.status).toBe(400);
  expect(inEvent.body.error.code).toBe("unsupported_content_type");
});

test("client_external_ref names one Thread for the app's keys, whichever key asks; another app's key cannot reach it", async () => {
  // Doc: "Keep external systems in sync with client_external_ref and Idempotency-Key."
  // Doc: "The token identifies the caller; it does not change which published Agent is run"
  const root = api(server.url, "");
  const bearer = { authorization: `Bearer ${ROOT}` };
  const secondKey = (await root.post(`/v1/apps/${DEFAULT_APP_ID}/keys`, { name: "second mosoo integration" }, bearer)).body.key as string;
  const first = await call("POST", "/agents/default/threads", firstRequest("Triage ticket 900.", "ticket-900"));
  expect(first.status).toBe(201);
  await pollUntil(first.body.thread.id, (e) => ended(e));
  const second = await call("POST", "/agents/default/threads", firstRequest("Any update on ticket 900?", "ticket-900"), {}, secondKey);
  expect(second.status).toBe(201);
  expect(second.body.thread.id).toBe(first.body.thread.id);
  expect(second.body.run.id).not.toBe(first.body.run.id);
  await pollUntil(first.body.thread.id, (e) => ended(e, 2));

  // Another app: its ticket-900 is its own Thread, and this app's Thread is not found.
  const other = await otherAppKey("Another Mosoo org");
  const theirs = await call("POST", "/agents/default/threads", firstRequest("Their ticket 900.", "ticket-900"), {}, other);
  expect(theirs.status).toBe(201);
  expect(theirs.body.thread.id).not.toBe(first.body.thread.id);
  expect((await fullLog(first.body.thread.id)).map((e) => e.content)).not.toContain("Their ticket 900.");

  // An end user's refs are their own: the same ref from an end user's token is that user's Thread, not the keys'.
  const token = await endUserToken("ref-user-1");
  const mine = await call("POST", "/agents/default/threads", firstRequest("Mine now?", "ticket-900"), {}, token);
  expect(mine.status).toBe(201);
  expect(mine.body.thread.id).not.toBe(first.body.thread.id);
  expect(mine.body.thread.created_by).toEqual({ id: "ref-user-1" });
  await pollUntil(mine.body.thread.id, (e) => ended(e));
  expect((await fullLog(first.body.thread.id)).map((e) => e.content)).not.toContain("Mine now?");
  const own = await call("POST", "/agents/default/threads", firstRequest("My own ticket.", "ticket-901"), {}, token);
  expect(own.status).toBe(201);
  expect(own.body.thread.created_by).toEqual({ id: "ref-user-1" });
  await pollUntil(own.body.thread.id, (e) => ended(e));
  expect(theirs.body.thread.client_external_ref).toBe("ticket-900");
});

/** Reads the log the poller's way: `after` the last id seen, `limit` at a time, until nothing more follows. */
async function pollAfter(threadId: string, after: string, limit: number): Promise<{ events: any[]; next: string }> {
  const events: any[] = [];
  let cursor = after;
  for (let i = 0; i < 500; i++) {
    const r = await call("GET", `/threads/${threadId}/events?after=${encodeURIComponent(cursor)}&limit=${limit}`);
    expect(r.status).toBe(200);
    events.push(...r.body.events);
    cursor = r.body.next_after;
    if (!r.body.has_more) return { events, next: cursor };
  }
  throw new Error("the log never ended");
}

test("Event log: a poller reads what is new after the last event it saw, each event once", async () => {
  // Doc: "Poll the public event log for Agent messages, tool status, file changes, usage updates, and run completion."
  // Doc: "Events: The stable public log for API consumers."
  const created = await call("POST", "/agents/default/threads", firstRequest("Please register https://example.com/cat.png as an asset"));
  const id = created.body.thread.id;
  await pollUntil(id, (e) => e.some((x) => x.type === "permission.requested"));
  // From the start (after=0), one event a page: the whole log, as the doc's read gives it.
  const start = await pollAfter(id, "0", 1);
  expect(start.events.map((e) => e.id)).toEqual((await fullLog(id)).map((e) => e.id));
  expect(start.events.at(-1).type).toBe("permission.requested");
  // Nothing new: an empty page, and the same place to poll from.
  const idle = await call("GET", `/threads/${id}/events?after=${encodeURIComponent(start.next)}`);
  expect(idle.body).toMatchObject({ events: [], has_more: false, next_after: start.next });
  // After the decision, only what followed: the request is not shown again, nothing is repeated.
  expect((await call("POST", `/threads/${id}/events`, { events: [{ type: "permission_decision", decision: "allow" }] })).status).toBe(202);
  await pollUntil(id, (e) => ended(e));
  const next = await pollAfter(id, start.next, 2);
  expect(next.events.map((e) => e.type)).toContain("run.completed");
  expect(next.events.map((e) => e.type)).not.toContain("permission.requested");
  const seen = [...start.events, ...next.events].map((e) => e.id);
  expect(new Set(seen).size).toBe(seen.length);
  // Every event the log holds now was seen once (the answered request is no longer in it).
  expect((await fullLog(id)).map((e) => e.id).every((x) => seen.includes(x))).toBe(true);
  // An id this log never gives is refused.
  const bad = await call("GET", `/threads/${id}/events?after=yesterday`);
  expect(bad.status).toBe(400);
  expect(bad.body.error.code).toBe("invalid_cursor");
});

test("Thread list: pages through every Thread with limit and next_cursor", async () => {
  // Doc: "GET /agents/{agentId}/threads lists Threads visible to the caller."
  const agent = await api(server.url, server.apiKey).post("/v1/agents", { name: "Listed agent" });
  const made: string[] = [];
  for (let i = 0; i < 5; i++) {
    const r = await call("POST", `/agents/${agent.body.id}/threads`, firstRequest(`Thread ${i}`));
    expect(r.status).toBe(201);
    made.push(r.body.thread.id);
  }
  const seen: string[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 10; page++) {
    const r = await call("GET", `/agents/${agent.body.id}/threads?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    expect(r.status).toBe(200);
    expect(r.body.threads.length).toBeLessThanOrEqual(2);
    seen.push(...r.body.threads.map((t: any) => t.id));
    cursor = r.body.next_cursor;
    expect(r.body.has_more).toBe(cursor !== null);
    if (!cursor) break;
  }
  // Newest first, each once.
  expect(seen).toEqual([...made].reverse());
  expect((await call("GET", `/agents/${agent.body.id}/threads?cursor=not-a-cursor`)).status).toBe(400);
  for (const id of made) await pollUntil(id, (e) => ended(e));
});

test("Tenancy: another app's token gets 404 on this app's Threads; an end user's token sees only its own", async () => {
  // Doc: "Every request is evaluated against the published Agent and the caller token"; "GET /agents/{agentId}/threads lists Threads visible to the caller."
  const created = await call("POST", "/agents/default/threads", { ...firstRequest("Owned by user-a"), attributed_user_id: "tenancy-user-a" });
  const id = created.body.thread.id;
  await pollUntil(id, (e) => ended(e));
  const other = await otherAppKey("Tenancy Mosoo org");
  for (const [method, path, body] of [
    ["GET", `/threads/${id}`, undefined], ["GET", `/threads/${id}/events`, undefined], ["GET", `/threads/${id}/files`, undefined],
    ["POST", `/threads/${id}/events`, { events: [{ type: "user_message", text: "from another app" }] }], ["POST", `/threads/${id}/archive`, undefined],
    ["DELETE", `/threads/${id}`, undefined],
  ] as const) {
    const r = await call(method, path, body, {}, other);
    expect(r.status).toBe(404);
    expect(r.body.error.code).toBe("session_not_found");
  }
  expect((await call("GET", "/agents/default/threads", undefined, {}, other)).body.threads.map((t: any) => t.id)).not.toContain(id);

  // user-a's token sees user-a's Thread; user-b's token neither lists nor reads it.
  const a = await endUserToken("tenancy-user-a");
  const b = await endUserToken("tenancy-user-b");
  expect((await call("GET", `/threads/${id}`, undefined, {}, a)).status).toBe(200);
  expect((await call("GET", "/agents/default/threads", undefined, {}, a)).body.threads.map((t: any) => t.id)).toEqual([id]);
  const bList = await call("GET", "/agents/default/threads", undefined, {}, b);
  expect(bList.status).toBe(200);
  expect(bList.body.threads).toEqual([]);
  for (const path of [`/threads/${id}`, `/threads/${id}/events`]) {
    const r = await call("GET", path, undefined, {}, b);
    expect(r.status).toBe(403);
    expect(r.body.error.code).toBe("permission_denied");
  }
  // Nor may user-b's token start a Thread attributed to user-a.
  expect((await call("POST", "/agents/default/threads", { ...firstRequest("As a?"), attributed_user_id: "tenancy-user-a" }, {}, b)).status).toBe(403);
});

test("Tenancy: an end user whose id is spelled like a key's own user reaches none of that key's Threads", async () => {
  // Doc: "Every request is evaluated against the published Agent and the caller token."
  const created = await call("POST", "/agents/default/threads", firstRequest("The key's own Thread"));
  expect(created.status).toBe(201);
  const id = created.body.thread.id;
  const keyUser = created.body.thread.created_by.id;
  expect(keyUser).toMatch(/^mosoo-key_/);
  expect(created.body.thread.attributed_user).toBeNull();
  // No end-user token is minted for that id (src/app/keyUsers.ts), so no one acts as the key's user.
  const minted = await api(server.url, server.apiKey).post("/v1/end-user-tokens", { user_id: keyUser });
  expect(minted.status).toBe(400);
  expect(minted.body.error.code).toBe("reserved_user_id");
  // Nor may a key name such an id as the Thread's user.
  const named = await call("POST", "/agents/default/threads", { ...firstRequest("As the key?"), attributed_user_id: keyUser });
  expect(named.status).toBe(400);
  expect(named.body.error.code).toBe("reserved_user_id");
  await pollUntil(id, (e) => ended(e));
});

test("Permission decision: a run waiting for permission stays visible and decidable while later messages queue behind it", async () => {
  // Doc: "Send user messages or permission decisions, then read Agent-visible results from the Thread event list."
  // Doc: "Threads track messages, files, run status, attribution, and lifecycle state."
  const created = await call("POST", "/agents/default/threads", firstRequest("Please register https://example.com/cat.png as an asset"));
  const id = created.body.thread.id;
  await pollUntil(id, (e) => e.some((x) => x.type === "permission.requested"));
  const seen = await pollAfter(id, "0", 100);
  const request = seen.events.find((e) => e.type === "permission.requested");
  expect(seen.next).toBe(request.id);
  // Another message while the run waits: it queues behind the waiting run.
  const queued = await call("POST", `/threads/${id}/events`, { events: [{ type: "user_message", text: "And one more thing while you wait." }] });
  expect(queued.status).toBe(202);
  expect(queued.body.events[0].run.id).not.toBe(created.body.run.id);
  // The request is still in the log, where it was and under the same id, and the Thread shows the waiting run.
  const log = await fullLog(id);
  expect(log.filter((e) => e.type === "permission.requested")).toEqual([request]);
  expect(log.map((e) => e.content)).toContain("And one more thing while you wait.");
  const thread = await call("GET", `/threads/${id}`);
  expect(thread.body.run).toMatchObject({ id: created.body.run.id, status: "waiting_for_permission" });
  expect(thread.body.thread.last_run_id).toBe(queued.body.events[0].run.id);
  // A poller past the request sees only what is new: the queued message, not the request again.
  const next = await pollAfter(id, seen.next, 100);
  expect(next.events.map((e) => e.type)).toEqual(["user.message", "run.created"]);
  // Deciding it lets the run finish, and the queued message runs after it.
  const decided = await call("POST", `/threads/${id}/events`, { events: [{ type: "permission_decision", decision: "allow" }] });
  expect(decided.status).toBe(202);
  expect(decided.body.events[0].run.id).toBe(created.body.run.id);
  const after = await pollUntil(id, (e) => ended(e, 2));
  expect(after.filter((e) => e.type === "run.completed").map((e) => e.content)).toEqual([created.body.run.id, queued.body.events[0].run.id]);
  expect(after.map((e) => e.type)).not.toContain("permission.requested");
});

test("client_external_ref: an end user's ref is theirs; a key writes into it only by naming that user", async () => {
  // Doc: "Keep external systems in sync with client_external_ref and Idempotency-Key."
  // Doc: "Project work to a user through attributed_user_id when an Organization Service token is allowed to do so."
  const bob = await endUserToken("ref-bob");
  const bobs = await call("POST", "/agents/default/threads", firstRequest("Bob's own ticket.", "ticket-1182"), {}, bob);
  expect(bobs.status).toBe(201);
  // The backend's ticket-1182 (no user named) is the keys' Thread, not the one Bob started under that ref.
  const backend = await call("POST", "/agents/default/threads", firstRequest("Customer Alice's ticket, card ending 4242.", "ticket-1182"));
  expect(backend.status).toBe(201);
  expect(backend.body.thread.id).not.toBe(bobs.body.thread.id);
  expect(backend.body.thread.attributed_user).toBeNull();
  await pollUntil(backend.body.thread.id, (e) => ended(e));
  await pollUntil(bobs.body.thread.id, (e) => ended(e));
  expect(JSON.stringify(await fullLog(bobs.body.thread.id, bob))).not.toContain("Alice");
  expect((await call("GET", `/threads/${backend.body.thread.id}/events`, undefined, {}, bob)).status).toBe(403);
  // Naming Bob, the backend reaches Bob's Thread under his ref.
  const forBob = await call("POST", "/agents/default/threads", { ...firstRequest("A follow-up for Bob.", "ticket-1182"), attributed_user_id: "ref-bob" });
  expect(forBob.status).toBe(201);
  expect(forBob.body.thread.id).toBe(bobs.body.thread.id);
  // Another end user's ticket-1182 is theirs again; the keys' one is still the keys'.
  const carol = await call("POST", "/agents/default/threads", firstRequest("Carol's ticket.", "ticket-1182"), {}, await endUserToken("ref-carol"));
  expect(carol.status).toBe(201);
  expect([bobs.body.thread.id, backend.body.thread.id]).not.toContain(carol.body.thread.id);
  const again = await call("POST", "/agents/default/threads", firstRequest("Any update on Alice's ticket?", "ticket-1182"));
  expect(again.body.thread.id).toBe(backend.body.thread.id);
  for (const [thread, n] of [[bobs.body.thread.id, 2], [carol.body.thread.id, 1], [backend.body.thread.id, 2]] as const) await pollUntil(thread, (e) => ended(e, n));
});

test("Rate limits: every turn a send-events batch starts is a heavy call; a batch the budget cannot cover is refused whole", async () => {
  // Doc: "POST /threads/{threadId}/events sends user messages, permission decisions, or interrupts."
  // The doc documents no rate limit; Agentry's heavy budget counts the turns a call starts.
  const bearer = { authorization: `Bearer ${ROOT}` };
  const root = api(server.url, "");
  const app = await root.post("/v1/apps", { name: "Heavy Mosoo integration" }, bearer);
  expect((await root.put(`/v1/apps/${app.body.id}/rate_limits`, { per_key: { requests_per_minute: 1000, heavy_per_minute: 4 } }, bearer)).status).toBe(200);
  const key = (await root.post(`/v1/apps/${app.body.id}/keys`, { name: "mosoo" }, bearer)).body.key as string;
  const created = await call("POST", "/agents/default/threads", firstRequest("Hello"), {}, key);
  expect(created.status).toBe(201);
  const id = created.body.thread.id;
  // Five turns in one call need five heavy units, more than the budget of four: 429, nothing written.
  const five = { events: Array.from({ length: 5 }, (_, i) => ({ type: "user_message", text: `batched message ${i}` })) };
  const refused = await call("POST", `/threads/${id}/events`, five, { "Idempotency-Key": "heavy-batch-1" }, key);
  expect(refused.status).toBe(429);
  expect(refused.body.error.code).toBe("rate_limit_exceeded");
  expect(refused.headers.get("retry-after")).not.toBeNull();
  const log = await pollUntil(id, (e) => ended(e), key);
  expect(JSON.stringify(log)).not.toContain("batched message");
  // Two turns fit what is left (the create and the refused call took one each).
  const two = await call("POST", `/threads/${id}/events`, { events: [{ type: "user_message", text: "one" }, { type: "user_message", text: "two" }] }, {}, key);
  expect(two.status).toBe(202);
  expect(two.body.events.map((e: any) => typeof e.run?.id)).toEqual(["string", "string"]);
  const done = await pollUntil(id, (e) => ended(e, 3), key);
  expect(done.filter((e) => e.type === "user.message").map((e) => e.content)).toEqual(["Hello", "one", "two"]);
});

test("Files before and during a run: a Thread's files reach the agent with the next message, each once", async () => {
  // Doc: "Attach files to a Thread before or during a run."
  // Doc: "Add, list, and remove Thread files. API-added files are attachments"
  // Mosoo's create-thread takes "files": [{"file_id": …}] beside the input; its files endpoint is the Thread's.
  const ref = "launch-plan-7";
  const created = await call("POST", "/agents/default/threads", firstRequest("We will send you the launch plan.", ref));
  expect(created.status).toBe(201);
  const id = created.body.thread.id;
  await pollUntil(id, (e) => ended(e));
  const plan = "Launch plan: ship on Friday, tell support first.";
  const added = await call("POST", `/threads/${id}/files`, { contentBase64: Buffer.from(plan).toString("base64"), contentType: "text/plain", name: "plan.txt" });
  expect(added.status).toBe(201);
  // Before the run: the create names the file (the Thread's ref continues it), and that run reads it.
  const withFile = await call("POST", "/agents/default/threads", {
    ...firstRequest("Summarize the attached launch plan and list follow-ups.", ref), files: [{ file_id: added.body.file.id }],
  });
  expect(withFile.status).toBe(201);
  expect(withFile.body.thread.id).toBe(id);
  let log = await pollUntil(id, (e) => ended(e, 2));
  const second = log.filter((e) => e.type === "agent.message")[1].content as string;
  expect(second).toContain("plan.txt");
  expect(second).toContain("Launch plan: ship on Friday");

  // During a run: a file added while a run is in flight goes with the next message, which names no file.
  const busy = await call("POST", `/threads/${id}/events`, { events: [{ type: "user_message", text: "[slow] Think about it." }] });
  expect(busy.status).toBe(202);
  const notes = await call("POST", `/threads/${id}/files`, { contentBase64: Buffer.from("Notes: the venue moved to Hall B.").toString("base64"), contentType: "text/plain", name: "notes.txt" });
  expect(notes.status).toBe(201);
  const next = await call("POST", `/threads/${id}/events`, { events: [{ type: "user_message", text: "Here are my notes too." }] });
  expect(next.status).toBe(202);
  log = await pollUntil(id, (e) => ended(e, 4));
  const replies = log.filter((e) => e.type === "agent.message").map((e) => e.content as string);
  expect(replies[3]).toContain("notes.txt");
  expect(replies[3]).toContain("Hall B");
  // Each file once: the plan went with its run and is not sent again.
  expect(replies[3]).not.toContain("plan.txt");
  expect(replies[2]).not.toContain("Files received");
  // One store: the messages carried the files, as /v1 shows them.
  const history = await api(server.url, server.apiKey).get(`/v1/sessions/${id}/messages`);
  expect(JSON.stringify(history.body)).toContain(notes.body.file.id);
});

test("Artifacts: a file the agent saves is a Thread file of kind artifact and a file.created event in the log", async () => {
  // Doc: "API-added files are attachments; Agent-produced files are returned as artifacts."
  // Doc: "Poll the public event log for Agent messages, tool status, file changes, usage updates, and run completion."
  const agent = await api(server.url, server.apiKey).post("/v1/agents", {
    name: "Report writer", approval: "never", tools: [{ type: "builtin", name: "save_file", requires_approval: false }],
  });
  expect(agent.status).toBe(201);
  const created = await call("POST", `/agents/${agent.body.id}/threads`,
    firstRequest('call save_file {"name": "next-steps.md", "content": "# Next steps\\n1. Call the customer back."}'));
  expect(created.status).toBe(201);
  const id = created.body.thread.id;
  const log = await pollUntil(id, (e) => ended(e));
  expect(log.map((e) => e.type)).toContain("run.completed");
  const files = await call("GET", `/threads/${id}/files`);
  const artifact = files.body.files.find((f: any) => f.name === "next-steps.md");
  expect(artifact).toMatchObject({ kind: "artifact", mimeType: "text/markdown", committed: true });
  // The file change is in the log, naming the file, before the run's end.
  const change = log.find((e) => e.type === "file.created");
  expect(change).toMatchObject({ status: "completed", content: artifact.id });
  expect(log.indexOf(change)).toBeLessThan(log.findIndex((e) => e.type === "run.completed"));

  // An asset the agent registers (after the permission decision) is a file change too, naming its URL.
  const asked = await call("POST", "/agents/default/threads", firstRequest("Please register https://example.com/cat.png as an asset"));
  await pollUntil(asked.body.thread.id, (e) => e.some((x) => x.type === "permission.requested"));
  expect((await call("POST", `/threads/${asked.body.thread.id}/events`, { events: [{ type: "permission_decision", decision: "allow" }] })).status).toBe(202);
  const registered = await pollUntil(asked.body.thread.id, (e) => ended(e));
  expect(registered.filter((e) => e.type === "file.created").map((e) => e.content)).toEqual(["https://example.com/cat.png"]);
});

test("Tool status: the log shows each tool the run calls, started then completed, in place and once to a poller", async () => {
  // Doc: "Poll the public event log for Agent messages, tool status, file changes, usage updates, and run completion."
  const created = await call("POST", "/agents/default/threads", firstRequest("Please register https://example.com/cat.png as an asset"));
  const id = created.body.thread.id;
  await pollUntil(id, (e) => e.some((x) => x.type === "permission.requested"));
  const start = await pollAfter(id, "0", 1);
  // Nothing ran yet: the tool waits for the permission decision.
  expect(start.events.map((e) => e.type)).not.toContain("tool.started");
  expect((await call("POST", `/threads/${id}/events`, { events: [{ type: "permission_decision", decision: "allow" }] })).status).toBe(202);
  const log = await pollUntil(id, (e) => ended(e));
  const types = log.map((e) => e.type);
  const started = log.find((e) => e.type === "tool.started");
  const completed = log.find((e) => e.type === "tool.completed");
  expect(started).toMatchObject({ status: "running", content: "register_asset", durationMs: null });
  expect(completed).toMatchObject({ status: "completed", content: "register_asset" });
  expect(typeof completed.durationMs).toBe("number");
  // In the order it happened: the call, the file it registered, its end, the reply, the run's end.
  expect(types.indexOf("tool.started")).toBeLessThan(types.indexOf("file.created"));
  expect(types.indexOf("file.created")).toBeLessThan(types.indexOf("tool.completed"));
  expect(types.indexOf("tool.completed")).toBeLessThan(types.indexOf("agent.message"));
  expect(types.indexOf("agent.message")).toBeLessThan(types.indexOf("run.completed"));
  // A poller past the (since decided) request gets the tool events once, in the same order, under the same ids.
  const next = await pollAfter(id, start.next, 1);
  expect(next.events.map((e) => e.id)).toEqual(log.slice(log.findIndex((e) => e.id === next.events[0].id)).map((e) => e.id));
  expect(next.events.filter((e) => e.type.startsWith("tool.")).map((e) => e.id)).toEqual([started.id, completed.id]);
  const seen = [...start.events, ...next.events].map((e) => e.id);
  expect(new Set(seen).size).toBe(seen.length);
  expect(log.every((e) => seen.includes(e.id))).toBe(true);
  // A failed tool reads as failed, naming the error (a file name with a slash is refused).
  const writer = await api(server.url, server.apiKey).post("/v1/agents", {
    name: "Careless writer", approval: "never", tools: [{ type: "builtin", name: "save_file", requires_approval: false }],
  });
  const bad = await call("POST", `/agents/${writer.body.id}/threads`, firstRequest('call save_file {"name": "notes/today.md", "content": "x"}'));
  const badLog = await pollUntil(bad.body.thread.id, (e) => ended(e));
  expect(badLog.find((e) => e.type === "tool.completed")).toMatchObject({ status: "failed", content: expect.stringMatching(/^save_file: /) });
  expect(badLog.map((e) => e.type)).not.toContain("file.created");
});
