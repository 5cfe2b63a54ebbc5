/**
 * Cursor polling over a stream, read from the stream itself (never a read model): events with id >
 * `since`, up to `limit`; with `wait`, the request is held until the next event arrives (or `wait`
 * seconds pass). The waiter is registered before the stream is read, so an event appended in between
 * still wakes it.
 */
import { t, type TSchema } from "elysia";
import type { AppContext } from "../../../app/context.ts";
import { eventsAfter, PUBLIC_EVENT_SCHEMA, publicEventJson } from "../../eventView.ts";
import type { RecordedEvent } from "../../../eventstore/port.ts";
import { readQuery, scalarOf } from "../../requestGuard.ts";

export const CursorQuery = {
  since: t.Optional(t.Integer({ minimum: 0, default: 0, description: "Return events with id > since (0 = from the start)" })),
  limit: t.Optional(t.Integer({ minimum: 1, maximum: 1000, default: 200 })),
  wait: t.Optional(t.Number({ minimum: 0, maximum: 30, default: 0, description: "Seconds to hold the request until an event arrives" })),
};

export const PublicEventSchema = PUBLIC_EVENT_SCHEMA;

/**
 * The cursor query, read straight from the URL with the same strict rules as every query (see
 * readQuery). Polls are the hottest routes, and Elysia decodes a numeric query through TypeBox's
 * generic transform path (twice, in this version): a poll reads its three numbers itself, and the
 * route documents them with `CURSOR_QUERY_PARAMETERS` instead of declaring a schema for Elysia to run.
 */
export function cursorQuery(url: string): { since: number; limit: number; wait: number } {
  const at = url.indexOf("?");
  const values = at < 0 ? {} : readQuery(url.slice(at + 1), CursorQuery as Record<string, TSchema>, { refuseUnknown: true });
  return { since: (values.since as number | undefined) ?? 0, limit: (values.limit as number | undefined) ?? 200, wait: (values.wait as number | undefined) ?? 0 };
}

/** The cursor query as OpenAPI parameters, for the routes that read it with `cursorQuery`. */
export const CURSOR_QUERY_PARAMETERS = Object.entries(CursorQuery).map(([name, declared]) => {
  const schema = scalarOf(declared);
  return {
    name, in: "query" as const, required: false, description: (declared.description ?? schema.description) as string | undefined,
    schema: { type: schema.type as "integer" | "number", minimum: schema.minimum as number, maximum: schema.maximum as number, default: schema.default as number },
  };
});

export async function pollStream(
  ctx: AppContext,
  stream: string,
  query: { since: number; limit: number; wait: number },
  /** The request, for its abort signal: only read when the poll may wait (creating it is not free). */
  request: Request,
): Promise<{ raw: RecordedEvent[]; cursor: number }> {
  const { since, limit } = query;
  const waitMs = Math.round(query.wait * 1000);
  // A shutting-down process answers held polls at once: the client polls again, reaching another process.
  const waiter = waitMs > 0 ? ctx.live.waiter(stream, waitMs, ctx.closing ? AbortSignal.any([request.signal, ctx.closing]) : request.signal) : undefined;
  let raw = await eventsAfter(ctx.store, stream, since, limit, ctx.tails);
  if (raw.length === 0 && waiter) {
    ctx.metrics?.pollWaiting();
    try {
      await waiter.promise;
    } finally {
      ctx.metrics?.pollDone();
    }
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
