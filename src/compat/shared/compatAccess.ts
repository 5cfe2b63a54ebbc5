/**
 * The caller of a compat surface: the request guard admits `/compat` requests as it does `/v1` ones
 * (src/http/app.ts: the same keys, scopes, rate limits and readiness), and a surface acts in the context
 * that gives. A surface mounted without that guard brings the authenticator itself; with neither, a
 * request is refused rather than served as the default app. The key, its scopes and the caller's
 * context are exactly `/v1`'s: a surface is another wire format, not another tenant model.
 */
import type { AppContext } from "../../app/context.ts";
import { principalOf } from "../../http/auth.ts";
import { forCaller } from "../../http/routes/v1/common.ts";
import { UnauthorizedError } from "../../core/errors.ts";

export interface CompatAccess {
  /** The data plane's authenticator (src/http/auth.ts `directoryAuthenticator`): throws 401/403 typed errors. */
  authenticate?: (request: Request) => void | Promise<void>;
  /** The app's rate limits (src/http/rateLimit.ts `rateLimitCheck`): writes RateLimit headers, throws 429. */
  rateLimit?: (request: Request, headers: Record<string, string | number>) => void | Promise<void>;
}

/**
 * Admits a request: its key (an API key, or an end-user token), then its rate limits, whose headers
 * go into `headers` (the response's). Returns the context the request acts in. A request a guard
 * already admitted (a principal is set) is not charged twice.
 */
export async function admitCompat(base: AppContext, access: CompatAccess, request: Request, headers: Record<string, string | number>): Promise<AppContext> {
  if (!principalOf(request)) {
    if (!access.authenticate) throw new UnauthorizedError();
    await access.authenticate(request);
    await access.rateLimit?.(request, headers);
  }
  return forCaller(base, request);
}
