/**
 * API-key authentication for `/v1`. Keys belong to apps (`app-<id>` streams) and are found by their
 * SHA-256 in the tenant directory, in memory. The default app's key comes from `API_KEY`, or is
 * generated once into the data folder and printed when it is generated.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { preparePrivateDir } from "../core/privateFiles.ts";
import { join } from "node:path";
import { ForbiddenError, UnauthorizedError } from "../core/errors.ts";
import { isKeyUserId } from "../app/keyUsers.ts";
import type { KeyLookup, TenantDirectory } from "../app/tenantDirectory.ts";
import type { ApiKeyRecord } from "../domain/app/app.ts";
import { looksLikeJwt, type EndUserTokens } from "../auth/endUserTokens.ts";
import type { KeyUsage } from "../app/keyUsage.ts";
import { keyHash } from "../domain/app/keys.ts";
import type { KeyScope } from "../domain/app/events.ts";


export interface ApiKeySource {
  key: string;
  /** Where it came from: "env", "file" or "generated" (new this start). */
  origin: "env" | "file" | "generated";
}

/** The default app's key: `API_KEY`, else `DATA_DIR/api_key`, else a new one written there (mode 0600). */
export function resolveApiKey(envKey: string | undefined, dataDir: string | null): ApiKeySource {
  if (envKey) return { key: envKey, origin: "env" };
  if (!dataDir) return { key: generateKey(), origin: "generated" };
  const path = join(dataDir, "api_key");
  if (existsSync(path)) return { key: readFileSync(path, "utf8").trim(), origin: "file" };
  preparePrivateDir(dataDir);
  const key = generateKey();
  writeFileSync(path, key + "\n", { mode: 0o600 });
  return { key, origin: "generated" };
}

const generateKey = () => `agk_${Buffer.from(crypto.getRandomValues(new Uint8Array(24))).toString("base64url")}`;

/** Reads the key from `X-API-Key` or `Authorization: Bearer`. */
export function presentedKey(headers: Headers): string | null {
  const header = headers.get("x-api-key");
  if (header) return header.trim();
  const auth = headers.get("authorization");
  if (auth && /^bearer\s+/i.test(auth)) return auth.replace(/^bearer\s+/i, "").trim();
  return null;
}

/** Who a request acts as, once its key is checked. */
export interface Principal {
  appId: string;
  keyId: string;
  mode: "live" | "test";
  scopes: readonly string[];
  /** The agents the key may use; null for all. */
  agentIds: readonly string[] | null;
  /** The end user the key acts as; null for a server key. */
  userId: string | null;
  /** Authenticated by an end-user token (rather than an API key). */
  endUser: boolean;
  /** Whether the credential still works now (a long stream checks it again as it goes). */
  stillValid(): boolean;
}

const principals = new WeakMap<Request, Principal>();

/** The principal an authenticated request acts as (set by `directoryAuthenticator`). */
export const principalOf = (request: Request): Principal | undefined => principals.get(request);

/**
 * Checks a request's key against the tenant directory: one hash and one lookup in memory. Unknown,
 * revoked and expired keys are 401 `invalid_api_key`; a key of a suspended app is 403 `app_suspended`.
 * The request's principal is kept for the routes (see `principalOf`).
 */
export function directoryAuthenticator(
  directory: Pick<TenantDirectory, "lookup" | "byId">, tokens?: Pick<EndUserTokens, "verify">, usage?: Pick<KeyUsage, "touch">,
): (request: Request) => void | Promise<void> {
  /** Admits a credential whose key was found usable, as `as` describes it, if it has the scope needed. */
  const admit = (request: Request, found: KeyLookup, as: (appId: string, key: ApiKeyRecord) => Principal, refusedCode = "invalid_api_key") => {
    if (!found.ok) {
      if (found.reason === "app_suspended") throw new ForbiddenError("The app this key belongs to is suspended", "app_suspended");
      const why = found.reason === "expired" ? "has expired" : found.reason === "revoked" ? "has been revoked" : "is not valid";
      // An end-user token whose minting key no longer works is an invalid token, in the token's terms.
      throw new UnauthorizedError(refusedCode === "invalid_token" ? `The key that minted this token ${why}` : `The API key ${why}`, refusedCode);
    }
    const principal = as(found.appId, found.key);
    const needed = scopeFor(request.method, pathOf(request.url));
    if (!hasScope(principal.scopes, needed)) throw new ForbiddenError(`This credential lacks the ${needed} scope`, "insufficient_scope");
    principals.set(request, principal);
    usage?.touch(principal.appId, principal.keyId);
  };
  /** An end-user token: valid, and minted by a key that still works; it has at most that key's rights. */
  const endUser = async (request: Request, token: string) => {
    const claims = await tokens!.verify(token);
    // Reserved for keys' own users (src/app/keyUsers.ts): no token is minted for one; one minted before that rule stops here.
    if (isKeyUserId(claims.userId)) throw new ForbiddenError("This token's user id is reserved for an API key's own user", "reserved_user_id");
    admit(request, directory.byId(claims.appId, claims.parentKeyId), (appId, key) => ({
      appId, keyId: key.key_id, mode: key.mode, scopes: claims.scopes.filter((s) => hasScope(key.scopes, s as KeyScope)),
      agentIds: claims.agentIds, userId: claims.userId, endUser: true,
      stillValid: () => Date.now() < claims.expiresAt && directory.byId(appId, key.key_id).ok,
    }), "invalid_token");
  };
  return (request) => {
    const credential = presentedKey(request.headers);
    if (!credential) throw new UnauthorizedError("Missing API key: send X-API-Key or Authorization: Bearer");
    if (tokens && looksLikeJwt(credential)) return endUser(request, credential);
    admit(request, directory.lookup(keyHash(credential)), (appId, k) => ({
      appId, keyId: k.key_id, mode: k.mode, agentIds: k.agent_ids, userId: k.user_id, endUser: false,
      stillValid: () => directory.byId(appId, k.key_id).ok,
      // A key acting as one user never changes the app's agents, whatever scopes it was given; audit
      // reads show the whole app, so they are only for a key limited to no user and no agents.
      scopes: k.scopes.filter((s) => !(s === "agents:manage" && k.user_id !== null) && !(s === "audit:read" && (k.user_id !== null || k.agent_ids !== null))),
    }));
  };
}

/**
 * The scope a data-plane request needs: changing agents, or the app's skills (what agents are asked
 * to do), needs `agents:manage`; any other write `data:write`; a read `data:read`, which `data:write`
 * includes (read-only keys vs read-write keys). Audit reads (`/v1/audit`) need `audit:read`, which
 * nothing else includes.
 */
export function scopeFor(method: string, path: string): KeyScope {
  const read = method === "GET" || method === "HEAD" || method === "OPTIONS";
  if (path === "/v1/audit" || path.startsWith("/v1/audit/")) return "audit:read";
  if (!read && (path === "/v1/agents" || path.startsWith("/v1/agents/"))) return "agents:manage";
  if (!read && (path === "/v1/skills" || path.startsWith("/v1/skills/"))) return "agents:manage";
  // MUXI's agent endpoints create and delete the app's agents, as /v1/agents does.
  if (!read && /^\/compat\/muxi(?:\/api\/v1)?\/agents(?:\/|$)/.test(path)) return "agents:manage";
  // MUAPI's upload URL is a GET that authorizes an upload: a write.
  if (path === "/compat/muapi/api/app/get_file_upload_url") return "data:write";
  return read ? "data:read" : "data:write";
}

export const hasScope = (scopes: readonly string[], needed: KeyScope): boolean =>
  scopes.includes(needed) || (needed === "data:read" && scopes.includes("data:write"));

const pathOf = (url: string): string => {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  const end = url.indexOf("?", start);
  return start < 0 ? "/" : url.slice(start, end < 0 ? undefined : end);
};
