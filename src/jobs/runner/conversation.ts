/**
 * What the model is shown: the agent's prompt, the session's completed turns, the job's input, and
 * the job's own transcript so far (so a job resumed after approval continues where it stopped).
 */
import type { AppContext } from "../../app/context.ts";
import type { AgentSpec } from "../../domain/agent/agent.ts";
import { jobEvents } from "../../domain/job/events.ts";
import { sessionEvents } from "../../domain/session/events.ts";
import { jobStream, sessionStream } from "../../domain/streams.ts";
import { StreamNotFoundError } from "../../eventstore/errors.ts";
import type { ChatMessage, ChatToolCall } from "../../llm/provider.ts";

export function systemPrompt(agent: AgentSpec, schema: Record<string, unknown> | null, context: Record<string, unknown> | null): string {
  let prompt = agent.system_prompt;
  if (context && Object.keys(context).length) prompt += `\n\nContext from the application:\n${JSON.stringify(context)}`;
  if (schema) prompt += `\n\nAnswer with a single JSON value that matches this JSON Schema, and nothing else:\n${JSON.stringify(schema)}`;
  return prompt;
}

export function userContent(input: { content: string; attachments: Array<{ type: string; url?: string; asset_label?: string; name?: string }>; media_url: string | null }): string {
  const parts = [input.content];
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

/** The session's completed turns before this job, as chat messages. Cancelled and failed turns are left out. */
export async function sessionHistory(ctx: AppContext, sessionId: string, jobId: string): Promise<ChatMessage[]> {
  const messages: ChatMessage[] = [];
  const userMessages = new Map<string, string>();
  try {
    for await (const e of ctx.store.readStream(sessionStream(sessionId))) {
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
export async function jobTranscript(ctx: AppContext, jobId: string) {
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
  for await (const e of ctx.store.readStream(jobStream(jobId))) {
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
