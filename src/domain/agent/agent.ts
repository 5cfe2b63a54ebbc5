/**
 * Agent: a named configuration — system prompt, model, tools, approval policy, output schema.
 * Stream `agent-<id>`.
 */
import { ConflictError, NotFoundError, ValidationError } from "../../core/errors.ts";
import { unreachable, type Decider } from "../../core/decider.ts";
import type { AgentEvent } from "./events.ts";

export type { AgentEvent };

export type ApprovalPolicy = "never" | "always" | "tools";

export interface ModelSpec {
  /** "sandbox", "openai", "anthropic"; null means the server's default provider. */
  provider: string | null;
  name: string | null;
  parameters: Record<string, unknown>;
  /** One of the app's model connections (see /v1/apps/{id}/connections); null: the server's. */
  connection?: string | null;
}

/** A tool an agent may call: a built-in by name, or an HTTP endpoint the app owns. */
export type ToolDeclaration =
  | { type: "builtin"; name: string; requires_approval?: boolean }
  | {
      type: "http";
      name: string;
      description: string;
      url: string;
      parameters: Record<string, unknown>;
      headers?: Record<string, string>;
      timeout_ms?: number;
      requires_approval?: boolean;
      estimated_credits?: number;
    };

export interface AgentSpec {
  name: string;
  description: string;
  system_prompt: string;
  model: ModelSpec;
  tools: ToolDeclaration[];
  approval: ApprovalPolicy;
  output_schema: Record<string, unknown> | null;
  /** Who pays for its model calls: the app (absent means so), or each session's end user (BYOS). */
  billing?: AgentBilling;
  /** Memory recalled into each turn, and the remember / recall tools (absent means off). */
  memory?: AgentMemory;
}

export type AgentBilling = "app" | "end_user";

export interface AgentMemory {
  enabled: boolean;
  /** How many of the user's entries, best first, each turn recalls into the context. */
  recall_limit: number;
}

/** An agent's memory settings, with the defaults of agents that set none. */
export const DEFAULT_AGENT_MEMORY: AgentMemory = { enabled: false, recall_limit: 5 };

/**
 * A partial update that merges at every level: fields left out keep their value; `model` merges
 * field by field, and `model.parameters` key by key (a parameter set to null is removed). Lists
 * (`tools`) and `output_schema` are replaced whole.
 */
export interface AgentPatch {
  name?: string;
  description?: string;
  system_prompt?: string;
  model?: { provider?: string | null; name?: string | null; parameters?: Record<string, unknown>; connection?: string | null };
  tools?: ToolDeclaration[];
  approval?: ApprovalPolicy;
  output_schema?: Record<string, unknown> | null;
  billing?: AgentBilling;
  /** Merged field by field. */
  memory?: Partial<AgentMemory>;
}

export type AgentCommand =
  | { type: "CreateAgent"; agent_id: string; spec: AgentSpec }
  | { type: "UpdateAgent"; agent_id: string; patch: AgentPatch }
  | { type: "DeleteAgent"; agent_id: string }
  /** The app's own system prompt for the agent; wins over `spec.system_prompt` until reverted. */
  | { type: "OverridePrompt"; agent_id: string; system_prompt: string }
  | { type: "RevertPrompt"; agent_id: string };

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** Merges parameters key by key, recursing into objects; null removes a key. */
function mergeParameters(base: Record<string, unknown>, patch: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = isPlainObject(v) && isPlainObject(out[k]) ? mergeParameters(out[k] as Record<string, unknown>, v) : v;
  }
  return out;
}

/** The spec after a patch (pure; see AgentPatch for the merge rules). */
export function applyAgentPatch(spec: AgentSpec, patch: AgentPatch): AgentSpec {
  const { model, memory, ...rest } = patch;
  const next: AgentSpec = { ...spec };
  for (const [k, v] of Object.entries(rest)) if (v !== undefined) (next as unknown as Record<string, unknown>)[k] = v;
  if (memory) next.memory = { ...(spec.memory ?? DEFAULT_AGENT_MEMORY), ...memory };
  if (model) {
    next.model = {
      provider: model.provider !== undefined ? model.provider : spec.model.provider,
      name: model.name !== undefined ? model.name : spec.model.name,
      parameters: model.parameters ? mergeParameters(spec.model.parameters, model.parameters) : spec.model.parameters,
      ...(model.connection !== undefined ? { connection: model.connection } : spec.model.connection !== undefined ? { connection: spec.model.connection } : {}),
    };
  }
  return next;
}

export interface AgentState {
  status: "none" | "active" | "deleted";
  id: string | null;
  spec: AgentSpec | null;
  /**
   * The app's override of the system prompt, or null. Kept apart from `spec.system_prompt` (the
   * default), so an update of the spec changes the default and the override, if any, still wins.
   */
  promptOverride: string | null;
}

/** The system prompt the agent runs with: the override when there is one, else the spec's. */
export const effectivePrompt = (state: AgentState): string => state.promptOverride ?? state.spec?.system_prompt ?? "";

/** The spec as a turn runs it: the effective system prompt in place of the default. */
export const effectiveSpec = (state: AgentState): AgentSpec | null =>
  state.spec && state.promptOverride !== null ? { ...state.spec, system_prompt: state.promptOverride } : state.spec;

export const agentDecider: Decider<AgentCommand, AgentEvent, AgentState> = {
  initialState: { status: "none", id: null, spec: null, promptOverride: null },

  evolve(state, event) {
    switch (event.type) {
      case "AgentCreated": {
        const { agent_id, ...spec } = event.data;
        return { status: "active", id: agent_id, spec, promptOverride: null };
      }
      case "AgentUpdated":
        return { ...state, spec: { ...state.spec!, ...event.data.changes } };
      case "AgentPatched":
        return { ...state, spec: applyAgentPatch(state.spec!, event.data.patch) };
      case "AgentDeleted":
        return { ...state, status: "deleted" };
      case "AgentPromptOverridden":
        return { ...state, promptOverride: event.data.system_prompt };
      case "AgentPromptReverted":
        return { ...state, promptOverride: null };
      default:
        return unreachable(event);
    }
  },

  decide(command, state) {
    switch (command.type) {
      case "CreateAgent":
        if (state.status !== "none") throw new ConflictError("agent_exists", `Agent ${command.agent_id} already exists`);
        return [{ type: "AgentCreated", data: { agent_id: command.agent_id, ...command.spec } }];
      case "UpdateAgent":
        requireActive(state, command.agent_id);
        return [{ type: "AgentPatched", data: { agent_id: command.agent_id, patch: command.patch } }];
      case "DeleteAgent":
        requireActive(state, command.agent_id);
        return [{ type: "AgentDeleted", data: { agent_id: command.agent_id } }];
      case "OverridePrompt":
        requireActive(state, command.agent_id);
        // An empty prompt is not a way to revert (nor a prompt): reverting is its own command.
        if (command.system_prompt.trim() === "") {
          throw new ValidationError("system_prompt must not be empty; to revert to the agent's default prompt, DELETE the override", { param: "system_prompt" });
        }
        // The same override again changes nothing, so it records nothing.
        if (state.promptOverride === command.system_prompt) return [];
        return [{ type: "AgentPromptOverridden", data: { agent_id: command.agent_id, system_prompt: command.system_prompt } }];
      case "RevertPrompt":
        requireActive(state, command.agent_id);
        if (state.promptOverride === null) return []; // nothing to revert: reverting is idempotent
        return [{ type: "AgentPromptReverted", data: { agent_id: command.agent_id } }];
      default:
        return unreachable(command);
    }
  },
};

function requireActive(state: AgentState, id: string): void {
  if (state.status !== "active") throw new NotFoundError(`Agent ${id} not found`, { param: "agent_id" }, "agent_not_found");
}
