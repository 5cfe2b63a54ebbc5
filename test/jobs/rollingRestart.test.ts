/**
 * Deploys don't fail turns: a rolling restart of the workers and the API process during 100 running
 * turns, with real processes over one SQLite store and a real redis-server. Each worker is replaced in
 * turn (its replacement started first, then SIGTERM); the API process too, while every client keeps
 * polling its job with its cursor (and a few follow it over SSE). Some turns are mid model call when
 * their worker stops, some in a tool call. Every turn completes with exactly one final answer; none is
 * failed or interrupted; no tool runs twice; no client's cursor skips or repeats an event.
 *
 * The lease is a minute and the periodic reconciliation an hour: a job can only move to another worker
 * within this test's bound because its stopping worker hands it back, not because its lease ran out or
 * a reconciler found it. Turns stream for longer than the whole restart, so each worker is stopped
 * with turns in a model call and must hand them back (and no process starts after the last worker's
 * stop, so only its hand-back can bring its turns to another worker).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { api, TEST_KEY } from "../support/api.ts";
import { killAll, spawnServer, type ServerProcess } from "../support/processes.ts";
import { startRedis, type RedisServer } from "../support/redis.ts";

const TURNS = 100;
/**
 * Of them, turns that call a tool (which answers after TOOL_MS, within the shutdown grace) before their
 * final model step: started just before the first worker stops, so some are in their tool call then.
 */
const TOOL_TURNS = 20;
const TOOL_MS = 1500;

let redis: RedisServer;
let dataDir: string;
let tool: ReturnType<typeof Bun.serve>;
let toolRequests = 0;

beforeAll(async () => {
  redis = await startRedis();
  dataDir = mkdtempSync(join(tmpdir(), "agentry-rolling-"));
  tool = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: async () => {
    toolRequests++;
    await Bun.sleep(TOOL_MS);
    return Response.json({ rendered: "ok" });
  } });
});

afterAll(async () => {
  await killAll();
  tool?.stop(true);
  await redis?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

/** The API's address as a load balancer would give it: the current process, changed by the restart. */
let current = "";
let readModels = 0;

const env = () => ({
  DATA_DIR: dataDir, REDIS_URL: redis.url, READ_MODEL_FILE: join(dataDir, `rm-${readModels++}.sqlite`),
  // A turn's answer streams for about 20 s ("[slow]": 600 ms a chunk, ~38 chunks): longer than the
  // restarts take, so every worker stops with turns mid model call.
  SANDBOX_CHUNK_DELAY_MS: "60", SHUTDOWN_TIMEOUT_MS: "3000", JOB_LEASE_MS: "60000", RECONCILE_INTERVAL_MS: "3600000", WORKER_CONCURRENCY: "64",
  TOOL_PRIVATE_ALLOWLIST: "127.0.0.1", RATE_LIMIT_PER_MINUTE: "0", RATE_LIMIT_HEAVY_PER_MINUTE: "0",
});

/** A request to the current API process, tried again (bounded) while a restart refuses connections. */
async function call(path: string, init: RequestInit = {}): Promise<Response> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fetch(current + path, { ...init, headers: { "x-api-key": TEST_KEY, "content-type": "application/json", ...init.headers } });
    } catch (err) {
      if (attempt >= 100) throw err;
      await Bun.sleep(50);
    }
  }
}

/** SIGTERM, and the process's exit code and log. */
async function terminate(p: ServerProcess): Promise<{ code: number; lines: string[] }> {
  p.child.kill("SIGTERM");
  const code = await p.child.exited;
  return { code, lines: p.lines };
}

interface Follower {
  events: Array<{ id: number; type: string; payload: any }>;
  done: Promise<void>;
}

/** A client polling a job's events with its cursor until the job ends, through whichever API is current. */
function poll(jobId: string): Follower {
  const events: Follower["events"] = [];
  const done = (async () => {
    let cursor = 0;
    // Bounded: a job nobody resumes fails the test here rather than at its timeout.
    const deadline = Date.now() + 75_000;
    while (Date.now() < deadline) {
      const r = await call(`/v1/jobs/${jobId}/events?since=${cursor}&wait=2`);
      if (r.status !== 200) throw new Error(`poll answered ${r.status}: ${await r.text()}`);
      const body = (await r.json()) as { events: Follower["events"]; cursor: number; done: boolean };
      events.push(...body.events);
      cursor = body.cursor;
      if (body.done) return;
      await Bun.sleep(500);
    }
    throw new Error(`job ${jobId} did not end`);
  })();
  return { events, done };
}

/** A client following a job over SSE, reconnecting with Last-Event-ID whenever its stream ends early. */
function follow(jobId: string): Follower & { reconnects: () => number } {
  const events: Follower["events"] = [];
  let reconnects = 0;
  const done = (async () => {
    let last = 0;
    for (let i = 0; i < 50; i++) {
      const res = await call(`/v1/jobs/${jobId}/stream?verbosity=full`, { headers: { accept: "text/event-stream", "last-event-id": String(last) } });
      const reader = res.body!.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      try {
        for (;;) {
          const { value, done: ended } = await reader.read().catch(() => ({ value: undefined, done: true }));
          if (ended) break;
          buffer += decoder.decode(value, { stream: true });
          let at: number;
          while ((at = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, at);
            buffer = buffer.slice(at + 2);
            const field = (name: string) => block.split("\n").find((l) => l.startsWith(`${name}: `))?.slice(name.length + 2);
            const event = field("event");
            if (event === "done") return;
            if (event === "reconnect") reconnects++;
            const id = field("id");
            if (id !== undefined) {
              last = Number(id);
              events.push(JSON.parse(field("data")!));
            }
          }
        }
      } finally {
        await reader.cancel().catch(() => {});
      }
    }
    throw new Error(`job ${jobId}'s stream did not end`);
  })();
  return { events, done, reconnects: () => reconnects };
}

test(`a rolling restart of API and workers during ${TURNS} running turns fails none of them`, async () => {
  let apiProc = await spawnServer({ ...env(), ROLE: "api" });
  current = apiProc.url;
  const workers = await Promise.all([spawnServer({ ...env(), ROLE: "worker" }), spawnServer({ ...env(), ROLE: "worker" })]);
  const client = api(current);
  const toolAgent = await client.post("/v1/agents", {
    name: "renders", approval: "never",
    tools: [{ type: "http", name: "render", description: "renders", url: `http://127.0.0.1:${tool.port}/r`, parameters: { type: "object" } }],
  });
  expect(toolAgent.status).toBe(201);

  const start = (count: number, usesTool: boolean) => Promise.all(Array.from({ length: count }, async (_, i) => {
    const sid = (await client.post("/v1/sessions", { user_id: `rolling-${i % 10}`, ...(usesTool ? { agent_id: toolAgent.body.id } : {}) })).body.id as string;
    const sent = await client.post(`/v1/sessions/${sid}/messages`, { content: usesTool ? `call render {"n":${i}} [slow]` : `turn ${i} [slow]` });
    expect(sent.status).toBe(202);
    return { sid, jobId: sent.body.job_id as string, usesTool };
  }));
  const until = async (check: () => boolean, what: string) => {
    const deadline = Date.now() + 20_000;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(what);
      await Bun.sleep(50);
    }
  };
  const turns = await start(TURNS - TOOL_TURNS, false);
  const pollers = turns.map((t) => poll(t.jobId));
  const followers = turns.slice(0, 5).map((t) => follow(t.jobId));
  // Every turn is running (its model is streaming) before the restarts begin.
  await until(() => pollers.every((p) => p.events.some((e) => e.type === "text")), "the turns did not all start streaming");

  // Rolling: each worker's replacement starts first, then the old one gets SIGTERM; the API in between.
  const stopped: Array<{ code: number; lines: string[] }> = [];
  workers.push(await spawnServer({ ...env(), ROLE: "worker" }));
  const toolTurns = await start(TOOL_TURNS, true);
  turns.push(...toolTurns);
  pollers.push(...toolTurns.map((t) => poll(t.jobId)));
  await until(() => toolRequests === TOOL_TURNS, "the tool turns did not all reach their tool");
  stopped.push(await terminate(workers[0]!));
  const nextApi = await spawnServer({ ...env(), ROLE: "api" });
  const oldApi = apiProc;
  apiProc = nextApi;
  current = nextApi.url;
  const apiStopped = await terminate(oldApi);
  workers.push(await spawnServer({ ...env(), ROLE: "worker" }));
  stopped.push(await terminate(workers[1]!));

  await Promise.all(pollers.map((p) => p.done));
  await Promise.all(followers.map((f) => f.done));

  // Every process stopped cleanly: the old API was not held by its polls and streams, and the old
  // workers handed back what they could not finish instead of leaving it to their leases.
  expect(apiStopped.code).toBe(0);
  expect(apiStopped.lines.some((l) => l.includes("did not finish in time"))).toBe(false);
  let handedBack = 0;
  for (const s of stopped) {
    expect(s.code).toBe(0);
    const report = JSON.parse(s.lines.find((l) => l.includes('"worker stopped"'))!);
    expect(report.abandoned).toBeUndefined();
    // Each worker was stopped with turns running, and handed them back rather than finishing them.
    expect(report.running_at_stop).toBeGreaterThan(0);
    expect(report.released + report.cut).toBeGreaterThan(0);
    handedBack += report.released + report.cut;
  }

  const final = api(current);
  let released = 0;
  for (const [i, t] of turns.entries()) {
    const events = pollers[i]!.events;
    const types = events.map((e) => e.type);
    // The client's cursor went on across the API restart with no gap and no repeat.
    expect(events.map((e) => e.id)).toEqual(events.map((_, k) => k + 1));
    expect(types).not.toContain("job.failed");
    expect(types).not.toContain("job.cancelled");
    expect(types.filter((type) => type === "job.completed").length).toBe(1);
    released += types.filter((type) => type === "job.released").length;
    const job = (await final.get(`/v1/jobs/${t.jobId}`)).body;
    expect({ status: job.status, error: job.error }).toEqual({ status: "completed", error: null });
    // One final answer, given once, and the conversation holds it once.
    const answer = events.find((e) => e.type === "job.completed")!.payload.content as string;
    // A release either cut a model call (whose step is streamed again) or came right after a finished step.
    for (const [k, e] of events.entries()) {
      if (e.type !== "job.released") continue;
      if (e.payload.discarded_step === null) expect(["tool.completed", "usage", "context.prepared", "job.started"]).toContain(events[k - 1]!.type);
      else expect(events.slice(k).some((later) => later.type === "text" && later.payload.step === e.payload.discarded_step)).toBe(true);
    }
    expect(job.content).toBe(answer);
    if (t.usesTool) expect(answer.split("Done. render").length).toBe(2);
    else expect(answer.split("Sandbox reply to").length).toBe(2);
    const history = (await final.get(`/v1/sessions/${t.sid}/messages`)).body.data;
    expect(history.filter((m: any) => m.role === "assistant").map((m: any) => m.content)).toEqual([answer]);
    expect((await final.get(`/v1/sessions/${t.sid}`)).body.status).toBe("idle");
  }
  expect(released).toBe(handedBack);
  // A tool finishes within the grace: none was cut, so none ran twice.
  expect(toolRequests).toBe(TOOL_TURNS);
  for (const f of followers) {
    expect(f.events.map((e) => e.id)).toEqual(f.events.map((_, k) => k + 1));
    expect(f.events.filter((e) => e.type === "job.completed").length).toBe(1);
  }
  // The SSE clients on the old API were told to reconnect, and did.
  expect(followers.reduce((n, f) => n + f.reconnects(), 0)).toBeGreaterThan(0);
}, 120_000);
