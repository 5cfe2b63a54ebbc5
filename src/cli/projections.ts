/**
 * Operator commands for the read models of this data folder:
 *
 *   bun run projections status            each projection's checkpoint and lag
 *   bun run projections rebuild [name…]   rebuild (all, or the named ones) from the event store
 *
 * Uses the same configuration as the server (DATA_DIR, EVENT_STORE, …). Beside a running server (it holds
 * the read-model file), `status` reads that server's checkpoints read-only, and `rebuild` asks the server
 * to rebuild online (POST /v1/admin/projections/{name}/rebuild at AGENTRY_URL, default this config's
 * HOST and PORT, with ADMIN_TOKEN) and follows the progress until the swap. With no server running, a
 * rebuild drops the tables and refolds them in place.
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
    if (command === "rebuild" && err instanceof ReadModelInUseError) return rebuildThroughServer(config, err.pid, names.length ? names : projections.map((p) => p.name));
    throw err;
  }
  const store = createEventStore(config);
  const db = openReadModelDb(dbPath);
  // Alone with the read models: a changed version is refolded in place, as a rebuild is.
  const runner = new ProjectionRunner(store, db, projections, { logger, versionRebuild: "blocking" });
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
    // A recorded version other than this code's: the server (running this code) is rebuilding it, its
    // new tables counted from the start of the store, as GET /v1/admin/projections shows it.
    // (A projection new to a file that holds others is built the same way.)
    const rebuilding = (name: string) => {
      const c = checkpoints.get(name);
      return c === undefined ? checkpoints.size > 0 : c.version !== projections.find((p) => p.name === name)!.version;
    };
    const status = await projectionStatus(store, projections, (name) => (rebuilding(name) ? null : checkpoints.get(name)?.position ?? null), {
      stateOf: (lag, name) => (rebuilding(name) ? "rebuilding" : lag === 0 ? "live" : "catching_up"), lastError: null, now: Date.now(),
    });
    console.log(JSON.stringify({ served_by_pid: pid, projections: status }, null, 2));
    return 0;
  } finally {
    await store.close();
    db.close();
  }
}

/**
 * Rebuilds online in the running server, one read model after another, printing progress to stderr and
 * each finished rebuild as a JSON line on stdout.
 */
async function rebuildThroughServer(config: Config, holder: number, names: readonly string[]): Promise<number> {
  const token = process.env.ADMIN_TOKEN ?? config.management.adminToken;
  if (!token) {
    console.error("A server holds the read models: set ADMIN_TOKEN to the operator's root token (or a management JWT) to rebuild through it");
    return 2;
  }
  const host = ["0.0.0.0", "::", ""].includes(config.host) ? "127.0.0.1" : config.host.includes(":") ? `[${config.host}]` : config.host;
  const base = (process.env.AGENTRY_URL ?? `http://${host}:${config.port}`).replace(/\/+$/, "");
  const headers = { authorization: `Bearer ${token}` };
  const call = async (method: string, path: string, allow: number[] = []) => {
    const res = await fetch(`${base}${path}`, { method, headers });
    const body = await res.json().catch(() => null) as any;
    if (!res.ok && !allow.includes(res.status)) throw new Error(`${method} ${path}: ${res.status} ${body?.error?.message ?? ""}`.trim());
    return { status: res.status, body };
  };
  try {
    // Each API process keeps its own read models: make sure the URL reaches the one holding this file.
    const { body: list } = await call("GET", "/v1/admin/projections");
    if (list?.served_by_pid !== holder) {
      console.error(`${base} is served by process ${list?.served_by_pid}, but the read models in this data folder are held by process ${holder}: set AGENTRY_URL to that process's address`);
      return 2;
    }
    for (const name of names) if (!(await follow(name))) return 1;
    return 0;
  } catch (err) {
    console.error(`could not rebuild through the server at ${base}: ${(err as Error).message}`);
    return 1;
  }

  async function follow(name: string): Promise<boolean> {
    // One already running (a version rebuild, another operator's) is followed rather than refused.
    const started = await call("POST", `/v1/admin/projections/${encodeURIComponent(name)}/rebuild`, [409]);
    let status = started.status === 409 ? (await call("GET", `/v1/admin/projections/${encodeURIComponent(name)}/rebuild`)).body : started.body;
    while (status.state === "running" || status.state === "swapping") {
      const eta = status.eta_ms === null ? "" : `, about ${Math.ceil(status.eta_ms / 1000)} s left`;
      console.error(`${name}: ${(status.progress * 100).toFixed(1)}% (${status.processed_events} of ~${status.total_events} events${eta})`);
      await Bun.sleep(500);
      status = (await call("GET", `/v1/admin/projections/${encodeURIComponent(name)}/rebuild`)).body;
    }
    console.log(JSON.stringify(status));
    return status.state === "done";
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
