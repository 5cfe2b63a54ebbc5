/**
 * `GET /metrics`: the Prometheus exposition. On the API port it is an operator's endpoint: it takes
 * the management credential (root token or management JWT) or `METRICS_TOKEN` as a bearer token,
 * never a data-plane API key. `metricsListener` serves the same text on a port of its own
 * (METRICS_PORT, on METRICS_HOST, loopback by default), where no credential is asked unless
 * METRICS_TOKEN is set: the way a worker-only process, which has no API port, is scraped.
 */
import { timingSafeEqual } from "node:crypto";
import { Elysia } from "elysia";
import { UnauthorizedError } from "../../core/errors.ts";
import type { Metrics } from "../../metrics/registry.ts";

export interface MetricsRouteDeps {
  metrics: Metrics;
  /** A bearer token that may scrape (METRICS_TOKEN). */
  token?: string;
  /** Accepts the management credential; throws 401/403 otherwise. */
  authenticateManagement?: (request: Request) => Promise<void>;
}

export function metricsRoutes(deps: MetricsRouteDeps) {
  return new Elysia({ name: "agentry.metrics" }).get("/metrics", async ({ request }) => {
    if (!(deps.token && bearerIs(request, deps.token))) {
      if (!deps.authenticateManagement) throw new UnauthorizedError("Metrics take METRICS_TOKEN as a bearer token", "unauthorized");
      await deps.authenticateManagement(request);
    }
    return new Response(await deps.metrics.text(), { headers: { "content-type": deps.metrics.contentType } });
  }, { detail: { tags: ["Operations"], summary: "Prometheus metrics (management credential or METRICS_TOKEN)", security: [{ managementToken: [] }] } });
}

/** A listener serving only `/metrics` (for worker-only processes, or to keep scrapes off the API port). */
export function metricsListener(metrics: Metrics, options: { port: number; hostname: string; token?: string }) {
  return Bun.serve({
    port: options.port,
    hostname: options.hostname,
    async fetch(request) {
      if (new URL(request.url).pathname !== "/metrics") return new Response("Not found\n", { status: 404 });
      if (options.token && !bearerIs(request, options.token)) {
        return new Response("Unauthorized\n", { status: 401, headers: { "www-authenticate": "Bearer" } });
      }
      return new Response(await metrics.text(), { headers: { "content-type": metrics.contentType } });
    },
  });
}

function bearerIs(request: Request, token: string): boolean {
  const header = request.headers.get("authorization");
  if (!header?.startsWith("Bearer ")) return false;
  const given = Buffer.from(header.slice(7).trim());
  const expected = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}
