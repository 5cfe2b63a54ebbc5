/**
 * The agent sessions and runs use when none is named: one per app (and per app's test data), created
 * on first start for the default app and on first use for the others.
 */
import { ConflictError } from "../core/errors.ts";
import type { AgentSpec } from "../domain/agent/agent.ts";
import { DEFAULT_AGENT_ID, DEFAULT_APP_ID } from "../domain/streams.ts";
import { readYourWrites, type AppContext } from "./context.ts";

export const DEFAULT_AGENT_SPEC: AgentSpec = {
  name: "Default agent",
  description: "A general assistant that can register media assets in its session (after approval).",
  system_prompt: "You are a helpful assistant. When the user gives you media URLs to keep, register them as assets.",
  model: { provider: null, name: null, parameters: {} },
  tools: [{ type: "builtin", name: "register_asset", requires_approval: true }],
  approval: "tools",
  output_schema: null,
};

/** The id of an app's default agent: fixed, so every process finds the same one. */
export const defaultAgentIdOf = (appId: string): string => (appId === DEFAULT_APP_ID ? DEFAULT_AGENT_ID : `agt_default_${appId}`);

/** Creates the caller's app's default agent if it has none yet; returns the position written, if any. */
export async function ensureDefaultAgent(ctx: AppContext): Promise<bigint | null> {
  const agentId = defaultAgentIdOf(ctx.appId);
  const { state } = await ctx.repos.agents.peek(agentId);
  if (state.status !== "none") return null;
  try {
    const r = await ctx.repos.agents.handle(agentId, { type: "CreateAgent", agent_id: agentId, spec: DEFAULT_AGENT_SPEC }, { appId: ctx.appId, actor: "system:default-agent" });
    return r.position;
  } catch (err) {
    if (err instanceof ConflictError) return null; // another process created it first
    throw err;
  }
}

/** The agent a request names, or its app's default agent (created now if need be, and readable at once). */
export async function agentOrDefault(ctx: AppContext, named: string | undefined, signal?: AbortSignal): Promise<string> {
  if (named !== undefined) return named;
  const created = await ensureDefaultAgent(ctx);
  if (created !== null) await readYourWrites(ctx, created, signal);
  return defaultAgentIdOf(ctx.appId);
}
