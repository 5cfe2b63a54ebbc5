/**
 * Credits and usage limits over the real server: steps priced by the app's price table, tools'
 * credits, credits_spent on jobs, runs and sessions, the usage report (JSON and CSV), test keys never
 * billed, and limits — 50 concurrent runs against a pool that fits exactly 20, a running job stopped
 * after the step that reached its limit, per-user pools, and the management routes' validation.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { api, type Api } from "../support/api.ts";
import { startOpenAiWireServer, type WireServer } from "../support/llmWireServers.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { startRun } from "../../src/app/turns.ts";
import { reserveJob } from "../../src/app/billing.ts";
import { createRepositories } from "../../src/app/context.ts";
import { newResourceId } from "../../src/core/ids.ts";
import { reconcile } from "../../src/jobs/reconciler.ts";

const ROOT = "agr_test_root_token_for_billing_000123";
const bearer = { authorization: `Bearer ${ROOT}` };
let server: TestServer;
let wire: WireServer;
let root: Api;

beforeAll(async () => {
  wire = startOpenAiWireServer();
  server = await startTestServer({ ADMIN_TOKEN: ROOT, TOOL_PRIVATE_ALLOWLIST: "127.0.0.1", SANDBOX_CHUNK_DELAY_MS: "0" });
  root = api(server.url, "");
});
afterAll(async () => {
  await server?.stop();
  wire?.stop();
});

/** Each wire-server reply uses 10 prompt and 5 completion tokens: at these prices a step costs 5 credits. */
const FIVE_PER_STEP = { "openai/wire-m": { input: 250_000, output: 500_000 } };

async function newApp(name: string) {
  const app = (await root.post("/v1/apps", { name }, bearer)).body;
  expect((await root.put(`/v1/apps/${app.id}/connections/wire`, { provider: "openai", base_url: wire.baseURL, api_key: "sk-wire-000", default_model: "wire-m" }, bearer)).status).toBe(200);
  const issue = async (body: Record<string, unknown>) => (await root.post(`/v1/apps/${app.id}/keys`, { name: "k", scopes: ["data:read", "data:write", "agents:manage"], ...body }, bearer)).body;
  const live = await issue({});
  const client = api(server.url, live.key);
  const agent = (await client.post("/v1/agents", { name: "on the wire", approval: "never", model: { connection: "wire" } })).body.id as string;
  return { id: app.id as string, client, agent, keyId: live.id as string, issue };
}

test("steps are priced by the app's table; credits_spent on jobs, runs and sessions; usage by day, user, agent and key, as JSON and CSV", async () => {
  const app = await newApp("Priced");
  const prices = await root.put(`/v1/apps/${app.id}/prices`, { models: { ...FIVE_PER_STEP, "*": { input: 1, output: 1 } } }, bearer);
  expect(prices.status).toBe(200);
  expect(prices.body).toMatchObject({ object: "price_table", app_id: app.id, models: { "openai/wire-m": { input: 250_000, output: 500_000 } } });
  expect((await root.get(`/v1/apps/${app.id}/prices`, bearer)).body.models).toEqual(prices.body.models);

  const run = await app.client.post("/v1/runs", { agent_id: app.agent, user_id: "u,=1", input: "price me" });
  expect(run.status).toBe(202);
  await app.client.waitForStatus(run.body.job_id, ["completed"]);
  const sid = (await app.client.post("/v1/sessions", { user_id: "u2", agent_id: app.agent })).body.id;
  // Two steps: a tool call (unknown here, so its error goes back to the model), then the answer.
  wire.script({ kind: "tools", calls: [{ id: "c1", name: "lookup", args: "{}" }], usage: { prompt: 10, completion: 5 } });
  const turn = await app.client.post(`/v1/sessions/${sid}/messages`, { content: "two steps", wait: true });
  expect(turn.body).toMatchObject({ status: "completed", credits_spent: 10 });

  expect((await app.client.get(`/v1/runs/${run.body.job_id}`)).body.credits_spent).toBe(5);
  expect((await app.client.get(`/v1/jobs/${turn.body.job_id}`)).body).toMatchObject({ credits_spent: 10, usage: { prompt_tokens: 20, completion_tokens: 10 } });
  await waitFor(async () => (await app.client.get(`/v1/sessions/${sid}`)).body.credits_spent === 10);

  const today = new Date().toISOString().slice(0, 10);
  const byUser = await waitForUsage(app.client, "/v1/usage?group_by=user", (b) => b.totals.credits === 15);
  expect(byUser.body).toMatchObject({ object: "usage", group_by: "user", to: today });
  expect(byUser.body.data).toEqual([
    { user_id: "u,=1", jobs: 1, model_calls: 1, tool_calls: 0, prompt_tokens: 10, completion_tokens: 5, cached_tokens: 0, reasoning_tokens: 0, credits: 5 },
    { user_id: "u2", jobs: 1, model_calls: 2, tool_calls: 1, prompt_tokens: 20, completion_tokens: 10, cached_tokens: 0, reasoning_tokens: 0, credits: 10 },
  ]);
  expect((await app.client.get("/v1/usage?group_by=day")).body.data).toEqual([expect.objectContaining({ day: today, jobs: 2, credits: 15 })]);
  expect((await app.client.get("/v1/usage?group_by=agent")).body.data).toEqual([expect.objectContaining({ agent_id: app.agent, credits: 15 })]);
  expect((await app.client.get("/v1/usage?group_by=key")).body.data).toEqual([expect.objectContaining({ key_id: app.keyId, jobs: 2 })]);
  // The management plane reads the same for the whole app.
  expect((await root.get(`/v1/apps/${app.id}/usage?group_by=user`, bearer)).body.data).toEqual(byUser.body.data);

  const res = await fetch(`${server.url}/v1/apps/${app.id}/usage?group_by=user&format=csv`, { headers: bearer });
  expect(res.headers.get("content-type")).toStartWith("text/csv");
  expect(res.headers.get("content-disposition")).toContain(`usage-`);
  // A user id with a comma is quoted; one a spreadsheet would run as a formula is defused.
  expect(await res.text()).toBe(
    "user_id,jobs,model_calls,tool_calls,prompt_tokens,completion_tokens,cached_tokens,reasoning_tokens,credits\r\n" +
    "\"u,=1\",1,1,0,10,5,0,0,5\r\nu2,1,2,1,20,10,0,0,10\r\n",
  );
  // Before any usage, and for days that had none: an empty report, not an error.
  expect((await app.client.get("/v1/usage?from=2020-01-01&to=2020-01-31")).body).toMatchObject({ data: [], totals: { jobs: 0, credits: 0 } });
});

test("an HTTP tool's estimated_credits are charged when it succeeds; test keys are never billed", async () => {
  const app = await newApp("Tools");
  await root.put(`/v1/apps/${app.id}/prices`, { models: { "*": { input: 1_000_000, output: 1_000_000 } } }, bearer);
  const tool = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => Response.json({ ok: true }) });
  try {
    const body = {
      name: "with a tool", approval: "never",
      tools: [{ type: "http", name: "paid", description: "costs", url: `http://127.0.0.1:${tool.port}/x`, parameters: { type: "object" }, estimated_credits: 3 }],
    };
    // On the server's sandbox provider, which the app's "*" price covers: one credit per token.
    const agent = (await app.client.post("/v1/agents", body)).body.id;
    const run = await app.client.post("/v1/runs", { agent_id: agent, user_id: "u", input: 'call paid {"q":1}' });
    await app.client.waitForStatus(run.body.job_id, ["completed"]);
    const job = (await app.client.get(`/v1/jobs/${run.body.job_id}`)).body;
    // 3 for the tool, plus one credit per token of the two model steps.
    expect(job.credits_spent).toBe(3 + job.usage.prompt_tokens + job.usage.completion_tokens);

    const testKey = await app.issue({ mode: "test" });
    const testClient = api(server.url, testKey.key);
    const testAgent = (await testClient.post("/v1/agents", body)).body.id;
    const testRun = await testClient.post("/v1/runs", { agent_id: testAgent, user_id: "u", input: 'call paid {"q":1}' });
    await testClient.waitForStatus(testRun.body.job_id, ["completed"]);
    const testJob = (await testClient.get(`/v1/jobs/${testRun.body.job_id}`)).body;
    expect(testJob.usage.prompt_tokens).toBeGreaterThan(0);
    expect(testJob.credits_spent).toBe(0);
    const testUsage = await waitForUsage(testClient, "/v1/usage", (b) => b.totals.jobs === 1);
    expect(testUsage.body.totals).toMatchObject({ jobs: 1, tool_calls: 1, credits: 0 });
    expect((await root.get(`/v1/apps/${app.id}/usage?mode=test`, bearer)).body.totals.credits).toBe(0);
  } finally {
    tool.stop(true);
  }
});

test("50 concurrent runs against a pool that fits exactly 20: exactly 20 run, the rest get 403 usage_limit_exceeded", async () => {
  const app = await newApp("Pooled");
  await root.put(`/v1/apps/${app.id}/prices`, { models: FIVE_PER_STEP }, bearer);
  const limits = await root.put(`/v1/apps/${app.id}/limits`, { app: { daily_credits: 100 }, reservation: { credits: 5 } }, bearer);
  expect(limits.status).toBe(200);
  expect(limits.body).toMatchObject({ object: "usage_limits", app: { daily_credits: 100, monthly_credits: null }, reservation: { credits: 5 } });

  // The model holds every request until all 50 were answered: no job can end (and free its
  // reservation) while the others are being decided.
  const release = wire.hold();
  let answers: Array<{ status: number; body: any }>;
  try {
    answers = await Promise.all(Array.from({ length: 50 }, (_, i) => app.client.post("/v1/runs", { agent_id: app.agent, user_id: `u${i}`, input: `run ${i}` })));
  } finally {
    release();
  }
  const accepted = answers.filter((a) => a.status === 202);
  const refused = answers.filter((a) => a.status === 403);
  expect({ accepted: accepted.length, refused: refused.length }).toEqual({ accepted: 20, refused: 30 });
  expect(refused[0]!.body.error).toMatchObject({ code: "usage_limit_exceeded", details: { scope: "app", period: "day", dimension: "credits", limit: 100 } });
  for (const a of accepted) await app.client.waitForStatus(a.body.job_id, ["completed"]);
  // Clients see each step's credits; which pools a job holds is the operator's business.
  const events = (await app.client.get(`/v1/jobs/${accepted[0]!.body.job_id}/events?since=0`)).body.events;
  expect(events.find((e: any) => e.type === "job.queued").payload.budgets).toBeUndefined();
  expect(events.find((e: any) => e.type === "usage").payload).toMatchObject({ prompt_tokens: 10, completion_tokens: 5, credits: 5 });

  // Refused requests stored nothing; the 20 spent the pool exactly, and it stays full once settled.
  const usage = await waitForUsage(app.client, "/v1/usage", (b) => b.totals.credits === 100);
  expect(usage.body.totals).toMatchObject({ jobs: 20, credits: 100 });
  await waitFor(async () => {
    const again = await app.client.post("/v1/runs", { agent_id: app.agent, user_id: "late", input: "one more" });
    return again.status === 403 && again.body.error.code === "usage_limit_exceeded";
  });
  const status = (await app.client.get("/v1/usage/limits")).body;
  expect(status).toMatchObject({ object: "list", user_id: null });
  expect(status.data).toEqual([{
    scope: "app", period: "day", resets_at: expect.stringMatching(/T00:00:00.000Z$/),
    credits: { limit: 100, spent: 100, held: 0, remaining: 0 }, tokens: null,
  }]);
  // Raising the limit makes room at once.
  await root.put(`/v1/apps/${app.id}/limits`, { app: { daily_credits: 105 }, reservation: { credits: 5 } }, bearer);
  const more = await app.client.post("/v1/runs", { agent_id: app.agent, user_id: "late", input: "one more" });
  expect(more.status).toBe(202);
  await app.client.waitForStatus(more.body.job_id, ["completed"]);
});

test("a running job that reaches a limit ends failed with usage_limit_exceeded after its current step", async () => {
  const app = await newApp("Stopped");
  await root.put(`/v1/apps/${app.id}/prices`, { models: FIVE_PER_STEP }, bearer);
  // Room for the first step (5) but not for another reservation of 4 on top of it.
  await root.put(`/v1/apps/${app.id}/limits`, { app: { daily_credits: 8 }, reservation: { credits: 4 } }, bearer);
  wire.script({ kind: "tools", calls: [{ id: "c1", name: "lookup", args: "{}" }], usage: { prompt: 10, completion: 5 } });
  const before = wire.requests.length;
  const run = await app.client.post("/v1/runs", { agent_id: app.agent, user_id: "u", input: "needs two steps" });
  expect(run.status).toBe(202);
  const job = await app.client.waitForStatus(run.body.job_id, ["failed", "completed"]);
  expect(job.status).toBe("failed");
  expect(job.error).toMatchObject({ code: "usage_limit_exceeded" });
  expect(wire.requests.length - before).toBe(1); // the second step never reached the model
  expect((await app.client.get(`/v1/jobs/${run.body.job_id}`)).body.credits_spent).toBe(5);
  // Once its spend is settled, 5 of 8 are used: a new job's reservation of 4 does not fit.
  const pool = `${app.id}:app:${new Date().toISOString().slice(0, 10)}`;
  await waitFor(async () => (await server.ctx.repos.budgets.load(pool)).state.spent.credits === 5);
  const over = await app.client.post("/v1/runs", { agent_id: app.agent, user_id: "u", input: "over" });
  expect(over.body.error).toMatchObject({ code: "usage_limit_exceeded", details: { used: 5, limit: 8 } });
});

test("each end user and each key has its own pool; session messages are limited like runs", async () => {
  const app = await newApp("Per user");
  await root.put(`/v1/apps/${app.id}/prices`, { models: FIVE_PER_STEP }, bearer);
  await root.put(`/v1/apps/${app.id}/limits`, { per_user: { daily_tokens: 15 }, per_key: { monthly_credits: 1000 }, reservation: { credits: 1, tokens: 15 } }, bearer);
  const ann = (await app.client.post("/v1/sessions", { user_id: "ann", agent_id: app.agent })).body.id;
  const first = await app.client.post(`/v1/sessions/${ann}/messages`, { content: "hi", wait: true });
  expect(first.body.status).toBe("completed");
  // Ann used her 15 tokens; her next message is refused and nothing of it is stored.
  const over = await waitForRefusal(() => app.client.post(`/v1/sessions/${ann}/messages`, { content: "again" }));
  expect(over.body.error.details).toMatchObject({ scope: "user", dimension: "tokens", limit: 15 });
  expect((await app.client.get(`/v1/sessions/${ann}`)).body).toMatchObject({ status: "idle", message_count: 2 });
  // Bob's pool is his own.
  const bob = (await app.client.post("/v1/sessions", { user_id: "bob", agent_id: app.agent })).body.id;
  expect((await app.client.post(`/v1/sessions/${bob}/messages`, { content: "hi", wait: true })).body.status).toBe("completed");
  // The key's monthly pool saw both users' jobs.
  // An end user's token reads that user's usage only; the backend may ask for any one user.
  const token = (await app.client.post("/v1/end-user-tokens", { user_id: "ann" })).body.token;
  const asAnn = { authorization: `Bearer ${token}` };
  const annClient = api(server.url, "");
  const annUsage = await waitForUsage(app.client, "/v1/usage?user_id=ann", (b) => b.totals.jobs === 1);
  expect((await annClient.get("/v1/usage?group_by=user", asAnn)).body).toMatchObject({ user_id: "ann", data: [{ user_id: "ann", jobs: 1 }], totals: annUsage.body.totals });
  expect((await annClient.get("/v1/usage?user_id=bob", asAnn)).body.error.code).toBe("permission_denied");
  expect((await app.client.get("/v1/usage?user_id=bob")).body).toMatchObject({ user_id: "bob", data: [{ jobs: 1 }] });
  const keyPool = `${app.id}:key:${app.keyId}:${new Date().toISOString().slice(0, 7)}`;
  await waitFor(async () => Object.keys((await server.ctx.repos.budgets.load(keyPool)).state.held).length === 0);
  expect((await server.ctx.repos.budgets.load(keyPool)).state.spent).toEqual({ credits: 10, tokens: 30 });
  // Where each stands: Ann's own pool is used up; the key's monthly pool has room.
  const pools = (await annClient.get("/v1/usage/limits", asAnn)).body;
  expect(pools.user_id).toBe("ann");
  expect(pools.data.map((p: any) => [p.scope, p.period, p.tokens?.remaining ?? null, p.credits?.remaining ?? null])).toEqual([
    ["user", "day", 0, null], ["key", "month", null, 990],
  ]);
  expect((await annClient.get("/v1/usage/limits?user_id=bob", asAnn)).status).toBe(403);
  // A test key draws from no pool.
  expect((await api(server.url, (await app.issue({ mode: "test" })).key).get("/v1/usage/limits")).body.data).toEqual([]);
});

test("a run retried after its job was written reserves nothing more (its pool is charged once)", async () => {
  const app = await newApp("Retried");
  await root.put(`/v1/apps/${app.id}/prices`, { models: FIVE_PER_STEP }, bearer);
  await root.put(`/v1/apps/${app.id}/limits`, { app: { daily_credits: 100 }, reservation: { credits: 5 } }, bearer);
  const ctx = { ...server.ctx, appId: app.id };
  const meta = { appId: app.id, actor: `key:${app.keyId}` };
  const input = { agent_id: app.agent, user_id: "u", input: "once", media_url: null, output_schema: null, model: null };
  const first = await startRun(ctx, input, meta, "run_retried_once");
  await app.client.waitForStatus(first.job_id, ["completed"]);
  const pool = `${app.id}:app:${new Date().toISOString().slice(0, 10)}`;
  await waitFor(async () => (await server.ctx.repos.budgets.load(pool)).state.spent.credits === 5);
  // The same request executed again (a crash before its outcome was recorded, then a retry).
  await startRun(ctx, input, meta, "run_retried_once");
  const state = (await server.ctx.repos.budgets.load(pool)).state;
  expect({ spent: state.spent.credits, held: Object.keys(state.held) }).toEqual({ spent: 5, held: [] });
});

test("a tool call is covered before it runs: one whose estimated credits do not fit ends the job, and never runs", async () => {
  const app = await newApp("Costly tool");
  await root.put(`/v1/apps/${app.id}/limits`, { app: { daily_credits: 10 }, reservation: { credits: 1 } }, bearer);
  let calls = 0;
  const tool = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => {
    calls++;
    return Response.json({ ok: true });
  } });
  try {
    const agent = (await app.client.post("/v1/agents", {
      name: "costly", approval: "never",
      tools: [{ type: "http", name: "render", description: "expensive", url: `http://127.0.0.1:${tool.port}/r`, parameters: { type: "object" }, estimated_credits: 1000 }],
    })).body.id;
    const run = await app.client.post("/v1/runs", { agent_id: agent, user_id: "u", input: 'call render {"q":1}' });
    expect(run.status).toBe(202);
    const job = await app.client.waitForStatus(run.body.job_id, ["failed", "completed"]);
    expect({ status: job.status, code: job.error?.code, calls }).toEqual({ status: "failed", code: "usage_limit_exceeded", calls: 0 });
    const pool = `${app.id}:app:${new Date().toISOString().slice(0, 10)}`;
    await waitFor(async () => Object.keys((await server.ctx.repos.budgets.load(pool)).state.held).length === 0);
    expect((await server.ctx.repos.budgets.load(pool)).state.spent.credits).toBe(0);
  } finally {
    tool.stop(true);
  }
});

test("processes racing for one pool never overspend it, and a lost race is decided again, not refused", async () => {
  const app = await newApp("Raced");
  await root.put(`/v1/apps/${app.id}/limits`, { app: { daily_credits: 100 }, reservation: { credits: 5 } }, bearer);
  // Sixteen repositories on one store stand for sixteen processes: each decides on what it read, and only the
  // expected revision keeps them from taking the same room.
  const processes = Array.from({ length: 16 }, () => ({ ...server.ctx, appId: app.id, repos: createRepositories(server.ctx.store) }));
  const meta = { appId: app.id, actor: `key:${app.keyId}`, now: Date.now() };
  const outcomes = await Promise.all(Array.from({ length: 50 }, (_, i) =>
    reserveJob(processes[i % 16]!, { appId: app.id, userId: `u${i}`, keyId: app.keyId }, `job_race_${i}`, meta).then(() => "reserved", (err) => err.code ?? err.name)));
  const counts = outcomes.reduce<Record<string, number>>((acc, o) => ({ ...acc, [o]: (acc[o] ?? 0) + 1 }), {});
  expect(counts).toEqual({ reserved: 20, usage_limit_exceeded: 30 });
  const state = (await server.ctx.repos.budgets.load(`${app.id}:app:${new Date().toISOString().slice(0, 10)}`)).state;
  expect(Object.keys(state.held).length).toBe(20);
});

test("a message whose job a crash kept from being written: the rebuilt job holds and settles the message's reservation", async () => {
  const app = await newApp("Crashed");
  await root.put(`/v1/apps/${app.id}/prices`, { models: FIVE_PER_STEP }, bearer);
  await root.put(`/v1/apps/${app.id}/limits`, { app: { daily_credits: 9 }, reservation: { credits: 5 } }, bearer);
  const sid = (await app.client.post("/v1/sessions", { user_id: "u", agent_id: app.agent })).body.id;
  const ctx = { ...server.ctx, appId: app.id };
  const meta = { appId: app.id, actor: `key:${app.keyId}` };
  const jobId = newResourceId("job");
  // What sendMessage does up to the crash: the reservation, then the message; never the job.
  await reserveJob(ctx, { appId: app.id, userId: "u", keyId: app.keyId }, jobId, meta);
  await server.ctx.repos.sessions.handle(sid, {
    type: "SendMessage", message_id: newResourceId("msg"), job_id: jobId, content: "crashed", attachments: [], model: null, context: null, multitask: "reject",
  }, meta);
  await server.ctx.projections.waitUntilCaughtUp();
  await reconcile(server.ctx);
  let budgets: unknown;
  for await (const e of server.ctx.store.readStream(`job-${jobId}`, { maxCount: 1 })) budgets = (e.data as any).budgets;
  const pool = `${app.id}:app:${new Date().toISOString().slice(0, 10)}`;
  expect(budgets).toEqual([pool]);
  await app.client.waitForStatus(jobId, ["completed"]);
  await waitFor(async () => (await server.ctx.repos.budgets.load(pool)).state.spent.credits === 5);
  expect(Object.keys((await server.ctx.repos.budgets.load(pool)).state.held)).toEqual([]);
});

test("a hold an ended job never settled is settled when its pool would refuse, whether the job lists the pool or not", async () => {
  const app = await newApp("Healed");
  await root.put(`/v1/apps/${app.id}/prices`, { models: FIVE_PER_STEP }, bearer);
  const done = await app.client.post("/v1/runs", { agent_id: app.agent, user_id: "u", input: "before limits" });
  await app.client.waitForStatus(done.body.job_id, ["completed"]);
  await root.put(`/v1/apps/${app.id}/limits`, { app: { daily_credits: 10 }, reservation: { credits: 10 } }, bearer);
  // A hold for that ended job (which lists no pool: it ran before limits) fills the pool, as if its settlement were lost.
  const meta = { appId: app.id, actor: `key:${app.keyId}` };
  await reserveJob({ ...server.ctx, appId: app.id }, { appId: app.id, userId: "u", keyId: app.keyId }, done.body.job_id, meta);
  const pool = `${app.id}:app:${new Date().toISOString().slice(0, 10)}`;
  expect(Object.keys((await server.ctx.repos.budgets.load(pool)).state.held)).toEqual([done.body.job_id]);
  // The next request finds the pool full, settles the ended job's hold with what it spent (5), and fits in what is left.
  await root.put(`/v1/apps/${app.id}/limits`, { app: { daily_credits: 10 }, reservation: { credits: 5 } }, bearer);
  const next = await app.client.post("/v1/runs", { agent_id: app.agent, user_id: "u", input: "after" });
  expect(next.status).toBe(202);
  const state = (await server.ctx.repos.budgets.load(pool)).state;
  expect({ spent: state.spent.credits, held: Object.keys(state.held) }).toEqual({ spent: 5, held: [next.body.job_id] });
  await app.client.waitForStatus(next.body.job_id, ["completed"]);
});

test("limits and prices are admins' to set; bad bodies get 400, never 500", async () => {
  const app = await newApp("Validated");
  const put = (path: string, body: unknown, headers: Record<string, string> = bearer) =>
    fetch(`${server.url}/v1/apps/${app.id}/${path}`, { method: "PUT", headers: { ...headers, "content-type": "application/json" }, body: typeof body === "string" ? body : JSON.stringify(body) });
  for (const body of [
    { app: { daily_credits: -1 } }, { app: { daily_tokens: 1.5 } }, { app: { hourly_credits: 1 } }, { per_team: {} }, { app: "x" },
    { reservation: { credits: -1 } }, [], "null", "{",
  ]) {
    const res = await put("limits", body);
    expect({ body, status: res.status }).toEqual({ body, status: 400 });
    expect(((await res.json()) as any).error.code).toBeString();
  }
  for (const body of [{ models: { m: { input: -1, output: 1 } } }, { models: { m: { input: 1 } } }, { models: { m: { input: 1, output: 1, extra: 1 } } }, { models: [] }, {}, { models: { "": { input: 1, output: 1 } } }]) {
    expect({ body, status: (await put("prices", body)).status }).toEqual({ body, status: 400 });
  }
  // A data key is not a management credential; an unknown app is 404.
  expect((await put("limits", {}, { "x-api-key": "nope" })).status).toBe(401);
  expect((await fetch(`${server.url}/v1/apps/app_missing/limits`, { headers: bearer })).status).toBe(404);
  // Setting what is set already records nothing (in any key order).
  const recorded = async (type: string) => {
    let n = 0;
    for await (const e of server.ctx.store.readStream(`app-${app.id}`)) if (e.type === type) n++;
    return n;
  };
  await put("limits", { app: { daily_credits: 5, monthly_credits: 50 } });
  await put("limits", { app: { monthly_credits: 50, daily_credits: 5 } });
  await put("prices", { models: { m: { input: 1, output: 2 } } });
  await put("prices", { models: { m: { output: 2, input: 1 } } });
  expect({ limits: await recorded("LimitsSet"), prices: await recorded("PricesSet") }).toEqual({ limits: 1, prices: 1 });
  // {} removes every limit; DELETE too.
  await put("limits", { app: { daily_credits: 1 } });
  expect(((await (await put("limits", {})).json()) as any).app.daily_credits).toBeNull();
  expect((await fetch(`${server.url}/v1/apps/${app.id}/limits`, { method: "DELETE", headers: bearer })).status).toBe(200);
  // The usage report's period is checked.
  for (const q of ["from=2026-02-30", "to=2026-13-01", "from=2026-05-02&to=2026-05-01", "from=2020-01-01&to=2026-01-01", "group_by=week", "format=xml", "extra=1"]) {
    const res = await app.client.get(`/v1/usage?${q}`);
    expect({ q, status: res.status }).toEqual({ q, status: 400 });
  }
});

async function waitFor(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error("timed out waiting");
    await Bun.sleep(20);
  }
}

async function waitForUsage(client: Api, path: string, ready: (body: any) => boolean) {
  let last!: { status: number; body: any };
  await waitFor(async () => {
    last = await client.get(path);
    return last.status === 200 && ready(last.body);
  });
  return last;
}

/** A request refused once what ran before it is settled (settling follows a job's end closely, not at once). */
async function waitForRefusal(send: () => Promise<{ status: number; body: any }>) {
  let last!: { status: number; body: any };
  await waitFor(async () => {
    last = await send();
    if (last.status === 202) throw new Error("accepted a request over the limit");
    return last.status === 403;
  });
  return last;
}
