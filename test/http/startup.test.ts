/**
 * Start-up hygiene: private data files, the generated key shown once, configuration errors that
 * never echo a value, and the documented split (API + worker on one data folder) working with defaults.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, loadConfig } from "../../src/config.ts";
import { api } from "../support/api.ts";
import { killAll, spawnServer } from "../support/processes.ts";
import { startRedis, type RedisServer } from "../support/redis.ts";

const dirs: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "agentry-startup-"));
  dirs.push(dir);
  return dir;
};
let redis: RedisServer | undefined;
afterAll(async () => {
  await killAll();
  await redis?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const modeOf = (path: string) => statSync(path).mode & 0o777;

describe("the data folder", () => {
  test("is created 0700 with its files 0600; the generated key is shown on the first start only", async () => {
    const dataDir = join(tempDir(), "nested", "data");
    // An empty API_KEY counts as unset: the server generates the default app's key.
    const first = await spawnServer({ API_KEY: "", DATA_DIR: dataDir });
    await first.waitForLine("generated an API key");
    // Shown once as plain text on the terminal (stderr, its own pipe: waited for on its own), never as
    // a field of a JSON log line.
    const shown = { api_key: (await first.waitForLine("agk_")).trim() };
    expect(shown.api_key).toMatch(/^agk_[A-Za-z0-9_-]+$/);
    expect(first.lines.filter((l) => l.startsWith("{")).join("\n")).not.toContain(shown.api_key);
    for (const file of ["events.sqlite", "readmodels.sqlite", "api_key"]) expect({ file, mode: modeOf(join(dataDir, file)) }).toEqual({ file, mode: 0o600 });
    expect(modeOf(dataDir)).toBe(0o700);
    first.child.kill("SIGTERM");
    await first.child.exited;

    const second = await spawnServer({ API_KEY: "", DATA_DIR: dataDir });
    await second.waitForLine("API key is in the data folder");
    expect((await api(second.url, shown.api_key).get("/v1/agents")).status).toBe(200);
    expect(second.lines.join("\n")).not.toContain(shown.api_key);
    second.child.kill("SIGTERM");
    await second.child.exited;
  });
});

describe("configuration errors", () => {
  test("name the variable and never echo its value", () => {
    const secret = "sk-live-do-not-print-me";
    for (const env of [{ API_KEY: "short" }, { ADMIN_TOKEN: `root token with spaces ${secret}` }, { API_KEY: `eyJhbGciOiJIUzI1NiJ9.${secret}.c2ln` }, { PORT: secret }, { REDIS_URL: `http://user:${secret}@host` }, { EVENTSTORE_CONNECTION_STRING: `tcp://${secret}` }]) {
      try {
        loadConfig(env);
        throw new Error(`accepted ${JSON.stringify(env)}`);
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        const value = Object.values(env)[0]!;
        expect((err as Error).message).toContain(Object.keys(env)[0]!);
        expect((err as Error).message).not.toContain(value);
      }
    }
  });
});

describe("API and worker on one data folder, with defaults", () => {
  test("both start, each with its own read-model file, and turns run", async () => {
    redis = await startRedis();
    const dataDir = tempDir();
    const apiProc = await spawnServer({ ROLE: "api", DATA_DIR: dataDir, REDIS_URL: redis.url });
    const worker = await spawnServer({ ROLE: "worker", DATA_DIR: dataDir, REDIS_URL: redis.url });
    const files = [apiProc, worker].map((p) => JSON.parse(p.lines.find((l) => l.includes("read_model_file"))!).read_model_file);
    expect(new Set(files).size).toBe(2);
    const client = api(apiProc.url);
    const sid = (await client.post("/v1/sessions", { user_id: "split" })).body.id;
    const turn = await client.post(`/v1/sessions/${sid}/messages`, { content: "hello", wait: true, wait_timeout_s: 30 });
    expect(turn.body.status).toBe("completed");
  }, 30_000);
});
