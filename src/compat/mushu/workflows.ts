/**
 * Mushu workflows as agents of ours: each (app, workflow) has its own agent, created on first use from
 * the default agent's spec with the workflow's built-in prompt, so a per-workflow prompt override
 * (`PUT /apps/{app_id}/agents-config/workflows/{name}/prompt`) is that agent's prompt override, and
 * its turns and runs are traceable to it through `/v1`. Its id is derived from the app and the workflow
 * name: concurrent first uses find the same agent, with no mapping table.
 */
import { createHash } from "node:crypto";
import { readYourWrites, type AppContext } from "../../app/context.ts";
import { DEFAULT_AGENT_SPEC } from "../../app/defaultAgent.ts";
import { ConflictError } from "../../core/errors.ts";
import type { AgentSpec } from "../../domain/agent/agent.ts";
import { connectionOf } from "../../domain/app/app.ts";

/** The connection a Mushu LLM configuration is stored as (`PUT /apps/{app_id}/agents-config/llm`). */
export const MUSHU_CONNECTION = "mushu";

/** The doc's workflows, with the built-in prompt each starts with; any other name starts with the default agent's. */
export const BUILT_IN_PROMPTS: Readonly<Record<string, string>> = {
  "food-log": "You analyse food photos. Identify the foods and estimate their nutrients (energy, macronutrients, vitamins and minerals) " +
    "for a health log, and answer with the breakdown as a JSON object.",
  "meal-plan": "You are a multi-turn meal planning assistant. Keep track of the user's diet preferences, goals and past meals across messages.",
};

/** Our agent id for an app's workflow: stable, distinct per app. */
export function workflowAgentId(appId: string, workflow: string): string {
  return `agt_mushu_${createHash("sha256").update(`${appId}\0${workflow}`).digest("hex").slice(0, 32)}`;
}

/** The spec a workflow's agent starts with: on the app's Mushu LLM configuration when it has one. */
export function workflowSpec(workflow: string, llm: { model: string | null } | null): AgentSpec {
  return {
    ...DEFAULT_AGENT_SPEC,
    name: workflow,
    description: `The Mushu workflow "${workflow}"`,
    system_prompt: BUILT_IN_PROMPTS[workflow] ?? DEFAULT_AGENT_SPEC.system_prompt,
    model: llm ? { provider: null, name: llm.model, parameters: {}, connection: MUSHU_CONNECTION } : DEFAULT_AGENT_SPEC.model,
  };
}

/** The app's Mushu LLM configuration, if set (the connection of that name). */
export async function mushuLlm(ctx: AppContext, appId: string): Promise<{ model: string | null; base_url: string | null } | null> {
  const { state } = await ctx.repos.apps.load(appId);
  const c = connectionOf(state.connections ?? {}, MUSHU_CONNECTION);
  return c ? { model: c.default_model, base_url: c.base_url } : null;
}

/** The workflow's agent in `ctx`'s app, created now if it has none (and readable at once). */
export async function ensureWorkflowAgent(ctx: AppContext, workflow: string, signal?: AbortSignal): Promise<string> {
  const agentId = workflowAgentId(ctx.appId, workflow);
  const { state } = await ctx.repos.agents.peek(agentId);
  if (state.status !== "none") return agentId;
  try {
    const spec = workflowSpec(workflow, await mushuLlm(ctx, ctx.appId));
    const r = await ctx.repos.agents.handle(agentId, { type: "CreateAgent", agent_id: agentId, spec }, { appId: ctx.appId, actor: "system:mushu-workflow" });
    await readYourWrites(ctx, r.position, signal);
  } catch (err) {
    if (!(err instanceof ConflictError)) throw err; // another request created it first
  }
  return agentId;
}

export interface WorkflowAgentRow {
  id: string; name: string; system_prompt: string; prompt_override: string | null;
}

/** The app's workflow agents made so far (the workflow is the agent's name), for the config view and LLM changes. */
export function workflowAgents(ctx: AppContext, appId: string): WorkflowAgentRow[] {
  return ctx.db.query(
    "SELECT id, name, system_prompt, prompt_override FROM agents WHERE app_id = ? AND deleted = 0 AND id LIKE 'agt\\_mushu\\_%' ESCAPE '\\' ORDER BY name",
  ).all(appId) as WorkflowAgentRow[];
}
