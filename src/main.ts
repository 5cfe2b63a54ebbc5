/**
 * Composition root: configuration → event store → read models and projection runner → runtime
 * (queue, worker, turn runner, live events) → HTTP. Also owns the process lifecycle: start-up
 * reconciliation and graceful shutdown on SIGTERM/SIGINT.
 */
import { join } from "node:path";
import { projections } from "../projections/index.ts";
import { jobsProjection } from "../projections/jobs/index.ts";
import { memoryProjection } from "../projections/memory/index.ts";
import { sessionsProjection } from "../projections/sessions/index.ts";
import { filesProjection } from "../projections/files/index.ts";
import pkg from "../package.json" with { type: "json" };
import type { AppContext } from "./app/context.ts";
import { createRepositories } from "./app/context.ts";
import { ensureDefaultAgent } from "./app/defaultAgent.ts";
import { LiveEvents } from "./app/liveEvents.ts";
import { StreamTails } from "./app/streamTails.ts";
import { ConfigError, loadConfig, type Config } from "./config.ts";
import { createLogger, type Logger } from "./core/logger.ts";
import { DEFAULT_APP_ID } from "./domain/streams.ts";
import { createEventStore } from "./eventstore/factory.ts";
import { createApp, type App, type AppDeps } from "./http/app.ts";
import { directoryAuthenticator, resolveApiKey } from "./http/auth.ts";
import { TenantDirectory } from "./app/tenantDirectory.ts";
import { ensureDefaultApp } from "./app/defaultApp.ts";
import { createManagementAuth, type ManagementPrincipal } from "./auth/management.ts";
import { EndUserTokens } from "./auth/endUserTokens.ts";
import { KeyUsage } from "./app/keyUsage.ts";
import { appRoutes } from "./http/routes/v1/apps.ts";
import { appUserRoutes } from "./http/routes/v1/users.ts";
import { auditRoutes } from "./http/routes/v1/audit.ts";
import { adminRoutes } from "./http/routes/v1/admin.ts";
import { auditVerifyRoutes } from "./http/routes/v1/auditVerify.ts";
import { adminRuntimeRoutes } from "./http/routes/v1/adminRuntime.ts";
import { auditSessionRoutes } from "./http/routes/v1/auditSessions.ts";
import { consoleBodyRoutes, consoleRoutes } from "./console/index.ts";
import { InProcessApi } from "./console/inProcessApi.ts";
import { ConsoleLogins } from "./console/logins.ts";
import { appBillingRoutes } from "./http/routes/v1/appBilling.ts";
import { appRateLimitRoutes } from "./http/routes/v1/appRateLimits.ts";
import { v1Routes } from "./http/routes/v1/index.ts";
import { openaiCompatRoutes } from "./compat/openai/routes.ts";
import { openaiErrorDialect } from "./compat/openai/errors.ts";
import { loadSkillsFolder } from "./app/skills.ts";
import { InProcessJobQueue, type JobQueue } from "./jobs/queue.ts";
import { RedisJobQueue } from "./jobs/redisQueue.ts";
import { TurnCoordinator } from "./app/turnCoordinator.ts";
import { MemoryService } from "./app/memory.ts";
import { reconcile } from "./jobs/reconciler.ts";
import { TurnRunner } from "./jobs/turnRunner.ts";
import { Worker } from "./jobs/worker.ts";
import { createProviders } from "./llm/factory.ts";
import { ConnectionProviders } from "./llm/connections.ts";
import { acquireProcessLock, claimDefaultReadModelFile } from "./projections/processLock.ts";
import { openReadModelDb } from "./projections/readModelDb.ts";
import { linkThroughRedis } from "./eventstore/appendSignal.ts";
import { SqliteEventStore } from "./eventstore/adapters/sqlite.ts";
import { ProjectionRunner } from "./projections/runner.ts";
import { createSecretBox } from "./secrets/secretBox.ts";
import { createBlobStore } from "./blobs/factory.ts";
import { FileUrls } from "./app/fileUrls.ts";
import { recoverParked } from "./app/files.ts";
import { fileBodyRoutes } from "./http/routes/v1/files/index.ts";
import { signedFileRoutes } from "./http/routes/signedFiles.ts";
import { InProcessRateLimiter, type RateLimiter } from "./ratelimit/limiter.ts";
import { RedisRateLimiter } from "./ratelimit/redisLimiter.ts";
import { rateLimitCheck } from "./http/rateLimit.ts";
import { Metrics } from "./metrics/registry.ts";
import { instrumentEventStore } from "./metrics/instrument.ts";
import { metricsListener } from "./http/routes/metrics.ts";
import { magusRoutes } from "./compat/magus/index.ts";
import { magusErrorDialect } from "./compat/magus/wire.ts";
import { mosooRoutes } from "./compat/mosoo/index.ts";
import { mosooErrorDialect } from "./compat/mosoo/wire.ts";
import { muxiRoutes } from "./compat/muxi/index.ts";
import { muxiErrorDialect } from "./compat/muxi/wire.ts";
import { mushuRoutes } from "./compat/mushu/index.ts";
import { MUSHU_PUBLIC_PATHS, mushuErrorDialect } from "./compat/mushu/wire.ts";
import { OPENAI_CHATGPT_CLIENT } from "./compat/mushu/chatgptConnect.ts";
import { MUSHU_MANAGEMENT, mushuManagementRoutes } from "./compat/mushu/management.ts";
import { muapiRoutes } from "./compat/muapi/index.ts";
import { MUAPI_UPLOAD_PATH, muapiErrorDialect } from "./compat/muapi/wire.ts";
import { muapiBodyRoutes } from "./compat/muapi/uploads.ts";

/**
 * The read models a worker-only process keeps: what the reconciler queries, the memory agents recall,
 * and the files a deleted session's removal lists.
 */
const WORKER_READ_MODELS = new Set([jobsProjection.name, sessionsProjection.name, memoryProjection.name, filesProjection.name]);

export interface RunningServer {
  url: string;
  port: number;
  apiKey: string;
  ctx: AppContext;
  /** The HTTP application (none for a worker): `app.handle(request)` answers in process, for benchmarks. */
  app?: App;
  /** The METRICS_PORT listener's port, when there is one. */
  metricsPort?: number;
  /** Stops accepting, lets in-flight requests finish (bounded), stops workers and projections, closes stores. */
  shutdown(reason?: string): Promise<void>;
}

export async function startServer(
  config: Config,
  logger: Logger = createLogger(config.logLevel),
  /** More routes; and, for benchmarks comparing schemes, another data-plane authenticator. */
  extra: Pick<AppDeps, "plugins" | "authenticate"> = {},
): Promise<RunningServer> {
  // Each server its own registry (src/metrics/registry.ts); appends are measured on the way in.
  const metrics = new Metrics();
  const store = instrumentEventStore(createEventStore(config), metrics);
  await store.ping();
  const persistent = config.eventStore !== "memory";
  const { path: readModelPath, release: releaseLock } = !persistent
    ? { path: ":memory:", release: () => {} }
    : config.readModelFile
      ? { path: config.readModelFile, release: acquireProcessLock(`${config.readModelFile}.pid`, config.readModelFile) }
      : claimDefaultReadModelFile(config.dataDir);
  const db = openReadModelDb(readModelPath);
  // A worker serves no reads: it keeps only the read models its reconciler queries (jobs, sessions),
  // rather than projecting every event into all of them in every process.
  const served = config.role === "worker" ? projections.filter((p) => WORKER_READ_MODELS.has(p.name)) : projections;
  const projectionRunner = new ProjectionRunner(store, db, served, { logger: logger.child({ component: "projections" }), lagCountLimit: 1000 });
  projectionRunner.start();
  const tails = new StreamTails({ maxStreams: config.tailCache.streams, maxEvents: config.tailCache.eventsPerStream, maxBytes: config.tailCache.maxBytes });
  const live = new LiveEvents(store, logger.child({ component: "live" }), tails);
  await live.start();

  // Processes sharing a SQLite file wake each other through Redis rather than waiting for their poll.
  const appendSignal = config.redisUrl && store instanceof SqliteEventStore
    ? linkThroughRedis(store, config.redisUrl, logger.child({ component: "append-signal" }))
    : undefined;
  const queue: JobQueue = config.redisUrl
    ? new RedisJobQueue({ url: config.redisUrl, leaseMs: config.jobLeaseMs, maxDeliveries: config.jobMaxDeliveries, logger: logger.child({ component: "queue" }) })
    : new InProcessJobQueue();
  const { providers, defaultProvider } = createProviders(config);
  const secrets = createSecretBox({ store, config, logger });
  // File contents (local disk under DATA_DIR, or S3), and the key their signed URLs are signed with.
  const files = { blobs: createBlobStore(config), settings: config.files, urls: await FileUrls.open(store, secrets, logger.child({ component: "files" })) };
  const ctx: AppContext = {
    store, repos: createRepositories(store, tails), tails, db, projections: projectionRunner, queue, live, providers,
    defaultProvider, logger, appId: DEFAULT_APP_ID, readYourWritesTimeoutMs: config.readYourWritesTimeoutMs,
    idempotencyClaimTtlMs: config.idempotencyClaimTtlMs, sse: config.sse,
    outbound: { privateAllowlist: config.toolPrivateAllowlist },
    running: { isRunning: () => false, abort: () => {} }, secrets, prices: config.prices, metrics,
    connections: new ConnectionProviders(secrets, { stallTimeoutMs: config.llm.stallTimeoutMs, maxAttempts: config.llm.maxAttempts },
      { provider: config.llm.provider, baseUrl: config.llm.baseUrl, model: config.llm.model }),
  } as Omit<AppContext, "turns"> as AppContext;
  ctx.turns = new TurnCoordinator(ctx, logger.child({ component: "turns" }));
  // Aborted when shutdown begins: held polls answer and SSE streams end, so clients resume elsewhere.
  const closing = new AbortController();
  ctx.closing = closing.signal;
  // Memory search, and the embedder that fills the vectors hybrid ranking compares (src/app/memory.ts).
  ctx.memory = new MemoryService({ db, secrets, logger: logger.child({ component: "memory" }), connectionsOf: async (app) => (await ctx.repos.apps.peek(app)).state.connections });
  ctx.memory.start();
  ctx.files = files;
  // A collection cut short by a stop leaves parked copies: put back those a file may need, drop the rest.
  await recoverParked(ctx).catch((err) => logger.warn("could not recover parked blobs; the next start tries again", { error: err as Error }));
  /** Jobs queued and not yet handed to a worker: for the metrics and the operators' /v1/admin/queue. */
  const queueDepth = () => (queue instanceof InProcessJobQueue ? queue.depth : queue instanceof RedisJobQueue ? queue.waitingCount() : 0);
  metrics.watch({
    projections: projectionRunner, db,
    queue: {
      depth: queueDepth,
      takeovers: () => (queue instanceof RedisJobQueue ? queue.leaseTakeovers : 0),
    },
  });
  // Every process can be scraped on a port of its own; a worker-only process only so.
  const metricsServer = config.metrics.port !== undefined
    ? metricsListener(metrics, { port: config.metrics.port, hostname: config.metrics.host, token: config.metrics.token })
    : undefined;
  let reconcileTimer: ReturnType<typeof setInterval> | undefined;
  let shuttingDown = false;
  const worker = new Worker(queue, new TurnRunner(ctx, `runner-${process.pid}`, { context: config.context }), logger.child({ component: "worker" }), config.workerConcurrency);
  ctx.running = worker;

  const created = await ensureDefaultAgent(ctx);
  if (created !== null) await projectionRunner.waitForPosition(created, 30_000);
  await projectionRunner.waitUntilCaughtUp(10 * 60_000);
  if (config.role !== "api") {
    worker.start(async (jobId, deliveries) => {
      const meta = { appId: ctx.appId, correlationId: "queue", actor: "system:queue" };
      await ctx.repos.jobs.handle(jobId, { type: "FailJob", error: { code: "worker_lost", message: `The job's worker stopped ${deliveries} times; it was given up` } }, meta).catch(() => {});
    });
    // Where jobs run, job ends and session deletions are followed up (see TurnCoordinator).
    await ctx.turns.start();
    // A started job is dispatched again only when no live worker holds its lease (see reconcile).
    // Reconciling reads the jobs and sessions read models: one rebuilt for a new version is read once
    // it has swapped in, not from its old tables (start does not wait for that).
    if (projectionRunner.rebuildingAtStart.length === 0) await reconcile(ctx);
    else {
      logger.info("read models are being rebuilt for this version; the data plane answers 503 until they are ready", { projections: projectionRunner.rebuildingAtStart });
      void projectionRunner.whenReady().then(() => (shuttingDown ? undefined : reconcile(ctx)))
        .catch((err) => logger.warn("reconciliation after the version rebuild failed", { error: err as Error }));
    }
    if (queue.kind !== "in-process") {
      // Redis can lose entries (a restart without persistence); the event store cannot.
      reconcileTimer = setInterval(() => {
        // It reads the jobs, sessions and files read models: not from old tables waiting for a rebuild.
        if (projectionRunner.rebuildingAtStart.length) return;
        void reconcile(ctx, { minAgeMs: config.reconcileIntervalMs / 2 })
          .catch((err) => logger.warn("periodic reconciliation failed", { error: err as Error }));
      }, config.reconcileIntervalMs);
    }
  }

  const { key: apiKey, origin } = resolveApiKey(config.apiKey, persistent ? config.dataDir : null);
  // A process that serves the API checks keys against the tenant directory (the app streams, in
  // memory) and names the default app's key; a worker serves no requests and may have no key at all.
  const directory = new TenantDirectory(store, logger.child({ component: "tenants" }));
  if (config.role !== "worker") {
    await directory.start();
    const written = await ensureDefaultApp(ctx.repos, apiKey, { appId: ctx.appId, correlationId: "startup", actor: "system:startup" });
    if (written !== null) await directory.waitFor(written);
  }

  /**
   * Stops taking HTTP traffic first (when there is any), then the runtime, innermost last. The worker
   * hands back what it cannot finish within SHUTDOWN_TIMEOUT_MS (see Worker.stop), before the stores close.
   */
  const shutdownWith = (stopHttp: () => Promise<void>) => {
    let stopping: Promise<void> | undefined;
    return (reason = "shutdown") =>
      (stopping ??= (async () => {
        shuttingDown = true;
        logger.info("shutting down", { reason, running_jobs: worker.activeCount, timeout_ms: config.shutdownTimeoutMs });
        clearInterval(reconcileTimer);
        // The worker takes no new job from now on, while the HTTP side drains alongside it (the queue
        // stays open for the jobs those requests accept).
        const workerStopped = worker.stop(config.shutdownTimeoutMs);
        await stopHttp();
        await metricsServer?.stop(true);
        await workerStopped;
        await ctx.turns.stop();
        // Closed only now: until HTTP has drained, requests it accepted still hand their jobs to it.
        await queue.close();
        await ctx.memory?.stop();
        await directory.stop();
        await appendSignal?.close();
        await live.stop();
        await projectionRunner.stop();
        await store.close();
        db.close();
        releaseLock();
        logger.info("stopped");
      })());
  };

  if (config.role === "worker") {
    logger.info("agentry worker running", { read_model_file: readModelPath, event_store: store.kind, queue: queue.kind, concurrency: config.workerConcurrency, llm_provider: ctx.defaultProvider, ...(metricsServer ? { metrics: metricsServer.url.href } : {}) });
    return { url: "", port: 0, apiKey, ctx, metricsPort: metricsServer?.port, shutdown: shutdownWith(async () => {}) };
  }
  // When keys were last used: noted per request in memory, recorded at most hourly per key.
  const keyUsage = new KeyUsage(ctx.repos, { granularityMs: 3_600_000, flushEveryMs: 60_000, logger });
  keyUsage.start();
  // End users' clients authenticate with tokens their server mints (signed with a shared, sealed secret).
  const endUserTokens = await EndUserTokens.open(store, secrets, logger.child({ component: "end-user-tokens" }));
  // The management plane (/v1/apps) takes the operator's root token or a management JWT.
  const { auth: management, generatedRootToken } = await createManagementAuth({ store, config, logger: logger.child({ component: "management" }) });
  const managers = new WeakMap<Request, ManagementPrincipal>();
  // The web console (/console) calls the management API in process, as the principal that logged in.
  const consoleApi = new InProcessApi();
  // Rate limits: shared through Redis when there is one (with this process's own as the fallback).
  const localLimiter = new InProcessRateLimiter(config.rateLimits.maxBuckets);
  const rateLimiter: RateLimiter = config.redisUrl
    ? new RedisRateLimiter({ url: config.redisUrl, timeoutMs: config.rateLimits.redisTimeoutMs, fallback: localLimiter, logger: logger.child({ component: "rate-limits" }) })
    : localLimiter;
  if (rateLimiter instanceof RedisRateLimiter && !(await rateLimiter.ready(3000))) {
    logger.warn("rate limiter: redis is not reachable yet; limiting in this process until it is");
  }
  // The skills shipped to every app: a skill file that does not parse stops the start, naming it.
  const skills = loadSkillsFolder(config.skillsDir);
  logger.info("skills loaded", { dir: config.skillsDir, skills: [...skills.keys()] });
  const app = createApp({
    store, runner: projectionRunner, logger, version: pkg.version, maxBodyBytes: config.maxBodyBytes,
    streamedBodies: [...fileBodyRoutes(config.files, config.bodyTimeoutMs), ...consoleBodyRoutes(config.bodyTimeoutMs), ...muapiBodyRoutes(config.files, config.bodyTimeoutMs)],
    metrics, metricsToken: config.metrics.token, accessLog: config.accessLog ? logger.child({ component: "access" }) : undefined,
    bodyTimeoutMs: config.bodyTimeoutMs, authenticate: extra.authenticate ?? directoryAuthenticator(directory, endUserTokens, keyUsage),
    rateLimit: rateLimitCheck({ limiter: rateLimiter, defaults: config.rateLimits, settingsOf: (appId) => directory.app(appId)?.rate_limits }),
    authenticateManagement: async (request) => {
      managers.set(request, consoleApi.principalOf(request) ?? await management.authenticate(request));
    },
    errorDialects: [openaiErrorDialect, magusErrorDialect, mosooErrorDialect, muxiErrorDialect, mushuErrorDialect, muapiErrorDialect],
    publicPaths: [...MUSHU_PUBLIC_PATHS, MUAPI_UPLOAD_PATH], managementPaths: [MUSHU_MANAGEMENT],
    plugins: [appRoutes({ ctx, directory, usage: keyUsage, principalOf: (request) => managers.get(request) }),
      appRateLimitRoutes({ ctx, directory, defaults: config.rateLimits, principalOf: (request) => managers.get(request) }),
      appBillingRoutes({ ctx, directory, principalOf: (request) => managers.get(request) }),
      appUserRoutes({ ctx, directory, principalOf: (request) => managers.get(request) }),
      auditRoutes({ ctx, directory, principalOf: (request) => managers.get(request) }),
      adminRoutes({ projections: projectionRunner, principalOf: (request) => managers.get(request) }),
      adminRuntimeRoutes({ db, queue: { kind: queue.kind, depth: queueDepth }, principalOf: (request) => managers.get(request), rebuilding: () => projectionRunner.rebuildingAtStart }),
      auditSessionRoutes({ db, directory, principalOf: (request) => managers.get(request), rebuilding: () => projectionRunner.rebuildingAtStart }),
      auditVerifyRoutes({ ctx, directory, principalOf: (request) => managers.get(request) }), v1Routes({ ctx, endUserTokens, skills }), signedFileRoutes({ ctx }),
      openaiCompatRoutes({ ctx, endUserTokens, skills }),
      consoleRoutes({ api: consoleApi, logins: new ConsoleLogins(), management, publicBaseUrl: config.files.publicBaseUrl }),
      magusRoutes({ ctx, timeoutMs: config.compat.syncTimeoutMs }),
      mosooRoutes({ ctx }),
      muxiRoutes({ ctx, timeoutMs: config.compat.syncTimeoutMs }),
      mushuRoutes({ ctx, chatgpt: { ...OPENAI_CHATGPT_CLIENT, ...config.compat.chatgpt } }),
      muapiRoutes({ ctx, skills }),
      mushuManagementRoutes({ ctx, principalOf: (request) => managers.get(request), forward: (request: Request): Promise<Response> => app.handle(request) }),
      ...(extra.plugins ?? [])],
  });
  consoleApi.attach((request) => app.handle(request));
  app.listen({ port: config.port, hostname: config.host });
  const port = app.server!.port!;
  const url = `http://${config.host.includes(":") ? `[${config.host}]` : config.host}:${port}`;
  logger.info("agentry listening", { url, role: config.role, queue: queue.kind, event_store: store.kind, data_dir: config.dataDir, read_model_file: readModelPath, docs: `${url}/docs`, llm_provider: ctx.defaultProvider });
  if (generatedRootToken !== null) {
    // Shown this once: only its hash is stored (in the event store), so it cannot be shown again.
    logger.showSecretOnce("The operator's root token for the management plane (/v1/apps), generated now:", generatedRootToken,
      "It is shown this once and stored only as a hash: keep it, or set ADMIN_TOKEN to choose one.");
    logger.info("generated the operator's root token; it was shown once on the terminal, not logged");
  }
  if (origin === "generated") {
    // The one time the key is shown: it is stored in the data folder (mode 0600), never logged again.
    logger.showSecretOnce("The default app's API key, generated now:", apiKey,
      persistent ? `It is shown this once; it is stored in ${join(config.dataDir, "api_key")} (mode 0600).` : "It is shown this once and kept in memory only (EVENT_STORE=memory).");
    logger.info("generated an API key for the default app; it was shown once on the terminal, not logged", {
      stored_in: persistent ? join(config.dataDir, "api_key") : "memory only (EVENT_STORE=memory)",
    });
  } else if (origin === "file") {
    logger.info("the default app's API key is in the data folder", { stored_in: join(config.dataDir, "api_key") });
  }

  const shutdown = shutdownWith(async () => {
    // Stop accepting at once; end held polls and SSE streams (their clients resume elsewhere from their
    // cursor); give the other in-flight requests the grace period, then cut what is left.
    const drained = app.server!.stop(false).then(() => true);
    closing.abort();
    const inTime = await Promise.race([drained, Bun.sleep(config.shutdownTimeoutMs).then(() => false)]);
    if (!inTime) {
      logger.warn("in-flight requests did not finish in time; closing them", { timeout_ms: config.shutdownTimeoutMs });
      await app.server!.stop(true);
    }
    await management.stop();
    await keyUsage.stop();
    await rateLimiter.close();
  });
  return { url, port, apiKey, ctx, shutdown, app, metricsPort: metricsServer?.port };
}

if (import.meta.main) {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  try {
    const server = await startServer(config, logger);
    for (const signal of ["SIGTERM", "SIGINT"] as const) {
      process.on(signal, () => void server.shutdown(signal).then(() => process.exit(0)));
    }
  } catch (err) {
    logger.error("failed to start", { error: err as Error });
    process.exit(1);
  }
}
