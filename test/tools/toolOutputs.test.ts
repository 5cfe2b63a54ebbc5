/**
 * Assets from any tool, and tool events, end to end over real ports: an HTTP tool on loopback (allowed
 * by TOOL_PRIVATE_ALLOWLIST) answers with assets, or streams NDJSON events before its result; a
 * built-in tool emits through its context. What the job's events, the session's assets, the reply and
 * the SSE stream at each verbosity show is checked, and so is every malformed answer becoming a tool
 * error the model sees.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { api, readSse, TEST_KEY, type Api } from "../support/api.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { BUILTIN_TOOLS } from "../../src/tools/registry.ts";
import type { Tool } from "../../src/tools/tool.ts";
import { checkAssets, checkEmission, MAX_ASSETS_PER_CALL, MAX_EVENTS_PER_CALL } from "../../src/tools/toolOutput.ts";

let server: TestServer;
let client: Api;
let toolServer: ReturnType<typeof Bun.serve>;
/** What the tool server answers next, by the `case` argument the model passes. */
const answers: Record<string, () => Response> = {};
const hits: unknown[] = [];

const ndjson = (lines: unknown[], gapMs = 0): Response => {
  const encoder = new TextEncoder();
  return new Response(new ReadableStream({
    async start(controller) {
      for (const line of lines) {
        controller.enqueue(encoder.encode(typeof line === "string" ? line : `${JSON.stringify(line)}\n`));
        if (gapMs) await Bun.sleep(gapMs);
      }
      controller.close();
    },
  }), { headers: { "content-type": "application/x-ndjson" } });
};

// A built-in that reports progress through its context, then returns an asset: registered here for
// the test only, the way any built-in is (by name, in BUILTIN_TOOLS).
const progressBuiltin = (): Tool => ({
  name: "test_render", description: "Renders something slowly", parameters: { type: "object" }, requires_approval: false, estimated_credits: 0,
  async execute(_args, ctx) {
    await ctx.emit!({ type: "progress", progress: 0.25 });
    await ctx.emit!({ type: "progress", progress: 1, message: "rendered" });
    await ctx.emit!({ type: "info", content: "Your render is ready" });
    return { result: { frames: 12 }, assets: [{ url: "https://cdn.example.com/render.mp4", kind: "video", prompt: "a render" }] };
  },
});

beforeAll(async () => {
  BUILTIN_TOOLS.test_render = progressBuiltin;
  toolServer = Bun.serve({
    port: 0,
    async fetch(req) {
      const body = (await req.json()) as { case: string };
      hits.push({ body, accept: req.headers.get("accept"), job: req.headers.get("x-agentry-job-id") });
      const answer = answers[body.case];
      return answer ? answer() : new Response("unknown case", { status: 404 });
    },
  });
  server = await startTestServer({ API_KEY: TEST_KEY, SANDBOX_CHUNK_DELAY_MS: "1", TOOL_PRIVATE_ALLOWLIST: "127.0.0.1", ADMIN_TOKEN: ROOT });
  client = api(server.url);
});

afterAll(async () => {
  delete BUILTIN_TOOLS.test_render;
  toolServer?.stop(true);
  await server?.stop();
});

async function agentWithTools() {
  const r = await client.post("/v1/agents", {
    name: "Generator", approval: "never",
    tools: [
      { type: "http", name: "generate", description: "Generates media", url: `http://127.0.0.1:${toolServer.port}/generate`, parameters: { type: "object", properties: { case: { type: "string" } } } },
      { type: "builtin", name: "test_render" },
    ],
  });
  expect(r.status).toBe(201);
  return r.body.id as string;
}

async function sessionFor(agentId: string) {
  const r = await client.post("/v1/sessions", { user_id: "u-tools", agent_id: agentId });
  expect(r.status).toBe(201);
  return r.body.id as string;
}

const ROOT = "agr_test_root_token_for_tool_outputs_01";
const callGenerate = (c: string) => `call generate {"case": "${c}"}`;

/** Uploads a small text file to the session (as the app's backend would): its file id. */
async function uploadTo(sessionId: string, name: string, key = TEST_KEY): Promise<string> {
  const form = new FormData();
  form.set("file", new File(["rendered"], name, { type: "text/plain" }));
  const res = await fetch(`${server.url}/v1/sessions/${sessionId}/files`, { method: "POST", headers: { "x-api-key": key }, body: form });
  expect(res.status).toBe(201);
  return ((await res.json()) as any).id;
}

describe("assets from an HTTP tool", () => {
  test("a JSON answer's assets are registered with atomic labels, shown in tool.completed, the reply, the history and the session's assets", async () => {
    const sid = await sessionFor(await agentWithTools());
    const fileId = await uploadTo(sid, "render.txt");
    answers.two = () => Response.json({
      status: "done", assets: [
        { url: "https://cdn.example.com/cat.png", kind: "image", prompt: "a cat", model: "img-1" },
        { file_id: fileId, kind: "file" },
      ],
    });
    // One asset registered first by the client, so the tool's labels follow it.
    expect((await client.post(`/v1/sessions/${sid}/assets`, { url: "https://example.com/upload.png", kind: "image" })).body.asset_label).toBe("asset_1");
    const sent = await client.post(`/v1/sessions/${sid}/messages`, { content: callGenerate("two"), wait: true });
    expect(sent.status).toBe(200);
    expect(sent.body.reply.assets).toEqual(["asset_2", "asset_3"]);
    // The model is shown the registered assets with their labels (the sandbox's summary names them).
    expect(sent.body.reply.content).toContain("generate → asset_2, asset_3");
    const completed = (await client.pollUntilDone(sent.body.job_id)).find((e) => e.type === "tool.completed");
    expect(completed.payload.assets).toEqual([
      { asset_label: "asset_2", kind: "image", url: "https://cdn.example.com/cat.png", file_id: null, prompt: "a cat" },
      { asset_label: "asset_3", kind: "file", url: null, file_id: fileId, prompt: null },
    ]);
    expect(completed.payload.asset).toMatchObject({ asset_label: "asset_2" });
    expect(completed.payload.result).toEqual({ status: "done", assets: completed.payload.assets });
    expect(completed.payload.error).toBeNull();

    const listed = (await client.get(`/v1/sessions/${sid}/assets`)).body.data;
    expect(listed.map((a: any) => [a.asset_label, a.url, a.file_id, a.source_tool, a.job_id])).toEqual([
      ["asset_1", "https://example.com/upload.png", null, "upload", null],
      ["asset_2", "https://cdn.example.com/cat.png", null, "generate", sent.body.job_id],
      ["asset_3", null, fileId, "generate", sent.body.job_id],
    ]);
    expect(listed[1]).toMatchObject({ kind: "image", prompt: "a cat", model: "img-1" });
    expect((await client.get(`/v1/sessions/${sid}`)).body.asset_count).toBe(3);
    const history = (await client.get(`/v1/sessions/${sid}/messages`)).body.data;
    expect(history.at(-1).assets).toEqual(["asset_2", "asset_3"]);
    // The session's own stream shows each registration.
    const sessionEvents = (await client.get(`/v1/sessions/${sid}/events?since=0`)).body.events;
    expect(sessionEvents.filter((e: any) => e.type === "asset.registered").map((e: any) => e.payload.asset_label)).toEqual(["asset_1", "asset_2", "asset_3"]);
  });

  test("a file_id of any form the files API issues registers: a message's inline attachment, an app-level upload", async () => {
    const sid = await sessionFor(await agentWithTools());
    const sent = await client.post(`/v1/sessions/${sid}/messages`, { content: "here", attachments: [{ type: "file", name: "in.txt", data: Buffer.from("inline").toString("base64") }], wait: true });
    const inlineId = (await client.get(`/v1/sessions/${sid}/files`)).body.data[0].id as string;
    expect(inlineId).toBe(`file_${sent.body.message_id.replace(/^msg_/, "")}_0`);
    const ticket = (await client.post("/v1/uploads", { name: "app.txt", content_type: "text/plain" })).body;
    expect((await fetch(ticket.upload_url, { method: "PUT", body: "app-level" })).status).toBe(201);
    answers.issued = () => Response.json({ assets: [{ file_id: inlineId, kind: "file" }, { file_id: ticket.file_id, kind: "file" }] });
    const r = await client.post(`/v1/sessions/${sid}/messages`, { content: callGenerate("issued"), wait: true });
    expect(r.body.reply.tool_calls[0].error).toBeNull();
    expect(r.body.reply.assets).toEqual(["asset_1", "asset_2"]);
    expect((await client.get(`/v1/sessions/${sid}/assets`)).body.data.map((a: any) => a.file_id)).toEqual([inlineId, ticket.file_id]);
  });

  test("register_asset's tool.completed shows its asset in assets too", async () => {
    const agent = await client.post("/v1/agents", { name: "Registrar", approval: "never", tools: [{ type: "builtin", name: "register_asset" }] });
    const sid = await sessionFor(agent.body.id);
    const sent = await client.post(`/v1/sessions/${sid}/messages`, { content: "Please register https://example.com/dog.png", wait: true });
    const completed = (await client.pollUntilDone(sent.body.job_id)).find((e) => e.type === "tool.completed");
    expect(completed.payload.asset).toMatchObject({ asset_label: "asset_1", url: "https://example.com/dog.png" });
    expect(completed.payload.assets).toEqual([{ asset_label: "asset_1", kind: "image", url: "https://example.com/dog.png", file_id: null, prompt: null }]);
  });

  test("in a run (no session) the assets are recorded on the job only, unlabelled", async () => {
    answers.run = () => Response.json({ assets: [{ url: "https://cdn.example.com/run.png", kind: "image" }] });
    const run = await client.post("/v1/runs", { user_id: "u-tools", agent_id: await agentWithTools(), input: callGenerate("run") });
    expect(run.status).toBe(202);
    const events = await client.pollUntilDone(run.body.job_id);
    const completed = events.find((e) => e.type === "tool.completed");
    expect(completed.payload.assets).toEqual([{ asset_label: null, kind: "image", url: "https://cdn.example.com/run.png", file_id: null, prompt: null }]);
    expect(completed.payload.result).toEqual({ assets: completed.payload.assets });
    expect(events.at(-1).type).toBe("job.completed");
  });

  test("bad answers become tool errors the model sees; nothing is registered and the job completes", async () => {
    const many = Array.from({ length: MAX_ASSETS_PER_CALL + 1 }, (_, i) => ({ url: `https://cdn.example.com/${i}.png`, kind: "image" }));
    const cases: Record<string, [unknown, RegExp]> = {
      notArray: [{ assets: { url: "https://x.example/a.png", kind: "image" } }, /generate returned unusable assets: assets must be an array/],
      badKind: [{ assets: [{ url: "https://x.example/a.png", kind: "hologram" }] }, /assets\/0\/kind/],
      tooMany: [{ assets: many }, new RegExp(`at most ${MAX_ASSETS_PER_CALL} per call`)],
      both: [{ assets: [{ url: "https://x.example/a.png", file_id: "file_abc", kind: "image" }] }, /exactly one of the two/],
      neither: [{ assets: [{ kind: "image" }] }, /exactly one of the two/],
      badFileId: [{ assets: [{ file_id: "../etc/passwd", kind: "file" }] }, /assets\/0\/file_id/],
      badUrl: [{ assets: [{ url: "ftp://x.example/a.png", kind: "image" }] }, /assets\/0\/url/],
      extraField: [{ assets: [{ url: "https://x.example/a.png", kind: "image", size: 3 }] }, /assets\/0/],
    };
    const sid = await sessionFor(await agentWithTools());
    // A file_id must name a file of the job's own app that is there now: not one that never was, not a
    // removed one, not one of the app's test data (another partition).
    const removed = await uploadTo(sid, "gone.txt");
    expect((await client.del(`/v1/files/${removed}`)).status).toBe(200);
    const testKey = (await api(server.url, "").post("/v1/apps/app_default/keys", { name: "test", mode: "test" }, { authorization: `Bearer ${ROOT}` })).body.key;
    const otherPartition = await uploadTo((await api(server.url, testKey).post("/v1/sessions", { user_id: "u-tools" })).body.id, "other.txt", testKey);
    // Nor another end user's file of the same app.
    const otherUser = await uploadTo((await client.post("/v1/sessions", { user_id: "u-tools-other" })).body.id, "theirs.txt");
    cases.otherUserFile = [{ assets: [{ file_id: otherUser, kind: "file" }] }, /names no file of this app and user/];
    cases.unknownFile = [{ assets: [{ file_id: "file_0123abcd", kind: "file" }] }, /names no file of this app/];
    cases.removedFile = [{ assets: [{ file_id: removed, kind: "file" }] }, /names no file of this app/];
    cases.otherPartitionFile = [{ assets: [{ file_id: otherPartition, kind: "file" }] }, /names no file of this app/];
    for (const [name, [body]] of Object.entries(cases)) answers[name] = () => Response.json(body);
    for (const [name, [, message]] of Object.entries(cases)) {
      const sent = await client.post(`/v1/sessions/${sid}/messages`, { content: callGenerate(name), wait: true });
      expect({ name, status: sent.status, job: sent.body.status }).toEqual({ name, status: 200, job: "completed" });
      expect({ name, error: sent.body.reply.tool_calls[0].error }).toEqual({ name, error: expect.stringMatching(message) });
      expect(sent.body.reply.tool_calls[0].result).toBeNull();
      expect(sent.body.reply.assets).toEqual([]);
      const completed = (await client.pollUntilDone(sent.body.job_id)).find((e) => e.type === "tool.completed");
      expect(completed.payload).toMatchObject({ assets: [], asset: null, result: null });
      // The model saw the error: the sandbox's summary quotes it.
      expect(sent.body.reply.content).toContain("generate → error:");
    }
    expect((await client.get(`/v1/sessions/${sid}/assets`)).body.data).toEqual([]);
  });
});

describe("tool events", () => {
  test("an NDJSON answer's progress, info and canvas_op lines become job events, in order, before tool.completed", async () => {
    answers.stream = () => ndjson([
      { type: "progress", progress: 0 },
      { type: "progress", progress: 0.5, message: "halfway" },
      { type: "info", content: "Rendering your image" },
      { type: "canvas_op", op: "move", args: { asset: "asset_1", x: 10, y: 20 } },
      "\n",
      { type: "result", result: { ok: true }, assets: [{ url: "https://cdn.example.com/streamed.png", kind: "image" }] },
    ], 5);
    const sid = await sessionFor(await agentWithTools());
    const sent = await client.post(`/v1/sessions/${sid}/messages`, { content: callGenerate("stream") });
    const events = await client.pollUntilDone(sent.body.job_id);
    const types = events.map((e) => e.type);
    const from = types.indexOf("tool.called");
    expect(types.slice(from, from + 7)).toEqual(["tool.called", "tool.progress", "tool.progress", "info", "canvas_op", "tool.completed", "text"]);
    const callId = events[from].payload.call_id;
    expect(events.slice(from + 1, from + 5).map((e) => e.payload)).toEqual([
      { call_id: callId, progress: 0, message: null },
      { call_id: callId, progress: 0.5, message: "halfway" },
      { call_id: callId, content: "Rendering your image" },
      { call_id: callId, op: "move", args: { asset: "asset_1", x: 10, y: 20 } },
    ]);
    expect(events[from + 5].payload).toMatchObject({ result: { ok: true, assets: [{ asset_label: "asset_1" }] }, error: null });
    // The tool was asked for either form.
    expect(hits.at(-1)).toMatchObject({ accept: "application/json, application/x-ndjson", job: sent.body.job_id });

    // SSE shows them by verbosity: info at every level, canvas_op from standard, tool.progress at full only.
    const seen = async (verbosity: string) => {
      const res = await fetch(`${server.url}/v1/jobs/${sent.body.job_id}/stream?verbosity=${verbosity}`, { headers: { "x-api-key": TEST_KEY } });
      const sse = await readSse(res, (evs) => evs.some((e) => e.event === "done"));
      return sse.map((e) => e.event).filter((t) => ["tool.progress", "info", "canvas_op"].includes(t));
    };
    expect(await seen("minimal")).toEqual(["info"]);
    expect(await seen("standard")).toEqual(["info", "canvas_op"]);
    expect(await seen("full")).toEqual(["tool.progress", "tool.progress", "info", "canvas_op"]);
  });

  test("a built-in tool emits through its context: its progress and info are job events, its assets registered", async () => {
    const sid = await sessionFor(await agentWithTools());
    const sent = await client.post(`/v1/sessions/${sid}/messages`, { content: "call test_render {}", wait: true });
    expect(sent.body.reply.assets).toEqual(["asset_1"]);
    const events = await client.pollUntilDone(sent.body.job_id);
    const shown = events.filter((e) => ["tool.progress", "info", "tool.completed"].includes(e.type)).map((e) => [e.type, e.payload.progress ?? e.payload.content ?? e.payload.assets]);
    expect(shown).toEqual([
      ["tool.progress", 0.25], ["tool.progress", 1], ["info", "Your render is ready"],
      ["tool.completed", [{ asset_label: "asset_1", kind: "video", url: "https://cdn.example.com/render.mp4", file_id: null, prompt: "a render" }]],
    ]);
    expect((await client.get(`/v1/sessions/${sid}/assets`)).body.data[0]).toMatchObject({ asset_label: "asset_1", source_tool: "test_render", kind: "video" });
  });

  test("bad streams become tool errors the model sees; events recorded before the fault stay", async () => {
    const tooMany = Array.from({ length: MAX_EVENTS_PER_CALL + 1 }, (_, i) => ({ type: "progress", progress: i / (MAX_EVENTS_PER_CALL + 1) }));
    const cases: Record<string, [unknown[], RegExp, number]> = {
      noResult: [[{ type: "progress", progress: 0.1 }], /ended its stream without a result line/, 1],
      notJson: [[{ type: "progress", progress: 0.1 }, "not json\n"], /not JSON \(line 2\)/, 1],
      unknownType: [[{ type: "explode" }], /type is not progress, info, canvas_op, result or error \(line 1\)/, 0],
      badProgress: [[{ type: "progress", progress: 7 }, { type: "result", result: 1 }], /progress event is malformed at \/progress/, 0],
      emptyProgress: [[{ type: "progress" }, { type: "result", result: 1 }], /needs progress \(0\.\.1\), a message, or both/, 0],
      afterResult: [[{ type: "result", result: 1 }, { type: "info", content: "late" }], /after its result \(line 2\)/, 0],
      cutLine: [[{ type: "info", content: "hi" }, '{"type": "res'], /in the middle of a line/, 1],
      errorLine: [[{ type: "progress", progress: 0.9 }, { type: "error", message: "out of GPUs" }], /generate failed: out of GPUs/, 1],
      tooMany: [[...tooMany, { type: "result", result: 1 }], new RegExp(`more than ${MAX_EVENTS_PER_CALL} events`), MAX_EVENTS_PER_CALL],
      badAssets: [[{ type: "result", result: 1, assets: "nope" }], /assets must be an array/, 0],
    };
    for (const [name, [lines]] of Object.entries(cases)) answers[name] = () => ndjson(lines);
    const sid = await sessionFor(await agentWithTools());
    for (const [name, [, message, recorded]] of Object.entries(cases)) {
      const sent = await client.post(`/v1/sessions/${sid}/messages`, { content: callGenerate(name), wait: true });
      expect({ name, status: sent.status, job: sent.body.status }).toEqual({ name, status: 200, job: "completed" });
      expect({ name, error: sent.body.reply.tool_calls[0].error }).toEqual({ name, error: expect.stringMatching(message) });
      const events = await client.pollUntilDone(sent.body.job_id);
      const emitted = events.filter((e) => ["tool.progress", "info", "canvas_op"].includes(e.type)).length;
      expect({ name, emitted }).toEqual({ name, emitted: recorded });
    }
    expect((await client.get(`/v1/sessions/${sid}/assets`)).body.data).toEqual([]);
  });

  test("a non-2xx NDJSON answer is an HTTP error; its lines are not read", async () => {
    answers.failed = () => new Response(`${JSON.stringify({ type: "info", content: "should not show" })}\n`, { status: 503, headers: { "content-type": "application/x-ndjson" } });
    const sid = await sessionFor(await agentWithTools());
    const sent = await client.post(`/v1/sessions/${sid}/messages`, { content: callGenerate("failed"), wait: true });
    expect(sent.body.reply.tool_calls[0].error).toBe("generate answered HTTP 503");
    expect((await client.pollUntilDone(sent.body.job_id)).some((e) => e.type === "info")).toBe(false);
  });
});

describe("the checks, as units", () => {
  test("assets", () => {
    expect(checkAssets([{ url: "https://a.example/x.png", kind: "image", prompt: "p" }, { file_id: "file_1", kind: "audio" }])).toHaveLength(2);
    expect(checkAssets([])).toEqual([]);
    expect(checkAssets([{ file_id: "file_019b0c2a7d3e4f5a8b9c0d1e2f3a4b5c_12", kind: "file" }])).toHaveLength(1);
    for (const file_id of ["file_abc_", "file_a_b_1", "file_abc_x", "file_abc_12345", "file_../x", "file_"]) {
      expect(() => checkAssets([{ file_id, kind: "file" }])).toThrow(/assets\/0\/file_id/);
    }
    expect(() => checkAssets(null)).toThrow("assets must be an array");
    expect(() => checkAssets([{ url: "https://a.example/x.png", kind: "image", prompt: 3 }])).toThrow(/assets\/0\/prompt/);
  });

  test("emissions", () => {
    expect(checkEmission({ type: "progress", message: "working" })).toEqual({ type: "progress", message: "working" });
    expect(checkEmission({ type: "canvas_op", op: "arrange", args: {} })).toEqual({ type: "canvas_op", op: "arrange", args: {} });
    expect(() => checkEmission({ type: "info", content: "" })).toThrow(/an? info event is malformed at \/content/);
    expect(() => checkEmission({ type: "canvas_op", op: "move", args: { blob: "x".repeat(20_000) } })).toThrow(/over 16384 bytes/);
    expect(() => checkEmission({ type: "progress", progress: 0.5, extra: 1 })).toThrow(/malformed/);
    expect(() => checkEmission("progress")).toThrow(/type must be progress, info or canvas_op/);
  });
});
