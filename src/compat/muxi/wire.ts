/**
 * The MUXI Framework REST API's wire format (seed 002), as pure translations: its request bodies and
 * queries, its agent, chat, history and memory shapes, its offset pagination, and its error envelope
 * and codes. Nothing here does I/O; the routes (index.ts) call our services and hand results here.
 */
import { t } from "elysia";
import type { AgentRow } from "../../../projections/agents/index.ts";
import type { MessageRow } from "../../../projections/messages/index.ts";
import type { MemoryRow } from "../../../projections/memory/index.ts";
import type { ErrorBody, ErrorDialect } from "../../http/errors.ts";
import { toErrorResponse } from "../../http/errors.ts";
import { paramOf } from "../shared/errors.ts";
import { MAX_CLIENT_AGENT_ID } from "./agentIds.ts";

/** Where the surface is mounted: MUXI's `GET /agents` is `GET /compat/muxi/agents` (and `/compat/muxi/api/v1/agents`). */
export const MUXI_PREFIX = "/compat/muxi";

/** An agent id a client chooses: our ids' alphabet, short enough to carry the app's prefix (agentIds.ts) through `/v1` too. */
const ClientAgentId = t.String({ minLength: 1, maxLength: MAX_CLIENT_AGENT_ID, pattern: "^[A-Za-z0-9_.-]+$" });
const UserId = t.String({ minLength: 1, maxLength: 200 });

export const MuxiModel = t.Object({
  provider: t.Optional(t.String({ minLength: 1, maxLength: 50 })),
  name: t.Optional(t.String({ minLength: 1, maxLength: 200 })),
  parameters: t.Optional(t.Record(t.String(), t.Unknown())),
});

/** `POST /agents`. */
export const MuxiAgentBody = t.Object({
  id: ClientAgentId,
  name: t.String({ minLength: 1, maxLength: 200 }),
  description: t.Optional(t.String({ maxLength: 2000 })),
  model: t.Optional(MuxiModel),
});

/** `POST /chat/{agent_id}`. */
export const MuxiChatBody = t.Object({
  message: t.String({ minLength: 1, maxLength: 100_000 }),
  user_id: UserId,
  session_id: t.Optional(t.String({ minLength: 1, maxLength: 200 })),
  context: t.Optional(t.Record(t.String(), t.Unknown())),
});

/** `GET /chat/{agent_id}/history`. */
export const MuxiHistoryQuery = t.Object({
  user_id: UserId,
  session_id: t.String({ minLength: 1, maxLength: 200 }),
  limit: t.Optional(t.Integer({ minimum: 1, maximum: 100, default: 50 })),
  before: t.Optional(t.String({
    maxLength: 120,
    description: "Return messages before this one: a message id from this history (exact), or a timestamp (ISO 8601; messages strictly earlier)",
  })),
});

/** `GET /memory/{agent_id}`. */
export const MuxiMemoryQuery = t.Object({
  user_id: UserId,
  query: t.String({ minLength: 1, maxLength: 1000 }),
  limit: t.Optional(t.Integer({ minimum: 1, maximum: 100, default: 10 })),
});

/** `POST /memory/{agent_id}`. */
export const MuxiMemoryBody = t.Object({
  user_id: UserId,
  content: t.String({ minLength: 1, maxLength: 10_000 }),
  metadata: t.Optional(t.Record(t.String({ maxLength: 100 }), t.Unknown())),
});

/** The doc's pagination query for lists (`GET /agents`). */
export const MuxiPageQuery = t.Object({
  limit: t.Optional(t.Integer({ minimum: 1, maximum: 100, default: 50 })),
  offset: t.Optional(t.Integer({ minimum: 0, maximum: 100_000, default: 0 })),
});

export const MuxiError = t.Object({ error: t.Object({ code: t.String(), message: t.String(), details: t.Optional(t.Record(t.String(), t.Unknown())) }) });

/** The doc's timestamps: ISO 8601 in UTC. */
export const muxiTime = (ms: number): string => new Date(ms).toISOString();

/** An agent as MUXI lists it, under `id`: the id the client knows it by (agentIds.ts `clientAgentId`). */
export function muxiAgentSummary(r: AgentRow, id: string) {
  return { id, name: r.name, description: r.description };
}

/** An agent with its model; a model that names no provider runs on the server's default one, which is shown. */
export function muxiAgent(r: AgentRow, id: string, defaultProvider: string) {
  const model = JSON.parse(r.model) as { provider: string | null; name: string | null; parameters: Record<string, unknown> };
  return {
    ...muxiAgentSummary(r, id),
    model: { provider: model.provider ?? defaultProvider, name: model.name, parameters: model.parameters ?? {} },
  };
}

/** A page of a list in the doc's terms: `next_offset` null on the last page. */
export function muxiPagination(total: number, limit: number, offset: number) {
  return { total, limit, offset, next_offset: offset + limit < total ? offset + limit : null };
}

export function muxiHistoryMessage(r: MessageRow) {
  return { id: r.id, role: r.role, content: r.content, timestamp: muxiTime(r.created_at) };
}

export function muxiMemory(r: MemoryRow, score: number | null) {
  return { id: r.id, content: r.content, created_at: muxiTime(r.created_at), relevance_score: score ?? 0 };
}

/**
 * Our errors in the doc's terms. The envelope is ours already (`{"error": {code, message, details}}`);
 * the code is the doc's for the status: 401 authentication_error, 403 permission_denied, 404
 * not_found, 429 rate_limit_exceeded, 5xx internal_error, and invalid_request for every other 4xx.
 * The status is kept ("standard HTTP status codes"); `details.param` names the parameter when we know it.
 */
export function muxiEnvelope(status: number, body: ErrorBody) {
  const code = status === 401 ? "authentication_error"
    : status === 403 ? "permission_denied"
    : status === 404 ? "not_found"
    : status === 429 ? "rate_limit_exceeded"
    : status >= 500 ? "internal_error"
    : "invalid_request";
  const param = paramOf(body);
  const details: Record<string, unknown> = { ...(param ? { param } : {}), agentry_code: body.error.code };
  return { error: { code, message: body.error.message, details, ...(body.error.request_id ? { request_id: body.error.request_id } : {}) } };
}

export function muxiError(err: unknown, requestId?: string): { status: number; body: ReturnType<typeof muxiEnvelope> } {
  const { status, body } = toErrorResponse(err);
  if (requestId) body.error.request_id = requestId;
  return { status, body: muxiEnvelope(status, body) };
}

/** Errors raised before a handler runs (the key, rate limits, validation, unparsable JSON), under the prefix. */
export const muxiErrorDialect: ErrorDialect = { prefix: MUXI_PREFIX, render: (status, body) => muxiEnvelope(status, body) };
