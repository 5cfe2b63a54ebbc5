/**
 * Regression tests for API defects found in review: each names the defect it pins down and failed
 * before its fix.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { api, TEST_KEY, type Api } from "../support/api.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

let server: TestServer;
let client: Api;

beforeAll(async () => {
  server = await startTestServer({ API_KEY: TEST_KEY, SANDBOX_CHUNK_DELAY_MS: "1" });
  client = api(server.url);
});
afterAll(async () => {
  await server?.stop();
});

async function newSession(extra: Record<string, unknown> = {}): Promise<string> {
  const r = await client.post("/v1/sessions", { user_id: "user-1", ...extra });
  expect(r.status).toBe(201);
  return r.body.id;
}

describe("a deleted session", () => {
  test("takes its jobs out of every read: status, events, SSE, approve/cancel", async () => {
    const sid = await newSession();
    const sent = await client.post(`/v1/sessions/${sid}/messages`, { content: "hello", wait: true });
    expect(sent.status).toBe(200);
    const jobId = sent.body.job_id;
    expect((await client.get(`/v1/jobs/${jobId}`)).status).toBe(200);
    expect((await client.get(`/v1/runs/${jobId}`)).status).toBe(200); // any job reads as a run too

    expect((await client.del(`/v1/sessions/${sid}`)).status).toBe(200);
    for (const path of [`/v1/jobs/${jobId}`, `/v1/jobs/${jobId}/events?since=0`, `/v1/jobs/${jobId}/stream`]) {
      const r = await client.get(path);
      expect({ path, status: r.status, code: r.body?.error?.code }).toEqual({ path, status: 404, code: "job_not_found" });
    }
    const asRun = await client.get(`/v1/runs/${jobId}`);
    expect({ status: asRun.status, code: asRun.body.error.code, param: asRun.body.error.details.param }).toEqual({ status: 404, code: "run_not_found", param: "run_id" });
    for (const action of ["approve", "reject", "cancel"]) {
      const r = await client.post(`/v1/jobs/${jobId}/${action}`);
      expect({ action, status: r.status }).toEqual({ action, status: 404 });
    }
    // A single-turn run has no session and stays readable.
    const run = await client.post("/v1/runs", { user_id: "u", input: "hi" });
    expect((await client.get(`/v1/runs/${run.body.id}`)).status).toBe(200);
  });
});

describe("PATCH /v1/agents/{id}", () => {
  test("merges at every level: a model parameter alone keeps the provider, the name and the other parameters", async () => {
    const created = await client.post("/v1/agents", {
      name: "merge", model: { provider: "sandbox", name: "m-1", parameters: { temperature: 0.5, top_p: 1, extra: { a: 1, b: 2 } } },
    });
    expect(created.status).toBe(201);
    const id = created.body.id;
    const patched = await client.patch(`/v1/agents/${id}`, { model: { parameters: { temperature: 0.2, extra: { b: 3 } } } });
    expect(patched.status).toBe(200);
    expect(patched.body.model).toEqual({ provider: "sandbox", name: "m-1", parameters: { temperature: 0.2, top_p: 1, extra: { a: 1, b: 3 } } });
    const removed = await client.patch(`/v1/agents/${id}`, { model: { parameters: { top_p: null } } });
    expect(removed.body.model.parameters).toEqual({ temperature: 0.2, extra: { a: 1, b: 3 } });
    expect((await client.patch(`/v1/agents/${id}`, { description: "only this" })).body.model.name).toBe("m-1");
    expect((await client.get(`/v1/agents/${id}`)).body.model).toEqual(removed.body.model);
  });

  test("an agent naming a provider this server lacks is refused at create and at update", async () => {
    const bad = await client.post("/v1/agents", { name: "x", model: { provider: "openai" } });
    expect(bad.status).toBe(400);
    expect(bad.body.error.details.param).toBe("model.provider");
    const ok = await client.post("/v1/agents", { name: "x" });
    const patched = await client.patch(`/v1/agents/${ok.body.id}`, { model: { provider: "no-such-provider" } });
    expect(patched.status).toBe(400);
    expect(patched.body.error.details.param).toBe("model.provider");
  });
});

describe("turn outcomes", () => {
  test("a cancelled running turn ends with the reason its caller gave", async () => {
    const sid = await newSession();
    const sent = await client.post(`/v1/sessions/${sid}/messages`, { content: "take your time [slow]" });
    await client.waitForText(sent.body.job_id);
    const cancelled = await client.post(`/v1/jobs/${sent.body.job_id}/cancel`, { reason: "user pressed stop" });
    expect([200, 202]).toContain(cancelled.status);
    const events = await client.pollUntilDone(sent.body.job_id);
    const last = events[events.length - 1];
    expect(last.type).toBe("job.cancelled");
    expect(last.payload.reason).toBe("user pressed stop");
  });

  test("a session's message_count agrees with its history when a turn failed", async () => {
    const sid = await newSession();
    const failed = await client.post(`/v1/sessions/${sid}/messages`, { content: "please [fail]", wait: true });
    expect(failed.body.status).toBe("failed");
    const ok = await client.post(`/v1/sessions/${sid}/messages`, { content: "and now?", wait: true });
    expect(ok.body.status).toBe("completed");
    const history = (await client.get(`/v1/sessions/${sid}/messages`)).body.data;
    expect(history.length).toBe(4);
    expect((await client.get(`/v1/sessions/${sid}`)).body.message_count).toBe(history.length);
  });
});

describe("paging the session list while sessions get activity", () => {
  test("order=created sees every session exactly once; the default order's cursor says which order it belongs to", async () => {
    const user = `pager-${crypto.randomUUID()}`;
    const ids: string[] = [];
    for (let i = 0; i < 30; i++) ids.push((await client.post("/v1/sessions", { user_id: user })).body.id);
    const seen: string[] = [];
    let cursor: string | null = null;
    let turn = 0;
    do {
      const page: any = await client.get(`/v1/sessions?user_id=${user}&order=created&limit=7${cursor ? `&cursor=${cursor}` : ""}`);
      expect(page.status).toBe(200);
      seen.push(...page.body.data.map((s: any) => s.id));
      cursor = page.body.next_cursor;
      // Activity on sessions already seen and not yet seen, between pages.
      for (const id of [ids[turn % 30]!, ids[29 - (turn % 30)]!]) {
        await client.post(`/v1/sessions/${id}/assets`, { url: `https://example.com/${turn}.png`, kind: "image" });
      }
      turn++;
    } while (cursor);
    expect(seen.length).toBe(30);
    expect(new Set(seen)).toEqual(new Set(ids));
    const activityPage = await client.get(`/v1/sessions?user_id=${user}&limit=7`);
    const mixed = await client.get(`/v1/sessions?user_id=${user}&order=created&cursor=${activityPage.body.next_cursor}`);
    expect({ status: mixed.status, code: mixed.body.error?.code }).toEqual({ status: 400, code: "invalid_cursor" });
  });
});

describe("the turn coordinator", () => {
  test("a turn whose job is ended by any writer closes, and the session's next queued turn runs", async () => {
    const sid = await newSession();
    const first = await client.post(`/v1/sessions/${sid}/messages`, { content: "please register https://example.com/held.png" });
    await client.waitForStatus(first.body.job_id, ["awaiting_approval"]);
    const second = await client.post(`/v1/sessions/${sid}/messages`, { content: "and then this", multitask: "enqueue" });
    expect(second.body.queued).toBe(true);
    // Another process (an operator's tool, a worker elsewhere) fails the waiting job straight in the store.
    await server.ctx.repos.jobs.handle(first.body.job_id, { type: "FailJob", error: { code: "operator", message: "failed by hand" } }, { appId: "app_default" });
    const next = await client.waitForStatus(second.body.job_id, ["completed", "failed", "cancelled"]);
    expect(next.status).toBe("completed");
    const history = (await client.get(`/v1/sessions/${sid}/messages`)).body.data;
    // In the order it happened: the second message was sent while the first turn waited.
    expect(history.map((m: any) => [m.role, m.status])).toEqual([["user", "sent"], ["user", "sent"], ["assistant", "failed"], ["assistant", "completed"]]);
  });
});
