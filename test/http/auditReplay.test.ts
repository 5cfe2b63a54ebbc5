/**
 * As-of replay (issue 11): a long scripted conversation — turns, a plan approved and one rejected, a
 * failed turn, a queued turn, a prompt override, an asset, a rename, an archive and unarchive, a
 * delete — driven one step at a time. After each step, once the read models have caught up and the
 * store is quiet, the live API's answers (session, history, assets, jobs) are recorded with the
 * store's head position and the time. The replay at each recorded position, and at each recorded
 * time, must give exactly those answers. Between the steps, at every single event, the replay must
 * equal what the real projections, applied event by event to a fresh read-model database up to that
 * event, let the routes' own queries and views answer.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { assetsProjection, listAssets } from "../../projections/assets/index.ts";
import { jobsProjection, listSessionJobs } from "../../projections/jobs/index.ts";
import { listMessages, messagesProjection } from "../../projections/messages/index.ts";
import { getSession, sessionsProjection } from "../../projections/sessions/index.ts";
import { jobView, sessionView } from "../../src/http/routes/v1/common.ts";
import { assetView, messageView } from "../../src/http/routes/v1/sessions/model.ts";
import { api, TEST_KEY, type Api } from "../support/api.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const ROOT = "agr_replay-root-token-0123456789";

interface Snapshot {
  step: string;
  position: string;
  time: number;
  live: { session: unknown; messages: unknown[]; assets: unknown[]; jobs: unknown[] };
}

describe("as-of replay of a scripted conversation", () => {
  let server: TestServer;
  let client: Api;
  let auditor: Api;
  let sessionId: string;
  const snapshots: Snapshot[] = [];

  /** Waits until the store is quiet and the read models hold everything in it; returns the head position. */
  async function settle(): Promise<bigint> {
    for (let i = 0; i < 200; i++) {
      const head = (await server.ctx.store.headPosition())!;
      await server.ctx.projections.waitForPosition(head, 10_000);
      await Bun.sleep(40);
      if ((await server.ctx.store.headPosition()) === head) return head;
    }
    throw new Error("the store did not settle");
  }

  async function snapshot(step: string): Promise<void> {
    for (let i = 0; i < 20; i++) {
      const head = await settle();
      const [session, messages, assets, jobs] = await Promise.all([
        client.get(`/v1/sessions/${sessionId}`),
        client.get(`/v1/sessions/${sessionId}/messages?limit=200`),
        client.get(`/v1/sessions/${sessionId}/assets?limit=200`),
        client.get(`/v1/sessions/${sessionId}/jobs?limit=200`),
      ]);
      // Reads record nothing; but a late append (a key's last use) would make the answers ambiguous: again.
      if ((await server.ctx.store.headPosition()) !== head) continue;
      const time = Date.now();
      if (session.status === 404) {
        snapshots.push({ step, position: head.toString(), time, live: { session: null, messages: [], assets: [], jobs: [] } });
      } else {
        expect([session.status, messages.status, assets.status, jobs.status]).toEqual([200, 200, 200, 200]);
        expect(messages.body.has_more || assets.body.has_more || jobs.body.has_more).toBe(false);
        snapshots.push({ step, position: head.toString(), time, live: { session: session.body, messages: messages.body.data, assets: assets.body.data, jobs: jobs.body.data } });
      }
      // The next step's events occur strictly later than this snapshot's time.
      await Bun.sleep(5);
      return;
    }
    throw new Error(`no quiet moment to record ${step}`);
  }

  const send = async (content: string, extra: Record<string, unknown> = {}) => {
    const r = await client.post(`/v1/sessions/${sessionId}/messages`, { content, ...extra });
    expect([200, 202]).toContain(r.status);
    return r.body as { job_id: string; status: string };
  };

  beforeAll(async () => {
    server = await startTestServer({ API_KEY: TEST_KEY, ADMIN_TOKEN: ROOT, SANDBOX_CHUNK_DELAY_MS: "1" });
    client = api(server.url);
    const key = await fetch(`${server.url}/v1/apps/app_default/keys`, {
      method: "POST", headers: { authorization: `Bearer ${ROOT}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "auditor", scopes: ["audit:read"] }),
    });
    auditor = api(server.url, ((await key.json()) as { key: string }).key);

    const s = await client.post("/v1/sessions", { user_id: "user-replay", name: "replayed", external_ref: "ref-1", metadata: { plan: "pro" } });
    expect(s.status).toBe(201);
    sessionId = s.body.id;
    await snapshot("started");

    expect((await send("Hello, who are you?", { wait: true })).status).toBe("completed");
    await snapshot("first turn");

    const approved = await send("Please register https://example.com/cat.png as an asset");
    await client.waitForStatus(approved.job_id, ["awaiting_approval"]);
    await snapshot("plan proposed");
    expect((await client.post(`/v1/jobs/${approved.job_id}/approve`)).status).toBe(200);
    await client.pollUntilDone(approved.job_id);
    await snapshot("plan approved, asset registered");

    expect((await send("[fail] this turn breaks", { wait: true })).status).toBe("failed");
    await snapshot("failed turn");

    expect((await client.post(`/v1/sessions/${sessionId}/assets`, { url: "https://example.com/by-hand.png", kind: "image", prompt: "by hand" })).status).toBe(201);
    await snapshot("asset by hand");

    expect((await client.patch(`/v1/sessions/${sessionId}`, { name: "renamed" })).status).toBe(200);
    await snapshot("renamed");

    const rejected = await send("Please register https://example.com/dog.png as an asset");
    await client.waitForStatus(rejected.job_id, ["awaiting_approval"]);
    expect((await client.post(`/v1/jobs/${rejected.job_id}/reject`)).status).toBe(200);
    await client.pollUntilDone(rejected.job_id);
    await snapshot("plan rejected");

    const slow = await send("[slow] a long answer");
    const queued = await send("and one queued behind it", { multitask: "enqueue" });
    await client.pollUntilDone(slow.job_id);
    await client.pollUntilDone(queued.job_id);
    await snapshot("a queued turn");

    expect((await client.put("/v1/agents/agt_default/prompt", { system_prompt: "You answer as a pirate." })).status).toBe(200);
    expect((await send("Say something with the new prompt", { wait: true })).status).toBe("completed");
    expect((await client.del("/v1/agents/agt_default/prompt")).status).toBe(200);
    await snapshot("a turn on an overridden prompt");

    expect((await client.patch(`/v1/sessions/${sessionId}`, { archived: true })).status).toBe(200);
    await snapshot("archived");
    expect((await client.patch(`/v1/sessions/${sessionId}`, { archived: false, name: "back again" })).status).toBe(200);
    await snapshot("unarchived and renamed");

    expect((await client.del(`/v1/sessions/${sessionId}`)).status).toBe(200);
    await snapshot("deleted");
  }, 120_000);
  afterAll(async () => {
    await server?.stop();
  });

  const stateAt = async (at: string) => {
    const r = await auditor.get(`/v1/audit/sessions/${sessionId}/state?at=${encodeURIComponent(at)}`);
    expect(r.status).toBe(200);
    return r.body;
  };
  const shown = (state: any) => state.deleted
    ? { session: null, messages: [], assets: [], jobs: [] }
    : { session: state.session, messages: state.messages, assets: state.assets, jobs: state.jobs };

  test("the replay at each recorded position gives the live answers exactly", async () => {
    expect(snapshots.map((s) => s.step).length).toBe(13);
    // Each step changed what the API showed: no two recorded answers are the same.
    expect(new Set(snapshots.map((s) => JSON.stringify(s.live))).size).toBe(snapshots.length);
    for (const s of snapshots) {
      const state = await stateAt(s.position);
      expect({ step: s.step, ...shown(state) }).toEqual({ step: s.step, ...s.live });
    }
  });

  test("the replay at each recorded time gives the same answers", async () => {
    for (const s of snapshots) {
      const state = await stateAt(new Date(s.time).toISOString());
      expect({ step: s.step, ...shown(state) }).toEqual({ step: s.step, ...s.live });
    }
  });

  test("the replay at every event of the history answers, its as_of naming that event; prompts are recorded per attempt", async () => {
    const history = (await auditor.get(`/v1/audit/sessions/${sessionId}/events?limit=1000`)).body.data as any[];
    expect(history.length).toBeGreaterThan(50);
    let previousMessages = -1;
    for (const e of history) {
      const state = await stateAt(e.position);
      expect(state.as_of).toEqual({ position: e.position, occurred_at: e.occurred_at });
      // The history only grows.
      expect(state.messages.length).toBeGreaterThanOrEqual(previousMessages);
      previousMessages = state.messages.length;
    }
    const latest = await stateAt(history.at(-1).position);
    expect(latest.deleted).toBe(true);
    const overridden = latest.prompts.filter((p: any) => p.prompt_overridden === true);
    expect(overridden.length).toBe(1);
    expect(latest.prompts.every((p: any) => typeof p.system_prompt_sha256 === "string" && typeof p.agent_version === "number")).toBe(true);
    // The approved plan's job ran twice (before and after the approval): two attempts.
    expect(latest.prompts.some((p: any) => p.attempt === 2)).toBe(true);
    // The latest state with no `at` is the state at the last event.
    expect((await auditor.get(`/v1/audit/sessions/${sessionId}/state`)).body).toEqual(latest);
  });

  test("at every event, the replay equals the real projections applied up to that event", async () => {
    const projections = [sessionsProjection, messagesProjection, jobsProjection, assetsProjection];
    const db = new Database(":memory:", { strict: true });
    for (const p of projections) db.exec(p.schema);
    const inHistory = new Set(((await auditor.get(`/v1/audit/sessions/${sessionId}/events?limit=1000`)).body.data as any[]).map((e) => e.position));
    let checked = 0;
    for await (const e of server.ctx.store.readAll({ fromPosition: "start" })) {
      for (const p of projections) if (p.eventTypes === "all" || p.eventTypes.includes(e.type)) p.apply(db, e);
      if (!inHistory.has(e.position.toString())) continue;
      const row = getSession(db, "app_default", sessionId);
      const expected = row
        ? {
          session: sessionView(row), messages: listMessages(db, sessionId, 1000).map(messageView),
          assets: listAssets(db, sessionId, 1000).map(assetView), jobs: listSessionJobs(db, sessionId, 1000).map(jobView),
        }
        : { session: null, messages: [], assets: [], jobs: [] };
      expect({ position: e.position.toString(), ...shown(await stateAt(e.position.toString())) }).toEqual({ position: e.position.toString(), ...expected });
      checked++;
    }
    expect(checked).toBe(inHistory.size);
    db.close();
  });

  test("before the session existed there is nothing; bad points are 400", async () => {
    const before = await stateAt("1");
    expect(before.session).toBeNull();
    expect(before.as_of).toEqual({ position: null, occurred_at: null });
    for (const at of ["yesterday", "2026-02-30T00:00:00Z", "2026-12-01T00:00:00", "-3", "1.5", "x".repeat(201)]) {
      const r = await auditor.get(`/v1/audit/sessions/${sessionId}/state?at=${encodeURIComponent(at)}`);
      expect({ at, status: r.status, code: r.body.error.code }).toEqual({ at, status: 400, code: "invalid_request" });
    }
    expect((await auditor.get(`/v1/audit/sessions/sess_nope/state`)).body.error.code).toBe("session_not_found");
    // The management plane gives the same.
    const byRoot = await fetch(`${server.url}/v1/apps/app_default/audit/sessions/${sessionId}/state?at=${snapshots[3]!.position}`, { headers: { authorization: `Bearer ${ROOT}` } });
    expect(shown(await byRoot.json())).toEqual(snapshots[3]!.live);
  });
});
