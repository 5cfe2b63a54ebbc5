/** Fault tests with real processes (loopback only, bounded in time). */
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { api, TEST_KEY } from "../support/api.ts";
import { startRedis, type RedisServer } from "../support/redis.ts";
import { runnersOf } from "../support/storeReader.ts";

const MAIN = join(import.meta.dir, "../../src/main.ts");
const procs: Array<ReturnType<typeof Bun.spawn>> = [];
const dirs: string[] = [];
const redises: RedisServer[] = [];
afterEach(async () => {
  for (const p of procs.splice(0)) p.kill("SIGKILL");
  for (const r of redises.splice(0)) await r.stop();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function spawnServer(env: Record<string, string>, ready: string): Promise<{ child: ReturnType<typeof Bun.spawn>; url: string }> {
  const child = Bun.spawn(["bun", MAIN], {
    env: { ...process.env, PORT: "0", API_KEY: TEST_KEY, SQLITE_SYNCHRONOUS: "normal", SQLITE_POLL_INTERVAL_MS: "20", SANDBOX_CHUNK_DELAY_MS: "0", ...env },
    stdout: "pipe", stderr: "inherit",
  });
  procs.push(child);
  const reader = child.stdout.getReader();
  let out = "";
  while (!out.includes(ready)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`process exited: ${out}`);
    out += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  // Keep draining stdout so the child never blocks on a full pipe.
  void (async () => {
    const r = child.stdout.getReader();
    while (!(await r.read().catch(() => ({ done: true }))).done) { /* drain */ }
  })();
  const line = out.split("\n").find((l) => l.includes(ready));
  return { child, url: line && ready === "agentry listening" ? JSON.parse(line).url : "" };
}

test("kill -9 of the API during 500 concurrent submissions: every acknowledged message is stored and its job ends", async () => {
  const dataDir = mkdtempSync(join(tmpdir(), "agentry-fault-"));
  dirs.push(dataDir);
  const first = await spawnServer({ DATA_DIR: dataDir }, "agentry listening");
  const client = api(first.url);
  const sessions: string[] = [];
  for (let i = 0; i < 500; i += 50) {
    sessions.push(...(await Promise.all(Array.from({ length: 50 }, async () => (await client.post("/v1/sessions", { user_id: "flood" })).body.id as string))));
  }
  const acknowledged: Array<{ sid: string; job: string; message: string }> = [];
  let answered = 0;
  const submissions = sessions.map(async (sid, i) => {
    try {
      const r = await client.post(`/v1/sessions/${sid}/messages`, { content: `flood ${i}` });
      answered++;
      if (r.status === 202) acknowledged.push({ sid, job: r.body.job_id, message: r.body.message_id });
    } catch {
      /* the connection died with the process: not acknowledged */
    }
  });
  while (answered < 100) await Bun.sleep(2);
  first.child.kill("SIGKILL");
  await Promise.allSettled(submissions);
  await first.child.exited;
  expect(acknowledged.length).toBeGreaterThanOrEqual(100);
  expect(acknowledged.length).toBeLessThan(500);

  const second = await spawnServer({ DATA_DIR: dataDir }, "agentry listening");
  const after = api(second.url);
  for (const a of acknowledged) {
    const job = await after.waitForStatus(a.job, ["completed", "failed", "cancelled"], 60_000);
    expect(["completed", "failed"]).toContain(job.status);
    const history = await after.get(`/v1/sessions/${a.sid}/messages`);
    expect(history.body.data.some((m: any) => m.id === a.message && m.role === "user")).toBe(true);
  }
  // Nothing is left pending or processing, acknowledged or not.
  for (const sid of sessions) {
    const s = await after.get(`/v1/sessions/${sid}`);
    expect(s.body.status).toBe("idle");
  }
}, 180_000);

test("two API processes and two workers over one store and Redis: 200 sessions × 3 turns, gap-free cursors", async () => {
  const dataDir = mkdtempSync(join(tmpdir(), "agentry-scale-"));
  dirs.push(dataDir);
  const redis = await startRedis();
  redises.push(redis);
  const common = { DATA_DIR: dataDir, REDIS_URL: redis.url, JOB_LEASE_MS: "5000", WORKER_CONCURRENCY: "8" };
  const apiA = await spawnServer({ ...common, ROLE: "api", READ_MODEL_FILE: join(dataDir, "rm-a.sqlite") }, "agentry listening");
  const apiB = await spawnServer({ ...common, ROLE: "api", READ_MODEL_FILE: join(dataDir, "rm-b.sqlite") }, "agentry listening");
  await spawnServer({ ...common, ROLE: "worker", READ_MODEL_FILE: join(dataDir, "rm-w1.sqlite") }, "agentry worker running");
  await spawnServer({ ...common, ROLE: "worker", READ_MODEL_FILE: join(dataDir, "rm-w2.sqlite") }, "agentry worker running");
  const clients = [api(apiA.url), api(apiB.url)];

  const runners = new Set<string>();
  await Promise.all(Array.from({ length: 200 }, async (_, i) => {
    const create = clients[i % 2]!;
    const sid = (await create.post("/v1/sessions", { user_id: `scale-${i % 10}` })).body.id;
    for (let turn = 0; turn < 3; turn++) {
      // Alternate API processes: each turn is sent to the other one.
      const c = clients[(i + turn) % 2]!;
      const r = await c.post(`/v1/sessions/${sid}/messages`, { content: `turn ${turn}`, wait: true, wait_timeout_s: 120 });
      expect(r.body.status).toBe("completed");
      expect(r.body.reply.content).toContain(`message ${turn + 1} of our conversation`);
    }
    const events = (await clients[(i + 1) % 2]!.get(`/v1/sessions/${sid}/events?since=0&limit=1000`)).body.events;
    expect(events.map((e: any) => e.id)).toEqual(events.map((_: unknown, k: number) => k + 1));
    expect(events.filter((e: any) => e.type === "turn.ended").length).toBe(3);
    const jobs = (await clients[i % 2]!.get(`/v1/sessions/${sid}/jobs`)).body.data;
    for (const j of jobs) {
      const je = (await clients[i % 2]!.get(`/v1/jobs/${j.id}/events?since=0&limit=1000`)).body.events;
      expect(je.map((e: any) => e.id)).toEqual(je.map((_: unknown, k: number) => k + 1));
      // The public view keeps the runner to itself; the store says which worker ran the job.
      const startedPayload = je.find((e: any) => e.type === "job.started").payload;
      expect(startedPayload.attempt).toBe(1);
      expect(startedPayload).not.toHaveProperty("runner_id");
      for (const runner of await runnersOf(dataDir, j.id)) runners.add(runner);
    }
  }));
  expect(runners.size).toBe(2); // both workers took part
}, 240_000);
