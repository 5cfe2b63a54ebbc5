/**
 * An SSE answer whose events are a compat surface's translation of one of our streams. It reads the
 * stream with the same cursor poll as `/v1` (src/http/routes/v1/cursorEvents.ts: the waiter is set
 * before the read, so nothing appended in between is missed), hands each event to the surface's
 * translator, and ends after a terminal event. A surface decides the framing of what it sends (an
 * `event:` line, an `id:`, a closing sentinel): this module knows none of those formats.
 */
import type { AppContext } from "../../app/context.ts";
import type { RecordedEvent } from "../../eventstore/port.ts";
import { pollStream } from "../../http/routes/v1/cursorEvents.ts";

export interface TranslatedStreamOptions {
  /** Cursor id to start after (0: from the start). */
  since: number;
  /** Event types after which the stream ends. */
  endsAfter: ReadonlySet<string>;
  /**
   * Also ends the stream after an event where the work pauses for the client (e.g. a plan waiting for
   * its approval): the frames it returns are sent last; null goes on.
   */
  pausesAt?: (event: RecordedEvent) => Promise<string | null>;
  /** The SSE frames for one event ("" for none). Called in stream order, once per event. */
  translate(event: RecordedEvent): string;
  /** Frames sent once the terminal event has been sent (e.g. a `[DONE]` sentinel); run after `beforeEnd`. */
  closing?: string;
  /** Runs before the stream ends after its last event (given): what a client reads next must be there to read. */
  beforeEnd?: (last: RecordedEvent) => Promise<unknown>;
  /** Whether the credential still works; false ends the stream. */
  authorized?: () => boolean;
  /** The stream ended at or before `since` (the caller read its last event): the answer closes at once. */
  endedBefore?: boolean;
  /** How long one poll holds, in seconds; an idle poll sends a comment to keep the connection open. */
  holdSeconds?: number;
}

export function translatedSse(ctx: AppContext, request: Request, stream: string, options: TranslatedStreamOptions): Response {
  const encoder = new TextEncoder();
  let cursor = options.since;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        // Each pull sends at least one frame (events or a keep-alive) so the consumer sets the pace.
        for (;;) {
          if (options.endedBefore) {
            controller.enqueue(encoder.encode(options.closing ?? ""));
            controller.close();
            return;
          }
          if (request.signal.aborted || ctx.closing?.aborted || (options.authorized && !options.authorized())) {
            controller.close();
            return;
          }
          const { raw, cursor: next } = await pollStream(ctx, stream, { since: cursor, limit: 200, wait: options.holdSeconds ?? 15 }, request);
          cursor = next;
          if (raw.length === 0) {
            controller.enqueue(encoder.encode(": keep-alive\n\n"));
            return;
          }
          let out = "";
          let ended: RecordedEvent | null = null;
          for (const e of raw) {
            out += options.translate(e);
            if (options.endsAfter.has(e.type)) {
              ended = e;
              break;
            }
            const pause = options.pausesAt ? await options.pausesAt(e) : null;
            if (pause !== null) {
              out += pause;
              ended = e;
              break;
            }
          }
          if (ended) {
            await options.beforeEnd?.(ended).catch(() => undefined);
            controller.enqueue(encoder.encode(out + (options.closing ?? "")));
            controller.close();
            return;
          }
          if (out) {
            controller.enqueue(encoder.encode(out));
            return;
          }
        }
      } catch (err) {
        ctx.logger.warn("compat stream failed", { stream, error: err as Error });
        controller.error(err);
      }
    },
  });
  return new Response(body, {
    headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache, no-transform", connection: "keep-alive", "x-accel-buffering": "no" },
  });
}
