/**
 * The OpenAI Responses-compatible surface (/compat/openai/v1), driven by the real `openai` SDK against
 * a real server with the sandbox provider: create (sync, background, stream), retrieve, resume a
 * stream with starting_after, cancel, previous_response_id chaining, conversations, errors, and the
 * same conversation read through /v1.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import { api, TEST_KEY, type Api } from "../support/api.ts";
import { DEFAULT_APP_ID } from "../../src/domain/streams.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const ROOT = "root-token-openai-0123456789abcdef";
/** Sequence numbers per job event (docs/compat.md): the i-th stream event of job event N is N * 8 + i. */
const K = 8;

let server: TestServer;
let client: OpenAI;
let v1: Api;

beforeAll(async () => {
  server = await startTestServer({ API_KEY: TEST_KEY, ADMIN_TOKEN: ROOT, SANDBOX_CHUNK_DELAY_MS: "3" });
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
    const at = (type: string) => ids.get(Math.floor(full.find((e) => e.type === type)!.sequence_number / K));
    expect(at("response.created")).toBe("job.queued");
    expect(at("response.in_progress")).toBe("job.started");
    expect(at("response.completed")).toBe("job.completed");
    expect(at("response.output_text.done")).toBe("job.completed");
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

/** The JobQueued data of a response, as stored: what its turn was given. */
async function queuedInput(id: string): Promise<{ content: string; context: Record<string, unknown> | null }> {
  for await (const e of server.ctx.store.readStream(`job-${id}`, { maxCount: 1 })) return (e.data as { input: { content: string; context: Record<string, unknown> | null } }).input;
  throw new Error(`no job ${id}`);
}

/** Waits for a response to end: its stream closes after its terminal event. */
const untilEnded = async (id: string) => collect((await client.responses.retrieve(id, { stream: true })) as never);

describe("starting_after past the head of the stream", () => {
  test("on a running response, the stream sends what is numbered after it and ends with the response", async () => {
    const r = await client.responses.create({ model: "default", input: "[slow] far ahead", background: true });
    // A number several job events past the head now: no event of the job has it yet.
    const head = (await v1.get(`/v1/jobs/${r.id}/events?since=0`)).body.cursor as number;
    const ahead = (head + 4) * K + 2;
    const rest = await collect((await client.responses.retrieve(r.id, { stream: true, starting_after: ahead })) as never);
    expect((await client.responses.retrieve(r.id)).status).toBe("completed");
    const full = await collect((await client.responses.retrieve(r.id, { stream: true })) as never);
    expect(rest.map((e) => e.sequence_number)).toEqual(full.filter((e) => e.sequence_number > ahead).map((e) => e.sequence_number));
    expect(rest.at(-1)!.type).toBe("response.completed");
    // Past the end of a running response too: nothing to send, and it still ends when the response does.
    const late = await client.responses.create({ model: "default", input: "[slow] never reached", background: true });
    const none = await collect((await client.responses.retrieve(late.id, { stream: true, starting_after: 1_000_000_000 })) as never);
    expect(none).toEqual([]);
    expect((await client.responses.retrieve(late.id)).status).toBe("completed");
  }, 60_000);

  test("on a finished response, the stream ends at once", async () => {
    const r = await client.responses.create({ model: "default", input: "finished first" });
    for (const after of [r.id.length, 1_000_000_000]) {
      const none = await collect((await client.responses.retrieve(r.id, { stream: true, starting_after: 10 * K * after })) as never);
      expect(none).toEqual([]);
    }
  });
});

describe("the SDK's responses.stream() helper", () => {
  test("builds the final response from the item, content part and text events, in order", async () => {
    const stream = client.responses.stream({ model: "default", input: "helper stream" });
    const events: Array<{ type: string; sequence_number: number; [k: string]: unknown }> = [];
    for await (const e of stream) events.push(e as never);
    const final = await stream.finalResponse();
    expect(final.status).toBe("completed");
    expect(final.output_text).toContain("Sandbox reply to «helper stream»");
    expect(final.output_text).toBe(deltas(events));
    // The order the helper builds its response from, with one item id throughout.
    const shape = events.map((e) => e.type).filter((t, i, all) => t !== "response.output_text.delta" || all[i - 1] !== t);
    expect(shape).toEqual([
      "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added", "response.output_text.delta",
      "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed",
    ]);
    const itemId = (events.find((e) => e.type === "response.output_item.added")!.item as { id: string }).id;
    for (const e of events.filter((x) => "item_id" in x)) expect([e.type, e.item_id, e.output_index, e.content_index]).toEqual([e.type, itemId, 0, 0]);
    expect((events.find((e) => e.type === "response.output_item.done")!.item as { id: string; status: string })).toMatchObject({ id: itemId, status: "completed" });
    expect(final.output.map((o) => o.id)).toEqual([itemId]);
    const seq = events.map((e) => e.sequence_number);
    expect(seq).toEqual([...seq].sort((a, b) => a - b));
    expect(new Set(seq).size).toBe(seq.length);
  });

  test("a stream resumed from the middle of one job event's events has no gap and no duplicate", async () => {
    const r = await client.responses.create({ model: "default", input: "resume between parts", background: true });
    const full = await collect((await client.responses.retrieve(r.id, { stream: true })) as never);
    expect(full.at(-1)!.type).toBe("response.completed");
    for (const type of ["response.output_item.added", "response.content_part.added", "response.output_text.done", "response.content_part.done", "response.output_item.done"]) {
      const cut = full.findIndex((e) => e.type === type);
      const head = full.slice(0, cut + 1);
      const tail = await collect((await client.responses.retrieve(r.id, { stream: true, starting_after: head.at(-1)!.sequence_number })) as never);
      expect([type, ...[...head, ...tail].map((e) => `${e.sequence_number} ${e.type}`)]).toEqual([type, ...full.map((e) => `${e.sequence_number} ${e.type}`)]);
    }
    // The helper replaying a response by id builds the same response.
    const replay = client.responses.stream({ response_id: r.id, starting_after: full[3]!.sequence_number });
    const replayed: string[] = [];
    for await (const e of replay) replayed.push(e.type);
    expect(replayed).toEqual(full.slice(4).map((e) => e.type));
    expect((await replay.finalResponse()).output_text).toBe((full.at(-1)!.response as { output_text: string }).output_text);
  });
});

describe("what a response echoes of its create", () => {
  test("previous_response_id and conversation are the same on create, in the stream, and on retrieve", async () => {
    const first = await client.responses.create({ model: "default", input: "chain one" });
    const second = await client.responses.create({ model: "default", input: "chain two", previous_response_id: first.id });
    // Naming an older response continues the conversation at its end; the response says what it was sent.
    const third = await client.responses.create({ model: "default", input: "chain three", previous_response_id: first.id });
    expect(third.previous_response_id).toBe(first.id);
    expect(third.output_text).toContain("This is message 3");
    for (const r of [first, second, third]) {
      const got = await client.responses.retrieve(r.id);
      expect([r.id, got.previous_response_id, got.conversation]).toEqual([r.id, r.previous_response_id, r.conversation]);
    }
    expect(first.previous_response_id).toBeNull();
    // In a named conversation no previous response was named: none is shown.
    const inConv = await client.responses.create({ model: "default", input: "chain four", conversation: first.conversation!.id });
    expect(inConv.previous_response_id).toBeNull();
    expect((await client.responses.retrieve(inConv.id)).previous_response_id).toBeNull();
    // A streamed create's snapshots say the same.
    const events = await collect((await client.responses.create({ model: "default", input: "chain five", previous_response_id: inConv.id, stream: true })) as never);
    const created = events[0]!.response as OpenAI.Responses.Response;
    expect(created.previous_response_id).toBe(inConv.id);
    const got = await client.responses.retrieve(created.id);
    expect([got.previous_response_id, got.conversation]).toEqual([created.previous_response_id, created.conversation]);
  });

  test("metadata, instructions and background are echoed on create and retrieve; instructions reach the turn", async () => {
    const metadata = { order: "A-17", channel: "web" };
    const r = await client.responses.create({ model: "default", input: "with tags", metadata, instructions: "Answer in one sentence.", background: true });
    expect([r.metadata, r.instructions, r.background]).toEqual([metadata, "Answer in one sentence.", true]);
    await untilEnded(r.id);
    const got = await client.responses.retrieve(r.id);
    expect(got.status).toBe("completed");
    expect([got.metadata, got.instructions, got.background]).toEqual([metadata, "Answer in one sentence.", true]);
    expect((await queuedInput(r.id)).context).toEqual({ instructions: "Answer in one sentence." });
    const plain = await client.responses.create({ model: "default", input: "no tags" });
    expect([plain.metadata, plain.instructions, plain.background]).toEqual([{}, null, false]);
    expect(await client.responses.retrieve(plain.id)).toMatchObject({ metadata: {}, instructions: null, background: false });
  });

  test("developer and system messages in input are the turn's instructions, never dropped; other roles are refused", async () => {
    const r = await client.responses.create({
      model: "default", instructions: "Be brief.",
      input: [
        { role: "developer", content: "Answer in French." },
        { role: "system", content: [{ type: "input_text", text: "Never mention prices." }] },
        { role: "user", content: "bonjour" },
      ],
    });
    expect(r.status).toBe("completed");
    expect(r.output_text).toContain("bonjour");
    // The echo is the instructions field, as at OpenAI; the turn is given all three.
    expect(r.instructions).toBe("Be brief.");
    const input = await queuedInput(r.id);
    expect(input.content).toBe("bonjour");
    expect(input.context).toEqual({ instructions: "Be brief.\n\nAnswer in French.\n\nNever mention prices." });
    const odd = await client.responses.create({ model: "default", input: [{ role: "critic", content: "x" }, { role: "user", content: "y" }] } as never).catch((e) => e);
    expect(odd).toBeInstanceOf(OpenAI.BadRequestError);
    expect(odd.param).toBe("input");
    const image = await client.responses.create({
      model: "default", input: [{ role: "developer", content: [{ type: "input_image", image_url: "https://example.com/a.png", detail: "auto" }] }, { role: "user", content: "y" }],
    } as never).catch((e) => e);
    expect(image).toBeInstanceOf(OpenAI.BadRequestError);
  });
});

describe("busy conversations and cancelling ended responses", () => {
  test("a response in a conversation with one still running is a 409 in OpenAI's shape, naming the running one", async () => {
    const running = await client.responses.create({ model: "default", input: "[slow] hold the conversation", background: true });
    const busy = await client.responses.create({ model: "default", input: "me too", conversation: running.conversation!.id }).catch((e) => e);
    expect(busy).toBeInstanceOf(OpenAI.ConflictError);
    expect(busy.status).toBe(409);
    expect(busy.error).toMatchObject({ type: "invalid_request_error", code: "session_busy", param: "conversation" });
    expect(busy.error.message).toContain(running.id);
    const chained = await client.responses.create({ model: "default", input: "me too", previous_response_id: running.id }).catch((e) => e);
    expect(chained).toBeInstanceOf(OpenAI.ConflictError);
    expect((await client.responses.cancel(running.id)).status).toBe("cancelled");
    // Once it has ended, the conversation takes the next response.
    expect((await client.responses.create({ model: "default", input: "now", conversation: running.conversation!.id })).status).toBe("completed");
  });

  test("an ended response is answered as it is when it was created in the background, and refused with 400 when not", async () => {
    const background = await client.responses.create({ model: "default", input: "finish in the background", background: true });
    await untilEnded(background.id);
    const done = await client.responses.retrieve(background.id);
    expect(done.status).toBe("completed");
    const again = await client.responses.cancel(background.id);
    expect([again.status, again.output_text]).toEqual(["completed", done.output_text]);
    const cancelled = await client.responses.create({ model: "default", input: "[slow] cancel me twice", background: true });
    expect((await client.responses.cancel(cancelled.id)).status).toBe("cancelled");
    expect((await client.responses.cancel(cancelled.id)).status).toBe("cancelled");

    const sync = await client.responses.create({ model: "default", input: "finished in the foreground" });
    const refused = await client.responses.cancel(sync.id).catch((e) => e);
    expect(refused).toBeInstanceOf(OpenAI.BadRequestError);
    expect(refused.error).toMatchObject({ type: "invalid_request_error", code: "response_not_cancellable" });
    expect((await client.responses.retrieve(sync.id)).status).toBe("completed");
  });
});

describe("who may see a response", () => {
  const bearer = { authorization: `Bearer ${ROOT}` };
  const base = () => `${server.url}/compat/openai/v1`;
  async function newAppKey(name: string, scopes?: string[], limits?: Record<string, number>): Promise<string> {
    const root = api(server.url, "");
    const app = (await root.post("/v1/apps", { name }, bearer)).body.id as string;
    if (limits) expect((await root.put(`/v1/apps/${app}/rate_limits`, { per_key: limits }, bearer)).status).toBe(200);
    return (await root.post(`/v1/apps/${app}/keys`, { name, ...(scopes ? { scopes } : {}) }, bearer)).body.key as string;
  }

  test("another app's key finds neither this app's responses nor its conversations (404)", async () => {
    const r = await client.responses.create({ model: "default", input: "ours only", background: true });
    const other = new OpenAI({ apiKey: await newAppKey("Other OpenAI app"), baseURL: base(), maxRetries: 0 });
    const conv = r.conversation!.id;
    const refused = [
      await other.responses.retrieve(r.id).catch((e) => e),
      await other.responses.retrieve(r.id, { stream: true }).catch((e) => e),
      await other.responses.cancel(r.id).catch((e) => e),
      await other.responses.inputItems.list(r.id).catch((e) => e),
      await other.conversations.retrieve(conv).catch((e) => e),
      await other.conversations.items.list(conv).catch((e) => e),
      await other.conversations.delete(conv).catch((e) => e),
      await other.responses.create({ model: "default", input: "x", conversation: conv }).catch((e) => e),
    ];
    expect(refused.map((e) => e?.constructor?.name)).toEqual(Array(refused.length).fill("NotFoundError"));
    for (const e of refused) expect(e.error.type).toBe("invalid_request_error");
    const chained = await other.responses.create({ model: "default", input: "x", previous_response_id: r.id }).catch((e) => e);
    expect(chained).toBeInstanceOf(OpenAI.BadRequestError);
    expect(chained.error.code).toBe("previous_response_not_found");
    // Nothing of ours was changed by any of it.
    expect((await client.responses.retrieve(r.id)).status).not.toBe("cancelled");
    expect((await client.conversations.retrieve(conv)).id).toBe(conv);
  });

  test("an end user's token sees its own user's responses only", async () => {
    const token = (await v1.post("/v1/end-user-tokens", { user_id: "alice" })).body.token as string;
    const alice = new OpenAI({ apiKey: token, baseURL: base(), maxRetries: 0 });
    const own = await alice.responses.create({ model: "default", input: "alice asks", user: "bob" });
    expect(own.status).toBe("completed");
    expect((await v1.get(`/v1/sessions/${own.conversation!.id}`)).body.user_id).toBe("alice");
    expect((await alice.responses.retrieve(own.id)).output_text).toBe(own.output_text);
    const bobs = await client.responses.create({ model: "default", input: "bob asks", user: "bob", background: true });
    const refused = [
      await alice.responses.retrieve(bobs.id).catch((e) => e),
      await alice.responses.retrieve(bobs.id, { stream: true }).catch((e) => e),
      await alice.responses.cancel(bobs.id).catch((e) => e),
      await alice.conversations.retrieve(bobs.conversation!.id).catch((e) => e),
      await alice.responses.create({ model: "default", input: "x", conversation: bobs.conversation!.id }).catch((e) => e),
    ];
    expect(refused.map((e) => e?.constructor?.name)).toEqual(Array(refused.length).fill("PermissionDeniedError"));
    for (const e of refused) expect(e.error.type).toBe("permission_error");
    expect((await client.responses.retrieve(bobs.id)).status).not.toBe("cancelled");
  });

  test("a key without the scope a call needs gets 403 permission_error", async () => {
    const root = api(server.url, "");
    const readOnly = (await root.post(`/v1/apps/${DEFAULT_APP_ID}/keys`, { name: "openai read", scopes: ["data:read"] }, bearer)).body.key as string;
    const reader = new OpenAI({ apiKey: readOnly, baseURL: base(), maxRetries: 0 });
    const r = await client.responses.create({ model: "default", input: "read me" });
    expect((await reader.responses.retrieve(r.id)).id).toBe(r.id);
    for (const call of [() => reader.responses.create({ model: "default", input: "x" }), () => reader.responses.cancel(r.id), () => reader.conversations.create({})]) {
      const err = await call().catch((e) => e);
      expect(err).toBeInstanceOf(OpenAI.PermissionDeniedError);
      expect(err.error).toMatchObject({ type: "permission_error", code: "insufficient_scope" });
    }
  });

  test("rate limits: OpenAI's x-ratelimit-*-requests headers; over the limit 429 in OpenAI's shape; a response is a heavy call", async () => {
    const key = await newAppKey("Rate limited OpenAI", undefined, { requests_per_minute: 2 });
    const answers: Response[] = [];
    for (let i = 0; i < 3; i++) answers.push(await fetch(`${base()}/conversations/conv_missing`, { headers: { authorization: `Bearer ${key}` } }));
    expect(answers[0]!.headers.get("x-ratelimit-limit-requests")).toBe("2");
    expect(answers[0]!.headers.get("x-ratelimit-remaining-requests")).toBe("1");
    expect(answers[0]!.headers.get("x-ratelimit-reset-requests")).toMatch(/^(\d+m)?\d+s$/);
    const limited = answers[2]!;
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0);
    const body = (await limited.json()) as { error: Record<string, unknown> };
    expect(body.error).toMatchObject({ type: "requests", code: "rate_limit_exceeded", param: null });
    expect(typeof body.error.message).toBe("string");
    const sdk = await new OpenAI({ apiKey: key, baseURL: base(), maxRetries: 0 }).responses.retrieve("resp_x").catch((e) => e);
    expect(sdk).toBeInstanceOf(OpenAI.RateLimitError);

    // Creating a response starts a turn, as a /v1 message does: it spends the heavy budget.
    const heavyKey = await newAppKey("Heavy OpenAI", ["data:write", "agents:manage"], { requests_per_minute: 100, heavy_per_minute: 1 });
    const heavy = new OpenAI({ apiKey: heavyKey, baseURL: base(), maxRetries: 0 });
    const first = await heavy.responses.create({ model: "default", input: "one" });
    expect(first.status).toBe("completed");
    const second = await heavy.responses.create({ model: "default", input: "two" }).catch((e) => e);
    expect(second).toBeInstanceOf(OpenAI.RateLimitError);
    expect((await heavy.responses.retrieve(first.id)).id).toBe(first.id);
  });
});

describe("approvals (mcp_approval_request / mcp_approval_response)", () => {
  // The default agent asks before it registers an asset; OpenAI's SDK words such a pause as an
  // mcp_approval_request output item, answered with an mcp_approval_response input item.
  const ASK = "register https://example.com/cat.png as an asset";
  /** The HTTP status an SDK call failed with (0: it did not fail). */
  const statusOf = (call: PromiseLike<unknown>) => Promise.resolve(call).then(() => 0, (err: { status?: number }) => err.status ?? -1);

  test("a sync create stops at the request; approving continues the same response to its end", async () => {
    const r = await client.responses.create({ model: "default", input: ASK });
    // As at OpenAI, a response ending with an approval request is completed: a poll loop stops there.
    expect(r.status).toBe("completed");
    const request = r.output.find((o) => o.type === "mcp_approval_request") as any;
    expect(request).toMatchObject({ type: "mcp_approval_request", name: "register_asset", server_label: "agentry" });
    expect(JSON.parse(request.arguments).steps[0]).toMatchObject({ tool: "register_asset" });
    // Answering something else, or without the response it continues, is refused.
    expect(await statusOf(client.responses.create({ input: [{ type: "mcp_approval_response", approval_request_id: "mcpr_nope", approve: true }] as any, previous_response_id: r.id }))).toBe(400);
    expect(await statusOf(client.responses.create({ input: [{ type: "mcp_approval_response", approval_request_id: request.id, approve: true }] as any }))).toBe(400);
    const done = await client.responses.create({
      input: [{ type: "mcp_approval_response", approval_request_id: request.id, approve: true }] as any, previous_response_id: r.id,
    });
    expect(done.id).toBe(r.id);
    expect(done.status).toBe("completed");
    expect(done.output_text).toContain("register_asset");
    expect(done.output.map((o) => o.type)).toEqual(["message", "mcp_approval_request"]);
    // It is answered: a second answer is refused.
    expect(await statusOf(client.responses.create({
      input: [{ type: "mcp_approval_response", approval_request_id: request.id, approve: true }] as any, previous_response_id: r.id,
    }))).toBe(400);
    expect((await client.responses.retrieve(r.id)).output.map((o) => o.type)).toEqual(["message", "mcp_approval_request"]);
  });

  test("a stream ends at the request; the answer's stream carries on, numbered after it; rejecting ends the response", async () => {
    const first = await collect(await client.responses.create({ model: "default", input: ASK, stream: true }) as any);
    const added = first.filter((e) => e.type === "response.output_item.added").map((e: any) => e.item.type);
    expect(added).toContain("mcp_approval_request");
    // The stream ends as OpenAI's does at an approval request: response.completed, its output ending with the request.
    expect(first.at(-1)!.type).toBe("response.completed");
    expect((first.at(-1) as any).response.output.at(-1).type).toBe("mcp_approval_request");
    const request = (first.at(-1) as any).response.output.at(-1);
    const responseId = (first[0] as any).response.id as string;
    // A resume past its head while it waits ends at once, as for a finished response.
    const parked = await collect(await client.responses.retrieve(responseId, { stream: true, starting_after: first.at(-1)!.sequence_number + 1000 }) as any);
    expect(parked).toEqual([]);
    // The SDK's stream helper takes the answer: created, in progress, then the rest, to its final response.
    const answer = client.responses.stream({
      input: [{ type: "mcp_approval_response", approval_request_id: request.id, approve: true }] as any, previous_response_id: responseId,
    } as any);
    const rest: any[] = [];
    for await (const e of answer) rest.push(e);
    const final = await answer.finalResponse();
    expect(final.id).toBe(responseId);
    expect(final.status).toBe("completed");
    expect(final.output_text).toContain("register_asset");
    expect(rest.slice(0, 2).map((e) => e.type)).toEqual(["response.created", "response.in_progress"]);
    expect(rest.at(-1)!.type).toBe("response.completed");
    expect(rest[0]!.sequence_number).toBeGreaterThan(first.at(-1)!.sequence_number);
    // The two streams together are the whole response's stream, as a replay from the start gives it
    // (but the pause's completed event, sent only to a stream that stopped there).
    const replay = await collect(await client.responses.retrieve(responseId, { stream: true }) as any);
    expect([...first.slice(0, -1), ...rest].map((e) => e.sequence_number)).toEqual(replay.map((e) => e.sequence_number));

    const again = await client.responses.create({ model: "default", input: ASK });
    const ask = again.output.find((o) => o.type === "mcp_approval_request") as any;
    const rejected = await client.responses.create({
      input: [{ type: "mcp_approval_response", approval_request_id: ask.id, approve: false, reason: "not this one" }] as any, previous_response_id: again.id,
    });
    expect(rejected.status).toBe("cancelled");

    // As at OpenAI, a client may leave an approval request unanswered and go on: the plan is declined
    // (nothing of it runs) and the new input is the next response.
    const unanswered = await client.responses.create({ model: "default", input: ASK });
    expect(unanswered.status).toBe("completed");
    // An input that is then refused (too large to store) leaves the plan waiting, and answerable.
    expect(await statusOf(client.responses.create({ input: [{ role: "user", content: "x".repeat(1_200_000) }], previous_response_id: unanswered.id }))).toBe(413);
    expect((await client.responses.retrieve(unanswered.id)).output.at(-1)?.type).toBe("mcp_approval_request");
    expect((await v1.get(`/v1/jobs/${unanswered.id}`)).body.status).toBe("awaiting_approval");
    const moved = await client.responses.create({ input: "Never mind, just say hi.", previous_response_id: unanswered.id });
    expect(moved.status).toBe("completed");
    expect(moved.output_text).toContain("Never mind");
    expect((await client.responses.retrieve(unanswered.id)).status).toBe("cancelled");
    // The conversation is free again.
    const next = await client.responses.create({ input: "thanks anyway", previous_response_id: again.id });
    expect(next.status).toBe("completed");
  });
});

test("metadata: keys of at most 64 characters, and a user_id our users API can name and erase", async () => {
  const statusOf = (call: PromiseLike<unknown>) => Promise.resolve(call).then(() => 0, (err: { status?: number }) => err.status ?? -1);
  expect(await statusOf(client.conversations.create({ metadata: { user_id: "" } }))).toBe(400);
  expect(await statusOf(client.conversations.create({ metadata: { user_id: "u".repeat(201) } }))).toBe(400);
  expect(await statusOf(client.conversations.create({ metadata: { ["k".repeat(65)]: "v" } }))).toBe(400);
  expect(await statusOf(client.responses.create({ input: "hi", metadata: { ["k".repeat(65)]: "v" } }))).toBe(400);
  const ok = await client.conversations.create({ metadata: { user_id: "u".repeat(200), ["k".repeat(64)]: "v" } });
  expect(ok.id).toBeTruthy();
});
