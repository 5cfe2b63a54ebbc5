/**
 * The LlmProvider port: one streaming call, normalised. Providers translate their wire format into
 * these chunks (text deltas, whole tool calls, usage, finish) and their errors into LlmError.
 */
export interface ChatToolCall {
  id: string;
  name: string;
  args: unknown;
}

/**
 * A file the user's message carries for the model (src/jobs/runner/files.ts): text (a text file, a
 * PDF's extracted text, or a note saying why a file is not shown), or an image as base64. Each provider
 * maps these to its own format; `content` stays the message's own text.
 */
export type ChatFile =
  /** `unread`: the file could not be shown and `text` says why (removed, unreadable, over a limit). */
  | { kind: "text"; name: string; content_type: string; text: string; truncated: boolean; unread?: true }
  | { kind: "image"; name: string; content_type: string; data: string };

export type ChatMessage =
  | { role: "system"; content: string }
  | { role: "user"; content: string; files?: ChatFile[] }
  | { role: "assistant"; content: string; tool_calls?: ChatToolCall[] }
  | { role: "tool"; tool_call_id: string; name: string; content: string };

/** A text file as the model reads it: delimited and named, so it is not taken for the user's own words. */
export const fileAsText = (f: Extract<ChatFile, { kind: "text" }>): string =>
  `<file name="${f.name.replace(/"/g, "'")}" type="${f.content_type}">\n${f.text}\n</file>`;

export interface ToolSpec {
  name: string;
  description: string;
  /** JSON Schema of the arguments. */
  parameters: Record<string, unknown>;
}

export interface LlmRequest {
  model: string | null;
  messages: ChatMessage[];
  tools: ToolSpec[];
  /** When set, the reply must be JSON matching this schema. */
  outputSchema: Record<string, unknown> | null;
  parameters: Record<string, unknown>;
  signal: AbortSignal;
}

export type LlmChunk =
  | { type: "text"; delta: string }
  | { type: "thinking"; delta: string }
  | { type: "tool_call"; call: ChatToolCall }
  | { type: "usage"; prompt_tokens: number; completion_tokens: number; cached_tokens?: number; reasoning_tokens?: number }
  | { type: "finish"; reason: "stop" | "tool_calls" | "length" | "content_filter" };

export interface LlmProvider {
  readonly name: string;
  /** The model used when the agent names none. */
  readonly defaultModel: string;
  stream(request: LlmRequest): AsyncIterable<LlmChunk>;
}

/** A provider failure, sanitised: no key, no raw upstream body. */
export class LlmError extends Error {
  constructor(
    readonly code: "rate_limited" | "provider_unavailable" | "provider_error" | "provider_auth_failed" | "invalid_request" | "timeout" | "aborted",
    message: string,
    readonly retryable: boolean,
    readonly retryAfterMs?: number,
    /** The provider's id for the failed request (its x-request-id / request-id), to trace it there. */
    readonly providerRequestId?: string,
  ) {
    super(message);
    this.name = "LlmError";
  }
}
