/**
 * App: a tenant. Stream `app-<id>`. It owns its API keys: issuing, revoking and rotating one is decided
 * against the app's current state (a suspended or deleted app issues nothing; a key is revoked once).
 * A key itself is never stored: its SHA-256 and a display prefix are (see ApiKeyFields).
 */
import type { Static } from "@sinclair/typebox";
import { ConflictError, NotFoundError, ValidationError } from "../../core/errors.ts";
import { unreachable, type Decider } from "../../core/decider.ts";
import { ApiKeyFields, ConnectionFields, RateLimitBudgetSchema, type AppEvent } from "./events.ts";
import { Type } from "@sinclair/typebox";
import { canonicalJson } from "../../core/canonicalJson.ts";
import type { Limits } from "../billing/limits.ts";
import type { PriceTable } from "../billing/prices.ts";

export type { AppEvent };

const ApiKeySchema = Type.Object(ApiKeyFields);
export type ApiKeyRecord = Static<typeof ApiKeySchema> & {
  revoked: boolean;
  /** Epoch ms of the last recorded use (recorded coarsely: see RecordKeyUse); null before any. */
  last_used_at: number | null;
  /** Epoch ms: the earlier of the key's own expiry and a rotation's grace end; null when neither. */
  refused_after: number | null;
};

const ConnectionSchema = Type.Object(ConnectionFields);
export type Connection = Static<typeof ConnectionSchema>;

/** The app's connection named `name`, if it has one (own names only: `constructor` is not a connection). */
export const connectionOf = (connections: Readonly<Record<string, Connection>>, name: string): Connection | undefined =>
  Object.hasOwn(connections, name) ? connections[name] : undefined;

/** One budget's rate limits (see RateLimitBudgetSchema). */
export type RateLimitBudget = Static<typeof RateLimitBudgetSchema>;

/** An app's rate limits: per API key, and per end user. */
export interface AppRateLimits {
  per_key: RateLimitBudget;
  per_end_user: RateLimitBudget;
}

export interface AppState {
  status: "none" | "active" | "suspended" | "deleted";
  /** The app's own rate limits; absent until set (the server's defaults apply). */
  rate_limits?: AppRateLimits;
  id: string | null;
  name: string;
  keys: ApiKeyRecord[];
  /** Model connections by name. */
  connections: Record<string, Connection>;
  /** Usage limits; null for none. */
  limits: Limits | null;
  /** The app's own model prices, on top of the server's. */
  prices: PriceTable;
}

export type NewKey = Static<typeof ApiKeySchema>;

export type AppCommand =
  | { type: "CreateApp"; app_id: string; name: string }
  | { type: "RenameApp"; name: string }
  | { type: "SuspendApp"; reason: string | null }
  | { type: "ResumeApp" }
  | { type: "DeleteApp" }
  | { type: "IssueKey"; key: NewKey }
  | { type: "RevokeKey"; key_id: string }
  /** A new key; the old one keeps working until `grace_until` (epoch ms), then is refused. */
  | { type: "RotateKey"; key_id: string; replacement: NewKey; grace_until: number; now: number }
  /** Records a use if the last recorded one is at least `granularity_ms` older (else decides nothing). */
  | { type: "RecordKeyUse"; key_id: string; at: number; granularity_ms: number }
  /** Replaces the app's rate limits (decides nothing when they are already so). */
  | { type: "SetRateLimits"; rate_limits: AppRateLimits }
  | { type: "SetConnection"; connection: Connection }
  | { type: "RemoveConnection"; name: string }
  | { type: "SetLimits"; limits: Limits | null }
  | { type: "SetPrices"; prices: PriceTable };

const earliest = (a: number | null, b: number | null): number | null => (a === null ? b : b === null ? a : Math.min(a, b));

export const appDecider: Decider<AppCommand, AppEvent, AppState> = {
  initialState: { status: "none", id: null, name: "", keys: [], connections: {}, limits: null, prices: {} },

  evolve(state, event) {
    switch (event.type) {
      case "AppCreated":
        return { status: "active", id: event.data.app_id, name: event.data.name, keys: [], connections: {}, limits: null, prices: {} };
      case "AppRenamed":
        return { ...state, name: event.data.name };
      case "AppSuspended":
        return { ...state, status: "suspended" };
      case "AppResumed":
        return { ...state, status: "active" };
      case "AppDeleted":
        return { ...state, status: "deleted" };
      case "ApiKeyIssued": {
        const { app_id: _app, ...key } = event.data;
        return { ...state, keys: [...state.keys, { ...key, revoked: false, refused_after: key.expires_at, last_used_at: null }] };
      }
      case "ApiKeyRevoked":
        return { ...state, keys: state.keys.map((k) => (k.key_id === event.data.key_id ? { ...k, revoked: true } : k)) };
      case "ApiKeyExpiring":
        return { ...state, keys: state.keys.map((k) => (k.key_id === event.data.key_id ? { ...k, refused_after: earliest(k.refused_after, event.data.until) } : k)) };
      case "ConnectionSet": {
        const { app_id: _app, ...connection } = event.data;
        return { ...state, connections: { ...state.connections, [connection.name]: connection } };
      }
      case "ConnectionRemoved": {
        const { [event.data.name]: _gone, ...rest } = state.connections;
        return { ...state, connections: rest };
      }
      case "LimitsSet":
        return { ...state, limits: event.data.limits };
      case "PricesSet":
        return { ...state, prices: event.data.prices };
      case "RateLimitsSet":
        return { ...state, rate_limits: { per_key: event.data.per_key, per_end_user: event.data.per_end_user } };
      case "ApiKeyUsed":
        return { ...state, keys: state.keys.map((k) => (k.key_id === event.data.key_id ? { ...k, last_used_at: Math.max(k.last_used_at ?? 0, event.data.at) } : k)) };
      default:
        return unreachable(event);
    }
  },

  decide(command, state) {
    switch (command.type) {
      case "CreateApp":
        if (state.status !== "none") throw new ConflictError("app_exists", `App ${command.app_id} already exists`);
        return [{ type: "AppCreated", data: { app_id: command.app_id, name: command.name } }];
      case "RenameApp":
        requireLive(state);
        return state.name === command.name ? [] : [{ type: "AppRenamed", data: { app_id: state.id!, name: command.name } }];
      case "SuspendApp":
        requireLive(state);
        return state.status === "suspended" ? [] : [{ type: "AppSuspended", data: { app_id: state.id!, reason: command.reason } }];
      case "ResumeApp":
        requireLive(state);
        return state.status === "active" ? [] : [{ type: "AppResumed", data: { app_id: state.id! } }];
      case "DeleteApp":
        requireLive(state);
        return [{ type: "AppDeleted", data: { app_id: state.id! } }];
      case "IssueKey":
        requireActive(state);
        checkNewKey(state, command.key);
        return [{ type: "ApiKeyIssued", data: { app_id: state.id!, ...command.key } }];
      case "RevokeKey": {
        requireLive(state);
        const key = requireKey(state, command.key_id);
        return key.revoked ? [] : [{ type: "ApiKeyRevoked", data: { app_id: state.id!, key_id: key.key_id } }];
      }
      case "RotateKey": {
        requireActive(state);
        const key = requireKey(state, command.key_id);
        if (key.revoked) throw new ConflictError("key_revoked", `Key ${key.key_id} is revoked; issue a new one instead`, { param: "key_id" });
        // An expired key (or one past its grace) is not brought back by rotating it.
        if (key.refused_after !== null && command.now >= key.refused_after) {
          throw new ConflictError("key_expired", `Key ${key.key_id} has expired; issue a new one instead`, { param: "key_id" });
        }
        checkNewKey(state, command.replacement);
        return [
          { type: "ApiKeyIssued", data: { app_id: state.id!, ...command.replacement } },
          { type: "ApiKeyExpiring", data: { app_id: state.id!, key_id: key.key_id, until: command.grace_until } },
        ];
      }
      case "SetConnection":
        requireActive(state);
        return [{ type: "ConnectionSet", data: { app_id: state.id!, ...command.connection } }];
      case "RemoveConnection":
        requireLive(state);
        if (!connectionOf(state.connections, command.name)) throw new NotFoundError("Connection not found", { param: "name" }, "connection_not_found");
        return [{ type: "ConnectionRemoved", data: { app_id: state.id!, name: command.name } }];
      case "SetLimits":
        requireLive(state);
        if (sameJson(state.limits, command.limits)) return [];
        return [{ type: "LimitsSet", data: { app_id: state.id!, limits: command.limits } }];
      case "SetPrices":
        requireLive(state);
        if (sameJson(state.prices, command.prices)) return [];
        return [{ type: "PricesSet", data: { app_id: state.id!, prices: { ...command.prices } } }];
      case "SetRateLimits": {
        requireLive(state);
        const { per_key, per_end_user } = command.rate_limits;
        const current = state.rate_limits;
        if (current && sameBudget(current.per_key, per_key) && sameBudget(current.per_end_user, per_end_user)) return [];
        return [{ type: "RateLimitsSet", data: { app_id: state.id!, per_key: { ...per_key }, per_end_user: { ...per_end_user } } }];
      }
      case "RecordKeyUse": {
        if (state.status === "none" || state.status === "deleted") return [];
        const key = state.keys.find((k) => k.key_id === command.key_id);
        if (!key || (key.last_used_at !== null && command.at - key.last_used_at < command.granularity_ms)) return [];
        return [{ type: "ApiKeyUsed", data: { app_id: state.id!, key_id: key.key_id, at: command.at } }];
      }
      default:
        return unreachable(command);
    }
  },
};

const sameBudget = (a: RateLimitBudget, b: RateLimitBudget): boolean =>
  a.requests_per_minute === b.requests_per_minute && a.heavy_per_minute === b.heavy_per_minute;

/** Settings compared as their JSON, keys in any order: setting what is already set records nothing. */
const sameJson = (a: unknown, b: unknown): boolean => canonicalJson(a) === canonicalJson(b);

function requireLive(state: AppState): void {
  if (state.status === "none" || state.status === "deleted") throw new NotFoundError("App not found", { param: "app_id" }, "app_not_found");
}

function requireActive(state: AppState): void {
  requireLive(state);
  if (state.status === "suspended") throw new ConflictError("app_suspended", "The app is suspended");
}

function requireKey(state: AppState, keyId: string): ApiKeyRecord {
  const key = state.keys.find((k) => k.key_id === keyId);
  if (!key) throw new NotFoundError("API key not found", { param: "key_id" }, "key_not_found");
  return key;
}

function checkNewKey(state: AppState, key: NewKey): void {
  if (state.keys.some((k) => k.key_id === key.key_id || k.hash === key.hash)) {
    throw new ConflictError("key_exists", "A key with this id or value already exists", { param: "key_id" });
  }
  if (key.scopes.length === 0) throw new ValidationError("A key needs at least one scope", { param: "scopes" });
}
