/** GET /health: the store's state (200 when reachable, 503 when not) and each projection's progress. */
import { Elysia, t } from "elysia";
import type { EventStore } from "../../eventstore/port.ts";
import type { ProjectionRunner } from "../../projections/runner.ts";

export interface HealthDeps {
  store: EventStore;
  runner: ProjectionRunner;
  version: string;
  startedAt: number;
}

const ProjectionStatus = t.Object({
  name: t.String(),
  version: t.Integer(),
  state: t.String(),
  checkpoint: t.Union([t.String(), t.Null()]),
  lag_events: t.Integer(),
  lag_events_capped: t.Boolean(),
  lag_ms: t.Integer(),
  last_error: t.Union([t.String(), t.Null()]),
});

const Health = t.Object({
  status: t.Union([t.Literal("ok"), t.Literal("degraded"), t.Literal("unavailable")]),
  version: t.String(),
  uptime_s: t.Integer(),
  store: t.Object({ kind: t.String(), ok: t.Boolean(), error: t.Optional(t.String()) }),
  ready: t.Boolean({ description: "false while read models are rebuilt for a new version at start: the data plane answers 503 until then" }),
  projections: t.Array(ProjectionStatus),
});
const Ready = t.Object({ ready: t.Boolean(), rebuilding: t.Array(t.String()) });

export const healthRoutes = ({ store, runner, version, startedAt }: HealthDeps) =>
  new Elysia({ name: "agentry.health" }).get(
    "/health",
    async ({ set }) => {
      let storeError: string | undefined;
      try {
        await store.ping();
      } catch (err) {
        storeError = (err as Error)?.message ?? String(err);
      }
      const projections = storeError ? [] : await runner.status().catch(() => []);
      const degraded = projections.some((p) => p.state === "error");
      set.status = storeError ? 503 : 200;
      return {
        status: storeError ? "unavailable" as const : degraded ? "degraded" as const : "ok" as const,
        version,
        uptime_s: Math.floor((Date.now() - startedAt) / 1000),
        store: { kind: store.kind, ok: !storeError, ...(storeError ? { error: storeError } : {}) },
        ready: runner.rebuildingAtStart.length === 0,
        projections,
      };
    },
    {
      response: { 200: Health, 503: Health },
      detail: {
        summary: "Health",
        description: "200 when the event store answers, 503 when it does not. Lists each projection's checkpoint and lag.",
        tags: ["Operations"],
      },
    },
  )
  // Readiness, for load balancers and orchestrators: liveness stays GET /health.
  .get("/health/ready", ({ set }) => {
    const rebuilding = [...runner.rebuildingAtStart];
    set.status = rebuilding.length ? 503 : 200;
    return { ready: rebuilding.length === 0, rebuilding };
  }, {
    response: { 200: Ready, 503: Ready },
    detail: {
      summary: "Readiness",
      description: "200 once the server serves its data plane; 503 while read models are rebuilt for a new version at start (the data plane answers 503 read_models_rebuilding meanwhile). Route traffic by this; use GET /health for liveness.",
      tags: ["Operations"],
    },
  });
