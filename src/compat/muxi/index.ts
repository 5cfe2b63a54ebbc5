/**
 * The MUXI-compatible surface, mounted at `/compat/muxi` (and again at `/compat/muxi/api/v1`, the
 * doc's versioned path): agents, chat with client-named sessions, history and memory, over our
 * agents, sessions, turns and memory. A MUXI client changes only its base URL and key (an Agentry API
 * key as `Authorization: Bearer`). The agent ids a MUXI client chooses are its app's own (agentIds.ts).
 * Choices where the doc is silent are recorded in docs/compat.md.
 */
import { Elysia } from "elysia";
import type { AppContext } from "../../app/context.ts";
import { requireAgentAllowed, requireUser } from "../../app/access.ts";
import { getAgent } from "../../app/agentReads.ts";
import { defaultAgentIdOf } from "../../app/defaultAgent.ts";
import { memoryServiceOf } from "../../app/memory.ts";
import { visibleJobState } from "../../app/jobReads.ts";
import { cancelJob, replySummary } from "../../app/turns.ts";
import { ConflictError, ForbiddenError, NotFoundError, TimeoutError, ValidationError, AppError } from "../../core/errors.ts";
import { newResourceId } from "../../core/ids.ts";
import type { AgentSpec } from "../../domain/agent/agent.ts";
import { checkMemoryEntry, type MemoryAdded } from "../../domain/memory/memory.ts";
import { DEFAULT_AGENT_ID } from "../../domain/streams.ts";
import { requestIdOf } from "../../http/requestGuard.ts";
import { afterWrite, metaOf } from "../../http/routes/v1/common.ts";
import { acceptMessage } from "../../http/routes/v1/sessions/service.ts";
import { TERMINAL } from "../../domain/job/job.ts";
import { jobStream } from "../../domain/streams.ts";
import type { CommandMetadata } from "../../app/repository.ts";
import { findAgent, listAgents, type AgentRow } from "../../../projections/agents/index.ts";
import { clientAgentId, ourAgentId, resolveAgentId } from "./agentIds.ts";
import { tokenize } from "../../../projections/memory/index.ts";
import type { MessageRow } from "../../../projections/messages/index.ts";
import { getSession } from "../../../projections/sessions/index.ts";
import { admitCompat, type CompatAccess } from "../shared/compatAccess.ts";
import { clientSessionId, sessionForClientId } from "../shared/clientSessions.ts";
import {
  MUXI_PREFIX, MuxiAgentBody, MuxiChatBody, MuxiError, MuxiHistoryQuery, MuxiMemoryBody, MuxiMemoryQuery, MuxiPageQuery,
  muxiAgent, muxiAgentSummary, muxiError, muxiHistoryMessage, muxiMemory, muxiPagination, muxiTime,
} from "./wire.ts";

export interface MuxiDeps extends CompatAccess {
  ctx: AppContext;
  /** How long `POST /chat` waits for the agent before 504 (the turn is then cancelled). */
  timeoutMs: number;
}

/** 502: the turn ended without a reply (the model or a tool failed, or it was cancelled). */
class AgentError extends AppError {
  readonly status = 502;
  constructor(message: string) {
    super("agent_error", message);
  }
}

/** The most a list reads to count its total (`pagination.total`). */
const MAX_LISTED = 10_000;

/**
 * Where a history page ends: before a message (its position in the session, which no two messages
 * share), or before a moment (the doc's timestamp: messages strictly earlier, so two that share a
 * millisecond cannot be told apart by it — the message id pages exactly). 400 when it is neither.
 */
type HistoryBound = { seq: number } | { ms: number } | null;

function historyBound(ctx: AppContext, sessionId: string | null, before: string | undefined): HistoryBound {
  if (before === undefined) return null;
  const message = sessionId === null ? null
    : ctx.db.query("SELECT seq FROM messages WHERE session_id = ? AND id = ?").get(sessionId, before) as { seq: number } | null;
  if (message) return { seq: message.seq };
  const ms = Date.parse(before);
  if (Number.isNaN(ms)) {
    throw new ValidationError("before must be the id of a message of this history, or a timestamp (ISO 8601, e.g. 2023-09-21T14:32:01Z)", { param: "before" });
  }
  return { ms };
}

/** The history's messages before `bound`, newest `limit` of them, oldest first; one more tells has_more. */
function historyBefore(ctx: AppContext, sessionId: string, limit: number, bound: HistoryBound): MessageRow[] {
  const rows = (bound === null
    ? ctx.db.query("SELECT * FROM messages WHERE session_id = ? ORDER BY seq DESC LIMIT ?").all(sessionId, limit)
    : "seq" in bound
      ? ctx.db.query("SELECT * FROM messages WHERE session_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?").all(sessionId, bound.seq, limit)
      : ctx.db.query("SELECT * FROM messages WHERE session_id = ? AND created_at < ? ORDER BY seq DESC LIMIT ?").all(sessionId, bound.ms, limit)) as MessageRow[];
  return rows.reverse();
}

/**
 * The agent a MUXI path names, in the caller's app (see agentIds.ts): our id for it and its row. 404
 * (naming the client's id, not ours) when the app has none; 403 when the credential may not use it.
 */
function requireAgent(ctx: AppContext, clientId: string): { id: string; row: AgentRow } {
  const id = resolveAgentId(ctx.appId, clientId, (candidate) => findAgent(ctx.db, ctx.appId, candidate) !== null);
  try {
    return { id, row: getAgent(ctx.db, ctx.appId, id, ctx.allowedAgents) };
  } catch (err) {
    if (err instanceof NotFoundError) throw new NotFoundError(`Agent ${clientId} not found`, { param: "agent_id" }, "agent_not_found");
    throw err;
  }
}

/**
 * Waits (bounded) until the job ends or stops for an approval a MUXI client cannot give; returns the
 * status then, or null on timeout. An ended turn is settled first, so the history shows it at once.
 */
async function waitForReplyOrApproval(ctx: AppContext, jobId: string, timeoutMs: number, signal: AbortSignal, meta: CommandMetadata): Promise<string | null> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const remaining = deadline - Date.now();
    const waiter = ctx.live.waiter(jobStream(jobId), Math.max(1, remaining), ctx.closing ? AbortSignal.any([signal, ctx.closing]) : signal);
    const state = await ctx.repos.jobs.peek(jobId);
    const status = state.state.status;
    if (TERMINAL.has(status as never)) {
      waiter.cancel();
      await ctx.turns.turnSettled(jobId, meta, signal).catch(() => false);
      return status;
    }
    if (status === "awaiting_approval") {
      waiter.cancel();
      return status;
    }
    if (remaining <= 0 || signal.aborted || ctx.closing?.aborted) {
      waiter.cancel();
      return null;
    }
    await waiter.promise;
  }
}

/**
 * The routes, under `prefix`. Each handler admits the caller, then answers in the doc's shapes; every
 * error (ours or a service's) leaves in the doc's envelope (wire.ts `muxiError`).
 */
const routesAt = (deps: MuxiDeps, prefix: string, hide: boolean) => {
  const handle = <T>(fn: (ctx: AppContext, request: Request, set: { status?: number | string; headers: Record<string, string | number> }) => Promise<T>) =>
    async ({ request, set }: { request: Request; set: { status?: number | string; headers: Record<string, string | number> } }) => {
      try {
        const ctx = await admitCompat(deps.ctx, deps, request, set.headers);
        return await fn(ctx, request, set);
      } catch (err) {
        const { status, body } = muxiError(err, requestIdOf(request) ?? undefined);
        set.status = status;
        if (status >= 500 && status !== 502 && status !== 504) deps.ctx.logger.warn("muxi request failed", { error: err as Error });
        return body;
      }
    };
  const doc = (summary: string, description?: string) => ({ detail: { summary, ...(description ? { description } : {}), ...(hide ? { hide: true } : {}) } });
  return new Elysia({ name: `agentry.compat.muxi${prefix}`, prefix: `${MUXI_PREFIX}${prefix}`, detail: { tags: ["MUXI (compat)"] } })
    .model({ MuxiError })
    .get("/agents", (c) => handle(async (ctx) => {
      const limit = c.query.limit ?? 50;
      const offset = c.query.offset ?? 0;
      const all = listAgents(ctx.db, ctx.appId, MAX_LISTED, undefined, ctx.allowedAgents);
      return { agents: all.slice(offset, offset + limit).map((r) => muxiAgentSummary(r, clientAgentId(ctx.appId, r.id))), pagination: muxiPagination(all.length, limit, offset) };
    })(c), { query: MuxiPageQuery, ...doc("List all available agents", "Newest first; `limit` (default 50, max 100) and `offset` page through them.") })
    .post("/agents", (c) => handle(async (ctx, request, set) => {
      const body = c.body;
      // Agents are ours: a key limited to some agents cannot add others.
      if (ctx.allowedAgents) throw new ForbiddenError("This credential may only use its own agents", "agent_not_allowed");
      const provider = body.model?.provider ?? null;
      if (provider && !ctx.providers.has(provider)) {
        throw new ValidationError(`Model provider "${provider}" is not configured on this server; available: ${[...ctx.providers.keys()].join(", ")}`, { param: "model.provider" });
      }
      // The client's id names the agent in this app only (agentIds.ts): another app's `support` is another
      // agent. Taken when this app has an agent by that name already, MUXI's or one of ours by its own id.
      const id = ourAgentId(ctx.appId, body.id);
      const existing = await ctx.repos.agents.load(id);
      if (existing.state.status !== "none" || findAgent(ctx.db, ctx.appId, body.id)) {
        throw new ConflictError("agent_exists", `An agent with id ${body.id} already exists`, { param: "id" });
      }
      const spec: AgentSpec = {
        name: body.name, description: body.description ?? "", system_prompt: "You are a helpful assistant.",
        model: { provider, name: body.model?.name ?? null, parameters: body.model?.parameters ?? {} },
        // A MUXI client has no way to approve a plan: its agents act without asking.
        tools: [], approval: "never", output_schema: null,
      };
      const r = await ctx.repos.agents.handle(id, { type: "CreateAgent", agent_id: id, spec }, metaOf(ctx, request));
      await afterWrite(ctx, { set, request }, r.position);
      set.status = 201;
      return { id: body.id, name: body.name, description: spec.description, status: "created" };
    })(c), { body: MuxiAgentBody, ...doc("Create a new agent", "`id` is chosen by the client and names the agent in the caller's app (through /v1 it is `mx.<app tag>.<id>`). 409 invalid_request when the app has that id already.") })
    .get("/agents/:agent_id", (c) => handle(async (ctx) => {
      return muxiAgent(requireAgent(ctx, c.params.agent_id).row, c.params.agent_id, ctx.defaultProvider);
    })(c),
      doc("Get details about a specific agent"))
    .delete("/agents/:agent_id", (c) => handle(async (ctx, request, set) => {
      const { id } = requireAgent(ctx, c.params.agent_id);
      if (id === DEFAULT_AGENT_ID || id === defaultAgentIdOf(ctx.appId)) throw new ConflictError("default_agent", "The default agent cannot be deleted", { param: "agent_id" });
      const r = await ctx.repos.agents.handle(id, { type: "DeleteAgent", agent_id: id }, metaOf(ctx, request));
      await afterWrite(ctx, { set, request }, r.position);
      return { status: "deleted", id: c.params.agent_id };
    })(c), doc("Delete a specific agent"))
    .post("/chat/:agent_id", (c) => handle(async (ctx, request, set) => {
      const agentId = requireAgent(ctx, c.params.agent_id).id;
      const body = c.body;
      requireAgentAllowed(ctx, agentId);
      requireUser(ctx, body.user_id);
      const meta = metaOf(ctx, request, body.user_id);
      // No session_id: a new conversation, whose generated id the answer carries.
      const clientId = body.session_id ?? `session-${crypto.randomUUID()}`;
      const { row } = await sessionForClientId(ctx, { surface: "muxi", clientId, agentId, userId: body.user_id }, meta, request.signal);
      // A session belongs to one agent (as ours do): the same session id with another agent is refused, not forked.
      if (row.agent_id !== agentId) throw new ValidationError(`Session ${clientId} belongs to agent ${clientAgentId(ctx.appId, row.agent_id)}`, { param: "session_id" });
      const ids = { message_id: newResourceId("msg"), job_id: newResourceId("job") };
      // The doc has no busy answer: a message sent while the session's turn runs waits its turn.
      const accepted = await acceptMessage(ctx, request, row, {
        content: body.message, attachments: [], model: null, context: body.context ?? null, multitask: "enqueue",
      }, ids);
      await afterWrite(ctx, { set, request }, accepted.position);
      const jobId = accepted.job_id;
      const ended = await waitForReplyOrApproval(ctx, jobId, deps.timeoutMs, request.signal, meta);
      if (ended === null) {
        // The turn is stopped rather than left running into a conversation the client believes failed.
        if (!request.signal.aborted) await cancelJob(ctx, jobId, "timeout", meta).catch(() => undefined);
        throw new TimeoutError(`The agent did not respond within ${Math.round(deps.timeoutMs / 1000)} s`);
      }
      const state = await visibleJobState(ctx, jobId);
      if (state.status === "awaiting_approval") {
        // MUXI has no approvals: the answer says what waits, and its job id is the one /v1 approves
        // (POST /v1/jobs/{job_id}/approve); the reply then comes into this session's history.
        const plan = state.plan;
        return {
          id: `${ids.message_id}_reply`, content: `The agent proposed a plan that needs approval${plan ? `: ${plan.title}` : ""}.`,
          timestamp: muxiTime(Date.now()), agent_id: c.params.agent_id, session_id: clientId, status: "awaiting_approval", job_id: jobId,
        };
      }
      if (state.status !== "completed") throw new AgentError(state.error?.message ?? `The agent's turn ended ${state.status}`);
      const reply = await replySummary(ctx, jobId);
      return { id: `${ids.message_id}_reply`, content: reply.content, timestamp: muxiTime(Date.now()), agent_id: c.params.agent_id, session_id: clientId };
    })(c), { body: MuxiChatBody, ...doc("Send a message to an agent", "Waits for the reply. `session_id` names the conversation (per user), created on first use.") })
    .get("/chat/:agent_id/history", (c) => handle(async (ctx) => {
      const agentId = requireAgent(ctx, c.params.agent_id).id;
      const q = c.query;
      requireUser(ctx, q.user_id);
      const session = getSession(ctx.db, ctx.appId, clientSessionId("muxi", ctx.appId, q.user_id, q.session_id));
      const bound = historyBound(ctx, session?.id ?? null, q.before);
      // A session not started yet (or another agent's) has no messages with this agent.
      if (!session || session.agent_id !== agentId) return { messages: [], has_more: false };
      const limit = q.limit ?? 50;
      const rows = historyBefore(ctx, session.id, limit + 1, bound);
      const hasMore = rows.length > limit;
      return { messages: (hasMore ? rows.slice(1) : rows).map(muxiHistoryMessage), has_more: hasMore };
    })(c), { query: MuxiHistoryQuery, ...doc("Get chat history for a specific agent and user session",
      "Oldest first: the newest `limit` messages (before `before`: a message id of this history, exact; or a timestamp, strictly earlier). has_more: older ones remain; the first message's id is the next page's `before`.") })
    .get("/memory/:agent_id", (c) => handle(async (ctx) => {
      const agentId = requireAgent(ctx, c.params.agent_id).id;
      const q = c.query;
      requireUser(ctx, q.user_id);
      if (tokenize(q.query).length === 0) throw new ValidationError("query has no words to search for", { param: "query" });
      // What the agent recalls: its own entries for the user and the user's shared ones.
      const r = await memoryServiceOf(ctx).search({ appId: ctx.appId, userId: q.user_id, scope: { kind: "recall", agentId }, query: q.query, limit: q.limit ?? 10 });
      return { memories: r.hits.map((h) => muxiMemory(h.row, h.score)) };
    })(c), { query: MuxiMemoryQuery, ...doc("Query an agent's memory", "Best first, with relevance_score 0–1.") })
    .post("/memory/:agent_id", (c) => handle(async (ctx, request, set) => {
      const agentId = requireAgent(ctx, c.params.agent_id).id;
      const body = c.body;
      requireUser(ctx, body.user_id);
      checkMemoryEntry(body.content, body.metadata);
      const entry: MemoryAdded = {
        memory_id: newResourceId("mem"), app_id: ctx.appId, user_id: body.user_id, agent_id: agentId, content: body.content,
        metadata: body.metadata ?? {}, source: "api", job_id: null,
      };
      const meta = metaOf(ctx, request, body.user_id);
      const r = await ctx.repos.memory.handle(entry.memory_id, { type: "AddMemory", entry }, meta);
      await afterWrite(ctx, { set, request }, r.position);
      memoryServiceOf(ctx).nudge();
      set.status = 201;
      return { id: entry.memory_id, status: "created", created_at: muxiTime(meta.now ?? Date.now()) };
    })(c), { body: MuxiMemoryBody, ...doc("Add a memory for an agent") });
};

/** Both mounts: the doc's paths, and the same under its versioned `/api/v1` (hidden from the OpenAPI document). */
export const muxiRoutes = (deps: MuxiDeps) => new Elysia({ name: "agentry.compat.muxi" }).use(routesAt(deps, "", false)).use(routesAt(deps, "/api/v1", true));
