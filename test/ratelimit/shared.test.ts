/**
 * Two API processes over one SQLite store and one real redis-server enforce one limit: requests sent
 * to either are charged to the same budget, heavy calls included, and an app's limits set through one
 * process hold in the other. With Redis gone, each process limits on its own (and says so), and
 * shares again once Redis is back.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { api, TEST_KEY } from "../support/api.ts";
import { killAll, spawnServer, type ServerProcess } from "../support/processes.ts";
import { startRedis, type RedisServer } from "../support/redis.ts";

const ROOT = "agr_shared_limit_root_token_0123456789";
let redis: RedisServer;
let dataDir: string;
let a: ServerProcess;
let b: ServerProcess;

beforeAll(async () => {
  redis = await startRedis();
  dataDir = mkdtempSync(join(tmpdir(), "agentry-shared-limit-"));
  const env = { DATA_DIR: dataDir, REDIS_URL: redis.url, ROLE: "api", ADMIN_TOKEN: ROOT, RATE_LIMIT_PER_MINUTE: "4", RATE_LIMIT_HEAVY_PER_MINUTE: "2" };
  a = await spawnServer({ ...env, READ_MODEL_FILE: join(dataDir, "rm-a.sqlite") });
  b = await spawnServer({ ...env, READ_MODEL_FILE: join(dataDir, "rm-b.sqlite") });
});

afterAll(async () => {
  await killAll();
  await redis?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

const admin = (p: ServerProcess) => api(p.url, "");
const bearer = { authorization: `Bearer ${ROOT}` };

/** A new key of the app, issued through A, once B knows it too (B's first answer to it is charged). */
async function sharedKey(appId = "app_default"): Promise<string> {
  const issued = await admin(a).post(`/v1/apps/${appId}/keys`, { name: "shared" }, bearer);
  expect(issued.status).toBe(201);
  const key = issued.body.key as string;
  const deadline = Date.now() + 10_000;
  while ((await api(b.url, key).get("/v1/agents")).status === 401 && Date.now() < deadline) await Bun.sleep(50);
  return key;
}

describe("one limit across two processes", () => {
  test("requests alternating between the processes share the key's budget", async () => {
    const answers = [];
    for (let i = 0; i < 8; i++) answers.push(await api((i % 2 ? b : a).url, TEST_KEY).get("/v1/sessions"));
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200, 429, 429, 429, 429]);
    expect(answers.slice(0, 4).map((r) => r.headers.get("ratelimit-remaining"))).toEqual(["3", "2", "1", "0"]);
    expect(answers.map((r) => r.headers.get("x-ratelimit-limit"))).toEqual(Array(8).fill("4"));
    for (const refused of answers.slice(4)) {
      expect(refused.body.error.code).toBe("rate_limit_exceeded");
      expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    }
  });

  test("concurrent requests to both: exactly the limit passes", async () => {
    const key = await sharedKey(); // 1 of 4 spent on B
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => api((i % 2 ? b : a).url, key).get("/v1/sessions")));
    expect(answers.filter((r) => r.status === 200).length).toBe(3);
    expect(answers.filter((r) => r.status === 429).length).toBe(9);
  });

  test("heavy calls share the heavy budget", async () => {
    const key = await sharedKey();
    const runs = [];
    for (let i = 0; i < 3; i++) runs.push(await api((i % 2 ? b : a).url, key).post("/v1/runs", { user_id: "shared", input: `run ${i}` }));
    expect(runs.map((r) => r.status)).toEqual([202, 202, 429]);
    expect(runs[2]!.body.error.details).toMatchObject({ budget: "heavy", limit: 2 });
  });

  test("an app's limits set through one process hold in the other", async () => {
    const app = await admin(a).post("/v1/apps", { name: "shared limits" }, bearer);
    const key = await sharedKey(app.body.id);
    const set = await fetch(`${a.url}/v1/apps/${app.body.id}/rate_limits`, {
      method: "PUT", headers: { ...bearer, "content-type": "application/json" }, body: JSON.stringify({ per_key: { requests_per_minute: 6 } }),
    });
    expect(set.status).toBe(200);
    // B follows the app stream: bounded wait until it applies the new limit.
    const deadline = Date.now() + 10_000;
    let seen = await api(b.url, key).get("/v1/sessions");
    while (seen.headers.get("ratelimit-limit") !== "6" && Date.now() < deadline) {
      await Bun.sleep(50);
      seen = await api(b.url, key).get("/v1/sessions");
    }
    expect(seen.headers.get("ratelimit-limit")).toBe("6");
    // Whatever B spent finding out, both processes now refuse past 6 in all.
    const answers = [];
    for (let i = 0; i < 8; i++) answers.push(await api((i % 2 ? b : a).url, key).get("/v1/sessions"));
    const last = answers.findLastIndex((r) => r.status === 200);
    expect(answers.slice(last + 1).every((r) => r.status === 429)).toBe(true);
    expect(answers.slice(0, last + 1).every((r) => r.status === 200)).toBe(true);
    expect(answers[last]!.headers.get("ratelimit-remaining")).toBe("0");
  });
});

describe("Redis gone", () => {
  test("each process limits on its own and says so; once Redis is back they share again", async () => {
    const key = await sharedKey();
    await redis.down();
    // Answers keep coming (bounded), limited per process: 4 each, whatever the other spent.
    const fromA = [];
    for (let i = 0; i < 5; i++) fromA.push(await api(a.url, key).get("/v1/sessions"));
    expect(fromA.map((r) => r.status)).toEqual([200, 200, 200, 200, 429]);
    expect((await api(b.url, key).get("/v1/sessions")).status).toBe(200);
    await a.waitForLine("rate limiter: redis is unreachable", 10_000);
    await redis.up();
    // Traffic after the pause tries Redis again (bounded wait for the reconnect).
    const deadline = Date.now() + 20_000;
    while (!a.lines.some((l) => l.includes("redis answers again")) && Date.now() < deadline) {
      await api(a.url, key).get("/v1/agents");
      await Bun.sleep(100);
    }
    expect(a.lines.some((l) => l.includes("rate limiter: redis answers again"))).toBe(true);
  }, 60_000);
});
