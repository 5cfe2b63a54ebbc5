/**
 * Crash safety of the embedded server: kill -9 mid-turn, restart on the same data folder, and no job
 * is left pending or processing; the session is free again.
 */
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { api, TEST_KEY } from "../support/api.ts";

const dirs: string[] = [];
const children: Array<ReturnType<typeof Bun.spawn>> = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill("SIGKILL");
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function startProcess(dataDir: string, port = 0) {
  const child = Bun.spawn(["bun", join(import.meta.dir, "../../src/main.ts")], {
    env: { ...process.env, PORT: String(port), DATA_DIR: dataDir, API_KEY: TEST_KEY, SANDBOX_CHUNK_DELAY_MS: "20", LOG_LEVEL: "info" },
    stdout: "pipe", stderr: "pipe",
  });
  children.push(child);
  const reader = child.stdout.getReader();
  let out = "";
  while (!out.includes("agentry listening")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`server exited: ${out}${await new Response(child.stderr).text()}`);
    out += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  const url = JSON.parse(out.split("\n").find((l) => l.includes("agentry listening"))!).url as string;
  return { child, url };
}

test("kill -9 mid-turn, restart: every acknowledged job ends and the session is free", async () => {
  const dataDir = mkdtempSync(join(tmpdir(), "agentry-restart-"));
  dirs.push(dataDir);
  const first = await startProcess(dataDir);
  const client = api(first.url);
  const sid = (await client.post("/v1/sessions", { user_id: "crash" })).body.id;
  const running = await client.post(`/v1/sessions/${sid}/messages`, { content: "a long answer please [slow]" });
  const queued = await client.post(`/v1/sessions/${sid}/messages`, { content: "then this", multitask: "enqueue" });
  const run = await client.post("/v1/runs", { user_id: "crash", input: "a run [slow]" });
  const planned = await client.post(`/v1/sessions/${(await client.post("/v1/sessions", { user_id: "crash" })).body.id}/messages`, { content: "register https://example.com/p.png" });
  expect([running.status, queued.status, run.status, planned.status]).toEqual([202, 202, 202, 202]);
  // Wait until the slow turn has streamed some text, then kill the process without warning.
  await client.waitForText(running.body.job_id);
  first.child.kill("SIGKILL");
  await first.child.exited;

  const second = await startProcess(dataDir);
  const after = api(second.url);
  const ended = ["completed", "failed", "cancelled"];
  const r1 = await after.waitForStatus(running.body.job_id, ended);
  // It had already streamed text: it is failed as interrupted rather than repeated.
  expect(r1.status).toBe("failed");
  expect(r1.error.code).toBe("interrupted");
  const r2 = await after.waitForStatus(queued.body.job_id, ended);
  expect(r2.status).toBe("completed");
  const r3 = await after.waitForStatus(run.body.job_id, ended);
  expect(ended).toContain(r3.status);
  const r4 = await after.get(`/v1/jobs/${planned.body.job_id}`);
  expect(["awaiting_approval", ...ended]).toContain(r4.body.status);
  expect((await after.get(`/v1/sessions/${sid}`)).body).toMatchObject({ status: "idle", active_job_id: null });
  const events = await after.get(`/v1/jobs/${running.body.job_id}/events?since=0&limit=1000`);
  expect(events.body.events.map((e: any) => e.id)).toEqual(events.body.events.map((_: unknown, i: number) => i + 1));
  expect(events.body.events.filter((e: any) => ["job.completed", "job.failed", "job.cancelled"].includes(e.type)).length).toBe(1);
  second.child.kill("SIGTERM");
  expect(await second.child.exited).toBe(0);
}, 60_000);
