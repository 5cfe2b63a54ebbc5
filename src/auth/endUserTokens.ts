/**
 * End-user tokens: short-lived JWTs a server mints for one of its users (`POST /v1/end-user-tokens`),
 * which a mobile or web client then uses directly. A token acts in its minting key's app and mode, with
 * at most that key's rights, as that user only, and only while the key that minted it still works.
 *
 * They are signed HS256 with one secret shared by every process: generated once, sealed by the secret
 * box, kept in the `operator-end-user-signing` stream. A verified token is cached until it expires, so
 * checking it costs one hash and one lookup per request.
 */
import { jwtVerify, SignJWT } from "jose";
import { randomBytes } from "node:crypto";
import { UnauthorizedError } from "../core/errors.ts";
import { newEventId, newResourceId } from "../core/ids.ts";
import type { Logger } from "../core/logger.ts";
import { endUserSigningEvents } from "../domain/operator/events.ts";
import { endUserSigningStream } from "../domain/streams.ts";
import { StreamNotFoundError, WrongExpectedVersionError } from "../eventstore/errors.ts";
import type { EventStore } from "../eventstore/port.ts";
import type { SecretBox } from "../secrets/secretBox.ts";

/** What a token says: who it acts as, where, with what rights, minted by which key. */
export interface EndUserClaims {
  appId: string;
  mode: "live" | "test";
  userId: string;
  scopes: string[];
  agentIds: string[] | null;
  /** The API key that minted it: the token works only while that key does. */
  parentKeyId: string;
  /** Epoch ms. */
  expiresAt: number;
}

const TYPE = "agentry.end_user";
/** The secret box's owner for operator-wide secrets (not an app). */
const OPERATOR = "_operator";
const CACHE_LIMIT = 10_000;

export const looksLikeJwt = (credential: string): boolean => /^eyJ[\w-]*\.[\w-]+\.[\w-]+$/.test(credential);

export class EndUserTokens {
  private readonly cache = new Map<string, EndUserClaims>();

  private constructor(private readonly secret: Uint8Array) {}

  /** Loads the signing secret, creating it if no process has yet. */
  static async open(store: EventStore, secrets: SecretBox, logger?: Logger): Promise<EndUserTokens> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const existing = await readSealed(store);
      if (existing) return new EndUserTokens(Buffer.from(await secrets.open(OPERATOR, existing), "base64"));
      const sealed = await secrets.seal(OPERATOR, randomBytes(32).toString("base64"));
      try {
        await store.appendToStream(endUserSigningStream(), [{
          id: newEventId(), type: "EndUserSigningKeyCreated", data: { key_id: newResourceId("euk"), sealed },
          metadata: { app_id: OPERATOR, actor: "system:end-user-tokens", ...endUserSigningEvents.encode({ type: "EndUserSigningKeyCreated", data: { key_id: "x", sealed } }) },
        }], { expectedRevision: "no_stream" });
        logger?.info("created the end-user token signing key");
      } catch (err) {
        if (!(err instanceof WrongExpectedVersionError)) throw err; // another process made it: read theirs
      }
    }
    throw new Error("could not load the end-user token signing key");
  }

  async mint(claims: Omit<EndUserClaims, "expiresAt">, ttlS: number, now = Date.now()): Promise<{ token: string; expiresAt: number }> {
    const expiresAt = Math.floor(now / 1000) + ttlS;
    const token = await new SignJWT({ typ: TYPE, app: claims.appId, mode: claims.mode, scp: claims.scopes, agt: claims.agentIds, kid: claims.parentKeyId })
      .setProtectedHeader({ alg: "HS256" }).setSubject(claims.userId).setIssuedAt(Math.floor(now / 1000)).setExpirationTime(expiresAt)
      .sign(this.secret);
    return { token, expiresAt: expiresAt * 1000 };
  }

  /** The token's claims; 401 invalid_token when it is not one of ours, is malformed, or has expired. */
  async verify(token: string, now = Date.now()): Promise<EndUserClaims> {
    const hash = Bun.SHA256.hash(token, "hex") as string;
    const cached = this.cache.get(hash);
    if (cached) {
      if (now < cached.expiresAt) return cached;
      this.cache.delete(hash);
      throw expired();
    }
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, this.secret, { algorithms: ["HS256"], currentDate: new Date(now), requiredClaims: ["exp", "sub"] }));
    } catch (err) {
      if ((err as { code?: string }).code === "ERR_JWT_EXPIRED") throw expired();
      throw new UnauthorizedError("Invalid end-user token", "invalid_token");
    }
    const ok = payload.typ === TYPE && typeof payload.app === "string" && (payload.mode === "live" || payload.mode === "test") &&
      Array.isArray(payload.scp) && typeof payload.kid === "string" && (payload.agt === null || Array.isArray(payload.agt));
    if (!ok) throw new UnauthorizedError("Invalid end-user token", "invalid_token");
    const claims: EndUserClaims = {
      appId: payload.app as string, mode: payload.mode as "live" | "test", userId: payload.sub as string, scopes: payload.scp as string[],
      agentIds: payload.agt as string[] | null, parentKeyId: payload.kid as string, expiresAt: (payload.exp as number) * 1000,
    };
    this.cache.set(hash, claims);
    if (this.cache.size > CACHE_LIMIT) this.cache.delete(this.cache.keys().next().value!);
    return claims;
  }
}

const expired = () => new UnauthorizedError("The end-user token has expired", "invalid_token");

async function readSealed(store: EventStore): Promise<string | null> {
  try {
    for await (const e of store.readStream(endUserSigningStream(), { maxCount: 1 })) {
      const event = endUserSigningEvents.decode(e);
      return event.data.sealed;
    }
  } catch (err) {
    if (!(err instanceof StreamNotFoundError)) throw err;
  }
  return null;
}
