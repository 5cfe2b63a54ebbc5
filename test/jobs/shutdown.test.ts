/**
 * A worker's stop during a deploy, in one process: a job that reaches a step boundary after the stop
 * began is handed back there; one still in a model call when the grace runs out is cut and handed back;
 * either way its Redis lease is released at once and another consumer resumes it from its stream,
 * redoing nothing that was recorded and nothing twice. In process, the next start resumes it. And an
 * API process that stops ends its long-polls and SSE streams at once, so clients reconnect elsewhere.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { connect } from "node:net";
import { join } from "node:path";
import { loadConfig } from "../../src/config.ts";
import { silentLogger } from "../../src/core/logger.ts";
import { RedisJobQueue } from "../../src/jobs/redisQueue.ts";
import { TurnRunner } from "../../src/jobs/turnRunner.ts";
import { LlmError, type LlmProvider } from "../../src/llm/provider.ts";
import { Worker } from "../../src/jobs/worker.ts";
import { startServer } from "../../src/main.ts";
import { api, readSse, TEST_KEY, type Api } from "../support/api.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { startRedis, type RedisServer } from "../support/redis.ts";

let redis: RedisServer;
let server: TestServer;
let client: Api;
const extraWorkers: Worker[] = [];

/** Another worker over the same store and Redis stream: a second process, as far as the queue knows. */
function anotherWorker(name: string): Worker {
  // A lease far longer than the test: a job can reach this worker in time only by being released.
  const queue = new RedisJobQueue({ url: redis.url, consumer: name, leaseMs: 600_000, blockMs: 100 });
  const worker = new Worker(queue, new TurnRunner(server.ctx, `runner-${name}`), silentLogger, 4);
  extraWorkers.push(worker);
  return worker;
}

const until = async (check: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await Bun.sleep(20);
  }
};

const eventsOf = async (jobId: string): Promise<Array<{ type: string; payload: any }>> =>
  (await client.get(`/v1/jobs/${jobId}/events?since=0&limit=1000`)).body.events;

beforeAll(async () => {
  redis = await startRedis();
  server = await startTestServer({
    API_KEY: TEST_KEY, REDIS_URL: redis.url, JOB_LEASE_MS: "600000", RECONCILE_INTERVAL_MS: "3600000",
    TOOL_PRIVATE_ALLOWLIST: "127.0.0.1", SANDBOX_CHUNK_DELAY_MS: "5",
  });
  client = api(server.url);
});

afterAll(async () => {
  for (const w of extraWorkers) await w.stop(1000);
  await server?.stop();
  await redis?.stop();
});

describe("a worker's stop", () => {
  test("a job whose tool finishes after the stop began stops at the step boundary, and another worker resumes it without redoing the tool", async () => {
    // A tool that runs until the test lets it answer.
    let toolCalls = 0;
    let answer!: () => void;
    const answered = new Promise<void>((resolve) => (answer = resolve));
    const tool = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: async () => {
      toolCalls++;
      await answered;
      return Response.json({ rendered: "ok" });
    } });
    try {
      const agent = await client.post("/v1/agents", {
        name: "tooling", approval: "never",
        tools: [{ type: "http", name: "render", description: "renders", url: `http://127.0.0.1:${tool.port}/r`, parameters: { type: "object" } }],
      });
      expect(agent.status).toBe(201);
      const run = await client.post("/v1/runs", { agent_id: agent.body.id, user_id: "u", input: 'call render {"n":1}' });
      const jobId = run.body.job_id as string;
      await until(() => toolCalls === 1, "the tool was called");

      // The server's own worker is the first process; the stop begins while the tool runs.
      const first = server.ctx.running as Worker;
      const stopping = first.stop(60_000);
      await Bun.sleep(100);
      answer();
      const report = await stopping;
      expect(report).toMatchObject({ finished: 0, released: 1, cut: 0, abandoned: [] });
      // The worker's stop left the queue's producer side open: the API side still dispatches through it.
      // Handed back after the tool's result, before the next model step: still running, not held.
      const released = await eventsOf(jobId);
      expect(released.map((e) => e.type).slice(-2)).toEqual(["tool.completed", "job.released"]);
      expect(released.at(-1)!.payload).toEqual({ reason: "shutdown", step: 1, discarded_step: null });
      expect((await client.get(`/v1/jobs/${jobId}`)).body.status).toBe("processing");
      const probe = new RedisJobQueue({ url: redis.url });
      try {
        expect(await probe.isHeld(jobId)).toBe(false);
        // Queued again for the next worker (not waiting for the old lease to expire).
        expect(await probe.waitingCount()).toBe(1);
      } finally {
        await probe.close();
      }

      const second = anotherWorker("second");
      second.start();
      const done = await client.waitForStatus(jobId, ["completed", "failed", "cancelled"]);
      expect(done.status).toBe("completed");
      const events = await eventsOf(jobId);
      const types = events.map((e) => e.type);
      // The tool ran once, its call and result recorded once; the resume made only the next model step.
      expect(toolCalls).toBe(1);
      expect(types.filter((t) => t === "tool.called").length).toBe(1);
      expect(types.filter((t) => t === "tool.completed").length).toBe(1);
      expect(types.filter((t) => t === "job.started").length).toBe(2);
      expect(types.filter((t) => t === "job.completed").length).toBe(1);
      expect(types).not.toContain("job.failed");
      expect(types.filter((t) => t === "usage").length).toBe(2);
      expect(done.content).toBe(`I'll use render for that.\n\nDone. render → {"rendered":"ok"}.`);
      await second.stop(1000);
    } finally {
      tool.stop(true);
    }
  }, 30_000);

  test("a tool call still running when the grace runs out is cut; the resume runs that call again, recorded once, and goes on", async () => {
    let toolCalls = 0;
    const tool = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: async (req) => {
      toolCalls++;
      // The first call outlasts the grace (and ends when the worker aborts it); the next answers.
      if (toolCalls === 1) await new Promise<void>((resolve) => req.signal.addEventListener("abort", () => resolve()));
      return Response.json({ rendered: toolCalls });
    } });
    try {
      const current = anotherWorker("tools-current");
      current.start();
      const agent = await client.post("/v1/agents", {
        name: "slow tool", approval: "never",
        tools: [{ type: "http", name: "render", description: "renders", url: `http://127.0.0.1:${tool.port}/r`, parameters: { type: "object" } }],
      });
      const run = await client.post("/v1/runs", { agent_id: agent.body.id, user_id: "u", input: 'call render {"n":2}' });
      const jobId = run.body.job_id as string;
      await until(() => toolCalls === 1, "the tool was called");

      const report = await current.stop(100);
      expect(report).toMatchObject({ released: 0, cut: 1, abandoned: [] });
      const cut = await eventsOf(jobId);
      expect(cut.map((e) => e.type).slice(-2)).toEqual(["tool.called", "job.released"]);
      expect(cut.at(-1)!.payload).toEqual({ reason: "shutdown", step: 1, discarded_step: null });

      const next = anotherWorker("tools-next");
      next.start();
      const done = await client.waitForStatus(jobId, ["completed", "failed", "cancelled"]);
      expect(done.status).toBe("completed");
      const types = (await eventsOf(jobId)).map((e) => e.type);
      expect(toolCalls).toBe(2);
      expect(types.filter((t) => t === "tool.called").length).toBe(1);
      expect(types.filter((t) => t === "tool.completed").length).toBe(1);
      // The model step that named the call was not made again: one before the cut, one after the tool.
      expect(types.filter((t) => t === "usage").length).toBe(2);
      expect(done.content).toBe(`I'll use render for that.\n\nDone. render → {"rendered":2}.`);
      await next.stop(1000);
    } finally {
      tool.stop(true);
    }
  }, 30_000);

  test("a model call still streaming when the grace runs out is cut and handed back; the resume streams that step again and records the answer once", async () => {
    const current = anotherWorker("current");
    current.start();
    const sid = (await client.post("/v1/sessions", { user_id: "cut" })).body.id;
    const sent = await client.post(`/v1/sessions/${sid}/messages`, { content: "tell me slowly [slow]" });
    const jobId = sent.body.job_id as string;
    await client.waitForText(jobId);

    const report = await current.stop(100);
    expect(report).toMatchObject({ finished: 0, released: 0, cut: 1, abandoned: [] });
    const cut = await eventsOf(jobId);
    const release = cut.find((e) => e.type === "job.released")!;
    expect(release.payload).toEqual({ reason: "shutdown", step: 1, discarded_step: 1 });
    expect(cut.map((e) => e.type)).not.toContain("job.failed");
    const partial = cut.filter((e) => e.type === "text").map((e) => e.payload.content).join("");

    const next = anotherWorker("next");
    next.start();
    const done = await client.waitForStatus(jobId, ["completed", "failed", "cancelled"]);
    expect(done.status).toBe("completed");
    const events = await eventsOf(jobId);
    const after = events.slice(events.findIndex((e) => e.type === "job.released") + 1);
    // What a client shows: the text after the release (step 1 streamed again), which is the answer.
    const redone = after.filter((e) => e.type === "text").map((e) => e.payload.content).join("");
    expect(done.content).toBe(redone);
    expect(redone.startsWith(partial)).toBe(true);
    expect(redone.length).toBeGreaterThan(partial.length);
    expect(done.content.split("Sandbox reply to").length).toBe(2);
    expect(events.filter((e) => e.type === "job.completed").length).toBe(1);
    // The conversation holds the answer once.
    const history = (await client.get(`/v1/sessions/${sid}/messages`)).body.data;
    expect(history.filter((m: any) => m.role === "assistant").map((m: any) => m.content)).toEqual([done.content]);
    await next.stop(1000);
  }, 30_000);

  test("a model call cut after its usage was recorded counts as made: the step is not streamed or billed again", async () => {
    // The sandbox, except that for "[hold]" its first call stays open after the usage chunk until it is
    // aborted (a provider whose stream ends a moment after it reports usage): the stop's abort lands there.
    const providers = server.ctx.providers as Map<string, LlmProvider>; // swapped for this test only
    const sandbox = providers.get("sandbox")!;
    let held = 0;
    const holding: LlmProvider = {
      name: sandbox.name, defaultModel: sandbox.defaultModel,
      async *stream(request) {
        const hold = request.messages.some((m) => m.role === "user" && String(m.content).includes("[hold]")) && held++ === 0;
        for await (const chunk of sandbox.stream(request)) {
          yield chunk;
          if (hold && chunk.type === "usage") {
            await new Promise<void>((resolve) => (request.signal.aborted ? resolve() : request.signal.addEventListener("abort", () => resolve(), { once: true })));
            throw new LlmError("aborted", "The request was aborted", false);
          }
        }
      },
    };
    providers.set("sandbox", holding);
    try {
      // Only this worker runs jobs now (the server's own is stopped, if an earlier test has not).
      await (server.ctx.running as Worker).stop(1000);
      const current = anotherWorker("usage-current");
      current.start();
      const sid = (await client.post("/v1/sessions", { user_id: "usage" })).body.id;
      const sent = await client.post(`/v1/sessions/${sid}/messages`, { content: "answer, then hold [hold]" });
      const jobId = sent.body.job_id as string;
      await until(async () => (await eventsOf(jobId)).some((e) => e.type === "usage"), "the step's usage was recorded");

      const report = await current.stop(100);
      // The step was made: the job ends with it here rather than being handed back with it discarded.
      expect(report).toMatchObject({ finished: 1, released: 0, cut: 0, abandoned: [] });
      const done = await client.waitForStatus(jobId, ["completed", "failed", "cancelled"]);
      expect(done.status).toBe("completed");
      const types = (await eventsOf(jobId)).map((e) => e.type);
      expect(types).not.toContain("job.released");
      expect(types.filter((t) => t === "usage").length).toBe(1);
      expect(types.filter((t) => t === "job.completed").length).toBe(1);
      expect(held).toBe(1);
      expect(done.content.split("Sandbox reply to").length).toBe(2);
    } finally {
      providers.set("sandbox", sandbox);
    }
  }, 30_000);
});

describe("an API process's stop", () => {
  test("ends held long-polls and open SSE streams at once; the SSE client is told to reconnect from its cursor", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "agentry-closing-"));
    // A long grace: if either held the stop, it would take a minute, past this test's bound.
    const config = loadConfig({ PORT: "0", DATA_DIR: dataDir, API_KEY: TEST_KEY, SHUTDOWN_TIMEOUT_MS: "60000", RATE_LIMIT_PER_MINUTE: "0" });
    const own = await startServer(config, silentLogger);
    try {
      const c = api(own.url);
      const sid = (await c.post("/v1/sessions", { user_id: "watch" })).body.id;
      // A session's stream stays open until the session is deleted; its poll is held at the head.
      const sse = await fetch(`${own.url}/v1/sessions/${sid}/stream?verbosity=full`, { headers: { "x-api-key": TEST_KEY, accept: "text/event-stream" } });
      expect(sse.status).toBe(200);
      const streamed = readSse(sse, (events) => events.some((e) => e.event === "reconnect"));
      const head = (await c.get(`/v1/sessions/${sid}/events?since=0`)).body.cursor as number;
      expect(head).toBeGreaterThan(0);
      const held = fetch(`${own.url}/v1/sessions/${sid}/events?since=${head}&wait=30`, { headers: { "x-api-key": TEST_KEY } });
      await Bun.sleep(200);
      await own.shutdown("test");
      const poll = await held;
      expect(poll.status).toBe(200);
      expect(await poll.json()).toMatchObject({ cursor: head, events: [] });
      const events = await streamed;
      const reconnect = events.find((e) => e.event === "reconnect")!;
      expect(reconnect.data).toEqual({ reason: "server_shutdown", session_id: sid, last_event_id: head, url: `/v1/sessions/${sid}/stream?since=${head}&verbosity=full` });
      expect(events.filter((e) => e.event !== "reconnect").map((e) => e.id)).toEqual(Array.from({ length: head }, (_, i) => i + 1));
      expect(events.map((e) => e.event)).not.toContain("done");
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 30_000);

  test("a message's POST stream cut by the stop names the job and the GET URL to resume at; that URL resumes it on the next process with no gap", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "agentry-post-stream-"));
    const env = { PORT: "0", DATA_DIR: dataDir, API_KEY: TEST_KEY, SHUTDOWN_TIMEOUT_MS: "200", SANDBOX_CHUNK_DELAY_MS: "5", RATE_LIMIT_PER_MINUTE: "0" };
    try {
      const before = await startServer(loadConfig(env), silentLogger);
      const sid = (await api(before.url).post("/v1/sessions", { user_id: "posted" })).body.id;
      const posted = await fetch(`${before.url}/v1/sessions/${sid}/messages`, {
        method: "POST", headers: { "x-api-key": TEST_KEY, "content-type": "application/json", accept: "text/event-stream" },
        body: JSON.stringify({ content: "stream it slowly [slow]", stream: true, verbosity: "full" }),
      });
      expect(posted.status).toBe(200);
      let stopping: Promise<void> | undefined;
      const first = await readSse(posted, (events) => {
        // The stop begins once the answer is streaming.
        if (!stopping && events.some((e) => e.event === "text")) stopping = before.shutdown("test");
        return events.some((e) => e.event === "reconnect" || e.event === "done");
      });
      await stopping;
      const reconnect = first.find((e) => e.event === "reconnect")!;
      expect(reconnect).toBeDefined();
      const seen = first.filter((e) => e.id !== null);
      const last = seen.at(-1)!.id!;

      // A client that cannot repeat the POST opens the URL it was given, on whichever process serves now.
      const after = await startServer(loadConfig(env), silentLogger);
      try {
        const jobId = (await api(after.url).get(`/v1/sessions/${sid}/jobs`)).body.data[0].id as string;
        expect(reconnect.data).toEqual({
          reason: "server_shutdown", job_id: jobId, session_id: sid, last_event_id: last, url: `/v1/jobs/${jobId}/stream?since=${last}&verbosity=full`,
        });
        const resumed = await fetch(`${after.url}${reconnect.data.url}`, { headers: { "x-api-key": TEST_KEY, accept: "text/event-stream" } });
        expect(resumed.status).toBe(200);
        const rest = await readSse(resumed, (events) => events.some((e) => e.event === "done"));
        const all = [...seen, ...rest.filter((e) => e.id !== null)];
        expect(all.map((e) => e.id)).toEqual(all.map((_, k) => k + 1));
        expect(all.filter((e) => e.event === "job.completed").length).toBe(1);
        expect(rest.at(-1)!.event).toBe("done");
      } finally {
        await after.shutdown("test");
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 30_000);

  test("a message accepted while an API process drains is handed to the Redis queue (its worker never ran)", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "agentry-api-drain-"));
    // A Redis of its own, with no worker reading it: what this process enqueues stays there to be seen.
    const ownRedis = await startRedis();
    const config = loadConfig({ PORT: "0", DATA_DIR: dataDir, API_KEY: TEST_KEY, REDIS_URL: ownRedis.url, ROLE: "api", SHUTDOWN_TIMEOUT_MS: "10000", RATE_LIMIT_PER_MINUTE: "0" });
    const own = await startServer(config, silentLogger);
    const probe = new RedisJobQueue({ url: ownRedis.url });
    try {
      const sid = (await api(own.url).post("/v1/sessions", { user_id: "late" })).body.id;
      const before = await probe.commandsForTests().xlen("agentry:jobs");
      // The request's headers arrive before the stop, its body after it began: it is in flight, and
      // accepted while the process drains.
      const body = JSON.stringify({ content: "accepted during the grace" });
      const { port, hostname } = new URL(own.url);
      const socket = connect(Number(port), hostname);
      await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
      let response = "";
      socket.on("data", (chunk) => (response += chunk.toString()));
      socket.write(`POST /v1/sessions/${sid}/messages HTTP/1.1\r\nHost: ${hostname}:${port}\r\nx-api-key: ${TEST_KEY}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n`);
      await Bun.sleep(100);
      const stopping = own.shutdown("test");
      await Bun.sleep(300);
      socket.write(body);
      await stopping;
      socket.destroy();
      expect(response.split("\r\n")[0]).toBe("HTTP/1.1 202 Accepted");
      const jobId = JSON.parse(response.slice(response.indexOf("{"))).job_id as string;
      // The job waits in Redis for a worker (not only for the next reconciliation).
      const entries = (await probe.commandsForTests().xrange("agentry:jobs", "-", "+")) as Array<[string, string[]]>;
      expect(entries.length).toBe(before + 1);
      expect(entries.map(([, fields]) => fields[fields.indexOf("job") + 1])).toContain(jobId);
    } finally {
      await probe.close();
      await ownRedis.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 30_000);

  test("in process, a turn cut by the stop is resumed by the next start, not failed as interrupted", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "agentry-restart-"));
    const env = { PORT: "0", DATA_DIR: dataDir, API_KEY: TEST_KEY, SHUTDOWN_TIMEOUT_MS: "100", SANDBOX_CHUNK_DELAY_MS: "5", RATE_LIMIT_PER_MINUTE: "0" };
    try {
      const before = await startServer(loadConfig(env), silentLogger);
      const sid = (await api(before.url).post("/v1/sessions", { user_id: "restart" })).body.id;
      const sent = await api(before.url).post(`/v1/sessions/${sid}/messages`, { content: "a long answer please [slow]" });
      const jobId = sent.body.job_id as string;
      await api(before.url).waitForText(jobId);
      await before.shutdown("test");

      const after = await startServer(loadConfig(env), silentLogger);
      try {
        const c = api(after.url);
        const done = await c.waitForStatus(jobId, ["completed", "failed", "cancelled"]);
        expect({ status: done.status, error: done.error }).toEqual({ status: "completed", error: null });
        const types = (await c.get(`/v1/jobs/${jobId}/events?since=0&limit=1000`)).body.events.map((e: any) => e.type);
        expect(types.filter((t: string) => t === "job.released").length).toBe(1);
        expect(types.filter((t: string) => t === "job.completed").length).toBe(1);
        expect((await c.get(`/v1/sessions/${sid}`)).body.status).toBe("idle");
      } finally {
        await after.shutdown("test");
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 30_000);
});
