/**
 * Context management: a conversation longer than the model's context budget keeps working. Older turns
 * are summarised (the summary recorded on the session and reused) or dropped, and each job that sent
 * less than the whole history records what the model saw (context.prepared).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { planContext, type HistoryTurn } from "../../src/jobs/runner/contextWindow.ts";
import { api, TEST_KEY, type Api } from "../support/api.ts";
import { startOpenAiWireServer, type WireServer } from "../support/llmWireServers.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const turn = (i: number, size = 40): HistoryTurn => ({ message_id: `msg_${i}`, user: "u".repeat(size), assistant: "a".repeat(size) });

describe("planning what of the history fits", () => {
  const turns = Array.from({ length: 10 }, (_, i) => turn(i)); // 2 × (10 + 4) = 28 tokens a turn
  test("a history that fits is sent whole", () => {
    expect(planContext(turns, null, 100, { budgetTokens: 1000, strategy: "summarize" })).toEqual({ summary: null, sent: turns, toSummarize: [], dropped: 0, trimmed: false });
  });
  test("summarize: the newest turns fitting half the room are kept, the older ones folded", () => {
    const plan = planContext(turns, null, 100, { budgetTokens: 300, strategy: "summarize" }); // room 200, half 100: 3 turns
    expect(plan.sent.map((t) => t.message_id)).toEqual(["msg_7", "msg_8", "msg_9"]);
    expect(plan.toSummarize.map((t) => t.message_id)).toEqual(["msg_0", "msg_1", "msg_2", "msg_3", "msg_4", "msg_5", "msg_6"]);
    expect(plan.trimmed).toBe(true);
  });
  test("drop: the newest turns that fit are sent, a summary kept while it fits, the rest counted as dropped", () => {
    const plan = planContext(turns, null, 100, { budgetTokens: 300, strategy: "drop" }); // room 200: 7 turns
    expect({ sent: plan.sent.length, dropped: plan.dropped, first: plan.sent[0]?.message_id }).toEqual({ sent: 7, dropped: 3, first: "msg_3" });
    const summary = { text: "s".repeat(40), through_message_id: "msg_x", turns: 5 };
    expect(planContext(turns, summary, 100, { budgetTokens: 300, strategy: "drop" })).toMatchObject({ summary, dropped: 4 });
    expect(planContext(turns, { ...summary, text: "s".repeat(2000) }, 100, { budgetTokens: 300, strategy: "drop" }).summary).toBeNull();
  });
  test("a budget the rest of the request already fills leaves no room for any history", () => {
    expect(planContext(turns, null, 5000, { budgetTokens: 300, strategy: "drop" })).toMatchObject({ sent: [], dropped: 10 });
  });
});

let server: TestServer;
let wire: WireServer;
let client: Api;

beforeAll(async () => {
  wire = startOpenAiWireServer();
  server = await startTestServer({ API_KEY: TEST_KEY, SANDBOX_CHUNK_DELAY_MS: "0", TOOL_PRIVATE_ALLOWLIST: "127.0.0.1", ADMIN_TOKEN: "agr_test_root_token_for_context_0001" });
  client = api(server.url);
});
afterAll(async () => {
  await server?.stop();
  wire?.stop();
});

/** Every event of a stream, decoded. */
async function events(stream: string) {
  const out: Array<{ type: string; data: any }> = [];
  for await (const e of server.ctx.store.readStream(stream)) out.push({ type: e.type, data: e.data });
  return out;
}

test("a 200-turn conversation on a small budget keeps working: older turns are summarised once in a while, and each job says what the model saw", async () => {
  const budget = 600;
  const agent = (await client.post("/v1/agents", { name: "long talker", approval: "never", model: { parameters: { context_tokens: budget, context_strategy: "summarize" } } })).body.id;
  const sid = (await client.post("/v1/sessions", { user_id: "u", agent_id: agent })).body.id;
  let last: any;
  for (let i = 1; i <= 200; i++) {
    last = await client.post(`/v1/sessions/${sid}/messages`, { content: `Message number ${i}: the weather is fine and the tea is hot.`, wait: true });
    expect({ i, status: last.body.status }).toEqual({ i, status: "completed" });
  }
  const summaries = (await events(`session-${sid}`)).filter((e) => e.type === "HistorySummarized");
  // Summarised more than once, never on every turn (half the room is left free after each summary).
  expect(summaries.length).toBeGreaterThan(3);
  expect(summaries.length).toBeLessThan(100);
  // Each summary covers more of the conversation than the one before.
  const covered = summaries.map((s) => s.data.turns);
  expect(covered).toEqual([...covered].sort((a, b) => a - b));
  expect(new Set(covered).size).toBe(covered.length);

  // The last turn: what its job says the model saw, and what the model (the sandbox, counting the user
  // messages it was sent) really saw.
  const context = (await events(`job-${last.body.job_id}`)).find((e) => e.type === "ContextPrepared")!.data;
  expect(context).toMatchObject({ strategy: "summarize", budget_tokens: budget, turns_total: 199, dropped_turns: 0 });
  expect(context.summarized_turns + context.turns_sent).toBe(199);
  expect(context.estimated_tokens).toBeLessThanOrEqual(budget);
  expect(last.body.reply.content).toContain(`This is message ${context.turns_sent + 1} of our conversation`);
  // Clients see it too, at the standard verbosity.
  const polled = (await client.get(`/v1/jobs/${last.body.job_id}/events?since=0`)).body.events;
  expect(polled.find((e: any) => e.type === "context.prepared").payload).toEqual(context);
}, 120_000);

describe("on a real provider's wire format", () => {
  let appClient: Api;
  let agentFor: (strategy: string) => Promise<string>;
  beforeAll(async () => {
    const root = api(server.url, "");
    const bearer = { authorization: "Bearer agr_test_root_token_for_context_0001" };
    const app = (await root.post("/v1/apps", { name: "Context" }, bearer)).body;
    await root.put(`/v1/apps/${app.id}/connections/wire`, { provider: "openai", base_url: wire.baseURL, api_key: "sk-ctx", default_model: "m" }, bearer);
    appClient = api(server.url, (await root.post(`/v1/apps/${app.id}/keys`, { name: "k", scopes: ["data:write", "agents:manage"] }, bearer)).body.key);
    agentFor = async (strategy) => (await appClient.post("/v1/agents", {
      name: strategy, approval: "never", model: { connection: "wire", parameters: { context_tokens: 420, context_strategy: strategy } },
    })).body.id;
  });

  /**
   * A session with `n` completed turns. Each costs about 160 tokens (a reply of 600 characters): on a
   * budget of 420, two fit beside a new message and three do not.
   */
  async function conversation(agent: string, n: number) {
    const sid = (await appClient.post("/v1/sessions", { user_id: "u", agent_id: agent })).body.id;
    for (let i = 0; i < n; i++) {
      wire.script({ kind: "text", chunks: [`reply ${i} `, "x".repeat(600)], usage: { prompt: 10, completion: 150 } });
      expect((await appClient.post(`/v1/sessions/${sid}/messages`, { content: `question ${i}`, wait: true })).body.status).toBe("completed");
    }
    return sid;
  }

  test("summarize: the summary is asked for, recorded, and shown instead of the turns it covers; the provider is never sent them again", async () => {
    const sid = await conversation(await agentFor("summarize"), 3);
    const before = wire.requests.length;
    wire.script({ kind: "text", chunks: ["SUMMARY-ALPHA: three questions, long replies."], usage: { prompt: 50, completion: 10 } });
    const reply = await appClient.post(`/v1/sessions/${sid}/messages`, { content: "question 3", wait: true });
    expect(reply.body.status).toBe("completed");
    const [summaryRequest, turnRequest] = wire.requests.slice(before);
    expect(JSON.stringify(summaryRequest!.body.messages)).toContain("reply 0 ");
    const sent = turnRequest!.body.messages as Array<{ role: string; content: string }>;
    expect(sent.some((m) => m.role === "system" && m.content.includes("SUMMARY-ALPHA"))).toBe(true);
    expect(JSON.stringify(sent)).not.toContain("question 0");
    expect(JSON.stringify(sent)).toContain("question 3");
    const summarized = (await events(`session-${sid}`)).find((e) => e.type === "HistorySummarized")!.data;
    expect(summarized).toMatchObject({ summary: "SUMMARY-ALPHA: three questions, long replies.", job_id: reply.body.job_id });
    // The summary step is usage like any other (step 0), billed to the job.
    expect((await events(`job-${reply.body.job_id}`)).filter((e) => e.type === "UsageRecorded").map((e) => e.data.step)).toEqual([0, 1]);
    // The next turn starts from the recorded summary: nothing is summarised again while the rest fits.
    const next = wire.requests.length;
    wire.script({ kind: "text", chunks: ["short"], usage: { prompt: 10, completion: 1 } });
    expect((await appClient.post(`/v1/sessions/${sid}/messages`, { content: "question 4", wait: true })).body.status).toBe("completed");
    expect(wire.requests.length - next).toBe(1);
    expect(JSON.stringify(wire.requests.at(-1)!.body.messages)).toContain("SUMMARY-ALPHA");
  });

  test("drop: the oldest turns are left out and counted; no summary is asked for", async () => {
    const sid = await conversation(await agentFor("drop"), 3);
    const before = wire.requests.length;
    const reply = await appClient.post(`/v1/sessions/${sid}/messages`, { content: "question 3", wait: true });
    expect(wire.requests.length - before).toBe(1);
    const context = (await events(`job-${reply.body.job_id}`)).find((e) => e.type === "ContextPrepared")!.data;
    expect(context).toMatchObject({ strategy: "drop", turns_total: 3, summary_through: null });
    expect(context.dropped_turns).toBeGreaterThan(0);
    expect(context.dropped_turns + context.turns_sent).toBe(3);
    expect(JSON.stringify(wire.requests.at(-1)!.body.messages)).not.toContain("question 0");
  });

  test("a summary the model fails to make: the turn still runs, the older turns left out and said so", async () => {
    const sid = await conversation(await agentFor("summarize"), 3);
    wire.script({ kind: "status", status: 400 });
    const reply = await appClient.post(`/v1/sessions/${sid}/messages`, { content: "question 3", wait: true });
    expect(reply.body.status).toBe("completed");
    const context = (await events(`job-${reply.body.job_id}`)).find((e) => e.type === "ContextPrepared")!.data;
    expect(context).toMatchObject({ strategy: "drop", summary_through: null });
    expect(context.dropped_turns).toBeGreaterThan(0);
  });
});

test("a message's files count against the budget: a large file leaves less room for the history", async () => {
  const agent = (await client.post("/v1/agents", { name: "reader", approval: "never", model: { parameters: { context_tokens: 3000, context_strategy: "drop" } } })).body.id;
  const sid = (await client.post("/v1/sessions", { user_id: "u", agent_id: agent })).body.id;
  for (let i = 0; i < 3; i++) expect((await client.post(`/v1/sessions/${sid}/messages`, { content: `turn ${i}`, wait: true })).body.status).toBe("completed");
  // Without a file the three short turns fit: the whole history is sent.
  const plain = await client.post(`/v1/sessions/${sid}/messages`, { content: "no file", wait: true });
  expect((await events(`job-${plain.body.job_id}`)).some((e) => e.type === "ContextPrepared")).toBe(false);
  // A text file of 12,000 characters (about 3,000 tokens) fills the budget by itself.
  const data = Buffer.from("lorem ipsum ".repeat(1000)).toString("base64");
  const withFile = await client.post(`/v1/sessions/${sid}/messages`, {
    content: "read this", wait: true, attachments: [{ type: "file", name: "long.txt", content_type: "text/plain", data }],
  });
  expect(withFile.body.status).toBe("completed");
  const context = (await events(`job-${withFile.body.job_id}`)).find((e) => e.type === "ContextPrepared")!.data;
  expect(context).toMatchObject({ strategy: "drop", turns_total: 4, turns_sent: 0, dropped_turns: 4 });
  expect(context.estimated_tokens).toBeGreaterThan(3000);
});

test("context settings are checked when an agent is made", async () => {
  for (const parameters of [{ context_tokens: 10 }, { context_tokens: 1.5 }, { context_tokens: "1000" }, { context_strategy: "forget" }]) {
    const r = await client.post("/v1/agents", { name: "bad", model: { parameters } });
    expect({ status: r.status, param: r.body.error?.details?.param }).toEqual({ status: 400, param: `model.parameters.${Object.keys(parameters)[0]}` });
  }
});
