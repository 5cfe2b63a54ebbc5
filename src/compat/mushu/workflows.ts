/**
 * Mushu workflows as agents of ours: each (app, workflow) has its own agent, created on first use from
 * the default agent's spec with the workflow's built-in prompt, so a per-workflow prompt override
 * (`PUT /apps/{app_id}/agents-config/workflows/{name}/prompt`) is that agent's prompt override, and
 * its turns and runs are traceable to it through `/v1`. Its id is derived from the app, the workflow
 * name and a generation: concurrent first uses find the same agent, with no mapping table, and a workflow
 * whose agent was deleted (through `/v1`) gets a fresh one at the next generation.
 *
 * Who may set a workflow up: the data plane (any key or end-user token) only the doc's built-in
 * workflows, so a caller cannot create agents by naming workflows; the management plane any name.
 */
import { createHash } from "node:crypto";
import { readYourWrites, type AppContext } from "../../app/context.ts";
import { DEFAULT_AGENT_SPEC } from "../../app/defaultAgent.ts";
import { ConflictError, NotFoundError } from "../../core/errors.ts";
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

/** Our agent id for an app's workflow: stable, distinct per app; generation n > 0 replaces a deleted n - 1. */
export function workflowAgentId(appId: string, workflow: string, generation = 0): string {
  const key = generation === 0 ? `${appId}\0${workflow}` : `${appId}\0${workflow}\0${generation}`;
  return `agt_mushu_${createHash("sha256").update(key).digest("hex").slice(0, 32)}`;
}

/** How many times one workflow's agent may be deleted and set up again. */
const MAX_GENERATIONS = 1000;

export const isBuiltInWorkflow = (workflow: string): boolean => Object.hasOwn(BUILT_IN_PROMPTS, workflow);

/**
 * The spec a workflow's agent starts with: on the app's Mushu LLM configuration when it has one. No
 * tools and no approvals: Mushu has no approval endpoint, so a plan waiting for one would leave its
 * client polling `pending` for ever (tools can still be added through `/v1`, with their approvals).
 */
export function workflowSpec(workflow: string, llm: { model: string | null } | null): AgentSpec {
  return {
    ...DEFAULT_AGENT_SPEC,
    name: workflow,
    description: `The Mushu workflow "${workflow}"`,
    system_prompt: BUILT_IN_PROMPTS[workflow] ?? DEFAULT_AGENT_SPEC.system_prompt,
    tools: [],
    approval: "never",
    model: llm ? { provider: null, name: llm.model, parameters: {}, connection: MUSHU_CONNECTION } : DEFAULT_AGENT_SPEC.model,
  };
}

/** The app's Mushu LLM configuration, if set (the connection of that name). */
export async function mushuLlm(ctx: AppContext, appId: string): Promise<{ model: string | null; base_url: string | null } | null> {
  const { state } = await ctx.repos.apps.load(appId);
  const c = connectionOf(state.connections ?? {}, MUSHU_CONNECTION);
  return c ? { model: c.default_model, base_url: c.base_url } : null;
}

/**
 * The workflow's agent in `ctx`'s app: its current one, else one created now (and readable at once) when
 * `setUp` allows, else 404 `workflow_not_found`. Deleted generations are skipped.
 */
export async function ensureWorkflowAgent(ctx: AppContext, workflow: string, setUp: "any" | "built_in", signal?: AbortSignal): Promise<string> {
  let raced = 0;
  for (let generation = 0; generation < MAX_GENERATIONS; generation++) {
    const agentId = workflowAgentId(ctx.appId, workflow, generation);
    const { state } = await ctx.repos.agents.peek(agentId);
    if (state.status === "active") return agentId;
    if (state.status === "deleted") continue;
    if (setUp === "built_in" && !isBuiltInWorkflow(workflow)) {
      throw new NotFoundError(`Unknown workflow "${workflow}": use ${Object.keys(BUILT_IN_PROMPTS).join(" or ")}, or set it up through the management plane`, { param: "workflow" }, "workflow_not_found");
    }
    try {
      const spec = workflowSpec(workflow, await mushuLlm(ctx, ctx.appId));
      const r = await ctx.repos.agents.handle(agentId, { type: "CreateAgent", agent_id: agentId, spec }, { appId: ctx.appId, actor: "system:mushu-workflow" });
      await readYourWrites(ctx, r.position, signal);
      return agentId;
    } catch (err) {
      if (!(err instanceof ConflictError) || ++raced > 3) throw err;
      generation--; // another request created (or deleted) it first: look at this generation again
    }
  }
  throw new ConflictError("workflow_exhausted", `The workflow "${workflow}" has been deleted too many times`, { param: "workflow" });
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
