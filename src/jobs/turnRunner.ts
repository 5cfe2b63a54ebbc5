/**
 * The turn runner: carries one job forward from wherever its stream says it is.
 *
 * It builds the model's context (runner/conversation.ts), streams the model (runner/modelStep.ts),
 * runs tools (runner/toolStep.ts) or proposes a plan when approval is needed (then returns: an
 * approval re-queues the job and a runner resumes it from its stream), and ends the job with exactly
 * one of JobCompleted, JobFailed or JobCancelled (runner/outcome.ts). Every append carries the attempt
 * this runner started; if another runner has started the job since, this one stops without writing.
 *
 * When its process shuts down (`drain` aborts) a run stops at the next step boundary, and a run still
 * in a step when the worker's grace runs out is aborted with the `Shutdown` reason: either way it
 * appends JobReleased (what a resume must redo or finish) and answers "released", so the queue hands
 * the job to another runner, which resumes it from its stream. Nothing is failed or cancelled.
 * What follows the job's end (its turn, the next queued turn) is the turn coordinator's.
 */
import type { AppContext } from "../app/context.ts";
import { ConflictError, UsageLimitError } from "../core/errors.ts";
import { coverNext, creditsFor } from "../app/billing.ts";
import { WrongExpectedVersionError } from "../eventstore/errors.ts";
import type { TokenUsage } from "../domain/billing/prices.ts";
import { newResourceId } from "../core/ids.ts";
import { TERMINAL, type JobCommand, type JobState, type PlanStep } from "../domain/job/job.ts";
import { jobStream } from "../domain/streams.ts";
import { LlmError, type ChatMessage, type ChatToolCall, type LlmProvider } from "../llm/provider.ts";
import { instrumentProvider } from "../metrics/instrument.ts";
import { effectiveSpec, type AgentSpec, type AgentState } from "../domain/agent/agent.ts";
import type { Loaded } from "../app/repository.ts";
import { connectionOf } from "../domain/app/app.ts";
import { resolveTools } from "../tools/registry.ts";
import { openHeader } from "../app/agentSecrets.ts";
import { agentRanWith, joinText, jobTranscript, planTitle, sessionHistory, systemPrompt, userContent } from "./runner/conversation.ts";
import { contextSettings, DEFAULT_CONTEXT, historyMessages, messagesTokens, planContext, summarize, type ContextSettings } from "./runner/contextWindow.ts";
import { streamModelStep, type Append, type Coalescing, type StepBill } from "./runner/modelStep.ts";
import { baseAppId, isTestData } from "../app/access.ts";
import { abortedForShutdown, failureOf, ignoreFinished, JobFailure, LostJob, PutBack, validateStructured } from "./runner/outcome.ts";
import { runToolCall, toolContext } from "./runner/toolStep.ts";
import { endUserProvider } from "./runner/endUserProvider.ts";
import { turnMemory } from "./runner/memory.ts";
import { withFiles } from "./runner/files.ts";
import { fileCitations } from "./runner/fileCitations.ts";

export interface TurnRunnerOptions {
  maxSteps?: number;
  /** The context budget and strategy of agents that set none (CONTEXT_BUDGET_TOKENS, CONTEXT_STRATEGY). */
  context?: ContextSettings;
  coalesceMs?: number;
  coalesceChars?: number;
}

/**
 * What memory is recalled for: the user's own words first (a query keeps only its first terms), then a
 * skill's steps when the turn runs one (a skill run's content may be empty).
 */
const recallQuery = (input: { content: string; skill?: { prompt: string } | null }): string =>
  [input.content, input.skill?.prompt].filter((s) => s && s.trim()).join("\n");

/**
 * Where an attempt is, kept up to date as it goes, so a release can say what a resume must do: the
 * model step reached, whether its model call is still streaming (then its text is void), and the step's
 * tool calls once the model has named them.
 */
interface Progress {
  step: number;
  inModelCall: boolean;
  calls: ChatToolCall[];
}

/** What a run answers its worker: "released" when it handed the job back for another runner. */
export type RunOutcome = void | "released";

export class TurnRunner {
  private readonly maxSteps: number;
  private readonly context: ContextSettings;
  private readonly coalescing: Coalescing;

  constructor(private readonly ctx: AppContext, private readonly runnerId: string, options: TurnRunnerOptions = {}) {
    this.maxSteps = options.maxSteps ?? 8;
    this.context = options.context ?? DEFAULT_CONTEXT;
    this.coalescing = { ms: options.coalesceMs ?? 100, chars: options.coalesceChars ?? 200 };
  }

  /**
   * `outerSignal` aborts the run: a cancel, or (with the `Shutdown` reason) a shutdown whose grace ran
   * out. `drain` aborts when the process begins shutting down: the run stops at its next step boundary.
   */
  async run(jobId: string, outerSignal: AbortSignal, drain?: AbortSignal): Promise<RunOutcome> {
    const { repos } = this.ctx;
    const meta = { appId: this.ctx.appId, correlationId: jobId, actor: `runner:${this.runnerId}` };
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

    // The agent (and so the prompt) this attempt runs with is loaded once, and named on its JobStarted.
    const agent = await repos.agents.load(state.queued!.agent_id);
    const ranWith = agentRanWith(agent.state, agent.revision);
    const started = await repos.jobs.handle(jobId, { type: "StartJob", runner_id: this.runnerId, ...(ranWith ? { ranWith } : {}) }, meta).catch((err) => {
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
    const append: Append = async (command) => {
      const r = await repos.jobs.handle(jobId, (s) => {
        if (s.attempt !== attempt) throw new LostJob();
        return command;
      }, meta);
      return r.state;
    };
    const progress: Progress = { step: 0, inModelCall: false, calls: [] };

    try {
      await this.execute(jobId, started.state, agent, append, signal, progress, drain);
    } catch (err) {
      if (err instanceof LostJob) {
        stopWatching();
        return;
      }
      // Stopped at a step boundary, or cut by a shutdown (a cancel seen meanwhile still wins): hand it back.
      if (err instanceof PutBack || (abortedForShutdown(outerSignal) && !local.signal.aborted)) {
        stopWatching();
        return this.release(jobId, attempt, progress, meta);
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

  /**
   * Appends JobReleased for the step the attempt was in, so the next runner resumes instead of failing
   * the job as interrupted. A cancel requested meanwhile ends the job instead (the decider's rule).
   */
  private async release(jobId: string, attempt: number, at: Progress, meta: { appId: string; correlationId: string; actor: string }): Promise<RunOutcome> {
    const cut = at.inModelCall;
    const r = await this.ctx.repos.jobs.handle(jobId, (s): JobCommand => {
      if (s.attempt !== attempt) throw new LostJob();
      return { type: "ReleaseJob", release: {
        reason: "shutdown", step: at.step, discarded_step: cut ? at.step : null,
        tool_calls: cut ? [] : at.calls.map((c) => ({ call_id: c.id, name: c.name, args: c.args })),
      } };
    }, meta).catch((err) => {
      // Another runner has it, or it is no longer running: there is nothing to hand back.
      if (err instanceof LostJob || err instanceof ConflictError) return "gone" as const;
      // Not recorded: the job is still handed back, and the next runner finds it cut off mid-step.
      this.ctx.logger.warn("could not record a job's release", { job_id: jobId, error: err as Error });
      return null;
    });
    if (r === "gone" || r?.state.status === "cancelled") return;
    this.ctx.logger.info("job released for another runner", { job_id: jobId, step: at.step, ...(cut ? { discarded_step: at.step } : {}) });
    return "released";
  }

  /** The provider an agent runs on: its app's connection when it names one, else the server's. */
  private async providerOf(agent: AgentSpec, agentApp: string): Promise<LlmProvider> {
    const named = agent.model.connection;
    if (named) {
      const app = baseAppId(agentApp);
      const connection = connectionOf((await this.ctx.repos.apps.peek(app)).state.connections, named);
      if (!connection || !this.ctx.connections) throw new JobFailure("connection_not_found", `The app's model connection "${named}" no longer exists`);
      return this.ctx.connections.providerFor(app, connection);
    }
    const providerName = agent.model.provider ?? this.ctx.defaultProvider;
    const provider = this.ctx.providers.get(providerName);
    if (!provider) throw new JobFailure("provider_not_configured", `The model provider "${providerName}" is not configured on this server`);
    return provider;
  }

  /**
   * Usage limits are checked again before every model step and every tool call: the job's pools must
   * have room for what it has spent plus one reservation more (a step), or plus the tool's
   * estimated_credits (a tool). Without it the job ends failed with usage_limit_exceeded, after what it
   * finished last. A pool too contended to answer leaves the job going on what it already holds.
   */
  private async cover(jobId: string, next: "step" | number): Promise<void> {
    const { state } = await this.ctx.repos.jobs.load(jobId);
    try {
      await coverNext(this.ctx, jobId, state, next);
    } catch (err) {
      if (err instanceof UsageLimitError) throw new JobFailure(err.code, err.message);
      if (!(err instanceof WrongExpectedVersionError)) throw err;
      this.ctx.logger.warn("a usage pool stayed contended; the job goes on with what it holds", { job_id: jobId });
    }
  }

  /**
   * The session's history as this turn shows it to the model, within the context budget (see
   * runner/contextWindow.ts): summarised or cut when it does not fit, and then recorded on the job.
   * A summary that cannot be made (the model fails at it) leaves the older turns out instead.
   */
  private async historyFor(jobId: string, sessionId: string, fixed: ChatMessage[], run: {
    agent: AgentSpec; provider: LlmProvider; model: string; append: Append; billOf: (usage: TokenUsage) => Promise<StepBill>; signal: AbortSignal;
    /** Usage limits' check before a model call the app pays for (the summary is one). */
    cover: () => Promise<void>;
  }): Promise<ChatMessage[]> {
    const { summary, turns } = await sessionHistory(this.ctx, sessionId);
    const settings = contextSettings(run.agent.model.parameters, this.context);
    const fixedTokens = messagesTokens(fixed);
    const plan = planContext(turns, summary, fixedTokens, settings);
    if (!plan.trimmed) return historyMessages(summary, turns);
    let shown = plan.summary;
    let strategy = settings.strategy;
    let dropped = plan.dropped;
    if (plan.toSummarize.length) {
      const through = plan.toSummarize[plan.toSummarize.length - 1]!.message_id;
      const covered = (plan.summary?.turns ?? 0) + plan.toSummarize.length;
      await run.cover();
      try {
        const { text, usage } = await summarize(run.provider, run.model, plan.summary, plan.toSummarize, Math.max(64, Math.floor((settings.budgetTokens - fixedTokens) / 4)), run.signal);
        if (usage) await run.append({ type: "RecordUsage", usage: { step: 0, provider: run.provider.name, model: run.model, ...usage, ...(await run.billOf(usage)) } });
        await this.ctx.repos.sessions.handle(sessionId, { type: "SummarizeHistory", summary: text, through_message_id: through, turns: covered, job_id: jobId }, {
          appId: this.ctx.appId, correlationId: jobId, actor: `runner:${this.runnerId}`,
        });
        shown = { text, through_message_id: through, turns: covered };
      } catch (err) {
        if (run.signal.aborted || err instanceof LostJob) throw err;
        this.ctx.logger.warn("could not summarise the session's history; its older turns are left out", { job_id: jobId, error: err as Error });
        strategy = "drop";
        dropped += plan.toSummarize.length;
      }
    }
    const history = historyMessages(shown, plan.sent);
    await run.append({ type: "RecordContext", context: {
      strategy, budget_tokens: settings.budgetTokens, estimated_tokens: fixedTokens + messagesTokens(history),
      turns_total: (summary?.turns ?? 0) + turns.length, turns_sent: plan.sent.length, first_message_id: plan.sent[0]?.message_id ?? null,
      summary_through: shown?.through_message_id ?? null, summarized_turns: shown?.turns ?? 0, dropped_turns: dropped,
    } });
    return history;
  }

  private async execute(
    jobId: string, job: JobState, loaded: Loaded<AgentState>, append: Append, signal: AbortSignal, progress: Progress, drain: AbortSignal | undefined,
  ): Promise<void> {
    /** A step boundary: a cancel ends the job here; a shutdown that has begun hands it back here. */
    const boundary = () => {
      if (signal.aborted) throw new ConflictError("job_cancel_requested", "cancelled");
      if (drain?.aborted) throw new PutBack();
    };
    const queued = job.queued!;
    const { state: agentState, appId: agentApp } = loaded;
    if (agentState.status !== "active" || !agentState.spec) throw new JobFailure("agent_not_found", `Agent ${queued.agent_id} no longer exists`);
    // The app's prompt override, if any, in place of the agent's own.
    const agent = effectiveSpec(agentState)!;
    // Test data never reaches a real model, nor its bill: its jobs run on the sandbox provider.
    const testData = agentApp !== null && isTestData(agentApp);
    // An agent billed to its end users runs on the session user's own credential (or fails the job at once).
    // Measured once here, whichever way the provider was found (src/metrics/instrument.ts).
    const provider = instrumentProvider(agent.billing === "end_user"
      ? await endUserProvider(this.ctx, { agent, dataApp: agentApp ?? this.ctx.appId, userId: queued.user_id, testData, meta: { appId: agentApp ?? this.ctx.appId, correlationId: jobId, actor: `runner:${this.runnerId}` } })
      : testData ? this.ctx.providers.get("sandbox")! : await this.providerOf(agent, agentApp ?? this.ctx.appId), this.ctx.metrics);
    const model = testData ? provider.defaultModel : queued.model ?? agent.model.name ?? provider.defaultModel;
    // HTTP-tool header values are stored sealed under the agent's app: opened at each call, never logged.
    const secrets = this.ctx.secrets;
    const tools = resolveTools(agent.tools, this.ctx.outbound, { openHeader: (value) => openHeader(secrets, agentApp ?? this.ctx.appId, value) });
    // Agents with memory: the user's entries recalled for this message, and the remember / recall tools.
    const memory = await turnMemory(this.ctx, { agent, dataApp: agentApp ?? this.ctx.appId, userId: queued.user_id, agentId: queued.agent_id, jobId, input: recallQuery(queued.input) });
    memory?.addTools(tools);
    const toolCtx = toolContext(this.ctx, jobId, queued.session_id, signal);

    // The app pays for its model steps, except for test data and for steps the end user's own
    // credential pays for (billing: end_user): those cost the app nothing. Tools are the app's either way.
    const dataApp = agentApp ?? this.ctx.appId;
    const endUserPays = agent.billing === "end_user";
    const billOf = async (usage: TokenUsage): Promise<StepBill> =>
      endUserPays ? { credits: 0, funded_by: "end_user" } : { credits: await creditsFor(this.ctx, dataApp, provider.name, model, usage) };

    const system: ChatMessage = { role: "system", content: systemPrompt(agent, queued.output_schema, queued.input.context) + (memory?.context ?? "") };
    // The message's files as the model reads them (text, PDF text, images), within the file budget.
    const current: ChatMessage = await withFiles(this.ctx, { role: "user", content: userContent(queued.input) }, queued.input.attachments, { appId: agentApp ?? this.ctx.appId, sessionId: queued.session_id, userId: queued.user_id });
    const transcript = await jobTranscript(this.ctx, jobId);
    memory?.noteTranscript(transcript.messages);
    // Tool calls an earlier attempt left unfinished: an approved plan's, and those of the step a release
    // stopped in. Known before anything else runs, so a release that comes first names them again.
    const unfinished = [
      job.planDecision === "approved" && job.plan
        ? { step: job.plan.step, calls: job.plan.steps.map((p): ChatToolCall => ({ id: p.call_id, name: p.tool, args: p.args })) }
        : null,
      transcript.pending,
    ].filter((u): u is { step: number; calls: ChatToolCall[] } => u !== null && u.calls.some((c) => !transcript.completed.has(c.id)));
    Object.assign(progress, { step: transcript.lastStep, inModelCall: false, calls: unfinished.at(-1)?.calls ?? [] });
    const history = queued.session_id
      ? await this.historyFor(jobId, queued.session_id, [system, current, ...transcript.messages], {
        agent, provider, model, append, billOf, signal,
        cover: async () => {
          if (queued.budgets?.length && !endUserPays) await this.cover(jobId, "step");
        },
      })
      : [];
    const messages: ChatMessage[] = [system, ...history, current, ...transcript.messages];
    let step = transcript.lastStep;
    let allText = transcript.text;

    // Each unfinished call runs once (a call an earlier attempt announced is not announced again).
    const done = new Set(transcript.completed);
    for (const group of unfinished) {
      Object.assign(progress, { step: group.step, calls: group.calls });
      for (const call of group.calls) {
        if (done.has(call.id)) continue;
        boundary();
        if (job.queued?.budgets?.length) await this.cover(jobId, tools.get(call.name)?.estimated_credits ?? 0);
        messages.push(await runToolCall(append, tools, toolCtx, group.step, call, !transcript.called.has(call.id), !testData));
        done.add(call.id);
      }
    }
    progress.calls = [];

    while (step < this.maxSteps) {
      step++;
      boundary();
      // A step the end user pays for costs the app nothing: only its tools are covered.
      if (queued.budgets?.length && !endUserPays) await this.cover(jobId, "step");
      Object.assign(progress, { step, inModelCall: true, calls: [] });
      const { text, calls } = await streamModelStep(provider, model, agent, messages, tools, queued.output_schema, append, step, signal, this.coalescing, billOf);
      Object.assign(progress, { inModelCall: false, calls });
      allText = joinText(allText, text);
      if (calls.length === 0) {
        let result: unknown = null;
        if (queued.output_schema) result = validateStructured(text, queued.output_schema);
        const citations = [...(memory?.citationsField().citations ?? []), ...fileCitations(queued.input.attachments, "files" in current ? current.files : undefined)];
        await append({ type: "CompleteJob", content: allText, result, ...(citations.length ? { citations } : {}) });
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
        boundary();
        if (queued.budgets?.length) await this.cover(jobId, tools.get(call.name)?.estimated_credits ?? 0);
        messages.push(await runToolCall(append, tools, toolCtx, step, call, true, !testData));
      }
      progress.calls = []; // the step is done: a release from here on has nothing of it to finish
    }
    throw new JobFailure("too_many_steps", `The agent did not finish within ${this.maxSteps} model calls`);
  }
}
