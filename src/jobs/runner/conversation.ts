/**
 * What the model is shown: the agent's prompt, the session's completed turns, the job's input, and
 * the job's own transcript so far (so a job resumed after approval continues where it stopped).
 */
import type { AppContext } from "../../app/context.ts";
import { effectivePrompt, type AgentSpec, type AgentState } from "../../domain/agent/agent.ts";
import type { AgentRanWith } from "../../domain/job/job.ts";
import { jobEvents } from "../../domain/job/events.ts";
import { sessionEvents } from "../../domain/session/events.ts";
import { jobStream, sessionStream } from "../../domain/streams.ts";
import { StreamNotFoundError } from "../../eventstore/errors.ts";
import type { ChatMessage, ChatToolCall } from "../../llm/provider.ts";
import type { HistorySummary, HistoryTurn } from "./contextWindow.ts";

/**
 * What an attempt records on its JobStarted about the agent it runs with (see JOB_EVENTS): the agent
 * stream's revision it loaded, and the hash of the effective prompt, so an auditor can match each turn
 * to the override or default it ran with. Nothing for an agent that is gone (the job then fails).
 */
export function agentRanWith(state: AgentState, revision: bigint): AgentRanWith | undefined {
  if (state.status !== "active" || !state.spec) return undefined;
  return {
    agent_version: Number(revision),
    system_prompt_sha256: new Bun.CryptoHasher("sha256").update(effectivePrompt(state)).digest("hex"),
    prompt_overridden: state.promptOverride !== null,
  };
}

export function systemPrompt(agent: AgentSpec, schema: Record<string, unknown> | null, context: Record<string, unknown> | null): string {
  let prompt = agent.system_prompt;
  if (context && Object.keys(context).length) prompt += `\n\nContext from the application:\n${JSON.stringify(context)}`;
  if (schema) prompt += `\n\nAnswer with a single JSON value that matches this JSON Schema, and nothing else:\n${JSON.stringify(schema)}`;
  return prompt;
}

export function userContent(input: { content: string; attachments: Array<{ type: string; url?: string; asset_label?: string; name?: string }>; media_url: string | null; skill?: { prompt: string } }): string {
  // A turn that runs a skill is asked to, in the skill's own words with its inputs filled in; what the user wrote follows.
  const parts = [input.skill ? joinText(input.skill.prompt, input.content) : input.content];
  if (input.media_url) parts.push(`[media: ${input.media_url}]`);
  for (const a of input.attachments) parts.push(`[attachment${a.asset_label ? ` ${a.asset_label}` : ""}${a.name ? ` ${a.name}` : ""}${a.url ? ` ${a.url}` : ""}]`);
  return parts.join("\n");
}

/** Texts of successive model calls, kept apart as paragraphs. */
export const joinText = (a: string, b: string): string => (a && b ? `${a}\n\n${b}` : a || b);

export function planTitle(calls: ChatToolCall[]): string {
  const names = [...new Set(calls.map((c) => c.name))];
  return `Run ${names.join(", ")} (${calls.length} step${calls.length === 1 ? "" : "s"})`;
}

/**
 * A session's conversation folded up to `revision`: its latest summary, the completed turns after it,
 * and user messages awaiting their turn's end.
 */
interface HistoryFold {
  revision: bigint;
  summary: HistorySummary | null;
  turns: HistoryTurn[];
  pending: Map<string, { message_id: string; user: string }>;
}

/**
 * Folded histories per store and session (least recently used dropped first), brought up to date by
 * reading only the session's events after the fold: a turn reads its own few new events, not the
 * whole conversation again, so a long session does not cost more per turn as it grows.
 */
const histories = new WeakMap<object, Map<string, HistoryFold>>();
const HISTORIES_KEPT = 1000;

/**
 * The session's history before this job: its latest summary, and the completed turns after it.
 * Cancelled and failed turns are left out.
 */
export async function sessionHistory(ctx: AppContext, sessionId: string): Promise<{ summary: HistorySummary | null; turns: HistoryTurn[] }> {
  let folds = histories.get(ctx.store);
  if (!folds) histories.set(ctx.store, (folds = new Map()));
  const fold: HistoryFold = folds.get(sessionId) ?? { revision: -1n, summary: null, turns: [], pending: new Map() };
  folds.delete(sessionId);
  try {
    for await (const e of ctx.store.readStream(sessionStream(sessionId), { fromRevision: fold.revision + 1n })) {
      const event = sessionEvents.decode(e);
      fold.revision = e.revision;
      if (event.type === "MessageSent") {
        fold.pending.set(event.data.job_id, { message_id: event.data.message_id, user: userContent({ content: event.data.content, attachments: event.data.attachments, media_url: null, skill: event.data.skill }) });
      } else if (event.type === "TurnEnded") {
        const sent = fold.pending.get(event.data.job_id);
        fold.pending.delete(event.data.job_id);
        if (event.data.outcome === "completed" && event.data.reply && sent !== undefined) {
          fold.turns.push({ message_id: sent.message_id, user: sent.user, assistant: event.data.reply.content });
        }
      } else if (event.type === "HistorySummarized") {
        // The turns it covers are shown through it from now on: only those after it are kept.
        const through = fold.turns.findIndex((t) => t.message_id === event.data.through_message_id);
        fold.turns = fold.turns.slice(through + 1);
        fold.summary = { text: event.data.summary, through_message_id: event.data.through_message_id, turns: event.data.turns };
      }
    }
  } catch (err) {
    if (!(err instanceof StreamNotFoundError)) throw err;
    return { summary: null, turns: [] };
  }
  folds.set(sessionId, fold);
  if (folds.size > HISTORIES_KEPT) folds.delete(folds.keys().next().value!);
  // This job's own message has no TurnEnded yet, so it is not among the completed turns.
  return { summary: fold.summary, turns: [...fold.turns] };
}

/**
 * What this job has already said and done, rebuilt from its stream (for resumes after an approval or a
 * release). A release that cut a model call voids that step's text (the resume streams it again); one
 * that stopped among a step's tool calls names them all, and `pending` lists them for the resume to
 * finish (those without a ToolCompleted).
 */
export async function jobTranscript(ctx: AppContext, jobId: string) {
  const steps = new Map<number, { text: string; calls: ChatToolCall[] }>();
  const results = new Map<string, ChatMessage>();
  const called = new Set<string>();
  let pending: { step: number; calls: ChatToolCall[] } | null = null;
  const stepOf = (n: number) => {
    let s = steps.get(n);
    if (!s) steps.set(n, (s = { text: "", calls: [] }));
    return s;
  };
  for await (const e of ctx.store.readStream(jobStream(jobId))) {
    const event = jobEvents.decode(e);
    if (event.type === "TextEmitted") {
      stepOf(event.data.step).text += event.data.content;
    } else if (event.type === "ToolCalled") {
      called.add(event.data.call_id);
      const s = stepOf(event.data.step);
      if (!s.calls.some((c) => c.id === event.data.call_id)) s.calls.push({ id: event.data.call_id, name: event.data.name, args: event.data.args });
    } else if (event.type === "PlanProposed") {
      stepOf(event.data.step).calls = event.data.steps.map((p) => ({ id: p.call_id, name: p.tool, args: p.args }));
    } else if (event.type === "ToolCompleted") {
      results.set(event.data.call_id, { role: "tool", tool_call_id: event.data.call_id, name: event.data.name, content: JSON.stringify(event.data.error ? { error: event.data.error } : event.data.result) });
    } else if (event.type === "JobReleased") {
      if (event.data.discarded_step !== null) steps.delete(event.data.discarded_step);
      pending = null;
      if (event.data.tool_calls.length) {
        const calls = event.data.tool_calls.map((c) => ({ id: c.call_id, name: c.name, args: c.args }));
        stepOf(event.data.step).calls = calls;
        pending = { step: event.data.step, calls };
      }
    }
  }
  const messages: ChatMessage[] = [];
  let text = "";
  let lastStep = 0;
  for (const n of [...steps.keys()].sort((a, b) => a - b)) {
    const s = steps.get(n)!;
    lastStep = n;
    text = joinText(text, s.text);
    messages.push(s.calls.length ? { role: "assistant", content: s.text, tool_calls: s.calls } : { role: "assistant", content: s.text });
    for (const c of s.calls) {
      const r = results.get(c.id);
      if (r) messages.push(r);
    }
  }
  return { messages, lastStep, text, completed: new Set(results.keys()), called, pending };
}
