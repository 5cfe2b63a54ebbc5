/** The session routes' request bodies and row views. */
import { t } from "elysia";
import { type AssetRow } from "../../../../../projections/assets/index.ts";
import { type MessageRow } from "../../../../../projections/messages/index.ts";
import { Attachment, iso, parseJson } from "../common.ts";
import { Verbosity } from "../models.ts";
import { SKILL_NAME_PATTERN } from "../../../../domain/skill/markdown.ts";

/** A skill for the turn to run (see /v1/skills), and the values of its inputs. */
export const SkillName = t.Optional(t.String({ pattern: SKILL_NAME_PATTERN, description: "A skill the turn runs: its steps, with the inputs filled in, go to the model before the content" }));
export const SkillInputs = t.Optional(t.Record(t.String({ maxLength: 64 }), t.Union([t.String(), t.Number(), t.Boolean()]), {
  maxProperties: 30, description: "The skill's inputs by name: strings (at most 10,000 characters), numbers or booleans",
}));

export const assetView = (r: AssetRow) => ({
  asset_label: r.asset_label, kind: r.kind, url: r.url, file_id: r.file_id ?? null, source_tool: r.source_tool, model: r.model, prompt: r.prompt,
  job_id: r.job_id, created_at: iso(r.created_at)!,
});

export const messageView = (r: MessageRow) => ({
  id: r.id, role: r.role, content: r.content, job_id: r.job_id, status: r.status,
  attachments: parseJson<unknown[]>(r.attachments) ?? [], tool_calls: parseJson<unknown[]>(r.tool_calls) ?? [], assets: parseJson<unknown[]>(r.assets) ?? [],
  result: parseJson(r.result), error: parseJson(r.error), created_at: iso(r.created_at)!,
});

/** What every request that starts a turn takes besides its content: a message's and a skill run's. */
export const TurnFields = {
  attachments: t.Optional(t.Array(Attachment, { maxItems: 20 })),
  model: t.Optional(t.String({ minLength: 1, maxLength: 200 })),
  context: t.Optional(t.Record(t.String(), t.Unknown())),
  multitask: t.Optional(t.Union([t.Literal("reject"), t.Literal("enqueue")], { default: "reject" })),
  wait: t.Optional(t.Boolean({ description: "Answer with the finished reply instead of 202 (bounded by wait_timeout_s)" })),
  wait_timeout_s: t.Optional(t.Integer({ minimum: 1, maximum: 300, default: 60 })),
};

export const MessageBody = t.Object({
  content: t.String({ minLength: 1, maxLength: 100_000 }),
  ...TurnFields,
  stream: t.Optional(t.Boolean({ description: "Answer as an SSE stream of the job's events" })),
  verbosity: Verbosity,
  skill: SkillName,
  inputs: SkillInputs,
});
