/**
 * `*.skill.md`: a skill is a recipe in Markdown (MUAPI's skills). Front matter between `---` lines
 * says what it is — `name`, `description`, `inputs`, optionally `output_schema` — and the rest of the
 * file is the steps, in prose, with `{{input}}` where an input's value goes:
 *
 * ```
 * ---
 * name: register-media
 * description: Registers media files as session assets
 * inputs:
 *   - name: urls
 *     description: The media URLs, separated by spaces
 *     required: true
 * ---
 * Register each of these media URLs as an asset of the session: {{urls}}
 * ```
 *
 * The front matter is a small, strict subset of YAML, parsed here rather than by a general YAML
 * parser: a general one accepts what a recipe should not have (duplicate keys silently overwritten,
 * `yes` read as a boolean, anchors, tags, multi-line forms) and its errors do not say which field is
 * wrong. What is accepted: `key: value` lines; values plain (to the end of the line), "double-quoted"
 * (JSON escapes) or 'single-quoted' (`''` for a quote); `inputs` as a block list of `- name: …` items
 * with indented `description:` and `required: true|false` (or `inputs: []`); `output_schema` as JSON
 * on one line; `#` comment lines. Every error names the line and what is wrong. Pure: no I/O.
 */
import { compileSchema } from "../../core/jsonSchema.ts";

export interface SkillInput {
  name: string;
  description: string;
  required: boolean;
}

export interface SkillDefinition {
  name: string;
  description: string;
  inputs: SkillInput[];
  /** JSON Schema the turn's reply must match (its `result`); null: free text. */
  output_schema: Record<string, unknown> | null;
  /** The recipe's steps, in prose, with `{{input}}` placeholders. */
  steps: string;
}

export const SKILL_NAME_PATTERN = "^[a-z0-9][a-z0-9-]{0,63}$";
const SKILL_NAME = new RegExp(SKILL_NAME_PATTERN);
export const INPUT_NAME_PATTERN = "^[a-z_][a-z0-9_]{0,63}$";
const INPUT_NAME = new RegExp(INPUT_NAME_PATTERN);
/** The largest skill file, in bytes of UTF-8. */
export const MAX_SKILL_BYTES = 64 * 1024;
export const MAX_SKILL_INPUTS = 30;
const MAX_DESCRIPTION = 1000;
const PLACEHOLDER = /\{\{\s*([^{}\s]*)\s*\}\}/g;

/** A skill file that is not well formed: `line` (1-based, of the file) when the fault has one. */
export class SkillParseError extends Error {
  constructor(message: string, readonly line: number | null = null) {
    super(line === null ? message : `line ${line}: ${message}`);
    this.name = "SkillParseError";
  }
}

const TOP_LEVEL = ["name", "description", "inputs", "output_schema"] as const;
const INPUT_KEYS = ["name", "description", "required"] as const;

/** Parses and checks a `*.skill.md` text; throws SkillParseError naming the problem. */
export function parseSkill(text: string): SkillDefinition {
  if (Buffer.byteLength(text) > MAX_SKILL_BYTES) throw new SkillParseError(`the skill is over ${MAX_SKILL_BYTES} bytes`);
  const lines = text.replace(/^\uFEFF/, "").replace(/\r\n?/g, "\n").split("\n");
  if (lines[0]?.trimEnd() !== "---") throw new SkillParseError("a skill starts with a front matter block: its first line must be ---", 1);
  const close = lines.findIndex((l, i) => i > 0 && l.trimEnd() === "---");
  if (close < 0) throw new SkillParseError("the front matter is not closed: add a --- line after it");
  const fields = parseFrontMatter(lines.slice(1, close), 2);
  const steps = lines.slice(close + 1).join("\n").trim();

  const name = fields.get("name");
  if (!name) throw new SkillParseError("name is missing from the front matter");
  if (typeof name.value !== "string" || !SKILL_NAME.test(name.value)) {
    throw new SkillParseError("name must be 1-64 lowercase letters, digits and hyphens, starting with a letter or digit (a slug like fashion-try-on)", name.line);
  }
  const description = fields.get("description");
  if (!description) throw new SkillParseError("description is missing from the front matter");
  if (typeof description.value !== "string" || !description.value.trim() || description.value.length > MAX_DESCRIPTION) {
    throw new SkillParseError(`description must be text of 1-${MAX_DESCRIPTION} characters`, description.line);
  }
  const inputs = (fields.get("inputs")?.value ?? []) as SkillInput[];
  const schemaField = fields.get("output_schema");
  let outputSchema: Record<string, unknown> | null = null;
  if (schemaField) {
    const raw = schemaField.value;
    if (typeof raw !== "string") throw new SkillParseError("output_schema must be a JSON object on one line", schemaField.line);
    try {
      outputSchema = JSON.parse(raw) as Record<string, unknown>;
    } catch {
      throw new SkillParseError("output_schema is not valid JSON (write it as JSON on one line)", schemaField.line);
    }
    if (outputSchema === null || typeof outputSchema !== "object" || Array.isArray(outputSchema)) {
      throw new SkillParseError("output_schema must be a JSON object", schemaField.line);
    }
    try {
      compileSchema(outputSchema);
    } catch (err) {
      throw new SkillParseError(`output_schema is not a valid JSON Schema: ${(err as Error).message}`, schemaField.line);
    }
  }
  if (!steps) throw new SkillParseError("the skill has no steps: write them after the front matter");
  const declared = new Set(inputs.map((i) => i.name));
  const body = lines.slice(close + 1).join("\n");
  for (const match of body.matchAll(PLACEHOLDER)) {
    const used = match[1]!;
    if (!declared.has(used)) {
      // The body starts on the line after the closing ---, which is line close + 1 (1-based).
      const line = close + 2 + (body.slice(0, match.index).match(/\n/g)?.length ?? 0);
      throw new SkillParseError(`the steps use {{${used}}}, which is not among the inputs${declared.size ? ` (${[...declared].join(", ")})` : ""}`, line);
    }
  }
  return { name: name.value, description: description.value.trim(), inputs, output_schema: outputSchema, steps };
}

interface Field {
  value: unknown;
  line: number;
}

/** The front matter's lines (the first is line `first` of the file) as fields. */
function parseFrontMatter(lines: string[], first: number): Map<string, Field> {
  const fields = new Map<string, Field>();
  let i = 0;
  while (i < lines.length) {
    const lineNo = first + i;
    const raw = lines[i]!;
    if (isBlankOrComment(raw)) {
      i++;
      continue;
    }
    if (/^\s/.test(raw)) throw new SkillParseError("unexpected indentation: top-level fields start at the beginning of the line", lineNo);
    if (raw.includes("\t")) throw new SkillParseError("tabs are not allowed in the front matter; indent with spaces", lineNo);
    const m = /^([A-Za-z_][\w-]*):(?:\s+(.*))?$/.exec(raw.trimEnd()) ?? /^([A-Za-z_][\w-]*):$/.exec(raw.trimEnd());
    if (!m) throw new SkillParseError("expected a field as `key: value`", lineNo);
    const key = m[1]!;
    if (!(TOP_LEVEL as readonly string[]).includes(key)) throw new SkillParseError(`unknown field ${key}; the front matter may hold ${TOP_LEVEL.join(", ")}`, lineNo);
    if (fields.has(key)) throw new SkillParseError(`${key} is given twice (first on line ${fields.get(key)!.line})`, lineNo);
    const rest = (m[2] ?? "").trim();
    if (key === "inputs") {
      if (rest === "[]") {
        fields.set(key, { value: [], line: lineNo });
        i++;
        continue;
      }
      if (rest !== "") throw new SkillParseError("inputs is a list: put each input on its own lines below it, as `  - name: …` (or write inputs: [] for none)", lineNo);
      const block: string[] = [];
      i++;
      while (i < lines.length && (isBlankOrComment(lines[i]!) || /^\s/.test(lines[i]!))) block.push(lines[i++]!);
      fields.set(key, { value: parseInputs(block, lineNo + 1), line: lineNo });
      continue;
    }
    if (key === "output_schema") {
      if (!rest.startsWith("{")) throw new SkillParseError("output_schema must be a JSON object on one line", lineNo);
      fields.set(key, { value: rest, line: lineNo });
    } else {
      if (rest === "") throw new SkillParseError(`${key} has no value`, lineNo);
      fields.set(key, { value: scalar(rest, lineNo), line: lineNo });
    }
    i++;
  }
  return fields;
}

/** The `inputs:` block: `- name: …` items, each with indented `description:` and `required:`. */
function parseInputs(block: string[], first: number): SkillInput[] {
  const inputs: Array<SkillInput & { line: number; seen: Set<string> }> = [];
  let itemIndent = -1;
  let keyIndent = -1;
  block.forEach((raw, k) => {
    const lineNo = first + k;
    if (isBlankOrComment(raw)) return;
    if (raw.includes("\t")) throw new SkillParseError("tabs are not allowed in the front matter; indent with spaces", lineNo);
    const indent = raw.length - raw.trimStart().length;
    let body = raw.trim();
    const item = /^-(\s+|$)/.exec(body);
    if (item) {
      if (itemIndent >= 0 && indent !== itemIndent) throw new SkillParseError("the inputs' items must be indented alike", lineNo);
      itemIndent = indent;
      body = body.slice(item[0].length);
      keyIndent = indent + item[0].length;
      if (inputs.length >= MAX_SKILL_INPUTS) throw new SkillParseError(`a skill has at most ${MAX_SKILL_INPUTS} inputs`, lineNo);
      inputs.push({ name: "", description: "", required: false, line: lineNo, seen: new Set() });
      if (!body) return;
    } else if (inputs.length === 0) {
      throw new SkillParseError("each input starts with `- name: …`", lineNo);
    } else if (indent !== keyIndent) {
      throw new SkillParseError(`an input's fields must line up under its name (indent ${keyIndent} spaces)`, lineNo);
    }
    const input = inputs[inputs.length - 1]!;
    const m = /^([A-Za-z_][\w-]*):(?:\s+(.*))?$/.exec(body);
    if (!m) throw new SkillParseError("expected an input's field as `key: value`", lineNo);
    const key = m[1]!;
    if (!(INPUT_KEYS as readonly string[]).includes(key)) throw new SkillParseError(`unknown input field ${key}; an input may have ${INPUT_KEYS.join(", ")}`, lineNo);
    if (input.seen.has(key)) throw new SkillParseError(`${key} is given twice for this input`, lineNo);
    input.seen.add(key);
    const rest = (m[2] ?? "").trim();
    if (rest === "") throw new SkillParseError(`${key} has no value`, lineNo);
    if (key === "required") {
      if (rest !== "true" && rest !== "false") throw new SkillParseError("required must be true or false", lineNo);
      input.required = rest === "true";
      return;
    }
    const value = scalar(rest, lineNo);
    if (key === "name") {
      if (!INPUT_NAME.test(value)) throw new SkillParseError(`input name ${JSON.stringify(value)} must be 1-64 lowercase letters, digits and underscores, not starting with a digit`, lineNo);
      if (inputs.some((other) => other !== input && other.name === value)) throw new SkillParseError(`input ${value} is declared twice`, lineNo);
      input.name = value;
    } else {
      if (value.length > MAX_DESCRIPTION) throw new SkillParseError(`an input's description is at most ${MAX_DESCRIPTION} characters`, lineNo);
      input.description = value;
    }
  });
  return inputs.map(({ line, seen: _, ...input }) => {
    if (!input.name) throw new SkillParseError("this input has no name", line);
    return input;
  });
}

const isBlankOrComment = (line: string): boolean => {
  const t = line.trim();
  return t === "" || t.startsWith("#");
};

/** A scalar value: "double-quoted" (JSON escapes), 'single-quoted' ('' for '), or plain to the end of the line. */
function scalar(text: string, lineNo: number): string {
  if (text.startsWith('"')) {
    try {
      const v = JSON.parse(text) as unknown;
      if (typeof v === "string") return v;
    } catch {
      /* reported below */
    }
    throw new SkillParseError('a "double-quoted" value must be one JSON string, closed on the same line', lineNo);
  }
  if (text.startsWith("'")) {
    const m = /^'((?:[^']|'')*)'$/.exec(text);
    if (!m) throw new SkillParseError("a 'single-quoted' value must be closed on the same line (write '' for a quote inside it)", lineNo);
    return m[1]!.replaceAll("''", "'");
  }
  // A plain value would mean something else to a YAML reader: ask for quotes rather than guess.
  if (/^[[\]{}&*!|>%@`]/.test(text)) throw new SkillParseError(`a value starting with ${text[0]} must be quoted`, lineNo);
  if (/\s#/.test(text)) throw new SkillParseError("a value holding ' #' must be quoted (YAML would read the rest as a comment)", lineNo);
  return text;
}

/** A value for an input, as a request gives it. */
export type SkillInputValue = string | number | boolean;

/**
 * The prompt a turn running the skill is given: what the skill is, the inputs with their values, and
 * the steps with each `{{input}}` filled in (`(not given)` for an optional input left out).
 */
export function renderSkillPrompt(skill: SkillDefinition, inputs: Record<string, SkillInputValue>): string {
  const valueOf = (name: string): string => (Object.hasOwn(inputs, name) ? String(inputs[name]) : "(not given)");
  const lines = [`Run the skill "${skill.name}": ${skill.description}`];
  if (skill.inputs.length) {
    lines.push("", "Inputs:");
    for (const input of skill.inputs) lines.push(`- ${input.name}: ${valueOf(input.name)}`);
  }
  lines.push("", "Steps:", skill.steps.replace(PLACEHOLDER, (_, name: string) => valueOf(name)));
  return lines.join("\n");
}

/** A skill written out as a `*.skill.md` text that parses back to the same definition. */
export function skillMarkdown(skill: SkillDefinition): string {
  const q = (s: string) => JSON.stringify(s);
  const lines = ["---", `name: ${skill.name}`, `description: ${q(skill.description)}`];
  if (skill.inputs.length === 0) lines.push("inputs: []");
  else {
    lines.push("inputs:");
    for (const input of skill.inputs) {
      lines.push(`  - name: ${input.name}`);
      if (input.description) lines.push(`    description: ${q(input.description)}`);
      lines.push(`    required: ${input.required}`);
    }
  }
  if (skill.output_schema) lines.push(`output_schema: ${JSON.stringify(skill.output_schema)}`);
  lines.push("---", skill.steps.trim(), "");
  return lines.join("\n");
}
