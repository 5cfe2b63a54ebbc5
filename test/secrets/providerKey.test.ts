/**
 * The model provider's key is configuration, never data: after turns that succeed and a turn whose
 * provider answers with an error quoting the key, the key is in no file of the data folder (read as
 * bytes, while running and after shutdown) and in no line the server logged.
 */
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../src/config.ts";
import type { Logger } from "../../src/core/logger.ts";
import { startServer } from "../../src/main.ts";
import { filesUnder } from "../support/files.ts";
import { api, TEST_KEY } from "../support/api.ts";
import { startOpenAiWireServer } from "../support/llmWireServers.ts";

const PROVIDER_KEY = "sk-provider-secret-7Qz91XvL";


test("the provider key is in no file of the data folder and no log line", async () => {
  const lines: string[] = [];
  const write = (level: string) => (msg: string, fields?: Record<string, unknown>) => {
    lines.push(JSON.stringify({ level, msg, ...fields }, (_k, v) => (typeof v === "bigint" ? v.toString() : v instanceof Error ? { message: v.message, stack: v.stack } : v)));
  };
  const logger: Logger = {
    debug: write("debug"), info: write("info"), warn: write("warn"), error: write("error"), child: () => logger,
    showSecretOnce: (title, secret) => lines.push(`${title} ${secret}`),
  };
  const wire = startOpenAiWireServer();
  const dataDir = mkdtempSync(join(tmpdir(), "agentry-provider-key-"));
  const server = await startServer(loadConfig({
    PORT: "0", DATA_DIR: dataDir, API_KEY: TEST_KEY, SQLITE_SYNCHRONOUS: "normal", LOG_LEVEL: "debug",
    LLM_PROVIDER: "openai", LLM_API_KEY: PROVIDER_KEY, LLM_BASE_URL: wire.baseURL, LLM_MAX_ATTEMPTS: "1",
  }), logger);
  try {
    const client = api(server.url);
    const sid = (await client.post("/v1/sessions", { user_id: "u" })).body.id;
    expect((await client.post(`/v1/sessions/${sid}/messages`, { content: "hello", wait: true })).body.status).toBe("completed");
    // The provider refuses, quoting the key back (as some do): the failure must not carry it anywhere.
    wire.script({ kind: "status", status: 401, body: JSON.stringify({ error: { message: `Incorrect API key provided: ${PROVIDER_KEY}` } }) });
    const failed = await client.post(`/v1/sessions/${sid}/messages`, { content: "again", wait: true });
    expect(failed.body.status).toBe("failed");
    expect(JSON.stringify(failed.body)).not.toContain(PROVIDER_KEY);
    // The key did reach the provider, so the scan below can tell "absent" from "never used".
    expect(wire.requests.some((r) => (r.headers.get("authorization") ?? "").includes(PROVIDER_KEY))).toBe(true);
    const whileRunning = filesUnder(dataDir).filter((f) => f.bytes.includes(PROVIDER_KEY)).map((f) => f.path);
    expect(whileRunning).toEqual([]);
  } finally {
    await server.shutdown("test");
    wire.stop();
  }
  expect(filesUnder(dataDir).filter((f) => f.bytes.includes(PROVIDER_KEY)).map((f) => f.path)).toEqual([]);
  expect(lines.filter((l) => l.includes(PROVIDER_KEY))).toEqual([]);
  expect(lines.length).toBeGreaterThan(5); // the log was captured
  rmSync(dataDir, { recursive: true, force: true });
});
