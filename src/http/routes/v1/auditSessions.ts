/**
 * Finding a session to audit: by id, user or external reference, deleted sessions included (their
 * events stay for audit). Unlike the other audit reads (audit.ts), which read the event store, this
 * one reads the sessions read model: a search needs an index. Through the same two doors:
 * `/v1/audit/sessions` with an `audit:read` key (its app, a test key its test data) and
 * `/v1/apps/{app_id}/audit/sessions` with management credentials (members and up).
 */
import { Elysia, t } from "elysia";
import type { Database } from "bun:sqlite";
import { dataAppId } from "../../../app/access.ts";
import type { TenantDirectory } from "../../../app/tenantDirectory.ts";
import type { ManagementPrincipal } from "../../../auth/management.ts";
import { ForbiddenError, NotFoundError } from "../../../core/errors.ts";
import { searchSessions } from "../../../../projections/sessions/search.ts";
import { principalOf as keyPrincipalOf } from "../../auth.ts";
import { decodeCursor, encodeCursor } from "../../pagination.ts";
import { requireRole } from "./apps.ts";
import { requireServing } from "../../../projections/runner.ts";
import { sessionView } from "./common.ts";
import { Session } from "./models.ts";

export interface AuditSessionRoutesDeps {
  db: Database;
  directory: Pick<TenantDirectory, "app">;
  principalOf(request: Request): ManagementPrincipal | undefined;
  /** Read models waiting for their version rebuild (ProjectionRunner.rebuildingAtStart). */
  rebuilding?: () => readonly string[];
}

const AuditSession = t.Composite([Session, t.Object({
  deleted: t.Boolean({ description: "Deleted sessions are listed too: their events stay readable for audit" }),
})]);
const AuditSessionPage = t.Object({ object: t.Literal("list"), data: t.Array(AuditSession), has_more: t.Boolean(), next_cursor: t.Union([t.String(), t.Null()]) });

const Filter = t.String({ minLength: 1, maxLength: 200 });
const searchQuery = {
  session_id: t.Optional(t.String({ minLength: 1, maxLength: 100, pattern: "^[A-Za-z0-9_.-]+$", description: "This session only" })),
  user_id: t.Optional({ ...Filter, description: "The sessions of this end user" }),
  external_ref: t.Optional({ ...Filter, description: "The sessions created with this external reference" }),
  limit: t.Optional(t.Integer({ minimum: 1, maximum: 200, default: 20, description: "Page size (1–200)" })),
  cursor: t.Optional(t.String({ maxLength: 512, description: "next_cursor from the previous page" })),
};
const KeyQuery = t.Object(searchQuery, { additionalProperties: false });
const ManagementQuery = t.Object({
  ...searchQuery, mode: t.Optional(t.Union([t.Literal("live"), t.Literal("test")], { description: "live (default) or the app's test data" })),
}, { additionalProperties: false });
const AppId = t.String({ minLength: 1, maxLength: 100, pattern: "^[A-Za-z0-9_.-]+$" });

type Query = typeof KeyQuery.static;

export const auditSessionRoutes = ({ db, directory, principalOf, rebuilding }: AuditSessionRoutesDeps) => {
  const search = (partition: string, query: Query): typeof AuditSessionPage.static => {
    // The management plane has no readiness gate: old sessions tables are not what this code reads.
    if (rebuilding) requireServing({ rebuildingAtStart: rebuilding() }, "sessions");
    const limit = query.limit ?? 20;
    const after = decodeCursor(query.cursor, { s: "integer", id: "string" });
    const rows = searchSessions(db, partition, { sessionId: query.session_id, userId: query.user_id, externalRef: query.external_ref }, limit + 1, after ? { seq: after.s, id: after.id } : undefined);
    const shown = rows.slice(0, limit);
    const hasMore = rows.length > limit;
    const last = shown[shown.length - 1];
    return {
      object: "list", data: shown.map((r) => ({ ...sessionView(r), deleted: r.deleted === 1 })),
      has_more: hasMore, next_cursor: hasMore && last ? encodeCursor({ s: last.created_seq, id: last.id }) : null,
    };
  };
  const detail = (summary: string, description: string) => ({ summary, description });
  const models = new Elysia({ name: "agentry.v1.audit.sessions.models" }).model({ AuditSession, AuditSessionPage });

  const keyDoor = new Elysia({ name: "agentry.v1.audit.sessions", prefix: "/v1/audit", detail: { tags: ["Audit"] } })
    .use(models)
    .get("/sessions", ({ query, request }) => {
      const principal = keyPrincipalOf(request);
      if (!principal) throw new ForbiddenError("Audit reads need an API key with the audit:read scope", "insufficient_scope");
      return search(dataAppId(principal.appId, principal.mode), query);
    }, {
      query: KeyQuery, response: "AuditSessionPage",
      detail: detail("Find sessions to audit", "The app's sessions matching every filter given (id, user_id, external_ref), newest first, deleted ones included, from the sessions read model (audit:read)."),
    });

  const managementDoor = new Elysia({ name: "agentry.v1.apps.audit.sessions", prefix: "/v1/apps", detail: { tags: ["Audit"], security: [{ managementToken: [] }] } })
    .use(models)
    .get("/:app_id/audit/sessions", ({ params, query, request }) => {
      requireRole(principalOf(request), "member", params.app_id);
      const app = directory.app(params.app_id);
      if (!app || app.status === "none") throw new NotFoundError("App not found", { param: "app_id" }, "app_not_found");
      const { mode, ...rest } = query;
      return search(dataAppId(params.app_id, mode ?? "live"), rest);
    }, {
      params: t.Object({ app_id: AppId }), query: ManagementQuery, response: "AuditSessionPage",
      detail: detail("Find sessions to audit (management plane)", "As GET /v1/audit/sessions, for the named app (members)."),
    });

  return new Elysia({ name: "agentry.audit.sessions" }).use(keyDoor).use(managementDoor);
};
