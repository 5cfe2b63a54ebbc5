/**
 * Running a skill in a session (MUAPI's run-skill): a turn whose message names the skill. The skill
 * is resolved and its inputs checked before anything is written (404 skill_not_found; 400 naming the
 * input), and the turn's message and job carry which skill ran — source, version, hash — and the
 * prompt its steps made (src/app/skills.ts).
 */
import { Elysia, t } from "elysia";
import type { SkillRequest } from "../../../../app/skills.ts";
import { ValidationError } from "../../../../core/errors.ts";
import { afterWrite, callerContext, create, IdParam, type V1Deps } from "../common.ts";
import { MessageAccepted, MessageReply, v1Models } from "../models.ts";
import { SkillInputs, TurnFields } from "./model.ts";
import { acceptMessage, requireSession, turnAnswer } from "./service.ts";
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
  ...TurnFields,
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
        return turnAnswer(ctx, request, params.session_id, accepted, ids.message_id!, body);
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
