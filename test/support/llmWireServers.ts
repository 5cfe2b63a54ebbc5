/**
 * Local HTTP servers that speak the OpenAI Chat Completions and Anthropic Messages streaming wire
 * formats (SSE), scripted per request: text split into chunks, tool-call arguments split across
 * chunks, usage at the end, or failures — an HTTP status with headers, a disconnect mid-stream, a
 * malformed chunk, a stall. The real `openai` and `@anthropic-ai/sdk` clients talk to them.
 */
export type Script =
  | { kind: "text"; chunks: string[]; usage?: Usage; thinking?: string[] }
  | { kind: "tools"; text?: string[]; calls: Array<{ id: string; name: string; args: string; pieces?: number }>; usage?: Usage }
  | { kind: "status"; status: number; headers?: Record<string, string>; body?: string }
  | { kind: "disconnect"; chunks: string[] }
  | { kind: "malformed"; chunks: string[] }
  | { kind: "stall"; chunks: string[] }
  /** Text chunks `delayMs` apart: a long, steady stream that a cancel can cut off. */
  | { kind: "slow"; chunks: string[]; delayMs: number };

export interface Usage {
  prompt: number;
  completion: number;
  cached?: number;
  reasoning?: number;
}

export interface WireServer {
  baseURL: string;
  requests: Array<{ path: string; headers: Headers; body: any }>;
  /** Streams the client closed before the server finished them (an aborted model request). */
  readonly clientDisconnects: number;
  /** Scripts for the next requests, in order; when empty, a short default text reply. */
  script(...items: Script[]): void;
  /** Holds every request from now on (after recording it) until the returned release is called. */
  hold(): () => void;
  stop(): void;
}

const enc = new TextEncoder();

export interface WireOptions {
  /** Checks each request's credentials (its headers); a refused request is answered 401, as a provider would. */
  authorize?: (headers: Headers) => boolean;
}

function serve(format: "openai" | "anthropic", options: WireOptions = {}): WireServer {
  const queue: Script[] = [];
  let gate: Promise<void> | null = null;
  const requests: WireServer["requests"] = [];
  let clientDisconnects = 0;
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    idleTimeout: 0,
    async fetch(req) {
      const url = new URL(req.url);
      const body = (await req.json().catch(() => null)) as any;
      requests.push({ path: url.pathname, headers: new Headers(req.headers), body });
      if (gate) await gate;
      if (options.authorize && !options.authorize(req.headers)) {
        return Response.json({ error: { message: "Incorrect API key provided", type: "invalid_request_error", code: "invalid_api_key" } }, { status: 401 });
      }
      const item = queue.shift() ?? { kind: "text", chunks: ["Hello", " from the wire server."], usage: { prompt: 10, completion: 5 } };
      if (item.kind === "status") {
        return new Response(item.body ?? JSON.stringify({ error: { message: "secret upstream detail", type: "error" } }), {
          status: item.status,
          headers: { "content-type": "application/json", ...item.headers },
        });
      }
      const events = format === "openai" ? openAiEvents(item, body?.model ?? "m") : anthropicEvents(item, body?.model ?? "m");
      let finished = false;
      const stream = new ReadableStream<Uint8Array>({
        async start(controller) {
          for (const e of events.frames) {
            if (finished) return;
            controller.enqueue(enc.encode(e));
            await Bun.sleep(item.kind === "slow" ? item.delayMs : 1);
          }
          finished = true;
          if (item.kind === "disconnect") return controller.error(new Error("connection dropped"));
          if (item.kind === "stall") return; // never sends another byte
          controller.close();
        },
        cancel() {
          if (!finished) clientDisconnects++;
          finished = true;
        },
      });
      return new Response(stream, { headers: { "content-type": "text/event-stream", "cache-control": "no-cache" } });
    },
  });
  return {
    baseURL: `http://127.0.0.1:${server.port}/v1`,
    requests,
    get clientDisconnects() {
      return clientDisconnects;
    },
    script: (...items) => queue.push(...items),
    hold() {
      const { promise, resolve } = Promise.withResolvers<void>();
      gate = promise;
      return () => {
        if (gate === promise) gate = null;
        resolve();
      };
    },
    stop: () => server.stop(true),
  };
}

export const startOpenAiWireServer = (options?: WireOptions) => serve("openai", options);
export const startAnthropicWireServer = (options?: WireOptions) => serve("anthropic", options);

function openAiEvents(item: Exclude<Script, { kind: "status" }>, model: string): { frames: string[] } {
  const base = { id: "chatcmpl-test", object: "chat.completion.chunk", created: 1_700_000_000, model };
  const frame = (choices: unknown[], extra: Record<string, unknown> = {}) => `data: ${JSON.stringify({ ...base, choices, ...extra })}\n\n`;
  const frames: string[] = [frame([{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }])];
  const texts = item.kind === "tools" ? item.text ?? [] : item.chunks;
  for (const t of texts) frames.push(frame([{ index: 0, delta: { content: t }, finish_reason: null }]));
  if (item.kind === "malformed") frames.push("data: {\"choices\": [ this is not json\n\n");
  if (item.kind === "disconnect" || item.kind === "stall" || item.kind === "malformed") return { frames };
  if (item.kind === "tools") {
    item.calls.forEach((c, index) => {
      frames.push(frame([{ index: 0, delta: { tool_calls: [{ index, id: c.id, type: "function", function: { name: c.name, arguments: "" } }] }, finish_reason: null }]));
      const pieces = c.pieces ?? 3;
      const size = Math.ceil(c.args.length / pieces);
      for (let i = 0; i < c.args.length; i += size) {
        frames.push(frame([{ index: 0, delta: { tool_calls: [{ index, function: { arguments: c.args.slice(i, i + size) } }] }, finish_reason: null }]));
      }
    });
  }
  frames.push(frame([{ index: 0, delta: {}, finish_reason: item.kind === "tools" ? "tool_calls" : "stop" }]));
  const u = ("usage" in item && item.usage) || { prompt: 10, completion: 5 };
  frames.push(frame([], {
    usage: {
      prompt_tokens: u.prompt, completion_tokens: u.completion, total_tokens: u.prompt + u.completion,
      prompt_tokens_details: { cached_tokens: u.cached ?? 0 }, completion_tokens_details: { reasoning_tokens: u.reasoning ?? 0 },
    },
  }));
  frames.push("data: [DONE]\n\n");
  return { frames };
}

function anthropicEvents(item: Exclude<Script, { kind: "status" }>, model: string): { frames: string[] } {
  const ev = (type: string, data: Record<string, unknown>) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
  const u = ("usage" in item && item.usage) || { prompt: 10, completion: 5 };
  const frames = [ev("message_start", { message: {
    id: "msg_test", type: "message", role: "assistant", model, content: [], stop_reason: null, stop_sequence: null,
    usage: { input_tokens: u.prompt - (u.cached ?? 0), output_tokens: 1, cache_read_input_tokens: u.cached ?? 0, cache_creation_input_tokens: 0 },
  } })];
  let index = 0;
  if (item.kind === "text" && item.thinking?.length) {
    frames.push(ev("content_block_start", { index, content_block: { type: "thinking", thinking: "", signature: "" } }));
    for (const t of item.thinking) frames.push(ev("content_block_delta", { index, delta: { type: "thinking_delta", thinking: t } }));
    frames.push(ev("content_block_stop", { index }));
    index++;
  }
  const texts = item.kind === "tools" ? item.text ?? [] : item.chunks;
  if (texts.length) {
    frames.push(ev("content_block_start", { index, content_block: { type: "text", text: "" } }));
    for (const t of texts) frames.push(ev("content_block_delta", { index, delta: { type: "text_delta", text: t } }));
    if (item.kind === "malformed") frames.push("event: content_block_delta\ndata: {not json\n\n");
    if (item.kind === "disconnect" || item.kind === "stall" || item.kind === "malformed") return { frames };
    frames.push(ev("content_block_stop", { index }));
    index++;
  }
  if (item.kind === "tools") {
    for (const c of item.calls) {
      frames.push(ev("content_block_start", { index, content_block: { type: "tool_use", id: c.id, name: c.name, input: {} } }));
      const pieces = c.pieces ?? 3;
      const size = Math.ceil(c.args.length / pieces);
      for (let i = 0; i < c.args.length; i += size) frames.push(ev("content_block_delta", { index, delta: { type: "input_json_delta", partial_json: c.args.slice(i, i + size) } }));
      frames.push(ev("content_block_stop", { index }));
      index++;
    }
  }
  frames.push(ev("message_delta", { delta: { stop_reason: item.kind === "tools" ? "tool_use" : "end_turn", stop_sequence: null }, usage: { output_tokens: u.completion } }));
  frames.push(ev("message_stop", {}));
  return { frames };
}
