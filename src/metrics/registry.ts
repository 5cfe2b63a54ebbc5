/**
 * The process's Prometheus metrics (prom-client): one registry per running server, so two servers in
 * one process (tests) never mix their counts. Hot-path series are counters and histograms updated
 * where things happen, through label children cached on first use; everything that is a state of
 * the system (queue depth, projection lag, jobs by status) is read at scrape time instead.
 * Every name, label and meaning is listed in docs/operations.md ("Metrics").
 */
import type { Database } from "bun:sqlite";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { ProjectionRunner } from "../projections/runner.ts";

/** Seconds: from a fast cached poll to a slow upload or long model call. */
const HTTP_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const APPEND_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];
const LLM_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300];

type HistogramChild = { observe(value: number): void };

/** What the scrape-time collectors read: set once the runtime exists (a worker has no HTTP, a test may have no queue). */
export interface MetricSources {
  projections?: ProjectionRunner;
  /** The read-model database holding the jobs table. */
  db?: Database;
  /** Jobs waiting to be handed to a worker, and lease takeovers so far. */
  queue?: { depth(): number | Promise<number>; takeovers(): number };
}

export class Metrics {
  readonly registry = new Registry();
  private readonly sources: MetricSources = {};

  private readonly httpDuration = new Histogram({
    name: "agentry_http_request_duration_seconds",
    help: "HTTP requests by method, route pattern and status, and how long each took to answer (for a stream, until its headers)",
    labelNames: ["method", "route", "status"] as const,
    buckets: HTTP_BUCKETS,
    registers: [this.registry],
  });
  /** method → route → status → the histogram's child: no label object or key string per request. */
  private readonly httpChildren = new Map<string, Map<string, Map<number, HistogramChild>>>();

  private readonly appendDuration = new Histogram({
    name: "agentry_eventstore_append_duration_seconds",
    help: "Event-store appends by result (ok, conflict, error) and how long each took",
    labelNames: ["result"] as const,
    buckets: APPEND_BUCKETS,
    registers: [this.registry],
  });
  private readonly appendOk = this.appendDuration.labels("ok");
  private readonly appendConflict = this.appendDuration.labels("conflict");
  private readonly appendError = this.appendDuration.labels("error");
  private readonly eventsAppended = new Counter({
    name: "agentry_eventstore_appended_events_total",
    help: "Events written by successful appends",
    registers: [this.registry],
  });

  private readonly llmDuration = new Histogram({
    name: "agentry_llm_call_duration_seconds",
    help: "Model calls by provider and outcome (ok, error), from the request to the stream's end",
    labelNames: ["provider", "outcome"] as const,
    buckets: LLM_BUCKETS,
    registers: [this.registry],
  });
  private readonly llmTokens = new Counter({
    name: "agentry_llm_tokens_total",
    help: "Tokens reported by model calls, by provider and kind (prompt, completion, cached, reasoning)",
    labelNames: ["provider", "kind"] as const,
    registers: [this.registry],
  });
  private readonly llmErrors = new Counter({
    name: "agentry_llm_errors_total",
    help: "Failed model calls by provider and error code (rate_limited, provider_unavailable, timeout, …)",
    labelNames: ["provider", "code"] as const,
    registers: [this.registry],
  });

  private readonly sseOpen = new Gauge({
    name: "agentry_sse_connections_open",
    help: "SSE event streams open now",
    registers: [this.registry],
  });
  private readonly pollsOpen = new Gauge({
    name: "agentry_long_polls_open",
    help: "Cursor polls (?wait=) waiting for an event now",
    registers: [this.registry],
  });

  constructor(options: { defaultMetrics?: boolean } = {}) {
    const sources = this.sources;
    // Both lag series come from one status read per scrape.
    let lastStatus: { at: number; status: ReturnType<ProjectionRunner["status"]> } | undefined;
    const projectionStatus = async () => {
      if (!sources.projections) return [];
      if (!lastStatus || Date.now() - lastStatus.at > 250) {
        // A store that does not answer leaves the lag series out of this scrape rather than failing it.
        lastStatus = { at: Date.now(), status: sources.projections.status().catch(() => []) };
      }
      return lastStatus.status;
    };
    // Process CPU, memory, event-loop lag: prom-client's standard set, which works on Bun.
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
    new Gauge({
      name: "agentry_projection_lag_events",
      help: "Events in the store after a projection's checkpoint (counted up to 1000)",
      labelNames: ["projection"] as const,
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const p of await projectionStatus()) this.set({ projection: p.name }, p.lag_events);
      },
    });
    new Gauge({
      name: "agentry_projection_lag_seconds",
      help: "Age of the oldest event a projection has not yet applied (0 when caught up)",
      labelNames: ["projection"] as const,
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const p of await projectionStatus()) this.set({ projection: p.name }, p.lag_ms / 1000);
      },
    });
    new Gauge({
      name: "agentry_queue_depth",
      help: "Jobs queued and not yet handed to a worker",
      registers: [this.registry],
      async collect() {
        this.reset();
        // Redis not answering (or no consumer group yet) leaves the series out of this scrape.
        const depth = sources.queue ? await Promise.resolve(sources.queue.depth()).catch(() => null) : null;
        if (depth !== null) this.set(depth);
      },
    });
    new Counter({
      name: "agentry_queue_lease_takeovers_total",
      help: "Jobs this process took over from a worker that stopped renewing its lease",
      registers: [this.registry],
      collect() {
        if (!sources.queue) return;
        // The queue keeps the running count; the counter shows it.
        this.reset();
        this.inc(sources.queue.takeovers());
      },
    });
    new Gauge({
      name: "agentry_jobs",
      help: "Jobs by status, from this process's jobs read model",
      labelNames: ["status"] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        // A jobs read model waiting for its version rebuild has old tables: no figures rather than stale ones.
        if (!sources.db || sources.projections?.rebuildingAtStart.includes("jobs")) return;
        const rows = sources.db.query<{ status: string; n: number }, []>("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status").all();
        for (const row of rows) this.set({ status: row.status }, row.n);
      },
    });
  }

  /** Names what the scrape-time series read. */
  watch(sources: MetricSources): void {
    Object.assign(this.sources, sources);
  }

  /** The Prometheus text exposition of every series. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  httpRequest(method: string, route: string, status: number, seconds: number): void {
    let byRoute = this.httpChildren.get(method);
    if (!byRoute) this.httpChildren.set(method, (byRoute = new Map()));
    let byStatus = byRoute.get(route);
    if (!byStatus) byRoute.set(route, (byStatus = new Map()));
    let child = byStatus.get(status);
    if (!child) byStatus.set(status, (child = this.httpDuration.labels(method, route, String(status))));
    child.observe(seconds);
  }

  append(result: "ok" | "conflict" | "error", seconds: number, events: number): void {
    (result === "ok" ? this.appendOk : result === "conflict" ? this.appendConflict : this.appendError).observe(seconds);
    if (result === "ok") this.eventsAppended.inc(events);
  }

  llmCall(provider: string, error: string | null, seconds: number): void {
    this.llmDuration.labels(provider, error === null ? "ok" : "error").observe(seconds);
    if (error !== null) this.llmErrors.labels(provider, error).inc();
  }

  llmUsage(provider: string, usage: { prompt_tokens: number; completion_tokens: number; cached_tokens?: number; reasoning_tokens?: number }): void {
    if (usage.prompt_tokens) this.llmTokens.labels(provider, "prompt").inc(usage.prompt_tokens);
    if (usage.completion_tokens) this.llmTokens.labels(provider, "completion").inc(usage.completion_tokens);
    if (usage.cached_tokens) this.llmTokens.labels(provider, "cached").inc(usage.cached_tokens);
    if (usage.reasoning_tokens) this.llmTokens.labels(provider, "reasoning").inc(usage.reasoning_tokens);
  }

  sseOpened(): void {
    this.sseOpen.inc();
  }

  sseClosed(): void {
    this.sseOpen.dec();
  }

  pollWaiting(): void {
    this.pollsOpen.inc();
  }

  pollDone(): void {
    this.pollsOpen.dec();
  }
}
