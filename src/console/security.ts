/**
 * What keeps the console's pages and actions to the operator who logged in: the response headers every
 * page carries (a Content-Security-Policy allowing only the console's own script and style, no
 * framing), the login cookie (HttpOnly, SameSite=Strict; over HTTPS also Secure and `__Host-`), and the
 * Origin check on every action, so another site cannot post a form into a logged-in browser (CSRF).
 */

/** The login cookie's name over plain HTTP (a local or development server), scoped to /console. */
export const COOKIE = "agentry_console";
/**
 * Its name over HTTPS. Browsers accept a `__Host-` cookie only if it is Secure, has Path=/ and no
 * Domain, and only from a secure origin: so neither a sibling subdomain nor a plain-HTTP response can
 * plant one (login fixation), which they can for a plain name. Plain-HTTP localhost cannot use it.
 */
export const HOST_COOKIE = `__Host-${COOKIE}`;

export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self'", "connect-src 'self'",
  "form-action 'self'", "frame-ancestors 'none'", "base-uri 'none'",
].join("; ");

/** Headers for every console response: pages hold audit data, so nothing is cached or framed. */
export const pageHeaders = (): Record<string, string> => ({
  "content-security-policy": CONTENT_SECURITY_POLICY,
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "same-origin",
  "cache-control": "no-store",
});

/** Whether the browser reached us over HTTPS (directly, or through a proxy that says so). */
export function overHttps(request: Request): boolean {
  if (new URL(request.url).protocol === "https:") return true;
  return (request.headers.get("x-forwarded-proto") ?? "").split(",")[0]!.trim().toLowerCase() === "https";
}

/** The Set-Cookie value for a login (or, with `id` null, for logging out). */
export function loginCookie(request: Request, id: string | null, maxAgeS: number): string {
  const https = overHttps(request);
  // `__Host-` needs Path=/: the cookie then also goes with API requests, which ignore cookies.
  const parts = [`${https ? HOST_COOKIE : COOKIE}=${id ?? ""}`, https ? "Path=/" : "Path=/console", "HttpOnly", "SameSite=Strict", `Max-Age=${id === null ? 0 : maxAgeS}`];
  if (https) parts.push("Secure");
  return parts.join("; ");
}

/** The login id the request's cookie carries, if any: over HTTPS only the `__Host-` cookie counts. */
export function cookieLogin(request: Request): string | null {
  const header = request.headers.get("cookie");
  if (!header) return null;
  const name = overHttps(request) ? HOST_COOKIE : COOKIE;
  for (const pair of header.split(";")) {
    const at = pair.indexOf("=");
    if (at > 0 && pair.slice(0, at).trim() === name) {
      const value = pair.slice(at + 1).trim();
      return /^[A-Za-z0-9_-]{20,100}$/.test(value) ? value : null;
    }
  }
  return null;
}

/**
 * Whether a state-changing request comes from the console's own pages: its Origin is this server as
 * the browser addressed it (the Host it sent), or the configured public address. A request without
 * Origin is refused: browsers send it on every POST, so only a non-browser client omits it, and such
 * a client has no business posting the console's forms.
 */
export function sameOrigin(request: Request, publicBaseUrl?: string): boolean {
  const origin = request.headers.get("origin");
  if (!origin || origin === "null") return false;
  let given: URL;
  try {
    given = new URL(origin);
  } catch {
    return false;
  }
  if (given.protocol !== "http:" && given.protocol !== "https:") return false;
  const host = request.headers.get("host") ?? new URL(request.url).host;
  if (given.host === host) return true;
  if (publicBaseUrl) {
    try {
      return new URL(publicBaseUrl).origin === given.origin;
    } catch {
      return false;
    }
  }
  return false;
}
