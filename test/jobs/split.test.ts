/**
 * The split deployment with no faults: an API process and two workers over one SQLite store and a
 * real redis-server. Live turns are never taken from the worker running them, and a cancel sent to
 * the API process aborts the model request on the worker (the model server sees its connection close).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { api, type Api } from "../support/api.ts";
import { startOpenAiWireServer, type WireServer } from "../support/llmWireServers.ts";
import { killAll, spawnServer } from "../support/processes.ts";
import { startRedis, type RedisServer } from "../support/redis.ts";

let redis: RedisServer;
let wire: WireServer;
let dataDir: string;
let client: Api;

beforeAll(async () => {
  redis = await startRedis();
  wire = startOpenAiWireServer();
  dataDir = mkdtempSync(join(tmpdir(), "agentry-split-"));
  // Short lease, stall timeout and reconcile interval: a reconciler that took live turns from their
  // workers would do so within a second here. Workers serve the sandbox and an OpenAI-compatible
  // endpoint (the local wire server).
  const env = {
    DATA_DIR: dataDir, REDIS_URL: redis.url, JOB_LEASE_MS: "300", RECONCILE_INTERVAL_MS: "200", LLM_STALL_TIMEOUT_MS: "300",
    SANDBOX_CHUNK_DELAY_MS: "10", LLM_PROVIDER: "openai", LLM_BASE_URL: wire.baseURL, LLM_API_KEY: "sk-test",
  };
  const apiProc = await spawnServer({ ...env, ROLE: "api", READ_MODEL_FILE: join(dataDir, "rm-api.sqlite") });
  await spawnServer({ ...env, ROLE: "worker", READ_MODEL_FILE: join(dataDir, "rm-w1.sqlite") });
  await spawnServer({ ...env, ROLE: "worker", READ_MODEL_FILE: join(dataDir, "rm-w2.sqlite") });
  client = api(apiProc.url);
});

afterAll(async () => {
  await killAll();
  wire?.stop();
  await redis?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

describe("no faults", () => {
  test("six long, steadily streaming turns across two workers all complete; none is interrupted", async () => {
    const agent = await client.post("/v1/agents", { name: "slow", model: { provider: "sandbox" } });
    expect(agent.status).toBe(201);
    // Each "[slow]" turn streams for a few seconds: many times the lease, the stall timeout and the
    // reconcile interval, without a usage event until its end.
    const turns = await Promise.all(Array.from({ length: 6 }, async (_, i) => {
      const sid = (await client.post("/v1/sessions", { user_id: "steady", agent_id: agent.body.id })).body.id;
      return client.post(`/v1/sessions/${sid}/messages`, { content: `long steady turn ${i} [slow]`, wait: true, wait_timeout_s: 60 });
    }));
    const outcomes = turns.map((t) => ({ status: t.body.status, error: t.body.error?.code ?? null }));
    expect(outcomes).toEqual(Array.from({ length: 6 }, () => ({ status: "completed", error: null })));
    for (const t of turns) {
      const events = (await client.get(`/v1/jobs/${t.body.job_id}/events?since=0&limit=1000`)).body.events;
      // One attempt, never restarted by another worker.
      expect(events.filter((e: any) => e.type === "job.started").length).toBe(1);
    }
  }, 60_000);
});

describe("a cancel sent to the API process", () => {
  test("aborts the model request on the worker: the model server sees the connection closed", async () => {
    const before = wire.clientDisconnects;
    wire.script({ kind: "slow", chunks: Array.from({ length: 400 }, (_, i) => `chunk ${i} `), delayMs: 25 });
    const sid = (await client.post("/v1/sessions", { user_id: "cancel" })).body.id;
    const sent = await client.post(`/v1/sessions/${sid}/messages`, { content: "stream for a long time" });
    await client.waitForText(sent.body.job_id);
    const cancelled = await client.post(`/v1/jobs/${sent.body.job_id}/cancel`, { reason: "user pressed stop" });
    expect([200, 202]).toContain(cancelled.status);
    const job = await client.waitForStatus(sent.body.job_id, ["completed", "failed", "cancelled"], 20_000);
    expect(job.status).toBe("cancelled");
    // The worker's request to the model server was closed, long before its 400 chunks were sent.
    const deadline = Date.now() + 10_000;
    while (wire.clientDisconnects === before && Date.now() < deadline) await Bun.sleep(20);
    expect(wire.clientDisconnects).toBe(before + 1);
    expect((await client.get(`/v1/sessions/${sid}`)).body.status).toBe("idle");
  }, 30_000);
});
