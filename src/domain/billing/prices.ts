/**
 * Credits: what a model step costs, from a price table per model. Prices are credits per million
 * tokens, for input (prompt) tokens, output (completion) tokens and cached input tokens (the part of
 * the prompt a provider read from its cache, usually cheaper). The server has a table (MODEL_PRICES_FILE)
 * and each app may set its own entries on top (PUT /v1/apps/{id}/prices).
 *
 * A step's credits are computed when its usage is recorded and stored in the event, so a later price
 * change never rewrites history and a replay gives the same bill.
 */
import { Type, type Static } from "@sinclair/typebox";

export const ModelPriceSchema = Type.Object({
  /** Credits per million input tokens. */
  input: Type.Number({ minimum: 0 }),
  /** Credits per million output tokens. */
  output: Type.Number({ minimum: 0 }),
  /** Credits per million cached input tokens; the input price when absent. */
  cached: Type.Optional(Type.Number({ minimum: 0 })),
});
export type ModelPrice = Static<typeof ModelPriceSchema>;

/**
 * Keys are `provider/model` (most specific), `model`, `provider/*`, or `*` (everything else), looked up
 * in that order. A model no entry covers costs nothing.
 */
export type PriceTable = Readonly<Record<string, ModelPrice>>;

export interface TokenUsage {
  prompt_tokens: number;
  completion_tokens: number;
  cached_tokens: number;
}

/** Credits are kept to six decimals so that sums of many small steps stay exact enough to compare. */
export const roundCredits = (credits: number): number => Math.round(credits * 1e6) / 1e6;

/** The price of `model` on `provider`: the first table (the app's) that has an entry wins, then the next. */
export function priceOf(tables: readonly PriceTable[], provider: string, model: string): ModelPrice | null {
  for (const key of [`${provider}/${model}`, model, `${provider}/*`, "*"]) {
    for (const table of tables) if (Object.hasOwn(table, key)) return table[key]!;
  }
  return null;
}

/** What one model step's tokens cost. */
export function tokenCredits(price: ModelPrice | null, usage: TokenUsage): number {
  if (!price) return 0;
  const cached = Math.min(usage.cached_tokens, usage.prompt_tokens);
  const fresh = usage.prompt_tokens - cached;
  return roundCredits((fresh * price.input + cached * (price.cached ?? price.input) + usage.completion_tokens * price.output) / 1e6);
}
