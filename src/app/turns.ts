/**
 * Application services for agent work: sending messages, starting runs, approving, rejecting and
 * cancelling jobs. Shared by the HTTP routes and the workers. What follows a job's end (its turn ends,
 * the next queued turn starts) is the turn coordinator's (turnCoordinator.ts).
 */
import { NotFoundError } from "../core/errors.ts";
import { MAX_APPEND_BYTES } from "../eventstore/appendRules.ts";
import { AppendTooLargeError } from "../eventstore/errors.ts";
import { newResourceId } from "../core/ids.ts";
import type { AgentState } from "../domain/agent/agent.ts";
import { TERMINAL, type JobEvent, type JobState } from "../domain/job/job.ts";
import { sessionDecider, type Attachment, type ReplySummary, type SessionEvent, type SessionState } from "../domain/session/session.ts";
import { jobStream, sessionStream } from "../domain/streams.ts";
import { jobEvents } from "../domain/job/events.ts";
import { sessionEvents } from "../domain/session/events.ts";
import type { AppContext } from "./context.ts";
import { requireAgentAllowed } from "./access.ts";
import type { CommandMetadata as Meta } from "./repository.ts";
import { releaseJob, reserveJob } from "./billing.ts";
import { keyIdOfActor, type Payer } from "../domain/billing/limits.ts";
import { skillRun, type SkillRequest } from "./skills.ts";

export interface MessageInput {
  content: string;
  attachments: Attachment[];
  model: string | null;
  context: Record<string, unknown> | null;
  multitask: "reject" | "enqueue";
  /** A skill for the turn to run: resolved, and its inputs checked and filled in, when the message is accepted (src/app/skills.ts). */
  skill?: SkillRequest;
  /** What the surface the message came through keeps of its request for its own answers; never shown to the model (see MessageSent). */
  client_data?: Record<string, unknown>;
  /** Files of the session the message carries unless an earlier message did (the session decides: SendMessage's `once_files`). */
  once_files?: Attachment[];
}

export interface Accepted {
  job_id: string;
  message_id: string | null;
  session_id: string | null;
  queued: boolean;
  /** Position of the last event written, for read-your-writes. */
  position: bigint | null;
}

/**
 * Hands a job to the queue without waiting for it. The job is already durable in the event store, so a
 * queue that is down or slow must not fail or hold up the request that created it: the reconciler
 * dispatches it again.
 */
export function dispatch(ctx: AppContext, jobId: string): void {
  ctx.queue.enqueue(jobId).catch((err) => {
    ctx.logger.warn("could not hand the job to the queue; it will be dispatched again", { job_id: jobId, error: err as Error });
  });
}

async function activeAgent(ctx: AppContext, agentId: string): Promise<NonNullable<AgentState["spec"]>> {
  const { state, appId } = await ctx.repos.agents.load(agentId);
  if (state.status !== "active" || !state.spec || appId !== ctx.appId) throw new NotFoundError(`Agent ${agentId} not found`, { param: "agent_id" }, "agent_not_found");
  requireAgentAllowed(ctx, agentId);
  return state.spec;
}

/** The ids a message creates; fixed per Idempotency-Key so a retried request names the same ones. */
export interface MessageIds {
  message_id: string;
  job_id: string;
}

/**
 * Accepts a user message: the session decides (busy, or queued behind the turn in flight), then the job
 * is queued. With `resumed`, an earlier execution of the same request may have committed part of this:
 * what it wrote is found, not written again.
 */
export async function sendMessage(
  ctx: AppContext, sessionId: string, input: MessageInput, meta: Meta,
  ids: MessageIds = { message_id: newResourceId("msg"), job_id: newResourceId("job") }, resumed = false,
): Promise<Accepted> {
  let { state: session } = await ctx.repos.sessions.load(sessionId);
  if (session.status !== "active") throw new NotFoundError("Session not found", { param: "session_id" }, "session_not_found");
  const { message_id: messageId, job_id: jobId } = ids;
  const earlier = resumed ? await sentMessage(ctx, sessionId, messageId) : null;
  if (earlier) {
    const { state: job } = await ctx.repos.jobs.load(jobId);
    // Its reservations were taken by the earlier execution (taking them again decides nothing).
    const agent = job.status === "none" ? (await ctx.repos.agents.load(session.agentId!)).state.spec : null;
    const budgets = job.status === "none" ? await reserveJob(ctx, payerOf(ctx, session.userId!, meta), jobId, meta, agent?.billing === "end_user") : [];
    const position = job.status === "none" ? (await queueTurnJob(ctx, sessionId, session, earlier, meta, budgets)) : null;
    return { job_id: jobId, message_id: messageId, session_id: sessionId, queued: earlier.queued, position };
  }
  // The turn in flight may have ended with its end not yet recorded on the session (the worker that
  // ended it records that next, possibly in another process): close it here rather than answer busy.
  const active = session.turns[0];
  if (active && input.multitask !== "enqueue") {
    const { state: job } = await ctx.repos.jobs.load(active.job_id);
    if (TERMINAL.has(job.status as never)) {
      await ctx.turns.jobEnded(active.job_id, meta);
      ({ state: session } = await ctx.repos.sessions.load(sessionId));
    }
  }
  const agent = await activeAgent(ctx, session.agentId!);
  // The skill the message names (404, or 400 naming an input, before anything is written).
  const skill = input.skill ? await skillRun(ctx, input.skill.shipped, input.skill.name, input.skill.inputs) : undefined;
  // Both writes must fit before the first is made: a job refused as too large after its message was
  // stored would leave the session with a turn whose job never exists.
  const jobData = turnJobData(sessionId, session, {
    // Sized with every file it may take, so the job fits whichever the session decides it carries.
    message_id: messageId, job_id: jobId, content: input.content, attachments: [...input.attachments, ...(input.once_files ?? [])], model: input.model, context: input.context, skill,
    ...(input.client_data ? { client_data: input.client_data } : {}),
  }, agent);
  checkFitsOneWrite(jobStream(jobId), "JobQueued", jobData, { app_id: meta.appId, correlationId: meta.correlationId, causationId: messageId });
  // Usage limits are taken before anything is written: a request over a limit stores nothing.
  const budgets = await reserveJob(ctx, payerOf(ctx, session.userId!, meta), jobId, meta, agent.billing === "end_user");
  let sent;
  try {
    sent = await ctx.repos.sessions.handle(sessionId, {
      type: "SendMessage", message_id: messageId, job_id: jobId, content: input.content, attachments: input.attachments,
      model: input.model, context: input.context, multitask: input.multitask, ...(skill ? { skill } : {}),
      ...(input.client_data ? { client_data: input.client_data } : {}), ...(input.once_files?.length ? { once_files: input.once_files } : {}),
    }, meta);
  } catch (err) {
    await releaseJob(ctx, budgets, jobId, meta.appId);
    throw err;
  }
  const event = sent.appended[0] as Extract<SessionEvent, { type: "MessageSent" }>;
  const position = await queueTurnJob(ctx, sessionId, sent.state, event.data, meta, budgets);
  return { job_id: jobId, message_id: messageId, session_id: sessionId, queued: event.data.queued, position };
}

type SentMessage = Extract<SessionEvent, { type: "MessageSent" }>["data"];

/**
 * The checks a message must pass that cost no write, made before anything of it is stored (its
 * files): the session takes messages and is not busy (unless the message is enqueued), its agent is
 * active, and the skill it names exists with valid inputs. `sendMessage` decides again when it writes;
 * this only spares storing the files of a message that would be refused anyway. A retry that takes
 * over a request whose message is already recorded passes.
 */
export async function precheckMessage(ctx: AppContext, sessionId: string, input: MessageInput, ids: MessageIds, resumed: boolean): Promise<void> {
  const { state: session } = await ctx.repos.sessions.load(sessionId);
  if (session.status !== "active") throw new NotFoundError("Session not found", { param: "session_id" }, "session_not_found");
  if (resumed && (await sentMessage(ctx, sessionId, ids.message_id))) return;
  // A turn whose job has ended (its end not yet recorded on the session) does not make the session busy.
  const active = session.turns[0];
  const ended = active && input.multitask !== "enqueue" && TERMINAL.has((await ctx.repos.jobs.load(active.job_id)).state.status as never);
  // The session's own rules (archived, busy), decided on its state; nothing is written.
  sessionDecider.decide({
    type: "SendMessage", message_id: ids.message_id, job_id: ids.job_id, content: "", attachments: [], model: null, context: null, multitask: input.multitask,
  }, ended ? { ...session, turns: session.turns.slice(1) } : session);
  await activeAgent(ctx, session.agentId!);
  if (input.skill) await skillRun(ctx, input.skill.shipped, input.skill.name, input.skill.inputs);
}

/** Whether the session records the message `messageId` (an execution of the request committed it). */
export async function messageRecorded(ctx: AppContext, sessionId: string, messageId: string): Promise<boolean> {
  return (await sentMessage(ctx, sessionId, messageId)) !== null;
}

/** The JobQueued data of a session turn. */
function turnJobData(
  sessionId: string, session: SessionState, message: Pick<SentMessage, "message_id" | "job_id" | "content" | "attachments" | "model" | "context" | "skill" | "client_data">,
  agent: AgentState["spec"], budgets: readonly string[] = [],
) {
  return {
    job_id: message.job_id, kind: "message" as const, session_id: sessionId, message_id: message.message_id, agent_id: session.agentId!, user_id: session.userId!,
    input: {
      content: message.content, attachments: message.attachments, media_url: null, context: message.context, ...(message.skill ? { skill: message.skill } : {}),
      ...(message.client_data ? { client_data: message.client_data } : {}),
    },
    // A skill with an output schema makes the turn's reply structured by it, over the agent's own.
    model: message.model, output_schema: message.skill?.output_schema ?? agent?.output_schema ?? null, ...budgetsField(budgets),
  };
}

/** Who pays for a job: its app, its end user, and the key the request came with. */
const payerOf = (ctx: AppContext, userId: string, meta: Meta): Payer => ({ appId: ctx.appId, userId, keyId: keyIdOfActor(meta.actor) });

/** JobQueued's `budgets`, present only when the job holds reservations (events stay as they were without limits). */
const budgetsField = (budgets: readonly string[]) => (budgets.length ? { budgets: [...budgets] } : {});

/**
 * Refuses (413) an event that would not fit in one write, before anything of the request is written.
 * `metadata` approximates what the repository adds; the slack covers its version and time stamps.
 */
function checkFitsOneWrite(stream: string, type: string, data: unknown, metadata: Record<string, unknown>): void {
  const size = Buffer.byteLength(JSON.stringify(data)) + Buffer.byteLength(JSON.stringify(metadata)) + 2 * type.length + 256;
  if (size > MAX_APPEND_BYTES) throw new AppendTooLargeError(stream, MAX_APPEND_BYTES, size);
}

/** The MessageSent event of `messageId` in the session, if an earlier execution committed it. */
async function sentMessage(ctx: AppContext, sessionId: string, messageId: string): Promise<SentMessage | null> {
  for await (const e of ctx.store.readStream(sessionStream(sessionId), { direction: "backwards" })) {
    const event = sessionEvents.decode(e);
    if (event.type === "MessageSent" && event.data.message_id === messageId) return event.data;
  }
  return null;
}

/** Queues the job of a sent message (a no-op when it is queued already) and dispatches it when it is its turn. */
async function queueTurnJob(
  ctx: AppContext, sessionId: string, session: SessionState, message: SentMessage, meta: Meta, budgets: readonly string[],
): Promise<bigint | null> {
  // The message is stored: its job is queued whatever happened since. An agent deleted meanwhile makes
  // the job fail when it runs (agent_not_found) rather than leave the turn without a job.
  const { state: agentState } = await ctx.repos.agents.load(session.agentId!);
  const queuedJob = await ctx.repos.jobs.handle(message.job_id, {
    type: "QueueJob", data: turnJobData(sessionId, session, message, agentState.spec, budgets),
  }, { ...meta, causationId: message.message_id });
  if (!message.queued) dispatch(ctx, message.job_id);
  return queuedJob.position;
}

export interface RunInput {
  agent_id: string;
  user_id: string;
  input: string;
  media_url: string | null;
  output_schema: Record<string, unknown> | null;
  model: string | null;
}

/**
 * Accepts a single-turn run: no session, no history; an output schema makes the result structured.
 * Queueing a job id that is queued already decides nothing, so a retried request cannot run twice.
 */
export async function startRun(ctx: AppContext, run: RunInput, meta: Meta, jobId = newResourceId("run")): Promise<Accepted> {
  const agent = await activeAgent(ctx, run.agent_id);
  // A retried request whose job was written already reserves nothing more (queueing it again decides nothing).
  const written = (await ctx.repos.jobs.load(jobId)).state.status !== "none";
  const budgets = written ? [] : await reserveJob(ctx, payerOf(ctx, run.user_id, meta), jobId, meta, agent.billing === "end_user");
  const queued = await ctx.repos.jobs.handle(jobId, {
    type: "QueueJob",
    data: {
      job_id: jobId, kind: "run", session_id: null, message_id: null, agent_id: run.agent_id, user_id: run.user_id,
      input: { content: run.input, attachments: [], media_url: run.media_url, context: null },
      model: run.model, output_schema: run.output_schema ?? agent.output_schema, ...budgetsField(budgets),
    },
  }, meta).catch(async (err) => {
    await releaseJob(ctx, budgets, jobId, meta.appId);
    throw err;
  });
  dispatch(ctx, jobId);
  return { job_id: jobId, message_id: null, session_id: null, queued: false, position: queued.position };
}

async function loadJob(ctx: AppContext, jobId: string): Promise<JobState> {
  const { state } = await ctx.repos.jobs.load(jobId);
  if (state.status === "none") throw new NotFoundError("Job not found", { param: "job_id" }, "job_not_found");
  return state;
}

/** Approves the plan a job is waiting on; the job is handed back to a worker to carry it out. */
export async function approvePlan(ctx: AppContext, jobId: string, meta: Meta, planId?: string): Promise<bigint | null> {
  await loadJob(ctx, jobId);
  const r = await ctx.repos.jobs.handle(jobId, { type: "ApprovePlan", ...(planId !== undefined ? { plan_id: planId } : {}) }, meta);
  dispatch(ctx, jobId);
  return r.position;
}

/** Rejects the plan: nothing of it runs and the job ends cancelled (the turn coordinator frees the session). */
export async function rejectPlan(ctx: AppContext, jobId: string, reason: string | null, meta: Meta, planId?: string): Promise<bigint | null> {
  await loadJob(ctx, jobId);
  const r = await ctx.repos.jobs.handle(jobId, { type: "RejectPlan", reason, ...(planId !== undefined ? { plan_id: planId } : {}) }, meta);
  return r.position;
}

/**
 * Cancels a job. A job no worker is running ends at once; a running one is told to stop (its model
 * request is aborted) and its worker appends the end. Either way the turn coordinator frees the session.
 */
export async function cancelJob(ctx: AppContext, jobId: string, reason: string | null, meta: Meta): Promise<{ position: bigint | null; status: string }> {
  await loadJob(ctx, jobId);
  const r = await ctx.repos.jobs.handle(jobId, (state) => ({ type: "RequestCancel", reason, heldByRunner: ctx.running.isRunning(jobId) && !TERMINAL.has(state.status as never) }), meta);
  if (ctx.running.isRunning(jobId)) ctx.running.abort(jobId);
  return { position: r.position, status: r.state.status };
}

/** The assistant's side of a completed turn, from the job's events. */
export async function replySummary(ctx: AppContext, jobId: string): Promise<ReplySummary> {
  const summary: ReplySummary = { content: "", result: null, tool_calls: [], assets: [] };
  const calls = new Map<string, ReplySummary["tool_calls"][number]>();
  for await (const e of ctx.store.readStream(jobStream(jobId))) {
    const event = jobEvents.decode(e);
    switch (event.type) {
      case "ToolCalled": {
        const call = { call_id: event.data.call_id, name: event.data.name, args: event.data.args, result: null as unknown, error: null as string | null };
        calls.set(call.call_id, call);
        summary.tool_calls.push(call);
        break;
      }
      case "ToolCompleted": {
        const call = calls.get(event.data.call_id);
        if (call) {
          call.result = event.data.result;
          call.error = event.data.error;
        }
        // Every asset the call registered (`asset` alone in events from before tools could return several).
        for (const a of event.data.assets ?? (event.data.asset ? [event.data.asset] : [])) {
          if (typeof a.asset_label === "string") summary.assets.push(a.asset_label);
        }
        break;
      }
      case "JobCompleted":
        summary.content = event.data.content;
        summary.result = event.data.result;
        if (event.data.citations?.length) summary.citations = event.data.citations;
        break;
      default:
        break;
    }
  }
  return summary;
}
