/**
 * The turn runner: carries one job forward from wherever its stream says it is.
 *
 * It builds the model's context (agent prompt, the session's completed turns, the job's input and the
 * job's own transcript so far), streams the model, appends text coalesced (at most one event per
 * ~100 ms or ~200 characters), runs tools or proposes a plan when approval is needed (then returns: an
 * approval re-queues the job and a runner resumes it from its stream), and ends the job with exactly
 * one of JobCompleted, JobFailed or JobCancelled. Every append carries the attempt this runner
 * started; if another runner has started the job since, this one stops without writing.
 */
import Ajv, { type ValidateFunction } from "ajv";
import type { AppContext } from "../app/context.ts";
import { AppError, ConflictError, ValidationError } from "../core/errors.ts";
import { newResourceId } from "../core/ids.ts";
import type { AgentSpec } from "../domain/agent/agent.ts";
import { TERMINAL, type JobCommand, type JobError, type JobEvent, type JobState, type PlanStep } from "../domain/job/job.ts";
import type { SessionEvent } from "../domain/session/session.ts";
import { jobStream, sessionStream } from "../domain/streams.ts";
import { jobEvents } from "../domain/job/events.ts";
import { sessionEvents } from "../domain/session/events.ts";
import { StreamNotFoundError } from "../eventstore/errors.ts";
import { LlmError, type ChatMessage, type ChatToolCall, type LlmProvider } from "../llm/provider.ts";
import { resolveTools } from "../tools/registry.ts";
import { ToolError, type Tool, type ToolContext } from "../tools/tool.ts";

export interface TurnRunnerOptions {
  maxSteps?: number;
  coalesceMs?: number;
  coalesceChars?: number;
}

/** Another runner started this job after us: we must not write another event. */
class LostJob extends Error {}

/** The job must end as failed with this code and a message safe to show the client. */
class JobFailure extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

const ajv = new Ajv({ allErrors: true, strict: false });
const validators = new Map<string, ValidateFunction>();

/** Compiles (and caches) a JSON Schema; throws on an invalid schema. */
export function compileSchema(schema: Record<string, unknown>): ValidateFunction {
  const key = JSON.stringify(schema);
  let v = validators.get(key);
  if (!v) {
    v = ajv.compile(schema);
    if (validators.size > 500) validators.clear();
    validators.set(key, v);
  }
  return v;
}

/** Refuses a schema a client sent that is not valid JSON Schema (400 naming the parameter). */
export function requireValidSchema(schema: Record<string, unknown>, param = "output_schema"): void {
  try {
    compileSchema(schema);
  } catch (err) {
    throw new ValidationError(`${param} is not a valid JSON Schema: ${(err as Error).message}`, { param });
  }
}

export class TurnRunner {
  private readonly maxSteps: number;
  private readonly coalesceMs: number;
  private readonly coalesceChars: number;

  constructor(private readonly ctx: AppContext, private readonly runnerId: string, options: TurnRunnerOptions = {}) {
    this.maxSteps = options.maxSteps ?? 8;
    this.coalesceMs = options.coalesceMs ?? 100;
    this.coalesceChars = options.coalesceChars ?? 200;
  }

  async run(jobId: string, outerSignal: AbortSignal): Promise<void> {
    const { repos } = this.ctx;
    const meta = { appId: this.ctx.appId, correlationId: jobId };
    const { state } = await repos.jobs.load(jobId);
    if (state.status === "none") return;
    // Ended jobs (and their turns, through the turn coordinator) need nothing more from a runner.
    if (TERMINAL.has(state.status) || state.status === "awaiting_approval") return;

    if (state.sessionId) {
      const { state: session } = await repos.sessions.load(state.sessionId);
      if (session.status !== "active") {
        await repos.jobs.handle(jobId, { type: "CancelJob", reason: "session_deleted" }, meta).catch(ignoreFinished);
        return;
      }
      if (session.turns[0]?.job_id !== jobId) return; // not this job's turn yet; it is queued again when it is
    }

    if (state.status === "processing" && !state.resumable && state.sideEffectsThisAttempt > 0) {
      // A previous attempt was cut off mid-step (the process stopped). Re-running would repeat what the
      // client already saw; end it clearly instead.
      await repos.jobs.handle(jobId, { type: "FailJob", error: { code: "interrupted", message: "The server stopped while this job was running. Send the message again." } }, meta).catch(ignoreFinished);
      return;
    }

    const started = await repos.jobs.handle(jobId, { type: "StartJob", runner_id: this.runnerId }, meta).catch((err) => {
      if (err instanceof ConflictError) return null;
      throw err;
    });
    if (!started || started.state.status !== "processing") return; // another runner has it, or a pending cancel ended it
    const attempt = started.state.attempt;
    // A cancel may be appended by another process (an API process, with the job running here): watch
    // the job's stream and stop the model request as soon as one lands.
    const local = new AbortController();
    const signal = AbortSignal.any([outerSignal, local.signal]);
    // Wakes arrive for this runner's own appends too; one load in flight covers all that arrive meanwhile.
    let checking: Promise<void> | undefined;
    let recheck = false;
    const check = (): void => {
      if (checking) {
        recheck = true;
        return;
      }
      checking = repos.jobs.load(jobId).then(({ state: s }) => {
        if (s.cancelRequested || TERMINAL.has(s.status as never) || s.attempt !== attempt) local.abort();
      }).catch(() => {}).finally(() => {
        checking = undefined;
        if (recheck) {
          recheck = false;
          check();
        }
      });
    };
    const stopWatching = this.ctx.live.listen(jobStream(jobId), check);
    const append = async (command: JobCommand) => {
      const r = await repos.jobs.handle(jobId, (s) => {
        if (s.attempt !== attempt) throw new LostJob();
        return command;
      }, meta);
      return r.state;
    };

    try {
      await this.execute(jobId, started.state, append, signal);
    } catch (err) {
      if (err instanceof LostJob) {
        stopWatching();
        return;
      }
      const cancelled = signal.aborted || (err instanceof ConflictError && err.code === "job_cancel_requested") ||
        (err instanceof LlmError && err.code === "aborted");
      const failure = cancelled ? null : failureOf(err);
      if (failure) this.ctx.logger.warn("job failed", { job_id: jobId, error: failure });
      await repos.jobs.handle(jobId, (s): JobCommand => {
        if (s.attempt !== attempt) throw new LostJob();
        // A cancel ends the job with the reason its caller gave.
        return failure ? { type: "FailJob", error: failure } : { type: "CancelJob", reason: s.cancelReason ?? "cancelled" };
      }, meta).catch((e) => {
        if (!(e instanceof LostJob) && !(e instanceof ConflictError)) throw e;
      });
    } finally {
      stopWatching();
    }
  }

  private async execute(jobId: string, job: JobState, append: (c: JobCommand) => Promise<JobState>, signal: AbortSignal): Promise<void> {
    const queued = job.queued!;
    const { state: agentState } = await this.ctx.repos.agents.load(queued.agent_id);
    if (agentState.status !== "active" || !agentState.spec) throw new JobFailure("agent_not_found", `Agent ${queued.agent_id} no longer exists`);
    const agent = agentState.spec;
    const providerName = agent.model.provider ?? this.ctx.defaultProvider;
    const provider = this.ctx.providers.get(providerName);
    if (!provider) throw new JobFailure("provider_not_configured", `The model provider "${providerName}" is not configured on this server`);
    const model = queued.model ?? agent.model.name ?? provider.defaultModel;
    const tools = resolveTools(agent.tools);
    const toolCtx = this.toolContext(jobId, queued.session_id, signal);

    const messages: ChatMessage[] = [
      { role: "system", content: systemPrompt(agent, queued.output_schema, queued.input.context) },
      ...(queued.session_id ? await this.history(queued.session_id, jobId) : []),
      { role: "user", content: userContent(queued.input) },
    ];
    const transcript = await this.transcript(jobId);
    messages.push(...transcript.messages);
    let step = transcript.lastStep;
    let allText = transcript.text;

    // An approved plan: carry out its steps that have not run yet.
    if (job.planDecision === "approved" && job.plan) {
      for (const planned of job.plan.steps) {
        if (transcript.completed.has(planned.call_id)) continue;
        if (signal.aborted) throw new ConflictError("job_cancel_requested", "cancelled");
        messages.push(await this.runTool(append, tools, toolCtx, job.plan.step, { id: planned.call_id, name: planned.tool, args: planned.args }, !transcript.called.has(planned.call_id)));
      }
    }

    while (step < this.maxSteps) {
      step++;
      if (signal.aborted) throw new ConflictError("job_cancel_requested", "cancelled");
      const { text, calls } = await this.callModel(provider, model, agent, messages, tools, queued.output_schema, append, step, signal);
      allText = joinText(allText, text);
      if (calls.length === 0) {
        let result: unknown = null;
        if (queued.output_schema) result = validateStructured(text, queued.output_schema);
        await append({ type: "CompleteJob", content: allText, result });
        return;
      }
      messages.push({ role: "assistant", content: text, tool_calls: calls });
      const needsApproval = agent.approval === "always" ||
        (agent.approval === "tools" && calls.some((c) => tools.get(c.name)?.requires_approval));
      if (needsApproval) {
        const steps: PlanStep[] = calls.map((c) => ({ call_id: c.id, tool: c.name, args: c.args, estimated_credits: tools.get(c.name)?.estimated_credits ?? 0 }));
        await append({ type: "ProposePlan", plan: {
          step, plan_id: newResourceId("plan"), title: planTitle(calls), steps,
          total_credits: steps.reduce((a, s) => a + s.estimated_credits, 0),
        } });
        return; // the job waits for approval without holding this worker
      }
      for (const call of calls) {
        if (signal.aborted) throw new ConflictError("job_cancel_requested", "cancelled");
        messages.push(await this.runTool(append, tools, toolCtx, step, call, true));
      }
    }
    throw new JobFailure("too_many_steps", `The agent did not finish within ${this.maxSteps} model calls`);
  }

  /** Streams one model call, appending its text coalesced; returns the text and tool calls. */
  private async callModel(
    provider: LlmProvider, model: string, agent: AgentSpec, messages: ChatMessage[], tools: Map<string, Tool>,
    outputSchema: Record<string, unknown> | null, append: (c: JobCommand) => Promise<JobState>, step: number, signal: AbortSignal,
  ): Promise<{ text: string; calls: ChatToolCall[] }> {
    let text = "";
    const calls: ChatToolCall[] = [];
    // Runner options travel with the model's parameters but are not the provider's business.
    const { emit_thinking: emitThinking, ...parameters } = agent.model.parameters as { emit_thinking?: boolean };
    const coalesce = (type: "TextEmitted" | "ThinkingEmitted") => {
      let pending = "";
      let lastFlush = Date.now();
      return {
        add: async (delta: string) => {
          pending += delta;
          if (pending.length >= this.coalesceChars || Date.now() - lastFlush >= this.coalesceMs) await flush();
        },
        flush: async () => flush(),
      };
      async function flush() {
        if (!pending) return;
        const content = pending;
        pending = "";
        lastFlush = Date.now();
        await append(type === "TextEmitted" ? { type: "EmitText", step, content } : { type: "EmitThinking", step, content });
      }
    };
    const textOut = coalesce("TextEmitted");
    const thinkingOut = coalesce("ThinkingEmitted");
    const flush = async () => {
      await thinkingOut.flush();
      await textOut.flush();
    };
    const stream = provider.stream({
      model, messages, outputSchema, parameters, signal,
      tools: [...tools.values()].map((t) => ({ name: t.name, description: t.description, parameters: t.parameters })),
    });
    for await (const chunk of stream) {
      switch (chunk.type) {
        case "text":
          text += chunk.delta;
          await thinkingOut.flush(); // keep the two in the order they arrived
          await textOut.add(chunk.delta);
          break;
        case "thinking":
          // Recorded only when the agent asks for it (model.parameters.emit_thinking).
          if (emitThinking === true) await thinkingOut.add(chunk.delta);
          break;
        case "tool_call":
          calls.push(chunk.call);
          break;
        case "usage":
          await flush();
          await append({ type: "RecordUsage", usage: {
            step, provider: provider.name, model, prompt_tokens: chunk.prompt_tokens, completion_tokens: chunk.completion_tokens,
            cached_tokens: chunk.cached_tokens ?? 0, reasoning_tokens: chunk.reasoning_tokens ?? 0,
          } });
          break;
        case "finish":
          break;
      }
    }
    await flush();
    return { text, calls };
  }

  private async runTool(
    append: (c: JobCommand) => Promise<JobState>, tools: Map<string, Tool>, toolCtx: ToolContext, step: number,
    call: ChatToolCall, announce: boolean,
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
    await append({ type: "CompleteTool", call_id: call.id, name: call.name, result, error, asset });
    return { role: "tool", tool_call_id: call.id, name: call.name, content: JSON.stringify(error ? { error } : result) };
  }

  private toolContext(jobId: string, sessionId: string | null, signal: AbortSignal): ToolContext {
    return {
      jobId,
      sessionId,
      signal,
      registerAsset: async (input) => {
        const r = await this.ctx.repos.sessions.handle(sessionId!, { type: "RegisterAsset", ...input, job_id: jobId, asset_id: newResourceId("ast") }, { appId: this.ctx.appId, correlationId: jobId, causationId: jobId });
        const e = r.appended[0] as Extract<SessionEvent, { type: "AssetRegistered" }>;
        return { asset_label: e.data.asset_label, url: e.data.url, kind: e.data.kind, source_tool: e.data.source_tool, prompt: e.data.prompt };
      },
    };
  }

  /** The session's completed turns before this job, as chat messages. Cancelled and failed turns are left out. */
  private async history(sessionId: string, jobId: string): Promise<ChatMessage[]> {
    const messages: ChatMessage[] = [];
    const userMessages = new Map<string, string>();
    try {
      for await (const e of this.ctx.store.readStream(sessionStream(sessionId))) {
        const event = sessionEvents.decode(e);
        if (event.type === "MessageSent" && event.data.job_id !== jobId) {
          userMessages.set(event.data.job_id, userContent({ content: event.data.content, attachments: event.data.attachments, media_url: null }));
        } else if (event.type === "TurnEnded" && event.data.outcome === "completed" && event.data.reply) {
          const user = userMessages.get(event.data.job_id);
          if (user !== undefined) messages.push({ role: "user", content: user }, { role: "assistant", content: event.data.reply.content });
        }
      }
    } catch (err) {
      if (!(err instanceof StreamNotFoundError)) throw err;
    }
    return messages;
  }

  /** What this job has already said and done, rebuilt from its stream (for resumes after approval). */
  private async transcript(jobId: string) {
    const steps = new Map<number, { text: string; calls: ChatToolCall[] }>();
    const results = new Map<string, ChatMessage>();
    const called = new Set<string>();
    let text = "";
    let lastStep = 0;
    const stepOf = (n: number) => {
      lastStep = Math.max(lastStep, n);
      let s = steps.get(n);
      if (!s) steps.set(n, (s = { text: "", calls: [] }));
      return s;
    };
    for await (const e of this.ctx.store.readStream(jobStream(jobId))) {
      const event = jobEvents.decode(e);
      if (event.type === "TextEmitted") {
        const s = stepOf(event.data.step);
        text = s.text ? text + event.data.content : joinText(text, event.data.content);
        s.text += event.data.content;
      } else if (event.type === "ToolCalled") {
        called.add(event.data.call_id);
        const s = stepOf(event.data.step);
        if (!s.calls.some((c) => c.id === event.data.call_id)) s.calls.push({ id: event.data.call_id, name: event.data.name, args: event.data.args });
      } else if (event.type === "PlanProposed") {
        stepOf(event.data.step).calls = event.data.steps.map((p) => ({ id: p.call_id, name: p.tool, args: p.args }));
      } else if (event.type === "ToolCompleted") {
        results.set(event.data.call_id, { role: "tool", tool_call_id: event.data.call_id, name: event.data.name, content: JSON.stringify(event.data.error ? { error: event.data.error } : event.data.result) });
      }
    }
    const messages: ChatMessage[] = [];
    for (const n of [...steps.keys()].sort((a, b) => a - b)) {
      const s = steps.get(n)!;
      messages.push(s.calls.length ? { role: "assistant", content: s.text, tool_calls: s.calls } : { role: "assistant", content: s.text });
      for (const c of s.calls) {
        const r = results.get(c.id);
        if (r) messages.push(r);
      }
    }
    return { messages, lastStep, text, completed: new Set(results.keys()), called };
  }
}

function systemPrompt(agent: AgentSpec, schema: Record<string, unknown> | null, context: Record<string, unknown> | null): string {
  let prompt = agent.system_prompt;
  if (context && Object.keys(context).length) prompt += `\n\nContext from the application:\n${JSON.stringify(context)}`;
  if (schema) prompt += `\n\nAnswer with a single JSON value that matches this JSON Schema, and nothing else:\n${JSON.stringify(schema)}`;
  return prompt;
}

function userContent(input: { content: string; attachments: Array<{ type: string; url?: string; asset_label?: string; name?: string }>; media_url: string | null }): string {
  const parts = [input.content];
  if (input.media_url) parts.push(`[media: ${input.media_url}]`);
  for (const a of input.attachments) parts.push(`[attachment${a.asset_label ? ` ${a.asset_label}` : ""}${a.name ? ` ${a.name}` : ""}${a.url ? ` ${a.url}` : ""}]`);
  return parts.join("\n");
}

/** Texts of successive model calls, kept apart as paragraphs. */
const joinText = (a: string, b: string): string => (a && b ? `${a}\n\n${b}` : a || b);

function planTitle(calls: ChatToolCall[]): string {
  const names = [...new Set(calls.map((c) => c.name))];
  return `Run ${names.join(", ")} (${calls.length} step${calls.length === 1 ? "" : "s"})`;
}

/** Parses and validates a structured reply; a reply that does not match fails the job clearly. */
function validateStructured(text: string, schema: Record<string, unknown>): unknown {
  let value: unknown;
  const trimmed = text.trim().replace(/^```(?:json)?\s*/i, "").replace(/\s*```$/, "");
  try {
    value = JSON.parse(trimmed);
  } catch {
    throw new JobFailure("invalid_output", "The model's reply is not valid JSON");
  }
  const validate = compileSchema(schema);
  if (!validate(value)) {
    const detail = (validate.errors ?? []).slice(0, 3).map((e) => `${e.instancePath || "/"} ${e.message}`).join("; ");
    throw new JobFailure("invalid_output", `The model's reply does not match the output schema: ${detail}`);
  }
  return value;
}

function failureOf(err: unknown): JobError {
  if (err instanceof JobFailure) return { code: err.code, message: err.message };
  if (err instanceof LlmError) return { code: err.code, message: err.message, ...(err.providerRequestId ? { provider_request_id: err.providerRequestId } : {}) };
  if (err instanceof AppError) return { code: err.code, message: err.message };
  return { code: "internal_error", message: "The job failed because of an internal error" };
}

function ignoreFinished(err: unknown): void {
  if (!(err instanceof ConflictError)) throw err;
}
