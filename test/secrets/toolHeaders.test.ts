/**
 * HTTP-tool headers are secrets: sealed by the secret box before they reach an event, masked in every
 * answer, opened only when the runner calls the tool. A real server on a real data folder, a model on
 * the OpenAI wire format (test/support/llmWireServers.ts) and the tool's endpoint on loopback: the
 * header value is sent to the endpoint and found nowhere else — not in an answer, an event, a file of
 * the data folder (read as bytes) or the server's log.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../src/config.ts";
import type { Logger } from "../../src/core/logger.ts";
import type { AgentSpec } from "../../src/domain/agent/agent.ts";
import { DEFAULT_APP_ID } from "../../src/domain/streams.ts";
import { collect } from "../../src/eventstore/port.ts";
import { startServer, type RunningServer } from "../../src/main.ts";
import { isSealed, SecretOpenError } from "../../src/secrets/secretBox.ts";
import { findAgent } from "../../projections/agents/index.ts";
import { filesUnder } from "../support/files.ts";
import { api, TEST_KEY, type Api } from "../support/api.ts";
import { startOpenAiWireServer, type WireServer } from "../support/llmWireServers.ts";

const SECRET = "Bearer tool-secret-XYZ123";
const NEW_SECRET = "Bearer tool-secret-NEW9876";
const LEGACY_SECRET = "Bearer legacy-secret-ABC789";
const NEEDLES = ["tool-secret-XYZ123", "tool-secret-NEW9876"];

/** Every line the server logs, at debug level, as the JSON logger would write it. */
function capturingLogger(lines: string[], base: Record<string, unknown> = {}): Logger {
  const write = (level: string, msg: string, fields?: Record<string, unknown>) => {
    lines.push(JSON.stringify({ level, msg, ...base, ...fields }, (_k, v) =>
      typeof v === "bigint" ? v.toString() : v instanceof Error ? { name: v.name, message: v.message, stack: v.stack } : v));
  };
  return {
    debug: (m, f) => write("debug", m, f), info: (m, f) => write("info", m, f),
    warn: (m, f) => write("warn", m, f), error: (m, f) => write("error", m, f), showSecretOnce: () => {},
    child: (fields) => capturingLogger(lines, { ...base, ...fields }),
  };
}


interface Harness {
  server: RunningServer;
  client: Api;
  wire: WireServer;
  dataDir: string;
  logs: string[];
  /** The Authorization header of each call the tool endpoint received. */
  received: Array<string | null>;
  toolUrl: string;
  stop(): Promise<void>;
}

async function start(): Promise<Harness> {
  const wire = startOpenAiWireServer();
  const received: Array<string | null> = [];
  const endpoint = Bun.serve({
    port: 0, hostname: "127.0.0.1",
    fetch(req) {
      received.push(req.headers.get("authorization"));
      return Response.json({ ok: true });
    },
  });
  const dataDir = mkdtempSync(join(tmpdir(), "agentry-tool-headers-"));
  const logs: string[] = [];
  const server = await startServer(loadConfig({
    PORT: "0", DATA_DIR: dataDir, API_KEY: TEST_KEY, SQLITE_SYNCHRONOUS: "normal", LOG_LEVEL: "debug",
    LLM_PROVIDER: "openai", LLM_API_KEY: "sk-test-model-key", LLM_MODEL: "model-x", LLM_BASE_URL: wire.baseURL,
    TOOL_PRIVATE_ALLOWLIST: "127.0.0.1",
  }), capturingLogger(logs));
  let stopped = false;
  return {
    server, client: api(server.url), wire, dataDir, logs, received, toolUrl: `http://127.0.0.1:${endpoint.port}/lookup`,
    async stop() {
      if (!stopped) await server.shutdown("test");
      stopped = true;
      endpoint.stop(true);
      wire.stop();
    },
  };
}

const lookupTool = (url: string, headers: Record<string, unknown>) => ({
  type: "http", name: "lookup", description: "Look something up", url, parameters: { type: "object", properties: { id: { type: "integer" } } }, headers,
});

/** A turn whose model calls `lookup` once, then answers. */
async function turnCallingTool(h: Harness, agentId: string) {
  const sid = (await h.client.post("/v1/sessions", { user_id: "u", agent_id: agentId })).body.id;
  h.wire.script(
    { kind: "tools", calls: [{ id: `call_${h.received.length}`, name: "lookup", args: "{\"id\":1}" }], usage: { prompt: 5, completion: 5 } },
    { kind: "text", chunks: ["looked it up"], usage: { prompt: 5, completion: 2 } },
  );
  const turn = await h.client.post(`/v1/sessions/${sid}/messages`, { content: "look it up", wait: true });
  expect(turn.status).toBe(200);
  expect(turn.body.status).toBe("completed");
  expect(turn.body.reply.tool_calls[0]).toMatchObject({ name: "lookup", error: null, result: { ok: true } });
  return turn;
}

const allEvents = async (server: RunningServer) => collect(server.ctx.store.readAll());
const text = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? x.toString() : x));

describe("HTTP-tool headers are sealed at rest and never shown", () => {
  let h: Harness;
  /** Every answer the test received, to search for the secrets at the end. */
  const answers: unknown[] = [];
  let agentId: string;

  beforeAll(async () => {
    h = await start();
  });
  afterAll(async () => {
    await h?.stop();
    if (h) rmSync(h.dataDir, { recursive: true, force: true });
  });

  test("create, get, list and patch answers show {has_secret, last4}, never the value", async () => {
    const created = await h.client.post("/v1/agents", { name: "Lookup", approval: "never", tools: [lookupTool(h.toolUrl, { Authorization: SECRET, "X-Short": "abc" })] });
    expect(created.status).toBe(201);
    answers.push(created.body);
    agentId = created.body.id;
    const masked = { Authorization: { has_secret: true, last4: "Z123" }, "X-Short": { has_secret: true, last4: null } };
    expect(created.body.tools[0].headers).toEqual(masked);
    const got = await h.client.get(`/v1/agents/${agentId}`);
    answers.push(got.body);
    expect(got.body.tools[0].headers).toEqual(masked);
    const listed = await h.client.get("/v1/agents");
    answers.push(listed.body);
    expect(listed.body.data.find((a: any) => a.id === agentId).tools[0].headers).toEqual(masked);
    const patched = await h.client.patch(`/v1/agents/${agentId}`, { description: "still looks up" });
    answers.push(patched.body);
    expect(patched.body.tools[0].headers).toEqual(masked);
    // The OpenAPI document says so too.
    const doc = await (await fetch(`${h.server.url}/docs/json`)).json() as any;
    const httpTool = doc.components.schemas.Agent.properties.tools.items.anyOf.find((s: any) => s.properties?.type?.const === "http");
    expect(httpTool.properties.headers.patternProperties["^(.*)$"].properties).toMatchObject({ has_secret: { type: "boolean" } });
  });

  test("a turn calling the tool sends the real header value to the tool's endpoint", async () => {
    const turn = await turnCallingTool(h, agentId);
    answers.push(turn.body, (await h.client.get(`/v1/jobs/${turn.body.job_id}/events?since=0`)).body);
    expect(h.received).toEqual([SECRET]);
    // The model never sees the headers either.
    expect(text(h.wire.requests.map((r) => r.body))).not.toContain("tool-secret");
  });

  test("a patch re-sending the tools as shown keeps the secret working; {keep: true} does too; a new value replaces it", async () => {
    const shown = (await h.client.get(`/v1/agents/${agentId}`)).body.tools;
    const resent = await h.client.patch(`/v1/agents/${agentId}`, { tools: shown });
    expect(resent.status).toBe(200);
    answers.push(resent.body);
    expect(resent.body.tools[0].headers.Authorization).toEqual({ has_secret: true, last4: "Z123" });
    await turnCallingTool(h, agentId);
    expect(h.received.at(-1)).toBe(SECRET);

    const kept = await h.client.patch(`/v1/agents/${agentId}`, { tools: [lookupTool(h.toolUrl, { authorization: { keep: true } })] });
    expect(kept.status).toBe(200);
    answers.push(kept.body);
    expect(kept.body.tools[0].headers).toEqual({ authorization: { has_secret: true, last4: "Z123" } });
    await turnCallingTool(h, agentId);
    expect(h.received.at(-1)).toBe(SECRET);

    const replaced = await h.client.patch(`/v1/agents/${agentId}`, { tools: [lookupTool(h.toolUrl, { Authorization: NEW_SECRET })] });
    answers.push(replaced.body);
    expect(replaced.body.tools[0].headers).toEqual({ Authorization: { has_secret: true, last4: "9876" } });
    await turnCallingTool(h, agentId);
    expect(h.received.at(-1)).toBe(NEW_SECRET);
  });

  test("keeping a header that has no stored value is refused with 400 and changes nothing", async () => {
    const nothing = await h.client.patch(`/v1/agents/${agentId}`, { tools: [lookupTool(h.toolUrl, { "X-Api-Key": { keep: true } })] });
    expect(nothing.status).toBe(400);
    const renamed = await h.client.patch(`/v1/agents/${agentId}`, { tools: [{ ...lookupTool(h.toolUrl, { Authorization: { keep: true } }), name: "other" }] });
    expect(renamed.status).toBe(400);
    const onCreate = await h.client.post("/v1/agents", { name: "x", tools: [lookupTool(h.toolUrl, { Authorization: { keep: true } })] });
    expect(onCreate.status).toBe(400);
    // A kept secret goes only to the origin it went to: pointing the tool elsewhere needs the value again.
    const redirected = await h.client.patch(`/v1/agents/${agentId}`, { tools: [{ ...lookupTool(h.toolUrl, { Authorization: { keep: true } }), url: "https://attacker.example.net/collect" }] });
    expect({ status: redirected.status, param: redirected.body.error.details.param }).toEqual({ status: 400, param: "tools" });
    answers.push(nothing.body, renamed.body, onCreate.body, redirected.body);
    expect((await h.client.get(`/v1/agents/${agentId}`)).body.tools[0].headers).toEqual({ Authorization: { has_secret: true, last4: "9876" } });
  });

  test("events hold only sealed values, which open under the agent's app and no other", async () => {
    const events = (await allEvents(h.server)).filter((e) => e.streamId === `agent-${agentId}`);
    const values = events.flatMap((e) => {
      const tools = (e.data as any).tools ?? (e.data as any).patch?.tools ?? [];
      return tools.flatMap((t: any) => Object.values(t.headers ?? {}) as string[]);
    });
    expect(values.length).toBe(6); // created (2), re-sent, kept, replaced
    expect(values.every(isSealed)).toBe(true);
    const sealed = values[0]!;
    expect(await h.server.ctx.secrets.open(DEFAULT_APP_ID, sealed)).toBe(SECRET);
    await expect(h.server.ctx.secrets.open("app_someone_else", sealed)).rejects.toBeInstanceOf(SecretOpenError);
    // The other app has a data key of its own: still no.
    await h.server.ctx.secrets.seal("app_someone_else", "its own secret");
    await expect(h.server.ctx.secrets.open("app_someone_else", sealed)).rejects.toBeInstanceOf(SecretOpenError);
    // The read model holds the sealed values only.
    const row = findAgent(h.server.ctx.db, DEFAULT_APP_ID, agentId)!;
    expect(Object.values(JSON.parse(row.tools)[0].headers).every((v) => isSealed(v as string))).toBe(true);
  });

  test("no answer, event, data-folder file or log line holds a header value", async () => {
    const answered = text(answers);
    expect(answered).toContain("Z123"); // the answers were captured: last 4 characters, not the value
    for (const needle of NEEDLES) expect(answered).not.toContain(needle);
    const stored = text(await allEvents(h.server));
    for (const needle of NEEDLES) expect(stored).not.toContain(needle);

    const check = () => {
      const files = filesUnder(h.dataDir);
      expect(files.map((f) => f.path).some((p) => p.endsWith("events.sqlite"))).toBe(true);
      expect(files.some((f) => /readmodels.*\.sqlite$/.test(f.path))).toBe(true);
      for (const f of files) for (const needle of NEEDLES) expect({ file: f.path, found: f.bytes.includes(needle) }).toEqual({ file: f.path, found: false });
      return files;
    };
    // While running (the WAL files hold the latest writes), then after a clean shutdown.
    expect(check().some((f) => f.path.endsWith("-wal"))).toBe(true);
    await h.stop();
    check();

    expect(h.logs.some((l) => l.includes("agentry listening"))).toBe(true); // the log was captured
    const logged = h.logs.join("\n");
    for (const needle of NEEDLES) expect(logged).not.toContain(needle);
  });
});

describe("agents written before header sealing", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await start();
  });
  afterAll(async () => {
    await h?.stop();
    if (h) rmSync(h.dataDir, { recursive: true, force: true });
  });

  /** An agent created as the server did before sealing: plain header values in its event. */
  async function legacyAgent(id: string) {
    const spec: AgentSpec = {
      name: "Legacy", description: "", system_prompt: "old", model: { provider: null, name: null, parameters: {} },
      tools: [{ ...lookupTool(h.toolUrl, {}), type: "http", headers: { Authorization: LEGACY_SECRET } }], approval: "never", output_schema: null,
    };
    const r = await h.server.ctx.repos.agents.handle(id, { type: "CreateAgent", agent_id: id, spec }, { appId: DEFAULT_APP_ID });
    await h.server.ctx.projections.waitForPosition(r.position!, 10_000);
    expect(text(r.appended)).toContain(LEGACY_SECRET);
  }

  const headersInStream = async (id: string) =>
    (await allEvents(h.server)).filter((e) => e.streamId === `agent-${id}`).map((e) => {
      const tools = (e.data as any).tools ?? (e.data as any).patch?.tools;
      return tools ? (Object.values(tools[0].headers) as string[]) : null;
    });

  test("they read as before: masked in answers, the plain value sent to the tool", async () => {
    await legacyAgent("agt_legacy_1");
    const got = await h.client.get("/v1/agents/agt_legacy_1");
    expect(got.status).toBe(200);
    expect(got.body.tools[0].headers).toEqual({ Authorization: { has_secret: true, last4: "C789" } });
    expect(text(got.body)).not.toContain("legacy-secret");
    expect(text((await h.client.get("/v1/agents")).body)).not.toContain("legacy-secret");
    await turnCallingTool(h, "agt_legacy_1");
    expect(h.received.at(-1)).toBe(LEGACY_SECRET);
  });

  test("the next write seals them, whatever it changes, and the tool keeps working", async () => {
    await legacyAgent("agt_legacy_2");
    const patched = await h.client.patch("/v1/agents/agt_legacy_2", { name: "Renamed" });
    expect(patched.status).toBe(200);
    expect(text(patched.body)).not.toContain("legacy-secret");
    const [created, patch] = await headersInStream("agt_legacy_2");
    expect(created).toEqual([LEGACY_SECRET]); // events are never rewritten
    // …so the store file holds it: the byte scan the test above relies on finds what is there.
    expect(filesUnder(h.dataDir).some((f) => f.bytes.includes("legacy-secret-ABC789"))).toBe(true);
    expect(patch!.every(isSealed)).toBe(true);
    expect(await h.server.ctx.secrets.open(DEFAULT_APP_ID, patch![0]!)).toBe(LEGACY_SECRET);
    const row = findAgent(h.server.ctx.db, DEFAULT_APP_ID, "agt_legacy_2")!;
    expect(row.tools).not.toContain("legacy-secret");
    await turnCallingTool(h, "agt_legacy_2");
    expect(h.received.at(-1)).toBe(LEGACY_SECRET);
  });

  test("a patch keeping a plain value stores it sealed", async () => {
    await legacyAgent("agt_legacy_3");
    const kept = await h.client.patch("/v1/agents/agt_legacy_3", { tools: [lookupTool(h.toolUrl, { Authorization: { has_secret: true, last4: "C789" } })] });
    expect(kept.status).toBe(200);
    expect(kept.body.tools[0].headers).toEqual({ Authorization: { has_secret: true, last4: "C789" } });
    const [, patch] = await headersInStream("agt_legacy_3");
    expect(patch!.every(isSealed)).toBe(true);
    await turnCallingTool(h, "agt_legacy_3");
    expect(h.received.at(-1)).toBe(LEGACY_SECRET);
  });
});
