/**
 * Agent: a named configuration — system prompt, model, tools, approval policy, output schema.
 * Stream `agent-<id>`.
 */
import { ConflictError, NotFoundError } from "../../core/errors.ts";
import { unreachable, type Decider, type DomainEvent } from "../../core/decider.ts";

export type ApprovalPolicy = "never" | "always" | "tools";

export interface ModelSpec {
  /** "sandbox", "openai", "anthropic"; null means the server's default provider. */
  provider: string | null;
  name: string | null;
  parameters: Record<string, unknown>;
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
}

export type AgentEvent =
  | DomainEvent<"AgentCreated", { agent_id: string } & AgentSpec>
  | DomainEvent<"AgentUpdated", { agent_id: string; changes: Partial<AgentSpec> }>
  | DomainEvent<"AgentDeleted", { agent_id: string }>;

export type AgentCommand =
  | { type: "CreateAgent"; agent_id: string; spec: AgentSpec }
  | { type: "UpdateAgent"; agent_id: string; changes: Partial<AgentSpec> }
  | { type: "DeleteAgent"; agent_id: string };

export interface AgentState {
  status: "none" | "active" | "deleted";
  id: string | null;
  spec: AgentSpec | null;
}

export const agentDecider: Decider<AgentCommand, AgentEvent, AgentState> = {
  initialState: { status: "none", id: null, spec: null },

  evolve(state, event) {
    switch (event.type) {
      case "AgentCreated": {
        const { agent_id, ...spec } = event.data;
        return { status: "active", id: agent_id, spec };
      }
      case "AgentUpdated":
        return { ...state, spec: { ...state.spec!, ...event.data.changes } };
      case "AgentDeleted":
        return { ...state, status: "deleted" };
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
        return [{ type: "AgentUpdated", data: { agent_id: command.agent_id, changes: command.changes } }];
      case "DeleteAgent":
        requireActive(state, command.agent_id);
        return [{ type: "AgentDeleted", data: { agent_id: command.agent_id } }];
      default:
        return unreachable(command);
    }
  },
};

function requireActive(state: AgentState, id: string): void {
  if (state.status !== "active") throw new NotFoundError(`Agent ${id} not found`, { param: "agent_id" }, "agent_not_found");
}
