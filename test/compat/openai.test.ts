/**
 * The OpenAI Responses-compatible surface (/compat/openai/v1), driven by the real `openai` SDK against
 * a real server with the sandbox provider: create (sync, background, stream), retrieve, resume a
 * stream with starting_after, cancel, previous_response_id chaining, conversations, errors, and the
 * same conversation read through /v1.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import { api, TEST_KEY, type Api } from "../support/api.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

let server: TestServer;
let client: OpenAI;
let v1: Api;

beforeAll(async () => {
  server = await startTestServer({ API_KEY: TEST_KEY, SANDBOX_CHUNK_DELAY_MS: "3" });
  client = new OpenAI({ apiKey: TEST_KEY, baseURL: `${server.url}/compat/openai/v1`, maxRetries: 0 });
  v1 = api(server.url);
});
afterAll(async () => {
  await server?.stop();
});

/** All events of a stream, in order (bounded: a response stream ends after its terminal event). */
async function collect(stream: AsyncIterable<{ type: string; sequence_number: number; [k: string]: unknown }>) {
  const events: Array<{ type: string; sequence_number: number; [k: string]: unknown }> = [];
  for await (const e of stream) {
    events.push(e);
    if (events.length > 10_000) throw new Error("stream did not end");
  }
  return events;
}

const deltas = (events: Array<{ type: string; [k: string]: unknown }>) =>
  events.filter((e) => e.type === "response.output_text.delta").map((e) => e.delta as string).join("");

describe("responses.create", () => {
  test("without background or stream it answers the finished response", async () => {
    const r = await client.responses.create({ model: "default", input: "hello there" });
    expect(r.object).toBe("response");
    expect(r.status).toBe("completed");
    expect(r.output_text).toContain("Sandbox reply to «hello there»");
    expect(r.output[0]).toMatchObject({ type: "message", role: "assistant", status: "completed" });
    expect(r.usage!.output_tokens).toBeGreaterThan(0);
    expect(r.usage!.total_tokens).toBe(r.usage!.input_tokens + r.usage!.output_tokens);
    expect(r.conversation?.id).toBeTruthy();
  });

  test("with background it answers at once, and retrieve shows it finish", async () => {
    const r = await client.responses.create({ model: "default", input: "in the background", background: true });
    expect(["queued", "in_progress"]).toContain(String(r.status));
    let got = r;
    for (let i = 0; i < 200 && got.status !== "completed"; i++) {
      await Bun.sleep(25);
      got = await client.responses.retrieve(r.id);
    }
    expect(got.status).toBe("completed");
    expect(got.output_text).toContain("in the background");
  });

  test("with stream the events run from response.created to response.completed, with rising sequence numbers", async () => {
    const stream = await client.responses.create({ model: "default", input: "stream me", stream: true });
    const events = await collect(stream as never);
    expect(events[0]!.type).toBe("response.created");
    expect(events.some((e) => e.type === "response.in_progress")).toBe(true);
    expect(events.at(-1)!.type).toBe("response.completed");
    const seq = events.map((e) => e.sequence_number);
    expect(seq).toEqual([...seq].sort((a, b) => a - b));
    expect(new Set(seq).size).toBe(seq.length);
    const done = events.at(-1)!.response as OpenAI.Responses.Response;
    expect(deltas(events)).toBe(done.output_text!);
    expect(done.output_text).toContain("stream me");
  });

  test("the response is the job of a turn, readable through /v1", async () => {
    const r = await client.responses.create({ model: "default", input: "one history" });
    const job = await v1.get(`/v1/jobs/${r.id}`);
    expect(job.status).toBe(200);
    expect(job.body.session_id).toBe(r.conversation!.id);
    const messages = await v1.get(`/v1/sessions/${r.conversation!.id}/messages`);
    expect(messages.body.data.map((m: { role: string; content: string }) => [m.role, m.content])).toEqual([
      ["user", "one history"], ["assistant", r.output_text],
    ]);
  });

  test("sampling parameters are accepted (the agent's settings apply); tools and unknown fields are refused", async () => {
    const r = await client.responses.create({ model: "default", input: "sampled", temperature: 0.2, max_output_tokens: 64, reasoning: { effort: "low" } });
    expect(r.status).toBe("completed");
    const tools = await client.responses.create({ model: "default", input: "x", tools: [{ type: "web_search" }] } as never).catch((e) => e);
    expect(tools).toBeInstanceOf(OpenAI.BadRequestError);
    expect(tools.param).toBe("tools");
    const typo = await client.responses.create({ model: "default", input: "x", temprature: 1 } as never).catch((e) => e);
    expect(typo).toBeInstanceOf(OpenAI.BadRequestError);
    const image = await client.responses.create({
      model: "default", input: [{ role: "user", content: [{ type: "input_image", image_url: "https://example.com/a.png", detail: "auto" }] }],
    }).catch((e) => e);
    expect(image).toBeInstanceOf(OpenAI.BadRequestError);
    expect(image.param).toBe("input");
  });

  test("input as an array of messages takes the user text", async () => {
    const r = await client.responses.create({
      model: "default", input: [{ role: "user", content: [{ type: "input_text", text: "from parts" }] }],
    });
    expect(r.output_text).toContain("from parts");
  });
});

describe("responses.retrieve with stream and starting_after", () => {
  test("resuming after any sequence number gives exactly the rest of the full stream, long after the end", async () => {
    const r = await client.responses.create({ model: "default", input: "resume me please", background: true });
    const full = await collect((await client.responses.retrieve(r.id, { stream: true })) as never);
    expect(full.at(-1)!.type).toBe("response.completed");
    for (const cut of [1, 3, Math.floor(full.length / 2)]) {
      const after = full[cut - 1]!.sequence_number;
      const rest = await collect((await client.responses.retrieve(r.id, { stream: true, starting_after: after })) as never);
      expect(rest.map((e) => [e.type, e.sequence_number])).toEqual(full.slice(cut).map((e) => [e.type, e.sequence_number]));
    }
    // After the last event, there is nothing more: the stream ends at once.
    const none = await collect((await client.responses.retrieve(r.id, { stream: true, starting_after: full.at(-1)!.sequence_number })) as never);
    expect(none).toEqual([]);
  });

  test("a client that drops a live stream and resumes after its last sequence number gets the rest, no gap, no duplicate", async () => {
    const stream = await client.responses.create({ model: "default", input: "[slow] a long one", stream: true });
    const head: Array<{ type: string; sequence_number: number; [k: string]: unknown }> = [];
    for await (const e of stream as AsyncIterable<(typeof head)[number]>) {
      head.push(e);
      if (head.filter((x) => x.type === "response.output_text.delta").length === 3) break;
    }
    const id = (head[0]!.response as { id: string }).id;
    expect((await client.responses.retrieve(id)).status).toBe("in_progress");
    const tail = await collect((await client.responses.retrieve(id, { stream: true, starting_after: head.at(-1)!.sequence_number })) as never);
    const all = [...head, ...tail];
    const done = tail.at(-1)!;
    expect(done.type).toBe("response.completed");
    expect(deltas(all)).toBe((done.response as { output_text: string }).output_text);
    const full = await collect((await client.responses.retrieve(id, { stream: true })) as never);
    expect(all.map((e) => e.sequence_number)).toEqual(full.map((e) => e.sequence_number));
  });

  test("the sequence numbers are the job's cursor ids in /v1", async () => {
    const r = await client.responses.create({ model: "default", input: "cursor ids" });
    const full = await collect((await client.responses.retrieve(r.id, { stream: true })) as never);
    const events = await v1.get(`/v1/jobs/${r.id}/events?since=0`);
    const ids = new Map<number, string>(events.body.events.map((e: { id: number; type: string }) => [e.id, e.type]));
    expect(ids.get(full.find((e) => e.type === "response.completed")!.sequence_number)).toBe("job.completed");
  });
});

describe("responses.cancel", () => {
  test("cancels a background response", async () => {
    const r = await client.responses.create({ model: "default", input: "[slow] take your time", background: true });
    const cancelled = await client.responses.cancel(r.id);
    expect(cancelled.status).toBe("cancelled");
    expect((await client.responses.retrieve(r.id)).status).toBe("cancelled");
  });
});

describe("previous_response_id", () => {
  test("continues the conversation of the previous response", async () => {
    const first = await client.responses.create({ model: "default", input: "first turn" });
    const second = await client.responses.create({ model: "default", input: "second turn", previous_response_id: first.id });
    expect(second.conversation!.id).toBe(first.conversation!.id);
    expect(second.previous_response_id).toBe(first.id);
    expect(second.output_text).toContain("This is message 2 of our conversation");
    expect((await client.responses.retrieve(second.id)).previous_response_id).toBe(first.id);
  });

  test("an unknown previous response is a 400 in OpenAI's shape", async () => {
    const err = await client.responses.create({ model: "default", input: "x", previous_response_id: "resp_nope" }).catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(err.param).toBe("previous_response_id");
  });
});

describe("conversations", () => {
  test("create, respond in it, retrieve, list its items, and read it through /v1", async () => {
    const conv = await client.conversations.create({ metadata: { topic: "compat" } });
    expect(conv.object).toBe("conversation");
    expect(conv.metadata).toEqual({ topic: "compat" });
    const a = await client.responses.create({ model: "default", input: "turn one", conversation: conv.id });
    const b = await client.responses.create({ model: "default", input: "turn two", conversation: conv.id });
    expect(a.conversation!.id).toBe(conv.id);
    expect(b.output_text).toContain("This is message 2");
    expect((await client.conversations.retrieve(conv.id)).metadata).toEqual({ topic: "compat" });

    const items = await client.conversations.items.list(conv.id, { order: "asc" });
    const texts = items.data.map((i) => [(i as { role: string }).role, ((i as { content: Array<{ text: string }> }).content[0]!.text)]);
    expect(texts).toEqual([["user", "turn one"], ["assistant", a.output_text], ["user", "turn two"], ["assistant", b.output_text]]);
    // Newest first by default, paged with after.
    const page1 = await client.conversations.items.list(conv.id, { limit: 3 });
    expect(page1.data.map((i) => i.id)).toEqual(items.data.map((i) => i.id).reverse().slice(0, 3));
    expect(page1.has_more).toBe(true);
    const all: string[] = [];
    for await (const item of client.conversations.items.list(conv.id, { limit: 1 })) all.push(item.id!);
    expect(all as unknown[]).toEqual(items.data.map((i) => i.id).reverse());
    const one = await client.conversations.items.retrieve(items.data[0]!.id!, { conversation_id: conv.id });
    expect(one.id).toBe(items.data[0]!.id);

    const history = await v1.get(`/v1/sessions/${conv.id}/messages`);
    expect(history.status).toBe(200);
    expect(history.body.data.map((m: { content: string }) => m.content)).toEqual(texts.map(([, text]) => text));
  });

  test("delete makes it gone", async () => {
    const conv = await client.conversations.create({});
    expect((await client.conversations.delete(conv.id)).deleted).toBe(true);
    const err = await client.conversations.retrieve(conv.id).catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
  });
});

describe("errors in OpenAI's shape", () => {
  test("an unknown model (agent) is 404 naming model", async () => {
    const err = await client.responses.create({ model: "agt_missing", input: "x" }).catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    expect(err.error).toMatchObject({ type: "invalid_request_error", param: "model", code: "agent_not_found" });
    expect(typeof err.error.message).toBe("string");
  });

  test("an unknown response is 404", async () => {
    const err = await client.responses.retrieve("resp_missing").catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    expect(err.error.type).toBe("invalid_request_error");
  });

  test("a bad key is 401 authentication_error", async () => {
    const bad = new OpenAI({ apiKey: "nope", baseURL: `${server.url}/compat/openai/v1`, maxRetries: 0 });
    const err = await bad.responses.retrieve("resp_x").catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(err.error).toMatchObject({ type: "authentication_error", code: "invalid_api_key" });
  });

  test("a missing input is 400, and both conversation and previous_response_id is 400", async () => {
    const missing = await client.responses.create({ model: "default" } as never).catch((e) => e);
    expect(missing).toBeInstanceOf(OpenAI.BadRequestError);
    expect(missing.error.type).toBe("invalid_request_error");
    const conv = await client.conversations.create({});
    const first = await client.responses.create({ model: "default", input: "a" });
    const both = await client.responses.create({ model: "default", input: "b", conversation: conv.id, previous_response_id: first.id }).catch((e) => e);
    expect(both).toBeInstanceOf(OpenAI.BadRequestError);
  });

  test("bad JSON, an unknown route and a bad query are 4xx in OpenAI's shape, never 500", async () => {
    const base = `${server.url}/compat/openai/v1`;
    const headers = { authorization: `Bearer ${TEST_KEY}`, "content-type": "application/json" };
    const conv = await client.conversations.create({});
    const cases: Array<[string, RequestInit, number]> = [
      ["/responses", { method: "POST", headers, body: "{not json" }, 400],
      ["/responses", { method: "POST", headers, body: JSON.stringify({ model: "default", input: 42 }) }, 400],
      // Items whose content is not a string or a list of parts, or holds a part that is not an object.
      ["/responses", { method: "POST", headers, body: JSON.stringify({ model: "default", input: [{ role: "user", content: 5 }] }) }, 400],
      ["/responses", { method: "POST", headers, body: JSON.stringify({ model: "default", input: [{ role: "user", content: [null] }] }) }, 400],
      ["/responses", { method: "POST", headers, body: JSON.stringify({ model: "default", input: [{ role: "user", content: ["text"] }] }) }, 400],
      ["/nothing-here", { headers }, 404],
      ["/responses/resp_x?stream=maybe", { headers }, 400],
      [`/conversations/${conv.id}/items?order=sideways`, { headers }, 400],
    ];
    for (const [path, init, status] of cases) {
      const res = await fetch(base + path, init);
      expect([path, res.status]).toEqual([path, status]);
      const body = (await res.json()) as { error: Record<string, unknown> };
      expect(typeof body.error.message).toBe("string");
      expect(body.error.type).toBe("invalid_request_error");
      expect("param" in body.error && "code" in body.error).toBe(true);
    }
  });
});

describe("the OpenAPI document", () => {
  test("lists the surface's operations under its own tag", async () => {
    const doc = (await (await fetch(`${server.url}/docs/json`)).json()) as { paths: Record<string, Record<string, { tags?: string[] }>> };
    for (const [path, method] of [["/compat/openai/v1/responses", "post"], ["/compat/openai/v1/responses/{response_id}", "get"],
      ["/compat/openai/v1/responses/{response_id}/cancel", "post"], ["/compat/openai/v1/conversations", "post"],
      ["/compat/openai/v1/conversations/{conversation_id}/items", "get"]] as const) {
      expect([path, doc.paths[path]?.[method]?.tags]).toEqual([path, ["OpenAI Responses (compat)"]]);
    }
  });
});
