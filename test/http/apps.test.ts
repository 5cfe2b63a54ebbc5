/**
 * The management plane end to end: the operator's root token creates an app and issues its keys; the
 * keys work on the data plane for that app only; rotation, revocation, suspension and deletion take
 * effect at once; management JWTs act within their role and apps. Data keys and management tokens
 * are not interchangeable.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { SignJWT } from "jose";
import { api, TEST_KEY, type Api } from "../support/api.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const ROOT = "agr_test_root_token_0123456789abcdefghij";
const JWT_SECRET = "management-jwt-secret-0123456789-abcdefgh";
let server: TestServer;
let root: Api;
let data: Api;

beforeAll(async () => {
  server = await startTestServer({ API_KEY: TEST_KEY, ADMIN_TOKEN: ROOT, MANAGEMENT_JWT_SECRET: JWT_SECRET, SANDBOX_CHUNK_DELAY_MS: "0" });
  root = api(server.url, "");
  data = api(server.url);
});
afterAll(async () => {
  await server?.stop();
});

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const as = (token: string) => ({
  get: (path: string) => root.get(path, bearer(token)),
  post: (path: string, body: unknown = {}) => root.post(path, body, bearer(token)),
  patch: (path: string, body: unknown) => root.patch(path, body, bearer(token)),
  del: (path: string) => root.del(path, bearer(token)),
});
const admin = as(ROOT);
const withKey = (key: string) => api(server.url, key);
const jwt = (claims: Record<string, unknown>, expiresIn = "5m") =>
  new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).setSubject(String(claims.sub ?? "person@example.com")).setIssuedAt().setExpirationTime(expiresIn)
    .sign(new TextEncoder().encode(JWT_SECRET));

describe("the two planes take their own credentials", () => {
  test("a data key cannot manage apps, and the root token is not a data key", async () => {
    const withDataKey = await data.get("/v1/apps");
    expect(withDataKey.status).toBe(401);
    expect(withDataKey.body.error.code).toBe("invalid_token");
    const rootOnData = await withKey(ROOT).get("/v1/sessions");
    expect(rootOnData.status).toBe(401);
    expect(rootOnData.body.error.code).toBe("invalid_api_key");
  });
});

describe("apps and keys", () => {
  test("create an app, issue a key shown once, use it for that app's data only", async () => {
    const app = await admin.post("/v1/apps", { name: "Acme" });
    expect(app.status).toBe(201);
    expect(app.body).toMatchObject({ object: "app", name: "Acme", status: "active", key_count: 0 });
    const issued = await admin.post(`/v1/apps/${app.body.id}/keys`, { name: "backend", scopes: ["data:write", "agents:manage"] });
    expect(issued.status).toBe(201);
    expect(issued.body.key).toMatch(/^agk_live_/);
    expect(issued.body).toMatchObject({ name: "backend", mode: "live", scopes: ["data:write", "agents:manage"], revoked: false });
    const acme = withKey(issued.body.key);
    const agent = await acme.post("/v1/agents", { name: "acme agent", approval: "never" });
    expect(agent.status).toBe(201);
    const session = await acme.post("/v1/sessions", { user_id: "u", agent_id: agent.body.id });
    expect(session.status).toBe(201);
    expect((await data.get(`/v1/sessions/${session.body.id}`)).status).toBe(404); // the default app's key
    // Listed without the key itself, with when it was last used.
    const keys = await admin.get(`/v1/apps/${app.body.id}/keys`);
    expect(Date.parse(keys.body.data[0].last_used_at)).toBeGreaterThan(Date.now() - 60_000);
    expect(keys.body.data.map((k: any) => k.prefix)).toEqual([issued.body.prefix]);
    expect(JSON.stringify(keys.body)).not.toContain(issued.body.key);
    expect(issued.body.key.startsWith(issued.body.prefix)).toBe(true);
  });

  test("a test key is marked test; rotation keeps the old key for its grace only; revocation is immediate", async () => {
    const app = (await admin.post("/v1/apps", { name: "Rotating" })).body;
    const testKey = await admin.post(`/v1/apps/${app.id}/keys`, { name: "sandbox", mode: "test" });
    expect(testKey.body.key).toMatch(/^agk_test_/);
    const first = (await admin.post(`/v1/apps/${app.id}/keys`, { name: "ci" })).body;
    expect((await withKey(first.key).get("/v1/sessions")).status).toBe(200);
    const rotated = await admin.post(`/v1/apps/${app.id}/keys/${first.id}/rotate`, { grace_s: 0 });
    expect(rotated.status).toBe(201);
    expect(rotated.body.key).not.toBe(first.key);
    expect((await withKey(first.key).get("/v1/sessions")).status).toBe(401);
    expect((await withKey(rotated.body.key).get("/v1/sessions")).status).toBe(200);
    const graceful = await admin.post(`/v1/apps/${app.id}/keys/${rotated.body.id}/rotate`, { grace_s: 3600 });
    expect((await withKey(rotated.body.key).get("/v1/sessions")).status).toBe(200); // within its grace
    expect((await withKey(graceful.body.key).get("/v1/sessions")).status).toBe(200);
    // A rotation keeps the key's end; an expired key is not brought back by rotating it.
    const ending = (await admin.post(`/v1/apps/${app.id}/keys`, { name: "ending", expires_at: new Date(Date.now() + 86_400_000).toISOString() })).body;
    expect((await admin.post(`/v1/apps/${app.id}/keys/${ending.id}/rotate`, {})).body.expires_at).toBe(ending.expires_at);
    const revoked = await admin.post(`/v1/apps/${app.id}/keys/${graceful.body.id}/revoke`);
    expect(revoked.body.revoked).toBe(true);
    const refused = await withKey(graceful.body.key).get("/v1/sessions");
    expect({ status: refused.status, code: refused.body.error.code }).toEqual({ status: 401, code: "invalid_api_key" });
  });

  test("a suspended app's keys are 403 app_suspended until it is resumed; a deleted app is gone with its keys", async () => {
    const app = (await admin.post("/v1/apps", { name: "Suspendable" })).body;
    const key = (await admin.post(`/v1/apps/${app.id}/keys`, { name: "k" })).body.key;
    expect((await admin.patch(`/v1/apps/${app.id}`, { status: "suspended", reason: "billing" })).body.status).toBe("suspended");
    const suspended = await withKey(key).get("/v1/sessions");
    expect({ status: suspended.status, code: suspended.body.error.code }).toEqual({ status: 403, code: "app_suspended" });
    expect((await admin.patch(`/v1/apps/${app.id}`, { status: "active" })).body.status).toBe("active");
    expect((await withKey(key).get("/v1/sessions")).status).toBe(200);
    expect((await admin.del(`/v1/apps/${app.id}`)).status).toBe(200);
    expect((await withKey(key).get("/v1/sessions")).status).toBe(401);
    expect((await admin.get(`/v1/apps/${app.id}`)).status).toBe(404);
  });

  test("bad input is a 400 naming the field; an unknown app or key is 404", async () => {
    const app = (await admin.post("/v1/apps", { name: "Strict" })).body;
    const noScopes = await admin.post(`/v1/apps/${app.id}/keys`, { name: "x", scopes: [] });
    expect(noScopes.status).toBe(400);
    const badScope = await admin.post(`/v1/apps/${app.id}/keys`, { name: "x", scopes: ["everything"] });
    expect(badScope.status).toBe(400);
    const badDate = await admin.post(`/v1/apps/${app.id}/keys`, { name: "x", expires_at: "tomorrow" });
    expect(badDate.status).toBe(400);
    const pastDate = await admin.post(`/v1/apps/${app.id}/keys`, { name: "x", expires_at: "2020-01-01T00:00:00Z" });
    expect(pastDate.status).toBe(400);
    for (const notADay of ["2099-02-30T00:00:00Z", "2099-01-01"]) {
      expect((await admin.post(`/v1/apps/${app.id}/keys`, { name: "x", expires_at: notADay })).status).toBe(400);
    }
    // A key acting as one user never manages the app's agents.
    const userAgents = await admin.post(`/v1/apps/${app.id}/keys`, { name: "x", user_id: "dave", scopes: ["data:write", "agents:manage"] });
    expect({ status: userAgents.status, param: userAgents.body.error.details.param }).toEqual({ status: 400, param: "scopes" });
    expect((await admin.post("/v1/apps/app_nope/keys", { name: "x" })).status).toBe(404);
    expect((await admin.post(`/v1/apps/${app.id}/keys/key_nope/revoke`)).status).toBe(404);
    expect((await admin.post("/v1/apps", {})).status).toBe(400);
  });
});

describe("test mode and default agents", () => {
  test("an app's test key and live key see separate data, each with its own default agent", async () => {
    const app = (await admin.post("/v1/apps", { name: "Two modes" })).body;
    const live = withKey((await admin.post(`/v1/apps/${app.id}/keys`, { name: "live" })).body.key);
    const test = withKey((await admin.post(`/v1/apps/${app.id}/keys`, { name: "test", mode: "test" })).body.key);
    // No agent named: each partition gets the app's default agent, created on first use.
    const liveSession = await live.post("/v1/sessions", { user_id: "u" });
    const testSession = await test.post("/v1/sessions", { user_id: "u" });
    expect([liveSession.status, testSession.status]).toEqual([201, 201]);
    expect(liveSession.body.agent_id).not.toBe(testSession.body.agent_id);
    expect((await live.post(`/v1/sessions/${liveSession.body.id}/messages`, { content: "hi", wait: true })).body.status).toBe("completed");
    expect((await test.post(`/v1/sessions/${testSession.body.id}/messages`, { content: "hi", wait: true })).body.status).toBe("completed");
    expect((await live.get("/v1/sessions")).body.data.map((x: any) => x.id)).toEqual([liveSession.body.id]);
    expect((await test.get("/v1/sessions")).body.data.map((x: any) => x.id)).toEqual([testSession.body.id]);
    expect((await test.get(`/v1/sessions/${liveSession.body.id}`)).status).toBe(404);
    expect((await live.get(`/v1/sessions/${testSession.body.id}`)).status).toBe(404);
    expect((await test.get(`/v1/agents/${liveSession.body.agent_id}`)).status).toBe(404);
    // Every request that names no agent relies on it: the app's default agent stays.
    const admins = withKey((await admin.post(`/v1/apps/${app.id}/keys`, { name: "agents", scopes: ["agents:manage"] })).body.key);
    const deleted = await admins.del(`/v1/agents/${liveSession.body.agent_id}`);
    expect({ status: deleted.status, code: deleted.body.error?.code }).toEqual({ status: 409, code: "default_agent" });
  });
});

describe("scopes and agent allow-lists", () => {
  test("a read-only key reads but cannot write; a data key cannot change agents: 403 insufficient_scope", async () => {
    const app = (await admin.post("/v1/apps", { name: "Scoped" })).body;
    const readOnly = withKey((await admin.post(`/v1/apps/${app.id}/keys`, { name: "ro", scopes: ["data:read"] })).body.key);
    const dataOnly = withKey((await admin.post(`/v1/apps/${app.id}/keys`, { name: "rw" })).body.key);
    expect((await readOnly.get("/v1/sessions")).status).toBe(200);
    const write = await readOnly.post("/v1/sessions", { user_id: "u" });
    expect({ status: write.status, code: write.body.error.code }).toEqual({ status: 403, code: "insufficient_scope" });
    expect((await dataOnly.get("/v1/agents")).status).toBe(200);
    const agentChange = await dataOnly.post("/v1/agents", { name: "nope" });
    expect({ status: agentChange.status, code: agentChange.body.error.code }).toEqual({ status: 403, code: "insufficient_scope" });
  });

  test("a key limited to some agents gets 403 agent_not_allowed for everything of any other agent", async () => {
    const app = (await admin.post("/v1/apps", { name: "Limited" })).body;
    const full = withKey((await admin.post(`/v1/apps/${app.id}/keys`, { name: "full", scopes: ["data:write", "agents:manage"] })).body.key);
    const mine = (await full.post("/v1/agents", { name: "mine", approval: "never" })).body.id;
    const other = (await full.post("/v1/agents", { name: "other", approval: "never" })).body.id;
    const otherSession = (await full.post("/v1/sessions", { user_id: "u", agent_id: other })).body.id;
    const otherTurn = (await full.post(`/v1/sessions/${otherSession}/messages`, { content: "hi", wait: true })).body.job_id;
    const limited = withKey((await admin.post(`/v1/apps/${app.id}/keys`, { name: "one agent", agent_ids: [mine] })).body.key);

    const own = await limited.post("/v1/sessions", { user_id: "u", agent_id: mine });
    expect(own.status).toBe(201);
    expect((await limited.post(`/v1/sessions/${own.body.id}/messages`, { content: "hi", wait: true })).body.status).toBe("completed");
    const refused = [
      await limited.post("/v1/sessions", { user_id: "u", agent_id: other }),
      await limited.post("/v1/runs", { user_id: "u", input: "x", agent_id: other }),
      await limited.get(`/v1/agents/${other}`),
      await limited.get(`/v1/sessions/${otherSession}`),
      await limited.post(`/v1/sessions/${otherSession}/messages`, { content: "x" }),
      await limited.get(`/v1/jobs/${otherTurn}`),
      await limited.get(`/v1/jobs/${otherTurn}/events?since=0`),
      await limited.get(`/v1/runs/${otherTurn}`),
    ];
    expect(refused.map((r) => `${r.status} ${r.body.error?.code}`)).toEqual(Array(refused.length).fill("403 agent_not_allowed"));
    expect((await limited.get("/v1/agents")).body.data.map((a: any) => a.id)).toEqual([mine]);
    expect((await limited.get("/v1/sessions")).body.data.map((x: any) => x.id)).toEqual([own.body.id]);
  });
});

describe("streams and revocation", () => {
  test("an SSE stream opened with a key ends when the key is revoked: nothing more reaches it", async () => {
    const app = (await admin.post("/v1/apps", { name: "Streaming" })).body;
    const watcher = (await admin.post(`/v1/apps/${app.id}/keys`, { name: "watcher" })).body;
    const writer = withKey((await admin.post(`/v1/apps/${app.id}/keys`, { name: "writer" })).body.key);
    const sid = (await writer.post("/v1/sessions", { user_id: "u" })).body.id;
    const res = await fetch(`${server.url}/v1/sessions/${sid}/stream`, { headers: { "x-api-key": watcher.key } });
    expect(res.status).toBe(200);
    const reading = res.text();
    await admin.post(`/v1/apps/${app.id}/keys/${watcher.id}/revoke`);
    await writer.post(`/v1/sessions/${sid}/assets`, { url: "https://example.com/after-revocation.png", kind: "image" });
    const text = await Promise.race([reading, Bun.sleep(10_000).then(() => "still open")]);
    expect(text).toContain("credentials_revoked");
    expect(text).not.toContain("after-revocation");
  });
});

describe("management JWTs act within their role and apps", () => {
  test("a member reads its app only; an admin manages keys of its apps; only owners create apps; expired tokens are 401", async () => {
    const mine = (await admin.post("/v1/apps", { name: "Mine" })).body;
    const other = (await admin.post("/v1/apps", { name: "Other" })).body;
    const member = as(await jwt({ role: "member", apps: [mine.id] }));
    expect((await member.get(`/v1/apps/${mine.id}`)).status).toBe(200);
    expect((await member.get(`/v1/apps/${other.id}`)).body.error.code).toBe("permission_denied");
    expect((await member.post(`/v1/apps/${mine.id}/keys`, { name: "x" })).status).toBe(403);
    expect((await member.get("/v1/apps")).body.data.map((a: any) => a.id)).toEqual([mine.id]);
    const adminJwt = as(await jwt({ role: "admin", apps: [mine.id] }));
    expect((await adminJwt.post(`/v1/apps/${mine.id}/keys`, { name: "by admin" })).status).toBe(201);
    expect((await adminJwt.post(`/v1/apps/${other.id}/keys`, { name: "x" })).status).toBe(403);
    expect((await adminJwt.post("/v1/apps", { name: "new" })).status).toBe(403);
    const expired = await as(await jwt({ role: "owner", apps: "*" }, "-1m")).get("/v1/apps");
    expect({ status: expired.status, code: expired.body.error.code }).toEqual({ status: 401, code: "invalid_token" });
    // Changes are on record as the person who made them.
    let actor: unknown;
    for await (const e of server.ctx.store.readStream(`app-${mine.id}`, { direction: "backwards", maxCount: 1 })) actor = e.metadata.actor;
    expect(actor).toBe("jwt:person@example.com");
  });
});
