/** The skills routes' request bodies and named response models. */
import { t } from "elysia";
import { INPUT_NAME_PATTERN, MAX_SKILL_BYTES, MAX_SKILL_INPUTS, SKILL_NAME_PATTERN } from "../../../../domain/skill/markdown.ts";
import type { ResolvedSkill } from "../../../../app/skills.ts";

const Nullable = <T extends import("@sinclair/typebox").TSchema>(schema: T) => t.Union([schema, t.Null()]);

const SkillInput = t.Object({ name: t.String(), description: t.String(), required: t.Boolean() });

const summaryFields = {
  name: t.String({ description: "The skill's slug, e.g. register-media" }),
  object: t.Literal("skill"),
  description: t.String(),
  inputs: t.Array(SkillInput),
  output_schema: Nullable(t.Record(t.String(), t.Unknown(), { description: "JSON Schema the run's result must match; null: a free-text reply" })),
  source: t.Union([t.Literal("shipped"), t.Literal("app")], { description: "Shipped with the server (its skills folder), or the app's own" }),
  version: Nullable(t.Integer({ description: "The app's saves of this name so far; null for a shipped skill" })),
  sha256: t.String({ description: "SHA-256 (hex) of the skill's Markdown: what a turn's job records it ran" }),
};

/** A skill in a list: everything but its Markdown and steps. */
export const SkillSummary = t.Object(summaryFields);
/** One skill, with its steps and the Markdown it is stored as. */
export const Skill = t.Object({ ...summaryFields, steps: t.String(), markdown: t.String() });
export const SkillList = t.Object({ data: t.Array(SkillSummary), has_more: t.Boolean(), next_cursor: Nullable(t.String()) });
export const SkillDeleted = t.Object({ name: t.String(), object: t.Literal("skill"), deleted: t.Literal(true) });

export const SkillParams = t.Object({ skill_name: t.String({ pattern: SKILL_NAME_PATTERN, description: "The skill's slug" }) });

/** A skill to save: its Markdown, or its fields (written out as Markdown). */
export const SkillBody = t.Object({
  markdown: t.Optional(t.String({ minLength: 1, maxLength: MAX_SKILL_BYTES, description: "The whole *.skill.md text: front matter, then the steps" })),
  name: t.Optional(t.String({ pattern: SKILL_NAME_PATTERN })),
  description: t.Optional(t.String({ minLength: 1, maxLength: 1000 })),
  inputs: t.Optional(t.Array(t.Object({
    name: t.String({ pattern: INPUT_NAME_PATTERN }),
    description: t.Optional(t.String({ maxLength: 1000 })),
    required: t.Optional(t.Boolean({ default: false })),
  }, { additionalProperties: false }), { maxItems: MAX_SKILL_INPUTS })),
  output_schema: t.Optional(Nullable(t.Record(t.String(), t.Unknown()))),
  steps: t.Optional(t.String({ minLength: 1, maxLength: MAX_SKILL_BYTES })),
}, { additionalProperties: false });

export const skillSummaryView = (s: ResolvedSkill) => ({
  name: s.name, object: "skill" as const, description: s.description, inputs: s.inputs, output_schema: s.output_schema,
  source: s.source, version: s.version, sha256: s.sha256,
});

export const skillView = (s: ResolvedSkill) => ({ ...skillSummaryView(s), steps: s.steps, markdown: s.markdown });
