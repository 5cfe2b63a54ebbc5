/**
 * Audit routes: events exactly as stored, with their full metadata, for auditors (src/app/audit.ts).
 *
 * Two doors onto the same reads, one per plane (the planes' credentials never mix):
 * - `/v1/audit/…` with an API key that has the `audit:read` scope: the key's app, and for a test key
 *   its test data;
 * - `/v1/apps/{app_id}/audit/…` with the root token or a management JWT (members of the app and up):
 *   the named app, its test data with `mode=test`.
 *
 * `…/sessions/{id}/state?at=` rebuilds a session as it stood at a past point (src/app/asOf.ts).
 *
 * Pages are JSON (`limit`, `cursor`); `format=ndjson` (or `Accept: application/x-ndjson`) streams every
 * event from the cursor on, one JSON object a line, read from the store as it is sent.
 */
import { Elysia, t } from "elysia";
import { auditAll, auditStream, auditView, mergedHistory, positionOf, sessionStreams } from "../../../app/audit.ts";
import { dataAppId } from "../../../app/access.ts";
import type { AppContext } from "../../../app/context.ts";
import type { TenantDirectory } from "../../../app/tenantDirectory.ts";
import type { ManagementPrincipal } from "../../../auth/management.ts";
import { ForbiddenError, NotFoundError, ValidationError } from "../../../core/errors.ts";
import type { RecordedEvent } from "../../../eventstore/port.ts";
import { occurredAt as occurredAtOf } from "../../../core/eventContract.ts";
import { principalOf as keyPrincipalOf } from "../../auth.ts";
import { decodeCursor, encodeCursor } from "../../pagination.ts";
import { requireRole } from "./apps.ts";
import { asOfPoint, sessionAsOf } from "../../../app/asOf.ts";
import { iso, jobView, sessionView } from "./common.ts";
import { Asset, Job, Message, Session } from "./models.ts";
import { assetView, messageView } from "./sessions/model.ts";

export interface AuditRoutesDeps {
  ctx: AppContext;
  directory: Pick<TenantDirectory, "app">;
  /** The management principal of an authenticated request (the management door). */
  principalOf(request: Request): ManagementPrincipal | undefined;
}

/** How many events of any app one `$all` page looks at before it answers with a cursor. */
const ALL_SCAN_LIMIT = 10_000;
const DEFAULT_LIMIT = 100;

const Nullable = <T extends import("@sinclair/typebox").TSchema>(s: T) => t.Union([s, t.Null()]);

export const AuditEvent = t.Object({
  object: t.Literal("audit_event"),
  stream: t.String({ description: "The stream's name (`session-…`, `job-…`, …)" }),
  revision: t.Integer({ minimum: 0, description: "The event's 0-based revision in its stream" }),
  position: t.String({ description: "Its global position in the store (commit order), as a decimal string: compare, never subtract" }),
  id: t.String({ description: "The event's id (a UUID)" }),
  type: t.String({ description: "The internal event type (`MessageSent`, `JobStarted`, …)" }),
  schema_version: t.Integer({ minimum: 1, description: "The version of the type's schema its data was written under" }),
  occurred_at: t.String({ description: "Business time: when the command that wrote it was decided (ISO 8601)" }),
  recorded_at: t.String({ description: "When the store recorded it (ISO 8601)" }),
  app_id: Nullable(t.String({ description: "The data partition it belongs to (`<app>` or `<app>.test`)" })),
  actor: Nullable(t.String({ description: "Who asked: `key:<id>`, `user:<id>@key:<id>`, `root:root`, `jwt:<sub>`; null for the server's own steps" })),
  attributed_user_id: Nullable(t.String()),
  correlation_id: Nullable(t.String()),
  causation_id: Nullable(t.String()),
  request_id: Nullable(t.String({ description: "The x-request-id of the request that wrote it" })),
  data: t.Unknown({ description: "The event's data exactly as stored" }),
  metadata: t.Record(t.String(), t.Unknown(), { description: "The event's metadata exactly as stored" }),
});

export const AuditEventPage = t.Object({
  object: t.Literal("list"),
  data: t.Array(AuditEvent),
  has_more: t.Boolean(),
  next_cursor: Nullable(t.String()),
});

export const SessionState = t.Object({
  object: t.Literal("session_state"),
  session_id: t.String(),
  as_of: t.Object({
    position: Nullable(t.String({ description: "The position of the last event folded (null: none was)" })),
    occurred_at: Nullable(t.String({ description: "When that event occurred" })),
  }),
  deleted: t.Boolean({ description: "Whether the session had been deleted by then (GET /v1/sessions/{session_id} then answered 404)" }),
  session: Nullable(Session),
  messages: t.Array(Message, { description: "The whole history then, oldest first (GET /v1/sessions/{session_id}/messages)" }),
  assets: t.Array(Asset, { description: "Its assets then, oldest first (GET /v1/sessions/{session_id}/assets)" }),
  jobs: t.Array(Job, { description: "Its jobs then, newest first (GET /v1/sessions/{session_id}/jobs)" }),
  prompts: t.Array(t.Object({
    job_id: t.String(), attempt: t.Integer(),
    agent_version: Nullable(t.Integer({ description: "The agent stream's revision the attempt loaded" })),
    system_prompt_sha256: Nullable(t.String()), prompt_overridden: Nullable(t.Boolean()), started_at: t.String(),
  }), { description: "What each turn's attempts ran with (their job.started), in order" }),
});

const StateQuery = t.Object({
  at: t.Optional(t.String({ minLength: 1, maxLength: 200, description: "An event's position, a cursor of the session's audit history, or an ISO 8601 date-time; absent: now" })),
}, { additionalProperties: false });
const ManagementStateQuery = t.Object({
  ...StateQuery.properties, mode: t.Optional(t.Union([t.Literal("live"), t.Literal("test")], { description: "live (default) or the app's test data" })),
}, { additionalProperties: false });

const pageQuery = {
  cursor: t.Optional(t.String({ maxLength: 512, description: "next_cursor of the previous page" })),
  limit: t.Optional(t.Integer({ minimum: 1, maximum: 1000, description: `Page size (1–1000, default ${DEFAULT_LIMIT}); an NDJSON export sends everything unless given` })),
  format: t.Optional(t.Union([t.Literal("json"), t.Literal("ndjson")], { description: "json (default): a page; ndjson: a stream of events, one a line" })),
};
const KeyQuery = t.Object(pageQuery, { additionalProperties: false });
const ManagementQuery = t.Object({
  ...pageQuery, mode: t.Optional(t.Union([t.Literal("live"), t.Literal("test")], { description: "live (default) or the app's test data" })),
}, { additionalProperties: false });

const SessionParams = t.Object({ session_id: t.String({ minLength: 1, maxLength: 100, pattern: "^[A-Za-z0-9_.-]+$" }) });
const StreamName = t.String({ minLength: 1, maxLength: 300, pattern: "^[A-Za-z0-9][A-Za-z0-9_.:-]*$", description: "A stream's name, e.g. session-sess_…" });
const StreamParams = t.Object({ stream_name: StreamName });
const AppId = t.String({ minLength: 1, maxLength: 100, pattern: "^[A-Za-z0-9_.-]+$" });

type Query = { cursor?: string; limit?: number; format?: "json" | "ndjson" };

const documented = (summary: string, description: string) => ({
  summary, description,
  responses: {
    200: {
      description: "A page of events (JSON), or every event from the cursor on (NDJSON, one AuditEvent a line)",
      content: {
        "application/json": { schema: { $ref: "#/components/schemas/AuditEventPage" } },
        "application/x-ndjson": { schema: { $ref: "#/components/schemas/AuditEvent" } },
      },
    },
  },
});

/** A source of events for one answer, and how to page it. */
interface Source {
  events: AsyncGenerator<RecordedEvent>;
  cursorOf(e: RecordedEvent): Record<string, string | number>;
  /** When the source stopped before its end (a bounded scan): the cursor to go on from. */
  stoppedAt?(): Record<string, string | number> | null;
}

const wantsNdjson = (request: Request, query: Query) =>
  query.format === "ndjson" || (query.format === undefined && (request.headers.get("accept") ?? "").toLowerCase().includes("application/x-ndjson"));

async function answer(request: Request, query: Query, source: Source): Promise<Response | typeof AuditEventPage.static> {
  if (wantsNdjson(request, query)) return ndjson(source.events, query.limit ?? Infinity);
  const limit = query.limit ?? DEFAULT_LIMIT;
  const got: RecordedEvent[] = [];
  try {
    for await (const e of source.events) {
      got.push(e);
      if (got.length > limit) break;
    }
  } finally {
    await source.events.return(undefined);
  }
  const shown = got.slice(0, limit);
  if (got.length > limit) return { object: "list", data: shown.map(auditView), has_more: true, next_cursor: encodeCursor(source.cursorOf(shown[shown.length - 1]!)) };
  const stopped = source.stoppedAt?.() ?? null;
  return { object: "list", data: shown.map(auditView), has_more: stopped !== null, next_cursor: stopped ? encodeCursor(stopped) : null };
}

/** The events as NDJSON, read from the store as the client takes them (backpressure: one event per pull). */
function ndjson(events: AsyncGenerator<RecordedEvent>, limit: number): Response {
  const encoder = new TextEncoder();
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const next = sent < limit ? await events.next() : { done: true as const, value: undefined };
        if (next.done) {
          controller.close();
          return;
        }
        sent++;
        controller.enqueue(encoder.encode(JSON.stringify(auditView(next.value)) + "\n"));
      } catch {
        // The status was sent with the first line: an error can only be told in the stream itself.
        controller.enqueue(encoder.encode(JSON.stringify({ error: { code: "internal_error", message: "The export stopped: the event store failed" } }) + "\n"));
        controller.close();
      }
    },
    async cancel() {
      await events.return(undefined);
    },
  }, { highWaterMark: 16 });
  return new Response(body, { headers: { "content-type": "application/x-ndjson; charset=utf-8", "cache-control": "no-store" } });
}

/** The three reads, for one data partition. */
function reads(ctx: AppContext) {
  return {
    async session(appId: string, sessionId: string, query: Query, request: Request) {
      const after = decodeCursor(query.cursor, { p: "string" });
      const from = after ? positionOf(after.p) : null;
      const streams = await sessionStreams(ctx.store, appId, sessionId);
      return answer(request, query, { events: mergedHistory(ctx.store, appId, streams, from), cursorOf: (e) => ({ p: e.position.toString() }) });
    },
    async stream(appId: string, stream: string, query: Query, request: Request) {
      const after = decodeCursor(query.cursor, { r: "integer" });
      if (after && after.r < 0) throw new ValidationError("Invalid cursor: pass back the next_cursor of a previous page unchanged", { param: "cursor" }, "invalid_cursor");
      const events = await auditStream(ctx.store, appId, stream, after ? BigInt(after.r) + 1n : 0n);
      return answer(request, query, { events, cursorOf: (e) => ({ r: Number(e.revision) }) });
    },
    async state(appId: string, sessionId: string, at: string | undefined): Promise<typeof SessionState.static> {
      const point = asOfPoint(at);
      const s = await sessionAsOf(ctx.store, appId, sessionId, point);
      return {
        object: "session_state", session_id: sessionId,
        as_of: { position: s.last ? s.last.position.toString() : null, occurred_at: s.last ? iso(occurredAtOf(s.last)) : null },
        deleted: s.session?.deleted === 1, session: s.session ? sessionView(s.session) : null,
        messages: s.messages.map(messageView), assets: s.assets.map(assetView), jobs: s.jobs.map(jobView),
        prompts: s.prompts.map((p) => ({ ...p, started_at: iso(p.started_at)! })),
      };
    },
    async all(appId: string, query: Query, request: Request) {
      const after = decodeCursor(query.cursor, { p: "string" });
      const from = after ? positionOf(after.p) : null;
      const scanned = { last: null as bigint | null, count: 0 };
      const ndjsonExport = wantsNdjson(request, query);
      const scanLimit = ndjsonExport ? Infinity : ALL_SCAN_LIMIT;
      return answer(request, query, {
        events: auditAll(ctx.store, appId, from, scanned, scanLimit),
        cursorOf: (e) => ({ p: e.position.toString() }),
        stoppedAt: () => (scanned.count >= scanLimit && scanned.last !== null ? { p: scanned.last.toString() } : null),
      });
    },
  };
}

/** The data partition of an API key with `audit:read` (checked by the authenticator, see scopeFor). */
function keyPartition(request: Request): string {
  const principal = keyPrincipalOf(request);
  if (!principal) throw new ForbiddenError("Audit reads need an API key with the audit:read scope", "insufficient_scope");
  return dataAppId(principal.appId, principal.mode);
}

export const auditRoutes = (deps: AuditRoutesDeps) => {
  const { ctx, directory } = deps;
  const read = reads(ctx);
  /** The management door's partition: a member (or more) of an app the directory knows (deleted ones too: their data stays for audit). */
  const managedPartition = (request: Request, appId: string, mode: "live" | "test" | undefined): string => {
    requireRole(deps.principalOf(request), "member", appId);
    const app = directory.app(appId);
    if (!app || app.status === "none") throw new NotFoundError("App not found", { param: "app_id" }, "app_not_found");
    return dataAppId(appId, mode ?? "live");
  };
  const models = new Elysia({ name: "agentry.v1.audit.models" }).model({ AuditEvent, AuditEventPage, SessionState });
  const stateDetail = (summary: string, description: string) => ({ summary, description });

  const keyDoor = new Elysia({ name: "agentry.v1.audit", prefix: "/v1/audit", detail: { tags: ["Audit"] } })
    .use(models)
    .get("/sessions/:session_id/events", ({ params, query, request }) => read.session(keyPartition(request), params.session_id, query, request), {
      params: SessionParams, query: KeyQuery,
      detail: documented("A session's complete history", "The session's stream and all of its jobs' streams, merged in commit order, each event with its full metadata (audit:read)."),
    })
    .get("/sessions/:session_id/state", ({ params, query, request }) => read.state(keyPartition(request), params.session_id, query.at), {
      params: SessionParams, query: StateQuery, response: "SessionState",
      detail: stateDetail("A session as it stood at a past point", "Rebuilt by folding its streams up to `at` (an event's position or a time), without read models: the session, its history, assets, jobs and the prompt each turn ran with (audit:read)."),
    })
    .get("/streams/:stream_name", ({ params, query, request }) => read.stream(keyPartition(request), params.stream_name, query, request), {
      params: StreamParams, query: KeyQuery,
      detail: documented("One stream, raw", "A stream of the key's app, by revision; another app's stream is 404 stream_not_found (audit:read)."),
    })
    .get("/all", ({ query, request }) => read.all(keyPartition(request), query, request), {
      query: KeyQuery,
      detail: documented("Every event of the app", "`$all` in commit order, showing only the key's app (or its test data) (audit:read)."),
    });

  const managementDoor = new Elysia({ name: "agentry.v1.apps.audit", prefix: "/v1/apps", detail: { tags: ["Audit"], security: [{ managementToken: [] }] } })
    .use(models)
    .get("/:app_id/audit/sessions/:session_id/events", ({ params, query, request }) => {
      const { mode, ...rest } = query;
      return read.session(managedPartition(request, params.app_id, mode), params.session_id, rest, request);
    }, {
      params: t.Object({ app_id: AppId, session_id: SessionParams.properties.session_id }), query: ManagementQuery,
      detail: documented("A session's complete history (management plane)", "As GET /v1/audit/sessions/{session_id}/events, for the named app (members)."),
    })
    .get("/:app_id/audit/sessions/:session_id/state", ({ params, query, request }) => {
      return read.state(managedPartition(request, params.app_id, query.mode), params.session_id, query.at);
    }, {
      params: t.Object({ app_id: AppId, session_id: SessionParams.properties.session_id }), query: ManagementStateQuery, response: "SessionState",
      detail: stateDetail("A session as it stood at a past point (management plane)", "As GET /v1/audit/sessions/{session_id}/state, for the named app (members)."),
    })
    .get("/:app_id/audit/streams/:stream_name", ({ params, query, request }) => {
      const { mode, ...rest } = query;
      return read.stream(managedPartition(request, params.app_id, mode), params.stream_name, rest, request);
    }, {
      params: t.Object({ app_id: AppId, stream_name: StreamName }), query: ManagementQuery,
      detail: documented("One stream, raw (management plane)", "As GET /v1/audit/streams/{stream_name}, for the named app (members)."),
    })
    .get("/:app_id/audit/all", ({ params, query, request }) => {
      const { mode, ...rest } = query;
      return read.all(managedPartition(request, params.app_id, mode), rest, request);
    }, {
      params: t.Object({ app_id: AppId }), query: ManagementQuery,
      detail: documented("Every event of an app (management plane)", "As GET /v1/audit/all, for the named app (members)."),
    });

  return new Elysia({ name: "agentry.audit" }).use(keyDoor).use(managementDoor);
};
