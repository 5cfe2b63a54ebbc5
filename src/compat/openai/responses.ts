/**
 * The OpenAI Responses wire format over our jobs, as pure translations: a response is a job (a turn of
 * a session), its id is the job id, and a stream event's `sequence_number` is the cursor id of the job
 * event it translates (its stream revision + 1). One job event gives at most one Responses event, so a
 * stream resumed with `starting_after` repeats nothing and misses nothing; job events with no
 * Responses counterpart (usage, tools, context) are skipped, so sequence numbers rise but may jump.
 */
import type { RecordedEvent } from "../../eventstore/port.ts";
import { jobEvents } from "../../domain/job/events.ts";
import { addUsage, ZERO_USAGE, type JobStatus, type Usage } from "../../domain/job/job.ts";
import { occurredAt } from "../../core/eventContract.ts";

export type ResponseStatus = "queued" | "in_progress" | "completed" | "failed" | "cancelled" | "incomplete";

/** Our job status in Responses terms: a job waiting on a plan's approval is still in progress. */
export const RESPONSE_STATUS: Record<JobStatus, ResponseStatus> = {
  pending: "queued", processing: "in_progress", awaiting_approval: "in_progress", completed: "completed", failed: "failed", cancelled: "cancelled",
};

/** What a response shows that is not in its job's events: where it sits in the conversation, and how it was asked. */
export interface ResponseContext {
  previous_response_id: string | null;
  background: boolean;
}

/** What the fold of a job's events keeps. */
export interface JobFold {
  id: string;
  status: JobStatus | "none";
  agentId: string;
  sessionId: string | null;
  createdAt: number;
  completedAt: number | null;
  /** The reply: the completed content, else the text streamed so far. */
  text: string;
  usage: Usage;
  error: { code: string; message: string } | null;
}

export const emptyFold = (id: string): JobFold => ({
  id, status: "none", agentId: "", sessionId: null, createdAt: 0, completedAt: null, text: "", usage: ZERO_USAGE, error: null,
});

/** Folds one job event into what a response shows (pure). */
export function foldJobEvent(fold: JobFold, raw: RecordedEvent): JobFold {
  const e = jobEvents.decode(raw);
  switch (e.type) {
    case "JobQueued":
      return { ...fold, status: "pending", agentId: e.data.agent_id, sessionId: e.data.session_id, createdAt: occurredAt(raw) };
    case "JobStarted":
      return { ...fold, status: "processing" };
    case "TextEmitted":
      return { ...fold, text: fold.text + e.data.content };
    case "UsageRecorded":
      return { ...fold, usage: addUsage(fold.usage, e.data) };
    case "PlanProposed":
      return { ...fold, status: "awaiting_approval" };
    case "PlanApproved":
      return { ...fold, status: "processing" };
    case "JobCompleted":
      return { ...fold, status: "completed", text: e.data.content, completedAt: occurredAt(raw) };
    case "JobFailed":
      return { ...fold, status: "failed", error: { code: e.data.error.code, message: e.data.error.message }, completedAt: occurredAt(raw) };
    case "JobCancelled":
      return { ...fold, status: "cancelled", completedAt: occurredAt(raw) };
    default:
      return fold;
  }
}

const seconds = (ms: number) => Math.floor(ms / 1000);

/** The assistant message item of a response: its id is derived from the response's, so it is stable. */
export const outputItemId = (responseId: string) => `msg_${responseId}`;

/** The Responses `Response` object of a job (its fold). */
export function responseView(fold: JobFold, context: ResponseContext) {
  const status = fold.status === "none" ? "queued" : RESPONSE_STATUS[fold.status];
  const finished = status === "completed";
  const output = fold.text || finished
    ? [{
      type: "message" as const, id: outputItemId(fold.id), role: "assistant" as const, status: finished ? "completed" as const : "in_progress" as const,
      content: [{ type: "output_text" as const, text: fold.text, annotations: [] as unknown[], logprobs: [] as unknown[] }],
    }]
    : [];
  return {
    id: fold.id, object: "response" as const, created_at: seconds(fold.createdAt), status,
    completed_at: fold.completedAt === null ? null : seconds(fold.completedAt),
    background: context.background, model: fold.agentId,
    conversation: fold.sessionId ? { id: fold.sessionId } : null, previous_response_id: context.previous_response_id,
    output, output_text: fold.text,
    error: fold.error ? { code: fold.error.code, message: fold.error.message } : null,
    incomplete_details: null, instructions: null, metadata: {}, parallel_tool_calls: true, temperature: null, top_p: null,
    tool_choice: "auto" as const, tools: [] as unknown[], text: { format: { type: "text" as const } }, truncation: "disabled" as const, store: true,
    usage: usageView(fold.usage),
  };
}

export type ResponseObject = ReturnType<typeof responseView>;

export function usageView(u: Usage) {
  return {
    input_tokens: u.prompt_tokens, input_tokens_details: { cached_tokens: u.cached_tokens },
    output_tokens: u.completion_tokens, output_tokens_details: { reasoning_tokens: u.reasoning_tokens },
    total_tokens: u.prompt_tokens + u.completion_tokens,
  };
}

/**
 * The Responses stream event for one job event, given the fold up to and including it (for the
 * response snapshots the lifecycle events carry); null when the job event has no counterpart.
 */
export function streamEventOf(raw: RecordedEvent, after: JobFold, context: ResponseContext): { type: string; [k: string]: unknown } | null {
  const sequence_number = Number(raw.revision) + 1;
  const snapshot = () => responseView(after, context);
  switch (raw.type) {
    case "JobQueued": return { type: "response.created", sequence_number, response: snapshot() };
    case "JobStarted": return { type: "response.in_progress", sequence_number, response: snapshot() };
    case "TextEmitted": {
      const e = jobEvents.decode(raw) as Extract<ReturnType<typeof jobEvents.decode>, { type: "TextEmitted" }>;
      return { type: "response.output_text.delta", sequence_number, item_id: outputItemId(after.id), output_index: 0, content_index: 0, delta: e.data.content, logprobs: [] };
    }
    case "JobCompleted": return { type: "response.completed", sequence_number, response: snapshot() };
    case "JobFailed": return { type: "response.failed", sequence_number, response: snapshot() };
    // The Responses API has no cancelled event: the stream ends with its `incomplete` terminal event,
    // whose response carries status "cancelled".
    case "JobCancelled": return { type: "response.incomplete", sequence_number, response: snapshot() };
    default: return null;
  }
}

/** Job events after which a response stream closes. */
export const RESPONSE_ENDS: ReadonlySet<string> = new Set(["JobCompleted", "JobFailed", "JobCancelled"]);
