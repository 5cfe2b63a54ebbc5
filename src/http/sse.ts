/**
 * Server-Sent Events over a stream: each event is sent with `id:` equal to its cursor id, so a client
 * reconnecting with `Last-Event-ID` (or `?since=`) resumes with no gap and no duplicate. Comments keep
 * idle connections alive; a job stream closes after its terminal event.
 */
import type { AppContext } from "../app/context.ts";
import { eventsAfter, shownAt, TERMINAL_EVENTS, toPublicEvent, type Verbosity } from "./eventView.ts";

export interface SseOptions {
  since: number;
  verbosity: Verbosity;
  /** Close after a terminal job event. */
  closeOnTerminal: boolean;
  heartbeatMs?: number;
  signal?: AbortSignal;
}

const encoder = new TextEncoder();

export function sseResponse(ctx: AppContext, stream: string, options: SseOptions): Response {
  let closed = false;
  let heartbeat: ReturnType<typeof setInterval> | undefined;
  const abort = new AbortController();
  const body = new ReadableStream<Uint8Array>({
    async start(controller) {
      const send = (text: string) => {
        if (!closed) controller.enqueue(encoder.encode(text));
      };
      const close = () => {
        if (closed) return;
        closed = true;
        clearInterval(heartbeat);
        abort.abort();
        try {
          controller.close();
        } catch {
          /* already closed by the client */
        }
      };
      options.signal?.addEventListener("abort", close, { once: true });
      heartbeat = setInterval(() => send(": keep-alive\n\n"), options.heartbeatMs ?? 15_000);
      send("retry: 1000\n\n");
      let cursor = options.since;
      try {
        while (!closed) {
          const wake = ctx.live.waiter(stream, options.heartbeatMs ?? 15_000, abort.signal);
          const events = await eventsAfter(ctx.store, stream, cursor, 500);
          if (events.length === 0) {
            await wake.promise;
            continue;
          }
          wake.cancel();
          for (const e of events) {
            const view = toPublicEvent(e);
            cursor = view.id;
            if (shownAt(options.verbosity, e.type)) send(`id: ${view.id}\nevent: ${view.type}\ndata: ${JSON.stringify(view)}\n\n`);
            if (options.closeOnTerminal && TERMINAL_EVENTS.has(e.type)) {
              send("event: done\ndata: [DONE]\n\n");
              close();
              return;
            }
          }
        }
      } catch (err) {
        ctx.logger.warn("sse stream failed", { stream, error: err as Error });
        send(`event: error\ndata: ${JSON.stringify({ error: { code: "stream_failed", message: "The event stream failed; reconnect with Last-Event-ID" } })}\n\n`);
        close();
      }
    },
    cancel() {
      closed = true;
      clearInterval(heartbeat);
      abort.abort();
    },
  });
  return new Response(body, {
    headers: {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache, no-transform",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    },
  });
}

/** The resume point: `Last-Event-ID` wins over `?since=`; both are cursor ids (0 = from the start). */
export function resumeFrom(headers: Headers, since: number | undefined): number {
  const last = headers.get("last-event-id");
  if (last !== null && /^\d+$/.test(last.trim())) return Number(last.trim());
  return since ?? 0;
}
