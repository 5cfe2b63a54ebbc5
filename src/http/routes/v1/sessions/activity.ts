/** What happens in a session: its jobs, its event log (cursor polling) and the same as SSE. */
import { Elysia, t } from "elysia";
import { sessionStream } from "../../../../domain/streams.ts";
import { listSessionJobs } from "../../../../../projections/jobs/index.ts";
import { decodeCursor, page, PageQuery } from "../../../pagination.ts";
import { resumeFrom, SESSION_STREAM_ENDS, sseResponse } from "../../../sse.ts";
import { callerContext, stillAuthorized, IdParam, jobView, sessionView, type V1Deps } from "../common.ts";
import { CURSOR_QUERY_PARAMETERS, cursorQuery, pollResponse, pollStream } from "../cursorEvents.ts";
import { documented, SSE_RESPONSE, v1Models, Verbosity } from "../models.ts";
import { requireSession } from "./service.ts";

export const sessionActivityRoutes = (deps: V1Deps) =>
  new Elysia({ name: "agentry.v1.sessions.sessionActivityRoutes", prefix: "/v1/sessions", detail: { tags: ["Sessions"] } })
    .use(v1Models)
    .use(callerContext(deps))
    .get("/:session_id/jobs", ({ ctx, params, query }) => {
      requireSession(ctx, params.session_id);
      const limit = query.limit ?? 20;
      const after = decodeCursor(query.cursor, { seq: "integer" });
      return page(listSessionJobs(ctx.db, params.session_id, limit + 1, after?.seq), limit, jobView, (r) => ({ seq: r.seq }));
    }, { params: IdParam("session_id"), query: t.Object(PageQuery), response: "JobList", detail: { summary: "A session's jobs, newest first" } })
    .get("/:session_id/events", async ({ ctx, params, request, set }) => {
      const query = cursorQuery(request.url);
      const row = requireSession(ctx, params.session_id);
      const { raw, cursor } = await pollStream(ctx, sessionStream(params.session_id), query, request);
      return pollResponse(set, { session_id: params.session_id, status: sessionView(row).status, cursor }, raw);
    }, {
      params: IdParam("session_id"),
      detail: { parameters: CURSOR_QUERY_PARAMETERS, responses: documented("SessionEvents", "The session's events after the cursor"), summary: "Poll the session's own events (messages, turn ends, assets) after a cursor" },
    })
    .get("/:session_id/stream", ({ ctx, params, query, request }) => {
      requireSession(ctx, params.session_id);
      return sseResponse(ctx, sessionStream(params.session_id), {
        since: resumeFrom(request.headers, query.since), verbosity: query.verbosity ?? "full", closeAfter: SESSION_STREAM_ENDS, signal: request.signal, authorized: stillAuthorized(request),
        resume: { path: `/v1/sessions/${params.session_id}/stream`, ids: { session_id: params.session_id } },
      });
    }, {
      params: IdParam("session_id"), query: t.Object({ since: t.Optional(t.Integer({ minimum: 0 })), verbosity: Verbosity }),
      detail: { responses: SSE_RESPONSE, summary: "Stream the session's events as SSE (resumable with Last-Event-ID)" },
    });
