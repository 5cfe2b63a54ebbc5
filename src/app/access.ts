/** What a request may touch beyond its app: the agents its key is limited to (see AppContext.allowedAgents). */
import { ForbiddenError } from "../core/errors.ts";
import type { AppContext } from "./context.ts";

export const agentAllowed = (ctx: AppContext, agentId: string): boolean => !ctx.allowedAgents || ctx.allowedAgents.includes(agentId);

/** 403 agent_not_allowed when the caller's key is limited to other agents. */
export function requireAgentAllowed(ctx: AppContext, agentId: string): void {
  if (!agentAllowed(ctx, agentId)) {
    throw new ForbiddenError(`This API key may not use agent ${agentId}`, "agent_not_allowed");
  }
}
