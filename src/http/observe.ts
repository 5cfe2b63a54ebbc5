/**
 * What the HTTP shell records about every request once it is answered: the request's series in the
 * metrics (by route pattern, never the raw path, so ids never become labels) and one access-log line.
 * The start time rides on Elysia's per-request context, so nothing is allocated for it.
 */
import { Elysia, StatusMap } from "elysia";
import type { Logger } from "../core/logger.ts";
import type { Metrics } from "../metrics/registry.ts";
import { principalOf } from "./auth.ts";

export interface ObserveOptions {
  metrics?: Metrics;
  /** Where access-log lines go (info level); none turns the access log off (ACCESS_LOG=false). */
  accessLog?: Logger;
}

const STARTED = Symbol("agentry.started");
/** Requests no route matched (404s, and refusals answered before routing) share one label. */
const UNMATCHED = "unmatched";

export function observe(options: ObserveOptions) {
  const { metrics, accessLog } = options;
  const plugin = new Elysia({ name: "agentry.observe" });
  if (!metrics && !accessLog) return plugin;
  return plugin
    .onRequest((c) => {
      (c as unknown as Record<symbol, number>)[STARTED] = performance.now();
    })
    .onAfterResponse({ as: "global" }, (c) => {
      const started = (c as unknown as Record<symbol, number | undefined>)[STARTED];
      const ms = started === undefined ? 0 : performance.now() - started;
      const { request, set } = c;
      const response = (c as { responseValue?: unknown }).responseValue;
      const status = response instanceof Response ? response.status : statusCode(set.status);
      const route = (c as { route?: string }).route || UNMATCHED;
      metrics?.httpRequest(request.method, route, status, ms / 1000);
      if (accessLog) {
        const principal = principalOf(request);
        const length = response instanceof Response ? response.headers.get("content-length") : null;
        accessLog.info("request", {
          request_id: set.headers["x-request-id"],
          method: request.method,
          route,
          status,
          duration_ms: Math.round(ms * 1000) / 1000,
          ...(length !== null ? { bytes: Number(length) } : {}),
          ...(principal ? { app_id: principal.appId, key_id: principal.keyId } : {}),
        });
      }
    });
}

function statusCode(status: number | string | undefined): number {
  if (typeof status === "number") return status;
  if (status === undefined) return 200;
  return (StatusMap as Record<string, number>)[status] ?? 200;
}
