/** What the API may show of agents, and the 404 for one that is not there. */
import type { Database } from "bun:sqlite";
import { NotFoundError } from "../core/errors.ts";
import { findAgent, type AgentRow } from "../../projections/agents/index.ts";

/** The agent's row; 404 `agent_not_found` when it does not exist or was deleted. */
export function getAgent(db: Database, appId: string, id: string): AgentRow {
  const row = findAgent(db, appId, id);
  if (!row) throw new NotFoundError(`Agent ${id} not found`, { param: "agent_id" }, "agent_not_found");
  return row;
}
