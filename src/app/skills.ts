/**
 * Skills (MUAPI's `*.skill.md` recipes): the shipped ones, read from the server's skills folder at
 * start-up, and each app's own, kept as events on `skills-<app>` (src/domain/skill/). An app's skill
 * of a shipped skill's name takes its place for that app. Running a skill resolves it, checks the
 * inputs against what it declares, and fills them into its steps: the turn's message and job carry
 * the result (SkillRun), so what ran is on record whatever happens to the skill afterwards.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { AppContext } from "./context.ts";
import type { CommandMetadata } from "./repository.ts";
import { ConflictError, NotFoundError, ValidationError } from "../core/errors.ts";
import { parseSkill, renderSkillPrompt, SkillParseError, type SkillDefinition, type SkillInputValue } from "../domain/skill/markdown.ts";
import type { SkillRun, StoredSkill } from "../domain/skill/skill.ts";

export interface ShippedSkill extends SkillDefinition {
  sha256: string;
  markdown: string;
  /** The file it was read from, for operators' messages. */
  file: string;
}

/** A skill as the API shows it, wherever it comes from. */
export interface ResolvedSkill extends SkillDefinition {
  source: "shipped" | "app";
  /** The app's saves of this name so far (null for a shipped skill). */
  version: number | null;
  sha256: string;
  markdown: string;
}

/** A skill a message asks for, to be resolved against the app's skills and these shipped ones when it is accepted. */
export interface SkillRequest {
  name: string;
  inputs: Record<string, SkillInputValue>;
  shipped: ReadonlyMap<string, ShippedSkill>;
}

/** The longest value an input may be given. */
export const MAX_INPUT_CHARS = 10_000;

export const sha256Hex = (text: string): string => new Bun.CryptoHasher("sha256").update(text).digest("hex");

/** A skills folder that cannot be loaded: names the file and the problem. */
export class SkillsFolderError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SkillsFolderError";
  }
}

/**
 * Reads every `*.skill.md` in `dir` (not recursively). A missing folder is no skills; a file that does
 * not parse, or two files naming the same skill, stop the server with a message saying which and why:
 * a recipe the operator ships must not go missing silently.
 */
export function loadSkillsFolder(dir: string): Map<string, ShippedSkill> {
  const skills = new Map<string, ShippedSkill>();
  let names: string[];
  try {
    if (!statSync(dir).isDirectory()) throw new SkillsFolderError(`SKILLS_DIR ${dir} is not a folder`);
    names = readdirSync(dir).filter((n) => n.endsWith(".skill.md")).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return skills;
    throw err;
  }
  for (const name of names) {
    const file = join(dir, name);
    const markdown = readFileSync(file, "utf8");
    let skill: SkillDefinition;
    try {
      skill = parseSkill(markdown);
    } catch (err) {
      if (err instanceof SkillParseError) throw new SkillsFolderError(`skill file ${file}: ${err.message}`);
      throw err;
    }
    const other = skills.get(skill.name);
    if (other) throw new SkillsFolderError(`skill files ${other.file} and ${file} both name the skill ${skill.name}`);
    skills.set(skill.name, { ...skill, sha256: sha256Hex(markdown), markdown, file });
  }
  return skills;
}

const fromShipped = (s: ShippedSkill): ResolvedSkill => ({
  name: s.name, description: s.description, inputs: s.inputs, output_schema: s.output_schema, steps: s.steps,
  source: "shipped", version: null, sha256: s.sha256, markdown: s.markdown,
});

const fromApp = (s: StoredSkill): ResolvedSkill => ({
  name: s.name, description: s.description, inputs: s.inputs, output_schema: s.output_schema, steps: s.steps,
  source: "app", version: s.version, sha256: s.sha256, markdown: s.markdown,
});

/** The skills the caller's app sees, by name: the shipped ones, with the app's own in their place where names meet. */
export async function skillsOf(ctx: AppContext, shipped: ReadonlyMap<string, ShippedSkill>): Promise<ResolvedSkill[]> {
  const { state } = await ctx.repos.skills.load(ctx.appId);
  const byName = new Map<string, ResolvedSkill>();
  for (const s of shipped.values()) byName.set(s.name, fromShipped(s));
  for (const s of Object.values(state.skills)) byName.set(s.name, fromApp(s));
  return [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** One skill the caller's app sees; 404 `skill_not_found` otherwise. */
export async function requireSkill(ctx: AppContext, shipped: ReadonlyMap<string, ShippedSkill>, name: string): Promise<ResolvedSkill> {
  const { state } = await ctx.repos.skills.load(ctx.appId);
  const own = Object.hasOwn(state.skills, name) ? state.skills[name] : undefined;
  if (own) return fromApp(own);
  const s = shipped.get(name);
  if (s) return fromShipped(s);
  throw new NotFoundError(`Skill ${name} not found`, { param: "skill" }, "skill_not_found");
}

/**
 * Saves an app's skill from its Markdown (400 naming what does not parse). Returns it, and whether
 * this created the name for the app (false: it replaced the app's earlier version, or was the same).
 */
export async function saveSkill(ctx: AppContext, markdown: string, meta: CommandMetadata): Promise<{ skill: ResolvedSkill; created: boolean; position: bigint | null }> {
  let skill: SkillDefinition;
  try {
    skill = parseSkill(markdown);
  } catch (err) {
    if (err instanceof SkillParseError) throw new ValidationError(`The skill does not parse: ${err.message}`, { param: "markdown", ...(err.line !== null ? { line: err.line } : {}) });
    throw err;
  }
  let existed = false;
  const r = await ctx.repos.skills.handle(ctx.appId, (state) => {
    existed = Object.hasOwn(state.skills, skill.name);
    return { type: "SaveSkill", skill, markdown, sha256: sha256Hex(markdown) };
  }, meta);
  return { skill: fromApp(r.state.skills[skill.name]!), created: !existed, position: r.position };
}

/** Removes an app's skill (404 when the app has none of that name; 409 for a shipped skill). */
export async function deleteSkill(ctx: AppContext, shipped: ReadonlyMap<string, ShippedSkill>, name: string, meta: CommandMetadata): Promise<bigint | null> {
  const { state } = await ctx.repos.skills.load(ctx.appId);
  if (!Object.hasOwn(state.skills, name) && shipped.has(name)) {
    throw new ConflictError("skill_shipped", `Skill ${name} is shipped with the server and cannot be deleted; an app's own skill of that name would take its place`);
  }
  const r = await ctx.repos.skills.handle(ctx.appId, { type: "DeleteSkill", name }, meta);
  return r.position;
}

/**
 * What a turn running `name` with `inputs` carries: the skill's identity (source, version, hash), the
 * inputs, and its prompt with them filled in. 404 `skill_not_found`; 400 naming an unknown input, a
 * missing required one, or a value too long.
 */
export async function skillRun(ctx: AppContext, shipped: ReadonlyMap<string, ShippedSkill>, name: string, inputs: Record<string, SkillInputValue>): Promise<SkillRun> {
  const skill = await requireSkill(ctx, shipped, name);
  const declared = new Map(skill.inputs.map((i) => [i.name, i]));
  for (const [key, value] of Object.entries(inputs)) {
    if (!declared.has(key)) {
      const known = skill.inputs.map((i) => i.name);
      throw new ValidationError(`Unknown input ${key} for skill ${skill.name}; it takes ${known.length ? known.join(", ") : "no inputs"}`, { param: `inputs.${key}` });
    }
    if (typeof value === "string" && value.length > MAX_INPUT_CHARS) throw new ValidationError(`Input ${key} is over ${MAX_INPUT_CHARS} characters`, { param: `inputs.${key}` });
  }
  for (const input of skill.inputs) {
    const value = Object.hasOwn(inputs, input.name) ? inputs[input.name] : undefined;
    if (input.required && (value === undefined || (typeof value === "string" && value.trim() === ""))) {
      throw new ValidationError(`Missing required input ${input.name} for skill ${skill.name}${input.description ? `: ${input.description}` : ""}`, { param: `inputs.${input.name}` });
    }
  }
  return {
    name: skill.name, source: skill.source, version: skill.version, sha256: skill.sha256, inputs: { ...inputs },
    prompt: renderSkillPrompt(skill, inputs), output_schema: skill.output_schema,
  };
}
