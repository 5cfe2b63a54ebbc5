/**
 * Management-plane JWTs, verified with `jose`: HS256 with `MANAGEMENT_JWT_SECRET`, and RS256/ES256
 * against the keys at `MANAGEMENT_JWKS_URL` (an organisation's own identity provider); either or both.
 *
 * - Refused (401 `invalid_token`, with a message saying why): no `exp`, an unsigned token (`alg: none`)
 *   or an algorithm not configured, a bad signature, an expired or not-yet-valid token, an issuer or
 *   audience other than the configured ones (when configured), no `sub`, a `role` outside
 *   `owner | admin | member`, an `apps` claim that is neither an array of app ids nor `"*"`.
 * - A JWKS that cannot be fetched is the server's problem, not the token's: 503 `unavailable`.
 * - A verified token is cached by its SHA-256 until its `exp`, in a bounded map, so a client that sends
 *   the same token on every request costs one hash and one lookup, not a signature check. The same
 *   principal object is returned for every hit.
 *
 * No message or log line holds a token or a claim value.
 */
import {
  createRemoteJWKSet, decodeProtectedHeader, errors, jwtVerify,
  type CryptoKey, type JWSHeaderParameters, type FlattenedJWSInput, type JWTPayload,
} from "jose";
import { UnauthorizedError, UnavailableError } from "../core/errors.ts";
import { silentLogger, type Logger } from "../core/logger.ts";
import type { ManagementPrincipal } from "./management.ts";

export const MANAGEMENT_ROLES = ["owner", "admin", "member"] as const;
export type ManagementRole = (typeof MANAGEMENT_ROLES)[number];

/** Verified tokens kept at most; past it the oldest cached goes first. */
export const JWT_CACHE_SIZE = 10_000;
/** An `apps` claim longer than this is refused: the principal is held in memory per cached token. */
const MAX_APPS = 1000;
const MAX_CLAIM_LENGTH = 200;

export interface JwtVerifierOptions {
  /** HS256 secret (32+ bytes). */
  secret?: string | undefined;
  /** JWKS URL for RS256/ES256. */
  jwksUrl?: string | undefined;
  issuer?: string | undefined;
  audience?: string | undefined;
  cacheSize?: number;
  /** Clock, ms since the epoch (tests). */
  now?: () => number;
  logger?: Logger;
}

const invalid = (message: string) => new UnauthorizedError(message, "invalid_token");

/** The JWKS could not be fetched or read: a dependency failure, mapped to 503. */
class JwksUnavailable extends Error {}

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** True for a string shaped like a compact JWS (three base64url parts). */
export const looksLikeJwt = (token: string): boolean => JWT_SHAPE.test(token);

export class ManagementJwtVerifier {
  private readonly algorithms: string[];
  private readonly secret: Uint8Array | null;
  private readonly jwks: ReturnType<typeof createRemoteJWKSet> | null;
  private readonly cache = new Map<string, { principal: ManagementPrincipal; expiresAt: number }>();
  private readonly cacheSize: number;
  private readonly now: () => number;
  private readonly logger: Logger;

  constructor(private readonly options: JwtVerifierOptions) {
    this.secret = options.secret ? new TextEncoder().encode(options.secret) : null;
    this.jwks = options.jwksUrl ? createRemoteJWKSet(new URL(options.jwksUrl), { timeoutDuration: 5000, cooldownDuration: 30_000, cacheMaxAge: 600_000 }) : null;
    this.algorithms = [...(this.secret ? ["HS256"] : []), ...(this.jwks ? ["RS256", "ES256"] : [])];
    this.cacheSize = Math.max(1, options.cacheSize ?? JWT_CACHE_SIZE);
    this.now = options.now ?? Date.now;
    this.logger = (options.logger ?? silentLogger).child({ component: "management_jwt" });
  }

  /** True when a secret or a JWKS URL is configured. */
  get enabled(): boolean {
    return this.algorithms.length > 0;
  }

  /** Verifies `token` (whose SHA-256 hex is `hash`), from the cache when it was verified before. */
  async verify(token: string, hash: string): Promise<ManagementPrincipal> {
    const now = this.now();
    const cached = this.cache.get(hash);
    if (cached) {
      if (now < cached.expiresAt) return cached.principal;
      this.cache.delete(hash);
      throw invalid("The token has expired");
    }
    if (!this.enabled) throw invalid("Invalid management token");
    const payload = await this.verifySignatureAndClaims(token, now);
    const principal = principalOf(payload);
    const expiresAt = payload.exp! * 1000;
    if (now >= expiresAt) throw invalid("The token has expired");
    if (this.cache.size >= this.cacheSize) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(hash, { principal, expiresAt });
    return principal;
  }

  /** Tokens in the cache (tests, metrics). */
  get cached(): number {
    return this.cache.size;
  }

  private async verifySignatureAndClaims(token: string, now: number): Promise<JWTPayload> {
    if (!looksLikeJwt(token)) throw invalid("Invalid management token");
    let alg: unknown;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch {
      throw invalid("Malformed JWT: its header is not valid base64url JSON");
    }
    if (typeof alg !== "string" || alg.toLowerCase() === "none") throw invalid("Unsigned JWTs (alg none) are refused");
    if (!this.algorithms.includes(alg)) throw invalid(`The JWT's signing algorithm is not accepted here (accepted: ${this.algorithms.join(", ")})`);
    try {
      const { payload } = await jwtVerify(token, (header, input) => this.keyFor(header, input), {
        algorithms: this.algorithms,
        requiredClaims: ["exp", "sub"],
        currentDate: new Date(now),
        ...(this.options.issuer !== undefined ? { issuer: this.options.issuer } : {}),
        ...(this.options.audience !== undefined ? { audience: this.options.audience } : {}),
      });
      return payload;
    } catch (err) {
      throw this.mapError(err);
    }
  }

  private async keyFor(header: JWSHeaderParameters, input: FlattenedJWSInput): Promise<CryptoKey | Uint8Array> {
    if (header.alg === "HS256") return this.secret!;
    try {
      return await this.jwks!(header, input);
    } catch (err) {
      if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) throw err;
      throw new JwksUnavailable("The management JWKS could not be fetched or read", { cause: err });
    }
  }

  private mapError(err: unknown): Error {
    if (err instanceof JwksUnavailable) {
      const cause = err.cause as Error | undefined;
      this.logger.warn("the management JWKS could not be fetched or read", { error: cause ? { name: cause.name, message: cause.message } : undefined });
      return new UnavailableError("The identity provider's keys (MANAGEMENT_JWKS_URL) could not be fetched; try again shortly");
    }
    if (err instanceof errors.JWTExpired) return invalid("The token has expired");
    if (err instanceof errors.JWTClaimValidationFailed) {
      if (err.claim === "nbf") return invalid("The token is not valid yet (nbf)");
      if (err.claim === "iss") return invalid("The token's issuer (iss) is missing or not the configured one");
      if (err.claim === "aud") return invalid("The token's audience (aud) is missing or not the configured one");
      if (err.claim === "exp" || err.claim === "sub") return invalid(`The token has no valid "${err.claim}" claim; it is required`);
      return invalid(`The token's "${err.claim}" claim is invalid`);
    }
    if (err instanceof errors.JOSEAlgNotAllowed) return invalid(`The JWT's signing algorithm is not accepted here (accepted: ${this.algorithms.join(", ")})`);
    if (err instanceof errors.JWSSignatureVerificationFailed) return invalid("The token's signature does not verify");
    if (err instanceof errors.JWKSNoMatchingKey) return invalid("No key of the configured JWKS matches the token (kid/alg)");
    if (err instanceof errors.JWKSMultipleMatchingKeys) return invalid("Several keys of the configured JWKS match the token; it must name its key (kid)");
    if (err instanceof errors.JWTInvalid || err instanceof errors.JWSInvalid) return invalid("Malformed JWT");
    return invalid("The token could not be verified");
  }
}

/** The principal a verified token's claims describe; refuses claims outside the contract. */
function principalOf(payload: JWTPayload): ManagementPrincipal {
  const { sub, role, apps } = payload as JWTPayload & { role?: unknown; apps?: unknown };
  if (typeof sub !== "string" || sub.length === 0 || sub.length > MAX_CLAIM_LENGTH) throw invalid(`The token's "sub" claim must be a non-empty string of at most ${MAX_CLAIM_LENGTH} characters`);
  if (role === undefined) throw invalid(`The token has no "role" claim; it is required (one of ${MANAGEMENT_ROLES.join(", ")})`);
  if (typeof role !== "string" || !(MANAGEMENT_ROLES as readonly string[]).includes(role)) throw invalid(`The token's "role" claim must be one of ${MANAGEMENT_ROLES.join(", ")}`);
  let scope: readonly string[] | "all";
  if (apps === "*") scope = "all";
  else if (Array.isArray(apps) && apps.length <= MAX_APPS && apps.every((a) => typeof a === "string" && a.length > 0 && a.length <= MAX_CLAIM_LENGTH && a !== "*")) {
    scope = Object.freeze([...new Set(apps as string[])]);
  } else {
    throw invalid(`The token's "apps" claim must be an array of app ids (at most ${MAX_APPS}) or the string "*" for all apps`);
  }
  return Object.freeze({ kind: "jwt", subject: sub, role: role as ManagementRole, apps: scope });
}
