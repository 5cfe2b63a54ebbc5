/**
 * Agents with memory: a turn recalls the user's relevant entries into what the model receives (seen
 * on a local OpenAI wire server), and only that user's, this agent's or every agent's; the agent has
 * `remember` and `recall`; a `remember` call stores an entry; the reply cites what it was given
 * (job.completed, the job, the waited reply). Agents without memory get none of it.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { api, type Api } from "../support/api.ts";
import { startOpenAiWireServer, type WireServer } from "../support/llmWireServers.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const ROOT = "agr_test_root_token_for_memory_agents_01";
const bearer = { authorization: `Bearer ${ROOT}` };
let server: TestServer;
let wire: WireServer;
let root: Api;
let client: Api;

beforeAll(async () => {
  wire = startOpenAiWireServer();
  server = await startTestServer({ ADMIN_TOKEN: ROOT, TOOL_PRIVATE_ALLOWLIST: "127.0.0.1", SANDBOX_CHUNK_DELAY_MS: "0" });
  root = api(server.url, "");
  const app = (await root.post("/v1/apps", { name: "Agents with memory" }, bearer)).body;
  expect((await root.put(`/v1/apps/${app.id}/connections/main`, { provider: "openai", base_url: wire.baseURL, api_key: "sk-memory-agents-0001", default_model: "gpt-m" }, bearer)).status).toBe(200);
  client = api(server.url, (await root.post(`/v1/apps/${app.id}/keys`, { name: "k", scopes: ["data:write", "agents:manage"] }, bearer)).body.key);
});
afterAll(async () => {
  await server?.stop();
  wire?.stop();
});

async function remember(user: string, content: string, agentId?: string): Promise<string> {
  const r = await client.post("/v1/memory", { user_id: user, content, ...(agentId ? { agent_id: agentId } : {}) });
  expect(r.status).toBe(201);
  return r.body.id;
}

test("a turn recalls the user's relevant entries into the model's context, has remember and recall, and cites what it was given", async () => {
  const agent = (await client.post("/v1/agents", { name: "with memory", approval: "never", model: { connection: "main" }, memory: { recall_limit: 3 } })).body;
  expect(agent.memory).toEqual({ enabled: true, recall_limit: 3 });
  const other = (await client.post("/v1/agents", { name: "another agent", approval: "never", model: { connection: "main" } })).body.id;
  const peanuts = await remember("u-recall", "User is vegetarian and allergic to peanuts");
  const ownAgent = await remember("u-recall", "Asked this agent for dinner ideas without peanuts before", agent.id);
  const unrelated = await remember("u-recall", "Works as a nurse in Porto");
  const otherAgents = await remember("u-recall", "peanuts dinner secret of another agent", other);
  const otherUsers = await remember("u-someone-else", "peanuts dinner of someone else");

  const sid = (await client.post("/v1/sessions", { user_id: "u-recall", agent_id: agent.id })).body.id;
  const before = wire.requests.length;
  const turn = await client.post(`/v1/sessions/${sid}/messages`, { content: "Suggest a dinner without peanuts", wait: true });
  expect(turn.body.status).toBe("completed");
  const sent = wire.requests.slice(before);
  expect(sent.length).toBe(1);
  const system = sent[0]!.body.messages[0];
  expect(system.role).toBe("system");
  expect(system.content).toContain(`[${peanuts}] User is vegetarian and allergic to peanuts`);
  expect(system.content).toContain(`[${ownAgent}]`);
  for (const id of [unrelated, otherAgents, otherUsers]) expect(system.content).not.toContain(id);
  expect(sent[0]!.body.tools.map((t: any) => t.function.name).sort()).toEqual(["recall", "remember"]);

  // Cited wherever the reply is shown.
  const cited = turn.body.reply.citations.map((c: any) => c.memory_id).sort();
  expect(cited).toEqual([peanuts, ownAgent].sort());
  expect(turn.body.reply.citations.find((c: any) => c.memory_id === peanuts).snippet).toBe("User is vegetarian and allergic to peanuts");
  const job = (await client.get(`/v1/jobs/${turn.body.job_id}`)).body;
  expect(job.citations).toEqual(turn.body.reply.citations);
  const events = (await client.get(`/v1/jobs/${turn.body.job_id}/events?since=0`)).body.events;
  expect(events.find((e: any) => e.type === "job.completed").payload.citations).toEqual(job.citations);
});

test("a remember call stores an entry for the user and the agent; a recall call finds it, and the reply cites it", async () => {
  // The sandbox calls a tool for "call <tool> {json}".
  const agent = (await client.post("/v1/agents", { name: "sandbox memory", approval: "never", model: { provider: "sandbox" }, memory: { enabled: true } })).body.id;
  const sid = (await client.post("/v1/sessions", { user_id: "u-tools", agent_id: agent })).body.id;
  const stored = await client.post(`/v1/sessions/${sid}/messages`, { content: 'call remember {"content": "Prefers meetings in the morning", "metadata": {"importance": "high"}}', wait: true });
  expect(stored.body.status).toBe("completed");
  const call = stored.body.reply.tool_calls[0];
  expect(call).toMatchObject({ name: "remember", error: null, result: { stored: true } });
  const listed = (await client.get("/v1/memory?user_id=u-tools")).body.data;
  expect(listed).toHaveLength(1);
  expect(listed[0]).toMatchObject({
    id: call.result.memory_id, content: "Prefers meetings in the morning", metadata: { importance: "high" }, agent_id: agent, source: "agent", job_id: stored.body.job_id,
  });
  // Recorded as the job's doing, for the user.
  for await (const e of server.ctx.store.readStream(`memory-${call.result.memory_id}`)) {
    expect(e.metadata).toMatchObject({ actor: `job:${stored.body.job_id}`, attributed_user_id: "u-tools" });
  }

  const recalled = await client.post(`/v1/sessions/${sid}/messages`, { content: 'call recall {"query": "when are meetings best"}', wait: true });
  expect(recalled.body.status).toBe("completed");
  const result = recalled.body.reply.tool_calls[0].result;
  expect(result.memories.map((m: any) => m.id)).toEqual([call.result.memory_id]);
  expect(result.memories[0].relevance_score).toBeGreaterThan(0);
  expect(recalled.body.reply.citations.map((c: any) => c.memory_id)).toContain(call.result.memory_id);

  // Bad arguments are the model's to see, not the job's end.
  const bad = await client.post(`/v1/sessions/${sid}/messages`, { content: 'call remember {"content": "   "}', wait: true });
  expect(bad.body.status).toBe("completed");
  expect(bad.body.reply.tool_calls[0].error).toContain("blank");
  expect((await client.get("/v1/memory?user_id=u-tools")).body.data).toHaveLength(1);
});

test("a skill run with no message of its own recalls what is relevant to the skill's steps", async () => {
  const agent = (await client.post("/v1/agents", { name: "skilled memory", approval: "never", model: { connection: "main" }, memory: { recall_limit: 3 } })).body.id;
  const saved = await client.post("/v1/skills", { name: "plan-trip", description: "Plans a trip", inputs: [{ name: "city", required: true }], steps: "Plan a weekend trip to {{city}} with museums." });
  expect(saved.status).toBe(201);
  const museums = await remember("u-skill-recall", "Loves modern art museums");
  const sid = (await client.post("/v1/sessions", { user_id: "u-skill-recall", agent_id: agent })).body.id;
  const before = wire.requests.length;
  const run = await client.post(`/v1/sessions/${sid}/run-skill`, { skill: "plan-trip", inputs: { city: "Lisbon" }, wait: true });
  expect(run.body.status).toBe("completed");
  expect(wire.requests.slice(before)[0]!.body.messages[0].content).toContain(`[${museums}] Loves modern art museums`);
});

test("a skill run with words of its own recalls by them first, however long the skill's steps", async () => {
  const agent = (await client.post("/v1/agents", { name: "skilled memory 2", approval: "never", model: { connection: "main" }, memory: { recall_limit: 3 } })).body.id;
  const steps = Array.from({ length: 60 }, (_, i) => `step${i} examine carefully`).join(" ");
  expect((await client.post("/v1/skills", { name: "long-recipe", description: "Long", steps })).status).toBe(201);
  const cat = await remember("u-skill-words", "Whiskers is the family cat");
  const sid = (await client.post("/v1/sessions", { user_id: "u-skill-words", agent_id: agent })).body.id;
  const before = wire.requests.length;
  const run = await client.post(`/v1/sessions/${sid}/run-skill`, { skill: "long-recipe", content: "Something about Whiskers", wait: true });
  expect(run.body.status).toBe("completed");
  expect(wire.requests.slice(before)[0]!.body.messages[0].content).toContain(`[${cat}] Whiskers is the family cat`);
});

test("an agent without memory recalls nothing and has no memory tools", async () => {
  const agent = (await client.post("/v1/agents", { name: "no memory", approval: "never", model: { connection: "main" } })).body;
  expect(agent.memory).toEqual({ enabled: false, recall_limit: 5 });
  await remember("u-none", "likes peanuts a lot");
  const sid = (await client.post("/v1/sessions", { user_id: "u-none", agent_id: agent.id })).body.id;
  const before = wire.requests.length;
  const turn = await client.post(`/v1/sessions/${sid}/messages`, { content: "peanuts?", wait: true });
  expect(turn.body.status).toBe("completed");
  const body = wire.requests.slice(before)[0]!.body;
  expect(JSON.stringify(body.messages)).not.toContain("likes peanuts");
  expect(body.tools ?? []).toEqual([]);
  expect(turn.body.reply.citations).toBeUndefined();
  expect((await client.get(`/v1/jobs/${turn.body.job_id}`)).body.citations).toEqual([]);
});

test("memory settings: PATCH merges them; bad values are refused with 400 naming memory", async () => {
  const agent = (await client.post("/v1/agents", { name: "settings", memory: { enabled: false, recall_limit: 7 } })).body.id;
  expect((await client.patch(`/v1/agents/${agent}`, { memory: { enabled: true } })).body.memory).toEqual({ enabled: true, recall_limit: 7 });
  expect((await client.get(`/v1/agents/${agent}`)).body.memory).toEqual({ enabled: true, recall_limit: 7 });
  for (const memory of [{ recall_limit: 0 }, { recall_limit: 21 }, { recall_limit: 2.5 }, { enabled: "yes" }, { surprise: true }, "on"]) {
    const r = await client.patch(`/v1/agents/${agent}`, { memory });
    expect({ memory, status: r.status, param: String(r.body.error?.details?.param ?? "") }).toEqual({ memory, status: 400, param: expect.stringContaining("memory") });
  }
  expect((await client.get(`/v1/agents/${agent}`)).body.memory).toEqual({ enabled: true, recall_limit: 7 });
});
