/**
 * The console reads and acts through the management API itself, called in process: every page is a
 * client of the same routes an operator's scripts use, so the console has no access rules, queries or
 * validation of its own to drift from the API's. A request built here carries no token; the principal
 * of the console login it acts for is attached to the Request object, which only this module creates,
 * and the management authenticator takes it from there (see `principalOf`, wired in src/main.ts).
 */
import type { ManagementPrincipal } from "../auth/management.ts";
import { requestIdOf } from "../http/requestGuard.ts";

export interface ApiAnswer<T = any> {
  status: number;
  body: T;
}

export class InProcessApi {
  private readonly principals = new WeakMap<Request, ManagementPrincipal>();
  private handler: ((request: Request) => Promise<Response>) | null = null;

  /** Gives the assembled HTTP application to call (it is built after the console's routes). */
  attach(handle: (request: Request) => Promise<Response>): void {
    this.handler = handle;
  }

  /** The principal a request made here acts for; undefined for any other request. */
  principalOf(request: Request): ManagementPrincipal | undefined {
    return this.principals.get(request);
  }

  /**
   * Calls `method path` as `principal`. The console request's id goes along, so the events an action
   * writes carry the request id the operator's browser saw.
   */
  async call<T = any>(principal: ManagementPrincipal, from: Request, method: "GET" | "POST", path: string, body?: unknown): Promise<ApiAnswer<T>> {
    if (!this.handler) throw new Error("InProcessApi: no application attached");
    const headers: Record<string, string> = { accept: "application/json" };
    const requestId = requestIdOf(from);
    if (requestId) headers["x-request-id"] = requestId;
    if (body !== undefined) headers["content-type"] = "application/json";
    const request = new Request(new URL(path, new URL(from.url).origin).href, {
      method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    this.principals.set(request, principal);
    const response = await this.handler(request);
    const text = await response.text();
    let parsed: unknown = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = { error: { code: "unreadable_answer", message: text.slice(0, 200) } };
    }
    return { status: response.status, body: parsed as T };
  }
}
