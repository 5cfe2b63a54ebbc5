/**
 * Running a skill in a session (MUAPI's run-skill): a turn whose message names the skill. The skill
 * is resolved and its inputs checked before anything is written (404 skill_not_found; 400 naming the
 * input), and the turn's message and job carry which skill ran — source, version, hash — and the
 * prompt its steps made (src/app/skills.ts).
 */
import { Elysia, t } from "elysia";
import type { SkillRequest } from "../../../../app/skills.ts";
import { replySummary } from "../../../../app/turns.ts";
import { visibleJobState } from "../../../../app/jobReads.ts";
import { ValidationError } from "../../../../core/errors.ts";
import { afterWrite, Attachment, callerContext, create, IdParam, metaOf, type V1Deps } from "../common.ts";
import { MessageAccepted, MessageReply, v1Models } from "../models.ts";
import { SkillInputs } from "./model.ts";
import { acceptMessage, requireSession, waitForEnd } from "./service.ts";
import { SKILL_NAME_PATTERN, type SkillInputValue } from "../../../../domain/skill/markdown.ts";

/**
 * The skill a message names (`skill`, with its `inputs`), for sendMessage to resolve when it accepts
 * the message (so a replayed Idempotency-Key answers as first recorded, whatever the skill became).
 */
export function skillRequestOf(deps: V1Deps, body: { skill?: string; inputs?: Record<string, SkillInputValue> }): { skill?: SkillRequest } {
  if (body.skill === undefined) {
    if (body.inputs !== undefined) throw new ValidationError("inputs are a skill's: name the skill too", { param: "inputs" });
    return {};
  }
  return { skill: { name: body.skill, inputs: body.inputs ?? {}, shipped: deps.skills ?? new Map() } };
}

const RunSkillBody = t.Object({
  skill: t.String({ pattern: SKILL_NAME_PATTERN, description: "The skill to run (see GET /v1/skills)" }),
  inputs: SkillInputs,
  content: t.Optional(t.String({ maxLength: 100_000, description: "What the user adds, given to the model after the skill's steps" })),
  attachments: t.Optional(t.Array(Attachment, { maxItems: 20 })),
  model: t.Optional(t.String({ minLength: 1, maxLength: 200 })),
  context: t.Optional(t.Record(t.String(), t.Unknown())),
  multitask: t.Optional(t.Union([t.Literal("reject"), t.Literal("enqueue")], { default: "reject" })),
  wait: t.Optional(t.Boolean({ description: "Answer with the finished reply instead of 202 (bounded by wait_timeout_s)" })),
  wait_timeout_s: t.Optional(t.Integer({ minimum: 1, maximum: 300, default: 60 })),
}, { additionalProperties: false });

export const runSkillRoutes = (deps: V1Deps) =>
  new Elysia({ name: "agentry.v1.sessions.runSkillRoutes", prefix: "/v1/sessions", detail: { tags: ["Sessions"] } })
    .use(v1Models)
    .use(callerContext(deps))
    .post("/:session_id/run-skill", async ({ ctx, params, body, request, set }) => {
      const session = requireSession(ctx, params.session_id);
      type Answer = typeof MessageAccepted.static | typeof MessageReply.static;
      return create<Answer>(ctx, request, body, set, { message_id: "msg", job_id: "job" }, async ({ ids, resumed }) => {
        const input = {
          content: body.content ?? "", attachments: body.attachments ?? [], model: body.model ?? null, context: body.context ?? null,
          multitask: body.multitask ?? "reject", ...skillRequestOf(deps, body),
        };
        // The same path as a message's: its attachments are checked, and inline ones stored as files, alike.
        const accepted = await acceptMessage(ctx, request, session, input, { message_id: ids.message_id!, job_id: ids.job_id! }, resumed);
        await afterWrite(ctx, { set, request }, accepted.position);
        const acceptedBody = { job_id: accepted.job_id, message_id: ids.message_id!, session_id: params.session_id, status: "pending", queued: accepted.queued };
        if (!body.wait) return { status: 202, body: acceptedBody };
        const ended = await waitForEnd(ctx, accepted.job_id, (body.wait_timeout_s ?? 60) * 1000, request.signal, metaOf(ctx, request));
        const state = await visibleJobState(ctx, accepted.job_id);
        if (!ended) return { status: 202, body: { ...acceptedBody, status: state.status } };
        const reply = state.status === "completed" ? await replySummary(ctx, accepted.job_id) : null;
        return { status: 200, body: { ...acceptedBody, status: state.status, reply, error: state.error, usage: state.usage, credits_spent: state.credits } };
      });
    }, {
      params: IdParam("session_id"), body: RunSkillBody,
      detail: {
        responses: {
          200: { description: "wait=true and the turn ended in time", content: { "application/json": { schema: { $ref: "#/components/schemas/MessageReply" } } } },
          202: { description: "Accepted; poll the job", content: { "application/json": { schema: { $ref: "#/components/schemas/MessageAccepted" } } } },
        },
        summary: "Run a skill: a turn given the skill's steps with the inputs filled in",
        description: "202 {job_id} at once, like a message (Idempotency-Key honoured; 409 session_busy unless multitask is \"enqueue\"). 404 skill_not_found; 400 naming an unknown or missing input.",
      },
    });
