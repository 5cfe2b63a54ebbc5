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
 */
import type { ToolDeclaration } from "../domain/agent/agent.ts";
import { guardedFetch, OutboundError, PUBLIC_ONLY, type OutboundPolicy, type ResolveHost } from "../net/outbound.ts";
import { ToolError, type Tool } from "./tool.ts";

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
      try {
        res = await guardedFetch(
          new URL(decl.url),
          {
            method: "POST",
            headers: { "content-type": "application/json", accept: "application/json", [JOB_HEADER]: ctx.jobId },
            originHeaders: appHeaders,
            body: JSON.stringify(args ?? {}),
            signal,
          },
          { policy, maxBytes: MAX_RESPONSE_BYTES, maxRedirects: MAX_REDIRECTS, ...(options.resolve ? { resolve: options.resolve } : {}) },
        );
      } catch (err) {
        if (err instanceof OutboundError) throw new ToolError(`${decl.name} ${err.message}`);
        if (ctx.signal.aborted) throw err;
        if (timeout.aborted) throw new ToolError(`${decl.name} timed out after ${timeoutMs} ms`);
        throw new ToolError(`${decl.name} could not be reached: ${(err as Error).message}`);
      }
      if (!res.ok) throw new ToolError(`${decl.name} answered HTTP ${res.status}`);
      try {
        return { result: res.text.length ? JSON.parse(res.text) : null };
      } catch {
        throw new ToolError(`${decl.name} answered something that is not JSON`);
      }
    },
  };
}
