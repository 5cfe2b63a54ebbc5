/** Tool calls inside a turn, and the context tools run with. */
import type { Static } from "@sinclair/typebox";
import type { AppContext } from "../../app/context.ts";
import { loadFile, saveArtifact } from "../../app/files.ts";
import { AppError } from "../../core/errors.ts";
import { newResourceId } from "../../core/ids.ts";
import type { ToolAssetSchema } from "../../domain/job/events.ts";
import type { JobCommand } from "../../domain/job/job.ts";
import type { SessionCommand, SessionEvent } from "../../domain/session/session.ts";
import type { ChatMessage, ChatToolCall } from "../../llm/provider.ts";
import { ToolError, type AssetInput, type Tool, type ToolContext, type ToolEmission } from "../../tools/tool.ts";
import { checkAssets, checkEmission, MAX_EVENTS_PER_CALL } from "../../tools/toolOutput.ts";
import type { Append } from "./modelStep.ts";

/** An asset as a tool call's events and result show it. */
export type ToolAsset = Static<typeof ToolAssetSchema>;

/** The context of a job's tool calls; each call gets its own view of it (its call id and emitter). */
export interface JobToolContext extends ToolContext {
  /**
   * Registers what a call returned in its `assets`, in one write so the labels are consecutive: on the
   * session with the next `asset_N` labels, or (a run, which has no session) on the job only, unlabelled.
   */
  registerAssets(inputs: AssetInput[], sourceTool: string): Promise<ToolAsset[]>;
}

/**
 * Runs one tool call: records the call (unless an earlier attempt did), runs the tool, registers the
 * assets it returned, records its result or error, and returns the tool message for the model. A
 * tool's failure (a malformed answer included) is the model's to see, not the job's end; only a
 * cancel propagates.
 */
export async function runToolCall(
  append: Append, tools: Map<string, Tool>, toolCtx: JobToolContext, step: number, call: ChatToolCall, announce: boolean,
  /** Whether the app is billed for tools (not for test data): a call that succeeded costs its estimated_credits. */
  billed: boolean,
): Promise<ChatMessage> {
  if (announce) await append({ type: "CallTool", step, call_id: call.id, name: call.name, args: call.args });
  const tool = tools.get(call.name);
  let result: unknown = null;
  let error: string | null = null;
  let asset: Record<string, unknown> | null = null;
  let assets: ToolAsset[] = [];
  if (!tool) {
    error = `Unknown tool ${call.name}`;
  } else {
    try {
      const r = await tool.execute(call.args, forCall(toolCtx, append, call.id));
      result = r.result;
      if (r.asset) {
        asset = r.asset as unknown as Record<string, unknown>;
        assets.push({ asset_label: r.asset.asset_label, kind: r.asset.kind, url: r.asset.url, file_id: r.asset.file_id ?? null, prompt: r.asset.prompt });
      }
      if (r.assets !== undefined) {
        let inputs: AssetInput[];
        try {
          inputs = checkAssets(r.assets);
        } catch (err) {
          throw new ToolError(`${call.name} returned unusable assets: ${(err as Error).message}`);
        }
        const registered = await toolCtx.registerAssets(inputs, call.name);
        assets = [...assets, ...registered];
        result = withAssets(result, registered);
        asset ??= (registered[0] as Record<string, unknown> | undefined) ?? null;
      }
    } catch (err) {
      if (toolCtx.signal.aborted) throw err;
      if (err instanceof AppError && err.status < 500) error = err.message;
      else error = err instanceof ToolError ? err.message : `${call.name} failed`;
      result = null;
      asset = null;
      assets = [];
    }
  }
  const credits = billed && tool && error === null ? tool.estimated_credits : 0;
  await append({ type: "CompleteTool", call_id: call.id, name: call.name, result, error, asset, credits, ...(assets.length ? { assets } : {}) });
  return { role: "tool", tool_call_id: call.id, name: call.name, content: JSON.stringify(error ? { error } : result) };
}

/**
 * What the model (and `tool.completed`'s `result`) shows of a call that returned assets: its answer
 * with `assets` set to the registered ones, labels included, so the model can refer to them. An
 * answer that is not a JSON object is wrapped as `{result, assets}`.
 */
function withAssets(result: unknown, assets: ToolAsset[]): unknown {
  if (result === null || result === undefined) return { assets };
  if (typeof result === "object" && !Array.isArray(result)) return { ...(result as Record<string, unknown>), assets };
  return { result, assets };
}

/** One call's view of the job's tool context: its id, and an emitter that records its events in order. */
function forCall(base: JobToolContext, append: Append, callId: string): ToolContext {
  let emitted = 0;
  let chain: Promise<unknown> = Promise.resolve();
  const emit = (emission: ToolEmission): Promise<void> => {
    let e: ToolEmission;
    try {
      e = checkEmission(emission);
    } catch (err) {
      return Promise.reject(new ToolError(`The tool emitted an event it may not: ${(err as Error).message}`));
    }
    if (++emitted > MAX_EVENTS_PER_CALL) return Promise.reject(new ToolError(`The tool emitted more than ${MAX_EVENTS_PER_CALL} events in one call`));
    const command: JobCommand = { type: "EmitToolEvent", event: emissionEvent(callId, e) };
    // One after another, in the order the tool emitted them, even when it does not wait for each.
    const next = chain.then(() => append(command)).then(() => {});
    chain = next.catch(() => {});
    return next;
  };
  return { ...base, callId, emit };
}

function emissionEvent(callId: string, e: ToolEmission): Extract<JobCommand, { type: "EmitToolEvent" }>["event"] {
  switch (e.type) {
    case "progress":
      return { type: "ToolProgressed", data: { call_id: callId, progress: e.progress ?? null, message: e.message ?? null } };
    case "info":
      return { type: "InfoEmitted", data: { call_id: callId, content: e.content } };
    case "canvas_op":
      return { type: "CanvasOpEmitted", data: { call_id: callId, op: e.op, args: e.args } };
  }
}

/**
 * A tool's `file_id` asset must name a file of the job's own app (and data partition) that is there
 * now, and not another end user's (an app-level file, with no user, is the app's): a tool answer is
 * outside input, and must not register another tenant's or user's file, or a removed one.
 */
async function requireOwnFiles(ctx: AppContext, jobId: string, inputs: readonly AssetInput[]): Promise<void> {
  const named = inputs.filter((a) => a.file_id);
  if (named.length === 0) return;
  const job = await ctx.repos.jobs.peek(jobId);
  const jobUser = job.state.queued?.user_id ?? null;
  for (const a of named) {
    const file = await loadFile(ctx, a.file_id!);
    if (!file || file.appId !== job.appId || file.state.status !== "uploaded" || (file.state.userId !== null && file.state.userId !== jobUser)) {
      throw new ToolError(`file_id ${a.file_id} names no file of this app and user`);
    }
  }
}

/** What a tool may use while it runs for a job: its ids, its cancel signal, and asset registration. */
export function toolContext(ctx: AppContext, jobId: string, sessionId: string | null, signal: AbortSignal): JobToolContext {
  const meta = { appId: ctx.appId, correlationId: jobId, causationId: jobId, actor: `job:${jobId}` };
  return {
    jobId,
    sessionId,
    signal,
    ...(ctx.files ? { saveFile: (file: { name: string; content_type: string; content: string | Uint8Array }) => saveArtifact(ctx, jobId, file, meta) } : {}),
    registerAsset: async (input) => {
      const r = await ctx.repos.sessions.handle(sessionId!, { type: "RegisterAsset", ...input, job_id: jobId, asset_id: newResourceId("ast") }, meta);
      const e = r.appended[0] as Extract<SessionEvent, { type: "AssetRegistered" }>;
      return { asset_label: e.data.asset_label, url: e.data.url, kind: e.data.kind, source_tool: e.data.source_tool, prompt: e.data.prompt };
    },
    registerAssets: async (inputs, sourceTool) => {
      const shown = (a: { url?: string | null; file_id?: string | null; kind: string; prompt?: string | null }, label: string | null): ToolAsset => ({
        asset_label: label, kind: a.kind, url: a.url ?? null, file_id: a.file_id ?? null, prompt: a.prompt ?? null,
      });
      if (inputs.length === 0) return [];
      await requireOwnFiles(ctx, jobId, inputs);
      if (!sessionId) return inputs.map((a) => shown(a, null));
      const commands: SessionCommand[] = inputs.map((a) => ({
        type: "RegisterAsset", asset_id: newResourceId("ast"), url: a.url ?? null, file_id: a.file_id ?? null, kind: a.kind,
        source_tool: sourceTool, prompt: a.prompt ?? null, model: a.model ?? null, job_id: jobId,
      }));
      const r = await ctx.repos.sessions.handle(sessionId, commands, meta);
      return (r.appended as Array<Extract<SessionEvent, { type: "AssetRegistered" }>>).map((e) => shown(e.data, e.data.asset_label));
    },
  };
}
