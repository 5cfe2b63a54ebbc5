/**
 * /v1/agents/{agent_id}/prompt: an app's override of an agent's system prompt (Mushu's per-workflow
 * prompt overrides). The override is kept apart from the agent's own `system_prompt` (the default):
 * setting and reverting it are events on the agent's stream, so every turn's prompt can be traced, and
 * a PATCH of the agent changes the default while the override, if any, still wins.
 */
import { Elysia, t } from "elysia";
import { readYourWrites, type AppContext } from "../../../app/context.ts";
import { getAgent } from "../../../app/agentReads.ts";
import { defaultAgentIdOf, ensureDefaultAgent } from "../../../app/defaultAgent.ts";
import { NotFoundError } from "../../../core/errors.ts";
import { effectivePrompt, type AgentCommand } from "../../../domain/agent/agent.ts";
import { findAgent, type AgentRow } from "../../../../projections/agents/index.ts";
import { afterWrite, callerContext, IdParam, iso, metaOf, type HttpExchange, type V1Deps } from "./common.ts";
import { v1Models } from "./models.ts";

const PromptBody = t.Object({
  system_prompt: t.String({
    maxLength: 100_000,
    description: "The prompt the agent runs with from now on. Not empty: to go back to the agent's own prompt, DELETE the override.",
  }),
});

const promptView = (r: AgentRow) => ({
  agent_id: r.id, object: "agent.prompt" as const, system_prompt: r.prompt_override ?? r.system_prompt,
  default_system_prompt: r.system_prompt, overridden: r.prompt_override !== null, updated_at: iso(r.prompt_updated_at)!,
});

/**
 * The agent a prompt request names, as the caller may see it (404 for another app's or a deleted one,
 * 403 for one the key is not allowed). An app's default agent is made on first use, as sessions do.
 */
async function reachableAgent(ctx: AppContext, id: string, signal: AbortSignal): Promise<AgentRow> {
  if (id === defaultAgentIdOf(ctx.appId) && (!ctx.allowedAgents || ctx.allowedAgents.includes(id))) {
    const created = await ensureDefaultAgent(ctx);
    if (created !== null) await readYourWrites(ctx, created, signal);
  }
  return getAgent(ctx.db, ctx.appId, id, ctx.allowedAgents);
}

/** The prompt after a write: from the read model once it has it; while it lags, from the agent's events. */
async function promptAfterWrite(ctx: AppContext, http: HttpExchange, id: string, position: bigint | null) {
  const fresh = await afterWrite(ctx, http, position);
  const row = findAgent(ctx.db, ctx.appId, id);
  if (fresh && row) return promptView(row);
  const { state, appId } = await ctx.repos.agents.load(id);
  if (state.status !== "active" || !state.spec || appId !== ctx.appId) throw new NotFoundError(`Agent ${id} not found`, { param: "agent_id" }, "agent_not_found");
  return {
    agent_id: id, object: "agent.prompt" as const, system_prompt: effectivePrompt(state), default_system_prompt: state.spec.system_prompt,
    overridden: state.promptOverride !== null, updated_at: new Date().toISOString(),
  };
}

/** Decides `command` on the agent's stream and answers the prompt as it then is. */
async function write(ctx: AppContext, http: HttpExchange, id: string, command: AgentCommand) {
  await reachableAgent(ctx, id, http.request.signal);
  const r = await ctx.repos.agents.handle(id, command, metaOf(ctx, http.request));
  return promptAfterWrite(ctx, http, id, r.position);
}

export const agentPromptRoutes = (deps: V1Deps) =>
  new Elysia({ name: "agentry.v1.agentPrompt", prefix: "/v1/agents", detail: { tags: ["Agents"] } })
    .use(v1Models)
    .use(callerContext(deps))
    .get("/:agent_id/prompt", async ({ ctx, params, request }) => promptView(await reachableAgent(ctx, params.agent_id, request.signal)), {
      params: IdParam("agent_id"), response: "AgentPrompt",
      detail: { summary: "Get an agent's system prompt", description: "The prompt the agent runs with, its own default, and whether an override is set." },
    })
    .put("/:agent_id/prompt", ({ ctx, params, body, request, set }) =>
      write(ctx, { request, set }, params.agent_id, { type: "OverridePrompt", agent_id: params.agent_id, system_prompt: body.system_prompt }), {
      params: IdParam("agent_id"), body: PromptBody, response: "AgentPrompt",
      detail: {
        summary: "Override an agent's system prompt",
        description: "Every turn started from now on runs with this prompt, whatever the agent's own system_prompt (a PATCH of it changes the default; the override still wins). " +
          "Recorded as an AgentPromptOverridden event; setting the same prompt again records nothing. An empty (or blank) prompt is refused with 400 invalid_request: to revert, DELETE.",
      },
    })
    .delete("/:agent_id/prompt", ({ ctx, params, request, set }) =>
      write(ctx, { request, set }, params.agent_id, { type: "RevertPrompt", agent_id: params.agent_id }), {
      params: IdParam("agent_id"), response: "AgentPrompt",
      detail: {
        summary: "Revert an agent's system prompt to its default",
        description: "Removes the override (an AgentPromptReverted event). Idempotent: with no override set, nothing is recorded and the answer is the same 200 with the prompt as it is.",
      },
    });
