/**
 * GET /v1/usage: tokens and credits between two UTC days, grouped by day, end user, agent or key, as
 * JSON or CSV (format=csv). From the usage read model (projections/usage). A key bound to an end user,
 * or an end user's token, sees only that user's usage; a key limited to some agents, only theirs. The
 * management plane's GET /v1/apps/{id}/usage answers the same for a whole app.
 */
import { Elysia, t } from "elysia";
import { ValidationError } from "../../../core/errors.ts";
import { USAGE_GROUPS, usageReport, type UsageFilter, type UsageGroup, type UsageRow } from "../../../../projections/usage/index.ts";
import type { Database } from "bun:sqlite";
import { callerContext, type ResponseSet, type V1Deps } from "./common.ts";
import { requireUser } from "../../../app/access.ts";
import { poolStatus } from "../../../app/billing.ts";
import { principalOf } from "../../auth.ts";

const DAY = /^\d{4}-\d{2}-\d{2}$/;
const MAX_DAYS = 366;
const MS_PER_DAY = 86_400_000;

export const UsageQuery = {
  from: t.Optional(t.String({ pattern: DAY.source, description: "First UTC day, YYYY-MM-DD (default: 29 days before `to`)" })),
  to: t.Optional(t.String({ pattern: DAY.source, description: "Last UTC day, inclusive, YYYY-MM-DD (default: today)" })),
  group_by: t.Optional(t.Union(USAGE_GROUPS.map((g) => t.Literal(g)), { description: "day (default), user, agent or key" })),
  format: t.Optional(t.Union([t.Literal("json"), t.Literal("csv")], { description: "json (default) or csv" })),
  user_id: t.Optional(t.String({ minLength: 1, maxLength: 200, description: "Only this end user's usage" })),
};

export const UsageQueryObject = t.Object(UsageQuery, { additionalProperties: false });

const Totals = {
  jobs: t.Integer(), model_calls: t.Integer(), tool_calls: t.Integer(), prompt_tokens: t.Integer(), completion_tokens: t.Integer(),
  cached_tokens: t.Integer(), reasoning_tokens: t.Integer(), credits: t.Number(),
};

export const UsageReport = t.Object({
  object: t.Literal("usage"), from: t.String(), to: t.String(), group_by: t.String(),
  user_id: t.Union([t.String(), t.Null()], { description: "The end user the report is limited to, if any" }),
  data: t.Array(t.Object({
    day: t.Optional(t.String()), user_id: t.Optional(t.String()), agent_id: t.Optional(t.String()), key_id: t.Optional(t.Union([t.String(), t.Null()])),
    ...Totals,
  })),
  totals: t.Object(Totals),
});

const GROUP_FIELD: Record<UsageGroup, string> = { day: "day", user: "user_id", agent: "agent_id", key: "key_id" };
const NUMBERS = ["jobs", "model_calls", "tool_calls", "prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens", "credits"] as const;

/** A real calendar day (Date.parse accepts 2026-02-30 and rolls it over). */
function checkDay(day: string, param: string): number {
  const ms = Date.parse(`${day}T00:00:00Z`);
  if (Number.isNaN(ms) || new Date(ms).toISOString().slice(0, 10) !== day) throw new ValidationError(`${param} is not a calendar day`, { param });
  return ms;
}

/** The report's period: `to` defaults to today, `from` to 29 days before it; at most 366 days. */
function periodOf(query: { from?: string; to?: string }): { from: string; to: string } {
  const toMs = query.to ? checkDay(query.to, "to") : Date.parse(new Date().toISOString().slice(0, 10));
  const fromMs = query.from ? checkDay(query.from, "from") : toMs - 29 * MS_PER_DAY;
  if (fromMs > toMs) throw new ValidationError("from is after to", { param: "from" });
  if ((toMs - fromMs) / MS_PER_DAY + 1 > MAX_DAYS) throw new ValidationError(`A report covers at most ${MAX_DAYS} days`, { param: "from" });
  const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);
  return { from: day(fromMs), to: day(toMs) };
}

/** The usage answer for `filter` (without its period), as JSON or as a CSV file. */
export function usageAnswer(
  db: Database, filter: Omit<UsageFilter, "from" | "to">, query: typeof UsageQueryObject.static, set: ResponseSet,
) {
  const period = periodOf(query);
  const groupBy = query.group_by ?? "day";
  const userId = query.user_id ?? filter.userId;
  const rows = usageReport(db, { ...filter, ...(userId !== undefined ? { userId } : {}), ...period }, groupBy);
  const field = GROUP_FIELD[groupBy];
  const data = rows.map(({ group, ...numbers }) => ({ [field]: groupBy === "key" && group === "" ? null : group, ...numbers }));
  if (query.format === "csv") {
    set.headers["content-type"] = "text/csv; charset=utf-8";
    set.headers["content-disposition"] = `attachment; filename="usage-${period.from}-${period.to}-by-${groupBy}.csv"`;
    return csvOf(field, rows);
  }
  return { object: "usage" as const, ...period, group_by: groupBy, user_id: userId ?? null, data, totals: totalsOf(rows) };
}

function totalsOf(rows: readonly UsageRow[]) {
  const totals = Object.fromEntries(NUMBERS.map((n) => [n, 0])) as Record<(typeof NUMBERS)[number], number>;
  for (const row of rows) for (const n of NUMBERS) totals[n] += row[n];
  totals.credits = Math.round(totals.credits * 1e6) / 1e6;
  return totals;
}

function csvOf(field: string, rows: readonly UsageRow[]): string {
  const lines = [[field, ...NUMBERS].join(",")];
  for (const row of rows) lines.push([csvCell(row.group), ...NUMBERS.map((n) => String(row[n]))].join(","));
  return lines.join("\r\n") + "\r\n";
}

/**
 * RFC 4180 quoting; a value a spreadsheet would run as a formula (=, +, -, @, tab, CR first) is
 * prefixed with an apostrophe, since user ids come from the app's own users.
 */
function csvCell(value: string): string {
  const safe = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
}

const Dimension = t.Union([t.Object({
  limit: t.Number(), spent: t.Number({ description: "Spent by jobs that ended" }),
  held: t.Number({ description: "Held by jobs still running" }), remaining: t.Number({ description: "What a new job could still take" }),
}), t.Null()], { description: "null: this dimension is not limited" });

export const UsageLimitStatus = t.Object({
  object: t.Literal("list"), user_id: t.Union([t.String(), t.Null()]),
  data: t.Array(t.Object({
    scope: t.Union([t.Literal("app"), t.Literal("user"), t.Literal("key")]), period: t.Union([t.Literal("day"), t.Literal("month")]),
    resets_at: t.String(), credits: Dimension, tokens: Dimension,
  })),
});

export const usageRoutes = (deps: V1Deps) =>
  new Elysia({ name: "agentry.v1.usage", prefix: "/v1/usage", detail: { tags: ["Usage"] } })
    .use(callerContext(deps))
    .model({ UsageReport, UsageLimitStatus })
    .get("/limits", async ({ ctx, query, request }) => {
      if (query.user_id !== undefined) requireUser(ctx, query.user_id);
      const userId = query.user_id ?? ctx.actingUser ?? null;
      const data = await poolStatus(ctx, { appId: ctx.appId, userId, keyId: principalOf(request)?.keyId ?? null });
      return { object: "list" as const, user_id: userId, data };
    }, {
      query: t.Object({ user_id: t.Optional(t.String({ minLength: 1, maxLength: 200, description: "Also this end user's pools (an end user's own credential: theirs)" })) }, { additionalProperties: false }),
      response: "UsageLimitStatus",
      detail: {
        summary: "Where the caller stands in each usage-limit pool: the app's, its key's, and an end user's",
        description: "Empty when the app sets no limits (and for test keys, which are never limited). `remaining` is what a new job could still reserve.",
      },
    })
    .get("", ({ ctx, query, set }) => {
      // An end user asks for their own usage only (naming another user is refused, not shown nothing).
      if (query.user_id !== undefined) requireUser(ctx, query.user_id);
      return usageAnswer(ctx.db, {
        appId: ctx.appId,
        ...(ctx.actingUser ? { userId: ctx.actingUser } : {}),
        ...(ctx.allowedAgents ? { agentIds: ctx.allowedAgents } : {}),
      }, query, set);
    }, {
      query: UsageQueryObject,
      detail: {
        summary: "Tokens and credits used, by day, end user, agent or key (JSON or CSV)",
        description: "From the usage read model. A key bound to an end user (or an end user's token) sees that user's usage only; " +
          "a key limited to some agents, theirs only. Test keys see their test data, which is never billed (credits 0).",
        responses: {
          200: {
            description: "The report",
            content: {
              "application/json": { schema: { $ref: "#/components/schemas/UsageReport" } },
              "text/csv": { schema: { type: "string" } },
            },
          },
        },
      },
    });
