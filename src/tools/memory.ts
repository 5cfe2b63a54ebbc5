/**
 * Built-in `remember` and `recall`: the tools an agent with memory enabled gets (see
 * src/jobs/runner/memory.ts). They act for the job's end user in the job's data partition: `remember`
 * keeps an entry for the agent, `recall` searches the user's entries the agent may recall (its own
 * and those kept for every agent), ranked as GET /v1/memory ranks them.
 */
import { Type } from "@sinclair/typebox";
import { memoryServiceOf } from "../app/memory.ts";
import type { AppContext } from "../app/context.ts";
import { readYourWrites } from "../app/context.ts";
import { newResourceId } from "../core/ids.ts";
import { checkMemoryEntry, MAX_MEMORY_CHARS } from "../domain/memory/memory.ts";
import { tokenize } from "../../projections/memory/index.ts";
import { ToolError, toolArgs, type Tool } from "./tool.ts";

export interface MemoryToolScope {
  ctx: AppContext;
  /** The job's data partition (its app, or its test data). */
  appId: string;
  userId: string;
  agentId: string;
  jobId: string;
  /** How many entries `recall` returns when the model asks for no number. */
  recallLimit: number;
  /** Told of the entries `recall` returned, so the reply can cite them. */
  onRecalled(entries: ReadonlyArray<{ id: string; content: string }>): void;
}

const RememberArgs = Type.Object({
  content: Type.String({ minLength: 1, maxLength: MAX_MEMORY_CHARS, description: "The fact to remember about the user, in one or two sentences" }),
  metadata: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: "Optional labels (source, importance, …)" })),
}, { additionalProperties: false });

const RecallArgs = Type.Object({
  query: Type.String({ minLength: 1, maxLength: 1000, description: "What to look for in what is remembered about the user" }),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 20, description: "How many entries, best first" })),
}, { additionalProperties: false });


/** How long `remember` waits for the entry to be searchable before it answers (a recall right after finds it). */
const SEARCHABLE_WAIT_MS = 2_000;

export const rememberTool = (scope: MemoryToolScope): Tool => ({
  name: "remember",
  description: "Remember a lasting fact about the user (a preference, a detail of their situation) for later conversations. Do not store secrets.",
  parameters: RememberArgs as unknown as Record<string, unknown>,
  requires_approval: false,
  estimated_credits: 0,
  async execute(args, toolCtx) {
    const { content, metadata } = toolArgs(RememberArgs, args);
    try {
      checkMemoryEntry(content, metadata);
    } catch (err) {
      throw new ToolError((err as Error).message);
    }
    // Named by the call: the same call run again (a resumed job) finds the entry it made.
    const id = toolCtx.callId
      ? `mem_${(Bun.SHA256.hash(`${scope.jobId}\u0000${toolCtx.callId}`, "hex") as string).slice(0, 32)}`
      : newResourceId("mem");
    const { ctx } = scope;
    const r = await ctx.repos.memory.handle(id, {
      type: "AddMemory",
      entry: { memory_id: id, app_id: scope.appId, user_id: scope.userId, agent_id: scope.agentId, content, metadata: metadata ?? {}, source: "agent", job_id: scope.jobId },
    }, { appId: scope.appId, correlationId: scope.jobId, causationId: scope.jobId, actor: `job:${scope.jobId}`, attributedUserId: scope.userId });
    await readYourWrites({ ...ctx, readYourWritesTimeoutMs: SEARCHABLE_WAIT_MS }, r.position, toolCtx.signal).catch(() => false);
    memoryServiceOf(ctx).nudge();
    return { result: { memory_id: id, stored: true } };
  },
});

export const recallTool = (scope: MemoryToolScope): Tool => ({
  name: "recall",
  description: "Search what is remembered about the user. Returns the most relevant entries first, each with its memory id; cite the ids you use.",
  parameters: RecallArgs as unknown as Record<string, unknown>,
  requires_approval: false,
  estimated_credits: 0,
  async execute(args) {
    const { query, limit } = toolArgs(RecallArgs, args);
    if (tokenize(query).length === 0) throw new ToolError("query has no words to search for");
    const found = await memoryServiceOf(scope.ctx).search({
      appId: scope.appId, userId: scope.userId, scope: { kind: "recall", agentId: scope.agentId }, query, limit: limit ?? scope.recallLimit,
    });
    const memories = found.hits.map((h) => ({ id: h.row.id, content: h.row.content, relevance_score: h.score, created_at: new Date(h.row.created_at).toISOString() }));
    scope.onRecalled(memories);
    return { result: { memories } };
  },
});
