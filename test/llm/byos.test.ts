/**
 * End-user-funded inference (BYOS), end to end: a real server; a local OpenAI wire server that accepts
 * only the bearer tokens it is told are valid; a local OAuth token server (started here) that trades
 * refresh tokens for new access tokens. The flow: missing → credential_required; connect → the turn
 * runs on the user's token, not the app's key; expired without a refresh token → credential_expired;
 * expired with one → refreshed, the turn runs, the status is connected again. Around it: another end
 * user can neither read nor write the credential; a test key's credentials are apart from live ones;
 * bad bodies are 400s; no secret is in an answer, a log line, the data folder or an event in clear.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../src/config.ts";
import type { Logger } from "../../src/core/logger.ts";
import { credentialDecider, type CredentialEvent } from "../../src/domain/credential/credential.ts";
import { fold } from "../../src/core/decider.ts";
import { credentialsStream, userCredentialsId } from "../../src/domain/streams.ts";
import { startServer, type RunningServer } from "../../src/main.ts";
import { createRepositories } from "../../src/app/context.ts";
import { api, TEST_KEY, type Api } from "../support/api.ts";
import { filesUnder } from "../support/files.ts";
import { startAnthropicWireServer, startOpenAiWireServer, type WireServer } from "../support/llmWireServers.ts";

const ROOT = "agr_test_root_token_for_byos_0123456789";
const APP_KEY = "sk-app-own-key-never-used-0001";
const CLIENT_ID = "agentry-byos-client";
const CLIENT_SECRET = "oauth-client-secret-5Tq8Lw2";
/** Every secret of this test: none may appear in an answer, a log line, the data folder or an event's data. */
const SECRETS = {
  alice1: "at-alice-first-9c2LqP7rVw", aliceRefresh: "rt-alice-refresh-3Jx8Kd0", carol: "at-carol-lapsed-6Hn4Rb1Ty",
  dave: "at-dave-lapsed-2Wm7Fs5Qa", daveRefresh: "rt-dave-revoked-8Pk1Zx3", erin: "at-erin-lapsed-4Ce9Gu6Jd", erinRefresh: "rt-erin-refresh-7Vb2Nm5",
  apiKey: "sk-frank-own-key-1Ls8Do4Ke", claudeToken: "at-gina-claude-8Ur2Ie5Mv", claudeKey: "sk-ant-hank-own-6Yt3Oa9Pl", testMode: "at-alice-testmode-5Rf3Yh8Wq", other: "at-mallory-intruder-0Qp4Tz6",
  clientSecret: CLIENT_SECRET,
};

/** A local OAuth 2.0 token endpoint: refresh tokens it knows are traded for new tokens (rotated). */
function startTokenServer() {
  const live = new Map<string, string>([[SECRETS.aliceRefresh, "alice"], [SECRETS.erinRefresh, "erin"]]);
  const issued: string[] = [];
  const calls: Array<{ grant_type: string | null; refresh_token: string | null; authorization: string | null }> = [];
  let n = 0;
  /** Runs while a refresh is being answered (a test makes another writer win the race there). */
  const hooks: { duringRefresh?: () => Promise<void> } = {};
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      const form = new URLSearchParams(await req.text());
      const authorization = req.headers.get("authorization");
      calls.push({ grant_type: form.get("grant_type"), refresh_token: form.get("refresh_token"), authorization });
      const expected = `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString("base64")}`;
      if (authorization !== expected) return Response.json({ error: "invalid_client" }, { status: 401 });
      const who = live.get(form.get("refresh_token") ?? "");
      if (form.get("grant_type") !== "refresh_token" || !who) return Response.json({ error: "invalid_grant" }, { status: 400 });
      await hooks.duringRefresh?.();
      // Rotated: the old refresh token stops working, as many providers do.
      live.delete(form.get("refresh_token")!);
      n++;
      const access = `at-${who}-refreshed-${n}-Xq7Lm2Pz`;
      const refresh = `rt-${who}-rotated-${n}-Bv5Nk8Wd`;
      live.set(refresh, who);
      issued.push(access, refresh);
      return Response.json({ access_token: access, token_type: "Bearer", expires_in: 3600, refresh_token: refresh });
    },
  });
  return { url: `http://127.0.0.1:${server.port}/oauth/token`, calls, issued, hooks, live, stop: () => server.stop(true) };
}

let wire: WireServer;
let claude: WireServer;
/** What the wire server accepts: tokens given here, and every access token the token server issued, less revoked ones. */
const validTokens = new Set<string>();
const revoked = new Set<string>();
let tokens: ReturnType<typeof startTokenServer>;
let server: RunningServer;
let dataDir: string;
const lines: string[] = [];
let backend: Api;
let appId: string;
let agentId: string;
const answers: unknown[] = [];
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const rootAuth = bearer(ROOT);

beforeAll(async () => {
  wire = startOpenAiWireServer({
    authorize: (h) => {
      const token = (h.get("authorization") ?? "").replace(/^Bearer /, "");
      return !revoked.has(token) && (validTokens.has(token) || tokens.issued.includes(token));
    },
  });
  tokens = startTokenServer();
  claude = startAnthropicWireServer();
  const write = (level: string) => (msg: string, fields?: Record<string, unknown>) => {
    lines.push(JSON.stringify({ level, msg, ...fields }, (_k, v) => (typeof v === "bigint" ? v.toString() : v instanceof Error ? { message: v.message, stack: v.stack } : v)));
  };
  const logger: Logger = {
    debug: write("debug"), info: write("info"), warn: write("warn"), error: write("error"), child: () => logger,
    showSecretOnce: (title, secret) => lines.push(`${title} ${secret}`),
  };
  dataDir = mkdtempSync(join(tmpdir(), "agentry-byos-"));
  // The wire and token servers are on loopback: allowed for this test, as an operator would for local services.
  server = await startServer(loadConfig({
    PORT: "0", DATA_DIR: dataDir, API_KEY: TEST_KEY, ADMIN_TOKEN: ROOT, SQLITE_SYNCHRONOUS: "normal", LOG_LEVEL: "debug",
    TOOL_PRIVATE_ALLOWLIST: "127.0.0.1", SANDBOX_CHUNK_DELAY_MS: "0", LLM_MAX_ATTEMPTS: "1",
    // This file sends more than the default rate limits allow a minute.
    RATE_LIMIT_PER_MINUTE: "0", RATE_LIMIT_HEAVY_PER_MINUTE: "0",
  }), logger);
  const root = api(server.url, "");
  appId = (await root.post("/v1/apps", { name: "BYOS" }, rootAuth)).body.id;
  const connection = await root.put(`/v1/apps/${appId}/connections/byos`, {
    provider: "openai", base_url: wire.baseURL, api_key: APP_KEY, default_model: "gpt-byos",
    oauth: { token_url: tokens.url, client_id: CLIENT_ID, client_secret: CLIENT_SECRET },
  }, rootAuth);
  expect(connection.status).toBe(200);
  expect(connection.body.oauth).toEqual({ token_url: tokens.url, client_id: CLIENT_ID, has_client_secret: true });
  answers.push(connection.body);
  const key = (await root.post(`/v1/apps/${appId}/keys`, { name: "backend", scopes: ["data:write", "agents:manage"] }, rootAuth)).body.key;
  backend = api(server.url, key);
  const agent = await backend.post("/v1/agents", { name: "byos", approval: "never", billing: "end_user", model: { connection: "byos" } });
  expect(agent.status).toBe(201);
  expect(agent.body.billing).toBe("end_user");
  agentId = agent.body.id;
}, 60_000);

afterAll(async () => {
  await server?.shutdown("test");
  wire?.stop();
  claude?.stop();
  tokens?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

/** A client acting as `user` with an end-user token the app's backend minted. */
async function tokenFor(user: string): Promise<ReturnType<typeof withBearer>> {
  const minted = await backend.post("/v1/end-user-tokens", { user_id: user });
  expect(minted.status).toBe(201);
  return withBearer(minted.body.token);
}

/** A client that authenticates with an end-user token instead of a key. */
function withBearer(token: string): Pick<Api, "get" | "put" | "del" | "post"> {
  const client = api(server.url, "");
  return {
    get: (p, h) => client.get(p, { ...bearer(token), ...h }),
    put: (p, b, h) => client.put(p, b, { ...bearer(token), ...h }),
    del: (p, h) => client.del(p, { ...bearer(token), ...h }),
    post: (p, b, h) => client.post(p, b, { ...bearer(token), ...h }),
  };
}

/** One turn of the BYOS agent for `user`, waited for; with the wire server's requests it caused. */
async function turn(user: string) {
  const before = wire.requests.length;
  const session = await backend.post("/v1/sessions", { user_id: user, agent_id: agentId });
  expect(session.status).toBe(201);
  const reply = await backend.post(`/v1/sessions/${session.body.id}/messages`, { content: `hello from ${user}`, wait: true });
  answers.push(reply.body);
  return { reply: reply.body, sent: wire.requests.slice(before) };
}

const credential = (user: string) => `/v1/users/${user}/credentials/openai`;

describe("the BYOS flow: connect, run, expire, a clear failure, refresh", () => {
  test("no credential: the job fails at once with credential_required, and no model is called", async () => {
    const status = await backend.get(credential("alice"));
    expect(status.body).toEqual({ object: "user_credential", user_id: "alice", provider: "openai", status: "missing", kind: null, expires_at: null, last4: null, refreshable: false });
    const { reply, sent } = await turn("alice");
    expect(reply.status).toBe("failed");
    expect(reply.error).toEqual({ code: "credential_required", message: "Connect your OpenAI account to continue." });
    expect(sent).toEqual([]);
  });

  test("the user connects with an access token (their own end-user token): the turn runs on it, not on the app's key", async () => {
    const alice = await tokenFor("alice");
    const expiresAt = new Date(Date.now() + 3_600_000).toISOString().replace(/\.\d+Z$/, "Z");
    const put = await alice.put(credential("alice"), { access_token: SECRETS.alice1, refresh_token: SECRETS.aliceRefresh, expires_at: expiresAt });
    answers.push(put.body);
    expect(put.status).toBe(200);
    expect(put.body).toEqual({
      object: "user_credential", user_id: "alice", provider: "openai", status: "connected", kind: "oauth",
      expires_at: new Date(Date.parse(expiresAt)).toISOString(), last4: SECRETS.alice1.slice(-4), refreshable: true,
    });
    validTokens.add(SECRETS.alice1);
    // The app prices every model; the user's own credential pays for this one, so the app is billed nothing.
    expect((await api(server.url, "").put(`/v1/apps/${appId}/prices`, { models: { "*": { input: 1_000_000, output: 1_000_000 } } }, rootAuth)).status).toBe(200);
    const { reply, sent } = await turn("alice");
    expect(reply.status).toBe("completed");
    expect(reply.usage.prompt_tokens).toBeGreaterThan(0);
    expect(reply.credits_spent).toBe(0);
    expect(sent.length).toBe(1);
    expect(sent[0]!.headers.get("authorization")).toBe(`Bearer ${SECRETS.alice1}`);
    expect(sent[0]!.body.model).toBe("gpt-byos");
    expect(wire.requests.some((r) => (r.headers.get("authorization") ?? "").includes(APP_KEY))).toBe(false);
    // A run (rather than a session's turn) goes the same way.
    const run = await backend.post("/v1/runs", { user_id: "alice", agent_id: agentId, input: "a run" });
    expect(run.status).toBe(202);
    await backend.pollUntilDone(run.body.id);
    const done = await backend.get(`/v1/runs/${run.body.id}`);
    answers.push(done.body);
    expect(done.body.status).toBe("completed");
    expect(wire.requests.at(-1)!.headers.get("authorization")).toBe(`Bearer ${SECRETS.alice1}`);
  });

  test("an API key works the same way, and is never shown again", async () => {
    const put = await backend.put(credential("frank"), { api_key: SECRETS.apiKey });
    answers.push(put.body);
    expect(put.body).toMatchObject({ status: "connected", kind: "api_key", expires_at: null, last4: SECRETS.apiKey.slice(-4), refreshable: false });
    validTokens.add(SECRETS.apiKey);
    const { reply, sent } = await turn("frank");
    expect(reply.status).toBe("completed");
    expect(sent[0]!.headers.get("authorization")).toBe(`Bearer ${SECRETS.apiKey}`);
  });

  test("usage limits count what the app pays: a turn the user's own credential pays runs even when the app's pools are used up", async () => {
    const root = api(server.url, "");
    expect((await root.put(`/v1/apps/${appId}/limits`, { app: { daily_credits: 0, daily_tokens: 0 }, per_user: { daily_tokens: 0 } }, rootAuth)).status).toBe(200);
    try {
      const { reply, sent } = await turn("frank");
      expect({ status: reply.status, credits: reply.credits_spent, calls: sent.length }).toEqual({ status: "completed", credits: 0, calls: 1 });
      const pools = (await backend.get("/v1/usage/limits?user_id=frank")).body.data;
      // The job held nothing and spent nothing of the app's: every pool still shows 0 used.
      expect(pools.map((p: any) => [p.scope, p.credits?.spent ?? null, p.tokens?.spent ?? null, p.tokens?.held ?? null])).toEqual([
        ["app", 0, 0, 0], ["user", null, 0, 0],
      ]);
    } finally {
      expect((await root.del(`/v1/apps/${appId}/limits`, rootAuth)).status).toBe(200);
    }
  });

  test("expired with no refresh token: credential_expired, and neither the token endpoint nor the model is called", async () => {
    const put = await backend.put(credential("carol"), { access_token: SECRETS.carol, expires_at: "2020-01-01T00:00:00Z" });
    answers.push(put.body);
    expect(put.body).toMatchObject({ status: "expired", kind: "oauth", expires_at: "2020-01-01T00:00:00.000Z", refreshable: false });
    validTokens.add(SECRETS.carol); // the wire server would take it: the runner must not try
    const calls = tokens.calls.length;
    const { reply, sent } = await turn("carol");
    expect(reply.status).toBe("failed");
    expect(reply.error).toEqual({ code: "credential_expired", message: "Your OpenAI connection has expired. Reconnect your OpenAI account to continue." });
    expect(sent).toEqual([]);
    expect(tokens.calls.length).toBe(calls);
  });

  test("expired with a refresh token: refreshed at the connection's token endpoint, the turn runs on the new token, the status is connected again", async () => {
    const put = await backend.put(credential("alice"), { access_token: SECRETS.alice1, refresh_token: SECRETS.aliceRefresh, expires_at: "2021-06-30T12:00:00+02:00" });
    answers.push(put.body);
    expect(put.body).toMatchObject({ status: "expired", refreshable: true });
    const calls = tokens.calls.length;
    const { reply, sent } = await turn("alice");
    expect(reply.status).toBe("completed");
    expect(tokens.calls.slice(calls)).toEqual([{
      grant_type: "refresh_token", refresh_token: SECRETS.aliceRefresh, authorization: `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString("base64")}`,
    }]);
    const fresh = tokens.issued.at(-2)!;
    expect(sent.map((r) => r.headers.get("authorization"))).toEqual([`Bearer ${fresh}`]);
    const status = await backend.get(credential("alice"));
    answers.push(status.body);
    expect(status.body).toMatchObject({ status: "connected", kind: "oauth", last4: fresh.slice(-4), refreshable: true });
    expect(Date.parse(status.body.expires_at)).toBeGreaterThan(Date.now() + 3_000_000);
    // The next turn uses the stored new token without refreshing again.
    const again = await turn("alice");
    expect(again.reply.status).toBe("completed");
    expect(again.sent[0]!.headers.get("authorization")).toBe(`Bearer ${fresh}`);
    expect(tokens.calls.length).toBe(calls + 1);
  });

  test("a token the provider refuses before its expiry is refreshed once and the turn retried", async () => {
    const early = tokens.issued.at(-2)!; // the token refreshed above, revoked early by the provider
    revoked.add(early);
    const calls = tokens.calls.length;
    const { reply, sent } = await turn("alice");
    expect(reply.status).toBe("completed");
    expect(tokens.calls.length).toBe(calls + 1);
    const fresh = tokens.issued.at(-2)!;
    expect(sent.map((r) => r.headers.get("authorization"))).toEqual([`Bearer ${early}`, `Bearer ${fresh}`]);
  });

  test("a refresh token the endpoint refuses: credential_expired, and it is not tried again", async () => {
    await backend.put(credential("dave"), { access_token: SECRETS.dave, refresh_token: SECRETS.daveRefresh, expires_at: "2020-01-01T00:00:00Z" });
    const calls = tokens.calls.length;
    const first = await turn("dave");
    expect(first.reply.error.code).toBe("credential_expired");
    expect(first.sent).toEqual([]);
    expect(tokens.calls.length).toBe(calls + 1);
    expect((await backend.get(credential("dave"))).body).toMatchObject({ status: "expired", refreshable: false });
    const second = await turn("dave");
    expect(second.reply.error.code).toBe("credential_expired");
    expect(tokens.calls.length).toBe(calls + 1);
    // Reconnecting brings it back.
    validTokens.add(SECRETS.dave);
    await backend.put(credential("dave"), { access_token: SECRETS.dave });
    expect((await turn("dave")).reply.status).toBe("completed");
  });

  test("two turns needing a refresh at once share one refresh, and both run on its token", async () => {
    await backend.put(credential("erin"), { access_token: SECRETS.erin, refresh_token: SECRETS.erinRefresh, expires_at: "2020-01-01T00:00:00Z" });
    const calls = tokens.calls.length;
    const before = wire.requests.length;
    const [a, b] = await Promise.all([turn("erin"), turn("erin")]);
    expect([a.reply.status, b.reply.status]).toEqual(["completed", "completed"]);
    expect(tokens.calls.length).toBe(calls + 1);
    const fresh = tokens.issued.at(-2)!;
    expect(wire.requests.slice(before).map((r) => r.headers.get("authorization"))).toEqual([`Bearer ${fresh}`, `Bearer ${fresh}`]);
  });

  test("a refresh that loses the race to another writer's uses the winner's token", async () => {
    const winner = "at-erin-winner-elsewhere-3Fd8Sx1";
    validTokens.add(winner);
    await backend.put(credential("erin"), { access_token: SECRETS.erin, refresh_token: SECRETS.erinRefresh, expires_at: "2020-01-01T00:00:00Z" });
    tokens.live.set(SECRETS.erinRefresh, "erin");
    // While this server's refresh is being answered, another process (with its own repositories) stores its refresh first.
    const elsewhere = createRepositories(server.ctx.store);
    const sealed = await server.ctx.secrets.seal(appId, winner);
    tokens.hooks.duringRefresh = async () => {
      tokens.hooks.duringRefresh = undefined;
      await elsewhere.credentials.handle(userCredentialsId(appId, "erin"), (state) => ({
        type: "RefreshCredential", provider: "openai", based_on: state.credentials.openai!.version, secret: sealed, refresh_token: null,
        expires_at: Date.now() + 3_600_000, last4: winner.slice(-4),
      }), { appId });
    };
    const { reply, sent } = await turn("erin");
    expect(reply.status).toBe("completed");
    expect(sent.map((r) => r.headers.get("authorization"))).toEqual([`Bearer ${winner}`]);
    expect((await backend.get(credential("erin"))).body).toMatchObject({ status: "connected", last4: winner.slice(-4) });
  });

  test("disconnecting: DELETE answers missing (again too), and the next turn needs a credential", async () => {
    const first = await backend.del(credential("frank"));
    expect(first.body).toMatchObject({ status: "missing", kind: null });
    expect((await backend.del(credential("frank"))).status).toBe(200);
    expect((await turn("frank")).reply.error.code).toBe("credential_required");
  });
});

describe("on Anthropic", () => {
  test("the user's credential for the agent's connection kind, sent where the app's key would be", async () => {
    const root = api(server.url, "");
    expect((await root.put(`/v1/apps/${appId}/connections/claude`, {
      provider: "anthropic", base_url: claude.baseURL.replace(/\/v1$/, ""), api_key: APP_KEY, default_model: "claude-byos",
    }, rootAuth)).status).toBe(200);
    const agent = (await backend.post("/v1/agents", { name: "claude byos", approval: "never", billing: "end_user", model: { connection: "claude" } })).body.id;
    const claudeTurn = async (user: string) => {
      const before = claude.requests.length;
      const sid = (await backend.post("/v1/sessions", { user_id: user, agent_id: agent })).body.id;
      const reply = (await backend.post(`/v1/sessions/${sid}/messages`, { content: "hi", wait: true })).body;
      answers.push(reply);
      return { reply, sent: claude.requests.slice(before) };
    };
    // alice connected OpenAI, not Anthropic.
    const missing = await claudeTurn("alice");
    expect(missing.reply.error).toEqual({ code: "credential_required", message: "Connect your Anthropic account to continue." });
    expect(missing.sent).toEqual([]);

    await backend.put("/v1/users/gina/credentials/anthropic", { access_token: SECRETS.claudeToken });
    const oauth = await claudeTurn("gina");
    expect(oauth.reply.status).toBe("completed");
    expect(oauth.sent[0]!.headers.get("authorization")).toBe(`Bearer ${SECRETS.claudeToken}`);

    await backend.put("/v1/users/hank/credentials/anthropic", { api_key: SECRETS.claudeKey });
    const keyed = await claudeTurn("hank");
    expect(keyed.reply.status).toBe("completed");
    // The SDK sends an API key as a bearer token too (older ones used x-api-key): either way, the user's.
    expect(keyed.sent[0]!.headers.get("authorization") ?? keyed.sent[0]!.headers.get("x-api-key")).toContain(SECRETS.claudeKey);
    expect(claude.requests.some((r) => JSON.stringify([...r.headers]).includes(APP_KEY))).toBe(false);
  });
});

describe("who may touch a credential", () => {
  test("another end user can neither read, set nor remove it; the user's own token can", async () => {
    const mallory = await tokenFor("mallory");
    for (const res of [
      await mallory.get(credential("alice")),
      await mallory.put(credential("alice"), { access_token: SECRETS.other }),
      await mallory.del(credential("alice")),
    ]) {
      expect({ status: res.status, code: res.body.error.code }).toEqual({ status: 403, code: "permission_denied" });
      answers.push(res.body);
    }
    expect((await backend.get(credential("alice"))).body.status).toBe("connected");
    const alice = await tokenFor("alice");
    expect((await alice.get(credential("alice"))).body.status).toBe("connected");
  });

  test("a test key's credentials are its test data's: apart from live ones, both ways", async () => {
    const root = api(server.url, "");
    const testKey = (await root.post(`/v1/apps/${appId}/keys`, { name: "test", mode: "test" }, rootAuth)).body.key;
    const sandbox = api(server.url, testKey);
    expect((await sandbox.get(credential("alice"))).body.status).toBe("missing");
    expect((await sandbox.put(credential("alice"), { access_token: SECRETS.testMode })).body.status).toBe("connected");
    expect((await backend.get(credential("alice"))).body.last4).not.toBe(SECRETS.testMode.slice(-4));
    expect((await sandbox.del(credential("alice"))).body.status).toBe("missing");
    expect((await backend.get(credential("alice"))).body.status).toBe("connected");
  });

  test("a data:read key reads the status but may not change it", async () => {
    const root = api(server.url, "");
    const reader = api(server.url, (await root.post(`/v1/apps/${appId}/keys`, { name: "reader", scopes: ["data:read"] }, rootAuth)).body.key);
    expect((await reader.get(credential("alice"))).status).toBe(200);
    const put = await reader.put(credential("alice"), { api_key: SECRETS.other });
    expect({ status: put.status, code: put.body.error.code }).toEqual({ status: 403, code: "insufficient_scope" });
  });
});

describe("bad input is a 400 naming the field, never a 500", () => {
  const cases: Array<[string, unknown, string]> = [
    ["empty body", {}, "api_key"],
    ["both kinds", { api_key: "sk-a-0000000000", access_token: "at-b-0000000000" }, "access_token"],
    ["refresh token with an API key", { api_key: "sk-a-0000000000", refresh_token: "r" }, "refresh_token"],
    ["expiry with an API key", { api_key: "sk-a-0000000000", expires_at: "2030-01-01T00:00:00Z" }, "expires_at"],
    ["expiry not ISO 8601", { access_token: "at-b-0000000000", expires_at: "tomorrow" }, "expires_at"],
    ["expiry as epoch seconds", { access_token: "at-b-0000000000", expires_at: 1893456000 }, "expires_at"],
    ["expiry on a day that does not exist", { access_token: "at-b-0000000000", expires_at: "2030-02-30T00:00:00Z" }, "expires_at"],
    ["a token with a space", { access_token: "at b" }, "access_token"],
    ["a token with a line break", { access_token: "at\r\nx-injected: 1" }, "access_token"],
    ["a token that is not a string", { access_token: 5 }, "access_token"],
    ["an empty key", { api_key: "" }, "api_key"],
    ["an unknown field", { token: "x" }, "token"],
  ];
  for (const [what, body, param] of cases) {
    test(what, async () => {
      const res = await backend.put(credential("badinput"), body);
      expect({ status: res.status, code: res.body.error?.code, param: res.body.error?.details?.param }).toEqual({ status: 400, code: "invalid_request", param });
    });
  }

  test("an unknown provider, an over-long user id, malformed JSON", async () => {
    const provider = await backend.put("/v1/users/u/credentials/gemini", { api_key: "sk-a-0000000000" });
    expect({ status: provider.status, param: provider.body.error.details.param }).toEqual({ status: 400, param: "provider" });
    const long = await backend.get(`/v1/users/${"u".repeat(201)}/credentials/openai`);
    expect(long.status).toBe(400);
    // A broken percent-encoding would decode to U+FFFD: another user than the one meant.
    for (const broken of ["%FF", "%ED%A0%80"]) {
      const res = await backend.put(`/v1/users/${broken}/credentials/openai`, { api_key: "sk-a-0000000000" });
      expect({ status: res.status, param: res.body.error.details.param }).toEqual({ status: 400, param: "user_id" });
    }
    expect((await backend.get("/v1/users/a%2Fb%20c/credentials/openai")).body.user_id).toBe("a/b c");
    const malformed = await backend.put(credential("u"), '{"api_key": ');
    expect({ status: malformed.status, code: malformed.body.error.code }).toEqual({ status: 400, code: "invalid_json" });
    expect((await backend.get(credential("badinput"))).body.status).toBe("missing"); // nothing stored by any of them
  });

  test("an agent billed to its end users needs something they can connect", async () => {
    const sandboxOnly = await backend.post("/v1/agents", { name: "x", billing: "end_user" });
    expect({ status: sandboxOnly.status, param: sandboxOnly.body.error.details.param }).toEqual({ status: 400, param: "billing" });
    const wrong = await backend.post("/v1/agents", { name: "x", billing: "user" });
    expect({ status: wrong.status, param: wrong.body.error.details.param }).toEqual({ status: 400, param: "billing" });
    const plain = await backend.post("/v1/agents", { name: "plain", model: { connection: "byos" } });
    expect(plain.body.billing).toBe("app");
    const patched = await backend.patch(`/v1/agents/${plain.body.id}`, { billing: "end_user" });
    expect(patched.body.billing).toBe("end_user");
    const unhooked = await backend.patch(`/v1/agents/${plain.body.id}`, { model: { connection: null } });
    expect({ status: unhooked.status, param: unhooked.body.error.details.param }).toEqual({ status: 400, param: "billing" });
  });
});

describe("secrets stay secret", () => {
  test("the credential stream holds every secret sealed, and the decider folds it", async () => {
    const stream = credentialsStream(userCredentialsId(appId, "alice"));
    const events: CredentialEvent[] = [];
    for await (const e of server.ctx.store.readStream(stream)) events.push({ type: e.type, data: e.data } as CredentialEvent);
    expect(events.map((e) => e.type)).toEqual(["CredentialSet", "CredentialSet", "CredentialRefreshed", "CredentialRefreshed"]);
    const text = JSON.stringify(events);
    expect(text).toContain("sb1:");
    const state = fold(credentialDecider, events);
    expect(state.credentials.openai).toMatchObject({ kind: "oauth", refresh_refused: false });
  });

  test("no secret in any answer, log line, file of the data folder or event", async () => {
    const all = [...Object.values(SECRETS), ...tokens.issued];
    const answered = JSON.stringify(answers);
    expect(all.filter((s) => answered.includes(s))).toEqual([]);
    expect(lines.length).toBeGreaterThan(5); // the log was captured
    expect(all.filter((s) => lines.some((l) => l.includes(s)))).toEqual([]);
    const files = filesUnder(dataDir);
    expect(all.filter((s) => files.some((f) => f.bytes.includes(s)))).toEqual([]);
    const stored: string[] = [];
    for await (const e of server.ctx.store.readAll()) stored.push(JSON.stringify(e.data));
    expect(all.filter((s) => stored.some((d) => d.includes(s)))).toEqual([]);
  });
});
