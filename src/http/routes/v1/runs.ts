/** /v1/runs: single-turn runs — input in, (structured) result out, no conversation. */
import { Elysia, t } from "elysia";
import { startRun } from "../../../app/turns.ts";
import { agentOrDefault } from "../../../app/defaultAgent.ts";
import { requireUser } from "../../../app/access.ts";
import { requireValidSchema } from "../../../core/jsonSchema.ts";
import { getAgent } from "../../../app/agentReads.ts";
import { v1Models } from "./models.ts";
import { callerContext, afterWrite, create, IdParam, jobView, metaOf, type V1Deps } from "./common.ts";
import { visibleRunRow } from "../../../app/jobReads.ts";

export const runRoutes = (deps: V1Deps) =>
  new Elysia({ name: "agentry.v1.runs", prefix: "/v1/runs", detail: { tags: ["Runs"] } })
    .use(v1Models)
    .use(callerContext(deps))
    .post("", ({ ctx, body, request, set }) => create(ctx, request, body, set, { job: "run" }, async ({ ids }) => {
      requireUser(ctx, body.user_id);
      const agentId = await agentOrDefault(ctx, body.agent_id, request.signal);
      getAgent(ctx.db, ctx.appId, agentId, ctx.allowedAgents);
      if (body.output_schema) requireValidSchema(body.output_schema);
      const accepted = await startRun(ctx, {
        agent_id: agentId, user_id: body.user_id, input: body.input, media_url: body.media_url ?? null,
        output_schema: body.output_schema ?? null, model: body.model ?? null,
      }, metaOf(ctx, request, body.user_id), ids.job!);
      await afterWrite(ctx, { set, request }, accepted.position);
      return { status: 202, body: { id: accepted.job_id, job_id: accepted.job_id, status: "pending" } };
    }), {
      body: t.Object({
        agent_id: t.Optional(t.String({ minLength: 1, maxLength: 100 })),
        user_id: t.String({ minLength: 1, maxLength: 200 }),
        input: t.String({ minLength: 1, maxLength: 100_000 }),
        media_url: t.Optional(t.String({ pattern: "^https?://", maxLength: 4096 })),
        output_schema: t.Optional(t.Record(t.String(), t.Unknown())),
        model: t.Optional(t.String({ minLength: 1, maxLength: 200 })),
      }),
      response: { 202: "RunAccepted" },
      detail: { summary: "Start a single-turn run", description: "202 {job_id}; poll GET /v1/runs/{id}. A reply that does not match output_schema fails the run with invalid_output." },
    })
    .get("/:run_id", ({ ctx, params }) => {
      const job = jobView(visibleRunRow(ctx, params.run_id));
      return { id: job.id, job_id: job.id, status: job.status, result: job.result, content: job.content, error: job.error, usage: job.usage, credits_spent: job.credits_spent, created_at: job.created_at, completed_at: job.completed_at, citations: job.citations };
    }, { params: IdParam("run_id"), response: "Run", detail: { summary: "Get a run's status and result" } });
