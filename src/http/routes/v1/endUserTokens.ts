/**
 * POST /v1/end-user-tokens: a server mints a short-lived token for one of its users, which that user's
 * mobile or web client uses directly (as `Authorization: Bearer`). The token acts as that user only, in
 * the minting key's app and mode, with at most the key's rights, and never manages agents.
 */
import { Elysia, t } from "elysia";
import { requireUser } from "../../../app/access.ts";
import { ForbiddenError, UnavailableError, ValidationError } from "../../../core/errors.ts";
import { isKeyUserId } from "../../../app/keyUsers.ts";
import { hasScope, principalOf } from "../../auth.ts";
import type { KeyScope } from "../../../domain/app/events.ts";
import { callerContext, type V1Deps } from "./common.ts";
import { v1Models } from "./models.ts";

const EndUserToken = t.Object({
  object: t.Literal("end_user_token"), token: t.String(), token_type: t.Literal("Bearer"), user_id: t.String(),
  scopes: t.Array(t.String()), expires_at: t.String(),
});

export const endUserTokenRoutes = (deps: V1Deps) =>
  new Elysia({ name: "agentry.v1.end-user-tokens", prefix: "/v1/end-user-tokens", detail: { tags: ["End users"] } })
    .use(v1Models)
    .use(callerContext(deps))
    .model({ EndUserToken })
    .post("", async ({ ctx, body, request, set }) => {
      if (!deps.endUserTokens) throw new UnavailableError("End-user tokens are not available on this server");
      const caller = principalOf(request)!;
      // Only a server's key mints: a token minting tokens would outlive its own short life for good.
      if (caller.endUser) throw new ForbiddenError("End-user tokens are minted with a server key, not with another token", "permission_denied");
      // A key bound to a user mints only for that user.
      requireUser(ctx, body.user_id);
      // A token acting as a key's own user would reach that key's compat conversations (src/app/keyUsers.ts).
      if (isKeyUserId(body.user_id)) throw new ValidationError("user_id may not be spelled as an API key's own user (magus-key_…, mosoo-key_…, muapi-key_…)", { param: "user_id" }, "reserved_user_id");
      const wanted = (body.scopes ?? ["data:write"]) as KeyScope[];
      const refused = wanted.filter((s) => !hasScope(caller.scopes, s));
      if (refused.length) throw new ForbiddenError(`The minting key lacks ${refused.join(", ")}`, "insufficient_scope");
      const { token, expiresAt } = await deps.endUserTokens.mint({
        appId: caller.appId, mode: caller.mode, userId: body.user_id, scopes: wanted, agentIds: caller.agentIds ? [...caller.agentIds] : null,
        parentKeyId: caller.keyId,
      }, body.ttl_s ?? 3600);
      set.status = 201;
      return { object: "end_user_token" as const, token, token_type: "Bearer" as const, user_id: body.user_id, scopes: wanted, expires_at: new Date(expiresAt).toISOString() };
    }, {
      body: t.Object({
        user_id: t.String({ minLength: 1, maxLength: 200 }),
        ttl_s: t.Optional(t.Integer({ minimum: 60, maximum: 86_400, description: "Lifetime in seconds (default 3600)" })),
        scopes: t.Optional(t.Array(t.Union([t.Literal("data:read"), t.Literal("data:write")]), { minItems: 1, uniqueItems: true })),
      }),
      response: { 201: "EndUserToken" },
      detail: { summary: "Mint a short-lived token a client uses as one user", description: "The token sees and acts on only that user's sessions, jobs, assets and events; anything else is 403 permission_denied." },
    });
