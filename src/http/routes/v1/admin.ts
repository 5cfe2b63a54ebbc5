/**
 * /v1/admin: the operators' routes on the management plane (the root token or a management JWT). The
 * read models' state — what `GET /health` shows of them, and `bun run projections status` beside a
 * running server — is for any role; an online rebuild takes an admin covering every app.
 */
import { Elysia, t } from "elysia";
import type { ManagementPrincipal } from "../../../auth/management.ts";
import { ConflictError, NotFoundError, UnavailableError } from "../../../core/errors.ts";
import { RebuildInProgressError, RunnerStoppedError, UnknownProjectionError, type ProjectionRunner } from "../../../projections/runner.ts";
import { requireRole } from "./apps.ts";

export interface AdminRoutesDeps {
  projections: ProjectionRunner;
  principalOf(request: Request): ManagementPrincipal | undefined;
}

const Rebuild = t.Object({
  object: t.Literal("projection.rebuild"),
  projection: t.String(),
  reason: t.Union([t.Literal("requested"), t.Literal("version_changed")], { description: "An operator asked, or the projection's version changed at start" }),
  state: t.Union([t.Literal("running"), t.Literal("swapping"), t.Literal("done"), t.Literal("failed")]),
  processed_events: t.Integer({ description: "Events read from the store so far" }),
  total_events: t.Integer({ description: "Events the rebuild reads in all: estimated from positions while it runs, exact once done" }),
  progress: t.Number({ minimum: 0, maximum: 1 }),
  eta_ms: t.Union([t.Integer(), t.Null()], { description: "Time left at the rate so far; null until there is a rate" }),
  started_at: t.String({ format: "date-time" }),
  finished_at: t.Union([t.String({ format: "date-time" }), t.Null()]),
  position: t.Union([t.String(), t.Null()], { description: "The position the swapped-in tables were built up to" }),
  error: t.Union([t.String(), t.Null()]),
});
const ProjectionState = t.Object({
  name: t.String(), version: t.Integer(),
  state: t.Union([t.Literal("starting"), t.Literal("catching_up"), t.Literal("live"), t.Literal("rebuilding"), t.Literal("error"), t.Literal("stopped")], {
    description: "`rebuilding`: the version changed at start; the data plane answers 503 read_models_rebuilding until the new tables swap in",
  }),
  checkpoint: t.Union([t.String(), t.Null()], { description: "The last global position folded in" }),
  lag_events: t.Integer({ description: "Events in the store after the checkpoint (counted up to 10,000)" }),
  lag_events_capped: t.Boolean(),
  lag_ms: t.Integer({ description: "Age of the oldest event not yet folded in; 0 when caught up" }),
  last_error: t.Union([t.String(), t.Null()]),
  rebuild: t.Union([Rebuild, t.Null()], { description: "The latest online rebuild since the process started, running or finished" }),
});
const ProjectionList = t.Object({
  object: t.Literal("list"), data: t.Array(ProjectionState),
  served_by_pid: t.Integer({ description: "The process whose read models these are (each API process keeps its own)" }),
});
const NameParam = t.Object({ name: t.String({ minLength: 1, maxLength: 100 }) });

export const adminRoutes = ({ projections, principalOf }: AdminRoutesDeps) => {
  const rebuildOf = (name: string) => {
    const status = projections.rebuildOf(name);
    if (!status) throw new NotFoundError(`No rebuild of ${name} has run since this process started`, { projection: name });
    return status;
  };
  return new Elysia({ name: "agentry.v1.admin", prefix: "/v1/admin", detail: { tags: ["Admin"], security: [{ managementToken: [] }] } })
    .model({ ProjectionList, ProjectionRebuild: Rebuild })
    .get("/projections", async ({ request }) => {
      // Read models serve every app: only a principal covering all apps sees them.
      requireRole(principalOf(request), "member", null);
      const data = (await projections.status()).map((s) => ({ ...s, rebuild: projections.rebuildOf(s.name) }));
      return { object: "list" as const, data, served_by_pid: process.pid };
    }, {
      response: "ProjectionList",
      detail: { summary: "This process's read models: state, checkpoint, lag and latest rebuild (a principal for every app)" },
    })
    .post("/projections/:name/rebuild", ({ params, request, set }) => {
      requireRole(principalOf(request), "admin", null);
      try {
        const status = projections.rebuild(params.name);
        set.status = 202;
        return status;
      } catch (err) {
        if (err instanceof UnknownProjectionError) throw new NotFoundError(err.message, { projection: params.name });
        if (err instanceof RebuildInProgressError) throw new ConflictError("rebuild_in_progress", err.message, { projection: params.name });
        if (err instanceof RunnerStoppedError) throw new UnavailableError(err.message, { projection: params.name }, "shutting_down");
        throw err;
      }
    }, {
      params: NameParam, response: { 202: "ProjectionRebuild" },
      detail: {
        summary: "Rebuild one read model online (an admin for every app)",
        description: "Folds the whole event store into shadow tables while the live ones keep serving, then swaps them in " +
          "atomically once the shadow has caught up with the live tail. Answers at once; poll GET /v1/admin/projections/{name}/rebuild " +
          "for progress and ETA. 409 rebuild_in_progress while one runs for the same read model. The rebuild runs in the process " +
          "that answered: each API process keeps its own read models.",
      },
    })
    .get("/projections/:name/rebuild", ({ params, request }) => {
      requireRole(principalOf(request), "member", null);
      return rebuildOf(params.name);
    }, {
      params: NameParam, response: "ProjectionRebuild",
      detail: { summary: "The latest online rebuild of one read model: state, progress and ETA (404 when none ran since start)" },
    });
};
