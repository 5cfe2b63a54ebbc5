/**
 * Cursor polling over a stream, read from the stream itself (never a read model): events with id >
 * `since`, up to `limit`; with `wait`, the request is held until the next event arrives (or `wait`
 * seconds pass). The waiter is registered before the stream is read, so an event appended in between
 * still wakes it.
 */
import { t } from "elysia";
import type { AppContext } from "../../../app/context.ts";
import { eventsAfter, PUBLIC_EVENT_SCHEMA, publicEventJson } from "../../eventView.ts";
import type { RecordedEvent } from "../../../eventstore/port.ts";

export const CursorQuery = {
  since: t.Optional(t.Integer({ minimum: 0, default: 0, description: "Return events with id > since (0 = from the start)" })),
  limit: t.Optional(t.Integer({ minimum: 1, maximum: 1000, default: 200 })),
  wait: t.Optional(t.Number({ minimum: 0, maximum: 30, default: 0, description: "Seconds to hold the request until an event arrives" })),
};

export const PublicEventSchema = PUBLIC_EVENT_SCHEMA;

export async function pollStream(
  ctx: AppContext,
  stream: string,
  query: { since?: number; limit?: number; wait?: number },
  /** The request, for its abort signal: only read when the poll may wait (creating it is not free). */
  request: Request,
): Promise<{ raw: RecordedEvent[]; cursor: number }> {
  const since = query.since ?? 0;
  const limit = query.limit ?? 200;
  const waitMs = Math.round((query.wait ?? 0) * 1000);
  const waiter = waitMs > 0 ? ctx.live.waiter(stream, waitMs, request.signal) : undefined;
  let raw = await eventsAfter(ctx.store, stream, since, limit, ctx.tails);
  if (raw.length === 0 && waiter) {
    await waiter.promise;
    raw = await eventsAfter(ctx.store, stream, since, limit, ctx.tails);
  }
  waiter?.cancel();
  return { raw, cursor: raw.length ? Number(raw[raw.length - 1]!.revision) + 1 : since };
}

/**
 * A poll's JSON answer: `fields` with the events spliced in from their cached serialization, so a hot
 * tail polled by many clients is not serialized again for each (the document's schema is unchanged).
 * Returned as a string with the JSON content type set, which Elysia sends as is.
 */
export function pollResponse(set: { headers: Record<string, string | number> }, fields: Record<string, unknown>, raw: readonly RecordedEvent[]): string {
  let events = "[";
  for (let i = 0; i < raw.length; i++) events += (i ? "," : "") + publicEventJson(raw[i]!);
  const head = JSON.stringify(fields);
  set.headers["content-type"] = "application/json;charset=utf-8";
  return head.length > 2 ? `${head.slice(0, -1)},"events":${events}]}` : `{"events":${events}]}`;
}
