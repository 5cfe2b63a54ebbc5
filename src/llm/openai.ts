/**
 * OpenAI Chat Completions (and any OpenAI-compatible endpoint through `baseURL`: vLLM, Ollama,
 * OpenRouter, gateways), streamed, with tool calling. Structured results ask for the JSON-schema
 * response format where the endpoint supports it (the runner validates the reply either way). The
 * SDK's own retries are off: ResilientProvider decides, so a retry never repeats streamed output.
 */
import OpenAI from "openai";
import { fileAsText, LlmError, type ChatMessage, type ChatToolCall, type LlmChunk, type LlmProvider, type LlmRequest } from "./provider.ts";
import { retryAfterMs } from "./resilient.ts";

export interface OpenAiOptions {
  apiKey: string;
  baseURL?: string;
  defaultModel?: string;
  /** "openai" for OpenAI itself; another name for a compatible endpoint. */
  name?: string;
  /** Extra headers sent with every request (a connection's `headers`). */
  headers?: Record<string, string>;
}

export class OpenAiProvider implements LlmProvider {
  readonly name: string;
  readonly defaultModel: string;
  private readonly client: OpenAI;

  constructor(options: OpenAiOptions) {
    this.name = options.name ?? "openai";
    this.defaultModel = options.defaultModel ?? "gpt-5-mini";
    this.client = new OpenAI({
      apiKey: options.apiKey, baseURL: options.baseURL, maxRetries: 0, timeout: 10 * 60_000,
      ...(options.headers && Object.keys(options.headers).length ? { defaultHeaders: options.headers } : {}),
    });
  }

  async *stream(request: LlmRequest): AsyncIterable<LlmChunk> {
    const { json_schema_response_format: jsonSchemaFormat, ...parameters } = request.parameters as { json_schema_response_format?: boolean };
    const body = {
      ...parameters,
      model: request.model ?? this.defaultModel,
      messages: request.messages.map(toOpenAiMessage),
      stream: true as const,
      stream_options: { include_usage: true },
      ...(request.tools.length ? { tools: request.tools.map((t) => ({ type: "function" as const, function: { name: t.name, description: t.description, parameters: t.parameters } })) } : {}),
      ...(request.outputSchema && jsonSchemaFormat !== false
        ? { response_format: { type: "json_schema" as const, json_schema: { name: "result", schema: request.outputSchema, strict: false } } }
        : {}),
    };
    const calls = new Map<number, { id: string; name: string; args: string }>();
    let finish: LlmChunk | undefined;
    try {
      const stream = await this.client.chat.completions.create(body as OpenAI.ChatCompletionCreateParamsStreaming, { signal: request.signal });
      for await (const chunk of stream) {
        const choice = chunk.choices[0];
        if (choice?.delta?.content) yield { type: "text", delta: choice.delta.content };
        const reasoning = (choice?.delta as { reasoning_content?: string } | undefined)?.reasoning_content;
        if (reasoning) yield { type: "thinking", delta: reasoning };
        for (const d of choice?.delta?.tool_calls ?? []) {
          const call = calls.get(d.index) ?? { id: "", name: "", args: "" };
          if (d.id) call.id = d.id;
          if (d.function?.name) call.name += d.function.name;
          if (d.function?.arguments) call.args += d.function.arguments;
          calls.set(d.index, call);
        }
        if (choice?.finish_reason) finish = { type: "finish", reason: finishReason(choice.finish_reason) };
        if (chunk.usage) {
          yield {
            type: "usage",
            prompt_tokens: chunk.usage.prompt_tokens,
            completion_tokens: chunk.usage.completion_tokens,
            cached_tokens: chunk.usage.prompt_tokens_details?.cached_tokens ?? 0,
            reasoning_tokens: chunk.usage.completion_tokens_details?.reasoning_tokens ?? 0,
          };
        }
      }
    } catch (err) {
      throw translateOpenAiError(err, this.name);
    }
    for (const [index, call] of [...calls.entries()].sort((a, b) => a[0] - b[0])) yield { type: "tool_call", call: parseCall(call, index, this.name) };
    yield finish ?? { type: "finish", reason: calls.size ? "tool_calls" : "stop" };
  }
}

function parseCall(call: { id: string; name: string; args: string }, index: number, provider: string): ChatToolCall {
  let args: unknown = {};
  if (call.args.trim()) {
    try {
      args = JSON.parse(call.args);
    } catch {
      throw new LlmError("provider_error", `${provider} sent tool arguments that are not valid JSON`, false);
    }
  }
  return { id: call.id || `call_${index}`, name: call.name, args };
}

function finishReason(reason: string): "stop" | "tool_calls" | "length" | "content_filter" {
  return reason === "tool_calls" || reason === "function_call" ? "tool_calls" : reason === "length" ? "length" : reason === "content_filter" ? "content_filter" : "stop";
}

function toOpenAiMessage(m: ChatMessage): OpenAI.ChatCompletionMessageParam {
  switch (m.role) {
    case "system":
      return { role: m.role, content: m.content };
    case "user":
      if (!m.files?.length) return { role: m.role, content: m.content };
      // Files as content parts: text files as text, images as data: URLs (OpenAI's image input).
      return {
        role: "user",
        content: [
          { type: "text", text: m.content },
          ...m.files.map((f): OpenAI.ChatCompletionContentPart => f.kind === "image"
            ? { type: "image_url", image_url: { url: `data:${f.content_type};base64,${f.data}` } }
            : { type: "text", text: fileAsText(f) }),
        ],
      };
    case "assistant":
      return {
        role: "assistant",
        content: m.content || null,
        ...(m.tool_calls?.length ? { tool_calls: m.tool_calls.map((c) => ({ id: c.id, type: "function" as const, function: { name: c.name, arguments: JSON.stringify(c.args ?? {}) } })) } : {}),
      };
    case "tool":
      return { role: "tool", tool_call_id: m.tool_call_id, content: m.content };
  }
}

/** SDK errors → LlmError: 429, 5xx, connection and timeout errors are retryable; other 4xx are not. No key, no raw body. */
export function translateOpenAiError(err: unknown, provider: string): LlmError {
  if (err instanceof LlmError) return err;
  if (err instanceof OpenAI.APIUserAbortError) return new LlmError("aborted", "The request was aborted", false);
  if (err instanceof OpenAI.APIConnectionTimeoutError) return new LlmError("timeout", `${provider} did not answer in time`, true);
  if (err instanceof OpenAI.APIConnectionError) return new LlmError("provider_unavailable", `${provider} could not be reached`, true);
  if (err instanceof OpenAI.APIError) {
    const status = err.status ?? 0;
    const id = err.requestID ?? undefined;
    const after = retryAfterMs(err.headers as Headers | undefined);
    if (status === 429) return new LlmError("rate_limited", `${provider} rate-limited the request (HTTP 429)`, true, after, id);
    if (status >= 500 || status === 408 || status === 409) return new LlmError("provider_unavailable", `${provider} failed (HTTP ${status})`, true, after, id);
    if (status === 401 || status === 403) return new LlmError("provider_auth_failed", `${provider} refused the credentials (HTTP ${status}); check the API key`, false, undefined, id);
    return new LlmError("invalid_request", `${provider} rejected the request (HTTP ${status})`, false, undefined, id);
  }
  // A stream that broke or sent something unreadable: nothing was lost that a retry could not redo.
  return new LlmError("provider_error", `${provider} sent a malformed or interrupted stream`, true);
}
