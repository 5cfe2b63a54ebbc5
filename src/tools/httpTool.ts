/**
 * HTTP tools: an agent declares `{type: "http", name, url, parameters, …}` and a call POSTs the
 * arguments as JSON to that URL (an endpoint the app owns). A JSON reply becomes the tool's result;
 * a non-2xx status, a non-JSON body, a timeout or a network error becomes a tool error the model sees.
 *
 * The server makes these requests on a client's behalf, so they go through the outbound guard
 * (src/net/outbound.ts): public addresses only, checked after DNS and on every redirect, the
 * connection pinned to the checked address, the reply capped while it streams. Private targets are
 * allowed only as the operator lists them (TOOL_PRIVATE_ALLOWLIST), for development.
 *
 * Header values are stored sealed (src/app/agentSecrets.ts): they are opened for each call, through
 * `openHeader`, and never logged or put in an error.
 *
 * An answer may carry more than the result (docs/api.md, "HTTP tools"):
 * - `assets` at the top level of a JSON object answer: assets to register (src/tools/toolOutput.ts);
 * - an `application/x-ndjson` answer streams events while the tool works, one JSON object a line —
 *   `{"type": "progress" | "info" | "canvas_op", …}` — recorded on the job as they arrive, then ends
 *   with one `{"type": "result", "result": …, "assets"?: […]}` or `{"type": "error", "message": "…"}`.
 */
import type { ToolDeclaration } from "../domain/agent/agent.ts";
import { guardedFetch, OutboundError, PUBLIC_ONLY, type OutboundPolicy, type ResolveHost } from "../net/outbound.ts";
import { AppError } from "../core/errors.ts";
import { ToolError, type Tool, type ToolContext, type ToolResult } from "./tool.ts";

export { PUBLIC_ONLY, type OutboundPolicy };

type HttpDeclaration = Extract<ToolDeclaration, { type: "http" }>;

export const MAX_RESPONSE_BYTES = 1024 * 1024;
const MAX_REDIRECTS = 5;
const JOB_HEADER = "x-agentry-job-id";

/** What the guard needs besides the policy; tests substitute the resolver to simulate DNS answers. */
export interface HttpToolOptions {
  resolve?: ResolveHost;
  /** Opens a stored (sealed) header value for the call; values are sent as stored without it. */
  openHeader?: (value: string) => Promise<string>;
}

export function httpTool(decl: HttpDeclaration, policy: OutboundPolicy = PUBLIC_ONLY, options: HttpToolOptions = {}): Tool {
  // The app's headers may carry its credentials: they go to its origin only, and cannot replace ours.
  const storedHeaders = Object.entries(decl.headers ?? {}).filter(([name]) => !["host", JOB_HEADER].includes(name.toLowerCase()));
  const open = options.openHeader ?? ((value: string) => Promise.resolve(value));
  return {
    name: decl.name,
    description: decl.description,
    parameters: decl.parameters,
    requires_approval: decl.requires_approval ?? false,
    estimated_credits: decl.estimated_credits ?? 0,
    async execute(args, ctx) {
      const timeoutMs = decl.timeout_ms ?? 10_000;
      const timeout = AbortSignal.timeout(timeoutMs);
      const signal = AbortSignal.any([timeout, ctx.signal]);
      let appHeaders: Record<string, string>;
      try {
        appHeaders = Object.fromEntries(await Promise.all(storedHeaders.map(async ([name, value]) => [name, await open(value)] as const)));
      } catch {
        // Which header, not why: nothing of a secret goes into what the model and the events see.
        throw new ToolError(`${decl.name} could not be called: its stored headers could not be opened`);
      }
      let res;
      let streamed: NdjsonReader | null = null;
      try {
        res = await guardedFetch(
          new URL(decl.url),
          {
            method: "POST",
            headers: { "content-type": "application/json", accept: "application/json, application/x-ndjson", [JOB_HEADER]: ctx.jobId },
            originHeaders: appHeaders,
            body: JSON.stringify(args ?? {}),
            signal,
          },
          {
            policy, maxBytes: MAX_RESPONSE_BYTES, maxRedirects: MAX_REDIRECTS, ...(options.resolve ? { resolve: options.resolve } : {}),
            onResponse: (status, headers) => {
              if (status < 200 || status >= 300 || !NDJSON.test(headers.get("content-type") ?? "")) return null;
              const reader = ndjsonReader(decl.name, ctx);
              streamed = reader;
              return reader.push;
            },
          },
        );
      } catch (err) {
        // What the stream's lines led to (a malformed line, a refused event, a cancel) stands as it is.
        if (err instanceof ToolError || err instanceof AppError) throw err;
        if (err instanceof OutboundError) throw new ToolError(`${decl.name} ${err.message}`);
        if (ctx.signal.aborted) throw err;
        if (timeout.aborted) throw new ToolError(`${decl.name} timed out after ${timeoutMs} ms`);
        throw new ToolError(`${decl.name} could not be reached: ${(err as Error).message}`);
      }
      if (!res.ok) throw new ToolError(`${decl.name} answered HTTP ${res.status}`);
      if (streamed) return (streamed as NdjsonReader).end();
      let answer: unknown;
      try {
        answer = res.text.length ? JSON.parse(res.text) : null;
      } catch {
        throw new ToolError(`${decl.name} answered something that is not JSON`);
      }
      return splitAssets(answer);
    },
  };
}

const NDJSON = /^application\/(x-)?ndjson\s*(;|$)/i;

/** `assets` at the top level of a JSON object answer is the tool's assets; the rest is its result. */
function splitAssets(answer: unknown): ToolResult {
  if (answer === null || typeof answer !== "object" || Array.isArray(answer) || !Object.hasOwn(answer, "assets")) return { result: answer };
  const { assets, ...rest } = answer as Record<string, unknown>;
  return { result: rest, assets };
}

interface NdjsonReader {
  push(chunk: Uint8Array): Promise<void>;
  /** The call's outcome once the body has ended. */
  end(): ToolResult;
}

/**
 * Reads an NDJSON answer line by line as it arrives: events are recorded on the job at once (through
 * the call's context, which checks them), and the last line must be the result or an error.
 */
function ndjsonReader(name: string, ctx: ToolContext): NdjsonReader {
  const decoder = new TextDecoder();
  let buffer = "";
  let lineNo = 0;
  let final: { result: ToolResult } | { error: string } | null = null;
  const line = async (raw: string) => {
    lineNo++;
    const text = raw.trim();
    if (!text) return;
    if (final) throw new ToolError(`${name} streamed a line after its result (line ${lineNo})`);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new ToolError(`${name} streamed a line that is not JSON (line ${lineNo})`);
    }
    const obj = value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
    switch (obj?.type) {
      case "result": {
        const extra = Object.keys(obj).filter((k) => !["type", "result", "assets"].includes(k));
        if (extra.length) throw new ToolError(`${name} streamed a result line with unknown fields: ${extra.slice(0, 5).join(", ")} (line ${lineNo})`);
        final = { result: { result: obj.result ?? null, ...(Object.hasOwn(obj, "assets") ? { assets: obj.assets } : {}) } };
        return;
      }
      case "error":
        final = { error: typeof obj.message === "string" && obj.message ? obj.message.slice(0, 1000) : "failed" };
        return;
      case "progress":
      case "info":
      case "canvas_op":
        // Checked (and refused past the per-call cap) by the call's context.
        if (ctx.emit) await ctx.emit(obj as never);
        return;
      default:
        throw new ToolError(`${name} streamed a line whose type is not progress, info, canvas_op, result or error (line ${lineNo})`);
    }
  };
  return {
    async push(chunk) {
      buffer += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const raw = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        await line(raw);
      }
    },
    end() {
      const rest = (buffer + decoder.decode()).trim();
      if (rest) throw new ToolError(`${name} ended its stream in the middle of a line`);
      if (!final) throw new ToolError(`${name} ended its stream without a result line`);
      if ("error" in final) throw new ToolError(`${name} failed: ${final.error}`);
      return final.result;
    },
  };
}
