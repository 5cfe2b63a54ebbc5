/** Whole turns through the real providers: the server's runner, the SDK, and a local wire-format server. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { api, TEST_KEY, type Api } from "../support/api.ts";
import { startAnthropicWireServer, startOpenAiWireServer, type WireServer } from "../support/llmWireServers.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { shownAt } from "../../src/http/eventView.ts";

for (const provider of ["openai", "anthropic"] as const) {
  describe(`a turn through the ${provider} adapter`, () => {
    let wire: WireServer;
    let server: TestServer;
    let client: Api;
    beforeAll(async () => {
      wire = provider === "openai" ? startOpenAiWireServer() : startAnthropicWireServer();
      server = await startTestServer({
        API_KEY: TEST_KEY, LLM_PROVIDER: provider, LLM_API_KEY: "sk-live-secret-key", LLM_MODEL: "model-x",
        LLM_BASE_URL: provider === "openai" ? wire.baseURL : wire.baseURL.replace(/\/v1$/, ""), LLM_STALL_TIMEOUT_MS: "1000",
      });
      client = api(server.url);
    });
    afterAll(async () => {
      await server?.stop();
      wire?.stop();
    });

    test("text, a tool call and its result go round the model and the turn completes with usage summed per step", async () => {
      const agent = await client.post("/v1/agents", { name: "Assets", approval: "never", system_prompt: "Keep media.", tools: [{ type: "builtin", name: "register_asset" }] });
      const sid = (await client.post("/v1/sessions", { user_id: "u", agent_id: agent.body.id })).body.id;
      wire.script(
        { kind: "tools", text: ["Saving it."], calls: [{ id: "call_1", name: "register_asset", args: "{\"url\":\"https://example.com/a.png\",\"kind\":\"image\"}" }], usage: { prompt: 50, completion: 10, cached: 20 } },
        { kind: "text", chunks: ["Saved as ", "asset_1."], usage: { prompt: 80, completion: 6, cached: 40 } },
      );
      const turn = await client.post(`/v1/sessions/${sid}/messages`, { content: "keep https://example.com/a.png", wait: true });
      expect(turn.body.status).toBe("completed");
      expect(turn.body.reply.content).toBe("Saving it.\n\nSaved as asset_1.");
      expect(turn.body.reply.assets).toEqual(["asset_1"]);
      expect(turn.body.usage).toEqual({ prompt_tokens: 130, completion_tokens: 16, cached_tokens: 60, reasoning_tokens: 0 });
      const usage = (await client.get(`/v1/jobs/${turn.body.job_id}/events?since=0`)).body.events.filter((e: any) => e.type === "usage");
      expect(usage.map((e: any) => [e.payload.step, e.payload.provider, e.payload.model])).toEqual([[1, provider, "model-x"], [2, provider, "model-x"]]);
      // The second model call saw the tool's result.
      const second = JSON.stringify(wire.requests.at(-1)!.body);
      expect(second).toContain("asset_1");
      expect(second).toContain("call_1");
      const h = wire.requests.at(-1)!.headers;
      expect(h.get("authorization") ?? h.get("x-api-key")).toContain("sk-live-secret-key");
    });

    test("each turn shows the model the session's completed turns, in order, and leaves the failed ones out", async () => {
      const sid = (await client.post("/v1/sessions", { user_id: "u" })).body.id;
      const turn = async (content: string, step: Parameters<WireServer["script"]>[0]) => {
        wire.script(step);
        return (await client.post(`/v1/sessions/${sid}/messages`, { content, wait: true })).body;
      };
      expect((await turn("first question", { kind: "text", chunks: ["first answer"], usage: { prompt: 1, completion: 1, cached: 0 } })).status).toBe("completed");
      expect((await turn("doomed question", { kind: "status", status: 400, body: JSON.stringify({ error: { message: "no" } }) })).status).toBe("failed");
      expect((await turn("second question", { kind: "text", chunks: ["second answer"], usage: { prompt: 1, completion: 1, cached: 0 } })).status).toBe("completed");
      await turn("third question", { kind: "text", chunks: ["third answer"], usage: { prompt: 1, completion: 1, cached: 0 } });
      const sent = JSON.stringify(wire.requests.at(-1)!.body);
      const order = ["first question", "first answer", "second question", "second answer", "third question"].map((t) => sent.indexOf(t));
      expect(order.every((at) => at >= 0)).toBe(true);
      expect([...order].sort((a, b) => a - b)).toEqual(order);
      expect(sent).not.toContain("doomed question");
    });

    test("a provider that keeps failing fails the job with a sanitised error, and the session is freed", async () => {
      const sid = (await client.post("/v1/sessions", { user_id: "u" })).body.id;
      // The provider's own request id comes back with the failure, so it can be traced at the provider.
      const upstreamId: Record<string, string> = { [provider === "openai" ? "x-request-id" : "request-id"]: "req_upstream_42" };
      wire.script({ kind: "status", status: 400, headers: upstreamId, body: JSON.stringify({ error: { message: "upstream says sk-live-secret-key is wrong" } }) });
      const turn = await client.post(`/v1/sessions/${sid}/messages`, { content: "hi", wait: true });
      expect(turn.body.status).toBe("failed");
      expect(turn.body.error.code).toBe("invalid_request");
      expect(turn.body.error.provider_request_id).toBe("req_upstream_42");
      expect((await client.get(`/v1/jobs/${turn.body.job_id}`)).body.error.provider_request_id).toBe("req_upstream_42");
      expect(JSON.stringify(turn.body)).not.toContain("sk-live");
      expect((await client.get(`/v1/sessions/${sid}`)).body.status).toBe("idle");
    });

    if (provider === "anthropic") {
      test("thinking is recorded only for agents that ask for it, and only shown at verbosity full", async () => {
        const asks = await client.post("/v1/agents", { name: "Thinker", model: { parameters: { emit_thinking: true, max_tokens: 512 } } });
        const quiet = await client.post("/v1/agents", { name: "Quiet" });
        const turnWith = async (agentId: string) => {
          const sid = (await client.post("/v1/sessions", { user_id: "u", agent_id: agentId })).body.id;
          wire.script({ kind: "text", thinking: ["Let me ", "think."], chunks: ["Answer."] });
          const turn = await client.post(`/v1/sessions/${sid}/messages`, { content: "ponder", wait: true });
          expect(turn.body.reply.content).toBe("Answer.");
          return (await client.get(`/v1/jobs/${turn.body.job_id}/events?since=0`)).body.events as any[];
        };
        const withThinking = await turnWith(asks.body.id);
        expect(withThinking.filter((e) => e.type === "thinking").map((e) => e.payload.content).join("")).toBe("Let me think.");
        const sent = wire.requests.at(-1)!.body;
        expect(sent.emit_thinking).toBeUndefined();
        expect(sent.max_tokens).toBe(512);
        expect((await turnWith(quiet.body.id)).some((e) => e.type === "thinking")).toBe(false);
        expect([shownAt("minimal", "ThinkingEmitted"), shownAt("standard", "ThinkingEmitted"), shownAt("full", "ThinkingEmitted")]).toEqual([false, false, true]);
      });
    }

    test("a stalled stream fails the step instead of hanging the job", async () => {
      const sid = (await client.post("/v1/sessions", { user_id: "u" })).body.id;
      wire.script({ kind: "stall", chunks: ["hmm"] });
      const turn = await client.post(`/v1/sessions/${sid}/messages`, { content: "hi", wait: true, wait_timeout_s: 20 });
      expect(turn.body.status).toBe("failed");
      expect(turn.body.error.code).toBe("timeout");
    });
  });
}
