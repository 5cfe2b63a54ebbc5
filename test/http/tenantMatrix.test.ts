/**
 * The cross-tenant matrix (issue 8, "Isolation must be proven, not assumed").
 *
 * Every data-plane route is taken from the server's own OpenAPI document (`GET /docs/json`: every path
 * under /v1 except the management plane, /v1/apps… and /v1/admin…), so a route added later is in the matrix without
 * anyone listing it. Each (route, method) is called as each caller below, with the path's ids filled
 * by name from a "victim" app's fixtures (its session, job, run, agent). Every cell's status (and error
 * code) is asserted, and no answer to a caller other than the victim's own live key or its user's token
 * may carry one of the victim's ids or content strings (session name, message text, agent prompt, run
 * input, asset URL, key ids) that the caller did not send itself.
 *
 * | caller           | expected                                                                          |
 * | ---------------- | --------------------------------------------------------------------------------- |
 * | owner            | the victim app's live key (every scope, audit:read too): allowed                  |
 * | testKey          | the victim app's test key: no live data (404 by id, lists show none)              |
 * | otherApp         | another app's live key: no access (404 by id, lists show none)                    |
 * | rightUser        | an end-user token for the victim's user, minted by the owner key: allowed         |
 * | otherUser        | an end-user token for another user of the same app: 403 permission_denied         |
 * | revoked          | a revoked key of the victim app: 401 invalid_api_key                              |
 * | expiredToken     | an expired end-user token for the victim's user: 401 invalid_token                |
 * | suspended        | a key of a suspended app: 403 app_suspended                                       |
 * | readOnly         | a data:read key of the victim app: 403 insufficient_scope on every write          |
 * | otherAgentOnly   | a victim-app key limited to another agent: 403 agent_not_allowed on the victim's  |
 *
 * Exceptions, decided here on purpose (see `expected` below):
 * - Routes that create something without naming an existing resource (POST /v1/agents, POST
 *   /v1/end-user-tokens) act in the caller's own partition: for a caller that may use them they are 2xx
 *   there, and their answers must still carry nothing of the victim's.
 * - Agents belong to the app, not to a user: an end-user token of the app (any user) reads them, and
 *   never manages them (403 insufficient_scope, as docs/security.md and the end-user token route say).
 * - Skills (/v1/skills…) belong to the app too, and to no agent: any user's token and a key limited to
 *   another agent read them (a key with agents:manage also saves and deletes them); only the app's own
 *   skills are fixtures, and another app or the test partition sees none of them.
 * - Collection routes fill their `user_id` (query or body) with the victim's user, so "another user"
 *   is asked for the victim's user's data and must be refused, not shown an empty list.
 * - The read-only key is the victim app's own key with data:read: its reads are allowed (2xx, the
 *   victim's data, not a leak); its writes are 403 insufficient_scope.
 * - Authentication, suspension and scope are checked before body validation (docs/api.md: "The API key
 *   is checked before anything else"), so no refused caller may see a 400: none is tolerated.
 * - An end user's credential routes (/v1/users/{user_id}/credentials/{provider}) name a user, not a
 *   resource of the victim's: a test key or another app reaches that user id in its own partition (2xx,
 *   leak-checked), a key limited to another agent is not concerned (they name no agent), and another
 *   user is refused (403 permission_denied). Their answers are a status holding nothing of the victim's
 *   fixtures, so the control below ("the victim's own reads show its data") does not apply to them.
 * - Erasing a user (DELETE /v1/users/{user_id}?erase=true) names a user of the caller's own partition:
 *   it is asked for a user with no data (the victim's user would lose the fixtures every other cell
 *   reads), so the owner, a test key and another app are allowed (each erases in its own partition,
 *   leak-checked); a credential acting as another user (the victim's token included: the user named is
 *   not its own) and a key limited to an agent are refused (403 permission_denied: an erasure covers
 *   every agent's data).
 * - The usage report (GET /v1/usage) is asked by agent, for the victim's user: another user is refused;
 *   a test key, another app and a key limited to another agent see reports that hold none of it. The
 *   pools' status (GET /v1/usage/limits) holds no resource at all: it is judged by status and leaks only.
 * - Audit reads (/v1/audit…) need audit:read, which only keys acting for a whole app hold: the owner
 *   reads its app's events; a test key or another app's key (both with audit:read) finds no victim
 *   stream or session by id (404) and sees only its own partition in `$all` (its own key id there is
 *   not a leak: it is the caller's); the read-only key, end users' tokens and the key limited to
 *   another agent are 403 insufficient_scope.
 * - "Allowed" is a 2xx, or one of the documented 409s that say nothing about access
 *   (job_not_awaiting_approval, job_finished, session_busy).
 *
 * State-changing routes (DELETE, approve, reject, cancel) run after every other route; for callers that
 * are allowed they run on fresh fixtures of the victim (a new agent, and a session of the victim's user
 * whose job awaits approval), so the victim's main fixtures stay intact for every other cell. SSE routes
 * (…/stream) are judged by status and headers only; their body is cancelled.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { EndUserTokens } from "../../src/auth/endUserTokens.ts";
import { newResourceId } from "../../src/core/ids.ts";
import { keyHash, keyPrefix, newApiKey } from "../../src/domain/app/keys.ts";
import { api, type Api } from "../support/api.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

type CallerName =
  | "owner" | "testKey" | "otherApp" | "rightUser" | "otherUser" | "revoked" | "expiredToken" | "suspended" | "readOnly" | "otherAgentOnly";
const CALLERS: CallerName[] = ["owner", "testKey", "otherApp", "rightUser", "otherUser", "revoked", "expiredToken", "suspended", "readOnly", "otherAgentOnly"];
/** Callers that are the victim itself: their answers may show the victim's data. */
const VICTIM_SELF = new Set<CallerName>(["owner", "rightUser"]);

interface Route { method: string; path: string; op: any }
interface Fixtures { session_id: string; job_id: string; run_id: string; agent_id: string; memory_id: string; file_id: string }

const VICTIM_APP = "app_matrix_victim";
const OTHER_APP = "app_matrix_other";
const SUSPENDED_APP = "app_matrix_suspended";
const VICTIM_USER = "victim-user-7f3a";
const OTHER_USER = "other-user-2b9c";
const CONTENT = {
  fileName: "victim-file-name-tq38.txt",
  fileText: "victim file text vb19",
  sessionName: "victim session name qz81",
  message: "victim message text kx42",
  prompt: "victim agent prompt jw63",
  runInput: "victim run input hv57",
  assetUrl: "https://example.com/victim-asset-mp29.png",
  memory: "victim memory text mz18",
  skill: "victim-skill-rq47",
  skillSteps: "victim skill steps wd55",
};

let server: TestServer;
let routes: Route[];
let owner: Api;
let ownerKeyValue: string;
const headers: Record<CallerName, Record<string, string>> = {} as never;
let main: Fixtures;
let approvalAgent: string;
/** Each caller's own key id: an answer showing a caller its own key (an audit read's actor) leaks nothing. */
const ownKeyIds: Partial<Record<CallerName, string>> = {};
/** Every id and content string of the victim that a foreign answer must not carry. */
const secrets: string[] = [];

/** Issues a key on `appId` and waits (bounded) until the tenant directory knows it. */
async function issueKey(appId: string, opts: { mode?: "live" | "test"; scopes?: string[]; agent_ids?: string[] | null } = {}) {
  const key = newApiKey(opts.mode ?? "live");
  const keyId = newResourceId("key");
  await server.ctx.repos.apps.handle(appId, { type: "IssueKey", key: {
    key_id: keyId, name: "matrix", prefix: keyPrefix(key), hash: keyHash(key), mode: opts.mode ?? "live",
    scopes: (opts.scopes ?? ["data:read", "data:write", "agents:manage", "audit:read"]) as never, agent_ids: opts.agent_ids ?? null, user_id: null, expires_at: null,
  } }, { appId: "app_ops" });
  await waitForStatus({ "x-api-key": key }, 200);
  return { key, keyId };
}

/** Polls GET /v1/sessions with `h` until it answers `status` (bounded: about 4 s). */
async function waitForStatus(h: Record<string, string>, status: number) {
  let last = 0;
  for (let i = 0; i < 200; i++) {
    last = (await fetch(`${server.url}/v1/sessions`, { headers: h })).status;
    if (last === status) return;
    await Bun.sleep(20);
  }
  throw new Error(`credential did not reach status ${status} (last ${last})`);
}

beforeAll(async () => {
  server = await startTestServer({ SANDBOX_CHUNK_DELAY_MS: "0" });
  const meta = { appId: "app_ops" };
  for (const [id, name] of [[VICTIM_APP, "Victim"], [OTHER_APP, "Other"], [SUSPENDED_APP, "Suspended"]] as const) {
    await server.ctx.repos.apps.handle(id, { type: "CreateApp", app_id: id, name }, meta);
  }

  // The victim's live key and its fixtures.
  const ownerKey = await issueKey(VICTIM_APP);
  ownerKeyValue = ownerKey.key;
  owner = api(server.url, ownerKey.key);
  const agent = await owner.post("/v1/agents", { name: "victim agent", system_prompt: CONTENT.prompt, approval: "never" });
  expect(agent.status).toBe(201);
  const session = await owner.post("/v1/sessions", { user_id: VICTIM_USER, agent_id: agent.body.id, name: CONTENT.sessionName });
  expect(session.status).toBe(201);
  const turn = await owner.post(`/v1/sessions/${session.body.id}/messages`, { content: CONTENT.message, wait: true });
  expect(turn.body.status).toBe("completed");
  const asset = await owner.post(`/v1/sessions/${session.body.id}/assets`, { url: CONTENT.assetUrl, kind: "image" });
  expect(asset.status).toBe(201);
  const run = await owner.post("/v1/runs", { user_id: VICTIM_USER, input: CONTENT.runInput, agent_id: agent.body.id });
  expect(run.status).toBe(202);
  await owner.pollUntilDone(run.body.id);
  // A memory entry of the victim's user, kept for the victim's agent.
  const memory = await owner.post("/v1/memory", { user_id: VICTIM_USER, agent_id: agent.body.id, content: CONTENT.memory });
  expect(memory.status).toBe(201);
  // One of the victim app's own skills (shipped ones are every app's, so not a fixture).
  expect((await owner.post("/v1/skills", { name: CONTENT.skill, description: "The victim's skill", steps: CONTENT.skillSteps })).status).toBe(201);
  // A file of the victim's session (its name and content are the victim's).
  const file = await uploadFile(owner, session.body.id, CONTENT.fileName, CONTENT.fileText);
  main = { session_id: session.body.id, job_id: turn.body.job_id, run_id: run.body.id, agent_id: agent.body.id, memory_id: memory.body.id, file_id: file };
  // For fresh fixtures whose job waits on approval.
  approvalAgent = (await owner.post("/v1/agents", { name: "victim approver", approval: "always", tools: [{ type: "builtin", name: "register_asset" }] })).body.id;
  const otherAgent = (await owner.post("/v1/agents", { name: "another agent of the victim app", approval: "never" })).body.id;

  // The other callers.
  const testKey = await issueKey(VICTIM_APP, { mode: "test" });
  const readOnly = await issueKey(VICTIM_APP, { scopes: ["data:read"] });
  const otherAgentOnly = await issueKey(VICTIM_APP, { scopes: ["data:write", "agents:manage"], agent_ids: [otherAgent] });
  const revoked = await issueKey(VICTIM_APP);
  await server.ctx.repos.apps.handle(VICTIM_APP, { type: "RevokeKey", key_id: revoked.keyId }, meta);
  await waitForStatus({ "x-api-key": revoked.key }, 401);
  const otherApp = await issueKey(OTHER_APP);
  const suspended = await issueKey(SUSPENDED_APP);
  await server.ctx.repos.apps.handle(SUSPENDED_APP, { type: "SuspendApp", reason: null }, meta);
  await waitForStatus({ "x-api-key": suspended.key }, 403);

  const right = await owner.post("/v1/end-user-tokens", { user_id: VICTIM_USER });
  const other = await owner.post("/v1/end-user-tokens", { user_id: OTHER_USER });
  expect([right.status, other.status]).toEqual([201, 201]);
  // An already expired token for the right user, signed with the server's own secret.
  const tokens = await EndUserTokens.open(server.ctx.store, server.ctx.secrets);
  const expired = await tokens.mint({ appId: VICTIM_APP, mode: "live", userId: VICTIM_USER, scopes: ["data:write"], agentIds: null, parentKeyId: ownerKey.keyId }, -10);

  const key = (k: string) => ({ "x-api-key": k });
  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
  Object.assign(headers, {
    owner: key(ownerKey.key), testKey: key(testKey.key), otherApp: key(otherApp.key), rightUser: bearer(right.body.token),
    otherUser: bearer(other.body.token), revoked: key(revoked.key), expiredToken: bearer(expired.token), suspended: key(suspended.key),
    readOnly: key(readOnly.key), otherAgentOnly: key(otherAgentOnly.key),
  });
  await waitForStatus(headers.rightUser, 200);

  Object.assign(ownKeyIds, { owner: ownerKey.keyId, testKey: testKey.keyId, readOnly: readOnly.keyId, otherAgentOnly: otherAgentOnly.keyId, revoked: revoked.keyId });
  secrets.push(...Object.values(main), ...Object.values(CONTENT), ownerKey.keyId, testKey.keyId, readOnly.keyId, otherAgentOnly.keyId, revoked.keyId);
  const assetId = asset.body.id;
  if (typeof assetId === "string") secrets.push(assetId);

  // The data plane, from the OpenAPI document.
  const doc = (await (await fetch(`${server.url}/docs/json`)).json()) as { paths: Record<string, Record<string, unknown>> };
  routes = [];
  for (const [path, ops] of Object.entries<any>(doc.paths)) {
    // The management plane (/v1/apps…, /v1/admin…) takes no data-plane credential at all.
    if (!path.startsWith("/v1/") || ["/v1/apps", "/v1/admin"].some((p) => path === p || path.startsWith(`${p}/`))) continue;
    for (const [method, op] of Object.entries<any>(ops)) {
      if (["get", "post", "put", "patch", "delete"].includes(method)) routes.push({ method: method.toUpperCase(), path, op });
    }
  }
}, 60_000);

afterAll(async () => {
  await server?.stop();
});

const PATH_PARAM = /\{([a-z_]+)\}/g;
const paramsOf = (path: string) => [...path.matchAll(PATH_PARAM)].map((m) => m[1]!);
const isStream = (r: Route) => r.path.endsWith("/stream");
const isRead = (r: Route) => r.method === "GET";
/** Changes the resource for good (or its job's course): run last, on fresh fixtures for allowed callers. */
const isStateChanging = (r: Route) => r.method === "DELETE" || /\/(approve|reject|cancel)$/.test(r.path);
const isAgentRoute = (r: Route) => r.path === "/v1/agents" || r.path.startsWith("/v1/agents/");
const isUserRoute = (r: Route) => r.path.startsWith("/v1/users/");
const isSkillRoute = (r: Route) => r.path === "/v1/skills" || r.path.startsWith("/v1/skills/");
const isAuditRoute = (r: Route) => r.path.startsWith("/v1/audit/");
const isErasure = (r: Route) => r.method === "DELETE" && r.path === "/v1/users/{user_id}";
/** The user an erasure names: one without data, so the victim's fixtures stay for every other cell. */
const ERASED_USER = "matrix-user-without-data";
/** Reads whose answers hold no resource of anyone's (numbers, scopes): the control below cannot apply. */
const ANSWERS_WITHOUT_FIXTURES = new Set(["GET /v1/usage/limits"]);
/** Path parameters that are not fixtures: the victim's user, and a provider kind. */
const PATH_VALUES: Record<string, string> = {
  user_id: VICTIM_USER, provider: "openai",
  // Audit reads of one stream: the victim's session stream.
  get stream_name() {
    return `session-${main.session_id}`;
  },
  // The victim's skill: a fresh one once fresh fixtures are made (for the delete), else the main one.
  get skill_name() {
    return skillFixture;
  },
};
let skillFixture = CONTENT.skill;

/** Bodies the schema alone does not give: PATCHes need one field to change (a no-op value here). */
const BODY_OVERRIDES: Record<string, Record<string, unknown>> = {
  "PATCH /v1/sessions/{session_id}": { archived: false },
  "PATCH /v1/agents/{agent_id}": { description: "patched by the tenant matrix" },
  // An override with the agent's own prompt: what it runs with stays what the last check below expects.
  "PUT /v1/agents/{agent_id}/prompt": { system_prompt: CONTENT.prompt },
  // Holds the request until the turn is over, so the next allowed caller does not find the session busy.
  "POST /v1/sessions/{session_id}/messages": { wait: true },
  "POST /v1/sessions/{session_id}/run-skill": { skill: CONTENT.skill, wait: true },
  "POST /v1/skills": { markdown: "---\nname: matrix-skill\ndescription: A skill the matrix saves\n---\nDo nothing much.\n" },
  "PUT /v1/users/{user_id}/credentials/{provider}": { api_key: "sk-matrix-credential-0000" },
  "POST /v1/uploads": { name: "matrix.txt", content_type: "text/plain" },
};

/** A value for one schema property, chosen by its name first (ids from the fixtures), then by its type. */
function valueFor(name: string, schema: any, f: Fixtures): unknown {
  if (name === "user_id") return VICTIM_USER;
  if (name in f) return f[name as keyof Fixtures];
  const s = schema?.anyOf ? schema.anyOf.find((x: any) => x.const !== undefined) ?? schema.anyOf[0] : schema;
  if (s?.const !== undefined) return s.const;
  if (s?.enum) return s.enum[0];
  switch (s?.type) {
    case "string": return s.pattern === "^https?://" ? "https://example.com/matrix.png" : `matrix ${name}`;
    case "integer": case "number": return s.minimum ?? 1;
    case "boolean": return false;
    case "array": return [];
    case "object": return {};
  }
  return `matrix ${name}`;
}

/** A minimal valid body from the route's request schema: its required fields, and any fixture id it takes. */
function bodyFor(r: Route, f: Fixtures): Record<string, unknown> | undefined {
  const schema = r.op.requestBody?.content?.["application/json"]?.schema;
  if (!schema && !BODY_OVERRIDES[`${r.method} ${r.path}`]) return undefined; // no body (GET, DELETE, approve)
  const body: Record<string, unknown> = {};
  const required = new Set<string>(schema?.required ?? []);
  for (const [name, prop] of Object.entries<any>(schema?.properties ?? {})) {
    if (required.has(name) || name === "user_id" || name in f) body[name] = valueFor(name, prop, f);
  }
  return { ...body, ...BODY_OVERRIDES[`${r.method} ${r.path}`] };
}

/** The query: fixtures and the victim's user by name, `since=0` for cursors. */
function queryFor(r: Route): string {
  const names = new Set((r.op.parameters ?? []).filter((p: any) => p.in === "query").map((p: any) => p.name as string));
  const q = new URLSearchParams();
  if (names.has("user_id")) q.set("user_id", VICTIM_USER);
  if (names.has("since")) q.set("since", "0");
  if (names.has("erase")) q.set("erase", "true");
  // The usage report by agent names the victim's agent: its own reads show it, everyone else's must not.
  if (names.has("group_by")) q.set("group_by", "agent");
  return q.size ? `?${q}` : "";
}

type Expectation = { allowed: true } | { allowed: false; status: number; code: string | RegExp };
const NOT_FOUND = /not_found$/;
const ALLOWED_409 = new Set(["job_not_awaiting_approval", "job_finished", "session_busy"]);

/** What one cell must answer. */
function expected(r: Route, caller: CallerName): Expectation {
  const byId = paramsOf(r.path).length > 0;
  const allowed = { allowed: true } as const;
  const refuse = (status: number, code: string | RegExp): Expectation => ({ allowed: false, status, code });
  if (isAuditRoute(r)) {
    switch (caller) {
      case "owner": return allowed;
      case "testKey": case "otherApp": return byId ? refuse(404, NOT_FOUND) : allowed;
      case "readOnly": case "rightUser": case "otherUser": case "otherAgentOnly": return refuse(403, "insufficient_scope");
    }
  }
  if (isErasure(r)) {
    if (caller === "testKey" || caller === "otherApp") return allowed;
    if (caller === "rightUser" || caller === "otherUser" || caller === "otherAgentOnly") return refuse(403, "permission_denied");
  }
  switch (caller) {
    case "owner":
      return allowed;
    case "revoked":
      return refuse(401, "invalid_api_key");
    case "expiredToken":
      return refuse(401, "invalid_token");
    case "suspended":
      return refuse(403, "app_suspended");
    case "readOnly":
      return isRead(r) ? allowed : refuse(403, "insufficient_scope");
    case "testKey":
    case "otherApp":
      if (isUserRoute(r)) return allowed;
      // By id: the victim's resource does not exist for them. Creating with the victim's agent: neither.
      // Lists, and creates naming no victim resource, work in their own partition (leak-checked).
      if (byId) return refuse(404, NOT_FOUND);
      if (bodyNames(r, "agent_id") || bodyNames(r, "session_id")) return refuse(404, NOT_FOUND);
      return allowed;
    case "rightUser":
    case "otherUser": {
      if (isAgentRoute(r) || isSkillRoute(r)) return isRead(r) ? allowed : refuse(403, "insufficient_scope");
      // Tokens are minted with a server key only: a token minting tokens would never end.
      if (r.path === "/v1/end-user-tokens") return refuse(403, "permission_denied");
      return caller === "rightUser" ? allowed : refuse(403, "permission_denied");
    }
    case "otherAgentOnly":
      if (isSkillRoute(r)) return allowed; // the app's skills are no agent's
      if (isUserRoute(r)) return allowed;
      // Everything of the victim's agent is refused; lists and agent-free creates work, showing none of it.
      if (byId || bodyNames(r, "agent_id") || bodyNames(r, "session_id")) return refuse(403, "agent_not_allowed");
      return allowed;
  }
}

const bodyNames = (r: Route, name: string) => !!r.op.requestBody?.content?.["application/json"]?.schema?.properties?.[name];

/** Fresh fixtures of the victim for a state-changing call by an allowed caller: a new agent, a job awaiting approval, a memory entry. */
async function freshFixtures(): Promise<Fixtures> {
  const agent = (await owner.post("/v1/agents", { name: "disposable", approval: "never" })).body.id;
  const session = (await owner.post("/v1/sessions", { user_id: VICTIM_USER, agent_id: approvalAgent })).body.id;
  const turn = await owner.post(`/v1/sessions/${session}/messages`, { content: "Please register https://example.com/fresh.png as an asset" });
  expect(turn.status).toBe(202);
  await owner.waitForStatus(turn.body.job_id, ["awaiting_approval"]);
  const memory = (await owner.post("/v1/memory", { user_id: VICTIM_USER, agent_id: main.agent_id, content: "disposable memory" })).body.id;
  skillFixture = (await owner.post("/v1/skills", { name: `victim-fresh-${crypto.randomUUID().slice(0, 8)}`, description: "disposable", steps: "Disposable." })).body.name;
  const file = await uploadFile(owner, session, "disposable.txt", "disposable file");
  return { agent_id: agent, session_id: session, job_id: turn.body.job_id, run_id: main.run_id, memory_id: memory, file_id: file };
}

/** Uploads a text file to a session as `client`; its id. */
async function uploadFile(client: Api, sessionId: string, name: string, text: string): Promise<string> {
  const form = new FormData();
  form.append("file", new Blob([text], { type: "text/plain" }), name);
  const r = await fetch(`${client.base}/v1/sessions/${sessionId}/files`, { method: "POST", headers: { "x-api-key": ownerKeyValue }, body: form });
  expect(r.status).toBe(201);
  return ((await r.json()) as { id: string }).id;
}

interface Outcome { status: number; code: string | null; text: string; headerText: string }

async function call(r: Route, caller: CallerName, f: Fixtures): Promise<{ url: string; body: unknown; out: Outcome }> {
  const url = r.path.replace(PATH_PARAM, (_, name: string) =>
    (isErasure(r) && name === "user_id" ? ERASED_USER : undefined) ?? f[name as keyof Fixtures] ?? PATH_VALUES[name] ?? `unfilled_${name}`) + queryFor(r);
  const body = bodyFor(r, f);
  // A route taking only multipart (a file upload) gets a small form; the others JSON (they list multipart as an alternative).
  const multipart = !!r.op.requestBody?.content?.["multipart/form-data"] && !r.op.requestBody?.content?.["application/json"];
  const form = new FormData();
  form.append("file", new Blob(["matrix upload"], { type: "text/plain" }), "matrix.txt");
  const res = await fetch(server.url + url, multipart ? { method: r.method, headers: headers[caller], body: form } : {
    method: r.method,
    headers: { ...headers[caller], ...(body !== undefined ? { "content-type": "application/json" } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const headerText = JSON.stringify([...res.headers.entries()]);
  let text = "";
  if (isStream(r) && res.ok) await res.body?.cancel(); // SSE: status and headers only
  else text = await res.text();
  let code: string | null = null;
  try {
    code = JSON.parse(text)?.error?.code ?? null;
  } catch {
    /* not JSON */
  }
  return { url, body, out: { status: res.status, code, text, headerText } };
}

test("every data-plane route, as every caller: the expected status, and no answer carries the victim's ids or content", async () => {
  expect(routes.length).toBeGreaterThan(20);
  for (const p of paramsOf(routes.map((r) => r.path).join(" "))) expect(["session_id", "job_id", "run_id", "agent_id", "memory_id", "file_id", ...Object.keys(PATH_VALUES)]).toContain(p);
  // State-changing routes last; within them, refused callers first (on the main fixtures), allowed ones on fresh fixtures.
  const ordered = [...routes.filter((r) => !isStateChanging(r)), ...routes.filter(isStateChanging)];
  const failures: string[] = [];
  const leaks: string[] = [];
  let cells = 0;
  for (const r of ordered) {
    const callers = isStateChanging(r)
      ? [...CALLERS.filter((c) => !expected(r, c).allowed), ...CALLERS.filter((c) => expected(r, c).allowed)]
      : CALLERS;
    for (const caller of callers) {
      const want = expected(r, caller);
      const f = isStateChanging(r) && want.allowed ? await freshFixtures() : main;
      const { url, body, out } = await call(r, caller, f);
      cells++;
      const cell = `${r.method} ${r.path} as ${caller}`;
      const got = `${out.status} ${out.code ?? ""}`.trim();
      if (want.allowed) {
        const ok = (out.status >= 200 && out.status < 300) || (out.status === 409 && ALLOWED_409.has(out.code ?? ""));
        if (!ok) failures.push(`${cell}: expected allowed, got ${got} ${out.text.slice(0, 200)}`);
      } else {
        const codeOk = typeof want.code === "string" ? out.code === want.code : want.code.test(out.code ?? "");
        if (out.status !== want.status || !codeOk) failures.push(`${cell}: expected ${want.status} ${want.code}, got ${got} ${out.text.slice(0, 200)}`);
      }
      // A control: the victim's own reads do reach its data, so "shows none of it" elsewhere means something.
      if (VICTIM_SELF.has(caller) && want.allowed && isRead(r) && !isStream(r) && !isUserRoute(r) && !ANSWERS_WITHOUT_FIXTURES.has(`${r.method} ${r.path}`) && !secrets.some((s) => out.text.includes(s))) {
        failures.push(`${cell}: allowed, but the answer shows nothing of the victim's: ${out.text.slice(0, 200)}`);
      }
      // Leaks: a caller that is not the victim itself, and not the victim app's read-only key reading, sees nothing of the
      // victim's that it did not send itself (an id echoed from its own path or body is not a leak).
      const mayShow = VICTIM_SELF.has(caller) || (caller === "readOnly" && want.allowed)
        || ((caller === "otherUser") && isAgentRoute(r) && want.allowed) // agents are the app's, not a user's
        || ((caller === "otherUser" || caller === "otherAgentOnly") && isSkillRoute(r) && want.allowed); // skills are the app's, no user's or agent's
      if (!mayShow) {
        const sent = url + JSON.stringify(body ?? null);
        for (const s of secrets) {
          if (sent.includes(s) || s === ownKeyIds[caller]) continue;
          if (out.text.includes(s) || out.headerText.includes(s)) leaks.push(`${cell}: answer carries ${s}`);
        }
      }
    }
  }
  // The victim's main fixtures are intact after every refused attempt.
  expect((await owner.get(`/v1/sessions/${main.session_id}`)).body.name).toBe(CONTENT.sessionName);
  expect((await owner.get(`/v1/agents/${main.agent_id}`)).body.system_prompt).toBe(CONTENT.prompt);
  console.log(`tenant matrix: ${cells} cells, ${leaks.length} leaks`);
  expect(failures).toEqual([]);
  expect(leaks).toEqual([]);
  expect(cells).toBe(routes.length * CALLERS.length);
}, 120_000);
