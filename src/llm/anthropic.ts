/**
 * Anthropic Messages API, streamed, with tool use. Thinking deltas are passed on as `thinking` chunks
 * (the runner records them only where asked). Usage counts cache reads as cached tokens.
 */
import Anthropic from "@anthropic-ai/sdk";
import { fileAsText, LlmError, type ChatMessage, type LlmChunk, type LlmProvider, type LlmRequest } from "./provider.ts";
import { retryAfterMs } from "./resilient.ts";

export interface AnthropicOptions {
  apiKey: string;
  /** An OAuth access token, sent as `Authorization: Bearer` instead of the API key (an end user's sign-in). */
  authToken?: string;
  baseURL?: string;
  defaultModel?: string;
  /** Extra headers sent with every request (a connection's `headers`). */
  headers?: Record<string, string>;
}

type Block =
  | { type: "text"; text: string }
  | { type: "image"; source: { type: "base64"; media_type: string; data: string } }
  | { type: "tool_use"; id: string; name: string; input: unknown }
  | { type: "tool_result"; tool_use_id: string; content: string };

export class AnthropicProvider implements LlmProvider {
  readonly name = "anthropic";
  readonly defaultModel: string;
  private readonly client: Anthropic;

  constructor(options: AnthropicOptions) {
    this.defaultModel = options.defaultModel ?? "claude-sonnet-5-5";
    this.client = new Anthropic({
      ...(options.authToken ? { apiKey: null, authToken: options.authToken } : { apiKey: options.apiKey }),
      baseURL: options.baseURL, maxRetries: 0, timeout: 10 * 60_000,
      ...(options.headers && Object.keys(options.headers).length ? { defaultHeaders: options.headers } : {}),
    });
  }

  async *stream(request: LlmRequest): AsyncIterable<LlmChunk> {
    const { max_tokens, ...parameters } = request.parameters as { max_tokens?: number };
    const system = request.messages.filter((m) => m.role === "system").map((m) => m.content).join("\n\n");
    const body = {
      ...parameters,
      model: request.model ?? this.defaultModel,
      max_tokens: max_tokens ?? 4096,
      ...(system ? { system } : {}),
      messages: toAnthropicMessages(request.messages),
      stream: true as const,
      ...(request.tools.length ? { tools: request.tools.map((t) => ({ name: t.name, description: t.description, input_schema: t.parameters as Anthropic.Tool.InputSchema })) } : {}),
    };
    const tools = new Map<number, { id: string; name: string; json: string }>();
    let promptTokens = 0;
    let cachedTokens = 0;
    let outputTokens = 0;
    let stop: string | null = null;
    try {
      const stream = await this.client.messages.create(body as Anthropic.MessageCreateParamsStreaming, { signal: request.signal });
      for await (const event of stream) {
        switch (event.type) {
          case "message_start":
            promptTokens = event.message.usage.input_tokens + (event.message.usage.cache_creation_input_tokens ?? 0) + (event.message.usage.cache_read_input_tokens ?? 0);
            cachedTokens = event.message.usage.cache_read_input_tokens ?? 0;
            outputTokens = event.message.usage.output_tokens ?? 0;
            break;
          case "content_block_start":
            if (event.content_block.type === "tool_use") tools.set(event.index, { id: event.content_block.id, name: event.content_block.name, json: "" });
            break;
          case "content_block_delta":
            if (event.delta.type === "text_delta") yield { type: "text", delta: event.delta.text };
            else if (event.delta.type === "input_json_delta") {
              const t = tools.get(event.index);
              if (t) t.json += event.delta.partial_json;
            } else if (event.delta.type === "thinking_delta") yield { type: "thinking", delta: event.delta.thinking };
            break;
          case "message_delta":
            stop = event.delta.stop_reason ?? stop;
            outputTokens = event.usage.output_tokens ?? outputTokens;
            break;
          default:
            break;
        }
      }
    } catch (err) {
      throw translateAnthropicError(err);
    }
    for (const [, t] of [...tools.entries()].sort((a, b) => a[0] - b[0])) {
      let args: unknown = {};
      try {
        args = t.json.trim() ? JSON.parse(t.json) : {};
      } catch {
        throw new LlmError("provider_error", "anthropic sent tool input that is not valid JSON", false);
      }
      yield { type: "tool_call", call: { id: t.id, name: t.name, args } };
    }
    yield { type: "usage", prompt_tokens: promptTokens, completion_tokens: outputTokens, cached_tokens: cachedTokens, reasoning_tokens: 0 };
    yield { type: "finish", reason: stop === "tool_use" ? "tool_calls" : stop === "max_tokens" ? "length" : "stop" };
  }
}

/** Chat messages → Anthropic turns: assistant tool calls become tool_use blocks, tool results a user turn. */
function toAnthropicMessages(messages: ChatMessage[]): Array<{ role: "user" | "assistant"; content: string | Block[] }> {
  const out: Array<{ role: "user" | "assistant"; content: Block[] }> = [];
  const push = (role: "user" | "assistant", blocks: Block[]) => {
    const last = out[out.length - 1];
    if (last && last.role === role) last.content.push(...blocks);
    else out.push({ role, content: blocks });
  };
  for (const m of messages) {
    if (m.role === "system") continue;
    if (m.role === "user") {
      // Files as blocks: text files as text, images as base64 image blocks (Anthropic's image input).
      push("user", [{ type: "text", text: m.content }, ...(m.files ?? []).map((f): Block => f.kind === "image"
        ? { type: "image", source: { type: "base64", media_type: f.content_type, data: f.data } }
        : { type: "text", text: fileAsText(f) })]);
    }
    else if (m.role === "assistant") {
      push("assistant", [
        ...(m.content ? [{ type: "text" as const, text: m.content }] : []),
        ...(m.tool_calls ?? []).map((c) => ({ type: "tool_use" as const, id: c.id, name: c.name, input: c.args ?? {} })),
      ]);
    } else push("user", [{ type: "tool_result", tool_use_id: m.tool_call_id, content: m.content }]);
  }
  return out.filter((m) => m.content.length > 0);
}

export function translateAnthropicError(err: unknown): LlmError {
  if (err instanceof LlmError) return err;
  if (err instanceof Anthropic.APIUserAbortError) return new LlmError("aborted", "The request was aborted", false);
  if (err instanceof Anthropic.APIConnectionTimeoutError) return new LlmError("timeout", "anthropic did not answer in time", true);
  if (err instanceof Anthropic.APIConnectionError) return new LlmError("provider_unavailable", "anthropic could not be reached", true);
  if (err instanceof Anthropic.APIError) {
    const status = err.status ?? 0;
    const id = err.requestID ?? undefined;
    const after = retryAfterMs(err.headers as Headers | undefined);
    if (status === 429) return new LlmError("rate_limited", "anthropic rate-limited the request (HTTP 429)", true, after, id);
    if (status >= 500 || status === 408 || status === 409 || status === 529) return new LlmError("provider_unavailable", `anthropic failed (HTTP ${status})`, true, after, id);
    if (status === 401 || status === 403) return new LlmError("provider_auth_failed", `anthropic refused the credentials (HTTP ${status}); check the API key`, false, undefined, id);
    return new LlmError("invalid_request", `anthropic rejected the request (HTTP ${status})`, false, undefined, id);
  }
  return new LlmError("provider_error", "anthropic sent a malformed or interrupted stream", true);
}
