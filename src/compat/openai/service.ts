/**
 * The Responses operations over our application services: a response is a turn of a session (the
 * session is the conversation), so what it says is in the session's history, read by `/v1` as well.
 */
import type { AppContext } from "../../app/context.ts";
import { agentOrDefault } from "../../app/defaultAgent.ts";
import { getAgent } from "../../app/agentReads.ts";
import { requireUser } from "../../app/access.ts";
import { visibleJob, visibleJobState } from "../../app/jobReads.ts";
import { ConflictError, NotFoundError, ValidationError } from "../../core/errors.ts";
import { approvePlan, cancelJob, rejectPlan } from "../../app/turns.ts";
import { TERMINAL } from "../../domain/job/job.ts";
import { newResourceId } from "../../core/ids.ts";
import { jobStream } from "../../domain/streams.ts";
import { getSession, type SessionRow } from "../../../projections/sessions/index.ts";
import { afterWrite, metaOf, type HttpExchange } from "../../http/routes/v1/common.ts";
import { acceptMessage, requireSession, waitForEnd } from "../../http/routes/v1/sessions/service.ts";
import { approvalRequestId, emptyFold, foldJobEvent, requestRecord, responseView, type JobFold } from "./responses.ts";

/** The user a conversation belongs to when the caller names none: sessions always have one. */
export const DEFAULT_USER = "openai";

/** The agent `model` names: an agent id, or "default" (or none) for the app's default agent. */
export async function agentOfModel(ctx: AppContext, model: string | undefined, signal: AbortSignal): Promise<string> {
  const agentId = await agentOrDefault(ctx, model === undefined || model === "default" ? undefined : model, signal);
  getAgent(ctx.db, ctx.appId, agentId, ctx.allowedAgents);
  return agentId;
}

/** One item of a Responses `input` array, as far as a text turn (or an approval) reads it. */
export interface InputItem {
  type?: string;
  role?: string;
  content?: string | Array<{ type: string; text?: string }>;
  approval_request_id?: unknown;
  approve?: unknown;
  reason?: unknown;
}

/** An answer to a plan's approval request (OpenAI's `mcp_approval_response` item). */
export interface ApprovalAnswer {
  approval_request_id: string;
  approve: boolean;
  reason: string | null;
}

/**
 * What an `input` says: for a turn, the user's text and the instructions its developer or system
 * messages give; or the answers to the approval requests of the response it continues.
 */
export interface TurnInput {
  text: string;
  instructions: string[];
  approvals: ApprovalAnswer[];
}

function approvalAnswer(item: InputItem, i: number): ApprovalAnswer {
  if (typeof item.approval_request_id !== "string" || !/^[A-Za-z0-9_.-]{1,200}$/.test(item.approval_request_id)) {
    throw new ValidationError(`input[${i}].approval_request_id must be the id of an mcp_approval_request`, { param: "input" });
  }
  if (typeof item.approve !== "boolean") throw new ValidationError(`input[${i}].approve must be true or false`, { param: "input" });
  if (item.reason !== undefined && item.reason !== null && (typeof item.reason !== "string" || item.reason.length > 2000)) {
    throw new ValidationError(`input[${i}].reason must be a string of at most 2000 characters`, { param: "input" });
  }
  return { approval_request_id: item.approval_request_id, approve: item.approve, reason: typeof item.reason === "string" ? item.reason : null };
}

/** The text of an input item's content: a string, or its text parts (other part types are refused, not dropped). */
function itemText(item: InputItem, i: number, partType: string): string {
  // The body's schema admits any object as an item: its content's shape is checked here.
  if (typeof item.content === "string") return item.content;
  if (item.content !== undefined && !Array.isArray(item.content)) {
    throw new ValidationError(`input[${i}].content must be a string or an array of content parts`, { param: "input" });
  }
  const texts: string[] = [];
  for (const part of (item.content ?? []) as unknown[]) {
    const p = part as { type?: unknown; text?: unknown } | null;
    if (p === null || typeof p !== "object" || p.type !== partType || typeof p.text !== "string") {
      throw new ValidationError(`input[${i}]: only ${partType} content is supported here, not ${p !== null && typeof p === "object" ? String(p.type) : typeof p}`, { param: "input" });
    }
    texts.push(p.text);
  }
  return texts.join("\n\n");
}

/**
 * The turn an `input` asks for: a string, or an array of messages whose user messages' text parts are
 * the turn's text (in order) and whose developer and system messages are instructions for the turn.
 * Our sessions keep their own history, so earlier assistant items are not replayed; other item and
 * part types (images, files, tool outputs) are refused rather than silently dropped.
 */
export function turnInput(input: string | InputItem[]): TurnInput {
  if (typeof input === "string") return { text: input, instructions: [], approvals: [] };
  const texts: string[] = [];
  const instructions: string[] = [];
  const approvals: ApprovalAnswer[] = [];
  for (const [i, item] of input.entries()) {
    if (item.type === "mcp_approval_response") {
      approvals.push(approvalAnswer(item, i));
      continue;
    }
    if (item.type !== undefined && item.type !== "message") throw new ValidationError(`input[${i}]: only message and mcp_approval_response items are supported, not ${item.type}`, { param: "input" });
    if (item.role === "user") texts.push(itemText(item, i, "input_text"));
    else if (item.role === "developer" || item.role === "system") instructions.push(itemText(item, i, "input_text"));
    else if (item.role !== "assistant") throw new ValidationError(`input[${i}]: role must be user, assistant, developer or system`, { param: "input" });
  }
  const text = texts.filter(Boolean).join("\n\n");
  if (approvals.length) {
    // A plan is answered on its own: the response it belongs to goes on; new words are a new response.
    if (text || approvals.length > 1) throw new ValidationError("Send one mcp_approval_response on its own, without other input", { param: "input" });
    return { text: "", instructions: [], approvals };
  }
  if (!text) throw new ValidationError("input has no user text", { param: "input" });
  return { text, instructions: instructions.filter(Boolean), approvals: [] };
}

/** Starts a session for a conversation: the agent, the user, and the conversation's metadata. */
export async function startConversation(
  ctx: AppContext, http: HttpExchange, agentId: string, userId: string, metadata: Record<string, string>,
): Promise<{ id: string; position: bigint | null }> {
  requireUser(ctx, userId);
  const id = newResourceId("sess");
  const r = await ctx.repos.sessions.handle(id, {
    type: "StartSession", session_id: id, agent_id: agentId, user_id: userId, name: `conversation-${id.slice(-6)}`, external_ref: null, metadata,
  }, metaOf(ctx, http.request, userId));
  await afterWrite(ctx, http, r.position);
  return { id, position: r.position };
}

/** The read-model row of a session just started, for when the read model has not caught up with it. */
function newSessionRow(ctx: AppContext, id: string, agentId: string, userId: string): SessionRow {
  const now = Date.now();
  return {
    id, app_id: ctx.appId, agent_id: agentId, user_id: userId, name: `conversation-${id.slice(-6)}`, external_ref: null, metadata: "{}",
    archived: 0, deleted: 0, turns: "[]", message_count: 0, asset_count: 0, credits_spent: 0, prompt_tokens: 0, completion_tokens: 0,
    cached_tokens: 0, reasoning_tokens: 0, created_at: now, updated_at: now, last_activity_at: now, activity_seq: 0, created_seq: 0,
  };
}

export interface CreateInput {
  model?: string;
  input: string | InputItem[];
  instructions?: string | null;
  conversation?: string | { id: string } | null;
  previous_response_id?: string | null;
  background?: boolean | null;
  metadata?: Record<string, string> | null;
  user?: string;
  safety_identifier?: string;
}

/**
 * Accepts a response: the conversation it continues (named, or the one `previous_response_id` is in,
 * or a new one), then a message in it, which queues the job the response is. What the response echoes
 * of the request (metadata, instructions, background, previous_response_id) is kept with the message.
 */
export async function createResponse(ctx: AppContext, http: HttpExchange, body: CreateInput): Promise<{ jobId: string; sessionId: string; decided?: number }> {
  const conversation = typeof body.conversation === "string" ? body.conversation : body.conversation?.id ?? null;
  if (conversation && body.previous_response_id) {
    throw new ValidationError("Send either conversation or previous_response_id, not both", { param: "previous_response_id" });
  }
  const turn = turnInput(body.input);
  if (turn.approvals.length) return answerApproval(ctx, http, body.previous_response_id ?? null, turn.approvals[0]!);
  let sessionId = conversation;
  let started: SessionRow | null = null;
  if (body.previous_response_id) {
    const previous = await visibleJobState(ctx, body.previous_response_id).catch(() => null);
    if (!previous) throw new ValidationError(`Previous response ${body.previous_response_id} not found`, { param: "previous_response_id" }, "previous_response_not_found");
    if (!previous.sessionId) throw new ValidationError("previous_response_id names a single-turn run, which has no conversation", { param: "previous_response_id" });
    sessionId = previous.sessionId;
  }
  if (sessionId) {
    const row = requireSession(ctx, sessionId);
    // A conversation belongs to one agent: a model naming another is refused rather than ignored.
    if (body.model !== undefined && body.model !== "default" && body.model !== row.agent_id) {
      throw new ValidationError(`This conversation belongs to agent ${row.agent_id}, not ${body.model}`, { param: "model" }, "model_mismatch");
    }
  } else {
    const agentId = await agentOfModel(ctx, body.model, http.request.signal);
    const userId = ctx.actingUser ?? body.user ?? body.safety_identifier ?? DEFAULT_USER;
    sessionId = (await startConversation(ctx, http, agentId, userId, {})).id;
    started = newSessionRow(ctx, sessionId, agentId, userId);
  }
  // A session started just now may not be in the read model yet (it lags): what the message needs of it is known.
  const session = getSession(ctx.db, ctx.appId, sessionId) ?? started ?? requireSession(ctx, sessionId);
  // A response waiting on a plan does not make the conversation busy (see declineWaitingPlan): the new
  // input queues behind it, and only once it is accepted is the plan declined.
  const waiting = started ? null : await waitingPlan(ctx, session);
  const ids = { message_id: newResourceId("msg"), job_id: newResourceId("resp") };
  // `instructions` and the input's developer and system messages go where an app's context for a turn
  // does: appended to the agent's system prompt for this turn only (not carried to the next, as at OpenAI).
  const instructions = [body.instructions ?? "", ...turn.instructions].filter(Boolean).join("\n\n");
  const accepted = await acceptMessage(ctx, http.request, session, {
    content: turn.text, attachments: [], model: null, multitask: waiting ? "enqueue" : "reject",
    context: instructions ? { instructions } : null,
    client_data: requestRecord({
      background: body.background ?? false, previous_response_id: body.previous_response_id ?? null,
      instructions: body.instructions ?? null, metadata: body.metadata ?? {},
    }),
  }, ids);
  await afterWrite(ctx, http, accepted.position);
  if (waiting) await declineWaitingPlan(ctx, http, waiting);
  return { jobId: accepted.job_id, sessionId };
}

/**
 * A response waiting on a plan has ended, as OpenAI's does at an approval request, and a client may
 * leave the request unanswered and go on. The conversation's one turn in flight, when it waits on a
 * plan: new input then queues behind it (any other turn in flight still makes the conversation busy, 409).
 */
async function waitingPlan(ctx: AppContext, session: SessionRow): Promise<{ jobId: string; planId: string; userId: string | undefined } | null> {
  const turns = JSON.parse(session.turns) as string[];
  if (turns.length !== 1) return null;
  const state = await visibleJobState(ctx, turns[0]!).catch(() => null);
  if (state?.status !== "awaiting_approval" || !state.plan) return null;
  return { jobId: turns[0]!, planId: state.plan.plan_id, userId: state.queued?.user_id };
}

/**
 * Declines the plan a new input went past, once that input is accepted (a refused input leaves the
 * plan waiting): rejected as superseded, nothing of it runs, and the queued input runs next. A plan
 * decided meanwhile (approved by another request) is left as decided: the input then runs after it.
 */
async function declineWaitingPlan(ctx: AppContext, http: HttpExchange, waiting: { jobId: string; planId: string; userId: string | undefined }): Promise<void> {
  try {
    await afterWrite(ctx, http, await rejectPlan(ctx, waiting.jobId, "superseded by new input", metaOf(ctx, http.request, waiting.userId), waiting.planId));
  } catch (err) {
    if (!(err instanceof ConflictError)) throw err;
  }
}

/**
 * Answers a plan's approval request: approves or rejects the plan of the response it continues, which
 * then goes on (or ends cancelled). Answers that response, and the cursor of its last event before the
 * decision, so a stream shows what follows it.
 */
async function answerApproval(ctx: AppContext, http: HttpExchange, responseId: string | null, answer: ApprovalAnswer) {
  if (!responseId) {
    throw new ValidationError("An mcp_approval_response continues the response that asked for it: send that response's id as previous_response_id", { param: "previous_response_id" });
  }
  const { state, lastEventId } = await visibleJob(ctx, responseId).catch((err) => {
    if (err instanceof NotFoundError) throw new ValidationError(`Previous response ${responseId} not found`, { param: "previous_response_id" }, "previous_response_not_found");
    throw err;
  });
  if (!state.sessionId) throw new ValidationError("previous_response_id names a single-turn run, which has no conversation", { param: "previous_response_id" });
  if (state.status !== "awaiting_approval" || !state.plan || approvalRequestId(state.plan.plan_id) !== answer.approval_request_id) {
    throw new ValidationError(`${answer.approval_request_id} is not an approval request response ${responseId} is waiting on`, { param: "input" }, "approval_request_not_pending");
  }
  const meta = metaOf(ctx, http.request, state.queued?.user_id);
  // Decided on the plan the answer names: a late answer to an earlier plan does not decide a later one.
  const planId = state.plan.plan_id;
  const position = answer.approve ? await approvePlan(ctx, responseId, meta, planId) : await rejectPlan(ctx, responseId, answer.reason, meta, planId);
  await afterWrite(ctx, http, position);
  return { jobId: responseId, sessionId: state.sessionId, decided: lastEventId };
}

/**
 * Folds already made, by response id, with the number of events each covers: a job's events never
 * change once appended, so a retrieve folds only what came since (nothing, once it has ended). Bounded;
 * the oldest fold goes first. Visibility is checked on every read, before a fold is used.
 */
const folds = new Map<string, { lastEventId: number; fold: JobFold }>();
const MAX_FOLDS = 2_000;

/** The job's events folded into what a response shows; 404 when the job is not visible to the caller. */
export async function foldResponse(ctx: AppContext, id: string): Promise<{ fold: JobFold; lastEventId: number; ended: boolean }> {
  const { state, lastEventId } = await visibleJob(ctx, id);
  const cached = folds.get(id);
  let fold = cached && cached.lastEventId <= lastEventId ? cached.fold : emptyFold(id);
  const from = cached && cached.lastEventId <= lastEventId ? cached.lastEventId : 0;
  if (from < lastEventId) {
    for await (const e of ctx.store.readStream(jobStream(id), { fromRevision: BigInt(from), maxCount: lastEventId - from })) fold = foldJobEvent(fold, e);
  }
  folds.delete(id);
  folds.set(id, { lastEventId, fold });
  if (folds.size > MAX_FOLDS) folds.delete(folds.keys().next().value!);
  return { fold, lastEventId, ended: TERMINAL.has(state.status as never) };
}

/** The response as create, retrieve and cancel show it. */
export async function readResponse(ctx: AppContext, id: string) {
  return responseView((await foldResponse(ctx, id)).fold);
}

/**
 * Cancels a response. One still running is cancelled whether or not it was created in the background
 * (a streamed response's client may stop it too). One that has ended is answered as it is when it was
 * created in the background (cancelling again changes nothing, as at OpenAI), and refused with 400 when
 * it was not: OpenAI cancels only background responses.
 */
export async function cancelResponse(ctx: AppContext, http: HttpExchange, id: string, waitMs: number) {
  const { fold, ended } = await foldResponse(ctx, id); // 404 before anything is written
  const endedAs = (background: boolean) => {
    if (!background) throw notCancellable();
    return readResponse(ctx, id);
  };
  if (ended) return endedAs(fold.request.background);
  const meta = metaOf(ctx, http.request);
  let status: string;
  try {
    const r = await cancelJob(ctx, id, "cancelled by the client", meta);
    await afterWrite(ctx, http, r.position);
    status = r.status;
  } catch (err) {
    // It ended between the read and the cancel: answered as one that had ended.
    if (!(err instanceof ConflictError) || !TERMINAL.has((await visibleJobState(ctx, id)).status as never)) throw err;
    return endedAs(fold.request.background);
  }
  // A running job ends within one step: answered at its end (bounded), as OpenAI answers with the cancelled response.
  if (!TERMINAL.has(status as never)) await waitForEnd(ctx, id, waitMs, http.request.signal, meta);
  return readResponse(ctx, id);
}

const notCancellable = () =>
  new ValidationError("Cannot cancel a synchronous response: only responses created with background set to true can be cancelled once they have ended", { param: "response_id" }, "response_not_cancellable");
