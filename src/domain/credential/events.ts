/**
 * The events of an end user's model credentials (BYOS), stream `credentials-<appId>:<sha256(user_id)>`
 * (see src/domain/streams.ts): one stream per user and data partition, holding a credential per provider
 * kind. Every secret (API key, access token, refresh token) is sealed by the secret box under the
 * partition's app before it is decided, so no event holds one in clear; `last4` is the view an answer
 * may show (null for secrets too short to show any of). See src/core/eventContract.ts for versioning.
 */
import { Type } from "@sinclair/typebox";
import { eventCodec, type EventsOf } from "../../core/eventContract.ts";
import { Nullable } from "../shared/schemas.ts";

/** The provider kinds a user can connect: the same kinds as an app's model connections. */
export const CREDENTIAL_PROVIDERS = ["openai", "anthropic", "openai_compatible"] as const;
export type CredentialProvider = (typeof CREDENTIAL_PROVIDERS)[number];

const ProviderSchema = Type.Union(CREDENTIAL_PROVIDERS.map((p) => Type.Literal(p)));

const Owner = { app_id: Type.String(), user_id: Type.String(), provider: ProviderSchema };

const Tokens = {
  /** The API key (kind api_key) or the access token (kind oauth), sealed. */
  secret: Type.String({ minLength: 1 }),
  /** Epoch ms after which the access token no longer works; null when unknown (or for an API key). */
  expires_at: Nullable(Type.Integer()),
  last4: Nullable(Type.String()),
};

export const CREDENTIAL_EVENTS = {
  /** The user connected (or reconnected) a provider: replaces what was stored for it. */
  CredentialSet: { version: 1, schema: Type.Object({
    ...Owner, kind: Type.Union([Type.Literal("api_key"), Type.Literal("oauth")]), ...Tokens,
    /** Sealed; null when there is none (always for an API key). */
    refresh_token: Nullable(Type.String({ minLength: 1 })),
  }) },
  /** New tokens from the token endpoint. `refresh_token` null: the stored one stays (it was not rotated). */
  CredentialRefreshed: { version: 1, schema: Type.Object({ ...Owner, ...Tokens, refresh_token: Nullable(Type.String({ minLength: 1 })) }) },
  /** The token endpoint refused the refresh token (`invalid_grant`, …): it is not tried again. */
  CredentialRefreshRefused: { version: 1, schema: Type.Object({ ...Owner, reason: Type.String() }) },
  CredentialRemoved: { version: 1, schema: Type.Object(Owner) },
};

export type CredentialEvent = EventsOf<typeof CREDENTIAL_EVENTS>;
export const credentialEvents = eventCodec(CREDENTIAL_EVENTS);
