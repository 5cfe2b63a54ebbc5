/** The app stream's events: an app (a tenant) and its API keys. See src/core/eventContract.ts. */
import { Type } from "@sinclair/typebox";
import { eventCodec, type EventsOf } from "../../core/eventContract.ts";
import { Nullable } from "../shared/schemas.ts";
import { LimitsSchema } from "../billing/limits.ts";
import { ModelPriceSchema } from "../billing/prices.ts";

/**
 * `audit:read` reads the app's events as stored (/v1/audit): it includes no other scope and no other
 * includes it, and only a key acting for the whole app (no user, no agent list) may use it.
 */
export const KEY_SCOPES = ["data:read", "data:write", "agents:manage", "audit:read"] as const;
export type KeyScope = (typeof KEY_SCOPES)[number];

const ScopeSchema = Type.Union(KEY_SCOPES.map((s) => Type.Literal(s)));

/** What is kept of an API key: never the key, only its hash and a prefix people can recognise. */
export const ApiKeyFields = {
  key_id: Type.String(),
  name: Type.String(),
  /** The key's first characters (`agk_live_ab12`), to tell keys apart in lists. */
  prefix: Type.String(),
  /** SHA-256 of the key, hex. */
  hash: Type.String(),
  mode: Type.Union([Type.Literal("live"), Type.Literal("test")]),
  scopes: Type.Array(ScopeSchema),
  /** The agents this key may use; null for all. */
  agent_ids: Nullable(Type.Array(Type.String())),
  /** The end user this key acts as; null for a server key acting for any user. */
  user_id: Nullable(Type.String()),
  /** Epoch ms after which the key is refused; null for no expiry. */
  expires_at: Nullable(Type.Integer()),
};

/** A connection to a model provider the app's agents can name (`model.connection`). */
export const ConnectionFields = {
  name: Type.String(),
  provider: Type.Union([Type.Literal("openai"), Type.Literal("anthropic"), Type.Literal("openai_compatible")]),
  base_url: Nullable(Type.String()),
  /** The provider key, sealed by the secret box under the app (never in clear); null for keyless endpoints. */
  api_key: Nullable(Type.String()),
  default_model: Nullable(Type.String()),
  /**
   * Extra request headers sent to the provider (an organisation id, a gateway's key): names in clear,
   * values sealed like `api_key`. Absent in connections made before headers.
   */
  headers: Type.Optional(Type.Record(Type.String(), Type.String())),
  /**
   * Where end users' OAuth credentials (BYOS) are refreshed for agents on this connection; absent or
   * null for none. `client_secret` is sealed like `api_key`.
   */
  oauth: Type.Optional(Nullable(Type.Object({ token_url: Type.String(), client_id: Nullable(Type.String()), client_secret: Nullable(Type.String()) }))),
  /**
   * The model that embeds the app's memory entries and queries through this connection's `/embeddings`
   * endpoint (OpenAI wire format), for hybrid ranking (src/app/memory.ts); absent or null for none.
   */
  embeddings_model: Type.Optional(Nullable(Type.String())),
};

/** One budget's rate limits, requests a minute: 0 for none, null for the server's default. */
export const RateLimitBudgetSchema = Type.Object({
  requests_per_minute: Nullable(Type.Integer({ minimum: 0 })),
  /** Heavy calls (those that start a job), which also count as requests. */
  heavy_per_minute: Nullable(Type.Integer({ minimum: 0 })),
});

export const APP_EVENTS = {
  AppCreated: { version: 1, schema: Type.Object({ app_id: Type.String(), name: Type.String() }) },
  AppRenamed: { version: 1, schema: Type.Object({ app_id: Type.String(), name: Type.String() }) },
  AppSuspended: { version: 1, schema: Type.Object({ app_id: Type.String(), reason: Nullable(Type.String()) }) },
  AppResumed: { version: 1, schema: Type.Object({ app_id: Type.String() }) },
  AppDeleted: { version: 1, schema: Type.Object({ app_id: Type.String() }) },
  ApiKeyIssued: { version: 1, schema: Type.Object({ app_id: Type.String(), ...ApiKeyFields }) },
  ApiKeyRevoked: { version: 1, schema: Type.Object({ app_id: Type.String(), key_id: Type.String() }) },
  /** The key stays valid until `until` (epoch ms), then is refused: a rotation's grace period. */
  ApiKeyExpiring: { version: 1, schema: Type.Object({ app_id: Type.String(), key_id: Type.String(), until: Type.Integer() }) },
  ConnectionSet: { version: 1, schema: Type.Object({ app_id: Type.String(), ...ConnectionFields }) },
  ConnectionRemoved: { version: 1, schema: Type.Object({ app_id: Type.String(), name: Type.String() }) },
  /** The app's usage limits, replaced whole (see src/domain/billing/limits.ts); null removes them. */
  LimitsSet: { version: 1, schema: Type.Object({ app_id: Type.String(), limits: Nullable(LimitsSchema) }) },
  /** The app's own model prices (credits per million tokens), replaced whole; on top of the server's. */
  PricesSet: { version: 1, schema: Type.Object({ app_id: Type.String(), prices: Type.Record(Type.String(), ModelPriceSchema) }) },
  /** The key was used at `at` (epoch ms). Recorded at most about once an hour per key, never per request. */
  ApiKeyUsed: { version: 1, schema: Type.Object({ app_id: Type.String(), key_id: Type.String(), at: Type.Integer() }) },
  /** The app's rate limits, replaced whole: per API key and per end user; a null limit is the server's default. */
  RateLimitsSet: { version: 1, schema: Type.Object({ app_id: Type.String(), per_key: RateLimitBudgetSchema, per_end_user: RateLimitBudgetSchema }) },
};

export type AppEvent = EventsOf<typeof APP_EVENTS>;
export const appEvents = eventCodec(APP_EVENTS);
