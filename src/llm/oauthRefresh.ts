/**
 * OAuth 2.0 token endpoint calls for end users' credentials: the refresh (RFC 6749 §6) that trades a
 * refresh token for a new access token, and the authorization-code exchange (§4.1.3, with PKCE's
 * `code_verifier`, RFC 7636) that completes a connect flow. A form POST; the client authenticates with
 * HTTP Basic when it has a secret, else names itself with `client_id` in the form (a public client).
 * The call goes through the outbound guard (public addresses only unless the operator allows a private
 * one; no redirects; a capped answer) and is bounded in time.
 *
 * No token, secret or answer body is ever put in an error: the endpoint may echo what it was sent.
 */
import { guardedFetch, OutboundError, type OutboundPolicy } from "../net/outbound.ts";

export interface OAuthClient {
  token_url: string;
  client_id: string | null;
  /** Opened (plain), for this call only. */
  client_secret: string | null;
}

export interface RefreshedTokens {
  access_token: string;
  /** A rotated refresh token, or null when the endpoint kept the old one. */
  refresh_token: string | null;
  /** Seconds the access token lives; null when the endpoint did not say. */
  expires_in: number | null;
}

/** The refresh did not give a token. `refused`: the endpoint refused the refresh token itself (it will not work again). */
export class RefreshError extends Error {
  constructor(readonly refused: boolean, message: string) {
    super(message);
    this.name = "RefreshError";
  }
}

export interface RefreshOptions {
  policy: OutboundPolicy;
  /** How long the endpoint has to answer (default 10 s). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

const MAX_ANSWER_BYTES = 64 * 1024;
/** A token as it goes into an HTTP header: visible ASCII, bounded. */
const TOKEN = /^[\x21-\x7e]{1,8192}$/;

export function refreshTokens(client: OAuthClient, refreshToken: string, options: RefreshOptions): Promise<RefreshedTokens> {
  return tokenRequest(client, new URLSearchParams({ grant_type: "refresh_token", refresh_token: refreshToken }), options);
}

/**
 * Completes an authorization-code flow: the code the authorization server redirected with, the
 * redirect URI it was sent to and the PKCE verifier of its challenge. A refusal is a RefreshError
 * (`refused` when the endpoint says `invalid_grant`: a used, expired or foreign code).
 */
export function exchangeAuthorizationCode(
  client: OAuthClient, grant: { code: string; redirect_uri: string; code_verifier: string }, options: RefreshOptions,
): Promise<RefreshedTokens> {
  return tokenRequest(client, new URLSearchParams({ grant_type: "authorization_code", ...grant }), options);
}

async function tokenRequest(client: OAuthClient, form: URLSearchParams, options: RefreshOptions): Promise<RefreshedTokens> {
  const auth: Record<string, string> = {};
  if (client.client_secret !== null && client.client_id !== null) {
    auth.authorization = `Basic ${Buffer.from(`${encodeURIComponent(client.client_id)}:${encodeURIComponent(client.client_secret)}`).toString("base64")}`;
  } else {
    if (client.client_id !== null) form.set("client_id", client.client_id);
    if (client.client_secret !== null) form.set("client_secret", client.client_secret);
  }
  const timeout = AbortSignal.timeout(options.timeoutMs ?? 10_000);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  let answer;
  try {
    answer = await guardedFetch(new URL(client.token_url), {
      method: "POST", body: form.toString(), signal,
      headers: { "content-type": "application/x-www-form-urlencoded", accept: "application/json" },
      originHeaders: auth,
    }, { policy: options.policy, maxBytes: MAX_ANSWER_BYTES, maxRedirects: 0 });
  } catch (err) {
    if (options.signal?.aborted) throw options.signal.reason ?? err;
    if (timeout.aborted) throw new RefreshError(false, "the token endpoint did not answer in time");
    if (err instanceof OutboundError) throw new RefreshError(false, `the token endpoint ${err.message}`);
    throw new RefreshError(false, "the token endpoint could not be reached");
  }
  const body = parse(answer.text);
  if (!answer.ok) {
    const code = typeof body?.error === "string" && /^[a-z_]{1,64}$/.test(body.error) ? body.error : null;
    // invalid_grant: the refresh token is expired, revoked or not this client's; it will not work again.
    throw new RefreshError(code === "invalid_grant", `the token endpoint answered HTTP ${answer.status}${code ? ` (${code})` : ""}`);
  }
  const access = body?.access_token;
  if (typeof access !== "string" || !TOKEN.test(access)) throw new RefreshError(false, "the token endpoint's answer has no usable access_token");
  const rotated = body?.refresh_token;
  const expiresIn = typeof body?.expires_in === "string" ? Number(body.expires_in) : body?.expires_in;
  return {
    access_token: access,
    refresh_token: typeof rotated === "string" && TOKEN.test(rotated) ? rotated : null,
    expires_in: typeof expiresIn === "number" && Number.isFinite(expiresIn) && expiresIn > 0 ? Math.min(expiresIn, 10 * 365 * 86_400) : null,
  };
}

function parse(text: string): Record<string, unknown> | null {
  try {
    const value = JSON.parse(text);
    return typeof value === "object" && value !== null && !Array.isArray(value) ? value : null;
  } catch {
    return null;
  }
}
