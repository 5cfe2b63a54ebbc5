/**
 * End-user tokens: a server key mints a short-lived token for one user; a client using it sees and acts
 * on that user's data only (403 permission_denied otherwise), never manages agents, and stops working
 * when it expires or its minting key is revoked.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { EndUserTokens } from "../../src/auth/endUserTokens.ts";
import { newResourceId } from "../../src/core/ids.ts";
import { keyHash, keyPrefix, newApiKey } from "../../src/domain/app/keys.ts";
import { DEFAULT_APP_ID } from "../../src/domain/streams.ts";
import { api, TEST_KEY, type Api } from "../support/api.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const ROOT = "root-token-end-users-0123456789abcdef";
let server: TestServer;
let backend: Api;
const asUser = (token: string) => api(server.url, "");
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

beforeAll(async () => {
  server = await startTestServer({ API_KEY: TEST_KEY, SANDBOX_CHUNK_DELAY_MS: "0", ADMIN_TOKEN: ROOT });
  backend = api(server.url);
});
afterAll(async () => {
  await server?.stop();
});

async function mint(user: string, client: Api = backend, headers: Record<string, string> = {}, body: Record<string, unknown> = {}) {
  return client.post("/v1/end-user-tokens", { user_id: user, ...body }, headers);
}

test("a user's token sees and acts on that user's data only", async () => {
  const minted = await mint("alice");
  expect(minted.status).toBe(201);
  expect(minted.body).toMatchObject({ object: "end_user_token", token_type: "Bearer", user_id: "alice", scopes: ["data:write"] });
  const alice = bearer(minted.body.token);
  const client = asUser(minted.body.token);
  const own = await client.post("/v1/sessions", { user_id: "alice" }, alice);
  expect(own.status).toBe(201);
  const turn = await client.post(`/v1/sessions/${own.body.id}/messages`, { content: "hi", wait: true }, alice);
  expect(turn.body.status).toBe("completed");
  expect((await client.get(`/v1/jobs/${turn.body.job_id}/events?since=0`, alice)).status).toBe(200);

  const bobs = (await backend.post("/v1/sessions", { user_id: "bob" })).body.id;
  const bobsTurn = (await backend.post(`/v1/sessions/${bobs}/messages`, { content: "mine", wait: true })).body.job_id;
  const refused = [
    await client.post("/v1/sessions", { user_id: "bob" }, alice),
    await client.get(`/v1/sessions/${bobs}`, alice),
    await client.get(`/v1/sessions/${bobs}/messages`, alice),
    await client.post(`/v1/sessions/${bobs}/messages`, { content: "x" }, alice),
    await client.get(`/v1/jobs/${bobsTurn}`, alice),
    await client.get(`/v1/jobs/${bobsTurn}/events?since=0`, alice),
    await client.post("/v1/runs", { user_id: "bob", input: "x" }, alice),
    await client.get("/v1/sessions?user_id=bob", alice),
    await mint("bob", client, alice),
  ];
  expect(refused.map((r) => `${r.status} ${r.body.error?.code}`)).toEqual(Array(refused.length).fill("403 permission_denied"));
  expect((await client.get("/v1/sessions", alice)).body.data.map((s: any) => s.user_id)).toEqual(["alice"]);
  // On record: who acted (the user's token and the key that minted it) and for which user.
  const first = async (stream: string) => {
    for await (const e of server.ctx.store.readStream(stream, { maxCount: 1 })) return e.metadata;
    return {};
  };
  expect(await first(`session-${own.body.id}`)).toMatchObject({ attributed_user_id: "alice", actor: expect.stringMatching(/^user:alice@key:key_/) });
  expect(await first(`session-${bobs}`)).toMatchObject({ attributed_user_id: "bob", actor: expect.stringMatching(/^key:key_/) });
  expect(await first(`job-${bobsTurn}`)).toMatchObject({ attributed_user_id: "bob" });
  // Never agent management, and never minting: a token minting tokens would never end.
  expect((await client.post("/v1/agents", { name: "x" }, alice)).body.error.code).toBe("insufficient_scope");
  expect((await mint("alice", client, alice)).body.error.code).toBe("permission_denied");
  // An Idempotency-Key is the caller's own: replaying the server's recorded answer for alice is not
  // a way around bob's checks.
  const recorded = await backend.post("/v1/sessions", { user_id: "alice", name: "alice private" }, { "idempotency-key": "create-alice-1" });
  expect(recorded.status).toBe(201);
  const bob = bearer((await mint("bob")).body.token);
  const replayAttempt = await asUser("").post("/v1/sessions", { user_id: "alice", name: "alice private" }, { ...bob, "idempotency-key": "create-alice-1" });
  expect({ status: replayAttempt.status, code: replayAttempt.body.error?.code }).toEqual({ status: 403, code: "permission_denied" });
  expect(JSON.stringify(replayAttempt.body)).not.toContain(recorded.body.id);
});

test("an expired or tampered token is 401 invalid_token; revoking the minting key ends its tokens", async () => {
  // The server's signing secret is in the store: a second handle on it can mint an already expired token.
  const tokens = await EndUserTokens.open(server.ctx.store, server.ctx.secrets);
  const key = newApiKey("live");
  const keyId = newResourceId("key");
  await server.ctx.repos.apps.handle(DEFAULT_APP_ID, { type: "IssueKey", key: {
    key_id: keyId, name: "minting", prefix: keyPrefix(key), hash: keyHash(key), mode: "live", scopes: ["data:write"], agent_ids: null, user_id: null, expires_at: null,
  } }, { appId: DEFAULT_APP_ID, actor: "root:root" });
  const minter = api(server.url, key);
  for (let i = 0; i < 100 && (await minter.get("/v1/sessions")).status !== 200; i++) await Bun.sleep(20);
  const expired = await tokens.mint({ appId: DEFAULT_APP_ID, mode: "live", userId: "carol", scopes: ["data:write"], agentIds: null, parentKeyId: keyId }, -10);
  const r1 = await asUser("").get("/v1/sessions", bearer(expired.token));
  expect({ status: r1.status, code: r1.body.error.code }).toEqual({ status: 401, code: "invalid_token" });
  const good = (await mint("carol", minter)).body.token as string;
  expect((await asUser("").get("/v1/sessions", bearer(good))).status).toBe(200);
  const tampered = good.slice(0, -3) + (good.endsWith("A") ? "BBB" : "AAA");
  expect((await asUser("").get("/v1/sessions", bearer(tampered))).status).toBe(401);
  await server.ctx.repos.apps.handle(DEFAULT_APP_ID, { type: "RevokeKey", key_id: keyId }, { appId: DEFAULT_APP_ID, actor: "root:root" });
  let status = 200;
  for (let i = 0; i < 100 && status === 200; i++) {
    status = (await asUser("").get("/v1/sessions", bearer(good))).status;
    if (status === 200) await Bun.sleep(20);
  }
  expect(status).toBe(401);
});

test("every event in the store names its actor: a key, a user's token, the operator, or the server's own process", async () => {
  const missing = new Map<string, number>();
  for await (const e of server.ctx.store.readAll()) {
    if (typeof e.metadata.actor !== "string" || e.metadata.actor === "") missing.set(e.type, (missing.get(e.type) ?? 0) + 1);
  }
  expect(Object.fromEntries(missing)).toEqual({});
});

test("no token acts as a key's own user of a compat surface (magus-key_…, mosoo-key_…, muapi-key_…)", async () => {
  // Magus sends no user: a key's conversations there belong to `magus-<key id>`.
  const magus = await fetch(`${server.url}/compat/magus/api/v1/messages`, {
    method: "POST", headers: { authorization: `Bearer ${TEST_KEY}`, "content-type": "application/json" }, body: JSON.stringify({ content: "secret plans", session_id: "s1" }),
  });
  expect(magus.status).toBe(200);
  const owner = (await backend.get(`/v1/sessions/${(await magus.json() as { conversation_id: string }).conversation_id}`)).body.user_id as string;
  expect(owner).toStartWith("magus-key_");
  for (const user of [owner, "mosoo-key_x", "muapi-key_y"]) {
    const refused = await mint(user);
    expect({ user, status: refused.status, code: refused.body.error?.code }).toEqual({ user, status: 400, code: "reserved_user_id" });
  }
  // Ids that only look alike are the app's to use.
  expect((await mint("magus-fan")).status).toBe(201);
  // A token for such an id minted before the rule (straight from the signing secret) is refused at the door.
  const tokens = await EndUserTokens.open(server.ctx.store, server.ctx.secrets);
  const keyId = owner.slice("magus-".length);
  const legacy = await tokens.mint({ appId: DEFAULT_APP_ID, mode: "live", userId: owner, scopes: ["data:read"], agentIds: null, parentKeyId: keyId }, 600);
  const read = await asUser(legacy.token).get("/v1/sessions", bearer(legacy.token));
  expect({ status: read.status, code: read.body.error?.code }).toEqual({ status: 403, code: "reserved_user_id" });
  // Nor is a key bound to such a user issued.
  const bound = await api(server.url, "").post(`/v1/apps/${DEFAULT_APP_ID}/keys`, { name: "k", user_id: owner }, { authorization: `Bearer ${ROOT}` });
  expect(bound.status).toBe(400);
});
