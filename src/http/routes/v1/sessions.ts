/** /v1/sessions: sessions, their messages (turns), assets, jobs, and the session event stream. */
import { Elysia, t } from "elysia";
import type { AppContext } from "../../../app/context.ts";
import type { CommandMetadata } from "../../../app/repository.ts";
import { sendMessage, replySummary, type MessageIds } from "../../../app/turns.ts";
import { NotFoundError, ValidationError } from "../../../core/errors.ts";
import { newResourceId } from "../../../core/ids.ts";
import { TERMINAL } from "../../../domain/job/job.ts";
import type { SessionEvent } from "../../../domain/session/session.ts";
import { sessionEvents } from "../../../domain/session/events.ts";
import { occurredAt } from "../../../core/eventContract.ts";
import { DEFAULT_AGENT_ID, jobStream, sessionStream } from "../../../domain/streams.ts";
import { listAssets, type AssetRow } from "../../../../projections/assets/index.ts";
import { listSessionJobs } from "../../../../projections/jobs/index.ts";
import { listMessages, type MessageRow } from "../../../../projections/messages/index.ts";
import { getSession, listSessions, type SessionRow } from "../../../../projections/sessions/index.ts";
import { decodeCursor, page, PageQuery, encodeCursor } from "../../pagination.ts";
import { resumeFrom, sseResponse } from "../../sse.ts";
import { getAgent } from "../../../app/agentReads.ts";
import {
  afterWrite, Attachment, create, IdParam, iso, jobView, metaOf, parseJson, sessionView,
  type HttpExchange, type V1Deps,
} from "./common.ts";
import { CursorQuery, pollStream } from "./cursorEvents.ts";
import { MessageAccepted, MessageReply, SSE_RESPONSE, v1Models, Verbosity } from "./models.ts";
import { visibleJobState } from "../../../app/jobReads.ts";

function requireSession(ctx: AppContext, id: string): SessionRow {
  const row = getSession(ctx.db, ctx.appId, id);
  if (!row) throw new NotFoundError("Session not found", { param: "session_id" }, "session_not_found");
  return row;
}

const assetView = (r: AssetRow) => ({
  asset_label: r.asset_label, kind: r.kind, url: r.url, source_tool: r.source_tool, model: r.model, prompt: r.prompt,
  job_id: r.job_id, created_at: iso(r.created_at)!,
});

const messageView = (r: MessageRow) => ({
  id: r.id, role: r.role, content: r.content, job_id: r.job_id, status: r.status,
  attachments: parseJson<unknown[]>(r.attachments) ?? [], tool_calls: parseJson<unknown[]>(r.tool_calls) ?? [], assets: parseJson<unknown[]>(r.assets) ?? [],
  result: parseJson(r.result), error: parseJson(r.error), created_at: iso(r.created_at)!,
});

const MessageBody = t.Object({
  content: t.String({ minLength: 1, maxLength: 100_000 }),
  attachments: t.Optional(t.Array(Attachment, { maxItems: 20 })),
  model: t.Optional(t.String({ minLength: 1, maxLength: 200 })),
  context: t.Optional(t.Record(t.String(), t.Unknown())),
  multitask: t.Optional(t.Union([t.Literal("reject"), t.Literal("enqueue")], { default: "reject" })),
  wait: t.Optional(t.Boolean({ description: "Answer with the finished reply instead of 202 (bounded by wait_timeout_s)" })),
  wait_timeout_s: t.Optional(t.Integer({ minimum: 1, maximum: 300, default: 60 })),
  stream: t.Optional(t.Boolean({ description: "Answer as an SSE stream of the job's events" })),
  verbosity: Verbosity,
});

/**
 * The session as the response shows it: from the read model once it has the write; while it lags,
 * the read model's row (if any) brought up to date from the session's own events.
 */
async function sessionAfterWrite(ctx: AppContext, http: HttpExchange, id: string, position: bigint | null) {
  const fresh = await afterWrite(ctx, http, position);
  const row = getSession(ctx.db, ctx.appId, id);
  if (fresh && row) return sessionView(row);
  const { state } = await ctx.repos.sessions.load(id);
  if (state.status !== "active") throw new NotFoundError("Session not found", { param: "session_id" }, "session_not_found");
  const now = Date.now();
  const base: SessionRow = row ?? {
    id, app_id: ctx.appId, agent_id: state.agentId!, user_id: state.userId!, name: state.name, external_ref: state.externalRef,
    metadata: "{}", archived: 0, deleted: 0, turns: "[]", message_count: 0, asset_count: 0, prompt_tokens: 0, completion_tokens: 0,
    cached_tokens: 0, reasoning_tokens: 0, created_at: now, updated_at: now, last_activity_at: now, activity_seq: 0, created_seq: 0,
  };
  return sessionView({
    ...base, name: state.name, archived: state.archived ? 1 : 0, metadata: JSON.stringify(state.metadata),
    turns: JSON.stringify(state.turns.map((t) => t.job_id)), asset_count: state.assetCount, updated_at: now,
  });
}

/** The AssetRegistered event of `assetId` in the session, if an earlier execution committed it. */
async function registeredAsset(ctx: AppContext, sessionId: string, assetId: string) {
  for await (const e of ctx.store.readStream(sessionStream(sessionId), { direction: "backwards" })) {
    const event = sessionEvents.decode(e);
    if (event.type === "AssetRegistered" && event.data.asset_id === assetId) return { ...event.data, created_at: occurredAt(e) };
  }
  return null;
}

/** Waits (bounded) until the job ends; returns false on timeout. */
async function waitForEnd(ctx: AppContext, jobId: string, timeoutMs: number, signal: AbortSignal, meta: CommandMetadata): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const remaining = deadline - Date.now();
    const waiter = ctx.live.waiter(jobStream(jobId), Math.max(1, remaining), signal);
    const state = await visibleJobState(ctx, jobId);
    if (TERMINAL.has(state.status as never)) {
      waiter.cancel();
      // The reply is returned with its turn closed, so the caller can send the next message at once.
      await ctx.turns.jobEnded(jobId, meta).catch(() => {});
      return true;
    }
    if (remaining <= 0 || signal.aborted) {
      waiter.cancel();
      return false;
    }
    await waiter.promise;
  }
}

export const sessionRoutes = ({ ctx }: V1Deps) =>
  new Elysia({ name: "agentry.v1.sessions", prefix: "/v1/sessions", detail: { tags: ["Sessions"] } })
    .use(v1Models)
    .post("", ({ body, request, set }) => create(ctx, request, body, set, { session: "sess" }, async ({ ids, resumed }) => {
      const agentId = body.agent_id ?? DEFAULT_AGENT_ID;
      getAgent(ctx.db, ctx.appId, agentId);
      const id = ids.session!;
      // A retry taking over this request finds the session its first execution started.
      const exists = resumed && (await ctx.repos.sessions.load(id)).state.status !== "none";
      const position = exists ? null : (await ctx.repos.sessions.handle(id, {
        type: "StartSession", session_id: id, agent_id: agentId, user_id: body.user_id,
        name: body.name ?? `session-${id.slice(-6)}`, external_ref: body.external_ref ?? null, metadata: body.metadata ?? {},
      }, metaOf(ctx, request))).position;
      return { status: 201, body: await sessionAfterWrite(ctx, { set, request }, id, position) };
    }), {
      body: t.Object({
        agent_id: t.Optional(t.String({ minLength: 1, maxLength: 100 })),
        user_id: t.String({ minLength: 1, maxLength: 200 }),
        name: t.Optional(t.String({ minLength: 1, maxLength: 200 })),
        external_ref: t.Optional(t.String({ minLength: 1, maxLength: 200 })),
        metadata: t.Optional(t.Record(t.String(), t.Unknown())),
      }),
      response: { 201: "Session" },
      detail: { summary: "Start a session" },
    })
    .get("", ({ query }) => {
      const limit = query.limit ?? 20;
      const after = decodeCursor(query.cursor, { order: "string", seq: "integer", id: "string" });
      const filter = {
        ...(query.user_id !== undefined ? { user_id: query.user_id } : {}),
        ...(query.archived !== undefined ? { archived: query.archived } : { archived: false }),
        ...(query.external_ref !== undefined ? { external_ref: query.external_ref } : {}),
      };
      const order = query.order ?? "activity";
      const rows = listSessions(ctx.db, ctx.appId, filter, order, limit + 1, after);
      // The cursor belongs to one order: a cursor of the other order reads as invalid.
      if (after && after.order !== order) throw new ValidationError("This cursor was issued for another order", { param: "cursor" }, "invalid_cursor");
      return page(rows, limit, sessionView, (r) => ({ order, seq: order === "created" ? r.created_seq : r.activity_seq, id: r.id }));
    }, {
      query: t.Object({
        ...PageQuery,
        user_id: t.Optional(t.String({ minLength: 1, maxLength: 200 })),
        external_ref: t.Optional(t.String({ minLength: 1, maxLength: 200 })),
        archived: t.Optional(t.Boolean({ description: "false (default): active sessions; true: archived ones" })),
        order: t.Optional(t.Union([t.Literal("activity"), t.Literal("created")], {
          description: "activity (default): most recently active first; a session active while you page moves ahead and may be missed. created: newest first, stable while you page.",
        })),
      }),
      response: "SessionList",
      detail: { summary: "List sessions, most recently active (or newest) first" },
    })
    .get("/:session_id", ({ params }) => sessionView(requireSession(ctx, params.session_id)), {
      params: IdParam("session_id"), response: "Session", detail: { summary: "Get a session" },
    })
    .patch("/:session_id", async ({ params, body, request, set }) => {
      requireSession(ctx, params.session_id);
      if (body.name === undefined && body.archived === undefined) throw new ValidationError("Nothing to update: send name and/or archived", { param: "body" });
      const meta = metaOf(ctx, request);
      let position: bigint | null = null;
      if (body.name !== undefined) position = (await ctx.repos.sessions.handle(params.session_id, { type: "RenameSession", name: body.name }, meta)).position ?? position;
      if (body.archived !== undefined) {
        position = (await ctx.repos.sessions.handle(params.session_id, { type: body.archived ? "ArchiveSession" : "UnarchiveSession" }, meta)).position ?? position;
      }
      return sessionAfterWrite(ctx, { set, request }, params.session_id, position);
    }, {
      params: IdParam("session_id"),
      body: t.Object({ name: t.Optional(t.String({ minLength: 1, maxLength: 200 })), archived: t.Optional(t.Boolean()) }),
      response: "Session", detail: { summary: "Rename, archive or unarchive a session" },
    })
    .delete("/:session_id", async ({ params, request, set }) => {
      requireSession(ctx, params.session_id);
      const meta = metaOf(ctx, request);
      const r = await ctx.repos.sessions.handle(params.session_id, { type: "DeleteSession" }, meta);
      // Its turns end with it: the turn coordinator reacts to the deletion wherever jobs run; asking it
      // here too stops them before this answers.
      await ctx.turns.sessionDeleted(params.session_id, meta);
      await afterWrite(ctx, { set, request }, r.position);
      return { id: params.session_id, object: "session" as const, deleted: true as const };
    }, { params: IdParam("session_id"), response: "SessionDeleted", detail: { summary: "Delete a session (gone from lists and reads; its events stay auditable)" } })

    .post("/:session_id/messages", async ({ params, body, request, set }) => {
      requireSession(ctx, params.session_id);
      const input = {
        content: body.content, attachments: body.attachments ?? [], model: body.model ?? null, context: body.context ?? null,
        multitask: body.multitask ?? "reject",
      };
      const send = async (ids?: MessageIds, resumed = false) => {
        const accepted = await sendMessage(ctx, params.session_id, input, metaOf(ctx, request), ids, resumed);
        await afterWrite(ctx, { set, request }, accepted.position);
        return accepted;
      };
      if (body.stream) {
        if (request.headers.get("idempotency-key")) throw new ValidationError("stream cannot be combined with Idempotency-Key; poll the job instead", { param: "stream" });
        const accepted = await send();
        return sseResponse(ctx, jobStream(accepted.job_id), { since: 0, verbosity: body.verbosity ?? "standard", closeOnTerminal: true, signal: request.signal });
      }
      type Answer = typeof MessageAccepted.static | typeof MessageReply.static;
      return create<Answer>(ctx, request, body, set, { message_id: "msg", job_id: "job" }, async ({ ids, resumed }) => {
        const accepted = await send({ message_id: ids.message_id!, job_id: ids.job_id! }, resumed);
        const acceptedBody = { job_id: accepted.job_id, message_id: ids.message_id!, session_id: params.session_id, status: "pending", queued: accepted.queued };
        if (!body.wait) return { status: 202, body: acceptedBody };
        const ended = await waitForEnd(ctx, accepted.job_id, (body.wait_timeout_s ?? 60) * 1000, request.signal, metaOf(ctx, request));
        const state = await visibleJobState(ctx, accepted.job_id);
        if (!ended) return { status: 202, body: { ...acceptedBody, status: state.status } };
        const reply = state.status === "completed" ? await replySummary(ctx, accepted.job_id) : null;
        return { status: 200, body: { ...acceptedBody, status: state.status, reply, error: state.error, usage: state.usage } };
      });
    }, {
      params: IdParam("session_id"), body: MessageBody,
      detail: {
        // The status is chosen at run time (202 accepted, 200 with the reply, or an SSE stream), so the
        // models are declared for the document rather than checked per status.
        responses: {
          200: { description: "wait=true and the turn ended in time", content: { "application/json": { schema: { $ref: "#/components/schemas/MessageReply" } } } },
          202: { description: "Accepted; poll the job", content: { "application/json": { schema: { $ref: "#/components/schemas/MessageAccepted" } } } },
        },
        summary: "Send a message (starts a turn)",
        description: '202 {job_id} at once; 409 session_busy while a turn is in flight unless multitask is "enqueue"; wait=true answers with the finished reply; stream=true answers as SSE.',
      },
    })
    .get("/:session_id/messages", ({ params, query }) => {
      requireSession(ctx, params.session_id);
      const limit = query.limit ?? 50;
      const before = decodeCursor(query.before, { seq: "integer" }, "before");
      const rows = listMessages(ctx.db, params.session_id, limit + 1, before?.seq);
      const hasMore = rows.length > limit;
      const shown = hasMore ? rows.slice(1) : rows;
      return { data: shown.map(messageView), has_more: hasMore, next_cursor: hasMore ? encodeCursor({ seq: shown[0]!.seq }) : null };
    }, {
      params: IdParam("session_id"),
      query: t.Object({
        limit: t.Optional(t.Integer({ minimum: 1, maximum: 200, default: 50 })),
        before: t.Optional(t.String({ maxLength: 512, description: "next_cursor of the previous page: older messages" })),
      }),
      response: "MessageList",
      detail: { summary: "Conversation history, oldest first; page back with before" },
    })
    .post("/:session_id/assets", ({ params, body, request, set }) => create(ctx, request, body, set, { asset: "ast" }, async ({ ids, resumed }) => {
      requireSession(ctx, params.session_id);
      // A retry taking over this request finds the asset its first execution registered.
      let registered = resumed ? await registeredAsset(ctx, params.session_id, ids.asset!) : null;
      let position: bigint | null = null;
      if (!registered) {
        const r = await ctx.repos.sessions.handle(params.session_id, {
          type: "RegisterAsset", asset_id: ids.asset!, url: body.url, kind: body.kind, source_tool: body.source_tool ?? "upload",
          prompt: body.prompt ?? null, model: body.model ?? null, job_id: null,
        }, metaOf(ctx, request));
        const e = r.appended[0] as Extract<SessionEvent, { type: "AssetRegistered" }>;
        registered = { ...e.data, created_at: Date.now() };
        position = r.position;
      }
      const fresh = await afterWrite(ctx, { set, request }, position);
      const n = Number(registered.asset_label.slice("asset_".length));
      const row = fresh ? listAssets(ctx.db, params.session_id, 1, n - 1)[0] : undefined;
      return { status: 201, body: row ? assetView(row) : assetView({ ...registered, n, session_id: params.session_id } as AssetRow) };
    }), {
      params: IdParam("session_id"),
      body: t.Object({
        url: t.String({ pattern: "^https?://", maxLength: 4096 }),
        kind: t.Union([t.Literal("image"), t.Literal("video"), t.Literal("audio"), t.Literal("file")]),
        source_tool: t.Optional(t.String({ minLength: 1, maxLength: 100 })),
        prompt: t.Optional(t.String({ maxLength: 10_000 })),
        model: t.Optional(t.String({ maxLength: 200 })),
      }),
      response: { 201: "Asset" },
      detail: { summary: "Register an asset; its label asset_N is numbered atomically per session" },
    })
    .get("/:session_id/assets", ({ params, query }) => {
      requireSession(ctx, params.session_id);
      const limit = query.limit ?? 50;
      const after = decodeCursor(query.cursor, { n: "integer" });
      return page(listAssets(ctx.db, params.session_id, limit + 1, after?.n ?? 0), limit, assetView, (r) => ({ n: r.n }));
    }, { params: IdParam("session_id"), query: t.Object(PageQuery), response: "AssetList", detail: { summary: "List a session's assets, oldest first" } })
    .get("/:session_id/jobs", ({ params, query }) => {
      requireSession(ctx, params.session_id);
      const limit = query.limit ?? 20;
      const after = decodeCursor(query.cursor, { seq: "integer" });
      return page(listSessionJobs(ctx.db, params.session_id, limit + 1, after?.seq), limit, jobView, (r) => ({ seq: r.seq }));
    }, { params: IdParam("session_id"), query: t.Object(PageQuery), response: "JobList", detail: { summary: "A session's jobs, newest first" } })
    .get("/:session_id/events", async ({ params, query, request }) => {
      const row = requireSession(ctx, params.session_id);
      const { events, cursor } = await pollStream(ctx, sessionStream(params.session_id), query, request);
      return { session_id: params.session_id, status: sessionView(row).status, events, cursor };
    }, {
      params: IdParam("session_id"), query: t.Object(CursorQuery),
      response: "SessionEvents",
      detail: { summary: "Poll the session's own events (messages, turn ends, assets) after a cursor" },
    })
    .get("/:session_id/stream", ({ params, query, request }) => {
      requireSession(ctx, params.session_id);
      return sseResponse(ctx, sessionStream(params.session_id), {
        since: resumeFrom(request.headers, query.since), verbosity: query.verbosity ?? "full", closeOnTerminal: false, signal: request.signal,
      });
    }, {
      params: IdParam("session_id"), query: t.Object({ since: t.Optional(t.Integer({ minimum: 0 })), verbosity: Verbosity }),
      detail: { responses: SSE_RESPONSE, summary: "Stream the session's events as SSE (resumable with Last-Event-ID)" },
    });
