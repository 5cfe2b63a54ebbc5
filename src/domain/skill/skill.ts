/**
 * An app's skills: stream `skills-<app>` (one per app and data partition). The decider keeps names
 * unique and numbers each name's saves; saving the very same recipe again decides nothing, so a
 * retried save is harmless. Shipped skills (the server's skills folder) are not events: they come with
 * the server's files (src/app/skills.ts).
 */
import { ConflictError, NotFoundError } from "../../core/errors.ts";
import { unreachable, type Decider } from "../../core/decider.ts";
import type { SkillDefinition } from "./markdown.ts";
import type { Static } from "@sinclair/typebox";
import type { SkillEvent, SkillRunSchema } from "./events.ts";

export type { SkillEvent };

/** At most this many skills per app. */
export const MAX_APP_SKILLS = 200;

export interface StoredSkill extends SkillDefinition {
  version: number;
  sha256: string;
  markdown: string;
}

export type SkillCommand =
  | { type: "SaveSkill"; skill: SkillDefinition; markdown: string; sha256: string }
  | { type: "DeleteSkill"; name: string };

export interface SkillsState {
  skills: Record<string, StoredSkill>;
  /** The last version of every name ever saved, so a name saved after a delete goes on counting. */
  versions: Record<string, number>;
}

export const skillDecider: Decider<SkillCommand, SkillEvent, SkillsState> = {
  initialState: { skills: {}, versions: {} },

  evolve(state, event) {
    switch (event.type) {
      case "SkillSaved": {
        const { name, version, sha256, markdown, description, inputs, output_schema, steps } = event.data;
        return {
          skills: { ...state.skills, [name]: { name, version, sha256, markdown, description, inputs, output_schema, steps } },
          versions: { ...state.versions, [name]: version },
        };
      }
      case "SkillDeleted": {
        const { [event.data.name]: _, ...skills } = state.skills;
        return { ...state, skills };
      }
      default:
        return unreachable(event);
    }
  },

  decide(command, state) {
    switch (command.type) {
      case "SaveSkill": {
        const { skill } = command;
        const current = state.skills[skill.name];
        if (current?.sha256 === command.sha256) return [];
        if (!current && Object.keys(state.skills).length >= MAX_APP_SKILLS) {
          throw new ConflictError("skill_limit_reached", `An app may have at most ${MAX_APP_SKILLS} skills; delete one first`, { limit: MAX_APP_SKILLS });
        }
        return [{ type: "SkillSaved", data: {
          name: skill.name, version: (state.versions[skill.name] ?? 0) + 1, sha256: command.sha256, markdown: command.markdown,
          description: skill.description, inputs: skill.inputs, output_schema: skill.output_schema, steps: skill.steps,
        } }];
      }
      case "DeleteSkill": {
        const current = state.skills[command.name];
        if (!current) throw new NotFoundError(`Skill ${command.name} not found`, { param: "skill_name" }, "skill_not_found");
        return [{ type: "SkillDeleted", data: { name: command.name, version: current.version } }];
      }
      default:
        return unreachable(command);
    }
  },
};

/** Which skill a turn runs, recorded on its message and its job (see SkillRunSchema). */
export type SkillRun = Static<typeof SkillRunSchema>;
