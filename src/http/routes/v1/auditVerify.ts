/**
 * Chain verification for auditors (src/audit/chain.ts): recomputes a stream's hash chain as stored and
 * reports its head and first break. Beside the audit reads (audit.ts), through the same two doors:
 * `/v1/audit/streams/{name}/verify` with an `audit:read` key, and
 * `/v1/apps/{app_id}/audit/streams/{name}/verify` with management credentials (members and up).
 */
import { Elysia, t } from "elysia";
import { dataAppId } from "../../../app/access.ts";
import { streamOwner } from "../../../app/audit.ts";
import { verificationView, verifyStoredStream } from "../../../audit/verifyStore.ts";
import { ForbiddenError, NotFoundError } from "../../../core/errors.ts";
import { principalOf as keyPrincipalOf } from "../../auth.ts";
import type { AuditRoutesDeps } from "./audit.ts";
import { requireRole } from "./apps.ts";

const Nullable = <T extends import("@sinclair/typebox").TSchema>(s: T) => t.Union([s, t.Null()]);

export const ChainVerification = t.Object({
  object: t.Literal("chain_verification"),
  stream: t.String(),
  ok: t.Boolean({ description: "True when every event links to the one before it" }),
  events: t.Integer({ minimum: 0, description: "Events read" }),
  unchained: t.Integer({ minimum: 0, description: "Events written before the chain existed (not covered)" }),
  head: Nullable(t.Object({
    revision: t.Integer({ minimum: 0 }),
    chain: Nullable(t.String({ description: "The last event's chain: keep it elsewhere to detect a rewritten tail later" })),
  })),
  break: Nullable(t.Object({
    revision: t.Integer({ minimum: 0, description: "Where: the edited or misplaced event, or the first missing revision" }),
    kind: t.Union([t.Literal("edited"), t.Literal("missing"), t.Literal("reordered")]),
    detail: t.String(),
  })),
});

const StreamName = t.String({ minLength: 1, maxLength: 300, pattern: "^[A-Za-z0-9][A-Za-z0-9_.:-]*$", description: "A stream's name, e.g. session-sess_…" });
const AppId = t.String({ minLength: 1, maxLength: 100, pattern: "^[A-Za-z0-9_.-]+$" });

export const auditVerifyRoutes = (deps: AuditRoutesDeps) => {
  const { ctx, directory } = deps;
  const verify = async (partition: string, stream: string) => {
    const notFound = () => new NotFoundError(`No stream ${stream}`, { param: "stream_name" }, "stream_not_found");
    if ((await streamOwner(ctx.store, stream)) !== partition) throw notFound();
    const v = await verifyStoredStream(ctx.store, stream);
    if (!v) throw notFound();
    return verificationView(v);
  };
  const detail = (summary: string, description: string) => ({ summary, description });

  const keyDoor = new Elysia({ name: "agentry.v1.audit.verify", prefix: "/v1/audit", detail: { tags: ["Audit"] } })
    .model({ ChainVerification })
    .get("/streams/:stream_name/verify", ({ params, request }) => {
      const principal = keyPrincipalOf(request);
      if (!principal) throw new ForbiddenError("Audit reads need an API key with the audit:read scope", "insufficient_scope");
      return verify(dataAppId(principal.appId, principal.mode), params.stream_name);
    }, {
      params: t.Object({ stream_name: StreamName }), response: { 200: "ChainVerification" },
      detail: detail("Verify a stream's hash chain", "Recomputes the stream's hash chain from its stored events and reports its head and the first break (edited, missing or reordered event) (audit:read)."),
    });

  const managementDoor = new Elysia({ name: "agentry.v1.apps.audit.verify", prefix: "/v1/apps", detail: { tags: ["Audit"], security: [{ managementToken: [] }] } })
    .model({ ChainVerification })
    .get("/:app_id/audit/streams/:stream_name/verify", ({ params, query, request }) => {
      requireRole(deps.principalOf(request), "member", params.app_id);
      const app = directory.app(params.app_id);
      if (!app || app.status === "none") throw new NotFoundError("App not found", { param: "app_id" }, "app_not_found");
      return verify(dataAppId(params.app_id, query.mode ?? "live"), params.stream_name);
    }, {
      params: t.Object({ app_id: AppId, stream_name: StreamName }),
      query: t.Object({ mode: t.Optional(t.Union([t.Literal("live"), t.Literal("test")])) }, { additionalProperties: false }),
      response: { 200: "ChainVerification" },
      detail: detail("Verify a stream's hash chain (management plane)", "As GET /v1/audit/streams/{stream_name}/verify, for the named app (members)."),
    });

  return new Elysia({ name: "agentry.audit.verify" }).use(keyDoor).use(managementDoor);
};
