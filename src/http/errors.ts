/**
 * The one error envelope, for every error the API returns, validation included:
 *   {"error": {"code": "invalid_request", "message": "…", "details": {"param": "…"}}}
 * Typed application and event-store errors map to their status here; anything unexpected is logged
 * and answered 500 `internal_error` without leaking internals.
 */
import { Elysia, ValidationError as ElysiaValidationError } from "elysia";
import { AppError } from "../core/errors.ts";
import { bodyLeftUnread, clientRequestId } from "./requestGuard.ts";
import type { Logger } from "../core/logger.ts";
import {
  AppendTooLargeError, InvalidEventError, StoreAccessDeniedError, StoreUnavailableError, StreamDeletedError, StreamNotFoundError,
  WrongExpectedVersionError,
} from "../eventstore/errors.ts";

export interface ErrorBody {
  error: { code: string; message: string; details?: Record<string, unknown>; request_id?: string };
}

export const envelope = (code: string, message: string, details?: Record<string, unknown>): ErrorBody => ({
  error: { code, message, ...(details && Object.keys(details).length ? { details } : {}) },
});

/** Maps any thrown value to a status and envelope. */
export function toErrorResponse(error: unknown, elysiaCode?: string | number): { status: number; body: ErrorBody } {
  // Elysia wraps what a parse hook throws; the request guard's typed refusals are inside.
  if (elysiaCode === "PARSE" && (error as Error)?.cause instanceof AppError) error = (error as Error).cause;
  if (error instanceof AppError) return { status: error.status, body: envelope(error.code, error.message, error.details) };
  if (error instanceof ElysiaValidationError) return { status: 400, body: validationEnvelope(error) };
  if (elysiaCode === "PARSE") return { status: 400, body: envelope("invalid_json", "The request body is not valid JSON") };
  if (elysiaCode === "NOT_FOUND") return { status: 404, body: envelope("not_found", "No such route") };
  if (error instanceof WrongExpectedVersionError) {
    return { status: 409, body: envelope("concurrency_conflict", "The resource changed while the request was processed; retry", { stream: error.streamName }) };
  }
  if (error instanceof StreamDeletedError) return { status: 410, body: envelope("gone", "The resource has been permanently deleted") };
  if (error instanceof StreamNotFoundError) return { status: 404, body: envelope("not_found", "Not found") };
  if (error instanceof InvalidEventError) return { status: 400, body: envelope("invalid_request", error.message) };
  if (error instanceof AppendTooLargeError) {
    return { status: 413, body: envelope("payload_too_large", `The request's content is too large to store: one write may carry at most ${error.maxBytes} bytes`, { max_bytes: error.maxBytes }) };
  }
  // Refused credentials are the operator's to fix, not the client's: to the client the store is unavailable.
  if (error instanceof StoreUnavailableError || error instanceof StoreAccessDeniedError) {
    return { status: 503, body: envelope("unavailable", "The event store is unavailable; retry later") };
  }
  return { status: 500, body: envelope("internal_error", "An unexpected error occurred") };
}

function validationEnvelope(error: ElysiaValidationError): ErrorBody {
  const all = safeAll(error);
  const first = all[0];
  const field = first?.path ? first.path.replace(/^\//, "").replaceAll("/", ".") : "";
  const where = error.type === "body" ? "body" : error.type;
  const param = field || where;
  const message = first
    ? `Invalid ${where}${field ? ` field '${field}'` : ""}: ${first.message}`
    : `Invalid ${where}`;
  return envelope("invalid_request", message, {
    param,
    location: where,
    errors: all.slice(0, 10).map((e) => ({ param: e.path.replace(/^\//, "").replaceAll("/", ".") || where, message: e.message })),
  });
}

function safeAll(error: ElysiaValidationError): Array<{ path: string; message: string }> {
  try {
    return error.all.map((e) => ({ path: "path" in e ? String(e.path) : "", message: String(e.summary ?? e.message) }));
  } catch {
    return [];
  }
}

/**
 * How a compat surface (src/compat) words errors: requests under `prefix` get `render`'s body instead
 * of the envelope, with the same status unless `statusOf` gives the product's own (FastAPI's 422 for a
 * refused body, say). Its clients know only their product's error shape.
 */
export interface ErrorDialect {
  prefix: string;
  render(status: number, body: ErrorBody): unknown;
  statusOf?(status: number, body: ErrorBody): number;
}

/**
 * The global error handler as a plugin: every route module's errors come out as envelopes carrying
 * the request id (the one sent back in `x-request-id`), so a client can quote it and an operator find
 * the request's log lines by it.
 */
export const errorHandler = (logger: Logger, dialects: readonly ErrorDialect[] = []) =>
  new Elysia({ name: "agentry.errors" }).onError({ as: "global" }, ({ code, error, request, set }) => {
    const { status, body } = toErrorResponse(error, code);
    const requestId = String(set.headers["x-request-id"] ?? clientRequestId(request) ?? crypto.randomUUID());
    set.headers["x-request-id"] = requestId;
    body.error.request_id = requestId;
    if (status >= 500) {
      logger.error("request failed", { request_id: requestId, method: request.method, url: new URL(request.url).pathname, status, error: error as Error });
    } else {
      logger.debug("request refused", { request_id: requestId, method: request.method, url: new URL(request.url).pathname, status, code: body.error.code });
    }
    set.status = status;
    set.headers["content-type"] = "application/json";
    if (bodyLeftUnread(request)) set.headers.connection = "close";
    if (dialects.length) {
      const path = new URL(request.url).pathname;
      const dialect = dialects.find((d) => path === d.prefix || path.startsWith(`${d.prefix}/`));
      if (dialect) {
        if (dialect.statusOf) set.status = dialect.statusOf(status, body);
        return dialect.render(status, body);
      }
    }
    return body;
  });
