/** What the API may show of agents, and the 404 for one that is not there. */
import type { Database } from "bun:sqlite";
import { ForbiddenError, NotFoundError } from "../core/errors.ts";
import { findAgent, type AgentRow } from "../../projections/agents/index.ts";

/** The agent's row; 404 `agent_not_found` when it does not exist or was deleted. */
export function getAgent(db: Database, appId: string, id: string, allowedAgents?: readonly string[] | null): AgentRow {
  const row = findAgent(db, appId, id);
  if (!row) throw new NotFoundError(`Agent ${id} not found`, { param: "agent_id" }, "agent_not_found");
  if (allowedAgents && !allowedAgents.includes(id)) throw new ForbiddenError("This credential may not use this agent", "agent_not_allowed");
  return row;
}
