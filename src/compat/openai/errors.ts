/**
 * Errors in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with our status and
 * code: the SDK raises the class of the status (NotFoundError for 404, …) and exposes these fields.
 * Our parameter names are translated to the ones the client sent (agent_id → model, …).
 */
import type { ErrorDialect, ErrorBody } from "../../http/errors.ts";
import { paramOf } from "../shared/errors.ts";

export const OPENAI_PREFIX = "/compat/openai/v1";

const typeOf = (status: number): string =>
  status === 401 ? "authentication_error"
    : status === 403 ? "permission_error"
    : status === 429 ? "rate_limit_error"
    : status >= 500 ? "server_error"
    : "invalid_request_error";

/** Our names for what the client named otherwise. */
const PARAMS: Record<string, string> = { agent_id: "model", session_id: "conversation", job_id: "response_id", content: "input" };

export function openaiError(status: number, body: ErrorBody) {
  const param = paramOf(body);
  return {
    error: {
      message: body.error.message, type: typeOf(status), param: param === null ? null : (PARAMS[param] ?? param), code: body.error.code,
      ...(body.error.request_id ? { request_id: body.error.request_id } : {}),
    },
  };
}

export const openaiErrorDialect: ErrorDialect = { prefix: OPENAI_PREFIX, render: openaiError };
