/**
 * Mushu's management plane at `/compat/mushu/apps` (Bearer: our management credential, the root token
 * or a management JWT, with its roles): an app's agents config, its LLM provider and its per-workflow
 * prompt overrides. `app_id` is our app's id. The LLM configuration is our model connection `mushu`
 * (written through `PUT /v1/apps/{id}/connections/mushu`, called in process with the caller's own
 * credential, so its checks, address policy and sealing are /v1's); the app's workflow agents run on it.
 * A workflow's prompt is its agent's prompt override (src/compat/mushu/workflows.ts).
 */
import { Elysia, t } from "elysia";
import { readYourWrites, type AppContext } from "../../app/context.ts";
import type { ManagementPrincipal } from "../../auth/management.ts";
import type { CommandMetadata } from "../../app/repository.ts";
import { AppError, NotFoundError, ValidationError } from "../../core/errors.ts";
import { requireRole } from "../../http/routes/v1/apps.ts";
import { requestIdOf } from "../../http/requestGuard.ts";
import { findAgent } from "../../../projections/agents/index.ts";
import { MUSHU_PREFIX } from "./wire.ts";
import { ensureWorkflowAgent, MUSHU_CONNECTION, mushuLlm, workflowAgents } from "./workflows.ts";

export interface MushuManagementDeps {
  ctx: AppContext;
  /** The management principal of an authenticated request. */
  principalOf(request: Request): ManagementPrincipal | undefined;
  /** The assembled HTTP application, called in process (set once it is built). */
  forward(request: Request): Promise<Response>;
}

/** The path prefix the management credential guards (src/http/app.ts `managementPaths`). */
export const MUSHU_MANAGEMENT = `${MUSHU_PREFIX}/apps`;

/** A refusal /v1 answered to a forwarded call, passed on with its status and code. */
class ForwardedRefusal extends AppError {
  constructor(readonly status: number, code: string, message: string, details?: Record<string, unknown>) {
    super(code, message, details);
  }
}

const AppParam = t.Object({ app_id: t.String({ minLength: 1, maxLength: 100, pattern: "^[A-Za-z0-9_.-]+$" }) });
const WorkflowParams = t.Object({ app_id: AppParam.properties.app_id, name: t.String({ minLength: 1, maxLength: 100, pattern: "^[A-Za-z0-9_.-]+$" }) });

/** The provider kind a base URL speaks: Anthropic's and OpenAI's own hosts, else the OpenAI wire format. */
export function providerOf(baseUrl: string): "anthropic" | "openai" | "openai_compatible" {
  // The body's pattern only asks for http(s)://: a URL that does not parse is the client's error.
  const host = URL.parse(baseUrl)?.hostname.toLowerCase();
  if (host === undefined) throw new ValidationError("llm_base_url is not a valid URL", { param: "llm_base_url" });
  if (host === "api.anthropic.com") return "anthropic";
  if (host === "api.openai.com") return "openai";
  return "openai_compatible";
}

export const mushuManagementRoutes = (deps: MushuManagementDeps) => {
  /** The app's context, once the caller holds `role` on it and it exists. */
  const appContext = async (request: Request, appId: string, role: "member" | "admin"): Promise<AppContext> => {
    requireRole(deps.principalOf(request), role, appId);
    const { state } = await deps.ctx.repos.apps.load(appId);
    if (state.status !== "active") throw new NotFoundError("App not found", { param: "app_id" }, "app_not_found");
    return { ...deps.ctx, appId };
  };

  /** What a manager's write records: the app, who asked (as /v1's management routes record it) and the request. */
  const managerMeta = (request: Request, appId: string): CommandMetadata => {
    const principal = deps.principalOf(request);
    const requestId = requestIdOf(request);
    return { appId, now: Date.now(), ...(principal ? { actor: `${principal.kind}:${principal.subject}` } : {}), ...(requestId ? { requestId } : {}) };
  };

  /** The app's agents config as Mushu shows it: the LLM (never its key) and the workflows' prompts. */
  const configView = async (ctx: AppContext) => {
    const llm = await mushuLlm(ctx, ctx.appId);
    return {
      app_id: ctx.appId,
      llm: llm ? { llm_base_url: llm.base_url, llm_model: llm.model, api_key_set: true } : null,
      workflows: workflowAgents(ctx, ctx.appId).map((a) => ({ name: a.name, agent_id: a.id, prompt_overridden: a.prompt_override !== null })),
    };
  };

  const promptView = (ctx: AppContext, workflow: string, agentId: string) => {
    const row = findAgent(ctx.db, ctx.appId, agentId);
    if (!row) throw new NotFoundError("Workflow not found", { param: "name" }, "workflow_not_found");
    return {
      app_id: ctx.appId, workflow, system_prompt: row.prompt_override ?? row.system_prompt,
      is_override: row.prompt_override !== null, default_system_prompt: row.system_prompt,
    };
  };

  /** Calls a /v1 management route in process with the caller's own credential. */
  const forwarded = async (from: Request, method: string, path: string, body: unknown) => {
    const headers: Record<string, string> = { "content-type": "application/json", authorization: from.headers.get("authorization") ?? "" };
    const requestId = requestIdOf(from);
    if (requestId) headers["x-request-id"] = requestId;
    const response = await deps.forward(new Request(new URL(path, new URL(from.url).origin).href, { method, headers, body: JSON.stringify(body) }));
    const answer = (await response.json().catch(() => null)) as { error?: { code: string; message: string; details?: Record<string, unknown> } } | null;
    if (response.status >= 300) {
      throw new ForwardedRefusal(response.status, answer?.error?.code ?? "internal_error", answer?.error?.message ?? "The request failed", answer?.error?.details);
    }
  };

  return new Elysia({ name: "agentry.compat.mushu.management", prefix: MUSHU_MANAGEMENT, detail: { tags: ["Mushu (compat)"], security: [{ managementToken: [] }] } })
    .post("", async ({ body, request, set }) => {
      const ctx = await appContext(request, body.app_id, "admin");
      for (const workflow of body.workflows ?? ["food-log", "meal-plan"]) await ensureWorkflowAgent(ctx, workflow, "any", request.signal);
      set.status = 201;
      return configView(ctx);
    }, {
      body: t.Object({
        app_id: AppParam.properties.app_id,
        workflows: t.Optional(t.Array(WorkflowParams.properties.name, { maxItems: 50, description: "Workflows to set up now (default: food-log and meal-plan); others are set up on first use" })),
      }, { additionalProperties: false }),
      detail: { summary: "Create agents config for an app", description: "Sets up the app's workflow agents; app_id is an Agentry app's id. 201 with the config." },
    })
    .get("/:app_id/agents-config", async ({ params, request }) => configView(await appContext(request, params.app_id, "member")), {
      params: AppParam, detail: { summary: "Get agents config", description: "The LLM configuration (never its key) and the workflows set up so far." },
    })
    .put("/:app_id/agents-config/llm", async ({ params, body, request }) => {
      const ctx = await appContext(request, params.app_id, "admin");
      await forwarded(request, "PUT", `/v1/apps/${encodeURIComponent(params.app_id)}/connections/${MUSHU_CONNECTION}`, {
        provider: providerOf(body.llm_base_url), base_url: body.llm_base_url, default_model: body.llm_model, api_key: body.api_key,
      });
      // The workflows set up so far move to it; those set up later start on it.
      for (const agent of workflowAgents(ctx, ctx.appId)) {
        await ctx.repos.agents.handle(agent.id, {
          type: "UpdateAgent", agent_id: agent.id, patch: { model: { connection: MUSHU_CONNECTION, name: body.llm_model } },
        }, managerMeta(request, ctx.appId));
      }
      return configView(ctx);
    }, {
      params: AppParam,
      body: t.Object({
        llm_base_url: t.String({ pattern: "^https?://", maxLength: 2048 }),
        llm_model: t.String({ minLength: 1, maxLength: 200 }),
        api_key: t.String({ minLength: 1, maxLength: 4096, description: "Write-only: stored sealed, never returned" }),
      }, { additionalProperties: false }),
      detail: { summary: "Configure LLM provider + API key", description: "Stored as the app's model connection `mushu`; the key is sealed and never returned." },
    })
    .get("/:app_id/agents-config/workflows/:name/prompt", async ({ params, request }) => {
      const ctx = await appContext(request, params.app_id, "member");
      // A read sets up only a built-in workflow (showing its default prompt); another must be set up by a write.
      return promptView(ctx, params.name, await ensureWorkflowAgent(ctx, params.name, "built_in", request.signal));
    }, {
      params: WorkflowParams, detail: { summary: "Get current prompt override" },
    })
    .put("/:app_id/agents-config/workflows/:name/prompt", async ({ params, body, request }) => {
      const ctx = await appContext(request, params.app_id, "admin");
      const agentId = await ensureWorkflowAgent(ctx, params.name, "any", request.signal);
      const meta = managerMeta(request, ctx.appId);
      // Doc: "Pass an empty string or DELETE the override to revert to the built-in default."
      const r = body.system_prompt.trim() === ""
        ? await ctx.repos.agents.handle(agentId, { type: "RevertPrompt", agent_id: agentId }, meta)
        : await ctx.repos.agents.handle(agentId, { type: "OverridePrompt", agent_id: agentId, system_prompt: body.system_prompt }, meta);
      await readYourWrites(ctx, r.position, request.signal);
      return promptView(ctx, params.name, agentId);
    }, {
      params: WorkflowParams,
      body: t.Object({ system_prompt: t.String({ maxLength: 100_000 }) }, { additionalProperties: false }),
      detail: { summary: "Override system prompt for a workflow", description: "An empty string reverts to the built-in default." },
    })
    .delete("/:app_id/agents-config/workflows/:name/prompt", async ({ params, request }) => {
      const ctx = await appContext(request, params.app_id, "admin");
      const agentId = await ensureWorkflowAgent(ctx, params.name, "built_in", request.signal);
      const r = await ctx.repos.agents.handle(agentId, { type: "RevertPrompt", agent_id: agentId }, managerMeta(request, ctx.appId));
      await readYourWrites(ctx, r.position, request.signal);
      return promptView(ctx, params.name, agentId);
    }, { params: WorkflowParams, detail: { summary: "Remove prompt override (revert to default)" } });
};
