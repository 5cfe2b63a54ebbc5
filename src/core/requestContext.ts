/**
 * The request a piece of code runs for, carried across awaits (AsyncLocalStorage), so every log line
 * written while handling a request names its request id without each caller passing it along.
 * Entered once per request by the HTTP shell (src/http/observe.ts); outside a request there is none.
 */
import { AsyncLocalStorage } from "node:async_hooks";

const current = new AsyncLocalStorage<string>();

/**
 * Makes `requestId` the current request for the rest of this execution and everything it awaits or
 * schedules. Used from Elysia's first request hook, where there is no callback to `run` the request in.
 */
export function enterRequest(requestId: string): void {
  current.enterWith(requestId);
}

/** The id of the request being handled, or undefined outside one. */
export function currentRequestId(): string | undefined {
  return current.getStore();
}
