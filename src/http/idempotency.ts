/**
 * `Idempotency-Key` for creating POSTs, recorded in the event store so it holds across restarts and
 * processes: the same key with the same request returns the original response; the same key with a
 * different request is `409 idempotency_conflict`. A key whose first request is still being processed
 * answers `409 idempotency_in_progress`; one whose first request died without an answer (older than
 * the claim timeout) may be retried.
 */
import { ConflictError, ValidationError, AppError } from "../core/errors.ts";
import { newEventId } from "../core/ids.ts";
import { idempotencyStream } from "../domain/streams.ts";
import { StreamNotFoundError, WrongExpectedVersionError } from "../eventstore/errors.ts";
import type { EventStore } from "../eventstore/port.ts";
import { toErrorResponse } from "./errors.ts";

export interface StoredResponse {
  status: number;
  body: unknown;
}

const CLAIM_TIMEOUT_MS = 60_000;
const sha256 = (s: string) => new Bun.CryptoHasher("sha256").update(s).digest("hex");

export async function idempotent(
  store: EventStore,
  appId: string,
  key: string | null,
  request: { method: string; path: string; body: unknown },
  run: () => Promise<StoredResponse>,
): Promise<StoredResponse & { replayed: boolean }> {
  if (key === null) return { ...(await run()), replayed: false };
  if (key.length === 0 || key.length > 255) throw new ValidationError("Idempotency-Key must be 1 to 255 characters", { param: "Idempotency-Key" });
  const stream = idempotencyStream(sha256(`${appId}\n${key}`));
  const fingerprint = sha256(`${request.method}\n${request.path}\n${JSON.stringify(request.body ?? null)}`);
  const meta = { app_id: appId };

  for (let attempt = 0; attempt < 3; attempt++) {
    const history = await readAll(store, stream);
    const claim = [...history].reverse().find((e) => e.type === "IdempotencyKeyClaimed");
    const recorded = history.find((e) => e.type === "IdempotentResponseRecorded");
    const released = claim ? history.findLast((e) => e.type === "IdempotencyKeyReleased" && e.revision > claim.revision) : undefined;
    if (claim && (claim.data as { fingerprint: string }).fingerprint !== fingerprint) {
      throw new ConflictError("idempotency_conflict", "This Idempotency-Key was used with a different request", { param: "Idempotency-Key" });
    }
    if (recorded) return { ...(recorded.data as StoredResponse), replayed: true };
    if (claim && !released && Date.now() - claim.created.getTime() < CLAIM_TIMEOUT_MS) {
      throw new ConflictError("idempotency_in_progress", "A request with this Idempotency-Key is still being processed; retry shortly");
    }
    const revision = history.length ? history[history.length - 1]!.revision : -1n;
    try {
      await store.appendToStream(stream, [{ id: newEventId(), type: "IdempotencyKeyClaimed", data: { key_hash: sha256(key), fingerprint }, metadata: meta }],
        { expectedRevision: revision < 0n ? "no_stream" : revision });
    } catch (err) {
      if (err instanceof WrongExpectedVersionError) continue; // a concurrent request claimed it: look again
      throw err;
    }
    let response: StoredResponse;
    try {
      response = await run();
    } catch (err) {
      if (err instanceof AppError && err.status < 500) {
        response = toErrorResponse(err);
      } else {
        await store.appendToStream(stream, [{ id: newEventId(), type: "IdempotencyKeyReleased", data: {}, metadata: meta }]).catch(() => {});
        throw err;
      }
    }
    await store.appendToStream(stream, [{ id: newEventId(), type: "IdempotentResponseRecorded", data: response, metadata: meta }]);
    return { ...response, replayed: false };
  }
  throw new ConflictError("idempotency_in_progress", "A request with this Idempotency-Key is being processed concurrently; retry shortly");
}

async function readAll(store: EventStore, stream: string) {
  const out = [];
  try {
    for await (const e of store.readStream(stream)) out.push(e);
  } catch (err) {
    if (!(err instanceof StreamNotFoundError)) throw err;
  }
  return out;
}
