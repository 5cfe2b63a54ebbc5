/**
 * Rate limits over real HTTP: 429 rate_limit_exceeded with Retry-After past the limit; RateLimit and
 * X-RateLimit headers on every data-plane answer (errors, long polls and SSE included); separate
 * budgets per key and per end user; the heavy budget for calls that start a job; per-app limits set on
 * the management plane; the server's defaults (60 and 10 a minute).
 *
 * Each test works with keys of its own (limits of a few a minute, so nothing refills while it runs).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { SignJWT } from "jose";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../src/config.ts";
import { silentLogger } from "../../src/core/logger.ts";
import { appStream, DEFAULT_APP_ID } from "../../src/domain/streams.ts";
import { isHeavyCall } from "../../src/http/rateLimit.ts";
import { startServer } from "../../src/main.ts";
import { api, type Api } from "../support/api.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const ROOT = "agr_rate_limit_root_token_0123456789";
const JWT_SECRET = "rate-limit-management-secret-0123456789abcdef";
let server: TestServer;
let root: Api;

beforeAll(async () => {
  server = await startTestServer({ ADMIN_TOKEN: ROOT, MANAGEMENT_JWT_SECRET: JWT_SECRET, SANDBOX_CHUNK_DELAY_MS: "0", RATE_LIMIT_PER_MINUTE: "5", RATE_LIMIT_HEAVY_PER_MINUTE: "2" });
  root = api(server.url, "");
});
afterAll(async () => {
  await server?.stop();
});

const admin = {
  get: (path: string) => root.get(path, { authorization: `Bearer ${ROOT}` }),
  post: (path: string, body: unknown) => root.post(path, body, { authorization: `Bearer ${ROOT}` }),
  put: (path: string, body: unknown) => fetch(server.url + path, {
    method: "PUT", headers: { authorization: `Bearer ${ROOT}`, "content-type": "application/json" }, body: typeof body === "string" ? body : JSON.stringify(body),
  }).then(async (res) => ({ status: res.status, body: await res.json() as any, headers: res.headers })),
};

/** A new key of `appId` (default: the default app), as a client that also knows its key. */
async function newKey(appId = DEFAULT_APP_ID, body: Record<string, unknown> = {}): Promise<Api & { key: string }> {
  const issued = await admin.post(`/v1/apps/${appId}/keys`, { name: "rl", ...body });
  expect(issued.status).toBe(201);
  return Object.assign(api(server.url, issued.body.key), { key: issued.body.key as string });
}

async function newApp(): Promise<string> {
  const created = await admin.post("/v1/apps", { name: "rate limited" });
  expect(created.status).toBe(201);
  return created.body.id;
}

const limitsOf = (headers: Headers) => ({
  limit: headers.get("ratelimit-limit"), remaining: headers.get("ratelimit-remaining"), reset: headers.get("ratelimit-reset"),
  x_limit: headers.get("x-ratelimit-limit"), x_remaining: headers.get("x-ratelimit-remaining"), x_reset: headers.get("x-ratelimit-reset"),
});

describe("over the limit", () => {
  test("the request past the limit gets 429 rate_limit_exceeded with Retry-After; each answer counts down", async () => {
    const client = await newKey();
    const answers = [];
    for (let i = 0; i < 6; i++) answers.push(await client.get("/v1/sessions"));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200, 429]);
    expect(answers.map((a) => a.headers.get("ratelimit-remaining"))).toEqual(["4", "3", "2", "1", "0", "0"]);
    const refused = answers[5]!;
    expect(refused.body.error).toMatchObject({ code: "rate_limit_exceeded", details: { budget: "requests", limit: 5 } });
    expect(refused.body.error.request_id).toBe(refused.headers.get("x-request-id"));
    const retryAfter = Number(refused.headers.get("retry-after"));
    // 5 a minute: one every 12 s; the next comes within 12 s, and never "0".
    expect(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 12).toBe(true);
    expect(refused.body.error.details.retry_after).toBe(retryAfter);
    const h = limitsOf(refused.headers);
    expect(h).toMatchObject({ limit: "5", remaining: "0", x_limit: "5", x_remaining: "0" });
    // Reset: seconds until the budget is whole (a minute after a burst of 5); X-RateLimit-Reset the
    // same moment as UTC epoch seconds.
    expect(Number(h.reset)).toBeGreaterThan(48);
    expect(Number(h.reset)).toBeLessThanOrEqual(60);
    const now = Date.now() / 1000;
    expect(Number(h.x_reset)).toBeGreaterThan(now + 47);
    expect(Number(h.x_reset)).toBeLessThanOrEqual(Math.ceil(now) + 61);
  });

  test("a refused request charges nothing, and another key of the app or another app is unaffected", async () => {
    const a = await newKey();
    const b = await newKey();
    const other = await newKey(await newApp());
    for (let i = 0; i < 5; i++) expect((await a.get("/v1/sessions")).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await a.get("/v1/sessions")).status).toBe(429);
    const forB = await b.get("/v1/sessions");
    expect(forB.status).toBe(200);
    expect(forB.headers.get("ratelimit-remaining")).toBe("4");
    const forOther = await other.get("/v1/sessions");
    expect(forOther.status).toBe(200);
    expect(forOther.headers.get("ratelimit-remaining")).toBe("4");
  });

  test("the management plane and health are not limited", async () => {
    for (let i = 0; i < 8; i++) expect((await admin.get(`/v1/apps/${DEFAULT_APP_ID}`)).status).toBe(200);
    const managed = await admin.get(`/v1/apps/${DEFAULT_APP_ID}`);
    expect(managed.headers.get("ratelimit-limit")).toBeNull();
    expect((await fetch(`${server.url}/health`)).headers.get("ratelimit-limit")).toBeNull();
  });
});

describe("headers on every answer", () => {
  test("successes, errors (400, 404, no such route), long polls and SSE streams all carry them", async () => {
    const appId = await newApp();
    expect((await admin.put(`/v1/apps/${appId}/rate_limits`, { per_key: { requests_per_minute: 8 } })).status).toBe(200);
    const client = await newKey(appId);
    const session = await client.post("/v1/sessions", { user_id: "headers" });
    const sent = await client.post(`/v1/sessions/${session.body.id}/messages`, { content: "hi" });
    expect(sent.status).toBe(202);
    const bad = await client.post("/v1/sessions", { user_id: 42 });
    const missing = await client.get("/v1/sessions/sess_missing");
    const route = await client.get("/v1/no-such-route");
    expect([bad.status, missing.status, route.status]).toEqual([400, 404, 404]);
    const longPoll = await client.get(`/v1/jobs/${sent.body.job_id}/events?since=1000&wait=0.2`);
    expect(longPoll.status).toBe(200);
    const stream = await fetch(`${server.url}/v1/jobs/${sent.body.job_id}/stream`, { headers: { "x-api-key": client.key } });
    expect(stream.headers.get("content-type")).toContain("text/event-stream");
    await stream.body?.cancel();
    const answers = [session, sent, bad, missing, route, longPoll, { headers: stream.headers }];
    // The message is a heavy call: its answer shows the heavy budget (2, 1 left), the nearer its limit.
    expect(answers.map((r) => `${r.headers.get("ratelimit-limit")}/${r.headers.get("ratelimit-remaining")}`))
      .toEqual(["8/7", "2/1", "8/5", "8/4", "8/3", "8/2", "8/1"]);
    expect(answers.map((r) => `${r.headers.get("x-ratelimit-limit")}/${r.headers.get("x-ratelimit-remaining")}`))
      .toEqual(["8/7", "2/1", "8/5", "8/4", "8/3", "8/2", "8/1"]);
    for (const r of answers) {
      expect(Number(r.headers.get("ratelimit-reset"))).toBeGreaterThanOrEqual(1);
      expect(Number(r.headers.get("x-ratelimit-reset"))).toBeGreaterThan(Date.now() / 1000 - 1);
    }
  });

  test("a request without a valid key is not charged to anyone (401, no headers)", async () => {
    const refused = await api(server.url, "not-a-key-0123456789abcdef").get("/v1/sessions");
    expect(refused.status).toBe(401);
    expect(refused.headers.get("ratelimit-limit")).toBeNull();
  });
});

describe("whose budget", () => {
  test("an end user has a budget of their own, apart from the key's and other users'", async () => {
    const backend = await newKey();
    const tokenFor = async (user: string) => (await backend.post("/v1/end-user-tokens", { user_id: user })).body.token as string;
    const alice = api(server.url, await tokenFor("alice"));
    const bob = api(server.url, await tokenFor("bob"));
    // The key spent 2 of its 5 minting; it spends the rest and is refused.
    const keyAnswers = [];
    for (let i = 0; i < 4; i++) keyAnswers.push((await backend.get("/v1/sessions")).status);
    expect(keyAnswers).toEqual([200, 200, 200, 429]);
    // Alice's token is charged to Alice: 5 of her own.
    const aliceAnswers = [];
    for (let i = 0; i < 6; i++) aliceAnswers.push(await alice.get("/v1/sessions"));
    expect(aliceAnswers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200, 429]);
    expect(aliceAnswers[0]!.headers.get("ratelimit-remaining")).toBe("4");
    // Bob is someone else.
    expect((await bob.get("/v1/sessions")).headers.get("ratelimit-remaining")).toBe("4");
    // A key bound to Alice acts as Alice: her budget, already spent.
    const aliceKey = await newKey(DEFAULT_APP_ID, { user_id: "alice" });
    expect((await aliceKey.get("/v1/sessions")).status).toBe(429);
    // … and a key bound to Carol starts Carol's.
    const carolKey = await newKey(DEFAULT_APP_ID, { user_id: "carol" });
    expect((await carolKey.get("/v1/sessions")).headers.get("ratelimit-remaining")).toBe("4");
  });

  test("the same user id in another app is another user", async () => {
    const appId = await newApp();
    const daveHere = await newKey(DEFAULT_APP_ID, { user_id: "dave" });
    const daveThere = await newKey(appId, { user_id: "dave" });
    for (let i = 0; i < 5; i++) await daveHere.get("/v1/sessions");
    expect((await daveHere.get("/v1/sessions")).status).toBe(429);
    expect((await daveThere.get("/v1/sessions")).status).toBe(200);
  });
});

describe("heavy calls", () => {
  test("runs and messages spend the heavy budget (and the general one); other requests go on", async () => {
    const client = await newKey();
    const session = (await client.post("/v1/sessions", { user_id: "heavy" })).body.id; // general: 4 left
    const run = await client.post("/v1/runs", { user_id: "heavy", input: "one" }); // heavy 1 left, general 3
    expect(run.status).toBe(202);
    expect(limitsOf(run.headers)).toMatchObject({ limit: "2", remaining: "1", x_limit: "2", x_remaining: "1" });
    const message = await client.post(`/v1/sessions/${session}/messages`, { content: "two" }); // heavy 0, general 2
    expect(message.status).toBe(202);
    expect(limitsOf(message.headers)).toMatchObject({ limit: "2", remaining: "0" });
    const third = await client.post("/v1/runs", { user_id: "heavy", input: "three" });
    expect(third.status).toBe(429);
    expect(third.body.error).toMatchObject({ code: "rate_limit_exceeded", details: { budget: "heavy", limit: 2 } });
    expect(Number(third.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(third.headers.get("ratelimit-limit")).toBe("2");
    // Not a heavy call: the general budget still has 2 (the refused run charged nothing).
    const read = await client.get(`/v1/sessions/${session}`);
    expect(read.status).toBe(200);
    expect(limitsOf(read.headers)).toMatchObject({ limit: "5", remaining: "1" });
  });

  test("which calls are heavy", () => {
    expect(isHeavyCall("POST", "/v1/runs")).toBe(true);
    expect(isHeavyCall("POST", "/v1/runs/")).toBe(true);
    expect(isHeavyCall("POST", "/v1/sessions/sess_1/messages")).toBe(true);
    expect(isHeavyCall("POST", "/v1/sessions/sess_1/messages/")).toBe(true);
    expect(isHeavyCall("GET", "/v1/sessions/sess_1/messages")).toBe(false);
    expect(isHeavyCall("GET", "/v1/runs/run_1")).toBe(false);
    expect(isHeavyCall("POST", "/v1/sessions")).toBe(false);
    expect(isHeavyCall("POST", "/v1/sessions//messages")).toBe(false);
    expect(isHeavyCall("POST", "/v1/sessions/a/b/messages")).toBe(false);
    expect(isHeavyCall("POST", "/v1/jobs/job_1/approve")).toBe(false);
    expect(isHeavyCall("DELETE", "/v1/users/u1")).toBe(true);
    expect(isHeavyCall("DELETE", "/v1/users/u1/credentials/openai")).toBe(false);
    // Every compat surface's call that starts a turn or a run spends the same budget as /v1's.
    for (const path of [
      "/compat/openai/v1/responses", "/compat/magus/api/v1/messages", "/compat/mosoo/api/v1/agents/a1/threads",
      "/compat/mosoo/api/v1/threads/t1/events", "/compat/muxi/chat/support", "/compat/muxi/api/v1/chat/support", "/compat/mushu/runs",
      "/compat/mushu/conversations/c1/messages", "/compat/muapi/api/v1/creative-agent/sessions/s1/chat",
      "/compat/muapi/api/v1/creative-agent/sessions/s1/run-skill",
    ]) expect(isHeavyCall("POST", path)).toBe(true);
    expect(isHeavyCall("GET", "/compat/muxi/chat/support")).toBe(false);
    expect(isHeavyCall("POST", "/compat/mushu/conversations")).toBe(false);
    expect(isHeavyCall("POST", "/compat/muapi/api/v1/creative-agent/sessions")).toBe(false);
  });
});

describe("per-app limits on the management plane", () => {
  test("an app's limits change what its keys and users get; {} reverts to the server's defaults", async () => {
    const appId = await newApp();
    const initial = await admin.get(`/v1/apps/${appId}/rate_limits`);
    expect(initial.status).toBe(200);
    expect(initial.body).toEqual({
      object: "rate_limits", app_id: appId,
      per_key: { requests_per_minute: 5, heavy_per_minute: 2 }, per_end_user: { requests_per_minute: 5, heavy_per_minute: 2 },
      configured: { per_key: { requests_per_minute: null, heavy_per_minute: null }, per_end_user: { requests_per_minute: null, heavy_per_minute: null } },
      defaults: { requests_per_minute: 5, heavy_per_minute: 2 },
    });
    const set = await admin.put(`/v1/apps/${appId}/rate_limits`, { per_key: { requests_per_minute: 3 }, per_end_user: { requests_per_minute: 7, heavy_per_minute: 1 } });
    expect(set.status).toBe(200);
    expect(set.body).toMatchObject({
      per_key: { requests_per_minute: 3, heavy_per_minute: 2 }, per_end_user: { requests_per_minute: 7, heavy_per_minute: 1 },
      configured: { per_key: { requests_per_minute: 3, heavy_per_minute: null }, per_end_user: { requests_per_minute: 7, heavy_per_minute: 1 } },
    });
    expect((await admin.get(`/v1/apps/${appId}/rate_limits`)).body).toEqual(set.body);
    // On record: an event on the app's stream, naming who set it.
    const recorded = [];
    for await (const e of server.ctx.store.readStream(appStream(appId))) if (e.type === "RateLimitsSet") recorded.push(e);
    expect(recorded.map((e) => e.data)).toEqual([{
      app_id: appId, per_key: { requests_per_minute: 3, heavy_per_minute: null }, per_end_user: { requests_per_minute: 7, heavy_per_minute: 1 },
    }]);
    expect(recorded[0]!.metadata).toMatchObject({ actor: "root:root" });
    const key = await newKey(appId);
    expect((await Promise.all([1, 2, 3, 4].map(() => key.get("/v1/sessions")))).map((r) => r.status).sort()).toEqual([200, 200, 200, 429]);
    const user = await newKey(appId, { user_id: "erin" });
    expect((await user.get("/v1/sessions")).headers.get("ratelimit-limit")).toBe("7");
    // Another app keeps the server's defaults.
    expect((await (await newKey()).get("/v1/sessions")).headers.get("ratelimit-limit")).toBe("5");

    // 0: unlimited (no headers: there is no limit to report).
    await admin.put(`/v1/apps/${appId}/rate_limits`, { per_key: { requests_per_minute: 0, heavy_per_minute: 0 } });
    const unlimited = await key.get("/v1/sessions");
    expect(unlimited.status).toBe(200);
    expect(unlimited.headers.get("ratelimit-limit")).toBeNull();
    // {}: the server's defaults again (and this key's spent budget is still spent).
    const reverted = await admin.put(`/v1/apps/${appId}/rate_limits`, {});
    expect(reverted.body.per_key).toEqual({ requests_per_minute: 5, heavy_per_minute: 2 });
    expect(reverted.body.configured.per_key).toEqual({ requests_per_minute: null, heavy_per_minute: null });
    expect((await key.get("/v1/sessions")).headers.get("ratelimit-limit")).toBe("5");
  });

  test("bad bodies get 400 invalid_request, never a 500; nothing is changed", async () => {
    const appId = await newApp();
    const bodies: unknown[] = [
      { per_key: { requests_per_minute: -1 } }, { per_key: { requests_per_minute: 1.5 } }, { per_key: { requests_per_minute: "60" } },
      { per_key: { requests_per_minute: 1_000_001 } }, { per_key: { heavy_per_minute: true } }, { per_key: { requests_per_min: 5 } },
      { per_user: {} }, { per_key: null }, { per_key: [] }, [], null, 5, "limits",
    ];
    const sent = [...bodies.map((b) => JSON.stringify(b)), '{"per_key":{"requests_per_minute":1e400}}', '{"per_key":{"requests_per_minute":1e2}}x'];
    for (const body of sent) {
      const r = await admin.put(`/v1/apps/${appId}/rate_limits`, body);
      expect({ body, status: r.status, code: r.body.error?.code }).toEqual({ body, status: 400, code: body.endsWith("x") ? "invalid_json" : "invalid_request" });
    }
    const notJson = await admin.put(`/v1/apps/${appId}/rate_limits`, "{per_key:");
    expect([notJson.status, notJson.body.error.code]).toEqual([400, "invalid_json"]);
    const empty = await fetch(`${server.url}/v1/apps/${appId}/rate_limits`, { method: "PUT", headers: { authorization: `Bearer ${ROOT}` } });
    expect(empty.status).toBe(400);
    expect((await admin.get(`/v1/apps/${appId}/rate_limits`)).body.configured.per_key).toEqual({ requests_per_minute: null, heavy_per_minute: null });
    // An app that does not exist, and a data key on the management plane.
    expect((await admin.put("/v1/apps/app_nope/rate_limits", {})).status).toBe(404);
    expect((await admin.get("/v1/apps/app_nope/rate_limits")).body.error.code).toBe("app_not_found");
    const key = await newKey(appId);
    const asKey = await fetch(`${server.url}/v1/apps/${appId}/rate_limits`, { method: "PUT", headers: { "x-api-key": key.key, "content-type": "application/json" }, body: "{}" });
    expect(asKey.status).toBe(401);
  });

  test("members read an app's limits; admins change them; neither touches another app's", async () => {
    const appId = await newApp();
    const other = await newApp();
    const token = (role: string, apps: string[]) => new SignJWT({ role, apps }).setProtectedHeader({ alg: "HS256" }).setSubject("ops@example.com")
      .setIssuedAt().setExpirationTime("5m").sign(new TextEncoder().encode(JWT_SECRET));
    const as = async (role: string, method: string, id = appId) => {
      const res = await fetch(`${server.url}/v1/apps/${id}/rate_limits`, {
        method, headers: { authorization: `Bearer ${await token(role, [appId])}`, "content-type": "application/json" },
        ...(method === "PUT" ? { body: JSON.stringify({ per_key: { requests_per_minute: 9 } }) } : {}),
      });
      return { status: res.status, code: ((await res.json()) as any).error?.code ?? null };
    };
    expect(await as("member", "GET")).toEqual({ status: 200, code: null });
    expect(await as("member", "PUT")).toEqual({ status: 403, code: "permission_denied" });
    expect(await as("admin", "PUT")).toEqual({ status: 200, code: null });
    expect(await as("admin", "GET", other)).toEqual({ status: 403, code: "permission_denied" });
    expect(await as("admin", "PUT", other)).toEqual({ status: 403, code: "permission_denied" });
    expect((await admin.get(`/v1/apps/${other}/rate_limits`)).body.configured.per_key.requests_per_minute).toBeNull();
    expect((await admin.get(`/v1/apps/${appId}/rate_limits`)).body.configured.per_key.requests_per_minute).toBe(9);
  });

  test("the route is in the OpenAPI document with its model", async () => {
    const doc = await (await fetch(`${server.url}/docs/json`)).json() as any;
    const path = doc.paths["/v1/apps/{app_id}/rate_limits"];
    expect(Object.keys(path).sort()).toEqual(["get", "put"]);
    expect(path.put.tags).toEqual(["Apps"]);
    expect(path.put.security).toEqual([{ managementToken: [] }]);
    expect(JSON.stringify(path.get.responses)).toContain("RateLimits");
    expect(doc.components.schemas.RateLimits).toBeDefined();
  });
});

describe("the server's defaults", () => {
  test("60 requests and 10 heavy calls a minute, per key and per end user", async () => {
    expect(loadConfig({}).rateLimits).toMatchObject({ perMinute: 60, heavyPerMinute: 10 });
    const dataDir = mkdtempSync(join(tmpdir(), "agentry-rl-defaults-"));
    const key = "rate-limit-defaults-key-0123456789";
    const running = await startServer(loadConfig({ PORT: "0", DATA_DIR: dataDir, API_KEY: key, SQLITE_SYNCHRONOUS: "normal", SANDBOX_CHUNK_DELAY_MS: "0" }), silentLogger);
    try {
      const client = api(running.url, key);
      const read = await client.get("/v1/sessions");
      expect(limitsOf(read.headers)).toMatchObject({ limit: "60", remaining: "59", x_limit: "60", x_remaining: "59" });
      const run = await client.post("/v1/runs", { user_id: "defaults", input: "hi" });
      expect(limitsOf(run.headers)).toMatchObject({ limit: "10", remaining: "9" });
    } finally {
      await running.shutdown("test");
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test("the limits are checked: negative or huge values stop the server with a message naming them", () => {
    for (const [name, value] of [["RATE_LIMIT_PER_MINUTE", "-1"], ["RATE_LIMIT_HEAVY_PER_MINUTE", "ten"], ["RATE_LIMIT_PER_MINUTE", "10000000"], ["RATE_LIMIT_REDIS_TIMEOUT_MS", "0"]]) {
      expect(() => loadConfig({ [name!]: value })).toThrow(name);
    }
    expect(loadConfig({ RATE_LIMIT_PER_MINUTE: "0", RATE_LIMIT_HEAVY_PER_MINUTE: "0" }).rateLimits).toMatchObject({ perMinute: 0, heavyPerMinute: 0 });
  });
});
