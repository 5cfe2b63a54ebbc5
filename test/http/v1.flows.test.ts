/**
 * End-to-end flows of the v1 API over a real port, with the sandbox provider, run once per event store:
 * sqlite, memory, and esdb (the EventStoreDB protocol test server, in its own process).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { api, readSse, TEST_KEY, type Api } from "../support/api.ts";
import { spawnEsdbTestServer, type SpawnedEsdbTestServer } from "../support/esdbTestServer.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

type StoreKind = "sqlite" | "memory" | "esdb";

function flowSuite(store: StoreKind): void {
  describe(`/v1 flows on ${store}`, () => {
    let server: TestServer;
    let client: Api;
    let esdb: SpawnedEsdbTestServer | undefined;

    beforeAll(async () => {
      // HTTP tools call servers this test starts on loopback, which the operator must allow.
      const env: Record<string, string> = { API_KEY: TEST_KEY, SANDBOX_CHUNK_DELAY_MS: "3", TOOL_PRIVATE_ALLOWLIST: "127.0.0.1", EVENT_STORE: store };
      if (store === "esdb") {
        esdb = await spawnEsdbTestServer();
        env.EVENTSTORE_CONNECTION_STRING = esdb.connectionString;
      }
      server = await startTestServer(env);
      client = api(server.url);
    });
    afterAll(async () => {
      await server?.stop();
      await esdb?.stop();
    });


    async function newSession(extra: Record<string, unknown> = {}) {
      const r = await client.post("/v1/sessions", { user_id: "user-1", ...extra });
      expect(r.status).toBe(201);
      return r.body.id as string;
    }

    describe("auth", () => {
      test("every /v1 route needs the API key: 401 invalid_api_key without or with a wrong one", async () => {
        const none = await fetch(`${server.url}/v1/sessions`);
        expect(none.status).toBe(401);
        expect((await none.json() as any).error.code).toBe("invalid_api_key");
        const wrong = await api(server.url, "not-the-key").get("/v1/agents");
        expect(wrong.status).toBe(401);
        const bearer = await fetch(`${server.url}/v1/agents`, { headers: { authorization: `Bearer ${TEST_KEY}` } });
        expect(bearer.status).toBe(200);
      });
    });

    describe("a turn", () => {
      test("session → message → poll with cursor until done; history and usage follow", async () => {
        const sid = await newSession({ name: "first" });
        const sent = await client.post(`/v1/sessions/${sid}/messages`, { content: "hello agent" });
        expect(sent.status).toBe(202);
        expect(sent.body).toMatchObject({ status: "pending", session_id: sid, queued: false });
        const events = await client.pollUntilDone(sent.body.job_id);
        expect(events.map((e) => e.id)).toEqual(events.map((_, i) => i + 1));
        expect(events[0].type).toBe("job.queued");
        expect(events.at(-1).type).toBe("job.completed");
        const text = events.filter((e) => e.type === "text").map((e) => e.payload.content).join("");
        expect(text).toContain("hello agent");

        const job = await client.get(`/v1/jobs/${sent.body.job_id}`);
        expect(job.body).toMatchObject({ status: "completed", session_id: sid, kind: "message" });
        expect(job.body.usage.prompt_tokens).toBeGreaterThan(0);

        const history = await client.get(`/v1/sessions/${sid}/messages`);
        expect(history.body.data.map((m: any) => m.role)).toEqual(["user", "assistant"]);
        expect(history.body.data[1].content).toBe(text);

        const session = await client.get(`/v1/sessions/${sid}`);
        expect(session.body).toMatchObject({ status: "idle", active_job_id: null, message_count: 2 });
        expect(session.body.usage.completion_tokens).toBe(job.body.usage.completion_tokens);

        // The next turn sees the first in its context.
        const second = await client.post(`/v1/sessions/${sid}/messages`, { content: "and again", wait: true });
        expect(second.status).toBe(200);
        expect(second.body.status).toBe("completed");
        expect(second.body.reply.content).toContain("message 2 of our conversation");
      });

      test("a poll from the last cursor returns nothing new and done stays true", async () => {
        const sid = await newSession();
        const sent = await client.post(`/v1/sessions/${sid}/messages`, { content: "short", wait: true });
        const all = await client.get(`/v1/jobs/${sent.body.job_id}/events?since=0`);
        const again = await client.get(`/v1/jobs/${sent.body.job_id}/events?since=${all.body.cursor}`);
        expect(again.body).toMatchObject({ events: [], cursor: all.body.cursor, done: true, status: "completed" });
        const paged = await client.get(`/v1/jobs/${sent.body.job_id}/events?since=1&limit=2`);
        expect(paged.body.events.map((e: any) => e.id)).toEqual([2, 3]);
        expect(paged.body.done).toBe(false);
      });

      test("a long-poll is held and wakes on the next event", async () => {
        const sid = await newSession();
        const before = await client.get(`/v1/sessions/${sid}/events?since=0`);
        const cursor = before.body.cursor;
        let answered = false;
        const held = client.get(`/v1/sessions/${sid}/events?since=${cursor}&wait=10`).finally(() => (answered = true));
        await Bun.sleep(300);
        expect(answered).toBe(false); // held: nothing new yet
        await client.post(`/v1/sessions/${sid}/assets`, { url: "https://example.com/a.png", kind: "image" });
        // Woken by the event (a poll that ran out its wait would come back empty).
        const woke = await held;
        expect(woke.body.events.map((e: any) => e.type)).toContain("asset.registered");
        expect(woke.body.events[0].id).toBe(cursor + 1);
      });

      test("409 session_busy while a turn is in flight; multitask=enqueue runs after it", async () => {
        const sid = await newSession();
        const first = await client.post(`/v1/sessions/${sid}/messages`, { content: "a slow one [slow]" });
        const busy = await client.post(`/v1/sessions/${sid}/messages`, { content: "impatient" });
        expect(busy.status).toBe(409);
        expect(busy.body.error).toMatchObject({ code: "session_busy", details: { active_job_id: first.body.job_id } });
        const queued = await client.post(`/v1/sessions/${sid}/messages`, { content: "after you", multitask: "enqueue" });
        expect(queued.status).toBe(202);
        expect(queued.body.queued).toBe(true);
        const session = await client.get(`/v1/sessions/${sid}`);
        expect(session.body).toMatchObject({ status: "processing", active_job_id: first.body.job_id, queued_job_ids: [queued.body.job_id] });
        const queuedJob = await client.get(`/v1/jobs/${queued.body.job_id}`);
        expect(queuedJob.body.status).toBe("pending");
        await client.pollUntilDone(first.body.job_id);
        await client.pollUntilDone(queued.body.job_id);
        const a = await client.get(`/v1/jobs/${first.body.job_id}`);
        const b = await client.get(`/v1/jobs/${queued.body.job_id}`);
        expect(new Date(b.body.started_at).getTime()).toBeGreaterThanOrEqual(new Date(a.body.completed_at).getTime());
        const history = await client.get(`/v1/sessions/${sid}/messages`);
        expect(history.body.data.map((m: any) => `${m.role}:${m.status}`)).toEqual(["user:sent", "user:sent", "assistant:completed", "assistant:completed"]);
        expect((await client.get(`/v1/sessions/${sid}`)).body.status).toBe("idle");
      });
    });

    describe("SSE", () => {
      test("a stream dropped mid-turn and resumed with Last-Event-ID sees every event exactly once", async () => {
        const sid = await newSession();
        const sent = await client.post(`/v1/sessions/${sid}/messages`, { content: "stream this [slow]" });
        const jobId = sent.body.job_id;
        const first = await fetch(`${server.url}/v1/jobs/${jobId}/stream?verbosity=full`, { headers: { "x-api-key": TEST_KEY } });
        expect(first.headers.get("content-type")).toContain("text/event-stream");
        const part1 = await readSse(first, (evs) => evs.filter((e) => e.event === "text").length >= 2);
        const lastId = part1.at(-1)!.id!;
        const resumed = await fetch(`${server.url}/v1/jobs/${jobId}/stream?verbosity=full`, { headers: { "x-api-key": TEST_KEY, "last-event-id": String(lastId) } });
        const part2 = await readSse(resumed, (evs) => evs.some((e) => e.event === "done"));
        const ids = [...part1, ...part2].filter((e) => e.id !== null).map((e) => e.id);
        const all = await client.get(`/v1/jobs/${jobId}/events?since=0&limit=1000`);
        expect(ids).toEqual(all.body.events.map((e: any) => e.id));
        expect(part2.at(-1)!.data).toBe("[DONE]");
      });

      test("verbosity=minimal leaves out tool and usage events but keeps ids as cursors", async () => {
        const sid = await newSession();
        const sent = await client.post(`/v1/sessions/${sid}/messages`, { content: "hi", wait: true });
        const res = await fetch(`${server.url}/v1/jobs/${sent.body.job_id}/stream?verbosity=minimal`, { headers: { "x-api-key": TEST_KEY } });
        const events = await readSse(res, (evs) => evs.some((e) => e.event === "done"));
        const types = events.map((e) => e.event);
        expect(types).not.toContain("usage");
        expect(types).toContain("text");
        expect(types).toContain("job.completed");
      });

      test("a message sent with stream=true answers as SSE until the reply is done", async () => {
        const sid = await newSession();
        const res = await fetch(`${server.url}/v1/sessions/${sid}/messages`, {
          method: "POST", headers: { "x-api-key": TEST_KEY, "content-type": "application/json" }, body: JSON.stringify({ content: "stream me", stream: true }),
        });
        expect(res.status).toBe(200);
        const events = await readSse(res, (evs) => evs.some((e) => e.event === "done"));
        expect(events[0]!.event).toBe("job.queued");
        expect(events.some((e) => e.event === "job.completed")).toBe(true);
      });
    });

    describe("approval and cancel", () => {
      const planMessage = { content: "please register https://example.com/cat.png and https://example.com/clip.mp4" };

      test("a plan waits for approval, runs after approve, and registers assets", async () => {
        const sid = await newSession();
        const sent = await client.post(`/v1/sessions/${sid}/messages`, planMessage);
        const waiting = await client.waitForStatus(sent.body.job_id, ["awaiting_approval"]);
        expect(waiting.approval.plan.steps.map((s: any) => s.tool)).toEqual(["register_asset", "register_asset"]);
        const poll = await client.get(`/v1/jobs/${sent.body.job_id}/events?since=0`);
        expect(poll.body).toMatchObject({ approval_requested: true, done: false, approved: null });
        expect(poll.body.events.some((e: any) => e.type === "plan.proposed")).toBe(true);
        expect((await client.get(`/v1/sessions/${sid}/assets`)).body.data).toEqual([]);
        const ok = await client.post(`/v1/jobs/${sent.body.job_id}/approve`);
        expect(ok.status).toBe(200);
        await client.pollUntilDone(sent.body.job_id);
        const assets = await client.get(`/v1/sessions/${sid}/assets`);
        expect(assets.body.data.map((a: any) => [a.asset_label, a.kind])).toEqual([["asset_1", "image"], ["asset_2", "video"]]);
        const history = await client.get(`/v1/sessions/${sid}/messages`);
        expect(history.body.data[1].assets).toEqual(["asset_1", "asset_2"]);
        expect(history.body.data[1].tool_calls.map((c: any) => c.name)).toEqual(["register_asset", "register_asset"]);
      });

      test("two concurrent approvals: exactly one wins, the other is 409", async () => {
        const sid = await newSession();
        const sent = await client.post(`/v1/sessions/${sid}/messages`, planMessage);
        await client.waitForStatus(sent.body.job_id, ["awaiting_approval"]);
        const [a, b] = await Promise.all([client.post(`/v1/jobs/${sent.body.job_id}/approve`), client.post(`/v1/jobs/${sent.body.job_id}/approve`)]);
        expect([a.status, b.status].sort()).toEqual([200, 409]);
        expect([a, b].find((r) => r.status === 409)!.body.error.code).toBe("job_not_awaiting_approval");
        const events = await client.pollUntilDone(sent.body.job_id);
        expect(events.filter((e) => e.type === "plan.approved").length).toBe(1);
        expect(events.filter((e) => e.type === "tool.completed").length).toBe(2);
      });

      test("reject ends the job cancelled, runs nothing and frees the session", async () => {
        const sid = await newSession();
        const sent = await client.post(`/v1/sessions/${sid}/messages`, planMessage);
        await client.waitForStatus(sent.body.job_id, ["awaiting_approval"]);
        const r = await client.post(`/v1/jobs/${sent.body.job_id}/reject`, { reason: "not now" });
        expect(r.body.status).toBe("rejected");
        const job = await client.get(`/v1/jobs/${sent.body.job_id}`);
        expect(job.body.status).toBe("cancelled");
        expect((await client.get(`/v1/sessions/${sid}/assets`)).body.data).toEqual([]);
        expect((await client.get(`/v1/sessions/${sid}`)).body.status).toBe("idle");
        expect((await client.post(`/v1/jobs/${sent.body.job_id}/approve`)).status).toBe(409);
        const next = await client.post(`/v1/sessions/${sid}/messages`, { content: "fine", wait: true });
        expect(next.body.status).toBe("completed");
      });

      test("cancel mid-stream stops the turn, frees the session, and its partial text stays out of the next reply", async () => {
        const sid = await newSession();
        const sent = await client.post(`/v1/sessions/${sid}/messages`, { content: "talk for a while [slow]" });
        const jobId = sent.body.job_id;
        await client.waitForText(jobId);
        const cancel = await client.post(`/v1/jobs/${jobId}/cancel`);
        expect([200, 202]).toContain(cancel.status);
        const events = await client.pollUntilDone(jobId);
        expect(events.at(-1).type).toBe("job.cancelled");
        expect(events.filter((e) => ["job.completed", "job.failed", "job.cancelled"].includes(e.type)).length).toBe(1);
        expect((await client.get(`/v1/sessions/${sid}`)).body.status).toBe("idle");
        const again = await client.post(`/v1/jobs/${jobId}/cancel`);
        expect(again.status).toBe(409);
        expect(again.body.error.code).toBe("job_finished");
        const next = await client.post(`/v1/sessions/${sid}/messages`, { content: "what did you say?", wait: true });
        expect(next.body.reply.content).toContain("message 1 of our conversation");
        const history = await client.get(`/v1/sessions/${sid}/messages`);
        expect(history.body.data.find((m: any) => m.job_id === jobId && m.role === "assistant").status).toBe("cancelled");
      });

      test("cancelling a queued turn ends it at once", async () => {
        const sid = await newSession();
        const first = await client.post(`/v1/sessions/${sid}/messages`, { content: "hold on [slow]" });
        const queued = await client.post(`/v1/sessions/${sid}/messages`, { content: "later", multitask: "enqueue" });
        const c = await client.post(`/v1/jobs/${queued.body.job_id}/cancel`);
        expect(c.status).toBe(200);
        expect(c.body.status).toBe("cancelled");
        await client.pollUntilDone(first.body.job_id);
        expect((await client.get(`/v1/sessions/${sid}`)).body).toMatchObject({ status: "idle", queued_job_ids: [] });
      });
    });

    describe("runs", () => {
      const schema = {
        type: "object",
        properties: { dish: { type: "string", minLength: 1 }, calories: { type: "integer", minimum: 0, maximum: 2000 } },
        required: ["dish", "calories"],
        additionalProperties: false,
      };

      test("a run with an output schema completes with a result that matches it", async () => {
        const r = await client.post("/v1/runs", { user_id: "u", input: "analyse this meal", media_url: "https://example.com/meal.jpg", output_schema: schema });
        expect(r.status).toBe(202);
        const done = await client.waitForStatus(r.body.job_id, ["completed", "failed"]);
        expect(done.status).toBe("completed");
        const run = await client.get(`/v1/runs/${r.body.id}`);
        expect(run.body.status).toBe("completed");
        expect(Object.keys(run.body.result).sort()).toEqual(["calories", "dish"]);
        expect(Number.isInteger(run.body.result.calories)).toBe(true);
      });

      test("a reply that does not match the schema fails the run with invalid_output", async () => {
        const r = await client.post("/v1/runs", { user_id: "u", input: "this one is [invalid]", output_schema: schema });
        await client.waitForStatus(r.body.job_id, ["completed", "failed"]);
        const run = await client.get(`/v1/runs/${r.body.id}`);
        expect(run.body.status).toBe("failed");
        expect(run.body.error.code).toBe("invalid_output");
        expect(run.body.error.message).toContain("does not match the output schema");
      });

      test("a provider failure fails the run with a clear error", async () => {
        const r = await client.post("/v1/runs", { user_id: "u", input: "please [fail]" });
        const done = await client.waitForStatus(r.body.job_id, ["completed", "failed"]);
        expect(done.status).toBe("failed");
        expect(done.error.code).toBe("provider_unavailable");
      });
    });

    describe("assets", () => {
      test("50 concurrent registrations get asset_1 … asset_50, each exactly once", async () => {
        const sid = await newSession();
        const results = await Promise.all(Array.from({ length: 50 }, (_, i) => client.post(`/v1/sessions/${sid}/assets`, { url: `https://example.com/${i}.png`, kind: "image" })));
        expect(results.every((r) => r.status === 201)).toBe(true);
        const labels = results.map((r) => r.body.asset_label);
        expect(new Set(labels).size).toBe(50);
        expect([...labels].sort((a, b) => Number(a.slice(6)) - Number(b.slice(6)))).toEqual(Array.from({ length: 50 }, (_, i) => `asset_${i + 1}`));
        const listed: any[] = [];
        let cursor: string | null = null;
        do {
          const page = await client.get(`/v1/sessions/${sid}/assets?limit=20${cursor ? `&cursor=${cursor}` : ""}`);
          listed.push(...page.body.data);
          cursor = page.body.next_cursor;
        } while (cursor);
        expect(listed.map((a) => a.asset_label)).toEqual(Array.from({ length: 50 }, (_, i) => `asset_${i + 1}`));
        expect((await client.get(`/v1/sessions/${sid}`)).body.asset_count).toBe(50);
      });
    });

    describe("idempotency", () => {
      test("same key and body → the original response; same key, other body → 409 idempotency_conflict", async () => {
        const key = { "idempotency-key": `key-${crypto.randomUUID()}` };
        const a = await client.post("/v1/sessions", { user_id: "idem" }, key);
        const b = await client.post("/v1/sessions", { user_id: "idem" }, key);
        expect(a.status).toBe(201);
        expect(b.status).toBe(201);
        expect(b.body.id).toBe(a.body.id);
        expect(b.headers.get("idempotent-replayed")).toBe("true");
        const c = await client.post("/v1/sessions", { user_id: "someone else" }, key);
        expect(c.status).toBe(409);
        expect(c.body.error.code).toBe("idempotency_conflict");
        const listed = await client.get("/v1/sessions?user_id=idem");
        expect(listed.body.data.length).toBe(1);
      });

      test("a retried message does not start a second turn", async () => {
        const sid = await newSession();
        const key = { "idempotency-key": crypto.randomUUID() };
        const a = await client.post(`/v1/sessions/${sid}/messages`, { content: "once" }, key);
        const b = await client.post(`/v1/sessions/${sid}/messages`, { content: "once" }, key);
        expect(b.body.job_id).toBe(a.body.job_id);
        await client.pollUntilDone(a.body.job_id);
        expect((await client.get(`/v1/sessions/${sid}/jobs`)).body.data.length).toBe(1);
      });
    });

    describe("sessions", () => {
      test("listing by user is most-recently-active first and paginates with an opaque cursor", async () => {
        const user = `lister-${crypto.randomUUID()}`;
        const ids: string[] = [];
        for (let i = 0; i < 5; i++) ids.push((await client.post("/v1/sessions", { user_id: user, name: `s${i}` })).body.id);
        await client.post(`/v1/sessions/${ids[0]}/assets`, { url: "https://example.com/x.png", kind: "image" }); // ids[0] is now the most recent
        const p1 = await client.get(`/v1/sessions?user_id=${user}&limit=2`);
        expect(p1.body.data.map((s: any) => s.id)).toEqual([ids[0], ids[4]]);
        expect(p1.body.has_more).toBe(true);
        const p2 = await client.get(`/v1/sessions?user_id=${user}&limit=2&cursor=${p1.body.next_cursor}`);
        const p3 = await client.get(`/v1/sessions?user_id=${user}&limit=2&cursor=${p2.body.next_cursor}`);
        expect([...p2.body.data, ...p3.body.data].map((s: any) => s.id)).toEqual([ids[3], ids[2], ids[1]]);
        expect(p3.body).toMatchObject({ has_more: false, next_cursor: null });
      });

      test("rename, archive (hidden from the default list, no new messages), unarchive, delete (gone; events stay)", async () => {
        const user = `life-${crypto.randomUUID()}`;
        const sid = (await client.post("/v1/sessions", { user_id: user })).body.id;
        expect((await client.patch(`/v1/sessions/${sid}`, { name: "renamed" })).body.name).toBe("renamed");
        expect((await client.patch(`/v1/sessions/${sid}`, { archived: true })).body.archived).toBe(true);
        expect((await client.get(`/v1/sessions?user_id=${user}`)).body.data).toEqual([]);
        expect((await client.get(`/v1/sessions?user_id=${user}&archived=true`)).body.data.length).toBe(1);
        expect((await client.post(`/v1/sessions/${sid}/messages`, { content: "x" })).body.error.code).toBe("session_archived");
        await client.patch(`/v1/sessions/${sid}`, { archived: false });
        const del = await client.del(`/v1/sessions/${sid}`);
        expect(del.body).toEqual({ id: sid, object: "session", deleted: true });
        expect((await client.get(`/v1/sessions/${sid}`)).status).toBe(404);
        expect((await client.get(`/v1/sessions?user_id=${user}`)).body.data).toEqual([]);
        const stream = [];
        for await (const e of server.ctx.store.readStream(`session-${sid}`)) stream.push(e.type);
        expect(stream).toEqual(["SessionStarted", "SessionRenamed", "SessionArchived", "SessionUnarchived", "SessionDeleted"]);
      });
    });

    describe("agents", () => {
      test("create, read, update, list and delete an agent; sessions use it", async () => {
        const created = await client.post("/v1/agents", {
          name: "Helper", system_prompt: "Be brief.", approval: "never",
          model: { provider: "sandbox", name: "sandbox-1", parameters: { temperature: 0.2 } },
          tools: [{ type: "builtin", name: "register_asset" }],
        });
        expect(created.status).toBe(201);
        const id = created.body.id;
        expect((await client.get(`/v1/agents/${id}`)).body).toMatchObject({ name: "Helper", approval: "never", model: { provider: "sandbox" } });
        expect((await client.patch(`/v1/agents/${id}`, { description: "short answers" })).body.description).toBe("short answers");
        const listed = await client.get("/v1/agents?limit=200");
        expect(listed.body.data.map((a: any) => a.id)).toContain("agt_default");
        // approval "never": the tool runs without a plan.
        const sid = (await client.post("/v1/sessions", { user_id: "u", agent_id: id })).body.id;
        const sent = await client.post(`/v1/sessions/${sid}/messages`, { content: "save https://example.com/dog.png", wait: true });
        expect(sent.body.status).toBe("completed");
        expect(sent.body.reply.assets).toEqual(["asset_1"]);
        expect((await client.del(`/v1/agents/${id}`)).body.deleted).toBe(true);
        expect((await client.get(`/v1/agents/${id}`)).status).toBe(404);
        expect((await client.del("/v1/agents/agt_default")).status).toBe(409);
      });

      test("an HTTP tool POSTs its arguments to the app's URL; failures reach the model as tool errors", async () => {
        const hits: unknown[] = [];
        const appServer = Bun.serve({
          port: 0,
          async fetch(req) {
            const body = await req.json();
            hits.push(body);
            if ((body as any).id === 0) return new Response("nope", { status: 500 });
            return Response.json({ order: (body as any).id, state: "shipped" });
          },
        });
        try {
          const agent = await client.post("/v1/agents", {
            name: "Orders", approval: "never",
            tools: [{ type: "http", name: "lookup_order", description: "Find an order", url: `http://127.0.0.1:${appServer.port}/orders`, parameters: { type: "object", properties: { id: { type: "integer" } } } }],
          });
          const sid = (await client.post("/v1/sessions", { user_id: "u", agent_id: agent.body.id })).body.id;
          const ok = await client.post(`/v1/sessions/${sid}/messages`, { content: 'call lookup_order {"id": 42}', wait: true });
          expect(ok.body.reply.tool_calls[0]).toMatchObject({ name: "lookup_order", args: { id: 42 }, result: { order: 42, state: "shipped" }, error: null });
          const bad = await client.post(`/v1/sessions/${sid}/messages`, { content: 'call lookup_order {"id": 0}', wait: true });
          expect(bad.body.status).toBe("completed");
          expect(bad.body.reply.tool_calls[0].error).toBe("lookup_order answered HTTP 500");
          expect(hits).toEqual([{ id: 42 }, { id: 0 }]);
        } finally {
          appServer.stop(true);
        }
      });
    });

    describe("limits", () => {
      test("a message too big for one write is refused with 413 payload_too_large; nothing is stored and the session goes on", async () => {
        const sid = await newSession();
        // An inline file of a type off the allow-list: refused before anything is tried.
        const binary = { type: "file", name: "big.bin", data: "QUJD".repeat(300_000) };
        const refusedType = await client.post(`/v1/sessions/${sid}/messages`, { content: "x", attachments: [binary] });
        expect(refusedType.status).toBe(415);
        // Context is recorded in the message's event: more than one write holds is refused.
        const refused = await client.post(`/v1/sessions/${sid}/messages`, { content: "keep this", context: { blob: "y".repeat(1_100_000) } });
        expect(refused.status).toBe(413);
        expect(refused.body.error.code).toBe("payload_too_large");
        expect((await client.get(`/v1/sessions/${sid}/messages`)).body.data).toEqual([]);
        expect((await client.get(`/v1/sessions/${sid}/files`)).body.data).toEqual([]);
        expect((await client.get(`/v1/sessions/${sid}`)).body).toMatchObject({ status: "idle", message_count: 0 });
        // Inline files are stored apart and named by the event: together they may be more than one write holds.
        const half = { type: "file", name: "half.txt", content_type: "text/plain", data: "QUJD".repeat(150_000) };
        const accepted = await client.post(`/v1/sessions/${sid}/messages`, { content: "two halves", attachments: [half, { ...half, name: "other.txt" }], wait: true });
        expect(accepted.body.status).toBe("completed");
        expect((await client.get(`/v1/sessions/${sid}/files`)).body.data.map((f: any) => [f.name, f.size])).toEqual([["half.txt", 450_000], ["other.txt", 450_000]]);
      });
    });

    describe("read models", () => {
      test("rebuilding every read model from the events of all the flows above gives exactly what live processing gave", async () => {
        const { openReadModelDb, dumpTables } = await import("../../src/projections/readModelDb.ts");
        const { ProjectionRunner } = await import("../../src/projections/runner.ts");
        const { projections } = await import("../../projections/index.ts");
        const tables = projections.flatMap((p) => p.tables);
        await server.ctx.projections.waitUntilCaughtUp();
        const live = dumpTables(server.ctx.db, tables);
        // Enough flows ran for the comparison to mean something.
        expect((live.jobs as unknown[]).length).toBeGreaterThan(20);
        const fresh = openReadModelDb(":memory:");
        const runner = new ProjectionRunner(server.ctx.store, fresh, projections, { batchSize: 97 });
        runner.start();
        await runner.waitUntilCaughtUp();
        await runner.stop();
        expect(dumpTables(fresh, tables)).toEqual(live);
        fresh.close();
      });
    });
  });
}

for (const store of ["sqlite", "memory", "esdb"] as const) flowSuite(store);
