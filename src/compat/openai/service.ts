/**
 * The Responses operations over our application services: a response is a turn of a session (the
 * session is the conversation), so what it says is in the session's history, read by `/v1` as well.
 */
import type { AppContext } from "../../app/context.ts";
import { agentOrDefault } from "../../app/defaultAgent.ts";
import { getAgent } from "../../app/agentReads.ts";
import { requireUser } from "../../app/access.ts";
import { visibleJob, visibleJobState } from "../../app/jobReads.ts";
import { ValidationError } from "../../core/errors.ts";
import { newResourceId } from "../../core/ids.ts";
import { jobStream } from "../../domain/streams.ts";
import { listMessages } from "../../../projections/messages/index.ts";
import { getSession, type SessionRow } from "../../../projections/sessions/index.ts";
import { afterWrite, metaOf, type HttpExchange } from "../../http/routes/v1/common.ts";
import { acceptMessage, requireSession } from "../../http/routes/v1/sessions/service.ts";
import { emptyFold, foldJobEvent, responseView, type JobFold, type ResponseContext } from "./responses.ts";

/** The user a conversation belongs to when the caller names none: sessions always have one. */
export const DEFAULT_USER = "openai";

/** The agent `model` names: an agent id, or "default" (or none) for the app's default agent. */
export async function agentOfModel(ctx: AppContext, model: string | undefined, signal: AbortSignal): Promise<string> {
  const agentId = await agentOrDefault(ctx, model === undefined || model === "default" ? undefined : model, signal);
  getAgent(ctx.db, ctx.appId, agentId, ctx.allowedAgents);
  return agentId;
}

/** One item of a Responses `input` array, as far as a text turn reads it. */
export interface InputItem {
  type?: string;
  role?: string;
  content?: string | Array<{ type: string; text?: string }>;
}

/**
 * The text of a turn: `input` as a string, or the user messages of an input array (their text parts,
 * in order). Our sessions keep their own history, so earlier assistant items are not replayed; other
 * part types (images, files, tool outputs) are refused rather than silently dropped.
 */
export function inputText(input: string | InputItem[]): string {
  if (typeof input === "string") return input;
  const texts: string[] = [];
  for (const [i, item] of input.entries()) {
    if (item.type !== undefined && item.type !== "message") throw new ValidationError(`input[${i}]: only message items are supported, not ${item.type}`, { param: "input" });
    if (item.role !== "user") continue;
    // The body's schema admits any object as an item: its content's shape is checked here.
    if (typeof item.content === "string") texts.push(item.content);
    else if (item.content !== undefined && !Array.isArray(item.content)) {
      throw new ValidationError(`input[${i}].content must be a string or an array of content parts`, { param: "input" });
    } else for (const part of (item.content ?? []) as unknown[]) {
      const p = part as { type?: unknown; text?: unknown } | null;
      if (p === null || typeof p !== "object" || p.type !== "input_text" || typeof p.text !== "string") {
        throw new ValidationError(`input[${i}]: only input_text content is supported, not ${p !== null && typeof p === "object" ? String(p.type) : typeof p}`, { param: "input" });
      }
      texts.push(p.text);
    }
  }
  const text = texts.join("\n\n");
  if (!text) throw new ValidationError("input has no user text", { param: "input" });
  return text;
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
  user?: string;
  safety_identifier?: string;
}

/**
 * Accepts a response: the conversation it continues (named, or the one `previous_response_id` is in,
 * or a new one), then a message in it, which queues the job the response is.
 */
export async function createResponse(ctx: AppContext, http: HttpExchange, body: CreateInput): Promise<{ jobId: string; sessionId: string }> {
  const conversation = typeof body.conversation === "string" ? body.conversation : body.conversation?.id ?? null;
  if (conversation && body.previous_response_id) {
    throw new ValidationError("Send either conversation or previous_response_id, not both", { param: "previous_response_id" });
  }
  const content = inputText(body.input);
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
  const ids = { message_id: newResourceId("msg"), job_id: newResourceId("resp") };
  const accepted = await acceptMessage(ctx, http.request, session, {
    content, attachments: [], model: null, multitask: "reject",
    // Instructions go where the agent's context does: appended to its system prompt for this turn.
    context: body.instructions ? { instructions: body.instructions } : null,
  }, ids);
  await afterWrite(ctx, http, accepted.position);
  return { jobId: accepted.job_id, sessionId };
}

/** The job's events folded into what a response shows; 404 when the job is not visible to the caller. */
export async function foldResponse(ctx: AppContext, id: string): Promise<{ fold: JobFold; lastEventId: number; ended: boolean }> {
  const { state, lastEventId } = await visibleJob(ctx, id);
  let fold = emptyFold(id);
  for await (const e of ctx.store.readStream(jobStream(id), { maxCount: lastEventId })) fold = foldJobEvent(fold, e);
  const ended = state.status === "completed" || state.status === "failed" || state.status === "cancelled";
  return { fold, lastEventId, ended };
}

/**
 * The response a conversation's history puts before this one: the job of the last message before
 * its own (null for the first turn). Derived from the history, so nothing more is stored for it.
 */
export function previousResponseOf(ctx: AppContext, sessionId: string | null, jobId: string): string | null {
  if (!sessionId) return null;
  const rows = listMessages(ctx.db, sessionId, 10_000);
  const at = rows.findIndex((r) => r.job_id === jobId);
  for (let i = (at < 0 ? rows.length : at) - 1; i >= 0; i--) if (rows[i]!.job_id !== jobId) return rows[i]!.job_id;
  return null;
}

/** The response as retrieve shows it. */
export async function readResponse(ctx: AppContext, id: string, context?: Partial<ResponseContext>) {
  const { fold } = await foldResponse(ctx, id);
  return responseView(fold, {
    previous_response_id: context?.previous_response_id !== undefined ? context.previous_response_id : previousResponseOf(ctx, fold.sessionId, id),
    background: context?.background ?? false,
  });
}
