/**
 * /v1/apps/{app_id}/rate_limits: an app's rate limits, on the management plane (members read, admins
 * change). Stored as RateLimitsSet on the app's stream; enforced from the tenant directory in memory
 * (see src/http/rateLimit.ts), so a change holds in this process once the answer is sent and in the
 * others as soon as their directories follow the app stream.
 */
import { Type } from "@sinclair/typebox";
import { Elysia, t } from "elysia";
import type { AppContext } from "../../../app/context.ts";
import type { TenantDirectory } from "../../../app/tenantDirectory.ts";
import type { ManagementPrincipal } from "../../../auth/management.ts";
import type { AppRateLimits, AppState, RateLimitBudget } from "../../../domain/app/app.ts";
import { effectiveBudget, HEAVY_CALLS, type RateLimitDefaults } from "../../rateLimit.ts";
import { liveAppIn, requireRole } from "./apps.ts";
import { IdParam, metaOf } from "./common.ts";

export interface AppRateLimitRoutesDeps {
  ctx: AppContext;
  directory: TenantDirectory;
  /** The server's defaults (RATE_LIMIT_PER_MINUTE, RATE_LIMIT_HEAVY_PER_MINUTE). */
  defaults: RateLimitDefaults;
  principalOf(request: Request): ManagementPrincipal | undefined;
}

/** The largest limit an app may set, as for the server's own (RATE_LIMIT_PER_MINUTE). */
export const MAX_RATE_LIMIT = 1_000_000;

/**
 * A limit as sent: TypeBox's integer rather than Elysia's, which would take "60" (a string) as 60;
 * here a string is a 400 like any other wrong type.
 */
const LimitBody = (description: string) =>
  t.Optional(Type.Union([Type.Integer({ minimum: 0, maximum: MAX_RATE_LIMIT }), Type.Null()], { description }));
const BudgetBody = t.Object({
  requests_per_minute: LimitBody("Requests a minute, of any kind; 0: unlimited; null or absent: the server's default"),
  heavy_per_minute: LimitBody(`Heavy calls a minute (${HEAVY_CALLS.join(", ")}), which count as requests too; 0: unlimited; null or absent: the server's default`),
}, { additionalProperties: false });
const Limit = t.Union([t.Integer(), t.Null()]);
const RateLimitsBody = t.Object({
  per_key: t.Optional(BudgetBody),
  per_end_user: t.Optional(BudgetBody),
}, { additionalProperties: false });

const Budget = t.Object({ requests_per_minute: t.Integer(), heavy_per_minute: t.Integer() });
const ConfiguredBudget = t.Object({ requests_per_minute: Limit, heavy_per_minute: Limit });
const RateLimits = t.Object({
  object: t.Literal("rate_limits"),
  app_id: t.String(),
  per_key: t.Composite([Budget], { description: "In force for each API key's own requests (0: unlimited)" }),
  per_end_user: t.Composite([Budget], { description: "In force for each end user (an end-user token, or a key bound to a user_id)" }),
  configured: t.Object({ per_key: ConfiguredBudget, per_end_user: ConfiguredBudget }, { description: "What the app set; null where the server's default applies" }),
  defaults: t.Composite([Budget], { description: "The server's defaults" }),
});

const UNSET: RateLimitBudget = { requests_per_minute: null, heavy_per_minute: null };

const budgetOf = (body: typeof BudgetBody.static | undefined): RateLimitBudget => ({
  requests_per_minute: body?.requests_per_minute ?? null,
  heavy_per_minute: body?.heavy_per_minute ?? null,
});

export const appRateLimitRoutes = ({ ctx, directory, defaults, principalOf }: AppRateLimitRoutesDeps) => {
  const liveApp = liveAppIn(directory);
  const view = (appId: string, app: AppState) => {
    const configured: AppRateLimits = app.rate_limits ?? { per_key: UNSET, per_end_user: UNSET };
    return {
      object: "rate_limits" as const, app_id: appId,
      per_key: effectiveBudget(app.rate_limits?.per_key, defaults),
      per_end_user: effectiveBudget(app.rate_limits?.per_end_user, defaults),
      configured: { per_key: { ...configured.per_key }, per_end_user: { ...configured.per_end_user } },
      defaults: { requests_per_minute: defaults.perMinute, heavy_per_minute: defaults.heavyPerMinute },
    };
  };

  return new Elysia({ name: "agentry.v1.apps.rate-limits", prefix: "/v1/apps", detail: { tags: ["Apps"], security: [{ managementToken: [] }] } })
    .model({ RateLimits })
    .get("/:app_id/rate_limits", ({ params, request }) => {
      requireRole(principalOf(request), "member", params.app_id);
      return view(params.app_id, liveApp(params.app_id));
    }, {
      params: IdParam("app_id"), response: "RateLimits",
      detail: { summary: "An app's rate limits: in force, as set, and the server's defaults" },
    })
    .put("/:app_id/rate_limits", async ({ params, body, request }) => {
      const principal = requireRole(principalOf(request), "admin", params.app_id);
      liveApp(params.app_id);
      const rateLimits = { per_key: budgetOf(body.per_key), per_end_user: budgetOf(body.per_end_user) };
      const meta = { ...metaOf(ctx, request), appId: params.app_id, actor: `${principal.kind}:${principal.subject}` };
      const r = await ctx.repos.apps.handle(params.app_id, { type: "SetRateLimits", rate_limits: rateLimits }, meta);
      if (r.position !== null) await directory.waitFor(r.position);
      return view(params.app_id, liveApp(params.app_id));
    }, {
      params: IdParam("app_id"), body: RateLimitsBody, response: "RateLimits",
      detail: {
        summary: "Set an app's rate limits (admins)",
        description: "Replaces them whole: a limit left out (or null) is the server's default again, so `{}` reverts every one. " +
          "0 makes a budget unlimited. Per key: each API key's own requests; per end user: each user's, whichever key or token they come with.",
      },
    });
};
