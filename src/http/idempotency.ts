/**
 * `Idempotency-Key` for creating POSTs, recorded in the event store so it holds across restarts and
 * processes. The rules are the idempotency decider's (src/domain/idempotency/idempotency.ts); this
 * module runs a request under its key: claims it, keeps the claim alive while the request runs (however
 * long `wait: true` holds it), records the outcome once the write committed, and releases the key when
 * the request was refused before writing anything.
 */
import { canonicalJson } from "../core/canonicalJson.ts";
import { hostname } from "node:os";
import type { AppContext } from "../app/context.ts";
import type { CommandMetadata } from "../app/repository.ts";
import { ValidationError } from "../core/errors.ts";
import { toErrorResponse } from "./errors.ts";
import { newResourceId } from "../core/ids.ts";
import {
  claimLive, type ClaimOwner, type StoredResponse,
} from "../domain/idempotency/idempotency.ts";

export type { StoredResponse };

export interface IdempotentRun {
  /** The ids of the resources this request creates: fixed per key, so a re-execution names the same ones. */
  ids: Record<string, string>;
  /** True when this execution takes over an earlier one of the same request that did not finish. */
  resumed: boolean;
}

const sha256 = (s: string) => new Bun.CryptoHasher("sha256").update(s).digest("hex");

/** This process, as the owner of the claims it makes. */
const OWNER: ClaimOwner = { instance: crypto.randomUUID(), host: hostname(), pid: process.pid };
/** Keys whose request is running in this process right now. */
const inFlight = new Set<string>();

const pidAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
};

const freshIds = (prefixes: Record<string, string>): Record<string, string> =>
  Object.fromEntries(Object.entries(prefixes).map(([name, prefix]) => [name, newResourceId(prefix)]));

/** Who a key belongs to: the credential (key id, the user it acts as, key or end-user token). */
export const credentialOf = (principal: { keyId: string; userId: string | null; endUser: boolean } | undefined): string =>
  principal ? `${principal.keyId}|${principal.userId ?? ""}|${principal.endUser ? "user" : "key"}` : "";

/** The idempotency stream's id of `key` sent by `credential` in `appId`. */
export const idempotencyKeyHash = (appId: string, credential: string, key: string): string => sha256(`${appId}\n${credential}\n${key}`);

/**
 * Runs `run` under `key` (or plainly, without one). `idPrefixes` names the resources the request
 * creates, e.g. `{ session: "sess" }`; `run` gets their ids and must create exactly those, finding
 * rather than repeating what an earlier execution already committed when `resumed` is true.
 */
export async function idempotent(
  ctx: AppContext,
  key: string | null,
  request: { method: string; path: string; body: unknown },
  idPrefixes: Record<string, string>,
  run: (r: IdempotentRun) => Promise<StoredResponse>,
  /** Who sends it (its credential and the user it acts as): a key is theirs alone; and the metadata to record. */
  caller: { credential: string; meta: CommandMetadata },
): Promise<StoredResponse & { replayed: boolean }> {
  if (key === null) return { ...(await run({ ids: freshIds(idPrefixes), resumed: false })), replayed: false };
  if (key.length === 0 || key.length > 255) throw new ValidationError("Idempotency-Key must be 1 to 255 characters", { param: "Idempotency-Key" });
  // Keys are per credential, not per app: a replay answers only the caller whose request was recorded,
  // so another key or user of the same app can never read an answer its own checks would refuse.
  const keyHash = idempotencyKeyHash(ctx.appId, caller.credential, key);
  const fingerprint = sha256(`${request.method}\n${request.path}\n${canonicalJson(request.body ?? null)}`);
  // Keys recorded before fingerprints sorted their keys were fingerprinted over the body as parsed.
  const legacyFingerprint = sha256(`${request.method}\n${request.path}\n${JSON.stringify(request.body ?? null)}`);
  const meta = caller.meta;
  const repo = ctx.repos.idempotency;

  const claimed = await repo.handle(keyHash, (state) => ({
    type: "ClaimKey", key_hash: sha256(key), fingerprint, legacyFingerprint, owner: OWNER, now: Date.now(), resource_ids: freshIds(idPrefixes),
    claimLive: claimLive(state, { ...OWNER, inFlightHere: inFlight.has(keyHash), pidAlive, now: Date.now(), ttlMs: ctx.idempotencyClaimTtlMs }),
  }), meta);
  if (claimed.appended.length === 0) return { ...claimed.state.response!, replayed: true };
  const claim = claimed.appended[0]!;
  if (claim.type !== "IdempotencyKeyClaimed") throw new Error(`unexpected ${claim.type}`);

  inFlight.add(keyHash);
  const renew = setInterval(() => {
    void repo.handle(keyHash, { type: "RenewClaim", instance: OWNER.instance, now: Date.now() }, meta)
      .catch((err) => ctx.logger.warn("could not renew an idempotency claim", { error: err as Error }));
  }, ctx.idempotencyClaimTtlMs / 3);
  try {
    let response: StoredResponse;
    try {
      response = await run({ ids: claim.data.resource_ids, resumed: claim.data.takeover });
    } catch (err) {
      // Whatever answers 4xx, the service's refusals and the store's alike (too large, a conflict), was
      // refused before anything was written: the key is free again, for this request or a corrected one.
      const { status, body } = toErrorResponse(err);
      if (status < 500) {
        await repo.handle(keyHash, { type: "ReleaseKey", instance: OWNER.instance, status, code: body.error.code }, meta).catch(() => {});
      } else {
        // Failed midway: the next retry of this request takes over with the same resource ids.
        await repo.handle(keyHash, { type: "AbandonClaim", instance: OWNER.instance, now: Date.now() }, meta).catch(() => {});
      }
      throw err;
    }
    // If this append fails the claim stays; the next retry takes it over and finds what was written.
    await repo.handle(keyHash, { type: "RecordResponse", instance: OWNER.instance, response }, meta)
      .catch((err) => ctx.logger.warn("could not record an idempotent response", { error: err as Error }));
    return { ...response, replayed: false };
  } finally {
    clearInterval(renew);
    inFlight.delete(keyHash);
  }
}

export { canonicalJson };
