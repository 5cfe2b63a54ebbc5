/**
 * Test keys never reach a real model: with a real provider configured (the OpenAI wire format, served
 * locally), an app's live key calls it and the same app's test key gets the sandbox's answer.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { newResourceId } from "../../src/core/ids.ts";
import { keyHash, keyPrefix, newApiKey, type KeyMode } from "../../src/domain/app/keys.ts";
import { api, TEST_KEY } from "../support/api.ts";
import { startOpenAiWireServer, type WireServer } from "../support/llmWireServers.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

let wire: WireServer;
let server: TestServer;
const keys: Partial<Record<KeyMode, string>> = {};

beforeAll(async () => {
  wire = startOpenAiWireServer();
  server = await startTestServer({ API_KEY: TEST_KEY, LLM_PROVIDER: "openai", LLM_API_KEY: "sk-live", LLM_BASE_URL: wire.baseURL, SANDBOX_CHUNK_DELAY_MS: "0" });
  const meta = { appId: "app_ops" };
  await server.ctx.repos.apps.handle("app_modes", { type: "CreateApp", app_id: "app_modes", name: "Modes" }, meta);
  for (const mode of ["live", "test"] as const) {
    const key = newApiKey(mode);
    await server.ctx.repos.apps.handle("app_modes", { type: "IssueKey", key: {
      key_id: newResourceId("key"), name: mode, prefix: keyPrefix(key), hash: keyHash(key), mode, scopes: ["data:write"], agent_ids: null, user_id: null, expires_at: null,
    } }, meta);
    keys[mode] = key;
  }
  for (let i = 0; i < 100 && (await api(server.url, keys.test).get("/v1/sessions")).status !== 200; i++) await Bun.sleep(20);
});
afterAll(async () => {
  await server?.stop();
  wire?.stop();
});

async function turn(key: string) {
  const client = api(server.url, key);
  const sid = (await client.post("/v1/sessions", { user_id: "u" })).body.id;
  return (await client.post(`/v1/sessions/${sid}/messages`, { content: "hello", wait: true })).body;
}

test("a test key's turn is answered by the sandbox and never calls the configured provider; a live key's calls it", async () => {
  const before = wire.requests.length;
  const inTest = await turn(keys.test!);
  expect(inTest.status).toBe("completed");
  expect(inTest.reply.content).toContain("Sandbox reply");
  expect(wire.requests.length).toBe(before);
  const live = await turn(keys.live!);
  expect(live.status).toBe("completed");
  expect(live.reply.content).not.toContain("Sandbox reply");
  expect(wire.requests.length).toBe(before + 1);
});
