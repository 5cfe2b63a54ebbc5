/**
 * Budget: one pool of credits and tokens for one subject and one period (see limits.ts). Stream
 * `budget-<app>:<subject>:<period>`.
 *
 * Concurrent jobs must not overspend a pool, and no lock decides it: each reservation is decided on the
 * pool's state at revision R and appended with expected revision R, so two jobs that both saw room for
 * one cannot both take it (the second is decided again on the first's reservation, and refused).
 *
 * - Reserve: a job takes `amount` when it is accepted; refused (usage_limit_exceeded) when what is
 *   spent, plus what running jobs hold, plus the amount would pass a limit.
 * - Extend: between steps a job widens what it holds to what it has spent plus a step's headroom;
 *   refused the same way (the job then ends failed, after the step it just finished).
 * - Settle: the job ended; what it really spent is added to the pool and its reservation freed.
 *   Settling twice, or settling a job that holds nothing here, decides nothing.
 *
 * Limits come with each command, not from the stream: a limit lowered mid-day applies to the next
 * reservation at once. Each reservation records the limits it was decided against, for auditors.
 */
import { Type } from "@sinclair/typebox";
import { UsageLimitError } from "../../core/errors.ts";
import { unreachable, type Decider } from "../../core/decider.ts";
import { eventCodec, type EventsOf } from "../../core/eventContract.ts";
import { Nullable } from "../shared/schemas.ts";
import { roundCredits } from "./prices.ts";
import type { Amounts, Pool } from "./limits.ts";

export const BUDGET_EVENTS = {
  /** `credits`/`tokens` are added to what the job holds; `limit_*` are the limits it was decided on. */
  BudgetReserved: { version: 1, schema: Type.Object({
    budget_id: Type.String(), job_id: Type.String(), credits: Type.Number({ minimum: 0 }), tokens: Type.Integer({ minimum: 0 }),
    limit_credits: Nullable(Type.Number()), limit_tokens: Nullable(Type.Integer()),
    /** Epoch ms the reservation was decided (a first reservation; an extension keeps it). */
    at: Type.Number(),
  }) },
  /** The job ended: it spent `credits`/`tokens` in all, and holds nothing any more. */
  BudgetSettled: { version: 1, schema: Type.Object({
    budget_id: Type.String(), job_id: Type.String(), credits: Type.Number({ minimum: 0 }), tokens: Type.Integer({ minimum: 0 }),
  }) },
};

export type BudgetEvent = EventsOf<typeof BUDGET_EVENTS>;
export const budgetEvents = eventCodec(BUDGET_EVENTS);

export interface BudgetState {
  id: string | null;
  spent: Amounts;
  /** What each running job holds, and since when. */
  held: Record<string, Amounts & { at: number }>;
}

export type BudgetCommand =
  /** `free`: a job the app pays nothing for up front (BYOS) holds nothing, even in a pool used up; its tools extend. */
  | { type: "Reserve"; pool: Pool; job_id: string; amount: Amounts; at: number; free?: boolean }
  | { type: "Extend"; pool: Pool; job_id: string; to: Amounts; at: number }
  | { type: "Settle"; budget_id: string; job_id: string; spent: Amounts };

const ZERO: Amounts = { credits: 0, tokens: 0 };

/** What the pool has committed: spent plus everything held. */
export function committed(state: BudgetState): Amounts {
  let { credits, tokens } = state.spent;
  for (const h of Object.values(state.held)) {
    credits += h.credits;
    tokens += h.tokens;
  }
  return { credits: roundCredits(credits), tokens };
}

export const budgetDecider: Decider<BudgetCommand, BudgetEvent, BudgetState> = {
  initialState: { id: null, spent: ZERO, held: {} },

  evolve(state, event) {
    const { job_id: job } = event.data;
    switch (event.type) {
      case "BudgetReserved": {
        const had = Object.hasOwn(state.held, job) ? state.held[job]! : { ...ZERO, at: event.data.at };
        const held = { credits: roundCredits(had.credits + event.data.credits), tokens: had.tokens + event.data.tokens, at: had.at };
        return { ...state, id: event.data.budget_id, held: { ...state.held, [job]: held } };
      }
      case "BudgetSettled": {
        const { [job]: _freed, ...held } = state.held;
        const spent = { credits: roundCredits(state.spent.credits + event.data.credits), tokens: state.spent.tokens + event.data.tokens };
        return { id: event.data.budget_id, spent, held };
      }
      default:
        return unreachable(event);
    }
  },

  decide(command, state) {
    switch (command.type) {
      case "Reserve": {
        // A retried request. (A job that exists already is never reserved for again: see reserveJob.)
        if (Object.hasOwn(state.held, command.job_id)) return [];
        if (command.free) return [reserved(command.pool, command.job_id, { credits: 0, tokens: 0 }, command.at)];
        requireRoom(state, command.pool, command.amount);
        return [reserved(command.pool, command.job_id, command.amount, command.at)];
      }
      case "Extend": {
        if (!Object.hasOwn(state.held, command.job_id)) return []; // settled already (or never reserved here)
        const held = state.held[command.job_id]!;
        const more = { credits: roundCredits(Math.max(0, command.to.credits - held.credits)), tokens: Math.max(0, command.to.tokens - held.tokens) };
        if (more.credits === 0 && more.tokens === 0) return [];
        requireRoom(state, command.pool, more);
        return [reserved(command.pool, command.job_id, more, command.at)];
      }
      case "Settle":
        if (!Object.hasOwn(state.held, command.job_id)) return [];
        return [{ type: "BudgetSettled", data: {
          budget_id: command.budget_id, job_id: command.job_id, credits: roundCredits(command.spent.credits), tokens: command.spent.tokens,
        } }];
      default:
        return unreachable(command);
    }
  },
};

const reserved = (pool: Pool, jobId: string, amount: Amounts, at: number): BudgetEvent => ({
  type: "BudgetReserved",
  data: {
    budget_id: pool.budget_id, job_id: jobId, credits: roundCredits(amount.credits), tokens: amount.tokens,
    limit_credits: pool.credits, limit_tokens: pool.tokens, at,
  },
});

function requireRoom(state: BudgetState, pool: Pool, more: Amounts): void {
  const used = committed(state);
  // A pool used up is refused even for a zero amount (a reservation of 0 is allowed by configuration).
  const passes = (limit: number | null, used: number, add: number) => limit !== null && (roundCredits(used + add) > limit || used >= limit);
  const over = passes(pool.credits, used.credits, more.credits) ? "credits" : passes(pool.tokens, used.tokens, more.tokens) ? "tokens" : null;
  if (!over) return;
  const limit = over === "credits" ? pool.credits! : pool.tokens!;
  const who = pool.scope === "app" ? "The app's" : pool.scope === "user" ? "This end user's" : "This API key's";
  throw new UsageLimitError(`${who} ${pool.period === "day" ? "daily" : "monthly"} ${over} limit (${limit}) is reached`, {
    scope: pool.scope, period: pool.period, dimension: over, limit, used: over === "credits" ? used.credits : used.tokens,
    resets_at: new Date(pool.resets_at).toISOString(),
  });
}
