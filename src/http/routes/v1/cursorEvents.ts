/**
 * Cursor polling over a stream, read from the stream itself (never a read model): events with id >
 * `since`, up to `limit`; with `wait`, the request is held until the next event arrives (or `wait`
 * seconds pass). The waiter is registered before the stream is read, so an event appended in between
 * still wakes it.
 */
import { t } from "elysia";
import type { AppContext } from "../../../app/context.ts";
import { eventsAfter, PUBLIC_EVENT_SCHEMA, toPublicEvent, type PublicEvent } from "../../eventView.ts";
import type { RecordedEvent } from "../../../eventstore/port.ts";

export const CursorQuery = {
  since: t.Optional(t.Integer({ minimum: 0, default: 0, description: "Return events with id > since (0 = from the start)" })),
  limit: t.Optional(t.Integer({ minimum: 1, maximum: 1000, default: 200 })),
  wait: t.Optional(t.Number({ minimum: 0, maximum: 30, default: 0, description: "Seconds to hold the request until an event arrives" })),
};

export const PublicEventSchema = PUBLIC_EVENT_SCHEMA;

/** Events after `since`: from the stream's live tail in memory when it holds them, else from the store. */
async function tailOrStore(ctx: AppContext, stream: string, since: number, limit: number): Promise<RecordedEvent[]> {
  const cached = ctx.tails?.read(stream, BigInt(since), limit);
  if (cached) return cached;
  const raw = await eventsAfter(ctx.store, stream, since, limit);
  // A read that reached the stream's end (fewer than asked) is its tail: keep it for the next polls.
  if (raw.length > 0 && raw.length < limit) ctx.tails?.warm(stream, raw);
  return raw;
}

export async function pollStream(
  ctx: AppContext,
  stream: string,
  query: { since?: number; limit?: number; wait?: number },
  /** The request, for its abort signal: only read when the poll may wait (creating it is not free). */
  request: Request,
): Promise<{ events: PublicEvent[]; raw: RecordedEvent[]; cursor: number }> {
  const since = query.since ?? 0;
  const limit = query.limit ?? 200;
  const waitMs = Math.round((query.wait ?? 0) * 1000);
  const waiter = waitMs > 0 ? ctx.live.waiter(stream, waitMs, request.signal) : undefined;
  let raw = await tailOrStore(ctx, stream, since, limit);
  if (raw.length === 0 && waiter) {
    await waiter.promise;
    raw = await tailOrStore(ctx, stream, since, limit);
  }
  waiter?.cancel();
  const events = raw.map(toPublicEvent);
  return { events, raw, cursor: events.length ? events[events.length - 1]!.id : since };
}
