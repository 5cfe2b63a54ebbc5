/**
 * A read model whose version changed since its tables were built is rebuilt at start in the background:
 * start does not wait for it, readiness and the data plane say so (503 read_models_rebuilding, never an
 * answer from the old tables), an erasure is refused until it is done, and afterwards everything serves.
 */
import { afterAll, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../src/config.ts";
import { silentLogger } from "../../src/core/logger.ts";
import { startServer, type RunningServer } from "../../src/main.ts";
import { ShadowBuild } from "../../src/projections/shadowRebuild.ts";
import { api, TEST_KEY } from "../support/api.ts";

const ROOT = "agr_test_root_token_for_version_rebuilds";
const dataDir = mkdtempSync(join(tmpdir(), "agentry-version-"));
const start = () => startServer(loadConfig({
  PORT: "0", DATA_DIR: dataDir, SQLITE_SYNCHRONOUS: "normal", API_KEY: TEST_KEY, ADMIN_TOKEN: ROOT,
  SANDBOX_CHUNK_DELAY_MS: "0", RATE_LIMIT_PER_MINUTE: "0", RATE_LIMIT_HEAVY_PER_MINUTE: "0",
}), silentLogger);

// Holds the rebuilds of the bumped read models until released, so the test sees them running.
const BUMPED = ["sessions", "jobs", "usage", "files"];
const realCatchUp = ShadowBuild.prototype.catchUp;
let release: () => void = () => {};
const held = new Promise<void>((resolve) => (release = resolve));
ShadowBuild.prototype.catchUp = async function (this: ShadowBuild, ...args: Parameters<ShadowBuild["catchUp"]>) {
  if (BUMPED.includes(this.projection.name)) await held;
  return realCatchUp.apply(this, args);
};

let server: RunningServer | undefined;
afterAll(async () => {
  release();
  ShadowBuild.prototype.catchUp = realCatchUp;
  await server?.shutdown("test");
  rmSync(dataDir, { recursive: true, force: true });
});

test("a version bump rebuilds at start without blocking it; the data plane answers 503 until the swap, then serves", async () => {
  // A first server writes a session and a memory, then stops.
  server = await start();
  const first = api(server.url);
  const session = await first.post("/v1/sessions", { user_id: "u1", external_ref: "before-the-bump" });
  expect(session.status).toBe(201);
  expect((await first.post("/v1/memory", { user_id: "u1", content: "u1 likes green tea" })).status).toBe(201);
  const ticket = await first.post("/v1/uploads", { session_id: session.body.id, name: "notes.txt", content_type: "text/plain", size: 11 });
  expect(ticket.status).toBe(201);
  await server.shutdown("test");

  // As if a release changed the sessions fold: the recorded version is not the code's any more.
  const rm = new Database(join(dataDir, "readmodels.sqlite"));
  rm.exec(`UPDATE projection_checkpoints SET version = version + 100 WHERE name IN (${BUMPED.map((n) => `'${n}'`).join(", ")})`);
  rm.close();

  server = await start(); // returns with the rebuild still held: start did not wait for it
  const client = api(server.url);
  const admin = api(server.url, "");
  const root = { authorization: `Bearer ${ROOT}` };

  const ready = await admin.get("/health/ready");
  expect(ready.status).toBe(503);
  expect([...ready.body.rebuilding].sort()).toEqual([...BUMPED].sort());
  const health = await admin.get("/health");
  expect(health.status).toBe(200);
  expect(health.body.ready).toBe(false);
  expect(health.body.projections.find((p: any) => p.name === "sessions").state).toBe("rebuilding");
  expect(health.body.projections.find((p: any) => p.name === "jobs").state).toBe("rebuilding");
  expect(health.body.projections.find((p: any) => p.name === "memory").state).toBe("live");

  // The data plane: credentials first (an unknown caller learns nothing), then 503 with Retry-After.
  expect((await api(server.url, "wrong-key-0123456789abcdef").get("/v1/sessions")).status).toBe(401);
  for (const r of [await client.get("/v1/sessions?user_id=u1"), await client.post("/v1/sessions", { user_id: "u2" }), await client.get("/v1/memory?user_id=u1")]) {
    expect(r.status).toBe(503);
    expect(r.body.error.code).toBe("read_models_rebuilding");
    expect([...r.body.error.details.projections].sort()).toEqual([...BUMPED].sort());
    expect(r.headers.get("retry-after")).toBe("5");
  }
  // The management plane stays up to watch it; an erasure and a session search wait for the swap.
  const list = await admin.get("/v1/admin/projections", root);
  expect(list.status).toBe(200);
  expect(list.body.data.find((p: any) => p.name === "sessions").rebuild).toMatchObject({ reason: "version_changed", state: "running" });
  const erase = await admin.del("/v1/apps/app_default/users/u1?erase=true", root);
  expect([erase.status, erase.body.error.code]).toEqual([503, "read_models_rebuilding"]);
  const search = await admin.get("/v1/apps/app_default/audit/sessions?user_id=u1", root);
  expect([search.status, search.body.error.code]).toEqual([503, "read_models_rebuilding"]);
  // Management reads of a waiting read model refuse too, rather than answer from its old tables; the
  // jobs gauge is left out of /metrics; a signed upload is refused before it is used up.
  for (const path of ["/v1/admin/jobs/counts", "/v1/admin/jobs", "/v1/admin/queue", "/v1/apps/app_default/usage"]) {
    const r = await admin.get(path, root);
    expect([path, r.status, r.body.error?.code]).toEqual([path, 503, "read_models_rebuilding"]);
  }
  const metrics = await fetch(`${server.url}/metrics`, { headers: root });
  expect(metrics.status).toBe(200);
  expect(await metrics.text()).not.toMatch(/^agentry_jobs\{/m);
  // The URL names the first server's port; the same path on this one.
  const uploadUrl = () => { const u = new URL(ticket.body.upload_url); return `${server!.url}${u.pathname}${u.search}`; };
  const refused = await fetch(uploadUrl(), { method: "PUT", body: "hello world" });
  expect(refused.status).toBe(503);

  release();
  await server.ctx.projections.whenReady();
  expect((await admin.get("/health/ready")).body).toEqual({ ready: true, rebuilding: [] });
  const after = await client.get("/v1/sessions?user_id=u1");
  expect(after.status).toBe(200);
  expect(after.body.data.map((s: any) => s.id)).toEqual([session.body.id]);
  expect((await client.post("/v1/sessions", { user_id: "u2" })).status).toBe(201);
  // The refused upload URL still works, and its answer is read back fresh.
  const uploaded = await fetch(uploadUrl(), { method: "PUT", body: "hello world" });
  expect(uploaded.status).toBe(201);
  expect(await uploaded.json()).toMatchObject({ status: "uploaded", size: 11, sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
  expect((await admin.get("/v1/admin/jobs/counts", root)).status).toBe(200);
  const row = server.ctx.db.query("SELECT version FROM projection_checkpoints WHERE name = 'sessions'").get() as { version: number };
  expect(row.version).toBeLessThan(100);
}, 60_000);
