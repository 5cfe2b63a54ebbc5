/**
 * Idempotency key: one stream per (app, key), `idempotency-<hash>`, with Stripe's semantics.
 *
 * - The first request claims the key with its fingerprint (method, path, body) and the ids of the
 *   resources it will create, fixed here so any re-execution of the same request names the same
 *   resources and cannot create them twice.
 * - An outcome is recorded once the request's write committed; the same key and request then gets that
 *   outcome again, forever, and a different request gets `idempotency_conflict`.
 * - A request refused before it wrote anything (validation, not found, busy, conflict, rate limit)
 *   releases the key: the client may fix the request and retry with the same key.
 * - A claim whose request failed unexpectedly, or whose process died, is taken over by the next retry
 *   of the same request, with the same resource ids: what committed is found, what did not is done.
 * - A live claim (its request still running, however long) answers `idempotency_in_progress`.
 *
 * Liveness is decided outside (it needs the clock and the process table) and handed in.
 */
import { ConflictError } from "../../core/errors.ts";
import { Type } from "@sinclair/typebox";
import { unreachable, type Decider } from "../../core/decider.ts";
import { eventCodec, type EventsOf } from "../../core/eventContract.ts";

export interface ClaimOwner {
  /** Random per process start: the process that runs the request. */
  instance: string;
  host: string;
  pid: number;
}

export interface StoredResponse {
  status: number;
  body: unknown;
}

const OwnerSchema = Type.Object({ instance: Type.String(), host: Type.String(), pid: Type.Integer() });
const StoredResponseSchema = Type.Object({ status: Type.Integer(), body: Type.Unknown() });

export const IDEMPOTENCY_EVENTS = {
  IdempotencyKeyClaimed: { version: 1, schema: Type.Object({
    key_hash: Type.String(), fingerprint: Type.String(), resource_ids: Type.Record(Type.String(), Type.String()), owner: OwnerSchema,
    at: Type.Number(),
    /** True when this claim took over an unfinished one (same request, same resource ids). */
    takeover: Type.Boolean(),
  }) },
  IdempotencyClaimRenewed: { version: 1, schema: Type.Object({ instance: Type.String(), at: Type.Number() }) },
  IdempotencyClaimAbandoned: { version: 1, schema: Type.Object({ instance: Type.String(), at: Type.Number() }) },
  IdempotencyKeyReleased: { version: 1, schema: Type.Object({ status: Type.Integer(), code: Type.String() }) },
  IdempotentResponseRecorded: { version: 1, schema: StoredResponseSchema },
};

export type IdempotencyEvent = EventsOf<typeof IDEMPOTENCY_EVENTS>;
export const idempotencyEvents = eventCodec(IDEMPOTENCY_EVENTS);

export type IdempotencyCommand =
  | {
      type: "ClaimKey"; key_hash: string; fingerprint: string; owner: ClaimOwner; now: number;
      /** The same request's fingerprint as earlier versions computed it: a key they recorded still matches. */
      legacyFingerprint?: string;
      /** Ids to use when the key is new or free (ignored when taking over: the claim's own ids stay). */
      resource_ids: Record<string, string>;
      /** Whether the current claim's request may still be running (see idempotencyLiveness). */
      claimLive: boolean;
    }
  | { type: "RenewClaim"; instance: string; now: number }
  | { type: "AbandonClaim"; instance: string; now: number }
  | { type: "ReleaseKey"; instance: string; status: number; code: string }
  | { type: "RecordResponse"; instance: string; response: StoredResponse };

export interface IdempotencyState {
  status: "none" | "claimed" | "abandoned" | "released" | "recorded";
  fingerprint: string | null;
  resourceIds: Record<string, string>;
  owner: ClaimOwner | null;
  /** Business time of the claim or its last renewal. */
  renewedAt: number;
  response: StoredResponse | null;
}

export const idempotencyDecider: Decider<IdempotencyCommand, IdempotencyEvent, IdempotencyState> = {
  initialState: { status: "none", fingerprint: null, resourceIds: {}, owner: null, renewedAt: 0, response: null },

  evolve(state, event) {
    switch (event.type) {
      case "IdempotencyKeyClaimed":
        return {
          ...state, status: "claimed", fingerprint: event.data.fingerprint, resourceIds: event.data.resource_ids,
          owner: event.data.owner, renewedAt: event.data.at,
        };
      case "IdempotencyClaimRenewed":
        return { ...state, renewedAt: event.data.at };
      case "IdempotencyClaimAbandoned":
        return { ...state, status: "abandoned" };
      case "IdempotencyKeyReleased":
        return { ...state, status: "released" };
      case "IdempotentResponseRecorded":
        return { ...state, status: "recorded", response: event.data };
      default:
        return unreachable(event);
    }
  },

  decide(command, state) {
    switch (command.type) {
      case "ClaimKey": {
        const sameRequest = state.fingerprint === command.fingerprint || (command.legacyFingerprint !== undefined && state.fingerprint === command.legacyFingerprint);
        const claim = (ids: Record<string, string>, takeover: boolean): IdempotencyEvent[] => [{
          type: "IdempotencyKeyClaimed",
          data: { key_hash: command.key_hash, fingerprint: command.fingerprint, resource_ids: ids, owner: command.owner, at: command.now, takeover },
        }];
        switch (state.status) {
          case "none":
          case "released":
            return claim(command.resource_ids, false);
          case "recorded":
            if (!sameRequest) throw conflict();
            return []; // the caller replays state.response
          case "claimed":
            if (!sameRequest) throw conflict();
            if (command.claimLive) {
              throw new ConflictError("idempotency_in_progress", "A request with this Idempotency-Key is still being processed; retry shortly", { param: "Idempotency-Key" });
            }
            return claim(state.resourceIds, true);
          case "abandoned":
            if (!sameRequest) throw conflict();
            return claim(state.resourceIds, true);
          default:
            return unreachable(state.status);
        }
      }
      case "RenewClaim":
        return holds(state, command.instance) ? [{ type: "IdempotencyClaimRenewed", data: { instance: command.instance, at: command.now } }] : [];
      case "AbandonClaim":
        return holds(state, command.instance) ? [{ type: "IdempotencyClaimAbandoned", data: { instance: command.instance, at: command.now } }] : [];
      case "ReleaseKey":
        return holds(state, command.instance) ? [{ type: "IdempotencyKeyReleased", data: { status: command.status, code: command.code } }] : [];
      case "RecordResponse":
        // Recorded once: a claim taken over meanwhile may have recorded the same request's outcome.
        return state.status === "recorded" ? [] : [{ type: "IdempotentResponseRecorded", data: command.response }];
      default:
        return unreachable(command);
    }
  },
};

const holds = (state: IdempotencyState, instance: string): boolean => state.status === "claimed" && state.owner?.instance === instance;

const conflict = () =>
  new ConflictError("idempotency_conflict", "This Idempotency-Key was used with a different request", { param: "Idempotency-Key" });

/**
 * Whether a claim's request may still be running. Dead when: it is this process's and no longer in
 * flight here; its process on this host is gone, or was an earlier process with our pid; or it has
 * not been renewed for `ttlMs`.
 */
export function claimLive(
  state: IdempotencyState,
  here: { instance: string; host: string; pid: number; inFlightHere: boolean; pidAlive: (pid: number) => boolean; now: number; ttlMs: number },
): boolean {
  const owner = state.owner;
  if (state.status !== "claimed" || !owner) return false;
  if (owner.instance === here.instance) return here.inFlightHere;
  if (owner.host === here.host) {
    // Its process is gone; or its pid is ours but the instance is not, so it was an earlier run of
    // this server under the same pid (a restarted container, where the server is often pid 1).
    if (!here.pidAlive(owner.pid) || owner.pid === here.pid) return false;
  }
  return here.now - state.renewedAt < here.ttlMs;
}
