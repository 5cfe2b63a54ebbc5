/**
 * The OpenAI Responses wire format over our jobs, as pure translations: a response is a job (a turn of
 * a session), its id is the job id. One job event gives up to SEQ_PER_EVENT stream events (a first text
 * chunk opens the message item and its content part before its delta; the end closes them before the
 * terminal event), and the i-th of them has `sequence_number = cursor * SEQ_PER_EVENT + i`, where
 * `cursor` is the job event's cursor id (its stream revision + 1, the `id` of `/v1/jobs/{id}/events`).
 * So a stream resumed with `starting_after` repeats nothing and misses nothing, with no second store;
 * job events with no Responses counterpart (usage, tools, context) give none, so numbers rise but skip.
 */
import type { RecordedEvent } from "../../eventstore/port.ts";
import { jobEvents } from "../../domain/job/events.ts";
import { addUsage, ZERO_USAGE, type JobStatus, type Usage } from "../../domain/job/job.ts";
import { occurredAt } from "../../core/eventContract.ts";

/**
 * Sequence numbers per job event. The most one job event gives is 7 (a completion with no text
 * streamed before it: item added, part added, delta, text done, part done, item done, completed).
 */
export const SEQ_PER_EVENT = 8;

/** The job event cursor a sequence number came from (what `/v1/jobs/{id}/events` calls its `id`). */
export const cursorOfSequence = (sequenceNumber: number): number => Math.floor(sequenceNumber / SEQ_PER_EVENT);

export type ResponseStatus = "queued" | "in_progress" | "completed" | "failed" | "cancelled" | "incomplete";

/**
 * Our job status in Responses terms. A job waiting on a plan's approval reads `completed`, as an
 * OpenAI response that ends with an `mcp_approval_request` does: a client's poll loop stops there and
 * answers the request; the answer puts the response back in progress.
 */
export const RESPONSE_STATUS: Record<JobStatus, ResponseStatus> = {
  pending: "queued", processing: "in_progress", awaiting_approval: "completed", completed: "completed", failed: "failed", cancelled: "cancelled",
};

/**
 * What a create asked that a response echoes, kept with the turn (the message's `client_data.openai`,
 * copied onto its JobQueued): created and retrieved responses show the same values.
 */
export interface ResponseRequest {
  background: boolean;
  previous_response_id: string | null;
  instructions: string | null;
  metadata: Record<string, string>;
}

const NO_REQUEST: ResponseRequest = { background: false, previous_response_id: null, instructions: null, metadata: {} };

/** The `client_data` a create records with its message. */
export const requestRecord = (request: ResponseRequest): Record<string, unknown> => ({ openai: request });

/** What a job's input says of its create (defaults for jobs made elsewhere, e.g. through /v1). */
function requestOf(input: { context: Record<string, unknown> | null; client_data?: Record<string, unknown> }): ResponseRequest {
  const recorded = input.client_data?.openai as Partial<ResponseRequest> | undefined;
  if (recorded && typeof recorded === "object") {
    return {
      background: recorded.background === true,
      previous_response_id: typeof recorded.previous_response_id === "string" ? recorded.previous_response_id : null,
      instructions: typeof recorded.instructions === "string" ? recorded.instructions : null,
      metadata: recorded.metadata && typeof recorded.metadata === "object" ? recorded.metadata : {},
    };
  }
  const instructions = input.context?.instructions;
  return { ...NO_REQUEST, instructions: typeof instructions === "string" ? instructions : null };
}

/**
 * A response's output items, in the order they appeared: the assistant message (opened by its first
 * text, or at the end), and one approval request per plan the agent proposed.
 */
export type OutputEntry = { kind: "message" } | { kind: "approval"; plan_id: string; name: string; arguments: string };

/** What the fold of a job's events keeps. */
export interface JobFold {
  id: string;
  status: JobStatus | "none";
  agentId: string;
  sessionId: string | null;
  createdAt: number;
  completedAt: number | null;
  request: ResponseRequest;
  /** The reply: the completed content, else the text streamed so far (model steps joined as paragraphs, as the runner joins them). */
  text: string;
  /** The model step of the last text streamed (null: none yet); text of a later step starts a paragraph. */
  textStep: number | null;
  /** Where the last step's text starts in `text` (its paragraph break included): a discarded step is cut there. */
  stepStart: number;
  items: OutputEntry[];
  usage: Usage;
  error: { code: string; message: string } | null;
}

export const emptyFold = (id: string): JobFold => ({
  id, status: "none", agentId: "", sessionId: null, createdAt: 0, completedAt: null, request: NO_REQUEST,
  text: "", textStep: null, stepStart: 0, items: [], usage: ZERO_USAGE, error: null,
});

const withMessage = (items: OutputEntry[]): OutputEntry[] => (items.some((i) => i.kind === "message") ? items : [...items, { kind: "message" }]);

/** Where the message item is in a response's output (-1: not opened). */
export const messageIndex = (fold: JobFold): number => fold.items.findIndex((i) => i.kind === "message");

/** The approval request id of a plan: what an `mcp_approval_response` answers. */
export const approvalRequestId = (planId: string) => `mcpr_${planId}`;

/** Folds one job event into what a response shows (pure). */
export function foldJobEvent(fold: JobFold, raw: RecordedEvent): JobFold {
  const e = jobEvents.decode(raw);
  switch (e.type) {
    case "JobQueued":
      return { ...fold, status: "pending", agentId: e.data.agent_id, sessionId: e.data.session_id, createdAt: occurredAt(raw), request: requestOf(e.data.input) };
    case "JobStarted":
      return { ...fold, status: "processing" };
    case "TextEmitted": {
      if (!e.data.content) return fold;
      // The runner joins its model steps' texts with a blank line (src/jobs/runner/conversation.ts joinText).
      const newStep = fold.textStep === null || e.data.step !== fold.textStep;
      const joint = fold.text && newStep ? "\n\n" : "";
      return {
        ...fold, text: fold.text + joint + e.data.content, textStep: e.data.step, stepStart: newStep ? fold.text.length : fold.stepStart,
        items: withMessage(fold.items),
      };
    }
    case "JobReleased":
      // The runner declared the step's text void (it will be produced again): it leaves the response.
      if (e.data.discarded_step === null || e.data.discarded_step !== fold.textStep) return fold;
      return { ...fold, text: fold.text.slice(0, fold.stepStart), textStep: null, stepStart: fold.stepStart };
    case "UsageRecorded":
      return { ...fold, usage: addUsage(fold.usage, e.data) };
    case "PlanProposed": {
      const tools = [...new Set(e.data.steps.map((step) => step.tool))];
      return {
        ...fold, status: "awaiting_approval", completedAt: occurredAt(raw),
        items: [...fold.items, {
          kind: "approval", plan_id: e.data.plan_id, name: tools.join(",") || "plan",
          arguments: JSON.stringify({ title: e.data.title, steps: e.data.steps.map((step) => ({ tool: step.tool, args: step.args })), total_credits: e.data.total_credits }),
        }],
      };
    }
    case "PlanApproved":
      return { ...fold, status: "processing", completedAt: null };
    case "JobCompleted":
      return { ...fold, status: "completed", text: e.data.content, completedAt: occurredAt(raw), items: withMessage(fold.items) };
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

type ItemStatus = "in_progress" | "completed" | "incomplete";

const outputText = (text: string) => ({ type: "output_text" as const, text, annotations: [] as unknown[], logprobs: [] as unknown[] });

const messageItem = (responseId: string, status: ItemStatus, text: string | null) => ({
  type: "message" as const, id: outputItemId(responseId), role: "assistant" as const, status, content: text === null ? [] : [outputText(text)],
});

/**
 * A plan waiting for (or given) a decision, as OpenAI words a tool call that needs approval: an
 * `mcp_approval_request` item, answered with an `mcp_approval_response` input item.
 */
const approvalItem = (entry: Extract<OutputEntry, { kind: "approval" }>) => ({
  type: "mcp_approval_request" as const, id: approvalRequestId(entry.plan_id), name: entry.name, arguments: entry.arguments, server_label: "agentry",
});

/** The status of the message item: done with the response (or at its approval request), cut short when it ended otherwise. */
const itemStatusOf = (status: JobFold["status"]): ItemStatus =>
  status === "completed" || status === "awaiting_approval" ? "completed" : status === "failed" || status === "cancelled" ? "incomplete" : "in_progress";

/** The Responses `Response` object of a job (its fold). */
export function responseView(fold: JobFold) {
  const status = fold.status === "none" ? "queued" : RESPONSE_STATUS[fold.status];
  const output = fold.items.map((entry) => (entry.kind === "message" ? messageItem(fold.id, itemStatusOf(fold.status), fold.text) : approvalItem(entry)));
  return {
    id: fold.id, object: "response" as const, created_at: seconds(fold.createdAt), status,
    completed_at: fold.completedAt === null ? null : seconds(fold.completedAt),
    background: fold.request.background, model: fold.agentId,
    conversation: fold.sessionId ? { id: fold.sessionId } : null, previous_response_id: fold.request.previous_response_id,
    output, output_text: fold.text,
    error: fold.error ? { code: fold.error.code, message: fold.error.message } : null,
    incomplete_details: null, instructions: fold.request.instructions, metadata: fold.request.metadata, parallel_tool_calls: true, temperature: null, top_p: null,
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

export type StreamEvent = { type: string; sequence_number: number; [k: string]: unknown };

/**
 * The Responses stream events of one job event, given the folds before and after it, numbered from
 * its cursor. The message item (output 0, content part 0) is opened by the first text, or at the end
 * when no text came first, and closed before the terminal event: the order `responses.stream()`
 * builds its response from (item added → part added → deltas → text done → part done → item done).
 */
export function streamEventsOf(raw: RecordedEvent, before: JobFold, after: JobFold): StreamEvent[] {
  const base = (Number(raw.revision) + 1) * SEQ_PER_EVENT;
  const events: Array<{ type: string; [k: string]: unknown }> = [];
  const item_id = outputItemId(after.id);
  const opened = messageIndex(before) !== -1;
  // The message's place: where it is, or where it is opened now (after the approval requests before it).
  const output_index = opened ? messageIndex(before) : Math.max(messageIndex(after), 0);
  const at = { item_id, output_index, content_index: 0 };
  const open = () => events.push(
    { type: "response.output_item.added", output_index, item: messageItem(after.id, "in_progress", null) },
    { type: "response.content_part.added", ...at, part: outputText("") },
  );
  const delta = (text: string) => events.push({ type: "response.output_text.delta", ...at, delta: text, logprobs: [] });
  const close = (text: string, status: ItemStatus) => events.push(
    { type: "response.output_text.done", ...at, text, logprobs: [] },
    { type: "response.content_part.done", ...at, part: outputText(text) },
    { type: "response.output_item.done", output_index, item: messageItem(after.id, status, text) },
  );
  const lifecycle = (type: string) => events.push({ type, response: responseView(after) });
  switch (raw.type) {
    case "JobQueued":
      lifecycle("response.created");
      break;
    case "JobStarted":
      lifecycle("response.in_progress");
      break;
    case "TextEmitted": {
      const piece = after.text.slice(before.text.length);
      if (!piece) break;
      if (!opened) open();
      delta(piece);
      break;
    }
    case "PlanProposed": {
      // The request is whole when it appears: added and done at once, as OpenAI sends approval requests.
      const entry = after.items.at(-1);
      if (entry?.kind !== "approval") break;
      const index = after.items.length - 1;
      events.push({ type: "response.output_item.added", output_index: index, item: approvalItem(entry) }, { type: "response.output_item.done", output_index: index, item: approvalItem(entry) });
      break;
    }
    case "PlanApproved":
      // The approved plan runs: the response is in progress again. A stream that answers an approval
      // starts here, as OpenAI's answer is a response of its own: created (with the output so far), then in progress.
      lifecycle("response.created");
      lifecycle("response.in_progress");
      break;
    case "JobCompleted": {
      if (!opened) open();
      // What was streamed is the start of the reply, unless a model step was cut and redone: then the
      // done events carry the reply as it is, which is what clients keep.
      if (after.text.length > before.text.length && after.text.startsWith(before.text)) delta(after.text.slice(before.text.length));
      close(after.text, "completed");
      lifecycle("response.completed");
      break;
    }
    case "JobFailed":
      if (opened) close(before.text, "incomplete");
      lifecycle("response.failed");
      break;
    // The Responses API has no cancelled event: the stream ends with its `incomplete` terminal event,
    // whose response carries status "cancelled".
    case "JobCancelled":
      if (opened) close(before.text, "incomplete");
      lifecycle("response.incomplete");
      break;
    default:
      break;
  }
  // More would take the next job event's numbers: a resume would then skip or repeat.
  if (events.length > SEQ_PER_EVENT) throw new Error(`${raw.type} gave ${events.length} stream events; at most ${SEQ_PER_EVENT} fit its numbers`);
  return events.map((e, i) => ({ ...e, sequence_number: base + i }));
}

/**
 * The event a stream ends with when it reaches a plan still waiting for approval: `response.completed`
 * (the response as it stands, ending with its `mcp_approval_request`), numbered in the plan event's
 * group after its item events. Sent only by a stream that stops there; a replay after the decision goes on.
 */
export function pauseEvent(raw: RecordedEvent, fold: JobFold): StreamEvent {
  return { type: "response.completed", response: responseView(fold), sequence_number: (Number(raw.revision) + 1) * SEQ_PER_EVENT + 2 };
}

/** Job events after which a response stream closes. */
export const RESPONSE_ENDS: ReadonlySet<string> = new Set(["JobCompleted", "JobFailed", "JobCancelled"]);
