/**
 * Idempotency-Key with Stripe's semantics: refusals leave the key free, a committed write is bound to
 * its key (whatever the read models do), a claim lives as long as its request, and a claim left by a
 * dead process is resolved by the next retry without writing twice.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { hostname } from "node:os";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { newEventId } from "../../src/core/ids.ts";
import { canonicalJson, credentialOf, idempotencyKeyHash } from "../../src/http/idempotency.ts";
import { CONFIGURED_KEY_NAME } from "../../src/app/defaultApp.ts";
import { api, TEST_KEY, type Api } from "../support/api.ts";
import { killAll, spawnServer } from "../support/processes.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const sha256 = (s: string) => new Bun.CryptoHasher("sha256").update(s).digest("hex");
const newKey = () => ({ "idempotency-key": `key-${crypto.randomUUID()}` });

let server: TestServer;
let client: Api;

beforeAll(async () => {
  server = await startTestServer({ API_KEY: TEST_KEY, SANDBOX_CHUNK_DELAY_MS: "2" });
  client = api(server.url);
});
afterAll(async () => {
  await server?.stop();
  await killAll();
});

/** The credential TEST_KEY's requests carry: idempotency keys are the credential's own. */
async function testKeyCredential(): Promise<string> {
  const { state } = await server.ctx.repos.apps.load("app_default");
  const key = state.keys.find((k) => k.name === CONFIGURED_KEY_NAME && !k.revoked)!;
  return credentialOf({ keyId: key.key_id, userId: null, endUser: false });
}

describe("refusals leave the key free", () => {
  test("409 session_busy is not replayed: the same request with the same key succeeds once the session is idle", async () => {
    const sid = (await client.post("/v1/sessions", { user_id: "idem" })).body.id;
    const first = await client.post(`/v1/sessions/${sid}/messages`, { content: "busy for a moment [slow]" });
    const key = newKey();
    const busy = await client.post(`/v1/sessions/${sid}/messages`, { content: "second" }, key);
    expect(busy.status).toBe(409);
    expect(busy.body.error.code).toBe("session_busy");
    await client.pollUntilDone(first.body.job_id);
    const retried = await client.post(`/v1/sessions/${sid}/messages`, { content: "second" }, key);
    expect(retried.status).toBe(202);
    expect(retried.headers.get("idempotent-replayed")).toBeNull();
    const again = await client.post(`/v1/sessions/${sid}/messages`, { content: "second" }, key);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(again.body.job_id).toBe(retried.body.job_id);
  });

  test("404 agent_not_found is not recorded: a corrected request may reuse the key", async () => {
    const key = newKey();
    const missing = await client.post("/v1/runs", { user_id: "idem", input: "hi", agent_id: "agt_missing" }, key);
    expect(missing.status).toBe(404);
    const again = await client.post("/v1/runs", { user_id: "idem", input: "hi", agent_id: "agt_missing" }, key);
    expect(again.status).toBe(404);
    expect(again.headers.get("idempotent-replayed")).toBeNull();
    const corrected = await client.post("/v1/runs", { user_id: "idem", input: "hi" }, key);
    expect(corrected.status).toBe(202);
  });
});

describe("a claim left by a process that died", () => {
  /** The claim a process leaves when it dies mid-request (by default one whose pid has exited). */
  async function leftClaim(key: string, path: string, body: unknown, resourceIds: Record<string, string>, owner = { instance: "gone", host: hostname(), pid: Bun.spawnSync(["true"]).pid }) {
    await server.ctx.store.appendToStream(`idempotency-${idempotencyKeyHash("app_default", await testKeyCredential(), key)}`, [{
      id: newEventId(), type: "IdempotencyKeyClaimed", metadata: { app_id: "app_default" },
      data: { key_hash: sha256(key), fingerprint: sha256(`POST\n${path}\n${canonicalJson(body)}`), resource_ids: resourceIds, owner, at: Date.now(), takeover: false },
    }], { expectedRevision: "no_stream" });
  }

  /** Writes what a process that died mid-request leaves: its claim, and optionally its committed session. */
  async function crashedClaim(key: string, body: unknown, committed: boolean, owner?: Parameters<typeof leftClaim>[4]): Promise<string> {
    const sessionId = `sess_crashed${crypto.randomUUID().replaceAll("-", "")}`;
    await leftClaim(key, "/v1/sessions", body, { session: sessionId }, owner);
    if (committed) {
      await server.ctx.store.appendToStream(`session-${sessionId}`, [{
        id: newEventId(), type: "SessionStarted", metadata: { app_id: "app_default" },
        data: { session_id: sessionId, agent_id: "agt_default", user_id: "crash", name: "before the crash", external_ref: null, metadata: {} },
      }], { expectedRevision: "no_stream" });
    }
    return sessionId;
  }

  test("whose write committed: the retry answers with that write's outcome, at once, and nothing is written twice", async () => {
    const key = `key-${crypto.randomUUID()}`;
    const body = { user_id: "crash", name: "before the crash" };
    const sessionId = await crashedClaim(key, body, true);
    const retry = await client.post("/v1/sessions", body, { "idempotency-key": key });
    expect(retry.status).toBe(201);
    expect(retry.body.id).toBe(sessionId);
    const listed = (await client.get("/v1/sessions?user_id=crash&limit=200")).body.data.filter((s: any) => s.name === "before the crash");
    expect(listed.map((s: any) => s.id)).toEqual([sessionId]);
    const replay = await client.post("/v1/sessions", body, { "idempotency-key": key });
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect(replay.body.id).toBe(sessionId);
  });

  test("whose write never committed: the retry runs it at once instead of answering in-progress", async () => {
    const key = `key-${crypto.randomUUID()}`;
    const body = { user_id: "crash", name: "never written" };
    const sessionId = await crashedClaim(key, body, false);
    const retry = await client.post("/v1/sessions", body, { "idempotency-key": key });
    expect(retry.status).toBe(201);
    expect(retry.body.id).toBe(sessionId);
    const other = await client.post("/v1/sessions", { user_id: "someone else" }, { "idempotency-key": key });
    expect(other.status).toBe(409);
    expect(other.body.error.code).toBe("idempotency_conflict");
  });

  test("left by an earlier run of the server under the same pid (a restarted container): dead, not in progress", async () => {
    const key = `key-${crypto.randomUUID()}`;
    const body = { user_id: "crash", name: "same pid" };
    // The in-process test server's pid is this process's: an earlier incarnation with another instance id.
    const sessionId = await crashedClaim(key, body, false, { instance: "previous-incarnation", host: hostname(), pid: process.pid });
    const retry = await client.post("/v1/sessions", body, { "idempotency-key": key });
    expect(retry.status).toBe(201);
    expect(retry.body.id).toBe(sessionId);
  });

  test("a message whose MessageSent committed but whose job was never queued: the retry queues that job, once", async () => {
    const sid = (await client.post("/v1/sessions", { user_id: "crash-msg" })).body.id;
    const key = `key-${crypto.randomUUID()}`;
    // The body as the server fingerprints it: with its defaults written out.
    const body = { content: "sent before the crash", multitask: "reject", verbosity: "standard", wait_timeout_s: 60 };
    const ids = { message_id: `msg_crashed${crypto.randomUUID().replaceAll("-", "")}`, job_id: `job_crashed${crypto.randomUUID().replaceAll("-", "")}` };
    await leftClaim(key, `/v1/sessions/${sid}/messages`, body, ids);
    // What the dead process committed: the session's half of the write, not the job's.
    await server.ctx.repos.sessions.handle(sid, {
      type: "SendMessage", message_id: ids.message_id, job_id: ids.job_id, content: body.content, attachments: [], model: null, context: null, multitask: "reject",
    }, { appId: "app_default" });
    const retry = await client.post(`/v1/sessions/${sid}/messages`, body, { "idempotency-key": key });
    expect(retry.status).toBe(202);
    expect(retry.body).toMatchObject(ids);
    const again = await client.post(`/v1/sessions/${sid}/messages`, body, { "idempotency-key": key });
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(again.body.job_id).toBe(ids.job_id);
    let poll = (await client.get(`/v1/jobs/${ids.job_id}/events?since=0&limit=1000`)).body;
    for (let i = 0; i < 50 && !poll.done; i++) poll = (await client.get(`/v1/jobs/${ids.job_id}/events?since=${poll.cursor}&wait=5&limit=1000`)).body;
    expect(poll.done).toBe(true);
    const messages = (await client.get(`/v1/sessions/${sid}/messages`)).body.data;
    expect(messages.filter((m: any) => m.role === "user").map((m: any) => m.id)).toEqual([ids.message_id]);
    const jobs = (await client.get(`/v1/sessions/${sid}/jobs`)).body.data;
    expect(jobs.map((j: any) => j.id)).toEqual([ids.job_id]);
  });
});

describe("refusals from the store", () => {
  test("a message whose job would not fit in one write is refused before anything is written", async () => {
    const sid = (await client.post("/v1/sessions", { user_id: "too-big-job" })).body.id;
    const key = newKey();
    // The message alone fits in 1 MiB; its job, which repeats it with more fields, does not. (Context is
    // recorded in both; inline files are not: they are stored apart and the events name them.)
    const body = { content: "x".repeat(48_091), context: { d: "QUJD".repeat(250_000) } };
    const refused = await client.post(`/v1/sessions/${sid}/messages`, body, key);
    expect(refused.status).toBe(413);
    const events = (await client.get(`/v1/sessions/${sid}/events?since=0`)).body.events.map((e: any) => e.type);
    expect(events).toEqual(["session.started"]);
    expect((await client.get(`/v1/sessions/${sid}`)).body.status).toBe("idle");
    const smaller = await client.post(`/v1/sessions/${sid}/messages`, { content: "smaller" }, key);
    expect(smaller.status).toBe(202);
  });

  test("413 payload_too_large leaves the key free for the corrected request", async () => {
    const sid = (await client.post("/v1/sessions", { user_id: "too-big" })).body.id;
    const key = newKey();
    const big = await client.post(`/v1/sessions/${sid}/messages`, { content: "x", context: { blob: "y".repeat(1_200_000) } }, key);
    expect(big.status).toBe(413);
    const corrected = await client.post(`/v1/sessions/${sid}/messages`, { content: "x", context: { blob: "small" } }, key);
    expect(corrected.status).toBe(202);
    expect(corrected.headers.get("idempotent-replayed")).toBeNull();
  });
});

describe("a committed write", () => {
  test("answers 2xx built from its events while the read models lag, and stays bound to its key", async () => {
    const lagging = await startTestServer({ API_KEY: TEST_KEY, READ_YOUR_WRITES_TIMEOUT_MS: "50" });
    try {
      const c = api(lagging.url);
      await lagging.ctx.projections.stop(); // the read models stop following the store
      const key = newKey();
      const created = await c.post("/v1/sessions", { user_id: "lag", name: "written" }, key);
      expect(created.status).toBe(201);
      expect(created.headers.get("x-read-your-writes")).toBe("pending");
      expect(created.body).toMatchObject({ object: "session", user_id: "lag", name: "written", status: "idle" });
      const retry = await c.post("/v1/sessions", { user_id: "lag", name: "written" }, key);
      expect(retry.status).toBe(201);
      expect(retry.body.id).toBe(created.body.id);
      expect(retry.headers.get("idempotent-replayed")).toBe("true");
      const agent = await c.post("/v1/agents", { name: "lagging agent" });
      expect(agent.status).toBe(201);
      expect(agent.body).toMatchObject({ object: "agent", name: "lagging agent" });
    } finally {
      await lagging.stop();
    }
  });
});

describe("a client that goes away", () => {
  test("stops its write's wait for the read models: the write is answered and recorded, not held open", async () => {
    const lagging = await startTestServer({ API_KEY: TEST_KEY, READ_YOUR_WRITES_TIMEOUT_MS: "120000" });
    try {
      const c = api(lagging.url);
      await lagging.ctx.projections.stop(); // the read models will not catch up: a write would wait the full 120 s
      const key = newKey();
      const gaveUp = await fetch(`${lagging.url}/v1/sessions`, {
        method: "POST", headers: { "x-api-key": TEST_KEY, "content-type": "application/json", ...key },
        body: JSON.stringify({ user_id: "impatient" }), signal: AbortSignal.timeout(300),
      }).then(() => "answered", () => "aborted");
      expect(gaveUp).toBe("aborted");
      // Once the server notices the client left, the request ends and its outcome is recorded: the
      // retry replays it instead of finding the request still in progress for two minutes.
      let retry = await c.post("/v1/sessions", { user_id: "impatient" }, key);
      for (let i = 0; i < 100 && retry.status === 409; i++) {
        await Bun.sleep(50);
        retry = await c.post("/v1/sessions", { user_id: "impatient" }, key);
      }
      expect(retry.status).toBe(201);
      expect(retry.headers.get("idempotent-replayed")).toBe("true");
    } finally {
      await lagging.stop();
    }
  });
});

describe("a claim lives as long as its request", () => {
  test("a retry through another process, long after the claim was made, waits for the running request", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "agentry-idem-"));
    try {
      // Two processes sharing one store; claims live 300 ms unless renewed.
      const env = { DATA_DIR: dataDir, IDEMPOTENCY_CLAIM_TTL_MS: "300", SANDBOX_CHUNK_DELAY_MS: "10" };
      const p1 = await spawnServer({ ...env, READ_MODEL_FILE: join(dataDir, "rm1.sqlite") });
      const p2 = await spawnServer({ ...env, READ_MODEL_FILE: join(dataDir, "rm2.sqlite") });
      const a = api(p1.url);
      const b = api(p2.url);
      const sid = (await a.post("/v1/sessions", { user_id: "ttl" })).body.id;
      const key = newKey();
      const body = { content: "a long turn [slow]", wait: true, wait_timeout_s: 60 };
      const first = a.post(`/v1/sessions/${sid}/messages`, body, key);
      // Retry well past the TTL, while the first request still waits for its turn to finish.
      await Bun.sleep(1500);
      const during = await b.post(`/v1/sessions/${sid}/messages`, body, key);
      expect(during.status).toBe(409);
      expect(during.body.error.code).toBe("idempotency_in_progress");
      const done = await first;
      expect(done.status).toBe(200);
      const after = await b.post(`/v1/sessions/${sid}/messages`, body, key);
      expect(after.headers.get("idempotent-replayed")).toBe("true");
      expect(after.body.job_id).toBe(done.body.job_id);
      expect((await a.get(`/v1/sessions/${sid}/jobs`)).body.data.length).toBe(1);
    } finally {
      await killAll();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 60_000);
});
