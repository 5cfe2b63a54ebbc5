/**
 * /v1/admin, the runtime half: what the jobs read model holds by status (counts, and the jobs of one
 * status) and how deep the job queue is. Management plane, like the projections' state (admin.ts):
 * jobs of every app are shown, so only a principal covering every app reads them (any role).
 */
import { requireServing } from "../../../projections/runner.ts";
import { Elysia, t } from "elysia";
import type { Database } from "bun:sqlite";
import type { ManagementPrincipal } from "../../../auth/management.ts";
import { JOB_STATUSES, jobCountsByStatus, listJobsForOperators, unfinishedJobCounts } from "../../../../projections/jobs/operators.ts";
import { decodeCursor, encodeCursor } from "../../pagination.ts";
import { requireRole } from "./apps.ts";
import { iso, parseJson } from "./common.ts";

export interface AdminRuntimeDeps {
  /** This process's read models (the jobs table). */
  db: Database;
  /** The job queue: its kind, and how many jobs wait for a worker (the same reading as the metrics'). */
  queue: { kind: string; depth(): number | Promise<number> };
  principalOf(request: Request): ManagementPrincipal | undefined;
  /** Read models waiting for their version rebuild (ProjectionRunner.rebuildingAtStart): jobs is not read then. */
  rebuilding?: () => readonly string[];
}

const Nullable = <T extends import("@sinclair/typebox").TSchema>(s: T) => t.Union([s, t.Null()]);
const Status = t.Union([
  t.Literal("pending"), t.Literal("processing"), t.Literal("awaiting_approval"), t.Literal("completed"), t.Literal("failed"), t.Literal("cancelled"),
]) satisfies { static: (typeof JOB_STATUSES)[number] };

const JobStatusCounts = t.Object({
  object: t.Literal("job_status_counts"),
  counts: t.Object(Object.fromEntries(JOB_STATUSES.map((s) => [s, t.Integer({ minimum: 0 })])) as Record<(typeof JOB_STATUSES)[number], ReturnType<typeof t.Integer>>),
  total: t.Integer({ minimum: 0 }),
});

const OperatorJob = t.Object({
  id: t.String(), object: t.Literal("job"),
  app_id: t.String({ description: "The data partition it ran in (`<app>` or `<app>.test`)" }),
  kind: t.Union([t.Literal("message"), t.Literal("run")]), session_id: Nullable(t.String()), agent_id: t.String(), user_id: t.String(),
  status: Status, attempts: t.Integer(), cancel_requested: t.Boolean(), error: t.Unknown({ description: "How it failed or was cancelled; null otherwise" }),
  created_at: t.String(), started_at: Nullable(t.String()), completed_at: Nullable(t.String()), updated_at: t.String(),
});
const OperatorJobPage = t.Object({ object: t.Literal("list"), data: t.Array(OperatorJob), has_more: t.Boolean(), next_cursor: Nullable(t.String()) });

const QueueState = t.Object({
  object: t.Literal("queue"),
  kind: t.String({ description: "in-process, or redis" }),
  depth: Nullable(t.Integer({ minimum: 0, description: "Jobs queued and not yet handed to a worker; null when the queue did not answer" })),
  unfinished: t.Object({
    pending: t.Integer({ minimum: 0 }), processing: t.Integer({ minimum: 0 }), awaiting_approval: t.Integer({ minimum: 0 }),
  }, { description: "Unfinished jobs by status, from the jobs read model" }),
});

const JobsQuery = t.Object({
  status: t.Optional(Status),
  app_id: t.Optional(t.String({ minLength: 1, maxLength: 110, pattern: "^[A-Za-z0-9_.-]+$", description: "Only this data partition's jobs (`<app>` or `<app>.test`)" })),
  limit: t.Optional(t.Integer({ minimum: 1, maximum: 200, default: 20, description: "Page size (1–200)" })),
  cursor: t.Optional(t.String({ maxLength: 512, description: "next_cursor from the previous page" })),
}, { additionalProperties: false });

/** How long the queue may take to say its depth before the answer goes without it. */
const QUEUE_TIMEOUT_MS = 2000;

export const adminRuntimeRoutes = ({ db, queue, principalOf, rebuilding = () => [] }: AdminRuntimeDeps) =>
  new Elysia({ name: "agentry.v1.admin.runtime", prefix: "/v1/admin", detail: { tags: ["Admin"], security: [{ managementToken: [] }] } })
    .model({ JobStatusCounts, OperatorJobPage, QueueState })
    .get("/jobs/counts", ({ request }) => {
      requireRole(principalOf(request), "member", null);
      requireServing({ rebuildingAtStart: rebuilding() }, "jobs");
      const counts = jobCountsByStatus(db);
      return { object: "job_status_counts" as const, counts, total: Object.values(counts).reduce((a, b) => a + b, 0) };
    }, {
      response: "JobStatusCounts",
      detail: { summary: "Jobs by status over every app, from this process's jobs read model (a principal for every app)" },
    })
    .get("/jobs", ({ query, request }) => {
      requireRole(principalOf(request), "member", null);
      requireServing({ rebuildingAtStart: rebuilding() }, "jobs");
      const limit = query.limit ?? 20;
      const after = decodeCursor(query.cursor, { s: "integer" });
      const rows = listJobsForOperators(db, { status: query.status, appId: query.app_id }, limit + 1, after?.s);
      const shown = rows.slice(0, limit);
      const hasMore = rows.length > limit;
      return {
        object: "list" as const,
        data: shown.map((r) => ({
          id: r.id, object: "job" as const, app_id: r.app_id, kind: r.kind, session_id: r.session_id, agent_id: r.agent_id, user_id: r.user_id,
          status: r.status as (typeof JOB_STATUSES)[number], attempts: r.attempts, cancel_requested: r.cancel_requested === 1, error: parseJson(r.error),
          created_at: iso(r.created_at)!, started_at: iso(r.started_at), completed_at: iso(r.completed_at), updated_at: iso(r.updated_at)!,
        })),
        has_more: hasMore,
        next_cursor: hasMore ? encodeCursor({ s: shown[shown.length - 1]!.seq }) : null,
      };
    }, {
      query: JobsQuery, response: "OperatorJobPage",
      detail: { summary: "Jobs over every app, newest first, optionally of one status or app (a principal for every app)" },
    })
    .get("/queue", async ({ request }) => {
      requireRole(principalOf(request), "member", null);
      requireServing({ rebuildingAtStart: rebuilding() }, "jobs");
      // A queue that does not answer (Redis away) is itself what the operator needs to see: null, not an error.
      const depth = await Promise.race([
        Promise.resolve().then(() => queue.depth()).catch(() => null),
        Bun.sleep(QUEUE_TIMEOUT_MS).then(() => null),
      ]);
      return { object: "queue" as const, kind: queue.kind, depth, unfinished: unfinishedJobCounts(db) };
    }, {
      response: "QueueState",
      detail: { summary: "The job queue: its kind and depth, and unfinished jobs by status (a principal for every app)" },
    });
