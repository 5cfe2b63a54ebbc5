/** A session's messages: sending one starts a turn (202, wait=true for the reply, stream=true for SSE); the history. */
import { Elysia, t } from "elysia";
import type { MessageIds } from "../../../../app/turns.ts";
import { ValidationError } from "../../../../core/errors.ts";
import { jobStream } from "../../../../domain/streams.ts";
import { listMessages } from "../../../../../projections/messages/index.ts";
import { decodeCursor, encodeCursor } from "../../../pagination.ts";
import { JOB_STREAM_ENDS, sseResponse } from "../../../sse.ts";
import { callerContext, stillAuthorized, afterWrite, create, IdParam, metaOf, type V1Deps } from "../common.ts";
import { MessageAccepted, MessageReply, v1Models } from "../models.ts";
import { messageView, MessageBody } from "./model.ts";
import { acceptMessage, requireSession, turnAnswer } from "./service.ts";
import { skillRequestOf } from "./runSkill.ts";
import { newResourceId } from "../../../../core/ids.ts";

export const messageRoutes = (deps: V1Deps) =>
  new Elysia({ name: "agentry.v1.sessions.messageRoutes", prefix: "/v1/sessions", detail: { tags: ["Sessions"] } })
    .use(v1Models)
    .use(callerContext(deps))
    .post("/:session_id/messages", async ({ ctx, params, body, request, set }) => {
      const session = requireSession(ctx, params.session_id);
      const input = {
        content: body.content, attachments: body.attachments ?? [], model: body.model ?? null, context: body.context ?? null,
        multitask: body.multitask ?? "reject", ...skillRequestOf(deps, body),
      };
      const send = async (ids: MessageIds = { message_id: newResourceId("msg"), job_id: newResourceId("job") }, resumed = false) => {
        const accepted = await acceptMessage(ctx, request, session, input, ids, resumed);
        await afterWrite(ctx, { set, request }, accepted.position);
        return accepted;
      };
      if (body.stream) {
        if (request.headers.get("idempotency-key")) throw new ValidationError("stream cannot be combined with Idempotency-Key; poll the job instead", { param: "stream" });
        const accepted = await send();
        return sseResponse(ctx, jobStream(accepted.job_id), {
          since: 0, verbosity: body.verbosity ?? "standard", closeAfter: JOB_STREAM_ENDS, signal: request.signal, authorized: stillAuthorized(request),
          resume: { path: `/v1/jobs/${accepted.job_id}/stream`, ids: { job_id: accepted.job_id, session_id: params.session_id } },
          beforeDone: () => ctx.turns.turnSettled(accepted.job_id, metaOf(ctx, request), request.signal),
        });
      }
      type Answer = typeof MessageAccepted.static | typeof MessageReply.static;
      return create<Answer>(ctx, request, body, set, { message_id: "msg", job_id: "job" }, async ({ ids, resumed }) => {
        const accepted = await send({ message_id: ids.message_id!, job_id: ids.job_id! }, resumed);
        return turnAnswer(ctx, request, params.session_id, accepted, ids.message_id!, body);
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
    .get("/:session_id/messages", ({ ctx, params, query }) => {
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
    });
