/**
 * Erasure of an end user over real HTTP, on each event store (sqlite, memory, and esdb: the EventStoreDB
 * protocol test server in its own process): a user with sessions, messages (a finished turn and one
 * cut short), files (one whose content another user also has), memory and a credential, beside a second
 * user; `DELETE /v1/users/{id}?erase=true`; then the user's streams are unreadable, their read-model rows
 * gone, the unshared blob gone from disk, no file of the data folder holds their words or their id
 * (sqlite), no event left in the store names them (EventStoreDB: not even before the scavenge has run,
 * as far as an auditor reads), the other user is intact (their Idempotency-Key replays), `UserErased`
 * records the erasure without content, every other stream's chain verifies, an open session stream
 * ends, and a rebuild of the read models equals the live ones. Then: writes made while an erasure runs,
 * an interrupted erasure, erasing nobody, bad input and tenancy.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { SignJWT } from "jose";
import { api, TEST_KEY, type Api } from "../support/api.ts";
import { spawnEsdbTestServer, type SpawnedEsdbTestServer } from "../support/esdbTestServer.ts";
import { filesUnder } from "../support/files.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { collect, type EventStore } from "../../src/eventstore/port.ts";
import { isHeavyCall } from "../../src/http/rateLimit.ts";
import { eraseUser } from "../../src/app/erasure.ts";

const ROOT = "agr_test_root_token_for_erasure_0042";
const JWT_SECRET = "erasure-management-jwt-secret-0123456789";
/** The erased user: an id found nowhere else, so a search for it finds only what names this user. */
const ALICE = "alice_q7v2";
const bearer = { authorization: `Bearer ${ROOT}` };
const sha = (s: string) => new Bun.CryptoHasher("sha256").update(s).digest("hex");

type StoreKind = "sqlite" | "memory" | "esdb";

async function upload(server: TestServer, session: string, name: string, content: string, headers: Record<string, string> = { "x-api-key": TEST_KEY }) {
  const form = new FormData();
  form.append("file", new Blob([content], { type: "text/plain" }), name);
  const res = await fetch(`${server.url}/v1/sessions/${session}/files`, { method: "POST", headers, body: form });
  const body = await res.json() as any;
  if (res.status !== 201) throw new Error(`upload failed: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

interface UserData {
  sessions: string[];
  jobs: string[];
  files: Array<{ id: string; sha256: string }>;
  memories: string[];
}

/**
 * A user with two sessions, turns, files (the shared one uploaded with the user's own token), memory
 * (one entry made with an Idempotency-Key) and a credential; `words` marks everything they said.
 */
async function makeUser(server: TestServer, client: Api, user: string, words: string, sharedContent: string, running = false): Promise<UserData> {
  const out: UserData = { sessions: [], jobs: [], files: [], memories: [] };
  for (let i = 0; i < 2; i++) {
    const s = await client.post("/v1/sessions", { user_id: user, name: `${words} session ${i}` });
    expect(s.status).toBe(201);
    out.sessions.push(s.body.id);
  }
  const first = await client.post(`/v1/sessions/${out.sessions[0]}/messages`, { content: `${words} first message` });
  expect(first.status).toBe(202);
  out.jobs.push(first.body.job_id);
  await client.pollUntilDone(first.body.job_id);
  // With `running`, a turn left streaming (a long, slow reply): the erasure cancels it.
  const second = await client.post(`/v1/sessions/${out.sessions[1]}/messages`, { content: `${words} second message${running ? " [slow]" : ""}` });
  expect(second.status).toBe(202);
  out.jobs.push(second.body.job_id);
  if (running) await client.waitForText(second.body.job_id);
  else await client.pollUntilDone(second.body.job_id);
  const own = await upload(server, out.sessions[0]!, `${words}.txt`, `${words} file content only theirs`);
  // With the user's own token: the content's blob stream, kept for the other user, must not name them.
  const token = (await client.post("/v1/end-user-tokens", { user_id: user })).body.token as string;
  const shared = await upload(server, out.sessions[0]!, "shared.txt", sharedContent, { authorization: `Bearer ${token}` });
  out.files.push({ id: own.id, sha256: own.sha256 }, { id: shared.id, sha256: shared.sha256 });
  for (const [i, content] of [`${words} remembers the lighthouse`, `${words} prefers tea`].entries()) {
    const m = await client.post("/v1/memory", { user_id: user, content }, i === 0 ? { "idempotency-key": `${user}-memory-1` } : {});
    expect(m.status).toBe(201);
    out.memories.push(m.body.id);
  }
  expect((await client.put(`/v1/users/${user}/credentials/openai`, { api_key: `sk-${words}-key-0123456789` })).status).toBe(200);
  return out;
}

function erasureSuite(store: StoreKind): void {
  describe(`erasure on ${store}`, () => {
    let server: TestServer;
    let client: Api;
    let root: Api;
    let esdb: SpawnedEsdbTestServer | undefined;

    beforeAll(async () => {
      const env: Record<string, string> = { API_KEY: TEST_KEY, ADMIN_TOKEN: ROOT, SANDBOX_CHUNK_DELAY_MS: "2", EVENT_STORE: store };
      if (store === "esdb") {
        esdb = await spawnEsdbTestServer();
        env.EVENTSTORE_CONNECTION_STRING = esdb.connectionString;
      }
      server = await startTestServer(env);
      client = api(server.url);
      root = api(server.url, "");
    });
    afterAll(async () => {
      await server?.stop();
      await esdb?.stop();
    });

    test("the user's data is gone from the store, the read models and the disk; the other user's is intact; the record holds no content", async () => {
      const shared = "content both users uploaded 5e1d";
      const bob = await makeUser(server, client, "bob", "heron-basil-27", shared);
      const alice = await makeUser(server, client, ALICE, "quokka-saffron-91", shared, true);
      // A client watching alice's session while she is erased: its stream ends.
      const watching = fetch(`${server.url}/v1/sessions/${alice.sessions[1]}/stream`, { headers: { "x-api-key": TEST_KEY } }).then((res) => res.text());
      // EventStoreDB: the node scavenges nothing yet (every record is in the chunk being written).
      await esdb?.control("deferScavenges", true);

      const r = await client.del(`/v1/users/${ALICE}?erase=true`);
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({
        object: "user_erasure", user_id: ALICE, app_id: "app_default",
        counts: { sessions: 2, jobs: 2, files: 2, memories: 2, credentials: 1, idempotency_keys: 1, blobs_collected: 1 },
        reclaim: store === "sqlite" ? "vacuumed" : store === "memory" ? "removed" : "scavenge_started",
        reclaim_error: null,
      });
      expect(r.body.streams_erased).toBeGreaterThanOrEqual(10);
      expect(await Promise.race([watching, Bun.sleep(10_000).then(() => "still open")])).toEndWith("event: done\ndata: [DONE]\n\n");

      // The streams: unreadable, through the API and the store.
      for (const id of alice.sessions) {
        expect([404, 410]).toContain((await client.get(`/v1/sessions/${id}`)).status);
        expect([404, 410]).toContain((await client.get(`/v1/sessions/${id}/messages`)).status);
      }
      for (const id of alice.jobs) expect([404, 410]).toContain((await client.get(`/v1/jobs/${id}/events?since=0`)).status);
      for (const f of alice.files) expect([404, 410]).toContain((await client.get(`/v1/files/${f.id}`)).status);
      for (const stream of [...alice.sessions.map((s) => `session-${s}`), ...alice.jobs.map((j) => `job-${j}`), ...alice.memories.map((m) => `memory-${m}`)]) {
        expect(await collect(server.ctx.store.readStream(stream)).then(() => "readable", (e) => e.name)).toBe("StreamDeletedError");
      }
      // The read models.
      expect((await client.get(`/v1/sessions?user_id=${ALICE}`)).body.data).toEqual([]);
      expect((await client.get(`/v1/memory?user_id=${ALICE}`)).body.data).toEqual([]);
      expect((await client.get(`/v1/memory?user_id=${ALICE}&query=lighthouse`)).body.data).toEqual([]);
      expect((await client.get(`/v1/users/${ALICE}/credentials/openai`)).body.status).toBe("missing");
      const db = server.ctx.db;
      for (const [table, column] of [["sessions", "user_id"], ["jobs", "user_id"], ["files", "user_id"], ["memory_entries", "user_id"], ["usage_daily", "user_id"]] as const) {
        expect(db.query(`SELECT count(*) AS n FROM ${table} WHERE ${column} = ?`).get(ALICE)).toEqual({ n: 0 });
      }
      expect(db.query(`SELECT count(*) AS n FROM messages WHERE session_id IN (${alice.sessions.map(() => "?").join(",")})`).get(...alice.sessions)).toEqual({ n: 0 });

      // Blobs: the content only alice had is gone; the one bob has too stays.
      const blobs = server.ctx.files!.blobs;
      expect(await blobs.open(alice.files[0]!.sha256)).toBeNull();
      expect(await (await blobs.open(sha(shared)))!.text()).toBe(shared);

      // Bob: untouched, and his Idempotency-Key still replays the answer it gave.
      expect((await client.get("/v1/sessions?user_id=bob")).body.data.length).toBe(2);
      const bobHistory = await client.get(`/v1/sessions/${bob.sessions[0]}/messages`);
      expect(bobHistory.body.data[0].content).toContain("heron-basil-27 first message");
      expect((await client.get("/v1/memory?user_id=bob&query=lighthouse")).body.data.length).toBe(1);
      expect((await client.get(`/v1/files/${bob.files[0]!.id}`)).status).toBe(200);
      expect((await client.get("/v1/users/bob/credentials/openai")).body.status).toBe("connected");
      const bobRetry = await client.post("/v1/memory", { user_id: "bob", content: "heron-basil-27 remembers the lighthouse" }, { "idempotency-key": "bob-memory-1" });
      expect({ status: bobRetry.status, id: bobRetry.body.id, replayed: bobRetry.headers.get("idempotent-replayed") }).toEqual({ status: 201, id: bob.memories[0], replayed: "true" });

      // The record: who, when, what; no content, no user id in clear.
      const record = await collect(server.ctx.store.readStream(r.body.record.stream));
      const erased = record.find((e) => e.type === "UserErased")!;
      // A copy: the memory store hands out its own objects, and toMatchObject writes into what it is given.
      expect(structuredClone(erased.data)).toMatchObject({ user_hash: sha(ALICE), requested_by: expect.stringMatching(/^key:/), app_id: "app_default" });
      const recorded = JSON.stringify([erased.data, erased.metadata]);
      for (const word of ["quokka", "lighthouse", ALICE, "sk-"]) expect(recorded).not.toContain(word);
      // Alice's streaming turn was cancelled before its stream went.
      expect((erased.data as any).event_types.JobCancelled).toBe(1);
      const erasedStreams = (erased.data as any).streams as Array<{ stream: string; chain: string | null; last_revision: number | null }>;
      expect(erasedStreams.map((s) => s.stream)).toEqual(expect.arrayContaining([`session-${alice.sessions[0]}`, `memory-${alice.memories[0]}`]));
      // Each stream this erasure removed is recorded with its last chain link.
      const removed = erasedStreams.filter((s) => s.last_revision !== null);
      expect(removed.length).toBe(r.body.streams_erased);
      expect(removed.filter((s) => !/^[0-9a-f]{64}$/.test(s.chain ?? "")).map((s) => s.stream)).toEqual([]);

      // Tamper evidence: every remaining stream verifies; an erased one is not found. An auditor reading
      // `$all` sees none of alice's events, whether or not the store has reclaimed them yet.
      const auditKey = (await root.post("/v1/apps/app_default/keys", { name: "auditor", scopes: ["audit:read"] }, bearer)).body.key;
      const auditor = api(server.url, auditKey);
      for (const stream of [`session-${bob.sessions[0]}`, `job-${bob.jobs[0]}`, `memory-${bob.memories[0]}`, `blob-${sha(shared)}`, r.body.record.stream]) {
        const v = await auditor.get(`/v1/audit/streams/${stream}/verify`);
        expect(v.status).toBe(200);
        expect({ stream, ok: v.body.ok, brk: v.body.break }).toEqual({ stream, ok: true, brk: null });
      }
      expect((await auditor.get(`/v1/audit/streams/session-${alice.sessions[0]}/verify`)).status).toBe(404);
      const audited = await auditor.get("/v1/audit/all?limit=1000");
      expect(audited.status).toBe(200);
      expect(audited.body.has_more).toBe(false);
      const auditedText = JSON.stringify(audited.body);
      expect(auditedText).toContain("heron-basil-27");
      for (const word of ["quokka-saffron-91", ALICE]) expect(auditedText).not.toContain(word);
      // Only the record names alice's streams.
      const aliceStreams = new Set(erasedStreams.map((s) => s.stream));
      expect(audited.body.data.filter((e: any) => aliceStreams.has(e.stream)).map((e: any) => `${e.stream}:${e.type}`)).toEqual([]);
      const naming = async () => (await collect(server.ctx.store.readAll()))
        .filter((e) => [ALICE, "quokka-saffron-91"].some((w) => JSON.stringify([e.streamId, e.data, e.metadata]).includes(w)))
        .map((e) => `${e.streamId}:${e.type}`);
      if (esdb) {
        // The double, like a node, still holds the tombstoned events (the auditor above did not see them)…
        expect((await naming()).length).toBeGreaterThan(0);
        await esdb.control("scavenge");
        await esdb.control("deferScavenges", false);
      }
      // …until the scavenge; on SQLite and in memory, at once. Kept streams (the shared blob's) name no one.
      expect(await naming()).toEqual([]);

      // Read models rebuilt from the store equal the live ones.
      await server.ctx.projections.waitUntilCaughtUp();
      const { openReadModelDb, dumpTables } = await import("../../src/projections/readModelDb.ts");
      const { ProjectionRunner } = await import("../../src/projections/runner.ts");
      const { projections } = await import("../../projections/index.ts");
      const tables = projections.flatMap((p) => p.tables);
      const live = dumpTables(db, tables);
      // Batches that split anywhere around the erasure (on one store: the folds are the same on each).
      for (const batchSize of store === "sqlite" ? [1, 7, 1000] : [7]) {
        const fresh = openReadModelDb(":memory:");
        const runner = new ProjectionRunner(server.ctx.store, fresh, projections, { batchSize });
        runner.start();
        await runner.waitUntilCaughtUp();
        await runner.stop();
        expect(dumpTables(fresh, tables)).toEqual(live);
        fresh.close();
      }

      if (store === "sqlite") {
        // Nothing alice wrote, and not her id, is left in any file of the data folder: the event store,
        // its WAL, the read models, the blobs.
        const leftovers = filesUnder(server.dataDir).filter((f) => ["quokka-saffron-91", "sk-quokka", ALICE].some((w) => f.bytes.includes(w)));
        expect(leftovers.map((f) => f.path)).toEqual([]);
        expect(filesUnder(server.dataDir).some((f) => f.bytes.includes("heron-basil-27"))).toBe(true);
        const cli = Bun.spawn(["bun", "run", join(import.meta.dir, "../../src/cli/audit.ts"), "verify", "--all"], {
          env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", DATA_DIR: server.dataDir, EVENT_STORE: "sqlite" }, stdout: "pipe", stderr: "pipe",
        });
        const [out, err, code] = await Promise.all([new Response(cli.stdout).text(), new Response(cli.stderr).text(), cli.exited]);
        expect({ code, err }).toEqual({ code: 0, err: "" });
        expect(out).not.toContain(alice.sessions[0]!);
      }

      // Again: nothing left to erase, and the answer says so; nothing is recorded.
      const again = await client.del(`/v1/users/${ALICE}?erase=true`);
      expect(again.status).toBe(200);
      expect(again.body).toMatchObject({ streams_erased: 0, record: null, erasure_id: null, reclaim: "none" });
      expect((await collect(server.ctx.store.readStream(r.body.record.stream))).length).toBe(record.length);
    }, 30_000);
  });
}

for (const store of ["sqlite", "memory", "esdb"] as const) erasureSuite(store);

describe("erasure: concurrent writes, interrupted runs, nobody, bad input and tenancy", () => {
  let server: TestServer;
  let client: Api;
  let root: Api;

  beforeAll(async () => {
    server = await startTestServer({ API_KEY: TEST_KEY, ADMIN_TOKEN: ROOT, MANAGEMENT_JWT_SECRET: JWT_SECRET, SANDBOX_CHUNK_DELAY_MS: "0", EVENT_STORE: "sqlite" });
    client = api(server.url);
    root = api(server.url, "");
  });
  afterAll(async () => {
    await server?.stop();
  });

  const memoryOf = async (user: string) => (await client.get(`/v1/memory?user_id=${user}`)).body.data.length as number;
  const erasureRecords = async () => collect(server.ctx.store.readStream("erasures-app_default")).then((r) => r.length, () => 0);

  /** Read models rebuilt from the store, as tables. */
  async function rebuilt(store: EventStore) {
    const { openReadModelDb, dumpTables } = await import("../../src/projections/readModelDb.ts");
    const { ProjectionRunner } = await import("../../src/projections/runner.ts");
    const { projections } = await import("../../projections/index.ts");
    const tables = projections.flatMap((p) => p.tables);
    const fresh = openReadModelDb(":memory:");
    const runner = new ProjectionRunner(store, fresh, projections, { batchSize: 1000 });
    runner.start();
    await runner.waitUntilCaughtUp();
    await runner.stop();
    await server.ctx.projections.waitUntilCaughtUp();
    const out = { rebuilt: dumpTables(fresh, tables), live: dumpTables(server.ctx.db, tables) };
    fresh.close();
    return out;
  }

  test("what is written for the user while the erasure runs is erased too", async () => {
    expect((await client.post("/v1/memory", { user_id: "gina", content: "gina before" })).status).toBe(201);
    // A write that lands between the erasure's first look and its end: made here from inside the
    // store's erase call, so it lands there every time.
    const store = server.ctx.store;
    let late: { status: number; body: any } | undefined;
    const racing = new Proxy(store, {
      get(target, prop) {
        if (prop !== "eraseStreams") return Reflect.get(target, prop);
        return async (targets: Parameters<EventStore["eraseStreams"]>[0]) => {
          late ??= await client.post("/v1/memory", { user_id: "gina", content: "gina-late-marker" });
          return target.eraseStreams(targets);
        };
      },
    });
    const summary = await eraseUser({ ...server.ctx, appId: "app_default", store: racing }, "gina", { appId: "app_default", actor: "key:test" });
    expect(late?.status).toBe(201);
    expect(summary.counts.memories).toBe(2);
    await server.ctx.projections.waitUntilCaughtUp();
    expect(await memoryOf("gina")).toBe(0);
    expect((await collect(store.readAll())).filter((e) => JSON.stringify(e.data).includes("gina-late-marker"))).toEqual([]);
  });

  test("an upload a server key registered in the user's session (MUAPI) is the session's file: erased with the user", async () => {
    const token = (await client.post("/v1/end-user-tokens", { user_id: "ivy" })).body.token as string;
    const muapi = `${server.url}/compat/muapi`;
    const as = (key: string, method: string, path: string, body?: unknown) => fetch(`${muapi}${path}`, {
      method, headers: { "x-api-key": key, ...(body ? { "content-type": "application/json" } : {}) }, ...(body ? { body: JSON.stringify(body) } : {}),
    }).then(async (r) => ({ status: r.status, body: await r.json() as any }));
    const session = (await as(token, "POST", "/api/v1/creative-agent/sessions", { name: "ivy's" })).body;
    // The server key uploads (a file of no user) and registers it in ivy's session; then the session goes.
    const ticket = (await as(TEST_KEY, "GET", "/api/app/get_file_upload_url?filename=ivy-marker-photo.png")).body;
    const form = new FormData();
    for (const [k, v] of Object.entries(ticket.fields as Record<string, string>)) form.append(k, v);
    form.append("file", new Blob([new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0])]), "ivy-marker-photo.png");
    expect((await fetch(ticket.url, { method: "POST", body: form })).status).toBe(204);
    const asset = await as(TEST_KEY, "POST", `/api/v1/creative-agent/sessions/${session.id}/assets`, { url: `https://cdn.muapi.ai/${ticket.fields.key}`, kind: "image" });
    expect(asset.status).toBe(200);
    expect((await as(token, "DELETE", `/api/v1/creative-agent/sessions/${session.id}`)).status).toBe(200);
    expect((await client.del("/v1/users/ivy?erase=true")).status).toBe(200);
    // No event left names the file (its stream went with the user's session).
    expect((await collect(server.ctx.store.readAll())).filter((e) => JSON.stringify(e.data).includes("ivy-marker"))).toEqual([]);
  });

  test("an erasure interrupted after removing some streams, then run again: the read models equal a rebuild", async () => {
    const s = await client.post("/v1/sessions", { user_id: "hank", name: "hank's" });
    const m = await client.post(`/v1/sessions/${s.body.id}/messages`, { content: "hank says hello" });
    await client.pollUntilDone(m.body.job_id);
    expect((await client.post("/v1/memory", { user_id: "hank", content: "hank likes tea" })).status).toBe(201);
    await server.ctx.projections.waitUntilCaughtUp();
    // The first attempt removed the session and its job, then stopped before its record.
    await server.ctx.store.eraseStreams([{ stream: `session-${s.body.id}` }, { stream: `job-${m.body.job_id}` }]);
    const r = await client.del("/v1/users/hank?erase=true");
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ streams_erased: 1, counts: { sessions: 1, jobs: 1, memories: 1 } });
    expect(r.body.record).not.toBeNull();
    const { live, rebuilt: fresh } = await rebuilt(server.ctx.store);
    expect(fresh).toEqual(live);
    expect(server.ctx.db.query("SELECT count(*) AS n FROM sessions WHERE user_id = 'hank'").get()).toEqual({ n: 0 });
  });

  test("another user's Idempotency-Key record survives, even when its content is the erased user's id", async () => {
    const bob = await client.post("/v1/memory", { user_id: "bob", content: "tea" }, { "idempotency-key": "bob-tea" });
    const dave = await client.post("/v1/sessions", { user_id: "dave", name: "memory" }, { "idempotency-key": "dave-session" });
    for (const user of ["tea", "memory", "session", "bob-tea"]) {
      const r = await client.del(`/v1/users/${user}?erase=true`);
      expect({ user, status: r.status, keys: r.body.counts.idempotency_keys }).toEqual({ user, status: 200, keys: 0 });
    }
    const bobAgain = await client.post("/v1/memory", { user_id: "bob", content: "tea" }, { "idempotency-key": "bob-tea" });
    expect({ status: bobAgain.status, id: bobAgain.body.id, replayed: bobAgain.headers.get("idempotent-replayed") }).toEqual({ status: 201, id: bob.body.id, replayed: "true" });
    const daveAgain = await client.post("/v1/sessions", { user_id: "dave", name: "memory" }, { "idempotency-key": "dave-session" });
    expect({ status: daveAgain.status, id: daveAgain.body.id }).toEqual({ status: 201, id: dave.body.id });
  });

  test("erasing a user who has nothing writes nothing and compacts nothing; an erasure is a heavy call", async () => {
    const before = await erasureRecords();
    const r = await client.del("/v1/users/nobody-at-all?erase=true");
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ streams_erased: 0, record: null, erasure_id: null, reclaim: "none", reclaim_error: null });
    expect(await erasureRecords()).toBe(before);
    const store = server.ctx.store;
    // The store's own answer when asked to erase what is not there: nothing reclaimed.
    expect(await store.eraseStreams([{ stream: "session-sess_never_written" }])).toEqual({ erased: [], missing: ["session-sess_never_written"], reclaim: "none" });
    expect(isHeavyCall("DELETE", "/v1/users/bob")).toBe(true);
    expect(isHeavyCall("DELETE", "/v1/users/bob/")).toBe(true);
    expect(isHeavyCall("DELETE", "/v1/users/bob/credentials/openai")).toBe(false);
  });

  test("without erase=true, or with a malformed user id: 400 in the envelope, nothing erased", async () => {
    expect((await client.post("/v1/memory", { user_id: "carol", content: "carol likes kites" })).status).toBe(201);
    for (const path of ["/v1/users/carol", "/v1/users/carol?erase=false", "/v1/users/carol?erase=1"]) {
      const r = await client.del(path);
      expect(r.status).toBe(400);
      expect(r.body.error).toMatchObject({ code: "invalid_request", details: { param: "erase" } });
      expect(r.body.error.message).toContain("erase=true");
    }
    expect((await client.del(`/v1/users/${"x".repeat(201)}?erase=true`)).status).toBe(400);
    expect((await client.del("/v1/users/%FF?erase=true")).body.error).toMatchObject({ code: "invalid_request", details: { param: "user_id" } });
    expect((await root.del("/v1/apps/app_default/users/carol", bearer)).status).toBe(400);
    expect(await memoryOf("carol")).toBe(1);
    expect((await api(server.url, "").del("/v1/users/carol?erase=true")).status).toBe(401);
  });

  test("another app's key erases only in its own app; user- and agent-limited keys are refused another user", async () => {
    expect((await client.post("/v1/memory", { user_id: "dave", content: "dave sails" })).status).toBe(201);
    const other = (await root.post("/v1/apps", { name: "other" }, bearer)).body;
    const otherKey = (await root.post(`/v1/apps/${other.id}/keys`, { name: "k", scopes: ["data:write"] }, bearer)).body.key;
    const r = await api(server.url, otherKey).del("/v1/users/dave?erase=true");
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ app_id: other.id, streams_erased: 0, counts: { memories: 0 } });
    expect(await memoryOf("dave")).toBe(1);

    const issue = async (extra: Record<string, unknown>) =>
      api(server.url, (await root.post("/v1/apps/app_default/keys", { name: "limited", scopes: ["data:write"], ...extra }, bearer)).body.key);
    const asErin = await issue({ user_id: "erin" });
    expect((await asErin.del("/v1/users/dave?erase=true")).status).toBe(403);
    const readOnly = await issue({ scopes: ["data:read"] });
    expect((await readOnly.del("/v1/users/dave?erase=true")).body.error.code).toBe("insufficient_scope");
    const agentLimited = await issue({ agent_ids: ["agt_default"] });
    expect((await agentLimited.del("/v1/users/dave?erase=true")).status).toBe(403);
    expect(await memoryOf("dave")).toBe(1);
    // A key acting as a user may erase that user.
    expect((await client.post("/v1/memory", { user_id: "erin", content: "erin hikes" })).status).toBe(201);
    const self = await asErin.del("/v1/users/erin?erase=true");
    expect(self.status).toBe(200);
    expect(self.body.counts.memories).toBe(1);
    expect(await memoryOf("erin")).toBe(0);
  });

  test("the management plane erases in the app's live and test data; another app's admin is refused", async () => {
    expect((await client.post("/v1/memory", { user_id: "frank", content: "frank bakes" })).status).toBe(201);
    const testKey = api(server.url, (await root.post("/v1/apps/app_default/keys", { name: "test", mode: "test", scopes: ["data:write"] }, bearer)).body.key);
    expect((await testKey.post("/v1/memory", { user_id: "frank", content: "frank in test data" })).status).toBe(201);
    // An admin of another (real) app, and a member of this one: refused, nothing erased.
    const other = (await root.post("/v1/apps", { name: "elsewhere" }, bearer)).body;
    const jwt = (claims: Record<string, unknown>) => new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).setSubject("person@example.com")
      .setIssuedAt().setExpirationTime("5m").sign(new TextEncoder().encode(JWT_SECRET));
    const otherAdmin = { authorization: `Bearer ${await jwt({ role: "admin", apps: [other.id] })}` };
    const member = { authorization: `Bearer ${await jwt({ role: "member", apps: ["app_default"] })}` };
    for (const headers of [otherAdmin, member]) {
      const refused = await root.del("/v1/apps/app_default/users/frank?erase=true", headers);
      expect({ status: refused.status, code: refused.body.error.code }).toEqual({ status: 403, code: "permission_denied" });
    }
    expect((await root.del(`/v1/apps/${other.id}/users/frank?erase=true`, otherAdmin)).status).toBe(200);
    expect(await memoryOf("frank")).toBe(1);
    // A data key is no management credential.
    expect((await client.del("/v1/apps/app_default/users/frank?erase=true")).status).toBe(401);

    const admin = { authorization: `Bearer ${await jwt({ role: "admin", apps: ["app_default"] })}` };
    const r = await root.del("/v1/apps/app_default/users/frank?erase=true", admin);
    expect(r.status).toBe(200);
    expect(r.body.data.map((e: any) => [e.app_id, e.counts.memories])).toEqual([["app_default", 1], ["app_default.test", 1]]);
    expect(r.body.data[0].erased_at).toBeTruthy();
    expect(r.body.data[0].record).not.toBeNull();
    expect(await memoryOf("frank")).toBe(0);
    expect((await testKey.get("/v1/memory?user_id=frank")).body.data).toEqual([]);
    expect((await root.del("/v1/apps/app_nope/users/frank?erase=true", bearer)).status).toBe(404);
  });
});
