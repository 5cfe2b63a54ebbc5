/**
 * Memory over real HTTP: add, query and delete; BM25 ordering with scores from the user's own entries
 * only; relevance_score monotonic; pagination; user, agent, app and test-data scoping; bad input is a
 * 4xx in the envelope; the read model rebuilt from the events equals the live one.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { api, TEST_KEY, type Api } from "../support/api.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const ROOT = "agr_test_root_token_for_memory_000123";
const bearer = { authorization: `Bearer ${ROOT}` };
let server: TestServer;
let client: Api;
let root: Api;

beforeAll(async () => {
  server = await startTestServer({ API_KEY: TEST_KEY, ADMIN_TOKEN: ROOT, SANDBOX_CHUNK_DELAY_MS: "0" });
  client = api(server.url);
  root = api(server.url, "");
});
afterAll(async () => {
  await server?.stop();
});

async function add(c: Api, user: string, content: string, extra: Record<string, unknown> = {}) {
  const r = await c.post("/v1/memory", { user_id: user, content, ...extra });
  if (r.status !== 201) throw new Error(`add failed: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

const search = (c: Api, params: Record<string, string>) => c.get(`/v1/memory?${new URLSearchParams(params)}`);

async function newApp(name: string, scopes = ["data:write", "agents:manage"], extra: Record<string, unknown> = {}) {
  const app = (await root.post("/v1/apps", { name }, bearer)).body;
  const key = (await root.post(`/v1/apps/${app.id}/keys`, { name: "k", scopes, ...extra }, bearer)).body.key;
  return { app, client: api(server.url, key), key };
}

describe("add, query, delete", () => {
  test("an added entry is shown at once (201), listed newest first without a query, and gone after delete", async () => {
    const first = await add(client, "u-basic", "Lives in Lisbon", { metadata: { source: "onboarding", importance: "high" } });
    expect(first).toMatchObject({
      object: "memory", user_id: "u-basic", agent_id: null, content: "Lives in Lisbon", metadata: { source: "onboarding", importance: "high" },
      source: "api", job_id: null, relevance_score: null,
    });
    expect(first.id).toMatch(/^mem_/);
    const second = await add(client, "u-basic", "Has a cat named Miso");
    const listed = await search(client, { user_id: "u-basic" });
    expect(listed.status).toBe(200);
    expect(listed.body.ranking).toBe("recency");
    expect(listed.body.data.map((m: any) => m.id)).toEqual([second.id, first.id]);
    expect(listed.body.data.every((m: any) => m.relevance_score === null)).toBe(true);

    const deleted = await client.del(`/v1/memory/${first.id}`);
    expect(deleted).toMatchObject({ status: 200, body: { id: first.id, object: "memory", deleted: true } });
    expect((await search(client, { user_id: "u-basic" })).body.data.map((m: any) => m.id)).toEqual([second.id]);
    expect((await search(client, { user_id: "u-basic", query: "Lisbon" })).body.data).toEqual([]);
    // Deleting again, or an id that never existed: 404 memory_not_found.
    for (const id of [first.id, "mem_nope"]) {
      const again = await client.del(`/v1/memory/${id}`);
      expect({ status: again.status, code: again.body.error.code }).toEqual({ status: 404, code: "memory_not_found" });
    }
    // The entry's events stay for audit.
    const types: string[] = [];
    for await (const e of server.ctx.store.readStream(`memory-${first.id}`)) types.push(e.type);
    expect(types).toEqual(["MemoryAdded", "MemoryRemoved"]);
  });

  test("Idempotency-Key: the same request answers the same entry, once", async () => {
    const body = { user_id: "u-idem", content: "Allergic to peanuts" };
    const a = await client.post("/v1/memory", body, { "idempotency-key": "mem-idem-1" });
    const b = await client.post("/v1/memory", body, { "idempotency-key": "mem-idem-1" });
    expect([a.status, b.status]).toEqual([201, 201]);
    expect(b.body.id).toBe(a.body.id);
    expect(b.headers.get("idempotent-replayed")).toBe("true");
    expect((await search(client, { user_id: "u-idem" })).body.data.length).toBe(1);
    const conflict = await client.post("/v1/memory", { ...body, content: "something else" }, { "idempotency-key": "mem-idem-1" });
    expect(conflict.status).toBe(409);
  });
});

describe("ranking", () => {
  test("BM25 orders by how well entries match, scores are monotonic in 0..1, and nothing else matches", async () => {
    const user = "u-bm25";
    // Both words twice, short > both words once > only the more common word > no word at all.
    const both2 = await add(client, user, "kayak paddle kayak paddle");
    const both1 = await add(client, user, "kayak paddle for the lake");
    const one = await add(client, user, "a kayak trip last year");
    const none = await add(client, user, "prefers window seats on trains");
    await add(client, user, "kayak rental shop near the river");
    const r = await search(client, { user_id: user, query: "Kayak paddle" });
    expect(r.status).toBe(200);
    expect(r.body.ranking).toBe("bm25");
    const ids = r.body.data.map((m: any) => m.id);
    expect(ids.slice(0, 2)).toEqual([both2.id, both1.id]);
    expect(ids.indexOf(one.id)).toBeGreaterThan(1);
    expect(ids).not.toContain(none.id);
    const scores = r.body.data.map((m: any) => m.relevance_score as number);
    for (const s of scores) expect(s > 0 && s < 1).toBe(true);
    for (let i = 1; i < scores.length; i++) expect(scores[i]!).toBeLessThanOrEqual(scores[i - 1]!);
    expect(scores[0]!).toBeGreaterThan(scores[scores.length - 1]!);
    // Diacritics and case do not matter: "Kâyak" finds the same entries.
    expect((await search(client, { user_id: user, query: "KÂYAK" })).body.data.length).toBe(4);
  });

  test("scores come from the user's own entries: another user's or app's entries never change them", async () => {
    const user = "u-own-stats";
    await add(client, user, "sourdough bread recipe from grandma");
    await add(client, user, "bread maker is broken");
    await add(client, user, "likes jazz");
    const before = (await search(client, { user_id: user, query: "sourdough bread" })).body.data;
    // Many entries with the same words elsewhere: another user of this app, and another app.
    const other = await newApp("Memory neighbours");
    for (let i = 0; i < 30; i++) {
      await add(client, `u-neighbour-${i % 3}`, `bread bread sourdough ${i}`);
      await add(other.client, user, `sourdough bread ${i}`);
    }
    const after = (await search(client, { user_id: user, query: "sourdough bread" })).body.data;
    expect(after).toEqual(before);
  });

  test("ranked pages: limit and cursor walk the ranking once; a cursor of another search is refused", async () => {
    const user = "u-pages";
    for (let i = 0; i < 7; i++) await add(client, user, `${"garden ".repeat(i + 1)}note ${i}`);
    const all = (await search(client, { user_id: user, query: "garden", limit: "100" })).body.data.map((m: any) => m.id);
    expect(all.length).toBe(7);
    const seen: string[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 10; page++) {
      const params: Record<string, string> = { user_id: user, query: "garden", limit: "3" };
      if (cursor) params.cursor = cursor;
      const r = await search(client, params);
      seen.push(...r.body.data.map((m: any) => m.id));
      cursor = r.body.next_cursor;
      expect(r.body.has_more).toBe(cursor !== null);
      if (!cursor) break;
    }
    expect(seen).toEqual(all);
    const first = (await search(client, { user_id: user, query: "garden", limit: "3" })).body.next_cursor;
    const foreign = await search(client, { user_id: user, query: "note", cursor: first });
    expect({ status: foreign.status, code: foreign.body.error.code }).toEqual({ status: 400, code: "invalid_cursor" });
    // Newest-first pages too.
    const recent: string[] = [];
    cursor = null;
    for (let page = 0; page < 10; page++) {
      const params: Record<string, string> = { user_id: user, limit: "4" };
      if (cursor) params.cursor = cursor;
      const r = await search(client, params);
      recent.push(...r.body.data.map((m: any) => m.id));
      cursor = r.body.next_cursor;
      if (!cursor) break;
    }
    expect(recent.length).toBe(7);
    expect(new Set(recent).size).toBe(7);
  });
});

describe("scoping", () => {
  test("agent_id: an entry kept for an agent is listed under it; without agent_id every entry of the user is", async () => {
    const agent = (await client.post("/v1/agents", { name: "memory scoped" })).body.id;
    const kept = await add(client, "u-agent", "Speaks Portuguese", { agent_id: agent });
    const shared = await add(client, "u-agent", "Speaks English");
    expect(kept.agent_id).toBe(agent);
    expect((await search(client, { user_id: "u-agent", agent_id: agent })).body.data.map((m: any) => m.id)).toEqual([kept.id]);
    expect((await search(client, { user_id: "u-agent", query: "speaks" })).body.data.map((m: any) => m.id).sort()).toEqual([kept.id, shared.id].sort());
    const missing = await client.post("/v1/memory", { user_id: "u-agent", content: "x", agent_id: "agt_missing" });
    expect({ status: missing.status, code: missing.body.error.code }).toEqual({ status: 404, code: "agent_not_found" });
  });

  test("another app, the app's test data and another end user neither see nor delete an entry", async () => {
    const entry = await add(client, "u-private", "Secret diary entry about tulips");
    const other = await newApp("Memory outsider");
    const testKey = (await root.post("/v1/apps/app_default/keys", { name: "test", mode: "test", scopes: ["data:write"] }, bearer)).body.key;
    const asTest = api(server.url, testKey);
    for (const c of [other.client, asTest]) {
      expect((await search(c, { user_id: "u-private", query: "tulips" })).body.data).toEqual([]);
      expect((await search(c, { user_id: "u-private" })).body.data).toEqual([]);
      const del = await c.del(`/v1/memory/${entry.id}`);
      expect({ status: del.status, code: del.body.error.code }).toEqual({ status: 404, code: "memory_not_found" });
    }
    // Test data is its own: an entry added with the test key is not in the live data.
    const testEntry = await add(asTest, "u-private", "tulips in test mode");
    expect((await search(client, { user_id: "u-private", query: "tulips" })).body.data.map((m: any) => m.id)).toEqual([entry.id]);
    expect((await search(asTest, { user_id: "u-private", query: "tulips" })).body.data.map((m: any) => m.id)).toEqual([testEntry.id]);

    // End users: their own memory only.
    const mallory = (await client.post("/v1/end-user-tokens", { user_id: "mallory" })).body.token;
    const owner = (await client.post("/v1/end-user-tokens", { user_id: "u-private" })).body.token;
    const asMallory = { authorization: `Bearer ${mallory}` };
    const asOwner = { authorization: `Bearer ${owner}` };
    const noKey = api(server.url, "");
    const refused = [
      await noKey.get("/v1/memory?user_id=u-private", asMallory),
      await noKey.get("/v1/memory?user_id=u-private&query=tulips", asMallory),
      await noKey.post("/v1/memory", { user_id: "u-private", content: "planted" }, asMallory),
      await noKey.del(`/v1/memory/${entry.id}`, asMallory),
    ];
    expect(refused.map((r) => `${r.status} ${r.body.error?.code}`)).toEqual(Array(4).fill("403 permission_denied"));
    // Without user_id, a user's token reads its own memory; the owner sees the entry.
    expect((await noKey.get("/v1/memory", asMallory)).body.data).toEqual([]);
    expect((await noKey.get("/v1/memory?query=tulips", asOwner)).body.data.map((m: any) => m.id)).toEqual([entry.id]);
    expect((await search(client, { user_id: "u-private" })).body.data.map((m: any) => m.id)).toEqual([entry.id]);
    // Without user_id, a user's token writes its own memory; a server key must say whose.
    const own = await noKey.post("/v1/memory", { content: "mallory keeps notes" }, asMallory);
    expect({ status: own.status, user: own.body.user_id }).toEqual({ status: 201, user: "mallory" });
    const unnamed = await client.post("/v1/memory", { content: "whose?" });
    expect({ status: unnamed.status, param: unnamed.body.error?.details?.param }).toEqual({ status: 400, param: "user_id" });
  });

  test("a key limited to some agents reads, adds and deletes only its agents' entries", async () => {
    const a = (await client.post("/v1/agents", { name: "limited a" })).body.id;
    const b = (await client.post("/v1/agents", { name: "limited b" })).body.id;
    const ofA = await add(client, "u-limits", "for agent a", { agent_id: a });
    const ofB = await add(client, "u-limits", "for agent b", { agent_id: b });
    const shared = await add(client, "u-limits", "for every agent");
    const limited = api(server.url, (await root.post("/v1/apps/app_default/keys", { name: "only a", scopes: ["data:write"], agent_ids: [a] }, bearer)).body.key);
    expect((await search(limited, { user_id: "u-limits" })).body.data.map((m: any) => m.id)).toEqual([ofA.id]);
    expect((await search(limited, { user_id: "u-limits", query: "agent" })).body.data.map((m: any) => m.id)).toEqual([ofA.id]);
    const refused = [
      await search(limited, { user_id: "u-limits", agent_id: b }),
      await limited.post("/v1/memory", { user_id: "u-limits", content: "x", agent_id: b }),
      await limited.post("/v1/memory", { user_id: "u-limits", content: "x" }),
      await limited.del(`/v1/memory/${ofB.id}`),
      await limited.del(`/v1/memory/${shared.id}`),
    ];
    expect(refused.map((r) => `${r.status} ${r.body.error?.code}`)).toEqual(Array(5).fill("403 agent_not_allowed"));
    expect((await limited.del(`/v1/memory/${ofA.id}`)).status).toBe(200);
  });
});

describe("bad input: 4xx in the envelope, never 5xx", () => {
  test("bodies", async () => {
    const cases: Array<[unknown, string]> = [
      [{ content: "x" }, "user_id"],
      [{ user_id: "u", content: "" }, "content"],
      [{ user_id: "u", content: "   \n " }, "content"],
      [{ user_id: "u", content: "x".repeat(8001) }, "content"],
      [{ user_id: "", content: "x" }, "user_id"],
      [{ user_id: "u".repeat(201), content: "x" }, "user_id"],
      [{ user_id: "u", content: "x", agent_id: "bad id!" }, "agent_id"],
      [{ user_id: "u", content: "x", metadata: "not an object" }, "metadata"],
      [{ user_id: "u", content: "x", metadata: { big: "y".repeat(17_000) } }, "metadata"],
      [{ user_id: "u", content: "x", surprise: true }, "surprise"],
      [{ user_id: 42, content: "x" }, "user_id"],
      [[], "body"],
    ];
    for (const [body, param] of cases) {
      const r = await client.post("/v1/memory", body);
      expect({ param, status: r.status, code: r.body?.error?.code }).toEqual({ param, status: 400, code: "invalid_request" });
      expect(JSON.stringify(r.body.error.details)).toContain(param);
    }
    const notJson = await fetch(`${server.url}/v1/memory`, { method: "POST", headers: { "x-api-key": TEST_KEY, "content-type": "application/json" }, body: "{nope" });
    expect(notJson.status).toBe(400);
    const wrongType = await fetch(`${server.url}/v1/memory`, { method: "POST", headers: { "x-api-key": TEST_KEY, "content-type": "text/plain" }, body: "hi" });
    expect(wrongType.status).toBe(415);
  });

  test("queries", async () => {
    const cases: Array<[string, string]> = [
      ["", "user_id"],
      ["user_id=u&limit=0", "limit"],
      ["user_id=u&limit=101", "limit"],
      ["user_id=u&limit=ten", "limit"],
      ["user_id=u&limit=0x10", "limit"],
      ["user_id=u&query=", "query"],
      ["user_id=u&query=" + "q".repeat(1001), "query"],
      ["user_id=u&query=%21%3F%2A", "query"],
      ["user_id=u&sort=asc", "sort"],
      ["user_id=u&user_id=v", "user_id"],
      ["user_id=u&cursor=garbage", "cursor"],
      ["user_id=u&agent_id=..%2F..", "agent_id"],
    ];
    for (const [query, param] of cases) {
      const r = await client.get(`/v1/memory?${query}`);
      expect({ query, status: r.status, param: r.body?.error?.details?.param }).toEqual({ query, status: 400, param });
    }
    // FTS5 syntax in a query is just words.
    for (const q of ['"unbalanced', "a AND OR NOT", "col:*", "NEAR(a b)", "^x -y +z"]) {
      const r = await search(client, { user_id: "u", query: q });
      expect({ q, status: r.status }).toEqual({ q, status: 200 });
    }
    const badId = await client.del("/v1/memory/not%20an%20id");
    expect(badId.status).toBe(400);
  });
});

describe("read model", () => {
  test("rebuilt from the events (in any batch size), the memory read model equals the live one, and searches answer the same", async () => {
    const { openReadModelDb, dumpTables } = await import("../../src/projections/readModelDb.ts");
    const { ProjectionRunner } = await import("../../src/projections/runner.ts");
    const { memoryProjection } = await import("../../projections/memory/index.ts");
    const { MemoryService } = await import("../../src/app/memory.ts");
    // Removals among additions, for several users.
    const added: string[] = [];
    for (let i = 0; i < 40; i++) added.push((await add(client, `u-rebuild-${i % 4}`, `rebuild entry ${i} ${"lorem ".repeat(i % 5)}ipsum ${i % 3 ? "dolor" : "amet"}`)).id);
    for (let i = 0; i < 40; i += 3) expect((await client.del(`/v1/memory/${added[i]}`)).status).toBe(200);
    await server.ctx.projections.waitUntilCaughtUp();
    const live = dumpTables(server.ctx.db, memoryProjection.tables);
    expect((live.memory_entries as unknown[]).length).toBeGreaterThan(30);
    // The index is compared by what it holds (term instances), so it must hold some: "dolor" among them.
    expect((live.memory_fts as Array<{ term: string }>).some((r) => r.term === "dolor")).toBe(true);
    const queries = async (db: import("bun:sqlite").Database) => {
      const service = new MemoryService({ db, secrets: server.ctx.secrets, logger: server.ctx.logger, connectionsOf: async () => ({}) });
      const out: unknown[] = [];
      for (let u = 0; u < 4; u++) {
        for (const query of ["lorem dolor", "ipsum", "amet entry", null]) {
          const r = await service.search({ appId: "app_default", userId: `u-rebuild-${u}`, scope: { kind: "all" }, query, limit: 100 });
          out.push(r.hits.map((h) => [h.row.id, h.score]));
        }
      }
      return out;
    };
    const liveAnswers = await queries(server.ctx.db);
    for (const batchSize of [1, 7, 1000]) {
      const fresh = openReadModelDb(":memory:");
      const runner = new ProjectionRunner(server.ctx.store, fresh, [memoryProjection], { batchSize });
      runner.start();
      await runner.waitUntilCaughtUp();
      await runner.stop();
      expect(dumpTables(fresh, memoryProjection.tables)).toEqual(live);
      expect(await queries(fresh)).toEqual(liveAnswers);
      fresh.close();
    }
  });
});
