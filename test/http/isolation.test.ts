/**
 * Two apps on one server: everything one app's key can reach by id, list or stream, the other app's
 * key cannot, and no answer to one carries the other's ids. (The full route-by-route matrix over the
 * OpenAPI document, with test keys, end-user tokens and scopes, comes with the rest of tenancy.)
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { newResourceId } from "../../src/core/ids.ts";
import { keyHash, keyPrefix, newApiKey } from "../../src/domain/app/keys.ts";
import { DEFAULT_APP_ID } from "../../src/domain/streams.ts";
import { api, TEST_KEY, type Api } from "../support/api.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

let server: TestServer;
let a: Api;
let b: Api;
const ids = { a: {} as Record<string, string>, b: {} as Record<string, string> };

beforeAll(async () => {
  server = await startTestServer({ API_KEY: TEST_KEY, SANDBOX_CHUNK_DELAY_MS: "0" });
  a = api(server.url);
  const keyB = newApiKey("live");
  const meta = { appId: "app_ops" };
  await server.ctx.repos.apps.handle("app_b", { type: "CreateApp", app_id: "app_b", name: "B" }, meta);
  await server.ctx.repos.apps.handle("app_b", { type: "IssueKey", key: {
    key_id: newResourceId("key"), name: "b", prefix: keyPrefix(keyB), hash: keyHash(keyB), mode: "live",
    scopes: ["data:read", "data:write", "agents:manage"], agent_ids: null, user_id: null, expires_at: null,
  } }, meta);
  b = api(server.url, keyB);
  for (let i = 0; i < 100 && (await b.get("/v1/sessions")).status !== 200; i++) await Bun.sleep(20);

  for (const [who, client] of [["a", a], ["b", b]] as const) {
    const agent = await client.post("/v1/agents", { name: `agent of ${who}`, system_prompt: `secret prompt of ${who}`, approval: "never" });
    expect(agent.status).toBe(201);
    const session = await client.post("/v1/sessions", { user_id: `user-${who}`, agent_id: agent.body.id, name: `session of ${who}` });
    expect(session.status).toBe(201);
    const turn = await client.post(`/v1/sessions/${session.body.id}/messages`, { content: `message of ${who}`, wait: true });
    expect(turn.body.status).toBe("completed");
    await client.post(`/v1/sessions/${session.body.id}/assets`, { url: `https://example.com/${who}.png`, kind: "image" });
    const run = await client.post("/v1/runs", { user_id: `user-${who}`, input: `run of ${who}`, agent_id: agent.body.id });
    expect(run.status).toBe(202);
    ids[who] = { agent: agent.body.id, session: session.body.id, job: turn.body.job_id, run: run.body.id };
  }
});
afterAll(async () => {
  await server?.stop();
});

const reads = (t: Record<string, string>) => [
  `/v1/agents/${t.agent}`, `/v1/sessions/${t.session}`, `/v1/sessions/${t.session}/messages`, `/v1/sessions/${t.session}/events?since=0`,
  `/v1/sessions/${t.session}/stream`, `/v1/sessions/${t.session}/jobs`, `/v1/sessions/${t.session}/assets`,
  `/v1/jobs/${t.job}`, `/v1/jobs/${t.job}/events?since=0`, `/v1/jobs/${t.job}/stream`, `/v1/runs/${t.run}`, `/v1/jobs/${t.run}`,
];
const writes = (t: Record<string, string>): Array<[method: "post" | "patch" | "del", path: string, body?: unknown]> => [
  ["post", `/v1/sessions/${t.session}/messages`, { content: "intrude" }], ["post", `/v1/sessions/${t.session}/assets`, { url: "https://example.com/x.png", kind: "image" }],
  ["patch", `/v1/sessions/${t.session}`, { name: "taken" }], ["del", `/v1/sessions/${t.session}`],
  ["patch", `/v1/agents/${t.agent}`, { name: "taken" }], ["del", `/v1/agents/${t.agent}`],
  ["post", `/v1/jobs/${t.job}/cancel`], ["post", `/v1/jobs/${t.job}/approve`], ["post", `/v1/jobs/${t.job}/reject`],
  ["post", "/v1/sessions", { user_id: "x", agent_id: t.agent }], ["post", "/v1/runs", { user_id: "x", input: "x", agent_id: t.agent }],
];

test("each app's resources are absent to the other: reads and writes by id answer 404, and no answer carries the other's ids", async () => {
  let calls = 0;
  const leaks: string[] = [];
  for (const [caller, victim] of [[b, "a"], [a, "b"]] as const) {
    const theirs = Object.values(ids[victim]);
    for (const path of reads(ids[victim])) {
      const r = await caller.get(path);
      calls++;
      expect({ path, status: r.status }).toEqual({ path, status: 404 });
      if (theirs.some((id) => JSON.stringify(r.body).includes(id) && !path.includes(id))) leaks.push(path);
    }
    for (const [method, path, body] of writes(ids[victim])) {
      const r = method === "del" ? await caller.del(path) : await caller[method](path, body ?? {});
      calls++;
      expect({ method, path, status: r.status }).toEqual({ method, path, status: 404 });
    }
    for (const list of ["/v1/sessions?limit=200", "/v1/agents?limit=200", `/v1/sessions?user_id=user-${victim}`]) {
      const r = await caller.get(list);
      calls++;
      expect(r.status).toBe(200);
      for (const id of theirs) if (JSON.stringify(r.body).includes(id)) leaks.push(`${list} shows ${id}`);
    }
  }
  expect(leaks).toEqual([]);
  expect(calls).toBeGreaterThan(50);
  // Nothing of a's was changed by b's attempts.
  expect((await a.get(`/v1/sessions/${ids.a.session}`)).body.name).toBe("session of a");
  expect((await a.get(`/v1/agents/${ids.a.agent}`)).status).toBe(200);
});

test("what each app writes is recorded as that app's, in every event, with the key that asked", async () => {
  for (const [who, app] of [["a", DEFAULT_APP_ID], ["b", "app_b"]] as const) {
    for (const stream of [`session-${ids[who].session}`, `job-${ids[who].job}`, `agent-${ids[who].agent}`, `job-${ids[who].run}`]) {
      for await (const e of server.ctx.store.readStream(stream)) expect({ stream, app: e.metadata.app_id }).toEqual({ stream, app });
    }
    // The request that started each resource is on record as the key that sent it.
    for (const stream of [`session-${ids[who].session}`, `agent-${ids[who].agent}`]) {
      for await (const e of server.ctx.store.readStream(stream, { maxCount: 1 })) expect(String(e.metadata.actor)).toMatch(/^key:key_/);
    }
  }
});

test("a job the reconciler rebuilds after a crash belongs to its session's app, not the server's", async () => {
  const { reconcile } = await import("../../src/jobs/reconciler.ts");
  // app b's message was stored but its job never was (the crash window).
  const jobId = newResourceId("job");
  await server.ctx.repos.sessions.handle(ids.b.session!, {
    type: "SendMessage", message_id: newResourceId("msg"), job_id: jobId, content: "b's crashed message", attachments: [], model: null, context: null, multitask: "enqueue",
  }, { appId: "app_b" });
  await server.ctx.projections.waitUntilCaughtUp();
  await reconcile(server.ctx);
  let app: unknown;
  for await (const e of server.ctx.store.readStream(`job-${jobId}`, { maxCount: 1 })) app = e.metadata.app_id;
  expect(app).toBe("app_b");
  expect((await a.get(`/v1/jobs/${jobId}`)).status).toBe(404);
});

