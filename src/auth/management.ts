/**
 * Management-plane authentication (`/v1/apps…`): who may create apps, issue keys and so on. It is
 * separate from the data plane's API keys (src/http/auth.ts): a data key is never a management token.
 *
 * A request presents `Authorization: Bearer <token>`, which is either
 * - the operator's **root token** (src/auth/rootToken.ts): `ADMIN_TOKEN`, or generated on the store's
 *   first start; kind "root", role "owner", every app; or
 * - a **JWT** (src/auth/jwt.ts): HS256 with `MANAGEMENT_JWT_SECRET`, or RS256/ES256 against
 *   `MANAGEMENT_JWKS_URL`; its `sub`, `role` and `apps` claims make the principal.
 *
 * Per request: one SHA-256 of the token, a constant-time compare with the root token's hash, and for a
 * JWT one map lookup once it has been verified (cached until its `exp`). Anything else is 401
 * `invalid_token`. Nothing here logs or throws a token; the generated root token is handed to the
 * caller once, to print.
 */
import type { Config } from "../config.ts";
import { UnauthorizedError } from "../core/errors.ts";
import { silentLogger, type Logger } from "../core/logger.ts";
import { keyHash } from "../domain/app/keys.ts";
import type { EventStore } from "../eventstore/port.ts";
import { ManagementJwtVerifier } from "./jwt.ts";
import { RootToken } from "./rootToken.ts";

export { MANAGEMENT_ROLES, type ManagementRole } from "./jwt.ts";

export interface ManagementPrincipal {
  kind: "root" | "jwt";
  /** "root" for the root token; the JWT's `sub`. */
  subject: string;
  role: "owner" | "admin" | "member";
  /** Apps it may manage. */
  apps: readonly string[] | "all";
}

export interface ManagementAuth {
  /** Reads Authorization: Bearer <token>; throws UnauthorizedError (401, code "invalid_token") when missing/invalid/expired. */
  authenticate(request: Request): Promise<ManagementPrincipal>;
  stop(): Promise<void>;
}

export interface CreateManagementAuthOptions {
  store: EventStore;
  config: Pick<Config, "management">;
  logger?: Logger;
  /** Clock for JWT expiry, ms since the epoch (tests). */
  now?: () => number;
}

/** Tokens longer than this are refused before hashing: no real root token or JWT comes near it. */
const MAX_TOKEN_LENGTH = 16 * 1024;

export const ROOT_PRINCIPAL: ManagementPrincipal = Object.freeze({ kind: "root", subject: "root", role: "owner", apps: "all" });

/** The token of `Authorization: Bearer <token>`, or null. */
export function bearerToken(headers: Headers): string | null {
  const auth = headers.get("authorization");
  if (!auth) return null;
  const match = /^bearer\s+(\S+)\s*$/i.exec(auth);
  return match ? match[1]! : null;
}

/**
 * Sets up the root token (recording or generating it; see src/auth/rootToken.ts) and the JWT verifier.
 * `generatedRootToken` is the token generated on this start, for the caller to print once; null when
 * `ADMIN_TOKEN` is set or the store already had one.
 */
export async function createManagementAuth(options: CreateManagementAuthOptions): Promise<{ auth: ManagementAuth; generatedRootToken: string | null }> {
  const { store, config } = options;
  const logger = options.logger ?? silentLogger;
  const m = config.management;
  const { root, generated } = await RootToken.start(store, m.adminToken, logger);
  const jwt = new ManagementJwtVerifier({
    secret: m.jwtSecret, jwksUrl: m.jwksUrl, issuer: m.jwtIssuer, audience: m.jwtAudience, logger,
    ...(options.now ? { now: options.now } : {}),
  });
  const auth: ManagementAuth = {
    async authenticate(request) {
      const token = bearerToken(request.headers);
      if (!token) throw new UnauthorizedError("Missing management token: send Authorization: Bearer <token>", "invalid_token");
      if (token.length > MAX_TOKEN_LENGTH) throw new UnauthorizedError("Invalid management token", "invalid_token");
      const hash = keyHash(token);
      if (root.matches(hash)) return ROOT_PRINCIPAL;
      if (!jwt.enabled) throw new UnauthorizedError("Invalid management token", "invalid_token");
      return jwt.verify(token, hash);
    },
    stop: () => root.stop(),
  };
  return { auth, generatedRootToken: generated };
}
