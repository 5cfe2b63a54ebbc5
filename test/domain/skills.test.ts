/** Skill files (`*.skill.md`): the strict parser, the prompt a run is given, and the per-app skills decider. */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseSkill, renderSkillPrompt, SkillParseError, skillMarkdown, type SkillDefinition } from "../../src/domain/skill/markdown.ts";
import { skillDecider, MAX_APP_SKILLS, type SkillsState } from "../../src/domain/skill/skill.ts";
import { skillEvents } from "../../src/domain/skill/events.ts";
import { loadSkillsFolder, sha256Hex, SkillsFolderError } from "../../src/app/skills.ts";
import { DEFAULT_SKILLS_DIR } from "../../src/config.ts";

const GOOD = `---
# A comment line is fine.
name: fashion-try-on
description: "Virtually try on outfits: a person image and a garment image"
inputs:
  - name: person_image
    description: The person's asset label, e.g. asset_1
    required: true
  - name: clothing_image
    description: 'The garment''s asset label'
    required: false
  - name: note
---
Put {{ clothing_image }} on the person in {{person_image}}.

Keep the pose. Note: {{note}}
`;

const parseError = (text: string): SkillParseError => {
  try {
    parseSkill(text);
  } catch (err) {
    if (err instanceof SkillParseError) return err;
    throw err;
  }
  throw new Error("parsed");
};

const withFront = (front: string, body = "Do it.") => `---\n${front}\n---\n${body}\n`;

describe("parsing a skill file", () => {
  test("a good file gives its name, description, inputs (required defaults to false) and steps", () => {
    expect(parseSkill(GOOD)).toEqual({
      name: "fashion-try-on",
      description: "Virtually try on outfits: a person image and a garment image",
      inputs: [
        { name: "person_image", description: "The person's asset label, e.g. asset_1", required: true },
        { name: "clothing_image", description: "The garment's asset label", required: false },
        { name: "note", description: "", required: false },
      ],
      output_schema: null,
      steps: "Put {{ clothing_image }} on the person in {{person_image}}.\n\nKeep the pose. Note: {{note}}",
    });
  });

  test("CRLF line ends, a BOM, inputs: [] and an output schema on one line", () => {
    const text = "\uFEFF---\r\nname: s1\r\ndescription: d\r\ninputs: []\r\noutput_schema: {\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"string\"}}}\r\n---\r\nSteps here.\r\n";
    expect(parseSkill(text)).toMatchObject({ name: "s1", inputs: [], output_schema: { type: "object" }, steps: "Steps here." });
  });

  test("bad files are refused with the line and what is wrong", () => {
    const cases: Array<[string, RegExp]> = [
      ["name: a\ndescription: d\n---\nx", /line 1: a skill starts with a front matter block/],
      ["---\nname: a\ndescription: d\nDo it.", /front matter is not closed/],
      [withFront("description: d"), /name is missing/],
      [withFront("name: a"), /description is missing/],
      [withFront("name: Not A Slug\ndescription: d"), /line 2: name must be 1-64 lowercase letters/],
      [withFront("name: a\ndescription: d\nname: b"), /line 4: name is given twice \(first on line 2\)/],
      [withFront("name: a\ndescription: d\nversion: 2"), /line 4: unknown field version; the front matter may hold name, description, inputs, output_schema/],
      [withFront("name: a\ndescription: d\ninputs: urls"), /line 4: inputs is a list/],
      [withFront("name: a\ndescription: d\ninputs:\n  - name: x\n    required: yes"), /line 6: required must be true or false/],
      [withFront("name: a\ndescription: d\ninputs:\n  - name: x\n  - name: x"), /line 6: input x is declared twice/],
      [withFront("name: a\ndescription: d\ninputs:\n  - name: Bad-Name"), /line 5: input name "Bad-Name" must be/],
      [withFront("name: a\ndescription: d\ninputs:\n  - description: no name"), /line 5: this input has no name/],
      [withFront("name: a\ndescription: d\ninputs:\n  - name: x\n    colour: red"), /line 6: unknown input field colour/],
      [withFront("name: a\ndescription: d\ninputs:\n  - name: x\n      description: too deep"), /line 6: an input's fields must line up under its name/],
      [withFront("name: a\ndescription: d\ninputs:\n  name: x"), /line 5: each input starts with `- name: …`/],
      [withFront("name: a\ndescription: [a, b]"), /line 3: a value starting with \[ must be quoted/],
      [withFront("name: a\ndescription: price #1"), /line 3: a value holding ' #' must be quoted/],
      [withFront('name: a\ndescription: "unclosed'), /line 3: a "double-quoted" value must be one JSON string/],
      [withFront("name: a\ndescription: d\noutput_schema: {not json}"), /line 4: output_schema is not valid JSON/],
      [withFront("name: a\ndescription: d\noutput_schema: {\"type\": 12}"), /line 4: output_schema is not a valid JSON Schema/],
      [withFront("name: a\ndescription: d\n  indented: 1"), /line 4: unexpected indentation/],
      [withFront("name: a\ndescription: d", ""), /the skill has no steps/],
      [withFront("name: a\ndescription: d\ninputs:\n  - name: x", "Use {{x}}.\nThen {{y}}."), /line 8: the steps use \{\{y\}\}, which is not among the inputs \(x\)/],
      [withFront("name: a\ndescription: d\ntags\tx: 1"), /line 4: tabs are not allowed/],
      ["x".repeat(70_000), /over 65536 bytes/],
    ];
    for (const [text, message] of cases) expect({ text: text.slice(0, 60), error: parseError(text).message }).toEqual({ text: text.slice(0, 60), error: expect.stringMatching(message) });
  });

  test("a skill written out as Markdown parses back to itself", () => {
    const skill: SkillDefinition = {
      name: "round-trip", description: 'Quotes "here", colons: there, # and hashes',
      inputs: [{ name: "a", description: "line one\nline two", required: true }, { name: "b", description: "", required: false }],
      output_schema: { type: "object", properties: { x: { type: "integer" } } }, steps: "Use {{a}} and {{b}}.\n\n---\nA rule above is prose.",
    };
    expect(parseSkill(skillMarkdown(skill))).toEqual(skill);
  });

  test("the prompt a run is given: the skill, each input's value (or that it was not given), the steps filled in", () => {
    const skill = parseSkill(GOOD);
    expect(renderSkillPrompt(skill, { person_image: "asset_1", note: 3 })).toBe([
      'Run the skill "fashion-try-on": Virtually try on outfits: a person image and a garment image',
      "", "Inputs:", "- person_image: asset_1", "- clothing_image: (not given)", "- note: 3",
      "", "Steps:", "Put (not given) on the person in asset_1.\n\nKeep the pose. Note: 3",
    ].join("\n"));
  });
});

describe("the shipped skills folder", () => {
  test("the repository's skills parse, and each names itself", () => {
    const skills = loadSkillsFolder(DEFAULT_SKILLS_DIR);
    expect([...skills.keys()].sort()).toEqual(["register-media", "structured-summary"]);
    for (const s of skills.values()) expect(s.sha256).toBe(sha256Hex(s.markdown));
    expect(skills.get("structured-summary")!.output_schema).toMatchObject({ required: ["title", "key_points", "sentiment", "actions"] });
  });

  test("a missing folder is no skills; a bad file or two files of one name stop the load, naming the file", () => {
    const dir = mkdtempSync(join(tmpdir(), "agentry-skills-"));
    try {
      expect(loadSkillsFolder(join(dir, "none")).size).toBe(0);
      writeFileSync(join(dir, "a.skill.md"), withFront("name: same\ndescription: d"));
      writeFileSync(join(dir, "notes.md"), "not a skill: ignored");
      expect([...loadSkillsFolder(dir).keys()]).toEqual(["same"]);
      writeFileSync(join(dir, "b.skill.md"), withFront("name: same\ndescription: e"));
      expect(() => loadSkillsFolder(dir)).toThrow(/a\.skill\.md and .*b\.skill\.md both name the skill same/);
      writeFileSync(join(dir, "b.skill.md"), withFront("name: other"));
      expect(() => loadSkillsFolder(dir)).toThrow(SkillsFolderError);
      expect(() => loadSkillsFolder(dir)).toThrow(/b\.skill\.md: description is missing/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the app's skills decider", () => {
  const skill = (name: string, steps = "Do it."): SkillDefinition => ({ name, description: "d", inputs: [], output_schema: null, steps });
  const save = (state: SkillsState, s: SkillDefinition) => {
    const markdown = skillMarkdown(s);
    return skillDecider.decide({ type: "SaveSkill", skill: s, markdown, sha256: sha256Hex(markdown) }, state);
  };
  const fold = (state: SkillsState, events: ReturnType<typeof save>) => events.reduce(skillDecider.evolve, state);

  test("saves number each name's versions, through deletes; the same recipe again decides nothing", () => {
    let state = skillDecider.initialState;
    const first = save(state, skill("a"));
    expect(first).toMatchObject([{ type: "SkillSaved", data: { name: "a", version: 1 } }]);
    for (const e of first) skillEvents.encode(e);
    state = fold(state, first);
    expect(save(state, skill("a"))).toEqual([]);
    state = fold(state, save(state, skill("a", "Do it better.")));
    expect(state.skills.a).toMatchObject({ version: 2, steps: "Do it better." });
    const deleted = skillDecider.decide({ type: "DeleteSkill", name: "a" }, state);
    expect(deleted).toEqual([{ type: "SkillDeleted", data: { name: "a", version: 2 } }]);
    state = fold(state, deleted);
    expect(state.skills.a).toBeUndefined();
    expect(save(state, skill("a"))).toMatchObject([{ data: { version: 3 } }]);
  });

  test("deleting a skill the app does not have is 404 skill_not_found; past the cap a new name is 409", () => {
    expect(() => skillDecider.decide({ type: "DeleteSkill", name: "nope" }, skillDecider.initialState)).toThrow(expect.objectContaining({ code: "skill_not_found", status: 404 }));
    let state = skillDecider.initialState;
    for (let i = 0; i < MAX_APP_SKILLS; i++) state = fold(state, save(state, skill(`s${i}`)));
    expect(() => save(state, skill("one-more"))).toThrow(expect.objectContaining({ code: "skill_limit_reached", status: 409 }));
    expect(save(state, skill("s0", "Changed."))).toHaveLength(1); // replacing one is still allowed
  });
});
