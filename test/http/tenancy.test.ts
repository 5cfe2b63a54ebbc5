/**
 * Keys are checked against the app streams: the configured key is the default app's, a changed
 * configuration retires the previous key, and a key's app being suspended or the key revoked is
 * refused with the documented status and code.
 */
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../src/config.ts";
import { silentLogger } from "../../src/core/logger.ts";
import { newResourceId } from "../../src/core/ids.ts";
import { keyHash, keyPrefix, newApiKey } from "../../src/domain/app/keys.ts";
import { DEFAULT_APP_ID } from "../../src/domain/streams.ts";
import { startServer, type RunningServer } from "../../src/main.ts";

const dirs: string[] = [];
const servers: RunningServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.shutdown("test");
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function start(dataDir: string, apiKey: string) {
  const server = await startServer(loadConfig({ PORT: "0", DATA_DIR: dataDir, API_KEY: apiKey, SQLITE_SYNCHRONOUS: "normal" }), silentLogger);
  servers.push(server);
  return server;
}
const get = (server: RunningServer, key: string) => fetch(`${server.url}/v1/sessions`, { headers: { "x-api-key": key } });
const meta = { appId: DEFAULT_APP_ID };

test("the configured key is the default app's; after the configuration changes, only the new key works", async () => {
  const dir = mkdtempSync(join(tmpdir(), "agentry-tenancy-"));
  dirs.push(dir);
  const first = "first-configured-key-0123456789";
  const second = "second-configured-key-0123456789";
  let server = await start(dir, first);
  expect((await get(server, first)).status).toBe(200);
  await server.shutdown("restart");
  servers.pop();
  server = await start(dir, second);
  expect((await get(server, second)).status).toBe(200);
  const old = await get(server, first);
  expect(old.status).toBe(401);
  expect(((await old.json()) as any).error.code).toBe("invalid_api_key");
  // One configured key at a time, not one more per start.
  const { state } = await server.ctx.repos.apps.load(DEFAULT_APP_ID);
  expect(state.keys.filter((k) => !k.revoked).map((k) => k.hash)).toEqual([keyHash(second)]);
});

test("an issued key works; revoked it is 401; its app suspended it is 403 app_suspended; resumed it works again", async () => {
  const dir = mkdtempSync(join(tmpdir(), "agentry-tenancy-"));
  dirs.push(dir);
  const server = await start(dir, "configured-key-0123456789abcdef");
  const apps = server.ctx.repos.apps;
  const extra = newApiKey("live");
  const keyId = newResourceId("key");
  await apps.handle(DEFAULT_APP_ID, { type: "IssueKey", key: {
    key_id: keyId, name: "integration", prefix: keyPrefix(extra), hash: keyHash(extra), mode: "live", scopes: ["data:read"], agent_ids: null, user_id: null, expires_at: null,
  } }, meta);
  // Issued in this process: the directory follows the app stream (bounded wait for the feed).
  let status = 0;
  for (let i = 0; i < 50 && status !== 200; i++) {
    status = (await get(server, extra)).status;
    if (status !== 200) await Bun.sleep(20);
  }
  expect(status).toBe(200);

  await apps.handle(DEFAULT_APP_ID, { type: "SuspendApp", reason: "test" }, meta);
  let suspended = await get(server, extra);
  for (let i = 0; i < 50 && suspended.status === 200; i++) {
    await Bun.sleep(20);
    suspended = await get(server, extra);
  }
  expect(suspended.status).toBe(403);
  expect(((await suspended.json()) as any).error.code).toBe("app_suspended");

  await apps.handle(DEFAULT_APP_ID, { type: "ResumeApp" }, meta);
  await apps.handle(DEFAULT_APP_ID, { type: "RevokeKey", key_id: keyId }, meta);
  let revoked = await get(server, extra);
  for (let i = 0; i < 50 && revoked.status !== 401; i++) {
    await Bun.sleep(20);
    revoked = await get(server, extra);
  }
  expect(revoked.status).toBe(401);
  expect(((await revoked.json()) as any).error.code).toBe("invalid_api_key");
  expect((await get(server, "configured-key-0123456789abcdef")).status).toBe(200); // the app is active again
});
