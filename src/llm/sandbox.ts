/**
 * The sandbox provider: deterministic and offline, the default when no model key is configured, so
 * every flow can be tried from the quick start with curl. It reads the conversation and answers by rule:
 *
 * - After tool results: summarises them ("register_asset → asset_1").
 * - A message with an http(s) URL and "register", "save" or "add": calls `register_asset` for it.
 * - `call <tool> {json}`: calls that tool (e.g. an agent's HTTP tool) with those arguments.
 * - With an output schema: answers JSON that satisfies it (or, when the input says "[invalid]", JSON that
 *   does not, to exercise validation failures).
 * - "[fail]": fails like an unavailable provider. "[slow]": streams a long reply slowly.
 * - Anything else: a short reply quoting the message and counting the turns so far; when the message
 *   carries files, one line per file with its name, type and first characters (what it received).
 */
import type { ChatFile, ChatMessage, ChatToolCall, LlmChunk, LlmProvider, LlmRequest } from "./provider.ts";
import { LlmError } from "./provider.ts";

export interface SandboxOptions {
  /** Delay between streamed chunks; "[slow]" messages use ten times this. */
  chunkDelayMs?: number;
}

export class SandboxProvider implements LlmProvider {
  readonly name = "sandbox";
  readonly defaultModel = "sandbox-1";

  constructor(private readonly options: SandboxOptions = {}) {}

  async *stream(request: LlmRequest): AsyncIterable<LlmChunk> {
    const last = request.messages[request.messages.length - 1];
    const userText = [...request.messages].reverse().find((m) => m.role === "user")?.content ?? "";
    const promptTokens = estimateTokens(request.messages.map((m) => m.content).join(" "));
    if (userText.includes("[fail]")) throw new LlmError("provider_unavailable", "The sandbox provider was asked to fail", false);

    let text: string;
    let calls: ChatToolCall[] = [];
    const slow = userText.includes("[slow]");
    if (last?.role === "tool") {
      const results = request.messages.filter((m): m is Extract<ChatMessage, { role: "tool" }> => m.role === "tool" && isAfterLastUser(request.messages, m));
      text = `Done. ${results.map((r) => `${r.name} → ${summarise(r.content)}`).join("; ")}.`;
    } else if (request.outputSchema) {
      const sample = sampleFor(request.outputSchema, userText);
      text = JSON.stringify(userText.includes("[invalid]") ? { unexpected: true } : sample);
    } else {
      calls = plannedCalls(userText, request.tools.map((t) => t.name));
      const turns = request.messages.filter((m) => m.role === "user").length;
      text = calls.length
        ? `I'll ${calls.map((c) => `use ${c.name}`).join(" and ")} for that.`
        : `Sandbox reply to «${userText.slice(0, 200)}». This is message ${turns} of our conversation.` +
          (slow ? " " + "Streaming slowly so you can watch the events arrive one by one. ".repeat(6) : "");
      if (!calls.length) text += filesEcho(request.messages);
    }

    const delay = (this.options.chunkDelayMs ?? 2) * (slow ? 10 : 1);
    for (let i = 0; i < text.length; i += 12) {
      if (request.signal.aborted) throw new LlmError("aborted", "The request was aborted", false);
      if (delay > 0) await Bun.sleep(delay);
      yield { type: "text", delta: text.slice(i, i + 12) };
    }
    for (const call of calls) yield { type: "tool_call", call };
    yield { type: "usage", prompt_tokens: promptTokens, completion_tokens: estimateTokens(text) + calls.length * 20, cached_tokens: 0, reasoning_tokens: 0 };
    yield { type: "finish", reason: calls.length ? "tool_calls" : "stop" };
  }
}

/** What the sandbox says it received of the last user message's files: a line each. */
function filesEcho(messages: ChatMessage[]): string {
  const user = [...messages].reverse().find((m): m is Extract<ChatMessage, { role: "user" }> => m.role === "user");
  if (!user?.files?.length) return "";
  const line = (f: ChatFile) => f.kind === "image"
    ? `- ${f.name} (${f.content_type}, image, ${Math.floor((f.data.length * 3) / 4)} bytes): «${f.data.slice(0, 24)}»`
    : `- ${f.name} (${f.content_type}, text, ${f.text.length} characters${f.truncated ? ", cut" : ""}): «${f.text.slice(0, 120).replace(/\s+/g, " ")}»`;
  return `\nFiles received:\n${user.files.map(line).join("\n")}`;
}

const estimateTokens = (s: string) => Math.max(1, Math.ceil(s.length / 4));

function isAfterLastUser(messages: ChatMessage[], m: ChatMessage): boolean {
  let lastUser = -1;
  messages.forEach((x, i) => { if (x.role === "user") lastUser = i; });
  return messages.indexOf(m) > lastUser;
}

function summarise(content: string): string {
  try {
    const v = JSON.parse(content) as Record<string, unknown>;
    if (v && typeof v === "object") {
      if (typeof v.asset_label === "string") return v.asset_label;
      if (Array.isArray(v.assets) && v.assets.length) return v.assets.map((a: { asset_label?: unknown }) => a?.asset_label ?? "asset").join(", ");
      if (typeof v.error === "string") return `error: ${v.error}`;
    }
  } catch {
    /* plain text */
  }
  return content.length > 80 ? `${content.slice(0, 77)}...` : content;
}

const URL_PATTERN = /https?:\/\/[^\s"'<>)]+/g;

/** Tool calls the sandbox makes for a message, by rule; only tools the agent actually has. */
function plannedCalls(text: string, available: string[]): ChatToolCall[] {
  const calls: ChatToolCall[] = [];
  const explicit = /\bcall\s+([a-zA-Z_][\w-]*)\s*(\{.*\})?/s.exec(text);
  if (explicit && available.includes(explicit[1]!)) {
    let args: unknown = {};
    try {
      args = explicit[2] ? JSON.parse(explicit[2]) : {};
    } catch {
      args = { input: explicit[2] };
    }
    calls.push({ id: `call_${calls.length + 1}`, name: explicit[1]!, args });
    return calls;
  }
  if (available.includes("register_asset") && /\b(register|save|add)\b/i.test(text)) {
    // Each URL once, however often the message names it (a skill's prompt names its inputs twice).
    for (const url of new Set(text.match(URL_PATTERN) ?? [])) {
      calls.push({ id: `call_${calls.length + 1}`, name: "register_asset", args: { url, kind: kindOf(url) } });
    }
  }
  return calls;
}

function kindOf(url: string): string {
  const ext = url.split("?")[0]!.split(".").pop()!.toLowerCase();
  if (["png", "jpg", "jpeg", "gif", "webp", "svg"].includes(ext)) return "image";
  if (["mp4", "mov", "webm"].includes(ext)) return "video";
  if (["mp3", "wav", "ogg", "m4a"].includes(ext)) return "audio";
  return "file";
}

/** A value satisfying a (common subset of) JSON Schema, derived deterministically from the input. */
export function sampleFor(schema: Record<string, unknown>, seed: string): unknown {
  if (Array.isArray(schema.enum) && schema.enum.length) return schema.enum[0];
  if ("const" in schema) return schema.const;
  for (const key of ["oneOf", "anyOf"] as const) {
    const options = schema[key];
    if (Array.isArray(options) && options.length) return sampleFor(options[0] as Record<string, unknown>, seed);
  }
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
  switch (type) {
    case "object": {
      const props = (schema.properties ?? {}) as Record<string, Record<string, unknown>>;
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(props)) out[k] = sampleFor(v, `${seed}:${k}`);
      return out;
    }
    case "array": {
      const min = typeof schema.minItems === "number" ? schema.minItems : 1;
      return Array.from({ length: Math.max(min, 1) }, (_, i) => sampleFor((schema.items ?? {}) as Record<string, unknown>, `${seed}:${i}`));
    }
    case "integer":
    case "number": {
      const min = typeof schema.minimum === "number" ? schema.minimum : 0;
      const max = typeof schema.maximum === "number" ? schema.maximum : min + 100;
      const span = Math.max(0, max - min);
      const value = min + (hash(seed) % (Math.floor(span) + 1));
      return type === "integer" ? Math.ceil(value) : value;
    }
    case "boolean":
      return hash(seed) % 2 === 0;
    case "null":
      return null;
    case "string":
    default: {
      const min = typeof schema.minLength === "number" ? schema.minLength : 0;
      let s = `sample ${seed.slice(0, 40)}`.trim();
      while (s.length < min) s += " sample";
      return typeof schema.maxLength === "number" ? s.slice(0, schema.maxLength) : s;
    }
  }
}

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}
