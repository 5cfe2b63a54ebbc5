/**
 * Operator commands for the read models of this data folder:
 *
 *   bun run projections status            each projection's checkpoint and lag
 *   bun run projections rebuild [name…]   drop and rebuild (all, or the named ones) from the event store
 *
 * Uses the same configuration as the server (DATA_DIR, EVENT_STORE, …). `status` works beside a running
 * server (it reads that server's checkpoints, read-only); a rebuild refuses to run while a server holds
 * the read-model file: stop it first (read models are per process and disposable).
 */
import { projections } from "../../projections/index.ts";
import { ConfigError, loadConfig, readModelFileOf, type Config } from "../config.ts";
import { createLogger } from "../core/logger.ts";
import { createEventStore, createReadOnlyEventStore } from "../eventstore/factory.ts";
import { acquireProcessLock, ReadModelInUseError } from "../projections/processLock.ts";
import { openReadModelDb, readCheckpoint } from "../projections/readModelDb.ts";
import { projectionStatus, ProjectionRunner } from "../projections/runner.ts";
import { Database } from "bun:sqlite";
import { existsSync } from "node:fs";

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
  let releaseLock: () => void;
  try {
    releaseLock = acquireProcessLock(`${dbPath}.pid`, dbPath);
  } catch (err) {
    // A server holds the read models: a status reads beside it; a rebuild needs them to itself.
    if (command === "status" && err instanceof ReadModelInUseError && existsSync(dbPath)) return statusBesideServer(config, dbPath, err.pid);
    throw err;
  }
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

/**
 * The status of the read models a running server (process `pid`) keeps: their checkpoints read from its
 * read-model file, their lag counted against the store, both opened read-only; no lock is taken.
 */
async function statusBesideServer(config: Config, dbPath: string, pid: number): Promise<number> {
  const db = new Database(dbPath, { readonly: true });
  db.exec("PRAGMA busy_timeout = 5000");
  const store = createReadOnlyEventStore(config);
  try {
    const checkpoints = new Map<string, { version: number; position: bigint | null }>();
    for (const p of projections) {
      const row = readCheckpoint(db, p.name);
      if (row) checkpoints.set(p.name, { version: row.version, position: row.position === null ? null : BigInt(row.position) });
    }
    const status = await projectionStatus(store, projections, (name) => checkpoints.get(name)?.position ?? null, {
      stateOf: (lag) => (lag === 0 ? "live" : "catching_up"), lastError: null, now: Date.now(),
    });
    // A projection whose recorded version is not its current one is rebuilt when its server (re)starts.
    const shown = status.map((s) => ({ ...s, ...(checkpoints.get(s.name) && checkpoints.get(s.name)!.version !== s.version ? { state: "starting" as const } : {}) }));
    console.log(JSON.stringify({ served_by_pid: pid, projections: shown }, null, 2));
    return 0;
  } finally {
    await store.close();
    db.close();
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
