/** /v1/jobs: status, cursor events (with long-poll), SSE, and approve / reject / cancel. */
import { Elysia, t } from "elysia";
import { approvePlan, cancelJob, rejectPlan } from "../../../app/turns.ts";
import { TERMINAL } from "../../../domain/job/job.ts";
import { jobStream } from "../../../domain/streams.ts";
import { visibleJob, visibleJobRow, visibleJobState } from "../../../app/jobReads.ts";
import { JOB_STREAM_ENDS, resumeFrom, sseResponse } from "../../sse.ts";
import { callerContext, stillAuthorized, afterWrite, IdParam, jobView, metaOf, type V1Deps } from "./common.ts";
import { documented, SSE_RESPONSE, v1Models, Verbosity } from "./models.ts";
import { CURSOR_QUERY_PARAMETERS, cursorQuery, pollResponse, pollStream } from "./cursorEvents.ts";

export const jobRoutes = (deps: V1Deps) =>
  new Elysia({ name: "agentry.v1.jobs", prefix: "/v1/jobs", detail: { tags: ["Jobs"] } })
    .use(v1Models)
    .use(callerContext(deps))
    .get("/:job_id", ({ ctx, params }) => jobView(visibleJobRow(ctx, params.job_id)), {
      params: IdParam("job_id"), response: "Job", detail: { summary: "Get a job's status, outcome and usage" },
    })
    .get("/:job_id/events", async ({ ctx, params, request, set }) => {
      const query = cursorQuery(request.url);
      // 404 before holding a long-poll; a poll that does not wait finds out from the state read below.
      if (query.wait) await visibleJobState(ctx, params.job_id);
      // Events first, then the state: the status returned is never older than the events.
      const { raw, cursor } = await pollStream(ctx, jobStream(params.job_id), query, request);
      const { state, lastEventId } = await visibleJob(ctx, params.job_id);
      // Done means the client has seen the terminal event (the last one an ended job has), and what
      // follows from it (the reply in the session's history) is there to read.
      const done = TERMINAL.has(state.status as never) && cursor >= lastEventId
        && (ctx.turns.isSettled(params.job_id) || (await ctx.turns.turnSettled(params.job_id, metaOf(ctx, request), request.signal)));
      return pollResponse(set, {
        job_id: params.job_id, status: state.status, error: state.error, cursor, done,
        approval_requested: state.status === "awaiting_approval",
        approved: state.planDecision === null ? null : state.planDecision === "approved",
      }, raw);
    }, {
      params: IdParam("job_id"),
      detail: { parameters: CURSOR_QUERY_PARAMETERS, responses: documented("JobEvents", "The job's events after the cursor, its status, and done"), summary: "Poll a job's events after a cursor", description: "Event ids are positions in the job's stream counted from 1; pass the returned cursor as since. wait holds the request until an event arrives." },
    })
    .get("/:job_id/stream", async ({ ctx, params, query, request }) => {
      await visibleJobState(ctx, params.job_id);
      return sseResponse(ctx, jobStream(params.job_id), {
        since: resumeFrom(request.headers, query.since), verbosity: query.verbosity ?? "standard", closeAfter: JOB_STREAM_ENDS, signal: request.signal, authorized: stillAuthorized(request),
        resume: { path: `/v1/jobs/${params.job_id}/stream`, ids: { job_id: params.job_id } },
        beforeDone: () => ctx.turns.turnSettled(params.job_id, metaOf(ctx, request), request.signal),
      });
    }, {
      params: IdParam("job_id"), query: t.Object({ since: t.Optional(t.Integer({ minimum: 0 })), verbosity: Verbosity }),
      detail: { responses: SSE_RESPONSE, summary: "Stream a job's events as SSE", description: "Each event's SSE id is its cursor id; reconnect with Last-Event-ID to resume. Closes after the job ends." },
    })
    .post("/:job_id/approve", async ({ ctx, params, request, set }) => {
      const job = await visibleJobState(ctx, params.job_id);
      const position = await approvePlan(ctx, params.job_id, metaOf(ctx, request, job.queued?.user_id));
      await afterWrite(ctx, { set, request }, position);
      return { job_id: params.job_id, status: "approved" as const };
    }, { params: IdParam("job_id"), response: "JobAction", detail: { summary: "Approve the plan a job is waiting on" } })
    .post("/:job_id/reject", async ({ ctx, params, request, body, set }) => {
      const job = await visibleJobState(ctx, params.job_id);
      const position = await rejectPlan(ctx, params.job_id, body?.reason ?? null, metaOf(ctx, request, job.queued?.user_id));
      await afterWrite(ctx, { set, request }, position);
      return { job_id: params.job_id, status: "rejected" as const };
    }, {
      params: IdParam("job_id"), response: "JobAction", body: t.Optional(t.Object({ reason: t.Optional(t.String({ maxLength: 2000 })) })),
      detail: { summary: "Reject the plan; the job ends cancelled and nothing of the plan runs" },
    })
    .post("/:job_id/cancel", async ({ ctx, params, request, body, set }) => {
      const job = await visibleJobState(ctx, params.job_id);
      const r = await cancelJob(ctx, params.job_id, body?.reason ?? null, metaOf(ctx, request, job.queued?.user_id));
      await afterWrite(ctx, { set, request }, r.position);
      set.status = r.status === "cancelled" ? 200 : 202;
      return { job_id: params.job_id, status: r.status === "cancelled" ? "cancelled" as const : "cancelling" as const };
    }, {
      params: IdParam("job_id"), response: { 200: "JobAction", 202: "JobAction" }, body: t.Optional(t.Object({ reason: t.Optional(t.String({ maxLength: 2000 })) })),
      detail: { summary: "Cancel a job", description: "200 when the job has ended; 202 when its worker has been told to stop (it ends within one step)." },
    });
