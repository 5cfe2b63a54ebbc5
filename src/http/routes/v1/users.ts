/**
 * Erasure of an end user (src/app/erasure.ts), on both planes:
 *
 * - `DELETE /v1/users/{user_id}?erase=true`, data plane: a key with data:write erases the user in its
 *   own data partition (a test key in its app's test data). A credential acting as one end user may
 *   erase that user only; a key limited to some agents may not erase (the erasure covers every agent's
 *   data, and such a key cannot see all of it).
 * - `DELETE /v1/apps/{app_id}/users/{user_id}?erase=true`, management plane (an admin of the app):
 *   erases the user in the app's live data and in its test data.
 *
 * `erase=true` is required: the flag says in the request itself that the data goes for good.
 */
import { Elysia, t } from "elysia";
import { requireUser } from "../../../app/access.ts";
import type { AppContext } from "../../../app/context.ts";
import { eraseUser, type ErasureSummary } from "../../../app/erasure.ts";
import { ForbiddenError, ValidationError } from "../../../core/errors.ts";
import { dataAppId } from "../../../app/access.ts";
import type { AppRoutesDeps } from "./apps.ts";
import { liveAppIn, requireRole } from "./apps.ts";
import { callerContext, IdParam, metaOf, type V1Deps } from "./common.ts";
import { v1Models } from "./models.ts";

const UserId = t.String({ minLength: 1, maxLength: 200, description: "The end user's id, as the app names them" });

const EraseQuery = t.Object({
  erase: t.Optional(t.String({ description: "Must be `true`: the user's data is removed for good" })),
});

const Counts = t.Object({
  sessions: t.Integer(), jobs: t.Integer(), files: t.Integer(), memories: t.Integer(), credentials: t.Integer(),
  idempotency_keys: t.Integer({ description: "Idempotency-Key records whose request or stored answer named the user's data" }),
  blobs_collected: t.Integer({ description: "File contents no other file had, removed from the blob store" }),
});

const UserErasure = t.Object({
  object: t.Literal("user_erasure"),
  erasure_id: t.Union([t.String(), t.Null()], { description: "Null when there was nothing to erase (nothing was recorded)" }),
  user_id: t.String(),
  app_id: t.String({ description: "The data partition erased in: the app, or its test data (`<app>.test`)" }),
  erased_at: t.String(),
  counts: Counts,
  streams_erased: t.Integer({ description: "Event streams removed by this request (0 when a previous erasure already removed them)" }),
  reclaim: t.Union([t.Literal("vacuumed"), t.Literal("removed"), t.Literal("scavenge_started"), t.Literal("scavenge_failed"), t.Literal("none")], {
    description: "How the event store got the bytes off its disk: SQLite vacuumed; EventStoreDB started a scavenge (scavenge_failed: the node refused it, the operator runs one); none: nothing was erased",
  }),
  reclaim_error: t.Union([t.String(), t.Null()]),
  record: t.Union([t.Object({ stream: t.String(), position: t.String() }), t.Null()], {
    description: "Where the UserErased event is (an auditor's reference to this erasure); null when there was nothing to erase, and nothing was recorded",
  }),
}, { description: "What an erasure removed. The user's content is gone from the event store and the read models; the UserErased record names the user only by a SHA-256 of their id." });

const UserErasureList = t.Object({
  object: t.Literal("list"),
  data: t.Array(UserErasure, { description: "One erasure per data partition: the app's live data, then its test data" }),
});

/** 400 unless the request says `erase=true`. */
function requireEraseFlag(erase: string | undefined): void {
  if (erase === "true") return;
  throw new ValidationError(
    "Deleting a user erases their sessions, jobs, files, memory and credentials for good; say so with ?erase=true",
    { param: "erase" },
  );
}

/**
 * 400 unless the path segment holding the user id is well-formed UTF-8 once percent-decoded: the router
 * decodes a broken sequence (`%FF`) to U+FFFD, which would silently name another user than the one meant.
 */
function checkUserIdSegment(request: Request, segment: number): void {
  try {
    decodeURIComponent(new URL(request.url).pathname.split("/")[segment] ?? "");
  } catch {
    throw new ValidationError("user_id is not valid UTF-8 once percent-decoded", { param: "user_id" });
  }
}

const view = (s: ErasureSummary) => s;

export const userRoutes = (deps: V1Deps) =>
  new Elysia({ name: "agentry.v1.users", prefix: "/v1/users", detail: { tags: ["End users"] } })
    .use(v1Models)
    .use(callerContext(deps))
    .model({ UserErasure })
    .delete("/:user_id", async ({ ctx, params, query, request }) => {
      checkUserIdSegment(request, 3);
      requireEraseFlag(query.erase);
      requireUser(ctx, params.user_id);
      if (ctx.allowedAgents) {
        throw new ForbiddenError("Erasing a user covers every agent's data; a key limited to some agents may not erase", "permission_denied");
      }
      return view(await eraseUser(ctx, params.user_id, metaOf(ctx, request)));
    }, {
      params: t.Object({ user_id: UserId }), query: EraseQuery, response: "UserErasure",
      detail: {
        summary: "Erase an end user (?erase=true): their sessions, jobs, files, memory and credentials, for good",
        description: "Removes every stream of the user from the event store (SQLite: deleted and vacuumed; EventStoreDB: tombstoned, then scavenged) " +
          "and their rows from the read models, collects file contents no other file has, and records a UserErased event (who asked, when, what was removed; " +
          "the user only as a SHA-256 of their id). The user's unfinished jobs are cancelled first. Answers when it is done. Without erase=true: 400. " +
          "A credential acting as an end user may erase only that user; a key limited to some agents: 403.",
      },
    });

/** The management-plane mirror: an app admin erases a user in the app's live and test data. */
export const appUserRoutes = ({ ctx, directory, principalOf }: Pick<AppRoutesDeps, "ctx" | "directory" | "principalOf">) => {
  const liveApp = liveAppIn(directory);
  return new Elysia({ name: "agentry.v1.apps.users", prefix: "/v1/apps", detail: { tags: ["Apps"], security: [{ managementToken: [] }] } })
    .use(v1Models)
    .model({ UserErasureList })
    .delete("/:app_id/users/:user_id", async ({ params, query, request }) => {
      const principal = requireRole(principalOf(request), "admin", params.app_id);
      liveApp(params.app_id);
      checkUserIdSegment(request, 5);
      requireEraseFlag(query.erase);
      const data: ErasureSummary[] = [];
      for (const mode of ["live", "test"] as const) {
        const partition: AppContext = { ...ctx, appId: dataAppId(params.app_id, mode), allowedAgents: null, actingUser: null };
        data.push(await eraseUser(partition, params.user_id, { ...metaOf(partition, request), actor: `${principal.kind}:${principal.subject}` }));
      }
      return { object: "list" as const, data };
    }, {
      params: t.Object({ ...IdParam("app_id").properties, user_id: UserId }), query: EraseQuery, response: "UserErasureList",
      detail: {
        summary: "Erase an end user of an app (admins, ?erase=true), in its live and its test data",
        description: "The management plane's DELETE /v1/users/{user_id}?erase=true: the same erasure, for both of the app's data partitions.",
      },
    });
};
