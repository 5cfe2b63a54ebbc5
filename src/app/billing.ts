/**
 * Credits and usage limits, applied to jobs:
 *
 * - `creditsFor`: what a model step cost the app, from the app's prices over the server's.
 * - `reserveJob`: a job being accepted takes a reservation in each pool its app's limits set for it
 *   (the app's, its end user's, its key's; daily and monthly). A pool without room refuses the request
 *   with 403 usage_limit_exceeded, and the pools already taken are given back.
 * - `coverNextStep`: between steps, a running job widens its reservations to what it has spent plus one
 *   reservation of headroom; a pool without room ends the job failed with usage_limit_exceeded.
 * - `settleJob`: the job ended; each pool gets what it really spent and frees its reservation.
 *
 * Each decision is made by the budget decider (src/domain/billing/budget.ts) on a budget stream with
 * optimistic concurrency. Pools count what the app pays: test data draws from none, and a job whose
 * model steps an end user's own credential pays (billing: end_user) holds nothing up front and draws
 * only its tools' credits.
 */
import type { AppContext } from "./context.ts";
import { UsageLimitError } from "../core/errors.ts";
import { TERMINAL, type JobState } from "../domain/job/job.ts";
import { appOfBudget, DEFAULT_RESERVATION, poolOf, poolsOf, type Amounts, type Payer, type Pool } from "../domain/billing/limits.ts";
import { priceOf, roundCredits, tokenCredits, type TokenUsage } from "../domain/billing/prices.ts";
import { committed } from "../domain/billing/budget.ts";
import { baseAppId, isTestData } from "./access.ts";
import type { CommandMetadata } from "./repository.ts";
import type { BudgetCommand } from "../domain/billing/budget.ts";
import { WrongExpectedVersionError } from "../eventstore/errors.ts";

/** How many of a full pool's holders are checked for having ended without settling, per refusal. */
const HEAL_CHECKS = 100;
/** A reservation whose job was never written (its request died in between) is given back after this. */
const ORPHAN_AFTER_MS = 5 * 60_000;

/** What a step's tokens cost the app of `dataApp` (nothing for test data). */
export async function creditsFor(ctx: AppContext, dataApp: string, provider: string, model: string, usage: TokenUsage): Promise<number> {
  if (isTestData(dataApp)) return 0;
  const app = (await ctx.repos.apps.peek(baseAppId(dataApp))).state;
  return tokenCredits(priceOf([app.prices, ctx.prices ?? {}], provider, model), usage);
}

/** Tokens as limits count them: what went in and came out of the steps the app paid for. */
export const tokensOf = (job: Pick<JobState, "appTokens">): number => job.appTokens;

async function limitsOf(ctx: AppContext, dataApp: string) {
  return (await ctx.repos.apps.peek(baseAppId(dataApp))).state.limits;
}

const systemMeta = (appId: string, jobId: string): CommandMetadata => ({ appId, correlationId: jobId, actor: "system:billing" });

/**
 * Reserves for a new job in every pool that limits it; returns the budgets taken (none when no limit
 * applies). Throws UsageLimitError when a pool has no room, after giving back what it took. Only for a
 * job not written yet: a job that exists has its reservations (or ended and settled them), and taking
 * them again would hold what nothing settles.
 */
export async function reserveJob(
  ctx: AppContext, payer: Payer, jobId: string, meta: CommandMetadata,
  /** The end user's own credential pays its model steps (billing: end_user): it holds nothing up front. */
  endUserPays = false,
): Promise<string[]> {
  if (isTestData(payer.appId)) return [];
  const limits = await limitsOf(ctx, payer.appId);
  const pools = poolsOf(limits, { ...payer, appId: baseAppId(payer.appId) }, meta.now ?? Date.now());
  if (pools.length === 0) return [];
  const amount: Amounts = limits?.reservation ?? DEFAULT_RESERVATION;
  const taken: string[] = [];
  try {
    for (const pool of pools) {
      await withHealing(ctx, pool.budget_id, () => budgetCommand(ctx, pool.budget_id, { type: "Reserve", pool, job_id: jobId, amount, at: meta.now ?? Date.now(), free: endUserPays }, poolMeta(meta, jobId)));
      taken.push(pool.budget_id);
    }
  } catch (err) {
    await releaseJob(ctx, taken, jobId, meta.appId);
    throw err;
  }
  return taken;
}

/** Gives back a job's reservations when the request that took them wrote no job after all. */
export async function releaseJob(ctx: AppContext, budgets: readonly string[], jobId: string, appId: string): Promise<void> {
  for (const id of budgets) {
    await budgetCommand(ctx, id, { type: "Settle", budget_id: id, job_id: jobId, spent: { credits: 0, tokens: 0 } }, systemMeta(appId, jobId)).catch((err) => {
      ctx.logger.warn("could not release a usage reservation", { budget: id, job_id: jobId, error: err as Error });
    });
  }
}

/**
 * Before a job's next model step: every pool it draws from must have room for what it has spent plus
 * one reservation more; before a tool call, plus the tool's estimated credits (`next`). Throws
 * UsageLimitError when one has not.
 */
export async function coverNext(ctx: AppContext, jobId: string, job: JobState, next: "step" | number): Promise<void> {
  const budgets = job.queued?.budgets ?? [];
  if (budgets.length === 0) return;
  const limits = await limitsOf(ctx, appOfBudget(budgets[0]!));
  const more = next === "step" ? limits?.reservation ?? DEFAULT_RESERVATION : { credits: next, tokens: 0 };
  const to: Amounts = { credits: job.credits + more.credits, tokens: tokensOf(job) + more.tokens };
  for (const id of budgets) {
    const pool = poolOf(limits, id);
    if (!pool) continue; // that limit was removed since the job was accepted
    await withHealing(ctx, id, () => budgetCommand(ctx, id, { type: "Extend", pool, job_id: jobId, to, at: Date.now() }, systemMeta(appOfBudget(id), jobId)));
  }
}

/** The job ended: each of its pools gets what it really spent. Idempotent; a job not ended is left alone. */
export async function settleJob(ctx: AppContext, jobId: string): Promise<void> {
  const { state: job } = await ctx.repos.jobs.load(jobId);
  if (!TERMINAL.has(job.status as never)) return;
  for (const id of job.queued?.budgets ?? []) await settleIn(ctx, id, jobId, job);
}

async function settleIn(ctx: AppContext, budgetId: string, jobId: string, job: JobState): Promise<void> {
  const spent: Amounts = { credits: job.credits, tokens: tokensOf(job) };
  await budgetCommand(ctx, budgetId, { type: "Settle", budget_id: budgetId, job_id: jobId, spent }, systemMeta(appOfBudget(budgetId), jobId));
}

/**
 * The pools of `payer` at `at` that hold a reservation for `jobId`: for a job written after its
 * request's process stopped (the reconciler), which must still settle what that request reserved.
 */
export async function heldBudgets(ctx: AppContext, payer: Payer, jobId: string, at: number): Promise<string[]> {
  if (isTestData(payer.appId)) return [];
  const pools = poolsOf(await limitsOf(ctx, payer.appId), { ...payer, appId: baseAppId(payer.appId) }, at);
  const held: string[] = [];
  for (const pool of pools) {
    if (Object.hasOwn((await ctx.repos.budgets.load(pool.budget_id)).state.held, jobId)) held.push(pool.budget_id);
  }
  return held;
}

/** Rounds of (the repository's own immediate) retries on a lost race for a pool, each after a jittered pause. */
const CONTENTION_ROUNDS = 10;

/**
 * One budget decision. A pool is one stream every job of its app (or user, or key) writes, from every
 * process: under contention the expected revision keeps losing to others' appends, so each round of
 * retries waits a little longer, at random, before deciding again on the newer state.
 */
/**
 * The metadata of a reservation: a pool outlives an erasure of the user it was reserved for (it holds no
 * content), so it names that user only as its stream does, hashed: no `attributed_user_id`, and an end
 * user's own token as `user:sha256:<hash>@key:<id>`.
 */
function poolMeta(meta: CommandMetadata, jobId: string): CommandMetadata {
  const { attributedUserId: _, ...rest } = meta;
  const actor = meta.actor?.match(/^user:(.*)@(key:[^@]*)$/);
  return { ...rest, correlationId: jobId, ...(actor ? { actor: `user:sha256:${Bun.SHA256.hash(actor[1]!, "hex") as string}@${actor[2]}` } : {}) };
}

async function budgetCommand(ctx: AppContext, budgetId: string, command: BudgetCommand, meta: CommandMetadata) {
  for (let round = 1; ; round++) {
    try {
      return await ctx.repos.budgets.handle(budgetId, command, meta);
    } catch (err) {
      if (!(err instanceof WrongExpectedVersionError) || round >= CONTENTION_ROUNDS) throw err;
      await Bun.sleep(Math.random() * 5 * round);
    }
  }
}

/**
 * Runs a budget decision; when it is refused, first settles the pool's holders whose jobs have ended
 * without being settled (their process stopped in between) and decides once more. Ends are normally
 * settled as they happen (the turn coordinator); this repairs what a crash left behind, only when it
 * matters, without a sweep.
 */
async function withHealing<T>(ctx: AppContext, budgetId: string, decide: () => Promise<T>): Promise<T> {
  try {
    return await decide();
  } catch (err) {
    if (!(err instanceof UsageLimitError)) throw err;
    const { state } = await ctx.repos.budgets.load(budgetId);
    let healed = 0;
    for (const jobId of Object.keys(state.held).slice(0, HEAL_CHECKS)) {
      const { state: job } = await ctx.repos.jobs.peek(jobId);
      if (job.status === "none" ? Date.now() - state.held[jobId]!.at < ORPHAN_AFTER_MS : !TERMINAL.has(job.status as never)) continue;
      // A job never written gives its hold back; an ended one settles what it spent here, listed on its job or not.
      if (job.status === "none") await releaseJob(ctx, [budgetId], jobId, appOfBudget(budgetId));
      else await settleIn(ctx, budgetId, jobId, job);
      healed++;
    }
    if (healed === 0) throw err;
    return decide();
  }
}

export interface PoolStatus {
  scope: Pool["scope"];
  period: Pool["period"];
  resets_at: string;
  credits: DimensionStatus | null;
  tokens: DimensionStatus | null;
}

interface DimensionStatus {
  limit: number;
  /** Spent by jobs that ended. */
  spent: number;
  /** Held by jobs still running (their reservations). */
  held: number;
  /** What a new job could still take: limit − spent − held, never below 0. */
  remaining: number;
}

/** Where `payer` stands in each pool that limits it now (none when no limit applies). */
export async function poolStatus(ctx: AppContext, payer: Payer, now = Date.now()): Promise<PoolStatus[]> {
  if (isTestData(payer.appId)) return [];
  const pools = poolsOf(await limitsOf(ctx, payer.appId), { ...payer, appId: baseAppId(payer.appId) }, now);
  return Promise.all(pools.map(async (pool) => {
    const { state } = await ctx.repos.budgets.peek(pool.budget_id);
    const used = committed(state);
    const dimension = (limit: number | null, spent: number, total: number): DimensionStatus | null =>
      limit === null ? null : { limit, spent, held: roundCredits(total - spent), remaining: roundCredits(Math.max(0, limit - total)) };
    return {
      scope: pool.scope, period: pool.period, resets_at: new Date(pool.resets_at).toISOString(),
      credits: dimension(pool.credits, state.spent.credits, used.credits),
      tokens: dimension(pool.tokens, state.spent.tokens, used.tokens),
    };
  }));
}
