/**
 * /v1/users/{user_id}/credentials/{provider}: an end user's own model credential (BYOS), which agents
 * with `billing: "end_user"` run that user's turns on. Set by the app's backend (a server key with
 * data:write) or by the user's own client (an end-user token, for its own user only). Either an API key
 * or OAuth tokens; every secret is sealed by the secret box before it is stored and is never returned.
 * A test key's credentials live in its app's test data, apart from live ones.
 */
import { Elysia, t } from "elysia";
import { requireUser } from "../../../app/access.ts";
import type { AppContext } from "../../../app/context.ts";
import { ValidationError } from "../../../core/errors.ts";
import { credentialStatus, isRefreshable, type NewCredential, type StoredCredential } from "../../../domain/credential/credential.ts";
import { CREDENTIAL_PROVIDERS, type CredentialProvider } from "../../../domain/credential/events.ts";
import { userCredentialsId } from "../../../domain/streams.ts";
import { secretView } from "../../../secrets/secretBox.ts";
import { isCalendarDateTime } from "./apps.ts";
import { callerContext, iso, metaOf, type V1Deps } from "./common.ts";
import { v1Models } from "./models.ts";

const Provider = t.Union(CREDENTIAL_PROVIDERS.map((p) => t.Literal(p)), {
  description: "The provider kind, as an app's model connections name it: openai, anthropic or openai_compatible. " +
    "An agent billed to its end users uses the credential for its connection's kind (or the server's provider's).",
});

const Params = t.Object({ user_id: t.String({ minLength: 1, maxLength: 200 }), provider: Provider });

/** A secret as it goes into an HTTP header: visible ASCII, no spaces, bounded. */
const Secret = (description: string) => t.String({ minLength: 1, maxLength: 8192, pattern: "^[\\x21-\\x7e]+$", description });

const CredentialBody = t.Object({
  api_key: t.Optional(Secret("The user's API key for the provider. Write-only: stored sealed, never shown again.")),
  access_token: t.Optional(Secret("An OAuth access token for the provider (sent as the bearer token). Write-only.")),
  refresh_token: t.Optional(Secret("With access_token: used at the token_url of the agent's connection when the access token expires. Write-only.")),
  expires_at: t.Optional(t.String({ maxLength: 64, description: "With access_token: when it expires, as an ISO 8601 date-time with a zone (2030-01-31T12:00:00Z). A past time is accepted: the token is then expired (and refreshed on the next turn when it can be)." })),
}, { additionalProperties: false, description: "Either {api_key}, or {access_token, refresh_token?, expires_at?}." });

const UserCredential = t.Object({
  object: t.Literal("user_credential"),
  user_id: t.String(),
  provider: t.String(),
  status: t.Union([t.Literal("connected"), t.Literal("expired"), t.Literal("missing")], {
    description: "connected: usable; expired: the access token's expires_at has passed (refreshed on the next turn when refreshable, else the turn fails with credential_expired); missing: none stored",
  }),
  kind: t.Union([t.Literal("api_key"), t.Literal("oauth"), t.Null()]),
  expires_at: t.Union([t.String(), t.Null()], { description: "When the access token expires (ISO 8601); null when unknown, for an API key, or when missing" }),
  last4: t.Union([t.String(), t.Null()], { description: "The key's or access token's last 4 characters (long ones only); the secret itself is never shown" }),
  refreshable: t.Boolean({ description: "A refresh token is stored and the token endpoint has not refused it" }),
});

const view = (userId: string, provider: CredentialProvider, c: StoredCredential | undefined) => ({
  object: "user_credential" as const, user_id: userId, provider, status: credentialStatus(c, Date.now()), kind: c?.kind ?? null,
  expires_at: iso(c?.expires_at), last4: c?.last4 ?? null, refreshable: isRefreshable(c),
});

/**
 * 400 unless the path's user id is well-formed UTF-8 once percent-decoded: the router decodes a broken
 * sequence (`%FF`) to U+FFFD, which would silently name another user than the one meant.
 */
function checkUserIdPath(request: Request): void {
  const raw = new URL(request.url).pathname.split("/")[3] ?? "";
  try {
    decodeURIComponent(raw);
  } catch {
    throw new ValidationError("user_id is not valid UTF-8 once percent-decoded", { param: "user_id" });
  }
}

/** The credential a body describes, its secrets sealed for the caller's data partition. 400 naming the field otherwise. */
async function newCredential(ctx: AppContext, body: typeof CredentialBody.static): Promise<NewCredential> {
  if (body.api_key !== undefined && body.access_token !== undefined) {
    throw new ValidationError("Send either api_key or access_token, not both", { param: "access_token" });
  }
  if (body.api_key === undefined && body.access_token === undefined) {
    throw new ValidationError("Send api_key, or access_token (with refresh_token and expires_at when there are)", { param: "api_key" });
  }
  if (body.api_key !== undefined) {
    for (const field of ["refresh_token", "expires_at"] as const) {
      if (body[field] !== undefined) throw new ValidationError(`${field} goes with access_token, not with api_key`, { param: field });
    }
  }
  if (body.expires_at !== undefined && !isCalendarDateTime(body.expires_at)) {
    throw new ValidationError("expires_at must be an ISO 8601 date-time with a time and a zone, e.g. 2030-01-31T12:00:00Z", { param: "expires_at" });
  }
  const secret = (body.api_key ?? body.access_token)!;
  return {
    kind: body.api_key !== undefined ? "api_key" : "oauth",
    secret: await ctx.secrets.seal(ctx.appId, secret),
    refresh_token: body.refresh_token !== undefined ? await ctx.secrets.seal(ctx.appId, body.refresh_token) : null,
    expires_at: body.expires_at !== undefined ? Date.parse(body.expires_at) : null,
    last4: secretView(secret).last4,
  };
}

export const credentialRoutes = (deps: V1Deps) =>
  new Elysia({ name: "agentry.v1.credentials", prefix: "/v1/users", detail: { tags: ["End users"] } })
    .use(v1Models)
    .use(callerContext(deps))
    .model({ UserCredential })
    .put("/:user_id/credentials/:provider", async ({ ctx, params, body, request }) => {
      checkUserIdPath(request);
      requireUser(ctx, params.user_id);
      const credential = await newCredential(ctx, body);
      const r = await ctx.repos.credentials.handle(userCredentialsId(ctx.appId, params.user_id), {
        type: "SetCredential", app_id: ctx.appId, user_id: params.user_id, provider: params.provider, credential,
      }, metaOf(ctx, request, params.user_id));
      return view(params.user_id, params.provider, r.state.credentials[params.provider]);
    }, {
      params: Params, body: CredentialBody, response: "UserCredential",
      detail: {
        summary: "Connect an end user's own model account (BYOS)",
        description: "Stores the user's API key, or OAuth tokens, for one provider kind, replacing what was stored. Agents with `billing: \"end_user\"` run this user's turns on it. " +
          "Called by the app's backend (data:write) or by the user's client with an end-user token (its own user_id only; another is 403 permission_denied). The secrets are never returned.",
      },
    })
    .get("/:user_id/credentials/:provider", async ({ ctx, params, request }) => {
      checkUserIdPath(request);
      requireUser(ctx, params.user_id);
      const { state } = await ctx.repos.credentials.load(userCredentialsId(ctx.appId, params.user_id));
      return view(params.user_id, params.provider, state.credentials[params.provider]);
    }, {
      params: Params, response: "UserCredential",
      detail: { summary: "An end user's credential status: connected, expired or missing (never the secret)" },
    })
    .delete("/:user_id/credentials/:provider", async ({ ctx, params, request }) => {
      checkUserIdPath(request);
      requireUser(ctx, params.user_id);
      const r = await ctx.repos.credentials.handle(userCredentialsId(ctx.appId, params.user_id), { type: "RemoveCredential", provider: params.provider }, metaOf(ctx, request, params.user_id));
      return view(params.user_id, params.provider, r.state.credentials[params.provider]);
    }, {
      params: Params, response: "UserCredential",
      detail: { summary: "Disconnect an end user's model account: answers status missing (also when there was none)" },
    });
