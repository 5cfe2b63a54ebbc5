/**
 * /v1/skills: the skills an app can run — shipped with the server, and the app's own (saved as events,
 * src/app/skills.ts). Reading needs data:read; saving and deleting change what the app's agents are
 * asked to do, so they need agents:manage like agents do.
 */
import { Elysia, t } from "elysia";
import { deleteSkill, requireSkill, saveSkill, skillsOf } from "../../../../app/skills.ts";
import { ValidationError } from "../../../../core/errors.ts";
import { parseSkill, SkillParseError, skillMarkdown, type SkillDefinition } from "../../../../domain/skill/markdown.ts";
import { decodeCursor, page, PageQuery } from "../../../pagination.ts";
import { callerContext, create, metaOf, type V1Deps } from "../common.ts";
import { v1Models } from "../models.ts";
import { Skill, SkillBody, SkillDeleted, SkillList, SkillParams, SkillSummary, skillSummaryView, skillView } from "./model.ts";

/** The Markdown a save request stands for: given as is, or written out from its fields. */
function markdownOf(body: typeof SkillBody.static): string {
  const fields = (["name", "description", "inputs", "output_schema", "steps"] as const).filter((k) => body[k] !== undefined);
  if (body.markdown !== undefined) {
    if (fields.length) throw new ValidationError(`Give the skill as markdown or as fields, not both (also given: ${fields.join(", ")})`, { param: fields[0]! });
    return body.markdown;
  }
  for (const k of ["name", "description", "steps"] as const) {
    if (body[k] === undefined) throw new ValidationError(`${k} is required (or give the whole skill as markdown)`, { param: k });
  }
  const skill: SkillDefinition = {
    name: body.name!, description: body.description!, steps: body.steps!, output_schema: body.output_schema ?? null,
    inputs: (body.inputs ?? []).map((i) => ({ name: i.name, description: i.description ?? "", required: i.required ?? false })),
  };
  const markdown = skillMarkdown(skill);
  try {
    parseSkill(markdown);
  } catch (err) {
    if (!(err instanceof SkillParseError)) throw err;
    // Line numbers mean nothing to a caller who sent fields: name the field instead.
    const message = err.message.replace(/^line \d+: /, "");
    const param = /output_schema/.test(message) ? "output_schema" : /steps/.test(message) ? "steps" : /input/.test(message) ? "inputs" : "markdown";
    throw new ValidationError(`The skill is not valid: ${message}`, { param });
  }
  return markdown;
}

export const skillRoutes = (deps: V1Deps) => {
  const shipped = deps.skills ?? new Map();
  return new Elysia({ name: "agentry.v1.skills", prefix: "/v1/skills", detail: { tags: ["Skills"] } })
    .use(v1Models)
    .use(callerContext(deps))
    .model({ Skill, SkillSummary, SkillList, SkillDeleted })
    .post("", ({ ctx, body, request, set }) => create(ctx, request, body, set, {}, async () => {
      const markdown = markdownOf(body);
      // No read model to wait for: skills are read from their stream, so the next read sees the save.
      const saved = await saveSkill(ctx, markdown, metaOf(ctx, request));
      return { status: saved.created ? 201 : 200, body: skillView(saved.skill) };
    }), {
      body: SkillBody,
      detail: {
        summary: "Save one of the app's skills (create, or replace its earlier version)",
        description: "Body: `{markdown}` (a whole *.skill.md) or `{name, description, inputs?, output_schema?, steps}`. 201 when the app had no skill of that name, else 200 " +
          "(a new version; saving the same recipe again changes nothing). A skill of a shipped skill's name takes its place for the app. Needs agents:manage.",
        responses: {
          200: { description: "Replaced (or unchanged)", content: { "application/json": { schema: { $ref: "#/components/schemas/Skill" } } } },
          201: { description: "Created", content: { "application/json": { schema: { $ref: "#/components/schemas/Skill" } } } },
        },
      },
    })
    .get("", async ({ ctx, query }) => {
      const limit = query.limit ?? 50;
      const after = decodeCursor(query.cursor, { name: "string" });
      const all = await skillsOf(ctx, shipped);
      const rest = after ? all.filter((s) => s.name > after.name) : all;
      return page(rest.slice(0, limit + 1), limit, skillSummaryView, (s) => ({ name: s.name }));
    }, {
      query: t.Object(PageQuery), response: "SkillList",
      detail: { summary: "The skills the app can run, by name: shipped ones and the app's own (which take the place of shipped ones of the same name)" },
    })
    .get("/:skill_name", async ({ ctx, params }) => skillView(await requireSkill(ctx, shipped, params.skill_name)), {
      params: SkillParams, response: "Skill",
      detail: { summary: "One skill, with its steps and Markdown; 404 skill_not_found" },
    })
    .delete("/:skill_name", async ({ ctx, params, request }) => {
      await deleteSkill(ctx, shipped, params.skill_name, metaOf(ctx, request));
      return { name: params.skill_name, object: "skill" as const, deleted: true as const };
    }, {
      params: SkillParams, response: "SkillDeleted",
      detail: { summary: "Delete one of the app's skills (a shipped skill of that name, if any, is the app's again); 409 skill_shipped for a shipped one. Needs agents:manage." },
    });
};
