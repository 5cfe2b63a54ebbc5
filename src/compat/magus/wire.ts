/**
 * The Magus API integration's wire format (seed 003), as pure translations: its request body, its
 * synchronous reply, its SSE events, and its error envelope and codes. Nothing here does I/O; the
 * routes (index.ts) call our services and hand what they get to these functions.
 */
import { t } from "elysia";
import type { RecordedEvent } from "../../eventstore/port.ts";
import { jobEvents } from "../../domain/job/events.ts";
import { addUsage, ZERO_USAGE, type Usage } from "../../domain/job/job.ts";
import type { ReplySummary } from "../../domain/session/session.ts";
import { AppError, UsageLimitError } from "../../core/errors.ts";
import { toErrorResponse, type ErrorBody, type ErrorDialect } from "../../http/errors.ts";

/** Where the surface is mounted: Magus's `POST /api/v1/messages` is `POST /compat/magus/api/v1/messages`. */
export const MAGUS_PREFIX = "/compat/magus";

export type MagusVerbosity = "minimal" | "standard" | "full";

/** `POST /api/v1/messages`, as the doc's request table lists it. */
export const MagusMessageBody = t.Object({
  content: t.String({ minLength: 1, maxLength: 100_000, description: "The message text" }),
  session_id: t.Optional(t.String({ minLength: 1, maxLength: 200, description: "Your identifier for the conversation. Same ID = same conversation. Auto-generated when absent." })),
  stream: t.Optional(t.Boolean({ default: false, description: "true: Server-Sent Events streaming" })),
  verbosity: t.Optional(t.Union([t.Literal("minimal"), t.Literal("standard"), t.Literal("full")], { default: "standard", description: "Event detail level of the stream" })),
  attachments: t.Optional(t.Array(t.Object({
    type: t.Literal("file"),
    name: t.Optional(t.String({ maxLength: 255 })),
    data: t.String({ maxLength: 1_500_000_000, description: "base64-encoded content" }),
    content_type: t.Optional(t.String({ maxLength: 255 })),
  }), { maxItems: 20, default: [] })),
});
export type MagusMessage = typeof MagusMessageBody.static;

export const MagusUsage = t.Object({ prompt_tokens: t.Integer(), completion_tokens: t.Integer() });

export const MagusReply = t.Object({
  id: t.String(), session_id: t.String(), conversation_id: t.String(), content: t.String(),
  citations: t.Array(t.Unknown()), tool_calls: t.Array(t.Unknown()), attachments: t.Array(t.Unknown()),
  usage: MagusUsage, created_at: t.String(),
});

export const MagusError = t.Object({ error: t.Object({ code: t.String(), message: t.String() }) });

/** The doc's usage object: prompt and completion tokens (ours also counts cached and reasoning ones, kept in `/v1`). */
export const magusUsage = (u: Usage) => ({ prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens });

/** The assistant message's id: the history's id of the reply to the user's message. */
export const replyMessageId = (messageId: string): string => `${messageId}_reply`;

/** The synchronous reply (`stream: false`). */
export function magusReply(input: {
  messageId: string; sessionId: string; conversationId: string; reply: ReplySummary; usage: Usage; completedAt: number;
}) {
  return {
    id: replyMessageId(input.messageId),
    session_id: input.sessionId,
    conversation_id: input.conversationId,
    content: input.reply.content,
    citations: input.reply.citations ?? [],
    tool_calls: input.reply.tool_calls.map((c) => ({ id: c.call_id, name: c.name, arguments: c.args, result: c.result, error: c.error })),
    attachments: [] as unknown[],
    usage: magusUsage(input.usage),
    created_at: new Date(input.completedAt).toISOString(),
  };
}

/** Which Magus stream events each verbosity shows (the doc's "Verbosity Levels" table). */
const SHOWN: Record<MagusVerbosity, ReadonlySet<string>> = {
  minimal: new Set(["session.created", "message.started", "text.chunk", "message.completed", "error"]),
  standard: new Set(["session.created", "message.started", "text.chunk", "message.completed", "error", "tool.started", "tool.completed"]),
  full: new Set(["session.created", "message.started", "text.chunk", "message.completed", "error", "tool.started", "tool.completed", "tool.progress", "thinking.chunk"]),
};

/** One SSE frame as the doc shows them: a `data:` line holding a JSON object with its `event` name. */
export const dataFrame = (event: Record<string, unknown> & { event: string }): string => `data: ${JSON.stringify(event)}\n\n`;

/** The sentinel the doc's stream ends with. */
export const DONE_FRAME = "data: [DONE]\n\n";

/**
 * A translator for one turn's job stream into Magus events (stateful per stream: it sums usage for
 * `message.completed`). The stream opens with `session.created` and `message.started` when the job is
 * queued; text, thinking and tool events follow as the job emits them; its end is `message.completed`,
 * or `error` (`agent_error`) when it failed or was cancelled.
 */
export function magusStreamTranslator(input: { sessionId: string; conversationId: string; messageId: string; verbosity: MagusVerbosity }) {
  const shown = SHOWN[input.verbosity];
  const frame = (event: Record<string, unknown> & { event: string }) => (shown.has(event.event) ? dataFrame(event) : "");
  const replyId = replyMessageId(input.messageId);
  let usage: Usage = ZERO_USAGE;
  return (raw: RecordedEvent): string => {
    const e = jobEvents.decode(raw);
    switch (e.type) {
      case "JobQueued":
        return frame({ event: "session.created", session_id: input.sessionId, conversation_id: input.conversationId })
          + frame({ event: "message.started", message_id: replyId });
      case "TextEmitted":
        return frame({ event: "text.chunk", delta: e.data.content });
      case "ThinkingEmitted":
        return frame({ event: "thinking.chunk", delta: e.data.content });
      case "ToolCalled":
        return frame({ event: "tool.started", tool_call_id: e.data.call_id, name: e.data.name, arguments: e.data.args });
      case "ToolProgressed":
        return frame({ event: "tool.progress", tool_call_id: e.data.call_id, progress: e.data.progress, message: e.data.message });
      case "ToolCompleted":
        return frame({ event: "tool.completed", tool_call_id: e.data.call_id, name: e.data.name, result: e.data.result, error: e.data.error });
      case "UsageRecorded":
        usage = addUsage(usage, e.data);
        return "";
      case "JobCompleted":
        return frame({ event: "message.completed", message_id: replyId, usage: magusUsage(usage) });
      case "JobFailed":
        // A limit reached mid-turn keeps the doc's code for it, as the synchronous answer does.
        return frame({ event: "error", code: e.data.error.code === "usage_limit_exceeded" ? e.data.error.code : "agent_error", message: e.data.error.message });
      case "JobCancelled":
        return frame({ event: "error", code: "agent_error", message: `The agent's turn was cancelled: ${e.data.reason}` });
      default:
        return "";
    }
  };
}

/** 502 `agent_error`: the turn ended without a reply (the model or a tool failed, or it was cancelled). */
export class AgentError extends AppError {
  readonly status = 502;
  constructor(message: string) {
    super("agent_error", message);
  }
}

/**
 * Why a synchronous request gets no reply, from how its turn ended: a credit or token limit reached in
 * the middle of the turn is the doc's 403 `usage_limit_exceeded` (as it is when the limit refuses the
 * message up front); anything else is 502 `agent_error`.
 */
export function turnFailure(job: { status: string; error?: { code?: string; message?: string } | null }): AppError {
  const message = job.error?.message ?? `The agent's turn ended ${job.status}`;
  if (job.error?.code === "usage_limit_exceeded") return new UsageLimitError(message);
  return new AgentError(message);
}

/**
 * Our errors in the doc's terms: its envelope `{"error": {"code", "message"}}` and its codes where it
 * has one for the case (400 invalid_request, 401 invalid_api_key, 403 integration_inactive and
 * usage_limit_exceeded, 502 agent_error, 504 timeout). A case the doc has no code for keeps our status
 * and code (429 rate_limit_exceeded, 503 unavailable), so nothing is reported as something it is not.
 */
export function magusError(err: unknown, requestId?: string): { status: number; body: { error: MagusErrorBody } } {
  const { status, body } = toErrorResponse(err);
  return magusEnvelope(status, { ...body.error, ...(requestId ? { request_id: requestId } : {}) });
}

export interface MagusErrorBody {
  code: string;
  message: string;
  /** Ours, beside the doc's two fields: the id an operator finds the request's log lines by. */
  request_id?: string;
}

/** An error answer of ours (status and envelope) in the doc's codes; idempotent on one already translated. */
export function magusEnvelope(status: number, error: MagusErrorBody): { status: number; body: { error: MagusErrorBody } } {
  const as = (s: number, code: string) => ({
    status: s, body: { error: { code, message: error.message, ...(error.request_id ? { request_id: error.request_id } : {}) } },
  });
  if (status === 401) return as(401, "invalid_api_key");
  if (status === 403) {
    if (error.code === "usage_limit_exceeded") return as(403, error.code);
    // A suspended app, or a key without the rights to send: the integration cannot be used.
    return as(403, "integration_inactive");
  }
  // Anything wrong with the request itself (malformed JSON included), in the one code the doc has for it.
  if (status === 400 || status === 404 || status === 409 || status === 422) return as(400, "invalid_request");
  if (status === 413 || status === 415) return as(status, "invalid_request");
  return as(status, error.code);
}

/**
 * Errors raised before the handler runs (the key, rate limits, a body that is not JSON or too large)
 * are answered by the global error handler: in the doc's envelope under the Magus prefix. Their status
 * is kept (none of them is one the doc words with another status).
 */
export const magusErrorDialect: ErrorDialect = {
  prefix: MAGUS_PREFIX,
  render: (status: number, body: ErrorBody) => magusEnvelope(status, body.error).body,
};
