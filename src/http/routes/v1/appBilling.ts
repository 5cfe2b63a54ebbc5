/**
 * The management plane's billing routes for an app (members read, admins change):
 *
 * - /v1/apps/{id}/limits: daily and monthly credit and token limits for the app, each end user and
 *   each key, and the reservation a job holds (src/domain/billing/limits.ts).
 * - /v1/apps/{id}/prices: the app's own model prices, on top of the server's (MODEL_PRICES_FILE).
 * - /v1/apps/{id}/usage: the app's usage report (as GET /v1/usage, for the whole app; mode=test for
 *   its test data).
 *
 * Limits and prices are events on the app's stream (LimitsSet, PricesSet).
 */
import { Elysia, t } from "elysia";
import type { AppContext } from "../../../app/context.ts";
import type { TenantDirectory } from "../../../app/tenantDirectory.ts";
import type { ManagementPrincipal } from "../../../auth/management.ts";
import { ValidationError } from "../../../core/errors.ts";
import type { AppState } from "../../../domain/app/app.ts";
import { DEFAULT_RESERVATION, NO_LIMITS, type LimitSet, type Limits } from "../../../domain/billing/limits.ts";
import type { ModelPrice } from "../../../domain/billing/prices.ts";
import { dataAppId } from "../../../app/access.ts";
import { liveAppIn, requireRole } from "./apps.ts";
import { IdParam, metaOf } from "./common.ts";
import { UsageQuery, UsageReport, usageAnswer } from "./usage.ts";
import { requireServing } from "../../../projections/runner.ts";

export interface AppBillingRoutesDeps {
  ctx: AppContext;
  directory: TenantDirectory;
  principalOf(request: Request): ManagementPrincipal | undefined;
}

const MAX_PRICE_ENTRIES = 1_000;
const MAX_PRICE_KEY = 300;
const MAX_CREDITS = 1e12;

const Credits = t.Union([t.Number({ minimum: 0, maximum: MAX_CREDITS }), t.Null()]);
const Tokens = t.Union([t.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }), t.Null()]);
const LimitSetBody = t.Object({
  daily_credits: t.Optional(Credits), monthly_credits: t.Optional(Credits),
  daily_tokens: t.Optional(Tokens), monthly_tokens: t.Optional(Tokens),
}, { additionalProperties: false, description: "Each limit absent or null: not limited" });
const LimitsBody = t.Object({
  app: t.Optional(LimitSetBody),
  per_user: t.Optional(LimitSetBody),
  per_key: t.Optional(LimitSetBody),
  reservation: t.Optional(t.Object({
    credits: t.Optional(t.Number({ minimum: 0, maximum: MAX_CREDITS })),
    tokens: t.Optional(t.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER })),
  }, { additionalProperties: false, description: `What a job holds from each pool while it runs, and keeps as headroom between steps (default ${DEFAULT_RESERVATION.credits} credits, ${DEFAULT_RESERVATION.tokens} tokens)` })),
}, { additionalProperties: false });

const LimitSetView = t.Object({ daily_credits: Credits, monthly_credits: Credits, daily_tokens: Tokens, monthly_tokens: Tokens });
const UsageLimits = t.Object({
  object: t.Literal("usage_limits"), app_id: t.String(),
  app: LimitSetView, per_user: LimitSetView, per_key: LimitSetView,
  reservation: t.Object({ credits: t.Number(), tokens: t.Integer() }),
});

const Price = t.Object({
  input: t.Number({ minimum: 0, maximum: MAX_CREDITS, description: "Credits per million input tokens" }),
  output: t.Number({ minimum: 0, maximum: MAX_CREDITS, description: "Credits per million output tokens" }),
  cached: t.Optional(t.Number({ minimum: 0, maximum: MAX_CREDITS, description: "Credits per million cached input tokens (default: input)" })),
}, { additionalProperties: false });
const PricesBody = t.Object({
  models: t.Record(t.String(), Price, { description: "Keyed by `provider/model`, `model`, `provider/*` or `*` (most specific wins)" }),
}, { additionalProperties: false });
const PriceTableView = t.Object({
  object: t.Literal("price_table"), app_id: t.String(),
  models: t.Record(t.String(), Price, { description: "The app's own prices" }),
  server: t.Record(t.String(), Price, { description: "The server's prices (MODEL_PRICES_FILE), used where the app has no entry" }),
});

const limitSetOf = (body: typeof LimitSetBody.static | undefined): LimitSet => ({
  daily_credits: body?.daily_credits ?? null, monthly_credits: body?.monthly_credits ?? null,
  daily_tokens: body?.daily_tokens ?? null, monthly_tokens: body?.monthly_tokens ?? null,
});
const limited = (set: LimitSet) => Object.values(set).some((v) => v !== null);

export const appBillingRoutes = ({ ctx, directory, principalOf }: AppBillingRoutesDeps) => {
  const liveApp = liveAppIn(directory);
  const change = async (request: Request, appId: string, command: Parameters<AppContext["repos"]["apps"]["handle"]>[1]) => {
    const principal = requireRole(principalOf(request), "admin", appId);
    liveApp(appId);
    const meta = { ...metaOf(ctx, request), appId, actor: `${principal.kind}:${principal.subject}` };
    const r = await ctx.repos.apps.handle(appId, command, meta);
    if (r.position !== null) await directory.waitFor(r.position);
    return liveApp(appId);
  };
  const limitsView = (appId: string, limits: Limits | null) => ({
    object: "usage_limits" as const, app_id: appId,
    app: limits?.app ?? NO_LIMITS, per_user: limits?.per_user ?? NO_LIMITS, per_key: limits?.per_key ?? NO_LIMITS,
    reservation: limits?.reservation ?? { ...DEFAULT_RESERVATION },
  });
  const pricesView = (appId: string, app: AppState) => ({
    object: "price_table" as const, app_id: appId, models: { ...app.prices }, server: { ...(ctx.prices ?? {}) },
  });

  return new Elysia({ name: "agentry.v1.apps.billing", prefix: "/v1/apps", detail: { tags: ["Apps"], security: [{ managementToken: [] }] } })
    .model({ UsageLimits, PriceTableView, UsageReport })
    .get("/:app_id/limits", ({ params, request }) => {
      requireRole(principalOf(request), "member", params.app_id);
      return limitsView(params.app_id, liveApp(params.app_id).limits);
    }, { params: IdParam("app_id"), response: "UsageLimits", detail: { summary: "An app's usage limits" } })
    .put("/:app_id/limits", async ({ params, body, request }) => {
      const sets = { app: limitSetOf(body.app), per_user: limitSetOf(body.per_user), per_key: limitSetOf(body.per_key) };
      const reservation = { credits: body.reservation?.credits ?? DEFAULT_RESERVATION.credits, tokens: body.reservation?.tokens ?? DEFAULT_RESERVATION.tokens };
      const limits: Limits | null = Object.values(sets).some(limited) || body.reservation ? { ...sets, reservation } : null;
      const app = await change(request, params.app_id, { type: "SetLimits", limits });
      return limitsView(params.app_id, app.limits);
    }, {
      params: IdParam("app_id"), body: LimitsBody, response: "UsageLimits",
      detail: {
        summary: "Set an app's usage limits (admins)",
        description: "Replaces them whole: what is left out is not limited, so `{}` removes every limit. Daily and monthly (UTC) credit and token limits " +
          "for the app, for each end user (a job's user_id) and for each API key. A request that would pass one gets 403 usage_limit_exceeded; a running " +
          "job that reaches one ends failed with that code after its current step.",
      },
    })
    .delete("/:app_id/limits", async ({ params, request }) => {
      const app = await change(request, params.app_id, { type: "SetLimits", limits: null });
      return limitsView(params.app_id, app.limits);
    }, { params: IdParam("app_id"), response: "UsageLimits", detail: { summary: "Remove all of an app's usage limits (admins)" } })
    .get("/:app_id/prices", ({ params, request }) => {
      requireRole(principalOf(request), "member", params.app_id);
      return pricesView(params.app_id, liveApp(params.app_id));
    }, { params: IdParam("app_id"), response: "PriceTableView", detail: { summary: "An app's model prices, and the server's under them" } })
    .put("/:app_id/prices", async ({ params, body, request }) => {
      const entries = Object.entries(body.models);
      if (entries.length > MAX_PRICE_ENTRIES) throw new ValidationError(`At most ${MAX_PRICE_ENTRIES} prices`, { param: "models" });
      // A record's keys are not checked by its schema.
      const badKey = entries.find(([key]) => key.trim().length === 0 || key.length > MAX_PRICE_KEY);
      if (badKey) throw new ValidationError(`A price key is a model name of 1 to ${MAX_PRICE_KEY} characters`, { param: `models.${badKey[0]}` });
      const prices: Record<string, ModelPrice> = Object.fromEntries(entries);
      const app = await change(request, params.app_id, { type: "SetPrices", prices });
      return pricesView(params.app_id, app);
    }, {
      params: IdParam("app_id"), body: PricesBody, response: "PriceTableView",
      detail: {
        summary: "Set an app's model prices (admins)",
        description: "Replaces the app's table whole. Credits per million tokens; a step's credits are priced when it is recorded, so a change applies to steps from now on.",
      },
    })
    .get("/:app_id/usage", ({ params, query, request, set }) => {
      requireRole(principalOf(request), "member", params.app_id);
      liveApp(params.app_id);
      const { mode, ...report } = query;
      requireServing(ctx.projections, "usage");
      return usageAnswer(ctx.db, { appId: dataAppId(params.app_id, mode ?? "live") }, report, set);
    }, {
      params: IdParam("app_id"),
      query: t.Object({ ...UsageQuery, mode: t.Optional(t.Union([t.Literal("live"), t.Literal("test")], { description: "live (default) or test data" })) }, { additionalProperties: false }),
      detail: {
        summary: "An app's usage, by day, end user, agent or key (JSON or CSV)",
        responses: {
          200: {
            description: "The report",
            content: { "application/json": { schema: { $ref: "#/components/schemas/UsageReport" } }, "text/csv": { schema: { type: "string" } } },
          },
        },
      },
    });
};
