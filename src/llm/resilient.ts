/**
 * Wraps a provider with what every real one needs: bounded retries with exponential backoff and
 * jitter (honouring retry-after) for retryable failures that happen before anything was streamed —
 * after the first chunk a retry would repeat output the client has seen — and a stall timeout, so a
 * model that stops sending mid-stream fails the step instead of hanging the job.
 */
import { LlmError, type LlmChunk, type LlmProvider, type LlmRequest } from "./provider.ts";

export interface ResilienceOptions {
  maxAttempts?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Longest silence allowed between chunks (and before the first). */
  stallTimeoutMs?: number;
  random?: () => number;
}

export class ResilientProvider implements LlmProvider {
  readonly name: string;
  readonly defaultModel: string;

  constructor(private readonly inner: LlmProvider, private readonly options: ResilienceOptions = {}) {
    this.name = inner.name;
    this.defaultModel = inner.defaultModel;
  }

  async *stream(request: LlmRequest): AsyncIterable<LlmChunk> {
    const maxAttempts = this.options.maxAttempts ?? 4;
    for (let attempt = 1; ; attempt++) {
      let yielded = false;
      try {
        for await (const chunk of this.withStallTimeout(request)) {
          yielded = true;
          yield chunk;
        }
        return;
      } catch (err) {
        const e = err instanceof LlmError ? err : new LlmError("provider_error", "The model provider failed", false);
        if (request.signal.aborted) throw new LlmError("aborted", "The request was aborted", false);
        if (!e.retryable || yielded || attempt >= maxAttempts) throw e;
        await sleep(this.delay(attempt, e.retryAfterMs), request.signal);
      }
    }
  }

  private delay(attempt: number, retryAfterMs: number | undefined): number {
    const max = this.options.maxDelayMs ?? 20_000;
    if (retryAfterMs !== undefined) return Math.min(retryAfterMs, max);
    const base = (this.options.baseDelayMs ?? 500) * 2 ** (attempt - 1);
    return Math.min(max, base / 2 + (this.options.random ?? Math.random)() * (base / 2));
  }

  /** Runs one attempt with its own abort controller, aborted on the caller's signal or a stall. */
  private async *withStallTimeout(request: LlmRequest): AsyncIterable<LlmChunk> {
    const stallMs = this.options.stallTimeoutMs ?? 60_000;
    const controller = new AbortController();
    const onAbort = () => controller.abort();
    request.signal.addEventListener("abort", onAbort, { once: true });
    const iterator = this.inner.stream({ ...request, signal: controller.signal })[Symbol.asyncIterator]();
    try {
      for (;;) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const stalled = new Promise<"stalled">((resolve) => { timer = setTimeout(() => resolve("stalled"), stallMs); });
        const next = await Promise.race([iterator.next(), stalled]);
        clearTimeout(timer);
        if (next === "stalled") {
          controller.abort();
          throw new LlmError("timeout", `The model sent nothing for ${stallMs} ms`, true);
        }
        if (next.done) return;
        yield next.value;
      }
    } finally {
      request.signal.removeEventListener("abort", onAbort);
      void iterator.return?.()?.catch?.(() => {});
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new LlmError("aborted", "The request was aborted", false));
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(new LlmError("aborted", "The request was aborted", false));
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** Reads a retry-after delay from response headers (`retry-after-ms`, or `retry-after` in seconds or as a date). */
export function retryAfterMs(headers: Headers | undefined): number | undefined {
  if (!headers) return undefined;
  const ms = headers.get("retry-after-ms");
  if (ms && Number.isFinite(Number(ms))) return Number(ms);
  const value = headers.get("retry-after");
  if (!value) return undefined;
  if (/^\d+(\.\d+)?$/.test(value.trim())) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}
