/** Credits and usage limits, as pure functions: prices, the pools a job draws from, the budget decider. */
import { describe, expect, test } from "bun:test";
import { UsageLimitError } from "../../src/core/errors.ts";
import { fold } from "../../src/core/decider.ts";
import { budgetDecider, committed, type BudgetCommand, type BudgetEvent, type BudgetState } from "../../src/domain/billing/budget.ts";
import { keyIdOfActor, NO_LIMITS, poolOf, poolsOf, userSubject, type Limits } from "../../src/domain/billing/limits.ts";
import { priceOf, tokenCredits } from "../../src/domain/billing/prices.ts";
import { ConfigError, loadConfig } from "../../src/config.ts";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

describe("prices", () => {
  const server = { "*": { input: 1, output: 1 }, "gpt-4o": { input: 2_500_000, output: 10_000_000, cached: 1_250_000 } };
  const app = { "openai/gpt-4o": { input: 1_000_000, output: 2_000_000 }, "anthropic/*": { input: 3_000_000, output: 15_000_000 } };

  test("the most specific key wins, the app's table before the server's at each level", () => {
    expect(priceOf([app, server], "openai", "gpt-4o")).toEqual({ input: 1_000_000, output: 2_000_000 });
    expect(priceOf([{}, server], "openai", "gpt-4o")?.input).toBe(2_500_000);
    expect(priceOf([app, server], "anthropic", "claude-x")?.output).toBe(15_000_000);
    expect(priceOf([app, server], "sandbox", "sandbox-1")).toEqual({ input: 1, output: 1 });
    expect(priceOf([{}, {}], "openai", "gpt-4o")).toBeNull();
    // Only own keys: a model called "constructor" has no price.
    expect(priceOf([{}, {}], "x", "constructor")).toBeNull();
  });

  test("cached input tokens are priced apart, never more of them than the prompt had", () => {
    const price = server["gpt-4o"];
    // 1000 fresh × 2.5 + 1000 cached × 1.25 + 500 out × 10 (credits per token here: per million ÷ 1e6)
    expect(tokenCredits(price, { prompt_tokens: 2000, cached_tokens: 1000, completion_tokens: 500 })).toBe(2500 + 1250 + 5000);
    expect(tokenCredits({ input: 3, output: 0 }, { prompt_tokens: 1, cached_tokens: 5, completion_tokens: 0 })).toBe(0.000003);
    expect(tokenCredits(null, { prompt_tokens: 1e6, cached_tokens: 0, completion_tokens: 1e6 })).toBe(0);
  });
});

test("MODEL_PRICES_FILE: the server's table is read at start; a file that is not one stops it, naming the variable", () => {
  const dir = mkdtempSync(join(tmpdir(), "agentry-prices-"));
  try {
    const file = (name: string, text: string) => {
      writeFileSync(join(dir, name), text);
      return join(dir, name);
    };
    const good = file("good.json", JSON.stringify({ "openai/gpt-4o": { input: 2.5, output: 10, cached: 1.25 }, "*": { input: 1, output: 2 } }));
    expect(loadConfig({ DATA_DIR: dir, MODEL_PRICES_FILE: good }).prices["*"]).toEqual({ input: 1, output: 2 });
    expect(loadConfig({ DATA_DIR: dir }).prices).toEqual({});
    for (const bad of [file("a.json", "{"), file("b.json", JSON.stringify({ m: { input: -1, output: 1 } })), file("c.json", "[]"), join(dir, "missing.json")]) {
      let thrown: unknown;
      try {
        loadConfig({ DATA_DIR: dir, MODEL_PRICES_FILE: bad });
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(ConfigError);
      expect((thrown as ConfigError).variable).toBe("MODEL_PRICES_FILE");
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

describe("pools", () => {
  const limits: Limits = {
    app: { ...NO_LIMITS, daily_credits: 100, monthly_tokens: 1e6 },
    per_user: { ...NO_LIMITS, daily_tokens: 5000 },
    per_key: NO_LIMITS,
    reservation: { credits: 5, tokens: 1000 },
  };
  const at = Date.UTC(2026, 11, 31, 23, 59, 59);

  test("a job draws from the pools that have a limit, by UTC day and month", () => {
    const pools = poolsOf(limits, { appId: "app_1", userId: "u:1", keyId: "key_1" }, at);
    expect(pools.map((p) => [p.budget_id, p.credits, p.tokens, new Date(p.resets_at).toISOString()])).toEqual([
      ["app_1:app:2026-12-31", 100, null, "2027-01-01T00:00:00.000Z"],
      ["app_1:app:2026-12", null, 1e6, "2027-01-01T00:00:00.000Z"],
      [`app_1:user:${userSubject("u:1")}:2026-12-31`, null, 5000, "2027-01-01T00:00:00.000Z"],
    ]);
    expect(poolsOf(null, { appId: "app_1", userId: "u", keyId: null }, at)).toEqual([]);
  });

  test("a budget id is read back to its pool with the limits in force now", () => {
    expect(userSubject("u:1")).toMatch(/^[0-9a-f]{32}$/);
    expect(poolOf(limits, "app_1:user:ab12:2026-12-31")).toMatchObject({ scope: "user", period: "day", tokens: 5000, credits: null });
    expect(poolOf({ ...limits, per_user: NO_LIMITS }, "app_1:user:ab12:2026-12-31")).toBeNull();
    expect(poolOf(limits, "app_1:app:2026-02")?.resets_at).toBe(Date.UTC(2026, 2, 1));
  });

  test("the key of an actor", () => {
    expect(keyIdOfActor("key:key_1")).toBe("key_1");
    expect(keyIdOfActor("user:u@key:key_2")).toBe("key_2");
    expect(keyIdOfActor("root:root")).toBeNull();
    expect(keyIdOfActor(undefined)).toBeNull();
  });
});

describe("budget decider", () => {
  const pool = { budget_id: "app_1:app:2026-12-01", scope: "app" as const, period: "day" as const, credits: 10, tokens: null, resets_at: 0 };
  const run = (events: BudgetEvent[], command: BudgetCommand): BudgetEvent[] => budgetDecider.decide(command, fold(budgetDecider, events));
  const apply = (events: BudgetEvent[], command: BudgetCommand): BudgetEvent[] => [...events, ...run(events, command)];
  const reserve = (job: string, credits = 5): Extract<BudgetCommand, { type: "Reserve" }> => ({ type: "Reserve", pool, job_id: job, amount: { credits, tokens: 0 }, at: 1 });
  const stateOf = (events: BudgetEvent[]): BudgetState => fold(budgetDecider, events);

  test("reservations fill the pool; the one that would pass it is refused with the limit named", () => {
    let events = apply(apply([], reserve("a")), reserve("b"));
    expect(committed(stateOf(events)).credits).toBe(10);
    let refusal: unknown;
    try {
      run(events, reserve("c"));
    } catch (err) {
      refusal = err;
    }
    expect(refusal).toBeInstanceOf(UsageLimitError);
    expect((refusal as UsageLimitError).details).toMatchObject({ scope: "app", period: "day", dimension: "credits", limit: 10, used: 10 });
    // Settling frees what a job held beyond what it spent.
    events = apply(events, { type: "Settle", budget_id: pool.budget_id, job_id: "a", spent: { credits: 1.5, tokens: 0 } });
    expect(committed(stateOf(events)).credits).toBe(6.5);
    expect(run(events, reserve("c", 3.5))).toHaveLength(1);
    expect(() => run(events, reserve("c", 3.6))).toThrow(UsageLimitError);
  });

  test("a job reserves once and settles once", () => {
    let events = apply([], reserve("a"));
    expect(run(events, reserve("a"))).toEqual([]);
    events = apply(events, { type: "Settle", budget_id: pool.budget_id, job_id: "a", spent: { credits: 2, tokens: 0 } });
    expect(run(events, { type: "Settle", budget_id: pool.budget_id, job_id: "a", spent: { credits: 2, tokens: 0 } })).toEqual([]);
    expect(stateOf(events)).toEqual({ id: pool.budget_id, spent: { credits: 2, tokens: 0 }, held: {} });
  });

  test("extending widens a job's hold to what it needs, and is refused without room", () => {
    let events = apply(apply([], reserve("a")), reserve("b", 3));
    expect(run(events, { type: "Extend", pool, job_id: "a", to: { credits: 4, tokens: 0 }, at: 2 })).toEqual([]); // holds 5 already
    events = apply(events, { type: "Extend", pool, job_id: "a", to: { credits: 7, tokens: 0 }, at: 2 });
    expect(stateOf(events).held.a).toEqual({ credits: 7, tokens: 0, at: 1 });
    expect(() => run(events, { type: "Extend", pool, job_id: "a", to: { credits: 7.5, tokens: 0 }, at: 2 })).toThrow(UsageLimitError);
    // A settled job is not extended.
    events = apply(events, { type: "Settle", budget_id: pool.budget_id, job_id: "a", spent: { credits: 7, tokens: 0 } });
    expect(run(events, { type: "Extend", pool, job_id: "a", to: { credits: 9, tokens: 0 }, at: 3 })).toEqual([]);
  });

  test("a pool used up refuses even a reservation of nothing; a limit of 0 allows nothing", () => {
    const full = apply([], { ...reserve("a", 10) });
    expect(() => run(full, reserve("b", 0))).toThrow(UsageLimitError);
    expect(() => run([], { ...reserve("a", 0), pool: { ...pool, credits: 0 } })).toThrow(UsageLimitError);
    // Sums of fractions compare as decimals do: 0.1 × 100 fits a pool of 10.
    let events: BudgetEvent[] = [];
    for (let i = 0; i < 100; i++) events = apply(events, reserve(`j${i}`, 0.1));
    expect(committed(stateOf(events)).credits).toBe(10);
  });
});
