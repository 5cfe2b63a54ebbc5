/** The OpenAI and Anthropic adapters, through the real SDKs, against local wire-format servers. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { AnthropicProvider } from "../../src/llm/anthropic.ts";
import { OpenAiProvider } from "../../src/llm/openai.ts";
import { LlmError, type LlmChunk, type LlmProvider, type LlmRequest } from "../../src/llm/provider.ts";
import { ResilientProvider } from "../../src/llm/resilient.ts";
import { startAnthropicWireServer, startOpenAiWireServer, type WireServer } from "../support/llmWireServers.ts";

const request = (extra: Partial<LlmRequest> = {}): LlmRequest => ({
  model: null,
  messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hi" }],
  tools: [],
  outputSchema: null,
  parameters: {},
  signal: new AbortController().signal,
  ...extra,
});

async function collect(provider: LlmProvider, req: LlmRequest): Promise<LlmChunk[]> {
  const out: LlmChunk[] = [];
  for await (const c of provider.stream(req)) out.push(c);
  return out;
}

async function failure(provider: LlmProvider, req: LlmRequest): Promise<LlmError> {
  try {
    await collect(provider, req);
  } catch (err) {
    return err as LlmError;
  }
  throw new Error("expected the stream to fail");
}

const textOf = (chunks: LlmChunk[]) => chunks.filter((c) => c.type === "text").map((c) => (c as { delta: string }).delta).join("");
const resilient = (p: LlmProvider, stallTimeoutMs = 2000) => new ResilientProvider(p, { baseDelayMs: 5, maxDelayMs: 50, stallTimeoutMs, maxAttempts: 3 });

const cases: Array<{ name: string; start: () => WireServer; make: (s: WireServer) => LlmProvider; path: string }> = [
  { name: "openai", start: startOpenAiWireServer, make: (s) => new OpenAiProvider({ apiKey: "sk-test-secret", baseURL: s.baseURL, defaultModel: "gpt-test" }), path: "/v1/chat/completions" },
  { name: "anthropic", start: startAnthropicWireServer, make: (s) => new AnthropicProvider({ apiKey: "sk-ant-test-secret", baseURL: s.baseURL.replace(/\/v1$/, ""), defaultModel: "claude-test" }), path: "/v1/messages" },
];

for (const { name, start, make, path } of cases) {
  describe(`${name} adapter`, () => {
    let server: WireServer;
    let provider: LlmProvider;
    beforeAll(() => {
      server = start();
      provider = resilient(make(server));
    });
    afterAll(() => server.stop());

    test("streams text deltas and reports usage, cached tokens included", async () => {
      server.script({ kind: "text", chunks: ["Hel", "lo ", "there"], usage: { prompt: 120, completion: 7, cached: 100, reasoning: name === "openai" ? 3 : 0 } });
      const chunks = await collect(provider, request());
      expect(textOf(chunks)).toBe("Hello there");
      expect(chunks.filter((c) => c.type === "text").length).toBe(3);
      expect(chunks.find((c) => c.type === "usage")).toMatchObject({ prompt_tokens: 120, completion_tokens: 7, cached_tokens: 100 });
      expect(chunks.at(-1)).toEqual({ type: "finish", reason: "stop" });
      const sent = server.requests.at(-1)!;
      expect(sent.path).toBe(path);
      expect(sent.body.stream).toBe(true);
    });

    test("assembles tool calls whose arguments arrive split across chunks", async () => {
      server.script({ kind: "tools", text: ["Looking"], calls: [{ id: "call_a", name: "lookup_order", args: JSON.stringify({ id: 42, note: "split me" }), pieces: 4 }, { id: "call_b", name: "register_asset", args: "{\"url\":\"https://x/y.png\",\"kind\":\"image\"}" }] });
      const chunks = await collect(provider, request({ tools: [{ name: "lookup_order", description: "Find an order", parameters: { type: "object" } }] }));
      const calls = chunks.filter((c) => c.type === "tool_call").map((c) => (c as { call: unknown }).call);
      expect(calls).toEqual([
        { id: "call_a", name: "lookup_order", args: { id: 42, note: "split me" } },
        { id: "call_b", name: "register_asset", args: { url: "https://x/y.png", kind: "image" } },
      ]);
      expect(chunks.at(-1)).toEqual({ type: "finish", reason: "tool_calls" });
      const body = server.requests.at(-1)!.body;
      expect(JSON.stringify(body.tools)).toContain("lookup_order");
    });

    test("sends the conversation with tool calls and results in the provider's own shape", async () => {
      server.script({ kind: "text", chunks: ["ok"] });
      await collect(provider, request({ messages: [
        { role: "system", content: "sys" },
        { role: "user", content: "find 42" },
        { role: "assistant", content: "", tool_calls: [{ id: "call_1", name: "lookup_order", args: { id: 42 } }] },
        { role: "tool", tool_call_id: "call_1", name: "lookup_order", content: "{\"state\":\"shipped\"}" },
      ] }));
      const body = server.requests.at(-1)!.body;
      if (name === "openai") {
        expect(body.messages.map((m: any) => m.role)).toEqual(["system", "user", "assistant", "tool"]);
        expect(body.messages[2].tool_calls[0]).toMatchObject({ id: "call_1", function: { name: "lookup_order", arguments: "{\"id\":42}" } });
        expect(body.messages[3]).toMatchObject({ tool_call_id: "call_1" });
      } else {
        expect(body.system).toBe("sys");
        expect(body.messages.map((m: any) => m.role)).toEqual(["user", "assistant", "user"]);
        expect(body.messages[1].content[0]).toMatchObject({ type: "tool_use", id: "call_1", input: { id: 42 } });
        expect(body.messages[2].content[0]).toMatchObject({ type: "tool_result", tool_use_id: "call_1" });
      }
    });

    test("429 with retry-after is retried, honouring the delay", async () => {
      const before = server.requests.length;
      server.script({ kind: "status", status: 429, headers: { "retry-after": "0" } }, { kind: "text", chunks: ["after retry"] });
      expect(textOf(await collect(provider, request()))).toBe("after retry");
      expect(server.requests.length - before).toBe(2);
    });

    test("5xx is retried a bounded number of times, then fails as unavailable", async () => {
      const before = server.requests.length;
      server.script({ kind: "status", status: 500 }, { kind: "status", status: 503 }, { kind: "status", status: 500 });
      const err = await failure(provider, request());
      expect(err).toBeInstanceOf(LlmError);
      expect(err.code).toBe("provider_unavailable");
      expect(server.requests.length - before).toBe(3);
    });

    test("other 4xx fail at once with a sanitised message: no key, no upstream body", async () => {
      const before = server.requests.length;
      server.script({ kind: "status", status: 400 });
      const err = await failure(provider, request());
      expect(err.code).toBe("invalid_request");
      expect(err.retryable).toBe(false);
      expect(err.message).not.toContain("secret");
      expect(server.requests.length - before).toBe(1);
      server.script({ kind: "status", status: 401 });
      const auth = await failure(provider, request());
      expect(auth.message).toContain("check the API key");
      expect(auth.message).not.toContain("sk-");
    });

    test("a disconnect after text was streamed fails without a retry that would repeat it", async () => {
      const before = server.requests.length;
      server.script({ kind: "disconnect", chunks: ["partial ", "answer"] });
      const seen: string[] = [];
      let err: unknown;
      try {
        for await (const c of provider.stream(request())) if (c.type === "text") seen.push(c.delta);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(LlmError);
      expect(seen.join("")).toBe("partial answer");
      expect(server.requests.length - before).toBe(1);
    });

    test("a malformed chunk fails the stream", async () => {
      server.script({ kind: "malformed", chunks: ["x"] });
      expect(await failure(provider, request())).toBeInstanceOf(LlmError);
    });

    test("a model that stalls mid-stream times out instead of hanging", async () => {
      const stalling = resilient(make(server), 300);
      server.script({ kind: "stall", chunks: ["thinking..."] });
      // Without the stall timeout this call would never return (the server sends nothing more).
      const err = await failure(stalling, request());
      expect(err.code).toBe("timeout");
    });
  });
}

test("openai: an output schema asks for the JSON-schema response format (unless turned off)", async () => {
  const server = startOpenAiWireServer();
  try {
    const provider = new OpenAiProvider({ apiKey: "k", baseURL: server.baseURL });
    const schema = { type: "object", properties: { a: { type: "integer" } } };
    server.script({ kind: "text", chunks: ["{\"a\":1}"] }, { kind: "text", chunks: ["{\"a\":1}"] });
    await collect(provider, request({ outputSchema: schema }));
    expect(server.requests.at(-1)!.body.response_format).toEqual({ type: "json_schema", json_schema: { name: "result", schema, strict: false } });
    await collect(provider, request({ outputSchema: schema, parameters: { json_schema_response_format: false, temperature: 0.1 } }));
    expect(server.requests.at(-1)!.body.response_format).toBeUndefined();
    expect(server.requests.at(-1)!.body.temperature).toBe(0.1);
  } finally {
    server.stop();
  }
});

test("anthropic: thinking deltas are surfaced as thinking chunks", async () => {
  const server = startAnthropicWireServer();
  try {
    const provider = new AnthropicProvider({ apiKey: "k", baseURL: server.baseURL.replace(/\/v1$/, "") });
    server.script({ kind: "text", thinking: ["Let me ", "think."], chunks: ["Answer."] });
    const chunks = await collect(provider, request());
    expect(chunks.filter((c) => c.type === "thinking").map((c) => (c as { delta: string }).delta).join("")).toBe("Let me think.");
    expect(textOf(chunks)).toBe("Answer.");
  } finally {
    server.stop();
  }
});
