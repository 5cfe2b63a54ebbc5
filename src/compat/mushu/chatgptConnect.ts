/**
 * Mushu's BYOS connect flow: an end user links their ChatGPT subscription by OAuth 2.0's
 * authorization-code flow with PKCE (RFC 7636), the way OpenAI's own clients do.
 *
 * 1. `POST /chatgpt/connect` answers the authorize URL and a `session_id`. Nothing is stored: the
 *    session id carries the pending flow (app, user, the key that asked, `state`, PKCE verifier,
 *    expiry) sealed by the secret box under an owner of its own, CONNECT_OWNER. So only this server
 *    can open it, an altered one fails, and no other sealed value opens as one: an app's sealed
 *    secrets (whose text a user may choose, e.g. a credential) are sealed for the app, not this owner.
 * 2. The app opens the URL in a web view; the authorization server redirects to the redirect URI
 *    (`http://localhost:1455/auth/callback` for OpenAI's public client), which the app intercepts.
 * 3. `POST /chatgpt/callback` (no key: the sealed session id is the credential) takes the intercepted
 *    URL, checks its `state`, exchanges its code at the token endpoint and stores the tokens as the
 *    user's OpenAI credential, exactly as `PUT /v1/users/{user_id}/credentials/openai` would. From then
 *    on `GET /chatgpt/status` says connected, and agents billed to their end users run on it.
 *
 * The code is single-use at the authorization server, so replaying a callback gets nothing. The
 * callback completes only while the app is active and the key that started the flow still works.
 */
import { createHash, randomBytes } from "node:crypto";
import type { AppContext } from "../../app/context.ts";
import { baseAppId } from "../../app/access.ts";
import { ValidationError, AppError } from "../../core/errors.ts";
import type { NewCredential } from "../../domain/credential/credential.ts";
import { userCredentialsId } from "../../domain/streams.ts";
import { exchangeAuthorizationCode, RefreshError } from "../../llm/oauthRefresh.ts";
import { PUBLIC_ONLY } from "../../net/outbound.ts";
import { secretView } from "../../secrets/secretBox.ts";

/** The OAuth client the connect flow uses (server configuration: `CHATGPT_CONNECT_*`). */
export interface ChatGptOAuthClient {
  authorize_url: string;
  token_url: string;
  client_id: string;
  redirect_uri: string;
  scope: string;
}

/** OpenAI's public client for ChatGPT sign-in, as its own command-line clients use it. */
export const OPENAI_CHATGPT_CLIENT: ChatGptOAuthClient = {
  authorize_url: "https://auth.openai.com/oauth/authorize",
  token_url: "https://auth.openai.com/oauth/token",
  client_id: "app_EMoamEEZ73f0CkXaXp7hrann",
  redirect_uri: "http://localhost:1455/auth/callback",
  scope: "openid profile email offline_access",
};

/** How long a started connect can be completed: a sign-in, not a standing grant. */
export const CONNECT_TTL_MS = 10 * 60_000;

/** The secret box's owner for pending connect flows: not an app, so nothing an app seals opens as one. */
export const CONNECT_OWNER = "_chatgpt_connect";

interface PendingConnect {
  /** The data partition (an app's live or test data) the credential goes to. */
  app: string;
  /** The API key that started the flow (an end-user token's minting key): the flow dies with it. */
  key_id: string | null;
  user_id: string;
  state: string;
  verifier: string;
  expires_at: number;
}

const b64url = (bytes: Buffer): string => bytes.toString("base64url");

/** 502: the token endpoint could not be asked (down, slow, not allowed by the address policy). */
class TokenEndpointUnavailable extends AppError {
  readonly status = 502;
  constructor(message: string) {
    super("token_endpoint_unavailable", message, {});
  }
}

/** Step 1: the authorize URL to open, and the session id that completes it. */
export async function startConnect(ctx: AppContext, client: ChatGptOAuthClient, userId: string, keyId: string | null, now = Date.now()) {
  const pending: PendingConnect = {
    app: ctx.appId, key_id: keyId, user_id: userId, state: b64url(randomBytes(16)), verifier: b64url(randomBytes(32)), expires_at: now + CONNECT_TTL_MS,
  };
  const sealed = await ctx.secrets.seal(CONNECT_OWNER, JSON.stringify(pending));
  const authUrl = new URL(client.authorize_url);
  for (const [name, value] of Object.entries({
    response_type: "code", client_id: client.client_id, redirect_uri: client.redirect_uri, scope: client.scope,
    code_challenge: b64url(createHash("sha256").update(pending.verifier).digest()), code_challenge_method: "S256", state: pending.state,
  })) authUrl.searchParams.set(name, value);
  return {
    auth_url: authUrl.href,
    session_id: sealed,
    user_id: userId,
    expires_at: new Date(pending.expires_at).toISOString(),
  };
}

const invalidSession = () => new ValidationError("The session_id is not one this server issued, or it has expired: start the connect flow again", { param: "session_id" }, "invalid_session");

/** Opens a session id: its pending flow, or 400 `invalid_session`. */
async function openSession(base: AppContext, sessionId: string, now: number): Promise<PendingConnect> {
  let pending: PendingConnect;
  try {
    pending = JSON.parse(await base.secrets.open(CONNECT_OWNER, sessionId)) as PendingConnect;
  } catch {
    throw invalidSession();
  }
  const shaped = typeof pending?.app === "string" && typeof pending.user_id === "string" && typeof pending.state === "string"
    && typeof pending.verifier === "string" && (pending.key_id === null || typeof pending.key_id === "string");
  if (!shaped || !(pending.expires_at > now)) throw invalidSession();
  return pending;
}

/**
 * The flow completes only for an active app, through a key that still works: a suspended or deleted
 * app, or a revoked or expired key, ends its pending connects (400 `invalid_session`, as an expired one).
 */
async function requireStillAllowed(ctx: AppContext, pending: PendingConnect, now: number): Promise<void> {
  const { state } = await ctx.repos.apps.peek(baseAppId(pending.app));
  if (state.status !== "active") throw invalidSession();
  if (pending.key_id === null) return;
  const key = state.keys.find((k) => k.key_id === pending.key_id);
  if (!key || key.revoked || (key.refused_after !== null && key.refused_after <= now)) throw invalidSession();
}

/** The authorization server's answer, as the intercepted redirect URL carries it. */
function codeOf(callbackUrl: string, state: string): string {
  let url: URL;
  try {
    url = new URL(callbackUrl);
  } catch {
    throw new ValidationError("url is not a URL: send the whole intercepted redirect URL", { param: "url" });
  }
  const denied = url.searchParams.get("error");
  if (denied !== null) {
    const code = /^[a-z_]{1,64}$/.test(denied) ? denied : "error";
    throw new ValidationError(`The sign-in did not grant access (${code})`, { param: "url" }, "authorization_denied");
  }
  // A state other than ours: a redirect from another sign-in (or a forged one) is not completed here.
  if (url.searchParams.get("state") !== state) throw new ValidationError("The redirect's state does not match this session", { param: "url" }, "state_mismatch");
  const code = url.searchParams.get("code");
  if (!code || code.length > 4096) throw new ValidationError("The redirect URL has no authorization code", { param: "url" });
  return code;
}

/**
 * Step 3: exchanges the redirect's code and stores the tokens as the user's OpenAI credential in the
 * session's data partition. Answers the user and the credential's expiry.
 */
export async function completeConnect(
  base: AppContext, client: ChatGptOAuthClient, body: { session_id: string; url: string }, requestId?: string, now = Date.now(),
) {
  const pending = await openSession(base, body.session_id, now);
  const dataApp = pending.app;
  const ctx: AppContext = { ...base, appId: dataApp, allowedAgents: null, actingUser: pending.user_id };
  await requireStillAllowed(ctx, pending, now);
  const code = codeOf(body.url, pending.state);
  let tokens;
  try {
    tokens = await exchangeAuthorizationCode(
      { token_url: client.token_url, client_id: client.client_id, client_secret: null },
      { code, redirect_uri: client.redirect_uri, code_verifier: pending.verifier },
      { policy: ctx.outbound ?? PUBLIC_ONLY },
    );
  } catch (err) {
    if (!(err instanceof RefreshError)) throw err;
    if (err.refused) throw new ValidationError("The authorization code was refused (used, expired or not this sign-in's): start the connect flow again", { param: "url" }, "code_refused");
    // The reason (an address, a DNS answer) is the operator's to read, not an unauthenticated caller's.
    base.logger.warn("chatgpt connect: token endpoint unavailable", { reason: err.message });
    throw new TokenEndpointUnavailable("The sign-in could not be completed: the token endpoint could not be reached; try again");
  }
  const credential: NewCredential = {
    kind: "oauth",
    secret: await ctx.secrets.seal(dataApp, tokens.access_token),
    refresh_token: tokens.refresh_token ? await ctx.secrets.seal(dataApp, tokens.refresh_token) : null,
    expires_at: tokens.expires_in !== null ? now + tokens.expires_in * 1000 : null,
    last4: secretView(tokens.access_token).last4,
  };
  await ctx.repos.credentials.handle(userCredentialsId(dataApp, pending.user_id), {
    type: "SetCredential", app_id: dataApp, user_id: pending.user_id, provider: "openai", credential,
  }, { appId: dataApp, actor: `system:chatgpt-connect:${baseAppId(dataApp)}`, attributedUserId: pending.user_id, ...(requestId ? { requestId } : {}) });
  return { user_id: pending.user_id, expires_at: credential.expires_at !== null ? new Date(credential.expires_at).toISOString() : null };
}
