/**
 * The management-plane reads the console is built on: jobs by status and the queue (/v1/admin), and
 * the auditors' session search (/v1/apps/{app_id}/audit/sessions, and /v1/audit/sessions with an
 * audit:read key). Real HTTP against a real server; JWTs signed with the configured secret.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { SignJWT } from "jose";
import { api, TEST_KEY, type Api } from "../support/api.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const ROOT = "agr_admin_runtime_root_token_0123456789";
const SECRET = "a-management-jwt-secret-of-32-bytes-or-more";
let server: TestServer;
let root: Api;
let sessionA: string;
let sessionB: string;
let deleted: string;
let testSession: string;
let otherAppSession: string;
let auditorKey: string;

const jwt = (claims: Record<string, unknown>) =>
  new SignJWT({ sub: "ops", ...claims }).setProtectedHeader({ alg: "HS256" }).setIssuedAt().setExpirationTime("10m").sign(new TextEncoder().encode(SECRET));
const as = (token: string) => ({ authorization: `Bearer ${token}` });

beforeAll(async () => {
  server = await startTestServer({ API_KEY: TEST_KEY, ADMIN_TOKEN: ROOT, MANAGEMENT_JWT_SECRET: SECRET, SANDBOX_CHUNK_DELAY_MS: "0" });
  const client = api(server.url);
  root = api(server.url, "");
  const rootPost = (path: string, body: unknown) => root.post(path, body, as(ROOT));

  sessionA = (await client.post("/v1/sessions", { user_id: "alice", external_ref: "crm-1" })).body.id;
  sessionB = (await client.post("/v1/sessions", { user_id: "alice", external_ref: "crm-2" })).body.id;
  deleted = (await client.post("/v1/sessions", { user_id: "bob", external_ref: "crm-1" })).body.id;
  const ok = await client.post(`/v1/sessions/${sessionA}/messages`, { content: "hello", wait: true });
  const failed = await client.post(`/v1/sessions/${sessionB}/messages`, { content: "[fail] please", wait: true });
  expect([ok.body.status, failed.body.status]).toEqual(["completed", "failed"]);
  expect((await client.del(`/v1/sessions/${deleted}`)).status).toBe(200);

  const testKey = (await rootPost("/v1/apps/app_default/keys", { name: "test", mode: "test" })).body.key;
  testSession = (await api(server.url, testKey).post("/v1/sessions", { user_id: "alice", external_ref: "crm-1" })).body.id;
  auditorKey = (await rootPost("/v1/apps/app_default/keys", { name: "auditor", scopes: ["audit:read"] })).body.key;

  const other = (await rootPost("/v1/apps", { name: "Other" })).body.id;
  const otherKey = (await rootPost(`/v1/apps/${other}/keys`, { name: "k" })).body.key;
  otherAppSession = (await api(server.url, otherKey).post("/v1/sessions", { user_id: "alice", external_ref: "crm-1" })).body.id;
  await server.ctx.projections.waitUntilCaughtUp();
}, 60_000);
afterAll(async () => {
  await server?.stop();
});

describe("jobs by status and the queue (/v1/admin)", () => {
  test("counts per status over every app, zero for the statuses no job is in", async () => {
    const r = await root.get("/v1/admin/jobs/counts", as(ROOT));
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      object: "job_status_counts", total: 2,
      counts: { pending: 0, processing: 0, awaiting_approval: 0, completed: 1, failed: 1, cancelled: 0 },
    });
  });

  test("the jobs of one status, newest first, paged", async () => {
    const failed = await root.get("/v1/admin/jobs?status=failed", as(ROOT));
    expect(failed.status).toBe(200);
    expect(failed.body.data).toHaveLength(1);
    expect(failed.body.data[0]).toMatchObject({ object: "job", app_id: "app_default", session_id: sessionB, status: "failed", error: { code: "provider_unavailable" } });

    const first = await root.get("/v1/admin/jobs?limit=1", as(ROOT));
    expect(first.body).toMatchObject({ has_more: true, data: [{ session_id: sessionB }] });
    const second = await root.get(`/v1/admin/jobs?limit=1&cursor=${first.body.next_cursor}`, as(ROOT));
    expect(second.body).toMatchObject({ has_more: false, next_cursor: null, data: [{ session_id: sessionA, status: "completed" }] });
    expect((await root.get("/v1/admin/jobs?app_id=app_default.test", as(ROOT))).body.data).toEqual([]);
  });

  test("the queue: its kind, depth and unfinished jobs", async () => {
    const r = await root.get("/v1/admin/queue", as(ROOT));
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ object: "queue", kind: "in-process", depth: 0, unfinished: { pending: 0, processing: 0, awaiting_approval: 0 } });
  });

  test("bad input is a 400 in the envelope, naming the parameter", async () => {
    for (const [query, param, code] of [
      ["status=done", "status", "invalid_request"], ["limit=0", "limit", "invalid_request"], ["limit=1e2", "limit", "invalid_request"],
      ["cursor=nope", "cursor", "invalid_cursor"], ["colour=red", "colour", "invalid_request"], ["app_id=a%2Fb", "app_id", "invalid_request"],
    ] as const) {
      const r = await root.get(`/v1/admin/jobs?${query}`, as(ROOT));
      expect({ query, status: r.status, code: r.body.error?.code }).toEqual({ query, status: 400, code });
      expect(JSON.stringify(r.body.error.details)).toContain(param);
    }
  });

  test("only a management principal covering every app reads them; a data key is no credential here", async () => {
    const everyApp = await jwt({ role: "member", apps: "*" });
    const oneApp = await jwt({ role: "admin", apps: ["app_default"] });
    for (const path of ["/v1/admin/jobs/counts", "/v1/admin/jobs", "/v1/admin/queue"]) {
      expect((await root.get(path, as(everyApp))).status).toBe(200);
      const refused = await root.get(path, as(oneApp));
      expect([refused.status, refused.body.error.code]).toEqual([403, "permission_denied"]);
      expect((await api(server.url).get(path)).status).toBe(401);
      expect((await root.get(path)).status).toBe(401);
    }
  });
});

describe("finding a session to audit", () => {
  const search = (query: string, headers = as(ROOT)) => root.get(`/v1/apps/app_default/audit/sessions?${query}`, headers);
  const ids = (r: { body: any }) => r.body.data.map((s: any) => s.id);

  test("by user, by external ref, by id: the app's sessions, deleted ones included and marked", async () => {
    expect(ids(await search("user_id=alice"))).toEqual([sessionB, sessionA]);
    const byRef = await search("external_ref=crm-1");
    expect(ids(byRef)).toEqual([deleted, sessionA]);
    expect(byRef.body.data.map((s: any) => s.deleted)).toEqual([true, false]);
    expect((await search(`session_id=${sessionA}`)).body.data).toEqual([expect.objectContaining({ id: sessionA, user_id: "alice", external_ref: "crm-1", deleted: false, message_count: 2 })]);
    // Filters combine; another app's session with the same user and ref is never there.
    expect(ids(await search("user_id=alice&external_ref=crm-1"))).toEqual([sessionA]);
    expect(ids(await search(`session_id=${otherAppSession}`))).toEqual([]);
  });

  test("test data with mode=test; pages in a stable order", async () => {
    expect(ids(await search("external_ref=crm-1&mode=test"))).toEqual([testSession]);
    const first = await search("limit=2");
    expect(first.body).toMatchObject({ object: "list", has_more: true });
    const second = await search(`limit=2&cursor=${first.body.next_cursor}`);
    expect([...ids(first), ...ids(second)]).toEqual([deleted, sessionB, sessionA]);
    expect(second.body.has_more).toBe(false);
  });

  test("an audit:read key searches its own app on /v1/audit/sessions; other keys may not", async () => {
    const auditor = api(server.url, auditorKey);
    expect(ids(await auditor.get("/v1/audit/sessions?user_id=alice"))).toEqual([sessionB, sessionA]);
    const plain = await api(server.url).get("/v1/audit/sessions?user_id=alice");
    expect([plain.status, plain.body.error.code]).toEqual([403, "insufficient_scope"]);
  });

  test("bad input and unknown apps are 4xx in the envelope; a JWT for another app is refused", async () => {
    for (const query of ["session_id=a/b", "limit=500", "cursor=xyz", "mode=prod", "user_id=", "q=alice"]) {
      const r = await search(query);
      expect({ query, status: r.status }).toEqual({ query, status: 400 });
      expect(r.body.error.code).toMatch(/^invalid_(request|cursor)$/);
    }
    const unknown = await root.get("/v1/apps/app_nope/audit/sessions", as(ROOT));
    expect([unknown.status, unknown.body.error.code]).toEqual([404, "app_not_found"]);
    const elsewhere = await jwt({ role: "owner", apps: ["app_other"] });
    expect((await search("user_id=alice", as(elsewhere))).status).toBe(403);
    expect(ids(await search("user_id=alice", as(await jwt({ role: "member", apps: ["app_default"] }))))).toEqual([sessionB, sessionA]);
  });
});
