/**
 * One model call of a turn: streams the provider, records text (and thinking, when the agent asks)
 * coalesced to at most about one event per `ms` or `chars`, usage per step, and collects tool calls.
 */
import type { AgentSpec } from "../../domain/agent/agent.ts";
import type { JobCommand, JobState } from "../../domain/job/job.ts";
import type { ChatMessage, ChatToolCall, LlmProvider } from "../../llm/provider.ts";
import type { Tool } from "../../tools/tool.ts";
import type { TokenUsage } from "../../domain/billing/prices.ts";
import { abortedForShutdown } from "./outcome.ts";

/** Appends through the job decider, as the attempt that runs it; several commands go in one write. */
export type Append = (command: JobCommand | readonly JobCommand[]) => Promise<JobState>;

/** A model step's bill: its credits for the app, and `funded_by: "end_user"` when the user's credential paid. */
export interface StepBill {
  credits: number;
  funded_by?: "end_user";
}

export interface Coalescing {
  ms: number;
  chars: number;
}

/** Streams one model call, appending its text coalesced; returns the text and tool calls. */
export async function streamModelStep(
  provider: LlmProvider, model: string, agent: AgentSpec, messages: ChatMessage[], tools: Map<string, Tool>,
  outputSchema: Record<string, unknown> | null, append: Append, step: number, signal: AbortSignal, coalescing: Coalescing,
  /** What the step's tokens cost the app, and who paid the provider (recorded with its usage). */
  billOf: (usage: TokenUsage) => Promise<StepBill>,
): Promise<{ text: string; calls: ChatToolCall[] }> {
  let text = "";
  const calls: ChatToolCall[] = [];
  // Runner options travel with the model's parameters but are not the provider's business.
  const { emit_thinking: emitThinking, context_tokens: _budget, context_strategy: _strategy, ...parameters } =
    agent.model.parameters as { emit_thinking?: boolean; context_tokens?: unknown; context_strategy?: unknown };
  const coalesce = (type: "TextEmitted" | "ThinkingEmitted") => {
    let pending = "";
    let lastFlush = Date.now();
    return {
      add: async (delta: string) => {
        pending += delta;
        if (pending.length >= coalescing.chars || Date.now() - lastFlush >= coalescing.ms) await flush();
      },
      flush: async (then?: JobCommand) => flush(then),
    };
    /** Appends what is pending, and `then` after it in the same write (one commit instead of two). */
    async function flush(then?: JobCommand) {
      if (!pending) {
        if (then) await append(then);
        return;
      }
      const content = pending;
      pending = "";
      lastFlush = Date.now();
      const emitted: JobCommand = type === "TextEmitted" ? { type: "EmitText", step, content } : { type: "EmitThinking", step, content };
      await append(then ? [emitted, then] : emitted);
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
  // Set once the step's usage is recorded: from then on the step counts as made (it was paid for, and
  // its text is in the stream), so a shutdown's abort arriving before the stream returns cannot void it
  // (the job would be handed back with this step discarded, and a resume would stream and bill it again).
  let usageRecorded = false;
  try {
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
        case "usage": {
          // The step's last text and its usage are recorded together: usage is durable at once (it was
          // paid for), and the two cost one commit.
          const tokens = { prompt_tokens: chunk.prompt_tokens, completion_tokens: chunk.completion_tokens, cached_tokens: chunk.cached_tokens ?? 0 };
          const bill = await billOf(tokens);
          await thinkingOut.flush();
          await textOut.flush({ type: "RecordUsage", usage: {
            step, provider: provider.name, model, ...tokens, reasoning_tokens: chunk.reasoning_tokens ?? 0, ...bill,
          } });
          usageRecorded = true;
          break;
        }
        case "finish":
          break;
      }
    }
  } catch (err) {
    if (!(usageRecorded && abortedForShutdown(signal))) throw err;
  }
  await flush();
  return { text, calls };
}
