/**
 * /v1/admin: the operators' routes on the management plane (the root token or a management JWT; any
 * role reads). Today the read models' state: what `GET /health` shows of them, and `bun run projections
 * status` beside a running server.
 */
import { Elysia, t } from "elysia";
import type { ManagementPrincipal } from "../../../auth/management.ts";
import type { ProjectionRunner } from "../../../projections/runner.ts";
import { requireRole } from "./apps.ts";

export interface AdminRoutesDeps {
  projections: ProjectionRunner;
  principalOf(request: Request): ManagementPrincipal | undefined;
}

const ProjectionState = t.Object({
  name: t.String(), version: t.Integer(),
  state: t.Union([t.Literal("starting"), t.Literal("catching_up"), t.Literal("live"), t.Literal("error"), t.Literal("stopped")]),
  checkpoint: t.Union([t.String(), t.Null()], { description: "The last global position folded in" }),
  lag_events: t.Integer({ description: "Events in the store after the checkpoint (counted up to 10,000)" }),
  lag_events_capped: t.Boolean(),
  lag_ms: t.Integer({ description: "Age of the oldest event not yet folded in; 0 when caught up" }),
  last_error: t.Union([t.String(), t.Null()]),
});
const ProjectionList = t.Object({ object: t.Literal("list"), data: t.Array(ProjectionState) });

export const adminRoutes = ({ projections, principalOf }: AdminRoutesDeps) =>
  new Elysia({ name: "agentry.v1.admin", prefix: "/v1/admin", detail: { tags: ["Admin"], security: [{ managementToken: [] }] } })
    .model({ ProjectionList })
    .get("/projections", async ({ request }) => {
      // Read models serve every app: only a principal covering all apps sees them.
      requireRole(principalOf(request), "member", null);
      return { object: "list" as const, data: await projections.status() };
    }, {
      response: "ProjectionList",
      detail: { summary: "This process's read models: state, checkpoint and lag (a principal for every app)" },
    });
