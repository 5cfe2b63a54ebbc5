/**
 * Audit reads (issue 11, "Auditors"): a session's complete history merged from its streams, one stream
 * raw, `$all` scoped to the caller's app, as JSON pages and as NDJSON; through an `audit:read` key and
 * through the management plane. Run once per event store: sqlite, memory and esdb (the EventStoreDB
 * protocol test server, in its own process).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { api, TEST_KEY, type Api } from "../support/api.ts";
import { spawnEsdbTestServer, type SpawnedEsdbTestServer } from "../support/esdbTestServer.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const ROOT = "agr_audit-root-token-0123456789";
type StoreKind = "sqlite" | "memory" | "esdb";

function auditSuite(store: StoreKind): void {
  describe(`audit reads on ${store}`, () => {
    let server: TestServer;
    let client: Api;
    let auditor: Api;
    let auditorKey: string;
    let root: Api;
    let esdb: SpawnedEsdbTestServer | undefined;
    let sessionId: string;
    let jobs: string[];
    let otherAppSession: string;

    const issue = async (appId: string, body: Record<string, unknown>) => {
      const r = await root.post(`/v1/apps/${appId}/keys`, { name: "audit test", ...body });
      expect(r.status).toBe(201);
      return r.body.key as string;
    };

    beforeAll(async () => {
      const env: Record<string, string> = { API_KEY: TEST_KEY, ADMIN_TOKEN: ROOT, SANDBOX_CHUNK_DELAY_MS: "0", EVENT_STORE: store };
      if (store === "esdb") {
        esdb = await spawnEsdbTestServer();
        env.EVENTSTORE_CONNECTION_STRING = esdb.connectionString;
      }
      server = await startTestServer(env);
      client = api(server.url);
      root = rootClient(server.url);
      auditorKey = await issue("app_default", { scopes: ["audit:read"] });
      auditor = api(server.url, auditorKey);

      const s = await client.post("/v1/sessions", { user_id: "user-a", name: "audited" }, { "x-request-id": "req-start-1" });
      expect(s.status).toBe(201);
      sessionId = s.body.id;
      const t1 = await client.post(`/v1/sessions/${sessionId}/messages`, { content: "hello there", wait: true }, { "x-request-id": "req-msg-1" });
      const t2 = await client.post(`/v1/sessions/${sessionId}/messages`, { content: "[fail] please", wait: true });
      expect([t1.body.status, t2.body.status]).toEqual(["completed", "failed"]);
      jobs = [t1.body.job_id, t2.body.job_id];
      await client.patch(`/v1/sessions/${sessionId}`, { name: "renamed" });

      // Another app with a session of its own.
      expect((await root.post("/v1/apps", { name: "Other" })).status).toBe(201);
      const apps = await root.get("/v1/apps");
      const otherId = apps.body.data.find((a: any) => a.name === "Other").id;
      const other = api(server.url, await issue(otherId, {}));
      otherAppSession = (await other.post("/v1/sessions", { user_id: "user-b" })).body.id;
    }, 60_000);
    afterAll(async () => {
      await server?.stop();
      await esdb?.stop();
    });

    test("the scope: audit:read is needed, and nothing else includes it", async () => {
      const r = await client.get(`/v1/audit/sessions/${sessionId}/events`);
      expect(r.status).toBe(403);
      expect(r.body.error.code).toBe("insufficient_scope");
      expect((await auditor.get(`/v1/sessions/${sessionId}`)).body.error.code).toBe("insufficient_scope");
      // Only a key acting for the whole app may read audit data.
      for (const extra of [{ user_id: "user-a" }, { agent_ids: ["agt_default"] }]) {
        const refused = await root.post("/v1/apps/app_default/keys", { name: "x", scopes: ["audit:read"], ...extra });
        expect(refused.status).toBe(400);
        expect(refused.body.error.details.param).toBe("scopes");
      }
    });

    test("a session's complete history: its stream and its jobs', in commit order, with full metadata", async () => {
      const r = await auditor.get(`/v1/audit/sessions/${sessionId}/events?limit=1000`);
      expect(r.status).toBe(200);
      const events = r.body.data as any[];
      expect(r.body).toMatchObject({ object: "list", has_more: false, next_cursor: null });
      const positions = events.map((e) => BigInt(e.position));
      expect(positions).toEqual([...positions].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
      expect(new Set(events.map((e) => e.stream))).toEqual(new Set([`session-${sessionId}`, ...jobs.map((j) => `job-${j}`)]));
      // Every event of every stream, each stream's revisions gapless.
      for (const stream of new Set(events.map((e) => e.stream))) {
        const revisions = events.filter((e) => e.stream === stream).map((e) => e.revision);
        expect(revisions).toEqual(revisions.map((_, i) => i));
      }
      const started = events.find((e) => e.type === "SessionStarted");
      expect(started).toMatchObject({
        object: "audit_event", stream: `session-${sessionId}`, revision: 0, schema_version: 1, app_id: "app_default",
        request_id: "req-start-1", correlation_id: "req-start-1", attributed_user_id: "user-a",
      });
      expect(started.actor).toMatch(/^key:/);
      expect(Date.parse(started.occurred_at)).toBeGreaterThan(0);
      const sent = events.find((e) => e.type === "MessageSent");
      expect(sent.request_id).toBe("req-msg-1");
      expect(sent.data.content).toBe("hello there");
      // As stored: the operator's fields too (a JobStarted's runner), which the public view leaves out.
      const jobStarted = events.find((e) => e.type === "JobStarted");
      expect(typeof jobStarted.data.runner_id).toBe("string");
      expect(events.map((e) => e.type)).toEqual(expect.arrayContaining(["JobQueued", "JobCompleted", "JobFailed", "TurnEnded", "SessionRenamed"]));
      // A generated request id is recorded too.
      const renamed = events.find((e) => e.type === "SessionRenamed");
      expect(renamed.request_id).toMatch(/^[0-9a-f-]{36}$/);
    });

    test("pages follow the cursor without gap or repeat; NDJSON exports the same events", async () => {
      const all = (await auditor.get(`/v1/audit/sessions/${sessionId}/events?limit=1000`)).body.data;
      const paged: any[] = [];
      let cursor: string | null = null;
      for (let i = 0; i < 100; i++) {
        const r = await auditor.get(`/v1/audit/sessions/${sessionId}/events?limit=3${cursor ? `&cursor=${cursor}` : ""}`);
        expect(r.status).toBe(200);
        paged.push(...r.body.data);
        cursor = r.body.next_cursor;
        if (!r.body.has_more) break;
      }
      expect(paged).toEqual(all);
      for (const headers of [{}, { accept: "application/x-ndjson" }] as Record<string, string>[]) {
        const url = `${server.url}/v1/audit/sessions/${sessionId}/events${"accept" in headers ? "" : "?format=ndjson"}`;
        const res = await fetch(url, { headers: { "x-api-key": auditorKey, ...headers } });
        expect(res.status).toBe(200);
        expect(res.headers.get("content-type")).toContain("application/x-ndjson");
        const lines = (await res.text()).split("\n").filter(Boolean).map((l) => JSON.parse(l));
        expect(lines).toEqual(all);
      }
    });

    test("one stream, by revision; another app's stream and unknown streams are 404", async () => {
      const r = await auditor.get(`/v1/audit/streams/job-${jobs[0]}?limit=2`);
      expect(r.status).toBe(200);
      expect(r.body.data.map((e: any) => e.revision)).toEqual([0, 1]);
      const next = await auditor.get(`/v1/audit/streams/job-${jobs[0]}?limit=2&cursor=${r.body.next_cursor}`);
      expect(next.body.data[0].revision).toBe(2);
      for (const name of [`session-${otherAppSession}`, "session-nope", "operator-root"]) {
        const missing = await auditor.get(`/v1/audit/streams/${name}`);
        expect(missing.status).toBe(404);
        expect(missing.body.error.code).toBe("stream_not_found");
      }
      expect((await auditor.get(`/v1/audit/sessions/${otherAppSession}/events`)).body.error.code).toBe("session_not_found");
    });

    test("$all shows only the caller's app, paged by position", async () => {
      const seen: any[] = [];
      let cursor: string | null = null;
      for (let i = 0; i < 1000; i++) {
        const r = await auditor.get(`/v1/audit/all?limit=50${cursor ? `&cursor=${cursor}` : ""}`);
        expect(r.status).toBe(200);
        seen.push(...r.body.data);
        cursor = r.body.next_cursor;
        if (!r.body.has_more) break;
      }
      expect(seen.every((e) => e.app_id === "app_default")).toBe(true);
      expect(seen.some((e) => e.stream === `session-${otherAppSession}`)).toBe(false);
      const history = (await auditor.get(`/v1/audit/sessions/${sessionId}/events?limit=1000`)).body.data;
      expect(seen.filter((e) => history.some((h: any) => h.id === e.id))).toEqual(history);
      const positions = seen.map((e) => BigInt(e.position));
      expect(positions.every((p, i) => i === 0 || p > positions[i - 1]!)).toBe(true);
    });

    test("the management plane reads the same for a named app (members), and its test data with mode=test", async () => {
      const byKey = (await auditor.get(`/v1/audit/sessions/${sessionId}/events?limit=1000`)).body;
      const byRoot = await root.get(`/v1/apps/app_default/audit/sessions/${sessionId}/events?limit=1000`);
      expect(byRoot.status).toBe(200);
      expect(byRoot.body).toEqual(byKey);
      expect((await root.get(`/v1/apps/app_default/audit/streams/session-${sessionId}`)).body.data.length).toBeGreaterThan(0);
      const testData = await root.get(`/v1/apps/app_default/audit/all?mode=test`);
      expect(testData.status).toBe(200);
      expect(testData.body.data.every((e: any) => e.app_id === "app_default.test")).toBe(true);
      expect((await root.get(`/v1/apps/app_nope/audit/all`)).body.error.code).toBe("app_not_found");
      // The planes never mix: a data key on the management door, the root token on the key door.
      expect((await auditor.get(`/v1/apps/app_default/audit/all`)).status).toBe(401);
      expect((await root.get(`/v1/audit/all`)).status).toBe(401);
    });

    test("a test key with audit:read sees its test data only", async () => {
      const testAuditor = api(server.url, await issue("app_default", { mode: "test", scopes: ["audit:read", "data:write"] }));
      const s = await testAuditor.post("/v1/sessions", { user_id: "user-t" });
      expect(s.status).toBe(201);
      const all = (await testAuditor.get("/v1/audit/all?limit=1000")).body.data as any[];
      expect(all.length).toBeGreaterThan(0);
      expect(all.every((e) => e.app_id === "app_default.test")).toBe(true);
      expect((await testAuditor.get(`/v1/audit/sessions/${sessionId}/events`)).status).toBe(404);
      expect((await testAuditor.get(`/v1/audit/sessions/${s.body.id}/events`)).status).toBe(200);
    });

    test("the as-of replay from this store: now, it is what the live API answers; at the first event, the bare session", async () => {
      const [session, messages, assets, jobs] = await Promise.all([
        client.get(`/v1/sessions/${sessionId}`), client.get(`/v1/sessions/${sessionId}/messages?limit=200`),
        client.get(`/v1/sessions/${sessionId}/assets?limit=200`), client.get(`/v1/sessions/${sessionId}/jobs?limit=200`),
      ]);
      const state = (await auditor.get(`/v1/audit/sessions/${sessionId}/state`)).body;
      expect({ session: state.session, messages: state.messages, assets: state.assets, jobs: state.jobs })
        .toEqual({ session: session.body, messages: messages.body.data, assets: assets.body.data, jobs: jobs.body.data });
      const first = (await auditor.get(`/v1/audit/sessions/${sessionId}/events?limit=1`)).body.data[0];
      const atStart = (await auditor.get(`/v1/audit/sessions/${sessionId}/state?at=${first.position}`)).body;
      expect(atStart).toMatchObject({ session: { name: "audited", message_count: 0 }, messages: [], jobs: [], as_of: { position: first.position } });
    });

    test("bad input is a 4xx in the envelope", async () => {
      const cases: Array<[string, number, string]> = [
        [`/v1/audit/sessions/${sessionId}/events?cursor=nope`, 400, "invalid_cursor"],
        [`/v1/audit/sessions/${sessionId}/events?cursor=${Buffer.from('{"p":"-1"}').toString("base64url")}`, 400, "invalid_cursor"],
        [`/v1/audit/streams/session-${sessionId}?cursor=${Buffer.from('{"p":"1"}').toString("base64url")}`, 400, "invalid_cursor"],
        [`/v1/audit/streams/session-${sessionId}?cursor=${Buffer.from('{"r":-5}').toString("base64url")}`, 400, "invalid_cursor"],
        [`/v1/audit/all?cursor=${Buffer.from('{"p":"12abc"}').toString("base64url")}`, 400, "invalid_cursor"],
        [`/v1/audit/all?limit=0`, 400, "invalid_request"],
        [`/v1/audit/all?limit=1001`, 400, "invalid_request"],
        [`/v1/audit/all?limit=1x`, 400, "invalid_request"],
        [`/v1/audit/all?format=xml`, 400, "invalid_request"],
        [`/v1/audit/all?since=3`, 400, "invalid_request"],
        [`/v1/audit/streams/$all`, 400, "invalid_request"],
        [`/v1/audit/streams/${"x".repeat(400)}`, 400, "invalid_request"],
        [`/v1/audit/sessions/sess_unknown/events`, 404, "session_not_found"],
      ];
      for (const [path, status, code] of cases) {
        const r = await auditor.get(path);
        expect({ path, status: r.status, code: r.body?.error?.code }).toEqual({ path, status, code });
      }
      // A well-formed position no event has (inside a record, in EventStoreDB's log) is never a 5xx.
      for (const p of ["7", "999999999999999999999"]) {
        for (const path of [`/v1/audit/all?cursor=`, `/v1/audit/sessions/${sessionId}/events?cursor=`]) {
          const r = await auditor.get(path + Buffer.from(JSON.stringify({ p })).toString("base64url"));
          expect({ path, p, status: r.status < 500 }).toEqual({ path, p, status: true });
        }
      }
    });
  });
}

/** A client sending the root token (the management plane's credential). */
function rootClient(base: string): Api {
  const plain = api(base, "");
  const h = { authorization: `Bearer ${ROOT}` };
  return { ...plain, get: (p, x) => plain.get(p, { ...h, ...x }), post: (p, b, x) => plain.post(p, b, { ...h, ...x }) };
}

for (const store of ["sqlite", "memory", "esdb"] as const) auditSuite(store);
