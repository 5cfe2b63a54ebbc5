/**
 * HTTP tools: an agent declares `{type: "http", name, url, parameters, …}` and a call POSTs the
 * arguments as JSON to that URL (an endpoint the app owns). A JSON reply becomes the tool's result;
 * a non-2xx status, a non-JSON body, a timeout or a network error becomes a tool error the model sees.
 */
import type { ToolDeclaration } from "../domain/agent/agent.ts";
import { ToolError, type Tool } from "./tool.ts";

type HttpDeclaration = Extract<ToolDeclaration, { type: "http" }>;

const MAX_RESPONSE_BYTES = 1024 * 1024;

export function httpTool(decl: HttpDeclaration): Tool {
  return {
    name: decl.name,
    description: decl.description,
    parameters: decl.parameters,
    requires_approval: decl.requires_approval ?? false,
    estimated_credits: decl.estimated_credits ?? 0,
    async execute(args, ctx) {
      const timeout = AbortSignal.timeout(decl.timeout_ms ?? 10_000);
      let res: Response;
      try {
        res = await fetch(decl.url, {
          method: "POST",
          headers: { "content-type": "application/json", accept: "application/json", ...decl.headers, "x-agentry-job-id": ctx.jobId },
          body: JSON.stringify(args ?? {}),
          signal: AbortSignal.any([timeout, ctx.signal]),
          redirect: "error",
        });
      } catch (err) {
        if (timeout.aborted) throw new ToolError(`${decl.name} timed out after ${decl.timeout_ms ?? 10_000} ms`);
        if (ctx.signal.aborted) throw err;
        throw new ToolError(`${decl.name} could not be reached: ${(err as Error).message}`);
      }
      const text = await res.text();
      if (text.length > MAX_RESPONSE_BYTES) throw new ToolError(`${decl.name} answered more than ${MAX_RESPONSE_BYTES} bytes`);
      if (!res.ok) throw new ToolError(`${decl.name} answered HTTP ${res.status}`);
      try {
        return { result: text.length ? JSON.parse(text) : null };
      } catch {
        throw new ToolError(`${decl.name} answered something that is not JSON`);
      }
    },
  };
}
