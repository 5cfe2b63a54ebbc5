/**
 * Usage limits: daily and monthly credit and token pools, for the whole app, for each end user and for
 * each API key (PUT /v1/apps/{id}/limits). Each pool a job draws from is a budget (budget.ts) for one
 * subject and one period; which ones a job draws from is decided here, purely.
 *
 * Periods are UTC calendar days and months. A job reserves `reservation` from each of its pools when it
 * is accepted, widens that reservation between its steps as it spends, and settles what it really spent
 * when it ends.
 */
import { Type, type Static } from "@sinclair/typebox";
import { Nullable } from "../shared/schemas.ts";

const Amount = Nullable(Type.Number({ minimum: 0 }));

/** A subject's pools; null (or absent) for no limit. */
export const LimitSetSchema = Type.Object({
  daily_credits: Amount,
  monthly_credits: Amount,
  daily_tokens: Nullable(Type.Integer({ minimum: 0 })),
  monthly_tokens: Nullable(Type.Integer({ minimum: 0 })),
});
export type LimitSet = Static<typeof LimitSetSchema>;

export const LimitsSchema = Type.Object({
  /** The app's own pools, shared by all its keys and users. */
  app: LimitSetSchema,
  /** Each end user's pools (the job's `user_id`). */
  per_user: LimitSetSchema,
  /** Each API key's pools (jobs a key started, or an end user's token issued under it). */
  per_key: LimitSetSchema,
  /** What a job holds from each of its pools while it runs, and the headroom it keeps between steps. */
  reservation: Type.Object({ credits: Type.Number({ minimum: 0 }), tokens: Type.Integer({ minimum: 0 }) }),
});
export type Limits = Static<typeof LimitsSchema>;

export const NO_LIMITS: LimitSet = { daily_credits: null, monthly_credits: null, daily_tokens: null, monthly_tokens: null };
export const DEFAULT_RESERVATION = { credits: 1, tokens: 4_000 } as const;

export interface Amounts {
  credits: number;
  tokens: number;
}

/** A pool a job draws from: its budget id and its limits (null: that dimension is not limited). */
export interface Pool {
  budget_id: string;
  scope: "app" | "user" | "key";
  period: "day" | "month";
  credits: number | null;
  tokens: number | null;
  /** Epoch ms at which the period ends (when the pool is full again). */
  resets_at: number;
}

export interface Payer {
  appId: string;
  userId: string | null;
  keyId: string | null;
}

/** The API key an event's actor names (`key:<id>`, or `user:<uid>@key:<id>` for an end user's token). */
export function keyIdOfActor(actor: string | undefined): string | null {
  if (!actor) return null;
  const at = actor.lastIndexOf("key:");
  return at < 0 ? null : actor.slice(at + 4);
}

/**
 * An end user in a budget id: a hash of their id, so that any id fits a stream name and no stream name
 * carries personal data (as for their credentials' streams).
 */
export const userSubject = (userId: string): string => new Bun.CryptoHasher("sha256").update(userId).digest("hex").slice(0, 32);

/** The pools a job of `payer` draws from at `now`: only those with a limit set. */
export function poolsOf(limits: Limits | null, payer: Payer, now: number): Pool[] {
  if (!limits) return [];
  const day = new Date(now).toISOString().slice(0, 10);
  const subjects = ["app", payer.userId === null ? null : `user:${userSubject(payer.userId)}`, payer.keyId === null ? null : `key:${payer.keyId}`];
  const pools: Pool[] = [];
  for (const subject of subjects) {
    if (subject === null) continue;
    for (const period of [day, day.slice(0, 7)]) {
      const pool = poolOf(limits, `${payer.appId}:${subject}:${period}`);
      if (pool) pools.push(pool);
    }
  }
  return pools;
}

/** The app a budget id belongs to. */
export const appOfBudget = (budgetId: string): string => budgetId.slice(0, budgetId.indexOf(":"));

/**
 * The pool a budget id names, with the limits `limits` set for it now; null when they set none any
 * more. Ids are `<app>:app:<period>`, `<app>:user:<hash of the user id>:<period>` or
 * `<app>:key:<key id>:<period>` (the period is read from the end).
 */
export function poolOf(limits: Limits | null, budgetId: string): Pool | null {
  if (!limits) return null;
  const rest = budgetId.slice(budgetId.indexOf(":") + 1);
  const scope = rest.slice(0, rest.indexOf(":")) as Pool["scope"];
  const periodKey = rest.slice(rest.lastIndexOf(":") + 1);
  const period: Pool["period"] = periodKey.length === 10 ? "day" : "month";
  const set = scope === "app" ? limits.app : scope === "user" ? limits.per_user : scope === "key" ? limits.per_key : null;
  if (!set) return null;
  const credits = period === "day" ? set.daily_credits : set.monthly_credits;
  const tokens = period === "day" ? set.daily_tokens : set.monthly_tokens;
  if (credits === null && tokens === null) return null;
  const [y, m, d] = periodKey.split("-").map(Number) as [number, number, number?];
  const resets_at = period === "day" ? Date.UTC(y, m - 1, d! + 1) : Date.UTC(y, m, 1);
  return { budget_id: budgetId, scope, period, credits, tokens, resets_at };
}
