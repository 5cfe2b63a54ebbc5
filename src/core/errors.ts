/**
 * Typed application errors. Every rule violation is one of these; the HTTP layer maps them to the
 * error envelope `{"error":{"code","message","details"}}` with the status each class carries.
 */

export type ErrorDetails = Record<string, unknown>;

export abstract class AppError extends Error {
  abstract readonly status: number;
  constructor(
    readonly code: string,
    message: string,
    readonly details?: ErrorDetails,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** 400: the request itself is wrong (shape, values, malformed JSON). */
export class ValidationError extends AppError {
  readonly status = 400;
  constructor(message: string, details?: ErrorDetails, code = "invalid_request") {
    super(code, message, details);
  }
}

/** 401: no credentials or credentials that do not match. */
export class UnauthorizedError extends AppError {
  readonly status = 401;
  constructor(message = "Missing or invalid API key", code = "invalid_api_key") {
    super(code, message);
  }
}

/** 403: authenticated but not allowed. */
export class ForbiddenError extends AppError {
  readonly status = 403;
  constructor(message: string, code = "forbidden") {
    super(code, message);
  }
}

/**
 * 403 usage_limit_exceeded: a credit or token limit (of the app, the end user or the key) has no room
 * for the work asked. The details say which limit and when its period resets.
 */
export class UsageLimitError extends AppError {
  readonly status = 403;
  constructor(message: string, details?: ErrorDetails) {
    super("usage_limit_exceeded", message, details);
  }
}

/** 404: the resource does not exist (or is not visible to the caller). */
export class NotFoundError extends AppError {
  readonly status = 404;
  constructor(message: string, details?: ErrorDetails, code = "not_found") {
    super(code, message, details);
  }
}

/** 409: the request conflicts with the current state (busy session, idempotency mismatch, lost race). */
export class ConflictError extends AppError {
  readonly status = 409;
  constructor(code: string, message: string, details?: ErrorDetails) {
    super(code, message, details);
  }
}

/** 503: a dependency (event store, queue) is not available right now; the client may retry. */
export class UnavailableError extends AppError {
  readonly status = 503;
  constructor(message: string, details?: ErrorDetails, code = "unavailable") {
    super(code, message, details);
  }
}

/** 504: a bounded wait ran out (read-your-writes, long operations). */
export class TimeoutError extends AppError {
  readonly status = 504;
  constructor(message: string, details?: ErrorDetails, code = "timeout") {
    super(code, message, details);
  }
}

/** 408: the request body did not arrive in time. */
export class RequestTimeoutError extends AppError {
  readonly status = 408;
  constructor(message: string) {
    super("request_timeout", message);
  }
}

/** 413: the request (or what it would store) is larger than allowed. */
export class PayloadTooLargeError extends AppError {
  readonly status = 413;
  constructor(message: string, details?: ErrorDetails) {
    super("payload_too_large", message, details);
  }
}

/** 415: the body is not in a format the route accepts. */
export class UnsupportedMediaTypeError extends AppError {
  readonly status = 415;
  constructor(message: string, details?: ErrorDetails) {
    super("unsupported_media_type", message, details);
  }
}

/** 429 rate_limit_exceeded: over a rate limit; `Retry-After` says when to try again. */
export class RateLimitedError extends AppError {
  readonly status = 429;
  constructor(message: string, details?: ErrorDetails) {
    super("rate_limit_exceeded", message, details);
  }
}
