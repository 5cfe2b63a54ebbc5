/**
 * The Mushu surface (/compat/mushu), driven as a Mushu client drives Mushu Agents: plain fetch with the
 * headers and bodies of the Mushu "Agents Service" doc (seed 000), nothing of /v1 — except where the
 * issue asks that a conversation started here be read through /v1 (one store, one history), and for
 * setup the doc leaves to Mushu's dashboard. Each test quotes the doc lines it relies on.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startTestServer, type TestServer } from "../support/server.ts";
import { api } from "../support/api.ts";
import { startOpenAiWireServer, type WireServer } from "../support/llmWireServers.ts";
import { credentialsStream, DEFAULT_APP_ID, userCredentialsId } from "../../src/domain/streams.ts";

const ROOT = "root-token-mushu-0123456789abcdef";
let server: TestServer;
let base: string;
let wire: WireServer;
let oauth: ReturnType<typeof startOAuthServer>;

/**
 * An OAuth 2.0 authorization server on loopback, standing in for ChatGPT's sign-in: its authorize page
 * signs the user in at once and redirects to the client's redirect URI with a code; its token endpoint
 * checks the PKCE verifier against the challenge and gives each code once.
 */
function startOAuthServer() {
  const codes = new Map<string, { challenge: string; redirect_uri: string; client_id: string }>();
  let issued = 0;
  const server = Bun.serve({
    hostname: "127.0.0.1", port: 0,
    async fetch(req) {
      const url = new URL(req.url);
      if (url.pathname === "/oauth/authorize") {
        const q = url.searchParams;
        if (q.get("response_type") !== "code" || q.get("code_challenge_method") !== "S256") return new Response("bad request", { status: 400 });
        const code = `code-${++issued}`;
        codes.set(code, { challenge: q.get("code_challenge")!, redirect_uri: q.get("redirect_uri")!, client_id: q.get("client_id")! });
        const back = new URL(q.get("redirect_uri")!);
        back.searchParams.set("code", code);
        back.searchParams.set("state", q.get("state")!);
        return Response.redirect(back.href, 302);
      }
      if (url.pathname === "/oauth/token" && req.method === "POST") {
        const form = new URLSearchParams(await req.text());
        const grant = codes.get(form.get("code") ?? "");
        codes.delete(form.get("code") ?? "");
        const verifier = form.get("code_verifier") ?? "";
        const challenge = new Bun.CryptoHasher("sha256").update(verifier).digest("base64url");
        if (form.get("grant_type") !== "authorization_code" || !grant || grant.challenge !== challenge
          || grant.redirect_uri !== form.get("redirect_uri") || grant.client_id !== form.get("client_id")) {
          return Response.json({ error: "invalid_grant" }, { status: 400 });
        }
        return Response.json({ access_token: `chatgpt-access-${issued}-0123456789`, refresh_token: `chatgpt-refresh-${issued}`, expires_in: 864000, token_type: "Bearer" });
      }
      return new Response("not found", { status: 404 });
    },
  });
  return { url: `http://127.0.0.1:${server.port}`, stop: () => server.stop(true) };
}

beforeAll(async () => {
  // Rate limits on (high), so their headers are sent as they are in production.
  // The LLM a Mushu app configures is a local server speaking the OpenAI wire format (loopback allowed).
  wire = startOpenAiWireServer();
  oauth = startOAuthServer();
  server = await startTestServer({
    CHATGPT_CONNECT_AUTHORIZE_URL: `${oauth.url}/oauth/authorize`, CHATGPT_CONNECT_TOKEN_URL: `${oauth.url}/oauth/token`, CHATGPT_CONNECT_CLIENT_ID: "app_test_client",
    ADMIN_TOKEN: ROOT, TOOL_PRIVATE_ALLOWLIST: "127.0.0.1", SANDBOX_CHUNK_DELAY_MS: "2", RATE_LIMIT_PER_MINUTE: "10000", RATE_LIMIT_HEAVY_PER_MINUTE: "10000",
  });
  base = `${server.url}/compat/mushu`;
});
afterAll(async () => {
  await server?.stop();
  wire?.stop();
  oauth?.stop();
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
async function pollUntilDone(path: string, key = server.apiKey) {
  const seen: string[] = [];
  for (let i = 0; i < 400; i++) {
    const r = await call("GET", path, undefined, key);
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

test("GET /health answers with no key, with or without a trailing slash", async () => {
  // Doc: "GET/healthNoneService health check"
  for (const path of ["/health", "/health/"]) {
    const r = await call("GET", path, undefined, null);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ status: "ok" });
  }
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
  // Doc: client = AuthenticatedClient(base_url="https://agents.mushucorp.com", token="ms_your_key")
  // (such a client sends its token as "Authorization: Bearer <token>").
  const sdk = { Authorization: `Bearer ${server.apiKey}` };
  // Doc: conv = create_conversation.sync(client=client, user_id="usr-123", workflow="meal-plan")
  const created = await call("POST", "/conversations", { user_id: "usr-sdk", workflow: "meal-plan" }, null, sdk);
  expect(created.status).toBe(200);
  const convId = created.body.conv_id as string;
  // Doc: result = send_and_wait.sync(client=client, conv_id=conv.conv_id, content="I want a high-protein plan for muscle gain", …)
  const sendAndWait = async (content: string) => {
    const sent = await call("POST", `/conversations/${convId}/messages`, { content }, null, sdk);
    expect(sent.status).toBe(200);
    for (let i = 0; i < 400; i++) {
      const polled = await call("GET", `/conversations/${convId}/poll/${sent.body.pending_id}`, undefined, null, sdk);
      expect(polled.status).toBe(200);
      if (polled.body.status !== "pending") return polled.body;
      await Bun.sleep(25);
    }
    throw new Error("send_and_wait timed out");
  };
  const first = await sendAndWait("I want a high-protein plan for muscle gain");
  expect(first.status).toBe("complete");
  // Doc: "Conversations maintain history across multiple messages."
  const second = await sendAndWait("And for breakfast?");
  expect(second.status).toBe("complete");
  const conv = await call("GET", `/conversations/${convId}`, undefined, null, sdk);
  expect(conv.body.messages).toHaveLength(4);
  expect(conv.body.messages[2].content).toBe("And for breakfast?");
});

test("Concurrent message guard: 409 conversation_busy with the active pending_id; polling it resumes", async () => {
  const convId = await createConversation("usr-busy");
  // A slow reply keeps the turn in flight for a while.
  const first = await call("POST", `/conversations/${convId}/messages`, { content: "[slow] plan my meals" });
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
  const { last } = await pollUntilDone(`/conversations/${convId}/poll/${pendingId}`);
  expect(last.status).toBe("complete");
  // Doc: "don't send a new message until the current turn completes" — then it is accepted.
  const next = await call("POST", `/conversations/${convId}/messages`, { content: "Thanks" });
  expect(next.status).toBe(200);
  expect((await pollUntilDone(`/conversations/${convId}/poll/${next.body.pending_id}`)).last.status).toBe("complete");
});

test("A workflow turn never waits for an approval Mushu has no endpoint for", async () => {
  // Doc: "Poll every 2–3 seconds until status is complete or failed." — a plan awaiting approval would
  // leave the client polling "pending" for ever, so workflow agents have no approval-gated tools.
  const convId = await createConversation("usr-noapproval");
  const sent = await call("POST", `/conversations/${convId}/messages`, { content: "register https://example.com/cat.png as an asset" });
  expect(sent.status).toBe(200);
  const { last, seen } = await pollUntilDone(`/conversations/${convId}/poll/${sent.body.pending_id}`);
  expect(last.status).toBe("complete");
  expect(seen.every((s) => s === "pending" || s === "complete")).toBe(true);
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
  // A body its schema refuses: what FastAPI answers and the doc's generated SDK parses
  // (HTTPValidationError): 422 with detail a list of {loc, msg, type}, naming the field.
  const missing = await call("POST", "/conversations", { workflow: "meal-plan" });
  expect(missing.status).toBe(422);
  expect(missing.body.detail.map((d: any) => d.loc)).toEqual([["body", "user_id"]]);
  expect(typeof missing.body.detail[0].msg).toBe("string");
  const notJson = await call("POST", "/runs", "{not json");
  expect(notJson.status).toBe(422);
  expect(notJson.body.detail[0]).toMatchObject({ loc: ["body"], type: "json_invalid" });
  const emptyMessage = await call("POST", `/conversations/${await createConversation("usr-err")}/messages`, { content: "" });
  expect(emptyMessage.status).toBe(422);
  expect(emptyMessage.body.detail[0].loc).toEqual(["body", "content"]);
  const badLimit = await call("GET", "/conversations?user_id=u&limit=0");
  expect(badLimit.status).toBe(422);
  expect(badLimit.body.detail[0].loc).toEqual(["query", "limit"]);
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
  const reply = (await pollUntilDone(`/conversations/${conv.body.conv_id}/poll/${sent.body.pending_id}`, key)).last;
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
  expect(badBody.status).toBe(422);
  expect(badBody.body.detail.map((d: any) => d.loc.join("."))).toContain("body.llm_base_url");
});

test("Workflows: the doc's built-in ones start on first use; an unknown one is refused, never a new agent", async () => {
  const v1 = api(server.url, server.apiKey);
  /** The app's agent count (one page holds them all: the test asserts it does). */
  const agentCount = async () => {
    const page = (await v1.get("/v1/agents?limit=100")).body;
    expect(page.has_more).toBe(false);
    return page.data.length as number;
  };
  const agentsBefore = await agentCount();
  // Doc: "food-log … meal-plan" are the workflows; a name of the client's own is not one of them.
  for (const [path, body] of [["/runs", { user_id: "usr-wf", workflow: "made-up", media_url: "https://x.test/a.jpg" }], ["/conversations", { user_id: "usr-wf", workflow: "made-up" }]] as const) {
    const r = await call("POST", path, body);
    expect(r.status).toBe(422);
    expect(r.body.detail[0]).toMatchObject({ loc: ["body", "workflow"], type: "unknown_workflow" });
  }
  // Neither a key nor an end user's token sets a workflow up by naming it.
  const token = (await v1.post("/v1/end-user-tokens", { user_id: "usr-wf" })).body.token as string;
  const byUser = await call("POST", "/conversations", { user_id: "usr-wf", workflow: "another-made-up" }, null, { Authorization: `Bearer ${token}` });
  expect(byUser.status).toBe(422);
  expect(await agentCount()).toBe(agentsBefore);

  // A workflow's agent deleted through /v1 comes back, fresh, at the next use of the workflow.
  const first = await createConversation("usr-wf");
  const agentId = (await v1.get(`/v1/sessions/${first}`)).body.agent_id as string;
  expect((await v1.del(`/v1/agents/${agentId}`)).status).toBeLessThan(300);
  const second = await call("POST", "/conversations", { user_id: "usr-wf", workflow: "meal-plan" });
  expect(second.status).toBe(200);
  const replacement = (await v1.get(`/v1/sessions/${second.body.conv_id}`)).body.agent_id as string;
  expect(replacement).not.toBe(agentId);
  const sent = await call("POST", `/conversations/${second.body.conv_id}/messages`, { content: "Plan my week" });
  expect(sent.status).toBe(200);
  expect((await pollUntilDone(`/conversations/${second.body.conv_id}/poll/${sent.body.pending_id}`)).last.status).toBe("complete");
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

test("BYOS connect: authorize URL, intercepted redirect, callback; the user's turns then run on their subscription", async () => {
  // Setup: an agent billed to its end users, on an OpenAI connection (a local server speaking OpenAI's
  // wire format), and a key limited to it, so Mushu conversations run on it.
  const root = api(server.url, "");
  const bearer = { authorization: `Bearer ${ROOT}` };
  const app = (await root.post("/v1/apps", { name: "ByosApp" }, bearer)).body;
  expect((await root.put(`/v1/apps/${app.id}/connections/chatgpt`, { provider: "openai", base_url: wire.baseURL, default_model: "gpt-byos" }, bearer)).status).toBe(200);
  const admin = (await root.post(`/v1/apps/${app.id}/keys`, { name: "admin", scopes: ["data:read", "data:write", "agents:manage"] }, bearer)).body.key as string;
  const agent = (await api(server.url, admin).post("/v1/agents", { name: "byos", model: { connection: "chatgpt" }, billing: "end_user" })).body;
  expect(agent.billing).toBe("end_user");
  const key = (await root.post(`/v1/apps/${app.id}/keys`, { name: "ios", scopes: ["data:read", "data:write"], agent_ids: [agent.id] }, bearer)).body.key as string;

  // Doc: "1. Call POST /chatgpt/connect — get auth_url and session_id"
  const connect = await call("POST", "/chatgpt/connect", { user_id: "usr-ios" }, key);
  expect(connect.status).toBe(200);
  const authUrl = new URL(connect.body.auth_url);
  expect(authUrl.origin + authUrl.pathname).toBe(`${oauth.url}/oauth/authorize`);
  expect(authUrl.searchParams.get("client_id")).toBe("app_test_client");
  expect(authUrl.searchParams.get("redirect_uri")).toBe("http://localhost:1455/auth/callback");
  expect(authUrl.searchParams.get("code_challenge_method")).toBe("S256");
  expect(typeof connect.body.session_id).toBe("string");

  // Doc: "2. Open auth_url in a WKWebView sheet" / "3. Intercept the localhost:1455 redirect"
  const signIn = await fetch(authUrl, { redirect: "manual" });
  expect(signIn.status).toBe(302);
  const intercepted = signIn.headers.get("location")!;
  expect(new URL(intercepted).host).toBe("localhost:1455");

  // A redirect from another sign-in (its state differs) is refused, and costs nothing.
  const foreign = new URL(intercepted);
  foreign.searchParams.set("state", "someone-elses");
  const mismatch = await call("POST", "/chatgpt/callback", { session_id: connect.body.session_id, url: foreign.href }, null);
  expect(mismatch.status).toBe(400);
  expect(mismatch.body.detail.error).toBe("state_mismatch");
  // A session id this server did not issue (or altered) opens nothing.
  const forged = connect.body.session_id.slice(0, -4) + "AAAA";
  const badSession = await call("POST", "/chatgpt/callback", { session_id: forged, url: intercepted }, null);
  expect(badSession.status).toBe(400);
  expect(badSession.body.detail.error).toBe("invalid_session");

  // Doc: "4. Send the intercepted URL to POST /chatgpt/callback with session_id" (Auth: None)
  // Doc: "5. Get { connected: true } — show confirmation, dismiss sheet"
  const done = await call("POST", "/chatgpt/callback", { session_id: connect.body.session_id, url: intercepted }, null);
  expect(done.status).toBe(200);
  expect(done.body).toMatchObject({ connected: true, user_id: "usr-ios" });
  expect((await call("GET", "/chatgpt/status?user_id=usr-ios", undefined, key)).body).toMatchObject({ connected: true, expired: false });
  // The code was single-use: a replayed callback is refused, and the connection stays.
  const replay = await call("POST", "/chatgpt/callback", { session_id: connect.body.session_id, url: intercepted }, null);
  expect(replay.status).toBe(400);
  expect(replay.body.detail.error).toBe("code_refused");

  // Doc: "Runs automatically route through the connected subscription — no code change required after setup."
  const conv = await call("POST", "/conversations", { user_id: "usr-ios", workflow: "meal-plan" }, key);
  expect(conv.status).toBe(200);
  const sent = await call("POST", `/conversations/${conv.body.conv_id}/messages`, { content: "Plan my week" }, key);
  const reply = (await pollUntilDone(`/conversations/${conv.body.conv_id}/poll/${sent.body.pending_id}`, key)).last;
  expect(reply.status).toBe("complete");
  expect(wire.requests.at(-1)!.headers.get("authorization")).toMatch(/^Bearer chatgpt-access-\d+-0123456789$/);

  // Doc: "When a token expires, the next run will fail with: status: "failed" error: "… Reconnect …"" and
  // "Call GET /chatgpt/status to check. When expired: true, prompt the user to reconnect".
  const appKey = api(server.url, admin);
  expect((await appKey.put("/v1/users/usr-ios/credentials/openai", { access_token: "chatgpt-access-expired-0123", expires_at: "2020-01-01T00:00:00Z" })).status).toBe(200);
  const afterExpiry = await call("POST", `/conversations/${conv.body.conv_id}/messages`, { content: "And tomorrow?" }, key);
  const expiredTurn = (await pollUntilDone(`/conversations/${conv.body.conv_id}/poll/${afterExpiry.body.pending_id}`, key)).last;
  expect(expiredTurn.status).toBe("failed");
  expect(expiredTurn.error).toContain("Reconnect");
  expect((await call("GET", "/chatgpt/status?user_id=usr-ios", undefined, key)).body).toMatchObject({ connected: false, expired: true });

  // Another user without a connection: the doc's failure, and a sign-in the user declined is refused.
  const other = await call("POST", "/conversations", { user_id: "usr-unlinked", workflow: "meal-plan" }, key);
  const unlinked = await call("POST", `/conversations/${other.body.conv_id}/messages`, { content: "hi" }, key);
  const failed = (await pollUntilDone(`/conversations/${other.body.conv_id}/poll/${unlinked.body.pending_id}`, key)).last;
  expect(failed.status).toBe("failed");
  expect(failed.error).toContain("Connect your OpenAI account");
  const again = await call("POST", "/chatgpt/connect", {}, key);
  expect(again.status).toBe(400);
  expect(again.body.detail.param).toBe("user_id");
  const declined = (await call("POST", "/chatgpt/connect", { user_id: "usr-unlinked" }, key)).body;
  const refusedAt = `http://localhost:1455/auth/callback?error=access_denied&state=${new URL(declined.auth_url).searchParams.get("state")}`;
  const refused = await call("POST", "/chatgpt/callback", { session_id: declined.session_id, url: refusedAt }, null);
  expect(refused.status).toBe(400);
  expect(refused.body.detail.error).toBe("authorization_denied");
  expect((await call("GET", "/chatgpt/status?user_id=usr-unlinked", undefined, key)).body.connected).toBe(false);
});

test("Tenancy: another app's key and another user's token reach nothing of these conversations and runs", async () => {
  const root = api(server.url, "");
  const bearer = { authorization: `Bearer ${ROOT}` };
  const other = (await root.post("/v1/apps", { name: "Other tenant" }, bearer)).body;
  const foreign = (await root.post(`/v1/apps/${other.id}/keys`, { name: "k", scopes: ["data:read", "data:write"] }, bearer)).body.key as string;
  const convId = await createConversation("usr-tenant");
  const sent = await call("POST", `/conversations/${convId}/messages`, { content: "hello" });
  const run = await call("POST", "/runs", { user_id: "usr-tenant", workflow: "food-log", media_url: "https://x.test/a.jpg" });
  for (const [method, path, body] of [
    ["GET", `/conversations/${convId}`], ["GET", `/conversations/${convId}/poll/${sent.body.pending_id}`],
    ["POST", `/conversations/${convId}/messages`, { content: "x" }], ["DELETE", `/conversations/${convId}`], ["GET", `/runs/${run.body.job_id}`],
  ] as const) {
    expect((await call(method, path, body, foreign)).status).toBe(404);
  }
  expect((await call("GET", "/conversations?user_id=usr-tenant", undefined, foreign)).body.conversations).toEqual([]);
  // An end user's token (Authorization: Bearer, as the doc's SDK sends its token) sees its own user only.
  const token = (await api(server.url, server.apiKey).post("/v1/end-user-tokens", { user_id: "usr-someone-else" })).body.token as string;
  const asUser = { Authorization: `Bearer ${token}` };
  expect((await call("GET", `/conversations/${convId}`, undefined, null, asUser)).status).toBe(403);
  expect((await call("GET", "/conversations?user_id=usr-tenant", undefined, null, asUser)).status).toBe(403);
  expect((await call("POST", "/conversations", { user_id: "usr-tenant", workflow: "meal-plan" }, null, asUser)).status).toBe(403);
  const own = await call("POST", "/conversations", { user_id: "usr-someone-else", workflow: "meal-plan" }, null, asUser);
  expect(own.status).toBe(200);
  expect((await call("GET", `/conversations/${own.body.conv_id}`, undefined, null, asUser)).status).toBe(200);
  // The conversation survived every foreign attempt.
  expect((await call("GET", `/conversations/${convId}`)).status).toBe(200);
  // A key of this app that may only read: reads answer, writes are 403 in the doc's envelope.
  const readOnly = (await root.post(`/v1/apps/${DEFAULT_APP_ID}/keys`, { name: "ro", scopes: ["data:read"] }, bearer)).body.key as string;
  expect((await call("GET", `/conversations/${convId}`, undefined, readOnly)).status).toBe(200);
  const write = await call("POST", `/conversations/${convId}/messages`, { content: "x" }, readOnly);
  expect(write.status).toBe(403);
  expect(typeof write.body.detail.error).toBe("string");
});

test("BYOS connect: a session id cannot be forged from another sealed value, and dies with its app or key", async () => {
  const root = api(server.url, "");
  const bearer = { authorization: `Bearer ${ROOT}` };
  // A user's own credential is sealed text the user chose; its sealed form is readable through the audit log.
  const verifier = "chosen-verifier-0123456789abcdef0123456789";
  const chosen = JSON.stringify({ app: DEFAULT_APP_ID, key_id: null, user_id: "usr-victim", state: "s1", verifier, expires_at: 9e15 });
  expect((await api(server.url, server.apiKey).put("/v1/users/usr-mallory/credentials/openai", { access_token: chosen })).status).toBe(200);
  const auditor = (await root.post(`/v1/apps/${DEFAULT_APP_ID}/keys`, { name: "auditor", scopes: ["audit:read"] }, bearer)).body.key as string;
  const audit = await fetch(`${server.url}/v1/audit/streams/${encodeURIComponent(credentialsStream(userCredentialsId(DEFAULT_APP_ID, "usr-mallory")))}`, { headers: { authorization: `Bearer ${auditor}` } });
  const sealed = /"secret":"(sb1:[^"]+)"/.exec(await audit.text())?.[1];
  expect(sealed).toBeDefined();
  const challenge = new Bun.CryptoHasher("sha256").update(verifier).digest("base64url");
  const signIn = await fetch(`${oauth.url}/oauth/authorize?response_type=code&code_challenge_method=S256&client_id=app_test_client&redirect_uri=${encodeURIComponent("http://localhost:1455/auth/callback")}&state=s1&code_challenge=${challenge}`, { redirect: "manual" });
  for (const sessionId of [sealed!, `${Buffer.from(DEFAULT_APP_ID).toString("base64url")}.${sealed}`]) {
    const forged = await call("POST", "/chatgpt/callback", { session_id: sessionId, url: signIn.headers.get("location") }, null);
    expect(forged.status).toBe(400);
    expect(forged.body.detail.error).toBe("invalid_session");
  }
  expect((await call("GET", "/chatgpt/status?user_id=usr-victim")).body.connected).toBe(false);

  // A flow started through a key that is then revoked, or in an app then suspended, does not complete.
  const app = (await root.post("/v1/apps", { name: "Soon suspended" }, bearer)).body;
  const keyOf = async () => (await root.post(`/v1/apps/${app.id}/keys`, { name: "k" }, bearer)).body;
  const start = async (key: string, user: string) => {
    const started = (await call("POST", "/chatgpt/connect", { user_id: user }, key)).body;
    return { session_id: started.session_id, url: (await fetch(started.auth_url, { redirect: "manual" })).headers.get("location") };
  };
  const revokedKey = await keyOf();
  const viaRevoked = await start(revokedKey.key, "usr-a");
  expect((await root.post(`/v1/apps/${app.id}/keys/${revokedKey.id}/revoke`, undefined, bearer)).status).toBeLessThan(300);
  expect((await call("POST", "/chatgpt/callback", viaRevoked, null)).body.detail?.error).toBe("invalid_session");
  const liveKey = await keyOf();
  const beforeSuspension = await start(liveKey.key, "usr-b");
  expect((await root.patch(`/v1/apps/${app.id}`, { status: "suspended" }, bearer)).status).toBe(200);
  expect((await call("POST", "/chatgpt/callback", beforeSuspension, null)).body.detail?.error).toBe("invalid_session");
  expect((await root.patch(`/v1/apps/${app.id}`, { status: "active" }, bearer)).status).toBe(200);
  expect((await call("POST", "/chatgpt/callback", await start(liveKey.key, "usr-c"), null)).body).toMatchObject({ connected: true, user_id: "usr-c" });
});

test("OpenAPI: the surface is documented under its own tag", async () => {
  const doc = await (await fetch(`${server.url}/docs/json`)).json() as any;
  for (const [path, method] of [["/compat/mushu/runs", "post"], ["/compat/mushu/conversations/{conv_id}/poll/{pending_id}", "get"], ["/compat/mushu/apps/{app_id}/agents-config/llm", "put"], ["/compat/mushu/health", "get"]] as const) {
    expect(doc.paths[path][method].tags).toEqual(["Mushu (compat)"]);
  }
  expect(doc.tags.map((t: any) => t.name)).toContain("Mushu (compat)");
});
