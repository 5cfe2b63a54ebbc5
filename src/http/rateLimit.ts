/**
 * Rate limits on the data plane (`/v1`, not the management plane): checked right after a request's
 * credential, before its body is read.
 *
 * - Whose budget: an end user's (an end-user token, or a key bound to a user_id) for requests made as
 *   that user, in their app (and mode); otherwise the API key's. The two are separate: a backend key
 *   minting tokens for its users does not spend its own budget on their requests.
 * - Two budgets each: every request spends one from the general budget; a heavy call (one that starts
 *   a job, or erases a user: see HEAVY_CALLS) also spends one from the heavy budget. Both or neither: a refused request
 *   spends nothing. A heavy call that starts several jobs spends one more per further job, from its
 *   handler (`spendHeavy`), before it writes anything.
 * - The limits: the app's own settings (RateLimitsSet on its stream, read from the tenant directory in
 *   memory), else the server's defaults; 0 turns a budget off.
 * - The answer: every response to a limited caller carries `RateLimit-*` and `X-RateLimit-*` headers
 *   (the budget nearest its limit), and on the OpenAI surface OpenAI's `x-ratelimit-*-requests` too;
 *   over the limit, 429 rate_limit_exceeded with `Retry-After`.
 */
import { RateLimitedError } from "../core/errors.ts";
import type { AppRateLimits, RateLimitBudget } from "../domain/app/app.ts";
import { intervalOf, secondsOf } from "../ratelimit/gcra.ts";
import type { Bucket, BucketOutcome, RateDecision, RateLimiter } from "../ratelimit/limiter.ts";
import { principalOf, type Principal } from "./auth.ts";

/** The server's limits, requests a minute (0: off), for keys and end users alike. */
export interface RateLimitDefaults {
  perMinute: number;
  heavyPerMinute: number;
}

/** Limits in force, requests a minute (0: off). */
export interface EffectiveBudget {
  requests_per_minute: number;
  heavy_per_minute: number;
}

/**
 * The heavy calls: each starts a job (a turn or a run), through /v1 or any compat surface, or erases an
 * end user (a scan of the store, and a compaction of its file when something was erased). A compat
 * surface is the same work in another wire format, so it spends the same budget.
 */
export const HEAVY_CALLS = [
  "POST /v1/sessions/{session_id}/messages", "POST /v1/sessions/{session_id}/run-skill", "POST /v1/runs", "DELETE /v1/users/{user_id}",
  "POST /compat/openai/v1/responses",
  "POST /compat/magus/api/v1/messages",
  "POST /compat/mosoo/api/v1/agents/{agent_id}/threads", "POST /compat/mosoo/api/v1/threads/{thread_id}/events",
  // MUXI's chat is its doc's "resource-intensive endpoint" (also under its versioned /api/v1 path).
  "POST /compat/muxi/chat/{agent_id}", "POST /compat/muxi/api/v1/chat/{agent_id}",
  "POST /compat/mushu/runs", "POST /compat/mushu/conversations/{conv_id}/messages",
  "POST /compat/muapi/api/v1/creative-agent/sessions/{session_id}/chat", "POST /compat/muapi/api/v1/creative-agent/sessions/{session_id}/run-skill",
] as const;

/** HEAVY_CALLS as matchers: a `{param}` is one non-empty path segment. */
const HEAVY_MATCHERS = HEAVY_CALLS.map((call) => {
  const [method, template] = call.split(" ") as [string, string];
  const pattern = template.split("/").map((part) => (part.startsWith("{") ? "[^/]+" : part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))).join("/");
  return { method, path: new RegExp(`^${pattern}$`) };
});

/** Whether a request is a heavy call (see HEAVY_CALLS); a trailing slash routes alike, so it counts alike. */
export function isHeavyCall(method: string, path: string): boolean {
  const p = path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path;
  return HEAVY_MATCHERS.some((m) => m.method === method && m.path.test(p));
}

/** A budget's limits in force: the app's setting where it has one, the server's default elsewhere. */
export const effectiveBudget = (budget: RateLimitBudget | undefined, defaults: RateLimitDefaults): EffectiveBudget => ({
  requests_per_minute: budget?.requests_per_minute ?? defaults.perMinute,
  heavy_per_minute: budget?.heavy_per_minute ?? defaults.heavyPerMinute,
});

export interface RateLimitOptions {
  limiter: RateLimiter;
  defaults: RateLimitDefaults;
  /** The app's own settings, if any (from memory: this runs on every request). */
  settingsOf(appId: string): AppRateLimits | undefined;
}

type Headers = Record<string, string | number>;

/**
 * The check run after authentication: charges the caller's budgets, writes the headers into
 * `headers` (the response's), and throws RateLimitedError when over a limit. Synchronous with the
 * in-process limiter; a promise with Redis.
 */
export function rateLimitCheck(options: RateLimitOptions): (request: Request, headers: Headers) => void | Promise<void> {
  const { limiter, defaults } = options;
  return (request, headers) => {
    const principal = principalOf(request);
    if (!principal) return;
    const asUser = principal.userId !== null;
    const settings = options.settingsOf(principal.appId);
    const budget = asUser ? settings?.per_end_user : settings?.per_key;
    const general = budget?.requests_per_minute ?? defaults.perMinute;
    const heavy = (request.method === "POST" || request.method === "DELETE") && isHeavyCall(request.method, pathOf(request.url)) ? budget?.heavy_per_minute ?? defaults.heavyPerMinute : 0;
    if (general === 0 && heavy === 0) return;
    const subject = subjectOf(principal);
    const buckets: Bucket[] = [];
    if (general > 0) buckets.push({ key: `${subject}:g`, limit: general, interval: intervalOf(general) });
    const openai = pathOf(request.url).startsWith(OPENAI_SURFACE);
    if (heavy > 0) {
      const bucket = { key: `${subject}:h`, limit: heavy, interval: intervalOf(heavy) };
      buckets.push(bucket);
      heavyCharges.set(request, { limiter, bucket, asUser, openai });
    }
    const decided = limiter.consume(buckets);
    if (decided instanceof Promise) return decided.then((d) => answer(d, buckets, headers, asUser, openai));
    answer(decided, buckets, headers, asUser, openai);
  };
}

/** The heavy budget a request was charged to by the guard, kept for `spendHeavy`. */
interface HeavyCharge {
  limiter: RateLimiter;
  bucket: Bucket;
  asUser: boolean;
  openai: boolean;
}
const heavyCharges = new WeakMap<Request, HeavyCharge>();

/**
 * Spends `units` more from the heavy budget the guard charged this request to: for a handler whose one
 * call starts several jobs (a Mosoo send-events batch of messages), so each job costs what a call that
 * starts one costs. All or nothing, like the guard: over the limit it writes the headers and throws the
 * same 429 (RateLimitedError) and spends nothing, so call it before writing anything. A request with no
 * heavy budget (not a heavy call, a budget that is off, no rate limiting) spends nothing. The unit the
 * guard took for the call itself stays spent.
 */
export function spendHeavy(request: Request, units: number, headers: Headers): void | Promise<void> {
  const charge = heavyCharges.get(request);
  if (!charge || units <= 0) return;
  const buckets: Bucket[] = [{ ...charge.bucket, cost: units }];
  const decided = charge.limiter.consume(buckets);
  if (decided instanceof Promise) return decided.then((d) => answer(d, buckets, headers, charge.asUser, charge.openai));
  answer(decided, buckets, headers, charge.asUser, charge.openai);
}

/**
 * A budget's key: one per key, or one per end user of an app's data partition (live or test). The
 * braces make both budgets of a subject one Redis hash slot.
 */
const subjectOf = (p: Principal): string =>
  p.userId !== null ? `{${p.appId}|${p.mode}|u|${p.userId}}` : `{${p.appId}|k|${p.keyId}}`;

function answer(decision: RateDecision, buckets: readonly Bucket[], headers: Headers, asUser: boolean, openai: boolean): void {
  // The budget that binds: when refused, the one that frees up last; else the one with the fewest left
  // (the heavy one on a tie).
  let shown = 0;
  for (let i = 1; i < buckets.length; i++) {
    const a = decision.buckets[shown]!;
    const b = decision.buckets[i]!;
    if (decision.allowed ? b.remaining <= a.remaining : b.retryAfterUs >= a.retryAfterUs) shown = i;
  }
  const outcome = decision.buckets[shown]!;
  const limit = buckets[shown]!.limit;
  writeHeaders(headers, limit, outcome);
  if (openai) writeOpenAiHeaders(headers, limit, outcome);
  if (decision.allowed) return;
  const retryAfter = secondsOf(outcome.retryAfterUs, 1);
  headers["retry-after"] = String(retryAfter);
  const heavy = buckets[shown]!.key.endsWith(":h");
  const cost = buckets[shown]!.cost ?? 1;
  const who = asUser ? "end user" : "API key";
  if (cost > 1) {
    // Spent by a handler (spendHeavy) for the further jobs of one call: say how many it needed.
    const when = cost + 1 > limit ? "send fewer at once" : `retry in ${retryAfter} s`;
    throw new RateLimitedError(
      `Rate limit exceeded: this request starts ${cost + 1} jobs and this ${who} may make ${limit} heavy calls a minute; ${when}`,
      { budget: "heavy", limit, retry_after: retryAfter, cost: cost + 1 },
    );
  }
  throw new RateLimitedError(
    `Rate limit exceeded: this ${who} may make ${limit} ${heavy ? "heavy calls (messages, runs, erasures)" : "requests"} a minute; retry in ${retryAfter} s`,
    { budget: heavy ? "heavy" : "requests", limit, retry_after: retryAfter },
  );
}

/**
 * `RateLimit-Reset` is in seconds from now (the IETF draft's form); `X-RateLimit-Reset` is the same
 * moment in UTC epoch seconds (what MUXI's clients read). Either is when the budget is whole again.
 */
function writeHeaders(headers: Headers, limit: number, outcome: BucketOutcome): void {
  const limitText = String(limit);
  const remaining = String(outcome.remaining);
  headers["ratelimit-limit"] = limitText;
  headers["ratelimit-remaining"] = remaining;
  headers["ratelimit-reset"] = String(secondsOf(outcome.resetUs));
  headers["x-ratelimit-limit"] = limitText;
  headers["x-ratelimit-remaining"] = remaining;
  headers["x-ratelimit-reset"] = String(Math.ceil((Date.now() * 1000 + outcome.resetUs) / 1_000_000));
}

/** The OpenAI surface, whose clients read OpenAI's own names for the request budget. */
const OPENAI_SURFACE = "/compat/openai/";

/**
 * OpenAI's `x-ratelimit-{limit,remaining,reset}-requests`, the reset as a duration (`"12s"`, `"1m5s"`),
 * beside the headers every answer carries.
 */
function writeOpenAiHeaders(headers: Headers, limit: number, outcome: BucketOutcome): void {
  const reset = secondsOf(outcome.resetUs);
  headers["x-ratelimit-limit-requests"] = String(limit);
  headers["x-ratelimit-remaining-requests"] = String(outcome.remaining);
  headers["x-ratelimit-reset-requests"] = reset < 60 ? `${reset}s` : `${Math.floor(reset / 60)}m${reset % 60}s`;
}

const pathOf = (url: string): string => {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  const end = url.indexOf("?", start);
  return start < 0 ? "/" : url.slice(start, end < 0 ? undefined : end);
};
