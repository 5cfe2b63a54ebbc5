/** The agent sessions and runs use when none is named; created once, on first start. */
import { ConflictError } from "../core/errors.ts";
import type { AgentSpec } from "../domain/agent/agent.ts";
import { DEFAULT_AGENT_ID } from "../domain/streams.ts";
import type { AppContext } from "./context.ts";

export const DEFAULT_AGENT_SPEC: AgentSpec = {
  name: "Default agent",
  description: "A general assistant that can register media assets in its session (after approval).",
  system_prompt: "You are a helpful assistant. When the user gives you media URLs to keep, register them as assets.",
  model: { provider: null, name: null, parameters: {} },
  tools: [{ type: "builtin", name: "register_asset", requires_approval: true }],
  approval: "tools",
  output_schema: null,
};

export async function ensureDefaultAgent(ctx: AppContext): Promise<bigint | null> {
  const { state } = await ctx.repos.agents.load(DEFAULT_AGENT_ID);
  if (state.status !== "none") return null;
  try {
    const r = await ctx.repos.agents.handle(DEFAULT_AGENT_ID, { type: "CreateAgent", agent_id: DEFAULT_AGENT_ID, spec: DEFAULT_AGENT_SPEC }, { appId: ctx.appId });
    return r.position;
  } catch (err) {
    if (err instanceof ConflictError) return null; // another process created it first
    throw err;
  }
}
