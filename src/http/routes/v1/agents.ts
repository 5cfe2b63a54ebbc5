/** /v1/agents: create, list, read, update and delete agents. */
import { Elysia, t, type Static } from "elysia";
import type { AppContext } from "../../../app/context.ts";
import { ConflictError, NotFoundError, ValidationError } from "../../../core/errors.ts";
import { newResourceId } from "../../../core/ids.ts";
import { applyAgentPatch, DEFAULT_AGENT_MEMORY, effectivePrompt, type AgentMemory, type AgentPatch, type AgentSpec, type ToolDeclaration } from "../../../domain/agent/agent.ts";
import { DEFAULT_AGENT_ID } from "../../../domain/streams.ts";
import { defaultAgentIdOf } from "../../../app/defaultAgent.ts";
import { baseAppId } from "../../../app/access.ts";
import { connectionOf, type Connection } from "../../../domain/app/app.ts";
import { MIN_CONTEXT_TOKENS } from "../../../jobs/runner/contextWindow.ts";
import { requireValidSchema } from "../../../core/jsonSchema.ts";
import { BUILTIN_TOOLS } from "../../../tools/registry.ts";
import { decodeCursor, page, PageQuery } from "../../pagination.ts";
import { callerContext, afterWrite, create, IdParam, iso, metaOf, parseJson, type HttpExchange, type V1Deps } from "./common.ts";
import { v1Models, type AgentTool } from "./models.ts";
import { getAgent } from "../../../app/agentReads.ts";
import { findAgent, listAgents, type AgentRow } from "../../../../projections/agents/index.ts";
import { hasPlainHeaders, maskTools, resolveKeptHeaders, sealStoredHeaders, sealToolHeaders, withStoredHeadersSealed } from "../../../app/agentSecrets.ts";

const Model = t.Object({
  provider: t.Optional(t.Union([t.String({ minLength: 1, maxLength: 50 }), t.Null()])),
  name: t.Optional(t.Union([t.String({ minLength: 1, maxLength: 200 }), t.Null()])),
  parameters: t.Optional(t.Record(t.String(), t.Unknown())),
  connection: t.Optional(t.Union([t.String({ minLength: 1, maxLength: 63, description: "One of the app's model connections" }), t.Null()])),
});

const Tool = t.Union([
  t.Object({ type: t.Literal("builtin"), name: t.String({ minLength: 1, maxLength: 64 }), requires_approval: t.Optional(t.Boolean()) }),
  t.Object({
    type: t.Literal("http"),
    name: t.String({ minLength: 1, maxLength: 64, pattern: "^[a-zA-Z_][a-zA-Z0-9_-]*$" }),
    description: t.String({ maxLength: 2000 }),
    url: t.String({ pattern: "^https?://", maxLength: 2048 }),
    parameters: t.Optional(t.Record(t.String(), t.Unknown())),
    headers: t.Optional(t.Record(t.String(), t.Union([
      t.String({ maxLength: 8192 }),
      t.Object({ keep: t.Literal(true) }),
      t.Object({ has_secret: t.Literal(true), last4: t.Optional(t.Union([t.String(), t.Null()])) }),
    ]), {
      description: "Sent with every call of the tool. Values are secrets: stored sealed, never shown again (answers show `{has_secret, last4}`). " +
        "To keep a stored value when re-sending tools, give `{\"keep\": true}` or the `{has_secret, last4}` shown, under the same tool and header name.",
    })),
    timeout_ms: t.Optional(t.Integer({ minimum: 100, maximum: 120_000 })),
    requires_approval: t.Optional(t.Boolean()),
    estimated_credits: t.Optional(t.Number({ minimum: 0 })),
  }),
]);

const Approval = t.Union([t.Literal("never"), t.Literal("always"), t.Literal("tools")]);

const AgentFields = {
  name: t.String({ minLength: 1, maxLength: 200 }),
  description: t.Optional(t.String({ maxLength: 2000 })),
  system_prompt: t.Optional(t.String({ maxLength: 100_000 })),
  model: t.Optional(Model),
  tools: t.Optional(t.Array(Tool, { maxItems: 64 })),
  approval: t.Optional(Approval),
  output_schema: t.Optional(t.Union([t.Record(t.String(), t.Unknown()), t.Null()])),
  billing: t.Optional(t.Union([t.Literal("app"), t.Literal("end_user")], {
    description: "Who pays for the model calls: the app (default), or each session's end user with the credential they connected " +
      "(PUT /v1/users/{user_id}/credentials/{provider}); a turn without one fails with credential_required.",
  })),
  memory: t.Optional(t.Object({
    enabled: t.Optional(t.Boolean({ description: "On create, true when memory is given" })),
    recall_limit: t.Optional(t.Integer({ minimum: 1, maximum: 20, description: "Entries recalled into each turn, best first (default 5)" })),
  }, {
    additionalProperties: false,
    description: "Memory: each turn recalls the session user's most relevant memory entries into the context (and cites them), " +
      "and the agent gets the remember and recall tools. PATCH merges field by field.",
  })),
};

/** The tools as answers show them: header values masked (see src/app/agentSecrets.ts). */
const toolsView = async (ctx: AppContext, tools: ReadonlyArray<Record<string, unknown>>) =>
  (await maskTools(ctx.secrets, ctx.appId, tools, ctx.logger)) as Array<Static<typeof AgentTool>>;

/** The agent as answers show it: the prompt it runs with (an override wins; see agentPrompt.ts). */
const view = async (ctx: AppContext, r: AgentRow) => ({
  id: r.id, object: "agent" as const, name: r.name, description: r.description,
  system_prompt: r.prompt_override ?? r.system_prompt, prompt_overridden: r.prompt_override !== null,
  model: JSON.parse(r.model) as AgentSpec["model"], tools: await toolsView(ctx, JSON.parse(r.tools)), approval: r.approval,
  output_schema: parseJson<Record<string, unknown>>(r.output_schema), billing: r.billing ?? "app",
  memory: parseJson<AgentMemory>(r.memory) ?? DEFAULT_AGENT_MEMORY,
  created_at: iso(r.created_at)!, updated_at: iso(r.updated_at)!,
});

/** Checks what the schema cannot: tool names exist and are unique, the provider is served here, output schemas compile. */
function checkSpec(ctx: AppContext, spec: Partial<AgentSpec>, connections: Readonly<Record<string, Connection>>): void {
  const names = new Set<string>();
  for (const tool of spec.tools ?? []) {
    if (tool.type === "builtin" && !BUILTIN_TOOLS[tool.name]) {
      throw new ValidationError(`Unknown built-in tool ${tool.name}; available: ${Object.keys(BUILTIN_TOOLS).join(", ")}`, { param: "tools" });
    }
    if (names.has(tool.name)) throw new ValidationError(`Two tools are named ${tool.name}`, { param: "tools" });
    names.add(tool.name);
  }
  const connection = spec.model?.connection;
  if (connection && !connectionOf(connections, connection)) {
    throw new ValidationError(`The app has no model connection "${connection}"; available: ${Object.keys(connections).join(", ") || "none"}`, { param: "model.connection" });
  }
  const provider = spec.model?.provider;
  // A connection names its provider: another one beside it would be ignored, so it is refused.
  if (provider && connection && provider !== connectionOf(connections, connection)!.provider) {
    throw new ValidationError(`model.provider "${provider}" is not the provider of connection "${connection}" (${connectionOf(connections, connection)!.provider}); leave it out`, { param: "model.provider" });
  }
  if (provider && !connection && !ctx.providers.has(provider)) {
    throw new ValidationError(`Model provider "${provider}" is not configured on this server; available: ${[...ctx.providers.keys()].join(", ")}`, { param: "model.provider" });
  }
  const parameters = spec.model?.parameters ?? {};
  if (parameters.context_tokens !== undefined && !(Number.isInteger(parameters.context_tokens) && (parameters.context_tokens as number) >= MIN_CONTEXT_TOKENS)) {
    throw new ValidationError(`model.parameters.context_tokens must be an integer of at least ${MIN_CONTEXT_TOKENS}`, { param: "model.parameters.context_tokens" });
  }
  if (parameters.context_strategy !== undefined && parameters.context_strategy !== "summarize" && parameters.context_strategy !== "drop") {
    throw new ValidationError('model.parameters.context_strategy must be "summarize" or "drop"', { param: "model.parameters.context_strategy" });
  }
  if (spec.output_schema) requireValidSchema(spec.output_schema);
  // End users connect an OpenAI, Anthropic or compatible account; the sandbox has none to connect.
  if (spec.billing === "end_user" && !connection && (provider ?? ctx.defaultProvider) === "sandbox") {
    throw new ValidationError("An agent billed to its end users needs a model connection (model.connection) or the server's openai or anthropic provider", { param: "billing" });
  }
}

/** The model connections of the caller's app (a test key's partition uses its app's). */
async function appConnections(ctx: AppContext): Promise<Readonly<Record<string, Connection>>> {
  return (await ctx.repos.apps.peek(baseAppId(ctx.appId))).state.connections;
}

const normaliseTools = (tools: Array<Record<string, unknown>> | undefined): ToolDeclaration[] | undefined =>
  tools?.map((tool) => (tool.type === "http" ? { parameters: { type: "object" }, ...tool } : tool) as ToolDeclaration);

/**
 * The agent as the response shows it: from the read model once it has the write; while it lags, from
 * the agent's own events (timestamps from the read model when it has the agent, else now).
 */
async function agentAfterWrite(ctx: AppContext, http: HttpExchange, id: string, position: bigint | null) {
  const fresh = await afterWrite(ctx, http, position);
  const row = findAgent(ctx.db, ctx.appId, id);
  if (fresh && row) return view(ctx, row);
  const { state, appId } = await ctx.repos.agents.load(id);
  if (state.status !== "active" || !state.spec || appId !== ctx.appId) throw new NotFoundError(`Agent ${id} not found`, { param: "agent_id" }, "agent_not_found");
  const now = new Date().toISOString();
  return {
    id, object: "agent" as const, ...state.spec, system_prompt: effectivePrompt(state), prompt_overridden: state.promptOverride !== null, billing: state.spec.billing ?? "app", memory: state.spec.memory ?? DEFAULT_AGENT_MEMORY, tools: await toolsView(ctx, state.spec.tools as unknown as Array<Record<string, unknown>>), created_at: row ? iso(row.created_at)! : now, updated_at: now,
  };
}

export const agentRoutes = (deps: V1Deps) =>
  new Elysia({ name: "agentry.v1.agents", prefix: "/v1/agents", detail: { tags: ["Agents"] } })
    .use(v1Models)
    .use(callerContext(deps))
    .post("", ({ ctx, body, request, set }) => create(ctx, request, body, set, { agent: "agt" }, async ({ ids, resumed }) => {
      const spec: AgentSpec = {
        name: body.name, description: body.description ?? "", system_prompt: body.system_prompt ?? "You are a helpful assistant.",
        model: {
          provider: body.model?.provider ?? null, name: body.model?.name ?? null, parameters: body.model?.parameters ?? {},
          ...(body.model?.connection ? { connection: body.model.connection } : {}),
        },
        tools: normaliseTools(body.tools) ?? [], approval: body.approval ?? "tools", output_schema: body.output_schema ?? null,
        ...(body.billing ? { billing: body.billing } : {}),
        ...(body.memory ? { memory: { enabled: body.memory.enabled ?? true, recall_limit: body.memory.recall_limit ?? DEFAULT_AGENT_MEMORY.recall_limit } } : {}),
      };
      checkSpec(ctx, spec, await appConnections(ctx));
      // Header values sealed before the command is decided; a new agent has no value to keep.
      spec.tools = resolveKeptHeaders(await sealToolHeaders(ctx.secrets, ctx.appId, spec.tools), [], new Map());
      const id = ids.agent!;
      // A retry taking over this request finds the agent its first execution created.
      const exists = resumed && (await ctx.repos.agents.load(id)).state.status !== "none";
      const position = exists ? null : (await ctx.repos.agents.handle(id, { type: "CreateAgent", agent_id: id, spec }, metaOf(ctx, request))).position;
      return { status: 201, body: await agentAfterWrite(ctx, { set, request }, id, position) };
    }), { body: t.Object(AgentFields), response: { 201: "Agent" }, detail: { summary: "Create an agent" } })
    .get("", async ({ ctx, query }) => {
      const limit = query.limit ?? 20;
      const after = decodeCursor(query.cursor, { seq: "integer" });
      const shown = page(listAgents(ctx.db, ctx.appId, limit + 1, after?.seq, ctx.allowedAgents), limit, (r) => r, (r) => ({ seq: r.seq }));
      return { ...shown, data: await Promise.all(shown.data.map((r) => view(ctx, r))) };
    }, { query: t.Object(PageQuery), response: "AgentList", detail: { summary: "List agents, newest first" } })
    .get("/:agent_id", ({ ctx, params }) => view(ctx, getAgent(ctx.db, ctx.appId, params.agent_id, ctx.allowedAgents)), {
      params: IdParam("agent_id"), response: "Agent", detail: { summary: "Get an agent" },
    })
    .patch("/:agent_id", async ({ ctx, params, body, request, set }) => {
      getAgent(ctx.db, ctx.appId, params.agent_id, ctx.allowedAgents);
      const patch: AgentPatch = {};
      for (const key of ["name", "description", "system_prompt", "approval", "output_schema", "billing", "memory"] as const) {
        if (body[key] !== undefined) (patch as Record<string, unknown>)[key] = body[key];
      }
      if (body.model) patch.model = body.model;
      // New header values are sealed now; kept ones are taken from the state the update is decided on.
      const tools = body.tools ? await sealToolHeaders(ctx.secrets, ctx.appId, normaliseTools(body.tools)!) : undefined;
      if (Object.keys(patch).length === 0 && !tools) throw new ValidationError("Nothing to update", { param: "body" });
      // Values stored before sealing (plain) are sealed by this write, whatever it changes.
      const stored = (await ctx.repos.agents.load(params.agent_id)).state.spec?.tools ?? [];
      const sealedPlain = await sealStoredHeaders(ctx.secrets, ctx.appId, stored);
      const connections = await appConnections(ctx);
      const r = await ctx.repos.agents.handle(params.agent_id, (state) => {
        const current = state.spec?.tools ?? [];
        const decided: AgentPatch = { ...patch };
        if (tools) decided.tools = resolveKeptHeaders(tools, current, sealedPlain);
        else if (hasPlainHeaders(current)) decided.tools = withStoredHeadersSealed(current, sealedPlain);
        // Checked against the merged spec, on the state the update is decided on.
        if (state.spec) checkSpec(ctx, applyAgentPatch(state.spec, decided), connections);
        return { type: "UpdateAgent", agent_id: params.agent_id, patch: decided };
      }, metaOf(ctx, request));
      return agentAfterWrite(ctx, { set, request }, params.agent_id, r.position);
    }, {
      params: IdParam("agent_id"), body: t.Partial(t.Object(AgentFields)), response: "Agent",
      detail: { summary: "Update an agent", description: "Merges at every level: fields left out keep their value; model merges field by field and model.parameters key by key (null removes a parameter); tools and output_schema are replaced whole. Tool header values are never shown: to keep a stored one when re-sending tools, give `{\"keep\": true}` or the `{has_secret, last4}` shown for it, under the same tool and header name." },
    })
    .delete("/:agent_id", async ({ ctx, params, request, set }) => {
      // An app's default agent answers every request that names none: it stays (edit it instead).
      if (params.agent_id === DEFAULT_AGENT_ID || params.agent_id === defaultAgentIdOf(ctx.appId)) {
        throw new ConflictError("default_agent", "The default agent cannot be deleted");
      }
      getAgent(ctx.db, ctx.appId, params.agent_id, ctx.allowedAgents);
      const r = await ctx.repos.agents.handle(params.agent_id, { type: "DeleteAgent", agent_id: params.agent_id }, metaOf(ctx, request));
      await afterWrite(ctx, { set, request }, r.position);
      return { id: params.agent_id, object: "agent" as const, deleted: true as const };
    }, { params: IdParam("agent_id"), response: "AgentDeleted", detail: { summary: "Delete an agent" } });

