/** What a request may touch beyond its app: the agents its key is limited to (see AppContext.allowedAgents). */
import { ForbiddenError } from "../core/errors.ts";
import type { AppContext } from "./context.ts";

export const agentAllowed = (ctx: AppContext, agentId: string): boolean => !ctx.allowedAgents || ctx.allowedAgents.includes(agentId);

/** 403 agent_not_allowed when the caller's key is limited to other agents. */
export function requireAgentAllowed(ctx: AppContext, agentId: string): void {
  if (!agentAllowed(ctx, agentId)) {
    // The message names no id: the agent may be one the caller never sent (the agent of a session it asked for).
    throw new ForbiddenError("This credential may not use the agent this belongs to", "agent_not_allowed");
  }
}

/** 403 permission_denied when the request acts as another end user than `userId`. */
export function requireUser(ctx: AppContext, userId: string | null | undefined): void {
  if (ctx.actingUser && userId !== ctx.actingUser) {
    throw new ForbiddenError("This credential acts only as its own user; this belongs to another", "permission_denied");
  }
}

/**
 * The data partition a key works in: its app's live data, or for a test key its app's test data (as in
 * Stripe's test mode: neither sees the other's, and test jobs always run on the sandbox provider).
 */
export const dataAppId = (appId: string, mode: "live" | "test"): string => (mode === "test" ? `${appId}${TEST_SUFFIX}` : appId);

const TEST_SUFFIX = ".test";

/** The app a data partition belongs to (its test data's included). */
export const baseAppId = (dataApp: string): string => (isTestData(dataApp) ? dataApp.slice(0, -TEST_SUFFIX.length) : dataApp);

/** Whether a data partition is an app's test data. */
export const isTestData = (dataApp: string): boolean => dataApp.endsWith(TEST_SUFFIX);
