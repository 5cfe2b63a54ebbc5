/**
 * Prompt overrides (issue 9, Mushu's per-workflow prompts): PUT/GET/DELETE /v1/agents/{agent_id}/prompt
 * on a real server, with the real `openai` client talking to a local wire server that records what the
 * model was sent. An override is an event on the agent's stream, each turn's JobStarted names the
 * agent version and prompt hash it ran with, and DELETE goes back to the agent's own prompt.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { newResourceId } from "../../src/core/ids.ts";
import { keyHash, keyPrefix, newApiKey } from "../../src/domain/app/keys.ts";
import { DEFAULT_AGENT_SPEC, defaultAgentIdOf } from "../../src/app/defaultAgent.ts";
import { api, type Api } from "../support/api.ts";
import { startOpenAiWireServer, type WireServer } from "../support/llmWireServers.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const APP = "app_prompts";
const OTHER_APP = "app_prompts_other";

let wire: WireServer;
let server: TestServer;
/** The app's live key, every scope. */
let owner: Api;
let ownerKey: string;
let otherApp: Api;
let testMode: Api;
let readOnly: Api;
/** A key of the app limited to `ownAgent`. */
let limited: Api;
let ownAgent: string;

const sha256 = (s: string) => new Bun.CryptoHasher("sha256").update(s).digest("hex");

async function issueKey(appId: string, opts: { mode?: "live" | "test"; scopes?: string[]; agent_ids?: string[] | null } = {}): Promise<string> {
  const key = newApiKey(opts.mode ?? "live");
  await server.ctx.repos.apps.handle(appId, { type: "IssueKey", key: {
    key_id: newResourceId("key"), name: "prompts", prefix: keyPrefix(key), hash: keyHash(key), mode: opts.mode ?? "live",
    scopes: (opts.scopes ?? ["data:read", "data:write", "agents:manage"]) as never, agent_ids: opts.agent_ids ?? null, user_id: null, expires_at: null,
  } }, { appId: "app_ops" });
  // Bounded wait until the tenant directory knows the key.
  for (let i = 0; i < 200; i++) {
    if ((await fetch(`${server.url}/v1/sessions`, { headers: { "x-api-key": key } })).status === 200) return key;
    await Bun.sleep(20);
  }
  throw new Error("the key was not accepted in time");
}

/** The agent stream's events as stored: type and data. */
async function agentEvents(agentId: string): Promise<Array<{ type: string; data: any; metadata: any }>> {
  const out: Array<{ type: string; data: any; metadata: any }> = [];
  for await (const e of server.ctx.store.readStream(`agent-${agentId}`)) out.push({ type: e.type, data: e.data, metadata: e.metadata });
  return out;
}

/** A raw request with the owner's key: for bodies the thin client would not send. */
const raw = (method: string, path: string, body: string | undefined, contentType = "application/json") =>
  fetch(server.url + path, { method, headers: { "x-api-key": ownerKey, ...(body !== undefined ? { "content-type": contentType } : {}) }, body });

beforeAll(async () => {
  wire = startOpenAiWireServer();
  server = await startTestServer({ LLM_PROVIDER: "openai", LLM_API_KEY: "sk-prompts-test", LLM_MODEL: "model-p", LLM_BASE_URL: wire.baseURL, LLM_STALL_TIMEOUT_MS: "2000" });
  const meta = { appId: "app_ops" };
  await server.ctx.repos.apps.handle(APP, { type: "CreateApp", app_id: APP, name: "Prompts" }, meta);
  await server.ctx.repos.apps.handle(OTHER_APP, { type: "CreateApp", app_id: OTHER_APP, name: "Other" }, meta);
  ownerKey = await issueKey(APP);
  owner = api(server.url, ownerKey);
  otherApp = api(server.url, await issueKey(OTHER_APP));
  testMode = api(server.url, await issueKey(APP, { mode: "test" }));
  readOnly = api(server.url, await issueKey(APP, { scopes: ["data:read"] }));
  ownAgent = (await owner.post("/v1/agents", { name: "the limited key's own", system_prompt: "own prompt", approval: "never" })).body.id;
  limited = api(server.url, await issueKey(APP, { scopes: ["data:read", "data:write", "agents:manage"], agent_ids: [ownAgent] }));
});

afterAll(async () => {
  await server?.stop();
  wire?.stop();
});

describe("set, read back, revert", () => {
  test("GET shows the default; PUT overrides it; the agent shows the effective prompt; DELETE reverts, and again is a no-op", async () => {
    const agent = (await owner.post("/v1/agents", { name: "prompted", system_prompt: "Default prompt A.", approval: "never" })).body;
    expect(agent.prompt_overridden).toBe(false);
    const path = `/v1/agents/${agent.id}/prompt`;

    const before = await owner.get(path);
    expect(before.status).toBe(200);
    expect(before.body).toMatchObject({ agent_id: agent.id, object: "agent.prompt", system_prompt: "Default prompt A.", default_system_prompt: "Default prompt A.", overridden: false });
    expect(Number.isNaN(Date.parse(before.body.updated_at))).toBe(false);

    const put = await owner.put(path, { system_prompt: "Override B." });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ agent_id: agent.id, system_prompt: "Override B.", default_system_prompt: "Default prompt A.", overridden: true });
    expect((await owner.get(path)).body).toEqual(put.body);
    expect((await owner.get(`/v1/agents/${agent.id}`)).body).toMatchObject({ system_prompt: "Override B.", prompt_overridden: true });
    const listed = (await owner.get("/v1/agents?limit=100")).body.data.find((a: any) => a.id === agent.id);
    expect(listed).toMatchObject({ system_prompt: "Override B.", prompt_overridden: true });

    // The same override again records nothing.
    expect((await owner.put(path, { system_prompt: "Override B." })).status).toBe(200);

    // A PATCH of the agent's own prompt changes the default; the override still wins.
    const patched = await owner.patch(`/v1/agents/${agent.id}`, { system_prompt: "Default prompt A2." });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ system_prompt: "Override B.", prompt_overridden: true });
    expect((await owner.get(path)).body).toMatchObject({ system_prompt: "Override B.", default_system_prompt: "Default prompt A2.", overridden: true });

    const reverted = await owner.del(path);
    expect(reverted.status).toBe(200);
    expect(reverted.body).toMatchObject({ agent_id: agent.id, system_prompt: "Default prompt A2.", default_system_prompt: "Default prompt A2.", overridden: false });
    const again = await owner.del(path);
    expect(again.status).toBe(200);
    expect(again.body).toEqual(reverted.body);
    expect((await owner.get(`/v1/agents/${agent.id}`)).body).toMatchObject({ system_prompt: "Default prompt A2.", prompt_overridden: false });

    // Every change is on the agent's stream, with the key that made it; the no-ops are not.
    const events = await agentEvents(agent.id);
    expect(events.map((e) => e.type)).toEqual(["AgentCreated", "AgentPromptOverridden", "AgentPatched", "AgentPromptReverted"]);
    expect(events[1]!.data).toEqual({ agent_id: agent.id, system_prompt: "Override B." });
    expect(events[3]!.data).toEqual({ agent_id: agent.id });
    for (const e of events) expect(e.metadata.app_id).toBe(APP);
    expect(String(events[1]!.metadata.actor)).toMatch(/^key:key_/);
  });

  test("an app's default agent can be overridden before its first use", async () => {
    const id = defaultAgentIdOf(APP);
    const before = await owner.get(`/v1/agents/${id}/prompt`);
    expect(before.status).toBe(200);
    expect(before.body).toMatchObject({ system_prompt: DEFAULT_AGENT_SPEC.system_prompt, overridden: false });
    const put = await owner.put(`/v1/agents/${id}/prompt`, { system_prompt: "The app's own default assistant." });
    expect(put.body).toMatchObject({ system_prompt: "The app's own default assistant.", overridden: true });
    // A session that names no agent runs on it, with the override.
    const sid = (await owner.post("/v1/sessions", { user_id: "u-default" })).body.id;
    const turn = await owner.post(`/v1/sessions/${sid}/messages`, { content: "hello default", wait: true });
    expect(turn.body.status).toBe("completed");
    expect(wire.requests.at(-1)!.body.messages[0]).toMatchObject({ role: "system", content: expect.stringContaining("The app's own default assistant.") });
  });
});

describe("bad input is refused with a 4xx and changes nothing", () => {
  test("empty, blank, missing, wrong type, too long, not JSON", async () => {
    const agent = (await owner.post("/v1/agents", { name: "guarded", system_prompt: "Guarded default.", approval: "never" })).body;
    const path = `/v1/agents/${agent.id}/prompt`;
    const eventsBefore = await agentEvents(agent.id);

    for (const blank of ["", "   ", "\n\t"]) {
      const r = await owner.put(path, { system_prompt: blank });
      expect({ blank, status: r.status, code: r.body.error?.code, param: r.body.error?.details?.param }).toEqual({ blank, status: 400, code: "invalid_request", param: "system_prompt" });
      expect(r.body.error.message).toContain("DELETE");
    }
    const cases: Array<[name: string, body: string | undefined, status: number, contentType?: string]> = [
      ["no body", undefined, 400],
      ["empty object", "{}", 400],
      ["number", JSON.stringify({ system_prompt: 42 }), 400],
      ["null", JSON.stringify({ system_prompt: null }), 400],
      ["array body", "[]", 400],
      ["string body", JSON.stringify("just a prompt"), 400],
      ["too long", JSON.stringify({ system_prompt: "x".repeat(100_001) }), 400],
      ["not JSON", "{\"system_prompt\": ", 400],
      ["text/plain", "a prompt", 415, "text/plain"],
    ];
    for (const [name, body, status, type] of cases) {
      const res = await raw("PUT", path, body, type);
      const parsed = (await res.json().catch(() => null)) as any;
      expect({ name, status: res.status, hasCode: typeof parsed?.error?.code === "string" }).toEqual({ name, status, hasCode: true });
    }
    expect(await agentEvents(agent.id)).toEqual(eventsBefore);
    expect((await owner.get(path)).body).toMatchObject({ system_prompt: "Guarded default.", overridden: false });
  });

  test("an unknown or deleted agent is 404 agent_not_found on every method", async () => {
    const gone = (await owner.post("/v1/agents", { name: "doomed", approval: "never" })).body.id;
    expect((await owner.del(`/v1/agents/${gone}`)).status).toBe(200);
    for (const id of ["agt_does_not_exist", gone]) {
      for (const r of [await owner.get(`/v1/agents/${id}/prompt`), await owner.put(`/v1/agents/${id}/prompt`, { system_prompt: "x" }), await owner.del(`/v1/agents/${id}/prompt`)]) {
        expect({ id, status: r.status, code: r.body.error?.code }).toEqual({ id, status: 404, code: "agent_not_found" });
      }
    }
  });
});

describe("who may read and change a prompt", () => {
  test("another app, and the app's test mode, find no such agent; a key limited to other agents is refused; a read-only key only reads", async () => {
    const agent = (await owner.post("/v1/agents", { name: "tenanted", system_prompt: "Tenant secret default.", approval: "never" })).body;
    const path = `/v1/agents/${agent.id}/prompt`;
    expect((await owner.put(path, { system_prompt: "Tenant secret override." })).status).toBe(200);
    const eventsBefore = await agentEvents(agent.id);

    for (const [who, client] of [["other app", otherApp], ["test mode", testMode]] as const) {
      for (const r of [await client.get(path), await client.put(path, { system_prompt: "taken" }), await client.del(path)]) {
        expect({ who, status: r.status, code: r.body.error?.code }).toEqual({ who, status: 404, code: "agent_not_found" });
        expect(JSON.stringify(r.body)).not.toContain("Tenant secret");
      }
    }
    for (const r of [await limited.get(path), await limited.put(path, { system_prompt: "taken" }), await limited.del(path)]) {
      expect({ status: r.status, code: r.body.error?.code }).toEqual({ status: 403, code: "agent_not_allowed" });
      expect(JSON.stringify(r.body)).not.toContain("Tenant secret");
    }
    // The limited key manages its own agent's prompt.
    expect((await limited.put(`/v1/agents/${ownAgent}/prompt`, { system_prompt: "own override" })).body).toMatchObject({ overridden: true });
    expect((await limited.del(`/v1/agents/${ownAgent}/prompt`)).body).toMatchObject({ system_prompt: "own prompt", overridden: false });

    expect((await readOnly.get(path)).body).toMatchObject({ system_prompt: "Tenant secret override.", overridden: true });
    for (const r of [await readOnly.put(path, { system_prompt: "taken" }), await readOnly.del(path)]) {
      expect({ status: r.status, code: r.body.error?.code }).toEqual({ status: 403, code: "insufficient_scope" });
    }

    expect(await agentEvents(agent.id)).toEqual(eventsBefore);
    expect((await owner.get(path)).body).toMatchObject({ system_prompt: "Tenant secret override.", overridden: true });
  });

  test("a test key's default agent is its partition's own: overriding it leaves the live one alone", async () => {
    const liveId = defaultAgentIdOf(APP);
    const testId = defaultAgentIdOf(`${APP}.test`);
    const live = (await owner.get(`/v1/agents/${liveId}/prompt`)).body;
    const put = await testMode.put(`/v1/agents/${testId}/prompt`, { system_prompt: "Test-mode prompt." });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ agent_id: testId, system_prompt: "Test-mode prompt.", overridden: true });
    expect((await testMode.get(`/v1/agents/${liveId}/prompt`)).status).toBe(404);
    expect((await owner.get(`/v1/agents/${testId}/prompt`)).status).toBe(404);
    expect((await owner.get(`/v1/agents/${liveId}/prompt`)).body).toEqual(live);
    // The test partition's agent runs its turns with the override too (on the sandbox, as test data does).
    const sid = (await testMode.post("/v1/sessions", { user_id: "u-test" })).body.id;
    const turn = await testMode.post(`/v1/sessions/${sid}/messages`, { content: "hello test mode", wait: true });
    expect(turn.body.status).toBe("completed");
    const started = (await testMode.get(`/v1/jobs/${turn.body.job_id}/events?since=0`)).body.events.find((e: any) => e.type === "job.started").payload;
    expect(started).toMatchObject({ system_prompt_sha256: sha256("Test-mode prompt."), prompt_overridden: true });
  });
});

describe("turns run with the effective prompt, and say which", () => {
  test("override: turn 1 runs with it and its JobStarted names it; revert: turn 2 runs with the default", async () => {
    const DEFAULT = "You are the DEFAULT prompt of agent pq7.";
    const OVERRIDE = "You are the OVERRIDDEN prompt of agent pq7.";
    const agent = (await owner.post("/v1/agents", { name: "audited", system_prompt: DEFAULT, approval: "never" })).body;
    expect((await owner.put(`/v1/agents/${agent.id}/prompt`, { system_prompt: OVERRIDE })).status).toBe(200);
    const sid = (await owner.post("/v1/sessions", { user_id: "u-audit", agent_id: agent.id })).body.id;

    const runTurn = async (content: string) => {
      wire.script({ kind: "text", chunks: [`reply to ${content}`], usage: { prompt: 5, completion: 3 } });
      const turn = await owner.post(`/v1/sessions/${sid}/messages`, { content, wait: true });
      expect(turn.body.status).toBe("completed");
      const sent = wire.requests.at(-1)!.body;
      expect(JSON.stringify(sent)).toContain(content);
      const events = (await owner.get(`/v1/jobs/${turn.body.job_id}/events?since=0`)).body.events;
      return { system: sent.messages[0], started: events.find((e: any) => e.type === "job.started").payload, jobId: turn.body.job_id as string };
    };

    const first = await runTurn("first turn");
    expect(first.system).toEqual({ role: "system", content: OVERRIDE });
    expect(first.started).toEqual({ attempt: 1, agent_version: 1, system_prompt_sha256: sha256(OVERRIDE), prompt_overridden: true });

    expect((await owner.del(`/v1/agents/${agent.id}/prompt`)).body.overridden).toBe(false);
    const second = await runTurn("second turn");
    expect(second.system).toEqual({ role: "system", content: DEFAULT });
    expect(second.started).toEqual({ attempt: 1, agent_version: 2, system_prompt_sha256: sha256(DEFAULT), prompt_overridden: false });

    // An auditor replays the agent stream to each turn's agent_version and finds the prompt it ran with.
    const agentStream = await agentEvents(agent.id);
    expect(agentStream.map((e) => e.type)).toEqual(["AgentCreated", "AgentPromptOverridden", "AgentPromptReverted"]);
    expect(agentStream[first.started.agent_version]!.data.system_prompt).toBe(OVERRIDE);
    expect(agentStream[second.started.agent_version]!.type).toBe("AgentPromptReverted");
    // The stored JobStarted holds the same record (and the runner, which clients do not see).
    for (const { jobId, started } of [first, second]) {
      let stored: any;
      for await (const e of server.ctx.store.readStream(`job-${jobId}`)) if (e.type === "JobStarted") stored = e.data;
      expect(stored).toMatchObject(started);
      expect(typeof stored.runner_id).toBe("string");
    }
  });
});

describe("documented and rebuildable", () => {
  test("the OpenAPI document lists the three routes with their answer model", async () => {
    const doc = (await (await fetch(`${server.url}/docs/json`)).json()) as any;
    const ops = doc.paths["/v1/agents/{agent_id}/prompt"];
    expect(Object.keys(ops ?? {}).sort()).toEqual(["delete", "get", "put"]);
    for (const method of ["get", "put", "delete"]) expect(JSON.stringify(ops[method].responses)).toContain("AgentPrompt");
    expect(ops.put.requestBody.content["application/json"].schema.properties.system_prompt.type).toBe("string");
    expect(doc.components.schemas.Agent.properties.prompt_overridden).toBeDefined();
  });

  test("rebuilding the agents read model from the events gives what live processing gave", async () => {
    const { openReadModelDb, dumpTables } = await import("../../src/projections/readModelDb.ts");
    const { ProjectionRunner } = await import("../../src/projections/runner.ts");
    const { agentsProjection } = await import("../../projections/agents/index.ts");
    await server.ctx.projections.waitUntilCaughtUp();
    const live = dumpTables(server.ctx.db, agentsProjection.tables);
    const overridden = (live.agents as Array<{ prompt_override: string | null }>).filter((r) => r.prompt_override !== null);
    expect(overridden.length).toBeGreaterThan(1);
    const fresh = openReadModelDb(":memory:");
    const runner = new ProjectionRunner(server.ctx.store, fresh, [agentsProjection], { batchSize: 7 });
    runner.start();
    await runner.waitUntilCaughtUp();
    await runner.stop();
    expect(dumpTables(fresh, agentsProjection.tables)).toEqual(live);
    fresh.close();
  });
});
