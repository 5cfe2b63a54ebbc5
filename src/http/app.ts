/** Assembles the HTTP application from its route modules. */
import { swagger } from "@elysiajs/swagger";
import { Elysia } from "elysia";
import type { Logger } from "../core/logger.ts";
import type { EventStore } from "../eventstore/port.ts";
import type { ProjectionRunner } from "../projections/runner.ts";
import { UnavailableError } from "../core/errors.ts";
import { errorHandler, type ErrorDialect } from "./errors.ts";
import { requestGuard, type StreamedBodyRoute } from "./requestGuard.ts";
import { healthRoutes } from "./routes/health.ts";
import type { Metrics } from "../metrics/registry.ts";
import { observe } from "./observe.ts";
import { metricsRoutes } from "./routes/metrics.ts";

export interface AppDeps {
  store: EventStore;
  runner: ProjectionRunner;
  logger: Logger;
  version: string;
  startedAt?: number;
  maxBodyBytes?: number;
  /** How long a request body may take to arrive. */
  bodyTimeoutMs?: number;
  /** Checks credentials for the API routes (`/v1`), before the body is read; none means open. */
  authenticate?: (request: Request) => void | Promise<void>;
  /**
   * Run on `/v1` requests once `authenticate` has passed: charges the caller's rate limits, writing the
   * RateLimit headers into the response's `headers`, and throws 429 when over (see src/http/rateLimit.ts).
   */
  rateLimit?: (request: Request, headers: Record<string, string | number>) => void | Promise<void>;
  /** Checks credentials for the management plane (`/v1/apps`); none means it is not served. */
  authenticateManagement?: (request: Request) => Promise<void>;
  /** Routes whose bodies are bytes they stream themselves (uploads), with their own types and limits. */
  streamedBodies?: readonly StreamedBodyRoute[];
  /** Request metrics, and `/metrics` (management credential or `metricsToken`); none: not measured. */
  metrics?: Metrics;
  metricsToken?: string;
  /** The access log (one info line per request); none: off. */
  accessLog?: Logger;
  /** How the compat surfaces (src/compat) word errors under their prefixes. */
  errorDialects?: readonly ErrorDialect[];
  /** Paths inside the API areas that take no credentials (a compat surface's own health check). */
  publicPaths?: readonly string[];
  /** Paths inside the API areas that take the management credential (a compat surface's management plane). */
  managementPaths?: readonly string[];
  /** Further route modules mounted after the built-in ones. */
  plugins?: readonly Elysia<any, any, any, any, any, any, any>[];
}

export function createApp(deps: AppDeps) {
  // normalize: false makes validation strict: a wrong type is a 400, never silently coerced into shape
  // (with normalisation on, a string sent for an object field came through as {"0": …}).
  const guard = requestGuard({
    areas: [
      ...(deps.authenticate ? [{ prefix: "/v1", authenticate: whenReady(deps.runner, withRateLimit(deps.authenticate, deps.rateLimit)) }] : []),
      // The compat surfaces are the data plane in other wire formats: the same keys, limits and readiness.
      ...(deps.authenticate ? [{ prefix: "/compat", authenticate: whenReady(deps.runner, withRateLimit(deps.authenticate, deps.rateLimit)) }] : []),
      ...(deps.publicPaths ?? []).map((prefix) => ({ prefix, authenticate: () => undefined })),
      ...(deps.authenticateManagement ? (deps.managementPaths ?? []).map((prefix) => ({ prefix, authenticate: deps.authenticateManagement! })) : []),
      ...(deps.authenticateManagement ? [{ prefix: "/v1/apps", authenticate: deps.authenticateManagement }, { prefix: "/v1/admin", authenticate: deps.authenticateManagement }] : []),
    ],
    maxBodyBytes: deps.maxBodyBytes ?? 10 * 1024 * 1024,
    bodyTimeoutMs: deps.bodyTimeoutMs ?? 10_000,
    streamedBodies: deps.streamedBodies,
  });
  // Bun's own body limit only backs ours up: the guard answers oversized bodies with the error
  // envelope, counting bytes as they arrive; Bun would answer a bare 413.
  const app = new Elysia({ normalize: false, serve: { maxRequestBodySize: Number.MAX_SAFE_INTEGER } })
    .use(observe({ metrics: deps.metrics, accessLog: deps.accessLog }))
    .use(errorHandler(deps.logger, deps.errorDialects))
    .use(
      swagger({
        path: "/docs",
        documentation: {
          info: {
            title: "Agentry API",
            version: deps.version,
            description:
              "Self-hostable Agents API. Every state change is an event; errors use one envelope: " +
              '`{"error":{"code","message","details"}}`.',
          },
          tags: [
            { name: "Sessions", description: "Conversations: messages start turns (jobs); history, assets, events" },
            { name: "Jobs", description: "One unit of agent work: status, cursor events, SSE, approve / reject / cancel" },
            { name: "Runs", description: "Single-turn runs with optional structured (JSON Schema) output" },
            { name: "Agents", description: "System prompt, model, tools, approval policy, output schema" },
            { name: "Files", description: "Uploads (multipart or signed URLs), attachments and artifacts, signed downloads" },
            { name: "Operations", description: "Health and operator endpoints" },
            { name: "Apps", description: "The management plane: apps (tenants) and their API keys; root token or management JWT" },
            { name: "Mosoo (compat)", description: "Mosoo's Threads API at /compat/mosoo/api/v1: a Thread is a session, a Run a job; client_external_ref names a Thread (docs/compat.md)" },
            { name: "Magus (compat)", description: "Magus's API integration at /compat/magus: POST /api/v1/messages, JSON or SSE; session_id names a session (docs/compat.md)" },
            { name: "Mushu (compat)", description: "Mushu Agents at /compat/mushu: runs polled by job_id, conversations polled by pending_id; X-API-Key (docs/compat.md)" },
            { name: "MUAPI (compat)", description: "MUAPI's Design Agent at /compat/muapi/api/v1/creative-agent: sessions, assets, chat and run-skill as jobs polled by cursor, approvals; x-api-key (docs/compat.md)" },
            { name: "MUXI (compat)", description: "MUXI Framework's REST API at /compat/muxi: agents, chat with client-named sessions, history, memory (docs/compat.md)" },
            { name: "OpenAI Responses (compat)", description: "OpenAI's Responses and Conversations APIs at /compat/openai/v1: a response is a job, a conversation a session (docs/compat.md)" },
            { name: "Audit", description: "Events as stored, a session's merged history, $all and as-of replay: an audit:read key, or the management plane" },
          ],
          components: {
            securitySchemes: {
              apiKey: { type: "apiKey", in: "header", name: "X-API-Key", description: "Or Authorization: Bearer <key>" },
              managementToken: { type: "http", scheme: "bearer", description: "The operator's root token, or a management JWT (/v1/apps only)" },
            },
          },
          security: [{ apiKey: [] }],
        },
      }),
    )
    .use(guard)
    .use(healthRoutes({ store: deps.store, runner: deps.runner, version: deps.version, startedAt: deps.startedAt ?? Date.now() }))
    .use((app) => (deps.metrics ? app.use(metricsRoutes({ metrics: deps.metrics, token: deps.metricsToken, authenticateManagement: deps.authenticateManagement })) : app))
    .use((app) => (deps.plugins ?? []).reduce((a, plugin) => a.use(plugin), app));
  guard.attach(app);
  return app;
}

export type App = ReturnType<typeof createApp>;

/**
 * The data plane waits for read models rebuilt for a new version at start (ProjectionRunner
 * .rebuildingAtStart): their old tables are not what this code reads, so until the swap a request
 * gets 503 read_models_rebuilding with Retry-After rather than an answer from the wrong tables. Checked
 * after the credentials, so an unknown caller learns nothing of the server's state.
 */
function whenReady(
  runner: ProjectionRunner,
  check: (request: Request, headers: Record<string, string | number>) => void | Promise<void>,
): (request: Request, headers: Record<string, string | number>) => void | Promise<void> {
  const ready = (headers: Record<string, string | number>) => {
    const waiting = runner.rebuildingAtStart;
    if (waiting.length === 0) return;
    headers["retry-after"] = "5";
    throw new UnavailableError(
      `This server is rebuilding read models for its new version (${waiting.join(", ")}); retry shortly`,
      { projections: waiting }, "read_models_rebuilding",
    );
  };
  return (request, headers) => {
    const checked = check(request, headers);
    if (checked instanceof Promise) return checked.then(() => ready(headers));
    return ready(headers);
  };
}

/** `authenticate`, then (once it has passed) `rateLimit`; synchronous when both are. */
function withRateLimit(
  authenticate: (request: Request) => void | Promise<void>,
  rateLimit: AppDeps["rateLimit"],
): (request: Request, headers: Record<string, string | number>) => void | Promise<void> {
  if (!rateLimit) return authenticate;
  return (request, headers) => {
    const checked = authenticate(request);
    if (checked instanceof Promise) return checked.then(() => rateLimit(request, headers));
    return rateLimit(request, headers);
  };
}
