/**
 * Instrumenting decorators: the EventStore port and the LlmProvider port wrapped once each, so every
 * adapter and every provider is measured the same way without any of them knowing about metrics.
 */
import type { EventStore } from "../eventstore/port.ts";
import { WrongExpectedVersionError } from "../eventstore/errors.ts";
import { LlmError, type LlmProvider } from "../llm/provider.ts";
import type { Metrics } from "./registry.ts";

/**
 * The store with its appends timed and counted. Everything else passes straight through to the
 * adapter (bound to it, so adapters' private state keeps working), and the result still answers
 * `instanceof` for the adapter's class, which the composition root relies on.
 */
export function instrumentEventStore<S extends EventStore>(store: S, metrics: Metrics): S {
  const appendToStream: EventStore["appendToStream"] = async (stream, events, options) => {
    const started = performance.now();
    try {
      const result = await store.appendToStream(stream, events, options);
      metrics.append("ok", (performance.now() - started) / 1000, events.length);
      return result;
    } catch (err) {
      metrics.append(err instanceof WrongExpectedVersionError ? "conflict" : "error", (performance.now() - started) / 1000, 0);
      throw err;
    }
  };
  const bound = new Map<PropertyKey, unknown>();
  return new Proxy(store, {
    get(target, prop) {
      if (prop === "appendToStream") return appendToStream;
      const value = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      let fn = bound.get(prop);
      if (!fn) bound.set(prop, (fn = value.bind(target)));
      return fn;
    },
  });
}

/**
 * The provider with each call timed (from the request to the stream's end, retries included), its
 * usage chunks' tokens counted and its failures counted by code. A call the caller stops reading
 * (a cancel) counts as its outcome so far: ok unless it failed.
 */
export function instrumentProvider(provider: LlmProvider, metrics: Metrics | undefined): LlmProvider {
  if (!metrics) return provider;
  return {
    name: provider.name,
    defaultModel: provider.defaultModel,
    async *stream(request) {
      const started = performance.now();
      let error: string | null = null;
      try {
        for await (const chunk of provider.stream(request)) {
          if (chunk.type === "usage") metrics.llmUsage(provider.name, chunk);
          yield chunk;
        }
      } catch (err) {
        error = err instanceof LlmError ? err.code : "provider_error";
        throw err;
      } finally {
        metrics.llmCall(provider.name, error, (performance.now() - started) / 1000);
      }
    },
  };
}
