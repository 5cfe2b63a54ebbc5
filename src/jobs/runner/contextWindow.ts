/**
 * Context management: a long conversation keeps working when its history no longer fits the model's
 * context budget.
 *
 * The budget (`model.parameters.context_tokens`, else CONTEXT_BUDGET_TOKENS) covers everything sent:
 * the system prompt, the history, the new message and the job's own steps. When the history does not
 * fit, the strategy (`model.parameters.context_strategy`, else CONTEXT_STRATEGY) decides:
 *
 * - `summarize`: the newest turns that fit half of what the history may use are sent as they were; the
 *   older ones are folded, with the previous summary if any, into a new summary by the model. The
 *   summary is recorded on the session (HistorySummarized), so later turns start from it instead of
 *   summarising again; the half left free lets the conversation grow for a while before the next one.
 * - `drop`: the newest turns that fit are sent; older ones are left out.
 *
 * Whenever less than the whole history is sent, the job records what the model was shown
 * (ContextPrepared). Tokens are estimated (four characters to a token, plus a little per message):
 * keep the budget under the model's window by a margin.
 */
import { fileAsText, LlmError, type ChatFile, type ChatMessage, type LlmProvider } from "../../llm/provider.ts";

export type ContextStrategy = "summarize" | "drop";

export interface ContextSettings {
  budgetTokens: number;
  strategy: ContextStrategy;
}

/** A completed turn of the session: the user's message and the assistant's reply. */
export interface HistoryTurn {
  message_id: string;
  user: string;
  assistant: string;
}

export interface HistorySummary {
  text: string;
  /** The last turn the summary covers. */
  through_message_id: string;
  /** How many turns it covers, in all. */
  turns: number;
}

export const MIN_CONTEXT_TOKENS = 256;
export const DEFAULT_CONTEXT: ContextSettings = { budgetTokens: 100_000, strategy: "summarize" };

/** An agent's settings (`model.parameters.context_tokens`, `context_strategy`) over the server's. */
export function contextSettings(parameters: Record<string, unknown>, defaults: ContextSettings): ContextSettings {
  const tokens = parameters.context_tokens;
  const strategy = parameters.context_strategy;
  return {
    budgetTokens: typeof tokens === "number" && Number.isInteger(tokens) && tokens >= MIN_CONTEXT_TOKENS ? tokens : defaults.budgetTokens,
    strategy: strategy === "summarize" || strategy === "drop" ? strategy : defaults.strategy,
  };
}
const PER_MESSAGE_TOKENS = 4;

/** An estimate of the tokens a text costs a model (no tokenizer for every provider is at hand). */
export const estimateTokens = (text: string): number => Math.ceil(text.length / 4) + PER_MESSAGE_TOKENS;
const turnTokens = (t: HistoryTurn): number => estimateTokens(t.user) + estimateTokens(t.assistant);
/**
 * What an image costs a model, roughly: providers count a large image as one to two thousand tokens
 * whatever its bytes (OpenAI about 765 at high detail for 1024×1024, Anthropic about 1,600 at its largest).
 */
export const IMAGE_TOKENS = 1_600;

const fileTokens = (f: ChatFile): number => (f.kind === "image" ? IMAGE_TOKENS : estimateTokens(fileAsText(f)));

/** The estimated tokens of messages as sent: their text, tool calls, and a user message's files. */
export const messagesTokens = (messages: readonly ChatMessage[]): number =>
  messages.reduce((n, m) => n + estimateTokens(m.content)
    + ("tool_calls" in m && m.tool_calls ? estimateTokens(JSON.stringify(m.tool_calls)) : 0)
    + ("files" in m && m.files ? m.files.reduce((t, f) => t + fileTokens(f), 0) : 0), 0);

export interface ContextPlan {
  /** The summary to show, or null. */
  summary: HistorySummary | null;
  /** Turns sent as they were, oldest first. */
  sent: HistoryTurn[];
  /** Turns to fold into a new summary before sending (summarize strategy only). */
  toSummarize: HistoryTurn[];
  dropped: number;
  /** Whether anything was left out or replaced: the job then records what it sent. */
  trimmed: boolean;
}

/**
 * What of the history to send, given the tokens the rest of the request takes (`fixedTokens`). Pure:
 * the same history and budget always give the same plan.
 */
export function planContext(turns: readonly HistoryTurn[], summary: HistorySummary | null, fixedTokens: number, settings: ContextSettings): ContextPlan {
  const room = Math.max(0, settings.budgetTokens - fixedTokens);
  const summaryTokens = summary ? estimateTokens(summary.text) : 0;
  const all = summaryTokens + turns.reduce((n, t) => n + turnTokens(t), 0);
  if (all <= room) return { summary, sent: [...turns], toSummarize: [], dropped: 0, trimmed: summary !== null };
  if (settings.strategy === "summarize") {
    // Recent turns get half the room; the rest of it is for the summary that replaces the older ones.
    const recent = newestWithin(turns, Math.floor(room / 2));
    return { summary, sent: recent, toSummarize: turns.slice(0, turns.length - recent.length), dropped: 0, trimmed: true };
  }
  const keepSummary = summary !== null && summaryTokens <= room;
  const recent = newestWithin(turns, room - (keepSummary ? summaryTokens : 0));
  return { summary: keepSummary ? summary : null, sent: recent, toSummarize: [], dropped: turns.length - recent.length, trimmed: true };
}

function newestWithin(turns: readonly HistoryTurn[], tokens: number): HistoryTurn[] {
  let used = 0;
  let from = turns.length;
  while (from > 0 && used + turnTokens(turns[from - 1]!) <= tokens) used += turnTokens(turns[--from]!);
  return turns.slice(from);
}

/** The history as the model sees it: the summary (as a system note), then the turns. */
export function historyMessages(summary: HistorySummary | null, turns: readonly HistoryTurn[]): ChatMessage[] {
  const messages: ChatMessage[] = [];
  if (summary) messages.push({ role: "system", content: `Summary of the earlier conversation (${summary.turns} turns):\n${summary.text}` });
  for (const t of turns) messages.push({ role: "user", content: t.user }, { role: "assistant", content: t.assistant });
  return messages;
}

const SUMMARY_INSTRUCTIONS =
  "You summarise conversations for an assistant that will continue them. Keep the facts, names, numbers, " +
  "decisions, preferences and open questions; drop small talk. Answer with the summary only, in plain prose.";

/**
 * Asks the model for a summary of `turns` (after `previous`, if any), at most `maxTokens` long (the
 * answer is cut there). Returns the text and the step's token usage.
 */
export async function summarize(
  provider: LlmProvider, model: string, previous: HistorySummary | null, turns: readonly HistoryTurn[], maxTokens: number, signal: AbortSignal,
): Promise<{ text: string; usage: { prompt_tokens: number; completion_tokens: number; cached_tokens: number; reasoning_tokens: number } | null }> {
  const transcript = turns.map((t) => `User: ${t.user}\nAssistant: ${t.assistant}`).join("\n\n");
  const request = (previous ? `The summary so far:\n${previous.text}\n\nThe conversation since:\n` : "The conversation:\n") + transcript +
    // Asked for well within what the cut below keeps (4 characters a token; long words and numbers run longer).
    `\n\nWrite the updated summary, in at most ${Math.max(20, Math.floor(maxTokens * 0.5))} words.`;
  let text = "";
  let usage = null;
  for await (const chunk of provider.stream({
    model, messages: [{ role: "system", content: SUMMARY_INSTRUCTIONS }, { role: "user", content: request }],
    tools: [], outputSchema: null, parameters: {}, signal,
  })) {
    if (chunk.type === "text") text += chunk.delta;
    else if (chunk.type === "usage") {
      usage = { prompt_tokens: chunk.prompt_tokens, completion_tokens: chunk.completion_tokens, cached_tokens: chunk.cached_tokens ?? 0, reasoning_tokens: chunk.reasoning_tokens ?? 0 };
    }
  }
  if (!text.trim()) throw new LlmError("provider_error", "The model answered the summary request with nothing", false);
  const limit = maxTokens * 4;
  return { text: text.length > limit ? `${text.slice(0, limit)} […]` : text.trim(), usage };
}
