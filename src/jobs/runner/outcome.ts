/** How a run ends: the failures a job may end with, what stops a runner from writing, and what hands a job back. */
import { AppError, ConflictError } from "../../core/errors.ts";
import { compileSchema } from "../../core/jsonSchema.ts";
import type { JobError } from "../../domain/job/job.ts";
import { LlmError } from "../../llm/provider.ts";

/** Another runner started this job after us: we must not write another event. */
export class LostJob extends Error {}

/**
 * The reason a worker aborts a job its process is shutting down on (`controller.abort(new Shutdown())`):
 * the runner hands the job back for another runner to resume, neither cancelling nor failing it.
 */
export class Shutdown extends Error {
  constructor() {
    super("The worker is shutting down");
  }
}

/** True when `signal` was aborted for a shutdown (and not, say, by a cancel). */
export const abortedForShutdown = (signal: AbortSignal | undefined): boolean => signal?.aborted === true && signal.reason instanceof Shutdown;

/** Thrown at a step boundary reached after shutdown began: stop here, and hand the job back. */
export class PutBack extends Error {}

/** The job must end as failed with this code and a message safe to show the client. */
export class JobFailure extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

/** Parses and validates a structured reply; a reply that does not match fails the job clearly. */
export function validateStructured(text: string, schema: Record<string, unknown>): unknown {
  let value: unknown;
  const trimmed = text.trim().replace(/^```(?:json)?\s*/i, "").replace(/\s*```$/, "");
  try {
    value = JSON.parse(trimmed);
  } catch {
    throw new JobFailure("invalid_output", "The model's reply is not valid JSON");
  }
  const validate = compileSchema(schema);
  if (!validate(value)) {
    const detail = (validate.errors ?? []).slice(0, 3).map((e) => `${e.instancePath || "/"} ${e.message}`).join("; ");
    throw new JobFailure("invalid_output", `The model's reply does not match the output schema: ${detail}`);
  }
  return value;
}

/** The error a failed job records: safe to show, with the provider's request id when a model call failed. */
export function failureOf(err: unknown): JobError {
  if (err instanceof JobFailure) return { code: err.code, message: err.message };
  if (err instanceof LlmError) return { code: err.code, message: err.message, ...(err.providerRequestId ? { provider_request_id: err.providerRequestId } : {}) };
  if (err instanceof AppError) return { code: err.code, message: err.message };
  return { code: "internal_error", message: "The job failed because of an internal error" };
}

/** A command refused because the job already ended (or moved on) is not an error for the runner. */
export function ignoreFinished(err: unknown): void {
  if (!(err instanceof ConflictError)) throw err;
}
