/**
 * Composition root: configuration → event store → read models and projection runner → HTTP.
 * Also owns the process lifecycle: start-up checks and graceful shutdown on SIGTERM/SIGINT.
 */
import { join } from "node:path";
import { projections } from "../projections/index.ts";
import pkg from "../package.json" with { type: "json" };
import { ConfigError, loadConfig, type Config } from "./config.ts";
import { createLogger, type Logger } from "./core/logger.ts";
import { createEventStore } from "./eventstore/factory.ts";
import { createApp, type AppDeps } from "./http/app.ts";
import { acquireProcessLock } from "./projections/processLock.ts";
import { openReadModelDb } from "./projections/readModelDb.ts";
import { ProjectionRunner } from "./projections/runner.ts";

export interface RunningServer {
  url: string;
  port: number;
  /** Stops accepting, lets in-flight requests finish (bounded), stops projections, closes stores. */
  shutdown(reason?: string): Promise<void>;
}

export async function startServer(
  config: Config,
  logger: Logger = createLogger(config.logLevel),
  extra: Pick<AppDeps, "plugins"> = {},
): Promise<RunningServer> {
  const store = createEventStore(config);
  await store.ping();
  const readModelPath = config.eventStore === "memory" ? ":memory:" : join(config.dataDir, "readmodels.sqlite");
  const releaseLock = readModelPath === ":memory:" ? () => {} : acquireProcessLock(`${readModelPath}.pid`, readModelPath);
  const db = openReadModelDb(readModelPath);
  const runner = new ProjectionRunner(store, db, projections, { logger: logger.child({ component: "projections" }), lagCountLimit: 1000 });
  runner.start();

  const app = createApp({ store, runner, logger, version: pkg.version, maxBodyBytes: config.maxBodyBytes, ...extra });
  app.listen({ port: config.port, hostname: config.host });
  const port = app.server!.port!;
  const url = `http://${config.host.includes(":") ? `[${config.host}]` : config.host}:${port}`;
  logger.info("agentry listening", { url, event_store: store.kind, data_dir: config.dataDir, docs: `${url}/docs` });

  let closing: Promise<void> | undefined;
  const shutdown = (reason = "shutdown") =>
    (closing ??= (async () => {
      logger.info("shutting down", { reason });
      // Stop accepting at once; give in-flight requests the grace period, then cut what is left.
      const drained = app.server!.stop(false).then(() => true);
      const inTime = await Promise.race([drained, Bun.sleep(config.shutdownTimeoutMs).then(() => false)]);
      if (!inTime) {
        logger.warn("in-flight requests did not finish in time; closing them", { timeout_ms: config.shutdownTimeoutMs });
        await app.server!.stop(true);
      }
      await runner.stop();
      await store.close();
      db.close();
      releaseLock();
      logger.info("stopped");
    })());
  return { url, port, shutdown };
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
