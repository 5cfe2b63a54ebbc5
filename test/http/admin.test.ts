/** Operators read the read models' state while the server runs: GET /v1/admin/projections and `bun run projections status`. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { api, TEST_KEY } from "../support/api.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const ROOT = "agr_test_root_token_for_admin_routes_01";
let server: TestServer;

beforeAll(async () => {
  server = await startTestServer({ API_KEY: TEST_KEY, ADMIN_TOKEN: ROOT, SANDBOX_CHUNK_DELAY_MS: "0" });
  const client = api(server.url);
  expect((await client.post("/v1/sessions", { user_id: "u-admin" })).status).toBe(201);
  await server.ctx.projections.waitUntilCaughtUp();
});
afterAll(async () => {
  await server?.stop();
});

test("GET /v1/admin/projections: each read model's state and lag, for the management plane only", async () => {
  const root = api(server.url, "");
  const r = await root.get("/v1/admin/projections", { authorization: `Bearer ${ROOT}` });
  expect(r.status).toBe(200);
  const names = r.body.data.map((p: any) => p.name);
  expect(names).toEqual(expect.arrayContaining(["sessions", "jobs", "usage", "memory", "files"]));
  const sessions = r.body.data.find((p: any) => p.name === "sessions");
  expect(sessions).toMatchObject({ state: "live", lag_events: 0, last_error: null });
  expect(BigInt(sessions.checkpoint)).toBeGreaterThan(0n);
  // A data-plane key is not a management credential.
  expect((await api(server.url).get("/v1/admin/projections")).status).toBe(401);
});

test("`bun run projections status` reads the running server's read models beside it, taking no lock", async () => {
  const cli = Bun.spawn(["bun", join(import.meta.dir, "../../src/cli/projections.ts"), "status"], {
    env: { ...process.env, DATA_DIR: server.dataDir, LOG_LEVEL: "error" }, stdout: "pipe", stderr: "pipe",
  });
  const timer = setTimeout(() => cli.kill(), 30_000);
  const [out, err, code] = await Promise.all([new Response(cli.stdout).text(), new Response(cli.stderr).text(), cli.exited]);
  clearTimeout(timer);
  expect({ code, err }).toEqual({ code: 0, err: "" });
  const report = JSON.parse(out);
  expect(report.served_by_pid).toBe(process.pid);
  const live = (await server.ctx.projections.status()).map((p) => [p.name, p.checkpoint]);
  expect(report.projections.map((p: any) => [p.name, p.checkpoint])).toEqual(live);
  expect(report.projections.every((p: any) => p.state === "live" && p.lag_events === 0)).toBe(true);
  // The server still works after it: the CLI took no lock and wrote nothing.
  expect((await api(server.url).post("/v1/sessions", { user_id: "u-after" })).status).toBe(201);
});
