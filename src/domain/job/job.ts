/**
 * Job: one unit of agent work — a session turn or a single-turn run. Stream `job-<id>`.
 *
 * Status: pending → processing → (awaiting_approval → processing)* → completed | failed | cancelled.
 * A processing job may be released (JobReleased) by a runner that shuts down: it stays processing and the
 * next runner resumes it.
 * Every job ends in exactly one terminal event. The runner appends with the revision it last saw, so a
 * second runner on the same job, or a cancel or approval arriving meanwhile, makes its append fail and
 * it re-reads before doing anything else.
 */
import { ConflictError } from "../../core/errors.ts";
import { unreachable, type Decider, type DomainEvent } from "../../core/decider.ts";
import type { Attachment } from "../session/session.ts";
import type { JobEvent } from "./events.ts";
import type { SkillRun } from "../skill/skill.ts";
import { roundCredits } from "../billing/prices.ts";
import type { Citation } from "../shared/citations.ts";

export type { JobEvent };

export type JobStatus = "pending" | "processing" | "awaiting_approval" | "completed" | "failed" | "cancelled";
export const TERMINAL: ReadonlySet<JobStatus> = new Set(["completed", "failed", "cancelled"]);

export interface JobError {
  code: string;
  message: string;
  provider_request_id?: string;
}

export interface PlanStep {
  call_id: string;
  tool: string;
  args: unknown;
  estimated_credits: number;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  cached_tokens: number;
  reasoning_tokens: number;
}

export const ZERO_USAGE: Usage = { prompt_tokens: 0, completion_tokens: 0, cached_tokens: 0, reasoning_tokens: 0 };

export const addUsage = (a: Usage, b: Partial<Usage>): Usage => ({
  prompt_tokens: a.prompt_tokens + (b.prompt_tokens ?? 0),
  completion_tokens: a.completion_tokens + (b.completion_tokens ?? 0),
  cached_tokens: a.cached_tokens + (b.cached_tokens ?? 0),
  reasoning_tokens: a.reasoning_tokens + (b.reasoning_tokens ?? 0),
});

export interface JobInput {
  content: string;
  attachments: Attachment[];
  media_url: string | null;
  context: Record<string, unknown> | null;
  skill?: SkillRun;
}

export type AgentRanWith = Pick<Extract<JobEvent, { type: "JobStarted" }>["data"], "agent_version" | "system_prompt_sha256" | "prompt_overridden">;

export type JobCommand =
  | { type: "QueueJob"; data: Extract<JobEvent, { type: "JobQueued" }>["data"] }
  /** `plan_id`: the plan the decider saw; a decision about an earlier plan does not apply to a later one. */
  | { type: "ApprovePlan"; plan_id?: string }
  | { type: "RejectPlan"; reason: string | null; plan_id?: string }
  | { type: "RequestCancel"; reason: string | null; heldByRunner: boolean }
  /** `ranWith`: which agent and prompt the attempt runs with, recorded on JobStarted for auditors. */
  | { type: "StartJob"; runner_id: string; ranWith?: AgentRanWith }
  | { type: "EmitText"; step: number; content: string }
  | { type: "EmitThinking"; step: number; content: string }
  | { type: "CallTool"; step: number; call_id: string; name: string; args: unknown }
  | {
      type: "CompleteTool"; call_id: string; name: string; result: unknown; error: string | null; asset: Record<string, unknown> | null; credits?: number;
      assets?: Extract<JobEvent, { type: "ToolCompleted" }>["data"]["assets"];
    }
  /** What a running tool tells the job's watchers: progress, an info line, a canvas operation. */
  | { type: "EmitToolEvent"; event: Extract<JobEvent, { type: "ToolProgressed" | "InfoEmitted" | "CanvasOpEmitted" }> }
  | { type: "RecordUsage"; usage: Extract<JobEvent, { type: "UsageRecorded" }>["data"] }
  | { type: "RecordContext"; context: Extract<JobEvent, { type: "ContextPrepared" }>["data"] }
  | { type: "ProposePlan"; plan: Extract<JobEvent, { type: "PlanProposed" }>["data"] }
  /** Hands the job back unfinished for another runner to resume (see JobReleased). */
  | { type: "ReleaseJob"; release: Extract<JobEvent, { type: "JobReleased" }>["data"] }
  | { type: "CompleteJob"; content: string; result: unknown; citations?: Citation[] }
  | { type: "FailJob"; error: JobError }
  | { type: "CancelJob"; reason: string };

export interface JobState {
  status: JobStatus | "none";
  id: string | null;
  kind: "message" | "run" | null;
  sessionId: string | null;
  queued: Extract<JobEvent, { type: "JobQueued" }>["data"] | null;
  attempt: number;
  plan: Extract<JobEvent, { type: "PlanProposed" }>["data"] | null;
  planDecision: "approved" | "rejected" | null;
  cancelRequested: boolean;
  /** Why a cancel was asked for, as the caller said; the job ends with it. */
  cancelReason: string | null;
  usage: Usage;
  /** Credits the job has cost the app so far (model steps and tools). */
  credits: number;
  /** Tokens (in and out) of the steps the app paid for: what usage limits count. */
  appTokens: number;
  error: JobError | null;
  /** Events since the current attempt's JobStarted that change the world or the transcript. */
  sideEffectsThisAttempt: number;
  /** True while the job waits for a runner to pick it up (queued, approved or released, and not yet resumed). */
  resumable: boolean;
}

export const jobDecider: Decider<JobCommand, JobEvent, JobState> = {
  initialState: {
    status: "none", id: null, kind: null, sessionId: null, queued: null, attempt: 0, plan: null, planDecision: null,
    cancelRequested: false, cancelReason: null, usage: ZERO_USAGE, credits: 0, appTokens: 0, error: null, sideEffectsThisAttempt: 0, resumable: false,
  },

  evolve(state, event) {
    switch (event.type) {
      case "JobQueued":
        return { ...state, status: "pending", id: event.data.job_id, kind: event.data.kind, sessionId: event.data.session_id, queued: event.data, resumable: true };
      case "JobStarted":
        return { ...state, status: "processing", attempt: event.data.attempt, sideEffectsThisAttempt: 0, resumable: false };
      case "TextEmitted":
      case "ThinkingEmitted":
      case "ToolCalled":
        return { ...state, sideEffectsThisAttempt: state.sideEffectsThisAttempt + 1 };
      case "ToolCompleted":
        return { ...state, sideEffectsThisAttempt: state.sideEffectsThisAttempt + 1, credits: roundCredits(state.credits + (event.data.credits ?? 0)) };
      case "ToolProgressed":
      case "InfoEmitted":
      case "CanvasOpEmitted":
        return { ...state, sideEffectsThisAttempt: state.sideEffectsThisAttempt + 1 };
      case "PlanProposed":
        return { ...state, status: "awaiting_approval", plan: event.data, planDecision: null };
      case "PlanApproved":
        return { ...state, status: "processing", planDecision: "approved", resumable: true };
      case "PlanRejected":
        return { ...state, planDecision: "rejected" };
      case "JobReleased":
        // Still processing, but no runner holds it: the next one resumes from the stream.
        return { ...state, resumable: true };
      case "CancelRequested":
        return { ...state, cancelRequested: true, cancelReason: event.data.reason };
      case "JobCancelled":
        return { ...state, status: "cancelled" };
      case "JobCompleted":
        return { ...state, status: "completed" };
      case "JobFailed":
        return { ...state, status: "failed", error: event.data.error };
      case "UsageRecorded":
        return {
          ...state, usage: addUsage(state.usage, event.data), credits: roundCredits(state.credits + (event.data.credits ?? 0)),
          appTokens: state.appTokens + (event.data.funded_by === "end_user" ? 0 : event.data.prompt_tokens + event.data.completion_tokens),
        };
      case "ContextPrepared":
        return state; // a record for readers and auditors: what the model was shown
      default:
        return unreachable(event);
    }
  },

  decide(command, state) {
    switch (command.type) {
      case "QueueJob":
        if (state.status !== "none") return []; // already queued: a retried dispatch
        return [{ type: "JobQueued", data: command.data }];
      case "ApprovePlan":
        requireAwaiting(state, "approve", command.plan_id);
        return [{ type: "PlanApproved", data: { plan_id: state.plan!.plan_id } }];
      case "RejectPlan":
        requireAwaiting(state, "reject", command.plan_id);
        return [
          { type: "PlanRejected", data: { plan_id: state.plan!.plan_id, reason: command.reason } },
          { type: "JobCancelled", data: { reason: "plan_rejected" } },
        ];
      case "RequestCancel": {
        requireNotTerminal(state, "cancel");
        const request: JobEvent[] = state.cancelRequested ? [] : [{ type: "CancelRequested", data: { reason: command.reason } }];
        // A job no runner holds (queued, waiting for approval, or orphaned) ends here and now; a running
        // one is ended by its runner between steps, which also aborts its model request.
        if (state.status === "pending" || state.status === "awaiting_approval" || !command.heldByRunner) {
          return [...request, { type: "JobCancelled", data: { reason: command.reason ?? "cancelled" } }];
        }
        return request;
      }
      case "StartJob":
        if (state.status !== "pending" && state.status !== "processing") {
          throw new ConflictError("job_not_runnable", `Job is ${state.status}`);
        }
        if (state.cancelRequested) return [{ type: "JobCancelled", data: { reason: state.cancelReason ?? "cancelled" } }];
        return [{ type: "JobStarted", data: { attempt: state.attempt + 1, runner_id: command.runner_id, ...command.ranWith } }];
      // A running attempt's steps: recorded only while the job is processing and no cancel is pending.
      case "EmitText":
        requireProcessing(state);
        return [{ type: "TextEmitted", data: { step: command.step, content: command.content } }];
      case "EmitThinking":
        requireProcessing(state);
        return [{ type: "ThinkingEmitted", data: { step: command.step, content: command.content } }];
      case "CallTool":
        requireProcessing(state);
        return [{ type: "ToolCalled", data: { step: command.step, call_id: command.call_id, name: command.name, args: command.args } }];
      case "CompleteTool":
        requireProcessing(state);
        return [{ type: "ToolCompleted", data: {
          call_id: command.call_id, name: command.name, result: command.result, error: command.error, asset: command.asset,
          ...(command.credits ? { credits: command.credits } : {}), ...(command.assets?.length ? { assets: command.assets } : {}),
        } }];
      case "EmitToolEvent":
        requireProcessing(state);
        return [command.event];
      case "RecordUsage":
        requireProcessing(state);
        return [{ type: "UsageRecorded", data: command.usage }];
      case "RecordContext":
        requireProcessing(state);
        return [{ type: "ContextPrepared", data: command.context }];
      case "ProposePlan":
        requireProcessing(state);
        return [{ type: "PlanProposed", data: command.plan }];
      case "ReleaseJob":
        if (state.status !== "processing") throw new ConflictError("job_not_processing", `The job is ${state.status}`);
        // A cancel asked for meanwhile ends the job rather than leaving it for a resume that would end it.
        if (state.cancelRequested) return [{ type: "JobCancelled", data: { reason: state.cancelReason ?? "cancelled" } }];
        return [{ type: "JobReleased", data: command.release }];
      case "CompleteJob":
        requireProcessing(state);
        return [{ type: "JobCompleted", data: { content: command.content, result: command.result, ...(command.citations?.length ? { citations: command.citations } : {}) } }];
      case "FailJob":
        requireNotTerminal(state, "fail");
        return [{ type: "JobFailed", data: { error: command.error } }];
      case "CancelJob":
        requireNotTerminal(state, "cancel");
        return [{ type: "JobCancelled", data: { reason: command.reason } }];
      default:
        return unreachable(command);
    }
  },
};

function requireAwaiting(state: JobState, action: string, planId?: string): void {
  if (state.status !== "awaiting_approval" || state.planDecision !== null) {
    throw new ConflictError("job_not_awaiting_approval", `Cannot ${action}: the job is ${state.status}, not awaiting approval`, { status: state.status });
  }
  if (planId !== undefined && state.plan?.plan_id !== planId) {
    throw new ConflictError("plan_changed", `Cannot ${action}: the job is waiting on another plan than ${planId}`, { plan_id: state.plan?.plan_id ?? null });
  }
}

function requireNotTerminal(state: JobState, action: string): void {
  if (state.status === "none") throw new ConflictError("job_not_found", "Job not found");
  if (TERMINAL.has(state.status)) {
    throw new ConflictError("job_finished", `Cannot ${action}: the job already ended (${state.status})`, { status: state.status });
  }
}

function requireProcessing(state: JobState): void {
  if (state.status !== "processing") throw new ConflictError("job_not_processing", `The job is ${state.status}`);
  if (state.cancelRequested) throw new ConflictError("job_cancel_requested", "A cancel was requested");
}
