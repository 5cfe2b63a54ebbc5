/** Tool calls inside a turn, and the context tools run with. */
import type { AppContext } from "../../app/context.ts";
import { AppError } from "../../core/errors.ts";
import { newResourceId } from "../../core/ids.ts";
import type { SessionEvent } from "../../domain/session/session.ts";
import type { ChatMessage, ChatToolCall } from "../../llm/provider.ts";
import { ToolError, type Tool, type ToolContext } from "../../tools/tool.ts";
import type { Append } from "./modelStep.ts";

/**
 * Runs one tool call: records the call (unless an earlier attempt did), runs the tool, records its
 * result or error, and returns the tool message for the model. A tool's failure is the model's to
 * see, not the job's end; only a cancel propagates.
 */
export async function runToolCall(
  append: Append, tools: Map<string, Tool>, toolCtx: ToolContext, step: number, call: ChatToolCall, announce: boolean,
  /** Whether the app is billed for tools (not for test data): a call that succeeded costs its estimated_credits. */
  billed: boolean,
): Promise<ChatMessage> {
  if (announce) await append({ type: "CallTool", step, call_id: call.id, name: call.name, args: call.args });
  const tool = tools.get(call.name);
  let result: unknown = null;
  let error: string | null = null;
  let asset: Record<string, unknown> | null = null;
  if (!tool) {
    error = `Unknown tool ${call.name}`;
  } else {
    try {
      const r = await tool.execute(call.args, toolCtx);
      result = r.result;
      asset = (r.asset as unknown as Record<string, unknown>) ?? null;
    } catch (err) {
      if (toolCtx.signal.aborted) throw err;
      if (err instanceof AppError && err.status < 500) error = err.message;
      else error = err instanceof ToolError ? err.message : `${call.name} failed`;
    }
  }
  const credits = billed && tool && error === null ? tool.estimated_credits : 0;
  await append({ type: "CompleteTool", call_id: call.id, name: call.name, result, error, asset, credits });
  return { role: "tool", tool_call_id: call.id, name: call.name, content: JSON.stringify(error ? { error } : result) };
}

/** What a tool may use while it runs for a job: its ids, its cancel signal, and asset registration. */
export function toolContext(ctx: AppContext, jobId: string, sessionId: string | null, signal: AbortSignal): ToolContext {
  return {
    jobId,
    sessionId,
    signal,
    registerAsset: async (input) => {
      const r = await ctx.repos.sessions.handle(sessionId!, { type: "RegisterAsset", ...input, job_id: jobId, asset_id: newResourceId("ast") }, { appId: ctx.appId, correlationId: jobId, causationId: jobId, actor: `job:${jobId}` });
      const e = r.appended[0] as Extract<SessionEvent, { type: "AssetRegistered" }>;
      return { asset_label: e.data.asset_label, url: e.data.url, kind: e.data.kind, source_tool: e.data.source_tool, prompt: e.data.prompt };
    },
  };
}
