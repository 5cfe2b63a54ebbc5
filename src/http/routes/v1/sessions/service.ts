/** What the session routes do beyond a single command: reads with their 404s, answers built while read models lag, waits. */
import type { AppContext } from "../../../../app/context.ts";
import { requireAgentAllowed, requireUser } from "../../../../app/access.ts";
import type { CommandMetadata } from "../../../../app/repository.ts";
import { NotFoundError } from "../../../../core/errors.ts";
import { TERMINAL } from "../../../../domain/job/job.ts";
import type { Attachment } from "../../../../domain/session/session.ts";
import { sessionEvents } from "../../../../domain/session/events.ts";
import { occurredAt } from "../../../../core/eventContract.ts";
import { jobStream, sessionStream } from "../../../../domain/streams.ts";
import { getSession, type SessionRow } from "../../../../../projections/sessions/index.ts";
import { afterWrite, metaOf, sessionView, type HttpExchange } from "../common.ts";
import { visibleJobState } from "../../../../app/jobReads.ts";
import { forgetStored, inlineFileId, resolveAttachments } from "../../../../app/messageFiles.ts";
import { messageRecorded, precheckMessage, replySummary, sendMessage, type Accepted, type MessageIds, type MessageInput } from "../../../../app/turns.ts";
import { toErrorResponse } from "../../../errors.ts";

/** The session's read-model row; 404 `session_not_found` when it does not exist or was deleted. */
export function requireSession(ctx: AppContext, id: string): SessionRow {
  const row = getSession(ctx.db, ctx.appId, id);
  if (!row) throw new NotFoundError("Session not found", { param: "session_id" }, "session_not_found");
  requireAgentAllowed(ctx, row.agent_id);
  requireUser(ctx, row.user_id);
  return row;
}

/**
 * Deletes a session (every surface's delete): gone from lists and reads, its events kept for audit.
 * Its turns end with it and its files go: the turn coordinator reacts to the deletion wherever jobs
 * run; asking it here too does it before the caller answers.
 */
export async function deleteSession(ctx: AppContext, http: HttpExchange, session: SessionRow): Promise<void> {
  const meta = metaOf(ctx, http.request, session.user_id);
  const r = await ctx.repos.sessions.handle(session.id, { type: "DeleteSession" }, meta);
  await ctx.turns.sessionDeleted(session.id, meta, r.position);
  await afterWrite(ctx, http, r.position);
}

/**
 * The session as the response shows it: from the read model once it has the write; while it lags,
 * the read model's row (if any) brought up to date from the session's own events.
 */
export async function sessionAfterWrite(ctx: AppContext, http: HttpExchange, id: string, position: bigint | null) {
  const fresh = await afterWrite(ctx, http, position);
  const row = getSession(ctx.db, ctx.appId, id);
  if (fresh && row) return sessionView(row);
  const { state, appId } = await ctx.repos.sessions.load(id);
  if (state.status !== "active" || appId !== ctx.appId) throw new NotFoundError("Session not found", { param: "session_id" }, "session_not_found");
  const now = Date.now();
  const base: SessionRow = row ?? {
    id, app_id: ctx.appId, agent_id: state.agentId!, user_id: state.userId!, name: state.name, external_ref: state.externalRef,
    metadata: "{}", archived: 0, deleted: 0, turns: "[]", message_count: 0, asset_count: 0, credits_spent: 0, prompt_tokens: 0, completion_tokens: 0,
    cached_tokens: 0, reasoning_tokens: 0, created_at: now, updated_at: now, last_activity_at: now, activity_seq: 0, created_seq: 0,
  };
  return sessionView({
    ...base, name: state.name, archived: state.archived ? 1 : 0, metadata: JSON.stringify(state.metadata),
    turns: JSON.stringify(state.turns.map((t) => t.job_id)), asset_count: state.assetCount, updated_at: now,
  });
}

/** The AssetRegistered event of `assetId` in the session, if an earlier execution committed it. */
export async function registeredAsset(ctx: AppContext, sessionId: string, assetId: string) {
  for await (const e of ctx.store.readStream(sessionStream(sessionId), { direction: "backwards" })) {
    const event = sessionEvents.decode(e);
    if (event.type === "AssetRegistered" && event.data.asset_id === assetId) return { ...event.data, created_at: occurredAt(e) };
  }
  return null;
}

/** Waits (bounded) until the job ends (or, with `orAwaitingApproval`, waits on a plan); returns false on timeout. */
export async function waitForEnd(
  ctx: AppContext, jobId: string, timeoutMs: number, signal: AbortSignal, meta: CommandMetadata,
  options: { orAwaitingApproval?: boolean } = {},
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const remaining = deadline - Date.now();
    // A shutting-down process stops waiting: the caller gets the job to poll, as after wait_timeout_s.
    const waiter = ctx.live.waiter(jobStream(jobId), Math.max(1, remaining), ctx.closing ? AbortSignal.any([signal, ctx.closing]) : signal);
    const state = await visibleJobState(ctx, jobId);
    if (TERMINAL.has(state.status as never)) {
      waiter.cancel();
      // The reply is returned with its turn closed and in the history, so the caller can send the next
      // message, or read the history, at once.
      await ctx.turns.turnSettled(jobId, meta, signal).catch(() => false);
      return true;
    }
    // A caller that can answer a plan stops at it (the job goes on once it is decided).
    if (options.orAwaitingApproval && state.status === "awaiting_approval") {
      waiter.cancel();
      return true;
    }
    if (remaining <= 0 || signal.aborted || ctx.closing?.aborted) {
      waiter.cancel();
      return false;
    }
    await waiter.promise;
  }
}

/**
 * Accepts a message — or a skill run, which is one — with its attachments; the one path both routes
 * take. The checks that cost no write come first (session, busy, agent, skill); then the attachments
 * (inline bytes stored as files of the session, `file_id`s checked: src/app/messageFiles.ts); then the
 * message. Files stored for a message that is then refused are removed, unless the message was
 * recorded after all, or the request holds an Idempotency-Key and failed with a 5xx: its retry takes
 * over with the same ids and names the same files (a 4xx frees the key, and a retry gets new ids).
 */
export async function acceptMessage(
  ctx: AppContext, request: Request, session: SessionRow, input: MessageInput, ids: MessageIds, resumed = false,
): Promise<Accepted> {
  const meta = metaOf(ctx, request, session.user_id);
  const stored: string[] = [];
  try {
    await precheckMessage(ctx, session.id, input, ids, resumed);
    const attachments = await resolveAttachments(ctx, session, input.attachments, ids.message_id, meta, stored);
    // Files offered once are the session's own, not named by the caller: one removed meanwhile is not offered.
    const offered: Attachment[] = [];
    for (const file of input.once_files ?? []) {
      try {
        offered.push(...await resolveAttachments(ctx, session, [file], ids.message_id, meta, stored));
      } catch (err) {
        if (!(err instanceof NotFoundError)) throw err;
      }
    }
    return await sendMessage(ctx, session.id, { ...input, attachments, ...(offered.length ? { once_files: offered } : {}) }, meta, ids, resumed);
  } catch (err) {
    const retried = request.headers.get("idempotency-key") !== null && toErrorResponse(err).status >= 500;
    // A retry taking over an earlier execution may be refused before it stores anything: the files
    // that execution stored under the same message id go too, since the refusal frees the key.
    const earlier = resumed ? input.attachments.flatMap((a, i) => (a.type === "file" && a.data ? [inlineFileId(ids.message_id, i)] : [])) : [];
    const files = [...new Set([...stored, ...earlier])];
    if (files.length && !retried && !(await messageRecorded(ctx, session.id, ids.message_id).catch(() => true))) await forgetStored(ctx, files, meta);
    throw err;
  }
}

/**
 * The answer to a request that started a turn (a message, a skill run): 202 with what was accepted, or
 * with `wait`, 200 and the finished reply (202 with the status when it did not end in time).
 */
export async function turnAnswer(
  ctx: AppContext, request: Request, sessionId: string, accepted: Accepted, messageId: string, wait: { wait?: boolean; wait_timeout_s?: number },
) {
  const acceptedBody = { job_id: accepted.job_id, message_id: messageId, session_id: sessionId, status: "pending", queued: accepted.queued };
  if (!wait.wait) return { status: 202, body: acceptedBody };
  const ended = await waitForEnd(ctx, accepted.job_id, (wait.wait_timeout_s ?? 60) * 1000, request.signal, metaOf(ctx, request));
  const state = await visibleJobState(ctx, accepted.job_id);
  if (!ended) return { status: 202, body: { ...acceptedBody, status: state.status } };
  const reply = state.status === "completed" ? await replySummary(ctx, accepted.job_id) : null;
  return { status: 200, body: { ...acceptedBody, status: state.status, reply, error: state.error, usage: state.usage, credits_spent: state.credits } };
}
