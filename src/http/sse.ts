/**
 * Server-Sent Events over a stream: each event is sent with `id:` equal to its cursor id, so a client
 * reconnecting with `Last-Event-ID` (or `?since=`) resumes with no gap and no duplicate. Comments keep
 * idle connections alive; a job stream closes after its terminal event (a session stream after the
 * session is deleted), and at once when resumed at
 * or past it (EventSource reconnects exactly so after the server closes).
 *
 * A process that shuts down ends its streams at once with `event: reconnect` (not `done`): the client
 * reconnects with its last id, reaching another process, rather than holding the shutdown open. Its
 * data names the GET URL to resume at, for streams opened by a POST (which EventSource cannot repeat).
 *
 * A slow client cannot make the server buffer without bound: at most `bufferBytes` wait for it. When
 * that is full the stream waits for the client to read; one that reads nothing for `stallMs` is cut
 * off, and reconnects from its last id losing nothing.
 */
import type { AppContext } from "../app/context.ts";
import { ValidationError } from "../core/errors.ts";
import { StreamDeletedError, StreamNotFoundError } from "../eventstore/errors.ts";
import { eventsAfter, PUBLIC_TYPES, publicEventJson, shownAt, TERMINAL_EVENTS, type Verbosity } from "./eventView.ts";

export interface SseOptions {
  since: number;
  verbosity: Verbosity;
  /** Event types after which the stream has nothing more to say: send them, then `done`, and close. */
  closeAfter: ReadonlySet<string>;
  /**
   * Runs before `done` is sent: what a client reads after the stream ends must be there to read. When
   * it answers false the stream closes without `done`, and the client's reconnect asks again.
   */
  beforeDone?: () => Promise<boolean>;
  /** Whether the client's credential still works: checked on every wake and heartbeat; false ends the stream. */
  authorized?: () => boolean;
  heartbeatMs?: number;
  signal?: AbortSignal;
  /**
   * Where a client resumes this stream, named in the `reconnect` event a shutdown ends it with: the GET
   * stream's path (a POST's stream can only be resumed there) and the ids of what it follows.
   */
  resume: { path: string; ids: Record<string, string> };
}

/**
 * The `reconnect` event's data: the ids, the last event id, and the GET URL (relative to the API's
 * root) that resumes the stream just after it, at the same verbosity.
 */
export function reconnectData(resume: SseOptions["resume"], lastEventId: number, verbosity: Verbosity): Record<string, unknown> {
  const query = new URLSearchParams({ since: String(lastEventId), verbosity });
  return { reason: "server_shutdown", ...resume.ids, last_event_id: lastEventId, url: `${resume.path}?${query}` };
}

export interface SseLimits {
  /** Bytes that may wait for a slow client. */
  bufferBytes: number;
  /** How long a client may read nothing while its buffer is full before it is cut off. */
  stallMs: number;
}

/** A job's stream ends with its terminal event; a session's with its deletion. */
export const JOB_STREAM_ENDS: ReadonlySet<string> = TERMINAL_EVENTS;
export const SESSION_STREAM_ENDS: ReadonlySet<string> = new Set(["SessionDeleted"]);

export const DEFAULT_SSE_LIMITS: SseLimits = { bufferBytes: 1024 * 1024, stallMs: 30_000 };

const encoder = new TextEncoder();

/** A client that fell behind by more than the buffer and did not catch up in time. */
class SlowClient extends Error {}

export function sseResponse(ctx: AppContext, stream: string, options: SseOptions, limits: SseLimits = ctx.sse ?? DEFAULT_SSE_LIMITS): Response {
  let closed = false;
  let heartbeat: ReturnType<typeof setInterval> | undefined;
  let pulled: (() => void) | undefined;
  // One listener for the connection's life (not one per wait): an append marks the stream changed and
  // wakes the loop. Fanning an event out to many clients then costs each a flag and a tail read.
  let changed = true;
  let wake: (() => void) | undefined;
  const unlisten = ctx.live.listen(stream, () => {
    changed = true;
    wake?.();
  });
  // Counted open from here until the first stop, whichever path stops it.
  let counted = ctx.metrics !== undefined;
  ctx.metrics?.sseOpened();
  let onClosing: (() => void) | undefined;
  const stop = () => {
    closed = true;
    if (onClosing) ctx.closing?.removeEventListener("abort", onClosing);
    if (counted) {
      counted = false;
      ctx.metrics!.sseClosed();
    }
    clearInterval(heartbeat);
    unlisten();
    wake?.();
    pulled?.();
  };
  const body = new ReadableStream<Uint8Array>({
    async start(controller) {
      const send = (text: string) => {
        if (!closed) controller.enqueue(encoder.encode(text));
      };
      /** Waits while more than the buffer waits for the client; throws SlowClient if it stops reading. */
      const backpressure = async () => {
        const deadline = Date.now() + limits.stallMs;
        while (!closed && (controller.desiredSize ?? 1) <= 0) {
          const left = deadline - Date.now();
          if (left <= 0) throw new SlowClient();
          await Promise.race([new Promise<void>((resolve) => (pulled = resolve)), Bun.sleep(Math.min(left, 1000))]);
        }
      };
      const sendDone = async () => {
        const settled = options.beforeDone
          ? await options.beforeDone().catch((err) => {
            ctx.logger.warn("could not settle before done", { stream, error: err as Error });
            return false;
          })
          : true;
        if (settled) send("event: done\ndata: [DONE]\n\n");
      };
      const close = () => {
        if (closed) return;
        stop();
        try {
          controller.close();
        } catch {
          /* already closed by the client */
        }
      };
      let cursor = options.since;
      options.signal?.addEventListener("abort", close, { once: true });
      if (options.signal?.aborted) return close();
      onClosing = () => {
        send(`event: reconnect\ndata: ${JSON.stringify(reconnectData(options.resume, cursor, options.verbosity))}\n\n`);
        close();
      };
      if (ctx.closing?.aborted) return onClosing();
      ctx.closing?.addEventListener("abort", onClosing, { once: true });
      heartbeat = setInterval(() => {
        send(": keep-alive\n\n");
        // Read again now and then even without a wake: a feed that resubscribed cannot strand a client.
        changed = true;
        wake?.();
      }, options.heartbeatMs ?? 15_000);
      send("retry: 1000\n\n");
      try {
        while (!closed) {
          changed = false;
          if (options.authorized && !options.authorized()) {
            // Revoked, expired or suspended since the stream began: it sends nothing more.
            send(`event: error\ndata: ${JSON.stringify({ error: { code: "credentials_revoked", message: "The credential this stream was opened with no longer works" } })}\n\n`);
            close();
            return;
          }
          const events = await eventsAfter(ctx.store, stream, cursor, 500, ctx.tails).catch((err) => {
            if (err instanceof StreamDeletedError) return null;
            throw err;
          });
          if (events === null) {
            // Erased (its user's data removed) or tombstoned: nothing more will come, and nothing is left
            // to settle. The stream ends as a finished one does.
            send("event: done\ndata: [DONE]\n\n");
            close();
            return;
          }
          if (events.length === 0) {
            if (options.closeAfter.size > 0 && (await endedBy(ctx, stream, cursor, options.closeAfter))) {
              await sendDone();
              close();
              return;
            }
            if (!changed && !closed) await new Promise<void>((resolve) => (wake = resolve));
            wake = undefined;
            continue;
          }
          for (const e of events) {
            cursor = Number(e.revision) + 1;
            if (shownAt(options.verbosity, e.type)) {
              send(`id: ${cursor}\nevent: ${PUBLIC_TYPES[e.type] ?? e.type}\ndata: ${publicEventJson(e)}\n\n`);
              await backpressure();
            }
            if (options.closeAfter.has(e.type)) {
              await sendDone();
              close();
              return;
            }
          }
        }
      } catch (err) {
        if (err instanceof SlowClient) {
          // Drop what waits for it and close the connection: the client resumes from its last id.
          ctx.logger.info("sse client fell behind; closing its stream", { stream, buffer_bytes: limits.bufferBytes });
          stop();
          controller.error(err);
          return;
        }
        ctx.logger.warn("sse stream failed", { stream, error: err as Error });
        send(`event: error\ndata: ${JSON.stringify({ error: { code: "stream_failed", message: "The event stream failed; reconnect with Last-Event-ID" } })}\n\n`);
        close();
      }
    },
    pull() {
      pulled?.();
    },
    cancel() {
      stop();
    },
  }, new ByteLengthQueuingStrategy({ highWaterMark: limits.bufferBytes }));
  return new Response(body, {
    headers: {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache, no-transform",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    },
  });
}

/** True when the stream's last event is terminal and the client's cursor is at or past it. */
async function endedBy(ctx: AppContext, stream: string, cursor: number, closeAfter: ReadonlySet<string>): Promise<boolean> {
  try {
    for await (const last of ctx.store.readStream(stream, { direction: "backwards", maxCount: 1 })) {
      return closeAfter.has(last.type) && cursor >= Number(last.revision) + 1;
    }
  } catch (err) {
    if (!(err instanceof StreamNotFoundError)) throw err;
  }
  return false;
}

/** The resume point: `Last-Event-ID` wins over `?since=`; both are cursor ids (0 = from the start). */
export function resumeFrom(headers: Headers, since: number | undefined): number {
  const last = headers.get("last-event-id")?.trim();
  if (!last) return since ?? 0;
  // Only ids this server sent: anything else would replay from the start or fail on every reconnect.
  if (!/^(0|[1-9][0-9]{0,14})$/.test(last)) {
    throw new ValidationError(`Invalid Last-Event-ID: expected an event id this stream sent, got ${JSON.stringify(last.slice(0, 40))}`, { param: "Last-Event-ID", location: "header" });
  }
  return Number(last);
}
