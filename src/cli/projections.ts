/**
 * Operator commands for the read models of this data folder:
 *
 *   bun run projections status            each projection's checkpoint and lag
 *   bun run projections rebuild [name…]   drop and rebuild (all, or the named ones) from the event store
 *
 * Uses the same configuration as the server (DATA_DIR, EVENT_STORE, …). A rebuild refuses to run while
 * a server holds the read-model file; stop it first (or point a fresh DATA_DIR-less server at the store:
 * read models are per process and disposable).
 */
import { projections } from "../../projections/index.ts";
import { ConfigError, loadConfig, readModelFileOf } from "../config.ts";
import { createLogger } from "../core/logger.ts";
import { createEventStore } from "../eventstore/factory.ts";
import { acquireProcessLock, ReadModelInUseError } from "../projections/processLock.ts";
import { openReadModelDb } from "../projections/readModelDb.ts";
import { ProjectionRunner } from "../projections/runner.ts";

const USAGE = "usage: bun run projections status | rebuild [name ...]";

async function main(args: string[]): Promise<number> {
  const [command, ...names] = args;
  if (command !== "status" && command !== "rebuild") {
    console.error(USAGE);
    return 2;
  }
  const config = loadConfig();
  if (config.eventStore === "memory") {
    console.error("EVENT_STORE=memory keeps nothing between processes: there is nothing to rebuild");
    return 2;
  }
  const unknown = names.filter((n) => !projections.some((p) => p.name === n));
  if (unknown.length) {
    console.error(`unknown projection(s): ${unknown.join(", ")}; known: ${projections.map((p) => p.name).join(", ")}`);
    return 2;
  }
  const logger = createLogger(config.logLevel);
  const dbPath = readModelFileOf(config);
  const releaseLock = acquireProcessLock(`${dbPath}.pid`, dbPath);
  const store = createEventStore(config);
  const db = openReadModelDb(dbPath);
  const runner = new ProjectionRunner(store, db, projections, { logger });
  try {
    if (command === "rebuild") {
      const started = performance.now();
      const reset = runner.reset(names);
      runner.start();
      await runner.waitUntilCaughtUp(24 * 3600 * 1000);
      const seconds = (performance.now() - started) / 1000;
      const head = await store.headPosition();
      logger.info("rebuilt", { projections: reset, position: head, seconds: Number(seconds.toFixed(3)) });
    } else {
      runner.start();
      console.log(JSON.stringify(await runner.status(), null, 2));
    }
    return 0;
  } finally {
    await runner.stop();
    await store.close();
    db.close();
    releaseLock();
  }
}

try {
  process.exit(await main(process.argv.slice(2)));
} catch (err) {
  if (err instanceof ConfigError || err instanceof ReadModelInUseError) {
    console.error(err.message);
    process.exit(2);
  }
  throw err;
}
