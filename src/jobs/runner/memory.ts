/**
 * Memory in a turn, for agents with `memory.enabled`: before the first model call the user's most
 * relevant entries (for this message, `recall_limit` of them, the agent's own and those kept for
 * every agent) are put in the system prompt; the agent gets the `remember` and `recall` tools (unless
 * it declares tools of those names itself); and the reply cites every entry it was given, whether
 * recalled into the context or returned by `recall` (`citations` on JobCompleted).
 *
 * A recall that fails (the read model, the embeddings endpoint) leaves the turn without memory rather
 * than failing it.
 */
import type { AppContext } from "../../app/context.ts";
import { memoryServiceOf } from "../../app/memory.ts";
import type { AgentSpec } from "../../domain/agent/agent.ts";
import { snippetOf, type Citation } from "../../domain/shared/citations.ts";
import type { ChatMessage } from "../../llm/provider.ts";
import { recallTool, rememberTool } from "../../tools/memory.ts";
import type { Tool } from "../../tools/tool.ts";
import { tokenize } from "../../../projections/memory/index.ts";

/** How long a turn waits for this process's read models to hold what was written before it started. */
const CATCH_UP_MS = 2_000;

export interface TurnMemory {
  /** Appended to the system prompt: the entries recalled for this message ("" when none). */
  readonly context: string;
  /** Adds `remember` and `recall` to the turn's tools (an agent's own tools of those names win). */
  addTools(tools: Map<string, Tool>): void;
  /** Takes in what `recall` returned in earlier attempts of the job (a job resumed after approval). */
  noteTranscript(messages: readonly ChatMessage[]): void;
  /** `{citations}` for CompleteJob, or nothing when the reply was given none. */
  citationsField(): { citations?: Citation[] };
}

export interface TurnMemoryInput {
  agent: AgentSpec;
  /** The job's data partition. */
  dataApp: string;
  userId: string;
  agentId: string;
  jobId: string;
  /** What the turn is about: the user's message (or the run's input). */
  input: string;
}

/** The turn's memory, or null when the agent has none. */
export async function turnMemory(ctx: AppContext, input: TurnMemoryInput): Promise<TurnMemory | null> {
  const settings = input.agent.memory;
  if (!settings?.enabled) return null;
  const cited = new Map<string, string>();
  const cite = (entries: ReadonlyArray<{ id: string; content: string }>) => {
    for (const e of entries) if (!cited.has(e.id)) cited.set(e.id, snippetOf(e.content));
  };
  const recalled = await recallFor(ctx, input, settings.recall_limit);
  cite(recalled);
  let toolsAdded = false;
  return {
    context: recalled.length
      ? "\n\nMemory: what you know about this user from earlier conversations, most relevant first. " +
        "Use it where it helps, and cite an entry by its id in brackets when you rely on it.\n" +
        recalled.map((e) => `- [${e.id}] ${e.content}`).join("\n")
      : "",
    addTools(tools) {
      const scope = {
        ctx, appId: input.dataApp, userId: input.userId, agentId: input.agentId, jobId: input.jobId, recallLimit: settings.recall_limit,
        onRecalled: cite,
      };
      if (!tools.has("remember")) tools.set("remember", rememberTool(scope));
      if (!tools.has("recall")) {
        tools.set("recall", recallTool(scope));
        toolsAdded = true;
      }
    },
    noteTranscript(messages) {
      if (!toolsAdded) return;
      for (const m of messages) {
        if (m.role !== "tool" || m.name !== "recall") continue;
        try {
          const result = JSON.parse(m.content) as { memories?: Array<{ id?: unknown; content?: unknown }> };
          cite((result.memories ?? []).filter((e): e is { id: string; content: string } => typeof e.id === "string" && typeof e.content === "string"));
        } catch {
          /* an error result: nothing was recalled */
        }
      }
    },
    citationsField() {
      return cited.size ? { citations: [...cited].map(([memory_id, snippet]) => ({ memory_id, snippet })) } : {};
    },
  };
}

async function recallFor(ctx: AppContext, input: TurnMemoryInput, limit: number): Promise<Array<{ id: string; content: string }>> {
  if (tokenize(input.input).length === 0) return [];
  // Old tables of a memory read model waiting for its version rebuild are not searched.
  if (ctx.projections.rebuildingAtStart.includes("memory")) {
    ctx.logger.warn("memory recall skipped: the memory read model is being rebuilt for this version", { job_id: input.jobId });
    return [];
  }
  try {
    // In a worker process the read models follow the store a little behind: an entry added before
    // this message was sent is waited for (bounded), so the turn recalls it.
    await ctx.projections.waitUntilCaughtUp(CATCH_UP_MS).catch(() => {});
    const found = await memoryServiceOf(ctx).search({
      appId: input.dataApp, userId: input.userId, scope: { kind: "recall", agentId: input.agentId }, query: input.input, limit,
    });
    return found.hits.map((h) => ({ id: h.row.id, content: h.row.content }));
  } catch (err) {
    ctx.logger.warn("memory recall failed; the turn goes on without it", { job_id: input.jobId, error: err as Error });
    return [];
  }
}
