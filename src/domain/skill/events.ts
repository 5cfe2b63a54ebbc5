/** The skills stream's events (`skills-<app>`, one stream per app and data partition): schemas and versions. */
import { Type } from "@sinclair/typebox";
import { eventCodec, type EventsOf } from "../../core/eventContract.ts";
import { JsonObject, Nullable } from "../shared/schemas.ts";

export const SkillInputSchema = Type.Object({ name: Type.String(), description: Type.String(), required: Type.Boolean() });

/**
 * Which skill a turn ran, exactly: carried by the message that asked for it and by its job's
 * JobQueued, so an auditor reads the recipe, its version and its hash from the job's own events.
 * `source` is where it came from (shipped with the server, or the app's own); `version` counts the
 * app's saves of that name (null for shipped skills); `sha256` hashes the skill's Markdown; `prompt`
 * is what the model was given (the steps with the inputs filled in).
 */
export const SkillRunSchema = Type.Object({
  name: Type.String(),
  source: Type.Union([Type.Literal("shipped"), Type.Literal("app")]),
  version: Nullable(Type.Integer({ minimum: 1 })),
  sha256: Type.String(),
  inputs: Type.Record(Type.String(), Type.Union([Type.String(), Type.Number(), Type.Boolean()])),
  prompt: Type.String(),
  output_schema: Nullable(JsonObject),
});

export const SKILL_EVENTS = {
  /** An app's skill, created or replaced: `version` counts the saves of this name, deletes included. */
  SkillSaved: { version: 1, schema: Type.Object({
    name: Type.String(), version: Type.Integer({ minimum: 1 }), sha256: Type.String(), markdown: Type.String(),
    description: Type.String(), inputs: Type.Array(SkillInputSchema), output_schema: Nullable(JsonObject), steps: Type.String(),
  }) },
  SkillDeleted: { version: 1, schema: Type.Object({ name: Type.String(), version: Type.Integer({ minimum: 1 }) }) },
};

export type SkillEvent = EventsOf<typeof SKILL_EVENTS>;
export const skillEvents = eventCodec(SKILL_EVENTS);
