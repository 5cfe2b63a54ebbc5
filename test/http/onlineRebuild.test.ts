/**
 * Online rebuild over HTTP, under load: 20 clients read and write while every read model is rebuilt
 * from the store through POST /v1/admin/projections/{name}/rebuild. No request fails, no client ever
 * reads fewer of its own sessions than it created, and the swapped tables equal a from-scratch fold.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { projections } from "../../projections/index.ts";
import { dumpTables, openReadModelDb } from "../../src/projections/readModelDb.ts";
import { ProjectionRunner } from "../../src/projections/runner.ts";
import { api, TEST_KEY } from "../support/api.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const ROOT = "agr_test_root_token_for_online_rebuilds";
const CLIENTS = 20;
const allTables = projections.flatMap((p) => p.tables);
let server: TestServer;
const root = () => ({ authorization: `Bearer ${ROOT}` });

beforeAll(async () => {
  server = await startTestServer({
    API_KEY: TEST_KEY, ADMIN_TOKEN: ROOT, SANDBOX_CHUNK_DELAY_MS: "0", RATE_LIMIT_PER_MINUTE: "0", RATE_LIMIT_HEAVY_PER_MINUTE: "0",
  });
  // History for the rebuilds to read: real conversations, and bulk events only the stream catalog folds.
  const client = api(server.url);
  const s = await client.post("/v1/sessions", { user_id: "seed" });
  const m = await client.post(`/v1/sessions/${s.body.id}/messages`, { content: "hello" });
  await client.pollUntilDone(m.body.job_id);
  for (let i = 0; i < 150; i++) {
    await server.ctx.store.appendToStream(`bulk-${i}`, Array.from({ length: 1000 }, (_, k) => ({ id: crypto.randomUUID(), type: "BulkNoted", data: { k } })));
  }
  await server.ctx.projections.waitUntilCaughtUp();
}, 60_000);
afterAll(async () => {
  await server?.stop();
});

test("20 clients read and write while every read model rebuilds online: no errors, and the swapped tables equal a fresh fold", async () => {
  const failures: string[] = [];
  const latencies: number[] = [];
  let requests = 0;
  let rebuilding = true;
  const check = (what: string, r: { status: number; body: any; ms: number }, ok: number[] = [200, 201, 202]) => {
    requests++;
    if (rebuilding) latencies.push(r.ms);
    if (!ok.includes(r.status)) failures.push(`${what}: ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`);
    return r;
  };
  const clientLoop = async (n: number) => {
    const plain = api(server.url);
    const timed = <A extends unknown[]>(call: (...args: A) => Promise<{ status: number; body: any }>) => async (...args: A) => {
      const t0 = performance.now();
      return { ...(await call(...args)), ms: performance.now() - t0 };
    };
    const client = { get: timed(plain.get), post: timed(plain.post) };
    const user = `user-${n}`;
    let created = 0;
    // Bounded: until the rebuilds end (and at least three rounds), at most 60 rounds.
    for (let round = 0; round < 60 && (rebuilding || round < 3); round++) {
      const session = check("create session", await client.post("/v1/sessions", { user_id: user, metadata: { round } }));
      if (session.status !== 201) continue;
      created++;
      const list = check("list sessions", await client.get(`/v1/sessions?user_id=${user}&limit=100`));
      // Read-your-writes across a swap: never fewer than this client has created.
      if (list.status === 200 && list.body.data.length !== created) failures.push(`client ${n} saw ${list.body.data.length} of its ${created} sessions`);
      check("get session", await client.get(`/v1/sessions/${session.body.id}`));
      if (round % 3 === 0) {
        const message = check("post message", await client.post(`/v1/sessions/${session.body.id}/messages`, { content: `question ${round}` }));
        if (message.status === 202) check("job", await client.get(`/v1/jobs/${message.body.job_id}`));
      }
      check("remember", await client.post("/v1/memory", { user_id: user, content: `client ${n} likes tea number ${round}` }));
      const recall = check("recall", await client.get(`/v1/memory?user_id=${user}&query=tea&limit=100`));
      if (recall.status === 200 && recall.body.data.length !== round + 1) failures.push(`client ${n} recalled ${recall.body.data.length} of ${round + 1} memories`);
    }
  };

  const admin = api(server.url, "");
  const load = Promise.all(Array.from({ length: CLIENTS }, (_, n) => clientLoop(n)));
  await Bun.sleep(50);
  const started = performance.now();
  for (const p of projections) {
    const r = await admin.post(`/v1/admin/projections/${p.name}/rebuild`, undefined, root());
    expect(r.status).toBe(202);
    expect(r.body).toMatchObject({ object: "projection.rebuild", projection: p.name, state: "running" });
    if (p === projections[0]) {
      // A second request for a running rebuild (150,000 events to read) is a conflict, not a second rebuild.
      const again = await admin.post(`/v1/admin/projections/${p.name}/rebuild`, undefined, root());
      expect([again.status, again.body.error?.code]).toEqual([409, "rebuild_in_progress"]);
    }
  }

  // Progress is visible while they run, and every one reaches done.
  const progress: number[] = [];
  for (;;) {
    const list = await admin.get("/v1/admin/projections", root());
    expect(list.status).toBe(200);
    const rebuilds = list.body.data.map((p: any) => p.rebuild);
    expect(rebuilds.every((r: any) => r !== null)).toBe(true);
    progress.push(...rebuilds.map((r: any) => r.progress));
    if (rebuilds.every((r: any) => r.state === "done" || r.state === "failed")) break;
    expect(performance.now() - started).toBeLessThan(120_000);
    await Bun.sleep(20);
  }
  const seconds = (performance.now() - started) / 1000;
  rebuilding = false;
  await load;
  const finals = await Promise.all(projections.map(async (p) => (await admin.get(`/v1/admin/projections/${p.name}/rebuild`, root())).body));
  expect(finals.map((r) => [r.projection, r.state, r.error])).toEqual(projections.map((p) => [p.name, "done", null]));
  expect(finals.every((r) => r.processed_events >= 150_000 && r.progress === 1)).toBe(true);
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!.toFixed(1);
  console.log(`online rebuild under load: ${projections.length} read models at once, ${finals[0].processed_events} events each, ${seconds.toFixed(2)} s; ` +
    `${requests} requests from ${CLIENTS} clients, ${failures.length} failed; during the rebuild ${latencies.length} requests, p50 ${at(0.5)} ms, p99 ${at(0.99)} ms, max ${at(1)} ms`);
  expect(failures).toEqual([]);
  expect(requests).toBeGreaterThan(CLIENTS * 3 * 5);

  // The swapped tables equal a fold from scratch of the same store.
  await server.ctx.projections.waitUntilCaughtUp();
  const fresh = openReadModelDb(":memory:");
  const scratch = new ProjectionRunner(server.ctx.store, fresh, projections);
  scratch.start();
  await scratch.waitUntilCaughtUp();
  await server.ctx.projections.waitUntilCaughtUp();
  expect(dumpTables(server.ctx.db, allTables)).toEqual(dumpTables(fresh, allTables));
  await scratch.stop();
  fresh.close();
}, 180_000);

test("rebuild routes: an admin for every app only, 404 for an unknown read model or one never rebuilt", async () => {
  const admin = api(server.url, "");
  expect((await admin.post("/v1/admin/projections/nope/rebuild", undefined, root())).body.error.code).toBe("not_found");
  expect((await admin.get("/v1/admin/projections/nope/rebuild", root())).status).toBe(404);
  // A data-plane key is not a management credential.
  expect((await api(server.url).post("/v1/admin/projections/sessions/rebuild")).status).toBe(401);
  expect((await admin.post("/v1/admin/projections/sessions/rebuild", undefined, { authorization: "Bearer wrong-token-0123456789" })).status).toBe(401);
});

test("`bun run projections rebuild <name>` beside a running server asks it to rebuild online and reports progress", async () => {
  const cli = Bun.spawn(["bun", join(import.meta.dir, "../../src/cli/projections.ts"), "rebuild", "sessions"], {
    env: { ...process.env, DATA_DIR: server.dataDir, LOG_LEVEL: "error", AGENTRY_URL: server.url, ADMIN_TOKEN: ROOT }, stdout: "pipe", stderr: "pipe",
  });
  const timer = setTimeout(() => cli.kill(), 60_000);
  const [out, err, code] = await Promise.all([new Response(cli.stdout).text(), new Response(cli.stderr).text(), cli.exited]);
  clearTimeout(timer);
  expect({ code, err: err.includes("error") ? err : "" }).toEqual({ code: 0, err: "" });
  expect(JSON.parse(out)).toMatchObject({ projection: "sessions", state: "done" });
  expect(server.ctx.projections.rebuildOf("sessions")?.state).toBe("done");
  // The server serves on.
  expect((await api(server.url).post("/v1/sessions", { user_id: "after-cli" })).status).toBe(201);
}, 60_000);
