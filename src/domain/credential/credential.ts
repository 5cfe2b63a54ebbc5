/**
 * An end user's model credentials (BYOS): per provider kind, an API key or OAuth tokens the user's
 * agents (those with `billing: "end_user"`) run on. Stream `credentials-<appId>:<sha256(user_id)>`.
 *
 * Refreshing is decided with optimistic concurrency: a refresh names the `version` of the credential it
 * refreshed, and is refused (409 credential_changed) when the credential changed since — another job
 * refreshed it first, or the user reconnected — so the loser reloads and uses what is stored now.
 * Pure: time comes in as arguments (`now`), secrets arrive already sealed.
 */
import { ConflictError, NotFoundError } from "../../core/errors.ts";
import { unreachable, type Decider } from "../../core/decider.ts";
import type { CredentialEvent, CredentialProvider } from "./events.ts";

export type { CredentialEvent, CredentialProvider };

export interface StoredCredential {
  kind: "api_key" | "oauth";
  /** Sealed API key or access token. */
  secret: string;
  /** Sealed refresh token, or null. */
  refresh_token: string | null;
  /** Epoch ms; null when unknown or not applicable. */
  expires_at: number | null;
  last4: string | null;
  /** The token endpoint refused the refresh token: refreshing is not tried again until a reconnect. */
  refresh_refused: boolean;
  /** Changes with every event about this credential: what a refresh is decided against. */
  version: number;
}

export interface CredentialsState {
  appId: string | null;
  userId: string | null;
  /** Events folded so far: the source of each credential's `version`. */
  seq: number;
  credentials: Partial<Record<CredentialProvider, StoredCredential>>;
}

export interface NewCredential {
  kind: "api_key" | "oauth";
  secret: string;
  refresh_token: string | null;
  expires_at: number | null;
  last4: string | null;
}

export type CredentialCommand =
  | { type: "SetCredential"; app_id: string; user_id: string; provider: CredentialProvider; credential: NewCredential }
  /** New tokens for the credential at `based_on` (its version when the refresh began). */
  | { type: "RefreshCredential"; provider: CredentialProvider; based_on: number; secret: string; refresh_token: string | null; expires_at: number | null; last4: string | null }
  | { type: "RefuseRefresh"; provider: CredentialProvider; based_on: number; reason: string }
  | { type: "RemoveCredential"; provider: CredentialProvider };

export type CredentialStatus = "connected" | "expired" | "missing";

/** How long before its expiry an access token is refreshed, so it does not lapse in the middle of a turn. */
export const REFRESH_AHEAD_MS = 30_000;

/** The status a client sees: an OAuth access token past its expiry is expired (refreshable or not). */
export function credentialStatus(c: StoredCredential | undefined, now: number): CredentialStatus {
  if (!c) return "missing";
  return c.expires_at !== null && c.expires_at <= now ? "expired" : "connected";
}

/** Whether a refresh may be tried: OAuth, with a refresh token the token endpoint has not refused. */
export const isRefreshable = (c: StoredCredential | undefined): boolean =>
  !!c && c.kind === "oauth" && c.refresh_token !== null && !c.refresh_refused;

/** Whether a turn starting at `now` should refresh first: expired, or about to be. */
export const needsRefresh = (c: StoredCredential, now: number): boolean => c.expires_at !== null && c.expires_at - now <= REFRESH_AHEAD_MS;

export const credentialDecider: Decider<CredentialCommand, CredentialEvent, CredentialsState> = {
  initialState: { appId: null, userId: null, seq: 0, credentials: {} },

  evolve(state, event) {
    const seq = state.seq + 1;
    const { provider } = event.data;
    const base = { ...state, appId: event.data.app_id, userId: event.data.user_id, seq };
    switch (event.type) {
      case "CredentialSet": {
        const { kind, secret, refresh_token, expires_at, last4 } = event.data;
        return { ...base, credentials: { ...state.credentials, [provider]: { kind, secret, refresh_token, expires_at, last4, refresh_refused: false, version: seq } } };
      }
      case "CredentialRefreshed": {
        const before = state.credentials[provider];
        if (!before) return base;
        const { secret, refresh_token, expires_at, last4 } = event.data;
        return {
          ...base,
          credentials: { ...state.credentials, [provider]: { ...before, secret, expires_at, last4, refresh_token: refresh_token ?? before.refresh_token, version: seq } },
        };
      }
      case "CredentialRefreshRefused": {
        const before = state.credentials[provider];
        if (!before) return base;
        return { ...base, credentials: { ...state.credentials, [provider]: { ...before, refresh_refused: true, version: seq } } };
      }
      case "CredentialRemoved": {
        const { [provider]: _gone, ...rest } = state.credentials;
        return { ...base, credentials: rest };
      }
      default:
        return unreachable(event);
    }
  },

  decide(command, state) {
    switch (command.type) {
      case "SetCredential":
        return [{ type: "CredentialSet", data: { app_id: command.app_id, user_id: command.user_id, provider: command.provider, ...command.credential } }];
      case "RefreshCredential": {
        const current = requireCurrent(state, command.provider, command.based_on);
        if (current.kind !== "oauth") throw new ConflictError("credential_changed", "The credential is an API key now; it has nothing to refresh");
        return [{ type: "CredentialRefreshed", data: {
          ...owner(state, command.provider), secret: command.secret, refresh_token: command.refresh_token, expires_at: command.expires_at, last4: command.last4,
        } }];
      }
      case "RefuseRefresh": {
        const current = state.credentials[command.provider];
        // Changed meanwhile (refreshed by another job, reconnected): the refusal is about tokens no longer stored.
        if (!current || current.version !== command.based_on || current.refresh_refused) return [];
        return [{ type: "CredentialRefreshRefused", data: { ...owner(state, command.provider), reason: command.reason } }];
      }
      case "RemoveCredential":
        return state.credentials[command.provider] ? [{ type: "CredentialRemoved", data: owner(state, command.provider) }] : [];
      default:
        return unreachable(command);
    }
  },
};

const owner = (state: CredentialsState, provider: CredentialProvider) => ({ app_id: state.appId!, user_id: state.userId!, provider });

function requireCurrent(state: CredentialsState, provider: CredentialProvider, basedOn: number): StoredCredential {
  const current = state.credentials[provider];
  if (!current) throw new NotFoundError("The user has no credential for this provider", { param: "provider" }, "credential_not_found");
  if (current.version !== basedOn) throw new ConflictError("credential_changed", "The credential changed while it was being refreshed");
  return current;
}
