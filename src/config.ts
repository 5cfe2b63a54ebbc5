/**
 * Configuration: read from the environment once, at start-up, and checked against a schema. A bad
 * value stops the process with a message naming the variable. Every variable is documented in the
 * README's configuration table; keep the two in step.
 */
import { Type, type Static } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseMasterKey } from "./secrets/masterKey.ts";
import { ModelPriceSchema, type PriceTable } from "./domain/billing/prices.ts";

const Env = Type.Object({
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 8080, description: "HTTP port (0 picks a free one)" }),
  HOST: Type.String({ minLength: 1, default: "127.0.0.1", description: "Interface to listen on; 0.0.0.0 for all" }),
  DATA_DIR: Type.String({ minLength: 1, default: "./data", description: "Folder for the SQLite event store and read models" }),
  EVENT_STORE: Type.Union([Type.Literal("sqlite"), Type.Literal("esdb"), Type.Literal("memory")], { default: "sqlite" }),
  EVENTSTORE_CONNECTION_STRING: Type.Optional(Type.String({ pattern: "^(esdb|esdb\\+discover|kurrentdb|kurrentdb\\+discover)://" })),
  SQLITE_SYNCHRONOUS: Type.Union([Type.Literal("full"), Type.Literal("normal")], { default: "full" }),
  SQLITE_POLL_INTERVAL_MS: Type.Integer({ minimum: 5, maximum: 10_000, default: 100 }),
  READ_YOUR_WRITES_TIMEOUT_MS: Type.Integer({ minimum: 1, maximum: 120_000, default: 5000 }),
  IDEMPOTENCY_CLAIM_TTL_MS: Type.Integer({ minimum: 100, maximum: 3_600_000, default: 30_000 }),
  SHUTDOWN_TIMEOUT_MS: Type.Integer({ minimum: 0, maximum: 600_000, default: 10_000 }),
  MAX_BODY_BYTES: Type.Integer({ minimum: 1024, maximum: 1_073_741_824, default: 10 * 1024 * 1024 }),
  BODY_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 600_000, default: 10_000 }),
  TAIL_CACHE_STREAMS: Type.Integer({ minimum: 0, maximum: 10_000_000, default: 10_000 }),
  TAIL_CACHE_EVENTS_PER_STREAM: Type.Integer({ minimum: 1, maximum: 100_000, default: 256 }),
  TAIL_CACHE_MB: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 64 }),
  SSE_BUFFER_BYTES: Type.Integer({ minimum: 1024, maximum: 1_073_741_824, default: 1024 * 1024 }),
  SSE_STALL_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 3_600_000, default: 30_000 }),
  /** How long a compat surface's synchronous call (e.g. Magus `POST /api/v1/messages`) waits for the agent. */
  COMPAT_SYNC_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 3_600_000, default: 300_000 }),
  /** The OAuth client of Mushu's BYOS connect flow (/compat/mushu/chatgpt/*); OpenAI's public ChatGPT client when unset. */
  CHATGPT_CONNECT_AUTHORIZE_URL: Type.Optional(Type.String({ pattern: "^https?://", maxLength: 2048 })),
  CHATGPT_CONNECT_TOKEN_URL: Type.Optional(Type.String({ pattern: "^https?://", maxLength: 2048 })),
  CHATGPT_CONNECT_CLIENT_ID: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
  CHATGPT_CONNECT_REDIRECT_URI: Type.Optional(Type.String({ pattern: "^https?://", maxLength: 2048 })),
  CHATGPT_CONNECT_SCOPE: Type.Optional(Type.String({ minLength: 1, maxLength: 1000 })),
  TOOL_PRIVATE_ALLOWLIST: Type.Optional(Type.String({ maxLength: 4000, pattern: "^[A-Za-z0-9_.:*\\[\\],-]*$" })),
  // Not shaped like a JWT: a bearer credential of that shape is read as an end-user token.
  API_KEY: Type.Optional(Type.String({ minLength: 16, maxLength: 512, pattern: "^(?!eyJ[\\w-]*\\.[\\w-]+\\.[\\w-]+$)" })),
  WORKER_CONCURRENCY: Type.Integer({ minimum: 1, maximum: 256, default: 4 }),
  SANDBOX_CHUNK_DELAY_MS: Type.Integer({ minimum: 0, maximum: 10_000, default: 15 }),
  LLM_PROVIDER: Type.Union([Type.Literal("sandbox"), Type.Literal("openai"), Type.Literal("anthropic")], { default: "sandbox" }),
  LLM_BASE_URL: Type.Optional(Type.String({ pattern: "^https?://" })),
  LLM_API_KEY: Type.Optional(Type.String({ minLength: 1 })),
  LLM_MODEL: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  LLM_STALL_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 600_000, default: 60_000 }),
  LLM_MAX_ATTEMPTS: Type.Integer({ minimum: 1, maximum: 10, default: 4 }),
  MODEL_PRICES_FILE: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
  CONTEXT_BUDGET_TOKENS: Type.Integer({ minimum: 256, maximum: 10_000_000, default: 100_000 }),
  CONTEXT_STRATEGY: Type.Union([Type.Literal("summarize"), Type.Literal("drop")], { default: "summarize" }),
  ROLE: Type.Union([Type.Literal("all"), Type.Literal("api"), Type.Literal("worker")], { default: "all" }),
  REDIS_URL: Type.Optional(Type.String({ pattern: "^rediss?://" })),
  JOB_LEASE_MS: Type.Integer({ minimum: 100, maximum: 3_600_000, default: 15_000 }),
  JOB_MAX_DELIVERIES: Type.Integer({ minimum: 1, maximum: 100, default: 5 }),
  RECONCILE_INTERVAL_MS: Type.Integer({ minimum: 200, maximum: 3_600_000, default: 30_000 }),
  RATE_LIMIT_PER_MINUTE: Type.Integer({ minimum: 0, maximum: 1_000_000, default: 60, description: "Requests a minute per API key and per end user (0: off)" }),
  RATE_LIMIT_HEAVY_PER_MINUTE: Type.Integer({ minimum: 0, maximum: 1_000_000, default: 10, description: "Heavy calls (messages, runs) a minute, on top (0: off)" }),
  RATE_LIMIT_MAX_BUCKETS: Type.Integer({ minimum: 100, maximum: 10_000_000, default: 100_000 }),
  RATE_LIMIT_REDIS_TIMEOUT_MS: Type.Integer({ minimum: 10, maximum: 10_000, default: 200 }),
  READ_MODEL_FILE: Type.Optional(Type.String({ minLength: 1 })),
  SECRETS_MASTER_KEY: Type.Optional(Type.String({ maxLength: 200 })),
  SECRETS_PREVIOUS_MASTER_KEYS: Type.Optional(Type.String({ maxLength: 20_000 })),
  // Presented as a bearer token: visible characters only (one with spaces could never be sent).
  ADMIN_TOKEN: Type.Optional(Type.String({ minLength: 16, maxLength: 512, pattern: "^[\\x21-\\x7e]+$" })),
  MANAGEMENT_JWT_SECRET: Type.Optional(Type.String({ maxLength: 4096 })),
  MANAGEMENT_JWKS_URL: Type.Optional(Type.String({ pattern: "^https?://", maxLength: 2000 })),
  MANAGEMENT_JWT_ISSUER: Type.Optional(Type.String({ minLength: 1, maxLength: 2000 })),
  MANAGEMENT_JWT_AUDIENCE: Type.Optional(Type.String({ minLength: 1, maxLength: 2000 })),
  BLOB_STORE: Type.Union([Type.Literal("local"), Type.Literal("s3")], { default: "local", description: "Where file contents go: DATA_DIR/blobs, or an S3-compatible bucket" }),
  S3_ENDPOINT: Type.Optional(Type.String({ pattern: "^https?://", maxLength: 2000 })),
  S3_BUCKET: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
  S3_ACCESS_KEY_ID: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
  S3_SECRET_ACCESS_KEY: Type.Optional(Type.String({ minLength: 1, maxLength: 2048 })),
  S3_REGION: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
  S3_PREFIX: Type.Optional(Type.String({ maxLength: 500, pattern: "^[A-Za-z0-9!_.*'()/-]*$" })),
  S3_VIRTUAL_HOSTED_STYLE: Type.Boolean({ default: false }),
  MAX_FILE_BYTES: Type.Integer({ minimum: 1, maximum: 5 * 1024 * 1024 * 1024, default: 25 * 1024 * 1024 }),
  FILE_CONTENT_TYPES: Type.Optional(Type.String({ minLength: 1, maxLength: 4000, pattern: "^[A-Za-z0-9!#$&^_.+*/, -]+$" })),
  SIGNED_URL_TTL_S: Type.Integer({ minimum: 10, maximum: 7 * 24 * 3600, default: 900 }),
  PUBLIC_BASE_URL: Type.Optional(Type.String({ pattern: "^https?://[^/?#]+$", maxLength: 2000 })),
  FILE_MODEL_BUDGET_CHARS: Type.Integer({ minimum: 100, maximum: 10_000_000, default: 60_000 }),
  FILE_MODEL_IMAGE_BYTES: Type.Integer({ minimum: 1024, maximum: 100 * 1024 * 1024, default: 5 * 1024 * 1024 }),
  SKILLS_DIR: Type.Optional(Type.String({ minLength: 1, maxLength: 4096, description: "Folder of the *.skill.md skills shipped to every app (default: the repository's skills/)" })),
  ACCESS_LOG: Type.Boolean({ default: true, description: "One info line per request (false: off)" }),
  METRICS_TOKEN: Type.Optional(Type.String({ minLength: 16, maxLength: 512, description: "A bearer token that may scrape /metrics" })),
  METRICS_PORT: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535, description: "Also serve /metrics on this port (the only way for ROLE=worker)" })),
  METRICS_HOST: Type.String({ minLength: 1, default: "127.0.0.1", description: "Interface of the METRICS_PORT listener" }),
  LOG_LEVEL: Type.Union([Type.Literal("debug"), Type.Literal("info"), Type.Literal("warn"), Type.Literal("error")], { default: "info" }),
});

type EnvShape = Static<typeof Env>;

export interface Config {
  port: number;
  host: string;
  dataDir: string;
  eventStore: EnvShape["EVENT_STORE"];
  eventStoreConnectionString: string | undefined;
  sqliteSynchronous: EnvShape["SQLITE_SYNCHRONOUS"];
  sqlitePollIntervalMs: number;
  readYourWritesTimeoutMs: number;
  idempotencyClaimTtlMs: number;
  shutdownTimeoutMs: number;
  maxBodyBytes: number;
  bodyTimeoutMs: number;
  sse: { bufferBytes: number; stallMs: number };
  /**
   * Compat surfaces (/compat/*): how long a synchronous call waits for the agent, and what is set of the
   * OAuth client Mushu's ChatGPT connect flow uses (the rest is OpenAI's public client).
   */
  compat: {
    syncTimeoutMs: number;
    chatgpt: { authorize_url?: string; token_url?: string; client_id?: string; redirect_uri?: string; scope?: string };
  };
  /** Hot streams kept in memory for polls and reads: how many, and how many events each. */
  tailCache: { streams: number; eventsPerStream: number; maxBytes: number };
  /** Non-public targets HTTP tools may call: `*`, or `host` / `host:port` entries. Empty: public addresses only. */
  toolPrivateAllowlist: string[];
  apiKey: string | undefined;
  workerConcurrency: number;
  sandboxChunkDelayMs: number;
  llm: {
    provider: "sandbox" | "openai" | "anthropic";
    baseUrl: string | undefined;
    apiKey: string | undefined;
    model: string | undefined;
    stallTimeoutMs: number;
    maxAttempts: number;
  };
  /** The server's model prices, credits per million tokens (apps may set their own on top). */
  prices: PriceTable;
  /** How much history a turn may send, and what happens to the rest (agents may set their own). */
  context: { budgetTokens: number; strategy: "summarize" | "drop" };
  role: "all" | "api" | "worker";
  redisUrl: string | undefined;
  jobLeaseMs: number;
  jobMaxDeliveries: number;
  readModelFile: string | undefined;
  reconcileIntervalMs: number;
  /**
   * Rate limits (src/http/rateLimit.ts): the server's defaults a minute (0: off), apps may set their
   * own; the in-process limiter's bucket cap; how long a Redis check may take before this process
   * limits on its own.
   */
  rateLimits: { perMinute: number; heavyPerMinute: number; maxBuckets: number; redisTimeoutMs: number };
  /** The secret box's master key and the retired ones it may still unwrap with (base64, 32 bytes each). */
  secrets: { masterKey: string | undefined; previousMasterKeys: string[] };
  /** The management plane (src/auth/management.ts): the operator root token and the JWTs it accepts. */
  management: {
    adminToken: string | undefined;
    /** HS256 secret, 32+ bytes. */
    jwtSecret: string | undefined;
    /** RS256/ES256 keys are fetched from here. */
    jwksUrl: string | undefined;
    jwtIssuer: string | undefined;
    jwtAudience: string | undefined;
  };
  /** Files (src/app/files.ts): where their bytes go, what is accepted, and how much the model reads. */
  files: FilesConfig;
  /** The folder the shipped skills are read from at start-up (src/app/skills.ts). */
  skillsDir: string;
  logLevel: EnvShape["LOG_LEVEL"];
  accessLog: boolean;
  /** `/metrics`: who may scrape it on the API port besides the operator, and the optional separate listener. */
  metrics: { token: string | undefined; port: number | undefined; host: string };
}

export interface FilesConfig {
  store: "local" | "s3";
  s3: { endpoint?: string; bucket?: string; accessKeyId?: string; secretAccessKey?: string; region?: string; prefix: string; virtualHostedStyle: boolean };
  maxBytes: number;
  /** Accepted content types: exact (`text/plain`) or a family (`image/*`). */
  contentTypes: string[];
  signedUrlTtlS: number;
  /** The origin signed URLs name (behind a proxy); absent: the request's own origin. */
  publicBaseUrl: string | undefined;
  /** Characters of text (text files, extracted PDF text) the model is given per message, all files together. */
  modelBudgetChars: number;
  /** The largest image sent to the model as an image. */
  modelImageBytes: number;
}

/** The content types accepted for files unless FILE_CONTENT_TYPES says otherwise. */
export const DEFAULT_FILE_CONTENT_TYPES = [
  "text/*", "application/json", "application/pdf", "application/xml", "application/x-yaml", "application/yaml",
  "image/png", "image/jpeg", "image/gif", "image/webp",
];

/** The skills shipped in the repository, wherever the server is started from. */
export const DEFAULT_SKILLS_DIR = join(import.meta.dir, "..", "skills");

export class ConfigError extends Error {
  constructor(readonly variable: string, message: string) {
    super(`Invalid configuration: ${variable}: ${message}`);
    this.name = "ConfigError";
  }
}

/** The read-model file of this process: READ_MODEL_FILE, else DATA_DIR/readmodels.sqlite. */
export const readModelFileOf = (config: Config): string => config.readModelFile ?? join(config.dataDir, "readmodels.sqlite");

/** Reads and checks the configuration; throws ConfigError naming the first bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const raw: Record<string, unknown> = {};
  for (const key of Object.keys(Env.properties)) {
    const value = env[key];
    if (value !== undefined && value !== "") raw[key] = value;
  }
  const withDefaults = Value.Default(Env, Value.Convert(Env, raw));
  const first = Value.Errors(Env, withDefaults).First();
  if (first) {
    const variable = first.path.replace(/^\//, "") || "environment";
    // The value itself is never echoed: it may be a secret (API_KEY, LLM_API_KEY, a URL with a password).
    throw new ConfigError(variable, first.message);
  }
  const e = withDefaults as EnvShape;
  if (e.LLM_PROVIDER !== "sandbox" && !e.LLM_API_KEY && !e.LLM_BASE_URL) {
    throw new ConfigError("LLM_API_KEY", `required with LLM_PROVIDER=${e.LLM_PROVIDER} (or set LLM_BASE_URL for a keyless OpenAI-compatible endpoint)`);
  }
  if (e.ROLE !== "all" && !e.REDIS_URL) {
    throw new ConfigError("REDIS_URL", `required with ROLE=${e.ROLE}: separate API and worker processes share jobs through Redis`);
  }
  if (e.ROLE !== "all" && e.EVENT_STORE === "memory") {
    throw new ConfigError("EVENT_STORE", "memory cannot be shared between processes; use sqlite or esdb with ROLE=api/worker");
  }
  if (e.EVENT_STORE === "esdb" && !e.EVENTSTORE_CONNECTION_STRING) {
    throw new ConfigError("EVENTSTORE_CONNECTION_STRING", "required when EVENT_STORE=esdb (for example esdb://localhost:2113?tls=false)");
  }
  const previousMasterKeys = (e.SECRETS_PREVIOUS_MASTER_KEYS ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  if (e.SECRETS_MASTER_KEY !== undefined && !parseMasterKey(e.SECRETS_MASTER_KEY)) {
    throw new ConfigError("SECRETS_MASTER_KEY", "must be 32 random bytes in base64 (for example `openssl rand -base64 32`)");
  }
  const badPrevious = previousMasterKeys.findIndex((k) => !parseMasterKey(k));
  if (badPrevious >= 0) throw new ConfigError("SECRETS_PREVIOUS_MASTER_KEYS", `entry ${badPrevious + 1} is not 32 bytes in base64`);
  if (e.MANAGEMENT_JWT_SECRET !== undefined && Buffer.byteLength(e.MANAGEMENT_JWT_SECRET, "utf8") < 32) {
    throw new ConfigError("MANAGEMENT_JWT_SECRET", "must be at least 32 bytes (for example `openssl rand -base64 32`)");
  }
  if (e.MANAGEMENT_JWKS_URL !== undefined && !URL.canParse(e.MANAGEMENT_JWKS_URL)) {
    throw new ConfigError("MANAGEMENT_JWKS_URL", "is not a valid http(s) URL");
  }
  if (e.BLOB_STORE === "s3" && !e.S3_BUCKET) throw new ConfigError("S3_BUCKET", "required when BLOB_STORE=s3");
  const prices = e.MODEL_PRICES_FILE ? readPrices(e.MODEL_PRICES_FILE) : {};
  return {
    port: e.PORT,
    host: e.HOST,
    dataDir: e.DATA_DIR,
    eventStore: e.EVENT_STORE,
    eventStoreConnectionString: e.EVENTSTORE_CONNECTION_STRING,
    sqliteSynchronous: e.SQLITE_SYNCHRONOUS,
    sqlitePollIntervalMs: e.SQLITE_POLL_INTERVAL_MS,
    readYourWritesTimeoutMs: e.READ_YOUR_WRITES_TIMEOUT_MS,
    idempotencyClaimTtlMs: e.IDEMPOTENCY_CLAIM_TTL_MS,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    maxBodyBytes: e.MAX_BODY_BYTES,
    bodyTimeoutMs: e.BODY_TIMEOUT_MS,
    sse: { bufferBytes: e.SSE_BUFFER_BYTES, stallMs: e.SSE_STALL_TIMEOUT_MS },
    compat: {
      syncTimeoutMs: e.COMPAT_SYNC_TIMEOUT_MS,
      chatgpt: Object.fromEntries(Object.entries({
        authorize_url: e.CHATGPT_CONNECT_AUTHORIZE_URL, token_url: e.CHATGPT_CONNECT_TOKEN_URL, client_id: e.CHATGPT_CONNECT_CLIENT_ID,
        redirect_uri: e.CHATGPT_CONNECT_REDIRECT_URI, scope: e.CHATGPT_CONNECT_SCOPE,
      }).filter(([, v]) => v !== undefined)),
    },
    tailCache: { streams: e.TAIL_CACHE_STREAMS, eventsPerStream: e.TAIL_CACHE_EVENTS_PER_STREAM, maxBytes: e.TAIL_CACHE_MB * 1024 * 1024 },
    toolPrivateAllowlist: (e.TOOL_PRIVATE_ALLOWLIST ?? "").split(",").map((s) => s.trim()).filter(Boolean),
    apiKey: e.API_KEY,
    workerConcurrency: e.WORKER_CONCURRENCY,
    sandboxChunkDelayMs: e.SANDBOX_CHUNK_DELAY_MS,
    llm: {
      provider: e.LLM_PROVIDER, baseUrl: e.LLM_BASE_URL, apiKey: e.LLM_API_KEY, model: e.LLM_MODEL,
      stallTimeoutMs: e.LLM_STALL_TIMEOUT_MS, maxAttempts: e.LLM_MAX_ATTEMPTS,
    },
    prices,
    context: { budgetTokens: e.CONTEXT_BUDGET_TOKENS, strategy: e.CONTEXT_STRATEGY },
    role: e.ROLE,
    redisUrl: e.REDIS_URL,
    jobLeaseMs: e.JOB_LEASE_MS,
    jobMaxDeliveries: e.JOB_MAX_DELIVERIES,
    readModelFile: e.READ_MODEL_FILE,
    reconcileIntervalMs: e.RECONCILE_INTERVAL_MS,
    rateLimits: {
      perMinute: e.RATE_LIMIT_PER_MINUTE, heavyPerMinute: e.RATE_LIMIT_HEAVY_PER_MINUTE,
      maxBuckets: e.RATE_LIMIT_MAX_BUCKETS, redisTimeoutMs: e.RATE_LIMIT_REDIS_TIMEOUT_MS,
    },
    secrets: { masterKey: e.SECRETS_MASTER_KEY, previousMasterKeys },
    management: {
      adminToken: e.ADMIN_TOKEN, jwtSecret: e.MANAGEMENT_JWT_SECRET, jwksUrl: e.MANAGEMENT_JWKS_URL,
      jwtIssuer: e.MANAGEMENT_JWT_ISSUER, jwtAudience: e.MANAGEMENT_JWT_AUDIENCE,
    },
    files: {
      store: e.BLOB_STORE,
      s3: {
        endpoint: e.S3_ENDPOINT, bucket: e.S3_BUCKET, accessKeyId: e.S3_ACCESS_KEY_ID, secretAccessKey: e.S3_SECRET_ACCESS_KEY, region: e.S3_REGION,
        prefix: e.S3_PREFIX ?? "", virtualHostedStyle: e.S3_VIRTUAL_HOSTED_STYLE,
      },
      maxBytes: e.MAX_FILE_BYTES,
      contentTypes: e.FILE_CONTENT_TYPES ? e.FILE_CONTENT_TYPES.split(",").map((s) => s.trim().toLowerCase()).filter(Boolean) : DEFAULT_FILE_CONTENT_TYPES,
      signedUrlTtlS: e.SIGNED_URL_TTL_S,
      publicBaseUrl: e.PUBLIC_BASE_URL,
      modelBudgetChars: e.FILE_MODEL_BUDGET_CHARS,
      modelImageBytes: e.FILE_MODEL_IMAGE_BYTES,
    },
    skillsDir: e.SKILLS_DIR ?? DEFAULT_SKILLS_DIR,
    logLevel: e.LOG_LEVEL,
    accessLog: e.ACCESS_LOG,
    metrics: { token: e.METRICS_TOKEN, port: e.METRICS_PORT, host: e.METRICS_HOST },
  };
}

const checkPrices = TypeCompiler.Compile(Type.Record(Type.String({ minLength: 1, maxLength: 300 }), ModelPriceSchema, { additionalProperties: false }));

/** MODEL_PRICES_FILE: a JSON object of model keys (see src/domain/billing/prices.ts) to prices. */
function readPrices(path: string): PriceTable {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new ConfigError("MODEL_PRICES_FILE", `could not be read as JSON: ${(err as Error).message}`);
  }
  if (!checkPrices.Check(parsed)) {
    const first = [...checkPrices.Errors(parsed)][0];
    throw new ConfigError("MODEL_PRICES_FILE", `${first?.path || "/"} ${first?.message ?? "is not a price table"} (expected {"model": {"input": n, "output": n, "cached"?: n}})`);
  }
  return parsed;
}
