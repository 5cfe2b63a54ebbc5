/**
 * Skills over real ports: the shipped skills and an app's own (POST/GET/DELETE /v1/skills), kept
 * apart per app and per data partition; running one (POST /v1/sessions/{id}/run-skill, or `skill`
 * on a message) end to end on the sandbox provider of the quick start; and, against a local server
 * speaking OpenAI's wire format, exactly what the model is given.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { api, TEST_KEY, type Api } from "../support/api.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { startOpenAiWireServer, type WireServer } from "../support/llmWireServers.ts";

const ROOT = "root-token-for-skills-0123456789";
let server: TestServer;
let client: Api;
let admin: Api;

const OWN_SKILL = `---
name: greet-customer
description: Greets a customer by name
inputs:
  - name: customer
    description: The customer's name
    required: true
  - name: tone
---
Greet {{customer}} warmly. Tone: {{tone}}.
`;

beforeAll(async () => {
  server = await startTestServer({ API_KEY: TEST_KEY, ADMIN_TOKEN: ROOT, SANDBOX_CHUNK_DELAY_MS: "0" });
  client = api(server.url);
  admin = api(server.url, "");
});
afterAll(async () => {
  await server?.stop();
});

const bearer = { authorization: `Bearer ${ROOT}` };

/** A second app with a key of the given mode and scopes. */
async function otherApp(mode: "live" | "test" = "live", scopes = ["data:write", "agents:manage"]): Promise<Api> {
  const app = await admin.post("/v1/apps", { name: `other ${mode} ${Math.random()}` }, bearer);
  expect(app.status).toBe(201);
  const key = await admin.post(`/v1/apps/${app.body.id}/keys`, { name: "k", mode, scopes }, bearer);
  expect(key.status).toBe(201);
  return api(server.url, key.body.key);
}

async function newSession(c: Api = client, extra: Record<string, unknown> = {}) {
  const r = await c.post("/v1/sessions", { user_id: "skill-user", ...extra });
  expect(r.status).toBe(201);
  return r.body.id as string;
}

describe("listing and reading skills", () => {
  test("the shipped skills are listed, paged by name, with their inputs, source and hash", async () => {
    const all = await client.get("/v1/skills");
    expect(all.status).toBe(200);
    const names = all.body.data.map((s: any) => s.name);
    expect(names).toEqual(expect.arrayContaining(["register-media", "structured-summary"]));
    const summary = all.body.data.find((s: any) => s.name === "structured-summary");
    expect(summary).toMatchObject({ object: "skill", source: "shipped", version: null, sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(summary.inputs[0]).toEqual({ name: "text", description: "The text to summarise", required: true });
    expect(summary.steps).toBeUndefined();
    const first = await client.get("/v1/skills?limit=1");
    expect(first.body).toMatchObject({ has_more: true, data: [{ name: names[0] }] });
    const second = await client.get(`/v1/skills?limit=1&cursor=${first.body.next_cursor}`);
    expect(second.body.data[0].name).toBe(names[1]);
    expect((await client.get("/v1/skills?cursor=garbage")).body.error.code).toBe("invalid_cursor");

    const one = await client.get("/v1/skills/register-media");
    expect(one.status).toBe(200);
    expect(one.body.steps).toContain("{{urls}}");
    expect(one.body.markdown).toStartWith("---\nname: register-media\n");
    const missing = await client.get("/v1/skills/no-such-skill");
    expect(missing.status).toBe(404);
    expect(missing.body.error.code).toBe("skill_not_found");
    expect((await client.get("/v1/skills/Not_A_Slug")).status).toBe(400);
  });
});

describe("an app's own skills", () => {
  test("POST as markdown creates (201), again with changes makes a new version (200), the same again changes nothing; DELETE removes it", async () => {
    const created = await client.post("/v1/skills", { markdown: OWN_SKILL });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ name: "greet-customer", source: "app", version: 1, markdown: OWN_SKILL, steps: "Greet {{customer}} warmly. Tone: {{tone}}." });
    expect(created.body.inputs).toEqual([{ name: "customer", description: "The customer's name", required: true }, { name: "tone", description: "", required: false }]);
    const same = await client.post("/v1/skills", { markdown: OWN_SKILL });
    expect(same.status).toBe(200);
    expect(same.body.version).toBe(1);
    const changed = await client.post("/v1/skills", { markdown: OWN_SKILL.replace("warmly", "briefly") });
    expect(changed.status).toBe(200);
    expect(changed.body).toMatchObject({ version: 2, steps: "Greet {{customer}} briefly. Tone: {{tone}}." });
    expect((await client.get("/v1/skills/greet-customer")).body.version).toBe(2);
    expect((await client.get("/v1/skills")).body.data.map((s: any) => s.name)).toContain("greet-customer");

    const deleted = await client.del("/v1/skills/greet-customer");
    expect(deleted.body).toEqual({ name: "greet-customer", object: "skill", deleted: true });
    expect((await client.get("/v1/skills/greet-customer")).status).toBe(404);
    expect((await client.del("/v1/skills/greet-customer")).body.error.code).toBe("skill_not_found");
    const shipped = await client.del("/v1/skills/register-media");
    expect(shipped.status).toBe(409);
    expect(shipped.body.error.code).toBe("skill_shipped");
  });

  test("POST as fields is written out as Markdown; an app skill of a shipped name takes its place until deleted", async () => {
    const r = await client.post("/v1/skills", {
      name: "structured-summary", description: "The app's own summary", steps: "Summarise {{text}} in one line.",
      inputs: [{ name: "text", description: "What to summarise", required: true }],
    });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ source: "app", version: 1, output_schema: null });
    expect(r.body.markdown).toStartWith('---\nname: structured-summary\ndescription: "The app\'s own summary"\n');
    expect((await client.get("/v1/skills/structured-summary")).body.source).toBe("app");
    expect((await client.del("/v1/skills/structured-summary")).status).toBe(200);
    expect((await client.get("/v1/skills/structured-summary")).body.source).toBe("shipped");
  });

  test("bad skills are 400s naming the problem; nothing is stored", async () => {
    const cases: Array<[unknown, string, RegExp]> = [
      [{ markdown: "no front matter" }, "markdown", /does not parse: line 1: a skill starts with a front matter block/],
      [{ markdown: "---\nname: x\ndescription: d\n---\nUse {{nope}}.\n" }, "markdown", /line 5: the steps use \{\{nope\}\}/],
      [{ markdown: OWN_SKILL, name: "x" }, "name", /markdown or as fields, not both/],
      [{ name: "x", description: "d" }, "steps", /steps is required/],
      [{ name: "x", description: "d", steps: "Use {{y}}." }, "steps", /the steps use \{\{y\}\}/],
      [{ name: "x", description: "d", steps: "s", output_schema: { type: 7 } }, "output_schema", /output_schema is not a valid JSON Schema/],
      [{ name: "Bad Name", description: "d", steps: "s" }, "name", /./],
      [{ name: "x", description: "d", steps: "s", colour: "red" }, "colour", /./],
    ];
    for (const [body, param, message] of cases) {
      const r = await client.post("/v1/skills", body);
      expect({ body, status: r.status, code: r.body.error.code }).toEqual({ body, status: 400, code: "invalid_request" });
      expect({ body, param: r.body.error.details?.param, message: r.body.error.message }).toEqual({ body, param, message: expect.stringMatching(message) });
    }
    expect((await client.get("/v1/skills/x")).status).toBe(404);
    const notJson = await fetch(`${server.url}/v1/skills`, { method: "POST", headers: { "x-api-key": TEST_KEY, "content-type": "text/markdown" }, body: OWN_SKILL });
    expect(notJson.status).toBe(415);
  });

  test("another app, and the app's own test data, do not see an app's skills; a read-only key cannot save", async () => {
    expect((await client.post("/v1/skills", { markdown: OWN_SKILL })).status).toBe(201);
    const other = await otherApp();
    expect((await other.get("/v1/skills/greet-customer")).status).toBe(404);
    expect((await other.get("/v1/skills")).body.data.map((s: any) => s.name)).not.toContain("greet-customer");
    expect((await other.del("/v1/skills/greet-customer")).status).toBe(404);
    // The other app saves a skill of the same name: each sees its own.
    expect((await other.post("/v1/skills", { markdown: OWN_SKILL.replace("warmly", "formally") })).body.version).toBe(1);
    expect((await client.get("/v1/skills/greet-customer")).body.steps).toContain("warmly");
    const sid = await newSession(other);
    const run = await other.post(`/v1/sessions/${sid}/run-skill`, { skill: "greet-customer", inputs: { customer: "Ada" }, wait: true });
    expect(run.status).toBe(200);
    const queued = (await other.get(`/v1/jobs/${run.body.job_id}/events?since=0`)).body.events[0];
    expect(queued.payload.input.skill.prompt).toContain("Greet Ada formally.");

    const readOnly = await otherApp("live", ["data:read"]);
    expect((await readOnly.get("/v1/skills")).status).toBe(200);
    const refused = await readOnly.post("/v1/skills", { markdown: OWN_SKILL });
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe("insufficient_scope");
    // data:write is not enough to change what the app's agents are asked to do.
    const writer = await otherApp("live", ["data:write"]);
    expect((await writer.post("/v1/skills", { markdown: OWN_SKILL })).body.error.code).toBe("insufficient_scope");
    expect((await writer.del("/v1/skills/greet-customer")).body.error.code).toBe("insufficient_scope");

    const test = await otherApp("test");
    expect((await test.get("/v1/skills")).body.data.map((s: any) => s.name)).not.toContain("greet-customer");
  });
});

describe("running a skill on the sandbox", () => {
  test("run-skill register-media on the default agent: the plan is approved, the URLs become assets, the job records the skill", async () => {
    const sid = await newSession();
    const urls = "https://example.com/shoot/cat.png https://example.com/shoot/clip.mp4";
    const run = await client.post(`/v1/sessions/${sid}/run-skill`, { skill: "register-media", inputs: { urls, purpose: "a product page" } });
    expect(run.status).toBe(202);
    expect(run.body).toMatchObject({ session_id: sid, status: "pending", queued: false });
    // The default agent asks before registering assets, as in the quick start.
    const waiting = await client.waitForStatus(run.body.job_id, ["awaiting_approval"]);
    expect(waiting.approval.plan.steps.map((s: any) => s.args)).toEqual([
      { url: "https://example.com/shoot/cat.png", kind: "image" }, { url: "https://example.com/shoot/clip.mp4", kind: "video" },
    ]);
    expect((await client.post(`/v1/jobs/${run.body.job_id}/approve`)).status).toBe(200);
    const events = await client.pollUntilDone(run.body.job_id);
    expect(events.at(-1).type).toBe("job.completed");
    expect(events.at(-1).payload.content).toContain("register_asset → asset_1; register_asset → asset_2");
    const assets = (await client.get(`/v1/sessions/${sid}/assets`)).body.data;
    expect(assets.map((a: any) => [a.asset_label, a.url, a.kind])).toEqual([
      ["asset_1", "https://example.com/shoot/cat.png", "image"], ["asset_2", "https://example.com/shoot/clip.mp4", "video"],
    ]);
    // For auditors: the job's first event names the skill, its hash and the prompt the model was given.
    const shipped = (await client.get("/v1/skills/register-media")).body;
    const skill = events[0].payload.input.skill;
    expect(skill).toMatchObject({ name: "register-media", source: "shipped", version: null, sha256: shipped.sha256, inputs: { urls, purpose: "a product page" } });
    expect(skill.prompt).toContain(`once per URL: ${urls}`);
    expect(skill.prompt).toContain("Purpose: a product page");
    expect(events[0].payload.input.content).toBe("");
    // The history shows the turn like any other.
    const history = (await client.get(`/v1/sessions/${sid}/messages`)).body.data;
    expect(history.map((m: any) => m.role)).toEqual(["user", "assistant"]);
    expect(history[1].assets).toEqual(["asset_1", "asset_2"]);
  });

  test("structured-summary answers JSON matching the skill's output schema (the job's result)", async () => {
    const sid = await newSession();
    const run = await client.post(`/v1/sessions/${sid}/run-skill`, { skill: "structured-summary", inputs: { text: "Sales rose 12% while costs fell.", max_points: 3 }, wait: true });
    expect(run.status).toBe(200);
    expect(run.body.status).toBe("completed");
    const result = run.body.reply.result;
    expect(Object.keys(result).sort()).toEqual(["actions", "key_points", "sentiment", "title"]);
    expect(["positive", "neutral", "negative", "mixed"]).toContain(result.sentiment);
    expect(result.key_points.length).toBeGreaterThan(0);
    const job = (await client.get(`/v1/jobs/${run.body.job_id}`)).body;
    expect(job.result).toEqual(result);
    expect(job.input.skill.output_schema.required).toEqual(["title", "key_points", "sentiment", "actions"]);
  });

  test("`skill` on a message: the message's own content follows the skill's steps", async () => {
    const sid = await newSession();
    const sent = await client.post(`/v1/sessions/${sid}/messages`, { content: "Thanks!", skill: "greet-customer", inputs: { customer: "Grace" }, wait: true });
    expect(sent.status).toBe(200);
    expect(sent.body.status).toBe("completed");
    // The sandbox quotes what it was given: the skill's prompt first.
    expect(sent.body.reply.content).toContain('Sandbox reply to «Run the skill "greet-customer": Greets a customer by name');
    const queued = (await client.get(`/v1/jobs/${sent.body.job_id}/events?since=0`)).body.events[0].payload.input;
    expect(queued.content).toBe("Thanks!");
    // Version 3: saved, changed, deleted and saved again above (versions count on through a delete).
    expect(queued.skill).toMatchObject({ name: "greet-customer", source: "app", version: 3, inputs: { customer: "Grace" } });
    expect(queued.skill.prompt).toContain("Greet Grace warmly. Tone: (not given).");
  });

  test("unknown skills are 404, unknown or missing inputs 400 naming the input; nothing is stored", async () => {
    const sid = await newSession();
    const cases: Array<[string, unknown, number, string, string | undefined]> = [
      ["run-skill", { skill: "no-such-skill" }, 404, "skill_not_found", "skill"],
      ["run-skill", { skill: "register-media" }, 400, "invalid_request", "inputs.urls"],
      ["run-skill", { skill: "register-media", inputs: { urls: "  " } }, 400, "invalid_request", "inputs.urls"],
      ["run-skill", { skill: "register-media", inputs: { urls: "https://x.example/a.png", colour: "red" } }, 400, "invalid_request", "inputs.colour"],
      ["run-skill", { skill: "register-media", inputs: { urls: "x".repeat(10_001) } }, 400, "invalid_request", "inputs.urls"],
      ["run-skill", { skill: "register-media", inputs: { urls: { nested: true } } }, 400, "invalid_request", undefined],
      ["run-skill", { inputs: {} }, 400, "invalid_request", "skill"],
      ["messages", { content: "hi", skill: "no-such-skill" }, 404, "skill_not_found", "skill"],
      ["messages", { content: "hi", skill: "structured-summary" }, 400, "invalid_request", "inputs.text"],
      ["messages", { content: "hi", inputs: { text: "x" } }, 400, "invalid_request", "inputs"],
    ];
    for (const [route, body, status, code, param] of cases) {
      const r = await client.post(`/v1/sessions/${sid}/${route}`, body);
      expect({ route, body, status: r.status, code: r.body.error?.code }).toEqual({ route, body, status, code });
      if (param) expect({ body, param: r.body.error.details?.param }).toEqual({ body, param });
    }
    const missing = await client.post(`/v1/sessions/${sid}/run-skill`, { skill: "structured-summary", inputs: {} });
    expect(missing.body.error.message).toBe("Missing required input text for skill structured-summary: The text to summarise");
    expect((await client.get(`/v1/sessions/${sid}/messages`)).body.data).toEqual([]);
    expect((await client.get(`/v1/sessions/${sid}`)).body).toMatchObject({ status: "idle", message_count: 0 });
    expect((await client.post("/v1/sessions/sess_nope/run-skill", { skill: "register-media", inputs: { urls: "https://x.example/a.png" } })).status).toBe(404);
  });

  test("run-skill honours Idempotency-Key like a message: the same request answers the same job; another body is 409", async () => {
    const sid = await newSession();
    const body = { skill: "structured-summary", inputs: { text: "Idempotent." } };
    const headers = { "idempotency-key": `skill-${sid}` };
    const first = await client.post(`/v1/sessions/${sid}/run-skill`, body, headers);
    expect(first.status).toBe(202);
    const again = await client.post(`/v1/sessions/${sid}/run-skill`, body, headers);
    expect(again.status).toBe(202);
    expect(again.body.job_id).toBe(first.body.job_id);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    const other = await client.post(`/v1/sessions/${sid}/run-skill`, { ...body, inputs: { text: "Else." } }, headers);
    expect(other.status).toBe(409);
    expect(other.body.error.code).toBe("idempotency_conflict");
    await client.pollUntilDone(first.body.job_id);
    expect((await client.get(`/v1/sessions/${sid}/jobs`)).body.data).toHaveLength(1);
  });
});

describe("what the model is given", () => {
  let wire: WireServer;
  let wired: TestServer;
  beforeAll(async () => {
    wire = startOpenAiWireServer();
    wired = await startTestServer({ API_KEY: TEST_KEY, LLM_PROVIDER: "openai", LLM_API_KEY: "sk-wire", LLM_BASE_URL: wire.baseURL, LLM_MODEL: "wire-model" });
  });
  afterAll(async () => {
    await wired?.stop();
    wire?.stop();
  });

  test("the turn's user message is the skill's steps with the inputs filled in, then what the user wrote; the skill's schema shapes the reply", async () => {
    const c = api(wired.url);
    const agent = await c.post("/v1/agents", { name: "Plain", approval: "never" });
    const sid = (await c.post("/v1/sessions", { user_id: "u", agent_id: agent.body.id })).body.id;
    wire.script({ kind: "text", chunks: ['{"title": "Revenue", "key_points": ["Revenue doubled."], ', '"sentiment": "positive", "actions": []}'] });
    const run = await c.post(`/v1/sessions/${sid}/run-skill`, { skill: "structured-summary", inputs: { text: "Revenue doubled.", audience: "engineers" }, content: "Keep it short.", wait: true });
    expect(run.body.status).toBe("completed");
    expect(run.body.reply.result).toEqual({ title: "Revenue", key_points: ["Revenue doubled."], sentiment: "positive", actions: [] });
    const request = wire.requests.at(-1)!.body;
    const user = request.messages.at(-1);
    expect(user.role).toBe("user");
    expect(user.content).toStartWith([
      'Run the skill "structured-summary": Summarises a text as JSON - a title, the key points, the sentiment and an action list',
      "", "Inputs:", "- text: Revenue doubled.", "- audience: engineers", "- max_points: (not given)",
      "", "Steps:",
      "Summarise the text below. Audience: engineers (write for a general reader when not given).",
    ].join("\n"));
    expect(user.content).toContain("at most (not given) of them (5 when not given)");
    expect(user.content).toEndWith("The text:\n\nRevenue doubled.\n\nKeep it short.");
    // The skill's output schema is the turn's: the model is asked for JSON matching it.
    expect(request.messages[0].content).toContain('"required":["title","key_points","sentiment","actions"]');

    // A later turn sees the skill's turn as it was: the prompt, then the reply.
    await c.post(`/v1/sessions/${sid}/messages`, { content: "And now?", wait: true });
    const later = wire.requests.at(-1)!.body.messages;
    expect(later.map((m: any) => m.role)).toEqual(["system", "user", "assistant", "user"]);
    expect(later[1].content).toBe(user.content);
    expect(later[3].content).toBe("And now?");
  });
});
