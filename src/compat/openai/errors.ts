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
    // OpenAI types a rate limit by the budget it hit: ours count requests.
    : status === 429 ? "requests"
    : status >= 500 ? "server_error"
    : "invalid_request_error";

/** Our names for what the client named otherwise. */
const PARAMS: Record<string, string> = { agent_id: "model", session_id: "conversation", job_id: "response_id", content: "input" };

/**
 * Messages in the client's terms where ours speak of sessions: a conversation with a response still
 * running refuses the next (409, as `/v1` refuses a second turn), naming the response to wait for or cancel.
 */
function messageOf(body: ErrorBody): { message: string; param?: string } {
  if (body.error.code === "session_busy") {
    const active = body.error.details?.active_job_id;
    return {
      message: `Another response${typeof active === "string" ? ` (${active})` : ""} is still in progress in this conversation; wait for it to end, or cancel it, before creating the next`,
      param: "conversation",
    };
  }
  return { message: body.error.message };
}

export function openaiError(status: number, body: ErrorBody) {
  const { message, param: given } = messageOf(body);
  const param = given ?? paramOf(body);
  return {
    error: {
      message, type: typeOf(status), param: param === null ? null : (PARAMS[param] ?? param), code: body.error.code,
      ...(body.error.request_id ? { request_id: body.error.request_id } : {}),
    },
  };
}

export const openaiErrorDialect: ErrorDialect = { prefix: OPENAI_PREFIX, render: openaiError };
