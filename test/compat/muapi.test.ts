/**
 * The MUAPI surface (/compat/muapi), driven as a MUAPI client drives the Design Agent: plain fetch
 * with the headers and bodies of the "Design Agent API" doc (seed 004), nothing of /v1 — except where
 * the issue asks that a session started here be read through /v1 (one store, one history), and to set
 * up a second app and an end user. Each test quotes the doc lines it relies on.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startTestServer, type TestServer } from "../support/server.ts";
import { api } from "../support/api.ts";
import { canonicalJson } from "../../src/core/canonicalJson.ts";
import { DEFAULT_APP_ID } from "../../src/domain/streams.ts";

const ROOT = "root-token-muapi-0123456789abcdef";
let server: TestServer;
/** Doc: "Base URL: https://api.muapi.ai/api/v1/creative-agent" */
let API: string;
let DASHBOARD: string;

beforeAll(async () => {
  // Rate limits on (high), so their headers are sent as they are in production.
  server = await startTestServer({
    ADMIN_TOKEN: ROOT, SANDBOX_CHUNK_DELAY_MS: "2", RATE_LIMIT_PER_MINUTE: "10000", RATE_LIMIT_HEAVY_PER_MINUTE: "10000", TOOL_PRIVATE_ALLOWLIST: "127.0.0.1",
  });
  API = `${server.url}/compat/muapi/api/v1/creative-agent`;
  DASHBOARD = `${server.url}/compat/muapi`;
});
afterAll(async () => {
  await server?.stop();
});

/** Doc: const headers = { "Content-Type": "application/json", "x-api-key": "YOUR_API_KEY" }; */
async function call(method: string, url: string, body?: unknown, key: string | null = server.apiKey) {
  const res = await fetch(url.startsWith("http") ? url : API + url, {
    method,
    headers: { ...(key !== null ? { "x-api-key": key } : {}), ...(body !== undefined ? { "Content-Type": "application/json" } : {}) },
    ...(body !== undefined ? { body: typeof body === "string" ? body : JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  let parsed: any = text;
  try { parsed = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  return { status: res.status, body: parsed, headers: res.headers };
}

/** Doc: POST /sessions {"name": "Product Campaign"} → {"id", "name", "credits_spent": 0, "asset_count": 0} */
async function createSession(name?: string, key = server.apiKey) {
  const r = await call("POST", "/sessions", name === undefined ? undefined : { name }, key);
  expect(r.status).toBe(200);
  return r.body as { id: string; name: string };
}

/**
 * Doc: "You poll GET /jobs/{job_id}/events?since=<cursor> every 1–2 seconds until done: true."
 * (Polled faster here; bounded.) `onEvent` may act on an event (approve a plan). Returns every event and the last poll.
 */
async function pollJob(jobId: string, onEvent?: (ev: any) => Promise<void>, key = server.apiKey) {
  let cursor = 0;
  const events: any[] = [];
  for (let i = 0; i < 600; i++) {
    const poll = await call("GET", `/jobs/${jobId}/events?since=${cursor}`, undefined, key);
    expect(poll.status).toBe(200);
    for (const ev of poll.body.events) {
      events.push(ev);
      await onEvent?.(ev);
    }
    // Doc: cursor = poll.cursor; done = poll.done;
    cursor = poll.body.cursor;
    if (poll.body.done) return { events, last: poll.body };
    await Bun.sleep(20);
  }
  throw new Error(`job ${jobId} did not finish`);
}

/** Polls until the job asks for approval (the doc's `approval_requested: true`). */
async function waitForApproval(jobId: string) {
  for (let i = 0; i < 600; i++) {
    const poll = await call("GET", `/jobs/${jobId}/events?since=0`);
    if (poll.body.approval_requested) return poll.body;
    await Bun.sleep(20);
  }
  throw new Error(`job ${jobId} never asked for approval`);
}

/** A tiny PNG: the signature and an IHDR chunk (the file store checks an image's first bytes). */
const PNG = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52, 0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0, 0x90, 0x77, 0x53, 0xde]);

/** What the server records of a client's history: its count, and the SHA-256 and size of its canonical JSON. */
function digestOf(messages: unknown[]) {
  const text = canonicalJson(messages);
  return { count: messages.length, sha256: new Bun.CryptoHasher("sha256").update(text).digest("hex"), bytes: Buffer.byteLength(text) };
}

/** Doc: "POST <url from above> Content-Type: multipart/form-data [all fields from response, then the file itself]" */
async function uploadToS3(ticket: { url: string; fields: Record<string, string> }, bytes: Uint8Array = PNG, fields = ticket.fields) {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  form.append("file", new Blob([bytes], { type: "image/png" }), "product.png");
  return fetch(ticket.url, { method: "POST", body: form });
}

test("Sessions: create (named or not), list by most recent activity, rename, delete", async () => {
  // Doc: "If name is omitted, a random name like session-a1b2c3 is generated."
  const unnamed = await createSession();
  expect(unnamed.name).toMatch(/^session-[A-Za-z0-9]{6}$/);
  const a = await call("POST", "/sessions", { name: "Product Campaign" });
  // Doc: { "id": "sess_xyz789", "name": "Product Campaign", "credits_spent": 0, "asset_count": 0 }
  expect(a.body).toEqual({ id: a.body.id, name: "Product Campaign", credits_spent: 0, asset_count: 0 });
  const b = await createSession("Second");
  // Doc: "PATCH /sessions/{session_id} … {"name": "Summer Collection Ads"} → {"id": "sess_xyz789", "name": "Summer Collection Ads"}"
  const renamed = await call("PATCH", `/sessions/${a.body.id}`, { name: "Summer Collection Ads" });
  expect(renamed.status).toBe(200);
  expect(renamed.body).toEqual({ id: a.body.id, name: "Summer Collection Ads" });
  // Doc: "GET /sessions — List all sessions … ordered by most recently updated." — updated_at "Last
  // activity timestamp": a chat in the oldest session puts it first; the others keep their creation order
  // (newest first), and a rename is no activity.
  const chat = await call("POST", `/sessions/${unnamed.id}/chat`, { message: "Hello" });
  await pollJob(chat.body.job_id);
  const list = await call("GET", "/sessions");
  expect(list.status).toBe(200);
  const ids = list.body.map((s: any) => s.id);
  expect(ids.slice(0, 3)).toEqual([unnamed.id, b.id, a.body.id]);
  const mine = list.body.find((s: any) => s.id === a.body.id);
  // Doc fields: id, name, credits_spent, asset_count, created_at, updated_at (ISO 8601)
  expect(mine).toMatchObject({ name: "Summer Collection Ads", credits_spent: 0, asset_count: 0 });
  expect(new Date(mine.created_at).toISOString()).toBe(mine.created_at);
  expect(new Date(mine.updated_at).toISOString()).toBe(mine.updated_at);
  // Doc: "DELETE /sessions/{session_id} … {"status": "deleted"}"
  const del = await call("DELETE", `/sessions/${b.id}`);
  expect(del.status).toBe(200);
  expect(del.body).toEqual({ status: "deleted" });
  // Doc: {"detail": "Session not found"} — "404 Session, job, asset, or skill not found"
  const gone = await call("GET", `/sessions/${b.id}/assets`);
  expect(gone.status).toBe(404);
  expect(gone.body.detail).toBe("Session not found");
  expect((await call("GET", "/sessions")).body.map((s: any) => s.id)).not.toContain(b.id);
});

test("Complete workflow: upload to the signed URL, register, chat, approve the plan, tool_result with the asset, final asset list", async () => {
  // Doc: "// 1. Create a session"
  const session = await createSession("My Campaign");
  // Doc: "GET /api/app/get_file_upload_url?filename=my-photo.jpg … { "url": …, "fields": { "key", "AWSAccessKeyId", "policy", "signature" } }"
  const ticket = await call("GET", `${DASHBOARD}/api/app/get_file_upload_url?filename=product.png`);
  expect(ticket.status).toBe(200);
  expect(Object.keys(ticket.body.fields).sort()).toEqual(["AWSAccessKeyId", "key", "policy", "signature"]);
  expect(ticket.body.url.startsWith("http://127.0.0.1")).toBe(true);
  // Doc: "Step 2 — Upload Directly to S3" (no API key: the signed fields are the credential)
  const uploaded = await uploadToS3(ticket.body);
  expect(uploaded.status).toBe(204);
  // Doc: "The final CDN URL is: https://cdn.muapi.ai/<fields.key>"; "Step 3 — Register with Session"
  const cdnUrl = `https://cdn.muapi.ai/${ticket.body.fields.key}`;
  const asset = await call("POST", `/sessions/${session.id}/assets`, { url: cdnUrl, kind: "image" });
  expect(asset.status).toBe(200);
  // Doc: // => { asset_label: "asset_1", ... } — and url, the AssetObject's "Public CDN URL": the echoed
  // url serves the file (not the CDN name, which resolves nowhere here).
  expect(asset.body).toEqual({ asset_label: "asset_1", kind: "image", url: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+\/downloads\/file_/), source_tool: "upload" });
  const echoed = await fetch(asset.body.url);
  expect(echoed.status).toBe(200);
  expect([...new Uint8Array(await echoed.arrayBuffer())]).toEqual([...PNG]);
  // The registered asset is the stored file: its URL serves the uploaded bytes.
  const listed = await call("GET", `/sessions/${session.id}/assets`);
  expect(listed.body[0]).toMatchObject({ asset_label: "asset_1", kind: "image", source_tool: "upload", model: null, prompt: null });
  const bytes = new Uint8Array(await (await fetch(listed.body[0].url)).arrayBuffer());
  expect([...bytes]).toEqual([...PNG]);

  // Doc: "// 3. Send a message (referencing the uploaded asset)" → { job_id: "job_xyz", status: "pending" }
  const job = await call("POST", `/sessions/${session.id}/chat`, {
    message: "register https://example.com/cat.png as an asset", model: "gpt-5-mini",
    canvas_state: { viewport: { x: 0, y: 0, scale: 1 }, selected: "asset_1", nodes: [{ asset_id: "asset_1", kind: "image", x: 100, y: 200, w: 400, h: 400 }] },
  });
  expect(job.status).toBe(200);
  expect(job.body).toEqual({ job_id: job.body.job_id, status: "pending" });
  // Doc: "if (ev.type === "plan_propose") { … fetch(`${API}/jobs/${job.job_id}/approve`, { method: "POST", headers }) }"
  const approvals: any[] = [];
  const { events, last } = await pollJob(job.body.job_id, async (ev) => {
    if (ev.type === "plan_propose") approvals.push(await call("POST", `/jobs/${job.body.job_id}/approve`));
  });
  // Doc: "POST /jobs/{job_id}/approve → {"status": "approved"}"
  expect(approvals.map((a) => [a.status, a.body])).toEqual([[200, { status: "approved" }]]);
  // Doc: events: {id, type, payload, job_id, created_at}; ids rise ("Return only events with id > since")
  for (const ev of events) expect(ev.job_id).toBe(job.body.job_id);
  // The doc's event types in the order its flow gives them: the agent's text, the plan, the tool call and its result, the closing text.
  const order = events.map((e) => e.type).filter((type, i, all) => type !== all[i - 1]);
  // (The info between the plan and the tool says it was approved.)
  expect(order).toEqual(["text", "plan_propose", "info", "tool_call", "tool_result", "text"]);
  expect(events.map((e) => e.id)).toEqual([...events.map((e) => e.id)].sort((x, y) => x - y));
  // Doc: plan_propose "title: string, nodes: array, total_credits: number"
  const plan = events.find((e) => e.type === "plan_propose");
  expect(typeof plan.payload.title).toBe("string");
  expect(plan.payload.nodes[0]).toMatchObject({ tool: "register_asset" });
  expect(typeof plan.payload.total_credits).toBe("number");
  // Doc: tool_call "name: string, args: object"
  expect(events.find((e) => e.type === "tool_call").payload).toMatchObject({ name: "register_asset", args: { url: "https://example.com/cat.png" } });
  // Doc: "if (ev.type === "tool_result" && ev.payload.asset) { console.log("Generated asset:", ev.payload.asset.url); }"
  const result = events.find((e) => e.type === "tool_result");
  expect(result.payload.name).toBe("register_asset");
  expect(result.payload.asset).toMatchObject({ asset_label: "asset_2", kind: "image", url: "https://example.com/cat.png" });
  // Doc: "if (ev.type === "text") { process.stdout.write(ev.payload.content); }"
  expect(events.filter((e) => e.type === "text").map((e) => e.payload.content).join("")).toContain("register_asset");
  // Doc: status … completed; approved "true if approved"; done "true if job has finished"
  expect(last).toMatchObject({ job_id: job.body.job_id, status: "completed", error: null, approved: true, approval_requested: false, done: true });

  // Doc: "// 5. Fetch final asset list" — "sorted by creation time (oldest first)"
  const assets = await call("GET", `/sessions/${session.id}/assets`);
  expect(assets.body.map((a: any) => [a.asset_label, a.source_tool])).toEqual([["asset_1", "upload"], ["asset_2", "register_asset"]]);
  const summary = (await call("GET", "/sessions")).body.find((s: any) => s.id === session.id);
  expect(summary.asset_count).toBe(2);

  // Doc: "GET /sessions/{session_id}/messages — Retrieve the full persisted chat history"
  const history = await call("GET", `/sessions/${session.id}/messages`);
  expect(history.status).toBe(200);
  expect(history.body.map((m: any) => m.role)).toEqual(["user", "assistant"]);
  expect(history.body[0].content).toBe("register https://example.com/cat.png as an asset");
  expect(history.body[1].events.map((e: any) => e.type)).toEqual(["tool_call", "tool_result"]);
  expect(history.body[1].events[1].asset).toMatchObject({ asset_label: "asset_2", kind: "image" });
  expect(new Date(history.body[1].timestamp).toISOString()).toBe(history.body[1].timestamp);
  // Doc: "GET /sessions/{session_id}/jobs — List the 20 most recent jobs"
  const jobs = await call("GET", `/sessions/${session.id}/jobs`);
  expect(jobs.body).toEqual([{ id: job.body.job_id, status: "completed", user_message: "register https://example.com/cat.png as an asset", error: null, created_at: expect.any(String), completed_at: expect.any(String) }]);

  // The issue: "a conversation started through one surface can be read through /v1".
  const v1 = api(server.url, server.apiKey);
  const v1Messages = await v1.get(`/v1/sessions/${session.id}/messages`);
  expect(v1Messages.body.data.map((m: any) => m.content)).toEqual(history.body.map((m: any) => m.content));
  expect((await v1.get(`/v1/jobs/${job.body.job_id}`)).body.status).toBe("completed");
});

test("Reject: the plan does not run, approved is false, and no asset is registered", async () => {
  const session = await createSession("Reject");
  const job = await call("POST", `/sessions/${session.id}/chat`, { message: "register https://example.com/dog.png as an asset" });
  // Doc: approval_requested "true if the agent is currently waiting for user confirmation"
  const waiting = await waitForApproval(job.body.job_id);
  expect(waiting).toMatchObject({ status: "processing", approved: null, done: false });
  // Doc: "POST /jobs/{job_id}/reject → {"status": "rejected"}" — "The agent will stop execution and report the rejection."
  const rejected = await call("POST", `/jobs/${job.body.job_id}/reject`);
  expect(rejected.status).toBe(200);
  expect(rejected.body).toEqual({ status: "rejected" });
  const { events, last } = await pollJob(job.body.job_id);
  expect(last.approved).toBe(false);
  expect(last.done).toBe(true);
  expect(typeof last.error).toBe("string");
  expect(events.some((e) => e.type === "tool_result")).toBe(false);
  expect(events.some((e) => e.type === "info" && /rejected/i.test(e.payload.content))).toBe(true);
  // Doc: "Use POST /jobs/{job_id}/reject to cancel without spending credits."
  expect((await call("GET", `/sessions/${session.id}/assets`)).body).toEqual([]);
  // Approving after the job ended is a bad request, in the doc's envelope.
  const late = await call("POST", `/jobs/${job.body.job_id}/approve`);
  expect(late.status).toBe(400);
  expect(typeof late.body.detail).toBe("string");
});

test("Cancel an in-progress job; a message sent while a job is in flight waits its turn", async () => {
  const session = await createSession("Busy");
  const first = await call("POST", `/sessions/${session.id}/chat`, { message: "register https://example.com/a.png as an asset" });
  await waitForApproval(first.body.job_id);
  // MUAPI enqueues every job: a second message is accepted and stays pending behind the first.
  const second = await call("POST", `/sessions/${session.id}/chat`, { message: "Hello again" });
  expect(second.status).toBe(200);
  expect(second.body.status).toBe("pending");
  const jobs = await call("GET", `/sessions/${session.id}/jobs`);
  // Doc: "Useful for detecting and resuming in-flight jobs after a page refresh." — newest first
  expect(jobs.body.map((j: any) => [j.id, j.status])).toEqual([[second.body.job_id, "pending"], [first.body.job_id, "processing"]]);
  // Doc: "POST /jobs/{job_id}/cancel → {"status": "cancelled"}"
  const cancelled = await call("POST", `/jobs/${first.body.job_id}/cancel`);
  expect(cancelled.status).toBe(200);
  expect(cancelled.body).toEqual({ status: "cancelled" });
  const ended = await pollJob(first.body.job_id);
  // Doc: "If done: true and status: "failed" in the poll response, check the error field"
  expect(ended.last).toMatchObject({ status: "failed", done: true });
  expect(ended.last.error).toContain("cancelled");
  // The queued message then runs.
  const next = await pollJob(second.body.job_id);
  expect(next.last.status).toBe("completed");
  expect(next.events.filter((e) => e.type === "text").map((e) => e.payload.content).join("")).toContain("Hello again");
});

test("A failed job: done with status failed, an error, and an error event", async () => {
  const session = await createSession("Failing");
  const job = await call("POST", `/sessions/${session.id}/chat`, { message: "[fail] make a video" });
  const { events, last } = await pollJob(job.body.job_id);
  // Doc: error "Error message (if status is failed)"; event type error "message: string"
  expect(last.status).toBe("failed");
  expect(typeof last.error).toBe("string");
  const error = events.find((e) => e.type === "error");
  expect(typeof error.payload.message).toBe("string");
});

test("Skills: GET /agent-skills, run-skill through approval, unknown skill 404, bad input 422", async () => {
  // Doc: "GET /agent-skills — List all available expert skill recipes loaded from agent/skills/*.skill.md."
  const skills = await call("GET", "/agent-skills");
  expect(skills.status).toBe(200);
  const media = skills.body.find((s: any) => s.name === "register-media");
  // Doc: { "name", "description", "inputs": ["person_image", "clothing_image"], "trigger_keywords": [...], "estimated_credits": 150 }
  // Ours declare no keywords or estimate (docs/compat.md): [] and 0, nothing else.
  expect(media).toEqual({ name: "register-media", description: expect.stringMatching(/\S/), inputs: ["urls", "purpose"], trigger_keywords: [], estimated_credits: 0 });

  const session = await createSession("Skills");
  // Doc: POST /sessions/{session_id}/run-skill {"skill_name", "inputs": {…}, "model": "gpt-5-mini"} → {"job_id", "status": "pending"}
  const run = await call("POST", `/sessions/${session.id}/run-skill`, { skill_name: "register-media", inputs: { urls: "https://example.com/dog.png" }, model: "gpt-5-mini" });
  expect(run.status).toBe(200);
  expect(run.body.status).toBe("pending");
  const { events, last } = await pollJob(run.body.job_id, async (ev) => {
    if (ev.type === "plan_propose") await call("POST", `/jobs/${run.body.job_id}/approve`);
  });
  expect(last.status).toBe("completed");
  expect(events.find((e) => e.type === "tool_result").payload.asset).toMatchObject({ asset_label: "asset_1", url: "https://example.com/dog.png" });
  // Doc: user messages carry "skill_name": "action-figure-generator"; the job list's "user_message" is
  // the same turn's message: both read the same text.
  const history = await call("GET", `/sessions/${session.id}/messages`);
  expect(history.body[0]).toMatchObject({ role: "user", skill_name: "register-media", content: "Run skill register-media" });
  const jobs = await call("GET", `/sessions/${session.id}/jobs`);
  expect(jobs.body[0].user_message).toBe(history.body[0].content);

  // Doc: "404 Session, job, asset, or skill not found" — any name no skill has, slug-shaped or not.
  for (const name of ["fashion-try-on", "Fashion-Try-On", "../etc", "", "a".repeat(5000)]) {
    const unknown = await call("POST", `/sessions/${session.id}/run-skill`, { skill_name: name, inputs: {} });
    expect([name.slice(0, 20), unknown.status, unknown.body.detail]).toEqual([name.slice(0, 20), 404, "Skill not found"]);
  }
  // Doc: "422 Invalid field value": a skill_name that is not a string.
  expect((await call("POST", `/sessions/${session.id}/run-skill`, { skill_name: 42 })).status).toBe(422);
  // A required input missing: "422 Invalid field value"
  const missing = await call("POST", `/sessions/${session.id}/run-skill`, { skill_name: "register-media", inputs: {} });
  expect(missing.status).toBe(422);
  expect(missing.body.detail).toContain("urls");
});

test("PATCH /messages saves the client's history without losing the session's own", async () => {
  const session = await createSession("History");
  const job = await call("POST", `/sessions/${session.id}/chat`, { message: "Generate a 3D action figure of me in a doctor outfit" });
  await pollJob(job.body.job_id);
  const before = await call("GET", `/sessions/${session.id}/messages`);
  expect(before.body).toHaveLength(2);
  // Doc: PATCH /sessions/{session_id}/messages {"messages": [...]} → {"status": "saved", "count": 4}
  const snapshot = [
    { role: "user", content: "Generate a 3D action figure of me in a doctor outfit", timestamp: before.body[0].timestamp },
    { role: "assistant", content: before.body[1].content, events: [], timestamp: before.body[1].timestamp },
  ];
  const saved = await call("PATCH", `/sessions/${session.id}/messages`, { messages: snapshot });
  expect(saved.status).toBe(200);
  expect(saved.body).toEqual({ status: "saved", count: 2 });
  expect((await call("GET", `/sessions/${session.id}/messages`)).body).toEqual(before.body);
  // What the client saved is on record in the session's history, for auditors: its count and the
  // digest of its canonical JSON, not a second copy.
  const v1Events = await api(server.url, server.apiKey).get(`/v1/sessions/${session.id}/events`);
  expect(v1Events.body.events.find((e: any) => e.type === "history.client_saved").payload).toEqual(digestOf(snapshot));
  // A body without messages is an invalid field value.
  const bad = await call("PATCH", `/sessions/${session.id}/messages`, { messages: "all of them" });
  expect(bad.status).toBe(422);
});

test("Cursor pagination: since and limit page the events with no gap and no duplicate", async () => {
  const session = await createSession("Paging");
  const job = await call("POST", `/sessions/${session.id}/chat`, { message: "register https://example.com/page.png as an asset" });
  const all = await pollJob(job.body.job_id, async (ev) => {
    if (ev.type === "plan_propose") await call("POST", `/jobs/${job.body.job_id}/approve`);
  });
  // text, plan_propose, the approval, tool_call, tool_result, text: more than one page of one.
  expect(all.events.length).toBeGreaterThan(4);
  // Doc: limit "Max events to return per call (max 1000)"; since "Return only events with id > since"
  let cursor = 0;
  const paged: any[] = [];
  for (let i = 0; i < 500; i++) {
    const page = await call("GET", `/jobs/${job.body.job_id}/events?since=${cursor}&limit=1`);
    expect(page.body.events.length).toBeLessThanOrEqual(1);
    paged.push(...page.body.events);
    for (const ev of page.body.events) expect(ev.id).toBeGreaterThan(cursor);
    if (page.body.cursor === cursor) break;
    cursor = page.body.cursor;
  }
  expect(paged.map((e) => e.id)).toEqual(all.events.map((e) => e.id));
  const after = await call("GET", `/jobs/${job.body.job_id}/events?since=${cursor}`);
  expect(after.body).toMatchObject({ events: [], cursor, done: true });
  // Out of range: an invalid field value.
  expect((await call("GET", `/jobs/${job.body.job_id}/events?limit=1001`)).status).toBe(422);
  expect((await call("GET", `/jobs/${job.body.job_id}/events?since=-1`)).status).toBe(422);
});

test("Errors: {\"detail\": …} with the doc's statuses; another app's key and another user reach nothing; rate-limit headers", async () => {
  const session = await createSession("Errors");
  // Doc: "401 Missing or invalid auth token"
  const noKey = await call("GET", "/sessions", undefined, null);
  expect(noKey.status).toBe(401);
  expect(typeof noKey.body.detail).toBe("string");
  expect((await call("GET", "/sessions", undefined, "not-a-key")).status).toBe(401);
  // Doc: "422 Invalid field value (e.g., unsupported kind)"
  const kind = await call("POST", `/sessions/${session.id}/assets`, { url: "https://example.com/a.pdf", kind: "document" });
  expect(kind.status).toBe(422);
  expect(typeof kind.body.detail).toBe("string");
  const noUrl = await call("POST", `/sessions/${session.id}/assets`, { kind: "image" });
  expect(noUrl.status).toBe(422);
  // Doc: "400 Bad request"
  expect((await call("POST", "/sessions", "{not json")).status).toBe(400);
  // Doc: {"detail": "Session not found"}
  expect((await call("GET", "/sessions/sess_nope/jobs")).body).toMatchObject({ detail: "Session not found" });
  const noJob = await call("GET", "/jobs/job_nope/events");
  expect(noJob.status).toBe(404);
  expect(noJob.body.detail).toBe("Job not found");
  // An upload URL naming a file this server never issued (404, the doc's "asset … not found"), or one
  // whose file never arrived (422).
  const unknownUpload = await call("POST", `/sessions/${session.id}/assets`, { url: "https://cdn.muapi.ai/uploads/file_0123456789abcdef/x.png", kind: "image" });
  expect(unknownUpload.status).toBe(404);
  expect(typeof unknownUpload.body.detail).toBe("string");
  const ticket = await call("GET", `${DASHBOARD}/api/app/get_file_upload_url?filename=late.png`);
  const pending = await call("POST", `/sessions/${session.id}/assets`, { url: `https://cdn.muapi.ai/${ticket.body.fields.key}`, kind: "image" });
  expect(pending.status).toBe(422);
  // A tampered signature is refused; a used upload cannot be used again.
  const forged = await uploadToS3(ticket.body, PNG, { ...ticket.body.fields, signature: "0".repeat(64) });
  expect(forged.status).toBe(403);
  expect((await uploadToS3(ticket.body)).status).toBe(204);
  const again = await uploadToS3(ticket.body);
  expect(again.status).toBe(400);
  expect(typeof (await again.json() as any).detail).toBe("string");
  const job = await call("POST", `/sessions/${session.id}/chat`, { message: "hi" });

  // Another app's key: its sessions, jobs and files are as absent as ones that never existed.
  const root = api(server.url, "");
  const bearer = { authorization: `Bearer ${ROOT}` };
  const other = (await root.post("/v1/apps", { name: "Other studio" }, bearer)).body;
  const otherKey = (await root.post(`/v1/apps/${other.id}/keys`, { name: "muapi" }, bearer)).body.key as string;
  expect((await call("GET", `/sessions/${session.id}/messages`, undefined, otherKey)).status).toBe(404);
  expect((await call("PATCH", `/sessions/${session.id}`, { name: "mine now" }, otherKey)).status).toBe(404);
  expect((await call("GET", `/jobs/${job.body.job_id}/events`, undefined, otherKey)).status).toBe(404);
  expect((await call("POST", `/jobs/${job.body.job_id}/cancel`, undefined, otherKey)).status).toBe(404);
  expect((await call("GET", "/sessions", undefined, otherKey)).body.map((s: any) => s.id)).not.toContain(session.id);
  const otherSession = await createSession("Theirs", otherKey);
  const theft = await call("POST", `/sessions/${otherSession.id}/assets`, { url: `https://cdn.muapi.ai/${ticket.body.fields.key}`, kind: "image" }, otherKey);
  expect(theft.status).toBe(404);

  // An end user (a user JWT, as the doc's "User JWT"): another user's session is forbidden.
  const token = (await api(server.url, server.apiKey).post("/v1/end-user-tokens", { user_id: "usr-muapi-1" })).body.token as string;
  const own = await createSession("Mine", token);
  expect((await call("GET", "/sessions", undefined, token)).body.map((s: any) => s.id)).toEqual([own.id]);
  // Doc: "403 Forbidden (accessing another user's resource)"
  const forbidden = await call("GET", `/sessions/${session.id}/messages`, undefined, token);
  expect(forbidden.status).toBe(403);
  expect(typeof forbidden.body.detail).toBe("string");
  expect((await call("GET", `/jobs/${job.body.job_id}/events`, undefined, token)).status).toBe(403);

  // Rate limits: the headers on every answer.
  const ok = await call("GET", "/agent-skills");
  expect(Number(ok.headers.get("ratelimit-limit"))).toBeGreaterThan(0);
  expect(ok.headers.get("ratelimit-remaining")).not.toBeNull();
  await pollJob(job.body.job_id);
});

test("OpenAPI: the surface is documented under its own tag", async () => {
  const doc = await (await fetch(`${server.url}/docs/json`)).json() as any;
  for (const [path, method] of [
    ["/compat/muapi/api/v1/creative-agent/sessions/{session_id}/chat", "post"], ["/compat/muapi/api/v1/creative-agent/jobs/{job_id}/events", "get"],
    ["/compat/muapi/api/app/get_file_upload_url", "get"], ["/compat/muapi/uploads", "post"],
  ] as const) {
    expect(doc.paths[path][method].tags).toEqual(["MUAPI (compat)"]);
  }
  expect(doc.tags.map((t: any) => t.name)).toContain("MUAPI (compat)");
});

/** Asks for a signed upload, sends `bytes` to it, and returns the file's CDN URL and id. */
async function uploaded(filename: string, bytes: Uint8Array = PNG, base = DASHBOARD, key = server.apiKey) {
  const ticket = await call("GET", `${base}/api/app/get_file_upload_url?filename=${filename}`, undefined, key);
  expect(ticket.status).toBe(200);
  expect((await uploadToS3(ticket.body, bytes)).status).toBe(204);
  return { cdnUrl: `https://cdn.muapi.ai/${ticket.body.fields.key}`, fileId: ticket.body.fields.key.split("/")[1] as string };
}

test("Video and audio upload and register when the operator allows them; the allow-list still gates them", async () => {
  // Doc: "Assets are any media file (image, video, or audio) attached to a session — either uploaded by the user or generated by the agent."
  const media = await startTestServer({ FILE_CONTENT_TYPES: "image/*,video/*,audio/*" });
  try {
    const base = `${media.url}/compat/muapi`;
    const session = (await call("POST", `${base}/api/v1/creative-agent/sessions`, { name: "Media" }, media.apiKey)).body;
    const files = [["clip.mp4", "video", "video/mp4"], ["clip.mov", "video", "video/quicktime"], ["clip.webm", "video", "video/webm"],
      ["song.mp3", "audio", "audio/mpeg"], ["song.wav", "audio", "audio/wav"], ["song.m4a", "audio", "audio/mp4"], ["song.ogg", "audio", "audio/ogg"]] as const;
    for (const [name, kind, type] of files) {
      const bytes = new TextEncoder().encode(`${name} bytes`);
      const { cdnUrl } = await uploaded(name, bytes, base, media.apiKey);
      const asset = await call("POST", `${base}/api/v1/creative-agent/sessions/${session.id}/assets`, { url: cdnUrl, kind }, media.apiKey);
      expect([name, asset.status, asset.body.kind]).toEqual([name, 200, kind]);
      const served = await fetch(asset.body.url);
      expect([name, served.headers.get("content-type"), await served.text()]).toEqual([name, type, `${name} bytes`]);
    }
    const listed = await call("GET", `${base}/api/v1/creative-agent/sessions/${session.id}/assets`, undefined, media.apiKey);
    expect(listed.body.map((a: any) => a.kind)).toEqual(files.map(([, kind]) => kind));
  } finally {
    await media.stop();
  }
  // This server keeps the default allow-list (no video): "422 Invalid field value".
  const refused = await call("GET", `${DASHBOARD}/api/app/get_file_upload_url?filename=clip.mp4`);
  expect(refused.status).toBe(422);
  expect(refused.body.detail).toContain("video/mp4");
});

test("Deleting a session deletes the uploads registered in it; an upload belongs to the first session that registers it", async () => {
  const owner = await createSession("Owner");
  const other = await createSession("Other");
  const { cdnUrl, fileId } = await uploaded("owned.png");
  expect((await call("POST", `/sessions/${owner.id}/assets`, { url: cdnUrl, kind: "image" })).body.asset_label).toBe("asset_1");
  // Registered again in the same session: another label for the same file.
  expect((await call("POST", `/sessions/${owner.id}/assets`, { url: cdnUrl, kind: "image" })).body.asset_label).toBe("asset_2");
  // In another session: refused (one session's delete would take the other's asset), nothing registered.
  const elsewhere = await call("POST", `/sessions/${other.id}/assets`, { url: cdnUrl, kind: "image" });
  expect(elsewhere.status).toBe(400);
  expect(elsewhere.body.code).toBe("file_in_another_session");
  expect((await call("GET", `/sessions/${other.id}/assets`)).body).toEqual([]);
  const signed = (await call("GET", `/sessions/${owner.id}/assets`)).body[0].url;
  expect((await fetch(signed)).status).toBe(200);

  // Doc: "DELETE /sessions/{session_id} — Permanently delete a session and all its associated assets, messages, and jobs."
  expect((await call("DELETE", `/sessions/${owner.id}`)).body).toEqual({ status: "deleted" });
  expect((await fetch(signed)).status).toBe(404);
  expect((await api(server.url, server.apiKey).get(`/v1/files/${fileId}`)).status).toBe(404);
  expect((await call("POST", `/sessions/${other.id}/assets`, { url: cdnUrl, kind: "image" })).status).toBe(404);
});

test("An asset's url serves its file while the file is there, and is null once it is gone", async () => {
  const session = await createSession("Lifetime");
  const { cdnUrl, fileId } = await uploaded("gone.png");
  const kept = await uploaded("kept.png");
  await call("POST", `/sessions/${session.id}/assets`, { url: cdnUrl, kind: "image" });
  await call("POST", `/sessions/${session.id}/assets`, { url: kept.cdnUrl, kind: "image" });
  await call("POST", `/sessions/${session.id}/assets`, { url: "https://example.com/elsewhere.png", kind: "image" });
  // The file goes (through /v1): the asset stays listed, with no URL rather than one that 404s.
  expect((await api(server.url, server.apiKey).del(`/v1/files/${fileId}`)).status).toBeLessThan(300);
  const assets = (await call("GET", `/sessions/${session.id}/assets`)).body;
  expect(assets.map((a: any) => a.asset_label)).toEqual(["asset_1", "asset_2", "asset_3"]);
  // Doc: AssetObject "url | string | Public CDN URL" — one that serves the file, or none.
  expect(assets[0].url).toBeNull();
  expect((await fetch(assets[1].url)).status).toBe(200);
  expect(assets[2].url).toBe("https://example.com/elsewhere.png");
});

test("An asset's kind must be the stored file's: a PNG is not a video", async () => {
  const session = await createSession("Kinds");
  const { cdnUrl } = await uploaded("still.png");
  // Doc: "422 Invalid field value (e.g., unsupported kind)"
  for (const kind of ["video", "audio"]) {
    const wrong = await call("POST", `/sessions/${session.id}/assets`, { url: cdnUrl, kind });
    expect([kind, wrong.status, wrong.body.param]).toEqual([kind, 422, "kind"]);
    expect(wrong.body.detail).toContain("image/png");
  }
  expect((await call("GET", `/sessions/${session.id}/assets`)).body).toEqual([]);
  expect((await call("POST", `/sessions/${session.id}/assets`, { url: cdnUrl, kind: "image" })).status).toBe(200);
});

test("A client's saved history and snapshots are recorded by digest, whatever their size", async () => {
  const session = await createSession("Big history");
  // Doc: "PATCH /sessions/{session_id}/messages — Persist/overwrite the full chat history … after each completed turn"
  // → {"status": "saved", "count": 4}: a long history (here ~1.5 MB, past one event's size) is saved like a short one.
  const big = Array.from({ length: 300 }, (_, i) => ({ role: i % 2 ? "assistant" : "user", content: `${i} ${"x".repeat(5000)}`, timestamp: "2026-05-08T07:10:00Z" }));
  for (let i = 0; i < 3; i++) {
    const saved = await call("PATCH", `/sessions/${session.id}/messages`, { messages: big });
    expect([saved.status, saved.body]).toEqual([200, { status: "saved", count: 300 }]);
  }
  // Doc: messages_snapshot "Full chat history prior to this turn (for context). Persisted atomically." — with the message.
  const snapshot = [{ role: "user", content: "earlier", timestamp: "2026-05-08T07:00:00Z" }];
  const job = await call("POST", `/sessions/${session.id}/chat`, { message: "Hello", messages_snapshot: snapshot });
  await pollJob(job.body.job_id);
  const events = (await api(server.url, server.apiKey).get(`/v1/sessions/${session.id}/events`)).body.events;
  const saves = events.filter((e: any) => e.type === "history.client_saved").map((e: any) => e.payload);
  expect(saves).toEqual([digestOf(big), digestOf(big), digestOf(big)]);
  expect(saves[0].bytes).toBeGreaterThan(1_500_000);
  const sent = events.find((e: any) => e.type === "message.sent");
  expect(sent.payload.client_data).toEqual({ client_history: digestOf(snapshot) });
  // The session's own history is unchanged by either.
  expect((await call("GET", `/sessions/${session.id}/messages`)).body.map((m: any) => m.content.slice(0, 5))).toEqual(["Hello", "Sandb"]);
});

test("GET /jobs/{id}/events: limit defaults to 200", async () => {
  const session = await createSession("Long job");
  // A hundred and twenty registrations: each a tool_call and a tool_result, with the text around them: more than 200 events.
  const urls = Array.from({ length: 120 }, (_, i) => `https://example.com/${i}.png`);
  const job = await call("POST", `/sessions/${session.id}/chat`, { message: `register ${urls.join(" ")} as assets` });
  const all = await pollJob(job.body.job_id, async (ev) => {
    if (ev.type === "plan_propose") await call("POST", `/jobs/${job.body.job_id}/approve`);
  });
  expect(all.last.status).toBe("completed");
  expect(all.last.cursor).toBeGreaterThan(200);
  // Doc: limit "integer | 200 | Max events to return per call (max 1000)"; ours count our events (cursor ids).
  const first = await call("GET", `/jobs/${job.body.job_id}/events?since=0`);
  expect(first.body).toMatchObject({ cursor: 200, done: false });
  expect(first.body.events.at(-1).id).toBeLessThanOrEqual(200);
  expect(first.body).toEqual((await call("GET", `/jobs/${job.body.job_id}/events?since=0&limit=200`)).body);
  const rest = await call("GET", `/jobs/${job.body.job_id}/events?since=200`);
  expect(rest.body.events[0].id).toBeGreaterThan(200);
  expect([...first.body.events, ...rest.body.events].map((e: any) => e.id)).toEqual(all.events.map((e: any) => e.id).slice(0, first.body.events.length + rest.body.events.length));
});

test("Uploads: a read-only key gets no upload URL; an end user's upload is only that user's; a file named by our URL is not taken", async () => {
  const root = api(server.url, "");
  const bearer = { authorization: `Bearer ${ROOT}` };
  // Asking for an upload URL authorizes a write, though it is a GET.
  const readOnly = (await root.post(`/v1/apps/${DEFAULT_APP_ID}/keys`, { name: "ro", scopes: ["data:read"] }, bearer)).body.key as string;
  expect((await call("GET", `${DASHBOARD}/api/app/get_file_upload_url?filename=a.png`, undefined, readOnly)).status).toBe(403);

  // Doc: "403 Forbidden (accessing another user's resource)": an end user's upload is not another session owner's to take.
  const ann = (await api(server.url, server.apiKey).post("/v1/end-user-tokens", { user_id: "ann" })).body.token as string;
  const annUpload = await uploaded("ann.png", PNG, DASHBOARD, ann);
  const keysSession = await createSession("Key's");
  const taken = await call("POST", `/sessions/${keysSession.id}/assets`, { url: annUpload.cdnUrl, kind: "image" });
  expect(taken.status).toBe(400);
  expect(taken.body.code).toBe("file_of_another_user");
  const annSession = await createSession("Ann's", ann);
  expect((await call("POST", `/sessions/${annSession.id}/assets`, { url: annUpload.cdnUrl, kind: "image" }, ann)).status).toBe(200);

  // A file named by one of our own URLs is registered by reference: the session's delete leaves it.
  const stored = await uploaded("kept.png");
  const byReference = await createSession("By reference");
  const asset = await call("POST", `/sessions/${byReference.id}/assets`, { url: `${server.url}/v1/files/${stored.fileId}`, kind: "image" });
  expect(asset.status).toBe(200);
  expect((await call("DELETE", `/sessions/${byReference.id}`)).status).toBe(200);
  expect((await api(server.url, server.apiKey).get(`/v1/files/${stored.fileId}`)).status).toBe(200);
});

test("is_test keys: a test-mode key runs the agent end to end and spends no credits; a live key's run in a priced app does", async () => {
  // Doc: "[!IMPORTANT] API keys with is_test: true run the agent end-to-end without billing."
  // Doc: "Sandbox API keys (is_test: true) do not consume credits."
  const root = api(server.url, "");
  const bearer = { authorization: `Bearer ${ROOT}` };
  const app = await root.post("/v1/apps", { name: "MUAPI billing" }, bearer);
  // One credit per token on every model, the server's sandbox one included.
  expect((await root.put(`/v1/apps/${app.body.id}/prices`, { models: { "*": { input: 1_000_000, output: 1_000_000 } } }, bearer)).status).toBe(200);
  const issue = async (body: Record<string, unknown>) => (await root.post(`/v1/apps/${app.body.id}/keys`, { name: "muapi", ...body }, bearer)).body.key as string;
  const live = await issue({});
  const sandbox = await issue({ mode: "test" });

  const run = async (key: string) => {
    const session = await createSession("Billing check", key);
    const chat = await call("POST", `/sessions/${session.id}/chat`, { message: "Describe a product showcase video" }, key);
    expect(chat.status).toBe(200);
    const { events, last } = await pollJob(chat.body.job_id, undefined, key);
    return { session, events, last };
  };
  const tested = await run(sandbox);
  // End to end: the job completed with the agent's text, and the reply is in the history.
  expect(tested.last.status).toBe("completed");
  expect(tested.events.filter((e) => e.type === "text").map((e) => e.payload.content).join("")).toContain("Describe a product showcase video");
  const history = await call("GET", `/sessions/${tested.session.id}/messages`, undefined, sandbox);
  expect(history.body.map((m: any) => m.role)).toEqual(["user", "assistant"]);
  // Without billing: the session spent nothing, and the test key's usage shows the job but no credits.
  const listed = (await call("GET", "/sessions", undefined, sandbox)).body.find((x: any) => x.id === tested.session.id);
  expect(listed.credits_spent).toBe(0);
  const testUsage = await waitForUsage(sandbox, (b) => b.totals.jobs === 1);
  expect(testUsage.totals).toMatchObject({ jobs: 1, credits: 0 });
  expect(testUsage.totals.prompt_tokens).toBeGreaterThan(0);

  // The same run on a live key of the same app is billed: so the test key's zero is not the price table's.
  const billed = await run(live);
  expect(billed.last.status).toBe("completed");
  let spent = 0;
  for (let i = 0; i < 100 && spent === 0; i++) {
    spent = (await call("GET", "/sessions", undefined, live)).body.find((x: any) => x.id === billed.session.id).credits_spent;
    if (spent === 0) await Bun.sleep(20);
  }
  expect(spent).toBeGreaterThan(0);
  const liveUsage = await waitForUsage(live, (b) => b.totals.jobs === 1);
  expect(liveUsage.totals.credits).toBe(spent);
  // Test data stays apart: the live key does not list the test key's session.
  expect((await call("GET", "/sessions", undefined, live)).body.map((x: any) => x.id)).not.toContain(tested.session.id);
});

/** `/v1/usage` for a key, once `ready` holds (usage is read from a projection). */
async function waitForUsage(key: string, ready: (body: any) => boolean) {
  for (let i = 0; i < 200; i++) {
    const r = await api(server.url, key).get("/v1/usage");
    if (r.status === 200 && ready(r.body)) return r.body;
    await Bun.sleep(20);
  }
  throw new Error("usage never showed the job");
}

test("canvas_op: a tool's canvas operation reaches the job's events as the doc's canvas_op", async () => {
  // Doc: "canvas_op | Canvas spatial operation (move/arrange) | op: string, args: object"
  // Our built-in tools and the sandbox model move nothing on a canvas: a canvas_op comes from an agent's
  // HTTP tool that streams one (an NDJSON line {"type": "canvas_op", "op", "args"} before its result).
  const tool = Bun.serve({
    port: 0, hostname: "127.0.0.1",
    fetch: () => new Response([
      { type: "canvas_op", op: "arrange", args: { layout: "grid", assets: ["asset_1", "asset_2"] } },
      { type: "result", result: { arranged: 2 } },
    ].map((l) => `${JSON.stringify(l)}\n`).join(""), { headers: { "content-type": "application/x-ndjson" } }),
  });
  try {
    const agent = await api(server.url, server.apiKey).post("/v1/agents", {
      name: "Canvas arranger", approval: "never",
      tools: [{ type: "http", name: "arrange_canvas", description: "Arranges the canvas", url: `http://127.0.0.1:${tool.port}/arrange`, parameters: { type: "object" } }],
    });
    expect(agent.status).toBe(201);
    // A key limited to the agent: its sessions are that agent's.
    const key = (await api(server.url, "").post(`/v1/apps/${DEFAULT_APP_ID}/keys`, { name: "canvas", agent_ids: [agent.body.id] }, { authorization: `Bearer ${ROOT}` })).body.key as string;
    const session = await createSession("Canvas", key);
    const chat = await call("POST", `/sessions/${session.id}/chat`, { message: 'call arrange_canvas {"layout": "grid"}' }, key);
    expect(chat.status).toBe(200);
    const { events, last } = await pollJob(chat.body.job_id, undefined, key);
    expect(last.status).toBe("completed");
    const types = events.map((e) => e.type);
    expect(events.filter((e) => e.type === "canvas_op").map((e) => e.payload)).toEqual([{ op: "arrange", args: { layout: "grid", assets: ["asset_1", "asset_2"] } }]);
    // Between the tool's call and its result, as the tool streamed it.
    expect(types.indexOf("tool_call")).toBeLessThan(types.indexOf("canvas_op"));
    expect(types.indexOf("canvas_op")).toBeLessThan(types.indexOf("tool_result"));
  } finally {
    tool.stop(true);
  }
});
