/**
 * /v1/memory: what an app remembers about its end users (MUXI's memory add and query). An entry
 * belongs to the caller's data partition (its app, or its test data), to a user, and optionally to one
 * of the app's agents. A query ranks the user's entries by relevance (BM25 over an FTS5 index, hybrid
 * with embeddings when the app has an embeddings model: see src/app/memory.ts); without one, newest
 * first. An end user's token acts for its own user only; a key limited to some agents sees and
 * changes only those agents' entries.
 */
import { Elysia, t } from "elysia";
import { requireAgentAllowed, requireUser } from "../../../app/access.ts";
import type { AppContext } from "../../../app/context.ts";
import { memoryServiceOf, type MemorySearch } from "../../../app/memory.ts";
import { getAgent } from "../../../app/agentReads.ts";
import { ForbiddenError, NotFoundError, ValidationError } from "../../../core/errors.ts";
import { checkMemoryEntry, MAX_MEMORY_CHARS, MAX_MEMORY_METADATA_BYTES, type MemoryAdded } from "../../../domain/memory/memory.ts";
import type { AgentScope, MemoryRow } from "../../../../projections/memory/index.ts";
import { tokenize } from "../../../../projections/memory/index.ts";
import { decodeCursor, encodeCursor } from "../../pagination.ts";
import { afterWrite, callerContext, create, IdParam, iso, metaOf, type V1Deps } from "./common.ts";
import { v1Models } from "./models.ts";

export const MAX_QUERY_CHARS = 1_000;

const Memory = t.Object({
  id: t.String(), object: t.Literal("memory"), user_id: t.String(),
  agent_id: t.Union([t.String(), t.Null()], { description: "The agent it is kept for; null: every agent of the app recalls it" }),
  content: t.String(), metadata: t.Record(t.String(), t.Unknown()),
  source: t.Union([t.Literal("api"), t.Literal("agent")], { description: "api: added through this API; agent: by an agent's remember tool" }),
  job_id: t.Union([t.String(), t.Null()], { description: "For source agent: the job whose agent remembered it" }),
  created_at: t.String(),
  relevance_score: t.Union([t.Number({ minimum: 0, maximum: 1 }), t.Null()], {
    description: "How well it matches the query, 0–1 (higher is better; see the API guide for how it is computed); null without a query",
  }),
});

const MemoryList = t.Object({
  data: t.Array(Memory), has_more: t.Boolean(), next_cursor: t.Union([t.String(), t.Null()]),
  ranking: t.Union([t.Literal("recency"), t.Literal("bm25"), t.Literal("hybrid")], {
    description: "recency: no query, newest first; bm25: by BM25 over the words; hybrid: BM25 combined with embeddings' cosine similarity",
  }),
});

const MemoryDeleted = t.Object({ id: t.String(), object: t.Literal("memory"), deleted: t.Literal(true) });

const UserId = t.String({ minLength: 1, maxLength: 200 });
const AgentId = t.String({ minLength: 1, maxLength: 100, pattern: "^[A-Za-z0-9_.-]+$" });

const AddBody = t.Object({
  user_id: t.Optional(t.String({ minLength: 1, maxLength: 200, description: "Whose memory: required with a server key; an end user's token writes its own" })),
  agent_id: t.Optional(AgentId),
  content: t.String({ minLength: 1, maxLength: MAX_MEMORY_CHARS, description: `What to remember (1–${MAX_MEMORY_CHARS} characters, not blank)` }),
  metadata: t.Optional(t.Record(t.String({ maxLength: 100 }), t.Unknown(), { description: `Your own JSON, at most ${MAX_MEMORY_METADATA_BYTES} bytes` })),
}, { additionalProperties: false });

const ListQuery = t.Object({
  user_id: t.Optional(UserId),
  agent_id: t.Optional(AgentId),
  query: t.Optional(t.String({ minLength: 1, maxLength: MAX_QUERY_CHARS, description: "Rank by relevance to this text; without it, newest first" })),
  limit: t.Optional(t.Integer({ minimum: 1, maximum: 100, default: 10, description: "Page size (1–100, default 10)" })),
  cursor: t.Optional(t.String({ maxLength: 512, description: "next_cursor from the previous page (of the same query)" })),
});

export type MemoryView = typeof Memory.static;

export function memoryView(r: MemoryRow, score: number | null): MemoryView {
  return {
    id: r.id, object: "memory", user_id: r.user_id, agent_id: r.agent_id, content: r.content,
    metadata: JSON.parse(r.metadata) as Record<string, unknown>, source: r.source as "api" | "agent", job_id: r.job_id,
    created_at: iso(r.created_at)!, relevance_score: score,
  };
}

const viewOfAdded = (d: MemoryAdded, at: number): MemoryView => ({
  id: d.memory_id, object: "memory", user_id: d.user_id, agent_id: d.agent_id, content: d.content, metadata: d.metadata,
  source: d.source, job_id: d.job_id, created_at: iso(at)!, relevance_score: null,
});

/** Which of the user's entries the caller may see: its agent's, its allowed agents', or all. */
function readScope(ctx: AppContext, agentId: string | undefined): AgentScope {
  if (agentId !== undefined) {
    requireAgentAllowed(ctx, agentId);
    return { kind: "only", agentIds: [agentId] };
  }
  return ctx.allowedAgents ? { kind: "only", agentIds: ctx.allowedAgents } : { kind: "all" };
}

/** A ranked page's cursor names the search it belongs to, so it is refused for another. */
const searchKey = (userId: string, query: string, scope: AgentScope) =>
  (Bun.SHA256.hash(JSON.stringify([userId, query, scope]), "hex") as string).slice(0, 16);

export const memoryRoutes = (deps: V1Deps) =>
  new Elysia({ name: "agentry.v1.memory", prefix: "/v1/memory", detail: { tags: ["Memory"] } })
    .use(v1Models)
    .use(callerContext(deps))
    .model({ Memory, MemoryList, MemoryDeleted })
    .post("", ({ ctx, body, request, set }) => create(ctx, request, body, set, { memory: "mem" }, async ({ ids, resumed }) => {
      const userId = body.user_id ?? ctx.actingUser ?? undefined;
      if (userId === undefined) throw new ValidationError("user_id is required: whose memory this is", { param: "user_id" });
      requireUser(ctx, userId);
      checkMemoryEntry(body.content, body.metadata);
      if (body.agent_id !== undefined) getAgent(ctx.db, ctx.appId, body.agent_id, ctx.allowedAgents);
      // A key limited to some agents keeps memories for them only (it could not read one kept for all).
      else if (ctx.allowedAgents) throw new ForbiddenError("This credential may only keep memories for its agents: name one in agent_id", "agent_not_allowed");
      const id = ids.memory!;
      const entry: MemoryAdded = {
        memory_id: id, app_id: ctx.appId, user_id: userId, agent_id: body.agent_id ?? null, content: body.content,
        metadata: body.metadata ?? {}, source: "api", job_id: null,
      };
      const meta = metaOf(ctx, request, userId);
      // A retry taking over this request finds the entry its first execution added.
      const exists = resumed && (await ctx.repos.memory.load(id)).state.status !== "none";
      const position = exists ? null : (await ctx.repos.memory.handle(id, { type: "AddMemory", entry }, meta)).position;
      await afterWrite(ctx, { set, request }, position);
      memoryServiceOf(ctx).nudge();
      return { status: 201, body: viewOfAdded(entry, meta.now ?? Date.now()) };
    }), {
      body: AddBody, response: { 201: "Memory" },
      detail: {
        summary: "Remember something about an end user",
        description: "Honours Idempotency-Key. With agent_id, only that agent recalls it; without, every agent of the app does (for that user).",
      },
    })
    .get("", async ({ ctx, query }) => {
      const userId = query.user_id ?? ctx.actingUser ?? undefined;
      if (userId === undefined) throw new ValidationError("user_id is required: whose memory to read", { param: "user_id" });
      requireUser(ctx, userId);
      const scope = readScope(ctx, query.agent_id);
      const limit = query.limit ?? 10;
      const text = query.query ?? null;
      if (text !== null && tokenize(text).length === 0) throw new ValidationError("query has no words to search for", { param: "query" });
      const search: MemorySearch = { appId: ctx.appId, userId, scope, query: text, limit };
      if (text === null) {
        const after = decodeCursor(query.cursor, { seq: "integer" });
        if (after) search.beforeSeq = after.seq;
      } else {
        const key = searchKey(userId, text, scope);
        const after = decodeCursor(query.cursor, { offset: "integer", search: "string" });
        if (after && (after.search !== key || after.offset < 0)) throw new ValidationError("This cursor belongs to another search", { param: "cursor" }, "invalid_cursor");
        if (after) search.offset = after.offset;
      }
      const r = await memoryServiceOf(ctx).search(search);
      const last = r.hits[r.hits.length - 1];
      const next = !r.hasMore || !last ? null
        : text === null ? encodeCursor({ seq: last.row.seq })
        : encodeCursor({ offset: (search.offset ?? 0) + r.hits.length, search: searchKey(userId, text, scope) });
      return { data: r.hits.map((h) => memoryView(h.row, h.score)), has_more: r.hasMore, next_cursor: next, ranking: r.ranking };
    }, {
      query: ListQuery, response: "MemoryList",
      detail: {
        summary: "Query a user's memory: best first with relevance_score, or newest first without a query",
        description: "user_id is required with a server key (an end user's token reads its own). agent_id: that agent's entries only.",
      },
    })
    .delete("/:memory_id", async ({ ctx, params, request, set }) => {
      const { state } = await ctx.repos.memory.load(params.memory_id);
      const entry = state.entry;
      if (state.status !== "active" || !entry || entry.app_id !== ctx.appId) {
        throw new NotFoundError("Memory entry not found", { param: "memory_id" }, "memory_not_found");
      }
      requireUser(ctx, entry.user_id);
      if (ctx.allowedAgents && (entry.agent_id === null || !ctx.allowedAgents.includes(entry.agent_id))) {
        throw new ForbiddenError("This credential may not use the agent this belongs to", "agent_not_allowed");
      }
      const r = await ctx.repos.memory.handle(params.memory_id, { type: "RemoveMemory" }, metaOf(ctx, request, entry.user_id));
      await afterWrite(ctx, { set, request }, r.position);
      return { id: params.memory_id, object: "memory" as const, deleted: true as const };
    }, {
      params: IdParam("memory_id"), response: "MemoryDeleted",
      detail: { summary: "Forget a memory entry: gone from reads and recall at once (its events stay for audit)" },
    });
