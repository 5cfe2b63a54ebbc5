/**
 * The production shape on one machine: an API process and worker processes sharing one SQLite store
 * file and one Redis. Turns run on a worker; SSE and polls on the API process see the worker's events;
 * a cancel sent to the API reaches the worker; a worker killed mid-turn leaves no job stuck.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { api, readSse, TEST_KEY, type Api } from "../support/api.ts";
import { startRedis, type RedisServer } from "../support/redis.ts";
import { runnersOf } from "../support/storeReader.ts";

const MAIN = join(import.meta.dir, "../../src/main.ts");
let redis: RedisServer;
let dataDir: string;
const procs: Array<ReturnType<typeof Bun.spawn>> = [];

function spawnRole(role: "api" | "worker", name: string, extra: Record<string, string> = {}) {
  const child = Bun.spawn(["bun", MAIN], {
    env: {
      ...process.env, ROLE: role, PORT: "0", DATA_DIR: dataDir, API_KEY: TEST_KEY, REDIS_URL: redis.url,
      READ_MODEL_FILE: join(dataDir, `readmodels-${name}.sqlite`), SQLITE_SYNCHRONOUS: "normal", SQLITE_POLL_INTERVAL_MS: "20",
      JOB_LEASE_MS: "1000", RECONCILE_INTERVAL_MS: "1000", SANDBOX_CHUNK_DELAY_MS: "8", LOG_LEVEL: "info", ...extra,
    },
    stdout: "pipe", stderr: "inherit",
  });
  procs.push(child);
  return child;
}

async function waitForLog(child: ReturnType<typeof Bun.spawn>, text: string): Promise<string> {
  const reader = (child.stdout as ReadableStream<Uint8Array>).getReader();
  let out = "";
  while (!out.includes(text)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`process exited before "${text}": ${out}`);
    out += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  return out;
}

let client: Api;
let worker: ReturnType<typeof Bun.spawn>;

beforeAll(async () => {
  redis = await startRedis();
  dataDir = mkdtempSync(join(tmpdir(), "agentry-roles-"));
  const apiProc = spawnRole("api", "api");
  const out = await waitForLog(apiProc, "agentry listening");
  const url = JSON.parse(out.split("\n").find((l) => l.includes("agentry listening"))!).url;
  client = api(url);
  worker = spawnRole("worker", "w1");
  await waitForLog(worker, "agentry worker running");
});

afterAll(async () => {
  for (const p of procs) p.kill("SIGKILL");
  await Promise.all(procs.map((p) => p.exited));
  await redis.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

test("a turn sent to the API process runs on the worker process", async () => {
  const sid = (await client.post("/v1/sessions", { user_id: "roles" })).body.id;
  const turn = await client.post(`/v1/sessions/${sid}/messages`, { content: "hello workers", wait: true, wait_timeout_s: 30 });
  expect(turn.body.status).toBe("completed");
  const events = (await client.get(`/v1/jobs/${turn.body.job_id}/events?since=0`)).body.events;
  // Clients see the attempt, not which server process ran it; the store records that.
  const startedPayload = events.find((e: any) => e.type === "job.started").payload;
  expect(startedPayload.attempt).toBe(1);
  expect(startedPayload).not.toHaveProperty("runner_id");
  expect(await runnersOf(dataDir, turn.body.job_id)).toEqual([`runner-${worker.pid}`]);
});

test("a plan approved through the API process is carried out by a worker", async () => {
  const sid = (await client.post("/v1/sessions", { user_id: "roles" })).body.id;
  const sent = await client.post(`/v1/sessions/${sid}/messages`, { content: "please register https://example.com/remote.png" });
  await client.waitForStatus(sent.body.job_id, ["awaiting_approval"], 20_000);
  expect((await client.post(`/v1/jobs/${sent.body.job_id}/approve`)).status).toBe(200);
  const done = await client.waitForStatus(sent.body.job_id, ["completed", "failed", "cancelled"], 20_000);
  expect(done.status).toBe("completed");
  const assets = (await client.get(`/v1/sessions/${sid}/assets`)).body.data;
  expect(assets.map((a: any) => [a.asset_label, a.url])).toEqual([["asset_1", "https://example.com/remote.png"]]);
});

test("an SSE client on the API process sees every event the worker appends, in order", async () => {
  const sid = (await client.post("/v1/sessions", { user_id: "roles" })).body.id;
  const sent = await client.post(`/v1/sessions/${sid}/messages`, { content: "stream from afar [slow]" });
  const res = await fetch(`${client.base}/v1/jobs/${sent.body.job_id}/stream?verbosity=full`, { headers: { "x-api-key": TEST_KEY } });
  const events = await readSse(res, (evs) => evs.some((e) => e.event === "done"));
  const ids = events.filter((e) => e.id !== null).map((e) => e.id);
  expect(ids).toEqual(ids.map((_, i) => i + 1));
  expect(events.filter((e) => e.event === "text").length).toBeGreaterThan(1);
  expect(events.some((e) => e.event === "job.completed")).toBe(true);
});

test("a cancel sent to the API process stops the turn running on the worker", async () => {
  const sid = (await client.post("/v1/sessions", { user_id: "roles" })).body.id;
  const sent = await client.post(`/v1/sessions/${sid}/messages`, { content: "a long one [slow]" });
  await client.waitForText(sent.body.job_id);
  const cancelled = await client.post(`/v1/jobs/${sent.body.job_id}/cancel`);
  expect(cancelled.status).toBe(200);
  const after = await client.get(`/v1/jobs/${sent.body.job_id}/events?since=0&limit=1000`);
  const countText = after.body.events.filter((e: any) => e.type === "text").length;
  await Bun.sleep(1000);
  const later = await client.get(`/v1/jobs/${sent.body.job_id}/events?since=0&limit=1000`);
  // The worker stopped streaming: no text was appended after the cancel.
  expect(later.body.events.filter((e: any) => e.type === "text").length).toBe(countText);
  expect(later.body.events.filter((e: any) => ["job.completed", "job.failed", "job.cancelled"].includes(e.type)).map((e: any) => e.type)).toEqual(["job.cancelled"]);
  expect((await client.get(`/v1/sessions/${sid}`)).body.status).toBe("idle");
});

test("kill -9 of the worker mid-turn: another worker ends the job within the lease, the session is free", async () => {
  const sid = (await client.post("/v1/sessions", { user_id: "roles" })).body.id;
  const sent = await client.post(`/v1/sessions/${sid}/messages`, { content: "crash during this [slow]" });
  await client.waitForText(sent.body.job_id);
  worker.kill("SIGKILL");
  await worker.exited;
  worker = spawnRole("worker", "w2");
  await waitForLog(worker, "agentry worker running");
  const job = await client.waitForStatus(sent.body.job_id, ["completed", "failed", "cancelled"], 20_000);
  expect(job.status).toBe("failed");
  expect(job.error.code).toBe("interrupted");
  const events = (await client.get(`/v1/jobs/${sent.body.job_id}/events?since=0&limit=1000`)).body.events;
  expect(events.map((e: any) => e.id)).toEqual(events.map((_: unknown, i: number) => i + 1));
  expect((await client.get(`/v1/sessions/${sid}`)).body.status).toBe("idle");
  const next = await client.post(`/v1/sessions/${sid}/messages`, { content: "still there?", wait: true, wait_timeout_s: 30 });
  expect(next.body.status).toBe("completed");
});

test("Redis goes down and comes back empty: jobs accepted meanwhile, and those it held, still run", async () => {
  const sid1 = (await client.post("/v1/sessions", { user_id: "roles" })).body.id;
  const sid2 = (await client.post("/v1/sessions", { user_id: "roles" })).body.id;
  await redis.down();
  // Accepted while Redis is away: the job is durable in the event store (the queue fails fast; see
  // redisQueue.test.ts), and a worker's reconciler dispatches it once Redis is back.
  const a = await client.post(`/v1/sessions/${sid1}/messages`, { content: "while redis is down" });
  expect(a.status).toBe(202);
  const b = await client.post(`/v1/runs`, { user_id: "roles", input: "a run while redis is down" });
  expect(b.status).toBe(202);
  await redis.up();
  const c = await client.post(`/v1/sessions/${sid2}/messages`, { content: "after redis came back empty" });
  for (const jobId of [a.body.job_id, b.body.job_id, c.body.job_id]) {
    const job = await client.waitForStatus(jobId, ["completed", "failed", "cancelled"], 30_000);
    expect(job.status).toBe("completed");
  }
}, 60_000);

test("processes wake each other through Redis: a turn crosses API and worker without waiting for their polls", async () => {
  // Polls so rare that a turn could only finish in time through the append signal.
  // Its own store and Redis: the workers above must not take these jobs.
  const slowDir = mkdtempSync(join(tmpdir(), "agentry-roles-signal-"));
  const ownRedis = await startRedis();
  const env = { DATA_DIR: slowDir, REDIS_URL: ownRedis.url, SQLITE_POLL_INTERVAL_MS: "10000" };
  const own: Array<ReturnType<typeof Bun.spawn>> = [];
  try {
    const apiProc = spawnRole("api", "signal-api", { ...env, READ_MODEL_FILE: join(slowDir, "readmodels-api.sqlite") });
    own.push(apiProc);
    const out = await waitForLog(apiProc, "agentry listening");
    const slow = api(JSON.parse(out.split("\n").find((l) => l.includes("agentry listening"))!).url);
    const slowWorker = spawnRole("worker", "signal-w", { ...env, READ_MODEL_FILE: join(slowDir, "readmodels-w.sqlite") });
    own.push(slowWorker);
    await waitForLog(slowWorker, "agentry worker running");
    const sid = (await slow.post("/v1/sessions", { user_id: "signal" })).body.id;
    for (let i = 0; i < 3; i++) {
      const turn = await slow.post(`/v1/sessions/${sid}/messages`, { content: `turn ${i}`, wait: true, wait_timeout_s: 5 });
      expect(turn.body.status).toBe("completed"); // not 202 "still running" after 5 s
    }
  } finally {
    for (const p of own) p.kill("SIGKILL");
    await Promise.all(own.map((p) => p.exited));
    await ownRedis.stop();
    rmSync(slowDir, { recursive: true, force: true });
  }
});
