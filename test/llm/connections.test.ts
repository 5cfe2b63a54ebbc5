/**
 * Model connections per app: two apps on one server, one on the OpenAI wire format and one on
 * Anthropic's (both served locally), each run a turn with its own key; keys are write-only; agents can
 * only name connections their app has; a connection may not point into the server's network.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { api, TEST_KEY, type Api } from "../support/api.ts";
import { startAnthropicWireServer, startOpenAiWireServer, type WireServer } from "../support/llmWireServers.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const ROOT = "agr_test_root_token_for_connections_0123";
let server: TestServer;
let openai: WireServer;
let anthropic: WireServer;
let root: Api;
const bearer = { authorization: `Bearer ${ROOT}` };

beforeAll(async () => {
  openai = startOpenAiWireServer();
  anthropic = startAnthropicWireServer();
  // The wire servers are on loopback: allowed for this test, as an operator would for a local model.
  server = await startTestServer({ API_KEY: TEST_KEY, ADMIN_TOKEN: ROOT, TOOL_PRIVATE_ALLOWLIST: "127.0.0.1", SANDBOX_CHUNK_DELAY_MS: "0" });
  root = api(server.url, "");
});
afterAll(async () => {
  await server?.stop();
  openai?.stop();
  anthropic?.stop();
});

async function appWith(name: string, connection: Record<string, unknown>) {
  const app = (await root.post("/v1/apps", { name }, bearer)).body;
  const put = await fetch(`${server.url}/v1/apps/${app.id}/connections/main`, {
    method: "PUT", headers: { ...bearer, "content-type": "application/json" }, body: JSON.stringify(connection),
  });
  expect(put.status).toBe(200);
  const key = (await root.post(`/v1/apps/${app.id}/keys`, { name: "k", scopes: ["data:write", "agents:manage"] }, bearer)).body.key;
  return { app, client: api(server.url, key), view: (await put.json()) as any };
}

test("two apps on different providers each run a turn with their own key", async () => {
  const a = await appWith("On OpenAI", { provider: "openai", base_url: openai.baseURL, api_key: "sk-app-a-0000001234", default_model: "gpt-a" });
  const b = await appWith("On Anthropic", { provider: "anthropic", base_url: anthropic.baseURL.replace(/\/v1$/, ""), api_key: "sk-app-b-0000005678", default_model: "claude-b" });
  expect(a.view).toEqual({
    name: "main", object: "connection", provider: "openai", base_url: openai.baseURL, default_model: "gpt-a", has_key: true, last4: "1234", headers: [], oauth: null, embeddings_model: null,
  });
  for (const [who, side, wire] of [["a", a, openai], ["b", b, anthropic]] as const) {
    const agent = await side.client.post("/v1/agents", { name: `agent ${who}`, approval: "never", model: { connection: "main" } });
    expect(agent.status).toBe(201);
    const sid = (await side.client.post("/v1/sessions", { user_id: "u", agent_id: agent.body.id })).body.id;
    const before = wire.requests.length;
    const turn = await side.client.post(`/v1/sessions/${sid}/messages`, { content: `hello from ${who}`, wait: true });
    expect(turn.body.status).toBe("completed");
    const sent = wire.requests.slice(before);
    expect(sent.length).toBe(1);
    const auth = sent[0]!.headers.get("authorization") ?? sent[0]!.headers.get("x-api-key") ?? "";
    expect(auth).toContain(who === "a" ? "sk-app-a-0000001234" : "sk-app-b-0000005678");
    expect(JSON.stringify(sent[0]!.body)).toContain(who === "a" ? "gpt-a" : "claude-b");
  }
  // The key is write-only: listed and read without it.
  const listed = await root.get(`/v1/apps/${a.app.id}/connections`, bearer);
  expect(listed.body.data).toEqual([a.view]);
  expect(JSON.stringify(listed.body)).not.toContain("sk-app-a");
});

test("an openai_compatible connection (a gateway, a local model server): its base_url is required, its turns run there, and its usage is priced under its own kind", async () => {
  const app = (await root.post("/v1/apps", { name: "Compatible" }, bearer)).body;
  const put = (body: unknown) => fetch(`${server.url}/v1/apps/${app.id}/connections/gateway`, {
    method: "PUT", headers: { ...bearer, "content-type": "application/json" }, body: JSON.stringify(body),
  });
  const missing = await put({ provider: "openai_compatible", api_key: "sk-gw" });
  expect({ status: missing.status, param: ((await missing.json()) as any).error.details.param }).toEqual({ status: 400, param: "base_url" });
  expect((await put({ provider: "openai_compatible", base_url: openai.baseURL, default_model: "llama-local" })).status).toBe(200);
  await root.put(`/v1/apps/${app.id}/prices`, { models: { "openai_compatible/llama-local": { input: 1_000_000, output: 0 }, "openai/llama-local": { input: 0, output: 0 } } }, bearer);
  const key = (await root.post(`/v1/apps/${app.id}/keys`, { name: "k", scopes: ["data:write", "agents:manage"] }, bearer)).body.key;
  const client = api(server.url, key);
  const agent = (await client.post("/v1/agents", { name: "local", approval: "never", model: { connection: "gateway" } })).body.id;
  const before = openai.requests.length;
  const run = await client.post("/v1/runs", { agent_id: agent, user_id: "u", input: "hi" });
  const events = await client.pollUntilDone(run.body.job_id);
  expect(openai.requests.length - before).toBe(1);
  const usage = events.find((e: any) => e.type === "usage").payload;
  expect(usage).toMatchObject({ provider: "openai_compatible", model: "llama-local" });
  expect(usage.credits).toBe(usage.prompt_tokens);
  // A keyless endpoint: no key was stored, and none was sent in the app's name.
  expect(openai.requests.at(-1)!.headers.get("authorization")).toBe("Bearer unused");
});

test("an agent may name only a connection its app has; a connection may not point into the server's network", async () => {
  const c = await appWith("Checked", { provider: "openai", base_url: openai.baseURL, api_key: "sk-app-c-0000009999" });
  const unknown = await c.client.post("/v1/agents", { name: "x", model: { connection: "nope" } });
  expect({ status: unknown.status, param: unknown.body.error.details.param }).toEqual({ status: 400, param: "model.connection" });
  // Classified, never contacted: a private address outside the allow-list is refused.
  const internal = await fetch(`${server.url}/v1/apps/${c.app.id}/connections/internal`, {
    method: "PUT", headers: { ...bearer, "content-type": "application/json" }, body: JSON.stringify({ provider: "openai", base_url: "http://10.1.2.3/v1", api_key: "k" }),
  });
  expect(internal.status).toBe(400);
  expect(((await internal.json()) as any).error.details.param).toBe("base_url");
  // Credentials never ride in a URL, which is stored and shown as written.
  for (const [field, body] of [
    ["base_url", { provider: "openai", base_url: "http://gw-user:gw-pass@127.0.0.1:9/v1" }],
    ["oauth.token_url", { provider: "openai", base_url: openai.baseURL, oauth: { token_url: "http://cid:secret@127.0.0.1:9/token" } }],
  ] as const) {
    const res = await fetch(`${server.url}/v1/apps/${c.app.id}/connections/userinfo`, { method: "PUT", headers: { ...bearer, "content-type": "application/json" }, body: JSON.stringify(body) });
    expect({ field, status: res.status, param: ((await res.json()) as any).error.details.param }).toEqual({ field, status: 400, param: field });
  }
  // A connection names its provider: another provider beside it is refused rather than ignored.
  const mixed = await c.client.post("/v1/agents", { name: "x", model: { connection: "main", provider: "anthropic" } });
  expect({ status: mixed.status, param: mixed.body.error.details.param }).toEqual({ status: 400, param: "model.provider" });
  expect((await c.client.post("/v1/agents", { name: "x", model: { connection: "main", provider: "openai" } })).status).toBe(201);
  // Only the app's own names are connections: a name like "constructor" is one it does not have.
  const inherited = await c.client.post("/v1/agents", { name: "x", model: { connection: "constructor" } });
  expect({ status: inherited.status, param: inherited.body.error.details.param }).toEqual({ status: 400, param: "model.connection" });
  expect((await root.get(`/v1/apps/${c.app.id}/connections/constructor`, bearer)).body.error.code).toBe("connection_not_found");
  expect((await fetch(`${server.url}/v1/apps/${c.app.id}/connections/constructor`, { method: "DELETE", headers: bearer })).status).toBe(404);
  // Removed: agents can no longer name it.
  expect((await fetch(`${server.url}/v1/apps/${c.app.id}/connections/main`, { method: "DELETE", headers: bearer })).status).toBe(200);
  expect((await c.client.post("/v1/agents", { name: "x", model: { connection: "main" } })).status).toBe(400);
});

test("a provider refusing a connection's key fails the job with provider_auth_failed naming the connection, never the key", async () => {
  const d = await appWith("Refused", { provider: "openai", base_url: openai.baseURL, api_key: "sk-app-d-wrong-000042" });
  const agent = (await d.client.post("/v1/agents", { name: "d", approval: "never", model: { connection: "main" } })).body.id;
  const sid = (await d.client.post("/v1/sessions", { user_id: "u", agent_id: agent })).body.id;
  openai.script({ kind: "status", status: 401, body: JSON.stringify({ error: { message: "Incorrect API key provided: sk-app-d-wrong-000042" } }) });
  const turn = await d.client.post(`/v1/sessions/${sid}/messages`, { content: "hi", wait: true });
  expect(turn.body.status).toBe("failed");
  expect(turn.body.error.code).toBe("provider_auth_failed");
  expect(turn.body.error.message).toContain('"main"');
  expect(JSON.stringify(turn.body)).not.toContain("sk-app-d-wrong");
});


test("a connection's headers reach the provider on both wire formats; their values are never shown", async () => {
  const headers = { "OpenAI-Organization": "org-hdr-0042", "X-Gateway-Key": "gw-secret-value-9876" };
  const e = await appWith("With headers", { provider: "openai", base_url: openai.baseURL, api_key: "sk-app-e-0000004242", headers });
  const f = await appWith("Anthropic with headers", {
    provider: "anthropic", base_url: anthropic.baseURL.replace(/\/v1$/, ""), api_key: "sk-app-f-0000004343", headers: { "anthropic-beta": "tools-2099", "X-Gateway-Key": "gw-secret-anthropic-5555" },
  });
  expect(e.view.headers).toEqual(["OpenAI-Organization", "X-Gateway-Key"]);
  const shown = JSON.stringify([e.view, f.view, (await root.get(`/v1/apps/${e.app.id}/connections/main`, bearer)).body, (await root.get(`/v1/apps/${f.app.id}/connections`, bearer)).body]);
  expect(shown).not.toContain("gw-secret");
  expect(shown).not.toContain("org-hdr-0042");
  for (const [side, wire, sentHeaders] of [[e, openai, headers], [f, anthropic, { "anthropic-beta": "tools-2099", "x-gateway-key": "gw-secret-anthropic-5555" }]] as const) {
    const agent = (await side.client.post("/v1/agents", { name: "h", approval: "never", model: { connection: "main" } })).body.id;
    const sid = (await side.client.post("/v1/sessions", { user_id: "u", agent_id: agent })).body.id;
    const before = wire.requests.length;
    expect((await side.client.post(`/v1/sessions/${sid}/messages`, { content: "hi", wait: true })).body.status).toBe("completed");
    const sent = wire.requests.slice(before)[0]!.headers;
    for (const [name, value] of Object.entries(sentHeaders)) expect(sent.get(name)).toBe(value);
    // The key is still the connection's: a header never replaces it.
    expect(sent.get("authorization") ?? sent.get("x-api-key") ?? "").toContain(side === e ? "sk-app-e-0000004242" : "sk-app-f-0000004343");
  }
  // Stored sealed: the app's event holds the names, never the values.
  const events: string[] = [];
  for await (const ev of server.ctx.store.readStream(`app-${e.app.id}`)) events.push(JSON.stringify(ev.data));
  expect(events.join("\n")).toContain("X-Gateway-Key");
  expect(events.join("\n")).not.toContain("gw-secret-value-9876");
});

test("credential, framing and malformed headers are refused with a 400 naming headers; oauth.token_url follows base_url's rule", async () => {
  const app = (await root.post("/v1/apps", { name: "Refusals" }, bearer)).body;
  const put = (body: Record<string, unknown>) => fetch(`${server.url}/v1/apps/${app.id}/connections/main`, {
    method: "PUT", headers: { ...bearer, "content-type": "application/json" }, body: JSON.stringify({ provider: "openai", base_url: openai.baseURL, ...body }),
  }).then(async (r) => ({ status: r.status, body: (await r.json()) as any }));
  for (const bad of [
    { Authorization: "Bearer x" }, { "x-api-key": "k" }, { Host: "evil.example" }, { "Content-Length": "1" }, { "Transfer-Encoding": "chunked" },
    { "Proxy-Authorization": "x" }, { "bad name": "v" }, { "X-Ok": "line\r\nX-Injected: 1" }, { "X-Empty": "" },
    Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`X-H${i}`, "v"])),
  ]) {
    const res = await put({ headers: bad });
    expect({ status: res.status, code: res.body.error.code, param: res.body.error.details.param }).toEqual({ status: 400, code: "invalid_request", param: "headers" });
  }
  const notString = await put({ headers: { "X-Number": 5 } });
  expect({ status: notString.status, param: notString.body.error.details.param }).toEqual({ status: 400, param: "headers.X-Number" });
  // Classified, never contacted: a private token endpoint outside the allow-list is refused.
  const internal = await put({ oauth: { token_url: "http://10.1.2.3/token" } });
  expect({ status: internal.status, param: internal.body.error.details.param }).toEqual({ status: 400, param: "oauth.token_url" });
  const notUrl = await put({ oauth: { token_url: "ftp://example.com/token" } });
  expect(notUrl.status).toBe(400);
  const ok = await put({ oauth: { token_url: `${openai.baseURL}/token`, client_id: "cid", client_secret: "client-secret-never-shown-77" }, headers: { "X-Ok": "fine" } });
  expect(ok.status).toBe(200);
  expect(ok.body.oauth).toEqual({ token_url: `${openai.baseURL}/token`, client_id: "cid", has_client_secret: true });
  expect(JSON.stringify(ok.body)).not.toContain("client-secret-never-shown");
  expect((await root.get(`/v1/apps/${app.id}/connections`, bearer)).body.data).toEqual([ok.body]);
});
