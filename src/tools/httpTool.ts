/**
 * HTTP tools: an agent declares `{type: "http", name, url, parameters, …}` and a call POSTs the
 * arguments as JSON to that URL (an endpoint the app owns). A JSON reply becomes the tool's result;
 * a non-2xx status, a non-JSON body, a timeout or a network error becomes a tool error the model sees.
 *
 * The server makes these requests on a client's behalf, so they may only reach public addresses:
 * every host is resolved and each address checked (src/net/addressPolicy.ts) before the request and
 * on every redirect, which is followed by hand. Private targets are allowed only as the operator
 * lists them (TOOL_PRIVATE_ALLOWLIST), for development. The reply is read as a stream with a size cap.
 *
 * Residual risk: the request connects by host name after the check, so a name whose DNS answer
 * changes between the check and the connection (DNS rebinding) could still reach a private address;
 * pinning the vetted address would need a connect hook that fetch does not offer.
 */
import { lookup } from "node:dns/promises";
import type { ToolDeclaration } from "../domain/agent/agent.ts";
import { classifyAddress, isIpAddress } from "../net/addressPolicy.ts";
import { ToolError, type Tool } from "./tool.ts";

type HttpDeclaration = Extract<ToolDeclaration, { type: "http" }>;

const MAX_RESPONSE_BYTES = 1024 * 1024;
const MAX_REDIRECTS = 5;

/** Which non-public targets outbound tool requests may reach: `*` for any, or `host` / `host:port` entries. */
export interface OutboundPolicy {
  privateAllowlist: readonly string[];
}

export const PUBLIC_ONLY: OutboundPolicy = { privateAllowlist: [] };

const allowedPrivately = (policy: OutboundPolicy, url: URL): boolean => {
  const host = url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  return policy.privateAllowlist.some((entry) => entry === "*" || entry.toLowerCase() === host || entry.toLowerCase() === `${host}:${port}`);
};

/** Refuses a URL whose scheme is not HTTP(S) or whose host resolves to a non-public address. */
export async function vetOutboundUrl(url: URL, policy: OutboundPolicy, toolName: string): Promise<void> {
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new ToolError(`${toolName} refused: only http and https URLs may be called`);
  if (allowedPrivately(policy, url)) return;
  const host = url.hostname.replace(/^\[|\]$/g, "");
  let addresses: string[];
  try {
    addresses = isIpAddress(host) ? [host] : (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);
  } catch {
    throw new ToolError(`${toolName} could not be reached: ${host} does not resolve`);
  }
  for (const address of addresses) {
    const kind = classifyAddress(address);
    if (kind !== "public") {
      throw new ToolError(`${toolName} refused: ${host} is a ${kind.replace("_", "-")} address (${address}); tools may only call public addresses unless the operator allows it (TOOL_PRIVATE_ALLOWLIST)`);
    }
  }
}

/** Reads a response body as text, refusing it once it passes `max` bytes without reading the rest. */
async function readCapped(res: Response, max: number, toolName: string): Promise<string> {
  if (Number(res.headers.get("content-length") ?? "0") > max) {
    await res.body?.cancel().catch(() => {});
    throw new ToolError(`${toolName} answered more than ${max} bytes`);
  }
  if (!res.body) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel().catch(() => {});
      throw new ToolError(`${toolName} answered more than ${max} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString("utf8");
}

export function httpTool(decl: HttpDeclaration, policy: OutboundPolicy = PUBLIC_ONLY): Tool {
  return {
    name: decl.name,
    description: decl.description,
    parameters: decl.parameters,
    requires_approval: decl.requires_approval ?? false,
    estimated_credits: decl.estimated_credits ?? 0,
    async execute(args, ctx) {
      const timeout = AbortSignal.timeout(decl.timeout_ms ?? 10_000);
      const signal = AbortSignal.any([timeout, ctx.signal]);
      let url = new URL(decl.url);
      let method = "POST";
      let body: string | undefined = JSON.stringify(args ?? {});
      let res: Response | undefined;
      try {
        for (let hop = 0; ; hop++) {
          await vetOutboundUrl(url, policy, decl.name);
          res = await fetch(url, {
            method,
            headers: { "content-type": "application/json", accept: "application/json", ...decl.headers, "x-agentry-job-id": ctx.jobId },
            ...(body !== undefined ? { body } : {}),
            signal,
            redirect: "manual",
          });
          const location = res.status >= 300 && res.status < 400 ? res.headers.get("location") : null;
          if (!location) break;
          await res.body?.cancel().catch(() => {});
          if (hop >= MAX_REDIRECTS) throw new ToolError(`${decl.name} redirected more than ${MAX_REDIRECTS} times`);
          url = new URL(location, url);
          // 307/308 repeat the request as it was; the others become a GET without a body.
          if (res.status !== 307 && res.status !== 308) {
            method = "GET";
            body = undefined;
          }
        }
      } catch (err) {
        if (err instanceof ToolError) throw err;
        if (timeout.aborted) throw new ToolError(`${decl.name} timed out after ${decl.timeout_ms ?? 10_000} ms`);
        if (ctx.signal.aborted) throw err;
        throw new ToolError(`${decl.name} could not be reached: ${(err as Error).message}`);
      }
      const text = await readCapped(res!, MAX_RESPONSE_BYTES, decl.name);
      if (!res!.ok) throw new ToolError(`${decl.name} answered HTTP ${res!.status}`);
      try {
        return { result: text.length ? JSON.parse(text) : null };
      } catch {
        throw new ToolError(`${decl.name} answered something that is not JSON`);
      }
    },
  };
}
