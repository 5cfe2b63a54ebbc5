/** Sessions themselves: start, list, read, rename/archive, delete. */
import { Elysia, t } from "elysia";
import { ValidationError } from "../../../../core/errors.ts";
import { agentOrDefault } from "../../../../app/defaultAgent.ts";
import { requireUser } from "../../../../app/access.ts";
import { listSessions } from "../../../../../projections/sessions/index.ts";
import { decodeCursor, page, PageQuery } from "../../../pagination.ts";
import { getAgent } from "../../../../app/agentReads.ts";
import { callerContext, create, IdParam, metaOf, sessionView, type V1Deps } from "../common.ts";
import { v1Models } from "../models.ts";
import { deleteSession, requireSession, sessionAfterWrite } from "./service.ts";

export const sessionCrudRoutes = (deps: V1Deps) =>
  new Elysia({ name: "agentry.v1.sessions.sessionCrudRoutes", prefix: "/v1/sessions", detail: { tags: ["Sessions"] } })
    .use(v1Models)
    .use(callerContext(deps))
    .post("", ({ ctx, body, request, set }) => create(ctx, request, body, set, { session: "sess" }, async ({ ids, resumed }) => {
      requireUser(ctx, body.user_id);
      const agentId = await agentOrDefault(ctx, body.agent_id, request.signal);
      getAgent(ctx.db, ctx.appId, agentId, ctx.allowedAgents);
      const id = ids.session!;
      // A retry taking over this request finds the session its first execution started.
      const exists = resumed && (await ctx.repos.sessions.load(id)).state.status !== "none";
      const position = exists ? null : (await ctx.repos.sessions.handle(id, {
        type: "StartSession", session_id: id, agent_id: agentId, user_id: body.user_id,
        name: body.name ?? `session-${id.slice(-6)}`, external_ref: body.external_ref ?? null, metadata: body.metadata ?? {},
      }, metaOf(ctx, request, body.user_id))).position;
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
    .get("", ({ ctx, query }) => {
      const limit = query.limit ?? 20;
      const after = decodeCursor(query.cursor, { order: "string", seq: "integer", id: "string" });
      const filter = {
        ...(query.user_id !== undefined ? { user_id: query.user_id } : {}),
        // Acting as one user: that user's sessions only (asking for another's is refused).
        ...(ctx.actingUser ? (requireUser(ctx, query.user_id ?? ctx.actingUser), { user_id: ctx.actingUser }) : {}),
        ...(query.archived !== undefined ? { archived: query.archived } : { archived: false }),
        ...(query.external_ref !== undefined ? { external_ref: query.external_ref } : {}),
        ...(ctx.allowedAgents ? { agent_ids: ctx.allowedAgents } : {}),
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
    .get("/:session_id", ({ ctx, params }) => sessionView(requireSession(ctx, params.session_id)), {
      params: IdParam("session_id"), response: "Session", detail: { summary: "Get a session" },
    })
    .patch("/:session_id", async ({ ctx, params, body, request, set }) => {
      const session = requireSession(ctx, params.session_id);
      if (body.name === undefined && body.archived === undefined) throw new ValidationError("Nothing to update: send name and/or archived", { param: "body" });
      const meta = metaOf(ctx, request, session.user_id);
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
    .delete("/:session_id", async ({ ctx, params, request, set }) => {
      await deleteSession(ctx, { set, request }, requireSession(ctx, params.session_id));
      return { id: params.session_id, object: "session" as const, deleted: true as const };
    }, { params: IdParam("session_id"), response: "SessionDeleted", detail: { summary: "Delete a session (gone from lists and reads; its events stay auditable)" } });
