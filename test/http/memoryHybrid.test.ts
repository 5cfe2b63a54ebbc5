/**
 * Hybrid memory ranking against a local embeddings endpoint (OpenAI wire format, called by the real
 * `openai` client): an app whose connection names an embeddings_model ranks BM25 with cosine
 * similarity, and the order differs from BM25 alone in the expected direction; vectors are filled in
 * the background and dropped with their entry; a failing endpoint degrades to BM25, never to a 5xx.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { api, type Api } from "../support/api.ts";
import { startEmbeddingsServer, type EmbeddingsServer } from "../support/embeddingsServer.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const ROOT = "agr_test_root_token_for_hybrid_0001234";
const bearer = { authorization: `Bearer ${ROOT}` };
const EMBED_KEY = "sk-embed-key-000000000042";
let server: TestServer;
let embeddings: EmbeddingsServer;
let root: Api;

beforeAll(async () => {
  embeddings = startEmbeddingsServer();
  server = await startTestServer({ ADMIN_TOKEN: ROOT, TOOL_PRIVATE_ALLOWLIST: "127.0.0.1", SANDBOX_CHUNK_DELAY_MS: "0" });
  root = api(server.url, "");
});
afterAll(async () => {
  await server?.stop();
  embeddings?.stop();
});

/** An app, with a connection to the embeddings server when `embed` is set, and a key. */
async function newApp(name: string, embed: boolean, mode: "live" | "test" = "live") {
  const app = (await root.post("/v1/apps", { name }, bearer)).body;
  if (embed) {
    const put = await root.put(`/v1/apps/${app.id}/connections/main`, {
      provider: "openai_compatible", base_url: embeddings.baseURL, api_key: EMBED_KEY, embeddings_model: "concept-embed-1",
    }, bearer);
    expect(put.status).toBe(200);
    expect(put.body.embeddings_model).toBe("concept-embed-1");
  }
  const key = (await root.post(`/v1/apps/${app.id}/keys`, { name: "k", mode, scopes: ["data:write"] }, bearer)).body.key;
  return { id: app.id as string, client: api(server.url, key) };
}

async function add(c: Api, user: string, content: string): Promise<string> {
  const r = await c.post("/v1/memory", { user_id: user, content });
  expect(r.status).toBe(201);
  return r.body.id;
}

const query = (c: Api, user: string, q: string) => c.get(`/v1/memory?${new URLSearchParams({ user_id: user, query: q, limit: "10" })}`);

const ENTRIES = {
  colour: "the user does like the color blue",
  food: "vegetarian food, loves pasta and pizza",
  cooking: "cooking pasta recipes on sunday",
  travel: "booked a flight to Oslo",
};

test("hybrid ranking puts the entry that means the query above the one that only shares its words", async () => {
  const hybrid = await newApp("Hybrid", true);
  const plain = await newApp("BM25 only", false);
  const ids = { hybrid: {} as Record<string, string>, plain: {} as Record<string, string> };
  for (const [name, content] of Object.entries(ENTRIES)) {
    ids.hybrid[name] = await add(hybrid.client, "u", content);
    ids.plain[name] = await add(plain.client, "u", content);
  }
  const before = embeddings.requests.length;
  const q = "what food does the user like";

  const bm25 = await query(plain.client, "u", q);
  expect(bm25.status).toBe(200);
  expect(bm25.body.ranking).toBe("bm25");
  const bm25Order = bm25.body.data.map((m: any) => m.id);
  // By words: "the user does like" outweighs one shared word.
  expect(bm25Order).toEqual([ids.plain.colour, ids.plain.food]);

  const hy = await query(hybrid.client, "u", q);
  expect(hy.status).toBe(200);
  expect(hy.body.ranking).toBe("hybrid");
  const hyOrder = hy.body.data.map((m: any) => m.id);
  // By meaning too: the food entries come first; the one sharing only filler words falls behind them.
  expect(hyOrder.indexOf(ids.hybrid.food)).toBe(0);
  expect(hyOrder.indexOf(ids.hybrid.cooking)).toBeLessThan(hyOrder.indexOf(ids.hybrid.colour));
  expect(hyOrder.indexOf(ids.hybrid.food)).toBeLessThan(hyOrder.indexOf(ids.hybrid.colour));
  const scores = hy.body.data.map((m: any) => m.relevance_score);
  for (let i = 1; i < scores.length; i++) expect(scores[i]).toBeLessThanOrEqual(scores[i - 1]);

  // A query sharing no word with any entry: BM25 finds nothing, hybrid finds what it means.
  expect((await query(plain.client, "u", "dinner ideas")).body.data).toEqual([]);
  const semantic = (await query(hybrid.client, "u", "dinner ideas")).body.data.map((m: any) => m.id);
  expect(semantic.slice(0, 2).sort()).toEqual([ids.hybrid.food, ids.hybrid.cooking].sort());

  // The real openai client called the endpoint, with the connection's key and model.
  const sent = embeddings.requests.slice(before);
  expect(sent.length).toBeGreaterThan(0);
  for (const r of sent) {
    expect(r.headers.get("authorization")).toBe(`Bearer ${EMBED_KEY}`);
    expect(r.headers.get("user-agent") ?? "").toMatch(/^OpenAI\/JS/);
    expect(r.body.model).toBe("concept-embed-1");
  }
});

test("the embedder fills vectors in the background, and a deleted entry's vector goes with it", async () => {
  const hybrid = await newApp("Background", true);
  const id = await add(hybrid.client, "u-bg", "adopted a kitten");
  const vectorOf = () => server.ctx.db.query("SELECT dims FROM memory_vectors WHERE memory_id = ?").get(id) as { dims: number } | null;
  let found = vectorOf();
  for (let i = 0; i < 250 && !found; i++) {
    await Bun.sleep(20);
    found = vectorOf();
  }
  expect(found).toEqual({ dims: 5 });
  expect((await hybrid.client.del(`/v1/memory/${id}`)).status).toBe(200);
  expect(vectorOf()).toBeNull();
});

test("test data never reaches the embeddings endpoint: it ranks by BM25", async () => {
  const hybrid = await newApp("Hybrid with a test key", true);
  const testKey = (await root.post(`/v1/apps/${hybrid.id}/keys`, { name: "t", mode: "test", scopes: ["data:write"] }, bearer)).body.key;
  const asTest = api(server.url, testKey);
  // Counted from before the entry exists: adding it wakes the background embedder at once.
  const before = embeddings.requests.length;
  await add(asTest, "u-test", "vegetarian food only");
  const r = await query(asTest, "u-test", "food");
  expect(r.body.ranking).toBe("bm25");
  expect(r.body.data.length).toBe(1);
  // Give the background embedder a turn: still nothing sent for the test data.
  await server.ctx.memory!.embedPending();
  expect(embeddings.requests.slice(before).filter((q) => JSON.stringify(q.body.input).includes("vegetarian food only"))).toEqual([]);
});

test("a failing embeddings endpoint: the query answers 200 ranked by BM25, without the upstream's words", async () => {
  const hybrid = await newApp("Failing", true);
  await add(hybrid.client, "u-fail", "pizza on fridays");
  await add(hybrid.client, "u-fail", "pizza pizza");
  embeddings.fail(10, 503);
  const r = await query(hybrid.client, "u-fail", "pizza");
  expect(r.status).toBe(200);
  expect(r.body.ranking).toBe("bm25");
  expect(r.body.data.length).toBe(2);
  expect(JSON.stringify(r.body)).not.toContain("secret detail");
  embeddings.fail(0);
});

test("connections: embeddings_model is refused on anthropic, and shown on reads", async () => {
  const app = (await root.post("/v1/apps", { name: "Anthropic embeddings" }, bearer)).body;
  const refused = await root.put(`/v1/apps/${app.id}/connections/claude`, { provider: "anthropic", api_key: "sk-ant-x", embeddings_model: "e" }, bearer);
  expect({ status: refused.status, param: refused.body.error.details.param }).toEqual({ status: 400, param: "embeddings_model" });
  const empty = await root.put(`/v1/apps/${app.id}/connections/oai`, { provider: "openai", base_url: embeddings.baseURL, embeddings_model: "" }, bearer);
  expect(empty.status).toBe(400);
  await root.put(`/v1/apps/${app.id}/connections/oai`, { provider: "openai", base_url: embeddings.baseURL, embeddings_model: "text-embedding-3-small" }, bearer);
  expect((await root.get(`/v1/apps/${app.id}/connections/oai`, bearer)).body.embeddings_model).toBe("text-embedding-3-small");
});
