/**
 * The Mushu surface (/compat/mushu), driven as a Mushu client drives Mushu Agents: plain fetch with the
 * headers and bodies of the Mushu "Agents Service" doc (seed 000), nothing of /v1 — except where the
 * issue asks that a conversation started here be read through /v1 (one store, one history), and to
 * approve a plan, which Mushu has no endpoint for. Each test quotes the doc lines it relies on.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startTestServer, type TestServer } from "../support/server.ts";
import { api } from "../support/api.ts";
import { startOpenAiWireServer, type WireServer } from "../support/llmWireServers.ts";

const ROOT = "root-token-mushu-0123456789abcdef";
let server: TestServer;
let base: string;
let wire: WireServer;

beforeAll(async () => {
  // Rate limits on (high), so their headers are sent as they are in production.
  // The LLM a Mushu app configures is a local server speaking the OpenAI wire format (loopback allowed).
  wire = startOpenAiWireServer();
  server = await startTestServer({
    ADMIN_TOKEN: ROOT, TOOL_PRIVATE_ALLOWLIST: "127.0.0.1", SANDBOX_CHUNK_DELAY_MS: "2", RATE_LIMIT_PER_MINUTE: "10000", RATE_LIMIT_HEAVY_PER_MINUTE: "10000",
  });
  base = `${server.url}/compat/mushu`;
});
afterAll(async () => {
  await server?.stop();
  wire?.stop();
});

/** Doc: "Data plane endpoints (/runs, /conversations) require a Tenant API key as X-API-Key." */
async function call(method: string, path: string, body?: unknown, key: string | null = server.apiKey, auth?: Record<string, string>) {
  const res = await fetch(base + path, {
    method,
    headers: { ...(auth ?? (key !== null ? { "X-API-Key": key } : {})), ...(body !== undefined ? { "Content-Type": "application/json" } : {}) },
    ...(body !== undefined ? { body: typeof body === "string" ? body : JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  let parsed: any = text;
  try { parsed = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  return { status: res.status, body: parsed, headers: res.headers };
}

/**
 * Doc: "Poll every 2–3 seconds until status is complete or failed." (Polled faster here; bounded.)
 * Returns every status seen and the last answer.
 */
async function pollUntilDone(path: string) {
  const seen: string[] = [];
  for (let i = 0; i < 400; i++) {
    const r = await call("GET", path);
    expect(r.status).toBe(200);
    seen.push(r.body.status);
    if (r.body.status === "complete" || r.body.status === "failed") return { last: r.body, seen };
    await Bun.sleep(25);
  }
  throw new Error(`${path} did not end`);
}

/** Doc: POST /conversations {"user_id": "usr-123", "workflow": "meal-plan"} → {"conv_id": "c7a1e3f2-..."} */
async function createConversation(userId = "usr-123") {
  const r = await call("POST", "/conversations", { user_id: userId, workflow: "meal-plan" });
  expect(r.status).toBe(200);
  expect(typeof r.body.conv_id).toBe("string");
  return r.body.conv_id as string;
}

test("GET /health answers with no key", async () => {
  // Doc: "GET/healthNoneService health check"
  const r = await call("GET", "/health", undefined, null);
  expect(r.status).toBe(200);
  expect(r.body).toEqual({ status: "ok" });
});

test("Single-turn run: submit, then poll until complete with a structured result", async () => {
  // Doc: POST /runs … {"user_id": "usr-123", "workflow": "food-log", "media_url": "https://media.mushucorp.com/..."}
  // Doc: Response: {"job_id": "550e8400-e29b-41d4-a716-446655440000"}
  const r = await call("POST", "/runs", { user_id: "usr-123", workflow: "food-log", media_url: "https://media.mushucorp.com/meal.jpg" });
  expect(r.status).toBe(200);
  expect(Object.keys(r.body)).toEqual(["job_id"]);
  // Doc: GET /runs/550e8400-… — "Run status values: pending, running, complete, failed"
  const { last, seen } = await pollUntilDone(`/runs/${r.body.job_id}`);
  for (const s of seen) expect(["pending", "running", "complete", "failed"]).toContain(s);
  // Doc: "complete — Agent succeeded, result is available" (photo in, structured JSON out)
  expect(last.status).toBe("complete");
  expect(last.job_id).toBe(r.body.job_id);
  expect(typeof last.result).toBe("object");
  expect(last.result).not.toBeNull();
  expect(last.error).toBeNull();
});

test("Single-turn run that fails: status failed with an error message", async () => {
  // Doc: "failed — Agent failed, error message included"
  const r = await call("POST", "/runs", { user_id: "usr-123", workflow: "food-log", media_url: "https://media.mushucorp.com/[fail].jpg" });
  expect(r.status).toBe(200);
  const { last } = await pollUntilDone(`/runs/${r.body.job_id}`);
  expect(last.status).toBe("failed");
  expect(typeof last.error).toBe("string");
  expect(last.error.length).toBeGreaterThan(0);
});

test("Multi-turn: create, send, poll for the reply, read the history, list the user's conversations", async () => {
  const convId = await createConversation("usr-multi");
  // Doc: POST /conversations/c7a1e3f2-.../messages {"content": "I want to lose 10 pounds in 3 months, I'm vegetarian"}
  // Doc: // Response: {"pending_id": "p9b2d4a1-...", "status": "pending"}
  const sent = await call("POST", `/conversations/${convId}/messages`, { content: "I want to lose 10 pounds in 3 months, I'm vegetarian" });
  expect(sent.status).toBe(200);
  expect(sent.body.status).toBe("pending");
  expect(typeof sent.body.pending_id).toBe("string");
  // Doc: GET /conversations/c7a1e3f2-.../poll/p9b2d4a1-... → {"status": "pending"} … {"status": "complete", "result_text": …, "structured_result": { ... }}
  const { last, seen } = await pollUntilDone(`/conversations/${convId}/poll/${sent.body.pending_id}`);
  for (const s of seen) expect(["pending", "complete"]).toContain(s);
  expect(last.status).toBe("complete");
  expect(last.result_text).toContain("lose 10 pounds");
  expect("structured_result" in last).toBe(true);
  // Doc: GET /conversations/c7a1e3f2-... → {"conv_id", "workflow": "meal-plan", "status", "created_at", "messages": [{role, content, created_at}, …]}
  const conv = await call("GET", `/conversations/${convId}`);
  expect(conv.status).toBe(200);
  expect(conv.body).toMatchObject({ conv_id: convId, workflow: "meal-plan" });
  // Doc: "complete — Last turn completed successfully"
  expect(conv.body.status).toBe("complete");
  expect(conv.body.messages.map((m: any) => m.role)).toEqual(["user", "assistant"]);
  expect(conv.body.messages[0].content).toBe("I want to lose 10 pounds in 3 months, I'm vegetarian");
  expect(conv.body.messages[1].content).toBe(last.result_text);
  expect(new Date(conv.body.created_at).toISOString()).toBe(conv.body.created_at);
  // Doc: GET /conversations?user_id=usr-123
  const list = await call("GET", "/conversations?user_id=usr-multi");
  expect(list.status).toBe(200);
  expect(list.body.conversations.map((c: any) => c.conv_id)).toEqual([convId]);
  // The issue: "a conversation started through one surface can be read through /v1".
  const v1 = await api(server.url, server.apiKey).get(`/v1/sessions/${convId}/messages`);
  expect(v1.status).toBe(200);
  expect(v1.body.data.map((m: any) => m.content)).toEqual(conv.body.messages.map((m: any) => m.content));
});

test("Python SDK send_and_wait: create, send, poll in a loop; a second turn sees the history", async () => {
  // Doc: conv = create_conversation.sync(client=client, user_id="usr-123", workflow="meal-plan")
  // Doc: result = send_and_wait.sync(client=client, conv_id=conv.conv_id, content="I want a high-protein plan for muscle gain", …)
  const convId = await createConversation("usr-sdk");
  const sendAndWait = async (content: string) => {
    const sent = await call("POST", `/conversations/${convId}/messages`, { content });
    expect(sent.status).toBe(200);
    return (await pollUntilDone(`/conversations/${convId}/poll/${sent.body.pending_id}`)).last;
  };
  const first = await sendAndWait("I want a high-protein plan for muscle gain");
  expect(first.status).toBe("complete");
  // Doc: "Conversations maintain history across multiple messages."
  const second = await sendAndWait("And for breakfast?");
  expect(second.status).toBe("complete");
  const conv = await call("GET", `/conversations/${convId}`);
  expect(conv.body.messages).toHaveLength(4);
  expect(conv.body.messages[2].content).toBe("And for breakfast?");
});

test("Concurrent message guard: 409 conversation_busy with the active pending_id; polling it resumes", async () => {
  const convId = await createConversation("usr-busy");
  // The sandbox proposes a plan that needs approval: the turn stays in flight until it is decided.
  const first = await call("POST", `/conversations/${convId}/messages`, { content: "register https://example.com/cat.png as an asset" });
  expect(first.status).toBe(200);
  const pendingId = first.body.pending_id;
  // Doc: "Sending a message while a turn is still in flight returns 409 Conflict:
  //       {"detail": {"error": "conversation_busy", "active_pending_id": "p9b2d4a1-..."}}"
  const busy = await call("POST", `/conversations/${convId}/messages`, { content: "Hello again" });
  expect(busy.status).toBe(409);
  expect(busy.body.detail.error).toBe("conversation_busy");
  expect(busy.body.detail.active_pending_id).toBe(pendingId);
  // Doc: "processing — Worker is generating the assistant reply"
  expect((await call("GET", `/conversations/${convId}`)).body.status).toBe("processing");
  // Doc: "Use the returned active_pending_id to resume polling"
  const polled = await call("GET", `/conversations/${convId}/poll/${busy.body.detail.active_pending_id}`);
  expect(polled.body).toEqual({ status: "pending" });
  // Mushu has no approvals: the app's backend approves through /v1 (the same job), and the poll completes.
  const v1 = api(server.url, server.apiKey);
  await v1.waitForStatus(pendingId, ["awaiting_approval"]);
  expect((await v1.post(`/v1/jobs/${pendingId}/approve`)).status).toBeLessThan(300);
  const { last } = await pollUntilDone(`/conversations/${convId}/poll/${pendingId}`);
  expect(last.status).toBe("complete");
  // Doc: "don't send a new message until the current turn completes" — then it is accepted.
  const next = await call("POST", `/conversations/${convId}/messages`, { content: "Thanks" });
  expect(next.status).toBe(200);
  expect((await pollUntilDone(`/conversations/${convId}/poll/${next.body.pending_id}`)).last.status).toBe("complete");
});

test("A failed turn: poll says failed, the conversation says failed and stays usable", async () => {
  const convId = await createConversation("usr-fail");
  const sent = await call("POST", `/conversations/${convId}/messages`, { content: "[fail] please" });
  const { last } = await pollUntilDone(`/conversations/${convId}/poll/${sent.body.pending_id}`);
  expect(last.status).toBe("failed");
  expect(typeof last.error).toBe("string");
  // Doc: "failed — Last turn failed — conversation still usable"
  expect((await call("GET", `/conversations/${convId}`)).body.status).toBe("failed");
  const again = await call("POST", `/conversations/${convId}/messages`, { content: "try again" });
  expect(again.status).toBe(200);
  expect((await pollUntilDone(`/conversations/${convId}/poll/${again.body.pending_id}`)).last.status).toBe("complete");
  expect((await call("GET", `/conversations/${convId}`)).body.status).toBe("complete");
});

test("A new conversation is idle; DELETE removes it", async () => {
  const convId = await createConversation("usr-del");
  // Doc: "idle — No turn in flight — ready for next message"
  const conv = await call("GET", `/conversations/${convId}`);
  expect(conv.body).toMatchObject({ conv_id: convId, status: "idle", messages: [] });
  // Doc: "DELETE/conversations/{conv_id}API KeyDelete a conversation"
  const del = await call("DELETE", `/conversations/${convId}`);
  expect(del.status).toBe(200);
  const gone = await call("GET", `/conversations/${convId}`);
  expect(gone.status).toBe(404);
  expect(gone.body.detail.error).toBe("conversation_not_found");
  expect((await call("GET", "/conversations?user_id=usr-del")).body.conversations).toEqual([]);
  expect((await call("POST", `/conversations/${convId}/messages`, { content: "hi" })).status).toBe(404);
});

test("Listing pages with limit and next_cursor, newest first, each conversation once", async () => {
  const ids = [await createConversation("usr-page"), await createConversation("usr-page"), await createConversation("usr-page")];
  const first = await call("GET", "/conversations?user_id=usr-page&limit=2");
  expect(first.status).toBe(200);
  expect(first.body.has_more).toBe(true);
  const second = await call("GET", `/conversations?user_id=usr-page&limit=2&cursor=${encodeURIComponent(first.body.next_cursor)}`);
  expect(second.body.has_more).toBe(false);
  expect(second.body.next_cursor).toBeNull();
  const seen = [...first.body.conversations, ...second.body.conversations].map((c: any) => c.conv_id);
  expect(seen).toEqual([...ids].reverse());
  // Another user's conversations are not listed.
  expect((await call("GET", "/conversations?user_id=usr-nobody")).body.conversations).toEqual([]);
  const bad = await call("GET", "/conversations?user_id=usr-page&cursor=nonsense");
  expect(bad.status).toBe(400);
  expect(bad.body.detail.error).toBe("invalid_cursor");
});

test("Errors come in the doc's {\"detail\": {\"error\": …}} envelope; rate-limit headers on every answer", async () => {
  // Doc: "require a Tenant API key as X-API-Key"
  const noKey = await call("POST", "/runs", { user_id: "u", workflow: "food-log", media_url: "https://x.test/a.jpg" }, null);
  expect(noKey.status).toBe(401);
  expect(typeof noKey.body.detail.error).toBe("string");
  const badKey = await call("GET", "/conversations?user_id=u", undefined, "ms_your_key");
  expect(badKey.status).toBe(401);
  expect(badKey.body.detail.error).toBe("invalid_api_key");
  // A body missing the doc's fields: 400 naming the field.
  const missing = await call("POST", "/conversations", { workflow: "meal-plan" });
  expect(missing.status).toBe(400);
  expect(missing.body.detail.error).toBe("invalid_request");
  const notJson = await call("POST", "/runs", "{not json");
  expect(notJson.status).toBe(400);
  expect(notJson.body.detail.error).toBe("invalid_json");
  const emptyMessage = await call("POST", `/conversations/${await createConversation("usr-err")}/messages`, { content: "" });
  expect(emptyMessage.status).toBe(400);
  expect(emptyMessage.body.detail.param).toBe("content");
  expect((await call("GET", "/runs/run_doesnotexist")).status).toBe(404);
  const unknownConv = await call("GET", "/conversations/sess_doesnotexist/poll/job_x");
  expect(unknownConv.status).toBe(404);
  expect(unknownConv.body.detail.error).toBe("conversation_not_found");
  // A pending_id of another conversation is not this conversation's.
  const a = await createConversation("usr-err");
  const b = await createConversation("usr-err");
  const sent = await call("POST", `/conversations/${a}/messages`, { content: "hi" });
  const cross = await call("GET", `/conversations/${b}/poll/${sent.body.pending_id}`);
  expect(cross.status).toBe(404);
  const ok = await call("GET", `/conversations/${a}`);
  expect(Number(ok.headers.get("ratelimit-limit"))).toBeGreaterThan(0);
  expect(ok.headers.get("ratelimit-remaining")).not.toBeNull();
});

/** Doc: "Management endpoints (/apps/*) use Bearer token auth." — Authorization: Bearer <token> */
const manage = (method: string, path: string, body?: unknown, token = ROOT) => call(method, path, body, null, { Authorization: `Bearer ${token}` });

test("Management plane: agents config, LLM provider and per-workflow prompts drive the app's turns", async () => {
  // Setup of the app and its data-plane key ("See the API Keys guide for setup"): Agentry's management plane.
  const root = api(server.url, "");
  const bearer = { authorization: `Bearer ${ROOT}` };
  const app = (await root.post("/v1/apps", { name: "FitApp" }, bearer)).body;
  const key = (await root.post(`/v1/apps/${app.id}/keys`, { name: "mushu", scopes: ["data:read", "data:write"] }, bearer)).body.key as string;

  // Doc: "POST/appsBearerCreate agents config for an app"
  const created = await manage("POST", "/apps", { app_id: app.id });
  expect(created.status).toBe(201);
  expect(created.body.app_id).toBe(app.id);
  expect(created.body.workflows.map((w: any) => w.name)).toEqual(["food-log", "meal-plan"]);
  expect(created.body.llm).toBeNull();

  // Doc: PUT /apps/app-123/agents-config/workflows/meal-plan/prompt {"system_prompt": "You are a nutrition coach for FitApp users. …"}
  const coach = "You are a nutrition coach for FitApp users. Focus on whole foods, avoid ultra-processed ingredients, and always include macro breakdowns.";
  const put = await manage("PUT", `/apps/${app.id}/agents-config/workflows/meal-plan/prompt`, { system_prompt: coach });
  expect(put.status).toBe(200);
  // Doc: "GET …/workflows/{name}/prompt — Get current prompt override"
  const got = await manage("GET", `/apps/${app.id}/agents-config/workflows/meal-plan/prompt`);
  expect(got.body).toMatchObject({ workflow: "meal-plan", system_prompt: coach, is_override: true });

  // Doc: PUT /apps/app-123/agents-config/llm {"llm_base_url", "llm_model", "api_key"}
  // Doc: "The API key is stored encrypted … — it is never returned via API."
  // A base URL that does not parse is the client's error, never a 500.
  const unparsable = await manage("PUT", `/apps/${app.id}/agents-config/llm`, { llm_base_url: "http://[zz", llm_model: "m", api_key: "sk-x" });
  expect(unparsable.status).toBe(400);
  const llm = await manage("PUT", `/apps/${app.id}/agents-config/llm`, { llm_base_url: wire.baseURL, llm_model: "claude-haiku-4-5-20251001", api_key: "sk-ant-mushu-secret-0001" });
  expect(llm.status).toBe(200);
  const config = await manage("GET", `/apps/${app.id}/agents-config`);
  expect(config.status).toBe(200);
  expect(config.body.llm).toMatchObject({ llm_base_url: wire.baseURL, llm_model: "claude-haiku-4-5-20251001" });
  expect(JSON.stringify(config.body)).not.toContain("sk-ant-mushu-secret-0001");
  expect(config.body.workflows.find((w: any) => w.name === "meal-plan").prompt_overridden).toBe(true);

  // The app's conversation now runs on its LLM, with the workflow's prompt.
  const conv = await call("POST", "/conversations", { user_id: "usr-fit", workflow: "meal-plan" }, key);
  const sent = await call("POST", `/conversations/${conv.body.conv_id}/messages`, { content: "Plan my week" }, key);
  expect(sent.status).toBe(200);
  let reply: any;
  for (let i = 0; i < 400 && reply?.status !== "complete" && reply?.status !== "failed"; i++) {
    reply = (await call("GET", `/conversations/${conv.body.conv_id}/poll/${sent.body.pending_id}`, undefined, key)).body;
    if (reply.status === "pending") await Bun.sleep(25);
  }
  expect(reply).toMatchObject({ status: "complete", result_text: "Hello from the wire server." });
  const request = wire.requests.at(-1)!;
  expect(request.headers.get("authorization")).toBe("Bearer sk-ant-mushu-secret-0001");
  expect(request.body.model).toBe("claude-haiku-4-5-20251001");
  expect(JSON.stringify(request.body.messages)).toContain("nutrition coach for FitApp");

  // Doc: "Pass an empty string or DELETE the override to revert to the built-in default."
  const emptied = await manage("PUT", `/apps/${app.id}/agents-config/workflows/meal-plan/prompt`, { system_prompt: "" });
  expect(emptied.body.is_override).toBe(false);
  expect(emptied.body.system_prompt).toBe(emptied.body.default_system_prompt);
  await manage("PUT", `/apps/${app.id}/agents-config/workflows/meal-plan/prompt`, { system_prompt: coach });
  const deleted = await manage("DELETE", `/apps/${app.id}/agents-config/workflows/meal-plan/prompt`);
  expect(deleted.status).toBe(200);
  expect(deleted.body).toMatchObject({ is_override: false });
  expect(deleted.body.system_prompt).not.toBe(coach);

  // Management takes the management credential, not a data-plane key; errors in the doc's envelope.
  const withKey = await manage("GET", `/apps/${app.id}/agents-config`, undefined, key);
  expect(withKey.status).toBe(401);
  expect(typeof withKey.body.detail.error).toBe("string");
  expect((await manage("GET", "/apps/app_nope/agents-config")).status).toBe(404);
  const badBody = await manage("PUT", `/apps/${app.id}/agents-config/llm`, { llm_model: "m" });
  expect(badBody.status).toBe(400);
  expect(badBody.body.detail.error).toBe("invalid_request");
});

test("BYOS: GET /chatgpt/status says connected or expired", async () => {
  // Doc: "GET/chatgpt/statusAPI KeyCheck connection state (connected / expired)"
  // Doc: "Call GET /chatgpt/status to check. When expired: true, prompt the user to reconnect"
  const none = await call("GET", "/chatgpt/status?user_id=usr-byos");
  expect(none.status).toBe(200);
  expect(none.body).toMatchObject({ connected: false, expired: false });
  // The user's subscription connected (through /v1: the OAuth exchange with OpenAI is not served here).
  const v1 = api(server.url, server.apiKey);
  const future = new Date(Date.now() + 86_400_000).toISOString();
  expect((await v1.put("/v1/users/usr-byos/credentials/openai", { access_token: "oat-byos-token-000000", expires_at: future })).status).toBe(200);
  expect((await call("GET", "/chatgpt/status?user_id=usr-byos")).body).toMatchObject({ connected: true, expired: false });
  expect((await v1.put("/v1/users/usr-byos/credentials/openai", { access_token: "oat-byos-token-000000", expires_at: "2020-01-01T00:00:00Z" })).status).toBe(200);
  expect((await call("GET", "/chatgpt/status?user_id=usr-byos")).body).toMatchObject({ connected: false, expired: true });
  // A server key must say whose connection it asks about.
  const unnamed = await call("GET", "/chatgpt/status");
  expect(unnamed.status).toBe(400);
  expect(unnamed.body.detail.param).toBe("user_id");
});

test("OpenAPI: the surface is documented under its own tag", async () => {
  const doc = await (await fetch(`${server.url}/docs/json`)).json() as any;
  for (const [path, method] of [["/compat/mushu/runs", "post"], ["/compat/mushu/conversations/{conv_id}/poll/{pending_id}", "get"], ["/compat/mushu/apps/{app_id}/agents-config/llm", "put"], ["/compat/mushu/health", "get"]] as const) {
    expect(doc.paths[path][method].tags).toEqual(["Mushu (compat)"]);
  }
  expect(doc.tags.map((t: any) => t.name)).toContain("Mushu (compat)");
});
